"""Learning-curve and benchmark plots (matplotlib, headless)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import atomic_file  # noqa: E402

__all__ = ["plot_learning_curves"]


def plot_learning_curves(history: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Training loss and validation / test accuracy per epoch, written to `path` (PNG)."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    ax_loss.plot(epochs, [r["validation_loss"] for r in history], marker="o", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r["validation_accuracy"] for r in history], marker="o", label="validation")
    ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in history], marker="o", label="test (reported at final epoch)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_file(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
