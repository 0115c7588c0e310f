"""The selective scan as torch.library custom ops, so that autograd, torch.compile and torch.export see one op.

`armvision::selective_scan_fwd(u, delta, A, B, C, D?, z?, delta_bias?, softplus, backend)` returns
(out, last_state, saved) and `armvision::selective_scan_bwd(...)` the eight input gradients; the backward of the
first is the second (torch.library.register_autograd). `backend` is a concrete name chosen by dispatch.py:
  "cpu"     the fused C kernel (scan_cpu.py); saved = its chunk-boundary states;
  "triton"  the Triton kernels (triton_scan.py); saved = their chunk-boundary states;
  "torch", "ref", "cuda": the chunked PyTorch path, the sequential reference, mamba_ssm's kernel; these keep no
            state (saved is empty) and their backward (outside the ops) recomputes the forward under autograd.
Fake (meta) implementations give shapes from input shapes only, so tracing never looks at data.

`armvision::selective_scan_groups_fwd/bwd`: the CPU kernel's multi-direction form (see scan_cpu.py), used by the
Mamba mixer to run several scan directions over one sequence in one call;
`armvision::selective_scan_groups_triton_fwd/bwd`: the same on the Triton kernels (triton_groups.py), in one launch.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import scan_cpu, scan_decomposed

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
    raise ValueError(f"selective_scan_bwd: backend {backend!r} keeps no state; its backward recomputes")


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
    if ctx.backend in ("cpu", "triton"):
        grads = selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.backend, saved, dout,
                                   dlast)
    else:  # at autograd level (not inside an op), where the recomputation can itself be differentiated
        grads = _recompute_grads(u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.backend, dout, dlast)
    present = [u, delta, A, B, C, D, z, delta_bias]
    return (*[None if t is None else g for t, g in zip(present, grads)], None, None)


torch.library.register_autograd("armvision::selective_scan_fwd", _backward, setup_context=_setup)


# ---------------------------------------------------------------------------------------------------------
# Multi-direction form for the CPU kernel (Mamba mixer): (G, batch, L, Dg) scan-order u / delta, B / C views,
# z and out shared over groups (batch, L, Dg) in raster order, index (G, L) = position of each scan step.
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::selective_scan_groups_fwd", mutates_args=())
def selective_scan_groups_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                              delta_bias: Tensor, index: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """out (batch, L, Dg) = silu(z) * sum_g scan_g (softplus dt); returns (out, saved)."""
    G, batch, L, Dg = u.shape
    out = torch.empty(batch, L, Dg, dtype=torch.float32)
    z4 = z.float().unsqueeze(0).expand(G, -1, -1, -1)
    _, _, ckpt = scan_cpu.fwd(u.float(), delta.float(), A.float(), B.float(), C.float(), D.float(), z4,
                              delta_bias.float(), index, True, out.unsqueeze(0).expand(G, -1, -1, -1),
                              want_last=False)
    return out.to(u.dtype), ckpt


@selective_scan_groups_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index):
    G, batch, L, Dg = u.shape
    return (u.new_empty(batch, L, Dg),
            u.new_empty(-(-L // scan_cpu.DEFAULT_CHUNK), batch, G, A.shape[1], Dg, dtype=torch.float32))


@torch.library.custom_op("armvision::selective_scan_groups_bwd", mutates_args=())
def selective_scan_groups_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                              delta_bias: Tensor, index: Optional[Tensor], saved: Tensor,
                              dout: Tensor) -> List[Tensor]:
    G = u.shape[0]
    z4 = z.float().unsqueeze(0).expand(G, -1, -1, -1)
    d4 = dout.float().contiguous().unsqueeze(0).expand(G, -1, -1, -1)
    du, ddelta, dA, dB, dC, dD, dz, ddb = scan_cpu.bwd(u.float(), delta.float(), A.float(), B.float(), C.float(),
                                                       D.float(), z4, delta_bias.float(), index, True, saved, d4,
                                                       None)
    return [du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype), dz[0].to(z.dtype), ddb.to(delta_bias.dtype)]


@selective_scan_groups_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index, saved, dout):
    G, batch, L, Dg = u.shape
    return [u.new_empty(u.shape), delta.new_empty(delta.shape), A.new_empty(A.shape),
            B.new_empty(batch, G, L, B.shape[-1]).transpose(0, 1),
            C.new_empty(batch, G, L, C.shape[-1]).transpose(0, 1), D.new_empty(D.shape),
            z.new_empty(z.shape), delta_bias.new_empty(delta_bias.shape)]


def _setup_groups(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output[1])


def _groups_backward(bwd_op):
    """The autograd backward of a groups forward op: its saved inputs and state into `bwd_op` (no grad for index)."""
    def backward(ctx, dout, _dsaved):
        return (*bwd_op(*ctx.saved_tensors, dout), None)
    return backward


torch.library.register_autograd("armvision::selective_scan_groups_fwd", _groups_backward(selective_scan_groups_bwd),
                                setup_context=_setup_groups)


# ---------------------------------------------------------------------------------------------------------
# The same multi-direction form on the Triton kernels (triton_groups.py): CUDA tensors, or CPU tensors under
# Triton's interpreter; saved = the kernels' chunk-boundary states (n_chunks, batch, G * Dg, N) fp32.
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::selective_scan_groups_triton_fwd", mutates_args=())
def selective_scan_groups_triton_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                                     z: Tensor, delta_bias: Tensor,
                                     index: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    from .triton_groups import triton_groups_fwd

    return triton_groups_fwd(u, delta, A, B, C, D, z, delta_bias, index)


@selective_scan_groups_triton_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index):
    from .triton_scan import DEFAULT_CHUNK as TRITON_CHUNK

    G, batch, L, Dg = u.shape
    return (u.new_empty(batch, L, Dg),
            u.new_empty(-(-L // TRITON_CHUNK), batch, G * Dg, A.shape[1], dtype=torch.float32))


@torch.library.custom_op("armvision::selective_scan_groups_triton_bwd", mutates_args=())
def selective_scan_groups_triton_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                                     z: Tensor, delta_bias: Tensor, index: Optional[Tensor], saved: Tensor,
                                     dout: Tensor) -> List[Tensor]:
    from .triton_groups import triton_groups_bwd

    return triton_groups_bwd(u, delta, A, B, C, D, z, delta_bias, index, saved, dout)


@selective_scan_groups_triton_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, index, saved, dout):
    # the real layouts: du / ddelta / dz contiguous, dB / dC permuted views of contiguous (batch, G, N, L)
    G, batch, L, Dg = u.shape
    return [u.new_empty(u.shape), delta.new_empty(delta.shape), A.new_empty(A.shape),
            B.new_empty(batch, G, B.shape[-1], L).permute(1, 0, 3, 2),
            C.new_empty(batch, G, C.shape[-1], L).permute(1, 0, 3, 2), D.new_empty(D.shape),
            z.new_empty(z.shape), delta_bias.new_empty(delta_bias.shape)]


torch.library.register_autograd("armvision::selective_scan_groups_triton_fwd",
                                _groups_backward(selective_scan_groups_triton_bwd), setup_context=_setup_groups)


def _groups_on_triton(u: Tensor) -> bool:
    """The multi-direction scan runs on the Triton kernels for CUDA tensors, and for CPU tensors where
    ARMVISION_SCAN_BACKEND=triton and Triton's interpreter is enabled (else the CPU kernel)."""
    return u.is_cuda or _cpu_triton_forced()


@torch.compiler.assume_constant_result
def _cpu_triton_forced() -> bool:
    import os

    from .dispatch import ENV_BACKEND

    if os.environ.get(ENV_BACKEND, "").strip().lower() != "triton":  # before importing triton (slow)
        return False
    from .triton_scan import interpreter_enabled

    return interpreter_enabled()


def selective_scan_groups(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                          delta_bias: Tensor, index: Optional[Tensor] = None) -> Tensor:
    """Several scan directions over one sequence in one kernel call (softplus dt, z gate shared): the CPU
    kernel, or the Triton kernels (one launch) for CUDA tensors / CPU tensors under Triton's interpreter with
    ARMVISION_SCAN_BACKEND=triton.

    u, delta: (G, batch, L, Dg) in each group's scan order (channels contiguous); B, C: (G, batch, L, N) views
    in scan order; A: (G * Dg, N); D, delta_bias: (G * Dg,); z: (batch, L, Dg) in raster order; index (G, L):
    raster position of each group's step t (None: every group in raster order). Returns
    silu(z) * sum_g (y_g + D_g u_g) as (batch, L, Dg).
    """
    if scan_decomposed.active():  # exporting to ONNX: standard ops instead of the custom op
        return scan_decomposed.groups_scan(u, delta, A, B, C, D, z, delta_bias, index)
    index = None if index is None else index.to(torch.int32)
    if _groups_on_triton(u):
        return selective_scan_groups_triton_fwd(u, delta, A, B, C, D, z, delta_bias, index)[0]
    return selective_scan_groups_fwd(u, delta, A, B, C, D, z, delta_bias, index)[0]


# ---------------------------------------------------------------------------------------------------------
# The mixer's depthwise causal conv + SiLU in every direction's order, channels-last (CPU kernel)
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("armvision::conv_groups_fwd", mutates_args=())
def conv_groups_fwd(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor]) -> Tensor:
    return scan_cpu.conv_fwd(x.float(), weight.float(), bias.float(), index).to(x.dtype)


@conv_groups_fwd.register_fake
def _(x, weight, bias, index):
    return x.new_empty(weight.shape[0] // x.shape[2], *x.shape)


@torch.library.custom_op("armvision::conv_groups_bwd", mutates_args=())
def conv_groups_bwd(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor],
                    du: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = scan_cpu.conv_bwd(x.float(), weight.float(), bias.float(), index, du.float())
    return dx.to(x.dtype), dw.to(weight.dtype), db.to(bias.dtype)


@conv_groups_bwd.register_fake
def _(x, weight, bias, index, du):
    return x.new_empty(x.shape), torch.empty_like(weight), torch.empty_like(bias)


def _setup_conv(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_conv(ctx, du):
    x, weight, bias, index = ctx.saved_tensors
    return (*conv_groups_bwd(x, weight, bias, index, du), None)


torch.library.register_autograd("armvision::conv_groups_fwd", _backward_conv, setup_context=_setup_conv)


def conv_groups(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor] = None) -> Tensor:
    """silu(depthwise causal conv) of x (batch, L, Dg) (channels contiguous) visited in G orders: weight
    (G * Dg, K), bias (G * Dg,), index (G, L) raster positions of each order's steps (None: raster order).
    Returns (G, batch, L, Dg) in scan order, ready for selective_scan_groups."""
    if scan_decomposed.active() or x.device.type != "cpu":  # ONNX export, or GPU: standard ops
        return conv_groups_torch(x, weight, bias, index)
    if x.stride(-1) != 1:
        x = x.contiguous()
    return conv_groups_fwd(x, weight, bias, None if index is None else index.to(torch.int32))


def conv_groups_torch(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor] = None) -> Tensor:
    """conv_groups in standard ops (a gather, a grouped conv1d and SiLU per order): the tests' oracle, and the
    path for exporters that cannot call our kernels."""
    batch, L, Dg = x.shape
    G, K = weight.shape[0] // Dg, weight.shape[1]
    outs = []
    for g in range(G):
        xg = x if index is None else x.index_select(1, index[g].long())  # (batch, L, Dg) in order g
        w, b = weight[g * Dg:(g + 1) * Dg], bias[g * Dg:(g + 1) * Dg]
        s = F.conv1d(F.pad(xg.transpose(1, 2), (K - 1, 0)), w.unsqueeze(1).to(x.dtype), b.to(x.dtype), groups=Dg)
        outs.append(F.silu(s).transpose(1, 2))
    return torch.stack(outs)
