"""Convert official PointGPT checkpoints (pre-trained `GPT_Transformer.*` or fine-tuned) to the HF-format PointGPT.

The official loader strips `module.`, `GPT_Transformer.` and `base_model.`, deletes `cls_head_finetune` and loads
with `strict=False`. Here every key is mapped explicitly (the fine-tuned head is kept when its shape fits), dropped
with a stated reason, or reported as unrecognised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from .. import conversion
from ..conversion import ConversionReport, KeyRule
from .configuration_point_gpt import PointGPTConfig
from .modeling_point_gpt import PointGPTForClassification

__all__ = ["convert_point_gpt_checkpoint", "export_point_gpt_state_dict", "point_gpt_config_from_state_dict"]

_PREFIXES = ["GPT_Transformer.", "base_model."]
_PARAM = r"weight|bias|running_mean|running_var|num_batches_tracked"


def _stack_rules(official: str, ours: str) -> list[KeyRule]:
    """GPT blocks (`nn.MultiheadAttention` + Sequential MLP) -> our fused-qkv blocks, and the stack's `ln_f`."""
    layer = official + ".layers.{n:\\d+}."
    target = ours + ".layers.{n}."
    return [
        KeyRule(layer + "{ln:ln_1|ln_2}.{param:weight|bias}", target + "{ln}.{param}"),
        KeyRule(layer + "attn.in_proj_weight", target + "attn.qkv.weight"),
        KeyRule(layer + "attn.in_proj_bias", target + "attn.qkv.bias"),
        KeyRule(layer + "attn.out_proj.{param:weight|bias}", target + "attn.proj.{param}"),
        KeyRule(layer + "mlp.0.{param:weight|bias}", target + "mlp.fc1.{param}"),
        KeyRule(layer + "mlp.2.{param:weight|bias}", target + "mlp.fc2.{param}"),
        KeyRule(official + ".ln_f.{param:weight|bias}", ours + ".ln_f.{param}"),
    ]


def _rules(with_generator: bool) -> list[KeyRule]:
    unused = "present in the official model but unused by its forward"
    rules = [
        KeyRule(
            "encoder.{conv:first_conv|second_conv}.{i:\\d+}.{param:" + _PARAM + "}",
            "point_gpt.embeddings.patch_embeddings.{conv}.{i}.{param}",
        ),
        KeyRule("blocks.sos", "point_gpt.sos_token"),
        KeyRule("sos_pos", "point_gpt.sos_position"),
        KeyRule("cls_token", "point_gpt.cls_embedding.token"),
        KeyRule("cls_pos", "point_gpt.cls_embedding.position"),
        *_stack_rules("blocks", "point_gpt.encoder"),
        KeyRule("blocks.cls_norm.{param:weight|bias}", "cls_norm.{param}"),
        KeyRule("blocks.cls_head_finetune.{i:\\d+}.{param:" + _PARAM + "}", "classifier.{i}.{param}"),
        KeyRule("blocks.increase_dim.{rest}", None, unused),
        KeyRule("norm.{param:weight|bias}", None, unused),
        KeyRule("generator_blocks.sos", None, unused),
    ]
    if with_generator:
        rules += [
            *_stack_rules("generator_blocks", "generator.decoder"),
            KeyRule("generator_blocks.increase_dim.0.{param:weight|bias}", "generator.reconstruction_head.{param}"),
        ]
    else:
        rules.append(KeyRule("generator_blocks.{rest}", None, "generator removed (generator_num_hidden_layers=0)"))
    return rules


def point_gpt_config_from_state_dict(
    state: Mapping[str, torch.Tensor],
    *,
    official_config=None,
    report: ConversionReport | None = None,
    **overrides,
) -> PointGPTConfig:
    """Width, depth, mini-PointNet widths, generator depth and head are read from the shapes; groups, group size,
    points, heads of an unusual width and the classes of a new head come from `official_config` (the official yaml)
    or `overrides`, and are refused with the flags to pass when neither sets them."""
    conversion.refuse_method_checkpoint(state, "pointgpt")
    s = conversion.CheckpointTensors(
        {key: state[orig] for key, orig in conversion.strip_prefixes(state, _PREFIXES).items()}
    )
    if "blocks.sos" not in s:
        raise ValueError(f"not a PointGPT checkpoint: no 'blocks.sos' (first keys: {list(state)[:5]})")
    width = s["blocks.sos"].shape[0]
    inferred = _inferred_sizes(s)
    if overrides.get("generator_num_hidden_layers") == 0:  # dropping the generator is a choice, not a contradiction
        inferred.pop("generator_num_hidden_layers")
    required = {"num_groups": "--num-groups", "group_size": "--group-size", "num_points": "--num-points"}
    required["num_attention_heads"] = "--num-heads"
    if "num_labels" not in inferred:
        required["num_labels"] = "--num-labels"
    values = conversion.resolve_sizes(
        "converting the PointGPT checkpoint",
        inferred,
        explicit=overrides,
        official=conversion.official_sizes(official_config, conversion.BACKBONE_SIZES),
        conventions=conversion.head_conventions(width, "num_attention_heads"),
        required=required,
        report=report,
    )
    return PointGPTConfig(**{"fps_skip_sq_norm": 1e-3, **values})


def _inferred_sizes(s: Mapping[str, torch.Tensor]) -> dict:
    """What the tensor shapes decide: width, depths, mini-PointNet widths, generator group size, the head."""

    def depth(prefix: str) -> int:
        ids = [int(k.split(".")[2]) for k in s if k.startswith(prefix + ".layers.")]
        return 1 + max(ids) if ids else 0

    def conv_widths(name: str) -> list[int]:
        convs = sorted(
            (int(k.split(".")[2]), v)
            for k, v in s.items()
            if k.startswith(f"encoder.{name}.") and k.endswith(".weight") and v.dim() == 3
        )
        return [v.shape[0] for _, v in convs]

    inferred = {
        "hidden_size": s["blocks.sos"].shape[0],
        "num_hidden_layers": depth("blocks"),
        "intermediate_size": s["blocks.layers.0.mlp.0.weight"].shape[0],
        "patch_first_channels": conv_widths("first_conv"),
        "patch_second_channels": conv_widths("second_conv")[:-1],
        "num_channels": s["encoder.first_conv.0.weight"].shape[1],
        "generator_num_hidden_layers": depth("generator_blocks"),
    }
    if "generator_blocks.increase_dim.0.weight" in s:
        inferred["group_size"] = s["generator_blocks.increase_dim.0.weight"].shape[0] // 3
    head = sorted(
        (int(k.split(".")[2]), v)
        for k, v in s.items()
        if k.startswith("blocks.cls_head_finetune.") and k.endswith(".weight")
    )
    inferred.update(conversion.classifier_sizes([v for _, v in head]))
    return inferred


def convert_point_gpt_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    *,
    output_dir: str | os.PathLike | None = None,
    official_config: str | os.PathLike | Mapping | None = None,
    **config_overrides,
) -> tuple[PointGPTForClassification, ConversionReport]:
    """Convert an official PointGPT checkpoint into `PointGPTForClassification` (optionally saved to `output_dir`).
    Sizes the weights cannot tell come from `official_config` (the official yaml) or `config_overrides`
    (`num_groups`, `group_size`, `num_points`, `num_labels` for a new head); `generator_num_hidden_layers=0` drops
    the generator."""
    state = conversion.load_official_state_dict(checkpoint)
    report = ConversionReport(source="pointgpt")
    config = point_gpt_config_from_state_dict(state, official_config=official_config, report=report, **config_overrides)
    mapping = conversion.apply_rules(
        conversion.strip_prefixes(state, _PREFIXES), _rules(config.generator_num_hidden_layers > 0), report
    )
    return conversion.build_converted(PointGPTForClassification, config, state, mapping, report, output_dir), report


def export_point_gpt_state_dict(model: PointGPTForClassification) -> dict[str, torch.Tensor]:
    """Our weights under the official fine-tuning key names (`encoder.*`, `blocks.layers.N.attn.in_proj_weight`, ...)."""
    rules = [rule for rule in _rules(model.generator is not None) if rule.ours is not None]
    return conversion.export_official(model.state_dict(), rules)
