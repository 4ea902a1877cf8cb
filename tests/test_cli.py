"""`point-peft` as a newcomer meets it, through the real command in a subprocess: every mistake ends as exactly one
line on stderr that names the cause (no traceback), exit status 2 when the command or its inputs are wrong and 1
when something outside them failed (network, Hub, token), and nothing is created or changed in the output folder or
the data cache. Hub failures are real: offline mode, a closed local port, and a small local server that answers as
the Hub does for a missing, gated or read-only repository."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tiny
import torch
from tiny import TINY, cache_hub_repo, cli_args

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "datasets", "accelerate", "hf_point_peft")
DATA = [f"--dataset-option={k}={v}" for k, v in tiny.DATA.items()]


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """A clean environment: its own Hub cache and data cache, no token, the Hub not reachable by accident."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    values.update(
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_POINT_PEFT_CACHE=str(tmp_path / "data-cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    monkeypatch.setenv("HF_POINT_PEFT_CACHE", values["HF_POINT_PEFT_CACHE"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # in this process too (peft reads it when saving): no Hub lookups
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return values


def point_peft(env: dict[str, str], *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """The `point-peft` console script's code (`hf_point_peft_cli:main`) in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "hf_point_peft_cli", *args],
        capture_output=True,
        text=True,
        env={**env, **extra_env},
        cwd=ROOT,
    )


def one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def untouched(env: dict[str, str], *outputs: Path) -> None:
    """Nothing was written: no output folder, and no dataset was generated (the data were never read)."""
    for out in outputs:
        assert not out.exists(), out
    assert not Path(env["HF_POINT_PEFT_CACHE"]).exists()


@pytest.fixture
def backbone(tmp_path) -> Path:
    torch.manual_seed(0)
    from hf_point_peft import PointTransformerConfig, PointTransformerModel

    path = tmp_path / "backbone"
    PointTransformerModel(PointTransformerConfig(**TINY)).save_pretrained(path)
    return path


# --- item 8: help is quick (nothing heavy imported), the console script is the light front end ------------------------
def test_help_and_parsing_import_neither_torch_nor_the_library(env):
    script = (
        "import sys\n"
        "from hf_point_peft_cli import main\n"
        "for argv in (['--help'], *[[c, '--help'] for c in ('finetune', 'evaluate', 'pretrain', 'convert', 'push', "
        "'benchmark')]):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, argv\n"
        "assert main(['finetune', '--epochs', '0']) == 2\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert re.search(r'^point-peft = "hf_point_peft_cli:main"', (ROOT / "pyproject.toml").read_text(), re.M)


def test_front_end_defaults_and_choices_are_the_library_s():
    """The front end shows defaults without importing the library; they must be the library's own."""
    from hf_point_peft.cli import build_parser
    from hf_point_peft.data import AUGMENTATIONS, DATASETS
    from hf_point_peft.training.benchmark import BENCHMARK_METHODS, BenchmarkOptions
    from hf_point_peft.training.job import FinetuneJob
    from hf_point_peft.training.methods import METHODS
    from hf_point_peft.training.pretrain import PretrainJob
    from hf_point_peft_cli import parser

    job = FinetuneJob()
    library = {**dataclasses.asdict(job.training), **{k: getattr(job, k) for k in ("method", "backbone", "dataset")}}
    assert {k: library[k] for k in parser.FINETUNE} == parser.FINETUNE
    pretrain = dataclasses.asdict(PretrainJob())
    assert {k: pretrain[k] for k in parser.PRETRAIN} == parser.PRETRAIN
    benchmark = dataclasses.asdict(BenchmarkOptions())
    assert {k: benchmark[k] for k in parser.BENCHMARK} == parser.BENCHMARK
    assert set(parser.METHODS) == set(METHODS) and parser.DATASETS == DATASETS
    assert parser.AUGMENTATIONS == AUGMENTATIONS and set(parser.BENCHMARK_METHODS) == set(BENCHMARK_METHODS)
    from hf_point_peft import naming
    from hf_point_peft_cli import checks

    assert (checks.EMBEDDED_SCHEME, checks.MINILM_HUB_ID) == (naming.EMBEDDED_SCHEME, naming.MINILM_HUB_ID)
    finetune = build_parser().parse_args(["finetune"])
    assert (finetune.lr, finetune.grad_accum, finetune.workers) == (5e-4, 1, 0)


def test_mistakes_in_the_command_line_are_one_line(env, tmp_path):
    out = tmp_path / "out"
    one_line_error(point_peft(env, "finetune", "--epochs", "0"), 2, "--epochs", "must be >= 1, got 0", "--help")
    one_line_error(point_peft(env, "finetune", "--method-option", "rank"), 2, "--method-option", "key=value")
    one_line_error(point_peft(env, "finetune", "--method", "adapterx"), 2, "--method", "'adapterx'")
    one_line_error(
        point_peft(env, "finetune", "--output-dir", str(out), "--resume", "--overwrite-output-dir"),
        2,
        "--resume",
        "--overwrite-output-dir",
    )
    untouched(env, out)


def test_progress_is_one_flag_pair_on_every_training_command():
    from hf_point_peft_cli import build_parser

    parser = build_parser()
    for command in ("finetune", "pretrain", "benchmark"):
        assert parser.parse_args([command]).progress is None  # decided at run time: on when a terminal shows bars
        assert parser.parse_args([command, "--progress"]).progress is True
        assert parser.parse_args([command, "--no-progress"]).progress is False


# --- item 2: the output folder, the data and the backbone are checked before anything is read or written ---------------
def test_output_dir_that_is_a_file_is_refused_before_training(env, tmp_path):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    one_line_error(point_peft(env, "finetune", "--output-dir", str(existing)), 2, f"--output-dir {existing} is a file")
    one_line_error(
        point_peft(env, "finetune", "--output-dir", str(existing / "run")), 2, f"{existing} is a file", "--output-dir"
    )
    assert existing.read_text() == "keep me"
    untouched(env)


def test_data_path_mistakes_name_the_flag_and_the_missing_file(env, tmp_path):
    out = tmp_path / "out"
    one_line_error(
        point_peft(env, "finetune", "--dataset", "modelnet40-h5", "--output-dir", str(out)), 2, "--data-path"
    )
    one_line_error(
        point_peft(env, "finetune", "--dataset", "scanobjectnn-pb_t50_rs", "--data-path", str(tmp_path / "nope")),
        2,
        f"--data-path {tmp_path / 'nope'}: no such folder",
    )
    one_line_error(
        point_peft(env, "finetune", "--data-path", str(tmp_path), "--output-dir", str(out)),
        2,
        "--dataset synthetic generates its shapes",
    )
    h5 = tmp_path / "h5"
    h5.mkdir()
    (h5 / "ply_data_train0.h5").write_bytes(b"")
    (h5 / "ply_data_test0.h5").write_bytes(b"")
    line = one_line_error(
        point_peft(env, "finetune", "--dataset", "modelnet40-h5", "--data-path", str(h5), "--output-dir", str(out)),
        2,
        f"--data-path {h5}",
        "no shape_names.txt",
    )
    assert "ply_data_train*.h5" in line  # what the reader needs, all of it
    untouched(env, out)


def test_backbone_folder_mistakes(env, tmp_path):
    out = tmp_path / "out"
    one_line_error(
        point_peft(env, "finetune", "--backbone", "./nope", "--output-dir", str(out)), 2, "--backbone ./nope"
    )
    (tmp_path / "weights").mkdir()
    one_line_error(
        point_peft(env, "finetune", "--backbone", str(tmp_path / "weights"), "--output-dir", str(out)),
        2,
        "no config.json",
    )
    untouched(env, out)


def test_settings_the_library_checks_are_refused_before_the_data_are_read(env, tmp_path, backbone):
    out = tmp_path / "out"
    run = ["finetune", "--backbone", str(backbone), "--output-dir", str(out), *DATA]
    # item 8: an unknown method option lists the valid keys
    line = one_line_error(point_peft(env, *run, "--method-option", "rnk=4"), 2, "--method-option rnk=4", "valid keys:")
    assert "rank" in line and "local_size" in line
    one_line_error(point_peft(env, *run, "--num-points", "8"), 2, "--num-points 8", "grouping needs")
    fits = ["--method-option", "local_size=8"]  # PointGST's default local_size (32) does not divide 16 patch tokens
    one_line_error(point_peft(env, *run, *fits, "--report-to", "wandb"), 2, "--report-to wandb", "pip install wandb")
    untouched(env, out)


def test_pretrain_settings_are_checked_before_the_data_are_read(env, tmp_path):
    out = tmp_path / "pt"
    run = ["pretrain", "--output-dir", str(out)]
    one_line_error(point_peft(env, *run, "--model-option", "hiden_size=96"), 2, "--model-option hiden_size=96")
    one_line_error(point_peft(env, *run, "--dataset", "modelnet40"), 2, "--data-path")
    one_line_error(point_peft(env, *run, "--report-to", "mlflow"), 2, "--report-to mlflow", "pip install mlflow")
    untouched(env, out)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method_options": {"rank": -3}}, r"method_options=.*rank"),
        ({"model_options": {"drop_pat_rate": 0.1}}, r"model_options.drop_pat_rate=0.1: not a field.*drop_path_rate"),
        (
            {"dataset_options": {"train_per_clas": 4}},
            r"dataset_options.train_per_clas=4: .*valid keys.*train_per_class",
        ),
        ({"method": "any2point"}, r"backbone=.*any2point needs a source encoder"),
        ({"method": "full", "method_options": {"rank": 4}}, r"method_options.rank=4: not an option of full"),
        ({"dataset": "disk"}, r"data_path=None: dataset disk is read from its files"),
    ],
)
def test_job_settings_are_checked_before_the_data_are_read(env, tmp_path, backbone, change, message):
    from hf_point_peft.training.job import FinetuneJob, run_finetune
    from hf_point_peft.training.loop import TrainingArguments

    job = FinetuneJob(backbone=str(backbone), training=TrainingArguments(output_dir=str(tmp_path / "out")))
    with pytest.raises(ValueError, match=message):
        run_finetune(dataclasses.replace(job, **change))
    untouched(env, tmp_path / "out")


# --- item 1: Hub and network failures ---------------------------------------------------------------------------------
class FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers as the Hub does: a missing repo (404 RepoNotFound), a gated one (403 GatedRepo), and a refused
    upload (403) for every write."""

    def _answer(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        if self.path.startswith("/user/gated/"):
            self._answer(
                403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model user/gated is restricted"}
            )
        else:
            self._answer(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})

    def do_GET(self) -> None:  # repo_info, asked after a refused creation: the repo does not exist either
        self._answer(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})

    def do_POST(self) -> None:
        self._answer(403, {"X-Error-Message": "You don't have the rights to create a model under this namespace"})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_backbone_failures_are_one_line_with_what_to_do(env, tmp_path, fake_hub):
    out = tmp_path / "out"
    run = ["finetune", "--backbone", "user/pointmae", "--output-dir", str(out)]
    one_line_error(point_peft(env, *run), 1, "--backbone user/pointmae", "HF_HUB_OFFLINE=1", "local folder")
    closed = point_peft(env, *run, HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    one_line_error(closed, 1, "cannot reach the Hub at http://127.0.0.1:9", "HF_HUB_OFFLINE=1")
    missing = point_peft(env, *run, HF_HUB_OFFLINE="0", HF_ENDPOINT=fake_hub)
    one_line_error(missing, 2, "--backbone user/pointmae: no such repository", "HF_TOKEN", "hf auth login")
    gated = point_peft(env, "finetune", "--backbone", "user/gated", HF_HUB_OFFLINE="0", HF_ENDPOINT=fake_hub)
    one_line_error(gated, 1, "gated", "no Hugging Face token is set", "HF_TOKEN")
    untouched(env, out)


def test_a_mistyped_embedded_name_lists_the_embedded_models(env, tmp_path):
    out = tmp_path / "out"
    typo = point_peft(
        env, "finetune", "--backbone", "hf_point_peft:embedded/pointmae-real-smal", "--output-dir", str(out)
    )
    one_line_error(typo, 2, "'hf_point_peft:embedded/pointmae-real-smal' names an embedded model", "it holds")
    assert "hf_point_peft:embedded/pointmae-real-small" in typo.stderr
    assert "hf_point_peft:embedded/pointmae-synthetic-small" in typo.stderr
    untouched(env, out)


def test_push_failures_say_what_is_missing(env, tmp_path, fake_hub):
    from safetensors.torch import save_file

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    one_line_error(point_peft(env, "push", str(folder), "user/x"), 2, "no adapter weights (adapter_model.safetensors)")
    save_file({"w": torch.zeros(2)}, folder / "adapter_model.safetensors")
    one_line_error(point_peft(env, "push", str(tmp_path / "nope"), "user/x"), 2, "no such folder")
    weights = str(folder / "adapter_model.safetensors")
    one_line_error(
        point_peft(env, "push", weights, "user/x"), 2, "a file, not a folder: push the adapter or model folder"
    )
    one_line_error(point_peft(env, "push", str(tmp_path), "user/x"), 2, "no adapter_config.json", "no config.json")
    one_line_error(point_peft(env, "push", str(folder), "user/x"), 1, "HF_HUB_OFFLINE=1")
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": fake_hub}
    one_line_error(point_peft(env, "push", str(folder), "user/x", **online), 1, "no Hugging Face token", "HF_TOKEN")
    refused = point_peft(env, "push", str(folder), "user/x", HF_TOKEN="hf_readonly", **online)
    one_line_error(refused, 1, "push to user/x", "no permission (403", "write access")
    closed = point_peft(
        env, "push", str(folder), "user/x", HF_TOKEN="hf_x", HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9"
    )
    line = one_line_error(closed, 1, "cannot reach the Hub")
    assert "local folder" not in line  # an upload has no local way around


# --- item 3: evaluate says what is missing ----------------------------------------------------------------------------
def test_evaluate_names_what_is_missing(env, tmp_path, fake_hub):
    one_line_error(point_peft(env, "evaluate", str(tmp_path / "nope")), 2, "no such adapter or model folder")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    one_line_error(
        point_peft(env, "evaluate", str(tmp_path / "run")),
        2,
        "no adapter_config.json",
        "no config.json",
        "metrics.json",
        "<output-dir>/adapter",
    )
    one_line_error(point_peft(env, "evaluate", "user/adapter"), 1, "evaluate user/adapter", "HF_HUB_OFFLINE=1")
    missing = point_peft(env, "evaluate", "user/adapter", HF_HUB_OFFLINE="0", HF_ENDPOINT=fake_hub)
    one_line_error(missing, 2, "evaluate user/adapter: no such repository", "(no folder user/adapter here)")
    # a mistyped relative path reads as a Hub id: the network failure says that no such folder is here either
    closed = point_peft(env, "evaluate", "run/adaptr", HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    one_line_error(closed, 1, "cannot reach the Hub", "(no folder run/adaptr here)")


def test_an_adapter_saved_from_python_under_its_own_name_evaluates(env, tmp_path, backbone):
    """What a newcomer does: save an adapter named "chairs" from Python (peft puts it in a subfolder of that name),
    point evaluate at the parent folder (one line naming the subfolder), then at the subfolder: it has no training
    metrics, so the head size comes from the adapter config and the run is evaluated."""
    from peft import get_peft_model

    from hf_point_peft import PointGSTConfig, PointTransformerConfig, PointTransformerForClassification

    base = PointTransformerForClassification(PointTransformerConfig(**TINY, num_labels=15))
    base.config.name_or_path = str(backbone)
    model = get_peft_model(base, PointGSTConfig(rank=4, local_size=8), adapter_name="chairs")
    model.save_pretrained(tmp_path / "saved")
    one_line_error(point_peft(env, "evaluate", str(tmp_path / "saved")), 2, f"pass {tmp_path / 'saved' / 'chairs'}")
    args = ["--dataset", "synthetic", "--num-points", "128", "--backbone", str(backbone)]
    args += [f"--dataset-option={k}={v}" for k, v in tiny.DATA.items()]
    done = point_peft(env, "evaluate", str(tmp_path / "saved" / "chairs"), *args)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    assert done.stdout.startswith("test accuracy ")


def test_damaged_or_incomplete_files_are_named_in_one_line(env, tmp_path, backbone):
    """A weights file safetensors cannot read, a folder without its weights, a damaged JSON file: one line naming
    the file (were tracebacks, or messages about repo ids and JSON syntax that named no file)."""
    import shutil

    out = tmp_path / "run"
    assert point_peft(env, *cli_args(backbone, out, "--epochs", "1")).returncode == 0
    broken = tmp_path / "broken"
    shutil.copytree(backbone, broken)
    (broken / "model.safetensors").write_bytes(b"junk")
    for command in (cli_args(broken, tmp_path / "o1"), ["evaluate", str(out / "adapter"), "--backbone", str(broken)]):
        one_line_error(
            point_peft(env, *command), 2, f"{broken / 'model.safetensors'} (4 bytes)", "truncated or corrupted"
        )
    (broken / "model.safetensors").unlink()
    one_line_error(
        point_peft(env, *cli_args(broken, tmp_path / "o2")), 2, f"{broken} holds a config.json but no weights"
    )
    for name, damage in (
        ("adapter_model.safetensors", None),
        ("adapter_config.json", "{'peft_type'"),
        ("training_metrics.json", "{"),
    ):
        adapter = tmp_path / f"adapter-{name}"
        shutil.copytree(out / "adapter", adapter)
        if damage is None:
            (adapter / name).unlink()
            expected = f"{adapter} holds an adapter_config.json but no adapter weights"
        else:
            (adapter / name).write_text(damage)
            expected = f"{adapter / name} is damaged: not a JSON file"
        one_line_error(point_peft(env, "evaluate", str(adapter)), 2, expected)
    checkpoint = out / "checkpoints" / "epoch-0000"
    weights = checkpoint / "state" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    resume = cli_args(backbone, out, "--epochs", "2", "--resume")
    one_line_error(point_peft(env, *resume), 2, f"{weights} (100 bytes)", f"delete {checkpoint} to resume")
    (checkpoint / "manifest.json").write_text("")
    one_line_error(point_peft(env, *resume), 2, f"{checkpoint / 'manifest.json'} is damaged")


# --- items 5 and 6: --resume checks every setting; quiet, honest output; trackers ---------------------------------------
def test_resume_refuses_any_setting_that_changes_the_result(env, tmp_path, backbone):
    from hf_point_peft.training.job import FinetuneJob, run_finetune
    from hf_point_peft.training.loop import TrainingArguments
    from hf_point_peft.training.preflight import check_finetune

    out = tmp_path / "run"
    training = {"output_dir": str(out), "epochs": 1, "batch_size": 8, "num_points": 128, "progress": False}
    job = FinetuneJob(
        backbone=str(backbone),
        dataset_options={"train_per_class": 4, "test_per_class": 2, "num_points": 160},
        method_options={"rank": 4, "local_size": 8},
        training=TrainingArguments(**training),
    )
    run_finetune(job, log=lambda *a: None)
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    resumed = dataclasses.replace(job, training=dataclasses.replace(job.training, resume=True, epochs=2))
    check_finetune(resumed)  # the same settings, more epochs: accepted
    # an option given at its default value is the same run, in both directions (PointGST's default is 'official')
    explicit = dataclasses.replace(resumed, method_options={**job.method_options, "spectral_transform": "official"})
    check_finetune(explicit)
    run_finetune(
        dataclasses.replace(explicit, training=dataclasses.replace(job.training, output_dir=str(tmp_path / "b"))),
        log=lambda *a: None,
    )
    check_finetune(
        dataclasses.replace(resumed, training=dataclasses.replace(resumed.training, output_dir=str(tmp_path / "b")))
    )
    changes = {
        "seed": {"training": {"seed": 1}},
        "learning_rate": {"training": {"learning_rate": 1e-3}},
        "batch_size": {"training": {"batch_size": 4}},
        "eval_batch_size": {"training": {"eval_batch_size": 7}},
        "num_points": {"training": {"num_points": 96}},
        "method_options": {"method_options": {"rank": 8, "local_size": 8}},
        "dataset_options": {"dataset_options": {"train_per_class": 5, "test_per_class": 2, "num_points": 160}},
    }
    for name, change in changes.items():
        other = dataclasses.replace(
            resumed,
            training=dataclasses.replace(resumed.training, **change.get("training", {})),
            **{k: v for k, v in change.items() if k != "training"},
        )
        with pytest.raises(ValueError, match=f"cannot resume from .*{name}: checkpoint .* vs this run"):
            check_finetune(other)
    proc = point_peft(env, *cli_args(backbone, out, "--epochs", "2", "--resume", "--seed", "1", "--lr", "1e-3"))
    one_line_error(proc, 2, "cannot resume from", "--seed: checkpoint 0 vs this run 1", "--lr: checkpoint 0.0005")
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before


@pytest.mark.slow
def test_default_output_is_quiet_and_honest(env, tmp_path, backbone):
    out = tmp_path / "run"
    proc = point_peft(env, *cli_args(backbone, out, "--epochs", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # no library warnings, no load report, no bars when no terminal shows them
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"new 15-class head initialised \(\d+ tensors not in the backbone\)", lines[0]), lines[0]
    assert "LOAD REPORT" not in proc.stdout and "MISSING" not in proc.stdout
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and "ETA" in epochs[0] and "elapsed" in epochs[1] and "ETA" not in epochs[1]
    assert "%" in epochs[0] and "test acc" in epochs[0]  # accuracy in percent, as in the final line
    assert lines[-1].startswith("total time ")
    accuracy = 100 * json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert f"final-epoch test accuracy {accuracy:.2f}%" in proc.stdout
    evaluated = point_peft(env, "evaluate", str(out / "adapter"))
    assert evaluated.returncode == 0 and evaluated.stderr == "", evaluated.stderr[-3000:]
    assert evaluated.stdout.startswith(f"test accuracy {accuracy:.2f}%")
    cache_hub_repo(tmp_path / "hub", "user/tiny-adapter", out / "adapter")  # the pushed adapter, in the Hub cache
    from_hub = point_peft(env, "evaluate", "user/tiny-adapter", HF_HUB_CACHE=str(tmp_path / "hub"))
    assert from_hub.returncode == 0 and from_hub.stderr == "", from_hub.stderr[-3000:]
    assert from_hub.stdout.startswith(f"test accuracy {accuracy:.2f}%") and "user/tiny-adapter" in from_hub.stdout


@pytest.mark.slow
def test_quiet_run_reports_to_tensorboard(env, tmp_path, backbone):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    proc = point_peft(env, *cli_args(backbone, out, "--epochs", "2", "-q", "--report-to", "tensorboard"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "" and proc.stderr == ""
    events = EventAccumulator(str(out / "point-peft")).Reload()
    accuracy = events.Scalars("test_accuracy")
    assert [e.step for e in accuracy] == [1, 2]
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [e.value for e in accuracy] == pytest.approx([r["test_accuracy"] for r in history])


@pytest.mark.slow
def test_library_warnings_and_messages_show_with_debug(env, tmp_path, backbone):
    proc = point_peft(env, *cli_args(backbone, tmp_path / "run", "--epochs", "1", "--log-level", "debug"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOAD REPORT" in proc.stdout + proc.stderr  # transformers' own table, on request


def test_elapsed_time_and_eta_read_at_a_glance(monkeypatch):
    from hf_point_peft.training import progress

    assert [progress.format_duration(s) for s in (4.25, 42, 185, 3720)] == ["4.2 s", "42 s", "3 min 05 s", "1 h 02 min"]
    now = iter([100.0, 110.0, 130.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(now))
    clock = progress.Clock(total=4, first=1)  # a resumed run: units 1, 2, 3 left
    assert clock.done(1) == "elapsed 10 s, ETA 20 s"
    assert clock.done(3) == "elapsed 30 s"


def test_method_names_in_other_spellings_are_accepted():
    from hf_point_peft_cli import build_parser

    parser = build_parser()
    for typed, meant in (("PointGST", "pointgst"), ("point_gst", "pointgst"), ("Point-PEFT", "point-prompt")):
        assert parser.parse_args(["finetune", "--method", typed]).method == meant
        assert parser.parse_args(["benchmark", "--methods", typed]).methods == [meant]
    assert parser.parse_args(["convert", "c.pth", "--from", "point_prompt", "--out", "o"]).source == "point-prompt"


def test_evaluate_reproduces_a_vote_run_and_refuses_what_would_mislead(env, tmp_path, backbone):
    """A user review's findings: evaluate re-ran a --vote run single-view (another figure than finetune's); --output
    in a missing folder failed after the evaluation, naming a temporary file; an encoder folder (no trained head) was
    scored with random head weights; a dataset that leaves the validation split empty failed after an epoch with
    torch.cat's message; the card gave the asked validation share, not the carved one."""
    out = tmp_path / "run"
    proc = point_peft(env, *cli_args(backbone, out, "--epochs", "1", "--vote", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    proc = point_peft(env, "evaluate", str(out / "adapter"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}%" in proc.stdout and "2-view vote" in proc.stdout
    one_line_error(
        point_peft(env, "evaluate", str(out / "adapter"), "--output", str(tmp_path / "no" / "m.json")),
        2,
        "--output",
        "its folder does not exist",
    )
    one_line_error(
        point_peft(env, "evaluate", str(backbone), "--dataset", "synthetic", "--num-points", "128"),
        2,
        f"{backbone} holds no trained classifier",
        "classifier.",
    )
    card = (out / "adapter" / "README.md").read_text()
    share = 100 * metrics["validation_samples"] / (metrics["validation_samples"] + metrics["train_samples"])
    assert f"The validation split ({metrics['validation_samples']} clouds, {share:.0f}% of the training data" in card
    from datasets import Value

    from hf_point_peft.data import make_synthetic_shapes

    ints = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=160, seed=0)
    ints.cast_column("label", Value("int64")).save_to_disk(tmp_path / "ints")  # numbers, no class names
    evaluated = point_peft(
        env, "evaluate", str(out / "adapter"), "--dataset", "disk", "--data-path", str(tmp_path / "ints")
    )
    one_line_error(evaluated, 2, "'label' column is Value('int64'), not a datasets.ClassLabel")
    few = cli_args(backbone, tmp_path / "few", "--epochs", "1", "--dataset-option", "train_per_class=1")
    one_line_error(point_peft(env, *few), 2, "--validation-fraction 0.1: carves no validation cloud")
    assert not (tmp_path / "few" / "checkpoints").exists() or not any((tmp_path / "few" / "checkpoints").iterdir())


def test_a_lora_adapter_on_a_base_of_another_width_is_one_line(tmp_path):
    """peft's LoRA loads with torch's strictness: its size mismatch was a RuntimeError traceback in evaluate."""
    from peft import LoraConfig, get_peft_model

    from hf_point_peft import PointTransformerConfig, PointTransformerForClassification, PointTransformerModel
    from hf_point_peft.training.job import load_trained

    torch.manual_seed(0)
    small = PointTransformerForClassification(PointTransformerConfig(**TINY))
    get_peft_model(small, LoraConfig(r=2, target_modules=["attn.qkv"])).save_pretrained(tmp_path / "adapter")
    wide = {**TINY, "hidden_size": 2 * TINY["hidden_size"], "intermediate_size": 2 * TINY["intermediate_size"]}
    PointTransformerModel(PointTransformerConfig(**wide)).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match=r"backbone=.*wide.*does not fit the adapter .*size mismatch for"):
        load_trained(tmp_path / "adapter", backbone=str(tmp_path / "wide"))


def test_a_local_size_that_does_not_divide_the_patches_is_refused_before_the_data(env, tmp_path, backbone):
    """PointGST's local windows: the tiny backbone has 16 patch tokens; local_size=32 failed at the first forward,
    after the data had been read and the model built."""
    args = cli_args(backbone, tmp_path / "run")
    args[args.index("local_size=8")] = "local_size=32"
    one_line_error(
        point_peft(env, *args), 2, "--method-option local_size=32: must divide the backbone's 16 patch tokens"
    )
    untouched(env, tmp_path / "run")


def test_a_card_gives_a_sub_second_training_time_as_it_is():
    from hf_point_peft.cards import _training_time

    assert _training_time({"training_seconds": 0.34}) == "0.3 s (every epoch, across resumes)"  # read "0 s"
    assert _training_time({"wall_seconds": 42.4}) == "42 s (wall time of the run)"
