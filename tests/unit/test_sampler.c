/* test_sampler.c - the sampler chain: greedy, penalties, top-k/top-p/min-p,
 * temperature, and the seeded draw. Each test crafts logits so that the stage
 * under test changes the outcome, so a stage that does nothing fails. */
#include "engine/sampler.h"

#include "tests/unit/check.h"

/* Every stage off; tests switch on the one they look at. */
static struct sampler_params params_off(float temperature) {
    struct sampler_params p = sampler_default_params();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = 0;
    p.seed = 1234;
    return p;
}

static struct sampler *make(const struct sampler_params *p, int32_t n_vocab) {
    struct sp_err err = {0};
    struct sampler *s = sampler_create(p, n_vocab, &err);
    if (!s) fprintf(stderr, "  sampler_create: %s\n", err.msg);
    return s;
}

/* Deterministic pseudo-random logits in [-4, 4), independent of the sampler. */
static void fill_logits(float *l, int32_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (int32_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        l[i] = (float)((x >> 8) & 0xffff) / 65536.0f * 8.0f - 4.0f;
    }
}

static int32_t argmax(const float *l, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

/* Count draws per token into hist[0..n). */
static void histogram(struct sampler *s, const float *l, int32_t n, int draws, int *hist) {
    memset(hist, 0, (size_t)n * sizeof(*hist));
    for (int i = 0; i < draws; i++) {
        int32_t t = sampler_sample(s, l);
        if (t >= 0 && t < n) hist[t]++;
    }
}

static void softmax_ref(const float *l, int32_t n, float temp, double *out) {
    double max = l[0], sum = 0;
    for (int32_t i = 1; i < n; i++) if (l[i] > max) max = l[i];
    for (int32_t i = 0; i < n; i++) { out[i] = exp((l[i] - max) / temp); sum += out[i]; }
    for (int32_t i = 0; i < n; i++) out[i] /= sum;
}

static void test_defaults(void) {
    struct sampler_params p = sampler_default_params();
    CHECK_NEAR(p.temperature, 0.8, 1e-6);
    CHECK_EQ(p.top_k, 40);
    CHECK_NEAR(p.top_p, 0.95, 1e-6);
    CHECK_NEAR(p.min_p, 0.05, 1e-6);
    CHECK_NEAR(p.repeat_penalty, 1.0, 0);
    CHECK_EQ(p.penalty_last_n, 64);
}

static void test_create_rejects_bad_params(void) {
    struct sp_err err = {0};
    struct sampler_params p;

    p = params_off(1.0f); p.temperature = NAN;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.temperature = INFINITY; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.top_p = NAN; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.min_p = NAN; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.repeat_penalty = 0.0f; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.repeat_penalty = -1.1f; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.frequency_penalty = NAN; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.penalty_last_n = -1; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); p.penalty_last_n = SAMPLER_MAX_LAST_N + 1; err.code = 0;
    CHECK(sampler_create(&p, 10, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    p = params_off(1.0f); err.code = 0;
    CHECK(sampler_create(&p, 0, &err) == NULL); CHECK_EQ(err.code, SP_EINVAL);
    CHECK(sampler_create(NULL, 10, &err) == NULL);

    /* The edges that are valid: the largest window, negative penalties
     * (OpenAI allows them), top_p <= 0 and min_p > 1 (llama.cpp keeps one). */
    p = params_off(1.0f);
    p.penalty_last_n = SAMPLER_MAX_LAST_N;
    p.frequency_penalty = -0.5f;
    p.top_p = 0.0f;
    p.min_p = 2.0f;
    struct sampler *s = sampler_create(&p, 10, &err);
    CHECK(s != NULL);
    sampler_free(s);
    sampler_free(NULL);
}

static void test_greedy(void) {
    const float l[5] = { 0.1f, 2.0f, -1.0f, 1.9f, 2.0f - 1e-6f };
    const float tie[4] = { 1.0f, 3.0f, 3.0f, 2.0f };
    const float neg[3] = { -5.0f, -3.0f, -3.0f };
    for (int t = 0; t < 2; t++) {
        struct sampler_params p = params_off(t == 0 ? 0.0f : -1.0f);
        struct sampler *s = make(&p, 5);
        CHECK(s);
        if (!s) return;
        for (int i = 0; i < 10; i++) CHECK_EQ(sampler_sample(s, l), 1);
        sampler_free(s);
        p = params_off(0.0f);
        s = make(&p, 4);
        CHECK_EQ(sampler_sample(s, tie), 1);       /* tie between 1 and 2: lower id */
        sampler_free(s);
        s = make(&p, 3);
        CHECK_EQ(sampler_sample(s, neg), 1);
        sampler_free(s);
    }
}

static void test_repeat_penalty_window(void) {
    /* 2.0 / 1.25 = 1.6 < 1.9: token 0 loses while it is in the window. */
    float l[10] = { 2.0f, 1.9f };
    struct sampler_params p = params_off(0.0f);
    p.repeat_penalty = 1.25f;
    p.penalty_last_n = 3;
    struct sampler *s = make(&p, 10);
    if (!s) { CHECK(0); return; }
    CHECK_EQ(sampler_sample(s, l), 0);           /* nothing recent yet */
    sampler_accept(s, 0);
    CHECK_EQ(sampler_sample(s, l), 1);           /* penalized */
    sampler_accept(s, 5);
    sampler_accept(s, 6);
    CHECK_EQ(sampler_sample(s, l), 1);           /* 0 is still one of the last 3 */
    sampler_accept(s, 7);
    CHECK_EQ(sampler_sample(s, l), 0);           /* 0 fell out of the window */
    sampler_accept(s, 0);
    CHECK_EQ(sampler_sample(s, l), 1);           /* and back in */
    sampler_free(s);

    /* Negative logits are multiplied: -1.0 * 1.25 = -1.25 < -1.1. Dividing
     * would give -0.8 and keep token 0. */
    float neg[10] = { -1.0f, -1.1f, -9, -9, -9, -9, -9, -9, -9, -9 };
    s = make(&p, 10);
    if (!s) { CHECK(0); return; }
    CHECK_EQ(sampler_sample(s, neg), 0);
    sampler_accept(s, 0);
    CHECK_EQ(sampler_sample(s, neg), 1);
    sampler_free(s);

    /* penalty_last_n = 0 switches penalties off even with a strong penalty. */
    p.penalty_last_n = 0;
    p.repeat_penalty = 100.0f;
    s = make(&p, 10);
    if (!s) { CHECK(0); return; }
    sampler_accept(s, 0);
    CHECK_EQ(sampler_sample(s, l), 0);
    sampler_free(s);
}

/* Greedy pick after accepting token 0 `times` times, with logits {3, rival}. */
static int32_t pick_after(float freq, float pres, int32_t last_n, int times, int then_other,
                          float rival) {
    float l[8] = { 3.0f, rival, -5, -5, -5, -5, -5, -5 };
    struct sampler_params p = params_off(0.0f);
    p.frequency_penalty = freq;
    p.presence_penalty = pres;
    p.penalty_last_n = last_n;
    struct sampler *s = make(&p, 8);
    if (!s) return -1;
    for (int i = 0; i < times; i++) sampler_accept(s, 0);
    for (int i = 0; i < then_other; i++) sampler_accept(s, 7);
    int32_t t = sampler_sample(s, l);
    sampler_free(s);
    return t;
}

static void test_frequency_presence(void) {
    /* frequency 0.5, count 3: logit 0 becomes exactly 1.5. */
    CHECK_EQ(pick_after(0.5f, 0.0f, 16, 3, 0, 1.49f), 0);
    CHECK_EQ(pick_after(0.5f, 0.0f, 16, 3, 0, 1.51f), 1);
    /* presence 0.7 counts once however often the token occurred: 2.3. */
    CHECK_EQ(pick_after(0.0f, 0.7f, 16, 3, 0, 2.29f), 0);
    CHECK_EQ(pick_after(0.0f, 0.7f, 16, 3, 0, 2.31f), 1);
    /* both: 3 - 3 * 0.5 - 0.7 = 0.8. */
    CHECK_EQ(pick_after(0.5f, 0.7f, 16, 3, 0, 0.79f), 0);
    CHECK_EQ(pick_after(0.5f, 0.7f, 16, 3, 0, 0.81f), 1);
    /* The count is over the window only: last_n 2 after 0,0,0,7 holds one 0,
     * so 3 - 1.0 = 2.0 (a stale count of 3 would give 0). */
    CHECK_EQ(pick_after(1.0f, 0.0f, 2, 3, 1, 1.99f), 0);
    CHECK_EQ(pick_after(1.0f, 0.0f, 2, 3, 1, 2.01f), 1);
    /* A negative frequency penalty rewards repetition. */
    CHECK_EQ(pick_after(-1.0f, 0.0f, 16, 1, 0, 3.9f), 0);
}

static void test_top_k_1_is_greedy(void) {
    enum { N = 1000 };
    static float l[N];
    fill_logits(l, N, 7);
    const int32_t want = argmax(l, N);
    const float temps[] = { 0.3f, 1.0f, 5.0f, 100.0f };
    for (size_t t = 0; t < sizeof(temps) / sizeof(temps[0]); t++) {
        struct sampler_params p = params_off(temps[t]);
        p.top_k = 1;
        p.seed = 99 + t;
        struct sampler *s = make(&p, N);
        if (!s) { CHECK(0); return; }
        int bad = 0;
        for (int i = 0; i < 200; i++) bad += sampler_sample(s, l) != want;
        CHECK_EQ(bad, 0);
        sampler_free(s);
    }
}

/* Greedy takes a path of its own (no candidate copy); it must pick what the
 * full chain's top-k = 1 picks from the same penalised values, with NaN
 * logits, exact ties and every penalty on, as the window fills and slides. */
static void test_greedy_matches_chain(void) {
    enum { N = 3000 };
    static float l[N];
    struct sampler_params pg = params_off(0.0f), pc = params_off(1.0f);
    pg.repeat_penalty = pc.repeat_penalty = 1.3f;
    pg.frequency_penalty = pc.frequency_penalty = 0.2f;
    pg.presence_penalty = pc.presence_penalty = 0.1f;
    pg.penalty_last_n = pc.penalty_last_n = 16;
    pc.top_k = 1;
    struct sampler *g = make(&pg, N), *c = make(&pc, N);
    if (!g || !c) { CHECK(0); sampler_free(g); sampler_free(c); return; }
    int bad = 0;
    for (int step = 0; step < 300; step++) {
        fill_logits(l, N, 1000 + step);
        for (int i = 0; i < N; i += 97) l[i] = NAN;
        l[(step * 31) % N] = l[(step * 17 + 5) % N] = 9.0f;     /* a tie at the top, sometimes penalised */
        const int32_t a = sampler_sample(g, l), b = sampler_sample(c, l);
        bad += a != b;
        sampler_accept(g, a);
        sampler_accept(c, a);
        sampler_accept(g, (step * 31) % N);     /* keep the tied ids in the window now and then */
        sampler_accept(c, (step * 31) % N);
    }
    CHECK_EQ(bad, 0);
    sampler_free(g);
    sampler_free(c);
}

/* Without penalties greedy is a vector arg-max (kernels/ops.c): the same
 * answer as a scalar scan for every length (tails of 1..15 lanes), NaNs,
 * ties in any lane, and rows with nothing above -inf (id 0). */
static void test_greedy_argmax_shapes(void) {
    static float l[32000 + 17];
    int bad = 0;
    for (int n = 1; n <= 32000 + 17; n = n < 40 ? n + 1 : n * 3 + 1) {
        struct sampler_params p = params_off(0.0f);
        struct sampler *s = make(&p, n);
        if (!s) { CHECK(0); return; }
        for (int round = 0; round < 6; round++) {
            fill_logits(l, n, (uint32_t)(n * 7 + round));
            if (round == 1) for (int i = 0; i < n; i += 3) l[i] = NAN;
            if (round == 2) { l[n / 2] = 50.0f; l[n - 1] = 50.0f; }               /* tie: first wins */
            if (round == 3) l[n - 1] = 60.0f;                                      /* in the tail */
            if (round == 4) for (int i = 0; i < n; i++) l[i] = i % 2 ? NAN : -INFINITY;
            if (round == 5) for (int i = 0; i < n; i++) l[i] = -INFINITY;
            int32_t want = 0;
            float best = -INFINITY;
            for (int i = 0; i < n; i++) if (l[i] > best) best = l[want = i];      /* NaN compares false */
            bad += sampler_sample(s, l) != want;
        }
        sampler_free(s);
    }
    CHECK_EQ(bad, 0);
}

/* On a 32000 vocab, top-k = 40 only ever returns one of the 40 best. */
static void test_top_k_large_vocab(void) {
    enum { N = 32000, K = 40 };
    static float l[N], sorted[N];
    fill_logits(l, N, 11);
    memcpy(sorted, l, sizeof(l));
    /* The K-th best value by selection (N*K is small enough). */
    float kth = INFINITY;
    for (int k = 0; k < K; k++) {
        float best = -INFINITY;
        for (int i = 0; i < N; i++)
            if (sorted[i] < kth && sorted[i] > best) best = sorted[i];
        kth = best;
    }
    struct sampler_params p = params_off(50.0f);   /* hot, to spread the draws */
    p.top_k = K;
    struct sampler *s = make(&p, N);
    if (!s) { CHECK(0); return; }
    int outside = 0, distinct = 0;
    static char seen[N];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < 2000; i++) {
        int32_t t = sampler_sample(s, l);
        CHECK(t >= 0 && t < N);
        if (t < 0 || t >= N) break;
        outside += l[t] < kth;
        distinct += !seen[t];
        seen[t] = 1;
    }
    CHECK_EQ(outside, 0);
    CHECK(distinct > 30);    /* nearly all 40 show up at temperature 50 */
    CHECK(distinct <= K);
    sampler_free(s);

    /* top_k >= n_vocab keeps everything. */
    const float l4[4] = { 0.0f, 0.1f, 0.2f, 0.3f };
    p = params_off(1.0f);
    p.top_k = 10;
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    int hist[4];
    histogram(s, l4, 4, 2000, hist);
    for (int i = 0; i < 4; i++) CHECK(hist[i] > 300);
    sampler_free(s);
}

static void test_top_p(void) {
    /* p = {0.4, 0.3, 0.2, 0.1} */
    const float l[4] = { logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f) };
    int hist[4];
    const float tiny[] = { 0.01f, 0.0f, -1.0f };   /* all keep only the top token */
    for (int i = 0; i < 3; i++) {
        struct sampler_params p = params_off(1.0f);
        p.top_p = tiny[i];
        struct sampler *s = make(&p, 4);
        if (!s) { CHECK(0); return; }
        histogram(s, l, 4, 500, hist);
        CHECK_EQ(hist[0], 500);
        sampler_free(s);
    }
    /* 0.6: 0.4 is short of it, 0.4 + 0.3 reaches it, so {0, 1} at 4:3. */
    struct sampler_params p = params_off(1.0f);
    p.top_p = 0.6f;
    struct sampler *s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 7000, hist);
    CHECK_EQ(hist[2] + hist[3], 0);
    CHECK_NEAR(hist[0] / 7000.0, 4.0 / 7.0, 0.03);
    CHECK_NEAR(hist[1] / 7000.0, 3.0 / 7.0, 0.03);
    sampler_free(s);
    /* 0.69: the first two reach 0.7, just past it, so still only {0, 1}. */
    p.top_p = 0.69f;
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 3000, hist);
    CHECK_EQ(hist[2] + hist[3], 0);
    CHECK(hist[1] > 900);
    sampler_free(s);
    /* 0.75: 0.7 falls short, so id 2 joins. */
    p.top_p = 0.75f;
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 3000, hist);
    CHECK_EQ(hist[3], 0);
    CHECK(hist[2] > 500);           /* 0.2 / 0.9 of 3000 is ~670 */
    sampler_free(s);
    /* The same cuts on the path after top-k, where the candidates arrive
     * sorted: top_k = 4 of 5 drops only the far tail token. */
    const float l5[5] = { logf(0.3f), logf(0.1f), -30.0f, logf(0.4f), logf(0.2f) };
    p = params_off(1.0f);
    p.top_k = 4;
    p.top_p = 0.69f;                /* ids 3, 0 */
    s = make(&p, 5);
    if (!s) { CHECK(0); return; }
    int hist5[5];
    histogram(s, l5, 5, 3000, hist5);
    CHECK_EQ(hist5[1] + hist5[2] + hist5[4], 0);
    CHECK(hist5[0] > 900);
    sampler_free(s);
    p.top_p = 0.75f;                /* ids 3, 0, 4 */
    s = make(&p, 5);
    if (!s) { CHECK(0); return; }
    histogram(s, l5, 5, 3000, hist5);
    CHECK_EQ(hist5[1] + hist5[2], 0);
    CHECK(hist5[4] > 500);
    sampler_free(s);
    p = params_off(1.0f);
    /* 0.95 keeps all four: 0.9 < 0.95. */
    p.top_p = 0.95f;
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 4000, hist);
    CHECK(hist[3] > 200);
    sampler_free(s);
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* top-p without top-k on a vocab big enough that the sampler grows its
 * selection (64, 128, ...): the kept set must equal the reference prefix. */
static void test_top_p_large_vocab(void) {
    enum { N = 3000 };
    static float l[N];
    static double prob[N], sorted[N];
    static int hist[N];
    fill_logits(l, N, 21);
    softmax_ref(l, N, 1.0f, prob);
    memcpy(sorted, prob, sizeof(prob));
    qsort(sorted, N, sizeof(double), cmp_desc);
    double cum = 0, cut = 0;
    int keep = 0;
    for (int i = 0; i < N; i++) {
        cum += sorted[i];
        if (cum >= 0.5) { keep = i + 1; cut = sorted[i]; break; }
    }
    CHECK(keep > 200);      /* the selection had to grow past 64 and 128 */
    struct sampler_params p = params_off(1.0f);
    p.top_p = 0.5f;
    struct sampler *s = make(&p, N);
    if (!s) { CHECK(0); return; }
    histogram(s, l, N, 20000, hist);
    int outside = 0, distinct = 0;
    for (int i = 0; i < N; i++) {
        if (hist[i] && prob[i] < cut * (1 - 1e-5)) outside++;
        distinct += hist[i] > 0;
    }
    CHECK_EQ(outside, 0);
    CHECK(distinct > keep * 9 / 10);
    CHECK(distinct <= keep + 1);    /* +1: float vs double at the boundary */
    sampler_free(s);
}

static void test_min_p(void) {
    /* p = {0.05, 0.5, 0.3, 0.15}: p_max = 0.5 sits at id 1 so the filter must
     * find the max, not assume it at index 0. */
    const float l[4] = { logf(0.05f), logf(0.5f), logf(0.3f), logf(0.15f) };
    int hist[4];
    struct sampler_params p = params_off(1.0f);
    p.min_p = 0.2f;                 /* threshold 0.1: drops only id 0 */
    struct sampler *s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 6000, hist);
    CHECK_EQ(hist[0], 0);
    CHECK(hist[3] > 600);           /* 0.15 / 0.95 of 6000 is ~950 */
    sampler_free(s);

    p.min_p = 0.5f;                 /* threshold 0.25: keeps ids 1 and 2 */
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 6000, hist);
    CHECK_EQ(hist[0] + hist[3], 0);
    CHECK_NEAR(hist[1] / 6000.0, 0.5 / 0.8, 0.03);
    sampler_free(s);

    p.min_p = 5.0f;                 /* nothing qualifies: the best one stays */
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 200, hist);
    CHECK_EQ(hist[1], 200);
    sampler_free(s);

    /* After a top-k (sorted candidates) the same filter applies. */
    p.min_p = 0.5f;
    p.top_k = 3;
    s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    histogram(s, l, 4, 2000, hist);
    CHECK_EQ(hist[0] + hist[3], 0);
    CHECK(hist[2] > 400);
    sampler_free(s);
}

static void test_seed_reproducible(void) {
    enum { N = 50, DRAWS = 100 };
    float l[N];
    fill_logits(l, N, 3);
    int32_t a[DRAWS], b[DRAWS], c[DRAWS];
    struct sampler_params p = params_off(1.5f);
    p.seed = 42;
    struct sampler *s1 = make(&p, N), *s2 = make(&p, N);
    p.seed = 43;
    struct sampler *s3 = make(&p, N);
    if (!s1 || !s2 || !s3) { CHECK(0); return; }
    for (int i = 0; i < DRAWS; i++) {
        a[i] = sampler_sample(s1, l);
        b[i] = sampler_sample(s2, l);
        c[i] = sampler_sample(s3, l);
    }
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    int differ = 0;
    for (int i = 0; i < DRAWS; i++) differ += a[i] != c[i];
    CHECK(differ > 10);
    sampler_free(s1);
    sampler_free(s2);
    sampler_free(s3);

    /* Same with the default chain and interleaved accepts. */
    p = sampler_default_params();
    p.seed = 7;
    p.repeat_penalty = 1.1f;
    s1 = make(&p, N);
    s2 = make(&p, N);
    if (!s1 || !s2) { CHECK(0); return; }
    int same = 1;
    for (int i = 0; i < DRAWS; i++) {
        int32_t x = sampler_sample(s1, l), y = sampler_sample(s2, l);
        same &= x == y;
        sampler_accept(s1, x);
        sampler_accept(s2, y);
    }
    CHECK(same);
    sampler_free(s1);
    sampler_free(s2);
}

static void test_distribution_matches_softmax(void) {
    const float l[4] = { 1.0f, 2.0f, 0.5f, -1.0f };
    double want[4];
    softmax_ref(l, 4, 1.0f, want);
    struct sampler_params p = params_off(1.0f);
    p.seed = 2024;
    struct sampler *s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    int hist[4];
    histogram(s, l, 4, 20000, hist);
    for (int i = 0; i < 4; i++) CHECK_NEAR(hist[i] / 20000.0, want[i], 0.015);
    sampler_free(s);
}

static void test_temperature_sharpens(void) {
    const float l[4] = { 1.0f, 2.0f, 0.5f, -1.0f };
    const float temps[3] = { 0.5f, 1.0f, 2.0f };
    double top[3];
    for (int t = 0; t < 3; t++) {
        double want[4];
        softmax_ref(l, 4, temps[t], want);
        struct sampler_params p = params_off(temps[t]);
        struct sampler *s = make(&p, 4);
        if (!s) { CHECK(0); return; }
        int hist[4];
        histogram(s, l, 4, 20000, hist);
        for (int i = 0; i < 4; i++) CHECK_NEAR(hist[i] / 20000.0, want[i], 0.015);
        top[t] = hist[1] / 20000.0;
        sampler_free(s);
    }
    CHECK(top[0] > top[1] + 0.1);   /* ~0.83 vs ~0.61 vs ~0.40 */
    CHECK(top[1] > top[2] + 0.1);

    /* A tiny positive temperature overflows logits / T to +inf; that must
     * still pick the max, not NaN its way to some other token. */
    struct sampler_params p = params_off(1e-39f);
    struct sampler *s = make(&p, 4);
    if (!s) { CHECK(0); return; }
    int bad = 0;
    for (int i = 0; i < 100; i++) bad += sampler_sample(s, l) != 1;
    CHECK_EQ(bad, 0);
    sampler_free(s);
}

static void test_logits_unchanged(void) {
    enum { N = 300 };
    float l[N], copy[N];
    fill_logits(l, N, 5);
    l[17] = NAN;
    memcpy(copy, l, sizeof(l));
    struct sampler_params p = sampler_default_params();
    p.repeat_penalty = 1.3f;
    p.frequency_penalty = 0.2f;
    p.presence_penalty = 0.2f;
    p.top_k = 0;                    /* so top-p has to sort the full array */
    struct sampler *s = make(&p, N);
    if (!s) { CHECK(0); return; }
    for (int i = 0; i < 50; i++) {
        int32_t t = sampler_sample(s, l);
        CHECK(t >= 0 && t < N && t != 17);
        sampler_accept(s, t);
    }
    CHECK(memcmp(l, copy, sizeof(l)) == 0);
    sampler_free(s);
}

static void test_degenerate_logits(void) {
    /* A NaN logit is treated as masked, not as the max. */
    const float nan3[3] = { NAN, 1.0f, 2.0f };
    struct sampler_params g = params_off(0.0f);
    struct sampler *gs = make(&g, 3);
    if (!gs) { CHECK(0); return; }
    CHECK_EQ(sampler_sample(gs, nan3), 2);
    sampler_free(gs);

    const float ninf[3] = { -INFINITY, -INFINITY, -INFINITY };
    const float one[3] = { -INFINITY, 0.0f, -INFINITY };
    struct sampler_params p = sampler_default_params();
    struct sampler *s = make(&p, 3);
    if (!s) { CHECK(0); return; }
    int32_t t = sampler_sample(s, ninf);
    CHECK(t >= 0 && t < 3);
    for (int i = 0; i < 50; i++) CHECK_EQ(sampler_sample(s, one), 1);
    sampler_accept(s, -1);          /* out of range: ignored, no crash */
    sampler_accept(s, 3);
    sampler_free(s);
    p.top_k = 0; p.top_p = 1.0f; p.min_p = 0.0f;
    s = make(&p, 3);
    if (!s) { CHECK(0); return; }
    for (int i = 0; i < 50; i++) CHECK_EQ(sampler_sample(s, one), 1);
    /* +inf logits (an overflowing model) take all the mass between them. */
    const float pinf[3] = { INFINITY, 1.0f, INFINITY };
    int hist[3];
    histogram(s, pinf, 3, 400, hist);
    CHECK_EQ(hist[1], 0);
    CHECK(hist[0] > 100 && hist[2] > 100);
    sampler_free(s);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_create_rejects_bad_params);
    RUN(test_greedy);
    RUN(test_repeat_penalty_window);
    RUN(test_frequency_presence);
    RUN(test_top_k_1_is_greedy);
    RUN(test_greedy_matches_chain);
    RUN(test_greedy_argmax_shapes);
    RUN(test_top_k_large_vocab);
    RUN(test_top_p);
    RUN(test_top_p_large_vocab);
    RUN(test_min_p);
    RUN(test_seed_reproducible);
    RUN(test_distribution_matches_softmax);
    RUN(test_temperature_sharpens);
    RUN(test_logits_unchanged);
    RUN(test_degenerate_logits);
    return check_report();
}
