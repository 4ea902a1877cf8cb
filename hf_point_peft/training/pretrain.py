"""Masked point modeling (Point-MAE) pre-training, the job behind `point-peft pretrain`.

Same Accelerate machinery as fine-tuning (AdamW with the official parameter groups, cosine schedule with warm-up,
clipping, deterministic per-epoch data, atomic per-epoch checkpoints with `--resume`). Only the training split is
read; labels are ignored. The encoder (a `PointTransformerModel`) is saved on its own, ready for
`AutoModelForPointCloudClassification.from_pretrained(folder, num_labels=...)`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..cards import LIBRARY_LICENSE, build_backbone_card, write_backbone_card
from ..data import PointCloudCollator, load_point_dataset
from ..files import read_json
from ..models import PointTransformerConfig, PointTransformerForMaskedModeling
from .arguments import RunArguments
from .checkpoint import (
    atomic_directory,
    result_settings,
    start_or_resume,
    training_seconds,
    write_json_atomic,
)
from .loop import (
    EpochShuffleSampler,
    _indexed,
    _main_log,
    _save_checkpoint,
    _set_sync_batchnorm,
    build_optimizer,
    cosine_with_warmup,
    end_trackers,
    start_trackers,
)
from .preflight import check_pretrain
from .progress import Clock, format_duration

__all__ = ["EMBEDDED_CARDS", "EMBEDDED_LOAD", "PretrainJob", "rebuild_backbone_card", "run_pretrain"]

logger = logging.getLogger(__name__)


@dataclass
class PretrainJob(RunArguments):
    """A masked-modeling pre-training run: the run settings of `RunArguments` with pre-training's defaults, plus
    the data, the encoder's config and its model card's name and command."""

    output_dir: str = "outputs/pretrain"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_epochs: float = 3.0
    dataset: str = "synthetic"
    data_path: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    command: str | None = None  # how the run was started, recorded in the encoder's model card
    name: str | None = None  # the encoder's name in its model card (default: the output folder's name)
    data_sources: str | None = None  # markdown for the card: where the data come from, licences, counts
    # the weights' licence in the card (an id of the Hub's list): the data's, when they impose one
    license: str = LIBRARY_LICENSE

    def result_settings(self) -> dict[str, Any]:
        """The settings that change the encoder it makes; a resume must match them."""
        card_only = ("command", "name", "data_sources", "license")
        return result_settings(asdict(self), (*_NOT_RESULT, "report_to", *card_only))


_NOT_RESULT = ("output_dir", "epochs", "resume", "overwrite_output_dir", "keep_checkpoints", "cpu", "progress")


def _run_epoch(model, loader, optimizer, scheduler, accelerator, job, epoch, history, manifest) -> None:
    """One epoch: train, append its row to `history`, write the checkpoint, send the row to the trackers."""
    epoch_start = time.perf_counter()
    loss = _train_epoch(model, loader, optimizer, scheduler, accelerator, job, epoch)
    history.append(
        {
            "epoch": epoch + 1,
            "train_loss": loss,
            "learning_rate": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_start,
        }
    )
    _save_checkpoint(accelerator, Path(job.output_dir) / "checkpoints", epoch, manifest, history, job.keep_checkpoints)
    accelerator.log({k: v for k, v in history[-1].items() if k != "epoch"}, step=epoch + 1)


def run_pretrain(job: PretrainJob, log=logger.info) -> dict[str, Any]:
    """Pre-train; every setting is checked first (`check_pretrain`), before the data are read or anything written."""
    start = time.perf_counter()
    out = Path(job.output_dir)
    checked = check_pretrain(job)
    accelerator = Accelerator(
        mixed_precision=job.mixed_precision,
        cpu=job.cpu,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=job.report_to or None,
        project_dir=str(out),
    )
    set_seed(job.seed)
    data = load_point_dataset(job.dataset, job.data_path, **job.dataset_options)
    _check_training_split(data, job.batch_size)
    config = PointTransformerConfig(**{"num_points": job.num_points, **job.model_config})
    model = PointTransformerForMaskedModeling(config)
    collator = PointCloudCollator(job.num_points, True, job.augmentation, 1.0, job.seed, channels=config.num_channels)
    loader, optimizer, scheduler = _loader_and_schedule(job, model, data["train"], collator)
    _set_sync_batchnorm(model, accelerator.num_processes > 1)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    manifest = _manifest(checked, config, model)
    history, first = start_or_resume(
        accelerator,
        out / "checkpoints",
        manifest,
        job.epochs,
        job.resume,
        job.overwrite_output_dir,
        _main_log(accelerator),
        scheduler=scheduler,
    )
    start_trackers(accelerator, job.report_to, manifest)
    clock = Clock(job.epochs, first)
    log(
        f"masked modeling: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(data['train'])} training clouds, {job.epochs} epochs"
    )
    for epoch in range(first, job.epochs):
        collator.epoch = epoch
        _run_epoch(model, loader, optimizer, scheduler, accelerator, job, epoch, history, manifest)
        if accelerator.is_main_process:
            log(f"epoch {epoch + 1}/{job.epochs}: Chamfer-L2 {history[-1]['train_loss']:.5f} ({clock.done(epoch)})")
    results = {
        "history": history,
        "final_loss": history[-1]["train_loss"],
        "wall_seconds": time.perf_counter() - start,  # this invocation
        "training_seconds": training_seconds(history),  # every epoch, across resumes
        "job": asdict(job),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_clouds": len(data["train"]),
    }
    if accelerator.is_main_process:
        _save_encoder(accelerator, model, job, results, log)
        log(f"total time {format_duration(time.perf_counter() - start)}")
    end_trackers(accelerator)
    accelerator.wait_for_everyone()
    return results


def _check_training_split(data, batch_size: int) -> None:
    """A train split with at least one full batch (the loader drops a partial one: an epoch would train nothing)."""
    if "train" not in data:
        raise ValueError(f"the dataset has no 'train' split (splits: {list(data)})")
    if len(data["train"]) < batch_size:
        raise ValueError(f"the training split has {len(data['train'])} clouds, fewer than batch_size {batch_size}")


def _loader_and_schedule(job: PretrainJob, model, train, collator):
    """The seeded epoch-shuffled loader, AdamW and its cosine schedule with warm-up (stepped per batch)."""
    sampler = EpochShuffleSampler(len(train), job.seed)
    loader = DataLoader(
        _indexed(train), batch_size=job.batch_size, sampler=sampler, collate_fn=collator, drop_last=True
    )
    optimizer = build_optimizer(model, job.learning_rate, job.weight_decay)
    steps = len(loader)
    scheduler = cosine_with_warmup(
        optimizer, job.epochs * steps, round(job.warmup_epochs * steps), job.learning_rate, job.min_learning_rate
    )
    return loader, optimizer, scheduler


def _manifest(checked: dict[str, Any], config: PointTransformerConfig, model: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint of this run records, and a resume must match: the identity `check_pretrain` checked (method,
    dataset and its files, settings; the data folder is read once) and what only the built model knows."""
    return {
        **checked,
        "backbone": "scratch",
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_labels": None,
        "trainable_parameter_names": sorted(n for n, p in model.named_parameters() if p.requires_grad),
    }


def _train_epoch(model, loader, optimizer, scheduler, accelerator, job: PretrainJob, epoch: int) -> float:
    """One seeded epoch of masked modeling; returns the mean Chamfer-L2 over its clouds (all processes)."""
    model.train()
    set_seed(job.seed * 1000 + epoch, device_specific=True)
    loader.set_epoch(epoch)
    total, seen = 0.0, 0
    for batch in tqdm(
        loader,
        desc=f"pretrain {epoch + 1}/{job.epochs}",
        leave=False,
        disable=not (job.progress and accelerator.is_local_main_process),
    ):
        with accelerator.autocast():
            loss = model(points=batch["points"]).loss
        accelerator.backward(loss)
        if job.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), job.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total += accelerator.gather(loss.detach().float().reshape(1)).mean().item() * len(batch["points"])
        seen += len(batch["points"])
    return total / max(1, seen)


def _save_encoder(accelerator, model, job: PretrainJob, results: dict[str, Any], log) -> None:
    """`<output_dir>/encoder` (weights, metrics, card; written atomically) and `<output_dir>/pretrain_metrics.json`."""
    out = Path(job.output_dir)
    encoder = accelerator.unwrap_model(model).point_transformer
    results["encoder_parameters"] = sum(p.numel() for p in encoder.parameters())
    device = f"{accelerator.num_processes} x {accelerator.device.type}, {torch.get_num_threads()} threads"
    results["device"] = device

    def write(folder: Path) -> None:
        encoder.save_pretrained(folder)
        write_json_atomic(folder / "pretrain_metrics.json", results)
        name = job.name or out.resolve().name
        write_backbone_card(
            folder, job, results, device, name=name, load_path=str(out / "encoder"), data_sources=job.data_sources
        )

    atomic_directory(out / "encoder", write, replace_foreign=False)
    write_json_atomic(out / "pretrain_metrics.json", results)
    log(f"saved the pre-trained encoder to {out / 'encoder'}")


# how the embedded backbones' cards load them (the folders live inside the installed package)
EMBEDDED_LOAD = {
    "load_code": "embedded_backbone_path()",
    "load_import": "from hf_point_peft.training.backbones import embedded_backbone_path",
}
# where the real-object backbone's pre-training data come from: the README that build_corpus.py wrote for its corpus
REAL_CORPUS_SOURCES = (
    "Made by `python benchmarks/real_shapes/build_corpus.py --out data/real_corpus --cache /tmp/meshsrc`: 3654 distinct"
    " models of 4010 read from 0ad-data 0.0.26-1 (CC-BY-SA-3.0 (the package's copyright file: `Files: *`, Copyright"
    " 2010 Wildfire Games)); left out: {'fewer than 12 triangles': 271, 'same geometry as a model kept': 74, 'a test"
    " or placeholder model': 11}.\n"
)
EMBEDDED_CARDS = {
    "pointmae-synthetic-small": EMBEDDED_LOAD,
    "pointmae-real-small": {
        "load_code": "embedded_folder('pointmae-real-small')",
        "load_import": "from hf_point_peft.naming import embedded_folder",
        # the run (50 epochs) was started without --data-sources: the card names the corpus here
        "data_sources": REAL_CORPUS_SOURCES,
    },
}


def rebuild_backbone_card(
    folder: str | os.PathLike, data_sources: str | None = None, license: str | None = None, **load
):
    """The card of a pre-trained encoder folder, rebuilt from its own `pretrain_metrics.json` (`load`: the
    `load_path` / `load_code` / `load_import` of `cards.build_backbone_card`; `data_sources`: a markdown section on
    where the data come from, e.g. the README a corpus builder wrote; `license`: the weights' licence, default the
    job's). The embedded backbone's card is
    `rebuild_backbone_card(embedded_backbone_path(), **EMBEDDED_LOAD)`."""
    folder = Path(folder)
    results = read_json(folder / "pretrain_metrics.json")
    job = PretrainJob(**results["job"])
    name = job.name or folder.resolve().name
    device = results.get("device", "an unrecorded device")
    sources = data_sources or job.data_sources
    return build_backbone_card(folder, job, results, device, name, data_sources=sources, license=license, **load)
