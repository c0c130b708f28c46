/* test_kernels.c - the SIMD kernels (quant_fast.h) against the reference
 * vec_dot of quant.c, and their batch invariance, directly and through
 * mm_run.
 *
 * - accuracy: every fast tile agrees with the reference dot within a
 *   tolerance relative to sum |w_i x_i| (the fast path reorders float sums);
 *   weights both quantized from floats and made of raw random bytes (extreme
 *   quants and scales), sizes of 1, 2, odd and many blocks;
 * - invariance, bit for bit: token t's result is the same alone (nt = 1) and
 *   at every slot of tiles of every width; mm_run gives token t the same bits
 *   in batches of 1..9 at every position, with 1 and 2 threads, for row
 *   counts that are not a multiple of the row chunk.
 * Types the CPU cannot run fast are skipped (reported, not failed). */
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_fast.h"
#include "kernels/workers.h"
#include "tests/unit/check.h"

#include <stdint.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float frand(void) { /* uniform in [-1, 1) */
    return (float)((double)(rnd64() >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static void fill_random(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float v = (frand() + frand() + frand() + frand()) * 0.5f;
        if (frand() > 0.97f) v *= 6.0f;
        x[i] = v * scale;
    }
}

static const enum qtype fast_types[] = {
    QTYPE_Q8_0, QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q4_K, QTYPE_Q6_K, QTYPE_F16, QTYPE_F32,
};
#define N_FAST_TYPES (int)(sizeof(fast_types) / sizeof(fast_types[0]))

/* Overwrite a quantized row with random bytes, keeping the f16 scales sane
 * (random exponents could make inf/NaN, which says nothing about kernels). */
static void randomize_blocks(enum qtype t, uint8_t *row, int64_t n) {
    const struct qtype_info *wi = qtype_get(t);
    const int64_t nb = n / wi->block_elems;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = row + b * wi->block_bytes;
        for (int i = 0; i < wi->block_bytes; i++) blk[i] = (uint8_t)rnd64();
        uint16_t d = qt_f32_to_f16(0.01f + 0.02f * (frand() + 1.0f));
        uint16_t d2 = qt_f32_to_f16(0.01f * (frand() + 1.0f));
        switch (t) {
        case QTYPE_Q8_0: case QTYPE_Q4_0: case QTYPE_Q5_0: memcpy(blk, &d, 2); break;
        case QTYPE_Q4_K: memcpy(blk, &d, 2); memcpy(blk + 2, &d2, 2); break;
        case QTYPE_Q6_K: memcpy(blk + 208, &d, 2); break;
        default: break;
        }
    }
}

static void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

#define MAX_TOK 9

/* One type, one size: fast tiles against the reference and against
 * themselves at every tile width and slot. */
static void check_type_size(enum qtype t, const struct qfast *fk, int64_t n, bool raw) {
    const struct qtype_info *wi = qtype_get(t), *di = qtype_get(wi->dot_type);
    const size_t wrb = qtype_row_bytes(t, n), drb = qtype_row_bytes(wi->dot_type, n);
    const size_t arb = fk->act_bytes(n);
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * MAX_TOK * sizeof(float));
    float *wd = malloc((size_t)n * sizeof(float)), *xd = malloc((size_t)n * sizeof(float));
    uint8_t *wq = malloc(wrb), *xq = malloc(drb * MAX_TOK);
    uint8_t *act = aligned(arb * MAX_TOK);
    CHECK(wf && xf && wd && xd && wq && xq && act);
    CHECK_EQ(arb % 64, 0);

    fill_random(wf, n, 0.5f);
    wi->from_float(wf, wq, n);
    if (raw) randomize_blocks(t, wq, n);
    wi->to_float(wq, wd, n);
    fill_random(xf, n * MAX_TOK, 1.0f);
    for (int k = 0; k < MAX_TOK; k++) {
        di->from_float(xf + k * n, xq + k * drb, n);
        fk->act_prep(xf + k * n, n, act + k * arb);
    }

    float single[MAX_TOK];
    int bad_acc = 0, bad_inv = 0;
    for (int k = 0; k < MAX_TOK; k++) {
        fk->tile(n, wq, act + k * arb, arb, 1, &single[k], 1);
        const float ref = wi->vec_dot(n, wq, xq + k * drb);
        di->to_float(xq + k * drb, xd, n);
        double sabs = 0;
        for (int64_t i = 0; i < n; i++) sabs += fabs((double)wd[i] * xd[i]);
        const double tol = 2e-6 * sqrt((double)n) * sabs + 1e-30;
        if (!(fabs((double)single[k] - ref) <= tol)) {
            if (bad_acc++ < 3)
                fprintf(stderr, "  %s n=%lld raw=%d tok %d: fast %.9g ref %.9g (tol %.3g)\n",
                        wi->name, (long long)n, raw, k, single[k], ref, tol);
        }
    }
    for (int nt = 1; nt <= fk->max_tok; nt++)
        for (int s = 0; s + nt <= MAX_TOK; s++) {
            float out[QFAST_MAX_TOK * 3];
            fk->tile(n, wq, act + s * arb, arb, nt, out, 3); /* strided output */
            for (int k = 0; k < nt; k++)
                if (memcmp(&out[k * 3], &single[s + k], sizeof(float)) != 0) {
                    if (bad_inv++ < 3)
                        fprintf(stderr, "  %s n=%lld nt=%d slot %d: %.9g != %.9g alone\n", wi->name,
                                (long long)n, nt, k, out[k * 3], single[s + k]);
                }
        }
    CHECK_EQ(bad_acc, 0);
    CHECK_EQ(bad_inv, 0);
    free(wf); free(xf); free(wd); free(xd); free(wq); free(xq); free(act);
}

static void test_tiles_vs_reference(void) {
    int tested = 0;
    for (int i = 0; i < N_FAST_TYPES; i++) {
        const enum qtype t = fast_types[i];
        const struct qfast *fk = qfast_get_cpu(t);
        if (!fk) { fprintf(stderr, "  (no fast kernel for %s on this CPU)\n", qtype_get(t)->name); continue; }
        CHECK(fk->max_tok >= 1 && fk->max_tok <= QFAST_MAX_TOK);
        const int be = qtype_get(t)->block_elems;
        /* block counts: 1, 2, odd, and a long row */
        static const int nblk_q[] = {1, 2, 3, 5, 7, 12, 57};
        static const int nblk_k[] = {1, 2, 3, 5, 11};
        static const int nel_f[] = {1, 3, 15, 16, 17, 31, 33, 100, 288, 1001};
        if (be == 1) {
            for (size_t k = 0; k < sizeof(nel_f) / sizeof(nel_f[0]); k++)
                check_type_size(t, fk, nel_f[k], false);
        } else {
            const int *nb = be == 32 ? nblk_q : nblk_k;
            const size_t cnt = be == 32 ? sizeof(nblk_q) / sizeof(int) : sizeof(nblk_k) / sizeof(int);
            for (size_t k = 0; k < cnt; k++) {
                check_type_size(t, fk, (int64_t)nb[k] * be, false);
                check_type_size(t, fk, (int64_t)nb[k] * be, true);
            }
        }
        tested++;
    }
    fprintf(stderr, "  %d of %d types have fast kernels here\n", tested, N_FAST_TYPES);
}

/* mm_run: token t's row of y must be the same bits in any batch, at any
 * position, with 1 or 2 threads; and near the reference. */
static void check_mm(enum qtype t, int64_t n_cols, int64_t n_rows, struct workers *w1,
                     struct workers *w2) {
    const struct qtype_info *wi = qtype_get(t), *di = qtype_get(wi->dot_type);
    const size_t wrb = qtype_row_bytes(t, n_cols), drb = qtype_row_bytes(wi->dot_type, n_cols);
    float *wf = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    uint8_t *wq = malloc(wrb * (size_t)n_rows);
    float *x = malloc((size_t)(n_cols * MAX_TOK) * sizeof(float));
    float *y1 = malloc((size_t)(n_rows * MAX_TOK) * sizeof(float));
    float *yb = malloc((size_t)(n_rows * MAX_TOK) * sizeof(float));
    uint8_t *xq = malloc(drb);
    CHECK(wf && wq && x && y1 && yb && xq);
    fill_random(wf, n_rows * n_cols, 0.5f);
    for (int64_t r = 0; r < n_rows; r++) wi->from_float(wf + r * n_cols, wq + r * wrb, n_cols);
    fill_random(x, n_cols * MAX_TOK, 1.0f);
    struct qtensor qt = {wq, (uint32_t)t, n_cols, n_rows};
    void *scratch = malloc(mm_scratch_bytes(&qt, MAX_TOK));
    CHECK(scratch != NULL);

    /* each token alone, one thread */
    for (int k = 0; k < MAX_TOK; k++) mm_run(&qt, x + k * n_cols, 1, y1 + k * n_rows, scratch, w1);
    int bad_ref = 0, bad_inv = 0;
    for (int k = 0; k < MAX_TOK; k++) {
        di->from_float(x + k * n_cols, xq, n_cols);
        for (int64_t r = 0; r < n_rows; r++) {
            const float ref = wi->vec_dot(n_cols, wq + r * wrb, xq);
            if (!(fabs(y1[k * n_rows + r] - ref) <= 1e-4 * (1.0 + fabs(ref)))) bad_ref++;
        }
    }
    for (int threads = 1; threads <= 2; threads++)
        for (int nt = 1; nt <= MAX_TOK; nt++)
            for (int s = 0; s + nt <= MAX_TOK; s++) {
                mm_run(&qt, x + s * n_cols, nt, yb, scratch, threads == 1 ? w1 : w2);
                if (memcmp(yb, y1 + s * n_rows, (size_t)(nt * n_rows) * sizeof(float)) != 0) {
                    if (bad_inv++ < 3)
                        fprintf(stderr, "  mm %s %lldx%lld: batch %d at %d, %d threads differs\n",
                                wi->name, (long long)n_rows, (long long)n_cols, nt, s, threads);
                }
            }
    CHECK_EQ(bad_ref, 0);
    CHECK_EQ(bad_inv, 0);
    free(wf); free(wq); free(x); free(y1); free(yb); free(xq); free(scratch);
}

static void test_mm_batch_invariance(void) {
    struct sp_err err;
    struct workers *w1 = workers_create(1, &err), *w2 = workers_create(2, &err);
    CHECK(w1 && w2);
    if (!w1 || !w2) { workers_free(w1); workers_free(w2); return; }
    static const enum qtype all[] = {QTYPE_Q8_0, QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q4_K,
                                     QTYPE_Q6_K, QTYPE_F16, QTYPE_F32, QTYPE_BF16};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const int be = qtype_get(all[i])->block_elems;
        const int64_t cols = be == 256 ? 3 * 256 : be == 32 ? 7 * 32 : 100;
        check_mm(all[i], cols, 37, w1, w2);
        check_mm(all[i], be == 1 ? 16 : be, 17, w1, w2);
    }
    workers_free(w1);
    workers_free(w2);
}

/* The switch: qfast_get follows SPARROW_KERNELS, read once per process, so
 * only its agreement with qfast_get_cpu can be checked here. */
static void test_dispatch(void) {
    const char *e = getenv("SPARROW_KERNELS");
    const bool ref = e && strcmp(e, "ref") == 0;
    for (int i = 0; i < N_FAST_TYPES; i++) {
        const struct qfast *a = qfast_get(fast_types[i]), *b = qfast_get_cpu(fast_types[i]);
        CHECK(ref ? a == NULL : a == b);
    }
    CHECK(qfast_get(QTYPE_BF16) == NULL);
    CHECK(qfast_get(QTYPE_Q8_K) == NULL);
}

int main(void) {
    RUN(test_dispatch);
    RUN(test_tiles_vs_reference);
    RUN(test_mm_batch_invariance);
    return check_report();
}
