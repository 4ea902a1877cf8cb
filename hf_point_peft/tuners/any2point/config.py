"""`Any2PointConfig` (specs/any2point.md §8): any-modality encoders as point-cloud classifiers."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import PeftConfig

from ...registry import add_peft_type
from ..artefact import AdapterArtefact
from ..config import document_fields

__all__ = ["PAPER_PRESETS", "Any2PointConfig"]

# §12: the official fine-tuning settings, one row per (backbone, dataset); `from_paper` also sets init_weights=False.
# A None leaves the field to the recipe (the 1D sources have no view translation, the 2D ones no line direction).
_PRESET_COLUMNS = (
    "adapter_rank", "scale_factor", "coef", "cell_size", "voxel_size", "pooling", "pe_injection", "knn_k",
    "tokenizer_norm", "line_direction", "view_translation",
)  # fmt: skip
_PRESET_ROWS = (
    # backbone, dataset,     rank, scale, coef, cell, voxel, pooling, pe_injection, k, norm, line, translation
    ("clip", "scanobjectnn", 16, 0.3, 0.3, 2.0, 0.08, "mean", "every_block", 81, "group_max", (-1.0, 0.0, 1.0), None),
    ("dinov2", "scanobjectnn", 8, 0.3, 0.7, 26.0, 0.16, "mean", "every_block", 64, "group_max", None, -1.8),
    ("audio", "scanobjectnn", 12, 0.3, 0.5, 16.0, 0.16, "mean", "input", 64, "group_max", None, -1.4),
    ("clip", "modelnet40", 16, 0.3, 0.5, 2.0, 0.16, "mean", "input", 64, "std", (1.0, -1.0, 0.0), None),
    ("dinov2", "modelnet40", 8, 1.0, 0.1, 26.0, 0.16, "max_mean", "every_block", 81, "std", None, -1.4),
    ("audio", "modelnet40", 8, 1.0, 0.1, 16.0, 0.16, "max_mean", "input", 81, "std", None, -1.4),
)  # fmt: skip
# (backbone, dataset) -> config fields
PAPER_PRESETS = {
    (backbone, dataset): {k: v for k, v in zip(_PRESET_COLUMNS, values, strict=True) if v is not None}
    for backbone, dataset, *values in _PRESET_ROWS
}


# one-line rules of single fields: name -> (test of a set value, what it must be)
_RULES = {
    "num_views": (lambda v: 1 <= v <= 6, "in 1..6"),
    "coef": (lambda v: v >= 0, ">= 0"),
    "adapter_rank": (lambda v: v > 0, "positive"),
    "cell_size": (lambda v: v > 0, "> 0"),
    "voxel_size": (lambda v: v > 0, "> 0"),
    "final_norm_eps": (lambda v: v > 0, "> 0"),
    "view_translation": (lambda v: v < 0, "< 0"),
    "knn_k": (lambda v: 1 <= v <= 256, "in 1..256"),
    "adapter_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "head_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
}
# fields whose None means "the source recipe's / the paper's value", set at injection
_UNSET_FROM_RECIPE = ("coef", "adapter_rank", "cell_size", "final_norm_eps", "view_translation")
_CHOICES = {
    "pooling": ("mean", "max_mean"),
    "pe_injection": ("input", "every_block", None),
    "tokenizer_norm": ("group_max", "std"),
    "audio_grid_layout": ("mel_time", "official_19x12"),
}


@document_fields
@dataclass
class Any2PointConfig(AdapterArtefact, PeftConfig):
    """Any2Point: a trainable 3D tokenizer feeds a frozen source encoder (CLIP text, BERT, RoBERTa, DINOv2, AST,
    ImageBind audio) whose own position table is sampled through virtual 1D / 2D projections of the token centres;
    every layer gets an any-to-3D guided adapter; a new head classifies. Backbone-dependent `None`s are resolved at
    injection and written back."""

    num_labels: int | None = field(default=None, metadata={"help": "Classes of the point-cloud head (required)."})
    num_views: int = field(default=6, metadata={"help": "Virtual views M (1-6)."})
    coef: float | None = field(default=None, metadata={"help": "Guidance weight lambda; None: by backbone."})
    scale_factor: float = field(default=0.3, metadata={"help": "Scale s of the bottleneck adapter."})
    adapter_rank: int | None = field(default=None, metadata={"help": "Bottleneck rank r; None: 16 (1D) / 8 (2D)."})
    adapter_dropout: float = field(default=0.1, metadata={"help": "Dropout inside the bottleneck."})
    local_attn_dim: int = field(default=12, metadata={"help": "Inner width a of the per-view local attention."})
    local_attn_heads: int = field(default=6, metadata={"help": "Heads of the local attention (divide the dim)."})
    cell_size: float | None = field(default=None, metadata={"help": "Cell size (table positions / canvas px)."})
    voxel_size: float = field(default=0.16, metadata={"help": "3D reference voxel size, input units."})
    pooling: str = field(default="mean", metadata={"help": "Per-view cell pooling: 'mean' or 'max_mean'."})
    bn_over_empty_cells: bool = field(default=True, metadata={"help": "Per-view BN statistics count empty cells."})
    pe_injection: str | None = field(default=None, metadata={"help": "'input' or 'every_block'; None: by backbone."})
    view_translation: float | None = field(default=None, metadata={"help": "Camera offset t < 0 (2D)."})
    line_direction: tuple[float, float, float] | list[float] = field(
        default=(-1.0, 0.0, 1.0), metadata={"help": "Projection line d (1D), non-zero."}
    )
    pe_table_length_1d: int | None = field(default=None, metadata={"help": "Use the first L rows of a 1D table."})
    knn_k: int = field(default=64, metadata={"help": "Neighbours per centre in the 3D tokenizer (1-256)."})
    tokenizer_norm: str = field(default="group_max", metadata={"help": "'group_max' or 'std' offset normalisation."})
    tokenizer_groups: tuple[int, int, int] | list[int] = field(
        default=(512, 256, 128),
        metadata={"help": "Centres of the tokenizer's 3 stages (the last is the token count); official 512/256/128."},
    )
    tokenizer_width: int = field(
        default=768,
        metadata={"help": "Token width W (a multiple of 24) of the tokenizer (stages W/4, W/2, W); official 768."},
    )
    audio_grid_layout: str = field(default="mel_time", metadata={"help": "'mel_time' or 'official_19x12' (ImageBind)."})
    pe_2d_official_reshape: bool = field(
        default=False,
        metadata={
            "help": "2D sources: reproduce the official PE reshape ([B*V, W, G] read as [B, V, G, W] without a "
            "transpose, which mixes the channels of other tokens into each token's PE); for converted official "
            "checkpoints only, the default is the intended table lookup."
        },
    )
    final_norm_eps: float | None = field(
        default=None,
        metadata={"help": "eps of the trainable final norm; None: the recipe's (official CLIP yaml: 1e-6)."},
    )
    head_hidden: tuple[int, ...] | list[int] = field(
        default=(256, 256), metadata={"help": "Hidden widths of the head."}
    )
    head_dropout: float = field(default=0.5, metadata={"help": "Dropout of the head."})
    init_weights: bool = field(default=True, metadata={"help": "True: identity guided branch at step 0."})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Layers to wrap; None: all."})
    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "Only these layer indices."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never to wrap."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra source modules to train."})
    source_model_type: str | None = field(default=None, metadata={"help": "Set at injection."})
    source_hidden_size: int | None = field(default=None, metadata={"help": "Set at injection."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = add_peft_type("any2point")
        if self.task_type is not None:
            raise ValueError(f"task_type must be None for Any2PointConfig, got {self.task_type!r}")
        if not isinstance(self.num_labels, int) or isinstance(self.num_labels, bool) or self.num_labels < 2:
            raise ValueError(f"Any2PointConfig.num_labels must be an integer >= 2, got {self.num_labels!r}")
        for name, (test, what) in _RULES.items():
            value = getattr(self, name)
            if value is None and name in _UNSET_FROM_RECIPE:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not test(value):
                raise ValueError(f"Any2PointConfig.{name} must be {what}, got {value!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Any2PointConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.local_attn_dim <= 0 or self.local_attn_heads <= 0 or self.local_attn_dim % self.local_attn_heads:
            raise ValueError(
                f"Any2PointConfig.local_attn_heads ({self.local_attn_heads}) must divide local_attn_dim "
                f"({self.local_attn_dim})"
            )
        line = tuple(float(v) for v in self.line_direction)
        if len(line) != 3 or all(v == 0 for v in line):
            raise ValueError(f"Any2PointConfig.line_direction must be 3 non-zero floats, got {self.line_direction!r}")
        self.line_direction = list(line)
        groups = list(self.tokenizer_groups)
        integers = all(isinstance(g, int) and not isinstance(g, bool) for g in groups)
        if not integers or len(groups) != 3 or any(g <= 0 for g in groups) or groups != sorted(groups, reverse=True):
            raise ValueError(
                f"Any2PointConfig.tokenizer_groups must be 3 positive, non-increasing centre counts, got "
                f"{self.tokenizer_groups!r}"
            )
        self.tokenizer_groups = groups
        width = self.tokenizer_width
        if not isinstance(width, int) or isinstance(width, bool) or width % 24 or self.tokenizer_width < 96:
            raise ValueError(
                f"Any2PointConfig.tokenizer_width must be a multiple of 24 (stage widths W/4, W/2, W in 6 sin/cos "
                f"blocks) and at least 96, got {self.tokenizer_width!r}"
            )
        self.head_hidden = [int(v) for v in self.head_hidden]
        if any(v <= 0 for v in self.head_hidden):
            raise ValueError(f"Any2PointConfig.head_hidden must hold positive widths, got {self.head_hidden!r}")

    @classmethod
    def from_paper(cls, backbone: str, dataset: str, **kwargs) -> Any2PointConfig:
        """The paper's preset (§12) for backbone in {clip, dinov2, audio} and dataset in {scanobjectnn, modelnet40};
        also sets init_weights=False, as the official runs start."""
        key = (backbone.lower(), dataset.lower())
        if key not in PAPER_PRESETS:
            raise ValueError(f"no paper preset for {key}; known: {sorted(PAPER_PRESETS)}")
        return cls(**{**PAPER_PRESETS[key], "init_weights": False, **kwargs})
