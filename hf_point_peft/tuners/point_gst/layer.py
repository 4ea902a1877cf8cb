"""PointGST layers: the spectral adapter (PCSA) wrapped around a block, and the per-adapter BatchNorm statistics."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...geometry.per_forward import PointGeometry
from ...geometry.spectral import GraphBases, graph_bases
from ..base import require_geometry
from ..bn_stats import BatchNormStatsMixin
from ..mixed_batch import adapter_groups
from ..placement import FollowsBase
from ..unmergeable import UnmergeableLayer
from .config import GraphSettings, PointGSTConfig

__all__ = ["PointGSTBatchNorm", "PointGSTBlock", "PointGSTLayer", "SpectralAdapter"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class PointGSTLayer(UnmergeableLayer):
    """Marker base of every PointGST tuner layer (blocks and BatchNorm statistics)."""

    merge_refusal = "PointGST adapters depend on the input and cannot be merged; use unload()"

    adapter_layer_names: tuple[str, ...] = ("point_gst_adapter",)
    other_param_names: tuple[str, ...] = ("point_gst_graph",)


class SpectralAdapter(nn.Module):
    """One PCSA (specs/pointgst.md §2): down -> SiLU, plus a global and a local spectral branch on the patch tokens
    sharing `adapt1`, -> up. Prefix tokens (cls; sos + cls) only get up(SiLU(down(x)))."""

    def __init__(self, width: int, rank: int, transform: str, init_weights: bool = True):
        super().__init__()
        self.transform = transform
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width)
        self.adapt1 = nn.Linear(rank, rank)
        self.norm_g = nn.LayerNorm(rank)
        self.norm_l = nn.LayerNorm(rank)
        nn.init.xavier_uniform_(self.down.weight)
        for linear in (self.up, self.adapt1):
            if init_weights:  # official: exactly zero output at step 0
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)
            else:
                nn.init.normal_(linear.weight, std=0.02)
                nn.init.normal_(linear.bias, std=0.02)

    def _spec(self, z: torch.Tensor, v: torch.Tensor, inverse: bool) -> torch.Tensor:
        # official: forward U z, inverse U^T z; paper: forward U^T z, inverse U z
        transpose = (self.transform == "paper") != inverse
        return (v.transpose(-1, -2) if transpose else v) @ z

    def _branch(self, s: torch.Tensor, v: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        # the spectral matmuls run in float32 (float64 for a float64 model), never in half precision
        dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
        v = v.to(dtype)
        with torch.autocast(device_type=s.device.type, enabled=False):
            f = self._spec(s.to(dtype), v, inverse=False)
        f = f + F.silu(self.adapt1(norm(f.to(self.adapt1.weight.dtype)))).to(f.dtype)
        with torch.autocast(device_type=s.device.type, enabled=False):
            return self._spec(f.to(dtype), v, inverse=True)

    def forward(self, x: torch.Tensor, bases: GraphBases, num_prefix: int) -> torch.Tensor:
        h = self.down(x.to(self.down.weight.dtype))  # a float32 adapter on a half-precision base
        s = h[:, num_prefix:]
        batch, groups, rank = s.shape
        if groups != bases.global_basis.shape[-1]:
            raise ValueError(
                f"the block sees {groups} patch tokens after {num_prefix} prefix tokens, but the tokenizer produced "
                f"{bases.global_basis.shape[-1]} centres; check num_prefix_tokens"
            )
        global_out = self._branch(s, bases.global_basis, self.norm_g)
        k = bases.local_basis.shape[-1]
        local_in = s.gather(1, bases.perm.unsqueeze(-1).expand(-1, -1, rank)).reshape(batch, groups // k, k, rank)
        local_out = self._branch(local_in, bases.local_basis, self.norm_l).reshape(batch, groups, rank)
        local_out = local_out.gather(1, bases.inv.unsqueeze(-1).expand(-1, -1, rank))
        a = F.silu(h)
        patches = a[:, num_prefix:] + (global_out + local_out).to(a.dtype)
        return self.up(torch.cat([a[:, :num_prefix], patches], dim=1))


def _build_bases(settings: GraphSettings, centres: torch.Tensor) -> GraphBases:
    with torch.no_grad(), torch.autocast(device_type=centres.device.type, enabled=False):
        return graph_bases(
            centres.float(),
            local_size=settings.local_size,
            curve=settings.curve,
            distance=settings.distance,
            scale=settings.scale,
            kind=settings.kind,
            eigh_dtype=_DTYPES[settings.eigh_dtype],
            degenerate_eps=settings.degenerate_eps,
        )


class PointGSTBlock(FollowsBase, nn.Module, PointGSTLayer):
    """A transformer block with PCSA adapters in parallel with its FFN (specs/pointgst.md §3): the adapters read the
    input of the block's second LayerNorm (the residual stream after attention) and their output is added to the
    block output. Works for the pre-LN Point-MAE blocks and PointGPT's normed-residual blocks alike."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: PointGSTConfig, key: str = ""):
        super().__init__()
        self.base_layer = base_layer
        self.point_gst_adapter = nn.ModuleDict()
        self.point_gst_graph: dict[str, GraphSettings] = {}
        self.key = key
        self.block_norm = config.block_norm
        self.num_prefix = config.num_prefix_tokens
        norm = getattr(base_layer, config.block_norm)
        self.width = int(norm.normalized_shape[0]) if hasattr(norm, "normalized_shape") else int(norm.weight.shape[0])
        self.in_features = self.out_features = self.width
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: PointGSTConfig) -> None:
        adapter = SpectralAdapter(self.width, config.rank, config.spectral_transform, config.init_weights)
        self.point_gst_adapter[adapter_name] = adapter
        self.point_gst_graph[adapter_name] = config.graph_key
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def _active(self) -> list[str]:
        if self.disable_adapters:
            return []
        return [name for name in self.active_adapters if name in self.point_gst_adapter]

    def forward(
        self,
        hidden_states: torch.Tensor,
        *args,
        point_geometry: PointGeometry | None = None,
        adapter_names: list[str] | None = None,
        **kwargs,
    ):
        """The block with the active adapters' PCSA outputs added to its output. The block calls
        `parallel_adapter(output, stream)` itself with the stream that enters its FFN (the input of `block_norm`), so
        the adapters need no hook, and the block's own gradient checkpointing covers them; `point_geometry` (passed
        by the encoder) holds this forward's token centres, from which the graph bases are built once per forward."""
        if adapter_names is not None and not self.disable_adapters:
            add = partial(self._add_mixed, adapter_names, require_geometry(point_geometry, self))
        else:
            active = self._active()
            if not active:
                return self.base_layer(hidden_states, *args, **kwargs)
            add = partial(self._add_active, active, require_geometry(point_geometry, self))
        return self.base_layer(hidden_states, *args, parallel_adapter=add, **kwargs)

    def _add_active(
        self, active: list[str], geometry: PointGeometry, output: torch.Tensor, stream: torch.Tensor
    ) -> torch.Tensor:
        """`output` plus each active adapter's PCSA of `stream`, one adapter after the other."""
        for name in active:
            key = self.point_gst_graph[name]
            bases = geometry.get(key, partial(_build_bases, key))
            output = output + self.point_gst_adapter[name](stream, bases, self.num_prefix).to(output.dtype)
        return output

    def _add_mixed(
        self, adapter_names: list[str], geometry: PointGeometry, output: torch.Tensor, stream: torch.Tensor
    ) -> torch.Tensor:
        """Each adapter's rows get that adapter's PCSA, with graph bases of those rows only (the batch-global
        distance scale then covers the same samples as a forward of those rows alone)."""
        for name, rows in adapter_groups(adapter_names, device=output.device):
            if name not in self.point_gst_adapter:  # "__base__", or an adapter that skips this block
                continue
            key = self.point_gst_graph[name]
            bases = geometry.get((key, "rows", *rows.tolist()), lambda c, k=key, r=rows: _build_bases(k, c[r]))
            delta = self.point_gst_adapter[name](stream[rows], bases, self.num_prefix)
            output = output.index_add(0, rows, delta.to(output.dtype))
        return output


class PointGSTBatchNorm(BatchNormStatsMixin, FollowsBase, nn.Module, PointGSTLayer):
    """Per-adapter running statistics of a frozen backbone BatchNorm (`backbone_bn_stats`)."""

    stats_prefix = "point_gst_bn_"
