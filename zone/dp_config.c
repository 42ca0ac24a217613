/* What a sidecar is told: its inbounds with the MeshTrafficPermission
 * entries and rules it enforces on callers, its outbounds with the
 * endpoints of their services and what the policies that apply merge to
 * (MeshTimeout, MeshRetry, MeshCircuitBreaker, MeshLoadBalancingStrategy,
 * MeshHealthCheck; cp/policy.h orders and merges them as Kuma does), and
 * its certificate with the chain and trust bundle. Computed from the zone's store; the version
 * is a hash of the rest, so an unchanged config is not sent again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.pb-c.h"
#include "dataplane.pb-c.h"
#include "dp_server.h"
#include "error.h"
#include "policies.pb-c.h"
#include "permit.h"
#include "policy.h"
#include "sni.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static const char *tag(size_t n, Hypha__V1__Dataplane__Networking__Inbound__TagsEntry **t,
                       const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (t[i]->key && !strcmp(t[i]->key, key))
            return t[i]->value;
    return NULL;
}

const char *hy_zone_dp_service_of(const Hypha__V1__Dataplane__Networking__Inbound *in)
{
    return tag(in->n_tags, in->tags, HY_TAG_SERVICE);
}

static int push_unique(char ***v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*v)[i], s))
            return 0;
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return HY_ENOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return HY_ENOMEM;
    ++*n;
    return 0;
}

static int push_tag_uri(char ***v, size_t *n, const char *key, const char *value)
{
    char uri[HY_ZONE_DP_URI_MAX];
    if (!hy_permit_tag_uri(key, value, uri, sizeof(uri)))
        return HY_ETOOBIG; /* keys and values are checked: cannot happen */
    return push_unique(v, n, uri);
}

int hy_zone_dp_identity_uris(const struct hy_resource *dp, const char *zone, char ***out, size_t *n)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    size_t nin = d->networking ? d->networking->n_inbound : 0;
    char uri[HY_ZONE_DP_URI_MAX];
    int rc = 0;
    *out = NULL;
    *n = 0;
    for (size_t i = 0; rc == 0 && i < nin; i++) {
        snprintf(uri, sizeof(uri), "spiffe://%s/%s", S(dp->meta->mesh),
                 S(hy_zone_dp_service_of(d->networking->inbound[i])));
        rc = push_unique(out, n, uri);
    }
    for (size_t i = 0; rc == 0 && i < nin; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        bool has_zone = false;
        for (size_t k = 0; rc == 0 && k < in->n_tags; k++) {
            has_zone = has_zone || !strcmp(S(in->tags[k]->key), HY_TAG_ZONE);
            rc = push_tag_uri(out, n, S(in->tags[k]->key), S(in->tags[k]->value));
        }
        if (rc == 0 && !has_zone && zone)
            rc = push_tag_uri(out, n, HY_TAG_ZONE, zone);
    }
    if (rc < 0) {
        for (size_t i = 0; i < *n; i++)
            free((*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static Hypha__V1__Duration *dur(const Hypha__V1__Duration *d)
{
    Hypha__V1__Duration *c = malloc(sizeof(*c));
    if (c) {
        hypha__v1__duration__init(c);
        c->has_seconds = c->has_nanos = 1;
        c->seconds = d->seconds;
        c->nanos = d->nanos;
    }
    return c;
}

static int set_dur(Hypha__V1__Duration **dst, const Hypha__V1__Duration *src)
{
    if (!src)
        return 0;
    if (*dst)
        protobuf_c_message_free_unpacked(&(*dst)->base, NULL);
    return (*dst = dur(src)) ? 0 : HY_ENOMEM;
}

/* ----- a round: what every config computed after one change reads ----- */

struct hy_zone_dp_round {
    struct hy_policy_world world;    /* every policy */
    struct hy_resource **dps, **zis; /* every Dataplane, every ZoneIngress; owned */
    size_t ndps, nzis, capdps, capzis;
};

struct keep {
    struct hy_resource ***v;
    size_t *n, *cap;
};

static int keep_one(void *ud, struct hy_resource *r, bool *take)
{
    struct keep *k = ud;
    if (*k->n == *k->cap) {
        size_t cap = *k->cap ? 2 * *k->cap : 64;
        struct hy_resource **v = realloc(*k->v, cap * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        *k->v = v;
        *k->cap = cap;
    }
    (*k->v)[(*k->n)++] = r;
    *take = true;
    return 0;
}

int hy_zone_dp_round_load(struct hy_store *s, struct hy_zone_dp_round **out)
{
    struct hy_zone_dp_round *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return HY_ENOMEM;
    struct keep dps = {&r->dps, &r->ndps, &r->capdps}, zis = {&r->zis, &r->nzis, &r->capzis};
    int rc = hy_policy_world_load(s, &r->world);
    if (rc == 0)
        rc = hy_store_each(s, "Dataplane", keep_one, &dps);
    if (rc == 0)
        rc = hy_store_each(s, "ZoneIngress", keep_one, &zis);
    if (rc < 0) {
        hy_zone_dp_round_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void hy_zone_dp_round_free(struct hy_zone_dp_round *r)
{
    if (!r)
        return;
    hy_policy_world_fini(&r->world);
    for (size_t i = 0; i < r->ndps; i++)
        hy_resource_free(r->dps[i]);
    for (size_t i = 0; i < r->nzis; i++)
        hy_resource_free(r->zis[i]);
    free(r->dps);
    free(r->zis);
    free(r);
}

/* The policies of each type that select the proxy (the engine's order). */
struct policies {
    struct hy_policy_set sel[HY_POLICY_NTYPES];
};

static void policies_fini(struct policies *p)
{
    hy_policy_sets_fini(p->sel);
}

static int policies_load(const struct hy_zone_dp_round *r, const struct hy_policy_proxy *proxy,
                         struct policies *p)
{
    return hy_policy_select_all(&r->world, proxy, p->sel);
}

/* MeshTrafficPermission at inbound i (cp/policy.h). */
static int inbound_permissions(const struct policies *p, size_t i, Hypha__V1__DpInbound *in)
{
    return hy_policy_inbound_permissions(&p->sel[HY_POLICY_MTP], i, in);
}

/* The merged `to` default of policy type t for destination service svc;
 * c->conf NULL when nothing applies. */
static int merged_to(const struct policies *p, int t, const char *svc, struct hy_policy_conf *c)
{
    struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, svc}};
    struct hy_policy_tags tags = {dest, 1};
    return hy_policy_merge(&p->sel[t], "to", SIZE_MAX, &tags, c);
}

#define EXCLUDED UINT32_MAX /* an endpoint's priority when failover leaves its zone out */

static bool listed_zone(char *const *zones, size_t n, const char *zone)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(zones[i], zone))
            return true;
    return false;
}

/* Priorities by zone (Kuma's localityAwareness): this zone's endpoints 0;
 * without failover rules every other zone 1; with rules, each rule whose
 * `from` includes this zone gives the zones it names (Any, Only,
 * AnyExcept; None stops) the next priority, and zones no rule names are
 * left out. disabled: every zone 0, no preference. */
static void zone_order(const struct hy_resource *dp, Hypha__V1__DpOutbound *o,
                       const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness *la)
{
    const char *own = S(dp->origin);
    const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness__CrossZone *cz = la->cross_zone;
    for (size_t k = 0; k < o->n_endpoints; k++) {
        Hypha__V1__DpEndpoint *e = o->endpoints[k];
        const char *z = S(e->zone);
        e->has_priority = 1;
        if (la->has_disabled && la->disabled) {
            e->priority = 0;
            continue;
        }
        if (!strcmp(z, own) || !z[0]) {
            e->priority = 0;
            continue;
        }
        if (!cz || !cz->n_failover) {
            e->priority = 1;
            continue;
        }
        e->priority = EXCLUDED;
        uint32_t level = 1;
        for (size_t f = 0; f < cz->n_failover; f++, level++) {
            const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness__CrossZone__Failover *fo =
                cz->failover[f];
            if (fo->from && !listed_zone(fo->from->zones, fo->from->n_zones, own)) {
                level--; /* not a rule for this zone */
                continue;
            }
            int type = fo->to && fo->to->has_type ? (int)fo->to->type : 0;
            bool named = fo->to && listed_zone(fo->to->zones, fo->to->n_zones, z);
            if (type ==
                HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOCALITY_AWARENESS__CROSS_ZONE__FAILOVER__TO__TYPE__None)
                break;
            if (type ==
                    HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOCALITY_AWARENESS__CROSS_ZONE__FAILOVER__TO__TYPE__Any ||
                (type ==
                     HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOCALITY_AWARENESS__CROSS_ZONE__FAILOVER__TO__TYPE__Only &&
                 named) ||
                (type ==
                     HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOCALITY_AWARENESS__CROSS_ZONE__FAILOVER__TO__TYPE__AnyExcept &&
                 !named)) {
                e->priority = level;
                break;
            }
        }
    }
}

/* What the sidecar enforces of each `to` policy, merged for the
 * outbound's service. Fields it does not enforce are named by the API's
 * warnings (cp_api.c) when the policy is written. */
static int apply_to_policies(const struct policies *p, const struct hy_resource *dp,
                             Hypha__V1__DpOutbound *o)
{
    struct hy_policy_conf c;
    int rc = merged_to(p, HY_POLICY_TIMEOUT, o->service, &c);
    if (rc == 0 && c.conf) {
        const Hypha__V1__MeshTimeout__Conf *t = (const void *)c.conf;
        if ((rc = set_dur(&o->connect_timeout, t->connection_timeout)) == 0)
            rc = set_dur(&o->idle_timeout, t->idle_timeout);
    }
    hy_policy_conf_fini(&c);
    if (rc == 0 && (rc = merged_to(p, HY_POLICY_RETRY, o->service, &c)) == 0 && c.conf) {
        const Hypha__V1__MeshRetry__Conf *r = (const void *)c.conf;
        if (r->tcp && r->tcp->has_max_connect_attempt) {
            o->has_max_connect_attempts = 1;
            o->max_connect_attempts = r->tcp->max_connect_attempt;
        }
    }
    hy_policy_conf_fini(&c);
    if (rc == 0 && (rc = merged_to(p, HY_POLICY_BREAKER, o->service, &c)) == 0 && c.conf) {
        const Hypha__V1__MeshCircuitBreaker__Conf *b = (const void *)c.conf;
        if (b->connection_limits && b->connection_limits->has_max_connections) {
            o->has_max_connections = 1;
            o->max_connections = b->connection_limits->max_connections;
        }
        /* a TCP proxy's pending requests are its connections not yet through
         * connect and handshake */
        if (b->connection_limits && b->connection_limits->has_max_pending_requests) {
            o->has_max_pending = 1;
            o->max_pending = b->connection_limits->max_pending_requests;
        }
    }
    hy_policy_conf_fini(&c);
    if (rc == 0 && (rc = merged_to(p, HY_POLICY_LB, o->service, &c)) == 0 && c.conf) {
        const Hypha__V1__MeshLoadBalancingStrategy__Conf *l = (const void *)c.conf;
        if (l->load_balancer && l->load_balancer->has_type) {
            const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                &hypha__v1__mesh_load_balancing_strategy__load_balancer__type__descriptor,
                l->load_balancer->type);
            free(o->lb);
            if (!(o->lb = v ? strdup(v->name) : NULL) && v)
                rc = HY_ENOMEM;
        }
        if (l->locality_awareness)
            zone_order(dp, o, l->locality_awareness);
    }
    hy_policy_conf_fini(&c);
    if (rc == 0 && (rc = merged_to(p, HY_POLICY_HEALTH, o->service, &c)) == 0 && c.conf) {
        const Hypha__V1__MeshHealthCheck__Conf *h = (const void *)c.conf;
        if (!(h->tcp && h->tcp->has_disabled && h->tcp->disabled)) {
            /* Kuma's default interval: a minute (and 15 s timeout, the sidecar's) */
            Hypha__V1__Duration minute = HYPHA__V1__DURATION__INIT;
            minute.seconds = 60;
            rc = set_dur(&o->health_interval, h->interval ? h->interval : &minute);
            if (rc == 0)
                rc = set_dur(&o->health_timeout, h->timeout);
            if (h->has_unhealthy_threshold) {
                o->has_unhealthy_threshold = 1;
                o->unhealthy_threshold = h->unhealthy_threshold;
            }
            if (h->has_healthy_threshold) {
                o->has_healthy_threshold = 1;
                o->healthy_threshold = h->healthy_threshold;
            }
        }
    }
    hy_policy_conf_fini(&c);
    return rc;
}

struct policy_walk {
    const struct hy_resource *dp;
    Hypha__V1__DpOutbound *o;
};

static Hypha__V1__DpEndpoint *new_endpoint(Hypha__V1__DpOutbound *o)
{
    Hypha__V1__DpEndpoint *e = malloc(sizeof(*e));
    Hypha__V1__DpEndpoint **v = realloc(o->endpoints, (o->n_endpoints + 1) * sizeof(*v));
    if (!e || !v) {
        free(e);
        if (v)
            o->endpoints = v;
        return NULL;
    }
    hypha__v1__dp_endpoint__init(e);
    o->endpoints = v;
    v[o->n_endpoints++] = e;
    return e;
}

/* Remote endpoints: other zones' ingresses that carry the outbound's
 * service in this mesh, priority 1 until zone_order says otherwise. */
static int add_remote(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)r->spec;
    const char *own = S(w->dp->origin);
    /* the zone is the one the global CP stored it under (the KDS session's),
     * never spec.zone: a zone could claim to be another there */
    const char *from = S(r->origin);
    (void)take;
    if (!from[0] || !strcmp(from, own) || !strcmp(from, "global") || !zi->networking)
        return 0;
    const Hypha__V1__ZoneIngress__Networking *n = zi->networking;
    const char *addr = n->advertised_address ? n->advertised_address : S(n->address);
    /* an ingress listening on every address must say which one to dial */
    if (!addr[0] || !strcmp(addr, "0.0.0.0") || !strcmp(addr, "::"))
        return 0;
    for (size_t i = 0; i < zi->n_available_services; i++) {
        const Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
        const char *svc = tag(as->n_tags, (void *)as->tags, HY_TAG_SERVICE);
        if (!svc || strcmp(svc, w->o->service) || strcmp(S(as->mesh), S(w->dp->meta->mesh)) ||
            (as->has_instances && as->instances == 0))
            continue;
        Hypha__V1__DpEndpoint *e = new_endpoint(w->o);
        if (!e)
            return HY_ENOMEM;
        e->address = strdup(addr);
        e->has_port = e->has_priority = 1;
        e->port = n->has_advertised_port ? n->advertised_port : n->port;
        e->zone = strdup(from);
        e->name = strdup(r->meta->name);
        e->priority = 1;
        break;
    }
    return 0;
}

/* Drops the endpoints zone_order left out. */
static void drop_excluded(Hypha__V1__DpOutbound *o)
{
    size_t k = 0;
    for (size_t i = 0; i < o->n_endpoints; i++) {
        if (o->endpoints[i]->has_priority && o->endpoints[i]->priority == EXCLUDED)
            protobuf_c_message_free_unpacked(&o->endpoints[i]->base, NULL);
        else
            o->endpoints[k++] = o->endpoints[i];
    }
    o->n_endpoints = k;
}

/* Endpoints: the inbounds of the mesh's other Dataplanes in this zone that
 * serve the outbound's service (priority 0). */
static int add_endpoints(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)r->spec;
    (void)take;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !d->networking ||
        (r->origin && strcmp(r->origin, S(w->dp->origin))))
        return 0;
    for (size_t i = 0; i < d->networking->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        const char *svc = hy_zone_dp_service_of(in);
        if (!svc || strcmp(svc, w->o->service) || !in->has_port)
            continue;
        Hypha__V1__DpEndpoint *e = new_endpoint(w->o);
        if (!e)
            return HY_ENOMEM;
        const char *addr = d->networking->advertised_address ? d->networking->advertised_address
                                                             : d->networking->address;
        e->address = strdup(S(addr));
        e->has_port = 1;
        e->port = in->port;
        e->zone = r->origin ? strdup(r->origin) : NULL;
        e->name = strdup(r->meta->name);
        e->has_priority = 1;
        e->priority = 0;
    }
    return 0;
}

int hy_zone_dp_version(const ProtobufCMessage *m, char **out)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return HY_ENOMEM;
    protobuf_c_message_pack(m, p);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    free(p);
    char v[32];
    snprintf(v, sizeof(v), "%016llx", (unsigned long long)h);
    return (*out = strdup(v)) ? 0 : HY_ENOMEM;
}

int hy_zone_dp_config_build(struct hy_store *s, const struct hy_resource *dp, const char *cert,
                            const char *chain, const char *bundle, Hypha__V1__DpConfig **out)
{
    struct hy_zone_dp_round *r;
    int rc = hy_zone_dp_round_load(s, &r);
    if (rc == 0)
        rc = hy_zone_dp_config_compute(r, dp, cert, chain, bundle, out);
    hy_zone_dp_round_free(r);
    return rc;
}

int hy_zone_dp_config_compute(const struct hy_zone_dp_round *round, const struct hy_resource *dp,
                              const char *cert, const char *chain, const char *bundle,
                              Hypha__V1__DpConfig **out)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    Hypha__V1__DpConfig *c = malloc(sizeof(*c));
    if (!c)
        return HY_ENOMEM;
    hypha__v1__dp_config__init(c);
    c->mesh = strdup(S(dp->meta->mesh));
    c->name = strdup(S(dp->meta->name));
    c->cert = strdup(S(cert));
    c->chain = strdup(S(chain));
    c->trust_bundle = strdup(S(bundle));
    int rc = c->mesh && c->name && c->cert && c->chain && c->trust_bundle ? 0 : HY_ENOMEM;
    size_t nin = d->networking ? d->networking->n_inbound : 0;
    size_t nout = d->networking ? d->networking->n_outbound : 0;
    if (rc == 0 && nin && !(c->inbounds = calloc(nin, sizeof(*c->inbounds))))
        rc = HY_ENOMEM;
    if (rc == 0 && nout && !(c->outbounds = calloc(nout, sizeof(*c->outbounds))))
        rc = HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < nin; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        Hypha__V1__DpInbound *x = malloc(sizeof(*x));
        if (!x) {
            rc = HY_ENOMEM;
            break;
        }
        hypha__v1__dp_inbound__init(x);
        c->inbounds[c->n_inbounds++] = x;
        x->has_port = x->has_service_port = 1;
        x->port = in->port;
        x->service_port = in->has_service_port ? in->service_port : in->port;
        x->service_address = strdup(in->service_address ? in->service_address : "127.0.0.1");
        x->service = strdup(S(hy_zone_dp_service_of(in)));
    }
    struct hy_policy_proxy proxy = {dp, dp->origin};
    struct policies pol;
    bool loaded = rc == 0 && (rc = policies_load(round, &proxy, &pol)) == 0;
    for (size_t i = 0; rc == 0 && i < c->n_inbounds; i++)
        rc = inbound_permissions(&pol, i, c->inbounds[i]);
    for (size_t i = 0; rc == 0 && i < nout; i++) {
        const Hypha__V1__Dataplane__Networking__Outbound *ob = d->networking->outbound[i];
        Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
        if (!o) {
            rc = HY_ENOMEM;
            break;
        }
        hypha__v1__dp_outbound__init(o);
        c->outbounds[c->n_outbounds++] = o;
        o->has_port = 1;
        o->port = ob->port;
        const char *svc = tag(ob->n_tags, (void *)ob->tags, HY_TAG_SERVICE);
        o->service = strdup(S(svc));
        char sni[HY_SNI_MAX];
        hy_sni_for(S(svc), S(dp->meta->mesh), sni, sizeof(sni));
        o->sni = strdup(sni);
        struct policy_walk pw = {dp, o};
        bool unused;
        for (size_t k = 0; rc == 0 && k < round->ndps; k++)
            rc = add_endpoints(&pw, round->dps[k], &unused);
        for (size_t k = 0; rc == 0 && k < round->nzis; k++)
            rc = add_remote(&pw, round->zis[k], &unused);
        if (rc == 0)
            rc = apply_to_policies(&pol, dp, o);
        drop_excluded(o);
    }
    if (loaded)
        policies_fini(&pol);
    if (rc == 0) /* the version names the content: a hash of everything but the version */
        rc = hy_zone_dp_version(&c->base, &c->version);
    if (rc < 0) {
        hypha__v1__dp_config__free_unpacked(c, NULL);
        return rc;
    }
    *out = c;
    return 0;
}
