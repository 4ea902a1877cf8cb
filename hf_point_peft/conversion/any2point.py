"""Official Any2Point fine-tuned checkpoints (Ivan-Tang-3D/Any2Point) -> an Any2Point adapter folder and its base.

Six official folders, two layouts. ScanObjectNN (`Any2Point_CLIP_Lang`, `Any2Point_DINOV2_Vision`,
`Any2Point_ImageBind_audio`, openpoints' `BaseCls`): `encoder.*` (the point ViT) and `prediction.head.*`, the head
reading `[max; cls]`. ModelNet40 (`Any2Point_clip_lang_modelnet`, `Any2Point_DINOV2_modelnet`,
`Any2Point_ImageBind_Modelnet`, Point-MAE style): the same parts at the top level and `cls_head_finetune.*` reading
`[cls; max]`, with biased linears before its BatchNorms. Either way the checkpoint holds the frozen source layers
(CLIP `resblocks`, DINOv2 / ImageBind `blocks`) but not the source's position table or embeddings, so the source
model the run started from is needed (`source`); its layers are checked equal to the checkpoint's.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..models.conversion import ConversionReport, official_sizes, resolve_sizes
from ..tuners import Any2PointConfig
from ..tuners.any2point.config import PAPER_PRESETS
from ..tuners.any2point.recipes import get_module, get_recipe
from .card import ConversionCard, MethodIdentity, checkpoint_name, write_conversion_card
from .common import ConvertedAdapter, OfficialState, write_converted

__all__ = ["any2point_deviations", "convert_any2point_checkpoint"]

IDENTITY = MethodIdentity(
    "any2point",
    "Any2Point",
    "a 3D tokenizer, virtual projections into the source model's position table and any-to-3D guided adapters "
    "(arXiv 2404.07989)",
    "Ivan-Tang-3D/Any2Point: models/backbone/pointvit.py, models/layers/attention.py (ScanObjectNN folders), "
    "models/Point_MAE.py (ModelNet40 folders), models/backbone/Point_PN.py",
)
_KINDS = {"clip_text_model": "clip", "dinov2": "dinov2", "imagebind_audio": "audio"}
_FOLDERS = {
    ("clip", "scanobjectnn"): "Any2Point_CLIP_Lang",
    ("dinov2", "scanobjectnn"): "Any2Point_DINOV2_Vision",
    ("audio", "scanobjectnn"): "Any2Point_ImageBind_audio",
    ("clip", "modelnet40"): "Any2Point_clip_lang_modelnet",
    ("dinov2", "modelnet40"): "Any2Point_DINOV2_modelnet",
    ("audio", "modelnet40"): "Any2Point_ImageBind_Modelnet",
}
# frozen source layer, official name -> HF name (`{qkv}`: the fused projection split in thirds, q / k / v)
_SOURCE_LAYERS = {
    "clip": {
        "attn.in_proj_weight": "self_attn.{qkv}_proj.weight",
        "attn.in_proj_bias": "self_attn.{qkv}_proj.bias",
        "attn.out_proj": "self_attn.out_proj",
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
    },
    "dinov2": {
        "norm1": "norm1",
        "attn.qkv.weight": "attention.{qkv}_proj.weight",
        "attn.qkv.bias": "attention.{qkv}_proj.bias",
        "attn.proj": "attention.o_proj",
        "ls1.gamma": "layer_scale1.lambda1",
        "norm2": "norm2",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "ls2.gamma": "layer_scale2.lambda1",
    },
    "audio": {
        "norm1": "norm1",
        "attn.qkv.weight": "attention.{qkv}_proj.weight",
        "attn.qkv.bias": "attention.{qkv}_proj.bias",
        "attn.proj": "attention.o_proj",
        "norm2": "norm2",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    },
}
_TOKENIZER = "patch_embed.EncP."


def any2point_deviations(kind: str, dataset: str) -> list[str]:
    """The deliberate deviations of a converted adapter from its official run (specs/any2point.md §11)."""
    out = [
        "Pure torch grouping (FPS from index 0, kNN, segment pooling) instead of pointnet2_ops / torch_scatter / "
        "torch_geometric: equal up to the order of exact ties.",
        "No drop path on the local-attention branch (training only; the official ModelNet40 2D / audio runs had it).",
        "The tokenizer's group-max normalisation adds 1e-5 to the divisor (the official code divides by 0 on flat "
        "groups)"
        + ("; its 'std' normalisation is per sample, not over the whole batch." if dataset == "modelnet40" else "."),
    ]
    if kind == "clip":
        out.append(
            "CLIP layers attend within each cloud; the official blocks ran nn.MultiheadAttention(batch_first=False) "
            "on batch-first tensors, which mixed the clouds of a batch: not reproducible, so logits differ."
        )
        out.append(
            "1D projection: the clean mapping of specs/any2point.md §5 (per sample and view, linear interpolation); "
            "the official one wrapped the minimum to 76.5, rescaled by the batch-wide range and gave zero PEs at "
            "integer positions."
        )
        if dataset == "scanobjectnn":
            out.append(
                "The PE is added before every layer once; the official ScanObjectNN code added it twice before "
                "the first layer (input and block 0)."
            )
    else:
        out.append(
            "Reproduced on purpose: the official 2D position lookup, whose reshape mixes the channels of other tokens "
            "into each token's PE (pe_2d_official_reshape=True, the value the adapter was trained with; the "
            "project's default is the intended lookup)"
            + (
                "; and ImageBind's official 19x12 grid reading (audio_grid_layout='official_19x12') without "
                "bias_k / bias_v (the written base has add_bias_kv=False)."
                if kind == "audio"
                else "."
            )
        )
    return out


def convert_any2point_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    *,
    source: str | os.PathLike | nn.Module | None = None,
    output_dir: str | os.PathLike | None = None,
    official_config: str | os.PathLike | Mapping | None = None,
    method_options: Mapping | None = None,
    adapter_name: str = "default",
    command: str | None = None,
) -> ConvertedAdapter:
    """Convert an official Any2Point fine-tuned checkpoint into an `Any2PointConfig` adapter on `source`, the HF
    model the run started from (a folder / Hub id or a loaded model: CLIP ViT-L/14 text as `CLIPTextModel`, DINOv2
    ViT-B/14 as `Dinov2Model`, ImageBind-Huge audio as `ImageBindAudioModel`).

    Read from the tensors: classes, head, adapter rank, views, local attention width, tokenizer width, depth.
    From the official run's scripts (`fine_tune.sh` flags, as `Any2PointConfig.from_paper`): projection, guidance
    and tokenizer settings. The official quirks the adapter was trained with are kept on (the scrambled 2D lookup,
    ImageBind's 19x12 grid, the final norm's eps); `method_options` override anything. With `output_dir`, writes
    `output_dir/adapter` and `output_dir/base` (the source as the official run used it)."""
    what = "converting the Any2Point checkpoint"
    if source is None:
        raise ValueError(
            f"{what}: the checkpoint holds the source's layers but not its position table or embeddings: pass "
            "--source-model with the model the run started from (Python: source=...): CLIP ViT-L/14 text, DINOv2 "
            "ViT-B/14 or the ImageBind-Huge audio trunk (convert_imagebind_audio)"
        )
    report = ConversionReport(source="any2point")
    state = OfficialState(checkpoint, ["encoder."], report)
    model = _load_source(source)
    kind, dataset, layer_prefix, folder = _identify(state, model, what)
    report.notes.append(f"layout of the official {folder} folder ({dataset})")
    model = _official_source(model, kind, report)
    _check_source_layers(state, model, kind, layer_prefix, what)

    options = _options(state, kind, dataset, folder, layer_prefix, official_config, method_options, report)
    head_order = options.pop("_head_order")
    config = Any2PointConfig(**options)
    clean_base = copy.deepcopy(model) if output_dir is not None else None
    from peft import get_peft_model

    peft_model = get_peft_model(model, config, adapter_name=adapter_name)
    _place(state, peft_model, config, kind, dataset, layer_prefix, head_order, adapter_name)
    state.finish(what)
    peft_model.eval()

    converted = ConvertedAdapter(peft_model, report, deviations=any2point_deviations(kind, dataset))
    if output_dir is None:
        return converted
    detail = f" ({folder}), on `{source if not isinstance(source, nn.Module) else type(source).__name__}`"
    return _write(converted, checkpoint, detail, output_dir, clean_base, command)


def _identify(state: OfficialState, model: nn.Module, what: str) -> tuple[str, str, str, str]:
    """(source kind, dataset, layer prefix, official folder) of a checkpoint, checked against the source model."""
    dataset = "scanobjectnn" if any(k.startswith("prediction.head.") for k in state) else "modelnet40"
    if dataset == "modelnet40" and "cls_head_finetune.0.weight" not in state:
        raise ValueError(f"{what}: neither `prediction.head.*` nor `cls_head_finetune.*`: not an Any2Point checkpoint")
    kind = _KINDS.get(model.config.model_type)
    if kind is None:
        raise ValueError(
            f"{what}: the official runs use CLIP text (clip_text_model), DINOv2 (dinov2) or ImageBind audio "
            f"(imagebind_audio); --source-model is a {model.config.model_type!r}"
        )
    found = "clip" if "resblocks.0.ln_1.weight" in state else "dinov2" if "blocks.0.ls1.gamma" in state else "audio"
    if found != kind:
        raise ValueError(
            f"{what}: the checkpoint's layers are {found}'s, but --source-model is a {model.config.model_type}"
        )
    return kind, dataset, "resblocks" if kind == "clip" else "blocks", _FOLDERS[(kind, dataset)]


def _write(converted, checkpoint, detail: str, output_dir, clean_base, command) -> ConvertedAdapter:
    """output_dir/adapter (with the conversion card) and output_dir/base."""
    out = Path(output_dir).name  # the card names the output folder, never a path of this machine
    load = (
        "from transformers import AutoModel\n\n"
        f"base = AutoModel.from_pretrained({out + '/base'!r})\n"
        f"model = PeftModel.from_pretrained(base, {out + '/adapter'!r}).eval()\n"
        "logits = model(points=torch.randn(1, 1024, 3)).logits"
    )
    card = ConversionCard(
        IDENTITY,
        checkpoint=checkpoint_name(checkpoint),
        checkpoint_detail=detail,
        load_code=load,
        deviations=converted.deviations,
        command=command,
    )
    return write_converted(converted, output_dir, clean_base, lambda f: write_conversion_card(f, card, converted))


def _load_source(source) -> nn.Module:
    if isinstance(source, nn.Module):
        return source
    from transformers import AutoConfig, AutoModel, CLIPTextModel

    if AutoConfig.from_pretrained(source).model_type == "clip":  # a whole CLIP model: its text tower
        return CLIPTextModel.from_pretrained(source)
    return AutoModel.from_pretrained(source)


def _official_source(model: nn.Module, kind: str, report) -> nn.Module:
    """The source as the official run used it: ImageBind audio without bias_k / bias_v (the official timm-style
    attention has none); the others unchanged."""
    if kind != "audio" or not model.config.add_bias_kv:
        return model
    config = copy.deepcopy(model.config)
    config.add_bias_kv = False
    plain = type(model)(config)
    own = model.state_dict()
    plain.load_state_dict({k: v for k, v in own.items() if not k.endswith(("bias_k", "bias_v"))}, strict=True)
    report.notes.append(
        "ImageBind audio: bias_k / bias_v of --source-model left out (the official Any2Point attention has none); the base "
        "is written with add_bias_kv=False"
    )
    return plain.eval()


def _source_targets(kind: str, n: int, layers: str) -> dict[str, list[tuple[str, int | None]]]:
    """Official layer key -> (HF key relative to the source model, third of a fused qkv or None)."""
    out = {}
    for official, ours in _SOURCE_LAYERS[kind].items():
        params = ("",) if official.endswith(("weight", "bias", "gamma")) else (".weight", ".bias")
        for param in params:
            thirds = list(enumerate("qkv")) if "{qkv}" in ours else [(None, "")]
            out[official + param] = [(f"{layers}.{n}.{ours.format(qkv=q)}{param}", third) for third, q in thirds]
    return out


def _check_source_layers(state: OfficialState, model: nn.Module, kind: str, prefix: str, what: str) -> None:
    """Every frozen source tensor of the checkpoint must be the source's: the adapter only computes what the
    official model computed on the source it was trained on."""
    recipe = get_recipe(model)
    own = model.state_dict()
    depth = len(get_module(model, recipe.layers))
    found = 1 + max(int(k.split(".")[1]) for k in state if k.startswith(f"{prefix}."))
    if found != depth:
        raise ValueError(f"{what}: the checkpoint has {found} layers, --source-model has {depth}")
    differ = []
    for n in range(depth):
        for official, targets in _source_targets(kind, n, recipe.layers).items():
            key = f"{prefix}.{n}.{official}"
            if key not in state:
                raise ValueError(f"{what}: the checkpoint lacks the frozen source tensor {key!r}")
            value = state[key]
            parts = value.chunk(3) if targets[0][1] is not None else [value]
            for (ours, _), part in zip(targets, parts):
                if not torch.equal(part.float(), own[ours].float()):
                    differ.append(key)
            state.used(key, " + ".join(t for t, _ in targets) + " (frozen source layer, equal to --source-model's)")
    if differ:
        raise ValueError(
            f"{what}: {len(set(differ))} frozen source tensors of the checkpoint differ from --source-model (e.g. "
            f"{sorted(set(differ))[:3]}): pass the model the official run started from"
        )


def _options(state, kind, dataset, folder, prefix, official_config, method_options, report) -> dict:
    """The config: what the tensors decide, the official yaml, the official run's settings and quirks."""
    head_key = "prediction.head.4.0.weight" if dataset == "scanobjectnn" else "cls_head_finetune.8.weight"
    views = sorted({int(k.split(".")[1]) for k in state if k.startswith("attn1.")})
    inferred = {
        "num_labels": state[head_key].shape[0],
        "adapter_rank": state[f"{prefix}.0.adapter.ln1.weight"].shape[0],
        "num_views": len(views),
        "local_attn_dim": state["attn1.0.qkv.weight"].shape[0] // 3,
        "tokenizer_width": state[f"{_TOKENIZER}LGA_list.2.linear2.0.net2.0.weight"].shape[0],
    }
    official = dict(official_sizes(official_config, ("num_labels", "adapter_dim", "knn_k", "local_attn_dim")))
    official.update(official_sizes(official_config, ("num_views", "final_norm_eps", "global_feat")))
    if "adapter_dim" in official:
        official["adapter_rank"] = official.pop("adapter_dim")
    sh = f"the official {folder}/fine_tune.sh"
    conventions = {name: (value, sh) for name, value in PAPER_PRESETS[(kind, dataset)].items()}
    conventions.update(
        tokenizer_groups=([512, 256, 128], "the official Point_PN_scan (input_points=1024 halved per stage)"),
        local_attn_heads=(6, "the official Attention1 (num_heads=6)"),
        bn_over_empty_cells=(True, "the official scatter_mean over every cell"),
        global_feat=("max,cls" if dataset == "scanobjectnn" else "cls,max", f"the official {folder} head input"),
        final_norm_eps=(1e-6 if dataset == "scanobjectnn" else 1e-5, f"the official {folder} final norm"),
    )
    if kind != "clip":
        conventions["pe_2d_official_reshape"] = (True, "the official 2D lookup the adapter was trained with")
    if kind == "audio":
        conventions["audio_grid_layout"] = ("official_19x12", "the official ImageBind canvas (19 x 12)")
    values = resolve_sizes(
        f"converting the Any2Point checkpoint ({folder})",
        inferred,
        explicit=method_options,
        official=official,
        conventions=conventions,
        report=report,
    )
    order = values.pop("global_feat")
    if order not in ("max,cls", "cls,max"):
        raise ValueError(f"the head reads {order!r}; the official runs read 'max,cls' or 'cls,max'")
    report.notes.append(
        f"head input order {order!r} -> this project's [cls; max]"
        + (": the first layer's input columns are swapped" if order == "max,cls" else "")
    )
    values["init_weights"] = False
    values["_head_order"] = order
    return values


def _place(state: OfficialState, peft_model, config, kind, dataset, prefix, order, name) -> None:
    tuner = peft_model.base_model
    width = peft_model.get_base_model().config.hidden_size
    tokenizer = tuner.any2point_tokenizer[name]
    rename = {"raw.0.weight": "raw_point_embed.net.0.weight"}
    rename.update({f"raw.1.{p}": f"raw_point_embed.net.1.{p}" for p in _BN})
    for ours in tokenizer.state_dict():
        match = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.*)", ours)
        if match:
            rename[ours] = f"LGA_list.{match.group(1)}.linear2.{match.group(2)}.{match.group(3)}"
    squeeze = {k: (lambda t: t.squeeze(-1)) for k in tokenizer.state_dict() if k.endswith("0.weight") and "stages" in k}
    state.place_module(_TOKENIZER, tokenizer, "any2point_tokenizer", rename=rename, transforms=squeeze)
    proj = tuner.any2point_proj[name]
    if isinstance(proj, nn.Linear):
        state.place_module("proj.", proj, "any2point_proj")
    cls = tuner.any2point_cls[name]
    state.place("cls_token", cls.token, "any2point_cls.token")
    state.place("cls_pos", cls.position, "any2point_cls.position")
    absent = {"qkv.bias": "the official local attention was built with qkv_bias=False"}
    for v in range(config.num_views):
        attn = tuner.any2point_local_attn[name][v]
        rename_attn = {"out.weight": "proj.weight", "out.bias": "proj.bias"}
        state.place_module(f"attn1.{v}.", attn, f"any2point_local_attn.{v}", rename=rename_attn, absent=absent)
        state.place_module(f"norm3.{v}.", tuner.any2point_view_norm[name][v], f"any2point_view_norm.{v}")
    state.place_module("norm.", tuner.any2point_final_norm[name], "any2point_final_norm")
    _place_head(state, tuner.any2point_head[name], dataset, order, width)
    view_kind = "1d" if kind == "clip" else "2d"
    layers = get_module(peft_model.get_base_model(), get_recipe(peft_model.get_base_model()).layers)
    for n, layer in enumerate(layers):
        block = f"{prefix}.{n}"
        bottleneck = layer.any2point_bottleneck[name]
        rename_b = {f"{o}.{p}": f"{t}.{p}" for t, o in (("ln1", "down"), ("ln2", "up")) for p in ("weight", "bias")}
        state.place_module(f"{block}.adapter.", bottleneck, f"layers.{n}.any2point_bottleneck", rename=rename_b)
        norms = layer.any2point_norms[name]
        state.place_module(f"{block}.out_transform_3d.0.", norms.voxel, f"layers.{n}.any2point_norms.voxel")
        for v in range(config.num_views):
            where = f"layers.{n}.any2point_norms.views.{v}"
            state.place_module(f"{block}.out_transform_{view_kind}.{v}.0.", norms.views[v], where)


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _place_head(state: OfficialState, head: nn.Module, dataset: str, order: str, width: int) -> None:
    """Our head: Linear(no bias)-BN-ReLU-Drop (x2) -Linear at indices 0, 1, 4, 5, 8. ScanObjectNN's openpoints head
    has no bias before its BatchNorms and reads [max; cls] (columns swapped to [cls; max]); the ModelNet40 head has
    biased linears, whose bias the following BatchNorm absorbs exactly (running mean minus bias)."""
    if dataset == "scanobjectnn":
        swap = (lambda w: torch.cat([w[:, width:], w[:, :width]], dim=1)) if order == "max,cls" else None
        state.place("prediction.head.0.0.weight", head[0].weight, "any2point_head.0.weight", swap)
        state.place_module("prediction.head.0.1.", head[1], "any2point_head.1")
        state.place("prediction.head.2.0.weight", head[4].weight, "any2point_head.4.weight")
        state.place_module("prediction.head.2.1.", head[5], "any2point_head.5")
        state.place_module("prediction.head.4.0.", head[8], "any2point_head.8")
        return
    for linear, bn in ((0, 1), (4, 5)):
        bias = state[f"cls_head_finetune.{linear}.bias"]
        state.place(f"cls_head_finetune.{linear}.weight", head[linear].weight, f"any2point_head.{linear}.weight")
        fold = {"running_mean": lambda m, b=bias: m - b}
        state.place_module(f"cls_head_finetune.{bn}.", head[bn], f"any2point_head.{bn}", transforms=fold)
        state.used(f"cls_head_finetune.{linear}.bias", f"folded into any2point_head.{bn}.running_mean (exact)")
    state.place_module("cls_head_finetune.8.", head[8], "any2point_head.8")
