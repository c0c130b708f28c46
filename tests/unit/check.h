/* check.h - a tiny test runner (after Redis's testhelp.h and libuv's task.h).
 * CHECK_* record a failure with file:line and both values, and go on; RUN()
 * runs one test function; check_report() prints `N passed, M failed` and
 * returns the exit status. Each test binary is killed by alarm() after
 * CHECK_TIMEOUT_S seconds so a hang is a failure, not a stuck CI. */
#pragma once
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CHECK_TIMEOUT_S
#define CHECK_TIMEOUT_S 600
#endif

static int check_failed_now;   /* failures inside the running test */
static int check_n_passed, check_n_failed;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    check_failed_now++; } } while (0)

#define CHECK_EQ(a, b) do { long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
    if (check_a_ != check_b_) { \
        fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, \
                #a, #b, check_a_, check_b_); \
        check_failed_now++; } } while (0)

#define CHECK_NEAR(a, b, tol) do { double check_a_ = (a), check_b_ = (b); \
    if (!(fabs(check_a_ - check_b_) <= (tol))) { \
        fprintf(stderr, "  FAIL %s:%d: |%s - %s| <= %g (%.9g vs %.9g)\n", __FILE__, __LINE__, \
                #a, #b, (double)(tol), check_a_, check_b_); \
        check_failed_now++; } } while (0)

#define CHECK_STR(a, b) do { const char *check_a_ = (a), *check_b_ = (b); \
    if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) { \
        fprintf(stderr, "  FAIL %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, \
                #a, #b, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
        check_failed_now++; } } while (0)

#define RUN(fn) do { \
    alarm(CHECK_TIMEOUT_S); \
    check_failed_now = 0; fn(); \
    if (check_failed_now) { check_n_failed++; fprintf(stderr, "FAIL %s\n", #fn); } \
    else { check_n_passed++; fprintf(stderr, "ok   %s\n", #fn); } } while (0)

static inline int check_report(void) {
    printf("%d passed, %d failed\n", check_n_passed, check_n_failed);
    return check_n_failed ? 1 : 0;
}

/* Directory of ../shared, overridable with SPARROW_SHARED for odd checkouts. */
static inline const char *check_shared_dir(void) {
    const char *d = getenv("SPARROW_SHARED");
    return d && *d ? d : "../shared";
}
