"""The main job end to end on tiny data: training loop, protocol, saved adapter and card, evaluation in a fresh
process, resume after SIGKILL, atomic writes, multi-process equivalence and transformers' Trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from tiny import DATA, TINY, cli_args

import hf_point_peft  # noqa: F401
from hf_point_peft import PointTransformerConfig, PointTransformerModel
from hf_point_peft.cli import main as cli
from hf_point_peft.training.checkpoint import atomic_directory, latest_checkpoint, write_json_atomic
from hf_point_peft.training.job import FinetuneJob, run_finetune
from hf_point_peft.training.loop import TrainingArguments
from hf_point_peft.training.outputs import RESULT_FILES

GST = {"rank": 4, "local_size": 8}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_POINT_PEFT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def backbone(tmp_path) -> Path:
    torch.manual_seed(0)
    config = PointTransformerConfig(**{**TINY, "drop_path_rate": 0.0, "classifier_dropout": 0.0})
    path = tmp_path / "backbone"
    PointTransformerModel(config).save_pretrained(path)
    return path


def job(backbone, out, method="pointgst", epochs=2, **training) -> FinetuneJob:
    args = {
        "output_dir": str(out),
        "epochs": epochs,
        "batch_size": 8,
        "eval_batch_size": 16,
        "num_points": 128,
        "warmup_epochs": 0.5,
        "learning_rate": 3e-3,
        "progress": False,
        **training,
    }
    return FinetuneJob(
        method=method,
        backbone=str(backbone),
        dataset="synthetic",
        dataset_options=DATA,
        method_options=GST if method == "pointgst" else {},
        training=TrainingArguments(**args),
    )


def test_finetune_writes_adapter_card_metrics_and_curves(backbone, tmp_path):
    out = tmp_path / "run"
    results = run_finetune(job(backbone, out), log=lambda *a: None)
    assert results["protocol"] == "final-epoch, single-view"
    assert len(results["history"]) == 2 and results["final_epoch"] == 2
    assert 0 <= results["test_accuracy"] <= 1 and results["best_validation_epoch"] in (1, 2)
    adapter = out / "adapter"
    assert {p.name for p in adapter.iterdir()} == RESULT_FILES["adapter"]  # what the preflight allows there
    assert (out / "metrics.json").is_file() and (out / "learning_curves.png").stat().st_size > 1000
    umask = os.umask(0)
    os.umask(umask)
    for name in ("adapter_model.safetensors", "adapter_config.json"):  # shareable: the umask's permissions
        assert (adapter / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    # a local base is recorded by its folder name, never by a path of this machine
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == backbone.name
    card = ModelCard.load(adapter / "README.md")
    assert card.data.library_name == "peft" and "point_gst" in card.data.tags
    index = card.data.to_dict()["model-index"][0]["results"][0]
    assert index["metrics"][0]["type"] == "accuracy"
    assert index["metrics"][0]["value"] == round(100 * results["test_accuracy"], 2)
    assert "import hf_point_peft" in card.text and "final-epoch, single-view" in card.text
    assert f"{results['trainable_parameters']:,}" in card.text
    # the validation split is carved from the training data; the test split is untouched
    assert results["arguments"]["validation_fraction"] == 0.1
    assert sorted(results["label_names"]) == sorted(__import__("hf_point_peft").data.SYNTHETIC_CLASSES)


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_evaluate_in_fresh_process_reproduces_accuracy(backbone, tmp_path):
    out = tmp_path / "run"
    assert cli(cli_args(backbone, out, "--epochs", "1")) == 0
    printed = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    env = {**os.environ, "HF_POINT_PEFT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_point_peft.cli",
            "evaluate",
            str(out / "adapter"),
            "--output",
            str(tmp_path / "eval.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["accuracy"] == printed
    assert evaluated["batch_size"] == 16  # the run's --eval-batch-size (PointGST's distance scale is the batch's)


def test_resume_refuses_other_files_at_the_same_data_path(backbone, tmp_path):
    """The same --data-path holding other data since the checkpoint (replaced by another build) is refused by name,
    not trained on."""
    import dataclasses

    from hf_point_peft.data import load_point_dataset
    from hf_point_peft.training.preflight import check_finetune

    data = tmp_path / "clouds"
    load_point_dataset("synthetic", **DATA).save_to_disk(str(data))
    first = dataclasses.replace(
        job(backbone, tmp_path / "run", epochs=1), dataset="disk", data_path=str(data), dataset_options={}
    )
    run_finetune(first, log=lambda *a: None)
    resumed = dataclasses.replace(first, training=dataclasses.replace(first.training, resume=True, epochs=2))
    check_finetune(resumed)  # the same files: accepted
    load_point_dataset("synthetic", **{**DATA, "seed": 5}).save_to_disk(str(tmp_path / "other"))
    for new, old in zip(sorted((tmp_path / "other").rglob("*.arrow")), sorted(data.rglob("*.arrow"))):
        os.replace(new, old)
    with pytest.raises(ValueError, match=r"data_path_files: checkpoint '\d+ files, .*' vs this run '\d+ files"):
        check_finetune(resumed)


def test_a_users_files_in_the_result_folder_are_refused_before_training(backbone, tmp_path):
    out = tmp_path / "run"
    run_finetune(job(backbone, out, method="full", epochs=1), log=lambda *a: None)
    assert {p.name for p in (out / "model").iterdir()} == RESULT_FILES["model"]  # what the preflight allows there
    (out / "model" / "notes.txt").write_text("mine")
    (out / "adapter").mkdir()
    (out / "adapter" / "plots").mkdir()
    for method, folder, name in (("full", "model", "notes.txt"), ("pointgst", "adapter", "plots")):
        logs = []
        with pytest.raises(FileExistsError, match=rf"{folder} holds files this output does not write \({name}\)"):
            run_finetune(job(backbone, out, method=method, epochs=1, overwrite_output_dir=True), log=logs.append)
        assert not any("epoch" in line for line in logs)  # refused before a step was trained
    assert (out / "model" / "notes.txt").read_text() == "mine" and (out / "adapter" / "plots").is_dir()


def test_full_and_linear_save_whole_models(backbone, tmp_path):
    for method in ("full", "linear"):
        results = run_finetune(job(backbone, tmp_path / method, method=method, epochs=1), log=lambda *a: None)
        assert (tmp_path / method / "model" / "model.safetensors").is_file()
        assert results["trainable_parameters"] > 0
    linear = json.loads((tmp_path / "linear" / "metrics.json").read_text())
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert linear["trainable_parameters"] < full["trainable_parameters"]


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_resume_after_sigkill_mid_epoch_matches_uninterrupted(backbone, tmp_path):
    env = {**os.environ, "HF_POINT_PEFT_CACHE": str(tmp_path / "cache")}
    # many small steps: an epoch lasts seconds, so a kill shortly after a checkpoint lands mid-epoch
    slow = ["--epochs", "3", "--batch-size", "2", "--dataset-option", "train_per_class=16"]
    reference = tmp_path / "reference"
    subprocess.run(
        [sys.executable, "-m", "hf_point_peft.cli", *cli_args(backbone, reference)[0:], *slow],
        check=True,
        capture_output=True,
        env=env,
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hf_point_peft.cli", *cli_args(backbone, killed), *slow],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    first = killed / "checkpoints" / "epoch-0000"
    while not first.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.02)
    time.sleep(0.1)  # inside the second epoch's training steps (0.5 s could outlast a whole epoch on a fast machine)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(killed / "checkpoints")[0] == 0, "the kill did not land in the second epoch"
    resumed = subprocess.run(
        [sys.executable, "-m", "hf_point_peft.cli", *cli_args(backbone, killed), *slow, "--resume"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert [r["test_accuracy"] for r in a["history"]] == [r["test_accuracy"] for r in b["history"]]
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
        assert ra["validation_loss"] == pytest.approx(rb["validation_loss"], rel=1e-5)


def test_resume_refuses_another_method(backbone, tmp_path):
    out = tmp_path / "run"
    run_finetune(job(backbone, out, epochs=1), log=lambda *a: None)
    with pytest.raises(ValueError, match="different run set-up.*method: checkpoint 'pointgst' vs this run 'lora'"):
        run_finetune(job(backbone, out, method="lora", epochs=2, resume=True), log=lambda *a: None)
    assert cli([*cli_args(backbone, out, "--epochs", "2", "--resume"), "--method", "full"]) == 2


def test_resume_refuses_a_backbone_folder_whose_weights_changed(backbone, tmp_path, caplog):
    """Same backbone name, other weights (an embedded backbone updated, a folder pre-trained again): a resume is
    refused, naming it; the saved adapter still loads on them, with a warning that names both digests."""
    from hf_point_peft.training.job import load_trained

    out = tmp_path / "run"
    run_finetune(job(backbone, out, epochs=1), log=lambda *a: None)
    manifest = json.loads((latest_checkpoint(out / "checkpoints")[1] / "manifest.json").read_text())
    assert len(manifest["backbone_weights"]) == 16
    run_finetune(job(backbone, out, epochs=2, resume=True), log=lambda *a: None)  # the same weights: resumes
    with caplog.at_level("WARNING"):
        load_trained(out / "adapter")
    assert "trained on backbone weights" not in caplog.text
    torch.manual_seed(1)
    PointTransformerModel(PointTransformerModel.from_pretrained(backbone).config).save_pretrained(backbone)
    with caplog.at_level("WARNING"):
        load_trained(out / "adapter")
    assert f"trained on backbone weights {manifest['backbone_weights']} (sha256 prefix), but {backbone}" in caplog.text
    with pytest.raises(ValueError, match="different run set-up.*backbone_weights: checkpoint '[0-9a-f]{16}' vs this"):
        run_finetune(job(backbone, out, epochs=3, resume=True), log=lambda *a: None)
    del manifest["backbone_weights"]  # a checkpoint of an earlier version records no digest: not compared
    (latest_checkpoint(out / "checkpoints")[1] / "manifest.json").write_text(json.dumps(manifest))
    run_finetune(job(backbone, out, epochs=3, resume=True), log=lambda *a: None)


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    target = tmp_path / "checkpoints" / "epoch-0001"
    atomic_directory(target, lambda d: (d / "manifest.json").write_text("{}"))
    (target / "weights.bin").write_bytes(b"old")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from hf_point_peft.training.checkpoint import atomic_directory\n"
        "def write(d):\n"
        "    (d / 'weights.bin').write_bytes(b'new, half written')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_directory(Path({str(target)!r}), write)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    assert proc.wait() == -signal.SIGKILL
    assert (target / "weights.bin").read_bytes() == b"old"
    assert latest_checkpoint(tmp_path / "checkpoints") == (1, target)
    leftover = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftover) == 1 and leftover[0].startswith(f".{target.name}.{proc.pid}-"), leftover
    # a kill inside the swap: the old folder moved aside, the new one not in place yet; and a live process's work
    swapped = target.with_name(f".{target.name}.{proc.pid}-{'a' * 32}.old")
    os.replace(target, swapped)
    live = target.with_name(f".{target.name}.{os.getppid()}-{'b' * 32}.tmp")
    live.mkdir()
    with pytest.raises(FileExistsError, match=r"holds files this output does not write \(weights.bin\)"):
        atomic_directory(target, lambda d: (d / "manifest.json").write_text("{}"), replace_foreign=False)
    assert (target / "weights.bin").read_bytes() == b"old"  # put back before the refusal
    atomic_directory(target, lambda d: (d / "manifest.json").write_text('{"new": 1}'))
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, live.name])
    assert (target / "manifest.json").read_text() == '{"new": 1}'
    # a file written atomically: a killed process's temporary file goes at the next write
    stale = tmp_path / f".metrics.{proc.pid}-{'c' * 32}.tmp.json"
    stale.write_text("{")
    write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    assert not stale.exists() and json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}


@pytest.mark.slow
def test_two_processes_match_one(backbone, tmp_path):
    env = {**os.environ, "HF_POINT_PEFT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    common = [*cli_args(backbone, tmp_path / "x")[1:], "--epochs", "2", "--cpu"]
    common[common.index("--output-dir") + 1] = str(tmp_path / "one")
    subprocess.run(
        [sys.executable, "-m", "hf_point_peft.cli", "finetune", *common], check=True, capture_output=True, env=env
    )
    common[common.index("--output-dir") + 1] = str(tmp_path / "two")
    proc = subprocess.run(
        ["torchrun", "--nproc_per_node", "2", "--master_port", "29571", "-m", "hf_point_peft.cli", "finetune", *common],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["train_samples"] == two["train_samples"] and one["validation_samples"] == two["validation_samples"]
    # Same data order, same shards of each global batch, BatchNorm statistics over the global batch: the first epoch
    # agrees to float round-off. The gradient all-reduce sums in another order, and Adam's first steps turn the sign
    # of near-zero gradient components into full lr-sized moves, so later figures agree to a tolerance only (the
    # same happens between OMP_NUM_THREADS=1 and 2 in one process).
    assert one["history"][0]["train_loss"] == pytest.approx(two["history"][0]["train_loss"], rel=5e-4)
    for r1, r2 in zip(one["history"], two["history"]):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=2e-3)
        assert r1["test_loss"] == pytest.approx(r2["test_loss"], rel=2e-3)
    # the trained adapters give the same predictions except on near-ties of the logits
    logits_one, labels = _test_logits(tmp_path / "one" / "adapter")
    logits_two, _ = _test_logits(tmp_path / "two" / "adapter")
    deviation = (logits_one - logits_two).abs().max().item()
    assert deviation < 0.25 * logits_one.std().item()
    top = logits_one.topk(2, dim=-1).values
    margin = top[:, 0] - top[:, 1]
    differ = logits_one.argmax(-1) != logits_two.argmax(-1)
    assert bool((margin[differ] <= 2 * deviation).all()), (margin[differ], deviation)
    near_ties = int((margin <= 2 * deviation).sum())
    assert abs(one["test_accuracy"] - two["test_accuracy"]) * len(labels) <= near_ties + 1e-6


def _test_logits(adapter: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-split logits of a saved adapter with the evaluation preprocessing of the training loop."""
    from hf_point_peft.data import PointCloudCollator, load_point_dataset
    from hf_point_peft.training.job import load_trained

    test = load_point_dataset("synthetic", None, **DATA)["test"]
    batch = PointCloudCollator(128, False)([dict(row, index=i) for i, row in enumerate(test)])
    model = load_trained(adapter).eval()
    with torch.no_grad():
        return model(points=batch["points"]).logits, batch["labels"]


def test_bad_arguments_fail_clearly(backbone, tmp_path):
    with pytest.raises(ValueError, match="epochs=0: invalid training argument: must be >= 1"):
        run_finetune(job(backbone, tmp_path / "a", epochs=0), log=lambda *a: None)
    with pytest.raises(ValueError, match="num_points=8: below the 16 points the backbone's grouping needs"):
        run_finetune(job(backbone, tmp_path / "b", num_points=8), log=lambda *a: None)
    with pytest.raises(ValueError, match="method='adapterx': unknown method"):
        run_finetune(job(backbone, tmp_path / "c", method="adapterx"), log=lambda *a: None)


def test_point_prompt_job_builds_its_bank_from_the_training_part(backbone, tmp_path):
    logs = []
    j = job(backbone, tmp_path / "pp", method="point-prompt", epochs=1)
    j.method_options = {"num_prompt_tokens": 6, "bank_topk": 4, "ga_k": 4, "prompt_layers": 1}
    results = run_finetune(j, log=logs.append)
    train_rows = 15 * DATA["train_per_class"] - 15  # the validation split (10%, at least one per class) is held out
    assert any(f"memory bank: {train_rows} rows" in line for line in logs)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "pp" / "adapter" / "adapter_model.safetensors")
    assert saved["base_model.point_prompt_bank"].shape[0] == train_rows
    assert results["trainable_parameters"] > 0


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_any2point_job_on_a_source_encoder(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(
        BertConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=50,
            max_position_embeddings=64,
        )
    ).save_pretrained(tmp_path / "bert")
    j = job(tmp_path / "bert", tmp_path / "a2p", method="any2point", epochs=1, num_points=512, batch_size=6)
    j.dataset_options = {"train_per_class": 2, "test_per_class": 1, "num_points": 600}
    j.method_options = {"knn_k": 8, "num_views": 2}
    results = run_finetune(j, log=lambda *a: None)
    assert (tmp_path / "a2p" / "adapter" / "adapter_model.safetensors").is_file()
    env = {**os.environ, "HF_POINT_PEFT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_point_peft.cli",
            "evaluate",
            str(tmp_path / "a2p" / "adapter"),
            "--output",
            str(tmp_path / "eval.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == results["test_accuracy"]


def test_fresh_run_into_an_old_run_folder_is_refused_unless_overwritten(backbone, tmp_path):
    """Without --resume an earlier run's checkpoints would win: pruning keeps the highest epochs (the old run's) and
    deletes the new ones, and a later resume would continue the old run."""
    out = tmp_path / "run"
    run_finetune(job(backbone, out, epochs=2), log=lambda *a: None)
    with pytest.raises(ValueError, match=r"already holds checkpoints of an earlier run \(last: epoch-0001, 2 epochs"):
        run_finetune(job(backbone, out, epochs=1), log=lambda *a: None)
    assert latest_checkpoint(out / "checkpoints")[0] == 1  # untouched by the refused run
    results = run_finetune(job(backbone, out, epochs=1, overwrite_output_dir=True), log=lambda *a: None)
    assert results["final_epoch"] == 1 and latest_checkpoint(out / "checkpoints")[0] == 0
    assert cli(cli_args(backbone, out, "--epochs", "1")) == 2  # the CLI reports it as a usage error


def test_resume_counts_every_epoch_s_time_and_refuses_a_longer_run(backbone, tmp_path):
    out = tmp_path / "run"
    first = run_finetune(job(backbone, out, epochs=1), log=lambda *a: None)
    resumed = run_finetune(job(backbone, out, epochs=2, resume=True), log=lambda *a: None)
    assert [r["seconds"] for r in resumed["history"]][:1] == [r["seconds"] for r in first["history"]]
    assert resumed["training_seconds"] == pytest.approx(sum(r["seconds"] for r in resumed["history"]))
    assert resumed["training_seconds"] > first["training_seconds"] > 0
    # the longer run's schedule is not the first one's: the jump is recorded (and logged), and the card says it
    change = resumed["history"][0]["schedule_change"]
    assert change["epochs"] == 2 and change["learning_rate_before"] == first["history"][0]["learning_rate"]
    assert change["learning_rate_after"] > change["learning_rate_before"]
    assert "Resumed after epoch 1 with `--epochs 2`" in (out / "adapter" / "README.md").read_text()
    with pytest.raises(ValueError, match=r"has 2 epochs done, but this run has only 1"):
        run_finetune(job(backbone, out, epochs=1, resume=True), log=lambda *a: None)


def test_class_counts_that_differ_are_replaced_or_refused_by_name(backbone, tmp_path):
    """A classifier backbone of another class count (a ModelNet40 model fine-tuned on another set) gets a new head,
    said in one line; an adapter evaluated on data of other classes is refused, naming both, instead of failing in
    the loss or printing 0%; weights of other shapes outside the head are refused."""
    from datasets import ClassLabel

    from hf_point_peft import PointTransformerForClassification
    from hf_point_peft.data import load_point_dataset
    from hf_point_peft.errors import SettingError
    from hf_point_peft.training.backbones import load_classifier
    from hf_point_peft.training.inference import evaluate_saved

    config = PointTransformerModel.from_pretrained(backbone).config
    classifiers = {}
    for classes in (5, 40):  # the same encoder weights (built first from the same seed), heads of 5 and 40 classes
        config.num_labels = classes
        torch.manual_seed(0)
        classifiers[classes] = tmp_path / f"classifier_{classes}"
        PointTransformerForClassification(config).save_pretrained(classifiers[classes])
    lines = []
    results = run_finetune(job(classifiers[5], tmp_path / "run", epochs=1), log=lines.append)
    assert "the backbone's 5-class head is replaced by a new 15-class head" in "\n".join(lines)
    adapter = tmp_path / "run" / "adapter"
    # on a base whose head has 40 classes: the adapter's trained 15-class head replaces it
    on_40 = evaluate_saved(adapter, backbone=str(classifiers[40]))
    assert on_40["accuracy"] == results["test_accuracy"]

    data = load_point_dataset("synthetic", **DATA)
    names = data["train"].features["label"].names
    five = data.filter(lambda row: row["label"] < 5).cast_column("label", ClassLabel(names=names[:5]))
    five.save_to_disk(tmp_path / "five")
    with pytest.raises(SettingError, match=r"predicts 15 classes and this dataset has 5 \("):
        evaluate_saved(adapter, dataset="disk", data_path=str(tmp_path / "five"))
    data.cast_column("label", ClassLabel(names=names[::-1])).save_to_disk(tmp_path / "renamed")
    with pytest.raises(SettingError, match=f"trained on other classes \\(class 0 is '{names[0]}' there and"):
        evaluate_saved(adapter, dataset="disk", data_path=str(tmp_path / "renamed"))
    with pytest.raises(SettingError, match="weights of other shapes than the model built from it: .*embeddings"):
        load_classifier(str(classifiers[5]), 15, hidden_size=2 * config.hidden_size, intermediate_size=64)


def test_a_dataset_s_own_validation_split_is_used_and_said(backbone, tmp_path, caplog):
    """A disk folder saved with a 'validation' split: it was ignored without a word and another one carved from
    the training split."""
    import dataclasses

    from datasets import DatasetDict

    from hf_point_peft.data import make_synthetic_shapes

    data = make_synthetic_shapes(**DATA, seed=0)
    held = data["train"].train_test_split(test_size=15, seed=0, stratify_by_column="label")
    DatasetDict(train=held["train"], validation=held["test"], test=data["test"]).save_to_disk(tmp_path / "own")
    own = dataclasses.replace(
        job(backbone, tmp_path / "run", epochs=1), dataset="disk", data_path=str(tmp_path / "own")
    )
    own.dataset_options = {}
    with caplog.at_level("INFO"):
        results = run_finetune(own, log=lambda *a: None)
    assert (results["train_samples"], results["validation_samples"]) == (held["train"].num_rows, 15)
    assert "the dataset's own 'validation' split (15 clouds)" in caplog.text
    card = (tmp_path / "run" / "adapter" / "README.md").read_text()
    assert "The validation split (15 clouds; drawn\nby the dataset itself (its own 'validation' split))" in card


def test_overwrite_with_another_method_removes_the_earlier_result(backbone, tmp_path):
    """--overwrite-output-dir from PointGST to full fine-tuning left the old adapter/ beside the new model/, so
    `evaluate <out>/adapter` scored the replaced run."""
    out = tmp_path / "run"
    run_finetune(job(backbone, out, epochs=1), log=lambda *a: None)
    said = []
    run_finetune(job(backbone, out, method="full", epochs=1, overwrite_output_dir=True), log=said.append)
    assert (out / "model").is_dir() and not (out / "adapter").exists()
    assert any(line.startswith(f"removed {out / 'adapter'}") for line in said), said
    (out / "model" / "notes.txt").write_text("mine")  # a user's file: that folder is the user's, kept
    run_finetune(job(backbone, out, epochs=1, overwrite_output_dir=True), log=said.append)
    assert (out / "adapter").is_dir() and (out / "model" / "notes.txt").read_text() == "mine"
