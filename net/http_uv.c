/* The HTTP server of net/http_server.h without libwebsockets: libuv
 * listeners and llhttp (strict mode) for the data-plane processes' admin
 * and Prometheus endpoints, plain HTTP only (a TLS listener is refused:
 * the control planes keep the libwebsockets server for that).
 *
 * The same contract as http_server.c: the request line and headers bounded
 * (HEAD_MAX bytes, else 431), Transfer-Encoding refused (411), a body
 * bounded by max_body (413), authorize on the headers before any body
 * byte is kept, one handler call, a response answered now or later
 * (hy_http_later), and one request per connection ("Connection: close";
 * what was pipelined behind is discarded, as the lws server does). After
 * the response the write side is shut and what the client still sends is
 * read and dropped for LINGER_MS, so closing does not reset the connection
 * before the client has read the answer. */
#include <arpa/inet.h>
#include <llhttp.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "codec.h"
#include "config.h"
#include "error.h"
#include "http_server.h"
#include "log.h"
#include "poison.h"

#define HEAD_MAX 8192      /* request line and headers */
#define SEND_IDLE_MS 30000 /* a client that reads nothing of its response that long is dropped */
#define LINGER_MS 2000
#define LATER_MS 300000
#define MAX_PARAMS 64

struct lst {
    uv_tcp_t tcp;
    struct hy_http_server *s;
    int index, port;
    bool open;
    char name[32], address[64];
    size_t pending;
    uint64_t refused_unlogged;
    time_t refused_logged;
};

struct hy_http_server {
    struct hy_http_server_config cfg;
    struct lst *lst;
    size_t nlst;
    size_t nconns, nclosing; /* open connections; handles being closed */
    bool stopping;
    bool orphan;         /* freed by its owner: the last handle closed frees it */
    struct hconn *conns; /* every open connection */
};

enum hdr_slot { H_CT, H_ACCEPT, H_IFMATCH, H_AUTH, H_SOURCE, H_SCRAPE, H_TE, H_NSLOTS };

struct hconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sh;
    struct lst *l;
    struct hconn *prev, *next;
    llhttp_t ll;
    size_t head_bytes;
    char *url;
    size_t url_len;
    char field[64];
    size_t field_len;
    bool field_long;
    int cur; /* slot of the header whose value is being read, -1 none */
    char *hdr[H_NSLOTS];
    size_t hdr_len[H_NSLOTS];
    bool pending; /* counted in l->pending */
    bool decided; /* the server answers, the handler is not called */
    bool responding, writing, done;
    bool closing;
    struct hy_http_later *later;
    struct hy_http_req req;
    struct hy_http_resp resp;
    struct hy_http_param *params;
    char *path;
    char peer[64];
    struct hy_buf body;
    char *out;
    struct timespec started;
};

struct hy_http_later {
    struct hconn *c; /* NULL once the connection closed */
    struct hy_http_resp scratch;
};

static const char *const method_names[] = {"GET",    "HEAD",  "PUT",     "POST",
                                           "DELETE", "PATCH", "OPTIONS", "OTHER"};

static const llhttp_settings_t *settings(void);
static void conn_close(struct hconn *c);

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void settle(struct hconn *c)
{
    if (c->pending) {
        c->pending = false;
        c->l->pending--;
    }
}

/* ---- parsing ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* URL-decodes s[0..n) into a new string ('+' is a space in a query);
 * %00 and bad escapes are kept as they are. NULL when out of memory. */
static char *url_decode(const char *s, size_t n, bool query)
{
    char *o = malloc(n + 1), *q = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 &&
            (l = hexval(s[i + 2])) >= 0 && (h || l)) {
            *q++ = (char)(h << 4 | l);
            i += 2;
        } else {
            *q++ = query && s[i] == '+' ? ' ' : s[i];
        }
    }
    *q = '\0';
    return o;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    struct hconn *c = ll->data;
    if ((c->head_bytes += n) > HEAD_MAX)
        return -1;
    char *u = realloc(c->url, c->url_len + n + 1);
    if (!u)
        return -1;
    memcpy(u + c->url_len, at, n);
    c->url = u;
    c->url_len += n;
    u[c->url_len] = '\0';
    return 0;
}

static int on_field(llhttp_t *ll, const char *at, size_t n)
{
    struct hconn *c = ll->data;
    if ((c->head_bytes += n) > HEAD_MAX)
        return -1;
    if (c->field_len + n >= sizeof(c->field))
        c->field_long = true; /* not one we keep */
    else
        memcpy(c->field + c->field_len, at, n);
    c->field_len += n;
    return 0;
}

static int on_field_done(llhttp_t *ll)
{
    static const char *const names[H_NSLOTS] = {
        "content-type",      "accept",       "if-match",
        "authorization",     "hypha-source", "x-prometheus-scrape-timeout-seconds",
        "transfer-encoding",
    };
    struct hconn *c = ll->data;
    c->cur = -1;
    if (!c->field_long)
        for (int i = 0; i < H_NSLOTS; i++)
            if (strlen(names[i]) == c->field_len &&
                strncasecmp(c->field, names[i], c->field_len) == 0)
                c->cur = i;
    c->field_len = 0;
    c->field_long = false;
    if (c->cur >= 0 && c->hdr[c->cur]) { /* a repeat: joined with a comma, as lws did */
        char *v = realloc(c->hdr[c->cur], c->hdr_len[c->cur] + 2);
        if (!v)
            return -1;
        v[c->hdr_len[c->cur]++] = ',';
        v[c->hdr_len[c->cur]] = '\0';
        c->hdr[c->cur] = v;
    }
    return 0;
}

static int on_value(llhttp_t *ll, const char *at, size_t n)
{
    struct hconn *c = ll->data;
    if ((c->head_bytes += n) > HEAD_MAX)
        return -1;
    if (c->cur < 0)
        return 0;
    size_t have = c->hdr_len[c->cur];
    char *v = realloc(c->hdr[c->cur], have + n + 1);
    if (!v)
        return -1;
    memcpy(v + have, at, n);
    v[have + n] = '\0';
    c->hdr[c->cur] = v;
    c->hdr_len[c->cur] = have + n;
    return 0;
}

static const char *hdr(struct hconn *c, enum hdr_slot i)
{
    return c->hdr[i] ? c->hdr[i] : "";
}

static void read_params(struct hconn *c, const char *q)
{
    while (*q && c->req.nparams < MAX_PARAMS) {
        size_t n = strcspn(q, "&");
        if (n) {
            const char *eq = memchr(q, '=', n);
            struct hy_http_param *v = realloc(c->params, (c->req.nparams + 1) * sizeof(*v));
            if (!v)
                break;
            c->params = v;
            size_t kl = eq ? (size_t)(eq - q) : n;
            v[c->req.nparams].key = url_decode(q, kl, true);
            v[c->req.nparams].value = eq ? url_decode(eq + 1, n - kl - 1, true) : strdup("");
            c->req.nparams++;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    c->req.params = c->params;
}

static enum hy_http_method method_of(uint8_t m)
{
    switch (m) {
    case HTTP_GET:
        return HY_HTTP_GET;
    case HTTP_HEAD:
        return HY_HTTP_HEAD;
    case HTTP_PUT:
        return HY_HTTP_PUT;
    case HTTP_POST:
        return HY_HTTP_POST;
    case HTTP_DELETE:
        return HY_HTTP_DELETE;
    case HTTP_PATCH:
        return HY_HTTP_PATCH;
    case HTTP_OPTIONS:
        return HY_HTTP_OPTIONS;
    default:
        return HY_HTTP_OTHER;
    }
}

static void refuse(struct hconn *c, int status, const char *title, const char *details,
                   const char *route)
{
    c->decided = true;
    hy_buf_fini(&c->body);
    hy_http_error(&c->resp, status, title, details, NULL);
    snprintf(c->resp.route, sizeof(c->resp.route), "%s", route);
}

/* ---- responding ---- */

static const char *status_text(int s)
{
    switch (s) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0)
        conn_close(st->data);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static _Thread_local char rd[16384];
    *buf = uv_buf_init(rd, sizeof(rd));
}

static void shut_done(uv_shutdown_t *req, int status)
{
    (void)status;
    struct hconn *c = req->data;
    if (c->closing)
        return;
    uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
}

static void written(uv_write_t *req, int status)
{
    struct hconn *c = req->data;
    free(c->out);
    c->out = NULL;
    c->writing = false;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* one request per connection: shut our side, drop what still comes */
    c->done = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, linger_read) < 0 ||
        uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, shut_done) < 0)
        conn_close(c);
}

static void start_response(struct hconn *c)
{
    struct hy_http_server *s = c->l->s;
    struct hy_http_resp *r = &c->resp;
    if (s->cfg.observe)
        s->cfg.observe(s->cfg.ud, c->req.method_name, r->route[0] ? r->route : "other", r->status,
                       elapsed(&c->started));
    size_t blen = c->req.method == HY_HTTP_HEAD ? 0 : r->body.len;
    char head[512], etag[48] = "", result[48] = "";
    if (r->etag[0])
        snprintf(etag, sizeof(etag), "etag: \"%s\"\r\n", r->etag);
    if (r->result[0])
        snprintf(result, sizeof(result), "hypha-result: %s\r\n", r->result);
    int hn =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n%s%s"
                 "connection: close\r\n\r\n",
                 r->status, status_text(r->status),
                 r->content_type ? r->content_type : "application/json", r->body.len, etag, result);
    if (hn < 0 || (size_t)hn >= sizeof(head) || !(c->out = malloc((size_t)hn + blen))) {
        conn_close(c);
        return;
    }
    memcpy(c->out, head, (size_t)hn);
    if (blen)
        memcpy(c->out + hn, r->body.data, blen);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)hn + blen));
    c->writing = true;
    c->wr.data = c;
    uv_timer_start(&c->timer, on_timeout, SEND_IDLE_MS, 0);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, written) < 0) {
        c->writing = false;
        free(c->out);
        c->out = NULL;
        conn_close(c);
    }
}

/* Runs the handler unless the answer is decided, then writes it, unless
 * the handler answers later. */
static void respond(struct hconn *c)
{
    struct hy_http_server *s = c->l->s;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (!c->decided) {
        settle(c);
        c->req.body = c->body.data ? c->body.data : "";
        c->req.body_len = c->body.len;
        s->cfg.handler(s->cfg.ud, &c->req, &c->resp);
    }
    c->responding = true;
    if (c->later) {
        uv_timer_start(&c->timer, on_timeout, LATER_MS, 0);
        return;
    }
    start_response(c);
}

struct hy_http_later *hy_http_later(struct hy_http_resp *resp)
{
    struct hconn *c = (struct hconn *)((char *)resp - offsetof(struct hconn, resp));
    struct hy_http_later *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->c = c;
    c->later = l;
    return l;
}

struct hy_http_resp *hy_http_later_resp(struct hy_http_later *l)
{
    return l->c ? &l->c->resp : &l->scratch;
}

bool hy_http_later_open(const struct hy_http_later *l)
{
    return l->c != NULL;
}

void hy_http_later_done(struct hy_http_later *l)
{
    struct hconn *c = l->c;
    hy_buf_fini(&l->scratch.body);
    free(l);
    if (!c)
        return;
    c->later = NULL;
    if (c->responding) /* else done inside the handler call: respond() sends it */
        start_response(c);
}

/* ---- llhttp events that decide ---- */

static int on_headers(llhttp_t *ll)
{
    struct hconn *c = ll->data;
    const struct hy_http_server_config *cfg = &c->l->s->cfg;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->req.method = method_of(ll->method);
    c->req.method_name = method_names[c->req.method];
    const char *u = c->url ? c->url : "/";
    size_t pl = strcspn(u, "?#");
    c->path = url_decode(u, pl, false);
    if (!c->path)
        return -1;
    c->req.path = c->path;
    if (u[pl] == '?') {
        char *q = strndup(u + pl + 1, strcspn(u + pl + 1, "#"));
        if (q) {
            read_params(c, q);
            free(q);
        }
    }
    c->req.content_type = hdr(c, H_CT);
    c->req.accept = hdr(c, H_ACCEPT);
    c->req.if_match = hdr(c, H_IFMATCH);
    c->req.authorization = hdr(c, H_AUTH);
    c->req.source = hdr(c, H_SOURCE);
    c->req.scrape_timeout = hdr(c, H_SCRAPE);
    c->req.peer = c->peer;
    c->req.peer_loopback = strncmp(c->peer, "127.", 4) == 0 || strcmp(c->peer, "::1") == 0 ||
                           strncmp(c->peer, "::ffff:127.", 11) == 0;
    c->req.tls = false;
    c->req.listener = c->l->index;
    c->req.loop = c->l->s->cfg.loop;
    c->req.body = "";
    c->resp.status = 200;
    c->resp.content_type = "application/json";
    bool has_len = ll->flags & F_CONTENT_LENGTH;
    if (c->hdr[H_TE]) {
        refuse(c, 411, "Length required",
               "Transfer-Encoding is not supported; send the body with a Content-Length",
               "(bad framing)");
    } else if (cfg->authorize && !cfg->authorize(cfg->ud, &c->req, &c->resp)) {
        c->decided = true;
        if (!c->resp.route[0])
            snprintf(c->resp.route, sizeof(c->resp.route), "(unauthorized)");
    } else if (has_len && ll->content_length > cfg->max_body) {
        char details[128];
        snprintf(details, sizeof(details), "the request body is larger than the limit of %zu bytes",
                 cfg->max_body);
        refuse(c, 413, "Request body too large", details, "(too large)");
    } else {
        return 0; /* the body, if any, then on_complete */
    }
    respond(c);
    return HPE_PAUSED;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    struct hconn *c = ll->data;
    if (c->body.len + n > c->l->s->cfg.max_body)
        return -1; /* announced length checked: cannot happen */
    return hy_buf_append(&c->body, at, n) < 0 ? -1 : 0;
}

static int on_complete(llhttp_t *ll)
{
    struct hconn *c = ll->data;
    respond(c);
    return HPE_PAUSED;
}

static const llhttp_settings_t *settings(void)
{
    static llhttp_settings_t set;
    static bool done;
    if (!done) {
        llhttp_settings_init(&set);
        set.on_url = on_url;
        set.on_header_field = on_field;
        set.on_header_field_complete = on_field_done;
        set.on_header_value = on_value;
        set.on_headers_complete = on_headers;
        set.on_body = on_body;
        set.on_message_complete = on_complete;
        done = true;
    }
    return &set;
}

/* ---- connections ---- */

static void conn_freed(uv_handle_t *h)
{
    struct hconn *c = h->data;
    struct hy_http_server *s = c->l->s;
    free(c);
    if (--s->nclosing == 0 && s->orphan) {
        free(s->lst);
        free(s);
    }
}

static void timer_closed(uv_handle_t *h)
{
    struct hconn *c = h->data;
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

static void conn_close(struct hconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    struct hy_http_server *s = c->l->s;
    settle(c);
    if (c->later)
        c->later->c = NULL; /* closed while the handler works: its answer is dropped */
    for (size_t i = 0; i < c->req.nparams; i++) {
        free(c->params[i].key);
        free(c->params[i].value);
    }
    free(c->params);
    free(c->url);
    free(c->path);
    for (int i = 0; i < H_NSLOTS; i++)
        free(c->hdr[i]);
    hy_buf_fini(&c->body);
    hy_buf_fini(&c->resp.body);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    s->nclosing++;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

static void conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hconn *c = st->data;
    if (n == 0 || c->closing)
        return;
    if (n < 0) {
        conn_close(c); /* before a whole request: nobody to answer */
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->ll, buf->base, (size_t)n);
    if (e == HPE_OK || e == HPE_PAUSED)
        return;
    if (c->responding || c->closing)
        return;
    if (c->head_bytes > HEAD_MAX)
        refuse(c, 431, "Request header fields too large",
               "the request line and headers are over 8 KiB", "(bad request)");
    else if (e == HPE_USER)
        refuse(c, 500, "Out of memory", "cannot read the request", "(bad request)");
    else
        refuse(c, 400, "Bad request", llhttp_get_error_reason(&c->ll), "(bad request)");
    if (!c->req.method_name)
        c->req.method_name = method_names[HY_HTTP_OTHER];
    respond(c);
}

static void refuse_connection(struct lst *l, uv_tcp_t *t)
{
    static const char msg[] =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        "content-length: 120\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
        "{\"title\":\"Too many connections\",\"details\":\"too many connections have not sent an "
        "authorized request yet; try again later\",\"causes\":[]}";
    struct hy_http_server *s = l->s;
    char peer[64] = "?";
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &sl) == 0)
        uv_ip_name((struct sockaddr *)&ss, peer, sizeof(peer));
    uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
    (void)uv_try_write((uv_stream_t *)t, &b, 1);
    l->refused_unlogged++;
    time_t now = time(NULL);
    if (now != l->refused_logged) {
        hy_log(HY_LOG_WARN, "http",
               "%s %s: refused a connection from %s: %zu connections not yet authorized "
               "(limit %zu); %llu refused since the last message",
               l->name, l->address, peer, l->pending,
               s->cfg.max_pending ? s->cfg.max_pending : HY_HTTP_MAX_PENDING,
               (unsigned long long)l->refused_unlogged);
        l->refused_unlogged = 0;
        l->refused_logged = now;
    }
    if (s->cfg.refused)
        s->cfg.refused(s->cfg.ud, l->name);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct lst *l = server->data;
    struct hy_http_server *s = l->s;
    if (status < 0 || s->stopping)
        return;
    struct hconn *c = calloc(1, sizeof(*c));
    if (!c)
        return; /* the connection waits in the backlog */
    uv_tcp_init(s->cfg.loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, free_handle);
        return;
    }
    if (l->pending >= (s->cfg.max_pending ? s->cfg.max_pending : HY_HTTP_MAX_PENDING)) {
        refuse_connection(l, &c->tcp);
        uv_close((uv_handle_t *)&c->tcp, free_handle);
        return;
    }
    c->l = l;
    c->tcp.data = c;
    c->cur = -1;
    uv_timer_init(s->cfg.loop, &c->timer);
    c->timer.data = c;
    c->sh.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    c->pending = true;
    l->pending++;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
        uv_ip_name((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    llhttp_init(&c->ll, HTTP_REQUEST, settings());
    c->ll.data = c;
    uv_timer_start(&c->timer, on_timeout,
                   (uint64_t)(s->cfg.timeout_sec ? s->cfg.timeout_sec : 10) * 1000u, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, conn_read) < 0)
        conn_close(c);
}

static int listen_on(struct hy_http_server *s, size_t i)
{
    const struct hy_http_listener *hl = &s->cfg.listeners[i];
    struct lst *l = &s->lst[i];
    char why[200];
    struct hy_addr a;
    l->s = s;
    l->index = (int)i;
    snprintf(l->name, sizeof(l->name), "%s", hl->name ? hl->name : "");
    if (!hl->name)
        snprintf(l->name, sizeof(l->name), "listener-%zu", i);
    snprintf(l->address, sizeof(l->address), "%s", hl->address ? hl->address : "");
    if (hl->tls_cert || hl->tls_key) {
        hy_log(HY_LOG_ERROR, "http",
               "cannot listen on %s: TLS listeners are not built into this data-plane binary",
               l->address);
        return HY_EINVAL;
    }
    if (!hl->address || hy_addr_parse(hl->address, &a, why, sizeof(why)) < 0) {
        hy_log(HY_LOG_ERROR, "http", "invalid listen address: %s", hl->address ? why : "(none)");
        return HY_EINVAL;
    }
    struct sockaddr_storage ss;
    int rc;
    if (a.kind == HY_ADDR_NAME) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
        char port[8];
        snprintf(port, sizeof(port), "%u", a.port);
        if (getaddrinfo(a.host, port, &hints, &ai) != 0 || !ai) {
            hy_log(HY_LOG_ERROR, "http", "cannot listen on %s: cannot resolve %s", l->address,
                   a.host);
            return HY_EINVAL;
        }
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        freeaddrinfo(ai);
        rc = 0;
    } else if (a.kind == HY_ADDR_IPV6) {
        rc = uv_ip6_addr(a.host, a.port, (struct sockaddr_in6 *)&ss);
    } else {
        rc = uv_ip4_addr(a.kind == HY_ADDR_ANY ? "0.0.0.0" : a.host, a.port,
                         (struct sockaddr_in *)&ss);
    }
    uv_tcp_init(s->cfg.loop, &l->tcp);
    l->tcp.data = l;
    l->open = true;
    if (rc == 0)
        rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_accept);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "http", "cannot listen on %s: %s", l->address, uv_strerror(rc));
        return HY_EINVAL;
    }
    int sl = sizeof(ss);
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &sl) == 0)
        l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int hy_http_server_new(const struct hy_http_server_config *cfg, struct hy_http_server **out)
{
    struct hy_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return HY_ENOMEM;
    s->cfg = *cfg;
    s->lst = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*s->lst));
    if (!s->lst) {
        free(s);
        return HY_ENOMEM;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        s->nlst = i + 1;
        int rc = listen_on(s, i);
        if (rc < 0) {
            hy_http_server_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

int hy_http_server_port(const struct hy_http_server *s, size_t i)
{
    return s && i < s->nlst ? s->lst[i].port : 0;
}

size_t hy_http_server_pending(const struct hy_http_server *s, size_t i)
{
    return s && i < s->nlst ? s->lst[i].pending : 0;
}

static void lst_closed(uv_handle_t *h)
{
    struct lst *l = h->data;
    struct hy_http_server *s = l->s;
    if (--s->nclosing == 0 && s->orphan) {
        free(s->lst);
        free(s);
    }
}

void hy_http_server_stop(struct hy_http_server *s)
{
    if (!s || s->stopping)
        return;
    s->stopping = true;
    for (size_t i = 0; i < s->nlst; i++)
        if (s->lst[i].open) {
            s->lst[i].open = false;
            s->nclosing++;
            uv_close((uv_handle_t *)&s->lst[i].tcp, lst_closed);
        }
    while (s->conns)
        conn_close(s->conns);
}

/* Handles still closing point into the server: the last of them frees it
 * (run the loop before uv_loop_close, as with the lws server). */
void hy_http_server_free(struct hy_http_server *s)
{
    if (!s)
        return;
    hy_http_server_stop(s);
    if (s->nclosing) {
        s->orphan = true;
        return;
    }
    free(s->lst);
    free(s);
}
