/* metrics.h - Prometheus text exposition: counters and histograms the HTTP
 * layer records, plus the scheduler's and KV pool's own numbers at render
 * time. Fixed label sets (routes and status codes are enumerated), so memory
 * does not grow with traffic. Thread-safety: any thread (one mutex). */
#pragma once

struct metrics;             /* opaque */
struct sched;

struct metrics *metrics_create(void);
void metrics_free(struct metrics *m);                    /* NULL is fine */

/* A finished HTTP exchange: route name from a fixed list, HTTP status. */
void metrics_count_request(struct metrics *m, const char *route, int status);
/* A finished generation: seconds to first token, seconds per later token
 * (tpot < 0: fewer than two tokens). */
void metrics_observe(struct metrics *m, double ttft, double tpot);

/* The whole /metrics page (malloc'd). */
char *metrics_render(struct metrics *m, struct sched *s, const char *model);
