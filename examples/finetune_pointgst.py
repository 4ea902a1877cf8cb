"""Fine-tune PointGST on a point backbone with plain peft calls (the CLI does the same through the training loop).

python examples/finetune_pointgst.py                         # embedded backbone, synthetic shapes, offline
python examples/finetune_pointgst.py --backbone path/to/converted-point-mae
"""

import argparse
import logging

from peft import get_peft_model

import hf_point_peft  # noqa: F401  (registers the models and the PEFT methods; import it first)
from hf_point_peft import PointGSTConfig
from hf_point_peft.data import load_point_dataset
from hf_point_peft.training.backbones import load_classifier
from hf_point_peft.training.loop import TrainingArguments, train

logging.basicConfig(format="%(message)s")
logging.getLogger("hf_point_peft").setLevel(logging.INFO)  # the job's one line per step
parser = argparse.ArgumentParser()
parser.add_argument("--backbone", default="embedded")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--output-dir", default="outputs/example-pointgst")
args = parser.parse_args()

data = load_point_dataset("synthetic")
names = data["train"].features["label"].names
base = load_classifier(args.backbone, len(names), dict(enumerate(names)))
model = get_peft_model(base, PointGSTConfig(local_size=16))
model.print_trainable_parameters()
results = train(
    model,
    data,
    TrainingArguments(output_dir=args.output_dir, epochs=args.epochs, learning_rate=2e-3),
    manifest={"method": "pointgst", "backbone": args.backbone},
)
print(f"final-epoch test accuracy: {100 * results['test_accuracy']:.2f}%")
results["model"].save_pretrained(f"{args.output_dir}/adapter")
