/* gguf_write.h - build a GGUF (v3) file in memory and write it out: metadata
 * of every value type (scalars, strings, arrays of scalars and of strings),
 * tensor infos and the aligned data section, in the layout llama.cpp's
 * gguf writer produces (header, KVs, tensor infos, zero padding to the
 * alignment, each tensor's bytes padded to the alignment). Copying every key
 * and tensor of a file read with gguf_open gives back the same bytes.
 *
 * Setting a key that is already there replaces its value in place (so a copy
 * of a file's metadata can then be edited). general.alignment, if set (as a
 * uint32 power of two), is the alignment used; else 32.
 *
 * Ownership: the writer copies keys, strings and array payloads. Tensor data
 * is borrowed until gguf_w_write() unless added with `owned` (the writer then
 * free()s it). Thread-safety: one thread per writer. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"
#include "engine/gguf.h"

struct gguf_writer;         /* opaque */

struct gguf_writer *gguf_w_new(void);
void gguf_w_free(struct gguf_writer *w);                 /* NULL is fine */

/* Scalar value of type t (not STRING/ARRAY): val points at its bytes. */
int gguf_w_set_scalar(struct gguf_writer *w, const char *key, enum gguf_type t, const void *val);
int gguf_w_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_w_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_w_set_str(struct gguf_writer *w, const char *key, const char *s, uint64_t len);
/* Array of n fixed-size elements of type et, packed little-endian at data. */
int gguf_w_set_arr(struct gguf_writer *w, const char *key, enum gguf_type et, uint64_t n, const void *data);
/* Array of n strings. */
int gguf_w_set_arr_str(struct gguf_writer *w, const char *key, uint64_t n, const struct gguf_str *strs);
/* Copy metadata entry i of g (any type), replacing a key of the same name. */
int gguf_w_copy_kv(struct gguf_writer *w, const struct gguf *g, int64_t i);
/* Remove a key if present. */
void gguf_w_del(struct gguf_writer *w, const char *key);

/* A tensor: n_dims dims ne[0..n_dims) (ne[0] fastest), type (enum qtype),
 * n_bytes of data (must equal the size the type and shape give). */
int gguf_w_add_tensor(struct gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                      uint32_t type, const void *data, uint64_t n_bytes, bool owned);

/* Write the file (a regular file through path.tmp renamed over path; a
 * device or pipe such as /dev/null in place). SP_OK or SP_EIO /
 * SP_EINVAL (duplicate tensor name, size mismatch) with err filled. */
int gguf_w_write(const struct gguf_writer *w, const char *path, struct sp_err *err);
