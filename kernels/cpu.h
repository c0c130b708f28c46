/* cpu.h - what the kernels may run here: the CPU's SIMD features, probed
 * once, and the SPARROW_KERNELS override, read once: "ref" turns every fast
 * path off, "avx2" allows the AVX2 ones at most (what an AVX2-only CPU runs).
 * The one place both are decided, so every kernel family obeys the same
 * switch (and `sparrow --version` reports the same probe). Thread-safe. */
#pragma once
#include <stdbool.h>

enum simd_level {
    SIMD_REF,               /* portable C */
    SIMD_AVX2,              /* AVX2 + FMA + F16C */
    SIMD_AVX512,            /* AVX-512 F/BW/VL + FMA + F16C */
};

struct cpu_caps {
    enum simd_level allowed;    /* the override; SIMD_AVX512 when unset */
    bool avx2, fma, f16c;       /* the CPU's own features, as probed */
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vbmi, avx512vnni, avx512bf16;
};

#ifndef SPARROW_PORTABLE_ONLY
const struct cpu_caps *cpu_caps(void);
#else
/* A build of the portable kernels only (the fuzz build: the parsers need no
 * SIMD, and clang 14 rejects some of gcc's feature names). The answers are
 * constants, so every fast path is dead code the compiler drops. */
static inline const struct cpu_caps *cpu_caps(void) {
    static const struct cpu_caps none;
    return &none;
}
#endif

/* The CPU runs the level (whatever the override says). */
static inline bool cpu_has(enum simd_level level) {
    const struct cpu_caps *c = cpu_caps();
    const bool avx2 = c->avx2 && c->fma && c->f16c;
    switch (level) {
    case SIMD_REF: return true;
    case SIMD_AVX2: return avx2;
    case SIMD_AVX512: return c->fma && c->f16c && c->avx512f && c->avx512bw && c->avx512vl;
    }
    return false;
}

/* The CPU runs the level and the override allows it. */
static inline bool cpu_use(enum simd_level level) { return level <= cpu_caps()->allowed && cpu_has(level); }
