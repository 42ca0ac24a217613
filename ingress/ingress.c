/* What makes a data-plane process (agent.h) an ingress: its configs are
 * DpIngressConfig route sets (checked, filtered by the guard, published
 * to the relay's workers), its metrics, when it is ready, what /ready and
 * /config say. Its routes keep serving while the zone is away. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "ingress.h"
#include "metrics.h"
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
    hy_agent_current_publish(&g->a.current, &r->base);
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

/* ----- the control stream's part ----- */

static struct hy_ing *ing_of(struct hy_agent *a)
{
    _Static_assert(offsetof(struct hy_ing, a) == 0, "the agent comes first");
    return (struct hy_ing *)a;
}

/* Takes c. Every endpoint must be an address and port we can connect to. */
static void on_config(struct hy_ing *g, Hypha__V1__DpIngressConfig *c)
{
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
        hy_agent_answer(&g->a, c->version, err);
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
        hy_agent_answer(&g->a, c->version, "the ingress is out of memory");
        hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
        return;
    }
    if (prev)
        hypha__v1__dp_ingress_config__free_unpacked(prev, NULL);
    hy_series_inc(g->m.configs);
    snprintf(g->a.status, sizeof(g->a.status), "routes %.60s applied", c->version);
    hy_log(HY_LOG_INFO, "ingress", "applied routes %s: %zu services%s", c->version, c->n_routes,
           g->nrefused ? "; endpoints refused are listed in /config" : "");
    hy_agent_answer(&g->a, c->version, NULL);
}

static bool on_message(struct hy_agent *a, Hypha__V1__DpMessage *m)
{
    if (m->msg_case != HYPHA__V1__DP_MESSAGE__MSG_INGRESS_CONFIG)
        return false;
    Hypha__V1__DpIngressConfig *cfg = m->ingress_config;
    m->ingress_config = NULL; /* on_config takes it */
    m->msg_case = HYPHA__V1__DP_MESSAGE__MSG__NOT_SET;
    on_config(ing_of(a), cfg);
    return true;
}

/* ----- admin ----- */

static bool ready(struct hy_agent *a, struct hy_agent_snap *s, uint64_t gen, char *why, size_t size)
{
    (void)s, (void)gen;
    if (!ing_of(a)->listening) {
        snprintf(why, size, "not listening for cross-zone traffic");
        return false;
    }
    return true;
}

static int ready_json(struct hy_agent *a, struct hy_agent_snap *s, struct hy_buf *b)
{
    (void)a;
    return hy_buf_printf(b, ",\"services\":%zu", hy_ing_routes_of(s)->c->n_routes);
}

/* the routes in use, and what the guard dropped from them */
static int config_json(struct hy_agent *a, struct hy_agent_snap *s, struct hy_buf *b)
{
    int rc = hy_codec_encode_message(&hy_ing_routes_of(s)->c->base, HY_FORMAT_JSON, b);
    if (rc == 0 && b->len >= 2 && b->data[b->len - 1] == '}') {
        b->data[--b->len] = '\0';
        rc = hy_buf_puts(b, b->data[b->len - 1] == '{' ? "\"refusedEndpoints\":"
                                                       : ",\"refusedEndpoints\":");
        rc = rc ? rc : hy_ing_guard_json(ing_of(a), b);
        rc = rc ? rc : hy_buf_puts(b, "}");
    }
    return rc;
}

static int open_metrics(struct hy_ing *g)
{
    struct hy_metrics *m = g->a.metrics;
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
    if (!acc || !act || !bytes || !cfgs || !ref || !up || !eref)
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

/* Metrics, the guard, and the relay's workers, which must know the admin
 * port (the guard never relays to it). */
static int start(struct hy_agent *a)
{
    struct hy_ing *g = ing_of(a);
    g->cfg = (const struct hy_ing_cfg *)a->cfg;
    g->addrs_fd = -1;
    hy_agent_eps_init(&g->failed);
    g->started = true;
    int rc = open_metrics(g);
    if (rc < 0)
        return rc;
    g->admin_port = (unsigned)hy_agent_admin_port(a);
    hy_ing_guard_start(g);
    return hy_ing_relay_start(g);
}

static void stop(struct hy_agent *a)
{
    struct hy_ing *g = ing_of(a);
    if (!g->started)
        return;
    hy_ing_relay_stop(g);
    hy_ing_guard_stop(g);
}

static void close_(struct hy_agent *a)
{
    struct hy_ing *g = ing_of(a);
    if (!g->started)
        return;
    hy_ing_relay_free(g);
    hy_ing_guard_fini(g);
    hy_agent_eps_fini(&g->failed);
}

const struct hy_agent_ops hy_ing_ops = {
    .program = "hypha-ingress",
    .component = "ingress",
    .what = "ingress",
    .type = "ZoneIngress",
    .configs = "routes",
    .file_help = "the ZoneIngress resource (YAML) this ingress presents",
    .token_command = "zone-ingress-token",
    .file_flag = "--ingress-file",
    .token_flag = "--token-file",
    .size = sizeof(struct hy_ing),
    .start = start,
    .message = on_message,
    .ready = ready,
    .ready_json = ready_json,
    .config_json = config_json,
    .stop = stop,
    .close = close_,
};
