"""Synthetic shapes: an offline, deterministic point-cloud classification dataset.

Fifteen classes of parametric surfaces and simple composites, built with look-alike pairs (sphere / ellipsoid,
cube / box, cylinder / capsule, cone / pyramid, torus / ring, table / stool, bowl / hemisphere, ...) so that
anisotropic scaling, rotation about the up axis (y), noise and partial occlusion make the task genuinely hard; the
"hard" variant adds background clutter (a ground plane and stray points), like ScanObjectNN's backgrounds.
Everything is generated from one seed with numpy, so the same arguments always give the same dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk

__all__ = ["SYNTHETIC_CLASSES", "default_cache_dir", "load_synthetic_shapes", "make_synthetic_shapes", "sample_shape"]

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sphere(rng, n):
    return _unit(rng, n)


def _ellipsoid(rng, n):
    return _unit(rng, n) * np.array([1.0, 0.7, 0.85])


def _box_surface(rng, n, half):
    half = np.asarray(half, dtype=np.float64)
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    pts = rng.uniform(-1, 1, size=(n, 3)) * half
    axis = face // 2
    sign = np.where(face % 2 == 0, 1.0, -1.0)
    pts[np.arange(n), axis] = sign * half[axis]
    return pts


def _cube(rng, n):
    return _box_surface(rng, n, [0.8, 0.8, 0.8])


def _box(rng, n):
    return _box_surface(rng, n, [1.0, 0.55, 0.7])


def _cylinder_parts(rng, n, radius, half_height, caps):
    side = 2 * np.pi * radius * 2 * half_height
    cap = np.pi * radius**2 if caps else 0.0
    on_side = rng.uniform(size=n) < side / (side + 2 * cap)
    theta = rng.uniform(0, 2 * np.pi, size=n)
    r = np.where(on_side, radius, radius * np.sqrt(rng.uniform(size=n)))
    y = np.where(
        on_side, rng.uniform(-half_height, half_height, size=n), np.sign(rng.uniform(-1, 1, size=n)) * half_height
    )
    return np.stack([r * np.cos(theta), y, r * np.sin(theta)], axis=1)


def _cylinder(rng, n):
    return _cylinder_parts(rng, n, 0.55, 0.9, caps=True)


def _capsule(rng, n):
    body = _cylinder_parts(rng, n, 0.5, 0.55, caps=False)
    ends = _unit(rng, n) * 0.5
    ends[:, 1] += np.sign(ends[:, 1]) * 0.55
    use_end = rng.uniform(size=n) < 0.4
    return np.where(use_end[:, None], ends, body)


def _cone(rng, n):
    h = 1.8
    t = np.sqrt(rng.uniform(size=n))  # area grows with distance from the apex
    theta = rng.uniform(0, 2 * np.pi, size=n)
    r = 0.7 * t
    side = np.stack([r * np.cos(theta), 0.9 - h * t, r * np.sin(theta)], axis=1)
    base_r = 0.7 * np.sqrt(rng.uniform(size=n))
    base = np.stack([base_r * np.cos(theta), np.full(n, -0.9), base_r * np.sin(theta)], axis=1)
    return np.where((rng.uniform(size=n) < 0.75)[:, None], side, base)


def _pyramid(rng, n):
    # four triangular faces from a square base to an apex, plus the base
    apex = np.array([0.0, 0.9, 0.0])
    corners = np.array([[0.75, -0.9, 0.75], [-0.75, -0.9, 0.75], [-0.75, -0.9, -0.75], [0.75, -0.9, -0.75]])
    face = rng.integers(0, 5, size=n)
    u, v = rng.uniform(size=n), rng.uniform(size=n)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    a, b = corners[face % 4], corners[(face + 1) % 4]
    tri = apex + u[:, None] * (a - apex) + v[:, None] * (b - apex)
    base = np.stack([rng.uniform(-0.75, 0.75, n), np.full(n, -0.9), rng.uniform(-0.75, 0.75, n)], axis=1)
    return np.where((face == 4)[:, None], base, tri)


def _torus_like(rng, n, major, minor):
    u = rng.uniform(0, 2 * np.pi, size=n)
    v = rng.uniform(0, 2 * np.pi, size=n)
    r = major + minor * np.cos(v)
    return np.stack([r * np.cos(u), minor * np.sin(v), r * np.sin(u)], axis=1)


def _torus(rng, n):
    return _torus_like(rng, n, 0.7, 0.3)


def _ring(rng, n):
    return _torus_like(rng, n, 0.85, 0.12)


def _hemisphere(rng, n):
    p = _unit(rng, n)
    p[:, 1] = np.abs(p[:, 1])
    flat = rng.uniform(size=n) < 0.3
    r = np.sqrt(rng.uniform(size=n))
    theta = rng.uniform(0, 2 * np.pi, size=n)
    disk = np.stack([r * np.cos(theta), np.zeros(n), r * np.sin(theta)], axis=1)
    return np.where(flat[:, None], disk, p) - np.array([0.0, 0.4, 0.0])


def _bowl(rng, n):
    p = _unit(rng, n)
    p[:, 1] = -np.abs(p[:, 1])  # open hemisphere, no lid
    return p + np.array([0.0, 0.4, 0.0])


def _table_like(rng, n, top_half, leg_height, legs):
    top = _box_surface(rng, n, [top_half[0], 0.05, top_half[1]])
    top[:, 1] += leg_height / 2
    which = rng.integers(0, len(legs), size=n)
    leg = _cylinder_parts(rng, n, 0.06, leg_height / 2, caps=False)
    leg[:, 0] += legs[which, 0]
    leg[:, 2] += legs[which, 1]
    on_top = rng.uniform(size=n) < 0.55
    return np.where(on_top[:, None], top, leg)


def _table(rng, n):
    legs = np.array([[0.8, 0.5], [-0.8, 0.5], [-0.8, -0.5], [0.8, -0.5]])
    return _table_like(rng, n, [0.9, 0.6], 1.2, legs)


def _stool(rng, n):
    legs = np.array([[0.35, 0.0], [-0.18, 0.31], [-0.18, -0.31]])
    return _table_like(rng, n, [0.45, 0.45], 1.4, legs)


def _chair(rng, n):
    seat = _table(rng, n) * np.array([0.6, 0.8, 0.8])
    back = _box_surface(rng, n, [0.55, 0.5, 0.04]) + np.array([0.0, 0.9, -0.4])
    return np.where((rng.uniform(size=n) < 0.35)[:, None], back, seat)


SYNTHETIC_CLASSES: dict[str, Sampler] = {
    "sphere": _sphere,
    "ellipsoid": _ellipsoid,
    "cube": _cube,
    "box": _box,
    "cylinder": _cylinder,
    "capsule": _capsule,
    "cone": _cone,
    "pyramid": _pyramid,
    "torus": _torus,
    "ring": _ring,
    "hemisphere": _hemisphere,
    "bowl": _bowl,
    "table": _table,
    "stool": _stool,
    "chair": _chair,
}


def _rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def sample_shape(label: int, num_points: int, rng: np.random.Generator, variant: str = "standard") -> np.ndarray:
    """One cloud [num_points, 3] of class `label`: jittered anisotropic scale, rotation about y, noise, occlusion of a
    random side, optional clutter ("hard"), then centred and scaled into the unit sphere."""
    sampler = list(SYNTHETIC_CLASSES.values())[label]
    oversample = int(num_points * 1.6)
    pts = sampler(rng, oversample)
    pts = pts * rng.uniform(0.75, 1.3, size=3)  # anisotropic scaling blurs the look-alike pairs
    pts = pts @ _rotation_y(rng.uniform(0, 2 * np.pi)).T
    # partial occlusion: drop the points beyond a random plane (up to ~30% of the shape)
    normal = _unit(rng, 1)[0]
    proj = pts @ normal
    keep = proj < np.quantile(proj, 1.0 - rng.uniform(0.0, 0.3))
    pts = pts[keep]
    pts = pts[rng.choice(len(pts), size=num_points, replace=len(pts) < num_points)]
    pts = pts + rng.normal(scale=0.015, size=pts.shape)
    if variant == "hard":
        n_clutter = int(num_points * rng.uniform(0.1, 0.25))
        ground = np.stack(
            [
                rng.uniform(-1.6, 1.6, n_clutter),
                np.full(n_clutter, pts[:, 1].min() - 0.05),
                rng.uniform(-1.6, 1.6, n_clutter),
            ],
            axis=1,
        )
        stray = rng.uniform(-1.5, 1.5, size=(n_clutter // 3, 3))
        clutter = np.concatenate([ground, stray])[:n_clutter]
        pts[rng.choice(num_points, size=n_clutter, replace=False)] = clutter + rng.normal(
            scale=0.02, size=clutter.shape
        )
    pts = pts - pts.mean(axis=0)
    pts = pts / np.linalg.norm(pts, axis=1).max()
    return pts.astype(np.float32)


def make_synthetic_shapes(
    train_per_class: int = 80,
    test_per_class: int = 30,
    num_points: int = 1024,
    seed: int = 0,
    variant: str = "standard",
) -> DatasetDict:
    """Build the dataset: `train` and `test` splits, balanced, classes interleaved, from `seed`."""
    if variant not in ("standard", "hard"):
        raise ValueError(f"variant must be 'standard' or 'hard', got {variant!r}")
    for name, value in (
        ("train_per_class", train_per_class),
        ("test_per_class", test_per_class),
        ("num_points", num_points),
    ):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    names = list(SYNTHETIC_CLASSES)
    features = Features(
        {
            "points": Array2D(shape=(num_points, 3), dtype="float32"),
            "label": ClassLabel(names=names),
            "id": Value("string"),
        }
    )
    splits = {}
    for split_index, (split, per_class) in enumerate((("train", train_per_class), ("test", test_per_class))):
        rng = np.random.default_rng([seed, split_index])
        points, labels, ids = [], [], []
        for i in range(per_class):
            for label in range(len(names)):
                points.append(sample_shape(label, num_points, rng, variant))
                labels.append(label)
                ids.append(f"{split}_{names[label]}_{i:04d}")
        splits[split] = Dataset.from_dict({"points": points, "label": labels, "id": ids}, features=features)
    return DatasetDict(splits)


def default_cache_dir() -> Path:
    root = os.environ.get("HF_POINT_PEFT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hf_point_peft"
    )
    return Path(root)


def load_synthetic_shapes(cache_dir: str | os.PathLike | None = None, **kwargs) -> DatasetDict:
    """`make_synthetic_shapes(**kwargs)`, cached with `save_to_disk` under a key of the arguments (atomically)."""
    params = {
        "train_per_class": 80,
        "test_per_class": 30,
        "num_points": 1024,
        "seed": 0,
        "variant": "standard",
        **kwargs,
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"synthetic_shapes-{key}"
    if path.is_dir():
        return load_from_disk(str(path))
    data = make_synthetic_shapes(**params)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-synthetic_shapes-{key}-{os.getpid()}"
    data.save_to_disk(str(tmp))
    (tmp / "synthetic_params.json").write_text(json.dumps(params, indent=2))
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(path))
