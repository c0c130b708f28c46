/* test_batcher.c - continuous batching never changes a token: the same
 * requests run one at a time, all together, with tiny prefill chunks, with a
 * pool so small that sequences are preempted, and again with the prefix cache
 * warm, all give exactly the same tokens; prefix reuse is real; the pool's
 * blocks all come back. */
#include "tests/unit/check.h"
#include "tests/unit/rig.h"

#include "scheduler/batcher.h"
#include "scheduler/request.h"

#define N_REQ 6
#define MAX_GEN 40

static const char *prompts[N_REQ] = {
    "Once upon a time",
    "Lily and Ben were playing in the garden.",
    "The cat sat on the mat and",
    "One day, a little boy named Tom found a big red ball in the park and",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "Once upon a time, there was a little girl named Lily. She loved to",
};

struct outcome {
    int32_t ids[MAX_GEN];
    int n;
    enum req_finish finish;
    int n_cached;
};

static struct sched_config base_config(int kv_blocks) {
    struct sched_config c = {
        .max_running = 8, .max_batch_tokens = 256, .n_ctx = 256, .block_size = 16,
        .kv_blocks = kv_blocks, .threads = 2,
        .queue = { QUEUE_FCFS, 64, 64, 1.0, 2.0, -1.0, 256.0 },
    };
    return c;
}

static struct req_params params_for(int i) {
    struct req_params p = { .sampling = sampler_default_params(), .max_tokens = MAX_GEN - (i % 3) * 7,
                            .n_logprobs = -1 };
    if (i % 2 == 0) p.sampling.temperature = 0;     /* greedy */
    else p.sampling.seed = 1000 + (uint64_t)i;      /* seeded sampling: the rng must survive preemption */
    return p;
}

static struct request *make_request(struct rig *r, int i) {
    int32_t ids[256];
    struct sp_err err;
    int n = tok_encode(r->tok, prompts[i], strlen(prompts[i]), true, ids, 256, &err);
    struct req_params p = params_for(i);
    return req_create(ids, n, &p, i % 2 ? "even" : "odd", &err);
}

static void collect(struct request *q, struct outcome *o) {
    struct req_view v;
    req_get_view(q, &v);
    o->n = v.n_generated;
    o->finish = v.finish;
    o->n_cached = v.n_cached;
    for (int k = 0; k < v.n_generated && k < MAX_GEN; k++) {
        struct req_token t;
        CHECK(req_get_token(q, k, &t));
        o->ids[k] = t.id;
    }
}

/* Step until every request finishes (bounded), checking invariants as it goes. */
static void drain(struct sched *s, struct request **reqs, int n) {
    struct sp_err err;
    for (int step = 0; step < 5000; step++) {
        int done = 0;
        for (int i = 0; i < n; i++) {
            struct req_view v;
            req_get_view(reqs[i], &v);
            done += v.finish != REQ_FINISH_NONE;
        }
        if (done == n) return;
        CHECK(sched_step(s, &err) >= 0);
        if (sched_check(s, &err) != SP_OK) { fprintf(stderr, "  %s\n", err.msg); CHECK(0); return; }
    }
    CHECK(!"requests did not finish in 5000 steps");
}

/* Run all requests; together = submitted at once, else one after another. */
static void run_all(struct rig *r, struct sched *s, bool together, struct outcome *out) {
    struct request *reqs[N_REQ];
    struct sp_err err;
    for (int i = 0; i < N_REQ; i++) reqs[i] = make_request(r, i);
    if (together) {
        for (int i = 0; i < N_REQ; i++) CHECK_EQ(sched_submit(s, reqs[i], &err), SP_OK);
        drain(s, reqs, N_REQ);
    } else {
        for (int i = 0; i < N_REQ; i++) {
            CHECK_EQ(sched_submit(s, reqs[i], &err), SP_OK);
            drain(s, &reqs[i], 1);
        }
    }
    for (int i = 0; i < N_REQ; i++) {
        collect(reqs[i], &out[i]);
        req_unref(reqs[i]);
    }
}

static void expect_same(const struct outcome *a, const struct outcome *b, const char *what) {
    int bad = 0;
    for (int i = 0; i < N_REQ; i++) {
        bool same = a[i].n == b[i].n && a[i].finish == b[i].finish && !memcmp(a[i].ids, b[i].ids, sizeof(int32_t) * (size_t)a[i].n);
        if (!same) fprintf(stderr, "  %s: request %d differs (%d vs %d tokens)\n", what, i, a[i].n, b[i].n);
        bad += !same;
    }
    CHECK_EQ(bad, 0);
}

static void expect_pool_empty(struct sched *s) {
    struct sched_stats st;
    struct sp_err err;
    sched_get_stats(s, &st);
    CHECK_EQ(st.kv.blocks_used, 0);
    CHECK_EQ(st.running, 0);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.kv.blocks_used + st.kv.blocks_cached <= st.kv.blocks_total, 1);
    CHECK_EQ(sched_check(s, &err), SP_OK);
}

static void run_equivalence(const char *model) {
    struct rig r;
    CHECK(rig_open(&r, model, 1, 16, 16));  /* model + tokenizer; the scheduler has its own pool */
    if (!r.m) return;
    struct sp_err err;
    struct outcome ref[N_REQ], got[N_REQ];

    struct sched_config c = base_config(256);
    c.max_running = 1;
    struct sched *s = sched_create(r.m, r.tok, &c, &err);
    CHECK(s != NULL);
    run_all(&r, s, false, ref);                     /* (a) one at a time, cold cache each */
    for (int i = 0; i < N_REQ; i++) CHECK(ref[i].n >= 1);
    expect_pool_empty(s);
    sched_free(s);

    c = base_config(256);
    s = sched_create(r.m, r.tok, &c, &err);
    run_all(&r, s, true, got);                      /* (b) all together */
    expect_same(ref, got, "batched");
    expect_pool_empty(s);
    run_all(&r, s, true, got);                      /* (e) again, prefix cache warm */
    expect_same(ref, got, "warm cache");
    /* Warm: every full block of each prompt but the last token was indexed by
     * the first run, so exactly that much is served from the cache. */
    int hits = 0;
    for (int i = 0; i < N_REQ; i++) {
        int32_t ids[256];
        int n = tok_encode(r.tok, prompts[i], strlen(prompts[i]), true, ids, 256, &err);
        CHECK_EQ(got[i].n_cached, (n - 1) / 16 * 16);
        hits += got[i].n_cached > 0;
    }
    CHECK(hits >= 2);
    expect_pool_empty(s);
    sched_free(s);

    c = base_config(256);
    c.max_batch_tokens = 5;                         /* (c) chunked prefill, 5 tokens a step */
    s = sched_create(r.m, r.tok, &c, &err);
    run_all(&r, s, true, got);
    expect_same(ref, got, "chunked");
    expect_pool_empty(s);
    sched_free(s);

    c = base_config(12);                            /* (d) 12 blocks for 6 requests of up to 5 blocks */
    s = sched_create(r.m, r.tok, &c, &err);
    run_all(&r, s, true, got);
    expect_same(ref, got, "preempted");
    struct sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.preemptions > 0);
    fprintf(stderr, "  %s: %lld preemptions, %lld evictions with a 12-block pool\n", model,
            (long long)st.preemptions, (long long)st.kv.evictions);
    expect_pool_empty(s);
    sched_free(s);
    rig_close(&r);
}

static void test_equivalence_stories260K(void) { run_equivalence("stories260K-q4_k_m.gguf"); }
static void test_equivalence_synth15M(void) { run_equivalence("synth15M-q4_0.gguf"); }

/* A request sharing a 512-token prefix with an earlier one prefills only
 * the uncached rest. */
static void test_prefix_reuse_counters(void) {
    struct rig r;
    CHECK(rig_open(&r, "synth15M-q4_0.gguf", 1, 16, 16));
    if (!r.m) return;
    struct sp_err err;
    struct sched_config c = base_config(128);
    c.n_ctx = 1024;
    c.max_batch_tokens = 512;
    struct sched *s = sched_create(r.m, r.tok, &c, &err);
    CHECK(s != NULL);
    int32_t ids[600];
    for (int i = 0; i < 600; i++) ids[i] = 100 + (i * 37) % 20000;
    ids[0] = 1;
    struct req_params p = params_for(0);
    p.max_tokens = 4;
    struct request *a = req_create(ids, 530, &p, "a", &err);
    CHECK_EQ(sched_submit(s, a, &err), SP_OK);
    drain(s, &a, 1);
    struct sched_stats before, after;
    sched_get_stats(s, &before);
    for (int i = 512; i < 600; i++) ids[i] = 7 + i;     /* same 512-token prefix, different tail */
    struct request *b = req_create(ids, 560, &p, "b", &err);
    CHECK_EQ(sched_submit(s, b, &err), SP_OK);
    drain(s, &b, 1);
    sched_get_stats(s, &after);
    struct req_view v;
    req_get_view(b, &v);
    CHECK_EQ(v.n_cached, 512);
    CHECK_EQ(after.tokens_prefilled - before.tokens_prefilled, 560 - 512);
    CHECK_EQ(after.tokens_cached - before.tokens_cached, 512);
    req_unref(a);
    req_unref(b);
    expect_pool_empty(s);
    sched_free(s);
    rig_close(&r);
}

/* Cancelled requests (queued or running) free everything; submissions that
 * can never fit are refused at once with a reason. */
static void test_cancel_and_admission_limits(void) {
    struct rig r;
    CHECK(rig_open(&r, "stories260K-f32.gguf", 1, 16, 16));
    if (!r.m) return;
    struct sp_err err;
    struct sched_config c = base_config(32);
    c.max_running = 2;
    c.queue.max_queue_per_client = 3;
    struct sched *s = sched_create(r.m, r.tok, &c, &err);
    struct request *reqs[5];
    for (int i = 0; i < 5; i++) {
        reqs[i] = make_request(&r, 0);
        int rc = sched_submit(s, reqs[i], &err);
        if (i < 3) CHECK_EQ(rc, SP_OK);
        else { CHECK_EQ(rc, SP_EFULL); CHECK(strstr(err.msg, "max_queue_per_client") != NULL); }
    }
    CHECK(sched_step(s, &err) > 0);         /* two running, one queued */
    req_cancel(reqs[0]);
    req_cancel(reqs[2]);
    drain(s, reqs, 3);
    struct req_view v;
    req_get_view(reqs[0], &v);
    CHECK_EQ(v.finish, REQ_FINISH_CANCELLED);
    req_get_view(reqs[2], &v);
    CHECK_EQ(v.finish, REQ_FINISH_CANCELLED);
    CHECK_EQ(v.n_generated, 0);
    req_get_view(reqs[1], &v);
    CHECK(v.finish == REQ_FINISH_LENGTH || v.finish == REQ_FINISH_STOP);
    expect_pool_empty(s);

    int32_t ids[300] = {1};
    struct req_params p = params_for(0);
    p.max_tokens = 200;
    struct request *big = req_create(ids, 100, &p, "x", &err);
    CHECK_EQ(sched_submit(s, big, &err), SP_ERANGE);       /* 300 > ctx 256 */
    CHECK(strstr(err.msg, "context") != NULL);
    req_unref(big);
    p.max_tokens = 10;
    ids[5] = 512;
    big = req_create(ids, 10, &p, "x", &err);
    CHECK_EQ(sched_submit(s, big, &err), SP_EINVAL);       /* token outside the vocab */
    req_unref(big);
    for (int i = 0; i < 5; i++) req_unref(reqs[i]);
    sched_free(s);

    c = base_config(4);                                   /* 64 tokens of pool */
    s = sched_create(r.m, r.tok, &c, &err);
    p.max_tokens = 60;
    ids[5] = 5;
    big = req_create(ids, 10, &p, "x", &err);
    CHECK_EQ(sched_submit(s, big, &err), SP_ERANGE);
    CHECK(strstr(err.msg, "pool") != NULL);
    req_unref(big);
    sched_drain(s);
    p.max_tokens = 5;
    big = req_create(ids, 10, &p, "x", &err);
    CHECK_EQ(sched_submit(s, big, &err), SP_ESHUTDOWN);
    req_unref(big);
    sched_free(s);
    rig_close(&r);
}

int main(void) {
    RUN(test_equivalence_stories260K);
    RUN(test_equivalence_synth15M);
    RUN(test_prefix_reuse_counters);
    RUN(test_cancel_and_admission_limits);
    return check_report();
}
