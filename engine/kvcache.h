/* kvcache.h - the paged KV cache: one pool of fixed-size blocks, carved once
 * from a byte budget in kv_create(), shared by every sequence; a sequence is
 * a slot holding a block table. Full blocks are indexed by their content and
 * their place in the prefix (hashed block chains: a block's key is its parent
 * block's identity plus its own tokens), so a new sequence whose prompt starts
 * like an earlier one reuses those blocks instead of recomputing them.
 *
 * Block states: free (on the free list); used (ref > 0: in some block table);
 * cached (ref == 0 but in the prefix index, on the LRU list, evicted oldest
 * first when a sequence needs a block and none is free). Only full blocks are
 * ever shared, and a shared block is never written: a sequence writes only
 * positions past its reused prefix, which live in its own fresh blocks.
 *
 * Ownership: the caller owns the cache; all memory (K/V storage, block tables
 * for n_seq slots, the index) is allocated in kv_create and never in a step.
 * Thread-safety: engine thread only; nothing here locks. kv_stats may be
 * copied out by the engine thread for others to read. The exception: during a
 * forward pass the engine's worker threads call kv_write (each a different
 * position) and kv_view, which change no bookkeeping. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/err.h"

struct model_shape;
struct attn_kv;
struct kv_cache;            /* opaque */

struct kv_config {
    int block_size;         /* tokens per block (default 16) */
    int64_t n_blocks;       /* blocks in the pool; see kv_block_bytes */
    int n_seq;              /* sequence slots (max running sequences) */
    int n_ctx;              /* longest sequence, tokens */
};

struct kv_stats {
    int64_t blocks_total;
    int64_t blocks_used;    /* referenced by a sequence */
    int64_t blocks_cached;  /* unreferenced, kept for prefix reuse */
    int64_t evictions;      /* cached blocks dropped to make room, total */
};

/* Bytes one block takes (K and V, every layer, F16). */
size_t kv_block_bytes(const struct model_shape *s, int block_size);

struct kv_cache *kv_create(const struct model_shape *s, const struct kv_config *cfg, struct sp_err *err);
void kv_free(struct kv_cache *kv);                       /* NULL is fine */

int kv_n_seq(const struct kv_cache *kv);
/* Positions of seq that have a block (reserved or attached). */
int kv_seq_capacity(const struct kv_cache *kv, int seq);
int kv_n_ctx(const struct kv_cache *kv);
int kv_block_size(const struct kv_cache *kv);
struct kv_stats kv_get_stats(const struct kv_cache *kv);

/* Attach the longest cached prefix of tokens[0, n) to the empty slot seq and
 * return its length in tokens (a multiple of the block size, at most n - 1 so
 * the last token is always computed and yields logits). Undo with
 * kv_seq_release if the caller then decides not to run the sequence. */
int kv_seq_attach_prefix(struct kv_cache *kv, int seq, const int32_t *tokens, int n);

/* Make room for positions [0, n_tokens) of seq, taking free blocks or evicting
 * cached ones. SP_EFULL (nothing taken) when the pool cannot: the caller
 * preempts, never waits. SP_ERANGE past n_ctx. */
int kv_seq_reserve(struct kv_cache *kv, int seq, int n_tokens);

/* Blocks still obtainable (free + cached) and blocks seq needs for n_tokens. */
int64_t kv_blocks_available(const struct kv_cache *kv);
int kv_blocks_needed(const struct kv_cache *kv, int seq, int n_tokens);

/* tokens[0, n_done) of seq now have their K/V written: index every newly
 * full block so later sequences can reuse it. */
void kv_seq_commit(struct kv_cache *kv, int seq, const int32_t *tokens, int n_done);

/* Drop every block reference of seq; full indexed blocks stay cached. The slot
 * is empty afterwards. */
void kv_seq_release(struct kv_cache *kv, int seq);

/* Tokens of tokens[0, n) whose K/V the index holds (same rule as attach, no
 * references taken). Cost: one hash lookup per full block. */
int kv_cached_prefix_len(const struct kv_cache *kv, const int32_t *tokens, int n);

/* Store token pos of seq in layer l (its block must be reserved): k and v are
 * [n_head_kv * head_dim] floats, rounded to F16. */
void kv_write(struct kv_cache *kv, int l, int seq, int pos, const float *k, const float *v);

/* View of tokens [0, n_tokens) of seq in layer l, for attn_heads. */
void kv_view(const struct kv_cache *kv, int l, int seq, int n_tokens, struct attn_kv *out);

/* Check every invariant (ref counts against block tables, list and index
 * membership); SP_OK or SP_EINVAL with the first violation in err. */
int kv_check(const struct kv_cache *kv, struct sp_err *err);
