"""The settings of a training run: what every run has (`RunArguments`), fine-tuning's (`TrainingArguments`);
pre-training's (`PretrainJob`, training/pretrain.py) derive from the first with their own defaults. The fields
stay flat, so a run's recorded settings (metrics files, checkpoint manifests) keep one key per setting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import SettingError

__all__ = ["RunArguments", "TrainingArguments"]


@dataclass
class RunArguments:
    """Where a run writes, its schedule (AdamW + cosine with linear warm-up), input size and augmentation,
    precision, seed, resuming, device, trackers and progress bars."""

    output_dir: str = "outputs/run"
    epochs: int = 10
    batch_size: int = 32  # global batch (split across processes)
    learning_rate: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_learning_rate: float = 1e-6
    max_grad_norm: float = 10.0
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16"
    seed: int = 0
    num_points: int = 1024
    augmentation: str = "scale_translate"
    resume: bool = False
    overwrite_output_dir: bool = False  # without resume: delete an earlier run's checkpoints instead of refusing
    keep_checkpoints: int = 2
    cpu: bool = False
    progress: bool = True
    report_to: list[str] = field(default_factory=list)  # Accelerate experiment trackers ("tensorboard", "wandb", ...)


@dataclass
class TrainingArguments(RunArguments):
    """Knobs of the fine-tuning loop. Defaults follow the official recipes (AdamW 5e-4, wd 0.05, clip 10, cosine, 10
    warm-up epochs out of 300), scaled by `epochs`."""

    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    point_all_ratio: float = 1200 / 1024
    validation_fraction: float = 0.1
    validation_group_by: str | None = None  # column whose equal values are one object (data/splits.py)
    vote: int = 0
    num_workers: int = 0
    sync_batchnorm: bool = True
    max_steps_per_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        checks = {
            "epochs": (self.epochs >= 1, "must be >= 1"),
            "batch_size": (self.batch_size >= 1, "must be >= 1"),
            "eval_batch_size": (self.eval_batch_size >= 1, "must be >= 1"),
            "learning_rate": (self.learning_rate > 0, "must be > 0"),
            "weight_decay": (self.weight_decay >= 0, "must be >= 0"),
            "warmup_epochs": (0 <= self.warmup_epochs <= self.epochs, f"must be between 0 and epochs ({self.epochs})"),
            "gradient_accumulation_steps": (self.gradient_accumulation_steps >= 1, "must be >= 1"),
            "num_points": (self.num_points >= 1, "must be >= 1"),
            "point_all_ratio": (self.point_all_ratio >= 1.0, "must be >= 1"),
            "validation_fraction": (0 < self.validation_fraction < 1, "must be between 0 and 1"),
            "vote": (self.vote >= 0, "must be >= 0"),
            "mixed_precision": (self.mixed_precision in ("no", "bf16", "fp16"), "must be no, bf16 or fp16"),
        }
        for name, (ok, reason) in checks.items():
            if not ok:
                raise SettingError(name, getattr(self, name), f"invalid training argument: {reason}")
