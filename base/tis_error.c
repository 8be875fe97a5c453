/* tis_error: per-thread last-error message. */
#include "tis_error.h"

#include <stdarg.h>

static _Thread_local char s_msg[1024];

int tis_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_msg, sizeof s_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *tis_last_error(void) { return s_msg; }

const char *tis_status_name(int code) {
    switch (code) {
    case TIS_OK: return "OK";
    case TIS_EINVAL: return "EINVAL";
    case TIS_EIO: return "EIO";
    case TIS_ENOMEM: return "ENOMEM";
    case TIS_EFORMAT: return "EFORMAT";
    case TIS_EUNSUPPORTED: return "EUNSUPPORTED";
    case TIS_ERANGE: return "ERANGE";
    case TIS_ENOTFOUND: return "ENOTFOUND";
    default: return "E?";
    }
}
