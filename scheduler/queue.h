/* queue.h - the waiting room: per-client FIFO queues and the policy that
 * picks which request the batcher admits next (../shared/research/
 * fair-scheduling.md, sections 3 and 5).
 *
 *   fcfs  global arrival order
 *   lpm   longest cached prefix first (ties: arrival), no fairness
 *   vtc   Virtual Token Counter: the backlogged client with the least counter
 *         goes first; counters charged w_p per prompt token at admission and
 *         w_q per generated token, divided by the client's weight; a client
 *         that becomes backlogged is lifted to the least backlogged counter
 *         (or the last leaver's when none is backlogged)
 *   dlpm  Deficit Longest Prefix Match: clients with deficit > 0 are eligible,
 *         and among their requests the longest cached prefix goes first;
 *         deficits are refilled by quantum * weight (all needed rounds at once)
 *         when no backlogged client is positive, charged w_p per uncached and
 *         w_c per cached prompt token at admission and w_q per generated
 *         token; a client becoming backlogged keeps debt, loses credit
 *
 * Preempted requests wait in a resume list served before anything new; their
 * return is not an arrival and they are not charged twice. Every push is
 * bounded: max_queue in total, max_queue_per_client per client (SP_EFULL).
 *
 * Ownership: the queue holds one request reference per waiting request and
 * hands it to the caller at queue_admit. Thread-safety: queue_push,
 * queue_len, queue_clients from any thread; the rest from the engine thread.
 * One internal mutex. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"

struct request;
struct queue;               /* opaque */

enum queue_policy { QUEUE_FCFS, QUEUE_LPM, QUEUE_VTC, QUEUE_DLPM };

struct queue_config {
    enum queue_policy policy;
    int max_queue;              /* requests waiting in total */
    int max_queue_per_client;   /* requests waiting per client */
    double w_prompt;            /* w_p: per uncached prompt token (default 1) */
    double w_output;            /* w_q: per generated token (default 2) */
    double w_cached;            /* w_c: per cached prompt token; < 0 = policy default (vtc w_p, dlpm 0) */
    double quantum;             /* dlpm Q, per unit of weight (default 256) */
};

/* How many of these tokens the KV prefix cache holds (engine thread). */
typedef int (*queue_prefix_fn)(void *ctx, const int32_t *tokens, int n);

/* "fcfs" -> QUEUE_FCFS; -1 if unknown. */
int queue_policy_from_name(const char *name);
const char *queue_policy_name(enum queue_policy p);

struct queue *queue_create(const struct queue_config *cfg, struct sp_err *err);
void queue_free(struct queue *q);       /* drops the references it holds */

/* A new request (takes a reference). weight is its client's (> 0).
 * SP_EFULL (err names the limit) when full. */
int queue_push(struct queue *q, struct request *r, double weight, struct sp_err *err);
/* A preempted request (the caller's reference moves in). */
void queue_push_resume(struct queue *q, struct request *r);

/* The request the policy admits next, still queued; NULL if none. May refill
 * dlpm deficits. */
struct request *queue_peek(struct queue *q, queue_prefix_fn prefix, void *ctx);
/* r (from peek) is admitted with n_cached prompt tokens from the cache:
 * remove it, charge its client; the caller gets the reference. */
void queue_admit(struct queue *q, struct request *r, int n_cached);
/* A running request of client generated n tokens / finished (stats, charges). */
void queue_on_tokens(struct queue *q, const struct request *r, int n);
void queue_on_finish(struct queue *q, const struct request *r);
/* Remove and return one cancelled waiting request (its reference), or NULL. */
struct request *queue_take_cancelled(struct queue *q);
/* Remove and return any waiting request (shutdown), or NULL. */
struct request *queue_take_any(struct queue *q);

int queue_len(struct queue *q);                          /* any thread */

struct queue_client_stat {
    char name[65];
    double weight;
    int waiting, running;
    double service;             /* normalized charge received (cost / weight) */
    double counter;             /* vtc counter or dlpm deficit */
    int64_t prompt_tokens, cached_tokens, output_tokens;
};
/* Up to cap known clients; returns how many. Any thread. */
int queue_clients(struct queue *q, struct queue_client_stat *out, int cap);
