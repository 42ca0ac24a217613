/* A data-plane process's life and its control stream (agent.h): the same
 * for the sidecar and the ingress, which add their configs and workers
 * through struct hy_agent_ops. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "http_server.h"
#include "metrics.h"
#include "runner.h"
#include "wire.h"
#include "ws.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

/* "mesh/name", or "name" for a resource without a mesh (a ZoneIngress) */
static const char *presented(const struct hy_agent *a, char *out, size_t size)
{
    const Hypha__V1__Meta *me = a->file.res->meta;
    if (me->mesh && me->mesh[0])
        snprintf(out, size, "%s/%s", me->mesh, me->name);
    else
        snprintf(out, size, "%s", me->name);
    return out;
}

int hy_agent_send(struct hy_agent *a, const Hypha__V1__DpMessage *m)
{
    int rc = hy_ws_send_msg(hy_ws_client_conn(a->ws), &m->base, NULL);
    if (rc < 0)
        hy_log(HY_LOG_WARN, a->ops->component, "cannot send to the zone control plane: %s",
               hy_strerror(rc));
    return rc;
}

int hy_agent_answer(struct hy_agent *a, const char *version, const char *error)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    if (error) {
        nack.version = (char *)S(version);
        nack.error = (char *)error;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
        m.nack = &nack;
    } else {
        ack.version = (char *)S(version);
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
        m.ack = &ack;
    }
    return hy_agent_send(a, &m);
}

/* ----- the zone's addresses (several replicas of one zone) ----- */

const char *hy_agent_cp_address(const struct hy_agent *a)
{
    const struct hy_strings *v = &a->cfg->cp_addresses;
    return v->n ? v->v[a->cp_index % v->n] : "";
}

/* The stream opened on address cp_index: the metrics say which, and a
 * move from the address of the last open stream is a failover. */
static void zone_opened(struct hy_agent *a)
{
    size_t n = a->cfg->cp_addresses.n;
    for (size_t i = 0; a->cp_series && i < n; i++)
        hy_series_set(a->cp_series[i], i == a->cp_index ? 1 : 0);
    if (a->cp_last_open >= 0 && (size_t)a->cp_last_open != a->cp_index) {
        hy_series_inc(a->failovers);
        hy_log(HY_LOG_WARN, a->ops->component,
               "failed over to the zone control plane at %s (from %s; failover %.0f)",
               hy_agent_cp_address(a), a->cfg->cp_addresses.v[a->cp_last_open],
               hy_series_value(a->failovers));
    }
    a->cp_last_open = (ssize_t)a->cp_index;
}

/* The stream closed or an attempt failed: with several addresses, the
 * client's next attempt (after its backoff) goes to the next one, so a
 * dead replica is left at once and every replica is tried in turn. */
static void zone_next(struct hy_agent *a)
{
    size_t n = a->cfg->cp_addresses.n;
    for (size_t i = 0; a->cp_series && i < n; i++)
        hy_series_set(a->cp_series[i], 0);
    if (n < 2 || a->stopped)
        return;
    size_t next = (a->cp_index + 1) % n;
    if (hy_ws_client_set_url(a->ws, a->cfg->cp_addresses.v[next]) < 0)
        return; /* checked at start; only memory can fail here: stay */
    a->cp_index = next;
    hy_log(HY_LOG_INFO, a->ops->component,
           "next attempt: the zone control plane at %s (%zu of %zu)", hy_agent_cp_address(a),
           next + 1, n);
}

/* ----- the control stream ----- */

/* DpStatsRequest id: what /metrics renders, cut at a line end before
 * HY_DP_MAX_STATS bytes (saying so in error), so it always fits the
 * zone's limit. */
static void answer_stats(struct hy_agent *a, uint64_t id)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpStats st = HYPHA__V1__DP_STATS__INIT;
    struct hy_buf b = {0};
    char error[160] = "";
    st.has_id = 1;
    st.id = id;
    if (hy_metrics_render(a->metrics, &b) < 0) {
        snprintf(error, sizeof(error), "out of memory rendering the metrics");
        if (b.data) /* nothing half rendered */
            b.data[0] = '\0';
    } else if (b.len > HY_DP_MAX_STATS) {
        size_t cut = HY_DP_MAX_STATS;
        while (cut > 0 && b.data[cut - 1] != '\n')
            cut--;
        snprintf(error, sizeof(error), "metrics truncated: the first %zu of %zu bytes (at most %u)",
                 cut, b.len, HY_DP_MAX_STATS);
        b.data[cut] = '\0';
    }
    st.text = b.data ? b.data : "";
    st.error = error[0] ? error : NULL;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_STATS;
    m.stats = &st;
    hy_agent_send(a, &m);
    hy_buf_fini(&b);
}

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct hy_agent *a = ud;
    const char *comp = a->ops->component;
    a->open = true;
    a->rejected = false;
    zone_opened(a);
    char *token = hy_agent_read_token(a->cfg->token_file);
    if (token) { /* it may have been replaced since: take the new one */
        explicit_bzero(a->token, strlen(a->token));
        free(a->token);
        a->token = token;
    } else {
        hy_log(HY_LOG_WARN, comp, "%s: cannot read the token (%s); presenting the last one",
               a->cfg->token_file, errno == ENODATA ? "the file is empty" : strerror(errno));
    }
    Hypha__V1__DpHello h = HYPHA__V1__DP_HELLO__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    h.dataplane = a->file.env;
    h.token = a->token;
    h.version = HYPHA_VERSION;
    /* where /metrics is, for the zone's Prometheus discovery */
    char admin[HY_DP_MAX_ADMIN_ADDRESS + 1] = "";
    if (a->admin) {
        struct hy_addr ad = a->cfg->admin_address;
        ad.port = (uint16_t)hy_agent_admin_port(a);
        hy_addr_format(&ad, admin, sizeof(admin));
        h.admin_address = admin;
    }
    if (a->ops->hello && a->ops->hello(a, &h) < 0) {
        hy_ws_close(c, HY_WS_CLOSE_INTERNAL, "cannot make the hello");
        return;
    }
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
    m.hello = &h;
    char name[300];
    snprintf(a->status, sizeof(a->status), "connected to %s, waiting for %s%s", peer,
             strcmp(a->ops->configs, "config") == 0 ? "a " : "", a->ops->configs);
    hy_log(HY_LOG_INFO, comp, "connected to the zone control plane at %s; presenting %s", peer,
           presented(a, name, sizeof(name)));
    hy_agent_send(a, &m);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct hy_agent *a = ud;
    const char *comp = a->ops->component;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) {
        hy_log(HY_LOG_WARN, comp, "malformed message from the zone control plane (%zu bytes)", len);
        hy_ws_close(c, HY_WS_CLOSE_POLICY, "malformed message");
        return;
    }
    if (m->msg_case == HYPHA__V1__DP_MESSAGE__MSG_REJECT) {
        a->rejected = true;
        snprintf(a->status, sizeof(a->status), "rejected by the zone control plane: %.250s",
                 S(m->reject->reason));
        hy_log(HY_LOG_ERROR, comp, "the zone control plane rejected this %s: %s", a->ops->what,
               S(m->reject->reason));
    } else if (a->rejected || a->shutting_down) {
        /* leaving: nothing more is applied */
    } else if (m->msg_case == HYPHA__V1__DP_MESSAGE__MSG_STATS_REQUEST) {
        answer_stats(a, m->stats_request->id);
    } else if (!a->ops->message(a, m)) {
        hy_log(HY_LOG_WARN, comp, "unexpected message from the zone control plane (case %d)",
               (int)m->msg_case);
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct hy_agent *a = ud;
    const char *comp = a->ops->component;
    (void)c;
    bool was = a->open;
    a->open = false;
    if (a->shutting_down) {
        hy_log(HY_LOG_INFO, comp, "stream to the zone control plane closed: %s (%d)", reason, code);
        hy_ws_client_stop(a->ws); /* no reconnect (deferred: we are inside its callback) */
        if (!a->stopped) /* after hy_agent_stop the runner's last run must drain the loop */
            uv_stop(a->loop);
        return;
    }
    const char *at = hy_agent_cp_address(a);
    if (!a->rejected) /* a reject says more than the close that follows it */
        snprintf(a->status, sizeof(a->status), "%s the zone control plane at %s: %.150s (%d)",
                 was ? "lost" : "cannot reach", at, reason, code);
    struct hy_agent_snap *s = hy_agent_current_get(&a->current, NULL);
    hy_log(was ? HY_LOG_WARN : HY_LOG_INFO, comp,
           "%s the zone control plane at %s: %s (%d); %s %s%s%s", was ? "lost" : "cannot reach", at,
           reason, code, s ? "keeping" : "no", a->ops->configs, s ? " " : " yet",
           s ? s->version : "");
    hy_agent_snap_unref(s);
    zone_next(a);
}

/* ----- the admin server ----- */

bool hy_agent_ready(struct hy_agent *a, char *why, size_t size)
{
    uint64_t gen;
    struct hy_agent_snap *s = hy_agent_current_get(&a->current, &gen);
    bool ready = s != NULL;
    if (!s)
        snprintf(why, size, "no %s from the zone control plane yet (%s)", a->ops->configs,
                 a->status);
    else if (a->ops->ready)
        ready = a->ops->ready(a, s, gen, why, size);
    hy_agent_snap_unref(s);
    return ready;
}

static int ready_body(struct hy_agent *a, struct hy_http_resp *resp)
{
    char why[512];
    struct hy_buf *b = &resp->body;
    int rc;
    if (!hy_agent_ready(a, why, sizeof(why))) {
        resp->status = 503;
        rc = hy_buf_puts(b, "{\"ready\":false,\"reason\":");
        rc = rc ? rc : hy_codec_json_string(b, why, strlen(why));
        return rc ? rc : hy_buf_puts(b, "}\n");
    }
    struct hy_agent_snap *s = hy_agent_current_get(&a->current, NULL);
    rc = hy_buf_puts(b, "{\"ready\":true,\"version\":");
    rc = rc ? rc : hy_codec_json_string(b, s->version, strlen(s->version));
    rc = rc ? rc : a->ops->ready_json(a, s, b);
    rc = rc ? rc : hy_buf_puts(b, "}\n");
    hy_agent_snap_unref(s);
    return rc;
}

static void handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_agent *a = ud;
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
    int rc;
    if (i == 0) {
        rc = ready_body(a, resp);
    } else if (i == 2) {
        resp->content_type = HY_METRICS_CONTENT_TYPE;
        rc = hy_metrics_render(a->metrics, &resp->body);
    } else {
        struct hy_agent_snap *s = hy_agent_current_get(&a->current, NULL);
        if (!s) {
            char why[512], title[40];
            hy_agent_ready(a, why, sizeof(why));
            snprintf(title, sizeof(title), "No %s yet", a->ops->configs);
            hy_http_error(resp, 503, title, why, NULL);
            return;
        }
        rc = a->ops->config_json(a, s, &resp->body);
        rc = rc ? rc : hy_buf_puts(&resp->body, "\n");
        hy_agent_snap_unref(s);
    }
    if (rc < 0)
        hy_http_error(resp, 500, "Out of memory", "cannot answer", NULL);
}

int hy_agent_admin_port(const struct hy_agent *a)
{
    return a->admin ? hy_http_server_port(a->admin, 0) : 0;
}

/* ----- life ----- */

static double connected(void *ud)
{
    const struct hy_agent *a = ud;
    return a->open && !a->rejected;
}

/* Every option a data-plane process cannot start without, each with what
 * to give. */
static int check_options(const struct hy_agent_cfg *cfg, const struct hy_agent_ops *ops)
{
    char token_help[120];
    snprintf(token_help, sizeof(token_help), "a token from 'hyphactl generate %s'",
             ops->token_command);
    const struct {
        const char *value, *flag, *what;
    } required[] = {
        {cfg->cp_addresses.n ? cfg->cp_addresses.v[0] : NULL, "--cp-address",
         "the zone control plane's DP server, wss://ZONE:5678 (several replicas: repeat it)"},
        {cfg->ca_cert_file, "--ca-cert-file",
         "the CA certificate that verifies the zone's DP server (the zone logs where it is)"},
        {cfg->resource_file, ops->file_flag, ops->file_help},
        {cfg->token_file, ops->token_flag, token_help},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!required[i].value || !required[i].value[0]) {
            hy_log(HY_LOG_ERROR, ops->component, "%s is required: %s", required[i].flag,
                   required[i].what);
            rc = HY_EINVAL;
        }
    for (size_t i = 0; i < cfg->cp_addresses.n; i++)
        if (strncmp(cfg->cp_addresses.v[i], "wss://", 6) != 0) {
            hy_log(HY_LOG_ERROR, ops->component,
                   "--cp-address \"%s\": expected wss://HOST:PORT (the zone's DP server, port "
                   "5678)",
                   cfg->cp_addresses.v[i]);
            rc = HY_EINVAL;
        }
    return rc;
}

static int load_file(struct hy_agent *a)
{
    struct hy_diag diag = {0};
    int rc = hy_agent_file_load_type(a->cfg->resource_file, &a->cfg->vars, a->ops->type, &a->file,
                                     &diag);
    for (size_t i = 0; i < diag.n; i++) {
        char line[600];
        hy_log(HY_LOG_ERROR, a->ops->component, "%s", hy_diag_format(&diag, i, line, sizeof(line)));
    }
    hy_diag_fini(&diag);
    if (rc < 0)
        return rc;
    if (!(a->token = hy_agent_read_token(a->cfg->token_file))) {
        const Hypha__V1__Meta *me = a->file.res->meta;
        bool mesh = me->mesh && me->mesh[0];
        rc = -errno;
        hy_log(HY_LOG_ERROR, a->ops->component,
               "%s: cannot read the token: %s; generate one with 'hyphactl generate %s%s%s "
               "--name %s'",
               a->cfg->token_file, errno == ENODATA ? "the file is empty" : strerror(errno),
               a->ops->token_command, mesh ? " --mesh " : "", mesh ? me->mesh : "", me->name);
    }
    return rc;
}

static int open_metrics(struct hy_agent *a)
{
    char name[80];
    snprintf(name, sizeof(name), "hypha_%s_connected", a->ops->component);
    a->metrics = hy_metrics_new();
    if (!a->metrics || hy_metrics_add_process(a->metrics) < 0 ||
        !hy_metric_gauge_fn(a->metrics, name,
                            "1 while connected to the zone control plane (and not rejected)",
                            connected, a))
        return HY_ENOMEM;
    snprintf(name, sizeof(name), "hypha_%s_zone_address", a->ops->component);
    struct hy_metric *addr = hy_metric_gauge(a->metrics, name,
                                             "1 for the zone control-plane address (--cp-address) "
                                             "the stream is open to, 0 for the others",
                                             1, "address");
    snprintf(name, sizeof(name), "hypha_%s_zone_failovers_total", a->ops->component);
    struct hy_metric *fo = hy_metric_counter(
        a->metrics, name, "Streams opened to another zone control-plane address than the last one",
        0);
    size_t n = a->cfg->cp_addresses.n;
    a->cp_series = calloc(n ? n : 1, sizeof(*a->cp_series));
    if (!addr || !fo || !a->cp_series || !(a->failovers = hy_metric_series(fo)))
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(a->cp_series[i] = hy_metric_series(addr, a->cfg->cp_addresses.v[i])))
            return HY_ENOMEM;
    return 0;
}

static int start_admin(struct hy_agent *a)
{
    char address[300];
    hy_addr_format(&a->cfg->admin_address, address, sizeof(address));
    struct hy_http_listener l = {.address = address};
    struct hy_http_server_config hc = {
        .loop = a->loop,
        .listeners = &l,
        .nlisteners = 1,
        .max_body = 4096,
        .handler = handle,
        .ud = a,
    };
    int rc = hy_http_server_new(&hc, &a->admin);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, a->ops->component, "cannot serve the admin API on %s: %s", address,
               hy_strerror(rc));
    return rc;
}

static int start_stream(struct hy_agent *a)
{
    struct hy_ws_client_config wc = {
        .loop = a->loop,
        .url = hy_agent_cp_address(a),
        .name = "the zone control plane",
        .ca_file = a->cfg->ca_cert_file,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .limits = {.max_message = HY_DP_MAX_CONFIG},
        .cb = {on_open, on_message, on_close},
        .ud = a,
    };
    return hy_ws_client_new(&wc, &a->ws);
}

int hy_agent_open(struct hy_agent *a, const struct hy_agent_cfg *cfg,
                  const struct hy_agent_ops *ops, uv_loop_t *loop)
{
    memset(a, 0, ops->size);
    a->cfg = cfg;
    a->ops = ops;
    a->loop = loop;
    hy_agent_current_init(&a->current);
    int rc = check_options(cfg, ops);
    if (rc < 0 || (rc = load_file(a)) < 0)
        return rc;
    a->cp_last_open = -1;
    snprintf(a->status, sizeof(a->status), "connecting to the zone control plane at %s",
             hy_agent_cp_address(a));
    uv_timer_init(loop, &a->grace_timer);
    a->grace_timer.data = a;
    a->grace_init = true;
    if ((rc = open_metrics(a)) < 0 || (rc = start_admin(a)) < 0 || (rc = ops->start(a)) < 0 ||
        (rc = start_stream(a)) < 0)
        return rc;
    char admin[300], name[300], cps[1024] = "";
    struct hy_addr bound = cfg->admin_address;
    bound.port = (uint16_t)hy_agent_admin_port(a);
    for (size_t i = 0, off = 0; i < cfg->cp_addresses.n && off < sizeof(cps); i++) {
        int w =
            snprintf(cps + off, sizeof(cps) - off, "%s%s", i ? "," : "", cfg->cp_addresses.v[i]);
        off += w > 0 ? (size_t)w : 0;
    }
    hy_log(HY_LOG_INFO, ops->component,
           "%s %s started: %s %s, zone control plane %s, admin on http://%s", ops->program,
           HYPHA_VERSION, ops->type, presented(a, name, sizeof(name)), cps,
           hy_addr_format(&bound, admin, sizeof(admin)));
    return 0;
}

static void on_grace(uv_timer_t *t)
{
    struct hy_agent *a = t->data;
    hy_log(HY_LOG_WARN, a->ops->component,
           "the zone control plane did not answer our close within %d ms",
           HY_AGENT_SHUTDOWN_GRACE_MS);
    uv_stop(a->loop);
}

void hy_agent_shutdown(struct hy_agent *a)
{
    if (a->shutting_down || !a->ws) {
        uv_stop(a->loop);
        return;
    }
    a->shutting_down = true;
    char reason[60];
    snprintf(reason, sizeof(reason), "%s shutting down", a->ops->what);
    if (hy_ws_close(hy_ws_client_conn(a->ws), HY_WS_CLOSE_NORMAL, reason) < 0) {
        uv_stop(a->loop); /* not connected: nobody to tell */
        return;
    }
    hy_log(HY_LOG_INFO, a->ops->component, "closing the stream to the zone control plane");
    uv_timer_start(&a->grace_timer, on_grace, HY_AGENT_SHUTDOWN_GRACE_MS, 0);
}

void hy_agent_stop(struct hy_agent *a)
{
    a->stopped = true;
    if (a->ops->stop)
        a->ops->stop(a);
    hy_http_server_stop(a->admin);
    hy_ws_client_stop(a->ws);
    if (a->grace_init) {
        uv_close((uv_handle_t *)&a->grace_timer, NULL);
        a->grace_init = false;
    }
}

void hy_agent_close(struct hy_agent *a)
{
    if (a->ops->close)
        a->ops->close(a);
    hy_ws_client_free(a->ws);
    a->ws = NULL;
    hy_http_server_free(a->admin);
    a->admin = NULL;
    hy_metrics_free(a->metrics);
    a->metrics = NULL;
    free(a->cp_series);
    a->cp_series = NULL;
    hy_agent_file_fini(&a->file);
    if (a->token) {
        explicit_bzero(a->token, strlen(a->token));
        free(a->token);
        a->token = NULL;
    }
    hy_agent_current_fini(&a->current);
}

/* ----- main ----- */

struct run {
    struct hy_agent *a;
    const struct hy_agent_ops *ops;
};

static int run_open(void *state, const void *cfg, uv_loop_t *loop)
{
    struct run *r = state;
    return hy_agent_open(r->a, cfg, r->ops, loop);
}

static void run_shutdown(void *state)
{
    hy_agent_shutdown(((struct run *)state)->a);
}

static void run_stop(void *state)
{
    hy_agent_stop(((struct run *)state)->a);
}

static void run_close(void *state)
{
    hy_agent_close(((struct run *)state)->a);
}

int hy_agent_main(int argc, char **argv, const struct hy_config_spec *spec, void *cfg,
                  struct hy_agent *state, const struct hy_agent_ops *ops)
{
    struct run r = {state, ops};
    const struct hy_main_program p = {
        .spec = spec,
        .cfg = cfg,
        .log_level_offset = offsetof(struct hy_agent_cfg, log_level),
        .component = ops->component,
        .command = "run",
        .hint = "--cp-address wss://ZONE:5678 ...",
        .state = &r,
        .open = run_open,
        .shutdown = run_shutdown,
        .stop = run_stop,
        .close = run_close,
    };
    return hy_main(&p, argc, argv);
}
