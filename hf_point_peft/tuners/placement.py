"""Device and dtype of adapter weights: they follow the base they wrap, as LoRA's follow their Linear.

peft places a new adapter with `_move_adapter_to_device_of_base_layer` (device and float dtype of the wrapped
module, nothing on the meta device of `low_cpu_mem_usage`), and `PeftModel` then calls `_cast_adapter_dtype`, which
upcasts half-precision adapters to float32 unless `autocast_adapter_dtype=False`. The point methods wrap whole blocks
and BatchNorms (no `weight` of their own for peft to read) and keep tuner-level per-adapter modules (Point-PEFT's
prompt coordinates and local attention, Any2Point's tokenizer and head), which peft's helpers do not visit; this
module extends both steps to them. The forwards cast an adapter's input to the adapter's dtype and its output back
to the base's dtype, so a float32 adapter runs on a bfloat16 / float16 base.

peft's `ModulesToSaveWrapper` (the trained head and cls token that the point methods save by default) has no such
step: a `low_cpu_mem_usage` load assigns the file's float32 copies onto a bfloat16 base, whose first forward then fails
on mixed dtypes (LoRA with a saved head does the same in peft 0.21). The tuners' step puts those copies on the device
and dtype of the module they copy, which is what a regular load (copying into the base-dtype copy) gives.
"""

from __future__ import annotations

import itertools

import torch
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

__all__ = ["FollowsBase", "TunerModulesFollowBase", "first_float", "HALF_DTYPES"]

HALF_DTYPES = (torch.float16, torch.bfloat16)
_META = torch.device("meta")


def first_float(module: nn.Module) -> torch.Tensor | None:
    """The first floating-point parameter or buffer of `module` (its device and dtype stand for the module's)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return tensor
    return None


def _on_meta(item) -> bool:
    tensors = [item] if isinstance(item, torch.Tensor) else itertools.chain(item.parameters(), item.buffers())
    return any(t.device == _META for t in tensors)


def _upcast_module_buffers(module: nn.Module) -> None:
    """Half-precision floating buffers of `module` (BatchNorm running statistics) to float32, like its parameters."""
    for owner in module.modules():
        for name, buffer in list(owner.named_buffers(recurse=False)):
            if buffer is not None and buffer.dtype in HALF_DTYPES:
                owner._buffers[name] = buffer.float()


class FollowsBase:
    """Mixin for the package's `BaseTunerLayer`s: the wrapped block's first floating tensor decides device and dtype
    (peft reads `base_layer.weight`, which a block has not)."""

    def _get_base_layer_device_and_dtype(self, base_layer: nn.Module):
        reference = first_float(base_layer)
        return (None, None) if reference is None else (reference.device, reference.dtype)


class TunerModulesFollowBase:
    """Mixin for the package's `BaseTuner`s with tuner-level per-adapter containers (`tuner_adapter_dicts`: names of
    ModuleDicts / ParameterDicts keyed by adapter name; `own_dtype_dicts`: BufferDicts that keep their storage dtype,
    e.g. a float16 memory bank). Gives them the placement peft gives layer adapters, and upcasts the module adapters'
    half-precision buffers with their parameters."""

    tuner_adapter_dicts: tuple[str, ...] = ()
    own_dtype_dicts: tuple[str, ...] = ()

    def _base_reference(self) -> torch.Tensor | None:
        return first_float(self.model)

    def _tuner_items(self, adapter_name: str):
        for attr in (*self.tuner_adapter_dicts, *self.own_dtype_dicts):
            container = getattr(self, attr, None)
            if container is not None and adapter_name in container:
                yield attr, container

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device: torch.device | None = None) -> None:
        """Called by peft after a `low_cpu_mem_usage` load (the tuner is a module of the PeftModel) and by the
        tuners after creating an adapter: base device, and base float dtype except for `own_dtype_dicts`."""
        reference = self._base_reference()
        if reference is None:
            return
        device = device or reference.device
        for attr, container in self._tuner_items(adapter_name):
            item = container[adapter_name]
            if _on_meta(item):
                continue
            dtype = None if attr in self.own_dtype_dicts else reference.dtype
            if isinstance(item, nn.Parameter):
                item.data = item.data.to(device, dtype=dtype)
            elif isinstance(item, torch.Tensor):
                container[adapter_name] = item.to(device, dtype=dtype)
            else:
                item.to(device, dtype=dtype)
        self._place_saved_module_copies(adapter_name)

    def _place_saved_module_copies(self, adapter_name: str) -> None:
        """`modules_to_save` copies of `adapter_name` to the device and dtype of the module each copies."""
        for wrapper in self.model.modules():
            if not isinstance(wrapper, ModulesToSaveWrapper) or adapter_name not in wrapper.modules_to_save:
                continue
            copy, reference = wrapper.modules_to_save[adapter_name], first_float(wrapper.original_module)
            if reference is not None and reference.device != _META and not _on_meta(copy):
                copy.to(reference.device, dtype=reference.dtype)

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        super()._cast_adapter_dtype(adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
        if not autocast_adapter_dtype:
            return
        for module in self.model.modules():
            if not isinstance(module, BaseTunerLayer):
                continue
            for container in module.children():
                if isinstance(container, nn.ModuleDict) and adapter_name in container:
                    _upcast_module_buffers(container[adapter_name])
        for attr, container in self._tuner_items(adapter_name):
            if attr in self.own_dtype_dicts or isinstance(container, BufferDict):
                continue
            item = container[adapter_name]
            if isinstance(item, nn.Parameter):
                if item.dtype in HALF_DTYPES:
                    item.data = item.data.float()
            else:
                for param in item.parameters():
                    if param.dtype in HALF_DTYPES:
                        param.data = param.data.float()
                _upcast_module_buffers(item)
