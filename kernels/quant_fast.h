/* quant_fast.h - SIMD matmul micro-kernels (kernels/quant_avx512.c) behind
 * runtime CPU dispatch. The portable kernels of quant.h stay the oracle.
 *
 * A fast type works on its own activation layout: act_prep converts one float
 * activation row into act_bytes(n) bytes (the same quantization as the
 * reference dot_type, bit for bit, then repacked and padded), and tile()
 * computes one weight row against nt (1..max_tok) prepared activation rows,
 * reading each weight block once for all of them.
 *
 * Batch invariance: inside tile() every token has its own accumulators and
 * the same sequence of floating-point operations, whatever nt is and whatever
 * position the token has in the tile; integer block dots are exact. So the
 * float result of (row, token) depends only on the row, the token and n.
 *
 * Dispatch: qfast_get() returns NULL when the CPU lacks AVX-512 F/BW/VL/VNNI
 * (checked once with __builtin_cpu_supports), when the type has no fast
 * kernel, or when the environment variable SPARROW_KERNELS=ref is set.
 * Thread-safety: pure functions; qfast_get is safe from any thread. */
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
