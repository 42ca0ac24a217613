/* The reconnecting wss client: its own lws context on the caller's libuv
 * loop, one connection at a time (one struct hy_ws_conn for its whole
 * life), and a uv timer for jittered exponential backoff between attempts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "ws_int.h"
#include "poison.h"

struct hy_ws_client {
    struct hy_ws_ep ep;
    struct hy_ws_conn conn;
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_protocols protocols[2]; /* lws keeps pointers to these */
    char *host;                        /* without brackets */
    char *hostport;                    /* "host:port" / "[v6]:port": Host header and peer */
    char *path;                        /* starts with '/' */
    char *subprotocol;
    char *name; /* the peer in log lines */
    int port;
    bool skip_verify;
    struct hy_ws_backoff bo;
    uv_timer_t *timer;      /* next attempt, or a deferred stop; freed when closed */
    unsigned attempt;       /* failures since the last stable connection */
    unsigned last_delay_ms; /* the delay scheduled last */
    uint64_t opened_ms;
    bool verify_failed;          /* this attempt saw a certificate that did not verify */
    bool tls_seen;               /* ... got as far as the server's certificate */
    bool upgrade_sent;           /* ... got as far as the websocket upgrade request */
    struct hy_ws_reaper *reaper; /* set once the context is being destroyed */
    SSL_CTX *ssl_ctx;            /* ours, trusting ca_file; NULL: lws made one */
};

static void on_timer(uv_timer_t *t);

/* Delay before the next attempt: initial * 2^attempt, capped, then moved
 * by +-jitter %. */
static unsigned next_delay(struct hy_ws_client *cl)
{
    uint64_t base = cl->bo.initial_ms;
    for (unsigned i = 0; i < cl->attempt && base < cl->bo.max_ms; i++)
        base *= 2;
    if (base > cl->bo.max_ms)
        base = cl->bo.max_ms;
    uint32_t r = 0;
    if (lws_get_random(cl->ctx, &r, sizeof(r)) != sizeof(r))
        r = (uint32_t)hy_ws_now_ms() * 2654435761u;
    double u = (double)r / 4294967295.0; /* [0, 1] */
    double f = 1.0 + (double)cl->bo.jitter_pct / 100.0 * (2.0 * u - 1.0);
    if (cl->attempt < 64)
        cl->attempt++;
    return (unsigned)((double)base * f + 0.5);
}

static void schedule_retry(struct hy_ws_client *cl)
{
    if (cl->ep.stopping || !cl->timer)
        return;
    cl->last_delay_ms = next_delay(cl);
    hy_log(HY_LOG_INFO, "ws", "client: reconnecting to %s in %u ms", cl->name, cl->last_delay_ms);
    /* from now, not from the loop's cached time, which a slow TLS failure
     * leaves behind: the delay is what the peer sees between attempts */
    uv_update_time(uv_handle_get_loop((uv_handle_t *)cl->timer));
    uv_timer_start(cl->timer, on_timer, cl->last_delay_ms, 0);
}

/* Turns lws's connection error text into one for people. lws 4.1 says
 * "connect SSL err 1: error:00000001:lib(0)::reason(1)" for every TLS
 * failure and "closed before established" for a refused connection as for
 * others, so how far the attempt got is told by our own callbacks, and why
 * a certificate did not verify is taken from lws's log line. */
static void describe_error(struct hy_ws_client *cl, const char *in, char *out, size_t size)
{
    char why[128];
    hy_ws_take_tls_error(why, sizeof(why));
    if (!in || !*in)
        in = "unknown error";
    int n = (int)strlen(in);
    while (n && (in[n - 1] == '\n' || in[n - 1] == ' '))
        n--;
    if (cl->verify_failed || strstr(in, "cert didn't look good"))
        snprintf(out, size, "TLS: certificate verify failed: %s",
                 why[0] ? why : "the server's certificate is not trusted");
    else if (cl->upgrade_sent && strncmp(in, "HS: ", 4) == 0)
        snprintf(out, size, "websocket upgrade refused: %.*s", n - 4, in + 4);
    else if (cl->upgrade_sent)
        snprintf(out, size,
                 "the server closed the connection during the websocket upgrade (%.*s); does it "
                 "speak subprotocol %s?",
                 n, in, cl->subprotocol);
    else if (strstr(in, "SSL") || cl->tls_seen)
        snprintf(out, size, "TLS handshake failed (%.*s)", n, in);
    else if (strstr(in, "closed before established"))
        snprintf(out, size, "connection refused or unreachable");
    else
        snprintf(out, size, "%.*s", n, in);
}

/* An attempt ended before on_open. */
static void attempt_failed(struct hy_ws_client *cl, const char *in)
{
    struct hy_ws_conn *c = &cl->conn;
    if (c->state != HY_WS_CONNECTING)
        return;
    char why[256];
    describe_error(cl, in, why, sizeof(why));
    c->state = HY_WS_IDLE;
    c->wsi = NULL;
    hy_log(HY_LOG_WARN, "ws", "client: cannot connect to %s: %s", cl->name, why);
    if (cl->ep.cb.on_close) {
        cl->ep.depth++;
        cl->ep.cb.on_close(cl->ep.ud, c, HY_WS_CLOSE_ABNORMAL, why);
        cl->ep.depth--;
    }
    schedule_retry(cl);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct hy_ws_client *cl = lws_context_user(lws_get_context(wsi));
    struct hy_ws_conn *c = user; /* cl->conn, passed as the wsi's user data */
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        attempt_failed(cl, in);
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        cl->tls_seen = true;
        if (!len) /* len is OpenSSL's preverify_ok */
            cl->verify_failed = true;
        return 0; /* 0: no opinion of ours; lws keeps OpenSSL's verdict */
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        cl->upgrade_sent = true;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c != &cl->conn || c->state != HY_WS_CONNECTING)
            return -1;
        cl->opened_ms = hy_ws_now_ms();
        hy_ws_conn_opened(c, wsi, cl->hostport);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return c && c->wsi == wsi ? hy_ws_conn_receive(c, in, len) : 0;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c && c->wsi == wsi)
            hy_ws_conn_pong(c);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && c->wsi == wsi)
            hy_ws_conn_peer_close(c, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return c && c->wsi == wsi ? hy_ws_conn_writeable(c) : 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!c || c->wsi != wsi)
            return 0;
        if (hy_ws_now_ms() - cl->opened_ms >= (uint64_t)cl->bo.reset_sec * 1000u)
            cl->attempt = 0; /* it was stable: start the backoff over */
        hy_ws_conn_closed(c, cl->ep.stopping ? "client stopping" : "connection lost");
        schedule_retry(cl);
        return 0;
    default:
        return 0;
    }
}

static void do_connect(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    if (cl->ep.stopping || c->state != HY_WS_IDLE)
        return;
    if (cl->skip_verify)
        hy_log(HY_LOG_WARN, "ws", "TLS verification of %s is disabled", cl->name);
    c->state = HY_WS_CONNECTING;
    cl->verify_failed = cl->tls_seen = cl->upgrade_sent = false;
    char stale[128];
    hy_ws_take_tls_error(stale, sizeof(stale));
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = cl->ctx;
    i.address = cl->host;
    i.port = cl->port;
    i.path = cl->path;
    i.host = cl->hostport; /* lws strips ":port" to check the certificate's name */
    i.origin = cl->hostport;
    i.protocol = cl->subprotocol;
    i.local_protocol_name = cl->subprotocol;
    i.alpn = "http/1.1";
    i.userdata = c;
    i.retry_and_idle_policy = &cl->ep.policy;
    i.ssl_connection = LCCSCF_USE_SSL;
    if (cl->skip_verify)
        i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE | LCCSCF_ALLOW_EXPIRED |
                            LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    /* a failure may be reported (CLIENT_CONNECTION_ERROR) before this returns */
    if (!lws_client_connect_via_info(&i))
        attempt_failed(cl, "cannot start the connection");
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void do_stop(struct hy_ws_client *cl)
{
    if (cl->timer) {
        uv_timer_stop(cl->timer);
        uv_close((uv_handle_t *)cl->timer, free_handle);
        cl->timer = NULL;
    }
    if (cl->ctx) {
        cl->reaper = hy_ws_reaper_start(cl->loop, cl->ctx);
        cl->ctx = NULL;
    }
}

static void on_timer(uv_timer_t *t)
{
    struct hy_ws_client *cl = t->data;
    if (cl->ep.stopping)
        do_stop(cl); /* a stop asked for inside a callback */
    else
        do_connect(cl);
}

/* Parses wss://host[:port][/path]; fills cl's host, hostport, port, path. */
static int parse_url(struct hy_ws_client *cl, const char *url)
{
    if (!url || strncmp(url, "wss://", 6) != 0)
        return HY_EINVAL;
    const char *h = url + 6, *end = h + strcspn(h, "/?#"), *hend, *colon = NULL;
    if (*h == '[') {
        hend = memchr(h, ']', (size_t)(end - h));
        if (!hend)
            return HY_EINVAL;
        if (hend + 1 < end && hend[1] == ':')
            colon = hend + 1;
        else if (hend + 1 != end)
            return HY_EINVAL;
        h++;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        hend = colon ? colon : end;
    }
    if (hend == h || *end == '#')
        return HY_EINVAL;
    cl->port = 443;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || colon + 1 == end || p < 1 || p > 65535)
            return HY_EINVAL;
        cl->port = (int)p;
    }
    cl->host = strndup(h, (size_t)(hend - h));
    size_t hl = (size_t)(hend - h) + 16;
    cl->hostport = malloc(hl);
    if (*end == '/') {
        cl->path = strdup(end);
    } else if (*end == '?') { /* a query without a path */
        size_t n = strlen(end) + 2;
        cl->path = malloc(n);
        if (cl->path)
            snprintf(cl->path, n, "/%s", end);
    } else {
        cl->path = strdup("/");
    }
    if (!cl->host || !cl->hostport || !cl->path)
        return HY_ENOMEM;
    snprintf(cl->hostport, hl, strchr(cl->host, ':') ? "[%s]:%d" : "%s:%d", cl->host, cl->port);
    return 0;
}

int hy_ws_client_new(const struct hy_ws_client_config *cfg, struct hy_ws_client **out)
{
    struct hy_ws_client *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return HY_ENOMEM;
    int rc = parse_url(cl, cfg->url);
    if (rc == HY_EINVAL)
        hy_log(HY_LOG_ERROR, "ws", "client: invalid URL \"%s\" (expected wss://host:port/path)",
               cfg->url ? cfg->url : "");
    if (rc < 0)
        goto out_free;
    rc = HY_EINVAL;
    if (!cfg->loop || !cfg->subprotocol || !cfg->subprotocol[0]) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: a loop and a subprotocol are required", cfg->url);
        goto out_free;
    }
    if (!cfg->skip_verify && (!cfg->ca_file || access(cfg->ca_file, R_OK) < 0)) {
        hy_log(HY_LOG_ERROR, "ws",
               "client %s: cannot read the CA file \"%s\" to verify the server; give one, or "
               "skip verification (insecure)",
               cfg->url, cfg->ca_file ? cfg->ca_file : "(none)");
        goto out_free;
    }
    cl->bo = cfg->backoff;
    if (!cl->bo.initial_ms)
        cl->bo.initial_ms = 500;
    if (!cl->bo.max_ms)
        cl->bo.max_ms = 30000;
    if (!cl->bo.jitter_pct)
        cl->bo.jitter_pct = 20;
    if (!cl->bo.reset_sec)
        cl->bo.reset_sec = 10;
    if (cl->bo.initial_ms > cl->bo.max_ms)
        cl->bo.initial_ms = cl->bo.max_ms;
    if (cl->bo.jitter_pct > 50) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: backoff jitter_pct must be at most 50", cfg->url);
        goto out_free;
    }
    rc = hy_ws_ep_init(&cl->ep, &cfg->limits, &cfg->cb, cfg->ud, "client");
    if (rc < 0)
        goto out_free;
    rc = HY_ENOMEM;
    cl->conn.ep = &cl->ep;
    cl->loop = cfg->loop;
    cl->skip_verify = cfg->skip_verify;
    cl->subprotocol = strdup(cfg->subprotocol);
    cl->name = strdup(cfg->name ? cfg->name : cfg->url);
    if (!cl->subprotocol || !cl->name)
        goto out_free;
    cl->protocols[0] = (struct lws_protocols){
        .name = cl->subprotocol,
        .callback = callback,
        .per_session_data_size = 0, /* the wsi's user data is cl->conn */
        .rx_buffer_size = HY_WS_FRAG,
    };
    hy_ws_log_init();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {cfg->loop};
    info.foreign_loops = loops;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS; /* trust ca_file only */
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = cl->protocols;
    info.user = cl;
    rc = HY_EINVAL;
    bool failed;
    cl->ssl_ctx = hy_ws_tls_client_ctx(cfg->ca_file, &failed);
    if (failed) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: cannot set up TLS with the CA file \"%s\"", cfg->url,
               cfg->ca_file ? cfg->ca_file : "(none)");
        goto out_free;
    }
    info.provided_client_ssl_ctx = cl->ssl_ctx;
    info.client_ssl_ca_filepath = cfg->ca_file; /* used only when lws makes the SSL_CTX */
    info.timeout_secs = HY_WS_HANDSHAKE_SEC;
    info.connect_timeout_secs = HY_WS_HANDSHAKE_SEC;
    cl->ctx = lws_create_context(&info);
    if (!cl->ctx) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: cannot create the libwebsockets context", cfg->url);
        goto out_free;
    }
    rc = HY_ENOMEM;
    cl->timer = malloc(sizeof(*cl->timer));
    if (!cl->timer)
        goto out_free;
    uv_timer_init(cfg->loop, cl->timer);
    cl->timer->data = cl;
    uv_timer_start(cl->timer, on_timer, 0, 0);
    *out = cl;
    return 0;

out_free:
    hy_ws_client_free(cl);
    return rc;
}

struct hy_ws_conn *hy_ws_client_conn(struct hy_ws_client *c)
{
    return &c->conn;
}

bool hy_ws_client_is_open(const struct hy_ws_client *c)
{
    return c->conn.state == HY_WS_OPEN;
}

unsigned hy_ws_client_retry_delay_ms(const struct hy_ws_client *c)
{
    return c->last_delay_ms;
}

int hy_ws_client_reconnect_now(struct hy_ws_client *c)
{
    if (c->ep.stopping || !c->timer)
        return -ESHUTDOWN;
    if (c->conn.state != HY_WS_IDLE)
        return -EALREADY;
    uv_timer_start(c->timer, on_timer, 0, 0);
    return 0;
}

void hy_ws_client_stop(struct hy_ws_client *c)
{
    if (!c || c->ep.stopping)
        return;
    c->ep.stopping = true;
    if (c->ep.depth > 0 && c->timer) /* inside our own callback: lws is on the stack */
        uv_timer_start(c->timer, on_timer, 0, 0);
    else
        do_stop(c);
}

void hy_ws_client_free(struct hy_ws_client *c)
{
    if (!c)
        return;
    c->ep.stopping = true;
    do_stop(c);
    hy_ws_reaper_release(c->reaper); /* frees the context now or after a few iterations */
    hy_ws_tls_ctx_free(c->ssl_ctx);
    hy_ws_conn_drop_buffers(&c->conn);
    free(c->host);
    free(c->hostport);
    free(c->path);
    free(c->subprotocol);
    free(c->name);
    free(c);
}
