/* log.c - see log.h. */
#include "config/log.h"

#include <stdarg.h>
#include <stdio.h>

/* Written once before any thread starts; read-only afterwards. */
static enum log_level max_level = LOG_INFO;

void log_set_level(enum log_level l) { max_level = l; }

void log_msg(enum log_level l, const char *fmt, ...) {
    static const int priority[] = { 3, 4, 6, 7 };
    if (l > max_level) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if (*p == '\n') *p = ' ';   /* one record, one line */
    fprintf(stderr, "<%d>sparrow: %s\n", priority[l], line);
}
