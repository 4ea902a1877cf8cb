"""`PointGSTModel`: the peft tuner that injects PointGST into a point backbone."""

from __future__ import annotations

from ..base import PointTuner
from .layer import PointGSTBatchNorm, PointGSTBlock, PointGSTLayer

__all__ = ["PointGSTModel"]


class PointGSTModel(PointTuner):
    """Wraps every block of a point transformer / PointGPT (or the `target_modules` of another backbone) with PCSA
    adapters and the tokenizer's BatchNorms with per-adapter statistics. Created by `get_peft_model(model,
    PointGSTConfig(...))`; the graph bases are built once per forward from the tokenizer's centres."""

    prefix: str = "point_gst_"
    tuner_layer_cls = PointGSTLayer
    block_layer_cls = PointGSTBlock
    bn_layer_cls = PointGSTBatchNorm
    method_name = "PointGST"
