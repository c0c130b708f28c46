/* matmul.c - see matmul.h. Rows are handed out in chunks (for packed weights:
 * whole 16-row groups) so a thread reads a weight row once and applies it to
 * every token of the batch while it is in cache; activations are converted to
 * the weight's dot type (or the fast or packed kernel's layout) once per call,
 * split across the pool by token. */
#include "kernels/matmul.h"

#include <assert.h>
#include <cblas.h>

#include "kernels/quant.h"
#include "kernels/quant_fast.h"
#include "kernels/sparse.h"
#include "kernels/workers.h"

#define MM_ROWS_PER_TASK 16

_Static_assert(MM_ROWS_PER_TASK % QPACK_ROWS == 0, "a task must hold whole packed groups");

struct mm_job {
    const struct qtensor *w;
    const struct qtype_info *wi;
    const struct qpack *pk; /* packed kernel (w->packed set), else NULL */
    const struct qfast *fk; /* fast kernel, or NULL for the reference vec_dot */
    const float *x;         /* activation rows (for the conversion) */
    const uint8_t *act;     /* n_tok converted rows */
    size_t act_row_bytes;
    size_t w_row_bytes;
    int n_tok;
    float *y;
};

static void mm_rows(void *ctx, int begin, int end, int thread) {
    const struct mm_job *j = ctx;
    int64_t r0 = (int64_t)begin * MM_ROWS_PER_TASK;
    int64_t r1 = (int64_t)end * MM_ROWS_PER_TASK;
    if (r1 > j->w->n_rows) r1 = j->w->n_rows;
    const uint8_t *wdata = j->w->data;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = wdata + (size_t)r * j->w_row_bytes;
        for (int t = 0; t < j->n_tok; t++)
            j->y[(size_t)t * j->w->n_rows + r] =
                j->wi->vec_dot(j->w->n_cols, row, j->act + (size_t)t * j->act_row_bytes);
    }
}

/* Fast path: tokens in tiles of fk->max_tok, each weight row of the chunk
 * applied to a whole tile at once. Which tile a token lands in, and which
 * thread computes a row, does not change its bits (see quant_fast.h). */
static void mm_rows_fast(void *ctx, int begin, int end, int thread) {
    const struct mm_job *j = ctx;
    int64_t r0 = (int64_t)begin * MM_ROWS_PER_TASK;
    int64_t r1 = (int64_t)end * MM_ROWS_PER_TASK;
    const int64_t n_rows = j->w->n_rows;
    if (r1 > n_rows) r1 = n_rows;
    const uint8_t *wdata = j->w->data;
    const int mt = j->fk->max_tok;
    for (int t0 = 0; t0 < j->n_tok; t0 += mt) {
        const int nt = j->n_tok - t0 < mt ? j->n_tok - t0 : mt;
        const uint8_t *act = j->act + (size_t)t0 * j->act_row_bytes;
        float *y = j->y + (size_t)t0 * (size_t)n_rows;
        for (int64_t r = r0; r < r1; r++)
            j->fk->tile(j->w->n_cols, wdata + (size_t)r * j->w_row_bytes, act, j->act_row_bytes,
                        nt, y + r, (size_t)n_rows);
    }
}

/* Packed path: per 16-row group, tokens in tiles of pk->max_tok (the group's
 * weights stay in cache for the next tile). Every float operation of the
 * kernel is lane-wise, so neither the tile nor the group a (row, token)
 * lands in changes its bits (see quant_fast.h). */
static void mm_rows_packed(void *ctx, int begin, int end, int thread) {
    const struct mm_job *j = ctx;
    const int64_t n_rows = j->w->n_rows, n = j->w->n_cols;
    const int64_t g0 = (int64_t)begin * (MM_ROWS_PER_TASK / QPACK_ROWS);
    int64_t g1 = (int64_t)end * (MM_ROWS_PER_TASK / QPACK_ROWS);
    if (g1 * QPACK_ROWS > n_rows) g1 = (n_rows + QPACK_ROWS - 1) / QPACK_ROWS;
    const size_t gb = j->pk->group_bytes(n);
    const int mt = j->pk->max_tok;
    for (int64_t g = g0; g < g1; g++) {
        const int64_t r0 = g * QPACK_ROWS;
        const int nr = n_rows - r0 < QPACK_ROWS ? (int)(n_rows - r0) : QPACK_ROWS;
        const uint8_t *grp = (const uint8_t *)j->w->packed + (size_t)g * gb;
        for (int t0 = 0; t0 < j->n_tok; t0 += mt) {
            const int nt = j->n_tok - t0 < mt ? j->n_tok - t0 : mt;
            j->pk->tile(n, grp, j->act + (size_t)t0 * j->act_row_bytes, j->act_row_bytes, nt,
                        j->y + (size_t)t0 * (size_t)n_rows + r0, (size_t)n_rows, nr);
        }
    }
}

/* Activation conversion of tokens [begin, end): per token, so any split
 * gives the same bytes. */
static void mm_convert(void *ctx, int begin, int end, int thread) {
    const struct mm_job *j = ctx;
    const int64_t n = j->w->n_cols;
    for (int t = begin; t < end; t++) {
        uint8_t *dst = (uint8_t *)j->act + (size_t)t * j->act_row_bytes;
        if (j->pk) j->pk->act_prep(j->x + (size_t)t * n, n, dst);
        else if (j->fk) j->fk->act_prep(j->x + (size_t)t * n, n, dst);
        else qtype_get(j->wi->dot_type)->from_float(j->x + (size_t)t * n, dst, n);
    }
}

/* Sparse weights (kernels/sparse.h): activations stay F32, so nothing is
 * converted; a task is a run of rows, taken SPARSE_MAX_ROWS at a time, each
 * group applied to the tokens in tiles of SPARSE_MAX_TOK. The tile kernel gives every token the same
 * operations whatever the tile, so the batch does not change any bits. */
#define MM_SPARSE_ROWS_PER_TASK 16

struct mm_sparse_job {
    const struct qtensor *w;
    struct sparse_fmt f;
    sparse_tile_fn tile;
    size_t w_row_bytes;
    const float *x;         /* n_tok x n_cols */
    int n_tok;
    float *y;               /* n_tok x n_rows */
};

static void mm_rows_sparse(void *ctx, int begin, int end, int thread) {
    const struct mm_sparse_job *j = ctx;
    const int64_t n_rows = j->w->n_rows, n_cols = j->w->n_cols;
    int64_t r1 = (int64_t)end * MM_SPARSE_ROWS_PER_TASK;
    if (r1 > n_rows) r1 = n_rows;
    for (int64_t r = (int64_t)begin * MM_SPARSE_ROWS_PER_TASK; r < r1; r += SPARSE_MAX_ROWS) {
        const int nr = r1 - r < SPARSE_MAX_ROWS ? (int)(r1 - r) : SPARSE_MAX_ROWS;
        const void *rows = (const uint8_t *)j->w->data + (size_t)r * j->w_row_bytes;
        for (int t0 = 0; t0 < j->n_tok; t0 += SPARSE_MAX_TOK) {
            const int nt = j->n_tok - t0 < SPARSE_MAX_TOK ? j->n_tok - t0 : SPARSE_MAX_TOK;
            j->tile(&j->f, n_cols, rows, nr, j->x + (size_t)t0 * (size_t)n_cols, (size_t)n_cols, nt,
                    j->y + (size_t)t0 * (size_t)n_rows + r, (size_t)n_rows);
        }
    }
}

static void mm_run_sparse(const struct qtensor *w, const struct sparse_fmt *f, const float *x, int n_tok,
                          float *y, struct workers *wk) {
    struct mm_sparse_job j = {
        .w = w, .f = *f, .tile = sparse_tile_get(f), .w_row_bytes = qtype_row_bytes(w->type, w->n_cols),
        .x = x, .n_tok = n_tok, .y = y,
    };
    int n_tasks = (int)((w->n_rows + MM_SPARSE_ROWS_PER_TASK - 1) / MM_SPARSE_ROWS_PER_TASK);
    workers_run(wk, mm_rows_sparse, &j, n_tasks);
}

size_t mm_scratch_bytes(const struct qtensor *w, int n_tok) {
    if (w->type & SPARSE_ID_FLAG) return 0;     /* F32 activations used in place */
    const struct qtype_info *wi = qtype_get(w->type);
    size_t per = qtype_row_bytes(wi->dot_type, w->n_cols);
    const struct qfast *fk = qfast_get(w->type);
    if (fk && fk->act_bytes(w->n_cols) > per) per = fk->act_bytes(w->n_cols);
    const struct qpack *pk = w->packed ? qpack_get(w->type) : NULL;
    if (pk && pk->act_bytes(w->n_cols) > per) per = pk->act_bytes(w->n_cols);
    return (size_t)n_tok * per + 64; /* + alignment of the fast layout */
}

size_t mm_pack_bytes(const struct qtensor *w) {
    const struct qpack *pk = qpack_get(w->type);
    if (!pk) return 0;
    const int64_t groups = (w->n_rows + QPACK_ROWS - 1) / QPACK_ROWS;
    return (size_t)groups * pk->group_bytes(w->n_cols);
}

void mm_pack(struct qtensor *w, void *dst) {
    const struct qpack *pk = qpack_get(w->type);
    assert(pk && ((uintptr_t)dst & 63) == 0);
    const size_t rb = qtype_row_bytes(w->type, w->n_cols), gb = pk->group_bytes(w->n_cols);
    for (int64_t r0 = 0, g = 0; r0 < w->n_rows; r0 += QPACK_ROWS, g++) {
        const int nr = w->n_rows - r0 < QPACK_ROWS ? (int)(w->n_rows - r0) : QPACK_ROWS;
        pk->pack_group((const uint8_t *)w->data + (size_t)r0 * rb, rb, nr, w->n_cols,
                       (uint8_t *)dst + (size_t)g * gb);
    }
    w->packed = dst;
}

/* Below this many tokens the conversion runs on the calling thread. */
#define MM_PAR_CONVERT 4

void mm_run(const struct qtensor *w, const float *x, int n_tok, float *y,
            void *scratch, struct workers *wk) {
    struct sparse_fmt sf;
    if (sparse_fmt_of(w->type, &sf)) { mm_run_sparse(w, &sf, x, n_tok, y, wk); return; }
    const struct qtype_info *wi = qtype_get(w->type);
    const struct qtype_info *di = qtype_get(wi->dot_type);
    assert(wi && wi->vec_dot && di && di->from_float);
    const struct qpack *pk = w->packed ? qpack_get(w->type) : NULL;
    const struct qfast *fk = pk ? NULL : qfast_get(w->type);
    uint8_t *act = scratch;
    if (fk || pk) act += (64 - ((uintptr_t)act & 63)) & 63;
    struct mm_job j = {
        .w = w, .wi = wi, .pk = pk, .fk = fk, .x = x, .act = act,
        .act_row_bytes = pk   ? pk->act_bytes(w->n_cols)
                         : fk ? fk->act_bytes(w->n_cols)
                              : qtype_row_bytes(wi->dot_type, w->n_cols),
        .w_row_bytes = qtype_row_bytes(w->type, w->n_cols),
        .n_tok = n_tok, .y = y,
    };
    if (n_tok < MM_PAR_CONVERT) mm_convert(&j, 0, n_tok, 0);
    else workers_run(wk, mm_convert, &j, n_tok);
    int n_tasks = (int)((w->n_rows + MM_ROWS_PER_TASK - 1) / MM_ROWS_PER_TASK);
    workers_run(wk, pk ? mm_rows_packed : fk ? mm_rows_fast : mm_rows, &j, n_tasks);
}

void mm_run_blas(const struct qtensor *w, const float *x, int n_tok, float *y) {
    assert(w->type == QTYPE_F32);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tok, (int)w->n_rows, (int)w->n_cols,
                1.0f, x, (int)w->n_cols, w->data, (int)w->n_cols, 0.0f, y, (int)w->n_rows);
}

void mm_get_row(const struct qtensor *w, int64_t r, float *out) {
    struct sparse_fmt sf;
    if (sparse_fmt_of(w->type, &sf)) {
        size_t srb = qtype_row_bytes(w->type, w->n_cols);
        sparse_row_to_float(&sf, (const uint8_t *)w->data + (size_t)r * srb, out, w->n_cols);
        return;
    }
    const struct qtype_info *wi = qtype_get(w->type);
    size_t rb = qtype_row_bytes(w->type, w->n_cols);
    wi->to_float((const uint8_t *)w->data + (size_t)r * rb, out, w->n_cols);
}
