/* perplexity.c - see perplexity.h. One sequence slot whose n_ctx positions are
 * reserved once; every chunk rewrites positions 0.. in order, so a chunk never
 * sees the previous one (each position's K/V is written before it is read). */
#include "engine/perplexity.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/forward.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

/* -log softmax(logits)[target], as llama-perplexity's log_softmax: float max,
 * the sum of exp in double. */
static double nll_of(const float *logits, int n_vocab, int32_t target) {
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++) if (logits[i] > max) max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - max));
    return -((double)(logits[target] - max) - log(sum));
}

int ppl_run(const struct model *m, const struct tokenizer *tok, const char *text, size_t len,
            int n_ctx, int n_chunks, int n_batch, int n_threads, ppl_progress_fn cb, void *cb_ctx,
            struct ppl_result *out, struct sp_err *err) {
    const struct model_shape *s = model_shape(m);
    if (n_ctx <= 0) n_ctx = s->n_ctx_train < 512 ? s->n_ctx_train : 512;
    if (n_ctx < 4 || n_ctx > s->n_ctx_train)
        return sp_fail(err, SP_ERANGE, "perplexity: context %d out of range [4, %d]", n_ctx, s->n_ctx_train);
    if (n_batch <= 0) n_batch = n_ctx < 512 ? n_ctx : 512;
    if (n_batch > n_ctx) n_batch = n_ctx;
    if (len > (size_t)INT32_MAX - 64) return sp_fail(err, SP_ERANGE, "perplexity: text too long");

    int rc = SP_OK;
    int32_t *tokens = malloc(sizeof(int32_t) * (len + 64));
    float *logits = malloc(sizeof(float) * (size_t)n_batch * (size_t)s->n_vocab);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_batch), *seq = calloc((size_t)n_batch, sizeof(int32_t));
    bool *want = malloc(sizeof(bool) * (size_t)n_batch);
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    if (!tokens || !logits || !pos || !seq || !want) { rc = sp_fail(err, SP_ENOMEM, "perplexity: out of memory"); goto out; }
    const bool add_bos = tok_add_bos(tok);
    int n_tok = tok_encode(tok, text, len, add_bos, tokens, (int)len + 64, err);
    if (n_tok < 0) { rc = n_tok; goto out; }
    if (n_tok < 2 * n_ctx) {
        rc = sp_fail(err, SP_ERANGE, "perplexity: the text is %d tokens, at least 2 * %d are needed", n_tok, n_ctx);
        goto out;
    }
    int n_chunk = n_tok / n_ctx;
    if (n_chunks > 0 && n_chunks < n_chunk) n_chunk = n_chunks;
    const int first = n_ctx / 2;

    struct kv_config cfg = { 16, (n_ctx + 15) / 16, 1, n_ctx };
    if (!(kv = kv_create(s, &cfg, err)) || !(f = fwd_create(m, n_batch, n_ctx, n_threads, err))) {
        rc = err ? err->code : SP_ENOMEM;
        goto out;
    }
    if (kv_seq_reserve(kv, 0, n_ctx) != SP_OK) { rc = sp_fail(err, SP_ENOMEM, "perplexity: KV cache"); goto out; }
    fwd_set_dense_blas(f, true);    /* offline: speed over batch invariance */

    double nll = 0.0, nll2 = 0.0;
    int count = 0;
    for (int c = 0; c < n_chunk && rc == SP_OK; c++) {
        const int start = c * n_ctx;
        for (int b0 = 0; b0 < n_ctx && rc == SP_OK; b0 += n_batch) {
            const int nb = n_ctx - b0 < n_batch ? n_ctx - b0 : n_batch;
            int n_out = 0;
            for (int j = 0; j < nb; j++) {
                pos[j] = b0 + j;
                want[j] = b0 + j >= first && b0 + j < n_ctx - 1;
            }
            const int32_t saved = tokens[start + b0];
            if (add_bos && b0 == 0) tokens[start] = tok_bos(tok);
            struct fwd_batch fb = { nb, tokens + start + b0, pos, seq, want };
            rc = fwd_run(f, kv, &fb, logits, err);
            tokens[start + b0] = saved;
            for (int j = 0; rc == SP_OK && j < nb; j++) {
                if (!want[j]) continue;
                const double v = nll_of(logits + (size_t)n_out * (size_t)s->n_vocab, s->n_vocab,
                                        tokens[start + b0 + j + 1]);
                nll += v;
                nll2 += v * v;
                count++;
                n_out++;
            }
        }
        if (rc == SP_OK && cb) cb(cb_ctx, c + 1, n_chunk, exp(nll / count));
    }
    if (rc != SP_OK) goto out;
    const double mean = nll / count, mean2 = nll2 / count;
    const double ppl = exp(mean), var = mean2 - mean * mean;
    *out = (struct ppl_result){ n_tok, n_ctx, n_chunk, count, ppl,
                                var > 0 && count > 1 ? sqrt(var / (count - 1)) * ppl : 0.0 };
out:
    fwd_free(f);
    kv_free(kv);
    free(want);
    free(seq);
    free(pos);
    free(logits);
    free(tokens);
    return rc;
}
