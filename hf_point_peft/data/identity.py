"""What a checkpoint records about the files a run read (`--data-path`), so that resuming on the same path with other
files there (data replaced, added or rewritten since) is refused instead of training on them silently.

The record is the files' names, sizes and modification times, not their bytes (ModelNet40's text files are 1.6 GB,
read again at every start); the caches `datasets` adds beside a saved dataset are left out. A copy of the same data
elsewhere is another `--data-path`, refused on its own; files touched without a change read as changed (restore
them, or start the run again)."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["data_files_record"]


def _cache(path: Path) -> bool:
    """A file `datasets` writes beside a saved dataset when it is read and transformed (`cache-<fingerprint>.arrow`),
    not part of the data."""
    return path.name.startswith("cache-") and path.suffix == ".arrow"


def data_files_record(data_path: str | os.PathLike | None) -> str | None:
    """'N files, B bytes, newest modified <UTC time>, <digest>' of the files at `data_path` (a file, or every file
    under a folder); None without a path (generated data) or where nothing is there."""
    if data_path is None:
        return None
    root = Path(data_path)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not _cache(p))
    digest, total, newest = hashlib.sha256(), 0, 0
    for path in files:
        stat = path.stat()
        name = path.name if path == root else path.relative_to(root).as_posix()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        total += stat.st_size
        newest = max(newest, stat.st_mtime_ns)
    when = datetime.fromtimestamp(newest / 1e9, tz=timezone.utc).isoformat(timespec="seconds")
    return f"{len(files)} files, {total} bytes, newest modified {when}, {digest.hexdigest()[:12]}"
