/* test_forward.c - batching never changes a result: several prompts in one
 * forward pass, prompts fed in chunks, decode steps of several sequences
 * batched together, and 1 vs 2 threads all give bit-identical logits to one
 * prompt run alone. Bad batches are errors that write nothing. */
#include "tests/unit/check.h"
#include "tests/unit/rig.h"

static const char *prompts[] = {
    "Once upon a time",
    "Lily and Ben were playing in the garden.",
    "The cat sat",
    "One day, a little boy named Tom found a big red ball in the park and",
};
#define N_PROMPTS 4

static const char *models[] = { "stories260K-f32.gguf", "stories260K-q4_k_m.gguf", "synth15M-q4_0.gguf",
                                "synth15M-f16.gguf" };

struct encoded { int32_t ids[128]; int n; };

static void encode_all(struct rig *r, struct encoded *e) {
    struct sp_err err;
    for (int p = 0; p < N_PROMPTS; p++) {
        e[p].n = tok_encode(r->tok, prompts[p], strlen(prompts[p]), true, e[p].ids, 128, &err);
        CHECK(e[p].n > 0 && e[p].n <= 128);
    }
}

/* Each prompt alone in slot 0, logits of every position. */
static float *alone_logits(struct rig *r, const struct encoded *e, int p) {
    float *out = malloc(sizeof(float) * (size_t)r->n_vocab * (size_t)e[p].n);
    CHECK_EQ(rig_feed(r, 0, e[p].ids, e[p].n, 0, 128, true, out), SP_OK);
    return out;
}

static void test_prompts_batched_equal_alone(void) {
    for (size_t mi = 0; mi < sizeof(models) / sizeof(models[0]); mi++) {
        struct rig r;
        CHECK(rig_open(&r, models[mi], N_PROMPTS, 256, 256));
        if (!r.m) continue;
        struct encoded e[N_PROMPTS];
        encode_all(&r, e);
        float *alone[N_PROMPTS];
        for (int p = 0; p < N_PROMPTS; p++) alone[p] = alone_logits(&r, e, p);

        /* All prompts interleaved token by token into one batch, each in its own slot. */
        int32_t tok[256], pos[256], seq[256];
        bool want[256];
        int n = 0, owner[256], idx[256];
        for (int i = 0; i < 128; i++)
            for (int p = 0; p < N_PROMPTS; p++)
                if (i < e[p].n) {
                    tok[n] = e[p].ids[i]; pos[n] = i; seq[n] = p; want[n] = true;
                    owner[n] = p; idx[n] = i; n++;
                }
        float *batched = malloc(sizeof(float) * (size_t)r.n_vocab * (size_t)n);
        struct fwd_batch b = { n, tok, pos, seq, want };
        struct sp_err err;
        CHECK_EQ(fwd_run(r.f, r.kv, &b, batched, &err), SP_OK);
        int same = 0;
        for (int t = 0; t < n; t++)
            same += !memcmp(batched + (size_t)t * r.n_vocab, alone[owner[t]] + (size_t)idx[t] * r.n_vocab,
                            sizeof(float) * (size_t)r.n_vocab);
        if (same != n) fprintf(stderr, "  %s: %d of %d tokens differ\n", models[mi], n - same, n);
        CHECK_EQ(same, n);
        free(batched);
        for (int p = 0; p < N_PROMPTS; p++) free(alone[p]);
        rig_close(&r);
    }
}

static void test_chunked_prefill_equals_whole(void) {
    for (size_t mi = 0; mi < sizeof(models) / sizeof(models[0]); mi++) {
        struct rig r;
        CHECK(rig_open(&r, models[mi], 1, 256, 128));
        if (!r.m) continue;
        struct encoded e[N_PROMPTS];
        encode_all(&r, e);
        const int p = 3;
        float *whole = alone_logits(&r, e, p);
        float *chunked = malloc(sizeof(float) * (size_t)r.n_vocab * (size_t)e[p].n);
        const int chunks[] = { 1, 3, 7, 16 };
        for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
            CHECK_EQ(rig_feed(&r, 0, e[p].ids, e[p].n, 0, chunks[c], true, chunked), SP_OK);
            CHECK(!memcmp(whole, chunked, sizeof(float) * (size_t)r.n_vocab * (size_t)e[p].n));
        }
        free(chunked);
        free(whole);
        rig_close(&r);
    }
}

/* Greedy decode of all prompts together, one batch per step (sequences at
 * different lengths), against each prompt decoded alone. */
static void test_batched_decode_equals_alone(void) {
    enum { N_GEN = 24 };
    for (size_t mi = 0; mi < sizeof(models) / sizeof(models[0]); mi++) {
        struct rig r;
        CHECK(rig_open(&r, models[mi], N_PROMPTS, 256, 128));
        if (!r.m) continue;
        struct encoded e[N_PROMPTS];
        encode_all(&r, e);
        int32_t alone[N_PROMPTS][N_GEN];
        float *lg = malloc(sizeof(float) * (size_t)r.n_vocab * N_PROMPTS);
        for (int p = 0; p < N_PROMPTS; p++) {
            CHECK_EQ(rig_feed(&r, 0, e[p].ids, e[p].n, 0, 128, false, lg), SP_OK);
            for (int s = 0; s < N_GEN; s++) {
                alone[p][s] = rig_argmax(lg, r.n_vocab);
                CHECK_EQ(rig_feed(&r, 0, &alone[p][s], 1, e[p].n + s, 1, false, lg), SP_OK);
            }
        }
        /* Together: step 0 is every prompt's prefill in one batch; then one
         * decode token per sequence per step. */
        int32_t tok[512], pos[512], seq[512], cur[N_PROMPTS];
        bool want[512];
        int n = 0;
        for (int p = 0; p < N_PROMPTS; p++)
            for (int i = 0; i < e[p].n; i++) {
                tok[n] = e[p].ids[i]; pos[n] = i; seq[n] = p; want[n] = i == e[p].n - 1; n++;
            }
        struct sp_err err;
        struct fwd_batch b = { n, tok, pos, seq, want };
        CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_OK);
        int mismatches = 0;
        for (int s = 0; s < N_GEN; s++) {
            for (int p = 0; p < N_PROMPTS; p++) {
                cur[p] = rig_argmax(lg + (size_t)p * r.n_vocab, r.n_vocab);
                mismatches += cur[p] != alone[p][s];
                tok[p] = cur[p]; pos[p] = e[p].n + s; seq[p] = p; want[p] = true;
            }
            struct fwd_batch d = { N_PROMPTS, tok, pos, seq, want };
            CHECK_EQ(fwd_run(r.f, r.kv, &d, lg, &err), SP_OK);
        }
        CHECK_EQ(mismatches, 0);
        free(lg);
        rig_close(&r);
    }
}

static void test_threads_do_not_change_bits(void) {
    struct rig r;
    CHECK(rig_open(&r, "synth15M-q8_0.gguf", 1, 64, 64));
    if (!r.m) return;
    struct encoded e[N_PROMPTS];
    encode_all(&r, e);
    float *two = alone_logits(&r, e, 3);
    struct sp_err err;
    fwd_free(r.f);
    r.f = fwd_create(r.m, 64, 64, 1, &err);
    CHECK(r.f != NULL);
    float *one = alone_logits(&r, e, 3);
    CHECK(!memcmp(one, two, sizeof(float) * (size_t)r.n_vocab * (size_t)e[3].n));
    free(one);
    free(two);
    rig_close(&r);
}

static void test_bad_batches_are_errors(void) {
    struct rig r;
    CHECK(rig_open(&r, "stories260K-f32.gguf", 2, 32, 8));
    if (!r.m) return;
    float lg[512];
    struct sp_err err;
    int32_t tok = 5, pos = 0, seq = 0;
    bool want = true;
    struct fwd_batch b = { 1, &tok, &pos, &seq, &want };
    tok = 512;
    CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_EINVAL);
    CHECK(strstr(err.msg, "id 512") != NULL);
    tok = -1;
    CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_EINVAL);
    tok = 5; pos = 32;
    CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_ERANGE);
    pos = 0; seq = 2;
    CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_EINVAL);
    seq = 0;
    b.n_tokens = 9;
    CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_EINVAL);
    b.n_tokens = 1;
    CHECK_EQ(fwd_run(r.f, r.kv, &b, lg, &err), SP_OK);
    rig_close(&r);
}

int main(void) {
    RUN(test_prompts_batched_equal_alone);
    RUN(test_chunked_prefill_equals_whole);
    RUN(test_batched_decode_equals_alone);
    RUN(test_threads_do_not_change_bits);
    RUN(test_bad_batches_are_errors);
    return check_report();
}
