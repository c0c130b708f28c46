/* kvcache.c - see kvcache.h.
 *
 * Storage per layer: K [n_blocks][n_head_kv][block_size][head_dim] F16 (the
 * layout of kernels/attn.h), and V the same.
 * The prefix index is an open-addressing hash table (linear probing,
 * backward-shift deletion) over indexed blocks, keyed by (parent uid, the
 * block's tokens). A block gets a fresh 64-bit uid when it is indexed, so a
 * child indexed under a parent that was later evicted can never match a new
 * parent that happens to reuse the same block slot. */
#include "engine/kvcache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/model.h"
#include "kernels/attn.h"
#include "kernels/quant.h"

#define NIL (-1)

struct kv_block {
    int32_t ref;            /* block-table references */
    int32_t prev, next;     /* LRU (doubly) or free list (next only) links */
    bool indexed;           /* in the prefix index */
    uint64_t uid;           /* identity while indexed */
    uint64_t parent_uid;    /* key: the uid of the block before it (0: first block) */
    uint64_t hash;          /* key hash */
};

struct kv_cache {
    int n_layer, n_head_kv, head_dim, block_size, n_seq, n_ctx, max_blocks;
    int64_t n_blocks;
    uint16_t *k, *v;        /* [n_layer][n_blocks][n_head_kv][block_size][head_dim] */
    size_t layer_elems;     /* F16 elements of one layer's K (or V) */
    struct kv_block *blocks;        /* [n_blocks] */
    int32_t *block_tokens;  /* [n_blocks][block_size]: content of indexed blocks */
    int32_t free_head;
    int32_t lru_head, lru_tail;     /* oldest at head */
    int64_t n_free, n_cached, n_used;
    int32_t *tables;        /* [n_seq][max_blocks] */
    int *n_table;           /* [n_seq] blocks in each table */
    int *n_chained;         /* [n_seq] leading blocks already indexed or matched */
    uint64_t *chain_uid;    /* [n_seq] uid of the last of those blocks */
    int32_t *slots;         /* index: [n_slots] block id or NIL */
    uint64_t slot_mask;
    uint64_t next_uid;
    int64_t evictions;
};

size_t kv_block_bytes(const struct model_shape *s, int block_size) {
    return 2 * (size_t)s->n_layer * (size_t)block_size * (size_t)s->n_head_kv * (size_t)s->head_dim *
           sizeof(uint16_t);
}

/* --- lists ---------------------------------------------------------------- */

static void free_push(struct kv_cache *kv, int32_t b) {
    kv->blocks[b].next = kv->free_head;
    kv->free_head = b;
    kv->n_free++;
}

static int32_t free_pop(struct kv_cache *kv) {
    int32_t b = kv->free_head;
    if (b != NIL) { kv->free_head = kv->blocks[b].next; kv->n_free--; }
    return b;
}

static void lru_push_tail(struct kv_cache *kv, int32_t b) {
    struct kv_block *bl = &kv->blocks[b];
    bl->prev = kv->lru_tail;
    bl->next = NIL;
    if (kv->lru_tail != NIL) kv->blocks[kv->lru_tail].next = b; else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

static void lru_remove(struct kv_cache *kv, int32_t b) {
    struct kv_block *bl = &kv->blocks[b];
    if (bl->prev != NIL) kv->blocks[bl->prev].next = bl->next; else kv->lru_head = bl->next;
    if (bl->next != NIL) kv->blocks[bl->next].prev = bl->prev; else kv->lru_tail = bl->prev;
    bl->prev = bl->next = NIL;
    kv->n_cached--;
}

/* --- prefix index --------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t key_hash(uint64_t parent_uid, const int32_t *tokens, int n) {
    uint64_t h = mix64(parent_uid + 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < n; i++) h = mix64(h ^ (uint32_t)tokens[i]);
    return h;
}

static int32_t index_find(const struct kv_cache *kv, uint64_t parent_uid, const int32_t *tokens, uint64_t h) {
    for (uint64_t i = h & kv->slot_mask;; i = (i + 1) & kv->slot_mask) {
        int32_t b = kv->slots[i];
        if (b == NIL) return NIL;
        const struct kv_block *bl = &kv->blocks[b];
        if (bl->hash == h && bl->parent_uid == parent_uid &&
            !memcmp(kv->block_tokens + (size_t)b * kv->block_size, tokens, sizeof(int32_t) * (size_t)kv->block_size))
            return b;
    }
}

static void index_insert(struct kv_cache *kv, int32_t b, uint64_t parent_uid, const int32_t *tokens, uint64_t h) {
    struct kv_block *bl = &kv->blocks[b];
    memcpy(kv->block_tokens + (size_t)b * kv->block_size, tokens, sizeof(int32_t) * (size_t)kv->block_size);
    bl->indexed = true;
    bl->uid = ++kv->next_uid;
    bl->parent_uid = parent_uid;
    bl->hash = h;
    uint64_t i = h & kv->slot_mask;
    while (kv->slots[i] != NIL) i = (i + 1) & kv->slot_mask;
    kv->slots[i] = b;
}

static void index_remove(struct kv_cache *kv, int32_t b) {
    uint64_t i = kv->blocks[b].hash & kv->slot_mask;
    while (kv->slots[i] != b) i = (i + 1) & kv->slot_mask;
    kv->slots[i] = NIL;
    /* Backward shift: pull later entries of the probe run into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    for (uint64_t j = (i + 1) & kv->slot_mask; kv->slots[j] != NIL; j = (j + 1) & kv->slot_mask) {
        uint64_t home = kv->blocks[kv->slots[j]].hash & kv->slot_mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        kv->slots[i] = kv->slots[j];
        kv->slots[j] = NIL;
        i = j;
    }
    kv->blocks[b].indexed = false;
    kv->blocks[b].uid = 0;
}

/* --- create / free -------------------------------------------------------- */

struct kv_cache *kv_create(const struct model_shape *s, const struct kv_config *cfg, struct sp_err *err) {
    if (cfg->block_size < 1 || cfg->block_size > 1024 || cfg->n_seq < 1 || cfg->n_seq > 65536 ||
        cfg->n_ctx < 1 || cfg->n_blocks < 1 || cfg->n_blocks > INT32_MAX / 2) {
        sp_fail(err, SP_EINVAL, "kvcache: %lld blocks of %d tokens for %d sequences of %d tokens",
                (long long)cfg->n_blocks, cfg->block_size, cfg->n_seq, cfg->n_ctx);
        return NULL;
    }
    struct kv_cache *kv = calloc(1, sizeof(*kv));
    if (!kv) goto out_nomem;
    kv->n_layer = s->n_layer;
    kv->n_head_kv = s->n_head_kv;
    kv->head_dim = s->head_dim;
    kv->block_size = cfg->block_size;
    kv->n_seq = cfg->n_seq;
    kv->n_ctx = cfg->n_ctx;
    kv->n_blocks = cfg->n_blocks;
    kv->max_blocks = (cfg->n_ctx + cfg->block_size - 1) / cfg->block_size;
    kv->layer_elems = (size_t)kv->n_blocks * (size_t)kv->block_size * (size_t)kv->n_head_kv *
                      (size_t)kv->head_dim;
    uint64_t n_slots = 16;
    while (n_slots < 2 * (uint64_t)kv->n_blocks) n_slots *= 2;
    kv->slot_mask = n_slots - 1;
    /* 2 MiB aligned and advised huge: a decode step of many sequences reads
     * runs of a few KiB from blocks all over the pool, one page walk per run
     * with 4 KiB pages. Aligned at all, so each run starts on a cache line. */
    const size_t huge = (size_t)2 << 20;
    const size_t kv_bytes = ((size_t)kv->n_layer * kv->layer_elems * sizeof(uint16_t) + huge - 1) / huge * huge;
    kv->k = aligned_alloc(huge, kv_bytes);
    kv->v = aligned_alloc(huge, kv_bytes);
    if (!kv->k || !kv->v) goto out_free;
    (void)madvise(kv->k, kv_bytes, MADV_HUGEPAGE);   /* advice only */
    (void)madvise(kv->v, kv_bytes, MADV_HUGEPAGE);
    /* Touched now, as llama.cpp clears its cache at start: the pool is
     * resident from the start (its size is configured, not grown by traffic),
     * and the first requests do not pay its page faults. */
    memset(kv->k, 0, kv_bytes);
    memset(kv->v, 0, kv_bytes);
    kv->blocks = calloc((size_t)kv->n_blocks, sizeof(*kv->blocks));
    kv->block_tokens = malloc((size_t)kv->n_blocks * (size_t)kv->block_size * sizeof(int32_t));
    kv->tables = malloc((size_t)kv->n_seq * (size_t)kv->max_blocks * sizeof(int32_t));
    kv->n_table = calloc((size_t)kv->n_seq, sizeof(int));
    kv->n_chained = calloc((size_t)kv->n_seq, sizeof(int));
    kv->chain_uid = calloc((size_t)kv->n_seq, sizeof(uint64_t));
    kv->slots = malloc(n_slots * sizeof(int32_t));
    if (!kv->k || !kv->v || !kv->blocks || !kv->block_tokens || !kv->tables || !kv->n_table ||
        !kv->n_chained || !kv->chain_uid || !kv->slots)
        goto out_free;
    for (uint64_t i = 0; i < n_slots; i++) kv->slots[i] = NIL;
    kv->free_head = kv->lru_head = kv->lru_tail = NIL;
    for (int64_t b = kv->n_blocks - 1; b >= 0; b--) {
        kv->blocks[b].prev = NIL;
        free_push(kv, (int32_t)b);
    }
    return kv;
out_free:
    kv_free(kv);
out_nomem:
    sp_fail(err, SP_ENOMEM, "kvcache: out of memory for %lld blocks of %d tokens", (long long)cfg->n_blocks,
            cfg->block_size);
    return NULL;
}

void kv_free(struct kv_cache *kv) {
    if (!kv) return;
    free(kv->k); free(kv->v);
    free(kv->blocks); free(kv->block_tokens);
    free(kv->tables); free(kv->n_table); free(kv->n_chained); free(kv->chain_uid);
    free(kv->slots);
    free(kv);
}

int kv_n_seq(const struct kv_cache *kv) { return kv->n_seq; }
int kv_n_ctx(const struct kv_cache *kv) { return kv->n_ctx; }
int kv_block_size(const struct kv_cache *kv) { return kv->block_size; }
int kv_seq_capacity(const struct kv_cache *kv, int seq) { return kv->n_table[seq] * kv->block_size; }

struct kv_stats kv_get_stats(const struct kv_cache *kv) {
    return (struct kv_stats){ kv->n_blocks, kv->n_used, kv->n_cached, kv->evictions };
}

/* --- sequences ------------------------------------------------------------ */

static int32_t *table_of(const struct kv_cache *kv, int seq) { return kv->tables + (size_t)seq * kv->max_blocks; }

static void block_ref(struct kv_cache *kv, int32_t b) {
    struct kv_block *bl = &kv->blocks[b];
    if (bl->ref++ == 0) {
        lru_remove(kv, b);      /* only indexed blocks are found with ref 0 */
        kv->n_used++;
    }
}

static void block_unref(struct kv_cache *kv, int32_t b) {
    struct kv_block *bl = &kv->blocks[b];
    if (--bl->ref > 0) return;
    kv->n_used--;
    if (bl->indexed) lru_push_tail(kv, b);
    else free_push(kv, b);
}

/* The leading run of indexed blocks of tokens[0, n), at most (n - 1) / bs of
 * them: stores their ids in blocks (if not NULL), the last uid in *uid,
 * and returns how many. One hash lookup per block. */
static int walk_prefix(const struct kv_cache *kv, const int32_t *tokens, int n, int32_t *blocks, uint64_t *uid) {
    const int bs = kv->block_size;
    int max_blocks = n > 0 ? (n - 1) / bs : 0;
    if (max_blocks > kv->max_blocks) max_blocks = kv->max_blocks;
    uint64_t u = 0;
    int i = 0;
    for (; i < max_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * bs;
        int32_t b = index_find(kv, u, t, key_hash(u, t, bs));
        if (b == NIL) break;
        if (blocks) blocks[i] = b;
        u = kv->blocks[b].uid;
    }
    *uid = u;
    return i;
}

int kv_cached_prefix_len(const struct kv_cache *kv, const int32_t *tokens, int n) {
    uint64_t uid;
    return walk_prefix(kv, tokens, n, NULL, &uid) * kv->block_size;
}

int kv_seq_attach_prefix(struct kv_cache *kv, int seq, const int32_t *tokens, int n) {
    int32_t *table = table_of(kv, seq);
    uint64_t uid;
    const int n_blocks = walk_prefix(kv, tokens, n, table, &uid);
    for (int i = 0; i < n_blocks; i++) block_ref(kv, table[i]);
    kv->n_table[seq] = n_blocks;
    kv->n_chained[seq] = n_blocks;
    kv->chain_uid[seq] = uid;
    return n_blocks * kv->block_size;
}

int kv_blocks_needed(const struct kv_cache *kv, int seq, int n_tokens) {
    int need = (n_tokens + kv->block_size - 1) / kv->block_size - kv->n_table[seq];
    return need > 0 ? need : 0;
}

int64_t kv_blocks_available(const struct kv_cache *kv) { return kv->n_free + kv->n_cached; }

int kv_seq_reserve(struct kv_cache *kv, int seq, int n_tokens) {
    if (n_tokens > kv->n_ctx) return SP_ERANGE;
    int need = kv_blocks_needed(kv, seq, n_tokens);
    if (need > kv_blocks_available(kv)) return SP_EFULL;
    int32_t *table = table_of(kv, seq);
    for (int i = 0; i < need; i++) {
        int32_t b = free_pop(kv);
        if (b == NIL) {         /* evict the least recently used cached block */
            b = kv->lru_head;
            lru_remove(kv, b);
            index_remove(kv, b);
            kv->evictions++;
        }
        kv->blocks[b].ref = 1;
        kv->n_used++;
        table[kv->n_table[seq]++] = b;
    }
    return SP_OK;
}

void kv_seq_commit(struct kv_cache *kv, int seq, const int32_t *tokens, int n_done) {
    const int bs = kv->block_size;
    int full = n_done / bs;
    if (full > kv->n_table[seq]) full = kv->n_table[seq];
    const int32_t *table = table_of(kv, seq);
    uint64_t uid = kv->chain_uid[seq];
    for (int i = kv->n_chained[seq]; i < full; i++) {
        const int32_t *t = tokens + (size_t)i * bs;
        const int32_t b = table[i];
        uint64_t h = key_hash(uid, t, bs);
        int32_t twin = index_find(kv, uid, t, h);
        if (twin != NIL) {
            /* Another sequence indexed the same content first: keep ours
             * private and chain on through the twin. */
            uid = kv->blocks[twin].uid;
            continue;
        }
        index_insert(kv, b, uid, t, h);
        uid = kv->blocks[b].uid;
    }
    if (full > kv->n_chained[seq]) {
        kv->n_chained[seq] = full;
        kv->chain_uid[seq] = uid;
    }
}

void kv_seq_release(struct kv_cache *kv, int seq) {
    const int32_t *table = table_of(kv, seq);
    /* Last block first: the LRU then evicts a chain's tail before its head,
     * which keeps the head (the part most prompts share) longest. */
    for (int i = kv->n_table[seq] - 1; i >= 0; i--) block_unref(kv, table[i]);
    kv->n_table[seq] = 0;
    kv->n_chained[seq] = 0;
    kv->chain_uid[seq] = 0;
}

/* --- rows for the forward pass -------------------------------------------- */

void kv_write(struct kv_cache *kv, int l, int seq, int pos, const float *k, const float *v) {
    const int32_t block = table_of(kv, seq)[pos / kv->block_size];
    const size_t layer = (size_t)l * kv->layer_elems;
    for (int h = 0; h < kv->n_head_kv; h++) {
        const size_t at = layer + attn_kv_index(block, h, pos % kv->block_size, kv->block_size, kv->n_head_kv,
                                                kv->head_dim);
        const float *kh = k + (size_t)h * kv->head_dim, *vh = v + (size_t)h * kv->head_dim;
        for (int d = 0; d < kv->head_dim; d++) {
            kv->k[at + d] = qt_f32_to_f16(kh[d]);
            kv->v[at + d] = qt_f32_to_f16(vh[d]);
        }
    }
}

void kv_view(const struct kv_cache *kv, int l, int seq, int n_tokens, struct attn_kv *out) {
    out->k_base = kv->k + (size_t)l * kv->layer_elems;
    out->v_base = kv->v + (size_t)l * kv->layer_elems;
    out->blocks = table_of(kv, seq);
    out->block_size = kv->block_size;
    out->n_head_kv = kv->n_head_kv;
    out->head_dim = kv->head_dim;
    out->n_tokens = n_tokens;
}

/* --- invariants ----------------------------------------------------------- */

int kv_check(const struct kv_cache *kv, struct sp_err *err) {
    int32_t *refs = calloc((size_t)kv->n_blocks, sizeof(int32_t));
    int rc = SP_OK;
    if (!refs) return sp_fail(err, SP_ENOMEM, "kvcache: out of memory");
    for (int s = 0; s < kv->n_seq; s++)
        for (int i = 0; i < kv->n_table[s]; i++) refs[table_of(kv, s)[i]]++;
    int64_t used = 0, free_n = 0, lru_n = 0, indexed = 0, in_slots = 0;
    for (int64_t b = 0; b < kv->n_blocks; b++) {
        if (refs[b] != kv->blocks[b].ref) {
            rc = sp_fail(err, SP_EINVAL, "kvcache: block %lld has ref %d, tables hold %d", (long long)b,
                         kv->blocks[b].ref, refs[b]);
            goto out;
        }
        used += refs[b] > 0;
        indexed += kv->blocks[b].indexed;
        if (kv->blocks[b].indexed) {
            const struct kv_block *bl = &kv->blocks[b];
            if (index_find(kv, bl->parent_uid, kv->block_tokens + (size_t)b * kv->block_size, bl->hash) == NIL) {
                rc = sp_fail(err, SP_EINVAL, "kvcache: indexed block %lld is not findable", (long long)b);
                goto out;
            }
        }
    }
    for (int32_t b = kv->free_head; b != NIL; b = kv->blocks[b].next) {
        if (kv->blocks[b].ref || kv->blocks[b].indexed || ++free_n > kv->n_blocks) {
            rc = sp_fail(err, SP_EINVAL, "kvcache: free list holds block %d (ref %d)", b, kv->blocks[b].ref);
            goto out;
        }
    }
    for (int32_t b = kv->lru_head; b != NIL; b = kv->blocks[b].next) {
        if (kv->blocks[b].ref || !kv->blocks[b].indexed || ++lru_n > kv->n_blocks) {
            rc = sp_fail(err, SP_EINVAL, "kvcache: LRU list holds block %d (ref %d)", b, kv->blocks[b].ref);
            goto out;
        }
    }
    for (uint64_t i = 0; i <= kv->slot_mask; i++) in_slots += kv->slots[i] != NIL;
    if (used != kv->n_used || free_n != kv->n_free || lru_n != kv->n_cached ||
        used + free_n + lru_n != kv->n_blocks || in_slots != indexed)
        rc = sp_fail(err, SP_EINVAL,
                     "kvcache: counts used %lld/%lld free %lld/%lld cached %lld/%lld of %lld; index %lld/%lld",
                     (long long)used, (long long)kv->n_used, (long long)free_n, (long long)kv->n_free,
                     (long long)lru_n, (long long)kv->n_cached, (long long)kv->n_blocks, (long long)in_slots,
                     (long long)indexed);
out:
    free(refs);
    return rc;
}
