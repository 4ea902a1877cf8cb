"""Model cards of finished runs: `write_model_card` fills `model_cards/adapter_card.md` from a fine-tuning run (base
model, dataset, method, trainable parameters, file size, metrics under the stated protocol, loading snippet with
`import hf_point_peft` first, valid `huggingface_hub.ModelCard` metadata with a model-index), `write_backbone_card`
fills `model_cards/backbone_card.md` from a pre-training run. The card a plain `save_pretrained` writes is
`tuners/card.py`'s; uploads are `hub.py`'s.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import peft
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .data.splits import OWN_VALIDATION
from .naming import portable_base_name
from .tuners.card import METHOD_DESCRIPTIONS as _BY_PEFT_TYPE

__all__ = [
    "LIBRARY_LICENSE",
    "METHOD_DESCRIPTIONS",
    "build_backbone_card",
    "build_model_card",
    "write_backbone_card",
    "write_model_card",
]

LIBRARY_LICENSE = "apache-2.0"  # the library's, and that of the weights it trains on data of its own

_PEFT_TYPES = {"pointgst": "point_gst", "point-prompt": "point_prompt", "any2point": "any2point", "lora": "lora"}

# the command line's methods; the three of this package are described once, in tuners/card.py (by peft type)
METHOD_DESCRIPTIONS = {
    **{method: _BY_PEFT_TYPE[kind.upper()] for method, kind in _PEFT_TYPES.items() if kind.upper() in _BY_PEFT_TYPE},
    "lora": "LoRA on the attention projections (peft)",
    "full": "full fine-tuning",
    "linear": "linear probe (only the classification head trains)",
}


_DATASET_NAMES = {"synthetic": "synthetic shapes (hf_point_peft)", "synthetic-hard": "synthetic shapes, hard"}


def _template(name: str = "adapter_card.md") -> str:
    return (resources.files("hf_point_peft") / "model_cards" / name).read_text()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _size(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def build_model_card(job, results: dict[str, Any], is_peft: bool, repo_id: str | None = None) -> ModelCard:
    """The card of a finished run (`job`: a FinetuneJob, `results`: what `run_finetune` returned)."""
    from .training.backbones import EMBEDDED_BACKBONE, resolve_backbone

    args = job.training
    source, pretrained = resolve_backbone(job.backbone)
    backbone_source = portable_base_name(source)  # never a path of this machine
    architecture = EMBEDDED_BACKBONE if job.backbone == "scratch" else backbone_source
    base_model = backbone_source if pretrained else f"{architecture} architecture, random initialisation"
    model_name = repo_id or f"{job.method}-{job.dataset}"
    trainable, total = results.get("trainable_parameters"), results.get("total_parameters")
    fields = {
        "model_name": model_name,
        "summary": f"A {'PEFT adapter' if is_peft else 'fine-tuned model'} for point-cloud classification "
        f"({len(results.get('label_names') or [])} classes) trained with hf_point_peft.",
        "method_description": METHOD_DESCRIPTIONS.get(job.method, job.method),
        "base_model_text": f"`{base_model}`"
        + (f" (`{backbone_source}`)" if pretrained and base_model != backbone_source else ""),
        # the data folder by its name only: a card never records a path of the machine that wrote it
        "dataset_text": _DATASET_NAMES.get(job.dataset, job.dataset)
        + (f" (read from a folder `{Path(job.data_path).name}`)" if job.data_path else ""),
        "trainable": f"{trainable:,}" if trainable else "n/a",
        "total": f"{total:,}" if total else "n/a",
        "trainable_percent": _pct(trainable / total) if trainable and total else "n/a",
        "adapter_size": _size(results.get("saved_bytes")),
        "peft_version": peft.__version__,
        "base_repr": repr(str(backbone_source)) if pretrained else "'<the base folder>'",
        "repo_repr": repr(repo_id or "path/to/this/adapter"),
        "num_labels": len(results.get("label_names") or []) or "NUM_LABELS",
        "command": job.command or "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "resume_text": "".join(f"{line}\n\n" for line in _schedule_changes(results.get("history", []))),
        "settings_rows": "\n".join(f"| {k} | {v} |" for k, v in _run_settings(job).items()),
        "wall_time": _training_time(results),
        **_result_fields(args, results),
    }
    card_data = _card_data(job, results, is_peft, model_name, base_model if pretrained else None)
    return ModelCard.from_template(card_data, template_str=_template(), **fields)


def _card_data(job, results: dict[str, Any], is_peft: bool, model_name: str, base_model: str | None):
    """The card's metadata: library, base model, tags and the model-index entry of the test accuracy."""
    tags = ["point-cloud", "3d", "hf_point_peft", job.method]
    if is_peft:
        tags.append(_PEFT_TYPES.get(job.method, job.method))
    return ModelCardData(
        model_name=model_name,
        library_name="peft" if is_peft else "transformers",
        license=LIBRARY_LICENSE,
        base_model=base_model,
        tags=tags,
        datasets=[job.dataset],
        metrics=["accuracy"],
        eval_results=[
            EvalResult(
                task_type="object-classification",
                task_name="Point cloud classification",
                dataset_type=job.dataset,
                dataset_name=_DATASET_NAMES.get(job.dataset, job.dataset),
                dataset_split="test",
                metric_type="accuracy",
                metric_name=f"Accuracy ({results['protocol']})",
                metric_value=round(100 * results["test_accuracy"], 2),
            )
        ],
    )


def _run_settings(job) -> dict[str, Any]:
    """The settings table of a run's card."""
    args = job.training
    return {
        "epochs": args.epochs,
        "global batch size": args.batch_size,
        "learning rate / min": f"{args.learning_rate} / {args.min_learning_rate} (cosine, {args.warmup_epochs} warm-up epochs)",
        "weight decay": f"{args.weight_decay} (none on biases, 1-D parameters, tokens)",
        "gradient clipping": args.max_grad_norm,
        "points per cloud": f"{args.num_points} (train: FPS to {round(args.num_points * args.point_all_ratio)}, or all "
        "points of a smaller cloud, then a random subset)",
        "augmentation": args.augmentation,
        "mixed precision": args.mixed_precision,
        "seed": args.seed,
        "method options": job.method_options or "defaults",
        "recipe": getattr(job, "recipe", None) or "none",
    }


def _validation_split(args, results: dict[str, Any]) -> str:
    """The validation split as carved (a class with one cloud gives none, every other at least one, so the share can
    differ from --validation-fraction), or as the dataset gave it."""
    val, train = results.get("validation_samples"), results.get("train_samples")
    if results.get("validation_grouping") == OWN_VALIDATION:
        return f"{val} clouds"
    known = val and train is not None
    share = f"{val} clouds, {100 * val / (val + train):.0f}%" if known else f"{100 * args.validation_fraction:.0f}%"
    return f"{share} of the training data, stratified, seed {args.seed}"


def _result_fields(args, results: dict[str, Any]) -> dict[str, Any]:
    """The card's results section: protocol, validation split and the figures."""
    return {
        "protocol": results["protocol"],
        "final_epoch_text": f"final (epoch {results['final_epoch']})",
        "num_points": args.num_points,
        "vote_text": f", {args.vote}-view vote" if args.vote else ", no vote",
        "validation_split": _validation_split(args, results),
        "validation_grouping": results.get("validation_grouping", "cloud by cloud (not recorded by this run)"),
        "seed": args.seed,
        "test_accuracy": _pct(results["test_accuracy"]),
        "test_mean_class_accuracy": _pct(results.get("test_mean_class_accuracy")),
        "best_validation_epoch": results["best_validation_epoch"],
        "best_validation_accuracy": _pct(results["best_validation_accuracy"]),
        "test_at_best": _pct(results["test_accuracy_at_best_validation_epoch"]),
    }


def write_model_card(folder: str | os.PathLike, job, results: dict[str, Any], is_peft: bool, repo_id=None) -> Path:
    path = Path(folder) / "README.md"
    build_model_card(job, results, is_peft, repo_id).save(path)
    return path


def _seconds(value: float) -> str:
    """'42 s', or '0.3 s' for a run under a second (a whole-second figure read 0 s)."""
    return f"{value:.0f} s" if value >= 1 else f"{value:.1g} s"


def _training_time(results: dict[str, Any]) -> str:
    if "training_seconds" in results:
        return f"{_seconds(results['training_seconds'])} (every epoch, across resumes)"
    return f"{_seconds(results.get('wall_seconds', 0))} (wall time of the run)"


def _pretrain_settings(job) -> dict[str, Any]:
    """The settings table of a pre-training run's card."""
    return {
        "epochs": job.epochs,
        "global batch size": job.batch_size,
        "learning rate / min": f"{job.learning_rate} / {job.min_learning_rate} (cosine, {job.warmup_epochs} warm-up epochs)",
        "weight decay": job.weight_decay,
        "points per cloud": job.num_points,
        "augmentation": job.augmentation,
        "mixed precision": job.mixed_precision,
        "seed": job.seed,
        "dataset options": job.dataset_options or "defaults",
        "model options": job.model_config or "defaults",
    }


def _schedule_changes(history: list[dict[str, Any]]) -> list[str]:
    """One sentence per resume that changed the learning-rate schedule (`training/checkpoint.py`), for cards."""
    return [
        f"Resumed after epoch {row['epoch']} with `--epochs {row['schedule_change']['epochs']}`: the cosine schedule "
        f"was recomputed for {row['schedule_change']['epochs']} epochs, so the learning rate went from "
        f"{row['schedule_change']['learning_rate_before']:.3g} to {row['schedule_change']['learning_rate_after']:.3g} "
        "there (a warm restart when the first schedule had ended); the command above is the last one run."
        for row in history
        if "schedule_change" in row
    ]


def _weights_license_text(license: str) -> str:
    """The card's licence line: the weights' licence, and the library's when the two differ."""
    if license == LIBRARY_LICENSE:
        return license
    return f"{license} (the licence of the pre-training data; the library is {LIBRARY_LICENSE})"


def build_backbone_card(
    folder: str | os.PathLike,
    job,
    results: dict[str, Any],
    device: str,
    name: str,
    load_path: str | None = None,
    load_code: str | None = None,
    load_import: str | None = None,
    data_sources: str | None = None,
    license: str | None = None,
) -> ModelCard:
    """The card of an encoder written by `run_pretrain` (`job`: a PretrainJob): the exact command, seed, data and
    loss curve, so that anyone can remake it. `folder` holds the saved files; the usage snippet loads from `load_path`
    or, when given, the Python expression `load_code` (after the import line `load_import`, if any).
    `data_sources` (markdown: where the pre-training data come from, their licences and counts) becomes a section
    of its own. `license` (default: the job's) is the licence of the weights, e.g. the licence the pre-training data
    impose."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    license = license or job.license
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    dataset_name = _DATASET_NAMES.get(job.dataset, job.dataset)
    card_data = ModelCardData(
        model_name=name,
        library_name="transformers",
        license=license,
        tags=["point-cloud", "3d", "hf_point_peft", "point-mae", "masked-point-modeling"],
        datasets=[job.dataset],
        pipeline_tag="feature-extraction",
    )
    fields = {
        "model_name": name,
        "architecture": "Point-MAE-style",
        "mask_percent": f"{100 * config['mask_ratio']:.0f}%",
        "config_text": f"width {config['hidden_size']}, {config['num_hidden_layers']} blocks, "
        f"{config['num_attention_heads']} heads, {config['num_groups']} FPS groups of {config['group_size']} points, "
        f"{config['num_points']} points per cloud",
        "parameters": f"{results['encoder_parameters']:,}",
        "size": _size(size),
        "dataset_text": f"{dataset_name}, train split ({results['training_clouds']} clouds)"
        + (f", read from `{job.data_path}`" if job.data_path else ""),
        "final_loss": f"{results['final_loss']:.5f}",
        "license_text": _weights_license_text(license),
        "sources_section": f"## Where the pre-training data come from\n\n{data_sources.strip()}\n\n"
        if data_sources
        else "",
        "command": job.command or "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "resume_text": "".join(f"{line}\n\n" for line in _schedule_changes(results.get("history", []))),
        "settings_rows": "\n".join(f"| {k} | {v} |" for k, v in _pretrain_settings(job).items()),
        "wall_time": _training_time(results),
        "device": device,
        "loss_rows": "\n".join(f"| {r['epoch']} | {r['train_loss']:.5f} |" for r in results["history"]),
        "path_repr": load_code or repr(str(load_path or folder)),
        "load_import": load_import or "",
    }
    return ModelCard.from_template(card_data, template_str=_template("backbone_card.md"), **fields)


def write_backbone_card(folder: str | os.PathLike, *args, **kwargs) -> Path:
    """Write `folder/README.md`: `build_backbone_card(folder, *args, **kwargs)`."""
    path = Path(folder) / "README.md"
    build_backbone_card(folder, *args, **kwargs).save(path)
    return path
