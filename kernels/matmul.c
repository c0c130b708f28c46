/* matmul.c - see matmul.h. Rows are handed out in chunks so a thread reads a
 * weight row once and applies it to every token of the batch while it is in
 * cache; activations are converted to the weight's dot type once per call. */
#include "kernels/matmul.h"

#include <assert.h>
#include <cblas.h>

#include "kernels/quant.h"
#include "kernels/workers.h"

#define MM_ROWS_PER_TASK 16

struct mm_job {
    const struct qtensor *w;
    const struct qtype_info *wi;
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

size_t mm_scratch_bytes(const struct qtensor *w, int n_tok) {
    const struct qtype_info *wi = qtype_get(w->type);
    return (size_t)n_tok * qtype_row_bytes(wi->dot_type, w->n_cols);
}

void mm_run(const struct qtensor *w, const float *x, int n_tok, float *y,
            void *scratch, struct workers *wk) {
    const struct qtype_info *wi = qtype_get(w->type);
    const struct qtype_info *di = qtype_get(wi->dot_type);
    assert(wi && wi->vec_dot && di && di->from_float);
    struct mm_job j = {
        .w = w, .wi = wi, .act = scratch,
        .act_row_bytes = qtype_row_bytes(wi->dot_type, w->n_cols),
        .w_row_bytes = qtype_row_bytes(w->type, w->n_cols),
        .n_tok = n_tok, .y = y,
    };
    for (int t = 0; t < n_tok; t++)
        di->from_float(x + (size_t)t * w->n_cols, (uint8_t *)scratch + (size_t)t * j.act_row_bytes, w->n_cols);
    int n_tasks = (int)((w->n_rows + MM_ROWS_PER_TASK - 1) / MM_ROWS_PER_TASK);
    workers_run(wk, mm_rows, &j, n_tasks);
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
