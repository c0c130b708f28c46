/* cpu.h - what the kernels may run here: the CPU's SIMD features, probed
 * once, and the SPARROW_KERNELS override, read once: "ref" turns every fast
 * path off, "avx2" allows the AVX2 ones at most (what an AVX2-only CPU runs).
 * The one place both are decided, so every kernel family obeys the same
 * switch. Thread-safe. */
#pragma once
#include <stdbool.h>

enum simd_level { SIMD_REF, SIMD_AVX2, SIMD_AVX512 };

struct cpu_caps {
    enum simd_level allowed;    /* the override; SIMD_AVX512 when unset */
    bool avx2;                  /* AVX2 + FMA + F16C */
    bool avx512;                /* AVX-512 F/BW/VL + FMA + F16C */
    bool vnni;                  /* AVX512-VNNI */
    bool bf16;                  /* AVX512-BF16 */
    bool vbmi_dq;               /* AVX512-VBMI and AVX512-DQ */
};

#ifndef SPARROW_PORTABLE_ONLY
const struct cpu_caps *cpu_caps(void);

/* The CPU has the level and the override allows it. */
bool cpu_use(enum simd_level level);
#else
/* A build of the portable kernels only (the fuzz build: the parsers need no
 * SIMD, and clang 14 rejects some of gcc's feature names). The answers are
 * constants, so every fast path is dead code the compiler drops. */
static inline const struct cpu_caps *cpu_caps(void) {
    static const struct cpu_caps none;
    return &none;
}
static inline bool cpu_use(enum simd_level level) { return level == SIMD_REF; }
#endif
