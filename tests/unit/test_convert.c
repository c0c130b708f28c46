/* test_convert.c - the GGUF writer (engine/gguf_write.c), `sparrow quantize`
 * and `sparrow sparsify` (engine/convert.c), the 2:4 sparse type
 * (kernels/sparse_nm.c) and perplexity (engine/perplexity.c).
 *
 * 1. Writer round trip: every value type, arrays of every element type and of
 *    strings, replaced and deleted keys, tensors of several types at a custom
 *    alignment; read back with gguf_open, every key and tensor byte compared.
 *    Copying every key and tensor of stories260K-f32 gives the same file.
 * 2. quantize: stories260K-f32 -> f16 equals llama.cpp's stories260K-f16
 *    tensor for tensor and greedy token for token; synth15M-f16 -> q8_0/q4_0
 *    load and generate; the row-length fallback rule (stories260K's 172-wide
 *    ffn_down) holds.
 * 3. 2:4: the encoder keeps the two largest of every four; the compressed dot
 *    (portable and AVX-512) equals the dot with the dense expansion (the
 *    oracle) on random rows of awkward lengths; mm_run batched == single.
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
#include "kernels/sparse_nm.h"
#include "kernels/workers.h"
#include "tests/unit/check.h"

#include <stdbool.h>
#include <stdint.h>

static char tmpdir[64];

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
    CHECK_EQ(convert_type_for(QTYPE_S24_F16, 172), QTYPE_F16);
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

/* ------------------------------------------------------------ 3. 2:4 kernels */

static void test_s24_encode_and_dot(void) {
    const struct qtype_info *qi = qtype_get(QTYPE_S24_F16);
    CHECK(qi && qi->block_elems == 32 && qi->block_bytes == 36 && qi->dot_type == QTYPE_F32);
    CHECK(qi && strcmp(qi->name, "s24_f16") == 0);
    CHECK(qtype_get(65) == NULL && qtype_get(63) == NULL);
    if (!qi) return;
    static const int ns[] = { 32, 64, 96, 288, 768, 2080, 5632 };
    const bool avx = s24_f16_dot_avx512(32, (uint8_t[36]){0}, (float[32]){0}) == 0.0f;
    fprintf(stderr, "  s24_f16 vec_dot: %s\n", s24_f16_dot_is_avx512() ? "avx512" : "portable");
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        const int n = ns[k];
        float *w = malloc(sizeof(float) * (size_t)n), *dense = malloc(sizeof(float) * (size_t)n),
              *x = malloc(sizeof(float) * (size_t)n);
        uint8_t *enc = malloc(qtype_row_bytes(QTYPE_S24_F16, n));
        for (int i = 0; i < n; i++) { w[i] = rndf(); x[i] = rndf(); }
        if (k == 1) for (int i = 0; i < n; i += 3) w[i] = 0.0f;     /* ties and zeros */
        qi->from_float(w, enc, n);
        qi->to_float(enc, dense, n);
        int bad = 0;
        for (int gi = 0; gi < n / 4; gi++) {
            int kept = 0;
            float min_kept = INFINITY, max_dropped = 0;
            for (int i = 4 * gi; i < 4 * gi + 4; i++) {
                if (dense[i] != 0.0f) {
                    kept++;
                    if (fabsf(w[i]) < min_kept) min_kept = fabsf(w[i]);
                    bad += dense[i] != qt_f16_to_f32(qt_f32_to_f16(w[i]));
                } else if (fabsf(w[i]) > max_dropped) {
                    max_dropped = fabsf(w[i]);
                }
            }
            bad += kept > 2 || (kept == 2 && max_dropped > min_kept);
        }
        CHECK_EQ(bad, 0);
        double ref = 0;
        for (int i = 0; i < n; i++) ref += (double)dense[i] * x[i];
        const double tol = 1e-5 * n;
        CHECK_NEAR(s24_f16_dot_ref(n, enc, x), ref, tol);
        if (avx) CHECK_NEAR(s24_f16_dot_avx512(n, enc, x), ref, tol);
        CHECK_NEAR(qi->vec_dot(n, enc, x), ref, tol);
        free(w); free(dense); free(x); free(enc);
    }
}

/* mm_run on a 2:4 matrix: every output equals vec_dot of its row, and a
 * token's outputs are the same bits alone or in a batch. */
static void test_s24_matmul_batch_invariant(void) {
    const int64_t n_cols = 288, n_rows = 77;
    const int n_tok = 5;
    const struct qtype_info *qi = qtype_get(QTYPE_S24_F16);
    size_t rb = qtype_row_bytes(QTYPE_S24_F16, n_cols);
    uint8_t *wd = malloc(rb * (size_t)n_rows);
    float *row = malloc(sizeof(float) * (size_t)n_cols), *x = malloc(sizeof(float) * (size_t)(n_cols * n_tok));
    for (int64_t r = 0; r < n_rows; r++) {
        for (int64_t i = 0; i < n_cols; i++) row[i] = rndf();
        qi->from_float(row, wd + (size_t)r * rb, n_cols);
    }
    for (int64_t i = 0; i < n_cols * n_tok; i++) x[i] = rndf();
    struct qtensor w = { wd, QTYPE_S24_F16, n_cols, n_rows };
    struct sp_err err = {0};
    struct workers *wk = workers_create(2, &err);
    float *y = malloc(sizeof(float) * (size_t)(n_rows * n_tok)), *y1 = malloc(sizeof(float) * (size_t)n_rows);
    void *scratch = malloc(mm_scratch_bytes(&w, n_tok));
    mm_run(&w, x, n_tok, y, scratch, wk);
    int bad = 0;
    for (int t = 0; t < n_tok; t++) {
        mm_run(&w, x + t * n_cols, 1, y1, scratch, wk);
        bad += memcmp(y1, y + t * n_rows, sizeof(float) * (size_t)n_rows) != 0;
        for (int64_t r = 0; r < n_rows; r++)
            bad += y1[r] != qi->vec_dot(n_cols, wd + (size_t)r * rb, x + t * n_cols);
    }
    CHECK_EQ(bad, 0);
    workers_free(wk);
    free(scratch); free(y); free(y1); free(wd); free(row); free(x);
}

/* ------------------------------------------------------------ 4. sparsify */

static void test_sparsify_stories(void) {
    struct sp_err err = {0};
    const int skip[1] = { 4 };
    struct convert_opts o = { .type = QTYPE_S24_F16, .layers_only = true, .skip_layers = skip, .n_skip_layers = 1,
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
        CHECK_EQ(count_type(g, QTYPE_S24_F16), 24);
        CHECK_EQ(gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, QTYPE_F32);
        CHECK_EQ(gguf_find_tensor(g, "blk.4.attn_q.weight")->type, QTYPE_F32);
        CHECK_EQ(gguf_find_tensor(g, "blk.3.attn_q.weight")->type, QTYPE_S24_F16);
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
        CHECK_EQ(ty, QTYPE_S24_F16);
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
    struct convert_opts o = { .type = QTYPE_S24_F16, .layers_only = true, .sparse_format = "2:4", .threads = 2 };
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
    RUN(test_s24_encode_and_dot);
    RUN(test_s24_matmul_batch_invariant);
    RUN(test_sparsify_stories);
    RUN(test_perplexity);
    rmdir(tmpdir);
    return check_report();
}
