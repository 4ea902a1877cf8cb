"""Official PointGST fine-tuned checkpoints (jerryfeng2003/PointGST) -> a PointGST adapter folder and its base model.

The official fine-tuning model (`PointTransformer_PGST` on Point-MAE / ACT / ReCon, `GPT_Transformer_PGST` on
PointGPT) saves one state dict: the frozen backbone, a PCSA `gft_adapter` in every block, the cls token and the head.
Its runner trains the names containing "adapt" or "cls" and keeps the whole model in train() mode, so the frozen
tokenizer's BatchNorm statistics moved during fine-tuning: they become the adapter's own statistics.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping

from peft import get_peft_model

from ..models.conversion import ConversionReport, official_sizes, resolve_sizes
from ..tuners import PointGSTConfig
from .card import ConversionCard, write_conversion_card
from .common import (
    ConvertedAdapter,
    OfficialState,
    backbone_statistics,
    check_frozen_equal,
    convert_backbone,
    fill_modules_to_save,
    frozen_keys,
    place_bn_statistics,
    pretrained_backbone,
    write_converted,
)

__all__ = ["POINTGST_DEVIATIONS", "convert_pointgst_checkpoint"]

OFFICIAL_CODE = "jerryfeng2003/PointGST: models/PointTransformer.py, models/PointGPT.py, models/PGST.py"
# official PCSA sub-module -> ours: `norm_ly1` normalises the global branch, `norm_ly2` the local one
_PCSA_PARTS = {"down": "down", "up": "up", "adapt1": "adapt1", "norm_ly1": "norm_g", "norm_ly2": "norm_l"}
_ADAPTER_KEY = re.compile(r"blocks\.(?:blocks|layers)\.(\d+)\.gft_adapter\.(\w+)\.(weight|bias)")

POINTGST_DEVIATIONS = [
    "Duplicate token centres: an exactly-zero off-diagonal distance is replaced by degenerate_eps (1e-6) where the "
    "official code would put inf into the adjacency and fail (specs/pointgst.md §4.5); identical otherwise.",
    "Z-order ties are broken by token index (a stable sort); the official order of tied keys is undefined.",
    "The graph bases follow float32 torch.cdist round-off and eigh's signs within near-degenerate eigenspaces, which "
    "vary with device, BLAS and batch composition (spec pitfalls 3-4): outputs agree with the official model's as "
    "closely as two official runs on different machines, not bit for bit.",
]


def convert_pointgst_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
    *,
    output_dir: str | os.PathLike | None = None,
    official_config: str | os.PathLike | Mapping | None = None,
    pretrained: str | os.PathLike | Mapping | None = None,
    method_options: Mapping | None = None,
    adapter_name: str = "default",
    command: str | None = None,
    **backbone_overrides,
) -> ConvertedAdapter:
    """Convert an official PointGST fine-tuned checkpoint into a `PointGSTConfig` adapter on the HF backbone.

    Sizes: width, depth, head and rank are read from the tensors; groups, group size, points and the local graph
    size come from `official_config` (the run's `cfgs/<backbone>/finetune_*_pgst.yaml`), `backbone_overrides`
    (`num_groups=...`) or `method_options` (`local_size=...`), and are refused when nothing sets them. `pretrained`
    (the pre-trained backbone checkpoint) is optional: with it the base model gets the pre-trained BatchNorm
    statistics and every frozen tensor is checked against it. With `output_dir`, writes `output_dir/adapter` and
    `output_dir/base`, so that `PeftModel.from_pretrained(base, adapter)` computes what the official model computed
    (up to `POINTGST_DEVIATIONS`)."""
    report = ConversionReport(source="pointgst")
    state = OfficialState(checkpoint, ["base_model."], report)
    adapter_keys = {k: _ADAPTER_KEY.fullmatch(k) for k in state if ".gft_adapter." in k}
    if not adapter_keys:
        raise ValueError(
            "the checkpoint has no gft_adapter tensors: it is not a PointGST fine-tuned checkpoint (convert a "
            "pre-trained backbone with --from point-mae / point-bert / act / recon / pointgpt)"
        )
    gpt = "blocks.sos" in state
    what = "converting the PointGST checkpoint"
    base, backbone_report = convert_backbone(
        state.subset(lambda k: k not in adapter_keys), gpt, official_config, backbone_overrides, what
    )
    state.account(backbone_report)
    ours_to_official = {ours: official for official, ours in backbone_report.used.items()}
    blocks = sorted({int(m.group(1)) for m in adapter_keys.values() if m})
    rank = state[f"blocks.{'layers' if gpt else 'blocks'}.{blocks[0]}.gft_adapter.down.weight"].shape[0]
    options = resolve_sizes(
        what,
        {"rank": rank},
        explicit=method_options,
        official=official_sizes(official_config, ("rank", "local_size")),
        required={"local_size": "--method-option local_size=N"},
        report=report,
    )
    if blocks != list(range(base.config.num_hidden_layers)):
        options["layers_to_transform"] = blocks
    config = PointGSTConfig(**options)
    report.notes.append(
        f"graph settings: laplacian={config.laplacian!r} (the code since Jan 2025; Oct 2024 checkpoints used "
        "'combinatorial': --method-option laplacian=combinatorial), spectral_transform, distance_scale and "
        "pairwise_distance as the released code"
    )

    base_stats = backbone_statistics(base.state_dict())  # the fine-tuned ones
    if pretrained is not None:
        pre_state, source = pretrained_backbone(pretrained, base.config, what)
        own = base.state_dict()
        check_frozen_equal(own, pre_state, frozen_keys(own), what)
        base.load_state_dict({k: pre_state[k] for k in base_stats}, strict=False)
        report.notes.append(
            f"--pretrained ({source}): every frozen tensor checked equal; the base model has its "
            "BatchNorm statistics, the adapter the fine-tuned ones"
        )
    else:
        report.notes.append(
            "no --pretrained: the base model keeps the fine-tuned BatchNorm statistics too (the "
            "adapter carries its own copy, so the adapter computes the same either way)"
        )
    clean_base = copy.deepcopy(base) if output_dir is not None else None

    model = get_peft_model(base, config, adapter_name=adapter_name)
    layers = (model.get_base_model().point_gpt if gpt else model.get_base_model().point_transformer).encoder.layers
    for key, match in adapter_keys.items():
        if match is None or match.group(2) not in _PCSA_PARTS:
            continue
        n, part, param = int(match.group(1)), _PCSA_PARTS[match.group(2)], match.group(3)
        adapter = layers[n].point_gst_adapter[adapter_name]
        state.place(key, getattr(getattr(adapter, part), param), f"layers.{n}.point_gst_adapter.{part}.{param}")
    for key in place_bn_statistics(model, base_stats, adapter_name):
        official = ours_to_official[key]
        where = "the adapter's BatchNorm statistics" + (" only" if pretrained is not None else " (and the base)")
        report.used[official] = f"{key} -> {where}"
    for name in fill_modules_to_save(model, adapter_name):
        report.notes.append(f"{name}: trained in full by the official run; the adapter's copy holds its tensors")
    state.finish(what)
    model.eval()

    converted = ConvertedAdapter(model, report, deviations=list(POINTGST_DEVIATIONS))
    if output_dir is not None:
        card = ConversionCard(
            method="point_gst",
            method_name="PointGST",
            method_description="Point Cloud Spectral Adapters parallel to every block's FFN (arXiv 2410.08114)",
            official_code=OFFICIAL_CODE,
            checkpoint=str(checkpoint) if not isinstance(checkpoint, Mapping) else "<in-memory state dict>",
            load_code=point_load_code(clean_base, output_dir),
            deviations=converted.deviations,
            command=command,
        )
        write_converted(
            converted, output_dir, clean_base, lambda folder: write_conversion_card(folder, card, converted)
        )
    return converted


def point_load_code(base, output_dir: str | os.PathLike) -> str:
    """The card's loading snippet for an adapter on a point backbone written to `output_dir/{base,adapter}`."""
    cls = type(base).__name__
    return (
        f"from hf_point_peft import {cls}\n\n"
        f"base = {cls}.from_pretrained({str(os.path.join(output_dir, 'base'))!r})\n"
        f"model = PeftModel.from_pretrained(base, {str(os.path.join(output_dir, 'adapter'))!r}).eval()\n"
        f"logits = model(points=torch.randn(1, {base.config.num_points}, 3)).logits"
    )
