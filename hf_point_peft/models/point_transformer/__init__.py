"""Point transformer family: Point-MAE / Point-BERT / ACT / ReCon fine-tuning encoders in Hugging Face format."""

from .configuration_point_transformer import PointTransformerConfig
from .modeling_point_transformer import (
    PointClassifierOutput,
    PointMaskedModelingOutput,
    PointTransformerForClassification,
    PointTransformerForMaskedModeling,
    PointTransformerModel,
    PointTransformerModelOutput,
    PointTransformerPreTrainedModel,
)

__all__ = [
    "PointClassifierOutput",
    "PointMaskedModelingOutput",
    "PointTransformerConfig",
    "PointTransformerForClassification",
    "PointTransformerForMaskedModeling",
    "PointTransformerModel",
    "PointTransformerModelOutput",
    "PointTransformerPreTrainedModel",
]
