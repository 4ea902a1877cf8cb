"""The peft `BaseTuner` shared by the point-cloud methods that wrap the blocks of a point backbone.

It resolves placements from the model family, wraps blocks with the method's block layer and the tokenizer's frozen
BatchNorms with the method's statistics layer, and refuses to merge (the methods depend on the input). The block
layers get each forward's points and token centres from the encoder, as the keyword argument `point_geometry`
(`geometry/per_forward.py`); nothing is captured by hooks.
"""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _ExcludedModule, check_target_module_exists
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

from .backbones import find_module, get_backbone, model_width
from .keys import AdapterNameFreeKeys
from .mixed_batch import check_adapter_names, mixed_batch_hooks
from .placement import TunerModulesFollowBase

__all__ = [
    "InputDependentTuner",
    "PointTuner",
    "adapters_disabled",
    "checkpointed",
    "require_geometry",
    "suspended_checkpointing",
]

_NOT_MERGEABLE = (
    "{name} adapters depend on the input point cloud (they are computed from the token centres of each forward), so "
    "they cannot be merged into the base weights. Use unload() to get the base model back, or keep the PEFT model."
)


@contextmanager
def suspended_checkpointing(module: nn.Module):
    """Turn a GradientCheckpointingLayer's own checkpointing off for one call (the caller checkpoints already)."""
    flag = getattr(module, "gradient_checkpointing", False)
    if flag:
        module.gradient_checkpointing = False
    try:
        yield
    finally:
        if flag:
            module.gradient_checkpointing = True


def checkpointed(wrapper: nn.Module, base: nn.Module, run, hidden_states, *args):
    """`run(hidden_states, *args)`, checkpointed as one unit when the wrapped block has gradient checkpointing on.

    Adapter wrappers read or modify tensors inside the block, so they checkpoint the block together with their own
    computation, with every input that selects the computation bound in `run`: the recomputation in backward then
    repeats exactly what the forward did."""
    if wrapper.training and getattr(base, "gradient_checkpointing", False):
        return base._gradient_checkpointing_func(run, hidden_states, *args)
    return run(hidden_states, *args)


@contextmanager
def adapters_disabled(module: nn.Module):
    """Every tuner layer inside `module` runs as its base layer for the duration (peft's `disable_adapters` flag,
    set and put back; `requires_grad` is left alone): Point-PEFT's frozen query pass of the pre-trained encoder."""
    layers = [(m, m._disable_adapters) for m in module.modules() if isinstance(m, BaseTunerLayer)]
    for layer, _ in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, flag in layers:
            layer._disable_adapters = flag


def require_geometry(point_geometry, layer: nn.Module):
    """The `point_geometry` a block layer was called with; a clear error when the encoder passed none."""
    if point_geometry is None:
        where = f" {layer.key!r}" if getattr(layer, "key", "") else ""
        raise ValueError(
            f"the adapted block{where} was called without point_geometry: the encoder must pass "
            "point_geometry=PointGeometry(points, centres) (hf_point_peft.geometry.per_forward) to each block, as "
            "hf_point_peft's point transformer and PointGPT do; call the PEFT model with points=..., and make a "
            "backbone of your own pass it from its tokenizer's output"
        )
    return point_geometry


class _BaseModelSnapshot:
    """What creating a tuner may change on the base model, to put back when the creation fails: every module's
    children (adapter wrappers, modules_to_save wrappers), forward hooks and pre-hooks (Any2Point's attach
    hooks), instance attributes of the model itself (Any2Point's `forward` entry) and each parameter's
    `requires_grad`. Parameter and buffer values are never written by an injection, so they are not copied."""

    _HOOK_DICTS = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks_with_kwargs",
    )

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules = [
            (m, dict(m._modules), {n: dict(getattr(m, n, {})) for n in self._HOOK_DICTS}) for m in model.modules()
        ]
        self.attributes = dict(model.__dict__)
        self.requires_grad = [(p, p.requires_grad) for p in model.parameters()]

    def restore(self) -> None:
        for module, children, hooks in self.modules:
            module._modules.clear()
            module._modules.update(children)
            for name, saved in hooks.items():
                current = getattr(module, name, None)
                if current is not None:
                    current.clear()
                    current.update(saved)
        for key in [k for k in self.model.__dict__ if k not in self.attributes]:
            del self.model.__dict__[key]
        for key, value in self.attributes.items():
            if self.model.__dict__.get(key) is not value:
                self.model.__dict__[key] = value
        for param, flag in self.requires_grad:
            param.requires_grad_(flag)


class InputDependentTuner(AdapterNameFreeKeys, TunerModulesFollowBase, BaseTuner):
    """A peft tuner whose adapters depend on the input: merging is refused early with a pointer to `unload()`, saved
    keys do not depend on the adapter name and a key that does not load is an error (`keys.py`), and
    modules are swapped without peft's assumption that every wrapped module has a `weight`. If creating the tuner
    fails (a width or model-type mismatch, targets that match nothing, ...), the base model is put back exactly as
    it was, so a failed `get_peft_model` / `PeftModel.from_pretrained` leaves no wrapper or hook behind."""

    uses_shared_state = True
    target_module_mapping: dict = {}
    method_name = "point"

    def __init__(self, model: nn.Module, peft_config, adapter_name: str, **kwargs) -> None:
        snapshot = _BaseModelSnapshot(model)
        try:
            super().__init__(model, peft_config, adapter_name, **kwargs)
        except Exception:
            snapshot.restore()
            raise

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        """Swap `child` for `new_module`. The layers place their own adapter weights when they create them (device
        and dtype of the wrapped module, nothing on the meta device; `placement.py`).

        peft's default copies `child.weight` onto a module without `base_layer`, which is what `unload()` puts back
        here: a block or BatchNorm of the base, or a weight-less module (the head Sequential, the cls-token module)."""
        setattr(parent, child_name, new_module)

    def _check_merge_allowed(self):
        raise ValueError(_NOT_MERGEABLE.format(name=self.method_name))

    one_adapter_per_forward = False  # Point-PEFT, Any2Point: their adapters cannot be active together

    def set_adapter(self, adapter_name, inference_mode: bool = False) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) > 1:
            self._check_several_active(names)
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        self._sync_tuner_modules(inference_mode)

    # ---------------------------------------------------------------- tuner-level per-adapter modules
    # peft manages the adapters inside tuner layers; the containers named in `tuner_adapter_dicts` and
    # `own_dtype_dicts` (`placement.py`) live on the tuner itself, so their trainability and deletion are done here,
    # in one place for every method
    def _tuner_entry_trains(self, attr: str, config) -> bool:
        """Whether the active, non-inference adapter's entry of container `attr` trains (a method may hold some
        entries frozen by a config switch)."""
        return True

    def _sync_tuner_modules(self, inference_mode: bool = False) -> None:
        """requires_grad of every tuner-level entry: on for the active adapters not in inference mode (their config's
        or `set_adapter(..., inference_mode=True)`), else off."""
        active = set() if inference_mode else set(self.active_adapters)
        for attr in self.tuner_adapter_dicts:
            for name, item in getattr(self, attr, {}).items():
                config = self.peft_config.get(name)
                trains = (
                    name in active
                    and config is not None
                    and not config.inference_mode
                    and self._tuner_entry_trains(attr, config)
                )
                if isinstance(item, nn.Parameter):
                    item.requires_grad = trains
                else:
                    item.requires_grad_(trains)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        for _, container in list(self._tuner_items(adapter_name)):
            del container[adapter_name]
        self._sync_tuner_modules()

    def _check_several_active(self, names: list[str]) -> None:
        """Several active adapters must be able to share one forward; otherwise say what to do instead."""
        serve = (
            f"to serve one adapter per sample, keep one active and pass adapter_names=[...] (one of {names} per "
            "sample) to the forward"
        )
        if self.one_adapter_per_forward:
            raise ValueError(
                f"{self.method_name} runs one adapter per forward, so {names} cannot be active together; {serve}"
            )
        owners: dict[str, list[str]] = {}
        for module_name, module in self.model.named_modules():
            if isinstance(module, AuxiliaryTrainingWrapper):
                for name in names:
                    if name in module.modules_to_save:
                        owners.setdefault(name, []).append(module_name.rsplit(".", 1)[-1])
        if len(owners) > 1:
            modules = sorted({m for found in owners.values() for m in found})
            raise ValueError(
                f"adapters {sorted(owners)} each train their own copy of {modules} (modules_to_save), and one forward "
                f"can use one copy only. To run {names} together, create them with modules_to_save=[] (their "
                f"{self.method_name} contributions add up and share the base's head), or train one adapter with the "
                f"head and the others with modules_to_save=[]; {serve}"
            )

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        """Mixed-adapter batches (`adapter_names=`, see `mixed_batch.py`); peft calls this around every forward."""
        adapter_names = kwargs.get("adapter_names")
        if adapter_names is None:
            yield
            return
        if self.training:
            raise ValueError(
                "adapter_names (one adapter per sample) works for inference only: call model.eval() first; "
                "training runs the active adapter on the whole batch"
            )
        points = kwargs.get("points", args[0] if args else None)
        batch = points.shape[0] if isinstance(points, torch.Tensor) and points.dim() > 0 else None
        names = check_adapter_names(adapter_names, list(self.peft_config), batch)
        with mixed_batch_hooks(self.model, self.tuner_layer_cls, names):
            yield

    def merge_and_unload(self, *args, **kwargs):
        raise ValueError(_NOT_MERGEABLE.format(name=self.method_name))

    def merge_adapter(self, *args, **kwargs) -> None:
        raise ValueError(_NOT_MERGEABLE.format(name=self.method_name))


class PointTuner(InputDependentTuner):
    """Subclasses set `prefix`, `tuner_layer_cls`, `block_layer_cls`, `bn_layer_cls` and `method_name`."""

    block_layer_cls: type[nn.Module]
    bn_layer_cls: type[nn.Module]
    method_name = "point"

    # ---------------------------------------------------------------- config resolution
    def _prepare_adapter_config(self, peft_config, model_config: dict):
        model_type = model_config.get("model_type")
        backbone = get_backbone(model_type)
        width = model_width(model_config)
        if peft_config.base_hidden_size is not None and width is not None and peft_config.base_hidden_size != width:
            raise ValueError(
                f"this {self.method_name} adapter was made for a base of width {peft_config.base_hidden_size}, but the "
                f"model has width {width} ({model_type}); load it onto a base of width {peft_config.base_hidden_size}"
            )
        if peft_config.base_model_type is not None and model_type and peft_config.base_model_type != model_type:
            raise ValueError(
                f"this {self.method_name} adapter was made for a {peft_config.base_model_type!r} base, but the model is "
                f"{model_type!r}"
            )
        labels = len(model_config.get("id2label") or {}) or None
        saves_head = any(str(m).split(".")[-1] == "classifier" for m in peft_config.modules_to_save or [])
        if saves_head and None not in (labels, peft_config.base_num_labels) and labels != peft_config.base_num_labels:
            raise ValueError(
                f"this {self.method_name} adapter trains its own {peft_config.base_num_labels}-class head "
                f"(modules_to_save), but the base has a {labels}-class head: load the base with "
                f"num_labels={peft_config.base_num_labels}"
            )
        if backbone is None and (peft_config.target_modules is None or peft_config.tokenizer_module is None):
            from .backbones import POINT_BACKBONES

            raise ValueError(
                f"{self.method_name} knows the model types {sorted(POINT_BACKBONES)}; for model_type {model_type!r} "
                "set target_modules (the blocks), tokenizer_module (the module returning the token centres) and "
                "num_prefix_tokens in the config"
            )
        if backbone is not None:
            if peft_config.target_modules is None:
                peft_config.target_modules = backbone.layers_pattern()
            if peft_config.modules_to_save is None:
                peft_config.modules_to_save = backbone.default_modules_to_save()
            if peft_config.num_prefix_tokens is None:
                peft_config.num_prefix_tokens = backbone.num_prefix_tokens
            if peft_config.block_norm is None:
                peft_config.block_norm = backbone.block_norm
        if peft_config.num_prefix_tokens is None:
            raise ValueError(f"set num_prefix_tokens in the {self.method_name} config for model_type {model_type!r}")
        peft_config.base_hidden_size = width if width is not None else peft_config.base_hidden_size
        peft_config.base_num_labels = labels if labels is not None else peft_config.base_num_labels
        peft_config.base_model_type = model_type or peft_config.base_model_type
        return peft_config

    def _prepare_model(self, peft_config, model: nn.Module) -> None:
        backbone = get_backbone(getattr(getattr(model, "config", None), "model_type", None))
        if peft_config.tokenizer_module is None:
            peft_config.tokenizer_module = find_module(model, backbone.tokenizer)[0]
        name, tokenizer = find_module(model, peft_config.tokenizer_module)
        peft_config.tokenizer_module = name
        self._bn_targets = {
            f"{name}.{sub}" if sub else name
            for sub, module in tokenizer.named_modules()
            if isinstance(module, self.bn_layer_cls)  # already wrapped for an earlier adapter
            or (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats)
        }

    # ---------------------------------------------------------------- matching
    def _check_target_module_exists(self, peft_config, key: str):
        plain = copy.copy(peft_config)
        plain.layers_to_transform = None  # peft's layer-index regex needs a child after the index; ours end there
        result = check_target_module_exists(plain, key)
        if result and not isinstance(result, _ExcludedModule) and peft_config.layers_to_transform is not None:
            match = re.search(r"\.(\d+)$", key)
            if match is None or int(match.group(1)) not in peft_config.layers_to_transform:
                return False
        if not result and (key in getattr(self, "_bn_targets", ()) or key in self._extra_targets(peft_config)):
            return True
        return result

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs) -> None:
        super().inject_adapter(model, adapter_name, **kwargs)
        # the tokenizer's BatchNorms always match, so peft's "no target found" check cannot see a block pattern that
        # matches nothing: without this, such an adapter would silently adapt no block at all
        wrapped = any(
            isinstance(m, self.block_layer_cls)
            and any(adapter_name in getattr(m, n, ()) for n in m.adapter_layer_names)
            for m in model.modules()
        )
        if not wrapped:
            config = self.peft_config[adapter_name]
            # leave no trace of the refused adapter (peft rolls back only its config): an `add_adapter` on a model
            # with other adapters would otherwise keep its entries in the tokenizer's BatchNorm wrappers
            remaining = [name for name in self.active_adapters if name != adapter_name]
            for module in model.modules():
                if isinstance(module, BaseTunerLayer) and any(
                    adapter_name in getattr(module, attr, {})
                    for attr in (*module.adapter_layer_names, *module.other_param_names)
                ):
                    module.delete_adapter(adapter_name)
                elif isinstance(module, AuxiliaryTrainingWrapper):  # modules_to_save copies (head, cls token)
                    module.delete_adapter(adapter_name, new_active_adapters=remaining or None)
            raise ValueError(
                f"{self.method_name}: target_modules={config.target_modules!r} (layers_to_transform="
                f"{config.layers_to_transform!r}) matched no transformer block of {type(model).__name__}; name the "
                "blocks to adapt, or leave target_modules=None for a known model family"
            )

    def _extra_targets(self, peft_config) -> set[str]:
        """Full names of further modules to wrap besides the blocks and the tokenizer's BatchNorms."""
        return set()

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, self.bn_layer_cls):
            target.update_layer(adapter_name, peft_config.backbone_bn_stats)
            return
        if isinstance(target, self.block_layer_cls):
            target.update_layer(adapter_name, peft_config)
            return
        if self._create_extra(peft_config, adapter_name, target, target_name, parent, current_key):
            return
        if isinstance(target, nn.modules.batchnorm._BatchNorm):
            new_module = self.bn_layer_cls(target, adapter_name, peft_config.backbone_bn_stats)
        else:
            if peft_config.block_norm is not None and not isinstance(
                getattr(target, peft_config.block_norm, None), nn.Module
            ):
                raise ValueError(
                    f"target block {current_key!r} ({type(target).__name__}) has no submodule {peft_config.block_norm!r}; "
                    "set block_norm to the name of its LayerNorm before the FFN"
                )
            new_module = self.block_layer_cls(
                target, adapter_name, peft_config, key=current_key, **self._layer_kwargs()
            )
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _layer_kwargs(self) -> dict:
        """Further constructor arguments of the block layers: references to tuner-level modules (as `vera` hands its
        shared projections to its layers)."""
        return {}

    def _create_extra(self, peft_config, adapter_name, target, target_name, parent, current_key) -> bool:
        """Subclasses wrap other targets (e.g. the final norm) here; return True when `target` was handled."""
        return False
