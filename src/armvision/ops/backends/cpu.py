"""The "cpu" room: the fused C kernel (csrc/, built and loaded by cpu_kernel.py, called through scan_cpu.py) on CPU
tensors, float32 compute.

Single scan: mamba_ssm's (batch, D, L) form viewed as the kernel's (G, batch, L, Dg) groups (G = the B/C groups);
saved = the kernel's chunk-boundary states (n_chunks, batch, G, N, Dg). Multi-direction scan: the mixer's G
directions as G groups of one kernel call, each in its own order (index), sharing the gate z and summing into one
output. Conv: the mixer's depthwise causal conv + SiLU in every direction's order, channels-last. The single conv
has no kernel here (the API uses "torch"'s).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import cpu_kernel, scan_cpu
from ._common import no_grad as _no_grad, state_dtype as _state_dtype


def unavailable_reason() -> Optional[str]:
    """Why the kernel cannot run here (no compiler, build failed, disabled), or None when it can."""
    return None if cpu_kernel.load() is not None else cpu_kernel.unavailable_reason()



# ---------------------------------------------------------------------------------------------------------
# Layouts: mamba_ssm's (batch, D, L) form <-> the kernel's (G, batch, L, Dg) views
# ---------------------------------------------------------------------------------------------------------
def _groups(B: Tensor, C: Tensor) -> int:
    gb = B.shape[1] if B.dim() == 4 else 1
    gc = C.shape[1] if C.dim() == 4 else 1
    return gb * gc // math.gcd(gb, gc)


def _seq4(x: Tensor, G: int) -> Tensor:
    """(batch, D, L) -> (G, batch, L, D/G) view, never a copy: the kernel reads channels at any stride (mamba_ssm's
    contiguous (batch, D, L) has them L apart)."""
    return x.transpose(1, 2).unflatten(2, (G, x.shape[1] // G)).permute(2, 0, 1, 3)


def _bc4(X: Tensor, G: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """B or C -> (G, batch, L, N) view in `dtype`, or the (D, N) constant (read as float32)."""
    if X.dim() == 2:
        return X
    X = X.to(dtype)
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



# ---------------------------------------------------------------------------------------------------------
# Single scan
# ---------------------------------------------------------------------------------------------------------
KEEPS_STATE = True
DT_PROJECTION = True
scan = None


def _var_bc_dtype(B: Tensor, C: Tensor) -> torch.dtype:
    """bfloat16 where every variable-form B / C is bfloat16 (read as it is), else float32."""
    var = [X for X in (B, C) if X.dim() != 2]
    return torch.bfloat16 if var and all(X.dtype == torch.bfloat16 for X in var) else torch.float32


def _seqs(G: int, act: torch.dtype, *ts: Optional[Tensor]) -> List[Optional[Tensor]]:
    return [None if t is None else _seq4(t.to(act), G) for t in ts]


def scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
    """One kernel call over the whole batch on the tensors as they are (no layout copies); out is written
    channels-last and returned as a (batch, D, L) view."""
    batch, dim, L = u.shape
    G, act = _groups(B, C), _act(u, delta, z)
    out = torch.empty(batch, L, dim, dtype=act)
    su, sd, sz = _seqs(G, act, u, delta, z)
    bcd = _var_bc_dtype(B, C)
    _, last, ckpt = scan_cpu.fwd(su, sd, A, _bc4(B, G, bcd), _bc4(C, G, bcd), D, sz, delta_bias, None, softplus,
                                 out.view(batch, L, G, dim // G).permute(2, 0, 1, 3))
    return out.transpose(1, 2).to(u.dtype), last, ckpt


def scan_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, saved, dout, dlast) -> List[Tensor]:
    G, act = _groups(B, C), _act(u, delta, z)
    su, sd, sz, sdo = _seqs(G, act, u, delta, z, dout)
    bcd = _var_bc_dtype(B, C)
    du, ddelta, dA, dB, dC, dD, dz, ddb = scan_cpu.bwd(su, sd, A, _bc4(B, G, bcd), _bc4(C, G, bcd), D, sz,
                                                       delta_bias, None, softplus, saved, sdo, dlast)
    return [_from4(du, u), _from4(ddelta, delta), dA.to(A.dtype), _bc_grad(dB, B), _bc_grad(dC, C),
            _no_grad(u) if D is None else dD.to(D.dtype), _no_grad(u) if z is None else _from4(dz, z),
            _no_grad(u) if delta_bias is None else ddb.to(delta_bias.dtype)]


def scan_meta(u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Fake (out, last, saved) of scan_fwd: out is a channels-last view, as the kernel writes it; saved is laid out
    (n_chunks, batch, G, N, Dg)."""
    batch, dim, L = u.shape
    N, G, chunks = A.shape[1], _groups(B, C), -(-L // scan_cpu.DEFAULT_CHUNK)
    return (u.new_empty(batch, L, dim).transpose(1, 2), u.new_empty(batch, dim, N, dtype=_state_dtype(u)),
            u.new_empty(chunks, batch, G, N, dim // G, dtype=torch.float32))


def seq_grad_meta(t: Tensor) -> Tensor:
    """Fake gradient of a (batch, D, L) input: channels-last, as `_from4` returns it."""
    return t.new_empty(t.shape[0], t.shape[2], t.shape[1]).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------------
# Multi-direction scan: (G, batch, L, Dg) scan-order u / delta, B / C views, z and out shared over directions
# (batch, L, Dg) in raster order, index (G, L) = raster position of each direction's step
# ---------------------------------------------------------------------------------------------------------
def directions_wanted(on_cuda: bool) -> bool:
    """The kernel always runs all of the mixer's directions in one call."""
    return True


def _act(*ts: Optional[Tensor]) -> torch.dtype:
    """The dtype the kernel reads and writes sequence tensors in: float32 or bfloat16 when every one of `ts` has it,
    float32 otherwise (a mix is promoted, never rounded down)."""
    dtypes = {t.dtype for t in ts if t is not None}
    return dtypes.pop() if len(dtypes) == 1 and next(iter(dtypes)) in scan_cpu.DTYPES else torch.float32


def check_order(p: str, index: Optional[Tensor], L: int) -> None:
    """The kernels write step t of direction g at position index[g, t]: each row must be a permutation of 0..L-1
    (out-of-range or repeated positions would write outside the output or leave rows unwritten)."""
    if index is None:
        return
    want = torch.arange(L, device=index.device)
    if not bool((index.long().sort(-1).values == want).all()):
        raise ValueError(f"{p}: each row of index must be a permutation of 0..{L - 1} (the order of one direction)")


def directions_fwd(u, delta, A, B, C, D, z, delta_bias, index, scale: float, save: bool,
                   dt_weight: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """out (batch, L, Dg) = scale * silu(z) * sum_g scan_g (softplus dt), in u's dtype; and the states the backward
    restarts from (empty with save=False). float32 and bfloat16 are read and written as they are (no copies), other
    dtypes through float32. With dt_weight (G, Dg, R), delta is the dt projection's input (G, batch, L, R) and the
    kernel makes delta = delta dt_weight^T block by block (scan_common.h, project_rows)."""
    G, batch, L, Dg = u.shape
    check_order("selective_scan_directions", index, L)
    act, bcd = _act(u, delta, z), _var_bc_dtype(B, C)
    out = torch.empty(batch, L, Dg, dtype=act)
    z4 = z.to(act).unsqueeze(0).expand(G, -1, -1, -1)
    _, _, ckpt = scan_cpu.fwd(u.to(act), delta.to(act), A, B.to(bcd), C.to(bcd), D, z4, delta_bias, index, True,
                              out.unsqueeze(0).expand(G, -1, -1, -1), want_last=False, save=save, scale=scale,
                              dt_weight=dt_weight)
    return out.to(u.dtype), (ckpt if save else u.new_empty(0, dtype=torch.float32))


def directions_bwd(u, delta, A, B, C, D, z, delta_bias, index, scale: float, saved, dout,
                   dt_weight: Optional[Tensor] = None) -> List[Tensor]:
    """The eight gradients; with dt_weight, the second is that of the delta made inside ((G, batch, L, Dg))."""
    G = u.shape[0]
    act, bcd = _act(u, delta, z), _var_bc_dtype(B, C)
    z4 = z.to(act).unsqueeze(0).expand(G, -1, -1, -1)
    d4 = dout.to(act).contiguous().unsqueeze(0).expand(G, -1, -1, -1)
    du, ddelta, dA, dB, dC, dD, dz, ddb = scan_cpu.bwd(u.to(act), delta.to(act), A, B.to(bcd), C.to(bcd), D, z4,
                                                       delta_bias, index, True, saved, d4, None, scale=scale,
                                                       dt_weight=dt_weight)
    return [du.to(u.dtype), ddelta.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype), dz[0].to(z.dtype), ddb.to(delta_bias.dtype)]


def directions_meta(u: Tensor, A: Tensor, save: bool) -> Tuple[Tensor, Tensor]:
    G, batch, L, Dg = u.shape
    saved = ((-(-L // scan_cpu.DEFAULT_CHUNK), batch, G, A.shape[1], Dg) if save else (0,))
    return u.new_empty(batch, L, Dg), u.new_empty(saved, dtype=torch.float32)


def directions_grad_meta(u, delta, A, B, C, D, z, delta_bias) -> List[Tensor]:
    """dB / dC are (G, batch, L, N) views of contiguous (batch, G, L, N) tensors, as scan_cpu.bwd returns them;
    ddelta has u's shape (that of the delta made inside where delta is the dt projection's input)."""
    G, batch, L, Dg = u.shape
    return [u.new_empty(u.shape), delta.new_empty(u.shape), A.new_empty(A.shape),
            B.new_empty(batch, G, L, B.shape[-1]).transpose(0, 1),
            C.new_empty(batch, G, L, C.shape[-1]).transpose(0, 1), D.new_empty(D.shape),
            z.new_empty(z.shape), delta_bias.new_empty(delta_bias.shape)]


# ---------------------------------------------------------------------------------------------------------
# Conv: the single conv has no kernel here; the mixer's conv + SiLU in every direction's order, channels-last
# ---------------------------------------------------------------------------------------------------------
conv = None


def conv_directions_fwd(x: Tensor, weight: Tensor, bias: Tensor, index: Optional[Tensor]) -> Tensor:
    """float32 and bfloat16 x as given (u in x's dtype), other dtypes through float32; weights float32."""
    check_order("causal_conv1d_directions", index, x.shape[1])
    return scan_cpu.conv_fwd(x.to(_act(x)), weight, bias, index).to(x.dtype)


def conv_directions_bwd(x, weight, bias, index, du) -> Tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = scan_cpu.conv_bwd(x.to(_act(x)), weight, bias, index, du)
    return dx.to(x.dtype), dw.to(weight.dtype), db.to(bias.dtype)


# ---------------------------------------------------------------------------------------------------------
# The SwiGLU gate silu(a + ba) * (b + bb) in one pass (custom op armvision::silu_mul)
# ---------------------------------------------------------------------------------------------------------
def silu_mul_fwd(a: Tensor, b: Tensor, ba: Optional[Tensor], bb: Optional[Tensor]) -> Tensor:
    act = _act(a, b)
    return scan_cpu.gate_fwd(a.to(act).contiguous(), b.to(act).contiguous(), ba, bb).to(a.dtype)


def silu_mul_bwd(a: Tensor, b: Tensor, ba: Optional[Tensor], bb: Optional[Tensor],
                 dout: Tensor) -> Tuple[Tensor, Tensor]:
    act = _act(a, b)
    da, db = scan_cpu.gate_bwd(a.to(act).contiguous(), b.to(act).contiguous(), ba, bb, dout)
    return da.to(a.dtype), db.to(b.dtype)


# ---------------------------------------------------------------------------------------------------------
# The forward's loop order, timed once per built library (cpu_kernel.choose_fwd_order calls this)
# ---------------------------------------------------------------------------------------------------------
def time_fwd_orders(lib, rounds: int = 15) -> float:
    """Median over `rounds` interleaved rounds of the time with the blocks outside / with the steps outside
    (`armv_set_fwd_order(1 | 0)`), for a small mixer-shaped forward (4 directions, batch 4, 197 steps, 256
    channels, N 16, dt_proj of rank 48 inside, no grad), on one kernel thread, in this thread's CPU time."""
    import statistics
    import time

    g = torch.Generator().manual_seed(0)
    G, B, L, D, N, R = 4, 4, 197, 256, 16, 48
    u = torch.randn(G, B, L, D, generator=g)
    x = torch.randn(G, B * L, R + 2 * N, generator=g)
    dt_in, bm, cm = (x[..., a:b].view(G, B, L, b - a) for a, b in ((0, R), (R, R + N), (R + N, R + 2 * N)))
    A = -torch.rand(G * D, N, generator=g) * 4
    Dv, bias, z = torch.randn(G * D, generator=g), torch.randn(G * D, generator=g), torch.randn(B, L, D, generator=g)
    w = torch.randn(G, D, R, generator=g) / R
    ratios = []
    cpu_kernel._state["threads"] = 1  # the kernel's calls only; torch's own thread count is left alone
    try:
        for r in range(rounds + 1):
            took = {}
            for order in (0, 1) if r % 2 else (1, 0):
                lib.armv_set_fwd_order(order)
                t0 = time.thread_time()
                directions_fwd(u, dt_in, A, bm, cm, Dv, z, bias, None, 0.25, False, dt_weight=w)
                took[order] = time.thread_time() - t0
            if r:  # the first round warms up
                ratios.append(took[1] / max(took[0], 1e-9))
    finally:
        cpu_kernel._state.pop("threads", None)
    return statistics.median(ratios)


cpu_kernel.fwd_order_timer = time_fwd_orders
