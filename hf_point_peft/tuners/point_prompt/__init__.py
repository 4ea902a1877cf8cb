"""Point-PEFT (point-prior prompts + geometry-aware adapters) as a peft method: `PointPromptConfig`,
`PointPromptModel` and `build_memory_bank`."""

from .bank import build_memory_bank
from .config import PointPromptConfig
from .layer import PointPromptBatchNorm, PointPromptBlock, PointPromptLayer, PointPromptNorm
from .model import PointPromptModel

__all__ = [
    "PointPromptBatchNorm",
    "PointPromptBlock",
    "PointPromptConfig",
    "PointPromptLayer",
    "PointPromptModel",
    "PointPromptNorm",
    "build_memory_bank",
]
