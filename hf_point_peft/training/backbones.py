"""Resolving a backbone name to a classifier: the embedded pre-trained default, its architecture from scratch, a
local folder or a Hub id."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from transformers import AutoConfig

from ..models import AutoModelForPointCloudClassification
from ..naming import EMBEDDED_SCHEME, MINILM_HUB_ID, resolve_base_name

__all__ = ["EMBEDDED_BACKBONE", "embedded_backbone_path", "load_classifier", "load_source", "resolve_backbone"]

EMBEDDED_BACKBONE = "pointmae-synthetic-small"


def embedded_backbone_path() -> Path:
    """Folder of the small Point-MAE-style backbone this package pre-trained itself and ships (config.json,
    model.safetensors, README.md model card)."""
    return Path(str(resources.files("hf_point_peft") / "assets" / EMBEDDED_BACKBONE))


def resolve_backbone(name: str) -> tuple[str, bool]:
    """(path or Hub id, pretrained?) for "embedded", "scratch" (the embedded architecture, random weights), "minilm"
    / "minilm-random" (Any2Point's offline language source), a portable name an adapter recorded
    (`hf_point_peft:embedded/...`, see `naming.py`), a folder or a Hub id."""
    if name.startswith(EMBEDDED_SCHEME) or name == MINILM_HUB_ID:
        return resolve_base_name(name), True
    if name in ("minilm", "minilm-random"):
        from ..models.sources import minilm_path

        return str(minilm_path()), name == "minilm"
    if name in ("embedded", EMBEDDED_BACKBONE):
        path = embedded_backbone_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"the embedded backbone is missing from the installation: {path}")
        return str(path), True
    if name == "scratch":
        return str(embedded_backbone_path()), False
    return name, True


def load_classifier(backbone: str, num_labels: int, id2label: dict[int, str] | None = None, **config_overrides):
    """A point classifier with a fresh `num_labels` head on `backbone` (weights loaded unless "scratch")."""
    source, pretrained = resolve_backbone(backbone)
    kwargs = {"num_labels": num_labels, **config_overrides}
    if id2label is not None:
        kwargs["id2label"] = {int(k): v for k, v in id2label.items()}
        kwargs["label2id"] = {v: int(k) for k, v in id2label.items()}
    if pretrained:
        if os.path.isdir(source) and not (Path(source) / "config.json").is_file():
            raise FileNotFoundError(f"{source} is not a model folder (no config.json)")
        return AutoModelForPointCloudClassification.from_pretrained(source, **kwargs)
    config = AutoConfig.from_pretrained(source, **kwargs)
    return AutoModelForPointCloudClassification.from_config(config)


def load_source(backbone: str):
    """A source encoder for Any2Point: "minilm" (pre-trained, offline), "minilm-random" (same architecture, random
    weights), or any folder / Hub id of a supported transformers model (loaded with `AutoModel`)."""
    from transformers import AutoModel

    if backbone == MINILM_HUB_ID and resolve_base_name(backbone) != backbone:  # the installed copy, offline
        backbone = "minilm"
    if backbone in ("minilm", "minilm-random"):
        from ..models.sources import load_minilm

        return load_minilm(pretrained=backbone == "minilm")
    return AutoModel.from_pretrained(resolve_base_name(backbone))
