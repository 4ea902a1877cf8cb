"""Configuration of PointGPT (Chen et al., NeurIPS 2023) in its fine-tuning layout."""

from __future__ import annotations

from ..config_checks import check_probability, check_transformer, check_widths, int_lists
from ..portable_names import FamilyConfig

__all__ = ["POINT_GPT_SIZES", "PointGPTConfig"]

# width, depth, heads of the paper's three sizes (cfgs/PointGPT-{S,B,L})
POINT_GPT_SIZES = {
    "S": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "B": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "L": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
}


class PointGPTConfig(FamilyConfig):
    r"""
    Configuration of [`PointGPTModel`] / [`PointGPTForClassification`]. Defaults are PointGPT-B (width 768, 12 blocks,
    12 heads); `PointGPTConfig.from_size("L", num_labels=15)` gives PointGPT-L (1024, 24, 16).

    Args:
        hidden_size, num_hidden_layers, num_attention_heads: the extractor's width, depth and heads.
        intermediate_size: MLP width; None means 4 * hidden_size (hard-coded officially).
        layer_norm_eps: epsilon of every LayerNorm.
        num_points, num_groups, group_size, num_channels: grouping, as in the point transformer.
        patch_first_channels, patch_second_channels: mini-PointNet widths; None picks the official encoder by width
            ("Encoder_small" [128, 256] / [512] at 384, "Encoder_large" [256, 512, 1024] / [2048] otherwise).
        position_temperature: temperature of the sinusoidal centre encoding; the official models pass 1.0, which makes
            it a single frequency (sin/cos of 2*pi*coordinate) per axis.
        causal_fine_tuning: keep the causal mask during fine-tuning (True, as the official code does).
        generator_num_hidden_layers: depth of the generator blocks that the official fine-tuning keeps as an auxiliary
            reconstruction task (4); 0 removes the generator (as PointGST's PointGPT does).
        generator_loss_weight: weight of the generator's Chamfer-L1 + Chamfer-L2 loss added to the cross-entropy in
            training (3.0 officially); 0 turns the auxiliary loss off.
        relative_direction: generator positions from unit directions between consecutive centres (newest official
            code) or raw differences (older code).
        classifier_hidden_sizes, classifier_batch_norm, classifier_dropout, label_smoothing: the head, as in the
            point transformer.
        initializer_range: std of the truncated-normal initialisation.
    """

    model_type = "point_gpt"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = None
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    num_points: int = 1024
    num_groups: int = 64
    group_size: int = 32
    num_channels: int = 3
    patch_first_channels: list[int] | tuple[int, ...] | None = None
    patch_second_channels: list[int] | tuple[int, ...] | None = None
    position_temperature: float = 1.0
    fps_start: str = "first"
    fps_skip_sq_norm: float | None = None
    causal_fine_tuning: bool = True
    generator_num_hidden_layers: int = 4
    generator_loss_weight: float = 3.0
    relative_direction: bool = True
    classifier_hidden_sizes: list[int] | tuple[int, ...] = (256, 256)
    classifier_batch_norm: bool = True
    classifier_dropout: float = 0.5
    label_smoothing: float = 0.0
    initializer_range: float = 0.02

    @classmethod
    def from_size(cls, size: str, **kwargs) -> PointGPTConfig:
        """The paper's PointGPT-S / -B / -L sizes; kwargs override any field."""
        key = size.upper().removeprefix("POINTGPT-")
        if key not in POINT_GPT_SIZES:
            raise ValueError(f"unknown PointGPT size {size!r}; choose one of {sorted(POINT_GPT_SIZES)}")
        return cls(**{**POINT_GPT_SIZES[key], **kwargs})

    def __post_init__(self, **kwargs):
        small = self.hidden_size == 384
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.patch_first_channels is None:
            self.patch_first_channels = [128, 256] if small else [256, 512, 1024]
        if self.patch_second_channels is None:
            self.patch_second_channels = [512] if small else [2048]
        int_lists(self, "patch_first_channels", "patch_second_channels", "classifier_hidden_sizes")
        super().__post_init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the first impossible value."""
        check_transformer(self, "num_points", "num_groups", "group_size")
        if self.hidden_size < 6:
            raise ValueError(f"hidden_size must be >= 6 for the sinusoidal encoding, got {self.hidden_size}")
        if self.group_size > self.num_points:
            raise ValueError(f"group_size ({self.group_size}) cannot exceed num_points ({self.num_points})")
        if self.num_groups > self.num_points:
            raise ValueError(f"num_groups ({self.num_groups}) cannot exceed num_points ({self.num_points})")
        if self.num_groups < 2:
            raise ValueError(f"num_groups must be >= 2 for the generator's relative positions, got {self.num_groups}")
        if self.num_channels < 3:
            raise ValueError(f"num_channels must be >= 3 (xyz first), got {self.num_channels}")
        if self.generator_num_hidden_layers < 0 or self.generator_loss_weight < 0:
            raise ValueError(
                f"generator_num_hidden_layers ({self.generator_num_hidden_layers}) and generator_loss_weight "
                f"({self.generator_loss_weight}) must be >= 0"
            )
        if self.position_temperature <= 0:
            raise ValueError(f"position_temperature must be > 0, got {self.position_temperature}")
        if self.fps_start not in ("first", "random"):
            raise ValueError(f"fps_start must be 'first' or 'random', got {self.fps_start!r}")
        check_widths(self, "patch_first_channels")
        check_widths(self, "patch_second_channels")
        check_widths(self, "classifier_hidden_sizes", allow_empty=True)
        for name in ("attention_dropout", "classifier_dropout", "label_smoothing"):
            check_probability(self, name)
