/* The data plane's websocket connection (ws_uv_int.h): frames out (a
 * queue written one fragment at a time while the socket keeps up, pings,
 * pongs, the close handshake), frames in (the upgrade response, then
 * ws_frame.c's parser), and the connection API of net/ws.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "wire.h"
#include "ws_uv_int.h"
#include "poison.h"

void hy_wsu_set_reason(struct hy_ws_conn *c, const void *p, size_t n)
{
    if (n > HY_WS_REASON_MAX)
        n = HY_WS_REASON_MAX;
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        c->close_reason[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    c->close_reason[n] = '\0';
}

void hy_wsu_drop_queue(struct hy_ws_conn *c)
{
    while (c->head) {
        struct msg *m = c->head;
        c->head = m->next;
        free(m);
    }
    c->tail = NULL;
    c->queued = 0;
}

/* ---- frames out ---- */

/* Writes one frame through TLS: header, then payload masked (a client's
 * frames always are). */
static int write_frame(struct hy_ws_client *cl, int opcode, bool fin, const uint8_t *data,
                       size_t len)
{
    static _Thread_local uint8_t out[HY_WSF_HEADER_MAX + HY_WSU_FRAG];
    uint8_t mask[4];
    hy_wsu_random(mask, sizeof(mask));
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
        hy_wsu_teardown(cl, "write failed");
        return;
    }
    cl->close_deadline_ms = hy_wsu_now_ms() + HY_WSU_CLOSE_WAIT_MS;
}

/* Writes what is due while the socket keeps up: a pong, a ping (between
 * messages), the queue one fragment at a time, then a pending close. */
void hy_wsu_pump(struct hy_ws_client *cl)
{
    struct hy_ws_conn *c = &cl->conn;
    while (cl->ssl && cl->phase == PH_WS && cl->wq < HY_WSU_WQ_HIGH &&
           (c->state == ST_OPEN || c->state == ST_CLOSING) && !c->close_sent) {
        struct msg *m = c->head;
        if (cl->want_pong) {
            cl->want_pong = false;
            if (write_frame(cl, HY_WSF_PONG, true, cl->pong, cl->pong_len) < 0)
                goto fail;
        } else if (cl->want_ping && (!m || m->off == 0)) {
            uint64_t t = hy_wsu_now_ms();
            cl->want_ping = false;
            if (write_frame(cl, HY_WSF_PING, true, (const uint8_t *)&t, sizeof(t)) < 0)
                goto fail;
        } else if (m && !(c->close_recv)) {
            size_t n = m->len - m->off;
            if (n > HY_WSU_FRAG)
                n = HY_WSU_FRAG;
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
    hy_wsu_teardown(cl, "connection lost");
}

/* ---- frames in ---- */

static int on_frame(void *ud, int opcode, const uint8_t *data, size_t len)
{
    struct hy_ws_client *cl = ud;
    struct hy_ws_conn *c = &cl->conn;
    cl->last_rx_ms = hy_wsu_now_ms();
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
            hy_wsu_set_reason(c, data + 2, len - 2);
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
    hy_wsu_set_reason(c, why, strlen(why));
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
    hy_wsu_teardown(cl, why);
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
    cl->opened_ms = cl->last_rx_ms = hy_wsu_now_ms();
    cl->want_ping = cl->ping_sent = cl->want_pong = false;
    snprintf(c->peer, sizeof(c->peer), "%s", cl->url.hostport);
    hy_wsf_parser_init(&cl->parser, cl->max_message, false);
    uint64_t every = cl->ping_ms < 1000 ? cl->ping_ms : 1000;
    uv_timer_start(cl->tick, hy_wsu_on_timer, every, every);
    hy_log(HY_LOG_INFO, "ws", "client: connection with %s open", c->peer);
    if (cl->cb.on_open) {
        cl->depth++;
        cl->cb.on_open(cl->ud, c, cl->url.hostport);
        cl->depth--;
    }
}

/* Plaintext from the server: the upgrade response, then frames. Returns
 * false once the connection is torn down. */
bool hy_wsu_plain(struct hy_ws_client *cl, const uint8_t *data, size_t len)
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
            hy_wsu_teardown(cl, msg);
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
        hy_wsu_teardown(cl, "closed by the peer");
        return false;
    }
    if (c->close_sent && rc == 1) { /* the peer answered our close */
        hy_wsu_teardown(cl, "closed");
        return false;
    }
    return true;
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
        hy_wsu_pump(cl);
    else if (cl->timer) /* inside a callback: written once it returns */
        uv_timer_start(cl->tick, hy_wsu_on_timer, 0, cl->ping_ms < 1000 ? cl->ping_ms : 1000);
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
    hy_wsu_set_reason(c, reason, strlen(reason));
    cl->close_deadline_ms = hy_wsu_now_ms() + HY_WSU_CLOSE_GRACE_MS;
    if (!cl->depth)
        hy_wsu_pump(cl);
    else
        uv_timer_start(cl->tick, hy_wsu_on_timer, 0, 1000);
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
