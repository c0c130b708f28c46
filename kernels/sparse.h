/* sparse.h - sparrow's sparse weight types: N:M, V:N:M and block-sparse
 * matrices whose kept values are F16 or 8-/4-bit group-quantized. Layouts are
 * documented in docs/formats.md; this header is their one source of truth.
 *
 * One family, three parameters and a value precision:
 *   b  block width in columns: 1 (element-wise: N:M) or 2, 4, 8, 16 (1 x b
 *      blocks: block-sparse),
 *   m  group size in blocks (b = 1: 1..16; b > 1: 1..64),
 *   n  blocks kept per group, 1..m.
 * A row (one output; elements along the reduced dimension) is cut into groups
 * of m*b columns and every group keeps exactly n blocks of b columns.
 *   - N:M is b = 1. V:N:M (V rows share a choice of 4 of every M columns, 2
 *     of those 4 kept per row) is stored as 2:M with b = 1: the shared choice
 *     is a constraint on the pruning (sparse_choose_mask), not on the bytes,
 *     because our kernels read one row at a time and gain nothing from it.
 *   - Block-sparse 1 x b at sparsity s keeps n = round((1 - s) * m) of every
 *     m blocks.
 *
 * Type id (the uint32 in GGUF tensor infos; ggml's ids are < 64):
 *   SPARSE_ID_FLAG | val << 16 | log2(b) << 12 | (m - 1) << 6 | (n - 1)
 *
 * Row layout: blocks ("super-blocks") of E = g*m*b elements, g = 32 /
 * gcd(32, n*b) groups, so each keeps K = g*n*b values, a multiple of 32. A
 * super-block is its index, then its values:
 *   index, b = 1: K in-group positions (0..m-1) of p bits each (p = 2 if
 *          m <= 4 else 4), value k at bits [p*k, p*k+p) of a little-endian
 *          bit stream; the n positions of a group ascend. K*p/8 bytes.
 *   index, b > 1: a bitmap of g*m bits, bit i*m + j set when block j of
 *          group i is kept (exactly n per group), bit stream as above, padded
 *          with zero bits to a multiple of 32 bits.
 *   values: the K kept values in column order, in K/32 chunks of 32:
 *          SPARSE_VAL_F16 64 bytes of IEEE halves; SPARSE_VAL_Q8 a ggml
 *          Q8_0 block (34 bytes); SPARSE_VAL_Q4 a ggml Q4_0 block (18 bytes).
 * A row of n_cols elements (a multiple of E) is n_cols / E super-blocks.
 *
 * Numerics: activations stay F32 (qtype_info.dot_type is F32). Every kernel
 * (portable oracle and SIMD) uses one fixed operation order per (row, token)
 * whatever the number of tokens in the call, so matmul stays batch-invariant.
 *
 * Pure functions on caller-owned memory; any thread. Owner: kernels. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant.h"

#define SPARSE_ID_FLAG 0x100000u
#define SPARSE_MAX_TOK 8          /* tokens per tile call */

enum sparse_val { SPARSE_VAL_F16 = 0, SPARSE_VAL_Q8 = 1, SPARSE_VAL_Q4 = 2 };

struct sparse_fmt {
    int b, m, n;
    enum sparse_val val;
};

/* A type id's format; false when the id is not a valid sparse id. */
bool sparse_fmt_of(uint32_t type, struct sparse_fmt *f);
/* The id of a format; 0 when the parameters are out of range. */
uint32_t sparse_type_id(const struct sparse_fmt *f);
/* Elements and bytes of one super-block; 0 for an invalid format. */
int sparse_block_elems(const struct sparse_fmt *f);
int sparse_block_bytes(const struct sparse_fmt *f);

/* qtype table entry for a sparse id ("sp_2:4_f16", "sp_1x16_4:16_q8"), or
 * NULL. block_elems/block_bytes are the super-block's, dot_type is F32 and
 * the function pointers are NULL: sparse rows go through the calls below
 * (qtype_get forwards ids with SPARSE_ID_FLAG here). Entries live for the
 * process: one per id, created at first use (any thread), at most 256
 * distinct ids per process; past that NULL, which a loader reports as an
 * unknown type. */
const struct qtype_info *sparse_qtype_get(uint32_t type);

/* Keep mask for a rows x n_cols matrix: keep[r * n_cols + c] = 1 for kept
 * elements. Scores are |w| (act_norm NULL: magnitude pruning) or |w| *
 * act_norm[c] (Wanda). v > 1: V:N:M (requires b = 1, n = 2, m >= 4): in every
 * strip of v rows (the last may be shorter) each group of m columns first
 * keeps the 4 columns with the largest summed score over the strip, then each
 * row keeps its 2 best of those 4; v <= 1: no strips. Block-sparse (b > 1)
 * scores a block by the sum of its elements' scores. Ties keep the lower
 * column (block), NaN scores count as largest. SP_OK, or SP_EINVAL for an
 * invalid format, a v > 1 the format cannot take, or n_cols not a multiple
 * of the super-block. */
int sparse_choose_mask(const struct sparse_fmt *f, int v, const float *w, const float *act_norm,
                       int64_t rows, int64_t n_cols, uint8_t *keep);

/* Encode rows x n_cols floats under a keep mask that has exactly the format's
 * pattern (n blocks per group, whole blocks). out: rows * row bytes. F16
 * values round to nearest even; Q8/Q4 chunks go through quant.c's Q8_0/Q4_0
 * quantizers. SP_OK, or SP_EINVAL (bad format or n_cols, or a mask that
 * breaks the pattern; out is then partly written). */
int sparse_encode(const struct sparse_fmt *f, const float *w, const uint8_t *keep, int64_t rows,
                  int64_t n_cols, void *out);

/* SP_OK when every row of data is well formed (positions < m and ascending,
 * n bits per group, zero padding), else SP_EFORMAT (SP_EINVAL for a bad
 * format or n_cols). Only the index is checked: any value bits are a number.
 * engine/model.c runs it on every sparse tensor, so a hostile file is
 * refused at load; the kernels still never read outside the row's
 * activations on unchecked data. */
int sparse_check(const struct sparse_fmt *f, const void *data, int64_t rows, int64_t n_cols);

/* Dense expansion of one row (zeros at pruned positions): the oracle.
 * n_cols a multiple of the super-block. */
void sparse_row_to_float(const struct sparse_fmt *f, const void *row, float *out, int64_t n_cols);

/* nr consecutive rows of one matrix (row i at rows + i * the row's bytes,
 * n_cols / E super-blocks each), 1 <= nr <= SPARSE_MAX_ROWS, against nt
 * tokens, 1 <= nt <= SPARSE_MAX_TOK: y[t * y_stride + i] = row_i . x_t,
 * x_t = x + t * x_stride floats (n_cols of them). A (row, token) result does
 * not depend on nr, nt, the row's or the token's place in the call. */
#define SPARSE_MAX_ROWS 4
typedef void (*sparse_tile_fn)(const struct sparse_fmt *f, int64_t n_cols, const void *rows, int nr,
                               const float *x, size_t x_stride, int nt, float *y, size_t y_stride);

/* The portable kernel (the oracle). Per super-block the index and values
 * are decoded once for all nt tokens; value k of the super-block adds to
 * lane k % 16 of the token's 16 accumulators (no FMA), summed pairwise at
 * the end (8+8, 4+4, 2+2, 1+1). Rows one after the other. */
void sparse_tile_ref(const struct sparse_fmt *f, int64_t n_cols, const void *rows, int nr,
                     const float *x, size_t x_stride, int nt, float *y, size_t y_stride);
/* The kernel matmul uses: the AVX-512 one (kernels/sparse_avx512.c) when the
 * CPU has it and SPARROW_KERNELS allows it (kernels/cpu.h), else
 * sparse_tile_ref. */
sparse_tile_fn sparse_tile_get(const struct sparse_fmt *f);
/* The AVX-512 kernel regardless of SPARROW_KERNELS, or NULL when the CPU
 * cannot run it (tests compare it with the oracle). */
sparse_tile_fn sparse_tile_avx512(const struct sparse_fmt *f);
