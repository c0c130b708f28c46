/* forward.c - the Llama forward pass, batched.
 *
 * Dimension legend: T tokens in the batch, D = n_embd, Q = n_head * head_dim,
 * KV = n_head_kv * head_dim, F = n_ff, V = n_vocab.
 * Per layer: x += Wo attn(rope(Wq n(x)), rope(Wk n(x)), Wv n(x));
 *            x += Wdown (silu(Wgate n(x)) * Wup n(x)), n = RMSNorm.
 * Matmuls go through kernels/matmul (batch-invariant), attention through
 * kernels/attn over the paged K/V rows. */
#include "engine/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kvcache.h"
#include "engine/model.h"
#include "kernels/attn.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernels/workers.h"

struct fwd {
    const struct model *m;
    struct workers *wk;
    int max_tokens, n_ctx;
    float *x;               /* [T][D] residual stream */
    float *xb;              /* [T][D] normed input of a sublayer */
    float *q;               /* [T][Q] */
    float *k, *v;           /* [T][KV] */
    float *att;             /* [T][Q] attention output */
    float *proj;            /* [T][D] sublayer output */
    float *gate, *up;       /* [T][F] */
    int *out_row;           /* [T] row of a token in the output head's batch, -1: no logits */
    void *mm_scratch;       /* activations converted for a matmul */
    uint8_t *attn_scratch;  /* [n_threads][attn_bytes] */
    bool dense_blas;        /* F32 batches through OpenBLAS (see fwd_set_dense_blas) */
    fwd_observer_fn observe; /* NULL: no observer (fwd_set_observer) */
    void *observe_ctx;
    size_t attn_bytes;
};

static size_t max_mm_scratch(const struct model *m, int T) {
    const struct model_shape *s = model_shape(m);
    size_t best = mm_scratch_bytes(model_output(m), T);
    for (int l = 0; l < s->n_layer; l++) {
        const struct model_layer *L = model_layer(m, l);
        const struct qtensor *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++) {
            size_t b = mm_scratch_bytes(ws[i], T);
            if (b > best) best = b;
        }
    }
    return best;
}

struct fwd *fwd_create(const struct model *m, int max_tokens, int n_ctx, int n_threads,
                       struct sp_err *err) {
    if (max_tokens < 1 || n_ctx < 1) {
        sp_fail(err, SP_EINVAL, "forward: max_tokens %d, n_ctx %d", max_tokens, n_ctx);
        return NULL;
    }
    struct fwd *f = calloc(1, sizeof(*f));
    if (!f) { sp_fail(err, SP_ENOMEM, "forward: out of memory"); return NULL; }
    const struct model_shape *s = model_shape(m);
    const size_t T = (size_t)max_tokens, D = (size_t)s->n_embd, F = (size_t)s->n_ff;
    const size_t Q = (size_t)s->n_head * s->head_dim, KV = (size_t)s->n_head_kv * s->head_dim;
    f->m = m;
    f->max_tokens = max_tokens;
    f->n_ctx = n_ctx;
    f->wk = workers_create(n_threads, err);
    if (!f->wk) goto fail;
    f->x = malloc(T * D * sizeof(float));
    f->xb = malloc(T * D * sizeof(float));
    f->q = malloc(T * Q * sizeof(float));
    f->k = malloc(T * KV * sizeof(float));
    f->v = malloc(T * KV * sizeof(float));
    f->att = malloc(T * Q * sizeof(float));
    f->proj = malloc(T * D * sizeof(float));
    f->gate = malloc(T * F * sizeof(float));
    f->up = malloc(T * F * sizeof(float));
    f->out_row = malloc(T * sizeof(int));
    f->mm_scratch = malloc(max_mm_scratch(m, max_tokens));
    f->attn_bytes = (attn_scratch_bytes(n_ctx, s->head_dim, s->n_head / s->n_head_kv) + 63) / 64 * 64;
    f->attn_scratch = aligned_alloc(64, (size_t)n_threads * f->attn_bytes);
    if (!f->x || !f->xb || !f->q || !f->k || !f->v || !f->att || !f->proj || !f->gate || !f->up || !f->out_row ||
        !f->mm_scratch || !f->attn_scratch) {
        sp_fail(err, SP_ENOMEM, "forward: out of memory for a batch of %d tokens", max_tokens);
        goto fail;
    }
    return f;
fail:
    fwd_free(f);
    return NULL;
}

void fwd_free(struct fwd *f) {
    if (!f) return;
    workers_free(f->wk);
    free(f->x); free(f->xb); free(f->q); free(f->k); free(f->v);
    free(f->att); free(f->proj); free(f->gate); free(f->up);
    free(f->out_row);
    free(f->mm_scratch);
    free(f->attn_scratch);
    free(f);
}

int fwd_max_tokens(const struct fwd *f) { return f->max_tokens; }
void fwd_set_dense_blas(struct fwd *f, bool on) { f->dense_blas = on; }
void fwd_set_observer(struct fwd *f, fwd_observer_fn fn, void *ctx) {
    f->observe = fn;
    f->observe_ctx = ctx;
}

/* The observer, when one is set, sees a site's input rows. */
static inline void observe(struct fwd *f, int layer, enum fwd_site site, const float *x, int T, int n) {
    if (f->observe) f->observe(f->observe_ctx, layer, site, x, T, n);
}

/* Every matmul of the pass. With dense_blas set, F32 weights over several
 * tokens go through OpenBLAS's sgemm instead (fast, not batch-invariant). */
static void matmul(struct fwd *f, const struct qtensor *w, const float *x, int n_tok, float *y) {
    if (f->dense_blas && n_tok > 1 && w->type == QTYPE_F32) mm_run_blas(w, x, n_tok, y);
    else mm_run(w, x, n_tok, y, f->mm_scratch, f->wk);
}

struct attn_job {
    struct fwd *f;
    struct kv_cache *kv;
    const struct fwd_batch *b;
    int layer;
};

/* Task i = (token zigzag(i / n_head_kv), kv head i % n_head_kv): one task
 * reads a kv head's keys and values once for all the query heads sharing
 * them. A token's cost grows with its position, so tokens are taken in the
 * order 0, T-1, 1, T-2, ...: every contiguous slice a thread gets then holds
 * short and long ones alike. */
static int zigzag(int k, int n) { return k % 2 == 0 ? k / 2 : n - 1 - k / 2; }

static void attn_tasks(void *ctx, int begin, int end, int thread) {
    const struct attn_job *j = ctx;
    const struct model_shape *s = model_shape(j->f->m);
    const int hd = s->head_dim, group = s->n_head / s->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    void *scratch = j->f->attn_scratch + (size_t)thread * j->f->attn_bytes;
    const size_t Q = (size_t)s->n_head * hd, at_group = (size_t)group * hd;
    for (int i = begin; i < end; i++) {
        const int t = zigzag(i / s->n_head_kv, j->b->n_tokens), g = i % s->n_head_kv;
        struct attn_kv view;
        kv_view(j->kv, j->layer, j->b->seq[t], j->b->pos[t] + 1, &view);
        attn_heads(j->f->q + t * Q + g * at_group, group, g, &view, scale, j->f->att + t * Q + g * at_group,
                   scratch);
    }
}

/* The per-token work between the matmuls, each stage one parallel job over
 * the batch's tokens (done on the calling thread alone, it left the others
 * spinning for a sixth of a 16-sequence decode step). The residual adds are
 * folded into the next stage that reads x. */
enum tok_stage {
    STAGE_ATTN_IN,      /* x += the previous layer's FFN output (l > 0); xb = norm(x) */
    STAGE_ROPE_STORE,   /* RoPE on q and k; k, v into the KV cache */
    STAGE_FFN_IN,       /* x += attention output; xb = norm(x) */
    STAGE_SWIGLU,       /* gate = silu(gate) * up */
    STAGE_OUTPUT,       /* x += the last FFN output; xb[out_row] = norm(x) where logits are wanted */
};

struct tok_job {
    struct fwd *f;
    struct kv_cache *kv;
    const struct fwd_batch *b;
    int layer;
    enum tok_stage stage;
};

static void tok_tasks(void *ctx, int begin, int end, int thread) {
    const struct tok_job *j = ctx;
    struct fwd *f = j->f;
    const struct model_shape *s = model_shape(f->m);
    const struct model_layer *L = model_layer(f->m, j->layer);
    const size_t D = (size_t)s->n_embd, F = (size_t)s->n_ff, hd = (size_t)s->head_dim;
    const size_t Q = s->n_head * hd, KV = s->n_head_kv * hd;
    for (int t = begin; t < end; t++) {
        float *x = f->x + t * D, *xb = f->xb + t * D, *proj = f->proj + t * D;
        const int32_t pos = j->b->pos[t];
        switch (j->stage) {
        case STAGE_ATTN_IN:
            if (j->layer > 0) op_add(x, proj, (int)D);
            op_rmsnorm(xb, x, L->attn_norm, (int)D, s->rms_eps);
            break;
        case STAGE_ROPE_STORE:
            op_rope(f->q + t * Q, s->n_head, (int)hd, s->n_rot, pos, s->rope_freq_base);
            op_rope(f->k + t * KV, s->n_head_kv, (int)hd, s->n_rot, pos, s->rope_freq_base);
            kv_write(j->kv, j->layer, j->b->seq[t], pos, f->k + t * KV, f->v + t * KV);
            break;
        case STAGE_FFN_IN:
            op_add(x, proj, (int)D);
            op_rmsnorm(xb, x, L->ffn_norm, (int)D, s->rms_eps);
            break;
        case STAGE_SWIGLU:
            op_swiglu(f->gate + t * F, f->up + t * F, (int)F);
            break;
        case STAGE_OUTPUT:
            op_add(x, proj, (int)D);
            if (f->out_row[t] >= 0)
                op_rmsnorm(f->xb + (size_t)f->out_row[t] * D, x, model_output_norm(f->m), (int)D, s->rms_eps);
            break;
        }
    }
}

static void run_stage(struct tok_job *j, enum tok_stage stage) {
    j->stage = stage;
    workers_run(j->f->wk, tok_tasks, j, j->b->n_tokens);
}

static int check_batch(const struct fwd *f, const struct kv_cache *kv, const struct fwd_batch *b,
                       struct sp_err *err) {
    const struct model_shape *s = model_shape(f->m);
    if (b->n_tokens < 1 || b->n_tokens > f->max_tokens)
        return sp_fail(err, SP_EINVAL, "forward: batch of %d tokens (1..%d allowed)", b->n_tokens, f->max_tokens);
    const int n_ctx = kv_n_ctx(kv) < f->n_ctx ? kv_n_ctx(kv) : f->n_ctx;
    for (int t = 0; t < b->n_tokens; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= s->n_vocab)
            return sp_fail(err, SP_EINVAL, "forward: token %d of the batch has id %d (vocab %d)",
                           t, b->tokens[t], s->n_vocab);
        if (b->pos[t] < 0 || b->pos[t] >= n_ctx)
            return sp_fail(err, SP_ERANGE, "forward: token %d at position %d, context is %d", t, b->pos[t], n_ctx);
        if (b->seq[t] < 0 || b->seq[t] >= kv_n_seq(kv))
            return sp_fail(err, SP_EINVAL, "forward: token %d in sequence slot %d (%d slots)",
                           t, b->seq[t], kv_n_seq(kv));
        if (b->pos[t] >= kv_seq_capacity(kv, b->seq[t]))
            return sp_fail(err, SP_ERANGE, "forward: token %d at position %d, slot %d has room for %d",
                           t, b->pos[t], b->seq[t], kv_seq_capacity(kv, b->seq[t]));
    }
    return SP_OK;
}

int fwd_run(struct fwd *f, struct kv_cache *kv, const struct fwd_batch *b, float *logits,
            struct sp_err *err) {
    int rc = check_batch(f, kv, b, err);
    if (rc != SP_OK) return rc;
    const struct model *m = f->m;
    const struct model_shape *s = model_shape(m);
    const int T = b->n_tokens, D = s->n_embd, F = s->n_ff, Q = s->n_head * s->head_dim;

    for (int t = 0; t < T; t++) mm_get_row(model_tok_embd(m), b->tokens[t], f->x + (size_t)t * D);
    int n_out = 0;      /* only the tokens that want logits go through the output head */
    for (int t = 0; t < T; t++) f->out_row[t] = b->logits[t] ? n_out++ : -1;

    struct tok_job tj = { f, kv, b, 0, STAGE_ATTN_IN };
    for (int l = 0; l < s->n_layer; l++) {
        const struct model_layer *L = model_layer(m, l);
        tj.layer = l;
        run_stage(&tj, STAGE_ATTN_IN);
        observe(f, l, FWD_ATTN_IN, f->xb, T, D);
        matmul(f, &L->wq, f->xb, T, f->q);
        matmul(f, &L->wk, f->xb, T, f->k);
        matmul(f, &L->wv, f->xb, T, f->v);
        run_stage(&tj, STAGE_ROPE_STORE);
        struct attn_job aj = { f, kv, b, l };
        workers_run(f->wk, attn_tasks, &aj, T * s->n_head_kv);
        observe(f, l, FWD_ATTN_OUT, f->att, T, Q);
        matmul(f, &L->wo, f->att, T, f->proj);
        run_stage(&tj, STAGE_FFN_IN);
        observe(f, l, FWD_FFN_IN, f->xb, T, D);
        matmul(f, &L->w_gate, f->xb, T, f->gate);
        matmul(f, &L->w_up, f->xb, T, f->up);
        run_stage(&tj, STAGE_SWIGLU);
        observe(f, l, FWD_FFN_MID, f->gate, T, F);
        matmul(f, &L->w_down, f->gate, T, f->proj);
    }
    run_stage(&tj, STAGE_OUTPUT);
    if (n_out > 0) matmul(f, model_output(m), f->xb, n_out, logits);
    return SP_OK;
}
