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
    /* __builtin_cpu_supports takes string literals only: one line each. */
    __builtin_cpu_init();
    caps.avx2 = __builtin_cpu_supports("avx2");
    caps.fma = __builtin_cpu_supports("fma");
    caps.f16c = __builtin_cpu_supports("f16c");
    caps.avx512f = __builtin_cpu_supports("avx512f");
    caps.avx512bw = __builtin_cpu_supports("avx512bw");
    caps.avx512vl = __builtin_cpu_supports("avx512vl");
    caps.avx512dq = __builtin_cpu_supports("avx512dq");
    caps.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
    caps.avx512vnni = __builtin_cpu_supports("avx512vnni");
    caps.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
}

const struct cpu_caps *cpu_caps(void) {
    pthread_once(&once, probe);
    return &caps;
}

#endif
