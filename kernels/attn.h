/* attn.h - causal attention of the query heads that share one KV head, over
 * one sequence's K/V, read through a block table (the paged KV layout) with
 * F16 elements.
 *
 * Layout of a layer's K (and V) storage: [n_blocks][n_head_kv][block_size]
 * [head_dim]. Within a block each KV head's rows are contiguous, so one head
 * streams whole runs of block_size * head_dim halves from memory instead of
 * one strided slice of every token row (which made attention half of a
 * 16-sequence decode step). attn_kv_index is the one definition of the layout.
 *
 * Numerics follow ggml's non-flash path, which llama.cpp's golden data used:
 * q rounded to F16, q.k accumulated in F32, softmax in F32 with a double sum,
 * probabilities rounded to F16 before weighting V. Each query head's result
 * is computed alone, in the same order, whatever n_q is: grouping heads (GQA)
 * only saves memory reads, it never changes a bit.
 * Pure functions on caller memory; any thread. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct attn_kv {                /* one sequence, one layer; borrowed */
    const uint16_t *k_base;     /* the layer's K storage, layout above */
    const uint16_t *v_base;     /* same shape for V */
    const int32_t *blocks;      /* block table: token i is in blocks[i / block_size] */
    int block_size;
    int n_head_kv;
    int head_dim;
    int n_tokens;               /* attend over tokens [0, n_tokens) */
};

/* Element offset of (block, kv_head, row in block, dim 0) in a layer's storage. */
static inline size_t attn_kv_index(int32_t block, int kv_head, int row, int block_size, int n_head_kv,
                                   int head_dim) {
    return (((size_t)block * (size_t)n_head_kv + (size_t)kv_head) * (size_t)block_size + (size_t)row) *
           (size_t)head_dim;
}

/* out[h][head_dim] = softmax(scale * q[h].K^T) V for the n_q query heads
 * q[n_q][head_dim] of kv head kv_head; scratch of attn_scratch_bytes, aligned
 * to 64 bytes. The fast path (AVX-512) is taken when the CPU has it. */
void attn_heads(const float *q, int n_q, int kv_head, const struct attn_kv *kv, float scale, float *out,
                void *scratch);

/* The portable oracle: the same formula, one head at a time, plain C. */
void attn_heads_ref(const float *q, int n_q, int kv_head, const struct attn_kv *kv, float scale, float *out,
                    void *scratch);

/* Bytes of scratch either function needs for up to n_tokens keys. */
size_t attn_scratch_bytes(int n_tokens, int head_dim, int n_q);
