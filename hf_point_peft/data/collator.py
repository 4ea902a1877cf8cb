"""Batch collation with the training / evaluation preprocessing of the official recipes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .transforms import fps_subsample, random_subsample, rotate_y, scale, scale_and_translate

__all__ = ["AUGMENTATIONS", "PointCloudCollator"]

AUGMENTATIONS = ("scale_translate", "rotate", "scale", "none")


@dataclass
class PointCloudCollator:
    """Turn dataset rows `{"points", "label", ...}` into `{"points": [B, n, C], "labels": [B]}`.

    train=True: FPS to `round(num_points * point_all_ratio)` then a random `num_points` (official 1200/1024 and
    2400/2048), then the augmentation. train=False: FPS to `num_points`, nothing random. Random draws come from
    per-sample generators seeded with (seed, epoch, row index); rows must carry an `index` column for that (the
    training loop adds it) or fall back to their position in the batch.
    """

    num_points: int = 1024
    train: bool = False
    augmentation: str = "scale_translate"
    point_all_ratio: float = 1200 / 1024
    seed: int = 0
    epoch: int = 0
    channels: int = 3
    keep_raw: bool = False  # also return the unprocessed clouds as "raw_points" (test-time voting)

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")

    def generators(self, indices: list[int], salt: int = 0) -> list[torch.Generator]:
        return [
            torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, self.epoch, i, salt]).generate_state(1)[0])
            )
            for i in indices
        ]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        clouds = [torch.as_tensor(np.asarray(r["points"], dtype=np.float32))[:, : self.channels] for r in rows]
        sizes = sorted({len(cloud) for cloud in clouds})
        if len(sizes) > 1:
            rows_shown = [int(r.get("index", i)) for i, r in enumerate(rows)]
            raise ValueError(
                f"the clouds of one batch (rows {rows_shown[:4]}{' ...' if len(rows_shown) > 4 else ''}) hold "
                f"{' and '.join(map(str, sizes[:2]))}{' ...' if len(sizes) > 2 else ''} points: every cloud of a "
                "dataset needs the same number of points; resample them to one size (e.g. farthest point sampling) "
                "and save the dataset again"
            )
        points = torch.stack(clouds)
        finite = torch.isfinite(points).flatten(1).all(dim=1)
        if not bool(finite.all()):  # before any subsampling, which could leave a bad point out in one epoch only
            bad = [int(rows[i].get("index", i)) for i in (~finite).nonzero()[:, 0].tolist()]
            raise ValueError(
                f"dataset row(s) {bad[:5]}{' ...' if len(bad) > 5 else ''} hold NaN or inf coordinates: remove or "
                "repair those clouds and save the dataset again"
            )
        labels = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)
        indices = [int(r.get("index", i)) for i, r in enumerate(rows)]
        raw = points
        if points.shape[1] < self.num_points:
            raise ValueError(f"clouds have {points.shape[1]} points, fewer than the {self.num_points} requested")
        if self.train:
            gens = self.generators(indices)
            points = random_subsample(points, self.num_points, gens, round(self.num_points * self.point_all_ratio))
            if self.augmentation == "scale_translate":
                points = scale_and_translate(points, gens)
            elif self.augmentation == "rotate":
                points = rotate_y(points, gens)
            elif self.augmentation == "scale":
                points = rotate_y(scale(points, gens), gens)  # Point-PEFT: per-axis scale + rotation about y
        else:
            points = fps_subsample(points, self.num_points)
        batch = {"points": points.contiguous(), "labels": labels, "indices": torch.tensor(indices, dtype=torch.long)}
        if self.keep_raw:
            batch["raw_points"] = raw
        return batch

    def vote_views(self, points: torch.Tensor, indices: list[int], views: int = 10) -> list[torch.Tensor]:
        """Test-time voting: `views` random subsamples (from FPS to point_all) with ScaleAndTranslate each."""
        out = []
        for view in range(views):
            gens = self.generators(indices, salt=view + 1)
            sub = random_subsample(points, self.num_points, gens, round(self.num_points * self.point_all_ratio))
            out.append(scale_and_translate(sub, gens))
        return out
