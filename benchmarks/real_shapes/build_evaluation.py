"""Build the real-shape evaluation set: Sweet Home 3D's modelled household objects, labelled by object type, in three
object-disjoint train / test splits, each a `DatasetDict` for `point-peft benchmark --dataset disk`.

    python benchmarks/real_shapes/build_evaluation.py --out data/real_shapes

Labels come from each item's name (and, for people, vehicles, doors and windows, its catalogue category); an item
whose name matches no class or two classes is left out and counted. Items with the same geometry (the same model in
two catalogues, or one model with other materials) are one object: all its clouds go to one side of every split.
Training objects give `--train-clouds` clouds each (independent surface samples), test objects one. Every cloud keeps
its object in the `group` column, so the validation split inside training is object-disjoint as well.
Writes OUT/split_<seed>/ (train, test), OUT/sources.json (packages, versions, licences, counts) and OUT/README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from datasets import DatasetDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import CatalogueItem, catalogue_items, debian_package, geometry_key  # noqa: E402

from hf_point_peft.atomic import atomic_directory, write_json_atomic, write_text_atomic  # noqa: E402
from hf_point_peft.data.meshes import clouds_dataset, normalise_cloud, read_obj, sample_surface  # noqa: E402

# (class, pattern on the lower-case item name); a lamp rule wins over the furniture it stands on ("table lamp")
NAME_RULES = (
    ("chair", r"\b(chairs?|armchairs?|stools?|benches|bench|seats?)\b"),
    ("table", r"\b(tables?|desks?)\b"),
    ("sofa", r"\b(sofas?|couch|couches|settee|loveseat)\b"),
    ("bed", r"\b(beds?|crib|cot|bunk)\b"),
    ("storage", r"\b(wardrobes?|cabinets?|bookcases?|shelf|shelves|dresser|chest|cupboards?|drawers?|sideboard)\b"),
    ("plant", r"\b(plants?|trees?|flowers?|bush|palm|tulips?|cactus|fern)\b"),
)
LAMP = ("lamp", r"\b(lamps?|lights?|chandelier|sconce|lantern)\b")
CATEGORY_CLASSES = {"Characters": "person", "Vehicles": "vehicle", "Doors and windows": "door_window"}
CLASSES = ("chair", "table", "sofa", "bed", "storage", "plant", "lamp", "person", "vehicle", "door_window")

FURNITURE_PACKAGE, APPLICATION_PACKAGE = "sweethome3d-furniture", "sweethome3d"
DEFAULT_CATALOGUE = "com/eteks/sweethome3d/io/DefaultFurnitureCatalog.properties"
PLUGIN_CATALOGUE = "PluginFurnitureCatalog.properties"


def label_of(item: CatalogueItem) -> str | None:
    """The item's class, or None when its name matches no class or several."""
    if item.category in CATEGORY_CLASSES:
        return CATEGORY_CLASSES[item.category]
    name = item.name.lower()
    if re.search(LAMP[1], name):
        return "lamp"
    matched = {label for label, pattern in NAME_RULES if re.search(pattern, name)}
    return matched.pop() if len(matched) == 1 else None


def collect_objects(items: list[CatalogueItem]) -> tuple[dict[str, dict], Counter]:
    """Objects keyed by geometry: {key: {"label", "items": [...]}}; and what was left out, with the reasons."""
    objects: dict[str, dict] = {}
    dropped: Counter = Counter()
    for item in items:
        label = label_of(item)
        if label is None:
            dropped["name matches no class or several"] += 1
            continue
        text = item.geometry_text()
        try:
            mesh = read_obj(text, f"{item.catalogue}:{item.model}")
            if not mesh.area() > 0:
                raise ValueError("no surface")
        except ValueError:
            dropped["model without faces or surface"] += 1
            continue
        key = geometry_key(text)
        entry = objects.setdefault(key, {"label": label, "items": [], "mesh": mesh})
        entry["items"].append(item)
        if entry["label"] != label:
            entry["label"] = None  # one geometry, two names of different classes
    for key in [k for k, v in objects.items() if v["label"] is None]:
        dropped["one geometry under names of two classes"] += len(objects.pop(key)["items"])
    return objects, dropped


def object_split(labels: dict[str, str], test_fraction: float, seed: int) -> set[str]:
    """The test objects: `test_fraction` of each class's objects (at least one), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key in sorted(labels):
        by_class[labels[key]].append(key)
    test = set()
    for label in sorted(by_class):
        keys = by_class[label]
        count = max(1, round(test_fraction * len(keys)))
        test.update(rng.choice(keys, size=count, replace=False).tolist())
    return test


def object_clouds(objects: dict[str, dict], num_points: int, clouds: int, seed: int) -> dict[str, list[np.ndarray]]:
    """`clouds` normalised surface samples of every object (the mesh of its first item), drawn once for all splits."""
    rng = np.random.default_rng(seed)
    result = {}
    for key in sorted(objects):
        mesh = objects[key]["mesh"]
        result[key] = [normalise_cloud(sample_surface(mesh, num_points, rng)) for _ in range(clouds)]
    return result


def build(
    items: list[CatalogueItem],
    out: Path,
    *,
    min_objects: int,
    splits: int,
    test_fraction: float,
    num_points: int,
    train_clouds: int,
    seed: int,
) -> dict:
    objects, dropped = collect_objects(items)
    counts = Counter(v["label"] for v in objects.values())
    classes = [c for c in CLASSES if counts[c] >= min_objects]
    for label in sorted(set(counts) - set(classes)):
        dropped[f"class {label!r} has fewer than {min_objects} objects"] += counts[label]
    objects = {k: v for k, v in objects.items() if v["label"] in classes}
    labels = {k: v["label"] for k, v in objects.items()}
    clouds = object_clouds(objects, num_points, train_clouds, seed)
    summary = {"classes": classes, "objects": dict(Counter(labels.values())), "left_out": dict(dropped), "splits": {}}
    for split in range(splits):
        test = object_split(labels, test_fraction, seed + split)

        def rows(keys, per_object):
            return [(c, classes.index(labels[k]), k) for k in sorted(keys) for c in clouds[k][:per_object]]

        data = DatasetDict(
            train=clouds_dataset(rows(set(labels) - test, train_clouds), classes, num_points),
            test=clouds_dataset(rows(test, 1), classes, num_points),
        )
        atomic_directory(out / f"split_{split}", lambda folder, data=data: data.save_to_disk(str(folder)))
        summary["splits"][f"split_{split}"] = {"train_clouds": len(data["train"]), "test_clouds": len(data["test"])}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--cache", type=Path, default=Path("data/debian"), help="where the .deb files are kept")
    parser.add_argument("--min-objects", type=int, default=20, help="classes with fewer objects are left out")
    parser.add_argument("--splits", type=int, default=3, help="object-disjoint splits (seeds seed, seed+1, ...)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--num-points", type=int, default=2048)
    parser.add_argument("--train-clouds", type=int, default=2, help="clouds per training object")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    furniture = debian_package(FURNITURE_PACKAGE, args.cache)
    application = debian_package(APPLICATION_PACKAGE, args.cache)
    items = [
        item
        for archive in sorted((furniture.root / "usr/share/sweethome3d/furniture").glob("*.sh3f"))
        for item in catalogue_items(archive, PLUGIN_CATALOGUE)
    ]
    jar = application.root / "usr/share/sweethome3d/sweethome3d.jar"
    items += catalogue_items(jar, DEFAULT_CATALOGUE)
    options = {k: getattr(args, k) for k in ("min_objects", "splits", "test_fraction", "num_points", "train_clouds")}
    summary = build(items, args.out, seed=args.seed, **options)
    catalogues = Counter(item.catalogue for item in items)
    summary["sources"] = [
        {"package": p.name, "version": p.version, "catalogues": {c: n for c, n in catalogues.items()}}
        for p in (furniture, application)
    ]
    summary["licences"] = sorted({f"{item.catalogue}: {item.licence}" for item in items})
    summary["command"] = "python benchmarks/real_shapes/build_evaluation.py " + " ".join(argv or sys.argv[1:])
    write_json_atomic(args.out / "sources.json", summary)
    write_text_atomic(args.out / "README.md", _readme(summary))
    print(json.dumps({k: summary[k] for k in ("classes", "objects", "left_out", "splits")}, indent=1))
    return 0


def _readme(summary: dict) -> str:
    lines = [
        "# Real-shape evaluation set (Sweet Home 3D furniture)",
        "",
        f"Made by `{summary['command']}`.",
        "",
        "| class | objects |",
        "| --- | --- |",
        *(f"| {c} | {summary['objects'][c]} |" for c in summary["classes"]),
        "",
        "Left out: " + (", ".join(f"{n} ({why})" for why, n in summary["left_out"].items()) or "nothing"),
        "",
        "Splits: "
        + ", ".join(f"{s}: {v['train_clouds']} / {v['test_clouds']} clouds" for s, v in summary["splits"].items()),
        "",
        "Licences of the catalogues:",
        *(f"- {line}" for line in summary["licences"]),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
