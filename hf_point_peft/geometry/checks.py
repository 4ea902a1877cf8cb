"""Input validation shared by every point model and tuner: clear errors instead of NaN or index errors later."""

from __future__ import annotations

import torch

__all__ = ["validate_points"]


def validate_points(points, *, min_points: int = 1, channels: int | None = None, name: str = "points") -> torch.Tensor:
    """Check that `points` is a finite float tensor [B, N, C] with N >= `min_points`; return it unchanged.

    `channels` is the exact channel count the model expects (None: at least 3). Errors name the shape or the first
    sample that holds NaN/inf.
    """
    if not isinstance(points, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, N, 3], got {type(points).__name__}")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {points.dtype} with shape {tuple(points.shape)}")
    if points.dim() != 3:
        raise ValueError(f"{name} must be 3-D [batch, num_points, channels], got shape {tuple(points.shape)}")
    batch, num_points, num_channels = points.shape
    if channels is None and num_channels < 3:
        raise ValueError(f"{name} needs at least 3 channels (x, y, z), got shape {tuple(points.shape)}")
    if channels is not None and num_channels != channels:
        raise ValueError(f"{name} must have {channels} channels, got shape {tuple(points.shape)}")
    if batch == 0:
        raise ValueError(f"{name} has an empty batch: shape {tuple(points.shape)}")
    if num_points < min_points:
        raise ValueError(
            f"{name} has {num_points} points per sample (shape {tuple(points.shape)}), but the model needs at least "
            f"{min_points}"
        )
    finite = torch.isfinite(points).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"{name} holds NaN or inf values; first bad sample index is {bad} (shape {tuple(points.shape)})"
        )
    return points
