/* attn.c - see attn.h. */
#include "kernels/attn.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

static const uint16_t *kv_row(const uint16_t *base, const struct attn_kv *kv, int i) {
    size_t slot = (size_t)kv->blocks[i / kv->block_size] * (size_t)kv->block_size +
                  (size_t)(i % kv->block_size);
    return base + slot * (size_t)kv->row_stride;
}

unsigned long attn_scratch_bytes(int n_tokens, int head_dim) {
    return (unsigned long)n_tokens * (sizeof(float) + sizeof(uint16_t)) +
           (unsigned long)(head_dim + 16) * (sizeof(uint16_t) + sizeof(float)) + 64;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* The same steps with 16 lanes: K and V rows converted 16 halves at a time,
 * q.k by FMA in lanes then one horizontal sum per key (ggml's F16 dot works
 * the same way). Rows are walked block by block (no division per key), and
 * the output of up to 4 x 16 dims stays in registers across all keys.
 * Masked loads cover head dims that are not multiples of 16. */
#define ATTN_MAX_CHUNKS 8       /* head_dim <= 128 on this path */

__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
static void attn_head_avx512(const float *q, int head_dim, int kv_head, const struct attn_kv *kv, float scale,
                             float *out, void *scratch) {
    const int n = kv->n_tokens, bs = kv->block_size, stride = kv->row_stride;
    const int nc = (head_dim + 15) / 16;
    float *score = scratch;
    uint16_t *p16 = (uint16_t *)(score + n);
    const size_t off = (size_t)kv_head * (size_t)head_dim;
    __mmask16 mask[ATTN_MAX_CHUNKS];
    __m512 qv[ATTN_MAX_CHUNKS];
    for (int c = 0; c < nc; c++) {
        const int left = head_dim - 16 * c;
        mask[c] = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mask[c], q + 16 * c), _MM_FROUND_TO_NEAREST_INT);
        qv[c] = _mm512_cvtph_ps(h);     /* q rounded to F16, as ggml does */
    }
    float max = -INFINITY;
    for (int b0 = 0, bi = 0; b0 < n; b0 += bs, bi++) {
        const uint16_t *kb = kv->k_base + (size_t)kv->blocks[bi] * (size_t)bs * (size_t)stride + off;
        const int cnt = n - b0 < bs ? n - b0 : bs;
        for (int r = 0; r < cnt; r++) {
            const uint16_t *k = kb + (size_t)r * (size_t)stride;
            __m512 acc = _mm512_setzero_ps();
            for (int c = 0; c < nc; c++)
                acc = _mm512_fmadd_ps(qv[c], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask[c], k + 16 * c)), acc);
            const float sc = _mm512_reduce_add_ps(acc) * scale;
            score[b0 + r] = sc;
            max = sc > max ? sc : max;
        }
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float e = expf(score[i] - max);
        score[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) p16[i] = qt_f32_to_f16(score[i] * inv);
    __m512 acc[ATTN_MAX_CHUNKS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (int b0 = 0, bi = 0; b0 < n; b0 += bs, bi++) {
        const uint16_t *vb = kv->v_base + (size_t)kv->blocks[bi] * (size_t)bs * (size_t)stride + off;
        const int cnt = n - b0 < bs ? n - b0 : bs;
        for (int r = 0; r < cnt; r++) {
            const uint16_t *v = vb + (size_t)r * (size_t)stride;
            const __m512 p = _mm512_set1_ps(qt_f16_to_f32(p16[b0 + r]));
            for (int c = 0; c < nc; c++)
                acc[c] = _mm512_fmadd_ps(p, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask[c], v + 16 * c)), acc[c]);
        }
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(out + 16 * c, mask[c], acc[c]);
}
#endif

static void attn_head_ref(const float *q, int head_dim, int kv_head, const struct attn_kv *kv,
                          float scale, float *out, void *scratch);

void attn_head(const float *q, int head_dim, int kv_head, const struct attn_kv *kv,
               float scale, float *out, void *scratch) {
#if defined(__x86_64__)
    static int fast = -1;   /* decided once; same answer on every call */
    if (fast < 0) {
        const char *k = getenv("SPARROW_KERNELS");
        fast = !(k && !strcmp(k, "ref")) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    if (fast && head_dim <= 16 * ATTN_MAX_CHUNKS) {
        attn_head_avx512(q, head_dim, kv_head, kv, scale, out, scratch);
        return;
    }
#endif
    attn_head_ref(q, head_dim, kv_head, kv, scale, out, scratch);
}

static void attn_head_ref(const float *q, int head_dim, int kv_head, const struct attn_kv *kv,
                          float scale, float *out, void *scratch) {
    const int n = kv->n_tokens;
    float *score = scratch;                          /* [n] */
    float *qf = score + n;                           /* [head_dim]: q rounded to F16 */
    uint16_t *p16 = (uint16_t *)(qf + head_dim);     /* [n] */
    const size_t off = (size_t)kv_head * (size_t)head_dim;

    for (int d = 0; d < head_dim; d++) qf[d] = qt_f16_to_f32(qt_f32_to_f16(q[d]));
    float max = -INFINITY;
    for (int i = 0; i < n; i++) {
        const uint16_t *k = kv_row(kv->k_base, kv, i) + off;
        float s = 0.0f;
        for (int d = 0; d < head_dim; d++) s += qf[d] * qt_f16_to_f32(k[d]);
        s *= scale;
        score[i] = s;
        if (s > max) max = s;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float e = expf(score[i] - max);
        score[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) p16[i] = qt_f32_to_f16(score[i] * inv);

    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    for (int i = 0; i < n; i++) {
        const float p = qt_f16_to_f32(p16[i]);
        const uint16_t *v = kv_row(kv->v_base, kv, i) + off;
        for (int d = 0; d < head_dim; d++) out[d] += p * qt_f16_to_f32(v[d]);
    }
}
