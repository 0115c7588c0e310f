"""The "ref" room: plain, sequential reference implementations, the oracle every fast path is tested against.

Kept deliberately simple (one time step at a time, float32 math -- float64 for float64 inputs, so that
gradcheck can use them -- nothing clever). Plain autograd over plain ops: traceable, and FLOP counters see the
model's math. No multi-direction forms of its own (the API runs one reference scan / conv per direction).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def expand_bc(X: Tensor, batch: int, dim: int, L: int) -> Tensor:
    """B or C in any of mamba_ssm's forms -> (batch, dim, N, L) (a broadcast view where possible)."""
    if X.dim() == 2:  # (dim, N): input-independent
        return X[None, :, :, None].expand(batch, dim, X.shape[1], L)
    if X.dim() == 3:  # (batch, N, L): shared by all channels
        return X[:, None].expand(batch, dim, *X.shape[1:])
    groups = X.shape[1]  # (batch, G, N, L): channel d uses group d // (dim // G)
    return X.repeat_interleave(dim // groups, dim=1)


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

    u, delta: (batch, dim, L); A: (dim, N); D: (dim,); z: (batch, dim, L); delta_bias: (dim,).
    B and C each take one of mamba_ssm's forms: (dim, N) (the same at every step), (batch, N, L), or grouped
    (batch, G, N, L) where channel d uses group d // (dim / G).
    Returns out (batch, dim, L) in u's dtype, and the last state (batch, dim, N) if asked.
    """
    dtype_in = u.dtype
    cd = torch.float64 if dtype_in == torch.float64 else torch.float32
    u = u.to(cd)
    delta = delta.to(cd)
    if delta_bias is not None:
        delta = delta + delta_bias.to(cd)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, L = u.shape
    A, B, C = A.to(cd), expand_bc(B.to(cd), batch, dim, L), expand_bc(C.to(cd), batch, dim, L)
    state = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(L):
        dt = delta[:, :, t]  # (batch, dim)
        state = torch.exp(dt[:, :, None] * A) * state + (dt * u[:, :, t])[:, :, None] * B[..., t]
        ys.append(torch.matmul(state.unsqueeze(-2), C[..., t].unsqueeze(-1))[..., 0, 0])  # y = C.h (a matmul)
    out = torch.stack(ys, dim=-1)  # (batch, dim, L)
    if D is not None:
        out = out + u * D.to(cd)[None, :, None]
    if z is not None:
        out = out * F.silu(z.to(cd))
    out = out.to(dtype_in)
    return (out, state) if return_last_state else out


def causal_conv1d_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                      activation: Optional[str] = None) -> Tensor:
    """Depthwise causal conv1d as a sum of shifted copies. x: (batch, dim, L); weight: (dim, width); bias: (dim,).

    out[:, d, t] = bias[d] + sum_k weight[d, k] * x[:, d, t - (width - 1) + k]  (x = 0 before the sequence).
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d: activation must be None, 'silu' or 'swish', got {activation!r}")
    dim, width = weight.shape
    L = x.shape[-1]
    w = weight.to(x.dtype)
    out = torch.zeros_like(x)
    for k in range(width):
        shift = width - 1 - k  # weight[:, k] multiplies the input `shift` steps back
        if shift < L:
            out[..., shift:] += w[:, k, None] * x[..., : L - shift]
    if bias is not None:
        out = out + bias.to(x.dtype)[:, None]
    return F.silu(out) if activation is not None else out


# ---------------------------------------------------------------------------------------------------------
# The room's functions (see backends/__init__.py)
# ---------------------------------------------------------------------------------------------------------
KEEPS_STATE = False
DT_PROJECTION = False
scan = selective_scan_ref
scan_fwd = scan_bwd = scan_meta = seq_grad_meta = None
directions_fwd = directions_bwd = directions_meta = directions_grad_meta = None
conv = causal_conv1d_ref
conv_directions_fwd = conv_directions_bwd = None
silu_mul_fwd = silu_mul_bwd = None  # the gate runs as torch ops (armvision.ops.api.silu_mul)
