"""PointGPT in its fine-tuning layout (Chen et al., NeurIPS 2023; repo CGuangyan-BIT/PointGPT).

points -> FPS centres + kNN patches, reordered by a greedy nearest-neighbour chain over the centres -> mini-PointNet
tokens -> sequence [sos, cls, p_1..p_G] with sinusoidal centre encodings re-added before every block -> GPT blocks
(x = ln_1(x + pos); x = x + attn(x, causal); x = x + mlp(ln_2(x))) -> ln_f. The classifier applies `cls_norm` and
reads concat(cls, max over patches). An optional generator (the official auxiliary reconstruction task) predicts each
next patch from the previous tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...geometry.per_forward import PointGeometry
from ..classification import PointClassifierForward
from ..layers import (
    ClassificationHead,
    ClsEmbedding,
    FeedForward,
    MiniPointNet,
    SelfAttention,
    group_cloud,
    run_layers,
)
from ..point_transformer.modeling_point_transformer import chamfer_l2
from ..pretrained import FamilyPreTrainedModel
from .configuration_point_gpt import PointGPTConfig

__all__ = [
    "PointGPTForClassification",
    "PointGPTLayer",
    "PointGPTModel",
    "PointGPTModelOutput",
    "PointGPTPreTrainedModel",
    "nearest_neighbour_order",
    "sinusoidal_position_encoding",
]


@dataclass
class PointGPTModelOutput(ModelOutput):
    """
    last_hidden_state: [B, 2 + G, C] after `ln_f`, token order [sos, cls, patches...] ([sos, patches...] without cls).
    pooler_output: [B, C] max over the patch tokens after `ln_f` (the classifier applies `cls_norm` first).
    centres: [B, G, 3] the FPS centres after the nearest-neighbour reordering (token order).
    neighbourhoods: [B, G, K, C_in] centre-relative patches in token order (the generator's targets).
    hidden_states: the block inputs (before the position encoding) and the last block output, when requested.
    num_prefix_tokens: 2 (sos, cls).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    centres: torch.FloatTensor | None = None
    neighbourhoods: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    num_prefix_tokens: int | None = None


def nearest_neighbour_distances(centres: torch.Tensor) -> torch.Tensor:
    # torch.cdist in its default mode, as the official code: the ordering is discrete, so it must see the same values
    return torch.cdist(centres, centres)


def nearest_neighbour_order(centres: torch.Tensor) -> torch.Tensor:
    """PointGPT's centre ordering (`simplied_morton_sorting`, in fact a greedy chain): start at centre 0 and repeatedly
    step to the nearest unvisited centre (first index on ties). Returns the permutation [B, G]."""
    batch, groups, _ = centres.shape
    dist = nearest_neighbour_distances(centres)
    rows = torch.arange(batch, device=centres.device)
    visited = torch.zeros(batch, groups, dtype=torch.bool, device=centres.device)
    order = torch.empty(batch, groups, dtype=torch.long, device=centres.device)
    current = torch.zeros(batch, dtype=torch.long, device=centres.device)
    order[:, 0] = current
    visited[rows, current] = True
    for step in range(1, groups):
        candidates = dist[rows, current].masked_fill(visited, float("inf"))
        current = candidates.argmin(dim=1)
        order[:, step] = current
        visited[rows, current] = True
    return order


def sinusoidal_position_encoding(xyz: torch.Tensor, width: int, temperature: float = 1.0) -> torch.Tensor:
    """PointGPT's `PositionEmbeddingCoordsSine(3, width, temperature)`: per axis F = width // 3 // 2 * 2 features
    [sin, cos, sin, cos, ...] of 2*pi*coord / temperature^(2*floor(k/2)/F), axes x, y, z, zero padding at the end.
    With the official temperature 1.0 every frequency is 1."""
    features = width // 3 // 2 * 2
    k = torch.arange(features, device=xyz.device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / features)
    angles = (xyz.float() * (2 * math.pi)).unsqueeze(-1) / dim_t
    encoding = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-3)
    pad = width - 3 * features
    if pad:
        encoding = nn.functional.pad(encoding, (0, pad))
    return encoding


class PointGPTLayer(GradientCheckpointingLayer):
    """GPT block: x = ln_1(x + pos); x = x + attn(x, causal); x = x + mlp(ln_2(x)). The residual starts from the
    normed stream, as in the official code; there is no drop path."""

    def __init__(self, config: PointGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config.hidden_size, config.num_attention_heads, True, config.attention_dropout, 0.0)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act, 0.0)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor | None = None,
        is_causal: bool = True,
        point_geometry: PointGeometry | None = None,
        parallel_adapter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`point_geometry`: this forward's points and centres, for adapters wrapped around the block (unused here).
        `parallel_adapter(output, stream)`: what adapters parallel to the FFN make of the block output, given the
        stream that enters the FFN (the input of `ln_2`); PointGST passes it."""
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        hidden_states = self.ln_1(hidden_states)
        hidden_states = hidden_states + self.attn(hidden_states, is_causal=is_causal)
        output = hidden_states + self.mlp(self.ln_2(hidden_states))
        return output if parallel_adapter is None else parallel_adapter(output, hidden_states)


class PointGPTStack(nn.Module):
    """A list of GPT blocks followed by `ln_f`."""

    def __init__(self, config: PointGPTConfig, depth: int):
        super().__init__()
        self.layers = nn.ModuleList([PointGPTLayer(config) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states,
        position_embeddings,
        is_causal: bool,
        output_hidden_states: bool = False,
        point_geometry: PointGeometry | None = None,
    ):
        hidden_states, all_hidden = run_layers(
            self.layers,
            hidden_states,
            output_hidden_states,
            position_embeddings,
            is_causal,
            point_geometry=point_geometry,
        )
        return self.ln_f(hidden_states), all_hidden


class PointGPTEmbeddings(nn.Module):
    """Tokenizer: grouping, nearest-neighbour reordering, mini-PointNet tokens and sinusoidal centre encodings.
    Returns (tokens [B, G, C], positions [B, G, C], centres [B, G, 3] in token order, neighbourhoods)."""

    def __init__(self, config: PointGPTConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = MiniPointNet(
            config.num_channels, config.hidden_size, config.patch_first_channels, config.patch_second_channels
        )

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None):
        neighbourhoods, centres = group_cloud(points, self.config, generator)
        with torch.no_grad(), torch.autocast(device_type=centres.device.type, enabled=False):
            order = nearest_neighbour_order(centres)
        centres = centres.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))
        neighbourhoods = neighbourhoods.gather(
            1, order[:, :, None, None].expand(-1, -1, neighbourhoods.shape[2], neighbourhoods.shape[3])
        )
        tokens = self.patch_embeddings(neighbourhoods.to(self.patch_embeddings.dtype))  # the weights' dtype
        positions = sinusoidal_position_encoding(centres, self.config.hidden_size, self.config.position_temperature)
        return tokens, positions.to(tokens.dtype), centres, neighbourhoods


class PointGPTPreTrainedModel(FamilyPreTrainedModel):
    config_class = PointGPTConfig
    config: PointGPTConfig
    base_model_prefix = "point_gpt"
    _no_split_modules = ["PointGPTLayer", "PointGPTEmbeddings"]

    def _init_family_weights(self, module: nn.Module, std: float) -> None:
        if isinstance(module, PointGPTModel):
            init.normal_(module.sos_token, std=1.0)
            init.zeros_(module.sos_position)


class PointGPTModel(PointGPTPreTrainedModel):
    """The extractor. `forward(points)` -> [`PointGPTModelOutput`]."""

    def __init__(self, config: PointGPTConfig):
        super().__init__(config)
        self.embeddings = PointGPTEmbeddings(config)
        self.sos_token = nn.Parameter(torch.zeros(config.hidden_size))
        self.sos_position = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.cls_embedding = ClsEmbedding(config.hidden_size)
        self.encoder = PointGPTStack(config, config.num_hidden_layers)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        points: torch.Tensor | None = None,
        add_cls_token: bool = True,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PointGPTModelOutput | tuple:
        r"""
        points: [B, N, num_channels] float point clouds (N >= max(num_groups, group_size)).
        add_cls_token: the fine-tuning layout [sos, cls, patches] or, without it, the pre-training one [sos, patches].
        """
        self._check_forward_kwargs(kwargs)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        tokens, positions, centres, neighbourhoods = self.embeddings(points)
        batch = tokens.shape[0]
        cls_token, cls_position = self.cls_embedding(batch)
        sos = self.sos_token.view(1, 1, -1).expand(batch, -1, -1)
        sos_position = self.sos_position.expand(batch, -1, -1)
        if add_cls_token:
            hidden = torch.cat([sos.to(tokens.dtype), cls_token.to(tokens.dtype), tokens], dim=1)
            # the official code pairs the positions crosswise: sos gets cls_pos and cls gets sos_pos
            prefix = [cls_position.to(positions.dtype), sos_position.to(positions.dtype)]
        else:
            hidden = torch.cat([sos.to(tokens.dtype), tokens], dim=1)
            prefix = [sos_position.to(positions.dtype)]
        positions = torch.cat([*prefix, positions], dim=1)
        geometry = PointGeometry(points, centres)
        hidden, all_hidden = self.encoder(
            hidden, positions, self.config.causal_fine_tuning, output_hidden_states, point_geometry=geometry
        )
        num_prefix = 2 if add_cls_token else 1
        output = PointGPTModelOutput(
            last_hidden_state=hidden,
            pooler_output=hidden[:, num_prefix:].amax(dim=1),
            centres=centres,
            neighbourhoods=neighbourhoods,
            hidden_states=all_hidden,
            num_prefix_tokens=num_prefix,
        )
        return output if return_dict else output.to_tuple()


def chamfer_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Chamfer-L1 of the official extensions: (mean nearest distance pred->target + target->pred) / 2."""
    dist = torch.cdist(pred.float(), target.float(), compute_mode="donot_use_mm_for_euclid_dist")
    return (dist.min(dim=2).values.mean() + dist.min(dim=1).values.mean()) / 2


class PointGPTGenerator(nn.Module):
    """The official fine-tuning generator: from [sos-out, p_1..p_{G-1} outs] and encodings of the direction to the
    next centre, predict the absolute points of patches 1..G under a causal mask."""

    def __init__(self, config: PointGPTConfig):
        super().__init__()
        self.config = config
        self.decoder = PointGPTStack(config, config.generator_num_hidden_layers)
        self.reconstruction_head = nn.Conv1d(config.hidden_size, 3 * config.group_size, 1)

    def forward(self, encoded: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        batch, groups, _ = centres.shape
        inputs = torch.cat([encoded[:, :1], encoded[:, 2:-1]], dim=1)
        steps = centres[:, 1:] - centres[:, :-1]
        if self.config.relative_direction:
            steps = steps / steps.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        relative = torch.cat([centres[:, :1], steps], dim=1)
        positions = sinusoidal_position_encoding(relative, self.config.hidden_size, self.config.position_temperature)
        hidden, _ = self.decoder(inputs, positions.to(inputs.dtype), True)
        points = self.reconstruction_head(hidden.transpose(1, 2)).transpose(1, 2)
        return points.reshape(batch, groups, self.config.group_size, 3)


class PointGPTForClassification(PointClassifierForward, PointGPTPreTrainedModel):
    """Extractor + `cls_norm` + the official head on concat(cls, max over patch tokens), in the submodule
    `classifier`; `forward(points, labels=None)` (`models/classification.py`). In training with labels, the
    generator's Chamfer loss is added with `generator_loss_weight`."""

    def __init__(self, config: PointGPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.point_gpt = PointGPTModel(config)
        self.generator = PointGPTGenerator(config) if config.generator_num_hidden_layers > 0 else None
        self.cls_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = ClassificationHead.from_config(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.point_gpt.get_input_embeddings()

    def pool(self, outputs: PointGPTModelOutput) -> torch.Tensor:
        hidden = self.cls_norm(outputs.last_hidden_state)
        return torch.cat([hidden[:, 1], hidden[:, 2:].amax(dim=1)], dim=-1)

    def auxiliary_loss(self, outputs: PointGPTModelOutput) -> torch.Tensor | None:
        if self.training and self.generator is not None and self.config.generator_loss_weight > 0:
            return self.config.generator_loss_weight * self.reconstruction_loss(outputs)
        return None

    def reconstruction_loss(self, outputs: PointGPTModelOutput) -> torch.Tensor:
        """Chamfer-L1 + Chamfer-L2 between generated and true absolute patch points (official fine-tuning target)."""
        centres = outputs.centres
        generated = self.generator(outputs.last_hidden_state, centres.to(outputs.last_hidden_state.dtype))
        target = outputs.neighbourhoods[..., :3] + centres.unsqueeze(2)
        k = self.config.group_size
        pred, true = generated.reshape(-1, k, 3), target.reshape(-1, k, 3)
        return chamfer_l1(pred, true) + chamfer_l2(pred, true)
