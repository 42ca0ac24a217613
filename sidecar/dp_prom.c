/* The sidecar's Prometheus endpoint (dp_prom.h): its own HTTP server,
 * moved when MeshMetric moves it, answering each scrape later, once every
 * app it lists has answered or the time is up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dp_parts.h"
#include "dp_prom.h"
#include "error.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

/* ----- family names ----- */

static bool names_has(const struct hy_dp_prom_names *n, const char *name, size_t len)
{
    for (size_t i = 0; i < n->n; i++)
        if (strlen(n->v[i]) == len && !memcmp(n->v[i], name, len))
            return true;
    return false;
}

static int names_put(struct hy_dp_prom_names *n, const char *name, size_t len)
{
    if (names_has(n, name, len))
        return 0;
    char **v = realloc(n->v, (n->n + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    n->v = v;
    if (!(v[n->n] = strndup(name, len)))
        return HY_ENOMEM;
    n->n++;
    return 0;
}

void hy_dp_prom_names_fini(struct hy_dp_prom_names *n)
{
    for (size_t i = 0; i < n->n; i++)
        free(n->v[i]);
    free(n->v);
    n->v = NULL;
    n->n = 0;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == ':';
}

/* The metric name a line is about: "# HELP name", "# TYPE name", or a
 * sample's name; *len 0 for other lines (comments, blanks). */
static const char *line_name(const char *line, size_t n, size_t *len, bool *meta)
{
    const char *p = line, *end = line + n;
    *len = 0;
    *meta = false;
    if (n >= 7 && (!memcmp(p, "# HELP ", 7) || !memcmp(p, "# TYPE ", 7))) {
        p += 7;
        *meta = true;
    } else if (n && p[0] == '#') {
        return NULL;
    }
    while (p < end && *p == ' ')
        p++;
    const char *s = p;
    while (p < end && name_char(*p))
        p++;
    *len = (size_t)(p - s);
    return s;
}

/* Does sample name (len) belong to family fam: the name itself, or it
 * with a histogram's, summary's or counter's suffix. */
static bool of_family(const char *name, size_t len, const char *fam, size_t flen)
{
    static const char *const suffixes[] = {"_bucket",  "_sum",  "_count", "_total",
                                           "_created", "_info", NULL};
    if (len < flen || memcmp(name, fam, flen))
        return false;
    if (len == flen)
        return true;
    for (const char *const *s = suffixes; *s; s++)
        if (len - flen == strlen(*s) && !memcmp(name + flen, *s, len - flen))
            return true;
    return false;
}

int hy_dp_prom_names_add(struct hy_dp_prom_names *names, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t nlen;
        bool meta;
        const char *name = line_name(p, n, &nlen, &meta);
        if (nlen && meta && names_put(names, name, nlen) < 0)
            return HY_ENOMEM;
        p += n + (nl ? 1 : 0);
    }
    return 0;
}

int hy_dp_prom_merge_app(struct hy_dp_prom_names *seen, const char *text, size_t len,
                         struct hy_buf *out, size_t *dropped)
{
    const char *p = text, *end = text + len;
    const char *fam = NULL; /* the family the lines are in now */
    size_t flen = 0;
    bool skip = false;
    *dropped = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;
        p += n + (nl ? 1 : 0);
        if (n && line[n - 1] == '\r')
            n--;
        if (n == 5 && !memcmp(line, "# EOF", 5))
            continue; /* OpenMetrics' end: ours goes on */
        size_t nlen;
        bool meta;
        const char *name = line_name(line, n, &nlen, &meta);
        if (nlen) {
            bool same = fam && (meta ? nlen == flen && !memcmp(name, fam, flen)
                                     : of_family(name, nlen, fam, flen));
            if (!same) { /* a new family starts */
                fam = name;
                flen = nlen;
                skip = names_has(seen, name, nlen);
                if (skip)
                    ++*dropped;
                else if (names_put(seen, name, nlen) < 0)
                    return HY_ENOMEM;
            }
        }
        if (skip && nlen)
            continue;
        if (hy_buf_append(out, line, n) < 0 || hy_buf_puts(out, "\n") < 0)
            return HY_ENOMEM;
    }
    return 0;
}

/* ----- the endpoint ----- */

struct scrape;

struct hy_dp_prom {
    uv_loop_t *loop;
    struct hy_metrics *metrics;
    struct hy_metric *scrapes, *dropped;
    struct hy_http_server *server;
    char listen[300];           /* "address:port" it listens on; "" none */
    Hypha__V1__DpMetrics *conf; /* owned copy of the last config's; NULL: none */
    struct scrape *waiting;     /* scrapes waiting for their apps */
    size_t nwaiting;
    bool stopped;
};

/* One app of one scrape. */
struct app_fetch {
    struct scrape *sc;
    char *name, *address, *path; /* owned copies: the config may change meanwhile */
    unsigned port;
    uv_getaddrinfo_t gai;
    bool resolving;
    uv_tcp_t tcp;
    bool tcp_init;
    uv_connect_t conn;
    uv_write_t wr;
    char *req;
    struct hy_buf resp;
    bool done;
    const char *result; /* "ok", "timeout", "error" */
    char why[160];
};

struct scrape {
    struct hy_dp_prom *p;
    struct scrape *next;
    struct hy_http_later *later;
    uv_timer_t timer;
    struct app_fetch *apps;
    size_t napps, pending;
    size_t refs; /* handles and requests whose callbacks are still due */
    uint64_t timeout_ms;
    bool answered;
};

static void scrape_maybe_free(struct scrape *sc)
{
    if (!sc->answered || sc->refs)
        return;
    struct hy_dp_prom *p = sc->p;
    for (struct scrape **pp = &p->waiting; *pp; pp = &(*pp)->next)
        if (*pp == sc) {
            *pp = sc->next;
            p->nwaiting--;
            break;
        }
    for (size_t i = 0; i < sc->napps; i++) {
        struct app_fetch *a = &sc->apps[i];
        free(a->name);
        free(a->address);
        free(a->path);
        free(a->req);
        hy_buf_fini(&a->resp);
    }
    free(sc->apps);
    free(sc);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct scrape *sc = h->data;
    sc->refs--;
    scrape_maybe_free(sc);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct app_fetch *a = h->data;
    a->sc->refs--;
    scrape_maybe_free(a->sc);
}

int hy_dp_prom_app_page(const char *resp, size_t len, const char **body, size_t *blen, char *why,
                        size_t size)
{
    *body = NULL;
    *blen = 0;
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (!end || len < 12 || memcmp(resp, "HTTP/1.", 7) || resp[8] != ' ' || resp[9] < '1' ||
        resp[9] > '5') {
        snprintf(why, size, "not an HTTP/1 answer");
        return HY_EINVAL;
    }
    int status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
    if (status != 200) {
        snprintf(why, size, "status %.3s", resp + 9);
        return HY_EINVAL;
    }
    /* an HTTP/1.0 request gets no chunked answer; one that is anyway is
     * not read as a page */
    for (const char *h = resp; h && h < end;) {
        const char *nl = memmem(h, (size_t)(end - h), "\r\n", 2);
        if (!nl)
            break;
        h = nl + 2;
        if ((size_t)(end - h) >= 18 && !strncasecmp(h, "transfer-encoding:", 18)) {
            snprintf(why, size, "a chunked answer to an HTTP/1.0 request");
            return HY_EINVAL;
        }
    }
    *body = end + 4;
    *blen = len - (size_t)(end + 4 - resp);
    return 0;
}

/* The body of a 200 answer, or NULL with why. */
static const char *app_body(struct app_fetch *a, size_t *len)
{
    const char *body;
    if (hy_dp_prom_app_page(a->resp.data ? a->resp.data : "", a->resp.len, &body, len, a->why,
                            sizeof(a->why)) < 0)
        return NULL;
    return body;
}

static void answer(struct scrape *sc)
{
    if (sc->answered)
        return;
    sc->answered = true;
    uv_timer_stop(&sc->timer);
    uv_close((uv_handle_t *)&sc->timer, on_timer_closed);
    struct hy_dp_prom *p = sc->p;
    struct hy_http_resp *resp = hy_http_later_resp(sc->later);
    struct hy_buf *b = &resp->body;
    struct hy_dp_prom_names seen = {0};
    resp->content_type = HY_METRICS_CONTENT_TYPE;
    /* the apps' results counted first, so the page says what it holds */
    for (size_t i = 0; i < sc->napps; i++) {
        struct app_fetch *a = &sc->apps[i];
        size_t blen = 0;
        if (!strcmp(a->result, "ok") && !app_body(a, &blen))
            a->result = "error";
        hy_series_inc(hy_metric_series(p->scrapes, a->name, a->result));
    }
    int rc = hy_metrics_render(p->metrics, b);
    if (rc == 0)
        rc = hy_dp_prom_names_add(&seen, b->data, b->len);
    for (size_t i = 0; rc == 0 && i < sc->napps; i++) {
        struct app_fetch *a = &sc->apps[i];
        rc = hy_buf_printf(b, "# app %s (http://%s:%u%s): %s%s%s\n", a->name, a->address, a->port,
                           a->path, a->result, a->why[0] ? ": " : "", a->why);
        size_t len = 0, dropped = 0;
        const char *body = rc == 0 && !strcmp(a->result, "ok") ? app_body(a, &len) : NULL;
        if (body)
            rc = hy_dp_prom_merge_app(&seen, body, len, b, &dropped);
        if (rc == 0 && dropped) {
            hy_series_add(hy_metric_series(p->dropped, a->name), (double)dropped);
            hy_log(HY_LOG_DEBUG, "dp",
                   "metrics of app %s: %zu families left out, already on the page", a->name,
                   dropped);
        }
    }
    hy_dp_prom_names_fini(&seen);
    if (rc < 0)
        hy_http_error(resp, 500, "Out of memory", "cannot render the metrics", NULL);
    hy_http_later_done(sc->later);
    sc->later = NULL;
    scrape_maybe_free(sc);
}

static void app_done(struct app_fetch *a, const char *result)
{
    if (a->done)
        return;
    a->done = true;
    a->result = result;
    if (a->tcp_init)
        uv_close((uv_handle_t *)&a->tcp, on_tcp_closed);
    if (--a->sc->pending == 0)
        answer(a->sc);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536]; /* main loop only: one read at a time, copied out at once */
    (void)h, (void)suggested;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct app_fetch *a = s->data;
    if (a->done)
        return;
    if (n > 0) {
        if (a->resp.len + (size_t)n > HY_DP_PROM_APP_MAX) {
            snprintf(a->why, sizeof(a->why), "answer over %u bytes", HY_DP_PROM_APP_MAX);
            app_done(a, "error");
        } else if (hy_buf_append(&a->resp, buf->base, (size_t)n) < 0) {
            snprintf(a->why, sizeof(a->why), "out of memory");
            app_done(a, "error");
        }
    } else if (n == UV_EOF) {
        app_done(a, "ok");
    } else if (n < 0) {
        snprintf(a->why, sizeof(a->why), "read: %s", uv_strerror((int)n));
        app_done(a, "error");
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct app_fetch *a = w->data;
    if (status < 0 && !a->done) {
        snprintf(a->why, sizeof(a->why), "write: %s", uv_strerror(status));
        app_done(a, "error");
    }
}

static void on_connected(uv_connect_t *c, int status)
{
    struct app_fetch *a = c->data;
    if (a->done)
        return;
    if (status < 0) {
        snprintf(a->why, sizeof(a->why), "connect: %s", uv_strerror(status));
        app_done(a, "error");
        return;
    }
    /* HTTP/1.0: the answer ends with the connection, never chunked */
    if (asprintf(&a->req,
                 "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: hypha-dp\r\n"
                 "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nConnection: close\r\n\r\n",
                 a->path, a->address, a->port) < 0) {
        a->req = NULL;
        snprintf(a->why, sizeof(a->why), "out of memory");
        app_done(a, "error");
        return;
    }
    uv_buf_t b = uv_buf_init(a->req, (unsigned)strlen(a->req));
    a->wr.data = a;
    int rc = uv_write(&a->wr, (uv_stream_t *)&a->tcp, &b, 1, on_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read);
    if (rc < 0) {
        snprintf(a->why, sizeof(a->why), "%s", uv_strerror(rc));
        app_done(a, "error");
    }
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct app_fetch *a = g->data;
    struct scrape *sc = a->sc;
    a->resolving = false;
    sc->refs--;
    if (a->done || status < 0) {
        if (!a->done) {
            snprintf(a->why, sizeof(a->why), "cannot resolve %s: %s", a->address,
                     uv_strerror(status));
            app_done(a, "error");
        }
        uv_freeaddrinfo(res);
        scrape_maybe_free(sc);
        return;
    }
    int rc = uv_tcp_init(sc->p->loop, &a->tcp);
    if (rc == 0) {
        a->tcp_init = true;
        a->tcp.data = a;
        sc->refs++;
        a->conn.data = a;
        rc = uv_tcp_connect(&a->conn, &a->tcp, res->ai_addr, on_connected);
    }
    uv_freeaddrinfo(res);
    if (rc < 0) {
        snprintf(a->why, sizeof(a->why), "connect: %s", uv_strerror(rc));
        app_done(a, "error");
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct scrape *sc = t->data;
    for (size_t i = 0; i < sc->napps && !sc->answered; i++) {
        struct app_fetch *a = &sc->apps[i];
        if (a->done)
            continue;
        if (a->resolving)
            uv_cancel((uv_req_t *)&a->gai);
        snprintf(a->why, sizeof(a->why), "no answer in %llu ms",
                 (unsigned long long)sc->timeout_ms);
        app_done(a, "timeout");
    }
}

/* Starts fetching app a; a failure to start is its result. */
static void app_start(struct app_fetch *a)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", a->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    a->gai.data = a;
    int rc = uv_getaddrinfo(a->sc->p->loop, &a->gai, on_resolved, a->address, port, &hints);
    if (rc < 0) {
        snprintf(a->why, sizeof(a->why), "cannot resolve %s: %s", a->address, uv_strerror(rc));
        app_done(a, "error");
        return;
    }
    a->resolving = true;
    a->sc->refs++;
}

/* How long the apps may take: HY_DP_PROM_APP_TIMEOUT_MS, or less when
 * Prometheus says it waits less (X-Prometheus-Scrape-Timeout-Seconds):
 * 75 % of that, so the page still reaches it in time. */
static uint64_t timeout_ms(const struct hy_http_req *req)
{
    uint64_t ms = HY_DP_PROM_APP_TIMEOUT_MS;
    char *end;
    double t =
        req->scrape_timeout && req->scrape_timeout[0] ? strtod(req->scrape_timeout, &end) : 0;
    if (t > 0 && t < 1e6 && !*end && t * 750 < (double)ms)
        ms = t * 750 < 50 ? 50 : (uint64_t)(t * 750);
    return ms;
}

static char *app_name(const Hypha__V1__DpMetricsApp *x)
{
    char *n = NULL;
    if (x->name && x->name[0])
        return strdup(x->name);
    if (asprintf(&n, "%s:%u", S(x->address), x->port) < 0)
        return NULL;
    return n;
}

/* A scrape of the endpoint: answered now when there is no app, later
 * otherwise. */
static void scrape_start(struct hy_dp_prom *p, const struct hy_http_req *req,
                         struct hy_http_resp *resp)
{
    const Hypha__V1__DpMetrics *m = p->conf;
    size_t napps = m ? m->n_apps : 0;
    if (!napps) {
        resp->content_type = HY_METRICS_CONTENT_TYPE;
        if (hy_metrics_render(p->metrics, &resp->body) < 0)
            hy_http_error(resp, 500, "Out of memory", "cannot render the metrics", NULL);
        return;
    }
    if (p->nwaiting >= HY_DP_PROM_MAX_SCRAPES) {
        hy_http_error(resp, 503, "Busy",
                      "too many scrapes already wait for the apps' metrics; retry shortly", NULL);
        return;
    }
    struct scrape *sc = calloc(1, sizeof(*sc));
    if (sc && !(sc->apps = calloc(napps, sizeof(*sc->apps)))) {
        free(sc);
        sc = NULL;
    }
    bool ok = sc != NULL;
    for (size_t i = 0; ok && i < napps; i++) {
        const Hypha__V1__DpMetricsApp *x = m->apps[i];
        struct app_fetch *a = &sc->apps[i];
        a->sc = sc;
        a->port = x->port;
        a->result = "error";
        a->name = app_name(x);
        a->address = strdup(S(x->address));
        a->path = strdup(x->path && x->path[0] ? x->path : "/");
        sc->napps++;
        ok = a->name && a->address && a->path;
    }
    if (ok && !(sc->later = hy_http_later(resp)))
        ok = false;
    if (!ok) {
        for (size_t i = 0; sc && i < sc->napps; i++) {
            free(sc->apps[i].name);
            free(sc->apps[i].address);
            free(sc->apps[i].path);
        }
        if (sc)
            free(sc->apps);
        free(sc);
        hy_http_error(resp, 500, "Out of memory", "cannot scrape the apps", NULL);
        return;
    }
    sc->p = p;
    sc->next = p->waiting;
    p->waiting = sc;
    p->nwaiting++;
    sc->pending = sc->napps;
    uv_timer_init(p->loop, &sc->timer);
    sc->timer.data = sc;
    sc->refs++;
    sc->timeout_ms = timeout_ms(req);
    uv_timer_start(&sc->timer, on_timeout, sc->timeout_ms, 0);
    for (size_t i = 0; i < sc->napps && !sc->answered; i++)
        app_start(&sc->apps[i]);
}

static void handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_dp_prom *p = ud;
    const char *path = p->conf && p->conf->path && p->conf->path[0] ? p->conf->path : "/metrics";
    if (strcmp(req->path, path)) {
        char details[1200];
        snprintf(resp->route, sizeof(resp->route), "(unknown)");
        snprintf(details, sizeof(details), "the metrics are at %.1024s (MeshMetric)", path);
        hy_http_error(resp, 404, "Not found", details, NULL);
        return;
    }
    snprintf(resp->route, sizeof(resp->route), "(metrics)");
    if (req->method != HY_HTTP_GET && req->method != HY_HTTP_HEAD) {
        hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        return;
    }
    scrape_start(p, req, resp);
}

int hy_dp_prom_new(uv_loop_t *loop, struct hy_metrics *m, struct hy_dp_prom **out)
{
    struct hy_dp_prom *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (!p)
        return HY_ENOMEM;
    p->loop = loop;
    p->metrics = m;
    p->scrapes = hy_metric_counter(m, "hypha_dp_app_scrapes_total",
                                   "Scrapes of the apps MeshMetric lists, made when the sidecar's "
                                   "Prometheus endpoint is scraped, by app and result (ok, "
                                   "timeout, error)",
                                   2, "app", "result");
    p->dropped = hy_metric_counter(m, "hypha_dp_app_metric_families_dropped_total",
                                   "Metric families of an app left off the sidecar's page because "
                                   "the page already has a family of that name",
                                   1, "app");
    if (!p->scrapes || !p->dropped) {
        free(p);
        return HY_ENOMEM;
    }
    *out = p;
    return 0;
}

int hy_dp_prom_port(const struct hy_dp_prom *p)
{
    return p && p->server ? hy_http_server_port(p->server, 0) : 0;
}

/* Answers every scrape still waiting for its apps, their apps' result
 * "error" with why: done before their server goes, so no answer is left
 * for a connection of a server being torn down. */
static void abort_waiting(struct hy_dp_prom *p, const char *why)
{
    for (struct scrape *sc = p->waiting, *next; sc; sc = next) {
        next = sc->next;
        for (size_t i = 0; i < sc->napps && !sc->answered; i++) {
            struct app_fetch *a = &sc->apps[i];
            if (a->done)
                continue;
            if (a->resolving)
                uv_cancel((uv_req_t *)&a->gai);
            snprintf(a->why, sizeof(a->why), "%s", why);
            app_done(a, "error");
        }
    }
}

static void close_server(struct hy_dp_prom *p)
{
    if (!p->server)
        return;
    hy_http_server_stop(p->server);
    hy_http_server_free(p->server); /* the reaper ends lws' part as the loop runs */
    p->server = NULL;
    p->listen[0] = '\0';
}

void hy_dp_prom_apply(struct hy_dp_prom *p, const Hypha__V1__DpMetrics *m)
{
    if (!p || p->stopped)
        return;
    Hypha__V1__DpMetrics *copy = NULL;
    if (m && !(copy = (Hypha__V1__DpMetrics *)hy_dp_msg_copy(&m->base))) {
        hy_log(HY_LOG_ERROR, "dp", "MeshMetric: out of memory; the last one stays");
        return;
    }
    char want[300] = "";
    if (m && m->has_port) {
        const char *host = m->address && m->address[0] ? m->address : "127.0.0.1";
        if (strchr(host, ':') && host[0] != '[')
            snprintf(want, sizeof(want), "[%.250s]:%u", host, m->port);
        else
            snprintf(want, sizeof(want), "%.250s:%u", host, m->port);
    }
    if (p->conf)
        hypha__v1__dp_metrics__free_unpacked(p->conf, NULL);
    p->conf = copy;
    if (!strcmp(want, p->listen))
        return; /* same place: the path and the apps are read per scrape */
    if (p->listen[0])
        hy_log(HY_LOG_INFO, "dp", "Prometheus endpoint on %s closed", p->listen);
    abort_waiting(p, "the endpoint moved (MeshMetric)");
    close_server(p);
    if (!want[0])
        return;
    struct hy_http_listener l = {.address = want, .name = "prometheus"};
    struct hy_http_server_config c = {
        .loop = p->loop,
        .listeners = &l,
        .nlisteners = 1,
        .max_body = 0,
        .handler = handle,
        .ud = p,
    };
    int rc = hy_http_server_new(&c, &p->server);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dp",
               "MeshMetric %s: cannot serve the Prometheus endpoint on %s: %s (is the port "
               "taken? choose another with the Prometheus backend's port)",
               S(m->origin), want, hy_strerror(rc));
        p->server = NULL;
        return;
    }
    snprintf(p->listen, sizeof(p->listen), "%s", want);
    hy_log(HY_LOG_INFO, "dp", "Prometheus endpoint on http://%s%s (%s), %zu app(s) merged", want,
           S(m->path), S(m->origin), m->n_apps);
}

void hy_dp_prom_stop(struct hy_dp_prom *p)
{
    if (!p)
        return;
    p->stopped = true;
    abort_waiting(p, "the sidecar is stopping"); /* answered while their server is there */
    close_server(p);
}

void hy_dp_prom_free(struct hy_dp_prom *p)
{
    if (!p)
        return;
    close_server(p);
    if (p->conf)
        hypha__v1__dp_metrics__free_unpacked(p->conf, NULL);
    if (p->waiting)
        hy_log(HY_LOG_WARN, "dp", "%zu scrape(s) of the apps still open at exit", p->nwaiting);
    free(p);
}
