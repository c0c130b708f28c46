/* batcher.c - see batcher.h.
 *
 * DESIGN: slot i of the scheduler is KV sequence i and sampler i. A slot's
 * request has tokens[0, n_tokens) (prompt, then generated) of which the first
 * n_computed have K/V in the pool; the step feeds tokens[n_computed, ...).
 * A sequence with one token pending (decoding, or the last token of its
 * prompt) is planned first, so decode latency does not depend on how much
 * prefill is waiting; prefill chunks then fill the token budget in admission
 * order (Sarathi-style chunked prefill). */
#include "scheduler/batcher.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/clock.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "engine/tokenizer.h"
#include "scheduler/request.h"

struct slot {
    struct request *r;      /* NULL: free */
    struct sampler *smp;
    int n_computed;         /* tokens with K/V in the pool */
    uint64_t admitted;      /* admission order (larger = later) */
    int planned;            /* tokens in this step's batch */
    int logits_row;         /* row in the logits buffer, -1 if none */
};

struct sched {
    struct sched_config cfg;
    const struct model *m;
    const struct tokenizer *tok;
    int n_vocab;
    struct kv_cache *kv;
    struct fwd *f;
    struct queue *q;
    struct slot *slots;     /* [max_running] */
    uint64_t n_admitted;
    /* the step's batch */
    int32_t *b_tok, *b_pos, *b_seq;
    bool *b_logits;
    int *b_slot_order;      /* slots in plan order */
    float *logits;          /* [max_running][n_vocab] */
    struct sched_stats st;  /* engine thread's copy */

    pthread_mutex_t mu;     /* guards the fields below */
    pthread_cond_t work;
    bool stop, draining, wake;
    struct sched_stats pub; /* published copy for other threads */
#ifdef SPARROW_FAULT_INJECTION
    bool fault_stalled;     /* the one injected stall has happened */
#endif
};

struct sched *sched_create(const struct model *m, const struct tokenizer *tok, const struct sched_config *cfg,
                           struct sp_err *err) {
    if (cfg->max_running < 1 || cfg->max_batch_tokens < 1 || cfg->n_ctx < 2) {
        sp_fail(err, SP_EINVAL, "scheduler: max_running %d, max_batch_tokens %d, ctx %d", cfg->max_running,
                cfg->max_batch_tokens, cfg->n_ctx);
        return NULL;
    }
    struct sched *s = calloc(1, sizeof(*s));
    if (!s) { sp_fail(err, SP_ENOMEM, "scheduler: out of memory"); return NULL; }
    s->cfg = *cfg;
    s->m = m;
    s->tok = tok;
    s->n_vocab = model_shape(m)->n_vocab;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    struct kv_config kc = { cfg->block_size, cfg->kv_blocks, cfg->max_running, cfg->n_ctx };
    const int B = cfg->max_batch_tokens;
    if (!(s->kv = kv_create(model_shape(m), &kc, err)) ||
        !(s->f = fwd_create(m, B, cfg->n_ctx, cfg->threads, err)) || !(s->q = queue_create(&cfg->queue, err)))
        goto fail;
    s->slots = calloc((size_t)cfg->max_running, sizeof(*s->slots));
    s->b_tok = malloc(sizeof(int32_t) * (size_t)B);
    s->b_pos = malloc(sizeof(int32_t) * (size_t)B);
    s->b_seq = malloc(sizeof(int32_t) * (size_t)B);
    s->b_logits = malloc(sizeof(bool) * (size_t)B);
    s->b_slot_order = malloc(sizeof(int) * (size_t)cfg->max_running);
    s->logits = malloc(sizeof(float) * (size_t)cfg->max_running * (size_t)s->n_vocab);
    if (!s->slots || !s->b_tok || !s->b_pos || !s->b_seq || !s->b_logits || !s->b_slot_order || !s->logits) {
        sp_fail(err, SP_ENOMEM, "scheduler: out of memory");
        goto fail;
    }
    struct sampler_params sp = sampler_default_params();
    for (int i = 0; i < cfg->max_running; i++)
        if (!(s->slots[i].smp = sampler_create(&sp, s->n_vocab, err))) goto fail;
    s->st.kv = kv_get_stats(s->kv);
    s->st.heartbeat = sp_now();
    s->pub = s->st;
    return s;
fail:
    sched_free(s);
    return NULL;
}

static void finish_request(struct sched *s, struct request *r, enum req_finish why, const char *error) {
    req_finish(r, why, error);
    s->st.finished[why]++;
    req_notify(r);
    req_unref(r);
}

void sched_free(struct sched *s) {
    if (!s) return;
    if (s->slots)
        for (int i = 0; i < s->cfg.max_running; i++) {
            if (s->slots[i].r) finish_request(s, s->slots[i].r, REQ_FINISH_CANCELLED, "server shut down");
            sampler_free(s->slots[i].smp);
        }
    if (s->q) {
        struct request *r;
        while ((r = queue_take_any(s->q))) finish_request(s, r, REQ_FINISH_CANCELLED, "server shut down");
    }
    queue_free(s->q);
    fwd_free(s->f);
    kv_free(s->kv);
    free(s->slots);
    free(s->b_tok); free(s->b_pos); free(s->b_seq); free(s->b_logits); free(s->b_slot_order);
    free(s->logits);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    free(s);
}

/* --- submission (any thread) ---------------------------------------------- */

int sched_submit(struct sched *s, struct request *r, struct sp_err *err) {
    const int n = req_n_prompt(r), max_tokens = req_params(r)->max_tokens;
    const int32_t *t = req_prompt(r);
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= s->n_vocab)
            return sp_fail(err, SP_EINVAL, "prompt token %d is %d, outside the vocabulary of %d", i, t[i], s->n_vocab);
    if ((int64_t)n + max_tokens > s->cfg.n_ctx)
        return sp_fail(err, SP_ERANGE,
                       "this model's context is %d tokens; the prompt has %d and max_tokens asks for %d more",
                       s->cfg.n_ctx, n, max_tokens);
    const int64_t blocks = ((int64_t)n + max_tokens + s->cfg.block_size - 1) / s->cfg.block_size;
    if (blocks > s->cfg.kv_blocks)
        return sp_fail(err, SP_ERANGE, "the prompt (%d tokens) plus max_tokens (%d) needs %lld KV blocks; the pool has %lld",
                       n, max_tokens, (long long)blocks, (long long)s->cfg.kv_blocks);
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    if (draining) return sp_fail(err, SP_ESHUTDOWN, "the server is shutting down");
    int rc = queue_push(s->q, r, req_params(r)->client_weight, err);
    if (rc == SP_OK) sched_wake(s);
    return rc;
}

void sched_wake(struct sched *s) {
    pthread_mutex_lock(&s->mu);
    s->wake = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_stop(struct sched *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_drain(struct sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

bool sched_idle(struct sched *s) {
    pthread_mutex_lock(&s->mu);
    bool idle = s->pub.running == 0;
    pthread_mutex_unlock(&s->mu);
    return idle && queue_len(s->q) == 0;
}

void sched_get_stats(struct sched *s, struct sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->pub;
    pthread_mutex_unlock(&s->mu);
    out->queued = queue_len(s->q);
}

struct queue *sched_queue(struct sched *s) { return s->q; }

/* --- slots ------------------------------------------------------------------ */

static int prefix_len(void *ctx, const int32_t *tokens, int n) {
    return kv_cached_prefix_len(((struct sched *)ctx)->kv, tokens, n);
}

static void release_slot(struct sched *s, int i) {
    kv_seq_release(s->kv, i);
    s->slots[i].r = NULL;
    s->st.running--;
}

static void finish_slot(struct sched *s, int i, enum req_finish why, const char *error) {
    struct request *r = s->slots[i].r;
    release_slot(s, i);
    queue_on_finish(s->q, r);
    finish_request(s, r, why, error);
}

/* Free slot i's blocks and send its request back to the queue's front. */
static void preempt_slot(struct sched *s, int i) {
    struct request *r = s->slots[i].r;
    uint64_t rng[4];
    sampler_get_rng(s->slots[i].smp, rng);
    req_save_rng(r, rng);
    release_slot(s, i);
    s->st.preemptions++;
    queue_push_resume(s->q, r);
}

/* True when a running sequence is still prefilling blocks that this prompt
 * shares beyond its cached prefix: admitting it now would compute them twice,
 * waiting a step or two lets it reuse them (SGLang's in-batch sharing). */
static bool shares_pending_prefill(const struct sched *s, const int32_t *t, int n, int cached) {
    const int bs = kv_block_size(s->kv);
    for (int j = 0; j < s->cfg.max_running; j++) {
        const struct slot *sl = &s->slots[j];
        if (!sl->r || sl->n_computed >= req_n_prompt(sl->r)) continue;
        const int32_t *u = req_tokens(sl->r);
        int lim = n - 1 < req_n_prompt(sl->r) ? n - 1 : req_n_prompt(sl->r);
        int common = 0;
        while (common < lim && t[common] == u[common]) common++;
        common = common / bs * bs;
        if (common > cached && sl->n_computed < common) return true;
    }
    return false;
}

/* Admit queued requests into free slots while the pool can hold their
 * prompts; the head waits (no skipping) when it cannot. */
static void admit(struct sched *s) {
    for (;;) {
        int i = 0;
        while (i < s->cfg.max_running && s->slots[i].r) i++;
        if (i == s->cfg.max_running) return;
        struct request *r = queue_peek(s->q, prefix_len, s);
        if (!r) return;
        const int n = req_n_tokens(r);
        const int cached = kv_seq_attach_prefix(s->kv, i, req_tokens(r), n);
        /* Room for the prompt and the first generated token. */
        if (kv_blocks_needed(s->kv, i, n + 1) > kv_blocks_available(s->kv) ||
            shares_pending_prefill(s, req_tokens(r), n, cached)) {
            kv_seq_release(s->kv, i);
            return;
        }
        queue_admit(s->q, r, cached);
        struct slot *sl = &s->slots[i];
        struct sp_err err;
        if (sampler_reset(sl->smp, &req_params(r)->sampling, &err) != SP_OK) {
            kv_seq_release(s->kv, i);
            queue_on_finish(s->q, r);
            finish_request(s, r, REQ_FINISH_ERROR, err.msg);
            continue;
        }
        const int32_t *t = req_tokens(r);
        for (int k = 0; k < n; k++) sampler_accept(sl->smp, t[k]);
        uint64_t rng[4];
        if (req_saved_rng(r, rng)) sampler_set_rng(sl->smp, rng);
        else req_set_cached(r, cached);     /* first admission: usage reports it */
        sl->r = r;
        sl->n_computed = cached;
        sl->admitted = ++s->n_admitted;
        s->st.running++;
        s->st.tokens_cached += cached;
    }
}

/* The running slot admitted last that is not in this step's plan, or -1. */
static int pick_victim(const struct sched *s) {
    int v = -1;
    for (int i = 0; i < s->cfg.max_running; i++) {
        const struct slot *sl = &s->slots[i];
        if (sl->r && sl->planned == 0 && (v < 0 || sl->admitted > s->slots[v].admitted)) v = i;
    }
    return v;
}

/* Reserve room for `want` more tokens of slot i, preempting later-admitted
 * unplanned slots if needed. Returns tokens granted (0: slot i itself was
 * preempted or nothing fits). */
static int reserve(struct sched *s, int i, int want) {
    struct slot *sl = &s->slots[i];
    const int bs = kv_block_size(s->kv);
    for (;;) {
        int rc = kv_seq_reserve(s->kv, i, sl->n_computed + want);
        if (rc == SP_OK) return want;
        if (rc != SP_EFULL) {       /* past the context: sched_submit rules it out */
            finish_slot(s, i, REQ_FINISH_ERROR, "sequence outgrew the context");
            return 0;
        }
        /* Partial room: take what the free blocks allow (prefill chunks only). */
        int room = kv_seq_capacity(s->kv, i) + (int)kv_blocks_available(s->kv) * bs - sl->n_computed;
        if (room > 0 && want > 1) {
            if (room < want) want = room;
            continue;
        }
        sl->planned = 1;        /* never pick ourselves below */
        int v = pick_victim(s);
        sl->planned = 0;
        if (v < 0 || s->slots[v].admitted < sl->admitted) {
            preempt_slot(s, i);     /* we are the latest: we step back */
            return 0;
        }
        preempt_slot(s, v);
    }
}

/* --- the step --------------------------------------------------------------- */

static void log_softmax_top(const float *logits, int n_vocab, int32_t id, int n_top, struct req_token *out) {
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++) if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - max));
    const float lse = max + (float)log(sum);
    out->id = id;
    out->logprob = logits[id] - lse;
    out->n_top = 0;
    for (int k = 0; k < n_top; k++) {       /* n_top <= 20: repeated scans are fine */
        int best = -1;
        for (int i = 0; i < n_vocab; i++) {
            bool taken = false;
            for (int j = 0; j < out->n_top && !taken; j++) taken = out->top_id[j] == i;
            if (!taken && (best < 0 || logits[i] > logits[best])) best = i;
        }
        if (best < 0) break;
        out->top_id[out->n_top] = best;
        out->top_logprob[out->n_top++] = logits[best] - lse;
    }
}

/* Sample slot i's next token from its logits row and publish it. */
static void emit_token(struct sched *s, int i, const float *logits) {
    struct slot *sl = &s->slots[i];
    struct request *r = sl->r;
    const struct req_params *p = req_params(r);
    const int32_t id = sampler_sample(sl->smp, logits);
    if (tok_is_eog(s->tok, id) && !p->ignore_eos) {
        size_t len;
        req_text_all(r, &len);
        req_set_final_len(r, len);
        finish_slot(s, i, REQ_FINISH_STOP, NULL);
        return;
    }
    sampler_accept(sl->smp, id);
    struct req_token lp;
    if (p->n_logprobs >= 0) log_softmax_top(logits, s->n_vocab, id, p->n_logprobs, &lp);
    size_t plen;
    const char *piece = tok_piece(s->tok, id, &plen);
    if (req_append(r, id, piece, plen, p->n_logprobs >= 0 ? &lp : NULL) != SP_OK) {
        finish_slot(s, i, REQ_FINISH_ERROR, "out of memory for the generated text");
        return;
    }
    s->st.tokens_generated++;
    queue_on_tokens(s->q, r, 1);
    size_t len;
    const char *text = req_text_all(r, &len);
    bool hit;
    size_t final = stop_scan(text, len, p->stops, p->n_stops, &hit);
    const int n_gen = req_n_tokens(r) - req_n_prompt(r);
    if (hit) {
        req_set_final_len(r, final);
        finish_slot(s, i, REQ_FINISH_STOP, NULL);
    } else if (n_gen >= p->max_tokens || req_n_tokens(r) >= s->cfg.n_ctx) {
        req_set_final_len(r, len);      /* a partial stop match is text after all */
        finish_slot(s, i, REQ_FINISH_LENGTH, NULL);
    } else {
        req_set_final_len(r, final);
        req_notify(r);
    }
}

/* Plan slot i for up to `budget` tokens; returns tokens added to the batch. */
static int plan_slot(struct sched *s, int i, int budget, int *n_batch, int *n_rows) {
    struct slot *sl = &s->slots[i];
    const int pending = req_n_tokens(sl->r) - sl->n_computed;
    int c = pending < budget ? pending : budget;
    if (c <= 0) return 0;
    c = reserve(s, i, c);
    if (c <= 0) return 0;
    const int32_t *t = req_tokens(sl->r);
    for (int k = 0; k < c; k++) {
        const int b = *n_batch + k;
        s->b_tok[b] = t[sl->n_computed + k];
        s->b_pos[b] = sl->n_computed + k;
        s->b_seq[b] = i;
        s->b_logits[b] = false;
    }
    sl->planned = c;
    sl->logits_row = -1;
    if (sl->n_computed + c == req_n_tokens(sl->r)) {   /* the last token: sample after it */
        s->b_logits[*n_batch + c - 1] = true;
        sl->logits_row = (*n_rows)++;
    }
    *n_batch += c;
    return c;
}

#ifdef SPARROW_FAULT_INJECTION
/* Test builds only (make fault): once the engine has run
 * $SPARROW_FAULT_STALL_AFTER_STEPS forward passes, the step sleeps
 * $SPARROW_FAULT_STALL_MS ms once, as a hung kernel would, so the watchdog
 * tests can see the heartbeat go stale and come back. */
static void fault_stall(struct sched *s) {
    const char *after = getenv("SPARROW_FAULT_STALL_AFTER_STEPS"), *ms = getenv("SPARROW_FAULT_STALL_MS");
    if (s->fault_stalled || !after || !ms || s->st.steps < atoll(after)) return;
    s->fault_stalled = true;
    const long long t = atoll(ms);
    struct timespec ts = { (time_t)(t / 1000), (long)(t % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {}
}
#endif

static void publish_stats(struct sched *s) {
    s->st.kv = kv_get_stats(s->kv);
    s->st.heartbeat = sp_now();
    pthread_mutex_lock(&s->mu);
    s->pub = s->st;
    pthread_mutex_unlock(&s->mu);
}

int sched_step(struct sched *s, struct sp_err *err) {
    struct request *r;
    while ((r = queue_take_cancelled(s->q))) finish_request(s, r, REQ_FINISH_CANCELLED, NULL);
    for (int i = 0; i < s->cfg.max_running; i++)
        if (s->slots[i].r && req_cancelled(s->slots[i].r)) finish_slot(s, i, REQ_FINISH_CANCELLED, NULL);
    admit(s);

    /* Plan: single pending tokens (decodes) first, then prefill chunks, each
     * group in admission order. */
    int n_order = 0;
    for (int i = 0; i < s->cfg.max_running; i++) {
        s->slots[i].planned = 0;
        if (s->slots[i].r) s->b_slot_order[n_order++] = i;
    }
    for (int a = 1; a < n_order; a++)       /* insertion sort: max_running is small */
        for (int b = a; b > 0 && s->slots[s->b_slot_order[b - 1]].admitted > s->slots[s->b_slot_order[b]].admitted; b--) {
            int tmp = s->b_slot_order[b];
            s->b_slot_order[b] = s->b_slot_order[b - 1];
            s->b_slot_order[b - 1] = tmp;
        }
    int n_batch = 0, n_rows = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < n_order; k++) {
            const int i = s->b_slot_order[k];
            if (!s->slots[i].r || s->slots[i].planned) continue;   /* preempted meanwhile, or done */
            const int pending = req_n_tokens(s->slots[i].r) - s->slots[i].n_computed;
            if ((pass == 0) != (pending == 1)) continue;
            plan_slot(s, i, s->cfg.max_batch_tokens - n_batch, &n_batch, &n_rows);
        }
    if (n_batch == 0) {
        publish_stats(s);
        return 0;
    }

    struct fwd_batch b = { n_batch, s->b_tok, s->b_pos, s->b_seq, s->b_logits };
    int rc = fwd_run(s->f, s->kv, &b, s->logits, err);
    if (rc != SP_OK) {      /* a bug, not input: fail what was in the batch, keep serving */
        for (int k = 0; k < n_order; k++) {
            const int i = s->b_slot_order[k];
            if (s->slots[i].r && s->slots[i].planned) finish_slot(s, i, REQ_FINISH_ERROR, err->msg);
        }
        publish_stats(s);
        return rc;
    }
    s->st.steps++;
#ifdef SPARROW_FAULT_INJECTION
    fault_stall(s);
#endif
    for (int k = 0; k < n_order; k++) {
        const int i = s->b_slot_order[k];
        struct slot *sl = &s->slots[i];
        if (!sl->r || !sl->planned) continue;
        if (sl->n_computed < req_n_prompt(sl->r)) {
            int prompt_part = req_n_prompt(sl->r) - sl->n_computed;
            s->st.tokens_prefilled += sl->planned < prompt_part ? sl->planned : prompt_part;
        }
        sl->n_computed += sl->planned;
        kv_seq_commit(s->kv, i, req_tokens(sl->r), sl->n_computed);
        if (sl->logits_row >= 0) emit_token(s, i, s->logits + (size_t)sl->logits_row * s->n_vocab);
    }
    publish_stats(s);
    return n_batch;
}

void sched_run(struct sched *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) return;
        struct sp_err err;
        int n = sched_step(s, &err);
        if (n != 0) continue;
        /* Idle: sleep until a submit, a cancel or stop; wake up once a second
         * anyway so the heartbeat (the watchdog's proof of life) moves. */
        pthread_mutex_lock(&s->mu);
        if (!s->wake && !s->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->work, &s->mu, &ts);
        }
        s->wake = false;
        pthread_mutex_unlock(&s->mu);
    }
}

int sched_check(struct sched *s, struct sp_err *err) {
    int rc = kv_check(s->kv, err);
    if (rc != SP_OK) return rc;
    int running = 0;
    for (int i = 0; i < s->cfg.max_running; i++) {
        const struct slot *sl = &s->slots[i];
        if (!sl->r) {
            if (kv_seq_capacity(s->kv, i) != 0)
                return sp_fail(err, SP_EINVAL, "scheduler: free slot %d still holds %d tokens of blocks", i,
                               kv_seq_capacity(s->kv, i));
            continue;
        }
        running++;
        if (sl->n_computed > req_n_tokens(sl->r) || kv_seq_capacity(s->kv, i) < sl->n_computed)
            return sp_fail(err, SP_EINVAL, "scheduler: slot %d computed %d of %d tokens with room for %d", i,
                           sl->n_computed, req_n_tokens(sl->r), kv_seq_capacity(s->kv, i));
    }
    if (running != s->st.running)
        return sp_fail(err, SP_EINVAL, "scheduler: %d slots busy, counter says %d", running, s->st.running);
    return SP_OK;
}
