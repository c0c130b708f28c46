/* ops.c - see ops.h. */
#include "kernels/ops.h"

#include <math.h>

#include "kernels/cpu.h"

void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

void op_rope(float *x, int n_head, int head_dim, int n_rot, int32_t pos, float freq_base) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float cs[2 * 256];      /* cos/sin per pair; head_dim <= 512 checked at model load */
    float theta = (float)pos;
    for (int i = 0; i < n_rot; i += 2) {
        cs[i] = cosf(theta);
        cs[i + 1] = sinf(theta);
        theta *= theta_scale;
    }
    for (int h = 0; h < n_head; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < n_rot; i += 2) {
            const float x0 = v[i], x1 = v[i + 1];
            v[i] = x0 * cs[i] - x1 * cs[i + 1];
            v[i + 1] = x0 * cs[i + 1] + x1 * cs[i];
        }
    }
}

void op_swiglu(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void op_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

static int32_t argmax_ref(const float *x, int32_t n) {
    int32_t best = 0;
    float best_v = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > best_v) { best = i; best_v = x[i]; }   /* NaN compares false: skipped */
    return best;
}

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/simd_avx512.h"

/* Two passes in 16 lanes: the maximum (NaN lanes keep the running max, as
 * the scalar compare does), then the first index holding it. */
__attribute__((target("avx512f")))
static int32_t argmax_avx512(const float *x, int32_t n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16_first(n - i);
        vmax = _mm512_max_ps(_mm512_mask_loadu_ps(vmax, m, x + i), vmax);
    }
    const float max = _mm512_reduce_max_ps(vmax);
    if (max == -INFINITY) return 0;
    const __m512 want = _mm512_set1_ps(max);
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16_first(n - i);
        const __mmask16 hit = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, x + i), want, _CMP_EQ_OQ);
        if (hit) return i + __builtin_ctz(hit);
    }
    return 0;   /* not reached: max came from some lane */
}
#endif

int32_t op_argmax(const float *x, int32_t n) {
#if defined(__x86_64__)
    if (cpu_use(SIMD_AVX512)) return argmax_avx512(x, n);
#endif
    return argmax_ref(x, n);
}
