"""Fast pure-PyTorch selective scan: chunked, vectorised inside each chunk, recomputed in backward.

Recurrence (per batch b, channel d, state n), with dt = softplus(delta + delta_bias) or delta + delta_bias:
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t,      y_t = sum_n C_t * h_t,
    out = (y + D * u) * silu(z).
The sequence is cut into chunks of length T, the batch into tiles of a few rows (so that one tile's
(rows, T, D, N) intermediates stay around a MiB, cache-sized). Inside a chunk, with S_t = dt_1 + ... + dt_t
(S_0 = 0) and E_t = exp(S_t * A) (the decay from step 0 to step t), the scan is closed-form:
    h_t = E_t * Q_t,   Q_t = a_0 * h_in + cumsum_k(x_k / E_k),   a_0 = exp(dt_0 * A),  x_k = dt_k * u_k * B_k.
The decays E_k / E_t are exact products of the per-step decays; dividing by E_k is safe as long as |S_t * A|
stays well inside the float range, so every chunk is checked and split in halves where it would not
(down to single steps, which need no division). Forward keeps only the chunk-boundary states (batch, D, N);
backward recomputes each chunk and runs the adjoint g_t = C_t * gy_t + a_{t+1} * g_{t+1} the same way
(a reverse cumulative sum of E_k * c_k, divided by E_t).

With compile=True (default: environment variable ARMVISION_SCAN_COMPILE, see armvision.env) the chunk kernels
are replaced by step-by-step versions compiled by torch.compile (inductor fuses each chunk into a few C++/Triton
loops); the first call compiles (tens of seconds), later calls with the same shapes reuse it. Off by default.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import env

DEFAULT_CHUNK = {False: 32, True: 16}  # eager / compiled (compile time grows with the unrolled chunk)
# Largest |S_t * A| allowed inside one chunk: exp(+-60) ~ 1e26 keeps x / E and E * (...) far from overflow
# in float32 (float64 has room for much more).
LOG_SPAN_LIMIT = {torch.float32: 60.0, torch.float64: 600.0}


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------------------
# Chunk kernels (pure tensor functions, no autograd; optionally torch.compile'd). One tile = a few batch rows
# by one chunk. Shapes: u, delta, z: (b, T, D); A: (D, N); Bm, Cm: (b, T, N); h0, G: (b, D, N); Dv, bias: (D,).
# ---------------------------------------------------------------------------------------------------------
def _dt(delta: Tensor, delta_bias: Optional[Tensor], softplus: bool) -> Tuple[Tensor, Tensor]:
    raw = delta if delta_bias is None else delta + delta_bias
    return (F.softplus(raw) if softplus else raw), raw


_TRI: dict = {}


def _cumsum_t(X: Tensor, reverse: bool = False) -> Tensor:
    """(Reverse) cumulative sum over dim 1 of X (b, T, D, N), as one matmul with a triangular matrix of ones:
    on CPU several times faster than torch.cumsum over a strided dim (and no flips for the reverse)."""
    b, T = X.shape[:2]
    key = (T, reverse, X.dtype, X.device)
    if key not in _TRI:
        ones = torch.ones(T, T, dtype=X.dtype, device=X.device)
        _TRI[key] = torch.triu(ones) if reverse else torch.tril(ones)
    return torch.matmul(_TRI[key], X.reshape(b, T, -1)).view(X.shape)


def _chunk_states(u: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, h0: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Scaled states Q (b, T, D, N) of one chunk, such that h_t = E_t * Q_t, the decays E, and a0 * h0 (b, D, N)."""
    hs = torch.exp(dt[:, 0, :, None] * A) * h0  # (b, D, N): h0 carried over the first step
    S = torch.cumsum(dt, dim=1) - dt[:, :1]  # (b, T, D), S_0 = 0
    E = torch.mul(S[..., None], A).exp_()  # (b, T, D, N)
    Q = (dt * u)[..., None] * Bm[:, :, None, :]  # (b, T, D, N): the inputs x_t
    Q.div_(E)
    Q[:, 0] += hs  # E_0 = 1
    return _cumsum_t(Q), E, hs


def chunk_forward(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor, Dv: Optional[Tensor],
                  z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool) -> Tuple[Tensor, Tensor]:
    """out (b, T, D) and the last state (b, D, N) of one tile."""
    dt, _ = _dt(delta, delta_bias, softplus)
    Q, E, _ = _chunk_states(u, dt, A, Bm, h0)
    h = Q.mul_(E)  # (b, T, D, N)
    y = torch.einsum("btdn,btn->btd", h, Cm)  # (b, T, D)
    if Dv is not None:
        y = y + u * Dv
    if z is not None:
        y = y * F.silu(z)
    return y, h[:, -1].clone()


def chunk_backward(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor, Dv: Optional[Tensor],
                   z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool, gout: Tensor, G: Tensor):
    """Gradients of one tile given gout = dL/dout (b, T, D) and G = dL/dh_last from later chunks (b, D, N).

    Returns du, ddelta, dz (b, T, D); dB, dC (b, T, N); dA (D, N); dD, ddelta_bias (D,); dh0 (b, D, N).
    """
    dt, raw = _dt(delta, delta_bias, softplus)
    Q, E, hs = _chunk_states(u, dt, A, Bm, h0)
    h = Q * E  # (b, T, D, N)
    gy, dz, dD = gout, None, None
    if z is not None:  # out = pre * silu(z), pre = y + D u
        pre = torch.einsum("btdn,btn->btd", h, Cm)
        if Dv is not None:
            pre = pre + u * Dv
        sig = torch.sigmoid(z)
        dz = gout * pre * sig * (1 + z * (1 - sig))
        gy = gout * z * sig
    c = gy[..., None] * Cm[:, :, None, :]  # (b, T, D, N): direct gradient into h_t
    c[:, -1] += G
    # R_t = sum_{k>=t} E_k c_k (reverse cumulative sum); the adjoint state is g_t = R_t / E_t
    R = _cumsum_t(c.mul_(E), reverse=True)
    g = R / E
    # q_t = dL/d(log-decay of step t) = g_t * a_t * h_{t-1} = R_t * Q_{t-1} (Q_{-1} = hs): no cancellation
    q = R
    q[:, 1:] *= Q[:, :-1]
    q[:, 0] *= hs
    dC = torch.matmul(gy[:, :, None, :], h)[:, :, 0]  # (b, T, N)
    dB = torch.matmul((dt * u)[:, :, None, :], g)[:, :, 0]  # (b, T, N)
    dv = torch.einsum("btdn,btn->btd", g, Bm)  # (b, T, D)
    ddt = (q * A).sum(-1) + dv * u
    du = dv * dt
    if Dv is not None:
        du = du + gy * Dv
        dD = (gy * u).sum((0, 1))
    dA = (q * dt[..., None]).sum((0, 1))  # (D, N)
    ddelta = ddt * torch.sigmoid(raw) if softplus else ddt
    ddb = None if delta_bias is None else ddelta.sum((0, 1))
    return du, ddelta, dz, dB, dC, dA, dD, ddb, g[:, 0] * torch.exp(dt[:, 0, :, None] * A)


def chunk_forward_seq(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor, Dv: Optional[Tensor],
                      z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool) -> Tuple[Tensor, Tensor]:
    """chunk_forward one step at a time: slow in eager, but torch.compile fuses it into a few loops over (b, D, N)
    with the whole chunk in registers, and it needs no division by decays."""
    dt, _ = _dt(delta, delta_bias, softplus)
    h = h0
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[..., None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)  # (b, T, D)
    if Dv is not None:
        y = y + u * Dv
    if z is not None:
        y = y * F.silu(z)
    return y, h


def chunk_backward_seq(u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor,
                       Dv: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor], softplus: bool,
                       gout: Tensor, G: Tensor):
    """chunk_backward one step at a time (for torch.compile): recompute the states, then run the adjoint
    g_t = c_t + a_{t+1} g_{t+1} backwards. Same returns as chunk_backward."""
    dt, raw = _dt(delta, delta_bias, softplus)
    T = u.shape[1]
    v = dt * u
    hs, ys, decays = [h0], [], []  # states h_{t-1} (hs[0] = h0), outputs, per-step decays a_t
    for t in range(T):
        a = torch.exp(dt[:, t, :, None] * A)
        decays.append(a)
        hs.append(a * hs[-1] + v[:, t, :, None] * Bm[:, t, None, :])
        ys.append((hs[-1] * Cm[:, t, None, :]).sum(-1))
    gy, dz, dD = gout, None, None
    if z is not None:
        pre = torch.stack(ys, dim=1)
        if Dv is not None:
            pre = pre + u * Dv
        sig = torch.sigmoid(z)
        dz = gout * pre * sig * (1 + z * (1 - sig))
        gy = gout * z * sig
    g = G
    dA = torch.zeros_like(A)
    dBs, dCs, dvs, ddts = [None] * T, [None] * T, [None] * T, [None] * T
    for t in range(T - 1, -1, -1):
        g = g + gy[:, t, :, None] * Cm[:, t, None, :]
        dCs[t] = (gy[:, t, :, None] * hs[t + 1]).sum(1)
        dBs[t] = (g * v[:, t, :, None]).sum(1)
        dvs[t] = (g * Bm[:, t, None, :]).sum(-1)
        q = g * decays[t] * hs[t]  # dL/d(dt_t * A)
        ddts[t] = (q * A).sum(-1)
        dA = dA + (q * dt[:, t, :, None]).sum(0)
        g = g * decays[t]
    dv = torch.stack(dvs, 1)
    ddt = torch.stack(ddts, 1) + dv * u
    du = dv * dt
    if Dv is not None:
        du = du + gy * Dv
        dD = (gy * u).sum((0, 1))
    ddelta = ddt * torch.sigmoid(raw) if softplus else ddt
    ddb = None if delta_bias is None else ddelta.sum((0, 1))
    return du, ddelta, dz, torch.stack(dBs, 1), torch.stack(dCs, 1), dA, dD, ddb, g


_COMPILED: dict = {}


def _compiled() -> Tuple[Callable, Callable]:
    if not _COMPILED:
        _COMPILED["fwd"] = torch.compile(chunk_forward_seq, dynamic=False)
        _COMPILED["bwd"] = torch.compile(chunk_backward_seq, dynamic=False)
    return _COMPILED["fwd"], _COMPILED["bwd"]


def compile_enabled(flag: Optional[bool] = None) -> bool:
    """torch.compile of the chunk kernels: the argument, else the environment's default (off)."""
    return bool(flag) if flag is not None else env.scan_compile()


# ---------------------------------------------------------------------------------------------------------
# Chunk planning: fixed chunks, split where the log-decay span would be unsafe
# ---------------------------------------------------------------------------------------------------------
def plan_chunks(dt: Tensor, A: Tensor, chunk: int) -> List[Tuple[int, int]]:
    """[start, end) chunks over dt (b, D, L) such that max |S_t * A| <= LOG_SPAN_LIMIT inside each chunk."""
    L = dt.shape[-1]
    limit = LOG_SPAN_LIMIT[dt.dtype]
    max_a = float(A.detach().abs().max()) if A.numel() else 0.0
    bounds = [(s, min(s + chunk, L)) for s in range(0, L, chunk)]
    if max_a == 0.0:
        return bounds
    spans = _spans(dt, chunk) * max_a
    out: List[Tuple[int, int]] = []
    for (s, e), span in zip(bounds, spans.tolist()):
        _split(dt, max_a, limit, s, e, span, out)
    return out


def _spans(dt: Tensor, chunk: int) -> Tensor:
    """max over (b, D, t) of |S_t| for each fixed chunk: (n_chunks,)."""
    b, D, L = dt.shape
    n = -(-L // chunk)
    d = F.pad(dt.detach(), (0, n * chunk - L)).reshape(b, D, n, chunk)
    if chunk == 1:
        return dt.new_zeros(n)
    return torch.cumsum(d[..., 1:], dim=-1).abs().amax(dim=(0, 1, 3))


def _split(dt: Tensor, max_a: float, limit: float, s: int, e: int, span: float,
           out: List[Tuple[int, int]]) -> None:
    if e - s <= 1 or span <= limit:
        out.append((s, e))
        return
    m = (s + e) // 2
    for a, b in ((s, m), (m, e)):
        span_ab = float(torch.cumsum(dt[..., a + 1:b].detach(), dim=-1).abs().max()) * max_a if b - a > 1 else 0.0
        _split(dt, max_a, limit, a, b, span_ab, out)


# ---------------------------------------------------------------------------------------------------------
# Autograd function: loops over batch tiles and chunks; keeps only the chunk-boundary states
# ---------------------------------------------------------------------------------------------------------
# Target size of one tile's (rows, T, D, N) intermediates: ~1 MiB in float32 (cache-sized) for the eager
# kernels; the compiled ones keep a chunk in registers and prefer fewer, larger tiles.
TILE_ELEMENTS = 1 << 18
TILE_ELEMENTS_COMPILED = 1 << 20


def _batch_tile(batch: int, per_row: int, compiled: bool) -> int:
    """Batch rows per tile: a divisor of batch (so all tiles share one shape) near the target size."""
    target = max(1, (TILE_ELEMENTS_COMPILED if compiled else TILE_ELEMENTS) // per_row)
    return max(d for d in range(1, min(batch, target) + 1) if batch % d == 0)


def _tile(t: Optional[Tensor], b0: int, b1: int, s: int, e: int, cd: torch.dtype) -> Optional[Tensor]:
    """(b, C, L) -> contiguous (b1 - b0, e - s, C) in the compute dtype."""
    return None if t is None else t[b0:b1, :, s:e].transpose(1, 2).to(cd).contiguous()


class SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state, chunk, compile_):
        cd = _compute_dtype(u.dtype)
        batch, Dm, L = u.shape
        N = A.shape[1]
        Ac = A.to(cd).contiguous()
        Dc = None if D is None else D.to(cd)
        bias = None if delta_bias is None else delta_bias.to(cd)
        # Transpose whole inputs once to time-major (b, L, C): a few (b, L, D) buffers, freed after forward
        # (backward slices them tile by tile instead; its gradients already take that room).
        with torch.no_grad():
            dt, _ = _dt(delta.to(cd), None if bias is None else bias[:, None], softplus)  # (b, D, L)
            chunks = plan_chunks(dt, Ac, chunk)
        dtT, uT, BT, CT = (t.to(cd).transpose(1, 2).contiguous() for t in (dt, u, B, C))  # (b, L, D|N)
        zT = None if z is None else z.to(cd).transpose(1, 2).contiguous()
        del dt
        bt = _batch_tile(batch, chunk * Dm * N, compile_)
        kernels = _compiled() if compile_ else None
        outT = torch.empty_like(uT)  # (b, L, D)
        states = u.new_empty(len(chunks), batch, Dm, N, dtype=cd)
        last = u.new_empty(batch, Dm, N, dtype=cd)
        for b0 in range(0, batch, bt):
            b1 = min(batch, b0 + bt)
            h = u.new_zeros(b1 - b0, Dm, N, dtype=cd)
            for i, (s, e) in enumerate(chunks):
                states[i, b0:b1] = h
                fwd = kernels[0] if kernels and e - s == chunk else chunk_forward
                outT[b0:b1, s:e], h = fwd(uT[b0:b1, s:e], dtT[b0:b1, s:e], Ac, BT[b0:b1, s:e], CT[b0:b1, s:e], h,
                                          None, None, None, False)  # dt given; D and z applied below, at once
            last[b0:b1] = h
        if Dc is not None:
            outT += uT * Dc
        if zT is not None:
            outT *= F.silu(zT)
        out = outT.transpose(1, 2).to(u.dtype).contiguous()  # (b, D, L)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.meta = (softplus, chunks, chunk, bt, compile_)
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        softplus, chunks, chunk, bt, compile_ = ctx.meta
        cd = _compute_dtype(u.dtype)
        batch, Dm, L = u.shape
        Ac = A.to(cd).contiguous()
        Dc = None if D is None else D.to(cd)
        bias = None if delta_bias is None else delta_bias.to(cd)
        kernels = _compiled() if compile_ else None
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dB, dC = torch.empty_like(B), torch.empty_like(C)
        dz = None if z is None else torch.empty_like(z)
        dA = torch.zeros_like(Ac)
        dD = None if D is None else torch.zeros_like(Dc)
        ddb = None if delta_bias is None else torch.zeros_like(bias)
        for b0 in range(0, batch, bt):
            b1 = min(batch, b0 + bt)
            G = glast[b0:b1].to(cd) if glast is not None else u.new_zeros(b1 - b0, Dm, A.shape[1], dtype=cd)
            for i in range(len(chunks) - 1, -1, -1):
                s, e = chunks[i]
                bwd = kernels[1] if kernels and e - s == chunk else chunk_backward
                r = bwd(_tile(u, b0, b1, s, e, cd), _tile(delta, b0, b1, s, e, cd), Ac, _tile(B, b0, b1, s, e, cd),
                        _tile(C, b0, b1, s, e, cd), states[i, b0:b1], Dc, _tile(z, b0, b1, s, e, cd), bias,
                        softplus, _tile(gout, b0, b1, s, e, cd), G)
                du_t, dd_t, dz_t, dB_t, dC_t, dA_t, dD_t, ddb_t, G = r
                du[b0:b1, :, s:e] = du_t.transpose(1, 2)
                ddelta[b0:b1, :, s:e] = dd_t.transpose(1, 2)
                dB[b0:b1, :, s:e] = dB_t.transpose(1, 2)
                dC[b0:b1, :, s:e] = dC_t.transpose(1, 2)
                dA += dA_t
                if z is not None:
                    dz[b0:b1, :, s:e] = dz_t.transpose(1, 2)
                if D is not None:
                    dD += dD_t
                if delta_bias is not None:
                    ddb += ddb_t
        return (du, ddelta, dA.to(A.dtype), dB, dC, None if D is None else dD.to(D.dtype), dz,
                None if delta_bias is None else ddb.to(delta_bias.dtype), None, None, None, None)


def selective_scan_torch(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
    z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
    return_last_state: bool = False, *, chunk_size: Optional[int] = None, compile: Optional[bool] = None,
):
    """Chunked selective scan in plain PyTorch (see module docstring). Inputs are not validated here."""
    compile_ = compile_enabled(compile)
    chunk = DEFAULT_CHUNK[compile_] if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk_size must be >= 1, got {chunk_size}")
    out, last = SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                      bool(return_last_state), chunk, compile_)
    return (out, last) if return_last_state else out
