/* queue.h - the waiting room: per-client FIFO queues and the policy that
 * picks which request the batcher admits next.
 *
 * Policies (scheduler_policy): fcfs - arrival order; lpm - longest cached
 * prefix first (ties by arrival). The fair policies plug in behind the same
 * calls. Every push is bounded: by max_queue in total and by
 * max_queue_per_client per client (SP_EFULL, which the API answers with 429),
 * except a preempted request coming back, which is never refused.
 *
 * Ownership: the queue holds one request reference per queued request and
 * hands it over on pick. Thread-safety: queue_push and queue_len from any
 * thread; everything else from the engine thread. One internal mutex. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"

struct request;
struct queue;               /* opaque */

enum queue_policy { QUEUE_FCFS, QUEUE_LPM };

struct queue_config {
    enum queue_policy policy;
    int max_queue;              /* requests waiting in total */
    int max_queue_per_client;   /* requests waiting per client */
};

/* How many of these tokens the KV prefix cache holds (engine thread). */
typedef int (*queue_prefix_fn)(void *ctx, const int32_t *tokens, int n);

/* "fcfs" -> QUEUE_FCFS; -1 if unknown. */
int queue_policy_from_name(const char *name);
const char *queue_policy_name(enum queue_policy p);

struct queue *queue_create(const struct queue_config *cfg, struct sp_err *err);
void queue_free(struct queue *q);       /* drops the references it holds */

/* Takes a new reference on r. SP_EFULL (err names the limit) when full. */
int queue_push(struct queue *q, struct request *r, struct sp_err *err);
/* A preempted request goes back to the front of its client's queue. */
void queue_push_front(struct queue *q, struct request *r);

/* The request the policy admits next, still queued; NULL if none. */
struct request *queue_peek(struct queue *q, queue_prefix_fn prefix, void *ctx);
/* Remove r (from peek or a cancel sweep); the caller gets the reference. */
void queue_remove(struct queue *q, struct request *r);
/* Remove and return one cancelled request, or NULL. */
struct request *queue_take_cancelled(struct queue *q);

int queue_len(struct queue *q);                          /* any thread */

struct queue_client_stat {
    char name[65];
    int waiting;
};
/* Up to cap clients with waiting requests; returns how many. Any thread. */
int queue_clients(struct queue *q, struct queue_client_stat *out, int cap);
/* Waiting requests of one client (for metrics); any thread. */
int queue_len_client(struct queue *q, const char *client);
