"""Official Point-PEFT fine-tuned checkpoints (Ivan-Tang-3D/Point-PEFT, `MAE/`) -> a Point-PEFT adapter folder and
its base model.

The official `PointTransformer_best` saves one state dict. Per block: the prompt tokens `prompt_embeddings` and
their enhancement adapter `cp_adapter` (created in all blocks, used in blocks 0-5), the MLP adapter `adapter`, the
output adapter `adapter1`, the geometry-aware BatchNorm `out_transform.0` and an unused gate `ad_gate`; shared: the
local attention `blocks.attn1`, its norm `blocks.norm3` and the prompt coordinates `prompt_cor`. Its runner also
trains the attention-projection, MLP and LayerNorm biases and the final norm (BitFit): this project keeps the base
pre-trained and gives the adapter the deltas, official minus pre-trained, so the pre-trained checkpoint is needed.
The memory bank is a separate file (`ckpts/train_f_pos_shape_scan.pt`, [C, N]) unless the checkpoint holds it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from ..models.conversion import official_sizes, read_tensor_file, resolve_sizes
from ..tuners import PointPromptConfig
from .card import ConversionCard, MethodIdentity, checkpoint_name
from .common import ConvertedAdapter, OfficialState, PointMethodConversion

__all__ = ["POINT_PROMPT_DEVIATIONS", "convert_point_prompt_checkpoint"]

IDENTITY = MethodIdentity(
    "point_prompt",
    "Point-PEFT",
    "point-prior prompts from a memory bank and geometry-aware adapters (arXiv 2310.03059)",
    "Ivan-Tang-3D/Point-PEFT: MAE/models/Point_Mask_Rev_FT_scan_cp.py, MAE/models/adapter_super.py",
)
_METHOD_KEY = re.compile(
    r"blocks\.blocks\.\d+\.(cp_adapter|adapter|adapter1|out_transform|prompt_embeddings|ad_gate)([.].*)?"
    r"|blocks\.(attn1|norm3)\..*|prompt_cor|train_images_features_agg"
)
_BANK_KEY = "train_images_features_agg"
# official per-block bias (BitFit) -> our BiasDeltas field
_TUNED_BIASES = {"attn.proj.bias": "proj", "mlp.fc1.bias": "fc1", "mlp.fc2.bias": "fc2"}
_TUNED_BIASES.update({"norm1.bias": "norm1", "norm2.bias": "norm2"})
_BOTTLENECK = {"ln1": "down", "ln2": "up"}

POINT_PROMPT_DEVIATIONS = [
    "Prompted blocks (0-5): the geometry-aware adapter's FPS and kNN run per sample over [prompt coordinates; token "
    "centres], rows aligned with [prompts; tokens], propagating to the true token centres. The official code "
    "indexes the prompt+token rows with neighbourhoods of centres re-sampled from [prompt coordinates; raw points], "
    "which mismatches rows and reaches into other samples (specs/point_prompt.md §6.3). Unprompted blocks match.",
    "The memory-bank query is this backbone's own frozen forward (patch tokens, its own grouping), not a separate "
    "64x32 model copy; similarities are true cosines (bank rows normalised too; the official code normalised only "
    "the query); the top-K gather uses tensor indexing.",
]


def convert_point_prompt_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    *,
    pretrained: str | os.PathLike | Mapping | None = None,
    memory_bank: str | os.PathLike | torch.Tensor | None = None,
    output_dir: str | os.PathLike | None = None,
    official_config: str | os.PathLike | Mapping | None = None,
    method_options: Mapping | None = None,
    adapter_name: str = "default",
    command: str | None = None,
    **backbone_overrides,
) -> ConvertedAdapter:
    """Convert an official Point-PEFT fine-tuned checkpoint into a `PointPromptConfig` adapter.

    `pretrained` (required): the pre-trained checkpoint it was fine-tuned from (the base gets its biases and
    BatchNorm statistics, the adapter the bias deltas; every frozen tensor is checked against it). `memory_bank`:
    the official bank file ([C, N] as `train_f_pos_shape_scan.pt`) when the checkpoint holds none; without a bank
    the adapter is written without one and `build_memory_bank` must fill it before use (the report says so). Sizes
    as for the other converters: `official_config` (the run's `cfgs/finetune_*.yaml`) or the size arguments."""
    job = PointMethodConversion(checkpoint, "point-prompt", "converting the Point-PEFT checkpoint")
    state, report, what = job.state, job.report, job.what
    method_keys = {k for k in state if _METHOD_KEY.fullmatch(k)}
    _check_checkpoint(state, method_keys, pretrained, what)
    depth = max(int(k.split(".")[2]) for k in state if k.startswith("blocks.blocks.")) + 1
    tuned = [f"point_transformer.encoder.layers.{n}.{b}" for n in range(depth) for b in _TUNED_BIASES]
    tuned += ["point_transformer.norm.weight", "point_transformer.norm.bias"]
    base = job.base(method_keys, False, official_config, backbone_overrides, pretrained, tuned)
    bank = _bank(state, memory_bank, base.config.hidden_size, report)
    options = _sizes(state, base.config, official_config, method_options, report, what)
    config = PointPromptConfig(**options, bank_size=None if bank is None else len(bank))
    model = job.inject(config, adapter_name, keep_base=output_dir is not None)
    _place_all(state, model, config, adapter_name, depth, bank, _Deltas(job))

    deviations = list(POINT_PROMPT_DEVIATIONS)
    if bank is None:
        deviations.append(
            "No memory bank was converted (none in the checkpoint, no --memory-bank): call "
            "hf_point_peft.build_memory_bank(model, train_split) before use; the prompts' enhancement needs it."
        )
    card = ConversionCard(
        IDENTITY,
        checkpoint=checkpoint_name(checkpoint),
        checkpoint_detail=f", fine-tuned from `{checkpoint_name(pretrained)}`",
        command=command,
    )
    return job.complete(adapter_name, deviations, output_dir, card)


def _check_checkpoint(state, method_keys: set[str], pretrained, what: str) -> None:
    """A Point-PEFT checkpoint of the Point-MAE family, with the pre-trained checkpoint it started from."""
    if not any(k.endswith("prompt_embeddings") for k in method_keys):
        raise ValueError(f"{what}: no prompt_embeddings tensors: it is not a Point-PEFT fine-tuned checkpoint")
    if "blocks.sos" in state:
        raise ValueError(f"{what}: the official Point-PEFT code fine-tunes the Point-MAE family only, not PointGPT")
    if pretrained is None:
        raise ValueError(
            f"{what}: Point-PEFT tunes the backbone's biases and final norm, so the base must be the pre-trained "
            "model and the adapter the deltas: pass --pretrained with the pre-trained checkpoint it was fine-tuned "
            "from (Python: pretrained=...)"
        )


def _place_all(state, model, config, adapter_name: str, depth: int, bank, deltas) -> None:
    """Every official tensor into the adapter: blocks, final-norm deltas, geometry modules, prompt coordinates, bank."""
    tuner, encoder = model.base_model, model.get_base_model().point_transformer
    for n in range(depth):
        _place_block(state, encoder.encoder.layers[n], n, config, adapter_name, deltas)
    final = encoder.norm.point_prompt_norm[adapter_name]
    for param in ("weight", "bias"):
        deltas.place(getattr(final, param), f"point_transformer.norm.{param}")
    geometry = tuner.point_prompt_geometry[adapter_name]
    state.place_module("blocks.norm3.", geometry.norm, "point_prompt_geometry.norm")
    rename = {"out.weight": "proj.weight", "out.bias": "proj.bias"}
    state.place_module("blocks.attn1.", geometry.attn, "point_prompt_geometry.attn", rename=rename)
    state.place("prompt_cor", tuner.point_prompt_coords[adapter_name], "point_prompt_coords")
    if bank is not None:
        target = tuner.point_prompt_bank[adapter_name]
        with torch.no_grad():
            target.copy_(bank.to(target.dtype))


class _Deltas:
    """Writes official-minus-pre-trained deltas of the tensors the official run tuned in place, and says so."""

    def __init__(self, job: PointMethodConversion):
        self.job = job

    def place(self, target: torch.Tensor, ours: str) -> None:
        job = self.job
        with torch.no_grad():
            target.copy_(job.fine_tuned[ours] - job.pretrained[ours])
        job.report.used[job.ours_to_official[ours]] = (
            f"{ours}: the base keeps the pre-trained value, the adapter official minus pre-trained"
        )


def _sizes(state: OfficialState, config, official_config, method_options, report, what: str) -> dict:
    """What the tensors decide (prompt count, adapter ranks, local attention width), what the official code fixes
    (prompts in blocks 0-5, the local attention's heads = the backbone's, anchors and neighbours = half the groups
    and half the group size, K = prompts - 2) and the yaml's adapter_dim, checked against each other."""
    first = "blocks.blocks.0"
    inferred = {
        "num_prompt_tokens": state[f"{first}.prompt_embeddings"].shape[0],
        "cp_adapter_rank": state[f"{first}.cp_adapter.ln1.weight"].shape[0],
        "mlp_adapter_rank": state[f"{first}.adapter.ln1.weight"].shape[0],
        "out_adapter_rank": state[f"{first}.adapter1.ln1.weight"].shape[0],
        "ga_attn_dim": state["blocks.attn1.qkv.weight"].shape[0] // 3,
    }
    official = official_sizes(official_config, ("adapter_dim",))
    if "adapter_dim" in official:  # the official yaml sizes both bottlenecks with one adapter_dim
        official["mlp_adapter_rank"] = official["out_adapter_rank"] = official.pop("adapter_dim")
    code = "the official code"
    conventions = {
        "prompt_layers": (min(6, config.num_hidden_layers), f"{code} (prompts while layer_id <= 5)"),
        "ga_attn_heads": (config.num_attention_heads, f"{code} (Attention1 takes the backbone's num_heads)"),
        "ga_num_anchors": (config.num_groups // 2, f"{code} (Group(num_group / 2, group_size / 2))"),
        "ga_k": (config.group_size // 2, f"{code} (Group(num_group / 2, group_size / 2))"),
        "bank_topk": (inferred["num_prompt_tokens"] - 2, f"{code} (K = prompt count - 2)"),
    }
    return resolve_sizes(
        what, inferred, explicit=method_options, official=official, conventions=conventions, report=report
    )


def _bank(state: OfficialState, memory_bank, width: int, report) -> torch.Tensor | None:
    """The memory bank as rows [N, C]: from the checkpoint, else from the official bank file ([C, N])."""
    if _BANK_KEY in state:
        bank = state.used(_BANK_KEY, "point_prompt_bank (rows = columns of the official [C, N] tensor)")
        origin = "the checkpoint"
    elif memory_bank is not None:
        bank = memory_bank if isinstance(memory_bank, torch.Tensor) else _load_tensor(memory_bank)
        origin = str(memory_bank) if not isinstance(memory_bank, torch.Tensor) else "the given tensor"
    else:
        report.notes.append("no memory bank (none in the checkpoint, no --memory-bank): build it before use")
        return None
    if bank.dim() != 2 or bank.shape[0] != width:
        raise ValueError(
            f"the memory bank from {origin} has shape {tuple(bank.shape)}; the official bank is [C, N] with C = "
            f"{width}, the backbone's width"
        )
    report.notes.append(f"memory bank: {bank.shape[1]} rows of width {width} from {origin}")
    return bank.T.contiguous().float()


def _load_tensor(path) -> torch.Tensor:
    obj = read_tensor_file(path, "memory bank")
    if isinstance(obj, Mapping):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        obj = tensors[0] if len(tensors) == 1 else obj
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{path} holds no single tensor; the official memory bank file is one [C, N] tensor")
    return obj


def _place_block(state: OfficialState, layer, n: int, config, name: str, deltas: _Deltas) -> None:
    block = f"blocks.blocks.{n}"
    if n < config.prompt_layers:
        tokens = layer.point_prompt_tokens[name]
        state.place(f"{block}.prompt_embeddings", tokens.embedding, f"layers.{n}.point_prompt_tokens.embedding")
        where = f"layers.{n}.point_prompt_tokens.enhance"
        state.place_module(f"{block}.cp_adapter.", tokens.enhance, where, rename=_renames())
    else:
        reason = "created in every block by the official code, used only in blocks 0-5 (layer_id <= 5)"
        for key in [k for k in state if k.startswith((f"{block}.prompt_embeddings", f"{block}.cp_adapter."))]:
            state.drop(key, reason)
    for official, ours in (("adapter", "point_prompt_mlp"), ("adapter1", "point_prompt_out")):
        state.place_module(f"{block}.{official}.", getattr(layer, ours)[name], f"layers.{n}.{ours}", rename=_renames())
    where = f"layers.{n}.point_prompt_ga_norm"
    state.place_module(f"{block}.out_transform.0.", layer.point_prompt_ga_norm[name], where)
    if f"{block}.ad_gate" in state:
        state.drop(f"{block}.ad_gate", "a gate the official block creates and trains but never uses in its forward")
    for official, field in _TUNED_BIASES.items():
        deltas.place(getattr(layer.point_prompt_bias[name], field), f"point_transformer.encoder.layers.{n}.{official}")


def _renames() -> dict[str, str]:
    """Our bottleneck's `down` / `up` are the official adapters' `ln1` / `ln2`."""
    return {f"{ours}.{p}": f"{theirs}.{p}" for theirs, ours in _BOTTLENECK.items() for p in ("weight", "bias")}
