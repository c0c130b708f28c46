/* test_fuzz_regressions.c - replay every saved fuzz input through its harness
 * under the plain (gcc, or ASan) build: tests/fuzz/regressions/<harness>/
 * holds inputs that once crashed (each fixed since), tests/fuzz/corpus/<harness>/
 * the seeds. Each input runs in a forked child, so a crash names its file and
 * the rest still run. The harnesses are tests/fuzz/fuzz_*.c, compiled with
 * LLVMFuzzerTestOneInput renamed to <harness>_one_input (see the Makefile). */
#include "tests/unit/check.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/wait.h>

int fuzz_api_one_input(const uint8_t *data, size_t size);
int fuzz_config_one_input(const uint8_t *data, size_t size);
int fuzz_gguf_one_input(const uint8_t *data, size_t size);
int fuzz_http_one_input(const uint8_t *data, size_t size);
int fuzz_tokenizer_one_input(const uint8_t *data, size_t size);

static const struct harness {
    const char *name;
    int (*one)(const uint8_t *data, size_t size);
} harnesses[] = {
    { "fuzz_api", fuzz_api_one_input },
    { "fuzz_config", fuzz_config_one_input },
    { "fuzz_gguf", fuzz_gguf_one_input },
    { "fuzz_http", fuzz_http_one_input },
    { "fuzz_tokenizer", fuzz_tokenizer_one_input },
};

/* Run one input in a child; true if it returned normally. */
static int replay_file(const struct harness *h, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    int ok = buf && fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) { free(buf); return 0; }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        h->one(buf, (size_t)n);
        _exit(0);
    }
    free(buf);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Every regular file of dir; returns how many ran, counting failures. */
static int replay_dir(const struct harness *h, const char *dir, int *n_failed) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        n++;
        if (!replay_file(h, path)) {
            fprintf(stderr, "  FAIL %s crashed on %s\n", h->name, path);
            (*n_failed)++;
        }
    }
    closedir(d);
    return n;
}

static void test_replay_all(void) {
    int total = 0;
    for (size_t i = 0; i < sizeof(harnesses) / sizeof(harnesses[0]); i++) {
        const struct harness *h = &harnesses[i];
        char dir[256];
        int failed = 0, n = 0;
        snprintf(dir, sizeof(dir), "tests/fuzz/regressions/%s", h->name);
        n += replay_dir(h, dir, &failed);
        snprintf(dir, sizeof(dir), "tests/fuzz/corpus/%s", h->name);
        n += replay_dir(h, dir, &failed);
        fprintf(stderr, "     %s: %d inputs, %d failed\n", h->name, n, failed);
        CHECK_EQ(failed, 0);
        total += n;
    }
    CHECK(total > 0);   /* run from the repository root */
}

int main(void) {
    RUN(test_replay_all);
    return check_report();
}
