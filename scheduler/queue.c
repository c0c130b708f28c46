/* queue.c - see queue.h.
 *
 * DESIGN: clients live in a table (grown by doubling, capped at
 * QUEUE_MAX_CLIENTS; a client with nothing waiting or running is dropped when
 * the table is full, oldest activity first). Each client has an intrusive
 * FIFO of nodes; every node also carries its global arrival number `seq`,
 * which breaks ties everywhere, so a run is deterministic. Picking is a scan
 * over clients (fcfs, vtc) or waiting requests (lpm, dlpm): O(C) or O(W),
 * fine at the queue sizes the config allows; lpm/dlpm fall back to arrival
 * order beyond LPM_MAX_SCAN waiting requests, as SGLang does. */
#include "scheduler/queue.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/request.h"

#define QUEUE_MAX_CLIENTS 4096
#define LPM_MAX_SCAN 128

struct node {
    struct request *r;
    uint64_t seq;
    int client;
    struct node *next;
};

struct client {
    char name[REQ_MAX_CLIENT_LEN + 1];
    double weight;
    struct node *head, *tail;   /* waiting, FIFO */
    int waiting, running;
    double vtc;                 /* vtc counter (normalized) */
    double deficit;             /* dlpm deficit (cost units) */
    double service;             /* normalized charge received */
    int64_t prompt_tokens, cached_tokens, output_tokens;
    uint64_t last_active;       /* seq of the last arrival or admission */
};

struct queue {
    struct queue_config cfg;
    double w_cached;
    pthread_mutex_t mu;
    struct client *clients;
    int n_clients, cap_clients;
    struct node *resume_head, *resume_tail;
    int n;                      /* waiting, resume list included */
    uint64_t next_seq;
    int last_left;              /* client that last stopped being backlogged, -1 */
};

static const char *const policy_names[] = { "fcfs", "lpm", "vtc", "dlpm" };

int queue_policy_from_name(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, policy_names[i])) return i;
    return -1;
}

const char *queue_policy_name(enum queue_policy p) { return policy_names[p]; }

struct queue *queue_create(const struct queue_config *cfg, struct sp_err *err) {
    if (cfg->max_queue < 1 || cfg->max_queue_per_client < 1 || !(cfg->quantum > 0) || cfg->w_prompt < 0 ||
        cfg->w_output < 0) {
        sp_fail(err, SP_EINVAL, "queue: max_queue %d, per client %d, quantum %g, weights %g/%g", cfg->max_queue,
                cfg->max_queue_per_client, cfg->quantum, cfg->w_prompt, cfg->w_output);
        return NULL;
    }
    struct queue *q = calloc(1, sizeof(*q));
    if (!q) { sp_fail(err, SP_ENOMEM, "queue: out of memory"); return NULL; }
    q->cfg = *cfg;
    q->w_cached = cfg->w_cached >= 0 ? cfg->w_cached : cfg->policy == QUEUE_DLPM ? 0.0 : cfg->w_prompt;
    q->last_left = -1;
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

static struct node *pop_any(struct queue *q) {
    struct node *n = q->resume_head;
    if (n) {
        q->resume_head = n->next;
        if (!q->resume_head) q->resume_tail = NULL;
        q->n--;
        return n;
    }
    for (int i = 0; i < q->n_clients; i++) {
        struct client *c = &q->clients[i];
        if (!c->head) continue;
        n = c->head;
        c->head = n->next;
        if (!c->head) c->tail = NULL;
        c->waiting--;
        q->n--;
        return n;
    }
    return NULL;
}

struct request *queue_take_any(struct queue *q) {
    pthread_mutex_lock(&q->mu);
    struct node *n = pop_any(q);
    pthread_mutex_unlock(&q->mu);
    if (!n) return NULL;
    struct request *r = n->r;
    free(n);
    return r;
}

void queue_free(struct queue *q) {
    if (!q) return;
    struct request *r;
    while ((r = queue_take_any(q))) req_unref(r);
    free(q->clients);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* --- clients --------------------------------------------------------------- */

static int client_find(const struct queue *q, const char *name) {
    for (int i = 0; i < q->n_clients; i++)
        if (!strcmp(q->clients[i].name, name)) return i;
    return -1;
}

/* Find or add a client; -1 when the table is full of active clients. */
static int client_get(struct queue *q, const char *name, double weight) {
    int i = client_find(q, name);
    if (i >= 0) { q->clients[i].weight = weight; return i; }
    if (q->n_clients == q->cap_clients && q->cap_clients < QUEUE_MAX_CLIENTS) {
        int cap = q->cap_clients ? 2 * q->cap_clients : 16;
        struct client *t = realloc(q->clients, sizeof(*t) * (size_t)cap);
        if (t) { q->clients = t; q->cap_clients = cap; }
    }
    if (q->n_clients == q->cap_clients) {
        /* Full: reuse the idle client seen longest ago. Its counters go; the
         * fairness bounds survive (vtc lifts, dlpm restarts at 0). */
        int victim = -1;
        for (int k = 0; k < q->n_clients; k++) {
            const struct client *c = &q->clients[k];
            if (!c->waiting && !c->running && (victim < 0 || c->last_active < q->clients[victim].last_active))
                victim = k;
        }
        if (victim < 0) return -1;
        if (q->last_left == victim) q->last_left = -1;
        i = victim;
    } else {
        i = q->n_clients++;
    }
    struct client *c = &q->clients[i];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->weight = weight;
    return i;
}

/* A client becomes backlogged: vtc lift, dlpm clamp. */
static void on_backlogged(struct queue *q, int i) {
    struct client *c = &q->clients[i];
    if (q->cfg.policy == QUEUE_VTC) {
        double least = INFINITY;
        for (int k = 0; k < q->n_clients; k++)
            if (k != i && q->clients[k].waiting > 0 && q->clients[k].vtc < least) least = q->clients[k].vtc;
        if (least == INFINITY && q->last_left >= 0 && q->last_left != i) least = q->clients[q->last_left].vtc;
        if (least != INFINITY && least > c->vtc) c->vtc = least;
    } else if (q->cfg.policy == QUEUE_DLPM) {
        if (c->deficit > 0) c->deficit = 0;
    }
}

int queue_push(struct queue *q, struct request *r, double weight, struct sp_err *err) {
    if (!(weight > 0)) weight = 1.0;
    struct node *n = malloc(sizeof(*n));
    if (!n) return sp_fail(err, SP_ENOMEM, "queue: out of memory");
    int rc = SP_OK;
    pthread_mutex_lock(&q->mu);
    if (q->n >= q->cfg.max_queue) {
        rc = sp_fail(err, SP_EFULL, "the server queue is full (%d requests waiting, max_queue)", q->n);
        goto out;
    }
    int i = client_get(q, req_client(r), weight);
    if (i < 0) { rc = sp_fail(err, SP_EFULL, "too many clients are waiting"); goto out; }
    struct client *c = &q->clients[i];
    if (c->waiting >= q->cfg.max_queue_per_client) {
        rc = sp_fail(err, SP_EFULL, "client '%s' already has %d requests waiting (max_queue_per_client)",
                     req_client(r), c->waiting);
        goto out;
    }
    if (c->waiting == 0) on_backlogged(q, i);
    req_ref(r);
    *n = (struct node){ r, q->next_seq++, i, NULL };
    if (c->tail) c->tail->next = n; else c->head = n;
    c->tail = n;
    c->waiting++;
    c->last_active = n->seq;
    q->n++;
out:
    pthread_mutex_unlock(&q->mu);
    if (rc != SP_OK) free(n);
    return rc;
}

void queue_push_resume(struct queue *q, struct request *r) {
    struct node *n = malloc(sizeof(*n));
    if (!n) {   /* it cannot wait, so it ends */
        req_finish(r, REQ_FINISH_ERROR, "out of memory while requeueing a preempted request");
        req_notify(r);
        req_unref(r);
        return;
    }
    pthread_mutex_lock(&q->mu);
    int i = client_find(q, req_client(r));
    *n = (struct node){ r, 0, i, NULL };
    /* Preempted requests resume in the order they were preempted. */
    if (q->resume_tail) q->resume_tail->next = n; else q->resume_head = n;
    q->resume_tail = n;
    q->n++;
    if (i >= 0 && q->clients[i].running > 0) q->clients[i].running--;
    pthread_mutex_unlock(&q->mu);
}

/* --- picking ---------------------------------------------------------------- */

static struct node *pick_fcfs(struct queue *q) {
    struct node *best = NULL;
    for (int i = 0; i < q->n_clients; i++) {
        struct node *h = q->clients[i].head;
        if (h && (!best || h->seq < best->seq)) best = h;
    }
    return best;
}

static struct node *pick_vtc(struct queue *q) {
    struct node *best = NULL;
    double best_c = INFINITY;
    for (int i = 0; i < q->n_clients; i++) {
        const struct client *c = &q->clients[i];
        if (!c->head) continue;
        if (c->vtc < best_c || (c->vtc == best_c && c->head->seq < best->seq)) {
            best_c = c->vtc;
            best = c->head;
        }
    }
    return best;
}

/* Longest cached prefix among waiting requests of eligible clients (all when
 * eligible is NULL's equivalent: dlpm false); ties by arrival. */
static struct node *pick_lpm(struct queue *q, bool deficit_only, queue_prefix_fn prefix, void *ctx) {
    if (!prefix || q->n > LPM_MAX_SCAN) {
        struct node *best = NULL;
        for (int i = 0; i < q->n_clients; i++) {
            struct node *h = q->clients[i].head;
            if (h && (!deficit_only || q->clients[i].deficit > 0) && (!best || h->seq < best->seq)) best = h;
        }
        return best;
    }
    struct node *best = NULL;
    int best_len = -1;
    for (int i = 0; i < q->n_clients; i++) {
        if (deficit_only && q->clients[i].deficit <= 0) continue;
        for (struct node *n = q->clients[i].head; n; n = n->next) {
            int len = prefix(ctx, req_tokens(n->r), req_n_tokens(n->r));
            if (len > best_len || (len == best_len && n->seq < best->seq)) { best_len = len; best = n; }
        }
    }
    return best;
}

/* dlpm: when no backlogged client has credit, give every backlogged client
 * the same number of quanta, the fewest that make one of them positive. */
static void dlpm_refill(struct queue *q) {
    double most = -INFINITY, rounds = INFINITY;
    for (int i = 0; i < q->n_clients; i++) {
        const struct client *c = &q->clients[i];
        if (!c->waiting) continue;
        if (c->deficit > most) most = c->deficit;
        double m = floor(-c->deficit / (q->cfg.quantum * c->weight)) + 1;
        if (m < rounds) rounds = m;
    }
    if (most > 0 || rounds == INFINITY) return;
    /* The division can round so that `rounds` leaves everyone at 0 or just
     * below (-32.9 + 329 * 0.1 == 0): then add rounds, 1, 2, 4, ... until
     * someone is positive (doubling, so a tiny weight cannot spin). */
    for (double add = rounds, more = 1;; add = more, more *= 2) {
        bool positive = false;
        for (int i = 0; i < q->n_clients; i++)
            if (q->clients[i].waiting) {
                q->clients[i].deficit += add * q->cfg.quantum * q->clients[i].weight;
                positive |= q->clients[i].deficit > 0;
            }
        if (positive) return;
    }
}

struct request *queue_peek(struct queue *q, queue_prefix_fn prefix, void *ctx) {
    pthread_mutex_lock(&q->mu);
    struct node *n = q->resume_head;
    if (!n) {
        switch (q->cfg.policy) {
        case QUEUE_FCFS: n = pick_fcfs(q); break;
        case QUEUE_LPM: n = pick_lpm(q, false, prefix, ctx); break;
        case QUEUE_VTC: n = pick_vtc(q); break;
        case QUEUE_DLPM: dlpm_refill(q); n = pick_lpm(q, true, prefix, ctx); break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return n ? n->r : NULL;
}

/* --- admission and charges ------------------------------------------------- */

static bool unlink_waiting(struct queue *q, struct request *r, struct node **out) {
    struct node **pp = &q->resume_head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next)
        if ((*pp)->r == r) {
            *out = *pp;
            *pp = (*pp)->next;
            if (q->resume_tail == *out) q->resume_tail = prev;
            q->n--;
            return true;    /* resumed: not an admission to charge */
        }
    for (int i = 0; i < q->n_clients; i++) {
        struct client *c = &q->clients[i];
        prev = NULL;
        for (pp = &c->head; *pp; prev = *pp, pp = &(*pp)->next)
            if ((*pp)->r == r) {
                *out = *pp;
                *pp = (*pp)->next;
                if (c->tail == *out) c->tail = prev;
                c->waiting--;
                q->n--;
                if (c->waiting == 0) q->last_left = i;
                return false;
            }
    }
    *out = NULL;
    return false;
}

void queue_admit(struct queue *q, struct request *r, int n_cached) {
    pthread_mutex_lock(&q->mu);
    struct node *n;
    bool resumed = unlink_waiting(q, r, &n);
    int i = client_find(q, req_client(r));
    if (n && i >= 0) {
        struct client *c = &q->clients[i];
        c->running++;
        if (!resumed) {
            const int n_p = req_n_prompt(r);
            const double cost = q->cfg.w_prompt * (n_p - n_cached) + q->w_cached * n_cached;
            if (q->cfg.policy == QUEUE_VTC) c->vtc += cost / c->weight;
            if (q->cfg.policy == QUEUE_DLPM) c->deficit -= cost;
            c->service += cost / c->weight;
            c->prompt_tokens += n_p;
            c->cached_tokens += n_cached;
            c->last_active = q->next_seq;
        }
    }
    pthread_mutex_unlock(&q->mu);
    free(n);
}

void queue_on_tokens(struct queue *q, const struct request *r, int n) {
    pthread_mutex_lock(&q->mu);
    int i = client_find(q, req_client(r));
    if (i >= 0) {
        struct client *c = &q->clients[i];
        const double cost = q->cfg.w_output * n;
        if (q->cfg.policy == QUEUE_VTC) c->vtc += cost / c->weight;
        if (q->cfg.policy == QUEUE_DLPM) c->deficit -= cost;
        c->service += cost / c->weight;
        c->output_tokens += n;
    }
    pthread_mutex_unlock(&q->mu);
}

void queue_on_finish(struct queue *q, const struct request *r) {
    pthread_mutex_lock(&q->mu);
    int i = client_find(q, req_client(r));
    if (i >= 0 && q->clients[i].running > 0) q->clients[i].running--;
    pthread_mutex_unlock(&q->mu);
}

struct request *queue_take_cancelled(struct queue *q) {
    pthread_mutex_lock(&q->mu);
    struct request *found = NULL;
    for (struct node *n = q->resume_head; n && !found; n = n->next)
        if (req_cancelled(n->r)) found = n->r;
    for (int i = 0; i < q->n_clients && !found; i++)
        for (struct node *n = q->clients[i].head; n && !found; n = n->next)
            if (req_cancelled(n->r)) found = n->r;
    struct node *n = NULL;
    if (found) unlink_waiting(q, found, &n);
    pthread_mutex_unlock(&q->mu);
    free(n);
    return found;
}

int queue_len(struct queue *q) {
    pthread_mutex_lock(&q->mu);
    int n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int queue_clients(struct queue *q, struct queue_client_stat *out, int cap) {
    pthread_mutex_lock(&q->mu);
    int n = q->n_clients < cap ? q->n_clients : cap;
    for (int i = 0; i < n; i++) {
        const struct client *c = &q->clients[i];
        struct queue_client_stat *o = &out[i];
        snprintf(o->name, sizeof(o->name), "%s", c->name);
        o->weight = c->weight;
        o->waiting = c->waiting;
        o->running = c->running;
        o->service = c->service;
        o->counter = q->cfg.policy == QUEUE_DLPM ? c->deficit : c->vtc;
        o->prompt_tokens = c->prompt_tokens;
        o->cached_tokens = c->cached_tokens;
        o->output_tokens = c->output_tokens;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}
