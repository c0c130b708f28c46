/* sparse_avx512.c - AVX-512 tile kernels for the sparse types of sparse.h.
 *
 * Every kernel function carries a target attribute, so this file compiles on
 * any x86-64 gcc/clang whatever -march says; sparse_tile_avx512() hands the
 * kernels out only after kernels/cpu.h said the CPU runs them
 * (AVX-512 F/BW/VL/DQ/VBMI and FMA).
 *
 * The work is split in chunks of 16 kept values (half of a 32-value chunk):
 * the 16 weights become floats once per tile call (F16: vcvtph2ps; Q8_0:
 * vpmovsxbd, convert, times the chunk's scale; Q4_0: nibbles, convert,
 * fma(q, d, -8d) which is exactly (q - 8) * d rounded once), the 16
 * activations of their columns are gathered per token, and one FMA adds the
 * products to the token's accumulator.
 *   b = 1 (N:M, V:N:M): the columns of a chunk's 16 kept values lie in a
 *     window of the super-block (a plan per (m, n), built once, gives the
 *     window start of each chunk and each value's group offset in it); the
 *     p-bit positions are unpacked (vpmultishiftqb) and put in those offsets
 *     (m a power of two: one vpternlogd (pos & (m-1)) | off, and the window
 *     half/quarter masks come from the plan; else and + add + vptestmd); the activations are picked out of the window's
 *     registers: one vpermt2ps for windows of 32 columns (2:4, 4:8, 8:16,
 *     1:2), two and a blend for 64 (1:4, 2:8, 3:8, 2:5..2:7), four and three
 *     blends for 128 (2:9..2:16, 3:16...), a vpgatherdps beyond (1:9..1:16).
 *     A window may run past the end of its super-block (into the next one's
 *     activations, which is harmless); in the row's last super-block such
 *     windows take the gather instead, which reads only the kept columns
 *     and selects the same values, so the float operations do not change.
 *     When m is a power of two and n divides 16 (2:4, 2:8, 4:8, 1:4, 2:16,
 *     8:16...) every chunk has chunk 0's offsets and masks: they are loaded
 *     once per call ("f" kernels), not per chunk.
 *   b > 1 (block-sparse): the kept blocks' numbers come out of the bitmap:
 *     bitmaps of at most 64 bits (1x16 4:16 has 16) by tzcnt/blsr on a GPR,
 *     longer ones by a register vpcompressd per 16 bits into a stack list;
 *     b = 16: one load per block; b = 8: two 8-float loads per zmm; b = 4:
 *     four 4-float loads; b = 2: one 8 x 64-bit gather of block pairs per 16
 *     values.
 *
 * Rows: a call takes up to SPARSE_MAX_ROWS consecutive rows; with one token
 * they are computed 4 at a time (two tokens: 2; more: 1), sharing the
 * activation window loads (b = 1), the loop and the plan lookups, with
 * their own accumulators and reductions. The rows' bytes are prefetched PF
 * calls ahead (the hardware prefetcher alone leaves these kernels at about
 * half the DRAM bandwidth the dense ones get).
 *
 * Numerics, per (row, token), whatever nt, nr and the token's and the row's
 * slot in the call: chunk c of 16 kept values (in value order over the row) goes to
 * accumulator c % 2 with one FMA; at the end acc0 + acc1 is reduced by one
 * fixed tree. This order differs from sparse_tile_ref's (16 lanes by k % 16,
 * no FMA), so the two agree closely but not bit for bit.
 *
 * Unchecked data (sparse_check refuses it at load) cannot make a kernel read
 * outside the row's activations: positions are clamped to m - 1 where they
 * address memory (gathers), window permutes only select inside their
 * registers, bitmaps are cut at g*m bits and at n*g kept blocks.
 *
 * Pure functions; any thread (the plans are built once under pthread_once). */
#include "kernels/sparse.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels/cpu.h"
#include "kernels/simd_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

/* ------------------------------------------------------------- geometry */

struct geom {
    int g, E, K, p, idx_bytes;
};


static int geom_of(const struct sparse_fmt *f, struct geom *s) {
    if (!f || (f->b != 1 && f->b != 2 && f->b != 4 && f->b != 8 && f->b != 16)) return 0;
    const int m_max = f->b == 1 ? 16 : 64;
    if (f->m < 1 || f->m > m_max || f->n < 1 || f->n > f->m) return 0;
    if (f->val != SPARSE_VAL_F16 && f->val != SPARSE_VAL_Q8 && f->val != SPARSE_VAL_Q4) return 0;
    const int tz = __builtin_ctz((unsigned)(f->n * f->b));
    s->g = 32 >> (tz < 5 ? tz : 5);     /* 32 / gcd(32, n*b) */
    s->E = s->g * f->m * f->b;
    s->K = s->g * f->n * f->b;
    s->p = f->b == 1 ? (f->m <= 4 ? 2 : 4) : 0;
    s->idx_bytes = f->b == 1 ? s->K * s->p / 8 : (s->g * f->m + 31) / 32 * 4;
    return 1;
}

#define VBYTES(VAL) ((VAL) == SPARSE_VAL_F16 ? 64 : (VAL) == SPARSE_VAL_Q8 ? 34 : 18)

/* ------------------------------------------------------ b = 1: the plans */

enum { WIN_GATHER = 0 };

struct plan1 {
    int E, K, p, idx_bytes;
    int W;              /* window floats: 32, 64 or 128; WIN_GATHER */
    int over;           /* some chunk's window passes the super-block's end */
    const int32_t *off; /* K: column of value k minus its chunk's window start */
    const int32_t *wb;  /* K / 16: window start of each chunk */
    const int32_t *km;  /* K / 16: per chunk, lanes whose column has bit 5
                         * (low 16 bits) / bit 6 (high 16) set, when pow2 */
    int pow2;           /* m is a power of two: the position never carries
                         * into the group base, so column = base | pos */
    int fast;           /* pow2 and n divides 16: off and km are the same
                         * for every chunk (chunk 0's) */
};

#define POOL1_CAP 20480     /* sum over m <= 16, n <= m of K + 2 * K / 16: 19800 */
static int32_t pool1[POOL1_CAP];
static struct plan1 plans1[16][16];

static void build_plans(void) {
    int used = 0;
    for (int m = 1; m <= 16; m++)
        for (int n = 1; n <= m; n++) {
            const struct sparse_fmt f = {1, m, n, SPARSE_VAL_F16};
            struct geom s;
            struct plan1 *P = &plans1[m - 1][n - 1];
            if (!geom_of(&f, &s) || used + s.K + 2 * (s.K / 16) > POOL1_CAP) continue;
            int32_t *off = pool1 + used, *wb = off + s.K, *km = wb + s.K / 16;
            used += s.K + 2 * (s.K / 16);
            int span = 0;
            for (int c = 0; c < s.K / 16; c++) {
                wb[c] = (16 * c / n) * m;
                const int end = ((16 * c + 15) / n + 1) * m;
                if (end - wb[c] > span) span = end - wb[c];
            }
            const int pow2 = (m & (m - 1)) == 0;
            for (int k = 0; k < s.K; k++) off[k] = (k / n) * m - wb[k / 16];
            for (int c = 0; c < s.K / 16; c++) {
                /* with m a power of two, wb and the offsets are multiples of
                 * m and pos < m: bits 5 and 6 of a column come from off */
                uint32_t k = 0;
                for (int l = 0; l < 16; l++)
                    k |= (uint32_t)(off[16 * c + l] >> 5 & 1) << l | (uint32_t)(off[16 * c + l] >> 6 & 1) << (16 + l);
                km[c] = (int32_t)k;
            }
            const int W = span <= 32 ? 32 : span <= 64 ? 64 : span <= 128 ? 128 : WIN_GATHER;
            int over = 0;
            for (int c = 0; c < s.K / 16 && W; c++)
                if (wb[c] + W > s.E) over = 1;
            /* a window may only spill into the next super-block */
            const int fits = !W || W <= s.E;
            *P = (struct plan1){ s.E, s.K, s.p, s.idx_bytes, fits ? W : WIN_GATHER, fits && over, off, wb, km,
                                 pow2, pow2 && 16 % n == 0 };
        }
}

/* -------------------------------------------------------------- values */

INL float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Kept values 32*c2 + 16*h .. +15 of a super-block's values v, as floats. */
INL __m512 vals16(const int VAL, const uint8_t *v, int c2, int h) {
    if (VAL == SPARSE_VAL_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + 64 * c2 + 32 * h)));
    if (VAL == SPARSE_VAL_Q8) {
        const uint8_t *blk = v + 34 * c2;
        const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2 + 16 * h)));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(h2f(blk)));
    }
    const uint8_t *blk = v + 18 * c2;
    __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2)));
    q = h ? _mm512_srli_epi32(q, 4) : _mm512_and_si512(q, _mm512_set1_epi32(15));
    const float d = h2f(blk);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(d), _mm512_set1_ps(-8.0f * d));
}

/* ----------------------------------------------------- reduction / tiles */

#define TILE_ARGS const struct sparse_fmt *f, int64_t n_cols, const void *rows, int nr, const float *x, \
                  size_t xs, int nt, float *y, size_t ys
/* Rows in groups of RMAX (then one at a time), computed by
 * IMPL(NT, R, ...) with a constant token count, one unrolled copy each.
 * Every row is accumulated and reduced alone (the group only shares loads
 * and loop overhead), so neither R nor the row's place changes its bits. */
#define ROWS(NT, RMAX, IMPL, ...)                                                             \
    do {                                                                                      \
        int r_ = 0;                                                                           \
        if (RMAX > 1)                                                                         \
            for (; r_ + RMAX <= nr; r_ += RMAX)                                               \
                IMPL(NT, RMAX, __VA_ARGS__, f, n_cols, (const uint8_t *)rows + (size_t)r_ * rb, \
                     rb, x, xs, y + r_, ys);                                                  \
        for (; r_ < nr; r_++)                                                                 \
            IMPL(NT, 1, __VA_ARGS__, f, n_cols, (const uint8_t *)rows + (size_t)r_ * rb, rb, x, \
                 xs, y + r_, ys);                                                             \
    } while (0)
#define DEF_TILE(NAME, RBYTES, IMPL, ...)                                                     \
    static TGT void NAME(TILE_ARGS) {                                                         \
        const size_t rb = RBYTES(f, n_cols, __VA_ARGS__);                                     \
        switch (nt) {                                                                         \
        case 1: ROWS(1, SP_R1, IMPL, __VA_ARGS__); break;                                         \
        case 2: ROWS(2, 2, IMPL, __VA_ARGS__); break;                                         \
        case 3: ROWS(3, 1, IMPL, __VA_ARGS__); break;                                         \
        case 4: ROWS(4, 1, IMPL, __VA_ARGS__); break;                                         \
        case 5: ROWS(5, 1, IMPL, __VA_ARGS__); break;                                         \
        case 6: ROWS(6, 1, IMPL, __VA_ARGS__); break;                                         \
        case 7: ROWS(7, 1, IMPL, __VA_ARGS__); break;                                         \
        case 8: ROWS(8, 1, IMPL, __VA_ARGS__); break;                                         \
        default: break;                                                                       \
        }                                                                                     \
    }
#define RROW_ARGS const struct sparse_fmt *f, int64_t n_cols, const uint8_t *row, size_t rb, \
                  const float *x, size_t xs, float *y, size_t ys

#define MAXACC 16   /* R * NT accumulator pairs at most (NT = 1: R = 4; 2: 2) */
#ifndef PF
#define PF 4        /* prefetch distance in calls (runs of R rows) */
#endif
#ifndef SP_R1
#define SP_R1 4     /* rows computed together with one token */
#endif

/* Software prefetch of the rows PF groups ahead: the R rows of a call are
 * one contiguous run of R * rb bytes, and super-block i of n_sb covers its
 * share [i * R * sbb, (i + 1) * R * sbb) of the run PF runs ahead. Plain
 * prefetches never fault, so running past the matrix is harmless. */
INL void pf_share(const uint8_t *row, size_t run, int64_t i, size_t share) {
    if (!PF) return;
    const uintptr_t base = (uintptr_t)row + PF * run;
    uintptr_t a = (base + (uintptr_t)i * share) & ~(uintptr_t)63;
    const uintptr_t end = base + (uintptr_t)(i + 1) * share;
    for (; a < end; a += 64) _mm_prefetch((const char *)a, _MM_HINT_T0);
}

/* --------------------------------------------------------- b = 1 kernel */

/* One super-block of R rows: sb row 0's bytes (row r at sb + r * rb), xb the
 * activations of its first column for token 0 (token t at xb + t * xs).
 * FAST: the plan's offsets are chunk 0's for every chunk (off0, k50, k60). */
INL void nm_sb(const int NT, const int R, const int VAL, const int W, const int FAST,
               const struct plan1 *P, const int m, const uint8_t *sb, size_t rb, const float *xb,
               size_t xs, __m512 acc[][2], __m512i off0, __mmask16 k50, __mmask16 k60) {
    /* byte 0 of dword k = bits [p*k, p*k + 8) of the chunk's positions; for
     * p = 2 one 64-bit word holds both chunks of a pair (h = 1: bits 32..) */
    const __m512i ctl2[2] = {
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        _mm512_setr_epi32(32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62)};
    const __m512i ctl4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
    const int pow2 = FAST || P->pow2, p2 = P->p == 2;
    const __m512i pmask = _mm512_set1_epi32(pow2 ? m - 1 : p2 ? 3 : 15);
    const __m512i pmax = _mm512_set1_epi32(m - 1);
    const int nc2 = P->K / 32;
    const size_t ib = (size_t)P->idx_bytes;
    for (int c2 = 0; c2 < nc2; c2++) {
        __m512 w[SPARSE_MAX_ROWS][2];
        __m512i u2[SPARSE_MAX_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *sr = sb + (size_t)r * rb;
            w[r][0] = vals16(VAL, sr + ib, c2, 0);
            w[r][1] = vals16(VAL, sr + ib, c2, 1);
            u2[r] = p2 ? _mm512_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(sr + 8 * c2)))
                       : _mm512_setzero_si512();
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const int c = 2 * c2 + h;
            __m512i idx[SPARSE_MAX_ROWS];
            __mmask16 k5[SPARSE_MAX_ROWS], k6[SPARSE_MAX_ROWS];
            __m512i off = off0;
            if (!FAST) off = _mm512_loadu_si512(P->off + 16 * c);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i pos;
                if (p2) {
                    pos = _mm512_multishift_epi64_epi8(ctl2[h], u2[r]);
                } else {
                    const __m128i u = _mm_loadl_epi64((const __m128i *)(sb + (size_t)r * rb + 8 * c));
                    pos = _mm512_multishift_epi64_epi8(ctl4, _mm512_broadcastq_epi64(u));
                }
                k5[r] = k6[r] = 0;
                if (pow2) {
                    /* (pos & (m - 1)) | off: one vpternlogd; stays in the group */
                    idx[r] = _mm512_ternarylogic_epi32(pos, pmask, off, 0xEA);
                    if (FAST) {
                        k5[r] = k50;
                        k6[r] = k60;
                    } else {
                        k5[r] = (__mmask16)P->km[c];
                        k6[r] = (__mmask16)((uint32_t)P->km[c] >> 16);
                    }
                } else {
                    pos = _mm512_and_si512(pos, pmask);
                    if (W == WIN_GATHER) pos = _mm512_min_epu32(pos, pmax);
                    idx[r] = _mm512_add_epi32(pos, off);
                    if (W == 64 || W == 128) k5[r] = _mm512_test_epi32_mask(idx[r], _mm512_set1_epi32(32));
                    if (W == 128) k6[r] = _mm512_test_epi32_mask(idx[r], _mm512_set1_epi32(64));
                }
            }
            const float *xw = xb + P->wb[c];
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const float *xt = xw + (size_t)t * xs;
                __m512 xa[8];
                if (W != WIN_GATHER)
#pragma GCC unroll 8
                    for (int i = 0; i < W / 16; i++) xa[i] = _mm512_loadu_ps(xt + 16 * i);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    __m512 xv;
                    if (W == 32) {
                        xv = _mm512_permutex2var_ps(xa[0], idx[r], xa[1]);
                    } else if (W == 64) {
                        const __m512 a = _mm512_permutex2var_ps(xa[0], idx[r], xa[1]);
                        const __m512 b = _mm512_permutex2var_ps(xa[2], idx[r], xa[3]);
                        xv = _mm512_mask_mov_ps(a, k5[r], b);
                    } else if (W == 128) {
                        const __m512 a = _mm512_permutex2var_ps(xa[0], idx[r], xa[1]);
                        const __m512 b = _mm512_permutex2var_ps(xa[2], idx[r], xa[3]);
                        const __m512 e = _mm512_permutex2var_ps(xa[4], idx[r], xa[5]);
                        const __m512 g = _mm512_permutex2var_ps(xa[6], idx[r], xa[7]);
                        xv = _mm512_mask_mov_ps(_mm512_mask_mov_ps(a, k5[r], b), k6[r],
                                                _mm512_mask_mov_ps(e, k5[r], g));
                    } else {
                        xv = _mm512_i32gather_ps(idx[r], xt, 4);
                    }
                    acc[r * NT + t][h] = _mm512_fmadd_ps(w[r][h], xv, acc[r * NT + t][h]);
                }
            }
        }
    }
}

INL void nm_impl(const int NT, const int R, const int VAL, const int W, const int FAST, RROW_ARGS) {
    const struct plan1 *P = &plans1[f->m - 1][f->n - 1];
    const size_t sbb = (size_t)P->idx_bytes + (size_t)(P->K / 32) * VBYTES(VAL);
    const int64_t E = P->E;
    __m512 acc[MAXACC][2];
#pragma GCC unroll 16
    for (int i = 0; i < R * NT; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const __m512i off0 = FAST ? _mm512_loadu_si512(P->off) : _mm512_setzero_si512();
    const __mmask16 k50 = (__mmask16)P->km[0], k60 = (__mmask16)((uint32_t)P->km[0] >> 16);
    const uint8_t *sb = row;
    int64_t sbi = 0;
    for (int64_t c0 = 0; c0 + E <= n_cols; c0 += E, sb += sbb, sbi++) {
        const float *xb = x + c0;
        pf_share(row, R * rb, sbi, R * sbb);
        if (W != WIN_GATHER && P->over && c0 + 2 * E > n_cols)
            nm_sb(NT, R, VAL, WIN_GATHER, FAST, P, f->m, sb, rb, xb, xs, acc, off0, k50, k60);
        else
            nm_sb(NT, R, VAL, W, FAST, P, f->m, sb, rb, xb, xs, acc, off0, k50, k60);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
            y[(size_t)t * ys + r] = hsum512(_mm512_add_ps(acc[r * NT + t][0], acc[r * NT + t][1]));
}

static inline size_t nm_rb(const struct sparse_fmt *f, int64_t n_cols, int VAL, int W, int FAST) {
    (void)W, (void)FAST;
    const struct plan1 *P = &plans1[f->m - 1][f->n - 1];
    return (size_t)(n_cols / P->E) * ((size_t)P->idx_bytes + (size_t)(P->K / 32) * VBYTES(VAL));
}

#define DEF_NM(V, VN)                                                      \
    DEF_TILE(nm_##VN##_w32, nm_rb, nm_impl, V, 32, 0)                      \
    DEF_TILE(nm_##VN##_w64, nm_rb, nm_impl, V, 64, 0)                      \
    DEF_TILE(nm_##VN##_w128, nm_rb, nm_impl, V, 128, 0)                    \
    DEF_TILE(nm_##VN##_gat, nm_rb, nm_impl, V, WIN_GATHER, 0)              \
    DEF_TILE(nm_##VN##_w32f, nm_rb, nm_impl, V, 32, 1)                     \
    DEF_TILE(nm_##VN##_w64f, nm_rb, nm_impl, V, 64, 1)                     \
    DEF_TILE(nm_##VN##_w128f, nm_rb, nm_impl, V, 128, 1)                   \
    DEF_TILE(nm_##VN##_gatf, nm_rb, nm_impl, V, WIN_GATHER, 1)
DEF_NM(SPARSE_VAL_F16, f16)
DEF_NM(SPARSE_VAL_Q8, q8)
DEF_NM(SPARSE_VAL_Q4, q4)

/* ------------------------------------------------- b > 1: block-sparse */

#define BS_MAX_BITS 1024    /* g * m <= 16 * 64 */

INL __m512 bs_x16(const int B, const float *xt, const int32_t *bl) {
    if (B == 16) return _mm512_loadu_ps(xt + 16 * bl[0]);
    if (B == 8)
        return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(xt + 8 * bl[0])),
                                  _mm256_loadu_ps(xt + 8 * bl[1]), 1);
    if (B == 4) {
        const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(xt + 4 * bl[0])),
                                               _mm_loadu_ps(xt + 4 * bl[1]), 1);
        const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(xt + 4 * bl[2])),
                                               _mm_loadu_ps(xt + 4 * bl[3]), 1);
        return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
    /* B == 2: 8 pairs of floats, one 64-bit gather */
    const __m256i ix = _mm256_loadu_si256((const __m256i *)bl);
    return _mm512_castpd_ps(_mm512_i32gather_pd(ix, (const void *)xt, 8));
}

/* The next kept block of a bitmap word (0 once it is empty: unchecked data
 * with too few bits reads block 0, as the general path does). */
INL int next_blk(uint64_t *u) {
    uint64_t v = *u;
    __asm__("" : "+r"(v));      /* keep the words in GPRs: no SLP vectors */
    const int j = v ? __builtin_ctzll(v) : 0;
    *u = v & (v - 1);
    return j;
}

/* geometry of a block-sparse format with B known */
INL void bs_geom(const int B, const struct sparse_fmt *f, int *g, int *E, int *K, int *ib) {
    const int tz = __builtin_ctz((unsigned)(f->n * B));
    *g = 32 >> (tz < 5 ? tz : 5);
    *E = *g * f->m * B;
    *K = *g * f->n * B;
    *ib = (*g * f->m + 31) / 32 * 4;
}

INL void bs_impl(const int NT, const int R, const int VAL, const int B, RROW_ARGS) {
    int g, E, K, ib;
    bs_geom(B, f, &g, &E, &K, &ib);
    const int nbits = g * f->m, nblk = K / B;
    const size_t sbb = (size_t)ib + (size_t)(K / 32) * VBYTES(VAL);
    __m512 acc[MAXACC][2];
#pragma GCC unroll 16
    for (int i = 0; i < R * NT; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const uint8_t *sb = row;
    if (B >= 4 && nbits <= 64) {
        /* bitmap in one word: the kept blocks by tzcnt, in registers */
        const uint64_t cut = nbits == 64 ? ~0ull : (1ull << nbits) - 1;
        int64_t sbi = 0;
        for (int64_t c0 = 0; c0 + E <= n_cols; c0 += E, sb += sbb, sbi++) {
            pf_share(row, R * rb, sbi, R * sbb);
            uint64_t u[SPARSE_MAX_ROWS];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *sr = sb + (size_t)r * rb;
                if (ib == 4) {
                    uint32_t u32;
                    memcpy(&u32, sr, 4);
                    u[r] = u32 & cut;
                } else {
                    memcpy(&u[r], sr, 8);
                    u[r] &= cut;
                }
            }
            const float *xb = x + c0;
            for (int c2 = 0; c2 < K / 32; c2++) {
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
                    for (int r = 0; r < R; r++) {
                        int32_t bl[4];
                        bl[0] = next_blk(&u[r]);
                        if (B <= 8) bl[1] = next_blk(&u[r]);
                        if (B <= 4) {
                            bl[2] = next_blk(&u[r]);
                            bl[3] = next_blk(&u[r]);
                        }
                        const __m512 w = vals16(VAL, sb + (size_t)r * rb + ib, c2, h);
#pragma GCC unroll 8
                        for (int t = 0; t < NT; t++)
                            acc[r * NT + t][h] = _mm512_fmadd_ps(w, bs_x16(B, xb + (size_t)t * xs, bl),
                                                                 acc[r * NT + t][h]);
                    }
                }
            }
        }
    } else {
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        int32_t bl[BS_MAX_BITS + 16];
        int64_t sbi = 0;
        for (int64_t c0 = 0; c0 + E <= n_cols; c0 += E, sb += sbb, sbi++) {
            const float *xb = x + c0;
            pf_share(row, R * rb, sbi, R * sbb);
#pragma GCC unroll 1
            for (int r = 0; r < R; r++) {
                const uint8_t *sr = sb + (size_t)r * rb;
                /* kept blocks in order: vpcompressd (register form) of the
                 * bit numbers, 16 bitmap bits at a time; bits past g*m are
                 * cut; missing blocks (fewer than n*g bits: unchecked data)
                 * read block 0 */
                int nb = 0;
                for (int wi = 0; wi * 16 < nbits; wi++) {
                    uint16_t u;
                    memcpy(&u, sr + 2 * wi, 2);
                    if (nbits - wi * 16 < 16) u &= (uint16_t)((1u << (nbits - wi * 16)) - 1);
                    _mm512_storeu_si512(bl + nb, _mm512_maskz_compress_epi32((__mmask16)u,
                                        _mm512_add_epi32(iota, _mm512_set1_epi32(16 * wi))));
                    nb += __builtin_popcount(u);
                }
                while (nb < nblk) bl[nb++] = 0;
                const uint8_t *v = sr + ib;
                for (int c2 = 0; c2 < K / 32; c2++) {
                    __m512 w[2];
                    w[0] = vals16(VAL, v, c2, 0);
                    w[1] = vals16(VAL, v, c2, 1);
#pragma GCC unroll 2
                    for (int h = 0; h < 2; h++) {
                        const int32_t *bh = bl + (32 * c2 + 16 * h) / B;
#pragma GCC unroll 8
                        for (int t = 0; t < NT; t++)
                            acc[r * NT + t][h] = _mm512_fmadd_ps(w[h], bs_x16(B, xb + (size_t)t * xs, bh),
                                                                 acc[r * NT + t][h]);
                    }
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
            y[(size_t)t * ys + r] = hsum512(_mm512_add_ps(acc[r * NT + t][0], acc[r * NT + t][1]));
}

static inline size_t bs_rb(const struct sparse_fmt *f, int64_t n_cols, int VAL, int B) {
    const int tz = __builtin_ctz((unsigned)(f->n * B));
    const int g = 32 >> (tz < 5 ? tz : 5);
    const int E = g * f->m * B, K = g * f->n * B, ib = (g * f->m + 31) / 32 * 4;
    return (size_t)(n_cols / E) * ((size_t)ib + (size_t)(K / 32) * VBYTES(VAL));
}

DEF_TILE(bs_f16_2, bs_rb, bs_impl, SPARSE_VAL_F16, 2)
DEF_TILE(bs_f16_4, bs_rb, bs_impl, SPARSE_VAL_F16, 4)
DEF_TILE(bs_f16_8, bs_rb, bs_impl, SPARSE_VAL_F16, 8)
DEF_TILE(bs_f16_16, bs_rb, bs_impl, SPARSE_VAL_F16, 16)
DEF_TILE(bs_q8_2, bs_rb, bs_impl, SPARSE_VAL_Q8, 2)
DEF_TILE(bs_q8_4, bs_rb, bs_impl, SPARSE_VAL_Q8, 4)
DEF_TILE(bs_q8_8, bs_rb, bs_impl, SPARSE_VAL_Q8, 8)
DEF_TILE(bs_q8_16, bs_rb, bs_impl, SPARSE_VAL_Q8, 16)
DEF_TILE(bs_q4_2, bs_rb, bs_impl, SPARSE_VAL_Q4, 2)
DEF_TILE(bs_q4_4, bs_rb, bs_impl, SPARSE_VAL_Q4, 4)
DEF_TILE(bs_q4_8, bs_rb, bs_impl, SPARSE_VAL_Q4, 8)
DEF_TILE(bs_q4_16, bs_rb, bs_impl, SPARSE_VAL_Q4, 16)

/* ------------------------------------------------------------- dispatch */

static bool cpu_ok;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void) {
    cpu_ok = cpu_has(SIMD_AVX512) && cpu_caps()->avx512dq && cpu_caps()->avx512vbmi;
    if (cpu_ok) build_plans();
}

sparse_tile_fn sparse_tile_avx512(const struct sparse_fmt *f) {
    pthread_once(&probe_once, probe);
    struct geom s;
    if (!cpu_ok || !geom_of(f, &s)) return NULL;
    static const sparse_tile_fn nm[3][2][4] = {
        [SPARSE_VAL_F16] = {{nm_f16_gat, nm_f16_w32, nm_f16_w64, nm_f16_w128},
                            {nm_f16_gatf, nm_f16_w32f, nm_f16_w64f, nm_f16_w128f}},
        [SPARSE_VAL_Q8] = {{nm_q8_gat, nm_q8_w32, nm_q8_w64, nm_q8_w128},
                           {nm_q8_gatf, nm_q8_w32f, nm_q8_w64f, nm_q8_w128f}},
        [SPARSE_VAL_Q4] = {{nm_q4_gat, nm_q4_w32, nm_q4_w64, nm_q4_w128},
                           {nm_q4_gatf, nm_q4_w32f, nm_q4_w64f, nm_q4_w128f}},
    };
    static const sparse_tile_fn bs[3][4] = {
        [SPARSE_VAL_F16] = {bs_f16_2, bs_f16_4, bs_f16_8, bs_f16_16},
        [SPARSE_VAL_Q8] = {bs_q8_2, bs_q8_4, bs_q8_8, bs_q8_16},
        [SPARSE_VAL_Q4] = {bs_q4_2, bs_q4_4, bs_q4_8, bs_q4_16},
    };
    if (f->b == 1) {
        const struct plan1 *P = &plans1[f->m - 1][f->n - 1];
        if (!P->K) return NULL;     /* not planned (cannot happen) */
        return nm[f->val][P->fast][P->W == WIN_GATHER ? 0 : P->W == 32 ? 1 : P->W == 64 ? 2 : 3];
    }
    return bs[f->val][__builtin_ctz((unsigned)f->b) - 1];
}

#else /* not x86: no fast kernels */

sparse_tile_fn sparse_tile_avx512(const struct sparse_fmt *f) {
    (void)f;
    return NULL;
}

#endif
