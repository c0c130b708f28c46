/* cpu.c - see cpu.h. */
#include "kernels/cpu.h"

#ifndef SPARROW_PORTABLE_ONLY

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static struct cpu_caps caps;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void probe(void) {
    const char *e = getenv("SPARROW_KERNELS");
    caps.allowed = e && !strcmp(e, "ref") ? SIMD_REF : e && !strcmp(e, "avx2") ? SIMD_AVX2 : SIMD_AVX512;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool fma_f16c = __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    caps.avx2 = fma_f16c && __builtin_cpu_supports("avx2");
    caps.avx512 = fma_f16c && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl");
    caps.vnni = __builtin_cpu_supports("avx512vnni");
    caps.bf16 = __builtin_cpu_supports("avx512bf16");
    caps.vbmi_dq = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512dq");
#endif
}

const struct cpu_caps *cpu_caps(void) {
    pthread_once(&once, probe);
    return &caps;
}

bool cpu_use(enum simd_level level) {
    const struct cpu_caps *c = cpu_caps();
    if (level > c->allowed) return false;
    switch (level) {
    case SIMD_REF: return true;
    case SIMD_AVX2: return c->avx2;
    case SIMD_AVX512: return c->avx512;
    }
    return false;
}
#endif
