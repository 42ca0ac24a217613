/* The proxy's workers and their listeners: one socket per inbound and
 * outbound port of the current snapshot in every worker (SO_REUSEPORT),
 * opened and closed as snapshots come; the TLS contexts of the snapshot's
 * certificate; the connection metrics. Connections keep the snapshot they
 * were accepted with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alog.h"
#include "trace.h"
#include "error.h"
#include "metrics.h"
#include "net.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "proxy_resume.h"
#include "poison.h"

const char *hy_px_mesh(const struct hy_sidecar_snapshot *s, char *buf, size_t size)
{
    const char *m = s && s->config->mesh ? s->config->mesh : "";
    if (m[0] || !s || strncmp(s->spiffe_id, "spiffe://", 9) != 0) {
        snprintf(buf, size, "%s", m);
        return buf;
    }
    const char *id = s->spiffe_id + 9, *slash = strchr(id, '/');
    snprintf(buf, size, "%.*s", (int)(slash ? (size_t)(slash - id) : strlen(id)), id);
    return buf;
}

static int open_metrics(struct hy_proxy *p, struct hy_metrics *m)
{
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5};
    struct hy_metric *conns = hy_metric_counter(
        m, "hypha_dp_connections_total", "Connections accepted by the proxy", 1, "direction");
    struct hy_metric *active = hy_metric_gauge(m, "hypha_dp_active_connections",
                                               "Connections open in the proxy", 1, "direction");
    struct hy_metric *bytes = hy_metric_counter(
        m, "hypha_dp_bytes_total", "Plaintext bytes relayed, both ways together", 1, "direction");
    struct hy_metric *fail = hy_metric_counter(
        m, "hypha_dp_tls_handshake_failures_total",
        "TLS handshakes that failed, or whose peer had the wrong SPIFFE ID", 1, "direction");
    struct hy_metric *overflow = hy_metric_counter(
        m, "hypha_dp_outbound_overflow_total",
        "Outbound connections refused by MeshCircuitBreaker (max connections or pending)", 1,
        "limit");
    struct hy_metric *denied =
        hy_metric_counter(m, "hypha_dp_inbound_denied_total",
                          "Inbound connections refused by MeshTrafficPermission", 0);
    struct hy_metric *shadow = hy_metric_counter(
        m, "hypha_dp_inbound_shadow_denied_total",
        "Inbound connections a MeshTrafficPermission AllowWithShadowDeny let in that a Deny "
        "would refuse",
        0);
    struct hy_metric *connect_s = hy_metric_histogram(
        m, "hypha_dp_upstream_connect_seconds",
        "Time to connect to the upstream: the app (inbound) or a peer sidecar (outbound)", bounds,
        sizeof(bounds) / sizeof(bounds[0]), 1, "direction");
    if (!conns || !active || !bytes || !fail || !overflow || !denied || !shadow || !connect_s)
        return HY_ENOMEM;
    /* the HTTP path (proxy_l7.h) */
    p->m.http_requests =
        hy_metric_counter(m, "hypha_dp_http_requests_total",
                          "HTTP requests the sidecar answered or passed on, by direction, service "
                          "(outbound: the backend; inbound: its own), route and status",
                          5, "direction", "service", "route", "code_class", "code");
    p->m.http_duration =
        hy_metric_histogram(m, "hypha_dp_http_request_duration_seconds",
                            "Time from an HTTP request's head to the end of its response", bounds,
                            sizeof(bounds) / sizeof(bounds[0]), 2, "direction", "service");
    p->m.rate_limited = hy_metric_counter(
        m, "hypha_dp_rate_limited_total",
        "Requests (kind http) and connections (kind tcp) MeshRateLimit refused", 1, "kind");
    p->m.faults = hy_metric_counter(m, "hypha_dp_http_faults_total",
                                    "Faults MeshFaultInjection injected, by kind", 1, "kind");
    p->m.mirrors = hy_metric_counter(
        m, "hypha_dp_http_mirrors_total",
        "RequestMirror copies, by result: sent, body_too_large (not mirrored), failed", 1,
        "result");
    p->m.http_retries = hy_metric_series(hy_metric_counter(
        m, "hypha_dp_http_retries_total", "HTTP requests tried again (MeshRetry)", 0));
    p->m.http_timeouts = hy_metric_series(hy_metric_counter(
        m, "hypha_dp_http_timeouts_total",
        "HTTP requests cut by a timeout (MeshTimeout requestTimeout, MeshRetry perTryTimeout)", 0));
    p->m.http_ejections = hy_metric_series(
        hy_metric_counter(m, "hypha_dp_http_ejections_total",
                          "Endpoints ejected by outlier detection (MeshCircuitBreaker)", 0));
    if (!p->m.http_requests || !p->m.http_duration || !p->m.rate_limited || !p->m.faults ||
        !p->m.mirrors || !p->m.http_retries || !p->m.http_timeouts || !p->m.http_ejections)
        return HY_ENOMEM;
    for (int d = HY_PX_IN; d <= HY_PX_OUT; d++) {
        const char *n = hy_px_dir_name(d);
        if (!(p->m.conns[d] = hy_metric_series(conns, n)) ||
            !(p->m.active[d] = hy_metric_series(active, n)) ||
            !(p->m.bytes[d] = hy_metric_series(bytes, n)) ||
            !(p->m.tls_fail[d] = hy_metric_series(fail, n)) ||
            !(p->m.connect_s[d] = hy_metric_series(connect_s, n)))
            return HY_ENOMEM;
    }
    p->m.overflow[0] = hy_metric_series(overflow, "max_connections");
    p->m.overflow[1] = hy_metric_series(overflow, "max_pending");
    struct hy_metric *tp = hy_metric_counter(
        m, "hypha_dp_transparent_connections_total",
        "Redirected connections (transparent mode), by what became of them: into the mesh, "
        "passed through to a destination outside it, or refused",
        1, "result");
    if (!tp || !(p->m.transparent[HY_PX_TP_MESH] = hy_metric_series(tp, "mesh")) ||
        !(p->m.transparent[HY_PX_TP_PASSTHROUGH] = hy_metric_series(tp, "passthrough")) ||
        !(p->m.transparent[HY_PX_TP_REFUSED] = hy_metric_series(tp, "refused")))
        return HY_ENOMEM;
    p->m.denied = hy_metric_series(denied);
    p->m.shadow_denied = hy_metric_series(shadow);
    return p->m.denied && p->m.shadow_denied && p->m.overflow[0] && p->m.overflow[1] ? 0
                                                                                     : HY_ENOMEM;
}

/* ----- listeners ----- */

void hy_px_listener_unref(struct hy_px_listener *l)
{
    if (--l->refs == 0) {
        hy_px_route_put(l->w->p, l->route);
        free(l);
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    hy_px_listener_unref(h->data);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct hy_px_listener *l = server->data;
    struct hy_px_worker *w = l->w;
    if (status < 0) {
        hy_log(HY_LOG_WARN, "dp", "%s listener on port %u: %s", hy_px_dir_name(l->dir),
               (unsigned)l->port, uv_strerror(status));
        return;
    }
    hy_px_refresh(w); /* the newest config decides, even before the check handle runs */
    if (w->base.stopped || uv_is_closing((uv_handle_t *)&l->tcp))
        return;
    struct hy_px_conn *c = hy_px_conn_new(l);
    if (!c) {
        if (hy_net_refuse(server)) /* or the loop spins on it */
            hy_log(HY_LOG_WARN, "dp", "out of memory: refusing a connection");
        return;
    }
    int rc = uv_accept(server, (uv_stream_t *)&c->down.tcp);
    if (rc < 0) {
        hy_px_conn_close(c, "error", "accept: %s", uv_strerror(rc));
        return;
    }
    if (!l->nodelay)
        uv_tcp_nodelay(&c->down.tcp, 1);
    if (l->dir == HY_PX_IN) /* now, while it is surely there; an outbound's when asked */
        hy_px_conn_peer(c);
    if (l->transparent)
        hy_px_transparent_accept(c);
    else if (l->dir == HY_PX_IN)
        hy_px_inbound_accept(c);
    else
        hy_px_outbound_accept(c);
}

static struct hy_px_listener *listener_open(struct hy_px_worker *w, enum hy_px_dir dir,
                                            uint16_t port, bool transparent, bool v6)
{
    struct hy_proxy *p = w->p;
    struct hy_px_listener *l = calloc(1, sizeof(*l));
    if (l && dir == HY_PX_OUT && !transparent && !(l->route = hy_px_route_get(p, port, NULL))) {
        free(l);
        l = NULL;
    }
    if (!l) {
        hy_log(HY_LOG_ERROR, "dp", "worker %u: out of memory: no %s listener on port %u",
               w->base.index, hy_px_dir_name(dir), (unsigned)port);
        return NULL;
    }
    l->w = w;
    l->dir = dir;
    l->port = port;
    l->refs = 1;
    l->transparent = transparent;
    l->v6 = v6;
    /* iptables REDIRECT sends the workload's own connections to 127.0.0.1
     * (ip6tables to ::1), its callers' to the address they arrived on */
    const char *host = v6                 ? (dir == HY_PX_OUT ? "::1" : "::")
                       : dir == HY_PX_OUT ? "127.0.0.1"
                       : transparent      ? "0.0.0.0"
                                          : p->inbound_host;
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0)
        host = "0.0.0.0";
    uv_tcp_init(&w->base.loop, &l->tcp);
    l->tcp.data = l;
    int rc = v6 ? hy_net_listen_reuseport6(&l->tcp, host, port, on_accept)
                : hy_net_listen_reuseport(&l->tcp, host, port, on_accept);
    if (rc < 0 && v6 && (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT)) {
        w->no_v6 = true; /* not tried again */
        hy_log(HY_LOG_INFO, "dp",
               "worker %u: no IPv6 here (%s on %s): transparent mode on IPv4 only", w->base.index,
               uv_strerror(rc), host);
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return NULL;
    }
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dp",
               "worker %u: cannot listen on %s:%u for %s traffic: %s; the next config tries "
               "again",
               w->base.index, host, (unsigned)port, hy_px_dir_name(dir), uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return NULL;
    }
#ifdef __linux__
    /* Linux's accepted sockets inherit TCP_NODELAY from their listener:
     * set once here, it saves a setsockopt per connection */
    l->nodelay = uv_tcp_nodelay(&l->tcp, 1) == 0;
#endif
    hy_log(HY_LOG_INFO, "dp", "worker %u: %s%s listener on %s:%u", w->base.index,
           transparent ? "transparent " : "", hy_px_dir_name(dir), host, (unsigned)port);
    return l;
}

static void listener_close(struct hy_px_listener *l)
{
    hy_log(HY_LOG_INFO, "dp", "worker %u: %s listener on port %u closed", l->w->base.index,
           hy_px_dir_name(l->dir), (unsigned)l->port);
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}

/* Does the config want a listener of dir on port? */
static bool wanted(const Hypha__V1__DpConfig *c, enum hy_px_dir dir, uint32_t port)
{
    size_t n = dir == HY_PX_IN ? c->n_inbounds : c->n_outbounds;
    for (size_t i = 0; i < n; i++)
        if ((dir == HY_PX_IN ? c->inbounds[i]->port : c->outbounds[i]->port) == port)
            return true;
    return false;
}

static void reconcile(struct hy_px_worker *w)
{
    const Hypha__V1__DpConfig *c = w->snap->config;
    struct hy_px_listener **pl = &w->listeners;
    while (*pl) { /* close what the config dropped */
        struct hy_px_listener *l = *pl;
        if (l->transparent ||
            (wanted(c, l->dir, l->port) && !(l->dir == HY_PX_IN && w->p->tp_inbound))) {
            pl = &l->next;
            continue;
        }
        *pl = l->next;
        listener_close(l);
    }
    for (size_t i = 0; i < c->n_inbounds + c->n_outbounds; i++) {
        enum hy_px_dir dir = i < c->n_inbounds ? HY_PX_IN : HY_PX_OUT;
        uint16_t port = (uint16_t)(dir == HY_PX_IN ? c->inbounds[i]->port
                                                   : c->outbounds[i - c->n_inbounds]->port);
        if (port == 0) /* a backend-only outbound: no listener */
            continue;
        /* transparent mode: callers' connections to an inbound's port reach
         * the inbound redirect port (the app may listen on that port itself) */
        if (dir == HY_PX_IN && w->p->tp_inbound)
            continue;
        bool have = false;
        for (struct hy_px_listener *l = w->listeners; l && !have; l = l->next)
            have = l->dir == dir && l->port == port && !l->transparent;
        struct hy_px_listener *l = have ? NULL : listener_open(w, dir, port, false, false);
        if (l) {
            l->next = w->listeners;
            w->listeners = l;
        }
    }
    /* transparent mode: the redirect ports, IPv4 and IPv6, once there is
     * a config */
    for (int k = 0; k < 4; k++) {
        enum hy_px_dir d = k & 1 ? HY_PX_OUT : HY_PX_IN;
        bool v6 = k >= 2;
        uint16_t port = d == HY_PX_IN ? w->p->tp_inbound : w->p->tp_outbound;
        bool have = !port || (v6 && w->no_v6);
        for (struct hy_px_listener *l = w->listeners; l && !have; l = l->next)
            have = l->transparent && l->dir == d && l->v6 == v6;
        struct hy_px_listener *l = have ? NULL : listener_open(w, d, port, true, v6);
        if (l) {
            l->next = w->listeners;
            w->listeners = l;
        }
    }
}

/* Did the certificate, its chain or the trust bundle change? */
static bool tls_changed(const struct hy_sidecar_snapshot *a, const struct hy_sidecar_snapshot *b)
{
    return !a || strcmp(a->fingerprint, b->fingerprint) != 0 ||
           strcmp(a->config->chain ? a->config->chain : "",
                  b->config->chain ? b->config->chain : "") != 0 ||
           strcmp(a->config->trust_bundle, b->config->trust_bundle) != 0 ||
           strcmp(a->key, b->key) != 0;
}

void hy_px_refresh(struct hy_px_worker *w)
{
    if (w->base.stopped || hy_agent_current_generation(w->p->current) == w->gen)
        return;
    uint64_t gen;
    struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_get(w->p->current, &gen);
    w->gen = gen;
    if (s) {
        /* compared with what the contexts were built from, so that a build
         * that failed is tried again with the next snapshot */
        if (tls_changed(w->tls_snap, s)) {
            struct hy_px_tls t;
            if (hy_px_tls_build(w->p, s, &t) == 0) {
                hy_px_tls_fini(&w->tls);
                w->tls = t;
                hy_sidecar_snapshot_unref(w->tls_snap);
                w->tls_snap = hy_sidecar_snapshot_ref(s);
            } /* else: logged; the previous contexts keep serving */
        }
        hy_sidecar_snapshot_unref(w->snap);
        w->snap = s;
        reconcile(w);
        hy_px_l7_refresh(w);
    }
    atomic_store_explicit(&w->applied, gen, memory_order_release);
}

static void on_check(uv_check_t *h)
{
    hy_px_refresh(h->data);
    hy_px_l7_turn(h->data); /* HTTP/2 output of this loop turn, one write per connection */
}

/* ----- workers ----- */

static struct hy_px_worker *px_worker(struct hy_agent_worker *base)
{
    _Static_assert(offsetof(struct hy_px_worker, base) == 0, "base comes first");
    return (struct hy_px_worker *)base;
}

static int worker_open(struct hy_agent_worker *base)
{
    struct hy_px_worker *w = px_worker(base);
    w->p = base->pool->owner;
    atomic_init(&w->applied, 0);
    uv_check_init(&base->loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_check);
    uv_unref((uv_handle_t *)&w->check);
    hy_px_mem_worker_open(w);
    return 0;
}

static void worker_begin(struct hy_agent_worker *base)
{
    hy_px_refresh(px_worker(base));
}

/* Woken: a new snapshot, or HTTP health checks to run (proxy_health.c). */
static void worker_wake(struct hy_agent_worker *base)
{
    hy_px_refresh(px_worker(base));
    hy_px_l7_hc_take(px_worker(base));
}

static void worker_stop(struct hy_agent_worker *base)
{
    struct hy_px_worker *w = px_worker(base);
    uv_close((uv_handle_t *)&w->check, NULL);
    hy_px_mem_worker_stop(w);
    while (w->listeners) {
        struct hy_px_listener *l = w->listeners;
        w->listeners = l->next;
        listener_close(l);
    }
    for (struct hy_px_conn *c = w->conns; c; c = c->next)
        hy_px_conn_close(c, "shutdown", NULL);
    hy_px_transparent_stop(w);
    hy_px_l7_stop(w);
}

static void worker_end(struct hy_agent_worker *base)
{
    (void)base;
    hy_px_tls_thread_fini();
}

static void worker_fini(struct hy_agent_worker *base)
{
    struct hy_px_worker *w = px_worker(base);
    if (w->conns)
        hy_log(HY_LOG_ERROR, "dp", "worker %u ended with connections open (a bug)", base->index);
    hy_px_l7_fini(w);
    hy_px_tls_fini(&w->tls);
    hy_sidecar_snapshot_unref(w->snap);
    hy_sidecar_snapshot_unref(w->tls_snap);
}

static const struct hy_agent_pool_ops worker_ops = {
    .size = sizeof(struct hy_px_worker),
    .open = worker_open,
    .begin = worker_begin,
    .wake = worker_wake,
    .stop = worker_stop,
    .end = worker_end,
    .fini = worker_fini,
};

/* The control loop's side of a publish: wake every worker, update the
 * health checks. The publisher's thread (the control loop). */
static void on_publish(void *arg)
{
    struct hy_proxy *p = arg;
    if (atomic_load_explicit(&p->stopping, memory_order_acquire))
        return;
    hy_agent_pool_wake(&p->workers);
    hy_px_health_update(p);
}

/* ----- life ----- */

int hy_proxy_new(const struct hy_proxy_cfg *cfg, struct hy_proxy **out)
{
    *out = NULL;
    unsigned n = hy_agent_pool_count(cfg->workers, HY_PROXY_MAX_WORKERS);
    struct hy_proxy *p = calloc(1, sizeof(*p));
    if (!p)
        return HY_ENOMEM;
    int rc = hy_px_tls_global_init();
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->loop = cfg->loop;
    p->current = cfg->current;
    pthread_mutex_init(&p->lock, NULL);
    atomic_init(&p->stopping, false);
    snprintf(p->inbound_host, sizeof(p->inbound_host), "%s",
             cfg->inbound_host ? cfg->inbound_host : "0.0.0.0");
    p->tp_outbound = cfg->transparent_outbound;
    p->tp_inbound = cfg->transparent_inbound;
    if ((rc = open_metrics(p, cfg->metrics)) < 0 || (rc = hy_px_mem_metrics(p, cfg->metrics)) < 0 ||
        (rc = hy_px_health_new(p, cfg->metrics)) < 0 ||
        (rc = hy_px_tls_resume_new(p, cfg->metrics)) < 0 ||
        (rc = hy_alog_new(cfg->metrics, &p->alog)) < 0 ||
        (rc = hy_trace_new(cfg->metrics, &p->trace)) < 0) {
        hy_proxy_free(p);
        return rc;
    }

    if ((rc = hy_agent_pool_start(&p->workers, &worker_ops, p, n)) < 0) {
        hy_log(HY_LOG_ERROR, "dp", "cannot start the proxy's worker %u: %s", p->workers.n,
               hy_strerror(rc));
        hy_proxy_stop(p);
        hy_proxy_free(p);
        return rc;
    }
    hy_agent_current_on_publish(p->current, on_publish, p);
    hy_px_health_update(p); /* a config published before we came */
    hy_log(HY_LOG_INFO, "dp", "proxy: %u worker thread%s", n, n == 1 ? "" : "s");
    *out = p;
    return 0;
}

bool hy_proxy_applied(struct hy_proxy *p, uint64_t gen)
{
    for (unsigned i = 0; p && i < p->workers.n; i++)
        if (atomic_load_explicit(&px_worker(hy_agent_pool_at(&p->workers, i))->applied,
                                 memory_order_acquire) < gen)
            return false;
    return true;
}

void hy_proxy_tls_info(struct hy_proxy *p, struct hy_proxy_tls_info *out)
{
    const struct hy_px_tls_choice *ch = hy_px_tls_choice();
    out->suite = ch->suite;
    out->group = ch->group;
    out->reason = ch->why;
    out->sessions = p && p->sessions ? hy_px_sessions_count(p->sessions) : 0;
}

void hy_proxy_stop(struct hy_proxy *p)
{
    if (!p || atomic_exchange(&p->stopping, true))
        return;
    hy_agent_current_on_publish(p->current, NULL, NULL);
    hy_px_health_stop(p);
    hy_agent_pool_stop(&p->workers);
}

void hy_proxy_free(struct hy_proxy *p)
{
    if (!p)
        return;
    hy_agent_pool_free(&p->workers);
    hy_px_l7_proxy_fini(p);
    hy_px_health_free(p);
    hy_px_tls_resume_free(p);
    hy_alog_free(p->alog); /* after the workers: nothing queues any more */
    hy_trace_free(p->trace);
    if (p->routes)
        hy_log(HY_LOG_ERROR, "dp", "the proxy is freed with routes in use (a bug)");
    pthread_mutex_destroy(&p->lock);
    hy_px_tls_global_fini();
    free(p);
}
