/* rig.h - test support: a model, its tokenizer, a KV cache and a forward
 * context opened together, plus helpers to run prompts. Header-only so each
 * test binary stays one file. */
#pragma once
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/forward.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

struct rig {
    struct model *m;
    struct tokenizer *tok;
    struct kv_cache *kv;
    struct fwd *f;
    int n_vocab;
};

static inline void rig_close(struct rig *r) {
    fwd_free(r->f);
    kv_free(r->kv);
    tok_free(r->tok);
    model_free(r->m);
    *r = (struct rig){0};
}

/* Path of a shared model by file name. */
static inline const char *rig_model_path(const char *file) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/models/%s", check_shared_dir(), file);
    return path;
}

/* Every one of n_seq slots gets its whole n_ctx reserved: tests that do not
 * exercise the pool itself address positions freely. */
static inline bool rig_open(struct rig *r, const char *model_file, int n_seq, int n_ctx, int max_tokens) {
    struct sp_err err = {0};
    *r = (struct rig){0};
    struct kv_config cfg = { 16, (int64_t)n_seq * ((n_ctx + 15) / 16), n_seq, n_ctx };
    bool ok = (r->m = model_load(rig_model_path(model_file), &err)) && (r->tok = tok_create(model_gguf(r->m), &err)) &&
              (r->kv = kv_create(model_shape(r->m), &cfg, &err)) && (r->f = fwd_create(r->m, max_tokens, n_ctx, 2, &err));
    for (int s = 0; ok && s < n_seq; s++) ok = kv_seq_reserve(r->kv, s, n_ctx) == SP_OK;
    if (!ok) {
        fprintf(stderr, "  rig_open(%s): %s\n", model_file, err.msg);
        rig_close(r);
        return false;
    }
    r->n_vocab = model_shape(r->m)->n_vocab;
    return true;
}

/* Run n tokens of one sequence starting at pos0 in chunks of `chunk`; logits
 * of every token (all_logits) or of the last only go to out. */
static inline int rig_feed(struct rig *r, int seq, const int32_t *tokens, int n, int pos0, int chunk,
                           bool all_logits, float *out) {
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)chunk), *sq = malloc(sizeof(int32_t) * (size_t)chunk);
    bool *want = malloc(sizeof(bool) * (size_t)chunk);
    struct sp_err err = {0};
    int rc = SP_OK;
    float *dst = out;
    for (int i = 0; i < n && rc == SP_OK; i += chunk) {
        int c = n - i < chunk ? n - i : chunk, n_out = 0;
        for (int j = 0; j < c; j++) {
            pos[j] = pos0 + i + j;
            sq[j] = seq;
            want[j] = all_logits || i + j == n - 1;
            n_out += want[j];
        }
        struct fwd_batch b = { c, tokens + i, pos, sq, want };
        rc = fwd_run(r->f, r->kv, &b, dst, &err);
        if (rc != SP_OK) fprintf(stderr, "  rig_feed: %s\n", err.msg);
        if (all_logits) dst += (size_t)n_out * r->n_vocab;
    }
    free(pos); free(sq); free(want);
    return rc;
}

static inline int32_t rig_argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    return best;
}
