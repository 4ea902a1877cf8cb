"""Where things live in each supported point backbone, so that every tuner finds blocks, tokenizer and norms the
same way. A backbone not listed here is used by naming `target_modules`, `tokenizer_module` and `num_prefix_tokens`
explicitly in the method's config."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["POINT_BACKBONES", "PointBackbone", "find_module", "get_backbone", "model_width"]


@dataclass(frozen=True)
class PointBackbone:
    """Layout of one model family (module paths are relative to the encoder, e.g. `PointTransformerModel`)."""

    model_type: str
    base_prefix: str  # attribute of the task models that holds the encoder (`base_model_prefix`)
    layers: str  # path of the ModuleList of blocks
    tokenizer: str  # module whose output carries the token centres
    block_norm: str  # the second LayerNorm of a block: its input is the residual stream after attention
    num_prefix_tokens: int  # tokens before the patch tokens (cls; sos + cls)
    cls_modules: tuple[str, ...]  # small modules holding the cls token / position (and norm) trained with the head

    def layers_pattern(self) -> str:
        """Full-match regex for the blocks, with or without the task model's encoder attribute in front."""
        return rf"({self.base_prefix}\.)?{self.layers.replace('.', chr(92) + '.')}\.\d+"

    def default_modules_to_save(self) -> list[str]:
        return ["classifier", *self.cls_modules]


POINT_BACKBONES: dict[str, PointBackbone] = {
    row[0]: PointBackbone(*row)
    for row in (
        # model_type, base_prefix, layers, tokenizer, block_norm, num_prefix_tokens, cls_modules
        ("point_transformer", "point_transformer", "encoder.layers", "embeddings", "norm2", 1, ("cls_embedding",)),
        ("point_gpt", "point_gpt", "encoder.layers", "embeddings", "ln_2", 2, ("cls_embedding", "cls_norm")),
    )
}


def get_backbone(model_type: str | None) -> PointBackbone | None:
    return POINT_BACKBONES.get(model_type or "")


def find_module(model: nn.Module, path: str) -> tuple[str, nn.Module]:
    """The module at `path` or, failing that, the unique module whose name ends with `.path`."""
    modules = dict(model.named_modules())
    if path in modules:
        return path, modules[path]
    matches = [name for name in modules if name.endswith("." + path)]
    if len(matches) != 1:
        found = "no module" if not matches else f"several modules ({matches})"
        raise ValueError(f"expected one module named {path!r} in {type(model).__name__}, found {found}")
    return matches[0], modules[matches[0]]


def model_width(model_config: dict) -> int | None:
    """The transformer width of a model config dict (None if it has none)."""
    width = model_config.get("hidden_size")
    return int(width) if width is not None else None
