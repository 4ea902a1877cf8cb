"""The result folders of the training commands and the files each writes there: `finetune` into
<output_dir>/adapter (PEFT methods) or <output_dir>/model (the others), `pretrain` into <output_dir>/encoder. A folder
holding anything else is the user's: refused before training (`preflight`), never replaced (`atomic_directory`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ENCODER_FILES", "RESULT_FILES", "result_folder"]

RESULT_FILES = {
    "adapter": {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_metrics.json"},
    "model": {"config.json", "model.safetensors", "README.md", "training_metrics.json"},
}
ENCODER_FILES = {"config.json", "model.safetensors", "README.md", "pretrain_metrics.json"}


def result_folder(output_dir: str | Path, method: str) -> Path:
    """Where a fine-tuning run of `method` writes its result."""
    from .methods import PEFT_METHODS

    return Path(output_dir) / ("adapter" if method in PEFT_METHODS else "model")
