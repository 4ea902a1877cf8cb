"""Saved adapter keys that do not depend on the adapter name, and loading that refuses a key it cannot place.

peft removes the adapter name from a saved key only where it is the last or second-to-last part
(`lin.lora_A.default.weight`). The point methods keep whole sub-modules per adapter
(`...point_gst_adapter.<adapter>.adapt1.bias`, `any2point_head.<adapter>.0.weight`), so the name sits deeper; the
tuners therefore remove the part that follows an attribute starting with the method's prefix, in both directions, and
an adapter saved as `default` loads as `task_a`.

peft only warns about keys that did not load (and not at all about keys left unused); here either, or a tensor of
another shape than the model's, is a `ValueError` naming the keys, raised before the model's forward could use
half-initialised adapter weights, and the refused adapter is removed again. Adapters written by hf_point_peft 0.1.0
(adapter name inside the key) still load.
"""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import _filter_state_dict_by_key_prefixes, _get_tuner_state_dict_key_prefixes
from torch import nn

__all__ = ["AdapterNameFreeKeys"]

_PEFT_PREFIX = "base_model.model."


def _drop_part_after_prefix(key: str, prefix: str, name: str | None) -> str | None:
    """`key` without the part that follows the first `prefix*` part (only if that part equals `name`, when given);
    None when no part can be dropped."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith(prefix) and (name is None or parts[i + 1] == name):
            return ".".join(parts[: i + 1] + parts[i + 2 :])
    return None


class AdapterNameFreeKeys:
    """Mixin for the package's `BaseTuner`s (before `BaseTuner` in the bases): name-free saved keys and strict
    loading. The class attribute `prefix` is the method's (e.g. "point_gst_")."""

    prefix: str

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        stripped = _drop_part_after_prefix(key, cls.prefix, adapter_name)
        return stripped if stripped is not None else key

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls, model: nn.Module, config, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        prefixes = _get_tuner_state_dict_key_prefixes(model, adapter_name=adapter_name)
        model_state = model.state_dict()
        own = _filter_state_dict_by_key_prefixes(model_state, prefixes)
        to_model: dict[str, str] = {}
        for model_key in own:
            saved = cls._remove_adapter_name_from_key(model_key, adapter_name)
            to_model[saved] = model_key
            if not model_key.startswith(_PEFT_PREFIX):  # adapters injected without a PeftModel around them
                to_model[_PEFT_PREFIX + saved] = model_key
        remapped, unused = {}, []
        for key, value in state_dict.items():
            target = to_model.get(key)
            if target is None:  # hf_point_peft 0.1.0 kept the saved adapter's name inside the key
                legacy = _drop_part_after_prefix(key, cls.prefix, None)
                target = to_model.get(legacy) if legacy is not None else None
            if target is None and key in model_state and f".modules_to_save.{adapter_name}." in key:
                target = key  # a modules_to_save tensor, already placed by peft's wrapper key map
            if target is None:
                unused.append(key)
            else:
                remapped[target] = value
        missing = sorted(cls._remove_adapter_name_from_key(k, adapter_name) for k in own if k not in remapped)
        shapes = sorted(
            f"{cls._remove_adapter_name_from_key(target, adapter_name)} (file {tuple(value.shape)}, model "
            f"{tuple(model_state[target].shape)})"
            for target, value in remapped.items()
            if tuple(value.shape) != tuple(model_state[target].shape)
        )
        if unused or missing or shapes:
            cls._drop_refused_adapter(model, adapter_name)
            raise ValueError(cls._key_mismatch_message(adapter_name, unused, missing, shapes))
        return remapped

    @staticmethod
    def _drop_refused_adapter(model: nn.Module, adapter_name: str) -> None:
        """Remove the adapter whose weights did not load: the model is left as it was before the load call."""
        peft_config = getattr(model, "peft_config", {})
        try:
            if len(peft_config) > 1:
                model.delete_adapter(adapter_name)
            elif hasattr(model, "base_model") and hasattr(model.base_model, "unload"):
                model.base_model.unload()
        except Exception:  # noqa: BLE001 - the key error below is the one the user must see
            pass

    @classmethod
    def _key_mismatch_message(
        cls, adapter_name: str, unused: list[str], missing: list[str], shapes: list[str] = ()
    ) -> str:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")

        parts = []
        if unused:
            parts.append(f"{len(unused)} saved tensor(s) match no adapter weight of this model: {show(unused)}")
        if missing:
            parts.append(f"{len(missing)} adapter weight(s) are not in the file: {show(missing)}")
        if shapes:
            parts.append(f"{len(shapes)} saved tensor(s) have another shape than this model's: {show(shapes)}")
        return (
            f"the adapter weights loaded as {adapter_name!r} (adapter_model.safetensors, or adapter_model.bin where "
            f"the adapter was saved without safetensors) and this model do not match ({'; '.join(parts)}). "
            "The file was saved from another configuration or base (compare adapter_config.json), or was edited; "
            "nothing was loaded"
        )
