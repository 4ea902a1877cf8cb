"""The base of the point methods' tuner layers: adapters computed from each forward's input cannot be merged.

peft's `BaseTunerLayer` leaves `merge` / `unmerge` to each method (an empty `NotImplementedError` otherwise). The
point methods' layers compute their output from the token centres of the forward (PointGST's graph bases,
Point-PEFT's prompts and geometry-aware neighbourhoods, Any2Point's projected views) or keep per-adapter BatchNorm
statistics, so no merge exists: `merge` raises a ValueError pointing to `unload()` (the tuners refuse earlier, in
`_check_merge_allowed`; this covers a layer merged directly), and `unmerge` has nothing to undo, which it says as
peft's LoRA does for an unmerged layer.
"""

from __future__ import annotations

import warnings

from peft.tuners.tuners_utils import BaseTunerLayer

__all__ = ["UnmergeableLayer"]


class UnmergeableLayer(BaseTunerLayer):
    """`merge` refused with `merge_refusal` (set per layer class), `unmerge` a no-op with peft's warning."""

    merge_refusal: str = "these adapters depend on the input and cannot be merged; use unload()"

    def merge(self, *args, **kwargs) -> None:
        raise ValueError(self.merge_refusal)

    def unmerge(self) -> None:
        warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)  # never merged: merge is refused
