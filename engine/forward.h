/* forward.h - one forward pass of the Llama model over a batch of tokens that
 * may belong to several sequences (prefill chunks and decode tokens mixed).
 *
 * Each token carries its sequence slot and position; its K/V rows are written
 * into the cache first, then it attends causally over positions [0, pos] of
 * its own sequence, so earlier positions must already be in the cache or in
 * this batch. A token's logits are bit-identical whatever else is in the batch.
 *
 * Ownership: the caller owns the fwd context (scratch for max_tokens, sized
 * once) and the kv cache; the model is borrowed and must outlive it.
 * Thread-safety: engine thread only; it drives its own worker pool. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"

struct model;
struct kv_cache;
struct fwd;                 /* opaque */

struct fwd_batch {
    int n_tokens;
    const int32_t *tokens;  /* [n_tokens] token ids */
    const int32_t *pos;     /* [n_tokens] position within its sequence */
    const int32_t *seq;     /* [n_tokens] sequence slot in the kv cache */
    const bool *logits;     /* [n_tokens] true: produce this token's logits */
};

/* max_tokens bounds a batch; n_ctx the longest sequence attention will see. */
struct fwd *fwd_create(const struct model *m, int max_tokens, int n_ctx, int n_threads,
                       struct sp_err *err);
void fwd_free(struct fwd *f);                            /* NULL is fine */

int fwd_max_tokens(const struct fwd *f);

/* Route F32 weight matmuls of multi-token batches through OpenBLAS's sgemm.
 * Off by default: sgemm's results for a token change with the batch width
 * (measured: 58-67 of 69 widths differ in the last bits), which breaks the
 * bit-identical batching guarantee. For offline work where only speed
 * matters (perplexity). OpenBLAS uses its own threads while ours idle. */
void fwd_set_dense_blas(struct fwd *f, bool on);

/* Observer of the activations that enter the layer matmuls (calibration:
 * `sparrow sparsify --method wanda`). fn is called from fwd_run on the
 * calling thread, before the matmuls, with the T x n_cols row-major input
 * rows of one site of one layer:
 *   FWD_ATTN_IN   the normed input of attn_q, attn_k, attn_v (n_embd)
 *   FWD_ATTN_OUT  the attention output, input of attn_output (n_head * head_dim)
 *   FWD_FFN_IN    the normed input of ffn_gate and ffn_up (n_embd)
 *   FWD_FFN_MID   silu(gate) * up, input of ffn_down (n_ff)
 * The rows are the pass's own buffers: read them, do not keep them. Every
 * token of the batch is passed, whether it wants logits or not. fn NULL
 * (the default) removes the observer; unset it costs one branch per site. */
enum fwd_site { FWD_ATTN_IN = 0, FWD_ATTN_OUT = 1, FWD_FFN_IN = 2, FWD_FFN_MID = 3, FWD_N_SITES = 4 };
typedef void (*fwd_observer_fn)(void *ctx, int layer, enum fwd_site site, const float *x, int n_tokens,
                                int n_cols);
void fwd_set_observer(struct fwd *f, fwd_observer_fn fn, void *ctx);

/* Run the batch; logits gets one n_vocab row per token whose `logits` flag is
 * set, in batch order. SP_EINVAL/SP_ERANGE (err says which token) for a
 * token id, position or slot out of range; nothing is written then. */
int fwd_run(struct fwd *f, struct kv_cache *kv, const struct fwd_batch *b, float *logits,
            struct sp_err *err);
