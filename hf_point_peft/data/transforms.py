"""The official augmentations and point subsampling, batched in torch, with per-sample random generators.

Each sample's randomness comes from its own `torch.Generator`, seeded from (run seed, epoch, dataset index) by the
collator, so augmentation does not depend on batch composition, worker count or process count, and a resumed run
replays an epoch exactly.
"""

from __future__ import annotations

import math

import torch

from ..geometry import farthest_point_sample, gather_points

__all__ = [
    "fps_subsample",
    "normalize_unit_sphere",
    "random_subsample",
    "rotate_y",
    "scale",
    "scale_and_translate",
]


def _uniform(gens: list[torch.Generator], shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return torch.stack([torch.empty(shape).uniform_(low, high, generator=g) for g in gens])


def scale_and_translate(
    points: torch.Tensor, gens: list[torch.Generator], low: float = 2 / 3, high: float = 3 / 2, shift: float = 0.2
) -> torch.Tensor:
    """Point-MAE's `PointcloudScaleAndTranslate`: per-sample, per-axis scale U[low, high] and shift U[-shift, shift]."""
    s = _uniform(gens, (3,), low, high).to(points)
    t = _uniform(gens, (3,), -shift, shift).to(points)
    xyz = points[..., :3] * s.unsqueeze(1) + t.unsqueeze(1)
    return torch.cat([xyz, points[..., 3:]], dim=-1)


def scale(points: torch.Tensor, gens: list[torch.Generator], low: float = 0.9, high: float = 1.1) -> torch.Tensor:
    """Per-axis scale only (Point-PEFT's augmentation)."""
    s = _uniform(gens, (3,), low, high).to(points)
    return torch.cat([points[..., :3] * s.unsqueeze(1), points[..., 3:]], dim=-1)


def rotate_y(points: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """`PointcloudRotate`: rotation about the up axis y by U[0, 2pi), applied as `pc @ R` (normals rotate too)."""
    angle = _uniform(gens, (), 0.0, 2 * math.pi).to(points)
    c, s = angle.cos(), angle.sin()
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(-1, 3, 3)
    xyz = points[..., :3] @ rot
    if points.shape[-1] >= 6:
        return torch.cat([xyz, points[..., 3:6] @ rot, points[..., 6:]], dim=-1)
    return torch.cat([xyz, points[..., 3:]], dim=-1)


def fps_subsample(points: torch.Tensor, num_points: int) -> torch.Tensor:
    """Deterministic evaluation subsampling: farthest point sampling to `num_points` (start index 0)."""
    if points.shape[1] == num_points:
        return points
    return gather_points(points, farthest_point_sample(points[..., :3], num_points))


def random_subsample(
    points: torch.Tensor, num_points: int, gens: list[torch.Generator], point_all: int | None = None
) -> torch.Tensor:
    """Training subsampling: FPS to `point_all` (capped at the cloud size) then a random `num_points` of those.

    When `point_all` reaches the cloud size the FPS is only a reordering, so it is skipped: a random subset of the
    whole cloud has exactly the same distribution.
    """
    n = points.shape[1]
    point_all = min(point_all or num_points, n)
    if point_all < num_points:
        raise ValueError(f"cannot draw {num_points} points from clouds of {n} points")
    if point_all < n:
        points = fps_subsample(points, point_all)
    choice = torch.stack([torch.randperm(point_all, generator=g)[:num_points] for g in gens])
    return gather_points(points, choice)


def normalize_unit_sphere(points: torch.Tensor) -> torch.Tensor:
    """Centre each cloud on its mean and scale its xyz into the unit sphere (`pc_normalize`)."""
    xyz = points[..., :3]
    xyz = xyz - xyz.mean(dim=-2, keepdim=True)
    radius = xyz.norm(dim=-1).amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.cat([xyz / radius.unsqueeze(-1), points[..., 3:]], dim=-1)
