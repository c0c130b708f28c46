/* test_quant.c - block formats, conversions and reference dot products.
 * Layout tests build blocks by hand from ggml-common.h's description (not
 * with quant.c's packers), so a wrong layout cannot pass by self-agreement. */
#include "kernels/quant.h"
#include "tests/unit/check.h"

#include <stdint.h>

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* Roughly gaussian (sum of uniforms) with a few outliers, like weights. */
static void fill_random(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float v = (frand() + frand() + frand() + frand()) * 0.5f;
        if (frand() > 0.98f) v *= 4.0f;
        x[i] = v * scale;
    }
}

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void put_f16(uint8_t *p, float v) { /* little-endian f16 field */
    uint16_t h = qt_f32_to_f16(v);
    p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8);
}

/* ------------------------------------------------------------ table */

static void test_table_sizes(void) {
    static const struct { uint32_t id; const char *name; int elems, bytes; } want[] = {
        {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},
        {3, "q4_1", 32, 20},    {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},
        {8, "q8_0", 32, 34},    {9, "q8_1", 32, 36},    {10, "q2_K", 256, 84},
        {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176},
        {14, "q6_K", 256, 210}, {15, "q8_K", 256, 292}, {16, "iq2_xxs", 256, 66},
        {17, "iq2_xs", 256, 74}, {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},
        {20, "iq4_nl", 32, 18}, {21, "iq3_s", 256, 110}, {22, "iq2_s", 256, 82},
        {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},     {25, "i16", 1, 2},
        {26, "i32", 1, 4},      {27, "i64", 1, 8},      {28, "f64", 1, 8},
        {29, "iq1_m", 256, 56}, {30, "bf16", 1, 2},     {34, "tq1_0", 256, 54},
        {35, "tq2_0", 256, 66},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct qtype_info *t = qtype_get(want[i].id);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK_STR(t->name, want[i].name);
        CHECK_EQ(t->block_elems, want[i].elems);
        CHECK_EQ(t->block_bytes, want[i].bytes);
    }
    static const uint32_t removed[] = {4, 5, 31, 32, 33, 36, 37, 38, 39, 40, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++) CHECK(qtype_get(removed[i]) == NULL);

    /* Computable types and their activation formats, per ggml's CPU traits. */
    static const struct { enum qtype w, dot; } comp[] = {
        {QTYPE_F32, QTYPE_F32}, {QTYPE_F16, QTYPE_F16}, {QTYPE_BF16, QTYPE_BF16},
        {QTYPE_Q4_0, QTYPE_Q8_0}, {QTYPE_Q5_0, QTYPE_Q8_0}, {QTYPE_Q8_0, QTYPE_Q8_0},
        {QTYPE_Q4_K, QTYPE_Q8_K}, {QTYPE_Q6_K, QTYPE_Q8_K},
    };
    for (size_t i = 0; i < sizeof comp / sizeof comp[0]; i++) {
        const struct qtype_info *t = qtype_get(comp[i].w);
        CHECK(t && t->to_float && t->vec_dot);
        CHECK(t && t->dot_type == comp[i].dot);
        CHECK(qtype_get(comp[i].dot)->from_float != NULL);
    }
    CHECK(qtype_get(QTYPE_Q8_K)->to_float != NULL);
    CHECK(qtype_get(QTYPE_Q4_1)->to_float == NULL);
    CHECK(qtype_get(QTYPE_Q5_K)->vec_dot == NULL);

    CHECK_EQ(qtype_row_bytes(QTYPE_Q4_0, 64), 36);
    CHECK_EQ(qtype_row_bytes(QTYPE_Q4_K, 4096), 16 * 144);
    CHECK_EQ(qtype_row_bytes(QTYPE_F16, 7), 14);
    CHECK_EQ(qtype_row_bytes(QTYPE_Q8_0, 33), 0);
    CHECK_EQ(qtype_row_bytes(QTYPE_Q6_K, 128), 0);
    CHECK_EQ(qtype_row_bytes((enum qtype)4, 32), 0);
    CHECK_EQ(qtype_row_bytes(QTYPE_Q8_0, 0), 0);
}

/* ------------------------------------------------------------ f16 / bf16 */

static void test_f16_known(void) {
    CHECK_EQ(qt_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ(qt_f32_to_f16(-2.0f), 0xc000);
    CHECK_EQ(qt_f32_to_f16(0.5f), 0x3800);
    CHECK_EQ(qt_f32_to_f16(0.0f), 0x0000);
    CHECK_EQ(qt_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ(qt_f32_to_f16(65504.0f), 0x7bff);          /* max half */
    CHECK_EQ(qt_f32_to_f16(65519.0f), 0x7bff);          /* below the tie: down */
    CHECK_EQ(qt_f32_to_f16(65520.0f), 0x7c00);          /* tie, 0x7bff odd: to inf */
    CHECK_EQ(qt_f32_to_f16(1e6f), 0x7c00);
    CHECK_EQ(qt_f32_to_f16(-1e6f), 0xfc00);
    CHECK_EQ(qt_f32_to_f16(ldexpf(1, -14)), 0x0400);    /* smallest normal */
    CHECK_EQ(qt_f32_to_f16(ldexpf(1, -24)), 0x0001);    /* smallest subnormal */
    CHECK_EQ(qt_f32_to_f16(ldexpf(1, -25)), 0x0000);    /* tie with 0: even */
    CHECK_EQ(qt_f32_to_f16(ldexpf(3, -26)), 0x0001);    /* 0.75 ulp: up */
    CHECK_EQ(qt_f32_to_f16(ldexpf(3, -25)), 0x0002);    /* 1.5 ulp tie: even 2 */
    CHECK_EQ(qt_f32_to_f16(ldexpf(5, -25)), 0x0002);    /* 2.5 ulp tie: even 2 */
    CHECK_EQ(qt_f32_to_f16(ldexpf(1023, -24) + ldexpf(1, -25)), 0x0400); /* carry to normal */
    CHECK_EQ(qt_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);     /* tie: even */
    CHECK_EQ(qt_f32_to_f16(1.0f + ldexpf(3, -11)), 0x3c02);     /* tie: even */
    CHECK_EQ(qt_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01); /* above tie */
    CHECK_EQ(qt_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ(qt_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t hn = qt_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    CHECK_EQ(qt_f32_to_f16(bitsf(0x7f800001)) & 0x7e00, 0x7e00); /* sNaN made quiet */

    CHECK(qt_f16_to_f32(0x3c00) == 1.0f);
    CHECK(qt_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(qt_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(qt_f16_to_f32(0x03ff) == ldexpf(1023, -24));
    CHECK(qt_f16_to_f32(0x0400) == ldexpf(1, -14));
    CHECK(qt_f16_to_f32(0x3555) == 0x155 * ldexpf(1, -12) + 0.25f); /* 0.333251953125 */
    CHECK(fbits(qt_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(isinf(qt_f16_to_f32(0x7c00)) && qt_f16_to_f32(0x7c00) > 0);
    CHECK(isinf(qt_f16_to_f32(0xfc00)) && qt_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(qt_f16_to_f32(0x7e00)));
}

/* Every half survives half -> float -> half, and rounding agrees with a
 * double-precision nearest-even search at every midpoint. */
static void test_f16_exhaustive(void) {
    int bad_rt = 0, bad_mid = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = qt_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            if ((qt_f32_to_f16(f) & 0x7e00) != 0x7e00) bad_rt++;
            continue;
        }
        if (qt_f32_to_f16(f) != h) bad_rt++;
        /* Midpoint to the next half up in magnitude: ties go to the even one. */
        if ((h & 0x7fff) < 0x7bff) {
            double mid = ((double)f + (double)qt_f16_to_f32((uint16_t)(h + 1))) / 2;
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            if (qt_f32_to_f16((float)mid) != want) bad_mid++;
            /* Just above the midpoint rounds away. */
            float above = nextafterf((float)mid, (float)mid * 2);
            if (qt_f32_to_f16(above) != (uint16_t)(h + 1)) bad_mid++;
        }
    }
    CHECK_EQ(bad_rt, 0);
    CHECK_EQ(bad_mid, 0);
}

static void test_bf16_known(void) {
    CHECK_EQ(qt_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(qt_f32_to_bf16(-2.0f), 0xc000);
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x3f808000)), 0x3f80); /* tie, even stays */
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x3f818000)), 0x3f82); /* tie, odd goes up */
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x3f808001)), 0x3f81); /* above tie */
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x3f807fff)), 0x3f80); /* below tie */
    CHECK_EQ(qt_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ(qt_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x7f7fffff)), 0x7f80);  /* FLT_MAX rounds to inf */
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x00010000)), 0x0001);  /* subnormal kept */
    CHECK_EQ(qt_f32_to_bf16(bitsf(0x7f800001)), 0x7fc0);  /* sNaN made quiet */
    CHECK_EQ(qt_f32_to_bf16(bitsf(0xffc00000)), 0xffc0);
    CHECK(qt_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(qt_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(isnan(qt_bf16_to_f32(0x7fc0)));
}

/* ------------------------------------------------------------ layouts */

/* Q4_0: d f16, then 16 bytes; element j low nibble of byte j, j+16 high. */
static void test_q4_0_layout(void) {
    uint8_t blk[18];
    put_f16(blk, 1.0f);
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    qtype_get(QTYPE_Q4_0)->to_float(blk, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == (float)(j - 8));
        CHECK(y[j + 16] == (float)(7 - j));
    }
    /* Dot with a Q8_0 block of d = 0.5, all quants 2 (x = 1.0 each): the sum
     * of -8..7 twice is -16. */
    uint8_t xb[34];
    put_f16(xb, 0.5f);
    memset(xb + 2, 2, 32);
    CHECK(qtype_get(QTYPE_Q4_0)->vec_dot(32, blk, xb) == -16.0f);
    /* Element-selective: one activation at element 20 (-> 7-4 = 3). */
    memset(xb + 2, 0, 32);
    xb[2 + 20] = 4;
    CHECK(qtype_get(QTYPE_Q4_0)->vec_dot(32, blk, xb) == 3.0f * 4 * 0.5f);
}

/* Q5_0: d, qh (u32 LE, bit j = 5th bit of element j), qs as Q4_0. */
static void test_q5_0_layout(void) {
    uint8_t blk[22];
    put_f16(blk, 0.25f);
    int want[32];
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) want[j] = (j * 7 + 3) % 32; /* 5-bit codes, all used */
    for (int j = 0; j < 16; j++) blk[6 + j] = (uint8_t)((want[j] & 15) | ((want[j + 16] & 15) << 4));
    for (int j = 0; j < 32; j++) qh |= (uint32_t)(want[j] >> 4) << j;
    blk[2] = (uint8_t)qh; blk[3] = (uint8_t)(qh >> 8); blk[4] = (uint8_t)(qh >> 16); blk[5] = (uint8_t)(qh >> 24);
    float y[32];
    qtype_get(QTYPE_Q5_0)->to_float(blk, y, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        CHECK(y[j] == (want[j] - 16) * 0.25f);
        sum += want[j] - 16;
    }
    uint8_t xb[34];
    put_f16(xb, 1.0f);
    memset(xb + 2, 1, 32);
    CHECK(qtype_get(QTYPE_Q5_0)->vec_dot(32, blk, xb) == sum * 0.25f);
}

/* Q8_0: d, 32 int8. Activation quantization rounds half to even, as the
 * AVX path of ggml's quantize_row_q8_0 does. */
static void test_q8_0_layout(void) {
    float x[32] = {0};
    x[0] = 127.0f; /* amax 127: d = 1, id = 1 exactly */
    x[1] = 0.5f; x[2] = 1.5f; x[3] = 2.5f; x[4] = -0.5f; x[5] = -1.5f; x[6] = -2.5f;
    x[7] = 3.49f; x[8] = -126.6f;
    uint8_t q[34];
    qtype_get(QTYPE_Q8_0)->from_float(x, q, 32);
    CHECK_EQ(q[0] | q[1] << 8, 0x3c00);
    const int8_t *qs = (const int8_t *)(q + 2);
    CHECK_EQ(qs[0], 127);
    CHECK_EQ(qs[1], 0); CHECK_EQ(qs[2], 2); CHECK_EQ(qs[3], 2);
    CHECK_EQ(qs[4], 0); CHECK_EQ(qs[5], -2); CHECK_EQ(qs[6], -2);
    CHECK_EQ(qs[7], 3); CHECK_EQ(qs[8], -127);
    float y[32];
    qtype_get(QTYPE_Q8_0)->to_float(q, y, 32);
    CHECK(y[0] == 127.0f && y[8] == -127.0f && y[3] == 2.0f);
    /* Negative extreme gives a positive d too (d = amax/127). */
    for (int j = 0; j < 32; j++) x[j] = -(float)j;
    qtype_get(QTYPE_Q8_0)->from_float(x, q, 32);
    CHECK(qt_f16_to_f32((uint16_t)(q[0] | q[1] << 8)) == qt_f16_to_f32(qt_f32_to_f16(31.0f / 127)));
    CHECK_EQ(((const int8_t *)(q + 2))[31], -127);
    /* All-zero block: d = 0, quants 0. */
    memset(x, 0, sizeof x);
    qtype_get(QTYPE_Q8_0)->from_float(x, q, 32);
    for (int j = 0; j < 34; j++) CHECK_EQ(q[j], 0);
}

/* Q4_K packing of 8 six-bit scales and mins into 12 bytes (ggml-common.h /
 * get_scale_min_k4), written independently of quant.c. */
static void pack_k4_scales(uint8_t *s, const int *sc, const int *mn) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}

/* Q4_K: d, dmin, scales[12], qs[128]; 64 elements per 32 bytes, low nibbles
 * first. Value = d*sc*q - dmin*m. */
static void test_q4_K_layout(void) {
    uint8_t blk[144];
    put_f16(blk, 0.5f);
    put_f16(blk + 2, 0.25f);
    int sc[8] = {1, 63, 17, 32, 5, 48, 33, 62}, mn[8] = {0, 7, 63, 16, 31, 1, 50, 15};
    pack_k4_scales(blk + 4, sc, mn);
    int q[256];
    for (int i = 0; i < 256; i++) q[i] = (i * 5 + i / 16) & 15;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            blk[16 + 32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    float y[256];
    qtype_get(QTYPE_Q4_K)->to_float(blk, y, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++) {
        const int j = i / 32;
        const float want = 0.5f * sc[j] * q[i] - 0.25f * mn[j]; /* exact in float */
        if (y[i] != want) bad++;
    }
    CHECK_EQ(bad, 0);

    /* Dot against a hand-built Q8_K: d = 1, qs[i] = (i % 7) - 3, bsums. */
    uint8_t xb[292];
    const float one = 1.0f;
    memcpy(xb, &one, 4);
    int8_t *xq = (int8_t *)(xb + 4);
    for (int i = 0; i < 256; i++) xq[i] = (int8_t)((i % 7) - 3);
    for (int g = 0; g < 16; g++) {
        int16_t s = 0;
        for (int k = 0; k < 16; k++) s = (int16_t)(s + xq[16 * g + k]);
        memcpy(xb + 260 + 2 * g, &s, 2);
    }
    double ref = 0;
    for (int i = 0; i < 256; i++) ref += (double)y[i] * xq[i];
    CHECK(qtype_get(QTYPE_Q4_K)->vec_dot(256, blk, xb) == (float)ref); /* all exact */
}

/* Q6_K: ql[128], qh[64], scales[16] int8, d. Per 128 elements: ql byte l has
 * elements l (low) and l+64 (high), byte l+32 has l+32 and l+96; qh byte l
 * has the top 2 bits of l, l+32, l+64, l+96 at bits 0, 2, 4, 6. */
static void test_q6_K_layout(void) {
    uint8_t blk[210];
    memset(blk, 0, sizeof blk);
    int q[256];
    for (int i = 0; i < 256; i++) q[i] = (i * 11 + i / 64) & 63;
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
        const int *qq = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((qq[l] & 15) | ((qq[l + 64] & 15) << 4));
            ql[l + 32] = (uint8_t)((qq[l + 32] & 15) | ((qq[l + 96] & 15) << 4));
            qh[l] = (uint8_t)((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                              ((qq[l + 96] >> 4) << 6));
        }
    }
    const int sc[16] = {1, -1, 127, -128, 5, 0, 64, -64, 3, 9, -27, 81, 100, -100, 2, 7};
    for (int j = 0; j < 16; j++) blk[192 + j] = (uint8_t)(int8_t)sc[j];
    put_f16(blk + 208, 0.125f);
    float y[256];
    qtype_get(QTYPE_Q6_K)->to_float(blk, y, 256);
    int bad = 0;
    for (int i = 0; i < 256; i++)
        if (y[i] != 0.125f * sc[i / 16] * (q[i] - 32)) bad++;
    CHECK_EQ(bad, 0);

    uint8_t xb[292];
    const float d = -0.5f;
    memcpy(xb, &d, 4);
    int8_t *xq = (int8_t *)(xb + 4);
    for (int i = 0; i < 256; i++) xq[i] = (int8_t)((i % 13) - 6);
    memset(xb + 260, 0, 32); /* Q6_K's dot does not use bsums */
    double ref = 0;
    for (int i = 0; i < 256; i++) ref += (double)y[i] * xq[i] * d;
    CHECK(qtype_get(QTYPE_Q6_K)->vec_dot(256, blk, xb) == (float)ref);
}

/* Q8_K: float d, 256 int8, 16 int16 bsums. The signed extreme maps to -127,
 * so a positive extreme gives a negative d; ties round to even. */
static void test_q8_K_quantize(void) {
    float x[256] = {0};
    x[3] = 127.0f;   /* iscale = -1 */
    x[4] = 2.5f;     /* -2.5 -> -2 (even) */
    x[5] = -3.5f;    /* 3.5 -> 4 (even) */
    x[17] = -127.0f; /* -> 127 */
    x[255] = 1.0f;
    uint8_t q[292];
    qtype_get(QTYPE_Q8_K)->from_float(x, q, 256);
    float d;
    memcpy(&d, q, 4);
    CHECK(d == -1.0f);
    const int8_t *qs = (const int8_t *)(q + 4);
    CHECK_EQ(qs[3], -127); CHECK_EQ(qs[4], -2); CHECK_EQ(qs[5], 4);
    CHECK_EQ(qs[17], 127); CHECK_EQ(qs[255], -1); CHECK_EQ(qs[0], 0);
    int16_t bs[16];
    memcpy(bs, q + 260, 32);
    CHECK_EQ(bs[0], -127 - 2 + 4);
    CHECK_EQ(bs[1], 127);
    CHECK_EQ(bs[15], -1);
    CHECK_EQ(bs[7], 0);
    float y[256];
    qtype_get(QTYPE_Q8_K)->to_float(q, y, 256);
    CHECK(y[3] == 127.0f && y[17] == -127.0f && y[4] == 2.0f && y[5] == -4.0f);

    /* Negative extreme: d positive. */
    for (int i = 0; i < 256; i++) x[i] = -(float)i / 255;
    qtype_get(QTYPE_Q8_K)->from_float(x, q, 256);
    memcpy(&d, q, 4);
    CHECK(d > 0);
    CHECK_EQ(((const int8_t *)(q + 4))[255], -127);
}

/* Q4_0's quantizer on a block that is exactly representable. */
static void test_q4_0_exact(void) {
    float x[64], y[64];
    for (int i = 0; i < 64; i++) x[i] = (float)((i * 7) % 16 - 8) * 0.5f;
    uint8_t q[36];
    qtype_get(QTYPE_Q4_0)->from_float(x, q, 64);
    qtype_get(QTYPE_Q4_0)->to_float(q, y, 64);
    int bad = 0;
    for (int i = 0; i < 64; i++) if (x[i] != y[i]) bad++;
    CHECK_EQ(bad, 0);
    CHECK_EQ(q[0] | q[1] << 8, qt_f32_to_f16(0.5f)); /* max = -4 -> d = 0.5 */
}

/* ------------------------------------------------------------ numerics */

static const enum qtype computable[] = {
    QTYPE_F32, QTYPE_F16, QTYPE_BF16, QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q8_0, QTYPE_Q4_K, QTYPE_Q6_K,
};
#define N_COMPUTABLE (sizeof computable / sizeof computable[0])

/* Worst-case error allowed per element of a row, as a fraction of the
 * row's largest magnitude; K types are checked by RMS as well. */
static double max_err_frac(enum qtype t) {
    switch (t) {
    case QTYPE_F32: return 0;
    case QTYPE_F16: return ldexp(1, -11);
    case QTYPE_BF16: return ldexp(1, -8);
    case QTYPE_Q8_0: return 0.5 / 127 * 1.13;  /* half a step, plus f16 scale rounding */
    case QTYPE_Q5_0: return 1.0 / 16 * 1.01;   /* one step where +amax clamps to 15 */
    case QTYPE_Q4_0: return 1.0 / 8 * 1.01;
    case QTYPE_Q4_K: return 2.0 / 15;          /* asymmetric fit, 6-bit scales */
    case QTYPE_Q6_K: return 1.0 / 32;
    default: return 1;
    }
}

static double rms_frac(enum qtype t) {
    switch (t) {
    case QTYPE_Q4_K: return 0.12;
    case QTYPE_Q6_K: return 0.03;
    case QTYPE_Q4_0: return 0.12;
    case QTYPE_Q5_0: return 0.06;
    case QTYPE_Q8_0: return 0.01;
    default: return 0.005;
    }
}

static void test_round_trip(void) {
    const int64_t n = 11 * 256;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *q = malloc(n * 4);
    for (size_t k = 0; k < N_COMPUTABLE; k++) {
        const enum qtype t = computable[k];
        const struct qtype_info *ti = qtype_get(t);
        fill_random(x, n, 0.05f);
        ti->from_float(x, q, n);
        ti->to_float(q, y, n);
        /* Per block bound against the block's own largest magnitude. */
        const int be = ti->block_elems >= 32 ? ti->block_elems : 32;
        double err2 = 0, x2 = 0;
        int bad = 0;
        for (int64_t b = 0; b < n / be; b++) {
            double amax = 0;
            for (int i = 0; i < be; i++) amax = fmax(amax, fabs(x[b * be + i]));
            for (int i = 0; i < be; i++) {
                const double e = fabs((double)y[b * be + i] - x[b * be + i]);
                const double lim = t == QTYPE_F16 || t == QTYPE_BF16
                                       ? fmax(fabs(x[b * be + i]) * max_err_frac(t),
                                              ldexp(1, t == QTYPE_F16 ? -25 : -134))
                                       : amax * max_err_frac(t);
                if (e > lim) {
                    if (bad++ < 3)
                        fprintf(stderr, "  %s: x[%lld]=%g y=%g err %g > %g\n", ti->name,
                                (long long)(b * be + i), x[b * be + i], y[b * be + i], e, lim);
                }
                err2 += e * e;
                x2 += (double)x[b * be + i] * x[b * be + i];
            }
        }
        CHECK_EQ(bad, 0);
        const double rel = sqrt(err2 / x2);
        if (!(rel <= rms_frac(t))) fprintf(stderr, "  %s: rms rel err %g\n", ti->name, rel);
        CHECK(rel <= rms_frac(t));

        /* Zero rows quantize to zero and decode to exactly 0. */
        memset(x, 0, n * sizeof *x);
        ti->from_float(x, q, n);
        ti->to_float(q, y, n);
        int nonzero = 0;
        for (int64_t i = 0; i < n; i++) nonzero += y[i] != 0.0f;
        CHECK_EQ(nonzero, 0);
    }
    free(x); free(y); free(q);
}

/* vec_dot(w, quantize(x)) equals the double dot of the decoded rows, for
 * awkward block counts; and the same row gives the same bits wherever it
 * sits in memory. */
static void test_vec_dot(void) {
    static const int64_t blocks[] = {1, 3, 11, 16};
    const int64_t nmax = 16 * 256;
    float *w = malloc(nmax * sizeof *w), *x = malloc(nmax * sizeof *x);
    float *wd = malloc(nmax * sizeof *wd), *xd = malloc(nmax * sizeof *xd);
    uint8_t *wq = malloc(nmax * 4 + 64), *xq = malloc(nmax * 4 + 64), *xq2 = malloc(nmax * 4 + 64);
    for (size_t k = 0; k < N_COMPUTABLE; k++) {
        const struct qtype_info *ti = qtype_get(computable[k]);
        const struct qtype_info *di = qtype_get(ti->dot_type);
        const int be = ti->block_elems > 1 ? ti->block_elems : 32;
        for (size_t s = 0; s < sizeof blocks / sizeof blocks[0]; s++) {
            for (int extra = 0; extra < (ti->block_elems == 1 ? 2 : 1); extra++) {
                /* Float types also get a ragged length (no block structure). */
                const int64_t n = blocks[s] * be + extra * 7;
                fill_random(w, n, 0.1f);
                fill_random(x, n, 2.0f);
                ti->from_float(w, wq, n);
                di->from_float(x, xq, n);
                ti->to_float(wq, wd, n);
                di->to_float(xq, xd, n);
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    ref += (double)wd[i] * xd[i];
                    mag += fabs((double)wd[i] * xd[i]);
                }
                const float got = ti->vec_dot(n, wq, xq);
                if (!(fabs(got - ref) <= 2e-6 * mag + 1e-30))
                    fprintf(stderr, "  %s n=%lld: dot %.9g ref %.9g (mag %g)\n", ti->name,
                            (long long)n, got, ref, mag);
                CHECK_NEAR(got, ref, 2e-6 * mag + 1e-30);

                /* Same activation bytes at another address: same bits. */
                const size_t xbytes = qtype_row_bytes(ti->dot_type, n);
                memcpy(xq2 + 32, xq, xbytes);
                const float again = ti->vec_dot(n, wq, xq2 + 32);
                CHECK(memcmp(&got, &again, sizeof got) == 0);
            }
        }
    }
    free(w); free(x); free(wd); free(xd); free(wq); free(xq); free(xq2);
}

/* Quantizing a row block by block equals quantizing it whole, so a batch of
 * activations converted together matches one converted alone. */
static void test_row_independence(void) {
    static const enum qtype dots[] = {QTYPE_F16, QTYPE_BF16, QTYPE_Q8_0, QTYPE_Q8_K,
                                      QTYPE_Q4_0, QTYPE_Q5_0, QTYPE_Q4_K, QTYPE_Q6_K};
    const int64_t n = 4 * 256;
    float x[4 * 256];
    uint8_t whole[4 * 256 * 4], part[4 * 256 * 4]; /* room for f32-sized rows */
    for (size_t k = 0; k < sizeof dots / sizeof dots[0]; k++) {
        const struct qtype_info *ti = qtype_get(dots[k]);
        fill_random(x, n, 1.0f);
        ti->from_float(x, whole, n);
        const int64_t chunk = ti->block_elems > 1 ? ti->block_elems : 32;
        const size_t cb = qtype_row_bytes(dots[k], chunk);
        for (int64_t i = 0; i < n / chunk; i++) ti->from_float(x + i * chunk, part + i * cb, chunk);
        if (memcmp(whole, part, qtype_row_bytes(dots[k], n)) != 0) fprintf(stderr, "  %s differs\n", ti->name);
        CHECK(memcmp(whole, part, qtype_row_bytes(dots[k], n)) == 0);
    }
}

int main(void) {
    RUN(test_table_sizes);
    RUN(test_f16_known);
    RUN(test_f16_exhaustive);
    RUN(test_bf16_known);
    RUN(test_q4_0_layout);
    RUN(test_q5_0_layout);
    RUN(test_q8_0_layout);
    RUN(test_q4_K_layout);
    RUN(test_q6_K_layout);
    RUN(test_q8_K_quantize);
    RUN(test_q4_0_exact);
    RUN(test_round_trip);
    RUN(test_vec_dot);
    RUN(test_row_independence);
    return check_report();
}
