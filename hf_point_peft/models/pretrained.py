"""The `PreTrainedModel` base of the package's model families (point transformer, PointGPT, ImageBind audio)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from .layers import init_common_weights
from .portable_names import resolve_name_argument

__all__ = ["FamilyPreTrainedModel"]


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

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if not init_common_weights(module, std):
            self._init_family_weights(module, std)

    def _init_family_weights(self, module: nn.Module, std: float) -> None:
        """The family's own parameters (mask, sos or cls tokens, position tables, ...)."""
