/* buildinfo.h - what this binary is: version, git commit, compiler and flags
 * it was built with (baked in by the Makefile, which passes -DSPARROW_GIT and
 * -DSPARROW_CFLAGS to this file only), and the CPU features the running
 * machine has (probed at run time, kernels/cpu.h), like
 * llama.cpp's system info line. Shown by `sparrow --version`, the first log
 * line of `sparrow serve` and /metrics (sparrow_build_info).
 * Strings are read-only and static; any thread may call any function. */
#pragma once
#include <stddef.h>

#define SPARROW_VERSION "0.1.0"

const char *buildinfo_version(void);    /* "0.1.0" */
const char *buildinfo_commit(void);     /* `git describe --always --dirty`, or "unknown" */
const char *buildinfo_compiler(void);   /* "gcc 12.2.0" */
const char *buildinfo_cflags(void);     /* the CFLAGS of the build */

/* The CPU features sparrow's kernels care about, in a fixed order, as
 * "AVX2 = 1 | AVX512F = 1 | ... | FMA = 1" (sep " | ", llama.cpp's style)
 * or, with sep ",", the present ones only: "avx2,avx512f,fma". Returns buf. */
const char *buildinfo_cpu(char *buf, size_t n, const char *sep);

/* Everything in one line, items joined by sep ("\n" for --version, "; " for
 * a log line). Returns buf (truncated to fit n). */
const char *buildinfo_line(char *buf, size_t n, const char *sep);
