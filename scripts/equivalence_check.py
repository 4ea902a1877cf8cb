"""Bit-identity check of a refactoring: the same seeds must give the same numbers before and after.

    python scripts/equivalence_check.py --reference REV [--out benchmarks/results/equivalence.json]

checks out REV (a commit, branch or tag; e.g. the main before a redesign) into a temporary git worktree, runs the
same fixed scenario once with that tree's `hf_point_peft` and once with this checkout's, each in a fresh process,
and compares every recorded tensor with `torch.equal` (no tolerance). The scenario uses the public API only
(`get_peft_model`, the configs, `build_memory_bank`), so it runs unchanged on both trees. Per method and base it
records:

- the training-mode logits and loss of one seeded forward (dropout and drop path active, as in training),
- the gradient of every trainable parameter after `loss.backward()`,
- every BatchNorm running statistic after that forward (the adapters' own statistics included),
- the evaluation-mode logits after one SGD step (alone, and in a mixed-adapter batch for the point backbones), and
  the saved adapter (`get_peft_model_state_dict`);

plus whole `run_finetune` runs of PointGST, full fine-tuning and the linear probe on a tiny backbone and a small
synthetic split (2 epochs: data order, augmentation, schedule, checkpointing; every epoch's losses and accuracies
and the saved adapter's or model's tensors), and a whole `run_pretrain` (masked modeling, 2 epochs: every epoch's
loss and the saved encoder's tensors).

Exit status 0 when everything is bit-identical, 1 otherwise (each difference is listed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the tiny point transformer of the scenario (self-contained: the script must run against older trees too)
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


def _cases():
    import torch
    from transformers import BertConfig, BertModel

    from hf_point_peft import (
        Any2PointConfig,
        PointGPTConfig,
        PointGPTForClassification,
        PointGSTConfig,
        PointPromptConfig,
        PointTransformerConfig,
        PointTransformerForClassification,
    )

    tiny = {**TINY, "num_labels": 4, "drop_path_rate": 0.1}

    def transformer():
        return PointTransformerForClassification(PointTransformerConfig(**tiny))

    def gpt():
        return PointGPTForClassification(PointGPTConfig(**tiny, generator_num_hidden_layers=1))

    def bert():
        config = BertConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=100,
            max_position_embeddings=64,
        )
        return BertModel(config, add_pooling_layer=False)

    def points(n):
        return torch.randn(3, n, 3, generator=torch.Generator().manual_seed(11)) * 0.5

    prompt = {"num_prompt_tokens": 6, "bank_topk": 4, "ga_k": 4, "prompt_layers": 1, "init_weights": False}
    a2p = {"num_labels": 4, "knn_k": 8, "num_views": 3, "tokenizer_groups": (64, 32, 16), "tokenizer_width": 96}
    return {
        "pointgst/point_transformer": (transformer, lambda: PointGSTConfig(init_weights=False, local_size=8), 128),
        "pointgst/point_gpt": (gpt, lambda: PointGSTConfig(init_weights=False, local_size=8), 128),
        "pointgst-sample-scale/point_transformer": (
            transformer,
            lambda: PointGSTConfig(init_weights=False, local_size=8, distance_scale="sample"),
            128,
        ),
        "point-prompt/point_transformer": (transformer, lambda: PointPromptConfig(**prompt), 128),
        "point-prompt/point_gpt": (gpt, lambda: PointPromptConfig(**prompt), 128),
        "any2point/bert": (bert, lambda: Any2PointConfig(init_weights=False, **a2p), 512),
    }, points


def fingerprint(out: Path) -> None:
    """Run the scenario with whichever `hf_point_peft` is importable and save every recorded tensor to `out`."""
    import torch
    from peft import get_peft_model, get_peft_model_state_dict

    import hf_point_peft
    from hf_point_peft import build_memory_bank

    torch.use_deterministic_algorithms(True)
    cases, points = _cases()
    record: dict[str, torch.Tensor] = {}
    for name, (make_base, make_config, n) in cases.items():
        torch.manual_seed(0)
        model = get_peft_model(make_base(), make_config())
        if "point-prompt" in name:
            gen = torch.Generator().manual_seed(7)
            build_memory_bank(model, [torch.randn(4, n, 3, generator=gen) for _ in range(2)])
        x, labels = points(n), torch.tensor([0, 1, 3])
        model.train()
        torch.manual_seed(1)
        out_train = model(points=x, labels=labels)
        out_train.loss.backward()
        record[f"{name}/train_logits"] = out_train.logits.detach()
        record[f"{name}/loss"] = out_train.loss.detach()
        for param_name, param in model.named_parameters():
            if param.requires_grad:
                record[f"{name}/grad/{param_name}"] = param.grad.detach().clone()
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
                record[f"{name}/bn/{buffer_name}"] = buffer.detach().clone()
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
        model.eval()
        with torch.no_grad():
            record[f"{name}/eval_logits"] = model(points=x).logits
            if "any2point" not in name:  # one adapter per sample (the base model alone for the middle one)
                mixed = model(points=x, adapter_names=["default", "__base__", "default"]).logits
                record[f"{name}/mixed_batch_logits"] = mixed
        for key, value in get_peft_model_state_dict(model).items():
            record[f"{name}/adapter/{key}"] = value.detach().clone()
    _finetune_run(record, out.parent / f"{out.stem}-run")
    _pretrain_run(record, out.parent / f"{out.stem}-pretrain")
    print(f"fingerprint of {Path(hf_point_peft.__file__).parent}", file=sys.stderr)
    torch.save(record, out)


def _finetune_run(record: dict, folder: Path) -> None:
    """Whole fine-tuning runs through the library's job API (the loop, its seeding and its checkpoints): PointGST
    (the saved adapter) and full fine-tuning and the linear probe (the saved model)."""
    import torch
    from safetensors.torch import load_file

    from hf_point_peft import PointTransformerConfig, PointTransformerModel
    from hf_point_peft.training.job import FinetuneJob, run_finetune
    from hf_point_peft.training.loop import TrainingArguments

    torch.manual_seed(0)
    PointTransformerModel(PointTransformerConfig(**TINY)).save_pretrained(folder / "backbone")
    options = {"pointgst": {"rank": 4, "local_size": 8}, "full": {}, "linear": {}}
    for method, method_options in options.items():
        training = TrainingArguments(
            output_dir=str(folder / f"run-{method}"),
            epochs=2,
            batch_size=8,
            eval_batch_size=16,
            num_points=128,
            warmup_epochs=0.5,
            learning_rate=3e-3,
            progress=False,
        )
        job = FinetuneJob(
            method=method,
            backbone=str(folder / "backbone"),
            dataset="synthetic",
            dataset_options={"train_per_class": 4, "test_per_class": 2, "num_points": 160},
            method_options=method_options,
            training=training,
        )
        results = run_finetune(job, log=lambda *_: None)
        prefix = "finetune" if method == "pointgst" else f"finetune-{method}"  # the first names of earlier runs
        for epoch in results["history"]:
            for key in ("train_loss", "validation_accuracy", "test_accuracy", "test_loss", "learning_rate"):
                record[f"{prefix}/epoch{epoch['epoch']}/{key}"] = torch.tensor(epoch[key], dtype=torch.float64)
        saved = folder / f"run-{method}" / ("adapter/adapter_model.safetensors" if method == "pointgst" else "")
        if method != "pointgst":
            saved = next((folder / f"run-{method}" / "model").glob("*.safetensors"))
        for key, value in load_file(saved).items():
            record[f"{prefix}/saved/{key}"] = value


def _pretrain_run(record: dict, folder: Path) -> None:
    """A whole masked-modeling pre-training run through the library's job API."""
    import torch
    from safetensors.torch import load_file

    from hf_point_peft.training.pretrain import PretrainJob, run_pretrain

    model = {**TINY, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 4}
    model.pop("num_points")
    job = PretrainJob(
        output_dir=str(folder),
        dataset="synthetic",
        dataset_options={"train_per_class": 2, "test_per_class": 1, "num_points": 160, "seed": 1},
        model_config=model,
        epochs=2,
        batch_size=8,
        num_points=128,
        warmup_epochs=0.5,
        progress=False,
    )
    results = run_pretrain(job, log=lambda *_: None)
    for epoch in results["history"]:
        for key in ("train_loss", "learning_rate"):
            record[f"pretrain/epoch{epoch['epoch']}/{key}"] = torch.tensor(epoch[key], dtype=torch.float64)
    for key, value in load_file(folder / "encoder" / "model.safetensors").items():
        record[f"pretrain/encoder/{key}"] = value


def _run_fingerprint(tree: Path, out: Path) -> None:
    # the synthetic shapes are generated into a cache of this run's own (seeded: the same in both trees)
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PYTHONHASHSEED": "0",
        "HF_POINT_PEFT_CACHE": str(out.parent / f"{out.stem}-cache"),
    }
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--fingerprint", str(out)], check=True, env=env, cwd=tree
    )


def compare(reference: dict, current: dict) -> list[str]:
    """Every difference between two fingerprints, as lines (empty when bit-identical)."""
    import torch

    problems = [f"only in the reference: {k}" for k in sorted(set(reference) - set(current))]
    problems += [f"only in this checkout: {k}" for k in sorted(set(current) - set(reference))]
    for key in sorted(set(reference) & set(current)):
        a, b = reference[key], current[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{key}: {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}")
        elif not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item()
            problems.append(f"{key}: differs (max abs difference {diff:.3g})")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help="git revision to compare against (checked out into a temporary worktree)")
    parser.add_argument("--out", help="also write the result (JSON, with the command) to this file")
    parser.add_argument("--fingerprint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fingerprint:
        fingerprint(Path(args.fingerprint))
        return 0
    if not args.reference:
        parser.error("--reference REV is required")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        worktree = tmp / "reference"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.reference], check=True, cwd=ROOT)
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], check=True, cwd=worktree, capture_output=True, text=True
            ).stdout.strip()
            _run_fingerprint(worktree, tmp / "reference.pt")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], check=True, cwd=ROOT)
        _run_fingerprint(ROOT, tmp / "current.pt")
        reference, current = torch.load(tmp / "reference.pt"), torch.load(tmp / "current.pt")
    problems = compare(reference, current)
    tensors = len(reference)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout)
    result = {
        "command": "python scripts/equivalence_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "reference": {"revision": args.reference, "commit": commit},
        "checkout": {"commit": head, "uncommitted_changes": dirty},
        "tensors_compared": tensors,
        "bit_identical": not problems,
        "differences": problems,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{tensors} tensors compared against {args.reference} ({commit[:10]}): ", end="")
    print("bit-identical" if not problems else f"{len(problems)} differ")
    for line in problems:
        print("  " + line)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
