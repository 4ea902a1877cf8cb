"""The Accelerate training loop shared by every method (one CPU to many GPUs, `accelerate launch` / `torchrun`).

Protocol: the model is selected on nothing. The loop reports the final-epoch test accuracy (single view, FPS
preprocessing, no vote) and, separately, the epoch with the best accuracy on a validation split carved from the
training data together with its test accuracy. The test split is never used to choose anything.

Determinism: data order comes from (seed, epoch), augmentation from (seed, epoch, sample index), dropout from a seed
set at every epoch start, so a run killed mid-epoch and resumed from its last checkpoint ends with the same metrics
as an uninterrupted one, and N processes with the same global batch match one process (BatchNorm statistics are
synchronised across processes).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from datasets import DatasetDict
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from ..data import PointCloudCollator, train_validation_split, validation_grouping
from ..data.splits import OWN_VALIDATION
from ..errors import SettingError
from ..models.layers import BatchNorm1d
from .arguments import TrainingArguments
from .checkpoint import (
    atomic_directory,
    prune_checkpoints,
    start_or_resume,
    training_seconds,
    write_json_atomic,
)
from .evaluation import PROTOCOL, evaluate_accuracy
from .progress import Clock

__all__ = ["TrainingArguments", "build_optimizer", "cosine_with_warmup", "end_trackers", "start_trackers", "train"]

logger = logging.getLogger(__name__)


class EpochShuffleSampler(Sampler[int]):
    """A permutation of range(n) drawn from (seed, epoch): identical on every process and after a resume."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the official grouping: no weight decay on 1-D parameters, biases or names containing "token"."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or "token" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def cosine_with_warmup(optimizer, total_steps: int, warmup_steps: int, lr: float, min_lr: float):
    """Linear warm-up from `min_lr` to `lr`, then cosine decay to `min_lr`, stepped per optimizer step."""
    floor = min_lr / lr

    def factor(step: int) -> float:
        if step < warmup_steps:
            return floor + (1 - floor) * step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _indexed(split):
    return split.add_column("index", list(range(len(split)))).with_format("numpy")


def _set_sync_batchnorm(model: torch.nn.Module, enabled: bool) -> None:
    for module in model.modules():
        if isinstance(module, BatchNorm1d):
            module.sync_stats = enabled


@dataclass
class _Data:
    """The run's splits, collators and loaders (before `accelerator.prepare`)."""

    train_split: Any
    validation_split: Any
    grouping: dict[str, Any]  # how the validation split was drawn (data/splits.py)
    train_collator: PointCloudCollator
    eval_collator: PointCloudCollator
    train_loader: DataLoader
    validation_loader: DataLoader
    test_loader: DataLoader


def _accelerator(args: TrainingArguments, out: Path) -> Accelerator:
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        cpu=args.cpu,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=args.report_to or None,
        project_dir=str(out),
    )
    if args.batch_size % accelerator.num_processes:
        raise ValueError(
            f"batch_size {args.batch_size} (the global batch) must be divisible by the {accelerator.num_processes} processes"
        )
    return accelerator


def _data(data: DatasetDict, args: TrainingArguments, manifest: dict[str, Any]) -> _Data:
    """Carve the validation split from `data["train"]` (object-disjoint where the data say which clouds are one
    object), or take the dataset's own `validation` split where it has one, and build the seeded collators and
    loaders."""
    channels = int(manifest.get("num_channels", 3))
    dataset = str(manifest.get("dataset", ""))
    if "validation" in data:  # the data set's own (a `disk` folder saved with one): used as it is, never re-drawn
        train_split, val_split = data["train"], data["validation"]
        # whether it shares objects with training is the dataset's making: not known here (null, not a claim)
        column, grouping = None, {"validation_grouping": OWN_VALIDATION, "validation_may_share_objects": None}
        logger.info(
            "validation: the dataset's own 'validation' split (%d clouds); --validation-fraction and "
            "--validation-group-by are not used",
            len(val_split),
        )
    else:
        column, grouping = validation_grouping(dataset, data["train"].column_names, args.validation_group_by)
        train_split, val_split = train_validation_split(data["train"], args.validation_fraction, args.seed, column)
    if len(val_split) == 0:
        unit = f"groups (values of '{column}')" if column else "clouds"
        raise SettingError(
            "validation_fraction",
            args.validation_fraction,
            f"carves no validation cloud from the training split ({len(train_split)} clouds): a class is drawn from "
            f"only when it has at least two {unit}, and none has; give more training clouds per class"
            + (", or group by another column" if column else ""),
        )
    if len(train_split) < args.batch_size:
        raise ValueError(f"the training split has {len(train_split)} samples, fewer than batch_size {args.batch_size}")
    train_collator = PointCloudCollator(
        args.num_points, True, args.augmentation, args.point_all_ratio, args.seed, channels=channels
    )
    eval_collator = PointCloudCollator(
        args.num_points,
        False,
        channels=channels,
        seed=args.seed,
        keep_raw=args.vote > 0,
        point_all_ratio=args.point_all_ratio,
    )
    train_loader = DataLoader(
        _indexed(train_split),
        batch_size=args.batch_size,
        sampler=EpochShuffleSampler(len(train_split), args.seed),
        collate_fn=train_collator,
        drop_last=True,
        num_workers=args.num_workers,
    )
    validation_loader, test_loader = (
        DataLoader(
            _indexed(split), batch_size=args.eval_batch_size, collate_fn=eval_collator, num_workers=args.num_workers
        )
        for split in (val_split, data["test"])
    )
    loaders = (train_loader, validation_loader, test_loader)
    return _Data(train_split, val_split, grouping, train_collator, eval_collator, *loaders)


def _optimisation(model: torch.nn.Module, args: TrainingArguments, steps_per_epoch: int):
    """AdamW (no weight decay on biases / norms / tokens) and its cosine schedule with warm-up, stepped per step."""
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    scheduler = cosine_with_warmup(
        optimizer,
        total_steps=args.epochs * steps_per_epoch,
        warmup_steps=round(args.warmup_epochs * steps_per_epoch),
        lr=args.learning_rate,
        min_lr=args.min_learning_rate,
    )
    return optimizer, scheduler


def _steps_per_epoch(args: TrainingArguments, train_loader: DataLoader) -> int:
    steps = len(train_loader) // args.gradient_accumulation_steps
    return min(steps, args.max_steps_per_epoch) if args.max_steps_per_epoch else steps


def train(
    model: torch.nn.Module,
    data: DatasetDict,
    args: TrainingArguments,
    manifest: dict[str, Any],
    before_training: Callable[[torch.nn.Module, Any], None] | None = None,
) -> dict[str, Any]:
    """Train `model` (already set up for its method) on `data["train"]`, evaluate on a carved validation split and on
    `data["test"]` every epoch, checkpoint every epoch. Returns the metrics (also in `<output_dir>/metrics.json`).

    `before_training(model, train_split)` runs on every process once the validation split is carved, before the
    model is wrapped for distribution (Point-PEFT builds its memory bank from the training part there)."""
    args.validate()
    for split in ("train", "test"):
        if split not in data:
            raise ValueError(f"the dataset has no {split!r} split (splits: {list(data)})")
    out = Path(args.output_dir)
    accelerator = _accelerator(args, out)
    set_seed(args.seed)
    run_data = _data(data, args, manifest)
    if before_training is not None:
        before_training(model, run_data.train_split)
    steps_per_epoch = _steps_per_epoch(args, run_data.train_loader)
    optimizer, scheduler = _optimisation(model, args, steps_per_epoch)
    _set_sync_batchnorm(model, args.sync_batchnorm and accelerator.num_processes > 1)
    model, optimizer, train_loader, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, run_data.train_loader, run_data.validation_loader, run_data.test_loader, scheduler
    )
    checkpoints = out / "checkpoints"
    history, start_epoch = _start(accelerator, checkpoints, manifest, args, scheduler)
    start_trackers(accelerator, args.report_to, manifest)
    clock = Clock(args.epochs, start_epoch)
    step = _Stepper(model, optimizer, scheduler, accelerator, args, steps_per_epoch)
    for epoch in range(start_epoch, args.epochs):
        epoch_start = time.perf_counter()
        run_data.train_collator.epoch = epoch
        train_loss = step.epoch(train_loader, epoch)
        evaluate = partial(
            evaluate_accuracy, model, accelerator=accelerator, vote=args.vote, collator=run_data.eval_collator
        )
        record = _epoch_record(epoch, train_loss, scheduler, evaluate(val_loader), evaluate(test_loader), epoch_start)
        history.append(record)
        _save_checkpoint(accelerator, checkpoints, epoch, manifest, history, args.keep_checkpoints)
        accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=epoch + 1)
        _main_log(accelerator)(
            f"epoch {epoch + 1}/{args.epochs}: train loss {record['train_loss']:.4f}, "
            f"val acc {100 * record['validation_accuracy']:.2f}%, test acc {100 * record['test_accuracy']:.2f}% "
            f"({clock.done(epoch)})"
        )
    results = summarise(history, args, manifest)
    results["train_samples"], results["validation_samples"] = len(run_data.train_split), len(run_data.validation_split)
    results.update(run_data.grouping)
    _write_results(accelerator, out, results, history, manifest)
    results["model"] = accelerator.unwrap_model(model)
    results["accelerator"] = accelerator
    return results


def _start(accelerator, checkpoints: Path, manifest: dict[str, Any], args: TrainingArguments, scheduler):
    """(history, first epoch): a fresh run, or the latest checkpoint's state checked against this run's settings; a
    changed learning-rate schedule (more `--epochs`) is logged and recorded (`start_or_resume`)."""
    return start_or_resume(
        accelerator,
        checkpoints,
        manifest,
        args.epochs,
        args.resume,
        args.overwrite_output_dir,
        _main_log(accelerator),
        scheduler=scheduler,
    )


class _Stepper:
    """One training epoch: the seeded forward / backward / clip / step / schedule over the training loader."""

    def __init__(self, model, optimizer, scheduler, accelerator, args: TrainingArguments, steps_per_epoch: int):
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.args, self.steps_per_epoch = args, steps_per_epoch
        self.params = [p for p in model.parameters() if p.requires_grad]

    def epoch(self, train_loader, epoch: int) -> float:
        """Train one epoch; returns the mean training loss over its samples (all processes)."""
        args, accelerator = self.args, self.accelerator
        self.model.train()
        set_seed(args.seed * 1000 + epoch, device_specific=True)
        train_loader.set_epoch(epoch)
        total_loss, total_seen, steps = torch.zeros(()), 0, 0
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{args.epochs}",
            disable=not (args.progress and accelerator.is_local_main_process),
            leave=False,
        )
        for batch in train_loader:
            loss = self._step(batch)
            total_loss += accelerator.gather(loss.detach().float().reshape(1)).mean().cpu() * len(batch["labels"])
            total_seen += len(batch["labels"])
            if accelerator.sync_gradients:
                steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if steps >= self.steps_per_epoch:
                    break
        bar.close()
        return (total_loss / max(1, total_seen)).item()

    def _step(self, batch) -> torch.Tensor:
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            with accelerator.autocast():
                loss = self.model(points=batch["points"], labels=batch["labels"]).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.args.max_grad_norm:
                accelerator.clip_grad_norm_(self.params, self.args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss


def _epoch_record(epoch: int, train_loss: float, scheduler, val: dict, test: dict, epoch_start: float) -> dict:
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "learning_rate": scheduler.get_last_lr()[0],
        "validation_accuracy": val["accuracy"],
        "validation_loss": val["loss"],
        "test_accuracy": test["accuracy"],
        "test_mean_class_accuracy": test["mean_class_accuracy"],
        "test_loss": test["loss"],
        "seconds": time.perf_counter() - epoch_start,  # this epoch's training + evaluation
    }


def _write_results(accelerator, out: Path, results: dict, history: list[dict], manifest: dict) -> None:
    """metrics.json and the learning curves (main process), then close the trackers and wait for every process."""
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "metrics.json", results)
        from .plots import plot_learning_curves

        plot_learning_curves(history, out / "learning_curves.png", title=manifest.get("method", ""))
    end_trackers(accelerator)
    accelerator.wait_for_everyone()


def _main_log(accelerator) -> Callable[[str], None]:
    """Log on the main process only (every process runs the loop)."""
    return logger.info if accelerator.is_main_process else (lambda *_: None)


def start_trackers(accelerator, report_to: list[str], manifest: dict[str, Any]) -> None:
    """Open the experiment trackers (project "point-peft"; TensorBoard writes to <output_dir>/point-peft) with the
    run's settings as hyper-parameters, flat scalars and strings. Metrics are logged at step = epoch, so a resumed run
    continues the curves where the interrupted one stopped."""
    if not report_to:
        return
    settings = manifest.get("settings", {})
    flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()}
    flat.update(method=str(manifest.get("method")), backbone=str(manifest.get("backbone")))
    accelerator.init_trackers("point-peft", config=flat)


def end_trackers(accelerator) -> None:
    """Close the trackers (flush their files). Not `accelerator.end_training()`, which also tears down the process
    group that the job still needs to save its result."""
    for tracker in accelerator.trackers:
        tracker.finish()


def _save_checkpoint(accelerator, folder: Path, epoch: int, manifest, history, keep: int) -> None:
    target = folder / f"epoch-{epoch:04d}"
    # every process writes its part of the state into the same temporary folder, then the main process moves it
    tmp = folder / f".epoch-{epoch:04d}.partial"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / "manifest.json", manifest)
        write_json_atomic(tmp / "history.json", history)

        def move(dest: Path) -> None:
            for child in tmp.iterdir():
                os.replace(child, dest / child.name)

        atomic_directory(target, move)
        tmp.rmdir()
        prune_checkpoints(folder, keep)
    accelerator.wait_for_everyone()


def summarise(history: list[dict[str, Any]], args: TrainingArguments, manifest: dict[str, Any]) -> dict[str, Any]:
    final = history[-1]
    best = max(history, key=lambda r: (r["validation_accuracy"], -r["epoch"]))
    return {
        "protocol": PROTOCOL if not args.vote else f"final-epoch, {args.vote}-view vote (mean of views)",
        "final_epoch": final["epoch"],
        "test_accuracy": final["test_accuracy"],
        "test_mean_class_accuracy": final["test_mean_class_accuracy"],
        "best_validation_epoch": best["epoch"],
        "best_validation_accuracy": best["validation_accuracy"],
        "test_accuracy_at_best_validation_epoch": best["test_accuracy"],
        "history": history,
        "training_seconds": training_seconds(history),
        "manifest": manifest,
        "arguments": {k: v for k, v in dataclasses.asdict(args).items() if k != "extra"},
    }
