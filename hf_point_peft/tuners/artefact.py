"""What the package's PEFT configs add to peft's: the adapter folder as a shared artefact.

- Loading (`from_pretrained`) checks a local weights file before peft touches the base (`loading.py`).
- Recorded base names are portable (`naming.py`): `to_dict` (what `adapter_config.json` holds) writes
  `base_model_name_or_path` and Point-PEFT's `bank_source` as portable names, and a portable name read back is held
  as the local folder it stands for, so that peft's own checks at save time find the base on this machine instead
  of asking the Hub about a name like `hf_point_peft:embedded/...`.
- Saving (`save_pretrained`, which peft calls for every adapter it saves, `push_to_hub` included) also writes the
  project's model card next to `adapter_config.json` (`card.py`), instead of peft's empty template.
"""

from __future__ import annotations

import os

from ..naming import portable_base_name, resolve_base_name
from .card import write_saved_adapter_card
from .loading import CheckedAdapterLoading

__all__ = ["AdapterArtefact"]

_PORTABLE_FIELDS = frozenset({"base_model_name_or_path", "bank_source"})


class AdapterArtefact(CheckedAdapterLoading):
    """Mixin for the package's configs; place it before `PeftConfig` in the bases."""

    def __setattr__(self, name: str, value) -> None:
        if name in _PORTABLE_FIELDS and isinstance(value, (str, os.PathLike)):
            value = resolve_base_name(value, strict=False)
        super().__setattr__(name, value)

    def to_dict(self) -> dict:
        data = super().to_dict()
        for name in _PORTABLE_FIELDS & set(data):
            data[name] = portable_base_name(data[name])
        return data

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        super().save_pretrained(save_directory, **kwargs)
        write_saved_adapter_card(self, save_directory)
