/* quant_bf16.c - AVX-512 BF16 matmul micro-kernel for BF16 weights (ggml type
 * 30): the struct qfast interface of quant_fast.h through vdpbf16ps.
 *
 * Every kernel function carries a target attribute, so this file compiles on
 * any x86-64 gcc/clang whatever -march says (the valgrind x86-64-v3 build, the
 * clang fuzz build); qfast_bf16_get() only hands the kernel out after
 * kernels/cpu.h said the CPU has AVX-512 F/BW/VL/BF16.
 *
 * Prepared activation row: the reference's BF16 activation (qt_f32_to_bf16:
 * NaN made quiet, everything else rounded to nearest even, subnormals KEPT),
 * n uint16 values padded with zeros to a multiple of 32 elements (64 bytes).
 * The rounding is done with integer ops, not vcvtne2ps2bf16: that instruction
 * flushes subnormal inputs to zero, the reference does not.
 *
 * Numerics (per weight row r and token t, independent of how many tokens share
 * a tile call and of the token's slot in it): the row is walked in 32-element
 * chunks; chunk c goes to accumulator c % BF_ACCS of the token, by one
 * vdpbf16ps (lane k += w[2k+1] x[2k+1] + w[2k] x[2k] of the chunk); the tail
 * chunk's weights are loaded under a mask (zeros past n, as the activation's
 * padding). At the end acc0+acc1, acc2+acc3, their sum, and hsum512's fixed
 * tree. Differences from the reference (sequential per-lane FMA-free sums in
 * 16 lanes): the summation order, and vdpbf16ps's denormal handling (bf16
 * subnormal inputs read as zero, subnormal results flushed; rounding always
 * nearest even). Each bf16 x bf16 product is exact in float either way. */
#include "kernels/quant_fast.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "kernels/cpu.h"
#include "kernels/simd_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define INL static inline __attribute__((always_inline)) TGT

#ifndef BF_ACCS
#define BF_ACCS 4      /* accumulators per token (hides the vdpbf16ps latency at nt = 1) */
#endif
#ifndef BF_MAX_TOK
#define BF_MAX_TOK 6   /* BF_ACCS * BF_MAX_TOK accumulators + the weights fit 32 zmm */
#endif
_Static_assert(BF_ACCS == 4, "the final reduction below is written for 4 accumulators");
_Static_assert(BF_MAX_TOK >= 1 && BF_MAX_TOK <= QFAST_MAX_TOK && BF_MAX_TOK <= 8, "max_tok");

#define BF_CHUNK 32    /* bf16 elements per zmm */

static size_t bf_act_bytes(int64_t n) {
    return (size_t)((n + BF_CHUNK - 1) / BF_CHUNK * BF_CHUNK) * sizeof(uint16_t);
}

/* 16 floats -> 16 bf16 exactly as qt_f32_to_bf16. */
INL __m256i bf_round16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rne = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
    const __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
    const __mmask16 isnan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rne, isnan, qnan));
}

static TGT void bf_act_prep(const float *x, int64_t n, void *dst) {
    uint16_t *d = dst;
    const int64_t np = (int64_t)(bf_act_bytes(n) / sizeof(uint16_t));
    for (int64_t i = 0; i < np; i += 16) {
        const __mmask16 m = mask16_first(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);   /* zeros past n -> bf16 +0 */
        _mm256_storeu_si256((__m256i *)(d + i), bf_round16(v));
    }
}

INL __m512 bf_dot(__m512 acc, __m512i w, const uint16_t *x) {
    return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)_mm512_loadu_si512(x));
}

INL void bf_impl(const int NT, int64_t n, const void *wv, const uint8_t *act, size_t as,
                 float *y, size_t ys) {
    const uint16_t *w = wv;
    __m512 acc[BF_MAX_TOK][BF_ACCS];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int k = 0; k < BF_ACCS; k++) acc[t][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; n - i >= BF_CHUNK * BF_ACCS; i += BF_CHUNK * BF_ACCS) {
#pragma GCC unroll 4
        for (int k = 0; k < BF_ACCS; k++) {
            const __m512i wk = _mm512_loadu_si512(w + i + BF_CHUNK * k);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const uint16_t *x = (const uint16_t *)(act + (size_t)t * as);
                acc[t][k] = bf_dot(acc[t][k], wk, x + i + BF_CHUNK * k);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < BF_ACCS; k++) {   /* the last 1..127 elements, same accumulators */
        const int64_t j = i + BF_CHUNK * k;
        if (j >= n) break;
        const __mmask32 m = n - j >= BF_CHUNK ? (__mmask32)0xFFFFFFFFu
                                              : (__mmask32)((1u << (n - j)) - 1);
        const __m512i wk = _mm512_maskz_loadu_epi16(m, w + j);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint16_t *x = (const uint16_t *)(act + (size_t)t * as);
            acc[t][k] = bf_dot(acc[t][k], wk, x + j);   /* padding of x is +0 */
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
        y[(size_t)t * ys] = hsum512(_mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]),
                                                     _mm512_add_ps(acc[t][2], acc[t][3])));
}

/* One fully unrolled copy per token count. */
static TGT void bf_tile(int64_t n, const void *w, const void *act, size_t as, int nt, float *y,
                        size_t ys) {
    const uint8_t *a = act;
    switch (nt) {
    case 1: bf_impl(1, n, w, a, as, y, ys); break;
#if BF_MAX_TOK >= 2
    case 2: bf_impl(2, n, w, a, as, y, ys); break;
#endif
#if BF_MAX_TOK >= 3
    case 3: bf_impl(3, n, w, a, as, y, ys); break;
#endif
#if BF_MAX_TOK >= 4
    case 4: bf_impl(4, n, w, a, as, y, ys); break;
#endif
#if BF_MAX_TOK >= 5
    case 5: bf_impl(5, n, w, a, as, y, ys); break;
#endif
#if BF_MAX_TOK >= 6
    case 6: bf_impl(6, n, w, a, as, y, ys); break;
#endif
#if BF_MAX_TOK >= 7
    case 7: bf_impl(7, n, w, a, as, y, ys); break;
#endif
#if BF_MAX_TOK >= 8
    case 8: bf_impl(8, n, w, a, as, y, ys); break;
#endif
    default: break;
    }
}

static const struct qfast k_bf16 = {"avx512-bf16", BF_MAX_TOK, bf_act_bytes, bf_act_prep, bf_tile};

/* The BF16 kernel when the CPU runs it, else NULL. Ignores SPARROW_KERNELS
 * (the caller's dispatch, like qfast_get, applies it). Any thread. */
const struct qfast *qfast_bf16_get(void) {
    return cpu_has(SIMD_AVX512) && cpu_caps()->avx512bf16 ? &k_bf16 : NULL;
}

#else /* not x86 */

const struct qfast *qfast_bf16_get(void) { return NULL; }

#endif
