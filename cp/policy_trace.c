/* MeshTrace in the policy engine (policy.h): the one top-level `default` of
 * each policy selecting a proxy, merged in the engine's order, and what the
 * sidecar gets of it (its backend, span tags, sampling, who it is). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane.pb-c.h"
#include "error.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "validate.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")
#define ALL 1000000u /* sampling unset: every request */

int hy_policy_trace_merge(const struct hy_policy_set *s, struct hy_policy_conf *out)
{
    return hy_policy_default_merge(s, &hypha__v1__mesh_trace__descriptor, out);
}

static uint32_t ppm_of(const char *pct)
{
    uint32_t v;
    return pct && hy_percentage_per_million(pct, &v) ? v : ALL;
}

static int dup_to(char **dst, const char *s)
{
    if (!s)
        return 0;
    return (*dst = strdup(s)) ? 0 : HY_ENOMEM;
}

static int add_tags(Hypha__V1__DpTrace *t, const Hypha__V1__MeshTrace__Conf *c)
{
    if (!c->n_tags)
        return 0;
    if (!(t->tags = calloc(c->n_tags, sizeof(*t->tags))))
        return HY_ENOMEM;
    for (size_t i = 0; i < c->n_tags; i++) {
        const Hypha__V1__MeshTrace__Tag *g = c->tags[i];
        Hypha__V1__DpTraceTag *x = malloc(sizeof(*x));
        if (!x)
            return HY_ENOMEM;
        hypha__v1__dp_trace_tag__init(x);
        t->tags[t->n_tags++] = x;
        int rc = dup_to(&x->name, g->name);
        if (rc == 0)
            rc = dup_to(&x->literal, g->literal);
        if (rc == 0 && g->header)
            rc = dup_to(&x->header, g->header->name);
        if (rc == 0 && g->header)
            rc = dup_to(&x->header_default, g->header->default_);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The proxy's service: its first inbound's hypha.io/service, else its name. */
static const char *service_of(const struct hy_resource *dp)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    if (d->networking && d->networking->n_inbound) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[0];
        for (size_t k = 0; k < in->n_tags; k++)
            if (in->tags[k]->key && !strcmp(in->tags[k]->key, HY_TAG_SERVICE))
                return in->tags[k]->value;
    }
    return dp->meta->name;
}

static int fill(Hypha__V1__DpTrace *t, const Hypha__V1__MeshTrace__Conf *c,
                const struct hy_resource *dp, const char *zone)
{
    const Hypha__V1__MeshTrace__Backend *b = c->n_backends ? c->backends[0] : NULL;
    int rc = 0;
    if (b && b->type && !strcmp(b->type, "Zipkin") && b->zipkin) {
        rc = dup_to(&t->type, "Zipkin");
        if (rc == 0)
            rc = dup_to(&t->url, b->zipkin->url);
        t->has_trace_id128bit = 1;
        t->trace_id128bit = b->zipkin->has_trace_id128bit && b->zipkin->trace_id128bit;
        t->has_shared_span_context = 1;
        t->shared_span_context =
            !b->zipkin->has_shared_span_context || b->zipkin->shared_span_context;
    } else if (b && b->type && !strcmp(b->type, "OpenTelemetry") && b->open_telemetry) {
        rc = dup_to(&t->type, "OpenTelemetry");
        if (rc == 0)
            rc = dup_to(&t->endpoint, b->open_telemetry->endpoint);
        t->has_trace_id128bit = t->trace_id128bit = 1; /* OTLP ids are 16 bytes */
        t->has_shared_span_context = 1;                /* W3C: a span per hop */
    } /* Datadog: no backend (policy_warn.c reports it) */
    const Hypha__V1__MeshTrace__Sampling *sm = c->sampling;
    t->has_overall = t->has_client = t->has_random = 1;
    t->overall = ppm_of(sm ? sm->overall : NULL);
    t->client = ppm_of(sm ? sm->client : NULL);
    t->random = ppm_of(sm ? sm->random : NULL);
    if (rc == 0)
        rc = add_tags(t, c);
    if (rc == 0)
        rc = dup_to(&t->service, service_of(dp));
    if (rc == 0)
        rc = dup_to(&t->zone, zone);
    return rc;
}

int hy_policy_trace(const struct hy_policy_set *s, const struct hy_resource *dp, const char *zone,
                    Hypha__V1__DpTrace **out)
{
    *out = NULL;
    struct hy_policy_conf c;
    int rc = hy_policy_trace_merge(s, &c);
    if (rc < 0 || !c.conf)
        return rc;
    if (!((const Hypha__V1__MeshTrace__Conf *)c.conf)->n_backends) {
        hy_policy_conf_fini(&c); /* Kuma: no backend, no tracing (headers left alone) */
        return 0;
    }
    Hypha__V1__DpTrace *t = malloc(sizeof(*t));
    if (!t) {
        hy_policy_conf_fini(&c);
        return HY_ENOMEM;
    }
    hypha__v1__dp_trace__init(t);
    rc = fill(t, (const Hypha__V1__MeshTrace__Conf *)c.conf, dp, zone);
    /* the policy that chose the backends (or else the last one merged) */
    const struct hy_policy_origin *o = hy_policy_conf_origin(&c, "backends");
    if (!o && c.nprov)
        o = &c.prov[c.nprov - 1].origin;
    if (rc == 0 && o) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s/%s default", o->r->type->name, S(o->r->meta->name));
        rc = dup_to(&t->origin, buf);
    }
    hy_policy_conf_fini(&c);
    if (rc < 0) {
        hypha__v1__dp_trace__free_unpacked(t, NULL);
        return rc;
    }
    *out = t;
    return 0;
}
