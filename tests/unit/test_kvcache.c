/* test_kvcache.c - the paged pool: a full pool is an error, references
 * balance, full blocks are found again by content and position, LRU eviction
 * takes the oldest unreferenced block, and an evicted parent never lets a
 * stale child match a new chain. kv_check holds after every operation. */
#include "tests/unit/check.h"

#include "engine/kvcache.h"
#include "engine/model.h"

static const struct model_shape shape = { .n_vocab = 100, .n_embd = 8, .n_ff = 8, .n_layer = 2, .n_head = 2,
                                          .n_head_kv = 1, .head_dim = 4, .n_rot = 4, .n_ctx_train = 256 };

static struct kv_cache *pool(int n_blocks, int n_seq) {
    struct kv_config c = { 4, n_blocks, n_seq, 64 };
    struct sp_err err;
    struct kv_cache *kv = kv_create(&shape, &c, &err);
    CHECK(kv != NULL);
    return kv;
}

static void check_ok(struct kv_cache *kv) {
    struct sp_err err;
    int rc = kv_check(kv, &err);
    if (rc != SP_OK) fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ(rc, SP_OK);
}

static void test_full_pool_returns_efull(void) {
    struct kv_cache *kv = pool(4, 2);
    CHECK_EQ(kv_block_bytes(&shape, 4), 2 * 2 * 4 * 4 * 2);
    CHECK_EQ(kv_seq_reserve(kv, 0, 12), SP_OK);         /* 3 blocks */
    CHECK_EQ(kv_seq_reserve(kv, 1, 8), SP_EFULL);       /* 2 more: only 1 left, nothing taken */
    CHECK_EQ(kv_get_stats(kv).blocks_used, 3);
    CHECK_EQ(kv_seq_reserve(kv, 1, 4), SP_OK);
    CHECK_EQ(kv_seq_reserve(kv, 0, 65), SP_ERANGE);     /* past n_ctx */
    check_ok(kv);
    kv_seq_release(kv, 0);
    kv_seq_release(kv, 1);
    CHECK_EQ(kv_get_stats(kv).blocks_used, 0);
    CHECK_EQ(kv_blocks_available(kv), 4);
    check_ok(kv);
    kv_free(kv);
}

static void test_prefix_found_by_content_and_position(void) {
    struct kv_cache *kv = pool(16, 3);
    int32_t a[13] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
    CHECK_EQ(kv_seq_attach_prefix(kv, 0, a, 13), 0);
    CHECK_EQ(kv_seq_reserve(kv, 0, 13), SP_OK);
    kv_seq_commit(kv, 0, a, 13);                         /* 3 full blocks indexed */
    CHECK_EQ(kv_cached_prefix_len(kv, a, 13), 12);
    CHECK_EQ(kv_cached_prefix_len(kv, a, 12), 8);        /* at most n - 1 tokens */
    int32_t b[13] = { 1, 2, 3, 4, 5, 6, 7, 8, 99, 10, 11, 12, 13 };
    CHECK_EQ(kv_cached_prefix_len(kv, b, 13), 8);        /* diverges in block 2 */
    int32_t c[13] = { 5, 6, 7, 8, 1, 2, 3, 4, 9, 10, 11, 12, 13 };
    CHECK_EQ(kv_cached_prefix_len(kv, c, 13), 0);        /* same blocks, other positions */
    CHECK_EQ(kv_seq_attach_prefix(kv, 1, b, 13), 8);     /* shares two blocks */
    CHECK_EQ(kv_get_stats(kv).blocks_used, 4);
    CHECK_EQ(kv_seq_capacity(kv, 1), 8);
    check_ok(kv);
    kv_seq_release(kv, 0);
    CHECK_EQ(kv_get_stats(kv).blocks_used, 2);           /* still held by seq 1 */
    CHECK_EQ(kv_get_stats(kv).blocks_cached, 1);         /* block 2; the partial block 3 went back free */
    kv_seq_release(kv, 1);
    CHECK_EQ(kv_get_stats(kv).blocks_used, 0);
    CHECK_EQ(kv_get_stats(kv).blocks_cached, 3);
    check_ok(kv);
    kv_free(kv);
}

static void test_lru_eviction_and_stale_children(void) {
    struct kv_cache *kv = pool(4, 2);
    int32_t a[9] = { 1, 1, 1, 1, 2, 2, 2, 2, 0 };
    CHECK_EQ(kv_seq_reserve(kv, 0, 9), SP_OK);           /* 3 blocks */
    kv_seq_commit(kv, 0, a, 9);                           /* 2 indexed */
    kv_seq_release(kv, 0);
    CHECK_EQ(kv_get_stats(kv).blocks_cached, 2);
    /* Need 3 blocks: 2 free + evict 1 cached (the tail of the chain goes first). */
    CHECK_EQ(kv_seq_reserve(kv, 1, 12), SP_OK);
    CHECK_EQ(kv_get_stats(kv).evictions, 1);
    CHECK_EQ(kv_cached_prefix_len(kv, a, 9), 4);          /* the head block survived */
    check_ok(kv);
    /* A new chain whose second block has the same tokens as a's second block. */
    int32_t b[12] = { 3, 3, 3, 3, 2, 2, 2, 2, 4, 4, 4, 4 };
    kv_seq_commit(kv, 1, b, 12);
    kv_seq_release(kv, 1);
    CHECK_EQ(kv_cached_prefix_len(kv, b, 12), 8);        /* at most n - 1 tokens: 2 of 3 blocks */
    int32_t a2[9] = { 1, 1, 1, 1, 2, 2, 2, 2, 0 };
    CHECK_EQ(kv_cached_prefix_len(kv, a2, 9), 4);         /* (2,2,2,2) under (3,3,3,3) is not under (1,1,1,1) */
    check_ok(kv);
    /* Evict everything, then a chain whose parent slot got reused must not match. */
    CHECK_EQ(kv_seq_reserve(kv, 0, 16), SP_OK);
    CHECK_EQ(kv_cached_prefix_len(kv, b, 12), 0);
    CHECK_EQ(kv_cached_prefix_len(kv, a2, 9), 0);
    kv_seq_release(kv, 0);
    check_ok(kv);
    kv_free(kv);
}

static void test_random_operations_keep_invariants(void) {
    struct kv_cache *kv = pool(24, 4);
    uint64_t x = 12345;
    int32_t toks[4][64];
    int len[4] = {0};
    for (int step = 0; step < 3000; step++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int s = (int)(x % 4), op = (int)((x >> 8) % 4);
        if (op == 0 && len[s] == 0) {           /* new sequence from one of 3 prompt families */
            int fam = (int)((x >> 16) % 3), n = 5 + (int)((x >> 20) % 30);
            for (int i = 0; i < n; i++) toks[s][i] = fam * 100 + (i < 12 ? i : (int)((x >> (i % 40)) % 7));
            int c = kv_seq_attach_prefix(kv, s, toks[s], n);
            CHECK(c % 4 == 0 && c < n);
            if (kv_seq_reserve(kv, s, n) != SP_OK) { kv_seq_release(kv, s); continue; }
            kv_seq_commit(kv, s, toks[s], n);
            len[s] = n;
        } else if (op == 1 && len[s] > 0 && len[s] < 64) {     /* decode one token */
            if (kv_seq_reserve(kv, s, len[s] + 1) != SP_OK) continue;
            toks[s][len[s]] = (int32_t)(x % 50);
            len[s]++;
            kv_seq_commit(kv, s, toks[s], len[s]);
        } else if (op == 2 && len[s] > 0) {
            kv_seq_release(kv, s);
            len[s] = 0;
        }
        if (step % 50 == 0) check_ok(kv);
    }
    for (int s = 0; s < 4; s++) kv_seq_release(kv, s);
    CHECK_EQ(kv_get_stats(kv).blocks_used, 0);
    check_ok(kv);
    kv_free(kv);
}

int main(void) {
    RUN(test_full_pool_returns_efull);
    RUN(test_prefix_found_by_content_and_position);
    RUN(test_lru_eviction_and_stale_children);
    RUN(test_random_operations_keep_invariants);
    return check_report();
}
