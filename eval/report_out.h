/* report_out: the report's files are written to PATH.tmp and renamed into
 * place once complete (internal to eval/report*.c). */
#ifndef TIS_REPORT_OUT_H
#define TIS_REPORT_OUT_H

#include <stdio.h>

typedef struct report_out {
    FILE *f;
    char *tmp;        /* PATH.tmp (owned) */
    const char *path; /* borrowed from the caller */
} report_out;

/* Opens PATH.tmp for writing. */
int report_out_open(report_out *o, const char *path);
/* Closes the file; when everything went well (rc == 0) renames it into
 * place, otherwise removes it. Returns the final status. */
int report_out_close(report_out *o, int rc);

#endif
