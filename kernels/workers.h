/* workers.h - a fixed pool of persistent threads that run one parallel loop
 * at a time. The calling thread takes part, so a pool of n threads starts
 * n - 1. Sized once from `threads`; never grows with traffic.
 *
 * Work is split into contiguous index ranges, one per thread; which thread
 * computes an index never changes a result (kernels give each output element
 * to exactly one thread and sum in a fixed order).
 * Thread-safety: one caller at a time (the engine thread). */
#pragma once
#include "config/err.h"

struct workers;             /* opaque */

/* fn(ctx, begin, end, thread_index) computes indices [begin, end). */
typedef void (*workers_fn)(void *ctx, int begin, int end, int thread);

struct workers *workers_create(int n_threads, struct sp_err *err);
void workers_free(struct workers *w);                    /* NULL is fine */
int workers_count(const struct workers *w);
/* Run fn over [0, n) split across the pool; returns when all are done. */
void workers_run(struct workers *w, workers_fn fn, void *ctx, int n);
