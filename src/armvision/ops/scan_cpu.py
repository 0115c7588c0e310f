"""Tensor-level glue for the fused CPU selective scan (csrc/scan_cpu.c via cpu_kernel.py).

Internal form: every sequence tensor is a 4-D view (G, batch, L, Dg) whose last dimension is contiguous (any
other strides, stride 0 included): G groups of Dg channels, each group one scan with its own A / D / dt bias /
B / C and, optionally, its own order. u, delta (and du, ddelta) are in scan order; z and out (and dout, dz) are
read and written at position index[g, t] (identity without an index), so a group stride of 0 for z and out
shares the gate and sums the groups' outputs, in group order. B, C: (G, batch, L, N) views (any strides), or
(G * Dg, N) constants. Computation is float32; `fwd` / `bwd` take float32 tensors.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import cpu_kernel

DEFAULT_CHUNK = 64  # steps between saved states: backward memory O(batch * channels * N * L / chunk)


def _strides(t: Tensor, prefix: str) -> dict:
    """(G, batch, L, Dg) strides of a view whose channel dimension is contiguous."""
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"scan_cpu: {prefix} must have a contiguous channel dimension, got strides {t.stride()}")
    sg, sb, st = t.stride()[:3]
    return {f"{prefix}_sg": sg, f"{prefix}_sb": sb, f"{prefix}_st": st}


def _bc(X: Tensor, name: str) -> Tuple[dict, dict]:
    key = name.lower()
    if X.dim() == 2:
        return {f"{key}_mode": 0}, {name: X.contiguous()}
    sg, sb, st, sn = X.stride()
    return {f"{key}_mode": 1, f"{key}_sg": sg, f"{key}_sb": sb, f"{key}_st": st, f"{key}_sn": sn}, {name: X}


def _setup(u, delta, A, B, C, D, z, delta_bias, index, softplus, chunk):
    G, batch, L, Dg = u.shape
    N = A.shape[1]
    if N > cpu_kernel.MAX_STATE:
        raise ValueError(f"selective_scan: the CPU kernel supports state sizes up to {cpu_kernel.MAX_STATE}, got N={N}")
    ints = dict(batch=batch, L=L, G=G, Dg=Dg, N=N, chunk=chunk, softplus=int(softplus), threads=cpu_kernel.threads())
    ints.update(_strides(u, "u"), **_strides(delta, "dl"))
    ptrs = dict(u=u, delta=delta, A=A.contiguous(), D=None if D is None else D.contiguous(),
                bias=None if delta_bias is None else delta_bias.contiguous(), z=z,
                idx=None if index is None else index.to(torch.int32).contiguous())
    for X, name in ((B, "B"), (C, "C")):
        i, p = _bc(X, name)
        ints.update(i)
        ptrs.update(p)
    if z is not None:
        ints.update(_strides(z, "z"))
    return ints, ptrs


def _raster_like(x: Tensor) -> Tensor:
    """A fresh (G, batch, L, Dg) tensor laid out like x: group stride 0 (shared) stays shared."""
    G, batch, L, Dg = x.shape
    if x.stride(0) == 0 and G > 1:
        return x.new_empty(batch, L, Dg).unsqueeze(0).expand(G, -1, -1, -1)
    return x.new_empty(G, batch, L, Dg)


def fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
        delta_bias: Optional[Tensor], index: Optional[Tensor], softplus: bool, out: Tensor,
        chunk: int = DEFAULT_CHUNK, want_last: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """Writes out (a (G, batch, L, Dg) view, group stride 0 = groups summed); returns (out, last, ckpt) with
    last (batch, G * Dg, N) and ckpt (n_chunks, batch, G, N, Dg)."""
    ints, ptrs = _setup(u, delta, A, B, C, D, z, delta_bias, index, softplus, chunk)
    G, batch, L, Dg = u.shape
    N = A.shape[1]
    ints.update(_strides(out, "o"))
    ckpt = u.new_empty(-(-L // chunk), batch, G, N, Dg)
    last = u.new_empty(batch, G * Dg, N) if want_last else None
    ptrs.update(out=out, ckpt=ckpt, last=last)
    cpu_kernel._call("armv_scan_fwd", ints, ptrs)
    return out, last, ckpt


def bwd(u, delta, A, B, C, D, z, delta_bias, index, softplus, ckpt, dout, dlast, chunk: int = DEFAULT_CHUNK):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias): du, ddelta (G, batch, L, Dg) contiguous; dz laid
    out like z; dB / dC (G, batch, L, N) for variable forms (a permuted view), (G * Dg, N) for constants."""
    ints, ptrs = _setup(u, delta, A, B, C, D, z, delta_bias, index, softplus, chunk)
    G, batch, L, Dg = u.shape
    N, CH = A.shape[1], G * Dg
    nblk = -(-Dg // cpu_kernel.lanes())
    ints.update(_strides(dout, "o"))
    du, ddelta = u.new_empty(G, batch, L, Dg), u.new_empty(G, batch, L, Dg)
    ints.update(_strides(du, "du"), **_strides(ddelta, "dd"))
    dz = None if z is None else _raster_like(z)
    if dz is not None:
        ints.update(_strides(dz, "dz"))

    def part(X):
        return u.new_empty(batch * CH * N) if X.dim() == 2 else u.new_empty(batch * G * nblk * L * N)

    def grad(X):
        return u.new_empty(CH, N) if X.dim() == 2 else u.new_empty(batch, G, L, N)

    dB, dC = grad(B), grad(C)
    ptrs.update(ckpt=ckpt, dout=dout, dlast=None if dlast is None else dlast.contiguous(), du=du, ddelta=ddelta,
                dz=dz, dBp=part(B), dCp=part(C), dAp=u.new_empty(batch * CH * N),
                dDp=None if D is None else u.new_empty(batch * CH),
                dbiasp=None if delta_bias is None else u.new_empty(batch * CH),
                dB=dB, dC=dC, dA=u.new_empty(CH, N), dD=None if D is None else u.new_empty(CH),
                dbias=None if delta_bias is None else u.new_empty(CH))
    cpu_kernel._call("armv_scan_bwd", ints, ptrs)
    if B.dim() != 2:
        dB = dB.transpose(0, 1)
    if C.dim() != 2:
        dC = dC.transpose(0, 1)
    return du, ddelta, ptrs["dA"], dB, dC, ptrs["dD"], dz, ptrs["dbias"]


# ---------------------------------------------------------------------------------------------------------
# Depthwise causal conv1d + SiLU in several orders of one sequence (the Mamba mixer's conv, channels-last)
# ---------------------------------------------------------------------------------------------------------
def _conv_ints(x: Tensor, weight: Tensor, G: int) -> dict:
    batch, L, Dg = x.shape
    if x.stride(-1) != 1:
        raise ValueError(f"conv_cpu: x must have contiguous channels, got strides {x.stride()}")
    if weight.shape[1] > 8:
        raise ValueError(f"conv_cpu: kernel width {weight.shape[1]} > 8 is not supported")
    return dict(batch=batch, L=L, G=G, Dg=Dg, K=weight.shape[1], threads=cpu_kernel.threads(),
                x_sb=x.stride(0), x_st=x.stride(1))


def conv_fwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], index: Optional[Tensor]) -> Tensor:
    """x (batch, L, Dg) float32 (channels contiguous), weight (G * Dg, K), bias (G * Dg,), index (G, L) int32 or
    None -> u (G, batch, L, Dg): silu of the causal conv of x visited in each group's order."""
    G = weight.shape[0] // x.shape[2]
    u = x.new_empty(G, *x.shape)
    cpu_kernel._call("armv_conv_fwd", _conv_ints(x, weight, G),
                     dict(x=x, w=weight.contiguous(), bias=None if bias is None else bias.contiguous(),
                          idx=index, u=u))
    return u


def conv_bwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], index: Optional[Tensor], du: Tensor):
    """Gradients (dx (batch, L, Dg), dweight (G * Dg, K), dbias (G * Dg,)) of conv_fwd given du (G, batch, L, Dg)."""
    G = weight.shape[0] // x.shape[2]
    batch, L, Dg = x.shape
    K = weight.shape[1]
    dx, dw, db = x.new_empty(batch, L, Dg), x.new_empty(G * Dg, K), x.new_empty(G * Dg)
    cpu_kernel._call("armv_conv_bwd", _conv_ints(x, weight, G),
                     dict(x=x, w=weight.contiguous(), bias=None if bias is None else bias.contiguous(), idx=index,
                          du=du.contiguous(), dx=dx, dwp=x.new_empty(batch * G * Dg * K),
                          dbp=x.new_empty(batch * G * Dg), dw=dw, db=db))
    return dx, dw, db
