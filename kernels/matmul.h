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
 * Kernels, on CPUs with AVX-512 F/BW/VL/VNNI (probed once at first use; see
 * kernels/quant_fast.h), best first:
 *   - packed: a weight that went through mm_pack (the model does it at load
 *     for Q8_0, Q4_0, Q4_K, Q6_K) has a row-interleaved copy; its kernel
 *     computes 16 rows x up to 8 tokens per call, one row per SIMD lane, which
 *     is what makes batched decode cheaper per token than a lone one;
 *   - fast (F32, F16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K in the file's layout):
 *     one weight row against a tile of up to 8 tokens;
 *   - reference: quant.c's vec_dot (the tests' oracle).
 * A given tensor always takes the same path, and every token in a tile
 * follows the same float operations as when alone, so the guarantee above
 * holds on every path. The fast paths order some sums differently from the
 * reference (packed Q8_0/Q4_0 do not: they follow its order exactly), so
 * they agree closely but not always bit for bit. Setting the environment
 * variable SPARROW_KERNELS=ref forces the reference path for the whole
 * process (read once, at first use; mm_pack then packs nothing).
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
    const void *packed;     /* row-interleaved copy made by mm_pack, or NULL */
};

/* Scratch bytes mm_run needs for n_tok activation rows of this weight. */
size_t mm_scratch_bytes(const struct qtensor *w, int n_tok);

void mm_run(const struct qtensor *w, const float *x, int n_tok, float *y,
            void *scratch, struct workers *wk);

/* Bytes of the row-interleaved copy mm_pack would make of w: 0 when its type
 * has no packed kernel on this CPU (or SPARROW_KERNELS=ref). */
size_t mm_pack_bytes(const struct qtensor *w);

/* Write that copy into dst (64-byte aligned, mm_pack_bytes(w) bytes) and
 * point w->packed at it; from then on mm_run uses it. The caller owns dst and
 * keeps it alive as long as w is used; w->data stays needed (mm_get_row). */
void mm_pack(struct qtensor *w, void *dst);

/* F32 weights only, through cblas_sgemm (fast for wide batches, NOT
 * batch-invariant). Uses OpenBLAS's own threads: call it while the worker
 * pool is idle. */
void mm_run_blas(const struct qtensor *w, const float *x, int n_tok, float *y);

/* Row r of W as floats (embedding lookup), n_cols values. */
void mm_get_row(const struct qtensor *w, int64_t r, float *out);
