/* The sidecar's admin server (loopback by default): GET /ready for probes,
 * GET /config for people (the current config, never the private key) and
 * GET /metrics for Prometheus. */
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "dp.h"
#include "error.h"
#include "http_server.h"
#include "metrics.h"
#include "poison.h"

static void ready(struct hy_dp *d, struct hy_http_resp *resp)
{
    char why[512];
    struct hy_buf *b = &resp->body;
    int rc;
    if (!hy_dp_ready(d, why, sizeof(why))) {
        resp->status = 503;
        rc = hy_buf_puts(b, "{\"ready\":false,\"reason\":");
        rc = rc ? rc : hy_codec_json_string(b, why, strlen(why));
        rc = rc ? rc : hy_buf_puts(b, "}\n");
    } else {
        struct hy_dp_snapshot *s = hy_dp_snapshot_get(&d->current, NULL);
        char until[40];
        hy_timestamp_format(s->not_after, 0, until, sizeof(until));
        rc = hy_buf_puts(b, "{\"ready\":true,\"version\":");
        rc = rc ? rc : hy_codec_json_string(b, s->config->version, strlen(s->config->version));
        rc = rc ? rc : hy_buf_puts(b, ",\"identity\":");
        rc = rc ? rc : hy_codec_json_string(b, s->spiffe_id, strlen(s->spiffe_id));
        rc = rc ? rc : hy_buf_printf(b, ",\"certificateExpires\":\"%s\"}\n", until);
        hy_dp_snapshot_unref(s);
    }
    if (rc < 0)
        hy_http_error(resp, 500, "Out of memory", "cannot answer", NULL);
}

static void config(struct hy_dp *d, struct hy_http_resp *resp)
{
    struct hy_dp_snapshot *s = hy_dp_snapshot_get(&d->current, NULL);
    char why[512];
    if (!s) {
        hy_dp_ready(d, why, sizeof(why));
        hy_http_error(resp, 503, "No config yet", why, NULL);
        return;
    }
    /* the DpConfig only: the key lives beside it in the snapshot */
    if (hy_codec_encode_message(&s->config->base, HY_FORMAT_JSON, &resp->body) < 0 ||
        hy_buf_puts(&resp->body, "\n") < 0)
        hy_http_error(resp, 500, "Out of memory", "cannot render the config", NULL);
    hy_dp_snapshot_unref(s);
}

static void handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_dp *d = ud;
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
    if (i == 0) {
        ready(d, resp);
    } else if (i == 1) {
        config(d, resp);
    } else {
        resp->content_type = HY_METRICS_CONTENT_TYPE;
        if (hy_metrics_render(d->metrics, &resp->body) < 0)
            hy_http_error(resp, 500, "Out of memory", "cannot render metrics", NULL);
    }
}

int hy_dp_admin_start(struct hy_dp *d)
{
    char address[300];
    hy_addr_format(&d->cfg->admin_address, address, sizeof(address));
    struct hy_http_listener l = {.address = address};
    struct hy_http_server_config hc = {
        .loop = d->loop,
        .listeners = &l,
        .nlisteners = 1,
        .max_body = 4096,
        .handler = handle,
        .ud = d,
    };
    int rc = hy_http_server_new(&hc, &d->admin);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "dp", "cannot serve the admin API on %s: %s", address,
               hy_strerror(rc));
    return rc;
}

int hy_dp_admin_port(const struct hy_dp *d)
{
    return d->admin ? hy_http_server_port(d->admin, 0) : 0;
}

void hy_dp_admin_stop(struct hy_dp *d)
{
    hy_http_server_stop(d->admin);
}

void hy_dp_admin_free(struct hy_dp *d)
{
    hy_http_server_free(d->admin);
    d->admin = NULL;
}
