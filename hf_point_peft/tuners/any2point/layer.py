"""Any2Point layers (specs/any2point.md §6): the bottleneck on each layer's attach sub-module and the any-to-3D
guided branch on the layer output, plus the tuner-level modules (local attention per view, cls, head)."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...models.layers import quick_gelu
from ..base import checkpointed, suspended_checkpointing
from ..placement import FollowsBase
from ..unmergeable import UnmergeableLayer
from .config import Any2PointConfig

__all__ = [
    "AttachPoint",
    "Any2PointState",
    "Any2PointLayer",
    "Any2PointLayerWrapper",
    "CellBatchNorm",
    "ClsModule",
    "LocalCellAttention",
    "PointHead",
    "guidance_weights",
    "segment_max",
    "segment_mean",
]


@dataclass
class Any2PointState:
    """What one point forward hands to every wrapped source layer (as the keyword argument `any2point_state`): the
    adapter that runs, per-view cells [M, B, G] (global ids b * n_cells + cell) with each token's row among the
    occupied cells, the attention masks of each view, voxel ids [B, G] (global) and their count. Made by the point
    forward for that call only; a call in the source modality passes none, and the layers run as the source's."""

    adapter: str
    cells: torch.Tensor
    num_cells: int
    cell_rows: list[torch.Tensor]
    num_occupied: list[int]
    masks: list[torch.Tensor]
    voxels: torch.Tensor
    num_voxels: int


def segment_mean(x: torch.Tensor, ids: torch.Tensor, num: int) -> torch.Tensor:
    """Mean of the rows of x [R, C] per segment id in [0, num) -> [num, C] (empty segments are 0)."""
    sums = x.new_zeros(num, x.shape[1]).index_add(0, ids, x)
    counts = torch.bincount(ids, minlength=num).clamp_min(1).to(x.dtype).unsqueeze(1)
    return sums / counts


def segment_max(x: torch.Tensor, ids: torch.Tensor, num: int) -> torch.Tensor:
    out = x.new_full((num, x.shape[1]), float("-inf"))
    out = out.scatter_reduce(0, ids.unsqueeze(1).expand_as(x), x, reduce="amax", include_self=True)
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


class CellBatchNorm(nn.BatchNorm1d):
    """BatchNorm over pooled cells. With `count_empty=True` (the official behaviour) the statistics cover every cell
    of every sample, empty ones counting as zero rows, computed from the occupied rows and the total count without
    materialising the empty rows; the running variance is unbiased over that count."""

    def forward_cells(self, occupied: torch.Tensor, total: int | None) -> torch.Tensor:
        if not self.training or total is None:
            return super().forward(occupied)
        rows = float(total)
        mean = occupied.sum(0) / rows
        var = ((occupied - mean).square().sum(0) + (rows - occupied.shape[0]) * mean.square()) / rows
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var.detach() * rows / max(rows - 1, 1.0), alpha=momentum)
            self.num_batches_tracked.add_(1)
        return (occupied - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class LocalCellAttention(nn.Module):
    """Attention among the tokens of one sample that share a cell: qkv Linear(W, 3a), out Linear(a, W), a^-1/2 scale."""

    def __init__(self, width: int, dim: int, heads: int):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.qkv = nn.Linear(width, 3 * dim)
        self.out = nn.Linear(dim, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(1), scale=self.dim**-0.5)
        return self.out(out.transpose(1, 2).reshape(batch, tokens, self.dim))


class ClsModule(nn.Module):
    def __init__(self, width: int, token: torch.Tensor | None = None):
        super().__init__()
        self.token = nn.Parameter(
            token.detach().clone().reshape(1, 1, width).float()
            if token is not None
            else nn.init.normal_(torch.empty(1, 1, width), std=0.02)
        )
        self.position = nn.Parameter(nn.init.normal_(torch.empty(1, 1, width), std=0.02))


class PointHead(nn.Sequential):
    """2W -> hidden (Linear without bias, BN, ReLU, Dropout)... -> num_labels."""

    def __init__(self, in_features: int, hidden: list[int], num_labels: int, dropout: float):
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_labels))
        super().__init__(*layers)


class _Bottleneck(nn.Module):
    def __init__(self, width: int, rank: int, dropout: float, zero_up: bool):
        super().__init__()
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width)
        self.drop = nn.Dropout(dropout)
        for linear in (self.down, self.up):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        if zero_up:
            nn.init.zeros_(self.up.weight)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(quick_gelu(self.down(f))))


class _GuidedNorms(nn.Module):
    """The M + 1 BatchNorms of one layer and adapter: one over the 3D voxels, one per view over the cells."""

    def __init__(self, width: int, views: int, zero_view_gamma: bool):
        super().__init__()
        self.voxel = nn.BatchNorm1d(width)
        self.views = nn.ModuleList([CellBatchNorm(width) for _ in range(views)])
        if zero_view_gamma:
            for bn in self.views:
                nn.init.zeros_(bn.weight)


def guidance_weights(views: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """w_v = (1 + cos(F_v, F_3D)) / 2, normalised over the views per token: views [M, R, C], reference [R, C] -> [M, R]."""
    # cosine is clamped to [-1, 1] only against round-off, so the weights cannot dip below zero
    w = (1 + F.cosine_similarity(views, reference.unsqueeze(0), dim=-1).clamp(-1.0, 1.0)) / 2
    return w / (w.sum(0, keepdim=True) + 1e-6)


class AttachPoint(nn.Module):
    """A source layer's attach sub-module, wrapped the way LoRA wraps a Linear. While its owning
    `Any2PointLayerWrapper` runs an adapted forward, the owner hands it that adapter's bottleneck (`adapting`) and
    the output becomes f + s * Up(Drop(QuickGELU(Down(f)))); otherwise it is the sub-module. The hand-over is needed
    because the source layer calls this sub-module itself, with no argument of ours; it goes through a context
    variable (`_ADAPTING`), not through module state, so two threads (or a nested call) running one model each see
    their own call's bottleneck. The bottleneck's weights stay in the owner (`any2point_bottleneck`), so saved keys do
    not depend on where the attach point is."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        residual = (_ADAPTING.get() or {}).get(self)
        return out if residual is None else residual(out)

    @contextmanager
    def adapting(self, bottleneck: nn.Module, scale: float):
        token = _ADAPTING.set({**(_ADAPTING.get() or {}), self: partial(_add_bottleneck, bottleneck, scale)})
        try:
            yield
        finally:
            _ADAPTING.reset(token)


# {attach point: f -> f + s * bottleneck(f)} of the adapted calls running in this thread / context (None outside)
_ADAPTING: ContextVar[dict[AttachPoint, partial] | None] = ContextVar("any2point_adapting", default=None)


def _add_bottleneck(bottleneck: nn.Module, scale: float, output: torch.Tensor) -> torch.Tensor:
    return output + scale * bottleneck(output.to(bottleneck.down.weight.dtype)).to(output.dtype)


def _attach_parent(layer: nn.Module, attach: str) -> tuple[nn.Module, str]:
    parent, _, name = attach.rpartition(".")
    return layer.get_submodule(parent), name


class Any2PointLayer(UnmergeableLayer):
    merge_refusal = "Any2Point adapters depend on the input and cannot be merged; use unload()"
    adapter_layer_names: tuple[str, ...] = ("any2point_bottleneck", "any2point_norms")
    other_param_names: tuple[str, ...] = ("any2point_settings",)


class Any2PointLayerWrapper(FollowsBase, nn.Module, Any2PointLayer):
    """One source layer with the Any2Point bottleneck (on its attach sub-module, wrapped as an `AttachPoint`) and the
    guided branch on its output. Outside a point forward, or while adapters are disabled, it is exactly the source
    layer."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: Any2PointConfig,
        attach: str,
        width: int,
        shared=None,
    ):
        super().__init__()
        self.base_layer = base_layer
        self.width = self.in_features = self.out_features = width
        self.any2point_bottleneck = nn.ModuleDict()
        self.any2point_norms = nn.ModuleDict()
        self.any2point_settings: dict[str, Any2PointConfig] = {}
        self.shared = shared  # the tuner's per-view attention and norms (a plain object: never registered)
        self.attach = attach
        parent, name = _attach_parent(base_layer, attach)
        if not isinstance(getattr(parent, name), AttachPoint):
            setattr(parent, name, AttachPoint(getattr(parent, name)))
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: Any2PointConfig) -> None:
        bottleneck = _Bottleneck(self.width, config.adapter_rank, config.adapter_dropout, zero_up=config.init_weights)
        norms = _GuidedNorms(self.width, config.num_views, zero_view_gamma=config.init_weights)
        self.any2point_bottleneck[adapter_name] = bottleneck
        self.any2point_norms[adapter_name] = norms
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.any2point_settings[adapter_name] = config
        self.set_adapter(self.active_adapters)

    def forward(self, hidden_states: torch.Tensor, *args, any2point_state: Any2PointState | None = None, **kwargs):
        """The source layer; in a point forward (`any2point_state` given by the tuner's point path) with its
        adapter's bottleneck and guided branch."""
        name = any2point_state.adapter if any2point_state is not None and not self.disable_adapters else None
        if name is None or name not in self.any2point_bottleneck:
            return self.base_layer(hidden_states, *args, **kwargs)
        run = partial(self._adapted_forward, name, any2point_state, **kwargs)
        return checkpointed(self, self.base_layer, run, hidden_states, *args)

    def attach_point(self) -> AttachPoint:
        parent, name = _attach_parent(self.base_layer, self.attach)
        return getattr(parent, name)

    def _adapted_forward(self, name: str, state: Any2PointState, hidden_states: torch.Tensor, *args, **kwargs):
        scale = self.any2point_settings[name].scale_factor
        attach = self.attach_point()
        with attach.adapting(self.any2point_bottleneck[name], scale), suspended_checkpointing(self.base_layer):
            out = self.base_layer(hidden_states, *args, **kwargs)
        tensor = out[0] if isinstance(out, tuple) else out
        guided = self._guided(name, state, tensor)
        return (guided, *out[1:]) if isinstance(out, tuple) else guided

    def _guided(self, name: str, ctx: Any2PointState, x: torch.Tensor) -> torch.Tensor:
        config = self.any2point_settings[name]
        if config.coef == 0:
            return x
        shared, norms = self.shared, self.any2point_norms[name]
        t = x[:, 1:].to(norms.voxel.weight.dtype)  # the adapter's dtype; the result returns in the layer's
        batch, groups, width = t.shape
        flat = t.reshape(batch * groups, width)
        voxels = ctx.voxels.reshape(-1)
        pooled3 = segment_max(flat, voxels, ctx.num_voxels) + segment_mean(flat, voxels, ctx.num_voxels)
        f3 = F.gelu(norms.voxel(pooled3)).to(flat.dtype)[voxels]  # voxel ids are compact: all occupied
        views = []
        total = batch * ctx.num_cells if config.bn_over_empty_cells else None
        for v in range(config.num_views):
            attn, ln = shared.local_attn[name][v], shared.view_norm[name][v]
            tv = t + attn(ln(t), ctx.masks[v])
            cells, occupied = ctx.cell_rows[v], ctx.num_occupied[v]
            tv_flat = tv.reshape(batch * groups, width)
            pooled = segment_mean(tv_flat, cells, occupied)  # [occupied cells (sorted by global id), W]
            if config.pooling == "max_mean":
                pooled = pooled + segment_max(tv_flat, cells, occupied)
            rows = F.gelu(norms.views[v].forward_cells(pooled, total))
            views.append(rows.to(flat.dtype)[cells])
        views = torch.stack(views)
        w = guidance_weights(views, f3)
        guided = (w.unsqueeze(-1) * views).sum(0).reshape(batch, groups, width)
        return torch.cat([x[:, :1], (t + config.coef * guided).to(x.dtype)], dim=1)

    def unload_and_optionally_merge_module(self, merge: bool, **kwargs) -> nn.Module:
        """peft's `unload()` calls this for layers that need more than `get_base_layer()`: the source layer comes back
        with its attach sub-module unwrapped."""
        if merge:
            self.merge()
        parent, name = _attach_parent(self.base_layer, self.attach)
        setattr(parent, name, getattr(parent, name).base_layer)
        return self.base_layer
