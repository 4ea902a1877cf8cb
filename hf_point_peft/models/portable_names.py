"""Loading by the portable names adapters record (`hf_point_peft:embedded/...`, see `naming.py`): the families'
configs and models (`FamilyConfig`, `FamilyPreTrainedModel`) and `AutoModelForPointCloudClassification` resolve such a
name to the folder it names before transformers reads it, so every class a user may call accepts what an adapter
recorded. transformers' own `AutoConfig` / `AutoModel` do not: they ask the Hub about the name."""

from __future__ import annotations

import os

from transformers import PreTrainedConfig

from ..naming import resolve_base_name

__all__ = ["FamilyConfig", "resolve_name_argument"]


def resolve_name_argument(name):
    """`pretrained_model_name_or_path` with a portable name resolved; anything else (None, a dict) unchanged."""
    return resolve_base_name(name) if isinstance(name, (str, os.PathLike)) else name


class FamilyConfig(PreTrainedConfig):
    """The base of the families' configs: `from_pretrained` also accepts a portable name."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        return super().from_pretrained(resolve_name_argument(pretrained_model_name_or_path), *args, **kwargs)
