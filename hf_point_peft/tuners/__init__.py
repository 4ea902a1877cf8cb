"""The point-cloud PEFT methods, in peft's tuner layout (config.py, layer.py, model.py per method)."""

from ..registry import register_method
from .point_gst import PointGSTConfig, PointGSTModel

register_method("point_gst", PointGSTConfig, PointGSTModel)

__all__ = ["PointGSTConfig", "PointGSTModel"]
