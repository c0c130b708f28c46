/* workers.c - see workers.h.
 *
 * DESIGN: a step runs dozens of parallel loops of a few microseconds each, so
 * waking threads through a condition variable (tens of microseconds) would
 * cost more than the work. The caller publishes a job by bumping an atomic
 * generation; workers spin on it for a while (WORKERS_SPIN iterations, about
 * a millisecond) and only then sleep on the condition variable, so a busy
 * engine never sleeps between loops and an idle one burns no CPU. Completion
 * is an atomic countdown the caller spins on.
 *
 * Spinning threads that land on one CPU stay there: each runs every few
 * microseconds, so the scheduler counts both as cache-hot and does not move
 * either to an idle CPU for tens of milliseconds (seen: a first request 20-65
 * ms slow, after a library's spinning thread had taken the other core while
 * the pool was created). So each thread publishes its CPU when it starts a
 * job, and a worker that finds a pool thread on its own CPU steps off it:
 * its affinity narrowed to the CPUs the pool does not use, then restored
 * (the scheduler does not move it back). At most once per MOVE_EVERY jobs, so
 * a truly oversubscribed box does not turn this into a syscall storm. */
#include "kernels/workers.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define WORKERS_SPIN 20000
#define MOVE_EVERY 256

struct worker_arg {
    struct workers *pool;
    int index;                  /* 1..n_threads-1; the caller is 0 */
};

struct workers {
    int n_threads;
    pthread_t *threads;         /* [n_threads - 1] */
    struct worker_arg *args;
    pthread_mutex_t mu;         /* guards sleeping only */
    pthread_cond_t wake;
    atomic_uint generation;     /* bumped once per job */
    atomic_int pending;         /* workers still running this job */
    atomic_int sleepers;        /* workers blocked on `wake` */
    atomic_bool stop;
    atomic_int *cpu;            /* [n_threads] CPU each thread last started a job on, -1: unknown */
    workers_fn fn;              /* the current job, published before generation */
    void *ctx;
    int n;
};

static void run_slice(struct workers *w, int t) {
    int per = (w->n + w->n_threads - 1) / w->n_threads;
    int begin = t * per, end = begin + per;
    if (end > w->n) end = w->n;
    if (begin < end) w->fn(w->ctx, begin, end, t);
}

/* Wait until the generation differs from seen (or stop); returns the new one. */
static unsigned wait_job(struct workers *w, unsigned seen) {
    for (int i = 0; i < WORKERS_SPIN; i++) {
        unsigned g = atomic_load_explicit(&w->generation, memory_order_acquire);
        if (g != seen || atomic_load(&w->stop)) return g;
        _mm_pause();
    }
    pthread_mutex_lock(&w->mu);
    atomic_fetch_add(&w->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&w->generation)) == seen && !atomic_load(&w->stop))
        pthread_cond_wait(&w->wake, &w->mu);
    atomic_fetch_sub(&w->sleepers, 1);
    pthread_mutex_unlock(&w->mu);
    return g;
}

/* Thread t is on `cpu`: if another pool thread is too, move to a CPU the
 * pool is not on (if the affinity mask has one). */
static void step_off_shared_cpu(struct workers *w, int t, int cpu) {
    bool shared = false;
    for (int i = 0; i < w->n_threads; i++) shared |= i != t && atomic_load_explicit(&w->cpu[i], memory_order_relaxed) == cpu;
    if (!shared) return;
    cpu_set_t all, free_cpus;
    if (sched_getaffinity(0, sizeof(all), &all) != 0) return;
    free_cpus = all;
    for (int i = 0; i < w->n_threads; i++) {
        const int c = atomic_load_explicit(&w->cpu[i], memory_order_relaxed);
        if (c >= 0 && c < CPU_SETSIZE) CPU_CLR(c, &free_cpus);
    }
    if (CPU_COUNT(&free_cpus) == 0) return;
    if (sched_setaffinity(0, sizeof(free_cpus), &free_cpus) == 0) (void)sched_setaffinity(0, sizeof(all), &all);
    atomic_store_explicit(&w->cpu[t], sched_getcpu(), memory_order_relaxed);
}

static void *worker_main(void *p) {
    struct worker_arg *a = p;
    struct workers *w = a->pool;
    unsigned seen = 0;
    for (unsigned jobs = 0;; jobs++) {
        seen = wait_job(w, seen);
        if (atomic_load(&w->stop)) break;
        const int cpu = sched_getcpu();
        atomic_store_explicit(&w->cpu[a->index], cpu, memory_order_relaxed);
        if (jobs % MOVE_EVERY == 0) step_off_shared_cpu(w, a->index, cpu);
        run_slice(w, a->index);
        atomic_fetch_sub_explicit(&w->pending, 1, memory_order_release);
    }
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
    w->cpu = calloc((size_t)n_threads, sizeof(*w->cpu));
    if (!w->threads || !w->args || !w->cpu) goto out_free;
    for (int i = 0; i < n_threads; i++) atomic_init(&w->cpu[i], -1);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
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
    free(w->cpu);
    free(w);
out_nomem:
    sp_fail(err, SP_ENOMEM, "workers: out of memory");
    return NULL;
}

void workers_free(struct workers *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, true);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->mu);
    for (int i = 1; i < w->n_threads; i++) pthread_join(w->threads[i - 1], NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    free(w->threads);
    free(w->args);
    free(w->cpu);
    free(w);
}

int workers_count(const struct workers *w) { return w->n_threads; }

void workers_run(struct workers *w, workers_fn fn, void *ctx, int n) {
    if (n <= 0) return;
    if (w->n_threads == 1 || n == 1) { fn(ctx, 0, n, 0); return; }
    w->fn = fn;
    w->ctx = ctx;
    w->n = n;
    atomic_store_explicit(&w->cpu[0], sched_getcpu(), memory_order_relaxed);
    atomic_store_explicit(&w->pending, w->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&w->generation, 1);   /* seq_cst: ordered before the sleepers check */
    if (atomic_load(&w->sleepers) > 0) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->wake);
        pthread_mutex_unlock(&w->mu);
    }
    run_slice(w, 0);
    /* Spin briefly, then yield: on an oversubscribed machine the worker we
     * wait for may need this very core to finish. */
    for (int spins = 0; atomic_load_explicit(&w->pending, memory_order_acquire) > 0; spins++) {
        if (spins < WORKERS_SPIN / 4) _mm_pause();
        else sched_yield();
    }
}
