/* The policy engine (cp/policy.c, cp/policy_merge.c): selection, Kuma's
 * merge order, entry matching and the field-by-field merge with origins.
 * The cases of the table ("what a Kuma user gets") are here on the
 * engine; tests/policy/ holds the conformance cases from Kuma's docs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "dataplane.pb-c.h"
#include "diag.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "poison.h"

/* Every resource of a YAML text, decoded and validated. */
struct world {
    struct hy_docs docs;
    struct hy_resource *v[32];
    size_t n;
};

static void world_load(struct world *w, const char *yaml)
{
    struct hy_diag d = {.source = "test.yaml"};
    memset(w, 0, sizeof(*w));
    int rc = hy_codec_decode_resources("test.yaml", yaml, strlen(yaml), NULL, &w->docs, &d);
    if (rc == 0 && !hy_docs_validate(&w->docs, &d))
        rc = -1;
    char line[512];
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
    assert_int_equal(rc, 0);
    hy_diag_fini(&d);
    for (size_t i = 0; i < w->docs.n && w->n < 32; i++)
        w->v[w->n++] = w->docs.v[i].res;
}

static struct hy_resource *find(struct world *w, const char *type, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->v[i]->type->name, type) && !strcmp(w->v[i]->meta->name, name))
            return w->v[i];
    fail_msg("no %s %s", type, name);
    return NULL;
}

/* The policies of one type among the world's resources. */
static size_t of_type(struct world *w, const char *type, struct hy_resource **out)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->v[i]->type->name, type))
            out[n++] = w->v[i];
    return n;
}

/* The MeshTrafficPermission decision for a caller with tags at the named
 * Dataplane's first inbound: "Allow", "Deny", "AllowWithShadowDeny", or
 * "none" (no entry matched: denied). */
static const char *decide(struct world *w, const char *dp_name, const struct hy_policy_tag *caller,
                          size_t ncaller)
{
    struct hy_resource *pols[32];
    size_t n = of_type(w, "MeshTrafficPermission", pols);
    struct hy_policy_proxy p = {find(w, "Dataplane", dp_name), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    struct hy_policy_tags peer = {caller, ncaller};
    struct hy_policy_conf c;
    assert_int_equal(hy_policy_merge(&s, "from", 0, &peer, &c), 0);
    static char out[32];
    if (!c.conf) {
        snprintf(out, sizeof(out), "none");
    } else {
        const Hypha__V1__MeshTrafficPermission__Conf *conf = (const void *)c.conf;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &hypha__v1__mesh_traffic_permission__conf__action__descriptor, conf->action);
        snprintf(out, sizeof(out), "%s", v ? v->name : "?");
    }
    hy_policy_conf_fini(&c);
    hy_policy_set_fini(&s);
    return out;
}

#define DATAPLANES                                                                                 \
    "type: Dataplane\nmesh: default\nname: backend-1\nlabels: {app: backend}\n"                    \
    "networking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    name: http\n"               \
    "    tags: {kuma.io/service: backend, version: v1}\n"                                          \
    "  - port: 9090\n    tags: {kuma.io/service: backend-admin}\n---\n"                            \
    "type: Dataplane\nmesh: default\nname: web-1\n"                                                \
    "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n"                               \
    "    tags: {kuma.io/service: web, env: dev}\n---\n"

static const struct hy_policy_tag web[] = {
    {"hypha.io/service", "web"}, {"env", "dev"}, {"hypha.io/zone", "east"}};
static const struct hy_policy_tag other[] = {{"hypha.io/service", "other"},
                                             {"hypha.io/zone", "west"}};

/* Row 1: later entries of one policy override earlier ones. */
static void later_entry_wins(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES
               "type: MeshTrafficPermission\nmesh: default\nname: mesh-deny\nspec:\n"
               "  targetRef: {kind: Mesh}\n  from:\n"
               "  - targetRef: {kind: Mesh}\n    default: {action: Deny}\n"
               "  - targetRef: {kind: MeshService, name: web}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    assert_string_equal(decide(&w, "backend-1", other, 2), "Deny");
    hy_docs_fini(&w.docs);
}

/* Row 2: a more specific top-level targetRef wins. */
static void specific_policy_wins(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES
               "type: MeshTrafficPermission\nmesh: default\nname: a-mesh-deny\nspec:\n"
               "  targetRef: {kind: Mesh}\n  from:\n"
               "  - targetRef: {kind: Mesh}\n    default: {action: Deny}\n---\n"
               "type: MeshTrafficPermission\nmesh: default\nname: z-backend\nspec:\n"
               "  targetRef: {kind: MeshService, name: backend}\n  from:\n"
               "  - targetRef: {kind: MeshService, name: web}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    assert_string_equal(decide(&w, "backend-1", other, 2), "Deny");
    /* web-1 is not backend: only the mesh-wide deny applies */
    assert_string_equal(decide(&w, "web-1", web, 3), "Deny");
    hy_docs_fini(&w.docs);
}

#define ALLOW_ALL                                                                                  \
    "type: MeshTrafficPermission\nmesh: default\nname: allow-all\nspec:\n"                         \
    "  targetRef: {kind: Mesh}\n  from:\n"                                                         \
    "  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n---\n"

/* Row 3: MeshSubset on any tag (env) denies. */
static void subset_on_any_tag(void **state)
{
    (void)state;
    struct world w;
    world_load(
        &w, DATAPLANES ALLOW_ALL
        "type: MeshTrafficPermission\nmesh: default\nname: deny-dev\nspec:\n"
        "  targetRef: {kind: MeshService, name: backend}\n  from:\n"
        "  - targetRef: {kind: MeshSubset, tags: {env: dev}}\n    default: {action: Deny}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Deny");
    assert_string_equal(decide(&w, "backend-1", other, 2), "Allow");
    hy_docs_fini(&w.docs);
}

/* Row 4: a Dataplane targetRef by labels selects the proxy. */
static void dataplane_by_labels(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES ALLOW_ALL
               "type: MeshTrafficPermission\nmesh: default\nname: deny-backend\nspec:\n"
               "  targetRef: {kind: Dataplane, labels: {app: backend}}\n  from:\n"
               "  - targetRef: {kind: Mesh}\n    default: {action: Deny}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Deny");
    assert_string_equal(decide(&w, "web-1", other, 2), "Allow");
    hy_docs_fini(&w.docs);
}

/* Row 5: every inbound gets the zone tag (kuma.io/zone reads as hypha.io/zone). */
static void zone_tag(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES ALLOW_ALL
               "type: MeshTrafficPermission\nmesh: default\nname: deny-east\nspec:\n"
               "  targetRef: {kind: MeshSubset, tags: {kuma.io/zone: east}}\n  from:\n"
               "  - targetRef: {kind: MeshSubset, tags: {kuma.io/zone: east}}\n"
               "    default: {action: Deny}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Deny");
    assert_string_equal(decide(&w, "backend-1", other, 2), "Allow");
    hy_docs_fini(&w.docs);
}

/* No policy selects: no entry, which the data plane denies. */
static void nothing_selects(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES "type: MeshTrafficPermission\nmesh: default\nname: web-only\nspec:\n"
                              "  targetRef: {kind: MeshService, name: web}\n  from:\n"
                              "  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "none");
    assert_string_equal(decide(&w, "web-1", web, 3), "Allow");
    hy_docs_fini(&w.docs);
}

/* Equal specificity: the name that sorts first wins; a zone-origin policy
 * wins over a global-origin one. */
static void ties(void **state)
{
    (void)state;
    struct world w;
    world_load(&w,
               DATAPLANES "type: MeshTrafficPermission\nmesh: default\nname: aaa\nspec:\n"
                          "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Deny}\n---\n"
                          "type: MeshTrafficPermission\nmesh: default\nname: bbb\nspec:\n"
                          "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Deny");
    free(find(&w, "MeshTrafficPermission", "bbb")->origin);
    find(&w, "MeshTrafficPermission", "bbb")->origin = strdup("east");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    hy_docs_fini(&w.docs);
}

/* sectionName picks one inbound, by name or port. */
static void section_name(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES
               "type: MeshTrafficPermission\nmesh: default\nname: http-only\nspec:\n"
               "  targetRef: {kind: Dataplane, name: backend-1, sectionName: http}\n  from:\n"
               "  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n---\n"
               "type: MeshTrafficPermission\nmesh: default\nname: admin-port\nspec:\n"
               "  targetRef: {kind: MeshService, name: backend-admin, sectionName: \"9090\"}\n"
               "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Deny}\n");
    struct hy_resource *pols[32];
    size_t n = of_type(&w, "MeshTrafficPermission", pols);
    struct hy_policy_proxy p = {find(&w, "Dataplane", "backend-1"), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    assert_int_equal(s.n, 2);
    struct hy_policy_tags peer = {web, 3};
    struct hy_policy_conf c;
    assert_int_equal(hy_policy_merge(&s, "from", 0, &peer, &c), 0);
    assert_int_equal(((Hypha__V1__MeshTrafficPermission__Conf *)c.conf)->action,
                     HYPHA__V1__MESH_TRAFFIC_PERMISSION__CONF__ACTION__Allow);
    assert_string_equal(hy_policy_conf_origin(&c, "action")->r->meta->name, "http-only");
    hy_policy_conf_fini(&c);
    assert_int_equal(hy_policy_merge(&s, "from", 1, &peer, &c), 0);
    assert_int_equal(((Hypha__V1__MeshTrafficPermission__Conf *)c.conf)->action,
                     HYPHA__V1__MESH_TRAFFIC_PERMISSION__CONF__ACTION__Deny);
    assert_string_equal(hy_policy_conf_origin(&c, "action")->r->meta->name, "admin-port");
    hy_policy_conf_fini(&c);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

/* Field-by-field merge: scalars and durations replace, nested messages
 * merge, lists replace; each value names its entry. */
static void merge_fields(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES
               "type: MeshRetry\nmesh: default\nname: mesh-retry\nspec:\n"
               "  targetRef: {kind: Mesh}\n  to:\n"
               "  - targetRef: {kind: Mesh}\n    default:\n"
               "      tcp: {maxConnectAttempt: 3}\n"
               "      http: {numRetries: 5, perTryTimeout: 500ms, retryOn: [5xx, reset],\n"
               "             backOff: {baseInterval: 1s, maxInterval: 10s}}\n---\n"
               "type: MeshRetry\nmesh: default\nname: backend-retry\nspec:\n"
               "  targetRef: {kind: MeshService, name: web}\n  to:\n"
               "  - targetRef: {kind: MeshService, name: backend}\n    default:\n"
               "      http: {numRetries: 2, perTryTimeout: 2s, retryOn: [gateway-error],\n"
               "             backOff: {baseInterval: 100ms}}\n");
    struct hy_resource *pols[32];
    size_t n = of_type(&w, "MeshRetry", pols);
    struct hy_policy_proxy p = {find(&w, "Dataplane", "web-1"), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0].r->meta->name, "mesh-retry");
    static const struct hy_policy_tag backend[] = {{"hypha.io/service", "backend"}};
    struct hy_policy_tags dest = {backend, 1};
    struct hy_policy_conf c;
    assert_int_equal(hy_policy_merge(&s, "to", SIZE_MAX, &dest, &c), 0);
    const Hypha__V1__MeshRetry__Conf *r = (const void *)c.conf;
    assert_int_equal(r->tcp->max_connect_attempt, 3);
    assert_int_equal(r->http->num_retries, 2);
    assert_int_equal(r->http->per_try_timeout->seconds, 2);
    assert_int_equal(r->http->per_try_timeout->nanos, 0); /* replaced whole, not merged */
    assert_int_equal(r->http->n_retry_on, 1);
    assert_string_equal(r->http->retry_on[0], "gateway-error");
    assert_int_equal(r->http->back_off->base_interval->nanos, 100000000);
    assert_int_equal(r->http->back_off->max_interval->seconds, 10);
    assert_string_equal(hy_policy_conf_origin(&c, "tcp.maxConnectAttempt")->r->meta->name,
                        "mesh-retry");
    const struct hy_policy_origin *o = hy_policy_conf_origin(&c, "http.backOff.baseInterval");
    assert_string_equal(o->r->meta->name, "backend-retry");
    assert_string_equal(o->section, "to");
    assert_int_equal(o->index, 0);
    assert_string_equal(hy_policy_conf_origin(&c, "http.backOff.maxInterval")->r->meta->name,
                        "mesh-retry");
    hy_policy_conf_fini(&c);
    /* another destination: only the mesh-wide entry */
    static const struct hy_policy_tag db[] = {{"hypha.io/service", "db"}};
    dest = (struct hy_policy_tags){db, 1};
    assert_int_equal(hy_policy_merge(&s, "to", SIZE_MAX, &dest, &c), 0);
    assert_int_equal(((const Hypha__V1__MeshRetry__Conf *)c.conf)->http->num_retries, 5);
    hy_policy_conf_fini(&c);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

/* A oneof's chosen message replaces the other case. */
static void merge_oneof(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES
               "type: MeshLoadBalancingStrategy\nmesh: default\nname: a\nspec:\n"
               "  targetRef: {kind: Mesh}\n  to:\n  - targetRef: {kind: Mesh}\n    default:\n"
               "      loadBalancer: {type: RingHash, ringHash: {minRingSize: 64}}\n---\n"
               "type: MeshLoadBalancingStrategy\nmesh: default\nname: b\nspec:\n"
               "  targetRef: {kind: MeshService, name: web}\n  to:\n"
               "  - targetRef: {kind: Mesh}\n    default:\n"
               "      loadBalancer: {type: LeastRequest, leastRequest: {choiceCount: 3}}\n");
    struct hy_resource *pols[32];
    size_t n = of_type(&w, "MeshLoadBalancingStrategy", pols);
    struct hy_policy_proxy p = {find(&w, "Dataplane", "web-1"), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    static const struct hy_policy_tag backend[] = {{"hypha.io/service", "backend"}};
    struct hy_policy_tags dest = {backend, 1};
    struct hy_policy_conf c;
    assert_int_equal(hy_policy_merge(&s, "to", SIZE_MAX, &dest, &c), 0);
    const Hypha__V1__MeshLoadBalancingStrategy__Conf *lb = (const void *)c.conf;
    assert_int_equal(lb->load_balancer->type,
                     HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__TYPE__LeastRequest);
    assert_int_equal(lb->load_balancer->options_case,
                     HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__OPTIONS_LEAST_REQUEST);
    assert_int_equal(lb->load_balancer->least_request->choice_count, 3);
    hy_policy_conf_fini(&c);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

/* Another mesh's policies never select. */
static void other_mesh(void **state)
{
    (void)state;
    struct world w;
    world_load(&w,
               DATAPLANES "type: MeshTrafficPermission\nmesh: other\nname: allow-all\nspec:\n"
                          "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "none");
    hy_docs_fini(&w.docs);
}

/* Fields the data plane does not enforce draw one warning each, by path;
 * enforced ones none. */
static void warnings(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, "type: Mesh\nname: kuma\nmtls:\n  enabledBackend: ca-1\n  backends:\n"
                   "  - name: ca-1\n    type: builtin\n    dpCert: {rotation: {expiration: 1d}}\n"
                   "    conf: {caCert: {RSAbits: 2048, expiration: 10y}}\n---\n"
                   "type: MeshRetry\nmesh: default\nname: r\nspec:\n  to:\n"
                   "  - targetRef: {kind: Mesh}\n    default:\n"
                   "      tcp: {maxConnectAttempt: 3}\n"
                   "      http: {numRetries: 5, retryOn: [5xx], retriableResponseHeaders: "
                   "[{name: x-again}]}\n"
                   "      grpc: {numRetries: 2}\n---\n"
                   "type: MeshTimeout\nmesh: default\nname: t\nspec:\n  targetRef: {kind: Mesh}\n"
                   "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 2s, http: "
                   "{streamIdleTimeout: 5s, requestHeadersTimeout: 1s, maxStreamDuration: 9s, "
                   "maxConnectionDuration: 60s}}}]\n"
                   "  from: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 3s, "
                   "idleTimeout: 20s, http: {maxStreamDuration: 9s, maxConnectionDuration: 60s, "
                   "streamIdleTimeout: 5s, requestHeadersTimeout: 1s}}}]\n---\n"
                   "type: MeshTimeout\nmesh: default\nname: t2\nspec:\n  targetRef: {kind: Mesh}\n"
                   "  rules: [{default: {connectionTimeout: 3s, idleTimeout: 20s, http: "
                   "{requestTimeout: 4s, requestHeadersTimeout: 1s}}}]\n---\n"
                   "type: MeshLoadBalancingStrategy\nmesh: default\nname: lb\nspec:\n  to:\n"
                   "  - targetRef: {kind: Mesh}\n    default:\n"
                   "      loadBalancer: {type: RingHash, ringHash: {minRingSize: 64}}\n---\n"
                   "type: MeshTrafficPermission\nmesh: default\nname: m\nspec:\n"
                   "  from: [{targetRef: {kind: MeshSubset, tags: {a: b}}, default: {action: "
                   "Deny}}]\n");
    struct hy_diag d = {0};
    hy_policy_warnings(find(&w, "MeshRetry", "r"), &d);
    assert_int_equal(d.n, 1); /* numRetries and retryOn, http and grpc, are enforced now */
    assert_string_equal(d.causes[0].field,
                        "spec.to[0].default.http.retriableResponseHeaders[0].name");
    assert_non_null(strstr(d.causes[0].message, "accepted, not enforced yet"));
    assert_non_null(strstr(d.causes[0].message, "retriable response headers"));
    hy_diag_fini(&d);
    hy_policy_warnings(find(&w, "MeshTimeout", "t"), &d);
    assert_int_equal(d.n, 0); /* to and from: every field enforced, the inbound TCP ones too */
    hy_diag_fini(&d);
    hy_policy_warnings(find(&w, "MeshTimeout", "t2"), &d);
    assert_int_equal(d.n, 0); /* rules likewise */
    hy_diag_fini(&d);
    hy_policy_warnings(find(&w, "MeshTrafficPermission", "m"), &d);
    assert_int_equal(d.n, 0);
    hy_policy_warnings(find(&w, "Mesh", "kuma"), &d);
    assert_int_equal(d.n, 1); /* Kuma's default builtin backend file */
    assert_string_equal(d.causes[0].field, "mtls.backends[0].conf.caCert.RSAbits");
    assert_non_null(strstr(d.causes[0].message, "P-256"));
    hy_diag_fini(&d);
    hy_policy_warnings(find(&w, "MeshLoadBalancingStrategy", "lb"), &d);
    assert_int_equal(d.n, 1); /* RingHash is enforced (HTTP requests), its ring size is not */
    assert_string_equal(d.causes[0].field, "spec.to[0].default.loadBalancer.ringHash.minRingSize");
    assert_non_null(strstr(d.causes[0].message, "ring and table sizes"));
    hy_diag_fini(&d);
    hy_docs_fini(&w.docs);
}

/* sectionName names an inbound by its name; a port only names an inbound
 * without a name (Kuma docs, "Using a sectionName"). */
static void section_name_port_of_named_inbound(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES
               "type: MeshTrafficPermission\nmesh: default\nname: by-port\nspec:\n"
               "  targetRef: {kind: Dataplane, labels: {app: backend}, sectionName: \"8080\"}\n"
               "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n---\n"
               "type: MeshTrafficPermission\nmesh: default\nname: by-port-unnamed\nspec:\n"
               "  targetRef: {kind: Dataplane, labels: {app: backend}, sectionName: \"9090\"}\n"
               "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Deny}\n");
    struct hy_resource *pols[32];
    size_t n = of_type(&w, "MeshTrafficPermission", pols);
    struct hy_policy_proxy p = {find(&w, "Dataplane", "backend-1"), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    /* inbound 0 (port 8080) is named http: "8080" does not name it */
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].r->meta->name, "by-port-unnamed");
    assert_int_equal(s.v[0].inbounds, 2);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

/* A Dataplane that does not set the zone label carries its zone's (Kuma
 * labels every Dataplane kuma.io/zone), so labels {kuma.io/zone: east}
 * select the proxies of zone east. */
static void dataplane_zone_label(void **state)
{
    (void)state;
    struct world w;
    world_load(&w,
               DATAPLANES "type: MeshTrafficPermission\nmesh: default\nname: east-only\nspec:\n"
                          "  targetRef: {kind: Dataplane, labels: {kuma.io/zone: east}}\n"
                          "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow"); /* decide's proxy: east */
    struct hy_resource *pols[32];
    size_t n = of_type(&w, "MeshTrafficPermission", pols);
    struct hy_policy_proxy p = {find(&w, "Dataplane", "backend-1"), "west"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    assert_int_equal(s.n, 0);
    hy_policy_set_fini(&s);
    /* a Dataplane's own label is what it says */
    p.zone = "east";
    struct hy_resource *dp = find(&w, "Dataplane", "backend-1");
    Hypha__V1__Meta__LabelsEntry *l = dp->meta->labels[0];
    free(l->key);
    l->key = strdup("hypha.io/zone");
    free(l->value);
    l->value = strdup("west");
    assert_int_equal(hy_policy_select(pols, n, &p, &s), 0);
    assert_int_equal(s.n, 0);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

/* A policy made in a zone applies to that zone's proxies only. */
static void zone_policy_scope(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES ALLOW_ALL);
    struct hy_resource *r = find(&w, "MeshTrafficPermission", "allow-all");
    free(r->origin);
    r->origin = strdup("west");
    assert_string_equal(decide(&w, "backend-1", web, 3), "none"); /* decide's proxy: east */
    free(r->origin);
    r->origin = strdup("east");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    free(r->origin);
    r->origin = strdup("global");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    hy_docs_fini(&w.docs);
}

/* Kuma's shadow mode: a policy labelled kuma.io/effect: shadow selects no
 * proxy, and says so when written. */
static void shadow_mode(void **state)
{
    (void)state;
    struct world w;
    world_load(&w,
               DATAPLANES "type: MeshTrafficPermission\nmesh: default\nname: allow-all\n"
                          "labels: {kuma.io/effect: shadow}\nspec:\n"
                          "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "none");
    struct hy_diag d = {0};
    hy_policy_warnings(find(&w, "MeshTrafficPermission", "allow-all"), &d);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.causes[0].field, "labels.kuma.io/effect");
    assert_non_null(strstr(d.causes[0].message, "not enforced"));
    hy_diag_fini(&d);
    struct hy_resource *r = find(&w, "MeshTrafficPermission", "allow-all");
    free(r->meta->labels[0]->value);
    r->meta->labels[0]->value = strdup("enforce");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    hy_policy_warnings(r, &d);
    assert_int_equal(d.n, 0);
    hy_docs_fini(&w.docs);
}

/* Kuma's documented fields the sidecar does not enforce load, and each
 * draws a warning; targetRef.namespace (Kubernetes tab) is one of them. */
static void kuma_fields(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, "type: MeshRetry\nmesh: default\nname: r\nspec:\n  to:\n"
                   "  - targetRef: {kind: MeshService, name: backend, namespace: kuma-demo}\n"
                   "    default:\n"
                   "      grpc: {numRetries: 5, backOff: {baseInterval: 5s, maxInterval: 1m}, "
                   "retryOn: [DeadlineExceeded]}\n---\n"
                   "type: MeshHealthCheck\nmesh: default\nname: h\nspec:\n  to:\n"
                   "  - targetRef: {kind: Mesh}\n    default:\n      interval: 10s\n"
                   "      noTrafficInterval: 60s\n      grpc: {serviceName: cart}\n"
                   "      http: {path: /health, expectedStatuses: [200]}\n---\n"
                   "type: MeshLoadBalancingStrategy\nmesh: default\nname: lb\nspec:\n  to:\n"
                   "  - targetRef: {kind: Mesh}\n    default:\n      localityAwareness:\n"
                   "        disabled: false\n        localZone: {affinityTags: [{key: k8s.io/node, "
                   "weight: 9}]}\n        crossZone: {failoverThreshold: {percentage: 25}}\n");
    struct hy_diag d = {0};
    hy_policy_warnings(find(&w, "MeshRetry", "r"), &d);
    assert_int_equal(d.n, 1); /* namespace; grpc's numRetries, backOff, retryOn are enforced */
    assert_string_equal(d.causes[0].field, "spec.to[0].targetRef.namespace");
    assert_non_null(strstr(d.causes[0].message, "no Kubernetes namespaces"));
    hy_diag_fini(&d);
    hy_policy_warnings(find(&w, "MeshHealthCheck", "h"), &d);
    assert_int_equal(d.n, 1); /* http.path, expectedStatuses, grpc.serviceName are enforced */
    assert_string_equal(d.causes[0].field, "spec.to[0].default.noTrafficInterval");
    hy_diag_fini(&d);
    hy_policy_warnings(find(&w, "MeshLoadBalancingStrategy", "lb"), &d);
    assert_int_equal(d.n, 3); /* disabled is enforced; localZone and the threshold are not */
    assert_string_equal(
        d.causes[0].field,
        "spec.to[0].default.localityAwareness.crossZone.failoverThreshold.percentage");
    assert_string_equal(d.causes[1].field,
                        "spec.to[0].default.localityAwareness.localZone.affinityTags[0].key");
    hy_diag_fini(&d);
    hy_docs_fini(&w.docs);
}

/* proxyTypes: a policy for gateways only selects no sidecar; a Dataplane
 * targetRef with neither name nor labels selects every Dataplane. */
static void proxy_types(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DATAPLANES "type: MeshTrafficPermission\nmesh: default\nname: gw\nspec:\n"
                              "  targetRef: {kind: Mesh, proxyTypes: [Gateway]}\n  from:\n"
                              "  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "none");
    struct hy_diag wd = {0}; /* and says so at apply time */
    hy_policy_warnings(find(&w, "MeshTrafficPermission", "gw"), &wd);
    assert_int_equal(wd.n, 1);
    assert_string_equal(wd.causes[0].field, "spec.targetRef.proxyTypes");
    assert_non_null(strstr(wd.causes[0].message, "selects no proxy"));
    hy_diag_fini(&wd);
    hy_docs_fini(&w.docs);
    world_load(&w,
               DATAPLANES "type: MeshTrafficPermission\nmesh: default\nname: sc\nspec:\n"
                          "  targetRef: {kind: Dataplane, proxyTypes: [Gateway, Sidecar]}\n"
                          "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n");
    assert_string_equal(decide(&w, "backend-1", web, 3), "Allow");
    assert_string_equal(decide(&w, "web-1", web, 3), "Allow");
    hy_docs_fini(&w.docs);
    /* refused: a kind of proxy Kuma does not have, and proxyTypes in an entry */
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "t.yaml"};
    const char *bad = "type: MeshTimeout\nmesh: default\nname: t\nspec:\n"
                      "  targetRef: {kind: Mesh, proxyTypes: [Ingress]}\n"
                      "  to: [{targetRef: {kind: Mesh, proxyTypes: [Sidecar]}, default: "
                      "{idleTimeout: 1s}}]\n";
    assert_int_equal(hy_codec_decode_resources("t.yaml", bad, strlen(bad), NULL, &docs, &d), 0);
    assert_false(hy_docs_validate(&docs, &d));
    assert_int_equal(d.n, 2);
    assert_string_equal(d.causes[0].field, "spec.targetRef.proxyTypes[0]");
    assert_non_null(strstr(d.causes[0].message, "expected Sidecar or Gateway"));
    assert_string_equal(d.causes[1].field, "spec.to[0].targetRef.proxyTypes");
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
    /* an empty Dataplane name is not "every Dataplane" (an empty variable) */
    const char *empty = "type: MeshTrafficPermission\nmesh: default\nname: e\nspec:\n"
                        "  targetRef: {kind: Dataplane, name: \"\"}\n"
                        "  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n";
    struct hy_diag d2 = {.source = "e.yaml"};
    assert_int_equal(hy_codec_decode_resources("e.yaml", empty, strlen(empty), NULL, &docs, &d2),
                     0);
    assert_false(hy_docs_validate(&docs, &d2));
    assert_int_equal(d2.n, 1);
    assert_string_equal(d2.causes[0].field, "spec.targetRef.name");
    assert_non_null(strstr(d2.causes[0].message, "leave name out to select every Dataplane"));
    hy_diag_fini(&d2);
    hy_docs_fini(&docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(later_entry_wins),
        cmocka_unit_test(specific_policy_wins),
        cmocka_unit_test(subset_on_any_tag),
        cmocka_unit_test(dataplane_by_labels),
        cmocka_unit_test(zone_tag),
        cmocka_unit_test(nothing_selects),
        cmocka_unit_test(ties),
        cmocka_unit_test(section_name),
        cmocka_unit_test(section_name_port_of_named_inbound),
        cmocka_unit_test(dataplane_zone_label),
        cmocka_unit_test(zone_policy_scope),
        cmocka_unit_test(shadow_mode),
        cmocka_unit_test(merge_fields),
        cmocka_unit_test(merge_oneof),
        cmocka_unit_test(other_mesh),
        cmocka_unit_test(warnings),
        cmocka_unit_test(kuma_fields),
        cmocka_unit_test(proxy_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
