/* rnd.h - the kernel tests' deterministic random inputs: a xorshift64
 * generator, activation-like float rows and random quantized blocks. One
 * copy for every test binary (header-only: each binary has its own state;
 * rnd_seed picks a binary's sequence). */
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static inline void rnd_seed(uint64_t seed) { rng_state = seed ? seed : 1; }

static inline uint64_t rnd64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static inline float frand(void) { /* uniform in [-1, 1) */
    return (float)((double)(rnd64() >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* Activation-like values: roughly normal, 3% of them six times larger. */
static inline void fill_random(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float v = (frand() + frand() + frand() + frand()) * 0.5f;
        if (frand() > 0.97f) v *= 6.0f;
        x[i] = v * scale;
    }
}

/* Overwrite a row of n elements of type t with random bytes, keeping the f16
 * scales sane (random exponents could make inf/NaN, which says nothing about
 * kernels); F16/F32 rows get random values in [-4, 4). */
static inline void randomize_blocks(enum qtype t, uint8_t *row, int64_t n) {
    const struct qtype_info *wi = qtype_get(t);
    const int64_t nb = n / wi->block_elems;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = row + b * wi->block_bytes;
        for (int i = 0; i < wi->block_bytes; i++) blk[i] = (uint8_t)rnd64();
        uint16_t d = qt_f32_to_f16(0.01f + 0.02f * (frand() + 1.0f));
        uint16_t d2 = qt_f32_to_f16(0.01f * (frand() + 1.0f));
        switch (t) {
        case QTYPE_Q8_0: case QTYPE_Q4_0: case QTYPE_Q5_0: memcpy(blk, &d, 2); break;
        case QTYPE_Q4_K: memcpy(blk, &d, 2); memcpy(blk + 2, &d2, 2); break;
        case QTYPE_Q6_K: memcpy(blk + 208, &d, 2); break;
        case QTYPE_F16:
            for (int64_t i = 0; i < n; i++) {
                const uint16_t h = qt_f32_to_f16(frand() * 4.0f);
                memcpy(row + 2 * i, &h, 2);
            }
            return;
        case QTYPE_F32:
            for (int64_t i = 0; i < n; i++) {
                const float f = frand() * 4.0f;
                memcpy(row + 4 * i, &f, 4);
            }
            return;
        default: break;
        }
    }
}

/* 64-byte aligned memory (free() it), for kernels that want aligned rows. */
static inline void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}
