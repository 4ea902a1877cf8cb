"""`point-peft benchmark` end to end on a tiny backbone: one table, JSON and plot, ratios to full fine-tuning from the
same run, the targets check, and --resume reusing finished methods (no timing is asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import TINY

import hf_point_peft  # noqa: F401
from hf_point_peft import PointTransformerConfig, PointTransformerModel
from hf_point_peft.training.benchmark import BenchmarkOptions, check_targets, run_benchmark


@pytest.fixture
def backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_POINT_PEFT_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    path = tmp_path / "backbone"
    PointTransformerModel(PointTransformerConfig(**TINY)).save_pretrained(path)
    return path


def options(backbone, out, **kw) -> BenchmarkOptions:
    args = {
        "output_dir": str(out),
        "methods": ["linear", "pointgst"],
        "backbone": str(backbone),
        "dataset_options": {"train_per_class": 3, "test_per_class": 1, "num_points": 160},
        "epochs": 1,
        "batch_size": 8,
        "num_points": 128,
        "cost_batch": 4,
        "cost_steps": 1,
        "cost_rounds": 2,
        "cpu": True,
        "command": "point-peft benchmark (test)",
        **kw,
    }
    return BenchmarkOptions(**args)


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_benchmark_writes_table_json_plot_and_resumes(backbone, tmp_path):
    out = tmp_path / "bench"
    methods = ["linear", "pointgst", "scratch"]
    summary = run_benchmark(options(backbone, out, methods=methods), log=lambda *a: None)
    assert [r["key"] for r in summary["rows"]] == ["full", "linear", "pointgst", "scratch"]  # full: the reference
    full, linear, gst, scratch = summary["rows"]
    # scratch of a backbone folder ("scratch:FOLDER") is full fine-tuning's architecture and method: full's cost
    assert scratch["backbone"].startswith("scratch:") and scratch["step_seconds"] == full["step_seconds"]
    assert "scratch" not in json.loads((out / "costs.json").read_text())["costs"]
    assert full["step_time_ratio"] == full["peak_memory_ratio"] == full["inference_ratio"] == 1.0
    assert gst["trainable_parameters"] < full["trainable_parameters"] and linear["trainable_parameters"] > 0
    for row in summary["rows"]:
        assert 0.0 <= row["final_epoch_test_accuracy"] <= 1.0 and row["step_seconds"] > 0
        assert row["peak_memory_bytes"] > 0 and row["saved_bytes"] > 0
    assert gst["saved_bytes"] < full["saved_bytes"]  # an adapter file against a whole model
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["rows"] == summary["rows"] and saved["command"] == "point-peft benchmark (test)"
    text = (out / "BENCHMARK.md").read_text()
    assert "point-peft benchmark (test)" in text and "| PointGST |" in text and "final-epoch, single-view" in text
    assert (out / "accuracy_vs_parameters.png").stat().st_size > 1000
    control = summary["cost_control"]  # the linear probe's inference against full's: the same forward
    assert control["ratio"] == linear["inference_seconds"] / full["inference_seconds"]
    assert "Cost control: linear probe inference / full fine-tuning inference" in text
    assert len(gst["step_seconds_rounds"]) == 2  # every method timed in both rounds
    assert {t["target"] for t in summary["targets"]} >= {
        "PointGST trains <= 3% of the parameters (of full fine-tuning's count)"
    }
    # resume: every method finished, so nothing is trained or measured again and the figures are the same
    again = run_benchmark(options(backbone, out, methods=methods, resume=True), log=lambda *a: None)
    assert [r["step_seconds"] for r in again["rows"]] == [r["step_seconds"] for r in summary["rows"]]
    # the training time is the runs' own (per-epoch seconds in their history), not the resumed call's
    assert [r["train_wall_seconds"] for r in again["rows"]] == [r["train_wall_seconds"] for r in summary["rows"]]
    assert [r["final_epoch_test_accuracy"] for r in again["rows"]] == [
        r["final_epoch_test_accuracy"] for r in summary["rows"]
    ]


def test_targets_report_misses_with_the_figure():
    rows = [
        {"key": "full", "label": "full", "final_epoch_test_accuracy": 0.9, "trainable_parameters": 1000},
        {
            "key": "pointgst",
            "label": "PointGST",
            "final_epoch_test_accuracy": 0.88,
            "trainable_parameters": 80,
            "step_time_ratio": 0.5,
            "peak_memory_ratio": 0.7,
        },
        {"key": "linear", "label": "linear", "final_epoch_test_accuracy": 0.89, "trainable_parameters": 10},
    ]
    checks = {c["target"]: c for c in check_targets(rows)}
    assert checks["PointGST accuracy >= full fine-tuning - 0.5 points"] == {
        "target": "PointGST accuracy >= full fine-tuning - 0.5 points",
        "measured": "-2.00 points",
        "met": False,
    }
    assert checks["PointGST trains <= 3% of the parameters (of full fine-tuning's count)"]["met"] is False  # 8%
    assert checks["PointGST step time <= 0.85x full"]["met"] is True
    assert checks["PointGST peak memory <= 0.6x full"]["measured"] == "0.70x"
    assert checks["PointGST beats the linear probe"]["met"] is False


def test_an_off_control_withholds_the_time_ratios():
    rows = [
        {"key": "full", "label": "full", "final_epoch_test_accuracy": 0.9, "trainable_parameters": 1000},
        {
            "key": "pointgst",
            "label": "PointGST",
            "final_epoch_test_accuracy": 0.9,
            "trainable_parameters": 20,
            "step_time_ratio": 0.1,
            "peak_memory_ratio": 0.5,
        },
    ]
    checks = {c["target"]: c for c in check_targets(rows, timing_reliable=False)}
    assert checks["PointGST step time <= 0.85x full"]["met"] is None  # not judged
    assert checks["PointGST peak memory <= 0.6x full"]["met"] is True  # memory does not depend on the load


def test_unknown_method_is_refused(backbone, tmp_path):
    with pytest.raises(ValueError, match=r"unknown benchmark method\(s\) \['adapterx'\]"):
        run_benchmark(options(backbone, tmp_path / "x", methods=["adapterx"]), log=lambda *a: None)


def test_an_earlier_benchmark_is_never_replaced_unasked(backbone, tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "benchmark_options.json").write_text("{}")  # what every benchmark writes first
    with pytest.raises(ValueError, match="bench already holds a benchmark: pass --resume .* --overwrite-output-dir"):
        run_benchmark(options(backbone, out, methods=["linear"]), log=lambda *a: None)
    with pytest.raises(ValueError, match="overwrite_output_dir.*contradicts resume"):
        run_benchmark(options(backbone, out, methods=["linear"], resume=True, overwrite_output_dir=True))
    assert [p.name for p in out.iterdir()] == ["benchmark_options.json"]


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_resume_with_other_settings_is_refused(backbone, tmp_path):
    out = tmp_path / "bench"
    run_benchmark(options(backbone, out, methods=["linear"]), log=lambda *a: None)
    with pytest.raises(ValueError, match="cannot resume the benchmark.*epochs: 1 there vs 2 now"):
        run_benchmark(options(backbone, out, methods=["linear"], epochs=2, resume=True), log=lambda *a: None)


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_resume_never_reuses_a_run_made_with_other_settings(backbone, tmp_path):
    """A benchmark with other settings and fewer methods rewrites the folder's settings but leaves the other runs;
    resuming with the new settings must not take those runs as its own."""
    out = tmp_path / "bench"
    run_benchmark(options(backbone, out, methods=["linear", "pointgst"]), log=lambda *a: None)
    run_benchmark(options(backbone, out, methods=["linear"], num_points=144, overwrite_output_dir=True), log=print)
    with pytest.raises(ValueError, match=r"runs/pointgst: it was made with other settings.*num_points: 128 there"):
        run_benchmark(options(backbone, out, methods=["linear", "pointgst"], num_points=144, resume=True), log=print)
    # a fresh run into the same folder replaces the earlier run's checkpoints instead of mixing with them
    again = run_benchmark(
        options(backbone, out, methods=["pointgst"], num_points=144, overwrite_output_dir=True), log=lambda *a: None
    )
    assert again["options"]["num_points"] == 144


def test_scratch_row_of_a_custom_backbone_is_its_architecture_with_random_weights():
    """Before, a benchmark on `--backbone FOLDER` ran its "from scratch" row on the pre-trained FOLDER itself."""
    import torch

    from hf_point_peft.training.backbones import embedded_backbone_path, load_classifier, resolve_backbone
    from hf_point_peft.training.benchmark import BENCHMARK_METHODS, BenchmarkOptions, _backbone, _backbone_label

    folder = str(embedded_backbone_path())
    options = BenchmarkOptions(backbone=folder)
    assert _backbone(BENCHMARK_METHODS["scratch"], options) == f"scratch:{folder}"
    assert _backbone(BENCHMARK_METHODS["scratch"], BenchmarkOptions()) == "scratch"
    assert resolve_backbone(f"scratch:{folder}") == (folder, False)
    # the table names the backbone each row ran on, never a path of this machine
    assert _backbone_label(f"scratch:{folder}") == "scratch:hf_point_peft:embedded/pointmae-synthetic-small"
    assert _backbone_label("embedded") == "embedded" and _backbone_label("minilm") == "minilm"
    torch.manual_seed(0)
    scratch = load_classifier(f"scratch:{folder}", num_labels=3, log=lambda *a: None)
    pretrained = load_classifier(folder, num_labels=3, log=lambda *a: None)
    assert scratch.config.hidden_size == pretrained.config.hidden_size
    weight = "point_transformer.encoder.layers.0.attn.qkv.weight"
    assert not torch.equal(scratch.state_dict()[weight], pretrained.state_dict()[weight])
