"""Any2Point (any-modality encoders -> point clouds) as a peft method: `Any2PointConfig` + `Any2PointModel`."""

from .config import PAPER_PRESETS, Any2PointConfig
from .model import Any2PointModel
from .recipes import RECIPES
from .tokenizer import PointPNTokenizer

__all__ = ["PAPER_PRESETS", "RECIPES", "Any2PointConfig", "Any2PointModel", "PointPNTokenizer"]
