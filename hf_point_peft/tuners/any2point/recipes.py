"""Per-backbone recipes of Any2Point (specs/any2point.md §2): where the frozen position table, the layers, the
adapter attach point and the final norm live in each supported transformers 5.x model, and the paper's defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["RECIPES", "SourceRecipe", "get_recipe", "position_table"]


@dataclass(frozen=True)
class SourceRecipe:
    model_type: str
    table: str  # parameter path of the position table
    layout: str  # "1d" | "2d"
    layers: str  # path of the layer list
    attach: str  # sub-module of a layer whose output gets the bottleneck adapter
    final_norm: str | None  # copied and trained; None: a new LayerNorm(W)
    kind: str  # "text" | "vision" | "audio" (paper defaults)
    cls_token: str | None = None  # source CLS embedding that initialises cls_token
    input_norm: bool = False  # BERT / RoBERTa: LN_emb(tokens + PE + token_type[0]) at the input
    pitch: int = 16  # 2D: canvas pixels per table cell
    final_norm_eps: float | None = None  # eps of the trainable final norm; None: the copied norm's own

    def special_rows(self, config) -> int:
        if self.model_type == "roberta":
            return int(config.pad_token_id) + 1
        return {"clip_text_model": 0, "bert": 0, "dinov2": 1, "audio-spectrogram-transformer": 2, "imagebind_audio": 1}[
            self.model_type
        ]

    def grid(self, config) -> tuple[int, int]:
        """(rows, cols) of a 2D table (never from constants: from the source config)."""
        if self.model_type == "dinov2":
            side = config.image_size // config.patch_size
            return side, side
        if self.model_type == "audio-spectrogram-transformer":
            rows = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
            cols = (config.max_length - config.patch_size) // config.time_stride + 1
            return rows, cols
        if self.model_type == "imagebind_audio":
            return config.num_mel_patches, config.num_time_patches
        raise ValueError(f"{self.model_type} has a 1D table")

    def canvas_pitch(self, config) -> int:
        return config.patch_size if self.model_type == "dinov2" else self.pitch

    def defaults(self) -> dict:
        """Paper defaults of the ScanObjectNN runs by source kind (§8)."""
        if self.kind == "text":
            return {
                "coef": 0.3,
                "adapter_rank": 16,
                "cell_size": 2.0,
                "pe_injection": "every_block",
                "view_translation": None,
            }
        if self.kind == "vision":
            return {
                "coef": 0.7,
                "adapter_rank": 8,
                "cell_size": 26.0,
                "pe_injection": "every_block",
                "view_translation": -1.8,
            }
        return {"coef": 0.5, "adapter_rank": 8, "cell_size": 16.0, "pe_injection": "input", "view_translation": -1.4}


_PE, _PE_W = "embeddings.position_embeddings", "embeddings.position_embeddings.weight"
_CLS = {"cls_token": "embeddings.cls_token"}
# one row per source: model_type, position table, layout, layers, attach, final norm, kind, the optional fields
_RECIPE_ROWS = (
    # the official CLIP yaml (norm_args eps 1e-6) over CLIP's ln_final weights; HF has 1e-5
    ("clip_text_model", "embeddings.position_embedding.weight", "1d", "encoder.layers", "mlp", "final_layer_norm",
     "text", {"final_norm_eps": 1e-6}),
    ("bert", _PE_W, "1d", "encoder.layer", "output.dense", None, "text", {"input_norm": True}),
    ("roberta", _PE_W, "1d", "encoder.layer", "output.dense", None, "text", {"input_norm": True}),
    ("dinov2", _PE, "2d", "encoder.layer", "layer_scale2", "layernorm", "vision", _CLS),
    ("audio-spectrogram-transformer", _PE, "2d", "layers", "mlp", "layernorm", "audio", _CLS),
    ("imagebind_audio", _PE, "2d", "encoder.layers", "mlp", "layernorm", "audio", _CLS),
)  # fmt: skip
RECIPES: dict[str, SourceRecipe] = {row[0]: SourceRecipe(*row[:-1], **row[-1]) for row in _RECIPE_ROWS}


def get_recipe(model: nn.Module) -> SourceRecipe:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in RECIPES:
        raise ValueError(
            f"Any2Point has no recipe for model_type {model_type!r} ({type(model).__name__}); supported model types: "
            f"{sorted(RECIPES)}"
        )
    recipe = RECIPES[model_type]
    if recipe.model_type in ("bert", "roberta"):
        kind = getattr(model.config, "position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(f"Any2Point needs absolute position embeddings; {model_type} has {kind!r}")
    return recipe


def _get(model: nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def position_table(model: nn.Module, recipe: SourceRecipe, length_1d: int | None = None) -> torch.Tensor:
    """The frozen position table without its special rows: [L, W] (1D) or [rows, cols, W] (2D), read live (never
    copied into the adapter)."""
    table = _get(model, recipe.table)
    table = table.reshape(-1, table.shape[-1])[recipe.special_rows(model.config) :]
    if recipe.layout == "1d":
        if length_1d is not None:
            if not 2 <= length_1d <= table.shape[0]:
                raise ValueError(f"pe_table_length_1d must be in [2, {table.shape[0]}], got {length_1d}")
            table = table[:length_1d]
        if table.shape[0] < 2:
            raise ValueError(
                f"the 1D position table of {recipe.model_type} has {table.shape[0]} usable rows; need >= 2"
            )
        return table
    rows, cols = recipe.grid(model.config)
    if rows < 2 or cols < 2:
        raise ValueError(f"the 2D position grid of {recipe.model_type} is {rows}x{cols}; both sides must be >= 2")
    if table.shape[0] != rows * cols:
        raise ValueError(
            f"{recipe.model_type}: the position table has {table.shape[0]} patch rows, expected {rows}x{cols}"
        )
    return table.reshape(rows, cols, -1)


def num_cells_1d(length: int, cell_size: float) -> int:
    return int(math.floor((length - 1) / cell_size)) + 1


def get_module(model: nn.Module, path: str) -> nn.Module:
    return _get(model, path)
