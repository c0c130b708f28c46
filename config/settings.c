/* settings.c - see settings.h. Everything below is driven by SP_SETTINGS:
 * the row table `settings[]` says where each field lives and what it accepts;
 * one parser (set_value) serves the file, the environment and the flags. */
#include "config/settings.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

enum stype { T_INT, T_SIZE, T_DBL, T_BOOL, T_STR, T_ENUM };

struct setting {
    const char *name;
    enum stype type;
    size_t off, cap;                /* field offset and size in sp_config */
    int64_t lo, hi;                 /* INT, SIZE */
    double dlo, dhi;                /* DBL */
    const char *const *choices;     /* ENUM */
    int n_choices;
    const char *doc;
};

/* Name arrays of the enum settings, and a check that an enum is an int. */
#define ENUM_NAME_(id, str) str,
#define CHOICES_DEF_INT_(name)
#define CHOICES_DEF_SIZE_(name)
#define CHOICES_DEF_DBL_(name)
#define CHOICES_DEF_BOOL_(name)
#define CHOICES_DEF_STR_(name)
#define CHOICES_DEF_ENUM_(name)                                                   \
    static const char *const choices_##name[] = { SP_ENUM_##name(ENUM_NAME_) };   \
    _Static_assert(sizeof(enum sp_##name) == sizeof(int), #name ": enum is not an int");
#define CHOICES_DEF_(name, type, def, lo, hi, doc) CHOICES_DEF_##type##_(name)
SP_SETTINGS(CHOICES_DEF_)

#define CHOICES_INT_(name) NULL, 0
#define CHOICES_SIZE_(name) NULL, 0
#define CHOICES_DBL_(name) NULL, 0
#define CHOICES_BOOL_(name) NULL, 0
#define CHOICES_STR_(name) NULL, 0
#define CHOICES_ENUM_(name) choices_##name, (int)(sizeof(choices_##name) / sizeof(choices_##name[0]))

#define ROW_(name, type, def, lo, hi, doc)                                               \
    { #name, T_##type, offsetof(struct sp_config, name),                                 \
      sizeof(((struct sp_config *)0)->name), (int64_t)(lo), (int64_t)(hi), (double)(lo), \
      (double)(hi), CHOICES_##type##_(name), doc },
static const struct setting settings[] = { SP_SETTINGS(ROW_) };
#define N_SETTINGS ((int)(sizeof(settings) / sizeof(settings[0])))

/* Flags that are not `--<setting name>`: llama-server's spellings and no-ops. */
enum alias_kind { AL_SETTING, AL_CONFIG, AL_NOOP, AL_UNSUP };
struct alias {
    const char *flag;     /* "-c" exact; "--ctx-size" with '-' == '_' */
    enum alias_kind kind;
    const char *target;   /* AL_SETTING: the setting; else why */
};
static const struct alias aliases[] = {
    { "-m", AL_SETTING, "model" },
    { "-a", AL_SETTING, "model_alias" },
    { "--alias", AL_SETTING, "model_alias" },
    { "-t", AL_SETTING, "threads" },
    { "-tb", AL_SETTING, "threads" },
    { "--threads-batch", AL_SETTING, "threads" },
    { "-c", AL_SETTING, "ctx_size" },
    { "-np", AL_SETTING, "max_running" },
    { "--parallel", AL_SETTING, "max_running" },
    { "-b", AL_SETTING, "max_batch_tokens" },
    { "--batch-size", AL_SETTING, "max_batch_tokens" },
    { "-ub", AL_SETTING, "max_batch_tokens" },
    { "--ubatch-size", AL_SETTING, "max_batch_tokens" },
    { "--config", AL_CONFIG, "Read this config file instead of " SP_CONFIG_DEFAULT_PATH },
    { "--cont-batching", AL_NOOP, "batching is always continuous" },
    { "-cb", AL_NOOP, "batching is always continuous" },
    { "--no-webui", AL_NOOP, "sparrow has no web UI" },
    { "--metrics", AL_NOOP, "/metrics is always served" },
    { "-fa", AL_UNSUP, "sparrow has no flash-attention switch" },
    { "--flash-attn", AL_UNSUP, "sparrow has no flash-attention switch" },
};
#define N_ALIASES ((int)(sizeof(aliases) / sizeof(aliases[0])))

/* --- names --------------------------------------------------------------- */

/* s[0..len) equals name, with '-' and '_' the same. */
static bool name_eq(const char *name, const char *s, size_t len) {
    size_t i = 0;
    for (; i < len && name[i]; i++) {
        char a = name[i] == '-' ? '_' : name[i], b = s[i] == '-' ? '_' : s[i];
        if (a != b) return false;
    }
    return i == len && !name[i];
}

static const struct setting *find_setting(const char *s, size_t len) {
    for (int i = 0; i < N_SETTINGS; i++)
        if (name_eq(settings[i].name, s, len)) return &settings[i];
    return NULL;
}

static void env_name(const struct setting *s, char *buf, size_t n) {
    int k = snprintf(buf, n, "SPARROW_%s", s->name);
    for (int i = 8; i < k && (size_t)i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
}

static void flag_name(const struct setting *s, char *buf, size_t n) {
    int k = snprintf(buf, n, "--%s", s->name);
    for (int i = 2; i < k && (size_t)i < n; i++) if (buf[i] == '_') buf[i] = '-';
}

/* --- values -------------------------------------------------------------- */

static void fmt_size(int64_t v, char *buf, size_t n) {
    static const char *const units[] = { "TiB", "GiB", "MiB", "KiB" };
    for (int i = 0; i < 4 && v != 0; i++) {
        int64_t u = (int64_t)1 << (10 * (4 - i));
        if (v % u == 0) { snprintf(buf, n, "%lld%s", (long long)(v / u), units[i]); return; }
    }
    snprintf(buf, n, "%lld", (long long)v);
}

static void fmt_double(double v, char *buf, size_t n) {
    snprintf(buf, n, "%.15g", v);
    if (!strpbrk(buf, ".eEni")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static void fmt_range(const struct setting *s, char *buf, size_t n) {
    char a[32], b[32];
    switch (s->type) {
    case T_INT: snprintf(buf, n, "%lld..%lld", (long long)s->lo, (long long)s->hi); break;
    case T_SIZE: fmt_size(s->lo, a, sizeof(a)); fmt_size(s->hi, b, sizeof(b)); snprintf(buf, n, "%s..%s", a, b); break;
    case T_DBL: fmt_double(s->dlo, a, sizeof(a)); fmt_double(s->dhi, b, sizeof(b)); snprintf(buf, n, "%s..%s", a, b); break;
    case T_BOOL: snprintf(buf, n, "true|false"); break;
    case T_STR: snprintf(buf, n, "of at most %lld bytes", (long long)s->cap - 1); break;
    case T_ENUM: {
        size_t k = 0;
        buf[0] = 0;
        for (int i = 0; i < s->n_choices && k < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? "|" : "", s->choices[i]);
        break;
    }
    }
}

static const char *type_word(const struct setting *s) {
    static const char *const words[] = { "integer", "size", "number", "bool", "string", "enum" };
    return words[s->type];
}

/* The value of s in c as the file would spell it (strings unquoted). */
static void fmt_value(const struct setting *s, const struct sp_config *c, char *buf, size_t n) {
    const char *p = (const char *)c + s->off;
    switch (s->type) {
    case T_INT: snprintf(buf, n, "%lld", (long long)*(const int64_t *)(const void *)p); break;
    case T_SIZE: fmt_size(*(const int64_t *)(const void *)p, buf, n); break;
    case T_DBL: fmt_double(*(const double *)(const void *)p, buf, n); break;
    case T_BOOL: snprintf(buf, n, "%s", *(const bool *)(const void *)p ? "true" : "false"); break;
    case T_STR: snprintf(buf, n, "%s", p); break;
    case T_ENUM: {
        int v = *(const int *)(const void *)p;
        snprintf(buf, n, "%s", v >= 0 && v < s->n_choices ? s->choices[v] : "?");
        break;
    }
    }
}

/* Strict decimal integer: optional sign, digits, nothing else. */
static bool parse_int(const char *v, int64_t *out) {
    if (!(isdigit((unsigned char)v[0]) || ((v[0] == '-' || v[0] == '+') && isdigit((unsigned char)v[1]))))
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end) return false;
    if (errno == ERANGE) x = x < 0 ? INT64_MIN : INT64_MAX;   /* reported as out of range */
    *out = x;
    return true;
}

/* Bytes: digits, then optional whitespace and one of B, K, M, G, T, KiB, MiB,
 * GiB, TiB (letters in any case; all binary). 1 = ok, 0 = malformed, -1 = overflow. */
static int parse_size(const char *v, int64_t *out) {
    if (!isdigit((unsigned char)*v)) return 0;
    uint64_t x = 0;
    bool big = false;
    for (; isdigit((unsigned char)*v); v++) {
        if (x > ((uint64_t)INT64_MAX - 9) / 10) big = true;
        else x = x * 10 + (uint64_t)(*v - '0');
    }
    while (*v == ' ' || *v == '\t') v++;
    int shift = 0;
    if (*v) {
        static const char units[] = "KMGT";
        const char *u = strchr(units, toupper((unsigned char)*v));
        if (*v == 'b' || *v == 'B') { if (v[1]) return 0; }
        else if (!u) return 0;
        else {
            shift = 10 * (int)(u - units + 1);
            if (v[1] && !((v[1] == 'i' || v[1] == 'I') && (v[2] == 'b' || v[2] == 'B') && !v[3])) return 0;
        }
    }
    if (big || x > ((uint64_t)INT64_MAX >> shift)) return -1;
    *out = (int64_t)(x << shift);
    return 1;
}

static bool parse_bool(const char *v, bool *out) {
    static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) { *out = true; return true; }
        if (!strcasecmp(v, no[i])) { *out = false; return true; }
    }
    return false;
}

/* Parse v for s and store it in c only if it is valid. Errors name the
 * setting, the value and what is allowed: "port '0' is out of range 1..65535". */
static int set_value(struct sp_config *c, const struct setting *s, const char *v, struct sp_err *err) {
    char *p = (char *)c + s->off, allowed[128];
    fmt_range(s, allowed, sizeof(allowed));
    switch (s->type) {
    case T_INT: {
        int64_t x;
        if (!parse_int(v, &x))
            return sp_fail(err, SP_EINVAL, "%s '%.64s' is not an integer (allowed %s)", s->name, v, allowed);
        if (x < s->lo || x > s->hi)
            return sp_fail(err, SP_ERANGE, "%s '%.64s' is out of range %s", s->name, v, allowed);
        *(int64_t *)(void *)p = x;
        return SP_OK;
    }
    case T_SIZE: {
        int64_t x = 0;
        int r = parse_size(v, &x);
        if (r == 0)
            return sp_fail(err, SP_EINVAL,
                           "%s '%.64s' is not a size (bytes, or a whole number with K, M, G, T, KiB, MiB, GiB, TiB; "
                           "allowed %s)", s->name, v, allowed);
        if (r < 0 || x < s->lo || x > s->hi)
            return sp_fail(err, SP_ERANGE, "%s '%.64s' is out of range %s", s->name, v, allowed);
        *(int64_t *)(void *)p = x;
        return SP_OK;
    }
    case T_DBL: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || isspace((unsigned char)*v) || *end || !isfinite(x))
            return sp_fail(err, SP_EINVAL, "%s '%.64s' is not a number (allowed %s)", s->name, v, allowed);
        if (x < s->dlo || x > s->dhi)
            return sp_fail(err, SP_ERANGE, "%s '%.64s' is out of range %s", s->name, v, allowed);
        *(double *)(void *)p = x;
        return SP_OK;
    }
    case T_BOOL: {
        bool x;
        if (!parse_bool(v, &x))
            return sp_fail(err, SP_EINVAL, "%s '%.64s' is not a bool (true|false, yes|no, on|off, 1|0)", s->name, v);
        *(bool *)(void *)p = x;
        return SP_OK;
    }
    case T_STR: {
        size_t len = strlen(v);
        if (len >= s->cap)
            return sp_fail(err, SP_ERANGE, "%s is %zu bytes long, at most %zu allowed", s->name, len, s->cap - 1);
        memcpy(p, v, len + 1);
        return SP_OK;
    }
    case T_ENUM:
        for (int i = 0; i < s->n_choices; i++)
            if (!strcmp(v, s->choices[i])) { *(int *)(void *)p = i; return SP_OK; }
        return sp_fail(err, SP_EINVAL, "%s '%.64s' is not one of %s", s->name, v, allowed);
    }
    return sp_fail(err, SP_EINVAL, "%s: bad setting type", s->name);
}

/* --- sources ------------------------------------------------------------- */

#define DEFAULT_INT_(n, d) c->n = (d);
#define DEFAULT_SIZE_(n, d) c->n = (d);
#define DEFAULT_DBL_(n, d) c->n = (d);
#define DEFAULT_BOOL_(n, d) c->n = (d);
#define DEFAULT_ENUM_(n, d) c->n = (d);
#define DEFAULT_STR_(n, d)                                                          \
    _Static_assert(sizeof(d) <= sizeof(((struct sp_config *)0)->n), #n " default too long"); \
    memcpy(c->n, d, sizeof(d));
#define DEFAULT_(name, type, def, lo, hi, doc) DEFAULT_##type##_(name, def)

void sp_config_defaults(struct sp_config *c) {
    memset(c, 0, sizeof(*c));
    SP_SETTINGS(DEFAULT_)
}

int sp_config_set(struct sp_config *c, const char *name, const char *value, struct sp_err *err) {
    const struct setting *s = find_setting(name, strlen(name));
    if (!s) return sp_fail(err, SP_EINVAL, "unknown setting '%.64s'", name);
    return set_value(c, s, value, err);
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* One line of a config file, NUL-terminated, modified in place. */
static int parse_line(struct sp_config *c, char *line, struct sp_err *err) {
    while (is_blank(*line)) line++;
    if (!*line || *line == '#') return SP_OK;
    char *eq = strchr(line, '=');
    if (!eq) {
        size_t len = strcspn(line, "\r\n");
        return sp_fail(err, SP_EFORMAT, "expected 'key = value', got '%.*s'", (int)(len > 64 ? 64 : len), line);
    }
    char *key_end = eq;
    while (key_end > line && is_blank(key_end[-1])) key_end--;
    size_t klen = (size_t)(key_end - line);
    if (!klen) return sp_fail(err, SP_EFORMAT, "missing setting name before '='");
    const struct setting *s = find_setting(line, klen);
    if (!s) return sp_fail(err, SP_EINVAL, "unknown setting '%.*s'", (int)(klen > 64 ? 64 : klen), line);

    char *v = eq + 1, *end;
    while (is_blank(*v)) v++;
    if (*v == '"') {
        v++;
        char *q = strchr(v, '"');
        if (!q) return sp_fail(err, SP_EFORMAT, "%s: value has no closing '\"'", s->name);
        char *rest = q + 1;
        while (is_blank(*rest)) rest++;
        if (*rest && *rest != '#') return sp_fail(err, SP_EFORMAT, "%s: text after the closing '\"'", s->name);
        end = q;
    } else {
        end = v;
        while (*end && !(*end == '#' && (end == v || is_blank(end[-1])))) end++;
        while (end > v && is_blank(end[-1])) end--;
    }
    *end = 0;
    return set_value(c, s, v, err);
}

static int load_file(struct sp_config *c, const char *path, bool missing_ok, struct sp_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        if (missing_ok && errno == ENOENT) return SP_OK;
        return sp_fail(err, SP_EIO, "cannot open config file '%s': %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = SP_OK, lineno = 0;
    struct sp_err e = { 0 };
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (strlen(line) > 65536) {
            rc = sp_fail(err, SP_EFORMAT, "%s:%d: line longer than 65536 bytes", path, lineno);
            goto out;
        }
        if ((rc = parse_line(c, line, &e)) != SP_OK) {
            sp_fail(err, rc, "%s:%d: %s", path, lineno, e.msg);
            goto out;
        }
    }
    if (ferror(f)) rc = sp_fail(err, SP_EIO, "%s: read error after line %d", path, lineno);
out:
    free(line);
    fclose(f);
    return rc;
}

int sp_config_load_file(struct sp_config *c, const char *path, struct sp_err *err) {
    return load_file(c, path, false, err);
}

int sp_config_load_env(struct sp_config *c, char **envp, struct sp_err *err) {
    if (!envp) envp = environ;
    if (!envp) return SP_OK;
    for (char **e = envp; *e; e++) {
        if (strncmp(*e, "SPARROW_", 8)) continue;
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        /* Only exact names from the table: SPARROW_SHARED and friends are not ours. */
        for (int i = 0; i < N_SETTINGS; i++) {
            char want[80];
            env_name(&settings[i], want, sizeof(want));
            if (strlen(want) != (size_t)(eq - *e) || strncmp(want, *e, (size_t)(eq - *e))) continue;
            struct sp_err sub = { 0 };
            int rc = set_value(c, &settings[i], eq + 1, &sub);
            if (rc != SP_OK) return sp_fail(err, rc, "environment %s: %s", want, sub.msg);
            break;
        }
    }
    return SP_OK;
}

static const struct alias *find_alias(const char *arg, size_t len) {
    for (int i = 0; i < N_ALIASES; i++) {
        const char *f = aliases[i].flag;
        if (f[1] == '-' ? (len > 2 && arg[1] == '-' && name_eq(f + 2, arg + 2, len - 2))
                        : (strlen(f) == len && !strncmp(f, arg, len)))
            return &aliases[i];
    }
    return NULL;
}

/* A next argument that looks like a flag is not taken as a value; negative
 * numbers are (so they get a range error, not "needs a value"). */
static bool looks_like_flag(const char *a) {
    return a[0] == '-' && (a[1] == '-' || isalpha((unsigned char)a[1]));
}

int sp_config_parse_args(struct sp_config *c, int argc, char **argv, const char **config_path_out,
                         struct sp_err *err) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1] || !strcmp(a, "--"))
            return sp_fail(err, SP_EINVAL, "unexpected argument '%.64s' (see sparrow serve --help)", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct setting *s = NULL;
        const struct alias *al = find_alias(a, len);
        if (al && al->kind == AL_SETTING) s = find_setting(al->target, strlen(al->target));
        else if (!al && a[1] == '-') s = find_setting(a + 2, len - 2);
        if (!s && !al)
            return sp_fail(err, SP_EINVAL, "unknown flag '%.*s' (see sparrow serve --help)", (int)(len > 64 ? 64 : len), a);
        if (al && al->kind == AL_UNSUP)
            return sp_fail(err, SP_EUNSUP, "flag '%.*s' is not supported: %s", (int)len, a, al->target);
        if (al && al->kind == AL_NOOP) {
            if (eq) return sp_fail(err, SP_EINVAL, "flag '%.*s' takes no value", (int)len, a);
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && s && s->type == T_BOOL) v = "true";
        if (!v) {
            if (i + 1 >= argc || looks_like_flag(argv[i + 1]))
                return sp_fail(err, SP_EINVAL, "flag '%s' needs a value (write %s=VALUE for one that starts with '-')",
                               a, a);
            v = argv[++i];
        }
        if (!s) {   /* AL_CONFIG */
            if (config_path_out) *config_path_out = v;
            continue;
        }
        struct sp_err sub = { 0 };
        int rc = set_value(c, s, v, &sub);
        if (rc != SP_OK) return sp_fail(err, rc, "flag '%.*s': %s", (int)(len > 64 ? 64 : len), a, sub.msg);
    }
    return SP_OK;
}

int sp_config_load_all(struct sp_config *c, int argc, char **argv, const char *default_path,
                       struct sp_err *err) {
    sp_config_defaults(c);
    /* A first pass on a scratch copy finds --config and rejects bad flags
     * before any file is read; the real pass comes last, so flags win. */
    struct sp_config *scratch = malloc(sizeof(*scratch));
    if (!scratch) return sp_fail(err, SP_ENOMEM, "config: out of memory");
    *scratch = *c;
    const char *path = NULL;
    int rc = sp_config_parse_args(scratch, argc, argv, &path, err);
    free(scratch);
    if (rc != SP_OK) return rc;
    if (path) rc = load_file(c, path, false, err);
    else if (default_path) rc = load_file(c, default_path, true, err);
    if (rc != SP_OK) return rc;
    if ((rc = sp_config_load_env(c, NULL, err)) != SP_OK) return rc;
    return sp_config_parse_args(c, argc, argv, NULL, err);
}

int sp_config_validate(const struct sp_config *c, struct sp_err *err) {
    if (!c->model[0])
        return sp_fail(err, SP_EINVAL, "no model: give --model PATH (or -m), SPARROW_MODEL, or model = in the config file");
    if (!c->host[0]) return sp_fail(err, SP_EINVAL, "host is empty");
    if (c->block_size > c->ctx_size)
        return sp_fail(err, SP_EINVAL, "block_size %lld is larger than ctx_size %lld", (long long)c->block_size,
                       (long long)c->ctx_size);
    return SP_OK;
}

/* --- reading ------------------------------------------------------------- */

bool sp_config_args_want_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    return false;
}

const char *sp_config_model_name(const struct sp_config *c, char *buf, size_t n) {
    if (!n) return buf;
    if (c->model_alias[0]) { snprintf(buf, n, "%s", c->model_alias); return buf; }
    const char *base = strrchr(c->model, '/');
    base = base ? base + 1 : c->model;
    size_t len = strlen(base);
    if (len > 5 && !strcasecmp(base + len - 5, ".gguf")) len -= 5;
    snprintf(buf, n, "%.*s", (int)len, base);
    return buf;
}

const char *sp_scheduler_policy_name(enum sp_scheduler_policy p) {
    static const char *const names[] = { SP_ENUM_scheduler_policy(ENUM_NAME_) };
    return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "?";
}

const char *sp_log_level_name(enum sp_log_level l) {
    static const char *const names[] = { SP_ENUM_log_level(ENUM_NAME_) };
    return (unsigned)l < sizeof(names) / sizeof(names[0]) ? names[l] : "?";
}

/* --- generated text ------------------------------------------------------ */

/* text, wrapped at `width` columns, each line starting with prefix. */
static void write_wrapped(FILE *out, const char *prefix, const char *text, int width) {
    int room = width - (int)strlen(prefix);
    while (*text) {
        int len = (int)strlen(text);
        if (len > room) {
            int cut = room;
            while (cut > 0 && text[cut] != ' ') cut--;
            if (cut == 0) cut = (int)strcspn(text, " ");
            len = cut;
        }
        fprintf(out, "%s%.*s\n", prefix, len, text);
        text += len;
        while (*text == ' ') text++;
    }
}

static void value_hint(const struct setting *s, char *buf, size_t n) {
    static const char *const hints[] = { "N", "BYTES", "X", "", "STR", "" };
    if (s->type == T_ENUM) fmt_range(s, buf, n);
    else snprintf(buf, n, "%s", hints[s->type]);
    if (!strcmp(s->name, "model") || !strcmp(s->name, "api_keys")) snprintf(buf, n, "PATH");
}

/* "-m, --model" */
static void all_flags(const struct setting *s, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < N_ALIASES && k < n; i++)
        if (aliases[i].kind == AL_SETTING && !strcmp(aliases[i].target, s->name) && aliases[i].flag[1] != '-')
            k += (size_t)snprintf(buf + k, n - k, "%s, ", aliases[i].flag);
    char f[80];
    flag_name(s, f, sizeof(f));
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "%s", f);
    for (int i = 0; i < N_ALIASES && k < n; i++)
        if (aliases[i].kind == AL_SETTING && !strcmp(aliases[i].target, s->name) && aliases[i].flag[1] == '-')
            k += (size_t)snprintf(buf + k, n - k, ", %s", aliases[i].flag);
}

void sp_config_print_help(FILE *out) {
    struct sp_config d;
    sp_config_defaults(&d);
    fprintf(out, "Settings (later wins: defaults < config file < environment < flags).\n"
                 "Flags: --name VALUE or --name=VALUE, '-' and '_' alike; a bool alone means true.\n\n");
    for (int i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        char flags[160], hint[64], env[80], range[128], def[4200];
        all_flags(s, flags, sizeof(flags));
        value_hint(s, hint, sizeof(hint));
        env_name(s, env, sizeof(env));
        fmt_range(s, range, sizeof(range));
        fmt_value(s, &d, def, sizeof(def));
        fprintf(out, "  %s%s%s\n", flags, hint[0] ? " " : "", hint);
        write_wrapped(out, "      ", s->doc, 79);
        fprintf(out, "      [%s %s; default %s%s%s; env %s]\n", type_word(s), range,
                s->type == T_STR ? "\"" : "", def, s->type == T_STR ? "\"" : "", env);
    }
    fprintf(out, "\nOther flags:\n");
    for (int i = 0; i < N_ALIASES; i++) {
        const struct alias *a = &aliases[i];
        if (a->kind == AL_CONFIG) fprintf(out, "  %s FILE\n      %s.\n", a->flag, a->target);
        else if (a->kind == AL_NOOP) fprintf(out, "  %s\n      Accepted and ignored: %s.\n", a->flag, a->target);
        else if (a->kind == AL_UNSUP) fprintf(out, "  %s\n      An error: %s.\n", a->flag, a->target);
    }
}

void sp_config_write_example(FILE *out) {
    struct sp_config d;
    sp_config_defaults(&d);
    fprintf(out,
            "# sparrow.conf - example configuration for sparrow serve.\n"
            "#\n"
            "# Generated from the settings table in config/settings.h by\n"
            "# sp_config_write_example(); do not edit by hand (a unit test compares).\n"
            "# Every setting is shown commented out, with its default.\n"
            "#\n"
            "# Syntax: `key = value`, one per line; '#' starts a comment (after a value\n"
            "# only when whitespace precedes it); a value may be in double quotes.\n"
            "# Sizes take K, M, G, T or KiB, MiB, GiB, TiB (binary: 1K = 1024).\n"
            "# Later wins: defaults < this file < environment SPARROW_<NAME> < flags.\n"
            "# sparrow serve reads " SP_CONFIG_DEFAULT_PATH " if it exists, or --config FILE.\n");
    for (int i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        char env[80], range[128], def[4200];
        env_name(s, env, sizeof(env));
        fmt_range(s, range, sizeof(range));
        fmt_value(s, &d, def, sizeof(def));
        fprintf(out, "\n");
        write_wrapped(out, "# ", s->doc, 79);
        fprintf(out, "# %s %s; env %s\n", type_word(s), range, env);
        if (s->type == T_STR) fprintf(out, "#%s = \"%s\"\n", s->name, def);
        else fprintf(out, "#%s = %s\n", s->name, def);
    }
}

void sp_config_print(const struct sp_config *c, FILE *out) {
    for (int i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        char v[4200];
        fmt_value(s, c, v, sizeof(v));
        if (!strcmp(s->name, "api_key") && v[0]) snprintf(v, sizeof(v), "(set)");
        if (s->type == T_STR) fprintf(out, "%s = \"%s\"\n", s->name, v);
        else fprintf(out, "%s = %s\n", s->name, v);
    }
}
