/* progress.h - a progress display for long CLI work (bench, and later
 * quantize, sparsify, perplexity, loading big files), always on stderr, never
 * on stdout where results go.
 *   stderr is a terminal: one line rewritten in place ("\r", at most ~10
 *     times a second): label, percent, done/total units, rate, ETA; erased
 *     by progress_done so the result printed next starts on a clean line.
 *   otherwise (journald, CI, a pipe): a plain line every 5 s of work
 *     (SPARROW_PROGRESS_INTERVAL_S overrides), none for work that ends sooner.
 * SPARROW_PROGRESS=0 in the environment turns it off, =1 forces the terminal
 * form (tests). Low level: libc only. Thread-safety: one thread per object. */
#pragma once

struct progress;    /* opaque */

/* total: units expected (0: unknown, no percent or ETA); unit: "tok", "MiB".
 * label is copied. Returns NULL when out of memory or turned off; every
 * function accepts NULL and does nothing. */
struct progress *progress_start(const char *label, double total, const char *unit);
/* done: units finished so far (cumulative). */
void progress_update(struct progress *p, double done);
/* Ends the display (erases the terminal line) and frees p. */
void progress_done(struct progress *p);
