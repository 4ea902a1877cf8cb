"""`PointPromptConfig`: Point-PEFT (arXiv 2310.03059), point-prior prompts + geometry-aware adapters.
See specs/point_prompt.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...registry import add_peft_type
from ..config import PointPeftConfig, document_fields

__all__ = ["PointPromptConfig"]


@document_fields
@dataclass
class PointPromptConfig(PointPeftConfig):
    """Configuration of Point-PEFT: in the first `prompt_layers` blocks, `num_prompt_tokens` prompt tokens enriched by
    parameter-free attention over a memory bank of pre-trained features (`build_memory_bank`); in every block an MLP
    adapter, a geometry-aware adapter (local attention in kNN neighbourhoods of the token centres and the learnable
    prompt coordinates) and an output adapter; optional bias deltas (BitFit). Never the identity at init."""

    num_prompt_tokens: int = field(default=10, metadata={"help": "Prompt tokens per prompted block (rows of Cm)."})
    prompt_layers: int = field(default=6, metadata={"help": "Blocks 0 .. n-1 receive prompts."})
    prompt_dropout: float = field(default=0.1, metadata={"help": "Dropout on the learned prompt embeddings."})
    learn_prompt_coords: bool = field(
        default=True, metadata={"help": "Learnable prompt coordinates; False leaves the prompts out of the GA graph."}
    )
    use_memory_bank: bool = field(default=True, metadata={"help": "False: prompts = Dropout(E), no query, no A^cp."})
    bank_topk: int = field(default=8, metadata={"help": "Retrieved bank features K; must be num_prompt_tokens - 2."})
    bank_size: int | None = field(default=None, metadata={"help": "Rows of the bank (set by build_memory_bank)."})
    bank_dtype: str = field(default="float32", metadata={"help": "Storage dtype of the bank: float32 or float16."})
    bank_source: str | None = field(
        default=None,
        metadata={"help": "name_or_path of the base the bank was computed with (set by build_memory_bank)."},
    )
    cp_adapter_rank: int = field(default=8, metadata={"help": "Rank of the prompt-enhancement adapter A^cp."})
    mlp_adapter_rank: int = field(default=16, metadata={"help": "Rank of the MLP adapter A^mlp."})
    mlp_adapter_scale: float = field(default=0.7, metadata={"help": "Scale on A^mlp."})
    out_adapter_rank: int = field(default=16, metadata={"help": "Rank of the output adapter A^out."})
    adapter_dropout: float = field(default=0.1, metadata={"help": "Dropout inside every bottleneck adapter."})
    ga_num_anchors: int | None = field(default=None, metadata={"help": "FPS anchors of the GA adapter; None: G // 2."})
    ga_k: int = field(default=16, metadata={"help": "Neighbours per anchor."})
    ga_attn_dim: int = field(default=18, metadata={"help": "Inner width of the shared local attention."})
    ga_attn_heads: int = field(default=6, metadata={"help": "Heads of the local attention."})
    center_coef: float = field(default=0.3, metadata={"help": "Anchor residual coefficient."})
    propagate_coef: float = field(default=0.3, metadata={"help": "Propagation residual coefficient."})
    bias_tuning: bool = field(default=True, metadata={"help": "Per-adapter deltas on the official bias set (BitFit)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = add_peft_type("point_prompt")
        positive = (
            "num_prompt_tokens",
            "prompt_layers",
            "bank_topk",
            "cp_adapter_rank",
            "mlp_adapter_rank",
            "out_adapter_rank",
            "ga_k",
            "ga_attn_dim",
            "ga_attn_heads",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PointPromptConfig.{name} must be a positive integer, got {value!r}")
        for name in ("prompt_dropout", "adapter_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"PointPromptConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.use_memory_bank and self.bank_topk != self.num_prompt_tokens - 2:
            raise ValueError(
                f"bank_topk ({self.bank_topk}) must equal num_prompt_tokens - 2 ({self.num_prompt_tokens - 2}): the "
                "prompt-enhancement input stacks the query, the aggregate and the K retrieved features"
            )
        if self.bank_dtype not in ("float32", "float16"):
            raise ValueError(f"PointPromptConfig.bank_dtype must be 'float32' or 'float16', got {self.bank_dtype!r}")
        if self.ga_attn_dim % self.ga_attn_heads:
            raise ValueError(f"ga_attn_heads ({self.ga_attn_heads}) must divide ga_attn_dim ({self.ga_attn_dim})")
        if self.ga_num_anchors is not None and self.ga_num_anchors <= 0:
            raise ValueError(f"PointPromptConfig.ga_num_anchors must be positive, got {self.ga_num_anchors!r}")
        if self.bank_size is not None and self.bank_size <= 0:
            raise ValueError(f"PointPromptConfig.bank_size must be positive, got {self.bank_size!r}")
