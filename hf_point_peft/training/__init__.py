"""Training, evaluation, checkpointing and benchmarking of point-cloud fine-tuning methods."""
