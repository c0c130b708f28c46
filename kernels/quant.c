/* quant.c - block formats of ggml/GGUF: sizes, decoding, activation
 * quantization and reference dot products. See quant.h.
 *
 * Everything here mirrors llama.cpp's ggml (2025-02) bit for bit where that is
 * possible: block structs are laid out exactly as in ggml-common.h, the weight
 * quantizers follow ggml's quantize_row_*_ref, the Q8_0 activation quantizer
 * follows the x86 AVX path of quantize_row_q8_0 (round half to even), Q8_K
 * follows quantize_row_q8_K_ref, and the quantized dot products follow ggml's
 * generic vec_dot_*: exact integer sums inside a block, then the block scales
 * applied in float in the same operation order, blocks summed in row order.
 *
 * Every vec_dot has a fixed summation order that depends only on n, so a row
 * dotted alone or inside a batch gives the same bits. This file is compiled
 * as ISO C (-std=c11), where gcc does not contract a*b+c into an FMA; the
 * expressions therefore round exactly as written. */
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "kernels/sparse.h"

#include <math.h>
#include <string.h>

#ifdef __F16C__
#include <immintrin.h>
#endif

/* ------------------------------------------------------ scalar conversions */

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

#ifndef __F16C__
/* Portable IEEE half -> float; exact for every input. */
static float f16_to_f32_soft(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31) return bits_f32(sign | 0x7f800000 | (m << 13));
    if (e != 0) return bits_f32(sign | ((e + 112) << 23) | (m << 13));
    if (m == 0) return bits_f32(sign);
    /* Subnormal half: normalize; it is a normal float. */
    e = 113;
    while (!(m & 0x400)) { m <<= 1; e--; }
    return bits_f32(sign | (e << 23) | ((m & 0x3ff) << 13));
}

/* Portable float -> IEEE half, round to nearest even, identical to F16C's
 * vcvtps2ph with imm 0 (NaNs keep sign and top payload bits, made quiet). */
static uint16_t f32_to_f16_soft(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff);
    if (ax >= 0x477ff000) return sign | 0x7c00; /* >= 65520 rounds to inf */
    if (ax >= 0x38800000) {                     /* normal half */
        uint32_t h = (ax - 0x38000000) >> 13, rem = ax & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    if (ax < 0x33000000) return sign;           /* <= 2^-25: rounds to zero */
    /* Subnormal half: count units of 2^-24; a carry into 0x400 is the
     * smallest normal, which is also the right encoding. */
    uint32_t m = (ax & 0x7fffff) | 0x800000;
    int shift = 126 - (int)(ax >> 23);          /* 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return sign | (uint16_t)q;
}
#endif

float qt_f16_to_f32(uint16_t h) {
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return f16_to_f32_soft(h);
#endif
}

uint16_t qt_f32_to_f16(float f) {
#ifdef __F16C__
    return (uint16_t)_cvtss_sh(f, 0); /* 0 = round to nearest even */
#else
    return f32_to_f16_soft(f);
#endif
}

float qt_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ggml_compute_fp32_to_bf16: NaN made quiet, else round to nearest even
 * (subnormals kept, not flushed, as in ggml of 2025-02). */
uint16_t qt_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* ggml's nearest_int: round half to even through the float adder, valid for
 * |f| <= 2^22. Used wherever ggml's reference code uses it. */
static int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* -------------------------------------------------------- float rows */

static void f32_copy(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *restrict dst, int64_t n) {
    const uint16_t *restrict s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qt_f16_to_f32(s[i]);
}

static void f16_from_float(const float *restrict src, void *dst, int64_t n) {
    uint16_t *restrict d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = qt_f32_to_f16(src[i]);
}

static void bf16_to_float(const void *src, float *restrict dst, int64_t n) {
    const uint16_t *restrict s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qt_bf16_to_f32(s[i]);
}

static void bf16_from_float(const float *restrict src, void *dst, int64_t n) {
    uint16_t *restrict d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = qt_f32_to_bf16(src[i]);
}

/* Float dot products: LANES independent accumulators (element i goes to lane
 * i % LANES), reduced pairwise at the end. The order depends on n only, and
 * the lane loop is a plain vector FMA-free multiply-add for the compiler. */
#define LANES 16

static float lanes_reduce(float *acc) {
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static float f32_dot(int64_t n, const void *wv, const void *xv) {
    const float *restrict w = wv, *restrict x = xv;
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += w[i + k] * x[i + k];
    for (int k = 0; i + k < n; k++) acc[k] += w[i + k] * x[i + k];
    return lanes_reduce(acc);
}

static float f16_dot(int64_t n, const void *wv, const void *xv) {
    const uint16_t *restrict w = wv, *restrict x = xv;
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += qt_f16_to_f32(w[i + k]) * qt_f16_to_f32(x[i + k]);
    for (int k = 0; i + k < n; k++)
        acc[k] += qt_f16_to_f32(w[i + k]) * qt_f16_to_f32(x[i + k]);
    return lanes_reduce(acc);
}

static float bf16_dot(int64_t n, const void *wv, const void *xv) {
    const uint16_t *restrict w = wv, *restrict x = xv;
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += qt_bf16_to_f32(w[i + k]) * qt_bf16_to_f32(x[i + k]);
    for (int k = 0; i + k < n; k++)
        acc[k] += qt_bf16_to_f32(w[i + k]) * qt_bf16_to_f32(x[i + k]);
    return lanes_reduce(acc);
}

/* ---------------------------------------------------------------- Q8_0 */

/* Activation quantizer, as ggml's AVX quantize_row_q8_0: id = 127/amax (not
 * 1/d), products rounded half to even (_mm256_round_ps, _MM_ROUND_NEAREST).
 * ggml's quantize_row_q8_0_ref would use roundf (half away from zero) instead;
 * the two differ only on exact .5 products. */
static void q8_0_from_float(const float *restrict x, void *dst, int64_t n) {
    struct block_q8_0 *restrict y = dst;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        float amax = 0.0f;
        for (int j = 0; j < QK32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = qt_f32_to_f16(d);
        /* |x*id| <= 127 (+1 ulp), so nearest_int is exact and never needs
         * the saturation ggml's packs instructions would apply. */
        for (int j = 0; j < QK32; j++) y[b].qs[j] = (int8_t)nearest_int(x[j] * id);
    }
}

static void q8_0_to_float(const void *src, float *restrict y, int64_t n) {
    const struct block_q8_0 *restrict x = src;
    for (int64_t b = 0; b < n / QK32; b++) {
        const float d = qt_f16_to_f32(x[b].d);
        for (int j = 0; j < QK32; j++) y[b * QK32 + j] = x[b].qs[j] * d;
    }
}

static float q8_0_dot(int64_t n, const void *wv, const void *xv) {
    const struct block_q8_0 *restrict w = wv;
    const struct block_q8_0 *restrict x = xv;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK32; j++) sumi += w[b].qs[j] * x[b].qs[j];
        sumf += (float)sumi * (qt_f16_to_f32(w[b].d) * qt_f16_to_f32(x[b].d));
    }
    return sumf;
}

/* ---------------------------------------------------------------- Q4_0 */

/* quantize_row_q4_0_ref: the signed extreme maps to -8, so d may be negative. */
static void q4_0_from_float(const float *restrict x, void *dst, int64_t n) {
    struct block_q4_0 *restrict y = dst;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = qt_f32_to_f16(d);
        for (int j = 0; j < QK32 / 2; j++) {
            /* x*id is in [-8, 8]; +8.5 then truncation rounds half up. */
            const int q0 = imin(15, (int)(x[j] * id + 8.5f));
            const int q1 = imin(15, (int)(x[j + QK32 / 2] * id + 8.5f));
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q4_0_to_float(const void *src, float *restrict y, int64_t n) {
    const struct block_q4_0 *restrict x = src;
    for (int64_t b = 0; b < n / QK32; b++, y += QK32) {
        const float d = qt_f16_to_f32(x[b].d);
        for (int j = 0; j < QK32 / 2; j++) {
            y[j] = ((x[b].qs[j] & 0x0F) - 8) * d;
            y[j + QK32 / 2] = ((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

static float q4_0_dot(int64_t n, const void *wv, const void *xv) {
    const struct block_q4_0 *restrict w = wv;
    const struct block_q8_0 *restrict x = xv;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK32 / 2; j++) {
            sumi += ((w[b].qs[j] & 0x0F) - 8) * x[b].qs[j];
            sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + QK32 / 2];
        }
        /* ggml: sumi*d_w*d_x, left to right. */
        sumf += (float)sumi * qt_f16_to_f32(w[b].d) * qt_f16_to_f32(x[b].d);
    }
    return sumf;
}

/* ---------------------------------------------------------------- Q5_0 */

static void q5_0_from_float(const float *restrict x, void *dst, int64_t n) {
    struct block_q5_0 *restrict y = dst;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = qt_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK32 / 2; j++) {
            const int q0 = imin(31, (int)(x[j] * id + 16.5f));
            const int q1 = imin(31, (int)(x[j + QK32 / 2] * id + 16.5f));
            y[b].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK32 / 2);
        }
        for (int k = 0; k < 4; k++) y[b].qh[k] = (uint8_t)(qh >> (8 * k));
    }
}

/* The 5-bit value of element j (0..31) of a block, minus 16. */
static int q5_0_value(const struct block_q5_0 *blk, uint32_t qh, int j) {
    const int lo = j < QK32 / 2 ? blk->qs[j] & 0x0F : blk->qs[j - QK32 / 2] >> 4;
    return (lo | (int)(((qh >> j) & 1) << 4)) - 16;
}

static uint32_t q5_0_qh(const struct block_q5_0 *blk) {
    return (uint32_t)blk->qh[0] | (uint32_t)blk->qh[1] << 8 |
           (uint32_t)blk->qh[2] << 16 | (uint32_t)blk->qh[3] << 24;
}

static void q5_0_to_float(const void *src, float *restrict y, int64_t n) {
    const struct block_q5_0 *restrict x = src;
    for (int64_t b = 0; b < n / QK32; b++, y += QK32) {
        const float d = qt_f16_to_f32(x[b].d);
        const uint32_t qh = q5_0_qh(&x[b]);
        for (int j = 0; j < QK32; j++) y[j] = q5_0_value(&x[b], qh, j) * d;
    }
}

static float q5_0_dot(int64_t n, const void *wv, const void *xv) {
    const struct block_q5_0 *restrict w = wv;
    const struct block_q8_0 *restrict x = xv;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        const uint32_t qh = q5_0_qh(&w[b]);
        int32_t sumi = 0;
        for (int j = 0; j < QK32; j++) sumi += q5_0_value(&w[b], qh, j) * x[b].qs[j];
        /* ggml: (d_w*d_x)*sumi. */
        sumf += (qt_f16_to_f32(w[b].d) * qt_f16_to_f32(x[b].d)) * (float)sumi;
    }
    return sumf;
}

/* ---------------------------------------------------------------- Q8_K */

/* quantize_row_q8_K_ref: the signed extreme maps to -127 and d = 1/iscale,
 * so d is negative when the extreme is positive. */
static void q8_K_from_float(const float *restrict x, void *dst, int64_t n) {
    struct block_q8_K *restrict y = dst;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (amax == 0.0f) {
            /* ggml leaves bsums unwritten here; zero is what they would sum to. */
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) y[b].qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int k = 0; k < 16; k++) sum += y[b].qs[g * 16 + k];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

static void q8_K_to_float(const void *src, float *restrict y, int64_t n) {
    const struct block_q8_K *restrict x = src;
    for (int64_t b = 0; b < n / QK_K; b++)
        for (int j = 0; j < QK_K; j++) y[b * QK_K + j] = x[b].d * x[b].qs[j];
}

/* ---------------------------------------------------------------- Q4_K */

/* Sub-block j's 6-bit scale and min from the 12 packed bytes (ggml's
 * get_scale_min_k4): j < 4 in the low 6 bits of bytes j and j+4; j >= 4 in
 * the nibbles of byte j+4 plus the top 2 bits of bytes j-4 and j. */
static void q4_K_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ggml's make_qkx2_quants: fit x ~ scale*L + min (min <= 0) with L in
 * 0..nmax, trying nstep+1 candidate scales and keeping the least weighted
 * squared error. Returns scale; *the_min = -min. */
static float make_qkx2_quants(int n, int nmax, const float *restrict x,
                              const float *restrict weights, uint8_t *restrict L,
                              float *the_min, uint8_t *restrict Laux,
                              float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        const float diff = scale * L[i] + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* quantize_row_q4_K_ref (no importance matrix). */
static void q4_K_from_float(const float *restrict x, void *dst, int64_t n) {
    struct block_q4_K *restrict y = dst;
    uint8_t L[QK_K], Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
            scales[j] = make_qkx2_quants(32, 15, xs, weights, L + 32 * j, &mins[j], Laux,
                                         -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < QK_K / 32; j++) {
            /* ggml stores nearest_int into a uint8_t before clamping. */
            const uint8_t ls = (uint8_t)imin(63, (uint8_t)nearest_int(inv_scale * scales[j]));
            const uint8_t lm = (uint8_t)imin(63, (uint8_t)nearest_int(inv_min * mins[j]));
            if (j < 4) {
                y[b].scales[j] = ls;
                y[b].scales[j + 4] = lm;
            } else {
                y[b].scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[b].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                y[b].scales[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[b].d = qt_f32_to_f16(max_scale / 63.f);
        y[b].dmin = qt_f32_to_f16(max_min / 63.f);
        /* Requantize against the scales as stored, so rounding of the 6-bit
         * scales and f16 supers is absorbed into L. */
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            q4_K_scale_min(j, y[b].scales, &sc, &m);
            const float d = qt_f16_to_f32(y[b].d) * sc;
            if (d == 0.0f) continue;
            const float dm = qt_f16_to_f32(y[b].dmin) * m;
            for (int i = 0; i < 32; i++)
                L[32 * j + i] = (uint8_t)imax(0, imin(15, nearest_int((x[32 * j + i] + dm) / d)));
        }
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; l++)
                y[b].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void q4_K_to_float(const void *src, float *restrict y, int64_t n) {
    const struct block_q4_K *restrict x = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = qt_f16_to_f32(x[b].d), min = qt_f16_to_f32(x[b].dmin);
        const uint8_t *q = x[b].qs;
        for (int j = 0; j < QK_K / 32; j += 2, q += 32) {
            uint8_t sc, m;
            q4_K_scale_min(j, x[b].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            q4_K_scale_min(j + 1, x[b].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* ggml's generic vec_dot_q4_K_q8_K. Per super-block: eight int32 lanes, lane
 * l collecting scale*q*x of the elements at l mod 8 (integer, so exact in any
 * order); lanes scaled into 8 float sums carried across blocks; the mins term
 * via the activation's bsums, subtracted from sumf block by block; the lane
 * sums added to sumf at the very end. */
static float q4_K_dot(int64_t n, const void *wv, const void *xv) {
    const struct block_q4_K *restrict w = wv;
    const struct block_q8_K *restrict x = xv;
    float sums[8] = {0};
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) q4_K_scale_min(j, w[b].scales, &sc[j], &mn[j]);

        int8_t a[QK_K];
        for (int j = 0; j < QK_K / 64; j++)
            for (int l = 0; l < 32; l++) {
                a[64 * j + l] = (int8_t)(w[b].qs[32 * j + l] & 0xF);
                a[64 * j + 32 + l] = (int8_t)(w[b].qs[32 * j + l] >> 4);
            }

        int32_t summ = 0;
        for (int g = 0; g < QK_K / 16; g++) summ += x[b].bsums[g] * mn[g / 2];

        int32_t aux32[8] = {0};
        for (int j = 0; j < QK_K / 32; j++) {
            int32_t part[8] = {0};
            for (int k = 0; k < 32; k += 8)
                for (int l = 0; l < 8; l++) part[l] += a[32 * j + k + l] * x[b].qs[32 * j + k + l];
            for (int l = 0; l < 8; l++) aux32[l] += sc[j] * part[l];
        }

        const float d = qt_f16_to_f32(w[b].d) * x[b].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)aux32[l];
        const float dmin = qt_f16_to_f32(w[b].dmin) * x[b].d;
        sumf -= dmin * (float)summ;
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* ---------------------------------------------------------------- Q6_K */

/* ggml's make_qx_quants with rmse_type 1 and no importance weights: a signed
 * symmetric fit x ~ scale*(L - nmax), L in 0..2*nmax-1, trying 19 scales and
 * keeping the best weighted (w = x^2) fit. */
static float make_qx_quants(int n, int nmax, const float *restrict x, int8_t *restrict L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (amax < 1e-15f) { /* GROUP_MAX_EPS: all zero */
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* quantize_row_q6_K_ref. */
static void q6_K_from_float(const float *restrict x, void *dst, int64_t n) {
    struct block_q6_K *restrict y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < 1e-15f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[b].d = qt_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++)
            y[b].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = qt_f16_to_f32(y[b].d) * y[b].scales[j];
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + i] / d))) + 32);
        }
        /* Per 128 elements: ql holds low nibbles of elements l and l+64 (byte
         * l) and of l+32 and l+96 (byte l+32); qh byte l holds the high 2 bits
         * of l, l+32, l+64, l+96 at bit 0, 2, 4, 6. */
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[b].ql + 64 * h, *qh = y[b].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                  ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* The 256 six-bit values of a block, minus 32, in element order. */
static void q6_K_unpack(const struct block_q6_K *blk, int8_t *restrict a) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = blk->ql + 64 * h, *qh = blk->qh + 32 * h;
        int8_t *ah = a + 128 * h;
        for (int l = 0; l < 32; l++) {
            ah[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            ah[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            ah[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            ah[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void q6_K_to_float(const void *src, float *restrict y, int64_t n) {
    const struct block_q6_K *restrict x = src;
    int8_t a[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, y += QK_K) {
        const float d = qt_f16_to_f32(x[b].d);
        q6_K_unpack(&x[b], a);
        /* ggml: d * scale * q, left to right. */
        for (int i = 0; i < QK_K; i++) y[i] = d * x[b].scales[i / 16] * a[i];
    }
}

/* ggml's generic vec_dot_q6_K_q8_K: same lane scheme as Q4_K, with a signed
 * 8-bit scale per 16 elements and no mins. */
static float q6_K_dot(int64_t n, const void *wv, const void *xv) {
    const struct block_q6_K *restrict w = wv;
    const struct block_q8_K *restrict x = xv;
    float sums[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        int8_t a[QK_K];
        q6_K_unpack(&w[b], a);
        int32_t aux32[8] = {0};
        for (int j = 0; j < QK_K / 16; j++) {
            int32_t part[8] = {0};
            for (int k = 0; k < 16; k += 8)
                for (int l = 0; l < 8; l++) part[l] += a[16 * j + k + l] * x[b].qs[16 * j + k + l];
            for (int l = 0; l < 8; l++) aux32[l] += w[b].scales[j] * part[l];
        }
        const float d = qt_f16_to_f32(w[b].d) * x[b].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)aux32[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* ---------------------------------------------------------------- table */

/* Sizes of every ggml type id (ggml.c type_traits, ggml-common.h blocks).
 * Ids 4, 5 (Q4_2, Q4_3), 31..33 (Q4_0_4_4 ...) and 36..38 (IQ4_NL_4_4 ...)
 * were removed from ggml and stay NULL. dot_type of non-computable types
 * records ggml's CPU vec_dot_type, for information only. */
static const struct qtype_info qtypes[QTYPE_COUNT] = {
    [QTYPE_F32] = {"f32", 1, 4, QTYPE_F32, f32_copy, f32_from, f32_dot},
    [QTYPE_F16] = {"f16", 1, 2, QTYPE_F16, f16_to_float, f16_from_float, f16_dot},
    [QTYPE_Q4_0] = {"q4_0", QK32, 18, QTYPE_Q8_0, q4_0_to_float, q4_0_from_float, q4_0_dot},
    [QTYPE_Q4_1] = {"q4_1", QK32, 20, QTYPE_Q8_1, NULL, NULL, NULL},
    [QTYPE_Q5_0] = {"q5_0", QK32, 22, QTYPE_Q8_0, q5_0_to_float, q5_0_from_float, q5_0_dot},
    [QTYPE_Q5_1] = {"q5_1", QK32, 24, QTYPE_Q8_1, NULL, NULL, NULL},
    [QTYPE_Q8_0] = {"q8_0", QK32, 34, QTYPE_Q8_0, q8_0_to_float, q8_0_from_float, q8_0_dot},
    [QTYPE_Q8_1] = {"q8_1", QK32, 36, QTYPE_Q8_1, NULL, NULL, NULL},
    [QTYPE_Q2_K] = {"q2_K", QK_K, 84, QTYPE_Q8_K, NULL, NULL, NULL},
    [QTYPE_Q3_K] = {"q3_K", QK_K, 110, QTYPE_Q8_K, NULL, NULL, NULL},
    [QTYPE_Q4_K] = {"q4_K", QK_K, 144, QTYPE_Q8_K, q4_K_to_float, q4_K_from_float, q4_K_dot},
    [QTYPE_Q5_K] = {"q5_K", QK_K, 176, QTYPE_Q8_K, NULL, NULL, NULL},
    [QTYPE_Q6_K] = {"q6_K", QK_K, 210, QTYPE_Q8_K, q6_K_to_float, q6_K_from_float, q6_K_dot},
    [QTYPE_Q8_K] = {"q8_K", QK_K, 292, QTYPE_Q8_K, q8_K_to_float, q8_K_from_float, NULL},
    [16] = {"iq2_xxs", QK_K, 66, QTYPE_Q8_K, NULL, NULL, NULL},
    [17] = {"iq2_xs", QK_K, 74, QTYPE_Q8_K, NULL, NULL, NULL},
    [18] = {"iq3_xxs", QK_K, 98, QTYPE_Q8_K, NULL, NULL, NULL},
    [19] = {"iq1_s", QK_K, 50, QTYPE_Q8_K, NULL, NULL, NULL},
    [20] = {"iq4_nl", QK32, 18, QTYPE_Q8_0, NULL, NULL, NULL},
    [21] = {"iq3_s", QK_K, 110, QTYPE_Q8_K, NULL, NULL, NULL},
    [22] = {"iq2_s", QK_K, 82, QTYPE_Q8_K, NULL, NULL, NULL},
    [23] = {"iq4_xs", QK_K, 136, QTYPE_Q8_K, NULL, NULL, NULL},
    [24] = {"i8", 1, 1, QTYPE_F32, NULL, NULL, NULL},
    [25] = {"i16", 1, 2, QTYPE_F32, NULL, NULL, NULL},
    [26] = {"i32", 1, 4, QTYPE_F32, NULL, NULL, NULL},
    [27] = {"i64", 1, 8, QTYPE_F32, NULL, NULL, NULL},
    [28] = {"f64", 1, 8, QTYPE_F32, NULL, NULL, NULL},
    [29] = {"iq1_m", QK_K, 56, QTYPE_Q8_K, NULL, NULL, NULL},
    [QTYPE_BF16] = {"bf16", 1, 2, QTYPE_BF16, bf16_to_float, bf16_from_float, bf16_dot},
    [34] = {"tq1_0", QK_K, 54, QTYPE_Q8_K, NULL, NULL, NULL},
    [35] = {"tq2_0", QK_K, 66, QTYPE_Q8_K, NULL, NULL, NULL},
};

const struct qtype_info *qtype_get(uint32_t type) {
    if (type & SPARSE_ID_FLAG) return sparse_qtype_get(type);   /* sparrow's own ids */
    if (type >= QTYPE_COUNT || !qtypes[type].name) return NULL;
    return &qtypes[type];
}

size_t qtype_row_bytes(enum qtype type, int64_t n) {
    const struct qtype_info *t = qtype_get((uint32_t)type);
    if (!t || n < 0 || n % t->block_elems != 0) return 0;
    return (size_t)(n / t->block_elems) * (size_t)t->block_bytes;
}
