"""Small validators shared by the model configs: each raises ValueError naming the field and its value."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["check_choice", "check_positive", "check_probability", "check_widths"]


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
