/* Diagnostics: the list of problems found in user input, each with where
 * (source, line:column, field path) and what was expected. The API turns
 * them into `causes`; the CLI prints them one per line. */
#ifndef HY_DIAG_H
#define HY_DIAG_H

#include <stddef.h>

struct hy_cause {
    int line, col; /* 1-based; 0 when the position is unknown */
    char *field;   /* owned; field path like "spec.from[0].default.action", "" for the document */
    char *message; /* owned */
};

struct hy_diag {
    const char *source;      /* borrowed: file name or "-" for stdin; may be NULL */
    struct hy_cause *causes; /* owned */
    size_t n, cap;
};

/* Records one problem. Allocation failure is swallowed after keeping the
 * count, so callers can always rely on n > 0 after an add. */
void hy_diag_add(struct hy_diag *d, int line, int col, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Formats cause i as "source:line:col: field: message" into buf (truncated
 * to size). Returns buf. */
char *hy_diag_format(const struct hy_diag *d, size_t i, char *buf, size_t size);

/* Frees every cause; the diag can be reused afterwards. */
void hy_diag_fini(struct hy_diag *d);

#endif
