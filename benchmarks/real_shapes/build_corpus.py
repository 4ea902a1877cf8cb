"""Build the real-object pre-training corpus: the modelled objects of 0 A.D. (trees, rocks, buildings, helmets,
shields, weapons, animals, ...; Debian package `0ad-data`), one normalised surface sample per distinct model, as a
`DatasetDict` for `point-peft pretrain --dataset disk`.

    python benchmarks/real_shapes/build_corpus.py --out data/real_corpus

Models with the same geometry are kept once; models with fewer than `--min-faces` triangles or no surface are left
out and counted. The label column is the model's top folder (gaia, props, skeletal, structural): pre-training does not
read it. Writes OUT/corpus (train: every model; test: a small held-out part for the masked-modeling loss),
OUT/sources.json (package, version, licence, counts, command) and OUT/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from datasets import DatasetDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import debian_package, zero_ad_meshes  # noqa: E402

from hf_point_peft.atomic import atomic_directory, write_json_atomic, write_text_atomic  # noqa: E402
from hf_point_peft.data.meshes import clouds_dataset, normalise_cloud, sample_surface  # noqa: E402

PACKAGE = "0ad-data"
ARCHIVE = "usr/share/games/0ad/mods/public/public.zip"
LICENCE = "CC-BY-SA-3.0 (the package's copyright file: `Files: *`, Copyright 2010 Wildfire Games)"
SKIPPED_FOLDERS = ("test", "temp")  # the game's test and placeholder models


def select(meshes, min_faces: int) -> tuple[list[tuple[str, object]], Counter]:
    """The distinct usable models and what was left out."""
    kept, seen, dropped = [], set(), Counter()
    for name, mesh in meshes:
        if name.split("/")[2] in SKIPPED_FOLDERS:
            dropped["a test or placeholder model"] += 1
            continue
        if len(mesh.faces) < min_faces:
            dropped[f"fewer than {min_faces} triangles"] += 1
            continue
        if not mesh.area() > 0:
            dropped["no surface"] += 1
            continue
        key = hashlib.sha256(mesh.vertices.tobytes() + mesh.faces.tobytes()).hexdigest()
        if key in seen:
            dropped["same geometry as a model kept"] += 1
            continue
        seen.add(key)
        kept.append((name, mesh))
    return kept, dropped


def build(meshes, out: Path, *, min_faces: int, num_points: int, test_fraction: float, seed: int) -> dict:
    kept, dropped = select(meshes, min_faces)
    folders = sorted({name.split("/")[2] for name, _ in kept})
    rng = np.random.default_rng(seed)
    rows = [
        (normalise_cloud(sample_surface(mesh, num_points, rng)), folders.index(name.split("/")[2]), name)
        for name, mesh in kept
    ]
    test = set(rng.choice(len(rows), size=max(1, round(test_fraction * len(rows))), replace=False).tolist())
    data = DatasetDict(
        train=clouds_dataset([r for i, r in enumerate(rows) if i not in test], folders, num_points),
        test=clouds_dataset([r for i, r in enumerate(rows) if i in test], folders, num_points),
    )
    atomic_directory(out / "corpus", lambda folder: data.save_to_disk(str(folder)))
    return {
        "models_read": len(kept) + sum(dropped.values()),
        "models_used": len(kept),
        "left_out": dict(dropped),
        "by_folder": dict(Counter(name.split("/")[2] for name, _ in kept)),
        "train_clouds": len(data["train"]),
        "test_clouds": len(data["test"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cache", type=Path, default=Path("data/debian"), help="where the .deb files are kept")
    parser.add_argument("--min-faces", type=int, default=12)
    parser.add_argument("--num-points", type=int, default=2048)
    parser.add_argument("--test-fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    package = debian_package(PACKAGE, args.cache)
    summary = build(
        zero_ad_meshes(package.root / ARCHIVE),
        args.out,
        min_faces=args.min_faces,
        num_points=args.num_points,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    summary["sources"] = [{"package": package.name, "version": package.version, "licence": LICENCE}]
    summary["command"] = "python benchmarks/real_shapes/build_corpus.py " + " ".join(argv or sys.argv[1:])
    write_json_atomic(args.out / "sources.json", summary)
    write_text_atomic(
        args.out / "README.md",
        f"# Real-object pre-training corpus (0 A.D. models)\n\nMade by `{summary['command']}`: "
        f"{summary['models_used']} distinct models of {summary['models_read']} read from {package.name} "
        f"{package.version} ({LICENCE}); left out: {summary['left_out']}.\n",
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
