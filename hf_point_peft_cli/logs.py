"""Logging of the command: this package's messages through Python logging, info on stdout and warnings / errors on
stderr, one line each. The libraries underneath (transformers, datasets, accelerate, huggingface_hub) are quieted to
errors unless `--log-level debug` (`hf_point_peft.cli` applies that once they are imported)."""

from __future__ import annotations

import logging
import sys
import warnings

__all__ = ["configure_logging"]

_TAG = "_point_peft_handler"


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _Prefixed(logging.Formatter):
    """`warning: ...` / `error: ...`, the way the command's own errors read."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


def _handler(stream, formatter: logging.Formatter, level: int = logging.NOTSET) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(level)
    setattr(handler, _TAG, True)
    return handler


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("hf_point_peft").warning("%s", " ".join(f"{category.__name__}: {message}".split()))


def configure_logging(level: str = "info", quiet: bool = False) -> None:
    """Route the `hf_point_peft` logger to stdout (below warning) and stderr; `quiet` keeps warnings and errors."""
    name = "warning" if quiet and level in ("debug", "info") else level
    logger = logging.getLogger("hf_point_peft")
    for old in [h for h in logger.handlers if getattr(h, _TAG, False)]:
        logger.removeHandler(old)
    out = _handler(sys.stdout, logging.Formatter("%(message)s"))
    out.addFilter(_Below(logging.WARNING))
    logger.addHandler(out)
    logger.addHandler(_handler(sys.stderr, _Prefixed("%(message)s"), logging.WARNING))
    logger.setLevel(getattr(logging, name.upper()))
    logger.propagate = False
    warnings.showwarning = _show_warning  # a library warning is one line, not a source excerpt
    if name != "debug":  # the libraries' deprecation notices are for their developers, not for this command's users
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
