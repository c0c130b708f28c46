/* test_settings.c - the settings table: defaults, the file, the environment,
 * the flags (llama-server's anchor command line included), their precedence,
 * value parsing, and config/sparrow.conf matching the generated example.
 * Runs with cwd = the repository root. */
#include "tests/unit/check.h"

#include <stdarg.h>

#include "config/settings.h"

static char tmp_dir[64];

/* Write text to tmp_dir/name; returns the path (static buffer, one at a time). */
static const char *write_tmp(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
    return path;
}

static bool ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

/* The effective config as text, for whole-struct comparisons. */
static char *dump(const struct sp_config *c) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    sp_config_print(c, f);
    fclose(f);
    return buf;
}

static int set(struct sp_config *c, const char *name, const char *value, struct sp_err *err) {
    memset(err, 0, sizeof(*err));
    return sp_config_set(c, name, value, err);
}

static int args(struct sp_config *c, struct sp_err *err, const char **config_path, ...) {
    char *v[64];
    int n = 0;
    va_list ap;
    va_start(ap, config_path);
    for (char *a; (a = va_arg(ap, char *)) != NULL && n < 64;) v[n++] = a;
    va_end(ap);
    memset(err, 0, sizeof(*err));
    return sp_config_parse_args(c, n, v, config_path, err);
}

static void test_defaults(void) {
    struct sp_config c;
    sp_config_defaults(&c);
    CHECK_STR(c.model, "");
    CHECK_STR(c.model_alias, "");
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_EQ(c.port, 8080);
    CHECK_EQ(c.threads, 2);
    CHECK_EQ(c.ctx_size, 4096);
    CHECK_EQ(c.kv_cache_bytes, 0);
    CHECK_EQ(c.block_size, 16);
    CHECK(c.prefix_cache);
    CHECK_EQ(c.max_batch_tokens, 512);
    CHECK_EQ(c.max_running, 8);
    CHECK_EQ(c.scheduler_policy, SP_SCHEDULER_POLICY_DLPM);
    CHECK_STR(c.api_keys, "");
    CHECK_STR(c.api_key, "");
    CHECK_EQ(c.max_body_bytes, 1 << 20);
    CHECK_EQ(c.max_queue_per_client, 64);
    CHECK_EQ(c.max_queue, 1024);
    CHECK_EQ(c.max_tokens_limit, 4096);
    CHECK_EQ(c.max_connections, 256);
    CHECK_EQ(c.request_timeout_s, 600);
    CHECK_EQ(c.drain_timeout_s, 30);
    CHECK_EQ(c.log_level, SP_LOG_LEVEL_INFO);
    CHECK_NEAR(c.vtc_input_weight, 1.0, 0);
    CHECK_NEAR(c.vtc_output_weight, 2.0, 0);
    CHECK_EQ(c.dlpm_quantum, 256);
    CHECK_STR(sp_scheduler_policy_name(c.scheduler_policy), "dlpm");
    CHECK_STR(sp_log_level_name(c.log_level), "info");
    CHECK_STR(sp_scheduler_policy_name((enum sp_scheduler_policy)99), "?");
    struct sp_err err = { 0 };
    CHECK_EQ(sp_config_validate(&c, &err), SP_EINVAL);   /* no model */
    CHECK(strstr(err.msg, "model") != NULL);
}

static void test_values(void) {
    struct sp_config c;
    struct sp_err err;
    sp_config_defaults(&c);
    /* integers: strict, range-checked, errors name setting, value, range */
    CHECK_EQ(set(&c, "port", "18080", &err), SP_OK); CHECK_EQ(c.port, 18080);
    CHECK_EQ(set(&c, "port", "65536", &err), SP_ERANGE);
    CHECK_STR(err.msg, "port '65536' is out of range 1..65535");
    CHECK_EQ(c.port, 18080);                        /* untouched on error */
    CHECK_EQ(set(&c, "port", "0", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "port", "-1", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "port", "80a", &err), SP_EINVAL);
    CHECK_STR(err.msg, "port '80a' is not an integer (allowed 1..65535)");
    CHECK_EQ(set(&c, "port", " 80", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "port", "", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "port", "8e3", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "port", "0x50", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "dlpm_quantum", "99999999999999999999999", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "drain_timeout_s", "0", &err), SP_OK); CHECK_EQ(c.drain_timeout_s, 0);
    CHECK_EQ(set(&c, "max-queue", "1000000", &err), SP_OK); CHECK_EQ(c.max_queue, 1000000);
    CHECK_EQ(set(&c, "max_queue", "1000001", &err), SP_ERANGE);
    /* sizes */
    CHECK_EQ(set(&c, "kv_cache_bytes", "12345", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 12345);
    CHECK_EQ(set(&c, "kv_cache_bytes", "64K", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 64 << 10);
    CHECK_EQ(set(&c, "kv_cache_bytes", "64k", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 64 << 10);
    CHECK_EQ(set(&c, "kv_cache_bytes", "3M", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 3 << 20);
    CHECK_EQ(set(&c, "kv_cache_bytes", "2G", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 2LL << 30);
    CHECK_EQ(set(&c, "kv_cache_bytes", "5KiB", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 5 << 10);
    CHECK_EQ(set(&c, "kv_cache_bytes", "7MiB", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 7 << 20);
    CHECK_EQ(set(&c, "kv_cache_bytes", "3GiB", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 3LL << 30);
    CHECK_EQ(set(&c, "kv_cache_bytes", "1 GiB", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 1LL << 30);
    CHECK_EQ(set(&c, "kv_cache_bytes", "16TiB", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 16LL << 40);
    CHECK_EQ(set(&c, "kv_cache_bytes", "100B", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 100);
    CHECK_EQ(set(&c, "kv_cache_bytes", "0", &err), SP_OK); CHECK_EQ(c.kv_cache_bytes, 0);
    CHECK_EQ(set(&c, "kv_cache_bytes", "17TiB", &err), SP_ERANGE);
    CHECK_STR(err.msg, "kv_cache_bytes '17TiB' is out of range 0..16TiB");
    CHECK_EQ(set(&c, "kv_cache_bytes", "8388608T", &err), SP_ERANGE);          /* 2^63: overflow */
    CHECK_EQ(set(&c, "kv_cache_bytes", "9223372036854775807K", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "kv_cache_bytes", "99999999999999999999999", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "kv_cache_bytes", "1.5G", &err), SP_EINVAL);
    CHECK(strstr(err.msg, "kv_cache_bytes '1.5G' is not a size") == err.msg);
    CHECK_EQ(set(&c, "kv_cache_bytes", "1MB", &err), SP_EINVAL);   /* ambiguous: not taken */
    CHECK_EQ(set(&c, "kv_cache_bytes", "1Mi", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "kv_cache_bytes", "1GiBx", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "kv_cache_bytes", "-1", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "kv_cache_bytes", "G", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "kv_cache_bytes", "", &err), SP_EINVAL);
    CHECK_EQ(c.kv_cache_bytes, 0);
    CHECK_EQ(set(&c, "max_body_bytes", "512", &err), SP_ERANGE);    /* below 1KiB */
    CHECK_EQ(set(&c, "max_body_bytes", "4M", &err), SP_OK); CHECK_EQ(c.max_body_bytes, 4 << 20);
    /* enums */
    CHECK_EQ(set(&c, "scheduler_policy", "vtc", &err), SP_OK);
    CHECK_EQ(c.scheduler_policy, SP_SCHEDULER_POLICY_VTC);
    CHECK_EQ(set(&c, "scheduler_policy", "fair", &err), SP_EINVAL);
    CHECK_STR(err.msg, "scheduler_policy 'fair' is not one of fcfs|lpm|vtc|dlpm");
    CHECK_EQ(set(&c, "log_level", "debug", &err), SP_OK); CHECK_EQ(c.log_level, SP_LOG_LEVEL_DEBUG);
    /* doubles */
    CHECK_EQ(set(&c, "vtc_output_weight", "0.5", &err), SP_OK); CHECK_NEAR(c.vtc_output_weight, 0.5, 0);
    CHECK_EQ(set(&c, "vtc_output_weight", "1e3", &err), SP_OK); CHECK_NEAR(c.vtc_output_weight, 1000, 0);
    CHECK_EQ(set(&c, "vtc_output_weight", "1001", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "vtc_output_weight", "-0.1", &err), SP_ERANGE);
    CHECK_EQ(set(&c, "vtc_output_weight", "nan", &err), SP_EINVAL);
    CHECK_EQ(set(&c, "vtc_output_weight", "2x", &err), SP_EINVAL);
    /* bools */
    CHECK_EQ(set(&c, "prefix_cache", "false", &err), SP_OK); CHECK(!c.prefix_cache);
    CHECK_EQ(set(&c, "prefix_cache", "ON", &err), SP_OK); CHECK(c.prefix_cache);
    CHECK_EQ(set(&c, "prefix_cache", "0", &err), SP_OK); CHECK(!c.prefix_cache);
    CHECK_EQ(set(&c, "prefix_cache", "maybe", &err), SP_EINVAL);
    /* strings: length-checked */
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK_EQ(set(&c, "model", big, &err), SP_ERANGE);
    CHECK_STR(err.msg, "model is 4999 bytes long, at most 4095 allowed");
    big[4095] = 0;
    CHECK_EQ(set(&c, "model", big, &err), SP_OK);
    CHECK_EQ(strlen(c.model), 4095);
    CHECK_EQ(set(&c, "nope", "1", &err), SP_EINVAL);
    CHECK_STR(err.msg, "unknown setting 'nope'");
}

static void test_file(void) {
    struct sp_config c;
    struct sp_err err = { 0 };
    sp_config_defaults(&c);
    const char *p = write_tmp("ok.conf",
        "# a comment\n"
        "\n"
        "   \t\n"
        "model = /models/tiny stories.gguf\n"
        "port=9000\n"
        "  host   =   \"0.0.0.0\"   # listen everywhere\n"
        "api_key = \"abc # not a comment\"\n"
        "model_alias = tiny#1 # a comment after whitespace\n"
        "ctx-size = 2048\r\n"
        "threads = 4   \n"
        "kv_cache_bytes = \"256 MiB\"\n"
        "scheduler_policy = lpm\n"
        "api_keys =\n"
        "prefix_cache = no\n"
        "\t# indented comment\n"
        "vtc_input_weight = 0.25\n"
        "port = 9001\n");                           /* later line wins */
    CHECK_EQ(sp_config_load_file(&c, p, &err), SP_OK);
    CHECK_STR(err.msg, "");
    CHECK_STR(c.model, "/models/tiny stories.gguf");
    CHECK_EQ(c.port, 9001);
    CHECK_STR(c.host, "0.0.0.0");
    CHECK_STR(c.api_key, "abc # not a comment");
    CHECK_STR(c.model_alias, "tiny#1");
    CHECK_EQ(c.ctx_size, 2048);
    CHECK_EQ(c.threads, 4);
    CHECK_EQ(c.kv_cache_bytes, 256 << 20);
    CHECK_EQ(c.scheduler_policy, SP_SCHEDULER_POLICY_LPM);
    CHECK_STR(c.api_keys, "");
    CHECK(!c.prefix_cache);
    CHECK_NEAR(c.vtc_input_weight, 0.25, 0);
    CHECK_EQ(c.max_running, 8);                     /* untouched */

    /* errors name the file and the line */
    struct { const char *text, *msg; int code; } bad[] = {
        { "# x\nport = 1\n\nprot = 8080\n", "sparrow.conf:4: unknown setting 'prot'", SP_EINVAL },
        { "port = 70000\n", "sparrow.conf:1: port '70000' is out of range 1..65535", SP_ERANGE },
        { "\n\nthreads = two\n", "sparrow.conf:3: threads 'two' is not an integer (allowed 1..256)", SP_EINVAL },
        { "port 8080\n", "sparrow.conf:1: expected 'key = value', got 'port 8080'", SP_EFORMAT },
        { "= 3\n", "sparrow.conf:1: missing setting name before '='", SP_EFORMAT },
        { "host = \"abc\n", "sparrow.conf:1: host: value has no closing '\"'", SP_EFORMAT },
        { "host = \"abc\" def\n", "sparrow.conf:1: host: text after the closing '\"'", SP_EFORMAT },
        { "log_level = loud\n", "sparrow.conf:1: log_level 'loud' is not one of error|warn|info|debug", SP_EINVAL },
        { "port = 80 80\n", "sparrow.conf:1: port '80 80' is not an integer (allowed 1..65535)", SP_EINVAL },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = write_tmp("sparrow.conf", bad[i].text);
        memset(&err, 0, sizeof(err));
        sp_config_defaults(&c);
        CHECK_EQ(sp_config_load_file(&c, p, &err), bad[i].code);
        if (!ends_with(err.msg, bad[i].msg)) fprintf(stderr, "  case %zu: got '%s'\n", i, err.msg);
        CHECK(ends_with(err.msg, bad[i].msg));
        CHECK(strncmp(err.msg, tmp_dir, strlen(tmp_dir)) == 0);   /* the path as given */
    }
    memset(&err, 0, sizeof(err));
    CHECK_EQ(sp_config_load_file(&c, "/nonexistent/sparrow.conf", &err), SP_EIO);
    CHECK(strstr(err.msg, "/nonexistent/sparrow.conf") != NULL);
}

static void test_env(void) {
    struct sp_config c;
    struct sp_err err = { 0 };
    sp_config_defaults(&c);
    setenv("SPARROW_PORT", "7000", 1);
    setenv("SPARROW_CTX_SIZE", "1024", 1);
    setenv("SPARROW_SCHEDULER_POLICY", "fcfs", 1);
    setenv("SPARROW_KV_CACHE_BYTES", "1G", 1);
    setenv("SPARROW_SHARED", "/somewhere/else", 1);    /* the test harness's, not a setting */
    setenv("SPARROW_NOT_A_SETTING", "x", 1);
    setenv("SPARROW_", "x", 1);
    setenv("SPARROW_port", "1", 1);                    /* names are uppercase */
    setenv("PORT", "1", 1);
    CHECK_EQ(sp_config_load_env(&c, NULL, &err), SP_OK);
    CHECK_STR(err.msg, "");
    CHECK_EQ(c.port, 7000);
    CHECK_EQ(c.ctx_size, 1024);
    CHECK_EQ(c.scheduler_policy, SP_SCHEDULER_POLICY_FCFS);
    CHECK_EQ(c.kv_cache_bytes, 1LL << 30);

    setenv("SPARROW_THREADS", "0", 1);
    CHECK_EQ(sp_config_load_env(&c, NULL, &err), SP_ERANGE);
    CHECK_STR(err.msg, "environment SPARROW_THREADS: threads '0' is out of range 1..256");
    for (const char *const *v = (const char *const[]){ "SPARROW_PORT", "SPARROW_CTX_SIZE",
             "SPARROW_SCHEDULER_POLICY", "SPARROW_KV_CACHE_BYTES", "SPARROW_NOT_A_SETTING", "SPARROW_",
             "SPARROW_port", "PORT", "SPARROW_THREADS", NULL }; *v; v++)
        unsetenv(*v);
    /* SPARROW_SHARED stays set: the later tests then run with it, ignored */

    /* an explicit environment block */
    char *envp[] = { "HOME=/root", "SPARROW_HOST=::1", "SPARROW_MAX_RUNNING=3", "SPARROW_MODEL_ALIAS=",
                     "SPARROW_PREFIX_CACHE=off", "SPARROW_SHARED=../shared", NULL };
    sp_config_defaults(&c);
    strcpy(c.model_alias, "x");
    CHECK_EQ(sp_config_load_env(&c, envp, &err), SP_OK);
    CHECK_STR(c.host, "::1");
    CHECK_EQ(c.max_running, 3);
    CHECK_STR(c.model_alias, "");
    CHECK(!c.prefix_cache);
}

static void test_args(void) {
    struct sp_config c;
    struct sp_err err;
    const char *cfg = NULL;
    sp_config_defaults(&c);
    CHECK_EQ(args(&c, &err, &cfg, "--ctx-size", "1000", "--max_running=5", "--max-batch-tokens=64",
                  "--scheduler_policy", "vtc", "--kv-cache-bytes", "2MiB", "--config", "/x.conf",
                  "--api-key=-starts-with-dash", "--prefix-cache=false", NULL), SP_OK);
    CHECK_STR(err.msg, "");
    CHECK_EQ(c.ctx_size, 1000);
    CHECK_EQ(c.max_running, 5);
    CHECK_EQ(c.max_batch_tokens, 64);
    CHECK_EQ(c.scheduler_policy, SP_SCHEDULER_POLICY_VTC);
    CHECK_EQ(c.kv_cache_bytes, 2 << 20);
    CHECK_STR(cfg, "/x.conf");
    CHECK_STR(c.api_key, "-starts-with-dash");
    CHECK(!c.prefix_cache);
    CHECK_EQ(args(&c, &err, NULL, "--prefix_cache", NULL), SP_OK);
    CHECK(c.prefix_cache);
    CHECK_EQ(args(&c, &err, NULL, "--ctx_size=3000", NULL), SP_OK);
    CHECK_EQ(c.ctx_size, 3000);
    CHECK_EQ(args(&c, &err, NULL, "--config=/y.conf", NULL), SP_OK);   /* ignored without an out */

    /* llama-server aliases */
    sp_config_defaults(&c);
    CHECK_EQ(args(&c, &err, NULL, "-m", "m.gguf", "-a", "tiny", "-t", "3", "-c", "512", "-np", "4", "-b", "128",
                  "--api-key", "k1", NULL), SP_OK);
    CHECK_STR(c.model, "m.gguf");
    CHECK_STR(c.model_alias, "tiny");
    CHECK_EQ(c.threads, 3);
    CHECK_EQ(c.ctx_size, 512);
    CHECK_EQ(c.max_running, 4);
    CHECK_EQ(c.max_batch_tokens, 128);
    CHECK_STR(c.api_key, "k1");
    CHECK_EQ(args(&c, &err, NULL, "--model=n.gguf", "--alias", "al", "--parallel", "6", "--threads-batch", "5",
                  "-ub", "32", NULL), SP_OK);
    CHECK_STR(c.model, "n.gguf");
    CHECK_STR(c.model_alias, "al");
    CHECK_EQ(c.max_running, 6);
    CHECK_EQ(c.threads, 5);
    CHECK_EQ(c.max_batch_tokens, 32);
    CHECK_EQ(args(&c, &err, NULL, "--batch_size=16", "--ubatch-size", "8", "-tb", "7", "--threads_batch=9",
                  "-cb", "--metrics", "--no_webui", NULL), SP_OK);
    CHECK_EQ(c.max_batch_tokens, 8);
    CHECK_EQ(c.threads, 9);

    /* errors */
    CHECK_EQ(args(&c, &err, NULL, "--port", "1", "--foo", "3", NULL), SP_EINVAL);
    CHECK_STR(err.msg, "unknown flag '--foo' (see sparrow serve --help)");
    CHECK_EQ(args(&c, &err, NULL, "--foo=3", NULL), SP_EINVAL);
    CHECK_STR(err.msg, "unknown flag '--foo' (see sparrow serve --help)");
    CHECK_EQ(args(&c, &err, NULL, "-port", "1", NULL), SP_EINVAL);
    CHECK_STR(err.msg, "unknown flag '-port' (see sparrow serve --help)");
    CHECK_EQ(args(&c, &err, NULL, "--no-cont-batching", NULL), SP_EINVAL);
    CHECK_EQ(args(&c, &err, NULL, "-h", NULL), SP_EINVAL);   /* the caller handles help */
    CHECK_EQ(args(&c, &err, NULL, "-fa", NULL), SP_EUNSUP);
    CHECK(strstr(err.msg, "'-fa'") != NULL);
    CHECK_EQ(args(&c, &err, NULL, "--flash-attn", "on", NULL), SP_EUNSUP);
    CHECK_EQ(args(&c, &err, NULL, "--port", NULL), SP_EINVAL);
    CHECK(strstr(err.msg, "flag '--port' needs a value") == err.msg);
    CHECK_EQ(args(&c, &err, NULL, "--model", "--port", "1", NULL), SP_EINVAL);
    CHECK(strstr(err.msg, "flag '--model' needs a value") == err.msg);
    CHECK_EQ(args(&c, &err, NULL, "--config", NULL), SP_EINVAL);
    CHECK_EQ(args(&c, &err, NULL, "--port", "-5", NULL), SP_ERANGE);   /* a value, out of range */
    CHECK_STR(err.msg, "flag '--port': port '-5' is out of range 1..65535");
    CHECK_EQ(args(&c, &err, NULL, "-c", "8", NULL), SP_ERANGE);
    CHECK_STR(err.msg, "flag '-c': ctx_size '8' is out of range 16..1048576");
    CHECK_EQ(args(&c, &err, NULL, "--prefix-cache", "false", NULL), SP_EINVAL);  /* bools take =value */
    CHECK_STR(err.msg, "unexpected argument 'false' (see sparrow serve --help)");
    CHECK_EQ(args(&c, &err, NULL, "--prefix-cache=maybe", NULL), SP_EINVAL);
    CHECK_EQ(args(&c, &err, NULL, "--cont-batching=1", NULL), SP_EINVAL);
    CHECK_EQ(args(&c, &err, NULL, "model.gguf", NULL), SP_EINVAL);
    CHECK_EQ(args(&c, &err, NULL, "--", NULL), SP_EINVAL);
    CHECK_EQ(args(&c, &err, NULL, "-", NULL), SP_EINVAL);

    char *h1[] = { "--port", "1", "--help" }, *h2[] = { "-m", "x" };
    CHECK(sp_config_args_want_help(3, h1));
    CHECK(!sp_config_args_want_help(2, h2));
}

/* llama.cpp's anchor command line (../shared/anchors) starts sparrow unchanged. */
static void test_anchor_command_line(void) {
    struct sp_config c, want;
    struct sp_err err = { 0 };
    char *argv[] = { "-m", "X", "--host", "127.0.0.1", "--port", "18080", "-c", "4096", "-np", "8",
                     "--cont-batching", "-t", "2", "-tb", "2", "--no-webui" };
    CHECK_EQ(sp_config_load_all(&c, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL, &err), SP_OK);
    CHECK_STR(err.msg, "");
    sp_config_defaults(&want);
    strcpy(want.model, "X");
    want.port = 18080;
    want.ctx_size = 4096;
    want.max_running = 8;
    want.threads = 2;
    char *a = dump(&c), *b = dump(&want);
    CHECK_STR(a, b);
    free(a);
    free(b);
    CHECK_EQ(sp_config_validate(&c, &err), SP_OK);
}

static void test_precedence(void) {
    struct sp_config c;
    struct sp_err err = { 0 };
    char path[128];
    snprintf(path, sizeof(path), "%s", write_tmp("prec.conf", "port = 1001\nthreads = 3\nhost = 10.0.0.1\n"
                                                                "ctx_size = 100\nmodel = file.gguf\n"));
    setenv("SPARROW_PORT", "1002", 1);
    setenv("SPARROW_CTX_SIZE", "200", 1);
    char *argv1[] = { "--port", "1003", "--config", path };
    CHECK_EQ(sp_config_load_all(&c, 4, argv1, NULL, &err), SP_OK);
    CHECK_STR(err.msg, "");
    CHECK_EQ(c.port, 1003);         /* args > env > file */
    CHECK_EQ(c.ctx_size, 200);      /* env > file */
    CHECK_EQ(c.threads, 3);         /* file > default */
    CHECK_STR(c.host, "10.0.0.1");
    CHECK_STR(c.model, "file.gguf");
    CHECK_EQ(c.max_running, 8);     /* default */

    /* the default path: read if it exists, skipped if not; --config wins */
    char *argv2[] = { "-m", "arg.gguf" };
    CHECK_EQ(sp_config_load_all(&c, 2, argv2, path, &err), SP_OK);
    CHECK_EQ(c.threads, 3);
    CHECK_EQ(c.port, 1002);
    CHECK_STR(c.model, "arg.gguf");
    CHECK_EQ(sp_config_load_all(&c, 2, argv2, "/nonexistent/sparrow.conf", &err), SP_OK);
    CHECK_EQ(c.threads, 2);
    char *argv3[] = { "--config=/nonexistent/explicit.conf" };
    CHECK_EQ(sp_config_load_all(&c, 1, argv3, path, &err), SP_EIO);
    CHECK(strstr(err.msg, "/nonexistent/explicit.conf") != NULL);

    /* a bad flag is reported before any file is read */
    snprintf(path, sizeof(path), "%s", write_tmp("bad.conf", "prot = 1\n"));
    char *argv4[] = { "--config", path, "--bogus" };
    CHECK_EQ(sp_config_load_all(&c, 3, argv4, NULL, &err), SP_EINVAL);
    CHECK_STR(err.msg, "unknown flag '--bogus' (see sparrow serve --help)");
    CHECK_EQ(sp_config_load_all(&c, 2, argv4, NULL, &err), SP_EINVAL);
    CHECK(ends_with(err.msg, "bad.conf:1: unknown setting 'prot'"));
    setenv("SPARROW_LOG_LEVEL", "chatty", 1);
    CHECK_EQ(sp_config_load_all(&c, 0, argv4, NULL, &err), SP_EINVAL);
    CHECK(strstr(err.msg, "SPARROW_LOG_LEVEL") != NULL);
    unsetenv("SPARROW_LOG_LEVEL");
    unsetenv("SPARROW_PORT");
    unsetenv("SPARROW_CTX_SIZE");
}

static void test_validate_and_names(void) {
    struct sp_config c;
    struct sp_err err = { 0 };
    char buf[64];
    sp_config_defaults(&c);
    strcpy(c.model, "/m/stories15M-q8_0.gguf");
    CHECK_EQ(sp_config_validate(&c, &err), SP_OK);
    CHECK_STR(sp_config_model_name(&c, buf, sizeof(buf)), "stories15M-q8_0");
    strcpy(c.model, "plain");
    CHECK_STR(sp_config_model_name(&c, buf, sizeof(buf)), "plain");
    strcpy(c.model_alias, "my-model");
    CHECK_STR(sp_config_model_name(&c, buf, sizeof(buf)), "my-model");
    c.block_size = 64;
    c.ctx_size = 32;
    CHECK_EQ(sp_config_validate(&c, &err), SP_EINVAL);
    CHECK(strstr(err.msg, "block_size") != NULL);
    c.ctx_size = 64;
    c.host[0] = 0;
    CHECK_EQ(sp_config_validate(&c, &err), SP_EINVAL);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = 0;
    fclose(f);
    return s;
}

/* config/sparrow.conf is exactly the generated example, so docs cannot drift. */
static void test_example_file(void) {
    char *gen = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&gen, &n);
    sp_config_write_example(f);
    fclose(f);
    char *file = read_all("config/sparrow.conf");
    CHECK(file != NULL);
    if (file && strcmp(file, gen)) {
        FILE *o = fopen("/tmp/sparrow.conf.expected", "w");
        if (o) { fputs(gen, o); fclose(o); }
        fprintf(stderr, "  config/sparrow.conf is stale: regenerated text in /tmp/sparrow.conf.expected\n");
        CHECK(!"config/sparrow.conf matches sp_config_write_example()");
    }
    /* every key is there, commented out, and loading the file changes nothing */
    struct sp_config c, d;
    struct sp_err err = { 0 };
    sp_config_defaults(&c);
    sp_config_defaults(&d);
    CHECK_EQ(sp_config_load_file(&c, "config/sparrow.conf", &err), SP_OK);
    char *a = dump(&c), *b = dump(&d);
    CHECK_STR(a, b);
    free(a);
    /* uncommented, each default reads back as itself */
    char *un = malloc(strlen(gen) * 2 + 1), *w = un;
    int n_keys = 0;
    for (const char *line = gen; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (line[0] == '#' && line[1] != ' ' && line[1] != '\n' && memchr(line, '=', len)) { line++; len--; n_keys++; }
        memcpy(w, line, len);
        w += len;
        line += len;
    }
    *w = 0;
#define COUNT_(...) +1
    CHECK_EQ(n_keys, 0 SP_SETTINGS(COUNT_));
    const char *p = write_tmp("uncommented.conf", un);
    sp_config_defaults(&c);
    c.port = 1;
    strcpy(c.host, "x");
    c.scheduler_policy = SP_SCHEDULER_POLICY_FCFS;
    c.max_body_bytes = 5;
    c.vtc_output_weight = 9;
    c.prefix_cache = false;
    CHECK_EQ(sp_config_load_file(&c, p, &err), SP_OK);
    CHECK_STR(err.msg, "");
    a = dump(&c);
    CHECK_STR(a, b);
    free(a);
    free(b);
    free(un);
    free(file);
    free(gen);
}

static void test_help(void) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    sp_config_print_help(f);
    fclose(f);
    const char *must[] = { "--model", "SPARROW_MODEL", "-m, --model PATH", "-c, --ctx-size N", "SPARROW_CTX_SIZE",
                           "-np, --max-running, --parallel N", "--scheduler-policy fcfs|lpm|vtc|dlpm",
                           "default dlpm", "default 1MiB", "default \"127.0.0.1\"", "--dlpm-quantum",
                           "SPARROW_VTC_OUTPUT_WEIGHT", "--cont-batching", "-fa", "--config FILE" };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
        if (!strstr(text, must[i])) fprintf(stderr, "  help lacks '%s'\n", must[i]);
        CHECK(strstr(text, must[i]) != NULL);
    }
    free(text);
    struct sp_config c;
    sp_config_defaults(&c);
    strcpy(c.api_key, "secret");
    char *d = dump(&c);
    CHECK(strstr(d, "secret") == NULL);
    CHECK(strstr(d, "api_key = \"(set)\"") != NULL);
    free(d);
}

int main(void) {
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_settings.XXXXXX");
    if (!mkdtemp(tmp_dir)) { perror("mkdtemp"); return 2; }
    RUN(test_defaults);
    RUN(test_values);
    RUN(test_file);
    RUN(test_env);
    RUN(test_args);
    RUN(test_anchor_command_line);
    RUN(test_precedence);
    RUN(test_validate_and_names);
    RUN(test_example_file);
    RUN(test_help);
    const char *names[] = { "ok.conf", "sparrow.conf", "prec.conf", "bad.conf", "uncommented.conf" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", tmp_dir, names[i]);
        unlink(p);
    }
    rmdir(tmp_dir);
    return check_report();
}
