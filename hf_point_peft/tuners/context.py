"""Per-forward state shared by all adapter layers of one PEFT model.

The tokenizer's centres are captured once per forward by a forward hook on the tokenizer module; anything derived
from them (graph bases, neighbourhoods, ...) is built lazily, once per forward and per distinct setting, by the first
layer that asks for it. Nothing is cleared after the forward: gradient-checkpoint recomputation reads it again.
The context is a plain object (never a module, buffer or parameter), so it is never saved with an adapter, and the
hook is an instance of a module-level class, so the PEFT model still pickles and deep-copies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn

__all__ = ["CentresContext", "CentresHook", "install_centres_hook", "remove_centres_hooks"]


class CentresContext:
    """Latest token centres [B, G, 3] and a cache of values derived from them."""

    def __init__(self) -> None:
        self.centres: torch.Tensor | None = None
        self._cache: dict[Hashable, Any] = {}
        self.builds = 0  # how many derived values were built (observability for tests and benchmarks)
        self.build_seconds = 0.0  # wall time spent building them (device-synchronised)

    def set_centres(self, centres: torch.Tensor) -> None:
        self.centres = centres.detach()
        self._cache = {}

    def get(self, key: Hashable, build: Callable[[torch.Tensor], Any]) -> Any:
        """`build(centres)` once per forward for each `key`, then the cached value."""
        if self.centres is None:
            raise RuntimeError(
                "no token centres captured: the adapted layers ran without a forward through the model's tokenizer "
                "(call the PEFT model with points=...)"
            )
        if key not in self._cache:
            start = time.perf_counter()
            self._cache[key] = build(self.centres)
            if self.centres.is_cuda:
                torch.cuda.synchronize(self.centres.device)
            self.build_seconds += time.perf_counter() - start
            self.builds += 1
        return self._cache[key]

    def __getstate__(self) -> dict:
        # per-forward tensors are not part of a model's state
        return {"centres": None, "_cache": {}, "builds": 0, "build_seconds": 0.0}


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


def install_centres_hook(module: nn.Module, context: CentresContext, index: int = 2) -> None:
    """Install one CentresHook for `context` on `module` (idempotent)."""
    for hook in module._forward_hooks.values():
        if isinstance(hook, CentresHook) and hook.context is context:
            return
    module.register_forward_hook(CentresHook(context, index))


def remove_centres_hooks(model: nn.Module, context: CentresContext | None = None) -> None:
    """Remove the CentresHooks (of `context`, or all) from every module of `model`."""
    for module in model.modules():
        for key in [k for k, h in module._forward_hooks.items() if isinstance(h, CentresHook)]:
            if context is None or module._forward_hooks[key].context is context:
                del module._forward_hooks[key]
