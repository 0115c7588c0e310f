"""The selective scan as torch.library custom ops, so that autograd, torch.compile and torch.export see one op.

`armvision::selective_scan_fwd(u, delta, A, B, C, D?, z?, delta_bias?, softplus, backend)` returns
(out, last_state, saved) and `armvision::selective_scan_bwd(...)` the eight input gradients; the backward of the
first is the second (torch.library.register_autograd). `backend` is a concrete name chosen by dispatch.py:
  "cpu"     the fused C kernel (scan_cpu.py); saved = its chunk-boundary states;
  "triton"  the Triton kernels (triton_scan.py); saved = their chunk-boundary states;
  "torch", "ref", "cuda": the chunked PyTorch path, the sequential reference, mamba_ssm's kernel; these keep no
            state (saved is empty) and their backward recomputes the forward under autograd: in eager at autograd
            level (so it can itself be differentiated), under torch.compile / export inside selective_scan_bwd
            (the chunked path plans its chunks from the data, which a traced graph cannot do).
Fake (meta) implementations give shapes from input shapes only, so tracing never looks at data.

The Mamba mixer's multi-direction ops (`selective_scan_groups`, `conv_groups` and their custom ops) live in
groups_op.py; they are re-exported here, where callers have always imported them from.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import scan_cpu
from .groups_op import (  # noqa: F401  (re-exported: the mixer, the benchmarks and the tests import them here)
    _groups_on_triton, conv_groups, conv_groups_bwd, conv_groups_fwd, conv_groups_torch, selective_scan_groups,
    selective_scan_groups_bwd, selective_scan_groups_fwd, selective_scan_groups_triton_bwd,
    selective_scan_groups_triton_fwd,
)


def _no_grad(like: Tensor) -> Tensor:
    """Stands for "no gradient" among a custom op's outputs (a fresh empty tensor each time: outputs may not alias)."""
    return like.new_empty(0)


# ---------------------------------------------------------------------------------------------------------
# Layout helpers for the CPU kernel: mamba_ssm's (batch, D, L) form <-> the kernel's (G, batch, L, Dg) views
# ---------------------------------------------------------------------------------------------------------
def _groups(B: Tensor, C: Tensor) -> int:
    gb = B.shape[1] if B.dim() == 4 else 1
    gc = C.shape[1] if C.dim() == 4 else 1
    return gb * gc // math.gcd(gb, gc)


def _seq4(x: Tensor, G: int) -> Tensor:
    """(batch, D, L) -> (G, batch, L, D/G) float32 view with contiguous channels (copies only if it must)."""
    x = x.float()
    if x.stride(1) != 1:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    batch, D, L = x.shape
    return x.transpose(1, 2).reshape(batch, L, G, D // G).permute(2, 0, 1, 3)


def _bc4(X: Tensor, G: int) -> Tensor:
    """B or C -> (G, batch, L, N) view, or the (D, N) constant."""
    X = X.float()
    if X.dim() == 2:
        return X
    if X.dim() == 3:  # shared by all channels: group stride 0
        return X.transpose(1, 2).unsqueeze(0).expand(G, -1, -1, -1)
    if X.shape[1] != G:
        X = X.repeat_interleave(G // X.shape[1], dim=1)
    return X.permute(1, 0, 3, 2)


def _bc_grad(dX: Tensor, X: Tensor) -> Tensor:
    """Kernel gradient of B/C ((G, batch, L, N) or (D, N)) -> the form and dtype X came in."""
    if X.dim() == 2:
        return dX.to(X.dtype)
    g = dX.permute(1, 0, 3, 2)  # (batch, G, N, L)
    if X.dim() == 3:
        g = g.sum(1)
    elif X.shape[1] != g.shape[1]:
        g = g.unflatten(1, (X.shape[1], -1)).sum(2)
    return g.to(X.dtype).contiguous()


def _from4(x4: Tensor, like: Tensor) -> Tensor:
    """(G, batch, L, Dg) kernel tensor -> (batch, D, L) in like's dtype (channels stay contiguous)."""
    G, batch, L, Dg = x4.shape
    return x4.permute(1, 2, 0, 3).reshape(batch, L, G * Dg).transpose(1, 2).to(like.dtype)


def _cpu_fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
    G = _groups(B, C)
    batch, dim, L = u.shape
    out = torch.empty(batch, L, dim, dtype=torch.float32)
    out4 = out.view(batch, L, G, dim // G).permute(2, 0, 1, 3)
    _, last, ckpt = scan_cpu.fwd(_seq4(u, G), _seq4(delta, G), A.float(), _bc4(B, G), _bc4(C, G),
                                 None if D is None else D.float(), None if z is None else _seq4(z, G),
                                 None if delta_bias is None else delta_bias.float(), None, softplus, out4)
    return out.transpose(1, 2).to(u.dtype), last, ckpt


def _cpu_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast):
    G = _groups(B, C)
    du, ddelta, dA, dB, dC, dD, dz, ddb = scan_cpu.bwd(
        _seq4(u, G), _seq4(delta, G), A.float(), _bc4(B, G), _bc4(C, G), None if D is None else D.float(),
        None if z is None else _seq4(z, G), None if delta_bias is None else delta_bias.float(), None, softplus,
        saved, _seq4(dout, G), dlast)
    return [_from4(du, u), _from4(ddelta, delta), dA.to(A.dtype), _bc_grad(dB, B), _bc_grad(dC, C),
            _no_grad(u) if D is None else dD.to(D.dtype), _no_grad(u) if z is None else _from4(dz, z),
            _no_grad(u) if delta_bias is None else ddb.to(delta_bias.dtype)]


def _saved_shape(u: Tensor, A: Tensor, B: Tensor, C: Tensor, backend: str) -> Tuple[int, ...]:
    batch, dim, L = u.shape
    N = A.shape[1]
    if backend == "cpu":
        G = _groups(B, C)
        return (-(-L // scan_cpu.DEFAULT_CHUNK), batch, G, N, dim // G)
    if backend == "triton":
        from .triton_scan import DEFAULT_CHUNK as TRITON_CHUNK
        return (-(-L // TRITON_CHUNK), batch, dim, N)
    return (0,)


def _state_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------------------
# Backends that keep no state: forward without autograd; backward recomputes under autograd
# ---------------------------------------------------------------------------------------------------------
def _plain(backend: str):
    from . import dispatch

    return dispatch.plain_scan(backend)


def _recompute_grads(u, delta, A, B, C, D, z, delta_bias, softplus, backend, dout, dlast) -> List[Tensor]:
    inputs = [u, delta, A, B, C, D, z, delta_bias]
    leaves = [None if t is None else t.detach().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out, last = _plain(backend)(*leaves, softplus, True)
        outs, grads = [out], [dout]
        if dlast is not None:
            outs.append(last)
            grads.append(dlast.to(last.dtype))
        wrt = [t for t in leaves if t is not None]
        got = iter(torch.autograd.grad(outs, wrt, grads, allow_unused=True))
    res = []
    for t in leaves:
        g = None if t is None else next(got)
        res.append(_no_grad(u) if t is None else (torch.zeros_like(t) if g is None else g))
    return res


# ---------------------------------------------------------------------------------------------------------
# The ops
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::selective_scan_fwd", mutates_args=())
def selective_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool,
                       backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    if backend == "cpu":
        return _cpu_fwd(u, delta, A, B, C, D, z, delta_bias, softplus)
    if backend == "triton":
        from .triton_scan import triton_scan_fwd
        out, last, saved = triton_scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus)
        return out.contiguous(), last.float(), saved
    with torch.no_grad():
        out, last = _plain(backend)(u, delta, A, B, C, D, z, delta_bias, softplus, True)
    return out.contiguous(), last.to(_state_dtype(u)), u.new_empty(0)


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, softplus, backend):
    batch, dim, L = u.shape
    out = u.new_empty(batch, L, dim).transpose(1, 2) if backend == "cpu" else u.new_empty(batch, dim, L)
    saved_dtype = torch.float32 if backend in ("cpu", "triton") else u.dtype
    return (out, u.new_empty(batch, dim, A.shape[1], dtype=_state_dtype(u)),
            u.new_empty(_saved_shape(u, A, B, C, backend), dtype=saved_dtype))


@torch.library.custom_op("armvision::selective_scan_bwd", mutates_args=())
def selective_scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool, backend: str,
                       saved: Tensor, dout: Tensor, dlast: Optional[Tensor]) -> List[Tensor]:
    if backend == "cpu":
        return _cpu_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast)
    if backend == "triton":
        from .triton_scan import triton_scan_bwd
        grads = triton_scan_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast)
        return [_no_grad(u) if g is None else g for g in grads]
    # the other backends keep no state: recompute here, where a compiler sees one op (their chunk plan reads the
    # data, which a traced graph cannot), and hand back contiguous gradients as the fake impl says
    grads = _recompute_grads(u, delta, A, B, C, D, z, delta_bias, softplus, backend, dout, dlast)
    return [g.contiguous() for g in grads]


@selective_scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, softplus, backend, saved, dout, dlast):
    # Exactly the real layouts (inductor plans buffers from them): the CPU kernel's (batch, D, L) gradients are
    # channels-last views (_from4), Triton's are contiguous; every other gradient is contiguous.
    def seq(t):
        if backend == "cpu":
            return t.new_empty(t.shape[0], t.shape[2], t.shape[1]).transpose(1, 2)
        return t.new_empty(t.shape)

    def plain(t):
        return t.new_empty(t.shape)

    return [seq(u), seq(delta), plain(A), plain(B), plain(C), _no_grad(u) if D is None else plain(D),
            _no_grad(u) if z is None else seq(z), _no_grad(u) if delta_bias is None else plain(delta_bias)]


def _setup(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, softplus, backend = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, output[2])
    ctx.softplus, ctx.backend = softplus, backend


def _backward(ctx, dout, dlast, _dsaved):
    u, delta, A, B, C, D, z, delta_bias, saved = ctx.saved_tensors
    if ctx.backend in ("cpu", "triton") or torch.compiler.is_compiling():
        grads = selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.backend, saved, dout,
                                   dlast)
    else:  # eager: at autograd level (not inside an op), where the recomputation can itself be differentiated
        grads = _recompute_grads(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.backend, dout, dlast)
    present = [u, delta, A, B, C, D, z, delta_bias]
    return (*[None if t is None else g for t, g in zip(present, grads)], None, None)


torch.library.register_autograd("armvision::selective_scan_fwd", _backward, setup_context=_setup)
