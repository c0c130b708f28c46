/* test_golden.c - our logits and greedy tokens against llama.cpp's recorded
 * ones (../shared/testdata/golden) for every shipped model.
 *
 * stories260K (real, clear margins): every greedy token must equal llama.cpp's.
 * synth* (random weights, tiny margins): logits within a per-model tolerance,
 * and greedy tokens equal up to the first step where llama.cpp's own top-1/top-2
 * margin is below twice the largest logit difference we have seen so far
 * (after that a legitimate flip may diverge). */
#include "tests/unit/check.h"
#include "tests/unit/rig.h"

#include <jansson.h>

struct golden_case {
    const char *model;      /* file in ../shared/models */
    float tol;              /* max |our logit - llama.cpp's| allowed */
    bool exact_greedy;      /* every greedy token must match */
};

/* Tolerances are sized from llama.cpp's own spread between types of one model
 * (../shared/testdata/golden/README.md: f32 vs q4_k_m max 0.99 on stories260K,
 * f32 vs q8_0 0.021 and vs q4_0 0.24 on synth15M) and from what we measured;
 * ggml's summation order cannot be reproduced exactly, a wrong layout or
 * kernel is off by far more. synth110M has no recorded spread: 0.08 is about
 * 5% of its logit range. */
static const struct golden_case cases[] = {
    { "stories260K-f32", 0.01f, true },
    { "stories260K-f16", 0.02f, true },
    { "stories260K-q4_k_m", 0.25f, true },
    { "synth15M-f16", 0.002f, false },
    { "synth15M-q8_0", 0.01f, false },
    { "synth15M-q4_0", 0.02f, false },
    { "synth110M-q4_k_m", 0.08f, false },
};

static json_t *load_golden(const char *model, const char *prompt_name) {
    char path[512];
    snprintf(path, sizeof(path), "%s/testdata/golden/%s.%s.json", check_shared_dir(), model, prompt_name);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fprintf(stderr, "  cannot read %s: %s\n", path, je.text);
    return j;
}

static int rank_of(const float *logits, int n, int id) {
    int r = 0;
    for (int i = 0; i < n; i++) if (logits[i] > logits[id] || (logits[i] == logits[id] && i < id)) r++;
    return r;
}

static double top_logit(json_t *top, size_t k) {
    return json_real_value(json_object_get(json_array_get(top, k), "logit"));
}

/* Largest |ours - llama.cpp's| over a golden top-5 list. Where llama.cpp
 * separates an id from both neighbours by more than twice the tolerance, our
 * rank of that id must be the same as theirs (not for the last entry: the
 * logit after it is not recorded). */
static double check_top(const float *logits, int n_vocab, json_t *top, float tol, const char *where, int idx) {
    double worst = 0;
    const size_t n = json_array_size(top);
    for (size_t k = 0; k < n; k++) {
        const int id = (int)json_integer_value(json_object_get(json_array_get(top, k), "id"));
        const double want = top_logit(top, k);
        const double d = fabs(logits[id] - want);
        if (d > worst) worst = d;
        const double prev = k > 0 ? top_logit(top, k - 1) : INFINITY;
        if (k + 1 == n) break;
        const double next = top_logit(top, k + 1);
        if (prev - want > 2 * tol && want - next > 2 * tol) CHECK_EQ(rank_of(logits, n_vocab, id), (int)k);
    }
    if (worst > tol) fprintf(stderr, "  %s %d: logit diff %.5f > %.5f\n", where, idx, worst, tol);
    return worst;
}

static void run_case(const struct golden_case *c, const char *prompt_name) {
    char file[128];
    snprintf(file, sizeof(file), "%s.gguf", c->model);
    json_t *g = load_golden(c->model, prompt_name);
    CHECK(g != NULL);
    if (!g) return;
    json_t *steps = json_object_get(g, "greedy_steps");
    const int n_gen = (int)json_array_size(steps);
    struct rig r;
    CHECK(rig_open(&r, file, 1, 256, 64));
    if (!r.m) { json_decref(g); return; }

    /* Prompt tokens. */
    const char *prompt = json_string_value(json_object_get(g, "prompt"));
    json_t *ptoks = json_object_get(g, "prompt_tokens");
    int32_t toks[256];
    struct sp_err err;
    int n = tok_encode(r.tok, prompt, strlen(prompt), true, toks, 256, &err);
    CHECK_EQ(n, (int)json_array_size(ptoks));
    for (int i = 0; i < n && i < (int)json_array_size(ptoks); i++)
        CHECK_EQ(toks[i], json_integer_value(json_array_get(ptoks, i)));

    /* Prompt logits at every position, in one batch as llama.cpp ran it. */
    float *logits = malloc(sizeof(float) * (size_t)r.n_vocab * (size_t)(n > 1 ? n : 1));
    CHECK_EQ(rig_feed(&r, 0, toks, n, 0, 64, true, logits), SP_OK);
    double worst = 0;
    json_t *ptop = json_object_get(g, "prompt_top");
    for (int i = 0; i < n; i++) {
        double d = check_top(logits + (size_t)i * r.n_vocab, r.n_vocab, json_object_get(json_array_get(ptop, i), "top"),
                             c->tol, "prompt pos", i);
        if (d > worst) worst = d;
    }
    json_t *full = json_object_get(g, "last_prompt_logits");
    double worst_full = 0;
    if (full) {
        const float *last = logits + (size_t)(n - 1) * r.n_vocab;
        CHECK_EQ((int)json_array_size(full), r.n_vocab);
        for (int i = 0; i < r.n_vocab && i < (int)json_array_size(full); i++) {
            double d = fabs(last[i] - json_real_value(json_array_get(full, i)));
            if (d > worst_full) worst_full = d;
        }
        CHECK(worst_full <= c->tol);
    }

    /* Greedy: our arg-max against llama.cpp's choice at every comparable step. */
    float *step_logits = malloc(sizeof(float) * (size_t)r.n_vocab);
    memcpy(step_logits, logits + (size_t)(n - 1) * r.n_vocab, sizeof(float) * (size_t)r.n_vocab);
    int compared = 0;
    for (int s = 0; s < n_gen; s++) {
        json_t *st = json_array_get(steps, s);
        json_t *top = json_object_get(st, "top");
        int want = (int)json_integer_value(json_object_get(st, "id"));
        double margin = json_real_value(json_object_get(json_array_get(top, 0), "logit")) -
                        json_real_value(json_object_get(json_array_get(top, 1), "logit"));
        double d = check_top(step_logits, r.n_vocab, top, c->tol, "greedy step", s);
        if (d > worst) worst = d;
        /* With our logits within `worst` of theirs, a margin above twice that
         * decides the arg-max; below it a flip is legitimate. */
        if (!c->exact_greedy && margin < 2 * worst) break;
        int got = rig_argmax(step_logits, r.n_vocab);
        if (got != want)
            fprintf(stderr, "  %s step %d: got %d want %d (want's rank %d, margin %.4f)\n", c->model, s, got, want,
                    rank_of(step_logits, r.n_vocab, want), margin);
        CHECK_EQ(got, want);
        if (got != want) break;
        compared++;
        int32_t id = got;
        if (s + 1 < n_gen) CHECK_EQ(rig_feed(&r, 0, &id, 1, n + s, 1, false, step_logits), SP_OK);
    }
    CHECK(worst <= c->tol);
    if (c->exact_greedy) CHECK_EQ(compared, n_gen);
    fprintf(stderr, "  %-20s %-16s tokens %d/%d  max|diff| top %.5f full %.5f (tol %.4f)\n", c->model, prompt_name,
            compared, n_gen, worst, worst_full, c->tol);
    free(step_logits);
    free(logits);
    rig_close(&r);
    json_decref(g);
}

#define GOLDEN_TEST(idx, fname)                                                                 \
    static void fname(void) {                                                                   \
        run_case(&cases[idx], "once-upon-a-time");                                              \
        run_case(&cases[idx], "lily-and-ben");                                                  \
    }
GOLDEN_TEST(0, test_stories260K_f32)
GOLDEN_TEST(1, test_stories260K_f16)
GOLDEN_TEST(2, test_stories260K_q4_k_m)
GOLDEN_TEST(3, test_synth15M_f16)
GOLDEN_TEST(4, test_synth15M_q8_0)
GOLDEN_TEST(5, test_synth15M_q4_0)
GOLDEN_TEST(6, test_synth110M_q4_k_m)

int main(void) {
    RUN(test_stories260K_f32);
    RUN(test_stories260K_f16);
    RUN(test_stories260K_q4_k_m);
    RUN(test_synth15M_f16);
    RUN(test_synth15M_q8_0);
    RUN(test_synth15M_q4_0);
    RUN(test_synth110M_q4_k_m);
    return check_report();
}
