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
    I_COUNT
};
enum {
    P_U, P_DELTA, P_A, P_B, P_C, P_D, P_BIAS, P_Z, P_IDX, P_OUT, P_CKPT, P_LAST,
    P_DOUT, P_DLAST, P_DU, P_DDELTA, P_DZ, P_DBP, P_DCP, P_DAP, P_DDP, P_DBIASP, /* backward */
    P_DB, P_DC, P_DA, P_DDV, P_DBIAS,                                            /* reduced outputs */
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

static inline scan_ctx make_ctx(const int64_t *ip, void *const *pp, int64_t ws_per_block, int64_t sbk_max,
                                int64_t ws_bytes, int64_t min_items) {
    scan_ctx c = {ip, pp, (ip[I_DG] + VL - 1) / VL, 1, 0, (int)ip[I_ACT_DT], (int)ip[I_BC_DT], 0, 1.0f};
    c.mixer = ip[I_N] == 16 && ip[I_B_MODE] != 0 && ip[I_C_MODE] != 0;
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

/* rows [0, L) of a sequence tensor for all blocks of an item, into dst[j L + t] (float32): one tight loop of
 * independent loads, so many cache misses are in flight at once */
INLINE void gather_rows(const scan_ctx *c, const item_t *it, const void *base, int64_t off, int64_t stride,
                        vf *dst) {
    const int64_t L = IP(I_L);
    for (int64_t t = 0; t < L; t++)
        for (int j = 0; j < it->nj; j++) dst[j * L + t] = ld(base, c->adt, off + t * stride + j * VL, width(c, it, j));
}
/* the inverse: src[j L + t] into the rows of a sequence tensor */
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
