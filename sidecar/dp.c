/* What makes a data-plane process (agent.h) a sidecar: its metrics, its
 * proxy, when it is ready, and what /ready and /config say. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "codec.h"
#include "dataplane.pb-c.h"
#include "dp.h"
#include "dp_prom.h"
#include "error.h"
#include "metrics.h"
#include "proxy.h"
#include "poison.h"

static struct hy_sidecar *dp_of(struct hy_agent *a)
{
    _Static_assert(offsetof(struct hy_sidecar, a) == 0, "the agent comes first");
    return (struct hy_sidecar *)a;
}

static int open_metrics(struct hy_sidecar *d)
{
    struct hy_metrics *m = d->a.metrics;
    struct hy_metric *configs =
        hy_metric_counter(m, "hypha_dp_configs_total",
                          "Configs from the zone control plane, by what we answered", 1, "result");
    struct hy_metric *expiry =
        hy_metric_gauge(m, "hypha_dp_cert_expiry_timestamp_seconds",
                        "When the certificate in use expires, Unix seconds; 0 before the first", 0);
    struct hy_metric *renewals = hy_metric_counter(
        m, "hypha_dp_cert_renewals_total",
        "Certificates replaced by a new one (renewal, or a new key after a reconnect)", 0);
    if (!configs || !expiry || !renewals)
        return HY_ENOMEM;
    d->acks = hy_metric_series(configs, "ack");
    d->nacks = hy_metric_series(configs, "nack");
    d->cert_expiry = hy_metric_series(expiry);
    d->renewals = hy_metric_series(renewals);
    return d->acks && d->nacks && d->cert_expiry && d->renewals ? 0 : HY_ENOMEM;
}

/* Metrics, the renewal timer, and the proxy with its inbound listeners on
 * the Dataplane's address (it opens them when the control stream
 * publishes a config). */
static int start(struct hy_agent *a)
{
    struct hy_sidecar *d = dp_of(a);
    int rc = open_metrics(d);
    if (rc < 0)
        return rc;
    if ((rc = hy_dp_prom_new(a->loop, a->metrics, &d->prom)) < 0)
        return rc;
    hy_sidecar_client_start(d);
    const Hypha__V1__Dataplane *dp = (const void *)a->file.res->spec;
    struct hy_proxy_cfg pc = {
        .loop = a->loop,
        .current = &a->current,
        .metrics = a->metrics,
        .inbound_host = dp && dp->networking ? dp->networking->address : NULL,
        .workers = a->cfg->workers > HY_PROXY_MAX_WORKERS ? HY_PROXY_MAX_WORKERS
                                                          : (unsigned)a->cfg->workers,
    };
    if ((rc = hy_proxy_new(&pc, &d->proxy)) < 0)
        hy_log(HY_LOG_ERROR, "dp", "cannot start the proxy: %s", hy_strerror(rc));
    return rc;
}

static bool ready(struct hy_agent *a, struct hy_agent_snap *base, uint64_t gen, char *why,
                  size_t size)
{
    const struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_of(base);
    if (!hy_proxy_applied(dp_of(a)->proxy, gen)) {
        snprintf(why, size, "the proxy workers have not taken the config yet");
        return false;
    }
    if ((int64_t)time(NULL) >= s->not_after) {
        char at[40];
        hy_timestamp_format(s->not_after, 0, at, sizeof(at));
        snprintf(why, size,
                 "the certificate expired at %s and the zone control plane has not "
                 "sent a new one (%s)",
                 at, a->status);
        return false;
    }
    return true;
}

bool hy_sidecar_ready(struct hy_sidecar *d, char *why, size_t size)
{
    return hy_agent_ready(&d->a, why, size);
}

static int ready_json(struct hy_agent *a, struct hy_agent_snap *base, struct hy_buf *b)
{
    (void)a;
    const struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_of(base);
    char until[40];
    hy_timestamp_format(s->not_after, 0, until, sizeof(until));
    int rc = hy_buf_puts(b, ",\"identity\":");
    rc = rc ? rc : hy_codec_json_string(b, s->spiffe_id, strlen(s->spiffe_id));
    return rc ? rc : hy_buf_printf(b, ",\"certificateExpires\":\"%s\"", until);
}

/* the DpConfig (the key lives beside it in the snapshot, never shown),
 * and under "tls" what the proxy's TLS prefers and why */
static int config_json(struct hy_agent *a, struct hy_agent_snap *base, struct hy_buf *b)
{
    size_t start = b->len;
    int rc =
        hy_codec_encode_message(&hy_sidecar_snapshot_of(base)->config->base, HY_FORMAT_JSON, b);
    size_t end = b->len;
    while (rc == 0 && end > start && (b->data[end - 1] == '\n' || b->data[end - 1] == ' '))
        end--;
    if (rc < 0 || end <= start || b->data[end - 1] != '}')
        return rc;
    struct hy_proxy_tls_info ti;
    hy_proxy_tls_info(dp_of(a)->proxy, &ti);
    b->len = end - 1; /* the object goes on */
    return hy_buf_printf(b,
                         "%s\"tls\":{\"suite\":\"%s\",\"group\":\"%s\",\"reason\":\"%s\","
                         "\"resumableSessions\":%zu}}",
                         end - start > 2 ? "," : "", ti.suite, ti.group, ti.reason, ti.sessions);
}

static void stop(struct hy_agent *a)
{
    struct hy_sidecar *d = dp_of(a);
    hy_proxy_stop(d->proxy);
    hy_dp_prom_stop(d->prom);
    hy_sidecar_client_stop(d);
}

static void close_(struct hy_agent *a)
{
    struct hy_sidecar *d = dp_of(a);
    hy_proxy_free(d->proxy);
    d->proxy = NULL;
    hy_dp_prom_free(d->prom);
    d->prom = NULL;
    hy_sidecar_client_free(d);
}

const struct hy_agent_ops hy_sidecar_ops = {
    .program = "hypha-dp",
    .component = "dp",
    .what = "dataplane",
    .type = "Dataplane",
    .configs = "config",
    .file_help = "the Dataplane resource (YAML) this sidecar presents",
    .token_command = "dataplane-token",
    .file_flag = "--dataplane-file",
    .token_flag = "--dataplane-token-file",
    .size = sizeof(struct hy_sidecar),
    .start = start,
    .hello = hy_sidecar_client_hello,
    .message = hy_sidecar_client_message,
    .ready = ready,
    .ready_json = ready_json,
    .config_json = config_json,
    .stop = stop,
    .close = close_,
};

int hy_sidecar_open(struct hy_sidecar *d, const struct hy_sidecar_cfg *cfg, uv_loop_t *loop)
{
    return hy_agent_open(&d->a, &cfg->base, &hy_sidecar_ops, loop);
}

void hy_sidecar_stop(struct hy_sidecar *d)
{
    hy_agent_stop(&d->a);
}

void hy_sidecar_close(struct hy_sidecar *d)
{
    hy_agent_close(&d->a);
}
