/* What `inspect dataplanes` and `inspect zoneingresses` share: a list of
 * resources joined with their insights (same mesh and name), shown as a
 * table, one row each, or as kumactl's overview {"total","items":[{ITEM,
 * INSIGHT}]} in JSON or YAML. */
#ifndef HY_INSPECT_LIST_H
#define HY_INSPECT_LIST_H

#include <stddef.h>

#include "api.h"
#include "cli.h"
#include "output.h"
#include "resource.h"
#include "table.h"

/* Adds r's row to t; insight is r's insight, or NULL when it has none.
 * 0 or HY_ENOMEM. */
typedef int (*hy_inspect_row_fn)(struct hy_cli *cli, struct hy_table *t,
                                 const struct hy_resource *r, const struct hy_resource *insight);

/* The insight of item among insights (same mesh and name), or NULL. */
const struct hy_json *hy_inspect_insight_of(const struct hy_api_list *insights,
                                            const struct hy_json *item);
/* Prints the table with columns head[0..ncols), row making each row.
 * 0, or a negative code after printing why. */
int hy_inspect_print_table(struct hy_cli *cli, const char *const *head, size_t ncols,
                           const struct hy_api_list *items, const struct hy_api_list *insights,
                           hy_inspect_row_fn row);
/* Prints the overview in format f, each item under item_key and its
 * insight (or null) under insight_key. 0, or a negative code after
 * printing why. */
int hy_inspect_print_overview(struct hy_cli *cli, const struct hy_api_list *items,
                              const struct hy_api_list *insights, const char *item_key,
                              const char *insight_key, enum hy_output_format f);

#endif
