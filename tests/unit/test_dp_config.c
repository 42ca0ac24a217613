/* Unit tests of what the zone tells its sidecars and ingresses
 * (zone/dp_config.c, zone/ingress_config.c), computed from a real LMDB
 * store in a temporary directory: inbounds and the callers
 * MeshTrafficPermission lets in, outbounds with local endpoints and remote
 * ones through other zones' ingresses, the outbound policies and their
 * order, locality failover, deleted and invalid inputs, meshes kept apart,
 * and a version that changes only with the content.
 *
 * Four cases were bugs of dp_config.c before the policy engine
 * (cp/policy.h) computed the config: a permission opening every inbound of
 * the Dataplane it selects, a Deny of a subset dropped (failing open),
 * Dataplane-by-labels and MeshServiceSubset targetRefs ignored, and not
 * Kuma's merge order. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "codec.h"
#include "cp_api.h"
#include "cp_inspect.h"
#include "dataplane.pb-c.h"
#include "diag.h"
#include "dp_parts.h"
#include "dp_server.h"
#include "error.h"
#include "policies.pb-c.h"
#include "store.h"
#include "zone_config_fx.h"
#include "sni.h"
#include "poison.h"

static Hypha__V1__DpInbound *inbound(const Hypha__V1__DpConfig *c, uint32_t port)
{
    for (size_t i = 0; i < c->n_inbounds; i++)
        if (c->inbounds[i]->port == port)
            return c->inbounds[i];
    fail_msg("no inbound on port %u", port);
    return NULL;
}

static Hypha__V1__DpOutbound *outbound(const Hypha__V1__DpConfig *c, const char *service)
{
    for (size_t i = 0; i < c->n_outbounds; i++)
        if (!strcmp(c->outbounds[i]->service, service))
            return c->outbounds[i];
    fail_msg("no outbound to %s", service);
    return NULL;
}

/* The endpoint named name (a Dataplane or a remote ZoneIngress), or NULL. */
static Hypha__V1__DpEndpoint *endpoint(const Hypha__V1__DpOutbound *o, const char *name)
{
    for (size_t i = 0; i < o->n_endpoints; i++)
        if (o->endpoints[i]->name && !strcmp(o->endpoints[i]->name, name))
            return o->endpoints[i];
    return NULL;
}

static void assert_endpoint(const Hypha__V1__DpOutbound *o, const char *name, const char *address,
                            uint32_t port, const char *zone, uint32_t priority)
{
    const Hypha__V1__DpEndpoint *e = endpoint(o, name);
    if (!e)
        fail_msg("outbound %s has no endpoint %s", o->service, name);
    assert_string_equal(e->address, address);
    assert_true(e->has_port);
    assert_int_equal(e->port, port);
    if (zone)
        assert_string_equal(e->zone, zone);
    else
        assert_null(e->zone);
    assert_true(e->has_priority);
    assert_int_equal(e->priority, priority);
}

static void assert_duration(const Hypha__V1__Duration *d, int64_t seconds, int32_t nanos)
{
    assert_non_null(d);
    assert_int_equal(d->seconds, seconds);
    assert_int_equal(d->nanos, nanos);
}

/* ----- who an inbound lets in -----
 *
 * The permission tests ask what the sidecar would decide for a caller
 * (service, version, zone east) rather than how the inbound spells it:
 * DpInbound is being reshaped for the policy engine (cp/policy.h), from
 * allowed/denied SPIFFE IDs to ordered permissions on caller tags plus
 * SPIFFE matchers. Both shapes are read through the descriptors, so the
 * suite compiles and decides the same cases with either. */

static const ProtobufCFieldDescriptor *field(const ProtobufCMessage *m, const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
}

static size_t repeated(const ProtobufCMessage *m, const char *name, void *const **v)
{
    const ProtobufCFieldDescriptor *f = field(m, name);
    if (!f || f->label != PROTOBUF_C_LABEL_REPEATED)
        fail_msg("%s has no repeated field %s", m->descriptor->name, name);
    *v = *(void *const *const *)((const char *)m + f->offset);
    return *(const size_t *)((const char *)m + f->quantifier_offset);
}

static const char *string(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = field(m, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING)
        fail_msg("%s has no string field %s", m->descriptor->name, name);
    return *(const char *const *)((const char *)m + f->offset);
}

/* An optional enum or bool field's value, 0 when unset. */
static int number(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = field(m, name);
    if (!f || (f->type != PROTOBUF_C_TYPE_ENUM && f->type != PROTOBUF_C_TYPE_BOOL))
        fail_msg("%s has no enum or bool field %s", m->descriptor->name, name);
    if (!*(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset))
        return 0;
    return *(const int *)((const char *)m + f->offset);
}

static bool listed(const ProtobufCMessage *in, const char *list, const char *id)
{
    void *const *v;
    size_t n = repeated(in, list, &v);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], id))
            return true;
    return false;
}

/* Does one of the inbound's SPIFFE matchers in list match id? */
static bool matched(const ProtobufCMessage *in, const char *list, const char *id)
{
    void *const *v;
    size_t n = repeated(in, list, &v);
    for (size_t i = 0; i < n; i++) {
        const char *value = string(v[i], "value");
        if (number(v[i], "prefix") ? !strncmp(id, value, strlen(value)) : !strcmp(id, value))
            return true;
    }
    return false;
}

/* Does the caller carry every tag of permission p? */
static bool carries(const ProtobufCMessage *p, const char *service, const char *version)
{
    void *const *tags;
    size_t n = repeated(p, "tags", &tags);
    for (size_t i = 0; i < n; i++) {
        const char *k = string(tags[i], "key"), *v = string(tags[i], "value");
        if (!((!strcmp(k, "hypha.io/service") && !strcmp(v, service)) ||
              (!strcmp(k, "version") && version && !strcmp(v, version)) ||
              (!strcmp(k, "hypha.io/zone") && !strcmp(v, "east"))))
            return false;
    }
    return true;
}

/* Would the inbound on port let in a caller of service (with tag version
 * when not NULL) from zone east of the config's mesh? */
static bool lets_in(const Hypha__V1__DpConfig *c, uint32_t port, const char *service,
                    const char *version)
{
    const ProtobufCMessage *in = &inbound(c, port)->base;
    char id[256];
    snprintf(id, sizeof(id), "spiffe://%s/%s", c->mesh, service);
    if (field(in, "allowed")) /* SPIFFE IDs, "*" for the mesh; a denial wins */
        return !listed(in, "denied", id) &&
               (listed(in, "allowed", "*") || listed(in, "allowed", id));
    if (!field(in, "permissions"))
        fail_msg("DpInbound has neither allowed nor permissions: teach lets_in() its new shape");
    /* a deny matcher denies; else the last permission the caller meets
     * decides (Deny = 1); else an allow matcher allows */
    if (matched(in, "deny", id))
        return false;
    void *const *perms;
    size_t n = repeated(in, "permissions", &perms);
    const ProtobufCMessage *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (carries(perms[i], service, version))
            last = perms[i];
    if (last)
        return number(last, "action") != 1;
    return matched(in, "allow", id) || matched(in, "allow_with_shadow_deny", id);
}

/* ----- the world most cases start from ----- */

static const char *const mesh_default = "type: Mesh\n"
                                        "name: default\n"
                                        "---\n"
                                        "type: Mesh\n"
                                        "name: other\n";

/* web-1 in zone east: two inbounds (web, web-admin), outbounds to backend
 * and db. */
static const char *const web_1 = "type: Dataplane\n"
                                 "mesh: default\n"
                                 "name: web-1\n"
                                 "networking:\n"
                                 "  address: 10.0.0.1\n"
                                 "  inbound:\n"
                                 "    - port: 20001\n"
                                 "      servicePort: 8080\n"
                                 "      tags: {hypha.io/service: web, version: v1}\n"
                                 "    - port: 20002\n"
                                 "      serviceAddress: 10.0.0.100\n"
                                 "      tags: {hypha.io/service: web-admin}\n"
                                 "  outbound:\n"
                                 "    - port: 10001\n"
                                 "      tags: {hypha.io/service: backend}\n"
                                 "    - port: 10002\n"
                                 "      tags: {hypha.io/service: db}\n";

static void world(struct hy_store *s)
{
    PUT(s, "global", mesh_default);
    PUT(s, "east", web_1);
}

/* ----- inbounds and permissions ----- */

static void test_inbounds(void **state)
{
    struct fx *f = *state;
    world(f->s);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_string_equal(c->mesh, "default");
    assert_string_equal(c->name, "web-1");
    assert_string_equal(c->cert, "CERT");
    assert_string_equal(c->chain, "CHAIN");
    assert_string_equal(c->trust_bundle, "BUNDLE");
    assert_non_null(c->version);
    assert_int_equal(strlen(c->version), 16);
    assert_int_equal(c->n_inbounds, 2);
    Hypha__V1__DpInbound *in = inbound(c, 20001);
    assert_string_equal(in->service, "web");
    assert_int_equal(in->service_port, 8080);
    assert_string_equal(in->service_address, "127.0.0.1"); /* the default */
    in = inbound(c, 20002);
    assert_string_equal(in->service, "web-admin");
    assert_int_equal(in->service_port, 20002); /* no servicePort: the inbound's port */
    assert_string_equal(in->service_address, "10.0.0.100");
    /* no MeshTrafficPermission: nobody is let in */
    assert_false(lets_in(c, 20001, "frontend", NULL));
    assert_false(lets_in(c, 20002, "frontend", NULL));
    assert_int_equal(c->n_outbounds, 2);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void test_permissions(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: allow-all\n"
        "spec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  from:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {action: Allow}\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: web-callers\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  from:\n"
        "    - targetRef: {kind: MeshService, name: frontend}\n"
        "      default: {action: Allow}\n"
        "    - targetRef: {kind: MeshSubset, tags: {hypha.io/service: batch, team: x}}\n"
        "      default: {action: AllowWithShadowDeny}\n"
        "    - targetRef: {kind: MeshService, name: legacy}\n"
        "      default: {action: Deny}\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: again\n" /* the same principal twice: listed once */
        "spec:\n"
        "  from:\n"
        "    - targetRef: {kind: MeshService, name: frontend}\n"
        "      default: {action: Allow}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_true(lets_in(c, 20001, "frontend", NULL));
    assert_true(lets_in(c, 20001, "batch", NULL));  /* shadow deny: let in */
    assert_true(lets_in(c, 20001, "anyone", NULL)); /* allow-all */
    assert_false(lets_in(c, 20001, "legacy", NULL));
    assert_false(lets_in(c, 20001, "legacy", "v2"));
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* Which proxies a permission's top-level targetRef selects. */
static void test_permission_selection(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: to-backend\n" /* another service: not web-1 */
        "spec:\n"
        "  targetRef: {kind: MeshService, name: backend}\n"
        "  from: [{targetRef: {kind: MeshService, name: a}, default: {action: Allow}}]\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: to-web-2\n" /* another Dataplane */
        "spec:\n"
        "  targetRef: {kind: Dataplane, name: web-2}\n"
        "  from: [{targetRef: {kind: MeshService, name: b}, default: {action: Allow}}]\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: to-v2\n" /* a subset web-1 is not in */
        "spec:\n"
        "  targetRef: {kind: MeshSubset, tags: {version: v2}}\n"
        "  from: [{targetRef: {kind: MeshService, name: c}, default: {action: Allow}}]\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: to-web-1\n"
        "spec:\n"
        "  targetRef: {kind: Dataplane, name: web-1}\n"
        "  from: [{targetRef: {kind: MeshService, name: d}, default: {action: Allow}}]\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: to-v1\n"
        "spec:\n"
        "  targetRef: {kind: MeshSubset, tags: {hypha.io/service: web, version: v1}}\n"
        "  from: [{targetRef: {kind: MeshService, name: e}, default: {action: Allow}}]\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: other\n" /* another mesh, naming web-1's service and name */
        "name: elsewhere\n"
        "spec:\n"
        "  targetRef: {kind: Dataplane, name: web-1}\n"
        "  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_true(lets_in(c, 20001, "d", NULL));
    assert_true(lets_in(c, 20001, "e", NULL));
    assert_false(lets_in(c, 20001, "a", NULL));
    assert_false(lets_in(c, 20001, "b", NULL));
    assert_false(lets_in(c, 20001, "c", NULL));
    assert_false(lets_in(c, 20001, "anyone", NULL)); /* the other mesh's allow-all */
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* A permission whose targetRef names one service of a Dataplane applies to
 * that service's inbound only (Kuma matches inbound policies per inbound):
 * opening web-admin to the whole mesh must not open web. */
static void test_permission_per_inbound(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: admin-open\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web-admin}\n"
        "  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_true(lets_in(c, 20002, "anyone", NULL));
    bool web_open = lets_in(c, 20001, "anyone", NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    assert_false(web_open); /* the policy selects web-admin's inbound only */
}

/* Callers a SPIFFE ID cannot name (a subset without a service tag, a
 * MeshServiceSubset) must not vanish from a Deny: that lets them in. */
static void test_deny_subset(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: mtp\n"
        "spec:\n"
        "  from:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {action: Allow}\n"
        "    - targetRef: {kind: MeshServiceSubset, name: legacy, tags: {version: v1}}\n"
        "      default: {action: Deny}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_true(lets_in(c, 20001, "anyone", NULL));
    assert_true(lets_in(c, 20001, "legacy", "v2"));
    bool legacy_v1_in = lets_in(c, 20001, "legacy", "v1");
    hypha__v1__dp_config__free_unpacked(c, NULL);
    assert_false(legacy_v1_in);
}

/* ----- outbounds and endpoints ----- */

static const char *const backends = "type: Dataplane\n"
                                    "mesh: default\n"
                                    "name: backend-1\n"
                                    "networking:\n"
                                    "  address: 10.0.0.2\n"
                                    "  inbound:\n"
                                    "    - port: 20001\n"
                                    "      tags: {hypha.io/service: backend, version: v1}\n"
                                    "    - port: 20009\n"
                                    "      tags: {hypha.io/service: metrics}\n"
                                    "---\n"
                                    "type: Dataplane\n"
                                    "mesh: default\n"
                                    "name: backend-2\n"
                                    "networking:\n"
                                    "  address: 192.168.0.3\n"
                                    "  advertisedAddress: 10.0.0.3\n"
                                    "  inbound:\n"
                                    "    - port: 20005\n"
                                    "      tags: {hypha.io/service: backend}\n";

static void test_local_endpoints(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "east", backends);
    /* backend elsewhere: another mesh, another zone's Dataplane (reached
     * through its ingress, never directly) */
    PUT(f->s, "east",
        "type: Dataplane\n"
        "mesh: other\n"
        "name: backend-9\n"
        "networking: {address: 10.9.9.9, inbound: [{port: 1, tags: {hypha.io/service: "
        "backend}}]}\n");
    PUT(f->s, "west",
        "type: Dataplane\n"
        "mesh: default\n"
        "name: backend-west\n"
        "networking: {address: 10.8.8.8, inbound: [{port: 1, tags: {hypha.io/service: "
        "backend}}]}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_int_equal(o->port, 10001);
    assert_string_equal(o->sni, "backend.default.mesh");
    assert_int_equal(o->n_endpoints, 2);
    assert_endpoint(o, "backend-1", "10.0.0.2", 20001, "east", 0);
    assert_endpoint(o, "backend-2", "10.0.0.3", 20005, "east", 0); /* the advertised address */
    /* an endpoint carries its inbound's tags but the service (MeshServiceSubset) */
    const Hypha__V1__DpEndpoint *e1 = endpoint(o, "backend-1");
    assert_int_equal(e1->n_tags, 1);
    assert_string_equal(e1->tags[0]->key, "version");
    assert_string_equal(e1->tags[0]->value, "v1");
    assert_int_equal(endpoint(o, "backend-2")->n_tags, 0);
    /* no policy: nothing set beyond the endpoints */
    assert_null(o->connect_timeout);
    assert_null(o->idle_timeout);
    assert_null(o->health_interval);
    assert_null(o->lb);
    assert_false(o->has_max_connect_attempts);
    assert_false(o->has_max_connections);
    assert_false(o->has_max_pending);
    /* a service nobody serves: the outbound is there, with no endpoint */
    o = outbound(c, "db");
    assert_int_equal(o->port, 10002);
    assert_string_equal(o->sni, "db.default.mesh");
    assert_int_equal(o->n_endpoints, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* Other zones' ingresses, as the global CP syncs them down (origin: their
 * zone), each carrying some services: west behind a NAT (advertised
 * address and port), north and south dialled directly. */
static void put_ingresses(struct hy_store *s)
{
    PUT(s, "west",
        "type: ZoneIngress\n"
        "name: west-ingress\n"
        "networking: {address: 0.0.0.0, advertisedAddress: 203.0.113.5, port: 10001, "
        "advertisedPort: 30001}\n"
        "availableServices:\n"
        "  - {tags: {hypha.io/service: web}, mesh: default, instances: 1}\n"
        "  - {tags: {hypha.io/service: backend}, mesh: other, instances: 1}\n"
        "  - {tags: {hypha.io/service: backend}, mesh: default, instances: 2}\n"
        "  - {tags: {hypha.io/service: backend, version: v2}, mesh: default, instances: 1}\n");
    PUT(s, "north",
        "type: ZoneIngress\n"
        "name: north-ingress\n"
        "networking: {address: 198.51.100.7, port: 10001}\n"
        "availableServices:\n"
        "  - {tags: {hypha.io/service: backend, version: v2}, mesh: default, instances: 1}\n");
    PUT(s, "south",
        "type: ZoneIngress\n"
        "name: south-ingress\n"
        "networking: {address: 192.0.2.9, port: 10002}\n"
        "availableServices:\n"
        "  - {tags: {hypha.io/service: backend}, mesh: default, instances: 3}\n");
}

static void test_remote_endpoints(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "east", backends);
    put_ingresses(f->s);
    /* what must not become an endpoint: this zone's own ingress, one the
     * global CP wrote, one with no instances left, one that cannot say
     * where to dial */
    PUT(f->s, "east",
        "type: ZoneIngress\n"
        "name: east-ingress\n"
        "networking: {address: 10.0.0.50, port: 10001}\n"
        "availableServices: [{tags: {hypha.io/service: backend}, mesh: default}]\n");
    PUT(f->s, "global",
        "type: ZoneIngress\n"
        "name: global-ingress\n"
        "networking: {address: 10.0.0.51, port: 10001}\n"
        "availableServices: [{tags: {hypha.io/service: backend}, mesh: default}]\n");
    PUT(f->s, "gone",
        "type: ZoneIngress\n"
        "name: gone-ingress\n"
        "networking: {address: 10.0.0.52, port: 10001}\n"
        "availableServices: [{tags: {hypha.io/service: backend}, mesh: default, instances: 0}]\n");
    put_yaml(f->s, "blind", false,
             "type: ZoneIngress\n"
             "name: blind-ingress\n"
             "networking: {address: 0.0.0.0, port: 10001}\n"
             "availableServices: [{tags: {hypha.io/service: backend}, mesh: default}]\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_int_equal(o->n_endpoints, 5);
    assert_endpoint(o, "backend-1", "10.0.0.2", 20001, "east", 0);
    assert_endpoint(o, "backend-2", "10.0.0.3", 20005, "east", 0);
    /* the advertised address and port, one endpoint per ingress */
    assert_endpoint(o, "west-ingress", "203.0.113.5", 30001, "west", 1);
    assert_endpoint(o, "north-ingress", "198.51.100.7", 10001, "north", 1);
    assert_endpoint(o, "south-ingress", "192.0.2.9", 10002, "south", 1);
    assert_string_equal(o->sni, "backend.default.mesh"); /* what the ingress routes on */
    assert_int_equal(outbound(c, "db")->n_endpoints, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* The ingress side: west's routes become its availableServices, which
 * (synced to east) give east's web-1 its endpoint for backend. */
static void test_ingress_routes(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "west", backends);
    PUT(f->s, "west",
        "type: Dataplane\n"
        "mesh: other\n"
        "name: backend-1\n"
        "networking: {address: 10.9.0.1, inbound: [{port: 7000, tags: {hypha.io/service: "
        "backend}}]}\n");
    PUT(f->s, "east", web_1); /* another zone's Dataplane: not west's to route to */
    Hypha__V1__DpIngressConfig *ic = NULL;
    assert_int_equal(hy_zone_ingress_config_build(f->s, "west", &ic), 0);
    assert_string_equal(ic->zone, "west");
    assert_int_equal(strlen(ic->version), 16);
    /* default/backend, default/metrics, other/backend, and backend's tag
     * set {version: v1} (backend-1's inbound) under its subset SNI */
    assert_int_equal(ic->n_routes, 4);
    const Hypha__V1__DpIngressRoute *backend = NULL, *other = NULL, *v1 = NULL;
    for (size_t i = 0; i < ic->n_routes; i++) {
        const Hypha__V1__DpIngressRoute *r = ic->routes[i];
        assert_string_not_equal(r->service, "web");
        if (r->n_tags) {
            v1 = r;
            continue;
        }
        if (!strcmp(r->service, "backend") && !strcmp(r->mesh, "default"))
            backend = r;
        if (!strcmp(r->service, "backend") && !strcmp(r->mesh, "other"))
            other = r;
    }
    assert_non_null(backend);
    assert_non_null(other);
    assert_string_equal(backend->sni, "backend.default.mesh");
    assert_string_equal(other->sni, "backend.other.mesh");
    assert_int_equal(backend->n_endpoints, 2);
    assert_int_equal(other->n_endpoints, 1);
    assert_string_equal(other->endpoints[0]->address, "10.9.0.1");
    assert_int_equal(other->endpoints[0]->port, 7000);
    assert_non_null(v1);
    assert_string_equal(v1->service, "backend");
    assert_int_equal(v1->n_tags, 1);
    assert_string_equal(v1->tags[0]->key, "version");
    assert_string_equal(v1->tags[0]->value, "v1");
    char sni[HY_SNI_MAX];
    const char *k[] = {"version"}, *v[] = {"v1"};
    hy_sni_for_subset("backend", "default", k, v, 1, sni, sizeof(sni));
    assert_string_equal(v1->sni, sni);
    assert_int_equal(v1->n_endpoints, 1); /* backend-1 only: backend-2 has no version */
    assert_int_equal(v1->endpoints[0]->port, 20001);

    /* the same store, the same routes, the same version */
    Hypha__V1__DpIngressConfig *again = NULL;
    assert_int_equal(hy_zone_ingress_config_build(f->s, "west", &again), 0);
    assert_string_equal(again->version, ic->version);
    hypha__v1__dp_ingress_config__free_unpacked(again, NULL);

    /* west's ingress advertises them; east stores it with origin west */
    struct hy_resource *zi = hy_resource_new(hy_rtype_by_name("ZoneIngress"));
    assert_non_null(zi);
    assert_int_equal(hy_resource_set_name(zi, NULL, "west-ingress"), 0);
    Hypha__V1__ZoneIngress *spec = (Hypha__V1__ZoneIngress *)zi->spec;
    Hypha__V1__ZoneIngress__Networking net = HYPHA__V1__ZONE_INGRESS__NETWORKING__INIT;
    net.address = "203.0.113.5";
    net.has_port = 1;
    net.port = 10001;
    spec->networking = &net;
    assert_int_equal(hy_zone_ingress_available(ic, spec), 0);
    assert_int_equal(spec->n_available_services, 4);
    assert_int_equal(hy_zone_ingress_available(ic, spec), 0); /* again: replaced, not added */
    assert_int_equal(spec->n_available_services, 4);
    size_t subsets = 0;
    for (size_t i = 0; i < spec->n_available_services; i++)
        subsets += spec->available_services[i]->subset;
    assert_int_equal(subsets, 1);
    zi->origin = strdup("west");
    struct hy_store_write w;
    assert_int_equal(hy_store_put(f->s, zi, HY_VERSION_ANY, &w), 0);
    spec->networking = NULL;
    hy_resource_free(zi);
    hypha__v1__dp_ingress_config__free_unpacked(ic, NULL);

    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    /* west's Dataplanes only through the ingress: the whole service, and
     * its tag set {version: v1} by that set's own SNI */
    assert_int_equal(o->n_endpoints, 2);
    assert_endpoint(o, "west-ingress", "203.0.113.5", 10001, "west", 1);
    const Hypha__V1__DpEndpoint *whole = NULL, *sub = NULL;
    for (size_t i = 0; i < o->n_endpoints; i++)
        *(o->endpoints[i]->sni ? &sub : &whole) = o->endpoints[i];
    assert_non_null(whole);
    assert_non_null(sub);
    assert_int_equal(whole->n_tags, 0);
    assert_string_equal(sub->sni, sni);
    assert_string_equal(sub->address, "203.0.113.5");
    assert_int_equal(sub->n_tags, 1);
    assert_string_equal(sub->tags[0]->key, "version");
    assert_string_equal(sub->tags[0]->value, "v1");
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* ----- outbound policies ----- */

static void test_timeouts(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        /* web's proxies to backend over the mesh-wide value */
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: web-to-backend\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default: {connectionTimeout: 2s}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: m-mesh-wide\n"
        "spec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {connectionTimeout: 10s, idleTimeout: 1h}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: n-other-proxies\n" /* selects other proxies only */
        "spec:\n"
        "  targetRef: {kind: MeshService, name: backend}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 99s}}]\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: other\n"
        "name: z-other-mesh\n"
        "spec:\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 98s, idleTimeout: 98s}}]\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: z-db\n"
        "spec:\n"
        "  targetRef: {kind: Dataplane, name: web-1}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: db}\n"
        "      default: {idleTimeout: 1500ms}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_duration(o->connect_timeout, 2, 0);
    assert_duration(o->idle_timeout, 3600, 0);
    o = outbound(c, "db");
    assert_duration(o->connect_timeout, 10, 0);
    assert_duration(o->idle_timeout, 1, 500000000);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void test_retry_and_breaker(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshRetry\n"
        "mesh: default\n"
        "name: retry\n"
        "spec:\n"
        "  targetRef: {kind: MeshSubset, tags: {version: v1}}\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {tcp: {maxConnectAttempt: 5}}\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default: {tcp: {maxConnectAttempt: 2}}\n"
        "---\n"
        "type: MeshCircuitBreaker\n"
        "mesh: default\n"
        "name: breaker\n"
        "spec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {connectionLimits: {maxConnections: 100, maxPendingRequests: 10}}\n"
        "    - targetRef: {kind: MeshService, name: db}\n"
        "      default: {connectionLimits: {maxConnections: 3}}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_true(o->has_max_connect_attempts);
    assert_int_equal(o->max_connect_attempts, 2);
    assert_true(o->has_max_connections);
    assert_int_equal(o->max_connections, 100);
    assert_true(o->has_max_pending);
    assert_int_equal(o->max_pending, 10);
    o = outbound(c, "db");
    assert_int_equal(o->max_connect_attempts, 5);
    assert_int_equal(o->max_connections, 3);
    assert_int_equal(o->max_pending, 10); /* the mesh-wide value the db entry leaves */
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void test_load_balancer(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshLoadBalancingStrategy\n"
        "mesh: default\n"
        "name: lb\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {loadBalancer: {type: Random}}\n"
        "    - targetRef: {kind: MeshService, name: db}\n"
        "      default: {loadBalancer: {type: LeastRequest, leastRequest: {choiceCount: 3}}}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_string_equal(outbound(c, "backend")->lb, "Random");
    assert_string_equal(outbound(c, "db")->lb, "LeastRequest");
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void test_health_checks(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshHealthCheck\n"
        "mesh: default\n"
        "name: hc\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {timeout: 2s, unhealthyThreshold: 3}\n"
        "    - targetRef: {kind: MeshService, name: db}\n"
        "      default: {tcp: {disabled: true}}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_duration(o->health_interval, 60, 0); /* Kuma's default interval */
    assert_duration(o->health_timeout, 2, 0);
    assert_true(o->has_unhealthy_threshold);
    assert_int_equal(o->unhealthy_threshold, 3);
    assert_false(o->has_healthy_threshold);
    assert_null(outbound(c, "db")->health_interval); /* the service entry turns checks off */
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* a service entry without an interval keeps the mesh-wide one */
    PUT(f->s, "global",
        "type: MeshHealthCheck\n"
        "mesh: default\n"
        "name: hc\n"
        "spec:\n"
        "  to: [{targetRef: {kind: Mesh}, default: {interval: 10s, timeout: 2s, "
        "unhealthyThreshold: 3}}]\n"
        "---\n"
        "type: MeshHealthCheck\n"
        "mesh: default\n"
        "name: hc-backend\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default: {healthyThreshold: 2}\n");
    c = config(f->s, "default", "web-1");
    o = outbound(c, "backend");
    assert_duration(o->health_interval, 10, 0);
    assert_duration(o->health_timeout, 2, 0);
    assert_int_equal(o->unhealthy_threshold, 3);
    assert_true(o->has_healthy_threshold);
    assert_int_equal(o->healthy_threshold, 2);
    assert_duration(outbound(c, "db")->health_interval, 10, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    PUT(f->s, "global",
        "type: MeshHealthCheck\n"
        "mesh: default\n"
        "name: hc-backend\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default: {interval: 5s}\n");
    c = config(f->s, "default", "web-1");
    o = outbound(c, "backend");
    assert_duration(o->health_interval, 5, 0);
    assert_duration(o->health_timeout, 2, 0);
    assert_false(o->has_healthy_threshold);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* Kuma's localityAwareness: failover rules order the zones; zones no rule
 * names are dropped. */
static void test_locality(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "east", backends);
    put_ingresses(f->s);
    const char *lb = "type: MeshLoadBalancingStrategy\n"
                     "mesh: default\n"
                     "name: locality\n"
                     "spec:\n"
                     "  to:\n"
                     "    - targetRef: {kind: MeshService, name: backend}\n"
                     "      default:\n"
                     "        localityAwareness:\n"
                     "          crossZone:\n"
                     "            failover:\n"
                     "              - from: {zones: [west]}\n" /* not a rule for east */
                     "                to: {type: Any}\n"
                     "              - to: {type: Only, zones: [north]}\n"
                     "              - to: {type: AnyExcept, zones: [south]}\n";
    PUT(f->s, "global", lb);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_int_equal(o->n_endpoints, 4);
    assert_endpoint(o, "backend-1", "10.0.0.2", 20001, "east", 0);
    assert_endpoint(o, "backend-2", "10.0.0.3", 20005, "east", 0);
    assert_endpoint(o, "north-ingress", "198.51.100.7", 10001, "north", 1);
    assert_endpoint(o, "west-ingress", "203.0.113.5", 30001, "west", 2);
    assert_null(endpoint(o, "south-ingress"));
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* None stops: only north beyond this zone */
    PUT(f->s, "global",
        "type: MeshLoadBalancingStrategy\n"
        "mesh: default\n"
        "name: locality\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default:\n"
        "        localityAwareness:\n"
        "          crossZone:\n"
        "            failover:\n"
        "              - to: {type: Only, zones: [north]}\n"
        "              - to: {type: None}\n"
        "              - to: {type: Any}\n");
    c = config(f->s, "default", "web-1");
    o = outbound(c, "backend");
    assert_int_equal(o->n_endpoints, 3);
    assert_endpoint(o, "north-ingress", "198.51.100.7", 10001, "north", 1);
    assert_null(endpoint(o, "west-ingress"));
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* disabled: every zone alike */
    PUT(f->s, "global",
        "type: MeshLoadBalancingStrategy\n"
        "mesh: default\n"
        "name: locality\n"
        "spec:\n"
        "  to: [{targetRef: {kind: Mesh}, default: {localityAwareness: {disabled: true}}}]\n");
    c = config(f->s, "default", "web-1");
    o = outbound(c, "backend");
    assert_int_equal(o->n_endpoints, 5);
    for (size_t i = 0; i < o->n_endpoints; i++)
        assert_int_equal(o->endpoints[i]->priority, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* ----- changes, versions, meshes ----- */

/* The version names the content: the same inputs give the same version,
 * anything the config does not show leaves it, anything it shows changes
 * it, and undoing a change gives the old version back. */
static void test_version(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "east", backends);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    char *v0 = strdup(c->version);
    /* the version is the whole version of its parts: 16 hex digits, the
     * same for the same inputs */
    assert_int_equal(strlen(v0), HY_DP_VERSION_LEN);
    assert_int_equal(strspn(v0, "0123456789abcdef"), HY_DP_VERSION_LEN);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    c = config(f->s, "default", "web-1");
    assert_string_equal(c->version, v0);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* unrelated: another mesh's policy and Dataplane, a policy selecting
     * other proxies, a service web-1 does not call, a re-put of the same */
    PUT(f->s, "global",
        "type: MeshTimeout\n"
        "mesh: other\n"
        "name: t\n"
        "spec: {to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 1s}}]}\n"
        "---\n"
        "type: MeshRetry\n"
        "mesh: default\n"
        "name: r\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: backend}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {tcp: {maxConnectAttempt: 4}}}]\n");
    PUT(f->s, "east",
        "type: Dataplane\n"
        "mesh: other\n"
        "name: backend-9\n"
        "networking: {address: 10.9.9.9, inbound: [{port: 1, tags: {hypha.io/service: "
        "backend}}]}\n"
        "---\n"
        "type: Dataplane\n"
        "mesh: default\n"
        "name: cache-1\n"
        "networking: {address: 10.0.0.7, inbound: [{port: 1, tags: {hypha.io/service: "
        "cache}}]}\n");
    PUT(f->s, "east", backends);
    c = config(f->s, "default", "web-1");
    assert_string_equal(c->version, v0);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* a new endpoint, a policy, a certificate: each changes it */
    PUT(f->s, "east",
        "type: Dataplane\n"
        "mesh: default\n"
        "name: db-1\n"
        "networking: {address: 10.0.0.8, inbound: [{port: 5432, tags: {hypha.io/service: "
        "db}}]}\n");
    c = config(f->s, "default", "web-1");
    char *v1 = strdup(c->version);
    assert_string_not_equal(v1, v0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    PUT(f->s, "global",
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: t\n"
        "spec: {to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 1s}}]}\n");
    c = config(f->s, "default", "web-1");
    assert_string_not_equal(c->version, v1);
    assert_string_not_equal(c->version, v0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    c = config_with(f->s, "default", "web-1", "RENEWED");
    char *v2 = strdup(c->version);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    c = config(f->s, "default", "web-1");
    assert_string_not_equal(c->version, v2);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* undone: the first version again */
    del(f->s, "MeshTimeout", "default", "t");
    del(f->s, "Dataplane", "default", "db-1");
    c = config(f->s, "default", "web-1");
    assert_string_equal(c->version, v0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    free(v0);
    free(v1);
    free(v2);
}

/* Deleted policies and endpoints leave the config. */
static void test_deleted(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "east", backends);
    put_ingresses(f->s);
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: allow\n"
        "spec: {from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: t\n"
        "spec: {to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 1s}}]}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_true(lets_in(c, 20001, "anyone", NULL));
    assert_non_null(outbound(c, "backend")->connect_timeout);
    assert_int_equal(outbound(c, "backend")->n_endpoints, 5);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    del(f->s, "MeshTrafficPermission", "default", "allow");
    del(f->s, "MeshTimeout", "default", "t");
    del(f->s, "Dataplane", "default", "backend-1");
    del(f->s, "ZoneIngress", NULL, "west-ingress");
    c = config(f->s, "default", "web-1");
    assert_false(lets_in(c, 20001, "anyone", NULL));
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_null(o->connect_timeout);
    assert_int_equal(o->n_endpoints, 3);
    assert_null(endpoint(o, "backend-1"));
    assert_null(endpoint(o, "west-ingress"));
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* A mesh's Dataplanes, policies and ingress services never reach a proxy
 * of another mesh, even under the same names. */
static void test_meshes_apart(void **state)
{
    struct fx *f = *state;
    world(f->s);
    put_ingresses(f->s); /* west carries backend for both meshes */
    PUT(f->s, "east",
        "type: Dataplane\n"
        "mesh: other\n"
        "name: web-1\n"
        "networking:\n"
        "  address: 10.1.0.1\n"
        "  inbound: [{port: 20001, tags: {hypha.io/service: web}}]\n"
        "  outbound: [{port: 10001, tags: {hypha.io/service: backend}}]\n");
    PUT(f->s, "east", backends); /* mesh default */
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: allow\n"
        "spec: {from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: t\n"
        "spec: {to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 1s}}]}\n"
        "---\n"
        "type: MeshLoadBalancingStrategy\n"
        "mesh: default\n"
        "name: lb\n"
        "spec: {to: [{targetRef: {kind: Mesh}, default: {loadBalancer: {type: Random}}}]}\n");
    Hypha__V1__DpConfig *c = config(f->s, "other", "web-1");
    assert_string_equal(c->mesh, "other");
    assert_false(lets_in(c, 20001, "anyone", NULL));
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_string_equal(o->sni, "backend.other.mesh");
    assert_null(o->connect_timeout);
    assert_null(o->lb);
    assert_int_equal(o->n_endpoints, 1); /* west's ingress, for its other-mesh instance */
    assert_endpoint(o, "west-ingress", "203.0.113.5", 30001, "west", 1);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* ----- edge cases ----- */

/* No Mesh: the store holds what it was given and the generator computes
 * from that. A deleted Mesh takes its policies and Dataplanes with it: a
 * session still holding its Dataplane gets a config that lets nobody in
 * and has nowhere to go. */
static void test_no_mesh(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "east", web_1);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_int_equal(c->n_inbounds, 2);
    assert_int_equal(c->n_outbounds, 2);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    world(f->s);
    PUT(f->s, "east", backends);
    PUT(f->s, "global",
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: allow\n"
        "spec: {from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}\n");
    struct hy_resource *dp = NULL;
    assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "web-1", &dp), 0);
    del(f->s, "Mesh", NULL, "default");
    struct hy_resource *gone = NULL;
    assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "backend-1", &gone), HY_ENOTFOUND);
    assert_int_equal(hy_zone_dp_config_build(f->s, dp, "CERT", "CHAIN", "BUNDLE", &c), 0);
    hy_resource_free(dp);
    assert_false(lets_in(c, 20001, "anyone", NULL));
    assert_int_equal(outbound(c, "backend")->n_endpoints, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* What validation refuses, in the store anyway (written before a rule
 * existed, or by hand): a Dataplane without inbounds or networking, an
 * outbound without a service, an inbound without a port, an ingress
 * without networking, policy entries without a targetRef or default. Nothing
 * crashes; what cannot be read is left out. */
static void test_invalid_inputs(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    put_yaml(f->s, "east", false,
             "type: Dataplane\n"
             "mesh: default\n"
             "name: client-1\n"
             "networking:\n"
             "  address: 10.0.0.9\n"
             "  outbound:\n"
             "    - port: 10001\n"
             "      tags: {hypha.io/service: backend}\n"
             "    - port: 10003\n"
             "      tags: {app: x}\n"
             "---\n"
             "type: Dataplane\n"
             "mesh: default\n"
             "name: bare\n"
             "---\n"
             "type: Dataplane\n"
             "mesh: default\n"
             "name: backend-1\n"
             "networking:\n"
             "  address: 10.0.0.2\n"
             "  inbound:\n"
             "    - tags: {hypha.io/service: backend}\n" /* no port: no endpoint */
             "    - port: 20002\n"
             "      tags: {app: x}\n" /* no service */
             "    - port: 20003\n"
             "      tags: {hypha.io/service: backend}\n");
    put_yaml(f->s, "west", false,
             "type: ZoneIngress\n"
             "name: west-ingress\n"
             "availableServices: [{tags: {hypha.io/service: backend}, mesh: default}]\n");
    put_yaml(f->s, "global", false,
             "type: MeshTimeout\n"
             "mesh: default\n"
             "name: t\n"
             "spec:\n"
             "  to:\n"
             "    - default: {connectionTimeout: 7s}\n"
             "    - targetRef: {kind: Mesh}\n"
             "---\n"
             "type: MeshHealthCheck\n"
             "mesh: default\n"
             "name: hc\n"
             "spec: {to: [{targetRef: {kind: Mesh}}]}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "client-1");
    assert_int_equal(c->n_inbounds, 0);
    assert_int_equal(c->n_outbounds, 2);
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_int_equal(o->n_endpoints, 1);
    assert_endpoint(o, "backend-1", "10.0.0.2", 20003, "east", 0);
    /* an entry without a targetRef may read as nothing or as the whole
     * mesh (as a missing top-level one does): not asserted; one without a
     * default sets nothing */
    assert_null(o->health_interval);
    o = outbound(c, ""); /* no service tag: an outbound going nowhere */
    assert_int_equal(o->n_endpoints, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    c = config(f->s, "default", "bare");
    assert_int_equal(c->n_inbounds, 0);
    assert_int_equal(c->n_outbounds, 0);
    assert_int_equal(strlen(c->version), 16);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* Valid top-level targetRefs the generator must honour: a Dataplane chosen
 * by its labels, a MeshServiceSubset. */
static void test_selection_kinds(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east",
        "type: Dataplane\n"
        "mesh: default\n"
        "name: web-1\n"
        "labels: {app: web}\n"
        "networking:\n"
        "  address: 10.0.0.1\n"
        "  inbound: [{port: 20001, tags: {hypha.io/service: web, version: v1}}]\n"
        "  outbound: [{port: 10001, tags: {hypha.io/service: backend}}]\n");
    PUT(f->s, "global",
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: by-labels\n"
        "spec:\n"
        "  targetRef: {kind: Dataplane, labels: {app: web}}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 3s}}]\n"
        "---\n"
        "type: MeshRetry\n"
        "mesh: default\n"
        "name: by-subset\n"
        "spec:\n"
        "  targetRef: {kind: MeshServiceSubset, name: web, tags: {version: v1}}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {tcp: {maxConnectAttempt: 4}}}]\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    bool by_labels = o->connect_timeout != NULL, by_subset = o->has_max_connect_attempts;
    hypha__v1__dp_config__free_unpacked(c, NULL);
    assert_true(by_labels);
    assert_true(by_subset);
}

/* Kuma's merge order, which cp/policy.h sets out for the zone: policies
 * by top-level targetRef (Mesh first, Dataplane by name last), then
 * origin, then name (of two equal ones, the first by name wins); `to`
 * entries also by their own targetRef (Mesh before MeshService, Kuma's
 * outbound entry sort), `from` entries as written; the later matching
 * entry wins, for permissions too. */
static void test_merge_order(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "global",
        "type: MeshRetry\n"
        "mesh: default\n"
        "name: retry\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n" /* the service's: wins */
        "      default: {tcp: {maxConnectAttempt: 2}}\n"
        "    - targetRef: {kind: Mesh}\n" /* written later, but less specific */
        "      default: {tcp: {maxConnectAttempt: 5}}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: a-dp\n" /* the more specific targetRef: wins */
        "spec:\n"
        "  targetRef: {kind: Dataplane, name: web-1}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 3s}}]\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: z-mesh\n"
        "spec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 9s}}]\n"
        "---\n"
        "type: MeshCircuitBreaker\n"
        "mesh: default\n"
        "name: a-first\n" /* equal targetRefs: the first by name wins */
        "spec: {to: [{targetRef: {kind: Mesh}, default: {connectionLimits: {maxConnections: "
        "1}}}]}\n"
        "---\n"
        "type: MeshCircuitBreaker\n"
        "mesh: default\n"
        "name: z-last\n"
        "spec: {to: [{targetRef: {kind: Mesh}, default: {connectionLimits: {maxConnections: "
        "2}}}]}\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: a-legacy-in\n" /* for this Dataplane: overrides the mesh-wide Deny */
        "spec:\n"
        "  targetRef: {kind: Dataplane, name: web-1}\n"
        "  from: [{targetRef: {kind: MeshService, name: legacy}, default: {action: Allow}}]\n"
        "---\n"
        "type: MeshTrafficPermission\n"
        "mesh: default\n"
        "name: z-legacy-out\n"
        "spec:\n"
        "  from: [{targetRef: {kind: MeshService, name: legacy}, default: {action: Deny}}]\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    uint32_t attempts = o->max_connect_attempts, conns = o->max_connections;
    int64_t connect = o->connect_timeout ? o->connect_timeout->seconds : -1;
    bool legacy_in = lets_in(c, 20001, "legacy", NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    assert_int_equal(attempts, 2);
    assert_int_equal(connect, 3);
    assert_int_equal(conns, 1);
    assert_true(legacy_in);
}

/* One round read from the store serves every config computed after a
 * change: each the same as one built from the store alone, and a round
 * read before a change does not see it (the DP server reads a new one). */
static void test_round(void **state)
{
    struct fx *f = *state;
    world(f->s);
    PUT(f->s, "east", backends);
    struct hy_zone_dp_round *round = NULL;
    assert_int_equal(hy_zone_dp_round_load(f->s, &round), 0);
    static const char *const names[] = {"web-1", "backend-1", "backend-2"};
    for (size_t i = 0; i < 3; i++) {
        struct hy_resource *dp = NULL;
        Hypha__V1__DpConfig *a = NULL, *b = NULL;
        assert_int_equal(hy_store_get(f->s, "Dataplane", "default", names[i], &dp), 0);
        assert_int_equal(hy_zone_dp_config_compute(round, dp, "CERT", "CHAIN", "BUNDLE", &a), 0);
        assert_int_equal(hy_zone_dp_config_build(f->s, dp, "CERT", "CHAIN", "BUNDLE", &b), 0);
        assert_string_equal(a->version, b->version);
        hypha__v1__dp_config__free_unpacked(a, NULL);
        hypha__v1__dp_config__free_unpacked(b, NULL);
        hy_resource_free(dp);
    }
    del(f->s, "Dataplane", "default", "backend-2");
    struct hy_resource *web = NULL;
    assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "web-1", &web), 0);
    Hypha__V1__DpConfig *old = NULL, *now = NULL;
    assert_int_equal(hy_zone_dp_config_compute(round, web, "CERT", "CHAIN", "BUNDLE", &old), 0);
    assert_int_equal(outbound(old, "backend")->n_endpoints, 2); /* the round as read */
    hy_zone_dp_round_free(round);
    assert_int_equal(hy_zone_dp_round_load(f->s, &round), 0);
    assert_int_equal(hy_zone_dp_config_compute(round, web, "CERT", "CHAIN", "BUNDLE", &now), 0);
    assert_int_equal(outbound(now, "backend")->n_endpoints, 1);
    hypha__v1__dp_config__free_unpacked(old, NULL);
    hypha__v1__dp_config__free_unpacked(now, NULL);
    hy_resource_free(web);
    hy_zone_dp_round_free(round);
}

/* ----- what a change alters: only the sidecars whose parts it can change ----- */

/* a-1 serves a and calls b; b-1 serves b and calls c; c-1 serves c. */
static const char *const chain_abc = "type: Dataplane\nmesh: default\nname: a-1\n"
                                     "networking:\n  address: 10.0.1.1\n"
                                     "  inbound: [{port: 1001, tags: {hypha.io/service: a}}]\n"
                                     "  outbound: [{port: 2001, tags: {hypha.io/service: b}}]\n"
                                     "---\n"
                                     "type: Dataplane\nmesh: default\nname: b-1\n"
                                     "networking:\n  address: 10.0.1.2\n"
                                     "  inbound: [{port: 1002, tags: {hypha.io/service: b}}]\n"
                                     "  outbound: [{port: 2002, tags: {hypha.io/service: c}}]\n"
                                     "---\n"
                                     "type: Dataplane\nmesh: default\nname: c-1\n"
                                     "networking:\n  address: 10.0.1.3\n"
                                     "  inbound: [{port: 1003, tags: {hypha.io/service: c}}]\n";

struct impact_fx {
    struct hy_store *s;
    struct hy_zone_dp_round *old;
    struct hy_zone_dp_round *live; /* kept up to date with hy_zone_dp_round_apply */
    uint64_t seen;                 /* the store's revision live has */
};

/* The version of each of dp's own parts (Inbounds, Outbounds) under r. */
static void own_versions(struct hy_zone_dp_round *r, const struct hy_resource *dp, char *in,
                         char *out)
{
    Hypha__V1__DpPart *pi = NULL, *po = NULL;
    assert_int_equal(hy_zone_dp_parts_own(r, dp, &pi, &po), 0);
    snprintf(in, HY_DP_VERSION_LEN + 1, "%s", pi->version);
    snprintf(out, HY_DP_VERSION_LEN + 1, "%s", po->version);
    protobuf_c_message_free_unpacked(&pi->base, NULL);
    protobuf_c_message_free_unpacked(&po->base, NULL);
}

/* After one change (type mesh/name, already in the store): the impact on
 * a-1, b-1 and c-1 is want[i], and every part whose version moved is
 * one the impact names (what it leaves out really did not change). */
static void expect_impact(struct impact_fx *x, const char *type, const char *name,
                          const unsigned want[3])
{
    static const char *const names[] = {"a-1", "b-1", "c-1"};
    struct hy_zone_dp_round *now = NULL;
    assert_int_equal(hy_zone_dp_round_load(x->s, &now), 0);
    struct hy_store_change c = {.type = (char *)type,
                                .mesh = (char *)(strcmp(type, "Mesh") ? "default" : ""),
                                .name = (char *)name};
    struct hy_store_changes ch = {&c, 1, 0};
    struct hy_zone_dp_impact *im = NULL, *applied = NULL;
    assert_int_equal(hy_zone_dp_impact_new(x->old, now, &ch, &im), 0);
    /* the live round, brought up to date with the store's own change
     * records, says the same and computes the same parts as a new one */
    struct hy_store_changes real = {0};
    if (strcmp(type, "MeshFuture")) {
        assert_int_equal(hy_store_changes(x->s, x->seen, 0, &real), 0);
    } else { /* not a type the store has: the record is made up */
        real.v = calloc(1, sizeof(*real.v));
        real.v[0] = (struct hy_store_change){.type = strdup(type),
                                             .mesh = strdup("default"),
                                             .name = strdup(name),
                                             .origin = strdup("")};
        real.n = 1;
        real.to = x->seen;
    }
    assert_int_equal(hy_zone_dp_round_apply(x->live, x->s, &real, &applied), 0);
    x->seen = real.to;
    hy_store_changes_fini(&real);
    for (size_t i = 0; i < 3; i++) {
        struct hy_resource *dp = NULL;
        assert_int_equal(hy_store_get(x->s, "Dataplane", "default", names[i], &dp), 0);
        unsigned got = hy_zone_dp_impact_on(im, dp);
        if (got != want[i])
            fail_msg("%s %s: impact on %s is %u, want %u", type, name, names[i], got, want[i]);
        assert_int_equal(hy_zone_dp_impact_on(applied, dp), got);
        char in0[20], out0[20], in1[20], out1[20], in2[20], out2[20];
        own_versions(x->old, dp, in0, out0);
        own_versions(now, dp, in1, out1);
        own_versions(x->live, dp, in2, out2);
        assert_string_equal(in1, in2);
        assert_string_equal(out1, out2);
        if (strcmp(in0, in1))
            assert_true(got & HY_ZONE_DP_INBOUNDS);
        if (strcmp(out0, out1))
            assert_true(got & HY_ZONE_DP_OUTBOUNDS);
        hy_resource_free(dp);
    }
    static const char *const svcs[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        const Hypha__V1__DpPart *e1 = NULL, *e2 = NULL;
        assert_int_equal(hy_zone_dp_round_endpoints(now, "east", "default", svcs[i], &e1), 0);
        assert_int_equal(hy_zone_dp_round_endpoints(x->live, "east", "default", svcs[i], &e2), 0);
        assert_string_equal(e1->version, e2->version);
    }
    hy_zone_dp_impact_free(applied);
    hy_zone_dp_impact_free(im);
    hy_zone_dp_round_free(x->old);
    x->old = now;
}

static void test_impact(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", chain_abc);
    struct impact_fx x = {f->s, NULL, NULL, hy_store_revision(f->s)};
    assert_int_equal(hy_zone_dp_round_load(f->s, &x.old), 0);
    assert_int_equal(hy_zone_dp_round_load(f->s, &x.live), 0);
    const unsigned IN = HY_ZONE_DP_INBOUNDS, OUT = HY_ZONE_DP_OUTBOUNDS, ALL = IN | OUT;

    /* a permission on MeshService b: b's sidecars' inbounds, nobody else */
    PUT(f->s, "global",
        "type: MeshTrafficPermission\nmesh: default\nname: mtp-b\nspec:\n"
        "  targetRef: {kind: MeshService, name: b}\n"
        "  from: [{targetRef: {kind: MeshService, name: a}, default: {action: Allow}}]\n");
    expect_impact(&x, "MeshTrafficPermission", "mtp-b", (const unsigned[]){0, IN, 0});
    /* a timeout on the whole mesh towards c: only c's callers' outbounds */
    PUT(f->s, "global",
        "type: MeshTimeout\nmesh: default\nname: to-c\nspec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to: [{targetRef: {kind: MeshService, name: c}, default: {connectionTimeout: 3s}}]\n");
    expect_impact(&x, "MeshTimeout", "to-c", (const unsigned[]){0, OUT, 0});
    /* one on MeshService a towards anything: a's outbounds */
    PUT(f->s, "global",
        "type: MeshTimeout\nmesh: default\nname: from-a\nspec:\n"
        "  targetRef: {kind: MeshService, name: a}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 4s}}]\n");
    expect_impact(&x, "MeshTimeout", "from-a", (const unsigned[]){OUT, 0, 0});
    /* moved to select b instead: a (before) and b (after) */
    PUT(f->s, "global",
        "type: MeshTimeout\nmesh: default\nname: from-a\nspec:\n"
        "  targetRef: {kind: MeshService, name: b}\n"
        "  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 4s}}]\n");
    expect_impact(&x, "MeshTimeout", "from-a", (const unsigned[]){OUT, OUT, 0});
    /* deleted: the sidecars it selected before */
    del(f->s, "MeshTrafficPermission", "default", "mtp-b");
    expect_impact(&x, "MeshTrafficPermission", "mtp-b", (const unsigned[]){0, IN, 0});
    /* a MeshMetric on b's sidecars: their Inbounds part (where it rides) */
    PUT(f->s, "global",
        "type: MeshMetric\nmesh: default\nname: mm-b\nspec:\n"
        "  targetRef: {kind: MeshService, name: b}\n"
        "  default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}\n");
    expect_impact(&x, "MeshMetric", "mm-b", (const unsigned[]){0, IN, 0});
    /* a sidecar joining changes no sidecar's own parts (only b's endpoints) */
    PUT(f->s, "east",
        "type: Dataplane\nmesh: default\nname: b-2\nnetworking:\n  address: 10.0.1.4\n"
        "  inbound: [{port: 1002, tags: {hypha.io/service: b}}]\n");
    expect_impact(&x, "Dataplane", "b-2", (const unsigned[]){0, 0, 0});
    /* a Mesh: every sidecar of it; a type the zone does not know: everything */
    PUT(f->s, "global", "type: Mesh\nname: default\nlabels: {team: a}\n");
    expect_impact(&x, "Mesh", "default", (const unsigned[]){ALL, ALL, ALL});
    expect_impact(&x, "MeshFuture", "x", (const unsigned[]){ALL, ALL, ALL});
    /* no round before, or no list of changes: everything */
    struct hy_zone_dp_impact *im = NULL;
    struct hy_resource *dp = NULL;
    assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "c-1", &dp), 0);
    assert_int_equal(hy_zone_dp_impact_new(NULL, x.old, NULL, &im), 0);
    assert_int_equal(hy_zone_dp_impact_on(im, dp), ALL);
    hy_zone_dp_impact_free(im);
    hy_resource_free(dp);
    hy_zone_dp_round_free(x.old);
    hy_zone_dp_round_free(x.live);
}

/* The parts of one sidecar, shared where they can be: a service's
 * Endpoints part is one object per round, whoever asks; one endpoint
 * joining changes that part's version and no other. */
static void test_shared_parts(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", chain_abc);
    struct hy_zone_dp_round *r = NULL;
    assert_int_equal(hy_zone_dp_round_load(f->s, &r), 0);
    const Hypha__V1__DpPart *b1 = NULL, *b2 = NULL, *c1 = NULL, *t1 = NULL, *t2 = NULL;
    assert_int_equal(hy_zone_dp_round_endpoints(r, "east", "default", "b", &b1), 0);
    assert_int_equal(hy_zone_dp_round_endpoints(r, "east", "default", "b", &b2), 0);
    assert_ptr_equal(b1, b2);
    assert_int_equal(b1->n_endpoints, 1);
    assert_string_equal(b1->endpoints[0]->name, "b-1");
    assert_false(b1->endpoints[0]->has_priority); /* each outbound gives it */
    assert_int_equal(hy_zone_dp_round_endpoints(r, "east", "default", "c", &c1), 0);
    assert_int_equal(hy_zone_dp_round_bundle(r, "default", &t1), 0);
    assert_int_equal(hy_zone_dp_round_bundle(r, "default", &t2), 0);
    assert_ptr_equal(t1, t2);
    char vb[20], vc[20];
    snprintf(vb, sizeof(vb), "%s", b1->version);
    snprintf(vc, sizeof(vc), "%s", c1->version);
    /* other zones' sidecars do not see east's as local */
    const Hypha__V1__DpPart *w = NULL;
    assert_int_equal(hy_zone_dp_round_endpoints(r, "west", "default", "b", &w), 0);
    assert_int_equal(w->n_endpoints, 0);
    hy_zone_dp_round_free(r);

    PUT(f->s, "east",
        "type: Dataplane\nmesh: default\nname: b-2\nnetworking:\n  address: 10.0.1.4\n"
        "  inbound: [{port: 1002, tags: {hypha.io/service: b}}]\n");
    assert_int_equal(hy_zone_dp_round_load(f->s, &r), 0);
    assert_int_equal(hy_zone_dp_round_endpoints(r, "east", "default", "b", &b1), 0);
    assert_int_equal(hy_zone_dp_round_endpoints(r, "east", "default", "c", &c1), 0);
    assert_int_equal(b1->n_endpoints, 2);
    assert_string_not_equal(b1->version, vb);
    assert_string_equal(c1->version, vc);
    hy_zone_dp_round_free(r);
}

/* ----- protocols (Kuma's kuma.io/protocol) ----- */

static const char *const l7_world =
    "type: Dataplane\n"
    "mesh: default\n"
    "name: web-1\n"
    "networking:\n"
    "  address: 10.0.0.1\n"
    "  inbound:\n"
    "    - port: 20001\n"
    "      tags: {kuma.io/service: web, kuma.io/protocol: http}\n" /* Kuma's spelling */
    "    - port: 20002\n"
    "      tags: {hypha.io/service: web-admin}\n"
    "  outbound:\n"
    "    - {port: 10001, tags: {hypha.io/service: backend}}\n"
    "    - {port: 10002, tags: {hypha.io/service: db}}\n"
    "    - {port: 10003, tags: {hypha.io/service: api}}\n"
    "    - {port: 10004, tags: {hypha.io/service: mixed}}\n"
    "---\n"
    "type: Dataplane\n"
    "mesh: default\n"
    "name: backend-1\n"
    "networking:\n"
    "  address: 10.0.0.2\n"
    "  inbound:\n"
    "    - {port: 20001, tags: {hypha.io/service: backend, hypha.io/protocol: grpc}}\n"
    "    - {port: 20002, tags: {hypha.io/service: api, hypha.io/protocol: http2}}\n"
    "    - {port: 20003, tags: {hypha.io/service: mixed, hypha.io/protocol: http}}\n"
    "---\n"
    "type: Dataplane\n"
    "mesh: default\n"
    "name: backend-2\n"
    "networking:\n"
    "  address: 10.0.0.3\n"
    "  inbound:\n"
    "    - {port: 20001, tags: {hypha.io/service: backend, hypha.io/protocol: grpc}}\n"
    "    - {port: 20003, tags: {hypha.io/service: mixed}}\n";

static void test_protocol(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", l7_world);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_string_equal(inbound(c, 20001)->protocol, "http");
    assert_string_equal(inbound(c, 20002)->protocol, "tcp");       /* untagged */
    assert_string_equal(outbound(c, "backend")->protocol, "grpc"); /* both agree */
    assert_string_equal(outbound(c, "api")->protocol, "http2");
    assert_string_equal(outbound(c, "mixed")->protocol, "tcp"); /* http and tcp: tcp */
    assert_string_equal(outbound(c, "db")->protocol, "tcp");    /* no instance known */
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* other zones' instances count through their ingresses' tags: west
     * agrees on api, north disagrees on backend; an ingress without
     * instances is not an instance */
    PUT(f->s, "west",
        "type: ZoneIngress\n"
        "name: west-ingress\n"
        "networking: {address: 203.0.113.5, port: 10001}\n"
        "availableServices:\n"
        "  - {tags: {hypha.io/service: api, hypha.io/protocol: http2}, mesh: default, "
        "instances: 1}\n"
        "  - {tags: {hypha.io/service: db, hypha.io/protocol: http}, mesh: default, "
        "instances: 0}\n");
    PUT(f->s, "north",
        "type: ZoneIngress\n"
        "name: north-ingress\n"
        "networking: {address: 198.51.100.7, port: 10001}\n"
        "availableServices:\n"
        "  - {tags: {hypha.io/service: backend}, mesh: default, instances: 1}\n"
        "  - {tags: {hypha.io/service: db, hypha.io/protocol: http}, mesh: default, "
        "instances: 1}\n");
    c = config(f->s, "default", "web-1");
    assert_string_equal(outbound(c, "api")->protocol, "http2");
    assert_string_equal(outbound(c, "backend")->protocol, "tcp");
    assert_string_equal(outbound(c, "db")->protocol, "http"); /* only north's, http */
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* The ingress publishes the protocol its zone's instances agree on. */
static void test_ingress_protocol(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", l7_world);
    Hypha__V1__DpIngressConfig *ic = NULL;
    assert_int_equal(hy_zone_ingress_config_build(f->s, "east", &ic), 0);
    Hypha__V1__ZoneIngress zi = HYPHA__V1__ZONE_INGRESS__INIT;
    assert_int_equal(hy_zone_ingress_available(ic, &zi), 0);
    size_t seen = 0;
    for (size_t i = 0; i < zi.n_available_services; i++) {
        const Hypha__V1__ZoneIngress__AvailableService *as = zi.available_services[i];
        if (as->subset)
            continue; /* a tag set: the instances' own tags */
        const char *svc = NULL, *proto = NULL;
        for (size_t k = 0; k < as->n_tags; k++) {
            if (!strcmp(as->tags[k]->key, "hypha.io/service"))
                svc = as->tags[k]->value;
            if (!strcmp(as->tags[k]->key, "hypha.io/protocol"))
                proto = as->tags[k]->value;
        }
        assert_non_null(svc);
        if (!strcmp(svc, "backend") && ++seen)
            assert_string_equal(proto, "grpc");
        else if (!strcmp(svc, "api") && ++seen)
            assert_string_equal(proto, "http2");
        else if (!strcmp(svc, "web") && ++seen)
            assert_string_equal(proto, "http");
        else if (++seen) /* mixed disagree, web-admin untagged: no tag (tcp) */
            assert_null(proto);
    }
    assert_int_equal(seen, 5);
    for (size_t i = 0; i < zi.n_available_services; i++)
        protobuf_c_message_free_unpacked(&zi.available_services[i]->base, NULL);
    free(zi.available_services);
    hypha__v1__dp_ingress_config__free_unpacked(ic, NULL);
}

/* A protocol the sidecar does not know is refused at the Dataplane's
 * write, naming the inbound. */
static void test_protocol_invalid(void **state)
{
    (void)state;
    static const char yaml[] =
        "type: Dataplane\n"
        "mesh: default\n"
        "name: x\n"
        "networking:\n"
        "  address: 10.0.0.1\n"
        "  inbound:\n"
        "    - {port: 1, tags: {hypha.io/service: a, hypha.io/protocol: tcp}}\n"
        "    - {port: 2, tags: {hypha.io/service: b, kuma.io/protocol: "
        "mongo}}\n";
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "test.yaml"};
    assert_int_equal(hy_codec_decode_resources("test.yaml", yaml, strlen(yaml), NULL, &docs, &d),
                     0);
    assert_false(hy_docs_validate(&docs, &d));
    assert_int_equal(d.n, 1);
    char line[512];
    const char *text = hy_diag_format(&d, 0, line, sizeof(line));
    assert_non_null(strstr(text, "networking.inbound[1].tags"));
    assert_non_null(strstr(text, "unknown protocol \"mongo\" (expected tcp, http, http2 or grpc)"));
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
}

/* ----- L7: what each policy becomes in the sidecar's config ----- */

static const char *const l7_apps =
    "type: Dataplane\n"
    "mesh: default\n"
    "name: web-1\n"
    "networking:\n"
    "  address: 10.0.0.1\n"
    "  inbound:\n"
    "    - {port: 20001, tags: {hypha.io/service: web, hypha.io/protocol: http}}\n"
    "    - {port: 20002, tags: {hypha.io/service: web-admin}}\n"
    "  outbound:\n"
    "    - {port: 10001, tags: {hypha.io/service: backend}}\n"
    "    - {port: 10003, tags: {hypha.io/service: api}}\n"
    "    - {port: 10005, tags: {hypha.io/service: g}}\n"
    "---\n"
    "type: Dataplane\n"
    "mesh: default\n"
    "name: backend-1\n"
    "networking:\n"
    "  address: 10.0.0.2\n"
    "  inbound:\n"
    "    - {port: 20001, tags: {hypha.io/service: backend, hypha.io/protocol: http}}\n"
    "    - {port: 20002, tags: {hypha.io/service: backend-v3, hypha.io/protocol: http}}\n"
    "    - {port: 20003, tags: {hypha.io/service: g, hypha.io/protocol: grpc}}\n";

static const Hypha__V1__DpHttpRoute *route_n(const Hypha__V1__DpOutbound *o, size_t i)
{
    assert_true(i < o->n_http_routes);
    return o->http_routes[i];
}

static void assert_match(const Hypha__V1__DpHttpRoute *r, const char *type, const char *path)
{
    assert_int_equal(r->n_matches, 1);
    if (type) {
        assert_string_equal(r->matches[0]->path_type, type);
        assert_string_equal(r->matches[0]->path, path);
    } else {
        assert_null(r->matches[0]->path_type);
    }
}

static Hypha__V1__DpOutbound *outbound_or_null(const Hypha__V1__DpConfig *c, const char *service)
{
    for (size_t i = 0; i < c->n_outbounds; i++)
        if (!strcmp(c->outbounds[i]->service, service))
            return c->outbounds[i];
    return NULL;
}

/* MeshHTTPRoute as Kuma's docs merge and order it ("MeshHTTPRoute":
 * rules of several policies with equal matches merge, the more specific
 * policy last; routes in the Gateway API's precedence behind Kuma's
 * catch-all), and MeshTCPRoute's split ("MeshTCPRoute": traffic split). */
static void test_l7_routes(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", l7_apps);
    PUT(f->s, "global",
        "type: MeshHTTPRoute\n"
        "mesh: default\n"
        "name: route-a\n"
        "spec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      rules:\n"
        "        - matches: [{path: {type: PathPrefix, value: /api}}]\n"
        "          default:\n"
        "            filters:\n"
        "              - type: RequestHeaderModifier\n"
        "                requestHeaderModifier: {set: [{name: x-a, value: '1'}], remove: [x-z]}\n"
        "            backendRefs:\n"
        "              - {kind: MeshService, name: backend-v2, weight: 10}\n"
        "              - {kind: MeshService, name: backend, weight: 90}\n"
        "        - matches: [{headers: [{name: x-h, value: v}]}]\n"
        "          default:\n"
        "            filters:\n"
        "              - type: ResponseHeaderModifier\n"
        "                responseHeaderModifier: {add: [{name: x-b, value: '2'}]}\n"
        "        - matches: [{path: {type: RegularExpression, value: '/r.*'}}]\n"
        "          default:\n"
        "            filters:\n"
        "              - type: RequestMirror\n"
        "                requestMirror:\n"
        "                  backendRef: {kind: MeshService, name: shadow}\n"
        "                  percentage: 25\n"
        "        - matches: [{path: {type: PathPrefix, value: /api/v2}, method: GET,\n"
        "                     queryParams: [{type: Exact, name: q, value: '1'}]}]\n"
        "          default:\n"
        "            filters:\n"
        "              - type: URLRewrite\n"
        "                urlRewrite:\n"
        "                  hostname: api.example.com\n"
        "                  path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}\n"
        "        - matches: [{path: {type: Exact, value: /exact}}]\n"
        "          default:\n"
        "            filters:\n"
        "              - type: RequestRedirect\n"
        "                requestRedirect: {scheme: https, port: 8443}\n"
        "---\n"
        "type: MeshHTTPRoute\n"
        "mesh: default\n"
        "name: route-b\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      rules:\n"
        "        - matches: [{path: {type: PathPrefix, value: /api}}]\n"
        "          default:\n"
        "            backendRefs: [{kind: MeshService, name: backend-v3}]\n"
        "---\n"
        "type: MeshTCPRoute\n"
        "mesh: default\n"
        "name: tcp-split\n"
        "spec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: api}\n"
        "      rules:\n"
        "        - default:\n"
        "            backendRefs:\n"
        "              - {kind: MeshService, name: api}\n"
        "              - {kind: MeshServiceSubset, name: api-v2, tags: {version: v2}, weight: 3}\n"
        "---\n"
        "type: MeshTCPRoute\n"
        "mesh: default\n"
        "name: tcp-under-http\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      rules: [{default: {backendRefs: [{kind: MeshService, name: tcp-only}]}}]\n"
        "---\n"
        "type: MeshHTTPRoute\n"
        "mesh: default\n"
        "name: http-on-tcp\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: api}\n"
        "      rules:\n"
        "        - matches: [{path: {type: PathPrefix, value: /x}}]\n"
        "          default: {backendRefs: [{kind: MeshService, name: http-only}]}\n"
        "---\n"
        "type: MeshRetry\n"
        "mesh: default\n"
        "name: retry-v3\n"
        "spec:\n"
        "  to: [{targetRef: {kind: MeshService, name: backend-v3}, default: {http: {numRetries: "
        "7}}}]\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_int_equal(o->n_http_routes, 6);
    /* Exact, the longer prefix, the shorter, Kuma's catch-all, the regex,
     * no path */
    const Hypha__V1__DpHttpRoute *r = route_n(o, 0);
    assert_match(r, "Exact", "/exact");
    assert_string_equal(r->name, "MeshHTTPRoute/route-a to[0].rules[4]");
    assert_int_equal(r->n_filters, 1);
    assert_string_equal(r->filters[0]->type, "RequestRedirect");
    assert_string_equal(r->filters[0]->request_redirect->scheme, "https");
    assert_int_equal(r->filters[0]->request_redirect->port, 8443);
    assert_int_equal(r->filters[0]->request_redirect->status_code, 302); /* Kuma's default */
    assert_int_equal(r->n_backends, 0);

    r = route_n(o, 1);
    assert_match(r, "PathPrefix", "/api/v2");
    assert_string_equal(r->matches[0]->method, "GET");
    assert_int_equal(r->matches[0]->n_query_params, 1);
    assert_string_equal(r->matches[0]->query_params[0]->type, "Exact");
    assert_string_equal(r->matches[0]->query_params[0]->name, "q");
    assert_string_equal(r->filters[0]->type, "URLRewrite");
    assert_string_equal(r->filters[0]->url_rewrite->hostname, "api.example.com");
    assert_string_equal(r->filters[0]->url_rewrite->path_type, "ReplacePrefixMatch");
    assert_string_equal(r->filters[0]->url_rewrite->path, "/v2");

    /* route-b's rule has the same matches: merged over route-a's, its
     * backendRefs replace, route-a's filters stay */
    r = route_n(o, 2);
    assert_match(r, "PathPrefix", "/api");
    assert_string_equal(r->name, "MeshHTTPRoute/route-b to[0].rules[0]");
    assert_int_equal(r->n_filters, 1);
    const Hypha__V1__DpHeaderModifier *m = r->filters[0]->request_header_modifier;
    assert_string_equal(m->set[0]->name, "x-a");
    assert_string_equal(m->set[0]->value, "1");
    assert_string_equal(m->remove[0], "x-z");
    assert_int_equal(r->n_backends, 1);
    assert_string_equal(r->backends[0]->service, "backend-v3");
    assert_int_equal(r->backends[0]->weight, 1); /* Kuma's default weight */

    r = route_n(o, 3); /* the catch-all to the service itself */
    assert_match(r, "PathPrefix", "/");
    assert_null(r->name);
    assert_int_equal(r->n_backends, 0);
    assert_int_equal(r->n_filters, 0);

    r = route_n(o, 4);
    assert_match(r, "RegularExpression", "/r.*");
    assert_string_equal(r->filters[0]->request_mirror->backend->service, "shadow");
    assert_int_equal(r->filters[0]->request_mirror->per_million, 250000);

    r = route_n(o, 5);
    assert_match(r, NULL, NULL);
    assert_string_equal(r->matches[0]->headers[0]->type, "Exact");
    assert_string_equal(r->matches[0]->headers[0]->name, "x-h");
    assert_string_equal(r->filters[0]->response_header_modifier->add[0]->name, "x-b");

    /* MeshTCPRoute: the split, weights as written (1 when left out) */
    o = outbound(c, "api");
    assert_int_equal(o->n_http_routes, 0);
    assert_int_equal(o->n_tcp_backends, 2);
    assert_string_equal(o->tcp_backends[0]->service, "api");
    assert_int_equal(o->tcp_backends[0]->weight, 1);
    assert_string_equal(o->tcp_backends[1]->service, "api-v2");
    assert_int_equal(o->tcp_backends[1]->weight, 3);
    assert_int_equal(o->tcp_backends[0]->n_tags, 0); /* a MeshServiceSubset keeps its tags */
    assert_int_equal(o->tcp_backends[1]->n_tags, 1);
    assert_string_equal(o->tcp_backends[1]->tags[0]->key, "version");
    assert_string_equal(o->tcp_backends[1]->tags[0]->value, "v2");
    assert_int_equal(outbound(c, "g")->n_http_routes, 0); /* no route names g */

    /* backend-only outbounds: port 0, endpoints, SNI, protocol, their own
     * to-policies; backend-v2 is no one's backend once route-b replaced it */
    o = outbound(c, "backend-v3");
    assert_true(o->has_port);
    assert_int_equal(o->port, 0);
    assert_string_equal(o->sni, "backend-v3.default.mesh");
    assert_string_equal(o->protocol, "http");
    assert_int_equal(o->n_endpoints, 1);
    assert_endpoint(o, "backend-1", "10.0.0.2", 20002, "east", 0);
    assert_int_equal(o->http_retry->num_retries, 7);
    assert_int_equal(o->n_http_routes, 0);
    assert_int_equal(outbound(c, "shadow")->port, 0);
    assert_int_equal(outbound(c, "api-v2")->port, 0);
    assert_null(outbound_or_null(c, "backend-v2"));
    /* Kuma: an HTTP route on a TCP service does not apply, and a TCP route
     * on a service an HTTP route takes is ignored */
    assert_int_equal(outbound(c, "backend")->n_tcp_backends, 0);
    assert_null(outbound_or_null(c, "tcp-only"));
    assert_null(outbound_or_null(c, "http-only"));
    assert_int_equal(c->n_outbounds, 6);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* MeshRetry http/grpc, MeshTimeout http (to, from, rules),
 * MeshCircuitBreaker request limits and outlier detection,
 * MeshLoadBalancingStrategy hash policies, MeshHealthCheck http/grpc by
 * the service's protocol (Kuma's docs' examples for each). */
static void test_l7_outbound_policies(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", l7_apps);
    PUT(f->s, "global",
        "type: MeshRetry\n"
        "mesh: default\n"
        "name: r\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default:\n"
        "        http:\n"
        "          numRetries: 3\n"
        "          perTryTimeout: 2s\n"
        "          backOff: {baseInterval: 10ms, maxInterval: 1s}\n"
        "          retryOn: [5xx, '503', HttpMethodGet]\n"
        "          retriableRequestHeaders: [{type: Exact, name: x-retry, value: 'yes'}]\n"
        "          retriableResponseHeaders: [{type: Present, name: x-again}]\n"
        "        grpc: {numRetries: 2, retryOn: [Unavailable]}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: t\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default: {http: {requestTimeout: 5s, streamIdleTimeout: 1m, maxStreamDuration: "
        "1h}}\n"
        "  from:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {connectionTimeout: 7s, idleTimeout: 90s, http: {requestTimeout: 3s, "
        "streamIdleTimeout: 20s, requestHeadersTimeout: 4s}}\n"
        "---\n"
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: t-rules\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  rules: [{default: {idleTimeout: 45s, http: {streamIdleTimeout: 10s, "
        "requestHeadersTimeout: 500ms}}}]\n"
        "---\n"
        "type: MeshCircuitBreaker\n"
        "mesh: default\n"
        "name: cb\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default:\n"
        "        connectionLimits: {maxRequests: 10, maxRetries: 2}\n"
        "        outlierDetection:\n"
        "          interval: 5s\n"
        "          baseEjectionTime: 30s\n"
        "          maxEjectionPercent: 20\n"
        "          splitExternalAndLocalErrors: true\n"
        "          detectors:\n"
        "            totalFailures: {consecutive: 5}\n"
        "            gatewayFailures: {consecutive: 3}\n"
        "            localOriginFailures: {consecutive: 4}\n"
        "    - targetRef: {kind: MeshService, name: api}\n"
        "      default: {outlierDetection: {disabled: true, interval: 5s}}\n"
        "---\n"
        "type: MeshLoadBalancingStrategy\n"
        "mesh: default\n"
        "name: lb\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      default:\n"
        "        loadBalancer:\n"
        "          type: RingHash\n"
        "          ringHash:\n"
        "            hashPolicies:\n"
        "              - {type: Header, header: {name: x-user}}\n"
        "              - {type: Connection, connection: {sourceIP: true}, terminal: true}\n"
        "              - {type: QueryParameter, queryParameter: {name: q}}\n"
        "              - {type: Cookie, cookie: {name: c}}\n"
        "              - {type: FilterState, filterState: {key: k}}\n"
        "    - targetRef: {kind: MeshService, name: g}\n"
        "      default:\n"
        "        loadBalancer: {type: Maglev, maglev: {hashPolicies: [{type: SourceIP}]}}\n"
        "---\n"
        "type: MeshHealthCheck\n"
        "mesh: default\n"
        "name: hc\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default:\n"
        "        interval: 10s\n"
        "        http:\n"
        "          path: /health\n"
        "          expectedStatuses: [200, 204]\n"
        "          requestHeadersToAdd:\n"
        "            set: [{name: x-check, value: mesh}]\n"
        "            add: [{name: x-a, value: '1'}, {name: x-a, value: '2'}]\n"
        "        grpc: {serviceName: svc.Health, authority: health.local}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpOutbound *o = outbound(c, "backend");
    assert_string_equal(o->protocol, "http");
    const Hypha__V1__DpHttpRetry *hr = o->http_retry;
    assert_non_null(hr);
    assert_int_equal(hr->num_retries, 3);
    assert_duration(hr->per_try_timeout, 2, 0);
    assert_duration(hr->base_interval, 0, 10000000);
    assert_duration(hr->max_interval, 1, 0);
    assert_int_equal(hr->n_retry_on, 2);
    assert_string_equal(hr->retry_on[0], "5xx");
    assert_string_equal(hr->retry_on[1], "HttpMethodGet");
    assert_int_equal(hr->n_retriable_status_codes, 1);
    assert_int_equal(hr->retriable_status_codes[0], 503);
    assert_string_equal(hr->retriable_request_headers[0]->name, "x-retry");
    assert_string_equal(hr->retriable_request_headers[0]->value, "yes");
    assert_string_equal(hr->retriable_response_headers[0]->type, "Present");
    assert_int_equal(o->grpc_retry->num_retries, 2);
    assert_string_equal(o->grpc_retry->retry_on[0], "Unavailable");

    assert_duration(o->http_timeouts->request_timeout, 5, 0);
    assert_duration(o->http_timeouts->stream_idle_timeout, 60, 0);
    assert_duration(o->http_timeouts->max_stream_duration, 3600, 0);

    assert_int_equal(o->max_requests, 10);
    assert_int_equal(o->max_retries, 2);
    const Hypha__V1__DpOutlier *od = o->outlier;
    assert_non_null(od);
    assert_duration(od->interval, 5, 0);
    assert_duration(od->base_ejection_time, 30, 0);
    assert_int_equal(od->max_ejection_percent, 20);
    assert_true(od->split_external_and_local_errors);
    assert_int_equal(od->consecutive_5xx, 5);
    assert_int_equal(od->consecutive_gateway, 3);
    assert_int_equal(od->consecutive_local_origin, 4);
    assert_null(outbound(c, "api")->outlier); /* disabled */

    assert_string_equal(o->lb, "RingHash");
    assert_int_equal(o->n_hash_policies, 4); /* FilterState has no counterpart */
    assert_string_equal(o->hash_policies[0]->type, "Header");
    assert_string_equal(o->hash_policies[0]->name, "x-user");
    assert_string_equal(o->hash_policies[1]->type, "SourceIP");
    assert_true(o->hash_policies[1]->terminal);
    assert_string_equal(o->hash_policies[2]->type, "QueryParameter");
    assert_string_equal(o->hash_policies[2]->name, "q");
    assert_string_equal(o->hash_policies[3]->type, "Cookie");
    assert_string_equal(o->hash_policies[3]->name, "c");
    assert_string_equal(outbound(c, "g")->lb, "Maglev");
    assert_string_equal(outbound(c, "g")->hash_policies[0]->type, "SourceIP");

    /* health checks by protocol: http for backend, grpc for g, TCP for api */
    assert_string_equal(o->health_http_path, "/health");
    assert_int_equal(o->n_health_expected_statuses, 2);
    assert_int_equal(o->health_expected_statuses[1], 204);
    assert_int_equal(o->health_http_headers->n_set, 1); /* requestHeadersToAdd */
    assert_string_equal(o->health_http_headers->set[0]->name, "x-check");
    assert_string_equal(o->health_http_headers->set[0]->value, "mesh");
    assert_int_equal(o->health_http_headers->n_add, 2);
    assert_string_equal(o->health_http_headers->add[1]->value, "2");
    assert_false(o->has_health_grpc);
    const Hypha__V1__DpOutbound *g = outbound(c, "g");
    assert_null(g->health_http_path);
    assert_null(g->health_http_headers);
    assert_true(g->health_grpc);
    assert_string_equal(g->health_grpc_service, "svc.Health");
    assert_string_equal(g->health_grpc_authority, "health.local");
    assert_null(outbound(c, "api")->health_http_path);
    assert_false(outbound(c, "api")->has_health_grpc);
    assert_duration(outbound(c, "api")->health_interval, 10, 0);

    /* inbound: from, then rules over it */
    const Hypha__V1__DpInbound *in = inbound(c, 20001);
    assert_duration(in->http_timeouts->request_timeout, 3, 0);
    assert_duration(in->http_timeouts->stream_idle_timeout, 10, 0);
    assert_duration(in->http_timeouts->request_headers_timeout, 0, 500000000);
    assert_duration(in->connect_timeout, 7, 0);    /* from's, rules leaving it */
    assert_duration(in->idle_timeout, 45, 0);      /* rules' over from's */
    assert_null(inbound(c, 20002)->http_timeouts); /* web-admin is not web */
    assert_null(inbound(c, 20002)->connect_timeout);
    assert_null(inbound(c, 20002)->idle_timeout);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static const char *tag_of(const Hypha__V1__DpCallerFaults *x, const char *key)
{
    for (size_t i = 0; i < x->n_tags; i++)
        if (!strcmp(x->tags[i]->key, key))
            return x->tags[i]->value;
    return NULL;
}

/* MeshFaultInjection and MeshRateLimit at an inbound (Kuma's docs: "Mesh
 * Fault Injection" example, "Mesh Rate Limit" with a Mesh-wide limit and
 * a per-service override). */
static void test_l7_inbound_policies(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", l7_apps);
    PUT(f->s, "global",
        "type: MeshFaultInjection\n"
        "mesh: default\n"
        "name: faults\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  from:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default: {http: [{abort: {httpStatus: 500, percentage: '2.5'}}]}\n"
        "    - targetRef: {kind: MeshSubset, tags: {kuma.io/service: frontend, version: v1}}\n"
        "      default:\n"
        "        http:\n"
        "          - delay: {value: 5s, percentage: 50}\n"
        "          - responseBandwidth: {limit: 8kbps, percentage: 100}\n"
        "---\n"
        "type: MeshRateLimit\n"
        "mesh: default\n"
        "name: limits\n"
        "spec:\n"
        "  targetRef: {kind: MeshService, name: web}\n"
        "  from:\n"
        "    - targetRef: {kind: Mesh}\n"
        "      default:\n"
        "        local:\n"
        "          http:\n"
        "            requestRate: {num: 100, interval: 1s}\n"
        "            onRateLimit: {status: 423, headers: {set: [{name: x-limited, value: "
        "'true'}]}}\n"
        "    - targetRef: {kind: MeshService, name: frontend}\n"
        "      default: {local: {tcp: {connectionRate: {num: 5, interval: 10s}}}}\n"
        "    - targetRef: {kind: MeshService, name: batch}\n"
        "      default: {local: {http: {disabled: true}}}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    const Hypha__V1__DpInbound *in = inbound(c, 20001);
    assert_int_equal(in->n_faults, 2);
    const Hypha__V1__DpCallerFaults *x = in->faults[0];
    assert_int_equal(x->n_tags, 0);
    assert_string_equal(x->origin, "MeshFaultInjection/faults from[0]");
    assert_int_equal(x->n_http, 1);
    assert_int_equal(x->http[0]->abort_status, 500);
    assert_int_equal(x->http[0]->abort_per_million, 25000);
    x = in->faults[1];
    assert_string_equal(tag_of(x, "hypha.io/service"), "frontend");
    assert_string_equal(tag_of(x, "version"), "v1");
    assert_int_equal(x->n_http, 2);
    assert_int_equal(x->http[0]->abort_status, 0);
    assert_duration(x->http[0]->delay, 5, 0);
    assert_int_equal(x->http[0]->delay_per_million, 500000);
    assert_int_equal(x->http[1]->bandwidth_bytes_per_s, 8192); /* 8 kbps, as Envoy reads Kuma's */
    assert_int_equal(x->http[1]->bandwidth_per_million, 1000000);

    assert_int_equal(in->n_rate_limits, 3);
    const Hypha__V1__DpCallerRateLimit *l = in->rate_limits[0];
    assert_int_equal(l->n_tags, 0);
    assert_int_equal(l->http_requests, 100);
    assert_duration(l->http_interval, 1, 0);
    assert_int_equal(l->on_limit_status, 423);
    assert_string_equal(l->on_limit_headers->set[0]->name, "x-limited");
    assert_int_equal(l->tcp_connections, 0);
    /* frontend: the Mesh-wide HTTP limit (it covers frontend) and its own
     * TCP limit, since the sidecar applies the last entry a caller matches */
    l = in->rate_limits[1];
    assert_string_equal(l->tags[0]->value, "frontend");
    assert_int_equal(l->http_requests, 100);
    assert_int_equal(l->tcp_connections, 5);
    assert_duration(l->tcp_interval, 10, 0);
    assert_string_equal(l->origin, "MeshRateLimit/limits from[1]");
    l = in->rate_limits[2]; /* batch: HTTP limit disabled, frontend's TCP limit not its own */
    assert_int_equal(l->http_requests, 0);
    assert_int_equal(l->tcp_connections, 0);

    const Hypha__V1__DpInbound *admin = inbound(c, 20002);
    assert_int_equal(admin->n_faults, 0);
    assert_int_equal(admin->n_rate_limits, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* A `to` policy on a service that is only a route's backend reaches the
 * sidecars routing to it: their backend-only outbound carries it. */
/* A caller's outbound turns http when its service's first instance (or a
 * ZoneIngress offering it) says so, and back when they stop agreeing:
 * Dataplane and ZoneIngress changes reach the Outbounds of the sidecars
 * calling a service whose protocol they turn, and only those. */
static void expect_proto_impact(struct fx *f, const char *origin, const char *put,
                                const unsigned want[2])
{
    struct hy_zone_dp_round *old = NULL, *now = NULL, *live = NULL;
    assert_int_equal(hy_zone_dp_round_load(f->s, &old), 0);
    assert_int_equal(hy_zone_dp_round_load(f->s, &live), 0);
    uint64_t rev = hy_store_revision(f->s);
    PUT(f->s, origin, put);
    struct hy_store_changes ch = {0};
    assert_int_equal(hy_store_changes(f->s, rev, 0, &ch), 0);
    assert_int_equal(hy_zone_dp_round_load(f->s, &now), 0);
    struct hy_zone_dp_impact *im = NULL, *applied = NULL;
    assert_int_equal(hy_zone_dp_impact_new(old, now, &ch, &im), 0);
    assert_int_equal(hy_zone_dp_round_apply(live, f->s, &ch, &applied), 0);
    static const char *const names[] = {"caller-1", "bystander-1"};
    for (size_t i = 0; i < 2; i++) {
        struct hy_resource *dp = NULL;
        assert_int_equal(hy_store_get(f->s, "Dataplane", "default", names[i], &dp), 0);
        unsigned got = hy_zone_dp_impact_on(im, dp);
        if (got != want[i])
            fail_msg("impact on %s is %u, want %u", names[i], got, want[i]);
        assert_int_equal(hy_zone_dp_impact_on(applied, dp), got);
        char in0[20], out0[20], in1[20], out1[20];
        own_versions(old, dp, in0, out0);
        own_versions(now, dp, in1, out1);
        if (strcmp(out0, out1))
            assert_true(got & HY_ZONE_DP_OUTBOUNDS);
        hy_resource_free(dp);
    }
    hy_zone_dp_impact_free(applied);
    hy_zone_dp_impact_free(im);
    hy_store_changes_fini(&ch);
    hy_zone_dp_round_free(old);
    hy_zone_dp_round_free(now);
    hy_zone_dp_round_free(live);
}

static void test_impact_protocol(void **state)
{
    struct fx *f = *state;
    const unsigned OUT = HY_ZONE_DP_OUTBOUNDS;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east",
        "type: Dataplane\nmesh: default\nname: caller-1\nnetworking:\n  address: 10.0.2.1\n"
        "  inbound: [{port: 1001, tags: {hypha.io/service: caller}}]\n"
        "  outbound: [{port: 2001, tags: {hypha.io/service: api}}]\n"
        "---\n"
        "type: Dataplane\nmesh: default\nname: bystander-1\nnetworking:\n  address: 10.0.2.2\n"
        "  inbound: [{port: 1002, tags: {hypha.io/service: bystander}}]\n"
        "  outbound: [{port: 2002, tags: {hypha.io/service: other}}]\n");
    /* api's first instance, http: the caller's outbound turns http */
    expect_proto_impact(f, "east",
                        "type: Dataplane\nmesh: default\nname: api-1\nnetworking:\n"
                        "  address: 10.0.2.3\n"
                        "  inbound: [{port: 1003, tags: {hypha.io/service: api, "
                        "hypha.io/protocol: http}}]\n",
                        (const unsigned[]){OUT, 0});
    /* a second http instance: still http, nobody's own parts */
    expect_proto_impact(f, "east",
                        "type: Dataplane\nmesh: default\nname: api-2\nnetworking:\n"
                        "  address: 10.0.2.4\n"
                        "  inbound: [{port: 1003, tags: {hypha.io/service: api, "
                        "hypha.io/protocol: http}}]\n",
                        (const unsigned[]){0, 0});
    /* a tcp one: they disagree, the caller goes back to tcp */
    expect_proto_impact(f, "east",
                        "type: Dataplane\nmesh: default\nname: api-3\nnetworking:\n"
                        "  address: 10.0.2.5\n"
                        "  inbound: [{port: 1003, tags: {hypha.io/service: api}}]\n",
                        (const unsigned[]){OUT, 0});
    /* another zone's ingress offering other as http: the bystander's */
    expect_proto_impact(f, "west",
                        "type: ZoneIngress\nname: west-ingress\nzone: west\nnetworking:\n"
                        "  address: 10.0.9.1\n  port: 10001\n"
                        "availableServices:\n"
                        "  - {mesh: default, tags: {hypha.io/service: other, "
                        "hypha.io/protocol: http}, instances: 1}\n",
                        (const unsigned[]){0, OUT});
}

static void test_impact_backend_only(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", mesh_default);
    PUT(f->s, "east", l7_apps);
    PUT(f->s, "global",
        "type: MeshHTTPRoute\n"
        "mesh: default\n"
        "name: split\n"
        "spec:\n"
        "  to:\n"
        "    - targetRef: {kind: MeshService, name: backend}\n"
        "      rules:\n"
        "        - matches: [{path: {type: PathPrefix, value: /}}]\n"
        "          default: {backendRefs: [{kind: MeshService, name: canary}]}\n");
    struct hy_zone_dp_round *old = NULL, *now = NULL;
    assert_int_equal(hy_zone_dp_round_load(f->s, &old), 0);
    uint64_t rev = hy_store_revision(f->s);
    PUT(f->s, "global",
        "type: MeshTimeout\n"
        "mesh: default\n"
        "name: canary-timeout\n"
        "spec:\n"
        "  to: [{targetRef: {kind: MeshService, name: canary}, default: {http: {requestTimeout: "
        "2s}}}]\n");
    struct hy_store_changes ch = {0};
    assert_int_equal(hy_store_changes(f->s, rev, 0, &ch), 0);
    assert_int_equal(hy_zone_dp_round_load(f->s, &now), 0);
    struct hy_zone_dp_impact *im = NULL;
    assert_int_equal(hy_zone_dp_impact_new(old, now, &ch, &im), 0);
    struct hy_resource *web = NULL, *backend = NULL;
    assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "web-1", &web), 0);
    assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "backend-1", &backend), 0);
    assert_int_equal(hy_zone_dp_impact_on(im, web), HY_ZONE_DP_OUTBOUNDS);
    assert_int_equal(hy_zone_dp_impact_on(im, backend), 0); /* routes nothing to canary */
    hy_zone_dp_impact_free(im);

    /* the same through a round brought up to date */
    assert_int_equal(hy_zone_dp_round_apply(old, f->s, &ch, &im), 0);
    assert_int_equal(hy_zone_dp_impact_on(im, web), HY_ZONE_DP_OUTBOUNDS);
    assert_int_equal(hy_zone_dp_impact_on(im, backend), 0);
    hy_zone_dp_impact_free(im);

    /* and apply --dry-run lists it: web-1's backend canary, nothing of
     * backend-1 */
    struct hy_cp_api api = {.store = f->s};
    struct hy_resource *t = NULL;
    assert_int_equal(hy_store_get(f->s, "MeshTimeout", "default", "canary-timeout", &t), 0);
    Hypha__V1__MeshTimeout *ts = (Hypha__V1__MeshTimeout *)t->spec;
    ts->to[0]->default_->http->request_timeout->seconds = 9;
    const struct hy_resource *writes[] = {t};
    struct hy_buf out = {0};
    size_t untried = 0;
    assert_int_equal(hy_cp_inspect_changes(&api, writes, 1, &out, &untried), 0);
    assert_non_null(strstr(out.data, "\"dataplane\":\"web-1\""));
    /* the line is a JSON string in the answer: its quotes escaped */
    assert_non_null(strstr(out.data, "backend canary MeshTimeout: now {\\\"http\\\":{"));
    assert_non_null(strstr(out.data, "\\\"9s\\\"}} (was {"));
    assert_null(strstr(out.data, "backend-1"));
    hy_buf_fini(&out);
    hy_resource_free(t);

    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_duration(outbound(c, "canary")->http_timeouts->request_timeout, 2, 0);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    hy_store_changes_fini(&ch);
    hy_resource_free(web);
    hy_resource_free(backend);
    hy_zone_dp_round_free(old);
    hy_zone_dp_round_free(now);
}

/* MeshMetric: the sidecar's Prometheus endpoint on its Dataplane's
 * address and the apps it scrapes, Kuma's defaults resolved; none without
 * a policy. It rides in the Inbounds part, so the config's version moves
 * with it. */
static void test_metrics(void **state)
{
    struct fx *f = *state;
    world(f->s);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_null(c->metrics);
    char *before = strdup(c->version);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    PUT(f->s, "global",
        "type: MeshMetric\nmesh: default\nname: mm\nspec:\n"
        "  targetRef: {kind: MeshService, name: web}\n  default:\n"
        "    applications: [{name: app, port: 8888}, {port: 9999, address: 10.0.0.7, path: /x}]\n"
        "    backends:\n      - {type: OpenTelemetry, openTelemetry: {endpoint: 'otel:4317'}}\n"
        "      - {type: Prometheus, prometheus: {path: /stats}}\n"
        "      - {type: Prometheus, prometheus: {port: 5671}}\n");
    c = config(f->s, "default", "web-1");
    assert_non_null(c->metrics);
    assert_string_not_equal(c->version, before);
    assert_int_equal(c->metrics->port, 5670); /* the first Prometheus backend, Kuma's default */
    assert_string_equal(c->metrics->path, "/stats");
    assert_string_equal(c->metrics->address, "10.0.0.1");
    assert_string_equal(c->metrics->origin, "MeshMetric/mm default");
    assert_int_equal(c->metrics->n_apps, 2);
    assert_string_equal(c->metrics->apps[0]->name, "app");
    assert_string_equal(c->metrics->apps[0]->address, "127.0.0.1");
    assert_string_equal(c->metrics->apps[0]->path, "/metrics/prometheus");
    assert_string_equal(c->metrics->apps[1]->address, "10.0.0.7");
    assert_string_equal(c->metrics->apps[1]->path, "/x");
    free(before);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_inbounds),
        T(test_permissions),
        T(test_permission_selection),
        T(test_permission_per_inbound),
        T(test_deny_subset),
        T(test_local_endpoints),
        T(test_remote_endpoints),
        T(test_ingress_routes),
        T(test_timeouts),
        T(test_retry_and_breaker),
        T(test_load_balancer),
        T(test_health_checks),
        T(test_locality),
        T(test_version),
        T(test_deleted),
        T(test_meshes_apart),
        T(test_no_mesh),
        T(test_invalid_inputs),
        T(test_selection_kinds),
        T(test_merge_order),
        T(test_round),
        T(test_impact),
        T(test_shared_parts),
        T(test_protocol),
        T(test_ingress_protocol),
        T(test_protocol_invalid),
        T(test_l7_routes),
        T(test_l7_outbound_policies),
        T(test_l7_inbound_policies),
        T(test_impact_backend_only),
        T(test_impact_protocol),
        T(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
