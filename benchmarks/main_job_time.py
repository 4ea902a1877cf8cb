"""Wall time of the main job, `point-peft finetune` with no arguments, as a newcomer runs it on a fresh machine.

Each run starts the real command in a new process with a fresh output folder and, unless --warm-cache, a fresh data
cache (so the time includes generating the synthetic shapes, as a first run does). Writes the figure, the exact
command, the machine's load before and after, and each run's accuracy to a JSON file. The README's figure comes from
this file; take it on an idle machine (the script records the load average and flags a busy one).

    python benchmarks/main_job_time.py --out benchmarks/results/main_job_time_cpu.json
    python benchmarks/main_job_time.py --out /tmp/t.json -- --epochs 1 --max-steps-per-epoch 1   # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run_once(extra: list[str], warm_cache: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="main-job-") as tmp:
        env = dict(os.environ)
        if not warm_cache:
            env["HF_POINT_PEFT_CACHE"] = str(Path(tmp) / "data-cache")
        command = [
            sys.executable,
            "-m",
            "hf_point_peft_cli",
            "finetune",
            "--output-dir",
            str(Path(tmp) / "run"),
            *extra,
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the main job failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        accuracy = re.search(r"final-epoch test accuracy ([\d.]+)%", proc.stdout)
        return {"seconds": seconds, "test_accuracy_percent": float(accuracy.group(1)) if accuracy else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/main_job_time_cpu.json")
    parser.add_argument("--repeats", type=int, default=1, help="runs to time (the median is the figure)")
    parser.add_argument("--warm-cache", action="store_true", help="keep the synthetic shapes of an earlier run")
    parser.add_argument("extra", nargs="*", help="after --: extra arguments of point-peft finetune")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    load_before = _load()
    runs = [run_once(args.extra, args.warm_cache) for _ in range(args.repeats)]
    load_after = _load()
    seconds = statistics.median(r["seconds"] for r in runs)
    finetune = "point-peft finetune" + "".join(f" {shlex.quote(a)}" for a in args.extra)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "measured": finetune + " (fresh output folder" + (")" if args.warm_cache else ", fresh data cache)"),
        "seconds_median": seconds,
        "minutes_median": seconds / 60,
        "runs": runs,
        "cpu_count": cores,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "idle": load_before < 0.5,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    busy = "" if result["idle"] else f" (machine busy: load {load_before:.2f} before the run; retake when idle)"
    print(f"{finetune}: {seconds / 60:.1f} min on {cores} CPU cores{busy}; written to {args.out}")


if __name__ == "__main__":
    main()
