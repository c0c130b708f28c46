/* kvcache.c - see kvcache.h. Storage per layer: [n_blocks][block_size][kv_dim]
 * F16 for K and again for V; sequence s owns blocks [s * per_seq, (s+1) * per_seq). */
#include "engine/kvcache.h"

#include <stdlib.h>

#include "engine/model.h"
#include "kernels/attn.h"

struct kv_cache {
    int n_layer, n_seq, n_ctx, block_size, kv_dim;
    int blocks_per_seq;
    int32_t *tables;        /* [n_seq][blocks_per_seq] block ids */
    uint16_t *k, *v;        /* [n_layer][n_blocks][block_size][kv_dim] */
    size_t layer_elems;     /* F16 elements of one layer's K (or V) */
};

struct kv_cache *kv_create(const struct model_shape *s, int n_seq, int n_ctx, int block_size,
                           struct sp_err *err) {
    if (n_seq < 1 || n_ctx < 1 || block_size < 1 || block_size > 4096) {
        sp_fail(err, SP_EINVAL, "kvcache: %d sequences of %d tokens in blocks of %d", n_seq, n_ctx, block_size);
        return NULL;
    }
    struct kv_cache *kv = calloc(1, sizeof(*kv));
    if (!kv) goto out_nomem;
    kv->n_layer = s->n_layer;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->block_size = block_size;
    kv->kv_dim = s->n_head_kv * s->head_dim;
    kv->blocks_per_seq = (n_ctx + block_size - 1) / block_size;
    size_t n_blocks = (size_t)n_seq * (size_t)kv->blocks_per_seq;
    kv->layer_elems = n_blocks * (size_t)block_size * (size_t)kv->kv_dim;
    kv->tables = malloc(n_blocks * sizeof(*kv->tables));
    kv->k = malloc((size_t)kv->n_layer * kv->layer_elems * sizeof(uint16_t));
    kv->v = malloc((size_t)kv->n_layer * kv->layer_elems * sizeof(uint16_t));
    if (!kv->tables || !kv->k || !kv->v) goto out_free;
    for (size_t b = 0; b < n_blocks; b++) kv->tables[b] = (int32_t)b;
    return kv;
out_free:
    kv_free(kv);
out_nomem:
    sp_fail(err, SP_ENOMEM, "kvcache: out of memory for %d x %d tokens", n_seq, n_ctx);
    return NULL;
}

void kv_free(struct kv_cache *kv) {
    if (!kv) return;
    free(kv->tables);
    free(kv->k);
    free(kv->v);
    free(kv);
}

int kv_n_seq(const struct kv_cache *kv) { return kv->n_seq; }
int kv_n_ctx(const struct kv_cache *kv) { return kv->n_ctx; }

static size_t row_index(const struct kv_cache *kv, int l, int seq, int pos) {
    const int32_t block = kv->tables[(size_t)seq * kv->blocks_per_seq + (size_t)(pos / kv->block_size)];
    return (size_t)l * kv->layer_elems +
           ((size_t)block * (size_t)kv->block_size + (size_t)(pos % kv->block_size)) * (size_t)kv->kv_dim;
}

uint16_t *kv_k_row(struct kv_cache *kv, int l, int seq, int pos) { return kv->k + row_index(kv, l, seq, pos); }
uint16_t *kv_v_row(struct kv_cache *kv, int l, int seq, int pos) { return kv->v + row_index(kv, l, seq, pos); }

void kv_view(const struct kv_cache *kv, int l, int seq, int n_tokens, struct attn_kv *out) {
    out->k_base = kv->k + (size_t)l * kv->layer_elems;
    out->v_base = kv->v + (size_t)l * kv->layer_elems;
    out->blocks = kv->tables + (size_t)seq * kv->blocks_per_seq;
    out->block_size = kv->block_size;
    out->row_stride = kv->kv_dim;
    out->n_tokens = n_tokens;
}
