/* test_sparse.c - the sparse weight type family (kernels/sparse.c) and its
 * integration: qtype table, matmul, model load.
 *
 * 1. Ids: format <-> id round trips, out-of-range formats and ids refused,
 *    qtype_get forwards flagged ids, super-block sizes for a table of formats.
 * 2. Masks: exactly n per group (and the n largest), V:N:M strips share at
 *    most 4 columns per group with 2 per row, block masks are whole blocks,
 *    Wanda's act_norm changes the choice where it must, ties and NaN.
 * 3. Encode -> dense expansion gives the kept values (exact for F16 inputs;
 *    Q8/Q4 exactly ggml's quantizers on the kept values) and zeros elsewhere.
 * 4. sparse_tile_ref equals a plain dense dot of the expansion on random
 *    matrices of many formats and precisions; nt and token position never
 *    change a bit; sparse_check accepts encoded data and refuses corruption.
 * 5. mm_run on a sparse tensor equals mm_run on its dense F32 expansion, and
 *    a token alone gives the bits it gets in a batch of 7.
 * 6. Real weights: stories260K's blk.0.ffn_up pruned 2:4; the whole model with
 *    its 64-wide layer matrices 2:4 sparse loads and gives the logits of its
 *    dense-with-zeros twin; a corrupted index is a load error naming the
 *    tensor. Temp files under /tmp, removed at the end. */
#include "config/err.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/sparse.h"
#include "kernels/workers.h"
#include "tests/unit/check.h"

#include <stdbool.h>
#include <stdint.h>

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float rndf(void) { return (float)(rnd() % 2000001) / 1000000.0f - 1.0f; }

#define FMT(B, M, N, V) ((struct sparse_fmt){ (B), (M), (N), (V) })

/* The formats the kernel tests sweep: N:M, V:N:M's storage, block-sparse. */
static const struct sparse_fmt fmts[] = {
    FMT(1, 4, 2, 0), FMT(1, 8, 4, 0), FMT(1, 8, 2, 0), FMT(1, 4, 1, 0), FMT(1, 7, 3, 0), FMT(1, 16, 2, 0),
    FMT(1, 16, 8, 0), FMT(1, 3, 2, 0), FMT(1, 1, 1, 0), FMT(2, 4, 2, 0), FMT(4, 4, 1, 0), FMT(4, 8, 2, 0),
    FMT(4, 4, 3, 0), FMT(16, 16, 4, 0), FMT(16, 4, 1, 0), FMT(16, 16, 12, 0), FMT(8, 64, 5, 0),
};
#define N_FMTS (sizeof(fmts) / sizeof(fmts[0]))

static struct sparse_fmt with_val(struct sparse_fmt f, int v) {
    f.val = (enum sparse_val)v;
    return f;
}

static const char *fmt_str(const struct sparse_fmt *f) {
    static char buf[64];
    snprintf(buf, sizeof(buf), "b%d %d:%d val%d", f->b, f->n, f->m, (int)f->val);
    return buf;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { perror("malloc"); exit(2); }
    return p;
}

/* Random rows x n_cols weights pruned magnitude-wise and encoded; the dense
 * expansion in *dense if asked. Caller frees. */
static uint8_t *random_sparse(const struct sparse_fmt *f, int64_t rows, int64_t n_cols, float **dense) {
    float *w = xmalloc(sizeof(float) * (size_t)(rows * n_cols));
    uint8_t *keep = xmalloc((size_t)(rows * n_cols));
    const size_t rb = qtype_row_bytes(sparse_type_id(f), n_cols);
    uint8_t *enc = xmalloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows * n_cols; i++) w[i] = rndf();
    CHECK_EQ(sparse_choose_mask(f, 1, w, NULL, rows, n_cols, keep), SP_OK);
    CHECK_EQ(sparse_encode(f, w, keep, rows, n_cols, enc), SP_OK);
    if (dense) {
        for (int64_t r = 0; r < rows; r++) sparse_row_to_float(f, enc + (size_t)r * rb, w + r * n_cols, n_cols);
        *dense = w;
    } else {
        free(w);
    }
    free(keep);
    return enc;
}

/* ------------------------------------------------------------ 1. ids */

static void test_ids(void) {
    for (int v = 0; v < 3; v++)
        for (int lb = 0; lb <= 4; lb++)
            for (int m = 1; m <= 64; m++)
                for (int n = 1; n <= m; n++) {
                    struct sparse_fmt f = FMT(1 << lb, m, n, v), g;
                    uint32_t id = sparse_type_id(&f);
                    if (lb == 0 && m > 16) { CHECK_EQ(id, 0); continue; }
                    if (!(id & SPARSE_ID_FLAG) || !sparse_fmt_of(id, &g) ||
                        memcmp(&f, &g, sizeof(f)) != 0) {
                        CHECK(!"round trip");
                        fprintf(stderr, "  %s: id %#x\n", fmt_str(&f), id);
                        return;
                    }
                }
    CHECK_EQ(sparse_type_id(&FMT(1, 4, 2, 0)), SPARSE_ID_FLAG | 3u << 6 | 1u);
    /* out-of-range formats */
    CHECK_EQ(sparse_type_id(&FMT(1, 4, 5, 0)), 0);      /* n > m */
    CHECK_EQ(sparse_type_id(&FMT(1, 17, 2, 0)), 0);     /* m > 16 for b = 1 */
    CHECK_EQ(sparse_type_id(&FMT(2, 65, 2, 0)), 0);
    CHECK_EQ(sparse_type_id(&FMT(3, 4, 2, 0)), 0);      /* bad b */
    CHECK_EQ(sparse_type_id(&FMT(32, 4, 2, 0)), 0);
    CHECK_EQ(sparse_type_id(&FMT(0, 4, 2, 0)), 0);
    CHECK_EQ(sparse_type_id(&FMT(1, 4, 0, 0)), 0);
    CHECK_EQ(sparse_type_id(&FMT(1, 0, 0, 0)), 0);
    CHECK_EQ(sparse_type_id(&FMT(1, 4, 2, 3)), 0);      /* bad val */
    CHECK_EQ(sparse_type_id(&FMT(1, 4, 2, -1)), 0);
    CHECK_EQ(sparse_type_id(NULL), 0);
    CHECK_EQ(sparse_block_elems(&FMT(1, 4, 5, 0)), 0);
    CHECK_EQ(sparse_block_bytes(&FMT(3, 4, 2, 0)), 0);
    /* out-of-range ids */
    struct sparse_fmt g;
    const uint32_t base = sparse_type_id(&FMT(1, 4, 2, 0));
    CHECK(!sparse_fmt_of(QTYPE_Q8_0, &g));
    CHECK(!sparse_fmt_of(64, &g));                        /* the retired s24_f16 id */
    CHECK(!sparse_fmt_of(base | 1u << 21, &g));           /* stray bit above the flag */
    CHECK(!sparse_fmt_of(base | 3u << 16, &g));           /* val 3 */
    CHECK(!sparse_fmt_of(base | 5u << 12, &g));           /* log2(b) 5 */
    CHECK(!sparse_fmt_of(SPARSE_ID_FLAG | 1u << 6 | 3u, &g));     /* 4:2 */
    CHECK(!sparse_fmt_of(SPARSE_ID_FLAG | 20u << 6 | 1u, &g));    /* 2:21, b = 1 */
    CHECK(sparse_fmt_of(SPARSE_ID_FLAG | 1u << 12 | 20u << 6 | 1u, &g) && g.b == 2 && g.m == 21);
    /* the qtype table */
    const struct qtype_info *qi = qtype_get(base);
    CHECK(qi && strcmp(qi->name, "sp_2:4_f16") == 0 && qi->block_elems == 64 && qi->block_bytes == 72 &&
          qi->dot_type == QTYPE_F32 && !qi->to_float && !qi->vec_dot && !qi->from_float);
    CHECK(qtype_get(base) == qi);                         /* one entry per id */
    qi = qtype_get(sparse_type_id(&FMT(16, 16, 4, SPARSE_VAL_Q8)));
    CHECK(qi && strcmp(qi->name, "sp_1x16_4:16_q8") == 0);
    CHECK(qtype_get(base | 1u << 21) == NULL && qtype_get(base | 3u << 16) == NULL);
    CHECK(qtype_get(64) == NULL && qtype_get(SPARSE_ID_FLAG) != NULL);     /* 1:1 is valid */
    CHECK_EQ(qtype_row_bytes(base, 128), 144);
    CHECK_EQ(qtype_row_bytes(base, 96), 0);
}

static void test_block_sizes(void) {
    static const struct { struct sparse_fmt f; int elems, bytes; } tab[] = {
        { FMT(1, 4, 2, SPARSE_VAL_F16), 64, 72 },      /* 8 index + 32 halves */
        { FMT(1, 4, 2, SPARSE_VAL_Q8), 64, 42 },
        { FMT(1, 4, 2, SPARSE_VAL_Q4), 64, 26 },
        { FMT(1, 8, 4, SPARSE_VAL_F16), 64, 80 },      /* 4-bit positions */
        { FMT(1, 8, 2, SPARSE_VAL_F16), 128, 80 },
        { FMT(1, 4, 1, SPARSE_VAL_F16), 128, 72 },
        { FMT(1, 7, 3, SPARSE_VAL_F16), 224, 240 },    /* g = 32, K = 96 */
        { FMT(1, 7, 3, SPARSE_VAL_Q8), 224, 150 },
        { FMT(1, 16, 2, SPARSE_VAL_F16), 256, 80 },
        { FMT(1, 16, 2, SPARSE_VAL_Q4), 256, 34 },
        { FMT(4, 4, 1, SPARSE_VAL_F16), 128, 68 },     /* 32-bit bitmap */
        { FMT(16, 16, 4, SPARSE_VAL_F16), 256, 132 },  /* 16-bit bitmap padded to 32 */
        { FMT(16, 16, 4, SPARSE_VAL_Q8), 256, 72 },
        { FMT(16, 16, 8, SPARSE_VAL_F16), 256, 260 },
        { FMT(2, 64, 63, SPARSE_VAL_F16), 2048, 128 + 63 * 64 },
        { FMT(1, 1, 1, SPARSE_VAL_Q8), 32, 8 + 34 },
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        CHECK_EQ(sparse_block_elems(&tab[i].f), tab[i].elems);
        CHECK_EQ(sparse_block_bytes(&tab[i].f), tab[i].bytes);
        const struct qtype_info *qi = qtype_get(sparse_type_id(&tab[i].f));
        CHECK(qi && qi->block_elems == tab[i].elems && qi->block_bytes == tab[i].bytes);
    }
    /* every valid format: E <= 2048, a whole number of groups, K % 32 == 0 */
    int bad = 0;
    for (int lb = 0; lb <= 4; lb++)
        for (int m = 1; m <= (lb ? 64 : 16); m++)
            for (int n = 1; n <= m; n++) {
                struct sparse_fmt f = FMT(1 << lb, m, n, 0);
                int e = sparse_block_elems(&f);
                int kept = e / (m * f.b) * n * f.b;
                bad += e <= 0 || e > 2048 || e % (m * f.b) != 0 || kept % 32 != 0;
            }
    CHECK_EQ(bad, 0);
}

/* ------------------------------------------------------------ 2. masks */

static void test_mask_n_per_group(void) {
    for (size_t i = 0; i < N_FMTS; i++) {
        const struct sparse_fmt *f = &fmts[i];
        const int64_t rows = 5, n_cols = 2 * sparse_block_elems(f);
        const int gw = f->m * f->b;
        float *w = xmalloc(sizeof(float) * (size_t)(rows * n_cols));
        uint8_t *keep = xmalloc((size_t)(rows * n_cols));
        for (int64_t k = 0; k < rows * n_cols; k++) w[k] = rndf();
        CHECK_EQ(sparse_choose_mask(f, 1, w, NULL, rows, n_cols, keep), SP_OK);
        int bad = 0;
        for (int64_t g0 = 0; g0 < rows * n_cols; g0 += gw) {
            int kept = 0;
            float min_kept = INFINITY, max_dropped = 0;
            for (int j = 0; j < f->m; j++) {
                const int64_t c = g0 + j * f->b;
                float s = 0;
                for (int e = 0; e < f->b; e++) {
                    bad += keep[c + e] != keep[c];               /* whole blocks */
                    s += fabsf(w[c + e]);
                }
                if (keep[c]) { kept++; if (s < min_kept) min_kept = s; }
                else if (s > max_dropped) max_dropped = s;
            }
            bad += kept != f->n || max_dropped > min_kept;
        }
        if (bad) fprintf(stderr, "  %s: %d bad groups\n", fmt_str(f), bad);
        CHECK_EQ(bad, 0);
        free(w); free(keep);
    }
    /* n_cols not a multiple of the super-block; V:N:M needs b = 1, n = 2, m >= 4 */
    float w[256] = {0};
    uint8_t keep[256];
    CHECK_EQ(sparse_choose_mask(&FMT(1, 4, 2, 0), 1, w, NULL, 1, 32, keep), SP_EINVAL);
    CHECK_EQ(sparse_choose_mask(&FMT(1, 4, 5, 0), 1, w, NULL, 1, 64, keep), SP_EINVAL);
    CHECK_EQ(sparse_choose_mask(&FMT(1, 8, 3, 0), 4, w, NULL, 1, 256, keep), SP_EINVAL);
    CHECK_EQ(sparse_choose_mask(&FMT(4, 4, 2, 0), 4, w, NULL, 1, 64, keep), SP_EINVAL);
}

static void test_mask_ties_nan_wanda(void) {
    const struct sparse_fmt f = FMT(1, 4, 2, 0);
    float w[64] = {0};
    uint8_t keep[64];
    /* group 0: a tie keeps the lower column; group 1: NaN counts as largest */
    w[0] = 0.5f; w[1] = 0.5f; w[2] = 0.5f; w[3] = 0.1f;
    w[4] = 0.1f; w[5] = NAN; w[6] = 0.3f; w[7] = 0.2f;
    CHECK_EQ(sparse_choose_mask(&f, 1, w, NULL, 1, 64, keep), SP_OK);
    CHECK(keep[0] && keep[1] && !keep[2] && !keep[3]);
    CHECK(!keep[4] && keep[5] && keep[6] && !keep[7]);
    /* Wanda: a large weight on a quiet input channel loses to smaller ones */
    float an[64];
    for (int c = 0; c < 64; c++) an[c] = 1.0f;
    w[0] = 1.0f; w[1] = 0.5f; w[2] = 0.4f; w[3] = 0.3f;
    an[0] = 0.1f;
    CHECK_EQ(sparse_choose_mask(&f, 1, w, NULL, 1, 64, keep), SP_OK);
    CHECK(keep[0] && keep[1] && !keep[2]);
    CHECK_EQ(sparse_choose_mask(&f, 1, w, an, 1, 64, keep), SP_OK);
    CHECK(!keep[0] && keep[1] && keep[2] && !keep[3]);
    /* block-sparse scores sum the block: 1x4, keep 1 of 4 blocks */
    const struct sparse_fmt fb = FMT(4, 4, 1, 0);
    float wb[128] = {0};
    uint8_t kb[128];
    wb[0] = 0.9f;                                        /* block 0: one big */
    for (int e = 4; e < 8; e++) wb[e] = 0.3f;            /* block 1: sum 1.2 wins */
    CHECK_EQ(sparse_choose_mask(&fb, 1, wb, NULL, 1, 128, kb), SP_OK);
    CHECK(!kb[0] && kb[4] && kb[7] && !kb[8]);
}

static void test_mask_vnm(void) {
    const int ms[] = { 4, 8, 16 }, vs[] = { 2, 4, 64 };
    for (int mi = 0; mi < 3; mi++)
        for (int vi = 0; vi < 3; vi++) {
            const struct sparse_fmt f = FMT(1, ms[mi], 2, 0);
            const int v = vs[vi];
            const int64_t rows = 10, n_cols = 2 * sparse_block_elems(&f);   /* last strip is short */
            float *w = xmalloc(sizeof(float) * (size_t)(rows * n_cols));
            uint8_t *keep = xmalloc((size_t)(rows * n_cols));
            for (int64_t k = 0; k < rows * n_cols; k++) w[k] = rndf();
            CHECK_EQ(sparse_choose_mask(&f, v, w, NULL, rows, n_cols, keep), SP_OK);
            int bad = 0;
            for (int64_t r0 = 0; r0 < rows; r0 += v)
                for (int64_t c0 = 0; c0 < n_cols; c0 += f.m) {
                    int cols = 0;
                    for (int j = 0; j < f.m; j++) {
                        int any = 0;
                        for (int64_t r = r0; r < rows && r < r0 + v; r++) any |= keep[r * n_cols + c0 + j];
                        cols += any;
                    }
                    bad += cols > 4;
                    for (int64_t r = r0; r < rows && r < r0 + v; r++) {
                        int kept = 0;
                        for (int j = 0; j < f.m; j++) kept += keep[r * n_cols + c0 + j];
                        bad += kept != 2;
                    }
                }
            CHECK_EQ(bad, 0);
            /* a V:N:M mask encodes as plain 2:M */
            uint8_t *enc = xmalloc(qtype_row_bytes(sparse_type_id(&f), n_cols) * (size_t)rows);
            CHECK_EQ(sparse_encode(&f, w, keep, rows, n_cols, enc), SP_OK);
            CHECK_EQ(sparse_check(&f, enc, rows, n_cols), SP_OK);
            free(enc); free(w); free(keep);
        }
    /* crafted: 2 rows, 2:8; the strip's 4 columns are the ones with the
     * largest column sums (0, 1, 2, 3), not each row's own favourites */
    const struct sparse_fmt f = FMT(1, 8, 2, 0);
    float w[2 * 128] = {0};
    uint8_t keep[2 * 128];
    const float r0[8] = { 0.5f, 0.5f, 0.5f, 0.5f, 0.6f, 0, 0, 0 };
    const float r1[8] = { 0.5f, 0.4f, 0.3f, 0.2f, 0, 0, 0, 0 };
    memcpy(w, r0, sizeof(r0));
    memcpy(w + 128, r1, sizeof(r1));
    CHECK_EQ(sparse_choose_mask(&f, 2, w, NULL, 2, 128, keep), SP_OK);
    CHECK(keep[0] && keep[1] && !keep[4]);               /* row 0 gives up its 0.6 */
    CHECK(keep[128] && keep[129] && !keep[130]);
    CHECK_EQ(sparse_choose_mask(&f, 1, w, NULL, 2, 128, keep), SP_OK);
    CHECK(keep[4] && keep[0]);                           /* plain 2:8 keeps it */
}

/* ------------------------------------------------------------ 3. encode */

/* Values through ggml's quantizer as the encoder must: the kept values of a
 * super-block in column order, 32 at a time. */
static void expect_quantized(const struct sparse_fmt *f, const float *kept, int n, float *out) {
    if (f->val == SPARSE_VAL_F16) {
        for (int k = 0; k < n; k++) out[k] = qt_f16_to_f32(qt_f32_to_f16(kept[k]));
        return;
    }
    const struct qtype_info *q = qtype_get(f->val == SPARSE_VAL_Q8 ? QTYPE_Q8_0 : QTYPE_Q4_0);
    _Alignas(8) uint8_t blk[64];
    for (int c = 0; c < n / 32; c++) {
        q->from_float(kept + 32 * c, blk, 32);
        q->to_float(blk, out + 32 * c, 32);
    }
}

static void test_encode_roundtrip(void) {
    for (size_t i = 0; i < N_FMTS; i++)
        for (int v = 0; v < 3; v++) {
            const struct sparse_fmt f = with_val(fmts[i], v);
            const int E = sparse_block_elems(&f);
            const int64_t rows = 3, n_cols = 3 * E;
            float *w = xmalloc(sizeof(float) * (size_t)(rows * n_cols));
            float *dense = xmalloc(sizeof(float) * (size_t)n_cols);
            float *kept = xmalloc(sizeof(float) * (size_t)n_cols), *want = xmalloc(sizeof(float) * (size_t)n_cols);
            uint8_t *keep = xmalloc((size_t)(rows * n_cols));
            const size_t rb = qtype_row_bytes(sparse_type_id(&f), n_cols);
            uint8_t *enc = xmalloc(rb * (size_t)rows);
            /* F16-representable inputs (and no exact zeros) so F16 is exact */
            for (int64_t k = 0; k < rows * n_cols; k++) {
                float x = rndf();
                if (x == 0.0f) x = 0.25f;
                w[k] = qt_f16_to_f32(qt_f32_to_f16(x));
            }
            CHECK_EQ(sparse_choose_mask(&f, 1, w, NULL, rows, n_cols, keep), SP_OK);
            CHECK_EQ(sparse_encode(&f, w, keep, rows, n_cols, enc), SP_OK);
            CHECK_EQ(sparse_check(&f, enc, rows, n_cols), SP_OK);
            int bad = 0;
            double max_err = 0, amax = 0;
            for (int64_t r = 0; r < rows; r++) {
                sparse_row_to_float(&f, enc + (size_t)r * rb, dense, n_cols);
                const float *wr = w + r * n_cols;
                const uint8_t *kr = keep + r * n_cols;
                for (int64_t c0 = 0; c0 < n_cols; c0 += E) {
                    int nk = 0;
                    for (int c = 0; c < E; c++)
                        if (kr[c0 + c]) kept[nk++] = wr[c0 + c];
                    expect_quantized(&f, kept, nk, want);
                    for (int c = 0, k = 0; c < E; c++) {
                        const float got = dense[c0 + c];
                        if (!kr[c0 + c]) { bad += got != 0.0f; continue; }
                        bad += memcmp(&got, &want[k], sizeof(float)) != 0;
                        if (fabs(got - wr[c0 + c]) > max_err) max_err = fabs(got - wr[c0 + c]);
                        if (fabsf(wr[c0 + c]) > amax) amax = fabsf(wr[c0 + c]);
                        k++;
                    }
                }
            }
            /* F16 exact; Q8 within about half a step of amax/127 (plus the F16
             * scale's rounding), Q4 within a step of amax/8 (its clipped top) */
            const double tol = v == SPARSE_VAL_F16 ? 0 : v == SPARSE_VAL_Q8 ? amax / 127 * 0.6 : amax / 8 * 1.01;
            if (bad || max_err > tol) fprintf(stderr, "  %s: %d bad, max err %g\n", fmt_str(&f), bad, max_err);
            CHECK_EQ(bad, 0);
            CHECK(max_err <= tol);
            free(w); free(dense); free(kept); free(want); free(keep); free(enc);
        }
    /* a mask that breaks the pattern is refused */
    const struct sparse_fmt f = FMT(1, 4, 2, 0), fb = FMT(4, 4, 1, 0);
    float w[128] = {0};
    uint8_t keep[128] = {0}, out[256];
    for (int c = 0; c < 64; c += 4) keep[c] = keep[c + 2] = 1;
    CHECK_EQ(sparse_encode(&f, w, keep, 1, 64, out), SP_OK);
    keep[1] = 1;                                         /* 3 in group 0 */
    CHECK_EQ(sparse_encode(&f, w, keep, 1, 64, out), SP_EINVAL);
    keep[1] = keep[0] = 0;                               /* 1 in group 0 */
    CHECK_EQ(sparse_encode(&f, w, keep, 1, 64, out), SP_EINVAL);
    memset(keep, 0, sizeof(keep));
    for (int c = 0; c < 128; c += 16) memset(keep + c, 1, 4);
    CHECK_EQ(sparse_encode(&fb, w, keep, 1, 128, out), SP_OK);
    keep[3] = 0;                                         /* a partial block */
    CHECK_EQ(sparse_encode(&fb, w, keep, 1, 128, out), SP_EINVAL);
    CHECK_EQ(sparse_encode(&f, w, keep, 1, 32, out), SP_EINVAL);
}

/* ------------------------------------------------------------ 4. kernels */

/* sparse_tile_ref against a double-precision dense dot of the expansion. */
static void test_tile_ref_matches_dense(void) {
    const int mults[] = { 1, 2, 3, 5 };
    int n_cases = 0;
    for (size_t i = 0; i < N_FMTS; i++)
        for (int v = 0; v < 3; v++)
            for (int mi = 0; mi < 4; mi++) {
                const struct sparse_fmt f = with_val(fmts[i], v);
                const int64_t rows = 3 + mi, n_cols = (int64_t)mults[mi] * sparse_block_elems(&f);
                const int nt = 1 + mi * 2;
                float *dense;
                uint8_t *enc = random_sparse(&f, rows, n_cols, &dense);
                const size_t rb = qtype_row_bytes(sparse_type_id(&f), n_cols);
                float *x = xmalloc(sizeof(float) * (size_t)(nt * n_cols)), y[SPARSE_MAX_TOK];
                for (int64_t k = 0; k < nt * n_cols; k++) x[k] = rndf();
                int bad = 0;
                for (int64_t r = 0; r < rows; r++) {
                    sparse_tile_ref(&f, n_cols, enc + (size_t)r * rb, 1, x, (size_t)n_cols, nt, y, 1);
                    for (int t = 0; t < nt; t++) {
                        double ref = 0, mag = 0;
                        for (int64_t c = 0; c < n_cols; c++) {
                            ref += (double)dense[r * n_cols + c] * x[t * n_cols + c];
                            mag += fabs((double)dense[r * n_cols + c] * x[t * n_cols + c]);
                        }
                        bad += !(fabs(y[t] - ref) <= 1e-5 * mag + 1e-6);
                    }
                }
                if (bad) fprintf(stderr, "  %s, %lld cols: %d bad\n", fmt_str(&f), (long long)n_cols, bad);
                CHECK_EQ(bad, 0);
                n_cases++;
                free(enc); free(dense); free(x);
            }
    CHECK_EQ(n_cases, (int)N_FMTS * 12);
}

/* One row against 8 tokens: any nt, any position in the tile, same bits;
 * through sparse_tile_get (the AVX-512 kernel when there is one) too. */
static void test_tile_batch_invariant(void) {
    for (size_t i = 0; i < N_FMTS; i++)
        for (int v = 0; v < 3; v++) {
            const struct sparse_fmt f = with_val(fmts[i], v);
            const int64_t n_cols = 2 * sparse_block_elems(&f);
            uint8_t *enc = random_sparse(&f, 1, n_cols, NULL);
            /* the tokens are laid out with a stride wider than a row */
            const size_t xs = (size_t)n_cols + 5;
            float *x = xmalloc(sizeof(float) * xs * 2 * SPARSE_MAX_TOK);
            for (size_t k = 0; k < xs * 2 * SPARSE_MAX_TOK; k++) x[k] = rndf();
            const sparse_tile_fn fns[2] = { sparse_tile_ref, sparse_tile_get(&f) };
            int bad = 0;
            for (int fi = 0; fi < 2; fi++) {
                float alone[2 * SPARSE_MAX_TOK];
                for (int t = 0; t < 2 * SPARSE_MAX_TOK; t++) fns[fi](&f, n_cols, enc, 1, x + t * xs, xs, 1, &alone[t], 1);
                for (int nt = 1; nt <= SPARSE_MAX_TOK; nt++)
                    for (int t0 = 0; t0 + nt <= 2 * SPARSE_MAX_TOK; t0 += 3) {
                        float y[2 * SPARSE_MAX_TOK];
                        fns[fi](&f, n_cols, enc, 1, x + t0 * xs, xs, nt, y, 2);
                        for (int t = 0; t < nt; t++) bad += memcmp(&y[2 * t], &alone[t0 + t], sizeof(float)) != 0;
                    }
            }
            if (bad) fprintf(stderr, "  %s: %d differ\n", fmt_str(&f), bad);
            CHECK_EQ(bad, 0);
            free(enc); free(x);
        }
}

static void flip_bit(uint8_t *p, int bit) { p[bit / 8] ^= (uint8_t)(1u << (bit % 8)); }

static void test_check_rejects_corruption(void) {
    struct sp_err err = {0};
    (void)err;
    /* b = 1, m = 3 (2-bit positions): position 3 is past the group */
    {
        const struct sparse_fmt f = FMT(1, 3, 2, 0);
        const int64_t n_cols = 2 * sparse_block_elems(&f);
        uint8_t *enc = random_sparse(&f, 2, n_cols, NULL);
        const int rb = (int)qtype_row_bytes(sparse_type_id(&f), n_cols);
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols), SP_OK);
        uint8_t *p = enc + rb + sparse_block_bytes(&f);  /* row 1, super-block 1 */
        const uint8_t save = p[1];
        p[1] = (uint8_t)((p[1] & ~0x0Cu) | 0x0Cu);       /* value 5 -> position 3 */
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols), SP_EFORMAT);
        p[1] = save;
        /* a group's two positions equal, then descending */
        p[0] = (uint8_t)((p[0] & 0xF0u) | 0x05u);        /* group 0: 1, 1 */
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols), SP_EFORMAT);
        p[0] = (uint8_t)((p[0] & 0xF0u) | 0x02u);        /* group 0: 2, 0 */
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols), SP_EFORMAT);
        p[0] = (uint8_t)((p[0] & 0xF0u) | 0x04u);        /* group 0: 0, 1 */
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols), SP_OK);
        /* value bytes are not the index: anything goes */
        memset(p + 8, 0xFF, 16);
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols), SP_OK);
        CHECK_EQ(sparse_check(&f, enc, 2, n_cols - 1), SP_EINVAL);
        free(enc);
    }
    /* b = 1, m = 5 (4-bit positions): position 7 */
    {
        const struct sparse_fmt f = FMT(1, 5, 2, SPARSE_VAL_Q8);
        const int64_t n_cols = sparse_block_elems(&f);
        uint8_t *enc = random_sparse(&f, 1, n_cols, NULL);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_OK);
        enc[3] = (uint8_t)((enc[3] & 0x0Fu) | 0x70u);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_EFORMAT);
        free(enc);
    }
    /* bitmaps: one bit too many, one too few, a padding bit */
    {
        const struct sparse_fmt f = FMT(16, 16, 4, SPARSE_VAL_Q4);   /* 16 bits + 16 padding */
        const int64_t n_cols = 3 * sparse_block_elems(&f);
        uint8_t *enc = random_sparse(&f, 1, n_cols, NULL);
        uint8_t *p = enc + 2 * sparse_block_bytes(&f);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_OK);
        int off = 0, on = 0;
        while ((p[off / 8] >> (off % 8)) & 1) off++;
        while (!((p[on / 8] >> (on % 8)) & 1)) on++;
        flip_bit(p, off);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_EFORMAT);
        flip_bit(p, on);                                 /* moved, still n: fine */
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_OK);
        flip_bit(p, on);
        flip_bit(p, off);
        flip_bit(p, on);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_EFORMAT);
        flip_bit(p, on);
        flip_bit(p, 20);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_EFORMAT);
        flip_bit(p, 20);
        CHECK_EQ(sparse_check(&f, enc, 1, n_cols), SP_OK);
        free(enc);
    }
    /* every single-bit flip of a 2:4 index is caught or harmless */
    {
        const struct sparse_fmt f = FMT(1, 4, 2, 0);
        uint8_t *enc = random_sparse(&f, 1, 64, NULL);
        float x[64], y;
        for (int c = 0; c < 64; c++) x[c] = 1.0f;
        for (int bit = 0; bit < 64; bit++) {
            flip_bit(enc, bit);
            if (sparse_check(&f, enc, 1, 64) == SP_OK) sparse_tile_ref(&f, 64, enc, 1, x, 64, 1, &y, 1);
            flip_bit(enc, bit);
        }
        CHECK_EQ(sparse_check(&f, enc, 1, 64), SP_OK);
        free(enc);
    }
}

/* ------------------------------------------------------------ 5. matmul */

static void test_matmul(void) {
    struct sp_err err = {0};
    struct workers *wk = workers_create(2, &err);
    CHECK(wk != NULL);
    if (!wk) return;
    const struct sparse_fmt cases[] = { FMT(1, 4, 2, 0), FMT(1, 8, 2, 1), FMT(16, 16, 4, 2), FMT(4, 4, 1, 0),
                                        FMT(1, 7, 3, 1) };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct sparse_fmt *f = &cases[i];
        const int64_t n_rows = 77, n_cols = 2 * sparse_block_elems(f);
        const int n_tok = 7;
        float *dense;
        uint8_t *enc = random_sparse(f, n_rows, n_cols, &dense);
        float *x = xmalloc(sizeof(float) * (size_t)(n_tok * n_cols));
        for (int64_t k = 0; k < n_tok * n_cols; k++) x[k] = rndf();
        struct qtensor ws = { .data = enc, .type = sparse_type_id(f), .n_cols = n_cols, .n_rows = n_rows };
        struct qtensor wd = { .data = dense, .type = QTYPE_F32, .n_cols = n_cols, .n_rows = n_rows };
        float *ys = xmalloc(sizeof(float) * (size_t)(n_tok * n_rows));
        float *yd = xmalloc(sizeof(float) * (size_t)(n_tok * n_rows));
        float *y1 = xmalloc(sizeof(float) * (size_t)n_rows);
        size_t sb = mm_scratch_bytes(&ws, n_tok);
        if (mm_scratch_bytes(&wd, n_tok) > sb) sb = mm_scratch_bytes(&wd, n_tok);
        void *scratch = xmalloc(sb);
        mm_run(&ws, x, n_tok, ys, scratch, wk);
        mm_run(&wd, x, n_tok, yd, scratch, wk);
        int bad = 0;
        for (int t = 0; t < n_tok; t++) {
            mm_run(&ws, x + t * n_cols, 1, y1, scratch, wk);
            bad += memcmp(y1, ys + t * n_rows, sizeof(float) * (size_t)n_rows) != 0;
            for (int64_t r = 0; r < n_rows; r++) {
                double mag = 0;
                for (int64_t c = 0; c < n_cols; c++) mag += fabs((double)dense[r * n_cols + c] * x[t * n_cols + c]);
                bad += !(fabs(ys[t * n_rows + r] - yd[t * n_rows + r]) <= 1e-5 * mag + 1e-6);
            }
        }
        if (bad) fprintf(stderr, "  %s: %d bad\n", fmt_str(f), bad);
        CHECK_EQ(bad, 0);
        /* mm_get_row is the dense expansion */
        float *row = xmalloc(sizeof(float) * (size_t)n_cols);
        mm_get_row(&ws, 41, row);
        CHECK(memcmp(row, dense + 41 * n_cols, sizeof(float) * (size_t)n_cols) == 0);
        free(row); free(scratch); free(ys); free(yd); free(y1); free(x); free(enc); free(dense);
    }
    workers_free(wk);
}

/* ------------------------------------------------------------ 6. real weights */

static const char *model_path(const char *file) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/models/%s", check_shared_dir(), file);
    return path;
}

static void test_real_layer(void) {
    struct sp_err err = {0};
    struct gguf *g = gguf_open(model_path("stories260K-f32.gguf"), &err);
    CHECK(g != NULL);
    if (!g) return;
    const struct gguf_tensor *t = gguf_find_tensor(g, "blk.0.ffn_up.weight");
    CHECK(t && t->type == QTYPE_F32 && t->ne[0] == 64);
    if (!t) { gguf_close(g); return; }
    const struct sparse_fmt f = FMT(1, 4, 2, SPARSE_VAL_F16);
    const int64_t n_cols = t->ne[0], rows = t->ne[1];
    const float *w = t->data;
    uint8_t *keep = xmalloc((size_t)(rows * n_cols));
    const size_t rb = qtype_row_bytes(sparse_type_id(&f), n_cols);
    uint8_t *enc = xmalloc(rb * (size_t)rows);
    float *dense = xmalloc(sizeof(float) * (size_t)n_cols), x[64], y;
    CHECK_EQ(sparse_choose_mask(&f, 1, w, NULL, rows, n_cols, keep), SP_OK);
    CHECK_EQ(sparse_encode(&f, w, keep, rows, n_cols, enc), SP_OK);
    CHECK_EQ(sparse_check(&f, enc, rows, n_cols), SP_OK);
    for (int c = 0; c < 64; c++) x[c] = rndf();
    int bad = 0, zeros = 0;
    double energy_kept = 0, energy = 0;
    for (int64_t r = 0; r < rows; r++) {
        sparse_row_to_float(&f, enc + (size_t)r * rb, dense, n_cols);
        sparse_tile_get(&f)(&f, n_cols, enc + (size_t)r * rb, 1, x, 64, 1, &y, 1);
        double ref = 0, mag = 0;
        for (int c = 0; c < n_cols; c++) {
            ref += (double)dense[c] * x[c];
            mag += fabs((double)dense[c] * x[c]);
            zeros += dense[c] == 0.0f;
            energy += (double)w[r * n_cols + c] * w[r * n_cols + c];
            energy_kept += (double)dense[c] * dense[c];
        }
        bad += !(fabs(y - ref) <= 1e-5 * mag + 1e-6);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(zeros, rows * n_cols / 2);
    /* magnitude pruning keeps the larger half: well over half the energy */
    fprintf(stderr, "  blk.0.ffn_up 2:4: %.1f%% of the squared weight kept\n", 100 * energy_kept / energy);
    CHECK(energy_kept > 0.6 * energy);
    free(keep); free(enc); free(dense);
    gguf_close(g);
}

/* Copy stories260K-f32 with its 64-wide layer matrices 2:4 sparse (into
 * sp_path) and as their dense-with-zeros expansion (dz_path); corrupt, when
 * set, breaks the index of blk.1.attn_k.weight in the sparse copy. */
static bool write_pruned(const char *sp_path, const char *dz_path, bool corrupt) {
    struct sp_err err = {0};
    struct gguf *g = gguf_open(model_path("stories260K-f32.gguf"), &err);
    struct gguf_writer *ws = gguf_w_new(), *wd = gguf_w_new();
    bool ok = g && ws && wd;
    const struct sparse_fmt f = FMT(1, 4, 2, SPARSE_VAL_F16);
    for (int64_t i = 0; ok && i < (int64_t)gguf_n_kv(g); i++)
        ok = gguf_w_copy_kv(ws, g, i) == SP_OK && gguf_w_copy_kv(wd, g, i) == SP_OK;
    if (ok) ok = gguf_w_set_str(ws, "sparrow.sparse.format", "2:4", 3) == SP_OK;
    for (uint64_t i = 0; ok && i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.ptr);
        const bool prune = strncmp(name, "blk.", 4) == 0 && t->n_dims == 2 && t->type == QTYPE_F32 &&
                           t->ne[0] % sparse_block_elems(&f) == 0;
        if (!prune) {
            ok = gguf_w_add_tensor(ws, name, t->n_dims, t->ne, t->type, t->data, t->n_bytes, false) == SP_OK &&
                 gguf_w_add_tensor(wd, name, t->n_dims, t->ne, t->type, t->data, t->n_bytes, false) == SP_OK;
            continue;
        }
        const int64_t n_cols = t->ne[0], rows = t->ne[1];
        const size_t rb = qtype_row_bytes(sparse_type_id(&f), n_cols);
        uint8_t *keep = xmalloc((size_t)(rows * n_cols)), *enc = xmalloc(rb * (size_t)rows);
        float *dense = xmalloc(sizeof(float) * (size_t)(rows * n_cols));
        ok = sparse_choose_mask(&f, 1, t->data, NULL, rows, n_cols, keep) == SP_OK &&
             sparse_encode(&f, t->data, keep, rows, n_cols, enc) == SP_OK;
        for (int64_t r = 0; r < rows; r++) sparse_row_to_float(&f, enc + r * rb, dense + r * n_cols, n_cols);
        if (corrupt && strcmp(name, "blk.1.attn_k.weight") == 0) enc[5 * rb + 1] = 0x0F;    /* positions 3, 3 */
        free(keep);
        ok = ok && gguf_w_add_tensor(ws, name, 2, t->ne, sparse_type_id(&f), enc, rb * (size_t)rows, true) == SP_OK;
        if (!ok) free(enc);
        ok = ok && gguf_w_add_tensor(wd, name, 2, t->ne, QTYPE_F32, dense, t->n_bytes, true) == SP_OK;
        if (!ok) free(dense);
    }
    ok = ok && gguf_w_write(ws, sp_path, &err) == SP_OK && gguf_w_write(wd, dz_path, &err) == SP_OK;
    if (!ok) fprintf(stderr, "  write_pruned: %s\n", err.msg);
    gguf_w_free(ws);
    gguf_w_free(wd);
    gguf_close(g);
    return ok;
}

/* Logits of every position of a prompt; NULL on error. Caller frees. */
static float *all_logits(const char *path, const int32_t *toks, int n, int *n_vocab) {
    struct sp_err err = {0};
    struct model *m = model_load(path, &err);
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    float *logits = NULL;
    if (!m) goto out;
    struct kv_config cfg = { 16, 4, 1, 64 };
    if (!(kv = kv_create(model_shape(m), &cfg, &err)) || kv_seq_reserve(kv, 0, 64) != SP_OK ||
        !(f = fwd_create(m, 32, 64, 2, &err)))
        goto out;
    *n_vocab = model_shape(m)->n_vocab;
    logits = xmalloc(sizeof(float) * (size_t)(n * *n_vocab));
    int32_t pos[32], seq[32] = {0};
    bool want[32];
    for (int i = 0; i < n; i++) { pos[i] = i; want[i] = true; }
    struct fwd_batch b = { n, toks, pos, seq, want };
    if (fwd_run(f, kv, &b, logits, &err) != SP_OK) { free(logits); logits = NULL; }
out:
    if (!logits) fprintf(stderr, "  all_logits(%s): %s\n", path, err.msg);
    fwd_free(f);
    kv_free(kv);
    model_free(m);
    return logits;
}

static void test_real_model(void) {
    char dir[] = "/tmp/test_sparse_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(!"mkdtemp"); return; }
    char sp[64], dz[64];
    snprintf(sp, sizeof(sp), "%s/sp.gguf", dir);
    snprintf(dz, sizeof(dz), "%s/dz.gguf", dir);
    CHECK(write_pruned(sp, dz, false));
    struct sp_err err = {0};
    struct model *m = model_load(sp, &err);
    CHECK(m != NULL);
    if (m) {
        CHECK(strstr(model_desc(m), "sp_2:4_f16") != NULL);
        CHECK_EQ(model_layer(m, 0)->w_up.type, sparse_type_id(&FMT(1, 4, 2, 0)));
        model_free(m);
    } else {
        fprintf(stderr, "  %s\n", err.msg);
    }
    const int32_t toks[12] = { 1, 403, 407, 261, 378, 285, 300, 410, 267, 306, 259, 314 };
    int nv = 0, nv2 = 0;
    float *a = all_logits(sp, toks, 12, &nv), *b = all_logits(dz, toks, 12, &nv2);
    CHECK(a && b && nv == nv2);
    if (a && b) {
        double max_diff = 0;
        int same_top = 0;
        for (int i = 0; i < 12; i++) {
            int ta = 0, tb = 0;
            for (int v = 0; v < nv; v++) {
                const double d = fabs(a[i * nv + v] - b[i * nv + v]);
                if (d > max_diff) max_diff = d;
                if (a[i * nv + v] > a[i * nv + ta]) ta = v;
                if (b[i * nv + v] > b[i * nv + tb]) tb = v;
            }
            same_top += ta == tb;
        }
        fprintf(stderr, "  2:4 model vs dense-with-zeros: max logit diff %.2e\n", max_diff);
        CHECK(max_diff < 1e-3);
        CHECK_EQ(same_top, 12);
    }
    free(a); free(b);
    /* a hostile index is refused at load, naming the tensor */
    CHECK(write_pruned(sp, dz, true));
    m = model_load(sp, &err);
    CHECK(m == NULL);
    CHECK(strstr(err.msg, "blk.1.attn_k.weight") && strstr(err.msg, "sparse index"));
    model_free(m);
    remove(sp);
    remove(dz);
    rmdir(dir);
}

int main(void) {
    RUN(test_ids);
    RUN(test_block_sizes);
    RUN(test_mask_n_per_group);
    RUN(test_mask_ties_nan_wanda);
    RUN(test_mask_vnm);
    RUN(test_encode_roundtrip);
    RUN(test_tile_ref_matches_dense);
    RUN(test_tile_batch_invariant);
    RUN(test_check_rejects_corruption);
    RUN(test_matmul);
    RUN(test_real_layer);
    RUN(test_real_model);
    return check_report();
}
