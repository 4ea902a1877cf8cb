"""One place that turns a base classifier into the model each fine-tuning method trains.

Used by the training loop, the CLI and the benchmark, so every method is set up the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from torch import nn

from ..errors import SettingError
from ..tuners import Any2PointConfig, PointGSTConfig, PointPromptConfig
from ..tuners.backbones import get_backbone

__all__ = [
    "METHODS",
    "PEFT_METHODS",
    "SOURCE_METHODS",
    "check_method_options",
    "method_option_names",
    "without_default_options",
    "prepare_model",
    "trainable_parameters",
]


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


_CONFIGS = {
    "pointgst": PointGSTConfig,
    "point-prompt": PointPromptConfig,
    "any2point": Any2PointConfig,
    "lora": LoraConfig,
}
_EXTRA_OPTIONS = {"lora": ("rank", "alpha")}  # the benchmark's names for LoRA's r and lora_alpha
_SET_BY_THE_JOB = {"any2point": {"num_labels": 2}}  # the number of classes comes from the dataset (2: a stand-in)


def method_option_names(method: str) -> list[str]:
    """The options `method` accepts: its config's own fields (peft's common bookkeeping fields excluded)."""
    if method not in _CONFIGS:
        return []
    common = {f.name for f in dataclasses.fields(PeftConfig)}
    own = [f.name for f in dataclasses.fields(_CONFIGS[method]) if f.init and f.name not in common]
    return sorted({*own, *_EXTRA_OPTIONS.get(method, ())} - set(_SET_BY_THE_JOB.get(method, ())))


def _option_defaults(method: str) -> dict[str, Any]:
    """Each option's default value, in the JSON form settings are recorded in (LoRA's alpha: None, i.e. 2 x rank)."""
    if method not in _CONFIGS:
        return {}
    defaults = {}
    for f in dataclasses.fields(_CONFIGS[method]):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    if method == "lora":
        defaults.update(rank=8, alpha=None)  # `_lora`'s own defaults
    return json.loads(json.dumps(defaults, default=str))


def without_default_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` without those given at their default value: `--method-option rank=36` and no option at all are the
    same run (a resume compares what is left). LoRA's alpha equal to 2 x rank is its default too."""
    defaults = _option_defaults(method)
    kept = {k: v for k, v in options.items() if k not in defaults or v != defaults[k]}
    if method == "lora" and "alpha" in kept and kept["alpha"] == 2 * options.get("rank", defaults["rank"]):
        del kept["alpha"]
    return kept


def check_method_options(method: str, options: dict[str, Any]) -> None:
    """Refuse, before any model is built, an option `method` does not have (listing those it has) or a value its
    config refuses."""
    if method not in METHODS:
        raise SettingError("method", method, f"unknown method; choose one of {', '.join(sorted(METHODS))}")
    valid = method_option_names(method)
    for key, value in options.items():
        if key not in valid:
            listed = f"valid keys: {', '.join(valid)}" if valid else f"{method} takes no options"
            raise SettingError(f"method_options.{key}", value, f"not an option of {method}; {listed}")
    if method not in _CONFIGS:
        return
    config_options = {k: v for k, v in options.items() if k not in _EXTRA_OPTIONS.get(method, ())}
    config_options = {**_SET_BY_THE_JOB.get(method, {}), **config_options}
    try:
        _CONFIGS[method](**config_options)
    except (ValueError, TypeError) as err:
        raise SettingError("method_options", options, " ".join(str(err).split())) from err


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
