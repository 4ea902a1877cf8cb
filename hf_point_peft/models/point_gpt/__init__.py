"""PointGPT family (S / B / L) in Hugging Face format, fine-tuning layout."""

from .configuration_point_gpt import POINT_GPT_SIZES, PointGPTConfig
from .modeling_point_gpt import (
    PointGPTForClassification,
    PointGPTModel,
    PointGPTModelOutput,
    PointGPTPreTrainedModel,
    nearest_neighbour_order,
    sinusoidal_position_encoding,
)

__all__ = [
    "POINT_GPT_SIZES",
    "PointGPTConfig",
    "PointGPTForClassification",
    "PointGPTModel",
    "PointGPTModelOutput",
    "PointGPTPreTrainedModel",
    "nearest_neighbour_order",
    "sinusoidal_position_encoding",
]
