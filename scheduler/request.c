/* request.c - see request.h. */
#include "scheduler/request.h"

#include "config/clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct request {
    atomic_int refs;
    atomic_bool cancel;
    uint64_t id;
    struct req_params params;
    char stop_buf[REQ_MAX_STOPS][REQ_MAX_STOP_LEN + 1];
    char client[REQ_MAX_CLIENT_LEN + 1];
    int n_prompt;
    int32_t *tokens;        /* [n_prompt + max_tokens]: prompt, then generated */
    int n_tokens;           /* engine thread only */
    void (*notify)(void *);
    void *notify_arg;
    bool has_rng;
    uint64_t rng[4];

    pthread_mutex_t mu;     /* guards everything below */
    struct req_token *lp;   /* [max_tokens] when logprobs are asked for */
    int32_t *out_ids;       /* [max_tokens] */
    int n_generated;
    char *text;             /* all generated text */
    size_t text_len, text_cap, text_final;
    int n_cached;
    enum req_finish finish;
    char error[160];
    double t_submit, t_first, t_last;
};

static atomic_uint_fast64_t next_request_id = 1;

struct request *req_create(const int32_t *prompt, int n_prompt, const struct req_params *p, const char *client,
                           struct sp_err *err) {
    if (n_prompt < 1 || p->max_tokens < 1 || p->n_stops < 0 || p->n_stops > REQ_MAX_STOPS ||
        p->n_logprobs < -1 || p->n_logprobs > REQ_MAX_LOGPROBS) {
        sp_fail(err, SP_EINVAL, "request: %d prompt tokens, max_tokens %d, %d stops, %d logprobs", n_prompt,
                p->max_tokens, p->n_stops, p->n_logprobs);
        return NULL;
    }
    if (p->max_tokens > INT32_MAX / 2 - n_prompt) {
        sp_fail(err, SP_EINVAL, "request: max_tokens %d too large", p->max_tokens);
        return NULL;
    }
    for (int i = 0; i < p->n_stops; i++)
        if (!p->stops[i] || strlen(p->stops[i]) > REQ_MAX_STOP_LEN) {
            sp_fail(err, SP_EINVAL, "request: stop string %d is longer than %d bytes", i, REQ_MAX_STOP_LEN);
            return NULL;
        }
    struct request *r = calloc(1, sizeof(*r));
    if (!r) goto nomem;
    atomic_init(&r->refs, 1);
    r->id = atomic_fetch_add(&next_request_id, 1);
    r->params = *p;
    for (int i = 0; i < p->n_stops; i++) {
        strcpy(r->stop_buf[i], p->stops[i]);
        r->params.stops[i] = r->stop_buf[i];
    }
    snprintf(r->client, sizeof(r->client), "%s", client ? client : "");
    r->n_prompt = r->n_tokens = n_prompt;
    r->tokens = malloc(sizeof(int32_t) * ((size_t)n_prompt + (size_t)p->max_tokens));
    r->out_ids = malloc(sizeof(int32_t) * (size_t)p->max_tokens);
    if (p->n_logprobs >= 0) r->lp = malloc(sizeof(struct req_token) * (size_t)p->max_tokens);
    r->text_cap = 256;
    r->text = malloc(r->text_cap);
    if (!r->tokens || !r->out_ids || (p->n_logprobs >= 0 && !r->lp) || !r->text) goto nomem;
    memcpy(r->tokens, prompt, sizeof(int32_t) * (size_t)n_prompt);
    pthread_mutex_init(&r->mu, NULL);
    r->t_submit = sp_now();
    return r;
nomem:
    if (r) { free(r->tokens); free(r->out_ids); free(r->lp); free(r->text); free(r); }
    sp_fail(err, SP_ENOMEM, "request: out of memory for %d + %d tokens", n_prompt, p->max_tokens);
    return NULL;
}

void req_ref(struct request *r) { atomic_fetch_add(&r->refs, 1); }

void req_unref(struct request *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    pthread_mutex_destroy(&r->mu);
    free(r->tokens);
    free(r->out_ids);
    free(r->lp);
    free(r->text);
    free(r);
}

void req_set_notify(struct request *r, void (*fn)(void *arg), void *arg) {
    r->notify = fn;
    r->notify_arg = arg;
}

void req_cancel(struct request *r) { atomic_store(&r->cancel, true); }
bool req_cancelled(const struct request *r) { return atomic_load(&((struct request *)r)->cancel); }

void req_get_view(struct request *r, struct req_view *v) {
    pthread_mutex_lock(&r->mu);
    v->n_prompt = r->n_prompt;
    v->n_cached = r->n_cached;
    v->n_generated = r->n_generated;
    v->text_len = r->text_final;
    v->finish = r->finish;
    memcpy(v->error, r->error, sizeof(v->error));
    v->t_submit = r->t_submit;
    v->t_first = r->t_first;
    v->t_last = r->t_last;
    pthread_mutex_unlock(&r->mu);
}

size_t req_copy_text(struct request *r, size_t from, char *buf, size_t cap) {
    pthread_mutex_lock(&r->mu);
    size_t n = 0;
    if (from < r->text_final) {
        n = r->text_final - from;
        if (n > cap) n = cap;
        memcpy(buf, r->text + from, n);
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

bool req_get_token(struct request *r, int i, struct req_token *out) {
    pthread_mutex_lock(&r->mu);
    bool ok = i >= 0 && i < r->n_generated;
    if (ok) {
        if (r->lp) *out = r->lp[i];
        else *out = (struct req_token){ .id = r->out_ids[i] };
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

const char *req_client(const struct request *r) { return r->client; }
const struct req_params *req_params(const struct request *r) { return &r->params; }
const int32_t *req_prompt(const struct request *r) { return r->tokens; }
int req_n_prompt(const struct request *r) { return r->n_prompt; }
uint64_t req_id(const struct request *r) { return r->id; }
int32_t *req_tokens(struct request *r) { return r->tokens; }
int req_n_tokens(const struct request *r) { return r->n_tokens; }

void req_set_cached(struct request *r, int n_cached) {
    pthread_mutex_lock(&r->mu);
    r->n_cached = n_cached;
    pthread_mutex_unlock(&r->mu);
}

int req_append(struct request *r, int32_t id, const char *piece, size_t piece_len, const struct req_token *lp) {
    if (r->n_tokens - r->n_prompt >= r->params.max_tokens) return SP_EFULL;
    int rc = SP_OK;
    pthread_mutex_lock(&r->mu);
    if (r->text_len + piece_len > r->text_cap) {
        size_t cap = r->text_cap;
        while (r->text_len + piece_len > cap) cap *= 2;
        char *t = realloc(r->text, cap);
        if (!t) { rc = SP_ENOMEM; goto out; }
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, piece, piece_len);
    r->text_len += piece_len;
    r->out_ids[r->n_generated] = id;
    if (r->lp) {
        r->lp[r->n_generated] = lp ? *lp : (struct req_token){ .id = id };
        r->lp[r->n_generated].id = id;
    }
    r->n_generated++;
    r->tokens[r->n_tokens++] = id;
    r->t_last = sp_now();
    if (r->t_first == 0) r->t_first = r->t_last;
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

const char *req_text_all(const struct request *r, size_t *len) {
    *len = r->text_len;     /* only the engine thread writes text */
    return r->text;
}

void req_set_final_len(struct request *r, size_t len) {
    pthread_mutex_lock(&r->mu);
    if (len > r->text_final && len <= r->text_len) r->text_final = len;
    pthread_mutex_unlock(&r->mu);
}

void req_finish(struct request *r, enum req_finish why, const char *error) {
    pthread_mutex_lock(&r->mu);
    if (r->finish == REQ_FINISH_NONE) {
        r->finish = why;
        if (error) snprintf(r->error, sizeof(r->error), "%s", error);
        if (r->t_last == 0) r->t_last = sp_now();
    }
    pthread_mutex_unlock(&r->mu);
}

void req_notify(struct request *r) {
    if (r->notify) r->notify(r->notify_arg);
}

bool req_saved_rng(const struct request *r, uint64_t state[4]) {
    if (!r->has_rng) return false;
    memcpy(state, r->rng, sizeof(r->rng));
    return true;
}

void req_save_rng(struct request *r, const uint64_t state[4]) {
    memcpy(r->rng, state, sizeof(r->rng));
    r->has_rng = true;
}
