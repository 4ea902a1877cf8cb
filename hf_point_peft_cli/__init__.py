"""The `point-peft` command.

This package answers `--help` and refuses a wrong command line without importing torch, transformers or peft (the
`hf_point_peft` package registers itself with them on import, which takes seconds): it parses the arguments, checks
what it can check from the file system and the Hub (`checks`), sets up logging, then hands the job to
`hf_point_peft.cli`, which checks the rest before reading any data. Every failure a user can act on ends as one line
on stderr (`errors`) and exit status 2 (the command or its inputs are wrong) or 1 (something outside them failed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from . import checks
from .errors import describe
from .logs import configure_logging
from .parser import CommandError, build_parser

__all__ = ["CommandError", "build_parser", "main"]

# library setting names whose flag is not `--` + the name with dashes
_FLAG_OF = {
    "learning_rate": "--lr",
    "min_learning_rate": "--min-lr",
    "gradient_accumulation_steps": "--grad-accum",
    "num_workers": "--workers",
    "method_options": "--method-option",
    "dataset_options": "--dataset-option",
    "model_options": "--model-option",
    "model_config": "--model-option",
    "bank_options": "--bank-max-size / --bank-dtype",
    "source": "--from",
}


def _flag_namer(parser: argparse.ArgumentParser, command: str) -> Callable[[str], str]:
    """Setting name -> the flag of `command` that sets it, as the user types it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    options = set(sub._option_string_actions)

    def flag(setting: str) -> str:
        candidate = _FLAG_OF.get(setting, "--" + setting.replace("_", "-"))
        return candidate if candidate.split(" ")[0] in options else setting

    return flag


def _subject(args: argparse.Namespace) -> str:
    """What a Hub failure is about, as the user wrote it."""
    if args.command == "push":
        return f"push to {args.repo_id}"
    if args.command == "evaluate":
        return f"evaluate {args.path}" if args.backbone is None else f"evaluate {args.path} --backbone {args.backbone}"
    if getattr(args, "backbone", None) is not None:
        return f"--backbone {args.backbone}"
    return args.command


def _check(args: argparse.Namespace) -> None:
    """The checks that need no library, before anything is imported or written."""
    command = args.command
    if command in ("finetune", "pretrain", "benchmark"):
        checks.check_output_dir(args.output_dir)
        if getattr(args, "resume", False) and getattr(args, "overwrite_output_dir", False):
            raise CommandError(
                "--resume continues the run in --output-dir, --overwrite-output-dir deletes it: pass one"
            )
    if command in ("finetune", "pretrain", "benchmark", "evaluate"):
        checks.check_data_path(args.dataset, args.data_path)
    if command in ("finetune", "benchmark"):
        checks.check_backbone(args.backbone)
    if command == "evaluate":
        checks.check_saved(args.path)
        checks.check_backbone(args.backbone)
        if args.output is not None:
            checks.check_output_file(args.output, "--output")
    if command == "push":
        checks.check_push(args.path, args.repo_id, args.token)
    if command == "convert":
        checks.check_input_file(args.checkpoint, "convert")
        checks.check_output_dir(args.out, "--out")


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CommandError as err:
        return _fail(err.code, str(err))
    args.argv = argv
    configure_logging(args.log_level, args.quiet)
    if hasattr(args, "progress"):  # on when a terminal shows the bars, unless asked either way or quiet
        default = args.command != "benchmark" and not args.quiet and sys.stderr.isatty()
        args.progress = default if args.progress is None else args.progress
    try:
        _check(args)
        from importlib import import_module

        run = getattr(import_module("hf_point_peft.cli"), "_run_" + args.command)
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except Exception as err:
        described = describe(err, _subject(args), _flag_namer(parser, args.command), upload=args.command == "push")
        if described is None:
            raise
        logging.getLogger("hf_point_peft").debug("the failure in full:", exc_info=True)
        return _fail(*described)
