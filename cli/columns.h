/* The columns `hyphactl get` shows for each resource type: MESH, NAME and
 * AGE everywhere, ZONE for what zones write, and what matters per type
 * (a dataplane's address and services, a policy's targetRef...). */
#ifndef HY_CLI_COLUMNS_H
#define HY_CLI_COLUMNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resource.h"
#include "table.h"
#include "zone.pb-c.h"

#define HY_LABEL_ZONE "hypha.io/zone"

/* Fills out (initialised here; the caller fins it) with one row per
 * resource of type t, ages measured at now. 0 or HY_ENOMEM. */
int hy_columns_table(const struct hy_rtype *t, struct hy_resource *const *v, size_t n, int64_t now,
                     struct hy_table *out);

/* A label's value, or NULL. */
const char *hy_columns_label(const struct hy_resource *r, const char *key);

/* A zone is online when its last subscription connected and has not
 * disconnected. */
bool hy_columns_zone_online(const Hypha__V1__ZoneInsight *zi);

#endif
