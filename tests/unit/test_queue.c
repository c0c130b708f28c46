/* test_queue.c - the fair-queuing policies on the worked example of
 * ../shared/research/fair-scheduling.md section 6.9 (a serial engine: each
 * admitted request runs to completion, then its prompt blocks are cached),
 * plus the queue's limits and its resume list. */
#include "tests/unit/check.h"

#include "scheduler/queue.h"
#include "scheduler/request.h"

#define BS 16
#define MAX_IDX 64

/* A fake prefix index: prompt prefixes (whole blocks) seen so far. */
struct index {
    int32_t *prefix[MAX_IDX];
    int len[MAX_IDX];
    int n;
};

static int cached_len(void *ctx, const int32_t *t, int n) {
    struct index *x = ctx;
    int j = 0, cap = (n - 1) / BS;
    for (; j < cap; j++) {
        bool found = false;
        for (int k = 0; k < x->n && !found; k++)
            found = x->len[k] == (j + 1) * BS && !memcmp(x->prefix[k], t, sizeof(int32_t) * (size_t)(j + 1) * BS);
        if (!found) break;
    }
    return j * BS;
}

static void index_prompt(struct index *x, const int32_t *t, int n) {
    for (int j = 1; j * BS <= n && x->n < MAX_IDX; j++) {
        if (cached_len(x, t, j * BS + 1) == j * BS) continue;  /* already there */
        x->prefix[x->n] = malloc(sizeof(int32_t) * (size_t)j * BS);
        memcpy(x->prefix[x->n], t, sizeof(int32_t) * (size_t)j * BS);
        x->len[x->n++] = j * BS;
    }
}

static void index_free(struct index *x) {
    for (int k = 0; k < x->n; k++) free(x->prefix[k]);
}

/* Requests of the example: block ids -> 16 tokens each of that id. */
struct spec { const char *name; const char *client; int blocks[5]; int n_blocks; };
static const struct spec specs[] = {
    { "A1", "A", { 10, 11, 12, 13, 101 }, 5 }, { "B1", "B", { 20, 21, 201 }, 3 }, { "C1", "C", { 301, 302 }, 2 },
    { "A2", "A", { 10, 11, 12, 13, 102 }, 5 }, { "A3", "A", { 10, 11, 12, 13, 103 }, 5 },
    { "A4", "A", { 10, 11, 12, 13, 104 }, 5 }, { "B2", "B", { 20, 21, 202 }, 3 }, { "C2", "C", { 303, 304 }, 2 },
};

static struct request *make(const struct spec *sp) {
    int32_t t[5 * BS];
    for (int b = 0; b < sp->n_blocks; b++)
        for (int k = 0; k < BS; k++) t[b * BS + k] = sp->blocks[b];
    struct req_params p = { .sampling = sampler_default_params(), .max_tokens = 16, .n_logprobs = -1 };
    struct sp_err err;
    return req_create(t, sp->n_blocks * BS, &p, sp->client, &err);
}

/* Run the example; order gets the admitted names, concatenated. */
static void run_example(enum queue_policy policy, double quantum, char *order, struct queue_client_stat *end) {
    struct queue_config cfg = { policy, 64, 64, 1.0, 2.0, -1.0, quantum };
    struct sp_err err;
    struct queue *q = queue_create(&cfg, &err);
    struct index x = { .n = 0 };
    struct request *reqs[8];
    for (int i = 0; i < 8; i++) reqs[i] = make(&specs[i]);
    for (int i = 0; i < 7; i++) CHECK_EQ(queue_push(q, reqs[i], 1.0, &err), SP_OK);
    order[0] = 0;
    for (int d = 0; d < 8; d++) {
        if (d == 5) CHECK_EQ(queue_push(q, reqs[7], 1.0, &err), SP_OK);     /* C2 arrives after decision 5 */
        struct request *r = queue_peek(q, cached_len, &x);
        CHECK(r != NULL);
        if (!r) break;
        int k = 0;
        while (reqs[k] != r) k++;
        strcat(order, specs[k].name);
        strcat(order, " ");
        queue_admit(q, r, cached_len(&x, req_tokens(r), req_n_tokens(r)));
        queue_on_tokens(q, r, 16);
        queue_on_finish(q, r);
        index_prompt(&x, req_tokens(r), req_n_tokens(r));
        req_unref(r);       /* the queue's reference, handed over at admit */
    }
    CHECK_EQ(queue_len(q), 0);
    CHECK(queue_peek(q, cached_len, &x) == NULL);
    CHECK_EQ(queue_clients(q, end, 3), 3);
    for (int i = 0; i < 8; i++) req_unref(reqs[i]);
    index_free(&x);
    queue_free(q);
}

static double counter_of(const struct queue_client_stat *st, const char *name) {
    for (int i = 0; i < 3; i++) if (!strcmp(st[i].name, name)) return st[i].counter;
    return NAN;
}

static double service_of(const struct queue_client_stat *st, const char *name) {
    for (int i = 0; i < 3; i++) if (!strcmp(st[i].name, name)) return st[i].service;
    return NAN;
}

static void test_fcfs_and_lpm_orders(void) {
    char order[64];
    struct queue_client_stat st[3];
    run_example(QUEUE_FCFS, 100, order, st);
    CHECK_STR(order, "A1 B1 C1 A2 A3 A4 B2 C2 ");
    run_example(QUEUE_LPM, 100, order, st);
    CHECK_STR(order, "A1 A2 A3 A4 B1 B2 C1 C2 ");
}

static void test_vtc_order_and_counters(void) {
    char order[64];
    struct queue_client_stat st[3];
    run_example(QUEUE_VTC, 100, order, st);
    CHECK_STR(order, "A1 B1 C1 B2 A2 A3 C2 A4 ");
    CHECK_NEAR(counter_of(st, "A"), 448, 1e-9);
    CHECK_NEAR(counter_of(st, "B"), 160, 1e-9);
    CHECK_NEAR(counter_of(st, "C"), 288, 1e-9);
}

static void test_dlpm_order_and_deficits(void) {
    char order[64];
    struct queue_client_stat st[3];
    run_example(QUEUE_DLPM, 100, order, st);
    CHECK_STR(order, "A1 B1 B2 C1 A2 A3 A4 C2 ");
    CHECK_NEAR(counter_of(st, "A"), 44, 1e-9);
    CHECK_NEAR(counter_of(st, "B"), -28, 1e-9);
    CHECK_NEAR(counter_of(st, "C"), 36, 1e-9);
    /* charged: uncached prompt (cached tokens cost 0) + 2 per output token */
    CHECK_NEAR(service_of(st, "A"), 256, 1e-9);
    CHECK_NEAR(service_of(st, "B"), 128, 1e-9);
    CHECK_NEAR(service_of(st, "C"), 128, 1e-9);
}

static void test_dlpm_quantum_extremes(void) {
    char order[64];
    struct queue_client_stat st[3];
    run_example(QUEUE_DLPM, 1e9, order, st);            /* huge quantum: LPM */
    CHECK_STR(order, "A1 A2 A3 A4 B1 B2 C1 C2 ");
    run_example(QUEUE_DLPM, 1, order, st);              /* tiny quantum: VTC-like on this trace */
    CHECK_STR(order, "A1 B1 C1 B2 A2 A3 C2 A4 ");
    CHECK_NEAR(counter_of(st, "A"), -47, 1e-9);
    CHECK_NEAR(counter_of(st, "B"), -47, 1e-9);
    CHECK_NEAR(counter_of(st, "C"), -63, 1e-9);
}

/* A weight-2 client gets twice the service of a weight-1 client while both
 * stay backlogged (vtc and dlpm), within the policies' bounds. */
static void test_weights_share_service(void) {
    for (int pol = QUEUE_VTC; pol <= QUEUE_DLPM; pol++) {
        struct queue_config cfg = { pol, 1000, 1000, 1.0, 2.0, -1.0, 64 };
        struct sp_err err;
        struct queue *q = queue_create(&cfg, &err);
        struct spec heavy = { "H", "heavy", { 500, 501 }, 2 }, light = { "L", "light", { 600, 601 }, 2 };
        for (int i = 0; i < 200; i++) {
            struct request *a = make(&heavy), *b = make(&light);
            CHECK_EQ(queue_push(q, a, 2.0, &err), SP_OK);
            CHECK_EQ(queue_push(q, b, 1.0, &err), SP_OK);
            req_unref(a);
            req_unref(b);
        }
        int admitted_heavy = 0, admitted_light = 0;
        for (int d = 0; d < 150; d++) {
            struct request *r = queue_peek(q, NULL, NULL);
            queue_admit(q, r, 0);
            queue_on_tokens(q, r, 16);
            queue_on_finish(q, r);
            if (!strcmp(req_client(r), "heavy")) admitted_heavy++; else admitted_light++;
            req_unref(r);
        }
        struct queue_client_stat st[2];
        CHECK_EQ(queue_clients(q, st, 2), 2);
        /* normalized service within one request's cost (64 per unit weight here) + quantum */
        CHECK(fabs(st[0].service - st[1].service) <= 2 * 64.0 + 2 * 64.0);
        CHECK(admitted_heavy > admitted_light * 17 / 10 && admitted_heavy < admitted_light * 23 / 10);
        queue_free(q);
    }
}

static void test_limits_and_resume(void) {
    struct queue_config cfg = { QUEUE_VTC, 3, 2, 1.0, 2.0, -1.0, 256 };
    struct sp_err err;
    struct queue *q = queue_create(&cfg, &err);
    struct request *r[4];
    for (int i = 0; i < 4; i++) r[i] = make(&specs[i]);
    CHECK_EQ(queue_push(q, r[0], 1, &err), SP_OK);      /* A */
    CHECK_EQ(queue_push(q, r[3], 1, &err), SP_OK);      /* A */
    struct request *a3 = make(&specs[4]);
    CHECK_EQ(queue_push(q, a3, 1, &err), SP_EFULL);     /* third A: per-client cap */
    CHECK(strstr(err.msg, "max_queue_per_client") != NULL);
    CHECK_EQ(queue_push(q, r[1], 1, &err), SP_OK);      /* B */
    CHECK_EQ(queue_push(q, r[2], 1, &err), SP_EFULL);   /* total cap */
    CHECK(strstr(err.msg, "max_queue") != NULL);
    struct request *first = queue_peek(q, NULL, NULL);
    queue_admit(q, first, 0);
    /* Preempted: it comes back ahead of everything and is not charged again. */
    struct queue_client_stat before[2], after[2];
    queue_clients(q, before, 2);
    queue_push_resume(q, first);
    CHECK(queue_peek(q, NULL, NULL) == first);
    queue_admit(q, first, 0);
    queue_clients(q, after, 2);
    CHECK_NEAR(after[0].counter, before[0].counter, 0);
    req_cancel(r[1]);
    struct request *c = queue_take_cancelled(q);
    CHECK(c == r[1]);
    req_unref(c);
    CHECK_EQ(queue_len(q), 1);
    req_unref(first);
    for (int i = 0; i < 4; i++) req_unref(r[i]);
    req_unref(a3);
    queue_free(q);
}

int main(void) {
    RUN(test_fcfs_and_lpm_orders);
    RUN(test_vtc_order_and_counters);
    RUN(test_dlpm_order_and_deficits);
    RUN(test_dlpm_quantum_extremes);
    RUN(test_weights_share_service);
    RUN(test_limits_and_resume);
    return check_report();
}
