/* fuzz_gguf.c - libFuzzer harness for the GGUF reader (engine/gguf.c), the
 * model loader and the tokenizer's vocab loading: the fuzz bytes are a file
 * (a memfd); gguf_open it, read every key with every typed getter, every
 * element of every array, every byte range of every tensor; then tok_create
 * on it and model_load of the same file. A hostile file must be an error,
 * never a crash, a hang or an out-of-bounds read. */
#include "tests/fuzz/fuzz_common.h"

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

static volatile uint8_t sink;

static void touch(const void *p, uint64_t n) {
    if (n == 0) return;
    const uint8_t *b = p;
    sink ^= b[0];
    sink ^= b[n - 1];
}

static void walk(const struct gguf *g) {
    struct sp_err err;
    const uint64_t n_kv = gguf_n_kv(g);
    for (uint64_t i = 0; i < n_kv; i++) {
        struct gguf_str k = gguf_key_name(g, (int64_t)i);
        touch(k.ptr, k.len);
        char key[256];
        if (k.len >= sizeof(key)) continue;
        memcpy(key, k.ptr, k.len);
        key[k.len] = 0;
        uint32_t u; float f; bool b; struct gguf_str s;
        (void)gguf_get_u32(g, key, &u, &err);
        (void)gguf_get_f32(g, key, &f, &err);
        (void)gguf_get_bool(g, key, &b, &err);
        if (gguf_get_str(g, key, &s, &err) == SP_OK) touch(s.ptr, s.len);
        enum gguf_type et;
        uint64_t n;
        const void *data;
        if (gguf_get_arr(g, key, &et, &n, &data, &err) != SP_OK) continue;
        if (et == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                struct gguf_str e = gguf_get_arr_str(g, key, j);
                touch(e.ptr, e.len);
            }
        } else if (n > 0) {
            FUZZ_REQUIRE(data != NULL);
            touch(data, 1);
        }
    }
    const uint64_t n_t = gguf_n_tensors(g);
    for (uint64_t i = 0; i < n_t; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        FUZZ_REQUIRE(t != NULL);
        FUZZ_REQUIRE(t->n_dims >= 1 && t->n_dims <= 4);
        touch(t->name.ptr, t->name.len);
        touch(t->data, t->n_bytes);
    }
    FUZZ_REQUIRE(gguf_tensor_at(g, n_t) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_bytes_to_file(data, size, path, sizeof(path));
    if (fd < 0) return 0;
    struct sp_err err = {0};
    struct gguf *g = gguf_open(path, &err);
    if (g) {
        walk(g);
        struct tokenizer *t = tok_create(g, &err);
        if (t) {
            int32_t ids[64];
            /* A vocab may lack BOS or a token for some byte: an error, named. */
            int n = tok_encode(t, "Once upon a time, \xe2\x96\x81 \xff", 19, true, ids, 64, &err);
            FUZZ_REQUIRE(n >= 0 || err.msg[0] != 0);
            for (int i = 0; i < n && i < 64; i++) FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < tok_n_vocab(t));
            for (int32_t id = 0; id < tok_n_vocab(t); id++) {
                size_t len;
                const char *p = tok_piece(t, id, &len);
                FUZZ_REQUIRE(p != NULL);
                touch(p, len);
            }
            tok_free(t);
        }
        gguf_close(g);
    } else {
        FUZZ_REQUIRE(err.code != SP_OK && err.msg[0] != 0);
    }
    struct model *m = model_load(path, &err);
    if (m) {
        const struct model_shape *s = model_shape(m);
        FUZZ_REQUIRE(s->n_vocab >= 1 && s->n_layer >= 1 && s->head_dim >= 1);
        (void)model_desc(m);
        model_free(m);
    }
    close(fd);
    return 0;
}
