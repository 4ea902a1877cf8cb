"""PointGST against full fine-tuning on a Point-MAE-size classifier (issue: PointGST figures).

Measures, in one run and each method in its own subprocess: train-step time, peak memory, the share of the PointGST
step spent building the spectral bases, and inference time against the base model. Writes JSON + markdown.

    python benchmarks/pointgst_cost.py --out benchmarks/results/pointgst_cost_cpu
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from hf_point_peft.training.cost import CostSpec, measure_in_subprocess

TARGETS = {"step_time_ratio": 0.85, "peak_memory_ratio": 0.6, "basis_share": 0.05, "inference_ratio": 1.15}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--groups", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--out", default="benchmarks/results/pointgst_cost_cpu")
    args = parser.parse_args()

    common = {
        "batch": args.batch,
        "num_points": args.points,
        "num_groups": args.groups,
        "steps": args.steps,
        "device": args.device,
        "mixed_precision": args.mixed_precision,
    }
    full = measure_in_subprocess(CostSpec(method="full", **common))
    gst = measure_in_subprocess(CostSpec(method="pointgst", **common))
    ratios = {
        "step_time_ratio": gst["step_seconds"] / full["step_seconds"],
        "peak_memory_ratio": gst["peak_memory_bytes"] / full["peak_memory_bytes"],
        "basis_share": gst["context_build_share"],
        "inference_ratio": gst["inference_seconds"] / full["inference_seconds"],
    }
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "setting": common,
        "full": full,
        "pointgst": gst,
        "ratios": ratios,
        "targets": TARGETS,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        "| figure | full FT | PointGST | ratio | target |",
        "|---|---|---|---|---|",
        f"| train step (s) | {full['step_seconds']:.2f} | {gst['step_seconds']:.2f} | {ratios['step_time_ratio']:.2f} | <= 0.85 |",
        f"| peak memory (MiB, {full['peak_memory_kind']}) | {full['peak_memory_bytes'] / 2**20:.0f} | "
        f"{gst['peak_memory_bytes'] / 2**20:.0f} | {ratios['peak_memory_ratio']:.2f} | <= 0.6 |",
        f"| share of PointGST step building the bases | | {ratios['basis_share']:.1%} | | <= 5% |",
        f"| inference (s) vs base model | {full['inference_seconds']:.2f} | {gst['inference_seconds']:.2f} | "
        f"{ratios['inference_ratio']:.2f} | <= 1.15 |",
        f"| trainable parameters | {full['trainable_parameters']:,} | {gst['trainable_parameters']:,} | | |",
    ]
    text = (
        f"Point-MAE-size classifier, B={args.batch}, N={args.points}, G={args.groups}, device {full['device']} "
        f"({full['threads']} threads), mixed precision {args.mixed_precision}.\n\n"
        + "\n".join(rows)
        + f"\n\nCommand: `{result['command']}`\n"
    )
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
