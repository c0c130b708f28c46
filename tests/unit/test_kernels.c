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
 * - packed kernels (row-interleaved groups of 16 rows, mm_pack): every row of
 *   a group, for row counts that do not fill the last group, against the
 *   reference; bit for bit the same at every tile width and slot; and through
 *   mm_run, token t's bits in batches of 1..17 at every position with 1 and 2
 *   threads equal its bits alone.
 * Types the CPU cannot run fast are skipped (reported, not failed). */
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_fast.h"
#include "kernels/workers.h"
#include "tests/unit/check.h"
#include "tests/unit/rnd.h"

#include <stdint.h>

static const enum qtype fast_types[] = {
    QTYPE_Q8_0, QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q4_K, QTYPE_Q6_K, QTYPE_F16, QTYPE_F32,
};
#define N_FAST_TYPES (int)(sizeof(fast_types) / sizeof(fast_types[0]))

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

/* One packed type, n columns, n_rows rows (any count: the last group may be
 * partial): each row of each group against the reference vec_dot, and every
 * (row, token) bit for bit the same at every tile width and slot. */
#define PK_TOK (QPACK_MAX_TOK + 1)

static void check_packed(enum qtype t, const struct qpack *pk, int64_t n, int n_rows, bool raw) {
    const struct qtype_info *wi = qtype_get(t), *di = qtype_get(wi->dot_type);
    const size_t wrb = qtype_row_bytes(t, n), drb = qtype_row_bytes(wi->dot_type, n);
    const size_t arb = pk->act_bytes(n), gb = pk->group_bytes(n);
    const int n_groups = (n_rows + QPACK_ROWS - 1) / QPACK_ROWS;
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * PK_TOK * sizeof(float));
    float *wd = malloc((size_t)n * sizeof(float)), *xd = malloc((size_t)n * sizeof(float));
    uint8_t *wq = malloc(wrb * (size_t)n_rows), *xq = malloc(drb * PK_TOK);
    uint8_t *act = aligned(arb * PK_TOK), *grp = aligned(gb * (size_t)n_groups);
    float *single = malloc((size_t)n_rows * PK_TOK * sizeof(float));
    CHECK(wf && xf && wd && xd && wq && xq && act && grp && single);
    CHECK_EQ(arb % 64, 0);
    CHECK_EQ(gb % 64, 0);

    for (int r = 0; r < n_rows; r++) {
        fill_random(wf, n, 0.5f);
        wi->from_float(wf, wq + (size_t)r * wrb, n);
        if (raw) randomize_blocks(t, wq + (size_t)r * wrb, n);
    }
    for (int g = 0; g < n_groups; g++) {
        const int nr = n_rows - g * QPACK_ROWS < QPACK_ROWS ? n_rows - g * QPACK_ROWS : QPACK_ROWS;
        pk->pack_group(wq + (size_t)g * QPACK_ROWS * wrb, wrb, nr, n, grp + (size_t)g * gb);
    }
    fill_random(xf, n * PK_TOK, 1.0f);
    for (int k = 0; k < PK_TOK; k++) {
        di->from_float(xf + k * n, xq + k * drb, n);
        pk->act_prep(xf + k * n, n, act + k * arb);
    }

    int bad_acc = 0, bad_inv = 0;
    for (int g = 0; g < n_groups; g++) {
        const int nr = n_rows - g * QPACK_ROWS < QPACK_ROWS ? n_rows - g * QPACK_ROWS : QPACK_ROWS;
        for (int k = 0; k < PK_TOK; k++)   /* alone; y row-major (token, row) */
            pk->tile(n, grp + (size_t)g * gb, act + k * arb, arb, 1,
                     single + (size_t)k * n_rows + g * QPACK_ROWS, (size_t)n_rows, nr);
    }
    for (int r = 0; r < n_rows; r++) {
        wi->to_float(wq + (size_t)r * wrb, wd, n);
        for (int k = 0; k < PK_TOK; k++) {
            const float got = single[(size_t)k * n_rows + r];
            const float ref = wi->vec_dot(n, wq + (size_t)r * wrb, xq + k * drb);
            di->to_float(xq + k * drb, xd, n);
            double sabs = 0;
            for (int64_t i = 0; i < n; i++) sabs += fabs((double)wd[i] * xd[i]);
            const double tol = 2e-6 * sqrt((double)n) * sabs + 1e-30;
            /* Q8_0/Q4_0 follow the reference's float order exactly */
            const bool exact = t == QTYPE_Q8_0 || t == QTYPE_Q4_0;
            if (exact ? memcmp(&got, &ref, sizeof got) != 0 : !(fabs((double)got - ref) <= tol))
                if (bad_acc++ < 3)
                    fprintf(stderr, "  %s packed n=%lld raw=%d row %d tok %d: %.9g ref %.9g (tol %.3g)\n",
                            wi->name, (long long)n, raw, r, k, got, ref, tol);
        }
    }
    float *out = malloc((size_t)QPACK_ROWS * QPACK_MAX_TOK * 2 * sizeof(float));
    CHECK(out != NULL);
    for (int g = 0; g < n_groups; g++) {
        const int nr = n_rows - g * QPACK_ROWS < QPACK_ROWS ? n_rows - g * QPACK_ROWS : QPACK_ROWS;
        for (int nt = 1; nt <= pk->max_tok; nt++)
            for (int sl = 0; sl + nt <= PK_TOK; sl++) {
                /* stride 2 groups: rows past nr must stay untouched */
                const size_t ys = 2 * QPACK_ROWS;
                for (size_t i = 0; i < ys * (size_t)nt; i++) out[i] = -7.0f;
                pk->tile(n, grp + (size_t)g * gb, act + sl * arb, arb, nt, out, ys, nr);
                for (int k = 0; k < nt; k++)
                    for (int i = 0; i < QPACK_ROWS; i++) {
                        const float *want = i < nr ? &single[(size_t)(sl + k) * n_rows + g * QPACK_ROWS + i]
                                                   : &(const float){-7.0f};
                        if (memcmp(&out[k * ys + i], want, sizeof(float)) != 0 && bad_inv++ < 3)
                            fprintf(stderr, "  %s packed n=%lld nt=%d slot %d row %d: %.9g != %.9g\n",
                                    wi->name, (long long)n, nt, k, g * QPACK_ROWS + i, out[k * ys + i], *want);
                    }
            }
    }
    CHECK_EQ(bad_acc, 0);
    CHECK_EQ(bad_inv, 0);
    free(out); free(wf); free(xf); free(wd); free(xd); free(wq); free(xq); free(act); free(grp); free(single);
}

/* The packed kernels quantize activations with their own SIMD code; it must
 * give the reference quantizer's bytes exactly (layouts: quant_avx512.c).
 * Rows include an all-zero block, ties of +a and -a for the largest |x|, and
 * values whose products land on .5 (round half to even). */
static void fill_awkward(float *x, int64_t n, int variant) {
    fill_random(x, n, 1.0f);
    if (variant == 1) for (int64_t i = 0; i < n && i < 256; i++) x[i] = 0.0f;
    if (variant == 2)
        for (int64_t i = 0; i < n; i++) x[i] = (float)((int)(i % 9) - 4) * 0.25f; /* ties, halves */
    if (variant == 3) { x[5] = 3.0f; x[7] = -3.0f; x[300 % n] = -3.0f; }
}

static void test_packed_act_prep_is_reference(void) {
    const struct qtype_info *q8 = qtype_get(QTYPE_Q8_0), *q8k = qtype_get(QTYPE_Q8_K);
    int bad = 0;
    for (int variant = 0; variant < 4; variant++) {
        const int64_t n = 3 * 256;
        float x[3 * 256];
        fill_awkward(x, n, variant);
        const struct qpack *p0 = qpack_get_cpu(QTYPE_Q8_0), *p4 = qpack_get_cpu(QTYPE_Q4_0);
        const struct qpack *pk = qpack_get_cpu(QTYPE_Q4_K);
        if (!p0 || !p4 || !pk) { fprintf(stderr, "  (no packed kernels here)\n"); return; }
        /* Q8_0 / Q4_0: qs[nb*32] | f32 d[nb] | int32 -off*sum[nb] */
        uint8_t *a0 = aligned(p0->act_bytes(n)), *a4 = aligned(p4->act_bytes(n));
        uint8_t *ak = aligned(pk->act_bytes(n));
        uint8_t ref[3 * 292];
        CHECK(a0 && a4 && ak);
        p0->act_prep(x, n, a0);
        p4->act_prep(x, n, a4);
        q8->from_float(x, ref, n);
        const int64_t nb = n / 32;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = ref + b * 34;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            int32_t sum = 0;
            for (int i = 0; i < 32; i++) sum += (int8_t)blk[2 + i];
            const float d = qt_f16_to_f32(dh);
            const int32_t c0 = -128 * sum, c4 = -8 * sum;
            bad += memcmp(a0 + b * 32, blk + 2, 32) != 0;
            bad += memcmp(a0 + nb * 32 + b * 4, &d, 4) != 0;
            bad += memcmp(a0 + nb * 36 + b * 4, &c0, 4) != 0;
            bad += memcmp(a4 + nb * 36 + b * 4, &c4, 4) != 0;
        }
        /* K types, per super-block of 384: qs[256] | int32 -32*bsums[16] |
         * f32 d | int16 pair sums of bsums[8] */
        pk->act_prep(x, n, ak);
        q8k->from_float(x, ref, n);
        for (int64_t b = 0; b < n / 256; b++) {
            const uint8_t *blk = ref + b * 292, *o = ak + b * 384;
            int16_t bs[16];
            memcpy(bs, blk + 260, sizeof bs);
            bad += memcmp(o, blk + 4, 256) != 0;
            bad += memcmp(o + 320, blk, 4) != 0;
            for (int g = 0; g < 16; g++) {
                const int32_t c = -32 * bs[g];
                bad += memcmp(o + 256 + 4 * g, &c, 4) != 0;
            }
            for (int j = 0; j < 8; j++) {
                const int16_t s2 = (int16_t)(bs[2 * j] + bs[2 * j + 1]);
                bad += memcmp(o + 324 + 2 * j, &s2, 2) != 0;
            }
        }
        free(a0); free(a4); free(ak);
    }
    CHECK_EQ(bad, 0);
}

static void test_packed_vs_reference(void) {
    static const enum qtype types[] = {QTYPE_Q8_0, QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q4_K, QTYPE_Q6_K};
    static const int rows[] = {1, 5, 16, 17, 37};
    int tested = 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const struct qpack *pk = qpack_get_cpu(types[i]);
        if (!pk) { fprintf(stderr, "  (no packed kernel for %s)\n", qtype_get(types[i])->name); continue; }
        CHECK(pk->max_tok >= 1 && pk->max_tok <= QPACK_MAX_TOK);
        const int be = qtype_get(types[i])->block_elems;
        static const int nblk_q[] = {1, 2, 3, 7, 24};
        static const int nblk_k[] = {1, 2, 3};
        const int *nb = be == 32 ? nblk_q : nblk_k;
        const size_t cnt = be == 32 ? sizeof(nblk_q) / sizeof(int) : sizeof(nblk_k) / sizeof(int);
        for (size_t k = 0; k < cnt; k++)
            for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
                check_packed(types[i], pk, (int64_t)nb[k] * be, rows[r], false);
                check_packed(types[i], pk, (int64_t)nb[k] * be, rows[r], true);
            }
        tested++;
    }
    fprintf(stderr, "  %d types have packed kernels here\n", tested);
}

/* mm_run: token t's row of y must be the same bits in any batch, at any
 * position, with 1 or 2 threads; and near the reference. */
#define MM_MAX_TOK 17

static void check_mm(enum qtype t, int64_t n_cols, int64_t n_rows, bool pack, struct workers *w1,
                     struct workers *w2) {
    const struct qtype_info *wi = qtype_get(t), *di = qtype_get(wi->dot_type);
    const size_t wrb = qtype_row_bytes(t, n_cols), drb = qtype_row_bytes(wi->dot_type, n_cols);
    float *wf = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    uint8_t *wq = malloc(wrb * (size_t)n_rows);
    float *x = malloc((size_t)(n_cols * MM_MAX_TOK) * sizeof(float));
    float *y1 = malloc((size_t)(n_rows * MM_MAX_TOK) * sizeof(float));
    float *yb = malloc((size_t)(n_rows * MM_MAX_TOK) * sizeof(float));
    uint8_t *xq = malloc(drb);
    CHECK(wf && wq && x && y1 && yb && xq);
    fill_random(wf, n_rows * n_cols, 0.5f);
    for (int64_t r = 0; r < n_rows; r++) wi->from_float(wf + r * n_cols, wq + r * wrb, n_cols);
    fill_random(x, n_cols * MM_MAX_TOK, 1.0f);
    struct qtensor qt = {.data = wq, .type = (uint32_t)t, .n_cols = n_cols, .n_rows = n_rows};
    void *packed = NULL;
    if (pack) {
        const size_t pb = mm_pack_bytes(&qt);
        CHECK(pb > 0);
        packed = aligned(pb);
        CHECK(packed != NULL);
        mm_pack(&qt, packed);
        CHECK(qt.packed == packed);
    }
    void *scratch = malloc(mm_scratch_bytes(&qt, MM_MAX_TOK));
    CHECK(scratch != NULL);

    /* each token alone, one thread */
    for (int k = 0; k < MM_MAX_TOK; k++) mm_run(&qt, x + k * n_cols, 1, y1 + k * n_rows, scratch, w1);
    int bad_ref = 0, bad_inv = 0;
    for (int k = 0; k < MM_MAX_TOK; k++) {
        di->from_float(x + k * n_cols, xq, n_cols);
        for (int64_t r = 0; r < n_rows; r++) {
            const float ref = wi->vec_dot(n_cols, wq + r * wrb, xq);
            if (!(fabs(y1[k * n_rows + r] - ref) <= 1e-4 * (1.0 + fabs(ref)))) bad_ref++;
        }
    }
    for (int threads = 1; threads <= 2; threads++)
        for (int nt = 1; nt <= MM_MAX_TOK; nt++)
            for (int s = 0; s + nt <= MM_MAX_TOK; s++) {
                mm_run(&qt, x + s * n_cols, nt, yb, scratch, threads == 1 ? w1 : w2);
                if (memcmp(yb, y1 + s * n_rows, (size_t)(nt * n_rows) * sizeof(float)) != 0) {
                    if (bad_inv++ < 3)
                        fprintf(stderr, "  mm %s%s %lldx%lld: batch %d at %d, %d threads differs\n",
                                wi->name, pack ? " packed" : "", (long long)n_rows, (long long)n_cols,
                                nt, s, threads);
                }
            }
    CHECK_EQ(bad_ref, 0);
    CHECK_EQ(bad_inv, 0);
    free(wf); free(wq); free(x); free(y1); free(yb); free(xq); free(scratch); free(packed);
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
        check_mm(all[i], cols, 37, false, w1, w2);
        check_mm(all[i], be == 1 ? 16 : be, 17, false, w1, w2);
        if (!qpack_get(all[i])) continue;   /* mm_pack packs only what mm_run will use */
        check_mm(all[i], cols, 37, true, w1, w2);
        check_mm(all[i], be, 17, true, w1, w2);
        check_mm(all[i], 2 * be, 5, true, w1, w2);
        check_mm(all[i], cols, 48, true, w1, w2);
    }
    workers_free(w1);
    workers_free(w2);
}

/* The switch: qfast_get and qpack_get follow SPARROW_KERNELS, read once per
 * process, so only their agreement with the _cpu variants can be checked here. */
static void test_dispatch(void) {
    const char *e = getenv("SPARROW_KERNELS");
    const bool ref = e && strcmp(e, "ref") == 0, avx2 = e && strcmp(e, "avx2") == 0;
    for (int i = 0; i < N_FAST_TYPES; i++) {
        const struct qfast *a = qfast_get(fast_types[i]), *b = qfast_get_cpu(fast_types[i]);
        CHECK(ref ? a == NULL : avx2 ? a == qfast_avx2_get(fast_types[i]) : a == b);
        const struct qpack *pa = qpack_get(fast_types[i]), *pb = qpack_get_cpu(fast_types[i]);
        CHECK(ref || avx2 ? pa == NULL : pa == pb);
        /* nothing is packed under SPARROW_KERNELS=ref/avx2, so mm_run takes the chosen tiles */
        const struct qtensor qt = {.data = NULL, .type = (uint32_t)fast_types[i], .n_cols = 256, .n_rows = 16};
        if (ref || avx2) CHECK_EQ(mm_pack_bytes(&qt), 0);
    }
    /* BF16: the vdpbf16ps kernel where the CPU has it, never under avx2/ref */
    CHECK(qfast_get(QTYPE_BF16) == (ref || avx2 ? NULL : qfast_bf16_get()));
    CHECK(qfast_get(QTYPE_Q8_K) == NULL);
}

int main(void) {
    RUN(test_dispatch);
    RUN(test_tiles_vs_reference);
    RUN(test_packed_act_prep_is_reference);
    RUN(test_packed_vs_reference);
    RUN(test_mm_batch_invariance);
    return check_report();
}
