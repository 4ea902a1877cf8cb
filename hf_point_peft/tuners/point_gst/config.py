"""`PointGSTConfig`: the Point Cloud Spectral Adapter (PointGST, arXiv 2410.08114), see specs/pointgst.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...registry import add_peft_type
from ..config import PointPeftConfig, document_fields

__all__ = ["PointGSTConfig"]

_CHOICES = {
    "spectral_transform": ("official", "paper"),
    "distance_scale": ("batch", "sample"),
    "pairwise_distance": ("cdist", "exact"),
    "laplacian": ("normalized", "combinatorial"),
    "curve": ("z-order", "hilbert"),
    "eigh_dtype": ("float32", "float64"),
}


@dataclass(frozen=True)
class GraphSettings:
    """What defines PointGST's graph bases (`geometry.spectral.graph_bases`): adapters with equal settings share one
    computation per forward (the settings are the cache key in the forward's `PointGeometry`)."""

    local_size: int
    curve: str
    distance: str
    scale: str
    kind: str
    eigh_dtype: str
    degenerate_eps: float


@document_fields
@dataclass
class PointGSTConfig(PointPeftConfig):
    """Configuration of PointGST: a spectral adapter (PCSA) parallel to every block's FFN, driven by graph Fourier
    bases of the token centres (one global graph and G/k curve-ordered local graphs), computed once per forward.

    The defaults reproduce the released code; the switches give the paper's variants (see the spec's pitfalls).
    Use `task_type=None` and keep the head in `modules_to_save` (the default for known model families).
    """

    rank: int = field(default=36, metadata={"help": "Bottleneck width r of each PCSA."})
    local_size: int = field(
        default=32, metadata={"help": "Tokens per local graph k; G must be a multiple of it (checked at forward)."}
    )
    spectral_transform: str = field(
        default="official",
        metadata={"help": "'official': F = U S (released code); 'paper': F = U^T S (permutation-equivariant)."},
    )
    distance_scale: str = field(
        default="batch",
        metadata={"help": "Scope of the adjacency scale m: 'batch' (official, global over the batch) or 'sample'."},
    )
    pairwise_distance: str = field(
        default="cdist",
        metadata={"help": "'cdist': torch.cdist in its default mode (official); 'exact': differences, zero diagonal."},
    )
    laplacian: str = field(
        default="normalized",
        metadata={"help": "'normalized' I - D^-1/2 W D^-1/2 (code since Jan 2025) or 'combinatorial' D - W."},
    )
    curve: str = field(default="z-order", metadata={"help": "'z-order' (official) or 'hilbert' (ours) local grouping."})
    eigh_dtype: str = field(default="float32", metadata={"help": "Precision of the Laplacian and eigh."})
    degenerate_eps: float = field(
        default=1e-6, metadata={"help": "Replaces exactly-zero off-diagonal distances (duplicate centres)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = add_peft_type("point_gst")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"PointGSTConfig.{name} must be one of {choices}, got {getattr(self, name)!r}")
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"PointGSTConfig.rank must be a positive integer, got {self.rank!r}")
        if not isinstance(self.local_size, int) or self.local_size <= 1:
            raise ValueError(f"PointGSTConfig.local_size must be an integer >= 2, got {self.local_size!r}")
        if not self.degenerate_eps > 0:
            raise ValueError(f"PointGSTConfig.degenerate_eps must be > 0, got {self.degenerate_eps!r}")

    @property
    def graph_key(self) -> GraphSettings:
        """The settings that define the graph bases; adapters that share them share one computation per forward."""
        return GraphSettings(
            self.local_size,
            self.curve,
            self.pairwise_distance,
            self.distance_scale,
            self.laplacian,
            self.eigh_dtype,
            self.degenerate_eps,
        )
