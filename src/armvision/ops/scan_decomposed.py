"""The Mamba mixer's multi-direction scan in standard tensor ops, for exporters that cannot call our kernels (ONNX).

`directions_scan` computes exactly what `armvision::selective_scan_directions_fwd` computes (see api.py,
`selective_scan_directions`), in float32:

    dt = softplus(delta + delta_bias),  h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t,  y_t = C_t . h_t + D u_t,
    out[raster index of step t] = silu(z) * sum_g y_g,t

The recurrence is a `torch._higher_order_ops.scan` over time (the ONNX exporter lowers it to one ONNX `Scan`); per
step it touches only (G, batch, Dg, N) tensors, so nothing of size L x N is ever materialised, and the decays
exp(dt A) are formed step by step (no division by cumulative decays, so no overflow whatever the data). Everything
around the recurrence (softplus, dt * u, the D skip, the gate, the return to raster order) is vectorised over L.
No data-dependent control flow: the graph holds for any batch and any sequence length.

`decomposed_scan()` switches the mixer to this path (ops.api's `selective_scan_directions` and
`causal_conv1d_directions` consult `active()`).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

_ACTIVE = False  # a plain global (not thread-local): torch.compile can read and guard on it


def active() -> bool:
    """True inside `decomposed_scan()`."""
    return _ACTIVE


@contextlib.contextmanager
def decomposed_scan() -> Iterator[None]:
    """Within this block the Mamba mixer runs its scan through `directions_scan` (standard ops) instead of the
    custom ops: for ONNX export, or any tracer that must not see `armvision::` ops. Process-wide."""
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, True
    try:
        yield
    finally:
        _ACTIVE = before


def _step(A4: Tensor):
    def step(h: Tensor, xs):
        dt_t, x_t, b_t, c_t = xs  # (G, b, Dg, 1), (G, b, Dg, 1), (G, b, 1, N), (G, b, 1, N)
        h = torch.exp(dt_t * A4) * h + x_t * b_t  # (G, b, Dg, N)
        return h, (h * c_t).sum(-1)  # (G, b, Dg)

    return step


def directions_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, delta_bias: Tensor,
                index: Optional[Tensor] = None) -> Tensor:
    """Same arguments and result as ops.selective_scan_directions: u, delta (G, batch, L, Dg) in each direction's
    scan order; B, C (G, batch, L, N); A (G * Dg, N); D, delta_bias (G * Dg,); z (batch, L, Dg) raster order;
    index (G, L) raster position of step t (None: raster order). Returns (batch, L, Dg) in u's dtype."""
    from torch._higher_order_ops.scan import scan

    G, batch, L, Dg = u.shape
    N = A.shape[1]
    uf = u.float()
    dt = F.softplus(delta.float() + delta_bias.float().view(G, 1, 1, Dg))  # (G, b, L, Dg); threshold 20 as the kernel
    time_major = (2, 0, 1, 3)  # (G, b, L, X) -> (L, G, b, X): the scan runs over dim 0
    xs = (dt.permute(time_major).unsqueeze(-1), (dt * uf).permute(time_major).unsqueeze(-1),
          B.float().permute(time_major).unsqueeze(-2), C.float().permute(time_major).unsqueeze(-2))
    h0 = uf.new_zeros(G, batch, Dg, N)
    _, ys = scan(_step(A.float().view(G, 1, Dg, N)), h0, xs)  # ys (L, G, b, Dg)
    y = ys.permute(1, 2, 0, 3) + uf * D.float().view(G, 1, 1, Dg)  # (G, b, L, Dg), scan order
    if index is not None:  # back to raster order: raster position p holds step inv[p]
        idx = index.long()
        steps = torch.arange(L, device=idx.device).unsqueeze(0).expand(G, L)
        inv = torch.zeros_like(idx).scatter(1, idx, steps)
        y = torch.gather(y, 2, inv.view(G, 1, L, 1).expand(G, batch, L, Dg))
    return (y.sum(0) * F.silu(z.float())).to(u.dtype)
