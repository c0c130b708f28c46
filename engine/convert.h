/* convert.h - offline GGUF-to-GGUF weight conversion: `sparrow quantize`
 * (every 2-D weight to one type) and `sparrow sparsify` (per-layer weights to
 * an N:M sparse type, pruned by magnitude).
 *
 * A converted tensor is decoded to floats with its type's to_float and
 * re-encoded with the target's from_float (ggml's reference quantizers; for a
 * sparse target, magnitude pruning). A tensor already of the target type is
 * copied byte for byte. 1-D tensors (norms) are always copied. All metadata
 * is copied; quantize sets general.file_type (llama_ftype of the target) and
 * general.quantization_version = 2, sparsify adds sparrow.sparse.format and
 * sparrow.sparse.method.
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

struct convert_opts {
    uint32_t type;              /* target enum qtype (or a sparse id) */
    bool layers_only;           /* only blk.N.* 2-D weights (sparsify); else every 2-D tensor */
    const int *skip_layers;     /* layers left unchanged (layers_only) */
    int n_skip_layers;
    const char *sparse_format;  /* non-NULL: written as sparrow.sparse.format */
    const char *sparse_method;  /* written as sparrow.sparse.method */
    int threads;                /* conversion threads (<= 1: the calling thread) */
};

struct convert_stats {
    int n_converted;            /* tensors re-encoded to the target */
    int n_fallback;             /* 2-D tensors given another type (row length) */
    int n_copied;               /* tensors copied unchanged */
    uint64_t bytes_in, bytes_out; /* tensor data */
};

/* Type a tensor with rows of n_cols gets when the target is `target`
 * (target itself, or the fallback described above). */
uint32_t convert_type_for(uint32_t target, int64_t n_cols);

/* llama_ftype value for general.file_type of a file mostly of this type; -1 if none. */
int convert_file_type(uint32_t type);

/* Target type by name: f32 f16 bf16 q8_0 q4_0 q5_0 q4_k q6_k; -1 if unknown. */
int convert_type_by_name(const char *name);

int convert_model(const char *in_path, const char *out_path, const struct convert_opts *o,
                  struct convert_stats *st, struct sp_err *err);
