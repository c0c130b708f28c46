/* attn.c - see attn.h. */
#include "kernels/attn.h"

#include <math.h>

#include "kernels/cpu.h"
#include "kernels/quant.h"

/* Scratch, per query head: a score for every key (then its probability,
 * rounded to F16 and kept as a float), q rounded to F16 (as floats) and the
 * output accumulators; rows padded so that each starts on a 64-byte line. */
struct attn_scratch {
    size_t n_stride, d_stride;  /* floats per row */
    float *score;               /* [n_q][n_stride] */
    float *qf;                  /* [n_q][d_stride] */
    float *acc;                 /* [n_q][d_stride] */
};

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* Chunks of 16 dims the fast path runs for a head: one of the instantiated
 * counts (2, 3, 4, 6, 8), covering head_dim. */
static int fast_chunks(int head_dim) {
    const int need = (head_dim + 15) / 16;
    return need <= 4 ? (need < 2 ? 2 : need) : need <= 6 ? 6 : need;
}

static struct attn_scratch scratch_strides(int n_tokens, int head_dim) {
    return (struct attn_scratch){ .n_stride = ((size_t)n_tokens + 15) / 16 * 16,
                                  .d_stride = 16 * (size_t)fast_chunks(head_dim) };
}

static struct attn_scratch scratch_layout(void *mem, int n_tokens, int head_dim, int n_q) {
    struct attn_scratch s = scratch_strides(n_tokens, head_dim);
    s.score = mem;
    s.qf = s.score + (size_t)n_q * s.n_stride;
    s.acc = s.qf + (size_t)n_q * s.d_stride;
    return s;
}

size_t attn_scratch_bytes(int n_tokens, int head_dim, int n_q) {
    const struct attn_scratch s = scratch_strides(n_tokens, head_dim);
    return (size_t)n_q * (s.n_stride + 2 * s.d_stride) * sizeof(float);
}

/* x[0, n): scores in, probabilities rounded to F16 out: max, exp, double sum, scale. */
static void softmax_ref(float *x, int n) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float e = expf(x[i] - max);
        x[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] = qt_f16_to_f32(qt_f32_to_f16(x[i] * inv));
}

void attn_heads_ref(const float *q, int n_q, int kv_head, const struct attn_kv *kv, float scale, float *out,
                    void *scratch) {
    const int n = kv->n_tokens, hd = kv->head_dim, bs = kv->block_size;
    const struct attn_scratch s = scratch_layout(scratch, n, hd, n_q);
    for (int h = 0; h < n_q; h++) {
        const float *qh = q + (size_t)h * hd;
        float *score = s.score, *qf = s.qf, *o = out + (size_t)h * hd;
        for (int d = 0; d < hd; d++) qf[d] = qt_f16_to_f32(qt_f32_to_f16(qh[d]));
        for (int i = 0; i < n; i++) {
            const size_t at = attn_kv_index(kv->blocks[i / bs], kv_head, i % bs, bs, kv->n_head_kv, hd);
            float dot = 0.0f;
            for (int d = 0; d < hd; d++) dot += qf[d] * qt_f16_to_f32(kv->k_base[at + d]);
            score[i] = dot * scale;
        }
        softmax_ref(score, n);
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int i = 0; i < n; i++) {
            const size_t at = attn_kv_index(kv->blocks[i / bs], kv_head, i % bs, bs, kv->n_head_kv, hd);
            for (int d = 0; d < hd; d++) o[d] += score[i] * qt_f16_to_f32(kv->v_base[at + d]);
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/simd_avx512.h"

/* The same steps with 16 lanes: K and V rows converted 16 halves at a time,
 * q.k by FMA in lanes then one horizontal sum per key (ggml's F16 dot works
 * the same way). Keys are walked block by block; a key row is converted once
 * and dotted with every query head of the group, and a block's V rows (one
 * run of block_size * head_dim halves, in L1 after the first head) are
 * weighted into each head's accumulators in turn. The runs are brought in
 * ahead of the arithmetic by touch_runs. Masked loads cover head dims that
 * are not multiples of 16. */

/* K (and V) bytes touched ahead at a time: whole contexts up to 4096 tokens
 * of head_dim 128 stay in one window, which measured best (L3-resident). */
#define ATTN_WINDOW_BYTES ((size_t)1 << 20)
#define ATTN_MAX_CHUNKS 8       /* head_dim <= 128 on this path */

/* Load every 64-byte line of the K runs (k != NULL) and V runs (v != NULL)
 * of blocks [w0, w1), block by block, back to back. The loads are
 * independent, so the core keeps many misses in flight, and the compute loops
 * that follow hit L1/L2. Measured on a 16-sequence decode step with the KV in
 * DRAM: 2.3x faster attention; software prefetches (one block ahead, or all
 * at once) gained nothing. K and V touched in one loop beat two loops. */
__attribute__((target("avx512f")))
static void touch_runs(const uint16_t *k, const uint16_t *v, const int32_t *blocks, int w0, int w1,
                       size_t block_stride, size_t run) {
    __m512i t = _mm512_setzero_si512();
    unsigned tail = 0;
    for (int bi = w0; bi < w1; bi++) {
        const size_t at = (size_t)blocks[bi] * block_stride;
        size_t o = 0;
        for (; o + 32 <= run; o += 32) {
            if (k) t = _mm512_or_si512(t, _mm512_loadu_si512(k + at + o));
            if (v) t = _mm512_or_si512(t, _mm512_loadu_si512(v + at + o));
        }
        if (o < run) tail |= (k ? k[at + o] : 0u) | (v ? v[at + o] : 0u);
    }
    __asm__ volatile("" : : "v"(t), "r"(tail));
}

/* softmax_ref with 16 lanes where that changes no bit: the max (NaN scores
 * skipped as there), the division and the rounding to F16. */
__attribute__((target("avx512f,f16c")))
static void softmax_avx512(float *x, int n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask16_first(n - i);
        vmax = _mm512_max_ps(_mm512_mask_loadu_ps(vmax, m, x + i), vmax);
    }
    const float max = _mm512_reduce_max_ps(vmax);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float e = expf(x[i] - max);
        x[i] = e;
        sum += (double)e;
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask16_first(n - i);
        const __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv),
                                          _MM_FROUND_TO_NEAREST_INT);
        _mm512_mask_storeu_ps(x + i, m, _mm512_cvtph_ps(h));
    }
}

/* nc = chunks of 16 dims (fast_chunks), a constant so the per-chunk arrays live in
 * registers; chunks past head_dim have an empty mask (loads give zeros, which
 * add nothing to a dot product, and nothing is stored). */
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"), always_inline))
static inline void attn_heads_nc(const float *q, int n_q, int kv_head, const struct attn_kv *kv, float scale,
                                 float *out, void *scratch, const int nc) {
    const int n = kv->n_tokens, bs = kv->block_size, hd = kv->head_dim;
    const struct attn_scratch s = scratch_layout(scratch, n, hd, n_q);
    const size_t run = (size_t)bs * (size_t)hd;     /* halves of one head in one block */
    const size_t head0 = attn_kv_index(0, kv_head, 0, bs, kv->n_head_kv, hd);
    const size_t block_stride = attn_kv_index(1, 0, 0, bs, kv->n_head_kv, hd);
    const int n_blocks = (n + bs - 1) / bs;
    const int win = ATTN_WINDOW_BYTES / (run * sizeof(uint16_t)) > 1 ? (int)(ATTN_WINDOW_BYTES / (run * sizeof(uint16_t))) : 1;
    __mmask16 mask[ATTN_MAX_CHUNKS];
    for (int c = 0; c < nc; c++) mask[c] = mask16_first(hd - 16 * c);
    for (int h = 0; h < n_q; h++)
        for (int c = 0; c < nc; c++) {
            __m256i r = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mask[c], q + (size_t)h * hd + 16 * c),
                                        _MM_FROUND_TO_NEAREST_INT);
            _mm512_store_ps(s.qf + h * s.d_stride + 16 * c, _mm512_cvtph_ps(r));   /* q rounded to F16 */
            _mm512_store_ps(s.acc + h * s.d_stride + 16 * c, _mm512_setzero_ps());
        }

    const uint16_t *k_head = kv->k_base + head0, *v_head = kv->v_base + head0;
    touch_runs(k_head, v_head, kv->blocks, 0, min_int(win, n_blocks), block_stride, run);
    for (int bi = 0; bi < n_blocks; bi++) {
        if (bi > 0 && bi % win == 0)
            touch_runs(k_head, NULL, kv->blocks, bi, min_int(bi + win, n_blocks), block_stride, run);
        const uint16_t *kb = k_head + (size_t)kv->blocks[bi] * block_stride;
        const int b0 = bi * bs, cnt = min_int(n - b0, bs);
        for (int r = 0; r < cnt; r++) {
            __m512 kc[ATTN_MAX_CHUNKS];
            _Pragma("GCC unroll 8") for (int c = 0; c < nc; c++)
                kc[c] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask[c], kb + (size_t)r * hd + 16 * c));
            for (int h = 0; h < n_q; h++) {
                const float *qh = s.qf + h * s.d_stride;
                __m512 acc = _mm512_setzero_ps();
                _Pragma("GCC unroll 8") for (int c = 0; c < nc; c++)
                    acc = _mm512_fmadd_ps(_mm512_load_ps(qh + 16 * c), kc[c], acc);
                s.score[h * s.n_stride + (size_t)(b0 + r)] = _mm512_reduce_add_ps(acc) * scale;
            }
        }
    }
    for (int h = 0; h < n_q; h++) softmax_avx512(s.score + h * s.n_stride, n);

    for (int bi = 0; bi < n_blocks; bi++) {
        if (bi > 0 && bi % win == 0)
            touch_runs(NULL, v_head, kv->blocks, bi, min_int(bi + win, n_blocks), block_stride, run);
        const uint16_t *vb = v_head + (size_t)kv->blocks[bi] * block_stride;
        const int b0 = bi * bs, cnt = min_int(n - b0, bs);
        for (int h = 0; h < n_q; h++) {
            const float *ph = s.score + h * s.n_stride + b0;
            float *ah = s.acc + h * s.d_stride;
            __m512 acc[ATTN_MAX_CHUNKS];
            _Pragma("GCC unroll 8") for (int c = 0; c < nc; c++) acc[c] = _mm512_load_ps(ah + 16 * c);
            for (int r = 0; r < cnt; r++) {
                const __m512 p = _mm512_set1_ps(ph[r]);
                _Pragma("GCC unroll 8") for (int c = 0; c < nc; c++)
                    acc[c] = _mm512_fmadd_ps(
                        p, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask[c], vb + (size_t)r * hd + 16 * c)), acc[c]);
            }
            _Pragma("GCC unroll 8") for (int c = 0; c < nc; c++) _mm512_store_ps(ah + 16 * c, acc[c]);
        }
    }
    for (int h = 0; h < n_q; h++)
        for (int c = 0; c < nc; c++)
            _mm512_mask_storeu_ps(out + (size_t)h * hd + 16 * c, mask[c],
                                  _mm512_load_ps(s.acc + h * s.d_stride + 16 * c));
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
static void attn_heads_avx512(const float *q, int n_q, int kv_head, const struct attn_kv *kv, float scale,
                              float *out, void *scratch) {
    switch (fast_chunks(kv->head_dim)) {
    case 2: attn_heads_nc(q, n_q, kv_head, kv, scale, out, scratch, 2); break;
    case 3: attn_heads_nc(q, n_q, kv_head, kv, scale, out, scratch, 3); break;
    case 4: attn_heads_nc(q, n_q, kv_head, kv, scale, out, scratch, 4); break;
    case 6: attn_heads_nc(q, n_q, kv_head, kv, scale, out, scratch, 6); break;
    default: attn_heads_nc(q, n_q, kv_head, kv, scale, out, scratch, 8); break;
    }
}
#endif

void attn_heads(const float *q, int n_q, int kv_head, const struct attn_kv *kv, float scale, float *out,
                void *scratch) {
#if defined(__x86_64__)
    if (cpu_use(SIMD_AVX512) && kv->head_dim <= 16 * ATTN_MAX_CHUNKS) {
        attn_heads_avx512(q, n_q, kv_head, kv, scale, out, scratch);
        return;
    }
#endif
    attn_heads_ref(q, n_q, kv_head, kv, scale, out, scratch);
}
