/* armvision: fused selective scan for CPUs, backward (layout and conventions: scan_common.h). Each chunk of T steps
 * is recomputed from the state saved at its start, then the adjoint runs back over it; the dB / dC rows of each
 * block go to per-item partial buffers, summed over the blocks afterwards in a fixed order. */
#include "scan_common.h"

/* z and dout of the item's blocks at position p, j: read in place (contiguous channels), or from ZS / OS where their
 * channels lie apart (mamba_ssm's layout), staged there block-major by stage_gate first */
typedef struct { int64_t zo, oo, zcs, ocs; vf *ZS, *OS; } gate_src;
static gate_src stage_gate(const scan_ctx *c, const item_t *it, int64_t g, vf *ZS, vf *OS) {
    gate_src s = {0, 0, IP(I_Z_SC), IP(I_O_SC), NULL, NULL};
    s.zo = g * IP(I_Z_SG) + it->b * IP(I_Z_SB) + it->d0 * s.zcs;
    s.oo = g * IP(I_O_SG) + it->b * IP(I_O_SB) + it->d0 * s.ocs;
    if (PP(P_Z) && s.zcs != 1) gather_rows(c, it, PP(P_Z), s.zo, IP(I_Z_ST), s.zcs, s.ZS = ZS, 0);
    if (s.ocs != 1) gather_rows(c, it, PP(P_DOUT), s.oo, IP(I_O_ST), s.ocs, s.OS = OS, 0);
    return s;
}
INLINE vf gate_z(const scan_ctx *c, const gate_src *s, int64_t p, int j, int w) {
    return s->ZS ? s->ZS[j * IP(I_L) + p] : ld(PP(P_Z), c->adt, s->zo + p * IP(I_Z_ST) + j * VL, w);
}
INLINE vf gate_dout(const scan_ctx *c, const gate_src *s, int64_t p, int j, int w) {
    return (s->OS ? s->OS[j * IP(I_L) + p] : ld(PP(P_DOUT), c->adt, s->oo + p * IP(I_O_ST) + j * VL, w)) * c->scale;
}

/* The gate's part for the item's blocks (one group's, or the shared gate of all groups): GY = dout scale silu(z) (the
 * gradient of y), YS = 0 to collect sum_g y_g for dz. ZS, OS: staging room (L per block each). */
static void gate_in(const scan_ctx *c, const item_t *it, int64_t g, vf *GY, vf *YS, vf *ZS, vf *OS) {
    const int64_t L = IP(I_L);
    const void *z = PP(P_Z);
    const gate_src src = stage_gate(c, it, g, ZS, OS);
    for (int64_t p = 0; p < L; p++)
        for (int j = 0; j < it->nj; j++) {
            const int w = width(c, it, j);
            vf go = gate_dout(c, &src, p, j, w);
            if (z) {
                vf zz = gate_z(c, &src, p, j, w);
                go *= zz * v_sigmoid(zz);
                YS[j * L + p] = vsplat(0.0f);
            }
            GY[j * L + p] = go;
        }
}

/* dz = dout scale (sum_g y_g) silu'(z) */
static void gate_out(const scan_ctx *c, const item_t *it, int64_t g, const vf *YS, vf *ZS, vf *OS) {
    const int64_t L = IP(I_L);
    const int64_t dzo = g * IP(I_DZ_SG) + it->b * IP(I_DZ_SB) + it->d0;
    const gate_src src = stage_gate(c, it, g, ZS, OS);
    for (int64_t p = 0; p < L; p++)
        for (int j = 0; j < it->nj; j++) {
            const int w = width(c, it, j);
            vf zz = gate_z(c, &src, p, j, w), s = v_sigmoid(zz);
            vf go = gate_dout(c, &src, p, j, w);
            const vf dz = go * YS[j * L + p] * (s * (1.0f + zz * (1.0f - s)));
            st(PP(P_DZ), c->adt, dzo + p * IP(I_DZ_ST) + j * VL, dz, w);
        }
}

/* what one block's backward adds up: dA (N vectors), dD, ddelta_bias, and constant-form dB / dC (N vectors each) */
typedef struct { vf dA[NMAX], dB[NMAX], dC[NMAX], dD, dbias; } sums_t;

/* The Mamba mixer's case, one block of one group, chunk by chunk from the last: recompute the chunk (decays16 +
 * recur16, keeping every state and decay), then run back over it in blocks of SB steps, in two passes: (a) the
 * adjoint state alone, sequential, G_n <- (G_n + gy C_n) a_n, keeping each step's G_n + gy C_n; (b) everything else,
 * whose steps are independent: the dB / dC rows (reduced over the lanes), du, ddelta and the sums. UL, DL: the
 * block's u and delta rows; DUO, DDO: its du and ddelta rows (written here, scattered by the caller).
 * ws: H ((T + 1) 16), DA (T 16), U, DU, DT, SG (T each), GS (SB 16), Ys (SB) vectors. */
__attribute__((noinline)) static void scan16_bwd(const scan_ctx *c, const consts_t *k, int64_t g, int64_t b,
                                                 int64_t d0, int64_t blk, int w, const vf *UL, const vf *DL,
                                                 const vf *GY, vf *YS, vf *Gs, sums_t *sm, vf *DUO, vf *DDO, vf *ws,
                                                 const prefetch_t *pf, int j, int nj) {
    const int64_t L = IP(I_L), T = IP(I_CHUNK), G = IP(I_G), nsb = c->nsb;
    float *dBp = PF(P_DBP), *dCp = PF(P_DCP);
    const int has_z = PP(P_Z) != NULL;
    vf *H = ws, *DA = H + (T + 1) * 16, *U = DA + T * 16, *DU = U + T, *DT = DU + T, *SG = DT + T, *GS = SG + T;
    vf *Ys = GS + SB * 16, dD = vsplat(0.0f), dbias = vsplat(0.0f);
    for (int64_t c0 = ((L - 1) / T) * T; c0 >= 0; c0 -= T) {
        const int nT = (int)(c0 + T < L ? T : L - c0);
        const float *cp = ckpt_at(c, c0 / T, b, g, d0);
        vf h[16];
        UNROLL for (int n = 0; n < 16; n++) h[n] = H[n] = ld(cp + n * w, DT_F32, 0, w);
        for (int i0 = 0; i0 < nT; i0 += SB) { /* recompute */
            const int S = nT - i0 < SB ? nT - i0 : SB;
            decays16(c, k, UL, DL, c0 + i0, S, U + i0, DU + i0, DT + i0, SG + i0, DA + i0 * 16);
            for (int s = 0; s < S; s++) prefetch_step(pf, j * L + c0 + i0 + s, nj);
            recur16(c, k, g, b, c0 + i0, S, U + i0, DU + i0, DA + i0 * 16, h, NULL, 0, H + i0 * 16, Ys);
            if (has_z)
                for (int s = 0; s < S; s++) YS[position(c, g, c0 + i0 + s)] += Ys[s];
        }
        for (int i1 = nT; i1 > 0; i1 -= SB) {
            const int i0 = i1 - SB > 0 ? i1 - SB : 0;
            for (int i = i1 - 1; i >= i0; i--) { /* (a) */
                float cb[16];
                const float *cv = bc_row(c, 1, g, b, c0 + i, 16, cb);
                const vf gy = GY[position(c, g, c0 + i)];
                UNROLL for (int n = 0; n < 16; n++) {
                    const vf gs = Gs[n] + gy * cv[n];
                    GS[(i - i0) * 16 + n] = gs;
                    Gs[n] = gs * DA[i * 16 + n];
                }
            }
            for (int i = i0; i < i1; i++) { /* (b) */
                const int64_t t = c0 + i;
                float bb[16];
                const float *bv = bc_row(c, 0, g, b, t, 16, bb);
                const vf gy = GY[position(c, g, t)], du = DU[i], dt = DT[i], uu = U[i];
                const vf *gs = GS + (i - i0) * 16, *hp = H + i * 16, *hn = H + (i + 1) * 16, *da = DA + i * 16;
                vf PC[16], PB[16], dv0 = vsplat(0.0f), dv1 = vsplat(0.0f), dt0 = vsplat(0.0f), dt1 = vsplat(0.0f);
                UNROLL for (int n = 0; n < 16; n += 2) {
                    PC[n] = gy * hn[n];
                    PC[n + 1] = gy * hn[n + 1];
                    PB[n] = gs[n] * du;
                    PB[n + 1] = gs[n + 1] * du;
                    dv0 += gs[n] * bv[n];
                    dv1 += gs[n + 1] * bv[n + 1];
                    const vf q0 = gs[n] * da[n] * hp[n], q1 = gs[n + 1] * da[n + 1] * hp[n + 1];
                    dt0 += q0 * k->A[n];
                    dt1 += q1 * k->A[n + 1];
                    sm->dA[n] += q0 * dt;
                    sm->dA[n + 1] += q1 * dt;
                }
                const int64_t part = (((b * G + g) * nsb + blk / c->sbk) * L + t) * 16;
                reduce_rows(16, PC, dCp + part, j > 0);
                reduce_rows(16, PB, dBp + part, j > 0);
                const vf dv = dv0 + dv1, ddm = ((dt0 + dt1) + dv * uu) * SG[i];
                dD += gy * uu;
                dbias += ddm;
                DUO[t] = dv * dt + gy * k->Dv;
                DDO[t] = ddm;
            }
        }
    }
    sm->dD = dD;
    sm->dbias = dbias;
}

/* One generic adjoint step (any N and B / C form): G += gy C; dC partial = gy h_t; dB partial = G du; dv += G B;
 * q = G a h_{t-1} feeds d(dt) and dA; then G *= a (to step t-1). */
INLINE void adjoint(int N, const consts_t *k, const float *bv, const float *cv, vf gy, vf du, vf dt, const vf *Hp,
                    const vf *Hn, const vf *Da, vf *Gs, vf *dA, vf *PC, vf *PB, vf *dv, vf *ddt) {
    vf dvv = vsplat(0.0f), ddtt = vsplat(0.0f);
    for (int n = 0; n < N; n++) {
        vf bn = bv ? vsplat(bv[n]) : k->B[n], cn = cv ? vsplat(cv[n]) : k->C[n];
        vf gs = Gs[n] + gy * cn;
        PC[n] = gy * Hn[n];
        PB[n] = gs * du;
        dvv += gs * bn;
        vf q = gs * Da[n] * Hp[n];
        ddtt += q * k->A[n];
        dA[n] += q * dt;
        Gs[n] = gs * Da[n];
    }
    *dv = dvv;
    *ddt = ddtt;
}

/* Any state size and B / C form, one block of one group, step by step. ws: H ((T + 1) N), DA (T N), DT, SG (T). */
static void generic_bwd(const scan_ctx *c, const item_t it_, int j, const consts_t *k, int64_t g, const vf *GY,
                        vf *YS, vf *Gs, sums_t *sm, vf *ws) {
    const item_t it = it_;
    const int64_t L = IP(I_L), T = IP(I_CHUNK), G = IP(I_G), nsb = c->nsb;
    const int N = (int)IP(I_N), w = width(c, &it, j), bvar = IP(I_B_MODE) != 0, cvar = IP(I_C_MODE) != 0;
    const int has_z = PP(P_Z) != NULL;
    const int64_t d0 = it.d0 + j * VL, sbi = it.j0 / c->sbk;
    const int64_t ucs = IP(I_U_SC), dlcs = IP(I_DL_SC);
    const int64_t uo = g * IP(I_U_SG) + it.b * IP(I_U_SB) + d0 * ucs;
    const int64_t dlo = g * IP(I_DL_SG) + it.b * IP(I_DL_SB) + d0 * dlcs;
    const int64_t duo = g * IP(I_DU_SG) + it.b * IP(I_DU_SB) + d0, ddo = g * IP(I_DD_SG) + it.b * IP(I_DD_SB) + d0;
    vf *H = ws, *DA = H + (T + 1) * N, *DT = DA + T * N, *SG = DT + T, PC[NMAX], PB[NMAX];
    for (int64_t c0 = ((L - 1) / T) * T; c0 >= 0; c0 -= T) {
        const int64_t t1 = c0 + T < L ? c0 + T : L;
        const float *cp = ckpt_at(c, c0 / T, it.b, g, d0);
        for (int n = 0; n < N; n++) H[n] = ld(cp + n * w, DT_F32, 0, w);
        for (int64_t t = c0; t < t1; t++) { /* recompute the chunk's states and decays */
            const int64_t i = t - c0;
            vf uu = ldc(PP(P_U), c->adt, uo + t * IP(I_U_ST), ucs, w);
            vf dt = DT[i] = dt_of(c, ldc(PP(P_DELTA), c->adt, dlo + t * IP(I_DL_ST), dlcs, w) + k->bias, &SG[i]);
            for (int n = 0; n < N; n++) H[(i + 1) * N + n] = H[i * N + n];
            STEP_BC(g, t)
            vf y = step_fwd(N, k, bv, cv, dt, dt * uu, H + (i + 1) * N, DA + i * N);
            if (has_z) YS[position(c, g, t)] += y + k->Dv * uu;
        }
        for (int64_t t = t1 - 1; t >= c0; t--) { /* adjoint, backwards */
            const int64_t i = t - c0;
            vf uu = ldc(PP(P_U), c->adt, uo + t * IP(I_U_ST), ucs, w), dt = DT[i], gy = GY[position(c, g, t)], dv, ddt;
            sm->dD += gy * uu;
            STEP_BC(g, t)
            adjoint(N, k, bv, cv, gy, dt * uu, dt, H + i * N, H + (i + 1) * N, DA + i * N, Gs, sm->dA, PC, PB, &dv,
                    &ddt);
            const int64_t part = (((it.b * G + g) * nsb + sbi) * L + t) * N;
            if (cvar) reduce_rows(N, PC, PF(P_DCP) + part, j > 0);
            else for (int n = 0; n < N; n++) sm->dC[n] += PC[n];
            if (bvar) reduce_rows(N, PB, PF(P_DBP) + part, j > 0);
            else for (int n = 0; n < N; n++) sm->dB[n] += PB[n];
            const vf ddm = (ddt + dv * uu) * SG[i];
            sm->dbias += ddm;
            st(PP(P_DU), c->adt, duo + t * IP(I_DU_ST), dv * dt + gy * k->Dv, w);
            st(PP(P_DDELTA), c->adt, ddo + t * IP(I_DD_ST), ddm, w);
        }
    }
}

/* per-(batch row) partials of one block: dA (C, N), dD, dbias (C); constant-form dB / dC (C, N) */
static void store_partials(const scan_ctx *c, int64_t b, int64_t ch0, int w, const sums_t *sm) {
    const int64_t N = IP(I_N), CH = IP(I_G) * IP(I_DG);
    const int bvar = IP(I_B_MODE) != 0, cvar = IP(I_C_MODE) != 0;
    float f[3][VL];
    for (int n = 0; n < N; n++) {
        vspill(f[0], sm->dA[n]);
        vspill(f[1], sm->dB[n]);
        vspill(f[2], sm->dC[n]);
        for (int q = 0; q < w; q++) {
            PF(P_DAP)[(b * CH + ch0 + q) * N + n] = f[0][q];
            if (!bvar) PF(P_DBP)[(b * CH + ch0 + q) * N + n] = f[1][q];
            if (!cvar) PF(P_DCP)[(b * CH + ch0 + q) * N + n] = f[2][q];
        }
    }
    vspill(f[0], sm->dD);
    vspill(f[1], sm->dbias);
    for (int q = 0; q < w; q++) {
        if (PF(P_DDP)) PF(P_DDP)[b * CH + ch0 + q] = f[0][q];
        if (PF(P_DBIASP)) PF(P_DBIASP)[b * CH + ch0 + q] = f[1][q];
    }
}

/* what to bring into L2 while group g of an item runs: the next group's u and delta (or the next item's first, with
 * its dout and z), this group's du and ddelta rows (written at its end), and for the gate's last pass z, dout, dz */
static void plan_bwd(const scan_ctx *c, const item_t *it, int64_t item, int64_t g, prefetch_t *pf) {
    const int64_t G = IP(I_G);
    const int shared = IP(I_O_SG) == 0, last = !shared || g == G - 1;
    const item_t nx = g + 1 < G ? *it : next_item(c, item);
    const int64_t ng = g + 1 < G ? g + 1 : 0;
    if (IP(I_U_SC) != 1 || IP(I_DL_SC) != 1 || IP(I_Z_SC) != 1 || IP(I_O_SC) != 1) return; /* rows are not rows */
    /* where delta is made here (project_rows), no plan at all: keeping the other rows' plans brought nothing
     * measurable (finetune-B, 4 directions, batch 8, fp32: forward + backward 98-102 ms either way) */
    if (IP(I_R)) return;
    plan_add(pf, c, PP(P_U), ng * IP(I_U_SG) + nx.b * IP(I_U_SB) + nx.d0, IP(I_U_ST), 0);
    plan_add(pf, c, PP(P_DELTA), ng * IP(I_DL_SG) + nx.b * IP(I_DL_SB) + nx.d0, IP(I_DL_ST), 0);
    plan_add(pf, c, PP(P_DU), g * IP(I_DU_SG) + it->b * IP(I_DU_SB) + it->d0, IP(I_DU_ST), 1);
    plan_add(pf, c, PP(P_DDELTA), g * IP(I_DD_SG) + it->b * IP(I_DD_SB) + it->d0, IP(I_DD_ST), 1);
    if (last && PP(P_Z)) {
        plan_add(pf, c, PP(P_Z), g * IP(I_Z_SG) + it->b * IP(I_Z_SB) + it->d0, IP(I_Z_ST), 0);
        plan_add(pf, c, PP(P_DOUT), g * IP(I_O_SG) + it->b * IP(I_O_SB) + it->d0, IP(I_O_ST), 0);
        plan_add(pf, c, PP(P_DZ), g * IP(I_DZ_SG) + it->b * IP(I_DZ_SB) + it->d0, IP(I_DZ_ST), 1);
    }
    if (g + 1 == G || !shared) {
        const int64_t zg = shared ? 0 : ng;
        plan_add(pf, c, PP(P_DOUT), zg * IP(I_O_SG) + nx.b * IP(I_O_SB) + nx.d0, IP(I_O_ST), 0);
        plan_add(pf, c, PP(P_Z), zg * IP(I_Z_SG) + nx.b * IP(I_Z_SB) + nx.d0, IP(I_Z_ST), 0);
    }
}

/* workspace (vectors): GY, YS, UL, DL, DUO, DDO (L per block of the item), then the chunk buffers */
static int64_t bwd_ws_per_block(int64_t L) { return 6 * L; }
static int64_t bwd_chunk_ws(int64_t T, int64_t N) {
    const int64_t generic = (2 * T + 1) * N + 2 * T, mixer = (2 * T + 1) * 16 + 4 * T + SB * 17;
    return generic > mixer ? generic : mixer;
}

static void bwd_item(const void *ctx_, int64_t item, float *ws_) {
    const scan_ctx *c = (const scan_ctx *)ctx_;
    const item_t it = item_of(c, item);
    const int64_t G = IP(I_G), L = IP(I_L), Dg = IP(I_DG), N = IP(I_N), M = c->sbk * L;
    const int shared = IP(I_O_SG) == 0, has_z = PP(P_Z) != NULL;
    const float *dlast = PF(P_DLAST);
    vf *GY = (vf *)ws_, *YS = GY + M, *UL = YS + M, *DL = UL + M, *DUO = DL + M, *DDO = DUO + M, *cws = DDO + M;
    vf *pws = cws + bwd_chunk_ws(IP(I_CHUNK), N); /* project_rows' room, where the dt projection is made here */
    consts_t k;
    for (int64_t g = 0; g < G; g++) {
        if (g == 0 || !shared) gate_in(c, &it, g, GY, YS, DUO, DDO); /* DUO, DDO: free until the scans */
        prefetch_t pf = {{0}, {0}, {0}, 0, (int)((it.nj * VL * (c->adt == DT_F32 ? 4 : 2) + 63) / 64)};
        if (c->mixer) {
            gather_rows(c, &it, PP(P_U), g * IP(I_U_SG) + it.b * IP(I_U_SB) + it.d0 * IP(I_U_SC), IP(I_U_ST),
                        IP(I_U_SC), UL, 0);
            if (IP(I_R)) project_rows(c, &it, g, DL, 0, pws, (float *)(pws + c->sbk * IP(I_R)));
            else gather_rows(c, &it, PP(P_DELTA), g * IP(I_DL_SG) + it.b * IP(I_DL_SB) + it.d0 * IP(I_DL_SC),
                             IP(I_DL_ST), IP(I_DL_SC), DL, 0);
            plan_bwd(c, &it, item, g, &pf);
        }
        for (int j = 0; j < it.nj; j++) {
            const int64_t ch0 = g * Dg + it.d0 + j * VL;
            const int w = width(c, &it, j);
            vf Gs[NMAX];
            sums_t sm;
            load_consts(c, ch0, w, (int)N, &k);
            for (int n = 0; n < N; n++) {
                Gs[n] = dlast ? lane_gather(dlast + (it.b * G * Dg) * N + n, ch0, N, w) : vsplat(0.0f);
                sm.dA[n] = sm.dB[n] = sm.dC[n] = vsplat(0.0f);
            }
            sm.dD = sm.dbias = vsplat(0.0f);
            if (c->mixer)
                scan16_bwd(c, &k, g, it.b, it.d0 + j * VL, it.j0 + j, w, UL + j * L, DL + j * L, GY + j * L,
                           YS + j * L, Gs, &sm, DUO + j * L, DDO + j * L, cws, &pf, j, it.nj);
            else
                generic_bwd(c, it, j, &k, g, GY + j * L, YS + j * L, Gs, &sm, cws);
            store_partials(c, it.b, ch0, w, &sm);
        }
        if (c->mixer) {
            scatter_rows(c, &it, PP(P_DU), g * IP(I_DU_SG) + it.b * IP(I_DU_SB) + it.d0, IP(I_DU_ST), DUO);
            scatter_rows(c, &it, PP(P_DDELTA), g * IP(I_DD_SG) + it.b * IP(I_DD_SB) + it.d0, IP(I_DD_ST), DDO);
        }
        if (has_z && (!shared || g == G - 1)) gate_out(c, &it, g, YS, DUO, DDO); /* free again */
    }
}

/* fixed-order reductions of the partials */
static void reduce_bc_item(const void *ctx_, int64_t item, float *ws) {
    /* item = (b, g, which): variable-form dB or dC (b, g, L, N) = sum over the work items' partials (each already
     * the sum of its blocks, in order), item by item (the loads are sequential and vectorise; the same additions in
     * the same order as a per-element loop) */
    const scan_ctx *c = (const scan_ctx *)ctx_;
    (void)ws;
    const int64_t L = IP(I_L), N = IP(I_N), nblk = c->nsb;
    const int which = (int)(item % 2);
    const int64_t bg = item / 2;
    if (IP(which ? I_C_MODE : I_B_MODE) == 0) return;
    const float *part = PF(which ? P_DCP : P_DBP) + bg * nblk * L * N;
    float *dst = PF(which ? P_DC : P_DB) + bg * L * N;
    for (int64_t e = 0; e < L * N; e++) dst[e] = 0.0f + part[e];
    for (int64_t k = 1; k < nblk; k++) {
        const float *pk = part + k * L * N;
        for (int64_t e = 0; e < L * N; e++) dst[e] += pk[e];
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

/* The partial sums live in a buffer of the library's own (kept between calls): dB, dC (variable forms: per (batch
 * row, group, work item) rows of L x N; constant forms: per (batch row, channel) N), dA (per (batch row, channel)
 * N), dD and ddelta_bias (per (batch row, channel)). */
int armv_scan_bwd(const int64_t *ip, void *const *pp_in) {
    if (ip[I_N] < 1 || ip[I_N] > NMAX || (ip[I_R] && (!mixer_form(ip) || !pp_in[P_WDT]))) return -2;
    void *pp[P_COUNT];
    memcpy(pp, pp_in, sizeof pp);
    scan_ctx c = make_ctx(ip, pp, bwd_ws_per_block(ip[I_L]), SBK_BWD, 4 << 20, 16);
    const int64_t B = ip[I_BATCH], CH = ip[I_G] * ip[I_DG], N = ip[I_N];
    const int64_t var = B * ip[I_G] * c.nsb * ip[I_L] * N, cst = B * CH * N, bc = var > cst ? var : cst;
    float *part = ws_get((size_t)(2 * bc + cst + 2 * B * CH));
    if (!part) return -1;
    pp[P_DBP] = part;
    pp[P_DCP] = part + bc;
    pp[P_DAP] = part + 2 * bc;
    pp[P_DDP] = pp[P_DDV] ? part + 2 * bc + cst : NULL;
    pp[P_DBIASP] = pp[P_DBIAS] ? part + 2 * bc + cst + B * CH : NULL;
    const int nt = (int)ip[I_THREADS];
    const size_t ws = (size_t)(c.sbk * (bwd_ws_per_block(ip[I_L]) + ip[I_R]) + bwd_chunk_ws(ip[I_CHUNK], N) +
                               proj_x_vectors(ip)) * VL;
    int rc = parallel_for(nt, B * c.nsb, bwd_item, &c, ws);
    if (!rc) rc = parallel_for(nt, B * ip[I_G] * 2, reduce_bc_item, &c, 0);
    if (!rc) rc = parallel_for(nt, CH, reduce_batch_item, &c, 0);
    ws_put(part);
    return rc;
}
