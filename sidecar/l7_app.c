/* Keep-alive HTTP/1.1 connections from an inbound to its local app, per
 * worker: one exchange at a time on each, a generous idle pool so a busy
 * inbound does not open a connection per request, responses parsed
 * strictly (net/h1.h), and a raw pass-through after an upgrade. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "proxy_l7.h"
#include "poison.h"

struct hy_l7_app {
    struct hy_l7_worker *lw;
    struct hy_agent_side side;     /* side.tcp.data: this */
    struct hy_l7_app *prev, *next; /* lw->idle or lw->busy */
    struct hy_h1 *p;
    const struct hy_l7_app_ops *ops;
    void *u;
    char host[64];
    uint32_t port;
    bool connected, closing, idle, reused, got_bytes, tunnel;
    uint64_t born_ms, max_ms; /* loop time it was made; maxConnectionDuration (0: none) */
    /* MeshTimeout from/rules: connectionTimeout (while connecting) and
     * idleTimeout (while in the idle pool; 0: none), on one timer */
    uint64_t connect_ms, idle_ms, idle_since;
    uv_timer_t timer;
    int handles; /* open: the socket and the timer */
    uv_connect_t creq;
    struct hy_buf pending; /* written before the connect completed */
    void (*tunnel_data)(void *u, const uint8_t *p, ssize_t n);
};

static void unlink_app(struct hy_l7_app *a)
{
    struct hy_l7_worker *lw = a->lw;
    struct hy_l7_app **head = a->idle ? &lw->idle : &lw->busy;
    if (a->prev)
        a->prev->next = a->next;
    else if (*head == a)
        *head = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->prev = a->next = NULL;
    if (a->idle)
        lw->nidle--;
}

static void link_app(struct hy_l7_app *a, bool idle)
{
    struct hy_l7_worker *lw = a->lw;
    struct hy_l7_app **head = idle ? &lw->idle : &lw->busy;
    a->idle = idle;
    a->prev = NULL;
    a->next = *head;
    if (*head)
        (*head)->prev = a;
    *head = a;
    if (idle)
        lw->nidle++;
}

static void on_closed(uv_handle_t *h)
{
    struct hy_l7_app *a = h->data;
    if (--a->handles > 0)
        return;
    hy_h1_free(a->p);
    hy_buf_fini(&a->pending);
    free(a);
}

/* Closes a; its user (if any) hears fail(status, why) unless status is -1. */
static void app_close(struct hy_l7_app *a, int status, const char *why)
{
    if (a->closing)
        return;
    a->closing = true;
    unlink_app(a);
    const struct hy_l7_app_ops *ops = a->ops;
    void *u = a->u;
    a->ops = NULL;
    a->u = NULL;
    hy_agent_side_close(&a->side, on_closed);
    uv_close((uv_handle_t *)&a->timer, on_closed);
    if (ops && status >= 0) {
        if (a->tunnel && a->tunnel_data)
            a->tunnel_data(u, NULL, UV_EOF);
        else
            ops->fail(u, status, why);
    }
}

static int cb_head(void *u, struct hy_http_head *h, bool body)
{
    struct hy_l7_app *a = u;
    return a->ops ? a->ops->head(a->u, h, body) : 1;
}

static int cb_body(void *u, const uint8_t *p, size_t n)
{
    struct hy_l7_app *a = u;
    return a->ops ? a->ops->body(a->u, p, n) : 1;
}

static int cb_end(void *u, struct hy_http_head *trailers)
{
    struct hy_l7_app *a = u;
    if (a->ops)
        a->ops->end(a->u, trailers);
    return 0;
}

static const struct hy_h1_cb h1_cb = {cb_head, cb_body, cb_end};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_l7_app *a = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)a->lw->rbuf, sizeof(a->lw->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_l7_app *a = st->data;
    if (a->closing || n == 0)
        return;
    if (a->tunnel) {
        if (n < 0) {
            a->side.eof = true;
            hy_agent_side_read(&a->side, false, on_alloc, on_read);
        }
        if (a->tunnel_data)
            a->tunnel_data(a->u, (const uint8_t *)buf->base, n);
        return;
    }
    if (a->idle || !a->ops) { /* an idle app closed or spoke out of turn */
        app_close(a, -1, NULL);
        return;
    }
    if (n < 0) {
        int rc = n == UV_EOF ? hy_h1_finish(a->p) : HY_EINVAL;
        if (a->closing)
            return;
        if (rc == 0 && !a->ops) /* the response was read to its EOF */
            return;
        app_close(a, a->reused && !a->got_bytes ? 0 : 502,
                  n == UV_EOF ? "the app closed the connection before its response ended"
                              : uv_strerror((int)n));
        return;
    }
    a->got_bytes = true;
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t len = (size_t)n;
    while (len && !a->closing) {
        size_t used = 0;
        int rc = hy_h1_feed(a->p, p, len, &used);
        if (rc < 0) {
            const char *why = NULL;
            hy_h1_error(a->p, &why);
            char msg[200];
            snprintf(msg, sizeof(msg), "the app's response: %s", why ? why : "invalid");
            app_close(a, 502, msg);
            return;
        }
        p += used;
        len -= used;
        if (hy_h1_upgrade(a->p) && a->tunnel_data) {
            a->tunnel = true;
            if (len)
                a->tunnel_data(a->u, p, (ssize_t)len);
            return;
        }
        if (used == 0) {
            if (a->ops) { /* paused after a response and the user has not released it */
                app_close(a, -1, NULL);
                return;
            }
            break;
        }
    }
}

static void on_written(struct hy_agent_side *s, int status)
{
    struct hy_l7_app *a = s->tcp.data;
    if (a->closing)
        return;
    if (status < 0) {
        app_close(a, a->reused && !a->got_bytes ? 0 : 502, uv_strerror(status));
        return;
    }
    if (a->ops && hy_agent_side_queued(&a->side) <= HY_AGENT_LOW_WATER && a->ops->written)
        a->ops->written(a->u);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct hy_l7_app *a = req->data;
    if (status == UV_ECANCELED || a->closing)
        return;
    if (status < 0) {
        char why[200];
        snprintf(why, sizeof(why), "cannot connect to the app at %s:%u: %s", a->host,
                 (unsigned)a->port, uv_strerror(status));
        app_close(a, 503, why);
        return;
    }
    a->connected = true;
    uv_timer_stop(&a->timer); /* connectionTimeout's; idleTimeout's starts when idle */
    uv_tcp_nodelay(&a->side.tcp, 1);
    hy_agent_side_read(&a->side, true, on_alloc, on_read);
    if (a->pending.len) {
        int rc = hy_agent_side_write(&a->side, a->pending.data, a->pending.len, on_written);
        hy_buf_fini(&a->pending);
        if (rc < 0) {
            app_close(a, 503, uv_strerror(rc));
            return;
        }
    }
    if (a->ops && a->ops->connected)
        a->ops->connected(a->u, 0);
}

/* Has a outlived its maxConnectionDuration? Then it takes no more
 * exchanges: closed when released or found idle. */
static bool app_expired(const struct hy_l7_app *a)
{
    return a->max_ms && uv_now(&a->lw->w->base.loop) - a->born_ms >= a->max_ms;
}

void hy_l7_app_max_duration(struct hy_l7_app *a, uint64_t ms)
{
    a->max_ms = ms;
}

/* connectionTimeout: the app has not accepted in time, answered as an
 * unreachable app is (503); idleTimeout: an idle connection is closed
 * once idle that long (checked here, so taking one from the pool costs
 * no timer call). */
static void on_timer(uv_timer_t *t)
{
    struct hy_l7_app *a = t->data;
    if (a->closing)
        return;
    uint64_t now = uv_now(&a->lw->w->base.loop);
    if (!a->connected) {
        char why[200];
        snprintf(why, sizeof(why),
                 "cannot connect to the app at %s:%u: no connection within %llu ms "
                 "(connectionTimeout)",
                 a->host, (unsigned)a->port, (unsigned long long)a->connect_ms);
        hy_log(HY_LOG_INFO, "dp", "inbound: %s", why);
        hy_l7_count(a->lw, HY_L7_TIMEOUT);
        app_close(a, 503, why);
        return;
    }
    if (!a->idle || !a->idle_ms)
        return; /* in use: armed again when released */
    if (now - a->idle_since >= a->idle_ms) {
        hy_log(HY_LOG_DEBUG, "dp", "inbound: closing the app connection to %s:%u, idle %llu ms",
               a->host, (unsigned)a->port, (unsigned long long)(now - a->idle_since));
        app_close(a, -1, NULL);
        return;
    }
    uv_timer_start(t, on_timer, a->idle_ms - (now - a->idle_since), 0);
}

void hy_l7_app_timeouts(struct hy_l7_app *a, uint64_t connect_ms, uint64_t idle_ms)
{
    a->idle_ms = idle_ms;
    if (!a->connected && !a->connect_ms && connect_ms && !a->closing) {
        a->connect_ms = connect_ms;
        uv_timer_start(&a->timer, on_timer, connect_ms, 0);
    }
}

/* The inbound of config cf whose app a is (its service address and
 * port), or NULL. */
static const Hypha__V1__DpInbound *inbound_of(const Hypha__V1__DpConfig *cf, const char *host,
                                              uint32_t port)
{
    for (size_t i = 0; cf && i < cf->n_inbounds; i++) {
        const Hypha__V1__DpInbound *in = cf->inbounds[i];
        const char *h =
            in->service_address && in->service_address[0] ? in->service_address : "127.0.0.1";
        if (in->service_port == port && !strcmp(h, host))
            return in;
    }
    return NULL;
}

void hy_l7_app_retime(struct hy_l7_worker *lw, const Hypha__V1__DpConfig *cf)
{
    uint64_t now = uv_now(&lw->w->base.loop);
    for (struct hy_l7_app *a = lw->idle, *next; a; a = next) {
        next = a->next;
        const Hypha__V1__DpInbound *in = inbound_of(cf, a->host, a->port);
        uint64_t ms = in ? hy_px_inbound_idle_ms(in) : a->idle_ms;
        if (ms == a->idle_ms)
            continue;
        a->idle_ms = ms;
        if (!ms) {
            uv_timer_stop(&a->timer);
        } else if (now - a->idle_since >= ms) {
            app_close(a, -1, NULL);
        } else {
            uv_timer_start(&a->timer, on_timer, ms - (now - a->idle_since), 0);
        }
    }
}

struct hy_l7_app *hy_l7_app_get(struct hy_l7_worker *lw, const char *host, uint32_t port,
                                const struct hy_l7_app_ops *ops, void *u, bool fresh)
{
    for (struct hy_l7_app *a = lw->idle, *next; a && !fresh; a = next) {
        next = a->next;
        if (app_expired(a)) {
            app_close(a, -1, NULL);
            continue;
        }
        if (a->port == port && !strcmp(a->host, host)) {
            unlink_app(a);
            link_app(a, false);
            a->ops = ops;
            a->u = u;
            a->reused = true;
            a->got_bytes = false;
            hy_h1_resume(a->p); /* paused after the last response */
            return a;
        }
    }
    struct hy_l7_app *a = calloc(1, sizeof(*a));
    if (!a || !(a->p = hy_h1_new(HY_H1_RESPONSE, &h1_cb, a))) {
        free(a);
        return NULL;
    }
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) != 0) {
        hy_h1_free(a->p);
        free(a);
        return NULL;
    }
    a->lw = lw;
    a->ops = ops;
    a->u = u;
    a->port = port;
    a->born_ms = uv_now(&lw->w->base.loop);
    snprintf(a->host, sizeof(a->host), "%s", host);
    hy_agent_side_init(&a->side, &lw->w->base.loop, &lw->w->base.defer);
    a->side.tcp.data = a;
    a->side.init = true;
    uv_timer_init(&lw->w->base.loop, &a->timer);
    a->timer.data = a;
    a->handles = 2;
    a->creq.data = a;
    link_app(a, false);
    int rc = uv_tcp_connect(&a->creq, &a->side.tcp, (struct sockaddr *)&sa, on_connect);
    if (rc < 0) {
        a->ops = NULL;
        app_close(a, -1, NULL);
        return NULL;
    }
    return a;
}

int hy_l7_app_write(struct hy_l7_app *a, const void *p, size_t n)
{
    if (a->closing)
        return UV_EPIPE;
    if (!a->connected)
        return hy_buf_append(&a->pending, p, n) < 0 ? UV_ENOMEM : 0;
    return hy_agent_side_write(&a->side, p, n, on_written);
}

size_t hy_l7_app_queued(const struct hy_l7_app *a)
{
    return a->connected ? hy_agent_side_queued(&a->side) : a->pending.len;
}

void hy_l7_app_expect(struct hy_l7_app *a, const char *method)
{
    hy_h1_expect(a->p, method);
}

void hy_l7_app_release(struct hy_l7_app *a, bool keep)
{
    if (a->closing)
        return;
    a->ops = NULL;
    a->u = NULL;
    struct hy_l7_worker *lw = a->lw;
    if (!keep || a->tunnel || !a->connected || !hy_h1_keep_alive(a->p) || app_expired(a) ||
        lw->nidle >= HY_L7_APP_IDLE_MAX || lw->w->base.stopped) {
        app_close(a, -1, NULL);
        return;
    }
    unlink_app(a);
    link_app(a, true);
    if (a->idle_ms) {
        a->idle_since = uv_now(&lw->w->base.loop);
        if (!uv_is_active((uv_handle_t *)&a->timer))
            uv_timer_start(&a->timer, on_timer, a->idle_ms, 0);
    }
    a->side.paused = false;
    hy_agent_side_read(&a->side, true, on_alloc, on_read);
}

void hy_l7_app_tunnel(struct hy_l7_app *a, void (*data)(void *u, const uint8_t *p, ssize_t n))
{
    a->tunnel_data = data;
}

void hy_l7_app_pause(struct hy_l7_app *a, bool pause)
{
    if (a->closing || !a->connected)
        return;
    a->side.paused = pause;
    hy_agent_side_read(&a->side, !pause && !a->side.eof, on_alloc, on_read);
}

static void on_shut(struct hy_agent_side *s)
{
    (void)s; /* the read side decides when the tunnel ends */
}

void hy_l7_app_shut(struct hy_l7_app *a)
{
    if (!a->closing && a->connected)
        hy_agent_side_shut(&a->side, on_shut);
}

void hy_l7_app_stop_all(struct hy_l7_worker *lw)
{
    while (lw->idle)
        app_close(lw->idle, -1, NULL);
    while (lw->busy)
        app_close(lw->busy, 502, "the sidecar is stopping");
}
