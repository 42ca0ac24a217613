/* The resource-type registry: the one table every layer (codec, store, API,
 * KDS) reads to learn what types exist and how they behave. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ca.pb-c.h"
#include "dataplane.pb-c.h"
#include "mesh.pb-c.h"
#include "policies.pb-c.h"
#include "resource.h"
#include "validate.h"
#include "zone.pb-c.h"
#include "poison.h"

/* MeshTrust's shape. Its certificates are parsed by the control plane that
 * takes the write (hy_cp_mesh_trust_check): X.509 lives above common/. */

/* A SPIFFE trust domain (SPIFFE ID spec): 1..255 of [a-z0-9._-]. */
static bool valid_trust_domain(const char *s, const char **why)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 255) {
        *why = "expected 1 to 255 characters";
        return false;
    }
    if (!strncmp(s, "spiffe://", 9)) {
        *why = "write the trust domain alone, without \"spiffe://\" or a path";
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
            continue;
        *why = c >= 'A' && c <= 'Z'
                   ? "a SPIFFE trust domain is lowercase"
                   : "a SPIFFE trust domain holds only lowercase letters, digits, '.', '-' and '_'";
        return false;
    }
    return true;
}

static void validate_mesh_trust(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)r->spec;
    const char *why;
    if (!t->trust_domain)
        hy_diag_add(d, 0, 0, "spec.trustDomain",
                    "required: the SPIFFE trust domain of the identities these CAs issue "
                    "(\"%s\" for this mesh's own)",
                    r->meta->mesh ? r->meta->mesh : "");
    else if (!valid_trust_domain(t->trust_domain, &why))
        hy_diag_add(d, 0, 0, "spec.trustDomain", "invalid trust domain \"%.64s\": %s",
                    t->trust_domain, why);
    if (t->n_ca_bundles == 0)
        hy_diag_add(d, 0, 0, "spec.caBundles",
                    "at least one entry is required ({type: Pem, pem: {value: \"-----BEGIN "
                    "CERTIFICATE-----...\"}})");
    for (size_t i = 0; i < t->n_ca_bundles; i++) {
        const Hypha__V1__MeshTrust__CaBundle *b = t->ca_bundles[i];
        char p[64];
        if (!b->has_type) {
            snprintf(p, sizeof(p), "spec.caBundles[%zu].type", i);
            hy_diag_add(d, 0, 0, p, "required (expected Pem)");
        }
        snprintf(p, sizeof(p), "spec.caBundles[%zu].pem.value", i);
        if (!b->pem || !b->pem->value || !b->pem->value[0])
            hy_diag_add(d, 0, 0, p, "required: one or more PEM CA certificates");
        else if (strstr(b->pem->value, "PRIVATE KEY-----"))
            hy_diag_add(d, 0, 0, p,
                        "holds a private key: only CA certificates belong here (every zone and "
                        "sidecar of the mesh receives them); remove the key and keep it secret");
        else if (!strstr(b->pem->value, "-----BEGIN CERTIFICATE-----"))
            hy_diag_add(d, 0, 0, p,
                        "holds no \"-----BEGIN CERTIFICATE-----\" block: expected one or more "
                        "PEM CA certificates");
    }
    if (t->origin && t->origin->kri && !t->origin->kri[0])
        hy_diag_add(d, 0, 0, "spec.origin.kri", "empty: remove spec.origin or name its kri");
}

#define G HY_SCOPE_GLOBAL
#define M HY_SCOPE_MESH
#define OG HY_ORIGIN_GLOBAL
#define OZ HY_ORIGIN_ZONE

static const struct hy_rtype types[] = {
    /* name, plural, short, scope, origin, inline, system, descriptor, validator, secret */
    {"Mesh", "meshes", NULL, G, OG, true, false, &hypha__v1__mesh__descriptor, hy_validate_mesh,
     false},
    {"Zone", "zones", NULL, G, OG, true, false, &hypha__v1__zone__descriptor, hy_validate_zone,
     false},
    {"ZoneInsight", "zoneinsights", NULL, G, OG, true, true, &hypha__v1__zone_insight__descriptor,
     NULL, false},
    {"ZoneIngress", "zoneingresses", NULL, G, OZ, true, false, &hypha__v1__zone_ingress__descriptor,
     hy_validate_zone_ingress, false},
    {"ZoneIngressInsight", "zoneingressinsights", NULL, G, OZ, true, true,
     &hypha__v1__zone_ingress_insight__descriptor, NULL, false},
    {"Dataplane", "dataplanes", "dp", M, OZ, true, false, &hypha__v1__dataplane__descriptor,
     hy_validate_dataplane, false},
    {"DataplaneInsight", "dataplaneinsights", NULL, M, OZ, true, true,
     &hypha__v1__dataplane_insight__descriptor, NULL, false},
    {"MeshTrafficPermission", "meshtrafficpermissions", "mtp", M, OG, false, false,
     &hypha__v1__mesh_traffic_permission__descriptor, hy_validate_mtp, false},
    {"MeshTimeout", "meshtimeouts", "mt", M, OG, false, false, &hypha__v1__mesh_timeout__descriptor,
     hy_validate_timeout, false},
    {"MeshRetry", "meshretries", "mr", M, OG, false, false, &hypha__v1__mesh_retry__descriptor,
     hy_validate_retry, false},
    {"MeshHealthCheck", "meshhealthchecks", "mhc", M, OG, false, false,
     &hypha__v1__mesh_health_check__descriptor, hy_validate_health_check, false},
    {"MeshCircuitBreaker", "meshcircuitbreakers", "mcb", M, OG, false, false,
     &hypha__v1__mesh_circuit_breaker__descriptor, hy_validate_circuit_breaker, false},
    {"MeshLoadBalancingStrategy", "meshloadbalancingstrategies", "mlbs", M, OG, false, false,
     &hypha__v1__mesh_load_balancing_strategy__descriptor, hy_validate_lbs, false},
    {"MeshHTTPRoute", "meshhttproutes", "mhttpr", M, OG, false, false,
     &hypha__v1__mesh_httproute__descriptor, hy_validate_http_route, false},
    {"MeshTCPRoute", "meshtcproutes", "mtcpr", M, OG, false, false,
     &hypha__v1__mesh_tcproute__descriptor, hy_validate_tcp_route, false},
    {"MeshFaultInjection", "meshfaultinjections", "mfi", M, OG, false, false,
     &hypha__v1__mesh_fault_injection__descriptor, hy_validate_fault_injection, false},
    {"MeshRateLimit", "meshratelimits", "mrl", M, OG, false, false,
     &hypha__v1__mesh_rate_limit__descriptor, hy_validate_rate_limit, false},
    {"MeshMetric", "meshmetrics", "mm", M, OG, false, false, &hypha__v1__mesh_metric__descriptor,
     hy_validate_mesh_metric, false},
    {"MeshAccessLog", "meshaccesslogs", "mal", M, OG, false, false,
     &hypha__v1__mesh_access_log__descriptor, hy_validate_access_log, false},
    {"MeshTrace", "meshtraces", "mtr", M, OG, false, false, &hypha__v1__mesh_trace__descriptor,
     hy_validate_mesh_trace, false},
    {"MeshTrust", "meshtrusts", NULL, M, OG, false, false, &hypha__v1__mesh_trust__descriptor,
     validate_mesh_trust, false},
    {"MeshCaRoot", "meshcaroots", NULL, M, OG, true, true, &hypha__v1__mesh_ca_root__descriptor,
     NULL, false},
    {"MeshCaKey", "meshcakeys", NULL, M, OG, true, true, &hypha__v1__mesh_ca_key__descriptor, NULL,
     true},
    {"MeshIssuer", "meshissuers", NULL, M, OG, true, true, &hypha__v1__mesh_issuer__descriptor,
     NULL, false},
    {"MeshIssuerKey", "meshissuerkeys", NULL, M, OG, true, true,
     &hypha__v1__mesh_issuer_key__descriptor, NULL, true},
    {"TokenSigningKey", "tokensigningkeys", NULL, G, OG, true, true,
     &hypha__v1__token_signing_key__descriptor, NULL, false},
    {"TokenRevocation", "tokenrevocations", NULL, G, OG, true, true,
     &hypha__v1__token_revocation__descriptor, NULL, false},
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
