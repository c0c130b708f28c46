/* test_attn.c - the paged attention kernel (kernels/attn.h).
 *
 * - layout and formula: attn_heads_ref against a plain double-precision
 *   softmax(q.K/sqrt(d)) V over contiguous copies of the same F16 K/V, for
 *   block sizes 1, 7, 16 and 32, head dims that are and are not multiples of
 *   16 (the fast path's masks; 160 takes the reference path), contexts from 1
 *   key to past a block boundary and one long enough for several touch
 *   windows of the fast path, 1, 2 and 4 query heads per KV head (GQA);
 * - the fast path (attn_heads, AVX-512 where the CPU has it) against the
 *   reference within float reordering;
 * - bit for bit: a head's result is the same computed in a group or alone,
 *   and the same wherever the block table puts its blocks in the pool.
 * Other KV heads' runs are filled with huge values, so reading the wrong
 * head or block cannot go unnoticed. */
#include "kernels/attn.h"
#include "kernels/quant.h"
#include "tests/unit/check.h"
#include "tests/unit/rnd.h"

#include <stdint.h>

struct setup {
    int bs, hd, n_head_kv, n_q, n, n_blocks_pool;
    uint16_t *k, *v;            /* the pool: [n_blocks_pool][n_head_kv][bs][hd] */
    int32_t *table;             /* [ceil(n / bs)] */
    float *kd, *vd;             /* [n_head_kv][n][hd]: contiguous copies, as floats */
    float *q;                   /* [n_head_kv][n_q][hd] */
};

static void shuffle(int32_t *a, int n) {
    for (int i = 0; i < n; i++) a[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rnd64() % (uint64_t)(i + 1));
        int32_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

/* Fill a pool twice the needed size, the sequence's blocks scattered in it. */
static bool setup_make(struct setup *s, int bs, int hd, int n_head_kv, int n_q, int n) {
    *s = (struct setup){ .bs = bs, .hd = hd, .n_head_kv = n_head_kv, .n_q = n_q, .n = n };
    const int nb = (n + bs - 1) / bs;
    s->n_blocks_pool = 2 * nb + 1;
    const size_t pool = (size_t)s->n_blocks_pool * n_head_kv * bs * hd;
    s->k = malloc(pool * sizeof(uint16_t));
    s->v = malloc(pool * sizeof(uint16_t));
    int32_t *perm = malloc((size_t)s->n_blocks_pool * sizeof(int32_t));
    s->table = malloc((size_t)nb * sizeof(int32_t));
    s->kd = malloc((size_t)n_head_kv * n * hd * sizeof(float));
    s->vd = malloc((size_t)n_head_kv * n * hd * sizeof(float));
    s->q = malloc((size_t)n_head_kv * n_q * hd * sizeof(float));
    if (!s->k || !s->v || !perm || !s->table || !s->kd || !s->vd || !s->q) { free(perm); return false; }
    for (size_t i = 0; i < pool; i++) s->k[i] = s->v[i] = qt_f32_to_f16(30000.0f);   /* poison */
    shuffle(perm, s->n_blocks_pool);
    for (int b = 0; b < nb; b++) s->table[b] = perm[b];
    free(perm);
    for (int g = 0; g < n_head_kv; g++)
        for (int i = 0; i < n; i++) {
            const size_t at = attn_kv_index(s->table[i / bs], g, i % bs, bs, n_head_kv, hd);
            for (int d = 0; d < hd; d++) {
                s->k[at + d] = qt_f32_to_f16(2.0f * frand());
                s->v[at + d] = qt_f32_to_f16(frand());
                s->kd[((size_t)g * n + i) * hd + d] = qt_f16_to_f32(s->k[at + d]);
                s->vd[((size_t)g * n + i) * hd + d] = qt_f16_to_f32(s->v[at + d]);
            }
        }
    fill_random(s->q, (int64_t)n_head_kv * n_q * hd, 1.0f);
    return true;
}

static void setup_free(struct setup *s) {
    free(s->k); free(s->v); free(s->table); free(s->kd); free(s->vd); free(s->q);
}

static struct attn_kv view_of(const struct setup *s, const uint16_t *k, const uint16_t *v, const int32_t *table) {
    return (struct attn_kv){ k, v, table, s->bs, s->n_head_kv, s->hd, s->n };
}

/* softmax(q.K^T / sqrt(hd)) V in double over the contiguous copies. */
static void dense_ref(const struct setup *s, int g, const float *q, double *out) {
    double *w = malloc((size_t)s->n * sizeof(double)), max = -INFINITY, sum = 0;
    for (int i = 0; i < s->n; i++) {
        double dot = 0;
        for (int d = 0; d < s->hd; d++) dot += (double)q[d] * s->kd[((size_t)g * s->n + i) * s->hd + d];
        w[i] = dot / sqrt((double)s->hd);
        if (w[i] > max) max = w[i];
    }
    for (int i = 0; i < s->n; i++) sum += (w[i] = exp(w[i] - max));
    for (int d = 0; d < s->hd; d++) out[d] = 0;
    for (int i = 0; i < s->n; i++)
        for (int d = 0; d < s->hd; d++) out[d] += w[i] / sum * s->vd[((size_t)g * s->n + i) * s->hd + d];
    free(w);
}

static void check_case(int bs, int hd, int n_head_kv, int n_q, int n) {
    struct setup s;
    if (!setup_make(&s, bs, hd, n_head_kv, n_q, n)) { CHECK(0); setup_free(&s); return; }
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t group = (size_t)n_q * hd;
    uint8_t *scratch = aligned((attn_scratch_bytes(n, hd, n_q) + 63) / 64 * 64);
    float *ref = malloc(group * sizeof(float)), *fast = malloc(group * sizeof(float));
    float *alone = malloc((size_t)hd * sizeof(float)), *moved = malloc(group * sizeof(float));
    double *want = malloc((size_t)hd * sizeof(double));
    int bad_dense = 0, bad_fast = 0, bad_alone = 0, bad_moved = 0;

    /* The same blocks at other places in a copy of the pool. */
    const int nb = (n + bs - 1) / bs;
    const size_t run = (size_t)n_head_kv * bs * hd, pool = (size_t)s.n_blocks_pool * run;
    uint16_t *k2 = malloc(pool * sizeof(uint16_t)), *v2 = malloc(pool * sizeof(uint16_t));
    int32_t *table2 = malloc((size_t)s.n_blocks_pool * sizeof(int32_t));
    CHECK(scratch && ref && fast && alone && moved && want && k2 && v2 && table2);
    shuffle(table2, s.n_blocks_pool);
    for (int b = 0; b < nb; b++) {
        memcpy(k2 + (size_t)table2[b] * run, s.k + (size_t)s.table[b] * run, run * sizeof(uint16_t));
        memcpy(v2 + (size_t)table2[b] * run, s.v + (size_t)s.table[b] * run, run * sizeof(uint16_t));
    }

    const struct attn_kv kv = view_of(&s, s.k, s.v, s.table), kv2 = view_of(&s, k2, v2, table2);
    for (int g = 0; g < n_head_kv; g++) {
        const float *q = s.q + (size_t)g * group;
        attn_heads_ref(q, n_q, g, &kv, scale, ref, scratch);
        attn_heads(q, n_q, g, &kv, scale, fast, scratch);
        attn_heads(q, n_q, g, &kv2, scale, moved, scratch);
        bad_moved += memcmp(fast, moved, group * sizeof(float)) != 0;
        for (int h = 0; h < n_q; h++) {
            const float *qh = q + (size_t)h * hd;
            dense_ref(&s, g, qh, want);
            attn_heads(qh, 1, g, &kv, scale, alone, scratch);
            bad_alone += memcmp(alone, fast + (size_t)h * hd, (size_t)hd * sizeof(float)) != 0;
            for (int d = 0; d < hd; d++) {
                /* F16 rounding of q and of the probabilities: ~1e-3 of |v| <= 1. */
                bad_dense += !(fabs(ref[h * hd + d] - want[d]) <= 4e-3);
                bad_fast += !(fabs(fast[h * hd + d] - ref[h * hd + d]) <= 2e-4);
            }
        }
    }
    if (bad_dense + bad_fast + bad_alone + bad_moved)
        fprintf(stderr, "  bs %d hd %d kv heads %d group %d n %d: dense %d fast %d alone %d moved %d\n", bs, hd,
                n_head_kv, n_q, n, bad_dense, bad_fast, bad_alone, bad_moved);
    CHECK_EQ(bad_dense, 0);
    CHECK_EQ(bad_fast, 0);
    CHECK_EQ(bad_alone, 0);
    CHECK_EQ(bad_moved, 0);
    free(scratch); free(ref); free(fast); free(alone); free(moved); free(want);
    free(k2); free(v2); free(table2);
    setup_free(&s);
}

static void test_shapes(void) {
    static const int bss[] = { 1, 7, 16, 32 }, hds[] = { 16, 40, 64, 80, 128, 160 }, ns[] = { 1, 2, 15, 16, 17, 100 };
    static const int groups[] = { 1, 2, 5 };
    for (size_t a = 0; a < sizeof(bss) / sizeof(bss[0]); a++)
        for (size_t b = 0; b < sizeof(hds) / sizeof(hds[0]); b++)
            for (size_t c = 0; c < sizeof(ns) / sizeof(ns[0]); c++)
                check_case(bss[a], hds[b], 2, groups[(a + b + c) % 3], ns[c]);
}

static void test_gqa_groups(void) {
    for (int n_q = 1; n_q <= 8; n_q *= 2) check_case(16, 64, 3, n_q, 77);
}

/* Past the fast path's touch window (1 MiB of one head's K): hd 128, blocks
 * of 16 tokens make 4 KiB runs, so 256 blocks per window; 4200 keys span two. */
static void test_long_context(void) {
    check_case(16, 128, 1, 2, 4200);
}

int main(void) {
    rnd_seed(77);
    RUN(test_shapes);
    RUN(test_gqa_groups);
    RUN(test_long_context);
    return check_report();
}
