/* fuzz_config.c - libFuzzer harness for the settings parsers (config/settings.c):
 * the fuzz bytes as a config file (sp_config_load_file via a memfd), and the
 * same bytes split at NUL into an argv for sp_config_parse_args. A bad file
 * or flag is an error with a message; a good one leaves a config that
 * sp_config_print can write. */
#include "tests/fuzz/fuzz_common.h"

#include "config/settings.h"

#define FUZZ_MAX_ARGS 64

static void check_result(int rc, const struct sp_err *err, const struct sp_config *c) {
    if (rc != SP_OK) { FUZZ_REQUIRE(err->msg[0] != 0); return; }
    FILE *out = fopen("/dev/null", "w");
    if (out) { sp_config_print(c, out); fclose(out); }
    struct sp_err verr;
    (void)sp_config_validate(c, &verr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct sp_config c;
    struct sp_err err = {0};
    char path[64];
    int fd = fuzz_bytes_to_file(data, size, path, sizeof(path));
    if (fd >= 0) {
        sp_config_defaults(&c);
        check_result(sp_config_load_file(&c, path, &err), &err, &c);
        close(fd);
    }

    /* argv: the bytes split at NUL, each a NUL-terminated copy. */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[FUZZ_MAX_ARGS + 1];
    int argc = 0;
    for (size_t i = 0; i <= size && argc < FUZZ_MAX_ARGS;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    sp_config_defaults(&c);
    const char *config_path = NULL;
    memset(&err, 0, sizeof(err));
    check_result(sp_config_parse_args(&c, argc, argv, &config_path, &err), &err, &c);
    (void)sp_config_args_want_help(argc, argv);
    if (argc >= 2) {    /* one setting by name */
        sp_config_defaults(&c);
        (void)sp_config_set(&c, argv[0], argv[1], &err);
    }
    free(buf);
    return 0;
}
