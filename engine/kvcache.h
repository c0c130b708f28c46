/* kvcache.h - the KV cache: F16 K and V rows per layer, stored in fixed-size
 * blocks and read by the attention kernel through a per-sequence block table.
 *
 * For now each of n_seq sequence slots owns a fixed run of blocks covering
 * n_ctx tokens (contiguous per sequence); the shared paged pool with prefix
 * sharing replaces the inside of this module behind the same calls.
 * Ownership: the caller owns the cache; all memory is allocated in
 * kv_create and never during a step. Thread-safety: engine thread only;
 * the rows handed out may be written by workers during a step. */
#pragma once
#include <stdint.h>

#include "config/err.h"

struct model_shape;
struct attn_kv;
struct kv_cache;            /* opaque */

struct kv_cache *kv_create(const struct model_shape *s, int n_seq, int n_ctx, int block_size,
                           struct sp_err *err);
void kv_free(struct kv_cache *kv);                       /* NULL is fine */

int kv_n_seq(const struct kv_cache *kv);
int kv_n_ctx(const struct kv_cache *kv);

/* Rows of token pos of sequence seq in layer l (pos < n_ctx, seq < n_seq). */
uint16_t *kv_k_row(struct kv_cache *kv, int l, int seq, int pos);
uint16_t *kv_v_row(struct kv_cache *kv, int l, int seq, int pos);

/* View of tokens [0, n_tokens) of seq in layer l, for attn_head. */
void kv_view(const struct kv_cache *kv, int l, int seq, int n_tokens, struct attn_kv *out);
