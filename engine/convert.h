/* convert.h - offline GGUF-to-GGUF weight conversion: `sparrow quantize`
 * (every 2-D weight to one type) and `sparrow sparsify` (per-layer weights to
 * a sparse type of kernels/sparse.h: N:M, V:N:M or block-sparse, pruned by
 * magnitude or by Wanda).
 *
 * A converted tensor is decoded to floats (its type's to_float; a sparse
 * source through sparse_row_to_float, so `quantize --type f32` of a sparse
 * file is its exact dense-with-zeros expansion) and re-encoded with the
 * target's from_float (ggml's reference quantizers). A tensor already of the
 * target type is copied byte for byte. 1-D tensors (norms) are always copied.
 * All metadata is copied; quantize sets general.file_type (llama_ftype of the
 * target) and general.quantization_version = 2.
 *
 * Sparsify: the whole matrix is decoded to F32, sparse_choose_mask picks the
 * kept elements (score |w|, or |w| * ||X_j||_2 with Wanda's calibration
 * norms) and sparse_encode stores them. Only per-layer 2-D weights
 * (blk.N.*.weight) whose row length is a multiple of the format's
 * super-block are pruned; the rest keep their type. Keys added:
 * sparrow.sparse.format ("2:4", "64:2:8", "1x16:75%"), sparrow.sparse.method
 * ("magnitude", "wanda"), sparrow.sparse.sparsity (float32: the fraction of
 * pruned elements over the pruned tensors) and sparrow.sparse.values ("f16",
 * "q8", "q4").
 *
 * Rows that do not fit the target block (llama.cpp's rule, llama-quantize
 * 2025-02): Q4_K falls back to Q5_0 and Q6_K to Q8_0 when the row length is
 * not a multiple of 256, and any type whose block still does not divide the
 * row falls back to F16. A sparse target keeps such a tensor as it is (dense).
 *
 * Tensors are written in llama-quantize's order (outside the layers first,
 * then by layer number, by name within each), so `quantize --type f16` of
 * stories260K-f32 reproduces llama.cpp's stories260K-f16.gguf byte for byte.
 *
 * Ownership: files only; nothing is kept. Thread-safety: any thread. Owner:
 * engine. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"
#include "kernels/sparse.h"

struct convert_calib;           /* Wanda's per-layer input-column norms (opaque) */

/* The sparse target of sparsify. N:M: b = 1, m = M, n = N (v = 0 or 1).
 * V:N:M: the same with n = 2 and v = V > 1. Block-sparse 1 x b: b > 1 and
 * block_sparsity the target; m and n are chosen per tensor (convert_block_fmt);
 * with block_sparsity 0 the given m and n are used as they are. */
struct convert_sparse {
    struct sparse_fmt fmt;      /* b, n, m (b = 1), val */
    int v;                      /* V of V:N:M; <= 1: plain N:M */
    double block_sparsity;      /* b > 1: fraction of blocks pruned, in (0, 1) */
};

struct convert_opts {
    uint32_t type;              /* target enum qtype, or one sparse type id (as sparse = {its format}) */
    bool layers_only;           /* only blk.N.* 2-D weights (sparsify); else every 2-D tensor */
    const int *skip_layers;     /* layers left unchanged (layers_only) */
    int n_skip_layers;
    const struct convert_sparse *sparse; /* non-NULL: sparsify to this family */
    const struct convert_calib *calib;   /* sparse: Wanda norms; NULL: magnitude */
    const char *sparse_format;  /* sparse: written as sparrow.sparse.format */
    const char *sparse_method;  /* written as sparrow.sparse.method (default "magnitude") */
    int threads;                /* conversion threads (<= 1: the calling thread) */
};

struct convert_stats {
    int n_converted;            /* tensors re-encoded to the target */
    int n_fallback;             /* 2-D tensors given another type (row length) */
    int n_copied;               /* tensors copied unchanged */
    uint64_t bytes_in, bytes_out; /* tensor data */
    uint64_t n_pruned_elems;    /* sparse: elements of the pruned tensors */
    uint64_t n_zeroed_elems;    /* sparse: of those, the ones pruned away */
    double sparsity;            /* n_zeroed / n_pruned (0 when nothing was pruned) */
};

/* Type a tensor with rows of n_cols gets when the target is `target`
 * (target itself, or the fallback described above). */
uint32_t convert_type_for(uint32_t target, int64_t n_cols);

/* llama_ftype value for general.file_type of a file mostly of this type; -1 if none. */
int convert_file_type(uint32_t type);

/* Target type by name: f32 f16 bf16 q8_0 q4_0 q5_0 q4_k q6_k; -1 if unknown. */
int convert_type_by_name(const char *name);

/* The sparse target of `sparrow sparsify` from its flags (NULL: not given):
 *   format   "N:M" (1 <= N <= M <= 16), "V:N:M" (V >= 2, N = 2, 4 <= M <= 16),
 *            "n:M" (N = round((1 - S) * M), needs sparsity), "n:m" (needs
 *            sparsity; M is the first of 4, 8, 16 with (1 - S) * M whole,
 *            else 16 and N rounded), "block" (1 x b blocks, b from block,
 *            needs sparsity) or "1xB" (the same with b = B);
 *   block    "1x2", "1x4", "1x8", "1x16" (default 1x16; only with block);
 *   sparsity "0.75" or "75%": for N:M and V:N:M, when given, it must equal
 *            1 - N/M (within 0.001);
 *   values   "f16" (default), "q8", "q4".
 * Fills *out and the canonical format name written to the file ("2:4",
 * "64:2:8", "1x16:75%"); on a bad combination returns -1 with a one-line
 * reason in msg. */
int convert_parse_sparse(const char *format, const char *block, const char *sparsity, const char *values,
                         struct convert_sparse *out, char *name, size_t name_len, char *msg, size_t msg_len);

/* Block-sparse 1 x b at sparsity s for rows of n_cols: groups of m = 256/b
 * blocks when the super-block divides the row, else spans of 128, then 64
 * columns; n = round((1 - s) * m), at least 1. False when none fits. */
bool convert_block_fmt(int b, double s, enum sparse_val val, int64_t n_cols, struct sparse_fmt *out);

/* The format for a tensor with rows of n_cols under sp; false when the row
 * length is not a multiple of the super-block (the tensor stays dense). */
bool convert_sparse_fmt_for(const struct convert_sparse *sp, int64_t n_cols, struct sparse_fmt *out);

/* Wanda calibration: run the text through the dense model in_path (chunks of
 * n_ctx tokens, each from position 0 with BOS first when the vocab adds it;
 * n_ctx <= 0: min(256, the model's context)) and collect, for every layer and
 * matmul input, the L2 norm over the tokens of each input column. Needs at
 * least 2 tokens of text. */
int convert_calibrate(const char *in_path, const char *text, size_t len, int n_ctx, int threads,
                      struct convert_calib **out, struct sp_err *err);
void convert_calib_free(struct convert_calib *c);                    /* NULL is fine */
int convert_calib_tokens(const struct convert_calib *c);            /* tokens seen */
/* The norms for the input of tensor `name` (blk.L.attn_q/k/v, attn_output,
 * ffn_gate/up, ffn_down .weight) with rows of n_cols; NULL when unknown. */
const float *convert_calib_norm(const struct convert_calib *c, const char *name, int64_t n_cols);

int convert_model(const char *in_path, const char *out_path, const struct convert_opts *o,
                  struct convert_stats *st, struct sp_err *err);
