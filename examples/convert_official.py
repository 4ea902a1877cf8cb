"""Convert an official checkpoint and fine-tune it with PointGST.

python examples/convert_official.py path/to/Point-MAE/pretrain.pth --num-groups 128
"""

import argparse

from peft import get_peft_model

import hf_point_peft  # noqa: F401
from hf_point_peft import PointGSTConfig
from hf_point_peft.models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint")
parser.add_argument("--source", default="point-mae", choices=["point-mae", "point-bert", "act", "recon"])
parser.add_argument("--num-groups", type=int, default=64)
parser.add_argument("--num-labels", type=int, default=15)
parser.add_argument("--out", default="outputs/converted")
args = parser.parse_args()

model, report = convert_point_transformer_checkpoint(
    args.checkpoint,
    args.source,
    num_labels=args.num_labels,
    num_groups=args.num_groups,
    num_points=16 * args.num_groups,
    output_dir=args.out,
)
print(report.summary())
peft_model = get_peft_model(model, PointGSTConfig())
peft_model.print_trainable_parameters()  # 622,831 on a Point-MAE-size model with 15 classes
