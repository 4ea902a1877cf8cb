"""Mixed-adapter batches: `model(points=..., adapter_names=[...])`, one adapter name per sample, as peft offers for
LoRA. Each sample's output is what the sub-batch of samples naming the same adapter gives when run alone under that
adapter (so, for methods without coupling across a batch, what the sample gives alone); `"__base__"` runs the base.

The tuner checks the names and, for one forward call, hands them to every tuner layer as the keyword argument
`adapter_names` through temporary pre-hooks (peft's mechanism); each layer routes the rows of each adapter. The
modules trained in full (`modules_to_save`: the head, the cls token) are peft wrappers whose own mixed-batch path only
knows Linear / Embedding / Conv modules, so for them a temporary forward hook recomputes each adapter's rows with that
adapter's copy. Inference only (eval mode), as in peft.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

__all__ = ["BASE", "adapter_groups", "check_adapter_names", "expand_rows", "mixed_batch_hooks", "take_rows"]

BASE = "__base__"


def check_adapter_names(adapter_names, known: Sequence[str], batch: int | None) -> list[str]:
    """The names as a list, or a ValueError naming what is wrong (type, count, unknown names)."""
    if isinstance(adapter_names, str) or not isinstance(adapter_names, (list, tuple)):
        raise ValueError(
            f"adapter_names must be a list with one adapter name per sample, got {type(adapter_names).__name__}"
        )
    names = list(adapter_names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"adapter_names must hold strings, got {names!r}")
    if batch is not None and len(names) != batch:
        raise ValueError(f"adapter_names has {len(names)} names for {batch} samples: pass one name per sample")
    unknown = sorted({n for n in names if n != BASE} - set(known))
    if unknown:
        raise ValueError(
            f"adapter_names names unknown adapter(s) {unknown}; this model has {sorted(known)} (and {BASE!r} for "
            "the base model)"
        )
    return names


def adapter_groups(adapter_names: Sequence[str], device: torch.device | None = None) -> list[tuple[str, torch.Tensor]]:
    """[(name, rows)] in order of first appearance; rows: the LongTensor of sample indices naming `name`."""
    order: dict[str, list[int]] = {}
    for index, name in enumerate(adapter_names):
        order.setdefault(name, []).append(index)
    return [(name, torch.tensor(rows, dtype=torch.long, device=device)) for name, rows in order.items()]


def expand_rows(rows: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """The rows of a tensor whose first dimension holds `length // batch` consecutive rows per sample (a tokenizer's
    [B * G, ...] patches) that belong to the samples `rows`."""
    if length == batch:
        return rows
    if length % batch:
        raise ValueError(f"cannot split {length} rows into the {batch} samples of a mixed-adapter batch")
    per_sample = length // batch
    return (rows.unsqueeze(1) * per_sample + torch.arange(per_sample, device=rows.device)).reshape(-1)


def take_rows(values, rows: torch.Tensor, batch: int):
    """`values` (a tensor, tuple, list or dict) with every tensor whose first dimension is `batch` cut to `rows`."""
    if isinstance(values, torch.Tensor):
        return values[rows] if values.dim() > 0 and values.shape[0] == batch else values
    if isinstance(values, tuple):
        return tuple(take_rows(v, rows, batch) for v in values)
    if isinstance(values, list):
        return [take_rows(v, rows, batch) for v in values]
    if isinstance(values, dict):
        return {k: take_rows(v, rows, batch) for k, v in values.items()}
    return values


def _put_rows(target, source, rows: torch.Tensor):
    """Copy the rows `rows` of `source` into `target` (same structure: tensor or tuple of tensors)."""
    if isinstance(target, torch.Tensor):
        target[rows] = source[rows].to(target.dtype)
        return target
    return type(target)(_put_rows(t, s, rows) for t, s in zip(target, source))


def _clone(output):
    if isinstance(output, torch.Tensor):
        return output.clone()
    return type(output)(_clone(o) for o in output)


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    return next((t for t in output if isinstance(t, torch.Tensor)), None) if isinstance(output, (tuple, list)) else None


def _wrapper_mixed_hook(groups, batch: int, module: AuxiliaryTrainingWrapper, args, kwargs, output):
    """Forward hook on a modules_to_save wrapper: each adapter's rows from that adapter's copy (the base module for
    `"__base__"` and for adapters that have no copy here). A call on another batch than the model's (Point-PEFT's
    frozen bank query runs the encoder on sub-batches, its output unused or adapter-free) keeps its output."""
    first = _first_tensor(output)
    if first is None or first.dim() == 0 or first.shape[0] != batch:
        return None
    result = _clone(output)
    for name, rows in groups:
        copies = module.modules_to_save
        own = copies[name] if name in copies else module.original_module  # noqa: SIM401 (ModuleDict: no .get)
        rows_out = own(*args, **kwargs)
        if _first_tensor(rows_out).shape != first.shape:
            raise ValueError(
                f"adapter {name!r} gives {tuple(_first_tensor(rows_out).shape)} from its "
                f"{type(module.original_module).__name__} where the active adapter gives {tuple(first.shape)}: "
                "one mixed-adapter batch needs heads of the same size (the same number of classes)"
            )
        _put_rows(result, rows_out, rows)
    return result


def _names_pre_hook(adapter_names, module, args, kwargs):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


@contextmanager
def mixed_batch_hooks(model: nn.Module, layer_cls: type, adapter_names: list[str]) -> Iterator[None]:
    """For one forward: `adapter_names=` on every `layer_cls` module, per-adapter rows on every modules_to_save
    wrapper. The hooks are removed on exit, also when the forward fails."""
    groups = adapter_groups(adapter_names)
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, layer_cls) and isinstance(module, BaseTunerLayer):
                handles.append(
                    module.register_forward_pre_hook(partial(_names_pre_hook, adapter_names), with_kwargs=True)
                )
            elif isinstance(module, AuxiliaryTrainingWrapper):
                hook = partial(_wrapper_mixed_hook, groups, len(adapter_names))
                handles.append(module.register_forward_hook(hook, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
