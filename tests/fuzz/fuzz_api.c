/* fuzz_api.c - libFuzzer harness for the OpenAI wire decoder (server/api.c):
 * every input is decoded as a /v1/completions body, a /v1/chat/completions
 * body (with and without the model's chat template), a /tokenize body and a
 * /detokenize body. Properties: no crash or leak; a rejected body has an
 * HTTP status and a message; an accepted one has prompt ids in the
 * vocabulary and a max_tokens within the limits.
 * The tokenizer is the real one of stories260K, loaded once from
 * $SPARROW_SHARED/models/stories260K-f32.gguf (default ../shared). */
#include "tests/fuzz/fuzz_common.h"

#include <jansson.h>

#include "engine/model.h"
#include "engine/tokenizer.h"
#include "server/api.h"

static struct model *model;
static struct tokenizer *tok;

static void load_once(void) {
    if (tok) return;
    char path[4096];
    struct sp_err err = {0};
    snprintf(path, sizeof(path), "%s/models/stories260K-f32.gguf", fuzz_shared_dir());
    model = model_load(path, &err);
    tok = model ? tok_create(model_gguf(model), &err) : NULL;
    if (!tok) { fprintf(stderr, "fuzz_api: cannot load %s: %s\n", path, err.msg); exit(1); }
}

static void check_error(const struct api_error *e) {
    FUZZ_REQUIRE(e->status >= 400 && e->status <= 599);
    FUZZ_REQUIRE(e->message[0] != 0);
    char *j = api_error_json(e);
    FUZZ_REQUIRE(j != NULL);
    json_t *root = json_loads(j, 0, NULL);     /* the error body is valid JSON */
    FUZZ_REQUIRE(root != NULL);
    json_decref(root);
    free(j);
}

static void parse_one(enum api_kind kind, const char *body, size_t len, const char *tmpl) {
    const struct api_limits lim = { .max_tokens_limit = 256, .max_prompt_tokens = 511,
                                    .model_name = "stories260K-f32", .chat_template = tmpl };
    struct api_request r;
    struct api_error e;
    memset(&e, 0, sizeof(e));
    if (api_parse(kind, body, len, &lim, tok, &r, &e) != SP_OK) { check_error(&e); return; }
    FUZZ_REQUIRE(r.n_prompt >= 1 && r.n_prompt <= lim.max_prompt_tokens);
    for (int i = 0; i < r.n_prompt; i++) FUZZ_REQUIRE(r.prompt[i] >= 0 && r.prompt[i] < tok_n_vocab(tok));
    FUZZ_REQUIRE(r.params.max_tokens >= 1 && r.params.max_tokens <= lim.max_tokens_limit);
    FUZZ_REQUIRE(r.params.n_stops >= 0 && r.params.n_stops <= REQ_MAX_STOPS);
    for (int i = 0; i < r.params.n_stops; i++) FUZZ_REQUIRE(strlen(r.params.stops[i]) <= REQ_MAX_STOP_LEN);
    api_request_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    const char *body = (const char *)data;
    parse_one(API_COMPLETION, body, size, NULL);
    parse_one(API_CHAT, body, size, NULL);
    parse_one(API_CHAT, body, size, "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
    struct api_error e;
    memset(&e, 0, sizeof(e));
    char *out = api_tokenize(body, size, tok, 511, &e);
    if (out) free(out); else check_error(&e);
    memset(&e, 0, sizeof(e));
    out = api_detokenize(body, size, tok, &e);
    if (out) free(out); else check_error(&e);
    /* The stream boundary never cuts beyond the text. */
    FUZZ_REQUIRE(api_stream_boundary(body, size) <= size);
    return 0;
}
