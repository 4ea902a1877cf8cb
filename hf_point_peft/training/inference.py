"""Evaluating a saved adapter or model (`point-peft evaluate`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..data import PointCloudCollator, check_dataset_source, load_point_dataset
from ..errors import SettingError
from .evaluation import PROTOCOL, evaluate_accuracy
from .job import load_trained
from .loop import _indexed

__all__ = ["evaluate_saved"]


def _check_saved_folder(path: Path) -> None:
    """An adapter or model folder; otherwise an error that says what the folder holds and what to pass."""
    if not path.is_dir():
        raise FileNotFoundError(f"no adapter or model folder at {path}")
    if not (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        inside = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "nothing"
        # peft's save_pretrained puts an adapter not named "default" into a subfolder of that name
        nested = sorted(p.name for p in path.iterdir() if (p / "adapter_config.json").is_file())
        hint = (
            f"pass {' or '.join(str(path / n) for n in nested)} (an adapter saved under a name other than "
            "'default' lies in a subfolder of that name)"
            if nested
            else "pass <output-dir>/adapter or <output-dir>/model of a finetune run"
        )
        raise FileNotFoundError(
            f"{path} is neither an adapter folder (no adapter_config.json) nor a model folder (no config.json); it "
            f"holds {inside}: {hint}"
        )


def evaluate_saved(
    path: str | os.PathLike,
    *,
    backbone: str | None = None,
    dataset: str | None = None,
    data_path: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    split: str = "test",
    num_points: int | None = None,
    batch_size: int = 64,
    vote: int = 0,
    mixed_precision: str = "no",
    cpu: bool = False,
) -> dict[str, Any]:
    """Accuracy of a folder written by `run_finetune`, with the dataset and point count it recorded unless given."""
    path = Path(path)
    _check_saved_folder(path)
    meta_file = path / "training_metrics.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    recorded = meta.get("job", {})
    dataset = dataset or recorded.get("dataset")
    if dataset is None:
        raise SettingError(
            "dataset",
            None,
            f"{path} does not record its dataset (it has no training_metrics.json of finetune): pass it",
        )
    if data_path is None and dataset == recorded.get("dataset"):
        data_path = recorded.get("data_path")
    if dataset_options is None or not dataset_options:
        dataset_options = recorded.get("dataset_options", {}) if dataset == recorded.get("dataset") else {}
    num_points = num_points or meta.get("arguments", {}).get("num_points") or 1024
    check_dataset_source(dataset, data_path, dataset_options)
    data = load_point_dataset(dataset, data_path, **dataset_options)
    if split not in data:
        raise SettingError("split", split, f"the dataset has no such split; it has {', '.join(data)}")
    model = load_trained(path, backbone=backbone)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    channels = getattr(model.config, "num_channels", 3) if hasattr(model, "config") else 3
    seed = meta.get("arguments", {}).get("seed", 0)
    collator = PointCloudCollator(num_points, False, channels=channels, seed=seed, keep_raw=vote > 0)
    loader = DataLoader(_indexed(data[split]), batch_size=batch_size, collate_fn=collator)
    model, loader = accelerator.prepare(model, loader)
    metrics = evaluate_accuracy(model, loader, accelerator, vote=vote, collator=collator)
    metrics["protocol"] = PROTOCOL if not vote else f"{vote}-view vote (mean of views)"
    metrics.update(path=str(path), dataset=dataset, split=split, num_points=num_points)
    return metrics
