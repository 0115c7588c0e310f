/* armvision: fused selective scan (and causal depthwise conv1d) for CPUs.
 *
 * Plain C99 + pthreads: no torch headers, no CUDA, no OpenMP runtime. Compiled at first use by the system
 * compiler (see ../cpu_kernel.py) with -O3 -march=native -fopenmp-simd, loaded with ctypes.
 *
 * Layout: vector lanes are channels. A work item is (batch row b, block of W channels); it keeps the W x N
 * states in registers and walks the sequence. Tensors are float32 and are described by strides:
 *   "scan-side" tensors (u, delta, du, ddelta, and grouped B/C) are read at scan step t;
 *   "raster-side" tensors (z, out, dout, dz) are read at position pos = idx[g][t] (idx NULL: pos = t),
 * so several scan directions over one sequence (groups g of Dg channels with their own A, D, dt bias, B, C and
 * order) run in one call, and a group stride of 0 for out/z sums the groups into one output in a fixed order.
 *
 * Determinism: every work item computes the same bits whatever thread runs it; reductions over channels (dB,
 * dC) and over the batch (dA, dD, ddelta_bias) go through per-item partial buffers summed in a fixed order.
 */
#include "armv_common.h"

/* ------------------------------------------------------------------------------------------------------------
 * Selective scan. Integer parameters (ip) and pointers (pp) are passed as arrays; see cpu_kernel.py.
 * ---------------------------------------------------------------------------------------------------------- */
enum {
    I_BATCH, I_L, I_G, I_DG, I_N, I_CHUNK, I_SOFTPLUS, I_THREADS,
    I_U_SG, I_U_SB, I_U_ST, I_DL_SG, I_DL_SB, I_DL_ST,
    I_B_MODE, I_B_SG, I_B_SB, I_B_ST, I_B_SN, I_C_MODE, I_C_SG, I_C_SB, I_C_ST, I_C_SN,
    I_Z_SG, I_Z_SB, I_Z_ST, I_O_SG, I_O_SB, I_O_ST,
    I_DU_SG, I_DU_SB, I_DU_ST, I_DD_SG, I_DD_SB, I_DD_ST, I_DZ_SG, I_DZ_SB, I_DZ_ST,
    I_COUNT
};
enum {
    P_U, P_DELTA, P_A, P_B, P_C, P_D, P_BIAS, P_Z, P_IDX, P_OUT, P_CKPT, P_LAST,
    /* backward */
    P_DOUT, P_DLAST, P_DU, P_DDELTA, P_DZ, P_DBP, P_DCP, P_DAP, P_DDP, P_DBIASP,
    /* reduced outputs */
    P_DB, P_DC, P_DA, P_DDV, P_DBIAS,
    P_COUNT
};

typedef struct { const int64_t *ip; void *const *pp; int64_t nblk; } scan_ctx;

#define IP(k) (c->ip[k])
#define PF(k) ((float *)c->pp[k])

/* per-group constants of one work item: A and A log2 e (N x W), D, dt bias; constant-form B / C (N x W) */
typedef struct { float A[NMAX][W], A2[NMAX][W], B[NMAX][W], C[NMAX][W], Dv[W], bias[W]; } consts_t;

INLINE void load_consts(const scan_ctx *c, int64_t ch0, int w, int N, consts_t *k) {
    const float *A = PF(P_A), *Bm = PF(P_B), *Cm = PF(P_C), *Dv = PF(P_D), *bias = PF(P_BIAS);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < W; j++) {
            k->A[n][j] = j < w ? A[(ch0 + j) * N + n] : 0.0f;
            k->A2[n][j] = k->A[n][j] * 1.44269504f;
            k->B[n][j] = (IP(I_B_MODE) == 0 && j < w) ? Bm[(ch0 + j) * N + n] : 0.0f;
            k->C[n][j] = (IP(I_C_MODE) == 0 && j < w) ? Cm[(ch0 + j) * N + n] : 0.0f;
        }
    for (int j = 0; j < W; j++) {
        k->Dv[j] = (Dv && j < w) ? Dv[ch0 + j] : 0.0f;
        k->bias[j] = (bias && j < w) ? bias[ch0 + j] : 0.0f;
    }
}

/* B_t or C_t of a variable form: N scalars (broadcast over lanes) */
INLINE void load_bc(const scan_ctx *c, int which, int64_t g, int64_t b, int64_t t, int N, float *dst) {
    const int o = which == 0 ? 0 : (I_C_MODE - I_B_MODE);
    const float *p = PF(which == 0 ? P_B : P_C) + g * IP(I_B_SG + o) + b * IP(I_B_SB + o) + t * IP(I_B_ST + o);
    const int64_t sn = IP(I_B_SN + o);
    for (int n = 0; n < N; n++) dst[n] = p[n * sn];
}

INLINE int64_t position(const scan_ctx *c, int64_t g, int64_t t) {
    const int32_t *idx = (const int32_t *)c->pp[P_IDX];
    return idx ? idx[g * IP(I_L) + t] : t;
}

/* B_t / C_t as per-lane (N x W) values: the constant form's own array, or the step's N scalars broadcast */
INLINE const float (*lanes_bc(const scan_ctx *c, int which, int64_t g, int64_t b, int64_t t, int N,
                              const float (*konst)[W], float (*buf)[W]))[W] {
    if (IP(which == 0 ? I_B_MODE : I_C_MODE) == 0) return konst;
    float v[NMAX];
    load_bc(c, which, g, b, t, N, v);
    for (int n = 0; n < N; n++) LANES(j) buf[n][j] = v[n];
    return (const float (*)[W])buf;
}

/* one step forward for lanes (A2 = A log2 e): updates h (and stores the decays in da if given); y = sum_n C h */
INLINE void step_fwd(int N, const float (*A2)[W], const float (*Bl)[W], const float (*Cl)[W], const float *dt,
                     const float *du, const float (*h_in)[W], float (*h)[W], float *y, float (*da)[W]) {
    LANES(j) y[j] = 0.0f;
    for (int n = 0; n < N; n++) {
        LANES(j) {
            float a = v_exp2(dt[j] * A2[n][j]);
            float hn = a * h_in[n][j] + du[j] * Bl[n][j];
            h[n][j] = hn;
            y[j] += hn * Cl[n][j];
            if (da) da[n][j] = a;
        }
    }
}

/* the same step when B_t and C_t are N scalars shared by the lanes (the mixer's case): broadcast in registers */
INLINE void step_fwd_var(int N, const float (*A2)[W], const float *bv, const float *cv, const float *dt,
                         const float *du, const float (*h_in)[W], float (*h)[W], float *y, float (*da)[W]) {
    LANES(j) y[j] = 0.0f;
    for (int n = 0; n < N; n++) {
        const float bn = bv[n], cn = cv[n];
        LANES(j) {
            float a = v_exp2(dt[j] * A2[n][j]);
            float hn = a * h_in[n][j] + du[j] * bn;
            h[n][j] = hn;
            y[j] += hn * cn;
            if (da) da[n][j] = a;
        }
    }
}

/* one adjoint step for lanes when B_t, C_t are N scalars: G += gy C; dC partial = gy h_t; dB partial = G du;
 * dv += G B; q = G a h_{t-1} feeds d(dt) and dA; then G *= a (to step t-1) */
INLINE void adjoint_var(int N, const float (*A)[W], const float *bv, const float *cv, const float *gy,
                        const float *du, const float *dt, const float (*Hp)[W], const float (*Hn)[W],
                        const float (*Da)[W], float (*Gs)[W], float (*dA)[W], float (*PC)[W], float (*PB)[W],
                        float *dv, float *ddt) {
    for (int n = 0; n < N; n++) {
        const float bn = bv[n], cn = cv[n];
        LANES(j) {
            float gs = Gs[n][j] + gy[j] * cn;
            PC[n][j] = gy[j] * Hn[n][j];
            PB[n][j] = gs * du[j];
            dv[j] += gs * bn;
            float q = gs * Da[n][j] * Hp[n][j];
            ddt[j] += q * A[n][j];
            dA[n][j] += q * dt[j];
            Gs[n][j] = gs * Da[n][j];
        }
    }
}

/* the backward's dt and d(dt)/d(delta) = sigmoid(delta + bias) (1 without softplus), from one exp: the same dt bits
 * as load_dt (softplus(x) = log1p(e^x)), and e^x / (1 + e^x) for the sigmoid */
INLINE void load_dt_grad(const scan_ctx *c, const consts_t *k, const float *dlp, int w, float *dt, float *sg) {
    float raw[W];
    load_lanes(raw, dlp, w);
    if (IP(I_SOFTPLUS)) {
        LANES(j) {
            float x = raw[j] + k->bias[j], e = v_exp(x);
            dt[j] = x > 20.0f ? x : v_log1p(e);
            sg[j] = e / (1.0f + e);
        }
    } else {
        LANES(j) { dt[j] = raw[j] + k->bias[j]; sg[j] = 1.0f; }
    }
}

INLINE void load_dt(const scan_ctx *c, const consts_t *k, const float *dlp, int w, float *raw, float *dt) {
    load_lanes(raw, dlp, w);
    if (IP(I_SOFTPLUS)) {
        LANES(j) { raw[j] += k->bias[j]; dt[j] = v_softplus(raw[j]); }
    } else {
        LANES(j) { raw[j] += k->bias[j]; dt[j] = raw[j]; }
    }
}

INLINE void fwd_item(const scan_ctx *c, int64_t item, const int N) {
    const int64_t Dg = IP(I_DG), G = IP(I_G), L = IP(I_L), batch = IP(I_BATCH), chunk = IP(I_CHUNK);
    const int64_t b = item / c->nblk, d0 = (item % c->nblk) * W;
    const int w = (int)(Dg - d0 < W ? Dg - d0 : W);
    const float *z = PF(P_Z);
    float *out = PF(P_OUT), *ckpt = PF(P_CKPT), *last = PF(P_LAST);
    const int osum = IP(I_O_SG) == 0, bothvar = IP(I_B_MODE) != 0 && IP(I_C_MODE) != 0;
    consts_t k;
    float h[NMAX][W], Bb[NMAX][W], Cb[NMAX][W];
    for (int64_t g = 0; g < G; g++) {
        const int64_t ch0 = g * Dg + d0;
        load_consts(c, ch0, w, N, &k);
        for (int n = 0; n < N; n++) LANES(j) h[n][j] = 0.0f;
        const float *up = PF(P_U) + g * IP(I_U_SG) + b * IP(I_U_SB) + d0;
        const float *dlp = PF(P_DELTA) + g * IP(I_DL_SG) + b * IP(I_DL_SB) + d0;
        for (int64_t t = 0; t < L; t++) {
            if (ckpt && t % chunk == 0) {
                float *cp = ckpt + ((((t / chunk) * batch + b) * G + g) * N) * Dg + d0;
                for (int n = 0; n < N; n++) store_lanes(cp + n * Dg, h[n], w, 0);
            }
            float uu[W], raw[W], dt[W], du[W], y[W];
            load_lanes(uu, up + t * IP(I_U_ST), w);
            load_dt(c, &k, dlp + t * IP(I_DL_ST), w, raw, dt);
            LANES(j) du[j] = dt[j] * uu[j];
            if (bothvar) {
                float bv[NMAX], cv[NMAX];
                load_bc(c, 0, g, b, t, N, bv);
                load_bc(c, 1, g, b, t, N, cv);
                step_fwd_var(N, (const float (*)[W])k.A2, bv, cv, dt, du, (const float (*)[W])h, h, y, NULL);
            } else {
                step_fwd(N, (const float (*)[W])k.A2, lanes_bc(c, 0, g, b, t, N, (const float (*)[W])k.B, Bb),
                         lanes_bc(c, 1, g, b, t, N, (const float (*)[W])k.C, Cb), dt, du, (const float (*)[W])h, h,
                         y, NULL);
            }
            LANES(j) y[j] += k.Dv[j] * uu[j];
            const int64_t pos = position(c, g, t);
            if (z) {
                float zz[W];
                load_lanes(zz, z + g * IP(I_Z_SG) + b * IP(I_Z_SB) + pos * IP(I_Z_ST) + d0, w);
                LANES(j) y[j] *= zz[j] * v_sigmoid(zz[j]);
            }
            store_lanes(out + g * IP(I_O_SG) + b * IP(I_O_SB) + pos * IP(I_O_ST) + d0, y, w, osum && g > 0);
        }
        if (last)
            for (int j = 0; j < w; j++)
                for (int n = 0; n < N; n++) last[(b * G * Dg + ch0 + j) * N + n] = h[n][j];
    }
}

/* a compile-time copy of a work item for the common state size 16 (states in registers), one generic */
#define SPECIALISE(name, body)                                                             \
    static void name(const void *ctx_, int64_t item, float *ws) {                          \
        const scan_ctx *c = (const scan_ctx *)ctx_;                                        \
        if (IP(I_N) == 16) body(c, item, 16, ws);                                          \
        else body(c, item, (int)IP(I_N), ws);                                              \
    }

#define FWD_BODY(c, item, N, ws) fwd_item(c, item, N)
SPECIALISE(fwd_run, FWD_BODY)

int armv_lanes(void) { return W; }

int armv_scan_fwd(const int64_t *ip, void *const *pp) {
    if (ip[I_N] < 1 || ip[I_N] > NMAX) return -2;
    scan_ctx c = {ip, pp, (ip[I_DG] + W - 1) / W};
    return parallel_for((int)ip[I_THREADS], ip[I_BATCH] * c.nblk, fwd_run, &c, 0);
}

/* ---- backward ------------------------------------------------------------------------------------------- */
/* workspace per thread: H[(chunk + 1) * N * W], DA[chunk * N * W], Y, DT, SG[chunk * W] (SG: d(dt)/d(delta)) */
INLINE void bwd_item(const scan_ctx *c, int64_t item, const int N, float *ws) {
    const int bvar = IP(I_B_MODE) != 0, cvar = IP(I_C_MODE) != 0;
    const int64_t Dg = IP(I_DG), G = IP(I_G), L = IP(I_L), batch = IP(I_BATCH), T = IP(I_CHUNK);
    const int64_t nblk = c->nblk, b = item / nblk, blk = item % nblk, d0 = blk * W;
    const int w = (int)(Dg - d0 < W ? Dg - d0 : W);
    const float *z = PF(P_Z), *dout = PF(P_DOUT), *dlast = PF(P_DLAST), *ckpt = PF(P_CKPT);
    float *dz = PF(P_DZ), *dBp = PF(P_DBP), *dCp = PF(P_DCP);
    const int zsum = IP(I_DZ_SG) == 0;
    float (*H)[NMAX][W] = (float (*)[NMAX][W])ws;         /* (T + 1) states */
    float (*DA)[NMAX][W] = (float (*)[NMAX][W])(ws + (T + 1) * NMAX * W);
    float (*Y)[W] = (float (*)[W])(ws + (2 * T + 1) * NMAX * W);
    float (*DT)[W] = Y + T, (*SG)[W] = Y + 2 * T;
    consts_t k;
    float Gs[NMAX][W], dA[NMAX][W], dBc[NMAX][W], dCc[NMAX][W], dD[W], dbias[W], Bb[NMAX][W], Cb[NMAX][W];
    const int64_t nchunks = (L + T - 1) / T;
    for (int64_t g = 0; g < G; g++) {
        const int64_t ch0 = g * Dg + d0;
        load_consts(c, ch0, w, N, &k);
        for (int n = 0; n < N; n++)
            LANES(j) { Gs[n][j] = 0.0f; dA[n][j] = 0.0f; dBc[n][j] = 0.0f; dCc[n][j] = 0.0f; }
        LANES(j) { dD[j] = 0.0f; dbias[j] = 0.0f; }
        if (dlast)
            for (int j = 0; j < w; j++)
                for (int n = 0; n < N; n++) Gs[n][j] = dlast[(b * G * Dg + ch0 + j) * N + n];
        const float *up = PF(P_U) + g * IP(I_U_SG) + b * IP(I_U_SB) + d0;
        const float *dlp = PF(P_DELTA) + g * IP(I_DL_SG) + b * IP(I_DL_SB) + d0;
        float *dup = PF(P_DU) + g * IP(I_DU_SG) + b * IP(I_DU_SB) + d0;
        float *ddp = PF(P_DDELTA) + g * IP(I_DD_SG) + b * IP(I_DD_SB) + d0;
        for (int64_t kc = nchunks - 1; kc >= 0; kc--) {
            const int64_t t0 = kc * T, t1 = t0 + T < L ? t0 + T : L;
            const float *cp = ckpt + (((kc * batch + b) * G + g) * N) * Dg + d0;
            for (int n = 0; n < N; n++) load_lanes(H[0][n], cp + n * Dg, w);
            for (int64_t t = t0; t < t1; t++) { /* recompute the chunk's states */
                const int64_t i = t - t0;
                float uu[W], du[W], y[W], *dt = DT[i];
                load_lanes(uu, up + t * IP(I_U_ST), w);
                load_dt_grad(c, &k, dlp + t * IP(I_DL_ST), w, dt, SG[i]);
                LANES(j) du[j] = dt[j] * uu[j];
                if (bvar && cvar) {
                    float bv[NMAX], cv[NMAX];
                    load_bc(c, 0, g, b, t, N, bv);
                    load_bc(c, 1, g, b, t, N, cv);
                    step_fwd_var(N, (const float (*)[W])k.A2, bv, cv, dt, du, (const float (*)[W])H[i], H[i + 1], y,
                                 DA[i]);
                } else {
                    step_fwd(N, (const float (*)[W])k.A2, lanes_bc(c, 0, g, b, t, N, (const float (*)[W])k.B, Bb),
                             lanes_bc(c, 1, g, b, t, N, (const float (*)[W])k.C, Cb), dt, du,
                             (const float (*)[W])H[i], H[i + 1], y, DA[i]);
                }
                LANES(j) Y[i][j] = y[j] + k.Dv[j] * uu[j];
            }
            for (int64_t t = t1 - 1; t >= t0; t--) { /* adjoint, backwards */
                const int64_t i = t - t0, pos = position(c, g, t);
                float uu[W], du[W], gy[W], dv[W], ddt[W];
                const float *dt = DT[i];
                load_lanes(uu, up + t * IP(I_U_ST), w);
                LANES(j) du[j] = dt[j] * uu[j];
                load_lanes(gy, dout + g * IP(I_O_SG) + b * IP(I_O_SB) + pos * IP(I_O_ST) + d0, w);
                if (z) {
                    float zz[W], dzz[W];
                    load_lanes(zz, z + g * IP(I_Z_SG) + b * IP(I_Z_SB) + pos * IP(I_Z_ST) + d0, w);
                    LANES(j) {
                        float s = v_sigmoid(zz[j]);
                        dzz[j] = gy[j] * Y[i][j] * s * (1.0f + zz[j] * (1.0f - s));
                        gy[j] = gy[j] * zz[j] * s;
                    }
                    store_lanes(dz + g * IP(I_DZ_SG) + b * IP(I_DZ_SB) + pos * IP(I_DZ_ST) + d0, dzz, w, zsum && g > 0);
                }
                float *dbt = dBp ? dBp + ((((b * G + g) * nblk + blk) * L + t) * N) : NULL;
                float *dct = dCp ? dCp + ((((b * G + g) * nblk + blk) * L + t) * N) : NULL;
                LANES(j) { dv[j] = 0.0f; ddt[j] = 0.0f; dD[j] += gy[j] * uu[j]; }
                float PC[NMAX][W], PB[NMAX][W];
                if (bvar && cvar) { /* the mixer's case: B_t, C_t are N scalars, broadcast in registers */
                    float bv[NMAX], cv[NMAX];
                    load_bc(c, 0, g, b, t, N, bv);
                    load_bc(c, 1, g, b, t, N, cv);
                    adjoint_var(N, (const float (*)[W])k.A, bv, cv, gy, du, dt, (const float (*)[W])H[i],
                                (const float (*)[W])H[i + 1], (const float (*)[W])DA[i], Gs, dA, PC, PB, dv, ddt);
                    reduce_rows(N, (const float (*)[W])PC, dct);
                    reduce_rows(N, (const float (*)[W])PB, dbt);
                } else {
                const float (*Bl)[W] = lanes_bc(c, 0, g, b, t, N, (const float (*)[W])k.B, Bb);
                const float (*Cl)[W] = lanes_bc(c, 1, g, b, t, N, (const float (*)[W])k.C, Cb);
                for (int n = 0; n < N; n++) {
                    float *pc = PC[n], *pb = PB[n];
                    LANES(j) {
                        Gs[n][j] += gy[j] * Cl[n][j];
                        pc[j] = gy[j] * H[i + 1][n][j];
                        pb[j] = Gs[n][j] * du[j];
                        dv[j] += Gs[n][j] * Bl[n][j];
                        float q = Gs[n][j] * DA[i][n][j] * H[i][n][j];
                        ddt[j] += q * k.A[n][j];
                        dA[n][j] += q * dt[j];
                        Gs[n][j] *= DA[i][n][j];
                    }
                    if (!cvar) { LANES(j) dCc[n][j] += pc[j]; }
                    if (!bvar) { LANES(j) dBc[n][j] += pb[j]; }
                }
                if (cvar) reduce_rows(N, (const float (*)[W])PC, dct);
                if (bvar) reduce_rows(N, (const float (*)[W])PB, dbt);
                }
                float dum[W], ddm[W];
                LANES(j) {
                    ddt[j] += dv[j] * uu[j];
                    dum[j] = dv[j] * dt[j] + gy[j] * k.Dv[j];
                    ddm[j] = ddt[j] * SG[i][j];
                    dbias[j] += ddm[j];
                }
                store_lanes(dup + t * IP(I_DU_ST), dum, w, 0);
                store_lanes(ddp + t * IP(I_DD_ST), ddm, w, 0);
            }
        }
        /* per-(batch row) partials: dA (C, N), dD, dbias (C); constant-form dB / dC (C, N) */
        float *dAp = PF(P_DAP) + b * G * Dg * N, *dDp = PF(P_DDP), *dbp = PF(P_DBIASP);
        for (int j = 0; j < w; j++) {
            for (int n = 0; n < N; n++) {
                dAp[(ch0 + j) * N + n] = dA[n][j];
                if (!bvar) dBp[(b * G * Dg + ch0 + j) * N + n] = dBc[n][j];
                if (!cvar) dCp[(b * G * Dg + ch0 + j) * N + n] = dCc[n][j];
            }
            if (dDp) dDp[b * G * Dg + ch0 + j] = dD[j];
            if (dbp) dbp[b * G * Dg + ch0 + j] = dbias[j];
        }
    }
}

#define BWD_BODY(c, item, N, ws) bwd_item(c, item, N, ws)
SPECIALISE(bwd_run, BWD_BODY)

/* fixed-order reductions of the partials */
static void reduce_bc_item(const void *ctx_, int64_t item, float *ws) {
    /* item = (b, g, which): variable-form dB or dC (b, g, L, N) = sum over channel blocks */
    const scan_ctx *c = (const scan_ctx *)ctx_;
    (void)ws;
    const int64_t G = IP(I_G), L = IP(I_L), N = IP(I_N), nblk = c->nblk;
    const int which = (int)(item % 2);
    const int64_t bg = item / 2;
    if (IP(which ? I_C_MODE : I_B_MODE) == 0) return;
    const float *part = PF(which ? P_DCP : P_DBP) + bg * nblk * L * N;
    float *dst = PF(which ? P_DC : P_DB) + bg * L * N;
    (void)G;
    /* block by block into dst, so that the loads are sequential and vectorise: the same additions in the same
     * order (0 + block 0 + block 1 + ...) as a per-element loop over the blocks */
    for (int64_t e = 0; e < L * N; e++) dst[e] = 0.0f + part[e];
    for (int64_t k = 1; k < nblk; k++) {
        const float *pk = part + k * L * N;
        SIMD for (int64_t e = 0; e < L * N; e++) dst[e] += pk[e];
    }
}

static void reduce_batch_item(const void *ctx_, int64_t item, float *ws) {
    /* item = channel: dA[ch, :], dD[ch], dbias[ch] and constant-form dB / dC [ch, :] = sums over the batch */
    const scan_ctx *c = (const scan_ctx *)ctx_;
    (void)ws;
    const int64_t batch = IP(I_BATCH), CH = IP(I_G) * IP(I_DG), N = IP(I_N), ch = item;
    for (int64_t n = 0; n < N; n++) {
        float sa = 0.0f, sb = 0.0f, sc = 0.0f;
        for (int64_t b = 0; b < batch; b++) {
            const int64_t o = (b * CH + ch) * N + n;
            sa += PF(P_DAP)[o];
            if (IP(I_B_MODE) == 0) sb += PF(P_DBP)[o];
            if (IP(I_C_MODE) == 0) sc += PF(P_DCP)[o];
        }
        PF(P_DA)[ch * N + n] = sa;
        if (IP(I_B_MODE) == 0) PF(P_DB)[ch * N + n] = sb;
        if (IP(I_C_MODE) == 0) PF(P_DC)[ch * N + n] = sc;
    }
    float sd = 0.0f, sbias = 0.0f;
    for (int64_t b = 0; b < batch; b++) {
        if (PF(P_DDP)) sd += PF(P_DDP)[b * CH + ch];
        if (PF(P_DBIASP)) sbias += PF(P_DBIASP)[b * CH + ch];
    }
    if (PF(P_DDV)) PF(P_DDV)[ch] = sd;
    if (PF(P_DBIAS)) PF(P_DBIAS)[ch] = sbias;
}

int armv_scan_bwd(const int64_t *ip, void *const *pp) {
    if (ip[I_N] < 1 || ip[I_N] > NMAX) return -2;
    scan_ctx c = {ip, pp, (ip[I_DG] + W - 1) / W};
    const int nt = (int)ip[I_THREADS];
    const size_t ws = (size_t)(2 * ip[I_CHUNK] + 1) * NMAX * W + (size_t)ip[I_CHUNK] * 3 * W;
    if (parallel_for(nt, ip[I_BATCH] * c.nblk, bwd_run, &c, ws)) return -1;
    if (parallel_for(nt, ip[I_BATCH] * ip[I_G] * 2, reduce_bc_item, &c, 0)) return -1;
    return parallel_for(nt, ip[I_G] * ip[I_DG], reduce_batch_item, &c, 0);
}

