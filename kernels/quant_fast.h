/* quant_fast.h - SIMD matmul micro-kernels (kernels/quant_avx512.c) behind
 * runtime CPU dispatch. The portable kernels of quant.h stay the oracle.
 *
 * Two kinds of kernel:
 *
 * - struct qfast (F32, F16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K) works on the GGUF
 *   row layout as it is: tile() computes ONE weight row against nt
 *   (1..max_tok) prepared activation rows, reading each weight block once for
 *   all of them (a horizontal reduction per row and token).
 * - struct qpack (Q8_0, Q4_0, Q4_K, Q6_K; the batched-decode path) works on a
 *   row-interleaved copy of the weights made once at model load (pack_group,
 *   through mm_pack): tile() computes a group of QPACK_ROWS = 16 rows, one row
 *   per zmm lane, against nt (1..max_tok) tokens, so one vpdpbusd advances 16
 *   rows' dots and the per-block scaling is one lane-wise multiply; no
 *   horizontal reduction. The layouts are described in quant_avx512.c.
 *
 * Both work on their own activation layout: act_prep converts one float
 * activation row into act_bytes(n) bytes (the same quantization as the
 * reference dot_type, bit for bit, then repacked and padded).
 *
 * Batch invariance: inside tile() every token has its own accumulators and
 * the same sequence of floating-point operations, whatever nt is and whatever
 * position the token has in the tile; integer block dots are exact. In the
 * packed kernels every float operation is lane-wise, so a row's result does
 * not depend on the other rows of its group either (padding rows are zero).
 * So the float result of (row, token) depends only on the row, the token and n.
 *
 * Dispatch (CPU features probed once, kernels/cpu.h): on
 * AVX-512 F/BW/VL/VNNI the kernels of kernels/quant_avx512.c (BF16 weights:
 * kernels/quant_bf16.c, with AVX512-BF16's vdpbf16ps); else, with AVX2 + FMA
 * + F16C, those of kernels/quant_avx2.c (the same float order as the AVX-512
 * ones, so the same bits); else none (NULL: the reference). qpack_get() is
 * AVX-512 only. The environment variable SPARROW_KERNELS=ref forces the
 * reference, SPARROW_KERNELS=avx2 the AVX2 set.
 * Thread-safety: pure functions; qfast_get/qpack_get are safe from any thread. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/quant.h"

#define QFAST_MAX_TOK 8     /* largest max_tok of any type */

struct qfast {
    const char *name;       /* "avx512-q8_0", for logs and tests */
    int max_tok;            /* tokens per tile() call, <= QFAST_MAX_TOK */
    /* Bytes of one prepared activation row of n elements (a multiple of 64). */
    size_t (*act_bytes)(int64_t n);
    /* Prepare one activation row: x[0..n) -> dst (act_bytes(n) bytes). */
    void (*act_prep)(const float *x, int64_t n, void *dst);
    /* y[t * y_stride] = row w . activation row t (at act + t * act_stride),
     * for t in [0, nt), 1 <= nt <= max_tok. */
    void (*tile)(int64_t n, const void *w, const void *act, size_t act_stride, int nt,
                 float *y, size_t y_stride);
};

/* The fast kernel for a weight type, or NULL (see Dispatch above). */
const struct qfast *qfast_get(enum qtype wtype);

/* Same, ignoring SPARROW_KERNELS (tests compare both paths in one process);
 * still NULL when the CPU cannot run it. */
const struct qfast *qfast_get_cpu(enum qtype wtype);

/* The AVX2 + FMA + F16C kernel (kernels/quant_avx2.c) and the AVX-512 BF16
 * one (kernels/quant_bf16.c). qfast_avx2_get does not check the CPU;
 * qfast_bf16_get returns NULL when the CPU lacks AVX512-BF16. */
const struct qfast *qfast_avx2_get(enum qtype wtype);
const struct qfast *qfast_bf16_get(void);

#define QPACK_ROWS 16       /* rows per interleaved group: one zmm lane each */
#define QPACK_MAX_TOK 8     /* largest max_tok of any packed kernel */

struct qpack {
    const char *name;       /* "avx512-q8_0x16" */
    int max_tok;            /* tokens per tile() call, <= QPACK_MAX_TOK */
    /* Bytes of one prepared activation row of n elements (a multiple of 64). */
    size_t (*act_bytes)(int64_t n);
    void (*act_prep)(const float *x, int64_t n, void *dst);
    /* Bytes of one packed group of QPACK_ROWS rows of n elements (a multiple
     * of 64: groups are stored back to back in 64-byte aligned memory). */
    size_t (*group_bytes)(int64_t n);
    /* Pack nr (1..QPACK_ROWS) rows of n elements, row i at rows + i * row_bytes
     * in the GGUF layout, into dst (group_bytes(n) bytes); missing rows are 0. */
    void (*pack_group)(const void *rows, size_t row_bytes, int nr, int64_t n, void *dst);
    /* y[t * y_stride + i] = row i of the group . activation row t (at act +
     * t * act_stride), for i < nr and t < nt, 1 <= nt <= max_tok. */
    void (*tile)(int64_t n, const void *group, const void *act, size_t act_stride, int nt,
                 float *y, size_t y_stride, int nr);
};

/* The packed kernel for a weight type, or NULL (see Dispatch above). */
const struct qpack *qpack_get(enum qtype wtype);
/* Same, ignoring SPARROW_KERNELS. */
const struct qpack *qpack_get_cpu(enum qtype wtype);
