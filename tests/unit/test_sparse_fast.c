/* test_sparse_fast.c - the AVX-512 sparse tile kernels (kernels/sparse_avx512.c)
 * against the portable oracle (sparse_tile_ref) and a double-precision dot of
 * the dense expansion, and their batch invariance.
 *
 * - accuracy: for b = 1 every N:M format with m <= 16 and for b = 2, 4, 8, 16
 *   a spread of n of m (m = 64/b, 256/b and odd ones; 50% .. 87.5% and odd
 *   sparsities), all three value precisions, rows of 1, 2, 3 and 5
 *   super-blocks: |fast - ref| <= 1e-5 * sum |w x| (the kernels order their
 *   float sums differently);
 * - layout: rows built by hand from sparse.h's description (2:4 F16, 2:8
 *   Q8, 1x16 2:4 Q4), so kernel and encoder cannot agree on a wrong layout;
 * - invariance, bit for bit: token t's result alone (nt = 1, nr = 1)
 *   equals its result at every slot of tiles of every width 1..8, and a
 *   row's result alone equals its result at every place in calls of 1..4
 *   rows (the kernels compute up to 4 rows together);
 * - memory: activations end exactly at the end of their allocation (ASan
 *   sees any read past a row), and rows of random bytes (unchecked data)
 *   must not make a kernel read outside the activations.
 * Skipped (reported, not failed) when the CPU cannot run the kernels. */
#include "kernels/quant.h"
#include "kernels/cpu.h"
#include "kernels/sparse.h"
#include "tests/unit/check.h"
#include "tests/unit/rnd.h"

#include <stdint.h>

static const char *val_name(enum sparse_val v) {
    return v == SPARSE_VAL_F16 ? "f16" : v == SPARSE_VAL_Q8 ? "q8" : "q4";
}

static int n_skipped;
static int64_t n_compared, n_invariance;

/* Activations for nt tokens of n_cols floats, stride xs >= n_cols, placed so
 * the last token's row ends exactly at the end of the allocation. */
struct acts {
    float *mem, *x;
    size_t xs;
};

static struct acts acts_make(int64_t n_cols, int nt, size_t pad) {
    struct acts a;
    a.xs = (size_t)n_cols + pad;
    const size_t total = a.xs * (size_t)(nt - 1) + (size_t)n_cols;
    a.mem = malloc(total * sizeof(float));
    a.x = a.mem;
    fill_random(a.x, (int64_t)total, 1.0f);
    return a;
}

/* One format, one row length: fast vs ref vs double, and invariance. */
static void check_format(const struct sparse_fmt *f, int n_sb, int rows) {
    sparse_tile_fn fast = sparse_tile_avx512(f);
    if (!fast) {
        n_skipped++;
        return;
    }
    const int E = sparse_block_elems(f), SB = sparse_block_bytes(f);
    CHECK(E > 0 && SB > 0);
    if (E <= 0 || SB <= 0) return;
    const int64_t n_cols = (int64_t)E * n_sb;
    const size_t row_bytes = (size_t)SB * (size_t)n_sb;
    float *w = malloc(sizeof(float) * (size_t)(n_cols * rows));
    uint8_t *keep = malloc((size_t)(n_cols * rows));
    uint8_t *data = malloc(row_bytes * (size_t)rows);
    float *dense = malloc(sizeof(float) * (size_t)n_cols);
    fill_random(w, n_cols * rows, 0.05f);
    CHECK_EQ(sparse_choose_mask(f, 1, w, NULL, rows, n_cols, keep), 0);
    CHECK_EQ(sparse_encode(f, w, keep, rows, n_cols, data), 0);
    CHECK_EQ(sparse_check(f, data, rows, n_cols), 0);
    const int NT = SPARSE_MAX_TOK;
    struct acts a = acts_make(n_cols, NT, (size_t)(rnd64() % 3) * 16 + 3);
    float *alone_all = malloc(sizeof(float) * SPARSE_MAX_TOK * (size_t)rows);
    char name[64];
    snprintf(name, sizeof name, "b=%d %d:%d %s x%d", f->b, f->n, f->m, val_name(f->val), n_sb);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = data + (size_t)r * row_bytes;
        sparse_row_to_float(f, row, dense, n_cols);
        float y_ref[SPARSE_MAX_TOK * 3], y_fast[SPARSE_MAX_TOK * 3];
        /* whole tile, y strided */
        sparse_tile_ref(f, n_cols, row, 1, a.x, a.xs, NT, y_ref, 3);
        fast(f, n_cols, row, 1, a.x, a.xs, NT, y_fast, 3);
        float *alone = alone_all + (size_t)r * SPARSE_MAX_TOK;
        for (int t = 0; t < NT; t++) {
            const float *xt = a.x + (size_t)t * a.xs;
            double d = 0, mag = 0;
            for (int64_t c = 0; c < n_cols; c++) {
                d += (double)dense[c] * xt[c];
                mag += fabs((double)dense[c] * xt[c]);
            }
            const double tol = 1e-5 * mag + 1e-30;
            const float yf = y_fast[3 * t], yr = y_ref[3 * t];
            if (!(fabs(yf - yr) <= tol) || !(fabs(yf - d) <= tol)) {
                fprintf(stderr, "  %s row %d tok %d: fast %.9g ref %.9g double %.9g (tol %g)\n", name, r,
                        t, yf, yr, d, tol);
                check_failed_now++;
            }
            n_compared++;
            fast(f, n_cols, row, 1, xt, a.xs, 1, &alone[t], 1);
            if (memcmp(&alone[t], &y_fast[3 * t], sizeof(float)) != 0) {
                fprintf(stderr, "  %s row %d tok %d: alone %.9g, in tile of 8 %.9g\n", name, r, t,
                        alone[t], y_fast[3 * t]);
                check_failed_now++;
            }
        }
        /* every width, every slot */
        for (int nt = 1; nt <= NT; nt++)
            for (int s = 0; s + nt <= NT; s++) {
                float yt[SPARSE_MAX_TOK];
                fast(f, n_cols, row, 1, a.x + (size_t)s * a.xs, a.xs, nt, yt, 1);
                for (int j = 0; j < nt; j++) {
                    n_invariance++;
                    if (memcmp(&yt[j], &alone[s + j], sizeof(float)) != 0) {
                        fprintf(stderr, "  %s row %d: token %d in tile %d@%d gives %.9g, alone %.9g\n",
                                name, r, s + j, nt, s, yt[j], alone[s + j]);
                        check_failed_now++;
                    }
                }
            }
    }
    /* several rows per call: every group start, every row count, a spread
     * of token counts and slots; y holds the rows of a token side by side */
    static const int nts[] = {1, 2, 3, 8};
    for (int r0 = 0; r0 < rows; r0++)
        for (int nr = 1; nr <= SPARSE_MAX_ROWS && r0 + nr <= rows; nr++)
            for (size_t ni = 0; ni < sizeof nts / sizeof nts[0]; ni++)
                for (int s = 0; s + nts[ni] <= NT; s += NT - nts[ni] > 0 ? NT - nts[ni] : 1) {
                    const int nt = nts[ni];
                    const size_t ys = (size_t)nr + 1;
                    float ym[SPARSE_MAX_TOK * (SPARSE_MAX_ROWS + 1)];
                    fast(f, n_cols, data + (size_t)r0 * row_bytes, nr, a.x + (size_t)s * a.xs, a.xs, nt,
                         ym, ys);
                    for (int j = 0; j < nt; j++)
                        for (int i = 0; i < nr; i++) {
                            const float want = alone_all[(size_t)(r0 + i) * SPARSE_MAX_TOK + s + j];
                            n_invariance++;
                            if (memcmp(&ym[(size_t)j * ys + i], &want, sizeof(float)) != 0) {
                                fprintf(stderr, "  %s: row %d tok %d in a call of %d rows @%d, %d tokens @%d "
                                        "gives %.9g, alone %.9g\n", name, r0 + i, s + j, nr, r0, nt, s,
                                        ym[(size_t)j * ys + i], want);
                                check_failed_now++;
                            }
                        }
                }
    free(alone_all);
    free(a.mem);
    free(w);
    free(keep);
    free(data);
    free(dense);
}

static const enum sparse_val vals[] = {SPARSE_VAL_F16, SPARSE_VAL_Q8, SPARSE_VAL_Q4};
static const int sb_counts[] = {1, 2, 3, 5};

/* b = 1: every m <= 16, every n <= m (2:4, 4:8, 2:8, 1:4, 2:16, 8:16, 3:8
 * and V:N:M's 2:M among them); the named ones at every length. */
static void test_nm_all(void) {
    for (int v = 0; v < 3; v++)
        for (int m = 1; m <= 16; m++)
            for (int n = 1; n <= m; n++) {
                const struct sparse_fmt f = {1, m, n, vals[v]};
                const int named = (n == 2) || (m == 4 && n == 1) || (m == 8 && n == 4) ||
                                  (m == 16 && n == 8) || (m == 8 && n == 3);
                if (named)
                    for (size_t i = 0; i < sizeof sb_counts / sizeof sb_counts[0]; i++)
                        check_format(&f, sb_counts[i], 6);
                else
                    check_format(&f, 1 + (int)(rnd64() % 3), 5);
            }
}

/* V:N:M masks (shared 4 of M per strip) are ordinary 2:M rows. */
static void test_vnm(void) {
    for (int v = 0; v < 3; v++)
        for (int m = 5; m <= 16; m++) {
            const struct sparse_fmt f = {1, m, 2, vals[v]};
            sparse_tile_fn fast = sparse_tile_avx512(&f);
            if (!fast) { n_skipped++; continue; }
            const int E = sparse_block_elems(&f), SB = sparse_block_bytes(&f);
            const int rows = 6, n_sb = 2;
            const int64_t n_cols = (int64_t)E * n_sb;
            float *w = malloc(sizeof(float) * (size_t)(n_cols * rows));
            uint8_t *keep = malloc((size_t)(n_cols * rows));
            uint8_t *data = malloc((size_t)SB * n_sb * rows);
            fill_random(w, n_cols * rows, 0.1f);
            CHECK_EQ(sparse_choose_mask(&f, 4, w, NULL, rows, n_cols, keep), 0);
            CHECK_EQ(sparse_encode(&f, w, keep, rows, n_cols, data), 0);
            struct acts a = acts_make(n_cols, 3, 0);
            for (int r = 0; r < rows; r++) {
                const uint8_t *row = data + (size_t)r * SB * n_sb;
                float yr[3], yf[3];
                sparse_tile_ref(&f, n_cols, row, 1, a.x, a.xs, 3, yr, 1);
                fast(&f, n_cols, row, 1, a.x, a.xs, 3, yf, 1);
                for (int t = 0; t < 3; t++) {
                    double mag = 0;
                    for (int64_t c = 0; c < n_cols; c++)
                        mag += fabs((double)w[r * n_cols + c] * keep[r * n_cols + c] * a.x[t * a.xs + c]);
                    CHECK_NEAR(yf[t], yr[t], 1e-5 * mag + 1e-6);
                    n_compared++;
                }
            }
            free(a.mem); free(w); free(keep); free(data);
        }
}

/* b > 1: m = 64/b and 256/b (when <= 64) at 50, 62.5, 75, 87.5% sparsity,
 * plus odd ones (n*b not a power of two: several groups per super-block). */
static void test_block_sparse(void) {
    static const int bs[] = {2, 4, 8, 16};
    for (int v = 0; v < 3; v++)
        for (int bi = 0; bi < 4; bi++) {
            const int b = bs[bi];
            const int ms[] = {64 / b, 256 / b, 7, 3, 1};
            for (int mi = 0; mi < 5; mi++) {
                const int m = ms[mi];
                if (m > 64) continue;
                int ns[8], nn = 0;
                if (m % 8 == 0) {
                    ns[nn++] = m / 2; ns[nn++] = 3 * m / 8; ns[nn++] = m / 4; ns[nn++] = m / 8;
                    ns[nn++] = m / 2 + 1; ns[nn++] = 1; ns[nn++] = m;
                } else {
                    for (int n = 1; n <= m && nn < 8; n++) ns[nn++] = n;
                }
                for (int i = 0; i < nn; i++) {
                    const struct sparse_fmt f = {b, m, ns[i], vals[v]};
                    const int E = sparse_block_elems(&f);
                    const int n_sb = E >= 1024 ? 1 + (int)(rnd64() % 2) : sb_counts[rnd64() % 4];
                    check_format(&f, n_sb, 5);
                    if (i < 4 && E < 1024) check_format(&f, 1, 2);
                }
            }
        }
}

/* ------------------------------------------------ hand-built layouts */

static void put16(uint8_t *p, uint16_t h) { p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }

static double dot_d(const float *w, const float *x, int n, double *mag) {
    double d = 0;
    *mag = 0;
    for (int i = 0; i < n; i++) { d += (double)w[i] * x[i]; *mag += fabs((double)w[i] * x[i]); }
    return d;
}

/* 2:4 F16: super-block of 64 columns, 8 bytes of 2-bit positions, 32 halves. */
static void test_layout_24_f16(void) {
    const struct sparse_fmt f = {1, 4, 2, SPARSE_VAL_F16};
    sparse_tile_fn fast = sparse_tile_avx512(&f);
    if (!fast) { n_skipped++; return; }
    CHECK_EQ(sparse_block_elems(&f), 64);
    CHECK_EQ(sparse_block_bytes(&f), 72);
    uint8_t row[2 * 72] = {0};
    float dense[128] = {0};
    for (int sb = 0; sb < 2; sb++) {
        for (int g = 0; g < 16; g++) {
            const int lo = (int)(rnd64() % 3), hi = lo + 1 + (int)(rnd64() % (unsigned)(3 - lo));
            const int p[2] = {lo, hi};
            for (int q = 0; q < 2; q++) {
                const int k = 2 * g + q;
                row[sb * 72 + k / 4] |= (uint8_t)(p[q] << (2 * (k % 4)));
                const float v = frand();
                const uint16_t h = qt_f32_to_f16(v);
                put16(row + sb * 72 + 8 + 2 * k, h);
                dense[sb * 64 + 4 * g + p[q]] = qt_f16_to_f32(h);
            }
        }
    }
    float *x = malloc(sizeof(float) * 128);
    fill_random(x, 128, 1.0f);
    float y;
    fast(&f, 128, row, 1, x, 128, 1, &y, 1);
    double mag;
    const double d = dot_d(dense, x, 128, &mag);
    CHECK_NEAR(y, d, 1e-5 * mag);
    free(x);
}

/* 2:8 Q8: 16 groups of 8, 16 bytes of 4-bit positions, one Q8_0 block. */
static void test_layout_28_q8(void) {
    const struct sparse_fmt f = {1, 8, 2, SPARSE_VAL_Q8};
    sparse_tile_fn fast = sparse_tile_avx512(&f);
    if (!fast) { n_skipped++; return; }
    CHECK_EQ(sparse_block_elems(&f), 128);
    CHECK_EQ(sparse_block_bytes(&f), 16 + 34);
    uint8_t row[50] = {0};
    float dense[128] = {0};
    const float d = 0.0123f;
    put16(row + 16, qt_f32_to_f16(d));
    const float dd = qt_f16_to_f32(qt_f32_to_f16(d));
    for (int g = 0; g < 16; g++) {
        const int lo = (int)(rnd64() % 7), hi = lo + 1 + (int)(rnd64() % (unsigned)(7 - lo));
        const int p[2] = {lo, hi};
        for (int q = 0; q < 2; q++) {
            const int k = 2 * g + q;
            row[k / 2] |= (uint8_t)(p[q] << (4 * (k % 2)));
            const int8_t qv = (int8_t)((int)(rnd64() % 255) - 127);
            row[18 + k] = (uint8_t)qv;
            dense[8 * g + p[q]] = qv * dd;
        }
    }
    float *x = malloc(sizeof(float) * 128);
    fill_random(x, 128, 1.0f);
    float y;
    fast(&f, 128, row, 1, x, 128, 1, &y, 1);
    double mag;
    const double dt = dot_d(dense, x, 128, &mag);
    CHECK_NEAR(y, dt, 1e-5 * mag);
    free(x);
}

/* 1x16 2:4 Q4: g = 1 (n*b = 32), 64 columns, a 4-bit bitmap padded to 32
 * bits, one Q4_0 block (low nibbles = values 0..15, high = 16..31). */
static void test_layout_1x16_q4(void) {
    const struct sparse_fmt f = {16, 4, 2, SPARSE_VAL_Q4};
    sparse_tile_fn fast = sparse_tile_avx512(&f);
    if (!fast) { n_skipped++; return; }
    CHECK_EQ(sparse_block_elems(&f), 64);
    CHECK_EQ(sparse_block_bytes(&f), 4 + 18);
    for (int lo = 0; lo < 4; lo++)
        for (int hi = lo + 1; hi < 4; hi++) {
            uint8_t row[22] = {0};
            float dense[64] = {0};
            row[0] = (uint8_t)(1u << lo | 1u << hi);
            const float d = 0.37f;
            put16(row + 4, qt_f32_to_f16(d));
            const float dd = qt_f16_to_f32(qt_f32_to_f16(d));
            int q[32];
            for (int k = 0; k < 32; k++) q[k] = (int)(rnd64() % 16);
            for (int i = 0; i < 16; i++) row[6 + i] = (uint8_t)(q[i] | q[i + 16] << 4);
            for (int k = 0; k < 32; k++) dense[(k < 16 ? lo : hi) * 16 + k % 16] = (float)(q[k] - 8) * dd;
            float *x = malloc(sizeof(float) * 64);
            fill_random(x, 64, 1.0f);
            float y;
            fast(&f, 64, row, 1, x, 64, 1, &y, 1);
            double mag;
            const double dt = dot_d(dense, x, 64, &mag);
            CHECK_NEAR(y, dt, 1e-5 * mag + 1e-7);
            free(x);
        }
}

/* Random bytes as rows (what sparse_check refuses): the kernels may compute
 * anything but must stay inside the activations (ASan build). */
static void test_hostile_rows(void) {
    int ran = 0;
    for (int b = 1; b <= 16; b *= 2)
        for (int m = 1; m <= (b == 1 ? 16 : 64); m += (b == 1 ? 1 : 7))
            for (int n = 1; n <= m; n += 1 + m / 4)
                for (int v = 0; v < 3; v++) {
                    const struct sparse_fmt f = {b, m, n, vals[v]};
                    sparse_tile_fn fast = sparse_tile_avx512(&f);
                    if (!fast) continue;
                    const int E = sparse_block_elems(&f), SB = sparse_block_bytes(&f);
                    const int n_sb = 2, nr = SPARSE_MAX_ROWS + 1;
                    uint8_t *row = malloc((size_t)SB * n_sb * nr);
                    for (int i = 0; i < SB * n_sb * nr; i++) row[i] = (uint8_t)rnd64();
                    struct acts a = acts_make((int64_t)E * n_sb, 2, 0);
                    float y[2 * SPARSE_MAX_ROWS];
                    fast(&f, (int64_t)E * n_sb, row, 1, a.x, a.xs, 2, y, 1);
                    fast(&f, (int64_t)E * n_sb, row + SB * n_sb, SPARSE_MAX_ROWS, a.x, a.xs, 1, y, 1);
                    fast(&f, (int64_t)E * n_sb, row + SB * n_sb, 2, a.x, a.xs, 2, y, 2);
                    ran++;
                    free(a.mem);
                    free(row);
                }
    CHECK(ran > 0 || n_skipped > 0);
}

/* sparse_tile_get hands out the fast kernel on this CPU unless
 * SPARROW_KERNELS asks for less than AVX-512 (kernels/cpu.h). */
static void test_dispatch(void) {
    const struct sparse_fmt f = {1, 4, 2, SPARSE_VAL_F16};
    sparse_tile_fn fast = sparse_tile_avx512(&f);
    if (fast) CHECK(sparse_tile_get(&f) == (cpu_caps()->allowed == SIMD_AVX512 ? fast : sparse_tile_ref));
    const struct sparse_fmt bad = {3, 4, 2, SPARSE_VAL_F16};
    CHECK(sparse_tile_avx512(&bad) == NULL);
    const struct sparse_fmt bad2 = {1, 17, 2, SPARSE_VAL_F16};
    CHECK(sparse_tile_avx512(&bad2) == NULL);
}

int main(void) {
    rnd_seed(0x8badf00ddeadbeefull);
    RUN(test_dispatch);
    RUN(test_layout_24_f16);
    RUN(test_layout_28_q8);
    RUN(test_layout_1x16_q4);
    RUN(test_nm_all);
    RUN(test_vnm);
    RUN(test_block_sparse);
    RUN(test_hostile_rows);
    fprintf(stderr, "  %lld results compared, %lld invariance checks, %d formats skipped (no AVX-512)\n",
            (long long)n_compared, (long long)n_invariance, n_skipped);
    return check_report();
}
