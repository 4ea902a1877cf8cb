"""The plain point transformer: one architecture for the Point-MAE, Point-BERT, ACT and ReCon fine-tuning encoders.

points [B, N, C] -> FPS centres + kNN patches -> mini-PointNet tokens -> [CLS; tokens] with a position MLP on the
centres re-added at every block input -> pre-LN blocks with drop path -> final LayerNorm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...geometry.per_forward import PointGeometry
from ..classification import PointClassifierForward, PointClassifierOutput
from ..layers import (
    ClassificationHead,
    ClsEmbedding,
    DropPath,
    FeedForward,
    MiniPointNet,
    SelfAttention,
    group_cloud,
    run_layers,
)
from ..pretrained import FamilyPreTrainedModel
from .configuration_point_transformer import PointTransformerConfig

__all__ = [
    "PointTransformerEmbeddings",
    "PointTransformerForClassification",
    "PointTransformerForMaskedModeling",
    "PointTransformerLayer",
    "PointTransformerModel",
    "PointTransformerModelOutput",
    "PointTransformerPreTrainedModel",
    "PointClassifierOutput",
    "PointMaskedModelingOutput",
]


@dataclass
class PointTransformerModelOutput(ModelOutput):
    """
    last_hidden_state: [B, P + G, C] after the final LayerNorm (P = 1 with the CLS token, 0 without).
    pooler_output: [B, 2C] concat(CLS, max over patch tokens), the classification feature (max-pool only without CLS).
    centres: [B, G, 3] the FPS token centres, in token order.
    hidden_states: the block inputs and the last block output, when requested.
    num_prefix_tokens: P, the tokens before the patch tokens.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    centres: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    num_prefix_tokens: int | None = None


@dataclass
class PointMaskedModelingOutput(ModelOutput):
    """loss: Chamfer-L2 between reconstructed and true masked patches; reconstruction: [B, M, K, 3] (centre-relative);
    mask: [B, G] bool, True where a patch was masked."""

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    target: torch.FloatTensor | None = None
    mask: torch.BoolTensor | None = None
    centres: torch.FloatTensor | None = None


class PointTransformerEmbeddings(nn.Module):
    """Tokenizer: grouping, mini-PointNet patch embedding (plus Point-BERT's `reduce_dim`) and the centre position MLP.

    Its output `(tokens [B, G, C], positions [B, G, C], centres [B, G, 3])` is the hook point that adapters use to read
    the token centres once per forward.
    """

    def __init__(self, config: PointTransformerConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = MiniPointNet(
            config.num_channels, config.encoder_dims, config.patch_first_channels, config.patch_second_channels
        )
        self.reduce_dim = (
            nn.Linear(config.encoder_dims, config.hidden_size) if config.encoder_dims != config.hidden_size else None
        )
        self.position_embeddings = nn.Sequential(
            nn.Linear(3, config.position_hidden_size),
            nn.GELU(),
            nn.Linear(config.position_hidden_size, config.hidden_size),
        )

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None):
        neighbourhoods, centres = group_cloud(points, self.config, generator)
        # grouping ran in the input's precision; the layers run in the weights' dtype (the transformers convention)
        dtype = self.patch_embeddings.dtype
        tokens = self.embed_patches(neighbourhoods.to(dtype))
        positions = self.position_embeddings(centres.to(dtype))
        return tokens, positions, centres, neighbourhoods

    def embed_patches(self, neighbourhoods: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embeddings(neighbourhoods)
        if self.reduce_dim is not None:
            tokens = self.reduce_dim(tokens)
        return tokens


class PointTransformerLayer(GradientCheckpointingLayer):
    """Pre-LN block: x = x + pos; x = x + dp(attn(norm1(x))); x = x + dp(mlp(norm2(x)))."""

    def __init__(self, config: PointTransformerConfig, drop_path: float, num_heads: int | None = None):
        super().__init__()
        heads = num_heads or config.num_attention_heads
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SelfAttention(
            config.hidden_size, heads, config.qkv_bias, config.attention_dropout, config.hidden_dropout
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act, config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor | None = None,
        point_geometry: PointGeometry | None = None,
        parallel_adapter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`point_geometry`: this forward's points and centres, for adapters wrapped around the block (unused here).
        `parallel_adapter(output, stream)`: what adapters parallel to the FFN make of the block output, given the
        stream that enters the FFN (the input of `norm2`); PointGST passes it."""
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        hidden_states = hidden_states + self.drop_path(self.attn(self.norm1(hidden_states)))
        output = hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))
        return output if parallel_adapter is None else parallel_adapter(output, hidden_states)


class PointTransformerEncoder(nn.Module):
    def __init__(self, config: PointTransformerConfig, depth: int, drop_path_rate: float, num_heads: int | None = None):
        super().__init__()
        rates = [drop_path_rate * i / (depth - 1) for i in range(depth)] if depth > 1 else [drop_path_rate] * depth
        self.layers = nn.ModuleList([PointTransformerLayer(config, rate, num_heads) for rate in rates])

    def forward(
        self,
        hidden_states,
        position_embeddings,
        output_hidden_states: bool = False,
        point_geometry: PointGeometry | None = None,
    ):
        return run_layers(
            self.layers, hidden_states, output_hidden_states, position_embeddings, point_geometry=point_geometry
        )


class PointTransformerPreTrainedModel(FamilyPreTrainedModel):
    config_class = PointTransformerConfig
    config: PointTransformerConfig
    base_model_prefix = "point_transformer"
    _no_split_modules = ["PointTransformerLayer", "PointTransformerEmbeddings"]

    def _init_family_weights(self, module: nn.Module, std: float) -> None:
        if isinstance(module, PointTransformerDecoder):
            init.trunc_normal_(module.mask_token, std=std)


class PointTransformerModel(PointTransformerPreTrainedModel):
    """The encoder. `forward(points)` -> [`PointTransformerModelOutput`] with the hidden states and token centres."""

    def __init__(self, config: PointTransformerConfig):
        super().__init__(config)
        self.embeddings = PointTransformerEmbeddings(config)
        self.cls_embedding = ClsEmbedding(config.hidden_size)
        self.encoder = PointTransformerEncoder(config, config.num_hidden_layers, config.drop_path_rate)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        points: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        add_cls_token: bool = True,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PointTransformerModelOutput | tuple:
        r"""
        points: [B, N, num_channels] float point clouds (N >= max(num_groups, group_size)).
        bool_masked_pos: [B, G] bool, True for patches to drop (masked-modeling pre-training); all samples must mask
            the same number of patches.
        add_cls_token: prepend the CLS token (fine-tuning layout) or encode the patch tokens only (pre-training layout).
        """
        self._check_forward_kwargs(kwargs)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        tokens, positions, centres, _ = self.embeddings(points)
        batch = tokens.shape[0]
        if bool_masked_pos is not None:
            tokens, positions = _keep_visible(tokens, bool_masked_pos), _keep_visible(positions, bool_masked_pos)
        num_prefix = 0
        if add_cls_token:
            cls_token, cls_position = self.cls_embedding(batch)
            tokens = torch.cat([cls_token.to(tokens.dtype), tokens], dim=1)
            positions = torch.cat([cls_position.to(positions.dtype), positions], dim=1)
            num_prefix = 1
        geometry = PointGeometry(points, centres)
        hidden, all_hidden = self.encoder(tokens, positions, output_hidden_states, point_geometry=geometry)
        hidden = self.norm(hidden)
        patch_max = hidden[:, num_prefix:].amax(dim=1)
        pooled = torch.cat([hidden[:, 0], patch_max], dim=-1) if num_prefix else patch_max
        output = PointTransformerModelOutput(
            last_hidden_state=hidden,
            pooler_output=pooled,
            centres=centres,
            hidden_states=all_hidden,
            num_prefix_tokens=num_prefix,
        )
        return output if return_dict else output.to_tuple()


def _keep_visible(x: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
    if bool_masked_pos.shape != x.shape[:2]:
        raise ValueError(f"bool_masked_pos must have shape {tuple(x.shape[:2])}, got {tuple(bool_masked_pos.shape)}")
    visible = (~bool_masked_pos).sum(dim=1)
    if not bool((visible == visible[0]).all()):
        raise ValueError(f"every sample must keep the same number of patches, got {visible.tolist()}")
    return x[~bool_masked_pos].reshape(x.shape[0], int(visible[0]), x.shape[-1])


class PointTransformerForClassification(PointClassifierForward, PointTransformerPreTrainedModel):
    """Encoder + the official fine-tuning head on concat(CLS, max over patch tokens), in the submodule `classifier`;
    `forward(points, labels=None)` (`models/classification.py`)."""

    def __init__(self, config: PointTransformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.point_transformer = PointTransformerModel(config)
        self.classifier = ClassificationHead.from_config(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.point_transformer.get_input_embeddings()


class PointTransformerDecoder(nn.Module):
    """Point-MAE's light decoder: [visible; mask tokens] + position MLP re-added per block, returns the masked tokens."""

    def __init__(self, config: PointTransformerConfig):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Sequential(
            nn.Linear(3, config.position_hidden_size),
            nn.GELU(),
            nn.Linear(config.position_hidden_size, config.hidden_size),
        )
        self.encoder = PointTransformerEncoder(
            config, config.decoder_num_hidden_layers, config.decoder_drop_path_rate, config.decoder_num_attention_heads
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, visible: torch.Tensor, centres: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, _, width = visible.shape
        num_masked = int(mask[0].sum())
        pos_visible = self.position_embeddings(_keep_visible(centres, mask).to(visible.dtype))
        pos_masked = self.position_embeddings(_keep_visible(centres, ~mask).to(visible.dtype))
        tokens = torch.cat([visible, self.mask_token.expand(batch, num_masked, width).to(visible.dtype)], dim=1)
        positions = torch.cat([pos_visible, pos_masked], dim=1)
        hidden, _ = self.encoder(tokens, positions)
        return self.norm(hidden[:, -num_masked:])


def chamfer_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Chamfer-L2 of Point-MAE (`ChamferDistanceL2`): mean squared distance pred->target plus target->pred."""
    dist = torch.cdist(pred.float(), target.float(), compute_mode="donot_use_mm_for_euclid_dist").square()
    return dist.min(dim=2).values.mean() + dist.min(dim=1).values.mean()


class PointTransformerForMaskedModeling(PointTransformerPreTrainedModel):
    """Point-MAE pre-training: mask a random `mask_ratio` of the patches, encode the visible ones (no CLS), decode all
    positions and reconstruct the masked patches' points, scored by Chamfer-L2."""

    def __init__(self, config: PointTransformerConfig):
        super().__init__(config)
        self.point_transformer = PointTransformerModel(config)
        self.decoder = PointTransformerDecoder(config)
        self.reconstruction_head = nn.Conv1d(config.hidden_size, 3 * config.group_size, 1)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.point_transformer.get_input_embeddings()

    def random_mask(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, G] bool mask; "rand" masks round(ratio * G) random patches per sample (Point-MAE `_mask_center_rand`)."""
        groups = self.config.num_groups
        num_masked = int(self.config.mask_ratio * groups)
        if self.config.mask_type == "rand":
            scores = torch.rand(batch, groups, generator=generator).to(device)
            order = scores.argsort(dim=1)
            mask = torch.zeros(batch, groups, dtype=torch.bool, device=device)
            mask.scatter_(1, order[:, :num_masked], True)
            return mask
        raise NotImplementedError("mask_type='block' needs the centres; use block_mask()")

    def block_mask(self, centres: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Point-MAE `_mask_center_block`: per sample, mask the patches nearest a random centre."""
        batch, groups, _ = centres.shape
        num_masked = int(self.config.mask_ratio * groups)
        seeds = torch.randint(groups, (batch,), generator=generator).to(centres.device)
        seed_points = centres[torch.arange(batch, device=centres.device), seeds].unsqueeze(1)
        order = (centres - seed_points).norm(dim=-1).argsort(dim=1)
        mask = torch.zeros(batch, groups, dtype=torch.bool, device=centres.device)
        mask.scatter_(1, order[:, :num_masked], True)
        return mask

    def forward(
        self,
        points: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PointMaskedModelingOutput | tuple:
        r"""
        points: [B, N, num_channels] float point clouds.
        bool_masked_pos: optional [B, G] mask (True = masked); drawn at random with `mask_ratio` when omitted.
        """
        self._check_forward_kwargs(kwargs)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        embeddings = self.point_transformer.embeddings
        tokens, positions, centres, neighbourhoods = embeddings(points)
        batch = tokens.shape[0]
        if bool_masked_pos is None:
            if self.config.mask_type == "block":
                bool_masked_pos = self.block_mask(centres)
            else:
                bool_masked_pos = self.random_mask(batch, tokens.device)
        if int(bool_masked_pos[0].sum()) == 0:
            raise ValueError("masked modeling needs at least one masked patch; raise mask_ratio")
        visible = _keep_visible(tokens, bool_masked_pos)
        visible_pos = _keep_visible(positions, bool_masked_pos)
        geometry = PointGeometry(points, centres)
        hidden, _ = self.point_transformer.encoder(visible, visible_pos, point_geometry=geometry)
        hidden = self.point_transformer.norm(hidden)
        decoded = self.decoder(hidden, centres, bool_masked_pos)
        num_masked = decoded.shape[1]
        group_size = self.config.group_size
        rebuilt = self.reconstruction_head(decoded.transpose(1, 2)).transpose(1, 2)
        rebuilt = rebuilt.reshape(batch, num_masked, group_size, 3)
        target = _keep_visible(neighbourhoods[..., :3].flatten(2), ~bool_masked_pos).reshape(batch, num_masked, -1, 3)
        loss = chamfer_l2(rebuilt.reshape(-1, group_size, 3), target.reshape(-1, target.shape[2], 3))
        output = PointMaskedModelingOutput(
            loss=loss, reconstruction=rebuilt, target=target, mask=bool_masked_pos, centres=centres
        )
        return output if return_dict else output.to_tuple()
