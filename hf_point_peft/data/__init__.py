"""Point-cloud datasets as `datasets.DatasetDict`: real benchmark readers, synthetic shapes, transforms, collator."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from datasets import DatasetDict, load_from_disk

from ..errors import SettingError
from .collator import AUGMENTATIONS, PointCloudCollator
from .names import DATASETS
from .readers import (
    MODELNET40_CLASSES,
    SCANOBJECTNN_CLASSES,
    SCANOBJECTNN_VARIANTS,
    read_modelnet40_h5,
    read_modelnet40_text,
    read_scanobjectnn,
)
from .splits import train_validation_split, validation_grouping
from .synthetic import SYNTHETIC_CLASSES, load_synthetic_shapes, make_synthetic_shapes

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "MODELNET40_CLASSES",
    "PointCloudCollator",
    "SCANOBJECTNN_CLASSES",
    "SYNTHETIC_CLASSES",
    "check_dataset_source",
    "dataset_files",
    "load_point_dataset",
    "load_synthetic_shapes",
    "make_synthetic_shapes",
    "read_modelnet40_h5",
    "read_modelnet40_text",
    "read_scanobjectnn",
    "train_validation_split",
    "validation_grouping",
]


def dataset_files(name: str, num_categories: int = 40) -> list[str]:
    """The files (glob patterns, relative to the data folder) that the reader of dataset `name` needs."""
    if name == "modelnet40":
        prefix = f"modelnet{num_categories}"
        return [f"{prefix}_shape_names.txt", f"{prefix}_train.txt", f"{prefix}_test.txt"]
    if name == "modelnet40-h5":
        return ["shape_names.txt", "ply_data_train*.h5", "ply_data_test*.h5"]
    if name.startswith("scanobjectnn-"):
        folder, suffix = SCANOBJECTNN_VARIANTS[name.split("-", 1)[1].upper()]
        return [f"{folder}/training_objectdataset{suffix}.h5", f"{folder}/test_objectdataset{suffix}.h5"]
    if name == "disk":
        return ["dataset_dict.json"]
    return []


def _reader(name: str):
    if name.startswith("synthetic"):
        return load_synthetic_shapes
    return {
        "modelnet40": read_modelnet40_text,
        "modelnet40-h5": read_modelnet40_h5,
        "disk": load_from_disk,
    }.get(name, read_scanobjectnn)


def check_dataset_source(name: str, path: str | os.PathLike | None, options: dict | None = None) -> None:
    """Everything about a dataset that can be checked without reading it: the name, the folder and the files its
    reader needs, and the names of the reader options. Raises `SettingError` naming the setting."""
    options = options or {}
    if name not in DATASETS:
        raise SettingError("dataset", name, f"unknown dataset; choose one of {', '.join(DATASETS)}")
    if name.startswith("synthetic"):
        accepted = {"train_per_class", "test_per_class", "num_points", "seed", "cache_dir"}
    elif name == "disk":
        accepted = set()
    else:
        skip = {"root", "variant", "self"}
        accepted = {p for p in inspect.signature(_reader(name)).parameters if p not in skip}
    for key, value in options.items():
        if key not in accepted:
            valid = ", ".join(sorted(accepted)) or "none"
            raise SettingError(f"dataset_options.{key}", value, f"not an option of dataset {name}; valid keys: {valid}")
    if name.startswith("synthetic"):
        if path is not None:
            raise SettingError("data_path", path, f"dataset {name} generates its shapes and reads no files")
        return
    if path is None:
        raise SettingError("data_path", None, f"dataset {name} is read from its files: pass their folder")
    folder = Path(path)
    if not folder.is_dir():
        raise SettingError("data_path", path, "no such folder" if not folder.exists() else "a file, not a folder")
    for pattern in dataset_files(name, options.get("num_categories", 40)):
        if not any(folder.glob(pattern)):
            raise SettingError(
                "data_path", path, f"no {pattern} there; dataset {name} needs {', '.join(dataset_files(name))}"
            )


def load_point_dataset(name: str, path: str | os.PathLike | None = None, **kwargs) -> DatasetDict:
    """Load a dataset by name: the synthetic shapes (offline), a real benchmark from its files at `path`, or a
    `DatasetDict` saved with `save_to_disk` ("disk"). kwargs go to the reader."""
    if name in ("synthetic", "synthetic-hard"):
        return load_synthetic_shapes(variant="hard" if name.endswith("hard") else "standard", **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if path is None:
        raise SettingError("data_path", None, f"dataset {name!r} is read from its files: pass their folder")
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset folder not found: {path}")
    if name == "modelnet40":
        data = read_modelnet40_text(path, **kwargs)
    elif name == "modelnet40-h5":
        data = read_modelnet40_h5(path, **kwargs)
    elif name.startswith("scanobjectnn-"):
        data = read_scanobjectnn(path, name.split("-", 1)[1].upper(), **kwargs)
    else:
        try:
            data = load_from_disk(str(path))
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 - datasets fails inside pyarrow on a damaged or empty split
            empty = _empty_saved_splits(Path(path))
            if empty:
                raise ValueError(
                    f"the {' and '.join(empty)} split(s) of the dataset saved at {path} hold no clouds: save it again "
                    "with clouds in every split"
                ) from err
            raise ValueError(f"could not read the dataset saved at {path}: {type(err).__name__}: {err}") from err
        if not isinstance(data, DatasetDict):
            raise ValueError(f"{path} holds a single Dataset; save a DatasetDict with 'train' and 'test' splits")
    _check_splits(data, name, path)
    return data


def _empty_saved_splits(path: Path) -> list[str]:
    """The splits of a `save_to_disk` folder saved without a single row (no data files: `load_from_disk` then fails
    with an IndexError that names none)."""
    empty = []
    for state in sorted(path.glob("*/state.json")):
        try:
            files = json.loads(state.read_text()).get("_data_files")
        except (OSError, ValueError):
            continue
        if files == []:
            empty.append(state.parent.name)
    return empty


def _check_splits(data: DatasetDict, name: str, path) -> None:
    """Every split holds clouds and names the same classes as the training split, in the same order: a test label
    read against other class names gives a meaningless accuracy, and an empty split fails only after training."""
    reference = data["train"].features.get("label") if "train" in data else None
    for split, part in data.items():
        missing = [column for column in ("points", "label") if column not in part.column_names]
        if missing:
            raise ValueError(
                f"the {split} split of {name} at {path} has no {' and no '.join(repr(m) for m in missing)} column "
                f"(it has {', '.join(part.column_names)}): rename its columns (data.rename_column) and save again"
            )
        if part.num_rows == 0:
            raise ValueError(f"the {split} split of {name} at {path} is empty: it holds no clouds")
        label = part.features.get("label")
        if reference is not None and label != reference:
            raise ValueError(
                f"the {split} split of {name} at {path} has other classes than the train split ({_classes(label)} "
                f"against {_classes(reference)}): give every split the same ClassLabel"
            )


def _classes(feature) -> str:
    names = getattr(feature, "names", None)
    if names is None:
        return repr(feature)
    return f"{len(names)} classes: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
