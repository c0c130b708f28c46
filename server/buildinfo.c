/* buildinfo.c - see buildinfo.h. */
#include "server/buildinfo.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cpu.h"

#ifndef SPARROW_GIT
#define SPARROW_GIT "unknown"
#endif
#ifndef SPARROW_CFLAGS
#define SPARROW_CFLAGS "unknown"
#endif

const char *buildinfo_version(void) { return SPARROW_VERSION; }
const char *buildinfo_commit(void) { return SPARROW_GIT; }
const char *buildinfo_cflags(void) { return SPARROW_CFLAGS; }

const char *buildinfo_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown compiler";
#endif
}

const char *buildinfo_cpu(char *buf, size_t n, const char *sep) {
    const struct cpu_caps *c = cpu_caps();
    const struct { const char *name; bool on; } f[] = {
        { "avx2", c->avx2 }, { "avx512f", c->avx512f }, { "avx512bw", c->avx512bw },
        { "avx512vnni", c->avx512vnni }, { "avx512bf16", c->avx512bf16 }, { "f16c", c->f16c }, { "fma", c->fma },
    };
    const bool present_only = !strcmp(sep, ",");
    size_t len = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && len < n; i++) {
        if (present_only && !f[i].on) continue;
        char name[16];
        size_t k = 0;
        for (; f[i].name[k] && k < sizeof(name) - 1; k++)
            name[k] = present_only ? f[i].name[k] : (char)(f[i].name[k] - (f[i].name[k] >= 'a' ? 32 : 0));
        name[k] = 0;
        int w = present_only ? snprintf(buf + len, n - len, "%s%s", len ? sep : "", name)
                             : snprintf(buf + len, n - len, "%s%s = %d", len ? sep : "", name, f[i].on);
        if (w < 0) break;
        len += (size_t)w;
    }
    return buf;
}

const char *buildinfo_line(char *buf, size_t n, const char *sep) {
    char cpu[256];
    snprintf(buf, n, "sparrow %s%scommit %s%sbuilt with %s: %s%scpu: %s", SPARROW_VERSION, sep, SPARROW_GIT, sep,
             buildinfo_compiler(), SPARROW_CFLAGS, sep, buildinfo_cpu(cpu, sizeof(cpu), " | "));
    return buf;
}
