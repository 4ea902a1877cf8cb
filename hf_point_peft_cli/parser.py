"""The `point-peft` argument parser. It imports nothing but the standard library, so that `--help` and mistakes in
the command line are answered at once; the jobs behind the commands live in `hf_point_peft.cli`.

The defaults shown here are the library's (`FinetuneJob`, `TrainingArguments`, `PretrainJob`, `BenchmarkOptions`);
`tests/test_cli.py` checks that the two agree.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["CommandError", "build_parser"]


class CommandError(Exception):
    """A one-line failure of the command line with its exit status: 2 when the command or its inputs are wrong,
    1 when something outside them failed (network, Hub, credentials, disk)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the usage block before a mistake; here the mistake is one line that says where help is."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message} (see `{self.prog} --help`)")


# --- choices and defaults (the library's; checked by tests/test_cli.py) ---------------------------------------------
METHODS = ("any2point", "full", "linear", "lora", "point-prompt", "pointgst")
DATASETS = (
    "synthetic",
    "synthetic-hard",
    "modelnet40",
    "modelnet40-h5",
    "scanobjectnn-obj_bg",
    "scanobjectnn-obj_only",
    "scanobjectnn-pb_t50_rs",
    "disk",
)
AUGMENTATIONS = ("scale_translate", "rotate", "scale", "none")
PRECISIONS = ("no", "bf16", "fp16")
# other spellings of the methods' names (the code's module names, the papers' names) -> the command line's
METHOD_ALIASES = {
    "point_gst": "pointgst",
    "point-gst": "pointgst",
    "point_prompt": "point-prompt",
    "pointprompt": "point-prompt",
    "point-peft": "point-prompt",
    "point_peft": "point-prompt",
    "pointpeft": "point-prompt",
}


def method_name(text: str) -> str:
    """A method as typed, in the command line's spelling (`PointGST`, `point_gst` -> `pointgst`; `Point-PEFT`,
    `point_prompt` -> `point-prompt`); anything else is left for the choices check."""
    key = text.strip().lower()
    return METHOD_ALIASES.get(key, key)


BENCHMARK_METHODS = ("any2point", "any2point-random", "full", "linear", "lora", "point-prompt", "pointgst", "scratch")
CONVERT_SOURCES = ("point-mae", "point-bert", "act", "recon", "pointgpt")
CONVERT_METHODS = ("pointgst", "point-prompt", "any2point")  # fine-tuned PEFT checkpoints -> adapter + base
TRACKERS = ("tensorboard", "wandb", "trackio", "comet_ml", "mlflow", "aim", "clearml", "dvclive", "swanlab")
LOG_LEVELS = ("debug", "info", "warning", "error")

FINETUNE = {
    "method": "pointgst",
    "backbone": "embedded",
    "dataset": "synthetic",
    "output_dir": "outputs/run",
    "epochs": 10,
    "batch_size": 32,
    "eval_batch_size": 64,
    "learning_rate": 5e-4,
    "weight_decay": 0.05,
    "warmup_epochs": 1.0,
    "min_learning_rate": 1e-6,
    "max_grad_norm": 10.0,
    "gradient_accumulation_steps": 1,
    "mixed_precision": "no",
    "seed": 0,
    "num_points": 1024,
    "augmentation": "scale_translate",
    "validation_fraction": 0.1,
    "validation_group_by": None,
    "vote": 0,
    "num_workers": 0,
}
PRETRAIN = {
    "dataset": "synthetic",
    "output_dir": "outputs/pretrain",
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 3.0,
    "min_learning_rate": 1e-6,
    "mixed_precision": "no",
    "seed": 0,
    "num_points": 1024,
    "augmentation": "scale_translate",
    "license": "apache-2.0",
}
BENCHMARK = {
    "output_dir": "benchmark",
    "methods": ["full", "linear", "lora", "pointgst", "point-prompt", "any2point", "scratch"],
    "dataset": "synthetic",
    "backbone": "embedded",
    "epochs": 6,
    "batch_size": 32,
    "num_points": 512,
    "seed": 0,
    "mixed_precision": "no",
    "cost_batch": 32,
    "cost_steps": 2,
    "cost_rounds": 3,
}


# --- value types: a bad number is refused while parsing, naming the flag ----------------------------------------------
def _number(kind, low: float, inclusive: bool = True):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            kind_name = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind_name}, got {text!r}") from None
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE = _number(int, 1)
NON_NEGATIVE = _number(int, 0)
POSITIVE_FLOAT = _number(float, 0.0, inclusive=False)
NON_NEGATIVE_FLOAT = _number(float, 0.0)


def key_value(text: str) -> tuple[str, object]:
    """`key=value`; the value is read as JSON when it parses (numbers, booleans, lists), else kept as a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.replace("-", "_"), parsed


key_value.__name__ = "key=value"


def _fraction(text: str) -> float:
    value = POSITIVE_FLOAT(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


# --- shared flag groups ------------------------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    """Output verbosity, on every sub-command."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="messages shown: info (default) prints one line per step of the job; debug adds the libraries' own "
        "messages and warnings",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    return p


def _progress_flag(p, default_text: str) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"tqdm progress bars ({default_text})",
    )


def _valued_flags(g, d: dict, rows) -> None:
    """Flags that take a value, one row each: (flag, its type or a tuple of its choices, the key of its default in
    `d`, help)."""
    for flag, kind, key, text in rows:
        value = {"choices": kind} if isinstance(kind, tuple) else {"type": kind}
        g.add_argument(flag, **value, default=d[key], help=text)


def _training_flags(p: argparse.ArgumentParser, d: dict) -> None:
    g = p.add_argument_group("training")
    _schedule_flags(g, d)
    _run_flags(g, d)


def _schedule_flags(g, d: dict) -> None:
    """Epochs, batch and the AdamW / cosine schedule."""
    rows = (
        ("--epochs", POSITIVE, "epochs", "training epochs (default %(default)s)"),
        ("--batch-size", POSITIVE, "batch_size", "global batch size, split across processes (default %(default)s)"),
        ("--lr", POSITIVE_FLOAT, "learning_rate", "peak learning rate of AdamW (default %(default)s)"),
        ("--weight-decay", NON_NEGATIVE_FLOAT, "weight_decay", "AdamW weight decay, not on biases / 1-D / tokens "
         "(default %(default)s)"),
        ("--warmup-epochs", NON_NEGATIVE_FLOAT, "warmup_epochs", "linear warm-up before the cosine decay "
         "(default %(default)s)"),
        ("--min-lr", NON_NEGATIVE_FLOAT, "min_learning_rate", "final learning rate of the cosine "
         "(default %(default)s)"),
    )  # fmt: skip
    _valued_flags(g, d, rows)


def _run_flags(g, d: dict) -> None:
    """Input size, precision, seed, resuming, device, trackers and progress."""
    rows = (
        ("--num-points", POSITIVE, "num_points", "points per cloud fed to the model (default %(default)s)"),
        ("--augmentation", AUGMENTATIONS, "augmentation", "training augmentation (default %(default)s)"),
        ("--mixed-precision", PRECISIONS, "mixed_precision", "autocast precision (default no)"),
        ("--seed", NON_NEGATIVE, "seed", "seed of data order, augmentation and init (default %(default)s)"),
    )
    _valued_flags(g, d, rows)
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in the output folder; refused when a setting that changes the result "
        "differs from the checkpoint's (--epochs may grow)",
    )
    g.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="without --resume: delete an earlier run's checkpoints in the output folder (refused otherwise)",
    )
    g.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    g.add_argument(
        "--report-to",
        nargs="+",
        choices=TRACKERS,
        default=[],
        metavar="TRACKER",
        help=f"also send the metrics of every epoch to these experiment trackers through Accelerate "
        f"({', '.join(TRACKERS)}; default none); tensorboard writes under <output-dir>/point-peft",
    )
    _progress_flag(g, "default: on when the terminal shows them")


def _option_flag(p, flag: str, help: str) -> None:
    """A repeatable KEY=VALUE flag (`--method-option`, `--dataset-option`, `--model-option`)."""
    p.add_argument(flag, action="append", type=key_value, metavar="KEY=VALUE", help=help)


def _data_flags(p: argparse.ArgumentParser, dataset_default: str | None, dataset_help: str) -> None:
    p.add_argument("--dataset", choices=DATASETS, default=dataset_default, help=dataset_help)
    p.add_argument(
        "--data-path",
        help="folder of the real dataset's files (README, section Data, lists the files each dataset needs) or of "
        "a save_to_disk DatasetDict",
    )


# --- sub-commands ------------------------------------------------------------------------------------------------------
def _add_finetune(p: argparse.ArgumentParser) -> None:
    d = FINETUNE
    _finetune_model_flags(p, d)
    _data_flags(p, d["dataset"], "dataset (default %(default)s)")
    p.add_argument("--output-dir", default=d["output_dir"], help="where everything is written (default %(default)s)")
    _option_flag(p, "--method-option", "method config field, e.g. rank=16 (repeatable)")
    _option_flag(p, "--dataset-option", "dataset reader option, e.g. train_per_class=40 (repeatable)")
    _option_flag(p, "--model-option", "backbone config override, e.g. drop_path_rate=0.1 (repeatable)")
    _validation_flags(p, d)
    _finetune_loop_flags(p, d)
    _training_flags(p, d)


def _finetune_model_flags(p, d: dict) -> None:
    """What is fine-tuned and how: recipe, method, backbone."""
    p.add_argument(
        "--recipe",
        metavar="NAME",
        help="an official fine-tuning configuration (`point-peft recipes` lists them); flags given here override it",
    )
    p.add_argument(
        "--method",
        type=method_name,
        choices=METHODS,
        default=d["method"],
        help="fine-tuning method (default %(default)s; point_gst / PointGST and point_prompt / Point-PEFT also work)",
    )
    p.add_argument(
        "--backbone",
        default=d["backbone"],
        help="'embedded' (the packaged pre-trained backbone), 'scratch' (its architecture, random weights), "
        "'minilm' (Any2Point's offline source), a model folder or a Hub id (default %(default)s)",
    )


def _validation_flags(p, d: dict) -> None:
    """The validation split and test-time voting."""
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=d["validation_fraction"],
        help="share of the training split held out for validation (default %(default)s)",
    )
    p.add_argument(
        "--validation-group-by",
        metavar="COLUMN",
        default=d["validation_group_by"],
        help="column whose equal values are one object: the validation split keeps each object on one side "
        "(default: a 'group' column if the data have one; README, section Data)",
    )
    p.add_argument("--vote", type=NON_NEGATIVE, default=d["vote"], help="test-time voting views (default 0: one view)")


def _finetune_loop_flags(p, d: dict) -> None:
    """Accumulation, clipping, evaluation batch, workers, quick-run cap and the memory bank's storage."""
    rows = (
        ("--grad-accum", POSITIVE, "gradient_accumulation_steps", "gradient accumulation steps (default %(default)s)"),
        ("--max-grad-norm", NON_NEGATIVE_FLOAT, "max_grad_norm", "gradient clipping norm, 0 = off "
         "(default %(default)s)"),
        ("--eval-batch-size", POSITIVE, "eval_batch_size", "evaluation batch size (default %(default)s)"),
        ("--workers", NON_NEGATIVE, "num_workers", "data-loader worker processes (default 0)"),
    )  # fmt: skip
    _valued_flags(p, d, rows)
    p.add_argument("--max-steps-per-epoch", type=POSITIVE, help="cap the optimizer steps per epoch (quick runs)")
    p.add_argument(
        "--bank-max-size", type=POSITIVE, help="point-prompt: keep a seeded random subset of this many bank rows"
    )
    p.add_argument(
        "--bank-dtype", choices=("float32", "float16"), help="point-prompt: storage dtype of the memory bank"
    )


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="adapter folder (adapter_config.json) or model folder (config.json), or a Hub id")
    p.add_argument("--backbone", help="base model for an adapter (default: the one recorded in the adapter)")
    _data_flags(p, None, "dataset (default: the one recorded by finetune)")
    _option_flag(p, "--dataset-option", "dataset reader option (repeatable)")
    p.add_argument("--split", default="test", help="split to evaluate (default %(default)s)")
    p.add_argument("--num-points", type=POSITIVE, help="points per cloud (default: the training value)")
    p.add_argument(
        "--batch-size",
        type=POSITIVE,
        help="evaluation batch size (default: the training run's evaluation batch, else 64)",
    )
    p.add_argument(
        "--vote", type=NON_NEGATIVE, help="test-time voting views (default: the training run's, else 0: one view)"
    )
    p.add_argument("--mixed-precision", choices=PRECISIONS, default="no", help="autocast precision (default no)")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU even when a GPU is present")
    p.add_argument("--output", help="also write the metrics to this JSON file")


def _add_pretrain(p: argparse.ArgumentParser) -> None:
    d = PRETRAIN
    _data_flags(p, d["dataset"], "dataset whose train split is used (default %(default)s)")
    _option_flag(p, "--dataset-option", "dataset option, e.g. train_per_class=400 seed=1 (repeatable)")
    _option_flag(p, "--model-option", "PointTransformerConfig field, e.g. hidden_size=192 (repeatable)")
    p.add_argument("--output-dir", default=d["output_dir"], help="output folder (default %(default)s)")
    p.add_argument("--name", help="the encoder's name in its model card (default: the output folder's name)")
    p.add_argument(
        "--data-sources",
        metavar="FILE",
        help="a markdown file on where the pre-training data come from (sources, licences, counts), copied into the "
        "encoder's model card (e.g. the README.md that benchmarks/real_shapes/build_corpus.py writes)",
    )
    p.add_argument(
        "--license",
        default=d["license"],
        metavar="ID",
        help="licence of the weights in the encoder's model card, a Hub licence id; set the data's when they impose "
        "one, e.g. cc-by-sa-3.0 (default %(default)s)",
    )
    _training_flags(p, d)


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="path to the official .pth checkpoint")
    p.add_argument(
        "--from",
        dest="source",
        type=method_name,
        required=True,
        choices=CONVERT_SOURCES + CONVERT_METHODS,
        help="which official code made it",
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    m = p.add_argument_group("fine-tuned PEFT checkpoints (--from pointgst / point-prompt / any2point)")
    m.add_argument("--pretrained", help="the pre-trained checkpoint it was fine-tuned from (required for point-prompt)")
    m.add_argument("--memory-bank", help="point-prompt: the official memory bank file ([C, N], train_f_*.pt)")
    m.add_argument("--source-model", help="any2point: the source model folder / Hub id the run started from")
    _option_flag(m, "--method-option", "adapter config field, e.g. local_size=32 (repeatable)")
    _convert_model_flags(p)


def _convert_model_flags(p) -> None:
    """The model a backbone checkpoint becomes, and the sizes no tensor holds."""
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
    p.add_argument("--num-labels", type=POSITIVE, help="classes of a new head (read from a fine-tuned head)")
    p.add_argument(
        "--num-groups", type=POSITIVE, help="patch tokens G (64 for 1024 points, 128 for 2048); no tensor holds it"
    )
    p.add_argument(
        "--group-size", type=POSITIVE, help="points per patch (read from a pre-training decoder, else required)"
    )
    p.add_argument("--num-points", type=POSITIVE, help="points per cloud the model is built for (no tensor holds it)")
    p.add_argument("--num-heads", type=POSITIVE, help="attention heads (read for the released widths 384/768/1024)")
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


def _add_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="adapter or model folder written by finetune")
    p.add_argument("repo_id", help="target repository, e.g. user/pointgst-scanobjectnn")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    p.add_argument("--message", help="commit message")


def _add_benchmark(p: argparse.ArgumentParser) -> None:
    d = BENCHMARK
    p.add_argument(
        "--methods",
        nargs="+",
        default=d["methods"],
        type=method_name,
        choices=BENCHMARK_METHODS,
        help="methods to run (full fine-tuning is always included: it is the reference of the ratios)",
    )
    p.add_argument(
        "--backbone",
        default=d["backbone"],
        help="point backbone: 'embedded', a folder or a Hub id (default %(default)s)",
    )
    _data_flags(p, d["dataset"], "dataset (default %(default)s)")
    _option_flag(
        p, "--dataset-option", "dataset option (repeatable); with none, the synthetic shapes use train_per_class=40"
    )
    p.add_argument("--output-dir", default=d["output_dir"], help="output folder (default %(default)s)")
    rows = (
        ("--epochs", POSITIVE, "epochs", "epochs per method (default %(default)s)"),
        ("--batch-size", POSITIVE, "batch_size", "global batch size (default %(default)s)"),
        ("--num-points", POSITIVE, "num_points", "points per cloud (default %(default)s)"),
        ("--seed", NON_NEGATIVE, "seed", "seed (default %(default)s)"),
        ("--mixed-precision", PRECISIONS, "mixed_precision", "autocast precision"),
        # the cost measurement after training: batch, timed steps, round-robin rounds
        ("--cost-batch", POSITIVE, "cost_batch", "batch of the cost measurement (default %(default)s)"),
        ("--cost-steps", POSITIVE, "cost_steps", "timed steps per method (default %(default)s)"),
        ("--cost-rounds", POSITIVE, "cost_rounds", "timing rounds at the end, every method once per round, "
         "round-robin (default %(default)s)"),
    )  # fmt: skip
    _valued_flags(p, d, rows)
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is present")
    _progress_flag(p, "default: off, one line per method")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the methods already finished in --output-dir (and their cost figures), continue an interrupted one "
        "from its last checkpoint, run the rest",
    )
    p.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="without --resume: run again from the start in a folder holding an earlier benchmark (refused otherwise)",
    )


def _add_recipes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", metavar="NAME", help="print one recipe in full (JSON)")


# name -> (the function that adds its flags, the one-line help in `point-peft --help`, the description)
SUBCOMMANDS = {
    "finetune": (
        _add_finetune,
        "fine-tune a point backbone with a PEFT method (no arguments: the embedded offline default)",
        "Fine-tune a point-cloud classifier and write <output-dir>/adapter (PEFT methods) or <output-dir>/model, "
        "with a model card, metrics.json, learning_curves.png and per-epoch checkpoints. With no arguments it runs "
        "PointGST on the embedded pre-trained backbone and the synthetic shapes, offline, on a CPU. "
        "Reported protocol: final-epoch test accuracy, single view; the best epoch on a validation split carved "
        "from the training data is reported beside it. Runs under `accelerate launch` / `torchrun` unchanged. "
        "Every setting is checked before the data are read.",
    ),
    "evaluate": (
        _add_evaluate,
        "evaluate a saved adapter or model (a folder or a Hub id) on a dataset's test split",
        "Load an adapter folder written by `finetune` (onto the base model it records, or --backbone) or a full "
        "model folder, local or on the Hub, and report test accuracy with deterministic preprocessing (FPS to "
        "--num-points, no augmentation; --vote N averages N random views). Reproduces the accuracy printed by "
        "`finetune`.",
    ),
    "pretrain": (
        _add_pretrain,
        "pre-train a point transformer with masked point modeling (Point-MAE)",
        "Masked point modeling: mask a ratio of the patches, reconstruct their points with a light decoder, "
        "Chamfer-L2 loss. Writes <output-dir>/encoder (config.json + model.safetensors), usable as --backbone "
        "of finetune, plus per-epoch checkpoints and pretrain_metrics.json.",
    ),
    "convert": (
        _add_convert,
        "convert an official checkpoint to a Hugging Face model folder or a PEFT adapter folder",
        "Read an official checkpoint with torch.load(weights_only=True), map every key explicitly and write "
        "conversion_report.txt beside the weights. Backbones (Point-MAE / Point-BERT / ACT / ReCon / PointGPT, "
        "pre-trained or fine-tuned): config.json + model.safetensors in --out. Fine-tuned PointGST / Point-PEFT / "
        "Any2Point checkpoints: --out/adapter (the PEFT adapter with a model card) and --out/base (the base model "
        "it belongs to). Sizes no tensor holds come from --official-config or the flags, never from a guess; a "
        "shape that does not fit is refused.",
    ),
    "push": (
        _add_push,
        "upload a saved adapter or model folder to the Hugging Face Hub",
        "Create the repository if needed and upload the folder (adapter_config.json + adapter_model.safetensors "
        "+ README.md model card) through huggingface_hub, as PeftModel.push_to_hub does. Needs a token with "
        "write access: HF_TOKEN, `hf auth login` (huggingface-cli login in older huggingface_hub) or --token.",
    ),
    "benchmark": (
        _add_benchmark,
        "run every method on the same data, split, seed and budget; write BENCHMARK.md, JSON and a plot",
        "Train each method (full fine-tuning, linear probe, LoRA, PointGST, Point-PEFT, Any2Point from MiniLM, "
        "the backbone from scratch, ...) on the same dataset, split, seed and epoch budget, then measure train-step "
        "time, peak memory and inference time of each on the same batch in fresh processes. Writes BENCHMARK.md, "
        "benchmark.json and accuracy_vs_parameters.png (accuracy against trainable parameters, log scale) into "
        "--output-dir. Protocol: final-epoch, single-view test accuracy, plus the best epoch on a validation "
        "split carved from the training data. Defaults fit about 15 minutes on 2 CPU cores with the embedded backbone.",
    ),
    "recipes": (
        _add_recipes,
        "list the official fine-tuning configurations usable as `finetune --recipe NAME`",
        "The official PointGST / Point-PEFT / Any2Point fine-tuning runs as named recipes; --show NAME "
        "prints one in full (settings, the configuration it restates, what this project cannot reproduce).",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="point-peft",
        description="Parameter-efficient fine-tuning of point-cloud transformers with Hugging Face PEFT. "
        "Exit status: 0 done, 2 the command or its inputs are wrong, 1 something outside them failed "
        "(network, Hub, credentials, disk).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    for name, (add_flags, help_line, description) in SUBCOMMANDS.items():
        add_flags(sub.add_parser(name, parents=[common], help=help_line, description=description))
    return parser
