"""Evaluation: accuracy under the "final-epoch, single-view" protocol, optionally with test-time voting."""

from __future__ import annotations

import torch
from accelerate import Accelerator

__all__ = ["PROTOCOL", "evaluate_accuracy"]

PROTOCOL = "final-epoch, single-view"


@torch.no_grad()
def evaluate_accuracy(
    model: torch.nn.Module,
    loader,
    accelerator: Accelerator,
    *,
    vote: int = 0,
    collator=None,
) -> dict[str, float]:
    """Accuracy, mean class accuracy and loss over `loader`, gathered across processes with `gather_for_metrics`.

    `vote > 0` averages the logits of `vote` random views (FPS to point_all, random subsample, ScaleAndTranslate) per
    cloud, as the official "vote" evaluation does once (never the maximum over repeats); `collator` must then be the
    loader's collator with `keep_raw=True`.
    """
    was_training = model.training
    model.eval()
    predictions, labels, losses = [], [], []
    for batch in loader:
        with accelerator.autocast():
            if vote:
                views = collator.vote_views(batch["raw_points"].cpu(), batch["indices"].tolist(), vote)
                logits = torch.stack([model(points=v.to(batch["points"].device)).logits.float() for v in views]).mean(0)
            else:
                logits = model(points=batch["points"]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
        pred, target, loss = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"], loss))
        predictions.append(pred.cpu())
        labels.append(target.cpu())
        losses.append(loss.cpu())
    if was_training:
        model.train()
    pred, target = torch.cat(predictions), torch.cat(labels)
    correct = (pred == target).float()
    per_class = [correct[target == c].mean().item() for c in target.unique()]
    return {
        "accuracy": correct.mean().item(),
        "mean_class_accuracy": sum(per_class) / len(per_class),
        "loss": torch.cat(losses).mean().item(),
        "samples": int(target.numel()),
    }
