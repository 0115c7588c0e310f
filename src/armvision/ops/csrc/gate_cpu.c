/* armvision: the SwiGLU gate silu(a + ba) * (b + bb) for CPUs, forward and backward in one pass each (see
 * scan_fwd.c for the build). a, b, out, dout, da, db: rows x cols contiguous float32 or bfloat16 elements of one
 * dtype, math in float32; ba, bb: optional float32 biases of length cols (the two Linear layers' own, added here
 * instead of by their GEMMs, which would copy them into each output first). */
#include "armv_common.h"

enum { S_ROWS, S_COLS, S_DT, S_THREADS, S_COUNT };
enum { Q_A, Q_B, Q_BA, Q_BB, Q_OUT, Q_DOUT, Q_DA, Q_DB, Q_COUNT };
typedef struct { const int64_t *ip; void *const *pp; int64_t rows_per_item; } gate_ctx;
#define CHUNK 16384 /* elements per work item, about */

/* a + ba and b + bb at element e of a row (column col), w lanes */
INLINE void gate_inputs(const gate_ctx *c, int64_t e, int64_t col, int w, vf *a, vf *b) {
    const int dt = (int)c->ip[S_DT];
    const float *ba = (const float *)c->pp[Q_BA], *bb = (const float *)c->pp[Q_BB];
    *a = ld(c->pp[Q_A], dt, e, w);
    *b = ld(c->pp[Q_B], dt, e, w);
    if (ba) *a += ld(ba, DT_F32, col, w);
    if (bb) *b += ld(bb, DT_F32, col, w);
}

static void gate_fwd_item(const void *ctx_, int64_t item, float *ws) {
    const gate_ctx *c = (const gate_ctx *)ctx_;
    (void)ws;
    const int dt = (int)c->ip[S_DT];
    const int64_t cols = c->ip[S_COLS], r0 = item * c->rows_per_item;
    const int64_t r1 = r0 + c->rows_per_item < c->ip[S_ROWS] ? r0 + c->rows_per_item : c->ip[S_ROWS];
    for (int64_t r = r0; r < r1; r++)
        for (int64_t col = 0; col < cols; col += VL) {
            const int w = (int)(cols - col < VL ? cols - col : VL);
            vf a, b;
            gate_inputs(c, r * cols + col, col, w, &a, &b);
            st(c->pp[Q_OUT], dt, r * cols + col, a * v_sigmoid(a) * b, w);
        }
}

static void gate_bwd_item(const void *ctx_, int64_t item, float *ws) {
    const gate_ctx *c = (const gate_ctx *)ctx_;
    (void)ws;
    const int dt = (int)c->ip[S_DT];
    const int64_t cols = c->ip[S_COLS], r0 = item * c->rows_per_item;
    const int64_t r1 = r0 + c->rows_per_item < c->ip[S_ROWS] ? r0 + c->rows_per_item : c->ip[S_ROWS];
    for (int64_t r = r0; r < r1; r++)
        for (int64_t col = 0; col < cols; col += VL) {
            const int64_t e = r * cols + col;
            const int w = (int)(cols - col < VL ? cols - col : VL);
            vf a, b;
            gate_inputs(c, e, col, w, &a, &b);
            const vf g = ld(c->pp[Q_DOUT], dt, e, w), s = v_sigmoid(a);
            st(c->pp[Q_DA], dt, e, g * b * (s * (1.0f + a * (1.0f - s))), w);
            st(c->pp[Q_DB], dt, e, g * (a * s), w);
        }
}

static gate_ctx gate_ctx_of(const int64_t *ip, void *const *pp) {
    gate_ctx c = {ip, pp, CHUNK / (ip[S_COLS] > 0 ? ip[S_COLS] : 1)};
    if (c.rows_per_item < 1) c.rows_per_item = 1;
    return c;
}

int armv_gate_fwd(const int64_t *ip, void *const *pp) {
    gate_ctx c = gate_ctx_of(ip, pp);
    return parallel_for((int)ip[S_THREADS], (ip[S_ROWS] + c.rows_per_item - 1) / c.rows_per_item, gate_fwd_item,
                        &c, 0);
}

int armv_gate_bwd(const int64_t *ip, void *const *pp) {
    gate_ctx c = gate_ctx_of(ip, pp);
    return parallel_for((int)ip[S_THREADS], (ip[S_ROWS] + c.rows_per_item - 1) / c.rows_per_item, gate_bwd_item,
                        &c, 0);
}
