"""Users of transformers' Trainer can train a PEFT point model: the collator feeds `points` / `labels`."""

from __future__ import annotations

import numpy as np
import torch
from peft import get_peft_model
from tiny import tiny_transformer
from transformers import Trainer, TrainingArguments

import hf_point_peft  # noqa: F401
from hf_point_peft import PointGSTConfig, PointTransformerForClassification
from hf_point_peft.data import PointCloudCollator, make_synthetic_shapes


def test_trainer_trains_and_evaluates_a_peft_point_model(tmp_path):
    torch.manual_seed(0)
    data = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=160, seed=0)
    model = get_peft_model(
        PointTransformerForClassification(tiny_transformer(num_labels=15)), PointGSTConfig(rank=4, local_size=8)
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=6,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )

    def accuracy(pred):
        return {"accuracy": float((pred.predictions == pred.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"].with_format("numpy"),
        eval_dataset=data["test"].with_format("numpy"),
        data_collator=PointCloudCollator(num_points=128, train=True),
        compute_metrics=accuracy,
        preprocess_logits_for_metrics=lambda outputs, labels: (
            outputs[0] if isinstance(outputs, tuple) else outputs
        ).argmax(-1),
    )
    trainer.train()
    trainer.data_collator = PointCloudCollator(num_points=128, train=False)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and np.isfinite(metrics["eval_loss"])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("point_gst_" in n or "modules_to_save" in n for n in changed)
    assert any(log.get("loss") is not None for log in trainer.state.log_history)
