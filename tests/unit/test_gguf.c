/* test_gguf.c - the GGUF reader (engine/gguf.c) and model_load (engine/model.c).
 *
 * 1. The shipped models and vocab-only files open, with the keys, tensors and
 *    shapes we know they hold; model_load accepts the models and refuses the
 *    vocab-only files with a message naming why.
 * 2. Truncated copies (every length through the header, a spread through the
 *    data) never open and never crash.
 * 3. Deterministic single-byte corruptions either open with every tensor inside
 *    the file or fail with a one-line message; model_load never crashes.
 * 4. Hand-built hostile headers give SP_EFORMAT with a message naming the
 *    problem; a valid hand-built file exercises the typed getters.
 * 5. model_load on hand-built llama files: missing tensor, wrong shape, a type
 *    the table knows but this build cannot compute.
 *
 * Temp files are mkstemp()ed under /tmp and removed. Runs from the repository
 * root (check_shared_dir() is ../shared unless SPARROW_SHARED is set). */
#include "engine/gguf.h"
#include "engine/model.h"
#include "kernels/quant.h"
#include "tests/unit/check.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ helpers */

static char *shared_path(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", check_shared_dir(), rel);
    return buf;
}

static uint8_t *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "  cannot read %s\n", path); return NULL; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    *size = (size_t)n;
    return p;
}

/* A new temp file holding buf[0..n); path in tmpl (>= 32 bytes). Returns the fd. */
static int write_tmp(char *tmpl, const void *buf, size_t n) {
    strcpy(tmpl, "/tmp/test_gguf_XXXXXX");
    int fd = mkstemp(tmpl);
    if (fd < 0) { perror("mkstemp"); exit(2); }
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0) { perror("write"); exit(2); }
        done += (size_t)w;
    }
    return fd;
}

/* A failure record is one non-empty line. */
static bool err_ok(const struct sp_err *e) {
    return e->code != SP_OK && e->msg[0] != '\0' && strchr(e->msg, '\n') == NULL &&
           strlen(e->msg) < sizeof(e->msg);
}

static bool contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Start of the mapping, recovered through the API: key 0's name sits right
 * after the 24-byte header and its 8-byte length (tensor 0's name if no keys). */
static const uint8_t *map_base(const struct gguf *g) {
    if (gguf_n_kv(g) > 0) return (const uint8_t *)gguf_key_name(g, 0).ptr - 32;
    if (gguf_n_tensors(g) > 0) return (const uint8_t *)gguf_tensor_at(g, 0)->name.ptr - 32;
    return NULL;
}

static bool in_file(const uint8_t *base, size_t size, const void *p, uint64_t n) {
    const uint8_t *q = p;
    return q >= base && (size_t)(q - base) <= size && n <= size - (size_t)(q - base);
}

/* Every tensor and key of an open file lies inside the file whose bytes are
 * file[0..size): data pointers, byte counts consistent with shape and type,
 * and the bytes seen through the mapping equal the file's. Returns the end of
 * the furthest tensor data (file offset). */
static size_t check_layout(const struct gguf *g, const uint8_t *file, size_t size) {
    const uint8_t *base = map_base(g);
    size_t max_end = 0;
    if (!base) return 0;
    for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
        struct gguf_str k = gguf_key_name(g, (int64_t)i);
        CHECK(k.len > 0 && in_file(base, size, k.ptr, k.len));
    }
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        CHECK(t != NULL);
        if (!t) return max_end;
        CHECK(t->name.len > 0 && in_file(base, size, t->name.ptr, t->name.len));
        CHECK(t->n_dims >= 1 && t->n_dims <= 4);
        const struct qtype_info *qi = qtype_get(t->type);
        CHECK(qi != NULL);
        bool inside = in_file(base, size, t->data, t->n_bytes);
        CHECK(inside);
        if (!qi || !inside) continue;
        uint64_t want = qtype_row_bytes(t->type, t->ne[0]);
        for (int d = 1; d < 4; d++) want *= (uint64_t)t->ne[d];
        CHECK(t->ne[0] % qi->block_elems == 0);
        CHECK_EQ(t->n_bytes, want);
        size_t off = (size_t)((const uint8_t *)t->data - base);
        CHECK(memcmp(t->data, file + off, t->n_bytes) == 0);
        /* every tensor's data is data_start + its offset */
        const uint8_t *ds = (const uint8_t *)t->data - t->offset;
        const uint8_t *ds0 = (const uint8_t *)gguf_tensor_at(g, 0)->data - gguf_tensor_at(g, 0)->offset;
        CHECK(ds == ds0);
        if (off + t->n_bytes > max_end) max_end = off + t->n_bytes;
    }
    /* string arrays: every element inside the file */
    if (gguf_find_key(g, "tokenizer.ggml.tokens") >= 0) {
        enum gguf_type et; uint64_t n; const void *d; struct sp_err e = {0};
        if (gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &d, &e) == SP_OK && et == GGUF_TYPE_STRING)
            for (uint64_t i = 0; i < n; i++) {
                struct gguf_str s = gguf_get_arr_str(g, "tokenizer.ggml.tokens", i);
                if (s.len) CHECK(in_file(base, size, s.ptr, s.len));
            }
    }
    return max_end;
}

/* xorshift64* - deterministic corruption positions and bytes. */
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) {
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

/* ------------------------------------------------------------ a tiny GGUF builder */

struct buf { uint8_t *p; size_t n, cap; };

static void put(struct buf *b, const void *d, size_t n) {
    if (n == 0) return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) { perror("realloc"); exit(2); }
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(struct buf *b, float v) { put(b, &v, 4); }
static void put_str(struct buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_to(struct buf *b, size_t align) { while (b->n % align) put_u8(b, 0); }
static void buf_free(struct buf *b) { free(b->p); *b = (struct buf){0}; }

static void header(struct buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void kv_head(struct buf *b, const char *key, uint32_t type) { put_str(b, key); put_u32(b, type); }
static void kv_u32(struct buf *b, const char *key, uint32_t v) { kv_head(b, key, GGUF_TYPE_UINT32); put_u32(b, v); }
static void kv_str(struct buf *b, const char *key, const char *v) { kv_head(b, key, GGUF_TYPE_STRING); put_str(b, v); }
static void kv_f32(struct buf *b, const char *key, float v) { kv_head(b, key, GGUF_TYPE_FLOAT32); put_f32(b, v); }

static void tinfo(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims && d < 5; d++) put_u64(b, ne[d]);   /* hostile n_dims: at most 5 */
    put_u32(b, type);
    put_u64(b, offset);
}

/* One file with a single tensor: `name` n_dims x ne of type at offset, an
 * optional general.alignment of the given value type (type 99 = none),
 * followed by data_bytes bytes of data after padding to `pad`. */
static void one_tensor(struct buf *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                       uint32_t align_type, uint32_t align_val, size_t pad, size_t data_bytes) {
    header(b, 3, 1, align_type == 99 ? 1 : 2);
    kv_str(b, "general.architecture", "llama");
    if (align_type != 99) {
        kv_head(b, "general.alignment", align_type);
        if (align_type == GGUF_TYPE_UINT8) put_u8(b, (uint8_t)align_val);
        else put_u32(b, align_val);
    }
    tinfo(b, "weird.weight", n_dims, ne, type, offset);
    pad_to(b, pad);
    for (size_t i = 0; i < data_bytes; i++) put_u8(b, (uint8_t)i);
}

/* Write b to a temp file and gguf_open it (the file is removed at once: the
 * mapping keeps the data). */
static struct gguf *open_buf(const struct buf *b, struct sp_err *e) {
    char path[64];
    int fd = write_tmp(path, b->p, b->n);
    close(fd);
    struct gguf *g = gguf_open(path, e);
    unlink(path);
    return g;
}

static struct model *load_buf(const struct buf *b, struct sp_err *e) {
    char path[64];
    int fd = write_tmp(path, b->p, b->n);
    close(fd);
    struct model *m = model_load(path, e);
    unlink(path);
    return m;
}

/* gguf_open(b) must fail with `code` and a one-line message containing every
 * needle (NULL-terminated list); model_load must fail the same way. */
static void expect_fail_(const char *label, struct buf *b, int code, const char *const *needles) {
    int before = check_failed_now;
    struct sp_err e = {0};
    struct gguf *g = open_buf(b, &e);
    CHECK(g == NULL);
    gguf_close(g);
    CHECK_EQ(e.code, code);
    CHECK(err_ok(&e));
    for (const char *const *n = needles; *n; n++) CHECK(contains(e.msg, *n));
    struct sp_err e2 = {0};
    struct model *m = load_buf(b, &e2);
    CHECK(m == NULL);
    model_free(m);
    CHECK_EQ(e2.code, code);
    CHECK(err_ok(&e2));
    if (check_failed_now != before)
        fprintf(stderr, "    in case '%s': code %s, msg \"%s\"\n", label, sp_code_name(e.code), e.msg);
    buf_free(b);
}
#define EXPECT_FAIL(label, b, code, ...) \
    expect_fail_(label, b, code, (const char *const[]){__VA_ARGS__, NULL})

/* ------------------------------------------------------------ 1. shipped files */

static void test_stories260k_f32(void) {
    char path[512];
    shared_path(path, sizeof path, "models/stories260K-f32.gguf");
    struct sp_err e = {0};
    struct gguf *g = gguf_open(path, &e);
    CHECK(g != NULL);
    if (!g) { fprintf(stderr, "    %s\n", e.msg); return; }
    CHECK_EQ(gguf_version(g), 3);
    CHECK_EQ(gguf_n_tensors(g), 48);
    CHECK_EQ(gguf_n_kv(g), 19);

    struct gguf_str s;
    CHECK_EQ(gguf_get_str(g, "general.architecture", &s, &e), SP_OK);
    CHECK(gguf_str_eq(s, "llama"));
    uint32_t u = 0;
    CHECK_EQ(gguf_get_u32(g, "llama.embedding_length", &u, &e), SP_OK);
    CHECK_EQ(u, 64);
    CHECK_EQ(gguf_get_u32(g, "llama.block_count", &u, &e), SP_OK);
    CHECK_EQ(u, 5);
    CHECK_EQ(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, &e), SP_OK);
    CHECK_EQ(u, 1);
    CHECK_EQ(gguf_get_u32(g, "tokenizer.ggml.seperator_token_id", &u, &e), SP_OK);
    CHECK_EQ(u, UINT32_MAX);
    float f = 0;
    CHECK_EQ(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, &e), SP_OK);
    CHECK_NEAR(f, 1e-5, 1e-9);
    int64_t ki = gguf_find_key(g, "tokenizer.ggml.tokens");
    CHECK(ki >= 0);
    if (ki >= 0) {
        CHECK(gguf_str_eq(gguf_key_name(g, ki), "tokenizer.ggml.tokens"));
        CHECK_EQ(gguf_kv_type(g, ki), GGUF_TYPE_ARRAY);
    }
    CHECK_EQ(gguf_find_key(g, "no.such.key"), -1);

    enum gguf_type et = GGUF_TYPE_COUNT;
    uint64_t n = 0;
    const void *d = (const void *)1;
    CHECK_EQ(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_STRING);
    CHECK_EQ(n, 512);
    CHECK(d == NULL);
    CHECK(gguf_str_eq(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0), "<unk>"));
    CHECK(gguf_str_eq(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1), "<s>"));
    CHECK(gguf_str_eq(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 2), "</s>"));
    CHECK_EQ(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 512).len, 0);
    CHECK_EQ(gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_FLOAT32);
    CHECK_EQ(n, 512);
    CHECK(d != NULL);
    CHECK_EQ(gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_INT32);
    CHECK_EQ(n, 512);
    if (d) { int32_t tt; memcpy(&tt, (const uint8_t *)d + 4, 4); CHECK_EQ(tt, 3); } /* <s> is control */

    const struct gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ(t->n_dims, 2);
        CHECK_EQ(t->ne[0], 64);
        CHECK_EQ(t->ne[1], 512);
        CHECK_EQ(t->ne[2], 1);
        CHECK_EQ(t->ne[3], 1);
        CHECK_EQ(t->type, QTYPE_F32);
        CHECK_EQ(t->offset, 0);
        CHECK_EQ(t->n_bytes, 64 * 512 * 4);
        /* the header ends at 14152; data starts at the next multiple of 32 */
        CHECK(t->data == map_base(g) + 14176);
    }
    t = gguf_find_tensor(g, "output_norm.weight");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 64 && t->ne[1] == 1 && t->offset == 131072);
    CHECK(gguf_find_tensor(g, "blk.4.ffn_up.weight") != NULL);
    CHECK(gguf_find_tensor(g, "blk.5.ffn_up.weight") == NULL);
    CHECK(gguf_tensor_at(g, 47) != NULL);
    CHECK(gguf_tensor_at(g, 48) == NULL);
    size_t size = 0;
    uint8_t *file = slurp(path, &size);
    CHECK(file != NULL);
    if (file) CHECK_EQ(check_layout(g, file, size), size);
    free(file);
    gguf_close(g);

    struct model *m = model_load(path, &e);
    CHECK(m != NULL);
    if (!m) { fprintf(stderr, "    %s\n", e.msg); return; }
    const struct model_shape *sh = model_shape(m);
    CHECK_EQ(sh->n_vocab, 512);
    CHECK_EQ(sh->n_embd, 64);
    CHECK_EQ(sh->n_ff, 172);
    CHECK_EQ(sh->n_layer, 5);
    CHECK_EQ(sh->n_head, 8);
    CHECK_EQ(sh->n_head_kv, 4);
    CHECK_EQ(sh->head_dim, 8);
    CHECK_EQ(sh->n_rot, 8);
    CHECK_EQ(sh->n_ctx_train, 512);
    CHECK_NEAR(sh->rms_eps, 1e-5, 1e-9);
    CHECK_NEAR(sh->rope_freq_base, 10000.0, 0);
    CHECK_STR(model_desc(m), "llama 5L 64d 8h/4kv ff172 vocab512 (f32)");
    const struct gguf *mg = model_gguf(m);
    CHECK(model_tok_embd(m)->data == gguf_find_tensor(mg, "token_embd.weight")->data);
    CHECK(model_output(m)->data == gguf_find_tensor(mg, "output.weight")->data);
    CHECK((const void *)model_output_norm(m) == gguf_find_tensor(mg, "output_norm.weight")->data);
    CHECK(model_layer(m, 4)->w_down.data == gguf_find_tensor(mg, "blk.4.ffn_down.weight")->data);
    CHECK_EQ(model_layer(m, 0)->wk.n_cols, 64);
    CHECK_EQ(model_layer(m, 0)->wk.n_rows, 32);
    CHECK(model_weight_bytes(m) > 0);
    model_free(m);
}

struct shipped { const char *rel; uint64_t n_tensors; int n_vocab, n_embd, n_layer; const char *wq_type; };

static void test_shipped_models(void) {
    static const struct shipped want[] = {
        {"models/stories260K-f32.gguf", 48, 512, 64, 5, "f32"},
        {"models/stories260K-f16.gguf", 48, 512, 64, 5, "f16"},
        {"models/stories260K-q4_k_m.gguf", 48, 512, 64, 5, "q5_0"},
        {"models/synth15M-f16.gguf", 0, 32000, 288, 6, "f16"},
        {"models/synth15M-q8_0.gguf", 0, 32000, 288, 6, "q8_0"},
        {"models/synth15M-q4_0.gguf", 0, 32000, 288, 6, "q4_0"},
        {"models/synth110M-q4_k_m.gguf", 0, 32000, 768, 12, NULL},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int before = check_failed_now;
        char path[512];
        shared_path(path, sizeof path, want[i].rel);
        struct sp_err e = {0};
        struct gguf *g = gguf_open(path, &e);
        CHECK(g != NULL);
        if (g) {
            CHECK_EQ(gguf_version(g), 3);
            struct gguf_str s;
            CHECK_EQ(gguf_get_str(g, "general.architecture", &s, &e), SP_OK);
            CHECK(gguf_str_eq(s, "llama"));
            if (want[i].n_tensors) CHECK_EQ(gguf_n_tensors(g), want[i].n_tensors);
            CHECK_EQ(gguf_n_tensors(g), 3 + 9 * (uint64_t)want[i].n_layer - (gguf_find_tensor(g, "output.weight") ? 0 : 1));
            enum gguf_type et; uint64_t n; const void *d;
            CHECK_EQ(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &d, &e), SP_OK);
            CHECK_EQ(n, (uint64_t)want[i].n_vocab);
            CHECK(gguf_str_eq(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1), "<s>"));
            /* Every tensor inside the mapping (pointer arithmetic only: these are big). */
            const uint8_t *base = map_base(g);
            struct stat st;
            CHECK(stat(path, &st) == 0);
            uint64_t max_end = 0;
            for (uint64_t k = 0; k < gguf_n_tensors(g); k++) {
                const struct gguf_tensor *t = gguf_tensor_at(g, k);
                CHECK(in_file(base, (size_t)st.st_size, t->data, t->n_bytes));
                uint64_t end = (uint64_t)((const uint8_t *)t->data - base) + t->n_bytes;
                if (end > max_end) max_end = end;
            }
            CHECK(max_end <= (uint64_t)st.st_size && max_end + 32 > (uint64_t)st.st_size);
            gguf_close(g);
        }
        struct model *m = model_load(path, &e);
        CHECK(m != NULL);
        if (m) {
            CHECK_EQ(model_shape(m)->n_vocab, want[i].n_vocab);
            CHECK_EQ(model_shape(m)->n_embd, want[i].n_embd);
            CHECK_EQ(model_shape(m)->n_layer, want[i].n_layer);
            if (want[i].wq_type) {
                char tail[32];
                snprintf(tail, sizeof tail, "(%s)", want[i].wq_type);
                CHECK(contains(model_desc(m), tail));
            }
            model_free(m);
        }
        if (check_failed_now != before) fprintf(stderr, "    in %s: %s\n", path, e.msg);
    }
}

static void test_vocab_only(void) {
    char path[512];
    struct sp_err e = {0};
    shared_path(path, sizeof path, "testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    struct gguf *g = gguf_open(path, &e);
    CHECK(g != NULL);
    if (g) {
        CHECK_EQ(gguf_version(g), 3);
        CHECK_EQ(gguf_n_tensors(g), 0);
        CHECK_EQ(gguf_n_kv(g), 22);
        enum gguf_type et; uint64_t n; const void *d;
        CHECK_EQ(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &d, &e), SP_OK);
        CHECK_EQ(et, GGUF_TYPE_STRING);
        CHECK_EQ(n, 32000);
        CHECK(gguf_str_eq(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1), "<s>"));
        bool b = false;
        CHECK_EQ(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &e), SP_OK);
        CHECK(b);
        CHECK_EQ(gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &e), SP_OK);
        CHECK(!b);
        CHECK(gguf_tensor_at(g, 0) == NULL);
        CHECK(gguf_find_tensor(g, "token_embd.weight") == NULL);
        gguf_close(g);
    }
    e = (struct sp_err){0};
    struct model *m = model_load(path, &e);
    CHECK(m == NULL);
    model_free(m);
    CHECK_EQ(e.code, SP_EFORMAT);
    CHECK(err_ok(&e));
    CHECK(contains(e.msg, "token_embd.weight") && contains(e.msg, "missing"));

    shared_path(path, sizeof path, "testdata/tokenizer/ggml-vocab-gpt-2.gguf");
    g = gguf_open(path, &e);
    CHECK(g != NULL);
    if (g) {
        struct gguf_str s;
        CHECK_EQ(gguf_get_str(g, "general.architecture", &s, &e), SP_OK);
        CHECK(gguf_str_eq(s, "gpt2"));
        enum gguf_type et; uint64_t n; const void *d;
        CHECK_EQ(gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &d, &e), SP_OK);
        CHECK_EQ(n, 50000);
        gguf_close(g);
    }
    e = (struct sp_err){0};
    m = model_load(path, &e);
    CHECK(m == NULL);
    CHECK_EQ(e.code, SP_EUNSUP);
    CHECK(err_ok(&e));
    CHECK(contains(e.msg, "gpt2"));
}

static void test_open_errors(void) {
    struct sp_err e = {0};
    CHECK(gguf_open("/nonexistent/dir/x.gguf", &e) == NULL);
    CHECK_EQ(e.code, SP_EIO);
    CHECK(err_ok(&e) && contains(e.msg, "/nonexistent/dir/x.gguf"));
    e = (struct sp_err){0};
    CHECK(gguf_open("/tmp", &e) == NULL);
    CHECK_EQ(e.code, SP_EIO);
    CHECK(err_ok(&e) && contains(e.msg, "regular"));
    e = (struct sp_err){0};
    CHECK(model_load("/nonexistent/dir/x.gguf", &e) == NULL);
    CHECK_EQ(e.code, SP_EIO);
    e = (struct sp_err){0};
    CHECK(gguf_open("/nonexistent/evil\npath", &e) == NULL);  /* the message stays one line */
    CHECK_EQ(e.code, SP_EIO);
    CHECK(err_ok(&e));
    CHECK(gguf_open("/nonexistent", NULL) == NULL);    /* a NULL err is fine */
    gguf_close(NULL);
    model_free(NULL);
    struct buf b = {0};
    put(&b, "", 0);
    EXPECT_FAIL("empty file", &b, SP_EFORMAT, "too short");
    put(&b, "GGUF\3\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 19);
    EXPECT_FAIL("19 bytes", &b, SP_EFORMAT, "too short");
}

/* ------------------------------------------------------------ 2. truncation */

static int cmp_desc(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* End of the last tensor info = end of the header region before padding. */
static size_t header_end(const struct gguf *g) {
    uint64_t n = gguf_n_tensors(g);
    if (n == 0) return 0;
    const struct gguf_tensor *t = gguf_tensor_at(g, n - 1);
    return (size_t)((const uint8_t *)t->name.ptr + t->name.len - map_base(g)) + 4 + 8 * t->n_dims + 4 + 8;
}

static void truncate_file(const char *rel) {
    char path[512], tmp[64];
    shared_path(path, sizeof path, rel);
    size_t size = 0;
    uint8_t *file = slurp(path, &size);
    CHECK(file != NULL);
    if (!file) return;
    struct sp_err e = {0};
    struct gguf *g = gguf_open(path, &e);
    CHECK(g != NULL);
    if (!g) { free(file); return; }
    size_t data_end = check_layout(g, file, size);
    /* the data section starts where the tensor with the smallest offset begins */
    size_t data_start = size;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        size_t s = (size_t)((const uint8_t *)t->data - map_base(g)) - (size_t)t->offset;
        if (s < data_start) data_start = s;
    }
    size_t hdr_end = header_end(g);
    CHECK_EQ(hdr_end, 14229);          /* both files (python dump) */
    CHECK_EQ(data_start, (hdr_end + 31) / 32 * 32);
    CHECK(data_end <= size && data_end > size - 32);   /* q4_k_m has 16 bytes of tail padding */

    /* Lengths, longest first (so one copy can be ftruncate()d down). */
    size_t n_len = 0, cap = data_start + 1200 + 4 * gguf_n_tensors(g);
    size_t *lens = malloc(cap * sizeof(*lens));
    lens[n_len++] = size - 1;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {   /* around every tensor's start and end */
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        size_t s = (size_t)((const uint8_t *)t->data - map_base(g));
        lens[n_len++] = s;
        lens[n_len++] = s + 1;
        if (t->n_bytes) lens[n_len++] = s + t->n_bytes - 1;
    }
    for (size_t k = 0; k < 1000; k++) lens[n_len++] = data_start + (size - data_start) * k / 1000;
    for (size_t L = 0; L <= data_start; L++) lens[n_len++] = L;
    gguf_close(g);
    qsort(lens, n_len, sizeof(*lens), cmp_desc);

    int fd = write_tmp(tmp, file, size);
    size_t n_tried = 0, last = (size_t)-1;
    for (size_t k = 0; k < n_len; k++) {
        size_t L = lens[k];
        if (L >= size || L == last) continue;
        last = L;
        if (ftruncate(fd, (off_t)L) != 0) { perror("ftruncate"); break; }
        n_tried++;
        int before = check_failed_now;
        e = (struct sp_err){0};
        g = gguf_open(tmp, &e);
        if (g) {
            CHECK(L >= data_end);     /* impossible while any tensor's data is cut */
            gguf_close(g);
            struct model *m = model_load(tmp, &e);
            model_free(m);
        } else {
            CHECK_EQ(e.code, SP_EFORMAT);
            CHECK(err_ok(&e));
            if (L < 24) CHECK(contains(e.msg, "too short"));
            else if (L < hdr_end) CHECK(contains(e.msg, "truncated") || contains(e.msg, "cannot fit") || contains(e.msg, "past the end") ||
                                        contains(e.msg, "larger than the file"));
            else CHECK(contains(e.msg, "data section starts") || contains(e.msg, "data ends") ||
                       contains(e.msg, "larger than the file"));
            struct sp_err e2 = {0};
            struct model *m = model_load(tmp, &e2);
            CHECK(m == NULL);
            model_free(m);
            CHECK_EQ(e2.code, e.code);
        }
        if (check_failed_now != before) {
            fprintf(stderr, "    %s cut at %zu: %s\n", rel, L, e.msg);
            break;
        }
    }
    CHECK(n_tried > data_start + 900);
    close(fd);
    unlink(tmp);
    free(lens);
    free(file);
}

static void test_truncated_f16(void) { truncate_file("models/stories260K-f16.gguf"); }
static void test_truncated_q4_k_m(void) { truncate_file("models/stories260K-q4_k_m.gguf"); }

/* ------------------------------------------------------------ 3. corruption */

static void test_bit_flips(void) {
    char path[512], tmp[64];
    shared_path(path, sizeof path, "models/stories260K-q4_k_m.gguf");
    size_t size = 0;
    uint8_t *file = slurp(path, &size);
    CHECK(file != NULL);
    if (!file) return;
    const size_t hdr_end = 14229;      /* end of the tensor infos (python dump) */
    int fd = write_tmp(tmp, file, size);
    int n_open = 0, n_fail = 0, n_model_ok = 0, n_model_fail = 0;
    const int n_header = 6000, n_data = 1000;
    for (int k = 0; k < n_header + n_data; k++) {
        size_t pos = k < n_header ? (size_t)(rnd() % hdr_end)
                                  : hdr_end + (size_t)(rnd() % (size - hdr_end));
        uint8_t orig = file[pos], v = (uint8_t)rnd();
        if (v == orig) v ^= 0x80;
        file[pos] = v;
        if (pwrite(fd, &v, 1, (off_t)pos) != 1) { perror("pwrite"); break; }
        int before = check_failed_now;
        struct sp_err e = {0};
        struct gguf *g = gguf_open(tmp, &e);
        bool opened = g != NULL;
        if (g) {
            n_open++;
            check_layout(g, file, size);
            gguf_close(g);
        } else {
            n_fail++;
            CHECK_EQ(e.code, SP_EFORMAT);
            CHECK(err_ok(&e));
        }
        struct sp_err e2 = {0};
        struct model *m = model_load(tmp, &e2);
        if (m) {
            n_model_ok++;
            CHECK(opened);
            const struct model_shape *s = model_shape(m);
            CHECK(s->n_embd > 0 && s->n_layer > 0 && s->n_vocab > 0 && s->head_dim % 2 == 0);
            CHECK(model_layer(m, s->n_layer - 1)->w_down.data != NULL);
            model_free(m);
        } else {
            n_model_fail++;
            CHECK(err_ok(&e2));
            CHECK(e2.code == SP_EFORMAT || e2.code == SP_EUNSUP || e2.code == SP_EINVAL);
            if (!opened) CHECK_EQ(e2.code, e.code);
        }
        if (check_failed_now != before)
            fprintf(stderr, "    byte %zu: 0x%02x -> 0x%02x: open \"%s\" load \"%s\"\n",
                    pos, orig, v, e.msg, e2.msg);
        file[pos] = orig;
        if (pwrite(fd, &orig, 1, (off_t)pos) != 1) { perror("pwrite"); break; }
        if (check_failed_now - before > 0 && check_failed_now > 20) break;
    }
    /* both outcomes are exercised */
    CHECK(n_open > 400);
    CHECK(n_fail > 400);
    CHECK(n_model_ok > 400);
    CHECK(n_model_fail > n_fail);
    fprintf(stderr, "     (%d opened, %d refused; model_load %d ok, %d refused)\n",
            n_open, n_fail, n_model_ok, n_model_fail);
    close(fd);
    unlink(tmp);
    free(file);
}

/* ------------------------------------------------------------ 4. hostile headers */

static void test_hostile_headers(void) {
    struct buf b = {0};
    const uint64_t ne1[1] = {8}, ne2[2] = {8, 2};

    header(&b, 3, 0, 0);
    memcpy(b.p, "GGUG", 4);
    EXPECT_FAIL("bad magic", &b, SP_EFORMAT, "magic");
    put(&b, "\x00\x00\x00\x00GGUF", 8);
    put_u64(&b, 0); put_u64(&b, 0); put_u64(&b, 0);
    EXPECT_FAIL("zero magic", &b, SP_EFORMAT, "magic");
    header(&b, 1, 0, 0);
    EXPECT_FAIL("version 1", &b, SP_EFORMAT, "version 1");
    header(&b, 4, 0, 0);
    EXPECT_FAIL("version 4", &b, SP_EFORMAT, "version 4");
    header(&b, 0xffffffffu, 0, 0);
    EXPECT_FAIL("version -1", &b, SP_EFORMAT, "version");

    header(&b, 3, 0, 1ull << 63);
    kv_u32(&b, "a.b", 1);
    EXPECT_FAIL("n_kv 2^63", &b, SP_EFORMAT, "metadata");
    header(&b, 3, 0, UINT64_MAX);
    EXPECT_FAIL("n_kv 2^64-1", &b, SP_EFORMAT, "metadata");
    header(&b, 3, 1ull << 40, 0);
    tinfo(&b, "t", 1, ne1, 0, 0);
    EXPECT_FAIL("n_tensors 2^40", &b, SP_EFORMAT, "tensors");
    header(&b, 3, UINT64_MAX, 1);
    kv_u32(&b, "a.b", 1);
    EXPECT_FAIL("n_tensors 2^64-1", &b, SP_EFORMAT, "tensors");
    header(&b, 3, 0, 8);                                    /* 8 keys cannot fit in 100 bytes */
    for (int i = 0; i < 100; i++) put_u8(&b, 1);
    EXPECT_FAIL("n_kv 8 in 100 bytes", &b, SP_EFORMAT, "8 metadata entries cannot fit");
    header(&b, 3, 4, 0);                                    /* 4 tensor infos cannot fit in 128 */
    for (int i = 0; i < 128; i++) put_u8(&b, 1);
    EXPECT_FAIL("n_tensors 4 in 128 bytes", &b, SP_EFORMAT, "4 tensors cannot fit");
    header(&b, 3, 0, 2);
    kv_u32(&b, "a.b", 1);
    put_u64(&b, 100); put(&b, "a.c", 3);
    for (int i = 0; i < 17; i++) put_u8(&b, 0);
    EXPECT_FAIL("second key cut", &b, SP_EFORMAT, "truncated", "metadata key");

    header(&b, 3, 0, 1);
    put_u64(&b, UINT64_MAX); put(&b, "abc", 3); put_u32(&b, GGUF_TYPE_UINT32); put_u32(&b, 1);
    EXPECT_FAIL("key length 2^64-1", &b, SP_EFORMAT, "key");
    header(&b, 3, 0, 1);
    put_u64(&b, 1ull << 63); put(&b, "abc", 3); put_u32(&b, GGUF_TYPE_UINT32); put_u32(&b, 1);
    EXPECT_FAIL("key length 2^63", &b, SP_EFORMAT, "key");
    header(&b, 3, 0, 2);
    kv_u32(&b, "a.b", 1);
    put_u64(&b, 0); put_u32(&b, GGUF_TYPE_UINT32); put_u32(&b, 1); put_u32(&b, 0);
    EXPECT_FAIL("empty key", &b, SP_EFORMAT, "length 0");
    header(&b, 3, 0, 1);
    put_u64(&b, 70000);
    for (int i = 0; i < 70000; i++) put_u8(&b, 'k');
    put_u32(&b, GGUF_TYPE_UINT32); put_u32(&b, 1);
    EXPECT_FAIL("key of 70000 bytes", &b, SP_EFORMAT, "length 70000");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.s", GGUF_TYPE_STRING); put_u64(&b, UINT64_MAX - 3); put(&b, "xyz", 3);
    EXPECT_FAIL("string value of 2^64-4", &b, SP_EFORMAT, "truncated");

    header(&b, 3, 0, 1);
    kv_head(&b, "a.arr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_UINT32); put_u64(&b, 1ull << 62);
    for (int i = 0; i < 16; i++) put_u32(&b, 7);
    EXPECT_FAIL("array of 2^62 uint32", &b, SP_EFORMAT, "a.arr", "array");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.arr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_UINT64); put_u64(&b, 1ull << 61);
    for (int i = 0; i < 16; i++) put_u32(&b, 7);
    EXPECT_FAIL("array of 2^61 uint64 (n*8 wraps)", &b, SP_EFORMAT, "a.arr", "array");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.arr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 1ull << 60);
    for (int i = 0; i < 4; i++) put_str(&b, "ab");
    EXPECT_FAIL("array of 2^60 strings", &b, SP_EFORMAT, "a.arr", "strings");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.arr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 3);
    put_str(&b, "ab"); put_str(&b, "cd"); put_u64(&b, 1000); put(&b, "ef", 2);
    for (int i = 0; i < 8; i++) put_u8(&b, 0);
    EXPECT_FAIL("string array element cut", &b, SP_EFORMAT, "string array");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.nest", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_ARRAY); put_u64(&b, 1);
    put_u32(&b, GGUF_TYPE_UINT8); put_u64(&b, 1); put_u8(&b, 1);
    for (int i = 0; i < 8; i++) put_u8(&b, 0);
    EXPECT_FAIL("nested array", &b, SP_EFORMAT, "a.nest", "nested");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.arr", GGUF_TYPE_ARRAY); put_u32(&b, 13); put_u64(&b, 1); put_u32(&b, 0);
    EXPECT_FAIL("array of unknown type 13", &b, SP_EFORMAT, "a.arr", "13");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.weird", 99); put_u32(&b, 0); put_u32(&b, 0);
    EXPECT_FAIL("value type 99", &b, SP_EFORMAT, "a.weird", "type 99");
    header(&b, 3, 0, 1);
    kv_head(&b, "a.weird", GGUF_TYPE_COUNT); put_u32(&b, 0); put_u32(&b, 0);
    EXPECT_FAIL("value type 13", &b, SP_EFORMAT, "a.weird", "type 13");
    header(&b, 3, 0, 2);
    kv_u32(&b, "a.dup", 1);
    kv_str(&b, "a.dup", "x");
    EXPECT_FAIL("duplicate key", &b, SP_EFORMAT, "duplicate", "a.dup");
    /* A hostile key holding a newline must not break the one-line message. */
    header(&b, 3, 0, 1);
    kv_head(&b, "evil\nkey", 99); put_u32(&b, 0); put_u32(&b, 0);
    EXPECT_FAIL("newline in key", &b, SP_EFORMAT, "type 99");

    /* general.alignment */
    one_tensor(&b, 1, ne1, QTYPE_F32, 0, GGUF_TYPE_UINT32, 0, 32, 32);
    EXPECT_FAIL("alignment 0", &b, SP_EFORMAT, "alignment");
    one_tensor(&b, 1, ne1, QTYPE_F32, 0, GGUF_TYPE_UINT32, 3, 32, 32);
    EXPECT_FAIL("alignment 3", &b, SP_EFORMAT, "alignment", "3");
    one_tensor(&b, 1, ne1, QTYPE_F32, 0, GGUF_TYPE_UINT32, 0x80000001u, 32, 32);
    EXPECT_FAIL("alignment 2^31+1", &b, SP_EFORMAT, "alignment");
    one_tensor(&b, 1, ne1, QTYPE_F32, 0, GGUF_TYPE_UINT8, 32, 32, 32);
    EXPECT_FAIL("alignment as uint8", &b, SP_EFORMAT, "alignment");

    /* tensor infos */
    one_tensor(&b, 1, ne1, 77, 0, 99, 0, 32, 64);
    EXPECT_FAIL("tensor type 77", &b, SP_EFORMAT, "weird.weight", "type 77");
    one_tensor(&b, 1, ne1, 4, 0, 99, 0, 32, 64);     /* a hole in ggml's ids */
    EXPECT_FAIL("tensor type 4", &b, SP_EFORMAT, "weird.weight", "type 4");
    one_tensor(&b, 1, ne1, UINT32_MAX, 0, 99, 0, 32, 64);
    EXPECT_FAIL("tensor type 2^32-1", &b, SP_EFORMAT, "weird.weight", "unknown type");
    one_tensor(&b, 0, ne1, QTYPE_F32, 0, 99, 0, 32, 64);
    EXPECT_FAIL("n_dims 0", &b, SP_EFORMAT, "weird.weight", "0 dimensions");
    {
        const uint64_t ne5[5] = {1, 1, 1, 1, 8};
        one_tensor(&b, 5, ne5, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("n_dims 5", &b, SP_EFORMAT, "weird.weight", "5 dimensions");
        one_tensor(&b, 0x80000000u, ne5, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("n_dims 2^31", &b, SP_EFORMAT, "weird.weight", "dimensions");
    }
    {
        const uint64_t big[2] = {8, 1ull << 63};
        one_tensor(&b, 2, big, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("dimension 2^63", &b, SP_EFORMAT, "weird.weight", "dimension 1");
        const uint64_t huge[2] = {UINT64_MAX, 1};
        one_tensor(&b, 2, huge, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("dimension 2^64-1", &b, SP_EFORMAT, "weird.weight", "dimension 0");
        const uint64_t ovf[4] = {1ull << 32, 1ull << 32, 1ull << 32, 2};
        one_tensor(&b, 4, ovf, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("ne product overflows", &b, SP_EFORMAT, "weird.weight", "larger than the file");
        const uint64_t ovf2[2] = {1ull << 62, 1};       /* 2^62 floats: the row bytes alone wrap */
        one_tensor(&b, 2, ovf2, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("row bytes overflow", &b, SP_EFORMAT, "weird.weight", "larger than the file");
        const uint64_t ovf3[2] = {1ull << 61, 1ull << 3};   /* q8_0: 2^56 blocks * 34 bytes wraps */
        one_tensor(&b, 2, ovf3, QTYPE_Q8_0, 0, 99, 0, 32, 64);
        EXPECT_FAIL("q8_0 bytes overflow", &b, SP_EFORMAT, "weird.weight", "larger than the file");
        const uint64_t big2[2] = {1024, 1024};
        one_tensor(&b, 2, big2, QTYPE_F32, 0, 99, 0, 32, 64);
        EXPECT_FAIL("tensor bigger than file", &b, SP_EFORMAT, "weird.weight", "larger than the file");
        const uint64_t q33[2] = {33, 2};
        one_tensor(&b, 2, q33, QTYPE_Q4_0, 0, 99, 0, 32, 64);
        EXPECT_FAIL("q4_0 row of 33", &b, SP_EFORMAT, "weird.weight", "33", "q4_0", "block");
        const uint64_t k100[1] = {100};
        one_tensor(&b, 1, k100, QTYPE_Q4_K, 0, 99, 0, 32, 1024);
        EXPECT_FAIL("q4_K row of 100", &b, SP_EFORMAT, "weird.weight", "q4_K");
    }
    one_tensor(&b, 2, ne2, QTYPE_F32, 4, 99, 0, 32, 128);
    EXPECT_FAIL("offset 4 (unaligned)", &b, SP_EFORMAT, "weird.weight", "not aligned");
    one_tensor(&b, 2, ne2, QTYPE_F32, 64, GGUF_TYPE_UINT32, 128, 128, 256);
    EXPECT_FAIL("offset 64 with alignment 128", &b, SP_EFORMAT, "weird.weight", "not aligned to 128");
    one_tensor(&b, 2, ne2, QTYPE_F32, 1ull << 40, 99, 0, 32, 128);
    EXPECT_FAIL("offset 2^40", &b, SP_EFORMAT, "weird.weight", "data ends");
    one_tensor(&b, 2, ne2, QTYPE_F32, UINT64_MAX - 31, 99, 0, 32, 128);
    EXPECT_FAIL("offset 2^64-32", &b, SP_EFORMAT, "weird.weight", "data ends");
    one_tensor(&b, 2, ne2, QTYPE_F32, 32, 99, 0, 32, 64);  /* 64 bytes at 32: 32 past the end */
    EXPECT_FAIL("data runs 32 bytes past the end", &b, SP_EFORMAT, "weird.weight", "data ends");
    one_tensor(&b, 2, ne2, QTYPE_F32, 0, 99, 0, 1, 0);     /* no data section at all */
    EXPECT_FAIL("no data section", &b, SP_EFORMAT, "data");

    header(&b, 3, 2, 0);
    tinfo(&b, "t.dup", 2, ne2, QTYPE_F32, 0);
    tinfo(&b, "t.dup", 2, ne2, QTYPE_F32, 64);
    pad_to(&b, 32);
    for (int i = 0; i < 128; i++) put_u8(&b, 0);
    EXPECT_FAIL("duplicate tensor", &b, SP_EFORMAT, "duplicate", "t.dup");
    header(&b, 3, 1, 0);
    tinfo(&b, "", 2, ne2, QTYPE_F32, 0);
    pad_to(&b, 32);
    for (int i = 0; i < 64; i++) put_u8(&b, 0);
    EXPECT_FAIL("empty tensor name", &b, SP_EFORMAT, "length 0");
    header(&b, 3, 1, 0);
    put_u64(&b, UINT64_MAX - 7); put(&b, "abcdefgh", 8);
    for (int i = 0; i < 64; i++) put_u8(&b, 0);
    EXPECT_FAIL("tensor name length 2^64-8", &b, SP_EFORMAT, "tensor name");
    header(&b, 3, 1, 0);
    tinfo(&b, "t.cut", 2, ne2, QTYPE_F32, 0);
    b.n -= 5;                                              /* cut inside the offset */
    EXPECT_FAIL("tensor info cut", &b, SP_EFORMAT, "truncated");
}

/* A valid hand-built file: typed getters and tensor views. */
static void test_crafted_valid(void) {
    struct buf b = {0};
    header(&b, 2, 2, 17);                                   /* version 2 is fine */
    kv_head(&b, "v.u8", GGUF_TYPE_UINT8); put_u8(&b, 200);
    kv_head(&b, "v.i8", GGUF_TYPE_INT8); put_u8(&b, 0xff);
    kv_head(&b, "v.u16", GGUF_TYPE_UINT16); put(&b, "\x34\x12", 2);
    kv_head(&b, "v.i32", GGUF_TYPE_INT32); put_u32(&b, 123456);
    kv_head(&b, "v.neg", GGUF_TYPE_INT32); put_u32(&b, (uint32_t)-5);
    kv_head(&b, "v.u64", GGUF_TYPE_UINT64); put_u64(&b, 7);
    kv_head(&b, "v.u64big", GGUF_TYPE_UINT64); put_u64(&b, 1ull << 40);
    kv_head(&b, "v.i64", GGUF_TYPE_INT64); put_u64(&b, 4000000000ull);
    kv_f32(&b, "v.f32", 1.5f);
    kv_head(&b, "v.f64", GGUF_TYPE_FLOAT64); { double dv = 0.25; put(&b, &dv, 8); }
    kv_head(&b, "v.bool", GGUF_TYPE_BOOL); put_u8(&b, 1);
    kv_str(&b, "v.str", "hello");
    kv_head(&b, "v.farr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_FLOAT32); put_u64(&b, 3);
    put_f32(&b, 1.0f); put_f32(&b, -2.0f); put_f32(&b, 3.5f);
    kv_head(&b, "v.sarr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 3);
    put_str(&b, "x"); put_str(&b, "yz"); put_str(&b, "");
    kv_head(&b, "v.empty", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_UINT8); put_u64(&b, 0);
    kv_head(&b, "v.esarr", GGUF_TYPE_ARRAY); put_u32(&b, GGUF_TYPE_STRING); put_u64(&b, 0);
    kv_u32(&b, "general.alignment", 64);
    const uint64_t nf[2] = {4, 2}, nq[1] = {64};
    tinfo(&b, "t.f32", 2, nf, QTYPE_F32, 0);
    tinfo(&b, "t.q4_0", 1, nq, QTYPE_Q4_0, 64);
    size_t hdr = b.n;
    pad_to(&b, 64);
    size_t ds = b.n;
    for (int i = 0; i < 8; i++) put_f32(&b, (float)i * 0.5f);
    pad_to(&b, 64);
    for (int i = 0; i < 36; i++) put_u8(&b, (uint8_t)(i * 7));
    CHECK(hdr % 64 != 0);   /* the padding matters */

    struct sp_err e = {0};
    struct gguf *g = open_buf(&b, &e);
    CHECK(g != NULL);
    if (!g) { fprintf(stderr, "    %s\n", e.msg); buf_free(&b); return; }
    CHECK_EQ(gguf_version(g), 2);
    CHECK_EQ(gguf_n_kv(g), 17);
    CHECK_EQ(gguf_n_tensors(g), 2);
    uint32_t u = 0;
    CHECK_EQ(gguf_get_u32(g, "v.u8", &u, &e), SP_OK); CHECK_EQ(u, 200);
    CHECK_EQ(gguf_get_u32(g, "v.u16", &u, &e), SP_OK); CHECK_EQ(u, 0x1234);
    CHECK_EQ(gguf_get_u32(g, "v.i32", &u, &e), SP_OK); CHECK_EQ(u, 123456);
    CHECK_EQ(gguf_get_u32(g, "v.u64", &u, &e), SP_OK); CHECK_EQ(u, 7);
    CHECK_EQ(gguf_get_u32(g, "v.i64", &u, &e), SP_OK); CHECK_EQ(u, 4000000000u);
    CHECK_EQ(gguf_get_u32(g, "general.alignment", &u, &e), SP_OK); CHECK_EQ(u, 64);
    u = 42;
    e = (struct sp_err){0};
    CHECK_EQ(gguf_get_u32(g, "v.neg", &u, &e), SP_EFORMAT);
    CHECK(err_ok(&e) && contains(e.msg, "v.neg") && contains(e.msg, "-5"));
    CHECK_EQ(u, 42);
    CHECK_EQ(gguf_get_u32(g, "v.i8", &u, &e), SP_EFORMAT);
    CHECK(contains(e.msg, "-1"));
    CHECK_EQ(gguf_get_u32(g, "v.u64big", &u, &e), SP_EFORMAT);
    CHECK(contains(e.msg, "out of range"));
    e = (struct sp_err){0};
    CHECK_EQ(gguf_get_u32(g, "v.f32", &u, &e), SP_EFORMAT);
    CHECK(err_ok(&e) && contains(e.msg, "v.f32") && contains(e.msg, "not an integer"));
    CHECK_EQ(gguf_get_u32(g, "v.bool", &u, &e), SP_EFORMAT);
    CHECK_EQ(gguf_get_u32(g, "v.str", &u, &e), SP_EFORMAT);
    CHECK_EQ(gguf_get_u32(g, "v.farr", &u, &e), SP_EFORMAT);
    e = (struct sp_err){0};
    CHECK_EQ(gguf_get_u32(g, "v.missing", &u, &e), SP_EINVAL);
    CHECK_EQ(e.code, SP_EINVAL);
    CHECK(err_ok(&e) && contains(e.msg, "v.missing"));
    CHECK_EQ(u, 42);

    float f = 0;
    CHECK_EQ(gguf_get_f32(g, "v.f32", &f, &e), SP_OK); CHECK_NEAR(f, 1.5, 0);
    CHECK_EQ(gguf_get_f32(g, "v.f64", &f, &e), SP_OK); CHECK_NEAR(f, 0.25, 0);
    CHECK_EQ(gguf_get_f32(g, "v.i32", &f, &e), SP_EFORMAT);
    CHECK_EQ(gguf_get_f32(g, "nope", &f, &e), SP_EINVAL);
    bool bo = false;
    CHECK_EQ(gguf_get_bool(g, "v.bool", &bo, &e), SP_OK); CHECK(bo);
    CHECK_EQ(gguf_get_bool(g, "v.u8", &bo, &e), SP_EFORMAT);
    struct gguf_str s = {0};
    CHECK_EQ(gguf_get_str(g, "v.str", &s, &e), SP_OK);
    CHECK(gguf_str_eq(s, "hello"));
    CHECK(!gguf_str_eq(s, "hell"));
    CHECK(!gguf_str_eq(s, "hello!"));
    e = (struct sp_err){0};
    CHECK_EQ(gguf_get_str(g, "v.u8", &s, &e), SP_EFORMAT);
    CHECK(err_ok(&e) && contains(e.msg, "not a string"));
    CHECK_EQ(gguf_get_str(g, "v.sarr", &s, &e), SP_EFORMAT);

    enum gguf_type et = GGUF_TYPE_COUNT;
    uint64_t n = 99;
    const void *d = NULL;
    CHECK_EQ(gguf_get_arr(g, "v.farr", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_FLOAT32);
    CHECK_EQ(n, 3);
    CHECK(d != NULL);
    if (d) {
        float fa[3];
        memcpy(fa, d, sizeof fa);
        CHECK_NEAR(fa[0], 1.0, 0); CHECK_NEAR(fa[1], -2.0, 0); CHECK_NEAR(fa[2], 3.5, 0);
    }
    CHECK_EQ(gguf_get_arr(g, "v.sarr", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_STRING);
    CHECK_EQ(n, 3);
    CHECK(d == NULL);
    CHECK(gguf_str_eq(gguf_get_arr_str(g, "v.sarr", 0), "x"));
    CHECK(gguf_str_eq(gguf_get_arr_str(g, "v.sarr", 1), "yz"));
    CHECK_EQ(gguf_get_arr_str(g, "v.sarr", 2).len, 0);
    CHECK_EQ(gguf_get_arr_str(g, "v.sarr", 3).len, 0);            /* out of range: empty */
    CHECK_EQ(gguf_get_arr_str(g, "v.farr", 0).len, 0);            /* not strings: empty */
    CHECK_EQ(gguf_get_arr_str(g, "v.missing", 0).len, 0);
    CHECK_EQ(gguf_get_arr(g, "v.empty", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_UINT8);
    CHECK_EQ(n, 0);
    CHECK_EQ(gguf_get_arr(g, "v.esarr", &et, &n, &d, &e), SP_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(gguf_get_arr_str(g, "v.esarr", 0).len, 0);
    CHECK_EQ(gguf_get_arr(g, "v.str", &et, &n, &d, &e), SP_EFORMAT);
    CHECK_EQ(gguf_get_arr(g, "v.nope", &et, &n, &d, &e), SP_EINVAL);

    CHECK_EQ(gguf_find_key(g, "v.u8"), 0);
    CHECK_EQ(gguf_find_key(g, "v.u"), -1);
    CHECK_EQ(gguf_find_key(g, "v.u8x"), -1);
    CHECK_EQ(gguf_kv_type(g, gguf_find_key(g, "v.f64")), GGUF_TYPE_FLOAT64);

    const uint8_t *base = map_base(g);
    const struct gguf_tensor *t = gguf_find_tensor(g, "t.f32");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ(t->n_dims, 2);
        CHECK_EQ(t->ne[0], 4); CHECK_EQ(t->ne[1], 2); CHECK_EQ(t->ne[2], 1); CHECK_EQ(t->ne[3], 1);
        CHECK_EQ(t->n_bytes, 32);
        CHECK(t->data == base + ds);
        float v;
        memcpy(&v, (const uint8_t *)t->data + 7 * 4, 4);
        CHECK_NEAR(v, 3.5, 0);
    }
    t = gguf_find_tensor(g, "t.q4_0");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ(t->type, QTYPE_Q4_0);
        CHECK_EQ(t->n_bytes, 36);
        CHECK(t->data == base + ds + 64);
        CHECK_EQ(((const uint8_t *)t->data)[5], 35);
    }
    CHECK(gguf_tensor_at(g, 1) == t);
    CHECK(gguf_tensor_at(g, 2) == NULL);
    CHECK(gguf_tensor_at(g, UINT64_MAX) == NULL);
    CHECK(gguf_find_tensor(g, "t.f3") == NULL);
    check_layout(g, b.p, b.n);
    gguf_close(g);

    /* The same file cut by one byte no longer fits its last tensor. */
    b.n--;
    EXPECT_FAIL("valid file minus one byte", &b, SP_EFORMAT, "t.q4_0", "data ends");
}

/* Zero tensors and zero keys: a 24-byte file is a valid (empty) GGUF. */
static void test_crafted_empty(void) {
    struct buf b = {0};
    header(&b, 3, 0, 0);
    struct sp_err e = {0};
    struct gguf *g = open_buf(&b, &e);
    CHECK(g != NULL);
    if (g) {
        CHECK_EQ(gguf_n_kv(g), 0);
        CHECK_EQ(gguf_n_tensors(g), 0);
        CHECK_EQ(gguf_find_key(g, "general.architecture"), -1);
        CHECK(gguf_find_tensor(g, "x") == NULL);
        gguf_close(g);
    }
    e = (struct sp_err){0};
    struct model *m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK(err_ok(&e) && contains(e.msg, "general.architecture"));
    buf_free(&b);
}

/* ------------------------------------------------------------ 5. model_load */

struct tspec { char name[48]; uint32_t n_dims; uint64_t ne[4]; uint32_t type; bool skip; uint32_t shift; };

enum { M_EMBD = 256, M_FF = 64, M_VOCAB = 40, M_HEAD = 4, M_HEAD_KV = 2 };   /* 256: a K-quant block */

static int llama_specs(struct tspec *ts, bool with_output) {
    int n = 0;
#define T2(nm, a, b_) (ts[n++] = (struct tspec){nm, 2, {a, b_, 1, 1}, QTYPE_F32, false, 0})
#define T1(nm, a) (ts[n++] = (struct tspec){nm, 1, {a, 1, 1, 1}, QTYPE_F32, false, 0})
    const int kv = M_EMBD / M_HEAD * M_HEAD_KV;
    T2("token_embd.weight", M_EMBD, M_VOCAB);
    T1("output_norm.weight", M_EMBD);
    if (with_output) T2("output.weight", M_EMBD, M_VOCAB);
    T1("blk.0.attn_norm.weight", M_EMBD);
    T2("blk.0.attn_q.weight", M_EMBD, M_EMBD);
    T2("blk.0.attn_k.weight", M_EMBD, kv);
    T2("blk.0.attn_v.weight", M_EMBD, kv);
    T2("blk.0.attn_output.weight", M_EMBD, M_EMBD);
    T1("blk.0.ffn_norm.weight", M_EMBD);
    T2("blk.0.ffn_gate.weight", M_EMBD, M_FF);
    T2("blk.0.ffn_up.weight", M_EMBD, M_FF);
    T2("blk.0.ffn_down.weight", M_FF, M_EMBD);
#undef T1
#undef T2
    return n;
}

static struct tspec *spec(struct tspec *ts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ts[i].name, name)) return &ts[i];
    fprintf(stderr, "no spec %s\n", name);
    exit(2);
}

/* A one-layer llama: keys, tensor infos, data. With align != 0 the file
 * carries general.alignment = align and the header is padded (through a
 * general.name of the right length) to end on a multiple of 32, so every
 * tensor sits at a multiple of 32 plus its `shift`. */
static void write_llama_a(struct buf *b, const struct tspec *ts, int n, const char *arch, uint32_t align) {
    int nt = 0;
    for (int i = 0; i < n; i++) nt += !ts[i].skip;
    struct buf infos = {0};
    uint64_t off = 0, sizes[32];
    for (int i = 0; i < n; i++) {
        if (ts[i].skip) continue;
        uint64_t bytes = qtype_row_bytes(ts[i].type, (int64_t)ts[i].ne[0]);
        for (int d = 1; d < 4; d++) bytes *= ts[i].ne[d];
        sizes[i] = bytes;
        tinfo(&infos, ts[i].name, ts[i].n_dims, ts[i].ne, ts[i].type, off + ts[i].shift);
        off += (ts[i].shift + bytes + 31) / 32 * 32;
    }
    header(b, 3, (uint64_t)nt, align ? 11 : 9);
    kv_str(b, "general.architecture", arch);
    kv_u32(b, "llama.context_length", 128);
    kv_u32(b, "llama.embedding_length", M_EMBD);
    kv_u32(b, "llama.feed_forward_length", M_FF);
    kv_u32(b, "llama.block_count", 1);
    kv_u32(b, "llama.attention.head_count", M_HEAD);
    kv_u32(b, "llama.attention.head_count_kv", M_HEAD_KV);
    kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_f32(b, "llama.rope.freq_base", 500000.0f);
    if (align) {
        kv_u32(b, "general.alignment", align);
        size_t fixed = b->n + 8 + strlen("general.name") + 4 + 8 + infos.n;
        size_t pad = (32 - fixed % 32) % 32;
        char name[40] = "tiny-llama-padding-xxxxxxxxxxxxxxxxxxx";
        name[pad] = '\0';
        kv_str(b, "general.name", name);
    }
    put(b, infos.p, infos.n);
    buf_free(&infos);
    CHECK(!align || b->n % 32 == 0);
    pad_to(b, 32);
    for (int i = 0; i < n; i++) {
        if (ts[i].skip) continue;
        for (uint32_t k = 0; k < ts[i].shift; k++) put_u8(b, 0);
        for (uint64_t k = 0; k < sizes[i]; k++) {
            float v = 0.01f * (float)(k / 4 % 97);
            put_u8(b, ((const uint8_t *)&v)[k % 4]);
        }
        pad_to(b, 32);
    }
}

static void write_llama(struct buf *b, const struct tspec *ts, int n, const char *arch) {
    write_llama_a(b, ts, n, arch, 0);
}

static void test_model_crafted(void) {
    struct tspec ts[32];
    struct buf b = {0};
    struct sp_err e = {0};

    /* valid, with and without output.weight (tied embeddings) */
    int n = llama_specs(ts, true);
    write_llama(&b, ts, n, "llama");
    struct model *m = load_buf(&b, &e);
    CHECK(m != NULL);
    if (!m) fprintf(stderr, "    %s\n", e.msg);
    if (m) {
        const struct model_shape *s = model_shape(m);
        CHECK_EQ(s->n_vocab, M_VOCAB);
        CHECK_EQ(s->n_embd, M_EMBD);
        CHECK_EQ(s->n_ff, M_FF);
        CHECK_EQ(s->n_layer, 1);
        CHECK_EQ(s->n_head, M_HEAD);
        CHECK_EQ(s->n_head_kv, M_HEAD_KV);
        CHECK_EQ(s->head_dim, M_EMBD / M_HEAD);
        CHECK_EQ(s->n_rot, M_EMBD / M_HEAD);
        CHECK_EQ(s->n_ctx_train, 128);
        CHECK_NEAR(s->rms_eps, 1e-6, 1e-12);
        CHECK_NEAR(s->rope_freq_base, 500000.0, 0);
        CHECK_STR(model_desc(m), "llama 1L 256d 4h/2kv ff64 vocab40 (f32)");
        CHECK(model_output(m)->data != model_tok_embd(m)->data);
        model_free(m);
    }
    buf_free(&b);
    n = llama_specs(ts, false);
    write_llama(&b, ts, n, "llama");
    m = load_buf(&b, &e);
    CHECK(m != NULL);
    if (m) {
        CHECK(model_output(m)->data == model_tok_embd(m)->data);
        CHECK_EQ(model_output(m)->n_rows, M_VOCAB);
        model_free(m);
    }
    buf_free(&b);

    /* a missing tensor */
    static const char *const missing[] = {"token_embd.weight", "output_norm.weight", "blk.0.attn_k.weight",
                                          "blk.0.ffn_norm.weight", "blk.0.ffn_up.weight"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        n = llama_specs(ts, true);
        spec(ts, n, missing[i])->skip = true;
        write_llama(&b, ts, n, "llama");
        e = (struct sp_err){0};
        m = load_buf(&b, &e);
        CHECK(m == NULL);
        model_free(m);
        CHECK_EQ(e.code, SP_EFORMAT);
        CHECK(err_ok(&e) && contains(e.msg, missing[i]) && contains(e.msg, "missing"));
        buf_free(&b);
    }

    /* wrong shapes */
    n = llama_specs(ts, true);
    spec(ts, n, "blk.0.attn_v.weight")->ne[1] = M_EMBD;          /* as if no GQA */
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK_EQ(e.code, SP_EFORMAT);
    CHECK(err_ok(&e) && contains(e.msg, "blk.0.attn_v.weight") && contains(e.msg, "256 x 256") &&
          contains(e.msg, "expected 256 x 128"));
    buf_free(&b);
    n = llama_specs(ts, true);
    spec(ts, n, "blk.0.ffn_down.weight")->ne[0] = M_EMBD;        /* transposed */
    spec(ts, n, "blk.0.ffn_down.weight")->ne[1] = M_FF;
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK(err_ok(&e) && contains(e.msg, "blk.0.ffn_down.weight"));
    buf_free(&b);
    n = llama_specs(ts, true);
    { struct tspec *t = spec(ts, n, "blk.0.attn_q.weight"); t->n_dims = 3; t->ne[2] = 2; }   /* 256 x 256 x 2 */
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK(err_ok(&e) && contains(e.msg, "blk.0.attn_q.weight"));
    buf_free(&b);
    n = llama_specs(ts, true);
    spec(ts, n, "output.weight")->ne[1] = M_VOCAB + 1;
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK(err_ok(&e) && contains(e.msg, "output.weight"));
    buf_free(&b);
    n = llama_specs(ts, true);
    spec(ts, n, "blk.0.attn_norm.weight")->ne[0] = M_EMBD * 2;
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK(err_ok(&e) && contains(e.msg, "blk.0.attn_norm.weight"));
    buf_free(&b);
    n = llama_specs(ts, true);
    spec(ts, n, "output_norm.weight")->type = QTYPE_F16;         /* norms must be f32 */
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK(err_ok(&e) && contains(e.msg, "output_norm.weight") && contains(e.msg, "f32"));
    buf_free(&b);

    /* types the table knows but this build cannot compute */
    static const struct { const char *tensor; uint32_t type; const char *name; } unsup[] = {
        {"blk.0.attn_q.weight", QTYPE_Q4_1, "q4_1"},
        {"blk.0.ffn_gate.weight", QTYPE_Q5_1, "q5_1"},
        {"token_embd.weight", QTYPE_Q8_1, "q8_1"},
        {"blk.0.attn_output.weight", 20, "iq4_nl"},
        {"blk.0.attn_q.weight", QTYPE_Q8_K, "q8_K"},          /* to_float but no vec_dot */
        {"blk.0.attn_k.weight", QTYPE_Q2_K, "q2_K"},
    };
    for (size_t i = 0; i < sizeof unsup / sizeof unsup[0]; i++) {
        n = llama_specs(ts, true);
        spec(ts, n, unsup[i].tensor)->type = unsup[i].type;
        write_llama(&b, ts, n, "llama");
        e = (struct sp_err){0};
        m = load_buf(&b, &e);
        CHECK(m == NULL);
        model_free(m);
        CHECK_EQ(e.code, SP_EUNSUP);
        CHECK(err_ok(&e) && contains(e.msg, unsup[i].tensor) && contains(e.msg, unsup[i].name));
        if (!contains(e.msg, unsup[i].name)) fprintf(stderr, "    msg: %s\n", e.msg);
        buf_free(&b);
    }
    /* ...while the computable quantized types load */
    n = llama_specs(ts, true);
    spec(ts, n, "blk.0.attn_q.weight")->type = QTYPE_Q8_0;
    spec(ts, n, "blk.0.attn_k.weight")->type = QTYPE_Q4_0;
    spec(ts, n, "blk.0.attn_v.weight")->type = QTYPE_Q5_0;
    spec(ts, n, "blk.0.ffn_up.weight")->type = QTYPE_F16;
    spec(ts, n, "blk.0.ffn_down.weight")->type = QTYPE_BF16;
    spec(ts, n, "blk.0.ffn_gate.weight")->type = QTYPE_Q4_K;
    spec(ts, n, "blk.0.attn_output.weight")->type = QTYPE_Q6_K;
    write_llama(&b, ts, n, "llama");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m != NULL);
    if (!m) fprintf(stderr, "    %s\n", e.msg);
    if (m) { CHECK(contains(model_desc(m), "(q8_0)")); model_free(m); }
    buf_free(&b);

    /* general.alignment 1 or 2 is legal GGUF, but the kernels read f32 weights
     * as floats and quantized blocks through structs with 16-bit fields. */
    static const struct { uint32_t align, shift, type; const char *tensor; bool ok; } al[] = {
        {1, 0, QTYPE_F32, "blk.0.attn_q.weight", true},
        {1, 1, QTYPE_F32, "blk.0.attn_q.weight", false},
        {2, 2, QTYPE_F32, "blk.0.attn_q.weight", false},
        {4, 4, QTYPE_F32, "blk.0.attn_q.weight", true},
        {2, 2, QTYPE_F32, "token_embd.weight", false},
        {2, 2, QTYPE_F16, "blk.0.ffn_up.weight", true},
        {1, 1, QTYPE_F16, "blk.0.ffn_up.weight", false},
        {1, 1, QTYPE_BF16, "output.weight", false},
        {1, 1, QTYPE_Q8_0, "blk.0.attn_k.weight", false},
        {2, 2, QTYPE_Q8_0, "blk.0.attn_k.weight", true},
        {1, 3, QTYPE_Q4_K, "blk.0.attn_v.weight", false},
        {2, 2, QTYPE_F32, "blk.0.ffn_norm.weight", false},
    };
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        n = llama_specs(ts, true);
        struct tspec *t = spec(ts, n, al[i].tensor);
        t->type = al[i].type;
        t->shift = al[i].shift;
        write_llama_a(&b, ts, n, "llama", al[i].align);
        e = (struct sp_err){0};
        struct gguf *g = open_buf(&b, &e);
        CHECK(g != NULL);                      /* the GGUF itself is fine */
        if (g) {
            CHECK_EQ((uintptr_t)gguf_find_tensor(g, al[i].tensor)->data % 32, al[i].shift);
            gguf_close(g);
        }
        m = load_buf(&b, &e);
        CHECK_EQ(m != NULL, al[i].ok);
        if (!al[i].ok) {
            CHECK_EQ(e.code, SP_EFORMAT);
            CHECK(err_ok(&e) && contains(e.msg, al[i].tensor) && contains(e.msg, "aligned"));
        }
        if ((m != NULL) != al[i].ok) fprintf(stderr, "    alignment case %zu: %s\n", i, m ? "loaded" : e.msg);
        model_free(m);
        buf_free(&b);
    }

    /* another architecture */
    n = llama_specs(ts, true);
    write_llama(&b, ts, n, "mamba");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK_EQ(e.code, SP_EUNSUP);
    CHECK(err_ok(&e) && contains(e.msg, "mamba"));
    buf_free(&b);
    /* a hostile architecture string must not break the one-line message */
    write_llama(&b, ts, n, "evil\nline");
    e = (struct sp_err){0};
    m = load_buf(&b, &e);
    CHECK(m == NULL);
    CHECK_EQ(e.code, SP_EUNSUP);
    CHECK(err_ok(&e));
    buf_free(&b);
}

int main(void) {
    RUN(test_stories260k_f32);
    RUN(test_shipped_models);
    RUN(test_vocab_only);
    RUN(test_open_errors);
    RUN(test_truncated_f16);
    RUN(test_truncated_q4_k_m);
    RUN(test_bit_flips);
    RUN(test_hostile_headers);
    RUN(test_crafted_valid);
    RUN(test_crafted_empty);
    RUN(test_model_crafted);
    return check_report();
}
