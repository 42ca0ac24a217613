/* The KDS fuzz targets' side of the stream: zone "east" sending up (the
 * global CP's scopes and its "<zone>.<name>" rename) and receiving down.
 * Header-only: each target is one file. */
#ifndef HY_FUZZ_EAST_H
#define HY_FUZZ_EAST_H

#include <stdio.h>
#include <string.h>

#include "kds.h"

static inline bool from_east(void *ud, const struct hy_rtype *t, const char *origin)
{
    (void)ud;
    return hy_kds_from_zone(t, origin ? origin : "east", "east");
}

static inline bool owned_by_east(void *ud, const struct hy_rtype *t, const char *origin)
{
    (void)ud;
    (void)t;
    return origin && !strcmp(origin, "east");
}

static inline bool to_east(void *ud, const struct hy_rtype *t, const char *origin)
{
    (void)ud;
    return hy_kds_to_zone(t, origin, "east");
}

static inline int rename_east(void *ud, struct hy_resource *r)
{
    (void)ud;
    char name[600];
    snprintf(name, sizeof(name), "east.%s", r->meta->name ? r->meta->name : "");
    hy_kds_set_str(&r->origin, "east");
    return hy_resource_set_name(r, r->meta->mesh, name);
}

#endif
