"""The peft `BaseTuner` shared by the point-cloud methods that wrap the blocks of a point backbone.

It resolves placements from the model family, wraps blocks with the method's block layer and the tokenizer's frozen
BatchNorms with the method's statistics layer, and refuses to merge (the methods depend on the input). The block
layers get each forward's points and token centres from the encoder, as the keyword argument `point_geometry`
(`geometry/per_forward.py`); nothing is captured by hooks.
"""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager, nullcontext

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _ExcludedModule, check_target_module_exists
from peft.utils import _get_submodules
from peft.utils.integrations import init_empty_weights
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

from .backbones import POINT_BACKBONES, find_module, get_backbone, model_width
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


class InputDependentTuner(AdapterNameFreeKeys, TunerModulesFollowBase, BaseTuner):
    """A peft tuner whose adapters depend on the input: merging is refused (peft's `_check_merge_allowed`, which
    `merge_adapter` and `merge_and_unload` call first) with a pointer to `unload()`, saved keys do not depend on the
    adapter name and a key that does not load is an error (`keys.py`), and modules are swapped without peft's
    assumption that every wrapped module has a `weight`.

    Everything that can refuse an adapter (width, model type, targets that match nothing, a block without the
    expected norm, ...) is checked in `_prepare_adapter_config` / `_prepare_model`, which peft runs before it changes
    anything: a failed `get_peft_model` / `PeftModel.from_pretrained` / `add_adapter` leaves the base as it was.

    The overrides of peft below each say why they exist."""

    # the tuner object holds what the layers share (Point-PEFT's prompt state, Any2Point's tokenizer and head), so
    # peft's bare `inject_adapter_in_model`, which keeps the model and drops the tuner, is refused with a pointer to
    # get_peft_model
    uses_shared_state = True
    target_module_mapping: dict = {}  # model_type -> the blocks' full-match pattern (filled by each tuner)
    method_name = "point"

    def _check_target_module_exists(self, peft_config, key: str):
        """peft's matching, except for `layers_to_transform`: peft's index regex needs a child after the layer index,
        and the targets here are the indexed layers themselves."""
        plain = copy.copy(peft_config)
        plain.layers_to_transform = None
        result = check_target_module_exists(plain, key)
        if result and not isinstance(result, _ExcludedModule) and peft_config.layers_to_transform is not None:
            layers = peft_config.layers_to_transform
            layers = [layers] if isinstance(layers, int) else layers
            match = re.search(r"\.(\d+)$", key)
            if match is None or int(match.group(1)) not in layers:
                return False
        return result

    def _matched_targets(self, peft_config, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The modules peft's loop will hand to `_create_and_replace` (outside existing tuner layers)."""
        inside = [name + "." for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
        matched = []
        for key, module in model.named_modules():
            if not key or any(key.startswith(prefix) for prefix in inside):
                continue
            result = self._check_target_module_exists(peft_config, key)
            if result and not isinstance(result, _ExcludedModule):
                matched.append((key, module))
        return matched

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        """Swap `child` for `new_module`. The layers place their own adapter weights when they create them (device
        and dtype of the wrapped module, nothing on the meta device; `placement.py`).

        peft's default copies `child.weight` onto a module without `base_layer`, which is what `unload()` puts back
        here: a block or BatchNorm of the base, or a weight-less module (the head Sequential, the cls-token module)."""
        setattr(parent, child_name, new_module)

    def _check_merge_allowed(self):  # peft's hook: every merge path asks it first
        raise ValueError(_NOT_MERGEABLE.format(name=self.method_name))

    one_adapter_per_forward = False  # Point-PEFT, Any2Point: their adapters cannot be active together

    def set_adapter(self, adapter_name, inference_mode: bool = False) -> None:
        """peft's, after refusing active-adapter sets that cannot share a forward; then the tuner-level modules."""
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
        """peft's (layers, modules_to_save), then the tuner-level entries, which peft does not know."""
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


class PointTuner(InputDependentTuner):
    """Subclasses set `prefix`, `tuner_layer_cls`, `block_layer_cls`, `bn_layer_cls` and `method_name`.

    peft matches and wraps the blocks (so its own matching and errors apply); the tokenizer's frozen BatchNorms
    (per-adapter running statistics) and a method's extra modules (Point-PEFT's final norm) are not injection
    targets: `inject_adapter` wraps them in a pass of their own after peft's."""

    block_layer_cls: type[nn.Module]
    bn_layer_cls: type[nn.Module]
    method_name = "point"
    target_module_mapping = {name: backbone.layers_pattern() for name, backbone in POINT_BACKBONES.items()}

    # ---------------------------------------------------------------- config resolution and checks (nothing changed)
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
            raise ValueError(
                f"{self.method_name} knows the model types {sorted(POINT_BACKBONES)}; for model_type {model_type!r} "
                "set target_modules (the blocks), tokenizer_module (the module returning the token centres) and "
                "num_prefix_tokens in the config"
            )
        if backbone is not None:
            if peft_config.target_modules is None:
                peft_config.target_modules = self.target_module_mapping[model_type]
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
        """peft's hook before its matching loop: find the tokenizer's BatchNorms and check every matched block."""
        backbone = get_backbone(getattr(getattr(model, "config", None), "model_type", None))
        if peft_config.tokenizer_module is None:
            peft_config.tokenizer_module = find_module(model, backbone.tokenizer)[0]
        name, tokenizer = find_module(model, peft_config.tokenizer_module)
        peft_config.tokenizer_module = name
        wrapped = [sub + "." for sub, module in tokenizer.named_modules() if isinstance(module, self.bn_layer_cls)]
        self._statistics_targets = sorted(
            f"{name}.{sub}" if sub else name
            for sub, module in tokenizer.named_modules()
            if isinstance(module, self.bn_layer_cls)  # already wrapped for an earlier adapter
            or (
                isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.track_running_stats
                and not any(sub.startswith(prefix) for prefix in wrapped)  # the BatchNorm inside such a wrapper
            )
        )
        self._check_blocks(peft_config, self._matched_targets(peft_config, model), model)

    def _check_blocks(self, peft_config, blocks: list[tuple[str, nn.Module]], model: nn.Module) -> None:
        """At least one block, and each one wrappable (peft would otherwise wrap some blocks before failing)."""
        if not blocks:
            raise ValueError(
                f"{self.method_name}: target_modules={peft_config.target_modules!r} (layers_to_transform="
                f"{peft_config.layers_to_transform!r}) matched no transformer block of {type(model).__name__}; name the "
                "blocks to adapt, or leave target_modules=None for a known model family"
            )
        for key, block in blocks:
            if isinstance(block, self.block_layer_cls):
                continue
            if isinstance(block, BaseTunerLayer):  # wrapped by another method's adapter (a base used twice)
                raise ValueError(
                    f"{self.method_name}: target block {key!r} is already a {type(block).__name__}: this base model "
                    "carries another method's adapter. One base takes one method: build a fresh base (or unload() "
                    "the other adapter) before adding this one"
                )
            if peft_config.block_norm is not None and not isinstance(
                getattr(block, peft_config.block_norm, None), nn.Module
            ):
                raise ValueError(
                    f"target block {key!r} ({type(block).__name__}) has no submodule {peft_config.block_norm!r}; "
                    "set block_norm to the name of its LayerNorm before the FFN"
                )

    # ---------------------------------------------------------------- wrapping
    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs) -> None:
        """peft's injection (the blocks), then the pass of the statistics and extra modules."""
        super().inject_adapter(model, adapter_name, **kwargs)
        config = self.peft_config[adapter_name]
        keys = [*self._statistics_targets, *sorted(self._extra_targets(config))]
        with init_empty_weights() if kwargs.get("low_cpu_mem_usage") else nullcontext():
            for key in keys:
                parent, target, target_name = _get_submodules(model, key)
                self._wrap_other(config, adapter_name, target, target_name, parent, key)
                if key not in self.targeted_module_names:
                    self.targeted_module_names.append(key)
        # peft froze an inference-mode adapter (a load without is_trainable) before this pass: freeze its modules too
        if config.inference_mode:
            for key in keys:
                wrapped = model.get_submodule(key)
                if isinstance(wrapped, BaseTunerLayer):
                    wrapped.set_adapter(wrapped.active_adapters, inference_mode=True)

    def _wrap_other(self, config, adapter_name, target, target_name, parent, key) -> None:
        """A tokenizer BatchNorm gets the method's statistics layer; subclasses wrap their extra modules."""
        if isinstance(target, self.bn_layer_cls):
            target.update_layer(adapter_name, config.backbone_bn_stats)
            return
        new_module = self.bn_layer_cls(target, adapter_name, config.backbone_bn_stats)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _extra_targets(self, peft_config) -> set[str]:
        """Full names of further modules to wrap besides the blocks and the tokenizer's BatchNorms."""
        return set()

    def _layer_kwargs(self) -> dict:
        """Further constructor arguments of the block layers: references to tuner-level modules (as `vera` hands its
        shared projections to its layers)."""
        return {}

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, self.block_layer_cls):
            target.update_layer(adapter_name, peft_config)
            return
        new_module = self.block_layer_cls(target, adapter_name, peft_config, key=current_key, **self._layer_kwargs())
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)
