/* A request's span as it ends (trace.h): Kuma's tag set (Envoy's, with
 * the mesh, zone and service Kuma adds) and the MeshTrace tags, queued for
 * the writer. */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "proxy_l7.h"
#include "trace.h"
#include "trace_int.h"
#include "poison.h"

#define MAX_TAGS 64 /* MeshTrace tags kept per span */

const Hypha__V1__DpTrace *hy_trace_conf(struct hy_l7_worker *lw)
{
    const struct hy_sidecar_snapshot *s = lw->w->snap;
    return s && s->config ? s->config->trace : NULL;
}

static const char *get(const struct hy_http_head *h, const char *name)
{
    return h ? hy_http_head_get(h, name) : NULL;
}

void hy_trace_http_done(struct hy_l7_worker *lw, const struct hy_l7_done *d)
{
    const struct hy_trace_ctx *ctx = d->trace;
    struct hy_trace *tr = lw->w->p->trace;
    const Hypha__V1__DpTrace *t = hy_trace_conf(lw);
    if (!ctx || !ctx->on || !ctx->sampled || !tr || !t || !t->type)
        return;
    const Hypha__V1__DpConfig *cf = lw->w->snap->config;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int64_t end = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    char status[16], url[600];
    snprintf(status, sizeof(status), "%u", d->status);
    snprintf(url, sizeof(url), "%s://%s%s", d->req && d->req->scheme ? d->req->scheme : "http",
             d->authority ? d->authority : "", d->path ? d->path : "");
    unsigned version = d->req ? d->req->version : 11;
    bool error = d->status >= 500 || d->status == 0;
    bool ok = d->result && !strcmp(d->result, "ok");
    const char *k[16 + MAX_TAGS] = {
        "component",
        "node_id",
        "mesh",
        "zone",
        "service",
        "http.method",
        "http.url",
        "http.protocol",
        "http.status_code",
        "upstream_cluster",
        "peer.address",
        "response_flags",
        "route",
        "error",
        "guid:x-request-id",
        "user_agent",
    };
    const char *v[16 + MAX_TAGS] = {
        "proxy",
        cf->name,
        cf->mesh,
        t->zone,
        t->service,
        d->method,
        url,
        version == 20   ? "HTTP/2"
        : version == 10 ? "HTTP/1.0"
                        : "HTTP/1.1",
        d->status ? status : NULL,
        d->service,
        d->from ? hy_px_conn_peer(d->from) : NULL,
        ok ? NULL : d->result,
        d->route,
        error ? "true" : NULL,
        get(d->req, "x-request-id"),
        get(d->req, "user-agent"),
    };
    size_t n = 16;
    for (size_t i = 0; i < t->n_tags && n < 16 + MAX_TAGS; i++) {
        const Hypha__V1__DpTraceTag *g = t->tags[i];
        const char *val = g->literal;
        if (g->header) {
            val = get(d->req, g->header);
            if (!val)
                val = g->header_default;
        }
        k[n] = g->name;
        v[n++] = val;
    }
    const char *name = d->service && d->service[0] ? d->service : t->service;
    struct hy_trace_span *s =
        hy_trace_span_new(ctx, end, error, name ? name : "-", t->service ? t->service : "-",
                          ctx->kind == HY_TRACE_CLIENT ? d->service : NULL, k, v, n);
    if (s)
        hy_trace_queue(tr, t, s);
}
