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
 * Server side (hy_ws_server_*) is not here: the control planes keep
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
#include "poison.h"

#define FRAG (64u << 10)     /* bytes of payload per data frame sent */
#define WQ_HIGH (128u << 10) /* stop framing while this much waits for the socket */
#define CLOSE_GRACE_MS 10000 /* hy_ws_close: queue drained and the peer's answer within */
#define CLOSE_WAIT_MS 5000   /* our close frame sent: the peer's answer within */
#define RD_SIZE (16u << 10)

struct hy_ws_client_ctx {
    uv_loop_t *loop;
    char *subprotocol;
    WOLFSSL_CTX *ssl_ctx;
    bool skip_verify;
    size_t users;
};

struct msg {
    struct msg *next;
    size_t len, off;
    uint8_t buf[];
};

enum state { ST_IDLE, ST_CONNECTING, ST_OPEN, ST_CLOSING };
enum phase { PH_RESOLVE, PH_TCP, PH_TLS, PH_UPGRADE, PH_WS };

struct hy_ws_conn {
    struct hy_ws_client *cl;
    enum state state;
    void *user;
    char peer[96];
    struct msg *head, *tail;
    size_t queued;
    bool close_pending, close_sent, close_recv;
    int close_code;
    char close_reason[HY_WS_REASON_MAX + 1];
};

/* The socket of one attempt; outlives the client while libuv closes it. */
struct sock {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct hy_ws_client *cl; /* NULL once the attempt is torn down */
};

struct wreq {
    uv_write_t req;
    struct sock *s;
    size_t len;
    char data[];
};

struct resolve {
    uv_getaddrinfo_t req;
    struct hy_ws_client *cl; /* NULL once given up */
};

struct hy_ws_client {
    struct hy_ws_conn conn;
    uv_loop_t *loop;
    struct hy_ws_callbacks cb;
    void *ud;
    size_t max_message, max_queue;
    uint64_t ping_ms, idle_ms;
    struct hy_ws_backoff bo;
    unsigned attempt_timeout_ms;
    struct hy_ws_client_ctx own, *xctx;
    char *host, *hostport, *path, *name;
    int port;
    bool host_is_ip;
    bool stopping, stopped;
    int depth;         /* user callbacks running */
    uv_timer_t *timer; /* next attempt, an attempt's watchdog, a deferred stop */
    uv_timer_t *tick;  /* keepalive and close deadlines while connected */
    unsigned attempt, last_delay_ms;
    uint64_t opened_ms, attempt_ms, last_rx_ms, close_deadline_ms;
    /* the attempt or connection under way */
    enum phase phase;
    struct sock *sock;
    struct resolve *res;
    WOLFSSL *ssl;
    const uint8_t *in; /* ciphertext not yet taken by wolfSSL */
    size_t in_len;
    bool eof;
    size_t wq; /* bytes in uv_write requests not yet done */
    char key[25];
    char *hs; /* the upgrade response so far */
    size_t hs_len;
    struct hy_wsf_parser parser;
    bool want_ping, ping_sent, want_pong;
    uint8_t pong[HY_WSF_CONTROL_MAX];
    size_t pong_len;
    bool verify_failed;
    char tls_why[128];
};

static void on_timer(uv_timer_t *t);
static void pump(struct hy_ws_client *cl);
static void teardown(struct hy_ws_client *cl, const char *why);

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void random_bytes(void *p, size_t n)
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

static void set_reason(struct hy_ws_conn *c, const void *p, size_t n)
{
    if (n > HY_WS_REASON_MAX)
        n = HY_WS_REASON_MAX;
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        c->close_reason[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    c->close_reason[n] = '\0';
}

static void drop_queue(struct hy_ws_conn *c)
{
    while (c->head) {
        struct msg *m = c->head;
        c->head = m->next;
        free(m);
    }
    c->tail = NULL;
    c->queued = 0;
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
    random_bytes(&r, sizeof(r));
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
    uv_timer_start(cl->timer, on_timer, cl->last_delay_ms, 0);
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
        teardown(cl, "connection lost");
        return;
    }
    pump(cl);
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
static void teardown(struct hy_ws_client *cl, const char *why)
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
    drop_queue(c);
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
        if (now_ms() - cl->opened_ms >= (uint64_t)cl->bo.reset_sec * 1000u)
            cl->attempt = 0; /* it was stable: start the backoff over */
        call_close(cl, code, reason);
    }
    schedule_retry(cl);
}

/* ---- frames out ---- */

/* Writes one frame through TLS: header, then payload masked (a client's
 * frames always are). */
static int write_frame(struct hy_ws_client *cl, int opcode, bool fin, const uint8_t *data,
                       size_t len)
{
    static _Thread_local uint8_t out[HY_WSF_HEADER_MAX + FRAG];
    uint8_t mask[4];
    random_bytes(mask, sizeof(mask));
    size_t h = hy_wsf_header(out, opcode, fin, len, mask);
    if (len)
        memcpy(out + h, data, len);
    hy_wsf_mask(out + h, len, mask, 0);
    int n = (int)(h + len);
    return wolfSSL_write(cl->ssl, out, n) == n ? 0 : -1;
}

static void send_close_frame(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    uint8_t p[2 + HY_WS_REASON_MAX];
    size_t rl = strlen(c->close_reason);
    p[0] = (uint8_t)(c->close_code >> 8);
    p[1] = (uint8_t)c->close_code;
    memcpy(p + 2, c->close_reason, rl);
    c->close_sent = true;
    if (write_frame(cl, HY_WSF_CLOSE, true, p, 2 + rl) < 0) {
        teardown(cl, "write failed");
        return;
    }
    cl->close_deadline_ms = now_ms() + CLOSE_WAIT_MS;
}

/* Writes what is due while the socket keeps up: a pong, a ping (between
 * messages), the queue one fragment at a time, then a pending close. */
static void pump(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    while (cl->ssl && cl->phase == PH_WS && cl->wq < WQ_HIGH &&
           (c->state == ST_OPEN || c->state == ST_CLOSING) && !c->close_sent) {
        struct msg *m = c->head;
        if (cl->want_pong) {
            cl->want_pong = false;
            if (write_frame(cl, HY_WSF_PONG, true, cl->pong, cl->pong_len) < 0)
                goto fail;
        } else if (cl->want_ping && (!m || m->off == 0)) {
            uint64_t t = now_ms();
            cl->want_ping = false;
            if (write_frame(cl, HY_WSF_PING, true, (const uint8_t *)&t, sizeof(t)) < 0)
                goto fail;
        } else if (m && !(c->close_recv)) {
            size_t n = m->len - m->off;
            if (n > FRAG)
                n = FRAG;
            bool start = m->off == 0, end = m->off + n == m->len;
            if (write_frame(cl, start ? HY_WSF_BINARY : HY_WSF_CONT, end, m->buf + m->off, n) < 0)
                goto fail;
            m->off += n;
            c->queued -= n;
            if (end) {
                c->head = m->next;
                if (!c->head)
                    c->tail = NULL;
                free(m);
            }
        } else if (c->close_pending || c->close_recv) {
            send_close_frame(cl);
            return;
        } else {
            return;
        }
    }
    return;
fail:
    hy_log(HY_LOG_WARN, "ws", "client: write to %s failed", c->peer);
    teardown(cl, "connection lost");
}

/* ---- frames in ---- */

static int on_frame(void *ud, int opcode, const uint8_t *data, size_t len)
{
    struct hy_ws_client *cl = ud;
    struct hy_ws_conn *c = &cl->conn;
    cl->last_rx_ms = now_ms();
    cl->ping_sent = false;
    switch (opcode) {
    case HY_WSF_BINARY:
        if (c->state != ST_OPEN || !cl->cb.on_message)
            return 0; /* closing: dropped */
        cl->depth++;
        cl->cb.on_message(cl->ud, c, data, len);
        cl->depth--;
        return c->state == ST_OPEN ? 0 : 1;
    case HY_WSF_PING:
        memcpy(cl->pong, data, len);
        cl->pong_len = len;
        cl->want_pong = true;
        return 0;
    case HY_WSF_PONG:
        return 0;
    default:               /* close */
        if (c->close_sent) /* the answer to ours: done */
            return 1;
        c->close_recv = true;
        c->state = ST_CLOSING;
        if (len >= 2) {
            c->close_code = data[0] << 8 | data[1];
            set_reason(c, data + 2, len - 2);
        } else {
            c->close_code = 1005; /* RFC 6455 7.1.5: no status code was present */
            c->close_reason[0] = '\0';
        }
        return 1;
    }
}

/* Closes with a frame of ours (a protocol error, a limit): the peer gets
 * code and why, then the socket closes. */
static void fail(struct hy_ws_client *cl, int code, const char *why)
{
    struct hy_ws_conn *c = &cl->conn;
    hy_log(HY_LOG_WARN, "ws", "client: closing the connection with %s: %d %s", c->peer, code, why);
    c->close_code = code;
    set_reason(c, why, strlen(why));
    c->state = ST_CLOSING;
    if (cl->ssl && !c->close_sent) {
        uint8_t p[2 + HY_WS_REASON_MAX];
        size_t rl = strlen(c->close_reason);
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        memcpy(p + 2, c->close_reason, rl);
        (void)write_frame(cl, HY_WSF_CLOSE, true, p, 2 + rl);
    }
    c->close_sent = true;
    teardown(cl, why);
}

static void on_open(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    if (cl->timer)
        uv_timer_stop(cl->timer); /* the watchdog */
    cl->phase = PH_WS;
    c->state = ST_OPEN;
    c->close_pending = c->close_sent = c->close_recv = false;
    c->close_code = 0;
    c->close_reason[0] = '\0';
    cl->opened_ms = cl->last_rx_ms = now_ms();
    cl->want_ping = cl->ping_sent = cl->want_pong = false;
    snprintf(c->peer, sizeof(c->peer), "%s", cl->hostport);
    hy_wsf_parser_init(&cl->parser, cl->max_message, false);
    uint64_t every = cl->ping_ms < 1000 ? cl->ping_ms : 1000;
    uv_timer_start(cl->tick, on_timer, every, every);
    hy_log(HY_LOG_INFO, "ws", "client: connection with %s open", c->peer);
    if (cl->cb.on_open) {
        cl->depth++;
        cl->cb.on_open(cl->ud, c, cl->hostport);
        cl->depth--;
    }
}

/* Plaintext from the server: the upgrade response, then frames. Returns
 * false once the connection is torn down. */
static bool on_plain(struct hy_ws_client *cl, const uint8_t *data, size_t len)
{
    struct hy_ws_conn *c = &cl->conn;
    if (cl->phase == PH_UPGRADE) {
        size_t room = HY_WSF_RESPONSE_MAX - cl->hs_len, n = len < room ? len : room;
        memcpy(cl->hs + cl->hs_len, data, n);
        cl->hs_len += n;
        char why[160];
        long head =
            hy_wsf_response(cl->hs, cl->hs_len, cl->key, cl->xctx->subprotocol, why, sizeof(why));
        if (head == 0)
            return true;
        if (head < 0) {
            char msg[220];
            snprintf(msg, sizeof(msg), "websocket upgrade refused: %s", why);
            teardown(cl, msg);
            return false;
        }
        /* frames may follow the head in the same read */
        size_t rest_hs = cl->hs_len - (size_t)head; /* of what was copied */
        const uint8_t *rest = data + (n - rest_hs);
        size_t rest_len = len - (n - rest_hs);
        free(cl->hs);
        cl->hs = NULL;
        cl->hs_len = 0;
        on_open(cl);
        if (c->state != ST_OPEN && c->state != ST_CLOSING)
            return false;
        data = rest;
        len = rest_len;
    }
    if (!len || cl->phase != PH_WS)
        return true;
    int rc = hy_wsf_feed(&cl->parser, data, len, on_frame, cl);
    if (c->state == ST_IDLE)
        return false; /* torn down inside a callback */
    if (rc < 0) {
        char why[HY_WS_REASON_MAX + 1];
        if (cl->parser.err_code == HY_WS_CLOSE_TOO_BIG)
            snprintf(why, sizeof(why), "message larger than the limit of %zu bytes",
                     cl->max_message);
        else
            snprintf(why, sizeof(why), "%s", cl->parser.err_why);
        fail(cl, cl->parser.err_code, why);
        return false;
    }
    if (c->close_recv) { /* the peer's close: answer it, then the socket goes */
        if (!c->close_sent) {
            uint8_t p[2];
            int code = c->close_code == 1005 ? HY_WS_CLOSE_NORMAL : c->close_code;
            p[0] = (uint8_t)(code >> 8);
            p[1] = (uint8_t)code;
            (void)write_frame(cl, HY_WSF_CLOSE, true, p, 2);
        }
        teardown(cl, "closed by the peer");
        return false;
    }
    if (c->close_sent && rc == 1) { /* the peer answered our close */
        teardown(cl, "closed");
        return false;
    }
    return true;
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
    random_bytes(rnd, sizeof(rnd));
    hy_wsf_key(rnd, cl->key);
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: %s\r\nOrigin: %s\r\n\r\n",
                     cl->path, cl->hostport, cl->key, cl->xctx->subprotocol, cl->hostport);
    cl->hs = malloc(HY_WSF_RESPONSE_MAX);
    if (n < 0 || (size_t)n >= sizeof(req) || !cl->hs) {
        teardown(cl, "cannot make the upgrade request (path too long or out of memory)");
        return;
    }
    cl->phase = PH_UPGRADE;
    if (wolfSSL_write(cl->ssl, req, n) != n)
        teardown(cl, "connection lost while sending the websocket upgrade request");
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
                    teardown(cl, "TLS handshake failed (the server closed the connection)");
                return;
            }
            char why[200];
            tls_error(cl, err, why, sizeof(why));
            teardown(cl, why);
            return;
        }
        send_upgrade(cl);
        if (!cl->ssl)
            return;
    }
    static _Thread_local uint8_t plain[RD_SIZE];
    for (;;) {
        int r = wolfSSL_read(cl->ssl, plain, (int)sizeof(plain));
        if (r > 0) {
            if (!on_plain(cl, plain, (size_t)r))
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
        teardown(cl, why);
        return;
    }
    pump(cl);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static _Thread_local char rd[RD_SIZE];
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
        teardown(cl, "connection refused or unreachable");
        return;
    }
    cl->phase = PH_TLS;
    cl->ssl = wolfSSL_new(cl->xctx->ssl_ctx);
    if (!cl->ssl) {
        teardown(cl, "TLS: out of memory");
        return;
    }
    wolfSSL_SetIOReadCtx(cl->ssl, cl);
    wolfSSL_SetIOWriteCtx(cl->ssl, cl);
    if (!cl->xctx->skip_verify && wolfSSL_check_domain_name(cl->ssl, cl->host) != WOLFSSL_SUCCESS) {
        teardown(cl, "TLS: cannot set the name to verify");
        return;
    }
    if (!cl->host_is_ip)
        (void)wolfSSL_UseSNI(cl->ssl, WOLFSSL_SNI_HOST_NAME, cl->host,
                             (unsigned short)strlen(cl->host));
    char alpn[] = "http/1.1";
    (void)wolfSSL_UseALPN(cl->ssl, alpn, sizeof(alpn) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    uv_tcp_nodelay(&s->tcp, 1);
    if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) < 0) {
        teardown(cl, "connection lost");
        return;
    }
    tls_step(cl);
}

static void start_tcp(struct hy_ws_client *cl, const struct sockaddr *sa)
{
    struct sock *s = calloc(1, sizeof(*s));
    if (!s) {
        teardown(cl, "out of memory");
        return;
    }
    uv_tcp_init(cl->loop, &s->tcp);
    s->tcp.data = s;
    s->connect.data = s;
    s->cl = cl;
    cl->sock = s;
    cl->phase = PH_TCP;
    if (uv_tcp_connect(&s->connect, &s->tcp, sa, connected) < 0)
        teardown(cl, "connection refused or unreachable");
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
        snprintf(why, sizeof(why), "cannot resolve %s: %s", cl->host, uv_strerror(status));
        teardown(cl, why);
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
    cl->attempt_ms = now_ms();
    uv_update_time(cl->loop);
    uv_timer_start(cl->timer, on_timer, cl->attempt_timeout_ms, 0); /* the watchdog */
    if (cl->host_is_ip) { /* no resolver thread (and its malloc arena) for an address */
        struct sockaddr_storage ss;
        int rc = strchr(cl->host, ':') ? uv_ip6_addr(cl->host, cl->port, (struct sockaddr_in6 *)&ss)
                                       : uv_ip4_addr(cl->host, cl->port, (struct sockaddr_in *)&ss);
        if (rc < 0)
            teardown(cl, "cannot use the server's address");
        else
            start_tcp(cl, (const struct sockaddr *)&ss);
        return;
    }
    struct resolve *r = calloc(1, sizeof(*r));
    if (!r) {
        teardown(cl, "out of memory");
        return;
    }
    r->cl = cl;
    cl->res = r;
    char port[8];
    snprintf(port, sizeof(port), "%d", cl->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(cl->loop, &r->req, resolved, cl->host, port, &hints);
    if (rc < 0) {
        cl->res = NULL;
        free(r);
        teardown(cl, "cannot start resolving the server's name");
    }
}

/* Keepalive and close deadlines of an open connection (cl->tick), and
 * writes asked for inside a callback. */
static void tick(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    uint64_t now = now_ms();
    if (c->state == ST_CLOSING) {
        if (cl->close_deadline_ms && now >= cl->close_deadline_ms)
            teardown(cl, "closed");
        else
            pump(cl);
        return;
    }
    if (c->state != ST_OPEN)
        return;
    uint64_t silent = now - cl->last_rx_ms;
    if (silent >= cl->idle_ms) {
        char why[64];
        snprintf(why, sizeof(why), "no pong for %u s", (unsigned)(cl->idle_ms / 1000));
        teardown(cl, why);
        return;
    }
    if (silent >= cl->ping_ms && !cl->ping_sent)
        cl->want_ping = cl->ping_sent = true;
    pump(cl);
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
        teardown(cl, "client stopping");
    else if (cl->conn.state != ST_IDLE)
        teardown(cl, "client stopping");
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

static void on_timer(uv_timer_t *t)
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
                 (double)(now_ms() - cl->attempt_ms) / 1000.0,
                 cl->phase == PH_UPGRADE ? "after the websocket upgrade request"
                 : cl->phase == PH_TLS   ? "in the TLS handshake"
                                         : "connecting");
        teardown(cl, why);
    } else if (cl->conn.state == ST_CLOSING) {
        teardown(cl, "closed"); /* hy_ws_close's grace ran out */
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
    } else if (*end == '?') {
        size_t n = strlen(end) + 2;
        cl->path = malloc(n);
        if (cl->path)
            snprintf(cl->path, n, "/%s", end);
    } else {
        cl->path = strdup("/");
    }
    if (!cl->host || !cl->hostport || !cl->path)
        return HY_ENOMEM;
    for (const char *p = cl->path; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return HY_EINVAL; /* it goes into the request line */
    for (const char *p = cl->host; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '/' || *p == '@')
            return HY_EINVAL;
    unsigned char a6[16];
    cl->host_is_ip =
        inet_pton(AF_INET, cl->host, a6) == 1 || inet_pton(AF_INET6, cl->host, a6) == 1;
    snprintf(cl->hostport, hl, strchr(cl->host, ':') ? "[%s]:%d" : "%s:%d", cl->host, cl->port);
    return 0;
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
    return c->conn.state == ST_OPEN;
}

unsigned hy_ws_client_retry_delay_ms(const struct hy_ws_client *c)
{
    return c->last_delay_ms;
}

int hy_ws_client_reconnect_now(struct hy_ws_client *c)
{
    if (c->stopping || !c->timer)
        return -ESHUTDOWN;
    if (c->conn.state != ST_IDLE)
        return -EALREADY;
    uv_timer_start(c->timer, on_timer, 0, 0);
    return 0;
}

void hy_ws_client_stop(struct hy_ws_client *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = true;
    if (c->depth > 0 && c->timer) /* inside our own callback: a parse may be on the stack */
        uv_timer_start(c->timer, on_timer, 0, 0);
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
    drop_queue(&c->conn);
    hy_wsf_parser_fini(&c->parser);
    free(c->hs);
    free(c->host);
    free(c->hostport);
    free(c->path);
    free(c->name);
    free(c);
}

/* ---- the connection ---- */

int hy_ws_send(struct hy_ws_conn *c, const void *data, size_t len)
{
    if (!c || c->state != ST_OPEN)
        return -ENOTCONN;
    struct hy_ws_client *cl = c->cl;
    if (len > cl->max_queue - c->queued)
        return -ENOBUFS;
    struct msg *m = malloc(sizeof(*m) + len);
    if (!m)
        return HY_ENOMEM;
    m->next = NULL;
    m->len = len;
    m->off = 0;
    if (len)
        memcpy(m->buf, data, len);
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->queued += len;
    if (!cl->depth)
        pump(cl);
    else if (cl->timer) /* inside a callback: written once it returns */
        uv_timer_start(cl->tick, on_timer, 0, cl->ping_ms < 1000 ? cl->ping_ms : 1000);
    return 0;
}

static int ws_sink(void *to, const void *data, size_t len)
{
    return hy_ws_send(to, data, len);
}

int hy_ws_send_msg(struct hy_ws_conn *c, const ProtobufCMessage *m, size_t *len)
{
    return hy_wire_send(m, ws_sink, c, len);
}

int hy_ws_close(struct hy_ws_conn *c, int code, const char *reason)
{
    if (!c || c->state != ST_OPEN)
        return -ENOTCONN;
    struct hy_ws_client *cl = c->cl;
    c->state = ST_CLOSING;
    c->close_pending = true;
    c->close_code = hy_wsf_code_valid(code) ? code : HY_WS_CLOSE_NORMAL;
    if (!reason)
        reason = "";
    set_reason(c, reason, strlen(reason));
    cl->close_deadline_ms = now_ms() + CLOSE_GRACE_MS;
    if (!cl->depth)
        pump(cl);
    else
        uv_timer_start(cl->tick, on_timer, 0, 1000);
    return 0;
}

void hy_ws_conn_authenticated(struct hy_ws_conn *c)
{
    (void)c; /* a client's connection is authenticated from the start */
}

bool hy_ws_conn_is_authenticated(const struct hy_ws_conn *c)
{
    return c != NULL;
}

size_t hy_ws_conn_queued(const struct hy_ws_conn *c)
{
    return c ? c->queued : 0;
}

const char *hy_ws_conn_peer(const struct hy_ws_conn *c)
{
    return c ? c->peer : "";
}

void hy_ws_conn_set_user(struct hy_ws_conn *c, void *user)
{
    c->user = user;
}

void *hy_ws_conn_user(const struct hy_ws_conn *c)
{
    return c->user;
}
