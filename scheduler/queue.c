/* queue.c - see queue.h.
 *
 * Requests wait in one arrival-ordered doubly linked list (nodes allocated on
 * push: their number is bounded by max_queue plus the preempted, who were
 * admitted once). Per-client counts live in a small table grown by doubling,
 * capped by max_queue clients (a client with nothing queued is dropped). */
#include "scheduler/queue.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/request.h"

struct node {
    struct request *r;
    struct node *prev, *next;
};

struct client_count {
    char name[REQ_MAX_CLIENT_LEN + 1];
    int n;
};

struct queue {
    struct queue_config cfg;
    pthread_mutex_t mu;
    struct node *head, *tail;   /* arrival order; preempted go to the head */
    int n;
    struct client_count *clients;
    int n_clients, cap_clients;
};

static const char *const policy_names[] = { [QUEUE_FCFS] = "fcfs", [QUEUE_LPM] = "lpm" };

int queue_policy_from_name(const char *name) {
    for (int i = 0; i < (int)(sizeof(policy_names) / sizeof(policy_names[0])); i++)
        if (!strcmp(name, policy_names[i])) return i;
    return -1;
}

const char *queue_policy_name(enum queue_policy p) { return policy_names[p]; }

struct queue *queue_create(const struct queue_config *cfg, struct sp_err *err) {
    if (cfg->max_queue < 1 || cfg->max_queue_per_client < 1) {
        sp_fail(err, SP_EINVAL, "queue: max_queue %d, max_queue_per_client %d must be >= 1", cfg->max_queue,
                cfg->max_queue_per_client);
        return NULL;
    }
    struct queue *q = calloc(1, sizeof(*q));
    if (!q) { sp_fail(err, SP_ENOMEM, "queue: out of memory"); return NULL; }
    q->cfg = *cfg;
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

void queue_free(struct queue *q) {
    if (!q) return;
    for (struct node *n = q->head, *next; n; n = next) {
        next = n->next;
        req_unref(n->r);
        free(n);
    }
    free(q->clients);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static struct client_count *client_find(struct queue *q, const char *name) {
    for (int i = 0; i < q->n_clients; i++)
        if (!strcmp(q->clients[i].name, name)) return &q->clients[i];
    return NULL;
}

static struct client_count *client_get(struct queue *q, const char *name) {
    struct client_count *c = client_find(q, name);
    if (c) return c;
    if (q->n_clients == q->cap_clients) {
        int cap = q->cap_clients ? 2 * q->cap_clients : 16;
        struct client_count *t = realloc(q->clients, sizeof(*t) * (size_t)cap);
        if (!t) return NULL;
        q->clients = t;
        q->cap_clients = cap;
    }
    c = &q->clients[q->n_clients++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->n = 0;
    return c;
}

static void client_dec(struct queue *q, const char *name) {
    struct client_count *c = client_find(q, name);
    if (!c || --c->n > 0) return;
    *c = q->clients[--q->n_clients];    /* drop idle clients: the table stays small */
}

static void link_node(struct queue *q, struct node *n, bool front) {
    if (front) {
        n->prev = NULL; n->next = q->head;
        if (q->head) q->head->prev = n; else q->tail = n;
        q->head = n;
    } else {
        n->next = NULL; n->prev = q->tail;
        if (q->tail) q->tail->next = n; else q->head = n;
        q->tail = n;
    }
    q->n++;
}

int queue_push(struct queue *q, struct request *r, struct sp_err *err) {
    struct node *n = malloc(sizeof(*n));
    if (!n) return sp_fail(err, SP_ENOMEM, "queue: out of memory");
    int rc = SP_OK;
    pthread_mutex_lock(&q->mu);
    if (q->n >= q->cfg.max_queue) {
        rc = sp_fail(err, SP_EFULL, "the server queue is full (%d requests waiting)", q->n);
        goto out;
    }
    struct client_count *c = client_get(q, req_client(r));
    if (!c) { rc = sp_fail(err, SP_ENOMEM, "queue: out of memory"); goto out; }
    if (c->n >= q->cfg.max_queue_per_client) {
        rc = sp_fail(err, SP_EFULL, "client '%s' already has %d requests waiting (max_queue_per_client)",
                     req_client(r), c->n);
        goto out;
    }
    c->n++;
    req_ref(r);
    n->r = r;
    link_node(q, n, false);
out:
    pthread_mutex_unlock(&q->mu);
    if (rc != SP_OK) free(n);
    return rc;
}

void queue_push_front(struct queue *q, struct request *r) {
    struct node *n = malloc(sizeof(*n));
    pthread_mutex_lock(&q->mu);
    struct client_count *c = client_get(q, req_client(r));
    if (!n || !c) {
        /* Out of memory for a preempted request: it cannot wait, so it ends. */
        pthread_mutex_unlock(&q->mu);
        free(n);
        req_finish(r, REQ_FINISH_ERROR, "out of memory while requeueing a preempted request");
        req_notify(r);
        req_unref(r);
        return;
    }
    c->n++;
    n->r = r;       /* the caller's reference moves into the queue */
    link_node(q, n, true);
    pthread_mutex_unlock(&q->mu);
}

static struct node *find_node(struct queue *q, struct request *r) {
    for (struct node *n = q->head; n; n = n->next)
        if (n->r == r) return n;
    return NULL;
}

static void unlink_node(struct queue *q, struct node *n) {
    if (n->prev) n->prev->next = n->next; else q->head = n->next;
    if (n->next) n->next->prev = n->prev; else q->tail = n->prev;
    q->n--;
    client_dec(q, req_client(n->r));
    free(n);
}

struct request *queue_peek(struct queue *q, queue_prefix_fn prefix, void *ctx) {
    pthread_mutex_lock(&q->mu);
    struct request *best = q->head ? q->head->r : NULL;
    if (q->cfg.policy == QUEUE_LPM && prefix) {
        int best_len = -1;
        for (struct node *n = q->head; n; n = n->next) {
            int len = prefix(ctx, req_tokens(n->r), req_n_tokens(n->r));
            if (len > best_len) { best_len = len; best = n->r; }
        }
    }
    pthread_mutex_unlock(&q->mu);
    return best;
}

void queue_remove(struct queue *q, struct request *r) {
    pthread_mutex_lock(&q->mu);
    struct node *n = find_node(q, r);
    if (n) unlink_node(q, n);
    pthread_mutex_unlock(&q->mu);
}

struct request *queue_take_cancelled(struct queue *q) {
    pthread_mutex_lock(&q->mu);
    struct request *r = NULL;
    for (struct node *n = q->head; n; n = n->next)
        if (req_cancelled(n->r)) {
            r = n->r;
            unlink_node(q, n);
            break;
        }
    pthread_mutex_unlock(&q->mu);
    return r;
}

int queue_len(struct queue *q) {
    pthread_mutex_lock(&q->mu);
    int n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int queue_len_client(struct queue *q, const char *client) {
    pthread_mutex_lock(&q->mu);
    struct client_count *c = client_find(q, client);
    int n = c ? c->n : 0;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int queue_clients(struct queue *q, struct queue_client_stat *out, int cap) {
    pthread_mutex_lock(&q->mu);
    int n = q->n_clients < cap ? q->n_clients : cap;
    for (int i = 0; i < n; i++) {
        snprintf(out[i].name, sizeof(out[i].name), "%s", q->clients[i].name);
        out[i].waiting = q->clients[i].n;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}
