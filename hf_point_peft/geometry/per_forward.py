"""`PointGeometry`: the geometry of one forward call, handed to every block as a keyword argument.

The point models of this package (the Point-MAE family and PointGPT) make one after their tokenizer, from the call's
input points and token centres, and pass it to each encoder block as `point_geometry=...`, the way transformers
passes `position_embeddings`. The blocks themselves ignore it; adapter layers wrapped around them (PointGST,
Point-PEFT) read the centres and points from it and build what they derive from them (graph bases, neighbourhoods,
bank queries) once per call through `get`. It lives as long as the call: nothing is shared between calls, threads or
replicas, and gradient-checkpoint recomputation, which repeats the block call with the same arguments, finds the
values already built.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch

__all__ = ["PointGeometry"]


class PointGeometry:
    """The input points [B, N, C] and token centres [B, G, 3] of one forward (both detached), and a cache of values
    derived from them (`get`). `builds` counts the values built."""

    def __init__(self, points: torch.Tensor, centres: torch.Tensor) -> None:
        if centres.dim() != 3 or centres.shape[-1] != 3:
            raise ValueError(f"token centres must be [B, G, 3], got {tuple(centres.shape)}")
        self.points = points.detach()
        self.centres = centres.detach()
        self._cache: dict[Hashable, Any] = {}
        self.builds = 0

    def get(self, key: Hashable, build: Callable[[torch.Tensor], Any]) -> Any:
        """`build(centres)` the first time `key` is asked for in this call, then the same value."""
        if key not in self._cache:
            self._cache[key] = build(self.centres)
            self.builds += 1
        return self._cache[key]

    def __repr__(self) -> str:
        return f"PointGeometry(points={tuple(self.points.shape)}, centres={tuple(self.centres.shape)})"
