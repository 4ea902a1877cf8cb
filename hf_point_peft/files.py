"""Reading the files a user hands over (run folders, checkpoints, backbones, adapters) with errors that name the
file: a damaged JSON file or a weights file safetensors cannot read is a ValueError saying which file and why,
never a bare `JSONDecodeError` or `SafetensorError` from deep inside a load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTER_WEIGHTS",
    "check_adapter_folder",
    "check_model_folder",
    "check_safetensors",
    "check_safetensors_in",
    "read_json",
]

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # what peft's load_peft_weights reads


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in `path`; a file that is not JSON (or not UTF-8) is a ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged: not a JSON file ({err})") from None


def check_safetensors(path: str | os.PathLike, remedy: str) -> list[str]:
    """The tensor names of the safetensors file `path`; one safetensors cannot read (truncated, garbage, a bad
    header) is a ValueError naming it, its size and `remedy` (what the user can do)."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"cannot read the weights {path} ({os.path.getsize(path)} bytes): {err}. The file is truncated or "
            f"corrupted; {remedy}"
        ) from None


def check_safetensors_in(folder: str | os.PathLike, remedy: str) -> None:
    """`check_safetensors` for every `*.safetensors` file in a local `folder`, its subfolders included."""
    for path in sorted(Path(folder).rglob("*.safetensors")):
        check_safetensors(path, remedy)


def check_model_folder(source: str | os.PathLike) -> None:
    """A local model folder (anything else is left to transformers) holds a config.json and weights safetensors can
    read; otherwise a FileNotFoundError / ValueError naming the folder or the file (transformers' errors did not name
    it, or ended in a traceback)."""
    folder = Path(source)
    if not folder.is_dir():
        return
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a model folder (no config.json)")
    read_json(folder / "config.json")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise FileNotFoundError(
            f"{folder} holds a config.json but no weights (model.safetensors): copy the weights in, or save the model "
            "again"
        )
    for path in sorted(folder.glob("*.safetensors")):
        check_safetensors(path, "save the model again or download it again")


def check_adapter_folder(folder: str | os.PathLike) -> None:
    """A local adapter folder holds a readable adapter_config.json and adapter weights safetensors can read."""
    folder = Path(folder)
    read_json(folder / "adapter_config.json")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise FileNotFoundError(
            f"{folder} holds an adapter_config.json but no adapter weights ({ADAPTER_WEIGHTS[0]}): copy them in, or "
            "save the adapter again"
        )
    if (folder / ADAPTER_WEIGHTS[0]).is_file():
        check_safetensors(folder / ADAPTER_WEIGHTS[0], "save the adapter again or download it again")
