"""Share of the encoder forward spent in FPS + kNN grouping (issue: foundation; target <= 15%).

Runs a Point-MAE-size encoder (width 384, 12 blocks, 6 heads) at B=32, N=2048, G=128, K=32 in eval mode and times
the grouping step and the whole forward, interleaved, on the same input. Writes JSON + a markdown line with the
command that produced it.

    python benchmarks/grouping_share.py --out benchmarks/results/grouping_share.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from hf_point_peft import PointTransformerConfig, PointTransformerModel
from hf_point_peft.atomic import write_json_atomic
from hf_point_peft.models.layers import group_cloud


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--groups", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results/grouping_share.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    config = PointTransformerConfig(num_groups=args.groups, num_points=args.points, num_labels=15)
    model = PointTransformerModel(config).to(device).eval()
    pts = torch.randn(args.batch, args.points, 3, device=device)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    group_times, forward_times = [], []
    with torch.no_grad():
        model(points=pts)  # warm-up
        for _ in range(args.repeats):
            group_times.append(timed(lambda: group_cloud(pts, config)))
            forward_times.append(timed(lambda: model(points=pts)))
    group, forward = statistics.median(group_times), statistics.median(forward_times)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "points": args.points,
        "groups": args.groups,
        "group_size": config.group_size,
        "grouping_seconds_median": group,
        "forward_seconds_median": forward,
        "grouping_share": group / forward,
        "target_share": 0.15,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
