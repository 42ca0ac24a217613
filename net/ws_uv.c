/* The reconnecting wss client of net/ws.h without libwebsockets: libuv for
 * the socket and timers, wolfSSL for TLS (the zone CA file only, TLS 1.2 or
 * later, the URL's host checked against the certificate), ws_frame.c for
 * RFC 6455. Data-plane processes (hypha-dp, hypha-ingress) link this
 * instead of ws_client.c so that neither libwebsockets nor OpenSSL is
 * mapped into them (issue 15: the sidecar's memory).
 *
 * One connection at a time per client, one struct hy_ws_conn for its whole
 * life. An attempt: resolve, TCP connect, TLS handshake, upgrade request,
 * response check; then frames. Ciphertext read from the socket is handed
 * to wolfSSL through its I/O callbacks; what wolfSSL writes is copied into
 * a uv_write request at once, so its writes never block and the bytes
 * queued in the kernel's direction are counted (wq) to pace the sender.
 *
 * Frames and the connection API are in ws_uv_conn.c. Server side
 * (hy_ws_server_*) is not here: the control planes keep
 * libwebsockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "error.h"
#include "log.h"
#include "wire.h"
#include "ws.h"
#include "ws_frame.h"
#include "ws_uv_int.h"
#include "ws_url.h"
#include "poison.h"

void hy_wsu_on_timer(uv_timer_t *t);

uint64_t hy_wsu_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

void hy_wsu_random(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* never seen: a fixed fallback would make masks predictable */
            hy_log(HY_LOG_ERROR, "ws", "getrandom failed: %s", strerror(errno));
            abort();
        }
        b += r;
        n -= (size_t)r;
    }
}

/* ---- backoff ---- */

static unsigned next_delay(struct hy_ws_client *cl)
{
    uint64_t base = cl->bo.initial_ms;
    for (unsigned i = 0; i < cl->attempt && base < cl->bo.max_ms; i++)
        base *= 2;
    if (base > cl->bo.max_ms)
        base = cl->bo.max_ms;
    uint32_t r;
    hy_wsu_random(&r, sizeof(r));
    double u = (double)r / 4294967295.0;
    double f = 1.0 + (double)cl->bo.jitter_pct / 100.0 * (2.0 * u - 1.0);
    if (cl->attempt < 64)
        cl->attempt++;
    return (unsigned)((double)base * f + 0.5);
}

static void schedule_retry(struct hy_ws_client *cl)
{
    if (cl->stopping || !cl->timer)
        return;
    cl->last_delay_ms = next_delay(cl);
    hy_log(HY_LOG_INFO, "ws", "client: reconnecting to %s in %u ms", cl->name, cl->last_delay_ms);
    uv_update_time(cl->loop);
    uv_timer_start(cl->timer, hy_wsu_on_timer, cl->last_delay_ms, 0);
}

/* ---- socket ---- */

static void sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct hy_ws_client *cl = w->s->cl;
    size_t len = w->len;
    free(w);
    if (!cl)
        return;
    cl->wq -= len;
    if (status < 0) {
        hy_wsu_teardown(cl, "connection lost");
        return;
    }
    hy_wsu_pump(cl);
}

/* Hands bytes to the socket: what it takes now, the rest in a request. */
static int sock_write(struct hy_ws_client *cl, const char *data, size_t len)
{
    if (!cl->sock)
        return -1;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = cl->wq ? UV_EAGAIN : uv_try_write((uv_stream_t *)&cl->sock->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0)
        return -1;
    if ((size_t)n == len)
        return 0;
    struct wreq *w = malloc(sizeof(*w) + len - (size_t)n);
    if (!w)
        return -1;
    w->s = cl->sock;
    w->len = len - (size_t)n;
    memcpy(w->data, data + n, w->len);
    b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&cl->sock->tcp, &b, 1, write_done) < 0) {
        free(w);
        return -1;
    }
    cl->wq += w->len;
    return 0;
}

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct hy_ws_client *cl = ctx;
    if (!cl->in_len)
        return cl->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = (size_t)sz < cl->in_len ? (size_t)sz : cl->in_len;
    memcpy(buf, cl->in, n);
    cl->in += n;
    cl->in_len -= n;
    return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    return sock_write(ctx, buf, (size_t)sz) == 0 ? sz : WOLFSSL_CBIO_ERR_GENERAL;
}

/* ---- reporting ---- */

static void call_close(struct hy_ws_client *cl, int code, const char *reason)
{
    if (!cl->cb.on_close)
        return;
    cl->depth++;
    cl->cb.on_close(cl->ud, &cl->conn, code, reason);
    cl->depth--;
}

/* Ends the attempt or connection: frees its socket and TLS, reports it
 * (on_close) and schedules the next attempt. why: the reason when no close
 * frame was exchanged. */
void hy_wsu_teardown(struct hy_ws_client *cl, const char *why)
{
    struct hy_ws_conn *c = &cl->conn;
    enum state was = c->state;
    if (was == ST_IDLE)
        return;
    if (cl->ssl) {
        wolfSSL_free(cl->ssl);
        cl->ssl = NULL;
    }
    if (cl->sock) {
        cl->sock->cl = NULL;
        uv_close((uv_handle_t *)&cl->sock->tcp, sock_closed);
        cl->sock = NULL;
    }
    if (cl->res) {
        cl->res->cl = NULL;
        uv_cancel((uv_req_t *)&cl->res->req);
        cl->res = NULL;
    }
    if (cl->tick)
        uv_timer_stop(cl->tick);
    if (cl->timer && !cl->stopping) /* stopping: it may hold the deferred stop */
        uv_timer_stop(cl->timer);
    cl->wq = 0;
    cl->in_len = 0;
    free(cl->hs);
    cl->hs = NULL;
    cl->hs_len = 0;
    hy_wsf_parser_fini(&cl->parser);
    hy_wsu_drop_queue(c);
    c->state = ST_IDLE;
    if (was == ST_CONNECTING) {
        hy_log(HY_LOG_WARN, "ws", "client: cannot connect to %s: %s", cl->name, why);
        call_close(cl, HY_WS_CLOSE_ABNORMAL, why);
    } else {
        int code = HY_WS_CLOSE_ABNORMAL;
        char reason[HY_WS_REASON_MAX + 1];
        if (c->close_sent || c->close_recv) {
            code = c->close_code;
            snprintf(reason, sizeof(reason), "%s", c->close_reason);
        } else {
            snprintf(reason, sizeof(reason), "%s", why);
        }
        hy_log(HY_LOG_INFO, "ws", "client: connection with %s closed: %d%s%s (%s)", c->peer, code,
               reason[0] ? " " : "", reason,
               c->close_sent   ? "by us"
               : c->close_recv ? "by the peer"
                               : "no close frame");
        if (hy_wsu_now_ms() - cl->opened_ms >= (uint64_t)cl->bo.reset_sec * 1000u)
            cl->attempt = 0; /* it was stable: start the backoff over */
        call_close(cl, code, reason);
    }
    schedule_retry(cl);
}

static void tls_error(struct hy_ws_client *cl, int err, char *out, size_t size)
{
    char s[80];
    wolfSSL_ERR_error_string_n((unsigned long)err, s, sizeof(s));
    if (cl->verify_failed || err == ASN_NO_SIGNER_E || err == DOMAIN_NAME_MISMATCH ||
        err == ASN_AFTER_DATE_E || err == ASN_BEFORE_DATE_E || err == ASN_SIG_CONFIRM_E ||
        err == IPADDR_MISMATCH)
        snprintf(out, size, "TLS: certificate verify failed: %s", cl->tls_why[0] ? cl->tls_why : s);
    else
        snprintf(out, size, "TLS handshake failed (%s)", s);
}

static void send_upgrade(struct hy_ws_client *cl)
{
    uint8_t rnd[16];
    hy_wsu_random(rnd, sizeof(rnd));
    hy_wsf_key(rnd, cl->key);
    char req[1024];
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: %s\r\nOrigin: %s\r\n\r\n",
                 cl->url.path, cl->url.hostport, cl->key, cl->xctx->subprotocol, cl->url.hostport);
    cl->hs = malloc(HY_WSF_RESPONSE_MAX);
    if (n < 0 || (size_t)n >= sizeof(req) || !cl->hs) {
        hy_wsu_teardown(cl, "cannot make the upgrade request (path too long or out of memory)");
        return;
    }
    cl->phase = PH_UPGRADE;
    if (wolfSSL_write(cl->ssl, req, n) != n)
        hy_wsu_teardown(cl, "connection lost while sending the websocket upgrade request");
}

/* Moves TLS on with what has arrived: the handshake, then reading. */
static void tls_step(struct hy_ws_client *cl)
{
    if (cl->phase == PH_TLS) {
        int r = wolfSSL_connect(cl->ssl);
        if (r != WOLFSSL_SUCCESS) {
            int err = wolfSSL_get_error(cl->ssl, r);
            if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
                if (cl->eof)
                    hy_wsu_teardown(cl, "TLS handshake failed (the server closed the connection)");
                return;
            }
            char why[200];
            tls_error(cl, err, why, sizeof(why));
            hy_wsu_teardown(cl, why);
            return;
        }
        send_upgrade(cl);
        if (!cl->ssl)
            return;
    }
    static _Thread_local uint8_t plain[HY_WSU_RD_SIZE];
    for (;;) {
        int r = wolfSSL_read(cl->ssl, plain, (int)sizeof(plain));
        if (r > 0) {
            if (!hy_wsu_plain(cl, plain, (size_t)r))
                return;
            continue;
        }
        int err = wolfSSL_get_error(cl->ssl, r);
        if (err == WOLFSSL_ERROR_WANT_READ && !cl->eof)
            break;
        const char *why = cl->phase == PH_UPGRADE
                              ? "the server closed the connection during the websocket upgrade"
                              : "connection lost";
        char msg[200];
        if (cl->phase == PH_UPGRADE) {
            snprintf(msg, sizeof(msg), "%s; does it speak subprotocol %s?", why,
                     cl->xctx->subprotocol);
            why = msg;
        }
        hy_wsu_teardown(cl, why);
        return;
    }
    hy_wsu_pump(cl);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static _Thread_local char rd[HY_WSU_RD_SIZE];
    *buf = uv_buf_init(rd, sizeof(rd));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sock *s = st->data;
    struct hy_ws_client *cl = s->cl;
    if (!cl || n == 0)
        return;
    if (n < 0) {
        cl->eof = true;
        uv_read_stop(st);
    } else {
        cl->in = (const uint8_t *)buf->base;
        cl->in_len = (size_t)n;
    }
    tls_step(cl);
    if (cl->sock == s)
        cl->in_len = 0; /* wolfSSL keeps what it took; nothing else is left */
}

static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    if (preverify)
        return 1;
    WOLFSSL *ssl =
        wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
    struct hy_ws_client *cl = ssl ? wolfSSL_GetIOReadCtx(ssl) : NULL;
    if (cl) {
        cl->verify_failed = true;
        int e = wolfSSL_X509_STORE_CTX_get_error(store);
        snprintf(cl->tls_why, sizeof(cl->tls_why), "%s", wolfSSL_X509_verify_cert_error_string(e));
    }
    return 0;
}

static void connected(uv_connect_t *req, int status)
{
    struct sock *s = req->data;
    struct hy_ws_client *cl = s->cl;
    if (!cl)
        return;
    if (status < 0) {
        hy_wsu_teardown(cl, "connection refused or unreachable");
        return;
    }
    cl->phase = PH_TLS;
    cl->ssl = wolfSSL_new(cl->xctx->ssl_ctx);
    if (!cl->ssl) {
        hy_wsu_teardown(cl, "TLS: out of memory");
        return;
    }
    wolfSSL_SetIOReadCtx(cl->ssl, cl);
    wolfSSL_SetIOWriteCtx(cl->ssl, cl);
    if (!cl->xctx->skip_verify &&
        wolfSSL_check_domain_name(cl->ssl, cl->url.host) != WOLFSSL_SUCCESS) {
        hy_wsu_teardown(cl, "TLS: cannot set the name to verify");
        return;
    }
    if (!cl->url.host_is_ip)
        (void)wolfSSL_UseSNI(cl->ssl, WOLFSSL_SNI_HOST_NAME, cl->url.host,
                             (unsigned short)strlen(cl->url.host));
    char alpn[] = "http/1.1";
    (void)wolfSSL_UseALPN(cl->ssl, alpn, sizeof(alpn) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    uv_tcp_nodelay(&s->tcp, 1);
    if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) < 0) {
        hy_wsu_teardown(cl, "connection lost");
        return;
    }
    tls_step(cl);
}

static void start_tcp(struct hy_ws_client *cl, const struct sockaddr *sa)
{
    struct sock *s = calloc(1, sizeof(*s));
    if (!s) {
        hy_wsu_teardown(cl, "out of memory");
        return;
    }
    uv_tcp_init(cl->loop, &s->tcp);
    s->tcp.data = s;
    s->connect.data = s;
    s->cl = cl;
    cl->sock = s;
    cl->phase = PH_TCP;
    if (uv_tcp_connect(&s->connect, &s->tcp, sa, connected) < 0)
        hy_wsu_teardown(cl, "connection refused or unreachable");
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct resolve *r = (struct resolve *)req;
    struct hy_ws_client *cl = r->cl;
    free(r);
    if (cl)
        cl->res = NULL;
    if (cl && (status < 0 || !ai)) {
        char why[200];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", cl->url.host, uv_strerror(status));
        hy_wsu_teardown(cl, why);
    } else if (cl) {
        start_tcp(cl, ai->ai_addr);
    }
    uv_freeaddrinfo(ai);
}

static void do_connect(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    if (cl->stopping || c->state != ST_IDLE)
        return;
    if (cl->xctx->skip_verify)
        hy_log(HY_LOG_WARN, "ws", "TLS verification of %s is disabled", cl->name);
    c->state = ST_CONNECTING;
    cl->phase = PH_RESOLVE;
    cl->eof = cl->verify_failed = false;
    cl->tls_why[0] = '\0';
    cl->attempt_ms = hy_wsu_now_ms();
    uv_update_time(cl->loop);
    uv_timer_start(cl->timer, hy_wsu_on_timer, cl->attempt_timeout_ms, 0); /* the watchdog */
    if (cl->url.host_is_ip) { /* no resolver thread (and its malloc arena) for an address */
        struct sockaddr_storage ss;
        int rc = strchr(cl->url.host, ':')
                     ? uv_ip6_addr(cl->url.host, cl->url.port, (struct sockaddr_in6 *)&ss)
                     : uv_ip4_addr(cl->url.host, cl->url.port, (struct sockaddr_in *)&ss);
        if (rc < 0)
            hy_wsu_teardown(cl, "cannot use the server's address");
        else
            start_tcp(cl, (const struct sockaddr *)&ss);
        return;
    }
    struct resolve *r = calloc(1, sizeof(*r));
    if (!r) {
        hy_wsu_teardown(cl, "out of memory");
        return;
    }
    r->cl = cl;
    cl->res = r;
    char port[8];
    snprintf(port, sizeof(port), "%d", cl->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(cl->loop, &r->req, resolved, cl->url.host, port, &hints);
    if (rc < 0) {
        cl->res = NULL;
        free(r);
        hy_wsu_teardown(cl, "cannot start resolving the server's name");
    }
}

/* Keepalive and close deadlines of an open connection (cl->tick), and
 * writes asked for inside a callback. */
static void tick(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    uint64_t now = hy_wsu_now_ms();
    if (c->state == ST_CLOSING) {
        if (cl->close_deadline_ms && now >= cl->close_deadline_ms)
            hy_wsu_teardown(cl, "closed");
        else
            hy_wsu_pump(cl);
        return;
    }
    if (c->state != ST_OPEN)
        return;
    uint64_t silent = now - cl->last_rx_ms;
    if (silent >= cl->idle_ms) {
        char why[64];
        snprintf(why, sizeof(why), "no pong for %u s", (unsigned)(cl->idle_ms / 1000));
        hy_wsu_teardown(cl, why);
        return;
    }
    if (silent >= cl->ping_ms && !cl->ping_sent)
        cl->want_ping = cl->ping_sent = true;
    hy_wsu_pump(cl);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void do_stop(struct hy_ws_client *cl)
{
    if (cl->stopped)
        return;
    cl->stopped = true;
    if (cl->conn.state == ST_CONNECTING)
        hy_wsu_teardown(cl, "client stopping");
    else if (cl->conn.state != ST_IDLE)
        hy_wsu_teardown(cl, "client stopping");
    if (cl->timer) {
        uv_timer_stop(cl->timer);
        uv_close((uv_handle_t *)cl->timer, free_handle);
        cl->timer = NULL;
    }
    if (cl->tick) {
        uv_timer_stop(cl->tick);
        uv_close((uv_handle_t *)cl->tick, free_handle);
        cl->tick = NULL;
    }
}

void hy_wsu_on_timer(uv_timer_t *t)
{
    struct hy_ws_client *cl = t->data;
    if (t == cl->tick) {
        tick(cl);
        return;
    }
    if (cl->stopping) {
        do_stop(cl); /* a stop asked for inside a callback */
    } else if (cl->conn.state == ST_CONNECTING) {
        char why[200];
        snprintf(why, sizeof(why), "no answer within %.1f s (%s)",
                 (double)(hy_wsu_now_ms() - cl->attempt_ms) / 1000.0,
                 cl->phase == PH_UPGRADE ? "after the websocket upgrade request"
                 : cl->phase == PH_TLS   ? "in the TLS handshake"
                                         : "connecting");
        hy_wsu_teardown(cl, why);
    } else if (cl->conn.state == ST_CLOSING) {
        hy_wsu_teardown(cl, "closed"); /* hy_ws_close's grace ran out */
    } else {
        do_connect(cl);
    }
}

/* ---- TLS context ---- */

static int ctx_init(struct hy_ws_client_ctx *x, uv_loop_t *loop, const char *ca_file,
                    bool skip_verify, const char *what)
{
    x->loop = loop;
    x->skip_verify = skip_verify;
    if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: cannot initialise wolfSSL", what);
        return HY_EINVAL;
    }
    x->users = 1; /* the wolfSSL_Init above: ctx_fini's wolfSSL_Cleanup */
    x->ssl_ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (!x->ssl_ctx || wolfSSL_CTX_SetMinVersion(x->ssl_ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS)
        return HY_ENOMEM;
    if (ca_file &&
        wolfSSL_CTX_load_verify_locations(x->ssl_ctx, ca_file, NULL) != WOLFSSL_SUCCESS) {
        hy_log(HY_LOG_ERROR, "ws",
               "client %s: cannot load the CA file \"%s\" (not PEM certificates?)", what, ca_file);
        return HY_EINVAL;
    }
    wolfSSL_CTX_set_verify(x->ssl_ctx, skip_verify ? WOLFSSL_VERIFY_NONE : WOLFSSL_VERIFY_PEER,
                           skip_verify ? NULL : verify_cb);
    wolfSSL_CTX_SetIORecv(x->ssl_ctx, io_recv);
    wolfSSL_CTX_SetIOSend(x->ssl_ctx, io_send);
    return 0;
}

static void ctx_fini(struct hy_ws_client_ctx *x)
{
    if (x->ssl_ctx)
        wolfSSL_CTX_free(x->ssl_ctx);
    x->ssl_ctx = NULL;
    if (x->users)
        wolfSSL_Cleanup();
    x->users = 0;
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
    int rc = ctx_init(x, loop, ca_file, ca_file == NULL, "(shared context)");
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

/* ---- client ---- */

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
    cl->conn.cl = cl;
    cl->stopping = true; /* until set up: a failed new frees quietly */
    int rc = parse_url(cl, cfg->url);
    if (rc == HY_EINVAL)
        hy_log(HY_LOG_ERROR, "ws", "client: invalid URL \"%s\" (expected wss://host:port/path)",
               cfg->url ? cfg->url : "");
    if (rc < 0)
        goto out_free;
    rc = HY_EINVAL;
    const struct hy_ws_client_ctx *sh = cfg->shared;
    const char *subp = sh && !cfg->subprotocol ? sh->subprotocol : cfg->subprotocol;
    if (!cfg->loop || !subp || !subp[0] || strpbrk(subp, "\r\n")) {
        hy_log(HY_LOG_ERROR, "ws", "client %s: a loop and a subprotocol are required", cfg->url);
        goto out_free;
    }
    if (sh && (sh->loop != cfg->loop || strcmp(sh->subprotocol, subp) != 0)) {
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
    const struct hy_ws_limits *lim = &cfg->limits;
    cl->max_message = lim->max_message ? lim->max_message : HY_WS_MAX_MESSAGE_DEFAULT;
    cl->max_queue = lim->max_queue ? lim->max_queue : 4 * cl->max_message + (1u << 20);
    unsigned ping = lim->ping_sec ? lim->ping_sec : 30;
    unsigned idle = lim->idle_sec ? lim->idle_sec : 3 * ping;
    if (idle <= ping || idle > 65535) {
        hy_log(HY_LOG_ERROR, "ws",
               "client: idle_sec (%u) must be more than ping_sec (%u) and at most 65535", idle,
               ping);
        goto out_free;
    }
    cl->ping_ms = (uint64_t)ping * 1000u;
    cl->idle_ms = (uint64_t)idle * 1000u;
    cl->attempt_timeout_ms =
        cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : HY_WS_ATTEMPT_TIMEOUT_MS_DEFAULT;
    cl->cb = cfg->cb;
    cl->ud = cfg->ud;
    cl->loop = cfg->loop;
    rc = HY_ENOMEM;
    cl->name = strdup(cfg->name ? cfg->name : cfg->url);
    if (!cl->name)
        goto out_free;
    if (sh) {
        cl->xctx = cfg->shared;
    } else {
        cl->xctx = &cl->own;
        if (!(cl->own.subprotocol = strdup(subp)))
            goto out_free;
        if ((rc = ctx_init(&cl->own, cfg->loop, cfg->ca_file, cfg->skip_verify, cfg->url)) < 0)
            goto out_free;
    }
    rc = HY_ENOMEM;
    cl->timer = malloc(sizeof(*cl->timer));
    cl->tick = malloc(sizeof(*cl->tick));
    if (!cl->timer || !cl->tick) {
        free(cl->timer);
        free(cl->tick);
        cl->timer = cl->tick = NULL;
        goto out_free;
    }
    uv_timer_init(cfg->loop, cl->timer);
    uv_timer_init(cfg->loop, cl->tick);
    cl->timer->data = cl->tick->data = cl;
    cl->stopping = false;
    uv_timer_start(cl->timer, hy_wsu_on_timer, 0, 0);
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
    return c->conn.state == ST_OPEN;
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
    if (c->stopping || !c->timer)
        return -ESHUTDOWN;
    if (c->conn.state != ST_IDLE)
        return -EALREADY;
    uv_timer_start(c->timer, hy_wsu_on_timer, 0, 0);
    return 0;
}

void hy_ws_client_stop(struct hy_ws_client *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = true;
    if (c->depth > 0 && c->timer) /* inside our own callback: a parse may be on the stack */
        uv_timer_start(c->timer, hy_wsu_on_timer, 0, 0);
    else
        do_stop(c);
}

void hy_ws_client_free(struct hy_ws_client *c)
{
    if (!c)
        return;
    c->stopping = true;
    do_stop(c);
    ctx_fini(&c->own); /* nothing when shared */
    hy_wsu_drop_queue(&c->conn);
    hy_wsf_parser_fini(&c->parser);
    free(c->hs);
    hy_ws_url_fini(&c->url);
    free(c->name);
    free(c);
}
