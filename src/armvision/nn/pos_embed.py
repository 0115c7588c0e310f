"""Fixed 2D sin-cos position embeddings (MAE convention) and their resampling."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def sincos_1d(embed_dim: int, positions: Tensor) -> Tensor:
    """(M,) positions -> (M, embed_dim): sin of the first half of frequencies, then cos."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega  # (D/2,)
    angles = positions.double().reshape(-1, 1) * omega[None]  # (M, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(embed_dim: int, grid_size: Tuple[int, int]) -> Tensor:
    """Raster-ordered (h*w, embed_dim) table. As in MAE, the first half encodes the column index, the second the row."""
    if embed_dim % 4:
        raise ValueError(f"2D sin-cos embedding needs a dimension divisible by 4, got {embed_dim}")
    h, w = grid_size
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (h, w) each
    emb = torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1)
    return emb.float()  # (h*w, D)


def same_grid(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    """a == b for concrete sizes; False when either is symbolic (torch.export with a dynamic image size), where the
    comparison would pin the exported graph to one size. Resampling a grid to its own size is exact anyway."""
    if any(isinstance(s, torch.SymInt) for s in (*a, *b)):
        return False
    return tuple(a) == tuple(b)


def resample_grid(pos: Tensor, old_hw: Tuple[int, int], new_hw: Tuple[int, int]) -> Tensor:
    """Bicubic resampling of a raster (1, h*w, D) grid of embeddings to a new grid (align_corners=False)."""
    if same_grid(old_hw, new_hw):
        return pos
    d = pos.shape[-1]
    grid = pos.reshape(1, old_hw[0], old_hw[1], d).permute(0, 3, 1, 2).float()  # (1, D, h, w)
    grid = F.interpolate(grid, size=tuple(new_hw), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], d).to(pos.dtype)


def resample_with_middle_token(
    pos: Tensor, old_hw: Tuple[int, int], new_hw: Tuple[int, int], cls_pos: Optional[Tensor] = None
) -> Tensor:
    """Resample a (1, h*w+1, D) table whose extra token sits at index h*w//2 (ARM's middle cls token).

    With `cls_pos` given, `pos` is a plain (1, h*w, D) grid (a pretraining table) and `cls_pos` (1, 1, D) is inserted.
    """
    if cls_pos is None:
        mid = old_hw[0] * old_hw[1] // 2
        cls_pos = pos[:, mid : mid + 1]
        pos = torch.cat([pos[:, :mid], pos[:, mid + 1 :]], dim=1)
    grid = resample_grid(pos, old_hw, new_hw)
    mid = new_hw[0] * new_hw[1] // 2
    return torch.cat([grid[:, :mid], cls_pos.to(grid.dtype), grid[:, mid:]], dim=1)
