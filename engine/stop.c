/* stop.c - see stop.h. */
#include "engine/stop.h"

#include <string.h>

size_t stop_scan(const char *text, size_t len, const char *const *stops, int n_stops, bool *hit) {
    size_t safe = len, first_hit = len;
    *hit = false;
    for (int i = 0; i < n_stops; i++) {
        const size_t sl = strlen(stops[i]);
        if (sl == 0) continue;
        const char *p = memmem(text, len, stops[i], sl);
        if (p && (size_t)(p - text) < first_hit) {
            first_hit = (size_t)(p - text);
            *hit = true;
        }
        /* The longest tail of text that is a proper prefix of this stop string. */
        for (size_t k = sl - 1 < len ? sl - 1 : len; k > 0; k--) {
            if (memcmp(text + len - k, stops[i], k) == 0) {
                if (len - k < safe) safe = len - k;
                break;
            }
        }
    }
    return *hit ? first_hit : safe;
}
