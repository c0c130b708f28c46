/* sparse_nm.c - N:M sparse types: layout, pruning encoder, dense expansion and
 * the compressed dot products. See sparse_nm.h and docs/formats.md. */
#include "kernels/sparse_nm.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define S24_X86 1
#endif

struct block_s24 {
    uint16_t v[16];         /* kept values, F16 */
    uint32_t idx;           /* 2-bit in-group positions, value k at bits 2k */
};
_Static_assert(sizeof(struct block_s24) == S24_BLOCK_BYTES, "s24_f16 block");

/* Position (0..31 in the block) of kept value k. */
static inline int s24_pos(uint32_t idx, int k) { return 4 * (k >> 1) + (int)((idx >> (2 * k)) & 3u); }

static void s24_to_float(const void *src, float *restrict dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < n / S24_BLOCK_ELEMS; b++) {
        struct block_s24 blk;
        memcpy(&blk, p + (size_t)b * S24_BLOCK_BYTES, sizeof(blk));
        float *y = dst + b * S24_BLOCK_ELEMS;
        for (int i = 0; i < S24_BLOCK_ELEMS; i++) y[i] = 0.0f;
        for (int k = 0; k < 16; k++) y[s24_pos(blk.idx, k)] = qt_f16_to_f32(blk.v[k]);
    }
}

/* Magnitude 2:4: per group of 4 keep the two largest |x| (NaN counts as
 * largest; on ties the lower position), in ascending position order. */
static void s24_from_float(const float *restrict x, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / S24_BLOCK_ELEMS; b++) {
        struct block_s24 blk = {0};
        const float *xb = x + b * S24_BLOCK_ELEMS;
        for (int g = 0; g < 8; g++) {
            float a[4];
            for (int i = 0; i < 4; i++) a[i] = isnan(xb[4 * g + i]) ? INFINITY : fabsf(xb[4 * g + i]);
            int first = 0;
            for (int i = 1; i < 4; i++) if (a[i] > a[first]) first = i;
            int second = first == 0 ? 1 : 0;
            for (int i = 0; i < 4; i++) if (i != first && a[i] > a[second]) second = i;
            int lo = first < second ? first : second, hi = first < second ? second : first;
            blk.v[2 * g] = qt_f32_to_f16(xb[4 * g + lo]);
            blk.v[2 * g + 1] = qt_f32_to_f16(xb[4 * g + hi]);
            blk.idx |= (uint32_t)lo << (4 * g);
            blk.idx |= (uint32_t)hi << (4 * g + 2);
        }
        memcpy(p + (size_t)b * S24_BLOCK_BYTES, &blk, sizeof(blk));
    }
}

/* Portable: lane k of 16 accumulates kept value k of every block (in block
 * order), then the lanes are summed pairwise as quant.c's float dots. */
float s24_f16_dot_ref(int64_t n, const void *wv, const void *xv) {
    const uint8_t *w = wv;
    const float *x = xv;
    float acc[16] = {0};
    for (int64_t b = 0; b < n / S24_BLOCK_ELEMS; b++) {
        struct block_s24 blk;
        memcpy(&blk, w + (size_t)b * S24_BLOCK_BYTES, sizeof(blk));
        const float *xb = x + b * S24_BLOCK_ELEMS;
        for (int k = 0; k < 16; k++) acc[k] += qt_f16_to_f32(blk.v[k]) * xb[s24_pos(blk.idx, k)];
    }
    for (int s = 8; s > 0; s /= 2)
        for (int k = 0; k < s; k++) acc[k] += acc[k + s];
    return acc[0];
}

#ifdef S24_X86
#define TGT __attribute__((target("avx512f,fma")))

/* Per block: the 16 kept values widen to floats; their positions come from
 * the index word (broadcast, shifted per lane, masked, plus the group base)
 * and pick the matching activations out of the block's 32 (two registers)
 * with one two-source permute; one FMA. Two accumulators alternate blocks. */
TGT float s24_f16_dot_avx512(int64_t n, const void *wv, const void *xv) {
    const uint8_t *w = wv;
    const float *x = xv;
    const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    const __m512i three = _mm512_set1_epi32(3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const int64_t nb = n / S24_BLOCK_ELEMS;
    int64_t b = 0;
#define S24_BLOCK(ACC, B) do { \
        const uint8_t *blk = w + (size_t)(B) * S24_BLOCK_BYTES; \
        uint32_t code; memcpy(&code, blk + 32, 4); \
        __m512i iv = _mm512_add_epi32(base, _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)code), shifts), three)); \
        __m512 wf = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk)); \
        const float *xb = x + (B) * S24_BLOCK_ELEMS; \
        __m512 xs = _mm512_permutex2var_ps(_mm512_loadu_ps(xb), iv, _mm512_loadu_ps(xb + 16)); \
        ACC = _mm512_fmadd_ps(wf, xs, ACC); } while (0)
    for (; b + 2 <= nb; b += 2) {
        S24_BLOCK(acc0, b);
        S24_BLOCK(acc1, b + 1);
    }
    if (b < nb) S24_BLOCK(acc0, b);
#undef S24_BLOCK
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#else
float s24_f16_dot_avx512(int64_t n, const void *wv, const void *xv) { (void)n; (void)wv; (void)xv; return NAN; }
#endif

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static float (*s24_dot_impl)(int64_t, const void *, const void *) = s24_f16_dot_ref;
static int cpu_avx512;

static void probe(void) {
#ifdef S24_X86
    __builtin_cpu_init();
    /* vcvtph2ps zmm is AVX-512F itself; no separate F16C check needed */
    cpu_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    const char *e = getenv("SPARROW_KERNELS");
    if (cpu_avx512 && !(e && strcmp(e, "ref") == 0)) s24_dot_impl = s24_f16_dot_avx512;
}

int s24_f16_dot_is_avx512(void) {
    pthread_once(&probe_once, probe);
    return s24_dot_impl == s24_f16_dot_avx512;
}

static float s24_dot(int64_t n, const void *w, const void *x) {
    pthread_once(&probe_once, probe);
    return s24_dot_impl(n, w, x);
}

static const struct qtype_info sparse_types[QTYPE_SPARSE_END - QTYPE_SPARSE_FIRST] = {
    [QTYPE_S24_F16 - QTYPE_SPARSE_FIRST] = {"s24_f16", S24_BLOCK_ELEMS, S24_BLOCK_BYTES, QTYPE_F32,
                                            s24_to_float, s24_from_float, s24_dot},
};

const struct qtype_info *sparse_qtype_get(uint32_t type) {
    if (type < QTYPE_SPARSE_FIRST || type >= QTYPE_SPARSE_END) return NULL;
    const struct qtype_info *t = &sparse_types[type - QTYPE_SPARSE_FIRST];
    return t->name ? t : NULL;
}
