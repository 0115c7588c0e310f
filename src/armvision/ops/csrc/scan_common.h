/* armvision: what the selective scan's forward (scan_fwd.c) and backward (scan_bwd.c) share.
 *
 * Layout: vector lanes are channels. A work item is a batch row b and a run of up to SBK_FWD (forward) or SBK_BWD
 * (backward) blocks of VL channels, whose VL x N states it carries along the sequence. Sequence tensors are float32
 * or bfloat16 (the math is float32 throughout) and are described by element strides:
 *   "scan-side" tensors (u, delta, du, ddelta, and B / C of the variable forms) are read at scan step t;
 *   "raster-side" tensors (z, out, dout, dz) at position pos = idx[g][t] (idx NULL: pos = t),
 * so several scan directions over one sequence (groups g of Dg channels with their own A, D, dt bias, B, C and
 * order) run in one call. A group stride of 0 for out / z ("shared") sums the groups' outputs before the gate:
 *   out[pos] = scale * silu(z[pos]) * sum_g (y_g[pos] + D_g u_g[pos]),
 * summed in group order in float32 row buffers of the work item, gated and stored once.
 * u, delta, z and dout may have any channel stride (mamba_ssm's (batch, D, L) layout: channel stride L, step stride
 * 1): the mixer's fast path then stages an item's rows through a transposing gather (gather_rows_cs), the other
 * reads gather lane by lane (ldc); nothing is copied outside the kernel. Outputs are written channels-contiguous.
 * A step's row of a sequence tensor is a channel stride (often kilobytes) from the next, so the mixer's fast path
 * reads (and writes) the super-block's pieces of all rows in tight loops of their own, with nothing else in flight,
 * and computes from item-local buffers.
 *
 * Determinism: every work item computes the same bits whatever thread runs it; reductions over channels (dB, dC)
 * and over the batch (dA, dD, ddelta_bias) go through per-item partial buffers summed in a fixed order.
 */
#ifndef ARMV_SCAN_COMMON_H
#define ARMV_SCAN_COMMON_H
#include "armv_common.h"

enum {
    I_BATCH, I_L, I_G, I_DG, I_N, I_CHUNK, I_SOFTPLUS, I_THREADS,
    I_U_SG, I_U_SB, I_U_ST, I_DL_SG, I_DL_SB, I_DL_ST,
    I_B_MODE, I_B_SG, I_B_SB, I_B_ST, I_B_SN, I_C_MODE, I_C_SG, I_C_SB, I_C_ST, I_C_SN,
    I_Z_SG, I_Z_SB, I_Z_ST, I_O_SG, I_O_SB, I_O_ST,
    I_DU_SG, I_DU_SB, I_DU_ST, I_DD_SG, I_DD_SB, I_DD_ST, I_DZ_SG, I_DZ_SB, I_DZ_ST,
    I_ACT_DT, I_BC_DT, I_SCALE_BITS,
    I_U_SC, I_DL_SC, I_Z_SC, I_O_SC, /* channel strides of u, delta, z, out / dout (1: channels contiguous) */
    I_R, /* 0, or the rank of the dt projection made inside (the mixer's dt_proj): delta = x W^T, see project_rows */
    I_COUNT
};
enum {
    P_U, P_DELTA, P_A, P_B, P_C, P_D, P_BIAS, P_Z, P_IDX, P_OUT, P_CKPT, P_LAST,
    P_DOUT, P_DLAST, P_DU, P_DDELTA, P_DZ, P_DBP, P_DCP, P_DAP, P_DDP, P_DBIASP, /* backward */
    P_DB, P_DC, P_DA, P_DDV, P_DBIAS,                                            /* reduced outputs */
    P_WDT, /* the dt projection's weight transposed, (G, R, Dg) float32, where I_R > 0 */
    P_COUNT
};

#define SB 16     /* steps per block of decays (the mixer's fast path) */
#define SBK_FWD 64 /* channel blocks per work item, at most: forward */
#define SBK_BWD 8 /* and backward */

typedef struct {
    const int64_t *ip;
    void *const *pp;
    int64_t nblk, sbk, nsb; /* blocks of VL channels per group; blocks per work item; work items per batch row */
    int adt, bdt;           /* dtype codes of the sequence tensors and of B / C */
    int mixer;              /* N = 16 and B, C both variable: the fast path */
    float scale;            /* output scale (the mixer's 1 / directions) */
} scan_ctx;

#define IP(k) (c->ip[k])
#define PP(k) (c->pp[k])
#define PF(k) ((float *)c->pp[k])

/* per-group constants of one block: A and A log2 e, constant-form B / C (per lane), D, dt bias */
typedef struct { vf A[NMAX], A2[NMAX], B[NMAX], C[NMAX], Dv, bias; } consts_t;

/* the blocks of one work item: batch row b, blocks j0 .. j0 + nj - 1, channels d0 .. d0 + nj VL (the last may be
 * partial: width(j)) */
typedef struct { int64_t b, j0, d0; int nj; } item_t;

/* the Mamba mixer's form (N = 16, B and C both variable): the fast path */
INLINE int mixer_form(const int64_t *ip) { return ip[I_N] == 16 && ip[I_B_MODE] != 0 && ip[I_C_MODE] != 0; }

static inline scan_ctx make_ctx(const int64_t *ip, void *const *pp, int64_t ws_per_block, int64_t sbk_max,
                                int64_t ws_bytes, int64_t min_items) {
    scan_ctx c = {ip, pp, (ip[I_DG] + VL - 1) / VL, 1, 0, (int)ip[I_ACT_DT], (int)ip[I_BC_DT], 0, 1.0f};
    c.mixer = mixer_form(ip);
    /* blocks per work item: as many as keep min_items work items and the item's buffers within ws_bytes (about what
     * a core's cache holds for them). The backward's min_items does not depend on the thread count: its results must
     * not (the dB / dC partials are per work item); the forward's results do not depend on it at all. */
    while (c.sbk < sbk_max && ip[I_BATCH] * ((c.nblk + 2 * c.sbk - 1) / (2 * c.sbk)) >= min_items &&
           2 * c.sbk * ws_per_block * VL * 4 <= ws_bytes)
        c.sbk *= 2;
    c.nsb = (c.nblk + c.sbk - 1) / c.sbk;
    if (ip[I_SCALE_BITS]) {
        uint32_t bits = (uint32_t)ip[I_SCALE_BITS];
        memcpy(&c.scale, &bits, 4);
    }
    return c;
}

INLINE item_t item_of(const scan_ctx *c, int64_t item) {
    item_t it = {item / c->nsb, (item % c->nsb) * c->sbk, 0, 0};
    it.d0 = it.j0 * VL;
    it.nj = (int)(c->nblk - it.j0 < c->sbk ? c->nblk - it.j0 : c->sbk);
    return it;
}
INLINE int width(const scan_ctx *c, const item_t *it, int j) {
    const int64_t left = IP(I_DG) - (it->j0 + j) * VL;
    return (int)(left < VL ? left : VL);
}

INLINE vf lane_gather(const float *p, int64_t ch0, int64_t stride, int w) {
    float tmp[VL] = {0};
    if (p)
        for (int j = 0; j < w && j < VL; j++) tmp[j] = p[(ch0 + j) * stride];
    return vload(tmp);
}

INLINE void load_consts(const scan_ctx *c, int64_t ch0, int w, int N, consts_t *k) {
    const int bconst = IP(I_B_MODE) == 0, cconst = IP(I_C_MODE) == 0;
    for (int n = 0; n < N; n++) {
        k->A[n] = lane_gather(PF(P_A) + n, ch0, N, w);
        k->A2[n] = k->A[n] * 1.44269504f;
        k->B[n] = bconst ? lane_gather(PF(P_B) + n, ch0, N, w) : vsplat(0.0f);
        k->C[n] = cconst ? lane_gather(PF(P_C) + n, ch0, N, w) : vsplat(0.0f);
    }
    k->Dv = lane_gather(PF(P_D), ch0, 1, w);
    k->bias = lane_gather(PF(P_BIAS), ch0, 1, w);
}

/* The saved state of chunk kc for the block at channel d0 (w lanes): within each (chunk, batch row, group) slab of
 * N x Dg floats the blocks lie one after another, each as N rows of its w lanes, so that a block saves and loads
 * one contiguous piece (state n at + n w). */
INLINE float *ckpt_at(const scan_ctx *c, int64_t kc, int64_t b, int64_t g, int64_t d0) {
    const int64_t N = IP(I_N), Dg = IP(I_DG);
    return PF(P_CKPT) + ((kc * IP(I_BATCH) + b) * IP(I_G) + g) * N * Dg + d0 * N;
}

INLINE int64_t position(const scan_ctx *c, int64_t g, int64_t t) {
    const int32_t *idx = (const int32_t *)PP(P_IDX);
    return idx ? idx[g * IP(I_L) + t] : t;
}

/* dt = softplus(x) or x for x = delta + bias, and with sg != NULL its derivative d dt / d delta */
INLINE vf dt_of(const scan_ctx *c, vf x, vf *sg) {
    if (!IP(I_SOFTPLUS)) {
        if (sg) *sg = vsplat(1.0f);
        return x;
    }
    return v_softplus_sig(x, sg);
}

/* B_t or C_t of a variable form as N floats: the tensor's own row (float32 with contiguous N) or a copy in buf */
INLINE const float *bc_row(const scan_ctx *c, int which, int64_t g, int64_t b, int64_t t, int N, float *buf) {
    const int o = which == 0 ? 0 : (I_C_MODE - I_B_MODE);
    const int64_t off = g * IP(I_B_SG + o) + b * IP(I_B_SB + o) + t * IP(I_B_ST + o), sn = IP(I_B_SN + o);
    const void *base = PP(which == 0 ? P_B : P_C);
    if (c->bdt == DT_F32 && sn == 1) return (const float *)base + off;
    if (c->bdt == DT_BF16 && sn == 1 && N % VL == 0) {
        for (int n = 0; n < N; n += VL) vstore(buf + n, ld(base, DT_BF16, off + n, VL));
        return buf;
    }
    for (int n = 0; n < N; n++) buf[n] = ld1(base, c->bdt, off + n * sn);
    return buf;
}

/* Rows that a work item will soon read or write, brought into L2 while it computes: the rows of a step are a channel
 * stride apart, so neither the hardware prefetchers nor the out-of-order window get ahead of them. A plan lists
 * row-piece addresses (base + r stride, `lines` cache lines each) for rows r in [0, L); the work spreads them over its
 * steps, one row per nj steps. */
#define PF_MAX 8
typedef struct { const char *base[PF_MAX]; int64_t stride[PF_MAX]; int write[PF_MAX], n, lines; } prefetch_t;

INLINE void plan_add(prefetch_t *pf, const scan_ctx *c, const void *base, int64_t off, int64_t stride, int write) {
    if (!base || pf->n == PF_MAX) return;
    const int esz = c->adt == DT_F32 ? 4 : 2;
    pf->base[pf->n] = (const char *)base + off * esz;
    pf->stride[pf->n] = stride * esz;
    pf->write[pf->n++] = write;
}
INLINE void prefetch_step(const prefetch_t *pf, int64_t q, int nj) {
    if (!pf || q % nj) return;
    for (int i = 0; i < pf->n; i++)
        for (int l = 0; l < pf->lines; l++) {
            const char *a = pf->base[i] + (q / nj) * pf->stride[i] + l * 64;
            if (pf->write[i]) __builtin_prefetch(a, 1, 2);
            else __builtin_prefetch(a, 0, 2);
        }
}
/* the next work item of this thread if items are taken in order (its first group's rows) */
INLINE item_t next_item(const scan_ctx *c, int64_t item) {
    return item + 1 < IP(I_BATCH) * c->nsb ? item_of(c, item + 1) : item_of(c, item);
}

/* VL lanes of channels cs elements apart (cs = 1: ld) */
INLINE vf ldc(const void *base, int dt, int64_t off, int64_t cs, int w) {
    if (cs == 1) return ld(base, dt, off, w);
    float tmp[VL] = {0};
    for (int q = 0; q < w && q < VL; q++) tmp[q] = ld1(base, dt, off + q * cs);
    return vload(tmp);
}

/* VL channels (cs elements apart) x VL steps (contiguous) -> out[s] = the VL channels at step s, by VL row loads and
 * a VL x VL transpose in registers where the build has one (AVX-512: float32 and bfloat16; AVX, SSE: float32);
 * returns 0 (nothing done) where it has none, and the caller gathers element by element. */
INLINE int transpose_vl(const void *base, int dt, int64_t off, int64_t cs, vf *out) {
#if defined(ARMV_X512)
    __m512 r[16], t[16];
    for (int q = 0; q < 16; q++)
        r[q] = dt == DT_F32 ? _mm512_loadu_ps((const float *)base + off + q * cs)
                            : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                  (const __m256i *)((const uint16_t *)base + off + q * cs))), 16));
    for (int q = 0; q < 16; q += 2) {
        t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
        t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
    }
    for (int q = 0; q < 16; q += 4)
        for (int i = 0; i < 2; i++) {
            const __m512d a = _mm512_castps_pd(t[q + i]), b = _mm512_castps_pd(t[q + i + 2]);
            r[q + 2 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[q + 2 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        out[i] = (vf)_mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        out[i + 8] = (vf)_mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
    return 1;
#elif defined(ARMV_X256)
    if (dt != DT_F32) return 0;
    __m256 r[8], t[8];
    for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps((const float *)base + off + q * cs);
    for (int q = 0; q < 8; q += 2) {
        t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
        t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
    }
    for (int q = 0; q < 8; q += 4)
        for (int i = 0; i < 2; i++) {
            r[q + 2 * i] = _mm256_shuffle_ps(t[q + i], t[q + i + 2], 0x44);
            r[q + 2 * i + 1] = _mm256_shuffle_ps(t[q + i], t[q + i + 2], 0xee);
        }
    for (int i = 0; i < 4; i++) {
        out[i] = (vf)_mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        out[i + 4] = (vf)_mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    return 1;
#elif defined(ARMV_X128)
    if (dt != DT_F32) return 0;
    __m128 r[4], t[4];
    for (int q = 0; q < 4; q++) r[q] = _mm_loadu_ps((const float *)base + off + q * cs);
    t[0] = _mm_unpacklo_ps(r[0], r[1]);
    t[1] = _mm_unpackhi_ps(r[0], r[1]);
    t[2] = _mm_unpacklo_ps(r[2], r[3]);
    t[3] = _mm_unpackhi_ps(r[2], r[3]);
    out[0] = (vf)_mm_movelh_ps(t[0], t[2]);
    out[1] = (vf)_mm_movehl_ps(t[2], t[0]);
    out[2] = (vf)_mm_movelh_ps(t[1], t[3]);
    out[3] = (vf)_mm_movehl_ps(t[3], t[1]);
    return 1;
#else
    (void)base, (void)dt, (void)off, (void)cs, (void)out;
    return 0;
#endif
}

/* rows [0, L) of a sequence tensor for all blocks of an item (off: its first channel; rows `stride` apart, channels
 * cs apart) as float32 vectors into dst[j L + t] (block-major) or dst[t nj + j] (step-major). Contiguous channels:
 * one tight loop of independent loads, so many cache misses are in flight at once; channels apart (mamba_ssm's
 * (batch, D, L) layout): VL x VL tiles of one block transposed in registers (transpose_vl), element by element
 * where it cannot. */
INLINE void gather_rows(const scan_ctx *c, const item_t *it, const void *base, int64_t off, int64_t stride,
                        int64_t cs, vf *dst, int step_major) {
    const int64_t L = IP(I_L), nj = it->nj;
    if (cs == 1) {
        for (int64_t t = 0; t < L; t++)
            for (int j = 0; j < nj; j++)
                dst[step_major ? t * nj + j : j * L + t] = ld(base, c->adt, off + t * stride + j * VL, width(c, it, j));
        return;
    }
    for (int j = 0; j < nj; j++) {
        const int w = width(c, it, j);
        for (int64_t t0 = 0; t0 < L; t0 += VL) {
            const int S = L - t0 < VL ? (int)(L - t0) : VL;
            vf rows[VL];
            if (w < VL || S < VL || stride != 1 || !transpose_vl(base, c->adt, off + j * VL * cs + t0, cs, rows)) {
                float tile[VL][VL] = {{0}};
                for (int q = 0; q < w; q++) {
                    const int64_t o = off + (j * VL + q) * cs + t0 * stride;
                    for (int s = 0; s < S; s++) tile[s][q] = ld1(base, c->adt, o + s * stride);
                }
                for (int s = 0; s < S; s++) rows[s] = vload(tile[s]);
            }
            for (int s = 0; s < S; s++) dst[step_major ? (t0 + s) * nj + j : j * L + t0 + s] = rows[s];
        }
    }
}
/* project_rows' tile: S steps (8, or 1 at the end) of nb blocks (1 or 2; each a constant where it is called, so
 * the sums live in registers): d[q qs + s ss] = sum_r X[s R + r] w[q R + r], each sum over r in order */
INLINE void project_tile(const float *X, int64_t R, const vf *w, int nb, int S, vf *d, int64_t qs, int64_t ss) {
    vf acc[2][8];
    UNROLL for (int q = 0; q < 2; q++) UNROLL for (int s = 0; s < 8; s++) acc[q][s] = vsplat(0.0f);
    for (int64_t r = 0; r < R; r++)
        UNROLL for (int s = 0; s < 8; s++) if (s < S) {
            const vf xs = vsplat(X[s * R + r]);
            UNROLL for (int q = 0; q < 2; q++) if (q < nb) acc[q][s] += xs * w[q * R + r];
        }
    UNROLL for (int q = 0; q < 2; q++) if (q < nb)
        UNROLL for (int s = 0; s < 8; s++) if (s < S) d[q * qs + s * ss] = acc[q][s];
}

/* The mixer's dt projection made here (I_R = R > 0): delta rows computed instead of read, for all blocks of an
 * item, into dst[j L + t] (block-major) or dst[t nj + j] (step-major) as gather_rows writes them:
 *   delta[g, b, t, d] = sum_r x[g, b, t, r] W[g Dg + d, r],
 * x read through P_DELTA with delta's strides (sg, sb, st; r at the channel stride), W transposed, (G, R, Dg)
 * float32, at P_WDT. The whole delta tensor (L x Dg per direction and batch row) is then never written nor read
 * back: it is made block by block where the scan reads it, from x (L x R) and W, which stay in cache. Eight steps
 * of two blocks at a time (sixteen independent sums: the FMA latency covered, and each x value loaded feeds two
 * FMAs, so the loop is bound by the FMAs rather than the loads); each sum over r in order, so the bits depend on
 * nothing else.
 * WT: room for R nj vectors (the item's columns of W^T, lanes = channels); X: room for L R floats (x as float32). */
INLINE void project_rows(const scan_ctx *c, const item_t *it, int64_t g, vf *dst, int step_major, vf *WT, float *X) {
    const int64_t L = IP(I_L), R = IP(I_R), nj = it->nj;
    const int64_t xo = g * IP(I_DL_SG) + it->b * IP(I_DL_SB), xst = IP(I_DL_ST), xsr = IP(I_DL_SC);
    for (int64_t t = 0; t < L; t++)
        for (int64_t r = 0; r < R; r++) X[t * R + r] = ld1(PP(P_DELTA), c->adt, xo + t * xst + r * xsr);
    for (int j = 0; j < nj; j++)
        for (int64_t r = 0; r < R; r++)
            WT[j * R + r] = ld(PP(P_WDT), DT_F32, (g * R + r) * IP(I_DG) + it->d0 + j * VL, width(c, it, j));
    for (int j = 0; j < nj; j += 2) {
        const int nb = j + 2 <= nj ? 2 : 1;
        for (int64_t t = 0; t < L;) {
            const int S = t + 8 <= L ? 8 : 1;
            vf *d = dst + (step_major ? t * nj + j : j * L + t);
            const int64_t qs = step_major ? 1 : L, ss = step_major ? nj : 1;
            if (nb == 2 && S == 8) project_tile(X + t * R, R, WT + j * R, 2, 8, d, qs, ss);
            else if (nb == 2) project_tile(X + t * R, R, WT + j * R, 2, 1, d, qs, ss);
            else if (S == 8) project_tile(X + t * R, R, WT + j * R, 1, 8, d, qs, ss);
            else project_tile(X + t * R, R, WT + j * R, 1, 1, d, qs, ss);
            t += S;
        }
    }
}
/* vectors of room project_rows needs beyond R per block: x as float32 */
INLINE int64_t proj_x_vectors(const int64_t *ip) { return (ip[I_L] * ip[I_R] + VL - 1) / VL; }

/* the inverse of gather_rows: src[j L + t] into the rows of a sequence tensor */
INLINE void scatter_rows(const scan_ctx *c, const item_t *it, void *base, int64_t off, int64_t stride,
                         const vf *src) {
    const int64_t L = IP(I_L);
    for (int64_t t = 0; t < L; t++)
        for (int j = 0; j < it->nj; j++) st(base, c->adt, off + t * stride + j * VL, src[j * L + t], width(c, it, j));
}

/* decays of steps [t0, t0 + S) of one block (the mixer's fast path): U = u, DU = dt u, DA[s][n] = 2^(dt A2_n), and
 * DTv = dt, SG = d dt / d delta where asked. The S softplus chains first (independent of each other), then the
 * 16 S decays: done step by step, each step's long chain (softplus, then 2^x) sits in front of the next step's
 * independent work and the out-of-order window cannot reach past it. */
INLINE void decays16(const scan_ctx *c, const consts_t *k, const vf *UL, const vf *DL, int64_t t0, int S,
                     vf *U, vf *DU, vf *DTv, vf *SG, vf *DA) {
    vf dts[SB];
    for (int s = 0; s < S; s++) dts[s] = dt_of(c, DL[t0 + s] + k->bias, SG ? SG + s : NULL);
    for (int s = 0; s < S; s++) {
        const vf dt = dts[s], uu = UL[t0 + s];
        U[s] = uu;
        DU[s] = dt * uu;
        if (DTv) DTv[s] = dt;
        UNROLL for (int n = 0; n < 16; n++) DA[s * 16 + n] = v_exp2(dt * k->A2[n]);
    }
}

/* the recurrence over steps [t0, t0 + S) of one block, states h in registers: h_n = DA_n h_n + DU B_n and
 * y = D u + sum_n C_n h_n; y into acc[pos] (added when add), or with Hs the states after each step into
 * Hs[(s + 1) 16 + n] and y into Ys[s] */
INLINE void recur16(const scan_ctx *c, const consts_t *k, int64_t g, int64_t b, int64_t t0, int S, const vf *U,
                    const vf *DU, const vf *DA, vf *h, vf *acc, int add, vf *Hs, vf *Ys) {
    for (int s = 0; s < S; s++) {
        const int64_t t = t0 + s;
        float bb[16], cb[16];
        const float *bv = bc_row(c, 0, g, b, t, 16, bb), *cv = bc_row(c, 1, g, b, t, 16, cb);
        const vf du = DU[s], *da = DA + s * 16;
        vf y0 = k->Dv * U[s], y1 = vsplat(0.0f), y2 = vsplat(0.0f), y3 = vsplat(0.0f);
        UNROLL for (int n = 0; n < 16; n += 4) { /* four partial sums: short dependency chains */
            h[n] = da[n] * h[n] + du * bv[n];
            h[n + 1] = da[n + 1] * h[n + 1] + du * bv[n + 1];
            h[n + 2] = da[n + 2] * h[n + 2] + du * bv[n + 2];
            h[n + 3] = da[n + 3] * h[n + 3] + du * bv[n + 3];
            y0 += h[n] * cv[n];
            y1 += h[n + 1] * cv[n + 1];
            y2 += h[n + 2] * cv[n + 2];
            y3 += h[n + 3] * cv[n + 3];
        }
        const vf y = (y0 + y1) + (y2 + y3);
        if (Hs) {
            UNROLL for (int n = 0; n < 16; n++) Hs[(s + 1) * 16 + n] = h[n];
            Ys[s] = y;
        } else {
            const int64_t pos = position(c, g, t);
            acc[pos] = add ? acc[pos] + y : y;
        }
    }
}

/* One generic step for lanes (any N and B / C form): h_n = 2^(dt A2_n) h_n + du B_n; returns sum_n C_n h_n and
 * stores the decays in da if given. bv / cv: B_t / C_t as N scalars, or NULL for the per-lane constants of k. */
INLINE vf step_fwd(int N, const consts_t *k, const float *bv, const float *cv, vf dt, vf du, vf *h, vf *da) {
    vf y = vsplat(0.0f);
    for (int n = 0; n < N; n++) {
        vf a = v_exp2(dt * k->A2[n]);
        vf bn = bv ? vsplat(bv[n]) : k->B[n], cn = cv ? vsplat(cv[n]) : k->C[n];
        h[n] = a * h[n] + du * bn;
        y += h[n] * cn;
        if (da) da[n] = a;
    }
    return y;
}

/* B_t / C_t scalars of step t for the variable forms of the generic path (NULL for a constant form) */
#define STEP_BC(g, t)                                                          \
    float bbuf[NMAX], cbuf[NMAX];                                              \
    const float *bv = bvar ? bc_row(c, 0, g, it.b, t, N, bbuf) : NULL;         \
    const float *cv = cvar ? bc_row(c, 1, g, it.b, t, N, cbuf) : NULL;

#endif /* ARMV_SCAN_COMMON_H */
