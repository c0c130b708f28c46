/* clock.h - monotonic seconds as a double: the one clock every timing,
 * deadline and heartbeat in sparrow uses (never the wall clock, which jumps).
 * Any thread. */
#pragma once
#include <time.h>

static inline double sp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
