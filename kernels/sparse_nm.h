/* sparse_nm.h - N:M structured-sparse weight types (sparrow's own tensor
 * type ids, >= 64 so they never collide with ggml's). Layouts are documented
 * in docs/formats.md.
 *
 * S24_F16 (id 64, "s24_f16"): 2:4 sparsity with F16 kept values. Every group
 * of 4 consecutive elements of a row keeps 2; a block of 32 elements is 36
 * bytes: 16 kept values (IEEE half, group g's two at v[2g], v[2g+1]) then a
 * little-endian u32 of 2-bit in-group positions (bits 2k..2k+1 give value
 * k's position 0..3 inside group k/2; the two positions of a group ascend).
 * 9/16 of the F16 bytes of the same matrix.
 *
 * The types plug into the qtype table (kernels/quant.h: qtype_get forwards
 * ids >= QTYPE_SPARSE_FIRST here): to_float is the dense expansion (zeros at
 * pruned positions: the oracle), from_float prunes by magnitude (keep the 2
 * largest |w| of every 4; ties keep the lower position) and encodes,
 * vec_dot multiplies the compressed row by an F32 activation row without
 * expanding it (dot_type F32). vec_dot is the AVX-512 kernel on CPUs with
 * AVX-512F (probed once) unless SPARROW_KERNELS=ref, else the portable one;
 * either way one fixed operation order per process, so batched and single
 * results are bit-identical.
 *
 * Pure functions on caller-owned memory; any thread. Owner: kernels. */
#pragma once
#include <stdint.h>

#include "kernels/quant.h"

#define QTYPE_SPARSE_FIRST 64u
#define QTYPE_S24_F16 64u
#define QTYPE_SPARSE_END 65u     /* one past the last sparse id */

#define S24_BLOCK_ELEMS 32
#define S24_BLOCK_BYTES 36

/* Table entry for a sparse type id, or NULL. */
const struct qtype_info *sparse_qtype_get(uint32_t type);

/* The two kernels behind S24_F16's vec_dot, for tests: w is n/32 blocks, x
 * n floats. avx512 returns NAN when the CPU cannot run it. */
float s24_f16_dot_ref(int64_t n, const void *w, const void *x);
float s24_f16_dot_avx512(int64_t n, const void *w, const void *x);
/* True when vec_dot uses the AVX-512 kernel in this process. */
int s24_f16_dot_is_avx512(void);
