/* perplexity.h - perplexity of a model over a text, computed the way
 * llama.cpp's llama-perplexity does it (examples/perplexity, 2025-02):
 *
 *   - the whole text is tokenized once, with BOS first when the vocab asks
 *     for it (tok_add_bos);
 *   - it is cut into n_chunk = n_tokens / n_ctx non-overlapping chunks of
 *     n_ctx tokens (the remainder is dropped; --chunks N takes the first N);
 *     at least 2 * n_ctx tokens are required, as llama-perplexity does;
 *   - each chunk is evaluated from position 0 in a fresh context, its first
 *     token replaced by BOS (when the vocab adds BOS);
 *   - only the second half is scored: with first = n_ctx / 2, the logits at
 *     positions first .. n_ctx - 2 predict tokens first + 1 .. n_ctx - 1, so
 *     n_ctx - 1 - first tokens per chunk;
 *   - nll = -log softmax(logits)[next], summed in double; PPL = exp(mean nll),
 *     reported after every chunk (running) and at the end with llama's
 *     uncertainty estimate ppl * sqrt(var(nll) / (count - 1)).
 *
 * Ownership: borrows the model and tokenizer. Thread-safety: the calling
 * thread drives its own forward context (n_threads workers). Owner: engine. */
#pragma once
#include <stddef.h>

#include "config/err.h"

struct model;
struct tokenizer;

struct ppl_result {
    int n_tokens;           /* tokens of the whole text */
    int n_ctx, n_chunk;     /* chunks evaluated */
    int n_scored;           /* tokens scored */
    double ppl, ppl_err;    /* final estimate and its uncertainty */
};

/* Called after each chunk with the running perplexity (may be NULL). */
typedef void (*ppl_progress_fn)(void *ctx, int chunk, int n_chunk, double running_ppl);

/* n_ctx <= 0: min(512, the model's context); n_chunks <= 0: all; n_batch:
 * tokens per forward pass (<= 0: min(n_ctx, 512)). */
int ppl_run(const struct model *m, const struct tokenizer *tok, const char *text, size_t len,
            int n_ctx, int n_chunks, int n_batch, int n_threads, ppl_progress_fn cb, void *cb_ctx,
            struct ppl_result *out, struct sp_err *err);
