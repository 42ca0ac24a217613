/* hy_diag: collecting and printing user-input problems. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "poison.h"

void hy_diag_add(struct hy_diag *d, int line, int col, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        struct hy_cause *c = realloc(d->causes, cap * sizeof(*c));
        if (!c) {
            /* keep n meaningful: reuse the last slot */
            if (d->n == 0)
                return;
            d->n--;
            free(d->causes[d->n].field);
            free(d->causes[d->n].message);
        } else {
            d->causes = c;
            d->cap = cap;
        }
    }
    struct hy_cause *c = &d->causes[d->n++];
    c->line = line;
    c->col = col;
    c->field = strdup(field ? field : "");
    c->message = strdup(msg);
}

char *hy_diag_format(const struct hy_diag *d, size_t i, char *buf, size_t size)
{
    const struct hy_cause *c = &d->causes[i];
    const char *src = d->source ? d->source : "<input>";
    const char *field = c->field ? c->field : "";
    const char *msg = c->message ? c->message : "out of memory";
    const char *sep = field[0] ? ": " : "";
    if (c->line > 0)
        snprintf(buf, size, "%s:%d:%d: %s%s%s", src, c->line, c->col, field, sep, msg);
    else
        snprintf(buf, size, "%s: %s%s%s", src, field, sep, msg);
    return buf;
}

void hy_diag_fini(struct hy_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->causes[i].field);
        free(d->causes[i].message);
    }
    free(d->causes);
    d->causes = NULL;
    d->n = d->cap = 0;
}
