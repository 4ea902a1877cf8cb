"""ImageBind's audio trunk (ImageBind-Huge `imagebind_huge.pth`) in Hugging Face format."""

from .configuration_imagebind_audio import ImageBindAudioConfig
from .modeling_imagebind_audio import (
    ImageBindAudioModel,
    ImageBindAudioModelOutput,
    ImageBindAudioModelWithProjection,
    ImageBindAudioPreTrainedModel,
)

__all__ = [
    "ImageBindAudioConfig",
    "ImageBindAudioModel",
    "ImageBindAudioModelOutput",
    "ImageBindAudioModelWithProjection",
    "ImageBindAudioPreTrainedModel",
]
