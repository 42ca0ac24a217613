/* What makes a data-plane process (agent.h) a sidecar: its metrics, its
 * proxy, when it is ready, and what /ready and /config say. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "codec.h"
#include "dataplane.pb-c.h"
#include "dns.h"
#include "dp.h"
#include "dp_prom.h"
#include "error.h"
#include "metrics.h"
#include "proxy.h"
#include "resource.h"
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

static bool port_ok(uint64_t port, const char *flag)
{
    if (port >= 1 && port <= 65535)
        return true;
    hy_log(HY_LOG_ERROR, "dp", "--%s: %llu is not a port (1-65535)", flag,
           (unsigned long long)port);
    return false;
}

/* Transparent mode's ports into *tp (all 0: off): on by the flag or by
 * the Dataplane's transparentProxying, whose redirect ports win over the
 * flags'. The flag alone adds the section to the Dataplane presented, so
 * that the zone gives this sidecar every service of the mesh. */
static int transparent_ports(struct hy_agent *a, uint16_t tp[3])
{
    const struct hy_sidecar_cfg *cfg = (const struct hy_sidecar_cfg *)a->cfg;
    Hypha__V1__Dataplane *dp = (void *)a->file.res->spec;
    Hypha__V1__Dataplane__Networking__TransparentProxying *s =
        dp->networking ? dp->networking->transparent_proxying : NULL;
    memset(tp, 0, 3 * sizeof(*tp));
    if (!cfg->transparent && !s)
        return 0;
    if (!port_ok(cfg->tp_outbound, "transparent-outbound-port") ||
        !port_ok(cfg->tp_inbound, "transparent-inbound-port") ||
        !port_ok(cfg->tp_dns, "transparent-dns-port"))
        return HY_EINVAL;
    tp[0] = (uint16_t)(s && s->has_redirect_port_outbound && s->redirect_port_outbound
                           ? s->redirect_port_outbound
                           : cfg->tp_outbound);
    tp[1] = (uint16_t)(s && s->has_redirect_port_inbound && s->redirect_port_inbound
                           ? s->redirect_port_inbound
                           : cfg->tp_inbound);
    tp[2] = (uint16_t)cfg->tp_dns;
    if (s || !dp->networking)
        return 0;
    /* the flag alone: the Dataplane says so too (the envelope sent is made again) */
    if (!(s = malloc(sizeof(*s))))
        return HY_ENOMEM;
    hypha__v1__dataplane__networking__transparent_proxying__init(s);
    s->has_redirect_port_outbound = s->has_redirect_port_inbound = 1;
    s->redirect_port_outbound = tp[0];
    s->redirect_port_inbound = tp[1];
    dp->networking->transparent_proxying = s;
    size_t plen;
    uint8_t *packed = hy_resource_pack(a->file.res, &plen);
    Hypha__V1__Envelope *env = packed ? hypha__v1__envelope__unpack(NULL, plen, packed) : NULL;
    free(packed);
    if (!env)
        return HY_ENOMEM;
    hypha__v1__envelope__free_unpacked(a->file.env, NULL);
    a->file.env = env;
    return 0;
}

/* Metrics, the renewal timer, and the proxy with its inbound listeners on
 * the Dataplane's address (it opens them when the control stream
 * publishes a config); in transparent mode its redirect listeners too,
 * and the DNS server. */
static int start(struct hy_agent *a)
{
    struct hy_sidecar *d = dp_of(a);
    int rc = open_metrics(d);
    if (rc < 0)
        return rc;
    if ((rc = hy_dp_prom_new(a->loop, a->metrics, &d->prom)) < 0)
        return rc;
    hy_sidecar_client_start(d);
    uint16_t tp[3];
    if ((rc = transparent_ports(a, tp)) < 0)
        return rc;
    if (tp[0])
        hy_log(HY_LOG_INFO, "dp",
               "transparent mode: outbound port %u, inbound port %u, DNS port %u", (unsigned)tp[0],
               (unsigned)tp[1], (unsigned)tp[2]);
    const Hypha__V1__Dataplane *dp = (const void *)a->file.res->spec;
    struct hy_proxy_cfg pc = {
        .loop = a->loop,
        .current = &a->current,
        .metrics = a->metrics,
        .inbound_host = dp && dp->networking ? dp->networking->address : NULL,
        .workers = a->cfg->workers > HY_PROXY_MAX_WORKERS ? HY_PROXY_MAX_WORKERS
                                                          : (unsigned)a->cfg->workers,
        .transparent_outbound = tp[0],
        .transparent_inbound = tp[1],
    };
    if ((rc = hy_proxy_new(&pc, &d->proxy)) < 0) {
        hy_log(HY_LOG_ERROR, "dp", "cannot start the proxy: %s", hy_strerror(rc));
        return rc;
    }
    if (tp[2])
        rc = hy_dns_new(a->loop, &a->current, a->metrics, tp[2], &d->dns);
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
    hy_dns_stop(d->dns);
    hy_sidecar_client_stop(d);
}

static void close_(struct hy_agent *a)
{
    struct hy_sidecar *d = dp_of(a);
    hy_proxy_free(d->proxy);
    d->proxy = NULL;
    hy_dp_prom_free(d->prom);
    d->prom = NULL;
    hy_dns_free(d->dns);
    d->dns = NULL;
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
