/* settings.h - every setting of sparrow serve, in ONE table (SP_SETTINGS
 * below): its name, type, default, allowed range and one-line doc. The table
 * generates the public `struct sp_config` (one typed field per setting, named
 * exactly as the setting), the defaults, the parsers of the four sources, the
 * --help text and the example config/sparrow.conf. Add a setting by adding one
 * row, then refresh config/sparrow.conf (test_settings writes the expected text
 * to /tmp/sparrow.conf.expected when the file is stale).
 *
 * Sources, later wins: defaults < config file < environment SPARROW_<NAME>
 * (the name uppercased: SPARROW_CTX_SIZE) < command line --name. Setting
 * names are `snake_case`; on the command line and in the file '-' and '_' are
 * the same (--ctx-size == --ctx_size). llama-server's common flags are
 * aliases (-m, -c, -np, -t, ...), see sp_config_print_help().
 *
 * The usual start-up, in main:
 *     struct sp_config cfg;
 *     if (sp_config_load_all(&cfg, argc - 2, argv + 2, SP_CONFIG_DEFAULT_PATH, &err) != SP_OK ||
 *         sp_config_validate(&cfg, &err) != SP_OK) { fprintf(stderr, "sparrow: %s\n", err.msg); ... }
 *
 * The struct is a plain value: strings are fixed arrays inside it, so it may
 * be copied and needs no free. Low level: libc only; includes nothing above
 * config/. Thread-safety: none; fill it at start-up, then treat it as
 * read-only (any thread may read a const copy). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config/err.h"

#define SP_CONFIG_DEFAULT_PATH "/etc/sparrow/sparrow.conf"

#define SP_KIB(n) ((int64_t)(n) << 10)
#define SP_MIB(n) ((int64_t)(n) << 20)
#define SP_GIB(n) ((int64_t)(n) << 30)
#define SP_TIB(n) ((int64_t)(n) << 40)

/* Choices of the enum settings: C(constant, "name"), in the enum's order.
 * The list for setting `x` is SP_ENUM_x; its C type is `enum sp_x`. */
#define SP_ENUM_scheduler_policy(C)              \
    C(SP_SCHEDULER_POLICY_FCFS, "fcfs")          \
    C(SP_SCHEDULER_POLICY_LPM, "lpm")            \
    C(SP_SCHEDULER_POLICY_VTC, "vtc")            \
    C(SP_SCHEDULER_POLICY_DLPM, "dlpm")
#define SP_ENUM_log_level(C)                     \
    C(SP_LOG_LEVEL_ERROR, "error")               \
    C(SP_LOG_LEVEL_WARN, "warn")                 \
    C(SP_LOG_LEVEL_INFO, "info")                 \
    C(SP_LOG_LEVEL_DEBUG, "debug")

#define SP_ENUM_CONSTANT_(id, str) id,
enum sp_scheduler_policy { SP_ENUM_scheduler_policy(SP_ENUM_CONSTANT_) };
enum sp_log_level { SP_ENUM_log_level(SP_ENUM_CONSTANT_) };

/* X(name, TYPE, default, lo, hi, doc)
 *   INT   int64_t, lo..hi inclusive
 *   SIZE  int64_t bytes, lo..hi; written as bytes or with K, M, G, T (binary:
 *         1K = 1024) or KiB, MiB, GiB, TiB
 *   DBL   double, lo..hi
 *   BOOL  bool (true|false, yes|no, on|off, 1|0)
 *   STR   char[hi + 1]: at most hi bytes
 *   ENUM  enum sp_<name>, one of the names in SP_ENUM_<name>; lo, hi unused */
#define SP_SETTINGS(X) \
    X(model, STR, "", 0, 4095, \
      "Path to the GGUF model file; required for serve.") \
    X(model_alias, STR, "", 0, 255, \
      "Model name reported by /v1/models and accepted in requests; empty means the model file's base name without .gguf.") \
    X(host, STR, "127.0.0.1", 0, 255, \
      "Address to listen on.") \
    X(port, INT, 8080, 1, 65535, \
      "TCP port to listen on.") \
    X(threads, INT, 2, 1, 256, \
      "Worker threads for the math; OpenBLAS is set to the same count.") \
    X(ctx_size, INT, 4096, 16, 1048576, \
      "KV pool capacity in tokens when kv_cache_bytes is 0 (llama-server's -c); one sequence is further limited to the model's context length.") \
    X(kv_cache_bytes, SIZE, 0, 0, SP_TIB(16), \
      "KV pool budget in bytes; 0 means ctx_size tokens' worth.") \
    X(block_size, INT, 16, 1, 1024, \
      "Tokens per KV cache block.") \
    X(prefix_cache, BOOL, true, 0, 0, \
      "Share the KV blocks of a cached prompt prefix between requests.") \
    X(max_batch_tokens, INT, 512, 1, 65536, \
      "Tokens per forward pass (prefill chunks and decodes together).") \
    X(max_running, INT, 8, 1, 4096, \
      "Sequences generating at once (llama-server's -np).") \
    X(scheduler_policy, ENUM, SP_SCHEDULER_POLICY_DLPM, 0, 0, \
      "Which waiting request runs next: fcfs first come first served, lpm longest cached prefix first, vtc fair by virtual token counter, dlpm fair with prefix locality.") \
    X(api_keys, STR, "", 0, 4095, \
      "File mapping API keys to client names and weights; empty (and no api_key) means no authentication.") \
    X(api_key, STR, "", 0, 511, \
      "A single API key (llama-server's --api-key), for the client named \"default\".") \
    X(trusted_proxies, STR, "", 0, 1023, \
      "Comma-separated peer addresses (e.g. 127.0.0.1 for a local HAProxy) whose X-Forwarded-For header names the client when a request has no API key or user; empty: the peer address always names it.") \
    X(max_body_bytes, SIZE, SP_MIB(1), SP_KIB(1), SP_GIB(1), \
      "Largest request body accepted; a larger one gets 413.") \
    X(max_queue_per_client, INT, 64, 1, 1000000, \
      "Requests one client may have waiting; one more gets 429.") \
    X(max_queue, INT, 1024, 1, 1000000, \
      "Requests waiting in all; one more gets 503.") \
    X(max_tokens_limit, INT, 4096, 1, 1000000, \
      "Cap on a request's max_tokens, and the default when a request gives none.") \
    X(max_connections, INT, 256, 1, 100000, \
      "Client connections open at once.") \
    X(request_timeout_s, INT, 600, 1, 86400, \
      "Seconds a connection may sit idle (a slow client) before it is closed.") \
    X(drain_timeout_s, INT, 30, 0, 3600, \
      "Seconds SIGTERM waits for in-flight requests before cancelling them.") \
    X(log_level, ENUM, SP_LOG_LEVEL_INFO, 0, 0, \
      "Least severe log messages written.") \
    X(vtc_input_weight, DBL, 1.0, 0, 1000, \
      "Fair queuing (vtc, dlpm): service charged per prompt token.") \
    X(vtc_output_weight, DBL, 2.0, 0, 1000, \
      "Fair queuing (vtc, dlpm): service charged per generated token.") \
    X(dlpm_quantum, INT, 256, 1, 1000000000, \
      "Fair queuing (dlpm): service credit each client's deficit counter gains per round.")

#define SP_CONFIG_FIELD_INT_(name, hi) int64_t name;
#define SP_CONFIG_FIELD_SIZE_(name, hi) int64_t name;
#define SP_CONFIG_FIELD_DBL_(name, hi) double name;
#define SP_CONFIG_FIELD_BOOL_(name, hi) bool name;
#define SP_CONFIG_FIELD_STR_(name, hi) char name[(hi) + 1];
#define SP_CONFIG_FIELD_ENUM_(name, hi) enum sp_##name name;
#define SP_CONFIG_FIELD_(name, type, def, lo, hi, doc) SP_CONFIG_FIELD_##type##_(name, hi)

/* One field per setting, same name: cfg.port, cfg.ctx_size, cfg.model[]. */
struct sp_config {
    SP_SETTINGS(SP_CONFIG_FIELD_)
};

/* --- filling a config; each returns SP_OK or a negative code with err set --- */

void sp_config_defaults(struct sp_config *c);

/* Defaults, then the config file, the environment and the flags, in that
 * order. argv[0..argc) are the flags only (no program name, no verb). The
 * file is --config FILE if given (it must exist), else default_path if that
 * exists (NULL: none). Does not call sp_config_validate. */
int sp_config_load_all(struct sp_config *c, int argc, char **argv, const char *default_path,
                       struct sp_err *err);

/* `key = value` lines; '#' starts a comment (in an unquoted value only after
 * whitespace); blank lines; a value may be in double quotes (no escapes).
 * Errors name the file and line: "sparrow.conf:12: unknown setting 'prot'".
 * A file that cannot be opened is SP_EIO. */
int sp_config_load_file(struct sp_config *c, const char *path, struct sp_err *err);

/* SPARROW_<NAME> variables that name a setting; every other variable
 * (SPARROW_SHARED, ...) is ignored. envp NULL means environ. */
int sp_config_load_env(struct sp_config *c, char **envp, struct sp_err *err);

/* argv[0..argc) are flags: --name value, --name=value, a bool as --name or
 * --name=true|false, llama-server's aliases, and the no-ops --cont-batching,
 * -cb, --no-webui, --metrics. An unknown flag is an error naming it:
 * "unknown flag '--foo' (see sparrow serve --help)". --config FILE is not
 * applied: *config_path_out (if not NULL) gets FILE, borrowed from argv, or
 * stays untouched when there is none. */
int sp_config_parse_args(struct sp_config *c, int argc, char **argv, const char **config_path_out,
                         struct sp_err *err);

/* One setting by name ('-' or '_'), value as text in any accepted form. */
int sp_config_set(struct sp_config *c, const char *name, const char *value, struct sp_err *err);

/* Cross-field checks for serve (model given, block_size <= ctx_size, ...). */
int sp_config_validate(const struct sp_config *c, struct sp_err *err);

/* --- reading one --------------------------------------------------------- */

/* True if the flags hold -h or --help (main checks before loading). */
bool sp_config_args_want_help(int argc, char **argv);

/* model_alias, or else the model file's base name without .gguf; in buf. */
const char *sp_config_model_name(const struct sp_config *c, char *buf, size_t n);

const char *sp_scheduler_policy_name(enum sp_scheduler_policy p);
const char *sp_log_level_name(enum sp_log_level l);

/* --- text generated from the table --------------------------------------- */

/* Every setting: flags, env name, type and range, default, doc. */
void sp_config_print_help(FILE *out);
/* The example config: every key commented out with its default and doc.
 * config/sparrow.conf is exactly this output (a unit test compares). */
void sp_config_write_example(FILE *out);
/* The effective values as `key = value` lines (api_key shown as "(set)"). */
void sp_config_print(const struct sp_config *c, FILE *out);
