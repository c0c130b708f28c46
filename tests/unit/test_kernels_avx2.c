/* test_kernels_avx2.c - the AVX2 + FMA + F16C kernels (kernels/quant_avx2.c)
 * against the portable reference of quant.c, called directly (whatever
 * qfast_get would pick on this CPU).
 *
 * - availability: the CPU runs AVX2/FMA/F16C (a failure, loudly, if not: the
 *   kernel tests are then skipped, since they would fault);
 * - act_prep: the prepared activation decodes to exactly the reference
 *   dot_type quantization (quants, scales, bsums), including ties, all-zero
 *   blocks, and +-amax pairs (the first one's sign wins), and the padding is 0;
 * - accuracy: tile() agrees with the reference vec_dot within a tolerance
 *   relative to sum |w_i x_i| (as test_kernels.c); weights quantized from
 *   floats and made of raw random bytes; lengths of 1, 2, 3, 7, ... blocks;
 * - invariance, bit for bit: token t's result is the same alone (nt = 1) and
 *   at every slot of tiles of every width 1..max_tok;
 * - cross-check: where the CPU also runs the AVX-512 kernels, both give the
 *   same bits (quant_avx2.c follows their float operations exactly). */
#include "kernels/quant.h"
#include "kernels/quant_fast.h"
#include "tests/unit/check.h"
#include "tests/unit/rnd.h"

#include <stdbool.h>
#include <stdint.h>

static bool have_avx2;

static const enum qtype types[] = {
    QTYPE_Q8_0, QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q4_K, QTYPE_Q6_K, QTYPE_F16, QTYPE_F32,
};
#define N_TYPES (int)(sizeof(types) / sizeof(types[0]))

static void test_available(void) {
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                __builtin_cpu_supports("f16c");
    if (!have_avx2) fprintf(stderr, "  this CPU lacks AVX2/FMA/F16C: AVX2 kernel tests NOT run\n");
    CHECK(have_avx2);
    for (int i = 0; i < N_TYPES; i++) {
        const struct qfast *fk = qfast_avx2_get(types[i]);
        CHECK(fk != NULL);
        if (!fk) continue;
        CHECK(fk->max_tok >= 1 && fk->max_tok <= QFAST_MAX_TOK);
        CHECK(strncmp(fk->name, "avx2-", 5) == 0);
        CHECK_EQ(fk->act_bytes(256 * 3) % 64, 0);
    }
    CHECK(qfast_avx2_get(QTYPE_BF16) == NULL);
    CHECK(qfast_avx2_get(QTYPE_Q8_K) == NULL);
    CHECK(qfast_avx2_get(QTYPE_Q4_1) == NULL);
}

/* Awkward activation contents: ties, zero blocks, +-amax, tiny/huge values. */
static void fill_activation(float *x, int64_t n, int variant) {
    fill_random(x, n, 1.0f);
    if (variant == 1) /* integers: amax 16, id = 127/16, x*id ties at +-8 */
        for (int64_t i = 0; i < n; i++) x[i] = (float)((i % 32) - 16);
    if (variant == 2 && n >= 32) /* a zero first block, a zero 256-block */
        for (int64_t i = 0; i < (n >= 256 ? 256 : 32); i++) x[i] = 0.0f;
    if (variant == 3) { /* -a before +a in every block: the first sign wins */
        for (int64_t b = 0; b + 256 <= n; b += 256) { x[b + 5] = -7.5f; x[b + 200] = 7.5f; }
        for (int64_t b = 0; b + 32 <= n; b += 32) x[b + 3] = -9.0f;
        for (int64_t b = 0; b + 32 <= n; b += 32) x[b + 30] = 9.0f;
    }
    if (variant == 4) /* wide dynamic range */
        for (int64_t i = 0; i < n; i++) x[i] *= (i % 3 == 0) ? 1e-6f : (i % 3 == 1) ? 1e3f : 1.0f; /* F16 max 65504 */
}

/* act_prep against the reference dot_type quantizer of the same row. */
static int check_act_prep(enum qtype t, int64_t n, int variant) {
    const struct qfast *fk = qfast_avx2_get(t);
    const struct qtype_info *wi = qtype_get(t), *di = qtype_get(wi->dot_type);
    const size_t ab = fk->act_bytes(n), drb = qtype_row_bytes(wi->dot_type, n);
    float *x = malloc((size_t)n * sizeof(float));
    uint8_t *ref = malloc(drb), *act = aligned(ab);
    CHECK(x && ref && act);
    fill_activation(x, n, variant);
    memset(act, 0xA5, ab);
    fk->act_prep(x, n, act);
    di->from_float(x, ref, n);
    int bad = 0;
    size_t used = 0;
    if (wi->dot_type == QTYPE_Q8_0) { /* qs[nb * 32], then float d[nb] */
        const int64_t nb = n / 32;
        const float *d = (const float *)(act + nb * 32);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *rb = ref + b * 34;
            uint16_t rd;
            memcpy(&rd, rb, 2);
            const float rdf = qt_f16_to_f32(rd);
            if (memcmp(act + b * 32, rb + 2, 32) != 0 || memcmp(&d[b], &rdf, 4) != 0) bad++;
        }
        used = (size_t)nb * 36;
    } else if (wi->dot_type == QTYPE_Q8_K) { /* the reference blocks as they are */
        if (memcmp(act, ref, drb) != 0) bad++;
        used = drb;
    } else { /* float, F16-rounded for F16 weights */
        const float *a = (const float *)act;
        for (int64_t i = 0; i < n; i++) {
            float r;
            if (wi->dot_type == QTYPE_F16) { uint16_t h; memcpy(&h, ref + 2 * i, 2); r = qt_f16_to_f32(h); }
            else memcpy(&r, ref + 4 * i, 4);
            if (memcmp(&a[i], &r, 4) != 0) bad++;
        }
        used = (size_t)n * 4;
    }
    for (size_t i = used; i < ab; i++) bad += act[i] != 0; /* zero padding */
    if (bad)
        fprintf(stderr, "  act_prep %s n=%lld variant %d: %d mismatches\n", wi->name,
                (long long)n, variant, bad);
    free(x); free(ref); free(act);
    return bad != 0;
}

static void test_act_prep(void) {
    if (!have_avx2) return;
    int runs = 0, bad = 0;
    for (int i = 0; i < N_TYPES; i++) {
        const int be = qtype_get(types[i])->block_elems;
        static const int nblk[] = {1, 2, 3, 7, 12};
        static const int nel_f[] = {1, 7, 8, 9, 15, 16, 17, 100, 1001};
        for (int v = 0; v < 5; v++) {
            if (be == 1)
                for (size_t k = 0; k < sizeof(nel_f) / sizeof(int); k++, runs++)
                    bad += check_act_prep(types[i], nel_f[k], v);
            else
                for (size_t k = 0; k < sizeof(nblk) / sizeof(int); k++, runs++)
                    bad += check_act_prep(types[i], (int64_t)nblk[k] * be, v);
        }
    }
    CHECK_EQ(bad, 0);
    fprintf(stderr, "  %d act_prep comparisons\n", runs);
}

#define MAX_TOK 9

static int n_accuracy, n_invariance, n_cross;

/* One type, one size: AVX2 tiles against the reference, against themselves
 * at every tile width and slot, and against the AVX-512 kernel if any. */
static void check_type_size(enum qtype t, int64_t n, bool raw) {
    const struct qfast *fk = qfast_avx2_get(t);
    const struct qfast *fz = qfast_get_cpu(t); /* the AVX-512 kernel, if this CPU has it */
    if (fz && strncmp(fz->name, "avx512-", 7) != 0) fz = NULL;
    const struct qtype_info *wi = qtype_get(t), *di = qtype_get(wi->dot_type);
    const size_t wrb = qtype_row_bytes(t, n), drb = qtype_row_bytes(wi->dot_type, n);
    const size_t arb = fk->act_bytes(n), zrb = fz ? fz->act_bytes(n) : 64;
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * MAX_TOK * sizeof(float));
    float *wd = malloc((size_t)n * sizeof(float)), *xd = malloc((size_t)n * sizeof(float));
    uint8_t *wq = malloc(wrb), *xq = malloc(drb * MAX_TOK);
    uint8_t *act = aligned(arb * MAX_TOK), *zact = aligned(zrb * MAX_TOK);
    CHECK(wf && xf && wd && xd && wq && xq && act && zact);

    fill_random(wf, n, 0.5f);
    wi->from_float(wf, wq, n);
    if (raw) randomize_blocks(t, wq, n);
    wi->to_float(wq, wd, n);
    fill_random(xf, n * MAX_TOK, 1.0f);
    fill_activation(xf + 2 * n, n, 2); /* one token with zero blocks */
    fill_activation(xf + 5 * n, n, 4); /* one with a wide range */
    for (int k = 0; k < MAX_TOK; k++) {
        di->from_float(xf + k * n, xq + k * drb, n);
        fk->act_prep(xf + k * n, n, act + k * arb);
        if (fz) fz->act_prep(xf + k * n, n, zact + k * zrb);
    }

    float single[MAX_TOK];
    int bad_acc = 0, bad_inv = 0, bad_cross = 0;
    for (int k = 0; k < MAX_TOK; k++) {
        fk->tile(n, wq, act + k * arb, arb, 1, &single[k], 1);
        const float ref = wi->vec_dot(n, wq, xq + k * drb);
        di->to_float(xq + k * drb, xd, n);
        double sabs = 0;
        for (int64_t i = 0; i < n; i++) sabs += fabs((double)wd[i] * xd[i]);
        const double tol = 2e-6 * sqrt((double)n) * sabs + 1e-30;
        n_accuracy++;
        if (!(fabs((double)single[k] - ref) <= tol) && bad_acc++ < 3)
            fprintf(stderr, "  %s n=%lld raw=%d tok %d: avx2 %.9g ref %.9g (tol %.3g)\n",
                    wi->name, (long long)n, raw, k, single[k], ref, tol);
        if (fz) {
            float z;
            fz->tile(n, wq, zact + k * zrb, zrb, 1, &z, 1);
            n_cross++;
            if (memcmp(&z, &single[k], sizeof z) != 0 && bad_cross++ < 3)
                fprintf(stderr, "  %s n=%lld raw=%d tok %d: avx2 %.9g avx512 %.9g\n", wi->name,
                        (long long)n, raw, k, single[k], z);
        }
    }
    for (int nt = 1; nt <= fk->max_tok; nt++)
        for (int s = 0; s + nt <= MAX_TOK; s++) {
            float out[QFAST_MAX_TOK * 3];
            for (int k = 0; k < QFAST_MAX_TOK * 3; k++) out[k] = -12345.0f;
            fk->tile(n, wq, act + s * arb, arb, nt, out, 3); /* strided output */
            for (int k = 0; k < nt; k++) {
                n_invariance++;
                if (memcmp(&out[k * 3], &single[s + k], sizeof(float)) != 0 && bad_inv++ < 3)
                    fprintf(stderr, "  %s n=%lld nt=%d slot %d: %.9g != %.9g alone\n", wi->name,
                            (long long)n, nt, k, out[k * 3], single[s + k]);
                /* the stride gaps stay untouched */
                if (out[k * 3 + 1] != -12345.0f || out[k * 3 + 2] != -12345.0f) bad_inv++;
            }
        }
    CHECK_EQ(bad_acc, 0);
    CHECK_EQ(bad_inv, 0);
    CHECK_EQ(bad_cross, 0);
    free(wf); free(xf); free(wd); free(xd); free(wq); free(xq); free(act); free(zact);
}

static void test_tiles(void) {
    if (!have_avx2) return;
    n_accuracy = n_invariance = n_cross = 0;
    for (int i = 0; i < N_TYPES; i++) {
        const enum qtype t = types[i];
        const int be = qtype_get(t)->block_elems;
        static const int nblk_q[] = {1, 2, 3, 5, 7, 12, 57, 64};
        static const int nblk_k[] = {1, 2, 3, 5, 7, 11};
        static const int nel_f[] = {1, 3, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 288, 1001, 2048};
        if (be == 1) {
            for (size_t k = 0; k < sizeof(nel_f) / sizeof(nel_f[0]); k++) {
                check_type_size(t, nel_f[k], false);
                check_type_size(t, nel_f[k], true);
            }
        } else {
            const int *nb = be == 32 ? nblk_q : nblk_k;
            const size_t cnt = be == 32 ? sizeof(nblk_q) / sizeof(int) : sizeof(nblk_k) / sizeof(int);
            for (size_t k = 0; k < cnt; k++) {
                check_type_size(t, (int64_t)nb[k] * be, false);
                check_type_size(t, (int64_t)nb[k] * be, true);
            }
        }
    }
    fprintf(stderr, "  %d accuracy, %d invariance, %d avx512 cross-checks\n", n_accuracy,
            n_invariance, n_cross);
    if (!n_cross) fprintf(stderr, "  (no AVX-512 kernels on this CPU: cross-check not run)\n");
}

int main(void) {
    rnd_seed(0x9e3779b97f4a7c15ull);
    RUN(test_available);
    RUN(test_act_prep);
    RUN(test_tiles);
    return check_report();
}
