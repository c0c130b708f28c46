/* workers.c - see workers.h. One generation counter under a mutex: the caller
 * publishes (fn, ctx, n) and bumps the generation; each worker runs its slice
 * and the last one to finish wakes the caller. Simple and correct first; a
 * spinning barrier is the kernels issue's business. */
#include "kernels/workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct worker_arg {
    struct workers *pool;
    int index;              /* 1..n_threads-1; the caller is 0 */
};

struct workers {
    int n_threads;
    pthread_t *threads;     /* [n_threads - 1] */
    struct worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long generation;
    int pending;            /* workers still running this generation */
    bool stop;
    workers_fn fn;          /* the current job */
    void *ctx;
    int n;
};

static void run_slice(struct workers *w, int t) {
    int per = (w->n + w->n_threads - 1) / w->n_threads;
    int begin = t * per, end = begin + per;
    if (end > w->n) end = w->n;
    if (begin < end) w->fn(w->ctx, begin, end, t);
}

static void *worker_main(void *p) {
    struct worker_arg *a = p;
    struct workers *w = a->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->generation == seen) pthread_cond_wait(&w->wake, &w->mu);
        if (w->stop) break;
        seen = w->generation;
        pthread_mutex_unlock(&w->mu);
        run_slice(w, a->index);
        pthread_mutex_lock(&w->mu);
        if (--w->pending == 0) pthread_cond_signal(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct workers *workers_create(int n_threads, struct sp_err *err) {
    if (n_threads < 1 || n_threads > 256) {
        sp_fail(err, SP_EINVAL, "workers: %d threads (1..256 allowed)", n_threads);
        return NULL;
    }
    struct workers *w = calloc(1, sizeof(*w));
    if (!w) goto out_nomem;
    w->n_threads = n_threads;
    w->threads = calloc((size_t)n_threads, sizeof(*w->threads));
    w->args = calloc((size_t)n_threads, sizeof(*w->args));
    if (!w->threads || !w->args) goto out_free;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    for (int i = 1; i < n_threads; i++) {
        w->args[i] = (struct worker_arg){ w, i };
        if (pthread_create(&w->threads[i - 1], NULL, worker_main, &w->args[i]) != 0) {
            w->n_threads = i;   /* join only those started */
            workers_free(w);
            sp_fail(err, SP_ENOMEM, "workers: cannot start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
    return w;
out_free:
    free(w->threads);
    free(w->args);
    free(w);
out_nomem:
    sp_fail(err, SP_ENOMEM, "workers: out of memory");
    return NULL;
}

void workers_free(struct workers *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->mu);
    for (int i = 1; i < w->n_threads; i++) pthread_join(w->threads[i - 1], NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w->threads);
    free(w->args);
    free(w);
}

int workers_count(const struct workers *w) { return w->n_threads; }

void workers_run(struct workers *w, workers_fn fn, void *ctx, int n) {
    if (n <= 0) return;
    if (w->n_threads == 1 || n == 1) { fn(ctx, 0, n, 0); return; }
    pthread_mutex_lock(&w->mu);
    w->fn = fn;
    w->ctx = ctx;
    w->n = n;
    w->pending = w->n_threads - 1;
    w->generation++;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->mu);
    run_slice(w, 0);
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0) pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
}
