"""Registration of the point model families with transformers' Auto classes (idempotent)."""

from __future__ import annotations

from collections import OrderedDict

from transformers import AutoConfig, AutoModel
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

__all__ = ["AutoModelForPointCloudClassification", "register_auto_classes"]


class AutoModelForPointCloudClassification(_BaseAutoModelClass):
    """Auto class for point-cloud classifiers (transformers has none): `from_config` / `from_pretrained` pick the
    classification model of the config's family, e.g. `PointTransformerForClassification` for `point_transformer`."""

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Also accepts the portable names adapters record (`hf_point_peft:embedded/...`, see `portable_names.py`)."""
        from .portable_names import resolve_name_argument

        return super().from_pretrained(resolve_name_argument(pretrained_model_name_or_path), *model_args, **kwargs)


def _families():
    """(config class, base model class, classification model class or None) of every family."""
    from .imagebind_audio import ImageBindAudioConfig, ImageBindAudioModel
    from .point_gpt import PointGPTConfig, PointGPTForClassification, PointGPTModel
    from .point_transformer import PointTransformerConfig, PointTransformerForClassification, PointTransformerModel

    return [
        (PointTransformerConfig, PointTransformerModel, PointTransformerForClassification),
        (PointGPTConfig, PointGPTModel, PointGPTForClassification),
        (ImageBindAudioConfig, ImageBindAudioModel, None),  # a source encoder for Any2Point: no point classifier
    ]


def register_auto_classes() -> None:
    """Register every family with AutoConfig, AutoModel and (where it has one) AutoModelForPointCloudClassification."""
    for config_cls, model_cls, classifier_cls in _families():
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModel.register(config_cls, model_cls, exist_ok=True)
        if classifier_cls is not None:
            AutoModelForPointCloudClassification.register(config_cls, classifier_cls, exist_ok=True)
