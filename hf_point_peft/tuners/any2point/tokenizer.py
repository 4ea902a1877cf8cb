"""Any2Point's 3D tokenizer (Point-PN style, specs/any2point.md §4), pure torch: by default 276,672 trainable
parameters that turn [B, N, 3] points into 128 tokens of width 768 and their centres."""

from __future__ import annotations

import torch
from torch import nn

from ...geometry import farthest_point_sample, gather_points, knn
from ...models.layers import BatchNorm1d

__all__ = ["PointPNTokenizer", "positional_sincos"]


def positional_sincos(delta: torch.Tensor, width: int, alpha: float = 1000.0, beta: float = 100.0) -> torch.Tensor:
    """sin/cos of the offsets [..., 3] with width/6 frequencies per axis: angle = beta * d / alpha^(j / (width/6));
    channel order x [sin, cos], then y, then z -> [..., width]."""
    feats = width // 6
    j = torch.arange(feats, device=delta.device, dtype=torch.float32)
    angles = beta * delta.float().unsqueeze(-1) / alpha ** (j / feats)  # [..., 3, feats]
    out = torch.cat([angles.sin(), angles.cos()], dim=-1)  # [..., 3, 2*feats]
    return out.flatten(-2).to(delta.dtype)


class _Residual(nn.Module):
    """y = ReLU(x + BN(Conv(h -> D)(ReLU(BN(Conv(D -> h)(x)))))), 1x1 convolutions with bias."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net1 = nn.Sequential(nn.Conv1d(dim, hidden, 1), BatchNorm1d(hidden), nn.ReLU(inplace=True))
        self.net2 = nn.Sequential(nn.Conv1d(hidden, dim, 1), BatchNorm1d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.net2(self.net1(x)))


class _Stage(nn.Module):
    def __init__(self, groups: int, dim: int, hidden: int, blocks: int):
        super().__init__()
        self.groups, self.dim = groups, dim
        self.blocks = nn.Sequential(*[_Residual(dim, hidden) for _ in range(blocks)])

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, k: int, norm: str):
        batch, n, _ = xyz.shape
        with torch.no_grad(), torch.autocast(device_type=xyz.device.type, enabled=False):
            centre_index = farthest_point_sample(xyz.float(), self.groups)
            centres = gather_points(xyz, centre_index)
            _, index = knn(centres.float(), xyz.float(), min(k, n))
        neighbours = gather_points(feats, index)  # [B, G, K, C]
        centre_feats = gather_points(feats, centre_index).unsqueeze(2).expand_as(neighbours)
        delta = gather_points(xyz, index) - centres.unsqueeze(2)  # [B, G, K, 3]
        if norm == "group_max":
            delta = delta / (delta.abs().amax(dim=2, keepdim=True) + 1e-5)
        else:  # "std": over the whole sample's offsets (per sample, not the official batch-wide std)
            delta = delta / (delta.reshape(batch, -1).std(dim=1).reshape(batch, 1, 1, 1) + 1e-5)
        x = torch.cat([neighbours, centre_feats], dim=-1) + positional_sincos(delta, self.dim)
        groups, size = x.shape[1], x.shape[2]
        x = self.blocks(x.reshape(batch, groups * size, self.dim).transpose(1, 2))
        # max(dim).values: its backward scatters through the argmax indices; amax's compares the whole input
        return centres, x.reshape(batch, self.dim, groups, size).max(dim=-1).values.transpose(1, 2)


class PointPNTokenizer(nn.Module):
    """Raw Conv1d(3 -> W/8) + BN + ReLU per point, then three FPS + kNN stages (`groups` centres, default 512 / 256 /
    128; widths W/4, W/2, W with W = `width`, default 768; residual bottlenecks 2 / 1 / 1 with hidden D/2, D/2, 32),
    each pooling its neighbours by max. The defaults are the official tokenizer (276,672 parameters); smaller
    `groups` / `width` give a cheaper tokenizer of the same design (CPU runs)."""

    def __init__(self, knn_k: int = 64, norm: str = "group_max", groups=(512, 256, 128), width: int = 768):
        super().__init__()
        groups = [int(g) for g in groups]
        if len(groups) != 3 or any(g <= 0 for g in groups) or groups != sorted(groups, reverse=True):
            raise ValueError(f"tokenizer groups must be 3 positive, non-increasing centre counts, got {groups}")
        if width % 24 or width < 96:  # W/8 raw channels; W/4, W/2, W each split into 6 sin/cos blocks
            raise ValueError(f"tokenizer width must be a multiple of 24 and at least 96, got {width}")
        self.knn_k, self.norm, self.width = knn_k, norm, width
        dims = (width // 4, width // 2, width)
        self.stage_specs = (
            (groups[0], dims[0], dims[0] // 2, 2),
            (groups[1], dims[1], dims[1] // 2, 1),
            (groups[2], dims[2], 32, 1),
        )
        self.raw = nn.Sequential(
            nn.Conv1d(3, width // 8, 1, bias=False), BatchNorm1d(width // 8), nn.ReLU(inplace=True)
        )
        self.stages = nn.ModuleList([_Stage(*spec) for spec in self.stage_specs])

    @property
    def min_points(self) -> int:
        return self.stage_specs[0][0]

    def forward(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.raw(xyz.transpose(1, 2)).transpose(1, 2)
        for stage in self.stages:
            xyz, feats = stage(xyz, feats, self.knn_k, self.norm)
        return feats, xyz
