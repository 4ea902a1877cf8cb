"""Small validators shared by the model configs: each raises ValueError naming the field and its value."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_choice", "check_positive", "check_probability", "check_transformer", "check_widths", "int_lists"]


def check_positive(config, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


def check_probability(config, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{type(config).__name__}.{name} must be in [0, 1), got {value!r}")


def check_choice(config, name: str, choices: Iterable[str]) -> None:
    value = getattr(config, name)
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{type(config).__name__}.{name} must be one of {choices}, got {value!r}")


def check_widths(config, name: str, allow_empty: bool = False) -> None:
    value = list(getattr(config, name))
    if (not value and not allow_empty) or any(not isinstance(v, int) or v <= 0 for v in value):
        raise ValueError(f"{type(config).__name__}.{name} must be a list of positive widths, got {value!r}")


def check_transformer(config, *names: str) -> None:
    """The sizes every transformer config has, and `names`, are positive; the heads divide the width."""
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", *names):
        check_positive(config, name)
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size ({config.hidden_size}) must be divisible by num_attention_heads ({config.num_attention_heads})"
        )


def int_lists(config, *names: str) -> None:
    """Store the width sequences `names` as lists of ints (configs accept tuples; JSON keeps lists)."""
    for name in names:
        setattr(config, name, [int(c) for c in getattr(config, name)])
