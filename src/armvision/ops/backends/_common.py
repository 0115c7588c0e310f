"""Two small helpers the rooms and the custom ops share."""
from __future__ import annotations

import torch
from torch import Tensor


def no_grad(like: Tensor) -> Tensor:
    """Stands for "no gradient" among a custom op's outputs (a fresh empty tensor each time: outputs may not alias)."""
    return like.new_empty(0)


def state_dtype(u: Tensor) -> torch.dtype:
    """The dtype of the scan's states for input u: float64 for float64, else float32."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32
