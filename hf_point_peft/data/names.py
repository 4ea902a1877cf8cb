"""The dataset readers' names (`load_point_dataset(name, ...)`, `--dataset NAME`)."""

from __future__ import annotations

__all__ = ["DATASETS"]

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
