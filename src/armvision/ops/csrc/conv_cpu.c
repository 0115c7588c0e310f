/* armvision: the Mamba mixer's depthwise causal conv1d + SiLU for CPUs (see scan_cpu.c for the build). */
#include "armv_common.h"

/* ------------------------------------------------------------------------------------------------------------
 * Depthwise causal conv1d + SiLU over several scan orders of one sequence (the mixer's conv, channels-last):
 *   u[g, b, t, d] = silu(bias[g Dg + d] + sum_k w[g Dg + d, k] x[b, pos_g(t - K + 1 + k), d])
 * x (batch, L, Dg) with strides (sb, st) and contiguous channels, shared by the G groups; pos_g(s) = idx[g][s]
 * (identity without idx), zero before the sequence; u (G, batch, L, Dg) contiguous. Backward: dx accumulated
 * over the groups in order by the item that owns (b, channel block); dw, dbias per batch row, summed in order.
 * ---------------------------------------------------------------------------------------------------------- */
enum { C_BATCH, C_L, C_G, C_DG, C_K, C_THREADS, C_X_SB, C_X_ST, C_COUNT };
enum { Q_X, Q_W, Q_BIAS, Q_IDX, Q_U, Q_DU, Q_DX, Q_DWP, Q_DBP, Q_DW, Q_DB, Q_COUNT };
typedef struct { const int64_t *ip; void *const *pp; } conv_ctx;
#define CI(k) (c->ip[k])
#define CF(k) ((float *)c->pp[k])

/* A work item walks the sequence and, at each step, whole rows of channels: the K taps' rows of x and the row of
 * u (or du, dx) are read and written contiguously, which keeps the hardware prefetchers busy; walking one block
 * of channels down the sequence instead touched a new cache line per step in rows a multiple of 4 KiB apart,
 * which all fall in the same few L1 sets. The weights are transposed to (K, Dg) in the workspace. */
INLINE void conv_weights_t(const conv_ctx *c, int64_t g, float *wt) {
    const int64_t K = CI(C_K), Dg = CI(C_DG);
    const float *wg = CF(Q_W) + g * Dg * K;
    for (int64_t d = 0; d < Dg; d++)
        for (int64_t k = 0; k < K; k++) wt[k * Dg + d] = wg[d * K + k];
}

/* s = bias + sum_k w_k x[pos_g(t - K + 1 + k)] over all channels of group g at step t */
INLINE void conv_pre_row(const conv_ctx *c, int64_t g, int64_t b, int64_t t, const float *wt, float *s) {
    const int64_t K = CI(C_K), L = CI(C_L), Dg = CI(C_DG);
    const int32_t *idx = (const int32_t *)c->pp[Q_IDX];
    const float *bias = CF(Q_BIAS) ? CF(Q_BIAS) + g * Dg : NULL;
    const float *x = CF(Q_X) + b * CI(C_X_SB);
    if (bias) { SIMD for (int64_t d = 0; d < Dg; d++) s[d] = bias[d]; }
    else { SIMD for (int64_t d = 0; d < Dg; d++) s[d] = 0.0f; }
    for (int64_t k = 0; k < K; k++) {
        const int64_t src = t - K + 1 + k;
        if (src < 0) continue;
        const float *xr = x + (idx ? idx[g * L + src] : src) * CI(C_X_ST), *wk = wt + k * Dg;
        SIMD for (int64_t d = 0; d < Dg; d++) s[d] += wk[d] * xr[d];
    }
}

static void conv_fwd_item(const void *ctx_, int64_t item, float *ws) {
    /* item = (b, g); workspace: the transposed weights (K x Dg) */
    const conv_ctx *c = (const conv_ctx *)ctx_;
    const int64_t Dg = CI(C_DG), L = CI(C_L), batch = CI(C_BATCH), G = CI(C_G);
    const int64_t b = item / G, g = item % G;
    conv_weights_t(c, g, ws);
    float *u = CF(Q_U) + ((g * batch + b) * L) * Dg;
    for (int64_t t = 0; t < L; t++) {
        float *ut = u + t * Dg;
        conv_pre_row(c, g, b, t, ws, ut);
        SIMD for (int64_t d = 0; d < Dg; d++) ut[d] = ut[d] * v_sigmoid(ut[d]);
    }
}

static void conv_bwd_item(const void *ctx_, int64_t b, float *ws) {
    /* item = batch row b: dx[b] accumulated over the groups, steps and taps in that order (the same order for any
     * thread count); dw, dbias partials of row b. Workspace: wt, dwt (K x Dg), db, s, gu (Dg) */
    const conv_ctx *c = (const conv_ctx *)ctx_;
    const int64_t Dg = CI(C_DG), L = CI(C_L), batch = CI(C_BATCH), K = CI(C_K), G = CI(C_G);
    const int32_t *idx = (const int32_t *)c->pp[Q_IDX];
    const float *x = CF(Q_X) + b * CI(C_X_SB);
    float *dx = CF(Q_DX) + b * L * Dg; /* (batch, L, Dg) contiguous */
    float *wt = ws, *dwt = ws + K * Dg, *db = dwt + K * Dg, *s = db + Dg, *gu = s + Dg;
    SIMD for (int64_t e = 0; e < L * Dg; e++) dx[e] = 0.0f;
    for (int64_t g = 0; g < G; g++) {
        conv_weights_t(c, g, wt);
        SIMD for (int64_t e = 0; e < K * Dg; e++) dwt[e] = 0.0f;
        SIMD for (int64_t d = 0; d < Dg; d++) db[d] = 0.0f;
        const float *du = CF(Q_DU) + ((g * batch + b) * L) * Dg;
        for (int64_t t = 0; t < L; t++) {
            conv_pre_row(c, g, b, t, wt, s);
            const float *dut = du + t * Dg;
            SIMD for (int64_t d = 0; d < Dg; d++) {
                float sg = v_sigmoid(s[d]);
                gu[d] = dut[d] * (sg * (1.0f + s[d] * (1.0f - sg)));
                db[d] += gu[d];
            }
            for (int64_t k = 0; k < K; k++) {
                const int64_t src = t - K + 1 + k;
                if (src < 0) continue;
                const int64_t pos = idx ? idx[g * L + src] : src;
                const float *xr = x + pos * CI(C_X_ST), *wk = wt + k * Dg;
                float *dxr = dx + pos * Dg, *dwk = dwt + k * Dg;
                SIMD for (int64_t d = 0; d < Dg; d++) { dwk[d] += gu[d] * xr[d]; dxr[d] += gu[d] * wk[d]; }
            }
        }
        float *dwp = CF(Q_DWP) + (b * G + g) * Dg * K, *dbp = CF(Q_DBP) + (b * G + g) * Dg;
        for (int64_t d = 0; d < Dg; d++) {
            for (int64_t k = 0; k < K; k++) dwp[d * K + k] = dwt[k * Dg + d];
            dbp[d] = db[d];
        }
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
    conv_ctx c = {ip, pp};
    return parallel_for((int)ip[C_THREADS], ip[C_BATCH] * ip[C_G], conv_fwd_item, &c, (size_t)(ip[C_K] * ip[C_DG]));
}

int armv_conv_bwd(const int64_t *ip, void *const *pp) {
    if (ip[C_K] < 1 || ip[C_K] > 8) return -2;
    conv_ctx c = {ip, pp};
    const size_t ws = (size_t)((2 * ip[C_K] + 3) * ip[C_DG]);
    if (parallel_for((int)ip[C_THREADS], ip[C_BATCH], conv_bwd_item, &c, ws)) return -1;
    return parallel_for((int)ip[C_THREADS], ip[C_G] * ip[C_DG], conv_reduce_item, &c, 0);
}
