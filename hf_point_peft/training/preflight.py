"""Everything about a job that can be checked before its data are read, its model is built or a file is written:
the training settings, the dataset's folder and files, the method's and the backbone's options, the point count the
backbone needs, the experiment trackers, and whether the output folder may be started in or resumed from.

A mistake found here costs the user a second, not a trained epoch; `run_finetune` and `run_pretrain` call these
first, so the Python API gets the same checks as the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import refuse_foreign_files
from ..data import check_dataset_source
from ..data.identity import data_files_record
from ..errors import SettingError
from .backbones import backbone_weights_digest
from .checkpoint import check_run_folder
from .outputs import ENCODER_FILES, RESULT_FILES, result_folder

__all__ = ["check_backbone_options", "check_finetune", "check_pretrain", "check_trackers"]


def check_trackers(report_to: list[str]) -> None:
    """Each tracker is one Accelerate knows and whose package is installed (Accelerate would silently drop it)."""
    if not report_to:
        return
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in report_to:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise SettingError("report_to", name, f"unknown tracker; choose from {', '.join(LOGGER_TYPE_TO_CLASS)}")
        if name not in available:
            package = "tensorboard" if name == "tensorboard" else name.replace("_", "-")
            raise SettingError("report_to", name, f"the {package} package is not installed: pip install {package}")


def check_backbone_options(
    backbone: str, method: str, model_options: dict[str, Any], num_points: int, method_options: dict | None = None
) -> None:
    """The backbone's config can be read, suits the method, has every `model_options` key, groups `num_points`, and
    has a patch count PointGST's `local_size` divides."""
    from transformers import AutoConfig

    from ..models import AutoModelForPointCloudClassification
    from .backbones import resolve_backbone
    from .methods import SOURCE_METHODS

    source, _ = resolve_backbone(backbone)
    config = AutoConfig.from_pretrained(source)
    is_point_model = type(config) in AutoModelForPointCloudClassification._model_mapping
    if method in SOURCE_METHODS:
        from ..tuners.any2point import RECIPES

        if config.model_type not in RECIPES:
            raise SettingError(
                "backbone",
                backbone,
                f"a {config.model_type} model; {method} needs a source encoder of another modality, one of "
                f"{', '.join(sorted(RECIPES))} (e.g. --backbone minilm)",
            )
        if model_options:
            raise SettingError("model_options", model_options, f"{method} takes no backbone overrides")
        return
    if not is_point_model:
        raise SettingError(
            "backbone",
            backbone,
            f"a {config.model_type} model, not a point-cloud model that --method {method} can train",
        )
    for key, value in model_options.items():
        if not hasattr(config, key):
            fields = ", ".join(sorted(k for k in config.to_dict() if not k.startswith("_")))
            raise SettingError(
                f"model_options.{key}", value, f"not a field of the {config.model_type} config; fields: {fields}"
            )
        setattr(config, key, value)
    needed = max(getattr(config, "num_groups", 0), getattr(config, "group_size", 0))
    if num_points < needed:
        raise SettingError(
            "num_points",
            num_points,
            f"below the {needed} points the backbone's grouping needs ({config.num_groups} groups of "
            f"{config.group_size})",
        )
    if method == "pointgst":  # the local spectral branch cuts the patch tokens into windows of local_size
        from ..tuners import PointGSTConfig

        local_size = (method_options or {}).get("local_size", PointGSTConfig().local_size)
        groups = getattr(config, "num_groups", None)
        if groups and groups % local_size:
            raise SettingError(
                "method_options.local_size",
                local_size,
                f"must divide the backbone's {groups} patch tokens (num_groups): PointGST's local windows hold "
                "local_size tokens each",
            )


def check_finetune(job) -> dict[str, Any]:
    """All the checks of a fine-tuning job (a `FinetuneJob`), in the order a user would fix them. Returns the run's
    identity as checked against the output folder's checkpoints (the start of its checkpoint manifest)."""
    from .methods import check_method_options

    args = job.training
    args.validate()
    check_dataset_source(job.dataset, job.data_path, job.dataset_options)
    check_method_options(job.method, job.method_options)
    check_backbone_options(job.backbone, job.method, job.model_options, args.num_points, job.method_options)
    check_trackers(args.report_to)
    current = {
        "method": job.method,
        "backbone": job.backbone,
        "backbone_weights": backbone_weights_digest(job.backbone),
        "dataset": job.dataset if job.data_path is None else f"{job.dataset}:{job.data_path}",
        "data_path_files": data_files_record(job.data_path),
        "settings": job.result_settings(),
    }
    check_run_folder(
        Path(args.output_dir) / "checkpoints", current, args.epochs, args.resume, args.overwrite_output_dir
    )
    kind = result_folder(args.output_dir, job.method)
    refuse_foreign_files(kind, RESULT_FILES[kind.name])
    return current


def check_pretrain(job) -> dict[str, Any]:
    """The checks of a pre-training job (a `PretrainJob`). Returns the run's identity as checked against the output
    folder's checkpoints (the start of its checkpoint manifest)."""
    from ..models import PointTransformerConfig

    for name in ("epochs", "batch_size", "num_points"):
        if getattr(job, name) < 1:
            raise SettingError(name, getattr(job, name), "must be >= 1")
    check_dataset_source(job.dataset, job.data_path, job.dataset_options)
    fields = PointTransformerConfig().to_dict()
    for key, value in job.model_config.items():
        if key not in fields:
            raise SettingError(f"model_config.{key}", value, "not a field of PointTransformerConfig")
    check_trackers(job.report_to)
    current = {
        "method": "masked-modeling",
        "dataset": job.dataset,
        "data_path_files": data_files_record(job.data_path),
        "settings": job.result_settings(),
    }
    check_run_folder(Path(job.output_dir) / "checkpoints", current, job.epochs, job.resume, job.overwrite_output_dir)
    refuse_foreign_files(Path(job.output_dir) / "encoder", ENCODER_FILES)
    return current
