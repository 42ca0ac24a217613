/* What a sidecar is told: its inbounds with the peers MeshTrafficPermission
 * lets in, its outbounds with the endpoints of their services and the
 * policies that apply (MeshTimeout, MeshRetry, MeshCircuitBreaker,
 * MeshLoadBalancingStrategy, MeshHealthCheck), and its certificate with
 * the chain and trust bundle. Computed from the zone's store; the version
 * is a hash of the rest, so an unchanged config is not sent again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.pb-c.h"
#include "dataplane.pb-c.h"
#include "dp_server.h"
#include "error.h"
#include "policies.pb-c.h"
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
    return tag(in->n_tags, in->tags, "hypha.io/service");
}

/* Does a policy's top-level targetRef select this Dataplane? */
static bool selects(const Hypha__V1__TargetRef *t, const struct hy_resource *dp)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    if (!t || !t->has_kind || t->kind == HYPHA__V1__TARGET_REF__KIND__Mesh)
        return true;
    for (size_t i = 0; d->networking && i < d->networking->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        switch (t->kind) {
        case HYPHA__V1__TARGET_REF__KIND__MeshService:
            if (t->name && hy_zone_dp_service_of(in) && !strcmp(t->name, hy_zone_dp_service_of(in)))
                return true;
            break;
        case HYPHA__V1__TARGET_REF__KIND__MeshSubset: {
            bool all = true;
            for (size_t k = 0; k < t->n_tags && all; k++) {
                const char *v = tag(in->n_tags, in->tags, t->tags[k]->key);
                all = v && !strcmp(v, S(t->tags[k]->value));
            }
            if (all)
                return true;
            break;
        }
        case HYPHA__V1__TARGET_REF__KIND__Dataplane:
            return t->name && !strcmp(t->name, dp->meta->name);
        default:
            break;
        }
    }
    return false;
}

/* The SPIFFE ID a `from` targetRef names, "*" for the whole mesh, NULL
 * when it names nothing an identity can show (a subset without a service). */
static char *principal(const char *mesh, const Hypha__V1__TargetRef *t)
{
    char buf[600];
    const char *svc = NULL;
    if (!t || !t->has_kind || t->kind == HYPHA__V1__TARGET_REF__KIND__Mesh)
        return strdup("*");
    if (t->kind == HYPHA__V1__TARGET_REF__KIND__MeshService)
        svc = t->name;
    for (size_t k = 0; !svc && k < t->n_tags; k++)
        if (t->tags[k]->key && !strcmp(t->tags[k]->key, "hypha.io/service"))
            svc = t->tags[k]->value;
    if (!svc)
        return NULL;
    snprintf(buf, sizeof(buf), "spiffe://%s/%s", mesh, svc);
    return strdup(buf);
}

static int push_str(char ***v, size_t *n, char *s)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*v)[i], s)) {
            free(s);
            return 0;
        }
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv) {
        free(s);
        return HY_ENOMEM;
    }
    *v = nv;
    nv[(*n)++] = s;
    return 0;
}

struct walk {
    const struct hy_resource *dp;
    Hypha__V1__DpConfig *c;
    int rc;
};

/* MeshTrafficPermission: every permission selecting this Dataplane adds
 * its `from` principals to each inbound, Allow to allowed, Deny to denied
 * (deny wins in the sidecar). */
static int add_permission(void *ud, struct hy_resource *r, bool *take)
{
    struct walk *w = ud;
    (void)take;
    const Hypha__V1__MeshTrafficPermission *p = (const void *)r->spec;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !selects(p->target_ref, w->dp))
        return 0;
    for (size_t i = 0; i < p->n_from; i++) {
        const Hypha__V1__MeshTrafficPermission__From *f = p->from[i];
        bool deny = f->default_ && f->default_->has_action &&
                    f->default_->action == HYPHA__V1__MESH_TRAFFIC_PERMISSION__CONF__ACTION__Deny;
        for (size_t k = 0; k < w->c->n_inbounds; k++) {
            Hypha__V1__DpInbound *in = w->c->inbounds[k];
            char *who = principal(w->dp->meta->mesh, f->target_ref);
            int rc = deny ? push_str(&in->denied, &in->n_denied, who)
                          : push_str(&in->allowed, &in->n_allowed, who);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
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

static void set_dur(Hypha__V1__Duration **dst, const Hypha__V1__Duration *src)
{
    if (!src)
        return;
    Hypha__V1__Duration *c = dur(src);
    if (!c)
        return;
    if (*dst)
        protobuf_c_message_free_unpacked(&(*dst)->base, NULL);
    *dst = c;
}

/* A `to` entry applies to an outbound when it targets the whole mesh or
 * that outbound's service; entries for the service are applied after the
 * mesh-wide ones, so they win. */
static bool to_matches(const Hypha__V1__TargetRef *t, const char *service, bool specific)
{
    if (!t || !t->has_kind)
        return false;
    if (t->kind == HYPHA__V1__TARGET_REF__KIND__Mesh)
        return !specific;
    return specific && t->kind == HYPHA__V1__TARGET_REF__KIND__MeshService && t->name &&
           !strcmp(t->name, service);
}

struct policy_walk {
    const struct hy_resource *dp;
    Hypha__V1__DpOutbound *o;
    bool specific;
};

static int apply_timeout(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__MeshTimeout *p = (const void *)r->spec;
    (void)take;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !selects(p->target_ref, w->dp))
        return 0;
    for (size_t i = 0; i < p->n_to; i++)
        if (p->to[i]->default_ && to_matches(p->to[i]->target_ref, w->o->service, w->specific)) {
            set_dur(&w->o->connect_timeout, p->to[i]->default_->connection_timeout);
            set_dur(&w->o->idle_timeout, p->to[i]->default_->idle_timeout);
        }
    return 0;
}

static int apply_retry(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__MeshRetry *p = (const void *)r->spec;
    (void)take;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !selects(p->target_ref, w->dp))
        return 0;
    for (size_t i = 0; i < p->n_to; i++) {
        const Hypha__V1__MeshRetry__Conf *c = p->to[i]->default_;
        if (c && c->tcp && c->tcp->has_max_connect_attempt &&
            to_matches(p->to[i]->target_ref, w->o->service, w->specific)) {
            w->o->has_max_connect_attempts = 1;
            w->o->max_connect_attempts = c->tcp->max_connect_attempt;
        }
    }
    return 0;
}

static int apply_breaker(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__MeshCircuitBreaker *p = (const void *)r->spec;
    (void)take;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !selects(p->target_ref, w->dp))
        return 0;
    for (size_t i = 0; i < p->n_to; i++) {
        const Hypha__V1__MeshCircuitBreaker__Conf *c = p->to[i]->default_;
        if (!c || !c->connection_limits ||
            !to_matches(p->to[i]->target_ref, w->o->service, w->specific))
            continue;
        if (c->connection_limits->has_max_connections) {
            w->o->has_max_connections = 1;
            w->o->max_connections = c->connection_limits->max_connections;
        }
        /* a TCP proxy's pending requests are its connections not yet through
         * connect and handshake */
        if (c->connection_limits->has_max_pending_requests) {
            w->o->has_max_pending = 1;
            w->o->max_pending = c->connection_limits->max_pending_requests;
        }
    }
    return 0;
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
static void zone_order(struct policy_walk *w,
                       const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness *la)
{
    const char *own = S(w->dp->origin);
    const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness__CrossZone *cz = la->cross_zone;
    for (size_t k = 0; k < w->o->n_endpoints; k++) {
        Hypha__V1__DpEndpoint *e = w->o->endpoints[k];
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

static int apply_lb(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__MeshLoadBalancingStrategy *p = (const void *)r->spec;
    (void)take;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !selects(p->target_ref, w->dp))
        return 0;
    for (size_t i = 0; i < p->n_to; i++) {
        const Hypha__V1__MeshLoadBalancingStrategy__Conf *c = p->to[i]->default_;
        if (c && c->load_balancer && c->load_balancer->has_type &&
            to_matches(p->to[i]->target_ref, w->o->service, w->specific)) {
            const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                &hypha__v1__mesh_load_balancing_strategy__load_balancer__type__descriptor,
                c->load_balancer->type);
            free(w->o->lb);
            w->o->lb = v ? strdup(v->name) : NULL;
        }
        if (c && c->locality_awareness &&
            to_matches(p->to[i]->target_ref, w->o->service, w->specific))
            zone_order(w, c->locality_awareness);
    }
    return 0;
}

static int apply_health(void *ud, struct hy_resource *r, bool *take)
{
    struct policy_walk *w = ud;
    const Hypha__V1__MeshHealthCheck *p = (const void *)r->spec;
    (void)take;
    if (strcmp(S(r->meta->mesh), S(w->dp->meta->mesh)) || !selects(p->target_ref, w->dp))
        return 0;
    for (size_t i = 0; i < p->n_to; i++) {
        const Hypha__V1__MeshHealthCheck__Conf *c = p->to[i]->default_;
        if (!c || !to_matches(p->to[i]->target_ref, w->o->service, w->specific))
            continue;
        if (c->tcp && c->tcp->has_disabled && c->tcp->disabled) {
            if (w->o->health_interval) /* a more specific entry turns checks off */
                protobuf_c_message_free_unpacked(&w->o->health_interval->base, NULL);
            w->o->health_interval = NULL;
            continue;
        }
        /* Kuma's default interval: a minute (and 15 s timeout, the sidecar's) */
        Hypha__V1__Duration minute = HYPHA__V1__DURATION__INIT;
        minute.seconds = 60;
        if (c->interval)
            set_dur(&w->o->health_interval, c->interval);
        else if (!w->o->health_interval)
            set_dur(&w->o->health_interval, &minute);
        set_dur(&w->o->health_timeout, c->timeout);
        if (c->has_unhealthy_threshold) {
            w->o->has_unhealthy_threshold = 1;
            w->o->unhealthy_threshold = c->unhealthy_threshold;
        }
        if (c->has_healthy_threshold) {
            w->o->has_healthy_threshold = 1;
            w->o->healthy_threshold = c->healthy_threshold;
        }
    }
    return 0;
}

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
        const char *svc = tag(as->n_tags, (void *)as->tags, "hypha.io/service");
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
    struct walk w = {dp, c, 0};
    if (rc == 0)
        rc = hy_store_each(s, "MeshTrafficPermission", add_permission, &w);
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
        const char *svc = tag(ob->n_tags, (void *)ob->tags, "hypha.io/service");
        o->service = strdup(S(svc));
        char sni[HY_SNI_MAX];
        hy_sni_for(S(svc), S(dp->meta->mesh), sni, sizeof(sni));
        o->sni = strdup(sni);
        struct policy_walk pw = {dp, o, false};
        rc = hy_store_each(s, "Dataplane", add_endpoints, &pw);
        if (rc == 0)
            rc = hy_store_each(s, "ZoneIngress", add_remote, &pw);
        for (int spec = 0; rc == 0 && spec < 2; spec++) {
            pw.specific = spec;
            if ((rc = hy_store_each(s, "MeshTimeout", apply_timeout, &pw)) == 0 &&
                (rc = hy_store_each(s, "MeshRetry", apply_retry, &pw)) == 0 &&
                (rc = hy_store_each(s, "MeshCircuitBreaker", apply_breaker, &pw)) == 0 &&
                (rc = hy_store_each(s, "MeshLoadBalancingStrategy", apply_lb, &pw)) == 0)
                rc = hy_store_each(s, "MeshHealthCheck", apply_health, &pw);
        }
        drop_excluded(o);
    }
    if (rc == 0) /* the version names the content: a hash of everything but the version */
        rc = hy_zone_dp_version(&c->base, &c->version);
    if (rc < 0) {
        hypha__v1__dp_config__free_unpacked(c, NULL);
        return rc;
    }
    *out = c;
    return 0;
}
