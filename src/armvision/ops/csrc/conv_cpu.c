/* armvision: the Mamba mixer's depthwise causal conv1d + SiLU for CPUs (see scan_fwd.c for the build). */
#include "armv_common.h"

/* ------------------------------------------------------------------------------------------------------------
 * Depthwise causal conv1d + SiLU over several scan orders of one sequence (the mixer's conv, channels-last):
 *   u[g, b, t, d] = silu(bias[g Dg + d] + sum_k w[g Dg + d, k] x[b, pos_g(t - K + 1 + k), d])
 * x (batch, L, Dg) with strides (sb, st) and contiguous channels, shared by the G groups; pos_g(s) = idx[g][s]
 * (identity without idx), zero before the sequence; u (G, batch, L, Dg) contiguous. x, u, du and dx are float32 or
 * bfloat16 (one dtype, math in float32); weights, bias and their gradients float32.
 * A work item walks the sequence over a chunk of CB channels at each step: the K taps' rows of x and the row of u
 * (or du, dx) are read and written contiguously, which keeps the hardware prefetchers busy. Backward: an item is
 * (batch row, channel chunk); dx is accumulated over the groups, steps and taps in that order (the same for any
 * thread count); dw, dbias per batch row, summed over the batch in order.
 * ---------------------------------------------------------------------------------------------------------- */
enum { C_BATCH, C_L, C_G, C_DG, C_K, C_THREADS, C_X_SB, C_X_ST, C_DT, C_COUNT };
enum { Q_X, Q_W, Q_BIAS, Q_IDX, Q_U, Q_DU, Q_DX, Q_DWP, Q_DBP, Q_DW, Q_DB, Q_COUNT };
typedef struct { const int64_t *ip; void *const *pp; int64_t ncb; int dt; } conv_ctx;
#define CI(k) (c->ip[k])
#define CF(k) ((float *)c->pp[k])
#define CB 256 /* channels per chunk (a multiple of every VL) */

/* the chunk's weights transposed to (K, CB) and its bias */
INLINE void conv_weights_t(const conv_ctx *c, int64_t g, int64_t c0, int64_t nc, float *wt, float *bias) {
    const int64_t K = CI(C_K), Dg = CI(C_DG);
    const float *wg = CF(Q_W) + (g * Dg + c0) * K;
    if (nc < CB) { memset(wt, 0, (size_t)(K * CB) * sizeof(float)); memset(bias, 0, CB * sizeof(float)); }
    for (int64_t d = 0; d < nc; d++) {
        for (int64_t k = 0; k < K; k++) wt[k * CB + d] = wg[d * K + k];
        bias[d] = CF(Q_BIAS) ? CF(Q_BIAS)[g * Dg + c0 + d] : 0.0f;
    }
}

/* the newest tap's row piece PF_STEPS steps ahead: in a column-major order the steps' rows are far apart in memory,
 * where no hardware prefetcher follows */
#define PF_STEPS 4
INLINE void conv_prefetch(const conv_ctx *c, int64_t g, int64_t b, int64_t t, int64_t c0, int64_t nc) {
    const int64_t L = CI(C_L);
    if (t + PF_STEPS >= L) return;
    const int32_t *idx = (const int32_t *)c->pp[Q_IDX];
    const int64_t pos = idx ? idx[g * L + t + PF_STEPS] : t + PF_STEPS, esz = c->dt == DT_F32 ? 4 : 2;
    const char *row = (const char *)c->pp[Q_X] + (b * CI(C_X_SB) + pos * CI(C_X_ST) + c0) * esz;
    for (int64_t o = 0; o < nc * esz; o += 64) __builtin_prefetch(row + o);
}

/* the K taps of step t: element offsets of their rows of x, offsets of their weight rows (k CB) and their positions
 * in the sequence (taps before the sequence left out); returns how many there are */
INLINE int conv_taps(const conv_ctx *c, int64_t g, int64_t b, int64_t t, int64_t c0, int64_t *off, int64_t *wk,
                     int64_t *pos) {
    const int64_t K = CI(C_K), L = CI(C_L);
    const int32_t *idx = (const int32_t *)c->pp[Q_IDX];
    int n = 0;
    for (int64_t k = 0; k < K; k++) {
        const int64_t src = t - K + 1 + k;
        if (src < 0) continue;
        pos[n] = idx ? idx[g * L + src] : src;
        off[n] = b * CI(C_X_SB) + pos[n] * CI(C_X_ST) + c0;
        wk[n++] = k * CB;
    }
    return n;
}

static void conv_fwd_item(const void *ctx_, int64_t item, float *ws) {
    /* item = (b, g, chunk); workspace: weights (K x CB), bias (CB) */
    const conv_ctx *c = (const conv_ctx *)ctx_;
    const int64_t Dg = CI(C_DG), L = CI(C_L), batch = CI(C_BATCH), G = CI(C_G);
    const int64_t cb = item % c->ncb, g = (item / c->ncb) % G, b = item / (c->ncb * G);
    const int64_t c0 = cb * CB, nc = Dg - c0 < CB ? Dg - c0 : CB;
    float *wt = ws, *bias = ws + 8 * CB;
    conv_weights_t(c, g, c0, nc, wt, bias);
    const int64_t uo = ((g * batch + b) * L) * Dg + c0;
    int64_t off[8], wk[8], pos[8];
    for (int64_t t = 0; t < L; t++) {
        conv_prefetch(c, g, b, t, c0, nc);
        const int n = conv_taps(c, g, b, t, c0, off, wk, pos);
        if (c->dt == DT_F32 && nc == CB) { /* the common case: whole vectors of float32, plain loads and stores */
            const float *x = (const float *)c->pp[Q_X];
            float *u = (float *)c->pp[Q_U] + uo + t * Dg;
            for (int64_t d = 0; d < CB; d += VL) {
                vf s = vload(bias + d);
                for (int q = 0; q < n; q++) s += vload(wt + wk[q] + d) * vload(x + off[q] + d);
                vstore(u + d, s * v_sigmoid(s));
            }
            continue;
        }
        for (int64_t d = 0; d < nc; d += VL) {
            const int w = (int)(nc - d < VL ? nc - d : VL);
            vf s = vload(bias + d);
            for (int q = 0; q < n; q++) s += vload(wt + wk[q] + d) * ld(c->pp[Q_X], c->dt, off[q] + d, w);
            st(c->pp[Q_U], c->dt, uo + t * Dg + d, s * v_sigmoid(s), w);
        }
    }
}

static void conv_bwd_item(const void *ctx_, int64_t item, float *ws) {
    /* item = (b, chunk). Workspace: wt, dwt (K x CB), bias, db (CB), dx rows (L x CB) */
    const conv_ctx *c = (const conv_ctx *)ctx_;
    const int64_t Dg = CI(C_DG), L = CI(C_L), batch = CI(C_BATCH), K = CI(C_K), G = CI(C_G);
    const int64_t cb = item % c->ncb, b = item / c->ncb, c0 = cb * CB, nc = Dg - c0 < CB ? Dg - c0 : CB;
    int64_t off[8], wk[8], pos[8];
    float *wt = ws, *dwt = ws + 8 * CB, *bias = dwt + 8 * CB, *db = bias + CB, *dx = db + CB;
    memset(dx, 0, (size_t)(L * CB) * sizeof(float));
    for (int64_t g = 0; g < G; g++) {
        conv_weights_t(c, g, c0, nc, wt, bias);
        memset(dwt, 0, (size_t)(K * CB) * sizeof(float));
        memset(db, 0, CB * sizeof(float));
        const int64_t duo = ((g * batch + b) * L) * Dg + c0;
        for (int64_t t = 0; t < L; t++) {
            conv_prefetch(c, g, b, t, c0, nc);
            const int n = conv_taps(c, g, b, t, c0, off, wk, pos);
            for (int64_t d = 0; d < nc; d += VL) {
                const int w = (int)(nc - d < VL ? nc - d : VL);
                vf xr[8], s = vload(bias + d);
                for (int q = 0; q < n; q++) {
                    xr[q] = ld(c->pp[Q_X], c->dt, off[q] + d, w);
                    s += vload(wt + wk[q] + d) * xr[q];
                }
                const vf sg = v_sigmoid(s);
                const vf gu = ld(c->pp[Q_DU], c->dt, duo + t * Dg + d, w) * (sg * (1.0f + s * (1.0f - sg)));
                vstore(db + d, vload(db + d) + gu);
                for (int q = 0; q < n; q++) {
                    vstore(dwt + wk[q] + d, vload(dwt + wk[q] + d) + gu * xr[q]);
                    vstore(dx + pos[q] * CB + d, vload(dx + pos[q] * CB + d) + gu * vload(wt + wk[q] + d));
                }
            }
        }
        float *dwp = CF(Q_DWP) + ((b * G + g) * Dg + c0) * K, *dbp = CF(Q_DBP) + (b * G + g) * Dg + c0;
        for (int64_t d = 0; d < nc; d++) {
            for (int64_t k = 0; k < K; k++) dwp[d * K + k] = dwt[k * CB + d];
            dbp[d] = db[d];
        }
    }
    for (int64_t t = 0; t < L; t++)
        for (int64_t d = 0; d < nc; d += VL) {
            const int w = (int)(nc - d < VL ? nc - d : VL);
            st(c->pp[Q_DX], c->dt, (b * L + t) * Dg + c0 + d, vload(dx + t * CB + d), w);
        }
}

static void conv_reduce_item(const void *ctx_, int64_t ch, float *ws) {
    const conv_ctx *c = (const conv_ctx *)ctx_;
    (void)ws;
    const int64_t CH = CI(C_G) * CI(C_DG), K = CI(C_K);
    for (int64_t k = 0; k < K; k++) {
        float s = 0.0f;
        for (int64_t b = 0; b < CI(C_BATCH); b++) s += CF(Q_DWP)[(b * CH + ch) * K + k];
        CF(Q_DW)[ch * K + k] = s;
    }
    float s = 0.0f;
    for (int64_t b = 0; b < CI(C_BATCH); b++) s += CF(Q_DBP)[b * CH + ch];
    CF(Q_DB)[ch] = s;
}

int armv_conv_fwd(const int64_t *ip, void *const *pp) {
    if (ip[C_K] < 1 || ip[C_K] > 8) return -2;
    conv_ctx c = {ip, pp, (ip[C_DG] + CB - 1) / CB, (int)ip[C_DT]};
    return parallel_for((int)ip[C_THREADS], ip[C_BATCH] * ip[C_G] * c.ncb, conv_fwd_item, &c, 9 * CB);
}

int armv_conv_bwd(const int64_t *ip, void *const *pp) {
    if (ip[C_K] < 1 || ip[C_K] > 8) return -2;
    conv_ctx c = {ip, pp, (ip[C_DG] + CB - 1) / CB, (int)ip[C_DT]};
    const size_t ws = (size_t)(18 * CB + ip[C_L] * CB);
    if (parallel_for((int)ip[C_THREADS], ip[C_BATCH] * c.ncb, conv_bwd_item, &c, ws)) return -1;
    return parallel_for((int)ip[C_THREADS], ip[C_G] * ip[C_DG], conv_reduce_item, &c, 0);
}
