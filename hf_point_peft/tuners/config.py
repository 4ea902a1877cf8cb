"""Fields shared by the point-cloud PEFT configs: where the adapters go and which base they were made for."""

from __future__ import annotations

import textwrap
from dataclasses import MISSING, dataclass, field, fields

from peft import PeftConfig

from .artefact import AdapterArtefact

__all__ = ["PointPeftConfig", "document_fields"]


def document_fields(cls):
    """Class decorator (above `@dataclass`): append an `Args:` section, peft's docstring style, made from the
    fields' `help` metadata, so that `help(PointGSTConfig)` lists every setting and the text lives in one place.
    peft's own `PeftConfig` fields are left to peft's documentation."""
    own = {f.name for f in fields(PeftConfig)}
    lines = ["", "Args:"]
    for f in fields(cls):
        text = f.metadata.get("help")
        if f.name in own or not text:
            continue
        default = "" if f.default is MISSING else f", defaults to `{f.default!r}`"
        entry = f"{f.name} (`{f.type}`{default}): {text}"
        lines += textwrap.wrap(entry, 116, initial_indent="    ", subsequent_indent="        ")
    cls.__doc__ = (cls.__doc__ or cls.__name__).rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls


@dataclass
class PointPeftConfig(AdapterArtefact, PeftConfig):
    """Base of the point-cloud method configs. For `point_transformer` and `point_gpt` models every placement field
    is resolved from the model type at injection and written back, so `adapter_config.json` is explicit; for any
    other backbone name them yourself. `from_pretrained` also checks a local weights file saved next to the config,
    before peft injects anything, recorded base names are portable, and `save_pretrained` writes the project's model
    card (see `tuners/artefact.py`)."""

    target_modules: list[str] | str | None = field(
        default=None,
        metadata={"help": "Blocks to wrap (names or a full-match regex). None: every block of a known model family."},
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Only wrap blocks with these indices (the trailing index of the block name)."}
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Modules never to wrap (names or a full-match regex)."}
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full and saved with the adapter. None: the classification head and the "
            "cls-token module(s) of a known model family; [] trains no extra module."
        },
    )
    tokenizer_module: str | None = field(
        default=None,
        metadata={
            "help": "The tokenizer module (its BatchNorms get per-adapter statistics). A backbone of your own passes "
            "point_geometry=PointGeometry(points, centres) to each block, as the package's models do."
        },
    )
    block_norm: str | None = field(
        default=None,
        metadata={
            "help": "Name, inside a block, of the LayerNorm before the FFN (it gives the block width). PointGST: a "
            "block of your own accepts parallel_adapter and returns parallel_adapter(output, input of this norm)."
        },
    )
    num_prefix_tokens: int | None = field(
        default=None, metadata={"help": "Tokens before the patch tokens (1 for cls; 2 for PointGPT's sos + cls)."}
    )
    base_hidden_size: int | None = field(
        default=None, metadata={"help": "Width of the base the adapter was made for (set at injection)."}
    )
    base_model_type: str | None = field(
        default=None, metadata={"help": "model_type of the base the adapter was made for (set at injection)."}
    )
    base_num_labels: int | None = field(
        default=None, metadata={"help": "Classes of the base's head when the adapter was made (set at injection)."}
    )
    backbone_bn_stats: str = field(
        default="update",
        metadata={
            "help": "'update': per-adapter copies of the frozen backbone's BatchNorm running statistics, updated in "
            "training and saved with the adapter (official behaviour); 'frozen': always the base statistics."
        },
    )
    init_weights: bool = field(
        default=True, metadata={"help": "True: the official initialisation. False: random non-trivial init (tests)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task_type is not None:
            raise ValueError(
                f"task_type must be None for {type(self).__name__} (got {self.task_type!r}): point models take `points`, "
                "not input_ids; list the head in modules_to_save instead"
            )
        if self.backbone_bn_stats not in ("update", "frozen"):
            raise ValueError(f"backbone_bn_stats must be 'update' or 'frozen', got {self.backbone_bn_stats!r}")
        if self.num_prefix_tokens is not None and self.num_prefix_tokens < 0:
            raise ValueError(f"num_prefix_tokens must be >= 0, got {self.num_prefix_tokens}")
        if isinstance(self.target_modules, (list, tuple, set)):
            self.target_modules = list(self.target_modules)
        if isinstance(self.layers_to_transform, int):
            self.layers_to_transform = [self.layers_to_transform]
