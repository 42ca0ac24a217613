/* Inbound connections: mTLS from a peer sidecar, its identity (SPIFFE ID
 * and tags, from its certificate) checked against the inbound's
 * MeshTrafficPermission entries and rules, then plain TCP to the local
 * app. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "poison.h"

static void shadow(struct hy_px_conn *c, const char *origin)
{
    hy_series_inc(c->m->shadow_denied);
    hy_log(HY_LOG_INFO, "dp", "inbound %u: %s would be denied by %s (AllowWithShadowDeny): let in",
           c->l->port, c->id, origin ? origin : "MeshTrafficPermission");
}

void hy_px_inbound_accept(struct hy_px_conn *c)
{
    const Hypha__V1__DpConfig *cf = c->snap ? c->snap->config : NULL;
    for (size_t i = 0; cf && i < cf->n_inbounds; i++)
        if (cf->inbounds[i]->port == c->l->port)
            c->in = cf->inbounds[i];
    if (!c->in) {
        hy_px_conn_close(c, "no_config", "no inbound on this port in the current config");
        return;
    }
    if (hy_px_tls_start(c, c->w->tls.server, NULL) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return;
    }
    hy_px_conn_handshake(c);
}

static void on_app_connected(struct hy_px_conn *c, int status)
{
    if (status == UV_ETIMEDOUT) { /* our connectionTimeout's timer (or the kernel's) */
        hy_px_conn_close(c, "upstream_failed",
                         "cannot connect to the app at %s: no connection within %llu ms "
                         "(connectionTimeout)",
                         c->endpoint, (unsigned long long)hy_px_inbound_connect_ms(c->in));
        return;
    }
    if (status < 0) {
        hy_px_conn_close(c, "upstream_failed", "cannot connect to the app at %s: %s", c->endpoint,
                         uv_strerror(status));
        return;
    }
    hy_series_observe(c->m->connect_s[c->dir],
                      (double)(uv_now(&c->w->base.loop) - c->connect_start_ms) / 1000.0);
    if (c->pre) { /* what an HTTP inbound read before it knew the caller speaks TCP */
        int rc = hy_px_write(c, c->plain, c->pre, c->pre_len);
        free(c->pre);
        c->pre = NULL;
        if (rc < 0) {
            hy_px_conn_close(c, "error", "writing to the app: %s", uv_strerror(rc));
            return;
        }
    }
    hy_px_conn_relay(c);
}

const char *hy_px_inbound_refusal(struct hy_px_conn *c, const struct hy_permit_peer *peer)
{
    const Hypha__V1__DpInbound *in = c->in;
    char mesh[256], prefix[300];
    hy_px_mesh(c->snap, mesh, sizeof(mesh));
    snprintf(prefix, sizeof(prefix), "spiffe://%s/", mesh);
    if (!in)
        return "no inbound on this port in the current config";
    if (!c->id[0])
        return "the peer's certificate has no SPIFFE ID";
    if (strncmp(c->id, prefix, strlen(prefix)) != 0)
        return "the peer is not in this mesh";
    struct hy_permit_decision d;
    hy_permit_decide(in, c->id, peer, &d);
    if (d.result == HY_PERMIT_SHADOW)
        shadow(c, d.origin);
    if (d.result != HY_PERMIT_DENY)
        return NULL;
    return d.origin ? d.origin : "no MeshTrafficPermission allows this caller";
}

void hy_px_inbound_denied(struct hy_px_conn *c, const char *why)
{
    hy_series_inc(c->m->denied);
    hy_px_conn_close(c, "denied", "%s", why);
}

/* MeshRateLimit's TCP connection rate for c's caller: true when it is
 * over (c closed). */
static bool rate_limited(struct hy_px_conn *c)
{
    bool any = false;
    for (size_t i = 0; i < c->in->n_rate_limits && !any; i++)
        any = c->in->rate_limits[i]->tcp_connections > 0;
    if (!any)
        return false;
    struct hy_l7_worker *lw = hy_l7_worker(c->w);
    struct hy_permit_peer *peer = calloc(1, sizeof(*peer));
    if (!lw || !peer) {
        free(peer);
        hy_px_conn_close(c, "error", "out of memory checking the rate limit");
        return true;
    }
    hy_px_tls_peer_tags(c, peer);
    int index;
    const Hypha__V1__DpCallerRateLimit *rl = hy_l7_limit_pick(c->in, peer, &index);
    free(peer);
    if (!rl || !lw->limits ||
        hy_l7_limit_take(lw->limits->l, c->l->port, index, true, hy_agent_now_ms()))
        return false;
    hy_l7_count_limited(lw, "tcp");
    hy_px_conn_close(c, "rate_limited", "%s: over %u connections per interval",
                     rl->origin ? rl->origin : "MeshRateLimit", (unsigned)rl->tcp_connections);
    return true;
}

void hy_px_inbound_handshake_done(struct hy_px_conn *c)
{
    const Hypha__V1__DpInbound *in = c->in;
    /* the verify callback checked this already; checked again here on the
     * certificate the session kept, should the callback not have run */
    const char *why = c->peer_allowed ? NULL : hy_px_tls_peer_refusal(c);
    if (why) {
        hy_px_tls_close_notify(c);
        hy_px_inbound_denied(c, why);
        return;
    }
    if (rate_limited(c))
        return;
    if (hy_px_l7_protocol(in->protocol)) { /* HTTP/2 from a peer sidecar */
        hy_l7_in_start(c);
        return;
    }
    hy_px_inbound_connect_app(c);
}

uint64_t hy_px_inbound_connect_ms(const Hypha__V1__DpInbound *in)
{
    return hy_px_ms(in->connect_timeout, HY_PX_CONNECT_MS);
}

uint64_t hy_px_inbound_idle_ms(const Hypha__V1__DpInbound *in)
{
    return in->idle_timeout ? hy_px_ms(in->idle_timeout, 0) : HY_PX_IDLE_MS;
}

void hy_px_inbound_connect_app(struct hy_px_conn *c)
{
    const Hypha__V1__DpInbound *in = c->in;
    const char *host =
        in->service_address && in->service_address[0] ? in->service_address : "127.0.0.1";
    uint64_t idle = hy_px_inbound_idle_ms(in);
    c->idle_ms = idle ? idle : HY_PX_NEVER_MS; /* the relay's, from when it starts */
    int rc = hy_px_conn_connect(c, host, in->service_port, hy_px_inbound_connect_ms(in),
                                on_app_connected);
    if (rc < 0)
        hy_px_conn_close(c, "upstream_failed", "cannot connect to the app at %s: %s", c->endpoint,
                         uv_strerror(rc));
}
