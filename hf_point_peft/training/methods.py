"""One place that turns a base classifier into the model each fine-tuning method trains.

Used by the training loop, the CLI and the benchmark, so every method is set up the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from ..tuners import Any2PointConfig, PointGSTConfig, PointPromptConfig
from ..tuners.backbones import get_backbone

__all__ = ["METHODS", "PEFT_METHODS", "SOURCE_METHODS", "prepare_model", "trainable_parameters"]


def _head_modules(model: nn.Module) -> list[str]:
    backbone = get_backbone(getattr(getattr(model, "config", None), "model_type", None))
    return backbone.default_modules_to_save() if backbone is not None else ["classifier"]


def _full(model: nn.Module, **_) -> nn.Module:
    model.requires_grad_(True)
    return model


def _linear(model: nn.Module, **_) -> nn.Module:
    """Linear probe in the benchmark's sense: only the classification head trains."""
    model.requires_grad_(False)
    head = getattr(model, "classifier", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no `classifier` head to probe")
    head.requires_grad_(True)
    return model


def _pointgst(model: nn.Module, **options) -> PeftModel:
    return get_peft_model(model, PointGSTConfig(**options))


def _point_prompt(model: nn.Module, **options) -> PeftModel:
    """Point-PEFT; its memory bank is built from the training split by the training job (`build_memory_bank`)."""
    return get_peft_model(model, PointPromptConfig(**options))


def _any2point(model: nn.Module, num_labels: int | None = None, **options) -> PeftModel:
    """Any2Point on a source encoder (CLIP text, BERT, RoBERTa, DINOv2, AST, ImageBind audio); the head is created
    by the method from `num_labels`."""
    return get_peft_model(model, Any2PointConfig(num_labels=num_labels, **options))


def _lora(model: nn.Module, rank: int = 8, alpha: int | None = None, **options) -> PeftModel:
    """peft's LoRA on the attention projections (fused qkv and output projection), head and cls trained in full."""
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        target_modules=options.pop("target_modules", ["attn.qkv", "attn.proj"]),
        modules_to_save=options.pop("modules_to_save", _head_modules(model)),
        **options,
    )
    return get_peft_model(model, config)


METHODS: dict[str, Callable[..., nn.Module]] = {
    "full": _full,
    "linear": _linear,
    "pointgst": _pointgst,
    "point-prompt": _point_prompt,
    "any2point": _any2point,
    "lora": _lora,
}
PEFT_METHODS = ("pointgst", "point-prompt", "any2point", "lora")
SOURCE_METHODS = ("any2point",)  # methods whose base is a source encoder of another modality, not a point model


def prepare_model(method: str, model: nn.Module, **options) -> nn.Module:
    """The model `method` trains, built from a base classifier (`options` go to the method's config)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](model, **options)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; for PEFT models the total is the base model's plus the adapters'."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
