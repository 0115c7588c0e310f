/* armvision: the SwiGLU gate silu(a + ba) * (b + bb) for CPUs, forward and backward in one pass each (see
 * scan_fwd.c for the build). a, b, out, dout, da, db: rows x cols contiguous float32 or bfloat16 elements of one
 * dtype, math in float32; ba, bb: optional float32 biases of length cols (the two Linear layers' own, added here
 * instead of by their GEMMs, which would copy them into each output first). */
#include "armv_common.h"

enum { S_ROWS, S_COLS, S_DT, S_THREADS, S_COUNT };
enum { Q_A, Q_B, Q_BA, Q_BB, Q_OUT, Q_DOUT, Q_DA, Q_DB, Q_COUNT };
typedef struct { const int64_t *ip; void *const *pp; int64_t rows_per_item; } gate_ctx;
#define CHUNK 16384 /* elements per work item, about */

/* one work item's pointers and bounds, read once into locals (stores through the outputs could alias the context,
 * which would make the compiler reload it inside the loop) */
typedef struct {
    const void *a, *b, *dout;
    void *out, *da, *db;
    const float *ba, *bb;
    int dt;
    int64_t cols, e0, e1; /* elements [e0, e1) of whole rows */
} gate_item;

static gate_item gate_item_of(const gate_ctx *c, int64_t item) {
    const int64_t rows = c->ip[S_ROWS], cols = c->ip[S_COLS], r0 = item * c->rows_per_item;
    const int64_t r1 = r0 + c->rows_per_item < rows ? r0 + c->rows_per_item : rows;
    gate_item g = {c->pp[Q_A], c->pp[Q_B], c->pp[Q_DOUT], c->pp[Q_OUT], c->pp[Q_DA], c->pp[Q_DB],
                   (const float *)c->pp[Q_BA], (const float *)c->pp[Q_BB], (int)c->ip[S_DT], cols, r0 * cols,
                   r1 * cols};
    return g;
}

/* a + ba and b + bb at element e (column col), w lanes */
INLINE void gate_inputs(const gate_item *g, int dt, int64_t e, int64_t col, int w, vf *a, vf *b) {
    *a = ld(g->a, dt, e, w);
    *b = ld(g->b, dt, e, w);
    if (g->ba) *a += ld(g->ba, DT_F32, col, w);
    if (g->bb) *b += ld(g->bb, DT_F32, col, w);
}

INLINE void gate_fwd_at(const gate_item *g, int dt, int64_t e, int64_t col, int w) {
    vf a, b;
    gate_inputs(g, dt, e, col, w, &a, &b);
    st(g->out, dt, e, a * v_sigmoid(a) * b, w);
}

INLINE void gate_bwd_at(const gate_item *g, int dt, int64_t e, int64_t col, int w) {
    vf a, b;
    gate_inputs(g, dt, e, col, w, &a, &b);
    const vf d = ld(g->dout, dt, e, w), s = v_sigmoid(a);
    st(g->da, dt, e, d * b * (s * (1.0f + a * (1.0f - s))), w);
    st(g->db, dt, e, d * (a * s), w);
}

/* every row of the item: whole vectors, then the row's tail; one loop per dtype so that each is branch-free */
#define GATE_ROWS(AT, g, DT)                                                                                        \
    for (int64_t r0 = (g).e0; r0 < (g).e1; r0 += (g).cols) {                                                        \
        int64_t col = 0;                                                                                            \
        for (; col + VL <= (g).cols; col += VL) AT(&(g), DT, r0 + col, col, VL);                                    \
        if (col < (g).cols) AT(&(g), DT, r0 + col, col, (int)((g).cols - col));                                     \
    }

static void gate_fwd_item(const void *ctx_, int64_t item, float *ws) {
    (void)ws;
    const gate_item g = gate_item_of((const gate_ctx *)ctx_, item);
    if (g.dt == DT_F32) { GATE_ROWS(gate_fwd_at, g, DT_F32) }
    else { GATE_ROWS(gate_fwd_at, g, DT_BF16) }
}

static void gate_bwd_item(const void *ctx_, int64_t item, float *ws) {
    (void)ws;
    const gate_item g = gate_item_of((const gate_ctx *)ctx_, item);
    if (g.dt == DT_F32) { GATE_ROWS(gate_bwd_at, g, DT_F32) }
    else { GATE_ROWS(gate_bwd_at, g, DT_BF16) }
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
