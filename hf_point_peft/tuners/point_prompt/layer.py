"""Point-PEFT layers (specs/point_prompt.md): prompt tokens, bottleneck adapters, the geometry-aware adapter, bias
deltas, and the wrappers around blocks, the final norm and the tokenizer's BatchNorms."""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ...geometry import farthest_point_sample, gather_points, knn
from ...geometry.per_forward import PointGeometry
from ...models.layers import BatchNorm1d, quick_gelu
from ..base import adapters_disabled, checkpointed, require_geometry
from ..bn_stats import BatchNormStatsMixin
from ..mixed_batch import adapter_groups, take_rows
from ..placement import FollowsBase
from ..unmergeable import UnmergeableLayer
from .config import PointPromptConfig

__all__ = [
    "BiasDeltas",
    "Bottleneck",
    "GAGraph",
    "LocalAttention",
    "NormDeltas",
    "PointPromptBatchNorm",
    "PointPromptBlock",
    "PointPromptLayer",
    "PointPromptNorm",
    "FrozenFeatures",
    "PromptShared",
    "PromptTokens",
    "SharedGeometry",
    "quick_gelu",
]


def _run(adapter: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """`adapter(z)` in the adapter's dtype (a float32 adapter on a half-precision base), returned in z's dtype."""
    return adapter(z.to(adapter.down.weight.dtype)).to(z.dtype)


class Bottleneck(nn.Module):
    """W2 Drop(QuickGELU(W1 z)) (C -> r -> C), plus z when `residual`. Xavier weights, biases N(0, 1e-6)."""

    def __init__(self, width: int, rank: int, dropout: float, residual: bool):
        super().__init__()
        self.residual = residual
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width)
        self.drop = nn.Dropout(dropout)
        for linear in (self.down, self.up):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.up(self.drop(quick_gelu(self.down(z))))
        return z + out if self.residual else out


class PromptTokens(nn.Module):
    """P_l = Dropout(E_l) + A^cp_l(Cm) (or Dropout(E_l) without a memory bank)."""

    def __init__(self, count: int, width: int, cp_rank: int, prompt_dropout: float, adapter_dropout: float, bank: bool):
        super().__init__()
        self.embedding = nn.Parameter(nn.init.trunc_normal_(torch.empty(count, width), std=0.02))
        self.drop = nn.Dropout(prompt_dropout)
        self.enhance = Bottleneck(width, cp_rank, adapter_dropout, residual=True) if bank else None

    def forward(self, batch: int, cm: torch.Tensor | None) -> torch.Tensor:
        prompts = self.drop(self.embedding).unsqueeze(0).expand(batch, -1, -1)
        if self.enhance is not None:
            prompts = prompts + self.enhance(cm.to(prompts.dtype))
        return prompts


class BiasDeltas(nn.Module):
    """Zero-initialised additive deltas on a block's official bias set (BitFit without touching the base)."""

    def __init__(self, width: int, intermediate: int):
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(width))
        self.fc1 = nn.Parameter(torch.zeros(intermediate))
        self.fc2 = nn.Parameter(torch.zeros(width))
        self.norm1 = nn.Parameter(torch.zeros(width))
        self.norm2 = nn.Parameter(torch.zeros(width))


class NormDeltas(nn.Module):
    """Zero-initialised deltas on the final LayerNorm's weight and bias."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(width))
        self.bias = nn.Parameter(torch.zeros(width))


class LocalAttention(nn.Module):
    """Attention inside each neighbourhood: qkv Linear(C, 3a, no bias), `heads` heads, scale a^-1/2 (the official
    value), softmax over the k neighbours, out Linear(a, C)."""

    def __init__(self, width: int, dim: int, heads: int):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.qkv = nn.Linear(width, 3 * dim, bias=False)
        self.out = nn.Linear(dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.qkv(x))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """The attention from already projected [..., tokens, 3a] query / key / value rows."""
        batch, tokens, _ = qkv.shape
        q, k, v = qkv.reshape(batch, tokens, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.dim**-0.5)
        return self.out(out.transpose(1, 2).reshape(batch, tokens, self.dim))


class SharedGeometry(nn.Module):
    """LN3 + LocalAttention, shared by every block of one adapter."""

    def __init__(self, width: int, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = LocalAttention(width, dim, heads)


class GAGraph:
    """One forward's neighbourhood graph: anchor indices [B, A], neighbour indices [B, A, k] into the rows of S, and
    the propagation weights [B, G, A] (float32, normalised over the anchors)."""

    def __init__(self, anchors: torch.Tensor, neighbours: torch.Tensor, weights: torch.Tensor):
        self.anchors, self.neighbours, self.weights = anchors, neighbours, weights


def build_graph(centres: torch.Tensor, coords: torch.Tensor | None, num_anchors: int, k: int) -> GAGraph:
    """FPS anchors over S (= concat(prompt coords, centres) or centres), kNN of each anchor in S, per sample (the
    official code mixed samples here; this is the intended per-sample graph, §6.3), inverse-distance weights from
    every patch centre to every anchor. Only the weights carry gradient (to the prompt coordinates)."""
    centres = centres.float()
    points = (
        centres if coords is None else torch.cat([coords.float().unsqueeze(0).expand(len(centres), -1, -1), centres], 1)
    )
    if num_anchors > points.shape[1] or k > points.shape[1]:
        raise ValueError(
            f"the GA adapter needs ga_num_anchors ({num_anchors}) and ga_k ({k}) <= {points.shape[1]} graph nodes"
        )
    with torch.no_grad(), torch.autocast(device_type=centres.device.type, enabled=False):
        anchors = farthest_point_sample(points.detach(), num_anchors)
        _, neighbours = knn(gather_points(points.detach(), anchors), points.detach(), k)
    anchor_xyz = gather_points(points, anchors)
    with torch.autocast(device_type=centres.device.type, enabled=False):
        d2 = (centres.unsqueeze(2) - anchor_xyz.unsqueeze(1)).square().sum(-1)
        weights = 1.0 / (d2 + 1e-8)
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return GAGraph(anchors, neighbours, weights)


class PointPromptLayer(UnmergeableLayer):
    """Marker base of every Point-PEFT tuner layer."""

    merge_refusal = "Point-PEFT adapters depend on the input and cannot be merged; use unload()"

    adapter_layer_names: tuple[str, ...] = (
        "point_prompt_tokens",
        "point_prompt_mlp",
        "point_prompt_out",
        "point_prompt_ga_norm",
        "point_prompt_bias",
    )
    other_param_names: tuple[str, ...] = ("point_prompt_settings",)


class PromptShared:
    """What the block layers of one PEFT model share: plain (unregistered) references to the tuner-level modules
    (prompt coordinates, LN3 + local attention, memory bank), each adapter's config, and the frozen feature
    function used for the bank query. Per-forward values are cached in the forward's `PointGeometry`."""

    def __init__(self, coords: nn.ParameterDict, geometry: nn.ModuleDict, bank, feature_fn) -> None:
        self.coords, self.geometry, self.bank, self.feature_fn = coords, geometry, bank, feature_fn
        self.settings: dict[str, PointPromptConfig] = {}

    def graph(
        self, geometry: PointGeometry, name: str, with_prompts: bool, rows: torch.Tensor | None = None
    ) -> GAGraph:
        """This forward's GA graph of adapter `name` (of the samples `rows` only, in a mixed-adapter batch)."""
        config = self.settings[name]
        coords = self.coords[name] if with_prompts else None

        def build(centres: torch.Tensor) -> GAGraph:
            centres = centres if rows is None else centres[rows]
            anchors = config.ga_num_anchors if config.ga_num_anchors is not None else max(1, centres.shape[1] // 2)
            return build_graph(centres, coords, anchors, config.ga_k)

        return geometry.get(("point_prompt_graph", name, with_prompts, *_rows_key(rows)), build)

    def prompt_input(self, geometry: PointGeometry, name: str, rows: torch.Tensor | None = None) -> torch.Tensor:
        config = self.settings[name]
        if name not in self.bank:
            raise ValueError(
                "this Point-PEFT adapter uses a memory bank (use_memory_bank=True) but has none yet: call "
                "hf_point_peft.build_memory_bank(model, train_data) before training, or set use_memory_bank=False"
            )

        def build(_centres: torch.Tensor) -> torch.Tensor:
            points = geometry.points if rows is None else geometry.points[rows]
            return bank_prompt_input(self.feature_fn(points), self.bank[name], config.bank_topk)

        return geometry.get(("point_prompt_cm", name, *_rows_key(rows)), build)


def _rows_key(rows: torch.Tensor | None) -> tuple:
    return () if rows is None else ("rows", *rows.tolist())


class FrozenFeatures:
    """phi(points): the frozen pre-trained encoder with every adapter disabled, in eval mode, without grad, on the
    patch tokens only; the final-norm output max-pooled over tokens [B, C] (float32). A call of its own (its own
    `PointGeometry`), made inside the adapted forward of the first prompted block."""

    def __init__(self, encoder: nn.Module) -> None:
        self.encoder = encoder

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        modes = [(m, m.training) for m in self.encoder.modules()]
        self.encoder.eval()
        try:
            with adapters_disabled(self.encoder), torch.no_grad():
                out = self.encoder(points, add_cls_token=False, return_dict=True)
        finally:
            for module, mode in modes:
                module.training = mode
        return out.pooler_output.float()


def bank_prompt_input(query: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Parameter-free attention over the bank (per sample, float32): Cm = [q, sum_k softmax(s_K)_k M[I_k], M[I_1..K]]
    with s = cos(q, M), top-K. Raw bank rows are aggregated; no temperature, as in the official code."""
    bank = bank.float()
    if k > bank.shape[0]:
        raise ValueError(f"bank_topk ({k}) exceeds the memory bank's {bank.shape[0]} rows")
    sims = F.normalize(query.float(), dim=-1) @ F.normalize(bank, dim=-1).T
    top, index = sims.topk(k, dim=-1)
    picked = bank[index]
    aggregate = (top.softmax(dim=-1).unsqueeze(-1) * picked).sum(dim=1, keepdim=True)
    return torch.cat([query.float().unsqueeze(1), aggregate, picked], dim=1)


class PointPromptBlock(FollowsBase, nn.Module, PointPromptLayer):
    """A block re-run with Point-PEFT (specs/point_prompt.md §5): prompts after the prefix tokens in the first
    `prompt_layers` blocks, bias deltas, the MLP adapter, the geometry-aware adapter and the output adapter. Supports
    the Point-MAE family's pre-LN blocks and PointGPT's normed-residual causal blocks."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: PointPromptConfig,
        key: str = "",
        shared: PromptShared | None = None,
    ):
        super().__init__()
        match = re.search(r"\.(\d+)$", key)
        if match is None:
            raise ValueError(f"cannot read a block index from {key!r}")
        self.base_layer = base_layer
        self.index = int(match.group(1))
        self.key = key
        self.num_prefix = config.num_prefix_tokens
        self.gpt = hasattr(base_layer, "ln_1")
        norm1 = base_layer.ln_1 if self.gpt else base_layer.norm1
        self.width = int(norm1.normalized_shape[0])
        self.in_features = self.out_features = self.width
        self.intermediate = base_layer.mlp.fc1.out_features
        for name in self.adapter_layer_names:
            setattr(self, name, nn.ModuleDict())
        self.point_prompt_settings: dict[str, PointPromptConfig] = {}
        self.shared = shared  # the tuner's per-adapter modules and settings (a plain object: never registered)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: PointPromptConfig) -> None:
        c = config
        if self.index < c.prompt_layers:
            self.point_prompt_tokens[adapter_name] = PromptTokens(
                c.num_prompt_tokens,
                self.width,
                c.cp_adapter_rank,
                c.prompt_dropout,
                c.adapter_dropout,
                c.use_memory_bank,
            )
        self.point_prompt_mlp[adapter_name] = Bottleneck(
            self.width, c.mlp_adapter_rank, c.adapter_dropout, residual=False
        )
        self.point_prompt_out[adapter_name] = Bottleneck(
            self.width, c.out_adapter_rank, c.adapter_dropout, residual=True
        )
        self.point_prompt_ga_norm[adapter_name] = BatchNorm1d(self.width)
        if c.bias_tuning:
            self.point_prompt_bias[adapter_name] = BiasDeltas(self.width, self.intermediate)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.point_prompt_settings[adapter_name] = c
        self.set_adapter(self.active_adapters)

    # -------------------------------------------------------------- the forward
    def _active(self) -> str | None:
        if self.disable_adapters:
            return None
        active = [name for name in self.active_adapters if name in self.point_prompt_mlp]
        if len(active) > 1:
            raise ValueError(f"Point-PEFT runs one adapter at a time; active adapters here: {active}")
        return active[0] if active else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        *args,
        point_geometry: PointGeometry | None = None,
        adapter_names: list[str] | None = None,
        **kwargs,
    ):
        """The block under the active adapter; `point_geometry` (passed by the encoder) holds this forward's points
        and token centres, from which the GA graph and the bank query are built once per forward."""
        if adapter_names is not None and not self.disable_adapters:
            geometry = require_geometry(point_geometry, self)
            return self._mixed_forward(adapter_names, geometry, hidden_states, *args, **kwargs)
        name = self._active()
        if name is None:
            return self.base_layer(hidden_states, *args, **kwargs)
        graph, cm = self._per_forward_inputs(name, require_geometry(point_geometry, self))
        run = partial(self._adapted_forward, name, self.point_prompt_settings[name], graph, cm, **kwargs)
        return checkpointed(self, self.base_layer, run, hidden_states, *args)

    def _per_forward_inputs(self, name: str, geometry: PointGeometry, rows: torch.Tensor | None = None):
        """The GA graph and the bank-enhanced prompt input (None without a bank or prompts) of adapter `name`."""
        config = self.point_prompt_settings[name]
        prompted = name in self.point_prompt_tokens
        graph = self.shared.graph(geometry, name, prompted and config.learn_prompt_coords, rows)
        cm = self.shared.prompt_input(geometry, name, rows) if prompted and config.use_memory_bank else None
        return graph, cm

    def _mixed_forward(
        self, adapter_names: list[str], geometry: PointGeometry, hidden_states: torch.Tensor, *args, **kwargs
    ):
        """Each adapter's rows through the block under that adapter, as a forward of those rows alone would."""
        batch, out = hidden_states.shape[0], torch.empty_like(hidden_states)
        for name, rows in adapter_groups(adapter_names, device=hidden_states.device):
            sub_args, sub_kwargs = take_rows(args, rows, batch), take_rows(kwargs, rows, batch)
            if name in self.point_prompt_mlp:
                graph, cm = self._per_forward_inputs(name, geometry, rows)
                config = self.point_prompt_settings[name]
                out[rows] = self._adapted_forward(name, config, graph, cm, hidden_states[rows], *sub_args, **sub_kwargs)
            else:  # "__base__", or an adapter that skips this block
                out[rows] = self.base_layer(hidden_states[rows], *sub_args, **sub_kwargs)
        return out

    def _norm(self, norm: nn.LayerNorm, x: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
        bias = norm.bias if delta is None else norm.bias + delta.to(norm.bias.dtype)
        return F.layer_norm(x, norm.normalized_shape, norm.weight, bias, norm.eps)

    def _mlp(self, x: torch.Tensor, deltas: BiasDeltas | None) -> torch.Tensor:
        mlp = self.base_layer.mlp
        b1 = mlp.fc1.bias if deltas is None else mlp.fc1.bias + deltas.fc1.to(mlp.fc1.bias.dtype)
        b2 = mlp.fc2.bias if deltas is None else mlp.fc2.bias + deltas.fc2.to(mlp.fc2.bias.dtype)
        h = mlp.drop(mlp.act(F.linear(x, mlp.fc1.weight, b1)))
        return mlp.drop(F.linear(h, mlp.fc2.weight, b2))

    def _adapted_forward(self, name, config, graph, cm, hidden_states, position_embeddings=None, *args, **kwargs):
        base = self.base_layer
        deltas = self.point_prompt_bias[name] if name in self.point_prompt_bias else None  # noqa: SIM401 (ModuleDict)
        x = hidden_states if position_embeddings is None else hidden_states + position_embeddings
        batch, p = x.shape[0], self.num_prefix
        prompts = self.point_prompt_tokens[name](batch, cm) if name in self.point_prompt_tokens else None
        n_prompt = 0 if prompts is None else prompts.shape[1]
        if prompts is not None:
            x = torch.cat([x[:, :p], prompts.to(x.dtype), x[:, p:]], dim=1)
        proj_delta = None if deltas is None else deltas.proj.to(x.dtype)
        if self.gpt:  # x = ln_1(x); x = x + attn(x, causal); m = mlp(ln_2(x))
            x = self._norm(base.ln_1, x, None if deltas is None else deltas.norm1)
            x = x + base.attn(x, is_causal=True) + (0 if proj_delta is None else proj_delta)
            m = self._mlp(self._norm(base.ln_2, x, None if deltas is None else deltas.norm2), deltas)
        else:  # official Point-PEFT: no drop path on the attention branch
            attn = base.attn(self._norm(base.norm1, x, None if deltas is None else deltas.norm1))
            x = x + attn + (0 if proj_delta is None else proj_delta)
            m = base.drop_path(self._mlp(self._norm(base.norm2, x, None if deltas is None else deltas.norm2), deltas))
        x = x + m + config.mlp_adapter_scale * _run(self.point_prompt_mlp[name], m)
        head, mid, patches = x[:, :p], x[:, p : p + n_prompt], x[:, p + n_prompt :]
        patches = self._geometry(name, config, graph, patches, mid if n_prompt and config.learn_prompt_coords else None)
        x = _run(self.point_prompt_out[name], torch.cat([head, mid, patches], dim=1))
        return torch.cat([x[:, :p], x[:, p + n_prompt :]], dim=1)

    def _geometry(self, name, config, graph: GAGraph, patches: torch.Tensor, prompts: torch.Tensor | None):
        """Local attention in each anchor's kNN neighbourhood, pooled, normalised, propagated back to the tokens
        (in the adapter's dtype; the update returns in the tokens' dtype)."""
        rows = patches if prompts is None else torch.cat([prompts, patches], dim=1)
        rows = rows.to(self.point_prompt_ga_norm[name].weight.dtype)
        batch, _, width = rows.shape
        a = graph.neighbours.shape[1]
        pooled = self._local_pool(name, rows, graph.neighbours)
        value = F.gelu(self.point_prompt_ga_norm[name](pooled)).reshape(batch, a, width)
        value = value + config.center_coef * gather_points(rows, graph.anchors)
        with torch.autocast(device_type=rows.device.type, enabled=False):
            update = graph.weights @ value.float()
        return patches + config.propagate_coef * update.to(patches.dtype)

    def _local_pool(self, name: str, rows: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """Max over each neighbourhood of rows + DropPath(LocalAttention(LN3(rows))): [B*A, C].

        LN3 and the qkv projection act row by row, so they run on the [B, T, C] rows before the gather: the same
        values as on the [B*A, k, C] neighbourhoods for T / (A*k) of the work, and nothing of width C per neighbour
        is kept for backward. The max is `max(dim).values`, whose backward needs only the argmax indices (`amax`
        keeps its [B*A, k, C] input); they differ only on exact ties, which a sum of float features does not have."""
        shared = self.shared.geometry[name]
        batch, a, k = neighbours.shape
        qkv = gather_points(shared.attn.qkv(shared.norm(rows)), neighbours)  # [B, A, k, 3a]
        attended = shared.attn.attend(qkv.reshape(batch * a, k, qkv.shape[-1]))
        drop_path = getattr(self.base_layer, "drop_path", nn.Identity())
        neighbourhoods = gather_points(rows, neighbours).reshape(batch * a, k, rows.shape[-1])
        return (neighbourhoods + drop_path(attended)).max(dim=1).values


class PointPromptNorm(FollowsBase, nn.Module, PointPromptLayer):
    """The final LayerNorm with per-adapter weight / bias deltas (part of the official bias tuning)."""

    adapter_layer_names = ("point_prompt_norm",)
    other_param_names = ()

    def __init__(self, base_layer: nn.LayerNorm, adapter_name: str):
        super().__init__()
        self.base_layer = base_layer
        self.point_prompt_norm = nn.ModuleDict()
        self.in_features = self.out_features = int(base_layer.normalized_shape[0])
        self._active_adapter = adapter_name
        self.update_layer(adapter_name)

    def update_layer(self, adapter_name: str) -> None:
        self.point_prompt_norm[adapter_name] = NormDeltas(self.base_layer.normalized_shape[0])
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def forward(self, x: torch.Tensor, adapter_names: list[str] | None = None) -> torch.Tensor:
        if self.disable_adapters:
            return self.base_layer(x)
        if adapter_names is not None:
            out = torch.empty_like(x)
            for name, rows in adapter_groups(adapter_names, device=x.device):
                out[rows] = self._with_deltas(name, x[rows])
            return out
        active = [n for n in self.active_adapters if n in self.point_prompt_norm]
        return self._with_deltas(active[0] if active else None, x)

    def _with_deltas(self, name: str | None, x: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        if name not in self.point_prompt_norm:
            return base(x)
        d = self.point_prompt_norm[name]
        weight, bias = base.weight + d.weight.to(base.weight.dtype), base.bias + d.bias.to(base.bias.dtype)
        return F.layer_norm(x, base.normalized_shape, weight, bias, base.eps)


class PointPromptBatchNorm(BatchNormStatsMixin, FollowsBase, nn.Module, PointPromptLayer):
    """Per-adapter running statistics of a frozen backbone BatchNorm (`backbone_bn_stats`)."""

    stats_prefix = "point_prompt_bn_"
