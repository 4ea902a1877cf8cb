"""hf_point_peft: parameter-efficient fine-tuning of point-cloud transformers as Hugging Face PEFT methods.

`import hf_point_peft` registers the point model families with transformers' Auto classes and the PEFT methods with
peft, so that `AutoModel`, `get_peft_model` and `PeftModel.from_pretrained` know them.
"""

from .models import (
    AutoModelForPointCloudClassification,
    PointGPTConfig,
    PointGPTForClassification,
    PointGPTModel,
    PointTransformerConfig,
    PointTransformerForClassification,
    PointTransformerForMaskedModeling,
    PointTransformerModel,
)
from .tuners import (
    Any2PointConfig,
    Any2PointModel,
    PointGSTConfig,
    PointGSTModel,
    PointPromptConfig,
    PointPromptModel,
    build_memory_bank,
)

__version__ = "0.1.0"

__all__ = [
    "Any2PointConfig",
    "Any2PointModel",
    "AutoModelForPointCloudClassification",
    "PointGPTConfig",
    "PointGPTForClassification",
    "PointGPTModel",
    "PointTransformerConfig",
    "PointTransformerForClassification",
    "PointTransformerForMaskedModeling",
    "PointTransformerModel",
    "PointGSTConfig",
    "PointGSTModel",
    "PointPromptConfig",
    "PointPromptModel",
    "__version__",
    "build_memory_bank",
]
