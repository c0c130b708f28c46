/* request.h - one generation request, from submission to its last token.
 *
 * A request is shared by two threads: the HTTP thread that created it (it
 * reads the output and may cancel) and the engine thread (it appends tokens
 * and finishes it). Hence: a reference count (create gives one; the scheduler
 * takes one while the request is queued or running; req_unref frees on the
 * last), a mutex around the output, and an atomic cancel flag the engine reads
 * at the next step. The engine calls the notify hook, outside the lock,
 * whenever new output is readable or the request finished.
 *
 * Memory: everything is sized at req_create from the request's own limits
 * (prompt + max_tokens, the logprob count); only the text buffer grows, and it
 * is capped by max_tokens times the longest token piece. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/err.h"
#include "engine/sampler.h"

struct request;             /* opaque */

#define REQ_MAX_STOPS 4
#define REQ_MAX_STOP_LEN 256
#define REQ_MAX_LOGPROBS 20
#define REQ_MAX_CLIENT_LEN 64

enum req_finish {
    REQ_FINISH_NONE = 0,    /* still running */
    REQ_FINISH_STOP,        /* end-of-generation token or a stop string */
    REQ_FINISH_LENGTH,      /* max_tokens or the context is full */
    REQ_FINISH_CANCELLED,   /* the client went away or cancelled */
    REQ_FINISH_ERROR,       /* see req_view.error */
};

struct req_params {
    struct sampler_params sampling;
    int max_tokens;         /* >= 1 */
    int n_logprobs;         /* top alternatives per token, 0..REQ_MAX_LOGPROBS; -1: no logprobs */
    bool ignore_eos;        /* keep going past EOS (benchmarks) */
    double client_weight;   /* fair-queuing weight of the client; <= 0 means 1 */
    int n_stops;
    const char *stops[REQ_MAX_STOPS];  /* copied by req_create */
};

/* What a reader sees, copied under the lock. */
struct req_view {
    int n_prompt;           /* prompt tokens as submitted */
    int n_cached;           /* of those, served from the prefix cache (first admission) */
    int n_generated;        /* tokens sampled so far */
    size_t text_len;        /* final text bytes readable so far */
    enum req_finish finish;
    char error[160];        /* for REQ_FINISH_ERROR */
    double t_submit, t_first, t_last;  /* monotonic seconds; 0 = not yet */
};

struct req_token {          /* one generated token, for logprobs */
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[REQ_MAX_LOGPROBS];
    float top_logprob[REQ_MAX_LOGPROBS];
};

/* Copies prompt, client and stop strings. NULL with err on bad params. */
struct request *req_create(const int32_t *prompt, int n_prompt, const struct req_params *p, const char *client,
                           struct sp_err *err);
void req_ref(struct request *r);                         /* any thread */
void req_unref(struct request *r);                       /* any thread; NULL is fine */

/* Set before submitting; fn is called from the engine thread. */
void req_set_notify(struct request *r, void (*fn)(void *arg), void *arg);
void req_cancel(struct request *r);                      /* any thread */

void req_get_view(struct request *r, struct req_view *v);              /* any thread */
/* Copy final text bytes [from, from + cap) into buf; returns bytes copied. */
size_t req_copy_text(struct request *r, size_t from, char *buf, size_t cap);
/* Copy generated token i (i < n_generated); false if out of range. */
bool req_get_token(struct request *r, int i, struct req_token *out);

const char *req_client(const struct request *r);
const struct req_params *req_params(const struct request *r);
/* Prompt tokens (immutable after create). */
const int32_t *req_prompt(const struct request *r);
int req_n_prompt(const struct request *r);
uint64_t req_id(const struct request *r);                /* unique per process */

/* --- engine side (scheduler/batcher.c only) ------------------------------ */

bool req_cancelled(const struct request *r);
/* Tokens the engine feeds: the prompt then every generated token, with room
 * for n_prompt + max_tokens. */
int32_t *req_tokens(struct request *r);
int req_n_tokens(const struct request *r);
void req_set_cached(struct request *r, int n_cached);
/* Append a sampled token with its piece of text and logprob record (may be
 * NULL). SP_EFULL past max_tokens. Does not notify. */
int req_append(struct request *r, int32_t id, const char *piece, size_t piece_len, const struct req_token *lp);
/* All generated text so far, final or not (engine thread only); the reader
 * sees the first `final` bytes, set with req_set_final_len (stop strings hold
 * a possible match back). */
const char *req_text_all(const struct request *r, size_t *len);
void req_set_final_len(struct request *r, size_t len);
void req_finish(struct request *r, enum req_finish why, const char *error);
void req_notify(struct request *r);
/* Where a preempted request's sampler left off. */
bool req_saved_rng(const struct request *r, uint64_t state[4]);
void req_save_rng(struct request *r, const uint64_t state[4]);
