/* The pooled hop between sidecars: per worker and per outbound, long-lived
 * mTLS connections carrying HTTP/2 to each endpoint (a peer sidecar's
 * inbound, or a zone ingress that routes by SNI), each multiplexing many
 * requests; the endpoint pick per request and outlier detection feeding
 * it. A pooled connection is a struct hy_px_conn made without an accept:
 * connect, TLS with the outbound's SNI and the peer's SPIFFE ID check are
 * the TCP path's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_l7.h"
#include "poison.h"

static void on_connected(struct hy_px_conn *c, int status)
{
    if (status < 0) {
        hy_agent_eps_failed(&c->l->route->eps, c->endpoint);
        hy_px_conn_close(c, "upstream_failed", "cannot connect to %s: %s", c->endpoint,
                         uv_strerror(status));
        return;
    }
    hy_series_observe(c->m->connect_s[c->dir],
                      (double)(uv_now(&c->w->base.loop) - c->connect_start_ms) / 1000.0);
    struct hy_l7_h2 *h2 = c->l7;
    if (hy_px_tls_start(c, c->w->tls.client, h2->sni) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return;
    }
    hy_px_conn_handshake(c);
}

void hy_l7_pool_ready(struct hy_px_conn *c)
{
    struct hy_l7_h2 *h2 = c->l7;
    h2->ready = true;
    hy_log(HY_LOG_DEBUG, "dp", "outbound %s: pooled HTTP/2 connection to %s (%s) ready",
           h2->a ? h2->a->service : "-", c->endpoint, c->id);
    hy_l7_h2_dirty(h2);
    hy_px_conn_relay(c);
}

struct hy_l7_h2 *hy_l7_pool_get(struct hy_l7_worker *lw, const struct hy_l7_svc *svc,
                                const Hypha__V1__DpEndpoint *e, char *why, size_t size)
{
    const Hypha__V1__DpOutbound *o = svc->o;
    /* a remote subset through its zone's ingress: its own SNI */
    const char *sni = e->sni && e->sni[0] ? e->sni : o->sni ? o->sni : "";
    char key[HY_AGENT_EP_KEY];
    hy_agent_endpoint_key(e, key, sizeof(key));
    uint64_t now = uv_now(&lw->w->base.loop);
    /* maxConnectionDuration, as the config says now (so it also ages the
     * connections made before it was set) */
    uint64_t life = o->http_timeouts ? hy_px_ms(o->http_timeouts->max_connection_duration, 0) : 0;
    for (struct hy_l7_h2 *h2 = svc->a->conns, *next; h2; h2 = next) {
        next = h2->next;
        if (life && now - h2->born_ms >= life) {
            /* maxConnectionDuration: no new stream; closed once its own are done */
            if (!h2->nstreams && !h2->c->closing) {
                hy_log(HY_LOG_DEBUG, "dp",
                       "outbound %s: pooled connection to %s (%s) closed: maxConnectionDuration",
                       svc->a->service, h2->c->endpoint, h2->c->id);
                hy_px_conn_close(h2->c, "ok", NULL);
            }
            continue;
        }
        if (!strcmp(h2->ep, key) && !strcmp(h2->sni, sni) && hy_l7_h2_usable(h2))
            return h2;
    }
    if (lw->w->base.stopped) {
        snprintf(why, size, "the sidecar is stopping");
        return NULL;
    }
    struct hy_px_conn *c = hy_px_conn_new(svc->a->l);
    if (!c) {
        snprintf(why, size, "out of memory");
        return NULL;
    }
    /* the config the outbound comes from, which may be older than the worker's */
    hy_sidecar_snapshot_unref(c->snap);
    c->snap = hy_sidecar_snapshot_ref(svc->snap);
    c->out = o;
    c->idle_ms = hy_px_ms(o->idle_timeout, HY_PX_IDLE_MS);
    struct hy_l7_h2 *h2 = hy_l7_h2_client_new(lw, c);
    if (!h2) {
        hy_px_conn_close(c, "error", "out of memory");
        snprintf(why, size, "out of memory");
        return NULL;
    }
    h2->a = svc->a;
    h2->born_ms = now;
    snprintf(h2->ep, sizeof(h2->ep), "%s", key);
    snprintf(h2->sni, sizeof(h2->sni), "%s", sni);
    h2->next = svc->a->conns;
    if (h2->next)
        h2->next->prev = h2;
    svc->a->conns = h2;
    c->attempts = 1;
    int rc = hy_px_conn_connect(c, e->address ? e->address : "", e->port,
                                hy_px_ms(o->connect_timeout, HY_PX_CONNECT_MS), on_connected);
    if (rc < 0) {
        snprintf(why, size, "cannot connect to %s: %s", key, uv_strerror(rc));
        hy_px_conn_close(c, "upstream_failed", "%s", why);
        return NULL;
    }
    return h2;
}

const Hypha__V1__DpEndpoint *hy_l7_pick(struct hy_l7_worker *lw, const struct hy_l7_svc *svc,
                                        const struct hy_http_head *h, struct hy_px_conn *from,
                                        const bool *among, size_t *index)
{
    (void)lw;
    const Hypha__V1__DpOutbound *o = svc->o;
    size_t n = o->n_endpoints;
    if (!n)
        return NULL;
    struct hy_px_route *rt = svc->a->l->route;
    uint64_t hash;
    if (svc->hash && h &&
        hy_l7_hash_request(o->hash_policies, o->n_hash_policies, h,
                           from ? hy_px_conn_src(from) : NULL, &hash)) {
        /* RingHash, Maglev: the endpoint the request's hash falls on, or
         * the next usable one after it on the ring */
        bool stack[64], *ok = n <= 64 ? stack : malloc(n * sizeof(*ok));
        size_t i = SIZE_MAX;
        if (ok) {
            if (!hy_px_usable(rt, o, among, ok)) /* none usable: as if all were */
                for (size_t k = 0; k < n; k++)   /* (a remote subset's endpoint: its own picks) */
                    ok[k] = among ? among[k] : !(o->endpoints[k]->sni && o->endpoints[k]->sni[0]);
            i = hy_l7_hash_pick_ok(svc->hash, hash, ok, n);
            if (ok != stack)
                free(ok);
        }
        if (i < n) {
            *index = i;
            return o->endpoints[i];
        }
    }
    return hy_px_pick_among(rt, o, among, NULL, index);
}

void hy_l7_outlier(struct hy_l7_worker *lw, const struct hy_l7_svc *svc, size_t index,
                   enum hy_l7_outlier_result r, unsigned status)
{
    const Hypha__V1__DpOutbound *o = svc->o;
    if (!o->outlier || index >= HY_AGENT_MAX_EPS || index >= o->n_endpoints)
        return;
    struct hy_px_route *rt = svc->a->l->route;
    size_t n = o->n_endpoints < HY_AGENT_MAX_EPS ? o->n_endpoints : HY_AGENT_MAX_EPS;
    char key[HY_AGENT_EP_KEY];
    hy_agent_endpoint_key(o->endpoints[index], key, sizeof(key));
    pthread_mutex_lock(&rt->eps.lock);
    if (strcmp(rt->ol_key[index], key) != 0) {
        snprintf(rt->ol_key[index], sizeof(rt->ol_key[index]), "%s", key);
        memset(&rt->ol[index], 0, sizeof(rt->ol[index]));
    }
    bool out = hy_l7_outlier_report(o->outlier, rt->ol, n, index, r, status, hy_agent_now_ms());
    uint64_t until = rt->ol[index].until_ms;
    pthread_mutex_unlock(&rt->eps.lock);
    if (out) {
        hy_l7_count(lw, HY_L7_EJECTION);
        hy_log(HY_LOG_WARN, "dp",
               "outbound %s: endpoint %s ejected for %llu ms (outlier detection)",
               o->service ? o->service : "-", key, (unsigned long long)(until - hy_agent_now_ms()));
    }
}

void hy_l7_pool_stop(struct hy_l7_worker *lw)
{
    while (lw->anchors) {
        struct hy_l7_anchor *a = lw->anchors;
        lw->anchors = a->next;
        while (a->conns) { /* closing one unlinks it */
            struct hy_l7_h2 *h2 = a->conns;
            hy_px_conn_close(h2->c, "shutdown", NULL);
            if (a->conns == h2) { /* already closing: unlink by hand */
                a->conns = h2->next;
                h2->a = NULL;
            }
        }
        hy_px_listener_unref(a->l);
        free(a);
    }
}

const Hypha__V1__DpEndpoint *hy_l7_pick_ref(struct hy_l7_worker *lw, const struct hy_l7_svc *svc,
                                            const struct hy_http_head *h, struct hy_px_conn *from,
                                            const Hypha__V1__DpBackendRef *ref, size_t *index,
                                            bool *oom)
{
    size_t n = svc->o->n_endpoints;
    bool stack[64], *among = NULL;
    *oom = false;
    if (ref && ref->n_tags && n) { /* a MeshServiceSubset: the instances carrying its tags */
        among = n <= 64 ? stack : malloc(n * sizeof(*among));
        if (!among) {
            *oom = true;
            return NULL;
        }
        for (size_t k = 0; k < n; k++)
            among[k] = hy_l7_subset_has(ref, svc->o->endpoints[k]);
    }
    const Hypha__V1__DpEndpoint *ep = hy_l7_pick(lw, svc, h, from, among, index);
    if (among != stack)
        free(among);
    return ep;
}
