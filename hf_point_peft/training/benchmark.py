"""`point-peft benchmark`: every method on the same data, split, seed and budget, one table and one plot.

Accuracy comes from full training runs executed one after another in this process (same `run_finetune` as the CLI);
cost figures (train-step time, peak memory, inference time) come from the cost probe, each method in a fresh
subprocess on the same backbone and batch, reported as ratios to full fine-tuning from the same run. Writes
`BENCHMARK.md`, `benchmark.json` and `accuracy_vs_parameters.png` into the output folder.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_file, write_json_atomic, write_text_atomic
from ..errors import SettingError
from ..files import read_json
from ..naming import portable_base_name
from .backbones import SCRATCH_PREFIX
from .cost import CostSpec, measure_together
from .evaluation import PROTOCOL
from .job import FinetuneJob, run_finetune
from .loop import TrainingArguments
from .progress import Clock, format_duration

__all__ = ["BENCHMARK_METHODS", "BenchmarkOptions", "MethodRun", "run_benchmark"]

# the control of the cost ratios (`cost_control`): the linear probe's inference is full fine-tuning's forward
CONTROL = "linear"
CONTROL_TOLERANCE = 0.10

logger = logging.getLogger(__name__)


@dataclass
class MethodRun:
    """One row: a method on a backbone, with its own learning rate / options / epochs where the recipe differs."""

    label: str
    method: str
    backbone: str = "embedded"
    learning_rate: float | None = None
    epochs: int | None = None
    method_options: dict[str, Any] = field(default_factory=dict)


# The official Point-PN tokenizer (512 / 256 / 128 centres, width 768, 64 neighbours) dominates Any2Point's step on
# 2 CPU cores (benchmarks/results/any2point_cost_cpu.md: about 24 s a step at batch 8, 1024 points); the benchmark's
# default budget uses the same design at the embedded backbone's token count (32) and MiniLM's width. Pass
# --method-option overrides for the official size.
ANY2POINT_CPU = {"knn_k": 16, "tokenizer_groups": [128, 64, 32], "tokenizer_width": 384}

# the default synthetic split of the benchmark: 40 training clouds per class (600, 10% held out for validation) and
# the standard 30 test clouds per class (450), so that every method fits the 15-minute budget on 2 CPU cores
SYNTHETIC_DEFAULTS = {"train_per_class": 40}

BENCHMARK_METHODS = {
    "full": MethodRun("full fine-tuning", "full", learning_rate=5e-4),
    "linear": MethodRun("linear probe (head only)", "linear", learning_rate=2e-3),
    "lora": MethodRun("LoRA (attention, r=8)", "lora", learning_rate=2e-3, method_options={"rank": 8}),
    "pointgst": MethodRun("PointGST", "pointgst", learning_rate=2e-3, method_options={"local_size": 16}),
    "point-prompt": MethodRun("Point-PEFT", "point-prompt", learning_rate=2e-3),
    "any2point": MethodRun(
        "Any2Point (MiniLM source)",
        "any2point",
        backbone="minilm",
        learning_rate=2e-3,
        method_options=ANY2POINT_CPU,
    ),
    "any2point-random": MethodRun(
        "Any2Point (MiniLM architecture, random init)",
        "any2point",
        backbone="minilm-random",
        learning_rate=2e-3,
        method_options=ANY2POINT_CPU,
    ),
    "scratch": MethodRun("from scratch (full, random init)", "full", backbone="scratch", learning_rate=5e-4),
}


@dataclass
class BenchmarkOptions:
    output_dir: str = "benchmark"
    methods: list[str] = field(
        default_factory=lambda: ["full", "linear", "lora", "pointgst", "point-prompt", "any2point", "scratch"]
    )
    dataset: str = "synthetic"
    data_path: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    backbone: str = "embedded"
    epochs: int = 6  # with 40 clouds per class: the whole default benchmark in about 15 min on 2 CPU cores
    batch_size: int = 32
    num_points: int = 512  # the embedded backbone's own point count
    seed: int = 0
    mixed_precision: str = "no"
    cost_batch: int = 32
    cost_steps: int = 2
    cost_rounds: int = 3  # timing rounds, every method once per round, round-robin, at the end (cost.py)
    cpu: bool = False
    progress: bool = False
    resume: bool = False  # reuse finished method runs (and their cost figures) in output_dir, continue the others
    overwrite_output_dir: bool = False  # without resume: start again in a folder holding an earlier benchmark
    command: str | None = None  # how the benchmark was started, recorded in BENCHMARK.md


def _row(name: str, spec: MethodRun, backbone: str, results: dict, cost: dict[str, Any], full_cost: dict[str, Any]):
    return {
        "key": name,
        "label": spec.label,
        "method": spec.method,
        "backbone": _backbone_label(backbone),
        "final_epoch_test_accuracy": results["test_accuracy"],
        "best_validation_epoch": results["best_validation_epoch"],
        "test_accuracy_at_best_validation_epoch": results["test_accuracy_at_best_validation_epoch"],
        "trainable_parameters": results["trainable_parameters"],
        "total_parameters": results["total_parameters"],
        "saved_bytes": results.get("saved_bytes"),
        "train_wall_seconds": results["training_seconds"],
        "step_seconds": cost["step_seconds"],
        "peak_memory_bytes": cost["peak_memory_bytes"],
        "peak_memory_exact": cost.get("peak_memory_exact", True),
        "inference_seconds": cost["inference_seconds"],
        "step_seconds_rounds": cost.get("step_seconds_rounds", [cost["step_seconds"]]),
        "inference_seconds_rounds": cost.get("inference_seconds_rounds", [cost["inference_seconds"]]),
        "step_time_ratio": cost["step_seconds"] / full_cost["step_seconds"],
        "peak_memory_ratio": cost["peak_memory_bytes"] / full_cost["peak_memory_bytes"],
        "inference_ratio": cost["inference_seconds"] / full_cost["inference_seconds"],
    }


def _backbone(spec: MethodRun, options: BenchmarkOptions) -> str:
    """The backbone a method row runs on: the benchmark's, or the row's own (MiniLM, scratch)."""
    if spec.backbone == "scratch":  # the benchmark backbone's architecture with random weights
        return "scratch" if options.backbone == "embedded" else f"scratch:{options.backbone}"
    return options.backbone if spec.backbone == "embedded" else spec.backbone


def _backbone_label(backbone: str) -> str:
    """The backbone a row ran on, as recorded: never a path of this machine ("scratch:NAME" keeps its prefix)."""
    if backbone.startswith(SCRATCH_PREFIX):
        return SCRATCH_PREFIX + portable_base_name(backbone.removeprefix(SCRATCH_PREFIX))
    return portable_base_name(backbone)


def _job(name, spec: MethodRun, backbone: str, options: BenchmarkOptions, dataset_options, out: Path, command: str):
    """The fine-tuning job of one method row: the same data, split, seed and budget for every row."""
    training = TrainingArguments(
        output_dir=str(out / "runs" / name),
        epochs=spec.epochs or options.epochs,
        batch_size=options.batch_size,
        learning_rate=spec.learning_rate or 5e-4,
        num_points=options.num_points,
        seed=options.seed,
        mixed_precision=options.mixed_precision,
        cpu=options.cpu,
        progress=options.progress,
        resume=options.resume,
        overwrite_output_dir=not options.resume,  # the benchmark's own run folders
    )
    return FinetuneJob(
        method=spec.method,
        backbone=backbone,
        dataset=options.dataset,
        data_path=options.data_path,
        dataset_options=dataset_options,
        method_options=spec.method_options,
        training=training,
        command=command,
    )


def _train_methods(methods, options: BenchmarkOptions, dataset_options, out: Path, command: str, device: str, log):
    """Fine-tune every method in turn: [(name, spec, results)] and the cost probe of each (scratch: full's)."""
    clock = Clock(len(methods))  # methods differ in cost: the estimate of the time left is rough
    rows, cost_specs = [], {}
    for name in methods:
        spec = BENCHMARK_METHODS[name]
        # each run folder records the settings it was trained with: a later benchmark with other settings (and
        # other methods) rewrites the folder's settings file but leaves this run, which resume must not reuse
        (out / "runs" / name).mkdir(parents=True, exist_ok=True)
        _check_resumable(out / "runs" / name / "benchmark_options.json", options, dataset_options)
        backbone = _backbone(spec, options)
        log(f"[benchmark] {spec.label}: training {spec.epochs or options.epochs} epochs")
        results = run_finetune(_job(name, spec, backbone, options, dataset_options, out, command), log=lambda *a: None)
        # a scratch row (of any backbone) is full fine-tuning's architecture and method: its row takes full's cost
        if spec.backbone != "scratch":
            cost_specs[name] = _cost_spec(spec.method, backbone, spec.method_options, results, options, device)
        rows.append((name, spec, results))
        log(
            f"[benchmark] {spec.label}: test accuracy {100 * results['test_accuracy']:.2f}% "
            f"({results['trainable_parameters']:,} trainable); {len(rows)}/{len(methods)} methods, "
            f"{clock.done(len(rows) - 1)}"
        )
    return rows, cost_specs


def run_benchmark(options: BenchmarkOptions, log=logger.info) -> dict[str, Any]:
    out = Path(options.output_dir)
    unknown = [m for m in options.methods if m not in BENCHMARK_METHODS]
    if unknown:
        raise ValueError(f"unknown benchmark method(s) {unknown}; choose from {sorted(BENCHMARK_METHODS)}")
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(["full", *options.methods]))  # ratios need full fine-tuning
    command = options.command or "python " + " ".join(shlex.quote(a) for a in sys.argv)
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() and not options.cpu else "cpu"
    dataset_options = dict(options.dataset_options)
    if options.dataset.startswith("synthetic"):  # the budget's split size unless overridden option by option
        dataset_options = {**SYNTHETIC_DEFAULTS, **dataset_options}
    _check_resumable(out / "benchmark_options.json", options, dataset_options)
    rows, cost_specs = _train_methods(methods, options, dataset_options, out, command, device, log)
    if CONTROL not in cost_specs:  # the control of the ratios is measured even when its accuracy is not wanted
        full_results = rows[0][2]
        cost_specs[CONTROL] = _cost_spec("linear", cost_specs["full"].backbone, {}, full_results, options, device)
    log(f"[benchmark] cost: {options.cost_rounds} rounds over {len(cost_specs)} methods, each in fresh processes")
    costs = _measure_costs(cost_specs, out / "costs.json", options)
    control = cost_control(costs)
    table = [
        _row(name, spec, _backbone(spec, options), results, costs.get(name, costs["full"]), costs["full"])
        for name, spec, results in rows
    ]
    summary = {
        "protocol": PROTOCOL,
        "command": command,
        "options": {**asdict(options), "dataset_options": dataset_options},
        "device": costs["full"]["device"],
        "threads": costs["full"]["threads"],
        "peak_memory_kind": costs["full"]["peak_memory_kind"],
        "timing_allocator": costs["full"].get("timing_allocator", "the default allocator"),
        "wall_seconds": time.perf_counter() - start,
        "cost_control": control,
        "rows": table,
        "targets": check_targets(table, control["reliable"]),
    }
    write_json_atomic(out / "benchmark.json", summary)
    plot_accuracy_vs_parameters(table, out / "accuracy_vs_parameters.png")
    write_text_atomic(out / "BENCHMARK.md", render_markdown(summary))
    log((out / "BENCHMARK.md").read_text())
    log(f"[benchmark] total time {format_duration(summary['wall_seconds'])}")
    return summary


_NOT_SETTINGS = ("methods", "output_dir", "resume", "overwrite_output_dir", "progress", "command")


def _check_resumable(path: Path, options: BenchmarkOptions, dataset_options: dict[str, Any]) -> None:
    """Record the settings of a benchmark folder; `resume` with other settings would mix two benchmarks in one
    table, so it is refused with the differences named."""
    settings = {k: v for k, v in asdict(options).items() if k not in _NOT_SETTINGS}
    settings = json.loads(json.dumps({**settings, "dataset_options": dataset_options}))
    if options.resume and options.overwrite_output_dir:
        raise SettingError("overwrite_output_dir", True, "contradicts resume: pass one of them")
    if not options.resume and not options.overwrite_output_dir and path.is_file():
        raise ValueError(
            f"{path.parent} already holds a benchmark: pass --resume to continue it, --overwrite-output-dir to run it "
            "again from the start, or another --output-dir"
        )
    if options.resume and path.is_file():
        saved = read_json(path)
        diffs = [f"{k}: {saved.get(k)!r} there vs {v!r} now" for k, v in settings.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(
                f"cannot resume the benchmark from {path.parent}: it was made with other settings ({'; '.join(diffs)})"
            )
    write_json_atomic(path, settings)


def _cost_spec(method: str, backbone: str, method_options, results, options: BenchmarkOptions, device: str):
    return CostSpec(
        method=method,
        backbone=backbone,
        batch=options.cost_batch,
        num_points=options.num_points,
        num_labels=len(results["label_names"]),
        steps=options.cost_steps,
        device=device,
        mixed_precision=options.mixed_precision,
        method_options=method_options,
        bank_rows=results["train_samples"],
    )


def _measure_costs(specs: dict[str, CostSpec], path: Path, options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Every method's cost, measured together at the end (`cost.measure_together`), cached in `path` so that a
    resumed benchmark whose methods and cost settings are all the same does not measure again; any change measures
    every method again, together."""
    key = {"rounds": options.cost_rounds, "specs": json.loads(json.dumps({k: asdict(v) for k, v in specs.items()}))}
    if options.resume and path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["costs"]
    costs = measure_together(specs, options.cost_rounds)
    write_json_atomic(path, {"key": key, "costs": costs})
    return costs


def cost_control(costs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The control of the cost ratios: the linear probe's inference is the same forward as full fine-tuning's, so
    their ratio must read 1.00x; off by more than `CONTROL_TOLERANCE`, the machine's state changed between the
    measurements and the time ratios of the run are not results."""
    ratio = costs[CONTROL]["inference_seconds"] / costs["full"]["inference_seconds"]
    return {
        "what": "linear probe inference / full fine-tuning inference (the same forward: should read 1.00x)",
        "ratio": ratio,
        "tolerance": CONTROL_TOLERANCE,
        "reliable": abs(ratio - 1.0) <= CONTROL_TOLERANCE,
    }


def check_targets(table: list[dict[str, Any]], timing_reliable: bool = True) -> list[dict[str, Any]]:
    """The issue's targets on the embedded backbone, each with the measured figure and whether it is met (None: not
    judged, a time ratio of a run whose cost control failed)."""
    by = {row["key"]: row for row in table}
    checks = []

    def add(text: str, value, ok: bool | None) -> None:
        checks.append({"target": text, "measured": value, "met": None if ok is None else bool(ok)})

    if "pointgst" in by and "full" in by:
        gst, full = by["pointgst"], by["full"]
        diff = 100 * (gst["final_epoch_test_accuracy"] - full["final_epoch_test_accuracy"])
        add("PointGST accuracy >= full fine-tuning - 0.5 points", f"{diff:+.2f} points", diff >= -0.5)
        share = gst["trainable_parameters"] / full["trainable_parameters"]
        add(
            "PointGST trains <= 3% of the parameters (of full fine-tuning's count)",
            f"{100 * share:.2f}%",
            share <= 0.03,
        )
        if timing_reliable:
            add("PointGST step time <= 0.85x full", f"{gst['step_time_ratio']:.2f}x", gst["step_time_ratio"] <= 0.85)
        else:
            add("PointGST step time <= 0.85x full", "not judged: the cost control failed (see above)", None)
        add("PointGST peak memory <= 0.6x full", f"{gst['peak_memory_ratio']:.2f}x", gst["peak_memory_ratio"] <= 0.6)
    if "linear" in by:
        for key in ("lora", "pointgst", "point-prompt", "any2point"):
            if key in by:
                a, b = by[key]["final_epoch_test_accuracy"], by["linear"]["final_epoch_test_accuracy"]
                add(f"{by[key]['label']} beats the linear probe", f"{100 * a:.2f}% vs {100 * b:.2f}%", a > b)
    if "scratch" in by and "full" in by:
        a, b = by["full"]["final_epoch_test_accuracy"], by["scratch"]["final_epoch_test_accuracy"]
        add("fine-tuning from the pre-trained backbone beats from scratch", f"{100 * a:.2f}% vs {100 * b:.2f}%", a > b)
    if "any2point" in by and "any2point-random" in by:
        a, b = by["any2point"]["final_epoch_test_accuracy"], by["any2point-random"]["final_epoch_test_accuracy"]
        add("Any2Point from pre-trained MiniLM beats random init", f"{100 * a:.2f}% vs {100 * b:.2f}%", a > b)
    return checks


def _size(n) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def render_markdown(summary: dict[str, Any]) -> str:
    o = summary["options"]
    lines = [
        "# Benchmark",
        "",
        f"Command: `{summary['command']}`  ",
        f"Dataset: {o['dataset']} (options {o['dataset_options'] or 'default'}), {o['num_points']} points, seed "
        f"{o['seed']}, batch {o['batch_size']}, {o['epochs']} epochs unless noted; device {summary['device']} "
        f"({summary['threads']} threads); wall time {summary['wall_seconds'] / 60:.1f} min.  ",
        f"Protocol: **{summary['protocol']}** test accuracy; the best epoch on a validation split carved from the "
        "training data (10%) is reported beside it, never chosen on the test split.  ",
        f"Cost columns: cost probe at batch {o['cost_batch']} on the same backbone, measured after every run, "
        f"{o.get('cost_rounds', 1)} rounds over all methods round-robin, each probe in a fresh process (medians); "
        f"ratios to full fine-tuning of the same run; times with {summary['timing_allocator']}; peak memory = "
        f"{summary['peak_memory_kind']} ('<=' marks an upper bound: loading the model peaked higher than training).",
        "",
        "| method | backbone | test acc. (final epoch) | best val. epoch -> test acc. | trainable params | "
        "saved size | step time | peak memory | inference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    control = summary.get("cost_control")
    reliable = control is None or control["reliable"]
    for r in summary["rows"]:
        spread = r.get("step_seconds_rounds") or [r["step_seconds"]]
        seconds = f"{r['step_seconds']:.2f} s, {min(spread):.2f}-{max(spread):.2f}"
        step = f"{r['step_time_ratio']:.2f}x ({seconds})" if reliable else "unreliable"
        inference = f"{r['inference_ratio']:.2f}x" if reliable else "unreliable"
        lines.append(
            f"| {r['label']} | {r['backbone']} | {100 * r['final_epoch_test_accuracy']:.2f}% | "
            f"{r['best_validation_epoch']} -> {100 * r['test_accuracy_at_best_validation_epoch']:.2f}% | "
            f"{r['trainable_parameters']:,} ({100 * r['trainable_parameters'] / r['total_parameters']:.2f}%) | "
            f"{_size(r['saved_bytes'])} | {step} | "
            f"{r['peak_memory_ratio']:.2f}x ({'<= ' if not r.get('peak_memory_exact', True) else ''}"
            f"{r['peak_memory_bytes'] / 2**20:.0f} MiB) | {inference} |"
        )
    if control is not None:
        verdict = (
            "within tolerance: the time ratios above compare like with like"
            if reliable
            else "**off: the machine's state changed between the measurements, so the time ratios of this run are "
            "unreliable and not shown** (measure again on an idle machine)"
        )
        lines += [
            "",
            f"Cost control: {control['what']} read {control['ratio']:.2f}x (tolerance "
            f"{100 * control['tolerance']:.0f}%), {verdict}.",
        ]
    lines += ["", "Targets:", ""]
    for t in summary["targets"]:
        state = "not judged" if t["met"] is None else "met" if t["met"] else "**missed**"
        lines.append(f"- {state}: {t['target']} (measured {t['measured']})")
    lines += ["", "![accuracy against trainable parameters](accuracy_vs_parameters.png)", ""]
    return "\n".join(lines)


def plot_accuracy_vs_parameters(table: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against trainable parameters (log scale), the way the PointGST paper's first figure shows it."""
    from .plots import plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    markers = "os^Dvp*hX<>"
    for i, r in enumerate(table):
        ax.scatter(
            r["trainable_parameters"],
            100 * r["final_epoch_test_accuracy"],
            s=70,
            marker=markers[i % len(markers)],
            label=f"{r['label']}: {100 * r['final_epoch_test_accuracy']:.1f}%",
        )
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(f"test accuracy (%), {PROTOCOL}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_file(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
