"""The fine-tuning job behind `point-peft finetune`: backbone + dataset + method -> trained adapter folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from peft import PeftModel

from ..data import load_point_dataset
from ..errors import SettingError
from ..files import check_adapter_folder, check_model_folder, read_json
from .backbones import backbone_weights_digest, load_classifier, load_source, resolve_backbone
from .checkpoint import atomic_directory, result_settings, write_json_atomic
from .loop import TrainingArguments, train
from .methods import SOURCE_METHODS, prepare_model
from .outputs import RESULT_FILES, result_folder
from .preflight import check_finetune
from .progress import format_duration

__all__ = ["FinetuneJob", "best_test_epoch", "load_trained", "run_finetune"]

logger = logging.getLogger(__name__)

# what does not change a run's result: where and how it runs and reports, and how long (--epochs may grow on resume)
_NOT_RESULT = (
    "command",
    "training",
    "output_dir",
    "epochs",
    "num_workers",
    "resume",
    "overwrite_output_dir",
    "keep_checkpoints",
    "cpu",
    "progress",
    "report_to",
)


@dataclass
class FinetuneJob:
    """Everything a fine-tuning run needs; `point-peft finetune` with no arguments runs these defaults: PointGST on
    the embedded pre-trained backbone and the synthetic shapes, a few minutes on 2 CPU cores."""

    method: str = "pointgst"
    backbone: str = "embedded"
    dataset: str = "synthetic"
    data_path: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    training: TrainingArguments = field(default_factory=TrainingArguments)
    command: str | None = None  # how the run was started, recorded in the model card
    bank_options: dict[str, Any] = field(default_factory=dict)  # Point-PEFT: build_memory_bank(max_size=, dtype=)
    recipe: str | None = None  # the official configuration it restates (`training/recipes.py`), recorded in the card

    def result_settings(self) -> dict[str, Any]:
        """Every setting that changes the run's result (seed, learning rate, batch size, points, method / dataset /
        model options, data, ...): a resume must match them all."""
        values = {**dataclasses.asdict(self), **dataclasses.asdict(self.training)}
        return result_settings(values, _NOT_RESULT)


def _manifest(checked: dict[str, Any], model: torch.nn.Module, num_labels: int) -> dict[str, Any]:
    """The checkpoint manifest: the identity `check_finetune` checked (method, backbone and its weights, dataset,
    settings) and what only the built model knows."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return {
        **checked,
        "model_type": base.config.model_type,
        "hidden_size": base.config.hidden_size,
        "num_channels": getattr(base.config, "num_channels", 3),
        "num_labels": num_labels,
        "trainable_parameter_names": sorted(n for n, p in model.named_parameters() if p.requires_grad),
    }


def run_finetune(job: FinetuneJob, log=logger.info) -> dict[str, Any]:
    """Run the job; writes `<output_dir>/{adapter or model, metrics.json, learning_curves.png, checkpoints/}`.
    Every setting is checked first (`check_finetune`), before the data are read or anything is written."""
    start = time.perf_counter()
    args = job.training
    checked = check_finetune(job)
    data = load_point_dataset(job.dataset, job.data_path, **job.dataset_options)
    names = _label_names(data)
    set_seed(args.seed)  # the new head and the adapters are initialised from the run's seed
    model, config = _model(job, names, log)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in (model.get_base_model() if isinstance(model, PeftModel) else model).parameters())
    manifest = _manifest(checked, model, len(names))
    log(
        f"{job.method} on {job.backbone} ({config.model_type}, width {config.hidden_size}), dataset {job.dataset}: "
        f"{trainable:,} trainable parameters of {total:,} ({100 * trainable / total:.2f}%)"
    )
    results = train(model, data, args, manifest, before_training=_bank_builder(job, log))
    model, accelerator = results.pop("model"), results.pop("accelerator")
    results.update(
        label_names=names,
        trainable_parameters=trainable,
        total_parameters=total,
        wall_seconds=time.perf_counter() - start,  # this invocation; `training_seconds` spans resumes
        job={k: v for k, v in dataclasses.asdict(job).items() if k != "training"},
    )
    if job.recipe:  # printed beside this project's figures, for comparison with the papers only
        results["official_protocol"] = best_test_epoch(results["history"])
    out = Path(args.output_dir)
    if accelerator.is_main_process:
        folder = save_result(model, job, results, out)
        results["saved_to"] = str(folder)
        if args.overwrite_output_dir and not args.resume:
            _remove_earlier_result(out, folder, log)
        write_json_atomic(out / "metrics.json", results)
        log(
            f"final-epoch test accuracy {100 * results['test_accuracy']:.2f}% "
            f"(best validation epoch {results['best_validation_epoch']}: test "
            f"{100 * results['test_accuracy_at_best_validation_epoch']:.2f}%), protocol: {results['protocol']}"
        )
        log(f"trainable parameters: {trainable:,} of {total:,}; saved to {folder}")
        if job.recipe:
            official = results["official_protocol"]
            log(
                f"for comparison only, {official['protocol']}: {100 * official['test_accuracy']:.2f}% (epoch "
                f"{official['epoch']}); this project reports the final epoch above"
            )
        log(f"total time {format_duration(time.perf_counter() - start)} (checks, data, model, training, saving)")
    accelerator.wait_for_everyone()
    return results


def _model(job: FinetuneJob, names: list[str], log) -> tuple[torch.nn.Module, Any]:
    """The job's base model set up for its method, and the base's config; `num_points` is checked against what the
    backbone's grouping (or Any2Point's tokenizer) needs."""
    points = job.training.num_points
    if job.method in SOURCE_METHODS:
        model = load_source(job.backbone, log=log)
        config = model.config
        model = prepare_model(job.method, model, num_labels=len(names), **job.method_options)
        needed = model.base_model.any2point_tokenizer[model.active_adapter].min_points
        if points < needed:
            raise SettingError("num_points", points, f"below what Any2Point's tokenizer needs ({needed})")
        return model, config
    model = load_classifier(job.backbone, len(names), dict(enumerate(names)), log=log, **job.model_options)
    config = model.config
    needed = max(config.num_groups, config.group_size)
    if points < needed:
        raise SettingError("num_points", points, f"below what the backbone's grouping needs ({needed})")
    return prepare_model(job.method, model, **job.method_options), config


def _label_names(data) -> list[str]:
    """The class names of a dataset's `label` column, which must be a `datasets.ClassLabel`."""
    from datasets import ClassLabel

    feature = data["train"].features.get("label")
    if not isinstance(feature, ClassLabel):
        raise ValueError(
            f"the training split's 'label' column is {feature!r}, not a datasets.ClassLabel, so the class names are "
            "unknown: cast it first, e.g. data = data.cast_column('label', ClassLabel(names=[...])), and save again"
        )
    return list(feature.names)


def best_test_epoch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The papers' protocol, for comparison only: the best test accuracy over the epochs (the test split chooses
    the epoch, which makes the figure optimistic)."""
    best = max(history, key=lambda r: (r["test_accuracy"], -r["epoch"]))
    protocol = "official protocol (best epoch chosen on the test split; optimistic)"
    return {"protocol": protocol, "test_accuracy": best["test_accuracy"], "epoch": best["epoch"]}


def _bank_builder(job: FinetuneJob, log):
    """Point-PEFT needs its memory bank before the first step: phi of every training sample (validation excluded),
    computed identically on every process."""
    if job.method != "point-prompt" or not job.method_options.get("use_memory_bank", True):
        return None

    def build(model: torch.nn.Module, train_split) -> None:
        from ..tuners.point_prompt import build_memory_bank

        rows = build_memory_bank(model, train_split, num_points=job.training.num_points, **job.bank_options)
        log(f"memory bank: {rows} rows of frozen features from the training split")

    return build


def save_result(model: torch.nn.Module, job: FinetuneJob, results: dict[str, Any], out: Path) -> Path:
    """Atomically write the adapter (PEFT methods) or the whole model, with its model card."""
    from ..cards import write_model_card

    is_peft = isinstance(model, PeftModel)
    target = result_folder(out, job.method)
    if is_peft:
        source, pretrained = resolve_backbone(job.backbone)
        model.peft_config[model.active_adapter].base_model_name_or_path = source if pretrained else None

    def write(folder: Path) -> None:
        # the methods never train a token-embedding table, so there is none to save (peft's "auto" would look the
        # recorded base name up, locally or on the Hub, and warn when that name is a folder of another machine)
        model.save_pretrained(folder, **({"save_embedding_layers": False} if is_peft else {}))
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        results["saved_bytes"] = size
        write_model_card(folder, job=job, results=results, is_peft=is_peft)
        write_json_atomic(folder / "training_metrics.json", json.loads(json.dumps(results, default=str)))

    atomic_directory(target, write, replace_foreign=False)
    return target


def _remove_earlier_result(out: Path, written: Path, log) -> None:
    """`--overwrite-output-dir` replaces the earlier run: the result folder of another kind it left (its `adapter/`
    beside this run's `model/`, or the other way round) goes too, once this run's result is in place, so that
    `evaluate <output-dir>/adapter` cannot score the stale run. A folder holding other files is the user's: kept."""
    for name, files in RESULT_FILES.items():
        other = out / name
        if other == written or not other.is_dir():
            continue
        if {p.name for p in other.iterdir()} <= files:
            shutil.rmtree(other)
            log(f"removed {other}: the earlier run's result, which --overwrite-output-dir replaces")
        else:
            log(f"kept {other}: it holds files no run writes (the earlier run's result would have been removed)")


def _base_here(recorded: str | None, trained_on: str | None) -> str | None:
    """The base to load an adapter onto on this machine. An adapter records a portable base name (naming.py): a local
    folder only by its name; when the folder the run trained on is still here under that name, it is the base."""
    if recorded and trained_on and not Path(recorded).is_dir():
        folder = Path(trained_on)
        if folder.is_dir() and folder.name == recorded:
            return str(folder)
    return recorded


def _warn_if_other_weights(folder: Path, trained_on: str | None, base_name: str) -> None:
    """Say so when the base found here holds other weights than the adapter was trained on (an embedded backbone
    updated since, a folder pre-trained again under its name): the adapter still loads, its outputs will differ."""
    here = backbone_weights_digest(base_name) if trained_on else None
    if here is not None and here != trained_on:
        logger.warning(
            f"the adapter in {folder} was trained on backbone weights {trained_on} (sha256 prefix), but {base_name} "
            f"here holds {here}: it loads, and its outputs differ from the training run's; pass the backbone it was "
            "trained on"
        )


def load_trained(folder: str | os.PathLike, backbone: str | None = None):
    """Load what `run_finetune` saved: a PEFT adapter folder (onto its recorded base, or `backbone`) or a full model."""
    from peft import PeftConfig

    from ..models import AutoModelForPointCloudClassification

    folder = Path(folder)
    meta_file = folder / "training_metrics.json"
    meta = read_json(meta_file) if meta_file.is_file() else {}
    num_labels = meta.get("manifest", {}).get("num_labels")
    names = meta.get("label_names")
    if not (folder / "adapter_config.json").is_file():
        check_model_folder(folder)
        model, info = AutoModelForPointCloudClassification.from_pretrained(folder, output_loading_info=True)
        missing = sorted(info.get("missing_keys") or [])
        if missing:  # an encoder (a pre-training run's encoder/, a backbone): its head would be random weights
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ValueError(
                f"{folder} holds no trained classifier ({len(missing)} of its weights are not in the folder: {shown}), "
                "so its predictions would come from random weights; evaluate a folder that finetune wrote "
                "(<output-dir>/adapter or <output-dir>/model), or fine-tune this one first (--backbone)"
            )
        return model
    check_adapter_folder(folder)  # peft's errors name no file (a missing weights file reads as a bad repo id)
    peft_config = PeftConfig.from_pretrained(folder)
    base_name = backbone or _base_here(peft_config.base_model_name_or_path, meta.get("job", {}).get("backbone"))
    if base_name is None:
        raise SettingError("backbone", None, f"{folder} records no base model: pass the backbone it was trained on")
    # an adapter saved outside finetune (no training metrics) records the class count of the head it trained
    num_labels = num_labels or getattr(peft_config, "base_num_labels", None)
    if peft_config.peft_type == "ANY2POINT":
        base = load_source(base_name)
    elif num_labels is None:
        base = AutoModelForPointCloudClassification.from_pretrained(base_name)
    else:
        # the trained head comes with the adapter: the fresh one made here is replaced, not worth a message
        base = load_classifier(base_name, num_labels, dict(enumerate(names)) if names else None, log=logger.debug)
    # after the base loaded: a base whose weights cannot be read is refused by the load, not compared first
    _warn_if_other_weights(folder, meta.get("manifest", {}).get("backbone_weights"), base_name)
    try:
        return PeftModel.from_pretrained(base, folder)
    except RuntimeError as err:  # peft's own methods (LoRA) load with torch's strictness: a shape mismatch
        if "size mismatch" not in str(err):
            raise
        first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise SettingError(
            "backbone", base_name, f"does not fit the adapter {folder} ({first}): pass the backbone it was trained on"
        ) from err
