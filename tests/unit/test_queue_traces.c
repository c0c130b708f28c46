/* test_queue_traces.c - the fair-queuing policies on seeded random traces,
 * checked against the invariants and bounds of ../shared/research/
 * fair-scheduling.md sections 3.5, 5.3, 5.4 and 6.8, plus a crafted trace on
 * which lpm starves a client and vtc/dlpm do not.
 *
 * The simulator is the "abstract engine" of section 6.8: a KV capacity of M
 * tokens with VTC-A-style reservation (the running requests' prompts plus
 * their whole outputs, plus the candidate's, must fit in M), max_running,
 * stop-on-misfit, one token per running request per step, and a block index
 * (16 tokens a block) fed with a request's full prompt blocks when it
 * finishes; the index is unbounded or evicts unreferenced leaves LRU. Every
 * trace comes from a splitmix64 seed, so a failure names its seed.
 *
 * After every arrival and every charge (admission, each generated token) the
 * test reads queue_clients and records each client's normalized service S_i
 * and whether it is backlogged; for every pair of clients and every maximal
 * run of samples in which both are backlogged it checks that max - min of
 * S_f - S_g stays within B(1/w_f + 1/w_g) (vtc) or 2Q + B(1/w_f + 1/w_g)
 * (dlpm), with B = P_max + w_q R_max. R_max is, as in section 2, the most
 * output tokens one client's running requests can still produce, measured
 * at each admission: with max_running > 1 a client can hold several running
 * requests, and the longest single output is not enough (the test prints
 * how far the gap goes past a bound built from it).
 *
 * Also checked on every trace: each pick against a mirror of the policy
 * (6.8.1-3, tie-breaks of 6.4, the arrival-order fallback past 128 waiting),
 * the vtc lift and dlpm clamp on arrival, dlpm refills (only when no
 * backlogged client is positive, the same fewest rounds for every backlogged
 * client), -B < d <= Q w, vtc counters never decreasing, exact accounting
 * (6.8.6) and per-client token stats, and work conservation (6.8.5). fcfs
 * and lpm run the same traces for contrast; 6.8.7 (dlpm with a huge quantum
 * is lpm) and fractional weights and quanta have their own tests. */
#include "tests/unit/check.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "scheduler/queue.h"
#include "scheduler/request.h"

#define BS 16
#define MAXC 6
#define MAXP 3
#define MAX_PREFIX_BLOCKS 8
#define MAX_BLOCKS (MAX_PREFIX_BLOCKS + 4)
#define W_P 1.0
#define W_Q 2.0
#define LPM_SCAN 128            /* queue.c's LPM_MAX_SCAN: beyond it lpm/dlpm use arrival order */
#define TAIL_TOKEN (1 << 30)    /* tokens of the partial last block; never looked up */

/* --- PRNG ------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static int rng_int(uint64_t *s, int lo, int hi) { return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1)); }

static int rng_poisson(uint64_t *s, double lambda) {
    double limit = exp(-lambda), p = 1.0;
    int k = -1;
    do { k++; p *= rng_unit(s); } while (p > limit && k < 1000);
    return k;
}

/* --- block index ------------------------------------------------------------ */

/* Block ids are unique per chain position (a prefix block belongs to one
 * prefix, a request's own blocks to that request), so a block's id names its
 * whole chain and the index is a set of ids kept prefix-closed: a block goes
 * in after its parent, and only unreferenced leaves are evicted. */
struct index {
    int cap_blocks;             /* 0: unbounded */
    int n_ids;                  /* arrays below are indexed by block id < n_ids */
    uint8_t *present;
    int *parent, *children, *refs;
    uint64_t *last_use;
    int *list, n_present;       /* present ids, for eviction */
    uint64_t tick;
    int64_t evictions;
};

static void index_grow(struct index *x, int id) {
    if (id < x->n_ids) return;
    int n = x->n_ids ? x->n_ids : 1024;
    while (n <= id) n *= 2;
    x->present = realloc(x->present, (size_t)n);
    x->parent = realloc(x->parent, sizeof(int) * (size_t)n);
    x->children = realloc(x->children, sizeof(int) * (size_t)n);
    x->refs = realloc(x->refs, sizeof(int) * (size_t)n);
    x->last_use = realloc(x->last_use, sizeof(uint64_t) * (size_t)n);
    x->list = realloc(x->list, sizeof(int) * (size_t)n);
    if (!x->present || !x->parent || !x->children || !x->refs || !x->last_use || !x->list) abort();
    for (int i = x->n_ids; i < n; i++) {
        x->present[i] = 0;
        x->parent[i] = x->children[i] = x->refs[i] = 0;
        x->last_use[i] = 0;
    }
    x->n_ids = n;
}

static void index_free(struct index *x) {
    free(x->present);
    free(x->parent);
    free(x->children);
    free(x->refs);
    free(x->last_use);
    free(x->list);
    memset(x, 0, sizeof(*x));
}

static bool index_has(const struct index *x, int32_t id) { return id > 0 && id < x->n_ids && x->present[id]; }

/* cached_len of section 6.2: whole indexed blocks, at most floor((n-1)/BS). */
static int cached_len(void *ctx, const int32_t *t, int n) {
    const struct index *x = ctx;
    int j = 0, cap = (n - 1) / BS;
    while (j < cap && index_has(x, t[j * BS])) j++;
    return j * BS;
}

static void index_evict(struct index *x) {
    while (x->cap_blocks > 0 && x->n_present > x->cap_blocks) {
        int victim = -1;
        for (int k = 0; k < x->n_present; k++) {
            int id = x->list[k];
            if (x->children[id] || x->refs[id]) continue;
            if (victim < 0 || x->last_use[id] < x->last_use[x->list[victim]]) victim = k;
        }
        if (victim < 0) return;             /* everything is in use: over capacity for now */
        int id = x->list[victim];
        x->list[victim] = x->list[--x->n_present];
        x->present[id] = 0;
        if (x->parent[id]) x->children[x->parent[id]]--;
        x->evictions++;
    }
}

static void index_insert(struct index *x, const int *blocks, int nb) {
    for (int j = 0; j < nb; j++) {
        int id = blocks[j];
        index_grow(x, id);
        if (!x->present[id]) {
            x->present[id] = 1;
            x->parent[id] = j ? blocks[j - 1] : 0;
            x->children[id] = 0;
            if (j) x->children[blocks[j - 1]]++;
            x->list[x->n_present++] = id;
        }
        x->last_use[id] = ++x->tick;
    }
    index_evict(x);
}

/* --- traces ----------------------------------------------------------------- */

struct client_gen {
    double weight;
    double rate;                /* Poisson arrivals per step while on */
    bool onoff, on;
    double p_off, p_on;         /* per-step toggle probabilities */
    double p_burst;
    int n_prefix;
    int prefix_len[MAXP];
    int prefix_blocks[MAXP][MAX_PREFIX_BLOCKS];
};

struct trace {
    uint64_t seed;
    int n_clients;
    struct client_gen c[MAXC];
    int M, max_running, index_cap;
    int max_queue, max_queue_per_client;
    int steps;
    int all_at_once;            /* > 0: that many arrivals at step 0, none later */
};

/* Client weights: {1, 2, 3}, or fractional ones (any weight in (0, 1000]
 * is valid in an API key file). */
static const double int_weights[] = { 1, 2, 3 }, frac_weights[] = { 0.1, 0.7, 1.1, 1.3, 2.9 };

static void trace_make(struct trace *tr, uint64_t seed, bool frac) {
    uint64_t s = seed * 0x2545f4914f6cdd1dULL + 1;
    memset(tr, 0, sizeof(*tr));
    tr->seed = seed;
    tr->n_clients = rng_int(&s, 2, MAXC);
    static const int runs[] = { 1, 2, 4, 8, 16 };
    tr->max_running = runs[rng_int(&s, 0, 4)];
    tr->M = rng_int(&s, 300, 2500);
    tr->index_cap = rng_int(&s, 0, 1) ? 0 : rng_int(&s, 16, 256);
    tr->steps = rng_int(&s, 1500, 3000);
    tr->max_queue = rng_int(&s, 64, 256);
    tr->max_queue_per_client = rng_int(&s, 16, 64);
    /* Requests average ~110 prompt + ~32 output tokens, so about
     * min(max_running, M/150) run at once and finish every ~32 steps. */
    double conc = fmin(tr->max_running, tr->M / 150.0);
    double per_step = fmax(conc, 1.0) / 32.5;
    int next_block = 1;
    int n_over = 1 + (rng_unit(&s) < 0.3);
    for (int i = 0; i < tr->n_clients; i++) {
        struct client_gen *c = &tr->c[i];
        c->weight = frac ? frac_weights[rng_int(&s, 0, 4)] : int_weights[rng_int(&s, 0, 2)];
        if (i < n_over) c->rate = per_step * (1.05 + 0.5 * rng_unit(&s));    /* overloaded alone */
        else c->rate = per_step * (0.02 + 0.3 * rng_unit(&s));
        c->onoff = i > 0 && rng_unit(&s) < 0.5;
        c->on = !c->onoff || rng_unit(&s) < 0.5;
        c->p_off = 1.0 / rng_int(&s, 50, 600);
        c->p_on = 1.0 / rng_int(&s, 50, 600);
        c->p_burst = rng_unit(&s) < 0.5 ? 0.002 : 0.0;
        c->n_prefix = rng_int(&s, 1, MAXP);
        for (int p = 0; p < c->n_prefix; p++) {
            c->prefix_len[p] = rng_int(&s, 0, MAX_PREFIX_BLOCKS);
            for (int b = 0; b < c->prefix_len[p]; b++) c->prefix_blocks[p][b] = next_block++;
        }
    }
}

/* --- simulator -------------------------------------------------------------- */

struct sreq {
    struct request *r;
    int client, n_p, n_out, emitted, n_cached, nb;
    int blocks[MAX_BLOCKS];
    uint64_t seq;
    int next;                   /* waiting FIFO link, -1 */
};

struct stats {                  /* over all traces of one policy/quantum */
    double ratio;               /* max gap / bound */
    double ratio_s;             /* vtc: max gap / 2 max(w_p L_in, w_q M) */
    double ratio_single;        /* max gap / bound built from the longest single output */
    int n_single_exceeded;      /* traces where that bound is exceeded */
    int n_single_d;             /* dlpm: traces where a deficit goes to -B or below with that B */
    double d_low;               /* dlpm: max over traces of -min d / B */
    double d_high;              /* dlpm: max of d / (Q w) over backlogged samples */
    int64_t samples, admissions, rejected, misfits, evictions, long_queue;
    int64_t prompt, cached;
    uint64_t worst_seed;
};

struct sim {
    const struct trace *tr;
    enum queue_policy pol;
    double Q, w_c;
    struct queue *q;
    struct index ix;
    struct sreq *pool;
    int n_pool, cap_pool;
    int head[MAXC], tail[MAXC], n_wait[MAXC], n_run[MAXC];
    int *running, n_running;
    long reserved;
    uint64_t seq;
    int last_left;
    int next_block;
    double tot_uncached, tot_cached, tot_gen;
    /* bounds */
    int L_in, R_single, R_conc;
    bool in_run[MAXC][MAXC];
    double lo[MAXC][MAXC], hi[MAXC][MAXC], max_gap[MAXC][MAXC];
    double prev_counter[MAXC];
    double min_d, max_d_ratio;
    int64_t samples, admissions, rejected, misfits, long_queue;
    uint64_t *order;            /* seqs in admission order, when not NULL */
    int n_order;
    int fail_budget;            /* stop printing after a few failures */
};

#define SIM_CHECK(sim, cond, ...) do { if (!(cond)) { \
    if ((sim)->fail_budget-- > 0) { \
        fprintf(stderr, "  FAIL %s:%d: %s [%s Q=%g seed %llu] ", __FILE__, __LINE__, #cond, \
                queue_policy_name((sim)->pol), (sim)->Q, (unsigned long long)(sim)->tr->seed); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
    check_failed_now++; } } while (0)

/* Snapshot of the queue's clients, indexed by our client number. */
struct snap {
    bool known[MAXC];
    struct queue_client_stat st[MAXC];
};

static void snap_take(struct sim *sim, struct snap *sn) {
    struct queue_client_stat st[MAXC + 1];
    int n = queue_clients(sim->q, st, MAXC + 1);
    memset(sn->known, 0, sizeof(sn->known));
    SIM_CHECK(sim, n <= sim->tr->n_clients, "%d clients", n);
    for (int k = 0; k < n && k < MAXC; k++) {
        int i = st[k].name[1] - '0';
        if (i < 0 || i >= sim->tr->n_clients) { SIM_CHECK(sim, false, "client %s", st[k].name); continue; }
        sn->known[i] = true;
        sn->st[i] = st[k];
    }
}

static double snap_counter(const struct snap *sn, int i) { return sn->known[i] ? sn->st[i].counter : 0.0; }

static bool snap_backlogged(const struct snap *sn, int i) { return sn->known[i] && sn->st[i].waiting > 0; }

/* One sample after an arrival or a charge. */
static void sample(struct sim *sim) {
    struct snap sn;
    snap_take(sim, &sn);
    sim->samples++;
    const int nc = sim->tr->n_clients;
    double S[MAXC], sum = 0;
    bool back[MAXC];
    for (int i = 0; i < nc; i++) {
        S[i] = sn.known[i] ? sn.st[i].service : 0.0;
        back[i] = snap_backlogged(&sn, i);
        if (sn.known[i]) {
            SIM_CHECK(sim, sn.st[i].waiting == sim->n_wait[i] && sn.st[i].running == sim->n_run[i],
                      "client %d waiting %d/%d running %d/%d", i, sn.st[i].waiting, sim->n_wait[i],
                      sn.st[i].running, sim->n_run[i]);
            sum += sn.st[i].service * sn.st[i].weight;
        }
    }
    /* 6.6: exact accounting */
    double expect = W_P * sim->tot_uncached + sim->w_c * sim->tot_cached + W_Q * sim->tot_gen;
    SIM_CHECK(sim, fabs(sum - expect) <= 1e-6 * fmax(1.0, expect), "charged %.9g, expected %.9g", sum, expect);
    for (int i = 0; i < nc; i++) {
        double c = snap_counter(&sn, i);
        if (sim->pol == QUEUE_VTC) {        /* 6.8.2: counters never decrease */
            SIM_CHECK(sim, c >= sim->prev_counter[i], "client %d counter %.9g < %.9g", i, c, sim->prev_counter[i]);
        } else if (sim->pol == QUEUE_DLPM && back[i]) {     /* 6.8.3: -B < d <= Q w */
            const double w = sn.st[i].weight;
            SIM_CHECK(sim, c <= sim->Q * w * (1 + 1e-12), "client %d deficit %.9g > Q w %.9g", i, c, sim->Q * w);
            if (c < sim->min_d) sim->min_d = c;
            if (c / (sim->Q * w) > sim->max_d_ratio) sim->max_d_ratio = c / (sim->Q * w);
        }
        sim->prev_counter[i] = c;
    }
    /* 6.8.4: service gap over runs where both are backlogged */
    for (int f = 0; f < nc; f++)
        for (int g = f + 1; g < nc; g++) {
            if (!(back[f] && back[g])) { sim->in_run[f][g] = false; continue; }
            double d = S[f] - S[g];
            if (!sim->in_run[f][g]) {
                sim->in_run[f][g] = true;
                sim->lo[f][g] = sim->hi[f][g] = d;
            }
            if (d < sim->lo[f][g]) sim->lo[f][g] = d;
            if (d > sim->hi[f][g]) sim->hi[f][g] = d;
            if (sim->hi[f][g] - sim->lo[f][g] > sim->max_gap[f][g]) sim->max_gap[f][g] = sim->hi[f][g] - sim->lo[f][g];
        }
}

static int sreq_new(struct sim *sim) {
    if (sim->n_pool == sim->cap_pool) {
        sim->cap_pool = sim->cap_pool ? 2 * sim->cap_pool : 1024;
        sim->pool = realloc(sim->pool, sizeof(*sim->pool) * (size_t)sim->cap_pool);
        if (!sim->pool) abort();
    }
    return sim->n_pool++;
}

/* A request of client i arrives. */
static void arrive(struct sim *sim, int i, uint64_t *s) {
    const struct client_gen *c = &sim->tr->c[i];
    int k = sreq_new(sim);
    struct sreq *x = &sim->pool[k];
    memset(x, 0, sizeof(*x));
    x->client = i;
    x->next = -1;
    int p = rng_int(s, 0, c->n_prefix - 1);
    for (int b = 0; b < c->prefix_len[p]; b++) x->blocks[x->nb++] = c->prefix_blocks[p][b];
    int own = rng_int(s, 1, 4);
    for (int b = 0; b < own; b++) x->blocks[x->nb++] = sim->next_block++;
    int tail = rng_int(s, 0, BS - 1);
    x->n_p = x->nb * BS + tail;
    x->n_out = rng_int(s, 1, 64);
    int32_t tok[MAX_BLOCKS * BS + BS];
    for (int b = 0; b < x->nb; b++)
        for (int t = 0; t < BS; t++) tok[b * BS + t] = x->blocks[b];
    for (int t = 0; t < tail; t++) tok[x->nb * BS + t] = TAIL_TOKEN + t;
    struct req_params rp = { .sampling = sampler_default_params(), .max_tokens = x->n_out, .n_logprobs = -1 };
    char name[8];
    snprintf(name, sizeof(name), "c%d", i);
    struct sp_err err;
    x->r = req_create(tok, x->n_p, &rp, name, &err);
    if (!x->r) abort();

    struct snap before;
    const bool was_backlogged = sim->n_wait[i] > 0;
    if (!was_backlogged) snap_take(sim, &before);
    int rc = queue_push(sim->q, x->r, c->weight, &err);
    req_unref(x->r);        /* the queue holds its own reference now */
    if (rc != SP_OK) {
        SIM_CHECK(sim, rc == SP_EFULL, "push rc %d", rc);
        sim->rejected++;
        x->r = NULL;
        sim->n_pool--;
        return;
    }
    x->seq = sim->seq++;
    if (sim->n_wait[i]) sim->pool[sim->tail[i]].next = k; else sim->head[i] = k;
    sim->tail[i] = k;
    sim->n_wait[i]++;
    if (x->n_p > sim->L_in) sim->L_in = x->n_p;
    if (x->n_out > sim->R_single) sim->R_single = x->n_out;

    if (!was_backlogged && (sim->pol == QUEUE_VTC || sim->pol == QUEUE_DLPM)) {
        struct snap after;
        snap_take(sim, &after);
        double old = snap_counter(&before, i), now = snap_counter(&after, i);
        if (sim->pol == QUEUE_VTC) {
            /* 6.8.2: lifted to the least backlogged counter, or the last leaver's */
            double least = INFINITY;
            for (int j = 0; j < sim->tr->n_clients; j++)
                if (j != i && snap_backlogged(&before, j) && before.st[j].counter < least) least = before.st[j].counter;
            if (least == INFINITY && sim->last_left >= 0 && sim->last_left != i)
                least = snap_counter(&before, sim->last_left);
            double expect = least != INFINITY && least > old ? least : old;
            SIM_CHECK(sim, now == expect, "lift of client %d: %.9g, expected %.9g (old %.9g)", i, now, expect, old);
        } else {
            /* 5.3: the arrival clamp keeps debt and forfeits credit */
            SIM_CHECK(sim, now == fmin(old, 0.0), "clamp of client %d: %.9g from %.9g", i, now, old);
        }
    }
    sample(sim);
}

/* The request the policy should pick, from the post-peek state (section 6.4). */
static int expected_pick(struct sim *sim, const struct snap *sn) {
    const int nc = sim->tr->n_clients;
    const bool by_prefix = (sim->pol == QUEUE_LPM || sim->pol == QUEUE_DLPM) && queue_len(sim->q) <= LPM_SCAN;
    int best = -1, best_len = -1;
    double best_c = INFINITY;
    for (int i = 0; i < nc; i++) {
        if (!sim->n_wait[i]) continue;
        if (sim->pol == QUEUE_DLPM && !(snap_counter(sn, i) > 0)) continue;
        if (sim->pol == QUEUE_VTC) {
            double c = snap_counter(sn, i);
            int h = sim->head[i];
            if (best < 0 || c < best_c || (c == best_c && sim->pool[h].seq < sim->pool[best].seq)) {
                best = h;
                best_c = c;
            }
            continue;
        }
        for (int k = sim->head[i]; k >= 0; k = sim->pool[k].next) {
            const struct sreq *x = &sim->pool[k];
            int len = by_prefix ? cached_len(&sim->ix, req_tokens(x->r), x->n_p) : 0;
            if (best < 0 || len > best_len || (len == best_len && x->seq < sim->pool[best].seq)) {
                best = k;
                best_len = len;
            }
            if (!by_prefix) break;          /* arrival order: the client's head */
        }
    }
    return best;
}

/* 6.8.3: a refill happens only when no backlogged client is positive, and
 * gives every backlogged client the same number of quanta, the fewest that
 * make one of them positive. */
static void check_refill(struct sim *sim, const struct snap *pre, const struct snap *post) {
    const int nc = sim->tr->n_clients;
    bool any_pos = false, changed = false, any_back = false;
    for (int i = 0; i < nc; i++) {
        if (snap_backlogged(pre, i)) { any_back = true; any_pos |= snap_counter(pre, i) > 0; }
        changed |= snap_counter(post, i) != snap_counter(pre, i);
    }
    if (!changed) {
        SIM_CHECK(sim, !any_back || any_pos, "no refill although no backlogged client is positive");
        return;
    }
    SIM_CHECK(sim, !any_pos, "refill although a backlogged client is positive");
    double m = -1;
    bool pos_after = false;
    for (int i = 0; i < nc; i++) {
        double a = snap_counter(pre, i), b = snap_counter(post, i);
        if (!snap_backlogged(pre, i)) { SIM_CHECK(sim, a == b, "idle client %d refilled", i); continue; }
        const double qw = sim->Q * pre->st[i].weight;
        double rounds = (b - a) / qw;
        SIM_CHECK(sim, rounds >= 1 - 1e-9 && fabs(rounds - nearbyint(rounds)) <= 1e-9 * fmax(1, rounds),
                  "client %d refilled %.9g rounds", i, rounds);
        if (m < 0) m = nearbyint(rounds);
        SIM_CHECK(sim, nearbyint(rounds) == m, "client %d got %.9g rounds, another %.9g", i, rounds, m);
        pos_after |= b > 0;
    }
    /* the fewest rounds: one fewer would leave every backlogged client <= 0
     * (up to rounding, which may cost one more round) */
    for (int i = 0; i < nc; i++)
        if (snap_backlogged(pre, i)) {
            const double qw = sim->Q * pre->st[i].weight, a = snap_counter(pre, i);
            SIM_CHECK(sim, a + (m - 1) * qw <= 1e-9 * qw, "%g rounds, client %d positive after %g", m, i, m - 1);
        }
    SIM_CHECK(sim, pos_after, "nobody positive after a refill");
}

static bool fits(const struct sim *sim, const struct sreq *x) {
    return sim->n_running < sim->tr->max_running && sim->reserved + x->n_p + x->n_out <= sim->tr->M;
}

/* One admission pass: pick, admit while the pick fits, stop at a misfit. */
static void admit_pass(struct sim *sim) {
    bool misfit = false;
    for (;;) {
        struct snap pre, post;
        snap_take(sim, &pre);
        struct request *r = queue_peek(sim->q, cached_len, &sim->ix);
        if (!r) {
            SIM_CHECK(sim, queue_len(sim->q) == 0, "peek gave nothing with %d waiting", queue_len(sim->q));
            break;
        }
        snap_take(sim, &post);
        sim->long_queue += queue_len(sim->q) > LPM_SCAN;
        if (sim->pol == QUEUE_DLPM) check_refill(sim, &pre, &post);
        else
            for (int i = 0; i < sim->tr->n_clients; i++)
                SIM_CHECK(sim, snap_counter(&pre, i) == snap_counter(&post, i), "peek changed client %d", i);
        int i = req_client(r)[1] - '0';
        int k = -1, prev = -1;
        for (int j = sim->head[i]; j >= 0; prev = j, j = sim->pool[j].next)
            if (sim->pool[j].r == r) { k = j; break; }
        if (k < 0) { SIM_CHECK(sim, false, "peek gave a request not waiting"); break; }
        struct sreq *x = &sim->pool[k];
        /* 6.8.1-3: the policy's pick */
        int want = expected_pick(sim, &post);
        SIM_CHECK(sim, k == want, "picked seq %llu of client %d, expected seq %llu of client %d",
                  (unsigned long long)x->seq, i, want >= 0 ? (unsigned long long)sim->pool[want].seq : 0ULL,
                  want >= 0 ? sim->pool[want].client : -1);
        const double c = snap_counter(&post, i);
        if (sim->pol == QUEUE_VTC)
            for (int j = 0; j < sim->tr->n_clients; j++)
                SIM_CHECK(sim, !snap_backlogged(&post, j) || c <= post.st[j].counter,
                          "client %d admitted at counter %.9g above client %d's %.9g", i, c, j, post.st[j].counter);
        if (sim->pol == QUEUE_DLPM) SIM_CHECK(sim, c > 0, "client %d admitted at deficit %.9g", i, c);
        if (!fits(sim, x)) { misfit = true; sim->misfits++; break; }

        x->n_cached = cached_len(&sim->ix, req_tokens(r), x->n_p);
        queue_admit(sim->q, r, x->n_cached);
        sim->admissions++;
        if (sim->order) sim->order[sim->n_order++] = x->seq;
        if (prev < 0) sim->head[i] = x->next; else sim->pool[prev].next = x->next;
        if (sim->tail[i] == k) sim->tail[i] = prev;
        x->next = -1;
        if (--sim->n_wait[i] == 0) sim->last_left = i;
        sim->n_run[i]++;
        sim->running[sim->n_running++] = k;
        sim->reserved += x->n_p + x->n_out;
        sim->tot_uncached += x->n_p - x->n_cached;
        sim->tot_cached += x->n_cached;
        for (int b = 0; b < x->n_cached / BS; b++) {
            sim->ix.refs[x->blocks[b]]++;
            sim->ix.last_use[x->blocks[b]] = ++sim->ix.tick;
        }
        /* R_max: output the client's running requests can still produce */
        int rem = 0;
        for (int j = 0; j < sim->n_running; j++) {
            const struct sreq *y = &sim->pool[sim->running[j]];
            if (y->client == i) rem += y->n_out - y->emitted;
        }
        if (rem > sim->R_conc) sim->R_conc = rem;
        sample(sim);
    }
    /* 6.8.5: work conservation */
    SIM_CHECK(sim, queue_len(sim->q) == 0 || misfit, "%d waiting after a pass without a misfit", queue_len(sim->q));
}

static void decode_step(struct sim *sim) {
    for (int j = 0; j < sim->n_running; j++) {
        struct sreq *x = &sim->pool[sim->running[j]];
        queue_on_tokens(sim->q, x->r, 1);
        x->emitted++;
        sim->tot_gen++;
        sample(sim);
    }
    int kept = 0;
    for (int j = 0; j < sim->n_running; j++) {
        struct sreq *x = &sim->pool[sim->running[j]];
        if (x->emitted < x->n_out) { sim->running[kept++] = sim->running[j]; continue; }
        queue_on_finish(sim->q, x->r);
        sim->n_run[x->client]--;
        sim->reserved -= x->n_p + x->n_out;
        for (int b = 0; b < x->n_cached / BS; b++) sim->ix.refs[x->blocks[b]]--;
        index_insert(&sim->ix, x->blocks, x->nb);
        req_unref(x->r);
        x->r = NULL;
    }
    sim->n_running = kept;
}

static void run_trace(const struct trace *tr, enum queue_policy pol, double Q, struct stats *out, uint64_t *order) {
    struct sim *sim = calloc(1, sizeof(*sim));
    sim->tr = tr;
    sim->pol = pol;
    sim->Q = Q;
    sim->w_c = pol == QUEUE_DLPM ? 0.0 : W_P;
    sim->fail_budget = 5;
    sim->order = order;
    sim->last_left = -1;
    sim->min_d = INFINITY;
    sim->ix.cap_blocks = tr->index_cap;
    sim->running = malloc(sizeof(int) * (size_t)(tr->max_running + 1));
    int first_own = 1;
    for (int i = 0; i < tr->n_clients; i++)
        for (int p = 0; p < tr->c[i].n_prefix; p++) first_own += tr->c[i].prefix_len[p];
    sim->next_block = first_own;
    index_grow(&sim->ix, first_own);
    struct queue_config cfg = { pol, tr->max_queue, tr->max_queue_per_client, W_P, W_Q, -1.0, Q };
    struct sp_err err;
    sim->q = queue_create(&cfg, &err);
    CHECK(sim->q != NULL);

    uint64_t s = tr->seed ^ 0xd1b54a32d192ed03ULL;      /* arrivals: the same for every policy */
    struct client_gen gen[MAXC];
    memcpy(gen, tr->c, sizeof(gen));
    for (int t = 0; t < tr->steps || queue_len(sim->q) > 0 || sim->n_running > 0; t++) {
        if (tr->all_at_once) {
            for (int k = 0; t == 0 && k < tr->all_at_once; k++) arrive(sim, rng_int(&s, 0, tr->n_clients - 1), &s);
        } else if (t < tr->steps)
            for (int i = 0; i < tr->n_clients; i++) {
                struct client_gen *c = &gen[i];
                if (c->onoff) {
                    double u = rng_unit(&s);
                    if (c->on && u < c->p_off) c->on = false;
                    else if (!c->on && u < c->p_on) c->on = true;
                }
                int n = c->on ? rng_poisson(&s, c->rate) : 0;
                if (rng_unit(&s) < c->p_burst) n += rng_int(&s, 5, 20);
                for (int k = 0; k < n; k++) arrive(sim, i, &s);
            }
        admit_pass(sim);
        decode_step(sim);
        if (t > tr->steps + 100000) { CHECK(!"trace does not drain"); break; }
    }
    CHECK_EQ(queue_len(sim->q), 0);

    /* 6.8.6 per client: token stats match the simulator */
    struct snap sn;
    snap_take(sim, &sn);
    int64_t prompt[MAXC] = { 0 }, cached[MAXC] = { 0 }, output[MAXC] = { 0 };
    for (int k = 0; k < sim->n_pool; k++) {
        const struct sreq *x = &sim->pool[k];
        prompt[x->client] += x->n_p;
        cached[x->client] += x->n_cached;
        output[x->client] += x->n_out;
    }
    for (int i = 0; i < tr->n_clients; i++)
        if (sn.known[i]) {
            SIM_CHECK(sim, sn.st[i].prompt_tokens == prompt[i] && sn.st[i].cached_tokens == cached[i] &&
                      sn.st[i].output_tokens == output[i], "client %d token stats", i);
            SIM_CHECK(sim, sn.st[i].running == 0 && sn.st[i].waiting == 0, "client %d not drained", i);
        }

    /* 6.8.4: the bounds */
    const double P_max = fmax(W_P, sim->w_c) * sim->L_in;
    const double B = P_max + W_Q * sim->R_conc;
    const double B_single = P_max + W_Q * sim->R_single;
    const double slack = pol == QUEUE_DLPM ? 2 * Q : 0.0;
    double worst = 0, worst_single = 0, worst_s = 0;
    for (int f = 0; f < tr->n_clients; f++)
        for (int g = f + 1; g < tr->n_clients; g++) {
            const double inv = 1 / tr->c[f].weight + 1 / tr->c[g].weight;
            const double bound = slack + B * inv, gap = sim->max_gap[f][g];
            if (pol == QUEUE_VTC || pol == QUEUE_DLPM)
                SIM_CHECK(sim, gap <= bound * (1 + 1e-9), "clients %d,%d (w %g,%g): gap %.6g > bound %.6g", f, g,
                      tr->c[f].weight, tr->c[g].weight, gap, bound);
            worst = fmax(worst, gap / bound);
            worst_single = fmax(worst_single, gap / (slack + B_single * inv));
            worst_s = fmax(worst_s, gap / (2 * fmax(W_P * sim->L_in, W_Q * tr->M)));
        }
    if (pol == QUEUE_DLPM && sim->min_d != INFINITY) {
        SIM_CHECK(sim, sim->min_d > -B, "deficit %.9g <= -B = %.9g", sim->min_d, -B);
        out->d_low = fmax(out->d_low, -sim->min_d / B);
        out->d_high = fmax(out->d_high, sim->max_d_ratio);
        out->n_single_d += sim->min_d <= -B_single;
    }
    if (worst > out->ratio) { out->ratio = worst; out->worst_seed = tr->seed; }
    out->ratio_single = fmax(out->ratio_single, worst_single);
    out->ratio_s = fmax(out->ratio_s, worst_s);
    out->n_single_exceeded += worst_single > 1;
    out->samples += sim->samples;
    out->admissions += sim->admissions;
    out->rejected += sim->rejected;
    out->misfits += sim->misfits;
    out->long_queue += sim->long_queue;
    out->evictions += sim->ix.evictions;
    for (int i = 0; i < tr->n_clients; i++) { out->prompt += prompt[i]; out->cached += cached[i]; }

    queue_free(sim->q);
    index_free(&sim->ix);
    free(sim->running);
    free(sim->pool);
    free(sim);
}

#define N_TRACES 50

static void run_policy(enum queue_policy pol, double Q, bool frac, int n_traces, struct stats *st) {
    memset(st, 0, sizeof(*st));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t seed = 1; seed <= (uint64_t)n_traces; seed++) {
        struct trace tr;
        trace_make(&tr, seed + (frac ? 5000 : 0), frac);
        run_trace(&tr, pol, Q, st, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    char qs[16] = "";
    if (pol == QUEUE_DLPM) snprintf(qs, sizeof(qs), " Q=%g", Q);
    printf("  %s%s%s: gap/bound %.3f (seed %llu)", queue_policy_name(pol), qs, frac ? " (fractional weights)" : "",
           st->ratio, (unsigned long long)st->worst_seed);
    if (pol == QUEUE_VTC) printf(", gap/[S] 2max(w_p L_in, w_q M) %.3f", st->ratio_s);
    if (pol == QUEUE_DLPM) printf(", min d/B %.3f, max d/(Q w) %.3f", -st->d_low, st->d_high);
    printf("\n       with R_max = longest single output: gap/bound %.3f, exceeded in %d of %d traces",
           st->ratio_single, st->n_single_exceeded, n_traces);
    if (pol == QUEUE_DLPM) printf(", d <= -B in %d", st->n_single_d);
    printf("\n");
    printf("       %lld samples, %lld admissions (%lld picks past %d waiting), %lld misfits, %lld rejected, "
           "%lld evictions, cache hits %.1f%%, %.2f s\n",
           (long long)st->samples, (long long)st->admissions, (long long)st->long_queue, LPM_SCAN,
           (long long)st->misfits, (long long)st->rejected,
           (long long)st->evictions, 100.0 * (double)st->cached / (double)(st->prompt ? st->prompt : 1), secs);
    fflush(stdout);
}

static void test_vtc_traces(void) {
    struct stats st;
    run_policy(QUEUE_VTC, 256, false, N_TRACES, &st);
    CHECK(st.ratio <= 1.0);
}

static void test_dlpm_traces(void) {
    static const double quanta[] = { 32, 256, 4096 };
    for (int k = 0; k < 3; k++) {
        struct stats st;
        run_policy(QUEUE_DLPM, quanta[k], false, N_TRACES, &st);
        CHECK(st.ratio <= 1.0);
    }
}

/* Fractional weights and quanta: normalized charges and refills are no
 * longer exact in binary, and the same invariants must hold. */
static void test_fractional_weights(void) {
    struct stats st;
    run_policy(QUEUE_VTC, 256, true, 20, &st);
    CHECK(st.ratio <= 1.0);
    static const double quanta[] = { 0.3, 1, 2, 33.3, 256 };
    for (int k = 0; k < 5; k++) {
        run_policy(QUEUE_DLPM, quanta[k], true, 20, &st);
        CHECK(st.ratio <= 1.0);
    }
}

/* dlpm refill rounding: Q = 1 and weight 0.1 (both valid settings). After one
 * request of 1 prompt token and 16 output tokens the deficit is
 * 0.1 - 1 - 32 = -32.9; floor(32.9 / 0.1) + 1 = 329 rounds bring it to
 * exactly 0, not above, and peek used to return nothing with a request
 * waiting (the batcher then idles until the next wake-up). */
static void test_dlpm_refill_rounding(void) {
    struct queue_config cfg = { QUEUE_DLPM, 8, 8, W_P, W_Q, -1.0, 1.0 };
    struct sp_err err;
    struct queue *q = queue_create(&cfg, &err);
    struct req_params rp = { .sampling = sampler_default_params(), .max_tokens = 16, .n_logprobs = -1 };
    const int32_t tok[1] = { 7 };
    for (int k = 0; k < 3; k++) {
        struct request *r = req_create(tok, 1, &rp, "light", &err);
        CHECK_EQ(queue_push(q, r, 0.1, &err), SP_OK);
        req_unref(r);
        struct request *x = queue_peek(q, NULL, NULL);
        CHECK(x == r);
        if (!x) break;
        struct queue_client_stat st;
        CHECK_EQ(queue_clients(q, &st, 1), 1);
        CHECK(st.counter > 0 && st.counter <= 0.1 * (1 + 1e-9));
        queue_admit(q, x, 0);
        queue_on_tokens(q, x, 16);
        queue_on_finish(q, x);
        req_unref(x);
    }
    CHECK_EQ(queue_len(q), 0);
    queue_free(q);
}

/* fcfs and lpm on the same traces: picks, accounting and work conservation
 * (6.8.1, 5, 6); their gaps against the vtc bound are printed for contrast. */
static void test_fcfs_lpm_traces(void) {
    struct stats st;
    run_policy(QUEUE_FCFS, 256, false, N_TRACES, &st);
    run_policy(QUEUE_LPM, 256, false, N_TRACES, &st);
}

/* 6.8.7: with all arrivals at t = 0 and a huge quantum, dlpm admits in lpm's
 * order (under concurrency, eviction and the arrival-order fallback too). */
static void test_dlpm_huge_quantum_is_lpm(void) {
    struct stats st;
    memset(&st, 0, sizeof(st));
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct trace tr;
        trace_make(&tr, 1000 + seed, false);
        tr.all_at_once = seed % 4 ? 100 : 200;   /* some past the 128-waiting scan limit */
        tr.max_queue = tr.max_queue_per_client = 256;
        uint64_t a[256], b[256];
        memset(a, 0, sizeof(a));
        memset(b, 0, sizeof(b));
        const int64_t before = st.admissions;
        run_trace(&tr, QUEUE_LPM, 1, &st, a);
        run_trace(&tr, QUEUE_DLPM, 1e9, &st, b);
        CHECK_EQ(st.admissions - before, 2 * tr.all_at_once);
        CHECK(!memcmp(a, b, sizeof(a)));
    }
}

/* --- starvation ------------------------------------------------------------- */

/* Serial engine (max_running 1). Client A keeps a hot 8-block prefix and
 * always has 8 requests waiting (one new arrival per decision); client B
 * always has 4 waiting, each with its own 2 blocks (nothing cached). Each
 * request makes 16 tokens. Returns B's admissions; *first_b is the 1-based
 * decision of B's first admission (0: never); *gap the largest service gap
 * seen between the two (both are backlogged throughout). */
static int starve_run(enum queue_policy pol, double Q, int n_dec, int *first_b, double *gap) {
    struct queue_config cfg = { pol, 256, 64, W_P, W_Q, -1.0, Q > 0 ? Q : 256 };
    CHECK(pol != QUEUE_DLPM || Q > 0);
    struct sp_err err;
    struct queue *q = queue_create(&cfg, &err);
    if (!q) { CHECK(q != NULL); return -1; }
    struct index ix = { 0 };
    int next_block = 100;
    int prefix[8];
    for (int b = 0; b < 8; b++) prefix[b] = 1 + b;
    index_insert(&ix, prefix, 8);       /* A's prefix is hot from the start */
    struct req_params rp = { .sampling = sampler_default_params(), .max_tokens = 16, .n_logprobs = -1 };
    int32_t tok[10 * BS];
#define PUSH(client, nblk, pre) do { \
        int blk_[10], nb_ = 0; \
        if (pre) for (int b_ = 0; b_ < 8; b_++) blk_[nb_++] = prefix[b_]; \
        for (int b_ = 0; b_ < (nblk); b_++) blk_[nb_++] = next_block++; \
        for (int b_ = 0; b_ < nb_; b_++) for (int t_ = 0; t_ < BS; t_++) tok[b_ * BS + t_] = blk_[b_]; \
        struct request *r_ = req_create(tok, nb_ * BS, &rp, client, &err); \
        CHECK_EQ(queue_push(q, r_, 1.0, &err), SP_OK); \
        req_unref(r_); } while (0)
    for (int k = 0; k < 4; k++) PUSH("B", 2, false);  /* B first: ties would favour it */
    for (int k = 0; k < 8; k++) PUSH("A", 1, true);
    int n_b = 0;
    *first_b = 0;
    double lo = 0, hi = 0;
    for (int d = 1; d <= n_dec; d++) {
        struct request *r = queue_peek(q, cached_len, &ix);
        CHECK(r != NULL);
        if (!r) break;
        const int n = req_n_prompt(r);
        int blocks[10];
        for (int b = 0; b < n / BS; b++) blocks[b] = req_tokens(r)[b * BS];
        queue_admit(q, r, cached_len(&ix, req_tokens(r), n));
        queue_on_tokens(q, r, 16);
        queue_on_finish(q, r);
        index_insert(&ix, blocks, n / BS);
        const bool is_b = !strcmp(req_client(r), "B");
        req_unref(r);
        if (is_b) {
            n_b++;
            if (!*first_b) *first_b = d;
            PUSH("B", 2, false);
        } else {
            PUSH("A", 1, true);
        }
        struct queue_client_stat st[2];
        CHECK_EQ(queue_clients(q, st, 2), 2);
        CHECK(st[0].waiting > 0 && st[1].waiting > 0);
        double diff = st[0].service - st[1].service;
        lo = fmin(lo, diff);
        hi = fmax(hi, diff);
    }
#undef PUSH
    *gap = hi - lo;
    queue_free(q);
    index_free(&ix);
    return n_b;
}

static void test_lpm_starves_dlpm_vtc_do_not(void) {
    const int N = 400;
    int first;
    double gap;
    /* A costs 144 prompt (128 cached) + 32, B 32 + 32; L_in 144, R_max 16 */
    const double B_vtc = 144 + 2 * 16, B_dlpm = 144 + 2 * 16;
    int n_b = starve_run(QUEUE_LPM, 0, N, &first, &gap);
    printf("  lpm:  B admitted %d of %d decisions\n", n_b, N);
    CHECK_EQ(n_b, 0);
    n_b = starve_run(QUEUE_FCFS, 0, N, &first, &gap);
    printf("  fcfs: B admitted %d of %d, first at decision %d\n", n_b, N, first);
    CHECK(n_b > 0);
    n_b = starve_run(QUEUE_VTC, 0, N, &first, &gap);
    printf("  vtc:  B admitted %d of %d, first at decision %d, gap %.0f (bound %.0f)\n", n_b, N, first, gap,
           2 * B_vtc);
    CHECK(first >= 1 && first <= 10);
    CHECK(4 * n_b >= N);
    CHECK(gap <= 2 * B_vtc);
    static const double quanta[] = { 32, 256, 4096 };
    for (int k = 0; k < 3; k++) {
        const double Q = quanta[k];
        n_b = starve_run(QUEUE_DLPM, Q, N, &first, &gap);
        printf("  dlpm Q=%-4g: B admitted %d of %d, first at decision %d, gap %.0f (bound %.0f)\n", Q, n_b, N,
               first, gap, 2 * Q + 2 * B_dlpm);
        /* A spends its quantum at 48 per request before B, a newcomer at 0,
         * becomes eligible */
        CHECK(first >= 1 && first <= (int)ceil(Q / 48) + 1);
        if (Q == 256) CHECK(first <= 10);
        CHECK(4 * n_b >= N);
        CHECK(gap <= 2 * Q + 2 * B_dlpm);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);   /* keep report lines whole next to stderr's */
    RUN(test_lpm_starves_dlpm_vtc_do_not);
    RUN(test_dlpm_huge_quantum_is_lpm);
    RUN(test_vtc_traces);
    RUN(test_dlpm_traces);
    RUN(test_fractional_weights);
    RUN(test_dlpm_refill_rounding);
    RUN(test_fcfs_lpm_traces);
    return check_report();
}
