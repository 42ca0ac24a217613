/* The ingress's control side: the stream to the zone control plane (wss,
 * subprotocol hypha.dp.v1: DpHello with the ZoneIngress and the
 * zone-ingress token, then DpIngressConfig whenever the zone's services
 * change, each acked), the admin server (/ready, /config, /metrics) and
 * the metrics. Its routes keep serving while the zone is away. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "http_server.h"
#include "ingress.h"
#include "metrics.h"
#include "wire.h"
#include "ws.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static void routes_free(struct hy_agent_snap *base)
{
    struct hy_ing_routes *r = hy_ing_routes_of(base);
    hypha__v1__dp_ingress_config__free_unpacked(r->c, NULL);
    free(r->local);
    free(r);
}

int hy_ing_routes_publish(struct hy_ing *g)
{
    /* a deep copy (pack, unpack) that the guard filters: g->config stays
     * whole, to be filtered again when this host's addresses change */
    size_t len = hypha__v1__dp_ingress_config__get_packed_size(g->config);
    uint8_t *buf = malloc(len ? len : 1);
    struct hy_ing_routes *r = calloc(1, sizeof(*r));
    Hypha__V1__DpIngressConfig *c = NULL;
    int rc = HY_ENOMEM;
    if (!buf || !r)
        goto out;
    hypha__v1__dp_ingress_config__pack(g->config, buf);
    if (!(c = hypha__v1__dp_ingress_config__unpack(NULL, len, buf)))
        goto out;
    if (g->local) {
        size_t size = sizeof(*g->local) + g->local->n * sizeof(g->local->a[0]);
        if (!(r->local = malloc(size)))
            goto out;
        memcpy(r->local, g->local, size);
    }
    if ((rc = hy_ing_guard_filter(g, c, r->local)) < 0)
        goto out;
    hy_agent_snap_init(&r->base, routes_free, c->version);
    r->c = c;
    c = NULL;
    hy_agent_current_publish(&g->current, &r->base);
    r = NULL;
out:
    free(buf);
    if (c)
        hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
    if (r) {
        free(r->local);
        free(r);
    }
    return rc;
}

/* ----- the control stream ----- */

static int send_msg(struct hy_ing *g, const Hypha__V1__DpMessage *m)
{
    return hy_ws_send_msg(hy_ws_client_conn(g->ws), &m->base, NULL);
}

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct hy_ing *g = ud;
    (void)c;
    g->open = true;
    g->rejected = false;
    char *token = hy_agent_read_token(g->cfg->token_file);
    if (token) { /* it may have been replaced since: take the new one */
        explicit_bzero(g->token, strlen(g->token));
        free(g->token);
        g->token = token;
    }
    Hypha__V1__DpHello h = HYPHA__V1__DP_HELLO__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    h.dataplane = g->file.env;
    h.token = g->token;
    h.version = HYPHA_VERSION;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
    m.hello = &h;
    snprintf(g->status, sizeof(g->status), "connected to %s, waiting for routes", peer);
    hy_log(HY_LOG_INFO, "ingress", "connected to the zone control plane at %s; presenting %s", peer,
           g->file.res->meta->name);
    send_msg(g, &m);
}

/* Takes c. Every endpoint must be an address and port we can connect to. */
static void on_config(struct hy_ing *g, Hypha__V1__DpIngressConfig *c)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    char err[300] = "";
    if (!c->version || !c->version[0])
        snprintf(err, sizeof(err), "the routes have no version");
    for (size_t i = 0; !err[0] && i < c->n_routes; i++) {
        const Hypha__V1__DpIngressRoute *r = c->routes[i];
        if (!r->sni || !r->sni[0] || !r->mesh || !r->service)
            snprintf(err, sizeof(err), "route %zu has no sni, mesh or service", i);
        for (size_t k = 0; !err[0] && k < r->n_endpoints; k++)
            if (!r->endpoints[k]->address || !r->endpoints[k]->port ||
                r->endpoints[k]->port > 65535)
                snprintf(err, sizeof(err), "route %s: endpoint %zu has no address or port", r->sni,
                         k);
    }
    if (err[0]) {
        hy_log(HY_LOG_WARN, "ingress", "refused routes %s: %s", S(c->version), err);
        nack.version = (char *)S(c->version);
        nack.error = err;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
        m.nack = &nack;
        send_msg(g, &m);
        hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
        return;
    }
    /* the guard filters them against this host's addresses as of now */
    Hypha__V1__DpIngressConfig *prev = g->config;
    g->config = c;
    hy_ing_guard_refresh(g);
    if (hy_ing_routes_publish(g) < 0) {
        g->config = prev;
        hy_log(HY_LOG_ERROR, "ingress", "out of memory applying routes %s", S(c->version));
        nack.version = (char *)S(c->version);
        nack.error = "the ingress is out of memory";
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
        m.nack = &nack;
        send_msg(g, &m);
        hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
        return;
    }
    if (prev)
        hypha__v1__dp_ingress_config__free_unpacked(prev, NULL);
    hy_series_inc(g->m.configs);
    snprintf(g->status, sizeof(g->status), "routes %.60s applied", c->version);
    hy_log(HY_LOG_INFO, "ingress", "applied routes %s: %zu services%s", c->version, c->n_routes,
           g->nrefused ? "; endpoints refused are listed in /config" : "");
    ack.version = c->version;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
    m.ack = &ack;
    send_msg(g, &m);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct hy_ing *g = ud;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) {
        hy_log(HY_LOG_WARN, "ingress", "malformed message from the zone control plane (%zu bytes)",
               len);
        hy_ws_close(c, HY_WS_CLOSE_POLICY, "malformed message");
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__DP_MESSAGE__MSG_REJECT:
        g->rejected = true;
        snprintf(g->status, sizeof(g->status), "rejected by the zone control plane: %.250s",
                 S(m->reject->reason));
        hy_log(HY_LOG_ERROR, "ingress", "the zone control plane rejected this ingress: %s",
               S(m->reject->reason));
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_INGRESS_CONFIG: {
        Hypha__V1__DpIngressConfig *cfg = m->ingress_config;
        m->ingress_config = NULL; /* on_config takes it */
        m->msg_case = HYPHA__V1__DP_MESSAGE__MSG__NOT_SET;
        if (!g->rejected && !g->shutting_down)
            on_config(g, cfg);
        else
            hypha__v1__dp_ingress_config__free_unpacked(cfg, NULL);
        break;
    }
    default:
        hy_log(HY_LOG_WARN, "ingress", "unexpected message from the zone control plane (case %d)",
               (int)m->msg_case);
        break;
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct hy_ing *g = ud;
    (void)c;
    bool was = g->open;
    g->open = false;
    if (g->shutting_down) {
        hy_log(HY_LOG_INFO, "ingress", "stream to the zone control plane closed: %s (%d)", reason,
               code);
        hy_ws_client_stop(g->ws);
        uv_stop(g->loop);
        return;
    }
    if (!g->rejected)
        snprintf(g->status, sizeof(g->status), "%s the zone control plane at %s: %.150s (%d)",
                 was ? "lost" : "cannot reach", g->cfg->cp_address, reason, code);
    struct hy_ing_routes *r = hy_ing_routes_get(&g->current, NULL);
    hy_log(was ? HY_LOG_WARN : HY_LOG_INFO, "ingress", "%s the zone control plane: %s (%d); %s%s",
           was ? "lost" : "cannot reach", reason, code, r ? "keeping routes " : "no routes yet",
           r ? r->c->version : "");
    hy_ing_routes_unref(r);
}

/* ----- admin ----- */

bool hy_ing_ready(struct hy_ing *g, char *why, size_t size)
{
    if (!hy_agent_current_generation(&g->current)) {
        snprintf(why, size, "no routes from the zone control plane yet (%s)", g->status);
        return false;
    }
    if (!g->listening) {
        snprintf(why, size, "not listening for cross-zone traffic");
        return false;
    }
    return true;
}

static void handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_ing *g = ud;
    static const char *const paths[] = {"/ready", "/config", "/metrics"};
    size_t i;
    for (i = 0; i < 3 && strcmp(req->path, paths[i]) != 0; i++)
        ;
    if (i == 3) {
        snprintf(resp->route, sizeof(resp->route), "(unknown)");
        hy_http_error(resp, 404, "Not found", "the admin server serves /ready, /config, /metrics",
                      NULL);
        return;
    }
    snprintf(resp->route, sizeof(resp->route), "%s", paths[i]);
    if (req->method != HY_HTTP_GET && req->method != HY_HTTP_HEAD) {
        hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        return;
    }
    char why[512];
    int rc = 0;
    struct hy_ing_routes *r = hy_ing_routes_get(&g->current, NULL);
    if (i == 2) {
        resp->content_type = HY_METRICS_CONTENT_TYPE;
        rc = hy_metrics_render(g->metrics, &resp->body);
    } else if (!hy_ing_ready(g, why, sizeof(why))) {
        if (i == 1) {
            hy_http_error(resp, 503, "No routes yet", why, NULL);
            hy_ing_routes_unref(r);
            return;
        }
        resp->status = 503;
        rc = hy_buf_puts(&resp->body, "{\"ready\":false,\"reason\":");
        rc = rc ? rc : hy_codec_json_string(&resp->body, why, strlen(why));
        rc = rc ? rc : hy_buf_puts(&resp->body, "}\n");
    } else if (i == 0) {
        rc = hy_buf_puts(&resp->body, "{\"ready\":true,\"version\":");
        rc = rc ? rc : hy_codec_json_string(&resp->body, r->c->version, strlen(r->c->version));
        rc = rc ? rc : hy_buf_printf(&resp->body, ",\"services\":%zu}\n", r->c->n_routes);
    } else {
        /* the routes in use, and what the guard dropped from them */
        rc = hy_codec_encode_message(&r->c->base, HY_FORMAT_JSON, &resp->body);
        struct hy_buf *b = &resp->body;
        if (rc == 0 && b->len >= 2 && b->data[b->len - 1] == '}') {
            b->data[--b->len] = '\0';
            rc = hy_buf_puts(b, b->data[b->len - 1] == '{' ? "\"refusedEndpoints\":"
                                                           : ",\"refusedEndpoints\":");
            rc = rc ? rc : hy_ing_guard_json(g, b);
            rc = rc ? rc : hy_buf_puts(b, "}");
        }
        rc = rc ? rc : hy_buf_puts(&resp->body, "\n");
    }
    hy_ing_routes_unref(r);
    if (rc < 0)
        hy_http_error(resp, 500, "Out of memory", "cannot answer", NULL);
}

static double connected(void *ud)
{
    const struct hy_ing *g = ud;
    return g->open && !g->rejected;
}

static int open_metrics(struct hy_ing *g)
{
    struct hy_metrics *m = g->metrics = hy_metrics_new();
    if (!m || hy_metrics_add_process(m) < 0)
        return HY_ENOMEM;
    struct hy_metric *acc = hy_metric_counter(m, "hypha_ingress_connections_total",
                                              "Connections accepted on the ingress port", 0);
    struct hy_metric *act =
        hy_metric_gauge(m, "hypha_ingress_active_connections", "Connections open", 0);
    struct hy_metric *bytes =
        hy_metric_counter(m, "hypha_ingress_bytes_total", "Bytes relayed, both ways together", 0);
    struct hy_metric *cfgs = hy_metric_counter(m, "hypha_ingress_configs_total",
                                               "Route sets from the zone control plane applied", 0);
    struct hy_metric *ref =
        hy_metric_counter(m, "hypha_ingress_refused_total",
                          "Connections closed before anything was forwarded, by why", 1, "reason");
    struct hy_metric *up =
        hy_metric_counter(m, "hypha_ingress_upstream_failures_total",
                          "Connections no local endpoint of their service accepted", 0);
    struct hy_metric *eref = hy_metric_counter(
        m, "hypha_ingress_endpoints_refused_total",
        "Endpoints the ingress refused to relay to, this host itself, by why: once as a route "
        "set brings one, and at every connect refused",
        1, "reason");
    for (int i = 1; eref && i < HY_ING_NREFUSALS; i++)
        if (!(g->m.endpoints_refused[i] = hy_metric_series(eref, hy_ing_refusal_name(i))))
            return HY_ENOMEM;
    if (!acc || !act || !bytes || !cfgs || !ref || !up || !eref ||
        !hy_metric_gauge_fn(m, "hypha_ingress_connected",
                            "1 while connected to the zone control plane (and not rejected)",
                            connected, g))
        return HY_ENOMEM;
    static const char *const reasons[5] = {"not_tls", "malformed", "no_sni", "unknown_sni",
                                           "too_big"};
    for (int i = 0; i < 5; i++)
        if (!(g->m.refused[i] = hy_metric_series(ref, reasons[i])))
            return HY_ENOMEM;
    g->m.accepted = hy_metric_series(acc);
    g->m.active = hy_metric_series(act);
    g->m.bytes = hy_metric_series(bytes);
    g->m.configs = hy_metric_series(cfgs);
    g->m.upstream_failed = hy_metric_series(up);
    return g->m.accepted && g->m.active && g->m.bytes && g->m.configs && g->m.upstream_failed
               ? 0
               : HY_ENOMEM;
}

/* ----- life ----- */

static int check_options(const struct hy_ing_cfg *cfg)
{
    const char *missing = !cfg->cp_address     ? "--cp-address wss://ZONE:5678"
                          : !cfg->ca_cert_file ? "--ca-cert-file (the zone's DP server CA)"
                          : !cfg->ingress_file ? "--ingress-file (a ZoneIngress, YAML)"
                          : !cfg->token_file ? "--token-file (hyphactl generate zone-ingress-token)"
                                             : NULL;
    if (missing) {
        hy_log(HY_LOG_ERROR, "ingress", "missing %s", missing);
        return HY_EINVAL;
    }
    if (strncmp(cfg->cp_address, "wss://", 6) != 0) {
        hy_log(HY_LOG_ERROR, "ingress", "--cp-address %s: must start with wss://", cfg->cp_address);
        return HY_EINVAL;
    }
    return 0;
}

static void on_grace(uv_timer_t *t)
{
    struct hy_ing *g = t->data;
    hy_log(HY_LOG_WARN, "ingress", "the zone control plane did not answer our close within %d ms",
           HY_ING_SHUTDOWN_GRACE_MS);
    uv_stop(g->loop);
}

int hy_ing_open(struct hy_ing *g, const struct hy_ing_cfg *cfg, uv_loop_t *loop)
{
    memset(g, 0, sizeof(*g));
    g->cfg = cfg;
    g->loop = loop;
    g->addrs_fd = -1;
    hy_agent_current_init(&g->current);
    hy_agent_eps_init(&g->failed);
    atomic_init(&g->stopping, false);
    int rc = check_options(cfg);
    if (rc < 0)
        return rc;
    struct hy_diag diag = {0};
    rc = hy_agent_file_load_type(cfg->ingress_file, &cfg->vars, "ZoneIngress", &g->file, &diag);
    for (size_t i = 0; i < diag.n; i++) {
        char line[600];
        hy_log(HY_LOG_ERROR, "ingress", "%s", hy_diag_format(&diag, i, line, sizeof(line)));
    }
    hy_diag_fini(&diag);
    if (rc < 0)
        return rc;
    if (!(g->token = hy_agent_read_token(cfg->token_file))) {
        rc = -errno;
        hy_log(HY_LOG_ERROR, "ingress",
               "%s: cannot read the zone-ingress token: %s; generate one with 'hyphactl generate "
               "zone-ingress-token --name %s'",
               cfg->token_file, errno == ENODATA ? "the file is empty" : strerror(errno),
               g->file.res->meta->name);
        return rc;
    }
    snprintf(g->status, sizeof(g->status), "connecting to the zone control plane at %s",
             cfg->cp_address);
    if ((rc = open_metrics(g)) < 0)
        return rc;
    char address[300];
    hy_addr_format(&cfg->admin_address, address, sizeof(address));
    struct hy_http_listener l = {.address = address};
    struct hy_http_server_config hc = {
        .loop = loop,
        .listeners = &l,
        .nlisteners = 1,
        .max_body = 4096,
        .handler = handle,
        .ud = g,
    };
    if ((rc = hy_http_server_new(&hc, &g->admin)) < 0) {
        hy_log(HY_LOG_ERROR, "ingress", "cannot serve the admin API on %s: %s", address,
               hy_strerror(rc));
        return rc;
    }
    g->admin_port = (unsigned)hy_http_server_port(g->admin, 0);
    hy_ing_guard_start(g);
    if ((rc = hy_ing_relay_start(g)) < 0)
        return rc;
    uv_timer_init(loop, &g->grace_timer);
    g->grace_timer.data = g;
    g->grace_init = true;
    struct hy_ws_client_config wc = {
        .loop = loop,
        .url = cfg->cp_address,
        .name = "the zone control plane",
        .ca_file = cfg->ca_cert_file,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .limits = {.max_message = HY_ING_MAX_MESSAGE},
        .cb = {on_open, on_message, on_close},
        .ud = g,
    };
    if ((rc = hy_ws_client_new(&wc, &g->ws)) < 0)
        return rc;
    struct hy_addr bound = cfg->admin_address;
    bound.port = (uint16_t)hy_http_server_port(g->admin, 0);
    hy_log(HY_LOG_INFO, "ingress",
           "hypha-ingress %s started: ZoneIngress %s, zone control plane %s, admin on http://%s",
           HYPHA_VERSION, g->file.res->meta->name, cfg->cp_address,
           hy_addr_format(&bound, address, sizeof(address)));
    return 0;
}

void hy_ing_shutdown(struct hy_ing *g)
{
    if (g->shutting_down || !g->ws) {
        uv_stop(g->loop);
        return;
    }
    g->shutting_down = true;
    if (hy_ws_close(hy_ws_client_conn(g->ws), HY_WS_CLOSE_NORMAL, "ingress shutting down") < 0) {
        uv_stop(g->loop);
        return;
    }
    hy_log(HY_LOG_INFO, "ingress", "closing the stream to the zone control plane");
    uv_timer_start(&g->grace_timer, on_grace, HY_ING_SHUTDOWN_GRACE_MS, 0);
}

void hy_ing_stop(struct hy_ing *g)
{
    hy_ing_relay_stop(g);
    hy_ing_guard_stop(g);
    hy_http_server_stop(g->admin);
    hy_ws_client_stop(g->ws);
    if (g->grace_init) {
        uv_close((uv_handle_t *)&g->grace_timer, NULL);
        g->grace_init = false;
    }
}

void hy_ing_close(struct hy_ing *g)
{
    hy_ing_relay_free(g);
    hy_ws_client_free(g->ws);
    g->ws = NULL;
    hy_http_server_free(g->admin);
    g->admin = NULL;
    hy_ing_guard_fini(g);
    hy_metrics_free(g->metrics);
    g->metrics = NULL;
    hy_agent_file_fini(&g->file);
    if (g->token) {
        explicit_bzero(g->token, strlen(g->token));
        free(g->token);
        g->token = NULL;
    }
    hy_agent_current_fini(&g->current);
    hy_agent_eps_fini(&g->failed);
}
