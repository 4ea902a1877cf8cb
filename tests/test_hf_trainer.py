"""Users of transformers' Trainer can train a PEFT point model: the collator feeds `points` / `labels`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import get_peft_model
from tiny import no_dropout, tiny_transformer
from transformers import Trainer, TrainingArguments

import hf_point_peft  # noqa: F401
from hf_point_peft import Any2PointConfig, PointGSTConfig, PointTransformerForClassification
from hf_point_peft.data import PointCloudCollator, make_synthetic_shapes


def trainer_arguments(out, **schedule) -> TrainingArguments:
    """The Trainer on the CPU, feeding `points` / `labels` whole (the collator's batch), logging every step."""
    return TrainingArguments(
        output_dir=str(out),
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        seed=0,
        **schedule,
    )


def test_trainer_trains_and_evaluates_a_peft_point_model(tmp_path):
    torch.manual_seed(0)
    data = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=160, seed=0)
    model = get_peft_model(
        PointTransformerForClassification(tiny_transformer(num_labels=15)), PointGSTConfig(rank=4, local_size=8)
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = trainer_arguments(
        tmp_path, num_train_epochs=2, per_device_train_batch_size=6, per_device_eval_batch_size=8, learning_rate=3e-3
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


def _point_classifier():
    return no_dropout(PointTransformerForClassification(tiny_transformer(num_labels=15)))


def _any2point_on_bert():
    from transformers import BertConfig, BertModel

    size = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    source = BertModel(BertConfig(**size, vocab_size=100, max_position_embeddings=64), add_pooling_layer=False)
    config = Any2PointConfig(num_labels=15, knn_k=8, num_views=3, tokenizer_groups=(64, 32, 16), tokenizer_width=96)
    return no_dropout(get_peft_model(source, config))


@pytest.mark.parametrize("build", [_point_classifier, _any2point_on_bert], ids=["point_transformer", "any2point"])
def test_trainer_scales_the_loss_for_gradient_accumulation(tmp_path, build):
    """The point models' forward takes no loss kwargs (their loss is a mean over the batch): transformers' Trainer must
    divide it by the accumulation steps itself. A forward with `**kwargs` made it assume the model normalises by
    `num_items_in_batch`, so with 2 accumulation steps it summed 2 batch means: a loss (and gradient) twice too large."""
    torch.manual_seed(0)
    data = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=160, seed=0)["train"]
    data = data.select([0] * 8).with_format("numpy")  # one cloud 8 times: batch statistics the same in any batch
    model = build()
    collate = PointCloudCollator(num_points=128, train=False)
    logged = {}
    for steps, batch in ((1, 8), (2, 4)):
        args = trainer_arguments(
            tmp_path / str(steps),
            max_steps=1,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=steps,
            learning_rate=0.0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
        assert trainer.model_accepts_loss_kwargs is False
        trainer.train()
        logged[steps] = next(log["loss"] for log in trainer.state.log_history if "loss" in log)
    # one batch of 8 or two of 4 of the same cloud: the same loss
    assert logged[2] == pytest.approx(logged[1], rel=1e-4), logged
