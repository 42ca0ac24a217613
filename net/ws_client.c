/* The reconnecting wss client: an lws context on the caller's libuv loop
 * (its own, or one that many clients share), one connection at a time (one
 * struct hy_ws_conn for its whole life), and one uv timer for jittered
 * exponential backoff between attempts and for the watchdog that bounds an
 * attempt lws never reports back on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "ws_int.h"
#include "ws_url.h"
#include "poison.h"

#define LIVE_MAX 4 /* wsis of one client not yet destroyed: the open one, a closing one */

/* What an lws context for clients needs besides itself: lws keeps pointers
 * to the protocols and the SSL_CTX is ours (ws_tls.c). */
struct hy_ws_client_ctx {
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    char *subprotocol;
    SSL_CTX *ssl_ctx;            /* trusting ca_file; NULL: lws made one */
    struct hy_ws_reaper *reaper; /* set once the context is being destroyed */
};

struct hy_ws_client {
    struct hy_ws_ep ep;
    struct hy_ws_conn conn;
    uv_loop_t *loop;
    struct lws_context *ctx;       /* own.ctx or the shared one's; NULL once stopped */
    struct hy_ws_client_ctx own;   /* when not shared */
    struct hy_ws_client_ctx *xctx; /* &own or the shared one */
    /* The wsi of the attempt under way: callbacks of other wsis (an
     * attempt given up) do not count. NULL while lws_client_connect_via_info
     * runs (in_connect), whose callbacks are this attempt's. */
    struct lws *pending;
    bool in_connect;
    struct lws *live[LIVE_MAX]; /* wsis whose user data is conn until WSI_DESTROY */
    unsigned attempt_timeout_ms;
    struct hy_ws_url url;    /* host, host:port (Host header and peer), path, port */
    const char *subprotocol; /* the context's */
    char *name;              /* the peer in log lines */
    bool skip_verify;
    struct hy_ws_backoff bo;
    uv_timer_t *timer;      /* next attempt, the watchdog of one, or a deferred stop */
    unsigned attempt;       /* failures since the last stable connection */
    unsigned last_delay_ms; /* the delay scheduled last */
    uint64_t opened_ms;
    bool verify_failed;  /* this attempt saw a certificate that did not verify */
    bool tls_seen;       /* ... got as far as the server's certificate */
    bool upgrade_sent;   /* ... got as far as the websocket upgrade request */
    uint64_t attempt_ms; /* when this attempt started */
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

static void live_add(struct hy_ws_client *cl, struct lws *wsi)
{
    for (size_t i = 0; i < LIVE_MAX; i++)
        if (!cl->live[i]) {
            cl->live[i] = wsi;
            return;
        }
    /* never seen: forget the oldest, whose destruction then goes unheard */
    lws_set_wsi_user(cl->live[0], NULL);
    memmove(cl->live, cl->live + 1, (LIVE_MAX - 1) * sizeof(cl->live[0]));
    cl->live[LIVE_MAX - 1] = wsi;
}

static void live_remove(struct hy_ws_client *cl, struct lws *wsi)
{
    for (size_t i = 0; i < LIVE_MAX; i++)
        if (cl->live[i] == wsi)
            cl->live[i] = NULL;
}

/* An attempt ended before on_open: why is lws's text (described here), or
 * ours when lws said nothing (final). */
static void attempt_failed(struct hy_ws_client *cl, const char *in, bool final)
{
    struct hy_ws_conn *c = &cl->conn;
    if (c->state != HY_WS_CONNECTING)
        return;
    char why[256];
    if (final)
        snprintf(why, sizeof(why), "%s", in);
    else
        describe_error(cl, in, why, sizeof(why));
    c->state = HY_WS_IDLE;
    c->wsi = NULL;
    cl->pending = NULL;
    hy_log(HY_LOG_WARN, "ws", "client: cannot connect to %s: %s", cl->name, why);
    if (cl->ep.cb.on_close) {
        cl->ep.depth++;
        cl->ep.cb.on_close(cl->ep.ud, c, HY_WS_CLOSE_ABNORMAL, why);
        cl->ep.depth--;
    }
    schedule_retry(cl);
}

/* Whether wsi is the attempt under way (not one given up). */
static bool attempt_wsi(const struct hy_ws_client *cl, const struct lws *wsi)
{
    return cl->conn.state == HY_WS_CONNECTING &&
           (cl->pending ? cl->pending == wsi : cl->in_connect);
}

/* One callback for every client wsi, of an own or a shared context: the
 * wsi's user data is its client's conn (NULL for lws's own wsis and for
 * wsis of a client already freed). */
static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    (void)user; /* not the wsi's user data for every reason (cert verification) */
    struct hy_ws_conn *c = wsi ? lws_wsi_user(wsi) : NULL;
    if (!c)
        return 0;
    struct hy_ws_client *cl =
        (struct hy_ws_client *)((char *)c - offsetof(struct hy_ws_client, conn));
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (attempt_wsi(cl, wsi))
            attempt_failed(cl, in, false);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        live_remove(cl, wsi);
        /* the attempt's wsi is gone and lws said nothing: say it */
        if (attempt_wsi(cl, wsi) && cl->pending == wsi)
            attempt_failed(cl, "the connection ended before it was established", true);
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        if (!attempt_wsi(cl, wsi))
            return 0;
        cl->tls_seen = true;
        if (!len) /* len is OpenSSL's preverify_ok */
            cl->verify_failed = true;
        return 0; /* 0: no opinion of ours; lws keeps OpenSSL's verdict */
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (attempt_wsi(cl, wsi))
            cl->upgrade_sent = true;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!attempt_wsi(cl, wsi))
            return -1; /* an attempt given up, or a stopped client */
        cl->pending = NULL;
        if (cl->timer)
            uv_timer_stop(cl->timer); /* the watchdog */
        cl->opened_ms = hy_ws_now_ms();
        hy_ws_conn_opened(c, wsi, cl->url.hostport);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return c->wsi == wsi ? hy_ws_conn_receive(c, in, len) : 0;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c->wsi == wsi)
            hy_ws_conn_pong(c);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c->wsi == wsi)
            hy_ws_conn_peer_close(c, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return c->wsi == wsi ? hy_ws_conn_writeable(c) : 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c->wsi != wsi)
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
    if (cl->ep.stopping || c->state != HY_WS_IDLE || !cl->ctx)
        return;
    if (cl->skip_verify)
        hy_log(HY_LOG_WARN, "ws", "TLS verification of %s is disabled", cl->name);
    c->state = HY_WS_CONNECTING;
    cl->verify_failed = cl->tls_seen = cl->upgrade_sent = false;
    cl->attempt_ms = hy_ws_now_ms();
    char stale[128];
    hy_ws_take_tls_error(stale, sizeof(stale));
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = cl->ctx;
    i.address = cl->url.host;
    i.port = cl->url.port;
    i.path = cl->url.path;
    i.host = cl->url.hostport; /* lws strips ":port" to check the certificate's name */
    i.origin = cl->url.hostport;
    i.protocol = cl->subprotocol;
    i.local_protocol_name = cl->subprotocol;
    i.alpn = "http/1.1";
    i.userdata = c;
    i.retry_and_idle_policy = &cl->ep.policy;
    i.ssl_connection = LCCSCF_USE_SSL;
    if (cl->skip_verify)
        i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE | LCCSCF_ALLOW_EXPIRED |
                            LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    /* the watchdog: whatever lws does or fails to tell, the attempt ends */
    if (cl->timer) {
        uv_update_time(cl->loop);
        uv_timer_start(cl->timer, on_timer, cl->attempt_timeout_ms, 0);
    }
    /* a failure may be reported (CLIENT_CONNECTION_ERROR) before this returns */
    cl->pending = NULL;
    cl->in_connect = true;
    struct lws *wsi = lws_client_connect_via_info(&i);
    cl->in_connect = false;
    if (wsi)
        live_add(cl, wsi);
    if (!wsi)
        attempt_failed(cl, "cannot start the connection", false);
    else if (c->state == HY_WS_CONNECTING)
        cl->pending = wsi;
}

/* The watchdog fired: the attempt under way is given up, its wsi closed
 * (its callbacks no longer count), and the next one scheduled. */
static void attempt_timed_out(struct hy_ws_client *cl)
{
    struct lws *wsi = cl->pending;
    char why[200];
    snprintf(why, sizeof(why), "no answer within %.1f s (%s)",
             (double)(hy_ws_now_ms() - cl->attempt_ms) / 1000.0,
             cl->upgrade_sent ? "after the websocket upgrade request"
             : cl->tls_seen   ? "in the TLS handshake, after the server's certificate"
                              : "connecting or in the TLS handshake");
    cl->pending = NULL;
    if (wsi) /* from a timer, never inside lws: closing it now is safe */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    attempt_failed(cl, why, true);
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
    if (!cl->ctx)
        return;
    if (cl->xctx == &cl->own) {
        /* closing the context closes the connection (on_close follows) */
        cl->own.reaper = hy_ws_reaper_start(cl->loop, cl->ctx);
    } else {
        /* a shared context stays: close this client's wsi (never inside
         * lws: a stop asked for in a callback comes here from the timer) */
        struct lws *wsi = cl->conn.wsi ? cl->conn.wsi : cl->pending;
        cl->pending = NULL;
        if (wsi)
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        if (cl->conn.state == HY_WS_CONNECTING)
            attempt_failed(cl, "client stopping", true);
        else if (cl->conn.state != HY_WS_IDLE)
            hy_ws_conn_closed(&cl->conn, "client stopping");
    }
    cl->ctx = NULL;
}

static void on_timer(uv_timer_t *t)
{
    struct hy_ws_client *cl = t->data;
    if (cl->ep.stopping)
        do_stop(cl); /* a stop asked for inside a callback */
    else if (cl->conn.state == HY_WS_CONNECTING)
        attempt_timed_out(cl);
    else
        do_connect(cl);
}

/* Makes x's lws context (x->subprotocol set); logs why it cannot. */
static int ctx_init(struct hy_ws_client_ctx *x, uv_loop_t *loop, const char *ca_file,
                    const char *what)
{
    x->loop = loop;
    x->protocols[0] = (struct lws_protocols){
        .name = x->subprotocol,
        .callback = callback,
        .per_session_data_size = 0, /* a wsi's user data is its client's conn */
        .rx_buffer_size = HY_WS_FRAG,
    };
    hy_ws_log_init();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {loop};
    info.foreign_loops = loops;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS; /* trust ca_file only */
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = x->protocols;
    info.user = x;
    bool failed;
    x->ssl_ctx = hy_ws_tls_client_ctx(ca_file, &failed);
    if (failed) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: cannot set up TLS with the CA file \"%s\"", what,
               ca_file ? ca_file : "(none)");
        return HY_EINVAL;
    }
    info.provided_client_ssl_ctx = x->ssl_ctx;
    info.client_ssl_ca_filepath = ca_file; /* used only when lws makes the SSL_CTX */
    info.timeout_secs = HY_WS_HANDSHAKE_SEC;
    info.connect_timeout_secs = HY_WS_HANDSHAKE_SEC;
    x->ctx = lws_create_context(&info);
    if (!x->ctx) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: cannot create the libwebsockets context", what);
        return HY_EINVAL;
    }
    return 0;
}

/* Ends x's context (if it was not yet) and frees what x holds, not x. */
static void ctx_fini(struct hy_ws_client_ctx *x)
{
    if (x->ctx && !x->reaper)
        x->reaper = hy_ws_reaper_start(x->loop, x->ctx);
    x->ctx = NULL;
    hy_ws_reaper_release(x->reaper); /* frees the context now or after a few iterations */
    x->reaper = NULL;
    hy_ws_tls_ctx_free(x->ssl_ctx);
    x->ssl_ctx = NULL;
    free(x->subprotocol);
    x->subprotocol = NULL;
}

int hy_ws_client_ctx_new(uv_loop_t *loop, const char *ca_file, const char *subprotocol,
                         struct hy_ws_client_ctx **out)
{
    if (!loop || !subprotocol || !subprotocol[0]) {
        hy_log(HY_LOG_ERROR, "ws", "shared client context: a loop and a subprotocol are required");
        return HY_EINVAL;
    }
    if (ca_file && access(ca_file, R_OK) < 0) {
        hy_log(HY_LOG_ERROR, "ws", "shared client context: cannot read the CA file \"%s\"",
               ca_file);
        return HY_EINVAL;
    }
    struct hy_ws_client_ctx *x = calloc(1, sizeof(*x));
    if (!x || !(x->subprotocol = strdup(subprotocol))) {
        free(x);
        return HY_ENOMEM;
    }
    int rc = ctx_init(x, loop, ca_file, "(shared context)");
    if (rc < 0) {
        ctx_fini(x);
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void hy_ws_client_ctx_free(struct hy_ws_client_ctx *x)
{
    if (!x)
        return;
    ctx_fini(x);
    free(x);
}

static int parse_url(struct hy_ws_client *cl, const char *url)
{
    struct hy_ws_url u;
    int rc = hy_ws_url_parse(url, &u);
    if (rc == 0) {
        hy_ws_url_fini(&cl->url);
        cl->url = u;
    }
    return rc;
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
    const struct hy_ws_client_ctx *sh = cfg->shared;
    const char *subp = sh && !cfg->subprotocol ? sh->subprotocol : cfg->subprotocol;
    if (!cfg->loop || !subp || !subp[0]) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: a loop and a subprotocol are required", cfg->url);
        goto out_free;
    }
    if (sh && (sh->loop != cfg->loop || strcmp(sh->subprotocol, subp) != 0 || !sh->ctx)) {
        hy_log(HY_LOG_ERROR, "ws",
               "client %s: the shared context is for another loop or subprotocol (%s)", cfg->url,
               sh->subprotocol);
        goto out_free;
    }
    if (!sh && !cfg->skip_verify && (!cfg->ca_file || access(cfg->ca_file, R_OK) < 0)) {
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
    cl->attempt_timeout_ms =
        cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : HY_WS_ATTEMPT_TIMEOUT_MS_DEFAULT;
    rc = hy_ws_ep_init(&cl->ep, &cfg->limits, &cfg->cb, cfg->ud, "client");
    if (rc < 0)
        goto out_free;
    rc = HY_ENOMEM;
    cl->conn.ep = &cl->ep;
    cl->loop = cfg->loop;
    cl->skip_verify = cfg->skip_verify;
    cl->name = strdup(cfg->name ? cfg->name : cfg->url);
    if (!cl->name)
        goto out_free;
    if (sh) {
        cl->xctx = cfg->shared;
    } else {
        cl->xctx = &cl->own;
        if (!(cl->own.subprotocol = strdup(subp)))
            goto out_free;
        if ((rc = ctx_init(&cl->own, cfg->loop, cfg->ca_file, cfg->url)) < 0)
            goto out_free;
    }
    cl->ctx = cl->xctx->ctx;
    cl->subprotocol = cl->xctx->subprotocol;
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

int hy_ws_client_set_url(struct hy_ws_client *c, const char *url)
{
    struct hy_ws_url u;
    int rc = hy_ws_url_parse(url, &u);
    char *name = rc == 0 ? strdup(url) : NULL;
    if (rc < 0 || !name) {
        hy_ws_url_fini(&u);
        return rc < 0 ? rc : HY_ENOMEM;
    }
    hy_ws_url_fini(&c->url);
    c->url = u;
    free(c->name);
    c->name = name;
    return 0;
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
    /* wsis lws has yet to destroy (their close ends on the loop) must not
     * reach this client's memory: every one is on live until WSI_DESTROY */
    for (size_t i = 0; i < LIVE_MAX; i++)
        if (c->live[i])
            lws_set_wsi_user(c->live[i], NULL);
    ctx_fini(&c->own); /* nothing when shared */
    hy_ws_conn_drop_buffers(&c->conn);
    hy_ws_url_fini(&c->url);
    free(c->name);
    free(c);
}
