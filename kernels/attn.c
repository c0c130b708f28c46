/* attn.c - see attn.h. */
#include "kernels/attn.h"

#include <math.h>
#include <stddef.h>

#include "kernels/quant.h"

static const uint16_t *kv_row(const uint16_t *base, const struct attn_kv *kv, int i) {
    size_t slot = (size_t)kv->blocks[i / kv->block_size] * (size_t)kv->block_size +
                  (size_t)(i % kv->block_size);
    return base + slot * (size_t)kv->row_stride;
}

unsigned long attn_scratch_bytes(int n_tokens, int head_dim) {
    return (unsigned long)n_tokens * (sizeof(float) + sizeof(uint16_t)) +
           (unsigned long)head_dim * (sizeof(uint16_t) + sizeof(float)) + 64;
}

void attn_head(const float *q, int head_dim, int kv_head, const struct attn_kv *kv,
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
