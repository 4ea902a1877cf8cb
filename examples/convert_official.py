"""Convert an official checkpoint and fine-tune it with PointGST.

python examples/convert_official.py path/to/Point-MAE/pretrain.pth --num-groups 128 --num-points 2048 --num-labels 15
python examples/convert_official.py path/to/ckpt.pth --official-config path/to/cfgs/finetune_scan_hardest.yaml

Sizes no tensor holds (groups, points; group size for a fine-tuned checkpoint) come from the official yaml or the
flags; the converter refuses to guess them. A fine-tuned PointGST / Point-PEFT / Any2Point checkpoint converts to an
adapter instead: hf_point_peft.conversion (or `point-peft convert --from pointgst ...`).
"""

import argparse

from peft import get_peft_model

import hf_point_peft  # noqa: F401
from hf_point_peft import PointGSTConfig
from hf_point_peft.models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint")
parser.add_argument("--source", default="point-mae", choices=["point-mae", "point-bert", "act", "recon"])
parser.add_argument("--official-config", help="the official yaml of the run (sets groups, group size, points, ...)")
parser.add_argument("--num-groups", type=int)
parser.add_argument("--num-points", type=int)
parser.add_argument("--num-labels", type=int, help="classes of a new head (a pre-training checkpoint has none)")
parser.add_argument("--out", default="outputs/converted")
args = parser.parse_args()

sizes = {"num_groups": args.num_groups, "num_points": args.num_points, "num_labels": args.num_labels}
sizes = {k: v for k, v in sizes.items() if v is not None}
model, report = convert_point_transformer_checkpoint(
    args.checkpoint,
    args.source,
    official_config=args.official_config,
    output_dir=args.out,
    **sizes,
)
print(report.summary())
peft_model = get_peft_model(model, PointGSTConfig())
peft_model.print_trainable_parameters()  # 622,831 on a Point-MAE-size model with 15 classes
