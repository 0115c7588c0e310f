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
`triton_groups` passes the group stride of its (G, batch, L, Dg) tensors, one segment per group, and 0 for the
shared z / dout). With HAS_IDX, z, out, dout and dz are read / written at position idx[segment, t] instead of t
(the group's scan order -> raster order); u, delta, du, ddelta, B, C stay in scan order.
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


@triton.jit
def _scan_fwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, last_ptr, ckpt_ptr, idx_ptr,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl, s_ob, s_od, s_ol,
    s_ug, s_dg, s_zg, s_og, s_ig,  # segment (group) strides; plain scan: DSEG * channel stride
    s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Bl, s_Cb, s_Cg, s_Cn, s_Cl,  # time-varying forms; (D, N) form: s_Bb = s_Bd, s_Bn
    L, N, DSEG, NBLK, DPG_B, DPG_C, N_CHUNKS, BATCH, DIM,
    CHUNK, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, HAS_IDX: tl.constexpr = False,
):
    pid_b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: tensors may exceed 2^31 elements
    pid_c = tl.program_id(1)
    seg = pid_c // NBLK
    j = pid_c % NBLK
    offs_j = j * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_j < DSEG
    offs_d = seg * DSEG + offs_j
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]

    A = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if B_VARY:
        Bp = B_ptr + pid_b * s_Bb + ((seg * DSEG) // DPG_B) * s_Bg + offs_n * s_Bn
    else:
        Bc = tl.load(B_ptr + offs_d[:, None] * s_Bb + offs_n[None, :] * s_Bn, mask=mask_dn, other=0.0).to(tl.float32)
    if C_VARY:
        Cp = C_ptr + pid_b * s_Cb + ((seg * DSEG) // DPG_C) * s_Cg + offs_n * s_Cn
    else:
        Cc = tl.load(C_ptr + offs_d[:, None] * s_Cb + offs_n[None, :] * s_Cn, mask=mask_dn, other=0.0).to(tl.float32)

    seg64 = seg.to(tl.int64)
    up = u_ptr + pid_b * s_ub + seg64 * s_ug + offs_j * s_ud
    dp = dl_ptr + pid_b * s_db + seg64 * s_dg + offs_j * s_dd
    zp = z_ptr + pid_b * s_zb + seg64 * s_zg + offs_j * s_zd  # z and out: at position p (index map)
    op = out_ptr + pid_b * s_ob + seg64 * s_og + offs_j * s_od
    ip = idx_ptr + seg64 * s_ig
    st_off = pid_b * DIM * N + offs_d[:, None] * N + offs_n[None, :]  # (batch, D, N) contiguous

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, N_CHUNKS):
        tl.store(ckpt_ptr + c * BATCH * DIM * N + st_off, h, mask=mask_dn)
        t0 = c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, L)
        for t in range(t0, t1):
            u = tl.load(up + t * s_ul, mask=mask_d, other=0.0).to(tl.float32)
            dt = tl.load(dp + t * s_dl, mask=mask_d, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            if B_VARY:
                Bt = tl.load(Bp + t * s_Bl, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            else:
                Bt = Bc
            if C_VARY:
                Ct = tl.load(Cp + t * s_Cl, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            else:
                Ct = Cc
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt
            y = tl.sum(h * Ct, axis=1)
            if HAS_D:
                y = y + Dv * u
            if HAS_IDX:
                p = tl.load(ip + t)
            else:
                p = t
            if HAS_Z:
                zv = tl.load(zp + p * s_zl, mask=mask_d, other=0.0).to(tl.float32)
                y = y * zv * _sigmoid(zv)
            tl.store(op + p * s_ol, y.to(out_ptr.dtype.element_ty), mask=mask_d)
    tl.store(last_ptr + st_off, h, mask=mask_dn)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    ckpt_ptr, gout_ptr, glast_ptr, scratch_ptr,
    du_ptr, ddl_ptr, dz_ptr, dA_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr, idx_ptr,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl, s_gb, s_gd, s_gl,
    s_ug, s_dg, s_zg, s_gg, s_ig,  # segment (group) strides; plain scan: DSEG * channel stride
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
    n_prog = tl.num_programs(1)
    seg = pid_c // NBLK
    j = pid_c % NBLK
    offs_j = j * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_j < DSEG
    offs_d = seg * DSEG + offs_j
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]

    A = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if B_VARY:
        Bp = B_ptr + pid_b * s_Bb + ((seg * DSEG) // DPG_B) * s_Bg + offs_n * s_Bn
    else:
        Bc = tl.load(B_ptr + offs_d[:, None] * s_Bb + offs_n[None, :] * s_Bn, mask=mask_dn, other=0.0).to(tl.float32)
        dB_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    if C_VARY:
        Cp = C_ptr + pid_b * s_Cb + ((seg * DSEG) // DPG_C) * s_Cg + offs_n * s_Cn
    else:
        Cc = tl.load(C_ptr + offs_d[:, None] * s_Cb + offs_n[None, :] * s_Cn, mask=mask_dn, other=0.0).to(tl.float32)
        dC_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)

    seg64 = seg.to(tl.int64)
    up = u_ptr + pid_b * s_ub + seg64 * s_ug + offs_j * s_ud
    dp = dl_ptr + pid_b * s_db + seg64 * s_dg + offs_j * s_dd
    zp = z_ptr + pid_b * s_zb + seg64 * s_zg + offs_j * s_zd  # z, gout and dz: at position p (index map)
    gp = gout_ptr + pid_b * s_gb + seg64 * s_gg + offs_j * s_gd
    go = pid_b * s_xb + seg64 * s_xg + offs_j * s_xd  # du, ddelta (at step t), dz (at position p)
    ip = idx_ptr + seg64 * s_ig
    st_off = pid_b * DIM * N + offs_d[:, None] * N + offs_n[None, :]
    prog = pid_b * n_prog + pid_c
    part_off = prog * N * L + offs_n * L  # dB / dC partials (batch * n_prog, N, L)
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # one scratch slot: (BLOCK_D, BLOCK_N)
    sp = scratch_ptr + prog.to(tl.int64) * ((CHUNK + 1) * BLOCK_D * BLOCK_N) + tile  # this program's CHUNK + 1 slots

    if HAS_GLAST:
        g = tl.load(glast_ptr + st_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for cc in range(0, N_CHUNKS):
        c = N_CHUNKS - 1 - cc
        t0 = c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, L)
        # pass 1: the chunk's states, slot 0 = state before the chunk, slot k + 1 = h_{t0 + k}
        h = tl.load(ckpt_ptr + c * BATCH * DIM * N + st_off, mask=mask_dn, other=0.0)
        tl.store(sp, h, mask=mask_dn)
        for t in range(t0, t1):
            u = tl.load(up + t * s_ul, mask=mask_d, other=0.0).to(tl.float32)
            dt = tl.load(dp + t * s_dl, mask=mask_d, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            if B_VARY:
                Bt = tl.load(Bp + t * s_Bl, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            else:
                Bt = Bc
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt
            tl.store(sp + (t - t0 + 1) * BLOCK_D * BLOCK_N, h, mask=mask_dn)
        tl.debug_barrier()
        # pass 2: the adjoint, backwards over the chunk; h holds h_t
        for tt in range(0, t1 - t0):
            t = t1 - 1 - tt
            u = tl.load(up + t * s_ul, mask=mask_d, other=0.0).to(tl.float32)
            raw = tl.load(dp + t * s_dl, mask=mask_d, other=0.0).to(tl.float32)
            if HAS_BIAS:
                raw = raw + bias
            if SOFTPLUS:
                dt = _softplus(raw)
            else:
                dt = raw
            if B_VARY:
                Bt = tl.load(Bp + t * s_Bl, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            else:
                Bt = Bc
            if C_VARY:
                Ct = tl.load(Cp + t * s_Cl, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            else:
                Ct = Cc
            if HAS_IDX:
                p = tl.load(ip + t)
            else:
                p = t
            gy = tl.load(gp + p * s_gl, mask=mask_d, other=0.0).to(tl.float32)
            if HAS_Z:  # out = pre * silu(z), pre = y + D u
                zv = tl.load(zp + p * s_zl, mask=mask_d, other=0.0).to(tl.float32)
                pre = tl.sum(h * Ct, axis=1)
                if HAS_D:
                    pre = pre + Dv * u
                sig = _sigmoid(zv)
                dz = gy * pre * sig * (1.0 + zv * (1.0 - sig))
                tl.store(dz_ptr + go + p * s_xl, dz.to(dz_ptr.dtype.element_ty), mask=mask_d)
                gy = gy * zv * sig
            # direct gradients of y_t = sum_n C_t h_t
            if C_VARY:
                dCt = tl.sum(gy[:, None] * h, axis=0)
                tl.store(dCp_ptr + part_off + t, dCt, mask=mask_n)
            else:
                dC_acc += gy[:, None] * h
            g = g + gy[:, None] * Ct
            h_prev = tl.load(sp + (t - t0) * BLOCK_D * BLOCK_N, mask=mask_dn, other=0.0)
            a = tl.exp(dt[:, None] * A)
            q = g * a * h_prev  # dL/d(dt_t A)
            v = dt * u
            if B_VARY:
                dBt = tl.sum(g * v[:, None], axis=0)
                tl.store(dBp_ptr + part_off + t, dBt, mask=mask_n)
            else:
                dB_acc += g * v[:, None]
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
        tl.debug_barrier()
    tl.store(dA_ptr + st_off, dA_acc, mask=mask_dn)
    if not B_VARY:
        tl.store(dBp_ptr + st_off, dB_acc, mask=mask_dn)
    if not C_VARY:
        tl.store(dCp_ptr + st_off, dC_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dD_ptr + pid_b * DIM + offs_d, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * DIM + offs_d, dbias_acc, mask=mask_d)
