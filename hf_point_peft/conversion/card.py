"""The model card of a converted adapter: that it was converted, from what, the deliberate deviations from the
official computation, and how to load it."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import peft
from huggingface_hub import ModelCard, ModelCardData

if TYPE_CHECKING:  # annotations only: common.py writes the card, so importing it here would be a cycle
    from .common import ConvertedAdapter

__all__ = ["ConversionCard", "MethodIdentity", "checkpoint_name", "point_load_code", "write_conversion_card"]


@dataclass(frozen=True)
class MethodIdentity:
    """Who a converted adapter is: its peft tag, name, one-line description and the official code it came from."""

    tag: str  # point_gst | point_prompt | any2point
    name: str  # PointGST | Point-PEFT | Any2Point
    description: str
    official_code: str


@dataclass
class ConversionCard:
    """What the card says besides the report: the method, the checkpoint, the loading snippet, the deviations and
    the command that made it."""

    identity: MethodIdentity
    checkpoint: str
    load_code: str = ""  # the lines after `from peft import PeftModel` that load base + adapter and run it
    checkpoint_detail: str = ""
    deviations: list[str] = field(default_factory=list)
    command: str | None = None


def write_conversion_card(folder: Path, card: ConversionCard, converted: ConvertedAdapter) -> Path:
    """Write `folder/README.md` (valid `huggingface_hub.ModelCard` metadata) for a converted adapter."""
    from .. import __version__

    report = converted.report
    base = converted.base_dir
    data = ModelCardData(
        library_name="peft",
        license="apache-2.0",
        tags=["point-cloud", "3d", "hf_point_peft", card.identity.tag, "converted-checkpoint"],
    )
    command = card.command or "python " + " ".join(shlex.quote(a) for a in sys.argv)
    deviations = card.deviations or ["none: the adapter computes what the official model computes"]
    fields = {
        "model_name": f"{card.identity.name} adapter converted from {Path(card.checkpoint).name}",
        "method_name": card.identity.name,
        "method_description": card.identity.description,
        "official_code": card.identity.official_code,
        "checkpoint": card.checkpoint,
        "checkpoint_detail": card.checkpoint_detail,
        "base_text": f"`{base.name}`, the folder beside this adapter folder (written by the same conversion)"
        if base
        else "the base model it was converted with",
        "command": command,
        "version": __version__,
        "peft_version": peft.__version__,
        "counts": f"{len(report.used)} used, {len(report.dropped)} dropped with a stated reason, "
        f"{len(report.unrecognised)} unrecognised",
        "deviation_rows": "\n".join(f"- {d}" for d in deviations),
        "load_code": card.load_code,
        "report": report.summary(),
    }
    template = (resources.files("hf_point_peft") / "model_cards" / "converted_adapter_card.md").read_text()
    path = folder / "README.md"
    ModelCard.from_template(data, template_str=template, **fields).save(path)
    return path


def checkpoint_name(checkpoint) -> str:
    """How the card names a checkpoint: its file name (never a path of this machine), or that it was given as a
    state dict."""
    return "<in-memory state dict>" if isinstance(checkpoint, Mapping) else Path(checkpoint).name


def point_load_code(base, output_dir: str | os.PathLike) -> str:
    """The card's loading snippet for an adapter on a point backbone written to `output_dir/{base,adapter}`, with the
    output folder by its name only (a card never records a path of the machine that wrote it)."""
    cls = type(base).__name__
    output_dir = Path(output_dir).name
    return (
        f"from hf_point_peft import {cls}\n\n"
        f"base = {cls}.from_pretrained({str(os.path.join(output_dir, 'base'))!r})\n"
        f"model = PeftModel.from_pretrained(base, {str(os.path.join(output_dir, 'adapter'))!r}).eval()\n"
        f"logits = model(points=torch.randn(1, {base.config.num_points}, 3)).logits"
    )
