/* api.c - see api.h. Decoding checks every field's type and range and names
 * the field when it refuses; encoding builds jansson objects and dumps them.
 * Text handed to JSON is always valid UTF-8: a stream chunk stops before an
 * incomplete multi-byte sequence (the rest follows in the next chunk), and
 * bytes that can never form a character become U+FFFD. */
#include "server/api.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

/* --- UTF-8 ---------------------------------------------------------------- */

/* Length of a valid sequence starting at s (n bytes left): 1..4, 0 if invalid,
 * -1 if valid so far but cut short by the end of the buffer. */
static int utf8_seq(const unsigned char *s, size_t n) {
    int len;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        unsigned b = s[i];
        if ((b & 0xC0) != 0x80) return 0;
        if (i == 1 && ((c == 0xE0 && b < 0xA0) || (c == 0xED && b > 0x9F) || (c == 0xF0 && b < 0x90) ||
                       (c == 0xF4 && b > 0x8F)))
            return 0;
    }
    return len;
}

/* Bytes of text that end on a character boundary (an incomplete final
 * sequence is left for later; invalid bytes count, they become U+FFFD). */
static size_t utf8_complete_prefix(const char *text, size_t len) {
    size_t i = 0;
    while (i < len) {
        int l = utf8_seq((const unsigned char *)text + i, len - i);
        if (l < 0) break;
        i += l > 0 ? (size_t)l : 1;
    }
    return i;
}

/* A jansson string of text with invalid bytes replaced by U+FFFD. */
static json_t *json_text(const char *text, size_t len) {
    char *buf = malloc(len * 3 + 1);
    if (!buf) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int l = utf8_seq((const unsigned char *)text + i, len - i);
        if (l > 0) { memcpy(buf + o, text + i, (size_t)l); o += (size_t)l; i += (size_t)l; }
        else { memcpy(buf + o, "\xEF\xBF\xBD", 3); o += 3; i++; }
    }
    json_t *s = json_stringn(buf, o);
    free(buf);
    return s;
}

/* --- errors ----------------------------------------------------------------- */

int api_error_set(struct api_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    va_list ap;
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    e->code[0] = 0;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return status;
}

char *api_error_json(const struct api_error *e) {
    /* The message may quote the body (a JSON parse error does), cut anywhere:
     * invalid UTF-8 there would make json_pack fail and turn a 400 into a 500. */
    json_t *err = json_pack("{s:o, s:s, s:o, s:o}", "message", json_text(e->message, strlen(e->message)), "type", e->type,
                            "param", e->param[0] ? json_string(e->param) : json_null(),
                            "code", e->code[0] ? json_string(e->code) : json_null());
    json_t *root = json_pack("{s:o}", "error", err);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

static int bad_field(struct api_error *e, const char *field, const char *fmt, ...) {
    va_list ap;
    char msg[256];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_error_set(e, 400, "invalid_request_error", field, "'%s': %s", field, msg);
    return SP_EINVAL;
}

/* --- field readers: absent or null leaves *out unchanged -------------------- */

static int get_number(json_t *root, const char *key, double lo, double hi, float *out, struct api_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return SP_OK;
    if (!json_is_number(v)) return bad_field(e, key, "must be a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return bad_field(e, key, "%g is outside [%g, %g]", d, lo, hi);
    *out = (float)d;
    return SP_OK;
}

static int get_int(json_t *root, const char *key, long long lo, long long hi, long long *out, struct api_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return SP_OK;
    if (!json_is_integer(v)) return bad_field(e, key, "must be an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad_field(e, key, "%lld is outside [%lld, %lld]", x, lo, hi);
    *out = x;
    return SP_OK;
}

static int get_bool(json_t *root, const char *key, bool *out, struct api_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return SP_OK;
    if (!json_is_boolean(v)) return bad_field(e, key, "must be true or false");
    *out = json_is_true(v);
    return SP_OK;
}

static int get_stops(json_t *root, struct api_request *r, struct api_error *e) {
    json_t *v = json_object_get(root, "stop");
    if (!v || json_is_null(v)) return SP_OK;
    json_t *one[1] = { v };
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > REQ_MAX_STOPS) return bad_field(e, "stop", "at most %d stop sequences", REQ_MAX_STOPS);
        items = NULL;
    } else if (!json_is_string(v)) {
        return bad_field(e, "stop", "must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = items ? items[i] : json_array_get(v, i);
        if (!json_is_string(s)) return bad_field(e, "stop", "must be a string or an array of strings");
        size_t len = json_string_length(s);
        if (len == 0 || len > REQ_MAX_STOP_LEN) return bad_field(e, "stop", "each stop sequence must be 1..%d bytes", REQ_MAX_STOP_LEN);
        if (memchr(json_string_value(s), 0, len)) return bad_field(e, "stop", "must not contain NUL");
        memcpy(r->stop_buf[i], json_string_value(s), len + 1);
        r->params.stops[r->params.n_stops++] = r->stop_buf[i];
    }
    return SP_OK;
}

/* --- prompts ------------------------------------------------------------------ */

static int encode_text(const struct tokenizer *tok, const char *text, size_t len, const struct api_limits *lim,
                       const char *field, struct api_request *r, struct api_error *e) {
    struct sp_err err;
    int n = tok_encode(tok, text, len, tok_add_bos(tok), NULL, 0, &err);
    if (n < 0) return bad_field(e, field, "cannot be tokenized: %s", err.msg);
    if (n > lim->max_prompt_tokens) {
        bad_field(e, field, "is %d tokens, more than the %d this server accepts", n, lim->max_prompt_tokens);
        snprintf(e->code, sizeof(e->code), "context_length_exceeded");
        return SP_ERANGE;
    }
    r->prompt = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!r->prompt) { api_error_set(e, 500, "server_error", NULL, "out of memory"); return SP_ENOMEM; }
    r->n_prompt = tok_encode(tok, text, len, tok_add_bos(tok), r->prompt, n, &err);
    if (r->n_prompt == 0) return bad_field(e, field, "is empty");
    return SP_OK;
}

static int token_array(json_t *arr, const struct tokenizer *tok, const struct api_limits *lim,
                       struct api_request *r, struct api_error *e) {
    size_t n = json_array_size(arr);
    if (n == 0) return bad_field(e, "prompt", "an empty token array");
    if (n > (size_t)lim->max_prompt_tokens) {
        bad_field(e, "prompt", "is %zu tokens, more than the %d this server accepts", n, lim->max_prompt_tokens);
        snprintf(e->code, sizeof(e->code), "context_length_exceeded");
        return SP_ERANGE;
    }
    r->prompt = malloc(sizeof(int32_t) * n);
    if (!r->prompt) { api_error_set(e, 500, "server_error", NULL, "out of memory"); return SP_ENOMEM; }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= tok_n_vocab(tok))
            return bad_field(e, "prompt", "token %zu is not an id in [0, %d)", i, tok_n_vocab(tok));
        r->prompt[i] = (int32_t)json_integer_value(t);
    }
    r->n_prompt = (int)n;
    return SP_OK;
}

static int completion_prompt(json_t *root, const struct tokenizer *tok, const struct api_limits *lim,
                             struct api_request *r, struct api_error *e) {
    json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p)) return bad_field(e, "prompt", "is required");
    if (json_is_string(p)) return encode_text(tok, json_string_value(p), json_string_length(p), lim, "prompt", r, e);
    if (!json_is_array(p)) return bad_field(e, "prompt", "must be a string, an array of token ids, or an array of one of those");
    json_t *first = json_array_get(p, 0);
    if (first && (json_is_string(first) || json_is_array(first))) {
        if (json_array_size(p) != 1) return bad_field(e, "prompt", "only one prompt per request is supported");
        if (json_is_string(first))
            return encode_text(tok, json_string_value(first), json_string_length(first), lim, "prompt", r, e);
        return token_array(first, tok, lim, r, e);
    }
    return token_array(p, tok, lim, r, e);
}

/* Chat templates we know by their markers; anything else (or none) gets the
 * ChatML layout, as llama.cpp's server does. */
enum tmpl { TMPL_CHATML, TMPL_LLAMA2, TMPL_LLAMA3, TMPL_ZEPHYR };

static enum tmpl detect_template(const char *t) {
    if (!t) return TMPL_CHATML;
    if (strstr(t, "<|start_header_id|>")) return TMPL_LLAMA3;
    if (strstr(t, "[INST]")) return TMPL_LLAMA2;
    if (strstr(t, "<|user|>")) return TMPL_ZEPHYR;
    return TMPL_CHATML;
}

struct sbuf { char *p; size_t len, cap; bool oom; };

static void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static int message_content(json_t *m, size_t i, struct sbuf *out, struct api_error *e) {
    json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) { sb_add(out, json_string_value(c), json_string_length(c)); return SP_OK; }
    if (json_is_null(c) || !c) return SP_OK;
    if (!json_is_array(c)) return bad_field(e, "messages", "message %zu: content must be a string or an array of text parts", i);
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *part = json_array_get(c, k);
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text))
            return bad_field(e, "messages", "message %zu: only text content parts are supported", i);
        sb_add(out, json_string_value(text), json_string_length(text));
    }
    return SP_OK;
}

static int chat_prompt(json_t *root, const struct tokenizer *tok, const struct api_limits *lim, struct api_request *r,
                       struct api_error *e) {
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad_field(e, "messages", "must be a non-empty array of {role, content}");
    const enum tmpl t = detect_template(lim->chat_template);
    struct sbuf b = {0};
    int rc = SP_OK;
    bool inst_open = false;
    for (size_t i = 0; i < json_array_size(msgs) && rc == SP_OK; i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) { rc = bad_field(e, "messages", "message %zu needs a string 'role'", i); break; }
        const char *rs = json_string_value(role);
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "developer")) {
            rc = bad_field(e, "messages", "message %zu: role '%.32s' is not system, developer, user or assistant", i, rs);
            break;
        }
        if (!strcmp(rs, "developer")) rs = "system";
        struct sbuf content = {0};
        rc = message_content(m, i, &content, e);
        const char *cs = content.p ? content.p : "";
        switch (t) {
        case TMPL_CHATML: sb_str(&b, "<|im_start|>"); sb_str(&b, rs); sb_str(&b, "\n"); sb_str(&b, cs); sb_str(&b, "<|im_end|>\n"); break;
        case TMPL_LLAMA3: sb_str(&b, "<|start_header_id|>"); sb_str(&b, rs); sb_str(&b, "<|end_header_id|>\n\n"); sb_str(&b, cs); sb_str(&b, "<|eot_id|>"); break;
        case TMPL_ZEPHYR: sb_str(&b, "<|"); sb_str(&b, rs); sb_str(&b, "|>\n"); sb_str(&b, cs); sb_str(&b, "</s>\n"); break;
        case TMPL_LLAMA2:   /* a system prompt opens the first [INST] */
            if (!strcmp(rs, "system")) { sb_str(&b, "[INST] <<SYS>>\n"); sb_str(&b, cs); sb_str(&b, "\n<</SYS>>\n\n"); inst_open = true; }
            else if (!strcmp(rs, "user")) { if (!inst_open) sb_str(&b, "[INST] "); sb_str(&b, cs); sb_str(&b, " [/INST]"); inst_open = false; }
            else { sb_str(&b, " "); sb_str(&b, cs); sb_str(&b, " </s>"); }
            break;
        }
        free(content.p);
    }
    if (rc == SP_OK) {
        switch (t) {
        case TMPL_CHATML: sb_str(&b, "<|im_start|>assistant\n"); break;
        case TMPL_LLAMA3: sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n"); break;
        case TMPL_ZEPHYR: sb_str(&b, "<|assistant|>\n"); break;
        case TMPL_LLAMA2: break;
        }
        if (b.oom) {
            api_error_set(e, 500, "server_error", NULL, "out of memory");
            rc = SP_ENOMEM;
        } else rc = encode_text(tok, b.p ? b.p : "", b.len, lim, "messages", r, e);
    }
    free(b.p);
    return rc;
}

/* --- request ------------------------------------------------------------------- */

void api_request_clear(struct api_request *r) {
    free(r->prompt);
    r->prompt = NULL;
}

static int parse_fields(enum api_kind kind, json_t *root, const struct api_limits *lim, const struct tokenizer *tok,
                        struct api_request *r, struct api_error *e) {
    json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return bad_field(e, "model", "must be a string");
        const char *m = json_string_value(model);
        if (*m && strcmp(m, lim->model_name)) {
            api_error_set(e, 404, "invalid_request_error", "model", "The model '%.100s' does not exist (this server has '%s')",
                          m, lim->model_name);
            snprintf(e->code, sizeof(e->code), "model_not_found");
            return SP_EINVAL;
        }
    }
    int rc;
    struct sampler_params *sp = &r->params.sampling;
    long long v;
    if ((rc = get_bool(root, "stream", &r->stream, e))) return rc;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad_field(e, "stream_options", "must be an object");
        if ((rc = get_bool(so, "include_usage", &r->include_usage, e))) return rc;
    }
    if ((rc = get_number(root, "temperature", 0, 100, &sp->temperature, e)) ||
        (rc = get_number(root, "top_p", 0, 1, &sp->top_p, e)) ||
        (rc = get_number(root, "min_p", 0, 1, &sp->min_p, e)) ||
        (rc = get_number(root, "frequency_penalty", -2, 2, &sp->frequency_penalty, e)) ||
        (rc = get_number(root, "presence_penalty", -2, 2, &sp->presence_penalty, e)) ||
        (rc = get_number(root, "repetition_penalty", 0.01, 10, &sp->repeat_penalty, e)) ||
        (rc = get_number(root, "repeat_penalty", 0.01, 10, &sp->repeat_penalty, e)))
        return rc;
    v = sp->top_k;
    if ((rc = get_int(root, "top_k", 0, 1 << 30, &v, e))) return rc;
    sp->top_k = (int32_t)v;
    v = sp->penalty_last_n;
    if ((rc = get_int(root, "repeat_last_n", 0, SAMPLER_MAX_LAST_N, &v, e))) return rc;
    sp->penalty_last_n = (int32_t)v;
    v = -1;
    if ((rc = get_int(root, "seed", INT64_MIN, INT64_MAX, &v, e))) return rc;
    sp->seed = v >= 0 ? (uint64_t)v : (uint64_t)rand() << 32 ^ (uint64_t)rand();
    v = 1;
    if ((rc = get_int(root, "n", 1, 1, &v, e))) return rc;
    if ((rc = get_bool(root, "ignore_eos", &r->params.ignore_eos, e))) return rc;
    if ((rc = get_stops(root, r, e))) return rc;
    json_t *user = json_object_get(root, "user");
    if (user && !json_is_null(user)) {
        if (!json_is_string(user)) return bad_field(e, "user", "must be a string");
        if (json_string_length(user) > REQ_MAX_CLIENT_LEN) return bad_field(e, "user", "at most %d bytes", REQ_MAX_CLIENT_LEN);
        snprintf(r->user, sizeof(r->user), "%s", json_string_value(user));
    }
    if (kind == API_COMPLETION) {
        v = -1;
        json_t *lp = json_object_get(root, "logprobs");
        if (json_is_boolean(lp)) v = json_is_true(lp) ? 0 : -1;
        else if ((rc = get_int(root, "logprobs", 0, REQ_MAX_LOGPROBS, &v, e))) return rc;
        r->params.n_logprobs = (int)v;
        bool echo = false;
        if ((rc = get_bool(root, "echo", &echo, e))) return rc;
        if (echo) return bad_field(e, "echo", "is not supported");
    } else {
        bool lp = false;
        if ((rc = get_bool(root, "logprobs", &lp, e))) return rc;
        v = 0;
        if ((rc = get_int(root, "top_logprobs", 0, REQ_MAX_LOGPROBS, &v, e))) return rc;
        r->params.n_logprobs = lp ? (int)v : -1;
        if (!lp && json_object_get(root, "top_logprobs") && !json_is_null(json_object_get(root, "top_logprobs")))
            return bad_field(e, "top_logprobs", "needs logprobs: true");
    }
    return SP_OK;
}

int api_parse(enum api_kind kind, const char *body, size_t len, const struct api_limits *lim,
              const struct tokenizer *tok, struct api_request *r, struct api_error *e) {
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->params.sampling = sampler_default_params();
    r->params.n_logprobs = -1;
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        api_error_set(e, 400, "invalid_request_error", NULL, "the body is not valid JSON: %s (line %d, column %d)",
                      je.text, je.line, je.column);
        return SP_EINVAL;
    }
    int rc;
    if (!json_is_object(root)) {
        rc = SP_EINVAL;
        api_error_set(e, 400, "invalid_request_error", NULL, "the body must be a JSON object");
        goto out;
    }
    if ((rc = parse_fields(kind, root, lim, tok, r, e))) goto out;
    rc = kind == API_COMPLETION ? completion_prompt(root, tok, lim, r, e) : chat_prompt(root, tok, lim, r, e);
    if (rc) goto out;
    long long room = (long long)lim->max_prompt_tokens + 1 - r->n_prompt;
    long long max_tokens = lim->max_tokens_limit < room ? lim->max_tokens_limit : room;
    if (max_tokens < 1) max_tokens = 1;
    const char *mt_key = kind == API_CHAT && json_object_get(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if ((rc = get_int(root, mt_key, 1, lim->max_tokens_limit, &max_tokens, e))) goto out;
    r->params.max_tokens = (int)max_tokens;
out:
    json_decref(root);
    if (rc) api_request_clear(r);
    return rc;
}

/* --- responses ------------------------------------------------------------------ */

const char *api_finish_reason(enum req_finish f) {
    return f == REQ_FINISH_STOP ? "stop" : f == REQ_FINISH_LENGTH ? "length" : NULL;
}

static json_t *usage_json(struct request *r) {
    struct req_view v;
    req_get_view(r, &v);
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", v.n_prompt, "completion_tokens", v.n_generated,
                     "total_tokens", v.n_prompt + v.n_generated, "prompt_tokens_details", "cached_tokens", v.n_cached);
}

static json_t *piece_json(const struct tokenizer *tok, int32_t id) {
    size_t len;
    const char *p = tok_piece(tok, id, &len);
    return json_text(p ? p : "", p ? len : 0);
}

static json_t *bytes_json(const struct tokenizer *tok, int32_t id) {
    size_t len;
    const char *p = tok_piece(tok, id, &len);
    json_t *a = json_array();
    for (size_t i = 0; p && i < len; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* Logprobs of tokens [from, to) in the kind's shape; json null if not asked. */
static json_t *logprobs_json(enum api_kind kind, struct request *r, int from, int to, const struct tokenizer *tok) {
    if (req_params(r)->n_logprobs < 0) return json_null();
    struct req_token t;
    if (kind == API_CHAT) {
        json_t *content = json_array();
        for (int i = from; i < to && req_get_token(r, i, &t); i++) {
            json_t *top = json_array();
            for (int k = 0; k < t.n_top; k++)
                json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", piece_json(tok, t.top_id[k]),
                                                     "logprob", (double)t.top_logprob[k], "bytes", bytes_json(tok, t.top_id[k])));
            json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", piece_json(tok, t.id), "logprob",
                                                     (double)t.logprob, "bytes", bytes_json(tok, t.id), "top_logprobs", top));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = 0;
    for (int i = 0; i < from && req_get_token(r, i, &t); i++) { size_t l; tok_piece(tok, t.id, &l); off += l; }
    for (int i = from; i < to && req_get_token(r, i, &t); i++) {
        json_array_append_new(tokens, piece_json(tok, t.id));
        json_array_append_new(lps, json_real(t.logprob));
        json_t *top = json_object();
        for (int k = 0; k < t.n_top; k++) {
            json_t *key = piece_json(tok, t.top_id[k]);
            json_object_set_new(top, json_string_value(key), json_real(t.top_logprob[k]));
            json_decref(key);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        size_t l;
        tok_piece(tok, t.id, &l);
        off += l;
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

static char *dump(json_t *root) {
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

char *api_response_json(enum api_kind kind, const char *id, long created, const char *model, struct request *r,
                        const struct tokenizer *tok) {
    struct req_view v;
    req_get_view(r, &v);
    char *text = malloc(v.text_len + 1);
    if (!text) return NULL;
    size_t n = req_copy_text(r, 0, text, v.text_len);
    const char *finish = api_finish_reason(v.finish);
    json_t *choice;
    if (kind == API_CHAT)
        choice = json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", 0, "message", "role", "assistant", "content",
                           json_text(text, n), "logprobs", logprobs_json(kind, r, 0, v.n_generated, tok),
                           "finish_reason", finish ? finish : "stop");
    else
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "text", json_text(text, n), "logprobs",
                           logprobs_json(kind, r, 0, v.n_generated, tok), "finish_reason", finish ? finish : "stop");
    free(text);
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object",
                          kind == API_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model", model,
                          "choices", choice, "usage", usage_json(r)));
}

static char *sse(json_t *root) {
    char *j = dump(root);
    if (!j) return NULL;
    size_t n = strlen(j);
    char *s = malloc(n + 9);
    if (s) { memcpy(s, "data: ", 6); memcpy(s + 6, j, n); memcpy(s + 6 + n, "\n\n", 3); }
    free(j);
    return s;
}

char *api_chunk_sse(enum api_kind kind, const char *id, long created, const char *model, const char *text,
                    size_t len, struct request *r, int tok_from, int tok_to, const char *finish,
                    const struct tokenizer *tok, bool first) {
    json_t *choice;
    json_t *fin = finish ? json_string(finish) : json_null();
    if (kind == API_CHAT) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (len > 0 || !finish) json_object_set_new(delta, "content", json_text(text, len));
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs",
                           logprobs_json(kind, r, tok_from, tok_to, tok), "finish_reason", fin);
    } else {
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "text", json_text(text, len), "logprobs",
                           logprobs_json(kind, r, tok_from, tok_to, tok), "finish_reason", fin);
    }
    return sse(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                         kind == API_CHAT ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created, "model",
                         model, "choices", choice));
}

char *api_usage_sse(enum api_kind kind, const char *id, long created, const char *model, struct request *r) {
    return sse(json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object",
                         kind == API_CHAT ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created, "model",
                         model, "choices", "usage", usage_json(r)));
}

size_t api_stream_boundary(const char *text, size_t len) { return utf8_complete_prefix(text, len); }

/* --- tokenize ------------------------------------------------------------------------ */

char *api_tokenize(const char *body, size_t len, const struct tokenizer *tok, int max_tokens, struct api_error *e) {
    json_t *root = json_loadb(body, len, 0, NULL);
    char *out = NULL;
    if (!json_is_object(root)) { api_error_set(e, 400, "invalid_request_error", NULL, "the body must be a JSON object"); goto done; }
    json_t *content = json_object_get(root, "content");
    if (!json_is_string(content)) { bad_field(e, "content", "must be a string"); goto done; }
    bool add_special = false, with_pieces = false;
    if (get_bool(root, "add_special", &add_special, e) || get_bool(root, "with_pieces", &with_pieces, e)) goto done;
    struct sp_err err;
    int n = tok_encode(tok, json_string_value(content), json_string_length(content), add_special, NULL, 0, &err);
    if (n < 0) { bad_field(e, "content", "cannot be tokenized: %s", err.msg); goto done; }
    if (n > max_tokens) { bad_field(e, "content", "is %d tokens, more than %d", n, max_tokens); goto done; }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!ids) { api_error_set(e, 500, "server_error", NULL, "out of memory"); goto done; }
    tok_encode(tok, json_string_value(content), json_string_length(content), add_special, ids, n, &err);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, with_pieces ? json_pack("{s:i, s:o}", "id", ids[i], "piece", piece_json(tok, ids[i]))
                                               : json_integer(ids[i]));
    free(ids);
    out = dump(json_pack("{s:o}", "tokens", arr));
done:
    json_decref(root);
    return out;
}

char *api_detokenize(const char *body, size_t len, const struct tokenizer *tok, struct api_error *e) {
    json_t *root = json_loadb(body, len, 0, NULL);
    char *out = NULL;
    struct sbuf b = {0};
    if (!json_is_object(root)) { api_error_set(e, 400, "invalid_request_error", NULL, "the body must be a JSON object"); goto done; }
    json_t *tokens = json_object_get(root, "tokens");
    if (!json_is_array(tokens)) { bad_field(e, "tokens", "must be an array of token ids"); goto done; }
    for (size_t i = 0; i < json_array_size(tokens); i++) {
        json_t *t = json_array_get(tokens, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= tok_n_vocab(tok)) {
            bad_field(e, "tokens", "token %zu is not an id in [0, %d)", i, tok_n_vocab(tok));
            goto done;
        }
        size_t l;
        const char *p = tok_piece(tok, (int32_t)json_integer_value(t), &l);
        sb_add(&b, p, l);
    }
    if (b.oom) { api_error_set(e, 500, "server_error", NULL, "out of memory"); goto done; }
    out = dump(json_pack("{s:o}", "content", json_text(b.p ? b.p : "", b.len)));
done:
    free(b.p);
    json_decref(root);
    return out;
}
