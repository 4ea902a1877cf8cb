"""`point-peft` command line: one sub-command per job (convert, pretrain, finetune, evaluate, push, benchmark)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

CONVERT_SOURCES = ("point-mae", "point-bert", "act", "recon", "pointgpt")


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint to a Hugging Face model folder",
        description=(
            "Read an official Point-MAE / Point-BERT / ACT / ReCon / PointGPT checkpoint (pre-trained or fine-tuned) "
            "with torch.load(weights_only=True), map every key explicitly, and write config.json + model.safetensors "
            "+ conversion_report.txt. Keys the model does not use are reported; a shape that does not fit is refused."
        ),
    )
    p.add_argument("checkpoint", help="path to the official .pth checkpoint")
    p.add_argument("--from", dest="source", required=True, choices=CONVERT_SOURCES, help="which official code made it")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--task",
        default="classification",
        choices=("classification", "masked-modeling"),
        help="model to build: a classifier (default) or, for Point-MAE-style pre-training checkpoints, the "
        "masked-modeling model with its decoder",
    )
    p.add_argument("--num-labels", type=int, help="classes of a new head (default: taken from a fine-tuned head)")
    p.add_argument("--num-groups", type=int, help="patch tokens G (64 for 1024 points, 128 for 2048); default 64")
    p.add_argument("--group-size", type=int, help="points per patch (default 32, or read from the checkpoint)")
    p.add_argument("--num-points", type=int, help="points per cloud the model is built for (default 1024 / 16*G)")
    p.add_argument("--num-heads", type=int, help="attention heads (default from the width: 384->6, 768->12, 1024->16)")
    p.add_argument(
        "--no-generator",
        action="store_true",
        help="PointGPT: drop the generator blocks (as PointGST's PointGPT does)",
    )
    p.add_argument(
        "--exact-fps",
        choices=("on", "off"),
        default="on",
        help="reproduce pointnet2_ops' FPS quirk of never picking points with |p|^2 <= 1e-3 (on, default: bit-exact "
        "official centres) or consider every point (off)",
    )
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in {
            "num_labels": args.num_labels,
            "num_groups": args.num_groups,
            "group_size": args.group_size,
            "num_points": args.num_points,
            "num_attention_heads": args.num_heads,
        }.items()
        if value is not None
    }
    if args.exact_fps == "off":
        overrides["fps_skip_sq_norm"] = None
    if args.source == "pointgpt":
        from .models.point_gpt.convert_point_gpt import convert_point_gpt_checkpoint

        if args.task != "classification":
            raise SystemExit("error: --task masked-modeling is only available for Point-MAE-style checkpoints")
        if args.no_generator:
            overrides["generator_num_hidden_layers"] = 0
        _, report = convert_point_gpt_checkpoint(args.checkpoint, output_dir=args.out, **overrides)
    else:
        from .models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

        _, report = convert_point_transformer_checkpoint(
            args.checkpoint, args.source, task=args.task, output_dir=args.out, **overrides
        )
    print(report.summary())
    print(f"wrote {args.out}")
    return 0


_REGISTRARS: list[Callable] = [_add_convert]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="point-peft",
        description="Parameter-efficient fine-tuning of point-cloud transformers with Hugging Face PEFT.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
