/* armvision CPU kernels: what scan_fwd.c, scan_bwd.c, conv_cpu.c and gate_cpu.c share. One source for every
 * instruction set: the vector type `vf` holds VL float lanes (GCC/clang vector extensions), VL chosen by the
 * compiler's target (-march=native at build time): 16 with AVX-512, 8 with AVX/AVX2, 4 otherwise (SSE2, NEON, any
 * other CPU: the generic code). ARMV_VL=4|8|16 overrides it (tests build the narrower widths on a wider CPU, so
 * every width's logic is tested). A few helpers have an instruction-set-specific body (rounding, 2^x by vscalefps
 * on AVX-512); each has a generic body that computes the same function. Also here: exp / log1p / softplus /
 * sigmoid written for vectors, loads and stores of float32 and bfloat16 rows (bf16 rounded to nearest even by
 * integer arithmetic, as torch rounds), the transposing lane reduction and a small thread pool. */
#ifndef ARMV_COMMON_H
#define ARMV_COMMON_H
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifndef ARMV_VL
#if defined(__AVX512F__)
#define ARMV_VL 16
#elif defined(__AVX__)
#define ARMV_VL 8
#else
#define ARMV_VL 4
#endif
#endif
#if ARMV_VL != 4 && ARMV_VL != 8 && ARMV_VL != 16
#error "ARMV_VL must be 4, 8 or 16"
#endif
#define VL ARMV_VL
#define ARMV_STR2(x) #x
#define ARMV_STR(x) ARMV_STR2(x)
#define VL_STR ARMV_STR(ARMV_VL)
#define UNROLL _Pragma("GCC unroll 16")
#define NMAX 64 /* largest state size */
#define INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef uint32_t vu __attribute__((vector_size(VL * 4)));
typedef uint16_t vh __attribute__((vector_size(VL * 2)));

/* the instruction-set paths taken by this build (reported by armv_build_info) */
#if VL == 16 && defined(__AVX512F__)
#define ARMV_ISA "avx512"
#define ARMV_X512 1
#elif VL == 8 && defined(__AVX__)
#define ARMV_ISA "avx2"
#define ARMV_X256 1
#elif VL == 4 && defined(__SSE4_1__)
#define ARMV_ISA "sse4"
#define ARMV_X128 1
#elif VL == 4 && defined(__ARM_NEON)
#include <arm_neon.h>
#define ARMV_ISA "neon"
#define ARMV_NEON 1
#else
#define ARMV_ISA "generic"
#endif

/* one broadcast (0 + s would be an add, since -0 + 0 is +0; a loop over lanes becomes lane-by-lane inserts) */
#if VL == 16
#define ARMV_SPLAT(s) {s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}
#elif VL == 8
#define ARMV_SPLAT(s) {s, s, s, s, s, s, s, s}
#else
#define ARMV_SPLAT(s) {s, s, s, s}
#endif
INLINE vf vsplat(float s) {
    vf v = ARMV_SPLAT(s);
    return v;
}
INLINE vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
INLINE vf vselect(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); } /* mask ? a : b */
/* max(lo, x) and min(hi, x) that keep NaN (x NaN -> x): one instruction on x86 (maxps returns its second operand
 * when either is NaN) */
INLINE vf vmax_keep_nan(vf lo, vf x) {
#if defined(ARMV_X512)
    return (vf)_mm512_max_ps((__m512)lo, (__m512)x);
#elif defined(ARMV_X256)
    return (vf)_mm256_max_ps((__m256)lo, (__m256)x);
#elif defined(ARMV_X128)
    return (vf)_mm_max_ps((__m128)lo, (__m128)x);
#else
    return vselect(lo > x, lo, x);
#endif
}
INLINE vf vmin_keep_nan(vf hi, vf x) {
#if defined(ARMV_X512)
    return (vf)_mm512_min_ps((__m512)hi, (__m512)x);
#elif defined(ARMV_X256)
    return (vf)_mm256_min_ps((__m256)hi, (__m256)x);
#elif defined(ARMV_X128)
    return (vf)_mm_min_ps((__m128)hi, (__m128)x);
#else
    return vselect(hi < x, hi, x);
#endif
}

/* round to nearest (ties to even) */
INLINE vf vround(vf x) {
#if defined(ARMV_X512)
    return (vf)_mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(ARMV_X256)
    return (vf)_mm256_round_ps((__m256)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(ARMV_X128)
    return (vf)_mm_round_ps((__m128)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(ARMV_NEON)
    return (vf)vrndnq_f32((float32x4_t)x);
#else
    const vf magic = vsplat(12582912.0f); /* 1.5 * 2^23: exact for |x| < 2^22, which every caller guarantees */
    return (x + magic) - magic;
#endif
}

/* 1 + r (c1 + r (c2 + r (c3 + r (c4 + r c5)))) by Horner's rule: five FMAs */
INLINE vf poly5_one(vf r, float c1, float c2, float c3, float c4, float c5) {
    vf p = vsplat(c5);
    p = p * r + c4;
    p = p * r + c3;
    p = p * r + c2;
    p = p * r + c1;
    return 1.0f + p * r;
}

/* 2^r for r in [-1/2, 1/2], a degree-5 fit (relative error ~2e-7), exactly 1 at r = 0 (decays near 1 carry no
 * bias through long sequences) */
INLINE vf pow2_frac(vf r) {
    return poly5_one(r, 6.93147004e-1f, 2.40222424e-1f, 5.55073358e-2f, 9.67151299e-3f, 1.32647273e-3f);
}

/* 2^n for integral n in [-126, 127] (a float with that exponent) */
INLINE vf pow2_int(vf n) {
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return (vf)e;
}

/* 2^r for r in [0, 1], a degree-5 fit for the AVX-512 path below (relative error ~2e-7), exactly 1 at r = 0 and
 * exactly 2 at r = 1: x - floor(x) rounds to 1 for a tiny negative x, and p(1) 2^floor(x) = 1 there */
INLINE vf pow2_unit(vf r) {
    return poly5_one(r, 6.93151414e-1f, 2.40160942e-1f, 5.58162779e-2f, 8.99149291e-3f, 1.87985005e-3f);
}

/* 2^x: the scan's decays exp(dt A) = 2^(dt A log2 e), A log2 e formed once per work item. AVX-512 (with DQ):
 * vreduceps gives r = x - floor(x) exactly and vscalefps multiplies p(r) by 2^floor(x) with the hardware's own
 * range handling (0 below the float range, -inf included; inf above; NaN kept): 7 instructions, no clamp. Others:
 * x clamped to [-126, 127] (results stay normal), round, 2^n built in the exponent bits (NaN propagates). */
INLINE vf v_exp2(vf x) {
#if defined(ARMV_X512) && defined(__AVX512DQ__)
    const vf r = (vf)_mm512_reduce_ps((__m512)x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); /* x - floor(x) */
    return (vf)_mm512_scalef_ps((__m512)pow2_unit(r), (__m512)x);
#else
    x = vmax_keep_nan(vsplat(-126.0f), x);
    x = vmin_keep_nan(vsplat(127.0f), x);
    vf n = vround(x);
    vf nn = vselect(n == n, n, vsplat(0.0f)); /* a NaN n must not reach the integer conversion */
    return pow2_frac(x - n) * pow2_int(nn);
#endif
}

/* exp(x) = 2^n 2^r with n = round(x log2 e) and r = x log2 e - n computed with log2 e split in two parts, so that r
 * is exact to float rounding; x clamped to [-87.33, 88.37] (a normal result; NaN propagates). */
INLINE vf v_exp(vf x) {
    x = vmax_keep_nan(vsplat(-87.33f), x);
    x = vmin_keep_nan(vsplat(88.37f), x);
    vf n = vround(x * 1.44269504f);
    vf r = (x * 1.44269502f - n) + x * 1.9259629e-8f;
    vf nn = vselect(n == n, n, vsplat(0.0f));
    return pow2_frac(r) * pow2_int(nn);
}

/* 1 / a: on AVX-512 an approximate reciprocal (14 bits) refined by one Newton step (about 1 ulp; vdivps on 512-bit
 * vectors is the slowest instruction in these loops), elsewhere a division */
INLINE vf vrcp(vf a) {
#if defined(ARMV_X512)
    vf r = (vf)_mm512_rcp14_ps((__m512)a);
    return r + r * (1.0f - a * r);
#else
    return 1.0f / a;
#endif
}
INLINE vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }

/* log(1 + e) for e in [0, 1]: log((1 + s) / (1 - s)) = 2 atanh(s) with s = e / (2 + e) in [0, 1/3], by its series to
 * s^13 (truncation below 1e-8 relative) */
INLINE vf log1p_unit(vf e) {
    vf s = e * vrcp(2.0f + e), s2 = s * s;
    vf p = s2 * (1.0f / 13.0f) + (1.0f / 11.0f);
    p = p * s2 + (1.0f / 9.0f);
    p = p * s2 + (1.0f / 7.0f);
    p = p * s2 + 0.2f;
    p = p * s2 + (1.0f / 3.0f);
    return (2.0f * s) * (p * s2 + 1.0f);
}

/* e^-|x|: by v_exp2 on AVX-512 (half v_exp's instructions; relative error ~1e-7 |x| from rounding the product; with
 * AVX512DQ a denormal or 0 below float32's normal range, where v_exp stops at e^-87.33: sigmoid and softplus take
 * either), v_exp elsewhere */
INLINE vf v_exp_neg_abs(vf x) {
#if defined(ARMV_X512)
    return v_exp2(vabs(x) * -1.44269504f);
#else
    return v_exp(-vabs(x));
#endif
}

/* softplus(x) = max(x, 0) + log(1 + e^-|x|), and with sig != NULL its derivative, sigmoid(x): one exp, one
 * reciprocal, no cancellation for either sign (NaN propagates, +-inf give inf and 0) */
INLINE vf v_softplus_sig(vf x, vf *sig) {
    vf e = v_exp_neg_abs(x);
    if (sig) {
        vf r = vrcp(1.0f + e);
        *sig = vselect(x >= 0.0f, r, e * r);
    }
    return vmax_keep_nan(vsplat(0.0f), x) + log1p_unit(e);
}
INLINE vf v_softplus(vf x) { return v_softplus_sig(x, NULL); }
INLINE vf v_softplus_grad(vf x, vf *sig) { return v_softplus_sig(x, sig); }

/* sigmoid(x) = 1 / (1 + e^-x), from e^-|x| for either sign */
INLINE vf v_sigmoid(vf x) {
    vf e = v_exp_neg_abs(x), r = vrcp(1.0f + e);
    return vselect(x >= 0.0f, r, e * r);
}

/* ---- rows of float32 or bfloat16 (dtype codes: 0 float32, 1 bfloat16) --------------------------------------- */
enum { DT_F32 = 0, DT_BF16 = 1 };

INLINE vf bf16_to_vf(vh h) { return (vf)(__builtin_convertvector(h, vu) << 16); }
/* float32 -> bfloat16 bits, rounded to nearest even as torch rounds (NaN stays a quiet NaN) */
INLINE vh vf_to_bf16(vf x) {
    vu b = (vu)x;
    vu r = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
    vu q = (b >> 16) | 0x40u;
    vu nan = (vu)(x != x);
    return __builtin_convertvector((r & ~nan) | (q & nan), vh);
}

/* VL lanes at element offset `off` of a float32 or bfloat16 array; the first w lanes only (the rest 0) if w < VL */
INLINE vf ld(const void *base, int dt, int64_t off, int w) {
    if (w == VL) {
        if (dt == DT_F32) return vload((const float *)base + off);
        vh h;
        memcpy(&h, (const uint16_t *)base + off, sizeof h);
        return bf16_to_vf(h);
    }
    float tmp[VL] = {0};
    for (int j = 0; j < w && j < VL; j++) {
        if (dt == DT_F32) tmp[j] = ((const float *)base)[off + j];
        else { uint32_t bits = (uint32_t)((const uint16_t *)base)[off + j] << 16; memcpy(&tmp[j], &bits, 4); }
    }
    return vload(tmp);
}
INLINE void st(void *base, int dt, int64_t off, vf v, int w) {
    if (dt == DT_F32) {
        if (w == VL) { vstore((float *)base + off, v); return; }
        float tmp[VL];
        vstore(tmp, v);
        memcpy((float *)base + off, tmp, (size_t)(w < VL ? w : VL) * 4);
        return;
    }
    vh h = vf_to_bf16(v);
    memcpy((uint16_t *)base + off, &h, (size_t)(w < VL ? w : VL) * 2);
}
/* one scalar of a float32 or bfloat16 array */
INLINE float ld1(const void *base, int dt, int64_t off) {
    if (dt == DT_F32) return ((const float *)base)[off];
    uint32_t bits = (uint32_t)((const uint16_t *)base)[off] << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
/* lanes of a vector as floats (indexing a vector by a variable would keep it out of registers) */
INLINE void vspill(float *dst, vf v) { vstore(dst, v); }
INLINE float vsum(vf v) {
    float s = 0.0f;
    for (int j = 0; j < VL; j++) s += v[j];
    return s;
}

/* out[n] (+)= sum over lanes of P[n] for n < N, all rows at once (a transposing reduction: each level pairs rows and
 * halves the width, one shuffle pair and one add per two rows). The same additions in the same order for every
 * call, so results do not depend on threads. */
#if defined(ARMV_X512)
INLINE void reduce_rows(int N, const vf *P, float *out, int add) {
    /* lane k of the final vector holds row lane_row[k] (an involution, so it also maps rows to lanes) */
    const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    for (int n0 = 0; n0 < N; n0 += 16) {
        const int rows = N - n0 < 16 ? N - n0 : 16;
        __m512 q[16];
        for (int r = 0; r < 16; r++) q[r] = r < rows ? (__m512)P[n0 + r] : _mm512_setzero_ps();
        for (int r = 0; r < 8; r++) /* rows r | r + 8: 256-bit halves */
            q[r] = _mm512_add_ps(_mm512_shuffle_f32x4(q[r], q[r + 8], 0x44),
                                 _mm512_shuffle_f32x4(q[r], q[r + 8], 0xee));
        for (int r = 0; r < 4; r++) /* 128-bit blocks: rows r, r + 8, r + 4, r + 12 */
            q[r] = _mm512_add_ps(_mm512_shuffle_f32x4(q[r], q[r + 4], 0x88),
                                 _mm512_shuffle_f32x4(q[r], q[r + 4], 0xdd));
        for (int r = 0; r < 2; r++) { /* 64-bit pairs */
            __m512d a = _mm512_castps_pd(q[r]), b = _mm512_castps_pd(q[r + 2]);
            q[r] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
        }
        __m512 s = _mm512_add_ps(_mm512_shuffle_ps(q[0], q[1], 0x88), _mm512_shuffle_ps(q[0], q[1], 0xdd));
        s = _mm512_permutexvar_ps(order, s);
        const __mmask16 m = (__mmask16)(rows == 16 ? 0xffffu : (1u << rows) - 1u);
        if (add) s = _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + n0), s);
        _mm512_mask_storeu_ps(out + n0, m, s);
    }
}
#elif defined(ARMV_X256)
INLINE void reduce_rows(int N, const vf *P, float *out, int add) {
    for (int n0 = 0; n0 < N; n0 += 8) {
        const int rows = N - n0 < 8 ? N - n0 : 8;
        __m256 a[8];
        for (int r = 0; r < 8; r++) a[r] = r < rows ? (__m256)P[n0 + r] : _mm256_setzero_ps();
        __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
        __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
        __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
        __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
        float tmp[8];
        _mm256_storeu_ps(tmp, s);
        for (int r = 0; r < rows; r++) out[n0 + r] = add ? out[n0 + r] + tmp[r] : tmp[r];
    }
}
#else
INLINE void reduce_rows(int N, const vf *P, float *out, int add) {
    for (int n = 0; n < N; n++) out[n] = add ? out[n] + vsum(P[n]) : vsum(P[n]);
}
#endif

/* ------------------------------------------------------------------------------------------------------------
 * Threads: items 0..n-1 handed out by an atomic counter to nthreads workers, each with its own workspace.
 * ---------------------------------------------------------------------------------------------------------- */
typedef void (*item_fn)(const void *ctx, int64_t item, float *ws);
typedef struct { item_fn fn; const void *ctx; int64_t n; int64_t next; size_t ws; int fail; } pool_t;

/* per-thread workspaces are kept between calls (a fresh allocation of this size is a fresh mapping from the
 * system, and its first touch costs a page fault per page on every call) */
#define WS_SLOTS 64
static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { float *p; size_t n; int busy; } ws_cache[WS_SLOTS];

static float *ws_get(size_t n) {
    float *p = NULL;
    pthread_mutex_lock(&ws_lock);
    int pick = -1;
    for (int i = 0; i < WS_SLOTS; i++)
        if (!ws_cache[i].busy && (pick < 0 || (ws_cache[i].n >= n && ws_cache[pick].n < n))) pick = i;
    if (pick >= 0) {
        if (ws_cache[pick].n < n) {
            free(ws_cache[pick].p);
            ws_cache[pick].p = NULL;
            ws_cache[pick].n = 0;
            if (posix_memalign((void **)&ws_cache[pick].p, 64, n * sizeof(float)) == 0) ws_cache[pick].n = n;
            else ws_cache[pick].p = NULL;
        }
        if (ws_cache[pick].p) { ws_cache[pick].busy = 1; p = ws_cache[pick].p; }
    }
    pthread_mutex_unlock(&ws_lock);
    if (!p && posix_memalign((void **)&p, 64, n * sizeof(float)) != 0) p = NULL; /* every slot busy: uncached */
    return p;
}

/* at most this many bytes stay cached per source file between calls; a buffer returned beyond it is freed */
#ifndef ARMV_WS_CACHE_BYTES
#define ARMV_WS_CACHE_BYTES ((size_t)128 << 20)
#endif
static void ws_put(float *p) {
    pthread_mutex_lock(&ws_lock);
    int cached = 0;
    size_t total = 0;
    for (int i = 0; i < WS_SLOTS; i++) total += ws_cache[i].n * sizeof(float);
    for (int i = 0; i < WS_SLOTS; i++)
        if (ws_cache[i].p == p) {
            ws_cache[i].busy = 0;
            cached = 1;
            if (total > ARMV_WS_CACHE_BYTES) { /* over the budget: not kept */
                free(ws_cache[i].p);
                ws_cache[i].p = NULL;
                ws_cache[i].n = 0;
            }
        }
    pthread_mutex_unlock(&ws_lock);
    if (!cached) free(p);
}

static void *worker(void *arg) {
    pool_t *p = (pool_t *)arg;
    float *ws = p->ws ? ws_get(p->ws) : NULL;
    if (p->ws && !ws) { __atomic_store_n(&p->fail, 1, __ATOMIC_SEQ_CST); return NULL; }
    for (;;) {
        int64_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n) break;
        p->fn(p->ctx, i, ws);
    }
    if (ws) ws_put(ws);
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
