/* err.c - see err.h. */
#include "config/err.h"

#include <stdio.h>

int sp_fail(struct sp_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *sp_code_name(int code) {
    switch (code) {
    case SP_OK: return "OK";
    case SP_EINVAL: return "EINVAL";
    case SP_ENOMEM: return "ENOMEM";
    case SP_EIO: return "EIO";
    case SP_EFORMAT: return "EFORMAT";
    case SP_EUNSUP: return "EUNSUP";
    case SP_EFULL: return "EFULL";
    case SP_ERANGE: return "ERANGE";
    case SP_ESHUTDOWN: return "ESHUTDOWN";
    }
    return "E?";
}
