/* Aligned text tables like kubectl's and kumactl's: a header row in
 * capitals, columns padded to their widest cell, three spaces apart. */
#ifndef HY_CLI_TABLE_H
#define HY_CLI_TABLE_H

#include <stddef.h>

#include "buf.h"

struct hy_table {
    size_t ncols;
    size_t nrows; /* including the header */
    char **cells; /* owned, row-major */
    size_t cap;   /* rows allocated */
};

/* Starts a table with ncols columns named by headers. 0 or HY_ENOMEM (the
 * table is then empty but safe to fini). */
int hy_table_init(struct hy_table *t, size_t ncols, const char *const headers[]);
/* Appends a row of ncols cells (copied). A NULL or empty cell prints as "-";
 * control characters (newlines from error messages) print as spaces.
 * 0 or HY_ENOMEM. */
int hy_table_add(struct hy_table *t, const char *const cells[]);
/* Appends the table as text, one line per row, no trailing spaces.
 * Widths count UTF-8 characters, not bytes. 0 or HY_ENOMEM. */
int hy_table_render(const struct hy_table *t, struct hy_buf *out);
void hy_table_fini(struct hy_table *t);

#endif
