"""Atomic checkpoints and run manifests.

Everything is written into a temporary sibling folder and moved into place with `os.replace`, so a process killed
mid-write leaves the previous checkpoint (or adapter) intact. A manifest records what a run trains (method, backbone,
dataset, labels, trainable parameter names) and every setting that changes its result; resuming with a different one
is refused with the differences named.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..atomic import atomic_directory, write_json_atomic
from ..files import check_safetensors_in, read_json
from .methods import without_default_options

__all__ = [
    "ResumeMismatch",
    "atomic_directory",
    "check_manifest",
    "check_run_folder",
    "check_resume_epoch",
    "clear_for_fresh_run",
    "latest_checkpoint",
    "prune_checkpoints",
    "result_settings",
    "start_or_resume",
    "training_seconds",
    "write_json_atomic",
]

_CHECKPOINT = re.compile(r"^epoch-(\d{4,})$")


def _checkpoint_folders(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every `epoch-NNNN` folder in `folder` (complete or not) with its epoch, in epoch order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), c) for c in folder.iterdir() if (m := _CHECKPOINT.match(c.name)) and c.is_dir())


def latest_checkpoint(folder: str | os.PathLike) -> tuple[int, Path] | None:
    """The highest complete `epoch-NNNN` checkpoint in `folder` (temporary folders are ignored)."""
    found = [(epoch, path) for epoch, path in _checkpoint_folders(folder) if (path / "manifest.json").is_file()]
    return found[-1] if found else None


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    found = _checkpoint_folders(folder)
    for _, path in found[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def start_or_resume(
    accelerator,
    folder: Path,
    manifest: dict[str, Any],
    epochs: int,
    resume: bool,
    overwrite: bool,
    log=None,
    scheduler=None,
) -> tuple[list[dict[str, Any]], int]:
    """(history, first epoch to run): a fresh start (after `clear_for_fresh_run`), or the state, history and epoch
    of the latest checkpoint in `folder`, checked against this run's manifest and epoch count. With `scheduler`, a
    resume that changes the learning-rate schedule (more `--epochs`) is recorded and logged (`_note_schedule_change`)."""
    if not resume:
        clear_for_fresh_run(folder, overwrite, remove=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        return [], 0
    found = latest_checkpoint(folder)
    if found is None:
        if log is not None:
            log(f"no checkpoint in {folder}: starting from scratch")
        return [], 0
    epoch, path = found
    check_manifest(read_json(path / "manifest.json"), manifest, path)
    check_resume_epoch(epoch, epochs, path)
    history = read_json(path / "history.json")
    check_safetensors_in(path / "state", f"delete {path} to resume from the checkpoint before it")
    accelerator.load_state(str(path / "state"))
    if log is not None:
        log(f"resumed from {path} (epoch {epoch + 1} of {epochs} done)")
    if scheduler is not None and history:
        _note_schedule_change(scheduler, history, epochs, log)
    return history, epoch + 1


def _note_schedule_change(scheduler, history: list[dict[str, Any]], epochs: int, log=None) -> None:
    """A resume with more `--epochs` recomputes the schedule for the new length, so the learning rate at the resumed
    step is the new schedule's, not the one the checkpoint's run reached (after a finished cosine decay, a warm
    restart). Never silent: logged, and kept on the checkpoint's last history row as `schedule_change`, which the
    metrics and the pre-trained encoder's card carry."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the torch scheduler
    before = history[-1].get("learning_rate")
    after = inner.base_lrs[0] * inner.lr_lambdas[0](inner.last_epoch)
    if before is None or math.isclose(before, after, rel_tol=1e-6, abs_tol=1e-12):
        return
    history[-1]["schedule_change"] = {"epochs": epochs, "learning_rate_before": before, "learning_rate_after": after}
    if log is not None:
        log(
            f"--epochs {epochs} changes the learning-rate schedule of the run resumed after epoch "
            f"{history[-1]['epoch']}: it is recomputed for {epochs} epochs, so the learning rate goes from "
            f"{before:.3g} to {after:.3g} here (recorded in the metrics as schedule_change)"
        )


_IDENTITY = (
    "method",
    "backbone",
    "backbone_weights",
    "model_type",
    "hidden_size",
    "dataset",
    "data_path_files",
    "num_labels",
    "trainable_parameter_names",
)
# compared only when the checkpoint records them (earlier versions' checkpoints do not)
_RECORDED_SINCE = ("backbone_weights", "data_path_files")
_SETTINGS_RECORDED_SINCE = ("eval_batch_size",)  # the same for settings


class ResumeMismatch(ValueError):
    """Resuming would continue another run: the settings that differ, each with the checkpoint's value and this
    run's. Settings that change the result (seed, learning rate, batch size, points, method / dataset / model
    options, data, ...) must match; `--epochs` may grow."""

    def __init__(self, checkpoint: Path, diffs: list[tuple[str, Any, Any]]) -> None:
        self.checkpoint, self.diffs = checkpoint, diffs
        super().__init__(self.cli_message(lambda name: name))

    def cli_message(self, flag) -> str:
        shown = "; ".join(f"{flag(name)}: checkpoint {a!r} vs this run {b!r}" for name, a, b in self.diffs)
        return (
            f"cannot resume from {self.checkpoint}: it was made by a different run set-up ({shown}); pass the "
            "checkpoint's values, or --overwrite-output-dir to start again, or another --output-dir"
        )


def result_settings(values: dict[str, Any], exclude: tuple[str, ...]) -> dict[str, Any]:
    """The settings that change a run's result, in the JSON form a checkpoint manifest keeps them."""
    return json.loads(json.dumps({k: v for k, v in values.items() if k not in exclude}, default=str))


def _normalised(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Fine-tuning settings with the method options given at their default value left out, so that a run started
    with `--method-option rank=36` (PointGST's default) resumes without it and the other way round."""
    if not settings or not isinstance(settings.get("method_options"), dict):
        return settings
    options = without_default_options(settings.get("method"), settings["method_options"])
    return {**settings, "method_options": options}


def check_manifest(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to resume when the checkpoint was made by a different run set-up or with other settings. Only the keys
    `current` has are compared (a check before the model is built knows the settings, not the parameter names), and
    settings only when the checkpoint records them (checkpoints of earlier versions do not)."""
    diffs = []
    for key in (k for k in _IDENTITY if k in current and (k in saved or k not in _RECORDED_SINCE)):
        a, b = saved.get(key), current.get(key)
        if a != b:
            if key == "trainable_parameter_names":
                a, b = f"{len(a or [])} names", f"{len(b or [])} names (different set)"
            diffs.append((key, a, b))
    saved_settings, settings = _normalised(saved.get("settings")), _normalised(current.get("settings"))
    if saved_settings is not None and settings is not None:
        for key in sorted(set(saved_settings) | set(settings)):
            if key in _SETTINGS_RECORDED_SINCE and key not in saved_settings:
                continue
            if saved_settings.get(key) != settings.get(key) and key not in _IDENTITY:
                diffs.append((key, saved_settings.get(key), settings.get(key)))
    if diffs:
        raise ResumeMismatch(checkpoint, diffs)


def check_run_folder(folder: Path, current: dict[str, Any], epochs: int, resume: bool, overwrite: bool) -> None:
    """Before any data are read: a fresh run must not meet another run's checkpoints (unless `overwrite`), a resumed
    one must continue a run of the same set-up and settings with no more epochs done than `epochs`. Writes nothing."""
    if not resume:
        clear_for_fresh_run(folder, overwrite, remove=False)
        return
    found = latest_checkpoint(folder)
    if found is not None:
        epoch, path = found
        check_manifest(read_json(path / "manifest.json"), current, path)
        check_resume_epoch(epoch, epochs, path)


def check_resume_epoch(epoch: int, epochs: int, checkpoint: Path) -> None:
    """Refuse to resume from a checkpoint that is past the run's last epoch (a run of more epochs)."""
    if epoch + 1 > epochs:
        raise ValueError(
            f"cannot resume: checkpoint {checkpoint} has {epoch + 1} epochs done, but this run has only {epochs}; "
            "pass --epochs >= that, or another output directory"
        )


def training_seconds(history: list[dict[str, Any]]) -> float:
    """Training + evaluation time over every epoch in `history`, including epochs run before a resume."""
    return float(sum(r.get("seconds", 0.0) for r in history))


def clear_for_fresh_run(folder: str | os.PathLike, overwrite: bool, remove: bool = True) -> None:
    """A run that does not resume must not meet an earlier run's checkpoints: pruning would keep the old, higher
    epochs and delete the new ones, and a later resume would continue the old run. Refused unless `overwrite`,
    then the old checkpoints are deleted (by the caller that passes `remove`, the main process)."""
    found = latest_checkpoint(folder)
    if found is None:
        return
    if not overwrite:
        raise ValueError(
            f"{folder} already holds checkpoints of an earlier run (last: {found[1].name}, {found[0] + 1} epochs "
            "done); pass --resume to continue it, --overwrite-output-dir to start again, or another --output-dir"
        )
    if remove:
        for _, path in _checkpoint_folders(folder):
            shutil.rmtree(path)
