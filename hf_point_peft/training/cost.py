"""Cost of a fine-tuning method: train-step time, peak memory, inference time, time spent in shared-context builds.

Each method is measured in a fresh subprocess so that peak memory is its own: on CUDA the allocator's peak
(`torch.cuda.max_memory_allocated`), on CPU the process's peak resident set size minus the resident size right
after the imports (weights + activations + gradients + optimizer state, the CPU analogue). On CPU the subprocess
runs with glibc's mmap threshold fixed at 64 KiB (`MALLOC_MMAP_THRESHOLD_`): by default glibc raises it after the
first large free, so freed activations stay in a fragmented heap and peak RSS measures the allocator, not the
method. Times are medians over steps after warm-up. Compare ratios taken in one run: these machines are noisy.

    python -m hf_point_peft.training.cost '{"method": "pointgst", "batch": 32, "num_points": 2048, "num_groups": 128}'
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["CostSpec", "measure_cost", "measure_in_subprocess"]


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _contexts(model: torch.nn.Module) -> list:
    from ..tuners.context import CentresContext

    seen: dict[int, CentresContext] = {}
    for module in model.modules():
        ctx = getattr(module, "context", None)
        if isinstance(ctx, CentresContext):
            seen[id(ctx)] = ctx
    return list(seen.values())


def measure_cost(spec: CostSpec, baseline_rss: int | None = None) -> dict[str, Any]:
    """Measure in this process (use `measure_in_subprocess` for a clean peak-memory figure)."""
    from ..models import PointTransformerConfig, PointTransformerForClassification
    from .backbones import load_classifier, load_source
    from .methods import SOURCE_METHODS, prepare_model

    baseline_rss = _rss_bytes() if baseline_rss is None else baseline_rss
    device = torch.device(spec.device)
    torch.manual_seed(spec.seed)
    options = dict(spec.method_options)
    if spec.method in SOURCE_METHODS:
        base = load_source(spec.backbone or "minilm")
        options["num_labels"] = spec.num_labels
    elif spec.backbone is not None:
        base = load_classifier(spec.backbone, spec.num_labels, **spec.model_config)
    else:
        config = PointTransformerConfig(
            num_labels=spec.num_labels, num_groups=spec.num_groups, num_points=spec.num_points, **spec.model_config
        )
        base = PointTransformerForClassification(config)
    width = base.config.hidden_size
    model = prepare_model(spec.method, base, **options).to(device)
    if spec.method == "point-prompt" and model.peft_config["default"].use_memory_bank:
        # the bank's content does not change the cost; its size does
        model.base_model.point_prompt_bank["default"] = torch.randn(spec.bank_rows, width, device=device)
        model.peft_config["default"].bank_size = spec.bank_rows
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
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
    contexts = _contexts(model)
    step_times, build_times = [], []
    model.train()
    for step in range(spec.warmup + spec.steps):
        x, y = (t.to(device) for t in batches[step % 2])
        for ctx in contexts:
            ctx.build_seconds = 0.0
        _sync(device)
        start = time.perf_counter()
        with autocast:
            loss = model(points=x, labels=y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        _sync(device)
        if step >= spec.warmup:
            step_times.append(time.perf_counter() - start)
            build_times.append(sum(ctx.build_seconds for ctx in contexts))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline_rss
    model.eval()
    inference = []
    with torch.no_grad(), autocast:
        x = batches[0][0].to(device)
        model(points=x)
        for _ in range(spec.inference_repeats):
            _sync(device)
            start = time.perf_counter()
            model(points=x)
            _sync(device)
            inference.append(time.perf_counter() - start)
    trainable = sum(p.numel() for p in params)
    step = statistics.median(step_times)
    return {
        "spec": asdict(spec),
        "trainable_parameters": trainable,
        "step_seconds": step,
        "step_seconds_all": step_times,
        "context_build_seconds": statistics.median(build_times),
        "context_build_share": statistics.median(build_times) / step if step else 0.0,
        "peak_memory_bytes": int(peak),
        "peak_memory_kind": "cuda max_memory_allocated"
        if device.type == "cuda"
        else f"peak RSS minus RSS after imports, MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'default')}",
        "inference_seconds": statistics.median(inference),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def measure_in_subprocess(spec: CostSpec, timeout: float | None = None) -> dict[str, Any]:
    """Run `measure_cost` in a fresh Python process and return its result."""
    env = dict(os.environ)
    if spec.device == "cpu":
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 * 1024))
    proc = subprocess.run(
        [sys.executable, "-m", "hf_point_peft.training.cost", json.dumps(asdict(spec))],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cost probe for {spec.method!r} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main() -> None:
    baseline = _rss_bytes()
    spec = CostSpec(**json.loads(sys.argv[1]))
    print(json.dumps(measure_cost(spec, baseline_rss=baseline)))


if __name__ == "__main__":
    _main()
