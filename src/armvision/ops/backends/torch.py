"""The "torch" room: the chunked PyTorch selective scan (torch_scan.py) for every B/C form, and the depthwise causal
conv1d as one grouped F.conv1d. Plain autograd, any device. No multi-direction forms of its own (the API runs one
scan / conv per direction)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .ref import expand_bc, selective_scan_ref
from .torch_scan import selective_scan_torch


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                        activation: Optional[str] = None) -> Tensor:
    """x: (batch, D, L); weight: (D, width); bias: (D,). out[t] = sum_k weight[k] * x[t - width + 1 + k] (+ bias)."""
    dim, width = weight.shape
    xp = F.pad(x, (width - 1, 0))  # (batch, D, L + width - 1): zeros before the sequence
    out = F.conv1d(xp, weight.unsqueeze(1).to(x.dtype), None if bias is None else bias.to(x.dtype), groups=dim)
    return F.silu(out) if activation in ("silu", "swish") else out


def scan(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state):
    """The chunked PyTorch scan for every B/C form: grouped forms one group at a time, constant forms on the
    reference path (the chunked kernels assume B and C shared by all channels)."""
    if B.dim() == 3 and C.dim() == 3:
        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state)
    if B.dim() == 2 or C.dim() == 2:
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state)
    batch, dim, L = u.shape
    Bx, Cx = (expand_bc(X, batch, dim, L) for X in (B, C))  # (batch, dim, N, L)
    G = max(X.shape[1] if X.dim() == 4 else 1 for X in (B, C))
    step = dim // G
    outs, lasts = [], []
    for g in range(G):
        s = slice(g * step, (g + 1) * step)
        pick = lambda t: None if t is None else t[:, s]  # noqa: E731
        out, last = selective_scan_torch(u[:, s], delta[:, s], A[s], Bx[:, g * step], Cx[:, g * step],
                                         None if D is None else D[s], pick(z),
                                         None if delta_bias is None else delta_bias[s], softplus, True)
        outs.append(out)
        lasts.append(last)
    out, last = torch.cat(outs, 1), torch.cat(lasts, 1)
    return (out, last) if return_last_state else out


# ---------------------------------------------------------------------------------------------------------
# The room's functions (see backends/__init__.py)
# ---------------------------------------------------------------------------------------------------------
KEEPS_STATE = False
DT_PROJECTION = False
scan_fwd = scan_bwd = scan_meta = seq_grad_meta = None
directions_fwd = directions_bwd = directions_meta = directions_grad_meta = None
conv = causal_conv1d_torch
conv_directions_fwd = conv_directions_bwd = None
silu_mul_fwd = silu_mul_bwd = None  # the gate runs as torch ops (armvision.ops.api.silu_mul)
