"""Hub integration without a Hub: uploads are captured at the huggingface_hub API boundary (HfApi.create_repo /
create_commit, which every upload path goes through), and adapters load by repo id from a pre-populated offline
cache in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from peft import get_peft_model
from tiny import cache_hub_repo, points, tiny_transformer

import hf_point_peft  # noqa: F401
from hf_point_peft import PointGSTConfig, PointTransformerForClassification
from hf_point_peft.cli import main as cli
from hf_point_peft.hub import push_folder


@pytest.fixture
def captured(monkeypatch):
    calls = {"repos": [], "commits": []}

    def create_repo(self, repo_id, **kwargs):
        calls["repos"].append((repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, commit_message, **kwargs):
        files = {}
        for op in operations:
            source = op.path_or_fileobj
            files[op.path_in_repo] = Path(source).read_bytes() if isinstance(source, str) else bytes(source)
        calls["commits"].append({"repo_id": repo_id, "message": commit_message, "files": files})
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}",
            commit_message=commit_message,
            commit_description="",
            oid="0" * 40,
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "preupload_lfs_files", lambda self, *a, **k: None, raising=False)
    return calls


def adapter(tmp_path):
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer())
    base.save_pretrained(tmp_path / "base")
    model = get_peft_model(
        PointTransformerForClassification.from_pretrained(tmp_path / "base"),
        PointGSTConfig(rank=4, local_size=8, init_weights=False),
    )
    model.save_pretrained(tmp_path / "adapter")
    return model


def test_push_folder_uploads_adapter_and_card(tmp_path, captured):
    adapter(tmp_path)
    (tmp_path / "adapter" / "README.md").write_text("---\nlibrary_name: peft\n---\n# card\n")
    url = push_folder(tmp_path / "adapter", "user/pointgst-test", private=True)
    assert captured["repos"][0][0] == "user/pointgst-test" and captured["repos"][0][1]["private"] is True
    files = captured["commits"][-1]["files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert files["adapter_model.safetensors"] == (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    assert "user/pointgst-test" in url
    with pytest.raises(FileNotFoundError, match="neither an adapter"):
        push_folder(tmp_path, "user/x")


def test_cli_push_and_peft_push_to_hub(tmp_path, captured, capsys):
    model = adapter(tmp_path)
    assert cli(["push", str(tmp_path / "adapter"), "user/cli-push", "--token", "hf_test"]) == 0  # a push needs one
    assert "pushed" in capsys.readouterr().out
    model.push_to_hub("user/peft-push")  # peft's own path goes through the same API
    files = captured["commits"][-1]["files"]
    assert captured["commits"][-1]["repo_id"] == "user/peft-push"
    config = json.loads(files["adapter_config.json"])
    assert config["peft_type"] == "POINT_GST" and "adapter_model.safetensors" in files


def test_load_adapter_by_repo_id_from_offline_cache(tmp_path):
    model = adapter(tmp_path).eval()
    x = points(seed=3)
    with torch.no_grad():
        expected = model(points=x).logits
    torch.save(x, tmp_path / "x.pt")
    cache_hub_repo(tmp_path / "hub", "user/pointgst-cached", tmp_path / "adapter")
    script = (
        "import torch, hf_point_peft\n"
        "from peft import PeftModel, PeftConfig\n"
        "from hf_point_peft import PointTransformerForClassification\n"
        "assert PeftConfig.from_pretrained('user/pointgst-cached').peft_type == 'POINT_GST'\n"
        f"base = PointTransformerForClassification.from_pretrained({str(tmp_path / 'base')!r})\n"
        "model = PeftModel.from_pretrained(base, 'user/pointgst-cached').eval()\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "with torch.no_grad():\n"
        f"    torch.save(model(points=x).logits, {str(tmp_path / 'out.pt')!r})\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)


def test_model_card_metadata_is_valid(tmp_path):
    from hf_point_peft.cards import build_model_card
    from hf_point_peft.training.job import FinetuneJob

    results = {
        "protocol": "final-epoch, single-view",
        "test_accuracy": 0.8123,
        "test_mean_class_accuracy": 0.8,
        "final_epoch": 5,
        "best_validation_epoch": 4,
        "best_validation_accuracy": 0.85,
        "test_accuracy_at_best_validation_epoch": 0.81,
        "trainable_parameters": 1000,
        "total_parameters": 40000,
        "saved_bytes": 5 * 2**20,
        "label_names": ["a", "b"],
        "wall_seconds": 12.0,
    }
    card = build_model_card(FinetuneJob(), results, is_peft=True, repo_id="user/demo")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    assert data["library_name"] == "peft" and data["license"] == "apache-2.0"
    result = data["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test" and result["metrics"][0]["value"] == 81.23
    assert "5.00 MiB" in loaded.text and "1,000 of 40,000 (2.50%)" in loaded.text
    assert "'user/demo'" in loaded.text and "import hf_point_peft" in loaded.text
