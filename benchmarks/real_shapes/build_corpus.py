"""Build the real-object pre-training corpus: the modelled objects of 0 A.D. (trees, rocks, buildings, helmets,
shields, weapons, animals, ...; Debian package `0ad-data`) and, with `--sources 0ad megaglest`, those of MegaGlest
(units, buildings, trees, rocks, props; `megaglest-data`), one normalised surface sample per distinct model, as a
`DatasetDict` for `point-peft pretrain --dataset disk`. Both packages' models are CC-BY-SA-3.0.

    python benchmarks/real_shapes/build_corpus.py --out data/real_corpus                            # 0 A.D. only
    python benchmarks/real_shapes/build_corpus.py --out data/real_corpus_2 --sources 0ad megaglest  # both

Models with the same geometry (in either package) are kept once; models with fewer than `--min-faces` triangles, no
surface, or a file the reader cannot use are left out and counted by reason. The label column is the model's top
folder (0 A.D.: gaia, props, skeletal, structural; MegaGlest: megaglest-techs, megaglest-tilesets, megaglest-data):
pre-training does not read it. Writes OUT/corpus (train: every model; test: a small held-out part for the
masked-modeling loss), OUT/sources.json (packages, versions, licences, counts, command) and OUT/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import DatasetDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import debian_package, megaglest_meshes, zero_ad_meshes  # noqa: E402

from hf_point_peft.atomic import atomic_directory, write_json_atomic, write_text_atomic  # noqa: E402
from hf_point_peft.data.meshes import clouds_dataset, normalise_cloud, sample_surface  # noqa: E402

SKIPPED_FOLDERS = ("test", "temp")  # 0 A.D.'s test and placeholder models


@dataclass(frozen=True)
class Source:
    package: str
    licence: str
    meshes: Callable[[Path], Iterable[tuple[str, object]]]  # unpacked package -> (name, Mesh or reason left out)
    label: Callable[[str], str]  # model name -> its top folder


SOURCES = {
    "0ad": Source(
        "0ad-data",
        "CC-BY-SA-3.0 (the package's copyright file: `Files: *`, Copyright 2010 Wildfire Games)",
        lambda root: zero_ad_meshes(root / "usr/share/games/0ad/mods/public/public.zip"),
        lambda name: name.split("/")[2],
    ),
    "megaglest": Source(
        "megaglest-data",
        "CC-BY-SA-3.0 (the package's copyright file: `Files: *`, Copyright 2001-2008 The Glest Team, and the "
        "factions' and tilesets' authors it lists)",
        lambda root: (
            ("megaglest/" + name, mesh) for name, mesh in megaglest_meshes(root / "usr/share/games/megaglest")
        ),
        lambda name: "megaglest-" + name.split("/")[1],
    ),
}


def select(
    meshes, label: Callable[[str], str], min_faces: int, seen: set[str]
) -> tuple[list[tuple[str, object]], Counter]:
    """The distinct usable models and what was left out (`meshes`: (name, Mesh or the reason it cannot be read));
    a model with the same geometry as one in `seen` (the keys of every model kept so far, any source) is left out."""
    kept, dropped = [], Counter()
    for name, mesh in meshes:
        if isinstance(mesh, str):
            dropped[mesh] += 1
            continue
        if label(name) in SKIPPED_FOLDERS:
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


def build(sources, out: Path, *, min_faces: int, num_points: int, test_fraction: float, seed: int) -> dict:
    """`sources`: (Source, unpacked package, version) in order; models are numbered and sampled in that order."""
    kept, seen, described = [], set(), []
    for source, root, version in sources:
        models, dropped = select(source.meshes(root), source.label, min_faces, seen)
        kept += [(name, mesh, source.label(name)) for name, mesh in models]
        described.append(
            {
                "package": source.package,
                "version": version,
                "licence": source.licence,
                "models_read": len(models) + sum(dropped.values()),
                "models_used": len(models),
                "left_out": dict(dropped),
                "by_folder": dict(Counter(source.label(name) for name, _ in models)),
            }
        )
    folders = sorted({label for _, _, label in kept})
    rng = np.random.default_rng(seed)
    rows = [
        (normalise_cloud(sample_surface(mesh, num_points, rng)), folders.index(label), name)
        for name, mesh, label in kept
    ]
    test = set(rng.choice(len(rows), size=max(1, round(test_fraction * len(rows))), replace=False).tolist())
    data = DatasetDict(
        train=clouds_dataset([r for i, r in enumerate(rows) if i not in test], folders, num_points),
        test=clouds_dataset([r for i, r in enumerate(rows) if i in test], folders, num_points),
    )
    atomic_directory(out / "corpus", lambda folder: data.save_to_disk(str(folder)))
    return {
        "models_read": sum(d["models_read"] for d in described),
        "models_used": len(kept),
        "train_clouds": len(data["train"]),
        "test_clouds": len(data["test"]),
        "sources": described,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cache", type=Path, default=Path("data/debian"), help="where the .deb files are kept")
    parser.add_argument(
        "--sources", nargs="+", choices=sorted(SOURCES), default=["0ad"], help="packages to read, in this order"
    )
    parser.add_argument("--min-faces", type=int, default=12)
    parser.add_argument("--num-points", type=int, default=2048)
    parser.add_argument("--test-fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(set(args.sources)) != len(args.sources):
        parser.error(f"--sources names a package twice: {args.sources}")
    sources = []
    for key in args.sources:
        package = debian_package(SOURCES[key].package, args.cache)
        sources.append((SOURCES[key], package.root, package.version))
    summary = build(
        sources,
        args.out,
        min_faces=args.min_faces,
        num_points=args.num_points,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )
    summary["command"] = "python benchmarks/real_shapes/build_corpus.py " + " ".join(argv or sys.argv[1:])
    write_json_atomic(args.out / "sources.json", summary)
    lines = [
        f"- {d['package']} {d['version']} ({d['licence']}): {d['models_used']} distinct models of {d['models_read']} "
        f"read; left out: {d['left_out']}"
        for d in summary["sources"]
    ]
    write_text_atomic(
        args.out / "README.md",
        f"# Real-object pre-training corpus\n\nMade by `{summary['command']}`: {summary['models_used']} distinct "
        f"models ({summary['train_clouds']} for training, {summary['test_clouds']} held out for the loss).\n\n"
        + "\n".join(lines)
        + "\n",
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
