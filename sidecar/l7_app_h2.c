/* Multiplexed h2c (HTTP/2 over cleartext, prior knowledge) connections
 * from an http2/grpc inbound to its local app, per worker: each is an
 * nghttp2 client session (l7_h2.c) over a plain TCP connection, carrying
 * as many streams as the app allows, so a busy gRPC inbound keeps a few
 * long-lived connections to its app as gRPC clients expect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "proxy_l7.h"
#include "poison.h"

struct hy_l7_app_h2 {
    struct hy_l7_worker *lw;
    struct hy_agent_side side;        /* side.tcp.data: this */
    struct hy_l7_app_h2 *prev, *next; /* lw->apph2s */
    char host[64];
    uint32_t port;
    bool connected, closing;
    /* MeshTimeout from/rules: connectionTimeout while connecting, then
     * idleTimeout (0: none): no stream for that long closes it */
    uint64_t connect_ms, idle_ms, idle_since;
    int32_t last_id; /* the next stream id when the timer last looked */
    uv_timer_t timer;
    int handles; /* open: the socket and the timer */
    uv_connect_t creq;
    struct hy_buf pending; /* written before the connect completed */
    struct hy_l7_h2 *h2;
};

static void on_closed(uv_handle_t *h)
{
    struct hy_l7_app_h2 *a = h->data;
    if (--a->handles > 0)
        return;
    hy_buf_fini(&a->pending);
    free(a);
}

/* Closes a: the session goes, its streams failing. */
static void app_close(struct hy_l7_app_h2 *a, const char *why)
{
    if (a->closing)
        return;
    a->closing = true;
    struct hy_l7_worker *lw = a->lw;
    if (a->prev)
        a->prev->next = a->next;
    else if (lw->apph2s == a)
        lw->apph2s = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->prev = a->next = NULL;
    if (why)
        hy_log(HY_LOG_DEBUG, "dp", "h2c connection to the app at %s:%u: %s", a->host,
               (unsigned)a->port, why);
    struct hy_l7_h2 *h2 = a->h2;
    a->h2 = NULL;
    if (h2)
        hy_l7_h2_free(h2, a->connected ? HY_L7_TRY_RESET : HY_L7_TRY_CONNECT_FAILURE);
    hy_agent_side_close(&a->side, on_closed);
    uv_close((uv_handle_t *)&a->timer, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_l7_app_h2 *a = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)a->lw->rbuf, sizeof(a->lw->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_l7_app_h2 *a = st->data;
    if (a->closing || n == 0)
        return;
    if (n < 0) {
        app_close(a, n == UV_EOF ? "the app closed it" : uv_strerror((int)n));
        return;
    }
    if (hy_l7_h2_recv(a->h2, (const uint8_t *)buf->base, (size_t)n) < 0)
        app_close(a, "the app's HTTP/2 is invalid");
}

static void on_written(struct hy_agent_side *s, int status)
{
    struct hy_l7_app_h2 *a = s->tcp.data;
    if (!a->closing && status < 0)
        app_close(a, uv_strerror(status));
}

static int wire_write(void *u, const uint8_t *p, size_t n)
{
    struct hy_l7_app_h2 *a = u;
    if (a->closing)
        return UV_EPIPE;
    int rc = a->connected ? hy_agent_side_write(&a->side, p, n, on_written)
                          : (hy_buf_append(&a->pending, p, n) < 0 ? UV_ENOMEM : 0);
    if (rc < 0)
        app_close(a, uv_strerror(rc));
    return rc;
}

static void wire_close(void *u, const char *result, const char *why)
{
    (void)result;
    app_close(u, why ? why : "done");
}

/* Checks of the idle timeout per connection: a quarter of it apart, so a
 * connection with no stream goes between 1 and 1.25 times it. */
#define IDLE_CHECKS 4

static uint64_t idle_step(uint64_t idle_ms)
{
    return idle_ms / IDLE_CHECKS ? idle_ms / IDLE_CHECKS : 1;
}

static void on_timer(uv_timer_t *t)
{
    struct hy_l7_app_h2 *a = t->data;
    if (a->closing)
        return;
    uint64_t now = uv_now(&a->lw->w->base.loop);
    if (!a->connected) {
        char why[200];
        snprintf(why, sizeof(why), "no connection within %llu ms (connectionTimeout)",
                 (unsigned long long)a->connect_ms);
        hy_log(HY_LOG_INFO, "dp", "inbound: cannot connect to the app at %s:%u: %s", a->host,
               (unsigned)a->port, why);
        hy_l7_count(a->lw, HY_L7_TIMEOUT);
        app_close(a, why); /* its streams hear HY_L7_TRY_CONNECT_FAILURE: 503 */
        return;
    }
    if (!a->idle_ms || !a->h2)
        return;
    int32_t id = nghttp2_session_get_next_stream_id(a->h2->s);
    if (a->h2->nstreams || id != a->last_id) /* busy since the last look */
        a->idle_since = now;
    a->last_id = id;
    if (now - a->idle_since >= a->idle_ms) {
        app_close(a, "idle (idleTimeout)");
        return;
    }
    uv_timer_start(t, on_timer, idle_step(a->idle_ms), 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct hy_l7_app_h2 *a = req->data;
    if (status == UV_ECANCELED || a->closing)
        return;
    if (status < 0) {
        char why[200];
        snprintf(why, sizeof(why), "cannot connect: %s", uv_strerror(status));
        app_close(a, why);
        return;
    }
    a->connected = true;
    uv_timer_stop(&a->timer); /* connectionTimeout's; idleTimeout's from now */
    if (a->idle_ms) {
        a->idle_since = uv_now(&a->lw->w->base.loop);
        uv_timer_start(&a->timer, on_timer, idle_step(a->idle_ms), 0);
    }
    uv_tcp_nodelay(&a->side.tcp, 1);
    hy_agent_side_read(&a->side, true, on_alloc, on_read);
    if (a->pending.len) {
        int rc = hy_agent_side_write(&a->side, a->pending.data, a->pending.len, on_written);
        hy_buf_fini(&a->pending);
        if (rc < 0)
            app_close(a, uv_strerror(rc));
    }
}

void hy_l7_app_h2_timeouts(struct hy_l7_h2 *h2, uint64_t connect_ms, uint64_t idle_ms)
{
    struct hy_l7_app_h2 *a = h2->wire.u;
    if (a->closing)
        return;
    if (!a->connected && !a->connect_ms && connect_ms) {
        a->connect_ms = connect_ms;
        uv_timer_start(&a->timer, on_timer, connect_ms, 0);
    }
    if (a->connected && idle_ms && !uv_is_active((uv_handle_t *)&a->timer)) {
        a->idle_since = uv_now(&a->lw->w->base.loop);
        uv_timer_start(&a->timer, on_timer, idle_step(idle_ms), 0);
    }
    a->idle_ms = idle_ms;
}

struct hy_l7_h2 *hy_l7_app_h2_get(struct hy_l7_worker *lw, const char *host, uint32_t port,
                                  char *why, size_t size)
{
    for (struct hy_l7_app_h2 *a = lw->apph2s; a; a = a->next)
        if (a->port == port && !strcmp(a->host, host) && a->h2 && hy_l7_h2_usable(a->h2))
            return a->h2;
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) != 0) {
        snprintf(why, size, "the app's address %s is not an IP address", host);
        return NULL;
    }
    struct hy_l7_app_h2 *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(why, size, "out of memory");
        return NULL;
    }
    a->lw = lw;
    a->port = port;
    snprintf(a->host, sizeof(a->host), "%s", host);
    struct hy_l7_wire wire = {wire_write, wire_close, a};
    a->h2 = hy_l7_h2_plain_new(lw, NULL, false, NULL, &wire);
    if (!a->h2) {
        free(a);
        snprintf(why, size, "out of memory");
        return NULL;
    }
    hy_agent_side_init(&a->side, &lw->w->base.loop, &lw->w->base.defer);
    a->side.tcp.data = a;
    a->side.init = true;
    uv_timer_init(&lw->w->base.loop, &a->timer);
    a->timer.data = a;
    a->handles = 2;
    a->creq.data = a;
    a->next = lw->apph2s;
    if (a->next)
        a->next->prev = a;
    lw->apph2s = a;
    int rc = uv_tcp_connect(&a->creq, &a->side.tcp, (struct sockaddr *)&sa, on_connect);
    if (rc < 0) {
        snprintf(why, size, "cannot connect to the app at %s:%u: %s", host, (unsigned)port,
                 uv_strerror(rc));
        app_close(a, why);
        return NULL;
    }
    hy_l7_h2_dirty(a->h2); /* its preface and SETTINGS */
    return a->h2;
}

void hy_l7_app_h2_stop_all(struct hy_l7_worker *lw)
{
    while (lw->apph2s)
        app_close(lw->apph2s, "the sidecar is stopping");
}
