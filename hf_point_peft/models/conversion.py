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
    "BACKBONE_SIZES",
    "RELEASED_HEADS",
    "detect_method_checkpoint",
    "classifier_sizes",
    "head_conventions",
    "official_sizes",
    "export_official",
    "load_official_state_dict",
    "build_converted",
    "load_converted_weights",
    "read_official_config",
    "refuse_method_checkpoint",
    "resolve_sizes",
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
    notes: list[str] = field(default_factory=list)  # where each size / setting came from, and other facts

    def summary(self) -> str:
        lines = [
            f"converted a {self.source} checkpoint: {len(self.used)} tensors used, {len(self.dropped)} dropped, "
            f"{len(self.unrecognised)} unrecognised, {len(self.missing)} model tensors freshly initialised"
        ]
        lines += [f"  note: {note}" for note in self.notes]
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

    def full_text(self) -> str:
        """The summary, then every key: official -> where it went, or why it was dropped (the report file)."""
        lines = [self.summary(), "", f"used ({len(self.used)}):"]
        lines += [f"  {key} -> {target}" for key, target in self.used.items()]
        lines += ["", f"dropped ({len(self.dropped)}):"] + [f"  {k}: {why}" for k, why in self.dropped.items()]
        if self.unrecognised:
            lines += ["", f"unrecognised ({len(self.unrecognised)}):"] + [f"  {k}" for k in self.unrecognised]
        return "\n".join(lines) + "\n"


def _preview(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def read_tensor_file(path: str | os.PathLike, what: str):
    """`torch.load(weights_only=True)` of a file, every failure (a truncated file, a text file, a pickle of other
    objects) a ValueError that names the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name and the reason
        reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
        raise ValueError(
            f"could not read {path} with torch.load(weights_only=True): {reason}. Only tensor files are accepted; "
            "arbitrary pickles are refused for safety."
        ) from err


def missing_tensor(key: str) -> ValueError:
    """The error for a tensor a converter reads and the checkpoint lacks (a KeyError would end as a traceback)."""
    return ValueError(f"the checkpoint has no {key!r}: it is not a complete checkpoint of the layout this reads")


class CheckpointTensors(dict):
    """A checkpoint's tensors by name; a missing one is `missing_tensor`'s ValueError, naming it."""

    def __missing__(self, key: str):
        raise missing_tensor(key)


# model tensors a checkpoint may lack and that start from fresh values: the classification head (a pre-training
# checkpoint has none), cls tokens and norms (Point-MAE pre-trains without), num_batches_tracked counters, and the
# masked-modeling decoder (a pre-training checkpoint of another family). Any other gap is refused.
_MAY_START_FRESH = re.compile(r"^(classifier|decoder|reconstruction_head)\.|cls|mask_token|num_batches_tracked$")


def load_official_state_dict(checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """Read an official checkpoint with `torch.load(weights_only=True)` and return its model state dict.

    Accepts the official `{'base_model': ...}` / `{'model': ...}` / `{'state_dict': ...}` wrappers or a bare state dict.
    """
    obj = checkpoint if isinstance(checkpoint, Mapping) else read_tensor_file(checkpoint, "checkpoint")
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
    gaps = [k for k in report.missing if not _MAY_START_FRESH.search(k)]
    if gaps:
        raise ValueError(
            f"the checkpoint lacks {len(gaps)} tensor{'s' if len(gaps) > 1 else ''} of the backbone ({_preview(gaps, 4)}); "
            "converted, they would start from random values and the model would not compute what the checkpoint computed"
        )
    model.load_state_dict(new_state, strict=False)


def save_converted(model, report: ConversionReport, output_dir: str | os.PathLike) -> Path:
    """save_pretrained + a plain-text report of the key mapping next to the weights, written as one folder that
    replaces `output_dir` atomically (an interrupted conversion leaves the previous folder intact)."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        write_text_atomic(folder / "conversion_report.txt", report.full_text())

    return atomic_directory(output_dir, write, replace_foreign=False)


def build_converted(
    model_cls,
    config,
    state: Mapping[str, torch.Tensor],
    mapping: Mapping[str, str],
    report,
    output_dir: str | os.PathLike | None = None,
):
    """The converted model: `model_cls(config)` with the mapped tensors loaded (`load_converted_weights`), in eval
    mode, and saved with its report (`save_converted`) when `output_dir` is given."""
    model = model_cls(config)
    load_converted_weights(model, state, mapping, report)
    model.eval()
    if output_dir is not None:
        save_converted(model, report, output_dir)
    return model


# ---------------------------------------------------------------------------------------------------------- sizes
# official yaml field (path of nested keys) -> our name; the first path found wins. The yamls of Point-MAE /
# PointGST / Point-PEFT (`model: {trans_dim, ...}`, pre-training `model.transformer_config`), and of Any2Point
# (ScanObjectNN: `model.encoder_args` / `model.cls_args`; ModelNet40: Point-MAE style) all map here.
_OFFICIAL_FIELDS: list[tuple[tuple[str, ...], str]] = [
    (("model", "NAME"), "model_name"),
    (("model", "trans_dim"), "hidden_size"),
    (("model", "transformer_config", "trans_dim"), "hidden_size"),
    (("model", "encoder_args", "embed_dim"), "hidden_size"),
    (("model", "depth"), "num_hidden_layers"),
    (("model", "transformer_config", "depth"), "num_hidden_layers"),
    (("model", "encoder_args", "depth"), "num_hidden_layers"),
    (("model", "num_heads"), "num_attention_heads"),
    (("model", "transformer_config", "num_heads"), "num_attention_heads"),
    (("model", "encoder_args", "num_heads"), "num_attention_heads"),
    (("model", "group_size"), "group_size"),
    (("model", "num_group"), "num_groups"),
    (("model", "cls_dim"), "num_labels"),
    (("model", "cls_args", "num_classes"), "num_labels"),
    (("model", "encoder_dims"), "encoder_dims"),
    (("model", "transformer_config", "encoder_dims"), "encoder_dims"),
    (("npoints",), "num_points"),
    (("num_points",), "num_points"),
    (("model", "drop_path_rate"), "drop_path_rate"),
    (("model", "transformer_config", "drop_path_rate"), "drop_path_rate"),
    (("model", "encoder_args", "drop_path_rate"), "drop_path_rate"),
    (("model", "rank"), "rank"),
    (("model", "local"), "local_size"),
    (("model", "adapter_config", "adapter_dim"), "adapter_dim"),
    (("model", "adapter_dim"), "adapter_dim"),
    (("model", "encoder_args", "adapter_args", "adapter_dim"), "adapter_dim"),
    (("model", "patchknn"), "knn_k"),
    (("model", "encoder_args", "patchknn"), "knn_k"),
    (("model", "attn1d_dim"), "local_attn_dim"),
    (("model", "attn2d_dim"), "local_attn_dim"),
    (("model", "encoder_args", "attn1d_dim"), "local_attn_dim"),
    (("model", "encoder_args", "attn2d_dim"), "local_attn_dim"),
    (("model", "encoder_args", "num_view"), "num_views"),
    (("model", "encoder_args", "global_feat"), "global_feat"),
    (("model", "encoder_args", "norm_args", "eps"), "final_norm_eps"),
    (("model", "cls_args", "mlps"), "head_hidden"),
]


def _number(value):
    """PyYAML reads `1e-6` (no dot) as a string; the official yamls mean numbers."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def read_official_config(path: str | os.PathLike) -> dict:
    """The sizes an official yaml (`cfgs/...yaml` of Point-MAE, PointGST, Point-PEFT or Any2Point) sets, under our
    names (`hidden_size`, `num_hidden_layers`, `num_attention_heads`, `num_groups`, `group_size`, `num_points`,
    `num_labels`, `encoder_dims`, `rank`, `local_size`, `adapter_dim`, `knn_k`, ...), plus `path`. A value of 0 for
    the Any2Point attention width means "set on the command line" in the official scripts and is left out."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse the official config {path}: {err}") from err
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise ValueError(f"{path} has no `model:` section; pass the official fine-tuning yaml (cfgs/...yaml)")
    found: dict = {"path": str(path)}
    for keys, name in _OFFICIAL_FIELDS:
        node = data
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        value = _number(node)
        if node is None or name in found or (name == "local_attn_dim" and value == 0):
            continue
        found[name] = [_number(v) for v in value] if isinstance(value, list) else value
    return found


def resolve_sizes(
    what: str,
    inferred: Mapping[str, object],
    *,
    explicit: Mapping[str, object] | None = None,
    official: Mapping[str, object] | None = None,
    conventions: Mapping[str, tuple[object, str]] | None = None,
    required: Mapping[str, str] | None = None,
    report: ConversionReport | None = None,
) -> dict:
    """Sizes from, in order: the checkpoint's tensors (`inferred`), the official yaml (`official`, from
    `read_official_config`), explicit arguments (`explicit`), and last what the official code fixes for a known case
    (`conventions`: name -> (value, reason), e.g. the heads of a released width). A yaml value or argument that
    contradicts the tensors raises; a `required` name (-> its CLI flag) that none of them sets raises, naming every
    missing flag at once. Each choice is recorded in `report.notes`."""
    explicit, official, conventions = dict(explicit or {}), dict(official or {}), dict(conventions or {})
    values, origin = dict(inferred), dict.fromkeys(inferred, "the checkpoint's tensors")
    # the yaml by its file name: the notes go into the shared report and card, never a path of this machine
    source = f"the official config {Path(official.get('path', '')).name}".rstrip()
    for given, label in ((official, source), (explicit, "the arguments")):
        for name, value in given.items():
            if name == "path":
                continue
            if name in inferred and inferred[name] != value:
                raise ValueError(
                    f"{what}: {label} set {name}={value!r}, but the checkpoint's tensors say {name}={inferred[name]!r}; "
                    "the checkpoint and the configuration do not belong together"
                )
            values[name] = value
            origin[name] = label
    for name, (value, reason) in conventions.items():
        if name not in values:
            values[name] = value
            origin[name] = reason
    missing = {name: flag for name, flag in (required or {}).items() if name not in values}
    if missing:
        flags = ", ".join(flag if "=" in flag else f"{flag} N" for flag in missing.values() if flag)
        names = ", ".join(f"{name}=..." for name in missing)
        no_flag = [name for name, flag in missing.items() if not flag]  # sizes the command line takes from the yaml
        passed = f"{flags} (Python: {names}), or " if flags else ""
        python = f"official_config=..., or {names}" if not flags else "official_config=..."
        without = f"; the command line has no flag for {', '.join(no_flag)}" if no_flag else ""
        raise ValueError(
            f"{what}: {', '.join(missing)} cannot be read from the checkpoint's tensors and no official config sets "
            f"{'it' if len(missing) == 1 else 'them'}. Pass {passed}--official-config with the official yaml of the "
            f"run (cfgs/...yaml; Python: {python}{without})"
        )
    if report is not None:
        for name in sorted(origin):
            if name in (required or {}) or name in conventions:
                report.notes.append(f"{name}={values[name]!r} from {origin[name]}")
    return values


# heads of the released models by width (Point-MAE / Point-BERT / ACT / ReCon: 384 -> 6; the 768- and 1024-wide
# PointGPT-B / -L: 12, 16); any other width has no official answer and is refused without --num-heads
RELEASED_HEADS = {384: 6, 768: 12, 1024: 16}
# the yaml entries that size a point backbone
BACKBONE_SIZES = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "group_size",
    "num_groups",
    "num_points",
    "num_labels",
)


def head_conventions(width: int, *names: str) -> dict:
    """The heads of the released models of this width, for `resolve_sizes(conventions=...)`."""
    if width not in RELEASED_HEADS:
        return {}
    reason = f"the released {width}-wide models (heads are not stored in a tensor)"
    return {name: (RELEASED_HEADS[width], reason) for name in names}


def classifier_sizes(head: list[torch.Tensor]) -> dict:
    """Classes, hidden widths and BatchNorm use of an official fine-tuning head, from its `.weight` tensors in
    layer order (Linears are 2-D, BatchNorms 1-D); empty when the checkpoint has no head."""
    if not head:
        return {}
    linears = [w for w in head if w.dim() == 2]
    return {
        "num_labels": linears[-1].shape[0],
        "classifier_hidden_sizes": [w.shape[0] for w in linears[:-1]],
        "classifier_batch_norm": any(w.dim() == 1 for w in head),
    }


def official_sizes(official_config, names) -> dict:
    """The entries of an official yaml (a path, or what `read_official_config` returned) that size this model."""
    if official_config is None:
        return {}
    found = official_config if isinstance(official_config, Mapping) else read_official_config(official_config)
    return {k: v for k, v in found.items() if k in names or k == "path"}


# ---------------------------------------------------------------------------------------- other methods' checkpoints
_METHOD_SIGNATURES = (
    ("pointgst", "PointGST", (".gft_adapter.",)),
    ("point-prompt", "Point-PEFT", (".prompt_embeddings", ".cp_adapter.", ".prompt_cor", ".adapter1.")),
    ("any2point", "Any2Point", (".out_transform_3d.", ".EncP.")),
)


def detect_method_checkpoint(keys) -> tuple[str, str, list[str]] | None:
    """(`--from` value, method name, the keys that gave it away) when `keys` are those of a fine-tuned checkpoint
    of one of the PEFT methods this package converts, else None."""
    keys = list(keys)
    for flag, name, patterns in _METHOD_SIGNATURES:
        hits = [key for key in keys if any(p in "." + key for p in patterns)]
        if hits:
            return flag, name, hits
    return None


def refuse_method_checkpoint(state: Mapping[str, torch.Tensor], converter: str) -> None:
    """Backbone converters call this first: a PEFT method's checkpoint converted as a plain backbone would lose its
    adapter (its keys would only be listed as unrecognised), so it is refused with the `--from` value to use."""
    found = detect_method_checkpoint(state)
    if found is None:
        return
    flag, name, hits = found
    raise ValueError(
        f"this is a {name} fine-tuned checkpoint ({len(hits)} adapter tensors such as {hits[0]!r}), not a plain "
        f"{converter} checkpoint: converting it as a backbone would drop the adapter. Convert it with "
        f"`point-peft convert --from {flag}` (Python: hf_point_peft.conversion.convert_{flag.replace('-', '_')}"
        "_checkpoint), which writes the adapter and its base model"
    )
