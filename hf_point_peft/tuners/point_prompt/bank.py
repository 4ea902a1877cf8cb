"""`build_memory_bank`: one frozen pre-trained feature per training sample, stored with the adapter."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft import PeftModel

from ...data.transforms import fps_subsample
from .model import PointPromptModel

__all__ = ["build_memory_bank"]


def _batches(data, batch_size: int, num_points: int) -> Iterable[torch.Tensor]:
    from datasets import Dataset
    from torch.utils.data import DataLoader

    from ...data import PointCloudCollator

    if isinstance(data, Dataset):
        if "points" not in data.column_names:
            raise ValueError(f"the dataset has no 'points' column (columns: {data.column_names})")
        loader = DataLoader(
            data.with_format("numpy"),
            batch_size=batch_size,
            collate_fn=PointCloudCollator(num_points=num_points, train=False),
        )
        for batch in loader:
            yield batch["points"]
        return
    for batch in data:
        points = batch["points"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(points, torch.Tensor) or points.dim() != 3:
            raise ValueError(f"expected batches of points [B, N, 3], got {type(points).__name__}")
        yield fps_subsample(points, num_points) if points.shape[1] > num_points else points


@torch.no_grad()
def build_memory_bank(
    model: PeftModel,
    data,
    *,
    adapter_name: str | None = None,
    batch_size: int = 64,
    max_size: int | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
    num_points: int | None = None,
) -> int:
    """Compute phi(x) for every sample of the training split `data` (a `datasets.Dataset`, a DataLoader or an
    iterable of point batches; evaluation preprocessing, labels unused) with the frozen base model, and store the
    rows in the adapter's persistent bank buffer, in dataset order (or a seeded random subset of `max_size` rows).
    Sets `config.bank_size` and returns the number of rows."""
    tuner = model.base_model if isinstance(model, PeftModel) else model
    if not isinstance(tuner, PointPromptModel):
        raise TypeError(f"build_memory_bank needs a Point-PEFT model, got {type(tuner).__name__}")
    adapter_name = adapter_name or (model.active_adapter if isinstance(model, PeftModel) else tuner.active_adapters[0])
    if adapter_name not in tuner.peft_config:
        raise ValueError(f"no adapter named {adapter_name!r} (adapters: {sorted(tuner.peft_config)})")
    config = tuner.peft_config[adapter_name]
    if not config.use_memory_bank:
        raise ValueError(f"adapter {adapter_name!r} has use_memory_bank=False: it needs no bank")
    base_config = tuner.model.config
    num_points = num_points or base_config.num_points
    device = next(tuner.model.parameters()).device
    rows = [tuner.query_features(points.to(device)).cpu() for points in _batches(data, batch_size, num_points)]
    if not rows:
        raise ValueError("the data yielded no samples for the memory bank")
    bank = torch.cat(rows)
    if max_size is not None:
        if max_size <= 0:
            raise ValueError(f"max_size must be positive, got {max_size}")
        if max_size < len(bank):
            keep = torch.randperm(len(bank), generator=torch.Generator().manual_seed(seed))[:max_size]
            bank = bank[keep]
    if config.bank_topk > len(bank):
        raise ValueError(f"bank_topk ({config.bank_topk}) exceeds the {len(bank)} rows of the bank")
    name = dtype if isinstance(dtype, str) else {torch.float16: "float16", torch.float32: "float32", None: None}[dtype]
    config.bank_dtype = name or config.bank_dtype
    bank = bank.to(torch.float16 if config.bank_dtype == "float16" else torch.float32)
    tuner.point_prompt_bank[adapter_name] = bank.to(device)
    config.bank_size = len(bank)
    config.bank_source = getattr(base_config, "name_or_path", None) or None
    return len(bank)
