/* model.c - see model.h. */
#include "engine/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "kernels/quant.h"
#include "kernels/sparse.h"

#define MODEL_MAX_HEAD_DIM 512      /* op_rope keeps cos/sin on the stack */
#define PACK_ALIGN ((size_t)2 << 20)  /* packed weights: one huge page */

struct model {
    struct gguf *g;
    struct model_shape shape;
    struct model_layer *layers;     /* [n_layer] */
    struct qtensor tok_embd, output;
    const float *output_norm;
    uint64_t weight_bytes;
    void *packed;                   /* row-interleaved weight copies (mm_pack), or NULL */
    char desc[128];
};

static int get_dim(const struct gguf *g, const char *key, int lo, int hi, int *out, struct sp_err *err) {
    uint32_t v;
    int rc = gguf_get_u32(g, key, &v, err);
    if (rc != SP_OK) return rc;
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return sp_fail(err, SP_EFORMAT, "model: %s = %u is out of range [%d, %d]", key, v, lo, hi);
    *out = (int)v;
    return SP_OK;
}

/* A 2-D weight n_cols x n_rows of a computable type (dense or sparse). */
static int get_matrix(struct model *m, const char *name, int64_t n_cols, int64_t n_rows,
                      struct qtensor *out, struct sp_err *err) {
    const struct gguf_tensor *t = gguf_find_tensor(m->g, name);
    if (!t) return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is missing", name);
    if (t->ne[0] != n_cols || t->ne[1] != n_rows || t->ne[2] != 1 || t->ne[3] != 1)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is %lld x %lld, expected %lld x %lld", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)n_cols, (long long)n_rows);
    const struct qtype_info *qi = qtype_get(t->type);
    struct sparse_fmt sf;
    const bool sparse = sparse_fmt_of(t->type, &sf);
    if (!sparse && (!qi->to_float || !qi->vec_dot))
        return sp_fail(err, SP_EUNSUP, "model: tensor '%s' has type %s, which this build cannot compute",
                       name, qi->name ? qi->name : "?");
    /* The kernels trust a sparse index (positions pick activations): a
     * hostile one must stop here. */
    if (sparse && sparse_check(&sf, t->data, n_rows, n_cols) != SP_OK)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' (%s) has a malformed sparse index", name, qi->name);
    /* general.alignment may legally be 1 or 2; the kernels read f32 as floats
     * and blocks through structs with 16-bit fields. */
    size_t align = t->type == QTYPE_F32 ? 4 : 2;
    if ((uintptr_t)t->data % align != 0)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is not %zu-byte aligned", name, align);
    *out = (struct qtensor){ .data = t->data, .type = t->type, .n_cols = n_cols, .n_rows = n_rows };
    m->weight_bytes += t->n_bytes;
    return SP_OK;
}

static int get_norm(struct model *m, const char *name, int64_t n, const float **out, struct sp_err *err) {
    const struct gguf_tensor *t = gguf_find_tensor(m->g, name);
    if (!t) return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is missing", name);
    if (t->type != QTYPE_F32 || t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' must be f32 [%lld]", name, (long long)n);
    if ((uintptr_t)t->data % sizeof(float) != 0)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is not 4-byte aligned", name);
    *out = t->data;
    m->weight_bytes += t->n_bytes;
    return SP_OK;
}

static int read_shape(struct model *m, struct sp_err *err) {
    const struct gguf *g = m->g;
    struct model_shape *s = &m->shape;
    struct gguf_str arch;
    if (gguf_get_str(g, "general.architecture", &arch, err) != SP_OK) return SP_EFORMAT;
    if (!gguf_str_eq(arch, "llama"))
        return sp_fail(err, SP_EUNSUP, "model: architecture '%.*s' is not supported (llama is)",
                       (int)arch.len, arch.ptr);
    int rc;
    if ((rc = get_dim(g, "llama.embedding_length", 1, 65536, &s->n_embd, err)) ||
        (rc = get_dim(g, "llama.feed_forward_length", 1, 1 << 20, &s->n_ff, err)) ||
        (rc = get_dim(g, "llama.block_count", 1, 1024, &s->n_layer, err)) ||
        (rc = get_dim(g, "llama.attention.head_count", 1, 1024, &s->n_head, err)) ||
        (rc = get_dim(g, "llama.context_length", 1, 1 << 24, &s->n_ctx_train, err)))
        return rc;
    s->n_head_kv = s->n_head;
    if (gguf_find_key(g, "llama.attention.head_count_kv") >= 0 &&
        (rc = get_dim(g, "llama.attention.head_count_kv", 1, s->n_head, &s->n_head_kv, err)))
        return rc;
    if (s->n_embd % s->n_head != 0 || s->n_head % s->n_head_kv != 0)
        return sp_fail(err, SP_EFORMAT, "model: %d heads (%d kv) do not divide dim %d",
                       s->n_head, s->n_head_kv, s->n_embd);
    s->head_dim = s->n_embd / s->n_head;
    if (s->head_dim > MODEL_MAX_HEAD_DIM || s->head_dim % 2 != 0)
        return sp_fail(err, SP_EUNSUP, "model: head dimension %d (even, <= %d supported)",
                       s->head_dim, MODEL_MAX_HEAD_DIM);
    s->n_rot = s->head_dim;
    if (gguf_find_key(g, "llama.rope.dimension_count") >= 0 &&
        (rc = get_dim(g, "llama.rope.dimension_count", 2, s->head_dim, &s->n_rot, err)))
        return rc;
    if (s->n_rot % 2 != 0) return sp_fail(err, SP_EFORMAT, "model: odd rope dimension %d", s->n_rot);
    s->rms_eps = 1e-5f;
    if (gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon") >= 0 &&
        gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &s->rms_eps, err) != SP_OK)
        return SP_EFORMAT;
    s->rope_freq_base = 10000.0f;
    if (gguf_find_key(g, "llama.rope.freq_base") >= 0 &&
        gguf_get_f32(g, "llama.rope.freq_base", &s->rope_freq_base, err) != SP_OK)
        return SP_EFORMAT;
    if (!(s->rms_eps > 0.0f && s->rms_eps < 1.0f) || !(s->rope_freq_base > 1.0f && s->rope_freq_base < 1e12f))
        return sp_fail(err, SP_EFORMAT, "model: rms eps %g or rope base %g out of range",
                       (double)s->rms_eps, (double)s->rope_freq_base);
    if (gguf_find_key(g, "llama.rope.scaling.type") >= 0) {
        struct gguf_str st;
        if (gguf_get_str(g, "llama.rope.scaling.type", &st, err) == SP_OK && !gguf_str_eq(st, "none"))
            return sp_fail(err, SP_EUNSUP, "model: rope scaling '%.*s' is not supported", (int)st.len, st.ptr);
    }
    if (gguf_find_tensor(g, "rope_freqs.weight"))
        return sp_fail(err, SP_EUNSUP, "model: rope_freqs (Llama 3.1 rope factors) is not supported");
    return SP_OK;
}

static int read_weights(struct model *m, struct sp_err *err) {
    struct model_shape *s = &m->shape;
    const struct gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te) return sp_fail(err, SP_EFORMAT, "model: tensor 'token_embd.weight' is missing");
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return sp_fail(err, SP_EFORMAT, "model: vocabulary of %lld tokens", (long long)te->ne[1]);
    s->n_vocab = (int)te->ne[1];
    int rc = get_matrix(m, "token_embd.weight", s->n_embd, s->n_vocab, &m->tok_embd, err);
    if (rc) return rc;
    /* Per token only one embedding row is read, but the output matrix whole:
     * for tied embeddings the table counts once, as the output. */
    if ((rc = get_norm(m, "output_norm.weight", s->n_embd, &m->output_norm, err))) return rc;
    if (gguf_find_tensor(m->g, "output.weight")) {
        m->weight_bytes -= te->n_bytes;
        if ((rc = get_matrix(m, "output.weight", s->n_embd, s->n_vocab, &m->output, err))) return rc;
    } else {
        m->output = m->tok_embd;    /* tied embeddings */
    }
    m->layers = calloc((size_t)s->n_layer, sizeof(*m->layers));
    if (!m->layers) return sp_fail(err, SP_ENOMEM, "model: out of memory");
    const int64_t q_dim = (int64_t)s->n_head * s->head_dim, kv_dim = (int64_t)s->n_head_kv * s->head_dim;
    for (int l = 0; l < s->n_layer; l++) {
        struct model_layer *L = &m->layers[l];
        char name[64];
#define NAME(suffix) (snprintf(name, sizeof(name), "blk.%d." suffix, l), name)
        if ((rc = get_norm(m, NAME("attn_norm.weight"), s->n_embd, &L->attn_norm, err)) ||
            (rc = get_matrix(m, NAME("attn_q.weight"), s->n_embd, q_dim, &L->wq, err)) ||
            (rc = get_matrix(m, NAME("attn_k.weight"), s->n_embd, kv_dim, &L->wk, err)) ||
            (rc = get_matrix(m, NAME("attn_v.weight"), s->n_embd, kv_dim, &L->wv, err)) ||
            (rc = get_matrix(m, NAME("attn_output.weight"), q_dim, s->n_embd, &L->wo, err)) ||
            (rc = get_norm(m, NAME("ffn_norm.weight"), s->n_embd, &L->ffn_norm, err)) ||
            (rc = get_matrix(m, NAME("ffn_gate.weight"), s->n_embd, s->n_ff, &L->w_gate, err)) ||
            (rc = get_matrix(m, NAME("ffn_up.weight"), s->n_embd, s->n_ff, &L->w_up, err)) ||
            (rc = get_matrix(m, NAME("ffn_down.weight"), s->n_ff, s->n_embd, &L->w_down, err)))
            return rc;
#undef NAME
    }
    return SP_OK;
}

/* Every matrix the forward pass multiplies by, in one list (the output head
 * last; with tied embeddings it is a view of token_embd, whose rows are
 * still read from the mapping for the embedding lookup). */
static int matrices(struct model *m, struct qtensor **out) {
    int k = 0;
    for (int l = 0; l < m->shape.n_layer; l++) {
        struct model_layer *L = &m->layers[l];
        struct qtensor *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++) out[k++] = ws[i];
    }
    out[k++] = &m->output;
    return k;
}

/* The mapping's pages of a tensor that now lives in a packed copy are not
 * read again (the tied embedding table aside, a few rows per token that fault
 * back in from the file): drop them from this process, so packing does not
 * double the resident weights. The file mapping is private and never
 * written, so dropped pages simply read back from the file if touched. */
static void drop_mapped_pages(const struct qtensor *w) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    const uintptr_t lo = (uintptr_t)w->data, hi = lo + qtype_row_bytes(w->type, w->n_cols) * (size_t)w->n_rows;
    const uintptr_t a = (lo + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), b = hi & ~((uintptr_t)page - 1);
    if (a < b) (void)madvise((void *)a, b - a, MADV_DONTNEED);  /* advice only: failure is harmless */
}

/* Give every matrix with a packed kernel (kernels/matmul.h: Q8_0, Q4_0, Q4_K,
 * Q6_K on AVX-512 VNNI) its row-interleaved copy, in one 64-byte aligned
 * block the model owns, and buy batched decode its speed: the packed kernel
 * computes 16 rows at once per instruction. Resident memory: the copies
 * replace the mapping's pages of those tensors (drop_mapped_pages), so RSS
 * grows only by the layout's padding (Q4_K +2.8%, Q6_K +1%, Q8_0/Q4_0 up to
 * 63 bytes per 16 rows) and, with tied embeddings, by the table's rows the
 * lookup faults back in. */
static int pack_weights(struct model *m, struct sp_err *err) {
    const int n_max = m->shape.n_layer * 7 + 1;
    struct qtensor **ws = malloc((size_t)n_max * sizeof(*ws));
    if (!ws) return sp_fail(err, SP_ENOMEM, "model: out of memory");
    const int n = matrices(m, ws);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += mm_pack_bytes(ws[i]);
    if (total > 0) {
        /* 2 MiB aligned and advised huge: every decode step streams the
         * whole block, and with 4 KiB pages the TLB misses show (the
         * kernel's prefetches run a few pages ahead). */
        if (posix_memalign(&m->packed, PACK_ALIGN, total) != 0) {
            m->packed = NULL;
            free(ws);
            return sp_fail(err, SP_ENOMEM, "model: out of memory for %zu bytes of packed weights", total);
        }
        (void)madvise(m->packed, total, MADV_HUGEPAGE);    /* advice only */
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            const size_t b = mm_pack_bytes(ws[i]);
            if (b) {
                mm_pack(ws[i], (uint8_t *)m->packed + off);
                drop_mapped_pages(ws[i]);
            }
            off += b;
        }
    }
    free(ws);
    return SP_OK;
}

struct model *model_load(const char *path, struct sp_err *err) {
    struct model *m = calloc(1, sizeof(*m));
    if (!m) { sp_fail(err, SP_ENOMEM, "model: out of memory"); return NULL; }
    m->g = gguf_open(path, err);
    if (!m->g) goto fail;
    if (read_shape(m, err) != SP_OK || read_weights(m, err) != SP_OK || pack_weights(m, err) != SP_OK)
        goto fail;
    const struct model_shape *s = &m->shape;
    const struct qtype_info *wq = qtype_get(m->layers[0].wq.type);
    snprintf(m->desc, sizeof(m->desc), "llama %dL %dd %dh/%dkv ff%d vocab%d (%s)", s->n_layer, s->n_embd,
             s->n_head, s->n_head_kv, s->n_ff, s->n_vocab, wq->name);
    return m;
fail:
    if (err)    /* names from the file (architecture, rope scaling) stay one line */
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    model_free(m);
    return NULL;
}

void model_free(struct model *m) {
    if (!m) return;
    free(m->layers);
    free(m->packed);
    gguf_close(m->g);
    free(m);
}

const struct model_shape *model_shape(const struct model *m) { return &m->shape; }
const struct gguf *model_gguf(const struct model *m) { return m->g; }
const struct model_layer *model_layer(const struct model *m, int l) { return &m->layers[l]; }
const struct qtensor *model_tok_embd(const struct model *m) { return &m->tok_embd; }
const float *model_output_norm(const struct model *m) { return m->output_norm; }
const struct qtensor *model_output(const struct model *m) { return &m->output; }
uint64_t model_weight_bytes(const struct model *m) { return m->weight_bytes; }
const char *model_desc(const struct model *m) { return m->desc; }
