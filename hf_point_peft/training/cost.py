"""Cost of a fine-tuning method: train-step time, peak memory, inference time, time spent in per-forward geometry builds.

Each method is measured in a fresh subprocess so that peak memory is its own: on CUDA the allocator's peak
(`torch.cuda.max_memory_allocated`), on CPU the process's peak resident set size minus a baseline: the resident
size once the base model is built, minus its weights (so the figure is weights + activations + gradients + optimizer
state, the CPU analogue, without the libraries that building a model imports lazily). On CPU, time and memory
come from two subprocesses: times from one with glibc's default allocator (what a user's training runs with), peak
memory from one with glibc's mmap threshold fixed at 64 KiB (`MALLOC_MMAP_THRESHOLD_`): by default glibc raises it
after the first large free, so freed activations stay in a fragmented heap and peak RSS measures the allocator, not
the method; but an mmap per allocation above 64 KiB slows steps down by up to 2x, unevenly across methods, so that
process's times are not used. Times are medians over steps after warm-up. Compare ratios taken in one run: these
machines are noisy.

    python -m hf_point_peft.training.cost '{"method": "pointgst", "batch": 32, "num_points": 2048, "num_groups": 128}'

Methods are the names of `training.methods.METHODS`, plus full-fine-tuning variants of the source methods
(`FULL_VARIANTS`: "any2point-full" is the Any2Point pipeline, tokenizer + projection + source encoder + adapters +
head, with every parameter trainable). A source method's encoder is `load_source(backbone)` or, with
`source_config`, a randomly initialised transformers model built from that config (`SOURCE_PRESETS`: "bert-base").
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

__all__ = ["FULL_VARIANTS", "SOURCE_PRESETS", "CostSpec", "build_source", "measure_cost", "measure_in_subprocess"]

# full fine-tuning of a source method's pipeline: the method's model with every parameter set trainable (the source
# weights the method reads under no_grad, such as Any2Point's position table, then get no gradient and no optimizer
# state; `parameters_with_gradients` reports what actually trains)
FULL_VARIANTS = {"any2point-full": "any2point"}

# randomly initialised source encoders for the cost probe (nothing is downloaded): transformers config fields with
# `model_type`; `model_kwargs` go to the model's constructor
SOURCE_PRESETS: dict[str, dict[str, Any]] = {
    "bert-base": {
        "model_type": "bert",
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "vocab_size": 30522,
        "model_kwargs": {"add_pooling_layer": False},  # Any2Point never reads the pooler
    },
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class CostSpec:
    """What to measure. `model_config` are `PointTransformerConfig` overrides (Point-MAE size by default)."""

    method: str
    batch: int = 32
    num_points: int = 2048
    num_groups: int = 128
    num_labels: int = 15
    steps: int = 3
    warmup: int = 1
    inference_repeats: int = 3
    device: str = "cpu"
    mixed_precision: str = "no"  # "no" | "bf16"
    seed: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    bank_rows: int = 11416  # Point-PEFT: rows of the (random) memory bank, PB_T50_RS's training-set size
    backbone: str | None = None  # None: a Point-MAE-size model from `model_config`; else a backbone name / folder
    # source methods only: a transformers config (`model_type` + fields, optional `model_kwargs`) of a randomly
    # initialised source encoder, used instead of `load_source(backbone or "minilm")`
    source_config: dict[str, Any] | None = None


def build_source(source_config: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised transformers encoder (`AutoModel`) from config fields with a `model_type`."""
    from transformers import AutoConfig, AutoModel

    fields = dict(source_config)
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise ValueError(f"source_config needs a 'model_type' (e.g. 'bert'), got keys {sorted(source_config)}")
    model_kwargs = fields.pop("model_kwargs", {})
    return AutoModel.from_config(AutoConfig.for_model(model_type, **fields), **model_kwargs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _timed_builds(device: torch.device) -> Iterator[list[float]]:
    """Time, from outside the forward path, every value the forwards' `PointGeometry` objects build (graph bases,
    GA graphs, the bank query): `PointGeometry.get` is shadowed by a timing one for the duration of the block;
    yields a one-element list that accumulates the seconds (device-synchronised)."""
    from ..geometry.per_forward import PointGeometry

    seconds = [0.0]
    original = PointGeometry.get

    def get(geometry, key, build):
        def timed(centres):
            _sync(device)
            start = time.perf_counter()
            value = build(centres)
            _sync(device)
            seconds[0] += time.perf_counter() - start
            return value

        return original(geometry, key, timed)

    PointGeometry.get = get
    try:
        yield seconds
    finally:
        PointGeometry.get = original


def _peak_rss() -> int:
    """This process's peak resident size (VmHWM). Not `ru_maxrss`: Linux carries the parent's resident size at fork
    into a child's ru_maxrss across exec, so a probe started by a big process (the benchmark) would report that."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover - not Linux


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # pragma: no cover - older kernels / restricted containers
        return False


def _tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def measure_cost(spec: CostSpec, baseline_rss: int | None = None, inference: bool = True) -> dict[str, Any]:
    """Measure in this process (use `measure_in_subprocess` for a clean peak-memory figure). `inference=False` skips
    the inference timing (`inference_seconds` is then None)."""
    device = torch.device(spec.device)
    torch.manual_seed(spec.seed)
    base, options = _base_model(spec)
    # CPU baseline: the resident size once the base model exists, minus its weights. Building the model pulls in the
    # rest of transformers / peft / the source package lazily (hundreds of MiB for every method alike), which a
    # baseline taken right after the imports would count as the method's memory.
    if baseline_rss is None:
        baseline_rss = _rss_bytes() - _tensor_bytes(base)
    reset = _reset_peak_rss()  # loading's own transient peak is not the method's
    peak_before = _peak_rss()
    model = _prepared_model(spec, base, options, device)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(spec.seed)
    batches = [
        (
            torch.randn(spec.batch, spec.num_points, 3, generator=gen),
            torch.randint(0, spec.num_labels, (spec.batch,), generator=gen),
        )
        for _ in range(2)
    ]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.mixed_precision == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_times, build_times = _timed_steps(spec, model, params, batches, autocast, device)
    exact = True
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak_rss = _peak_rss()
        # without a reset, a loading peak higher than training's makes the figure an upper bound only
        exact = reset or peak_rss > peak_before
        peak = peak_rss - baseline_rss
    inference_times = _timed_inference(spec, model, batches[0][0], autocast, device) if inference else []
    step = statistics.median(step_times)
    allocator = f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'default')}"
    return {
        "spec": asdict(spec),
        "trainable_parameters": sum(p.numel() for p in params),
        "parameters_with_gradients": sum(p.numel() for p in params if p.grad is not None),  # the last step's
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "step_seconds": step,
        "step_seconds_all": step_times,
        "context_build_seconds": statistics.median(build_times),
        "context_build_share": statistics.median(build_times) / step if step else 0.0,
        "peak_memory_bytes": int(peak),
        "peak_memory_exact": exact,
        "peak_memory_kind": "cuda max_memory_allocated"
        if device.type == "cuda"
        else f"peak RSS minus (RSS with the base model built, minus its weights), {allocator}",
        "inference_seconds": statistics.median(inference_times) if inference_times else None,
        "allocator": allocator,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def _base_model(spec: CostSpec) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The base model of `spec` (a point classifier, or a source encoder for the source methods) and the method
    options to prepare it with."""
    from ..models import PointTransformerConfig, PointTransformerForClassification
    from .backbones import load_classifier, load_source
    from .methods import SOURCE_METHODS

    options = dict(spec.method_options)
    method = FULL_VARIANTS.get(spec.method, spec.method)
    if method in SOURCE_METHODS:
        base = (
            build_source(spec.source_config)
            if spec.source_config is not None
            else load_source(spec.backbone or "minilm")
        )
        options["num_labels"] = spec.num_labels
        return base, options
    if spec.source_config is not None:
        raise ValueError(f"source_config is for source methods {SOURCE_METHODS}, not {spec.method!r}")
    if spec.backbone is not None:
        return load_classifier(spec.backbone, spec.num_labels, **spec.model_config), options
    config = PointTransformerConfig(
        num_labels=spec.num_labels, num_groups=spec.num_groups, num_points=spec.num_points, **spec.model_config
    )
    return PointTransformerForClassification(config), options


def _prepared_model(spec: CostSpec, base, options: dict[str, Any], device: torch.device) -> torch.nn.Module:
    """`base` set up for the method (every parameter trainable for the full variants; Point-PEFT with a memory bank
    of `bank_rows` rows: its content does not change the cost, its size does)."""
    from .methods import prepare_model

    method = FULL_VARIANTS.get(spec.method, spec.method)
    width = base.config.hidden_size
    model = prepare_model(method, base, **options).to(device)
    if spec.method in FULL_VARIANTS:
        model.requires_grad_(True)
    if method == "point-prompt" and model.peft_config["default"].use_memory_bank:
        model.base_model.point_prompt_bank["default"] = torch.randn(spec.bank_rows, width, device=device)
        model.peft_config["default"].bank_size = spec.bank_rows
    return model


def _timed_steps(spec: CostSpec, model, params, batches, autocast, device) -> tuple[list[float], list[float]]:
    """Warm-up, then `spec.steps` timed AdamW steps (forward, backward, clipping, step): each step's seconds and the
    seconds of its geometry builds."""
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    step_times, build_times = [], []
    model.train()
    for step in range(spec.warmup + spec.steps):
        x, y = (t.to(device) for t in batches[step % 2])
        _sync(device)
        start = time.perf_counter()
        with _timed_builds(device) as build_seconds, autocast:
            loss = model(points=x, labels=y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        _sync(device)
        if step >= spec.warmup:
            step_times.append(time.perf_counter() - start)
            build_times.append(build_seconds[0])
    return step_times, build_times


def _timed_inference(spec: CostSpec, model, x: torch.Tensor, autocast, device) -> list[float]:
    """One untimed inference, then `spec.inference_repeats` timed ones (eval mode, no grad)."""
    model.eval()
    times = []
    with torch.no_grad(), autocast:
        x = x.to(device)
        model(points=x)
        for _ in range(spec.inference_repeats):
            _sync(device)
            start = time.perf_counter()
            model(points=x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return times


# what a failed allocation looks like in a probe's stderr (Python, PyTorch's CPU allocator, C++)
_ALLOCATION_ERRORS = ("MemoryError", "can't allocate memory", "DefaultCPUAllocator", "std::bad_alloc")


class _AddressSpaceLimit:
    """`preexec_fn` capping the child's address space, so that a probe too large for a shared machine fails with
    an allocation error in itself instead of waking the system's out-of-memory killer."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (self.limit, self.limit))


def measure_in_subprocess(
    spec: CostSpec, timeout: float | None = None, max_memory_bytes: int | None = None
) -> dict[str, Any]:
    """Measure `spec` in fresh Python processes and return the result. On CPU: times from a process with glibc's
    default allocator, peak memory from a second one (warm-up + one step, no inference) with the mmap threshold
    fixed (see the module docstring); on CUDA one process gives both. `max_memory_bytes` caps each child's address
    space (CPU runs on shared machines; the cap counts virtual memory, so leave some headroom)."""
    return measure_together({spec.method: spec}, 1, timeout, max_memory_bytes)[spec.method]


def measure_together(
    specs: dict[str, CostSpec], rounds: int = 3, timeout: float | None = None, max_memory_bytes: int | None = None
) -> dict[str, dict[str, Any]]:
    """The costs of several methods measured together, so that their ratios compare calls made under one machine
    state: `rounds` rounds, each running every method's timing probe once, round-robin, each in a fresh process;
    step and inference times are the medians over the rounds (`*_rounds` keeps every round's figure). Peak memory
    does not depend on the machine's load: one probe per method (on CPU in its own process, see
    `measure_in_subprocess`)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    timing_env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    timings: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    for _ in range(rounds):
        for name, spec in specs.items():
            env = timing_env if spec.device == "cpu" else dict(os.environ)
            timings[name].append(_run_child(spec, env, timeout, max_memory_bytes, memory_only=False))
    return {name: _combine(spec, timings[name], timeout, max_memory_bytes) for name, spec in specs.items()}


def _combine(spec: CostSpec, runs: list[dict[str, Any]], timeout, max_memory_bytes) -> dict[str, Any]:
    """One method's rounds as one result (medians of the times, every round kept), with its peak memory."""
    result = dict(runs[0])
    if len(runs) > 1:
        for key in ("step_seconds", "inference_seconds", "context_build_seconds"):
            result[f"{key}_rounds"] = [r[key] for r in runs]
            result[key] = statistics.median(result[f"{key}_rounds"])
        step = result["step_seconds"]
        result["context_build_share"] = result["context_build_seconds"] / step if step else 0.0
    result["rounds"] = len(runs)
    if spec.device != "cpu":
        return result
    memory_env = dict(os.environ)
    memory_env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 * 1024))
    memory = _run_child(replace(spec, steps=1), memory_env, timeout, max_memory_bytes, memory_only=True)
    for key in ("peak_memory_bytes", "peak_memory_exact", "peak_memory_kind"):
        result[key] = memory[key]
    result["timing_allocator"], result["memory_allocator"] = result.pop("allocator"), memory["allocator"]
    return result


def _run_child(
    spec: CostSpec, env: dict[str, str], timeout: float | None, max_memory_bytes: int | None, memory_only: bool
) -> dict[str, Any]:
    command = [sys.executable, "-m", "hf_point_peft.training.cost", json.dumps(asdict(spec))]
    proc = subprocess.run(
        command + (["--memory-only"] if memory_only else []),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_AddressSpaceLimit(max_memory_bytes) if max_memory_bytes else None,
    )
    if proc.returncode != 0:
        why = f"exit status {proc.returncode}"
        if proc.returncode == -9:
            why += " (SIGKILL: most likely the out-of-memory killer; try a smaller batch or a larger machine)"
        elif max_memory_bytes and any(s in proc.stderr for s in _ALLOCATION_ERRORS):
            why += f" under a {max_memory_bytes / 2**30:.1f} GiB address-space cap (an allocation error: it needs more)"
        raise RuntimeError(f"cost probe for {spec.method!r} failed, {why}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main() -> None:
    spec = CostSpec(**json.loads(sys.argv[1]))
    print(json.dumps(measure_cost(spec, inference="--memory-only" not in sys.argv[2:])))


if __name__ == "__main__":
    _main()
