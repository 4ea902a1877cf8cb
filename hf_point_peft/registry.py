"""Registration of this package's PEFT methods with peft (idempotent).

peft only registers names that are members of its closed enum `peft.utils.peft_types.PeftType`, and transformers
reads `peft_type.value.lower()`, so each method becomes a real enum member before `register_peft_method` is called.
"""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import register_peft_method
from peft.utils.peft_types import PeftType

__all__ = ["add_peft_type", "register_method"]


def add_peft_type(name: str) -> PeftType:
    """Return `PeftType[NAME]`, adding the member to peft's enum if it is not there yet."""
    key = name.upper()
    if key in PeftType.__members__:
        return PeftType[key]
    member = str.__new__(PeftType, key)
    member._name_ = key
    member._value_ = key
    member.__objclass__ = PeftType
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)
    type.__setattr__(PeftType, key, member)
    return member


def register_method(name: str, config_cls: type, model_cls: type) -> PeftType:
    """Register a method under `name` (lower case, prefix `name + "_"`); calling it again is a no-op."""
    peft_type = add_peft_type(name)
    prefix = name + "_"
    if peft_type in PEFT_TYPE_TO_CONFIG_MAPPING:
        if (
            PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] is not config_cls
            or PEFT_TYPE_TO_TUNER_MAPPING[peft_type] is not model_cls
        ):
            # a re-import (e.g. importlib.reload) made new classes: point the registry at them
            PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = config_cls
            PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = model_cls
        return peft_type
    if PEFT_TYPE_TO_PREFIX_MAPPING.get(peft_type, prefix) != prefix:
        raise KeyError(f"peft already maps {peft_type} to prefix {PEFT_TYPE_TO_PREFIX_MAPPING[peft_type]!r}")
    register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls, prefix=prefix)
    return peft_type
