"""Checks that run when a saved point adapter is loaded, before peft touches the base model.

`PeftModel.from_pretrained(base, folder)` first reads `adapter_config.json` through the method's config class, then
injects the adapter layers into `base` (in place), and only then reads `adapter_model.safetensors`. A truncated or
corrupted weights file, or a weights file of another method, would fail (or, for another method, load with a
warning only) after the base had already been wrapped. The config classes of this package therefore check a local
weights file in `from_pretrained`, the one step of peft's loading that sees the folder and runs before injection:
a file safetensors cannot read, or one without a single tensor of the config's method, raises a `ValueError` that
names the file, and the base model is never touched.

Not checked here: a folder without a weights file (a config saved on its own is legitimate, so peft reports a missing
file itself, after injection), files on the Hub (not downloaded yet), and bytes corrupted inside the tensor data
(safetensors has no checksum; the header, offsets and file length are what can be verified).
"""

from __future__ import annotations

import os

from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
from peft.utils import SAFETENSORS_WEIGHTS_NAME

from ..files import check_safetensors

__all__ = ["CheckedAdapterLoading", "check_adapter_weights"]


def _peft_type_name(peft_type) -> str:
    return str(getattr(peft_type, "value", peft_type))


def check_adapter_weights(folder: str | os.PathLike, peft_type) -> None:
    """Raise a ValueError naming `folder/adapter_model.safetensors` if it exists but cannot be read by safetensors
    (truncated, garbage, bad header) or holds no tensor with the prefix of `peft_type` (another method's file)."""
    path = os.path.join(os.fspath(folder), SAFETENSORS_WEIGHTS_NAME)
    if not os.path.isfile(path):
        return
    keys = check_safetensors(path, "save the adapter again or download it again")
    prefix = PEFT_TYPE_TO_PREFIX_MAPPING.get(peft_type)
    if prefix is None or any(prefix in key for key in keys):
        return
    found, examples = set(), []
    for other, other_prefix in PEFT_TYPE_TO_PREFIX_MAPPING.items():
        matching = [key for key in keys if f".{other_prefix}" in key or key.startswith(other_prefix)]
        if other != peft_type and matching:
            found.add(_peft_type_name(other))
            examples += [key for key in matching[:2] if key not in examples]
    looks_like = f"; its tensor names are those of peft_type {' / '.join(sorted(found))}" if found else ""
    raise ValueError(
        f"the adapter weights {path} hold no {prefix!r} tensor, but the adapter_config.json next to them says "
        f"peft_type {_peft_type_name(peft_type)}{looks_like} (e.g. {(examples or keys)[:2]}). The folder mixes two "
        "methods: load it with the config it was saved with"
    )


class CheckedAdapterLoading:
    """Mixin for the package's PEFT configs: `from_pretrained` also checks a local weights file next to the config
    (see the module docstring); place it before `PeftConfig` in the bases."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, **kwargs):
        config = super().from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        folder = os.fspath(pretrained_model_name_or_path)
        if subfolder:
            folder = os.path.join(folder, subfolder)
        if os.path.isdir(folder):
            check_adapter_weights(folder, config.peft_type)
        return config
