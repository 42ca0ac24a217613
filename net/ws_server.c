/* The wss server: one lws context with one TLS vhost on the caller's libuv
 * loop, one websocket subprotocol, connections kept in lws's per-session
 * memory (struct hy_ws_conn). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "ws_int.h"
#include "poison.h"

struct hy_ws_server {
    struct hy_ws_ep ep;
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    char *subprotocol;
    struct lws_protocols protocols[2]; /* lws keeps pointers to these */
    uv_timer_t *defer;                 /* runs a stop asked for inside a callback; NULL */
    struct hy_ws_reaper *reaper;       /* set once the context is being destroyed */
    SSL_CTX *client_ctx;               /* unused by us; stops lws from making one */
    uv_timer_t *hello_timer;           /* the oldest unauthenticated connection's deadline */
    uv_timer_t *keepalive;             /* pings and idle closes (hy_ws_ep_sweep) */
};

/* Closes the unauthenticated connections whose Hello deadline passed and
 * re-arms for the next one (the list is in open order, and every
 * connection has the same timeout, so the first still open is next). */
static void on_hello_timer(uv_timer_t *t)
{
    struct hy_ws_server *s = t->data;
    struct hy_ws_ep *ep = &s->ep;
    uint64_t now = hy_ws_now_ms(), next = 0;
    if (ep->stopping)
        return;
    for (struct hy_ws_conn *c = ep->unauth_head, *n; c; c = n) {
        n = c->unauth_next;
        if (c->state != HY_WS_OPEN)
            continue; /* closing already: gone soon */
        uint64_t deadline = c->opened_ms + ep->hello_timeout_ms;
        if (deadline > now) {
            next = deadline - now;
            break;
        }
        char why[HY_WS_REASON_MAX + 1];
        snprintf(why, sizeof(why), "no Hello within %u ms of connecting", ep->hello_timeout_ms);
        hy_log(HY_LOG_WARN, "ws", "server: closing the connection with %s: %d %s", c->peer,
               HY_WS_CLOSE_POLICY, why);
        ep->hello_timeouts++;
        hy_ws_close(c, HY_WS_CLOSE_POLICY, why);
    }
    if (next)
        uv_timer_start(t, on_hello_timer, next, 0);
}

/* A new connection, before on_open: refused when max_unauth strangers are
 * already waiting (-1: lws sends the close frame set here and drops it). */
static int admit(struct hy_ws_server *s, struct lws *wsi, const char *peer)
{
    struct hy_ws_ep *ep = &s->ep;
    if (ep->nunauth < ep->max_unauth)
        return 0;
    char why[HY_WS_REASON_MAX + 1];
    snprintf(why, sizeof(why), "too many connections waiting for their Hello (%zu); retry later",
             ep->max_unauth);
    ep->unauth_refused++;
    hy_log(HY_LOG_WARN, "ws", "server: refused a connection from %s: %d %s", peer,
           HY_WS_CLOSE_POLICY, why);
    lws_close_reason(wsi, (enum lws_close_status)HY_WS_CLOSE_POLICY, (unsigned char *)why,
                     strlen(why));
    return -1;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct hy_ws_conn *c = user;
    struct hy_ws_server *s = lws_get_vhost(wsi) ? lws_get_vhost_user(lws_get_vhost(wsi)) : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* lws refuses unknown subprotocols itself but binds a request with
         * none to protocols[0]: refuse that here */
        if (!in || !*(const char *)in) {
            char peer[64] = "";
            lws_get_peer_simple(wsi, peer, sizeof(peer));
            hy_log(HY_LOG_WARN, "ws", "server: refused a websocket from %s without subprotocol %s",
                   peer, s ? s->subprotocol : "?");
            return 1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        char peer[64] = "";
        lws_get_peer_simple(wsi, peer, sizeof(peer));
        memset(c, 0, sizeof(*c)); /* state IDLE: a refused one is never reported */
        c->ep = &s->ep;
        if (admit(s, wsi, peer) < 0)
            return -1;
        hy_ws_conn_opened(c, wsi, peer);
        if (!c->authed && s->hello_timer && !uv_is_active((uv_handle_t *)s->hello_timer))
            uv_timer_start(s->hello_timer, on_hello_timer, s->ep.hello_timeout_ms, 0);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return c && c->ep ? hy_ws_conn_receive(c, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->ep)
            hy_ws_conn_pong(c);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && c->ep)
            hy_ws_conn_peer_close(c, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c && c->ep ? hy_ws_conn_writeable(c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (c && c->ep)
            hy_ws_conn_closed(c, s && s->ep.stopping ? "server stopping" : "connection lost");
        return 0;
    case LWS_CALLBACK_HTTP:
        return -1; /* plain HTTP on a websocket-only port */
    default:
        return 0;
    }
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_keepalive(uv_timer_t *t)
{
    struct hy_ws_server *s = t->data;
    hy_ws_ep_sweep(&s->ep);
}

static void do_stop(struct hy_ws_server *s)
{
    if (s->hello_timer) {
        uv_close((uv_handle_t *)s->hello_timer, free_handle);
        s->hello_timer = NULL;
    }
    if (s->keepalive) {
        uv_close((uv_handle_t *)s->keepalive, free_handle);
        s->keepalive = NULL;
    }
    if (s->defer) {
        uv_close((uv_handle_t *)s->defer, free_handle);
        s->defer = NULL;
    }
    if (s->ctx) {
        s->reaper = hy_ws_reaper_start(s->loop, s->ctx);
        s->ctx = NULL;
        s->vhost = NULL;
    }
}

static void on_defer(uv_timer_t *t)
{
    do_stop(t->data);
}

int hy_ws_server_new(const struct hy_ws_server_config *cfg, struct hy_ws_server **out)
{
    struct hy_addr a;
    if (!cfg->loop || !cfg->subprotocol || !cfg->subprotocol[0] || !cfg->address ||
        hy_addr_parse(cfg->address, &a, NULL, 0) < 0) {
        hy_log(HY_LOG_ERROR, "ws", "server: invalid config (address \"%s\", subprotocol \"%s\")",
               cfg->address ? cfg->address : "", cfg->subprotocol ? cfg->subprotocol : "");
        return HY_EINVAL;
    }
    if (!cfg->tls_cert || !cfg->tls_key || access(cfg->tls_cert, R_OK) < 0 ||
        access(cfg->tls_key, R_OK) < 0) {
        hy_log(HY_LOG_ERROR, "ws",
               "server %s: cannot read the TLS certificate \"%s\" or key \"%s\"", cfg->address,
               cfg->tls_cert ? cfg->tls_cert : "(none)", cfg->tls_key ? cfg->tls_key : "(none)");
        return HY_EINVAL;
    }
    struct hy_ws_server *s = calloc(1, sizeof(*s));
    if (!s)
        return HY_ENOMEM;
    int rc = hy_ws_ep_init(&s->ep, &cfg->limits, &cfg->cb, cfg->ud, "server");
    if (rc < 0)
        goto out_free;
    s->ep.gate = true;
    /* a server holds thousands of connections: it pings them itself */
    hy_ws_ep_own_pings(&s->ep);
    rc = HY_ENOMEM;
    s->loop = cfg->loop;
    if (!(s->hello_timer = malloc(sizeof(*s->hello_timer))))
        goto out_free;
    uv_timer_init(cfg->loop, s->hello_timer);
    s->hello_timer->data = s;
    if (!(s->keepalive = malloc(sizeof(*s->keepalive))))
        goto out_free;
    uv_timer_init(cfg->loop, s->keepalive);
    s->keepalive->data = s;
    uint64_t tick = s->ep.ping_ms / 4; /* a ping goes out at most a quarter late */
    tick = tick < 100 ? 100 : tick > 1000 ? 1000 : tick;
    uv_timer_start(s->keepalive, on_keepalive, tick, tick);
    s->subprotocol = strdup(cfg->subprotocol);
    if (!s->subprotocol)
        goto out_free;
    s->protocols[0] = (struct lws_protocols){
        .name = s->subprotocol,
        .callback = callback,
        .per_session_data_size = sizeof(struct hy_ws_conn),
        .rx_buffer_size = HY_WS_FRAG,
    };
    hy_ws_log_init();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {cfg->loop};
    info.foreign_loops = loops;
    /* crashes must crash (and reach ASan), not spin in lws' handler */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info.port = CONTEXT_PORT_NO_LISTEN;
    rc = HY_EINVAL;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        hy_log(HY_LOG_ERROR, "ws", "server: cannot create the libwebsockets context");
        goto out_free;
    }
    struct lws_context_creation_info v;
    memset(&v, 0, sizeof(v));
    v.vhost_name = "ws";
    v.port = a.port;
    v.iface = a.host[0] ? a.host : NULL;
    v.protocols = s->protocols;
    v.user = s;
    v.ssl_cert_filepath = cfg->tls_cert;
    v.ssl_private_key_filepath = cfg->tls_key;
    v.alpn = "http/1.1"; /* websockets over HTTP/1.1 only */
    v.timeout_secs = HY_WS_HANDSHAKE_SEC;
    v.retry_and_idle_policy = &s->ep.policy;
    /* lws would give this server vhost a client SSL_CTX too, loaded with
     * the system CAs, which it may later fail to free: hand it ours */
    bool failed;
    s->client_ctx = hy_ws_tls_client_ctx(NULL, &failed);
    v.provided_client_ssl_ctx = s->client_ctx;
    /* lws enables TLS on a vhost only with this option on it too */
    v.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (a.kind != HY_ADDR_IPV6)
        v.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    s->vhost = lws_create_vhost(s->ctx, &v);
    if (!s->vhost) {
        hy_log(HY_LOG_ERROR, "ws",
               "server: cannot listen on %s (address in use, or a bad TLS certificate or key)",
               cfg->address);
        goto out_free;
    }
    hy_log(HY_LOG_INFO, "ws", "server: listening on %s (wss, subprotocol %s)", cfg->address,
           s->subprotocol);
    *out = s;
    return 0;

out_free:
    hy_ws_server_free(s);
    return rc;
}

int hy_ws_server_port(const struct hy_ws_server *s)
{
    return s && s->vhost ? lws_get_vhost_listen_port(s->vhost) : 0;
}

size_t hy_ws_server_nconns(const struct hy_ws_server *s)
{
    return s ? s->ep.nopen : 0;
}

void hy_ws_server_stats(const struct hy_ws_server *s, struct hy_ws_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!s)
        return;
    out->unauth = s->ep.nunauth;
    out->unauth_refused = s->ep.unauth_refused;
    out->hello_timeouts = s->ep.hello_timeouts;
    out->unauth_too_big = s->ep.unauth_too_big;
}

void hy_ws_server_stop(struct hy_ws_server *s)
{
    if (!s || s->ep.stopping)
        return;
    s->ep.stopping = true;
    if (s->ep.depth > 0) { /* inside our own callback: lws is on the stack */
        s->defer = malloc(sizeof(*s->defer));
        if (s->defer) {
            uv_timer_init(s->loop, s->defer);
            s->defer->data = s;
            uv_timer_start(s->defer, on_defer, 0, 0);
            return;
        }
    }
    do_stop(s);
}

void hy_ws_server_free(struct hy_ws_server *s)
{
    if (!s)
        return;
    s->ep.stopping = true;
    do_stop(s);
    hy_ws_reaper_release(s->reaper); /* frees the context now or after a few iterations */
    hy_ws_tls_ctx_free(s->client_ctx);
    free(s->subprotocol);
    free(s);
}
