/* armvision CPU kernels: what scan_cpu.c and conv_cpu.c share (vector-lane macros, exp / log1p / softplus /
 * sigmoid written to vectorise, lane loads and stores, the transposing reduction, and a small thread pool). */
#ifndef ARMV_COMMON_H
#define ARMV_COMMON_H
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef W
#define W 16 /* lanes (channels) per work item */
#endif
#define NMAX 64  /* largest state size */

#if defined(__clang__)
#define SIMD _Pragma("clang loop vectorize(enable) interleave(enable)")
#elif defined(__GNUC__)
#define SIMD _Pragma("GCC ivdep")
#else
#define SIMD
#endif
#define INLINE static inline __attribute__((always_inline))
#define LANES(j) SIMD for (int j = 0; j < W; j++)

INLINE float as_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
INLINE int32_t as_int(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* 2^n * 2^r for an integral n in [-126, 127] and r in [-1/2, 1/2]: 2^r by a degree-5 fit (relative error ~2e-7),
 * 2^n by building the float's exponent. */
INLINE float pow2_parts(float n, float r) {
    float p = 1.32647273e-3f; /* 2^r = 1 + r q(r): exactly 1 at r = 0, so decays near 1 carry no bias */
    p = p * r + 9.67151299e-3f;
    p = p * r + 5.55073358e-2f;
    p = p * r + 2.40222424e-1f;
    p = p * r + 6.93147004e-1f;
    p = 1.0f + p * r;
    return p * as_float(((int32_t)n + 127) << 23);
}

/* exp(x) = 2^n * 2^r, n = round(x log2 e), r = x log2 e - n in [-1/2, 1/2] (log2 e split in two parts so that r is
 * exact to float rounding); x clamped to [-87.33, 88.37], so the result stays normal (NaN propagates). Written so
 * that compilers vectorise it. */
INLINE float v_exp(float x) {
    x = x < -87.33f ? -87.33f : x; /* then n >= -126: a normal result, and |r| <= 1/2 needs no clamp */
    x = x > 88.37f ? 88.37f : x;   /* n <= 127 */
    float n = rintf(x * 1.44269504f);
    return pow2_parts(n, fmaf(x, 1.44269502f, -n) + x * 1.9259629e-8f);
}

/* 2^x (x clamped to [-126, 127]): the scan's decays exp(dt A) = 2^(dt A log2 e) with A log2 e formed once per work
 * item, which saves the change of base per state and step (the relative error grows to ~|x| 1e-7, which the dt A
 * product's own rounding already had). */
INLINE float v_exp2(float x) {
    x = x < -126.0f ? -126.0f : x;
    x = x > 127.0f ? 127.0f : x;
    float n = rintf(x);
    return pow2_parts(n, x - n);
}

/* log(1 + y) for y >= 0, ~1 ulp: log of u = 1 + y by exponent split and an atanh series, plus the rounding
 * correction (y - (u - 1)) / u. Needs strict float semantics (no -ffast-math reassociation). */
INLINE float v_log1p(float y) {
    float u = 1.0f + y;
    int32_t bits = as_int(u);
    int32_t e = ((bits >> 23) & 0xff) - 127;
    float m = as_float((bits & 0x007fffff) | 0x3f800000); /* mantissa in [1, 2) */
    int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    float fe = (float)(e + big);
    float f = m - 1.0f;
    float s = f / (2.0f + f), s2 = s * s;
    float lm = 2.0f * s * (1.0f + s2 * (0.333333333f + s2 * (0.2f + s2 * (0.142857143f + s2 * 0.111111111f))));
    return fe * 0.693147181f + lm + (y - (u - 1.0f)) / u;
}

INLINE float v_softplus(float x) { return x > 20.0f ? x : v_log1p(v_exp(x)); }
INLINE float v_sigmoid(float x) { return 1.0f / (1.0f + v_exp(-x)); }

INLINE void load_lanes(float *dst, const float *src, int w) {
    if (w == W) {
        LANES(j) dst[j] = src[j];
    } else {
        for (int j = 0; j < W; j++) dst[j] = j < w ? src[j] : 0.0f;
    }
}
INLINE void store_lanes(float *dst, const float *src, int w, int add) {
    if (w == W) {
        if (add) { LANES(j) dst[j] += src[j]; }
        else { LANES(j) dst[j] = src[j]; }
    } else {
        for (int j = 0; j < w; j++) dst[j] = add ? dst[j] + src[j] : src[j];
    }
}
/* out[n] = sum over lanes of P[n] for n < N (a transposing reduction: with AVX2, 8 rows at a time by
 * horizontal adds instead of one shuffle tree per row). Same order of additions for every call. */
#if defined(__AVX2__)
#include <immintrin.h>
INLINE void reduce_rows(int N, const float (*P)[W], float *out) {
    int n = 0;
    for (; n + 8 <= N; n += 8) {
        __m256 a[8];
        for (int r = 0; r < 8; r++) {
            a[r] = _mm256_loadu_ps(P[n + r]);
            for (int h = 8; h < W; h += 8) a[r] = _mm256_add_ps(a[r], _mm256_loadu_ps(P[n + r] + h));
        }
        __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
        __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
        __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
        __m256 lo = _mm256_permute2f128_ps(q0, q1, 0x20), hi = _mm256_permute2f128_ps(q0, q1, 0x31);
        _mm256_storeu_ps(out + n, _mm256_add_ps(lo, hi));
    }
    for (; n < N; n++) {
        float s = 0.0f;
        for (int j = 0; j < W; j++) s += P[n][j];
        out[n] = s;
    }
}
#else
INLINE void reduce_rows(int N, const float (*P)[W], float *out) {
    for (int n = 0; n < N; n++) {
        float s[4] = {0, 0, 0, 0};
        for (int j = 0; j < W; j += 4) { s[0] += P[n][j]; s[1] += P[n][j + 1]; s[2] += P[n][j + 2]; s[3] += P[n][j + 3]; }
        out[n] = (s[0] + s[1]) + (s[2] + s[3]);
    }
}
#endif

/* ------------------------------------------------------------------------------------------------------------
 * Threads: items 0..n-1 handed out by an atomic counter to nthreads workers, each with its own workspace.
 * ---------------------------------------------------------------------------------------------------------- */
typedef void (*item_fn)(const void *ctx, int64_t item, float *ws);
typedef struct { item_fn fn; const void *ctx; int64_t n; int64_t next; size_t ws; int fail; } pool_t;

static void *worker(void *arg) {
    pool_t *p = (pool_t *)arg;
    float *ws = p->ws ? (float *)malloc(p->ws * sizeof(float)) : NULL;
    if (p->ws && !ws) { __atomic_store_n(&p->fail, 1, __ATOMIC_SEQ_CST); return NULL; }
    for (;;) {
        int64_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n) break;
        p->fn(p->ctx, i, ws);
    }
    free(ws);
    return NULL;
}

static int parallel_for(int nthreads, int64_t n, item_fn fn, const void *ctx, size_t ws_floats) {
    pool_t p = {fn, ctx, n, 0, ws_floats, 0};
    if (nthreads > n) nthreads = (int)n;
    if (nthreads < 1) nthreads = 1;
    pthread_t th[256];
    int started = 0;
    for (int i = 1; i < nthreads && i < 256; i++)
        if (pthread_create(&th[started], NULL, worker, &p) == 0) started++;
    worker(&p);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    return p.fail ? -1 : 0;
}


#endif /* ARMV_COMMON_H */
