"""`Any2PointModel`: the peft tuner that turns a frozen CLIP-text / BERT / RoBERTa / DINOv2 / AST / ImageBind-audio
encoder into a point-cloud classifier (specs/any2point.md §3, §9)."""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager, nullcontext

import torch
from peft.utils.integrations import init_empty_weights
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ...geometry import validate_points
from ...models.layers import classification_loss
from ...models.pretrained import unexpected_forward_kwargs
from ..base import InputDependentTuner
from .layer import (
    Any2PointLayer,
    Any2PointLayerWrapper,
    Any2PointState,
    ClsModule,
    LocalCellAttention,
    PointHead,
)
from .projection import pe_1d, pe_2d
from .recipes import get_module, get_recipe, position_table
from .tokenizer import PointPNTokenizer

__all__ = ["Any2PointModel", "PointEntry"]


class PointEntry:
    """Replaces the source model's `forward` (an instance attribute, not a module): `points=` runs Any2Point, any
    other call goes to the model class's own forward. Module-level class, so the model pickles and deep-copies."""

    def __init__(self, tuner: Any2PointModel) -> None:
        self.tuner = tuner

    def __call__(self, *args, points: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        if points is None:
            model = self.tuner.model
            return type(model).forward(model, *args, **kwargs)
        return self.tuner.point_forward(points, labels, **kwargs)


class _Shared:
    def __init__(self, local_attn: nn.ModuleDict, view_norm: nn.ModuleDict) -> None:
        self.local_attn, self.view_norm = local_attn, view_norm


class Any2PointModel(InputDependentTuner):
    """Per adapter, tuner-level modules: `any2point_tokenizer` (3D tokenizer), `any2point_proj`, `any2point_cls`,
    `any2point_local_attn` and `any2point_view_norm` (one per view, shared by all layers), `any2point_final_norm`
    (a trainable copy of the source's final norm) and `any2point_head`; every layer of the source gets an
    `Any2PointLayerWrapper`. The source weights stay frozen and are never saved with the adapter."""

    prefix: str = "any2point_"
    tuner_layer_cls = Any2PointLayer
    method_name = "Any2Point"
    one_adapter_per_forward = True  # tokenizer, projections and head belong to one adapter

    # ---------------------------------------------------------------- set-up
    def _pre_injection_hook(self, model: nn.Module, config, adapter_name: str) -> None:
        for attr in self.tuner_adapter_dicts:
            setattr(self, attr, nn.ModuleDict())
        self.__dict__["_a2p_shared"] = _Shared(self.any2point_local_attn, self.any2point_view_norm)

    def _prepare_adapter_config(self, config, model_config: dict):
        recipe = get_recipe(self.model)
        width = int(model_config["hidden_size"])
        if config.source_model_type is not None and config.source_model_type != recipe.model_type:
            raise ValueError(
                f"this Any2Point adapter was made for a {config.source_model_type!r} source, not {recipe.model_type!r}"
            )
        if config.source_hidden_size is not None and config.source_hidden_size != width:
            raise ValueError(
                f"this Any2Point adapter was made for a source of width {config.source_hidden_size}, but this "
                f"{recipe.model_type} has width {width}"
            )
        for key, value in recipe.defaults().items():
            if getattr(config, key) is None:
                setattr(config, key, value)
        if recipe.layout == "2d" and config.view_translation is None:
            config.view_translation = -1.4
        if config.final_norm_eps is None:
            final = get_module(self.model, recipe.final_norm) if recipe.final_norm else None
            config.final_norm_eps = recipe.final_norm_eps or (final.eps if final is not None else 1e-5)
        if config.pe_2d_official_reshape and recipe.layout != "2d":
            raise ValueError(
                f"pe_2d_official_reshape reproduces the official 2D position lookup; {recipe.model_type} has a 1D table"
            )
        if config.audio_grid_layout == "official_19x12" and recipe.model_type != "imagebind_audio":
            raise ValueError(
                f"audio_grid_layout='official_19x12' reproduces the official ImageBind layout only; the source is "
                f"{recipe.model_type!r}"
            )
        if config.target_modules is None:
            config.target_modules = rf"{re.escape(recipe.layers)}\.\d+"
        config.source_model_type = recipe.model_type
        config.source_hidden_size = width
        return config

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs) -> None:
        """Checks first, so that a refused adapter leaves nothing behind; then the adapter's tuner-level modules,
        peft's injection of the layer wrappers, and the point entry (once, with the first adapter)."""
        config = self.peft_config[adapter_name]
        self._prepare_adapter_config(config, model.config.to_dict())
        self._check_layers(config, model)
        with init_empty_weights() if kwargs.get("low_cpu_mem_usage") else nullcontext():
            self._create_tuner_modules(model, adapter_name, config)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        super().inject_adapter(model, adapter_name, **kwargs)
        if not isinstance(model.__dict__.get("forward"), PointEntry):
            model.forward = PointEntry(self)  # why an instance entry: README, section Layout
            # the point loss is a batch mean: transformers' Trainer must divide it by the accumulation steps itself
            # (it reads the entry's `**kwargs` as taking `num_items_in_batch` otherwise; the point models say the same)
            model.__dict__["accepts_loss_kwargs"] = False
        self._sync_tuner_modules()

    def _check_layers(self, config, model: nn.Module) -> None:
        """The config matches at least one source layer, and each has the recipe's attach sub-module."""
        layers = self._matched_targets(config, model)
        if not layers:
            raise ValueError(
                f"Any2Point: target_modules={config.target_modules!r} (layers_to_transform="
                f"{config.layers_to_transform!r}) matched no layer of {type(model).__name__}; leave target_modules=None "
                "for a supported source"
            )
        attach = get_recipe(model).attach
        for key, layer in layers:
            try:
                get_module(layer.base_layer if isinstance(layer, Any2PointLayerWrapper) else layer, attach)
            except AttributeError:
                raise ValueError(
                    f"Any2Point: layer {key!r} ({type(layer).__name__}) has no sub-module {attach!r} for the bottleneck"
                ) from None

    def _create_tuner_modules(self, model: nn.Module, adapter_name: str, config) -> None:
        """The adapter's tokenizer, projection, cls token, per-view local attention and norms, final norm and head
        (float32 on the CPU; `_move_adapter_to_device_of_base_layer` places them)."""
        recipe = get_recipe(model)
        width = model.config.hidden_size
        tokenizer = PointPNTokenizer(
            config.knn_k, config.tokenizer_norm, config.tokenizer_groups, config.tokenizer_width
        )
        self.any2point_tokenizer[adapter_name] = tokenizer
        t_width = config.tokenizer_width
        self.any2point_proj[adapter_name] = nn.Linear(t_width, width) if width != t_width else nn.Identity()
        source_cls = get_module(model, recipe.cls_token) if recipe.cls_token else None
        self.any2point_cls[adapter_name] = ClsModule(width, source_cls)
        attn = nn.ModuleList(
            [LocalCellAttention(width, config.local_attn_dim, config.local_attn_heads) for _ in range(config.num_views)]
        )
        self.any2point_local_attn[adapter_name] = attn
        self.any2point_view_norm[adapter_name] = nn.ModuleList([nn.LayerNorm(width) for _ in range(config.num_views)])
        final = copy.deepcopy(get_module(model, recipe.final_norm)) if recipe.final_norm else nn.LayerNorm(width)
        final.eps = config.final_norm_eps
        self.any2point_final_norm[adapter_name] = final.float().requires_grad_(True)
        self.any2point_head[adapter_name] = PointHead(
            2 * width, list(config.head_hidden), config.num_labels, config.head_dropout
        )
        for module in (attn, self.any2point_proj[adapter_name], self.any2point_head[adapter_name]):
            for linear in module.modules():
                if isinstance(linear, nn.Linear):
                    nn.init.xavier_uniform_(linear.weight)
                    if linear.bias is not None:
                        nn.init.zeros_(linear.bias)

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, Any2PointLayerWrapper):
            target.update_layer(adapter_name, config)
            return
        recipe = get_recipe(self.model)
        new_module = Any2PointLayerWrapper(
            target, adapter_name, config, recipe.attach, self.model.config.hidden_size, self.__dict__["_a2p_shared"]
        )
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    # ---------------------------------------------------------------- adapters on / off / deleted
    tuner_adapter_dicts = (
        "any2point_tokenizer",
        "any2point_proj",
        "any2point_cls",
        "any2point_local_attn",
        "any2point_view_norm",
        "any2point_final_norm",
        "any2point_head",
    )

    def unload(self) -> nn.Module:
        """peft's, and the point entry (and the Trainer's loss flag) goes (peft does not know them)."""
        model = self.model
        model.__dict__.pop("forward", None)
        model.__dict__.pop("accepts_loss_kwargs", None)
        return super().unload()

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        if kwargs.get("adapter_names") is not None:
            raise ValueError(
                "Any2Point runs one adapter per forward (each adapter has its own 3D tokenizer, projections and "
                "head, and one position lookup per batch), so adapter_names= (one adapter per sample) is not "
                "supported: call model.set_adapter(name) and run each adapter's samples as their own batch"
            )
        yield

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        super()._enable_adapter_layers(enabled)
        self.__dict__["_a2p_disabled"] = not enabled

    # ---------------------------------------------------------------- the point forward
    def point_forward(
        self,
        points: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        """Classify point clouds through the source model's layers; `output_hidden_states` and `return_dict` as the
        source model's own forward takes them (default: its config's). Any other keyword is refused naming it."""
        name = self._point_adapter(kwargs)
        config = self.peft_config[name]
        tokenizer = self.any2point_tokenizer[name]
        validate_points(points, min_points=tokenizer.min_points)
        model, recipe = self.model, get_recipe(self.model)
        xyz = points[..., :3].to(next(tokenizer.parameters()).dtype)  # float64 / half points: the weights' dtype
        tokens, centres = tokenizer(xyz)
        tokens = self.any2point_proj[name](tokens)
        table = position_table(model, recipe, config.pe_table_length_1d)
        views = self._views(config, recipe, centres, table)
        state = self._point_state(name, config, centres, views)
        batch = tokens.shape[0]
        cls = self.any2point_cls[name]
        dtype = tokens.dtype
        x = torch.cat([cls.token.expand(batch, -1, -1).to(dtype), tokens], dim=1)
        pos = torch.cat([cls.position.expand(batch, -1, -1).to(dtype), views.pe.to(dtype)], dim=1)
        x = x + pos
        source_dtype = table.dtype  # the source layers run in their own dtype; the adapter's modules in theirs
        x, pos = x.to(source_dtype), pos.to(source_dtype)
        if recipe.input_norm:
            emb = model.embeddings
            x = emb.LayerNorm(x + emb.token_type_embeddings.weight[0])
        if output_hidden_states is None:
            output_hidden_states = bool(getattr(model.config, "output_hidden_states", False))
        x, hidden = self._source_layers(x, pos, state, config, recipe, output_hidden_states)
        x = self.any2point_final_norm[name](x.to(dtype))
        feature = torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1)
        logits = self.any2point_head[name](feature)
        loss = classification_loss(logits, labels, 0.0)
        output = SequenceClassifierOutput(loss=loss, logits=logits.to(source_dtype), hidden_states=hidden)
        if return_dict is None:
            return_dict = bool(getattr(model.config, "return_dict", True))
        return output if return_dict else output.to_tuple()

    def _point_adapter(self, kwargs: dict) -> str:
        """The one adapter a point forward runs; refuses keywords the forward does not take and disabled adapters."""
        unknown = unexpected_forward_kwargs(kwargs)
        if unknown:
            raise TypeError(
                f"the Any2Point point forward got unexpected keyword argument(s) {', '.join(unknown)}; it takes points, "
                "labels, output_hidden_states, return_dict (attention weights are not returned)"
            )
        if self.__dict__.get("_a2p_disabled", False):
            raise ValueError(
                "adapters are disabled: the point-cloud path of Any2Point does not exist without its adapter; call "
                "the model in its source modality, or leave disable_adapter()"
            )
        active = [n for n in self.active_adapters if n in self.any2point_tokenizer]
        if len(active) != 1:
            raise ValueError(f"Any2Point runs exactly one active adapter on points; active: {active}")
        return active[0]

    def _views(self, config, recipe, centres: torch.Tensor, table: torch.Tensor):
        """The projected views of the token centres onto the source's position table (1-D line or 2-D grid)."""
        with torch.no_grad():
            if recipe.layout == "1d":
                return pe_1d(centres, table, config.line_direction, config.num_views, config.cell_size)
            return pe_2d(
                centres,
                table,
                config.view_translation,
                config.num_views,
                recipe.canvas_pitch(self.model.config),
                config.cell_size,
                official_19x12=config.audio_grid_layout == "official_19x12",
                official_reshape=config.pe_2d_official_reshape,
            )

    def _source_layers(self, x, pos, state, config, recipe, output_hidden_states: bool):
        """The source model's layers on the point tokens -> (last output, hidden states or None: each layer's input,
        then the last output, as transformers' models give them)."""
        hidden = [x] if output_hidden_states else None
        for index, layer in enumerate(get_module(self.model, recipe.layers)):
            if index > 0 and config.pe_injection == "every_block":
                x = x + pos
            out = layer(x, None, any2point_state=state)
            x = out[0] if isinstance(out, tuple) else out
            if hidden is not None:
                hidden.append(x)
        return x, tuple(hidden) if hidden is not None else None

    @torch.compiler.disable  # voxel and cell ids are discrete choices: eager under torch.compile
    def _point_state(self, name: str, config, centres: torch.Tensor, views) -> Any2PointState:
        """This point forward's state for the wrapped layers (`Any2PointState`)."""
        batch, groups, _ = centres.shape
        offsets = torch.arange(batch, device=centres.device).view(1, batch, 1)
        cells = views.cells + offsets * views.num_cells
        # occupied cells compacted once per forward for every layer: pooling over [B * num_cells] rows would build
        # (and back-propagate through) tensors that are almost all empty cells
        compact = [torch.unique(c.reshape(-1), return_inverse=True) for c in cells]
        with torch.no_grad():
            rel = centres.float() - centres.float().amin(dim=1, keepdim=True)
            cell = torch.div(rel, config.voxel_size, rounding_mode="floor").long()
            sample = torch.arange(batch, device=centres.device).view(batch, 1, 1).expand(batch, groups, 1)
            keys = torch.cat([sample, cell], dim=-1).reshape(-1, 4)
            unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
        return Any2PointState(
            adapter=name,
            cells=cells,
            num_cells=views.num_cells,
            cell_rows=[inverse_rows for _, inverse_rows in compact],
            num_occupied=[int(occupied.shape[0]) for occupied, _ in compact],
            masks=[(c.unsqueeze(-1) == c.unsqueeze(-2)) for c in views.cells],
            voxels=inverse.reshape(batch, groups),
            num_voxels=int(unique.shape[0]),
        )
