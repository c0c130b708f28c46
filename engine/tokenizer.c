/* tokenizer.c - SentencePiece (SPM) tokenizer over a GGUF vocab.
 *
 * A port of llama.cpp's llm_tokenizer_spm (src/llama-vocab.cpp, c392e509):
 * the text is cut into UTF-8 characters, then adjacent pairs whose
 * concatenation is a vocab token are merged, best score first, until no pair
 * is a token. Symbols left over that are not tokens become byte tokens
 * `<0xNN>`. Everything the hot path needs (text->id hash, byte->id table,
 * pieces) is built once in tok_create, so encode allocates only its own
 * scratch and a tokenizer can be shared by threads. */
#include "engine/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp's
 * llama_token_type); anything else is "undefined", which llama.cpp treats
 * like an unused token. */
enum {
    TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3,
    TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6,
};

/* Longest token text we accept. GGUF already bounds strings by the file size;
 * this keeps lengths in 32 bits and a hostile vocab from making every lookup
 * hash megabytes. Real vocabs stay under a few hundred bytes. */
#define TOK_MAX_TEXT (1u << 20)

struct token {
    uint32_t text_off, text_len;    /* in t->text, NUL-terminated there too */
    uint32_t piece_off, piece_len;  /* in t->pieces */
    float score;
    uint8_t type;                   /* TT_*, after EOG-by-name forcing to control */
    uint8_t eog;
};

struct tokenizer {
    int32_t n_vocab;
    struct token *tok;
    char *text;                     /* all token texts, each NUL-terminated */
    char *pieces;                   /* all pieces (not terminated) */
    int32_t *table;                 /* open addressing: token id or -1 */
    uint32_t table_mask;
    uint32_t max_text_len;          /* no merge can be longer than this */
    int32_t byte_id[256];           /* <0xNN>, else the raw byte, else unk, else -1 */
    int32_t *user_defined;          /* ids, longest text first (split out before SPM) */
    int32_t n_user_defined;
    int32_t bos, eos, unk, eot, eom;
    bool add_bos, add_space_prefix;
};

static const char SPACE_ESC[] = "\xe2\x96\x81";     /* U+2581, SentencePiece's space */

/* ---- text -> id hash --------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;                       /* FNV-1a: short keys, good enough */
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 16777619u; }
    return h;
}

static const char *tok_str(const struct tokenizer *t, int32_t id) {
    return t->text + t->tok[id].text_off;
}

static int32_t lookup(const struct tokenizer *t, const char *s, size_t n) {
    if (n > t->max_text_len) return -1;
    for (uint32_t i = hash_bytes(s, n) & t->table_mask;; i = (i + 1) & t->table_mask) {
        int32_t id = t->table[i];
        if (id < 0) return -1;
        if (t->tok[id].text_len == n && memcmp(tok_str(t, id), s, n) == 0) return id;
    }
}

/* Insert id; an existing equal text is a duplicate (llama.cpp asserts on it,
 * since its map would silently drop a token). Returns the other id or -1. */
static int32_t table_insert(struct tokenizer *t, int32_t id) {
    const char *s = tok_str(t, id);
    size_t n = t->tok[id].text_len;
    for (uint32_t i = hash_bytes(s, n) & t->table_mask;; i = (i + 1) & t->table_mask) {
        int32_t o = t->table[i];
        if (o < 0) { t->table[i] = id; return -1; }
        if (t->tok[o].text_len == n && memcmp(tok_str(t, o), s, n) == 0) return o;
    }
}

/* ---- loading ----------------------------------------------------------- */

/* Optional token-id key: absent keeps *id; present must be an id in range. */
static int read_id(const struct gguf *g, const char *key, int32_t n_vocab, int32_t *id,
                   struct sp_err *err) {
    if (gguf_find_key(g, key) < 0) return SP_OK;
    uint32_t v;
    int rc = gguf_get_u32(g, key, &v, err);
    if (rc) return rc;
    if (v >= (uint32_t)n_vocab)
        return sp_fail(err, SP_EFORMAT, "tokenizer: %s = %u is not below n_vocab %d", key, v,
                       (int)n_vocab);
    *id = (int32_t)v;
    return SP_OK;
}

static int read_bool(const struct gguf *g, const char *key, bool *out, struct sp_err *err) {
    if (gguf_find_key(g, key) < 0) return SP_OK;
    return gguf_get_bool(g, key, out, err);
}

/* An optional per-token array: absent gives *data = NULL; present must have
 * the given element type and one element per token. */
static int read_token_arr(const struct gguf *g, const char *key, enum gguf_type want,
                          uint64_t n_vocab, const void **data, struct sp_err *err) {
    *data = NULL;
    if (gguf_find_key(g, key) < 0) return SP_OK;
    enum gguf_type et;
    uint64_t n;
    int rc = gguf_get_arr(g, key, &et, &n, data, err);
    if (rc) return rc;
    if (et != want)
        return sp_fail(err, SP_EFORMAT, "tokenizer: %s has element type %d, want %d", key,
                       (int)et, (int)want);
    if (n != n_vocab)
        return sp_fail(err, SP_EFORMAT, "tokenizer: %s has %llu entries for %llu tokens", key,
                       (unsigned long long)n, (unsigned long long)n_vocab);
    return SP_OK;
}

/* Tokens llama.cpp recognises by text as end-of-generation (and forces to
 * control type, so they print as nothing). Its fill-in-the-middle pad/repo/
 * separator tokens also end generation. */
static bool is_eog_text(const char *s) {
    static const char *const names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|eom_id|>", "<EOT>",
        "<|fim_pad|>", "<fim-pad>", "<PAD>",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<|file_sep|>",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) return true;
    return false;
}

/* EOT candidates by text when no eot_token_id key says otherwise. */
static bool is_eot_text(const char *s) {
    static const char *const names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
        "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",  /* DeepSeek */
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) return true;
    return false;
}

/* Copy the token strings into one arena. Empty strings get llama.cpp's
 * "[EMPTY_<id>]" so every token has a findable text. */
static int load_texts(struct tokenizer *t, const struct gguf *g, struct sp_err *err) {
    const char *key = "tokenizer.ggml.tokens";
    size_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        struct gguf_str s = gguf_get_arr_str(g, key, (uint64_t)i);
        if (s.len > TOK_MAX_TEXT)
            return sp_fail(err, SP_EFORMAT, "tokenizer: token %d is %llu bytes (max %u)", (int)i,
                           (unsigned long long)s.len, TOK_MAX_TEXT);
        total += (s.len ? s.len : 24) + 1;
        if (total > UINT32_MAX / 2)
            return sp_fail(err, SP_EFORMAT, "tokenizer: token texts exceed 2 GiB at token %d", (int)i);
    }
    t->text = malloc(total ? total : 1);
    t->pieces = malloc(total ? total : 1);  /* a piece is never longer than its text + 1 */
    if (!t->text || !t->pieces) return sp_fail(err, SP_ENOMEM, "tokenizer: out of memory for %zu bytes of text", total);
    size_t off = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        struct gguf_str s = gguf_get_arr_str(g, key, (uint64_t)i);
        int n;
        if (s.len) {
            memcpy(t->text + off, s.ptr, s.len);
            n = (int)s.len;
        } else {
            n = snprintf(t->text + off, 24, "[EMPTY_%d]", (int)i);
        }
        t->text[off + (size_t)n] = '\0';
        t->tok[i].text_off = (uint32_t)off;
        t->tok[i].text_len = (uint32_t)n;
        if ((uint32_t)n > t->max_text_len) t->max_text_len = (uint32_t)n;
        off += (size_t)n + 1;
    }
    return SP_OK;
}

static uint32_t parse_hex2(const char *s, uint32_t n) {
    /* llama.cpp: strtol(text.substr(3, 2), 16) on "<0xNN>"; tolerate junk. */
    uint32_t v = 0;
    for (uint32_t i = 3; i < n && i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + (uint32_t)d;
    }
    return v;
}

/* What a token prints as (llama.cpp token_to_piece, special = false):
 * control/unknown/unused/undefined print nothing, normal tokens print with
 * U+2581 turned back into spaces, user-defined ones verbatim, byte tokens as
 * their byte. */
static void build_pieces(struct tokenizer *t) {
    size_t off = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        struct token *k = &t->tok[i];
        const char *s = tok_str(t, i);
        char *out = t->pieces + off;
        uint32_t n = 0;
        if (k->type == TT_NORMAL) {
            for (uint32_t j = 0; j < k->text_len;) {
                if (j + 3 <= k->text_len && memcmp(s + j, SPACE_ESC, 3) == 0) { out[n++] = ' '; j += 3; }
                else out[n++] = s[j++];
            }
        } else if (k->type == TT_USER_DEFINED) {
            memcpy(out, s, k->text_len);
            n = k->text_len;
        } else if (k->type == TT_BYTE) {
            out[n++] = (char)parse_hex2(s, k->text_len);
        }
        k->piece_off = (uint32_t)off;
        k->piece_len = n;
        off += n;
    }
}

static void build_byte_table(struct tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int c = 0; c < 256; c++) {
        char buf[6] = { '<', '0', 'x', hex[c >> 4], hex[c & 15], '>' };
        char raw = (char)c;
        int32_t id = lookup(t, buf, 6);
        if (id < 0) id = lookup(t, &raw, 1);       /* llama.cpp's fallback: the byte itself */
        if (id < 0) id = t->unk;                   /* llama.cpp would throw here */
        t->byte_id[c] = id;
    }
}

struct ud_key { uint32_t len; int32_t id; };

static int cmp_user_defined(const void *a, const void *b) {
    const struct ud_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;   /* longest first, as llama.cpp */
    return x->id < y->id ? -1 : x->id > y->id;                /* and deterministic on ties */
}

static int load(struct tokenizer *t, const struct gguf *g, struct sp_err *err) {
    struct gguf_str model;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc) return rc;
    if (!gguf_str_eq(model, "llama"))
        return sp_fail(err, SP_EUNSUP, "tokenizer: model '%.*s' is not supported (only 'llama' SPM)",
                       (int)(model.len > 64 ? 64 : model.len), model.ptr);

    enum gguf_type et;
    uint64_t n;
    const void *unused;
    rc = gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &unused, err);
    if (rc) return rc;
    if (et != GGUF_TYPE_STRING)
        return sp_fail(err, SP_EFORMAT, "tokenizer: tokenizer.ggml.tokens has element type %d, want strings", (int)et);
    if (n == 0 || n > (uint64_t)INT32_MAX / 4)
        return sp_fail(err, SP_EFORMAT, "tokenizer: vocab has %llu tokens", (unsigned long long)n);
    t->n_vocab = (int32_t)n;

    const void *scores, *types;
    rc = read_token_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, n, &scores, err);
    if (rc) return rc;
    rc = read_token_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, n, &types, err);
    if (rc) return rc;

    t->tok = calloc(n, sizeof(*t->tok));
    uint32_t cap = 1;
    while (cap < 2 * n) cap <<= 1;                 /* load factor <= 1/2 */
    t->table = malloc(cap * sizeof(*t->table));
    if (!t->tok || !t->table) return sp_fail(err, SP_ENOMEM, "tokenizer: out of memory for %llu tokens", (unsigned long long)n);
    memset(t->table, 0xff, cap * sizeof(*t->table));
    t->table_mask = cap - 1;

    rc = load_texts(t, g, err);
    if (rc) return rc;

    for (int32_t i = 0; i < t->n_vocab; i++) {
        struct token *k = &t->tok[i];
        if (scores) memcpy(&k->score, (const char *)scores + 4 * (size_t)i, 4);
        int32_t ty = TT_NORMAL;
        if (types) memcpy(&ty, (const char *)types + 4 * (size_t)i, 4);
        k->type = ty >= TT_NORMAL && ty <= TT_BYTE ? (uint8_t)ty : TT_UNDEFINED;
        int32_t dup = table_insert(t, i);
        if (dup >= 0)
            return sp_fail(err, SP_EFORMAT, "tokenizer: tokens %d and %d are both '%.40s'", (int)dup,
                           (int)i, tok_str(t, i));
    }

    /* llama.cpp's SPM defaults, then the file's keys. */
    t->bos = 1 < t->n_vocab ? 1 : -1;
    t->eos = 2 < t->n_vocab ? 2 : -1;
    t->unk = 0;
    t->eot = -1;
    t->eom = -1;
    t->add_bos = true;
    t->add_space_prefix = true;
    if ((rc = read_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err)) ||
        (rc = read_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err)) ||
        (rc = read_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err)) ||
        (rc = read_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err)) ||
        (rc = read_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err)) ||
        (rc = read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (rc = read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)))
        return rc;

    /* End-of-generation set, as llama.cpp builds it: named tokens (forced to
     * control so they print as nothing), then EOS, EOT, EOM. */
    int32_t n_ud = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s = tok_str(t, i);
        if (t->eot < 0 && is_eot_text(s)) t->eot = i;
        if (is_eog_text(s) || (i == t->eot && is_eot_text(s))) {
            t->tok[i].eog = 1;
            t->tok[i].type = TT_CONTROL;
        }
        if (s[0] == '<' && strcmp(s, "<|eom_id|>") == 0 && t->eom < 0) t->eom = i;
    }
    if (t->eos >= 0) t->tok[t->eos].eog = 1;
    if (t->eot >= 0) t->tok[t->eot].eog = 1;
    if (t->eom >= 0) t->tok[t->eom].eog = 1;

    for (int32_t i = 0; i < t->n_vocab; i++) n_ud += t->tok[i].type == TT_USER_DEFINED;
    if (n_ud) {
        struct ud_key *keys = malloc((size_t)n_ud * sizeof(*keys));
        t->user_defined = malloc((size_t)n_ud * sizeof(int32_t));
        if (!keys || !t->user_defined) { free(keys); return sp_fail(err, SP_ENOMEM, "tokenizer: out of memory"); }
        for (int32_t i = 0; i < t->n_vocab; i++)
            if (t->tok[i].type == TT_USER_DEFINED)
                keys[t->n_user_defined++] = (struct ud_key){ t->tok[i].text_len, i };
        qsort(keys, (size_t)n_ud, sizeof(*keys), cmp_user_defined);
        for (int32_t i = 0; i < n_ud; i++) t->user_defined[i] = keys[i].id;
        free(keys);
    }

    build_pieces(t);
    build_byte_table(t);
    return SP_OK;
}

struct tokenizer *tok_create(const struct gguf *g, struct sp_err *err) {
    if (!g) { sp_fail(err, SP_EINVAL, "tokenizer: no gguf"); return NULL; }
    struct tokenizer *t = calloc(1, sizeof(*t));
    if (!t) { sp_fail(err, SP_ENOMEM, "tokenizer: out of memory"); return NULL; }
    if (load(t, g, err)) { tok_free(t); return NULL; }
    return t;
}

void tok_free(struct tokenizer *t) {
    if (!t) return;
    free(t->tok);
    free(t->text);
    free(t->pieces);
    free(t->table);
    free(t->user_defined);
    free(t);
}

int32_t tok_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const struct tokenizer *t) { return t->bos; }
int32_t tok_eos(const struct tokenizer *t) { return t->eos; }
bool tok_add_bos(const struct tokenizer *t) { return t->add_bos; }

bool tok_is_eog(const struct tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->tok[id].eog;
}

const char *tok_piece(const struct tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { *len = 0; return NULL; }
    *len = t->tok[id].piece_len;
    return t->pieces + t->tok[id].piece_off;
}

const char *tok_text(const struct tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { *len = 0; return NULL; }
    *len = t->tok[id].text_len;
    return tok_str(t, id);
}

/* ---- encoding ---------------------------------------------------------- */

struct symbol {
    int32_t prev, next;             /* linked list over live symbols, -1 ends */
    uint32_t off, n;                /* bytes in the escaped text; n = 0 once merged away */
};

struct bigram {
    int32_t left, right;
    float score;
    uint32_t size;                  /* left.n + right.n when queued: stale if changed */
};

/* The work of one encode call: caller's output plus scratch. */
struct session {
    const struct tokenizer *t;
    int32_t *ids;
    int cap;
    int n_out;
    char *buf;                      /* escaped fragment */
    struct symbol *sym;
    struct bigram *heap;
    size_t n_heap, cap_heap;
    struct sp_err *err;
};

/* Max-heap order: higher score first, then leftmost (llama.cpp's comparator). */
static bool bigram_before(const struct bigram *a, const struct bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct session *s, struct bigram b) {
    if (s->n_heap == s->cap_heap) {
        size_t nc = s->cap_heap ? 2 * s->cap_heap : 64;
        struct bigram *h = realloc(s->heap, nc * sizeof(*h));
        if (!h) return sp_fail(s->err, SP_ENOMEM, "tokenizer: out of memory for %zu bigrams", nc);
        s->heap = h;
        s->cap_heap = nc;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
    return SP_OK;
}

static struct bigram heap_pop(struct session *s) {
    struct bigram top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static void emit(struct session *s, int32_t id) {
    if (s->n_out < s->cap) s->ids[s->n_out] = id;
    s->n_out++;
}

/* Queue the pair if together they spell a token. */
static int try_add_bigram(struct session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return SP_OK;
    uint32_t size = s->sym[left].n + s->sym[right].n;
    int32_t id = lookup(s->t, s->buf + s->sym[left].off, size);
    if (id < 0) return SP_OK;
    struct bigram b = { left, right, s->t->tok[id].score, size };
    return heap_push(s, b);
}

/* A final symbol: its token, or its bytes. llama.cpp first tries to undo the
 * recorded merge (rev_merge), but that branch cannot fire: a symbol is either
 * one original character or the result of a merge, and a merge only happens
 * when the merged text is a token; rev_merge only holds token texts. */
static int resegment(struct session *s, const struct symbol *y) {
    const char *p = s->buf + y->off;
    int32_t id = lookup(s->t, p, y->n);
    if (id >= 0) { emit(s, id); return SP_OK; }
    for (uint32_t j = 0; j < y->n; j++) {
        id = s->t->byte_id[(uint8_t)p[j]];
        if (id < 0)
            return sp_fail(s->err, SP_EFORMAT, "tokenizer: no token for byte 0x%02X and no unknown token",
                           (uint8_t)p[j]);
        emit(s, id);
    }
    return SP_OK;
}

/* Byte length of a UTF-8 sequence from its lead byte (llama.cpp's
 * unicode_len_utf8: continuation and invalid bytes count as 1). */
static uint32_t utf8_len(uint8_t c) {
    static const uint8_t lookup_len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return lookup_len[c >> 4];
}

/* llm_tokenizer_spm_session::tokenize on s->buf[0..n). */
static int spm_fragment(struct session *s, uint32_t n) {
    int32_t n_sym = 0;
    for (uint32_t off = 0; off < n;) {
        uint32_t len = utf8_len((uint8_t)s->buf[off]);
        if (len > n - off) len = n - off;
        struct symbol *y = &s->sym[n_sym];
        y->off = off;
        y->n = len;
        off += len;
        y->prev = n_sym - 1;
        y->next = off == n ? -1 : n_sym + 1;
        n_sym++;
    }
    if (n_sym == 0) return SP_OK;

    s->n_heap = 0;
    int rc;
    for (int32_t i = 1; i < n_sym; i++)
        if ((rc = try_add_bigram(s, i - 1, i))) return rc;

    while (s->n_heap) {
        struct bigram b = heap_pop(s);
        struct symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        /* Either side already merged elsewhere, or grew since queued: stale. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = b.left;
        if ((rc = try_add_bigram(s, l->prev, b.left)) || (rc = try_add_bigram(s, b.left, l->next)))
            return rc;
    }

    for (int32_t i = 0; i != -1; i = s->sym[i].next)
        if ((rc = resegment(s, &s->sym[i]))) return rc;
    return SP_OK;
}

/* Escape one raw fragment (optional leading space, ' ' -> U+2581) into
 * s->buf and tokenize it. */
static int encode_raw(struct session *s, const char *text, size_t len, bool prefix) {
    uint32_t n = 0;
    if (prefix) { memcpy(s->buf, SPACE_ESC, 3); n = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(s->buf + n, SPACE_ESC, 3); n += 3; }
        else s->buf[n++] = text[i];
    }
    return spm_fragment(s, n);
}

/* A piece of the input: raw text or an already-decided token. */
struct frag {
    size_t off, len;
    int32_t id;                     /* -1 for raw text */
};

/* llama.cpp's tokenizer_st_partition with parse_special = false: user-defined
 * tokens are cut out of the raw text, longest first, before SPM runs. Each
 * pass replaces the fragment list; *nf grows by at most 2 per match. */
static int split_user_defined(const struct tokenizer *t, const char *text, struct frag **pf,
                              size_t *nf, struct sp_err *err) {
    for (int32_t u = 0; u < t->n_user_defined; u++) {
        int32_t id = t->user_defined[u];
        const char *needle = tok_str(t, id);
        size_t nl = t->tok[id].text_len;
        size_t cap = *nf, n = 0;
        struct frag *out = malloc(cap * sizeof(*out));
        if (!out) return sp_fail(err, SP_ENOMEM, "tokenizer: out of memory");
        for (size_t i = 0; i < *nf; i++) {
            struct frag f = (*pf)[i];
            while (true) {
                const char *m = f.id < 0 && f.len >= nl ? memmem(text + f.off, f.len, needle, nl) : NULL;
                size_t need = n + (m ? 3 : 1);
                if (need > cap) {
                    cap = 2 * need;
                    struct frag *o2 = realloc(out, cap * sizeof(*out));
                    if (!o2) { free(out); return sp_fail(err, SP_ENOMEM, "tokenizer: out of memory"); }
                    out = o2;
                }
                if (!m) { if (f.len) out[n++] = f; break; }
                size_t at = (size_t)(m - text);
                if (at > f.off) out[n++] = (struct frag){ f.off, at - f.off, -1 };
                out[n++] = (struct frag){ at, nl, id };
                f.len -= at + nl - f.off;
                f.off = at + nl;
            }
        }
        free(*pf);
        *pf = out;
        *nf = n;
    }
    return SP_OK;
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
               int32_t *ids, int cap, struct sp_err *err) {
    if (!t || (!text && len) || cap < 0 || (!ids && cap > 0))
        return sp_fail(err, SP_EINVAL, "tok_encode: bad arguments (text %p, len %zu, ids %p, cap %d)",
                       (const void *)text, len, (void *)ids, cap);
    /* Escaped text is at most 3 bytes per input byte plus the prefix, and
     * every token covers at least one escaped byte: keep counts in int. */
    if (len > (size_t)(INT_MAX - 16) / 3)
        return sp_fail(err, SP_ERANGE, "tok_encode: text of %zu bytes is too long", len);

    struct session s = { .t = t, .ids = ids, .cap = cap, .err = err };
    if (add_bos) {
        if (t->bos < 0) return sp_fail(err, SP_EINVAL, "tok_encode: BOS asked for but the vocab has none");
        emit(&s, t->bos);
    }
    if (len == 0) return s.n_out;             /* llama.cpp: no fragment, no prefix space */

    int rc = SP_OK;
    size_t nf = 1;
    struct frag *frags = malloc(sizeof(*frags));
    size_t nbuf = 3 * len + 3;
    s.buf = malloc(nbuf);
    s.sym = malloc(nbuf * sizeof(*s.sym));
    if (!frags || !s.buf || !s.sym) { rc = sp_fail(err, SP_ENOMEM, "tok_encode: out of memory for %zu bytes", len); goto done; }
    frags[0] = (struct frag){ 0, len, -1 };
    if (t->n_user_defined && (rc = split_user_defined(t, text, &frags, &nf, err))) goto done;

    bool prev_special = true;                 /* the first fragment gets the space prefix */
    for (size_t i = 0; i < nf; i++) {
        if (frags[i].id >= 0) { emit(&s, frags[i].id); prev_special = true; continue; }
        rc = encode_raw(&s, text + frags[i].off, frags[i].len, t->add_space_prefix && prev_special);
        if (rc) goto done;
        prev_special = false;
    }
done:
    free(frags);
    free(s.buf);
    free(s.sym);
    free(s.heap);
    return rc ? rc : s.n_out;
}
