/* test_tokenizer.c - the SPM tokenizer against llama.cpp's own test vectors
 * (testdata/tokenizer/ggml-vocab-llama-spm.gguf.{inp,out}), the bundled models'
 * vocabs, and small hand-built GGUF vocabs for the edge and hostile cases. */
#include "tests/unit/check.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

/* ---- helpers ----------------------------------------------------------- */

static char *path_of(const char *rel) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 1024, "%s/%s", check_shared_dir(), rel);
    return p;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = '\0'; *len = (size_t)n; }
    return b;
}

static struct tokenizer *open_tok(const char *path, struct gguf **pg) {
    struct sp_err err = {0};
    *pg = gguf_open(path, &err);
    if (!*pg) { fprintf(stderr, "  cannot open %s: %s\n", path, err.msg); return NULL; }
    struct tokenizer *t = tok_create(*pg, &err);
    if (!t) fprintf(stderr, "  tok_create %s: %s\n", path, err.msg);
    return t;
}

/* Encode into a malloc'd array (exact size, via the count-then-fill protocol). */
static int32_t *encode(const struct tokenizer *t, const char *s, size_t len, bool bos, int *n) {
    struct sp_err err = {0};
    *n = tok_encode(t, s, len, bos, NULL, 0, &err);
    if (*n < 0) { fprintf(stderr, "  tok_encode: %s\n", err.msg); return NULL; }
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof(*ids));
    int n2 = tok_encode(t, s, len, bos, ids, *n, &err);
    if (n2 != *n) { free(ids); *n = -1; return NULL; }
    return ids;
}

/* Concatenated pieces, like llama.cpp's detokenize with remove_special = false:
 * the first token loses one leading space when the vocab adds a space prefix. */
static char *decode(const struct tokenizer *t, const int32_t *ids, int n, bool strip_prefix, size_t *len) {
    size_t cap = 16, m = 0;
    char *out = malloc(cap);
    for (int i = 0; i < n; i++) {
        size_t pl;
        const char *p = tok_piece(t, ids[i], &pl);
        if (!p) continue;
        if (strip_prefix && i == 0 && pl && p[0] == ' ') { p++; pl--; }
        while (m + pl + 1 > cap) { cap *= 2; out = realloc(out, cap); }
        memcpy(out + m, p, pl);
        m += pl;
    }
    out[m] = '\0';
    *len = m;
    return out;
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if (((uint8_t)s[i + j] >> 6) != 2) return false;
        i += k;
    }
    return true;
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "    %s:", label);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

/* ---- llama.cpp's test vectors ------------------------------------------ */

static void test_llama_spm_vectors(void) {
    struct gguf *g;
    struct tokenizer *t = open_tok(path_of("testdata/tokenizer/ggml-vocab-llama-spm.gguf"), &g);
    CHECK(t != NULL);
    if (!t) { gguf_close(g); return; }
    size_t ni, no;
    char *inp = read_all(path_of("testdata/tokenizer/ggml-vocab-llama-spm.gguf.inp"), &ni);
    char *out = read_all(path_of("testdata/tokenizer/ggml-vocab-llama-spm.gguf.out"), &no);
    CHECK(inp && out);
    if (!inp || !out) { free(inp); free(out); tok_free(t); gguf_close(g); return; }

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t nsep = sizeof(sep) - 1;
    char *p = inp, *line = out;
    int n_cases = 0, n_roundtrip = 0;
    for (char *e; (e = memmem(p, ni - (size_t)(p - inp), sep, nsep)) != NULL; p = e + nsep) {
        size_t len = (size_t)(e - p);
        char *eol = strchr(line, '\n');
        CHECK(eol != NULL);
        if (!eol) break;
        *eol = '\0';
        int32_t want[512];
        int nw = 0;
        for (char *q = line, *end; nw < 512; q = end) {
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int32_t)v;
        }
        line = eol + 1;

        int n;
        int32_t *got = encode(t, p, len, false, &n);
        bool same = got && n == nw && memcmp(got, want, (size_t)nw * sizeof(int32_t)) == 0;
        if (!same) {
            fprintf(stderr, "  case %d \"%.*s\":\n", n_cases, (int)len, p);
            print_ids("want", want, nw);
            if (got) print_ids("got ", got, n);
        }
        CHECK(same);

        /* SPM round trip: pieces give back the text, minus the prefix space. */
        if (got && valid_utf8(p, len)) {
            size_t dl;
            char *d = decode(t, got, n, true, &dl);
            bool rt = dl == len && memcmp(d, p, len) == 0;
            if (!rt) fprintf(stderr, "  round trip case %d: \"%.*s\" -> \"%s\"\n", n_cases, (int)len, p, d);
            CHECK(rt);
            free(d);
            n_roundtrip++;
        }
        free(got);
        n_cases++;
    }
    CHECK_EQ(n_cases, 46);
    CHECK(n_roundtrip >= 40);
    free(inp);
    free(out);
    tok_free(t);
    gguf_close(g);
}

static void test_llama_spm_api(void) {
    struct gguf *g;
    struct tokenizer *t = open_tok(path_of("testdata/tokenizer/ggml-vocab-llama-spm.gguf"), &g);
    CHECK(t != NULL);
    if (!t) { gguf_close(g); return; }
    CHECK_EQ(tok_n_vocab(t), 32000);
    CHECK_EQ(tok_bos(t), 1);
    CHECK_EQ(tok_eos(t), 2);
    CHECK(tok_add_bos(t));
    CHECK(tok_is_eog(t, 2));
    CHECK(!tok_is_eog(t, 1));
    CHECK(!tok_is_eog(t, -1));
    CHECK(!tok_is_eog(t, 32000));

    size_t len;
    const char *s = tok_piece(t, 1, &len);            /* <s>: control -> nothing */
    CHECK(s != NULL);
    CHECK_EQ(len, 0);
    s = tok_piece(t, 0, &len);                        /* <unk>: unknown -> nothing */
    CHECK_EQ(len, 0);
    s = tok_piece(t, 13, &len);                       /* <0x0A> */
    CHECK(len == 1 && s[0] == '\n');
    s = tok_piece(t, 3 + 0xff, &len);                 /* <0xFF> */
    CHECK(len == 1 && (uint8_t)s[0] == 0xff);
    s = tok_piece(t, 29871, &len);                    /* ▁ */
    CHECK(len == 1 && s[0] == ' ');
    s = tok_piece(t, 9038, &len);                     /* ▁Once */
    CHECK(len == 5 && memcmp(s, " Once", 5) == 0);
    s = tok_text(t, 9038, &len);
    CHECK(len == 7 && memcmp(s, "\xe2\x96\x81Once", 7) == 0);
    CHECK(tok_piece(t, -1, &len) == NULL);
    CHECK(tok_piece(t, 32000, &len) == NULL);
    CHECK(tok_text(t, 32000, &len) == NULL);

    /* BOS when asked, and nothing but BOS for empty text. */
    int n;
    int32_t *ids = encode(t, "Hello world", 11, true, &n);
    CHECK_EQ(n, 3);
    if (ids && n == 3) { CHECK_EQ(ids[0], 1); CHECK_EQ(ids[1], 15043); CHECK_EQ(ids[2], 3186); }
    free(ids);
    ids = encode(t, "", 0, true, &n);
    CHECK_EQ(n, 1);
    if (ids && n == 1) CHECK_EQ(ids[0], 1);
    free(ids);
    struct sp_err err = {0};
    CHECK_EQ(tok_encode(t, "", 0, false, NULL, 0, &err), 0);
    CHECK_EQ(tok_encode(t, NULL, 0, false, NULL, 0, &err), 0);
    CHECK_EQ(tok_encode(t, NULL, 3, false, NULL, 0, &err), SP_EINVAL);
    CHECK_EQ(tok_encode(t, "a", 1, false, NULL, -1, &err), SP_EINVAL);

    /* A short buffer gets the first ids and the full count. */
    int32_t small[3] = { -7, -7, -7 };
    CHECK_EQ(tok_encode(t, "Hello world", 11, true, small, 2, &err), 3);
    CHECK_EQ(small[0], 1);
    CHECK_EQ(small[1], 15043);
    CHECK_EQ(small[2], -7);

    /* Invalid UTF-8 goes through byte fallback. As in llama.cpp, a symbol is
     * as long as its lead byte says (clamped to the text), so a bad lead byte
     * swallows what follows, even part of an escaped space; then those bytes
     * come back as the raw U+2581 bytes, not as a space. */
    static const char bad[] = "\xff\xfe a\x80z \xe0\xa4 \xf0\x9f\x98 end\xc3";
    static const int32_t bad_ids[] = { 29871, 258, 257, 229, 153, 132, 29874, 131, 29920, 29871, 227,
                                       167, 229, 153, 132, 243, 162, 155, 229, 153, 132, 355, 198 };
    ids = encode(t, bad, sizeof(bad) - 1, false, &n);
    CHECK_EQ(n, (int)(sizeof(bad_ids) / sizeof(bad_ids[0])));
    CHECK(ids && n == (int)(sizeof(bad_ids) / sizeof(bad_ids[0])) && memcmp(ids, bad_ids, sizeof(bad_ids)) == 0);
    free(ids);
    /* Stray continuation bytes and a truncated tail are single symbols and
     * round-trip byte for byte. */
    static const char bad2[] = "a\x80z \xbf\xbf end\xc3";
    ids = encode(t, bad2, sizeof(bad2) - 1, false, &n);
    CHECK(ids != NULL && n > 0);
    if (ids) {
        size_t dl;
        char *d = decode(t, ids, n, true, &dl);
        CHECK(dl == sizeof(bad2) - 1 && memcmp(d, bad2, dl) == 0);
        free(d);
    }
    free(ids);
    ids = encode(t, "\xff", 1, false, &n);
    CHECK_EQ(n, 2);
    if (ids && n == 2) { CHECK_EQ(ids[0], 29871); CHECK_EQ(ids[1], 3 + 0xff); }
    free(ids);

    /* Every byte value alone, and a NUL inside the text. */
    for (int c = 0; c < 256; c++) {
        char b = (char)c;
        ids = encode(t, &b, 1, false, &n);
        CHECK(ids != NULL && n >= 1 && n <= 2);
        free(ids);
    }
    ids = encode(t, "a\0b", 3, false, &n);
    CHECK(ids != NULL && n >= 3);
    free(ids);

    tok_free(t);
    gguf_close(g);
}

/* Long input: must stay near-linear (a heap, a hash) and agree with the
 * sum of its parts where spaces separate identical words. */
static void test_long_input(void) {
    struct gguf *g;
    struct tokenizer *t = open_tok(path_of("testdata/tokenizer/ggml-vocab-llama-spm.gguf"), &g);
    CHECK(t != NULL);
    if (!t) { gguf_close(g); return; }
    static const char word[] = "Once upon a time, there was a little girl named Lily. ";
    const size_t nw = sizeof(word) - 1, reps = 4000;
    char *text = malloc(nw * reps);
    for (size_t i = 0; i < reps; i++) memcpy(text + i * nw, word, nw);
    int n1, n;
    int32_t *one = encode(t, word, nw - 1, false, &n1);   /* without the trailing space */
    clock_t c0 = clock();
    int32_t *ids = encode(t, text, nw * reps, false, &n);
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECK(ids != NULL && n > (int)reps);
    CHECK(secs < 5.0);
    /* Runs of the same text tokenize the same way each time after the first. */
    if (ids && one) CHECK(memcmp(ids, one, (size_t)(n1 - 1) * sizeof(int32_t)) == 0);
    /* A run of many spaces and a long run of a single CJK character. */
    memset(text, ' ', 100000);
    free(ids);
    ids = encode(t, text, 100000, false, &n);
    CHECK(ids != NULL && n > 0);
    free(ids);
    for (size_t i = 0; i + 3 <= 150000; i += 3) memcpy(text + i, "\xe7\x95\x8c", 3);
    ids = encode(t, text, 150000, false, &n);
    CHECK(ids != NULL && n > 0);
    free(ids);
    free(one);
    free(text);
    tok_free(t);
    gguf_close(g);
}

static void check_once_upon(const char *rel, const int32_t *want, int nw, int32_t n_vocab) {
    struct gguf *g;
    struct tokenizer *t = open_tok(path_of(rel), &g);
    CHECK(t != NULL);
    if (!t) { gguf_close(g); return; }
    CHECK_EQ(tok_n_vocab(t), n_vocab);
    int n;
    int32_t *ids = encode(t, "Once upon a time", 16, tok_add_bos(t), &n);
    bool same = ids && n == nw && memcmp(ids, want, (size_t)nw * sizeof(int32_t)) == 0;
    if (!same && ids) { fprintf(stderr, "  %s:\n", rel); print_ids("want", want, nw); print_ids("got ", ids, n); }
    CHECK(same);
    if (ids) {
        size_t dl;
        char *d = decode(t, ids + 1, n - 1, true, &dl);   /* after BOS */
        CHECK_STR(d, "Once upon a time");
        free(d);
    }
    free(ids);
    tok_free(t);
    gguf_close(g);
}

static void test_model_vocabs(void) {
    static const int32_t stories[] = { 1, 403, 407, 261, 378 };
    static const int32_t synth[] = { 1, 9038, 2501, 263, 931 };
    check_once_upon("models/stories260K-f32.gguf", stories, 5, 512);
    check_once_upon("models/synth15M-q8_0.gguf", synth, 5, 32000);
}

static void test_gpt2_unsupported(void) {
    struct sp_err err = {0};
    struct gguf *g = gguf_open(path_of("testdata/tokenizer/ggml-vocab-gpt-2.gguf"), &err);
    CHECK(g != NULL);
    if (!g) return;
    struct tokenizer *t = tok_create(g, &err);
    CHECK(t == NULL);
    CHECK_EQ(err.code, SP_EUNSUP);
    CHECK(strstr(err.msg, "gpt2") != NULL);
    tok_free(t);
    gguf_close(g);
}

/* ---- hand-built vocabs ------------------------------------------------- */

struct buf { char *p; size_t n, cap; };

static void put(struct buf *b, const void *d, size_t n) {
    while (b->n + n > b->cap) { b->cap = b->cap ? 2 * b->cap : 256; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(struct buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }

/* A GGUF v3 with no tensors, built key by key. */
struct gg { struct buf kv; uint64_t n_kv; };

static void kv_str(struct gg *g, const char *k, const char *v) {
    put_str(&g->kv, k); put_u32(&g->kv, GGUF_TYPE_STRING); put_str(&g->kv, v); g->n_kv++;
}
static void kv_u32(struct gg *g, const char *k, uint32_t v) {
    put_str(&g->kv, k); put_u32(&g->kv, GGUF_TYPE_UINT32); put_u32(&g->kv, v); g->n_kv++;
}
static void kv_bool(struct gg *g, const char *k, bool v) {
    uint8_t b = v;
    put_str(&g->kv, k); put_u32(&g->kv, GGUF_TYPE_BOOL); put(&g->kv, &b, 1); g->n_kv++;
}
static void kv_strs(struct gg *g, const char *k, const char *const *v, int n) {
    put_str(&g->kv, k); put_u32(&g->kv, GGUF_TYPE_ARRAY); put_u32(&g->kv, GGUF_TYPE_STRING);
    put_u64(&g->kv, (uint64_t)n);
    for (int i = 0; i < n; i++) put_str(&g->kv, v[i]);
    g->n_kv++;
}
static void kv_arr(struct gg *g, const char *k, enum gguf_type et, const void *v, int n) {
    put_str(&g->kv, k); put_u32(&g->kv, GGUF_TYPE_ARRAY); put_u32(&g->kv, et);
    put_u64(&g->kv, (uint64_t)n); put(&g->kv, v, 4 * (size_t)n);
    g->n_kv++;
}

/* Write, open, create; returns the tokenizer or NULL with *err filled. */
static struct tokenizer *build(struct gg *gb, struct gguf **pg, struct sp_err *err) {
    struct buf f = {0};
    put_u32(&f, 0x46554747u);                         /* "GGUF" */
    put_u32(&f, 3);
    put_u64(&f, 0);
    put_u64(&f, gb->n_kv);
    put(&f, gb->kv.p, gb->kv.n);
    char path[] = "/tmp/sparrow_tok_XXXXXX";
    int fd = mkstemp(path);
    bool ok = fd >= 0 && write(fd, f.p, f.n) == (ssize_t)f.n;
    if (fd >= 0) close(fd);
    free(f.p);
    free(gb->kv.p);
    memset(gb, 0, sizeof(*gb));
    *pg = ok ? gguf_open(path, err) : NULL;
    unlink(path);
    if (!*pg) { fprintf(stderr, "  gguf_open: %s\n", err->msg); return NULL; }
    return tok_create(*pg, err);
}

/* A tiny SPM vocab: unk, bos, eos, a few bytes, letters and merges. */
static const char *const tiny_tokens[] = {
    "<unk>", "<s>", "</s>", "<0x0A>", "<0x41>",
    "\xe2\x96\x81", "a", "b", "c", "ab", "\xe2\x96\x81" "ab", "abc", "<tag>", "<|im_end|>",
};
enum { TINY_N = sizeof(tiny_tokens) / sizeof(tiny_tokens[0]) };
static const float tiny_scores[TINY_N] = { 0, 0, 0, 0, 0, -1, -2, -2, -2, -3, -4, -5, 0, 0 };
static const int32_t tiny_types[TINY_N] = { 2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 4, 3 };

static void tiny(struct gg *g) {
    kv_str(g, "tokenizer.ggml.model", "llama");
    kv_strs(g, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    kv_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, tiny_scores, TINY_N);
    kv_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, tiny_types, TINY_N);
}

static void expect_ids(const struct tokenizer *t, const char *s, bool bos, const int32_t *want, int nw) {
    int n;
    int32_t *ids = encode(t, s, strlen(s), bos, &n);
    bool same = ids && n == nw && memcmp(ids, want, (size_t)nw * sizeof(int32_t)) == 0;
    if (!same) {
        fprintf(stderr, "  \"%s\":\n", s);
        print_ids("want", want, nw);
        if (ids) print_ids("got ", ids, n);
    }
    CHECK(same);
    free(ids);
}

static void test_tiny_vocab(void) {
    struct gg gb = {0};
    struct gguf *g;
    struct sp_err err = {0};
    tiny(&gb);
    struct tokenizer *t = build(&gb, &g, &err);
    CHECK(t != NULL);
    if (!t) { fprintf(stderr, "  %s\n", err.msg); gguf_close(g); return; }
    /* Defaults for absent keys: BOS 1, EOS 2, add BOS. */
    CHECK_EQ(tok_bos(t), 1);
    CHECK_EQ(tok_eos(t), 2);
    CHECK(tok_add_bos(t));
    CHECK(tok_is_eog(t, 2));
    CHECK(tok_is_eog(t, 13));                         /* <|im_end|> by name */

    /* "ab" (score -3) merges first, then "▁ab" (-4) beats "abc" (-5). */
    expect_ids(t, "ab", false, (const int32_t[]){ 10 }, 1);
    expect_ids(t, "abc", false, (const int32_t[]){ 10, 8 }, 2);
    /* Letters with no token: bytes, else unk (no <0x7A> and no "z"). */
    expect_ids(t, "A\nz", true, (const int32_t[]){ 1, 5, 4, 3, 0 }, 5);
    /* User-defined tokens are split out first; text after one gets a
     * space prefix again (llama.cpp's is_prev_special). */
    expect_ids(t, "a<tag>b", false, (const int32_t[]){ 5, 6, 12, 5, 7 }, 5);
    expect_ids(t, "<tag><tag>", false, (const int32_t[]){ 12, 12 }, 2);
    /* Control tokens are not parsed from text. */
    int n;
    int32_t *ids = encode(t, "<s>", 3, false, &n);
    CHECK(ids != NULL && n > 1);
    free(ids);

    size_t len;
    const char *p = tok_piece(t, 12, &len);           /* user-defined: verbatim */
    CHECK(len == 5 && memcmp(p, "<tag>", 5) == 0);
    p = tok_piece(t, 13, &len);                       /* forced control: nothing */
    CHECK_EQ(len, 0);
    p = tok_piece(t, 10, &len);
    CHECK(len == 3 && memcmp(p, " ab", 3) == 0);
    tok_free(t);
    gguf_close(g);

    /* add_space_prefix = false, explicit ids and add_bos = false. */
    tiny(&gb);
    kv_bool(&gb, "tokenizer.ggml.add_space_prefix", false);
    kv_bool(&gb, "tokenizer.ggml.add_bos_token", false);
    kv_u32(&gb, "tokenizer.ggml.bos_token_id", 2);
    kv_u32(&gb, "tokenizer.ggml.eos_token_id", 1);
    t = build(&gb, &g, &err);
    CHECK(t != NULL);
    if (t) {
        CHECK(!tok_add_bos(t));
        CHECK_EQ(tok_bos(t), 2);
        CHECK(tok_is_eog(t, 1));
        expect_ids(t, "ab", true, (const int32_t[]){ 2, 9 }, 2);
        expect_ids(t, "a b", false, (const int32_t[]){ 6, 5, 7 }, 3);
    }
    tok_free(t);
    gguf_close(g);
}

/* Each hostile vocab must give a one-line error, never a crash. */
static void expect_fail(struct gg *gb, int code, const char *needle) {
    struct gguf *g;
    struct sp_err err = {0};
    struct tokenizer *t = build(gb, &g, &err);
    CHECK(g != NULL);
    CHECK(t == NULL);
    CHECK_EQ(err.code, code);
    if (needle && !strstr(err.msg, needle)) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err.msg, needle);
    CHECK(needle == NULL || strstr(err.msg, needle) != NULL);
    CHECK(strchr(err.msg, '\n') == NULL);
    tok_free(t);
    gguf_close(g);
}

static void test_hostile_vocabs(void) {
    struct gg gb = {0};
    static const float f2[2] = { 0, 0 };
    static const int32_t i2[2] = { 1, 1 };

    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    expect_fail(&gb, SP_EINVAL, "tokenizer.ggml.model");      /* no model key */

    kv_str(&gb, "tokenizer.ggml.model", "bert");
    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    expect_fail(&gb, SP_EUNSUP, "bert");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    expect_fail(&gb, SP_EINVAL, "tokenizer.ggml.tokens");     /* no tokens */

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, 0);
    expect_fail(&gb, SP_EFORMAT, "0 tokens");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_arr(&gb, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, i2, 2);
    expect_fail(&gb, SP_EFORMAT, "tokenizer.ggml.tokens");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_u32(&gb, "tokenizer.ggml.tokens", 5);
    expect_fail(&gb, SP_EFORMAT, "tokenizer.ggml.tokens");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    kv_arr(&gb, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, f2, 2);
    expect_fail(&gb, SP_EFORMAT, "tokenizer.ggml.scores");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    kv_arr(&gb, "tokenizer.ggml.token_type", GGUF_TYPE_FLOAT32, tiny_scores, TINY_N);
    expect_fail(&gb, SP_EFORMAT, "tokenizer.ggml.token_type");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    kv_u32(&gb, "tokenizer.ggml.bos_token_id", TINY_N);
    expect_fail(&gb, SP_EFORMAT, "bos_token_id");

    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", tiny_tokens, TINY_N);
    kv_str(&gb, "tokenizer.ggml.add_bos_token", "yes");
    expect_fail(&gb, SP_EFORMAT, "add_bos_token");

    static const char *const dup[] = { "<unk>", "a", "b", "a" };
    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", dup, 4);
    expect_fail(&gb, SP_EFORMAT, "tokens 1 and 3");

    /* Odd but loadable: empty token text, junk byte tokens, bad type codes,
     * NaN scores, a vocab of one token (no BOS/EOS by default). */
    static const char *const odd[] = { "<unk>", "", "<0x", "<0xZZ>", "x", "xx" };
    static const int32_t odd_types[6] = { 2, 1, 6, 6, 99, -5 };
    const float nan = NAN;
    const float odd_scores[6] = { 0, nan, nan, 0, nan, nan };
    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", odd, 6);
    kv_arr(&gb, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, odd_types, 6);
    kv_arr(&gb, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, odd_scores, 6);
    struct gguf *g;
    struct sp_err err = {0};
    struct tokenizer *t = build(&gb, &g, &err);
    CHECK(t != NULL);
    if (t) {
        size_t len;
        const char *s = tok_text(t, 1, &len);
        CHECK(s && len == 9 && memcmp(s, "[EMPTY_1]", 9) == 0);
        tok_piece(t, 2, &len);
        CHECK_EQ(len, 1);
        tok_piece(t, 4, &len);                        /* undefined type: nothing */
        CHECK_EQ(len, 0);
        int n;
        int32_t *ids = encode(t, "xxx yy \xff", 8, false, &n);
        CHECK(ids != NULL && n > 0);
        free(ids);
        /* BOS 1 exists ("" became [EMPTY_1]); "▁" has no token and no byte
         * tokens, so its 3 bytes become unk. */
        CHECK_EQ(tok_encode(t, "x", 1, true, NULL, 0, &err), 1 + 3 + 1);
    }
    tok_free(t);
    gguf_close(g);

    static const char *const one[] = { "x" };
    kv_str(&gb, "tokenizer.ggml.model", "llama");
    kv_strs(&gb, "tokenizer.ggml.tokens", one, 1);
    t = build(&gb, &g, &err);
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ(tok_bos(t), -1);
        CHECK_EQ(tok_eos(t), -1);
        CHECK_EQ(tok_encode(t, "x", 1, true, NULL, 0, &err), SP_EINVAL);
        /* "▁" has no token, no <0xE2> byte token, unk 0 is "x". */
        int n;
        int32_t *ids = encode(t, "x", 1, false, &n);
        CHECK_EQ(n, 4);
        free(ids);
    }
    tok_free(t);
    gguf_close(g);
}

int main(void) {
    RUN(test_llama_spm_vectors);
    RUN(test_llama_spm_api);
    RUN(test_long_input);
    RUN(test_model_vocabs);
    RUN(test_gpt2_unsupported);
    RUN(test_tiny_vocab);
    RUN(test_hostile_vocabs);
    return check_report();
}
