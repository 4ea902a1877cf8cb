"""The point-cloud PEFT methods, in peft's tuner layout (config.py, layer.py, model.py per method)."""

from ..registry import register_method
from .point_gst import PointGSTConfig, PointGSTModel
from .point_prompt import PointPromptConfig, PointPromptModel, build_memory_bank

register_method("point_gst", PointGSTConfig, PointGSTModel)
register_method("point_prompt", PointPromptConfig, PointPromptModel)

__all__ = ["PointGSTConfig", "PointGSTModel", "PointPromptConfig", "PointPromptModel", "build_memory_bank"]
