"""Convert official Point-MAE / Point-BERT / ACT / ReCon checkpoints to the HF-format point transformer.

The official loaders strip `module.` and one model prefix (`MAE_encoder.`, `ACT_encoder.`, `transformer_q.`,
`base_model.`) and then load with `strict=False`, silently ignoring the rest. Here every key is mapped explicitly:
used, dropped with a stated reason, or reported as unrecognised, and shapes are checked before anything is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..conversion import (
    BACKBONE_SIZES,
    CheckpointTensors,
    ConversionReport,
    KeyRule,
    apply_rules,
    build_converted,
    classifier_sizes,
    export_official,
    head_conventions,
    load_official_state_dict,
    official_sizes,
    refuse_method_checkpoint,
    resolve_sizes,
    strip_prefixes,
)
from .configuration_point_transformer import PointTransformerConfig
from .modeling_point_transformer import PointTransformerForClassification, PointTransformerForMaskedModeling

__all__ = [
    "POINT_TRANSFORMER_SOURCES",
    "convert_point_transformer_checkpoint",
    "export_point_transformer_state_dict",
    "point_transformer_config_from_state_dict",
]

POINT_TRANSFORMER_SOURCES = ("point-mae", "point-bert", "act", "recon")

_PREFIXES = {
    "point-mae": ["MAE_encoder.", "base_model."],
    "point-bert": ["transformer_q.", "base_model."],
    "act": ["ACT_encoder.", "base_model."],
    "recon": ["MAE_encoder.", "base_model."],
}

_BLOCK_PART = r"norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2"
_CONV_PARAM = r"weight|bias|running_mean|running_var|num_batches_tracked"


def _encoder_rules(p: str) -> list[KeyRule]:
    """The fine-tuning encoder shared by all four sources; `p` is our prefix to the encoder module."""
    return [
        KeyRule("cls_token", p + "cls_embedding.token"),
        KeyRule("cls_pos", p + "cls_embedding.position"),
        KeyRule(
            "encoder.{conv:first_conv|second_conv}.{i:\\d+}.{param:" + _CONV_PARAM + "}",
            p + "embeddings.patch_embeddings.{conv}.{i}.{param}",
        ),
        KeyRule("reduce_dim.{param:weight|bias}", p + "embeddings.reduce_dim.{param}"),
        KeyRule("pos_embed.{i:0|2}.{param:weight|bias}", p + "embeddings.position_embeddings.{i}.{param}"),
        KeyRule(
            "blocks.blocks.{n:\\d+}.{part:" + _BLOCK_PART + "}.{param:weight|bias}",
            p + "encoder.layers.{n}.{part}.{param}",
        ),
        KeyRule("norm.{param:weight|bias}", p + "norm.{param}"),
    ]


def _decoder_rules() -> list[KeyRule]:
    """Point-MAE pre-training decoder -> PointTransformerForMaskedModeling."""
    return [
        KeyRule("mask_token", "decoder.mask_token"),
        KeyRule("decoder_pos_embed.{i:0|2}.{param:weight|bias}", "decoder.position_embeddings.{i}.{param}"),
        KeyRule(
            "MAE_decoder.blocks.{n:\\d+}.{part:" + _BLOCK_PART + "}.{param:weight|bias}",
            "decoder.encoder.layers.{n}.{part}.{param}",
        ),
        KeyRule("MAE_decoder.norm.{param:weight|bias}", "decoder.norm.{param}"),
        KeyRule("increase_dim.0.{param:weight|bias}", "reconstruction_head.{param}"),
    ]


def _drop_rules(source: str, task: str) -> list[KeyRule]:
    pretrain = "pre-training decoder (convert with task='masked-modeling' to keep it)"
    rules: list[KeyRule] = []
    if task == "classification" or source in ("point-bert", "act"):
        rules += [
            KeyRule("{name:MAE_decoder|ACT_decoder|decoder_pos_embed|increase_dim}.{rest}", None, pretrain),
            KeyRule("mask_token", None, pretrain),
        ]
    if source == "point-bert":
        rules += [
            KeyRule("cls_head.{rest}", None, "Point-BERT MoCo projection head (dropped by the official loader)"),
            KeyRule("lm_head.{rest}", None, "Point-BERT masked-token prediction head"),
            KeyRule("{name:transformer_k|dvae}.{rest}", None, "Point-BERT momentum encoder / dVAE tokenizer"),
            KeyRule("{name:queue|queue_ptr}", None, "Point-BERT MoCo queue"),
        ]
    if source == "act":
        rules += [
            KeyRule("{name:lm_head|cls_head|proj_head}.{rest}", None, "ACT pre-training heads"),
            KeyRule("dvae_tokenizer.{rest}", None, "ACT frozen teacher tokenizer"),
        ]
    if source == "recon":
        rules += [
            KeyRule("{name:img_token|text_token|img_pos|text_pos}", None, "ReCon cross-modal tokens"),
            KeyRule(
                "blocks.blocks.{n:\\d+}.{part:norm1_contrast|norm2_contrast|mlp_contrast|attn_contrast}.{rest}",
                None,
                "ReCon contrast branch (the single-token encoder, as PointGST loads it, has none)",
            ),
            KeyRule("{name:img_proj|text_proj|img_encoder|text_encoder}.{rest}", None, "ReCon teacher projections"),
            KeyRule(
                "cls_head_finetune.{rest}", None, "ReCon's fine-tuning head reads 4 tokens; this head reads cls + max"
            ),
        ]
    return rules


def _check_source(source: str) -> None:
    if source not in POINT_TRANSFORMER_SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {POINT_TRANSFORMER_SOURCES}")


def _rules(source: str, task: str) -> list[KeyRule]:
    _check_source(source)
    if task not in ("classification", "masked-modeling"):
        raise ValueError(f"task must be 'classification' or 'masked-modeling', got {task!r}")
    rules = _drop_rules(source, task) + _encoder_rules("point_transformer.")
    if task == "classification":
        rules.append(KeyRule("cls_head_finetune.{i:\\d+}.{param:" + _CONV_PARAM + "}", "classifier.{i}.{param}"))
    else:
        rules += _decoder_rules()
        rules.append(KeyRule("cls_head_finetune.{rest}", None, "fine-tuning head (not part of masked modeling)"))
    return rules


# sizes no tensor of a fine-tuned checkpoint holds -> the CLI flag that sets them
_REQUIRED = {
    "num_groups": "--num-groups",
    "group_size": "--group-size",
    "num_points": "--num-points",
    "num_attention_heads": "--num-heads",
}
_FROM_YAML = (*BACKBONE_SIZES, "encoder_dims", "drop_path_rate")


def point_transformer_config_from_state_dict(
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    task: str = "classification",
    official_config=None,
    report: ConversionReport | None = None,
    **overrides,
) -> PointTransformerConfig:
    """The architecture: what the tensor shapes decide (width, depth, MLP and mini-PointNet widths, head, group size
    of a pre-training decoder) is read from them; what they cannot decide (groups, group size, points, heads of an
    unusual width, classes of a new head) comes from `official_config` (the official yaml) or `overrides`, and is
    refused with the flags to pass when neither sets it. Nothing falls back silently."""
    _check_source(source)
    refuse_method_checkpoint(state, source)
    stripped = CheckpointTensors({key: state[orig] for key, orig in strip_prefixes(state, _PREFIXES[source]).items()})
    if "norm.weight" not in stripped:
        raise ValueError(
            f"not a {source} encoder checkpoint: no 'norm.weight' after stripping {_PREFIXES[source]} "
            f"(first keys: {list(state)[:5]})"
        )
    width = stripped["norm.weight"].shape[0]
    inferred = _inferred_sizes(stripped)
    defaults: dict = {"fps_skip_sq_norm": 1e-3}  # reproduce pointnet2_ops' FPS bit-exactly
    if source != "recon":  # ReCon's fine-tuning head reads 4 tokens: not this head (dropped)
        head = sorted((int(k.split(".")[1]), k) for k in stripped if k.startswith("cls_head_finetune."))
        inferred.update(classifier_sizes([stripped[k] for _, k in head if k.endswith(".weight")]))
    if source == "point-bert":  # the official Point-BERT fine-tuning head and loss
        defaults.update(classifier_hidden_sizes=[256], classifier_batch_norm=False, label_smoothing=0.2)
    required = dict(_REQUIRED)
    if task == "classification" and "num_labels" not in inferred:
        required["num_labels"] = "--num-labels"  # a new head: its classes are the user's choice
    if task != "classification":
        required.pop("num_points")
        required["decoder_num_attention_heads"] = ""  # no flag: the yaml's decoder_num_heads gives it
    values = resolve_sizes(
        f"converting the {source} checkpoint",
        inferred,
        explicit=overrides,
        official=official_sizes(official_config, _FROM_YAML),
        conventions=head_conventions(
            width, "num_attention_heads", *(("decoder_num_attention_heads",) if task != "classification" else ())
        ),
        required=required,
        report=report,
    )
    if task == "classification":  # a classifier has no decoder: its heads only have to divide the width
        values.setdefault("decoder_num_attention_heads", values["num_attention_heads"])
    if task != "classification" and "num_points" not in values:
        values["num_points"] = max(values["num_groups"], values["group_size"])
        if report is not None:
            report.notes.append("num_points set to max(num_groups, group_size): masked modeling reads any cloud size")
    return PointTransformerConfig(**{**defaults, **values})


def _inferred_sizes(stripped: Mapping[str, torch.Tensor]) -> dict:
    """What the encoder's (and a pre-training decoder's) tensor shapes decide."""
    inferred = {
        "hidden_size": stripped["norm.weight"].shape[0],
        "num_hidden_layers": 1 + max(int(k.split(".")[2]) for k in stripped if k.startswith("blocks.blocks.")),
        "intermediate_size": stripped["blocks.blocks.0.mlp.fc1.weight"].shape[0],
        "encoder_dims": stripped["encoder.second_conv.3.weight"].shape[0],
        "patch_first_channels": [
            stripped["encoder.first_conv.0.weight"].shape[0],
            stripped["encoder.first_conv.3.weight"].shape[0],
        ],
        "patch_second_channels": [stripped["encoder.second_conv.0.weight"].shape[0]],
        "num_channels": stripped["encoder.first_conv.0.weight"].shape[1],
        "qkv_bias": "blocks.blocks.0.attn.qkv.bias" in stripped,
    }
    if "increase_dim.0.weight" in stripped:
        inferred["group_size"] = stripped["increase_dim.0.weight"].shape[0] // 3
    decoder_ids = [int(k.split(".")[2]) for k in stripped if k.startswith("MAE_decoder.blocks.")]
    if decoder_ids:
        inferred["decoder_num_hidden_layers"] = 1 + max(decoder_ids)
    return inferred


def convert_point_transformer_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    source: str = "point-mae",
    *,
    task: str = "classification",
    output_dir: str | os.PathLike | None = None,
    official_config: str | os.PathLike | Mapping | None = None,
    **config_overrides,
) -> tuple[PointTransformerForClassification | PointTransformerForMaskedModeling, ConversionReport]:
    """Convert an official checkpoint (pre-trained or fine-tuned) into an HF model; optionally `save_pretrained`
    it (config.json + model.safetensors + conversion_report.txt) to `output_dir`.

    What the weights cannot tell comes from `official_config` (the official yaml, e.g.
    `cfgs/finetune_scan_hardest.yaml`) or `config_overrides` (e.g. `num_groups=128, group_size=32,
    num_points=2048` for ScanObjectNN, `num_labels=15` for a new head); without them the conversion is refused,
    naming what is missing. Returns the model and the report of what happened to every key.
    """
    state = load_official_state_dict(checkpoint)
    report = ConversionReport(source=source)
    config = point_transformer_config_from_state_dict(
        state, source, task=task, official_config=official_config, report=report, **config_overrides
    )
    mapping = apply_rules(strip_prefixes(state, _PREFIXES[source]), _rules(source, task), report)
    model_cls = PointTransformerForClassification if task == "classification" else PointTransformerForMaskedModeling
    return build_converted(model_cls, config, state, mapping, report, output_dir), report


def export_point_transformer_state_dict(
    model: PointTransformerForClassification | PointTransformerForMaskedModeling, source: str = "point-mae"
) -> dict[str, torch.Tensor]:
    """Our weights under the official key names of `source` (the fine-tuning layout, e.g. `blocks.blocks.0...`;
    decoder keys in the Point-MAE pre-training layout), e.g. to run them in the official code."""
    task = "classification" if isinstance(model, PointTransformerForClassification) else "masked-modeling"
    rules = [rule for rule in _rules(source, task) if rule.ours is not None]
    return export_official(model.state_dict(), rules)
