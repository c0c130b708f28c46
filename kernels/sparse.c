/* sparse.c - the sparse weight type family of sparse.h: type ids, super-block
 * geometry, mask selection (magnitude, Wanda, V:N:M, block), the encoder, the
 * load-time checker, the dense expansion and the portable tile kernel (the
 * oracle the AVX-512 kernels of sparse_avx512.c are tested against).
 *
 * Dimensions: a row has n_cols elements = n_sb super-blocks of E elements;
 * a super-block has g groups of m blocks of b columns and keeps K = g*n*b
 * values. E <= 2048 for every valid format, so a super-block's decoded
 * values and columns fit on the stack. */
#include "kernels/sparse.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/err.h"
#include "kernels/cpu.h"

#define SPARSE_MAX_E 2048      /* largest super-block of any valid format */
#define SPARSE_LANES 16        /* accumulators per token in the portable kernel */
#define SPARSE_QT_CAP 256      /* distinct sparse ids one process can know */

/* Geometry of one super-block. */
struct sb_geom {
    int g;              /* groups */
    int E;              /* elements */
    int K;              /* kept values, a multiple of 32 */
    int p;              /* b = 1: bits per position; 0 for a bitmap */
    int idx_bytes;      /* index bytes */
    int chunk_bytes;    /* bytes of one chunk of 32 values */
    int bytes;          /* idx_bytes + K / 32 * chunk_bytes */
};

static int gcd(int a, int b) {
    while (b) { int t = a % b; a = b; b = t; }
    return a;
}

static bool fmt_valid(const struct sparse_fmt *f) {
    if (!f || (f->b != 1 && f->b != 2 && f->b != 4 && f->b != 8 && f->b != 16)) return false;
    const int m_max = f->b == 1 ? 16 : 64;
    if (f->m < 1 || f->m > m_max || f->n < 1 || f->n > f->m) return false;
    return f->val == SPARSE_VAL_F16 || f->val == SPARSE_VAL_Q8 || f->val == SPARSE_VAL_Q4;
}

/* False when f is not a valid format. */
static bool geom_of(const struct sparse_fmt *f, struct sb_geom *s) {
    if (!fmt_valid(f)) return false;
    s->g = 32 / gcd(32, f->n * f->b);
    s->E = s->g * f->m * f->b;
    s->K = s->g * f->n * f->b;
    if (f->b == 1) {
        s->p = f->m <= 4 ? 2 : 4;
        s->idx_bytes = s->K * s->p / 8;
    } else {
        s->p = 0;
        s->idx_bytes = (s->g * f->m + 31) / 32 * 4;
    }
    static const int chunk[] = { [SPARSE_VAL_F16] = 64, [SPARSE_VAL_Q8] = 34, [SPARSE_VAL_Q4] = 18 };
    s->chunk_bytes = chunk[f->val];
    s->bytes = s->idx_bytes + s->K / 32 * s->chunk_bytes;
    assert(s->E <= SPARSE_MAX_E && s->K % 32 == 0);
    return true;
}

/* ------------------------------------------------------------------ ids */

uint32_t sparse_type_id(const struct sparse_fmt *f) {
    if (!fmt_valid(f)) return 0;
    const uint32_t lb = (uint32_t)__builtin_ctz((unsigned)f->b);
    return SPARSE_ID_FLAG | (uint32_t)f->val << 16 | lb << 12 | (uint32_t)(f->m - 1) << 6 |
           (uint32_t)(f->n - 1);
}

bool sparse_fmt_of(uint32_t type, struct sparse_fmt *f) {
    if (!(type & SPARSE_ID_FLAG)) return false;
    const uint32_t lb = (type >> 12) & 15u;
    if (lb > 4) return false;
    struct sparse_fmt t = {
        .b = 1 << lb, .m = (int)((type >> 6) & 63u) + 1, .n = (int)(type & 63u) + 1,
        .val = (enum sparse_val)((type >> 16) & 15u),
    };
    /* the round trip also rejects stray bits above the flag */
    if (sparse_type_id(&t) != type) return false;
    if (f) *f = t;
    return true;
}

int sparse_block_elems(const struct sparse_fmt *f) {
    struct sb_geom s;
    return geom_of(f, &s) ? s.E : 0;
}

int sparse_block_bytes(const struct sparse_fmt *f) {
    struct sb_geom s;
    return geom_of(f, &s) ? s.bytes : 0;
}

/* ---------------------------------------------------------- qtype table */

/* Entries are appended under the lock and never change afterwards, so a
 * reader that sees n_entries (acquire) may read the first n_entries without
 * it. Bounded: a file naming more distinct sparse ids than the table holds
 * gets "unknown type" for the extra ones. */
struct qt_entry {
    uint32_t id;
    char name[32];
    struct qtype_info qi;
};
static struct qt_entry qt_entries[SPARSE_QT_CAP];
static atomic_int qt_n_entries;
static pthread_mutex_t qt_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct qtype_info *qt_find(uint32_t type, int n) {
    for (int i = 0; i < n; i++)
        if (qt_entries[i].id == type) return &qt_entries[i].qi;
    return NULL;
}

static const char *val_name(enum sparse_val v) {
    return v == SPARSE_VAL_F16 ? "f16" : v == SPARSE_VAL_Q8 ? "q8" : "q4";
}

const struct qtype_info *sparse_qtype_get(uint32_t type) {
    struct sparse_fmt f;
    if (!sparse_fmt_of(type, &f)) return NULL;
    const struct qtype_info *qi = qt_find(type, atomic_load_explicit(&qt_n_entries, memory_order_acquire));
    if (qi) return qi;
    pthread_mutex_lock(&qt_lock);
    const int n = atomic_load_explicit(&qt_n_entries, memory_order_relaxed);
    qi = qt_find(type, n);
    if (!qi && n < SPARSE_QT_CAP) {
        struct qt_entry *e = &qt_entries[n];
        e->id = type;
        if (f.b == 1) snprintf(e->name, sizeof(e->name), "sp_%d:%d_%s", f.n, f.m, val_name(f.val));
        else snprintf(e->name, sizeof(e->name), "sp_1x%d_%d:%d_%s", f.b, f.n, f.m, val_name(f.val));
        e->qi = (struct qtype_info){ e->name, sparse_block_elems(&f), sparse_block_bytes(&f), QTYPE_F32,
                                     NULL, NULL, NULL };
        atomic_store_explicit(&qt_n_entries, n + 1, memory_order_release);
        qi = &e->qi;
    }
    pthread_mutex_unlock(&qt_lock);
    return qi;
}

/* --------------------------------------------------------------- masks */

/* |w| * act_norm[c] (or |w|), NaN mapped to +inf so it counts as largest. */
static float score_of(float w, const float *act_norm, int64_t c) {
    float s = act_norm ? fabsf(w) * act_norm[c] : fabsf(w);
    return isnan(s) ? INFINITY : s;
}

/* kept[j] = 1 for the n largest of s[0..m), ties to the lower index: j is
 * kept when fewer than n entries beat it. O(m^2), m <= 64. */
static void top_n(const float *s, int m, int n, uint8_t *kept) {
    for (int j = 0; j < m; j++) {
        int beaten = 0;
        for (int i = 0; i < m && beaten < n; i++)
            beaten += s[i] > s[j] || (s[i] == s[j] && i < j);
        kept[j] = beaten < n;
    }
}

/* One row, element-wise (b = 1) or block-wise: block score = sum of its
 * element scores. */
static void mask_row(const struct sparse_fmt *f, const float *w, const float *act_norm, int64_t n_cols,
                     uint8_t *keep) {
    const int gw = f->m * f->b;
    float s[64];
    uint8_t kb[64];
    for (int64_t c0 = 0; c0 < n_cols; c0 += gw) {
        for (int j = 0; j < f->m; j++) {
            float sum = 0.0f;
            for (int e = 0; e < f->b; e++) sum += score_of(w[c0 + j * f->b + e], act_norm, c0 + j * f->b + e);
            s[j] = isnan(sum) ? INFINITY : sum;
        }
        top_n(s, f->m, f->n, kb);
        for (int j = 0; j < f->m; j++) memset(keep + c0 + j * f->b, kb[j], (size_t)f->b);
    }
}

/* V:2:M on rows [r0, r1): per group the strip keeps the 4 columns of largest
 * summed score, then each row its 2 best of those 4. */
static void mask_strip(const struct sparse_fmt *f, const float *w, const float *act_norm, int64_t r0,
                       int64_t r1, int64_t n_cols, uint8_t *keep) {
    const int m = f->m;
    float s[16];
    uint8_t kc[16];
    for (int64_t c0 = 0; c0 < n_cols; c0 += m) {
        for (int j = 0; j < m; j++) {
            float sum = 0.0f;
            for (int64_t r = r0; r < r1; r++) sum += score_of(w[r * n_cols + c0 + j], act_norm, c0 + j);
            s[j] = isnan(sum) ? INFINITY : sum;
        }
        top_n(s, m, 4, kc);
        int cols[4], nc = 0;
        for (int j = 0; j < m; j++)
            if (kc[j]) cols[nc++] = j;
        for (int64_t r = r0; r < r1; r++) {
            float rs[4];
            uint8_t k4[4];
            for (int i = 0; i < 4; i++) rs[i] = score_of(w[r * n_cols + c0 + cols[i]], act_norm, c0 + cols[i]);
            top_n(rs, 4, 2, k4);
            memset(keep + r * n_cols + c0, 0, (size_t)m);
            for (int i = 0; i < 4; i++) keep[r * n_cols + c0 + cols[i]] = k4[i];
        }
    }
}

int sparse_choose_mask(const struct sparse_fmt *f, int v, const float *w, const float *act_norm,
                       int64_t rows, int64_t n_cols, uint8_t *keep) {
    struct sb_geom s;
    if (!geom_of(f, &s) || rows < 0 || n_cols < 0 || n_cols % s.E != 0) return SP_EINVAL;
    if (v > 1 && (f->b != 1 || f->n != 2 || f->m < 4)) return SP_EINVAL;
    if (v > 1) {
        for (int64_t r0 = 0; r0 < rows; r0 += v)
            mask_strip(f, w, act_norm, r0, r0 + v < rows ? r0 + v : rows, n_cols, keep);
        return SP_OK;
    }
    for (int64_t r = 0; r < rows; r++) mask_row(f, w + r * n_cols, act_norm, n_cols, keep + r * n_cols);
    return SP_OK;
}

/* ------------------------------------------------------------- encoding */

/* Index of one super-block from its keep mask (E bytes); fills col[K] with
 * the kept columns in order. SP_EINVAL when the mask breaks the pattern. */
static int encode_index(const struct sparse_fmt *f, const struct sb_geom *s, const uint8_t *keep,
                        uint8_t *idx, int *col) {
    memset(idx, 0, (size_t)s->idx_bytes);
    int k = 0;
    for (int i = 0; i < s->g; i++) {
        int kept = 0;
        for (int j = 0; j < f->m; j++) {
            const int c = (i * f->m + j) * f->b;
            const uint8_t on = keep[c] != 0;
            for (int e = 1; e < f->b; e++)
                if ((keep[c + e] != 0) != on) return SP_EINVAL;     /* not a whole block */
            if (!on) continue;
            if (++kept > f->n) return SP_EINVAL;
            if (f->b == 1) {
                const int bit = k * s->p;
                idx[bit / 8] |= (uint8_t)(j << (bit % 8));
            } else {
                const int bit = i * f->m + j;
                idx[bit / 8] |= (uint8_t)(1u << (bit % 8));
            }
            for (int e = 0; e < f->b; e++) col[k++] = c + e;
        }
        if (kept != f->n) return SP_EINVAL;
    }
    return SP_OK;
}

/* K floats -> K/32 value chunks. */
static void encode_values(const struct sparse_fmt *f, const struct sb_geom *s, const float *v, uint8_t *out) {
    if (f->val == SPARSE_VAL_F16) {
        for (int k = 0; k < s->K; k++) {
            const uint16_t h = qt_f32_to_f16(v[k]);
            memcpy(out + 2 * k, &h, 2);
        }
        return;
    }
    const struct qtype_info *q = qtype_get(f->val == SPARSE_VAL_Q8 ? QTYPE_Q8_0 : QTYPE_Q4_0);
    /* the ggml block structs hold 16-bit fields: quantize into an aligned chunk */
    _Alignas(8) uint8_t chunk[64];
    for (int c = 0; c < s->K / 32; c++) {
        q->from_float(v + 32 * c, chunk, 32);
        memcpy(out + c * s->chunk_bytes, chunk, (size_t)s->chunk_bytes);
    }
}

int sparse_encode(const struct sparse_fmt *f, const float *w, const uint8_t *keep, int64_t rows,
                  int64_t n_cols, void *out) {
    struct sb_geom s;
    if (!geom_of(f, &s) || rows < 0 || n_cols < 0 || n_cols % s.E != 0) return SP_EINVAL;
    int col[SPARSE_MAX_E];
    float v[SPARSE_MAX_E];
    uint8_t *o = out;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c0 = 0; c0 < n_cols; c0 += s.E, o += s.bytes) {
            const int64_t base = r * n_cols + c0;
            if (encode_index(f, &s, keep + base, o, col) != SP_OK) return SP_EINVAL;
            for (int k = 0; k < s.K; k++) v[k] = w[base + col[k]];
            encode_values(f, &s, v, o + s.idx_bytes);
        }
    }
    return SP_OK;
}

/* --------------------------------------------------------------- checks */

static int check_index(const struct sparse_fmt *f, const struct sb_geom *s, const uint8_t *idx) {
    if (f->b == 1) {
        const unsigned mask = (1u << s->p) - 1;
        for (int i = 0, k = 0; i < s->g; i++) {
            int prev = -1;
            for (int q = 0; q < f->n; q++, k++) {
                const int bit = k * s->p;
                const int pos = (int)((idx[bit / 8] >> (bit % 8)) & mask);
                if (pos >= f->m || pos <= prev) return SP_EFORMAT;
                prev = pos;
            }
        }
        return SP_OK;
    }
    for (int i = 0; i < s->g; i++) {
        int kept = 0;
        for (int j = 0; j < f->m; j++) {
            const int bit = i * f->m + j;
            kept += (idx[bit / 8] >> (bit % 8)) & 1;
        }
        if (kept != f->n) return SP_EFORMAT;
    }
    for (int bit = s->g * f->m; bit < s->idx_bytes * 8; bit++)
        if ((idx[bit / 8] >> (bit % 8)) & 1) return SP_EFORMAT;    /* padding */
    return SP_OK;
}

int sparse_check(const struct sparse_fmt *f, const void *data, int64_t rows, int64_t n_cols) {
    struct sb_geom s;
    if (!geom_of(f, &s) || rows < 0 || n_cols < 0 || n_cols % s.E != 0) return SP_EINVAL;
    const uint8_t *p = data;
    const int64_t n_sb = rows * (n_cols / s.E);
    for (int64_t i = 0; i < n_sb; i++, p += s.bytes)
        if (check_index(f, &s, p) != SP_OK) return SP_EFORMAT;
    return SP_OK;
}

/* ------------------------------------------------------------- decoding */

/* Kept columns (0..E-1) of one super-block in value order. Never out of
 * range even on unchecked data: a position past the group or a bitmap with
 * too many bits is clamped or cut, too few leaves column 0. */
static void decode_cols(const struct sparse_fmt *f, const struct sb_geom *s, const uint8_t *idx, int16_t *col) {
    if (f->b == 1) {
        const unsigned mask = (1u << s->p) - 1;
        for (int k = 0; k < s->K; k++) {
            const int bit = k * s->p;
            int pos = (int)((idx[bit / 8] >> (bit % 8)) & mask);
            if (pos >= f->m) pos = f->m - 1;
            col[k] = (int16_t)(k / f->n * f->m + pos);
        }
        return;
    }
    int k = 0;
    for (int bit = 0; bit < s->g * f->m && k < s->K; bit++)
        if ((idx[bit / 8] >> (bit % 8)) & 1)
            for (int e = 0; e < f->b; e++) col[k++] = (int16_t)(bit * f->b + e);
    while (k < s->K) col[k++] = 0;
}

/* K value chunks -> K floats, as ggml dequantizes (Q: q * d). */
static void decode_vals(const struct sparse_fmt *f, const struct sb_geom *s, const uint8_t *v, float *out) {
    if (f->val == SPARSE_VAL_F16) {
        for (int k = 0; k < s->K; k++) {
            uint16_t h;
            memcpy(&h, v + 2 * k, 2);
            out[k] = qt_f16_to_f32(h);
        }
        return;
    }
    const struct qtype_info *q = qtype_get(f->val == SPARSE_VAL_Q8 ? QTYPE_Q8_0 : QTYPE_Q4_0);
    /* the ggml block structs hold 16-bit fields: copy each chunk aligned */
    _Alignas(8) uint8_t chunk[64];
    for (int c = 0; c < s->K / 32; c++) {
        memcpy(chunk, v + c * s->chunk_bytes, (size_t)s->chunk_bytes);
        q->to_float(chunk, out + 32 * c, 32);
    }
}

void sparse_row_to_float(const struct sparse_fmt *f, const void *row, float *out, int64_t n_cols) {
    struct sb_geom s;
    if (!geom_of(f, &s)) return;
    int16_t col[SPARSE_MAX_E];
    float v[SPARSE_MAX_E];
    const uint8_t *p = row;
    for (int64_t c0 = 0; c0 + s.E <= n_cols; c0 += s.E, p += s.bytes) {
        decode_cols(f, &s, p, col);
        decode_vals(f, &s, p + s.idx_bytes, v);
        memset(out + c0, 0, sizeof(float) * (size_t)s.E);
        for (int k = 0; k < s.K; k++) out[c0 + col[k]] = v[k];
    }
}

/* Fixed order per (row, token): value k of every super-block, in order,
 * goes to lane k % 16 of the token's accumulators; at the end the 16 lanes
 * are summed pairwise (8+8, 4+4, 2+2, 1+1). Each super-block is decoded
 * once for all nt tokens. Plain ISO C: no FMA contraction. */
static void tile_ref_row(const struct sparse_fmt *f, const struct sb_geom *s, int64_t n_cols,
                         const uint8_t *p, const float *x, size_t x_stride, int nt, float *y,
                         size_t y_stride) {
    int16_t col[SPARSE_MAX_E];
    float v[SPARSE_MAX_E];
    float acc[SPARSE_MAX_TOK][SPARSE_LANES] = {{0}};
    for (int64_t c0 = 0; c0 + s->E <= n_cols; c0 += s->E, p += s->bytes) {
        decode_cols(f, s, p, col);
        decode_vals(f, s, p + s->idx_bytes, v);
        for (int t = 0; t < nt; t++) {
            const float *xt = x + (size_t)t * x_stride + c0;
            float *a = acc[t];
            for (int k = 0; k < s->K; k++) a[k % SPARSE_LANES] += v[k] * xt[col[k]];
        }
    }
    for (int t = 0; t < nt; t++) {
        float *a = acc[t];
        for (int w = SPARSE_LANES / 2; w > 0; w /= 2)
            for (int i = 0; i < w; i++) a[i] += a[i + w];
        y[(size_t)t * y_stride] = a[0];
    }
}

void sparse_tile_ref(const struct sparse_fmt *f, int64_t n_cols, const void *rows, int nr,
                     const float *x, size_t x_stride, int nt, float *y, size_t y_stride) {
    struct sb_geom s;
    if (!geom_of(f, &s)) return;
    assert(nt >= 1 && nt <= SPARSE_MAX_TOK && nr >= 1 && nr <= SPARSE_MAX_ROWS);
    const size_t rb = (size_t)(n_cols / s.E) * (size_t)s.bytes;
    for (int r = 0; r < nr; r++)
        tile_ref_row(f, &s, n_cols, (const uint8_t *)rows + (size_t)r * rb, x, x_stride, nt, y + r,
                     y_stride);
}

/* ------------------------------------------------------------- dispatch */

sparse_tile_fn sparse_tile_get(const struct sparse_fmt *f) {
    sparse_tile_fn fast = cpu_caps()->allowed == SIMD_AVX512 ? sparse_tile_avx512(f) : NULL;
    return fast ? fast : sparse_tile_ref;
}
