"""Masked point modeling pre-training (`point-peft pretrain`): the saved encoder, its model card, resume, and that
fine-tuning can start from what it wrote."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

import hf_point_peft  # noqa: F401
from hf_point_peft import AutoModelForPointCloudClassification, PointTransformerModel
from hf_point_peft.cli import main as cli
from hf_point_peft.training.outputs import ENCODER_FILES
from hf_point_peft.training.pretrain import PretrainJob, run_pretrain

MODEL = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "num_groups": 16,
    "group_size": 8,
    "patch_first_channels": [16, 32],
    "patch_second_channels": [32],
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 4,
}
DATA = {"train_per_class": 2, "test_per_class": 1, "num_points": 160, "seed": 1}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_POINT_PEFT_CACHE", str(tmp_path / "cache"))


def pretrain_job(out, **kw) -> PretrainJob:
    args = {
        "dataset_options": DATA,
        "model_config": MODEL,
        "output_dir": str(out),
        "epochs": 2,
        "batch_size": 10,
        "warmup_epochs": 0.5,
        "num_points": 128,
        "progress": False,
        "command": "point-peft pretrain (test)",
        **kw,
    }
    return PretrainJob(**args)


def test_pretrain_writes_encoder_card_and_metrics(tmp_path):
    out = tmp_path / "pt"
    results = run_pretrain(pretrain_job(out, name="tiny-mae"), log=lambda *a: None)
    encoder = out / "encoder"
    assert {"config.json", "model.safetensors", "README.md", "pretrain_metrics.json"} <= {
        p.name for p in encoder.iterdir()
    }
    assert len(results["history"]) == 2 and results["training_clouds"] == 30
    assert all(r["train_loss"] > 0 and r["train_loss"] == r["train_loss"] for r in results["history"])
    # only the encoder is saved: no decoder / mask token keys
    keys = load_file(encoder / "model.safetensors").keys()
    assert keys and not any("decoder" in k or "mask_token" in k for k in keys)
    assert results["encoder_parameters"] == sum(
        p.numel() for p in PointTransformerModel.from_pretrained(encoder).parameters()
    )
    card = ModelCard.load(encoder / "README.md")
    assert card.data.model_name == "tiny-mae" and card.data.library_name == "transformers"
    assert "point-peft pretrain (test)" in card.text and "import hf_point_peft" in card.text
    assert f"{results['final_loss']:.5f}" in card.text
    saved = json.loads((encoder / "pretrain_metrics.json").read_text())
    assert saved["job"]["seed"] == 0 and saved["job"]["dataset_options"] == DATA
    # the encoder is a backbone for fine-tuning: a classifier loads its weights and adds a new head
    classifier = AutoModelForPointCloudClassification.from_pretrained(encoder, num_labels=15)
    pretrained = PointTransformerModel.from_pretrained(encoder).state_dict()
    for name, value in classifier.point_transformer.state_dict().items():
        assert torch.equal(value, pretrained[name]), name


def test_pretrain_keeps_a_users_files_and_refuses_a_batch_larger_than_the_data(tmp_path):
    out = tmp_path / "pt"
    run_pretrain(pretrain_job(out, epochs=1), log=lambda *a: None)
    assert {p.name for p in (out / "encoder").iterdir()} == ENCODER_FILES  # what the preflight allows
    (out / "encoder" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"encoder holds files this output does not write \(notes.txt\)"):
        run_pretrain(pretrain_job(out, epochs=1, overwrite_output_dir=True), log=lambda *a: None)
    assert (out / "encoder" / "notes.txt").read_text() == "mine"
    # 30 training clouds: a batch of 31 would leave every epoch empty (and report a loss of 0)
    with pytest.raises(ValueError, match="the training split has 30 clouds, fewer than batch_size 31"):
        run_pretrain(pretrain_job(tmp_path / "big", batch_size=31), log=lambda *a: None)
    assert not (tmp_path / "big" / "encoder").exists()


def test_pretrain_resume_continues_where_it_stopped(tmp_path):
    reference = run_pretrain(pretrain_job(tmp_path / "a"), log=lambda *a: None)
    out = tmp_path / "b"
    run_pretrain(pretrain_job(out), log=lambda *a: None)
    # as if the run had been killed during its second epoch: only the first epoch's checkpoint survives
    shutil.rmtree(out / "checkpoints" / "epoch-0001")
    shutil.rmtree(out / "encoder")
    logs = []
    resumed = run_pretrain(pretrain_job(out, resume=True), log=logs.append)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in reference["history"]]
    assert not any("epoch 1/2" in line for line in logs), "the first epoch was trained again"
    assert not any("schedule_change" in r for r in resumed["history"]), "the same schedule read as a changed one"
    a = load_file(tmp_path / "a" / "encoder" / "model.safetensors")
    b = load_file(out / "encoder" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_more_epochs_says_the_schedule_changed(tmp_path, caplog):
    """`--epochs` may grow on resume; the cosine schedule is then recomputed for the new length, so the learning rate
    jumps (after a finished decay, a warm restart): the log, the metrics and the encoder's card all say so."""
    out = tmp_path / "pt"
    first = run_pretrain(pretrain_job(out, epochs=1, warmup_epochs=0.0), log=lambda *a: None)
    ended = first["history"][-1]["learning_rate"]
    assert ended == pytest.approx(1e-6)  # the one-epoch schedule decayed to its minimum
    with caplog.at_level("INFO", logger="hf_point_peft"):
        resumed = run_pretrain(pretrain_job(out, epochs=3, warmup_epochs=0.0, resume=True), log=lambda *a: None)
    change = resumed["history"][0]["schedule_change"]
    assert change["epochs"] == 3 and change["learning_rate_before"] == ended
    assert change["learning_rate_after"] > 100 * ended  # a third of the way into a 3-epoch cosine
    assert resumed["history"][1]["learning_rate"] > ended and len(resumed["history"]) == 3
    assert any("--epochs 3 changes the learning-rate schedule" in r.getMessage() for r in caplog.records)
    saved = json.loads((out / "encoder" / "pretrain_metrics.json").read_text())
    assert saved["history"][0]["schedule_change"] == change
    card = (out / "encoder" / "README.md").read_text()
    assert "Resumed after epoch 1 with `--epochs 3`" in card and f"{ended:.3g} to" in card


def test_pretrain_resume_refuses_another_architecture(tmp_path):
    out = tmp_path / "pt"
    run_pretrain(pretrain_job(out, epochs=1), log=lambda *a: None)
    deeper = {**MODEL, "num_hidden_layers": 3}
    with pytest.raises(ValueError, match="cannot resume.*model_config: checkpoint"):  # refused before building it
        run_pretrain(pretrain_job(out, epochs=2, resume=True, model_config=deeper), log=lambda *a: None)


def test_pretrain_cli_records_the_command(tmp_path):
    out = tmp_path / "cli"
    args = [
        "pretrain",
        "--output-dir",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--num-points",
        "128",
        "--no-progress",
        *[f"--dataset-option={k}={v}" for k, v in DATA.items()],
        *[f"--model-option={k}={json.dumps(v)}" for k, v in MODEL.items()],
    ]
    sources = tmp_path / "SOURCES.md"
    sources.write_text("Package `shapes-data` 1.0 (CC0): 30 models.")
    assert cli([*args, "--data-sources", str(sources), "--license", "cc0-1.0"]) == 0
    card = (out / "encoder" / "README.md").read_text()
    assert "point-peft pretrain --output-dir " + str(out) in card
    assert ModelCard.load(out / "encoder" / "README.md").data.license == "cc0-1.0"  # the data's licence, not ours
    assert "**Licence of the weights:** cc0-1.0 (the licence of the pre-training data" in card
    assert "## Where the pre-training data come from\n\nPackage `shapes-data` 1.0 (CC0): 30 models." in card
    assert cli(["pretrain", "--data-sources", str(tmp_path / "missing.md")]) == 2
    assert json.loads((out / "encoder" / "config.json").read_text())["hidden_size"] == 48
    assert cli(["pretrain", "--model-option", "hidden_size"]) == 2  # key=value expected


@pytest.mark.parametrize("name", ["pointmae-synthetic-small", "pointmae-real-small"])
def test_embedded_backbone_is_shipped_with_the_card_that_made_it(name):
    from hf_point_peft.naming import embedded_folder

    folder = embedded_folder(name)
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size <= 25 * 2**20, size
    card = ModelCard.load(folder / "README.md")
    metrics = json.loads((folder / "pretrain_metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    job = metrics["job"]
    assert job["command"].startswith("point-peft pretrain ") and job["command"] in card.text
    for key, value in job["model_config"].items():  # the recorded command made exactly this architecture
        assert config[key] == value, key
    if name == "pointmae-synthetic-small":
        assert job["dataset"] == "synthetic" and job["dataset_options"]["seed"] != 0  # not the fine-tuning data
    else:  # real objects: the card says where they come from, under which licence, how many
        assert job["dataset"] == "disk"
        assert "0ad-data 0.0.26-1" in card.text and "CC-BY-SA-3.0" in card.text and "3654 distinct models" in card.text
        assert card.data.license == "cc-by-sa-3.0"  # the weights carry the models' ShareAlike licence
    assert f"{metrics['final_loss']:.5f}" in card.text
    model = PointTransformerModel.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == metrics["encoder_parameters"]


@pytest.mark.parametrize("name", ["pointmae-synthetic-small", "pointmae-real-small"])
def test_embedded_card_is_the_code_s_own_and_its_snippet_runs(name, tmp_path):
    """The shipped card is exactly what `rebuild_backbone_card` makes from the folder's metrics (nothing edited by
    hand), and its usage snippet runs as written in a fresh interpreter."""
    import re
    import subprocess
    import sys

    from hf_point_peft.naming import embedded_folder
    from hf_point_peft.training.pretrain import EMBEDDED_CARDS, rebuild_backbone_card

    folder = embedded_folder(name)
    rebuilt = tmp_path / "README.md"
    rebuild_backbone_card(folder, **EMBEDDED_CARDS[name]).save(rebuilt)
    assert rebuilt.read_text() == (folder / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", rebuilt.read_text(), re.S).group(1)
    snippet += "\nassert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0\nprint('ok')\n"
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
