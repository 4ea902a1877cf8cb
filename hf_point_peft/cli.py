"""`point-peft` command line: one sub-command per job (convert, pretrain, finetune, evaluate, push, benchmark)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence

from .data import AUGMENTATIONS

__all__ = ["build_parser", "main"]

CONVERT_SOURCES = ("point-mae", "point-bert", "act", "recon", "pointgpt")
CONVERT_METHODS = ("pointgst", "point-prompt", "any2point")  # fine-tuned PEFT checkpoints -> adapter + base


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint to a Hugging Face model folder or a PEFT adapter folder",
        description=(
            "Read an official checkpoint with torch.load(weights_only=True), map every key explicitly and write "
            "conversion_report.txt beside the weights. Backbones (Point-MAE / Point-BERT / ACT / ReCon / PointGPT, "
            "pre-trained or fine-tuned): config.json + model.safetensors in --out. Fine-tuned PointGST / Point-PEFT / "
            "Any2Point checkpoints: --out/adapter (the PEFT adapter with a model card) and --out/base (the base model "
            "it belongs to). Sizes no tensor holds come from --official-config or the flags, never from a guess; a "
            "shape that does not fit is refused."
        ),
    )
    p.add_argument("checkpoint", help="path to the official .pth checkpoint")
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=CONVERT_SOURCES + CONVERT_METHODS,
        help="which official code made it",
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    m = p.add_argument_group("fine-tuned PEFT checkpoints (--from pointgst / point-prompt / any2point)")
    m.add_argument("--pretrained", help="the pre-trained checkpoint it was fine-tuned from (required for point-prompt)")
    m.add_argument("--memory-bank", help="point-prompt: the official memory bank file ([C, N], train_f_*.pt)")
    m.add_argument("--source-model", help="any2point: the source model folder / Hub id the run started from")
    m.add_argument(
        "--method-option", action="append", metavar="KEY=VALUE", help="adapter config field, e.g. local_size=32"
    )
    p.add_argument(
        "--task",
        default="classification",
        choices=("classification", "masked-modeling"),
        help="model to build: a classifier (default) or, for Point-MAE-style pre-training checkpoints, the "
        "masked-modeling model with its decoder",
    )
    p.add_argument(
        "--official-config",
        metavar="YAML",
        help="the official yaml of the run (cfgs/...yaml): sets groups, group size, points, heads, depth, classes",
    )
    p.add_argument("--num-labels", type=int, help="classes of a new head (read from a fine-tuned head)")
    p.add_argument(
        "--num-groups", type=int, help="patch tokens G (64 for 1024 points, 128 for 2048); no tensor holds it"
    )
    p.add_argument("--group-size", type=int, help="points per patch (read from a pre-training decoder, else required)")
    p.add_argument("--num-points", type=int, help="points per cloud the model is built for (no tensor holds it)")
    p.add_argument("--num-heads", type=int, help="attention heads (read for the released widths 384/768/1024)")
    p.add_argument(
        "--no-generator",
        action="store_true",
        help="PointGPT: drop the generator blocks (as PointGST's PointGPT does)",
    )
    p.add_argument(
        "--exact-fps",
        choices=("on", "off"),
        default="on",
        help="reproduce pointnet2_ops' FPS quirk of never picking points with |p|^2 <= 1e-3 (on, default: bit-exact "
        "official centres) or consider every point (off)",
    )
    p.set_defaults(func=_run_convert)


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

    options = {"method_options": _key_values(args.method_option, "--method-option"), "command": _command_line(args)}
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


def _key_values(items: list[str] | None, flag: str) -> dict:
    """`key=value` pairs; values are read as JSON when they parse (numbers, booleans, lists), else as strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: {flag} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _add_training_flags(p: argparse.ArgumentParser, defaults) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs (default %(default)s)")
    g.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="global batch size, split across processes (default %(default)s)",
    )
    g.add_argument(
        "--lr", type=float, default=defaults.learning_rate, help="peak learning rate of AdamW (default %(default)s)"
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.weight_decay,
        help="AdamW weight decay, not on biases / 1-D / tokens (default %(default)s)",
    )
    g.add_argument(
        "--warmup-epochs",
        type=float,
        default=defaults.warmup_epochs,
        help="linear warm-up before the cosine decay (default %(default)s)",
    )
    g.add_argument(
        "--min-lr",
        type=float,
        default=defaults.min_learning_rate,
        help="final learning rate of the cosine (default %(default)s)",
    )
    g.add_argument(
        "--num-points",
        type=int,
        default=defaults.num_points,
        help="points per cloud fed to the model (default %(default)s)",
    )
    g.add_argument(
        "--augmentation",
        choices=AUGMENTATIONS,
        default=defaults.augmentation,
        help="training augmentation (default %(default)s)",
    )
    g.add_argument(
        "--mixed-precision",
        choices=("no", "bf16", "fp16"),
        default=defaults.mixed_precision,
        help="autocast precision (default %(default)s)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of data order, augmentation and init (default %(default)s)",
    )
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    g.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="without --resume: delete an earlier run's checkpoints in the output folder (refused otherwise)",
    )
    g.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _add_finetune(sub) -> None:
    from .data import AUGMENTATIONS, DATASETS  # noqa: F401
    from .training.job import FinetuneJob
    from .training.methods import METHODS

    job = FinetuneJob()
    t = job.training
    p = sub.add_parser(
        "finetune",
        help="fine-tune a point backbone with a PEFT method (no arguments: the embedded offline default)",
        description=(
            "Fine-tune a point-cloud classifier and write <output-dir>/adapter (PEFT methods) or <output-dir>/model, "
            "with a model card, metrics.json, learning_curves.png and per-epoch checkpoints. With no arguments it runs "
            "PointGST on the embedded pre-trained backbone and the synthetic shapes, offline, in minutes on a CPU. "
            "Reported protocol: final-epoch test accuracy, single view; the best epoch on a validation split carved "
            "from the training data is reported beside it. Runs under `accelerate launch` / `torchrun` unchanged."
        ),
    )
    p.add_argument(
        "--recipe",
        metavar="NAME",
        help="an official fine-tuning configuration (`point-peft recipes` lists them); flags given here override it",
    )
    p.add_argument(
        "--method", choices=sorted(METHODS), default=job.method, help="fine-tuning method (default %(default)s)"
    )
    p.add_argument(
        "--backbone",
        default=job.backbone,
        help="'embedded' (the packaged pre-trained backbone), 'scratch' (its architecture, random weights), a model "
        "folder or a Hub id (default %(default)s)",
    )
    p.add_argument("--dataset", choices=DATASETS, default=job.dataset, help="dataset (default %(default)s)")
    p.add_argument("--data-path", help="folder of the real dataset files (or of a save_to_disk DatasetDict)")
    p.add_argument("--output-dir", default=t.output_dir, help="where everything is written (default %(default)s)")
    p.add_argument(
        "--method-option", action="append", metavar="KEY=VALUE", help="method config field, e.g. rank=16 (repeatable)"
    )
    p.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        help="dataset reader option, e.g. train_per_class=40 (repeatable)",
    )
    p.add_argument(
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="backbone config override, e.g. drop_path_rate=0.1 (repeatable)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=t.validation_fraction,
        help="share of the training split held out for validation (default %(default)s)",
    )
    p.add_argument("--vote", type=int, default=t.vote, help="test-time voting views (default 0: single view)")
    p.add_argument(
        "--grad-accum",
        type=int,
        default=t.gradient_accumulation_steps,
        help="gradient accumulation steps (default %(default)s)",
    )
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=t.max_grad_norm,
        help="gradient clipping norm, 0 = off (default %(default)s)",
    )
    p.add_argument(
        "--eval-batch-size", type=int, default=t.eval_batch_size, help="evaluation batch size (default %(default)s)"
    )
    p.add_argument(
        "--workers", type=int, default=t.num_workers, help="data-loader worker processes (default %(default)s)"
    )
    p.add_argument("--max-steps-per-epoch", type=int, help="cap the optimizer steps per epoch (quick runs)")
    p.add_argument("--bank-max-size", type=int, help="point-prompt: keep a seeded random subset of this many bank rows")
    p.add_argument(
        "--bank-dtype", choices=("float32", "float16"), help="point-prompt: storage dtype of the memory bank"
    )
    _add_training_flags(p, t)
    p.set_defaults(func=_run_finetune)


def _training_args(args):
    from .training.loop import TrainingArguments

    return TrainingArguments(
        output_dir=args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_batch_size=getattr(args, "eval_batch_size", 64),
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        min_learning_rate=args.min_lr,
        max_grad_norm=getattr(args, "max_grad_norm", 10.0),
        gradient_accumulation_steps=getattr(args, "grad_accum", 1),
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        num_points=args.num_points,
        augmentation=args.augmentation,
        validation_fraction=getattr(args, "validation_fraction", 0.1),
        vote=getattr(args, "vote", 0),
        num_workers=getattr(args, "workers", 0),
        resume=args.resume,
        overwrite_output_dir=args.overwrite_output_dir,
        max_steps_per_epoch=getattr(args, "max_steps_per_epoch", None),
        cpu=args.cpu,
        progress=not args.no_progress,
    )


def _apply_recipe(args: argparse.Namespace):
    """Re-read the command line with the recipe's values as the finetune defaults, so that explicit flags win."""
    from .training.recipes import get_recipe

    recipe = get_recipe(args.recipe)
    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    choices["finetune"].set_defaults(**recipe.flag_defaults())
    reparsed = parser.parse_args(args.argv)
    reparsed.argv = args.argv
    if reparsed.backbone == choices["finetune"].get_default("backbone"):
        if recipe.method == "any2point":
            raise ValueError(f"recipe {recipe.name} fine-tunes {recipe.backbone}: pass its folder as --backbone")
        print(f"note: recipe {recipe.name} fine-tunes {recipe.backbone}; pass its converted folder as --backbone")
    return reparsed, recipe


def _run_finetune(args: argparse.Namespace) -> int:
    from .training.job import FinetuneJob, run_finetune

    recipe = None
    if args.recipe:
        args, recipe = _apply_recipe(args)
    job = FinetuneJob(
        method=args.method,
        backbone=args.backbone,
        dataset=args.dataset,
        data_path=args.data_path,
        dataset_options=_key_values(args.dataset_option, "--dataset-option"),
        method_options={
            **(recipe.method_options if recipe else {}),
            **_key_values(args.method_option, "--method-option"),
        },
        model_options={**(recipe.model_options if recipe else {}), **_key_values(args.model_option, "--model-option")},
        training=_training_args(args),
        bank_options={k: v for k, v in (("max_size", args.bank_max_size), ("dtype", args.bank_dtype)) if v is not None},
        command=_command_line(args),
        recipe=recipe.name if recipe else None,
    )
    run_finetune(job)
    return 0


def _add_evaluate(sub) -> None:
    from .data import DATASETS

    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved adapter or model on a dataset's test split",
        description=(
            "Load an adapter folder written by `finetune` (onto the base model it records, or --backbone) or a full "
            "model folder, and report test accuracy with deterministic preprocessing (FPS to --num-points, no "
            "augmentation; --vote N averages N random views). Reproduces the accuracy printed by `finetune`."
        ),
    )
    p.add_argument("path", help="adapter folder (adapter_config.json) or model folder (config.json)")
    p.add_argument("--backbone", help="base model folder for an adapter (default: the one recorded in the adapter)")
    p.add_argument("--dataset", choices=DATASETS, help="dataset (default: the one recorded by finetune)")
    p.add_argument("--data-path", help="folder of the real dataset files")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="dataset reader option (repeatable)")
    p.add_argument("--split", default="test", help="split to evaluate (default %(default)s)")
    p.add_argument("--num-points", type=int, help="points per cloud (default: the training value)")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch size (default %(default)s)")
    p.add_argument("--vote", type=int, default=0, help="test-time voting views (default 0: single view)")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no", help="autocast precision")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU even when a GPU is present")
    p.add_argument("--output", help="also write the metrics to this JSON file")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .training.inference import evaluate_saved

    metrics = evaluate_saved(
        args.path,
        backbone=args.backbone,
        dataset=args.dataset,
        data_path=args.data_path,
        dataset_options=_key_values(args.dataset_option, "--dataset-option"),
        split=args.split,
        num_points=args.num_points,
        batch_size=args.batch_size,
        vote=args.vote,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
    )
    print(json.dumps(metrics, indent=2))
    if args.output:
        from .atomic import write_json_atomic

        write_json_atomic(args.output, metrics)
    return 0


def _add_pretrain(sub) -> None:
    from .data import AUGMENTATIONS, DATASETS  # noqa: F401
    from .training.pretrain import PretrainJob

    job = PretrainJob()
    p = sub.add_parser(
        "pretrain",
        help="pre-train a point transformer with masked point modeling (Point-MAE)",
        description=(
            "Masked point modeling: mask a ratio of the patches, reconstruct their points with a light decoder, "
            "Chamfer-L2 loss. Writes <output-dir>/encoder (config.json + model.safetensors), usable as --backbone "
            "of finetune, plus per-epoch checkpoints and pretrain_metrics.json."
        ),
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=job.dataset,
        help="dataset whose train split is used (default %(default)s)",
    )
    p.add_argument("--data-path", help="folder of the real dataset files")
    p.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        help="dataset option, e.g. train_per_class=400 seed=1 (repeatable)",
    )
    p.add_argument(
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="PointTransformerConfig field, e.g. hidden_size=192 (repeatable)",
    )
    p.add_argument("--output-dir", default=job.output_dir, help="output folder (default %(default)s)")
    p.add_argument("--name", help="the encoder's name in its model card (default: the output folder's name)")
    _add_training_flags(p, job)
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from .training.pretrain import PretrainJob, run_pretrain

    job = PretrainJob(
        dataset=args.dataset,
        data_path=args.data_path,
        dataset_options=_key_values(args.dataset_option, "--dataset-option"),
        model_config=_key_values(args.model_option, "--model-option"),
        output_dir=args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        min_learning_rate=args.min_lr,
        num_points=args.num_points,
        augmentation=args.augmentation,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        resume=args.resume,
        overwrite_output_dir=args.overwrite_output_dir,
        cpu=args.cpu,
        progress=not args.no_progress,
        command=_command_line(args),
        name=args.name,
    )
    run_pretrain(job)
    return 0


def _add_push(sub) -> None:
    p = sub.add_parser(
        "push",
        help="upload a saved adapter or model folder to the Hugging Face Hub",
        description=(
            "Create the repository if needed and upload the folder (adapter_config.json + adapter_model.safetensors "
            "+ README.md model card) through huggingface_hub, as PeftModel.push_to_hub does. Needs a token "
            "(HF_TOKEN or `hf auth login`)."
        ),
    )
    p.add_argument("path", help="adapter or model folder written by finetune")
    p.add_argument("repo_id", help="target repository, e.g. user/pointgst-scanobjectnn")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hub token (default: the stored login or HF_TOKEN)")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    url = push_folder(args.path, args.repo_id, private=args.private, token=args.token, commit_message=args.message)
    print(f"pushed {args.path} to {args.repo_id}: {url}")
    return 0


def _add_benchmark(sub) -> None:
    from .data import DATASETS
    from .training.benchmark import BENCHMARK_METHODS, BenchmarkOptions

    o = BenchmarkOptions()
    p = sub.add_parser(
        "benchmark",
        help="run every method on the same data, split, seed and budget; write BENCHMARK.md, JSON and a plot",
        description=(
            "Train each method (full fine-tuning, linear probe, LoRA, PointGST, Point-PEFT, Any2Point from MiniLM, "
            "the backbone from scratch, ...) on the same dataset, split, seed and epoch budget, then measure train-step "
            "time, peak memory and inference time of each on the same batch in fresh processes. Writes BENCHMARK.md, "
            "benchmark.json and accuracy_vs_parameters.png (accuracy against trainable parameters, log scale) into "
            "--output-dir. Protocol: final-epoch, single-view test accuracy, plus the best epoch on a validation "
            "split carved from the training data. Defaults fit about 15 minutes on 2 CPU cores with the embedded backbone."
        ),
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=o.methods,
        choices=sorted(BENCHMARK_METHODS),
        help="methods to run (full fine-tuning is always included: it is the reference of the ratios)",
    )
    p.add_argument(
        "--backbone", default=o.backbone, help="point backbone: 'embedded', a folder or a Hub id (default %(default)s)"
    )
    p.add_argument("--dataset", choices=DATASETS, default=o.dataset, help="dataset (default %(default)s)")
    p.add_argument("--data-path", help="folder of the real dataset files")
    p.add_argument(
        "--dataset-option",
        action="append",
        metavar="KEY=VALUE",
        help="dataset option (repeatable); with none, the synthetic shapes use train_per_class=40",
    )
    p.add_argument("--output-dir", default=o.output_dir, help="output folder (default %(default)s)")
    p.add_argument("--epochs", type=int, default=o.epochs, help="epochs per method (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=o.batch_size, help="global batch size (default %(default)s)")
    p.add_argument("--num-points", type=int, default=o.num_points, help="points per cloud (default %(default)s)")
    p.add_argument("--seed", type=int, default=o.seed, help="seed (default %(default)s)")
    p.add_argument(
        "--mixed-precision", choices=("no", "bf16", "fp16"), default=o.mixed_precision, help="autocast precision"
    )
    p.add_argument(
        "--cost-batch", type=int, default=o.cost_batch, help="batch of the cost measurement (default %(default)s)"
    )
    p.add_argument("--cost-steps", type=int, default=o.cost_steps, help="timed steps per method (default %(default)s)")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is present")
    p.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the methods already finished in --output-dir (and their cost figures), continue an interrupted one "
        "from its last checkpoint, run the rest",
    )
    p.set_defaults(func=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from .training.benchmark import BenchmarkOptions, run_benchmark

    run_benchmark(
        BenchmarkOptions(
            output_dir=args.output_dir,
            methods=args.methods,
            dataset=args.dataset,
            data_path=args.data_path,
            dataset_options=_key_values(args.dataset_option, "--dataset-option"),
            backbone=args.backbone,
            epochs=args.epochs,
            batch_size=args.batch_size,
            num_points=args.num_points,
            seed=args.seed,
            mixed_precision=args.mixed_precision,
            cost_batch=args.cost_batch,
            cost_steps=args.cost_steps,
            cpu=args.cpu,
            progress=args.progress,
            resume=args.resume,
            command=_command_line(args),
        )
    )
    return 0


def _add_recipes(sub) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the official fine-tuning configurations usable as `finetune --recipe NAME`",
        description="The official PointGST / Point-PEFT / Any2Point fine-tuning runs as named recipes; --show NAME "
        "prints one in full (settings, the configuration it restates, what this project cannot reproduce).",
    )
    p.add_argument("--show", metavar="NAME", help="print one recipe in full (JSON)")
    p.set_defaults(func=_run_recipes)


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


_REGISTRARS: list[Callable] = [
    _add_finetune,
    _add_evaluate,
    _add_pretrain,
    _add_convert,
    _add_push,
    _add_benchmark,
    _add_recipes,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="point-peft",
        description="Parameter-efficient fine-tuning of point-cloud transformers with Hugging Face PEFT.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def _quiet_library_progress() -> None:
    """Our own tqdm shows training progress; the per-call bars of datasets / transformers are noise here."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _command_line(args: argparse.Namespace) -> str:
    """The command as the user typed it, recorded in model cards."""
    return "point-peft " + " ".join(shlex.quote(a) for a in args.argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    _quiet_library_progress()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
