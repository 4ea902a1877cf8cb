"""Cost of PEFT methods against full fine-tuning, measured in one run.

Each method runs in its own subprocess (`hf_point_peft.training.cost`): train-step time, peak memory, the share of
the step spent building shared per-forward state (PointGST's spectral bases, Point-PEFT's graph and bank query),
and inference time. Writes JSON + markdown with the command.

Point methods on a Point-MAE-size classifier, against full fine-tuning of that classifier:

    python benchmarks/method_cost.py --methods pointgst point-prompt --out benchmarks/results/method_cost_cpu

Any2Point on a randomly initialised source encoder (`--source`: a preset of `cost.SOURCE_PRESETS`, e.g. "bert-base"
= BertModel width 768, 12 layers, 12 heads, or a JSON transformers config with "model_type"), against full
fine-tuning of the same pipeline (tokenizer + projection + encoder + adapters + head, every parameter trainable):

    python benchmarks/method_cost.py --source bert-base --out benchmarks/results/any2point_cost_cpu

At B=32 the Any2Point tokenizer's activations dominate: about 0.75 GiB a sample on CPU (B=4 peaked at 3.4 / 4.4 GiB
for any2point / full), so the B=32 pair needs roughly 30 GiB of free memory; on a shared machine add
`--max-memory-gib` so that a probe that does not fit fails alone instead of waking the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from hf_point_peft.atomic import write_json_atomic, write_text_atomic
from hf_point_peft.training.cost import SOURCE_PRESETS, CostSpec, measure_in_subprocess

# targets of the issues, as ratios to full fine-tuning measured in the same run
TARGETS = {
    "pointgst": {"step_time_ratio": 0.85, "peak_memory_ratio": 0.6, "build_share": 0.05, "inference_ratio": 1.15},
    "point-prompt": {"step_time_ratio": 1.5, "peak_memory_ratio": 1.0},
}
SOURCE_FULL_LABEL = "full fine-tuning (same Any2Point pipeline, all parameters trainable)"


def _source_config(text: str) -> dict:
    if text in SOURCE_PRESETS:
        return SOURCE_PRESETS[text]
    if text.lstrip().startswith("{"):
        return json.loads(text)
    raise SystemExit(f"--source must be one of {sorted(SOURCE_PRESETS)} or a JSON config, got {text!r}")


def _describe_source(config: dict) -> str:
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    return f"{config['model_type']} ({', '.join(f'{k}={config[k]}' for k in keys if k in config)})"


def _row(label: str, m: dict, full: dict, share: bool, targets: dict) -> tuple[str, dict]:
    ratios = {
        "step_time_ratio": m["step_seconds"] / full["step_seconds"],
        "peak_memory_ratio": m["peak_memory_bytes"] / full["peak_memory_bytes"],
        "build_share": m["context_build_share"],
        "inference_ratio": m["inference_seconds"] / full["inference_seconds"],
    }
    cells = [
        label,
        f"{m['trainable_parameters']:,}",
        f"{m.get('parameters_with_gradients', m['trainable_parameters']):,}",
        f"{m['step_seconds']:.2f}",
        f"{ratios['step_time_ratio']:.2f}",
        f"{m['peak_memory_bytes'] / 2**20:.0f}",
        f"{ratios['peak_memory_ratio']:.2f}",
    ]
    if share:
        cells.append(f"{ratios['build_share']:.1%}" if m is not full else "")
    cells += [
        f"{m['inference_seconds']:.2f}",
        f"{ratios['inference_ratio']:.2f}",
        ", ".join(f"{k} <= {v}" for k, v in targets.items()),
    ]
    return "| " + " | ".join(cells) + " |", ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pointgst"], help="point methods compared with full FT")
    parser.add_argument(
        "--source",
        default=None,
        help=f"Any2Point mode: source encoder, one of {sorted(SOURCE_PRESETS)} or a JSON transformers config "
        "(randomly initialised); compares any2point with full fine-tuning of the same pipeline (--methods ignored)",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=None, help="points per cloud (default 2048; Any2Point 1024)")
    parser.add_argument("--groups", type=int, default=128, help="point methods: token groups G")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16"))
    parser.add_argument(
        "--out", default=None, help="output stem (default benchmarks/results/{method,any2point}_cost_<cpu|cuda>)"
    )
    parser.add_argument(
        "--max-memory-gib",
        type=float,
        default=None,
        help="cap each probe's address space (a probe too large fails alone instead of triggering the OOM killer)",
    )
    args = parser.parse_args()
    cap = int(args.max_memory_gib * 2**30) if args.max_memory_gib else None

    source = _source_config(args.source) if args.source is not None else None
    points = args.points or (1024 if source is not None else 2048)
    kind = "cpu" if args.device == "cpu" else "cuda"
    out = Path(args.out or f"benchmarks/results/{'any2point' if source is not None else 'method'}_cost_{kind}")
    common = {
        "batch": args.batch,
        "num_points": points,
        "steps": args.steps,
        "device": args.device,
        "mixed_precision": args.mixed_precision,
    }
    if source is None:
        common["num_groups"] = args.groups
        baseline = ("full", "full", {})
        runs = [(method, method, TARGETS.get(method, {})) for method in args.methods]
    else:
        common["source_config"] = source
        baseline = ("any2point-full", SOURCE_FULL_LABEL, {})
        runs = [("any2point", "any2point", {})]  # no target: the figures are reported against the baseline
    share = source is None  # Any2Point's per-forward context is not timed separately
    header = ["method", "trainable params", "params receiving gradients", "train step (s)", "step ratio"]
    header += ["peak memory (MiB)", "memory ratio"] + (["shared-state share of step"] if share else [])
    header += ["inference (s)", "inference ratio", "targets"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    full = measure_in_subprocess(CostSpec(method=baseline[0], **common), max_memory_bytes=cap)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "setting": common,
        "baseline": {"method": baseline[0], "label": baseline[1]},
        "full": full,
    }
    rows.append(_row(baseline[1], full, full, share, {})[0])
    for method, label, targets in runs:
        m = measure_in_subprocess(CostSpec(method=method, **common), max_memory_bytes=cap)
        row, ratios = _row(label, m, full, share, targets)
        result[method] = {**m, "ratios": ratios, "targets": targets}
        rows.append(row)

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out.with_suffix(".json"), result)
    if source is None:
        setting = f"Point-MAE-size classifier (15 classes), B={args.batch}, N={points}, G={args.groups}"
    else:
        setting = (
            f"Any2Point on a randomly initialised {_describe_source(source)} source (15 classes), B={args.batch}, "
            f"N={points}"
        )
    text = (
        f"{setting}, device {full['device']} ({full['threads']} threads), mixed precision {args.mixed_precision}, "
        f"{args.steps} timed steps (median) after 1 warm-up, times with {full.get('timing_allocator', 'the default allocator')}; "
        f"peak memory: {full['peak_memory_kind']}.\n\n" + "\n".join(rows) + f"\n\nCommand: `{result['command']}`\n"
    )
    write_text_atomic(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
