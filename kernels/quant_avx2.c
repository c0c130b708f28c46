/* quant_avx2.c - AVX2 + FMA + F16C matmul micro-kernels (struct qfast of
 * quant_fast.h) for CPUs without AVX-512 VNNI, and for valgrind, which cannot
 * run AVX-512.
 *
 * qfast_avx2_get() (declared in quant_fast.h) returns the AVX2 kernel for a weight type (F32, F16, Q8_0, Q4_0, Q5_0,
 * Q4_K, Q6_K), or NULL for other types. It does NOT look at the CPU: the
 * caller (qfast_get) hands these out only after kernels/cpu.h said the CPU has
 * avx2, fma and f16c. Every kernel function carries a target attribute, so
 * the file compiles on any x86-64 gcc/clang whatever -march says.
 *
 * Numerics: the same float operations, in the same order, as the AVX-512
 * kernels of quant_avx512.c (which follow ggml's AVX2 vec_dot kernels), so the
 * two paths give the same bits for every (row, token); integer block dots are
 * exact, and their int32 lanes are the same (lane k = elements 4k..4k+3 of
 * every 32-element chunk, summed over the block):
 *   - Q8_0/Q4_0/Q5_0: ggml's mul_sum_i8_pairs (vpsignb, vpmaddubsw on |w|,
 *     vpmaddwd); block by block acc8 = fma(d_w*d_x, lanes, acc8);
 *   - Q4_K: scales times vpmaddubsw(unsigned quants, x), vpmaddwd, per
 *     super-block acc8 = fma(d_w*d_x, lanes, acc8), the mins term
 *     acc4 = fma(-d_x*dmin_w, prod4, acc4) from the activation's bsums;
 *   - Q6_K: unsigned 6-bit quants; the offset of 32 comes back as
 *     -32 * vpmaddwd(bsums, scales) in the lanes (as the AVX-512 kernel does,
 *     and cheaper than ggml's per-token vpmaddubsw(32, x));
 *   - F16/F32: the AVX-512 kernel's 4 accumulators of 16 lanes (element i in
 *     accumulator (i/16) % 4, lane i % 16), here as 8 ymm halves. The row is
 *     walked in passes over a subset of the accumulators (all 4 for one token,
 *     2 for two tokens, 1 for three or four) so the live accumulators fit the
 *     16 ymm registers; each accumulator still sees its chunks in row order,
 *     so the bits do not depend on the pass split.
 * Activations: the reference dot_type quantization, bit for bit, for finite
 * inputs (vectorized here: amax, the x * id product and the round-half-to-even
 * conversion are the same single roundings as quant.c's scalar code).
 * Thread-safety: pure functions. */
#include "kernels/quant_blocks.h"
#include "kernels/quant_fast.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* A target attribute adds to -march: under -march=native on an AVX-512
 * machine gcc may use EVEX encodings here (harmless there). "no-avx512f"
 * cannot be added: the intrinsic headers then refuse to inline. The code an
 * AVX2-only CPU runs is what the -march=x86-64-v3 (valgrind) build makes. */
#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

INL float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* ggml's hsum_float_8 (the AVX-512 file's hsum256). */
INL float hsum256(__m256 a) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* max(|x|) of 8 lanes into m; a NaN x leaves m alone, as fmaxf(m, |x|). */
INL __m256 absmax(__m256 m, __m256 x) {
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_max_ps(ax, m); /* vmaxps returns the 2nd operand on NaN */
}

INL float hmax256(__m256 m) {
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* 32 int32 (4 vectors, element order) -> 32 int8 with signed saturation. */
INL __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* NAME##_tile calls IMPL with a constant token count: one unrolled copy each. */
#define TILE_ARGS int64_t n, const void *w, const void *act, size_t as, int nt, float *y, size_t ys
#define CASE(IMPL, k) case k: IMPL(k, n, w, a_, as, y, ys); break;
#define DEF_TILE8(NAME, IMPL)                                                          \
    static TGT void NAME##_tile(TILE_ARGS) {                                           \
        const uint8_t *a_ = act;                                                       \
        switch (nt) { CASE(IMPL, 1) CASE(IMPL, 2) CASE(IMPL, 3) CASE(IMPL, 4)         \
                      CASE(IMPL, 5) CASE(IMPL, 6) CASE(IMPL, 7) CASE(IMPL, 8)         \
        default: break; }                                                              \
    }
#define DEF_TILE4(NAME, IMPL)                                                          \
    static TGT void NAME##_tile(TILE_ARGS) {                                           \
        const uint8_t *a_ = act;                                                       \
        switch (nt) { CASE(IMPL, 1) CASE(IMPL, 2) CASE(IMPL, 3) CASE(IMPL, 4)         \
                      default: break; }                                         \
    }

/* ------------------------------------------- Q8_0 / Q4_0 / Q5_0 weights */

/* Prepared Q8_0 activation row of nb blocks: qs[nb * 32] the reference Q8_0
 * quants (signed, element order), then d[nb] the block scale as float (the
 * reference's f16, widened); zero padding to 64 bytes. */
static size_t q0_act_bytes(int64_t n) { return round64((size_t)(n / QK32) * 36); }

/* ggml's AVX quantize_row_q8_0 = quant.c's q8_0_from_float: d = amax / 127
 * stored as f16, quants nearest_int(x * (127 / amax)), half to even. */
static TGT void q0_act_prep(const float *x, int64_t n, void *dst) {
    const int64_t nb = n / QK32;
    int8_t *qs = dst;
    float *dd = (float *)(qs + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * QK32;
        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_setzero_ps();
        m = absmax(m, v0); m = absmax(m, v1); m = absmax(m, v2); m = absmax(m, v3);
        const float amax = hmax256(m);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        dd[b] = h2f((uint16_t)_cvtss_sh(d, 0));
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i q = pack32(_mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)),
                                 _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid)),
                                 _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)),
                                 _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid)));
        _mm256_storeu_si256((__m256i *)(qs + b * 32), q);
    }
    const size_t used = (size_t)nb * 36;
    memset((uint8_t *)dst + used, 0, q0_act_bytes(n) - used);
}

INL __m256i q4_0_nibbles(const uint8_t *q) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m256i lh = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(lh, _mm256_set1_epi8(0x0F));
}

/* ggml's bytes_from_bits_32: byte j = 0xFF if bit j of the 32 bits is set. */
INL __m256i bytes_from_bits_32(const uint8_t *x) {
    uint32_t x32;
    memcpy(&x32, x, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

/* Signed weight quants of block b (32 bytes, element order) and its scale. */
INL __m256i q0_block(const int kind, const void *w, int64_t b, uint16_t *dh) {
    if (kind == 0) {
        const struct block_q8_0 *W = (const struct block_q8_0 *)w + b;
        *dh = W->d;
        return _mm256_loadu_si256((const __m256i *)W->qs);
    }
    if (kind == 1) {
        const struct block_q4_0 *W = (const struct block_q4_0 *)w + b;
        *dh = W->d;
        return _mm256_sub_epi8(q4_0_nibbles(W->qs), _mm256_set1_epi8(8));
    }
    const struct block_q5_0 *W = (const struct block_q5_0 *)w + b;
    *dh = W->d;
    /* nibble | 0xF0 where the 5th bit is clear: nibble + 16 * bit - 16 */
    const __m256i hi = _mm256_andnot_si256(bytes_from_bits_32(W->qh), _mm256_set1_epi8((char)0xF0));
    return _mm256_or_si256(q4_0_nibbles(W->qs), hi);
}

/* kind: 0 Q8_0, 1 Q4_0, 2 Q5_0. Per token ggml's AVX2 loop: block by block
 * acc = fma(d_w * d_x, lanes, acc), then hsum_float_8. |w| x sign(x, w) in
 * vpmaddubsw: pairs are at most 2 * 128 * 127 < 2^15, no saturation. */
INL void q0_impl(const int NT, const int kind, int64_t n, const void *w, const uint8_t *act,
                 size_t as, float *y, size_t ys) {
    const int64_t nb = n / QK32;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[QFAST_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        uint16_t dh;
        const __m256i wv = q0_block(kind, w, b, &dh);
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        const __m256 dw = _mm256_set1_ps(h2f(dh));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *a = act + (size_t)t * as;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(a + b * 32));
            const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv));
            const __m256i s = _mm256_madd_epi16(p, ones);
            const __m256 d = _mm256_mul_ps(dw, _mm256_broadcast_ss((const float *)(a + nb * 32) + b));
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[(size_t)t * ys] = hsum256(acc[t]);
}

#define Q8_0_IMPL(NT, n, w, a, as, y, ys) q0_impl(NT, 0, n, w, a, as, y, ys)
#define Q4_0_IMPL(NT, n, w, a, as, y, ys) q0_impl(NT, 1, n, w, a, as, y, ys)
#define Q5_0_IMPL(NT, n, w, a, as, y, ys) q0_impl(NT, 2, n, w, a, as, y, ys)
DEF_TILE8(q8_0, Q8_0_IMPL)
DEF_TILE8(q4_0, Q4_0_IMPL)
DEF_TILE8(q5_0, Q5_0_IMPL)

/* ------------------------------------------------------- Q4_K / Q6_K */

/* K-quant activations are plain Q8_K blocks, as the reference's. */
static size_t qk_act_bytes(int64_t n) { return round64((size_t)(n / QK_K) * sizeof(struct block_q8_K)); }

/* quantize_row_q8_K_ref = quant.c's q8_K_from_float: max = the first element
 * of largest magnitude (its sign kept), iscale = -127 / max, quants
 * min(127, nearest_int(iscale * x)), bsums per 16, d = 1 / iscale. */
static TGT void qk_act_prep(const float *x, int64_t n, void *dst) {
    const int64_t nb = n / QK_K;
    struct block_q8_K *Y = dst;
    for (int64_t b = 0; b < nb; b++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m = absmax(m, _mm256_loadu_ps(x + j));
        const float amax = hmax256(m);
        if (amax == 0.0f) {
            memset(&Y[b], 0, sizeof Y[b]);
            continue;
        }
        const __m256 vam = _mm256_set1_ps(amax);
        int first = 0;
        for (int j = 0; j < QK_K; j += 8) {
            const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + j));
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(ax, vam, _CMP_EQ_OQ));
            if (mask) { first = j + __builtin_ctz((unsigned)mask); break; }
        }
        const float iscale = -127.f / x[first];
        const __m256 vis = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32) {
            const __m256i q = pack32(_mm256_cvtps_epi32(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j))),
                                     _mm256_cvtps_epi32(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 8))),
                                     _mm256_cvtps_epi32(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 16))),
                                     _mm256_cvtps_epi32(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 24))));
            _mm256_storeu_si256((__m256i *)(Y[b].qs + j), q); /* saturation = min(127, .) */
            /* bsums of the two groups of 16: vpmaddubsw(1, q), then vpmaddwd(1) */
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
                                                _mm256_set1_epi16(1));
            /* p: 8 int32, lane k = elements 4k..4k+3; groups are lanes 0-3, 4-7 */
            int32_t l[8];
            _mm256_storeu_si256((__m256i *)l, p);
            Y[b].bsums[j / 16] = (int16_t)(l[0] + l[1] + l[2] + l[3]);
            Y[b].bsums[j / 16 + 1] = (int16_t)(l[4] + l[5] + l[6] + l[7]);
        }
        Y[b].d = 1 / iscale;
    }
    const size_t used = (size_t)nb * sizeof(struct block_q8_K);
    memset((uint8_t *)dst + used, 0, qk_act_bytes(n) - used);
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
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        /* ggml's unpacking of the 12 scale bytes: 8 scales, then 8 mins */
        uint32_t u[4];
        memcpy(u, W[b].scales, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t mlo = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = mlo;
        u[0] &= 0x3f3f3f3fu;
        const __m256i ms = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)u));
        const __m128i mins8 = _mm256_extracti128_si256(ms, 1);
        const __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms));
        const float dw = h2f(W[b].d), dmw = h2f(W[b].dmin);
        __m256i sumi[QFAST_MAX_TOK];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) sumi[t] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            /* int16 scale 2j, 2j+1 in every slot: bytes 4j, 4j+1 / 4j+2, 4j+3 */
            const __m256i scale_l = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)(0x0100 + 0x0404 * j)));
            const __m256i scale_h = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)(0x0302 + 0x0404 * j)));
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(W[b].qs + 32 * j));
            const __m256i q4l = _mm256_and_si256(q4, m4);
            const __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
                const __m256i pl = _mm256_madd_epi16(scale_l,
                    _mm256_maddubs_epi16(q4l, _mm256_loadu_si256((const __m256i *)(X->qs + 64 * j))));
                const __m256i ph = _mm256_madd_epi16(scale_h,
                    _mm256_maddubs_epi16(q4h, _mm256_loadu_si256((const __m256i *)(X->qs + 64 * j + 32))));
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pl, ph));
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
            const __m256i q8sums = _mm256_loadu_si256((const __m256i *)X->bsums);
            const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(q8sums),
                                               _mm256_extracti128_si256(q8sums, 1));
            const __m128i prod = _mm_madd_epi16(mins8, q8s);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * X->d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
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

/* ggml's get_scale_shuffle: bytes 2i (x8) then 2i+1 (x8) of 16 scales. */
static const uint8_t k_scale_shuffle[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

INL void q6_K_impl(const int NT, int64_t n, const void *wp, const uint8_t *act, size_t as,
                   float *y, size_t ys) {
    const struct block_q6_K *W = wp;
    const int64_t nb = n / QK_K;
    __m256 acc[QFAST_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *sc = W[b].scales;
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i sumi[QFAST_MAX_TOK];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            /* -32 * sum_g scale_g * bsum_g: the offset of the unsigned quants */
            const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
            const __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)X->bsums), sc16);
            sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
        }
        for (int h = 0; h < 2; h++) {
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(W[b].ql + 64 * h));
            const __m256i ql2 = _mm256_loadu_si256((const __m256i *)(W[b].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(W[b].qh + 32 * h));
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                /* elements 128h + 32c + l: low nibble from ql1 (c even) or
                 * ql2 (c odd), low or high half (c < 2 or not); high 2 bits
                 * at bit 2c of qh */
                const __m256i l = (c & 1) ? ql2 : ql1;
                const __m256i lo = c < 2 ? _mm256_and_si256(l, m4)
                                         : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m3);
                const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
                const __m256i scv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(
                    sc8, _mm_loadu_si128((const __m128i *)k_scale_shuffle[4 * h + c])));
#pragma GCC unroll 8
                for (int t = 0; t < NT; t++) {
                    const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
                    const __m256i p = _mm256_maddubs_epi16(q,
                        _mm256_loadu_si256((const __m256i *)(X->qs + 128 * h + 32 * c)));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(scv, p));
                }
            }
        }
        const float dw = h2f(W[b].d);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const struct block_q8_K *X = (const struct block_q8_K *)(act + (size_t)t * as) + b;
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(X->d * dw), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[(size_t)t * ys] = hsum256(acc[t]);
}

DEF_TILE4(q4_K, q4_K_impl)
DEF_TILE4(q6_K, q6_K_impl)

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
    const int64_t np = (n + 15) & ~(int64_t)15;
    for (int64_t i = 0; i < np; i += 8) {
        __m256 v;
        if (n - i >= 8) {
            v = _mm256_loadu_ps(x + i);
        } else {
            float tmp[8] = {0};
            if (n > i) memcpy(tmp, x + i, (size_t)(n - i) * sizeof(float));
            v = _mm256_loadu_ps(tmp);
        }
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm256_cvtps_ph(v, 0)));
    }
}

/* 16 weights at element i as two 8-lane halves; m < 16 valid ones (tail),
 * zeros past them. */
INL void f_weights(const int kind, const void *w, int64_t i, int m, __m256 *lo, __m256 *hi) {
    if (kind == 0) {
        const float *p = (const float *)w + i;
        if (m < 16) {
            float tmp[16] = {0};
            memcpy(tmp, p, (size_t)m * sizeof(float));
            *lo = _mm256_loadu_ps(tmp);
            *hi = _mm256_loadu_ps(tmp + 8);
        } else {
            *lo = _mm256_loadu_ps(p);
            *hi = _mm256_loadu_ps(p + 8);
        }
    } else {
        const uint16_t *p = (const uint16_t *)w + i;
        __m256i h;
        if (m < 16) {
            uint16_t tmp[16] = {0};
            memcpy(tmp, p, (size_t)m * sizeof(uint16_t));
            h = _mm256_loadu_si256((const __m256i *)tmp);
        } else {
            h = _mm256_loadu_si256((const __m256i *)p);
        }
        *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
    }
}

/* kind 0: F32 weights, 1: F16 weights. The AVX-512 kernel's accumulators
 * acc[t][k] (k < 4, 16 lanes = two ymm halves): chunk c (16 elements at
 * 16c) goes to k = c % 4 with one FMA per lane; the tail chunk's weights are
 * zero-padded, its activations are zero padding already. G accumulators per
 * pass (G * NT * 2 ymm live), passes k = 0, G, ..., each over the whole row. */
INL void f_impl(const int NT, const int kind, int64_t n, const void *w, const uint8_t *act,
                size_t as, float *y, size_t ys) {
    const int G = NT == 1 ? 4 : NT == 2 ? 2 : 1;
    __m256 done[QFAST_MAX_TOK][4][2];
    for (int kg = 0; kg < 4; kg += G) {
        __m256 a[QFAST_MAX_TOK][4][2];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) a[t][g][0] = a[t][g][1] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; n - i >= 64; i += 64) {
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                const int64_t j = i + 16 * (kg + g);
                __m256 wl, wh;
                f_weights(kind, w, j, 16, &wl, &wh);
#pragma GCC unroll 8
                for (int t = 0; t < NT; t++) {
                    const float *x = (const float *)(act + (size_t)t * as) + j;
                    a[t][g][0] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(x), a[t][g][0]);
                    a[t][g][1] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(x + 8), a[t][g][1]);
                }
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) { /* the last 1..63 elements, same accumulators */
            const int64_t j = i + 16 * (kg + g);
            if (j >= n) break;
            __m256 wl, wh;
            f_weights(kind, w, j, n - j >= 16 ? 16 : (int)(n - j), &wl, &wh);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const float *x = (const float *)(act + (size_t)t * as) + j;
                a[t][g][0] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(x), a[t][g][0]);
                a[t][g][1] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(x + 8), a[t][g][1]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                done[t][kg + g][0] = a[t][g][0];
                done[t][kg + g][1] = a[t][g][1];
            }
    }
    /* hsum512((acc0 + acc1) + (acc2 + acc3)): halves added, then hsum_float_8 */
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        __m256 h[2];
        for (int s = 0; s < 2; s++)
            h[s] = _mm256_add_ps(_mm256_add_ps(done[t][0][s], done[t][1][s]),
                                 _mm256_add_ps(done[t][2][s], done[t][3][s]));
        y[(size_t)t * ys] = hsum256(_mm256_add_ps(h[0], h[1]));
    }
}

#define F32_IMPL(NT, n, w, a, as, y, ys) f_impl(NT, 0, n, w, a, as, y, ys)
#define F16_IMPL(NT, n, w, a, as, y, ys) f_impl(NT, 1, n, w, a, as, y, ys)
DEF_TILE4(f32, F32_IMPL)
DEF_TILE4(f16, F16_IMPL)

/* ------------------------------------------------------------- table */

#define K(nm, mt, ab, ap, tl) {.name = nm, .max_tok = mt, .act_bytes = ab, .act_prep = ap, .tile = tl}
static const struct qfast k_q8_0 = K("avx2-q8_0", 8, q0_act_bytes, q0_act_prep, q8_0_tile);
static const struct qfast k_q4_0 = K("avx2-q4_0", 8, q0_act_bytes, q0_act_prep, q4_0_tile);
static const struct qfast k_q5_0 = K("avx2-q5_0", 8, q0_act_bytes, q0_act_prep, q5_0_tile);
static const struct qfast k_q4_K = K("avx2-q4_K", 4, qk_act_bytes, qk_act_prep, q4_K_tile);
static const struct qfast k_q6_K = K("avx2-q6_K", 4, qk_act_bytes, qk_act_prep, q6_K_tile);
static const struct qfast k_f16 = K("avx2-f16", 4, f_act_bytes, f16_act_prep, f16_tile);
static const struct qfast k_f32 = K("avx2-f32", 4, f_act_bytes, f32_act_prep, f32_tile);
#undef K

const struct qfast *qfast_avx2_get(enum qtype wtype) {
    switch (wtype) {
    case QTYPE_Q8_0: return &k_q8_0;
    case QTYPE_Q4_0: return &k_q4_0;
    case QTYPE_Q5_0: return &k_q5_0;
    case QTYPE_Q4_K: return &k_q4_K;
    case QTYPE_Q6_K: return &k_q6_K;
    case QTYPE_F16: return &k_f16;
    case QTYPE_F32: return &k_f32;
    default: return NULL;
    }
}

#else /* not x86: no AVX2 kernels */

const struct qfast *qfast_avx2_get(enum qtype wtype) { (void)wtype; return NULL; }

#endif
