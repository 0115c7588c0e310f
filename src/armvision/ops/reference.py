"""Plain, sequential reference implementations: the oracle every fast path is tested against.

Kept deliberately simple (one time step at a time, float32 math, nothing clever).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Selective scan, one step at a time.

    u, delta: (batch, dim, L); A: (dim, N); B, C: (batch, N, L); D: (dim,); z: (batch, dim, L);
    delta_bias: (dim,). Returns out (batch, dim, L) in u's dtype, and the last state (batch, dim, N) if asked.
    """
    dtype_in = u.dtype
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    A, B, C = A.float(), B.float(), C.float()
    batch, dim, L = u.shape
    state = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(L):
        dt = delta[:, :, t]  # (batch, dim)
        state = torch.exp(dt[:, :, None] * A) * state + (dt * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))
    out = torch.stack(ys, dim=-1)  # (batch, dim, L)
    if D is not None:
        out = out + u * D.float()[None, :, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(dtype_in)
    return (out, state) if return_last_state else out


def causal_conv1d_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: Optional[str] = None) -> Tensor:
    """Depthwise causal conv1d. x: (batch, dim, L); weight: (dim, width); bias: (dim,)."""
    dim, width = weight.shape
    out = F.conv1d(x, weight.unsqueeze(1).to(x.dtype), None if bias is None else bias.to(x.dtype),
                   padding=width - 1, groups=dim)[..., : x.shape[-1]]
    if activation in ("silu", "swish"):
        out = F.silu(out)
    elif activation is not None:
        raise ValueError(f"causal_conv1d: activation must be None, 'silu' or 'swish', got {activation!r}")
    return out
