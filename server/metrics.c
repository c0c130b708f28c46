/* metrics.c - see metrics.h. */
#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/batcher.h"
#include "server/buildinfo.h"

static const char *const routes[] = { "completions", "chat", "models", "health", "metrics", "tokenize",
                                      "detokenize", "other" };
#define N_ROUTES (int)(sizeof(routes) / sizeof(routes[0]))
static const int statuses[] = { 200, 400, 401, 404, 405, 413, 429, 500, 503 };
#define N_STATUSES (int)(sizeof(statuses) / sizeof(statuses[0]))

static const double ttft_bounds[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
static const double tpot_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1 };
#define N_TTFT (int)(sizeof(ttft_bounds) / sizeof(ttft_bounds[0]))
#define N_TPOT (int)(sizeof(tpot_bounds) / sizeof(tpot_bounds[0]))

struct histogram {
    uint64_t buckets[16];   /* cumulative counts are computed at render */
    uint64_t count;
    double sum;
};

struct metrics {
    pthread_mutex_t mu;
    uint64_t requests[N_ROUTES][N_STATUSES + 1];   /* last column: any other status */
    struct histogram ttft, tpot;
};

struct metrics *metrics_create(void) {
    struct metrics *m = calloc(1, sizeof(*m));
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(struct metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_count_request(struct metrics *m, const char *route, int status) {
    int r = N_ROUTES - 1, s = N_STATUSES;
    for (int i = 0; i < N_ROUTES; i++) if (!strcmp(routes[i], route)) r = i;
    for (int i = 0; i < N_STATUSES; i++) if (statuses[i] == status) s = i;
    pthread_mutex_lock(&m->mu);
    m->requests[r][s]++;
    pthread_mutex_unlock(&m->mu);
}

static void observe(struct histogram *h, const double *bounds, int n, double v) {
    int i = 0;
    while (i < n && v > bounds[i]) i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

void metrics_observe(struct metrics *m, double ttft, double tpot) {
    pthread_mutex_lock(&m->mu);
    if (ttft >= 0) observe(&m->ttft, ttft_bounds, N_TTFT, ttft);
    if (tpot >= 0) observe(&m->tpot, tpot_bounds, N_TPOT, tpot);
    pthread_mutex_unlock(&m->mu);
}

struct out { char *p; size_t len, cap; };

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = o->p ? vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) { o->len += (size_t)n; return; }
        size_t cap = o->cap ? o->cap * 2 : 8192;
        char *p = realloc(o->p, cap);
        if (!p) return;
        o->p = p;
        o->cap = cap;
    }
}

static void put_histogram(struct out *o, const char *name, const char *help, const struct histogram *h,
                          const double *bounds, int n) {
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum += h->buckets[i];
        put(o, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)h->count, name,
        h->sum, name, (unsigned long long)h->count);
}

static void put_metric(struct out *o, const char *name, const char *type, const char *help, double v) {
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* Label values are client names: escape backslash, quote and newline. */
static void put_label(struct out *o, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') put(o, "\\%c", *s);
        else if (*s == '\n') put(o, "\\n");
        else put(o, "%c", *s);
    }
}

char *metrics_render(struct metrics *m, struct sched *s, const char *model) {
    struct out o = {0};
    struct sched_stats st;
    sched_get_stats(s, &st);
    pthread_mutex_lock(&m->mu);
    put(&o, "# HELP sparrow_requests_total HTTP requests by route and status.\n# TYPE sparrow_requests_total counter\n");
    for (int r = 0; r < N_ROUTES; r++)
        for (int k = 0; k <= N_STATUSES; k++) {
            if (!m->requests[r][k]) continue;
            if (k < N_STATUSES) put(&o, "sparrow_requests_total{route=\"%s\",status=\"%d\"} %llu\n", routes[r], statuses[k], (unsigned long long)m->requests[r][k]);
            else put(&o, "sparrow_requests_total{route=\"%s\",status=\"other\"} %llu\n", routes[r], (unsigned long long)m->requests[r][k]);
        }
    put_histogram(&o, "sparrow_time_to_first_token_seconds", "Time from submission to the first generated token.",
                  &m->ttft, ttft_bounds, N_TTFT);
    put_histogram(&o, "sparrow_time_per_output_token_seconds", "Mean time between later tokens of a request.",
                  &m->tpot, tpot_bounds, N_TPOT);
    pthread_mutex_unlock(&m->mu);

    put(&o, "# HELP sparrow_model_info The model being served.\n# TYPE sparrow_model_info gauge\nsparrow_model_info{model=\"");
    put_label(&o, model);
    put(&o, "\"} 1\n");
    char cpu[256];
    put(&o, "# HELP sparrow_build_info Version, git commit and CPU features of this binary.\n"
            "# TYPE sparrow_build_info gauge\nsparrow_build_info{version=\"%s\",commit=\"%s\",cpu=\"%s\"} 1\n",
        buildinfo_version(), buildinfo_commit(), buildinfo_cpu(cpu, sizeof(cpu), ","));
    put_metric(&o, "sparrow_running_sequences", "gauge", "Sequences generating now.", st.running);
    put_metric(&o, "sparrow_queued_requests", "gauge", "Requests waiting for admission.", st.queued);
    /* Per client (the fair scheduler's view): capped label set. */
    enum { MAX_CLIENT_SERIES = 256 };
    struct queue_client_stat *cs = malloc(sizeof(*cs) * MAX_CLIENT_SERIES);
    int n = cs ? queue_clients(sched_queue(s), cs, MAX_CLIENT_SERIES) : 0;
    static const struct { const char *name, *type, *help; } client_series[] = {
        { "sparrow_client_waiting_requests", "gauge", "Requests waiting, per client." },
        { "sparrow_client_running_requests", "gauge", "Requests generating, per client." },
        { "sparrow_client_service_total", "counter", "Service received (the fair policy's charge divided by the client's weight)." },
        { "sparrow_client_fair_score", "gauge", "The fair policy's per-client state: vtc virtual token counter or dlpm deficit." },
        { "sparrow_client_prompt_tokens_total", "counter", "Prompt tokens admitted, per client." },
        { "sparrow_client_cached_prompt_tokens_total", "counter", "Prompt tokens served from the prefix cache, per client." },
        { "sparrow_client_output_tokens_total", "counter", "Tokens generated, per client." },
        { "sparrow_client_prefix_hit_ratio", "gauge", "Cached share of the client's prompt tokens." },
    };
    for (size_t k = 0; k < sizeof(client_series) / sizeof(client_series[0]); k++) {
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", client_series[k].name, client_series[k].help, client_series[k].name,
            client_series[k].type);
        for (int i = 0; i < n; i++) {
            const struct queue_client_stat *c = &cs[i];
            const double v[] = { c->waiting, c->running, c->service, c->counter, (double)c->prompt_tokens,
                                 (double)c->cached_tokens, (double)c->output_tokens,
                                 c->prompt_tokens ? (double)c->cached_tokens / (double)c->prompt_tokens : 0.0 };
            put(&o, "%s{client=\"", client_series[k].name);
            put_label(&o, c->name);
            put(&o, "\"} %.17g\n", v[k]);
        }
    }
    free(cs);
    put_metric(&o, "sparrow_engine_steps_total", "counter", "Batched forward passes.", (double)st.steps);
    put_metric(&o, "sparrow_prompt_tokens_total", "counter", "Prompt tokens computed (prefix cache hits excluded).", (double)st.tokens_prefilled);
    put_metric(&o, "sparrow_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache.", (double)st.tokens_cached);
    put_metric(&o, "sparrow_generation_tokens_total", "counter", "Tokens generated.", (double)st.tokens_generated);
    double total = (double)(st.tokens_prefilled + st.tokens_cached);
    put_metric(&o, "sparrow_prefix_cache_hit_ratio", "gauge", "Cached share of all prompt tokens admitted.",
               total > 0 ? (double)st.tokens_cached / total : 0.0);
    put_metric(&o, "sparrow_preemptions_total", "counter", "Sequences preempted for lack of KV blocks.", (double)st.preemptions);
    put_metric(&o, "sparrow_kv_blocks", "gauge", "Blocks in the KV pool.", (double)st.kv.blocks_total);
    put_metric(&o, "sparrow_kv_blocks_used", "gauge", "KV blocks referenced by sequences.", (double)st.kv.blocks_used);
    put_metric(&o, "sparrow_kv_blocks_cached", "gauge", "Unreferenced KV blocks kept for prefix reuse.", (double)st.kv.blocks_cached);
    put_metric(&o, "sparrow_kv_evictions_total", "counter", "Cached KV blocks evicted.", (double)st.kv.evictions);
    static const char *const reasons[] = { "none", "stop", "length", "cancelled", "error" };
    put(&o, "# HELP sparrow_requests_finished_total Generations by how they ended.\n# TYPE sparrow_requests_finished_total counter\n");
    for (int i = 1; i < 5; i++) put(&o, "sparrow_requests_finished_total{reason=\"%s\"} %lld\n", reasons[i], (long long)st.finished[i]);
    return o.p;
}
