/* gguf_write.c - see gguf_write.h.
 *
 * DESIGN: each metadata entry is kept already serialized (the value type u32
 * followed by its payload, exactly as on disk), so writing is a concatenation
 * and replacing a key swaps one buffer. Tensor offsets are assigned at write
 * time, in the order the tensors were added. */
#include "engine/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/quant.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3u
#define GGUF_DEFAULT_ALIGNMENT 32u

struct wkv {
    char *key;
    size_t key_len;
    uint8_t *val;           /* type u32 + payload */
    size_t val_len;
};

struct wtensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];
    uint32_t type;
    const void *data;
    uint64_t n_bytes;
    bool owned;
};

struct gguf_writer {
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_t, cap_t;
};

/* A growable byte buffer for building one value. */
struct buf { uint8_t *p; size_t n, cap; bool oom; };

static void put(struct buf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(struct buf *b, const char *s, uint64_t len) { put_u64(b, len); put(b, s, (size_t)len); }

static size_t scalar_size(enum gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

struct gguf_writer *gguf_w_new(void) { return calloc(1, sizeof(struct gguf_writer)); }

void gguf_w_free(struct gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { free(w->kvs[i].key); free(w->kvs[i].val); }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->ts[i].name);
        if (w->ts[i].owned) free((void *)w->ts[i].data);
    }
    free(w->kvs);
    free(w->ts);
    free(w);
}

static struct wkv *find(struct gguf_writer *w, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < w->n_kv; i++)
        if (w->kvs[i].key_len == n && !memcmp(w->kvs[i].key, key, n)) return &w->kvs[i];
    return NULL;
}

/* Takes the buffer (freed on failure). */
static int set_raw(struct gguf_writer *w, const char *key, size_t key_len, struct buf *b) {
    if (b->oom || key_len == 0) { free(b->p); return b->oom ? SP_ENOMEM : SP_EINVAL; }
    char *k = malloc(key_len + 1);
    if (!k) { free(b->p); return SP_ENOMEM; }
    memcpy(k, key, key_len);
    k[key_len] = 0;
    struct wkv *kv = find(w, k);
    if (kv) {
        free(k);
        free(kv->val);
        kv->val = b->p;
        kv->val_len = b->n;
        return SP_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        struct wkv *p = realloc(w->kvs, cap * sizeof(*p));
        if (!p) { free(k); free(b->p); return SP_ENOMEM; }
        w->kvs = p;
        w->cap_kv = cap;
    }
    w->kvs[w->n_kv++] = (struct wkv){ k, key_len, b->p, b->n };
    return SP_OK;
}

int gguf_w_set_scalar(struct gguf_writer *w, const char *key, enum gguf_type t, const void *val) {
    size_t sz = scalar_size(t);
    if (!sz) return SP_EINVAL;
    struct buf b = {0};
    put_u32(&b, (uint32_t)t);
    put(&b, val, sz);
    return set_raw(w, key, strlen(key), &b);
}

int gguf_w_set_u32(struct gguf_writer *w, const char *key, uint32_t v) {
    return gguf_w_set_scalar(w, key, GGUF_TYPE_UINT32, &v);
}

int gguf_w_set_f32(struct gguf_writer *w, const char *key, float v) {
    return gguf_w_set_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}

int gguf_w_set_str(struct gguf_writer *w, const char *key, const char *s, uint64_t len) {
    struct buf b = {0};
    put_u32(&b, GGUF_TYPE_STRING);
    put_str(&b, s, len);
    return set_raw(w, key, strlen(key), &b);
}

int gguf_w_set_arr(struct gguf_writer *w, const char *key, enum gguf_type et, uint64_t n, const void *data) {
    size_t sz = scalar_size(et);
    if (!sz) return SP_EINVAL;
    struct buf b = {0};
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, (uint32_t)et);
    put_u64(&b, n);
    put(&b, data, (size_t)n * sz);
    return set_raw(w, key, strlen(key), &b);
}

int gguf_w_set_arr_str(struct gguf_writer *w, const char *key, uint64_t n, const struct gguf_str *strs) {
    struct buf b = {0};
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b, strs[i].ptr, strs[i].len);
    return set_raw(w, key, strlen(key), &b);
}

int gguf_w_copy_kv(struct gguf_writer *w, const struct gguf *g, int64_t i) {
    struct gguf_kv_view v;
    gguf_kv_at(g, i, &v);
    struct buf b = {0};
    put_u32(&b, (uint32_t)v.type);
    if (v.type == GGUF_TYPE_STRING) {
        put_str(&b, v.str.ptr, v.str.len);
    } else if (v.type == GGUF_TYPE_ARRAY) {
        put_u32(&b, (uint32_t)v.elem_type);
        put_u64(&b, v.n);
        if (v.elem_type == GGUF_TYPE_STRING)
            for (uint64_t j = 0; j < v.n; j++) {
                struct gguf_str s = gguf_kv_arr_str(g, i, j);
                put_str(&b, s.ptr, s.len);
            }
        else
            put(&b, v.data, (size_t)v.n * scalar_size(v.elem_type));
    } else {
        put(&b, v.data, scalar_size(v.type));
    }
    return set_raw(w, v.key.ptr, (size_t)v.key.len, &b);
}

void gguf_w_del(struct gguf_writer *w, const char *key) {
    struct wkv *kv = find(w, key);
    if (!kv) return;
    free(kv->key);
    free(kv->val);
    size_t i = (size_t)(kv - w->kvs);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof(*kv));
    w->n_kv--;
}

int gguf_w_add_tensor(struct gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                      uint32_t type, const void *data, uint64_t n_bytes, bool owned) {
    if (n_dims < 1 || n_dims > 4 || !qtype_get(type)) {
        if (owned) free((void *)data);
        return SP_EINVAL;
    }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct wtensor *p = realloc(w->ts, cap * sizeof(*p));
        if (!p) { if (owned) free((void *)data); return SP_ENOMEM; }
        w->ts = p;
        w->cap_t = cap;
    }
    struct wtensor *t = &w->ts[w->n_t];
    *t = (struct wtensor){ strdup(name), n_dims, {1, 1, 1, 1}, type, data, n_bytes, owned };
    if (!t->name) { if (owned) free((void *)data); return SP_ENOMEM; }
    for (uint32_t d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    w->n_t++;
    return SP_OK;
}

static uint32_t alignment_of(const struct gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++) {
        const struct wkv *kv = &w->kvs[i];
        uint32_t t, a;
        if (kv->key_len != 17 || memcmp(kv->key, "general.alignment", 17) || kv->val_len != 8) continue;
        memcpy(&t, kv->val, 4);
        memcpy(&a, kv->val + 4, 4);
        if (t == GGUF_TYPE_UINT32 && a && !(a & (a - 1))) return a;
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

static uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

int gguf_w_write(const struct gguf_writer *w, const char *path, struct sp_err *err) {
    const uint32_t align = alignment_of(w);
    /* Check sizes and names first: nothing is written for an invalid set. */
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        uint64_t want = qtype_row_bytes(t->type, t->ne[0]) * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        if (want == 0 || want != t->n_bytes)
            return sp_fail(err, SP_EINVAL, "gguf write: tensor '%s' has %llu bytes, its shape and type need %llu",
                           t->name, (unsigned long long)t->n_bytes, (unsigned long long)want);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(w->ts[j].name, t->name))
                return sp_fail(err, SP_EINVAL, "gguf write: duplicate tensor '%s'", t->name);
    }
    struct buf h = {0};
    put(&h, GGUF_MAGIC, 4);
    put_u32(&h, GGUF_VERSION);
    put_u64(&h, (uint64_t)w->n_t);
    put_u64(&h, (uint64_t)w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kvs[i].key, w->kvs[i].key_len);
        put(&h, w->kvs[i].val, w->kvs[i].val_len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        put_str(&h, t->name, strlen(t->name));
        put_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&h, (uint64_t)t->ne[d]);
        put_u32(&h, t->type);
        put_u64(&h, off);
        off += pad_to(t->n_bytes, align);
    }
    static const uint8_t zeros[4096];
    size_t hpad = (size_t)(pad_to(h.n, align) - h.n);
    if (w->n_t) put(&h, zeros, hpad);
    if (h.oom) { free(h.p); return sp_fail(err, SP_ENOMEM, "gguf write: out of memory"); }

    /* A regular file (or a new one) is replaced atomically through path.tmp;
     * anything else (a pipe, /dev/null) is written in place, never renamed over. */
    char tmp[4096];
    struct stat st;
    const bool direct = stat(path, &st) == 0 && !S_ISREG(st.st_mode);
    if (snprintf(tmp, sizeof(tmp), direct ? "%s" : "%s.tmp", path) >= (int)sizeof(tmp)) {
        free(h.p);
        return sp_fail(err, SP_EINVAL, "gguf write: path too long");
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(h.p);
        return sp_fail(err, SP_EIO, "gguf write: cannot create '%s': %s", tmp, strerror(errno));
    }
    bool ok = fwrite(h.p, 1, h.n, f) == h.n;
    free(h.p);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        ok = fwrite(t->data, 1, (size_t)t->n_bytes, f) == t->n_bytes;
        size_t pad = (size_t)(pad_to(t->n_bytes, align) - t->n_bytes);
        while (ok && pad > 0) {
            size_t c = pad < sizeof(zeros) ? pad : sizeof(zeros);
            ok = fwrite(zeros, 1, c, f) == c;
            pad -= c;
        }
    }
    if (fclose(f) != 0) ok = false;
    if (!ok || (!direct && rename(tmp, path) != 0)) {
        int e = errno;
        if (!direct) remove(tmp);
        return sp_fail(err, SP_EIO, "gguf write: cannot write '%s': %s", path, strerror(e));
    }
    return SP_OK;
}
