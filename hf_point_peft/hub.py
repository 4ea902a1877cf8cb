"""Hub uploads: `push_folder` uploads a saved adapter (or model) folder through huggingface_hub, as
`PeftModel.push_to_hub` does. The cards the folder carries are written by `cards.py` (runs) and `tuners/card.py`
(every `save_pretrained`).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from .files import check_adapter_folder, check_model_folder

__all__ = ["push_folder"]


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload a saved adapter (or model) folder; returns the commit URL."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds neither an adapter (adapter_config.json) nor a model (config.json)")
    if (folder / "adapter_config.json").is_file():  # nothing incomplete or damaged reaches the Hub
        check_adapter_folder(folder)
    else:
        check_model_folder(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.parts[len(folder.parts) :])
    )
    operations = [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files
    ]
    info = api.create_commit(
        repo_id=repo_id,
        operations=operations,
        commit_message=commit_message or f"Upload {folder.name} with hf_point_peft",
    )
    return str(getattr(info, "commit_url", info))
