/* quant.h - tensor element types and their block formats, bit-compatible with
 * GGUF/ggml so files written by llama.cpp load as they are.
 *
 * Every type is a sequence of blocks of `block_elems` elements stored in
 * `block_bytes` bytes; a row of n elements (n a multiple of block_elems) takes
 * n / block_elems * block_bytes bytes. The table knows the sizes of every ggml
 * type id (so the GGUF reader can validate any file); only types with
 * `to_float` set can be computed with here. sparrow's sparse types
 * (kernels/sparse.h) have table entries for their sizes and names but no
 * function pointers: they compute through sparse.h's own calls.
 *
 * Matrix products follow ggml's numerics: the activation row is first converted
 * to the weight type's `dot_type` (F16 weights -> F16 activations; Q8_0/Q4_0/
 * Q5_0 -> Q8_0 blocks; Q4_K/Q6_K -> Q8_K blocks; F32/BF16 -> F32/BF16), then
 * `vec_dot` takes one weight row and one converted activation row.
 *
 * The functions here are the portable reference (the oracle for fast paths).
 * Pure functions on caller-owned memory; any thread. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml's type ids (the numbers stored in GGUF tensor infos). */
enum qtype {
    QTYPE_F32 = 0,
    QTYPE_F16 = 1,
    QTYPE_Q4_0 = 2,
    QTYPE_Q4_1 = 3,
    QTYPE_Q5_0 = 6,
    QTYPE_Q5_1 = 7,
    QTYPE_Q8_0 = 8,
    QTYPE_Q8_1 = 9,
    QTYPE_Q2_K = 10,
    QTYPE_Q3_K = 11,
    QTYPE_Q4_K = 12,
    QTYPE_Q5_K = 13,
    QTYPE_Q6_K = 14,
    QTYPE_Q8_K = 15,
    QTYPE_BF16 = 30,
    QTYPE_COUNT = 40, /* ggml ids at or past this are invalid, except sparrow's
                       * own sparse types: ids with bit 20 set (SPARSE_ID_FLAG,
                       * kernels/sparse.h), which qtype_get forwards there */
};

struct qtype_info {
    const char *name;        /* "q4_0"; NULL for an id ggml does not define */
    int block_elems;         /* elements per block */
    int block_bytes;         /* bytes per block */
    enum qtype dot_type;     /* activation format vec_dot expects */
    /* dst[0..n) = src row; n a multiple of block_elems. NULL: not computable. */
    void (*to_float)(const void *src, float *dst, int64_t n);
    /* Quantize a float row into this type: for dot types the activation
     * conversion, for weight types ggml's reference quantizer. NULL if none. */
    void (*from_float)(const float *src, void *dst, int64_t n);
    /* sum_i w[i] * x[i] over n elements: w in this type, x in dot_type. */
    float (*vec_dot)(int64_t n, const void *w, const void *x);
};

/* Table entry for a type id, or NULL when the id is unknown. */
const struct qtype_info *qtype_get(uint32_t type);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block. */
size_t qtype_row_bytes(enum qtype type, int64_t n);

/* IEEE half and bfloat16 conversions with round-to-nearest-even, as F16C does. */
float qt_f16_to_f32(uint16_t h);
uint16_t qt_f32_to_f16(float f);
float qt_bf16_to_f32(uint16_t h);
uint16_t qt_f32_to_bf16(float f);
