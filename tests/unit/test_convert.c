/* test_convert.c - the GGUF writer (engine/gguf_write.c), `sparrow quantize`
 * and `sparrow sparsify` (engine/convert.c) and perplexity
 * (engine/perplexity.c).
 *
 * 1. Writer round trip: every value type, arrays of every element type and of
 *    strings, replaced and deleted keys, tensors of several types at a custom
 *    alignment; read back with gguf_open, every key and tensor byte compared.
 *    Copying every key and tensor of stories260K-f32 gives the same file.
 * 2. quantize: stories260K-f32 -> f16 equals llama.cpp's stories260K-f16
 *    tensor for tensor and greedy token for token; synth15M-f16 -> q8_0/q4_0
 *    load and generate; the row-length fallback rule (stories260K's 172-wide
 *    ffn_down) holds.
 * 3. (the sparse kernels are tested in test_sparse.c)
 * 4. sparsify: a pruned stories260K loads, names its format, keeps what it
 *    must dense, and generates exactly the greedy tokens of its dense-with-
 *    zeros expansion; an unknown tensor type is a clear load error.
 * 5. perplexity: stories260K-f32 on the held-out text is finite and plausible,
 *    f16 within 1% of it, the 2:4 model worse.
 * Temp files under /tmp, removed at the end. */
#include "engine/convert.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/perplexity.h"
#include "engine/tokenizer.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/sparse.h"
#include "kernels/workers.h"
#include "tests/unit/check.h"

#include <stdbool.h>
#include <stdint.h>

static char tmpdir[64];

/* The 2:4 F16 sparse type id (kernels/sparse.h). */
static uint32_t s24_type(void) { return sparse_type_id(&(struct sparse_fmt){ 1, 4, 2, SPARSE_VAL_F16 }); }

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

static const char *model_path(const char *file) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/models/%s", check_shared_dir(), file);
    return path;
}

static uint8_t *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    *size = (size_t)n;
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rndf(void) { return (float)(rnd() % 2000001) / 1000000.0f - 1.0f; }

/* ------------------------------------------------------------ 1. writer */

static void test_writer_roundtrip(void) {
    struct gguf_writer *w = gguf_w_new();
    uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000;
    uint32_t u32 = 4000000000u; int32_t i32 = -2000000000; float f32 = 3.25f; uint8_t b = 1;
    uint64_t u64 = 0xFEDCBA9876543210ull; int64_t i64 = -5; double f64 = -1.0 / 3.0;
    const void *vals[] = { &u8, &i8, &u16, &i16, &u32, &i32, &f32, &b, NULL, NULL, &u64, &i64, &f64 };
    char key[64];
    for (int t = 0; t < GGUF_TYPE_COUNT; t++) {
        if (t == GGUF_TYPE_STRING || t == GGUF_TYPE_ARRAY) continue;
        snprintf(key, sizeof(key), "test.scalar.%d", t);
        CHECK_EQ(gguf_w_set_scalar(w, key, (enum gguf_type)t, vals[t]), SP_OK);
        uint8_t arr[5 * 8];
        for (size_t k = 0; k < sizeof(arr); k++) arr[k] = (uint8_t)(k * 37 + (size_t)t);
        if (t == GGUF_TYPE_BOOL) for (size_t k = 0; k < sizeof(arr); k++) arr[k] &= 1;
        snprintf(key, sizeof(key), "test.array.%d", t);
        CHECK_EQ(gguf_w_set_arr(w, key, (enum gguf_type)t, 5, arr), SP_OK);
    }
    CHECK_EQ(gguf_w_set_str(w, "test.string", "hello, gguf", 11), SP_OK);
    CHECK_EQ(gguf_w_set_str(w, "test.empty", "", 0), SP_OK);
    struct gguf_str strs[3] = { {"a", 1}, {"", 0}, {"three", 5} };
    CHECK_EQ(gguf_w_set_arr_str(w, "test.strings", 3, strs), SP_OK);
    CHECK_EQ(gguf_w_set_arr_str(w, "test.no_strings", 0, strs), SP_OK);
    CHECK_EQ(gguf_w_set_u32(w, "test.replaced", 1), SP_OK);
    CHECK_EQ(gguf_w_set_u32(w, "test.deleted", 7), SP_OK);
    CHECK_EQ(gguf_w_set_str(w, "test.replaced", "now a string", 12), SP_OK);
    gguf_w_del(w, "test.deleted");
    CHECK_EQ(gguf_w_set_u32(w, "general.alignment", 64), SP_OK);

    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[64];
    for (int i = 0; i < 64; i++) h[i] = qt_f32_to_f16((float)i / 8);
    float q[64];
    for (int i = 0; i < 64; i++) q[i] = rndf();
    uint8_t q8[2 * 34];
    qtype_get(QTYPE_Q8_0)->from_float(q, q8, 64);
    const int64_t ne_a[2] = {3, 2}, ne_h[2] = {32, 2}, ne_q[1] = {64};
    CHECK_EQ(gguf_w_add_tensor(w, "a", 2, ne_a, QTYPE_F32, a, sizeof(a), false), SP_OK);
    CHECK_EQ(gguf_w_add_tensor(w, "h", 2, ne_h, QTYPE_F16, h, sizeof(h), false), SP_OK);
    CHECK_EQ(gguf_w_add_tensor(w, "q", 1, ne_q, QTYPE_Q8_0, q8, sizeof(q8), false), SP_OK);
    struct sp_err err = {0};
    const char *path = tmp_path("roundtrip.gguf");
    CHECK_EQ(gguf_w_write(w, path, &err), SP_OK);

    struct gguf *g = gguf_open(path, &err);
    CHECK(g != NULL);
    if (!g) { fprintf(stderr, "  %s\n", err.msg); gguf_w_free(w); return; }
    CHECK_EQ(gguf_version(g), 3);
    CHECK_EQ(gguf_alignment(g), 64);
    CHECK_EQ(gguf_find_key(g, "test.deleted"), -1);
    for (int t = 0; t < GGUF_TYPE_COUNT; t++) {
        if (t == GGUF_TYPE_STRING || t == GGUF_TYPE_ARRAY) continue;
        static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        snprintf(key, sizeof(key), "test.scalar.%d", t);
        int64_t i = gguf_find_key(g, key);
        CHECK(i >= 0);
        if (i < 0) continue;
        struct gguf_kv_view v;
        gguf_kv_at(g, i, &v);
        CHECK_EQ(v.type, t);
        CHECK(memcmp(v.data, vals[t], sz[t]) == 0);
        snprintf(key, sizeof(key), "test.array.%d", t);
        gguf_kv_at(g, gguf_find_key(g, key), &v);
        CHECK_EQ(v.type, GGUF_TYPE_ARRAY);
        CHECK_EQ(v.elem_type, t);
        CHECK_EQ(v.n, 5);
        for (size_t k = 0; k < 5 * sz[t]; k++)
            CHECK_EQ(((const uint8_t *)v.data)[k], (uint8_t)(k * 37 + (size_t)t) & (t == GGUF_TYPE_BOOL ? 1 : 0xff));
    }
    struct gguf_str s;
    CHECK_EQ(gguf_get_str(g, "test.string", &s, &err), SP_OK);
    CHECK(gguf_str_eq(s, "hello, gguf"));
    CHECK_EQ(gguf_get_str(g, "test.empty", &s, &err), SP_OK);
    CHECK_EQ(s.len, 0);
    CHECK_EQ(gguf_get_str(g, "test.replaced", &s, &err), SP_OK);
    CHECK(gguf_str_eq(s, "now a string"));
    enum gguf_type et; uint64_t n; const void *d;
    CHECK_EQ(gguf_get_arr(g, "test.strings", &et, &n, &d, &err), SP_OK);
    CHECK_EQ(et, GGUF_TYPE_STRING);
    CHECK_EQ(n, 3);
    for (uint64_t k = 0; k < 3; k++) {
        struct gguf_str e = gguf_get_arr_str(g, "test.strings", k);
        CHECK(e.len == strs[k].len && memcmp(e.ptr, strs[k].ptr, e.len) == 0);
    }
    CHECK_EQ(gguf_get_arr(g, "test.no_strings", &et, &n, &d, &err), SP_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(gguf_n_tensors(g), 3);
    const struct gguf_tensor *ta = gguf_find_tensor(g, "a"), *th = gguf_find_tensor(g, "h"),
                             *tq = gguf_find_tensor(g, "q");
    CHECK(ta && th && tq);
    if (ta && th && tq) {
        CHECK(ta->n_dims == 2 && ta->ne[0] == 3 && ta->ne[1] == 2 && ta->type == QTYPE_F32);
        CHECK(memcmp(ta->data, a, sizeof(a)) == 0);
        CHECK(th->ne[0] == 32 && th->type == QTYPE_F16 && memcmp(th->data, h, sizeof(h)) == 0);
        CHECK(tq->n_dims == 1 && tq->type == QTYPE_Q8_0 && memcmp(tq->data, q8, sizeof(q8)) == 0);
        CHECK_EQ(th->offset % 64, 0);
        CHECK_EQ(tq->offset % 64, 0);
    }
    gguf_close(g);
    /* a size that does not match the shape is refused, nothing written */
    const int64_t ne_bad[2] = {4, 2};
    CHECK_EQ(gguf_w_add_tensor(w, "bad", 2, ne_bad, QTYPE_F32, a, sizeof(a), false), SP_OK);
    CHECK_EQ(gguf_w_write(w, tmp_path("bad.gguf"), &err), SP_EINVAL);
    CHECK(strstr(err.msg, "'bad'") != NULL);
    gguf_w_free(w);
    remove(path);
}

/* Every key and tensor of a llama.cpp file, copied: the same bytes. */
static void test_writer_copy_identical(void) {
    struct sp_err err = {0};
    const char *src = model_path("stories260K-f32.gguf");
    struct gguf *g = gguf_open(src, &err);
    CHECK(g != NULL);
    if (!g) return;
    struct gguf_writer *w = gguf_w_new();
    for (int64_t i = 0; i < (int64_t)gguf_n_kv(g); i++) CHECK_EQ(gguf_w_copy_kv(w, g, i), SP_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_EQ(gguf_w_add_tensor(w, name, t->n_dims, t->ne, t->type, t->data, t->n_bytes, false), SP_OK);
    }
    const char *path = tmp_path("copy.gguf");
    CHECK_EQ(gguf_w_write(w, path, &err), SP_OK);
    gguf_w_free(w);
    gguf_close(g);
    size_t na, nb;
    uint8_t *a = slurp(src, &na), *b = slurp(path, &nb);
    CHECK(a && b && na == nb && memcmp(a, b, na) == 0);
    free(a);
    free(b);
    remove(path);
}

/* ------------------------------------------------------------ helpers */

/* Greedy continuation of `prompt`: n tokens into out; false on any error. */
static bool greedy(const char *path, const char *prompt, int n, int32_t *out) {
    struct sp_err err = {0};
    struct model *m = model_load(path, &err);
    struct tokenizer *tok = m ? tok_create(model_gguf(m), &err) : NULL;
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    float *logits = NULL;
    bool ok = false;
    int32_t toks[256];
    const int n_ctx = 128;
    if (!tok) goto out;
    struct kv_config cfg = { 16, n_ctx / 16, 1, n_ctx };
    if (!(kv = kv_create(model_shape(m), &cfg, &err)) || kv_seq_reserve(kv, 0, n_ctx) != SP_OK ||
        !(f = fwd_create(m, 32, n_ctx, 2, &err)))
        goto out;
    const int nv = model_shape(m)->n_vocab;
    logits = malloc(sizeof(float) * (size_t)nv);
    int np = tok_encode(tok, prompt, strlen(prompt), true, toks, 32, &err);
    if (np <= 0 || !logits) goto out;
    int32_t pos[32], seq[32] = {0};
    bool want[32];
    for (int i = 0; i < np; i++) { pos[i] = i; want[i] = i == np - 1; }
    struct fwd_batch b = { np, toks, pos, seq, want };
    if (fwd_run(f, kv, &b, logits, &err) != SP_OK) goto out;
    for (int i = 0; i < n; i++) {
        int32_t best = 0;
        for (int v = 1; v < nv; v++) if (logits[v] > logits[best]) best = v;
        if (!isfinite(logits[best])) goto out;
        out[i] = best;
        int32_t p = np + i;
        bool yes = true;
        struct fwd_batch one = { 1, &best, &p, seq, &yes };
        if (fwd_run(f, kv, &one, logits, &err) != SP_OK) goto out;
    }
    ok = true;
out:
    if (!ok) fprintf(stderr, "  greedy(%s): %s\n", path, err.msg);
    free(logits);
    fwd_free(f);
    kv_free(kv);
    tok_free(tok);
    model_free(m);
    return ok;
}

static int count_type(const struct gguf *g, uint32_t type) {
    int n = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) n += gguf_tensor_at(g, i)->type == type;
    return n;
}

/* ------------------------------------------------------------ 2. quantize */

static void test_quantize_f16_matches_llamacpp(void) {
    struct sp_err err = {0};
    struct convert_opts o = { .type = QTYPE_F16, .threads = 2 };
    struct convert_stats st;
    const char *out = tmp_path("s260-f16.gguf");
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), out, &o, &st, &err), SP_OK);
    CHECK_EQ(st.n_converted, 37);
    CHECK_EQ(st.n_copied, 11);
    struct gguf *a = gguf_open(out, &err), *b = gguf_open(model_path("stories260K-f16.gguf"), &err);
    CHECK(a && b);
    if (a && b) {
        CHECK_EQ(gguf_n_tensors(a), gguf_n_tensors(b));
        for (uint64_t i = 0; i < gguf_n_tensors(b); i++) {
            const struct gguf_tensor *tb = gguf_tensor_at(b, i);
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)tb->name.len, tb->name.ptr);
            const struct gguf_tensor *ta = gguf_find_tensor(a, name);
            CHECK(ta && ta->type == tb->type && ta->n_bytes == tb->n_bytes &&
                  memcmp(ta->data, tb->data, tb->n_bytes) == 0);
        }
        uint32_t ft = 0;
        CHECK_EQ(gguf_get_u32(a, "general.file_type", &ft, &err), SP_OK);
        CHECK_EQ(ft, 1);
    }
    gguf_close(a);
    gguf_close(b);
    int32_t ta[40], tb[40];
    CHECK(greedy(out, "Once upon a time", 40, ta));
    CHECK(greedy(model_path("stories260K-f16.gguf"), "Once upon a time", 40, tb));
    CHECK(memcmp(ta, tb, sizeof(ta)) == 0);
    remove(out);
}

static void test_quantize_synth15M(void) {
    static const uint32_t types[] = { QTYPE_Q8_0, QTYPE_Q4_0 };
    for (int k = 0; k < 2; k++) {
        struct sp_err err = {0};
        struct convert_opts o = { .type = types[k], .threads = 2 };
        struct convert_stats st;
        const char *out = tmp_path("synth15M-q.gguf");
        CHECK_EQ(convert_model(model_path("synth15M-f16.gguf"), out, &o, &st, &err), SP_OK);
        CHECK_EQ(st.n_converted, 44);
        CHECK_EQ(st.n_fallback, 0);
        struct gguf *g = gguf_open(out, &err);
        CHECK(g && count_type(g, types[k]) == 44 && count_type(g, QTYPE_F32) == 13);
        uint32_t ft = 0;
        if (g) CHECK_EQ(gguf_get_u32(g, "general.file_type", &ft, &err), SP_OK);
        CHECK_EQ(ft, types[k] == QTYPE_Q8_0 ? 7 : 2);
        gguf_close(g);
        int32_t toks[8];
        CHECK(greedy(out, "Once upon a time", 8, toks));
        remove(out);
    }
}

static void test_quantize_fallback(void) {
    CHECK_EQ(convert_type_for(QTYPE_Q4_K, 256), QTYPE_Q4_K);
    CHECK_EQ(convert_type_for(QTYPE_Q4_K, 288), QTYPE_Q5_0);
    CHECK_EQ(convert_type_for(QTYPE_Q6_K, 288), QTYPE_Q8_0);
    CHECK_EQ(convert_type_for(QTYPE_Q4_K, 172), QTYPE_F16);
    CHECK_EQ(convert_type_for(QTYPE_Q4_0, 172), QTYPE_F16);
    CHECK_EQ(convert_type_for(QTYPE_F16, 172), QTYPE_F16);
    CHECK_EQ(convert_type_for(s24_type(), 172), QTYPE_F16);
    /* stories260K: ffn_down rows are 172 wide -> f16, the rest q4_0 */
    struct sp_err err = {0};
    struct convert_opts o = { .type = QTYPE_Q4_0, .threads = 1 };
    struct convert_stats st;
    const char *out = tmp_path("s260-q4_0.gguf");
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), out, &o, &st, &err), SP_OK);
    CHECK_EQ(st.n_fallback, 5);
    struct gguf *g = gguf_open(out, &err);
    CHECK(g && gguf_find_tensor(g, "blk.2.ffn_down.weight")->type == QTYPE_F16 &&
          gguf_find_tensor(g, "blk.2.ffn_up.weight")->type == QTYPE_Q4_0);
    gguf_close(g);
    int32_t toks[8];
    CHECK(greedy(out, "Once upon a time", 8, toks));
    CHECK_EQ(convert_type_by_name("Q4_K"), QTYPE_Q4_K);
    CHECK_EQ(convert_type_by_name("q3_k"), -1);
    remove(out);
}

/* ------------------------------------------------------------ 4. sparsify */

static void test_sparsify_stories(void) {
    struct sp_err err = {0};
    const int skip[1] = { 4 };
    struct convert_opts o = { .type = s24_type(), .layers_only = true, .skip_layers = skip, .n_skip_layers = 1,
                              .sparse_format = "2:4", .sparse_method = "magnitude", .threads = 2 };
    struct convert_stats st;
    const char *sp = tmp_path("s260-s24.gguf"), *dz = tmp_path("s260-s24-dense.gguf");
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), sp, &o, &st, &err), SP_OK);
    CHECK_EQ(st.n_converted, 24);       /* 4 layers x 6 matrices 64 wide (ffn_down is 172) */
    struct gguf *g = gguf_open(sp, &err);
    CHECK(g != NULL);
    if (g) {
        struct gguf_str fmt;
        CHECK_EQ(gguf_get_str(g, "sparrow.sparse.format", &fmt, &err), SP_OK);
        CHECK(gguf_str_eq(fmt, "2:4"));
        CHECK_EQ(count_type(g, s24_type()), 24);
        CHECK_EQ(gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, QTYPE_F32);
        CHECK_EQ(gguf_find_tensor(g, "blk.4.attn_q.weight")->type, QTYPE_F32);
        CHECK_EQ(gguf_find_tensor(g, "blk.3.attn_q.weight")->type, s24_type());
        CHECK_EQ(gguf_find_tensor(g, "token_embd.weight")->type, QTYPE_F32);
        gguf_close(g);
    }
    /* the dense-with-zeros reference: the same pruned weights expanded to f32 */
    struct convert_opts od = { .type = QTYPE_F32, .threads = 2 };
    CHECK_EQ(convert_model(sp, dz, &od, &st, &err), SP_OK);
    int32_t a[40], b[40];
    CHECK(greedy(sp, "Once upon a time", 40, a));
    CHECK(greedy(dz, "Once upon a time", 40, b));
    CHECK(memcmp(a, b, sizeof(a)) == 0);

    /* a build that lacks a type: patch blk.0.attn_q.weight's type id to 99 */
    size_t n;
    uint8_t *buf = slurp(sp, &n);
    const char *name = "blk.0.attn_q.weight";
    uint8_t *p = buf ? memmem(buf, n, name, strlen(name)) : NULL;
    CHECK(p != NULL);
    if (p) {
        p += strlen(name);
        uint32_t nd;
        memcpy(&nd, p, 4);
        p += 4 + 8 * nd;
        uint32_t ty;
        memcpy(&ty, p, 4);
        CHECK_EQ(ty, s24_type());
        ty = 99;
        memcpy(p, &ty, 4);
        FILE *f = fopen(dz, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        struct model *m = model_load(dz, &err);
        CHECK(m == NULL);
        CHECK(strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "unknown type 99"));
        model_free(m);
    }
    free(buf);
    remove(sp);
    remove(dz);
}

/* The sparse flags of `sparrow sparsify` (convert_parse_sparse) and the
 * per-tensor block format choice. */
static void test_sparse_parse(void) {
    struct convert_sparse sp;
    char name[64], msg[256];
#define OK(f, b, s, q) (convert_parse_sparse(f, b, s, q, &sp, name, sizeof(name), msg, sizeof(msg)) == 0)
    CHECK(OK("2:4", NULL, NULL, NULL) && sp.fmt.b == 1 && sp.fmt.n == 2 && sp.fmt.m == 4 && sp.v <= 1 &&
          sp.fmt.val == SPARSE_VAL_F16 && !strcmp(name, "2:4"));
    CHECK(OK("4:8", NULL, "0.5", "q8") && sp.fmt.n == 4 && sp.fmt.m == 8 && sp.fmt.val == SPARSE_VAL_Q8);
    CHECK(OK("1:16", NULL, "93.75%", "q4") && sp.fmt.n == 1 && sp.fmt.m == 16 && sp.fmt.val == SPARSE_VAL_Q4);
    CHECK(OK("n:8", NULL, "75%", NULL) && sp.fmt.n == 2 && sp.fmt.m == 8 && !strcmp(name, "2:8"));
    CHECK(OK("n:m", NULL, "0.5", NULL) && sp.fmt.n == 2 && sp.fmt.m == 4 && !strcmp(name, "2:4"));
    CHECK(OK("n:m", NULL, "0.75", NULL) && sp.fmt.n == 1 && sp.fmt.m == 4);
    CHECK(OK("n:m", NULL, "0.875", NULL) && sp.fmt.n == 1 && sp.fmt.m == 8);
    CHECK(OK("n:m", NULL, "0.7", NULL) && sp.fmt.n == 5 && sp.fmt.m == 16);
    CHECK(OK("64:2:8", NULL, NULL, NULL) && sp.v == 64 && sp.fmt.n == 2 && sp.fmt.m == 8 && !strcmp(name, "64:2:8"));
    CHECK(OK("8:2:4", NULL, "0.5", "q8") && sp.v == 8 && sp.fmt.m == 4);
    CHECK(OK("block", "1x4", "0.75", NULL) && sp.fmt.b == 4 && !strcmp(name, "1x4:75%"));
    CHECK(OK("block", NULL, "60%", NULL) && sp.fmt.b == 16 && !strcmp(name, "1x16:60%"));
    CHECK(OK("1x8", NULL, "0.5", "q4") && sp.fmt.b == 8 && sp.fmt.val == SPARSE_VAL_Q4);
    static const char *const bad[][4] = {
        { "2:8", NULL, "0.5", NULL },      /* sparsity disagrees with N:M */
        { "5:4", NULL, NULL, NULL }, { "2:17", NULL, NULL, NULL }, { "0:4", NULL, NULL, NULL },
        { "2:4:", NULL, NULL, NULL }, { ":4", NULL, NULL, NULL }, { "2-4", NULL, NULL, NULL },
        { "abc", NULL, NULL, NULL }, { "1:2:3:4", NULL, NULL, NULL },
        { "8:3:8", NULL, NULL, NULL },     /* V:N:M needs N = 2 */
        { "8:2:3", NULL, NULL, NULL }, { "8:2:17", NULL, NULL, NULL }, { "1:2:8", NULL, NULL, NULL },
        { "64:2:8", NULL, "0.5", NULL },   /* 2:8 is 75% */
        { "n:8", NULL, NULL, NULL }, { "n:m", NULL, NULL, NULL },
        { "block", NULL, NULL, NULL },     /* block needs --sparsity */
        { "block", "1x3", "0.5", NULL }, { "block", "2x4", "0.5", NULL }, { "1x32", NULL, "0.5", NULL },
        { "2:4", "1x4", NULL, NULL },      /* --block with N:M */
        { "1x4", "1x8", "0.5", NULL },
        { "2:4", NULL, NULL, "q5" }, { "2:4", NULL, "1.5", NULL }, { "block", NULL, "0", NULL },
        { "block", NULL, "100%", NULL }, { "block", NULL, "x", NULL },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const bool ok = OK(bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
        if (ok) fprintf(stderr, "  accepted: --format %s --block %s --sparsity %s --quant %s\n", bad[i][0],
                        bad[i][1] ? bad[i][1] : "-", bad[i][2] ? bad[i][2] : "-", bad[i][3] ? bad[i][3] : "-");
        CHECK(!ok && msg[0]);
    }
#undef OK
    /* block groups: 256 columns if the row allows, else 128, else 64 */
    struct sparse_fmt f;
    CHECK(convert_block_fmt(16, 0.75, SPARSE_VAL_F16, 4096, &f) && f.m == 16 && f.n == 4);
    CHECK(convert_block_fmt(4, 0.5, SPARSE_VAL_F16, 64, &f) && f.m == 16 && f.n == 8);
    CHECK(convert_block_fmt(16, 0.5, SPARSE_VAL_F16, 64, &f) && f.m == 4 && f.n == 2);
    CHECK(!convert_block_fmt(16, 0.75, SPARSE_VAL_F16, 64, &f));   /* 75% needs 128-column super-blocks */
    CHECK(!convert_block_fmt(4, 0.5, SPARSE_VAL_F16, 172, &f));
    CHECK(convert_block_fmt(8, 0.9, SPARSE_VAL_F16, 4096, &f) && f.m == 32 && f.n == 3);
}

/* Token path and logits of a greedy run (forced: feed these tokens instead
 * of the argmax); logits: n x n_vocab. False on any error. */
static bool decode_path(const char *path, const char *prompt, int n, const int32_t *forced, int32_t *out,
                        float *logits_out, int *n_vocab) {
    struct sp_err err = {0};
    struct model *m = model_load(path, &err);
    struct tokenizer *tok = m ? tok_create(model_gguf(m), &err) : NULL;
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    float *logits = NULL;
    bool ok = false;
    int32_t toks[64];
    const int n_ctx = 128;
    if (!tok) goto out;
    struct kv_config cfg = { 16, n_ctx / 16, 1, n_ctx };
    if (!(kv = kv_create(model_shape(m), &cfg, &err)) || kv_seq_reserve(kv, 0, n_ctx) != SP_OK ||
        !(f = fwd_create(m, 32, n_ctx, 2, &err)))
        goto out;
    const int nv = model_shape(m)->n_vocab;
    *n_vocab = nv;
    logits = malloc(sizeof(float) * (size_t)nv);
    int np = tok_encode(tok, prompt, strlen(prompt), true, toks, 32, &err);
    if (np <= 0 || !logits || np + n > n_ctx) goto out;
    int32_t pos[32], seq[32] = {0};
    bool want[32];
    for (int i = 0; i < np; i++) { pos[i] = i; want[i] = i == np - 1; }
    struct fwd_batch b = { np, toks, pos, seq, want };
    if (fwd_run(f, kv, &b, logits, &err) != SP_OK) goto out;
    for (int i = 0; i < n; i++) {
        int32_t best = 0;
        for (int v = 1; v < nv; v++) if (logits[v] > logits[best]) best = v;
        if (!isfinite(logits[best])) goto out;
        if (logits_out) memcpy(logits_out + (size_t)i * (size_t)nv, logits, sizeof(float) * (size_t)nv);
        out[i] = best;
        int32_t next = forced ? forced[i] : best;
        int32_t p = np + i;
        bool yes = true;
        struct fwd_batch one = { 1, &next, &p, seq, &yes };
        if (fwd_run(f, kv, &one, logits, &err) != SP_OK) goto out;
    }
    ok = true;
out:
    if (!ok) fprintf(stderr, "  decode_path(%s): %s\n", path, err.msg);
    free(logits);
    fwd_free(f);
    kv_free(kv);
    tok_free(tok);
    model_free(m);
    return ok;
}

/* The sparse file and its dense-with-zeros expansion generate the same greedy
 * tokens. The values are identical, only the summation order differs: should
 * a near-tie flip a token, the expansion is forced along the sparse path and
 * every step's logits must agree within 1e-3 instead (reported). */
static void check_same_generation(const char *sparse, const char *dense, int n) {
    int32_t a[64], b[64];
    int nv = 0;
    CHECK(n <= 64);
    CHECK(decode_path(sparse, "Once upon a time", n, NULL, a, NULL, &nv));
    CHECK(decode_path(dense, "Once upon a time", n, NULL, b, NULL, &nv));
    if (memcmp(a, b, sizeof(int32_t) * (size_t)n) == 0) return;
    fprintf(stderr, "  %s: greedy tokens differ from the expansion; comparing logits along one path\n", sparse);
    float *la = malloc(sizeof(float) * (size_t)n * (size_t)nv), *lb = malloc(sizeof(float) * (size_t)n * (size_t)nv);
    CHECK(decode_path(sparse, "Once upon a time", n, a, b, la, &nv));
    CHECK(decode_path(dense, "Once upon a time", n, a, b, lb, &nv));
    double worst = 0;
    for (size_t i = 0; i < (size_t)n * (size_t)nv; i++) worst = fmax(worst, fabs((double)la[i] - lb[i]));
    fprintf(stderr, "  max |logit difference| %.3g\n", worst);
    CHECK(worst < 1e-3);
    free(la);
    free(lb);
}

static bool is_sparse_type(uint32_t t) {
    struct sparse_fmt f;
    return sparse_fmt_of(t, &f);
}

struct sp_case {
    const char *model, *format, *block, *sparsity, *quant;
    int n_pruned;           /* tensors expected pruned */
    double sparsity_want;   /* structural sparsity of the pruned tensors */
    int n_gen;              /* greedy tokens compared */
};

/* One format: sparsify, check metadata, types, the pattern and the achieved
 * sparsity of the dense expansion (zeros counted), and the generation. */
static void sparsify_case(const struct sp_case *c) {
    struct sp_err err = {0};
    struct convert_sparse sp;
    char name[64], msg[256];
    fprintf(stderr, "  %s --format %s%s%s%s%s --quant %s\n", c->model, c->format, c->block ? " --block " : "",
            c->block ? c->block : "", c->sparsity ? " --sparsity " : "", c->sparsity ? c->sparsity : "", c->quant);
    CHECK_EQ(convert_parse_sparse(c->format, c->block, c->sparsity, c->quant, &sp, name, sizeof(name), msg, sizeof(msg)), 0);
    struct convert_opts o = { .layers_only = true, .sparse = &sp, .sparse_format = name, .threads = 2 };
    struct convert_stats st;
    const char *spath = tmp_path("case-sparse.gguf"), *dpath = tmp_path("case-dense.gguf");
    CHECK_EQ(convert_model(model_path(c->model), spath, &o, &st, &err), SP_OK);
    CHECK_EQ(st.n_converted, c->n_pruned);
    CHECK_NEAR(st.sparsity, c->n_pruned ? c->sparsity_want : 0.0, 1e-9);
    struct convert_opts od = { .type = QTYPE_F32, .threads = 2 };
    CHECK_EQ(convert_model(spath, dpath, &od, NULL, &err), SP_OK);
    struct gguf *g = gguf_open(spath, &err), *d = gguf_open(dpath, &err);
    CHECK(g && d);
    if (!g || !d) { gguf_close(g); gguf_close(d); return; }
    struct gguf_str s;
    CHECK(gguf_get_str(g, "sparrow.sparse.format", &s, &err) == SP_OK && gguf_str_eq(s, name));
    CHECK(gguf_get_str(g, "sparrow.sparse.method", &s, &err) == SP_OK && gguf_str_eq(s, "magnitude"));
    CHECK(gguf_get_str(g, "sparrow.sparse.values", &s, &err) == SP_OK && gguf_str_eq(s, c->quant));
    int64_t ki = gguf_find_key(g, "sparrow.sparse.sparsity");
    CHECK(ki >= 0);
    if (ki >= 0) {
        struct gguf_kv_view v;
        gguf_kv_at(g, ki, &v);
        CHECK_EQ(v.type, GGUF_TYPE_FLOAT32);
        float x;
        memcpy(&x, v.data, 4);
        CHECK_NEAR(x, st.sparsity, 1e-6);
    }
    CHECK_EQ(gguf_find_key(d, "sparrow.sparse.format"), -1);    /* the expansion is dense */
    int n_sparse = 0;
    uint64_t zeros = 0, elems = 0;
    int bad_pattern = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        char tn[128];
        snprintf(tn, sizeof(tn), "%.*s", (int)t->name.len, t->name.ptr);
        const struct gguf_tensor *td = gguf_find_tensor(d, tn);
        CHECK(td && td->type == (is_sparse_type(t->type) || t->n_dims == 2 ? QTYPE_F32 : t->type));
        struct sparse_fmt f;
        if (!sparse_fmt_of(t->type, &f) || !td) {
            CHECK(!(t->n_dims == 2 && strncmp(tn, "blk.", 4) == 0 &&
                    t->ne[0] % (sp.fmt.b > 1 ? 64 : sparse_block_elems(&sp.fmt)) == 0 && sp.fmt.b == 1));
            continue;
        }
        n_sparse++;
        CHECK_EQ(f.val, sp.fmt.val);
        CHECK(f.b == sp.fmt.b && (f.b > 1 || (f.n == sp.fmt.n && f.m == sp.fmt.m)));
        const float *w = td->data;
        const int64_t nc = t->ne[0], nr = t->ne[1];
        for (int64_t k = 0; k < nc * nr; k++) zeros += w[k] == 0.0f;
        elems += (uint64_t)(nc * nr);
        /* the pattern: at most n of every m blocks nonzero; V:N:M strips share <= 4 columns a group */
        const int span = f.m * f.b;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t g0 = 0; g0 < nc; g0 += span) {
                int kept = 0;
                for (int j = 0; j < f.m; j++) {
                    bool any = false;
                    for (int e = 0; e < f.b; e++) any |= w[r * nc + g0 + j * f.b + e] != 0.0f;
                    kept += any;
                }
                bad_pattern += kept > f.n;
            }
        if (sp.v > 1)
            for (int64_t r0 = 0; r0 < nr; r0 += sp.v)
                for (int64_t g0 = 0; g0 < nc; g0 += f.m) {
                    int cols = 0;
                    for (int j = 0; j < f.m; j++) {
                        bool any = false;
                        for (int64_t r = r0; r < r0 + sp.v && r < nr; r++) any |= w[r * nc + g0 + j] != 0.0f;
                        cols += any;
                    }
                    bad_pattern += cols > 4;
                }
    }
    CHECK_EQ(n_sparse, c->n_pruned);
    CHECK_EQ(bad_pattern, 0);
    if (elems) {
        const double z = (double)zeros / (double)elems;
        fprintf(stderr, "    %d tensors pruned, zeros in the expansion %.4f (structural %.4f)\n", n_sparse, z,
                c->sparsity_want);
        CHECK(z >= c->sparsity_want - 1e-9);
        /* quantized kept values may round to zero; F16 ones (almost) never */
        CHECK(z <= c->sparsity_want + (sp.fmt.val == SPARSE_VAL_F16 ? 0.001 : 0.2));
    }
    gguf_close(g);
    gguf_close(d);
    if (c->n_gen) check_same_generation(spath, dpath, c->n_gen);
    remove(spath);
    remove(dpath);
}

static void test_sparsify_formats(void) {
    /* stories260K: every layer matrix is 64 wide except ffn_down (172, never
     * a multiple of a super-block); 2:8, 8:2:8 and 1x16 at 75% need rows of
     * 128 (a super-block keeps a multiple of 32 values), so they prune nothing
     * here: synth15M (288 and 768 wide) covers them. */
    static const struct sp_case cases[] = {
        { "stories260K-f32.gguf", "2:4", NULL, NULL, "f16", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "2:4", NULL, NULL, "q8", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "4:8", NULL, NULL, "f16", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "4:8", NULL, "0.5", "q4", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "16:2:4", NULL, NULL, "f16", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "block", "1x4", "0.5", "f16", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "block", "1x4", "0.5", "q8", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "1x16", NULL, "50%", "f16", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "1x16", NULL, "50%", "q4", 30, 0.5, 40 },
        { "stories260K-f32.gguf", "2:8", NULL, NULL, "f16", 0, 0.75, 0 },
        { "stories260K-f32.gguf", "8:2:8", NULL, NULL, "f16", 0, 0.75, 0 },
        { "stories260K-f32.gguf", "1x16", NULL, "0.75", "f16", 0, 0.75, 0 },
        /* synth15M: 6 layers; 2:8 fits ffn_down (768) only; 2:6 (96) fits all 7 */
        { "synth15M-f16.gguf", "2:8", NULL, NULL, "q8", 6, 0.75, 12 },
        { "synth15M-f16.gguf", "8:2:8", NULL, NULL, "f16", 6, 0.75, 12 },
        { "synth15M-f16.gguf", "64:2:6", NULL, NULL, "q4", 42, 2.0 / 3.0, 12 },
        { "synth15M-f16.gguf", "1x16", NULL, "0.75", "f16", 6, 0.75, 12 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) sparsify_case(&cases[i]);
}

/* Threads never change the bytes; V:N:M with M = 4 is 2:4 (the strip keeps
 * all four columns); a bad target is refused. */
static void test_sparsify_deterministic(void) {
    struct sp_err err = {0};
    struct convert_sparse a, b;
    char na[64], nb[64], msg[256];
    CHECK_EQ(convert_parse_sparse("2:4", NULL, NULL, NULL, &a, na, sizeof(na), msg, sizeof(msg)), 0);
    CHECK_EQ(convert_parse_sparse("16:2:4", NULL, NULL, NULL, &b, nb, sizeof(nb), msg, sizeof(msg)), 0);
    const char *p1 = tmp_path("det1.gguf"), *p2 = tmp_path("det2.gguf"), *p3 = tmp_path("det3.gguf");
    struct convert_opts o = { .layers_only = true, .sparse = &a, .sparse_format = na, .threads = 1 };
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), p1, &o, NULL, &err), SP_OK);
    o.threads = 3;
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), p2, &o, NULL, &err), SP_OK);
    o.sparse = &b;
    o.sparse_format = nb;
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), p3, &o, NULL, &err), SP_OK);
    size_t n1, n2;
    uint8_t *f1 = slurp(p1, &n1), *f2 = slurp(p2, &n2);
    CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0);
    free(f1);
    free(f2);
    struct gguf *g1 = gguf_open(p1, &err), *g3 = gguf_open(p3, &err);
    CHECK(g1 && g3);
    for (uint64_t i = 0; g1 && g3 && i < gguf_n_tensors(g1); i++) {
        const struct gguf_tensor *t1 = gguf_tensor_at(g1, i), *t3 = gguf_tensor_at(g3, i);
        CHECK(t1->type == t3->type && t1->n_bytes == t3->n_bytes && memcmp(t1->data, t3->data, t1->n_bytes) == 0);
    }
    gguf_close(g1);
    gguf_close(g3);
    /* V:N:M strips over several threads: the same bytes */
    CHECK_EQ(convert_parse_sparse("8:2:6", NULL, NULL, "q8", &b, nb, sizeof(nb), msg, sizeof(msg)), 0);
    o.sparse = &b;
    o.sparse_format = nb;
    o.threads = 1;
    CHECK_EQ(convert_model(model_path("synth15M-q8_0.gguf"), p1, &o, NULL, &err), SP_OK);
    o.threads = 2;
    CHECK_EQ(convert_model(model_path("synth15M-q8_0.gguf"), p2, &o, NULL, &err), SP_OK);
    f1 = slurp(p1, &n1);
    f2 = slurp(p2, &n2);
    CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0);
    free(f1);
    free(f2);
    /* a format no type exists for */
    struct convert_sparse bad = { .fmt = { 1, 17, 2, SPARSE_VAL_F16 } };
    o.sparse = &bad;
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), p3, &o, NULL, &err), SP_EINVAL);
    remove(p1);
    remove(p2);
    remove(p3);
}

/* ------------------------------------------------------------ Wanda */

static char *heldout(size_t *len) {
    char tp[512];
    snprintf(tp, sizeof(tp), "%s/testdata/text/stories-heldout.txt", check_shared_dir());
    return (char *)slurp(tp, len);
}

static double ppl_text(const char *path, const char *text, size_t len) {
    struct sp_err err = {0};
    struct model *m = model_load(path, &err);
    struct tokenizer *tok = m ? tok_create(model_gguf(m), &err) : NULL;
    struct ppl_result r = {0};
    int rc = tok ? ppl_run(m, tok, text, len, 256, 0, 0, 2, NULL, NULL, &r, &err) : SP_EINVAL;
    if (rc != SP_OK) fprintf(stderr, "  ppl(%s): %s\n", path, err.msg);
    CHECK_EQ(rc, SP_OK);
    tok_free(tok);
    model_free(m);
    return rc == SP_OK ? r.ppl : NAN;
}

/* Tensor bytes of two files differ somewhere (same names and types). */
static int n_tensors_differ(const char *pa, const char *pb) {
    struct sp_err err = {0};
    struct gguf *a = gguf_open(pa, &err), *b = gguf_open(pb, &err);
    int n = -1;
    if (a && b) {
        n = 0;
        for (uint64_t i = 0; i < gguf_n_tensors(a); i++) {
            const struct gguf_tensor *ta = gguf_tensor_at(a, i), *tb = gguf_tensor_at(b, i);
            n += ta->n_bytes != tb->n_bytes || memcmp(ta->data, tb->data, ta->n_bytes) != 0;
        }
    }
    gguf_close(a);
    gguf_close(b);
    return n;
}

/* Wanda: calibrate on the first half of the held-out text, evaluate on the
 * second (calibrating on the evaluation text would leak). */
static void test_wanda(void) {
    size_t len;
    char *text = heldout(&len);
    CHECK(text != NULL);
    if (!text) return;
    size_t half = len / 2;
    while (half < len && text[half] != '\n') half++;
    const char *eval = text + half;
    const size_t eval_len = len - half;
    struct sp_err err = {0};
    struct convert_calib *cal = NULL;
    const char *dense = model_path("stories260K-f32.gguf");
    CHECK_EQ(convert_calibrate(dense, text, half, 0, 2, &cal, &err), SP_OK);
    if (!cal) { fprintf(stderr, "  %s\n", err.msg); free(text); return; }
    fprintf(stderr, "  calibrated on %d tokens\n", convert_calib_tokens(cal));
    CHECK(convert_calib_tokens(cal) > 1000);
    static const char *const names[] = { "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.attn_v.weight",
                                         "blk.2.attn_output.weight", "blk.3.ffn_gate.weight",
                                         "blk.4.ffn_up.weight", "blk.4.ffn_down.weight" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const int64_t nc = strstr(names[i], "ffn_down") ? 172 : 64;
        const float *nrm = convert_calib_norm(cal, names[i], nc);
        CHECK(nrm != NULL);
        int bad = 0;
        for (int64_t c = 0; nrm && c < nc; c++) bad += !(isfinite(nrm[c]) && nrm[c] > 0.0f);
        CHECK_EQ(bad, 0);
        CHECK(convert_calib_norm(cal, names[i], nc + 1) == NULL);
    }
    /* q, k and v read the same input */
    CHECK(convert_calib_norm(cal, "blk.0.attn_q.weight", 64) == convert_calib_norm(cal, "blk.0.attn_v.weight", 64));
    CHECK(convert_calib_norm(cal, "token_embd.weight", 64) == NULL);
    CHECK(convert_calib_norm(cal, "blk.5.attn_q.weight", 64) == NULL);
    CHECK(convert_calib_norm(cal, "output.weight", 64) == NULL);

    const char *pm = tmp_path("mag.gguf"), *pw = tmp_path("wanda.gguf"), *pd = tmp_path("wanda-dense.gguf");
    struct convert_sparse sp;
    char name[64], msg[256];
    const char *fmts[][3] = { { "2:4", NULL, NULL }, { "block", "1x4", "0.5" }, { "1x16", NULL, "0.5" } };
    double pdense = ppl_text(dense, eval, eval_len);
    fprintf(stderr, "  stories260K ppl on the second half of the held-out text: dense %.4f\n", pdense);
    for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
        CHECK_EQ(convert_parse_sparse(fmts[k][0], fmts[k][1], fmts[k][2], "f16", &sp, name, sizeof(name), msg,
                                      sizeof(msg)), 0);
        struct convert_opts o = { .layers_only = true, .sparse = &sp, .sparse_format = name,
                                  .sparse_method = "magnitude", .threads = 2 };
        CHECK_EQ(convert_model(dense, pm, &o, NULL, &err), SP_OK);
        o.calib = cal;
        o.sparse_method = "wanda";
        CHECK_EQ(convert_model(dense, pw, &o, NULL, &err), SP_OK);
        CHECK(n_tensors_differ(pm, pw) > 0);
        const double p_mag = ppl_text(pm, eval, eval_len), p_wanda = ppl_text(pw, eval, eval_len);
        fprintf(stderr, "  %s: magnitude %.4f, wanda %.4f\n", name, p_mag, p_wanda);
        CHECK(p_mag > pdense && p_wanda > pdense);
        if (k == 0) {
            CHECK(p_wanda < p_mag);
            struct gguf *g = gguf_open(pw, &err);
            struct gguf_str s;
            CHECK(g && gguf_get_str(g, "sparrow.sparse.method", &s, &err) == SP_OK && gguf_str_eq(s, "wanda"));
            gguf_close(g);
            struct convert_opts od = { .type = QTYPE_F32, .threads = 2 };
            CHECK_EQ(convert_model(pw, pd, &od, NULL, &err), SP_OK);
            check_same_generation(pw, pd, 40);
        }
    }
    /* too little text, and a file that is not a model */
    struct convert_calib *c2 = NULL;
    CHECK(convert_calibrate(dense, "", 0, 0, 2, &c2, &err) != SP_OK && c2 == NULL);
    CHECK(convert_calibrate(tmp_path("missing.gguf"), text, 100, 0, 2, &c2, &err) != SP_OK && c2 == NULL);
    convert_calib_free(cal);
    free(text);
    remove(pm);
    remove(pw);
    remove(pd);
}

/* ------------------------------------------------------------ 5. perplexity */

static double ppl_of(const char *path, int chunks) {
    struct sp_err err = {0};
    char tp[512];
    snprintf(tp, sizeof(tp), "%s/testdata/text/stories-heldout.txt", check_shared_dir());
    size_t len;
    char *text = (char *)slurp(tp, &len);
    struct model *m = model_load(path, &err);
    struct tokenizer *tok = m ? tok_create(model_gguf(m), &err) : NULL;
    struct ppl_result r = {0};
    int rc = text && tok ? ppl_run(m, tok, text, len, 256, chunks, 0, 2, NULL, NULL, &r, &err) : SP_EINVAL;
    if (rc != SP_OK) fprintf(stderr, "  ppl(%s): %s\n", path, err.msg);
    CHECK_EQ(rc, SP_OK);
    CHECK_EQ(r.n_chunk, chunks);
    CHECK_EQ(r.n_scored, chunks * (256 - 1 - 128));
    /* too short a text is refused as llama-perplexity does */
    if (tok) CHECK_EQ(ppl_run(m, tok, text, 400, 256, 0, 0, 2, NULL, NULL, &r, &err), SP_ERANGE);
    tok_free(tok);
    model_free(m);
    free(text);
    return rc == SP_OK ? r.ppl : NAN;
}

static void test_perplexity(void) {
    double p32 = ppl_of(model_path("stories260K-f32.gguf"), 16);
    double p16 = ppl_of(model_path("stories260K-f16.gguf"), 16);
    fprintf(stderr, "  stories260K ppl (16 chunks of 256): f32 %.4f, f16 %.4f\n", p32, p16);
    CHECK(isfinite(p32) && p32 > 1.0 && p32 < 50.0);
    CHECK(fabs(p16 - p32) / p32 < 0.01);
    struct sp_err err = {0};
    struct convert_opts o = { .type = s24_type(), .layers_only = true, .sparse_format = "2:4", .threads = 2 };
    const char *sp = tmp_path("s260-s24-ppl.gguf");
    CHECK_EQ(convert_model(model_path("stories260K-f32.gguf"), sp, &o, NULL, &err), SP_OK);
    double ps = ppl_of(sp, 16);
    fprintf(stderr, "  stories260K 2:4 magnitude ppl: %.4f\n", ps);
    CHECK(isfinite(ps) && ps > p32);
    remove(sp);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_convert_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(test_writer_roundtrip);
    RUN(test_writer_copy_identical);
    RUN(test_quantize_f16_matches_llamacpp);
    RUN(test_quantize_synth15M);
    RUN(test_quantize_fallback);
    RUN(test_sparse_parse);
    RUN(test_sparsify_stories);
    RUN(test_sparsify_formats);
    RUN(test_sparsify_deterministic);
    RUN(test_wanda);
    RUN(test_perplexity);
    rmdir(tmpdir);
    return check_report();
}
