/* attn.h - causal attention of one query head over one sequence's K/V rows,
 * read through a block table (the paged KV layout) with F16 elements.
 *
 * Numerics follow ggml's non-flash path, which llama.cpp's golden data used:
 * q rounded to F16, q.k accumulated in F32, softmax in F32 with a double sum,
 * probabilities rounded to F16 before weighting V.
 * Pure function on caller memory; any thread. */
#pragma once
#include <stdint.h>

struct attn_kv {                /* one sequence, one layer; borrowed */
    const uint16_t *k_base;     /* the layer's K storage: [n_blocks][block_size][row_stride] F16 */
    const uint16_t *v_base;     /* same shape for V */
    const int32_t *blocks;      /* block table: token i is in blocks[i / block_size] */
    int block_size;
    int row_stride;             /* F16 elements per token row: n_head_kv * head_dim */
    int n_tokens;               /* attend over tokens [0, n_tokens) */
};

/* out[head_dim] = softmax(scale * q.K^T) V for kv head kv_head.
 * scratch holds n_tokens floats + n_tokens halves + head_dim halves. */
void attn_head(const float *q, int head_dim, int kv_head, const struct attn_kv *kv,
               float scale, float *out, void *scratch);

/* Bytes of scratch attn_head needs for up to n_tokens keys. */
unsigned long attn_scratch_bytes(int n_tokens, int head_dim);
