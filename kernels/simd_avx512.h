/* simd_avx512.h - AVX-512 helpers shared by the kernel files. Each function
 * carries its own target attribute, so any file can include this whatever
 * -march says (the callers' wider targets inline it). x86 only. */
#pragma once
#include <immintrin.h>
#include <stdint.h>

/* Lanes [0, k) of 16: all for k >= 16, none for k <= 0 (masked loads and
 * stores of a row's tail). */
static inline __mmask16 mask16_first(int64_t k) {
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1);
}

/* The sum of v's 16 lanes in one fixed order (halves, quarters, pairs): every
 * kernel reduces its accumulators this way, so a result never depends on
 * which kernel file computed it. */
static inline __attribute__((always_inline, target("avx512f"))) float hsum512(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
