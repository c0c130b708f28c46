/* fuzz_common.h - helpers shared by the libFuzzer harnesses in tests/fuzz/:
 * the shared data dir, fuzz bytes as a file, and a trap that libFuzzer (and
 * the plain replay build in tests/unit/test_fuzz_regressions.c) reports as a
 * crash with the broken property named on stderr. */
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_REQUIRE(cond) do { if (!(cond)) { \
    fprintf(stderr, "fuzz: property broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    abort(); } } while (0)

/* ../shared, or $SPARROW_SHARED. */
static inline const char *fuzz_shared_dir(void) {
    const char *d = getenv("SPARROW_SHARED");
    return d && *d ? d : "../shared";
}

/* The bytes as a file: an anonymous memfd. Writes its /proc path into path
 * and returns the fd (caller closes), or -1. */
static inline int fuzz_bytes_to_file(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) { close(fd); return -1; }
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}
