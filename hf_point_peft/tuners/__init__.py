"""The point-cloud PEFT methods, in peft's tuner layout (config.py, layer.py, model.py per method)."""

from ..registry import register_method
from .any2point import Any2PointConfig, Any2PointModel
from .point_gst import PointGSTConfig, PointGSTModel
from .point_prompt import PointPromptConfig, PointPromptModel, build_memory_bank

register_method("point_gst", PointGSTConfig, PointGSTModel)
register_method("point_prompt", PointPromptConfig, PointPromptModel)
register_method("any2point", Any2PointConfig, Any2PointModel)

__all__ = [
    "Any2PointConfig",
    "Any2PointModel",
    "PointGSTConfig",
    "PointGSTModel",
    "PointPromptConfig",
    "PointPromptModel",
    "build_memory_bank",
]
