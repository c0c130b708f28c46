/* err.h - error codes and the one-line error record every layer fills.
 * SP_OK is 0, failures are negative. A `struct sp_err` is owned by the caller;
 * the callee writes one line naming the thing and the numbers where the failure
 * is seen. Thread-safety: none needed (each caller has its own record). */
#pragma once
#include <stdarg.h>

enum {
    SP_OK = 0,
    SP_EINVAL = -1,   /* bad argument or input (a request, a flag) */
    SP_ENOMEM = -2,   /* allocation failed */
    SP_EIO = -3,      /* file or socket error */
    SP_EFORMAT = -4,  /* malformed or hostile file contents */
    SP_EUNSUP = -5,   /* valid but not supported by this build */
    SP_EFULL = -6,    /* a bounded resource (KV pool, queue) is full */
    SP_ERANGE = -7,   /* a value out of its allowed range (context, ids) */
    SP_ESHUTDOWN = -8,/* refused because the server is draining */
};

struct sp_err {
    int code;         /* SP_OK or one of the codes above */
    char msg[256];    /* one line, no trailing newline */
};

/* Fill err (NULL is fine) and return code, so callers can `return sp_fail(...)`. */
int sp_fail(struct sp_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Short name of a code, for logs ("EINVAL"). */
const char *sp_code_name(int code);
