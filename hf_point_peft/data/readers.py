"""Readers for the real benchmark files into `datasets.DatasetDict` (points as `Array2D`, label as `ClassLabel`).

- ModelNet40 `modelnet40_normal_resampled`: one `x,y,z,nx,ny,nz` text file per shape under `<class>/<id>.txt`, with
  `modelnet40_shape_names.txt` and `modelnet40_train.txt` / `modelnet40_test.txt` (10,000 points per shape).
- ModelNet40 HDF5 `modelnet40_ply_hdf5_2048`: `ply_data_{train,test}*.h5` with keys `data` [N, 2048, 3] and
  `label` [N, 1], class names in `shape_names.txt`.
- ScanObjectNN HDF5: `main_split/{training,test}_objectdataset{,_augmentedrot_scale75}.h5` (OBJ_BG, PB_T50_RS) and
  `main_split_nobg/...` (OBJ_ONLY), keys `data` [N, 2048, 3], `label` [N], `mask` [N, 2048].

Every problem names the file, the key and the offending value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value

__all__ = [
    "MODELNET40_CLASSES",
    "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_VARIANTS",
    "read_modelnet40_h5",
    "read_modelnet40_text",
    "read_scanobjectnn",
]

MODELNET40_CLASSES = [
    "airplane",
    "bathtub",
    "bed",
    "bench",
    "bookshelf",
    "bottle",
    "bowl",
    "car",
    "chair",
    "cone",
    "cup",
    "curtain",
    "desk",
    "door",
    "dresser",
    "flower_pot",
    "glass_box",
    "guitar",
    "keyboard",
    "lamp",
    "laptop",
    "mantel",
    "monitor",
    "night_stand",
    "person",
    "piano",
    "plant",
    "radio",
    "range_hood",
    "sink",
    "sofa",
    "stairs",
    "stool",
    "table",
    "tent",
    "toilet",
    "tv_stand",
    "vase",
    "wardrobe",
    "xbox",
]

SCANOBJECTNN_CLASSES = (
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
)

# variant -> (folder, file stem suffix)
SCANOBJECTNN_VARIANTS = {
    "OBJ_BG": ("main_split", ""),
    "OBJ_ONLY": ("main_split_nobg", ""),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}


def _features(num_points: int, channels: int, names: Sequence[str]) -> Features:
    return Features(
        {
            "points": Array2D(shape=(num_points, channels), dtype="float32"),
            "label": ClassLabel(names=list(names)),
            "id": Value("string"),
        }
    )


def _check_labels(labels: np.ndarray, num_classes: int, source: str, key: str) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)) and not np.all(np.mod(labels, 1) == 0):
        raise ValueError(f"{source}: key {key!r} holds non-integer labels, e.g. {labels[np.mod(labels, 1) != 0][0]!r}")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{source}: key {key!r} row {i} has label {labels[i]}, outside [0, {num_classes})")
    return labels


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing {what}: {path}")
    return path


def _read_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped; a file that is not UTF-8 is a ValueError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r})"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_names(path: Path) -> list[str]:
    """A class-name file: one name a line, each once."""
    names = _read_lines(path)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{path}: class name {name!r} is listed twice (names {seen[name] + 1} and {i + 1})")
        seen[name] = i
    return names


def _normalize(xyz: np.ndarray) -> np.ndarray:
    xyz = xyz - xyz.mean(axis=0)
    radius = np.linalg.norm(xyz, axis=1).max()
    return xyz / radius if radius > 0 else xyz


def read_modelnet40_text(
    root: str | os.PathLike,
    *,
    num_points: int = 8192,
    use_normals: bool = False,
    splits: Sequence[str] = ("train", "test"),
    num_categories: int = 40,
) -> DatasetDict:
    """Read `modelnet40_normal_resampled`: the first `num_points` points of each file (the official loader's
    `uniform=False` path), xyz centred and scaled into the unit sphere, normals kept when `use_normals`."""
    root = Path(root)
    if num_categories not in (10, 40):
        raise ValueError(f"num_categories must be 10 or 40, got {num_categories}")
    names_file = _require_file(root / f"modelnet{num_categories}_shape_names.txt", "class-name file")
    names = _read_names(names_file)
    if len(names) != num_categories:
        raise ValueError(f"{names_file}: expected {num_categories} class names, found {len(names)}")
    index = {name: i for i, name in enumerate(names)}
    channels = 6 if use_normals else 3
    out = {}
    for split in splits:
        list_file = _require_file(root / f"modelnet{num_categories}_{split}.txt", f"{split!r} split list")
        ids = _read_lines(list_file)
        points, labels = [], []
        for shape_id in ids:
            cls = "_".join(shape_id.split("_")[:-1])
            if cls not in index:
                raise ValueError(f"{list_file}: shape {shape_id!r} has class {cls!r}, not in {names_file.name}")
            path = _require_file(root / cls / f"{shape_id}.txt", f"point file of {shape_id!r}")
            try:
                data = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
            except ValueError as err:
                raise ValueError(f"{path}: not a comma-separated x,y,z,nx,ny,nz table ({err})") from err
            if data.shape[1] < channels or data.shape[0] < num_points:
                raise ValueError(
                    f"{path}: has shape {data.shape}, need at least {num_points} rows of {channels} columns"
                )
            data = data[:num_points, :channels].copy()
            if not np.isfinite(data).all():
                raise ValueError(f"{path}: holds NaN or inf values")
            data[:, :3] = _normalize(data[:, :3])
            points.append(data)
            labels.append(index[cls])
        out[split] = Dataset.from_dict(
            {"points": points, "label": labels, "id": ids}, features=_features(num_points, channels, names)
        )
    return DatasetDict(out)


def _read_h5(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise ValueError(f"{path}: missing key(s) {missing}; found {sorted(f.keys())}")
            return {k: np.asarray(f[k]) for k in keys}
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err


def _check_points(data: np.ndarray, path: Path, num_points: int | None) -> np.ndarray:
    if data.ndim != 3 or data.shape[2] < 3:
        raise ValueError(f"{path}: key 'data' must have shape [N, points, 3], got {data.shape}")
    if num_points is not None and data.shape[1] < num_points:
        raise ValueError(f"{path}: key 'data' has {data.shape[1]} points per cloud, fewer than {num_points}")
    if not np.isfinite(data).all():
        row = int(np.argmax(~np.isfinite(data).reshape(len(data), -1).all(axis=1)))
        raise ValueError(f"{path}: key 'data' row {row} holds NaN or inf values")
    return data[:, : num_points or data.shape[1], :3].astype(np.float32)


def read_modelnet40_h5(root: str | os.PathLike, *, splits: Sequence[str] = ("train", "test")) -> DatasetDict:
    """Read `modelnet40_ply_hdf5_2048` (all `ply_data_<split>*.h5` files, in name order)."""
    root = Path(root)
    names_file = _require_file(root / "shape_names.txt", "class-name file")
    names = _read_names(names_file)
    out = {}
    for split in splits:
        files = sorted(root.glob(f"ply_data_{split}*.h5"))
        if not files:
            raise FileNotFoundError(f"missing {split!r} split: no {root}/ply_data_{split}*.h5 files")
        points, labels, ids = [], [], []
        for path in files:
            arrays = _read_h5(path, ("data", "label"))
            data = _check_points(arrays["data"], path, None)
            label = _check_labels(arrays["label"], len(names), str(path), "label")
            if len(label) != len(data):
                raise ValueError(f"{path}: key 'label' has {len(label)} rows but key 'data' has {len(data)}")
            if points and data.shape[1] != points[0].shape[1]:
                raise ValueError(
                    f"{path}: key 'data' has {data.shape[1]} points per cloud, {files[0].name} has "
                    f"{points[0].shape[1]}: the files of a split must agree"
                )
            points.append(data)
            labels.append(label)
            ids += [f"{path.stem}_{i}" for i in range(len(data))]
        points = np.concatenate(points)
        out[split] = Dataset.from_dict(
            {"points": list(points), "label": np.concatenate(labels).tolist(), "id": ids},
            features=_features(points.shape[1], 3, names),
        )
    return DatasetDict(out)


def read_scanobjectnn(
    root: str | os.PathLike, variant: str = "PB_T50_RS", *, splits: Sequence[str] = ("train", "test")
) -> DatasetDict:
    """Read ScanObjectNN's HDF5 files for OBJ_BG, OBJ_ONLY or PB_T50_RS (the `h5_files` folder as released)."""
    if variant not in SCANOBJECTNN_VARIANTS:
        raise ValueError(f"unknown ScanObjectNN variant {variant!r}; choose one of {sorted(SCANOBJECTNN_VARIANTS)}")
    folder, suffix = SCANOBJECTNN_VARIANTS[variant]
    root = Path(root)
    out = {}
    for split in splits:
        stem = {"train": "training", "test": "test"}.get(split)
        if stem is None:
            raise ValueError(f"ScanObjectNN has 'train' and 'test' splits, got {split!r}")
        path = _require_file(root / folder / f"{stem}_objectdataset{suffix}.h5", f"ScanObjectNN {variant} {split} file")
        arrays = _read_h5(path, ("data", "label", "mask"))
        data = _check_points(arrays["data"], path, None)
        label = _check_labels(arrays["label"], len(SCANOBJECTNN_CLASSES), str(path), "label")
        mask_rows = len(arrays["mask"]) if np.ndim(arrays["mask"]) else "a single value"
        if len(label) != len(data) or mask_rows != len(data):
            raise ValueError(
                f"{path}: keys disagree on the number of objects: data {len(data)}, label {len(label)}, "
                f"mask {mask_rows}"
            )
        out[split] = Dataset.from_dict(
            {"points": list(data), "label": label.tolist(), "id": [f"{split}_{i}" for i in range(len(data))]},
            features=_features(data.shape[1], 3, SCANOBJECTNN_CLASSES),
        )
    return DatasetDict(out)
