/* gguf.h - read-only GGUF (v2, v3) reader over an mmapped file.
 *
 * gguf_open() validates everything before anyone uses it: magic, version,
 * every count, string length, array size, tensor type, dimension, offset,
 * alignment and byte size against the file size. After a successful open
 * every pointer handed out points inside the mapping and every tensor's
 * bytes are inside the file. A hostile file is a one-line error, never a
 * crash.
 *
 * Ownership: the caller owns the struct gguf; everything returned (strings,
 * array data, tensor data) is borrowed from it until gguf_close(). Strings are
 * NOT NUL-terminated (GGUF stores a length). Thread-safety: read-only after
 * open, any thread. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/err.h"

struct gguf;                /* opaque */

enum gguf_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

struct gguf_str {
    const char *ptr;        /* borrowed; not NUL-terminated */
    uint64_t len;
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;        /* 1..4 */
    int64_t ne[4];          /* elements per dimension, ne[0] fastest; unused dims are 1 */
    uint32_t type;          /* enum qtype (kernels/quant.h) */
    uint64_t offset;        /* from the start of the data section */
    const void *data;       /* borrowed: inside the mapping */
    uint64_t n_bytes;
};

struct gguf *gguf_open(const char *path, struct sp_err *err);
void gguf_close(struct gguf *g);                         /* NULL is fine */

uint32_t gguf_version(const struct gguf *g);
uint64_t gguf_n_kv(const struct gguf *g);
uint64_t gguf_n_tensors(const struct gguf *g);

/* Index of a metadata key, or -1. */
int64_t gguf_find_key(const struct gguf *g, const char *key);
struct gguf_str gguf_key_name(const struct gguf *g, int64_t i);
enum gguf_type gguf_kv_type(const struct gguf *g, int64_t i);

/* Typed getters by key name. SP_OK; SP_EINVAL (absent, err says so) or
 * SP_EFORMAT (present with another type). Integer getters accept any integer
 * type whose value fits the result. */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct sp_err *err);
int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct sp_err *err);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct sp_err *err);
int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out, struct sp_err *err);
/* Arrays: element type and count; data points at the packed elements for
 * fixed-size element types (little-endian, possibly unaligned: memcpy them),
 * NULL for arrays of strings (use gguf_get_arr_str). */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type *elem_type,
                 uint64_t *n, const void **data, struct sp_err *err);
/* i-th string of a string array (i < n checked by the caller via gguf_get_arr). */
struct gguf_str gguf_get_arr_str(const struct gguf *g, const char *key, uint64_t i);

/* Raw view of metadata entry i (0 <= i < gguf_n_kv), for copying it whole
 * (engine/gguf_write.c): scalars: data -> the little-endian value bytes;
 * strings: str; arrays: elem_type, n and data (the packed elements, NULL for
 * arrays of strings: read them with gguf_kv_arr_str). */
struct gguf_kv_view {
    struct gguf_str key;
    enum gguf_type type;
    const void *data;
    struct gguf_str str;
    enum gguf_type elem_type;
    uint64_t n;
};
void gguf_kv_at(const struct gguf *g, int64_t i, struct gguf_kv_view *out);
/* j-th string of the string array at entry i (j < n checked by the caller). */
struct gguf_str gguf_kv_arr_str(const struct gguf *g, int64_t i, uint64_t j);
/* Bytes the data section is aligned to (general.alignment, default 32). */
uint32_t gguf_alignment(const struct gguf *g);

const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, uint64_t i);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* True if s equals the NUL-terminated c. */
bool gguf_str_eq(struct gguf_str s, const char *c);
