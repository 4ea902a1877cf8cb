"""Graph Fourier bases over token centres (PointGST, `specs/pointgst.md` §4).

Pure functions on [..., G, 3] centres: pairwise distances, the inverse-distance adjacency with its data-dependent
scale m, the (normalized or combinatorial) Laplacian, its eigenvectors, and the curve-ordered local graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .curves import curve_order, hilbert_key, z_order_key

__all__ = [
    "GraphBases",
    "adjacency",
    "graph_bases",
    "graph_fourier_basis",
    "laplacian",
    "pairwise_distances",
]


def pairwise_distances(centres: torch.Tensor, mode: str = "cdist") -> torch.Tensor:
    """Distances [..., G, G]. "cdist": `torch.cdist` in its default mode, as the official code (for G > 25 it uses a
    matmul expansion that leaves small positive values on the diagonal); "exact": coordinate differences, zero
    diagonal."""
    if mode == "cdist":
        return torch.cdist(centres, centres)
    if mode == "exact":
        return torch.cdist(centres, centres, compute_mode="donot_use_mm_for_euclid_dist")
    raise ValueError(f"pairwise_distance must be 'cdist' or 'exact', got {mode!r}")


def _positive_min(d: torch.Tensor, scope_dims: tuple[int, ...] | None) -> torch.Tensor:
    """Minimum over strictly positive entries, over everything (scope None) or over `scope_dims`; 1 where none."""
    masked = torch.where(d > 0, d, torch.full_like(d, float("inf")))
    m = masked.amin() if scope_dims is None else masked.amin(dim=scope_dims, keepdim=True)
    return torch.where(torch.isinf(m), torch.ones_like(m), m)


def adjacency(d: torch.Tensor, scale: str = "batch", degenerate_eps: float = 1e-6) -> torch.Tensor:
    """W = 1 / (d / m + I) for distances d [B, ..., G, G].

    m is the smallest strictly positive distance over the whole tensor ("batch", the official global scalar) or per
    sample, i.e. per leading index ("sample"). Exactly-zero off-diagonal distances (duplicate centres) become
    `degenerate_eps` *after* m is taken, the only deviation from the official numbers: there the official code would
    divide by zero. Non-degenerate inputs are bit-identical to the unclamped formula.
    """
    if scale == "batch":
        m = _positive_min(d, None)
    elif scale == "sample":
        m = _positive_min(d, tuple(range(1, d.dim())))
    else:
        raise ValueError(f"distance_scale must be 'batch' or 'sample', got {scale!r}")
    g = d.shape[-1]
    eye = torch.eye(g, dtype=torch.bool, device=d.device)
    d = torch.where((d == 0) & ~eye, torch.full_like(d, degenerate_eps), d)
    return 1.0 / (d / m + eye.to(d.dtype))


def laplacian(w: torch.Tensor, kind: str = "normalized") -> torch.Tensor:
    """ "normalized": I - R W R with R = diag(rsqrt(rowsum(W) + 1e-6)); "combinatorial": diag(rowsum(W)) - W."""
    deg = w.sum(dim=-1)
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    if kind == "normalized":
        r = torch.rsqrt(deg + 1e-6)
        return eye - r.unsqueeze(-1) * w * r.unsqueeze(-2)
    if kind == "combinatorial":
        return torch.diag_embed(deg) - w
    raise ValueError(f"laplacian must be 'normalized' or 'combinatorial', got {kind!r}")


def graph_fourier_basis(
    centres: torch.Tensor,
    *,
    distance: str = "cdist",
    scale: str = "batch",
    kind: str = "normalized",
    eigh_dtype: torch.dtype = torch.float32,
    degenerate_eps: float = 1e-6,
) -> torch.Tensor:
    """Eigenvectors U [..., G, G] (columns, ascending eigenvalues) of the Laplacian of the centres' graph."""
    d = pairwise_distances(centres.float(), distance)
    w = adjacency(d, scale, degenerate_eps)
    lap = laplacian(w.to(eigh_dtype), kind)
    return torch.linalg.eigh(lap).eigenvectors


@dataclass
class GraphBases:
    """The shared graph state of one forward: global basis [B, G, G], local bases [B, G/k, k, k], the curve
    permutation that groups tokens into local graphs and its inverse (both [B, G])."""

    global_basis: torch.Tensor
    local_basis: torch.Tensor
    perm: torch.Tensor
    inv: torch.Tensor


@torch.compiler.disable  # curve order and eigenvectors run eagerly under torch.compile: the same bases as eager mode
def graph_bases(
    centres: torch.Tensor,
    *,
    local_size: int = 32,
    curve: str = "z-order",
    distance: str = "cdist",
    scale: str = "batch",
    kind: str = "normalized",
    eigh_dtype: torch.dtype = torch.float32,
    degenerate_eps: float = 1e-6,
) -> GraphBases:
    """Global and curve-ordered local graph bases of centres [B, G, 3] (computed without grad, in float32/64)."""
    batch, groups, _ = centres.shape
    if groups % local_size:
        raise ValueError(
            f"PointGST needs the number of patch tokens G ({groups}) to be a multiple of local_size k ({local_size})"
        )
    centres = centres.float()
    opts = {
        "distance": distance,
        "scale": scale,
        "kind": kind,
        "eigh_dtype": eigh_dtype,
        "degenerate_eps": degenerate_eps,
    }
    global_basis = graph_fourier_basis(centres, **opts)
    if curve == "z-order":
        keys = z_order_key(centres)
    elif curve == "hilbert":
        keys = hilbert_key(centres)
    else:
        raise ValueError(f"curve must be 'z-order' or 'hilbert', got {curve!r}")
    perm, inv = curve_order(keys)
    sorted_centres = centres.gather(1, perm.unsqueeze(-1).expand(-1, -1, 3))
    chunks = sorted_centres.reshape(batch, groups // local_size, local_size, 3)
    local_basis = graph_fourier_basis(chunks, **opts)
    return GraphBases(global_basis, local_basis, perm, inv)
