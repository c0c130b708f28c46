/* test_kernels_bf16.c - the AVX-512 BF16 tile (kernels/quant_bf16.c) against
 * the reference of quant.c.
 *
 * - the CPU the tests run on has AVX-512 BF16, so the kernel must be there;
 * - act_prep is bit for bit the reference's BF16 activation conversion
 *   (qt_f32_to_bf16 through qtype_get(QTYPE_BF16)->from_float): every sign and
 *   exponent and top mantissa bits with low halves at and around the rounding
 *   tie (so ties to even, subnormals, +-0, the largest floats rounding to inf,
 *   inf, quiet and signalling NaN), random bit patterns, every length 1..100,
 *   and the padding up to act_bytes(n) is +0;
 * - tile() against the reference vec_dot on the reference-converted row, and
 *   against the exact (double) dot, within a rigorous rounding bound (see
 *   bf16_tolerance), for lengths around the 32-element chunk and 128-element
 *   unroll (BF16's block is 1 element, so any n is valid), weights unaligned;
 * - invariance, bit for bit: token t's result alone (nt = 1) equals its result
 *   at every slot of tiles of every width 1..max_tok. */
#include "kernels/quant.h"
#include "kernels/quant_fast.h"
#include "tests/unit/check.h"
#include "tests/unit/rnd.h"

#include <float.h>
#include <stdint.h>

/* Declared here until quant_fast.h's dispatch takes it. */

static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void test_cpu_has_bf16(void) {
    __builtin_cpu_init();
    const int has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (!has) fprintf(stderr, "  this CPU lacks AVX-512 BF16 (the test machine is meant to have it)\n");
    CHECK(has);
    const struct qfast *fk = qfast_bf16_get();
    CHECK((fk != NULL) == (has != 0));
    if (!fk) return;
    CHECK(qfast_bf16_get() == fk);
    CHECK_STR(fk->name, "avx512-bf16");
    CHECK(fk->max_tok >= 1 && fk->max_tok <= QFAST_MAX_TOK);
    for (int64_t n = 1; n <= 300; n++) {
        const size_t b = fk->act_bytes(n);
        CHECK_EQ(b % 64, 0);
        CHECK(b >= (size_t)n * 2 && b < (size_t)n * 2 + 64);
    }
}

/* Convert src[0..n) with act_prep and with the reference; compare the n
 * values and check the padding is +0 (dst is poisoned first). */
static int prep_matches(const struct qfast *fk, const float *src, int64_t n, uint8_t *buf,
                        uint16_t *ref) {
    const size_t b = fk->act_bytes(n);
    memset(buf, 0xA5, b + 64);
    fk->act_prep(src, n, buf);
    qtype_get(QTYPE_BF16)->from_float(src, ref, n);
    int bad = 0;
    if (memcmp(buf, ref, (size_t)n * 2) != 0) {
        const uint16_t *got = (const uint16_t *)buf;
        for (int64_t i = 0; i < n && bad < 3; i++)
            if (got[i] != ref[i]) {
                uint32_t u;
                memcpy(&u, &src[i], 4);
                fprintf(stderr, "  act_prep(0x%08x) = 0x%04x, reference 0x%04x\n", u, got[i], ref[i]);
                bad++;
            }
        if (!bad) bad = 1;
    }
    for (size_t i = (size_t)n * 2; i < b; i++)
        if (buf[i] != 0) { bad++; fprintf(stderr, "  padding byte %zu of n=%lld not 0\n", i, (long long)n); break; }
    for (size_t i = b; i < b + 64; i++)   /* nothing written past act_bytes */
        if (buf[i] != 0xA5) { bad++; fprintf(stderr, "  byte past act_bytes written (n=%lld)\n", (long long)n); break; }
    return bad;
}

static void test_act_prep_is_reference(void) {
    const struct qfast *fk = qfast_bf16_get();
    if (!fk) { CHECK(fk); return; }
    enum { CH = 4096 };
    float *src = malloc(CH * sizeof(float));
    uint16_t *ref = malloc(CH * sizeof(uint16_t));
    uint8_t *buf = aligned(CH * 2 + 128);
    CHECK(src && ref && buf);

    /* Named cases first, so a failure says which. */
    static const uint32_t named[] = {
        0x00000000u, 0x80000000u,                  /* +-0 */
        0x3f800000u, 0xbf800000u,                  /* +-1 */
        0x3f808000u, 0x3f818000u,                  /* exact ties: to even down, to even up */
        0xbf808000u, 0xbf818000u,                  /* negative ties */
        0x3f807fffu, 0x3f808001u, 0x3f80ffffu,     /* just below / above a tie */
        0x00000001u, 0x80000001u,                  /* smallest subnormals -> +-0 */
        0x00008000u, 0x00018000u, 0x00007fffu,     /* subnormal ties and near-ties */
        0x007fffffu, 0x807fffffu,                  /* largest subnormal rounds to FLT_MIN */
        0x00800000u, 0x00808000u,                  /* FLT_MIN, a tie next to it */
        0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu,     /* near FLT_MAX: stays, tie up to inf */
        0xff7fffffu,                               /* -FLT_MAX -> -inf */
        0x7f800000u, 0xff800000u,                  /* +-inf */
        0x7fc00000u, 0xffc00000u,                  /* quiet NaN */
        0x7f800001u, 0xff800001u, 0x7fbfffffu,     /* signalling NaN: made quiet */
        0x7fffffffu, 0x7f80ffffu,
        0x4b800000u, 0x5f800000u, 0x1f800000u,     /* large / small normals */
    };
    const int nn = (int)(sizeof(named) / sizeof(named[0]));
    for (int k = 0; k < nn; k++) {
        src[0] = bits_f(named[k]);
        CHECK_EQ(prep_matches(fk, src, 1, buf, ref), 0);
    }
    for (int k = 0; k < nn; k++) src[k] = bits_f(named[k]);   /* all in one vector row */
    CHECK_EQ(prep_matches(fk, src, nn, buf, ref), 0);

    /* Every top half (sign, exponent, 7 mantissa bits) with low halves at and
     * around the tie, and random ones: 65536 * 10 values in rows of CH. */
    static const uint16_t lows[] = {0x0000, 0x0001, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff};
    int bad = 0;
    for (int l = 0; l < 10; l++)
        for (uint32_t hi0 = 0; hi0 < 65536; hi0 += CH) {
            for (int i = 0; i < CH; i++) {
                const uint32_t lo = l < 8 ? lows[l] : (uint32_t)(rnd64() & 0xffff);
                src[i] = bits_f(((hi0 + (uint32_t)i) << 16) | lo);
            }
            bad += prep_matches(fk, src, CH, buf, ref);
        }
    CHECK_EQ(bad, 0);

    /* Random bits and ordinary activations at every length 1..100 (every
     * tail of the 16-float conversion and 32-element padding). */
    bad = 0;
    for (int64_t n = 1; n <= 100; n++)
        for (int rep = 0; rep < 20; rep++) {
            for (int64_t i = 0; i < n; i++)
                src[i] = rep & 1 ? bits_f((uint32_t)rnd64()) : frand() * (float)(rnd64() % 1000);
            bad += prep_matches(fk, src, n, buf, ref);
        }
    CHECK_EQ(bad, 0);
    free(src); free(ref); free(buf);
}

#define MAX_TOK 9

/* Tolerance of |tile - reference| for one row and token.
 *
 * Both compute sum_i w_i x_i of bf16 values; every product of two bf16 values
 * is exact in float (8 x 8 significand bits), so the only rounding is in the
 * additions (products below 2^-126 aside, see the absolute term):
 *   - the reference adds into 16 lanes, ceil(n/16) sequential additions per
 *     lane, then a 4-level tree: error <= (n/16 + 5) u S;
 *   - the tile adds into 4 accumulators x 16 lanes, one vdpbf16ps per 32
 *     elements per accumulator, each doing two rounded additions (the pair
 *     sums) per lane: ceil(n/128) * 2 per lane, then 2 levels to combine the 4
 *     accumulators and 4 levels of hsum: error <= (n/64 + 8) u S;
 * with u = 2^-24 and S = sum |w_i x_i| (standard a-priori bound of recursive
 * summation, gamma_k ~ k u; +1% covers the second-order terms).
 * vdpbf16ps also reads bf16 subnormal inputs as zero (DAZ) and flushes
 * subnormal results (FTZ): the dropped products are summed exactly here (F),
 * and each of its roundings (about one per element over all lanes and
 * accumulators, plus the reductions) may lose a further 2^-126 when it
 * flushes (in the reference, a product underflowing to a subnormal loses at
 * most 2^-150): an absolute (2n + 128) * 2^-126.
 * It is a worst case, not a statistical guess, so it can be tight for
 * cancellation-free data (all products of one sign) and never flakes. */
static double bf16_tolerance(int64_t n, double S, double F, int fast_only) {
    const double u = ldexp(1.0, -24);
    const double k = (double)n / 64.0 + 8.0 + (fast_only ? 0.0 : (double)n / 16.0 + 5.0);
    return 1.01 * k * u * S + F + (double)(2 * n + 128) * ldexp(1.0, -126);
}

static int is_sub(uint16_t h) { return (h & 0x7f80) == 0 && (h & 0x7f) != 0; }

/* Weight / activation flavours. */
enum { D_PLAIN, D_SAME_SIGN, D_WIDE, D_SUBNORMAL, D_CANCEL, D_COUNT };

static void fill(float *x, int64_t n, int kind, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float v = (frand() + frand() + frand() + frand()) * 0.5f;
        if (frand() > 0.97f) v *= 6.0f;
        switch (kind) {
        case D_SAME_SIGN: v = fabsf(v); break;
        case D_WIDE: v = ldexpf(v, (int)(rnd64() % 40) - 20); break;    /* 2^-20 .. 2^20 */
        case D_SUBNORMAL:                       /* a share of bf16 subnormals and tiny normals */
            if (rnd64() % 4 == 0) v = ldexpf(v, -126 - (int)(rnd64() % 8));
            break;
        case D_CANCEL: v = (i & 1) ? v : -v; break;
        default: break;
        }
        x[i] = v * scale;
    }
}

/* One length and data flavour: tile vs reference, vs exact, and invariance. */
static void check_size(const struct qfast *fk, int64_t n, int kind, int *bad_acc, int *bad_inv) {
    const struct qtype_info *wi = qtype_get(QTYPE_BF16);
    CHECK(wi && wi->dot_type == QTYPE_BF16 && wi->block_elems == 1);
    const size_t rb = (size_t)n * 2, arb = fk->act_bytes(n);
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * MAX_TOK * sizeof(float));
    uint8_t *wbuf = malloc(rb + 2);               /* row at offset 2: not 4/64-byte aligned */
    uint16_t *xq = malloc(rb * MAX_TOK);
    uint8_t *act = aligned(arb * MAX_TOK);
    CHECK(wf && xf && wbuf && xq && act);
    uint16_t *wq = (uint16_t *)(wbuf + 2);

    fill(wf, n, kind == D_SUBNORMAL ? D_PLAIN : kind, 0.5f);
    wi->from_float(wf, wq, n);
    if (kind == D_SUBNORMAL)   /* weights subnormal where the activations are not */
        for (int64_t i = 0; i < n; i += 7) wq[i] = (uint16_t)((wq[i] & 0x8000) | (rnd64() & 0x7f));
    fill(xf, n * MAX_TOK, kind, 1.0f);
    for (int k = 0; k < MAX_TOK; k++) {
        wi->from_float(xf + k * n, xq + k * n, n);
        fk->act_prep(xf + k * n, n, act + k * arb);
    }

    float single[MAX_TOK];
    for (int k = 0; k < MAX_TOK; k++) {
        fk->tile(n, wq, act + k * arb, arb, 1, &single[k], 1);
        const uint16_t *x = xq + k * n;
        const float ref = wi->vec_dot(n, wq, x);
        double S = 0, F = 0, exact = 0;
        for (int64_t i = 0; i < n; i++) {
            const double p = (double)qt_bf16_to_f32(wq[i]) * qt_bf16_to_f32(x[i]);
            exact += p;   /* |p| >= 2^-266 and sums of <= 5000 terms: no rounding of note */
            S += fabs(p);
            if (is_sub(wq[i]) || is_sub(x[i])) F += fabs(p);
        }
        const double tol = bf16_tolerance(n, S, F, 0), tol_x = bf16_tolerance(n, S, F, 1);
        if (!(fabs((double)single[k] - ref) <= tol) || !(fabs((double)single[k] - exact) <= tol_x)) {
            if ((*bad_acc)++ < 5)
                fprintf(stderr, "  n=%lld kind %d tok %d: tile %.9g ref %.9g exact %.9g (tol %.3g / %.3g)\n",
                        (long long)n, kind, k, single[k], ref, exact, tol, tol_x);
        }
    }
    for (int nt = 1; nt <= fk->max_tok; nt++)
        for (int s = 0; s + nt <= MAX_TOK; s++) {
            float out[QFAST_MAX_TOK * 3];
            memset(out, 0xA5, sizeof out);
            fk->tile(n, wq, act + s * arb, arb, nt, out, 3); /* strided output */
            for (int k = 0; k < nt; k++)
                if (memcmp(&out[k * 3], &single[s + k], sizeof(float)) != 0) {
                    if ((*bad_inv)++ < 5)
                        fprintf(stderr, "  n=%lld kind %d nt=%d slot %d: %.9g != %.9g alone\n",
                                (long long)n, kind, nt, k, out[k * 3], single[s + k]);
                }
            for (int k = 0; k < nt; k++) {   /* only y[t * y_stride] written */
                uint32_t g1, g2;
                memcpy(&g1, &out[k * 3 + 1], 4);
                memcpy(&g2, &out[k * 3 + 2], 4);
                if (g1 != 0xA5A5A5A5u || g2 != 0xA5A5A5A5u) (*bad_inv)++;
            }
        }
    free(wf); free(xf); free(wbuf); free(xq); free(act);
}

static const int64_t sizes[] = {1,  2,  3,   15,  16,  17,  31,  32,   33,   63,   64,  65,
                                95, 96, 97,  127, 128, 129, 159, 160,  255,  256,  257, 288,
                                768, 2047, 2048, 2049, 2080, 2111, 4096, 5003};
#define N_SIZES (int)(sizeof(sizes) / sizeof(sizes[0]))

static void test_tile_vs_reference(void) {
    const struct qfast *fk = qfast_bf16_get();
    if (!fk) { CHECK(fk); return; }
    int bad_acc = 0, bad_inv = 0;
    for (int s = 0; s < N_SIZES; s++)
        for (int kind = 0; kind < D_COUNT; kind++) check_size(fk, sizes[s], kind, &bad_acc, &bad_inv);
    CHECK_EQ(bad_acc, 0);
    CHECK_EQ(bad_inv, 0);
}

/* The bound is not vacuous: on typical data the tile is far closer to the
 * reference than the worst case, and on subnormal-free data it agrees with
 * the exact dot to a few ulps of S. */
static void test_tile_error_typical(void) {
    const struct qfast *fk = qfast_bf16_get();
    if (!fk) { CHECK(fk); return; }
    const int64_t n = 2048;
    float *wf = malloc(n * sizeof(float)), *xf = malloc(n * sizeof(float));
    uint16_t *wq = malloc(n * 2);
    uint8_t *act = aligned(fk->act_bytes(n));
    CHECK(wf && xf && wq && act);
    double worst = 0;
    for (int rep = 0; rep < 200; rep++) {
        fill(wf, n, D_PLAIN, 0.5f);
        fill(xf, n, D_PLAIN, 1.0f);
        qtype_get(QTYPE_BF16)->from_float(wf, wq, n);
        fk->act_prep(xf, n, act);
        float y;
        fk->tile(n, wq, act, 0, 1, &y, 1);
        const uint16_t *x = (const uint16_t *)act;
        double S = 0, exact = 0;
        for (int64_t i = 0; i < n; i++) {
            const double p = (double)qt_bf16_to_f32(wq[i]) * qt_bf16_to_f32(x[i]);
            exact += p;
            S += fabs(p);
        }
        const double e = fabs((double)y - exact) / S;
        if (e > worst) worst = e;
    }
    fprintf(stderr, "  n=2048: worst |tile - exact| / S = %.3g (bound %.3g)\n", worst,
            1.01 * (2048 / 64.0 + 8) * ldexp(1.0, -24));
    CHECK(worst < 8 * ldexp(1.0, -24));
    free(wf); free(xf); free(wq); free(act);
}

int main(void) {
    rnd_seed(0x9e3779b97f4a7c15ull);
    RUN(test_cpu_has_bf16);
    RUN(test_act_prep_is_reference);
    RUN(test_tile_vs_reference);
    RUN(test_tile_error_typical);
    return check_report();
}
