"""Cost of PEFT methods against full fine-tuning on a Point-MAE-size classifier, measured in one run.

Each method runs in its own subprocess (`hf_point_peft.training.cost`): train-step time, peak memory, the share of
the step spent building shared per-forward state (PointGST's spectral bases, Point-PEFT's graph and bank query),
and inference time against the base model. Writes JSON + markdown with the command.

    python benchmarks/method_cost.py --methods pointgst point-prompt --out benchmarks/results/method_cost_cpu
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from hf_point_peft.training.cost import CostSpec, measure_in_subprocess

# targets of the issues, as ratios to full fine-tuning measured in the same run
TARGETS = {
    "pointgst": {"step_time_ratio": 0.85, "peak_memory_ratio": 0.6, "build_share": 0.05, "inference_ratio": 1.15},
    "point-prompt": {"step_time_ratio": 1.5, "peak_memory_ratio": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pointgst"], help="methods compared with full fine-tuning")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--groups", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--out", default="benchmarks/results/method_cost_cpu")
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
    rows = [
        "| method | trainable params | train step (s) | step ratio | peak memory (MiB) | memory ratio | "
        "shared-state share of step | inference (s) | inference ratio | targets |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| full | {full['trainable_parameters']:,} | {full['step_seconds']:.2f} | 1.00 | "
        f"{full['peak_memory_bytes'] / 2**20:.0f} | 1.00 | | {full['inference_seconds']:.2f} | 1.00 | |",
    ]
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "setting": common, "full": full}
    for method in args.methods:
        m = measure_in_subprocess(CostSpec(method=method, **common))
        ratios = {
            "step_time_ratio": m["step_seconds"] / full["step_seconds"],
            "peak_memory_ratio": m["peak_memory_bytes"] / full["peak_memory_bytes"],
            "build_share": m["context_build_share"],
            "inference_ratio": m["inference_seconds"] / full["inference_seconds"],
        }
        targets = TARGETS.get(method, {})
        result[method] = {**m, "ratios": ratios, "targets": targets}
        target_text = ", ".join(f"{k} <= {v}" for k, v in targets.items())
        rows.append(
            f"| {method} | {m['trainable_parameters']:,} | {m['step_seconds']:.2f} | {ratios['step_time_ratio']:.2f} | "
            f"{m['peak_memory_bytes'] / 2**20:.0f} | {ratios['peak_memory_ratio']:.2f} | {ratios['build_share']:.1%} | "
            f"{m['inference_seconds']:.2f} | {ratios['inference_ratio']:.2f} | {target_text} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = (
        f"Point-MAE-size classifier (15 classes), B={args.batch}, N={args.points}, G={args.groups}, device "
        f"{full['device']} ({full['threads']} threads), mixed precision {args.mixed_precision}; peak memory: "
        f"{full['peak_memory_kind']}.\n\n" + "\n".join(rows) + f"\n\nCommand: `{result['command']}`\n"
    )
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
