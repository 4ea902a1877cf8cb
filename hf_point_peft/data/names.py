"""The dataset readers' names (`load_point_dataset(name, ...)`, `--dataset NAME`). One list for both: the command
line's parser holds it, because it answers `--help` without importing this package (as `CONVERT_METHODS`)."""

from __future__ import annotations

from hf_point_peft_cli.parser import DATASETS

__all__ = ["DATASETS"]
