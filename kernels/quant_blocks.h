/* quant_blocks.h - ggml's block layouts for the quantized types, shared by
 * the reference kernels (quant.c) and the SIMD ones (quant_avx512.c,
 * quant_avx2.c): one definition of the bytes a GGUF file holds. Private to
 * kernels/. */
#pragma once
#include <stdint.h>

#define QK32 32   /* elements in a Q4_0/Q5_0/Q8_0 block */
#define QK_K 256  /* elements in a K-quant super-block */

/* Field order and sizes are ggml's; the static asserts catch any padding. */
struct block_q4_0 {
    uint16_t d;              /* f16 scale */
    uint8_t qs[QK32 / 2];    /* element j in low nibble of qs[j], j+16 in high */
};
struct block_q5_0 {
    uint16_t d;
    uint8_t qh[4];           /* bit j = 5th bit of element j (little-endian u32) */
    uint8_t qs[QK32 / 2];
};
struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK32];
};
struct block_q4_K {
    uint16_t d;              /* f16 scale of the 6-bit sub-block scales */
    uint16_t dmin;           /* f16 scale of the 6-bit sub-block mins */
    uint8_t scales[12];      /* 8 scales + 8 mins, 6 bits each, packed */
    uint8_t qs[QK_K / 2];    /* 4-bit quants, 64 elements per 32 bytes */
};
struct block_q6_K {
    uint8_t ql[QK_K / 2];    /* low 4 bits */
    uint8_t qh[QK_K / 4];    /* high 2 bits */
    int8_t scales[QK_K / 16];
    uint16_t d;
};
struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16]; /* sum of qs in each group of 16 */
};

_Static_assert(sizeof(struct block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(struct block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(struct block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(struct block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(struct block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(struct block_q8_K) == 292, "q8_K block");
