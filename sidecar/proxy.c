/* The proxy's listeners: one per inbound and outbound port of the current
 * snapshot, opened and closed as snapshots come; the TLS contexts of the
 * snapshot's certificate; the connection metrics. Connections keep the
 * snapshot they were accepted with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "metrics.h"
#include "proxy_int.h"
#include "poison.h"

const char *hy_px_mesh(const struct hy_dp_snapshot *s, char *buf, size_t size)
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
    struct hy_metric *denied =
        hy_metric_counter(m, "hypha_dp_inbound_denied_total",
                          "Inbound connections refused by MeshTrafficPermission", 0);
    struct hy_metric *connect_s = hy_metric_histogram(
        m, "hypha_dp_upstream_connect_seconds",
        "Time to connect to the upstream: the app (inbound) or a peer sidecar (outbound)", bounds,
        sizeof(bounds) / sizeof(bounds[0]), 1, "direction");
    if (!conns || !active || !bytes || !fail || !denied || !connect_s)
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
    return (p->m.denied = hy_metric_series(denied)) ? 0 : HY_ENOMEM;
}

/* ----- listeners ----- */

void hy_px_listener_unref(struct hy_px_listener *l)
{
    if (--l->refs == 0)
        free(l);
}

static void on_listener_closed(uv_handle_t *h)
{
    hy_px_listener_unref(h->data);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct hy_px_listener *l = server->data;
    struct hy_proxy *p = l->p;
    if (status < 0) {
        hy_log(HY_LOG_WARN, "dp", "%s listener on port %u: %s", hy_px_dir_name(l->dir),
               (unsigned)l->port, uv_strerror(status));
        return;
    }
    hy_px_refresh(p); /* the newest config decides, even before the check handle runs */
    if (p->stopped || uv_is_closing((uv_handle_t *)&l->tcp))
        return;
    struct hy_px_conn *c = hy_px_conn_new(l);
    if (!c) {
        uv_tcp_t tmp; /* accept and drop it, or the loop spins on it */
        uv_tcp_init(p->loop, &tmp);
        if (uv_accept(server, (uv_stream_t *)&tmp) == 0)
            hy_log(HY_LOG_WARN, "dp", "out of memory: refusing a connection");
        uv_close((uv_handle_t *)&tmp, NULL);
        return;
    }
    int rc = uv_accept(server, (uv_stream_t *)&c->down.tcp);
    if (rc < 0) {
        hy_px_conn_close(c, "error", "accept: %s", uv_strerror(rc));
        return;
    }
    uv_tcp_nodelay(&c->down.tcp, 1);
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    if (uv_tcp_getpeername(&c->down.tcp, (struct sockaddr *)&sa, &len) == 0) {
        char ip[48];
        if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
            snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip,
                     ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
            snprintf(c->peer, sizeof(c->peer), "%s:%u", ip,
                     ntohs(((struct sockaddr_in *)&sa)->sin_port));
        }
    }
    if (l->dir == HY_PX_IN)
        hy_px_inbound_accept(c);
    else
        hy_px_outbound_accept(c);
}

static struct hy_px_listener *listener_open(struct hy_proxy *p, enum hy_px_dir dir, uint16_t port)
{
    struct hy_px_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        hy_log(HY_LOG_ERROR, "dp", "out of memory: no %s listener on port %u", hy_px_dir_name(dir),
               (unsigned)port);
        return NULL;
    }
    l->p = p;
    l->dir = dir;
    l->port = port;
    l->refs = 1;
    const char *host = dir == HY_PX_OUT ? "127.0.0.1" : p->inbound_host;
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0)
        uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&sa);
    uv_tcp_init(p->loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_accept);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dp",
               "cannot listen on %s:%u for %s traffic: %s; the next config tries again", host,
               (unsigned)port, hy_px_dir_name(dir), uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return NULL;
    }
    hy_log(HY_LOG_INFO, "dp", "%s listener on %s:%u", hy_px_dir_name(dir), host, (unsigned)port);
    return l;
}

static void listener_close(struct hy_px_listener *l)
{
    hy_log(HY_LOG_INFO, "dp", "%s listener on port %u closed", hy_px_dir_name(l->dir),
           (unsigned)l->port);
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

static void reconcile(struct hy_proxy *p)
{
    const Hypha__V1__DpConfig *c = p->snap->config;
    struct hy_px_listener **pl = &p->listeners;
    while (*pl) { /* close what the config dropped */
        struct hy_px_listener *l = *pl;
        if (wanted(c, l->dir, l->port)) {
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
        bool have = false;
        for (struct hy_px_listener *l = p->listeners; l && !have; l = l->next)
            have = l->dir == dir && l->port == port;
        struct hy_px_listener *l = have ? NULL : listener_open(p, dir, port);
        if (l) {
            l->next = p->listeners;
            p->listeners = l;
        }
    }
}

/* Did the certificate, its chain or the trust bundle change? */
static bool tls_changed(const struct hy_dp_snapshot *a, const struct hy_dp_snapshot *b)
{
    return !a || strcmp(a->fingerprint, b->fingerprint) != 0 ||
           strcmp(a->config->chain ? a->config->chain : "",
                  b->config->chain ? b->config->chain : "") != 0 ||
           strcmp(a->config->trust_bundle, b->config->trust_bundle) != 0 ||
           strcmp(a->key, b->key) != 0;
}

void hy_px_refresh(struct hy_proxy *p)
{
    if (p->stopped || hy_dp_current_generation(p->current) == p->gen)
        return;
    uint64_t gen;
    struct hy_dp_snapshot *s = hy_dp_current_get(p->current, &gen);
    p->gen = gen;
    if (!s)
        return;
    if (tls_changed(p->snap, s)) {
        struct hy_px_tls t;
        if (hy_px_tls_build(s, &t) == 0) {
            hy_px_tls_fini(&p->tls);
            p->tls = t;
        } /* else: logged; the previous contexts keep serving */
    }
    hy_dp_snapshot_unref(p->snap);
    p->snap = s;
    reconcile(p);
}

static void on_check(uv_check_t *h)
{
    hy_px_refresh(h->data);
}

/* ----- life ----- */

int hy_proxy_new(const struct hy_proxy_cfg *cfg, struct hy_proxy **out)
{
    *out = NULL;
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
    snprintf(p->inbound_host, sizeof(p->inbound_host), "%s",
             cfg->inbound_host ? cfg->inbound_host : "0.0.0.0");
    if ((rc = open_metrics(p, cfg->metrics)) < 0) {
        hy_proxy_free(p);
        return rc;
    }
    uv_check_init(p->loop, &p->check);
    p->check.data = p;
    p->check_init = true;
    uv_check_start(&p->check, on_check);
    uv_unref((uv_handle_t *)&p->check);
    *out = p;
    return 0;
}

void hy_proxy_stop(struct hy_proxy *p)
{
    if (!p || p->stopped)
        return;
    p->stopped = true;
    if (p->check_init)
        uv_close((uv_handle_t *)&p->check, NULL);
    while (p->listeners) {
        struct hy_px_listener *l = p->listeners;
        p->listeners = l->next;
        listener_close(l);
    }
    for (struct hy_px_conn *c = p->conns; c; c = c->next)
        hy_px_conn_close(c, "shutdown", NULL);
}

void hy_proxy_free(struct hy_proxy *p)
{
    if (!p)
        return;
    if (p->conns)
        hy_log(HY_LOG_ERROR, "dp", "the proxy is freed with connections open (a bug)");
    hy_px_tls_fini(&p->tls);
    hy_dp_snapshot_unref(p->snap);
    hy_px_tls_global_fini();
    free(p);
}
