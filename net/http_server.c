/* HTTP server on libwebsockets over the caller's libuv loop: one vhost per
 * listener, the request's framing and authorization checked on its headers,
 * whole-request buffering with a size cap, one handler call per request,
 * the response written in chunks from the WRITEABLE callback, then the
 * connection closed. A handler may answer later (hy_http_later: a write
 * committed on another thread); a connection that closes meanwhile leaves
 * the handle holding a scratch response, dropped when it is done.
 *
 * One request per connection, on purpose: libwebsockets 4.1 cannot serve a
 * request that was pipelined behind another and carries a body. Its
 * lws_http_action() feeds the body from the connection's buffer list
 * starting at the segment's first byte -- the pipelined request's own
 * header bytes -- and then loops for ever on the rest of the segment
 * (lws_read_h1() consumes nothing once the announced length is reached),
 * inside one loop callback: 100 % CPU, no signal handled (finding 2). Which
 * requests are pipelined cannot be told from outside lws, so the server
 * never starts a second transaction on a connection: every response says
 * "Connection: close" and the connection is closed after it; whatever was
 * pipelined behind is discarded unread, and the client retries it on a new
 * connection (RFC 9112 9.3.2). Transfer-Encoding (lws 4.1 would hand us the
 * chunk framing as body) and a Content-Length that is not one decimal
 * number are refused. */
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "codec.h"
#include "config.h"
#include "error.h"
#include "http_server.h"
#include "log.h"
#include "ws_int.h"
#include "poison.h"

#define CHUNK 16384
#define SEND_IDLE_SEC 30 /* a client that reads nothing of its response that long is dropped */
/* A body still coming after an early answer (401, 413...) is read and
 * dropped until this long after the headers, so that closing does not reset
 * the connection before the client has read the answer. */
#define LINGER_SEC 2
#define HDR_MAX 4096
/* A handler answering later (hy_http_later) gets this long, whatever the
 * request's own timeout: a write may wait behind a queue of others. */
#define LATER_SEC 300

/* Per listener. */
struct vh_data {
    struct hy_http_server *server;
    int index;
    bool tls;
    char name[32];
    char address[64];
    size_t pending;            /* connections not yet received and authorized */
    uint64_t refused_unlogged; /* refused since the last log line */
    time_t refused_logged;     /* when that line was written */
};

struct hy_http_server {
    struct hy_http_server_config cfg;
    struct lws_context *ctx;
    struct hy_ws_reaper *reaper; /* set once stopping: finishes lws's two-step destroy */
    struct lws_vhost **vhosts;
    struct vh_data *vhd;
    SSL_CTX *client_ctx; /* given to TLS vhosts so lws makes none (ws_tls.c says why) */
    size_t nvhosts;
};

/* Per connection; reset at every new transaction on a kept-alive one. */
struct pss {
    struct lws *wsi;
    struct hy_http_later *later; /* the handler answers later (hy_http_later) */
    bool headers_due;            /* answered later: headers go at the next WRITEABLE */
    struct hy_http_req req;
    struct hy_http_resp resp;
    struct hy_http_param *params;
    char *strs[8]; /* owned header copies and path */
    struct hy_buf body;
    size_t sent;
    bool responding, written; /* written: the whole response went to lws */
    bool decided;             /* decided: the server answers, the handler is not called */
    bool body_done;           /* nothing more of the request is expected */
    struct timespec started;
};

static const char *const method_names[] = {"GET",    "HEAD",  "PUT",     "POST",
                                           "DELETE", "PATCH", "OPTIONS", "OTHER"};

/* A response answered later: attached to its connection until that
 * closes, then holding a scratch response that is dropped. */
struct hy_http_later {
    struct pss *p; /* NULL once the connection closed */
    struct hy_http_resp scratch;
};

static void pss_reset(struct pss *p)
{
    if (p->later)
        p->later->p = NULL; /* closed while the handler works: its answer is dropped */
    for (size_t i = 0; i < p->req.nparams; i++) {
        free(p->params[i].key);
        free(p->params[i].value);
    }
    free(p->params);
    for (size_t i = 0; i < sizeof(p->strs) / sizeof(p->strs[0]); i++)
        free(p->strs[i]);
    hy_buf_fini(&p->body);
    hy_buf_fini(&p->resp.body);
    memset(p, 0, sizeof(*p));
}

static const char *copy_hdr(struct lws *wsi, struct pss *p, int slot, enum lws_token_indexes t)
{
    int n = lws_hdr_total_length(wsi, t);
    if (n <= 0)
        return "";
    char *s = malloc((size_t)n + 1);
    if (!s || lws_hdr_copy(wsi, s, n + 1, t) < 0) {
        free(s);
        return "";
    }
    p->strs[slot] = s;
    return s;
}

static const char *copy_custom(struct lws *wsi, struct pss *p, int slot, const char *name)
{
    int nl = (int)strlen(name);
    int n = lws_hdr_custom_length(wsi, name, nl);
    if (n <= 0)
        return "";
    char *s = malloc((size_t)n + 1);
    if (!s || lws_hdr_custom_copy(wsi, s, n + 1, name, nl) < 0) {
        free(s);
        return "";
    }
    p->strs[slot] = s;
    return s;
}

static void read_params(struct lws *wsi, struct pss *p)
{
    char frag[1024];
    for (int i = 0; i < 64; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        struct hy_http_param *v = realloc(p->params, (p->req.nparams + 1) * sizeof(*v));
        if (!v)
            break;
        p->params = v;
        char *eq = strchr(frag, '=');
        if (eq)
            *eq = '\0';
        v[p->req.nparams].key = strdup(frag);
        v[p->req.nparams].value = strdup(eq ? eq + 1 : "");
        p->req.nparams++;
    }
    p->req.params = p->params;
}

static enum hy_http_method method_of(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes tok;
        enum hy_http_method m;
    } map[] = {
        {WSI_TOKEN_GET_URI, HY_HTTP_GET},         {WSI_TOKEN_HEAD_URI, HY_HTTP_HEAD},
        {WSI_TOKEN_PUT_URI, HY_HTTP_PUT},         {WSI_TOKEN_POST_URI, HY_HTTP_POST},
        {WSI_TOKEN_DELETE_URI, HY_HTTP_DELETE},   {WSI_TOKEN_PATCH_URI, HY_HTTP_PATCH},
        {WSI_TOKEN_OPTIONS_URI, HY_HTTP_OPTIONS},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (lws_hdr_total_length(wsi, map[i].tok) > 0)
            return map[i].m;
    return HY_HTTP_OTHER;
}

static bool is_loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
           strncmp(ip, "::ffff:127.", 11) == 0;
}

/* Builds the request from the headers lws parsed. */
static void begin_request(struct lws *wsi, struct pss *p, const char *path)
{
    const struct vh_data *vhd = lws_get_vhost_user(lws_get_vhost(wsi));
    pss_reset(p);
    clock_gettime(CLOCK_MONOTONIC, &p->started);
    p->req.method = method_of(wsi);
    p->req.method_name = method_names[p->req.method];
    p->strs[0] = strdup(path ? path : "/");
    p->req.path = p->strs[0] ? p->strs[0] : "/";
    p->req.content_type = copy_hdr(wsi, p, 1, WSI_TOKEN_HTTP_CONTENT_TYPE);
    p->req.accept = copy_hdr(wsi, p, 2, WSI_TOKEN_HTTP_ACCEPT);
    p->req.if_match = copy_hdr(wsi, p, 3, WSI_TOKEN_HTTP_IF_MATCH);
    p->req.authorization = copy_hdr(wsi, p, 4, WSI_TOKEN_HTTP_AUTHORIZATION);
    p->req.source = copy_custom(wsi, p, 5, "hypha-source:");
    p->req.scrape_timeout = copy_custom(wsi, p, 7, "x-prometheus-scrape-timeout-seconds:");
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    p->strs[6] = strdup(peer);
    p->req.peer = p->strs[6] ? p->strs[6] : "";
    p->req.peer_loopback = is_loopback(p->req.peer);
    p->req.tls = vhd->tls;
    p->req.listener = vhd->index;
    p->req.loop = vhd->server->cfg.loop;
    p->wsi = wsi;
    p->req.body = "";
    read_params(wsi, p);
    p->resp.status = 200;
    p->resp.content_type = "application/json";
}

/* A connection stops being pending once its request is authorized and
 * whole; lws keeps the mark on the wsi (opaque user data) until then. */
static void settle(struct lws *wsi)
{
    struct vh_data *vhd = lws_get_opaque_user_data(wsi);
    if (vhd) {
        vhd->pending--;
        lws_set_opaque_user_data(wsi, NULL);
    }
}

static int send_headers(struct lws *wsi, struct pss *p)
{
    uint8_t buf[LWS_PRE + HDR_MAX], *start = buf + LWS_PRE, *q = start, *end = buf + sizeof(buf);
    struct hy_http_resp *r = &p->resp;
    size_t len = p->req.method == HY_HTTP_HEAD ? 0 : r->body.len;
    if (lws_add_http_common_headers(wsi, (unsigned)r->status, r->content_type, len, &q, end))
        return -1;
    char v[64];
    if (r->etag[0]) {
        int n = snprintf(v, sizeof(v), "\"%s\"", r->etag);
        if (lws_add_http_header_by_name(wsi, (const uint8_t *)"etag:", (const uint8_t *)v, n, &q,
                                        end))
            return -1;
    }
    if (r->result[0] && lws_add_http_header_by_name(
                            wsi, (const uint8_t *)"hypha-result:", (const uint8_t *)r->result,
                            (int)strlen(r->result), &q, end))
        return -1;
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const uint8_t *)"close", 5, &q,
                                     end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &q, end))
        return -1;
    return 0;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The response is filled: count it and queue its headers. send: write
 * them now (inside an lws callback that may write), else at the next
 * WRITEABLE (answered later, from outside lws). */
static int start_response(struct lws *wsi, struct pss *p, bool send)
{
    struct hy_http_server *s = ((struct vh_data *)lws_get_vhost_user(lws_get_vhost(wsi)))->server;
    /* from now on the clock is the response's: lws's header-time content
     * timeout would cut a long answer to a busy client short */
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, SEND_IDLE_SEC);
    if (s->cfg.observe)
        s->cfg.observe(s->cfg.ud, p->req.method_name, p->resp.route[0] ? p->resp.route : "other",
                       p->resp.status, elapsed(&p->started));
    if (!send)
        p->headers_due = true;
    else if (send_headers(wsi, p) < 0)
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* Runs the handler (unless the response is already decided) and starts
 * writing, unless the handler answers later. Returns what the lws callback
 * should return. */
static int respond(struct lws *wsi, struct pss *p)
{
    struct hy_http_server *s = ((struct vh_data *)lws_get_vhost_user(lws_get_vhost(wsi)))->server;
    if (!p->decided) {
        settle(wsi);
        p->req.body = p->body.data ? p->body.data : "";
        p->req.body_len = p->body.len;
        s->cfg.handler(s->cfg.ud, &p->req, &p->resp);
    }
    p->responding = true;
    if (p->later) { /* the handler's work goes on: wait for it, however busy */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LATER_SEC);
        return 0;
    }
    return start_response(wsi, p, true);
}

struct hy_http_later *hy_http_later(struct hy_http_resp *resp)
{
    struct pss *p = (struct pss *)((char *)resp - offsetof(struct pss, resp));
    struct hy_http_later *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->p = p;
    p->later = l;
    return l;
}

struct hy_http_resp *hy_http_later_resp(struct hy_http_later *l)
{
    return l->p ? &l->p->resp : &l->scratch;
}

bool hy_http_later_open(const struct hy_http_later *l)
{
    return l->p != NULL;
}

void hy_http_later_done(struct hy_http_later *l)
{
    struct pss *p = l->p;
    hy_buf_fini(&l->scratch.body);
    free(l);
    if (!p)
        return; /* the connection closed: nobody to answer */
    p->later = NULL;
    if (p->responding) /* else done inside the handler call: respond() sends it */
        start_response(p->wsi, p, false);
}

static int write_body(struct lws *wsi, struct pss *p)
{
    uint8_t buf[LWS_PRE + CHUNK];
    if (p->written) {
        /* close only once lws has sent what it buffered of the last write:
         * closing with it still queued cuts the response short */
        if (lws_partial_buffered(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        double t = elapsed(&p->started);
        if (!p->body_done && t < LINGER_SEC) {
            /* ended by BODY_COMPLETION, a body chunk after LINGER_SEC or,
             * if none comes, this timeout */
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)(LINGER_SEC - t) + 1);
            return 0;
        }
        return -1; /* one request per connection (top of file) */
    }
    size_t total = p->req.method == HY_HTTP_HEAD ? 0 : p->resp.body.len;
    size_t n = total - p->sent;
    if (n > CHUNK)
        n = CHUNK;
    bool last = p->sent + n == total;
    if (n)
        memcpy(buf + LWS_PRE, p->resp.body.data + p->sent, n);
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    p->sent += n;
    p->written = last;
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, SEND_IDLE_SEC); /* progress */
    lws_callback_on_writable(wsi);
    return 0;
}

/* The server answers this request itself; its body is never kept. */
static void refuse(struct pss *p, int status, const char *title, const char *details,
                   const char *route)
{
    p->decided = true;
    hy_buf_fini(&p->body);
    hy_http_error(&p->resp, status, title, details, NULL);
    snprintf(p->resp.route, sizeof(p->resp.route), "%s", route);
}

static void too_big(struct pss *p, size_t max)
{
    char details[128];
    snprintf(details, sizeof(details), "the request body is larger than the limit of %zu bytes",
             max);
    refuse(p, 413, "Request body too large", details, "(too large)");
}

/* Over max_pending: answer what we can without reading the request (a 503
 * on plain HTTP; nothing can be said before a TLS handshake), log at most
 * once a second, count. lws closes fd when we return. */
static void refuse_connection(struct vh_data *vhd, int fd)
{
    static const char body[] =
        "{\"title\":\"Too many connections\",\"details\":\"too many connections have not sent an "
        "authorized request yet; try again later\",\"causes\":[]}";
    struct hy_http_server *s = vhd->server;
    char peer[INET6_ADDRSTRLEN] = "?", head[256], drain[4096];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        inet_ntop(ss.ss_family,
                  ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                           : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
                  peer, sizeof(peer));
    if (!vhd->tls) {
        /* what already arrived is read first, so that closing does not reset
         * the connection before the client reads the answer */
        while (recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0)
            ;
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                         "content-length: %zu\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
                         sizeof(body) - 1);
        if (send(fd, head, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n)
            (void)!send(fd, body, sizeof(body) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR);
    }
    vhd->refused_unlogged++;
    time_t now = time(NULL);
    if (now != vhd->refused_logged) {
        hy_log(HY_LOG_WARN, "http",
               "%s %s: refused a connection from %s: %zu connections not yet authorized "
               "(limit %zu); %llu refused since the last message",
               vhd->name, vhd->address, peer, vhd->pending,
               s->cfg.max_pending ? s->cfg.max_pending : HY_HTTP_MAX_PENDING,
               (unsigned long long)vhd->refused_unlogged);
        vhd->refused_unlogged = 0;
        vhd->refused_logged = now;
    }
    if (s->cfg.refused)
        s->cfg.refused(s->cfg.ud, vhd->name);
}

/* Content-Length as lws joined it (repeats with commas): one decimal number
 * of at most 18 digits, or absent (*len 0). False when it is anything else. */
static bool content_length(struct lws *wsi, unsigned long long *len)
{
    char cl[32];
    *len = 0;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return true;
    int n = lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (n <= 0 || n > 18)
        return false;
    for (int i = 0; i < n; i++) {
        if (cl[i] < '0' || cl[i] > '9')
            return false;
        *len = *len * 10 + (unsigned)(cl[i] - '0');
    }
    return true;
}

/* The request's headers are parsed: check its framing, ask authorize, and
 * either answer now or wait for the body. */
static int on_headers(struct lws *wsi, struct pss *p, const struct vh_data *vhd, const char *path)
{
    const struct hy_http_server_config *cfg = &vhd->server->cfg;
    unsigned long long len;
    begin_request(wsi, p, path);
    p->body_done = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0 &&
                   lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        refuse(p, 411, "Length required",
               "Transfer-Encoding is not supported; send the body with a Content-Length",
               "(bad framing)");
        return respond(wsi, p);
    }
    if (!content_length(wsi, &len)) {
        refuse(p, 400, "Bad request", "Content-Length must be one decimal number", "(bad framing)");
        return respond(wsi, p);
    }
    if (cfg->authorize && !cfg->authorize(cfg->ud, &p->req, &p->resp)) {
        p->decided = true;
        if (!p->resp.route[0])
            snprintf(p->resp.route, sizeof(p->resp.route), "(unauthorized)");
        return respond(wsi, p);
    }
    if (len > cfg->max_body) {
        too_big(p, cfg->max_body);
        return respond(wsi, p);
    }
    if (len == 0) {
        p->body_done = true;
        return respond(wsi, p);
    }
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)(cfg->timeout_sec ? cfg->timeout_sec : 10));
    return 0; /* wait for the body */
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *p = user;
    struct vh_data *vhd = lws_get_vhost(wsi) ? lws_get_vhost_user(lws_get_vhost(wsi)) : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: { /* wsi: the listener; in: the new socket */
        struct hy_http_server *s = vhd->server;
        if (vhd->pending < (s->cfg.max_pending ? s->cfg.max_pending : HY_HTTP_MAX_PENDING))
            return 0;
        refuse_connection(vhd, (int)(intptr_t)in);
        return 1;
    }
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (vhd) {
            vhd->pending++;
            lws_set_opaque_user_data(wsi, vhd);
        }
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        settle(wsi);
        return 0;
    case LWS_CALLBACK_HTTP:
        return on_headers(wsi, p, vhd, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (p->decided || p->responding) /* read and dropped, for LINGER_SEC at most */
            return elapsed(&p->started) < LINGER_SEC ? 0 : -1;
        if (p->body.len + len > vhd->server->cfg.max_body) {
            too_big(p, vhd->server->cfg.max_body);
            return respond(wsi, p);
        }
        if (hy_buf_append(&p->body, in, len) < 0)
            return -1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        p->body_done = true;
        if (p->responding) { /* answered on the headers: back to the response's clock */
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, p->later ? LATER_SEC : SEND_IDLE_SEC);
            lws_callback_on_writable(wsi); /* to close once the answer is out */
            return 0;
        }
        return respond(wsi, p);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!p || !p->responding || p->later)
            return 0;
        if (p->headers_due) { /* answered later: the headers are this callback's one write */
            p->headers_due = false;
            if (send_headers(wsi, p) < 0)
                return -1;
            lws_callback_on_writable(wsi);
            return 0;
        }
        return write_body(wsi, p);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p)
            pss_reset(p);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(struct pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int hy_http_server_new(const struct hy_http_server_config *cfg, struct hy_http_server **out)
{
    struct hy_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return HY_ENOMEM;
    s->cfg = *cfg;
    s->vhosts = calloc(cfg->nlisteners, sizeof(*s->vhosts));
    s->vhd = calloc(cfg->nlisteners, sizeof(*s->vhd));
    if (!s->vhosts || !s->vhd) {
        hy_http_server_free(s);
        return HY_ENOMEM;
    }
    hy_ws_log_init(); /* one lws log sink for the process (ws_conn.c) */

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {cfg->loop};
    info.foreign_loops = loops;
    /* crashes must crash (and reach ASan), not spin in lws' handler */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.timeout_secs = cfg->timeout_sec ? cfg->timeout_sec : 10; /* lws's own, e.g. the body's */
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        hy_log(HY_LOG_ERROR, "http", "cannot create the libwebsockets context");
        hy_http_server_free(s);
        return HY_EINVAL;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct hy_http_listener *l = &cfg->listeners[i];
        char name[32], why[200];
        struct hy_addr a;
        if (hy_addr_parse(l->address, &a, why, sizeof(why)) < 0) {
            hy_log(HY_LOG_ERROR, "http", "invalid listen address: %s", why);
            hy_http_server_free(s);
            return HY_EINVAL;
        }
        s->vhd[i] = (struct vh_data){.server = s, .index = (int)i, .tls = l->tls_cert != NULL};
        snprintf(s->vhd[i].name, sizeof(s->vhd[i].name), "%s", l->name ? l->name : "");
        if (!l->name)
            snprintf(s->vhd[i].name, sizeof(s->vhd[i].name), "listener-%zu", i);
        snprintf(s->vhd[i].address, sizeof(s->vhd[i].address), "%s", l->address);
        struct lws_context_creation_info v;
        memset(&v, 0, sizeof(v));
        snprintf(name, sizeof(name), "listener-%zu", i);
        v.vhost_name = name;
        v.port = a.port;
        v.iface = a.host[0] ? a.host : NULL;
        v.protocols = protocols;
        v.user = &s->vhd[i];
        v.timeout_secs = cfg->timeout_sec ? cfg->timeout_sec : 10;
        v.keepalive_timeout = 30;
        v.ssl_cert_filepath = l->tls_cert;
        v.ssl_private_key_filepath = l->tls_key;
        /* HTTP/1.1 only: the one-request-per-connection rule above is h1's,
         * and h2 would be a second request parser to defend */
        v.alpn = "http/1.1";
        if (l->tls_cert) { /* lws enables TLS on a vhost only with this option on it too */
            v.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
            bool failed = false;
            if (!s->client_ctx)
                s->client_ctx = hy_ws_tls_client_ctx(NULL, &failed);
            v.provided_client_ssl_ctx = s->client_ctx;
        }
        if (a.kind != HY_ADDR_IPV6)
            v.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        s->vhosts[i] = lws_create_vhost(s->ctx, &v);
        if (!s->vhosts[i]) {
            hy_log(HY_LOG_ERROR, "http", "cannot listen on %s%s", l->address,
                   l->tls_cert ? " (TLS: check the certificate and key files)" : "");
            hy_http_server_free(s);
            return HY_EINVAL;
        }
        s->nvhosts = i + 1;
    }
    *out = s;
    return 0;
}

int hy_http_server_port(const struct hy_http_server *s, size_t i)
{
    if (!s || i >= s->nvhosts || !s->vhosts[i])
        return 0;
    return lws_get_vhost_listen_port(s->vhosts[i]);
}

size_t hy_http_server_pending(const struct hy_http_server *s, size_t i)
{
    if (!s || i >= s->nvhosts)
        return 0;
    return s->vhd[i].pending;
}

void hy_http_server_stop(struct hy_http_server *s)
{
    /* lws 4.1 on a foreign loop destroys a context in two steps with loop
     * turns in between; the reaper (ws_conn.c) does the second when safe. */
    if (s && s->ctx && !s->reaper)
        s->reaper = hy_ws_reaper_start(s->cfg.loop, s->ctx);
}

void hy_http_server_free(struct hy_http_server *s)
{
    if (!s)
        return;
    hy_http_server_stop(s);
    hy_ws_reaper_release(s->reaper);
    hy_ws_tls_ctx_free(s->client_ctx);
    free(s->vhosts);
    free(s->vhd);
    free(s);
}
