/* hypha-dp's life: what it needs before it starts (its Dataplane file, its
 * token), its metrics, when it is ready, and a shutdown that tells the zone
 * it is leaving. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "dataplane.pb-c.h"
#include "dp.h"
#include "error.h"
#include "metrics.h"
#include "proxy.h"
#include "ws.h"
#include "poison.h"

static double connected(void *ud)
{
    const struct hy_dp *d = ud;
    return d->open && !d->rejected;
}

static int open_metrics(struct hy_dp *d)
{
    struct hy_metrics *m = d->metrics = hy_metrics_new();
    if (!m || hy_metrics_add_process(m) < 0)
        return HY_ENOMEM;
    struct hy_metric *configs =
        hy_metric_counter(m, "hypha_dp_configs_total",
                          "Configs from the zone control plane, by what we answered", 1, "result");
    struct hy_metric *expiry =
        hy_metric_gauge(m, "hypha_dp_cert_expiry_timestamp_seconds",
                        "When the certificate in use expires, Unix seconds; 0 before the first", 0);
    struct hy_metric *renewals = hy_metric_counter(
        m, "hypha_dp_cert_renewals_total",
        "Certificates replaced by a new one (renewal, or a new key after a reconnect)", 0);
    if (!configs || !expiry || !renewals ||
        !hy_metric_gauge_fn(m, "hypha_dp_connected",
                            "1 while connected to the zone control plane (and not rejected)",
                            connected, d))
        return HY_ENOMEM;
    d->acks = hy_metric_series(configs, "ack");
    d->nacks = hy_metric_series(configs, "nack");
    d->cert_expiry = hy_metric_series(expiry);
    d->renewals = hy_metric_series(renewals);
    return d->acks && d->nacks && d->cert_expiry && d->renewals ? 0 : HY_ENOMEM;
}

/* The proxy, its inbound listeners on the Dataplane's address. It opens
 * its listeners when the control stream publishes a config. */
static int start_proxy(struct hy_dp *d)
{
    const Hypha__V1__Dataplane *dp = (const void *)d->file.res->spec;
    struct hy_proxy_cfg pc = {
        .loop = d->loop,
        .current = &d->current,
        .metrics = d->metrics,
        .inbound_host = dp && dp->networking ? dp->networking->address : NULL,
        .workers = d->cfg->workers > HY_PROXY_MAX_WORKERS ? HY_PROXY_MAX_WORKERS
                                                          : (unsigned)d->cfg->workers,
    };
    int rc = hy_proxy_new(&pc, &d->proxy);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "dp", "cannot start the proxy: %s", hy_strerror(rc));
    return rc;
}

/* Every option a sidecar cannot start without, each with what to give. */
static int check_options(const struct hy_dp_cfg *cfg)
{
    static const struct {
        size_t offset;
        const char *flag, *what;
    } required[] = {
        {offsetof(struct hy_dp_cfg, cp_address), "--cp-address",
         "the zone control plane's DP server, wss://ZONE:5678"},
        {offsetof(struct hy_dp_cfg, ca_cert_file), "--ca-cert-file",
         "the CA certificate that verifies the zone's DP server (the zone logs where it is)"},
        {offsetof(struct hy_dp_cfg, dataplane_file), "--dataplane-file",
         "the Dataplane resource (YAML) this sidecar presents"},
        {offsetof(struct hy_dp_cfg, dataplane_token_file), "--dataplane-token-file",
         "a token from 'hyphactl generate dataplane-token --mesh MESH --name NAME'"},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        const char *v = *(char *const *)((const char *)cfg + required[i].offset);
        if (!v || !v[0]) {
            hy_log(HY_LOG_ERROR, "dp", "%s is required: %s", required[i].flag, required[i].what);
            rc = HY_EINVAL;
        }
    }
    if (cfg->cp_address && cfg->cp_address[0] && strncmp(cfg->cp_address, "wss://", 6) != 0) {
        hy_log(HY_LOG_ERROR, "dp",
               "--cp-address \"%s\": expected wss://HOST:PORT (the zone's DP server, port 5678)",
               cfg->cp_address);
        rc = HY_EINVAL;
    }
    return rc;
}

int hy_dp_open(struct hy_dp *d, const struct hy_dp_cfg *cfg, uv_loop_t *loop)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->loop = loop;
    hy_agent_current_init(&d->current);
    int rc = check_options(cfg);
    if (rc < 0)
        return rc;

    struct hy_diag diag = {0};
    rc = hy_agent_file_load(cfg->dataplane_file, &cfg->dataplane_vars, &d->file, &diag);
    for (size_t i = 0; i < diag.n; i++) {
        char line[600];
        hy_log(HY_LOG_ERROR, "dp", "%s", hy_diag_format(&diag, i, line, sizeof(line)));
    }
    hy_diag_fini(&diag);
    if (rc < 0)
        return rc;

    if (!(d->token = hy_agent_read_token(cfg->dataplane_token_file))) {
        rc = -errno;
        hy_log(HY_LOG_ERROR, "dp",
               "%s: cannot read the dataplane token: %s; generate one with 'hyphactl generate "
               "dataplane-token --mesh %s --name %s'",
               cfg->dataplane_token_file, errno == ENODATA ? "the file is empty" : strerror(errno),
               d->file.res->meta->mesh, d->file.res->meta->name);
        return rc;
    }
    snprintf(d->status, sizeof(d->status), "connecting to the zone control plane at %s",
             cfg->cp_address);
    if ((rc = open_metrics(d)) < 0 || (rc = start_proxy(d)) < 0 ||
        (rc = hy_dp_admin_start(d)) < 0 || (rc = hy_dp_client_start(d)) < 0)
        return rc;
    char admin[300];
    struct hy_addr bound = cfg->admin_address;
    bound.port = (uint16_t)hy_dp_admin_port(d);
    hy_log(HY_LOG_INFO, "dp",
           "hypha-dp %s started: dataplane %s/%s, zone control plane %s, admin on http://%s",
           HYPHA_VERSION, d->file.res->meta->mesh, d->file.res->meta->name, cfg->cp_address,
           hy_addr_format(&bound, admin, sizeof(admin)));
    return 0;
}

bool hy_dp_ready(struct hy_dp *d, char *why, size_t size)
{
    uint64_t gen;
    struct hy_dp_snapshot *s = hy_dp_snapshot_get(&d->current, &gen);
    bool ready = false;
    if (!s) {
        snprintf(why, size, "no config from the zone control plane yet (%s)", d->status);
    } else if (!hy_proxy_applied(d->proxy, gen)) {
        snprintf(why, size, "the proxy workers have not taken the config yet");
    } else if ((int64_t)time(NULL) >= s->not_after) {
        char at[40];
        hy_timestamp_format(s->not_after, 0, at, sizeof(at));
        snprintf(why, size,
                 "the certificate expired at %s and the zone control plane has not "
                 "sent a new one (%s)",
                 at, d->status);
    } else {
        ready = true;
    }
    hy_dp_snapshot_unref(s);
    return ready;
}

static void on_grace(uv_timer_t *t)
{
    struct hy_dp *d = t->data;
    hy_log(HY_LOG_WARN, "dp", "the zone control plane did not answer our close within %d ms",
           HY_DP_SHUTDOWN_GRACE_MS);
    uv_stop(d->loop);
}

void hy_dp_shutdown(struct hy_dp *d)
{
    if (d->shutting_down || !d->ws) {
        uv_stop(d->loop);
        return;
    }
    d->shutting_down = true;
    uv_timer_stop(&d->renew_timer);
    if (hy_ws_close(hy_ws_client_conn(d->ws), HY_WS_CLOSE_NORMAL, "dataplane shutting down") < 0) {
        uv_stop(d->loop); /* not connected: nobody to tell */
        return;
    }
    hy_log(HY_LOG_INFO, "dp", "closing the stream to the zone control plane");
    uv_timer_start(&d->grace_timer, on_grace, HY_DP_SHUTDOWN_GRACE_MS, 0);
}

void hy_dp_stop(struct hy_dp *d)
{
    hy_proxy_stop(d->proxy);
    hy_dp_admin_stop(d);
    hy_dp_client_stop(d);
}

void hy_dp_close(struct hy_dp *d)
{
    hy_dp_client_free(d);
    hy_dp_admin_free(d);
    hy_proxy_free(d->proxy);
    d->proxy = NULL;
    hy_metrics_free(d->metrics);
    d->metrics = NULL;
    hy_agent_current_fini(&d->current);
    hy_agent_file_fini(&d->file);
    if (d->token) {
        explicit_bzero(d->token, strlen(d->token));
        free(d->token);
        d->token = NULL;
    }
}
