"""The Mamba mixer's multi-direction ("groups") ops as torch.library custom ops: several scan directions over one
sequence in one kernel call, and the depthwise causal conv + SiLU in every direction's order.

`armvision::selective_scan_groups_fwd/bwd`: the CPU kernel's multi-direction form (see scan_cpu.py);
`armvision::selective_scan_groups_triton_fwd/bwd`: the same on the Triton kernels (triton_groups.py), in one launch;
`armvision::conv_groups_fwd/bwd`: the conv on the CPU kernel. `selective_scan_groups` and `conv_groups` pick the
kernel (or standard ops when exporting to ONNX, see scan_decomposed.py). The single scan's ops are in scan_op.py.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import scan_cpu, scan_decomposed

__all__ = [
    "selective_scan_groups", "selective_scan_groups_fwd", "selective_scan_groups_bwd",
    "selective_scan_groups_triton_fwd", "selective_scan_groups_triton_bwd",
    "conv_groups", "conv_groups_torch", "conv_groups_fwd", "conv_groups_bwd",
]


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
