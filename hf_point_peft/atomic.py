"""Atomic writes: a file or a whole folder is written beside its target and moved into place with `os.replace`, so
a process killed mid-write leaves the previous version intact. No dependency beyond the standard library, so that
every layer (models, training, hub) can use it."""

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
    "atomic_directories",
    "atomic_directory",
    "atomic_file",
    "refuse_foreign_files",
    "write_json_atomic",
    "write_text_atomic",
]


def _stamp() -> str:
    """The unique part of a temporary sibling's name: this process's id (so that a later write can tell the leftover
    of a killed process from a live process's work) and a random suffix."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _leftovers(target: Path, kind: str) -> list[Path]:
    """The temporary siblings of `target` (`kind`: 'tmp', 'old' or a file's 'tmp' + suffix) that a killed process
    left behind: those of a process that no longer runs (or of a version that did not record it)."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)-)?[0-9a-f]{{32}}\.{re.escape(kind)}$")
    found = []
    for path in target.parent.iterdir() if target.parent.is_dir() else ():
        match = pattern.match(path.name)
        if match and not (match.group(1) and _process_alive(int(match.group(1)))):
            found.append(path)
    return sorted(found)


def _sweep(target: Path) -> None:
    """Before writing `target`: remove what a process killed while writing it left beside it (a half-written
    `.tmp` folder; an `.old` copy the swap had not deleted yet). Where the kill came inside the swap (the old folder
    moved aside, the new one not yet in place), the old folder is put back first, so `target` is never lost."""
    olds = _leftovers(target, "old")
    if olds and not target.exists():
        newest = max(olds, key=lambda path: path.stat().st_mtime)  # several kills: the last complete version
        olds.remove(newest)
        os.replace(newest, target)
    for path in [*_leftovers(target, "tmp"), *olds]:
        shutil.rmtree(path, ignore_errors=True)


def atomic_file(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` (a sibling of `path` with the same suffix), then move it onto `path`."""
    path = Path(path)
    for leftover in _leftovers(path.with_name(path.stem), f"tmp{path.suffix}"):
        leftover.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.stem}.{_stamp()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return atomic_file(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_directory(target: str | os.PathLike, write: Callable[[Path], None], replace_foreign: bool = True) -> Path:
    """Call `write(tmp_dir)` then move the finished folder to `target`, replacing an existing one.

    The old folder is only removed after the new one is in place; at every moment either the old or the new
    complete folder exists under `target` (or its `.old` twin during the swap, which the next write of `target` puts
    back if a kill came in between). With `replace_foreign=False`, an
    existing `target` that holds entries the new folder does not (a user's own files, not an earlier version of
    this output) is left alone and a FileExistsError names them."""
    return atomic_directories([(target, write)], replace_foreign)[0]


def atomic_directories(
    outputs: list[tuple[str | os.PathLike, Callable[[Path], None]]], replace_foreign: bool = True
) -> list[Path]:
    """`atomic_directory` for folders that belong together (a converted base and its adapter): every folder is
    written and, with `replace_foreign=False`, every target checked before the first one is replaced, so a refusal
    or a failing writer leaves all of them as they were."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, write in outputs:
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            _sweep(target)
            tmp = target.with_name(f".{target.name}.{_stamp()}.tmp")
            tmp.mkdir()
            staged.append((target, tmp))
            write(tmp)
            _apply_umask(tmp)
        if not replace_foreign:
            for target, tmp in staged:
                refuse_foreign_files(target, {p.name for p in tmp.iterdir()})
        for target, tmp in staged:
            if target.exists():
                old = target.with_name(f".{target.name}.{_stamp()}.old")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
    finally:
        for _, tmp in staged:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return [target for target, _ in staged]


def refuse_foreign_files(target: str | os.PathLike, written: set[str]) -> None:
    """Refuse (FileExistsError naming them) a `target` folder that holds entries an output writing the names in
    `written` would not write, or a file where the folder goes: replacing it would delete the user's files."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder: choose a new or empty folder")
    foreign = sorted(p.name for p in target.iterdir()) if target.is_dir() else []
    foreign = [name for name in foreign if name not in written]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{target} holds files this output does not write ({shown}), which replacing it would delete: choose a "
            "new or empty folder, or move them"
        )


def _apply_umask(folder: Path) -> None:
    """Give written files the permissions the user's umask asks for: safetensors (and tempfile-based writers) create
    files readable by their owner only, which breaks sharing an adapter folder with colleagues or a web server."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
