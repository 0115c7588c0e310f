"""Depthwise causal conv1d in plain PyTorch: one grouped F.conv1d on a left-padded input (autograd for free)."""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                        activation: Optional[str] = None) -> Tensor:
    """x: (batch, D, L); weight: (D, width); bias: (D,). out[t] = sum_k weight[k] * x[t - width + 1 + k] (+ bias)."""
    dim, width = weight.shape
    xp = F.pad(x, (width - 1, 0))  # (batch, D, L + width - 1): zeros before the sequence
    out = F.conv1d(xp, weight.unsqueeze(1).to(x.dtype), None if bias is None else bias.to(x.dtype), groups=dim)
    return F.silu(out) if activation in ("silu", "swish") else out
