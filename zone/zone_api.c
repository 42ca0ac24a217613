/* The zone control plane's own API paths, tried before the resource API:
 *
 *   GET /meshes/{mesh}/dataplanes/{name}/_config   the DpConfig this zone
 *       computes for a Dataplane (hy_zone_dp_config_build, the function
 *       that computes what the sidecar is sent): its inbounds with the
 *       MeshTrafficPermission entries and rules, its outbounds with their
 *       endpoints and merged policies. For a connected sidecar it is
 *       exactly what its session sends (certificate, chain, trust bundle
 *       and version included; "ackedVersion" is what it acked last); for
 *       one not connected the certificate material and the version (a hash
 *       over them) are left out, listed in "omitted": the zone signs a
 *       leaf per connection.
 *
 *   GET /meshes/{mesh}/dataplanes/{name}/stats    the sidecar's own metrics
 *   GET /zoneingresses/{name}/stats                 the ingress's own
 *       (Prometheus text, what its admin server's /metrics renders),
 *       asked over its session (dp_stats.c): 404 for no such resource,
 *       503 when it is not connected to this zone, 504 when it does not
 *       answer in time, 429 when too many questions already wait for it.
 *
 *   GET /prometheus/sd    Prometheus HTTP service discovery (prom_sd.c):
 *       every sidecar and ingress connected now, as http_sd_configs reads
 *       them; authorized as the rest of the API (the admin token).
 *
 * and then the token endpoints (cp_tokens.c). The global CP answers
 * _config and stats with a 400 naming the zone (cp/cp_inspect.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dp_server.h"
#include "error.h"
#include "metrics.h"
#include "prom_sd.h"
#include "zone.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static void json_str(struct hy_buf *b, const char *s)
{
    hy_codec_json_string(b, S(s), strlen(S(s)));
}

static void put_config(struct hy_zone *z, struct hy_http_resp *resp, const char *mesh,
                       const char *name)
{
    struct hy_resource *dp = NULL;
    int rc = hy_store_get(z->cp.store, "Dataplane", mesh, name, &dp);
    if (rc == HY_ENOTFOUND) {
        char details[600];
        snprintf(details, sizeof(details), "no Dataplane %.250s in mesh %.250s", name, mesh);
        hy_http_error(resp, 404, "Not found", details, NULL);
        return;
    }
    Hypha__V1__DpConfig *c = NULL;
    char acked[64] = "";
    bool connected = false;
    if (rc == 0) {
        /* connected: exactly what its session sends; else what it would get */
        rc = hy_zone_dp_connected_config(z, mesh, name, &c, acked, sizeof(acked));
        connected = rc == 0;
        if (rc == HY_ENOTFOUND)
            rc = hy_zone_dp_config_build(z->cp.store, dp, "", "", "", &c);
    }
    if (rc < 0) {
        hy_http_error(resp, 500, "Cannot compute the config", hy_strerror(rc), NULL);
        hy_resource_free(dp);
        return;
    }
    if (!connected) { /* certificate material is per connection: none to show */
        free(c->cert);
        free(c->chain);
        free(c->trust_bundle);
        free(c->version);
        c->cert = c->chain = c->trust_bundle = c->version = NULL;
    }
    struct hy_buf *b = &resp->body;
    hy_buf_puts(b, "{\"mesh\":");
    json_str(b, mesh);
    hy_buf_puts(b, ",\"name\":");
    json_str(b, name);
    hy_buf_puts(b, ",\"zone\":");
    json_str(b, z->cfg->zone);
    hy_buf_printf(b, ",\"connected\":%s", connected ? "true" : "false");
    if (connected) {
        hy_buf_puts(b, ",\"ackedVersion\":");
        json_str(b, acked);
    } else {
        hy_buf_puts(b, ",\"omitted\":[\"cert\",\"chain\",\"trustBundle\",\"version\"]");
    }
    hy_buf_puts(b, ",\"config\":");
    if (hy_codec_encode_message(&c->base, HY_FORMAT_JSON, b) < 0 || hy_buf_puts(b, "}") < 0)
        hy_http_error(resp, 500, "Out of memory", "cannot encode the config", NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    hy_resource_free(dp);
}

/* ----- stats: asked of the sidecar, answered later ----- */

struct stats_ask {
    struct hy_http_later *later;
    char what[600]; /* "Dataplane web-1 in mesh default" */
};

static void stats_done(void *ud, int status, const char *text, size_t len, const char *note)
{
    struct stats_ask *a = ud;
    struct hy_http_resp *resp = hy_http_later_resp(a->later);
    char details[900];
    if (status == 200) {
        resp->content_type = HY_METRICS_CONTENT_TYPE;
        /* a note (the sidecar cut its text short) is a comment line, which
         * Prometheus parsers skip */
        if (hy_buf_append(&resp->body, text, len) < 0 ||
            (note && hy_buf_printf(&resp->body, "# %s: %.4096s\n", a->what, note) < 0))
            hy_http_error(resp, 500, "Out of memory", "cannot answer", NULL);
    } else {
        snprintf(details, sizeof(details), "%s: %s", a->what, S(note));
        hy_http_error(resp, status,
                      status == 504   ? "Timeout"
                      : status == 503 ? "Not connected"
                                      : "The sidecar could not answer",
                      details, NULL);
    }
    hy_http_later_done(a->later);
    free(a);
}

/* mesh NULL: the ZoneIngress name. */
static void put_stats(struct hy_zone *z, const struct hy_http_req *req, struct hy_http_resp *resp,
                      const char *mesh, const char *name)
{
    const char *type = mesh ? "Dataplane" : "ZoneIngress";
    struct stats_ask *a = calloc(1, sizeof(*a));
    if (!a) {
        hy_http_error(resp, 500, "Out of memory", "cannot answer", NULL);
        return;
    }
    if (mesh)
        snprintf(a->what, sizeof(a->what), "Dataplane %.250s in mesh %.250s", name, mesh);
    else
        snprintf(a->what, sizeof(a->what), "ZoneIngress %.250s", name);
    struct hy_resource *r = NULL;
    int rc = hy_store_get(z->cp.store, type, mesh, name, &r);
    hy_resource_free(r);
    char details[900];
    if (rc == HY_ENOTFOUND) {
        snprintf(details, sizeof(details), "no %s", a->what);
        hy_http_error(resp, 404, "Not found", details, NULL);
    } else if (rc < 0) {
        hy_http_error(resp, 500, "Store error", hy_strerror(rc), NULL);
    } else if (!req->loop || !(a->later = hy_http_later(resp))) {
        hy_http_error(resp, 500, "Cannot wait for the answer", "out of memory", NULL);
    } else if ((rc = hy_zone_dp_stats_of(z, !mesh, mesh, name, stats_done, a)) == 0) {
        return; /* stats_done answers */
    } else {
        resp = hy_http_later_resp(a->later);
        if (rc == HY_ENOTFOUND)
            snprintf(details, sizeof(details),
                     "%s is not connected to this zone control plane (zone %s): its metrics are "
                     "asked of it over its session",
                     a->what, z->cfg->zone);
        else if (rc == HY_EFULL)
            snprintf(details, sizeof(details),
                     "%s: %d questions for its metrics already wait (at most %d in all); retry "
                     "shortly",
                     a->what, HY_ZONE_DP_STATS_PER_SESSION, HY_ZONE_DP_STATS_MAX);
        else
            snprintf(details, sizeof(details), "%s: cannot ask: %s", a->what, hy_strerror(rc));
        hy_http_error(resp,
                      rc == HY_ENOTFOUND ? 503
                      : rc == HY_EFULL   ? 429
                                         : 500,
                      rc == HY_ENOTFOUND ? "Not connected"
                      : rc == HY_EFULL   ? "Too many requests"
                                         : "Cannot ask",
                      details, NULL);
        hy_http_later_done(a->later);
    }
    free(a);
}

bool hy_zone_api_handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_zone *z = ud;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", req->path);
    /* /meshes/{mesh}/dataplanes/{name}/_config: five segments */
    char *s[6];
    size_t n = 0;
    for (char *p = buf; *p && n < 6;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        s[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    bool get = req->method == HY_HTTP_GET || req->method == HY_HTTP_HEAD;
    int rc;
    if ((n == 5 && !strcmp(s[0], "meshes") && !strcmp(s[2], "dataplanes") &&
         !strcmp(s[4], "stats")) ||
        (n == 3 && !strcmp(s[0], "zoneingresses") && !strcmp(s[2], "stats"))) {
        snprintf(resp->route, sizeof(resp->route), "%s",
                 n == 5 ? "/meshes/{mesh}/dataplanes/{name}/stats" : "/zoneingresses/{name}/stats");
        if (get)
            put_stats(z, req, resp, n == 5 ? s[1] : NULL, n == 5 ? s[3] : s[1]);
        else
            hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        return true;
    }
    if (n == 2 && !strcmp(s[0], "prometheus") && !strcmp(s[1], "sd")) {
        snprintf(resp->route, sizeof(resp->route), "/prometheus/sd");
        if (!get) {
            hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        } else if ((rc = hy_zone_prom_sd_json(z, &resp->body)) < 0) {
            hy_buf_fini(&resp->body);
            hy_http_error(resp, 500, "Cannot list the targets", hy_strerror(rc), NULL);
        }
        return true;
    }
    if (n == 5 && !strcmp(s[0], "meshes") && !strcmp(s[2], "dataplanes") &&
        !strcmp(s[4], "_config")) {
        snprintf(resp->route, sizeof(resp->route), "/meshes/{mesh}/dataplanes/{name}/_config");
        if (get)
            put_config(z, resp, s[1], s[3]);
        else
            hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        return true;
    }
    return hy_cp_tokens_handle(&z->cp, req, resp);
}
