"""Virtual projections (specs/any2point.md §5): token centres -> positions in the source model's own frozen table
(1D lines or 2D views), averaged over views, and the per-view cells that group tokens for the guided adapter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ViewPositions", "pe_1d", "pe_2d", "view_rotations"]


def _rot_x(a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(b: float) -> torch.Tensor:
    c, s = math.cos(b), math.sin(b)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(c_: float) -> torch.Tensor:
    c, s = math.cos(c_), math.sin(c_)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


VIEW_ANGLES = [(k * math.pi / 2, 0.0, math.pi / 2) for k in range(4)] + [
    (0.0, -math.pi / 2, math.pi / 2),
    (0.0, math.pi / 2, math.pi / 2),
]


def view_rotations(num_views: int) -> torch.Tensor:
    """[M, 3, 3] rotations R = Rx(a) Ry(b) Rz(c) of the first M views."""
    return torch.stack([_rot_x(a) @ _rot_y(b) @ _rot_z(c) for a, b, c in VIEW_ANGLES[:num_views]])


class ViewPositions:
    """Per-forward result: pe [B, G, W] (mean over views), cells [M, B, G] (long), and the number of cells per view."""

    def __init__(self, pe: torch.Tensor, cells: torch.Tensor, num_cells: int):
        self.pe, self.cells, self.num_cells = pe, cells, num_cells


@torch.compiler.disable  # cells are discrete choices: eager under torch.compile, so compiled == eager
def pe_1d(centres: torch.Tensor, table: torch.Tensor, direction, num_views: int, cell_size: float) -> ViewPositions:
    """1D (CLIP, BERT): per view, centre the rotated centres, project on the unit direction, min-max normalise per
    sample to s in [0, 1] (0 when max == min), x = s (L - 1), linear interpolation of the table rows; cell = x // cell."""
    length = table.shape[0]
    d = torch.tensor(direction, dtype=torch.float32, device=centres.device)
    d = d / d.norm()
    rot = view_rotations(num_views).to(centres.device)
    c = centres.float()
    pes, cells = [], []
    for r in rot:
        q = c @ r.T
        q = q - q.mean(dim=1, keepdim=True)
        proj = q @ d
        lo, hi = proj.amin(dim=1, keepdim=True), proj.amax(dim=1, keepdim=True)
        span = hi - lo
        s = torch.where(
            span > 0, (proj - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(proj)
        )
        x = s * (length - 1)
        i0 = x.floor().long().clamp(0, length - 1)
        i1 = (i0 + 1).clamp(max=length - 1)
        phi = (x - i0.to(x.dtype)).unsqueeze(-1)
        pes.append((1 - phi) * table[i0].float() + phi * table[i1].float())
        cells.append(torch.div(x, cell_size, rounding_mode="floor").long())
    num_cells = int(math.floor((length - 1) / cell_size)) + 1
    return ViewPositions(torch.stack(pes).mean(0).to(table.dtype), torch.stack(cells), num_cells)


@torch.compiler.disable  # cells are discrete choices: eager under torch.compile, so compiled == eager
def pe_2d(
    centres: torch.Tensor,
    grid: torch.Tensor,
    translation: float,
    num_views: int,
    pitch: int,
    cell_size: float,
    official_19x12: bool = False,
    official_reshape: bool = False,
) -> ViewPositions:
    """2D (DINOv2, AST, ImageBind): camera q = R c - (0, 0, t); u, v = q_x / q_z, q_y / q_z; canvas H x Wc =
    rows*pitch x cols*pitch; pixels wrap modulo the canvas (as officially; nothing clamped); bilinear lookup of the
    table with `grid_sample(align_corners=True)`, zeros outside; cell = px // cell + (py // cell) * ceil(Wc / cell).

    `official_19x12` reproduces the official ImageBind layout: the 12x19 table read as 19 rows x 12 columns on a
    304 x 192 canvas with v scaled by 304/192. `official_reshape` reproduces the official reshape of the sampled
    PEs: per sample and view the [W, G] block is read as [G, W] without a transpose, so each token's PE is made of
    other tokens' channels (every official 2D / audio number was made with it)."""
    rows, cols, width = grid.shape
    if official_19x12:
        table = grid.reshape(rows * cols, width).reshape(cols, rows, width)
        rows, cols = cols, rows
    else:
        table = grid
    height, canvas_w = rows * pitch, cols * pitch
    rot = view_rotations(num_views).to(centres.device)
    c = centres.float()
    image = table.permute(2, 0, 1).unsqueeze(0).float()  # [1, W, rows, cols]
    pes, cells = [], []
    across = math.ceil(canvas_w / cell_size)
    for r in rot:
        q = c @ r.T - torch.tensor([0.0, 0.0, translation], device=c.device)
        u = q[..., 0] / (q[..., 2] + 1e-12)
        v = q[..., 1] / (q[..., 2] + 1e-12)
        if official_19x12:
            v = v * (304 / 192)
        px = torch.remainder((u + 1) * canvas_w / 2 - 0.5, canvas_w)
        py = torch.remainder((v + 1) * height / 2 - 0.5, height)
        gx = 2 * px / (canvas_w - 1) - 1  # column px*(cols-1)/(Wc-1) in align_corners=True coordinates
        gy = 2 * py / (height - 1) - 1
        sample_grid = torch.stack([gx, gy], dim=-1).unsqueeze(0)  # [1, B, G, 2]
        sampled = F.grid_sample(image, sample_grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        if official_reshape:  # [W, B, G] -> per sample the [W, G] block read as [G, W]
            pes.append(sampled[0].permute(1, 0, 2).reshape(len(c), -1, width))
        else:
            pes.append(sampled[0].permute(1, 2, 0))  # [B, G, W]
        cells.append(
            torch.div(px, cell_size, rounding_mode="floor").long()
            + torch.div(py, cell_size, rounding_mode="floor").long() * across
        )
    num_cells = across * math.ceil(height / cell_size)
    return ViewPositions(torch.stack(pes).mean(0).to(grid.dtype), torch.stack(cells), num_cells)
