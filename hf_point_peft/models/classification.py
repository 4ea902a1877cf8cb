"""What the point classifiers of both families share: their output and their forward (backbone -> pooled feature ->
the official head -> cross-entropy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .layers import classification_loss

__all__ = ["PointClassifierForward", "PointClassifierOutput"]


@dataclass
class PointClassifierOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    centres: torch.FloatTensor | None = None


class PointClassifierForward:
    """The forward of `PointTransformerForClassification` and `PointGPTForClassification` (first in their bases):
    the family's backbone (`base_model`), the feature the head reads (`pool`), the head `classifier`, cross-entropy
    with the config's label smoothing, plus the family's `auxiliary_loss` when there is one."""

    def pool(self, outputs) -> torch.Tensor:
        """concat(cls, max over patch tokens), as the backbone's pooler gives it."""
        return outputs.pooler_output

    def auxiliary_loss(self, outputs) -> torch.Tensor | None:
        return None

    def forward(
        self,
        points: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PointClassifierOutput | tuple:
        r"""
        points: [B, N, num_channels] float point clouds.
        labels: [B] class indices in [0, num_labels); when given, the output carries the cross-entropy loss (with
            PointGPT's generator, plus its weighted reconstruction loss in training).
        """
        self._check_forward_kwargs(kwargs)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(points, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.pool(outputs))
        loss = classification_loss(logits, labels, self.config.label_smoothing)
        if loss is not None:
            auxiliary = self.auxiliary_loss(outputs)
            if auxiliary is not None:
                loss = loss + auxiliary
        output = PointClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, centres=outputs.centres
        )
        return output if return_dict else output.to_tuple()
