/* What a sidecar is told: its inbounds with the MeshTrafficPermission
 * entries and rules it enforces on callers, their protocol and the
 * MeshTimeout, MeshFaultInjection and MeshRateLimit entries for callers;
 * its outbounds with the endpoints of their services, their protocol, the
 * MeshHTTPRoute/MeshTCPRoute routes (and a backend-only outbound, port 0,
 * for each service a route sends to that it has none for) and what the
 * `to` policies merge to (MeshTimeout, MeshRetry, MeshCircuitBreaker,
 * MeshLoadBalancingStrategy, MeshHealthCheck; cp/policy.h orders and
 * merges them as Kuma does); its MeshMetric (Prometheus endpoint, apps
 * it scrapes), in the Inbounds part; and its certificate with the chain and
 * trust bundle. A transparent Dataplane (networking.transparentProxying)
 * gets an outbound for every service of its mesh, each with its virtual IPs
 * and names (common/vip.h), and the Mesh's passthrough. Computed from the
 * zone's store; the version is a hash of the rest, so an unchanged config
 * is not sent again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ca.h"
#include "ca.pb-c.h"
#include "dataplane.pb-c.h"
#include "dp_parts.h"
#include "dp_server.h"
#include "error.h"
#include "log.h"
#include "policies.pb-c.h"
#include "permit.h"
#include "policy.h"
#include "sni.h"
#include "mesh.pb-c.h"
#include "vip.h"
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

const char *hy_zone_dp_protocol_name(const char *value)
{
    static const char *const known[] = {"http", "http2", "grpc"};
    for (size_t i = 0; value && i < sizeof(known) / sizeof(*known); i++)
        if (!strcmp(value, known[i]))
            return known[i];
    return "tcp";
}

const char *hy_zone_dp_protocol_of(const Hypha__V1__Dataplane__Networking__Inbound *in)
{
    return hy_zone_dp_protocol_name(tag(in->n_tags, in->tags, HY_TAG_PROTOCOL));
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

/* The local endpoints of one (mesh, service): an inbound of a Dataplane. */
struct ep_ref {
    const char *mesh, *service;
    size_t dp, inbound; /* indexes: the store's order, then the Dataplane's */
};

/* A shared part computed for the round: a service's Endpoints (for
 * sidecars of one origin) or a mesh's TrustBundle. */
struct shared {
    char *origin, *mesh, *service; /* service NULL: the trust bundle */
    Hypha__V1__DpPart *part;
    uint8_t *packed; /* part packed, once (NULL: not yet) */
    size_t len;
};

/* A service's virtual IP (common/vip.h) in the round: every service of a
 * mesh that a Dataplane inbound or another zone's ingress offers. */
struct vip_ref {
    const char *mesh, *service; /* borrowed from the round's resources */
    uint32_t vip;
};

struct hy_zone_dp_round {
    struct hy_policy_world world; /* every policy */
    struct hy_resource **meshes;  /* every Mesh (networking.outbound.passthrough); owned */
    size_t nmeshes, capmeshes;
    struct vip_ref *vips; /* sorted by mesh, service; made with eps */
    size_t nvips;
    struct hy_resource **dps, **zis; /* every Dataplane, every ZoneIngress; owned */
    size_t ndps, nzis, capdps, capzis;
    struct hy_resource **roots, **trusts; /* every MeshCaRoot, every MeshTrust */
    size_t nroots, ntrusts, caproots, captrusts;
    struct ep_ref *eps; /* sorted by mesh, service, dp, inbound */
    size_t neps;
    struct shared *sh; /* sorted by origin, mesh, service (NULL first); grown on demand */
    size_t nsh, capsh;
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

static int ep_cmp(const void *a, const void *b)
{
    const struct ep_ref *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);
    if (c == 0)
        c = strcmp(x->service, y->service);
    if (c == 0)
        c = x->dp < y->dp ? -1 : x->dp > y->dp;
    if (c == 0)
        c = x->inbound < y->inbound ? -1 : x->inbound > y->inbound;
    return c;
}

static int vip_cmp(const void *a, const void *b)
{
    const struct vip_ref *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);
    return c ? c : strcmp(x->service, y->service);
}

static int vip_push(struct vip_ref **v, size_t *n, size_t *cap, const char *mesh, const char *svc)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        struct vip_ref *nv = realloc(*v, *cap * sizeof(*nv));
        if (!nv)
            return HY_ENOMEM;
        *v = nv;
    }
    (*v)[(*n)++] = (struct vip_ref){mesh, svc, 0};
    return 0;
}

/* The services of every mesh (local inbounds, other zones' ingresses) with
 * their virtual IPs, allocated per mesh in name order (hy_vip_assign): the
 * same services give the same addresses after a restart. */
static int index_vips(struct hy_zone_dp_round *r)
{
    struct vip_ref *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->neps; i++)
        rc = vip_push(&v, &n, &cap, r->eps[i].mesh, r->eps[i].service);
    for (size_t k = 0; rc == 0 && k < r->nzis; k++) {
        const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)r->zis[k]->spec;
        for (size_t i = 0; rc == 0 && i < zi->n_available_services; i++) {
            const Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
            const char *svc = tag(as->n_tags, (void *)as->tags, HY_TAG_SERVICE);
            if (svc && as->mesh && !(as->has_instances && as->instances == 0))
                rc = vip_push(&v, &n, &cap, as->mesh, svc);
        }
    }
    if (n)
        qsort(v, n, sizeof(*v), vip_cmp);
    size_t u = 0; /* without repeats */
    for (size_t i = 0; i < n; i++)
        if (!u || vip_cmp(&v[u - 1], &v[i]))
            v[u++] = v[i];
    const char **names = u ? malloc(u * sizeof(*names)) : NULL;
    uint32_t *addrs = u ? malloc(u * sizeof(*addrs)) : NULL;
    if (u && (!names || !addrs))
        rc = HY_ENOMEM;
    for (size_t i = 0, j; rc == 0 && i < u; i = j) { /* one mesh at a time */
        for (j = i; j < u && !strcmp(v[j].mesh, v[i].mesh); j++)
            names[j - i] = v[j].service;
        rc = hy_vip_assign(names, j - i, addrs);
        for (size_t k = i; rc == 0 && k < j; k++)
            v[k].vip = addrs[k - i];
    }
    free(names);
    free(addrs);
    free(r->vips);
    r->vips = rc == 0 ? v : NULL;
    r->nvips = rc == 0 ? u : 0;
    if (rc < 0)
        free(v);
    return rc;
}

static const struct vip_ref *find_vip(const struct hy_zone_dp_round *r, const char *mesh,
                                      const char *service)
{
    struct vip_ref want = {mesh, service, 0};
    return r->nvips ? bsearch(&want, r->vips, r->nvips, sizeof(want), vip_cmp) : NULL;
}

/* The index of local endpoints by mesh and service: one walk over the
 * Dataplanes, so a service's endpoints cost its own, not every sidecar. */
static int index_endpoints(struct hy_zone_dp_round *r)
{
    size_t n = 0, cap = 0;
    for (size_t k = 0; k < r->ndps; k++) {
        const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)r->dps[k]->spec;
        for (size_t i = 0; d->networking && i < d->networking->n_inbound; i++) {
            const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
            const char *svc = hy_zone_dp_service_of(in);
            if (!svc || !in->has_port)
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                struct ep_ref *v = realloc(r->eps, cap * sizeof(*v));
                if (!v)
                    return HY_ENOMEM;
                r->eps = v;
            }
            r->eps[n++] = (struct ep_ref){S(r->dps[k]->meta->mesh), svc, k, i};
        }
    }
    r->neps = n;
    if (n)
        qsort(r->eps, n, sizeof(*r->eps), ep_cmp);
    return index_vips(r);
}

int hy_zone_dp_round_load(struct hy_store *s, struct hy_zone_dp_round **out)
{
    struct hy_zone_dp_round *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return HY_ENOMEM;
    struct keep meshes = {&r->meshes, &r->nmeshes, &r->capmeshes};
    struct keep dps = {&r->dps, &r->ndps, &r->capdps}, zis = {&r->zis, &r->nzis, &r->capzis},
                roots = {&r->roots, &r->nroots, &r->caproots},
                trusts = {&r->trusts, &r->ntrusts, &r->captrusts};
    int rc = hy_policy_world_load(s, &r->world);
    if (rc == 0)
        rc = hy_store_each(s, "Mesh", keep_one, &meshes);
    if (rc == 0)
        rc = hy_store_each(s, "Dataplane", keep_one, &dps);
    if (rc == 0)
        rc = hy_store_each(s, "ZoneIngress", keep_one, &zis);
    if (rc == 0)
        rc = hy_store_each(s, "MeshCaRoot", keep_one, &roots);
    if (rc == 0)
        rc = hy_store_each(s, "MeshTrust", keep_one, &trusts);
    if (rc == 0)
        rc = index_endpoints(r);
    if (rc < 0) {
        hy_zone_dp_round_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void free_all(struct hy_resource **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hy_resource_free(v[i]);
    free(v);
}

/* Forgets the shared parts computed (they are made again on demand). */
static void drop_shared(struct hy_zone_dp_round *r)
{
    for (size_t i = 0; i < r->nsh; i++) {
        free(r->sh[i].origin);
        free(r->sh[i].mesh);
        free(r->sh[i].service);
        free(r->sh[i].packed);
        if (r->sh[i].part)
            protobuf_c_message_free_unpacked(&r->sh[i].part->base, NULL);
    }
    r->nsh = 0;
}

void hy_zone_dp_round_free(struct hy_zone_dp_round *r)
{
    if (!r)
        return;
    hy_policy_world_fini(&r->world);
    free_all(r->meshes, r->nmeshes);
    free(r->vips);
    free_all(r->dps, r->ndps);
    free_all(r->zis, r->nzis);
    free_all(r->roots, r->nroots);
    free_all(r->trusts, r->ntrusts);
    free(r->eps);
    drop_shared(r);
    free(r->sh);
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

static bool listed_zone(char *const *zones, size_t n, const char *zone)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(zones[i], zone))
            return true;
    return false;
}

typedef Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness__CrossZone__Failover failover_t;
#define TO_TYPE(x)                                                                                 \
    HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOCALITY_AWARENESS__CROSS_ZONE__FAILOVER__TO__TYPE__##x

/* The priority of zone z (named: whether any rule names it) for a proxy
 * in zone own under failover rules fo[0..n): each rule whose `from`
 * includes own gives the zones it names (Any, Only, AnyExcept; None
 * stops) the next priority; a zone no rule takes is left out. */
static uint32_t failover_priority(failover_t *const *fo, size_t n, const char *own, const char *z)
{
    uint32_t level = 1;
    for (size_t f = 0; f < n; f++, level++) {
        if (fo[f]->from && !listed_zone(fo[f]->from->zones, fo[f]->from->n_zones, own)) {
            level--; /* not a rule for this zone */
            continue;
        }
        int type = fo[f]->to && fo[f]->to->has_type ? (int)fo[f]->to->type : 0;
        bool named = z && fo[f]->to && listed_zone(fo[f]->to->zones, fo[f]->to->n_zones, z);
        if (type == TO_TYPE(None))
            break;
        if (type == TO_TYPE(Any) || (type == TO_TYPE(Only) && named) ||
            (type == TO_TYPE(AnyExcept) && !named))
            return level;
    }
    return HY_DP_PRIORITY_EXCLUDED;
}

/* Priorities by zone (Kuma's localityAwareness), as the outbound gives
 * them to its service's endpoints (common/dp_parts.c): this zone's 0;
 * without failover rules every other zone 1; with rules, what
 * failover_priority says, for each zone a rule names and for the others.
 * la NULL or disabled: every zone 0, no preference. */
static int zone_priorities(const struct hy_resource *dp, Hypha__V1__DpOutbound *o,
                           const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness *la)
{
    const char *own = S(dp->origin);
    o->has_other_zones = 1;
    if (la && la->has_disabled && la->disabled) {
        o->other_zones = 0;
        return 0;
    }
    int rc = own[0] ? hy_dp_zone_priority_add(o, own, 0) : 0;
    const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness__CrossZone *cz =
        la ? la->cross_zone : NULL;
    if (!cz || !cz->n_failover) {
        o->other_zones = 1;
        return rc;
    }
    o->other_zones = failover_priority(cz->failover, cz->n_failover, own, NULL);
    for (size_t f = 0; rc == 0 && f < cz->n_failover; f++)
        for (size_t k = 0; rc == 0 && cz->failover[f]->to && k < cz->failover[f]->to->n_zones;
             k++) {
            const char *z = cz->failover[f]->to->zones[k];
            rc = hy_dp_zone_priority_add(o, z,
                                         failover_priority(cz->failover, cz->n_failover, own, z));
        }
    return rc;
}

/* ----- L7 parts of the `to` policies (DpOutbound fields 20-30) ----- */

static Hypha__V1__DpHttpRetry *new_retry(Hypha__V1__DpHttpRetry **dst)
{
    if (*dst)
        protobuf_c_message_free_unpacked(&(*dst)->base, NULL);
    if ((*dst = malloc(sizeof(**dst))))
        hypha__v1__dp_http_retry__init(*dst);
    return *dst;
}

static int push_str(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return HY_ENOMEM;
    *v = nv;
    return (nv[(*n)++] = strdup(s)) ? 0 : HY_ENOMEM;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int retry_common(Hypha__V1__DpHttpRetry *d, protobuf_c_boolean has_num, uint32_t num,
                        const Hypha__V1__Duration *per_try,
                        const Hypha__V1__MeshRetry__BackOff *back_off, char *const *on, size_t non)
{
    d->has_num_retries = has_num;
    d->num_retries = num;
    int rc = set_dur(&d->per_try_timeout, per_try);
    if (rc == 0 && back_off)
        rc = set_dur(&d->base_interval, back_off->base_interval);
    if (rc == 0 && back_off)
        rc = set_dur(&d->max_interval, back_off->max_interval);
    for (size_t i = 0; rc == 0 && i < non; i++) {
        if (all_digits(S(on[i]))) { /* "503": a status code (Kuma's retriable_status_codes) */
            uint32_t *nv =
                realloc(d->retriable_status_codes, (d->n_retriable_status_codes + 1) * sizeof(*nv));
            if (!nv)
                return HY_ENOMEM;
            d->retriable_status_codes = nv;
            nv[d->n_retriable_status_codes++] = (uint32_t)strtoul(on[i], NULL, 10);
        } else {
            rc = push_str(&d->retry_on, &d->n_retry_on, S(on[i]));
        }
    }
    return rc;
}

static int retry_headers(Hypha__V1__DpHeaderMatch ***v, size_t *n,
                         Hypha__V1__MeshRetry__HeaderMatch *const *src, size_t nsrc)
{
    if (!nsrc)
        return 0;
    if (!(*v = calloc(nsrc, sizeof(**v))))
        return HY_ENOMEM;
    for (size_t i = 0; i < nsrc; i++) {
        Hypha__V1__DpHeaderMatch *h = malloc(sizeof(*h));
        if (!h)
            return HY_ENOMEM;
        hypha__v1__dp_header_match__init(h);
        (*v)[(*n)++] = h;
        h->type = strdup(src[i]->type ? src[i]->type : "Exact");
        h->name = strdup(S(src[i]->name));
        h->value = src[i]->value ? strdup(src[i]->value) : NULL;
        if (!h->type || !h->name || (src[i]->value && !h->value))
            return HY_ENOMEM;
    }
    return 0;
}

/* MeshRetry http: numRetries, perTryTimeout, backOff, retryOn (status
 * codes apart), retriable request and response headers. */
static int http_retry(Hypha__V1__DpHttpRetry **dst, const Hypha__V1__MeshRetry__Http *h)
{
    Hypha__V1__DpHttpRetry *d = new_retry(dst);
    if (!d)
        return HY_ENOMEM;
    int rc = retry_common(d, h->has_num_retries, h->num_retries, h->per_try_timeout, h->back_off,
                          h->retry_on, h->n_retry_on);
    if (rc == 0)
        rc = retry_headers(&d->retriable_request_headers, &d->n_retriable_request_headers,
                           h->retriable_request_headers, h->n_retriable_request_headers);
    if (rc == 0)
        rc = retry_headers(&d->retriable_response_headers, &d->n_retriable_response_headers,
                           h->retriable_response_headers, h->n_retriable_response_headers);
    return rc;
}

static int grpc_retry(Hypha__V1__DpHttpRetry **dst, const Hypha__V1__MeshRetry__Grpc *g)
{
    Hypha__V1__DpHttpRetry *d = new_retry(dst);
    if (!d)
        return HY_ENOMEM;
    return retry_common(d, g->has_num_retries, g->num_retries, g->per_try_timeout, g->back_off,
                        g->retry_on, g->n_retry_on);
}

/* MeshTimeout http, to an outbound's or an inbound's DpHttpTimeouts. */
static int http_timeouts(Hypha__V1__DpHttpTimeouts **dst, const Hypha__V1__MeshTimeout__Http *h)
{
    if (!*dst) {
        if (!(*dst = malloc(sizeof(**dst))))
            return HY_ENOMEM;
        hypha__v1__dp_http_timeouts__init(*dst);
    }
    Hypha__V1__DpHttpTimeouts *d = *dst;
    int rc = set_dur(&d->request_timeout, h->request_timeout);
    if (rc == 0)
        rc = set_dur(&d->stream_idle_timeout, h->stream_idle_timeout);
    if (rc == 0)
        rc = set_dur(&d->max_stream_duration, h->max_stream_duration);
    if (rc == 0)
        rc = set_dur(&d->max_connection_duration, h->max_connection_duration);
    if (rc == 0)
        rc = set_dur(&d->request_headers_timeout, h->request_headers_timeout);
    return rc;
}

/* MeshCircuitBreaker outlierDetection (not disabled); a detector left out
 * stays off, as Kuma configures Envoy. */
static int outlier(Hypha__V1__DpOutlier **dst,
                   const Hypha__V1__MeshCircuitBreaker__OutlierDetection *od)
{
    if (*dst)
        protobuf_c_message_free_unpacked(&(*dst)->base, NULL);
    if (!(*dst = malloc(sizeof(**dst))))
        return HY_ENOMEM;
    Hypha__V1__DpOutlier *d = *dst;
    hypha__v1__dp_outlier__init(d);
    d->has_max_ejection_percent = od->has_max_ejection_percent;
    d->max_ejection_percent = od->max_ejection_percent;
    d->has_split_external_and_local_errors = od->has_split_external_and_local_errors;
    d->split_external_and_local_errors = od->split_external_and_local_errors;
    const Hypha__V1__MeshCircuitBreaker__OutlierDetection__Detectors *det = od->detectors;
    if (det && det->total_failures && det->total_failures->has_consecutive) {
        d->has_consecutive_5xx = 1;
        d->consecutive_5xx = det->total_failures->consecutive;
    }
    if (det && det->gateway_failures && det->gateway_failures->has_consecutive) {
        d->has_consecutive_gateway = 1;
        d->consecutive_gateway = det->gateway_failures->consecutive;
    }
    if (det && det->local_origin_failures && det->local_origin_failures->has_consecutive) {
        d->has_consecutive_local_origin = 1;
        d->consecutive_local_origin = det->local_origin_failures->consecutive;
    }
    int rc = set_dur(&d->interval, od->interval);
    if (rc == 0)
        rc = set_dur(&d->base_ejection_time, od->base_ejection_time);
    return rc;
}

#define OPT(x) HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__OPTIONS_##x
typedef Hypha__V1__MeshLoadBalancingStrategy__LoadBalancer__HashPolicy hash_policy_t;

/* RingHash/Maglev hashPolicies: Header, Cookie and QueryParameter with
 * their name, SourceIP, Connection (sourceIP: the caller's address);
 * FilterState has no counterpart in the sidecar and is left out (its
 * write drew a warning). */
static int hash_policies(Hypha__V1__DpOutbound *o, hash_policy_t *const *v, size_t n)
{
    for (size_t i = 0; i < o->n_hash_policies; i++)
        protobuf_c_message_free_unpacked(&o->hash_policies[i]->base, NULL);
    free(o->hash_policies);
    o->hash_policies = NULL;
    o->n_hash_policies = 0;
    if (n && !(o->hash_policies = calloc(n, sizeof(*o->hash_policies))))
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *type = S(v[i]->type), *name = NULL;
        if (!strcmp(type, "Header") && v[i]->header)
            name = v[i]->header->name;
        else if (!strcmp(type, "Cookie") && v[i]->cookie)
            name = v[i]->cookie->name;
        else if (!strcmp(type, "QueryParameter") && v[i]->query_parameter)
            name = v[i]->query_parameter->name;
        else if (!strcmp(type, "Connection") && v[i]->connection &&
                 v[i]->connection->has_sourceip && v[i]->connection->sourceip)
            type = "SourceIP";
        else if (strcmp(type, "SourceIP"))
            continue;
        Hypha__V1__DpHashPolicy *h = malloc(sizeof(*h));
        if (!h)
            return HY_ENOMEM;
        hypha__v1__dp_hash_policy__init(h);
        o->hash_policies[o->n_hash_policies++] = h;
        h->has_terminal = v[i]->has_terminal;
        h->terminal = v[i]->terminal;
        h->type = strdup(type);
        h->name = name ? strdup(name) : NULL;
        if (!h->type || (name && !h->name))
            return HY_ENOMEM;
    }
    return 0;
}

/* The headers of v[0..n) as DpHeaders of *out (grown). */
static int copy_headers(Hypha__V1__DpHeader ***out, size_t *nout,
                        Hypha__V1__MeshHealthCheck__Header *const *v, size_t n)
{
    if (!n)
        return 0;
    if (!(*out = calloc(n, sizeof(**out))))
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Hypha__V1__DpHeader *x = malloc(sizeof(*x));
        if (!x)
            return HY_ENOMEM;
        hypha__v1__dp_header__init(x);
        (*out)[(*nout)++] = x;
        x->name = strdup(S(v[i]->name));
        x->value = strdup(S(v[i]->value));
        if (!x->name || !x->value)
            return HY_ENOMEM;
    }
    return 0;
}

/* MeshHealthCheck http.requestHeadersToAdd: what the sidecar sets and
 * adds on each check's GET. */
static int health_headers(Hypha__V1__DpOutbound *o,
                          const Hypha__V1__MeshHealthCheck__HeadersToAdd *h)
{
    if (o->health_http_headers) {
        protobuf_c_message_free_unpacked(&o->health_http_headers->base, NULL);
        o->health_http_headers = NULL;
    }
    if (!h || (!h->n_set && !h->n_add))
        return 0;
    Hypha__V1__DpHeaderModifier *m = malloc(sizeof(*m));
    if (!m)
        return HY_ENOMEM;
    hypha__v1__dp_header_modifier__init(m);
    o->health_http_headers = m;
    int rc = copy_headers(&m->set, &m->n_set, h->set, h->n_set);
    return rc ? rc : copy_headers(&m->add, &m->n_add, h->add, h->n_add);
}

/* MeshHealthCheck http (for http and http2 services) and grpc (for grpc
 * ones), as Kuma picks the check by the service's protocol; others keep
 * the TCP check. */
static int health_l7(Hypha__V1__DpOutbound *o, const Hypha__V1__MeshHealthCheck__Conf *h)
{
    const char *proto = S(o->protocol);
    bool http = !strcmp(proto, "http") || !strcmp(proto, "http2");
    if (http && h->http && !(h->http->has_disabled && h->http->disabled)) {
        free(o->health_http_path);
        if (!(o->health_http_path = strdup(h->http->path ? h->http->path : "/")))
            return HY_ENOMEM;
        if (h->http->n_expected_statuses) {
            uint32_t *v = malloc(h->http->n_expected_statuses * sizeof(*v));
            if (!v)
                return HY_ENOMEM;
            memcpy(v, h->http->expected_statuses, h->http->n_expected_statuses * sizeof(*v));
            free(o->health_expected_statuses);
            o->health_expected_statuses = v;
            o->n_health_expected_statuses = h->http->n_expected_statuses;
        }
        int rc = health_headers(o, h->http->request_headers_to_add);
        if (rc < 0)
            return rc;
    }
    if (!strcmp(proto, "grpc") && h->grpc && !(h->grpc->has_disabled && h->grpc->disabled)) {
        o->has_health_grpc = 1;
        o->health_grpc = 1;
        if (h->grpc->service_name && !(o->health_grpc_service = strdup(h->grpc->service_name)))
            return HY_ENOMEM;
        if (h->grpc->authority && !(o->health_grpc_authority = strdup(h->grpc->authority)))
            return HY_ENOMEM;
    }
    return 0;
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
        if (rc == 0 && t->http)
            rc = http_timeouts(&o->http_timeouts, t->http);
    }
    hy_policy_conf_fini(&c);
    if (rc == 0 && (rc = merged_to(p, HY_POLICY_RETRY, o->service, &c)) == 0 && c.conf) {
        const Hypha__V1__MeshRetry__Conf *r = (const void *)c.conf;
        if (r->tcp && r->tcp->has_max_connect_attempt) {
            o->has_max_connect_attempts = 1;
            o->max_connect_attempts = r->tcp->max_connect_attempt;
        }
        if (r->http)
            rc = http_retry(&o->http_retry, r->http);
        if (rc == 0 && r->grpc)
            rc = grpc_retry(&o->grpc_retry, r->grpc);
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
        if (b->connection_limits && b->connection_limits->has_max_requests) {
            o->has_max_requests = 1;
            o->max_requests = b->connection_limits->max_requests;
        }
        if (b->connection_limits && b->connection_limits->has_max_retries) {
            o->has_max_retries = 1;
            o->max_retries = b->connection_limits->max_retries;
        }
        const Hypha__V1__MeshCircuitBreaker__OutlierDetection *od = b->outlier_detection;
        if (od && !(od->has_disabled && od->disabled))
            rc = outlier(&o->outlier, od);
    }
    hy_policy_conf_fini(&c);
    const Hypha__V1__MeshLoadBalancingStrategy__LocalityAwareness *la = NULL;
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
        const Hypha__V1__MeshLoadBalancingStrategy__LoadBalancer *b = l->load_balancer;
        if (rc == 0 && b && b->options_case == OPT(RING_HASH))
            rc = hash_policies(o, b->ring_hash->hash_policies, b->ring_hash->n_hash_policies);
        if (rc == 0 && b && b->options_case == OPT(MAGLEV))
            rc = hash_policies(o, b->maglev->hash_policies, b->maglev->n_hash_policies);
        la = l->locality_awareness;
    }
    if (rc == 0)
        rc = zone_priorities(dp, o, la);
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
            if (rc == 0)
                rc = health_l7(o, h);
        }
    }
    hy_policy_conf_fini(&c);
    if (rc == 0)
        rc = hy_policy_outbound_access_log(&p->sel[HY_POLICY_ACCESS_LOG], o->service, o);
    return rc;
}

/* ----- shared parts: a service's endpoints, a mesh's trust bundle ----- */

static int sh_cmp(const char *origin, const char *mesh, const char *service, const struct shared *x)
{
    int c = strcmp(origin, x->origin);
    if (c == 0)
        c = strcmp(mesh, x->mesh);
    if (c == 0)
        c = !service ? (x->service ? -1 : 0) : !x->service ? 1 : strcmp(service, x->service);
    return c;
}

/* The round's slot for (origin, mesh, service), made empty if new. */
static struct shared *slot(struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                           const char *service)
{
    size_t lo = 0, hi = r->nsh;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = sh_cmp(origin, mesh, service, &r->sh[mid]);
        if (c == 0)
            return &r->sh[mid];
        if (c > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (r->nsh == r->capsh) {
        size_t cap = r->capsh ? 2 * r->capsh : 64;
        struct shared *v = realloc(r->sh, cap * sizeof(*v));
        if (!v)
            return NULL;
        r->sh = v;
        r->capsh = cap;
    }
    struct shared x = {strdup(origin), strdup(mesh), service ? strdup(service) : NULL,
                       NULL,           NULL,         0};
    if (!x.origin || !x.mesh || (service && !x.service)) {
        free(x.origin);
        free(x.mesh);
        free(x.service);
        return NULL;
    }
    memmove(&r->sh[lo + 1], &r->sh[lo], (r->nsh - lo) * sizeof(*r->sh));
    r->sh[lo] = x;
    r->nsh++;
    return &r->sh[lo];
}

static Hypha__V1__DpPart *new_part(int kind, const char *key)
{
    Hypha__V1__DpPart *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    hypha__v1__dp_part__init(p);
    p->has_kind = 1;
    p->kind = kind;
    if (key && !(p->key = strdup(key))) {
        free(p);
        return NULL;
    }
    return p;
}

static Hypha__V1__DpEndpoint *new_endpoint(Hypha__V1__DpPart *p)
{
    Hypha__V1__DpEndpoint *e = malloc(sizeof(*e));
    Hypha__V1__DpEndpoint **v = realloc(p->endpoints, (p->n_endpoints + 1) * sizeof(*v));
    if (!e || !v) {
        free(e);
        if (v)
            p->endpoints = v;
        return NULL;
    }
    hypha__v1__dp_endpoint__init(e);
    p->endpoints = v;
    v[p->n_endpoints++] = e;
    return e;
}

/* The inbound's tags on its endpoint, so that a caller's sidecar can
 * narrow a MeshServiceSubset backendRef to the instances carrying its
 * tags (the service tag, which every one carries, left out). */
static int endpoint_tags(Hypha__V1__DpEndpoint *e,
                         const Hypha__V1__Dataplane__Networking__Inbound *in)
{
    size_t n = 0;
    for (size_t k = 0; k < in->n_tags; k++)
        n += in->tags[k]->key && strcmp(in->tags[k]->key, HY_TAG_SERVICE) != 0;
    if (!n)
        return 0;
    if (!(e->tags = calloc(n, sizeof(*e->tags))))
        return HY_ENOMEM;
    for (size_t k = 0; k < in->n_tags; k++) {
        if (!in->tags[k]->key || !strcmp(in->tags[k]->key, HY_TAG_SERVICE))
            continue;
        Hypha__V1__DpEndpoint__TagsEntry *t = malloc(sizeof(*t));
        if (!t)
            return HY_ENOMEM;
        hypha__v1__dp_endpoint__tags_entry__init(t);
        e->tags[e->n_tags++] = t;
        t->key = strdup(in->tags[k]->key);
        t->value = strdup(S(in->tags[k]->value));
        if (!t->key || !t->value)
            return HY_ENOMEM;
    }
    return 0;
}

/* The index in r->eps of the first inbound serving (mesh, service), or
 * where it would be. */
static size_t first_ep(const struct hy_zone_dp_round *r, const char *mesh, const char *service)
{
    struct ep_ref want = {mesh, service, 0, 0};
    size_t lo = 0, hi = r->neps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ep_cmp(&r->eps[mid], &want) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Local endpoints: the inbounds of the mesh's Dataplanes of origin (or
 * none) that serve the service, in the store's order. */
static int local_endpoints(const struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                           const char *service, Hypha__V1__DpPart *p)
{
    for (size_t i = first_ep(r, mesh, service);
         i < r->neps && !strcmp(r->eps[i].mesh, mesh) && !strcmp(r->eps[i].service, service); i++) {
        const struct hy_resource *dr = r->dps[r->eps[i].dp];
        if (dr->origin && strcmp(dr->origin, origin))
            continue;
        const Hypha__V1__Dataplane__Networking *n =
            ((const Hypha__V1__Dataplane *)dr->spec)->networking;
        Hypha__V1__DpEndpoint *e = new_endpoint(p);
        if (!e)
            return HY_ENOMEM;
        const char *addr = n->advertised_address ? n->advertised_address : n->address;
        e->address = strdup(S(addr));
        e->has_port = 1;
        e->port = n->inbound[r->eps[i].inbound]->port;
        e->zone = dr->origin ? strdup(dr->origin) : NULL;
        e->name = strdup(dr->meta->name);
        if (!e->address || !e->name || (dr->origin && !e->zone))
            return HY_ENOMEM;
        int rc = endpoint_tags(e, n->inbound[r->eps[i].inbound]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A tag set another zone's ingress serves (an availableServices entry
 * marked subset) on its endpoint e: the tags (the service tag left out)
 * for MeshServiceSubset picks, and the SNI that reaches only those
 * instances through the ingress (hy_sni_for_subset, as that zone
 * computed it). */
static int subset_endpoint(Hypha__V1__DpEndpoint *e,
                           const Hypha__V1__ZoneIngress__AvailableService *as, const char *service,
                           const char *mesh)
{
    size_t n = 0;
    const char **keys = calloc(as->n_tags + 1, sizeof(*keys));
    const char **values = calloc(as->n_tags + 1, sizeof(*values));
    e->tags = calloc(as->n_tags + 1, sizeof(*e->tags));
    int rc = keys && values && e->tags ? 0 : HY_ENOMEM;
    for (size_t k = 0; rc == 0 && k < as->n_tags; k++) {
        if (!as->tags[k]->key || !strcmp(as->tags[k]->key, HY_TAG_SERVICE))
            continue;
        keys[n] = as->tags[k]->key;
        values[n++] = S(as->tags[k]->value);
        Hypha__V1__DpEndpoint__TagsEntry *t = malloc(sizeof(*t));
        if (!t) {
            rc = HY_ENOMEM;
            break;
        }
        hypha__v1__dp_endpoint__tags_entry__init(t);
        e->tags[e->n_tags++] = t;
        t->key = strdup(as->tags[k]->key);
        t->value = strdup(S(as->tags[k]->value));
        if (!t->key || !t->value)
            rc = HY_ENOMEM;
    }
    char sni[HY_SNI_MAX];
    if (rc == 0) {
        hy_sni_for_subset(service, mesh, keys, values, n, sni, sizeof(sni));
        if (!(e->sni = strdup(sni)))
            rc = HY_ENOMEM;
    }
    free(keys);
    free(values);
    return rc;
}

/* Remote endpoints: other zones' ingresses that carry the service in this
 * mesh. The zone is the one the global CP stored each under (the KDS
 * session's), never spec.zone: a zone could claim to be another there. */
static int remote_endpoints(const struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                            const char *service, Hypha__V1__DpPart *p)
{
    for (size_t k = 0; k < r->nzis; k++) {
        const struct hy_resource *zr = r->zis[k];
        const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)zr->spec;
        const char *from = S(zr->origin);
        if (!from[0] || !strcmp(from, origin) || !strcmp(from, "global") || !zi->networking)
            continue;
        const Hypha__V1__ZoneIngress__Networking *n = zi->networking;
        const char *addr = n->advertised_address ? n->advertised_address : S(n->address);
        /* an ingress listening on every address must say which one to dial */
        if (!addr[0] || !strcmp(addr, "0.0.0.0") || !strcmp(addr, "::"))
            continue;
        bool whole = false; /* the service's own entry: one endpoint per ingress */
        for (size_t i = 0; i < zi->n_available_services; i++) {
            const Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
            const char *svc = tag(as->n_tags, (void *)as->tags, HY_TAG_SERVICE);
            if (!svc || strcmp(svc, service) || strcmp(S(as->mesh), mesh) ||
                (as->has_instances && as->instances == 0) || (whole && !as->subset))
                continue;
            Hypha__V1__DpEndpoint *e = new_endpoint(p);
            if (!e)
                return HY_ENOMEM;
            e->address = strdup(addr);
            e->has_port = 1;
            e->port = n->has_advertised_port ? n->advertised_port : n->port;
            e->zone = strdup(from);
            e->name = strdup(zr->meta->name);
            if (!e->address || !e->zone || !e->name)
                return HY_ENOMEM;
            whole = whole || !as->subset;
            int rc = as->subset ? subset_endpoint(e, as, service, mesh) : 0;
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* The protocol a caller in zone origin proxies service's traffic as
 * (Kuma's rule): the one every known instance agrees on, local inbounds
 * (hypha.io/protocol) and other zones' ingresses (the tag their
 * availableServices publish), else tcp. No instance known: tcp. */
static const char *service_protocol(const struct hy_zone_dp_round *r, const char *origin,
                                    const char *mesh, const char *service)
{
    const char *agreed = NULL;
    for (size_t i = first_ep(r, mesh, service);
         i < r->neps && !strcmp(r->eps[i].mesh, mesh) && !strcmp(r->eps[i].service, service); i++) {
        const struct hy_resource *dr = r->dps[r->eps[i].dp];
        if (dr->origin && strcmp(dr->origin, origin))
            continue;
        const char *p = hy_zone_dp_protocol_of(
            ((const Hypha__V1__Dataplane *)dr->spec)->networking->inbound[r->eps[i].inbound]);
        if (agreed && strcmp(agreed, p))
            return "tcp";
        agreed = p;
    }
    for (size_t k = 0; k < r->nzis; k++) {
        const struct hy_resource *zr = r->zis[k];
        const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)zr->spec;
        const char *from = S(zr->origin);
        if (!from[0] || !strcmp(from, origin) || !strcmp(from, "global"))
            continue;
        for (size_t i = 0; i < zi->n_available_services; i++) {
            const Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
            const char *svc = tag(as->n_tags, (void *)as->tags, HY_TAG_SERVICE);
            if (!svc || strcmp(svc, service) || strcmp(S(as->mesh), mesh) ||
                (as->has_instances && as->instances == 0) || as->subset)
                continue;
            const char *p =
                hy_zone_dp_protocol_name(tag(as->n_tags, (void *)as->tags, HY_TAG_PROTOCOL));
            if (agreed && strcmp(agreed, p))
                return "tcp";
            agreed = p;
        }
    }
    return agreed ? agreed : "tcp";
}

int hy_zone_dp_round_endpoints(struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                               const char *service, const Hypha__V1__DpPart **out)
{
    struct shared *x = slot(r, S(origin), S(mesh), S(service));
    if (!x)
        return HY_ENOMEM;
    if (!x->part) {
        Hypha__V1__DpPart *p = new_part(HYPHA__V1__DP_PART__KIND__Endpoints, S(service));
        int rc = p ? 0 : HY_ENOMEM;
        if (rc == 0)
            rc = local_endpoints(r, S(origin), S(mesh), S(service), p);
        if (rc == 0)
            rc = remote_endpoints(r, S(origin), S(mesh), S(service), p);
        if (rc == 0)
            rc = hy_dp_part_stamp(p);
        if (rc < 0) {
            if (p)
                protobuf_c_message_free_unpacked(&p->base, NULL);
            return rc;
        }
        x->part = p;
    }
    *out = x->part;
    return 0;
}

int hy_zone_dp_round_packed(struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                            const Hypha__V1__DpPart *part, const uint8_t **data, size_t *len)
{
    bool bundle = part->kind == HYPHA__V1__DP_PART__KIND__TrustBundle;
    struct shared *x = slot(r, bundle ? "" : S(origin), S(mesh), bundle ? NULL : S(part->key));
    if (!x || x->part != part)
        return x ? HY_EINVAL : HY_ENOMEM;
    if (!x->packed && !(x->packed = hy_wire_pack(&part->base, &x->len)))
        return HY_ENOMEM;
    *data = x->packed;
    *len = x->len;
    return 0;
}

/* The trust bundle being built: distinct CA certificates, by fingerprint. */
struct roots {
    const char *mesh;
    struct hy_buf pem;
    char seen[HY_CA_BUNDLE_MAX][HY_CA_FINGERPRINT_LEN + 1];
    size_t n;
    const struct hy_resource *from; /* for the log */
};

static int add_cert(void *ud, const struct hy_ca_bundle_cert *c)
{
    struct roots *x = ud;
    for (size_t i = 0; i < x->n; i++)
        if (!strcmp(x->seen[i], c->fingerprint))
            return 0;
    if (x->n == HY_CA_BUNDLE_MAX) {
        /* global refuses writes past this: a store that holds more came
         * from elsewhere, and what does not fit is said, not dropped */
        hy_log(HY_LOG_WARN, "dp",
               "mesh %s: %s %s: certificate %.16s... left out of the trust bundle: it is full "
               "(%d certificates)",
               x->mesh, x->from->type->name, x->from->meta->name, c->fingerprint, HY_CA_BUNDLE_MAX);
        return 0;
    }
    memcpy(x->seen[x->n++], c->fingerprint, sizeof(x->seen[0]));
    if (hy_buf_append(&x->pem, c->pem, c->len) < 0 || hy_buf_puts(&x->pem, "\n") < 0)
        return HY_ENOMEM;
    return 0;
}

/* Adds the certificates of one PEM text of r; one that does not read is
 * logged and left out (global checked it: hy_cp_mesh_trust_check). */
static int add_pem(struct roots *x, const struct hy_resource *r, const char *pem)
{
    size_t at = 0;
    const char *why = NULL;
    x->from = r;
    int rc = hy_ca_bundle_each(pem, add_cert, x, NULL, &at, &why);
    if (rc == HY_ENOMEM)
        return rc;
    if (rc < 0)
        hy_log(HY_LOG_WARN, "dp",
               "mesh %s: %s %s: certificate %zu left out of the trust bundle: %s", x->mesh,
               r->type->name, r->meta->name, at, why ? why : hy_strerror(rc));
    return 0;
}

/* The mesh's trust bundle, as PEM: every root of the mesh (MeshCaRoot),
 * then the CAs of every MeshTrust of the mesh for its own trust domain,
 * each certificate once. Taken for every config, not with the
 * certificate: in a root rotation the new root reaches every sidecar (with
 * the MeshCaRoot's sync) before the zone has an intermediate under it, so
 * no sidecar sees a leaf it cannot verify. Once per mesh and round: a
 * certificate that does not read is logged once per change, not per
 * sidecar. */
static int mesh_bundle(const struct hy_zone_dp_round *r, const char *mesh, struct roots *x)
{
    int rc = 0;
    x->mesh = mesh;
    for (size_t i = 0; rc == 0 && i < r->nroots; i++) {
        const Hypha__V1__MeshCaRoot *t = (const Hypha__V1__MeshCaRoot *)r->roots[i]->spec;
        if (t->ca_cert && !strcmp(S(r->roots[i]->meta->mesh), mesh))
            rc = add_pem(x, r->roots[i], t->ca_cert);
    }
    for (size_t i = 0; rc == 0 && i < r->ntrusts; i++) {
        const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)r->trusts[i]->spec;
        /* A sidecar checks only that a peer's ID is spiffe://<mesh>/...: a
         * CA trusted for another domain would be trusted to issue this
         * mesh's identities too. So only MeshTrusts for the mesh's own
         * domain reach the bundle (the write of any other drew a warning
         * saying so). */
        if (strcmp(S(r->trusts[i]->meta->mesh), mesh) || strcmp(S(t->trust_domain), mesh))
            continue;
        for (size_t k = 0; rc == 0 && k < t->n_ca_bundles; k++) {
            const Hypha__V1__MeshTrust__CaBundle *b = t->ca_bundles[k];
            if (b->pem && b->pem->value)
                rc = add_pem(x, r->trusts[i], b->pem->value);
        }
    }
    return rc;
}

static int bundle_part(const char *pem, Hypha__V1__DpPart **out)
{
    Hypha__V1__DpPart *p = new_part(HYPHA__V1__DP_PART__KIND__TrustBundle, NULL);
    int rc = p && (p->trust_bundle = strdup(S(pem))) ? 0 : HY_ENOMEM;
    if (rc == 0)
        rc = hy_dp_part_stamp(p);
    if (rc < 0 && p)
        protobuf_c_message_free_unpacked(&p->base, NULL);
    *out = rc == 0 ? p : NULL;
    return rc;
}

int hy_zone_dp_round_bundle(struct hy_zone_dp_round *r, const char *mesh,
                            const Hypha__V1__DpPart **out)
{
    struct shared *x = slot(r, "", S(mesh), NULL);
    if (!x)
        return HY_ENOMEM;
    if (!x->part) {
        struct roots *b = calloc(1, sizeof(*b));
        int rc = b ? mesh_bundle(r, S(mesh), b) : HY_ENOMEM;
        if (rc == 0)
            rc = bundle_part(b->pem.data ? b->pem.data : "", &x->part);
        if (b)
            hy_buf_fini(&b->pem);
        free(b);
        if (rc < 0)
            return rc;
    }
    *out = x->part;
    return 0;
}

/* ----- a sidecar's own parts ----- */

int hy_zone_dp_version(const ProtobufCMessage *m, char **out)
{
    char v[HY_DP_VERSION_LEN + 1];
    int rc = hy_dp_msg_version(m, v);
    if (rc < 0)
        return rc;
    return (*out = strdup(v)) ? 0 : HY_ENOMEM;
}

int hy_zone_dp_part_identity(const struct hy_resource *dp, const char *cert, const char *chain,
                             Hypha__V1__DpPart **out)
{
    Hypha__V1__DpPart *p = new_part(HYPHA__V1__DP_PART__KIND__Identity, NULL);
    Hypha__V1__DpIdentity *id = p ? malloc(sizeof(*id)) : NULL;
    int rc = id ? 0 : HY_ENOMEM;
    if (id) {
        hypha__v1__dp_identity__init(id);
        p->identity = id;
        id->mesh = strdup(S(dp->meta->mesh));
        id->name = strdup(S(dp->meta->name));
        id->cert = strdup(S(cert));
        id->chain = strdup(S(chain));
        if (!id->mesh || !id->name || !id->cert || !id->chain)
            rc = HY_ENOMEM;
    }
    if (rc == 0)
        rc = hy_dp_part_stamp(p);
    if (rc < 0 && p)
        protobuf_c_message_free_unpacked(&p->base, NULL);
    *out = rc == 0 ? p : NULL;
    return rc;
}

/* MeshTimeout at inbound i: its from entries, then its rules (newer
 * Kuma's inbound section), merged later over earlier; as Kuma, the
 * connect and idle timeouts are the inbound cluster's (the app) and, in
 * TCP mode, the listener's tcp_proxy idle timeout. */
static int inbound_timeouts(const struct policies *p, size_t i, Hypha__V1__DpInbound *in)
{
    struct hy_policy_conf c;
    int rc = hy_policy_merge_inbound(&p->sel[HY_POLICY_TIMEOUT], i, &c);
    const Hypha__V1__MeshTimeout__Conf *t = (const void *)c.conf;
    if (rc == 0 && t)
        rc = set_dur(&in->connect_timeout, t->connection_timeout);
    if (rc == 0 && t)
        rc = set_dur(&in->idle_timeout, t->idle_timeout);
    if (rc == 0 && t && t->http)
        rc = http_timeouts(&in->http_timeouts, t->http);
    hy_policy_conf_fini(&c);
    return rc;
}

static int make_inbounds(const struct hy_resource *dp, const struct policies *pol,
                         Hypha__V1__DpPart *p)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    size_t nin = d->networking ? d->networking->n_inbound : 0;
    if (nin && !(p->inbounds = calloc(nin, sizeof(*p->inbounds))))
        return HY_ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nin; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        Hypha__V1__DpInbound *x = malloc(sizeof(*x));
        if (!x)
            return HY_ENOMEM;
        hypha__v1__dp_inbound__init(x);
        p->inbounds[p->n_inbounds++] = x;
        x->has_port = x->has_service_port = 1;
        x->port = in->port;
        x->service_port = in->has_service_port ? in->service_port : in->port;
        x->service_address = strdup(in->service_address ? in->service_address : "127.0.0.1");
        x->service = strdup(S(hy_zone_dp_service_of(in)));
        x->protocol = strdup(hy_zone_dp_protocol_of(in));
        if (!x->service_address || !x->service || !x->protocol)
            return HY_ENOMEM;
        rc = inbound_permissions(pol, i, x);
        if (rc == 0)
            rc = inbound_timeouts(pol, i, x);
        if (rc == 0)
            rc = hy_policy_inbound_faults(&pol->sel[HY_POLICY_FAULT], i, x);
        if (rc == 0)
            rc = hy_policy_inbound_rate_limits(&pol->sel[HY_POLICY_RATE_LIMIT], i, x);
        if (rc == 0)
            rc = hy_policy_inbound_access_log(&pol->sel[HY_POLICY_ACCESS_LOG], i, x);
    }
    return rc;
}

/* A new outbound to svc (port 0: a backend only) appended to p, with its
 * SNI, protocol and the `to` policies merged for svc. */
static int add_outbound(const struct hy_zone_dp_round *r, const struct hy_resource *dp,
                        const struct policies *pol, Hypha__V1__DpPart *p, bool has_port,
                        uint32_t port, const char *svc, Hypha__V1__DpOutbound **out)
{
    Hypha__V1__DpOutbound **v = realloc(p->outbounds, (p->n_outbounds + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    p->outbounds = v;
    Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
    if (!o)
        return HY_ENOMEM;
    hypha__v1__dp_outbound__init(o);
    v[p->n_outbounds++] = o;
    o->has_port = has_port;
    o->port = port;
    char sni[HY_SNI_MAX];
    hy_sni_for(svc, S(dp->meta->mesh), sni, sizeof(sni));
    o->service = strdup(svc);
    o->sni = strdup(sni);
    o->protocol = strdup(service_protocol(r, S(dp->origin), S(dp->meta->mesh), svc));
    if (!o->service || !o->sni || !o->protocol)
        return HY_ENOMEM;
    *out = o;
    return apply_to_policies(pol, dp, o);
}

static bool has_outbound(const Hypha__V1__DpPart *p, const char *svc)
{
    for (size_t i = 0; i < p->n_outbounds; i++)
        if (!strcmp(S(p->outbounds[i]->service), svc))
            return true;
    return false;
}

/* The services o's routes send to (backends, mirrors, TCP split) that
 * have no outbound in p yet get one with port 0: never listened on, a
 * backend with its endpoints, SNI and own `to` policies (Kuma: a cluster
 * per backendRef). Their own routes do not apply to what reaches them. */
static int backend_outbounds(const struct hy_zone_dp_round *r, const struct hy_resource *dp,
                             const struct policies *pol, Hypha__V1__DpPart *p, size_t k)
{
    const char *want[256];
    size_t n = 0;
    const Hypha__V1__DpOutbound *o = p->outbounds[k];
    for (size_t i = 0; i < o->n_http_routes && n < 256; i++) {
        const Hypha__V1__DpHttpRoute *rt = o->http_routes[i];
        for (size_t b = 0; b < rt->n_backends && n < 256; b++)
            want[n++] = S(rt->backends[b]->service);
        for (size_t f = 0; f < rt->n_filters && n < 256; f++)
            if (rt->filters[f]->request_mirror && rt->filters[f]->request_mirror->backend)
                want[n++] = S(rt->filters[f]->request_mirror->backend->service);
    }
    for (size_t b = 0; b < o->n_tcp_backends && n < 256; b++)
        want[n++] = S(o->tcp_backends[b]->service);
    /* copied: adding outbounds moves p->outbounds, not the strings */
    char *svcs[256];
    size_t ns = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (want[i][0] && !(svcs[ns++] = strdup(want[i])))
            rc = HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < ns; i++) {
        Hypha__V1__DpOutbound *added;
        if (!has_outbound(p, svcs[i]))
            rc = add_outbound(r, dp, pol, p, true, 0, svcs[i], &added);
    }
    for (size_t i = 0; i < ns; i++)
        free(svcs[i]);
    return rc;
}

/* An outbound the caller reaches by name, with its routes. */
static int routed_outbound(const struct hy_zone_dp_round *r, const struct hy_resource *dp,
                           const struct policies *pol, Hypha__V1__DpPart *p, uint32_t port,
                           const char *svc)
{
    Hypha__V1__DpOutbound *o = NULL;
    int rc = add_outbound(r, dp, pol, p, true, port, svc, &o);
    /* Kuma: a MeshHTTPRoute applies to HTTP services only, and where
     * one does, a MeshTCPRoute for the same service is ignored */
    if (rc == 0 && strcmp(o->protocol, "tcp"))
        rc = hy_policy_http_routes(&pol->sel[HY_POLICY_HTTP_ROUTE], svc, o);
    if (rc == 0 && !o->n_http_routes)
        rc = hy_policy_tcp_backends(&pol->sel[HY_POLICY_TCP_ROUTE], svc, o);
    return rc;
}

static size_t find_res(struct hy_resource *const *v, size_t n, const char *mesh, const char *name);

/* The Mesh's networking.outbound.passthrough (unset, or no Mesh: true). */
static bool mesh_passthrough(const struct hy_zone_dp_round *r, const char *mesh)
{
    size_t i = find_res(r->meshes, r->nmeshes, "", mesh);
    const Hypha__V1__Mesh *m = i < r->nmeshes ? (const Hypha__V1__Mesh *)r->meshes[i]->spec : NULL;
    const Hypha__V1__Mesh__Networking__Outbound *o =
        m && m->networking ? m->networking->outbound : NULL;
    return !o || !o->has_passthrough || o->passthrough;
}

/* A transparent Dataplane (networking.transparentProxying) reaches every
 * service of its mesh by virtual IP: an outbound (port 0 unless it lists
 * one) per service, each with its VIPs and names, and the Mesh's
 * passthrough. */
static int transparent_outbounds(const struct hy_zone_dp_round *r, const struct hy_resource *dp,
                                 const struct policies *pol, Hypha__V1__DpPart *p)
{
    const char *mesh = S(dp->meta->mesh);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->nvips; i++)
        if (!strcmp(r->vips[i].mesh, mesh) && !has_outbound(p, r->vips[i].service))
            rc = routed_outbound(r, dp, pol, p, 0, r->vips[i].service);
    for (size_t i = 0; rc == 0 && i < p->n_outbounds; i++) {
        Hypha__V1__DpOutbound *o = p->outbounds[i];
        const struct vip_ref *v = find_vip(r, mesh, S(o->service));
        if (!v)
            continue;
        char a4[16], a6[40], name[HY_VIP_NAME_MAX];
        hy_vip_format4(v->vip, a4, sizeof(a4));
        hy_vip_format6(v->vip, a6, sizeof(a6));
        if (!(o->vip = strdup(a4)) || !(o->vip6 = strdup(a6)) ||
            !(o->hostnames = calloc(HY_VIP_NAMES, sizeof(*o->hostnames))))
            return HY_ENOMEM;
        for (unsigned k = 0; k < HY_VIP_NAMES; k++)
            if (hy_vip_hostname(v->service, k, name, sizeof(name)) &&
                !(o->hostnames[o->n_hostnames++] = strdup(name)))
                return HY_ENOMEM;
    }
    if (rc == 0 && !(p->transparent = malloc(sizeof(*p->transparent))))
        rc = HY_ENOMEM;
    if (rc == 0) {
        hypha__v1__dp_transparent__init(p->transparent);
        p->transparent->has_passthrough = 1;
        p->transparent->passthrough = mesh_passthrough(r, mesh);
    }
    return rc;
}

static int make_outbounds(const struct hy_zone_dp_round *r, const struct hy_resource *dp,
                          const struct policies *pol, Hypha__V1__DpPart *p)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    size_t nout = d->networking ? d->networking->n_outbound : 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nout; i++) {
        const Hypha__V1__Dataplane__Networking__Outbound *ob = d->networking->outbound[i];
        rc = routed_outbound(r, dp, pol, p, ob->port,
                             S(tag(ob->n_tags, (void *)ob->tags, HY_TAG_SERVICE)));
    }
    if (rc == 0 && d->networking && d->networking->transparent_proxying)
        rc = transparent_outbounds(r, dp, pol, p);
    /* after every listened outbound: one the Dataplane lists is never
     * turned into a backend-only one */
    for (size_t i = 0, n = p->n_outbounds; rc == 0 && i < n; i++)
        rc = backend_outbounds(r, dp, pol, p, i);
    return rc;
}

int hy_zone_dp_parts_own(struct hy_zone_dp_round *r, const struct hy_resource *dp,
                         Hypha__V1__DpPart **inbounds, Hypha__V1__DpPart **outbounds)
{
    struct hy_policy_proxy proxy = {dp, dp->origin};
    struct policies pol;
    int rc = policies_load(r, &proxy, &pol);
    if (rc < 0)
        return rc;
    Hypha__V1__DpPart *in = NULL, *out = NULL;
    if (inbounds) {
        in = new_part(HYPHA__V1__DP_PART__KIND__Inbounds, NULL);
        rc = in ? make_inbounds(dp, &pol, in) : HY_ENOMEM;
        if (rc == 0) /* MeshMetric is proxy-wide: it rides in the Inbounds part */
            rc = hy_policy_metrics(&pol.sel[HY_POLICY_METRIC], dp, &in->metrics);
        if (rc == 0) /* so is MeshTrace */
            rc = hy_policy_trace(&pol.sel[HY_POLICY_TRACE], dp, dp->origin, &in->trace);
        if (rc == 0)
            rc = hy_dp_part_stamp(in);
    }
    if (rc == 0 && outbounds) {
        out = new_part(HYPHA__V1__DP_PART__KIND__Outbounds, NULL);
        rc = out ? make_outbounds(r, dp, &pol, out) : HY_ENOMEM;
        if (rc == 0)
            rc = hy_dp_part_stamp(out);
    }
    policies_fini(&pol);
    if (rc < 0) {
        if (in)
            protobuf_c_message_free_unpacked(&in->base, NULL);
        if (out)
            protobuf_c_message_free_unpacked(&out->base, NULL);
        return rc;
    }
    if (inbounds)
        *inbounds = in;
    if (outbounds)
        *outbounds = out;
    return 0;
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

int hy_zone_dp_parts_assemble(struct hy_zone_dp_round *r, const struct hy_resource *dp,
                              Hypha__V1__DpPart *identity, const Hypha__V1__DpPart *bundle,
                              Hypha__V1__DpPart *inbounds, Hypha__V1__DpPart *outbounds,
                              Hypha__V1__DpConfig **out)
{
    size_t nout = outbounds->n_outbounds;
    struct hy_dp_parts set = {.v = malloc((nout + 4) * sizeof(*set.v))};
    int rc = set.v ? 0 : HY_ENOMEM;
    if (rc == 0) {
        set.v[set.n++] = identity;
        set.v[set.n++] = (Hypha__V1__DpPart *)bundle;
        set.v[set.n++] = inbounds;
        set.v[set.n++] = outbounds;
    }
    for (size_t i = 0; rc == 0 && i < nout; i++) {
        const Hypha__V1__DpPart *e;
        bool dup = false;
        for (size_t k = 0; k < i; k++)
            dup = dup ||
                  !strcmp(S(outbounds->outbounds[k]->service), S(outbounds->outbounds[i]->service));
        if (!dup && (rc = hy_zone_dp_round_endpoints(r, dp->origin, dp->meta->mesh,
                                                     outbounds->outbounds[i]->service, &e)) == 0)
            set.v[set.n++] = (Hypha__V1__DpPart *)e;
    }
    char why[200];
    if (rc == 0 && (rc = hy_dp_parts_sort(&set)) == 0)
        rc = hy_dp_parts_assemble(&set, out, why, sizeof(why));
    hy_dp_parts_fini(&set);
    return rc;
}

int hy_zone_dp_config_compute(struct hy_zone_dp_round *round, const struct hy_resource *dp,
                              const char *cert, const char *chain, const char *bundle,
                              Hypha__V1__DpConfig **out)
{
    Hypha__V1__DpPart *id = NULL, *b = NULL, *in = NULL, *ob = NULL;
    int rc = hy_zone_dp_part_identity(dp, cert, chain, &id);
    if (rc == 0)
        rc = bundle_part(bundle, &b);
    if (rc == 0)
        rc = hy_zone_dp_parts_own(round, dp, &in, &ob);
    if (rc == 0)
        rc = hy_zone_dp_parts_assemble(round, dp, id, b, in, ob, out);
    Hypha__V1__DpPart *all[] = {id, b, in, ob};
    for (size_t i = 0; i < 4; i++)
        if (all[i])
            protobuf_c_message_free_unpacked(&all[i]->base, NULL);
    return rc;
}

/* ----- what a change alters ----- */

struct changed_policy {
    int type;
    const struct hy_resource *old, *now; /* NULL: not there; now is the round's */
    bool own_old;                        /* old is the impact's (hy_zone_dp_round_apply) */
};

struct hy_zone_dp_impact {
    bool all;
    /* the policies now (borrowed from the round): which services routes
     * make a proxy's backends */
    const struct hy_policy_world *world;
    char **meshes; /* Meshes that changed: every sidecar of each */
    size_t nmeshes;
    struct changed_policy *v;
    size_t n;
    /* Services ("MESH\nSERVICE") whose protocol (service_protocol, Kuma's
     * agreement rule) a Dataplane or ZoneIngress change turned: the
     * Outbounds of every sidecar with an outbound or a route backend to
     * one of them */
    char **protos;
    size_t nprotos;
    /* Meshes where a service came or went: the Outbounds of their
     * transparent sidecars (an outbound and a VIP per service) */
    char **tp_meshes;
    size_t ntp_meshes;
};

/* What a change of one type can alter, for both the impact and the round's
 * update. */
enum change_kind {
    CH_NOTHING, /* read by no config (insights, tokens, the zone's CA keys) */
    CH_SHARED,  /* only shared parts: endpoints, trust bundle (the round keeps them) */
    CH_MESH,    /* every sidecar of the mesh */
    CH_POLICY,  /* the sidecars the policy selects (*policy: its type) */
    CH_UNKNOWN, /* a type this does not know: everything */
};

static enum change_kind change_kind(const char *type, int *policy)
{
    static const char *const nothing[] = {
        "DataplaneInsight", "ZoneInsight", "ZoneIngressInsight", "Zone",     "TokenSigningKey",
        "TokenRevocation",  "MeshIssuer",  "MeshIssuerKey",      "MeshCaKey"};
    static const char *const shared[] = {"Dataplane", "ZoneIngress", "MeshCaRoot", "MeshTrust"};
    for (size_t k = 0; k < sizeof(nothing) / sizeof(*nothing); k++)
        if (!strcmp(type, nothing[k]))
            return CH_NOTHING;
    for (size_t k = 0; k < sizeof(shared) / sizeof(*shared); k++)
        if (!strcmp(type, shared[k]))
            return CH_SHARED;
    if (!strcmp(type, "Mesh"))
        return CH_MESH;
    for (int t = 0; t < HY_POLICY_NTYPES; t++)
        if (!strcmp(type, hy_policy_type_names[t])) {
            *policy = t;
            return CH_POLICY;
        }
    return CH_UNKNOWN;
}

static const struct hy_resource *policy_in(const struct hy_zone_dp_round *r, int t,
                                           const char *mesh, const char *name)
{
    for (size_t i = 0; r && i < r->world.n[t]; i++) {
        const Hypha__V1__Meta *m = r->world.v[t][i]->meta;
        if (!strcmp(S(m->mesh), mesh) && !strcmp(S(m->name), name))
            return r->world.v[t][i];
    }
    return NULL;
}

static int add_mesh(struct hy_zone_dp_impact *im, const char *mesh)
{
    char **v = realloc(im->meshes, (im->nmeshes + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    im->meshes = v;
    return (v[im->nmeshes++] = strdup(mesh)) ? 0 : HY_ENOMEM;
}

static int add_policy(struct hy_zone_dp_impact *im, struct changed_policy p)
{
    struct changed_policy *v = realloc(im->v, (im->n + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    im->v = v;
    v[im->n++] = p;
    return 0;
}

static size_t find_res(struct hy_resource *const *v, size_t n, const char *mesh, const char *name);

/* ----- protocols a Dataplane or ZoneIngress change may turn ----- */

/* A list of "MESH\nSERVICE" keys, without repeats. */
struct svc_keys {
    char **v;
    size_t n;
};

static int svc_key_add(struct svc_keys *k, const char *mesh, const char *service)
{
    if (!service)
        return 0;
    char *key = NULL;
    if (asprintf(&key, "%s\n%s", mesh, service) < 0)
        return HY_ENOMEM;
    for (size_t i = 0; i < k->n; i++)
        if (!strcmp(k->v[i], key)) {
            free(key);
            return 0;
        }
    char **v = realloc(k->v, (k->n + 1) * sizeof(*v));
    if (!v) {
        free(key);
        return HY_ENOMEM;
    }
    k->v = v;
    k->v[k->n++] = key;
    return 0;
}

static void svc_keys_fini(struct svc_keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    free(k->v);
    *k = (struct svc_keys){0};
}

/* Adds the services resource res (a Dataplane's inbounds, a ZoneIngress's
 * availableServices; NULL or another type: none) offers. */
static int svc_keys_of(struct svc_keys *k, const char *type, const struct hy_resource *res)
{
    int rc = 0;
    if (!res)
        return 0;
    if (!strcmp(type, "Dataplane")) {
        const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)res->spec;
        size_t n = d->networking ? d->networking->n_inbound : 0;
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = svc_key_add(k, S(res->meta->mesh),
                             hy_zone_dp_service_of(d->networking->inbound[i]));
    } else if (!strcmp(type, "ZoneIngress")) {
        const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)res->spec;
        for (size_t i = 0; rc == 0 && i < zi->n_available_services; i++) {
            const Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
            rc = svc_key_add(k, S(as->mesh), tag(as->n_tags, (void *)as->tags, HY_TAG_SERVICE));
        }
    }
    return rc;
}

/* The distinct origins of r's Dataplanes ("" for local ones): the zones
 * whose callers' protocols are computed. */
static int origins_of(const struct hy_zone_dp_round *r, struct svc_keys *o)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->ndps; i++) {
        const char *org = S(r->dps[i]->origin);
        bool seen = false;
        for (size_t k = 0; !seen && k < o->n; k++)
            seen = !strcmp(o->v[k], org);
        if (seen)
            continue;
        char **v = realloc(o->v, (o->n + 1) * sizeof(*v));
        if (!v || !(v[o->n] = strdup(org))) {
            if (v)
                o->v = v;
            return HY_ENOMEM;
        }
        o->v = v;
        o->n++;
    }
    return rc;
}

/* Each protocol of key ("MESH\nSERVICE") as callers of each origin see it
 * in r, joined, after '+' when the mesh has the service (a VIP: an
 * outbound of every transparent sidecar) and '-' when not: what the
 * comparison before and after a change reads.
 * NULL: out of memory. */
static char *protos_of(const struct hy_zone_dp_round *r, const struct svc_keys *origins,
                       const char *key)
{
    const char *nl = strchr(key, '\n');
    char *mesh = strndup(key, (size_t)(nl - key));
    char *out = strdup(mesh && find_vip(r, mesh, nl + 1) ? "+" : "-");
    for (size_t i = 0; mesh && out && i < origins->n; i++) {
        char *more = NULL;
        if (asprintf(&more, "%s%s,", out, service_protocol(r, origins->v[i], mesh, nl + 1)) < 0)
            more = NULL;
        free(out);
        out = more;
    }
    free(mesh);
    return out;
}

/* The services some Dataplane or ZoneIngress changes touch, with their
 * protocols as callers of each origin saw them before the changes. */
struct proto_watch {
    struct svc_keys svcs, origins;
    char **before; /* per key of svcs */
};

/* Takes the protocols of w->svcs (filled by the caller) in r, before,
 * for callers of the origins the Dataplanes of round at have. */
static int watch_before(struct proto_watch *w, const struct hy_zone_dp_round *at,
                        const struct hy_zone_dp_round *r)
{
    if (!w->svcs.n)
        return 0;
    int rc = origins_of(at, &w->origins);
    if (rc == 0 && !(w->before = calloc(w->svcs.n, sizeof(*w->before))))
        rc = HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < w->svcs.n; i++)
        if (!(w->before[i] = protos_of(r, &w->origins, w->svcs.v[i])))
            rc = HY_ENOMEM;
    return rc;
}

/* Moves into im the keys whose protocols differ between before and r now. */
static int watch_after(struct proto_watch *w, struct hy_zone_dp_impact *im,
                       const struct hy_zone_dp_round *r)
{
    for (size_t i = 0; i < w->svcs.n; i++) {
        char *now = protos_of(r, &w->origins, w->svcs.v[i]);
        if (!now)
            return HY_ENOMEM;
        bool same = w->before[i] && !strcmp(w->before[i], now);
        /* a service came or went: every transparent sidecar of the mesh
         * has an outbound and a VIP more or less (every sidecar, simply) */
        bool presence = w->before[i] && w->before[i][0] != now[0];
        free(now);
        if (same)
            continue;
        if (presence) {
            const char *nl = strchr(w->svcs.v[i], '\n');
            char *mesh = strndup(w->svcs.v[i], (size_t)(nl - w->svcs.v[i]));
            bool had = false;
            for (size_t k = 0; mesh && k < im->ntp_meshes && !had; k++)
                had = !strcmp(im->tp_meshes[k], mesh);
            char **v =
                mesh && !had ? realloc(im->tp_meshes, (im->ntp_meshes + 1) * sizeof(*v)) : NULL;
            if (v) {
                im->tp_meshes = v;
                v[im->ntp_meshes++] = mesh;
            } else {
                free(mesh);
                if (!had)
                    return HY_ENOMEM;
            }
        }
        char **v = realloc(im->protos, (im->nprotos + 1) * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        im->protos = v;
        im->protos[im->nprotos++] = w->svcs.v[i];
        w->svcs.v[i] = NULL;
    }
    return 0;
}

static void watch_fini(struct proto_watch *w)
{
    for (size_t i = 0; w->before && i < w->svcs.n; i++)
        free(w->before[i]);
    free(w->before);
    svc_keys_fini(&w->svcs);
    svc_keys_fini(&w->origins);
}

static bool is_instance_type(const char *type)
{
    return !strcmp(type, "Dataplane") || !strcmp(type, "ZoneIngress");
}

/* The protocol part of the impact from rounds old and now, for the
 * Dataplane and ZoneIngress changes among ch. */
static int impact_protocols(struct hy_zone_dp_impact *im, const struct hy_zone_dp_round *old,
                            const struct hy_zone_dp_round *now, const struct hy_store_changes *ch)
{
    struct proto_watch w = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ch->n; i++) {
        const struct hy_store_change *c = &ch->v[i];
        if (!is_instance_type(c->type))
            continue;
        bool dp = !strcmp(c->type, "Dataplane");
        struct hy_resource *const *ov = dp ? old->dps : old->zis;
        struct hy_resource *const *nv = dp ? now->dps : now->zis;
        size_t on = dp ? old->ndps : old->nzis, nn = dp ? now->ndps : now->nzis;
        size_t oi = find_res(ov, on, S(c->mesh), c->name),
               ni = find_res(nv, nn, S(c->mesh), c->name);
        rc = svc_keys_of(&w.svcs, c->type, oi < on ? ov[oi] : NULL);
        if (rc == 0)
            rc = svc_keys_of(&w.svcs, c->type, ni < nn ? nv[ni] : NULL);
    }
    if (rc == 0)
        rc = watch_before(&w, now, old);
    if (rc == 0)
        rc = watch_after(&w, im, now);
    watch_fini(&w);
    return rc;
}

static int impact_add(struct hy_zone_dp_impact *im, const struct hy_zone_dp_round *old,
                      const struct hy_zone_dp_round *now, const struct hy_store_change *c)
{
    int t = 0;
    switch (change_kind(c->type, &t)) {
    case CH_MESH:
        return add_mesh(im, S(c->name));
    case CH_POLICY:
        return add_policy(im, (struct changed_policy){t, policy_in(old, t, S(c->mesh), S(c->name)),
                                                      policy_in(now, t, S(c->mesh), S(c->name)),
                                                      false});
    case CH_UNKNOWN:
        im->all = true;
        return 0;
    default:
        return 0;
    }
}

int hy_zone_dp_impact_new(const struct hy_zone_dp_round *old, const struct hy_zone_dp_round *now,
                          const struct hy_store_changes *ch, struct hy_zone_dp_impact **out)
{
    struct hy_zone_dp_impact *im = calloc(1, sizeof(*im));
    *out = NULL;
    if (!im)
        return HY_ENOMEM;
    im->all = !old || !ch;
    im->world = now ? &now->world : NULL;
    int rc = 0;
    for (size_t i = 0; rc == 0 && !im->all && i < ch->n; i++)
        rc = impact_add(im, old, now, &ch->v[i]);
    if (rc == 0 && !im->all && now)
        rc = impact_protocols(im, old, now, ch);
    if (rc < 0) {
        hy_zone_dp_impact_free(im);
        return rc;
    }
    *out = im;
    return 0;
}

void hy_zone_dp_impact_free(struct hy_zone_dp_impact *im)
{
    if (!im)
        return;
    for (size_t i = 0; i < im->nmeshes; i++)
        free(im->meshes[i]);
    free(im->meshes);
    for (size_t i = 0; i < im->n; i++)
        if (im->v[i].own_old)
            hy_resource_free((struct hy_resource *)im->v[i].old);
    free(im->v);
    for (size_t i = 0; i < im->nprotos; i++)
        free(im->protos[i]);
    free(im->protos);
    for (size_t i = 0; i < im->ntp_meshes; i++)
        free(im->tp_meshes[i]);
    free(im->tp_meshes);
    free(im);
}

/* ----- a round brought up to date with the changes since ----- */

/* The index of mesh/name in v[0..n), or n. */
static size_t find_res(struct hy_resource *const *v, size_t n, const char *mesh, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(S(v[i]->meta->mesh), mesh) && !strcmp(S(v[i]->meta->name), name))
            return i;
    return n;
}

/* Puts now (NULL: deleted) in place of mesh/name in *v; the replaced one
 * is handed back in *old (NULL if it was not there) when old is given,
 * freed otherwise. */
static int replace_res(struct hy_resource ***v, size_t *n, size_t *cap, const char *mesh,
                       const char *name, struct hy_resource *now, struct hy_resource **old)
{
    size_t i = find_res(*v, *n, mesh, name);
    struct hy_resource *was = i < *n ? (*v)[i] : NULL;
    if (was && now) {
        (*v)[i] = now;
    } else if (was) {
        memmove(&(*v)[i], &(*v)[i + 1], (*n - i - 1) * sizeof(**v));
        --*n;
    } else if (now) {
        struct keep k = {v, n, cap};
        bool take = false;
        if (keep_one(&k, now, &take) < 0) {
            hy_resource_free(now);
            return HY_ENOMEM;
        }
    }
    if (old)
        *old = was;
    else
        hy_resource_free(was);
    return 0;
}

/* One change: the round takes what the store holds now for its key. */
static int apply_one(struct hy_zone_dp_round *r, struct hy_store *s,
                     const struct hy_store_change *c, struct hy_zone_dp_impact *im, bool *shared)
{
    int t = 0;
    enum change_kind kind = change_kind(c->type, &t);
    if (kind == CH_NOTHING)
        return 0;
    if (kind == CH_UNKNOWN) {
        im->all = true;
        return 0;
    }
    const char *mesh = S(c->mesh);
    struct hy_resource *now = NULL;
    int rc = hy_store_get(s, c->type, mesh[0] ? mesh : NULL, c->name, &now);
    if (rc < 0 && rc != HY_ENOTFOUND)
        return rc;
    if (kind == CH_MESH) {
        *shared = true; /* its roots may go with it */
        rc = replace_res(&r->meshes, &r->nmeshes, &r->capmeshes, "", c->name, now, NULL);
        return rc == 0 ? add_mesh(im, S(c->name)) : rc;
    }
    if (kind == CH_SHARED) {
        struct keep k = !strcmp(c->type, "Dataplane") ? (struct keep){&r->dps, &r->ndps, &r->capdps}
                        : !strcmp(c->type, "ZoneIngress")
                            ? (struct keep){&r->zis, &r->nzis, &r->capzis}
                        : !strcmp(c->type, "MeshCaRoot")
                            ? (struct keep){&r->roots, &r->nroots, &r->caproots}
                            : (struct keep){&r->trusts, &r->ntrusts, &r->captrusts};
        *shared = true;
        return replace_res(k.v, k.n, k.cap, mesh, c->name, now, NULL);
    }
    struct hy_resource *old = NULL;
    size_t cap_t = r->world.n[t];
    rc = replace_res(&r->world.v[t], &r->world.n[t], &cap_t, mesh, c->name, now, &old);
    if (rc == 0 && !now && !old)
        return 0; /* a policy put and deleted since: nothing to do */
    if (rc == 0)
        rc = add_policy(im, (struct changed_policy){t, old, now, true});
    if (rc < 0)
        hy_resource_free(old);
    return rc;
}

int hy_zone_dp_round_apply(struct hy_zone_dp_round *r, struct hy_store *s,
                           const struct hy_store_changes *ch, struct hy_zone_dp_impact **out)
{
    struct hy_zone_dp_impact *im = calloc(1, sizeof(*im));
    *out = NULL;
    if (!im)
        return HY_ENOMEM;
    im->world = &r->world;
    bool shared = false;
    int rc = 0;
    /* the services changed instances offer, before and after, with their
     * protocols before: the round is changed in place */
    struct proto_watch w = {0};
    for (size_t i = 0; rc == 0 && i < ch->n; i++) {
        const struct hy_store_change *c = &ch->v[i];
        if (!is_instance_type(c->type))
            continue;
        bool dp = !strcmp(c->type, "Dataplane");
        struct hy_resource *const *v = dp ? r->dps : r->zis;
        size_t n = dp ? r->ndps : r->nzis, k = find_res(v, n, S(c->mesh), c->name);
        struct hy_resource *now = NULL;
        rc = hy_store_get(s, c->type, S(c->mesh)[0] ? c->mesh : NULL, c->name, &now);
        if (rc == HY_ENOTFOUND)
            rc = 0;
        if (rc == 0)
            rc = svc_keys_of(&w.svcs, c->type, k < n ? v[k] : NULL);
        if (rc == 0)
            rc = svc_keys_of(&w.svcs, c->type, now);
        hy_resource_free(now);
    }
    if (rc == 0)
        rc = watch_before(&w, r, r);
    for (size_t i = 0; rc == 0 && i < ch->n; i++) {
        bool seen = false; /* one key changed twice: its state now, once */
        for (size_t k = 0; !seen && k < i; k++)
            seen = !strcmp(ch->v[k].type, ch->v[i].type) &&
                   !strcmp(S(ch->v[k].mesh), S(ch->v[i].mesh)) &&
                   !strcmp(ch->v[k].name, ch->v[i].name);
        if (!seen)
            rc = apply_one(r, s, &ch->v[i], im, &shared);
    }
    if (rc == 0 && shared) { /* endpoints and bundles made again, on demand */
        drop_shared(r);
        free(r->eps);
        r->eps = NULL;
        r->neps = 0;
        rc = index_endpoints(r);
    }
    if (rc == 0)
        rc = watch_after(&w, im, r);
    watch_fini(&w);
    if (rc < 0) { /* the round is not what the store holds: the caller loads one */
        hy_zone_dp_impact_free(im);
        return rc;
    }
    *out = im;
    return 0;
}

struct to_match {
    const Hypha__V1__Dataplane *d;
    char **backends; /* the proxy's backend-only services (routes' backendRefs) */
    size_t nbackends;
    bool hit;
};

/* Does a `to` entry's targetRef match one of the proxy's outbounds? */
static int to_entry(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                    const struct hy_policy_origin *o)
{
    struct to_match *m = ud;
    (void)conf;
    (void)o;
    size_t nout = m->d->networking ? m->d->networking->n_outbound : 0;
    for (size_t i = 0; !m->hit && i < nout; i++) {
        const Hypha__V1__Dataplane__Networking__Outbound *ob = m->d->networking->outbound[i];
        struct hy_policy_tag dest[] = {
            {HY_TAG_SERVICE, S(tag(ob->n_tags, (void *)ob->tags, HY_TAG_SERVICE))}};
        struct hy_policy_tags tags = {dest, 1};
        m->hit = hy_policy_ref_matches(ref, &tags);
    }
    for (size_t i = 0; !m->hit && i < m->nbackends; i++) {
        struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, m->backends[i]}};
        struct hy_policy_tags tags = {dest, 1};
        m->hit = hy_policy_ref_matches(ref, &tags);
    }
    return 0;
}

static int count_entry(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                       const struct hy_policy_origin *o)
{
    (void)ref, (void)conf, (void)o;
    ++*(size_t *)ud;
    return 0;
}

/* What policy r (of type t; NULL: none) alters of proxy p's parts; a
 * `to` entry reaches it through its outbounds and the backend-only ones
 * its routes add (world: the policies now; NULL: none). */
static unsigned policy_impact(int t, const struct hy_resource *r, const struct hy_policy_proxy *p,
                              const struct hy_policy_world *world)
{
    if (!r || strcmp(S(r->meta->mesh), S(p->dp->meta->mesh)))
        return 0;
    struct hy_policy_set set = {0};
    struct hy_resource *one = (struct hy_resource *)r;
    if (hy_policy_select(&one, 1, p, &set) < 0)
        return HY_ZONE_DP_INBOUNDS | HY_ZONE_DP_OUTBOUNDS; /* out of memory: be safe */
    unsigned what = 0;
    size_t inbound_entries = 0; /* from and rules reach the inbounds */
    if (set.n && (hy_policy_each_entry(&set, "from", SIZE_MAX, count_entry, &inbound_entries) < 0 ||
                  hy_policy_each_entry(&set, "rules", SIZE_MAX, count_entry, &inbound_entries) < 0))
        inbound_entries = 1;
    if (set.n &&
        (t == HY_POLICY_MTP || t == HY_POLICY_METRIC || t == HY_POLICY_TRACE || inbound_entries))
        what = HY_ZONE_DP_INBOUNDS;
    if (set.n && t != HY_POLICY_MTP && t != HY_POLICY_METRIC && t != HY_POLICY_TRACE) {
        struct to_match m = {(const Hypha__V1__Dataplane *)p->dp->spec, NULL, 0, false};
        int rc = hy_policy_each_entry(&set, "to", SIZE_MAX, to_entry, &m);
        if (rc == 0 && !m.hit && world) {
            rc = hy_policy_backend_services(world, p, &m.backends, &m.nbackends);
            if (rc == 0 && m.nbackends)
                rc = hy_policy_each_entry(&set, "to", SIZE_MAX, to_entry, &m);
        }
        if (rc < 0 || m.hit)
            what |= HY_ZONE_DP_OUTBOUNDS;
        hy_policy_strings_free(m.backends, m.nbackends);
    }
    hy_policy_set_fini(&set);
    return what;
}

static bool in_protos(const struct hy_zone_dp_impact *im, const char *mesh, const char *service)
{
    size_t ml = strlen(mesh);
    for (size_t i = 0; service && i < im->nprotos; i++)
        if (!strncmp(im->protos[i], mesh, ml) && im->protos[i][ml] == '\n' &&
            !strcmp(im->protos[i] + ml + 1, service))
            return true;
    return false;
}

/* Does proxy p call (an outbound, or a route's backend) a service whose
 * protocol turned? Out of memory: true. */
static bool calls_protos(const struct hy_zone_dp_impact *im, const struct hy_policy_proxy *p)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)p->dp->spec;
    const char *mesh = S(p->dp->meta->mesh);
    size_t nout = d->networking ? d->networking->n_outbound : 0;
    for (size_t i = 0; i < nout; i++) {
        const Hypha__V1__Dataplane__Networking__Outbound *ob = d->networking->outbound[i];
        if (in_protos(im, mesh, tag(ob->n_tags, (void *)ob->tags, HY_TAG_SERVICE)))
            return true;
    }
    char **backends = NULL;
    size_t nbackends = 0;
    if (!im->world || hy_policy_backend_services(im->world, p, &backends, &nbackends) < 0)
        return im->world != NULL;
    bool hit = false;
    for (size_t i = 0; !hit && i < nbackends; i++)
        hit = in_protos(im, mesh, backends[i]);
    hy_policy_strings_free(backends, nbackends);
    return hit;
}

/* Is dp a transparent sidecar (an outbound per service of its mesh) whose
 * mesh had a service come, go or turn its protocol? */
static bool transparent_touched(const struct hy_zone_dp_impact *im, const struct hy_resource *dp)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    if (!d->networking || !d->networking->transparent_proxying)
        return false;
    const char *mesh = S(dp->meta->mesh);
    size_t n = strlen(mesh);
    for (size_t i = 0; i < im->ntp_meshes; i++)
        if (!strcmp(im->tp_meshes[i], mesh))
            return true;
    for (size_t i = 0; i < im->nprotos; i++)
        if (!strncmp(im->protos[i], mesh, n) && im->protos[i][n] == '\n')
            return true;
    return false;
}

unsigned hy_zone_dp_impact_on(const struct hy_zone_dp_impact *im, const struct hy_resource *dp)
{
    const unsigned every = HY_ZONE_DP_INBOUNDS | HY_ZONE_DP_OUTBOUNDS;
    if (im->all)
        return every;
    for (size_t i = 0; i < im->nmeshes; i++)
        if (!strcmp(im->meshes[i], S(dp->meta->mesh)))
            return every;
    struct hy_policy_proxy p = {dp, dp->origin};
    unsigned what = 0;
    for (size_t i = 0; what != every && i < im->n; i++)
        what |= policy_impact(im->v[i].type, im->v[i].old, &p, im->world) |
                policy_impact(im->v[i].type, im->v[i].now, &p, im->world);
    if (!(what & HY_ZONE_DP_OUTBOUNDS) && im->nprotos && calls_protos(im, &p))
        what |= HY_ZONE_DP_OUTBOUNDS;
    if (!(what & HY_ZONE_DP_OUTBOUNDS) && transparent_touched(im, dp))
        what |= HY_ZONE_DP_OUTBOUNDS;
    return what;
}
