"""Tiny random-weight models and inputs shared by the tests (fast on 2 CPU cores, same code paths as full size)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from hf_point_peft import PointGPTConfig, PointTransformerConfig

TINY = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "num_groups": 16,
    "group_size": 8,
    "num_points": 128,
    "patch_first_channels": [16, 32],
    "patch_second_channels": [32],
}


DATA = {"train_per_class": 4, "test_per_class": 2, "num_points": 160}  # synthetic shapes: 60 + 30 small clouds


def cli_args(backbone, out, *extra) -> list[str]:
    """`point-peft finetune` of PointGST on a tiny backbone and the small synthetic split, 1 s an epoch."""
    opts = [f"--dataset-option={k}={v}" for k, v in DATA.items()]
    return [
        "finetune",
        "--backbone",
        str(backbone),
        "--output-dir",
        str(out),
        "--batch-size",
        "8",
        "--eval-batch-size",
        "16",
        "--num-points",
        "128",
        "--warmup-epochs",
        "0.5",
        "--lr",
        "3e-3",
        "--method-option",
        "rank=4",
        "--method-option",
        "local_size=8",
        "--no-progress",
        *opts,
        *extra,
    ]


def tiny_transformer(**kw) -> PointTransformerConfig:
    base = {**TINY, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 4, "num_labels": 5}
    return PointTransformerConfig(**{**base, **kw})


def tiny_gpt(**kw) -> PointGPTConfig:
    return PointGPTConfig(**{**TINY, "generator_num_hidden_layers": 1, "num_labels": 5, **kw})


def points(batch: int = 3, n: int = 128, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(batch, n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Zero every dropout / drop-path probability so that train-mode forwards are deterministic."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "drop_prob"):
            m.drop_prob = 0.0
    return model


def cache_hub_repo(hub_cache: Path, repo_id: str, folder: Path) -> None:
    """Put `folder` into a Hugging Face cache (`HF_HUB_CACHE`) as the main revision of model repo `repo_id`, the
    layout huggingface_hub reads with HF_HUB_OFFLINE=1: the Hub, served from a local folder."""
    commit = "a" * 40
    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
