/* sampler.c - see sampler.h.
 *
 * One call of sampler_sample() runs llama.cpp's common chain over a scratch
 * copy of the logits:
 *
 *   penalties -> top-k -> top-p -> min-p -> temperature -> softmax + draw
 *
 * Each stage works on `cand[0..n)`, shrinking n; `sorted` says top-k left
 * the survivors in descending order, so top-p can cut them with a scan
 * (llama_token_data_array.sorted plays that role). Everything the call needs
 * is allocated in sampler_create(), so sampling never touches the heap. */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

struct cand {
    int32_t id;
    float logit;
    float p;            /* softmax probability, valid only after cand_softmax() */
};

struct sampler {
    struct sampler_params par;
    int32_t n_vocab;
    struct cand *cand;  /* n_vocab candidates: the scratch for one call */

    /* The recent-token window for the penalties: a ring of the last
     * `par.penalty_last_n` accepted tokens, plus how often each id occurs in
     * it, kept up to date on accept so sampling does not recount. */
    int32_t *ring;
    int32_t ring_len;   /* tokens in the ring, <= penalty_last_n */
    int32_t ring_head;  /* next slot to overwrite once the ring is full */
    int32_t *counts;    /* n_vocab entries, NULL when penalties are off */

    uint64_t rng[4];    /* xoshiro256** state */
};

/* ---------------------------------------------------------------- PRNG --- */

/* splitmix64 expands the 64-bit seed into xoshiro's 256-bit state; it is the
 * seeding its authors recommend, and it never yields the all-zero state. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman & Vigna). */
static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1): the top 53 bits fill a double's mantissa exactly. */
static double rng_uniform(uint64_t s[4]) {
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* ----------------------------------------------------------- ordering --- */

/* "a comes before b": higher logit first, and on equal logits the lower id,
 * so every order in this file is total and the result does not depend on
 * how a sort happens to break ties. */
static int cand_before(const struct cand *a, const struct cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void cand_swap(struct cand *a, struct cand *b) {
    struct cand t = *a;
    *a = *b;
    *b = t;
}

/* Sift down in a heap whose root is the *worst* candidate (a min-heap under
 * cand_before), so the root is the one to evict when a better one arrives. */
static void heap_sift_down(struct cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && cand_before(&h[worst], &h[l])) worst = l;
        if (r < n && cand_before(&h[worst], &h[r])) worst = r;
        if (worst == i) return;
        cand_swap(&h[i], &h[worst]);
        i = worst;
    }
}

/* ------------------------------------------------------------- stages --- */

/* A logit whose id occurs cnt > 0 times in the window. Dividing a negative
 * logit would raise it, so those are multiplied: either way the token becomes
 * less likely (CTRL, with llama.cpp's fix). */
static float penalised(const struct sampler_params *p, float logit, int32_t cnt) {
    if (logit <= 0.0f) logit *= p->repeat_penalty;
    else logit /= p->repeat_penalty;
    return logit - ((float)cnt * p->frequency_penalty + p->presence_penalty);
}

static void apply_penalties(const struct sampler *s, struct cand *c) {
    const struct sampler_params *p = &s->par;
    if (!s->counts || s->ring_len == 0) return;
    if (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f &&
        p->presence_penalty == 0.0f)
        return;
    /* Scanning the count table (one int per id) is as cheap as the logit copy
     * already made, and it visits each distinct recent token exactly once,
     * which is what llama.cpp's per-token map gives. Candidates are still in
     * id order here, so c[i].id == i. */
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (s->counts[i] > 0) c[i].logit = penalised(p, c[i].logit, s->counts[i]);
    }
}

/* Arg-max, lowest id on ties: the candidates are in id order, so a strict
 * `>` keeps the first. */
/* Move the k best of c[0..n) to the front, best first. A bounded heap costs
 * O(n log k): with k = 40 on a 32000 vocab most candidates lose to the heap's
 * root in one comparison, far cheaper than sorting them all. */
static void select_best(struct cand *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        /* Swap rather than overwrite, so c stays a permutation of the
         * candidates and nothing downstream can see a duplicate. */
        if (cand_before(&c[i], &c[0])) {
            cand_swap(&c[0], &c[i]);
            heap_sift_down(c, k, 0);
        }
    }
    /* Moving the worst to the end each time leaves c[0..k) best first. */
    for (int32_t end = k - 1; end > 0; end--) {
        cand_swap(&c[0], &c[end]);
        heap_sift_down(c, end, 0);
    }
}

static int32_t apply_top_k(struct cand *c, int32_t n, int32_t k, bool *sorted) {
    if (k <= 0 || k >= n) return n;   /* off, or keeps everything anyway */
    select_best(c, n, k);
    *sorted = true;
    return k;
}

/* Fill c[].p with softmax(c[].logit). Subtracting the max keeps expf() in
 * range; a row that is all -inf (everything masked) gets a uniform p rather
 * than NaN. The draw normalises again, so p need only be proportional. */
static void cand_softmax(struct cand *c, int32_t n) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    if (max == -INFINITY) {
        for (int32_t i = 0; i < n; i++) c[i].p = 1.0f / (float)n;
        return;
    }
    /* A +inf logit (a model overflow) would make inf - inf = NaN: the +inf
     * ones share all the mass, which is the limit of the softmax. */
    if (max == INFINITY) {
        for (int32_t i = 0; i < n; i++) c[i].p = c[i].logit == INFINITY ? 1.0f : 0.0f;
        return;
    }
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf(c[i].logit - max);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

/* Partition c[lo..hi) (hi - lo >= 2) around a median-of-three pivot: the
 * candidates before it come first. Returns the pivot's final index. The order
 * is total (ties go by id), so equal logits cannot unbalance the split. */
static int32_t partition(struct cand *c, int32_t lo, int32_t hi) {
    int32_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (cand_before(&c[mid], &c[lo])) cand_swap(&c[mid], &c[lo]);
    if (cand_before(&c[last], &c[lo])) cand_swap(&c[last], &c[lo]);
    if (cand_before(&c[last], &c[mid])) cand_swap(&c[last], &c[mid]);
    cand_swap(&c[mid], &c[last]);   /* the median becomes the pivot */
    int32_t store = lo;
    for (int32_t i = lo; i < last; i++)
        if (cand_before(&c[i], &c[last])) cand_swap(&c[i], &c[store++]);
    cand_swap(&c[store], &c[last]);
    return store;
}

/* Keep the smallest best-first prefix whose probability reaches top_p, and
 * always at least one token (llama.cpp's min_keep = 1).
 *
 * After top-k the few candidates are sorted and a scan finds the cut. Without
 * top-k, llama.cpp sorts the whole vocabulary; a quickselect on probability
 * mass finds the same set in expected O(n) instead: partition, and go into
 * the better side if it alone reaches the mass still needed, else keep it
 * whole and go on into the worse side. The kept set is left unsorted, which
 * min-p and the draw do not need. */
static int32_t apply_top_p(struct cand *c, int32_t n, float top_p, bool sorted) {
    if (top_p >= 1.0f) return n;
    cand_softmax(c, n);
    if (sorted) {
        float cum = 0.0f;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= top_p) return i + 1;
        }
        return n;   /* float rounding left the total just under top_p: keep all */
    }
    /* Invariant: c[0..lo) come before c[lo..hi), hold less than top_p, and
     * need is what c[lo..) must still add; the cut lies in (lo, hi]. */
    int32_t lo = 0, hi = n;
    double need = top_p;
    while (hi - lo > 1) {
        int32_t m = partition(c, lo, hi);
        double better = 0.0;
        for (int32_t i = lo; i < m; i++) better += c[i].p;
        if (m > lo && better >= need) {
            hi = m;
        } else if (better + c[m].p >= need) {
            return m + 1;
        } else {
            need -= better + c[m].p;
            lo = m + 1;
        }
    }
    return hi;
}

/* Keep tokens with p >= min_p * p_max. In logits that is
 * logit >= max_logit + log(min_p), which needs neither a softmax nor a sort. */
static int32_t apply_min_p(struct cand *c, int32_t n, float min_p) {
    if (min_p <= 0.0f || n == 0) return n;
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (cand_before(&c[i], &c[best])) best = i;
    const float min_logit = c[best].logit + logf(min_p);
    /* min_p > 1 would drop everything: keep the best one, as llama.cpp does. */
    if (!(c[best].logit >= min_logit)) {
        c[0] = c[best];
        return 1;
    }
    /* Stable compaction, so a sorted array stays sorted. */
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit >= min_logit) c[kept++] = c[i];
    return kept;
}

/* Divide by the temperature after shifting the max to 0: the softmax does not
 * change, and a tiny temperature then sends logits towards -inf instead of
 * overflowing several of them to +inf, where they would tie. */
static void apply_temperature(struct cand *c, int32_t n, float temp) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    if (!isfinite(max)) max = 0.0f;   /* all masked, or a model's +inf: leave as is */
    for (int32_t i = 0; i < n; i++) c[i].logit = (c[i].logit - max) / temp;
}

/* Inverse-CDF draw: walk the cumulative probabilities until they pass u.
 * The fallback covers u landing in the rounding gap at the top of the CDF. */
static int32_t draw(struct cand *c, int32_t n, uint64_t rng[4]) {
    cand_softmax(c, n);
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += c[i].p;
    const double u = rng_uniform(rng) * sum;
    double cum = 0.0;
    int32_t last = 0;
    for (int32_t i = 0; i < n; i++) {
        if (c[i].p <= 0.0f) continue;   /* never return a zero-probability token */
        cum += c[i].p;
        last = i;
        if (u < cum) return c[i].id;
    }
    return c[last].id;
}

/* ---------------------------------------------------------------- API --- */

struct sampler_params sampler_default_params(void) {
    struct sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,   /* fixed, so runs reproduce; pass your own for variety */
    };
    return p;
}

static int check_params(const struct sampler_params *p, int32_t n_vocab, struct sp_err *err) {
    if (n_vocab <= 0)
        return sp_fail(err, SP_EINVAL, "sampler: n_vocab %d must be positive", (int)n_vocab);
    /* NaN would compare false everywhere and silently switch stages off. */
    if (!isfinite(p->temperature))
        return sp_fail(err, SP_EINVAL, "sampler: temperature %g is not finite", (double)p->temperature);
    if (isnan(p->top_p))
        return sp_fail(err, SP_EINVAL, "sampler: top_p is NaN");
    if (isnan(p->min_p))
        return sp_fail(err, SP_EINVAL, "sampler: min_p is NaN");
    /* 0 would divide by zero and a negative one would flip the sign of logits. */
    if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0.0f)
        return sp_fail(err, SP_EINVAL, "sampler: repeat_penalty %g must be finite and > 0",
                       (double)p->repeat_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return sp_fail(err, SP_EINVAL, "sampler: frequency_penalty %g / presence_penalty %g must be finite",
                       (double)p->frequency_penalty, (double)p->presence_penalty);
    /* llama.cpp's -1 ("the whole context") is not supported: the window is a
     * fixed ring allocated here. */
    if (p->penalty_last_n < 0 || p->penalty_last_n > SAMPLER_MAX_LAST_N)
        return sp_fail(err, SP_EINVAL, "sampler: penalty_last_n %d not in [0, %d]",
                       (int)p->penalty_last_n, SAMPLER_MAX_LAST_N);
    return SP_OK;
}

struct sampler *sampler_create(const struct sampler_params *p, int32_t n_vocab,
                               struct sp_err *err) {
    if (!p) {
        sp_fail(err, SP_EINVAL, "sampler: params is NULL");
        return NULL;
    }
    if (check_params(p, n_vocab, err) != SP_OK) return NULL;

    /* Sized for the largest window, so sampler_reset can take any params
     * without allocating (the engine reuses one sampler per running slot). */
    struct sampler *s = calloc(1, sizeof(*s));
    if (!s) goto oom;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof(*s->cand));
    s->ring = malloc((size_t)SAMPLER_MAX_LAST_N * sizeof(*s->ring));
    s->counts = calloc((size_t)n_vocab, sizeof(*s->counts));
    if (!s->cand || !s->ring || !s->counts) goto oom;
    sampler_reset(s, p, NULL);
    return s;

oom:
    sampler_free(s);
    sp_fail(err, SP_ENOMEM, "sampler: out of memory for n_vocab %d", (int)n_vocab);
    return NULL;
}

int sampler_reset(struct sampler *s, const struct sampler_params *p, struct sp_err *err) {
    int rc = check_params(p, s->n_vocab, err);
    if (rc != SP_OK) return rc;
    /* Undo the window's counts entry by entry: cheaper than clearing n_vocab. */
    for (int32_t i = 0; i < s->ring_len; i++) s->counts[s->ring[i]]--;
    s->ring_len = 0;
    s->ring_head = 0;
    s->par = *p;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    return SP_OK;
}

void sampler_get_rng(const struct sampler *s, uint64_t state[4]) {
    for (int i = 0; i < 4; i++) state[i] = s->rng[i];
}

void sampler_set_rng(struct sampler *s, const uint64_t state[4]) {
    for (int i = 0; i < 4; i++) s->rng[i] = state[i];
}

void sampler_free(struct sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->ring);
    free(s->counts);
    free(s);
}

void sampler_accept(struct sampler *s, int32_t id) {
    /* An id outside the vocabulary cannot be penalised anyway; dropping it
     * keeps the count table in bounds. */
    const int32_t cap = s->par.penalty_last_n;
    if (!s || cap == 0 || id < 0 || id >= s->n_vocab) return;
    if (s->ring_len < cap) {
        s->ring[s->ring_len++] = id;
    } else {
        s->counts[s->ring[s->ring_head]]--;
        s->ring[s->ring_head] = id;
        s->ring_head = (s->ring_head + 1) % cap;
    }
    s->counts[id]++;
}

/* Greedy without the candidate copy: the same values (penalised where the
 * window holds the id, NaN as -inf) as apply_penalties gives, the first of
 * equal maxima (the lowest id) wins; a decode step of many sequences spends
 * its serial time here. */
static int32_t greedy_direct(const struct sampler *s, const float *logits) {
    const struct sampler_params *p = &s->par;
    const bool penalise = s->counts && s->ring_len > 0 &&
                          (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
    if (!penalise) return op_argmax(logits, s->n_vocab);
    int32_t best = 0;
    float best_v = -INFINITY;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        float v = isnan(logits[i]) ? -INFINITY : logits[i];
        if (s->counts[i] > 0) v = penalised(p, v, s->counts[i]);
        if (i == 0 || v > best_v) { best = i; best_v = v; }
    }
    return best;
}

int32_t sampler_sample(struct sampler *s, const float *logits) {
    if (s->par.temperature <= 0.0f) return greedy_direct(s, logits);
    struct cand *c = s->cand;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        /* A NaN logit would break every comparison below; treat it as masked. */
        float l = logits[i];
        c[i] = (struct cand){ .id = i, .logit = isnan(l) ? -INFINITY : l, .p = 0.0f };
    }

    apply_penalties(s, c);

    bool sorted = false;
    n = apply_top_k(c, n, s->par.top_k, &sorted);
    n = apply_top_p(c, n, s->par.top_p, sorted);
    n = apply_min_p(c, n, s->par.min_p);
    apply_temperature(c, n, s->par.temperature);
    return draw(c, n, s->rng);
}
