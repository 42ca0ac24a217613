/* The resource-type registry: the one table every layer (codec, store, API,
 * KDS) reads to learn what types exist and how they behave. */
#include <string.h>
#include <strings.h>

#include "dataplane.pb-c.h"
#include "mesh.pb-c.h"
#include "policies.pb-c.h"
#include "resource.h"
#include "validate.h"
#include "zone.pb-c.h"
#include "poison.h"

#define G HY_SCOPE_GLOBAL
#define M HY_SCOPE_MESH
#define OG HY_ORIGIN_GLOBAL
#define OZ HY_ORIGIN_ZONE

static const struct hy_rtype types[] = {
    /* name, plural, short, scope, origin, inline, system, descriptor, validator */
    {"Mesh", "meshes", NULL, G, OG, true, false, &hypha__v1__mesh__descriptor, hy_validate_mesh},
    {"Zone", "zones", NULL, G, OG, true, false, &hypha__v1__zone__descriptor, NULL},
    {"ZoneInsight", "zoneinsights", NULL, G, OG, true, true, &hypha__v1__zone_insight__descriptor,
     NULL},
    {"ZoneIngress", "zoneingresses", NULL, G, OZ, true, false, &hypha__v1__zone_ingress__descriptor,
     hy_validate_zone_ingress},
    {"Dataplane", "dataplanes", "dp", M, OZ, true, false, &hypha__v1__dataplane__descriptor,
     hy_validate_dataplane},
    {"DataplaneInsight", "dataplaneinsights", NULL, M, OZ, true, true,
     &hypha__v1__dataplane_insight__descriptor, NULL},
    {"MeshTrafficPermission", "meshtrafficpermissions", "mtp", M, OG, false, false,
     &hypha__v1__mesh_traffic_permission__descriptor, hy_validate_mtp},
    {"MeshTimeout", "meshtimeouts", "mt", M, OG, false, false, &hypha__v1__mesh_timeout__descriptor,
     hy_validate_timeout},
    {"MeshRetry", "meshretries", "mr", M, OG, false, false, &hypha__v1__mesh_retry__descriptor,
     hy_validate_retry},
    {"MeshHealthCheck", "meshhealthchecks", "mhc", M, OG, false, false,
     &hypha__v1__mesh_health_check__descriptor, hy_validate_health_check},
    {"MeshCircuitBreaker", "meshcircuitbreakers", "mcb", M, OG, false, false,
     &hypha__v1__mesh_circuit_breaker__descriptor, hy_validate_circuit_breaker},
    {"MeshLoadBalancingStrategy", "meshloadbalancingstrategies", "mlbs", M, OG, false, false,
     &hypha__v1__mesh_load_balancing_strategy__descriptor, hy_validate_lbs},
};

const struct hy_rtype *hy_rtype_all(size_t *n)
{
    *n = sizeof(types) / sizeof(types[0]);
    return types;
}

const struct hy_rtype *hy_rtype_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].name, name) == 0)
            return &types[i];
    return NULL;
}

const struct hy_rtype *hy_rtype_by_plural(const char *plural)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].plural, plural) == 0)
            return &types[i];
    return NULL;
}

const struct hy_rtype *hy_rtype_find(const char *s)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const struct hy_rtype *t = &types[i];
        if (strcmp(t->name, s) == 0 || strcasecmp(t->plural, s) == 0 ||
            strcasecmp(t->name, s) == 0 || (t->short_name && strcasecmp(t->short_name, s) == 0))
            return t;
    }
    return NULL;
}
