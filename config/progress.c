/* progress.c - see progress.h. */
#include "config/progress.h"

#include "config/clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TTY_INTERVAL_S 0.1
#define LOG_INTERVAL_S 5.0

struct progress {
    char label[64], unit[16];
    double total, t0, last, interval;
    bool tty, shown;
};

struct progress *progress_start(const char *label, double total, const char *unit) {
    const char *env = getenv("SPARROW_PROGRESS");
    if (env && !strcmp(env, "0")) return NULL;
    struct progress *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    snprintf(p->label, sizeof(p->label), "%s", label);
    snprintf(p->unit, sizeof(p->unit), "%s", unit);
    p->total = total;
    p->tty = (env && !strcmp(env, "1")) || isatty(STDERR_FILENO);
    const char *iv = getenv("SPARROW_PROGRESS_INTERVAL_S");
    p->interval = p->tty ? TTY_INTERVAL_S : iv && atof(iv) > 0 ? atof(iv) : LOG_INTERVAL_S;
    p->t0 = p->last = sp_now();
    return p;
}

void progress_update(struct progress *p, double done) {
    if (!p) return;
    const double now = sp_now(), dt = now - p->t0;
    if (now - p->last < p->interval && (p->shown || !p->tty)) return;
    p->last = now;
    p->shown = true;
    const double rate = dt > 0 ? done / dt : 0;
    char eta[32] = "";
    if (p->total > 0 && rate > 0 && done < p->total) {
        double s = (p->total - done) / rate;
        if (s < 60) snprintf(eta, sizeof(eta), ", ETA %.0f s", s);
        else snprintf(eta, sizeof(eta), ", ETA %d min %02d s", (int)(s / 60), (int)s % 60);
    }
    char pct[16] = "";
    if (p->total > 0) snprintf(pct, sizeof(pct), " %3.0f%%", 100.0 * done / p->total);
    fprintf(stderr, "%s%s:%s %.0f/%.0f %s, %.1f %s/s%s%s", p->tty ? "\r" : "sparrow: ", p->label, pct, done,
            p->total, p->unit, rate, p->unit, eta, p->tty ? "\033[K" : "\n");
    fflush(stderr);
}

void progress_done(struct progress *p) {
    if (!p) return;
    if (p->tty && p->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    free(p);
}
