"""The validation split keeps each object on one side, and says so when it cannot (data/splits.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Value
from huggingface_hub import ModelCard
from tiny import TINY

from hf_point_peft import PointTransformerConfig, PointTransformerModel
from hf_point_peft.data import train_validation_split, validation_grouping
from hf_point_peft.errors import SettingError
from hf_point_peft.training.job import FinetuneJob, run_finetune
from hf_point_peft.training.loop import TrainingArguments


def clouds(objects: int = 24, copies: int = 5, classes: int = 3, seed: int = 0) -> Dataset:
    """`copies` perturbed clouds of each of `objects` objects, the copies of an object in scattered rows."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(objects * copies)
    obj = rows % objects
    base = rng.normal(size=(objects, 160, 3)).astype(np.float32)
    points = base[obj] + 0.01 * rng.normal(size=(len(obj), 160, 3)).astype(np.float32)
    data = {"points": list(points), "label": (obj % classes).tolist(), "group": [f"object-{o}" for o in obj]}
    return Dataset.from_dict(data).cast_column("label", ClassLabel(names=[f"class-{c}" for c in range(classes)]))


def test_no_object_is_on_both_sides_and_every_class_is_validated():
    data = clouds()
    train, validation = train_validation_split(data, 0.25, seed=3, group_by="group")
    train_groups, validation_groups = set(train["group"]), set(validation["group"])
    assert train_groups and validation_groups and not train_groups & validation_groups
    assert len(train) + len(validation) == len(data)
    assert len(validation) % 5 == 0  # whole objects: all five copies
    assert set(validation["label"]) == {0, 1, 2}  # stratified over the objects of each class
    assert len(validation_groups) == 6  # a quarter of the 8 objects of each class


def test_a_split_by_clouds_puts_copies_on_both_sides():
    """The leak the grouping prevents: without it, copies of one object land in both parts."""
    train, validation = train_validation_split(clouds(), 0.25, seed=3)
    assert set(train["group"]) & set(validation["group"])


def test_one_cloud_per_group_is_the_same_draw_as_cloud_by_cloud():
    data = clouds(objects=40, copies=1)
    by_group = train_validation_split(data, 0.2, seed=1, group_by="group")
    by_cloud = train_validation_split(data, 0.2, seed=1)
    for a, b in zip(by_group, by_cloud):
        assert a["group"] == b["group"]


def test_what_the_split_says_about_itself():
    assert validation_grouping("disk:/data", ["points", "label", "group"]) == (
        "group",
        {
            "validation_grouping": "object-disjoint: clouds with the same 'group' are on one side",
            "validation_may_share_objects": False,
        },
    )
    column, info = validation_grouping("disk:/data", ["points", "label", "scan"], "scan")
    assert column == "scan" and not info["validation_may_share_objects"]
    column, info = validation_grouping("modelnet40", ["points", "label", "id"])
    assert column is None and not info["validation_may_share_objects"]
    column, info = validation_grouping("scanobjectnn-pb_t50_rs", ["points", "label", "id"])
    assert column is None and info["validation_may_share_objects"]
    assert "may share objects with training" in info["validation_grouping"]
    with pytest.raises(SettingError, match=r"no such column; it has points, label, id"):
        validation_grouping("disk", ["points", "label", "id"], "object")


def _run(tmp_path, data: DatasetDict, name: str, **training):
    data.save_to_disk(str(tmp_path / name))
    torch.manual_seed(0)
    PointTransformerModel(PointTransformerConfig(**TINY)).save_pretrained(tmp_path / "backbone")
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{name}"),
        epochs=1,
        batch_size=8,
        eval_batch_size=16,
        num_points=128,
        warmup_epochs=0.5,
        progress=False,
        validation_fraction=0.25,
        **training,
    )
    job = FinetuneJob(
        backbone=str(tmp_path / "backbone"),
        dataset="disk",
        data_path=str(tmp_path / name),
        method_options={"rank": 4, "local_size": 8},
        training=args,
    )
    run_finetune(job, log=lambda *_: None)
    metrics = json.loads((tmp_path / f"run-{name}" / "metrics.json").read_text())
    card = ModelCard.load(tmp_path / f"run-{name}" / "adapter" / "README.md").text
    return metrics, card


def test_a_run_records_how_its_validation_split_was_drawn(tmp_path):
    train, test = clouds(objects=12, copies=4), clouds(objects=6, copies=1, seed=1)
    grouped = DatasetDict({"train": train, "test": test})
    metrics, card = _run(tmp_path, grouped, "grouped")
    assert metrics["validation_may_share_objects"] is False
    assert "object-disjoint" in metrics["validation_grouping"] and "object-disjoint" in card
    assert metrics["validation_samples"] % 4 == 0  # whole objects
    ungrouped = DatasetDict({"train": train.remove_columns("group"), "test": test.remove_columns("group")})
    metrics, card = _run(tmp_path, ungrouped, "ungrouped")
    assert metrics["validation_may_share_objects"] is True
    assert "may share objects with training" in card
    named = DatasetDict({"train": train.rename_column("group", "scan"), "test": test.rename_column("group", "scan")})
    metrics, _ = _run(tmp_path, named, "named", validation_group_by="scan")
    assert metrics["validation_may_share_objects"] is False and "'scan'" in metrics["validation_grouping"]


def test_labels_without_class_names_are_refused_clearly(tmp_path):
    train = clouds(objects=12, copies=2).cast_column("label", Value("int64"))
    with pytest.raises(ValueError, match=r"not a datasets.ClassLabel.*cast_column"):
        _run(tmp_path, DatasetDict({"train": train, "test": train}), "plain-labels")
