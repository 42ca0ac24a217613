/* What both ends of KDS share beside the sync engine: the subprotocol, the
 * scopes of each direction, and the ZoneInsight bookkeeping. */
#ifndef HY_KDS_H
#define HY_KDS_H

#include <stdbool.h>
#include <stdint.h>

#include "kds_sync.h"
#include "zone.pb-c.h"

#define HY_KDS_SUBPROTOCOL "hypha.kds.v1"
#define HY_KDS_INSIGHT_SUBSCRIPTIONS 5 /* connections remembered per zone */

/* global -> zone: the global CP's own meshes, policies and trust roots,
 * and the ZoneIngresses of zones other than `zone`. */
bool hy_kds_to_zone(const struct hy_rtype *t, const char *origin, const char *zone);
/* zone -> global: the zone-origin resources written in `zone`. */
bool hy_kds_from_zone(const struct hy_rtype *t, const char *origin, const char *zone);

/* Reads the ZoneInsight called name (or a new one), lets edit change it,
 * and writes it back. Returns 0 or a negative code. */
int hy_kds_insight_edit(struct hy_store *s, const char *name,
                        void (*edit)(Hypha__V1__ZoneInsight *zi, void *ud), void *ud);
/* The newest subscription of zi, added (with id, connect time now) when
 * `add` is set or there is none; the oldest are dropped past
 * HY_KDS_INSIGHT_SUBSCRIPTIONS. NULL on ENOMEM. */
Hypha__V1__ZoneInsight__Subscription *hy_kds_insight_current(Hypha__V1__ZoneInsight *zi, bool add);
/* Replaces *dst with a copy of src (NULL clears). */
void hy_kds_set_str(char **dst, const char *src);

#endif
