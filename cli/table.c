/* hy_table: collecting rows and printing them aligned. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "table.h"
#include "poison.h"

#define GAP 3

static int add_row(struct hy_table *t, const char *const cells[])
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
        if (!c)
            return HY_ENOMEM;
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        const char *v = cells[i] && cells[i][0] ? cells[i] : "-";
        if (!(row[i] = strdup(v))) {
            while (i-- > 0)
                free(row[i]);
            return HY_ENOMEM;
        }
        for (char *p = row[i]; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
    }
    t->nrows++;
    return 0;
}

int hy_table_init(struct hy_table *t, size_t ncols, const char *const headers[])
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    return add_row(t, headers);
}

int hy_table_add(struct hy_table *t, const char *const cells[])
{
    return add_row(t, cells);
}

/* Characters in a UTF-8 string: bytes that do not continue a sequence. */
static size_t width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

int hy_table_render(const struct hy_table *t, struct hy_buf *out)
{
    if (t->ncols == 0)
        return 0;
    size_t *w = calloc(t->ncols, sizeof(*w));
    if (!w)
        return HY_ENOMEM;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = width(t->cells[r * t->ncols + c]);
            if (n > w[c])
                w[c] = n;
        }
    int rc = 0;
    for (size_t r = 0; rc == 0 && r < t->nrows; r++) {
        for (size_t c = 0; rc == 0 && c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            rc = hy_buf_puts(out, cell);
            if (rc == 0 && c + 1 < t->ncols)
                rc = hy_buf_printf(out, "%*s", (int)(w[c] - width(cell) + GAP), "");
        }
        if (rc == 0)
            rc = hy_buf_puts(out, "\n");
    }
    free(w);
    return rc;
}

void hy_table_fini(struct hy_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}
