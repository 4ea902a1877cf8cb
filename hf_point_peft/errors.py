"""Errors a user causes through a setting, named so that each front end can say it in its own words.

The Python API reads `epochs=0: must be >= 1`; the command line renders the same error with the flag the user typed,
`--epochs 0: must be >= 1`, through `cli_message(flag)`, where `flag` maps a setting name to how the user wrote it.
No dependency beyond the standard library, so that every layer can raise them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SettingError"]


class SettingError(ValueError):
    """A setting with a value that cannot work. `setting` is the field name (`learning_rate`), or `field.key` for an
    entry of a dictionary of options (`method_options.rank`); `reason` says why and what would work."""

    def __init__(self, setting: str, value: Any, reason: str) -> None:
        self.setting, self.value, self.reason = setting, value, reason
        super().__init__(f"{setting}={value!r}: {reason}")

    def cli_message(self, flag: Callable[[str], str]) -> str:
        field, _, key = self.setting.partition(".")
        shown = f"{key}={self.value}" if key else _shown(self.value)
        return f"{flag(field)} {shown}: {self.reason}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    return str(value)
