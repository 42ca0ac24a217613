/* The control-plane base shared by hypha-global and hypha-zone: data dir,
 * store, admin token, metrics, API listeners and the request router. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cp.h"
#include "error.h"
#include "log.h"
#include "poison.h"

int hy_cp_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof(raw) || getrandom(raw, nbytes, 0) != (ssize_t)nbytes)
        return -errno;
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int hy_cp_path(const struct hy_cp *cp, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", cp->cfg->data_dir, name);
    return n < 0 || (size_t)n >= size ? HY_ETOOBIG : 0;
}

/* Reads the admin token, or makes one at first start (0600). */
static int admin_token(struct hy_cp *g)
{
    char path[4096];
    if (hy_cp_path(g, "admin-token", path, sizeof(path)) < 0)
        return HY_ETOOBIG;
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(g->admin_token, 1, sizeof(g->admin_token) - 1, f);
        fclose(f);
        g->admin_token[n] = '\0';
        g->admin_token[strcspn(g->admin_token, "\r\n")] = '\0';
        if (strlen(g->admin_token) >= 32)
            return 0;
        hy_log(HY_LOG_ERROR, g->component, "%s: admin token too short; delete it to make a new one",
               path);
        return HY_EINVAL;
    }
    int rc = hy_cp_random_hex(g->admin_token, 32);
    if (rc < 0)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, g->admin_token, 64) != 64 || write(fd, "\n", 1) != 1) {
        rc = -errno;
        if (fd >= 0)
            close(fd);
        hy_log(HY_LOG_ERROR, g->component, "%s: cannot write the admin token: %s", path,
               hy_strerror(rc));
        return rc;
    }
    close(fd);
    hy_log(HY_LOG_INFO, g->component, "generated the admin token in %s", path);
    return 0;
}

static bool authorized(const struct hy_cp *g, const struct hy_http_req *req)
{
    const char *a = req->authorization;
    if (strncmp(a, "Bearer ", 7) != 0)
        return false;
    a += 7;
    size_t n = strlen(g->admin_token);
    if (strlen(a) != n)
        return false;
    unsigned char diff = 0; /* constant time */
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ g->admin_token[i]);
    return diff == 0;
}

/* The http server's authorize hook: on the headers, before the body. The
 * admin token always works; without it, only a plain-HTTP client on
 * loopback while --api-localhost-is-admin holds (never on HTTPS: a relay on
 * this host, such as a zone ingress, makes any remote client look local). */
static bool authorize(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_cp *g = ud;
    if (authorized(g, req) || (!req->tls && req->peer_loopback && g->cfg->localhost_is_admin))
        return true;
    char details[600];
    snprintf(details, sizeof(details),
             "%s must send 'Authorization: Bearer <admin token>'; the token is in the %s "
             "control plane's data directory (%s/admin-token)",
             req->tls              ? "clients of the HTTPS API"
             : !req->peer_loopback ? "clients other than loopback"
                                   : "clients (loopback is not trusted: --api-localhost-is-admin "
                                     "is false)",
             g->component, g->cfg->data_dir);
    snprintf(resp->route, sizeof(resp->route), "(unauthorized)");
    hy_http_error(resp, 401, "Unauthorized", details, NULL);
    hy_log(HY_LOG_WARN, "api", "%s %s %s%s: refused, no valid admin token", req->peer,
           req->method_name, req->path, req->tls ? " (https)" : "");
    return false;
}

static void refused(void *ud, const char *listener)
{
    struct hy_cp *g = ud;
    hy_series_inc(hy_metric_series(g->refused, listener));
}

static void handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_cp *g = ud;
    if (strcmp(req->path, "/metrics") == 0) {
        snprintf(resp->route, sizeof(resp->route), "/metrics");
        resp->content_type = "text/plain; version=0.0.4";
        hy_cp_leader_sample(g);
        for (size_t i = 0; i < 2 && hy_http_server_port(g->http, i); i++)
            hy_series_set(hy_metric_series(g->pending, i ? "https" : "http"),
                          (double)hy_http_server_pending(g->http, i));
        if (hy_metrics_render(g->metrics, &resp->body) < 0)
            hy_http_error(resp, 500, "Out of memory", "cannot render metrics", NULL);
        return;
    }
    if ((g->extra && g->extra(g->extra_ud, req, resp)) || hy_cp_api_handle(&g->api, req, resp))
        return;
    snprintf(resp->route, sizeof(resp->route), "(unknown)");
    hy_http_error(resp, 404, "Not found", "no such path", NULL);
}

static void observe(void *ud, const char *method, const char *route, int status, double secs)
{
    struct hy_cp *g = ud;
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    hy_series_inc(hy_metric_series(g->requests, method, route, code));
    hy_series_observe(hy_metric_series(g->durations, route), secs);
}

static double store_stat(struct hy_cp *g, int which)
{
    struct hy_store_stats st;
    if (hy_store_stats(g->store, &st) < 0)
        return 0;
    switch (which) {
    case 0:
        return (double)st.revision;
    case 1:
        return (double)st.resources;
    case 2:
        return (double)st.used_bytes;
    default:
        return (double)st.map_size;
    }
}

static double stat_revision(void *g)
{
    return store_stat(g, 0);
}

static double stat_resources(void *g)
{
    return store_stat(g, 1);
}

static double stat_used(void *g)
{
    return store_stat(g, 2);
}

static double stat_map(void *g)
{
    return store_stat(g, 3);
}

static int open_metrics(struct hy_cp *g)
{
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1,    2.5};
    struct hy_metrics *m = g->metrics = hy_metrics_new();
    if (!m || hy_metrics_add_process(m) < 0)
        return HY_ENOMEM;
    g->requests =
        hy_metric_counter(m, "hypha_api_requests_total", "API requests by method, route and status",
                          3, "method", "route", "status");
    g->durations = hy_metric_histogram(m, "hypha_api_request_duration_seconds",
                                       "Time to answer an API request", bounds,
                                       sizeof(bounds) / sizeof(bounds[0]), 1, "route");
    g->refused = hy_metric_counter(m, "hypha_api_connections_refused_total",
                                   "API connections refused because too many were not yet "
                                   "authorized (--api-max-pending-connections)",
                                   1, "listener");
    g->pending = hy_metric_gauge(m, "hypha_api_pending_connections",
                                 "API connections whose request is not yet in and authorized", 1,
                                 "listener");
    if (!g->requests || !g->durations || !g->refused || !g->pending ||
        !hy_metric_gauge_fn(m, "hypha_store_revision", "Latest committed store revision",
                            stat_revision, g) ||
        !hy_metric_gauge_fn(m, "hypha_store_resources", "Resources in the store", stat_resources,
                            g) ||
        !hy_metric_gauge_fn(m, "hypha_store_used_bytes", "Bytes of the store map in use", stat_used,
                            g) ||
        !hy_metric_gauge_fn(m, "hypha_store_map_size_bytes", "Size of the store map", stat_map, g))
        return HY_ENOMEM;
    return 0;
}

int hy_cp_listen(struct hy_cp *g)
{
    const struct hy_cp_cfg *c = g->cfg;
    char plain[300], secure[300];
    hy_addr_format(&c->api_address, plain, sizeof(plain));
    hy_addr_format(&c->api_tls_address, secure, sizeof(secure));
    struct hy_http_listener l[2] = {{.address = plain, .name = "http"}};
    size_t n = 1;
    bool tls = c->api_tls_cert && c->api_tls_cert[0] && c->api_tls_key && c->api_tls_key[0];
    if (tls)
        l[n++] = (struct hy_http_listener){secure, c->api_tls_cert, c->api_tls_key, "https"};
    struct hy_http_server_config hc = {
        .loop = g->loop,
        .listeners = l,
        .nlisteners = n,
        .max_body = (size_t)c->max_body,
        .max_pending = (size_t)(c->max_pending ? c->max_pending : HY_HTTP_MAX_PENDING),
        .authorize = authorize,
        .handler = handle,
        .ud = g,
        .observe = observe,
        .refused = refused,
    };
    int rc = hy_http_server_new(&hc, &g->http);
    if (rc < 0)
        return rc;
    struct hy_addr bound = c->api_address;
    bound.port = (uint16_t)hy_http_server_port(g->http, 0);
    hy_log(HY_LOG_INFO, g->component, "API listening on http://%s (%s)",
           hy_addr_format(&bound, plain, sizeof(plain)),
           c->localhost_is_admin ? "admin token required from non-loopback clients"
                                 : "admin token required from every client");
    if (tls) {
        bound = c->api_tls_address;
        bound.port = (uint16_t)hy_http_server_port(g->http, 1);
        hy_log(HY_LOG_INFO, g->component,
               "API listening on https://%s (admin token required from every client)",
               hy_addr_format(&bound, secure, sizeof(secure)));
    }
    return 0;
}

int hy_cp_open(struct hy_cp *g, const struct hy_cp_cfg *cfg, const char *component, uv_loop_t *loop)
{
    memset(g, 0, sizeof(*g));
    g->cfg = cfg;
    g->component = component;
    g->loop = loop;
    if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
        int rc = -errno;
        hy_log(HY_LOG_ERROR, component, "cannot create the data directory %s: %s", cfg->data_dir,
               hy_strerror(rc));
        return rc;
    }
    char path[4096];
    struct hy_store_config sc;
    int rc = hy_cp_store_config(cfg, path, sizeof(path), &sc);
    if (rc < 0 || (rc = hy_store_open(&sc, &g->store)) < 0)
        return rc;
    hy_log(HY_LOG_INFO, component, "store: %s", hy_store_backend_name(g->store));
    /* with replicas on one database, the leader migrates (cp_leader.c) */
    if (!strcmp(hy_store_backend_name(g->store), "lmdb") && (rc = hy_cp_migrate_mesh_roots(g)) < 0)
        return rc;
    char host[40] = "hypha", suffix[7];
    gethostname(host, sizeof(host) - 1);
    if ((rc = hy_cp_random_hex(suffix, 3)) < 0)
        return rc;
    snprintf(g->instance_id, sizeof(g->instance_id), "%s-%s", host, suffix);
    if ((rc = admin_token(g)) < 0 || (rc = open_metrics(g)) < 0)
        return rc;
    return 0;
}

void hy_cp_stop(struct hy_cp *g)
{
    hy_cp_leader_stop(g);
    hy_http_server_stop(g->http);
}

void hy_cp_close(struct hy_cp *g)
{
    hy_cp_leader_free(g);
    hy_http_server_free(g->http);
    g->http = NULL;
    hy_store_close(g->store);
    g->store = NULL;
    hy_metrics_free(g->metrics);
    g->metrics = NULL;
}
