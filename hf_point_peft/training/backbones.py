"""Resolving a backbone name to a classifier: the embedded pre-trained default, its architecture from scratch, a
local folder or a Hub id."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

from transformers import AutoConfig

from ..errors import SettingError
from ..files import check_model_folder
from ..models import AutoModelForPointCloudClassification
from ..naming import EMBEDDED_SCHEME, MINILM_HUB_ID, resolve_base_name

__all__ = [
    "EMBEDDED_BACKBONE",
    "backbone_weights_digest",
    "embedded_backbone_path",
    "load_classifier",
    "load_source",
    "resolve_backbone",
]

logger = logging.getLogger(__name__)

EMBEDDED_BACKBONE = "pointmae-synthetic-small"
SCRATCH_PREFIX = "scratch:"  # "scratch:NAME": the architecture of backbone NAME with random weights


def embedded_backbone_path() -> Path:
    """Folder of the small Point-MAE-style backbone this package pre-trained itself and ships (config.json,
    model.safetensors, README.md model card)."""
    return Path(str(resources.files("hf_point_peft") / "assets" / EMBEDDED_BACKBONE))


def resolve_backbone(name: str) -> tuple[str, bool]:
    """(path or Hub id, pretrained?) for "embedded", "scratch" (the embedded architecture, random weights),
    "scratch:NAME" (the architecture of backbone NAME, random weights), "minilm" / "minilm-random" (Any2Point's
    offline language source), a portable name an adapter recorded (`hf_point_peft:embedded/...`, see `naming.py`), a
    folder or a Hub id."""
    if name.startswith(SCRATCH_PREFIX):
        return resolve_backbone(name[len(SCRATCH_PREFIX) :])[0], False
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


def backbone_weights_digest(name: str) -> str | None:
    """A short sha256 of the weight files of a backbone held in a local folder (the embedded ones included), so that
    a run resumed on the same name with other weights (an updated embedded backbone, a folder pre-trained again) is
    refused; None where no local weights are read (scratch, a Hub id)."""
    source, pretrained = resolve_backbone(name)
    folder = Path(source)
    if not pretrained or not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _without_load_report() -> Iterator[None]:
    """transformers logs a table of every newly initialised tensor as a warning on each load, which reads like an
    error for the new head that fine-tuning always creates; `_report_new_weights` says it in one line instead."""
    if logger.isEnabledFor(logging.DEBUG):  # asked for everything: transformers' own table too
        yield
        return
    report = logging.getLogger("transformers.modeling_utils")
    level = report.level
    report.setLevel(logging.ERROR)
    try:
        yield
    finally:
        report.setLevel(level)


def _report_new_weights(info: dict, num_labels: int, source: str, log: Callable[[str], None]) -> None:
    """One line for the new head; a warning only for backbone weights the checkpoint lacks (a real problem)."""
    missing = sorted(info.get("missing_keys") or [])
    head = [k for k in missing if k.split(".")[0] == "classifier"]
    others = [k for k in missing if k not in head]
    resized = {key: shapes for key, *shapes in info.get("mismatched_keys") or []}
    wrong = sorted(k for k in resized if k.split(".")[0] != "classifier")
    if wrong:  # only the head may change shape (its class count); anything else is another architecture
        shown = ", ".join(f"{k} {tuple(resized[k][0])} in the backbone, {tuple(resized[k][1])} here" for k in wrong[:3])
        raise SettingError("backbone", source, f"weights of other shapes than the model built from it: {shown}")
    if resized:
        old = next((shape[0][0] for key, shape in resized.items() if key.endswith(".weight")), "?")
        log(f"the backbone's {old}-class head is replaced by a new {num_labels}-class head")
    elif head:
        log(f"new {num_labels}-class head initialised ({len(head)} tensors not in the backbone)")
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        logger.warning(f"{len(others)} backbone weights are not in {source} and start from random values: {shown}")
    if info.get("unexpected_keys"):
        logger.debug("unused weights of %s: %s", source, ", ".join(sorted(info["unexpected_keys"])))


def load_classifier(
    backbone: str,
    num_labels: int,
    id2label: dict[int, str] | None = None,
    log: Callable[[str], None] = logger.info,
    **config_overrides,
):
    """A point classifier with a fresh `num_labels` head on `backbone` (weights loaded unless "scratch"); the new head
    is reported in one line through `log`."""
    source, pretrained = resolve_backbone(backbone)
    kwargs = dict(config_overrides)
    if id2label is not None:  # the names set the class count (num_labels besides them reads as a conflict)
        kwargs["id2label"] = {int(k): v for k, v in id2label.items()}
        kwargs["label2id"] = {v: int(k) for k, v in id2label.items()}
    else:
        kwargs["num_labels"] = num_labels
    if pretrained:
        check_model_folder(source)
        with _without_load_report():
            # a classifier's head of another class count (a ModelNet40 model fine-tuned on ScanObjectNN) is replaced
            model, info = AutoModelForPointCloudClassification.from_pretrained(
                source, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        _report_new_weights(info, num_labels, source, log)
        return model
    config = AutoConfig.from_pretrained(source, **kwargs)
    log(f"{config.model_type} backbone initialised at random ('scratch': no pre-trained weights)")
    return AutoModelForPointCloudClassification.from_config(config)


def load_source(backbone: str, log: Callable[[str], None] = logger.info):
    """A source encoder for Any2Point: "minilm" (pre-trained, offline), "minilm-random" (same architecture, random
    weights), or any folder / Hub id of a supported transformers model (loaded with `AutoModel`)."""
    from transformers import AutoModel

    if backbone == MINILM_HUB_ID and resolve_base_name(backbone) != backbone:  # the installed copy, offline
        backbone = "minilm"
    if backbone in ("minilm", "minilm-random"):
        from ..models.sources import load_minilm

        return load_minilm(pretrained=backbone == "minilm")
    check_model_folder(resolve_base_name(backbone))
    with _without_load_report():
        model, info = AutoModel.from_pretrained(resolve_base_name(backbone), output_loading_info=True)
    _report_new_weights(info, 0, backbone, log)  # a source encoder has no head: only real gaps are reported
    return model
