/* convert.c - see convert.h. Tensors are converted one at a time, rows split
 * over threads (every row is independent, so the bytes do not depend on the
 * split); the writer owns each converted buffer until the file is written. */
#include "engine/convert.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/progress.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "kernels/quant.h"
#include "kernels/sparse_nm.h"

#define CONVERT_MAX_THREADS 64

uint32_t convert_type_for(uint32_t target, int64_t n_cols) {
    const struct qtype_info *ti = qtype_get(target);
    if (!ti) return target;
    if (n_cols % ti->block_elems == 0) return target;
    uint32_t t = target;
    if (target == QTYPE_Q4_K) t = QTYPE_Q5_0;
    else if (target == QTYPE_Q6_K) t = QTYPE_Q8_0;
    const struct qtype_info *fi = qtype_get(t);
    return n_cols % fi->block_elems == 0 ? t : QTYPE_F16;
}

int convert_file_type(uint32_t type) {
    switch (type) {
    case QTYPE_F32: return 0;
    case QTYPE_F16: return 1;
    case QTYPE_Q4_0: return 2;
    case QTYPE_Q8_0: return 7;
    case QTYPE_Q5_0: return 8;
    case QTYPE_Q4_K: return 14;     /* LLAMA_FTYPE_MOSTLY_Q4_K_S: every tensor q4_K */
    case QTYPE_Q6_K: return 18;
    case QTYPE_BF16: return 32;
    default: return -1;
    }
}

int convert_type_by_name(const char *name) {
    static const struct { const char *n; uint32_t t; } names[] = {
        {"f32", QTYPE_F32}, {"f16", QTYPE_F16}, {"bf16", QTYPE_BF16}, {"q8_0", QTYPE_Q8_0},
        {"q4_0", QTYPE_Q4_0}, {"q5_0", QTYPE_Q5_0}, {"q4_k", QTYPE_Q4_K}, {"q6_k", QTYPE_Q6_K},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(name, names[i].n)) return (int)names[i].t;
    return -1;
}

/* One tensor's rows [r0, r1): decode, re-encode. */
struct conv_job {
    const struct gguf_tensor *t;
    uint32_t to;
    uint8_t *out;
    int64_t n_rows;
    int n_threads, index;
    int failed;
};

static void *conv_rows(void *arg) {
    struct conv_job *j = arg;
    const struct qtype_info *si = qtype_get(j->t->type), *di = qtype_get(j->to);
    const int64_t n = j->t->ne[0];
    const size_t sb = qtype_row_bytes(j->t->type, n), db = qtype_row_bytes(j->to, n);
    const int64_t per = (j->n_rows + j->n_threads - 1) / j->n_threads;
    int64_t r0 = per * j->index, r1 = r0 + per < j->n_rows ? r0 + per : j->n_rows;
    float *row = malloc((size_t)n * sizeof(float));
    if (!row) { j->failed = 1; return NULL; }
    for (int64_t r = r0; r < r1; r++) {
        si->to_float((const uint8_t *)j->t->data + (size_t)r * sb, row, n);
        di->from_float(row, j->out + (size_t)r * db, n);
    }
    free(row);
    return NULL;
}

static int convert_tensor(const struct gguf_tensor *t, uint32_t to, int threads, uint8_t *out) {
    int64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    if (threads < 1) threads = 1;
    if (threads > CONVERT_MAX_THREADS) threads = CONVERT_MAX_THREADS;
    if (threads > n_rows) threads = (int)n_rows;
    struct conv_job jobs[CONVERT_MAX_THREADS];
    pthread_t tid[CONVERT_MAX_THREADS];
    int started = 0, failed = 0;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct conv_job){ t, to, out, n_rows, threads, i, 0 };
        if (i == 0) continue;
        if (pthread_create(&tid[i], NULL, conv_rows, &jobs[i]) == 0) started = i;
        else { failed = 1; break; }
    }
    conv_rows(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < threads; i++) failed |= jobs[i].failed;
    return failed ? SP_ENOMEM : SP_OK;
}

/* "blk.N." prefix -> N, else -1. */
static int layer_of(const struct gguf_str name) {
    if (name.len < 6 || memcmp(name.ptr, "blk.", 4) != 0) return -1;
    int l = 0;
    uint64_t i = 4;
    for (; i < name.len && name.ptr[i] >= '0' && name.ptr[i] <= '9'; i++) l = l * 10 + (name.ptr[i] - '0');
    return i > 4 && i < name.len && name.ptr[i] == '.' ? l : -1;
}

static bool ends_with(const struct gguf_str s, const char *suf) {
    size_t n = strlen(suf);
    return s.len >= n && memcmp(s.ptr + s.len - n, suf, n) == 0;
}

/* llama-quantize's output order (llama_model_loader's weight_name_comparer):
 * tensors outside the layers first, then by layer number, names ascending
 * within each. */
struct order_key { int layer; struct gguf_str name; uint64_t index; };

static int by_llama_order(const void *pa, const void *pb) {
    const struct order_key *a = pa, *b = pb;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    uint64_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
    int c = memcmp(a->name.ptr, b->name.ptr, n);
    if (c) return c;
    return a->name.len < b->name.len ? -1 : a->name.len > b->name.len;
}

int convert_model(const char *in_path, const char *out_path, const struct convert_opts *o,
                  struct convert_stats *st, struct sp_err *err) {
    const struct qtype_info *ti = qtype_get(o->type);
    if (!ti || !ti->from_float || !ti->to_float)
        return sp_fail(err, SP_EINVAL, "convert: target type %u cannot be written", o->type);
    struct convert_stats stats = {0};
    struct gguf *g = gguf_open(in_path, err);
    if (!g) return err ? err->code : SP_EIO;
    struct gguf_writer *w = gguf_w_new();
    int rc = w ? SP_OK : sp_fail(err, SP_ENOMEM, "convert: out of memory");
    for (int64_t i = 0; rc == SP_OK && i < (int64_t)gguf_n_kv(g); i++)
        if ((rc = gguf_w_copy_kv(w, g, i)) != SP_OK) sp_fail(err, rc, "convert: cannot copy metadata");
    if (rc == SP_OK && !o->sparse_format) {
        /* llama-quantize's key order for new keys: quantization_version, file_type */
        rc = gguf_w_set_u32(w, "general.quantization_version", 2);
        int ft = convert_file_type(o->type);
        if (rc == SP_OK && ft >= 0) rc = gguf_w_set_u32(w, "general.file_type", (uint32_t)ft);
    }
    if (rc == SP_OK && o->sparse_format) {
        rc = gguf_w_set_str(w, "sparrow.sparse.format", o->sparse_format, strlen(o->sparse_format));
        const char *m = o->sparse_method ? o->sparse_method : "magnitude";
        if (rc == SP_OK) rc = gguf_w_set_str(w, "sparrow.sparse.method", m, strlen(m));
    }
    const uint64_t n_t = gguf_n_tensors(g);
    struct order_key *order = malloc(sizeof(*order) * (n_t ? n_t : 1));
    if (!order && rc == SP_OK) rc = sp_fail(err, SP_ENOMEM, "convert: out of memory");
    for (uint64_t i = 0; order && i < n_t; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        order[i] = (struct order_key){ layer_of(t->name), t->name, i };
    }
    if (order) qsort(order, n_t, sizeof(*order), by_llama_order);
    double total_mib = 0;
    for (uint64_t i = 0; i < n_t; i++) total_mib += (double)gguf_tensor_at(g, i)->n_bytes / 1048576.0;
    struct progress *pg = progress_start(o->sparse_format ? "sparsify" : "quantize", total_mib, "MiB");
    for (uint64_t k = 0; rc == SP_OK && k < n_t; k++) {
        progress_update(pg, (double)stats.bytes_in / 1048576.0);
        const struct gguf_tensor *t = gguf_tensor_at(g, order[k].index);
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        const struct qtype_info *si = qtype_get(t->type);
        bool eligible = t->n_dims == 2 && ends_with(t->name, ".weight") && si->to_float;
        int layer = layer_of(t->name);
        if (o->layers_only) {
            eligible = eligible && layer >= 0;
            for (int s = 0; eligible && s < o->n_skip_layers; s++)
                if (o->skip_layers[s] == layer) eligible = false;
        }
        uint32_t to = eligible ? convert_type_for(o->type, t->ne[0]) : t->type;
        if (eligible && o->sparse_format && to != o->type) to = t->type;   /* stays dense */
        stats.bytes_in += t->n_bytes;
        if (to == t->type) {
            rc = gguf_w_add_tensor(w, name, t->n_dims, t->ne, t->type, t->data, t->n_bytes, false);
            stats.n_copied++;
            stats.n_fallback += eligible && to != o->type;
            stats.bytes_out += t->n_bytes;
            continue;
        }
        uint64_t bytes = qtype_row_bytes(to, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        uint8_t *out = malloc(bytes ? bytes : 1);
        if (!out) { rc = sp_fail(err, SP_ENOMEM, "convert: out of memory for '%s'", name); break; }
        if ((rc = convert_tensor(t, to, o->threads, out)) != SP_OK) {
            free(out);
            sp_fail(err, rc, "convert: out of memory converting '%s'", name);
            break;
        }
        rc = gguf_w_add_tensor(w, name, t->n_dims, t->ne, to, out, bytes, true);
        if (to == o->type) stats.n_converted++;
        else stats.n_fallback++;
        stats.bytes_out += bytes;
    }
    progress_done(pg);
    if (rc != SP_OK && err && err->code == SP_OK) sp_fail(err, rc, "convert: cannot build the output");
    free(order);
    if (rc == SP_OK) rc = gguf_w_write(w, out_path, err);
    gguf_w_free(w);
    gguf_close(g);
    if (st) *st = stats;
    return rc;
}
