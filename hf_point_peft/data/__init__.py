"""Point-cloud datasets as `datasets.DatasetDict`: real benchmark readers, synthetic shapes, transforms, collator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import DatasetDict, load_from_disk

from .collator import AUGMENTATIONS, PointCloudCollator
from .readers import (
    MODELNET40_CLASSES,
    SCANOBJECTNN_CLASSES,
    read_modelnet40_h5,
    read_modelnet40_text,
    read_scanobjectnn,
)
from .synthetic import SYNTHETIC_CLASSES, load_synthetic_shapes, make_synthetic_shapes

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "MODELNET40_CLASSES",
    "PointCloudCollator",
    "SCANOBJECTNN_CLASSES",
    "SYNTHETIC_CLASSES",
    "load_point_dataset",
    "load_synthetic_shapes",
    "make_synthetic_shapes",
    "read_modelnet40_h5",
    "read_modelnet40_text",
    "read_scanobjectnn",
    "train_validation_split",
]

DATASETS = (
    "synthetic",
    "synthetic-hard",
    "modelnet40",
    "modelnet40-h5",
    "scanobjectnn-obj_bg",
    "scanobjectnn-obj_only",
    "scanobjectnn-pb_t50_rs",
    "disk",
)


def load_point_dataset(name: str, path: str | os.PathLike | None = None, **kwargs) -> DatasetDict:
    """Load a dataset by name: the synthetic shapes (offline), a real benchmark from its files at `path`, or a
    `DatasetDict` saved with `save_to_disk` ("disk"). kwargs go to the reader."""
    if name in ("synthetic", "synthetic-hard"):
        return load_synthetic_shapes(variant="hard" if name.endswith("hard") else "standard", **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if path is None:
        raise ValueError(f"dataset {name!r} is read from its files: pass their folder as path")
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset folder not found: {path}")
    if name == "modelnet40":
        return read_modelnet40_text(path, **kwargs)
    if name == "modelnet40-h5":
        return read_modelnet40_h5(path, **kwargs)
    if name.startswith("scanobjectnn-"):
        return read_scanobjectnn(path, name.split("-", 1)[1].upper(), **kwargs)
    data = load_from_disk(str(path))
    if not isinstance(data, DatasetDict):
        raise ValueError(f"{path} holds a single Dataset; save a DatasetDict with 'train' and 'test' splits")
    return data


def train_validation_split(train, fraction: float = 0.1, seed: int = 0):
    """Carve a stratified validation split from the training split: (train, validation). The test split is never
    used for model selection."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(train["label"])
    rng = np.random.default_rng(seed)
    val_idx = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, int(round(len(members) * fraction))) if len(members) > 1 else 0
        val_idx.extend(rng.choice(members, size=take, replace=False).tolist())
    val_set = set(val_idx)
    train_idx = [i for i in range(len(labels)) if i not in val_set]
    return train.select(train_idx), train.select(sorted(val_idx))
