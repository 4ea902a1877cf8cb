"""Shared machinery of the official-checkpoint converters.

A converter is a table of explicit rename rules (official key pattern -> our key template) plus a table of keys that
are known and deliberately dropped (with the reason). Every key of the checkpoint ends up either used, dropped with a
reason, or reported as unrecognised; shapes are checked before anything is loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import atomic_directory, write_text_atomic

__all__ = [
    "ConversionReport",
    "KeyRule",
    "apply_rules",
    "export_official",
    "load_official_state_dict",
    "load_converted_weights",
    "save_converted",
    "strip_prefixes",
]


_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]+))?\}")


def _patterns(*templates: str) -> dict[str, str]:
    """Placeholder patterns declared anywhere in the templates (`{name:regex}`), so both sides share them."""
    found: dict[str, str] = {}
    for template in templates:
        for match in _PLACEHOLDER.finditer(template):
            if match.group(2) is not None:
                found[match.group(1)] = match.group(2)
    return found


def _compile(template: str, patterns: Mapping[str, str]) -> re.Pattern:
    """Turn a key template such as `blocks.{n:\\d+}.{rest}` into a full-match regex with named groups.
    `{name}` matches one dotted component, `{rest}` the remainder, `{name:regex}` a custom pattern."""
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        name = match.group(1)
        pattern = patterns.get(name, ".+" if name == "rest" else "[^.]+")
        parts.append(f"(?P<{name}>{pattern})")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


def _fill(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class KeyRule:
    """An explicit, two-way key mapping: `official` and `ours` are templates with the same placeholders
    (`{n:\\d+}`, `{rest}`, ...). `ours=None` drops the official key with `reason`."""

    official: str
    ours: str | None
    reason: str = ""

    def to_ours(self, key: str) -> tuple[bool, str | None]:
        match = _compile(self.official, _patterns(self.official, self.ours or "")).fullmatch(key)
        if match is None:
            return False, None
        return True, None if self.ours is None else _fill(self.ours, match.groupdict())

    def to_official(self, key: str) -> str | None:
        if self.ours is None:
            return None
        match = _compile(self.ours, _patterns(self.official, self.ours)).fullmatch(key)
        return None if match is None else _fill(self.official, match.groupdict())


@dataclass
class ConversionReport:
    """What a conversion did with every key."""

    source: str
    used: dict[str, str] = field(default_factory=dict)  # official key -> our key
    dropped: dict[str, str] = field(default_factory=dict)  # official key -> reason
    unrecognised: list[str] = field(default_factory=list)  # official keys no rule knows
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint did not provide (fresh init)

    def summary(self) -> str:
        lines = [
            f"converted a {self.source} checkpoint: {len(self.used)} tensors used, {len(self.dropped)} dropped, "
            f"{len(self.unrecognised)} unrecognised, {len(self.missing)} model tensors freshly initialised"
        ]
        reasons: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            reasons.setdefault(reason, []).append(key)
        for reason, keys in reasons.items():
            lines.append(f"  dropped {len(keys)} ({reason}): {_preview(keys)}")
        if self.unrecognised:
            lines.append(f"  unrecognised (not used): {_preview(self.unrecognised)}")
        if self.missing:
            lines.append(f"  freshly initialised: {_preview(self.missing)}")
        return "\n".join(lines)


def _preview(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_official_state_dict(checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """Read an official checkpoint with `torch.load(weights_only=True)` and return its model state dict.

    Accepts the official `{'base_model': ...}` / `{'model': ...}` / `{'state_dict': ...}` wrappers or a bare state dict.
    """
    if isinstance(checkpoint, Mapping):
        obj = checkpoint
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the file name and the reason
            raise ValueError(
                f"could not read {path} with torch.load(weights_only=True): {err}. Only tensor checkpoints are "
                "accepted; arbitrary pickles are refused for safety."
            ) from err
    for wrapper in ("base_model", "model", "state_dict"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError("checkpoint holds no state dict (expected a mapping of tensors, possibly under 'base_model')")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        state[str(key)] = value
    return state


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: list[str]) -> dict[str, str]:
    """Map each original key to its key with the first matching prefix removed (`module.` is removed everywhere
    first, as the official loaders do). Returns {stripped key: original key}; collisions raise."""
    out: dict[str, str] = {}
    for original in state:
        key = original.replace("module.", "")
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if key in out:
            raise ValueError(f"checkpoint keys {out[key]!r} and {original!r} both map to {key!r}")
        out[key] = original
    return out


def apply_rules(stripped: Mapping[str, str], rules: list[KeyRule], report: ConversionReport) -> dict[str, str]:
    """Resolve each stripped key with the first matching rule. Returns {our key: original key} for used keys and
    fills `report.dropped` / `report.unrecognised`."""
    mapping: dict[str, str] = {}
    for key, original in stripped.items():
        for rule in rules:
            matched, target = rule.to_ours(key)
            if not matched:
                continue
            if target is None:
                report.dropped[original] = rule.reason
            else:
                if target in mapping:
                    raise ValueError(f"checkpoint keys {mapping[target]!r} and {original!r} both map to {target!r}")
                mapping[target] = original
            break
        else:
            report.unrecognised.append(original)
    return mapping


def export_official(state: Mapping[str, torch.Tensor], rules: list[KeyRule]) -> dict[str, torch.Tensor]:
    """The inverse mapping: our state dict -> official key names. Keys no rule covers raise, so an export never
    silently loses a tensor."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for rule in rules:
            official = rule.to_official(key)
            if official is not None:
                out[official] = tensor
                break
        else:
            raise ValueError(f"no official name is known for {key!r}")
    return out


def load_converted_weights(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    mapping: Mapping[str, str],
    report: ConversionReport,
    transforms: Mapping[str, callable] | None = None,
) -> None:
    """Copy the mapped tensors into `model` after checking every shape; on any mismatch nothing is loaded and a
    ValueError names the official key, our key and both shapes."""
    own = model.state_dict()
    transforms = transforms or {}
    new_state = {}
    for target, original in mapping.items():
        if target not in own:
            report.unrecognised.append(original)
            continue
        tensor = state[original]
        for pattern, fn in transforms.items():
            if re.fullmatch(pattern, target):
                tensor = fn(tensor)
        if tuple(tensor.shape) != tuple(own[target].shape):
            raise ValueError(
                f"checkpoint tensor {original!r} has shape {tuple(tensor.shape)} but the model's {target!r} has shape "
                f"{tuple(own[target].shape)}; the checkpoint does not fit this configuration"
            )
        new_state[target] = tensor.to(own[target].dtype)
        report.used[original] = target
    report.missing = sorted(k for k in own if k not in new_state)
    model.load_state_dict(new_state, strict=False)


def save_converted(model, report: ConversionReport, output_dir: str | os.PathLike) -> Path:
    """save_pretrained + a plain-text report of the key mapping next to the weights, written as one folder that
    replaces `output_dir` atomically (an interrupted conversion leaves the previous folder intact)."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        write_text_atomic(folder / "conversion_report.txt", report.summary() + "\n")

    return atomic_directory(output_dir, write)
