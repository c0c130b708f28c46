/* convert.c - see convert.h. Tensors are converted one at a time, rows split
 * over threads (every row is independent, and a V:N:M strip of V rows never
 * straddles two threads, so the bytes do not depend on the split); the writer
 * owns each converted buffer until the file is written. */
#include "engine/convert.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/progress.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "kernels/quant.h"
#include "kernels/sparse.h"

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

/* --- types: dense ones through the qtype table, sparse ones through sparse.h */

static bool can_decode(uint32_t type) {
    struct sparse_fmt f;
    if (sparse_fmt_of(type, &f)) return true;
    const struct qtype_info *qi = qtype_get(type);
    return qi && qi->to_float;
}

static void decode_row(uint32_t type, const void *src, float *dst, int64_t n) {
    struct sparse_fmt f;
    if (sparse_fmt_of(type, &f)) sparse_row_to_float(&f, src, dst, n);
    else qtype_get(type)->to_float(src, dst, n);
}

static uint64_t row_bytes(uint32_t type, int64_t n) {
    struct sparse_fmt f;
    if (sparse_fmt_of(type, &f)) {
        const int64_t e = sparse_block_elems(&f);
        return e > 0 && n % e == 0 ? (uint64_t)(n / e) * (uint64_t)sparse_block_bytes(&f) : 0;
    }
    return qtype_row_bytes((enum qtype)type, n);
}

bool convert_block_fmt(int b, double s, enum sparse_val val, int64_t n_cols, struct sparse_fmt *out) {
    static const int spans[] = { 256, 128, 64 };
    if (b < 2 || !(s > 0.0 && s < 1.0)) return false;
    for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++) {
        if (spans[i] % b) continue;
        const int m = spans[i] / b;
        int n = (int)lround((1.0 - s) * m);
        if (n < 1) n = 1;
        if (n > m) n = m;
        struct sparse_fmt f = { b, m, n, val };
        if (!sparse_type_id(&f)) continue;
        const int e = sparse_block_elems(&f);
        if (e > 0 && n_cols % e == 0) { *out = f; return true; }
    }
    return false;
}

bool convert_sparse_fmt_for(const struct convert_sparse *sp, int64_t n_cols, struct sparse_fmt *out) {
    if (sp->fmt.b > 1 && sp->block_sparsity > 0.0)
        return convert_block_fmt(sp->fmt.b, sp->block_sparsity, sp->fmt.val, n_cols, out);
    if (!sparse_type_id(&sp->fmt)) return false;
    const int e = sparse_block_elems(&sp->fmt);
    if (e <= 0 || n_cols % e) return false;
    *out = sp->fmt;
    return true;
}

/* "123" at *s -> value, advancing *s; -1 when no digits or too large. */
static long parse_num(const char **s) {
    long v = 0;
    const char *p = *s;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > 1 << 24) return -1;
    }
    if (p == *s) return -1;
    *s = p;
    return v;
}

int convert_parse_sparse(const char *format, const char *block, const char *sparsity, const char *values,
                         struct convert_sparse *out, char *name, size_t name_len, char *msg, size_t msg_len) {
#define BAD(...) do { snprintf(msg, msg_len, __VA_ARGS__); return -1; } while (0)
    *out = (struct convert_sparse){ .fmt = { 1, 4, 2, SPARSE_VAL_F16 } };
    if (!format) format = "2:4";
    if (!values || !strcasecmp(values, "f16")) out->fmt.val = SPARSE_VAL_F16;
    else if (!strcasecmp(values, "q8") || !strcasecmp(values, "q8_0")) out->fmt.val = SPARSE_VAL_Q8;
    else if (!strcasecmp(values, "q4") || !strcasecmp(values, "q4_0")) out->fmt.val = SPARSE_VAL_Q4;
    else BAD("--quant '%s' is not one of f16, q8, q4", values);
    double s = -1.0;
    if (sparsity) {
        char *end;
        s = strtod(sparsity, &end);
        if (end != sparsity && *end == '%' && end[1] == '\0') { s /= 100.0; end++; }
        if (end == sparsity || *end || !(s > 0.0 && s < 1.0))
            BAD("--sparsity '%s' is not a fraction in (0, 1) or a percentage in (0%%, 100%%)", sparsity);
    }
    const bool is_block = !strcasecmp(format, "block") || !strncasecmp(format, "1x", 2);
    if (block && !is_block) BAD("--block applies to --format block only");
    if (is_block) {
        const char *b = !strcasecmp(format, "block") ? (block ? block : "1x16") : format;
        if (block && strcasecmp(b, block)) BAD("--format %s and --block %s disagree", format, block);
        const char *p = b + 2;
        long w = strncasecmp(b, "1x", 2) ? -1 : parse_num(&p);
        if (w < 0 || *p || (w != 2 && w != 4 && w != 8 && w != 16))
            BAD("block '%s' is not 1x2, 1x4, 1x8 or 1x16", b);
        if (s < 0) BAD("--format %s needs --sparsity", format);
        out->fmt.b = (int)w;
        out->block_sparsity = s;
        struct sparse_fmt probe;
        if (!convert_block_fmt(out->fmt.b, s, out->fmt.val, 64 * 1024, &probe))
            BAD("block 1x%ld at sparsity %g has no valid group", w, s);
        snprintf(name, name_len, "1x%ld:%g%%", w, s * 100.0);
        return 0;
    }
    /* N:M, n:M, n:m, V:N:M */
    long f[3];
    int nf = 0;
    bool letter_n = false, letter_m = false;
    const char *p = format;
    for (;;) {
        if (nf == 3) BAD("--format '%s': too many fields", format);
        if (nf == 0 && (*p == 'n' || *p == 'N') && (p[1] == ':')) { letter_n = true; f[nf++] = 0; p++; }
        else if (nf == 1 && letter_n && (*p == 'm' || *p == 'M') && !p[1]) { letter_m = true; f[nf++] = 0; p++; }
        else if ((f[nf++] = parse_num(&p)) < 0)
            BAD("--format '%s' is not 2:4, N:M, n:M, n:m, V:N:M, block or 1xB", format);
        if (!*p) break;
        if (*p++ != ':') BAD("--format '%s' is not 2:4, N:M, n:M, n:m, V:N:M, block or 1xB", format);
    }
    if (nf < 2) BAD("--format '%s' is not 2:4, N:M, n:M, n:m, V:N:M, block or 1xB", format);
    if (letter_n) {
        if (nf != 2) BAD("--format '%s': n:M takes two fields", format);
        if (s < 0) BAD("--format %s needs --sparsity", format);
        long m = f[1];
        if (letter_m) {
            static const int ms[] = { 4, 8, 16 };
            m = 16;
            for (size_t i = 0; i < 3; i++) {
                const double k = (1.0 - s) * ms[i];
                if (k >= 1.0 - 1e-9 && fabs(k - round(k)) < 1e-6) { m = ms[i]; break; }
            }
        }
        if (m < 1 || m > 16) BAD("--format '%s': M must be 1..16", format);
        long n = lround((1.0 - s) * (double)m);
        if (n < 1) n = 1;
        if (n > m) n = m;
        out->fmt.n = (int)n;
        out->fmt.m = (int)m;
        snprintf(name, name_len, "%ld:%ld", n, m);
        return 0;
    }
    const long v = nf == 3 ? f[0] : 1, n = f[nf - 2], m = f[nf - 1];
    if (nf == 3) {
        if (v < 2) BAD("--format '%s': V:N:M needs V >= 2 (V = 1 is plain N:M)", format);
        if (n != 2) BAD("--format '%s': V:N:M needs N = 2", format);
        if (m < 4 || m > 16) BAD("--format '%s': V:N:M needs M in 4..16", format);
    }
    if (n < 1 || m < 1 || n > m || m > 16) BAD("--format '%s': N:M needs 1 <= N <= M <= 16", format);
    if (s >= 0 && fabs(s - (1.0 - (double)n / (double)m)) > 0.001)
        BAD("--sparsity %s disagrees with --format %s (%g)", sparsity, format, 1.0 - (double)n / (double)m);
    out->fmt.n = (int)n;
    out->fmt.m = (int)m;
    out->v = (int)v;
    if (!sparse_type_id(&out->fmt)) BAD("--format '%s' is not a valid sparse type", format);
    if (nf == 3) snprintf(name, name_len, "%ld:%ld:%ld", v, n, m);
    else snprintf(name, name_len, "%ld:%ld", n, m);
    return 0;
#undef BAD
}

/* --- threads: part i of n runs fn(ctx, i, n); part 0 on the calling thread,
 * a part whose thread cannot start runs there too, after the others. */

typedef void (*part_fn)(void *ctx, int index, int n_parts);
struct part { part_fn fn; void *ctx; int index, n; };

static void *part_main(void *arg) {
    struct part *p = arg;
    p->fn(p->ctx, p->index, p->n);
    return NULL;
}

static void run_parts(int n, part_fn fn, void *ctx) {
    if (n < 1) n = 1;
    if (n > CONVERT_MAX_THREADS) n = CONVERT_MAX_THREADS;
    struct part parts[CONVERT_MAX_THREADS];
    pthread_t tid[CONVERT_MAX_THREADS];
    bool started[CONVERT_MAX_THREADS] = { false };
    for (int i = 1; i < n; i++) {
        parts[i] = (struct part){ fn, ctx, i, n };
        started[i] = pthread_create(&tid[i], NULL, part_main, &parts[i]) == 0;
    }
    fn(ctx, 0, n);
    for (int i = 1; i < n; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else fn(ctx, i, n);
    }
}

/* Rows [r0, r1) of part i of n over n_rows, cut at multiples of align. */
static void part_rows(int64_t n_rows, int index, int n, int64_t align, int64_t *r0, int64_t *r1) {
    int64_t per = (n_rows + n - 1) / n;
    per = (per + align - 1) / align * align;
    *r0 = per * index < n_rows ? per * index : n_rows;
    *r1 = *r0 + per < n_rows ? *r0 + per : n_rows;
}

/* A dense target: decode each row, re-encode it. */
struct conv_job {
    const struct gguf_tensor *t;
    uint32_t to;
    uint8_t *out;
    int64_t n_rows;
    int failed[CONVERT_MAX_THREADS];
};

static void conv_rows(void *ctx, int index, int n_parts) {
    struct conv_job *j = ctx;
    const struct qtype_info *di = qtype_get(j->to);
    const int64_t n = j->t->ne[0];
    const size_t sb = row_bytes(j->t->type, n), db = row_bytes(j->to, n);
    int64_t r0, r1;
    part_rows(j->n_rows, index, n_parts, 1, &r0, &r1);
    float *row = malloc((size_t)n * sizeof(float));
    if (!row) { j->failed[index] = SP_ENOMEM; return; }
    for (int64_t r = r0; r < r1; r++) {
        decode_row(j->t->type, (const uint8_t *)j->t->data + (size_t)r * sb, row, n);
        di->from_float(row, j->out + (size_t)r * db, n);
    }
    free(row);
}

/* A sparse target: decode a part's rows (whole V-row strips), choose the
 * mask over them, encode. */
struct sparse_job {
    const struct gguf_tensor *t;
    struct sparse_fmt fmt;
    int v;
    const float *act_norm;
    uint8_t *out;
    int64_t n_rows;
    int failed[CONVERT_MAX_THREADS];
    uint64_t kept[CONVERT_MAX_THREADS];
};

static void sparse_rows(void *ctx, int index, int n_parts) {
    struct sparse_job *j = ctx;
    const int64_t n = j->t->ne[0];
    const size_t sb = row_bytes(j->t->type, n), db = row_bytes(sparse_type_id(&j->fmt), n);
    int64_t r0, r1;
    part_rows(j->n_rows, index, n_parts, j->v > 1 ? j->v : 1, &r0, &r1);
    if (r1 <= r0) return;
    const size_t elems = (size_t)(r1 - r0) * (size_t)n;
    float *w = malloc(elems * sizeof(float));
    uint8_t *keep = malloc(elems);
    int rc = w && keep ? SP_OK : SP_ENOMEM;
    for (int64_t r = r0; rc == SP_OK && r < r1; r++)
        decode_row(j->t->type, (const uint8_t *)j->t->data + (size_t)r * sb, w + (size_t)(r - r0) * (size_t)n, n);
    if (rc == SP_OK) rc = sparse_choose_mask(&j->fmt, j->v, w, j->act_norm, r1 - r0, n, keep);
    if (rc == SP_OK) rc = sparse_encode(&j->fmt, w, keep, r1 - r0, n, j->out + (size_t)r0 * db);
    uint64_t k = 0;
    for (size_t i = 0; rc == SP_OK && i < elems; i++) k += keep[i] != 0;
    j->kept[index] = k;
    j->failed[index] = rc;
    free(keep);
    free(w);
}

static int threads_for(int threads, int64_t n_rows) {
    if (threads < 1) threads = 1;
    if (threads > CONVERT_MAX_THREADS) threads = CONVERT_MAX_THREADS;
    if (threads > n_rows) threads = n_rows > 0 ? (int)n_rows : 1;
    return threads;
}

static int convert_tensor(const struct gguf_tensor *t, uint32_t to, int threads, uint8_t *out) {
    struct conv_job *j = calloc(1, sizeof(*j));
    if (!j) return SP_ENOMEM;
    j->t = t;
    j->to = to;
    j->out = out;
    j->n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    run_parts(threads_for(threads, j->n_rows), conv_rows, j);
    int rc = SP_OK;
    for (int i = 0; i < CONVERT_MAX_THREADS; i++) if (j->failed[i]) rc = j->failed[i];
    free(j);
    return rc;
}

static int sparsify_tensor(const struct gguf_tensor *t, const struct sparse_fmt *fmt, int v, const float *act_norm,
                           int threads, uint8_t *out, uint64_t *kept) {
    struct sparse_job *j = calloc(1, sizeof(*j));
    if (!j) return SP_ENOMEM;
    j->t = t;
    j->fmt = *fmt;
    j->v = v;
    j->act_norm = act_norm;
    j->out = out;
    j->n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    int parts = threads_for(threads, j->n_rows);
    if (v > 1) parts = threads_for(threads, (j->n_rows + v - 1) / v);
    run_parts(parts, sparse_rows, j);
    int rc = SP_OK;
    *kept = 0;
    for (int i = 0; i < CONVERT_MAX_THREADS; i++) {
        if (j->failed[i]) rc = j->failed[i];
        *kept += j->kept[i];
    }
    free(j);
    return rc;
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

/* --- Wanda calibration ---------------------------------------------------- */

struct convert_calib {
    int n_layer, n_tokens;
    int n_cols[FWD_N_SITES];
    double *acc[FWD_N_SITES];   /* [n_layer][n_cols] sums of squares (during the run) */
    float *norm[FWD_N_SITES];   /* [n_layer][n_cols] L2 norms */
};

void convert_calib_free(struct convert_calib *c) {
    if (!c) return;
    for (int s = 0; s < FWD_N_SITES; s++) { free(c->acc[s]); free(c->norm[s]); }
    free(c);
}

int convert_calib_tokens(const struct convert_calib *c) { return c ? c->n_tokens : 0; }

static void calib_observe(void *ctx, int layer, enum fwd_site site, const float *x, int n_tok, int n_cols) {
    struct convert_calib *c = ctx;
    if (layer < 0 || layer >= c->n_layer || (int)site < 0 || site >= FWD_N_SITES || n_cols != c->n_cols[site]) return;
    double *acc = c->acc[site] + (size_t)layer * (size_t)n_cols;
    for (int t = 0; t < n_tok; t++) {
        const float *row = x + (size_t)t * (size_t)n_cols;
        for (int i = 0; i < n_cols; i++) acc[i] += (double)row[i] * (double)row[i];
    }
}

int convert_calibrate(const char *in_path, const char *text, size_t len, int n_ctx, int threads,
                      struct convert_calib **out, struct sp_err *err) {
    *out = NULL;
    if (len > (size_t)INT32_MAX - 64) return sp_fail(err, SP_ERANGE, "calibration: text too long");
    struct model *m = model_load(in_path, err);
    if (!m) return err ? err->code : SP_EINVAL;
    struct tokenizer *tok = tok_create(model_gguf(m), err);
    const struct model_shape *s = model_shape(m);
    struct convert_calib *c = calloc(1, sizeof(*c));
    int32_t *tokens = malloc(sizeof(int32_t) * (len + 64));
    int32_t *pos = NULL, *seq = NULL;
    bool *want = NULL;
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    struct progress *pg = NULL;
    int rc = SP_OK;
    if (!tok) { rc = err ? err->code : SP_EINVAL; goto out; }
    if (!c || !tokens) { rc = sp_fail(err, SP_ENOMEM, "calibration: out of memory"); goto out; }
    if (n_ctx <= 0) n_ctx = s->n_ctx_train < 256 ? s->n_ctx_train : 256;
    if (n_ctx > s->n_ctx_train) n_ctx = s->n_ctx_train;
    if (n_ctx < 2) { rc = sp_fail(err, SP_ERANGE, "calibration: context %d too short", n_ctx); goto out; }
    c->n_layer = s->n_layer;
    c->n_cols[FWD_ATTN_IN] = s->n_embd;
    c->n_cols[FWD_ATTN_OUT] = s->n_head * s->head_dim;
    c->n_cols[FWD_FFN_IN] = s->n_embd;
    c->n_cols[FWD_FFN_MID] = s->n_ff;
    for (int k = 0; k < FWD_N_SITES; k++) {
        c->acc[k] = calloc((size_t)c->n_layer * (size_t)c->n_cols[k], sizeof(double));
        c->norm[k] = calloc((size_t)c->n_layer * (size_t)c->n_cols[k], sizeof(float));
        if (!c->acc[k] || !c->norm[k]) { rc = sp_fail(err, SP_ENOMEM, "calibration: out of memory"); goto out; }
    }
    const bool add_bos = tok_add_bos(tok);
    int n_tok = tok_encode(tok, text, len, add_bos, tokens, (int)len + 64, err);
    if (n_tok < 0) { rc = n_tok; goto out; }
    if (n_tok < 2) { rc = sp_fail(err, SP_ERANGE, "calibration: the text is %d tokens, at least 2 are needed", n_tok); goto out; }
    pos = malloc(sizeof(int32_t) * (size_t)n_ctx);
    seq = calloc((size_t)n_ctx, sizeof(int32_t));
    want = calloc((size_t)n_ctx, sizeof(bool));
    if (!pos || !seq || !want) { rc = sp_fail(err, SP_ENOMEM, "calibration: out of memory"); goto out; }
    struct kv_config cfg = { 16, (n_ctx + 15) / 16, 1, n_ctx };
    if (!(kv = kv_create(s, &cfg, err)) || !(f = fwd_create(m, n_ctx, n_ctx, threads, err))) {
        rc = err ? err->code : SP_ENOMEM;
        goto out;
    }
    if (kv_seq_reserve(kv, 0, n_ctx) != SP_OK) { rc = sp_fail(err, SP_ENOMEM, "calibration: KV cache"); goto out; }
    fwd_set_observer(f, calib_observe, c);
    for (int i = 0; i < n_ctx; i++) pos[i] = i;
    pg = progress_start("calibrate", n_tok, "tok");
    /* chunks of n_ctx tokens; a last chunk of a single token is dropped */
    for (int start = 0; rc == SP_OK && n_tok - start >= 2; start += n_ctx) {
        const int nb = n_tok - start < n_ctx ? n_tok - start : n_ctx;
        const int32_t saved = tokens[start];
        if (add_bos) tokens[start] = tok_bos(tok);
        struct fwd_batch fb = { nb, tokens + start, pos, seq, want };
        rc = fwd_run(f, kv, &fb, NULL, err);
        tokens[start] = saved;
        c->n_tokens += nb;
        progress_update(pg, start + nb);
    }
    progress_done(pg);
    for (int k = 0; rc == SP_OK && k < FWD_N_SITES; k++) {
        for (size_t i = 0; i < (size_t)c->n_layer * (size_t)c->n_cols[k]; i++) c->norm[k][i] = (float)sqrt(c->acc[k][i]);
        free(c->acc[k]);
        c->acc[k] = NULL;
    }
out:
    fwd_free(f);
    kv_free(kv);
    free(want);
    free(seq);
    free(pos);
    free(tokens);
    tok_free(tok);
    model_free(m);
    if (rc != SP_OK) convert_calib_free(c);
    else *out = c;
    return rc;
}

/* Which matmul input a per-layer weight reads; -1 for none. */
static int site_of(const char *name) {
    static const struct { const char *suffix; enum fwd_site site; } map[] = {
        { ".attn_q.weight", FWD_ATTN_IN }, { ".attn_k.weight", FWD_ATTN_IN }, { ".attn_v.weight", FWD_ATTN_IN },
        { ".attn_output.weight", FWD_ATTN_OUT }, { ".ffn_gate.weight", FWD_FFN_IN },
        { ".ffn_up.weight", FWD_FFN_IN }, { ".ffn_down.weight", FWD_FFN_MID },
    };
    const char *dot = strchr(name + (strncmp(name, "blk.", 4) == 0 ? 4 : 0), '.');
    for (size_t i = 0; dot && i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(dot, map[i].suffix)) return (int)map[i].site;
    return -1;
}

const float *convert_calib_norm(const struct convert_calib *c, const char *name, int64_t n_cols) {
    if (!c || !name) return NULL;
    const int layer = layer_of((struct gguf_str){ name, strlen(name) }), site = site_of(name);
    if (layer < 0 || layer >= c->n_layer || site < 0 || c->n_cols[site] != n_cols || !c->norm[site]) return NULL;
    return c->norm[site] + (size_t)layer * (size_t)n_cols;
}

/* --- the conversion --------------------------------------------------------- */

static const char *const sparse_keys[] = { "sparrow.sparse.format", "sparrow.sparse.method",
                                           "sparrow.sparse.sparsity", "sparrow.sparse.values" };

int convert_model(const char *in_path, const char *out_path, const struct convert_opts *o,
                  struct convert_stats *st, struct sp_err *err) {
    const struct convert_sparse *sp = o->sparse;
    struct convert_sparse by_type = {0};
    if (!sp && sparse_fmt_of(o->type, &by_type.fmt)) sp = &by_type;    /* one sparse type id as the target */
    if (sp) {
        struct sparse_fmt probe;
        const bool ok = sp->fmt.b > 1 && sp->block_sparsity > 0.0 ? convert_block_fmt(sp->fmt.b, sp->block_sparsity, sp->fmt.val, 4096, &probe) ||
                                            convert_block_fmt(sp->fmt.b, sp->block_sparsity, sp->fmt.val, 64 * 1024, &probe)
                                      : sparse_type_id(&sp->fmt) != 0;
        if (!ok || (sp->v > 1 && (sp->fmt.b != 1 || sp->fmt.n != 2 || sp->fmt.m < 4)))
            return sp_fail(err, SP_EINVAL, "convert: sparse format (b %d, %d of %d, v %d) cannot be written",
                           sp->fmt.b, sp->fmt.n, sp->fmt.m, sp->v);
    } else {
        const struct qtype_info *ti = qtype_get(o->type);
        if (!ti || !ti->from_float || !ti->to_float)
            return sp_fail(err, SP_EINVAL, "convert: target type %u cannot be written", o->type);
    }
    struct convert_stats stats = {0};
    struct gguf *g = gguf_open(in_path, err);
    if (!g) return err ? err->code : SP_EIO;
    struct gguf_writer *w = gguf_w_new();
    int rc = w ? SP_OK : sp_fail(err, SP_ENOMEM, "convert: out of memory");
    for (int64_t i = 0; rc == SP_OK && i < (int64_t)gguf_n_kv(g); i++)
        if ((rc = gguf_w_copy_kv(w, g, i)) != SP_OK) sp_fail(err, rc, "convert: cannot copy metadata");
    /* the output of quantize holds no sparse tensor; sparsify writes its own */
    for (size_t k = 0; rc == SP_OK && k < sizeof(sparse_keys) / sizeof(sparse_keys[0]); k++) gguf_w_del(w, sparse_keys[k]);
    if (rc == SP_OK && !sp) {
        /* llama-quantize's key order for new keys: quantization_version, file_type */
        rc = gguf_w_set_u32(w, "general.quantization_version", 2);
        int ft = convert_file_type(o->type);
        if (rc == SP_OK && ft >= 0) rc = gguf_w_set_u32(w, "general.file_type", (uint32_t)ft);
    }
    const char *method = o->sparse_method ? o->sparse_method : o->calib ? "wanda" : "magnitude";
    if (rc == SP_OK && sp) {
        const char *fmt = o->sparse_format ? o->sparse_format : "sparse";
        rc = gguf_w_set_str(w, sparse_keys[0], fmt, strlen(fmt));
        if (rc == SP_OK) rc = gguf_w_set_str(w, sparse_keys[1], method, strlen(method));
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
    struct progress *pg = progress_start(sp ? "sparsify" : "quantize", total_mib, "MiB");
    for (uint64_t k = 0; rc == SP_OK && k < n_t; k++) {
        progress_update(pg, (double)stats.bytes_in / 1048576.0);
        const struct gguf_tensor *t = gguf_tensor_at(g, order[k].index);
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        bool eligible = t->n_dims == 2 && ends_with(t->name, ".weight") && can_decode(t->type);
        int layer = layer_of(t->name);
        if (o->layers_only || sp) {
            eligible = eligible && layer >= 0;
            for (int s = 0; eligible && s < o->n_skip_layers; s++)
                if (o->skip_layers[s] == layer) eligible = false;
        }
        const int64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
        struct sparse_fmt tf = {0};
        uint32_t to = t->type;
        if (eligible && sp) {
            if (convert_sparse_fmt_for(sp, t->ne[0], &tf)) to = sparse_type_id(&tf);
            else stats.n_fallback++;        /* the row length does not fit: stays dense */
        } else if (eligible) {
            to = convert_type_for(o->type, t->ne[0]);
        }
        stats.bytes_in += t->n_bytes;
        if (to == t->type) {
            rc = gguf_w_add_tensor(w, name, t->n_dims, t->ne, t->type, t->data, t->n_bytes, false);
            stats.n_copied++;
            stats.n_fallback += eligible && !sp && to != o->type;
            stats.bytes_out += t->n_bytes;
            if (eligible && sp && tf.m) {   /* already of the target type: exactly n of m kept */
                const uint64_t elems = (uint64_t)t->ne[0] * (uint64_t)n_rows;
                stats.n_pruned_elems += elems;
                stats.n_zeroed_elems += elems - elems / (uint64_t)tf.m * (uint64_t)tf.n;
            }
            continue;
        }
        uint64_t bytes = row_bytes(to, t->ne[0]) * (uint64_t)n_rows;
        uint8_t *out = malloc(bytes ? bytes : 1);
        if (!out) { rc = sp_fail(err, SP_ENOMEM, "convert: out of memory for '%s'", name); break; }
        if (sp) {
            const float *norm = convert_calib_norm(o->calib, name, t->ne[0]);
            if (o->calib && !norm) {
                free(out);
                rc = sp_fail(err, SP_EINVAL, "sparsify: no calibration norms for '%s'", name);
                break;
            }
            uint64_t kept = 0;
            rc = sparsify_tensor(t, &tf, sp->v, norm, o->threads, out, &kept);
            if (rc != SP_OK) {
                free(out);
                sp_fail(err, rc, rc == SP_ENOMEM ? "sparsify: out of memory pruning '%s'"
                                                 : "sparsify: cannot prune '%s'", name);
                break;
            }
            stats.n_pruned_elems += (uint64_t)t->ne[0] * (uint64_t)n_rows;
            stats.n_zeroed_elems += (uint64_t)t->ne[0] * (uint64_t)n_rows - kept;
        } else if ((rc = convert_tensor(t, to, o->threads, out)) != SP_OK) {
            free(out);
            sp_fail(err, rc, "convert: out of memory converting '%s'", name);
            break;
        }
        rc = gguf_w_add_tensor(w, name, t->n_dims, t->ne, to, out, bytes, true);
        if (sp || to == o->type) stats.n_converted++;
        else stats.n_fallback++;
        stats.bytes_out += bytes;
    }
    progress_done(pg);
    stats.sparsity = stats.n_pruned_elems ? (double)stats.n_zeroed_elems / (double)stats.n_pruned_elems : 0.0;
    if (rc == SP_OK && sp) {
        static const char *const vals[] = { "f16", "q8", "q4" };
        const char *v = (unsigned)sp->fmt.val < 3 ? vals[sp->fmt.val] : "f16";
        rc = gguf_w_set_f32(w, sparse_keys[2], (float)stats.sparsity);
        if (rc == SP_OK) rc = gguf_w_set_str(w, sparse_keys[3], v, strlen(v));
    }
    if (rc != SP_OK && err && err->code == SP_OK) sp_fail(err, rc, "convert: cannot build the output");
    free(order);
    if (rc == SP_OK) rc = gguf_w_write(w, out_path, err);
    gguf_w_free(w);
    gguf_close(g);
    if (st) *st = stats;
    return rc;
}
