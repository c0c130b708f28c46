/* fuzz_tokenizer.c - libFuzzer harness for the SPM tokenizer (engine/tokenizer.c)
 * with the real stories260K vocab: any bytes encode to ids in [0, n_vocab),
 * the count is the same with and without a big enough buffer, and for valid
 * UTF-8 without NUL decode(encode(x)) == x, after dropping the one space the
 * space prefix adds in front. U+2581 itself is left out of the round trip:
 * SPM stores spaces as U+2581, so a literal one decodes as a space (llama.cpp
 * does the same). */
#include "tests/fuzz/fuzz_common.h"

#include <stdbool.h>

#include "engine/model.h"
#include "engine/tokenizer.h"

static struct model *model;
static struct tokenizer *tok;

static void load_once(void) {
    if (tok) return;
    char path[4096];
    struct sp_err err = {0};
    snprintf(path, sizeof(path), "%s/models/stories260K-f32.gguf", fuzz_shared_dir());
    model = model_load(path, &err);
    tok = model ? tok_create(model_gguf(model), &err) : NULL;
    if (!tok) { fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, err.msg); exit(1); }
}

/* Valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF) without NUL or U+2581. */
static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len; uint32_t cp;
        if (c == 0) return false;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581)
            return false;
        i += len;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    struct sp_err err;
    const char *text = (const char *)data;
    const bool add_bos = size > 0 && (data[0] & 1);
    const int n = tok_encode(tok, text, size, add_bos, NULL, 0, &err);
    FUZZ_REQUIRE(n >= 0);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n + 1));
    FUZZ_REQUIRE(ids != NULL);
    FUZZ_REQUIRE(tok_encode(tok, text, size, add_bos, ids, n, &err) == n);
    const int32_t n_vocab = tok_n_vocab(tok);
    for (int i = 0; i < n; i++) FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < n_vocab);
    if (add_bos && tok_bos(tok) >= 0) FUZZ_REQUIRE(n >= 1 && ids[0] == tok_bos(tok));
    if (n > 1) FUZZ_REQUIRE(tok_encode(tok, text, size, add_bos, ids, n - 1, &err) == n);  /* short buffer */

    if (valid_utf8(data, size)) {
        char *out = calloc(1, size + 16);
        size_t len = 0;
        bool fits = out != NULL;
        for (int i = 0; i < n && fits; i++) {
            size_t pl;
            const char *p = tok_piece(tok, ids[i], &pl);
            FUZZ_REQUIRE(p != NULL);
            if (len + pl > size + 1) { fits = false; break; }
            memcpy(out + len, p, pl);
            len += pl;
        }
        FUZZ_REQUIRE(fits);
        const char *d = out;
        if (size > 0 && len == size + 1 && d[0] == ' ') { d++; len--; }   /* the space prefix */
        if (len != size || memcmp(d, text, size) != 0) {
            fprintf(stderr, "fuzz_tokenizer: round trip of %zu bytes gave %zu bytes\n", size, len);
            abort();
        }
        free(out);
    }
    free(ids);
    return 0;
}
