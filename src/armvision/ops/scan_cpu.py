"""Tensor-level glue for the fused CPU kernels (csrc/scan_fwd.c, scan_bwd.c, conv_cpu.c, gate_cpu.c via
cpu_kernel.py).

Internal form: every sequence tensor is a 4-D view (G, batch, L, Dg) with any strides (stride 0 included); the
ones the kernel writes (out, du, ddelta, dz) have contiguous channels, the ones it reads (u, delta, z, dout) may
have their channels apart (mamba_ssm's (batch, D, L) layout is read where it is, not copied). G groups of Dg
channels, each group one scan with its own A / D / dt bias / B / C and, optionally, its own order. u, delta (and
du, ddelta) are in scan order; z and out (and dout, dz) are read and written at position index[g, t] (identity
without an index), so a group stride of 0 for z and out shares the gate and sums the groups' outputs, in group
order. B, C: (G, batch, L, N) views (any strides), or (G * Dg, N) constants. Sequence tensors (u, delta, z, out,
dout) are float32 or bfloat16, all of one dtype; B and C float32 or bfloat16; A, D, dt bias float32. Computation is
float32 inside; outputs (out, du, ddelta, dz) have the sequence tensors' dtype, the others are float32.
"""
from __future__ import annotations

from typing import Optional, Tuple

import struct

import torch
from torch import Tensor

from . import cpu_kernel

DEFAULT_CHUNK = 64  # steps between saved states: backward memory O(batch * channels * N * L / chunk)
DTYPES = {torch.float32: 0, torch.bfloat16: 1}  # the kernel's dtype codes


def _code(t: Tensor, name: str) -> int:
    if t.dtype not in DTYPES:
        raise ValueError(f"scan_cpu: {name} must be float32 or bfloat16, got {t.dtype}")
    return DTYPES[t.dtype]


def _scale_bits(scale: float) -> int:
    return 0 if scale == 1.0 else struct.unpack("<I", struct.pack("<f", scale))[0]


def _strides(t: Tensor, prefix: str, any_channel_stride: bool = False) -> dict:
    """(G, batch, L, Dg) strides of a view; its channel stride too where the kernel reads it at any stride (u, delta,
    z, dout), else the channels must be contiguous (what the kernel writes)."""
    sg, sb, st, sc = t.stride()
    if any_channel_stride:
        sc = sc if t.shape[-1] > 1 else 1
        return {f"{prefix}_sg": sg, f"{prefix}_sb": sb, f"{prefix}_st": st, f"{prefix}_sc": sc}
    if t.shape[-1] > 1 and sc != 1:
        raise ValueError(f"scan_cpu: {prefix} must have a contiguous channel dimension, got strides {t.stride()}")
    return {f"{prefix}_sg": sg, f"{prefix}_sb": sb, f"{prefix}_st": st}


def _bc(X: Tensor, name: str) -> Tuple[dict, dict]:
    key = name.lower()
    if X.dim() == 2:
        return {f"{key}_mode": 0}, {name: X.float().contiguous()}
    sg, sb, st, sn = X.stride()
    return {f"{key}_mode": 1, f"{key}_sg": sg, f"{key}_sb": sb, f"{key}_st": st, f"{key}_sn": sn}, {name: X}


def _setup(u, delta, A, B, C, D, z, delta_bias, index, softplus, chunk, scale=1.0, dt_weight=None):
    G, batch, L, Dg = u.shape
    N = A.shape[1]
    if N > cpu_kernel.MAX_STATE:
        raise ValueError(f"selective_scan: the CPU kernel supports state sizes up to {cpu_kernel.MAX_STATE}, got N={N}")
    act = _code(u, "u")
    for t, name in ((delta, "delta"), (z, "z")):
        if t is not None and t.dtype != u.dtype:
            raise ValueError(f"scan_cpu: {name} has dtype {t.dtype} but u has {u.dtype}; they must match")
    bc = {_code(X, name) for X, name in ((B, "B"), (C, "C")) if X.dim() != 2}  # constants: float32 anyway
    if len(bc) > 1:
        raise ValueError(f"scan_cpu: B and C must have one dtype, got {B.dtype} and {C.dtype}")
    bc = bc or {0}
    ints = dict(batch=batch, L=L, G=G, Dg=Dg, N=N, chunk=chunk, softplus=int(softplus), threads=cpu_kernel.threads(),
                act_dt=act, bc_dt=bc.pop(), scale_bits=_scale_bits(scale))
    ints.update(_strides(u, "u", True), **_strides(delta, "dl", True), z_sc=1, o_sc=1)
    f32 = lambda t: None if t is None else t.float().contiguous()  # noqa: E731
    ptrs = dict(u=u, delta=delta, A=f32(A), D=f32(D), bias=f32(delta_bias), z=z,
                idx=_idx(index))
    for X, name in ((B, "B"), (C, "C")):
        i, p = _bc(X, name)
        ints.update(i)
        ptrs.update(p)
    if z is not None:
        ints.update(_strides(z, "z", True))
    if dt_weight is not None:  # delta is the dt projection's input x (G, batch, L, R): the kernel makes x W^T
        R = dt_weight.shape[-1]
        if (N != 16 or B.dim() == 2 or C.dim() == 2 or R < 1 or tuple(dt_weight.shape) != (G, Dg, R)
                or delta.shape[-1] != R):
            raise ValueError(f"scan_cpu: the dt projection inside needs N = 16, variable B and C, dt_weight "
                             f"({G}, {Dg}, R) and delta (..., R); got N={N}, dt_weight {tuple(dt_weight.shape)}, "
                             f"delta {tuple(delta.shape)}")
        ints["r"] = R
        ptrs["wdt"] = dt_weight.detach().float().transpose(1, 2).contiguous()  # (G, R, Dg): rows of lanes
    return ints, ptrs


def _raster_like(x: Tensor) -> Tensor:
    """A fresh (G, batch, L, Dg) tensor laid out like x: group stride 0 (shared) stays shared."""
    G, batch, L, Dg = x.shape
    if x.stride(0) == 0 and G > 1:
        return x.new_empty(batch, L, Dg).unsqueeze(0).expand(G, -1, -1, -1)
    return x.new_empty(G, batch, L, Dg)


def fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
        delta_bias: Optional[Tensor], index: Optional[Tensor], softplus: bool, out: Tensor,
        chunk: int = DEFAULT_CHUNK, want_last: bool = True, save: bool = True,
        scale: float = 1.0, dt_weight: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Writes out (a (G, batch, L, Dg) view of u's dtype, group stride 0 = groups summed, times `scale`); returns
    (out, last, ckpt) with last (batch, G * Dg, N) float32 and ckpt (n_chunks, batch, G, N, Dg) float32, the states
    the backward restarts from (None with save=False: inference). With dt_weight (G, Dg, R), delta is the dt
    projection's input x (G, batch, L, R) and the kernel makes delta = x dt_weight^T itself (the mixer's form)."""
    ints, ptrs = _setup(u, delta, A, B, C, D, z, delta_bias, index, softplus, chunk, scale, dt_weight)
    G, batch, L, Dg = u.shape
    N = A.shape[1]
    if out.dtype != u.dtype:
        raise ValueError(f"scan_cpu: out has dtype {out.dtype} but u has {u.dtype}")
    ints.update(_strides(out, "o"))
    ckpt = u.new_empty(-(-L // chunk), batch, G, N, Dg, dtype=torch.float32) if save else None
    last = u.new_empty(batch, G * Dg, N, dtype=torch.float32) if want_last else None
    ptrs.update(out=out, ckpt=ckpt, last=last)
    cpu_kernel._call("armv_scan_fwd", ints, ptrs)
    return out, last, ckpt


def bwd(u, delta, A, B, C, D, z, delta_bias, index, softplus, ckpt, dout, dlast, chunk: int = DEFAULT_CHUNK,
        scale: float = 1.0, dt_weight: Optional[Tensor] = None):
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias): du, ddelta (G, batch, L, Dg) contiguous and dz laid
    out like z, in u's dtype; dB / dC float32, (G, batch, L, N) for variable forms (a permuted view), (G * Dg, N) for
    constants; dA, dD, ddelta_bias float32. With dt_weight (see fwd), ddelta is the gradient of the delta made
    inside, (G, batch, L, Dg): the projection's own gradients are the caller's (two matmuls)."""
    ints, ptrs = _setup(u, delta, A, B, C, D, z, delta_bias, index, softplus, chunk, scale, dt_weight)
    G, batch, L, Dg = u.shape
    N, CH = A.shape[1], G * Dg
    if dout.dtype != u.dtype:
        raise ValueError(f"scan_cpu: dout has dtype {dout.dtype} but u has {u.dtype}")
    ints.update(_strides(dout, "o", True))
    du, ddelta = u.new_empty(G, batch, L, Dg), u.new_empty(G, batch, L, Dg)
    ints.update(_strides(du, "du"), **_strides(ddelta, "dd"))
    dz = None if z is None else _raster_like(z)
    if dz is not None:
        ints.update(_strides(dz, "dz"))

    f32 = dict(dtype=torch.float32)

    def grad(X):
        return u.new_empty(CH, N, **f32) if X.dim() == 2 else u.new_empty(batch, G, L, N, **f32)

    dB, dC = grad(B), grad(C)
    ptrs.update(ckpt=ckpt, dout=dout, dlast=None if dlast is None else dlast.float().contiguous(), du=du,
                ddelta=ddelta, dz=dz, dB=dB, dC=dC, dA=u.new_empty(CH, N, **f32),
                dD=None if D is None else u.new_empty(CH, **f32),
                dbias=None if delta_bias is None else u.new_empty(CH, **f32))
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
                x_sb=x.stride(0), x_st=x.stride(1), dt=_code(x, "x"))


def _idx(index: Optional[Tensor]) -> Optional[Tensor]:
    """The (G, L) order as the kernels read it: int32, contiguous."""
    return None if index is None else index.to(torch.int32).contiguous()


def conv_fwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], index: Optional[Tensor]) -> Tensor:
    """x (batch, L, Dg) float32 or bfloat16 (channels contiguous), weight (G * Dg, K), bias (G * Dg,), index (G, L)
    int32 or None -> u (G, batch, L, Dg) in x's dtype: silu of the causal conv of x visited in each group's order."""
    G = weight.shape[0] // x.shape[2]
    u = x.new_empty(G, *x.shape)
    cpu_kernel._call("armv_conv_fwd", _conv_ints(x, weight, G),
                     dict(x=x, w=weight.float().contiguous(), bias=None if bias is None else bias.float().contiguous(),
                          idx=_idx(index), u=u))
    return u


def conv_bwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], index: Optional[Tensor], du: Tensor):
    """Gradients (dx (batch, L, Dg) in x's dtype, dweight (G * Dg, K), dbias (G * Dg,) float32) of conv_fwd given du
    (G, batch, L, Dg) of x's dtype."""
    G = weight.shape[0] // x.shape[2]
    batch, L, Dg = x.shape
    K = weight.shape[1]
    f32 = dict(dtype=torch.float32)
    dx, dw, db = x.new_empty(batch, L, Dg), x.new_empty(G * Dg, K, **f32), x.new_empty(G * Dg, **f32)
    cpu_kernel._call("armv_conv_bwd", _conv_ints(x, weight, G),
                     dict(x=x, w=weight.float().contiguous(), bias=None if bias is None else bias.float().contiguous(),
                          idx=_idx(index), du=du.to(x.dtype).contiguous(), dx=dx,
                          dwp=x.new_empty(batch * G * Dg * K, **f32),
                          dbp=x.new_empty(batch * G * Dg, **f32), dw=dw, db=db))
    return dx, dw, db


# ---------------------------------------------------------------------------------------------------------
# The SwiGLU gate silu(a + ba) * (b + bb), elementwise with per-column biases (one pass forward, one backward)
# ---------------------------------------------------------------------------------------------------------
def _gate_ints(a: Tensor) -> dict:
    cols = a.shape[-1] if a.dim() else 1
    return dict(rows=a.numel() // max(cols, 1), cols=cols, dt=_code(a, "a"), threads=cpu_kernel.threads())


def _bias(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.float().contiguous()


def gate_fwd(a: Tensor, b: Tensor, ba: Optional[Tensor] = None, bb: Optional[Tensor] = None) -> Tensor:
    """silu(a + ba) * (b + bb) for contiguous a, b of one dtype (float32 or bfloat16), biases over the last dim."""
    out = torch.empty_like(a)
    cpu_kernel._call("armv_gate_fwd", _gate_ints(a), dict(a=a, b=b, ba=_bias(ba), bb=_bias(bb), out=out))
    return out


def gate_bwd(a: Tensor, b: Tensor, ba: Optional[Tensor], bb: Optional[Tensor], dout: Tensor) -> Tuple[Tensor, Tensor]:
    """The gradients with respect to (a + ba) and (b + bb) of silu(a + ba) * (b + bb), given dout."""
    da, db = torch.empty_like(a), torch.empty_like(b)
    cpu_kernel._call("armv_gate_bwd", _gate_ints(a), dict(a=a, b=b, ba=_bias(ba), bb=_bias(bb),
                                                          dout=dout.to(a.dtype).contiguous(), da=da, db=db))
    return da, db
