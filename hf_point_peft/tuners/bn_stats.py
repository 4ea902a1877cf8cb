"""Per-adapter BatchNorm statistics for the frozen backbone (`backbone_bn_stats`, specs/pointgst.md §5).

The official PEFT runs keep the frozen backbone in train mode, so the mini-PointNet BatchNorms keep updating their
running statistics. To reproduce that without ever touching the base model, each adapter owns a copy of those
statistics (saved with the adapter); the affine weights stay frozen.

- "update": training uses batch statistics and updates the adapter's copy; eval uses the copy.
- "frozen": the base statistics are always used, in training too.
- adapters disabled / none active: exactly the base module's output; train mode uses batch statistics without
  updating anything, eval mode the base statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from torch import nn

from ..models.layers import synced_batch_norm
from .mixed_batch import adapter_groups, expand_rows

__all__ = ["BatchNormStatsMixin", "BN_STATS_MODES"]

BN_STATS_MODES = ("update", "frozen")


class BatchNormStatsMixin:
    """Mixed in first: `class XBatchNorm(BatchNormStatsMixin, nn.Module, XLayer)`.

    Subclasses set `stats_prefix` (e.g. "point_gst_bn_"); the four attributes it creates become the layer's
    `other_param_names`: `<prefix>running_mean`, `<prefix>running_var`, `<prefix>num_batches_tracked` (BufferDicts)
    and `<prefix>mode` (a plain dict). The layer has no trainable weights.
    """

    stats_prefix: str = ""
    adapter_layer_names: tuple[str, ...] = ()
    merge_refusal = "per-adapter BatchNorm statistics cannot be merged into the base model; use unload()"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.stats_prefix:
            cls.other_param_names = cls.stats_attribute_names()

    @classmethod
    def stats_attribute_names(cls) -> tuple[str, ...]:
        p = cls.stats_prefix
        return (f"{p}running_mean", f"{p}running_var", f"{p}num_batches_tracked", f"{p}mode")

    def __init__(self, base_layer: nn.Module, adapter_name: str, mode: str):
        super().__init__()
        self._init_stats(base_layer)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, mode)

    def _init_stats(self, base_layer: nn.BatchNorm1d) -> None:
        if not isinstance(base_layer, nn.modules.batchnorm._BatchNorm) or not base_layer.track_running_stats:
            raise TypeError(f"expected a BatchNorm with running statistics, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.in_features = self.out_features = int(base_layer.num_features)
        mean, var, count, mode = self.stats_attribute_names()
        setattr(self, mean, BufferDict(persistent=True))
        setattr(self, var, BufferDict(persistent=True))
        setattr(self, count, BufferDict(persistent=True))
        setattr(self, mode, {})

    def update_layer(self, adapter_name: str, mode: str) -> None:
        if mode not in BN_STATS_MODES:
            raise ValueError(f"backbone_bn_stats must be one of {BN_STATS_MODES}, got {mode!r}")
        base = self.base_layer
        mean, var, count, mode_attr = self.stats_attribute_names()
        getattr(self, mean)[adapter_name] = base.running_mean.detach().clone()
        getattr(self, var)[adapter_name] = base.running_var.detach().clone()
        getattr(self, count)[adapter_name] = base.num_batches_tracked.detach().clone()
        getattr(self, mode_attr)[adapter_name] = mode
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def _stats_adapter(self) -> str | None:
        """The first active adapter that has statistics here (statistics cannot be combined across adapters)."""
        if self.disable_adapters:
            return None
        means = getattr(self, self.stats_attribute_names()[0])
        for name in self.active_adapters:
            if name in means:
                return name
        return None

    def forward(self, x: torch.Tensor, adapter_names: list[str] | None = None) -> torch.Tensor:
        base = self.base_layer
        if adapter_names is not None and not self.disable_adapters:
            return self._mixed_forward(x, adapter_names)
        adapter = self._stats_adapter()
        if adapter is None:
            if self.training:  # batch statistics, nothing updated
                if getattr(base, "sync_stats", False):
                    return synced_batch_norm(x, None, None, base.weight, base.bias, 0.0, base.eps)
                return F.batch_norm(x, None, None, base.weight, base.bias, True, 0.0, base.eps)
            return base(x)
        mean_attr, var_attr, count_attr, mode_attr = self.stats_attribute_names()
        if getattr(self, mode_attr)[adapter] == "frozen" or not self.training:
            stats = (base.running_mean, base.running_var)
            if getattr(self, mode_attr)[adapter] == "update":
                stats = (getattr(self, mean_attr)[adapter], getattr(self, var_attr)[adapter])
            return self._normalise(x, *stats, training=False, momentum=0.0)
        count = getattr(self, count_attr)[adapter]
        count.add_(1)
        momentum = base.momentum if base.momentum is not None else 1.0 / float(count)
        mean, var = getattr(self, mean_attr)[adapter], getattr(self, var_attr)[adapter]
        return self._normalise(x, mean, var, training=True, momentum=momentum)

    def _mixed_forward(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        """Inference with each adapter's statistics on its own rows (the base's for "__base__")."""
        mean_attr, var_attr, _, mode_attr = self.stats_attribute_names()
        base, out = self.base_layer, torch.empty_like(x)
        for name, samples in adapter_groups(adapter_names, device=x.device):
            rows = expand_rows(samples, len(adapter_names), x.shape[0])  # the tokenizer's BNs see [B * G, C, K]
            if name in getattr(self, mode_attr) and getattr(self, mode_attr)[name] == "update":
                stats = (getattr(self, mean_attr)[name], getattr(self, var_attr)[name])
            else:
                stats = (base.running_mean, base.running_var)
            out[rows] = self._normalise(x[rows], *stats, training=False, momentum=0.0)
        return out

    def _normalise(self, x, mean, var, *, training: bool, momentum: float) -> torch.Tensor:
        """Batch norm with the base's affine weights, computed in the statistics' dtype (float32 statistics of a
        half-precision base, `autocast_adapter_dtype`), returned in the input's dtype."""
        base, dtype = self.base_layer, mean.dtype
        weight = None if base.weight is None else base.weight.to(dtype)
        bias = None if base.bias is None else base.bias.to(dtype)
        if training and getattr(base, "sync_stats", False):  # multi-process run: statistics of the global batch
            out = synced_batch_norm(x.to(dtype), mean, var, weight, bias, momentum, base.eps)
        else:
            out = F.batch_norm(x.to(dtype), mean, var, weight, bias, training, momentum, base.eps)
        return out.to(x.dtype)
