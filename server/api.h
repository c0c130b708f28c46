/* api.h - the OpenAI-compatible wire format on jansson: request bodies of
 * /v1/completions and /v1/chat/completions decoded and validated into a
 * scheduler request's parameters, and responses (whole, or SSE chunks)
 * encoded. No sockets here, so every function can be fuzzed directly.
 *
 * Errors follow OpenAI's shape {"error":{"message","type","param","code"}};
 * a bad field names itself in `param` and the message.
 * Ownership: api_parse fills a caller-owned struct and allocates its prompt
 * (api_request_clear frees it); every encoder returns a malloc'd string the
 * caller frees. Thread-safety: any thread (the tokenizer is read-only). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/request.h"

struct tokenizer;

enum api_kind { API_COMPLETION, API_CHAT };

struct api_limits {
    int max_tokens_limit;   /* cap and default for max_tokens */
    int max_prompt_tokens;  /* longest prompt accepted */
    const char *model_name; /* what "model" must be (empty/absent also accepted) */
    const char *chat_template; /* GGUF tokenizer.chat_template, or NULL */
};

struct api_request {
    enum api_kind kind;
    bool stream;
    bool include_usage;     /* stream_options.include_usage */
    int32_t *prompt;        /* owned: token ids, BOS first where the vocab wants it */
    int n_prompt;
    struct req_params params;       /* stops point into stop_buf */
    char stop_buf[REQ_MAX_STOPS][REQ_MAX_STOP_LEN + 1];
    char user[REQ_MAX_CLIENT_LEN + 1];  /* "user" field, "" if absent */
};

struct api_error {
    int status;             /* HTTP status */
    const char *type;       /* "invalid_request_error", ... */
    char param[64];         /* offending field, "" if none */
    char code[48];          /* OpenAI-style code, "" if none */
    char message[300];
};

/* Decode and validate a request body. SP_OK, or an error code with e filled
 * (status 400 for bad JSON or fields, 404 for an unknown model). */
int api_parse(enum api_kind kind, const char *body, size_t len, const struct api_limits *lim,
              const struct tokenizer *tok, struct api_request *out, struct api_error *e);
void api_request_clear(struct api_request *r);

/* Fill e; returns e->status. */
int api_error_set(struct api_error *e, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
char *api_error_json(const struct api_error *e);

/* "stop" | "length" | NULL (still running; cancelled and errors also map to NULL). */
const char *api_finish_reason(enum req_finish f);

/* The whole response of a finished request. */
char *api_response_json(enum api_kind kind, const char *id, long created, const char *model,
                        struct request *r, const struct tokenizer *tok);
/* One SSE event: "data: {...}\n\n" for text [text, text+len) with the
 * logprob records of tokens [tok_from, tok_to) (when asked for), and the
 * finish reason if this is the last content chunk. */
char *api_chunk_sse(enum api_kind kind, const char *id, long created, const char *model, const char *text,
                    size_t len, struct request *r, int tok_from, int tok_to, const char *finish,
                    const struct tokenizer *tok, bool first);
/* The usage-only chunk of stream_options.include_usage. */
char *api_usage_sse(enum api_kind kind, const char *id, long created, const char *model, struct request *r);

/* /tokenize and /detokenize bodies -> response JSON, or NULL with e filled. */
char *api_tokenize(const char *body, size_t len, const struct tokenizer *tok, int max_tokens, struct api_error *e);
char *api_detokenize(const char *body, size_t len, const struct tokenizer *tok, struct api_error *e);

/* Bytes of text safe to send now: up to the last complete UTF-8 character. */
size_t api_stream_boundary(const char *text, size_t len);
