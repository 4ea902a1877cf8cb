"""Hugging Face format point-cloud models. Importing this package registers them with the Auto classes."""

from .imagebind_audio import ImageBindAudioConfig, ImageBindAudioModel, ImageBindAudioModelWithProjection
from .point_gpt import PointGPTConfig, PointGPTForClassification, PointGPTModel
from .point_transformer import (
    PointTransformerConfig,
    PointTransformerForClassification,
    PointTransformerForMaskedModeling,
    PointTransformerModel,
)
from .registration import AutoModelForPointCloudClassification, register_auto_classes

register_auto_classes()

__all__ = [
    "AutoModelForPointCloudClassification",
    "ImageBindAudioConfig",
    "ImageBindAudioModel",
    "ImageBindAudioModelWithProjection",
    "PointGPTConfig",
    "PointGPTForClassification",
    "PointGPTModel",
    "PointTransformerConfig",
    "PointTransformerForClassification",
    "PointTransformerForMaskedModeling",
    "PointTransformerModel",
    "register_auto_classes",
]
