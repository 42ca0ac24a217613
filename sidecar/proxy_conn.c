/* One proxied connection: its two sockets, the relay between them with
 * backpressure, its timers (connect, handshake, idle), its end and the
 * access-log line it leaves. Inbound and outbound differ only in which
 * socket speaks TLS and in what happens between accept and relay
 * (proxy_inbound.c, proxy_outbound.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alog.h"
#include "error.h"
#include "metrics.h"
#include "net.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "poison.h"

uint64_t hy_px_ms(const Hypha__V1__Duration *d, uint64_t dflt)
{
    if (!d || (d->seconds <= 0 && d->nanos <= 0))
        return dflt;
    int64_t ms = d->seconds * 1000 + d->nanos / 1000000;
    return ms > 0 ? (uint64_t)ms : 1;
}

struct hy_px_conn *hy_px_conn_new(struct hy_px_listener *l)
{
    struct hy_px_worker *w = l->w;
    struct hy_px_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = w;
    c->m = &w->p->m;
    c->l = l;
    l->refs++;
    if (l->route) { /* an outbound connection: open, and pending until its handshake is done;
                     * the limits are judged on these counts, not a later read */
        c->active_n = atomic_fetch_add_explicit(&l->route->active, 1, memory_order_relaxed) + 1;
        c->pending_n = atomic_fetch_add_explicit(&l->route->pending, 1, memory_order_relaxed) + 1;
        c->pending = true;
    }
    c->dir = l->dir;
    c->snap = hy_sidecar_snapshot_ref(w->snap);
    c->tls = c->dir == HY_PX_IN ? &c->down : &c->up;
    c->plain = c->dir == HY_PX_IN ? &c->up : &c->down;
    c->start_ms = c->last_ms = uv_now(&w->base.loop);
    c->idle_ms = HY_PX_IDLE_MS;
    c->result = "ok";
    hy_agent_side_init(&c->down, &w->base.loop, &w->base.defer);
    c->down.init = true;
    c->down.tcp.data = c;
    uv_timer_init(&w->base.loop, &c->timer);
    c->timer.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    hy_series_inc(c->m->conns[c->dir]);
    hy_series_add(c->m->active[c->dir], 1);
    return c;
}

static void conn_free(struct hy_px_conn *c)
{
    struct hy_px_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->l7)
        hy_px_l7_free(c);
    hy_px_tls_free(c);
    free(c->pre);
    free(c->rbuf);
    hy_sidecar_snapshot_unref(c->snap);
    hy_px_listener_unref(c->l);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct hy_px_conn *c = h->data;
    if (--c->handles == 0 && c->closing && !c->lingering)
        conn_free(c);
}

static void close_handle(struct hy_px_conn *c, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    c->handles++;
    if (h == (uv_handle_t *)&c->down.tcp)
        hy_agent_side_close(&c->down, on_handle_closed);
    else if (h == (uv_handle_t *)&c->up.tcp)
        hy_agent_side_close(&c->up, on_handle_closed);
    else
        uv_close(h, on_handle_closed);
}

void hy_px_conn_close_handle(struct hy_px_conn *c, uv_handle_t *h)
{
    close_handle(c, h);
}

const char *hy_px_conn_peer(struct hy_px_conn *c)
{
    if (!c->peer[0]) {
        if (c->down.init && !uv_is_closing((uv_handle_t *)&c->down.tcp))
            hy_net_peer_name(&c->down.tcp, c->peer, sizeof(c->peer));
        else
            snprintf(c->peer, sizeof(c->peer), "-");
    }
    return c->peer;
}

/* (a loopback app may call from any 127.x address, and each is a
 * different source to hash on) */
const char *hy_px_conn_src(struct hy_px_conn *c)
{
    if (!c->src[0]) {
        const char *peer = hy_px_conn_peer(c), *p = peer, *end = strrchr(peer, ':');
        if (*p == '[') {
            p++;
            end = strchr(p, ']');
        }
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (!strcmp(peer, "-"))
            n = 0;
        snprintf(c->src, sizeof(c->src), "%.*s", (int)n, p);
    }
    return c->src;
}

/* ----- lingering close of a refused caller -----
 * Closing a socket that holds unread bytes sends a reset, and a reset can
 * overtake the TLS alert saying why: the caller (through an ingress, most
 * of all) would see "connection reset" instead of "refused". So a caller
 * refused at the inbound gets the alert, then a FIN, and what it still
 * sends is read and dropped until its own FIN or HY_PX_LINGER_MS, as
 * nginx's lingering_close does. */

static void linger_end(struct hy_px_conn *c)
{
    c->lingering = false;
    close_handle(c, (uv_handle_t *)&c->timer);
    close_handle(c, (uv_handle_t *)&c->down.tcp);
}

static void on_linger_timer(uv_timer_t *t)
{
    linger_end(t->data);
}

static void on_linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_px_conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)c->w->pbuf, sizeof(c->w->pbuf));
}

static void on_linger_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0) /* its FIN, or it is gone */
        linger_end(st->data);
}

static void on_linger_shut(struct hy_agent_side *s)
{
    (void)s; /* the read side decides when it ends */
}

/* Starts the lingering close of c's caller socket; false when it cannot
 * (then close it at once). */
static bool linger(struct hy_px_conn *c)
{
    struct hy_agent_side *s = &c->down;
    if (c->dir != HY_PX_IN || !s->init || uv_is_closing((uv_handle_t *)&s->tcp))
        return false;
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
    if (uv_read_start((uv_stream_t *)&s->tcp, on_linger_alloc, on_linger_read) < 0)
        return false;
    c->lingering = true;
    hy_agent_side_shut(s, on_linger_shut); /* after the alert, queued before it */
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_linger_timer, HY_PX_LINGER_MS, 0);
    return true;
}

void hy_px_conn_close(struct hy_px_conn *c, const char *result, const char *why, ...)
{
    if (c->closing)
        return;
    c->closing = true;
    c->result = result;
    if (why) {
        va_list ap;
        va_start(ap, why);
        vsnprintf(c->why, sizeof(c->why), why, ap);
        va_end(ap);
    }
    /* an HTTP app's connection to its outbound: each request has its line */
    bool app_l7 = c->l7 && *(enum hy_l7_kind *)c->l7 == HY_L7_DOWN;
    if (c->l7)
        hy_px_l7_closed(c); /* its streams and requests end; its timers close */
    if (c->pt)
        hy_px_passthrough_detach(c); /* its relay ends (worker shutdown) */
    hy_series_add(c->m->active[c->dir], -1);
    if (c->l->route)
        atomic_fetch_sub_explicit(&c->l->route->active, 1, memory_order_relaxed);
    hy_px_outbound_unload(c);
    double secs = (double)(uv_now(&c->w->base.loop) - c->start_ms) / 1000.0;
    /* a connection that only opened and closed (a TCP health check) is
     * logged at debug level: one per check and peer would drown the log;
     * so is one a MeshAccessLog logs, and an HTTP app's that ended well
     * (its requests' lines say what it did) */
    bool logged = hy_alog_conn(c, uv_now(&c->w->base.loop) - c->start_ms);
    bool quiet = !strcmp(result, "closed") || logged || (app_l7 && !strcmp(result, "ok"));
    hy_log(quiet ? HY_LOG_DEBUG : HY_LOG_INFO, "dp",
           "access direction=%s port=%u peer=%s id=%s upstream=%s attempts=%u sent=%llu "
           "received=%llu duration=%.3fs resumed=%s result=%s%s%s",
           hy_px_dir_name(c->dir), (unsigned)c->l->port, hy_px_conn_peer(c), c->id[0] ? c->id : "-",
           c->endpoint[0] ? c->endpoint : "-", c->attempts, (unsigned long long)c->bytes_up,
           (unsigned long long)c->bytes_down, secs, c->tls_done ? (c->resumed ? "1" : "0") : "-",
           c->result, c->why[0] ? ": " : "", c->why);
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->resolve_req);
    if (c->up.init)
        close_handle(c, (uv_handle_t *)&c->up.tcp);
    bool refused = !strcmp(result, "denied") || !strcmp(result, "tls_failed");
    if (!(refused && !c->w->base.stopped && linger(c))) {
        close_handle(c, (uv_handle_t *)&c->timer);
        if (c->down.init)
            close_handle(c, (uv_handle_t *)&c->down.tcp);
    }
    if (c->handles == 0 && !c->lingering)
        conn_free(c);
}

/* ----- writes and backpressure ----- */

static void update_reading(struct hy_px_conn *c, struct hy_agent_side *s);

static struct hy_agent_side *other(struct hy_px_conn *c, struct hy_agent_side *s)
{
    return s == &c->down ? &c->up : &c->down;
}

static void on_write(struct hy_agent_side *s, int status)
{
    struct hy_px_conn *c = s->tcp.data;
    if (c->closing)
        return;
    if (status < 0) {
        hy_px_conn_close(c, "error", "writing to the %s: %s",
                         s == &c->up ? "upstream" : "downstream", uv_strerror(status));
        return;
    }
    if (c->l7) {
        if (s == &c->down && c->dir == HY_PX_OUT && !c->tls->init)
            hy_l7_down_written(c);
        return;
    }
    struct hy_agent_side *src = other(c, s);
    if (hy_agent_side_relieved(s, src)) {
        update_reading(c, src);
        if (src == c->tls) /* ciphertext may wait in rbuf */
            hy_px_conn_tls_progress(c);
    }
}

int hy_px_write(struct hy_px_conn *c, struct hy_agent_side *s, const void *data, size_t len)
{
    (void)c;
    return hy_agent_side_write(s, data, len, on_write);
}

/* After queueing on s: stop reading the other side while s is behind. */
static void check_pressure(struct hy_px_conn *c, struct hy_agent_side *s)
{
    struct hy_agent_side *src = other(c, s);
    if (hy_agent_side_pressure(s, src))
        update_reading(c, src);
}

/* ----- shutdowns: each direction ends on its own ----- */

static void maybe_done(struct hy_px_conn *c)
{
    if (!c->closing && c->tls_in_done && c->plain->eof && c->tls->shut_done && c->plain->shut_done)
        hy_px_conn_close(c, "ok", NULL);
}

static void on_shut(struct hy_agent_side *s)
{
    struct hy_px_conn *c = s->tcp.data;
    if (!c->closing)
        maybe_done(c);
}

static void shut(struct hy_agent_side *s)
{
    hy_agent_side_shut(s, on_shut);
}

/* ----- reads ----- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_px_conn *c = h->data;
    (void)hint;
    if ((uv_tcp_t *)h == &c->plain->tcp) {
        *buf = uv_buf_init((char *)c->w->pbuf, sizeof(c->w->pbuf));
        return;
    }
    if (c->roff) { /* keep the waiting ciphertext at the front */
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
    if (c->rcap - c->rlen < HY_PX_READ_SIZE) {
        size_t cap = c->rlen + 4 * HY_PX_READ_SIZE;
        uint8_t *nb = realloc(c->rbuf, cap);
        if (!nb) {
            *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS */
            return;
        }
        c->rbuf = nb;
        c->rcap = cap;
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_tls_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_px_conn *c = st->data;
    (void)buf;
    if (c->closing || n == 0)
        return;
    if (n < 0 && n != UV_EOF) {
        hy_px_conn_close(c, "error", "reading from the TLS peer: %s", uv_strerror((int)n));
        return;
    }
    c->last_ms = uv_now(&c->w->base.loop);
    if (n == UV_EOF) {
        c->tls->eof = true;
        update_reading(c, c->tls);
    } else {
        c->rlen += (size_t)n;
        c->tls_in += (uint64_t)n;
    }
    hy_px_conn_tls_progress(c);
}

static void on_plain_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_px_conn *c = st->data;
    if (c->closing || n == 0)
        return;
    c->last_ms = uv_now(&c->w->base.loop);
    if (c->l7) { /* the app's HTTP/1.1 to its outbound */
        if (n == UV_EOF) {
            c->plain->eof = true;
            update_reading(c, c->plain);
        } else if (n > 0) {
            c->bytes_up += (uint64_t)n;
        }
        hy_l7_down_data(c, (const uint8_t *)buf->base, n);
        return;
    }
    if (n == UV_EOF) {
        c->plain->eof = true;
        update_reading(c, c->plain);
        hy_px_tls_close_notify(c);
        shut(c->tls);
        return;
    }
    if (n < 0) {
        hy_px_conn_close(c, "error", "reading from the %s: %s",
                         c->dir == HY_PX_IN ? "app" : "app (downstream)", uv_strerror((int)n));
        return;
    }
    if (c->dir == HY_PX_IN)
        c->bytes_down += (uint64_t)n;
    else
        c->bytes_up += (uint64_t)n;
    hy_series_add(c->m->bytes[c->dir], (double)n);
    if (hy_px_tls_write(c, (const uint8_t *)buf->base, (size_t)n) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return;
    }
    check_pressure(c, c->tls);
}

static void update_reading(struct hy_px_conn *c, struct hy_agent_side *s)
{
    bool want;
    if (c->closing || !s->init)
        return;
    if (s == c->tls)
        want = !s->eof && !s->paused && !c->tls_in_done &&
               (c->phase == HY_PX_RELAY || (c->phase == HY_PX_HANDSHAKE && c->ssl));
    else
        want = !s->eof && !s->paused && !c->app_quiet && c->phase == HY_PX_RELAY;
    hy_agent_side_read(s, want, on_alloc, s == c->tls ? on_tls_read : on_plain_read);
}

void hy_px_conn_read_now(struct hy_px_conn *c)
{
    if (!c->closing && c->plain->reading)
        hy_agent_side_read_now(c->plain, on_alloc, on_plain_read);
}

void hy_px_conn_tls_progress(struct hy_px_conn *c)
{
    if (c->closing)
        return;
    if (c->phase == HY_PX_HANDSHAKE) {
        int r = hy_px_tls_handshake(c);
        if (r == 0)
            return;
        if (r < 0 && c->tls->eof && c->tls_in == 0) { /* not a TLS failure: no TLS at all */
            hy_px_conn_close(c, "closed", "the peer closed before sending anything");
            return;
        }
        if (r < 0 && c->refusal) { /* the verify callback refused the peer's identity */
            hy_px_inbound_denied(c, c->refusal);
            return;
        }
        if (r < 0) {
            hy_series_inc(c->m->tls_fail[c->dir]);
            hy_px_conn_close(c, "tls_failed", NULL);
            return;
        }
        uv_timer_stop(&c->timer);
        if (c->dir == HY_PX_IN)
            hy_px_inbound_handshake_done(c);
        else
            hy_px_outbound_handshake_done(c);
        return;
    }
    if (c->phase != HY_PX_RELAY || c->tls_in_done || !c->ssl) /* no TLS: an L7 app side */
        return;
    uint8_t buf[HY_PX_READ_SIZE];
    /* everything waiting is decrypted and queued: at most one read past the
     * high-water mark, then the TLS side pauses */
    for (;;) {
        int r = hy_px_tls_read(c, buf, sizeof(buf));
        if (r == 0)
            break;
        if (r == HY_PX_TLS_EOF) {
            c->tls_in_done = true;
            update_reading(c, c->tls);
            if (c->l7) {
                hy_px_l7_tls(c, NULL, 0);
                return;
            }
            shut(c->plain);
            return;
        }
        if (r < 0 && c->dir == HY_PX_OUT && !c->bytes_down && hy_px_tls_refused(c)) {
            /* TLS 1.3: the server judges our certificate after our side of
             * the handshake is done, so its refusal comes as the first read */
            hy_px_conn_close(c, "denied",
                             "the peer refused our certificate (%s): a MeshTrafficPermission or a "
                             "trust problem, its access log says which",
                             hy_px_tls_alert_name(c->peer_alert));
            return;
        }
        if (r < 0) {
            hy_px_conn_close(c, "error", NULL);
            return;
        }
        if (c->dir == HY_PX_IN)
            c->bytes_up += (uint64_t)r;
        else
            c->bytes_down += (uint64_t)r;
        hy_series_add(c->m->bytes[c->dir], (double)r);
        if (c->l7) { /* HTTP/2 between sidecars */
            hy_px_l7_tls(c, buf, (size_t)r);
            if (c->closing || c->phase != HY_PX_RELAY)
                return; /* ended, or a TCP caller after all: connecting to the app */
            continue;
        }
        int rc = hy_px_write(c, c->plain, buf, (size_t)r);
        if (rc < 0) {
            hy_px_conn_close(c, "error", "writing to the %s: %s",
                             c->dir == HY_PX_IN ? "app" : "app (downstream)", uv_strerror(rc));
            return;
        }
    }
    if (!c->l7)
        check_pressure(c, c->plain);
}

void hy_px_conn_update_reading(struct hy_px_conn *c, struct hy_agent_side *s)
{
    update_reading(c, s);
}

/* ----- timers ----- */

static void on_timer(uv_timer_t *t)
{
    struct hy_px_conn *c = t->data;
    uint64_t now = uv_now(&c->w->base.loop);
    switch (c->phase) {
    case HY_PX_CONNECTING:
        if (c->connected) {
            void (*done)(struct hy_px_conn *, int) = c->connected;
            c->connected = NULL;
            done(c, UV_ETIMEDOUT);
        }
        break;
    case HY_PX_HANDSHAKE:
        hy_series_inc(c->m->tls_fail[c->dir]);
        hy_px_conn_close(c, "tls_failed", "no handshake within %d ms", HY_PX_HANDSHAKE_MS);
        break;
    case HY_PX_RELAY:
        if (now - c->last_ms >= c->idle_ms)
            hy_px_conn_close(c, "idle", "nothing either way for %llu ms",
                             (unsigned long long)c->idle_ms);
        else
            uv_timer_start(&c->timer, on_timer, c->idle_ms - (now - c->last_ms), 0);
        break;
    }
}

void hy_px_conn_handshake(struct hy_px_conn *c)
{
    c->phase = HY_PX_HANDSHAKE;
    uv_timer_start(&c->timer, on_timer, HY_PX_HANDSHAKE_MS, 0);
    update_reading(c, c->tls);
    hy_px_conn_tls_progress(c); /* a client speaks first; what waits is read */
}

void hy_px_conn_relay(struct hy_px_conn *c)
{
    c->phase = HY_PX_RELAY;
    c->last_ms = uv_now(&c->w->base.loop);
    uv_timer_start(&c->timer, on_timer, c->idle_ms, 0);
    update_reading(c, c->tls);
    update_reading(c, c->plain);
    hy_px_conn_tls_progress(c); /* data that came with the handshake */
}

/* ----- connecting the upstream ----- */

static void on_connect(uv_connect_t *req, int status)
{
    struct hy_px_conn *c = req->data;
    if (status == UV_ECANCELED || c->closing || !c->connected)
        return; /* closed (timeout, or the connection ended): already decided */
    void (*done)(struct hy_px_conn *, int) = c->connected;
    c->connected = NULL;
    uv_timer_stop(&c->timer);
    done(c, status);
}

static int start_connect(struct hy_px_conn *c, const struct sockaddr *sa)
{
    int rc = uv_tcp_connect(&c->connect_req, &c->up.tcp, sa, on_connect);
    if (rc == 0)
        uv_tcp_nodelay(&c->up.tcp, 1);
    return rc;
}

/* The worker's cached address of host, port set, into *sa; false if none
 * is fresh. */
static bool dns_lookup(struct hy_px_worker *w, const char *host, uint32_t port,
                       struct sockaddr_storage *sa)
{
    uint64_t now = uv_now(&w->base.loop);
    for (size_t i = 0; i < HY_PX_DNS_SLOTS; i++) {
        const struct hy_px_dns *d = &w->dns[i];
        if (d->host[0] && d->until > now && !strcmp(d->host, host)) {
            *sa = d->sa;
            if (sa->ss_family == AF_INET6)
                ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
            return true;
        }
    }
    return false;
}

/* Remembers host's address: in its own slot, a free or stale one, or the
 * one that goes stale first. */
static void dns_store(struct hy_px_worker *w, const char *host, const struct sockaddr_storage *sa)
{
    struct hy_px_dns *slot = &w->dns[0];
    for (size_t i = 0; i < HY_PX_DNS_SLOTS; i++) {
        struct hy_px_dns *d = &w->dns[i];
        if (!strcmp(d->host, host)) {
            slot = d;
            break;
        }
        if (d->until < slot->until)
            slot = d;
    }
    snprintf(slot->host, sizeof(slot->host), "%s", host);
    slot->sa = *sa;
    slot->until = uv_now(&w->base.loop) + HY_PX_DNS_TTL_MS;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct hy_px_conn *c = req->data;
    c->resolving = false;
    c->handles--;
    if (c->closing) {
        uv_freeaddrinfo(res);
        if (c->handles == 0 && !c->lingering)
            conn_free(c);
        return;
    }
    /* the attempt it was for may have timed out and moved on */
    if (!c->connected || c->resolve_for != c->attempts || c->phase != HY_PX_CONNECTING) {
        uv_freeaddrinfo(res);
        return;
    }
    int rc = status;
    if (rc == 0) {
        /* IPv4 first: zones advertise it more often than not, and "localhost"
         * often lists ::1 first where only 127.0.0.1 listens */
        const struct addrinfo *a = res;
        for (const struct addrinfo *i = res; i; i = i->ai_next)
            if (i->ai_family == AF_INET) {
                a = i;
                break;
            }
        struct sockaddr_storage sa;
        memcpy(&sa, a->ai_addr, a->ai_addrlen);
        dns_store(c->w, c->resolve_host, &sa);
        if (sa.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)c->resolve_port);
        else
            ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)c->resolve_port);
        rc = start_connect(c, (struct sockaddr *)&sa);
    }
    uv_freeaddrinfo(res);
    if (rc < 0) {
        void (*done)(struct hy_px_conn *, int) = c->connected;
        c->connected = NULL;
        uv_timer_stop(&c->timer);
        done(c, rc);
    }
}

int hy_px_conn_connect(struct hy_px_conn *c, const char *host, uint32_t port, uint64_t timeout_ms,
                       void (*done)(struct hy_px_conn *c, int status))
{
    struct sockaddr_storage sa;
    snprintf(c->endpoint, sizeof(c->endpoint), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             (unsigned)port);
    if (port == 0 || port > 65535 || !host[0])
        return UV_EINVAL;
    bool literal = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) == 0 ||
                   uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) == 0 ||
                   dns_lookup(c->w, host, port, &sa);
    bool adopt = false; /* the previous attempt's lookup, still out, is for this host too */
    if (!literal && c->resolving) {
        if (strcmp(c->resolve_host, host) != 0)
            return UV_EBUSY;
        adopt = true;
    }
    c->phase = HY_PX_CONNECTING;
    if (c->dir == HY_PX_IN)
        c->attempts++;         /* outbound counts its own, across endpoints */
    update_reading(c, c->tls); /* what the TLS peer sends waits for the upstream */
    hy_agent_side_init(&c->up, &c->w->base.loop, &c->w->base.defer);
    c->up.tcp.data = c;
    c->up.init = true;
    c->connect_req.data = c;
    c->connected = done;
    c->connect_start_ms = uv_now(&c->w->base.loop);
    int rc;
    if (literal) {
        rc = start_connect(c, (struct sockaddr *)&sa);
    } else if (adopt) {
        c->resolve_for = c->attempts;
        c->resolve_port = port;
        rc = 0;
    } else { /* a host name: resolve it on the loop's thread pool, then connect */
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->resolve_req.data = c;
        c->resolve_for = c->attempts;
        c->resolve_port = port;
        snprintf(c->resolve_host, sizeof(c->resolve_host), "%s", host);
        rc = uv_getaddrinfo(&c->w->base.loop, &c->resolve_req, on_resolved, host, NULL, &hints);
        if (rc == 0) {
            c->resolving = true;
            c->handles++;
        }
    }
    if (rc < 0) {
        c->connected = NULL;
        return rc;
    }
    uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
    return 0;
}

static void on_up_dropped(uv_handle_t *h)
{
    struct hy_px_conn *c = h->data;
    void (*then)(struct hy_px_conn *) = c->up_then;
    c->handles--;
    memset(&c->up, 0, sizeof(c->up));
    if (c->closing) {
        if (c->handles == 0 && !c->lingering)
            conn_free(c);
        return;
    }
    then(c);
}

void hy_px_conn_drop_up(struct hy_px_conn *c, void (*then)(struct hy_px_conn *c))
{
    c->up_then = then;
    c->up.init = false;
    c->handles++;
    hy_agent_side_close(&c->up, on_up_dropped);
}
