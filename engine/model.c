/* model.c - see model.h. */
#include "engine/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "kernels/quant.h"

#define MODEL_MAX_HEAD_DIM 512      /* op_rope keeps cos/sin on the stack */

struct model {
    struct gguf *g;
    struct model_shape shape;
    struct model_layer *layers;     /* [n_layer] */
    struct qtensor tok_embd, output;
    const float *output_norm;
    uint64_t weight_bytes;
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

/* A 2-D weight n_cols x n_rows of a computable type. */
static int get_matrix(struct model *m, const char *name, int64_t n_cols, int64_t n_rows,
                      struct qtensor *out, struct sp_err *err) {
    const struct gguf_tensor *t = gguf_find_tensor(m->g, name);
    if (!t) return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is missing", name);
    if (t->ne[0] != n_cols || t->ne[1] != n_rows || t->ne[2] != 1 || t->ne[3] != 1)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is %lld x %lld, expected %lld x %lld", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)n_cols, (long long)n_rows);
    const struct qtype_info *qi = qtype_get(t->type);
    if (!qi->to_float || !qi->vec_dot)
        return sp_fail(err, SP_EUNSUP, "model: tensor '%s' has type %s, which this build cannot compute",
                       name, qi->name ? qi->name : "?");
    /* general.alignment may legally be 1 or 2; the kernels read f32 as floats
     * and blocks through structs with 16-bit fields. */
    size_t align = t->type == QTYPE_F32 ? 4 : 2;
    if ((uintptr_t)t->data % align != 0)
        return sp_fail(err, SP_EFORMAT, "model: tensor '%s' is not %zu-byte aligned", name, align);
    *out = (struct qtensor){ t->data, t->type, n_cols, n_rows };
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

struct model *model_load(const char *path, struct sp_err *err) {
    struct model *m = calloc(1, sizeof(*m));
    if (!m) { sp_fail(err, SP_ENOMEM, "model: out of memory"); return NULL; }
    m->g = gguf_open(path, err);
    if (!m->g) goto fail;
    if (read_shape(m, err) != SP_OK || read_weights(m, err) != SP_OK) goto fail;
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
