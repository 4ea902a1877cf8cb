"""Official PointGST fine-tuned checkpoints (jerryfeng2003/PointGST) -> a PointGST adapter folder and its base model.

The official fine-tuning model (`PointTransformer_PGST` on Point-MAE / ACT / ReCon, `GPT_Transformer_PGST` on
PointGPT) saves one state dict: the frozen backbone, a PCSA `gft_adapter` in every block, the cls token and the head.
Its runner trains the names containing "adapt" or "cls" and keeps the whole model in train() mode, so the frozen
tokenizer's BatchNorm statistics moved during fine-tuning: they become the adapter's own statistics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ..models.conversion import official_sizes, resolve_sizes
from ..tuners import PointGSTConfig
from .card import ConversionCard, MethodIdentity, checkpoint_name
from .common import ConvertedAdapter, PointMethodConversion

__all__ = ["POINTGST_DEVIATIONS", "convert_pointgst_checkpoint"]

IDENTITY = MethodIdentity(
    "point_gst",
    "PointGST",
    "Point Cloud Spectral Adapters parallel to every block's FFN (arXiv 2410.08114)",
    "jerryfeng2003/PointGST: models/PointTransformer.py, models/PointGPT.py, models/PGST.py",
)
# official PCSA sub-module -> ours: `norm_ly1` normalises the global branch, `norm_ly2` the local one
_PCSA_PARTS = {"down": "down", "up": "up", "adapt1": "adapt1", "norm_ly1": "norm_g", "norm_ly2": "norm_l"}
_PARAMS = ("weight", "bias")
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
    job = PointMethodConversion(checkpoint, "pointgst", "converting the PointGST checkpoint")
    state = job.state
    adapter_keys = {k: _ADAPTER_KEY.fullmatch(k) for k in state if ".gft_adapter." in k}
    if not adapter_keys:
        raise ValueError(
            "the checkpoint has no gft_adapter tensors: it is not a PointGST fine-tuned checkpoint (convert a "
            "pre-trained backbone with --from point-mae / point-bert / act / recon / pointgpt)"
        )
    gpt = "blocks.sos" in state
    base = job.base(set(adapter_keys), gpt, official_config, backbone_overrides, pretrained)
    blocks = sorted({int(m.group(1)) for m in adapter_keys.values() if m})
    config = _config(job, blocks, gpt, base.config.num_hidden_layers, official_config, method_options)
    model = job.inject(config, adapter_name, keep_base=output_dir is not None)
    layers = (model.get_base_model().point_gpt if gpt else model.get_base_model().point_transformer).encoder.layers
    # every tensor of every adapter comes from the checkpoint (a missing one is refused, naming it); official keys
    # no rule reads are left for `finish` to refuse
    rename = {f"{ours}.{param}": f"{official}.{param}" for official, ours in _PCSA_PARTS.items() for param in _PARAMS}
    for n in blocks:
        where = f"layers.{n}.point_gst_adapter"
        prefix = f"blocks.{'layers' if gpt else 'blocks'}.{n}.gft_adapter."
        state.place_module(prefix, layers[n].point_gst_adapter[adapter_name], where, rename=rename)
    card = ConversionCard(
        IDENTITY,
        checkpoint=checkpoint_name(checkpoint),
        command=command,
    )
    return job.complete(adapter_name, POINTGST_DEVIATIONS, output_dir, card)


def _config(job, blocks: list[int], gpt: bool, depth: int, official_config, method_options) -> PointGSTConfig:
    """The adapter's config: rank from the tensors, local size from the official yaml or the options."""
    state, report = job.state, job.report
    rank = state[f"blocks.{'layers' if gpt else 'blocks'}.{blocks[0]}.gft_adapter.down.weight"].shape[0]
    options = resolve_sizes(
        job.what,
        {"rank": rank},
        explicit=method_options,
        official=official_sizes(official_config, ("rank", "local_size")),
        required={"local_size": "--method-option local_size=N"},
        report=report,
    )
    if blocks != list(range(depth)):
        options["layers_to_transform"] = blocks
    config = PointGSTConfig(**options)
    report.notes.append(
        f"graph settings: laplacian={config.laplacian!r} (the code since Jan 2025; Oct 2024 checkpoints used "
        "'combinatorial': --method-option laplacian=combinatorial), spectral_transform, distance_scale and "
        "pairwise_distance as the released code"
    )
    return config
