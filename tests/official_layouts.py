"""Official checkpoint layouts as tables of key names and shapes (the released code's `state_dict()` names), filled
with seeded random tensors; and the hand-written maps from those names to this project's modules, which the tests
use to place the same tensors by hand. Nothing here runs or copies official code."""

from __future__ import annotations

import re

import torch

# -------------------------------------------------------------------------------------------------- table pieces


def linear(name: str, out: int, inp: int, bias: bool = True) -> list:
    return [(f"{name}.weight", (out, inp))] + ([(f"{name}.bias", (out,))] if bias else [])


def conv1d(name: str, out: int, inp: int, bias: bool = True) -> list:
    return [(f"{name}.weight", (out, inp, 1))] + ([(f"{name}.bias", (out,))] if bias else [])


def conv2d(name: str, out: int, inp: int) -> list:
    return [(f"{name}.weight", (out, inp, 1, 1)), (f"{name}.bias", (out,))]


def norm(name: str, width: int) -> list:
    return [(f"{name}.weight", (width,)), (f"{name}.bias", (width,))]


def batch_norm(name: str, width: int) -> list:
    return [
        *norm(name, width),
        (f"{name}.running_mean", (width,)),
        (f"{name}.running_var", (width,)),
        (f"{name}.num_batches_tracked", ()),
    ]


def head(name: str, inp: int, classes: int, bias: bool = True) -> list:
    """Linear-BN-ReLU-Drop-Linear-BN-ReLU-Drop-Linear (indices 0, 1, 4, 5, 8)."""
    return [
        *linear(f"{name}.0", 256, inp, bias),
        *batch_norm(f"{name}.1", 256),
        *linear(f"{name}.4", 256, 256, bias),
        *batch_norm(f"{name}.5", 256),
        *linear(f"{name}.8", classes, 256),
    ]


def mini_pointnet(prefix: str, width: int) -> list:
    return [
        *conv1d(f"{prefix}.first_conv.0", 128, 3),
        *batch_norm(f"{prefix}.first_conv.1", 128),
        *conv1d(f"{prefix}.first_conv.3", 256, 128),
        *conv1d(f"{prefix}.second_conv.0", 512, 512),
        *batch_norm(f"{prefix}.second_conv.1", 512),
        *conv1d(f"{prefix}.second_conv.3", width, 512),
    ]


def random_state(table: list, seed: int) -> dict[str, torch.Tensor]:
    """Seeded tensors for a table: norms' weights near 1, variances positive, counters integral, the rest small."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in table:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7 + seed)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif re.search(r"(norm\w*|ln_\w+)\.weight$", key):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    return state


def checkpoint(state: dict, wrapper: str = "base_model", ddp: bool = True) -> dict:
    """The official save format: {'base_model': state_dict, ...} with DataParallel's `module.` prefix."""
    return {wrapper: {("module." if ddp else "") + k: v for k, v in state.items()}, "epoch": 299}


# ------------------------------------------------------------------------------------------- point backbones


def point_mae_finetune(width: int, depth: int, classes: int) -> list:
    """`PointTransformer` fine-tuning layout of Point-MAE / ACT / ReCon (and PointGST's / Point-PEFT's models)."""
    rows = [("cls_token", (1, 1, width)), ("cls_pos", (1, 1, width)), *mini_pointnet("encoder", width)]
    rows += [*linear("pos_embed.0", 128, 3), *linear("pos_embed.2", width, 128)]
    for n in range(depth):
        b = f"blocks.blocks.{n}"
        rows += [*norm(f"{b}.norm1", width), *linear(f"{b}.attn.qkv", 3 * width, width, bias=False)]
        rows += [*linear(f"{b}.attn.proj", width, width), *norm(f"{b}.norm2", width)]
        rows += [*linear(f"{b}.mlp.fc1", 4 * width, width), *linear(f"{b}.mlp.fc2", width, 4 * width)]
    return rows + [*norm("norm", width), *head("cls_head_finetune", 2 * width, classes)]


def point_mae_pretrain(width: int, depth: int) -> list:
    """Point-MAE pre-training layout: `MAE_encoder.*` (no cls token) plus a one-block decoder."""
    rows = [(f"MAE_encoder.{k}", s) for k, s in point_mae_finetune(width, depth, 2) if "cls" not in k]
    rows += [("mask_token", (1, 1, width)), *linear("decoder_pos_embed.0", 128, 3)]
    return rows + [*norm("MAE_decoder.norm", width), *conv1d("increase_dim.0", 3 * 8, width)]


def point_gpt_finetune(width: int, depth: int, classes: int) -> list:
    rows = [("cls_token", (1, 1, width)), ("cls_pos", (1, 1, width)), ("sos_pos", (1, 1, width))]
    rows += [*mini_pointnet("encoder", width), ("blocks.sos", (width,))]
    for n in range(depth):
        b = f"blocks.layers.{n}"
        rows += [*norm(f"{b}.ln_1", width), *norm(f"{b}.ln_2", width)]
        rows += [(f"{b}.attn.in_proj_weight", (3 * width, width)), (f"{b}.attn.in_proj_bias", (3 * width,))]
        rows += [*linear(f"{b}.attn.out_proj", width, width)]
        rows += [*linear(f"{b}.mlp.0", 4 * width, width), *linear(f"{b}.mlp.2", width, 4 * width)]
    rows += [*norm("blocks.ln_f", width), *norm("blocks.cls_norm", width), *conv1d("blocks.increase_dim.0", 24, width)]
    rows += norm("norm", width)  # defined by the fine-tuning model, unused by its forward
    return rows + head("blocks.cls_head_finetune", 2 * width, classes)


def pcsa(block: str, width: int, rank: int) -> list:
    """PointGST's `gft_adapter` (PCSA) of one block."""
    a = f"{block}.gft_adapter"
    rows = [*linear(f"{a}.down", rank, width), *linear(f"{a}.up", width, rank), *linear(f"{a}.adapt1", rank, rank)]
    return rows + [*norm(f"{a}.norm_ly1", rank), *norm(f"{a}.norm_ly2", rank)]


def point_peft_block(block: str, width: int, prompts: int = 10) -> list:
    """Point-PEFT's per-block additions (`Block` of MAE/models/Point_Mask_Rev_FT_scan_cp.py)."""
    rows = [(f"{block}.prompt_embeddings", (prompts, width)), (f"{block}.ad_gate", (1,))]
    rows += [*linear(f"{block}.cp_adapter.ln1", 8, width), *linear(f"{block}.cp_adapter.ln2", width, 8)]
    for adapter in ("adapter", "adapter1"):
        rows += [*linear(f"{block}.{adapter}.ln1", 16, width), *linear(f"{block}.{adapter}.ln2", width, 16)]
    return rows + batch_norm(f"{block}.out_transform.0", width)


def point_peft_shared(width: int, prompts: int = 10) -> list:
    """The local attention and its norm shared by all blocks, and the prompt coordinates."""
    rows = [*linear("blocks.attn1.qkv", 3 * 18, width, bias=False), *linear("blocks.attn1.proj", width, 18)]
    return rows + [*norm("blocks.norm3", width), ("prompt_cor", (prompts, 3))]


_MAE_TO_OURS = [
    (r"^cls_token$", "point_transformer.cls_embedding.token"),
    (r"^cls_pos$", "point_transformer.cls_embedding.position"),
    (r"^encoder\.", "point_transformer.embeddings.patch_embeddings."),
    (r"^pos_embed\.", "point_transformer.embeddings.position_embeddings."),
    (r"^blocks\.blocks\.", "point_transformer.encoder.layers."),
    (r"^norm\.", "point_transformer.norm."),
    (r"^cls_head_finetune\.", "classifier."),
]
_GPT_TO_OURS = [
    (r"^cls_token$", "point_gpt.cls_embedding.token"),
    (r"^cls_pos$", "point_gpt.cls_embedding.position"),
    (r"^sos_pos$", "point_gpt.sos_position"),
    (r"^blocks\.sos$", "point_gpt.sos_token"),
    (r"^encoder\.", "point_gpt.embeddings.patch_embeddings."),
    (r"attn\.in_proj_weight$", "attn.qkv.weight"),
    (r"attn\.in_proj_bias$", "attn.qkv.bias"),
    (r"attn\.out_proj\.", "attn.proj."),
    (r"mlp\.0\.", "mlp.fc1."),
    (r"mlp\.2\.", "mlp.fc2."),
    (r"^blocks\.layers\.", "point_gpt.encoder.layers."),
    (r"^blocks\.ln_f\.", "point_gpt.encoder.ln_f."),
    (r"^blocks\.cls_norm\.", "cls_norm."),
    (r"^blocks\.cls_head_finetune\.", "classifier."),
]


def to_ours(state: dict, gpt: bool = False) -> dict:
    """The backbone part of an official state dict under this project's module names (placed by hand)."""
    out = {}
    for key, value in state.items():
        if re.search(r"gft_adapter|increase_dim|prompt|cp_adapter|adapter|out_transform|ad_gate|attn1|norm3", key) or (
            gpt and key.startswith("norm.")
        ):
            continue
        for pattern, repl in _GPT_TO_OURS if gpt else _MAE_TO_OURS:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------- Any2Point


def point_pn(prefix: str, width: int) -> list:
    """Any2Point's Point-PN tokenizer (`EncP`): raw embedding, 3 stages of residual 1x1 Conv2d blocks (2, 1, 1),
    widths width/4, /2, /1, hidden half the stage width, 32 in the last stage (`lastdim`)."""
    e = width // 8
    rows = [
        *conv1d(f"{prefix}raw_point_embed.net.0", e, 3, bias=False),
        *batch_norm(f"{prefix}raw_point_embed.net.1", e),
    ]
    for stage, (dim, hidden, blocks) in enumerate(((2 * e, e, 2), (4 * e, 2 * e, 1), (8 * e, 32, 1))):
        for j in range(blocks):
            b = f"{prefix}LGA_list.{stage}.linear2.{j}"
            rows += [*conv2d(f"{b}.net1.0", hidden, dim), *batch_norm(f"{b}.net1.1", hidden)]
            rows += [*conv2d(f"{b}.net2.0", dim, hidden), *batch_norm(f"{b}.net2.1", dim)]
    return rows


def any2point_adapter(
    layers: str, width: int, depth: int, rank: int, views: int, view_kind: str, tokens: int, attn_dim: int = 12
) -> list:
    """Everything Any2Point trains except the head, under the official names without the `encoder.` prefix:
    tokenizer, cls token / position, projection (tokenizer width != source width), per-view local attention and
    norm, per-layer bottleneck `adapter` and BatchNorms `out_transform_3d` / `out_transform_{1d,2d}`, final norm."""
    rows = point_pn("patch_embed.EncP.", tokens) + [("cls_token", (1, 1, width)), ("cls_pos", (1, 1, width))]
    rows += linear("proj", width, tokens) if tokens != width else []
    for v in range(views):
        rows += [*linear(f"attn1.{v}.qkv", 3 * attn_dim, width), *linear(f"attn1.{v}.proj", width, attn_dim)]
        rows += norm(f"norm3.{v}", width)
    for n in range(depth):
        b = f"{layers}.{n}"
        rows += [*linear(f"{b}.adapter.ln1", rank, width), *linear(f"{b}.adapter.ln2", width, rank)]
        rows += batch_norm(f"{b}.out_transform_3d.0", width)
        for v in range(views):
            rows += batch_norm(f"{b}.out_transform_{view_kind}.{v}.0", width)
    return rows + norm("norm", width)


def openpoints_head(width: int, classes: int) -> list:
    """openpoints' ClsHead (ScanObjectNN folders): linear blocks without bias before BN, dropout in between."""
    rows = [*linear("prediction.head.0.0", 256, 2 * width, bias=False), *batch_norm("prediction.head.0.1", 256)]
    rows += [*linear("prediction.head.2.0", 256, 256, bias=False), *batch_norm("prediction.head.2.1", 256)]
    return rows + linear("prediction.head.4.0", classes, 256)


def source_layers_official(source: torch.nn.Module, kind: str) -> dict:
    """The frozen source layers under the official Any2Point names (CLIP `resblocks` with fused in_proj; DINOv2 and
    ImageBind timm-style `blocks` with fused qkv), taken from an HF source model."""
    state, out = source.state_dict(), {}
    layers = {"clip": "encoder.layers", "dinov2": "encoder.layer", "audio": "encoder.layers"}[kind]
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith(layers + "."))
    for n in range(depth):
        p = f"{layers}.{n}."
        if kind == "clip":
            a = p + "self_attn."
            o = f"resblocks.{n}."
            out[o + "attn.in_proj_weight"] = torch.cat([state[f"{a}{q}_proj.weight"] for q in "qkv"])
            out[o + "attn.in_proj_bias"] = torch.cat([state[f"{a}{q}_proj.bias"] for q in "qkv"])
            pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2"}
            pairs.update({"mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"})
        else:
            a = p + "attention."
            o = f"blocks.{n}."
            out[o + "attn.qkv.weight"] = torch.cat([state[f"{a}{q}_proj.weight"] for q in "qkv"])
            out[o + "attn.qkv.bias"] = torch.cat([state[f"{a}{q}_proj.bias"] for q in "qkv"])
            pairs = {"norm1": "norm1", "attn.proj": "attention.o_proj", "norm2": "norm2", "mlp.fc1": "mlp.fc1"}
            pairs["mlp.fc2"] = "mlp.fc2"
            if kind == "dinov2":
                out[o + "ls1.gamma"] = state[p + "layer_scale1.lambda1"]
                out[o + "ls2.gamma"] = state[p + "layer_scale2.lambda1"]
        for theirs, ours in pairs.items():
            out[f"{o}{theirs}.weight"] = state[f"{p}{ours}.weight"]
            out[f"{o}{theirs}.bias"] = state[f"{p}{ours}.bias"]
    return {k: v.clone() for k, v in out.items()}
