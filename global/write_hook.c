/* The global CP's hook on user writes: mesh root CAs (cp_mesh_ca.c), and
 * deleting a Zone deletes what it synced here. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "global.h"
#include "log.h"
#include "poison.h"

struct zone_walk {
    struct hy_cp_api_batch *b;
    const char *zone;
};

static int drop_one(void *ud, struct hy_resource *r, bool *take)
{
    struct zone_walk *zw = ud;
    bool insight = !strcmp(r->type->name, "ZoneInsight") && !strcmp(r->meta->name, zw->zone);
    if (!insight && !(r->origin && !strcmp(r->origin, zw->zone)))
        return 0;
    int rc = hy_cp_api_batch_add(zw->b, HY_STORE_DELETE, r, HY_VERSION_ANY);
    if (rc == 0) {
        zw->b->w[zw->b->n - 1].flags = HY_STORE_IF_EXISTS;
        *take = true;
    }
    return rc;
}

/* Deleting a Zone takes what it synced here along (and its insight), in
 * the same transaction; KDS then tells the other zones. */
static int drop_zone(struct hy_global *g, struct hy_cp_api_batch *b, const char *zone)
{
    struct zone_walk zw = {b, zone};
    return hy_store_each(g->cp.store, NULL, drop_one, &zw);
}

int hy_global_before_commit(void *ud, struct hy_cp_api_batch *b, struct hy_diag *d)
{
    struct hy_global *g = ud;
    size_t n = b->n;
    for (size_t i = 0; i < n; i++) {
        const struct hy_resource *r = b->w[i].r;
        if (b->w[i].op == HY_STORE_DELETE && !strcmp(r->type->name, "Zone")) {
            int rc = drop_zone(g, b, r->meta->name);
            if (rc < 0)
                return rc;
        }
    }
    return hy_cp_mesh_roots(&g->cp, b, d);
}
