"""Pre-train a small point transformer with masked point modeling (Point-MAE) on the synthetic shapes, in Python.

A two-minute miniature of how the embedded backbone was made; the exact command of the embedded backbone (the same
job through `point-peft pretrain`) is in hf_point_peft/assets/pointmae-synthetic-small/README.md.
"""

import logging

from hf_point_peft.training.pretrain import PretrainJob, run_pretrain

logging.basicConfig(format="%(message)s")
logging.getLogger("hf_point_peft").setLevel(logging.INFO)  # the job's one line per step

run_pretrain(
    PretrainJob(
        dataset="synthetic",
        dataset_options={
            "train_per_class": 40,
            "test_per_class": 1,
            "seed": 1,
        },  # unlabeled; other seed than fine-tuning
        model_config={
            "hidden_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "intermediate_size": 192,
            "num_groups": 32,
            "group_size": 16,
        },
        num_points=512,
        epochs=2,
        output_dir="outputs/example-pretrain",
    )
)
