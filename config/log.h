/* log.h - one-line log records on stderr, journald-friendly: each line starts
 * with its syslog priority ("<3>" error, "<4>" warning, "<6>" info, "<7>"
 * debug), which journald turns into the record's level and a terminal shows
 * as a short prefix. The level is set once at start-up (log_set_level) and
 * only read afterwards. Thread-safety: any thread (one fprintf per record). */
#pragma once

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level l);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
