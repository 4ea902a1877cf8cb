"""Per-forward state shared by all adapter layers of one PEFT model.

The tokenizer's centres are captured once per forward by a forward hook on the tokenizer module; anything derived
from them (graph bases, neighbourhoods, ...) is built lazily, once per forward and per distinct setting, by the first
layer that asks for it. Nothing is cleared after the forward: gradient-checkpoint recomputation reads it again.
The context is a plain object (never a module, buffer or parameter), so it is never saved with an adapter, and the
hook is an instance of a module-level class, so the PEFT model still pickles and deep-copies.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["CentresContext", "CentresHook", "install_centres_hook", "remove_centres_hooks"]


class CentresContext:
    """Latest token centres [B, G, 3] and a cache of values derived from them."""

    def __init__(self) -> None:
        self.centres: torch.Tensor | None = None
        self.points: torch.Tensor | None = None  # the tokenizer's input, when a method asks for it
        self._cache: dict[Hashable, Any] = {}
        self.builds = 0  # how many derived values were built (observability for tests; the cost probe times them)
        self.bypass = 0  # > 0 while the frozen base runs without adapters inside a forward (e.g. a query pass)

    def set_centres(self, centres: torch.Tensor) -> None:
        if self.bypass:
            return
        self.centres = centres.detach()
        self._cache = {}

    def set_points(self, points: torch.Tensor) -> None:
        if not self.bypass:
            self.points = points.detach()

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """Run the base model as if no adapter existed, without touching this forward's captured state."""
        self.bypass += 1
        try:
            yield
        finally:
            self.bypass -= 1

    def get(self, key: Hashable, build: Callable[[torch.Tensor], Any]) -> Any:
        """`build(centres)` once per forward for each `key`, then the cached value."""
        if self.centres is None:
            raise RuntimeError(
                "no token centres captured: the adapted layers ran without a forward through the model's tokenizer "
                "(call the PEFT model with points=...)"
            )
        if key not in self._cache:
            self._cache[key] = build(self.centres)
            self.builds += 1
        return self._cache[key]

    def __getstate__(self) -> dict:
        # per-forward tensors are not part of a model's state
        return {"centres": None, "points": None, "_cache": {}, "builds": 0, "bypass": 0}


class CentresHook:
    """Forward hook on a tokenizer: reads centres from its output (a `.centres` attribute, or tuple element
    `index`) and hands them to the context."""

    def __init__(self, context: CentresContext, index: int = 2) -> None:
        self.context = context
        self.index = index

    def __call__(self, module: nn.Module, args, output) -> None:
        centres = getattr(output, "centres", None)
        if centres is None and isinstance(output, (tuple, list)) and len(output) > self.index:
            centres = output[self.index]
        if not isinstance(centres, torch.Tensor) or centres.dim() != 3 or centres.shape[-1] != 3:
            raise ValueError(
                f"the tokenizer {type(module).__name__} must return its token centres [B, G, 3] as `.centres` or as "
                f"element {self.index} of a tuple; got {type(output).__name__}"
            )
        self.context.set_centres(centres)


class PointsHook:
    """Forward pre-hook on a tokenizer: hands its input points to the context."""

    def __init__(self, context: CentresContext) -> None:
        self.context = context

    def __call__(self, module: nn.Module, args) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self.context.set_points(args[0])


def install_centres_hook(module: nn.Module, context: CentresContext, index: int = 2, points: bool = False) -> None:
    """Install one CentresHook (and, with `points=True`, one PointsHook) for `context` on `module` (idempotent)."""
    if not any(isinstance(h, CentresHook) and h.context is context for h in module._forward_hooks.values()):
        module.register_forward_hook(CentresHook(context, index))
    if points and not any(
        isinstance(h, PointsHook) and h.context is context for h in module._forward_pre_hooks.values()
    ):
        module.register_forward_pre_hook(PointsHook(context))


def remove_centres_hooks(model: nn.Module, context: CentresContext | None = None) -> None:
    """Remove the CentresHooks and PointsHooks (of `context`, or all) from every module of `model`."""
    for module in model.modules():
        for hooks, kind in ((module._forward_hooks, CentresHook), (module._forward_pre_hooks, PointsHook)):
            for key in [k for k, h in hooks.items() if isinstance(h, kind)]:
                if context is None or hooks[key].context is context:
                    del hooks[key]
