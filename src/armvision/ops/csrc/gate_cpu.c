/* armvision: the SwiGLU gate silu(a) * b for CPUs, forward and backward in one pass each (see scan_fwd.c for the
 * build). a, b, out, dout, da, db: n contiguous float32 or bfloat16 elements of one dtype, math in float32. */
#include "armv_common.h"

enum { S_N, S_DT, S_THREADS, S_COUNT };
enum { Q_A, Q_B, Q_OUT, Q_DOUT, Q_DA, Q_DB, Q_COUNT };
typedef struct { const int64_t *ip; void *const *pp; } gate_ctx;
#define CHUNK 16384 /* elements per work item */

static void gate_fwd_item(const void *ctx_, int64_t item, float *ws) {
    const gate_ctx *c = (const gate_ctx *)ctx_;
    (void)ws;
    const int dt = (int)c->ip[S_DT];
    const int64_t n = c->ip[S_N], e0 = item * CHUNK, e1 = e0 + CHUNK < n ? e0 + CHUNK : n;
    for (int64_t e = e0; e < e1; e += VL) {
        const int w = (int)(e1 - e < VL ? e1 - e : VL);
        const vf a = ld(c->pp[Q_A], dt, e, w), b = ld(c->pp[Q_B], dt, e, w);
        st(c->pp[Q_OUT], dt, e, a * v_sigmoid(a) * b, w);
    }
}

static void gate_bwd_item(const void *ctx_, int64_t item, float *ws) {
    const gate_ctx *c = (const gate_ctx *)ctx_;
    (void)ws;
    const int dt = (int)c->ip[S_DT];
    const int64_t n = c->ip[S_N], e0 = item * CHUNK, e1 = e0 + CHUNK < n ? e0 + CHUNK : n;
    for (int64_t e = e0; e < e1; e += VL) {
        const int w = (int)(e1 - e < VL ? e1 - e : VL);
        const vf a = ld(c->pp[Q_A], dt, e, w), b = ld(c->pp[Q_B], dt, e, w), g = ld(c->pp[Q_DOUT], dt, e, w);
        const vf s = v_sigmoid(a);
        st(c->pp[Q_DA], dt, e, g * b * (s * (1.0f + a * (1.0f - s))), w);
        st(c->pp[Q_DB], dt, e, g * (a * s), w);
    }
}

int armv_gate_fwd(const int64_t *ip, void *const *pp) {
    gate_ctx c = {ip, pp};
    return parallel_for((int)ip[S_THREADS], (ip[S_N] + CHUNK - 1) / CHUNK, gate_fwd_item, &c, 0);
}

int armv_gate_bwd(const int64_t *ip, void *const *pp) {
    gate_ctx c = {ip, pp};
    return parallel_for((int)ip[S_THREADS], (ip[S_N] + CHUNK - 1) / CHUNK, gate_bwd_item, &c, 0);
}
