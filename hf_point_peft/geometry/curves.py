"""Space-filling-curve keys that order token centres into local groups.

`z_order_key` reproduces the key that PointGST's `models/z_order.py` computes as the official code calls it
(see `specs/pointgst.md` §4.4); `hilbert_key` is a 3-D Hilbert index (Skilling's transpose algorithm), our own option.
Both return int64 keys [B, G]; `curve_order` turns keys into a stable sort permutation and its inverse.
"""

from __future__ import annotations

import torch

__all__ = ["BITS", "curve_order", "hilbert_key", "interleave_bits", "quantize", "z_order_key"]

BITS = 16
_MASK = (1 << BITS) - 1


def quantize(coords: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """`(coords * scale)` truncated toward zero to int64, as `Tensor.long()` does in the official code.

    The product is taken in the input's own dtype (float32 in the official code, where 0.01 * 100 rounds to 1.0).
    Non-finite coordinates have no integer cell, so they raise instead of becoming arbitrary integers.
    """
    if not torch.isfinite(coords).all():
        raise ValueError("coordinates must be finite to compute curve keys; found NaN or inf")
    return (coords * scale).long()


def interleave_bits(high: torch.Tensor, mid: torch.Tensor, low: torch.Tensor, bits: int = BITS) -> torch.Tensor:
    """Interleave the low `bits` bits of three int64 tensors: bit i of `high` goes to 3i+2, `mid` to 3i+1, `low` to 3i."""
    key = torch.zeros_like(high)
    for i in range(bits):
        key |= ((high >> i) & 1) << (3 * i + 2)
        key |= ((mid >> i) & 1) << (3 * i + 1)
        key |= ((low >> i) & 1) << (3 * i)
    return key


def z_order_key(centres: torch.Tensor) -> torch.Tensor:
    """Official PointGST Z-order key of centres [..., 3].

    q = trunc(100 c); the axes enter in the order (y, x, z) so that y holds the most significant bit of each triple;
    each value is taken modulo 2^16 in two's complement, so negative coordinates wrap and the curve breaks at the
    axis planes, exactly as in the released code.
    """
    q = quantize(centres[..., :3]) & _MASK
    return interleave_bits(q[..., 1], q[..., 0], q[..., 2])


def _hilbert_transpose(axes: list[torch.Tensor], bits: int) -> list[torch.Tensor]:
    """Skilling's AxestoTranspose for three int64 coordinate tensors (each < 2^bits), vectorised."""
    x = [a.clone() for a in axes]
    n = len(x)
    top = 1 << (bits - 1)
    q = top
    while q > 1:
        p = q - 1
        for i in range(n):
            has_q = (x[i] & q) != 0
            # where bit q of x[i] is set: invert the low bits of x[0]; else exchange the low bits of x[0] and x[i]
            t = (x[0] ^ x[i]) & p
            x0_inverted = x[0] ^ p
            x0_exchanged = x[0] ^ t
            if i == 0:
                x[0] = torch.where(has_q, x0_inverted, x[0])
            else:
                xi_exchanged = x[i] ^ t
                x[0] = torch.where(has_q, x0_inverted, x0_exchanged)
                x[i] = torch.where(has_q, x[i], xi_exchanged)
        q >>= 1
    for i in range(1, n):
        x[i] = x[i] ^ x[i - 1]
    t = torch.zeros_like(x[0])
    q = top
    while q > 1:
        t = torch.where((x[n - 1] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return [xi ^ t for xi in x]


def hilbert_key(centres: torch.Tensor, bits: int = BITS) -> torch.Tensor:
    """3-D Hilbert index of centres [B, G, 3] (axis order x, y, z, `bits` bits per axis).

    Coordinates are quantised as trunc((c - per-sample min) * 100), non-negative by construction, and taken modulo
    2^bits like the Z-order key. Consecutive keys are always face-adjacent grid cells.
    """
    if centres.dim() != 3:
        raise ValueError(f"centres must be [B, G, 3], got shape {tuple(centres.shape)}")
    xyz = centres[..., :3]
    rel = xyz - xyz.amin(dim=1, keepdim=True)
    q = quantize(rel) & ((1 << bits) - 1)
    return hilbert_index(q, bits)


def hilbert_index(cells: torch.Tensor, bits: int = BITS) -> torch.Tensor:
    """Hilbert index of integer cells [..., 3] in [0, 2^bits) (x most significant within each bit triple)."""
    tx, ty, tz = _hilbert_transpose([cells[..., 0], cells[..., 1], cells[..., 2]], bits)
    return interleave_bits(tx, ty, tz, bits)


def curve_order(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stable per-row sort permutation of keys [B, G] (ties keep token order) and its inverse."""
    perm = torch.sort(keys, dim=-1, stable=True).indices
    inv = torch.argsort(perm, dim=-1)
    return perm, inv
