"""The audio trunk of ImageBind in Hugging Face format.

input_features [B, 1, mel, frames] -> Conv2d patches (kernel 16, stride 10, no bias) flattened row-major -> LayerNorm ->
[CLS; patches] + learned position table -> pre-LN blocks whose attention appends one learned key / value token
(`nn.MultiheadAttention(add_bias_kv=True)`) -> final LayerNorm -> CLS token. [`ImageBindAudioModelWithProjection`]
adds the linear projection to the joint space, L2 normalisation and the fixed logit scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from ..layers import DropPath, FeedForward, run_layers
from ..pretrained import FamilyPreTrainedModel
from .configuration_imagebind_audio import ImageBindAudioConfig

__all__ = [
    "ImageBindAudioAttention",
    "ImageBindAudioEmbeddings",
    "ImageBindAudioEncoder",
    "ImageBindAudioLayer",
    "ImageBindAudioModel",
    "ImageBindAudioModelOutput",
    "ImageBindAudioModelWithProjection",
    "ImageBindAudioPatchEmbeddings",
    "ImageBindAudioPreTrainedModel",
]

# the official LearnableLogitScaling clips exp(log_logit_scale) at this value (20 is far below it)
_MAX_LOGIT_SCALE = 100.0


@dataclass
class ImageBindAudioModelOutput(ModelOutput):
    """
    audio_embeds: [B, projection_dim] L2-normalised projection of the CLS token times the logit scale (20), the
        embedding ImageBind compares across modalities.
    last_hidden_state: [B, 1 + num_patches, C] after the final LayerNorm.
    pooler_output: [B, C] the CLS token of `last_hidden_state`.
    hidden_states: the embedding output and every block output, when requested.
    """

    audio_embeds: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class ImageBindAudioPatchEmbeddings(nn.Module):
    """Conv2d(1 -> C, kernel `patch_size`, stride `patch_stride`, no bias); [B, 1, mel, frames] -> [B, rows * cols, C]
    with index = mel_patch * cols + time_patch (the official `flatten(2).transpose(1, 2)`)."""

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            1, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_stride, bias=False
        )

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.projection(input_features).flatten(2).transpose(1, 2)


class ImageBindAudioEmbeddings(nn.Module):
    """Patch tokens -> LayerNorm -> [CLS; tokens] + position table (1, 1 + num_patches, C)."""

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = ImageBindAudioPatchEmbeddings(config)
        self.patch_norm = nn.LayerNorm(config.hidden_size, eps=config.patch_norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + config.num_patches, config.hidden_size))

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        expected = (1, self.config.num_mel_bins, self.config.target_length)
        if not isinstance(input_features, torch.Tensor) or input_features.dim() != 4:
            shape = tuple(input_features.shape) if isinstance(input_features, torch.Tensor) else type(input_features)
            raise ValueError(f"input_features must be a [batch, 1, mel, frames] tensor, got shape {shape}")
        if tuple(input_features.shape[1:]) != expected:
            raise ValueError(
                f"input_features has shape {tuple(input_features.shape)}; this model expects [batch, {expected[0]}, "
                f"{expected[1]}, {expected[2]}] (1 channel x num_mel_bins x target_length; the position table is not "
                "interpolated)"
            )
        weight = self.patch_embeddings.projection.weight
        tokens = self.patch_norm(self.patch_embeddings(input_features.to(weight.dtype)))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        return torch.cat([cls, tokens], dim=1) + self.position_embeddings.to(tokens.dtype)


class ImageBindAudioAttention(nn.Module):
    """Multi-head self-attention computed like `torch.nn.MultiheadAttention(bias=True, add_bias_kv=add_bias_kv)` on
    batch-first input, with the fused in-projection split into `q_proj` / `k_proj` / `v_proj` and `out_proj` named
    `o_proj`. With `add_bias_kv`, the learned `bias_k` / `bias_v` (1, 1, C) are appended as one extra key / value token
    after the projections (before the head split), so every query also attends to that token."""

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)
        if config.add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, width))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, width))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        r"""
        hidden_states: [B, L, C].
        attention_mask: optional, broadcastable to [B, heads, L, L]: an additive float mask or a bool mask with True
            where a query may attend (the `scaled_dot_product_attention` convention). The extra bias key is always
            visible. ImageBind's audio trunk uses none.
        """
        batch, length, width = hidden_states.shape
        query = self.q_proj(hidden_states)
        key = self.k_proj(hidden_states)
        value = self.v_proj(hidden_states)
        if self.bias_k is not None:
            key = torch.cat([key, self.bias_k.expand(batch, 1, width).to(key.dtype)], dim=1)
            value = torch.cat([value, self.bias_v.expand(batch, 1, width).to(value.dtype)], dim=1)
            if attention_mask is not None:
                attention_mask = F.pad(attention_mask, (0, 1), value=True if attention_mask.dtype == torch.bool else 0)
        query = query.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        key = key.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
        value = value.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, width))


class ImageBindAudioLayer(GradientCheckpointingLayer):
    """Pre-LN block: x = x + dp(attention(norm1(x))); x = x + dp(mlp(norm2(x))). No LayerScale."""

    def __init__(self, config: ImageBindAudioConfig, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ImageBindAudioAttention(config)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act, 0.0)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = hidden_states + self.drop_path(self.attention(self.norm1(hidden_states), attention_mask))
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))


class ImageBindAudioEncoder(nn.Module):
    def __init__(self, config: ImageBindAudioConfig):
        super().__init__()
        # torch.linspace(0, rate, depth), as the official SimpleTransformer ("progressive" drop path)
        depth = config.num_hidden_layers
        rates = [config.drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.layers = nn.ModuleList([ImageBindAudioLayer(config, rate) for rate in rates])

    def forward(self, hidden_states: torch.Tensor, output_hidden_states: bool = False):
        return run_layers(self.layers, hidden_states, output_hidden_states, None)


class ImageBindAudioPreTrainedModel(FamilyPreTrainedModel):
    config_class = ImageBindAudioConfig
    config: ImageBindAudioConfig
    base_model_prefix = "imagebind_audio"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    _no_split_modules = ["ImageBindAudioLayer", "ImageBindAudioEmbeddings"]

    def _init_family_weights(self, module: nn.Module, std: float) -> None:
        if isinstance(module, ImageBindAudioEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, ImageBindAudioAttention) and module.bias_k is not None:
            init.trunc_normal_(module.bias_k, std=std)
            init.trunc_normal_(module.bias_v, std=std)
        elif isinstance(module, ImageBindAudioModelWithProjection):
            init.constant_(module.logit_scale, math.log(self.config.logit_scale))


class ImageBindAudioModel(ImageBindAudioPreTrainedModel):
    """The audio trunk. `forward(input_features)` -> `BaseModelOutputWithPooling` (`last_hidden_state` after the final
    LayerNorm, `pooler_output` = its CLS token)."""

    # a converted checkpoint holds the projection too; the bare trunk ignores it quietly
    _keys_to_ignore_on_load_unexpected = [r"^projection\.weight$", r"^logit_scale$"]

    def __init__(self, config: ImageBindAudioConfig):
        super().__init__(config)
        self._build_trunk(config)
        self.post_init()

    def _build_trunk(self, config: ImageBindAudioConfig) -> None:
        self.embeddings = ImageBindAudioEmbeddings(config)
        self.encoder = ImageBindAudioEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        input_features: [B, 1, num_mel_bins, target_length] log-mel spectrograms (ImageBind's `load_and_transform_audio_
            data` layout for one clip).
        """
        self._check_forward_kwargs(kwargs)
        if input_features is None:
            raise ValueError("input_features is required: a [batch, 1, num_mel_bins, target_length] tensor")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden = self.embeddings(input_features)
        hidden, all_hidden = self.encoder(hidden, output_hidden_states)
        hidden = self.layernorm(hidden)
        output = BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=hidden[:, 0], hidden_states=all_hidden
        )
        return output if return_dict else output.to_tuple()


class ImageBindAudioModelWithProjection(ImageBindAudioModel):
    """The trunk plus ImageBind's audio head and postprocessor: `projection` (C -> projection_dim, no bias) on the CLS
    token, L2 normalisation and multiplication by exp(`logit_scale`) (a fixed buffer, log 20). Its parameter names
    are the trunk's plus `projection.weight` and `logit_scale`."""

    _keys_to_ignore_on_load_unexpected = None
    # a fixed constant, set from config.logit_scale when a checkpoint (e.g. of the bare trunk) lacks it
    _keys_to_ignore_on_load_missing = [r"^logit_scale$"]

    def __init__(self, config: ImageBindAudioConfig):
        # the trunk's modules at the top level (not under a prefix), so that the two classes share their key names;
        # skip ImageBindAudioModel.__init__ to build and initialise everything once
        ImageBindAudioPreTrainedModel.__init__(self, config)
        self._build_trunk(config)
        self.projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.register_buffer("logit_scale", torch.tensor(math.log(config.logit_scale)), persistent=True)
        self.post_init()

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageBindAudioModelOutput | tuple:
        r"""
        input_features: [B, 1, num_mel_bins, target_length] log-mel spectrograms.
        """
        self._check_forward_kwargs(kwargs)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = super().forward(input_features, output_hidden_states=output_hidden_states, return_dict=True)
        embeds = F.normalize(self.projection(outputs.pooler_output), dim=-1)
        embeds = embeds * self.logit_scale.exp().clamp(max=_MAX_LOGIT_SCALE).to(embeds.dtype)
        output = ImageBindAudioModelOutput(
            audio_embeds=embeds,
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=outputs.pooler_output,
            hidden_states=outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()
