"""torch.compile against eager mode, per method: train-step time, inference time and the largest logit difference.

Every method's model is built on the embedded backbone (Any2Point on the offline MiniLM with the benchmark's
CPU-size tokenizer), compiled once (compile time is reported separately), then eager and compiled steps run
interleaved round-robin over all methods and modes, so that every ratio compares calls made under the same machine
state; the figures are medians with the min-max spread over the rounds. The compiled model shares its parameters
with the eager one; a train step is forward + backward + AdamW, with dropout at its configured rate.

    python benchmarks/compile_cost.py --out benchmarks/results/compile_cpu
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import hf_point_peft  # noqa: F401
from hf_point_peft.atomic import write_json_atomic, write_text_atomic
from hf_point_peft.training.backbones import load_classifier, load_source
from hf_point_peft.training.benchmark import ANY2POINT_CPU
from hf_point_peft.training.methods import prepare_model

METHODS = ("full", "pointgst", "point-prompt", "any2point")


def _model(method: str, num_labels: int, batch: torch.Tensor) -> torch.nn.Module:
    if method == "any2point":
        return prepare_model("any2point", load_source("minilm"), num_labels=num_labels, **ANY2POINT_CPU)
    model = prepare_model(method, load_classifier("embedded", num_labels))
    if method == "point-prompt":
        from hf_point_peft import build_memory_bank

        # the bank's content does not change the cost; 64 random clouds stand in for a training split
        build_memory_bank(model, [torch.randn(64, batch.shape[1], 3, generator=torch.Generator().manual_seed(1))])
    return model


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _step(model, optimizer, x, y) -> None:
    model.train()
    loss = model(points=x, labels=y).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def _infer(model, x) -> torch.Tensor:
    model.eval()
    return model(points=x).logits


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-points", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds after warm-up")
    parser.add_argument("--out", type=Path, required=True, help="output prefix: writes OUT.json and OUT.md")
    args = parser.parse_args()
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    # compile time depends on whether an earlier run left compiled kernels in inductor's cache: recorded with it
    cache_warm = Path(cache_dir()).is_dir() and any(Path(cache_dir()).iterdir())
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.num_points, 3, generator=gen) * 0.5
    y = torch.randint(0, 15, (args.batch,), generator=gen)
    runs = {}
    for method in args.methods:
        model = _model(method, 15, x)
        compiled = torch.compile(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        compile_seconds = _timed(lambda c=compiled, o=optimizer: _step(c, o, x, y)) + _timed(
            lambda c=compiled: _infer(c, x)
        )
        difference = float((_infer(compiled, x) - _infer(model, x)).abs().max())
        runs[method] = {"model": model, "compiled": compiled, "optimizer": optimizer, "compile": compile_seconds}
        runs[method]["max_logit_difference"] = difference
        runs[method]["logit_scale"] = float(_infer(model, x).abs().max())
        for mode in ("eager", "compiled"):  # warm-up of both modes before the timed rounds
            _step(runs[method]["model" if mode == "eager" else "compiled"], optimizer, x, y)
    times = {m: {k: [] for k in ("eager_step", "compiled_step", "eager_infer", "compiled_infer")} for m in runs}
    for _ in range(args.rounds):
        for method, run in runs.items():
            for mode in ("eager", "compiled"):
                model = run["model" if mode == "eager" else "compiled"]
                times[method][f"{mode}_step"].append(_timed(lambda m=model, o=run["optimizer"]: _step(m, o, x, y)))
                times[method][f"{mode}_infer"].append(_timed(lambda m=model: _infer(m, x)))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    results = {
        "command": command,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "num_points": args.num_points,
        "rounds": args.rounds,
        "inductor_cache_warm": cache_warm,
        "methods": {
            m: {
                "compile_seconds": runs[m]["compile"],
                "max_logit_difference": runs[m]["max_logit_difference"],
                "logit_scale": runs[m]["logit_scale"],
                **{k: _spread(v) for k, v in times[m].items()},
            }
            for m in runs
        },
    }
    write_json_atomic(args.out.with_suffix(".json"), results)
    lines = [
        "# torch.compile vs eager on CPU",
        "",
        f"Command: `{command}`",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.num_points} points, "
        f"{args.rounds} interleaved rounds; medians (min-max) in seconds; ratio = compiled / eager of the medians; "
        f"compile time = the first compiled step and inference, inductor cache {'warm' if cache_warm else 'cold'}.",
        "",
        "| method | step eager | step compiled | step ratio | inference eager | inference compiled | inference ratio "
        "| max logit difference (logit scale) | compile time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results["methods"].items():

        def cell(key: str, r=r) -> str:
            return f"{r[key]['median']:.3f} ({r[key]['min']:.3f}-{r[key]['max']:.3f})"

        step_ratio = r["compiled_step"]["median"] / r["eager_step"]["median"]
        infer_ratio = r["compiled_infer"]["median"] / r["eager_infer"]["median"]
        lines.append(
            f"| {m} | {cell('eager_step')} | {cell('compiled_step')} | {step_ratio:.2f}x | {cell('eager_infer')} | "
            f"{cell('compiled_infer')} | {infer_ratio:.2f}x | {r['max_logit_difference']:.1e} ({r['logit_scale']:.2f}) "
            f"| {r['compile_seconds']:.0f} s |"
        )
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
