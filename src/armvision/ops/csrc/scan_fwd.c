/* armvision: fused selective scan for CPUs, forward (layout and conventions: scan_common.h).
 *
 * Plain C99 + GCC/clang vector extensions + pthreads: no torch headers, no CUDA, no OpenMP runtime. Compiled at
 * first use by the system compiler for the machine's own instruction set (see ../cpu_kernel.py), loaded with ctypes.
 */
#include "scan_common.h"

#define PF_AHEAD 4 /* steps */

/* Which loop runs outside in the mixer's forward (tile16_fwd): the steps (0: at each step every block of the item,
 * its 16 states loaded from and stored to the item's buffer in L1) or the blocks (1: each block's whole sequence in
 * turn, its 16 states in registers from the first step to the last). The same arithmetic in the same order either
 * way, so the same bits; which is faster depends on the core (stores and store-to-load forwarding of 16 vectors per
 * step and block against a block's strided walk through the rows), so armvision times both once per built library
 * and sets the faster (cpu_kernel.py, armv_set_fwd_order). */
static int fwd_blocks_outer = 0;
void armv_set_fwd_order(int blocks_outer) { fwd_blocks_outer = blocks_outer != 0; }
int armv_fwd_order(void) { return fwd_blocks_outer; }

/* One step of one block: the 16 states' decays and inputs, and the read-out D u + C.h in four partial sums added in
 * a fixed order (both loop orders call this, hence their same bits). h: the block's states, updated. */
INLINE vf state_step(vf *h, const vf *a2, vf dt, vf du, vf uu, vf Dv, const float *bv, const float *cv) {
    vf y0 = Dv * uu, y1 = vsplat(0.0f), y2 = vsplat(0.0f), y3 = vsplat(0.0f);
    UNROLL for (int n = 0; n < 16; n += 4) {
        h[n] = v_exp2(dt * a2[n]) * h[n] + du * bv[n];
        h[n + 1] = v_exp2(dt * a2[n + 1]) * h[n + 1] + du * bv[n + 1];
        h[n + 2] = v_exp2(dt * a2[n + 2]) * h[n + 2] + du * bv[n + 2];
        h[n + 3] = v_exp2(dt * a2[n + 3]) * h[n + 3] + du * bv[n + 3];
        y0 += h[n] * cv[n];
        y1 += h[n + 1] * cv[n + 1];
        y2 += h[n + 2] * cv[n + 2];
        y3 += h[n + 3] * cv[n + 3];
    }
    return (y0 + y1) + (y2 + y3);
}

/* Steps [t0, t1) of one block with its states in registers (the blocks-outside order of tile16_fwd): dt rows
 * made, u rows staged (SU) or read, B and C rows of the step shared by all blocks, the read-out into the item's row
 * buffer acc (block j's lane of position pos at acc[pos nj]). A function of its own so that the states and the 2^x
 * constants get the registers. */
__attribute__((noinline)) static void block_steps(const scan_ctx *c, int64_t g, int64_t b, int64_t t0, int64_t t1,
                                                  vf *H, const vf *a2, vf dv, const vf *dts, const vf *SU,
                                                  int64_t uoff, int w, vf *acc, int64_t nj, int add) {
    const int64_t ust = IP(I_U_ST);
    const void *u = PP(P_U);
    vf h[16];
    UNROLL for (int n = 0; n < 16; n++) h[n] = H[n];
    for (int64_t t = t0; t < t1; t++) {
        if (!SU && t + PF_AHEAD < t1)
            __builtin_prefetch((const char *)u + (uoff + (t + PF_AHEAD) * ust) * (c->adt == DT_F32 ? 4 : 2));
        float bb[16], cb[16];
        const float *bv = bc_row(c, 0, g, b, t, 16, bb), *cv = bc_row(c, 1, g, b, t, 16, cb);
        const vf uu = SU ? SU[t] : ld(u, c->adt, uoff + t * ust, w), dt = dts[t];
        const vf y = state_step(h, a2, dt, dt * uu, uu, dv, bv, cv);
        const int64_t pos = position(c, g, t);
        acc[pos * nj] = add ? acc[pos * nj] + y : y;
    }
    UNROLL for (int n = 0; n < 16; n++) H[n] = h[n];
}

/* The Mamba mixer's case for all blocks of one work item in one group, in either loop order (fwd_blocks_outer).
 * Steps outside: the sequence step by step, and at each step every block (the item's piece of the step's rows is
 * contiguous, so the hardware prefetchers keep up; the blocks' 16 states each live in the item's buffer, in L1, and
 * the 16 nj decays of a step are independent work for the out-of-order core). Blocks outside: each block's states
 * stay in registers through the sequence (staged rows block-major, so that a block's steps are contiguous).
 * The state is saved at each chunk's start for the backward; the final states into Hout.
 * ws: A2 (16 nj), Dv, bias, DT, DU, UU (nj each) vectors; Hout (16 nj). SU, SD: NULL, or (channels apart; for
 * delta also where it is made here, project_rows with WT, X) the item's u and delta rows, staged (L nj vectors
 * each). */
__attribute__((noinline)) static void tile16_fwd(const scan_ctx *c, const item_t *it, int64_t g, vf *acc, int add,
                                                 vf *Hout, vf *ws, vf *SU, vf *SD, vf *WT, float *X) {
    const int64_t L = IP(I_L), T = IP(I_CHUNK), Dg = IP(I_DG), b = it->b;
    const int nj = it->nj, wl = width(c, it, nj - 1), bo = fwd_blocks_outer && SD;
    const int64_t uo = g * IP(I_U_SG) + b * IP(I_U_SB) + it->d0, dlo = g * IP(I_DL_SG) + b * IP(I_DL_SB) + it->d0;
    const int64_t ust = IP(I_U_ST), dlst = IP(I_DL_ST), esz = c->adt == DT_F32 ? 4 : 2;
    const int64_t ustb = ust * esz, dlstb = dlst * esz, rowbytes = ((nj - 1) * VL + wl) * esz;
    const char *ub = (const char *)PP(P_U) + uo * esz, *db = (const char *)PP(P_DELTA) + dlo * esz;
    vf *A2 = ws, *H = Hout, *Dv = A2 + 16 * nj, *bias = Dv + nj, *DT = bias + nj, *DU = DT + nj, *UU = DU + nj;
    /* staged rows: step-major (t nj + j) for the steps outside, block-major (j L + t) for the blocks outside */
    if (SU) gather_rows(c, it, PP(P_U), g * IP(I_U_SG) + b * IP(I_U_SB) + it->d0 * IP(I_U_SC), ust, IP(I_U_SC), SU, !bo);
    if (SD && IP(I_R)) project_rows(c, it, g, SD, !bo, WT, X);
    else if (SD)
        gather_rows(c, it, PP(P_DELTA), g * IP(I_DL_SG) + b * IP(I_DL_SB) + it->d0 * IP(I_DL_SC), dlst, IP(I_DL_SC),
                    SD, !bo);
    for (int j = 0; j < nj; j++) {
        const int64_t ch0 = g * Dg + it->d0 + j * VL;
        const int w = j == nj - 1 ? wl : VL;
        for (int n = 0; n < 16; n++) {
            A2[j * 16 + n] = lane_gather(PF(P_A) + n, ch0, 16, w) * 1.44269504f;
            H[j * 16 + n] = vsplat(0.0f);
        }
        Dv[j] = lane_gather(PF(P_D), ch0, 1, w);
        bias[j] = lane_gather(PF(P_BIAS), ch0, 1, w);
    }
    if (bo) { /* (SD staged) */
        for (int j = 0; j < nj; j++) {
            const int w = j == nj - 1 ? wl : VL;
            const vf bj = bias[j];
            vf *dts = SD + j * L; /* the block's delta rows become its dt rows first: no softplus in the state loop */
            for (int64_t t = 0; t < L; t++) dts[t] = dt_of(c, dts[t] + bj, NULL);
            vf *h = H + j * 16;
            for (int64_t t0 = 0; t0 < L; t0 += T) {
                if (PF(P_CKPT)) {
                    float *cp = ckpt_at(c, t0 / T, b, g, it->d0 + j * VL);
                    UNROLL for (int n = 0; n < 16; n++) st(cp + n * w, DT_F32, 0, h[n], w);
                }
                block_steps(c, g, b, t0, t0 + T < L ? t0 + T : L, h, A2 + j * 16, Dv[j], dts,
                            SU ? SU + j * L : NULL, uo + j * VL, w, acc + j, nj, add);
            }
        }
        return;
    }
    for (int64_t t = 0, tc = 0; t < L; t++, tc = tc + 1 == T ? 0 : tc + 1) {
        if (tc == 0 && PF(P_CKPT))
            for (int j = 0; j < nj; j++) {
                float *cp = ckpt_at(c, t / T, b, g, it->d0 + j * VL);
                const int w = j == nj - 1 ? wl : VL;
                UNROLL for (int n = 0; n < 16; n++) st(cp + n * w, DT_F32, 0, H[j * 16 + n], w);
            }
        if (rowbytes < 1024 && t + PF_AHEAD < L) /* short row pieces: the hardware prefetchers may not follow */
            for (int64_t o = 0; o < rowbytes; o += 64) {
                if (!SU) __builtin_prefetch(ub + (t + PF_AHEAD) * ustb + o);
                if (!SD) __builtin_prefetch(db + (t + PF_AHEAD) * dlstb + o);
            }
        float bb[16], cb[16];
        const float *bv = bc_row(c, 0, g, b, t, 16, bb), *cv = bc_row(c, 1, g, b, t, 16, cb);
        const int64_t pos = position(c, g, t);
        /* the step's dt and du for every block first: independent chains, so the softplus latency overlaps */
        for (int j = 0; j < nj; j++) {
            const int w = j == nj - 1 ? wl : VL;
            const vf uu = SU ? SU[t * nj + j] : ld(PP(P_U), c->adt, uo + t * ust + j * VL, w);
            const vf dl = SD ? SD[t * nj + j] : ld(PP(P_DELTA), c->adt, dlo + t * dlst + j * VL, w);
            const vf dt = dt_of(c, dl + bias[j], NULL);
            DT[j] = dt;
            DU[j] = dt * uu;
            UU[j] = uu;
        }
        for (int j = 0; j < nj; j++) {
            vf h[16], a2[16]; /* local copies: no aliasing with the buffers, so they stay in registers */
            UNROLL for (int n = 0; n < 16; n++) { h[n] = H[j * 16 + n]; a2[n] = A2[j * 16 + n]; }
            const vf y = state_step(h, a2, DT[j], DU[j], UU[j], Dv[j], bv, cv);
            UNROLL for (int n = 0; n < 16; n++) H[j * 16 + n] = h[n];
            acc[pos * nj + j] = add ? acc[pos * nj + j] + y : y;
        }
    }
}

/* Any state size and B / C form, one block of one group, step by step. The final states into h. */
static void generic_fwd(const scan_ctx *c, const item_t it_, int j, const consts_t *k, int64_t g, vf *acc, int add,
                        vf *h) {
    const item_t it = it_;
    const int64_t L = IP(I_L), T = IP(I_CHUNK);
    const int N = (int)IP(I_N), w = width(c, &it, j), bvar = IP(I_B_MODE) != 0, cvar = IP(I_C_MODE) != 0;
    const int64_t d0 = it.d0 + j * VL;
    const int64_t ucs = IP(I_U_SC), dlcs = IP(I_DL_SC);
    const int64_t uo = g * IP(I_U_SG) + it.b * IP(I_U_SB) + d0 * ucs;
    const int64_t dlo = g * IP(I_DL_SG) + it.b * IP(I_DL_SB) + d0 * dlcs;
    float *ckpt = PF(P_CKPT);
    for (int n = 0; n < N; n++) h[n] = vsplat(0.0f);
    for (int64_t t = 0; t < L; t++) {
        if (ckpt && t % T == 0) {
            float *cp = ckpt_at(c, t / T, it.b, g, d0);
            for (int n = 0; n < N; n++) st(cp + n * w, DT_F32, 0, h[n], w);
        }
        vf uu = ldc(PP(P_U), c->adt, uo + t * IP(I_U_ST), ucs, w);
        vf dt = dt_of(c, ldc(PP(P_DELTA), c->adt, dlo + t * IP(I_DL_ST), dlcs, w) + k->bias, NULL);
        STEP_BC(g, t)
        vf y = step_fwd(N, k, bv, cv, dt, dt * uu, h, NULL) + k->Dv * uu;
        const int64_t pos = position(c, g, t);
        acc[pos * it.nj] = add ? acc[pos * it.nj] + y : y; /* the item's row buffer: position-major */
    }
}

/* gate and store the item's row buffers (one group's, or the shared sum of all groups): out = scale silu(z) acc.
 * ZS: NULL, or room for z's rows staged step-major first (z's channels apart) */
static void store_gated(const scan_ctx *c, const item_t *it, int64_t g, const vf *acc, vf *ZS) {
    const int64_t L = IP(I_L);
    const void *z = PP(P_Z);
    const int64_t zcs = IP(I_Z_SC), zo = g * IP(I_Z_SG) + it->b * IP(I_Z_SB) + it->d0 * zcs;
    const int64_t oo = g * IP(I_O_SG) + it->b * IP(I_O_SB) + it->d0;
    const int zs = z && ZS && zcs != 1;
    if (zs) gather_rows(c, it, z, zo, IP(I_Z_ST), zcs, ZS, 1);
    for (int64_t p = 0; p < L; p++)
        for (int j = 0; j < it->nj; j++) {
            const int w = width(c, it, j);
            vf y = acc[p * it->nj + j] * c->scale;
            if (z) {
                vf zz = zs ? ZS[p * it->nj + j] : ldc(z, c->adt, zo + p * IP(I_Z_ST) + j * VL * zcs, zcs, w);
                y *= zz * v_sigmoid(zz);
            }
            st(PP(P_OUT), c->adt, oo + p * IP(I_O_ST) + j * VL, y, w);
        }
}

/* workspace (vectors): acc (L per block), then H (NMAX per block), the mixer's tile buffers (21 per block) and,
 * where u, delta or z has its channels apart, staged rows (2 L per block: u and delta, then z in u's place) */
static int staged(const int64_t *ip) {
    return mixer_form(ip) && (ip[I_U_SC] != 1 || ip[I_DL_SC] != 1 || ip[I_Z_SC] != 1 || ip[I_R] > 0);
}
/* ... and where the dt projection is made here, its room (project_rows: R per block, then x for the item) */
static int64_t fwd_ws_per_block(const int64_t *ip) { return (staged(ip) ? 3 : 1) * ip[I_L] + 21 + ip[I_R]; }

static void fwd_item(const void *ctx_, int64_t item, float *ws_) {
    const scan_ctx *c = (const scan_ctx *)ctx_;
    const item_t it = item_of(c, item);
    const int64_t G = IP(I_G), L = IP(I_L), Dg = IP(I_DG), N = IP(I_N);
    const int shared = IP(I_O_SG) == 0;
    float *last = PF(P_LAST);
    vf *acc = (vf *)ws_, *H = acc + c->sbk * L, *tws = H + c->sbk * NMAX;
    vf *SU = tws + c->sbk * 21, *SD = SU + c->sbk * L, *WT = SD + c->sbk * L; /* used where staged */
    float *X = (float *)(WT + c->sbk * IP(I_R));
    const int stage = staged(c->ip), stage_u = stage && IP(I_U_SC) != 1;
    const int stage_d = stage && (IP(I_DL_SC) != 1 || IP(I_R) > 0); /* delta's channels apart, or made here */
    consts_t k;
    for (int64_t g = 0; g < G; g++) {
        const int add = shared && g > 0;
        if (c->mixer)
            tile16_fwd(c, &it, g, acc, add, H, tws, stage_u ? SU : NULL, stage_d ? SD : NULL, WT, X);
        for (int j = 0; j < it.nj; j++) {
            const int64_t ch0 = g * Dg + it.d0 + j * VL;
            const int w = width(c, &it, j);
            vf *h = c->mixer ? H + j * 16 : H;
            if (!c->mixer) {
                load_consts(c, ch0, w, (int)N, &k);
                generic_fwd(c, it, j, &k, g, acc + j, add, h);
            }
            if (last)
                for (int n = 0; n < N; n++) {
                    float hl[VL];
                    vspill(hl, h[n]);
                    for (int q = 0; q < w; q++) last[(it.b * G * Dg + ch0 + q) * N + n] = hl[q];
                }
        }
        if (!shared || g == G - 1) store_gated(c, &it, g, acc, stage ? SU : NULL);
    }
}

int armv_lanes(void) { return VL; }
const char *armv_build_info(void) { return "isa=" ARMV_ISA " lanes=" VL_STR; }

int armv_scan_fwd(const int64_t *ip, void *const *pp) {
    if (ip[I_N] < 1 || ip[I_N] > NMAX || (ip[I_R] && (!mixer_form(ip) || !pp[P_WDT]))) return -2;
    const int64_t threads = ip[I_THREADS] > 1 ? ip[I_THREADS] : 1;
    scan_ctx c = make_ctx(ip, pp, fwd_ws_per_block(ip), SBK_FWD, 16 << 20, 2 * threads);
    const size_t ws = (size_t)(c.sbk * (fwd_ws_per_block(ip) + NMAX) + proj_x_vectors(ip)) * VL;
    return parallel_for((int)ip[I_THREADS], ip[I_BATCH] * c.nsb, fwd_item, &c, ws);
}
