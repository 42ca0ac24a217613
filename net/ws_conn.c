/* The websocket connection both sides share: a send queue written one
 * fragment per WRITEABLE callback, reassembly of fragmented messages under
 * a size limit, and the bookkeeping that tells on_close why it ended. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "log.h"
#include "wire.h"
#include "ws_int.h"
#include "poison.h"

#define CLOSE_GRACE_SEC 10 /* hy_ws_close: the queue must drain within this */

uint64_t hy_ws_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

int hy_ws_ep_init(struct hy_ws_ep *ep, const struct hy_ws_limits *lim,
                  const struct hy_ws_callbacks *cb, void *ud, const char *side)
{
    memset(ep, 0, sizeof(*ep));
    ep->cb = *cb;
    ep->ud = ud;
    ep->side = side;
    ep->max_message = lim->max_message ? lim->max_message : HY_WS_MAX_MESSAGE_DEFAULT;
    ep->max_queue = lim->max_queue ? lim->max_queue : 4 * ep->max_message + (1u << 20);
    unsigned ping = lim->ping_sec ? lim->ping_sec : 30;
    unsigned idle = lim->idle_sec ? lim->idle_sec : 3 * ping;
    if (idle <= ping || idle > 65535) {
        hy_log(HY_LOG_ERROR, "ws",
               "%s: idle_sec (%u) must be more than ping_sec (%u) and at most 65535", side, idle,
               ping);
        return HY_EINVAL;
    }
    ep->idle_sec = idle;
    ep->policy.secs_since_valid_ping = (uint16_t)ping;
    ep->policy.secs_since_valid_hangup = (uint16_t)idle;
    ep->max_message_unauth =
        lim->max_message_unauth ? lim->max_message_unauth : HY_WS_MAX_MESSAGE_UNAUTH_DEFAULT;
    if (ep->max_message_unauth > ep->max_message)
        ep->max_message_unauth = ep->max_message;
    ep->max_unauth = lim->max_unauth ? lim->max_unauth : HY_WS_MAX_UNAUTH_DEFAULT;
    ep->hello_timeout_ms =
        lim->hello_timeout_ms ? lim->hello_timeout_ms : HY_WS_HELLO_TIMEOUT_MS_DEFAULT;
    return 0;
}

/* Copies a close reason, keeping printable ASCII only (it is logged). */
static void set_reason(struct hy_ws_conn *c, const void *p, size_t n)
{
    if (n > HY_WS_REASON_MAX)
        n = HY_WS_REASON_MAX;
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        c->close_reason[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    c->close_reason[n] = '\0';
}

void hy_ws_conn_drop_buffers(struct hy_ws_conn *c)
{
    while (c->head) {
        struct hy_ws_msg *m = c->head;
        c->head = m->next;
        free(m);
    }
    c->tail = NULL;
    c->queued = 0;
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

void hy_ws_conn_unauth_unlink(struct hy_ws_conn *c)
{
    struct hy_ws_ep *ep = c->ep;
    if (c->authed)
        return;
    c->authed = true;
    if (c->unauth_prev)
        c->unauth_prev->unauth_next = c->unauth_next;
    else
        ep->unauth_head = c->unauth_next;
    if (c->unauth_next)
        c->unauth_next->unauth_prev = c->unauth_prev;
    else
        ep->unauth_tail = c->unauth_prev;
    c->unauth_prev = c->unauth_next = NULL;
    ep->nunauth--;
}

void hy_ws_ep_own_pings(struct hy_ws_ep *ep)
{
    ep->own_pings = true;
    ep->ping_ms = (uint64_t)ep->policy.secs_since_valid_ping * 1000u;
    ep->policy.secs_since_valid_ping = 0; /* lws: no validity timer per connection */
    ep->policy.secs_since_valid_hangup = 0;
}

void hy_ws_ep_sweep(struct hy_ws_ep *ep)
{
    uint64_t now = hy_ws_now_ms(), idle_ms = (uint64_t)ep->idle_sec * 1000u;
    for (struct hy_ws_conn *c = ep->live; c; c = c->live_next) {
        if (c->state != HY_WS_OPEN || !c->wsi)
            continue;
        uint64_t silent = now - c->last_rx_ms;
        if (silent >= idle_ms) { /* closed on lws's next turn; hy_ws_conn_closed says why */
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (silent >= ep->ping_ms && !c->ping_sent) {
            c->want_ping = c->ping_sent = true;
            lws_callback_on_writable(c->wsi);
        }
    }
}

static void live_link(struct hy_ws_conn *c)
{
    struct hy_ws_ep *ep = c->ep;
    if (c->live_prev || ep->live == c)
        return; /* already on it */
    c->live_prev = NULL;
    c->live_next = ep->live;
    if (ep->live)
        ep->live->live_prev = c;
    ep->live = c;
}

static void live_unlink(struct hy_ws_conn *c)
{
    if (c->live_prev)
        c->live_prev->live_next = c->live_next;
    else if (c->ep->live == c)
        c->ep->live = c->live_next;
    if (c->live_next)
        c->live_next->live_prev = c->live_prev;
    c->live_prev = c->live_next = NULL;
}

/* The peer proved alive. */
static void heard(struct hy_ws_conn *c)
{
    c->last_rx_ms = hy_ws_now_ms();
    c->ping_sent = false;
    if (c->ep->own_pings)
        c->last_valid_ms = c->last_rx_ms;
}

void hy_ws_conn_opened(struct hy_ws_conn *c, struct lws *wsi, const char *peer)
{
    hy_ws_conn_drop_buffers(c);
    c->wsi = wsi;
    c->state = HY_WS_OPEN;
    c->close_pending = c->close_sent = c->close_recv = false;
    c->close_code = 0;
    c->close_reason[0] = '\0';
    c->last_valid_ms = c->opened_ms = c->last_rx_ms = hy_ws_now_ms();
    c->want_ping = c->ping_sent = false;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->ep->nopen++;
    live_link(c);
    /* a server's peer is a stranger until its session says otherwise:
     * on the list its Hello deadline is kept by (ws_server.c) */
    c->authed = !c->ep->gate;
    c->unauth_prev = c->unauth_next = NULL;
    if (!c->authed) {
        struct hy_ws_ep *ep = c->ep;
        c->unauth_prev = ep->unauth_tail;
        if (ep->unauth_tail)
            ep->unauth_tail->unauth_next = c;
        else
            ep->unauth_head = c;
        ep->unauth_tail = c;
        ep->nunauth++;
    }
    hy_log(HY_LOG_INFO, "ws", "%s: connection with %s open", c->ep->side, c->peer);
    if (c->ep->cb.on_open) {
        c->ep->depth++;
        c->ep->cb.on_open(c->ep->ud, c, c->peer);
        c->ep->depth--;
    }
}

/* lws 4.1 keeps a pending close frame's payload in the buffer its
 * keepalive ping writes an 8-byte timestamp into: a ping falling due
 * between lws_close_reason and the close going out garbles the code and
 * the reason's first bytes (seen when a Hello deadline and a ping fall due
 * together). Pushing the next ping a whole interval away keeps them apart. */
static void hold_pings(struct hy_ws_conn *c)
{
    lws_validity_confirmed(c->wsi);
}

/* Closes from inside an lws callback: the caller returns -1 right after. */
static int fail(struct hy_ws_conn *c, int code, const char *why)
{
    hy_log(HY_LOG_WARN, "ws", "%s: closing the connection with %s: %d %s", c->ep->side, c->peer,
           code, why);
    set_reason(c, why, strlen(why));
    c->close_code = code;
    c->close_sent = true;
    c->state = HY_WS_CLOSING;
    hold_pings(c);
    lws_close_reason(c->wsi, (enum lws_close_status)code, (unsigned char *)c->close_reason,
                     strlen(c->close_reason));
    return -1;
}

static void deliver(struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    if (!c->ep->cb.on_message)
        return;
    c->ep->depth++;
    c->ep->cb.on_message(c->ep->ud, c, data, len);
    c->ep->depth--;
}

int hy_ws_conn_receive(struct hy_ws_conn *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    if (c->state != HY_WS_OPEN || !wsi)
        return 0; /* closing: what still arrives is dropped */
    heard(c);
    bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    size_t more = lws_remaining_packet_payload(wsi);
    if (!lws_frame_is_binary(wsi))
        return fail(c, HY_WS_CLOSE_UNSUPPORTED, "only binary messages are accepted");
    if (first)
        c->rx_len = 0;
    /* before authentication a stranger gets a Hello's worth, not megabytes */
    size_t max = c->authed ? c->ep->max_message : c->ep->max_message_unauth;
    if (len > max || more > max - len || c->rx_len > max - len - more) {
        char why[HY_WS_REASON_MAX + 1];
        if (c->authed) {
            snprintf(why, sizeof(why), "message larger than the limit of %zu bytes", max);
        } else {
            c->ep->unauth_too_big++;
            snprintf(why, sizeof(why),
                     "message larger than the limit of %zu bytes before authentication (Hello)",
                     max);
        }
        return fail(c, HY_WS_CLOSE_TOO_BIG, why);
    }
    if (first && final) { /* whole in one piece: no copy */
        deliver(c, in, len);
        return 0;
    }
    size_t need = c->rx_len + len + more;
    if (need > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < need)
            cap *= 2;
        if (cap > max)
            cap = max;
        uint8_t *p = realloc(c->rx, cap);
        if (!p)
            return fail(c, HY_WS_CLOSE_INTERNAL, "out of memory");
        c->rx = p;
        c->rx_cap = cap;
    }
    if (len)
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!final)
        return 0;
    size_t n = c->rx_len;
    c->rx_len = 0;
    deliver(c, c->rx, n);
    if (c->rx_cap > HY_WS_RX_KEEP) { /* do not hold megabytes per idle connection */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    return 0;
}

void hy_ws_conn_pong(struct hy_ws_conn *c)
{
    c->last_valid_ms = hy_ws_now_ms();
    heard(c);
}

void hy_ws_conn_peer_close(struct hy_ws_conn *c, const void *in, size_t len)
{
    if (c->close_sent || c->close_recv)
        return;
    const uint8_t *p = in;
    c->close_recv = true;
    c->state = HY_WS_CLOSING;
    if (p && len >= 2) {
        c->close_code = p[0] << 8 | p[1];
        set_reason(c, p + 2, len - 2);
    } else {
        c->close_code = 1005; /* RFC 6455 7.1.5: no status code was present */
        c->close_reason[0] = '\0';
    }
}

int hy_ws_conn_writeable(struct hy_ws_conn *c)
{
    if (!c->wsi || (c->state != HY_WS_OPEN && c->state != HY_WS_CLOSING) || c->close_sent ||
        c->close_recv)
        return 0;
    struct hy_ws_msg *m = c->head;
    if (c->want_ping && !c->close_pending && (!m || m->off == 0)) { /* between messages */
        /* an 8-byte payload, as lws's own pings carry (some peers ignore an
         * empty one) */
        unsigned char ping[LWS_PRE + 8];
        uint64_t now = hy_ws_now_ms();
        memcpy(ping + LWS_PRE, &now, sizeof(now));
        c->want_ping = false;
        if (lws_write(c->wsi, ping + LWS_PRE, sizeof(now), LWS_WRITE_PING) < (int)sizeof(now)) {
            hy_log(HY_LOG_WARN, "ws", "%s: ping to %s failed", c->ep->side, c->peer);
            return -1;
        }
        if (m)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (m) {
        size_t n = m->len - m->off;
        if (n > HY_WS_FRAG)
            n = HY_WS_FRAG;
        bool start = m->off == 0, end = m->off + n == m->len;
        int wp = lws_write_ws_flags(LWS_WRITE_BINARY, start, end);
        if (lws_write(c->wsi, m->buf + LWS_PRE + m->off, n, (enum lws_write_protocol)wp) < (int)n) {
            hy_log(HY_LOG_WARN, "ws", "%s: write to %s failed", c->ep->side, c->peer);
            return -1;
        }
        m->off += n;
        c->queued -= n;
        if (end) {
            c->head = m->next;
            if (!c->head)
                c->tail = NULL;
            free(m);
        }
        if (c->head || c->close_pending || c->want_ping)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->close_pending) {
        c->close_sent = true;
        hold_pings(c);
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        /* Not "return -1": Debian's lws 4.1.6 is a _DEBUG build, and on
         * libuv it closes a wsi whose WRITEABLE failed a second time at
         * once ("uv repeat test"), which kills it before the close frame
         * goes out. A synchronous close starts the polite close instead:
         * lws sends the frame and waits for the peer's answer. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
        return 0;
    }
    return 0;
}

void hy_ws_conn_closed(struct hy_ws_conn *c, const char *dflt)
{
    if (c->state != HY_WS_OPEN && c->state != HY_WS_CLOSING)
        return; /* never established: nothing was reported open */
    int code = HY_WS_CLOSE_ABNORMAL;
    char reason[HY_WS_REASON_MAX + 1];
    if (c->close_sent || c->close_recv) {
        code = c->close_code;
        snprintf(reason, sizeof(reason), "%s", c->close_reason);
    } else if (!c->ep->stopping &&
               hy_ws_now_ms() - c->last_valid_ms + 500 >= (uint64_t)c->ep->idle_sec * 1000u) {
        snprintf(reason, sizeof(reason), "no pong for %u s", c->ep->idle_sec);
    } else {
        snprintf(reason, sizeof(reason), "%s", dflt);
    }
    hy_log(HY_LOG_INFO, "ws", "%s: connection with %s closed: %d%s%s (%s)", c->ep->side, c->peer,
           code, reason[0] ? " " : "", reason,
           c->close_sent   ? "by us"
           : c->close_recv ? "by the peer"
                           : "no close frame");
    hy_ws_conn_drop_buffers(c);
    hy_ws_conn_unauth_unlink(c);
    live_unlink(c);
    c->wsi = NULL;
    c->state = HY_WS_IDLE;
    c->ep->nopen--;
    if (c->ep->cb.on_close) {
        c->ep->depth++;
        c->ep->cb.on_close(c->ep->ud, c, code, reason);
        c->ep->depth--;
    }
}

void hy_ws_conn_authenticated(struct hy_ws_conn *c)
{
    if (c && c->wsi && (c->state == HY_WS_OPEN || c->state == HY_WS_CLOSING))
        hy_ws_conn_unauth_unlink(c);
}

bool hy_ws_conn_is_authenticated(const struct hy_ws_conn *c)
{
    return c && c->authed;
}

static int ws_sink(void *to, const void *data, size_t len)
{
    return hy_ws_send(to, data, len);
}

int hy_ws_send_msg(struct hy_ws_conn *c, const ProtobufCMessage *m, size_t *len)
{
    return hy_wire_send(m, ws_sink, c, len);
}

int hy_ws_send(struct hy_ws_conn *c, const void *data, size_t len)
{
    if (!c || !c->wsi || c->state != HY_WS_OPEN)
        return -ENOTCONN;
    if (len > c->ep->max_queue - c->queued)
        return -ENOBUFS;
    struct hy_ws_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return HY_ENOMEM;
    m->next = NULL;
    m->len = len;
    m->off = 0;
    if (len)
        memcpy(m->buf + LWS_PRE, data, len);
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->queued += len;
    lws_callback_on_writable(c->wsi);
    return 0;
}

/* Codes an endpoint may send (RFC 6455 7.4; lws treats 1012-1014 as errors). */
static bool sendable_code(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int hy_ws_close(struct hy_ws_conn *c, int code, const char *reason)
{
    if (!c || !c->wsi || c->state != HY_WS_OPEN)
        return -ENOTCONN;
    c->state = HY_WS_CLOSING;
    c->close_pending = true;
    c->close_code = sendable_code(code) ? code : HY_WS_CLOSE_NORMAL;
    if (!reason)
        reason = "";
    set_reason(c, reason, strlen(reason));
    /* a peer that stops reading must not keep us waiting for ever */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SEC);
    lws_callback_on_writable(c->wsi);
    return 0;
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

/* lws reports why a certificate did not verify only in a log line; the
 * client reads it back to say so in on_close. Per thread: one loop each. */
static _Thread_local char tls_error[128];

const char *hy_ws_take_tls_error(char *buf, size_t size)
{
    snprintf(buf, size, "%s", tls_error);
    tls_error[0] = '\0';
    return buf;
}

#define REAPER_ITERATIONS 4 /* idle callbacks: after at least two closing phases */

struct hy_ws_reaper {
    uv_idle_t idle;
    struct lws_context *ctx; /* NULL once freed */
    unsigned iters;
    bool done;   /* lws's handles are closed: the second destroy is safe */
    bool orphan; /* the endpoint is gone: the reaper finishes alone */
    bool closed; /* the idle handle is closed */
};

static void reaper_closed(uv_handle_t *h)
{
    struct hy_ws_reaper *r = h->data;
    r->closed = true;
    if (r->orphan)
        free(r);
}

static void reaper_idle(uv_idle_t *h)
{
    struct hy_ws_reaper *r = h->data;
    if (++r->iters < REAPER_ITERATIONS)
        return;
    r->done = true;
    uv_idle_stop(h);
    if (r->orphan && r->ctx) {
        lws_context_destroy(r->ctx);
        r->ctx = NULL;
    }
    uv_close((uv_handle_t *)h, reaper_closed);
}

struct hy_ws_reaper *hy_ws_reaper_start(uv_loop_t *loop, struct lws_context *ctx)
{
    struct hy_ws_reaper *r = calloc(1, sizeof(*r));
    lws_context_destroy(ctx);
    if (!r) {
        hy_log(HY_LOG_ERROR, "ws", "out of memory: a libwebsockets context leaks");
        return NULL;
    }
    r->ctx = ctx;
    uv_idle_init(loop, &r->idle);
    r->idle.data = r;
    uv_idle_start(&r->idle, reaper_idle);
    return r;
}

void hy_ws_reaper_release(struct hy_ws_reaper *r)
{
    if (!r)
        return;
    if (r->done && r->ctx) {
        lws_context_destroy(r->ctx);
        r->ctx = NULL;
    }
    if (r->closed)
        free(r);
    else
        r->orphan = true;
}

static void lws_log_emit(int level, const char *line)
{
    enum hy_log_level l = level == LLL_ERR    ? HY_LOG_ERROR
                          : level == LLL_WARN ? HY_LOG_WARN
                                              : HY_LOG_INFO;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* lws prefixes its own timestamp: skip to the message */
    const char *msg = line;
    const char *sp = strstr(line, "] ");
    if (sp && (size_t)(sp - line) < n)
        msg = sp + 2;
    int len = (int)(n - (size_t)(msg - line));
    if (strncmp(msg, "SSL error: ", 11) == 0) {
        /* "SSL error: <why> (preverify_ok=0;err=20;depth=0)": the client
         * logs <why> with the URL itself */
        const char *why = msg + 11, *paren = strstr(why, " (preverify");
        int wl = paren && paren < msg + len ? (int)(paren - why) : len - 11;
        snprintf(tls_error, sizeof(tls_error), "%.*s", wl, why);
        l = HY_LOG_DEBUG;
    }
    hy_log(l, "lws", "%.*s", len, msg);
}

void hy_ws_log_init(void)
{
    const char *dbg = getenv("HY_LWS_LOG"); /* lws's LLL_* bits, for debugging */
    lws_set_log_level(dbg ? atoi(dbg) : LLL_ERR | LLL_WARN, lws_log_emit);
}
