"""Configuration of the audio trunk of ImageBind (Girdhar et al., CVPR 2023)."""

from __future__ import annotations

from transformers.activations import ACT2FN

from ..config_checks import check_probability, check_transformer
from ..portable_names import FamilyConfig

__all__ = ["ImageBindAudioConfig"]


class ImageBindAudioConfig(FamilyConfig):
    r"""
    Configuration of [`ImageBindAudioModel`] / [`ImageBindAudioModelWithProjection`]. The defaults are the audio trunk
    of ImageBind-Huge (`imagebind_huge.pth`): width 768, 12 blocks, 12 heads, a 128-mel x 204-frame spectrogram cut
    into 16x16 patches with stride 10 (a 12 x 19 grid), embeddings projected to 1024 and scaled by a fixed 20.

    Args:
        hidden_size: width C of the transformer.
        num_hidden_layers: number of pre-LN blocks.
        num_attention_heads: attention heads; must divide `hidden_size`.
        intermediate_size: MLP width (4C officially).
        hidden_act: MLP activation (exact GELU officially).
        num_mel_bins: mel bins of the input spectrogram (its height).
        target_length: frames of the input spectrogram (its width).
        patch_size: square kernel of the patch convolution.
        patch_stride: stride of the patch convolution (overlapping patches when < `patch_size`).
        layer_norm_eps: epsilon of the block LayerNorms and of the final `layernorm`.
        patch_norm_eps: epsilon of the LayerNorm after the patch convolution (torch's default officially).
        drop_path_rate: stochastic depth, rising linearly from 0 (first block) to this value (last block).
        add_bias_kv: learned key / value tokens appended after the projections in every attention layer, as
            `torch.nn.MultiheadAttention(add_bias_kv=True)` (on in every ImageBind trunk but vision and text).
        projection_dim: width of the joint embedding space ([`ImageBindAudioModelWithProjection`]).
        logit_scale: the fixed factor the L2-normalised embeddings are multiplied by (the model holds its log).
        initializer_range: std of the truncated-normal initialisation.
    """

    model_type = "imagebind_audio"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    num_mel_bins: int = 128
    target_length: int = 204
    patch_size: int = 16
    patch_stride: int = 10
    layer_norm_eps: float = 1e-6
    patch_norm_eps: float = 1e-5
    drop_path_rate: float = 0.1
    add_bias_kv: bool = True
    projection_dim: int = 1024
    logit_scale: float = 20.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check()

    @property
    def num_mel_patches(self) -> int:
        """Rows of the patch grid: (num_mel_bins - patch_size) // patch_stride + 1 (12 by default)."""
        return (self.num_mel_bins - self.patch_size) // self.patch_stride + 1

    @property
    def num_time_patches(self) -> int:
        """Columns of the patch grid: (target_length - patch_size) // patch_stride + 1 (19 by default)."""
        return (self.target_length - self.patch_size) // self.patch_stride + 1

    @property
    def num_patches(self) -> int:
        """Patch tokens, flattened row-major (index = mel * num_time_patches + time): 228 by default."""
        return self.num_mel_patches * self.num_time_patches

    def check(self) -> None:
        """Raise ValueError naming the first impossible value."""
        check_transformer(self, "num_mel_bins", "target_length", "patch_size", "patch_stride", "projection_dim")
        for name in ("num_mel_bins", "target_length"):
            if self.patch_size > getattr(self, name):
                raise ValueError(
                    f"patch_size ({self.patch_size}) cannot exceed {name} ({getattr(self, name)}): the patch "
                    "convolution would have no output"
                )
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"{type(self).__name__}.hidden_act must name an activation of transformers.activations.ACT2FN "
                f"(e.g. 'gelu'), got {self.hidden_act!r}"
            )
        check_probability(self, "drop_path_rate")
        for name in ("layer_norm_eps", "patch_norm_eps", "logit_scale", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive number, got {value!r}")
        if not isinstance(self.add_bias_kv, bool):
            raise ValueError(f"{type(self).__name__}.add_bias_kv must be a bool, got {self.add_bias_kv!r}")
