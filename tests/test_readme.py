"""Every ```python block of README.md runs, as a reader would paste it, in a fresh process in an empty folder:
found in the README itself (a new block is tested without touching this file), offline, with the Hub ids the README
uses served from a local Hugging Face cache. A block must finish without error and without peft's warning about a
model that already holds adapters, and a `print_trainable_parameters()` comment must be what it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY, cache_hub_repo

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HUB_ID = re.compile(r"[\"'](user/[\w.-]+)[\"']")


def python_blocks() -> list[tuple[str, str]]:
    """(the section heading above it + its index, code) of each ```python block."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
        heading = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        blocks.append((f"{len(blocks)}: {heading[-1] if heading else 'top'}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def _pointgst_adapter(folder: Path, base_id: str, base: Path) -> None:
    """An adapter trained on `base` that records `base_id` as its base (written after saving: peft would look the
    id up on the Hub while saving)."""
    from peft import get_peft_model

    from hf_point_peft import PointGSTConfig, PointTransformerForClassification

    model = get_peft_model(
        PointTransformerForClassification.from_pretrained(base), PointGSTConfig(rank=4, local_size=8)
    )
    model.save_pretrained(folder, save_embedding_layers=False)  # no token embeddings; no look-up of the base name
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base_id}))


# The Hub repositories README blocks load, made small and served offline. A block that loads another id fails with a
# message that points here: add the id with a function that writes its files.
def _hub_repos(workdir: Path) -> dict[str, Path]:
    from hf_point_peft import PointTransformerConfig, PointTransformerForClassification

    torch.manual_seed(0)
    base = workdir / "pointmae-scanobjectnn"
    PointTransformerForClassification(PointTransformerConfig(**TINY, num_labels=15)).save_pretrained(base)
    adapter = workdir / "pointgst-scanobjectnn"
    _pointgst_adapter(adapter, "user/pointmae-scanobjectnn", base)
    return {"user/pointmae-scanobjectnn": base, "user/pointgst-scanobjectnn": adapter}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hub")
    for repo_id, folder in _hub_repos(tmp_path_factory.mktemp("repos")).items():
        cache_hub_repo(cache, repo_id, folder)
    return cache


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")  # the synthetic shapes, generated once for every block


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 5 and all(code.strip() for _, code in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("name, code", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_readme_block_runs(name, code, tmp_path, hub_cache, data_cache):
    served = {p.name.removeprefix("models--").replace("--", "/", 1) for p in hub_cache.iterdir()}
    unknown = sorted(set(HUB_ID.findall(code)) - served)
    assert not unknown, f"README block {name} loads {unknown} from the Hub: add them to _hub_repos in {__file__}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HF_")},
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_POINT_PEFT_CACHE": str(data_cache),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, f"README block {name} failed:\n{proc.stderr[-4000:]}"
    assert "Already found a `peft_config`" not in proc.stderr, f"README block {name} stacks adapters:\n{proc.stderr}"
    for expected in re.findall(r"print_trainable_parameters\(\)\s+#\s*(.+)$", code, re.M):
        assert expected.strip() in proc.stdout, (expected, proc.stdout)
