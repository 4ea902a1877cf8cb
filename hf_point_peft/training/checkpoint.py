"""Atomic checkpoints and run manifests.

Everything is written into a temporary sibling folder and moved into place with `os.replace`, so a process killed
mid-write leaves the previous checkpoint (or adapter) intact. A manifest records what a run trains (method, backbone,
dataset, labels, trainable parameter names); resuming with a different one is refused with the differences named.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_directory",
    "check_manifest",
    "latest_checkpoint",
    "prune_checkpoints",
    "write_json_atomic",
]

_CHECKPOINT = re.compile(r"^epoch-(\d{4,})$")


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def atomic_directory(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_dir)` then move the finished folder to `target`, replacing an existing one.

    The old folder is only removed after the new one is in place; at every moment either the old or the new
    complete folder exists under `target` (or its `.old` twin during the swap)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        write(tmp)
        _apply_umask(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _apply_umask(folder: Path) -> None:
    """Give written files the permissions the user's umask asks for: safetensors (and tempfile-based writers) create
    files readable by their owner only, which breaks sharing an adapter folder with colleagues or a web server."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def latest_checkpoint(folder: str | os.PathLike) -> tuple[int, Path] | None:
    """The highest complete `epoch-NNNN` checkpoint in `folder` (temporary folders are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / "manifest.json").is_file():
            found.append((int(match.group(1)), child))
    return max(found) if found else None


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    folder = Path(folder)
    found = sorted((int(m.group(1)), c) for c in folder.iterdir() if (m := _CHECKPOINT.match(c.name)) and c.is_dir())
    for _, path in found[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def check_manifest(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to resume when the checkpoint was made by a different run set-up."""
    keys = ("method", "backbone", "model_type", "hidden_size", "dataset", "num_labels", "trainable_parameter_names")
    diffs = []
    for key in keys:
        if saved.get(key) != current.get(key):
            a, b = saved.get(key), current.get(key)
            if key == "trainable_parameter_names":
                a, b = f"{len(a or [])} names", f"{len(b or [])} names (different set)"
            diffs.append(f"{key}: checkpoint {a!r} vs this run {b!r}")
    if diffs:
        raise ValueError(f"cannot resume from {checkpoint}: it was made by a different run set-up ({'; '.join(diffs)})")
