/* matmul.c - see matmul.h. Rows are handed out in chunks so a thread reads a
 * weight row once and applies it to every token of the batch while it is in
 * cache; activations are converted to the weight's dot type (or the fast
 * kernel's layout) once per call, split across the pool by token. */
#include "kernels/matmul.h"

#include <assert.h>
#include <cblas.h>

#include "kernels/quant.h"
#include "kernels/quant_fast.h"
#include "kernels/workers.h"

#define MM_ROWS_PER_TASK 16

struct mm_job {
    const struct qtensor *w;
    const struct qtype_info *wi;
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

/* Activation conversion of tokens [begin, end): per token, so any split
 * gives the same bytes. */
static void mm_convert(void *ctx, int begin, int end, int thread) {
    const struct mm_job *j = ctx;
    const int64_t n = j->w->n_cols;
    for (int t = begin; t < end; t++) {
        uint8_t *dst = (uint8_t *)j->act + (size_t)t * j->act_row_bytes;
        if (j->fk) j->fk->act_prep(j->x + (size_t)t * n, n, dst);
        else qtype_get(j->wi->dot_type)->from_float(j->x + (size_t)t * n, dst, n);
    }
}

size_t mm_scratch_bytes(const struct qtensor *w, int n_tok) {
    const struct qtype_info *wi = qtype_get(w->type);
    size_t per = qtype_row_bytes(wi->dot_type, w->n_cols);
    const struct qfast *fk = qfast_get(w->type);
    if (fk && fk->act_bytes(w->n_cols) > per) per = fk->act_bytes(w->n_cols);
    return (size_t)n_tok * per + 64; /* + alignment of the fast layout */
}

/* Below this many tokens the conversion runs on the calling thread. */
#define MM_PAR_CONVERT 4

void mm_run(const struct qtensor *w, const float *x, int n_tok, float *y,
            void *scratch, struct workers *wk) {
    const struct qtype_info *wi = qtype_get(w->type);
    const struct qtype_info *di = qtype_get(wi->dot_type);
    assert(wi && wi->vec_dot && di && di->from_float);
    const struct qfast *fk = qfast_get(w->type);
    uint8_t *act = scratch;
    if (fk) act += (64 - ((uintptr_t)act & 63)) & 63;
    struct mm_job j = {
        .w = w, .wi = wi, .fk = fk, .x = x, .act = act,
        .act_row_bytes = fk ? fk->act_bytes(w->n_cols) : qtype_row_bytes(wi->dot_type, w->n_cols),
        .w_row_bytes = qtype_row_bytes(w->type, w->n_cols),
        .n_tok = n_tok, .y = y,
    };
    if (n_tok < MM_PAR_CONVERT) mm_convert(&j, 0, n_tok, 0);
    else workers_run(wk, mm_convert, &j, n_tok);
    int n_tasks = (int)((w->n_rows + MM_ROWS_PER_TASK - 1) / MM_ROWS_PER_TASK);
    workers_run(wk, fk ? mm_rows_fast : mm_rows, &j, n_tasks);
}

void mm_run_blas(const struct qtensor *w, const float *x, int n_tok, float *y) {
    assert(w->type == QTYPE_F32);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tok, (int)w->n_rows, (int)w->n_cols,
                1.0f, x, (int)w->n_cols, w->data, (int)w->n_cols, 0.0f, y, (int)w->n_rows);
}

void mm_get_row(const struct qtensor *w, int64_t r, float *out) {
    const struct qtype_info *wi = qtype_get(w->type);
    size_t rb = qtype_row_bytes(w->type, w->n_cols);
    wi->to_float((const uint8_t *)w->data + (size_t)r * rb, out, w->n_cols);
}
