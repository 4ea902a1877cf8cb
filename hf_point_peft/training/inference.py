"""Evaluating a saved adapter or model (`point-peft evaluate`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..data import PointCloudCollator, check_dataset_source, load_point_dataset
from ..errors import SettingError
from ..files import read_json
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


def _head_classes(model) -> int | None:
    """The class count of a loaded classifier: Any2Point's head is the method's own (its config), else the model's."""
    peft_config = getattr(model, "peft_config", {}).get(getattr(model, "active_adapter", None))
    count = getattr(peft_config, "num_labels", None)
    if count is None:
        count = getattr(getattr(model, "config", None), "num_labels", None)
    return count


def _check_classes(model, split_data, trained_names: list[str] | None, path: Path, dataset: str) -> None:
    """The head must predict the classes of the evaluated split, in their order: another class count fails inside the
    loss or reads as 0% accuracy, other names as a meaningless figure."""
    from datasets import ClassLabel

    feature = split_data.features.get("label")
    if not isinstance(feature, ClassLabel):  # integer labels: nothing says which class each number is
        raise SettingError(
            "dataset",
            dataset,
            f"the evaluated split's 'label' column is {feature!r}, not a datasets.ClassLabel, so its classes cannot be "
            f"matched with those {path} predicts: cast it first, e.g. data = data.cast_column('label', "
            "ClassLabel(names=[...])), and save again",
        )
    names = list(feature.names)
    count = _head_classes(model)
    if count is not None and count != len(names):
        raise SettingError(
            "dataset",
            dataset,
            f"{path} predicts {count} classes and this dataset has {len(names)} ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}): evaluate on the dataset it was trained for",
        )
    if trained_names and list(trained_names) != names:
        pairs = list(zip(trained_names, names))
        first = next((i for i, (there, here) in enumerate(pairs) if there != here), None)
        differs = (
            f"class {first} is {trained_names[first]!r} there and {names[first]!r} here"
            if first is not None
            else f"{len(trained_names)} classes there and {len(names)} here"
        )
        raise SettingError(
            "dataset",
            dataset,
            f"{path} was trained on other classes ({differs}): evaluate on the dataset it was trained for",
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
    batch_size: int | None = None,
    vote: int | None = None,
    mixed_precision: str = "no",
    cpu: bool = False,
) -> dict[str, Any]:
    """Accuracy of a folder written by `run_finetune`, with the dataset, point count, evaluation batch and vote it
    recorded unless given."""
    path = Path(path)
    _check_saved_folder(path)
    meta_file = path / "training_metrics.json"
    meta = read_json(meta_file) if meta_file.is_file() else {}
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
    arguments = meta.get("arguments", {})
    num_points = num_points or arguments.get("num_points") or 1024
    # the run's own evaluation batch: PointGST's default distance scale is the batch's (part of the result)
    batch_size = batch_size or arguments.get("eval_batch_size") or 64
    vote = (arguments.get("vote") or 0) if vote is None else vote  # the run's protocol: its figure is reproduced
    check_dataset_source(dataset, data_path, dataset_options)
    data = load_point_dataset(dataset, data_path, **dataset_options)
    if split not in data:
        raise SettingError("split", split, f"the dataset has no such split; it has {', '.join(data)}")
    model = load_trained(path, backbone=backbone)
    _check_classes(model, data[split], meta.get("label_names"), path, dataset)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    channels = getattr(model.config, "num_channels", 3) if hasattr(model, "config") else 3
    seed = arguments.get("seed", 0)
    collator = PointCloudCollator(num_points, False, channels=channels, seed=seed, keep_raw=vote > 0)
    loader = DataLoader(_indexed(data[split]), batch_size=batch_size, collate_fn=collator)
    model, loader = accelerator.prepare(model, loader)
    metrics = evaluate_accuracy(model, loader, accelerator, vote=vote, collator=collator)
    metrics["protocol"] = PROTOCOL if not vote else f"{vote}-view vote (mean of views)"
    metrics.update(path=str(path), dataset=dataset, split=split, num_points=num_points, batch_size=batch_size)
    return metrics
