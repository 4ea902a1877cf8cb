"""Configuration of the plain point transformer (Point-MAE, Point-BERT, ACT and ReCon fine-tuning encoders)."""

from __future__ import annotations

from ..config_checks import check_choice, check_probability, check_transformer, check_widths, int_lists
from ..portable_names import FamilyConfig

__all__ = ["PointTransformerConfig"]


class PointTransformerConfig(FamilyConfig):
    r"""
    Configuration of [`PointTransformerModel`] and its heads. The defaults are Point-MAE's base size: width 384,
    12 blocks, 6 heads, 64 FPS groups of 32 points (ModelNet40 layout; use `num_groups=128` for 2048-point clouds).

    Args:
        hidden_size: width C of the transformer.
        num_hidden_layers: number of pre-LN blocks.
        num_attention_heads: attention heads; must divide `hidden_size`.
        intermediate_size: MLP width (4C in every official model).
        hidden_act: MLP activation.
        qkv_bias: bias on the fused qkv projection (False in Point-MAE / Point-BERT / ACT / ReCon).
        layer_norm_eps: epsilon of every LayerNorm.
        drop_path_rate: stochastic depth, rising linearly from 0 to this value over the blocks.
        attention_dropout / hidden_dropout: dropout on the attention map / on the projections.
        num_points: the point count the model is built for; used to validate the grouping at construction.
        num_groups: G, the number of FPS centres (patch tokens).
        group_size: K, the points per kNN patch.
        num_channels: input channels read by the patch encoder: 3 (xyz) or 6 (xyz + normals).
        encoder_dims: output width of the mini-PointNet; None means `hidden_size`. Point-BERT uses 256, followed by
            a linear `reduce_dim` to `hidden_size`.
        patch_first_channels: widths of the mini-PointNet's first point-wise MLP ([128, 256] officially).
        patch_second_channels: hidden widths of its second MLP ([512] officially).
        position_hidden_size: hidden width of the centre position MLP (3 -> h -> C, GELU).
        fps_start: "first" (input index 0, as pointnet2_ops) or "random".
        fps_skip_sq_norm: never pick centres with x²+y²+z² at or below this value, a quirk of the pointnet2_ops kernel
            (1e-3) that the checkpoint converters switch on for bit-exact official centres; None considers every point.
        classifier_hidden_sizes: hidden widths of the classification head; (256, 256) as the official fine-tuning
            head, (256,) for Point-BERT.
        classifier_batch_norm: BatchNorm after each hidden linear of the head (False for Point-BERT).
        classifier_dropout: dropout after each hidden layer of the head.
        label_smoothing: label smoothing of the cross-entropy loss.
        mask_ratio, mask_type: Point-MAE masking for [`PointTransformerForMaskedModeling`] ("rand" or "block").
        decoder_num_hidden_layers, decoder_num_attention_heads, decoder_drop_path_rate: the light MAE decoder.
        initializer_range: std of the truncated-normal initialisation.
    """

    model_type = "point_transformer"

    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    qkv_bias: bool = False
    layer_norm_eps: float = 1e-5
    drop_path_rate: float = 0.1
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    num_points: int = 1024
    num_groups: int = 64
    group_size: int = 32
    num_channels: int = 3
    encoder_dims: int | None = None
    patch_first_channels: list[int] | tuple[int, ...] = (128, 256)
    patch_second_channels: list[int] | tuple[int, ...] = (512,)
    position_hidden_size: int = 128
    fps_start: str = "first"
    fps_skip_sq_norm: float | None = None
    classifier_hidden_sizes: list[int] | tuple[int, ...] = (256, 256)
    classifier_batch_norm: bool = True
    classifier_dropout: float = 0.5
    label_smoothing: float = 0.0
    mask_ratio: float = 0.6
    mask_type: str = "rand"
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 6
    decoder_drop_path_rate: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        int_lists(self, "patch_first_channels", "patch_second_channels", "classifier_hidden_sizes")
        if self.encoder_dims is None:
            self.encoder_dims = self.hidden_size
        super().__post_init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the first impossible value."""
        check_transformer(
            self,
            "num_points",
            "num_groups",
            "group_size",
            "encoder_dims",
            "position_hidden_size",
            "decoder_num_hidden_layers",
            "decoder_num_attention_heads",
        )
        if self.hidden_size % self.decoder_num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by decoder_num_attention_heads "
                f"({self.decoder_num_attention_heads})"
            )
        if self.group_size > self.num_points:
            raise ValueError(f"group_size ({self.group_size}) cannot exceed num_points ({self.num_points})")
        if self.num_groups > self.num_points:
            raise ValueError(f"num_groups ({self.num_groups}) cannot exceed num_points ({self.num_points})")
        if self.num_channels < 3:
            raise ValueError(f"num_channels must be >= 3 (xyz first), got {self.num_channels}")
        check_widths(self, "patch_first_channels")
        check_widths(self, "patch_second_channels")
        check_widths(self, "classifier_hidden_sizes", allow_empty=True)
        for name in (
            "drop_path_rate",
            "attention_dropout",
            "hidden_dropout",
            "classifier_dropout",
            "label_smoothing",
            "decoder_drop_path_rate",
        ):
            check_probability(self, name)
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        check_choice(self, "fps_start", ("first", "random"))
        check_choice(self, "mask_type", ("rand", "block"))
