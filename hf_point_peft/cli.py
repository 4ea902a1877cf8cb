"""The jobs behind the `point-peft` sub-commands (convert, pretrain, finetune, evaluate, push, benchmark, recipes).

The command line itself (arguments, `--help`, the checks that need no library, logging, one-line errors and exit
statuses) is the light `hf_point_peft_cli` package, so that `--help` does not wait for torch; `main` is re-exported
here for `python -m hf_point_peft.cli` and `torchrun -m hf_point_peft.cli`. Each `_run_<command>(args)` receives the
parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
from pathlib import Path

from hf_point_peft_cli import build_parser, main
from hf_point_peft_cli.parser import CONVERT_METHODS

from .errors import SettingError

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def _run_convert(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in {
            "num_labels": args.num_labels,
            "num_groups": args.num_groups,
            "group_size": args.group_size,
            "num_points": args.num_points,
            "num_attention_heads": args.num_heads,
        }.items()
        if value is not None
    }
    if args.official_config:
        overrides["official_config"] = args.official_config
    if args.exact_fps == "off":
        overrides["fps_skip_sq_norm"] = None
    if args.source in CONVERT_METHODS:
        return _convert_method(args, overrides)
    if args.pretrained or args.memory_bank or args.source_model or args.method_option:
        raise ValueError(
            "--pretrained, --memory-bank, --source-model and --method-option are for fine-tuned PEFT checkpoints"
        )
    if args.source == "pointgpt":
        from .models.point_gpt.convert_point_gpt import convert_point_gpt_checkpoint

        if args.task != "classification":
            raise SystemExit("error: --task masked-modeling is only available for Point-MAE-style checkpoints")
        if args.no_generator:
            overrides["generator_num_hidden_layers"] = 0
        _, report = convert_point_gpt_checkpoint(args.checkpoint, output_dir=args.out, **overrides)
    else:
        from .models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

        _, report = convert_point_transformer_checkpoint(
            args.checkpoint, args.source, task=args.task, output_dir=args.out, **overrides
        )
    print(report.summary())
    print(f"wrote {args.out}")
    return 0


def _convert_method(args: argparse.Namespace, overrides: dict) -> int:
    from .conversion import METHOD_CONVERTERS

    options = {"method_options": _options(args.method_option), "command": _command_line(args)}
    for flag, value, method in (
        ("--memory-bank", args.memory_bank, "point-prompt"),
        ("--source-model", args.source_model, "any2point"),
    ):
        if value is not None and args.source != method:
            raise ValueError(f"{flag} is for --from {method}, not --from {args.source}")
    if args.source == "any2point":
        if set(overrides) - {"official_config"}:
            raise ValueError(f"--from any2point reads every size from the checkpoint and --source-model: {overrides}")
        options["source"] = args.source_model
        if args.pretrained:
            raise ValueError("--pretrained is not used by --from any2point: the source model is --source-model")
    else:
        options["pretrained"] = args.pretrained
    if args.source == "point-prompt":
        options["memory_bank"] = args.memory_bank
    converted = METHOD_CONVERTERS[args.source](args.checkpoint, output_dir=args.out, **options, **overrides)
    print(converted.report.summary())
    print("deliberate deviations from the official computation:")
    for deviation in converted.deviations:
        print(f"  - {deviation}")
    print(f"wrote {converted.adapter_dir} and {converted.base_dir}")
    return 0


def _read_text(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag}: no file at {path}")
    return Path(path).read_text()


def _options(pairs) -> dict:
    """`--x-option key=value` pairs (parsed by the command line) as a dictionary; a later key wins."""
    return dict(pairs or [])


# settings whose command-line flag is spelled differently from the field
_FLAG_DESTS = {
    "learning_rate": "lr",
    "min_learning_rate": "min_lr",
    "gradient_accumulation_steps": "grad_accum",
    "num_workers": "workers",
}


def _from_args(cls, args: argparse.Namespace, **explicit):
    """The settings dataclass `cls` with each field the command line has a flag for, and `explicit` (which wins:
    the option dictionaries, the command line, ...); fields without a flag keep their defaults."""
    values = {}
    for item in dataclasses.fields(cls):
        dest = _FLAG_DESTS.get(item.name, item.name)
        if item.name not in explicit and hasattr(args, dest):
            value = getattr(args, dest)
            values[item.name] = list(value) if isinstance(value, list) else value
    return cls(**values, **explicit)


def _training_args(args):
    from .training.loop import TrainingArguments

    return _from_args(TrainingArguments, args)


def _apply_recipe(args: argparse.Namespace):
    """Re-read the command line with the recipe's values as the finetune defaults, so that explicit flags win."""
    from .training.recipes import get_recipe

    recipe = get_recipe(args.recipe)
    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    choices["finetune"].set_defaults(**recipe.flag_defaults())
    reparsed = parser.parse_args(args.argv)
    reparsed.argv, reparsed.progress = args.argv, args.progress
    if reparsed.method != recipe.method:  # its method options, groups and schedule are that method's
        raise SettingError(
            "method", reparsed.method, f"recipe {recipe.name} is a {recipe.method} recipe: drop --method, or the recipe"
        )
    if reparsed.backbone == choices["finetune"].get_default("backbone"):
        if recipe.method == "any2point":
            raise ValueError(f"recipe {recipe.name} fine-tunes {recipe.backbone}: pass its folder as --backbone")
        logger.warning(f"recipe {recipe.name} fine-tunes {recipe.backbone}; pass its converted folder as --backbone")
    return reparsed, recipe


def _run_finetune(args: argparse.Namespace) -> int:
    from .training.job import FinetuneJob, run_finetune

    _quiet_libraries(args)
    recipe = None
    if args.recipe:
        args, recipe = _apply_recipe(args)
    job = FinetuneJob(
        method=args.method,
        backbone=args.backbone,
        dataset=args.dataset,
        data_path=args.data_path,
        dataset_options=_options(args.dataset_option),
        method_options={**(recipe.method_options if recipe else {}), **_options(args.method_option)},
        model_options={**(recipe.model_options if recipe else {}), **_options(args.model_option)},
        training=_training_args(args),
        bank_options={k: v for k, v in (("max_size", args.bank_max_size), ("dtype", args.bank_dtype)) if v is not None},
        command=_command_line(args),
        recipe=recipe.name if recipe else None,
    )
    run_finetune(job)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .training.inference import evaluate_saved

    _quiet_libraries(args)
    if args.output and not Path(args.output).expanduser().parent.is_dir():  # before the evaluation, not after it
        raise SettingError("output", args.output, "its folder does not exist: create it, or write elsewhere")
    path = args.path
    if not Path(path).expanduser().exists():  # a Hub id (checked by the command line): its files, from the cache
        from huggingface_hub import snapshot_download

        path = snapshot_download(args.path)
    metrics = evaluate_saved(
        path,
        backbone=args.backbone,
        dataset=args.dataset,
        data_path=args.data_path,
        dataset_options=_options(args.dataset_option),
        split=args.split,
        num_points=args.num_points,
        batch_size=args.batch_size,
        vote=args.vote,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
    )
    metrics["path"] = args.path
    print(
        f"{metrics['split']} accuracy {100 * metrics['accuracy']:.2f}% (mean class accuracy "
        f"{100 * metrics['mean_class_accuracy']:.2f}%, {metrics['samples']} clouds of {metrics['dataset']}, "
        f"{metrics['num_points']} points, batches of {metrics['batch_size']}, {metrics['protocol']}): {args.path}"
    )
    if args.output:
        from .atomic import write_json_atomic

        write_json_atomic(args.output, metrics)
    return 0


def _run_pretrain(args: argparse.Namespace) -> int:
    from .training.pretrain import PretrainJob, run_pretrain

    _quiet_libraries(args)
    job = _from_args(
        PretrainJob,
        args,
        dataset_options=_options(args.dataset_option),
        model_config=_options(args.model_option),
        command=_command_line(args),
        data_sources=_read_text(args.data_sources, "--data-sources"),
    )
    run_pretrain(job)
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    url = push_folder(args.path, args.repo_id, private=args.private, token=args.token, commit_message=args.message)
    print(f"pushed {args.path} to {args.repo_id}: {url}")
    return 0


def _run_benchmark(args: argparse.Namespace) -> int:
    from .training.benchmark import BenchmarkOptions, run_benchmark

    _quiet_libraries(args)
    options = _from_args(
        BenchmarkOptions, args, dataset_options=_options(args.dataset_option), command=_command_line(args)
    )
    run_benchmark(options)
    return 0


def _quiet_libraries(args: argparse.Namespace) -> None:
    """The libraries' own messages, warnings and per-call progress bars (downloads, dataset maps) are noise next to
    this command's lines; `--log-level debug` shows them."""
    import datasets
    import huggingface_hub
    import transformers

    debug = args.log_level == "debug" and not args.quiet
    level = logging.INFO if debug else logging.ERROR
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(level)
    huggingface_hub.utils.logging.set_verbosity(level)
    for name in ("accelerate", "peft", "torch"):
        logging.getLogger(name).setLevel(level)
    if not debug:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()


def _command_line(args: argparse.Namespace) -> str:
    """The command as the user typed it, recorded in model cards."""
    return "point-peft " + " ".join(shlex.quote(a) for a in args.argv)


if __name__ == "__main__":
    sys.exit(main())


def _run_recipes(args: argparse.Namespace) -> int:
    from .training.recipes import MISSING, RECIPES, get_recipe

    if args.show:
        print(json.dumps(get_recipe(args.show).describe(), indent=2))
        return 0
    print(f"{'recipe':36} {'dataset':24} {'epochs':>6} {'lr':>7} {'batch':>5} {'points':>6}  augmentation")
    for r in RECIPES.values():
        print(
            f"{r.name:36} {r.dataset:24} {r.epochs:>6} {r.learning_rate:>7g} {r.batch_size:>5} {r.num_points:>6}  "
            f"{r.augmentation}"
        )
    print("\nno official configuration (so no recipe):")
    for what, why in MISSING.items():
        print(f"  {what}: {why}")
    print("\nusage: point-peft finetune --recipe NAME --backbone <converted official backbone> --data-path DIR")
    return 0
