"""Convert the audio part of the official ImageBind checkpoint (`imagebind_huge.pth`) to the HF-format port.

`imagebind_huge.pth` is a bare state dict of the whole six-modality `ImageBindModel`. Every audio key is mapped
explicitly; the keys of the other modalities are dropped with the reason "other modality: <name>"; anything else is
reported as unrecognised. Shapes are checked before anything is loaded.

Key names confirmed against facebookresearch/ImageBind (`imagebind/models/imagebind_model.py`,
`multimodal_preprocessors.py`, `transformer.py`, `helpers.py`):

* the audio stem is `PatchEmbedGeneric(proj_stem=[nn.Conv2d(...)], norm_layer=nn.LayerNorm(768))`, passed to
  `AudioPreprocessor` as its `rgbt_stem`. `PatchEmbedGeneric` wraps `proj_stem` in an `nn.Sequential` only when it
  holds more than one module ("special case to be able to load pre-trained models that were trained with a standard
  stem"); the audio stem holds the conv alone, so its key is `rgbt_stem.proj.weight` (no `.0` / `.1` index; the vision
  stem, PadIm2Video + Conv3d, is the one with `proj.1.weight`). The LayerNorm keeps torch's default eps 1e-5.
* `cls_token` and `pos_embedding_helper.pos_embed` (learnable `SpatioTemporalPosEmbeddingHelper`) sit on the
  preprocessor.
* the trunk is a `SimpleTransformer` whose `blocks` is an `nn.Sequential` of `BlockWithMasking` (`attn`, `norm_1`,
  `norm_2`, `mlp.fc1`, `mlp.fc2`, LayerNorm eps 1e-6, no LayerScale); `attn` is a subclass of
  `torch.nn.MultiheadAttention(bias=True, add_bias_kv=True)`: `in_proj_weight` / `in_proj_bias` (q, k, v stacked in
  that order), `bias_k`, `bias_v`, `out_proj.*`. Its `pre_transformer_layer` is Identity + a rearrange (no LN, no
  weights) for audio.
* the head is `nn.Sequential(LayerNorm(eps 1e-6), SelectElement(0), Linear(768, 1024, bias=False))`: keys `0.*` and
  `2.weight`; the postprocessor is `nn.Sequential(Normalize(-1), LearnableLogitScaling(20.0, learnable=False))`, whose
  `log_logit_scale` is a 0-d buffer: key `1.log_logit_scale`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

import torch

from ..conversion import (
    ConversionReport,
    KeyRule,
    apply_rules,
    export_official,
    load_converted_weights,
    load_official_state_dict,
    save_converted,
    strip_prefixes,
)
from .configuration_imagebind_audio import ImageBindAudioConfig
from .modeling_imagebind_audio import ImageBindAudioModel, ImageBindAudioModelWithProjection

__all__ = [
    "convert_imagebind_audio_checkpoint",
    "export_imagebind_audio_state_dict",
    "imagebind_audio_config_from_state_dict",
]

_PRE = "modality_preprocessors.audio."
_TRUNK = "modality_trunks.audio.blocks."
_HEAD = "modality_heads.audio."
_POST = "modality_postprocessors.audio."
_OTHER_MODALITIES = ("vision", "text", "depth", "thermal", "imu")

# the fused in-projection: split in thirds (q, k, v) on import, concatenated on export
_IN_PROJ = re.compile(re.escape(_TRUNK) + r"(?P<n>\d+)\.attn\.in_proj_(?P<param>weight|bias)")
_QKV = ("q", "k", "v")

_RULES = [
    KeyRule(_PRE + "rgbt_stem.proj.weight", "embeddings.patch_embeddings.projection.weight"),
    KeyRule(_PRE + "rgbt_stem.norm_layer.{param:weight|bias}", "embeddings.patch_norm.{param}"),
    KeyRule(_PRE + "cls_token", "embeddings.cls_token"),
    KeyRule(_PRE + "pos_embedding_helper.pos_embed", "embeddings.position_embeddings"),
    KeyRule(_TRUNK + "{n:\\d+}.norm_1.{param:weight|bias}", "encoder.layers.{n}.norm1.{param}"),
    KeyRule(_TRUNK + "{n:\\d+}.norm_2.{param:weight|bias}", "encoder.layers.{n}.norm2.{param}"),
    KeyRule(_TRUNK + "{n:\\d+}.attn.{bias:bias_k|bias_v}", "encoder.layers.{n}.attention.{bias}"),
    KeyRule(_TRUNK + "{n:\\d+}.attn.out_proj.{param:weight|bias}", "encoder.layers.{n}.attention.o_proj.{param}"),
    KeyRule(_TRUNK + "{n:\\d+}.mlp.{fc:fc1|fc2}.{param:weight|bias}", "encoder.layers.{n}.mlp.{fc}.{param}"),
    KeyRule(_HEAD + "0.{param:weight|bias}", "layernorm.{param}"),
    KeyRule(_HEAD + "2.weight", "projection.weight"),
    KeyRule(_POST + "1.log_logit_scale", "logit_scale"),
]

_DROP_RULES = [
    KeyRule(
        "modality_{part:preprocessors|trunks|heads|postprocessors}." + modality + ".{rest}",
        None,
        f"other modality: {modality}",
    )
    for modality in _OTHER_MODALITIES
] + [
    KeyRule(
        "modality_{part:preprocessors|trunks|heads|postprocessors}.{modality:(?!audio\\.)[^.]+}.{rest}",
        None,
        "other modality",
    )
]

_DEFAULT_HEADS = {384: 6, 512: 8, 768: 12, 1024: 16, 1280: 16}


def imagebind_audio_config_from_state_dict(state: Mapping[str, torch.Tensor], **overrides) -> ImageBindAudioConfig:
    """Infer the audio trunk from tensor shapes (width, depth, MLP width, kernel, projection width, bias_kv, logit
    scale); what shapes cannot tell (heads, mel bins, frames, stride, drop path) comes from `overrides` or the
    ImageBind-Huge defaults. The position table's length is checked against the grid when the weights are loaded."""
    stripped = {key: state[original] for key, original in strip_prefixes(state, []).items()}
    anchor = _TRUNK + "0.norm_1.weight"
    if anchor not in stripped:
        raise ValueError(
            f"not an ImageBind checkpoint with an audio trunk: no {anchor!r} (first keys: {list(state)[:5]})"
        )
    width = stripped[anchor].shape[0]
    blocks = [int(m.group(1)) for k in stripped if (m := re.match(re.escape(_TRUNK) + r"(\d+)\.", k))]
    kwargs = {
        "hidden_size": width,
        "num_hidden_layers": 1 + max(blocks),
        "num_attention_heads": _DEFAULT_HEADS.get(width, max(1, width // 64)),
        "add_bias_kv": _TRUNK + "0.attn.bias_k" in stripped,
    }
    fc1 = stripped.get(_TRUNK + "0.mlp.fc1.weight")
    if fc1 is not None:
        kwargs["intermediate_size"] = fc1.shape[0]
    conv = stripped.get(_PRE + "rgbt_stem.proj.weight")
    if conv is not None and conv.dim() == 4:
        kwargs["patch_size"] = conv.shape[-1]
    projection = stripped.get(_HEAD + "2.weight")
    if projection is not None:
        kwargs["projection_dim"] = projection.shape[0]
    log_scale = stripped.get(_POST + "1.log_logit_scale")
    if log_scale is not None and log_scale.numel() == 1:
        kwargs["logit_scale"] = math.exp(float(log_scale))
    kwargs.update(overrides)
    return ImageBindAudioConfig(**kwargs)


def _split_in_proj(
    state: Mapping[str, torch.Tensor], stripped: Mapping[str, str], config: ImageBindAudioConfig
) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, str]]:
    """Split every `blocks.N.attn.in_proj_{weight,bias}` into q / k / v thirds.

    Returns (tensors under pseudo keys `<official key>[q]` ..., {our key: pseudo key}, the remaining stripped keys).
    Refuses a fused tensor whose shape is not (3C, C) / (3C,), naming the key and both shapes."""
    width = config.hidden_size
    parts: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    rest: dict[str, str] = {}
    for key, original in stripped.items():
        match = _IN_PROJ.fullmatch(key)
        if match is None:
            rest[key] = original
            continue
        tensor = state[original]
        expected = (3 * width, width) if match["param"] == "weight" else (3 * width,)
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"checkpoint tensor {original!r} has shape {tuple(tensor.shape)} but the model expects {expected} "
                f"(q, k, v projections of width {width} stacked); the checkpoint does not fit this configuration"
            )
        for name, part in zip(_QKV, tensor.chunk(3, dim=0)):
            pseudo = f"{original}[{name}]"
            parts[pseudo] = part
            mapping[f"encoder.layers.{match['n']}.attention.{name}_proj.{match['param']}"] = pseudo
    return parts, mapping, rest


def convert_imagebind_audio_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    *,
    output_dir: str | os.PathLike | None = None,
    **config_overrides,
) -> tuple[ImageBindAudioModelWithProjection, ConversionReport]:
    """Convert the audio trunk, head and postprocessor of an official ImageBind checkpoint (a path to
    `imagebind_huge.pth`, read with `torch.load(weights_only=True)`, or a state dict, bare or under `model` /
    `state_dict`) into an [`ImageBindAudioModelWithProjection`]; optionally `save_pretrained` it (config.json +
    model.safetensors + conversion_report.txt) to `output_dir`.

    `config_overrides` set what the weights cannot tell (`num_attention_heads`, `num_mel_bins`, `target_length`,
    `patch_stride`, `drop_path_rate`). Returns the model (in eval mode) and the report of what happened to every key.
    """
    state = load_official_state_dict(checkpoint)
    config = imagebind_audio_config_from_state_dict(state, **config_overrides)
    report = ConversionReport(source="ImageBind (audio)")
    stripped = strip_prefixes(state, [])
    parts, mapping, rest = _split_in_proj(state, stripped, config)
    for target, original in apply_rules(rest, _DROP_RULES + _RULES, report).items():
        if target in mapping:
            raise ValueError(f"checkpoint keys {mapping[target]!r} and {original!r} both map to {target!r}")
        mapping[target] = original
    model = ImageBindAudioModelWithProjection(config)
    load_converted_weights(model, {**state, **parts}, mapping, report)
    _merge_pseudo_keys(report)
    model.eval()
    if output_dir is not None:
        save_converted(model, report, output_dir)
    return model, report


def _merge_pseudo_keys(report: ConversionReport) -> None:
    """Fold the `<key>[q]` / `[k]` / `[v]` pseudo keys of the split in-projections back into the official key."""
    used: dict[str, str] = {}
    for official, ours in report.used.items():
        if official.endswith(("[q]", "[k]", "[v]")):
            base, name = official[:-3], official[-2]
            previous = used.get(base)
            ours_all = ours.replace(f".{name}_proj.", ".{q,k,v}_proj.")
            used[base] = ours_all if previous is None else previous
        else:
            used[official] = ours
    report.used = used
    unrecognised: list[str] = []
    for key in report.unrecognised:
        key = key[:-3] if key.endswith(("[q]", "[k]", "[v]")) else key
        if key not in unrecognised:
            unrecognised.append(key)
    report.unrecognised = unrecognised


def export_imagebind_audio_state_dict(
    model: ImageBindAudioModel | ImageBindAudioModelWithProjection,
) -> dict[str, torch.Tensor]:
    """Our weights under the official `ImageBindModel` key names (audio keys only, q / k / v concatenated back into
    `in_proj_weight` / `in_proj_bias`), e.g. to load them into the official model with `strict=False`."""
    state = dict(model.state_dict())
    out: dict[str, torch.Tensor] = {}
    for n in range(model.config.num_hidden_layers):
        for param in ("weight", "bias"):
            fused = [state.pop(f"encoder.layers.{n}.attention.{name}_proj.{param}") for name in _QKV]
            out[f"{_TRUNK}{n}.attn.in_proj_{param}"] = torch.cat(fused, dim=0)
    out.update(export_official(state, _RULES))
    return out
