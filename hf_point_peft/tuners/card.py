"""The model card that every save of an adapter writes (`model.save_pretrained`, `push_to_hub`, the converters), from
what the adapter's config knows: method, base (a portable name, see `naming.py`), settings and a loading snippet
with `import hf_point_peft` first. peft would write its generic template; `point-peft finetune` later replaces this
card with one that adds data, metrics and the command (`cards.build_model_card`)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import peft
from huggingface_hub import ModelCard, ModelCardData

from ..atomic import write_text_atomic
from ..naming import portable_base_name

__all__ = ["METHOD_DESCRIPTIONS", "METHOD_NAMES", "build_saved_adapter_card", "write_saved_adapter_card"]

METHOD_NAMES = {"POINT_GST": "PointGST", "POINT_PROMPT": "Point-PEFT", "ANY2POINT": "Any2Point"}
METHOD_DESCRIPTIONS = {
    "POINT_GST": "PointGST: Point Cloud Spectral Adapters parallel to every block's FFN, driven by graph Fourier bases "
    "of the token centres (arXiv 2410.08114)",
    "POINT_PROMPT": "Point-PEFT: point-prior prompts from a memory bank and geometry-aware adapters (arXiv 2310.03059)",
    "ANY2POINT": "Any2Point: a 3D tokenizer, virtual projections into the source model's position table and "
    "any-to-3D guided adapters (arXiv 2404.07989)",
}

# config fields that say nothing about this adapter (peft bookkeeping) or are shown elsewhere on the card
_NOT_SETTINGS = {
    "peft_type",
    "task_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
}


def _peft_type(config) -> str:
    return str(getattr(config.peft_type, "value", config.peft_type))


def _snippet(config, base: str | None) -> str:
    base_repr = repr(base) if base else "'<the base model this adapter was made on>'"
    if _peft_type(config) == "ANY2POINT":
        return "\n".join(
            [
                "import torch",
                "import hf_point_peft",
                "from peft import PeftModel",
                "from transformers import AutoModel",
                "",
                f"source = AutoModel.from_pretrained({base_repr})",
                "model = PeftModel.from_pretrained(source, 'path/to/this/adapter').eval()",
                "logits = model(points=torch.randn(1, 1024, 3)).logits  # one cloud [1, N, 3], xyz",
            ]
        )
    labels = getattr(config, "base_num_labels", None)
    label_arg = f", num_labels={labels}" if labels else ""
    return "\n".join(
        [
            "import torch",
            "import hf_point_peft",
            "from peft import PeftModel",
            "from hf_point_peft import AutoModelForPointCloudClassification",
            "",
            f"base = AutoModelForPointCloudClassification.from_pretrained({base_repr}{label_arg})",
            "model = PeftModel.from_pretrained(base, 'path/to/this/adapter').eval()",
            "logits = model(points=torch.randn(1, 1024, 3)).logits  # one cloud [1, N, 3], xyz",
        ]
    )


def _base_text(base: str | None) -> str:
    if not base:
        return "not recorded"
    if base.startswith("hf_point_peft:"):
        return f"`{base}` (shipped inside the hf_point_peft package)"
    if "/" in base:
        return f"`{base}` (Hugging Face Hub)"
    return f"`{base}` (a local folder of that name when the adapter was saved: load the base from where it lives)"


def build_saved_adapter_card(config, folder: str | os.PathLike) -> ModelCard:
    """The card of the adapter saved in `folder` with `config` (a config of this package)."""
    from .. import __version__

    peft_type = _peft_type(config)
    base = portable_base_name(config.base_model_name_or_path)
    settings = {
        k: v for k, v in sorted(config.to_dict().items()) if k not in _NOT_SETTINGS and v is not None and v != []
    }
    card_data = ModelCardData(
        library_name="peft",
        base_model=base or None,
        tags=["point-cloud", "3d", "hf_point_peft", peft_type.lower()],
    )
    fields = {
        "model_name": Path(folder).resolve().name,
        "method_name": METHOD_NAMES.get(peft_type, peft_type),
        "package_version": __version__,
        "peft_version": peft.__version__,
        "method_description": METHOD_DESCRIPTIONS.get(peft_type, peft_type),
        "base_model_text": _base_text(base),
        "snippet": _snippet(config, base),
        "settings_rows": "\n".join(f"| {k} | `{v}` |" for k, v in settings.items()),
    }
    template = (resources.files("hf_point_peft") / "model_cards" / "saved_adapter_card.md").read_text()
    return ModelCard.from_template(card_data, template_str=template, **fields)


def write_saved_adapter_card(config, folder: str | os.PathLike) -> Path:
    """Write (atomically) `folder/README.md` for the adapter saved there with `config`."""
    card = build_saved_adapter_card(config, folder)
    return write_text_atomic(Path(folder) / "README.md", str(card))
