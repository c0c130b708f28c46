/* batcher.h - the engine loop: continuous batching over one paged KV pool.
 *
 * Every step builds one plan: one token for each running sequence that is
 * decoding, then chunks of prompts being prefilled, within max_batch_tokens
 * and max_running sequences; runs one batched forward pass; samples for every
 * sequence that produced logits. Requests join and leave between steps. When
 * the pool cannot hold a decode, the most recently admitted sequence is
 * preempted (its blocks freed, the request requeued at the front to be
 * recomputed; its full blocks usually stay cached, so recompute is cheap).
 *
 * Ownership: the scheduler owns the KV pool, the forward context, the queue
 * and one sampler per slot; the model and tokenizer are borrowed and must
 * outlive it. Requests are referenced while queued or running.
 * Thread-safety: sched_submit, sched_wake, sched_stop, sched_get_stats from
 * any thread; sched_step / sched_run from the one engine thread. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"
#include "engine/kvcache.h"
#include "scheduler/queue.h"

struct model;
struct tokenizer;
struct request;
struct sched;               /* opaque */

struct sched_config {
    int max_running;        /* sequences in flight (KV slots) */
    int max_batch_tokens;   /* tokens per forward pass */
    int n_ctx;              /* longest sequence: prompt + generated */
    int block_size;         /* KV block, tokens */
    int64_t kv_blocks;      /* blocks in the pool */
    int threads;            /* worker threads for the math */
    struct queue_config queue;
};

struct sched_stats {
    int running;            /* sequences in slots */
    int queued;
    int64_t steps;
    int64_t tokens_prefilled;   /* prompt tokens computed (cache hits excluded) */
    int64_t tokens_cached;      /* prompt tokens served from the prefix cache */
    int64_t tokens_generated;
    int64_t preemptions;
    int64_t finished[5];    /* by enum req_finish */
    struct kv_stats kv;
    double heartbeat;       /* monotonic time the engine loop last went round */
};

struct sched *sched_create(const struct model *m, const struct tokenizer *tok, const struct sched_config *cfg,
                           struct sp_err *err);
void sched_free(struct sched *s);   /* finishes what is left as cancelled */

/* Queue r (takes its own reference). SP_ERANGE: can never fit (prompt +
 * max_tokens beyond the context or the pool); SP_EINVAL: a token id out of
 * the vocabulary; SP_EFULL: a queue limit; SP_ESHUTDOWN: draining. */
int sched_submit(struct sched *s, struct request *r, struct sp_err *err);

/* One engine step; returns the tokens it computed (0 when idle) or an error. */
int sched_step(struct sched *s, struct sp_err *err);
/* Step until sched_stop; sleeps while idle. */
void sched_run(struct sched *s);
void sched_stop(struct sched *s);
/* Wake an idle engine loop (after a cancel, say). */
void sched_wake(struct sched *s);
/* Refuse new submissions from now on (drain). */
void sched_drain(struct sched *s);
bool sched_idle(struct sched *s);   /* nothing queued or running; any thread */

void sched_get_stats(struct sched *s, struct sched_stats *out);
/* The admission queue, for per-client gauges (queue_clients is thread-safe). */
struct queue *sched_queue(struct sched *s);
/* Invariants of the pool and the slots (tests). */
int sched_check(struct sched *s, struct sp_err *err);
