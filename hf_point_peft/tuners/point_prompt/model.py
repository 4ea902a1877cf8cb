"""`PointPromptModel`: the peft tuner that injects Point-PEFT into a point backbone, and the memory bank builder."""

from __future__ import annotations

import re
import warnings
from contextlib import nullcontext

import torch
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import _ExcludedModule
from peft.utils.integrations import init_empty_weights
from torch import nn

from ..backbones import find_module, get_backbone
from ..base import PointTuner
from .layer import (
    FrozenFeatures,
    PointPromptBatchNorm,
    PointPromptBlock,
    PointPromptLayer,
    PointPromptNorm,
    PromptShared,
    SharedGeometry,
)

__all__ = ["PointPromptModel"]


class PointPromptModel(PointTuner):
    """Point-PEFT on a point transformer (Point-MAE family) or PointGPT. Tuner-level state per adapter: the prompt
    coordinates, the shared LN3 + local attention, and the memory bank (a persistent buffer saved with the adapter).
    Created by `get_peft_model(model, PointPromptConfig(...))`; build the bank with `build_memory_bank`."""

    prefix: str = "point_prompt_"
    tuner_layer_cls = PointPromptLayer
    block_layer_cls = PointPromptBlock
    bn_layer_cls = PointPromptBatchNorm
    method_name = "Point-PEFT"
    one_adapter_per_forward = True  # prompts, bias deltas and the bank belong to one adapter

    # ---------------------------------------------------------------- tuner-level state
    def _shared_state(self) -> PromptShared:
        shared = self.__dict__.get("_prompt_shared")
        if shared is None:
            self.point_prompt_coords = nn.ParameterDict()
            self.point_prompt_geometry = nn.ModuleDict()
            self.point_prompt_bank = BufferDict(persistent=True)
            encoder = self._encoder(self.model)
            shared = PromptShared(
                self.point_prompt_coords,
                self.point_prompt_geometry,
                self.point_prompt_bank,
                FrozenFeatures(encoder),
            )
            self.__dict__["_prompt_shared"] = shared
        return shared

    @staticmethod
    def _encoder(model: nn.Module) -> nn.Module:
        backbone = get_backbone(getattr(getattr(model, "config", None), "model_type", None))
        if backbone is not None and hasattr(model, backbone.base_prefix):
            return getattr(model, backbone.base_prefix)
        return model

    tuner_adapter_dicts = ("point_prompt_coords", "point_prompt_geometry")
    own_dtype_dicts = ("point_prompt_bank",)  # float32 or float16, as `bank_dtype` says

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs) -> None:
        config = self.peft_config[adapter_name]
        base_model_type = getattr(getattr(model, "config", None), "model_type", None)
        if base_model_type not in ("point_transformer", "point_gpt"):
            raise TypeError(
                f"Point-PEFT supports the Point-MAE family (point_transformer) and PointGPT (point_gpt) blocks; "
                f"{type(model).__name__} (model_type {base_model_type!r}) is not supported"
            )
        shared = self._shared_state()
        width = model.config.hidden_size
        with init_empty_weights() if kwargs.get("low_cpu_mem_usage") else nullcontext():
            coords = nn.Parameter(nn.init.trunc_normal_(torch.empty(config.num_prompt_tokens, 3), std=0.02))
            self.point_prompt_coords[adapter_name] = coords
            self.point_prompt_geometry[adapter_name] = SharedGeometry(width, config.ga_attn_dim, config.ga_attn_heads)
        if config.use_memory_bank and config.bank_size is not None:  # loading: allocate before the state dict
            dtype = torch.float16 if config.bank_dtype == "float16" else torch.float32
            self.point_prompt_bank[adapter_name] = torch.zeros(config.bank_size, width, dtype=dtype)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        if config.use_memory_bank and config.bank_size is not None:
            source = getattr(getattr(model, "config", None), "name_or_path", None)
            if config.bank_source and source and config.bank_source != source:
                warnings.warn(
                    f"the memory bank of adapter {adapter_name!r} was computed with base {config.bank_source!r}, but "
                    f"this base is {source!r}: rebuild it with build_memory_bank if the backbone differs",
                    stacklevel=2,
                )
        shared.settings[adapter_name] = config
        super().inject_adapter(model, adapter_name, **kwargs)
        self._sync_tuner_modules()

    def _layer_kwargs(self) -> dict:
        return {"shared": self._shared_state()}

    def _extra_targets(self, peft_config) -> set[str]:
        if not peft_config.bias_tuning:
            return set()
        backbone = get_backbone(peft_config.base_model_type)
        final = {"point_transformer": "norm", "point_gpt": "encoder.ln_f"}[backbone.model_type]
        prefix = f"{backbone.base_prefix}." if hasattr(self.model, backbone.base_prefix) else ""
        name, module = find_module(self.model, prefix + final)
        return {name} if isinstance(module, (nn.LayerNorm, PointPromptNorm)) else set()

    def _wrap_other(self, config, adapter_name, target, target_name, parent, key) -> None:
        """The final norm (with `bias_tuning`) gets its per-adapter deltas; BatchNorms their statistics."""
        if key not in self._extra_targets(config):
            super()._wrap_other(config, adapter_name, target, target_name, parent, key)
        elif isinstance(target, PointPromptNorm):
            target.update_layer(adapter_name)
        else:
            new_module = PointPromptNorm(target, adapter_name)
            if adapter_name not in self.active_adapters:
                new_module.requires_grad_(False)
            self._replace_module(parent, target_name, new_module, target)

    def _check_target_module_exists(self, peft_config, key: str):
        """Only indexed layers are blocks (a Point-PEFT block reads its depth from its name): anything else a pattern
        matches, such as the final norm (wrapped in the pass of its own), is not an injection target."""
        result = super()._check_target_module_exists(peft_config, key)
        if result and not isinstance(result, _ExcludedModule) and not re.search(r"\.\d+$", key):
            return False
        return result

    def _check_blocks(self, peft_config, blocks: list[tuple[str, nn.Module]], model: nn.Module) -> None:
        """Also: at least one targeted block receives prompts (blocks 0 .. prompt_layers - 1), or the prompts, their
        coordinates and the memory bank would be trained and saved for nothing."""
        super()._check_blocks(peft_config, blocks, model)
        indices = sorted(int(re.search(r"\.(\d+)$", key).group(1)) for key, _ in blocks)
        if peft_config.prompt_layers > 0 and not any(i < peft_config.prompt_layers for i in indices):
            raise ValueError(
                f"Point-PEFT: prompt_layers={peft_config.prompt_layers} gives prompts to blocks 0 .. "
                f"{peft_config.prompt_layers - 1}, but the targeted blocks are {indices} (target_modules / "
                "layers_to_transform): no block would receive the prompts. Target one of those blocks, or set "
                "prompt_layers above the first targeted block's index"
            )

    # ---------------------------------------------------------------- adapters on / off / deleted
    def _tuner_entry_trains(self, attr: str, config) -> bool:
        return attr != "point_prompt_coords" or config.learn_prompt_coords

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self._shared_state().settings.pop(adapter_name, None)

    # ---------------------------------------------------------------- the memory bank
    def query_features(self, points: torch.Tensor) -> torch.Tensor:
        """phi(points) [B, C]: the frozen base's patch-token feature, as used for the bank and the query."""
        return self._shared_state().feature_fn(points)
