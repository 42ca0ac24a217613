/* MeshMetric in the policy engine (policy.h): the one top-level `default`
 * of each policy selecting a proxy, merged in the engine's order, and what
 * the sidecar gets of it (its Prometheus endpoint, the apps it scrapes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane.pb-c.h"
#include "error.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

int hy_policy_metric_merge(const struct hy_policy_set *s, struct hy_policy_conf *out)
{
    return hy_policy_default_merge(s, &hypha__v1__mesh_metric__descriptor, out);
}

static const Hypha__V1__MeshMetric__Prometheus *
first_prometheus(const Hypha__V1__MeshMetric__Conf *c)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i]->type && !strcmp(c->backends[i]->type, "Prometheus") &&
            c->backends[i]->prometheus)
            return c->backends[i]->prometheus;
    return NULL;
}

static int add_app(Hypha__V1__DpMetrics *m, const Hypha__V1__MeshMetric__Application *a)
{
    Hypha__V1__DpMetricsApp *x = malloc(sizeof(*x));
    if (!x)
        return HY_ENOMEM;
    hypha__v1__dp_metrics_app__init(x);
    m->apps[m->n_apps++] = x;
    x->address = strdup(a->address && a->address[0] ? a->address : "127.0.0.1");
    x->path = strdup(a->path ? a->path : HY_POLICY_METRIC_APP_PATH);
    x->has_port = 1;
    x->port = a->port;
    if (a->name && !(x->name = strdup(a->name)))
        return HY_ENOMEM;
    return x->address && x->path ? 0 : HY_ENOMEM;
}

int hy_policy_metrics(const struct hy_policy_set *s, const struct hy_resource *dp,
                      Hypha__V1__DpMetrics **out)
{
    *out = NULL;
    struct hy_policy_conf c;
    int rc = hy_policy_metric_merge(s, &c);
    if (rc < 0 || !c.conf)
        return rc;
    const Hypha__V1__MeshMetric__Conf *conf = (const Hypha__V1__MeshMetric__Conf *)c.conf;
    Hypha__V1__DpMetrics *m = malloc(sizeof(*m));
    if (!m) {
        hy_policy_conf_fini(&c);
        return HY_ENOMEM;
    }
    hypha__v1__dp_metrics__init(m);
    const Hypha__V1__MeshMetric__Prometheus *p = first_prometheus(conf);
    if (p) {
        const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
        m->has_port = 1;
        m->port = p->has_port ? p->port : HY_POLICY_METRIC_PORT;
        m->path = strdup(p->path ? p->path : HY_POLICY_METRIC_PATH);
        m->address =
            strdup(d->networking && d->networking->address ? d->networking->address : "127.0.0.1");
        if (!m->path || !m->address)
            rc = HY_ENOMEM;
    }
    if (rc == 0 && conf->n_applications &&
        !(m->apps = calloc(conf->n_applications, sizeof(*m->apps))))
        rc = HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < conf->n_applications; i++)
        rc = add_app(m, conf->applications[i]);
    /* the policy that chose the backends (or else the last one merged) */
    const struct hy_policy_origin *o = hy_policy_conf_origin(&c, "backends");
    if (!o && c.nprov)
        o = &c.prov[c.nprov - 1].origin;
    if (rc == 0 && o) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s/%s default", o->r->type->name, S(o->r->meta->name));
        if (!(m->origin = strdup(buf)))
            rc = HY_ENOMEM;
    }
    hy_policy_conf_fini(&c);
    if (rc < 0) {
        hypha__v1__dp_metrics__free_unpacked(m, NULL);
        return rc;
    }
    *out = m;
    return 0;
}
