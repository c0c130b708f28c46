/* matmul.h - y = W x for a weight matrix in any computable qtype and a batch
 * of activation rows.
 *
 * Batch-invariant by construction: every output element is one vec_dot of one
 * weight row with one converted activation row, in a fixed order, computed by
 * exactly one thread. So a token's result is bit-identical whether it runs
 * alone or in a batch of 500, which the scheduler's batching-equivalence
 * guarantee rests on. (OpenBLAS's sgemm is not: its column results change
 * with the batch width. It stays available for F32 through
 * mm_run_blas(), which callers use only where bit-identity is not promised.)
 *
 * Kernels: on CPUs with AVX-512 F/BW/VL/VNNI (probed once at first use), the
 * types with a fast kernel (F32, F16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K; see
 * kernels/quant_fast.h) run SIMD micro-kernels that read each weight row once
 * for a tile of up to 8 tokens; every token in a tile follows the same float
 * operations as when alone, so the guarantee above holds on that path too.
 * Their sums are ordered differently from quant.c's reference vec_dot (which
 * stays the fallback and the tests' oracle), so the two paths agree closely
 * but not bit for bit. Setting the environment variable SPARROW_KERNELS=ref
 * forces the reference path for the whole process (read once, at first use).
 *
 * Dimensions: W is n_rows x n_cols (row-major, rows in qtype blocks); x is
 * n_tok x n_cols floats; y is n_tok x n_rows floats.
 * Ownership: all memory is the caller's. Thread-safety: engine thread only
 * (it drives the worker pool). */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct workers;

struct qtensor {            /* a borrowed view of a 2-D weight */
    const void *data;       /* n_rows rows of qtype_row_bytes(type, n_cols) bytes */
    uint32_t type;          /* enum qtype */
    int64_t n_cols;         /* ne[0]: the reduced dimension */
    int64_t n_rows;         /* ne[1]: outputs */
};

/* Scratch bytes mm_run needs for n_tok activation rows of this weight. */
size_t mm_scratch_bytes(const struct qtensor *w, int n_tok);

void mm_run(const struct qtensor *w, const float *x, int n_tok, float *y,
            void *scratch, struct workers *wk);

/* F32 weights only, through cblas_sgemm (fast for wide batches, NOT
 * batch-invariant). Uses OpenBLAS's own threads: call it while the worker
 * pool is idle. */
void mm_run_blas(const struct qtensor *w, const float *x, int n_tok, float *y);

/* Row r of W as floats (embedding lookup), n_cols values. */
void mm_get_row(const struct qtensor *w, int64_t r, float *out);
