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
typedef struct { const int64_t *ip; void *const *pp; int64_t nblk; } conv_ctx;
#define CI(k) (c->ip[k])
#define CF(k) ((float *)c->pp[k])

INLINE void conv_pre(const conv_ctx *c, int64_t g, int64_t b, int64_t t, int64_t d0, int w, const float *wk,
                     const float *bias, float *s) {
    const int64_t K = CI(C_K), L = CI(C_L);
    const int32_t *idx = (const int32_t *)c->pp[Q_IDX];
    const float *x = CF(Q_X) + b * CI(C_X_SB) + d0;
    LANES(j) s[j] = bias[j];
    for (int64_t k = 0; k < K; k++) {
        const int64_t src = t - K + 1 + k;
        if (src < 0) continue;
        const int64_t pos = idx ? idx[g * L + src] : src;
        float xv[W];
        load_lanes(xv, x + pos * CI(C_X_ST), w);
        LANES(j) s[j] += wk[k * W + j] * xv[j];
    }
}

INLINE void conv_weights(const conv_ctx *c, int64_t ch0, int w, float *wk, float *bias) {
    const int64_t K = CI(C_K);
    for (int64_t k = 0; k < K; k++)
        for (int j = 0; j < W; j++) wk[k * W + j] = j < w ? CF(Q_W)[(ch0 + j) * K + k] : 0.0f;
    for (int j = 0; j < W; j++) bias[j] = (CF(Q_BIAS) && j < w) ? CF(Q_BIAS)[ch0 + j] : 0.0f;
}

static void conv_fwd_item(const void *ctx_, int64_t item, float *ws) {
    const conv_ctx *c = (const conv_ctx *)ctx_;
    (void)ws;
    const int64_t Dg = CI(C_DG), L = CI(C_L), batch = CI(C_BATCH);
    const int64_t b = item / c->nblk, d0 = (item % c->nblk) * W;
    const int w = (int)(Dg - d0 < W ? Dg - d0 : W);
    float wk[8 * W], bias[W], s[W];
    for (int64_t g = 0; g < CI(C_G); g++) {
        conv_weights(c, g * Dg + d0, w, wk, bias);
        float *u = CF(Q_U) + ((g * batch + b) * L) * Dg + d0;
        for (int64_t t = 0; t < L; t++) {
            conv_pre(c, g, b, t, d0, w, wk, bias, s);
            LANES(j) s[j] = s[j] * v_sigmoid(s[j]);
            store_lanes(u + t * Dg, s, w, 0);
        }
    }
}

static void conv_bwd_item(const void *ctx_, int64_t item, float *ws) {
    const conv_ctx *c = (const conv_ctx *)ctx_;
    (void)ws;
    const int64_t Dg = CI(C_DG), L = CI(C_L), batch = CI(C_BATCH), K = CI(C_K), G = CI(C_G);
    const int64_t b = item / c->nblk, d0 = (item % c->nblk) * W;
    const int w = (int)(Dg - d0 < W ? Dg - d0 : W);
    const int32_t *idx = (const int32_t *)c->pp[Q_IDX];
    const float *x = CF(Q_X) + b * CI(C_X_SB) + d0;
    float *dx = CF(Q_DX) + b * L * Dg + d0; /* (batch, L, Dg) contiguous */
    for (int64_t t = 0; t < L; t++) { float zero[W] = {0}; store_lanes(dx + t * Dg, zero, w, 0); }
    float wk[8 * W], bias[W], s[W], dw[8 * W], db[W];
    for (int64_t g = 0; g < G; g++) {
        const int64_t ch0 = g * Dg + d0;
        conv_weights(c, ch0, w, wk, bias);
        for (int64_t k = 0; k < K; k++) LANES(j) dw[k * W + j] = 0.0f;
        LANES(j) db[j] = 0.0f;
        const float *du = CF(Q_DU) + ((g * batch + b) * L) * Dg + d0;
        for (int64_t t = 0; t < L; t++) {
            float gu[W];
            conv_pre(c, g, b, t, d0, w, wk, bias, s);
            load_lanes(gu, du + t * Dg, w);
            LANES(j) {
                float sg = v_sigmoid(s[j]);
                gu[j] *= sg * (1.0f + s[j] * (1.0f - sg));
                db[j] += gu[j];
            }
            for (int64_t k = 0; k < K; k++) {
                const int64_t src = t - K + 1 + k;
                if (src < 0) continue;
                const int64_t pos = idx ? idx[g * L + src] : src;
                float xv[W], gx[W];
                load_lanes(xv, x + pos * CI(C_X_ST), w);
                LANES(j) { dw[k * W + j] += gu[j] * xv[j]; gx[j] = gu[j] * wk[k * W + j]; }
                store_lanes(dx + pos * Dg, gx, w, 1);
            }
        }
        float *dwp = CF(Q_DWP) + b * G * Dg * K, *dbp = CF(Q_DBP) + b * G * Dg;
        for (int j = 0; j < w; j++) {
            for (int64_t k = 0; k < K; k++) dwp[(ch0 + j) * K + k] = dw[k * W + j];
            dbp[ch0 + j] = db[j];
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
    conv_ctx c = {ip, pp, (ip[C_DG] + W - 1) / W};
    return parallel_for((int)ip[C_THREADS], ip[C_BATCH] * c.nblk, conv_fwd_item, &c, 0);
}

int armv_conv_bwd(const int64_t *ip, void *const *pp) {
    if (ip[C_K] < 1 || ip[C_K] > 8) return -2;
    conv_ctx c = {ip, pp, (ip[C_DG] + W - 1) / W};
    if (parallel_for((int)ip[C_THREADS], ip[C_BATCH] * c.nblk, conv_bwd_item, &c, 0)) return -1;
    return parallel_for((int)ip[C_THREADS], ip[C_G] * ip[C_DG], conv_reduce_item, &c, 0);
}
