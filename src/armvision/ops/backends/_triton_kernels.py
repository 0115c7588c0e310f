"""Triton kernels of the selective scan (imported lazily by `triton_scan`, only where triton is importable).

One program per (batch row, block of channels). The channel blocks never straddle a group of B or C (see
`triton_scan._layout`), so at each step B_t and C_t are one (N,) vector shared by the whole block. The state
(BLOCK_D, BLOCK_N) lives in registers and the program loops over time. Everything is computed in float32.

Forward: writes out, the last state, and the state before every chunk of CHUNK steps (the checkpoints).
Backward: chunks in reverse; per chunk, pass 1 recomputes the chunk's states from its checkpoint into a
program-private scratch buffer (CHUNK + 1 slots: the checkpoint, then h_t0 .. h_t1-1), pass 2 runs the adjoint
g_t = C_t gy_t + a_{t+1} g_{t+1} backwards over the chunk, reading h_{t-1} and h_t back from the scratch.
Reductions over channels (dB, dC of the time-varying forms) are written as per-program partials, reductions
over batch (dA, dD, ddelta_bias, dB / dC of the (D, N) form) as per-batch-row partials; the host sums them.
No atomics: the results are bitwise deterministic.

Layouts come as strides: sequence tensors are addressed as (batch, segment, channel-in-segment, time), with a
segment stride per tensor (the plain scan passes DSEG * its channel stride; the multi-direction scan of
`triton_directions` passes the direction stride of its (G, batch, L, Dg) tensors, one segment per direction, and 0
for the shared z / dout). With HAS_IDX, z, out, dout and dz are read / written at position idx[segment, t] instead
of t (the direction's scan order -> raster order); u, delta, du, ddelta, B, C stay in scan order.

The kernels are written as steps (`_channel_block`, `_bc_source`, `_load_dt`, `_advance`, `_readout`,
`_recompute_chunk`, `_adjoint_chunk`, ...), each a @triton.jit helper: Triton inlines them, so the arithmetic and
its order are those of one kernel body. A helper's constexpr flags (HAS_D, B_VARY, ...) select code at compile
time; values of absent inputs are zeros that no selected code reads.
"""
import triton
import triton.language as tl


@triton.jit
def _softplus(x):
    # torch.nn.functional.softplus (beta 1, threshold 20) with an accurate log1p
    e = tl.exp(x)
    w = 1.0 + e
    lp = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


# ---------------------------------------------------------------------------------------------------------
# Steps shared by the forward and backward kernels
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _channel_block(pid_c, N, DSEG, NBLK, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program pid_c's channels: its segment, their offsets in it (offs_j) and in D (offs_d), the state offsets
    (offs_n), and the masks of the ragged last block / padded state."""
    seg = pid_c // NBLK
    j = pid_c % NBLK
    offs_j = j * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_j < DSEG
    offs_d = seg * DSEG + offs_j
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    return seg, offs_j, offs_d, offs_n, mask_d, mask_n, mask_dn


@triton.jit
def _channel_vec(ptr, offs_d, mask_d, HAS: tl.constexpr, BLOCK_D: tl.constexpr):
    """A per-channel input (D or delta_bias) as (BLOCK_D,) fp32; zeros (never read) when it is absent."""
    if HAS:
        v = tl.load(ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    else:
        v = tl.zeros((BLOCK_D,), dtype=tl.float32)
    return v


@triton.jit
def _bc_source(X_ptr, pid_b, seg, s_b, s_g, s_n, DSEG, DPG, offs_d, offs_n, mask_dn, VARY: tl.constexpr):
    """B or C for this block: time-varying, the (BLOCK_N,) pointers of the block's group at t = 0; the (D, N)
    form (s_b is then the channel stride), the block's constant (BLOCK_D, BLOCK_N) fp32 tile."""
    if VARY:
        src = X_ptr + pid_b * s_b + ((seg * DSEG) // DPG) * s_g + offs_n * s_n
    else:
        src = tl.load(X_ptr + offs_d[:, None] * s_b + offs_n[None, :] * s_n, mask=mask_dn, other=0.0).to(tl.float32)
    return src


@triton.jit
def _block_constants(A_ptr, D_ptr, bias_ptr, B_ptr, C_ptr, pid_b, seg, offs_d, offs_n, mask_d, mask_dn, s_Ad, s_An,
                     s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn, DSEG, DPG_B, DPG_C, HAS_D: tl.constexpr,
                     HAS_BIAS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr, BLOCK_D: tl.constexpr):
    """What the block reads once: A (BLOCK_D, BLOCK_N) and D, delta_bias (BLOCK_D,) in fp32, and the sources of
    B and C (`_bc_source`)."""
    A = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn, other=0.0).to(tl.float32)
    Dv = _channel_vec(D_ptr, offs_d, mask_d, HAS_D, BLOCK_D)
    bias = _channel_vec(bias_ptr, offs_d, mask_d, HAS_BIAS, BLOCK_D)
    Bsrc = _bc_source(B_ptr, pid_b, seg, s_Bb, s_Bg, s_Bn, DSEG, DPG_B, offs_d, offs_n, mask_dn, B_VARY)
    Csrc = _bc_source(C_ptr, pid_b, seg, s_Cb, s_Cg, s_Cn, DSEG, DPG_C, offs_d, offs_n, mask_dn, C_VARY)
    return A, Dv, bias, Bsrc, Csrc


@triton.jit
def _bc_at(src, t, s_l, mask_n, VARY: tl.constexpr):
    """B_t or C_t from a `_bc_source`: a (1, BLOCK_N) fp32 row, or the constant tile."""
    if VARY:
        x = tl.load(src + t * s_l, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    else:
        x = src
    return x


@triton.jit
def _seq_ptrs(ptr, pid_b, s_b, seg64, s_seg, offs_j, s_d):
    """Pointers of a sequence tensor at batch row pid_b, this block's channels, time (or position) 0."""
    return ptr + pid_b * s_b + seg64 * s_seg + offs_j * s_d


@triton.jit
def _load_f32(ptrs, mask):
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_dt(dp, t, s_dl, mask_d, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Step t's raw = delta (+ delta_bias) and dt = softplus(raw) (or raw), fp32."""
    raw = tl.load(dp + t * s_dl, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    if SOFTPLUS:
        dt = _softplus(raw)
    else:
        dt = raw
    return raw, dt


@triton.jit
def _position(ip, t, HAS_IDX: tl.constexpr):
    """Where step t reads z (and dout) and writes out (and dz): idx[segment, t] with an index map, else t."""
    if HAS_IDX:
        p = tl.load(ip + t)
    else:
        p = t
    return p


@triton.jit
def _advance(h, dt, u, A, Bt):
    """One step of the recurrence: h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t."""
    return tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt


@triton.jit
def _readout(h, Ct, u, Dv, HAS_D: tl.constexpr):
    """The output before the gate: y_t = sum_n C_t h_t, plus D u_t."""
    y = tl.sum(h * Ct, axis=1)
    if HAS_D:
        y = y + Dv * u
    return y


# ---------------------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _scan_fwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, last_ptr, ckpt_ptr, idx_ptr,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl, s_ob, s_od, s_ol,
    s_ug, s_dg, s_zg, s_og, s_ig,  # segment strides (multi-direction: a direction's); plain scan: DSEG * channel stride
    s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Bl, s_Cb, s_Cg, s_Cn, s_Cl,  # time-varying forms; (D, N) form: s_Bb = s_Bd, s_Bn
    L, N, DSEG, NBLK, DPG_B, DPG_C, N_CHUNKS, BATCH, DIM,
    CHUNK, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, HAS_IDX: tl.constexpr = False,
):
    """Outputs: out (layout from the s_o* strides, out's dtype), the last state (batch, D, N) and the state before
    each chunk (n_chunks, batch, D, N), fp32."""
    pid_b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: tensors may exceed 2^31 elements
    seg, offs_j, offs_d, offs_n, mask_d, mask_n, mask_dn = _channel_block(tl.program_id(1), N, DSEG, NBLK,
                                                                          BLOCK_D, BLOCK_N)
    A, Dv, bias, Bsrc, Csrc = _block_constants(
        A_ptr, D_ptr, bias_ptr, B_ptr, C_ptr, pid_b, seg, offs_d, offs_n, mask_d, mask_dn, s_Ad, s_An,
        s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn, DSEG, DPG_B, DPG_C, HAS_D, HAS_BIAS, B_VARY, C_VARY, BLOCK_D)

    seg64 = seg.to(tl.int64)
    up = _seq_ptrs(u_ptr, pid_b, s_ub, seg64, s_ug, offs_j, s_ud)
    dp = _seq_ptrs(dl_ptr, pid_b, s_db, seg64, s_dg, offs_j, s_dd)
    zp = _seq_ptrs(z_ptr, pid_b, s_zb, seg64, s_zg, offs_j, s_zd)  # z and out: at position p (index map)
    op = _seq_ptrs(out_ptr, pid_b, s_ob, seg64, s_og, offs_j, s_od)
    ip = idx_ptr + seg64 * s_ig
    st_off = pid_b * DIM * N + offs_d[:, None] * N + offs_n[None, :]  # (batch, D, N) contiguous

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, N_CHUNKS):
        tl.store(ckpt_ptr + c * BATCH * DIM * N + st_off, h, mask=mask_dn)
        t0 = c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, L)
        for t in range(t0, t1):
            u = _load_f32(up + t * s_ul, mask_d)
            _, dt = _load_dt(dp, t, s_dl, mask_d, bias, HAS_BIAS, SOFTPLUS)
            Bt = _bc_at(Bsrc, t, s_Bl, mask_n, B_VARY)
            Ct = _bc_at(Csrc, t, s_Cl, mask_n, C_VARY)
            h = _advance(h, dt, u, A, Bt)
            y = _readout(h, Ct, u, Dv, HAS_D)
            p = _position(ip, t, HAS_IDX)
            if HAS_Z:
                zv = _load_f32(zp + p * s_zl, mask_d)
                y = y * zv * _sigmoid(zv)
            tl.store(op + p * s_ol, y.to(out_ptr.dtype.element_ty), mask=mask_d)
    tl.store(last_ptr + st_off, h, mask=mask_dn)


# ---------------------------------------------------------------------------------------------------------
# Backward: per chunk in reverse, pass 1 (`_recompute_chunk`) then pass 2 (`_adjoint_chunk`)
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _zero_sums(BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """The gradients summed over time, zero: dA, dB, dC (used by the (D, N) forms only), dD, ddelta_bias."""
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dB_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dC_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    return dA_acc, dB_acc, dC_acc, dD_acc, dbias_acc


@triton.jit
def _initial_adjoint(glast_ptrs, mask_dn, HAS_GLAST: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """The adjoint after the last step: the gradient of the last state, or zero."""
    if HAS_GLAST:
        g = tl.load(glast_ptrs, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    return g


@triton.jit
def _recompute_chunk(h, sp, t0, t1, up, dp, Bsrc, A, bias, s_ul, s_dl, s_Bl, mask_d, mask_n, mask_dn,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr,
                     BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pass 1: the states of steps t0 .. t1 - 1 from h (the chunk's checkpoint) into the scratch slots sp
    (slot 0 = the checkpoint, slot k + 1 = h_{t0 + k}); returns h_{t1 - 1}."""
    tl.store(sp, h, mask=mask_dn)
    for t in range(t0, t1):
        u = _load_f32(up + t * s_ul, mask_d)
        _, dt = _load_dt(dp, t, s_dl, mask_d, bias, HAS_BIAS, SOFTPLUS)
        Bt = _bc_at(Bsrc, t, s_Bl, mask_n, B_VARY)
        h = _advance(h, dt, u, A, Bt)
        tl.store(sp + (t - t0 + 1) * BLOCK_D * BLOCK_N, h, mask=mask_dn)
    return h


@triton.jit
def _gate_bwd(gy, zv, pre, dz_ptr, dz_off, mask_d):
    """Through out = pre * silu(z): stores dz at dz_ptr + dz_off, returns the gradient of pre."""
    sig = _sigmoid(zv)
    dz = gy * pre * sig * (1.0 + zv * (1.0 - sig))
    tl.store(dz_ptr + dz_off, dz.to(dz_ptr.dtype.element_ty), mask=mask_d)
    return gy * zv * sig


@triton.jit
def _dbc(part_ptrs, x, acc, mask_n, VARY: tl.constexpr):
    """The gradient x (BLOCK_D, BLOCK_N) of B_t or C_t: time-varying, its sum over the block's channels is stored
    as this program's partial at step t; the (D, N) form, it is summed over time into acc (returned)."""
    if VARY:
        tl.store(part_ptrs, tl.sum(x, axis=0), mask=mask_n)
    else:
        acc += x
    return acc


@triton.jit
def _adjoint_chunk(g, h, t0, t1, sp, up, dp, zp, gp, ip, go, part_off, Bsrc, Csrc, A, Dv, bias,
                   du_ptr, ddl_ptr, dz_ptr, dBp_ptr, dCp_ptr, dA_acc, dB_acc, dC_acc, dD_acc, dbias_acc,
                   s_ul, s_dl, s_zl, s_gl, s_xl, s_Bl, s_Cl, mask_d, mask_n, mask_dn,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                   B_VARY: tl.constexpr, C_VARY: tl.constexpr, HAS_IDX: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pass 2: the adjoint g_t = C_t gy_t + a_{t+1} g_{t+1} backwards over steps t1 - 1 .. t0, from g and
    h = h_{t1 - 1}, reading h_{t-1} back from the scratch slots. Stores du, ddelta, dz and the dB / dC partials
    of the time-varying forms; returns g and the sums over time (dA, dB, dC, dD, ddelta_bias)."""
    for tt in range(0, t1 - t0):
        t = t1 - 1 - tt
        u = _load_f32(up + t * s_ul, mask_d)
        raw, dt = _load_dt(dp, t, s_dl, mask_d, bias, HAS_BIAS, SOFTPLUS)
        Bt = _bc_at(Bsrc, t, s_Bl, mask_n, B_VARY)
        Ct = _bc_at(Csrc, t, s_Cl, mask_n, C_VARY)
        p = _position(ip, t, HAS_IDX)
        gy = _load_f32(gp + p * s_gl, mask_d)
        if HAS_Z:  # out = pre * silu(z), pre = y + D u
            zv = _load_f32(zp + p * s_zl, mask_d)
            gy = _gate_bwd(gy, zv, _readout(h, Ct, u, Dv, HAS_D), dz_ptr, go + p * s_xl, mask_d)
        # direct gradients of y_t = sum_n C_t h_t
        dC_acc = _dbc(dCp_ptr + part_off + t, gy[:, None] * h, dC_acc, mask_n, C_VARY)
        g = g + gy[:, None] * Ct
        h_prev = tl.load(sp + (t - t0) * BLOCK_D * BLOCK_N, mask=mask_dn, other=0.0)
        a = tl.exp(dt[:, None] * A)
        q = g * a * h_prev  # dL/d(dt_t A)
        v = dt * u
        dB_acc = _dbc(dBp_ptr + part_off + t, g * v[:, None], dB_acc, mask_n, B_VARY)
        dv = tl.sum(g * Bt, axis=1)
        ddt = tl.sum(q * A, axis=1) + dv * u
        dA_acc += q * dt[:, None]
        du = dv * dt
        if HAS_D:
            du = du + gy * Dv
            dD_acc += gy * u
        if SOFTPLUS:
            ddt = ddt * _sigmoid(raw)
        if HAS_BIAS:
            dbias_acc += ddt
        tl.store(du_ptr + go + t * s_xl, du.to(du_ptr.dtype.element_ty), mask=mask_d)
        tl.store(ddl_ptr + go + t * s_xl, ddt.to(ddl_ptr.dtype.element_ty), mask=mask_d)
        g = g * a
        h = h_prev
    return g, dA_acc, dB_acc, dC_acc, dD_acc, dbias_acc


@triton.jit
def _store_sums(dA_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr, st_off, vec_off, dA_acc, dB_acc, dC_acc, dD_acc,
                dbias_acc, mask_d, mask_dn, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, B_VARY: tl.constexpr,
                C_VARY: tl.constexpr):
    """The per-batch-row partials of the gradients summed over time (the host sums them over batch)."""
    tl.store(dA_ptr + st_off, dA_acc, mask=mask_dn)
    if not B_VARY:
        tl.store(dBp_ptr + st_off, dB_acc, mask=mask_dn)
    if not C_VARY:
        tl.store(dCp_ptr + st_off, dC_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dD_ptr + vec_off, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + vec_off, dbias_acc, mask=mask_d)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    ckpt_ptr, gout_ptr, glast_ptr, scratch_ptr,
    du_ptr, ddl_ptr, dz_ptr, dA_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr, idx_ptr,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl, s_gb, s_gd, s_gl,
    s_ug, s_dg, s_zg, s_gg, s_ig,  # segment strides (multi-direction: a direction's); plain scan: DSEG * channel stride
    s_xb, s_xg, s_xd, s_xl,  # du, ddelta, dz (outputs, one layout); plain scan: contiguous (batch, D, L)
    s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Bl, s_Cb, s_Cg, s_Cn, s_Cl,
    L, N, DSEG, NBLK, DPG_B, DPG_C, N_CHUNKS, BATCH, DIM,
    CHUNK, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr, HAS_GLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, HAS_IDX: tl.constexpr = False,
):
    """Outputs: du, ddelta, dz (layout from the s_x* strides), in the outputs' dtypes; per batch row (fp32):
    dA (batch, D, N), dD and ddelta_bias (batch, D), and dB / dC of the (D, N) form (batch, D, N); per program
    (fp32): dB / dC of the time-varying forms (batch, n_programs, N, L)."""
    pid_b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: tensors may exceed 2^31 elements
    pid_c = tl.program_id(1)
    seg, offs_j, offs_d, offs_n, mask_d, mask_n, mask_dn = _channel_block(pid_c, N, DSEG, NBLK, BLOCK_D, BLOCK_N)
    A, Dv, bias, Bsrc, Csrc = _block_constants(
        A_ptr, D_ptr, bias_ptr, B_ptr, C_ptr, pid_b, seg, offs_d, offs_n, mask_d, mask_dn, s_Ad, s_An,
        s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn, DSEG, DPG_B, DPG_C, HAS_D, HAS_BIAS, B_VARY, C_VARY, BLOCK_D)

    seg64 = seg.to(tl.int64)
    up = _seq_ptrs(u_ptr, pid_b, s_ub, seg64, s_ug, offs_j, s_ud)
    dp = _seq_ptrs(dl_ptr, pid_b, s_db, seg64, s_dg, offs_j, s_dd)
    zp = _seq_ptrs(z_ptr, pid_b, s_zb, seg64, s_zg, offs_j, s_zd)  # z, gout and dz: at position p (index map)
    gp = _seq_ptrs(gout_ptr, pid_b, s_gb, seg64, s_gg, offs_j, s_gd)
    go = pid_b * s_xb + seg64 * s_xg + offs_j * s_xd  # du, ddelta (at step t), dz (at position p)
    ip = idx_ptr + seg64 * s_ig
    st_off = pid_b * DIM * N + offs_d[:, None] * N + offs_n[None, :]
    prog = pid_b * tl.num_programs(1) + pid_c
    part_off = prog * N * L + offs_n * L  # dB / dC partials (batch * n_prog, N, L)
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # one scratch slot: (BLOCK_D, BLOCK_N)
    sp = scratch_ptr + prog.to(tl.int64) * ((CHUNK + 1) * BLOCK_D * BLOCK_N) + tile  # this program's CHUNK + 1 slots

    dA_acc, dB_acc, dC_acc, dD_acc, dbias_acc = _zero_sums(BLOCK_D, BLOCK_N)
    g = _initial_adjoint(glast_ptr + st_off, mask_dn, HAS_GLAST, BLOCK_D, BLOCK_N)
    for cc in range(0, N_CHUNKS):
        c = N_CHUNKS - 1 - cc
        t0 = c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, L)
        h = tl.load(ckpt_ptr + c * BATCH * DIM * N + st_off, mask=mask_dn, other=0.0)
        h = _recompute_chunk(h, sp, t0, t1, up, dp, Bsrc, A, bias, s_ul, s_dl, s_Bl, mask_d, mask_n, mask_dn,
                             HAS_BIAS, SOFTPLUS, B_VARY, BLOCK_D, BLOCK_N)
        tl.debug_barrier()
        g, dA_acc, dB_acc, dC_acc, dD_acc, dbias_acc = _adjoint_chunk(
            g, h, t0, t1, sp, up, dp, zp, gp, ip, go, part_off, Bsrc, Csrc, A, Dv, bias,
            du_ptr, ddl_ptr, dz_ptr, dBp_ptr, dCp_ptr, dA_acc, dB_acc, dC_acc, dD_acc, dbias_acc,
            s_ul, s_dl, s_zl, s_gl, s_xl, s_Bl, s_Cl, mask_d, mask_n, mask_dn,
            HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, B_VARY, C_VARY, HAS_IDX, BLOCK_D, BLOCK_N)
        tl.debug_barrier()
    _store_sums(dA_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr, st_off, pid_b * DIM + offs_d, dA_acc, dB_acc, dC_acc,
                dD_acc, dbias_acc, mask_d, mask_dn, HAS_D, HAS_BIAS, B_VARY, C_VARY)
