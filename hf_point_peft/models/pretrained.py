"""The `PreTrainedModel` base of the package's model families (point transformer, PointGPT, ImageBind audio)."""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import PreTrainedModel

from .layers import init_common_weights
from .portable_names import resolve_name_argument

__all__ = ["BATCH_BOOKKEEPING_KEYS", "FamilyPreTrainedModel", "unexpected_forward_kwargs"]

# what `PointCloudCollator` puts in a batch beside points and labels (sample indices for the augmentation's seeds, the
# unprocessed clouds for test-time voting): a forward called as `model(**batch)`, as transformers' Trainer does, accepts
# and ignores them
BATCH_BOOKKEEPING_KEYS = ("indices", "raw_points")


def unexpected_forward_kwargs(kwargs: dict) -> list[str]:
    """The keywords a forward with `**kwargs` must refuse: all but the collator's bookkeeping keys and
    `output_attentions` left unset or False (the attention runs fused and returns no weights)."""
    return sorted(
        k for k, v in kwargs.items() if k not in BATCH_BOOKKEEPING_KEYS and not (k == "output_attentions" and not v)
    )


class FamilyPreTrainedModel(PreTrainedModel):
    """Points in (a family of another modality overrides `main_input_name` / `input_modalities`), gradient
    checkpointing and SDPA supported, and weights initialised the shared way (`init_common_weights`) first, then by
    the family's `_init_family_weights` for its own modules. Each family sets `config_class`, `base_model_prefix`
    and `_no_split_modules`."""

    main_input_name = "points"
    input_modalities = ("points",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # the loss is a mean over the batch, not a sum normalised by `num_items_in_batch`: transformers' Trainer reads a
    # forward with `**kwargs` as taking loss kwargs unless told, and then skips dividing by the accumulation steps
    accepts_loss_kwargs = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Also accepts the portable names adapters record (`hf_point_peft:embedded/...`, see `portable_names.py`)."""
        return super().from_pretrained(resolve_name_argument(pretrained_model_name_or_path), *model_args, **kwargs)

    def _check_forward_kwargs(self, kwargs: dict) -> None:
        """The forwards take `**kwargs` so that `model(**batch)` and transformers' common flags work
        (`unexpected_forward_kwargs`); any other keyword, or asking for attention weights, is refused naming it
        instead of being ignored."""
        unknown = unexpected_forward_kwargs(kwargs)
        if unknown:
            takes = [n for n in inspect.signature(type(self).forward).parameters if n not in ("self", "kwargs")]
            why = (
                " (attention weights are not returned: the attention runs fused)"
                if "output_attentions" in unknown
                else ""
            )
            raise TypeError(
                f"{type(self).__name__}.forward() got unexpected keyword argument(s) {', '.join(unknown)}{why}; it "
                f"takes {', '.join(takes)}"
            )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if not init_common_weights(module, std):
            self._init_family_weights(module, std)

    def _init_family_weights(self, module: nn.Module, std: float) -> None:
        """The family's own parameters (mask, sos or cls tokens, position tables, ...)."""
