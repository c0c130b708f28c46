/* quant_avx512.c - AVX-512 (F/BW/VL/VNNI) matmul micro-kernels. See
 * quant_fast.h.
 *
 * Every kernel function carries a target attribute, so this file compiles on
 * any x86-64 gcc/clang whatever -march says; qfast_get() only hands the
 * kernels out after kernels/cpu.h said the CPU runs them.
 *
 * Numerics (per weight row r and token t; all of it independent of how many
 * tokens share a tile call and of the token's slot in it). The float work
 * follows ggml's AVX2 vec_dot kernels operation for operation, which keeps
 * the logits close to llama.cpp's:
 *   - integer block dots are exact (vpdpbusd / vpmaddubsw + vpdpwssd), and
 *     their int32 lanes are folded to ggml's 8 lanes (lane k = elements
 *     4k..4k+3 of each 32-element chunk) before anything is rounded;
 *   - Q8_0/Q4_0/Q5_0: block by block, acc8 = fma(d_w*d_x, lanes, acc8);
 *   - Q4_K/Q6_K: super-block by super-block, acc8 = fma(d_w*d_x, lanes,
 *     acc8); Q4_K's mins term acc4 = fma(-d_x*dmin_w, prod4, acc4) from the
 *     activation's bsums, as ggml;
 *   - F16/F32: 16 lanes, element i in lane i % 16, one FMA per element
 *     (activations rounded to F16 for F16 weights, as the reference);
 *   - lanes reduced by ggml's hsum_float_8 (F16/F32: hsum512), one fixed tree.
 * The unsigned x signed VNNI products need one operand unsigned: Q8_0-type
 * activations are stored + 128 and 128 * (lane sums of the weight quants) is
 * subtracted back, once per weight row for all tokens; K-quant weights are
 * unsigned already (Q6_K's offset of 32 comes back through the activation's
 * bsums). All of it in integers, so the result is exactly the signed dot. */
#include "kernels/quant_fast.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/quant_blocks.h"
#include "kernels/simd_avx512.h"

#if defined(__x86_64__) || defined(__i386__)

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

/* IEEE half -> float (exact), inline. */
INL float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* ------------------------------------------------------------ reductions */

INL float hsum256(__m256 a) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* Tile dispatch: NAME##_tile(n, w, act, stride, nt, y, ys) calls IMPL with a
 * constant token count, so each count gets its own fully unrolled copy. */
#define TILE_ARGS int64_t n, const void *w, const void *act, size_t as, int nt, float *y, size_t ys
#define DEF_TILE(NAME, IMPL)                                                          \
    static TGT void NAME##_tile(TILE_ARGS) {                                          \
        const uint8_t *a_ = act;                                                      \
        switch (nt) {                                                                 \
        case 1: IMPL(1, n, w, a_, as, y, ys); break;                                  \
        case 2: IMPL(2, n, w, a_, as, y, ys); break;                                  \
        case 3: IMPL(3, n, w, a_, as, y, ys); break;                                  \
        case 4: IMPL(4, n, w, a_, as, y, ys); break;                                  \
        case 5: IMPL(5, n, w, a_, as, y, ys); break;                                  \
        case 6: IMPL(6, n, w, a_, as, y, ys); break;                                  \
        case 7: IMPL(7, n, w, a_, as, y, ys); break;                                  \
        case 8: IMPL(8, n, w, a_, as, y, ys); break;                                  \
        default: break;                                                               \
        }                                                                             \
    }

/* ------------------------------------------- Q8_0 / Q4_0 / Q5_0 weights */

/* Prepared Q8_0 activation row of nb 32-blocks:
 *   xu[nb * 32]   the reference Q8_0 quants + 128 (so unsigned)
 *   d8[nb * 8]    float block scale (the reference's f16, widened), 8 times
 * With x + 128 unsigned and the weight quants signed, vpdpbusd gives
 * sum (x+128) w, and the weight-only term 128 sum w (computed once per row
 * for all tokens) is subtracted back: exact, and the int32 lanes are those of
 * ggml's AVX2 mul_sum_i8_pairs_float (lane k = elements 4k..4k+3). */
static size_t q0_act_bytes(int64_t n) { return round64((size_t)(n / QK32) * 64); }

static void q0_act_prep(const float *x, int64_t n, void *dst) {
    const struct qtype_info *q8 = qtype_get(QTYPE_Q8_0);
    const int64_t nb = n / QK32;
    uint8_t *xu = dst;
    float *d8 = (float *)(xu + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        struct block_q8_0 blk;
        q8->from_float(x + b * QK32, &blk, QK32);
        for (int i = 0; i < 32; i++) xu[b * 32 + i] = (uint8_t)(blk.qs[i] + 128);
        const float d = qt_f16_to_f32(blk.d);
        for (int l = 0; l < 8; l++) d8[b * 8 + l] = d;
    }
}

/* Signed weight quants of block b, 32 bytes in element order. */
INL __m256i q8_0_block(const struct block_q8_0 *W, int64_t b) {
    return _mm256_loadu_si256((const __m256i *)W[b].qs);
}

INL __m256i q4_0_nibbles(const uint8_t *q) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m256i lh = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(lh, _mm256_set1_epi8(0x0F));
}

INL __m256i q4_0_block(const struct block_q4_0 *W, int64_t b) {
    return _mm256_sub_epi8(q4_0_nibbles(W[b].qs), _mm256_set1_epi8(8));
}

INL __m256i q5_0_block(const struct block_q5_0 *W, int64_t b) {
    uint32_t h;
    memcpy(&h, W[b].qh, 4);
    __m256i v = q4_0_nibbles(W[b].qs);
    v = _mm256_mask_add_epi8(v, (__mmask32)h, v, _mm256_set1_epi8(16));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(16));
}

/* kind: 0 Q8_0, 1 Q4_0, 2 Q5_0. Per token: ggml's AVX2 loop, block by block
 * acc = fma(d_w*d_x, lanes, acc) on 8 lanes, then hsum_float_8. */
INL void q0_impl(const int NT, const int kind, int64_t n, const void *w, const uint8_t *act,
                 size_t as, float *y, size_t ys) {
    const int64_t nb = n / QK32;
    const __m256i u128 = _mm256_set1_epi8(-128);
    __m256 acc[QFAST_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m512i u128z = _mm512_set1_epi8(-128);
    int64_t b = 0;
    /* Two blocks per 512-bit integer step; the float steps stay ggml's, one
     * 8-lane FMA per block in block order (lo half, then hi half). */
    for (; b + 1 < nb; b += 2) {
        __m256i wa, wb;
        uint16_t ha, hb;
        if (kind == 0) {
            wa = q8_0_block(w, b); wb = q8_0_block(w, b + 1);
            ha = ((const struct block_q8_0 *)w)[b].d; hb = ((const struct block_q8_0 *)w)[b + 1].d;
        } else if (kind == 1) {
            wa = q4_0_block(w, b); wb = q4_0_block(w, b + 1);
            ha = ((const struct block_q4_0 *)w)[b].d; hb = ((const struct block_q4_0 *)w)[b + 1].d;
        } else {
            wa = q5_0_block(w, b); wb = q5_0_block(w, b + 1);
            ha = ((const struct block_q5_0 *)w)[b].d; hb = ((const struct block_q5_0 *)w)[b + 1].d;
        }
        const __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(wa), wb, 1);
        const __m512i negc = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), u128z, wv));
        const __m512 dw = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(h2f(ha)), _mm512_set1_ps(h2f(hb)));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *a = act + (size_t)t * as;
            const __m512i s = _mm512_dpbusd_epi32(negc, _mm512_loadu_si512(a + b * 32), wv);
            const __m512 d = _mm512_mul_ps(dw, _mm512_loadu_ps((const float *)(a + nb * 32 + b * 32)));
            const __m512 q = _mm512_cvtepi32_ps(s);
            acc[t] = _mm256_fmadd_ps(_mm512_castps512_ps256(d), _mm512_castps512_ps256(q), acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)),
                                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(q), 1)), acc[t]);
        }
    }
    for (; b < nb; b++) { /* an odd last block: the same float steps */
        __m256i wv;
        uint16_t dh;
        if (kind == 0) { wv = q8_0_block(w, b); dh = ((const struct block_q8_0 *)w)[b].d; }
        else if (kind == 1) { wv = q4_0_block(w, b); dh = ((const struct block_q4_0 *)w)[b].d; }
        else { wv = q5_0_block(w, b); dh = ((const struct block_q5_0 *)w)[b].d; }
        const __m256i negc = _mm256_sub_epi32(_mm256_setzero_si256(),
                                              _mm256_dpbusd_epi32(_mm256_setzero_si256(), u128, wv));
        const __m256 dw = _mm256_set1_ps(h2f(dh));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *a = act + (size_t)t * as;
            const __m256i s = _mm256_dpbusd_epi32(negc, _mm256_loadu_si256((const __m256i *)(a + b * 32)), wv);
            const __m256 d = _mm256_mul_ps(dw, _mm256_loadu_ps((const float *)(a + nb * 32 + b * 32)));
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[(size_t)t * ys] = hsum256(acc[t]);
}

#define Q8_0_IMPL(NT, n, w, a, as, y, ys) q0_impl(NT, 0, n, w, a, as, y, ys)
#define Q4_0_IMPL(NT, n, w, a, as, y, ys) q0_impl(NT, 1, n, w, a, as, y, ys)
#define Q5_0_IMPL(NT, n, w, a, as, y, ys) q0_impl(NT, 2, n, w, a, as, y, ys)
DEF_TILE(q8_0, Q8_0_IMPL)
DEF_TILE(q4_0, Q4_0_IMPL)
DEF_TILE(q5_0, Q5_0_IMPL)

/* ------------------------------------------------------- Q4_K / Q6_K */

/* K-quant activations are plain Q8_K blocks (the reference quantizer). */
static size_t qk_act_bytes(int64_t n) { return round64((size_t)(n / QK_K) * sizeof(struct block_q8_K)); }

static void qk_act_prep(const float *x, int64_t n, void *dst) {
    qtype_get(QTYPE_Q8_K)->from_float(x, dst, n);
}

INL void q4_K_impl(const int NT, int64_t n, const void *wp, const uint8_t *act, size_t as,
                   float *y, size_t ys) {
    const struct block_q4_K *W = wp;
    const int64_t nb = n / QK_K;
    __m256 acc[QFAST_MAX_TOK];
    __m128 accm[QFAST_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
        accm[t] = _mm_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        /* ggml's unpacking of the 12 scale bytes: u[0..1] = 8 scales,
         * u[2..3] = 8 mins, one byte each. */
        uint32_t u[4];
        memcpy(u, W[b].scales, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t mlo = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = mlo;
        u[0] &= 0x3f3f3f3fu;
        const __m128i sm = _mm_loadu_si128((const __m128i *)u); /* 8 scales, 8 mins */
        const __m128i mins8 = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
        const __m512i sc512 = _mm512_cvtepu8_epi16(_mm256_zextsi128_si256(sm)); /* low 16 used */
        __m512i scv[4], wv[4];
        for (int g = 0; g < 4; g++) {
            /* int16 slot s of 64-element group g: sub-block 2g + s/16 */
            const short i0 = (short)(2 * g), i1 = (short)(2 * g + 1);
            const __m512i idx = _mm512_set_epi16(
                i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1, i1,
                i0, i0, i0, i0, i0, i0, i0, i0, i0, i0, i0, i0, i0, i0, i0, i0);
            scv[g] = _mm512_permutexvar_epi16(idx, sc512);
        }
        for (int h = 0; h < 2; h++) {
            const __m512i q = _mm512_loadu_si512(W[b].qs + 64 * h);
            const __m512i lo = _mm512_and_si512(q, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            wv[2 * h] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            wv[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
        }
        const float dw = h2f(W[b].d), dmw = h2f(W[b].dmin);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
            __m512i s0 = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                _mm512_maddubs_epi16(wv[0], _mm512_loadu_si512(X->qs)), scv[0]);
            __m512i s1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                _mm512_maddubs_epi16(wv[1], _mm512_loadu_si512(X->qs + 64)), scv[1]);
            s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(wv[2], _mm512_loadu_si512(X->qs + 128)), scv[2]);
            s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(wv[3], _mm512_loadu_si512(X->qs + 192)), scv[3]);
            /* ggml: bsums of each 32 (hadd), times the mins, 4 lanes */
            const __m256i q8sums = _mm256_loadu_si256((const __m256i *)X->bsums);
            const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(q8sums),
                                               _mm256_extracti128_si256(q8sums, 1));
            const __m128i prod = _mm_madd_epi16(mins8, q8s);
            const __m512i s = _mm512_add_epi32(s0, s1);
            const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * X->d), _mm256_cvtepi32_ps(s8), acc[t]);
            accm[t] = _mm_fmadd_ps(_mm_set1_ps(-X->d * dmw), _mm_cvtepi32_ps(prod), accm[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        __m128 m = accm[t];
        m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        y[(size_t)t * ys] = hsum256(acc[t]) + _mm_cvtss_f32(m);
    }
}

INL void q6_K_impl(const int NT, int64_t n, const void *wp, const uint8_t *act, size_t as,
                   float *y, size_t ys) {
    const struct block_q6_K *W = wp;
    const int64_t nb = n / QK_K;
    __m256 acc[QFAST_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh0 = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    const __m512i sh1 = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
    for (int64_t b = 0; b < nb; b++) {
        __m512i wv[4], scv[4];
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(W[b].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(W[b].qh + 32 * h)));
            const __m512i lo = _mm512_and_si512(ql, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4);
            const __m512i h0 = _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi64(qh, sh0), 4), m30);
            const __m512i h1 = _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi64(qh, sh1), 4), m30);
            wv[2 * h] = _mm512_or_si512(lo, h0);
            wv[2 * h + 1] = _mm512_or_si512(hi, h1);
        }
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)W[b].scales));
        const __m512i sc512 = _mm512_inserti64x4(_mm512_setzero_si512(), sc16, 0);
        for (int g = 0; g < 4; g++) {
            /* int16 slot s of group g covers elements 64g + 2s, +1: scale 4g + s/8 */
            const short i0 = (short)(4 * g);
            const __m512i idx = _mm512_set_epi16(
                i0 + 3, i0 + 3, i0 + 3, i0 + 3, i0 + 3, i0 + 3, i0 + 3, i0 + 3,
                i0 + 2, i0 + 2, i0 + 2, i0 + 2, i0 + 2, i0 + 2, i0 + 2, i0 + 2,
                i0 + 1, i0 + 1, i0 + 1, i0 + 1, i0 + 1, i0 + 1, i0 + 1, i0 + 1,
                i0, i0, i0, i0, i0, i0, i0, i0);
            scv[g] = _mm512_permutexvar_epi16(idx, sc512);
        }
        const float dw = h2f(W[b].d);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
            /* -32 * sum_g scale_g * bsum_g: the offset of the unsigned quants */
            const __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)X->bsums), sc16);
            const __m512i init = _mm512_inserti64x4(_mm512_setzero_si512(),
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5)), 0);
            __m512i s0 = _mm512_dpwssd_epi32(init,
                _mm512_maddubs_epi16(wv[0], _mm512_loadu_si512(X->qs)), scv[0]);
            __m512i s1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                _mm512_maddubs_epi16(wv[1], _mm512_loadu_si512(X->qs + 64)), scv[1]);
            s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(wv[2], _mm512_loadu_si512(X->qs + 128)), scv[2]);
            s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(wv[3], _mm512_loadu_si512(X->qs + 192)), scv[3]);
            const __m512i s = _mm512_add_epi32(s0, s1);
            const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(X->d * dw), _mm256_cvtepi32_ps(s8), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[(size_t)t * ys] = hsum256(acc[t]);
}

DEF_TILE(q4_K, q4_K_impl)
DEF_TILE(q6_K, q6_K_impl)

/* ------------------------------------------------------------ F16 / F32 */

/* Float activations padded with zeros to a multiple of 16 elements; for F16
 * weights each value is first rounded to F16 (the reference's activation). */
static size_t f_act_bytes(int64_t n) { return (size_t)((n + 15) & ~(int64_t)15) * sizeof(float); }

static TGT void f32_act_prep(const float *x, int64_t n, void *dst) {
    memset(dst, 0, f_act_bytes(n));
    memcpy(dst, x, (size_t)n * sizeof(float));
}

static TGT void f16_act_prep(const float *x, int64_t n, void *dst) {
    float *d = dst;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16_first(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_storeu_ps(d + i, _mm512_cvtph_ps(h));
    }
}

/* kind 0: F32 weights, 1: F16 weights. Four accumulators per token, each
 * taking every fourth 16-element chunk, summed in a fixed order at the end:
 * a lone token (decode) is then not bound by the FMA latency chain, and every
 * token still sees the same operations whatever the tile width (so at most 4
 * tokens per tile: 16 accumulators plus the weights fit the 32 registers). */
#define F_ACCS 4
INL __m512 f_weights(const int kind, const void *w, int64_t i, __mmask16 m) {
    return kind == 0 ? _mm512_maskz_loadu_ps(m, (const float *)w + i)
                     : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
}

INL void f_impl(const int NT, const int kind, int64_t n, const void *w, const uint8_t *act,
                size_t as, float *y, size_t ys) {
    __m512 acc[QFAST_MAX_TOK][F_ACCS];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int k = 0; k < F_ACCS; k++) acc[t][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; n - i >= 16 * F_ACCS; i += 16 * F_ACCS) {
#pragma GCC unroll 4
        for (int k = 0; k < F_ACCS; k++) {
            const __m512 wv = f_weights(kind, w, i + 16 * k, (__mmask16)0xFFFF);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const float *x = (const float *)(act + (size_t)t * as);
                acc[t][k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + i + 16 * k), acc[t][k]);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < F_ACCS; k++) {     /* the last 1..63 elements, same accumulators */
        const int64_t j = i + 16 * k;
        if (j >= n) break;
        const __mmask16 m = mask16_first(n - j);
        const __m512 wv = f_weights(kind, w, j, m);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const float *x = (const float *)(act + (size_t)t * as);
            acc[t][k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j), acc[t][k]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
        y[(size_t)t * ys] = hsum512(_mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]),
                                                  _mm512_add_ps(acc[t][2], acc[t][3])));
}

#define F32_IMPL(NT, n, w, a, as, y, ys) f_impl(NT, 0, n, w, a, as, y, ys)
#define F16_IMPL(NT, n, w, a, as, y, ys) f_impl(NT, 1, n, w, a, as, y, ys)
DEF_TILE(f32, F32_IMPL)
DEF_TILE(f16, F16_IMPL)

/* ------------------------------------------ row-interleaved (packed) kernels
 *
 * The tiles above read one weight row against up to 8 tokens and pay a
 * horizontal reduction and a float rescale per 32-element block per token.
 * The packed kernels below instead compute QPACK_ROWS = 16 rows at once, one
 * row per zmm lane: the weights of a group of 16 rows are stored interleaved
 * 4 bytes at a time (lane i of a packed vector = 4 consecutive quants of row
 * i), so one vpdpbusd against a broadcast 4-byte piece of a token's
 * activation advances the integer dot of all 16 rows, with no reduction and
 * full 64 MAC/instruction use. The block scale d_w[row] * d_x[token] is then
 * one lane-wise multiply per block per token. Weights are repacked once at
 * model load (mm_pack); padded rows of a partial last group are zero.
 *
 * Numerics per (row, token), independent of nt, of the token's slot and of
 * which group/thread computes the row (every op is lane-wise):
 *   - Q8_0 / Q4_0: block by block, sumf = sumf + (float)sumi * (d_w * d_x),
 *     sumi the exact block dot. That is quant.c's reference order, so the
 *     result equals the reference vec_dot bit for bit (when the reference is
 *     compiled without FMA contraction, as gcc does with -std=c11).
 *   - Q4_K: per super-block isum = sum_j sc_j * dot_j and msum =
 *     sum_j m_j * bsum_j exactly in int32; sums = sums + (float)isum * (d_w *
 *     d_x), mins = mins - (float)msum * (dmin_w * d_x); result mins + sums
 *     (ggml keeps 8 float lanes instead of one: a reordering within the
 *     tolerance of the reference tests);
 *   - Q6_K: per super-block isum = sum_g sc_g * (dot_g - 32 bsum_g) over the
 *     16-element groups, exactly in int32; sums = sums + (float)isum * (d_w *
 *     d_x) (again one lane where ggml keeps 8).
 * The unsigned x signed products: weights are stored unsigned (Q8_0 as q +
 * 128, Q4_0, Q4_K and Q6_K quants as they are, 0..15 or 0..63) and
 * activations stay the signed reference quants; the offset comes back through
 * a per-block activation term (-128, -8 or -32 times the quant sum of the
 * block or group) that act_prep stores. */

#define QP_ROWS QPACK_ROWS

/* A group is one sequential stream, but with several tokens the kernels
 * consume it in bursts between long runs of arithmetic, and the hardware
 * prefetcher alone then falls behind on matrices that live in DRAM
 * (measured: the 32000-row output head ran at 2/3 of the speed of the
 * row-at-a-time kernel). So for nt >= 2 each kernel touches the lines it will
 * need QP_PF_BYTES later. A lone token is a pure stream the hardware
 * prefetcher keeps up with, and there the extra instructions cost ~10% of
 * the bandwidth when both cores stream (measured), so it gets none. */
#ifndef QP_PF_BYTES
#define QP_PF_BYTES 8192
#endif
#ifndef QP_PF_HINT
#define QP_PF_HINT _MM_HINT_T0
#endif

INL void pf_ahead(const int NT, const uint8_t *p, int lines) {
    if (NT < 2 || QP_PF_BYTES == 0) return;
    for (int i = 0; i < lines; i++) _mm_prefetch((const char *)p + QP_PF_BYTES + 64 * i, QP_PF_HINT);
}

/* Packed activation row of nb 32-blocks (Q8_0 and Q4_0 weights):
 *   qs[nb * 32]  the reference Q8_0 quants (signed)
 *   d[nb]        their f16 block scale, widened
 *   corr[nb]     -off * (sum of the block's quants): off = 128 for Q8_0
 *                (weights stored + 128), 8 for Q4_0 (nibbles not re-centred) */
static size_t q0p_act_bytes(int64_t n) { return round64((size_t)(n / QK32) * 40); }

/* quant.c's Q8_0 activation quantizer, one 32-block, in SIMD: every
 * element goes through the same IEEE operations (the max of |x| is exact in
 * any order; x * id rounded half to even, which is what the reference's
 * nearest_int does), so quants and scale are the reference's bit for bit
 * (tests compare the bytes). Returns the sum of the quants. */
static TGT int32_t q8_0_quant_block(const float *x, int8_t *qs, float *d) {
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    *d = qt_f16_to_f32(qt_f32_to_f16(amax / 127.f));
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i qa = _mm512_cvt_roundps_epi32(_mm512_mul_ps(a, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i qb = _mm512_cvt_roundps_epi32(_mm512_mul_ps(b, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(qb));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
}

static void q0p_act_prep_off(const float *x, int64_t n, void *dst, int off) {
    const int64_t nb = n / QK32;
    int8_t *qs = dst;
    float *d = (float *)(qs + nb * 32);
    int32_t *corr = (int32_t *)(d + nb);
    for (int64_t b = 0; b < nb; b++) corr[b] = -off * q8_0_quant_block(x + b * QK32, qs + b * 32, &d[b]);
}

static void q8_0p_act_prep(const float *x, int64_t n, void *dst) { q0p_act_prep_off(x, n, dst, 128); }
static void q4_0p_act_prep(const float *x, int64_t n, void *dst) { q0p_act_prep_off(x, n, dst, 8); }

/* Packed Q8_0 group: per block 8 vectors of 64 bytes (vector k, lane i =
 * quants 4k..4k+3 of row i, + 128), all blocks first; then the 16 f16 row
 * scales of each block (32 bytes per block), so the quants stay 64-aligned. */
static size_t q8_0p_group_bytes(int64_t n) { return round64((size_t)(n / QK32) * (512 + 32)); }

static void q8_0p_pack(const void *rows, size_t rb, int nr, int64_t n, void *dst) {
    const int64_t nb = n / QK32;
    uint8_t *q = dst;
    uint16_t *d = (uint16_t *)(q + nb * 512);
    memset(dst, 0, q8_0p_group_bytes(n));
    for (int i = 0; i < nr; i++) {
        const struct block_q8_0 *W = (const void *)((const uint8_t *)rows + (size_t)i * rb);
        for (int64_t b = 0; b < nb; b++) {
            for (int e = 0; e < 32; e++)
                q[b * 512 + (e / 4) * 64 + i * 4 + e % 4] = (uint8_t)(W[b].qs[e] + 128);
            d[b * QP_ROWS + i] = W[b].d;
        }
    }
}

/* Packed Q4_0 group: per block 4 vectors of 64 bytes (vector j, lane i = the
 * packed bytes qs[4j..4j+3] of row i: low nibbles are elements 4j.., high
 * nibbles elements 16 + 4j..), then the f16 scales as for Q8_0. */
static size_t q4_0p_group_bytes(int64_t n) { return round64((size_t)(n / QK32) * (256 + 32)); }

static void q4_0p_pack(const void *rows, size_t rb, int nr, int64_t n, void *dst) {
    const int64_t nb = n / QK32;
    uint8_t *q = dst;
    uint16_t *d = (uint16_t *)(q + nb * 256);
    memset(dst, 0, q4_0p_group_bytes(n));
    for (int i = 0; i < nr; i++) {
        const struct block_q4_0 *W = (const void *)((const uint8_t *)rows + (size_t)i * rb);
        for (int64_t b = 0; b < nb; b++) {
            for (int e = 0; e < 16; e++) q[b * 256 + (e / 4) * 64 + i * 4 + e % 4] = W[b].qs[e];
            d[b * QP_ROWS + i] = W[b].d;
        }
    }
}

/* Broadcast the 4 activation bytes at p (any alignment). */
INL __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Exact dot of one 32-block for 16 rows: w[k] holds quants 4k..4k+3 of every
 * row, xq the token's 32 quants; two chains so a lone token is not bound by
 * the vpdpbusd latency (integer sums: the split does not change a bit). */
INL __m512i dot32x16(const __m512i w[8], const int8_t *xq, __m512i init) {
    __m512i s0 = init, s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k += 2) {
        s0 = _mm512_dpbusd_epi32(s0, w[k], bcast4(xq + 4 * k));
        s1 = _mm512_dpbusd_epi32(s1, w[k + 1], bcast4(xq + 4 * k + 4));
    }
    return _mm512_add_epi32(s0, s1);
}

/* kind 0: Q8_0, 1: Q4_0. y[t * ys + i] for rows i < nr of the group. */
INL void q0p_impl(const int NT, const int kind, int64_t n, const uint8_t *g, const uint8_t *act,
                  size_t as, float *y, size_t ys, int nr) {
    const int64_t nb = n / QK32;
    const uint16_t *dws = (const uint16_t *)(g + nb * (kind == 0 ? 512 : 256));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[QPACK_MAX_TOK];
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i w[8];
        if (kind == 0) {
            pf_ahead(NT, g + b * 512, 8);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) w[k] = _mm512_load_si512(g + b * 512 + 64 * k);
        } else {
            pf_ahead(NT, g + b * 256, 4);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i v = _mm512_load_si512(g + b * 256 + 64 * k);
                w[k] = _mm512_and_si512(v, m4);
                w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dws + b * QP_ROWS)));
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            const uint8_t *a = act + (size_t)t * as;
            const float *dx = (const float *)(a + nb * 32);
            const int32_t *corr = (const int32_t *)(dx + nb);
            const __m512i s = dot32x16(w, (const int8_t *)a + b * 32, _mm512_set1_epi32(corr[b]));
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(dx[b]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
        }
    }
    const __mmask16 m = mask16_first(nr);
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, m, acc[t]);
}

/* Packed K-quant activation (Q4_K and Q6_K weights), per 256-super-block,
 * 384 bytes:
 *   qs[256]       the reference Q8_K quants
 *   c16[16]       int32 -32 * (quant sum of each 16 elements): Q6_K's offset
 *   d             (at 320) the reference Q8_K scale
 *   bsum32[8]     (at 324) int16 quant sums of each 32 elements (the
 *                 reference's bsums added in pairs), for Q4_K's mins term */
#define QKP_ACT 384
#define QKP_C16 256
#define QKP_D 320
#define QKP_BSUM32 324
static size_t qkp_act_bytes(int64_t n) { return (size_t)(n / QK_K) * QKP_ACT; }

/* quant.c's Q8_K quantizer for one super-block, in SIMD, straight into the
 * packed layout: the same IEEE operations per element (the signed value of
 * largest magnitude is the first one in element order, as the reference's
 * strict > keeps), so quants, bsums and d are the reference's bit for bit. */
static TGT void qkp_quant_block(const float *x, uint8_t *o) {
    __m512 v[16];
    __m512 am = _mm512_setzero_ps();
    for (int k = 0; k < 16; k++) {
        v[k] = _mm512_loadu_ps(x + 16 * k);
        am = _mm512_max_ps(am, _mm512_abs_ps(v[k]));
    }
    const float amax = _mm512_reduce_max_ps(am);
    memset(o, 0, QKP_ACT);
    if (amax == 0.0f) return;   /* the reference's all-zero block */
    float max = 0.0f;
    for (int k = 0; k < 16; k++) {
        const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(v[k]), _mm512_set1_ps(amax), _CMP_EQ_OQ);
        if (hit) { max = x[16 * k + __builtin_ctz(hit)]; break; }
    }
    const float iscale = -127.f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    int32_t c16[16];
    int16_t s32[8];
    for (int k = 0; k < 16; k++) {
        const __m512i q = _mm512_min_epi32(_mm512_set1_epi32(127),
            _mm512_cvt_roundps_epi32(_mm512_mul_ps(vs, v[k]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm_storeu_si128((__m128i *)(o + 16 * k), _mm512_cvtepi32_epi8(q));
        const int32_t bsum = _mm512_reduce_add_epi32(q);
        c16[k] = -32 * bsum;
        if (k % 2 == 0) s32[k / 2] = (int16_t)bsum;
        else s32[k / 2] = (int16_t)(s32[k / 2] + bsum);
    }
    const float d = 1 / iscale;
    memcpy(o + QKP_C16, c16, sizeof c16);
    memcpy(o + QKP_D, &d, 4);
    memcpy(o + QKP_BSUM32, s32, sizeof s32);
}

static void qkp_act_prep(const float *x, int64_t n, void *dst) {
    for (int64_t b = 0; b < n / QK_K; b++) qkp_quant_block(x + b * QK_K, (uint8_t *)dst + b * QKP_ACT);
}

/* Packed Q4_K group, per super-block, 2368 bytes (a multiple of 64):
 *   qs    32 vectors: vector 8c + k, lane i = row i's qs[32c + 4k .. +3]
 *         (low nibbles: sub-block 2c, high nibbles: sub-block 2c + 1)
 *   sc    [8][16] bytes: 6-bit scale of sub-block j of row i
 *   mn    [4][16][2] bytes: mins m_2k, m_2k+1 of row i (int16 pairs once
 *         zero-extended, for vpdpwssd against the paired bsums)
 *   d     16 f16, dmin 16 f16 */
#define Q4KP_SB 2368
static size_t q4_Kp_group_bytes(int64_t n) { return (size_t)(n / QK_K) * Q4KP_SB; }

static void q4_K_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void q4_Kp_pack(const void *rows, size_t rb, int nr, int64_t n, void *dst) {
    const int64_t nb = n / QK_K;
    memset(dst, 0, q4_Kp_group_bytes(n));
    for (int i = 0; i < nr; i++) {
        const struct block_q4_K *W = (const void *)((const uint8_t *)rows + (size_t)i * rb);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)dst + b * Q4KP_SB;
            for (int e = 0; e < 128; e++) o[(e / 4) * 64 + i * 4 + e % 4] = W[b].qs[e];
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                q4_K_scale_min_k4(j, W[b].scales, &sc, &m);
                o[2048 + j * 16 + i] = sc;
                o[2048 + 128 + (j / 2) * 32 + i * 2 + j % 2] = m;
            }
            memcpy(o + 2304 + 2 * i, &W[b].d, 2);
            memcpy(o + 2336 + 2 * i, &W[b].dmin, 2);
        }
    }
}

INL void q4_Kp_impl(const int NT, int64_t n, const uint8_t *g, const uint8_t *act, size_t as,
                    float *y, size_t ys, int nr) {
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 sums[QPACK_MAX_TOK], mins[QPACK_MAX_TOK];
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) sums[t] = mins[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = g + b * Q4KP_SB;
        __m512i isum[QPACK_MAX_TOK];
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {   /* sub-block j: nibbles of chunk j/2 */
            pf_ahead(NT, o + j * 296, 5);   /* 8 x 296 = 2368: the whole super-block */
            __m512i w[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i v = _mm512_load_si512(o + (j / 2) * 512 + 64 * k);
                w[k] = _mm512_and_si512(j % 2 ? _mm512_srli_epi16(v, 4) : v, m4);
            }
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(o + 2048 + 16 * j)));
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                const int8_t *xq = (const int8_t *)(act + (size_t)t * as + b * QKP_ACT) + 32 * j;
                const __m512i s = dot32x16(w, xq, _mm512_setzero_si512());
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s, sc));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + 2304)));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + 2336)));
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            const uint8_t *a = act + (size_t)t * as + b * QKP_ACT;
            __m512i ms = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i mk = _mm512_cvtepu8_epi16(_mm256_load_si256((const __m256i *)(o + 2176 + 32 * k)));
                ms = _mm512_dpwssd_epi32(ms, mk, bcast4((const int8_t *)a + QKP_BSUM32 + 4 * k));
            }
            float dx;
            memcpy(&dx, a + QKP_D, 4);
            const __m512 vdx = _mm512_set1_ps(dx);
            sums[t] = _mm512_add_ps(sums[t], _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, vdx)));
            mins[t] = _mm512_sub_ps(mins[t], _mm512_mul_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dmw, vdx)));
        }
    }
    const __mmask16 m = mask16_first(nr);
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, m, _mm512_add_ps(mins[t], sums[t]));
}

/* Packed Q6_K group, per super-block, 3392 bytes (53 * 64):
 *   nib   32 vectors, as Q4_K's: vector 8c + k, lane i, byte m: low nibble =
 *         low 4 bits of element 64c + 4k + m of row i, high nibble = of
 *         element 64c + 32 + 4k + m
 *   hi2   16 vectors at 2048: vector 8h + k, lane i, byte m, bits 2u..2u+1 =
 *         top 2 bits of element 32(4h + u) + 4k + m
 *   sc    [16][16] int8 at 3072: scale of 16-element group g of row i
 *   d     16 f16 at 3328, then padding
 * Quants are the unsigned 0..63 (value + 32); the activation's c16 brings the
 * -32 back, group by group, before the scale multiplies. */
#define Q6KP_SB 3392
static size_t q6_Kp_group_bytes(int64_t n) { return (size_t)(n / QK_K) * Q6KP_SB; }

/* Element e (0..255) of a Q6_K block as the unsigned 6-bit quant (ggml's
 * dequantize_row_q6_K order). */
static int q6_K_quant(const struct block_q6_K *B, int e) {
    const int n = e / 128, q = (e % 128) / 32, l = e % 32;
    const int lo = (B->ql[64 * n + l + 32 * (q & 1)] >> (4 * (q >> 1))) & 0xF;
    const int hi = (B->qh[32 * n + l] >> (2 * q)) & 3;
    return lo | (hi << 4);
}

static void q6_Kp_pack(const void *rows, size_t rb, int nr, int64_t n, void *dst) {
    const int64_t nb = n / QK_K;
    memset(dst, 0, q6_Kp_group_bytes(n));
    for (int i = 0; i < nr; i++) {
        const struct block_q6_K *W = (const void *)((const uint8_t *)rows + (size_t)i * rb);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)dst + b * Q6KP_SB;
            for (int e = 0; e < 256; e++) {
                const int q = q6_K_quant(&W[b], e), p = e % 32, sb = e / 32;
                const int lane_byte = i * 4 + p % 4;
                o[((e / 64) * 8 + p / 4) * 64 + lane_byte] |= (uint8_t)((q & 15) << (e % 64 >= 32 ? 4 : 0));
                o[2048 + ((sb / 4) * 8 + p / 4) * 64 + lane_byte] |= (uint8_t)((q >> 4) << (2 * (sb % 4)));
            }
            for (int g = 0; g < 16; g++) o[3072 + g * 16 + i] = (uint8_t)W[b].scales[g];
            memcpy(o + 3328 + 2 * i, &W[b].d, 2);
        }
    }
}

/* Exact dot of 16 elements (4 bytes x 4) for 16 rows, starting from init. */
INL __m512i dot16x16(const __m512i w[4], const int8_t *xq, __m512i init) {
    __m512i s0 = _mm512_dpbusd_epi32(init, w[0], bcast4(xq));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], bcast4(xq + 4));
    s0 = _mm512_dpbusd_epi32(s0, w[2], bcast4(xq + 8));
    s1 = _mm512_dpbusd_epi32(s1, w[3], bcast4(xq + 12));
    return _mm512_add_epi32(s0, s1);
}

/* Top 2 bits of sub-block u of a hi2 vector (bits 2u..2u+1 of each byte,
 * shift = 2u), moved to bits 4..5: within each 16-bit lane the bits a shift
 * drags across the byte boundary land outside 4..5 and are masked off. */
INL __m512i q6_hi2(__m512i v, __m128i shift) {
    return _mm512_and_si512(_mm512_slli_epi16(_mm512_srl_epi16(v, shift), 4), _mm512_set1_epi8(0x30));
}

INL void q6_Kp_impl(const int NT, int64_t n, const uint8_t *g, const uint8_t *act, size_t as,
                    float *y, size_t ys, int nr) {
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 sums[QPACK_MAX_TOK];
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) sums[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = g + b * Q6KP_SB;
        __m512i isum[QPACK_MAX_TOK];
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {   /* sub-block j: groups 2j, 2j + 1 */
            pf_ahead(NT, o + j * 424, 7);   /* 8 x 424 = 3392: the whole super-block */
            __m512i w[8];
            const __m128i lo_shift = _mm_cvtsi32_si128(4 * (j % 2)), hi_shift = _mm_cvtsi32_si128(2 * (j % 4));
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i v = _mm512_load_si512(o + (j / 2) * 512 + 64 * k);
                const __m512i h = _mm512_load_si512(o + 2048 + (j / 4) * 512 + 64 * k);
                w[k] = _mm512_or_si512(_mm512_and_si512(_mm512_srl_epi16(v, lo_shift), m4),
                                       q6_hi2(h, hi_shift));
            }
            const __m512i sa = _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(o + 3072 + 32 * j)));
            const __m512i sb = _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(o + 3088 + 32 * j)));
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                const uint8_t *a = act + (size_t)t * as + b * QKP_ACT;
                const int32_t *c16 = (const int32_t *)(a + QKP_C16);
                const int8_t *xq = (const int8_t *)a + 32 * j;
                const __m512i da = dot16x16(w, xq, _mm512_set1_epi32(c16[2 * j]));
                const __m512i db = dot16x16(w + 4, xq + 16, _mm512_set1_epi32(c16[2 * j + 1]));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(da, sa),
                                                                     _mm512_mullo_epi32(db, sb)));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + 3328)));
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            float dx;
            memcpy(&dx, act + (size_t)t * as + b * QKP_ACT + QKP_D, 4);
            sums[t] = _mm512_add_ps(sums[t], _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]),
                                                           _mm512_mul_ps(dw, _mm512_set1_ps(dx))));
        }
    }
    const __mmask16 m = mask16_first(nr);
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, m, sums[t]);
}

/* Packed tile dispatch: one fully unrolled copy per token count. */
#define PTILE_ARGS int64_t n, const void *g, const void *act, size_t as, int nt, float *y, size_t ys, int nr
#define PCASE(k, IMPL) case k: IMPL(k, n, g, act, as, y, ys, nr); break;
#define DEF_PTILE(NAME, IMPL)                                                          \
    static TGT void NAME##_ptile(PTILE_ARGS) {                                         \
        switch (nt) {                                                                  \
        PCASE(1, IMPL) PCASE(2, IMPL) PCASE(3, IMPL) PCASE(4, IMPL)                    \
        PCASE(5, IMPL) PCASE(6, IMPL) PCASE(7, IMPL) PCASE(8, IMPL)                    \
        default: break;                                                                \
        }                                                                              \
    }
#define Q8_0P_IMPL(NT, n, g, a, as, y, ys, nr) q0p_impl(NT, 0, n, g, a, as, y, ys, nr)
#define Q4_0P_IMPL(NT, n, g, a, as, y, ys, nr) q0p_impl(NT, 1, n, g, a, as, y, ys, nr)
DEF_PTILE(q8_0, Q8_0P_IMPL)
DEF_PTILE(q4_0, Q4_0P_IMPL)
DEF_PTILE(q4_K, q4_Kp_impl)
DEF_PTILE(q6_K, q6_Kp_impl)

static const struct qpack p_q8_0 = {"avx512-q8_0x16", 8, q0p_act_bytes, q8_0p_act_prep,
                                     q8_0p_group_bytes, q8_0p_pack, q8_0_ptile};
static const struct qpack p_q4_0 = {"avx512-q4_0x16", 8, q0p_act_bytes, q4_0p_act_prep,
                                     q4_0p_group_bytes, q4_0p_pack, q4_0_ptile};
static const struct qpack p_q4_K = {"avx512-q4_Kx16", 8, qkp_act_bytes, qkp_act_prep,
                                     q4_Kp_group_bytes, q4_Kp_pack, q4_K_ptile};
static const struct qpack p_q6_K = {"avx512-q6_Kx16", 8, qkp_act_bytes, qkp_act_prep,
                                     q6_Kp_group_bytes, q6_Kp_pack, q6_K_ptile};

/* ------------------------------------------------------------- dispatch */

static const struct qfast k_q8_0 = {"avx512-q8_0", 8, q0_act_bytes, q0_act_prep, q8_0_tile};
static const struct qfast k_q4_0 = {"avx512-q4_0", 8, q0_act_bytes, q0_act_prep, q4_0_tile};
static const struct qfast k_q5_0 = {"avx512-q5_0", 8, q0_act_bytes, q0_act_prep, q5_0_tile};
static const struct qfast k_q4_K = {"avx512-q4_K", 4, qk_act_bytes, qk_act_prep, q4_K_tile};
static const struct qfast k_q6_K = {"avx512-q6_K", 4, qk_act_bytes, qk_act_prep, q6_K_tile};
static const struct qfast k_f16 = {"avx512-f16", 4, f_act_bytes, f16_act_prep, f16_tile};
static const struct qfast k_f32 = {"avx512-f32", 4, f_act_bytes, f32_act_prep, f32_tile};

static bool cpu_ok(void) { return cpu_has(SIMD_AVX512) && cpu_caps()->avx512vnni; }

static const struct qfast *avx512_get(enum qtype wtype) {
    switch (wtype) {
    case QTYPE_Q8_0: return &k_q8_0;
    case QTYPE_Q4_0: return &k_q4_0;
    case QTYPE_Q5_0: return &k_q5_0;
    case QTYPE_Q4_K: return &k_q4_K;
    case QTYPE_Q6_K: return &k_q6_K;
    case QTYPE_F16: return &k_f16;
    case QTYPE_F32: return &k_f32;
    case QTYPE_BF16: return qfast_bf16_get();   /* NULL without AVX512-BF16 */
    default: return NULL;
    }
}

const struct qfast *qfast_get_cpu(enum qtype wtype) {
    const struct qfast *k = cpu_ok() ? avx512_get(wtype) : NULL;
    return k ? k : cpu_has(SIMD_AVX2) ? qfast_avx2_get(wtype) : NULL;
}

const struct qfast *qfast_get(enum qtype wtype) {
    switch (cpu_caps()->allowed) {
    case SIMD_REF: return NULL;
    case SIMD_AVX2: return cpu_use(SIMD_AVX2) ? qfast_avx2_get(wtype) : NULL;
    case SIMD_AVX512: break;
    }
    return qfast_get_cpu(wtype);
}

const struct qpack *qpack_get_cpu(enum qtype wtype) {
    if (!cpu_ok()) return NULL;
    switch (wtype) {
    case QTYPE_Q8_0: return &p_q8_0;
    case QTYPE_Q4_0: return &p_q4_0;
    case QTYPE_Q4_K: return &p_q4_K;
    case QTYPE_Q6_K: return &p_q6_K;
    default: return NULL;
    }
}

const struct qpack *qpack_get(enum qtype wtype) {
    return cpu_caps()->allowed == SIMD_AVX512 ? qpack_get_cpu(wtype) : NULL;
}

#else /* not x86: no fast kernels */

const struct qfast *qfast_get_cpu(enum qtype wtype) { (void)wtype; return NULL; }
const struct qfast *qfast_get(enum qtype wtype) { (void)wtype; return NULL; }
const struct qpack *qpack_get_cpu(enum qtype wtype) { (void)wtype; return NULL; }
const struct qpack *qpack_get(enum qtype wtype) { (void)wtype; return NULL; }

#endif
