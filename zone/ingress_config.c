/* What a zone ingress is told, and what it advertises: for every service
 * this zone's sidecars serve (per mesh), the SNI remote sidecars send for
 * it and the local endpoints (sidecar inbounds) to relay to. The same
 * list, as counts, becomes the ZoneIngress's availableServices, which KDS
 * carries to the other zones. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane.pb-c.h"
#include "dp_server.h"
#include "error.h"
#include "policy.h"
#include "sni.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")
#define HY_ZONE_SUBSET_TAGS 32 /* an inbound with more tags has no subset route */

struct routes_walk {
    const char *zone;
    Hypha__V1__DpIngressConfig *c;
};

static Hypha__V1__DpIngressRoute *route_of(Hypha__V1__DpIngressConfig *c, const char *mesh,
                                           const char *service)
{
    for (size_t i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i]->mesh, mesh) && !strcmp(c->routes[i]->service, service))
            return c->routes[i];
    Hypha__V1__DpIngressRoute *r = malloc(sizeof(*r));
    Hypha__V1__DpIngressRoute **v = realloc(c->routes, (c->n_routes + 1) * sizeof(*v));
    if (!r || !v) {
        free(r);
        if (v)
            c->routes = v;
        return NULL;
    }
    c->routes = v;
    hypha__v1__dp_ingress_route__init(r);
    char sni[HY_SNI_MAX];
    hy_sni_for(service, mesh, sni, sizeof(sni));
    r->sni = strdup(sni);
    r->mesh = strdup(mesh);
    r->service = strdup(service);
    v[c->n_routes++] = r;
    return r->sni && r->mesh && r->service ? r : NULL;
}

/* The route for the instances of service whose inbound tags, the service
 * tag left out, are exactly those of in: found by its subset SNI, or
 * added. NULL: in has no other tag (the service's route is enough), or
 * out of memory (*oom). */
static Hypha__V1__DpIngressRoute *
subset_route_of(Hypha__V1__DpIngressConfig *c, const char *mesh, const char *service,
                const Hypha__V1__Dataplane__Networking__Inbound *in, bool *oom)
{
    const char *keys[HY_ZONE_SUBSET_TAGS], *values[HY_ZONE_SUBSET_TAGS];
    size_t n = 0;
    for (size_t k = 0; k < in->n_tags && n < HY_ZONE_SUBSET_TAGS; k++)
        if (in->tags[k]->key && strcmp(in->tags[k]->key, HY_TAG_SERVICE)) {
            keys[n] = in->tags[k]->key;
            values[n++] = S(in->tags[k]->value);
        }
    if (!n || n == HY_ZONE_SUBSET_TAGS)
        return NULL; /* no tag but the service's; or more than a subset SNI takes */
    char sni[HY_SNI_MAX];
    hy_sni_for_subset(service, mesh, keys, values, n, sni, sizeof(sni));
    for (size_t i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i]->sni, sni))
            return c->routes[i];
    Hypha__V1__DpIngressRoute *r = malloc(sizeof(*r));
    Hypha__V1__DpIngressRoute **v = realloc(c->routes, (c->n_routes + 1) * sizeof(*v));
    if (v)
        c->routes = v;
    if (!r || !v) {
        free(r);
        *oom = true;
        return NULL;
    }
    hypha__v1__dp_ingress_route__init(r);
    v[c->n_routes++] = r;
    r->sni = strdup(sni);
    r->mesh = strdup(mesh);
    r->service = strdup(service);
    if (!r->sni || !r->mesh || !r->service || !(r->tags = calloc(n, sizeof(*r->tags)))) {
        *oom = true;
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        Hypha__V1__DpIngressRoute__TagsEntry *t = malloc(sizeof(*t));
        if (!t) {
            *oom = true;
            return NULL;
        }
        hypha__v1__dp_ingress_route__tags_entry__init(t);
        r->tags[r->n_tags++] = t;
        t->key = strdup(keys[k]);
        t->value = strdup(values[k]);
        if (!t->key || !t->value) {
            *oom = true;
            return NULL;
        }
    }
    return r;
}

/* One more endpoint on r: the inbound in of Dataplane res. */
static int add_endpoint(Hypha__V1__DpIngressRoute *r, const struct hy_resource *res,
                        const Hypha__V1__Dataplane__Networking__Inbound *in, const char *zone)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)res->spec;
    Hypha__V1__DpEndpoint *e = malloc(sizeof(*e));
    Hypha__V1__DpEndpoint **v = e ? realloc(r->endpoints, (r->n_endpoints + 1) * sizeof(*v)) : NULL;
    if (!v) {
        free(e);
        return HY_ENOMEM;
    }
    r->endpoints = v;
    /* the instances' protocol: tcp as soon as two differ (Kuma's rule) */
    const char *proto = hy_zone_dp_protocol_of(in);
    if (!r->n_endpoints || strcmp(S(r->protocol), proto)) {
        free(r->protocol);
        if (!(r->protocol = strdup(r->n_endpoints ? "tcp" : proto))) {
            free(e);
            return HY_ENOMEM;
        }
    }
    hypha__v1__dp_endpoint__init(e);
    v[r->n_endpoints++] = e;
    e->address = strdup(S(d->networking->address));
    e->has_port = 1;
    e->port = in->port;
    e->name = strdup(S(res->meta->name));
    e->zone = strdup(zone);
    return e->address && e->name && e->zone ? 0 : HY_ENOMEM;
}

static int add_local(void *ud, struct hy_resource *res, bool *take)
{
    struct routes_walk *w = ud;
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)res->spec;
    (void)take;
    if (!d->networking || (res->origin && strcmp(res->origin, w->zone)))
        return 0;
    for (size_t i = 0; i < d->networking->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        const char *svc = hy_zone_dp_service_of(in);
        if (!svc || !in->has_port)
            continue;
        Hypha__V1__DpIngressRoute *r = route_of(w->c, S(res->meta->mesh), svc);
        int rc = r ? add_endpoint(r, res, in, w->zone) : HY_ENOMEM;
        bool oom = false;
        Hypha__V1__DpIngressRoute *sr =
            rc == 0 ? subset_route_of(w->c, S(res->meta->mesh), svc, in, &oom) : NULL;
        if (oom)
            return HY_ENOMEM;
        if (sr && (rc = add_endpoint(sr, res, in, w->zone)) < 0)
            return rc;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A subset route's protocol is its service's (what every instance of it
 * agrees on), so that remote callers see one protocol per service. */
static int subset_protocols(Hypha__V1__DpIngressConfig *c)
{
    for (size_t i = 0; i < c->n_routes; i++) {
        Hypha__V1__DpIngressRoute *r = c->routes[i];
        if (!r->n_tags)
            continue;
        for (size_t k = 0; k < c->n_routes; k++) {
            const Hypha__V1__DpIngressRoute *s = c->routes[k];
            if (s->n_tags || strcmp(s->mesh, r->mesh) || strcmp(s->service, r->service))
                continue;
            free(r->protocol);
            if (!(r->protocol = strdup(S(s->protocol))))
                return HY_ENOMEM;
            break;
        }
    }
    return 0;
}

int hy_zone_ingress_config_build(struct hy_store *s, const char *zone,
                                 Hypha__V1__DpIngressConfig **out)
{
    Hypha__V1__DpIngressConfig *c = malloc(sizeof(*c));
    if (!c)
        return HY_ENOMEM;
    hypha__v1__dp_ingress_config__init(c);
    struct routes_walk w = {zone, c};
    int rc = (c->zone = strdup(zone)) ? hy_store_each(s, "Dataplane", add_local, &w) : HY_ENOMEM;
    if (rc == 0)
        rc = subset_protocols(c);
    if (rc == 0)
        rc = hy_zone_dp_version(&c->base, &c->version);
    if (rc < 0) {
        hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
        return rc;
    }
    *out = c;
    return 0;
}

int hy_zone_ingress_available(const Hypha__V1__DpIngressConfig *c, Hypha__V1__ZoneIngress *zi)
{
    for (size_t i = 0; i < zi->n_available_services; i++)
        protobuf_c_message_free_unpacked(&zi->available_services[i]->base, NULL);
    free(zi->available_services);
    zi->available_services = NULL;
    zi->n_available_services = 0;
    if (!c->n_routes)
        return 0;
    if (!(zi->available_services = calloc(c->n_routes, sizeof(*zi->available_services))))
        return HY_ENOMEM;
    for (size_t i = 0; i < c->n_routes; i++) {
        Hypha__V1__ZoneIngress__AvailableService *as = malloc(sizeof(*as));
        Hypha__V1__ZoneIngress__AvailableService__TagsEntry *t = malloc(sizeof(*t));
        /* the protocol tag when the instances agree on one other than tcp
         * (absent is tcp), so other zones' callers proxy it alike */
        const Hypha__V1__DpIngressRoute *r = c->routes[i];
        const char *proto = r->protocol;
        /* (a subset entry carries the instances' own tags instead) */
        bool tagged = proto && strcmp(proto, "tcp") && !r->n_tags;
        Hypha__V1__ZoneIngress__AvailableService__TagsEntry *pt =
            tagged ? malloc(sizeof(*pt)) : NULL;
        Hypha__V1__ZoneIngress__AvailableService__TagsEntry **tv =
            malloc((2 + r->n_tags) * sizeof(*tv));
        if (!as || !t || !tv || (tagged && !pt)) {
            free(pt);
            free(as);
            free(t);
            free(tv);
            return HY_ENOMEM;
        }
        hypha__v1__zone_ingress__available_service__init(as);
        hypha__v1__zone_ingress__available_service__tags_entry__init(t);
        zi->available_services[zi->n_available_services++] = as;
        t->key = strdup("hypha.io/service");
        t->value = strdup(c->routes[i]->service);
        tv[0] = t;
        as->tags = tv;
        as->n_tags = 1;
        if (tagged) {
            hypha__v1__zone_ingress__available_service__tags_entry__init(pt);
            tv[as->n_tags++] = pt;
            pt->key = strdup("hypha.io/protocol");
            pt->value = strdup(proto);
            if (!pt->key || !pt->value)
                return HY_ENOMEM;
        }
        /* a subset route: its tag set, for other zones' MeshServiceSubsets */
        for (size_t k = 0; k < r->n_tags; k++) {
            Hypha__V1__ZoneIngress__AvailableService__TagsEntry *x = malloc(sizeof(*x));
            if (!x)
                return HY_ENOMEM;
            hypha__v1__zone_ingress__available_service__tags_entry__init(x);
            tv[as->n_tags++] = x;
            x->key = strdup(S(r->tags[k]->key));
            x->value = strdup(S(r->tags[k]->value));
            if (!x->key || !x->value)
                return HY_ENOMEM;
        }
        as->has_subset = r->n_tags > 0;
        as->subset = r->n_tags > 0;
        as->mesh = strdup(c->routes[i]->mesh);
        as->has_instances = 1;
        as->instances = (uint32_t)c->routes[i]->n_endpoints;
        if (!t->key || !t->value || !as->mesh)
            return HY_ENOMEM;
    }
    return 0;
}
