/* gguf.c - GGUF reader: map, validate everything, then hand out borrowed views.
 *
 * DESIGN: the file is parsed once by a cursor that can only move forward over
 * bytes it has checked are there (`take`). Every count read from the file is
 * bounded by the bytes left before anything is allocated for it, so a hostile
 * header cannot make us allocate more than a small multiple of the file size.
 * Metadata values stay in the mapping; only string arrays get an index (so
 * the i-th token string is O(1)). */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/quant.h"

#define GGUF_MAGIC 0x46554747u          /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY_LEN 65535          /* ggml's own limit is similar; longer is hostile */
#define GGUF_MAX_DIMS 4

struct gguf_kv {
    struct gguf_str key;
    enum gguf_type type;
    const uint8_t *value;               /* scalar or array payload, inside the map */
    struct gguf_str str;                /* GGUF_TYPE_STRING */
    enum gguf_type elem_type;           /* GGUF_TYPE_ARRAY */
    uint64_t n_elems;                   /* GGUF_TYPE_ARRAY */
    struct gguf_str *strs;              /* array of strings: index, owned */
};

struct gguf {
    const uint8_t *base;                /* the mapping */
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    struct gguf_kv *kvs;                /* [n_kv] */
    struct gguf_tensor *tensors;        /* [n_tensors] */
    uint32_t alignment;
};

struct cursor {
    const uint8_t *p, *end;
    struct sp_err *err;
    const char *what;                   /* what is being read, for the message */
};

static size_t left(const struct cursor *c) { return (size_t)(c->end - c->p); }

/* Advance over n bytes, or fail naming what was truncated. */
static const uint8_t *take(struct cursor *c, uint64_t n) {
    if (n > left(c)) {
        sp_fail(c->err, SP_EFORMAT, "gguf: truncated while reading %s (need %llu bytes, %zu left)",
                c->what, (unsigned long long)n, left(c));
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += n;
    return p;
}

static int read_u32(struct cursor *c, uint32_t *v) {
    const uint8_t *p = take(c, 4);
    if (!p) return SP_EFORMAT;
    memcpy(v, p, 4);
    return SP_OK;
}

static int read_u64(struct cursor *c, uint64_t *v) {
    const uint8_t *p = take(c, 8);
    if (!p) return SP_EFORMAT;
    memcpy(v, p, 8);
    return SP_OK;
}

static int read_str(struct cursor *c, struct gguf_str *s) {
    uint64_t len;
    if (read_u64(c, &len) != SP_OK) return SP_EFORMAT;
    const uint8_t *p = take(c, len);
    if (!p) return SP_EFORMAT;
    s->ptr = (const char *)p;
    s->len = len;
    return SP_OK;
}

/* Size of a fixed-size value type; 0 for string/array/unknown. */
static size_t scalar_size(enum gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

bool gguf_str_eq(struct gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static int read_kv(struct gguf *g, struct cursor *c, uint64_t i, struct gguf_kv *kv) {
    struct sp_err *err = c->err;
    c->what = "metadata key";
    if (read_str(c, &kv->key) != SP_OK) return SP_EFORMAT;
    if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
        return sp_fail(err, SP_EFORMAT, "gguf: metadata key %llu has length %llu",
                       (unsigned long long)i, (unsigned long long)kv->key.len);
    for (uint64_t j = 0; j < i; j++)
        if (g->kvs[j].key.len == kv->key.len && !memcmp(g->kvs[j].key.ptr, kv->key.ptr, kv->key.len))
            return sp_fail(err, SP_EFORMAT, "gguf: duplicate metadata key '%.*s'",
                           (int)kv->key.len, kv->key.ptr);
    uint32_t type;
    c->what = "metadata value type";
    if (read_u32(c, &type) != SP_OK) return SP_EFORMAT;
    if (type >= GGUF_TYPE_COUNT)
        return sp_fail(err, SP_EFORMAT, "gguf: key '%.*s' has unknown value type %u",
                       (int)kv->key.len, kv->key.ptr, type);
    kv->type = type;
    kv->value = c->p;
    c->what = "metadata value";
    if (type == GGUF_TYPE_STRING) return read_str(c, &kv->str);
    if (type != GGUF_TYPE_ARRAY) return take(c, scalar_size(type)) ? SP_OK : SP_EFORMAT;

    uint32_t et;
    uint64_t n;
    if (read_u32(c, &et) != SP_OK || read_u64(c, &n) != SP_OK) return SP_EFORMAT;
    if (et >= GGUF_TYPE_COUNT || et == GGUF_TYPE_ARRAY)
        return sp_fail(err, SP_EFORMAT, "gguf: key '%.*s' is an array of %s element type %u",
                       (int)kv->key.len, kv->key.ptr, et == GGUF_TYPE_ARRAY ? "nested" : "unknown", et);
    kv->elem_type = et;
    kv->n_elems = n;
    kv->value = c->p;
    if (et != GGUF_TYPE_STRING) {
        size_t es = scalar_size(et);
        if (n > left(c) / es)
            return sp_fail(err, SP_EFORMAT, "gguf: key '%.*s': array of %llu elements runs past the end of the file",
                           (int)kv->key.len, kv->key.ptr, (unsigned long long)n);
        c->p += n * es;
        return SP_OK;
    }
    /* Every string takes at least its 8-byte length: bounds the index size. */
    if (n > left(c) / 8)
        return sp_fail(err, SP_EFORMAT, "gguf: key '%.*s': array of %llu strings runs past the end of the file",
                       (int)kv->key.len, kv->key.ptr, (unsigned long long)n);
    kv->strs = malloc((n ? n : 1) * sizeof(*kv->strs));
    if (!kv->strs) return sp_fail(err, SP_ENOMEM, "gguf: out of memory for %llu strings", (unsigned long long)n);
    c->what = "string array element";
    for (uint64_t j = 0; j < n; j++)
        if (read_str(c, &kv->strs[j]) != SP_OK) return SP_EFORMAT;
    return SP_OK;
}

static int read_tensor_info(struct gguf *g, struct cursor *c, uint64_t i, struct gguf_tensor *t) {
    struct sp_err *err = c->err;
    c->what = "tensor name";
    if (read_str(c, &t->name) != SP_OK) return SP_EFORMAT;
    if (t->name.len == 0 || t->name.len > GGUF_MAX_KEY_LEN)
        return sp_fail(err, SP_EFORMAT, "gguf: tensor %llu has a name of length %llu",
                       (unsigned long long)i, (unsigned long long)t->name.len);
    int nl = (int)t->name.len;
    for (uint64_t j = 0; j < i; j++)
        if (g->tensors[j].name.len == t->name.len && !memcmp(g->tensors[j].name.ptr, t->name.ptr, t->name.len))
            return sp_fail(err, SP_EFORMAT, "gguf: duplicate tensor '%.*s'", nl, t->name.ptr);
    c->what = "tensor dimensions";
    if (read_u32(c, &t->n_dims) != SP_OK) return SP_EFORMAT;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s' has %u dimensions (1..4 allowed)",
                       nl, t->name.ptr, t->n_dims);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (read_u64(c, &ne) != SP_OK) return SP_EFORMAT;
        if (ne > (uint64_t)INT64_MAX)
            return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s' dimension %u is %llu",
                           nl, t->name.ptr, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    c->what = "tensor type and offset";
    if (read_u32(c, &t->type) != SP_OK || read_u64(c, &t->offset) != SP_OK) return SP_EFORMAT;
    const struct qtype_info *qi = qtype_get(t->type);
    if (!qi)
        return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s' has unknown type %u", nl, t->name.ptr, t->type);
    if (t->ne[0] % qi->block_elems != 0)
        return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s' row of %lld is not a multiple of the %s block (%d)",
                       nl, t->name.ptr, (long long)t->ne[0], qi->name, qi->block_elems);
    /* bytes = row_bytes * ne1 * ne2 * ne3, with every product checked. */
    uint64_t bytes;
    bool overflow = __builtin_mul_overflow((uint64_t)(t->ne[0] / qi->block_elems),
                                           (uint64_t)qi->block_bytes, &bytes);
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        overflow |= __builtin_mul_overflow(bytes, (uint64_t)t->ne[d], &bytes);
    if (overflow) bytes = UINT64_MAX;
    if (bytes == UINT64_MAX || bytes > g->size)
        return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s' (%lld x %lld x %lld x %lld %s) is larger than the file",
                       nl, t->name.ptr, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], qi->name);
    t->n_bytes = bytes;
    return SP_OK;
}

static int parse(struct gguf *g, struct sp_err *err) {
    struct cursor c = { g->base, g->base + g->size, err, "header" };
    uint32_t magic;
    if (read_u32(&c, &magic) != SP_OK) return SP_EFORMAT;
    if (magic != GGUF_MAGIC)
        return sp_fail(err, SP_EFORMAT, "gguf: bad magic 0x%08x (not a GGUF file)", magic);
    if (read_u32(&c, &g->version) != SP_OK) return SP_EFORMAT;
    if (g->version != 2 && g->version != 3)
        return sp_fail(err, SP_EFORMAT, "gguf: version %u not supported (2 and 3 are)", g->version);
    if (read_u64(&c, &g->n_tensors) != SP_OK || read_u64(&c, &g->n_kv) != SP_OK) return SP_EFORMAT;
    /* A KV takes >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8. */
    if (g->n_kv > left(&c) / 14)
        return sp_fail(err, SP_EFORMAT, "gguf: %llu metadata entries cannot fit in %zu bytes",
                       (unsigned long long)g->n_kv, g->size);
    if (g->n_tensors > left(&c) / 33)
        return sp_fail(err, SP_EFORMAT, "gguf: %llu tensors cannot fit in %zu bytes",
                       (unsigned long long)g->n_tensors, g->size);
    g->kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kvs));
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
    if (!g->kvs || !g->tensors) return sp_fail(err, SP_ENOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        int rc = read_kv(g, &c, i, &g->kvs[i]);
        if (rc != SP_OK) return rc;
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kvs[ai].type != GGUF_TYPE_UINT32)
            return sp_fail(err, SP_EFORMAT, "gguf: general.alignment is not a uint32");
        memcpy(&g->alignment, g->kvs[ai].value, 4);
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) != 0)
            return sp_fail(err, SP_EFORMAT, "gguf: general.alignment %u is not a power of two", g->alignment);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int rc = read_tensor_info(g, &c, i, &g->tensors[i]);
        if (rc != SP_OK) return rc;
    }
    size_t pos = (size_t)(c.p - g->base);
    size_t data_start = (pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors > 0 && data_start > g->size)
        return sp_fail(err, SP_EFORMAT, "gguf: data section starts at byte %zu, file has %zu", data_start, g->size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s' offset %llu is not aligned to %u",
                           (int)t->name.len, t->name.ptr, (unsigned long long)t->offset, g->alignment);
        size_t avail = g->size - data_start;
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return sp_fail(err, SP_EFORMAT, "gguf: tensor '%.*s': data ends at byte %llu, file has %zu",
                           (int)t->name.len, t->name.ptr,
                           (unsigned long long)data_start + t->offset + t->n_bytes, g->size);
        t->data = g->base + data_start + t->offset;
    }
    return SP_OK;
}

/* Messages quote names taken from the file (or the path): keep them one line. */
static void one_line(struct sp_err *err) {
    if (err)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
}

struct gguf *gguf_open(const char *path, struct sp_err *err) {
    struct gguf *g = calloc(1, sizeof(*g));
    if (!g) { sp_fail(err, SP_ENOMEM, "gguf: out of memory"); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { sp_fail(err, SP_EIO, "gguf: cannot open '%s': %s", path, strerror(errno)); goto out_free; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sp_fail(err, SP_EIO, "gguf: '%s' is not a regular file", path);
        goto out_close;
    }
    if (st.st_size < 24) {
        sp_fail(err, SP_EFORMAT, "gguf: '%s' is %lld bytes, too short for a GGUF header", path, (long long)st.st_size);
        goto out_close;
    }
    g->size = (size_t)st.st_size;
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { sp_fail(err, SP_EIO, "gguf: cannot map '%s': %s", path, strerror(errno)); goto out_close; }
    g->base = m;
    close(fd);
    if (parse(g, err) != SP_OK) { one_line(err); gguf_close(g); return NULL; }
    return g;
out_close:
    close(fd);
out_free:
    one_line(err);
    free(g);
    return NULL;
}

void gguf_close(struct gguf *g) {
    if (!g) return;
    if (g->kvs)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kvs[i].strs);
    free(g->kvs);
    free(g->tensors);
    if (g->base) munmap((void *)g->base, g->size);
    free(g);
}

uint32_t gguf_version(const struct gguf *g) { return g->version; }
uint64_t gguf_n_kv(const struct gguf *g) { return g->n_kv; }
uint64_t gguf_n_tensors(const struct gguf *g) { return g->n_tensors; }

int64_t gguf_find_key(const struct gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key.ptr && gguf_str_eq(g->kvs[i].key, key)) return (int64_t)i;
    return -1;
}

struct gguf_str gguf_key_name(const struct gguf *g, int64_t i) { return g->kvs[i].key; }
enum gguf_type gguf_kv_type(const struct gguf *g, int64_t i) { return g->kvs[i].type; }

static const struct gguf_kv *find_kv(const struct gguf *g, const char *key, struct sp_err *err) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) { sp_fail(err, SP_EINVAL, "gguf: key '%s' not found", key); return NULL; }
    return &g->kvs[i];
}

/* Any integer value as int64/uint64 pair; false for non-integers. */
static bool kv_integer(const struct gguf_kv *kv, int64_t *sv, uint64_t *uv, bool *is_signed) {
    uint8_t b[8] = {0};
    size_t n = scalar_size(kv->type);
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64 || kv->type == GGUF_TYPE_BOOL || n == 0)
        return false;
    memcpy(b, kv->value, n);
    *is_signed = kv->type == GGUF_TYPE_INT8 || kv->type == GGUF_TYPE_INT16 ||
                 kv->type == GGUF_TYPE_INT32 || kv->type == GGUF_TYPE_INT64;
    uint64_t u = 0;
    memcpy(&u, b, 8);
    if (*is_signed) {
        int shift = (int)(64 - 8 * n);
        *sv = (int64_t)(u << shift) >> shift;   /* sign-extend */
    } else {
        *uv = u;
    }
    return true;
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct sp_err *err) {
    const struct gguf_kv *kv = find_kv(g, key, err);
    if (!kv) return SP_EINVAL;
    int64_t sv = 0; uint64_t uv = 0; bool sgn;
    if (!kv_integer(kv, &sv, &uv, &sgn))
        return sp_fail(err, SP_EFORMAT, "gguf: key '%s' is not an integer", key);
    if (sgn) {
        if (sv < 0 || sv > (int64_t)UINT32_MAX)
            return sp_fail(err, SP_EFORMAT, "gguf: key '%s' = %lld is out of range", key, (long long)sv);
        *out = (uint32_t)sv;
    } else {
        if (uv > UINT32_MAX)
            return sp_fail(err, SP_EFORMAT, "gguf: key '%s' = %llu is out of range", key, (unsigned long long)uv);
        *out = (uint32_t)uv;
    }
    return SP_OK;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct sp_err *err) {
    const struct gguf_kv *kv = find_kv(g, key, err);
    if (!kv) return SP_EINVAL;
    if (kv->type == GGUF_TYPE_FLOAT32) { memcpy(out, kv->value, 4); return SP_OK; }
    if (kv->type == GGUF_TYPE_FLOAT64) { double d; memcpy(&d, kv->value, 8); *out = (float)d; return SP_OK; }
    return sp_fail(err, SP_EFORMAT, "gguf: key '%s' is not a float", key);
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct sp_err *err) {
    const struct gguf_kv *kv = find_kv(g, key, err);
    if (!kv) return SP_EINVAL;
    if (kv->type != GGUF_TYPE_BOOL) return sp_fail(err, SP_EFORMAT, "gguf: key '%s' is not a bool", key);
    *out = kv->value[0] != 0;
    return SP_OK;
}

int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out, struct sp_err *err) {
    const struct gguf_kv *kv = find_kv(g, key, err);
    if (!kv) return SP_EINVAL;
    if (kv->type != GGUF_TYPE_STRING) return sp_fail(err, SP_EFORMAT, "gguf: key '%s' is not a string", key);
    *out = kv->str;
    return SP_OK;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type *elem_type,
                 uint64_t *n, const void **data, struct sp_err *err) {
    const struct gguf_kv *kv = find_kv(g, key, err);
    if (!kv) return SP_EINVAL;
    if (kv->type != GGUF_TYPE_ARRAY) return sp_fail(err, SP_EFORMAT, "gguf: key '%s' is not an array", key);
    *elem_type = kv->elem_type;
    *n = kv->n_elems;
    *data = kv->elem_type == GGUF_TYPE_STRING ? NULL : (const void *)kv->value;
    return SP_OK;
}

struct gguf_str gguf_get_arr_str(const struct gguf *g, const char *key, uint64_t i) {
    int64_t k = gguf_find_key(g, key);
    struct gguf_str none = { "", 0 };
    if (k < 0 || !g->kvs[k].strs || i >= g->kvs[k].n_elems) return none;
    return g->kvs[k].strs[i];
}

void gguf_kv_at(const struct gguf *g, int64_t i, struct gguf_kv_view *out) {
    const struct gguf_kv *kv = &g->kvs[i];
    *out = (struct gguf_kv_view){ .key = kv->key, .type = kv->type, .str = kv->str };
    if (kv->type == GGUF_TYPE_ARRAY) {
        out->elem_type = kv->elem_type;
        out->n = kv->n_elems;
        out->data = kv->elem_type == GGUF_TYPE_STRING ? NULL : (const void *)kv->value;
    } else if (kv->type != GGUF_TYPE_STRING) {
        out->data = kv->value;
    }
}

struct gguf_str gguf_kv_arr_str(const struct gguf *g, int64_t i, uint64_t j) {
    struct gguf_str none = { "", 0 };
    if (!g->kvs[i].strs || j >= g->kvs[i].n_elems) return none;
    return g->kvs[i].strs[j];
}

uint32_t gguf_alignment(const struct gguf *g) { return g->alignment; }

const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, uint64_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}
