/* The ingress's data path. A connection from a remote zone's sidecar must
 * open with a TLS ClientHello whose SNI names a service this zone serves
 * (hy_sni_for of service and mesh); the ingress reads it without
 * terminating TLS, connects to a local endpoint of that service (round
 * robin, the next on a failed connect), replays the bytes it read and
 * relays both ways, each direction ending on its own. Anything else (not
 * TLS, a malformed ClientHello, no SNI, an SNI no route has, a ClientHello
 * too big) is closed, counted and logged with not one byte forwarded: the
 * ingress only ever reaches the endpoints its routes list, and of those
 * never this host itself (guard.c).
 *
 * Each worker thread has its own loop and listening socket on the port
 * (SO_REUSEPORT); a connection lives on the worker that accepted it.
 *
 * Once the ClientHello is replayed, the sockets leave libuv's stream
 * handles (dup, then close) for a uv_poll each, and each direction moves
 * its bytes as --relay says: splice(2) through a pipe, never entering user
 * space; copy, recv into a buffer and send; adaptive, copy while messages
 * are small and splice while reads come back full. Either way one read per
 * direction is in flight: its source is not read again until it is all
 * written, and a read that did not fill the buffer is not repeated until
 * epoll says there is more, so a small message costs one read and one
 * write. Where the sockets cannot be taken over, the bytes are copied
 * through libuv's streams. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane.pb-c.h"
#include "error.h"
#include "agent_side.h"
#include "ingress.h"
#include "metrics.h"
#include "net.h"
#include "sni.h"
#include "poison.h"

#define READ_SIZE 16384
#define PIPE_CAP 65536    /* a pipe's default capacity: what one direction splices at once */
#define ADAPT_SMALL 4096  /* a splice that moved less than this was a small message */
#define ADAPT_TO_SPLICE 2 /* adaptive: full copying reads in a row before it splices */
#define ADAPT_TO_COPY 4   /* and small splices in a row before it copies again */

enum phase { HELLO, CONNECTING, RELAY };

/* The relay on the sockets: direction d moves fd[d] -> fd[1 - d] (0:
 * downstream to upstream, 1: back), through its pipe with splice or its
 * buffer with recv and send. */
struct dir {
    int pipe[2];   /* read end, write end; -1 until it splices */
    bool no_pipe;  /* pipe2 failed: it copies */
    size_t inpipe; /* bytes in the pipe, not yet written */
    uint8_t *buf;  /* copying: buf[off..len) read, not yet written */
    size_t cap, off, len;
    bool splicing;   /* splice now, else copy */
    unsigned streak; /* adaptive: reads in a row that argue for the other way */
    bool eof;        /* the source sent EOF */
    bool shut;       /* and the destination was shut down for writing */
};

struct spl {
    int fd[2];
    uv_poll_t poll[2];
    bool poll_init[2];
    int events[2];
    struct dir d[2];
};

struct hy_ing_conn {
    struct hy_ing *g;
    struct hy_ing_worker *w; /* the thread it lives on */
    struct spl *spl;         /* relaying on the sockets (not libuv's streams) */
    struct hy_ing_conn *prev, *next;
    struct hy_agent_side down, up;
    enum phase phase;
    bool closing;
    unsigned handles;
    uv_timer_t timer;
    uv_connect_t connect_req;
    struct hy_ing_routes *routes; /* a reference, once routed */
    const Hypha__V1__DpIngressRoute *route;
    size_t next_ep;
    unsigned attempts;
    uint64_t start_ms, last_ms;
    uint64_t up_bytes, down_bytes;
    uint64_t spliced; /* of those, moved by splice */
    char peer[64], sni[HY_SNI_MAX], upstream[80], why[200];
    const char *result;
    uint8_t hello[HY_SNI_HELLO_MAX + 1024]; /* what came before the route was known */
    size_t hlen;
    uint8_t buf[READ_SIZE];
};

static void spl_free(struct spl *x)
{
    if (!x)
        return;
    for (int i = 0; i < 2; i++) {
        if (x->fd[i] >= 0)
            close(x->fd[i]);
        for (int k = 0; k < 2; k++)
            if (x->d[i].pipe[k] >= 0)
                close(x->d[i].pipe[k]);
    }
    free(x);
}

static void conn_free(struct hy_ing_conn *c)
{
    struct hy_ing_worker *w = c->w;
    spl_free(c->spl);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hy_ing_routes_unref(c->routes);
    free(c);
}

static void on_closed(uv_handle_t *h)
{
    struct hy_ing_conn *c = h->data;
    if (--c->handles == 0 && c->closing) /* splice closes the stream handles early */
        conn_free(c);
}

static void close_handle(struct hy_ing_conn *c, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    c->handles++;
    if (h == (uv_handle_t *)&c->down.tcp)
        hy_agent_side_close(&c->down, on_closed);
    else if (h == (uv_handle_t *)&c->up.tcp)
        hy_agent_side_close(&c->up, on_closed);
    else
        uv_close(h, on_closed);
}

static void conn_close(struct hy_ing_conn *c, const char *result, const char *why, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_close(struct hy_ing_conn *c, const char *result, const char *why, ...)
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
    struct hy_ing *g = c->g;
    hy_series_add(g->m.active, -1);
    const Hypha__V1__DpIngressRoute *r = c->route;
    hy_log(strcmp(result, "closed") ? HY_LOG_INFO : HY_LOG_DEBUG, "ingress",
           "access peer=%s sni=%s service=%s%s%s upstream=%s attempts=%u sent=%llu received=%llu "
           "relay=%s spliced=%llu duration=%.3fs result=%s%s%s",
           c->peer, c->sni[0] ? c->sni : "-", r ? r->mesh : "-", r ? "/" : "", r ? r->service : "",
           c->upstream[0] ? c->upstream : "-", c->attempts, (unsigned long long)c->up_bytes,
           (unsigned long long)c->down_bytes,
           c->spl              ? hy_ing_relay_name(c->g->relay_mode)
           : c->phase == RELAY ? "copy"
                               : "-",
           (unsigned long long)c->spliced,
           (double)(uv_now(&c->w->base.loop) - c->start_ms) / 1000.0, result, c->why[0] ? ": " : "",
           c->why);
    close_handle(c, (uv_handle_t *)&c->timer);
    close_handle(c, (uv_handle_t *)&c->down.tcp);
    if (c->up.init)
        close_handle(c, (uv_handle_t *)&c->up.tcp);
    for (int i = 0; c->spl && i < 2; i++)
        if (c->spl->poll_init[i])
            close_handle(c, (uv_handle_t *)&c->spl->poll[i]);
}

/* ----- relay ----- */

static struct hy_agent_side *other(struct hy_ing_conn *c, struct hy_agent_side *s)
{
    return s == &c->down ? &c->up : &c->down;
}

static void update_reading(struct hy_ing_conn *c, struct hy_agent_side *s);

static void on_write(struct hy_agent_side *s, int status)
{
    struct hy_ing_conn *c = s->tcp.data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, "error", "writing to the %s: %s", s == &c->up ? "upstream" : "downstream",
                   uv_strerror(status));
        return;
    }
    struct hy_agent_side *src = other(c, s);
    if (hy_agent_side_relieved(s, src))
        update_reading(c, src);
}

static int write_to(struct hy_agent_side *s, const void *data, size_t len)
{
    return hy_agent_side_write(s, data, len, on_write);
}

static void maybe_done(struct hy_ing_conn *c)
{
    if (!c->closing && c->down.eof && c->up.eof && c->down.shut_done && c->up.shut_done)
        conn_close(c, "ok", NULL);
}

static void on_shut(struct hy_agent_side *s)
{
    struct hy_ing_conn *c = s->tcp.data;
    if (!c->closing)
        maybe_done(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_ing_conn *c = h->data;
    (void)hint;
    if (c->phase == HELLO) /* the ClientHello gathers in place */
        *buf = uv_buf_init((char *)c->hello + c->hlen, (unsigned)(sizeof(c->hello) - c->hlen));
    else
        *buf = uv_buf_init((char *)c->buf, sizeof(c->buf));
}

static void on_hello_read(struct hy_ing_conn *c, ssize_t n);

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_ing_conn *c = st->data;
    if (c->closing || n == 0)
        return;
    if (c->phase == HELLO) {
        on_hello_read(c, n);
        return;
    }
    struct hy_agent_side *s = (uv_tcp_t *)st == &c->down.tcp ? &c->down : &c->up;
    c->last_ms = uv_now(&c->w->base.loop);
    if (n == UV_EOF) {
        s->eof = true;
        update_reading(c, s);
        hy_agent_side_shut(other(c, s), on_shut);
        return;
    }
    if (n < 0) {
        conn_close(c, "error", "reading from the %s: %s", s == &c->up ? "upstream" : "downstream",
                   uv_strerror((int)n));
        return;
    }
    if (s == &c->down)
        c->up_bytes += (uint64_t)n;
    else
        c->down_bytes += (uint64_t)n;
    hy_series_add(c->g->m.bytes, (double)n);
    struct hy_agent_side *dst = other(c, s);
    int rc = write_to(dst, buf->base, (size_t)n);
    if (rc < 0) {
        conn_close(c, "error", "writing: %s", uv_strerror(rc));
        return;
    }
    if (hy_agent_side_pressure(dst, s))
        update_reading(c, s);
}

static void update_reading(struct hy_ing_conn *c, struct hy_agent_side *s)
{
    if (c->closing || !s->init)
        return;
    bool want =
        !s->eof && !s->paused && (c->phase == RELAY || (c->phase == HELLO && s == &c->down));
    hy_agent_side_read(s, want, on_alloc, on_read);
}

static void on_up_closed(uv_handle_t *h);

static void on_timer(uv_timer_t *t)
{
    struct hy_ing_conn *c = t->data;
    uint64_t now = uv_now(&c->w->base.loop);
    switch (c->phase) {
    case HELLO:
        conn_close(c, "no_hello", "no complete ClientHello within %d ms", HY_ING_HELLO_MS);
        break;
    case CONNECTING: /* closing the socket cancels the connect; then the next endpoint */
        snprintf(c->why, sizeof(c->why), "%s: no connection within %d ms", c->upstream,
                 HY_ING_CONNECT_MS);
        c->up.init = false;
        c->handles++;
        hy_agent_side_close(&c->up, on_up_closed);
        break;
    case RELAY:
        if (now - c->last_ms >= HY_ING_IDLE_MS)
            conn_close(c, "idle", "nothing either way for %u ms", HY_ING_IDLE_MS);
        else
            uv_timer_start(&c->timer, on_timer, HY_ING_IDLE_MS - (now - c->last_ms), 0);
        break;
    }
}

/* ----- routing ----- */

static void try_connect(struct hy_ing_conn *c);

static void on_up_closed(uv_handle_t *h)
{
    struct hy_ing_conn *c = h->data;
    c->handles--;
    memset(&c->up, 0, sizeof(c->up));
    if (c->closing) {
        if (c->handles == 0)
            conn_free(c);
        return;
    }
    /* its connect failed: every worker passes it over for a while */
    hy_agent_eps_failed(&c->g->failed, c->upstream);
    try_connect(c);
}

/* ----- the relay on the sockets themselves ----- */

static void spl_update(struct hy_ing_conn *c);

static const char *dir_name(int d, bool dst)
{
    return (d == 0) != dst ? "downstream" : "upstream";
}

/* Direction d's pipe, made on first use: false when it cannot be. */
static bool dir_pipe(struct dir *r)
{
    if (r->pipe[0] >= 0)
        return true;
    if (r->no_pipe)
        return false;
    if (pipe2(r->pipe, O_NONBLOCK | O_CLOEXEC) == 0)
        return true;
    hy_log(HY_LOG_DEBUG, "ingress", "no pipe for splice (%s): copying", strerror(errno));
    r->pipe[0] = r->pipe[1] = -1;
    r->no_pipe = true;
    return false;
}

/* Writes what direction d holds: false on an error (the connection is
 * closing); *left true when bytes stay for a writable socket. */
static bool dir_flush(struct hy_ing_conn *c, int d, bool *left)
{
    struct dir *r = &c->spl->d[d];
    int dst = c->spl->fd[1 - d];
    *left = false;
    while (r->inpipe || r->off < r->len) {
        ssize_t n =
            r->inpipe
                ? splice(r->pipe[0], NULL, dst, NULL, r->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                : send(dst, r->buf + r->off, r->len - r->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0 && r->inpipe) {
            r->inpipe -= (size_t)n;
        } else if (n > 0) {
            r->off += (size_t)n;
            if (r->off == r->len)
                r->off = r->len = 0;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            *left = true;
            return true;
        } else {
            conn_close(c, "error", "writing to the %s: %s", dir_name(d, true),
                       n < 0 ? strerror(errno) : "nothing written");
            return false;
        }
    }
    return true;
}

/* Moves what it can in direction d: read (splice into its pipe, or recv
 * into its buffer), write it all, again while reads come back full. One
 * read in flight per direction: while it is not all written the source is
 * not read (backpressure), the destination waited on for writable.
 * Returns false when the connection ended. */
static bool spl_pump(struct hy_ing_conn *c, int d)
{
    struct spl *x = c->spl;
    struct dir *r = &x->d[d];
    bool more = true;
    for (;;) {
        bool left;
        if (!dir_flush(c, d, &left))
            return false;
        if (left)
            break;
        if (r->eof) {
            if (!r->shut) {
                shutdown(x->fd[1 - d], SHUT_WR);
                r->shut = true;
            }
            break;
        }
        if (!more) /* the last read drained the socket: epoll says when there is more */
            break;
        /* adaptive: splice once reads come back full, copy once they are small again */
        if (c->g->relay_mode == HY_ING_RELAY_ADAPTIVE) {
            if (!r->splicing && r->streak >= ADAPT_TO_SPLICE && dir_pipe(r))
                r->splicing = true, r->streak = 0;
            else if (r->splicing && r->streak >= ADAPT_TO_COPY)
                r->splicing = false, r->streak = 0;
        }
        ssize_t n;
        size_t want = r->splicing ? PIPE_CAP : r->cap;
        if (r->splicing)
            n = splice(x->fd[d], NULL, r->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        else
            n = recv(x->fd[d], r->buf, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            conn_close(c, "error", "reading from the %s: %s", dir_name(d, false), strerror(errno));
            return false;
        }
        c->last_ms = uv_now(&c->w->base.loop);
        if (n == 0) {
            r->eof = true;
            continue;
        }
        if (r->splicing) {
            r->inpipe = (size_t)n;
            c->spliced += (uint64_t)n;
            more = (size_t)n >= ADAPT_SMALL;
            r->streak = more ? 0 : r->streak + 1;
        } else {
            r->len = (size_t)n;
            more = (size_t)n == want;
            r->streak = more ? r->streak + 1 : 0;
        }
        if (d == 0)
            c->up_bytes += (uint64_t)n;
        else
            c->down_bytes += (uint64_t)n;
        hy_series_add(c->g->m.bytes, (double)n);
    }
    if (x->d[0].shut && x->d[1].shut) {
        conn_close(c, "ok", NULL);
        return false;
    }
    return true;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct hy_ing_conn *c = h->data;
    struct spl *x = c->spl;
    int i = h == &x->poll[0] ? 0 : 1;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, "error", "%s: %s", i ? "upstream" : "downstream", uv_strerror(status));
        return;
    }
    /* fd[i] is the source of direction i and the destination of 1 - i */
    if ((events & UV_READABLE) && !spl_pump(c, i))
        return;
    if ((events & UV_WRITABLE) && !spl_pump(c, 1 - i))
        return;
    spl_update(c);
}

/* What each socket waits for: readable while its direction holds nothing
 * unwritten, writable while the other direction holds bytes for it. */
static void spl_update(struct hy_ing_conn *c)
{
    struct spl *x = c->spl;
    for (int i = 0; i < 2; i++) {
        const struct dir *r = &x->d[i], *o = &x->d[1 - i];
        int ev = 0;
        if (!r->eof && !r->inpipe && r->off == r->len)
            ev |= UV_READABLE;
        if (o->inpipe || o->off < o->len)
            ev |= UV_WRITABLE;
        if (ev == x->events[i])
            continue;
        x->events[i] = ev;
        if (ev)
            uv_poll_start(&x->poll[i], ev, on_poll);
        else
            uv_poll_stop(&x->poll[i]);
    }
}

/* Takes both sockets from libuv's streams for a uv_poll each: false
 * (nothing changed) when it cannot; true once the connection relays on the
 * sockets (or ended trying). */
static bool spl_start(struct hy_ing_conn *c)
{
    struct spl *x = calloc(1, sizeof(*x));
    if (!x)
        return false;
    x->fd[0] = x->fd[1] = -1;
    for (int i = 0; i < 2; i++)
        x->d[i].pipe[0] = x->d[i].pipe[1] = -1;
    /* the connection's buffers, done with: ClientHello and stream reads */
    x->d[0].buf = c->buf, x->d[0].cap = sizeof(c->buf);
    x->d[1].buf = c->hello, x->d[1].cap = sizeof(c->hello);
    uv_os_fd_t fd[2];
    bool ok = uv_fileno((uv_handle_t *)&c->down.tcp, &fd[0]) == 0 &&
              uv_fileno((uv_handle_t *)&c->up.tcp, &fd[1]) == 0;
    for (int i = 0; ok && i < 2; i++)
        ok = (x->fd[i] = fcntl(fd[i], F_DUPFD_CLOEXEC, 0)) >= 0 &&
             (c->g->relay_mode != HY_ING_RELAY_SPLICE || dir_pipe(&x->d[i]));
    if (!ok) {
        hy_log(HY_LOG_DEBUG, "ingress", "cannot relay on the sockets (%s): copying",
               strerror(errno));
        spl_free(x);
        return false;
    }
    for (int i = 0; i < 2; i++)
        x->d[i].splicing = c->g->relay_mode == HY_ING_RELAY_SPLICE;
    c->spl = x;
    /* the stream handles go (closing their fds); the dups carry on */
    uv_read_stop((uv_stream_t *)&c->down.tcp);
    uv_read_stop((uv_stream_t *)&c->up.tcp);
    close_handle(c, (uv_handle_t *)&c->down.tcp);
    close_handle(c, (uv_handle_t *)&c->up.tcp);
    for (int i = 0; i < 2; i++) {
        int rc = uv_poll_init_socket(&c->w->base.loop, &x->poll[i], x->fd[i]);
        if (rc < 0) {
            conn_close(c, "error", "cannot poll the sockets: %s", uv_strerror(rc));
            return true;
        }
        x->poll[i].data = c;
        x->poll_init[i] = true;
    }
    spl_update(c);
    return true;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct hy_ing_conn *c = req->data;
    if (status == UV_ECANCELED || c->closing)
        return;
    uv_timer_stop(&c->timer);
    if (status < 0) {
        hy_log(HY_LOG_DEBUG, "ingress", "cannot connect to %s: %s", c->upstream,
               uv_strerror(status));
        snprintf(c->why, sizeof(c->why), "%s: %s", c->upstream, uv_strerror(status));
        c->up.init = false;
        c->handles++;
        hy_agent_side_close(&c->up, on_up_closed); /* then the next endpoint */
        return;
    }
    uv_tcp_nodelay(&c->up.tcp, 1);
    c->why[0] = '\0';
    c->phase = RELAY;
    c->last_ms = uv_now(&c->w->base.loop);
    c->up_bytes += c->hlen;
    hy_series_add(c->g->m.bytes, (double)c->hlen);
    uv_timer_start(&c->timer, on_timer, HY_ING_IDLE_MS, 0);
    /* the ClientHello, as it came: at once into a fresh socket's buffer, so
     * that the relay can take the socket over; otherwise queued */
    size_t done = 0;
    {
        uv_buf_t b = uv_buf_init((char *)c->hello, (unsigned)c->hlen);
        int w = uv_try_write((uv_stream_t *)&c->up.tcp, &b, 1);
        done = w > 0 ? (size_t)w : 0;
        if (done == c->hlen && spl_start(c))
            return;
    }
    int rc = done == c->hlen ? 0 : write_to(&c->up, c->hello + done, c->hlen - done);
    if (rc < 0) {
        conn_close(c, "error", "writing to the upstream: %s", uv_strerror(rc));
        return;
    }
    update_reading(c, &c->down);
    update_reading(c, &c->up);
}

static void try_connect(struct hy_ing_conn *c)
{
    const Hypha__V1__DpIngressRoute *r = c->route;
    size_t max = r->n_endpoints < HY_ING_ATTEMPTS ? r->n_endpoints : HY_ING_ATTEMPTS;
    if (c->attempts >= max) {
        char last[sizeof(c->why)];
        snprintf(last, sizeof(last), "%s", c->why);
        hy_series_inc(c->g->m.upstream_failed);
        conn_close(c, "upstream_failed", "%u endpoints of %s/%s failed, the last %s", c->attempts,
                   r->mesh, r->service, last);
        return;
    }
    /* the next endpoint in turn whose connect did not fail lately (all did:
     * the next in turn) */
    uint64_t now = hy_agent_now_ms();
    const Hypha__V1__DpEndpoint *e = r->endpoints[c->next_ep % r->n_endpoints];
    pthread_mutex_lock(&c->g->failed.lock);
    for (size_t k = 0; k < r->n_endpoints; k++) {
        const Hypha__V1__DpEndpoint *x = r->endpoints[(c->next_ep + k) % r->n_endpoints];
        char key[sizeof(c->upstream)];
        hy_agent_endpoint_key(x, key, sizeof(key));
        if (!hy_agent_ep_avoided(hy_agent_eps_slot(&c->g->failed, key, false, now), now)) {
            e = x;
            c->next_ep += k;
            break;
        }
    }
    pthread_mutex_unlock(&c->g->failed.lock);
    c->next_ep++;
    c->attempts++;
    struct sockaddr_storage sa;
    hy_agent_endpoint_key(e, c->upstream, sizeof(c->upstream));
    if (hy_net_parse_ip(e->address, e->port, &sa) != 0) {
        snprintf(c->why, sizeof(c->why), "%s: not an IP address", c->upstream);
        try_connect(c);
        return;
    }
    /* the guard dropped such endpoints when the routes came; this checks
     * the address actually dialled, whatever produced it */
    enum hy_ing_refusal no = hy_ing_guard_check(c->g, c->routes->local, (struct sockaddr *)&sa);
    if (no != HY_ING_ALLOWED) {
        hy_series_inc(c->g->m.endpoints_refused[no]);
        hy_log(HY_LOG_WARN, "ingress", "peer=%s sni=%s: refused to connect to %s: reason=%s",
               c->peer, c->sni, c->upstream, hy_ing_refusal_name(no));
        snprintf(c->why, sizeof(c->why), "%s: refused (%s)", c->upstream, hy_ing_refusal_name(no));
        try_connect(c);
        return;
    }
    hy_agent_side_init(&c->up, &c->w->base.loop, &c->w->base.defer);
    c->up.tcp.data = c;
    c->up.init = true;
    c->connect_req.data = c;
    c->phase = CONNECTING;
    int rc = uv_tcp_connect(&c->connect_req, &c->up.tcp, (struct sockaddr *)&sa, on_connect);
    if (rc < 0) {
        snprintf(c->why, sizeof(c->why), "%s: %s", c->upstream, uv_strerror(rc));
        c->up.init = false;
        c->handles++;
        hy_agent_side_close(&c->up, on_up_closed);
        return;
    }
    uv_timer_start(&c->timer, on_timer, HY_ING_CONNECT_MS, 0);
}

static void refuse(struct hy_ing_conn *c, int which, const char *result, const char *why)
{
    hy_series_inc(c->g->m.refused[which]);
    conn_close(c, result, "%s", why);
}

static void on_hello_read(struct hy_ing_conn *c, ssize_t n)
{
    if (n == UV_EOF && c->hlen == 0) { /* opened and closed: a TCP health check */
        conn_close(c, "closed", "the client closed before sending anything");
        return;
    }
    if (n == UV_EOF) {
        conn_close(c, "no_hello", "the client closed after %zu bytes, before a ClientHello",
                   c->hlen);
        return;
    }
    if (n < 0) {
        conn_close(c, "error", "reading the ClientHello: %s", uv_strerror((int)n));
        return;
    }
    c->hlen += (size_t)n;
    const char *why = NULL;
    int rc = hy_sni_parse(c->hello, c->hlen, c->sni, &why);
    if (rc == HY_SNI_MORE && c->hlen == sizeof(c->hello))
        rc = HY_SNI_TOO_BIG, why = "the ClientHello is too large";
    switch (rc) {
    case HY_SNI_MORE:
        return;
    case HY_SNI_NOT_TLS:
        refuse(c, 0, "not_tls", why);
        return;
    case HY_SNI_MALFORMED:
        refuse(c, 1, "malformed", why);
        return;
    case HY_SNI_NONE:
        refuse(c, 2, "no_sni", why);
        return;
    case HY_SNI_TOO_BIG:
        refuse(c, 4, "too_big", why);
        return;
    default:
        break;
    }
    struct hy_ing_worker *w = c->w;
    if (hy_agent_current_generation(&c->g->a.current) !=
        w->gen) { /* new routes: the only time a worker takes the lock */
        hy_ing_routes_unref(w->routes);
        w->routes = hy_ing_routes_get(&c->g->a.current, &w->gen);
    }
    const Hypha__V1__DpIngressConfig *cf = w->routes ? w->routes->c : NULL;
    for (size_t i = 0; cf && i < cf->n_routes && !c->route; i++)
        if (!strcmp(cf->routes[i]->sni, c->sni))
            c->route = cf->routes[i];
    if (!c->route) {
        refuse(c, 3, "unknown_sni",
               cf ? "no service of this zone has that name" : "no routes from the zone yet");
        return;
    }
    if (!c->route->n_endpoints) {
        c->route = NULL;
        refuse(c, 3, "unknown_sni", "the service has no endpoint in this zone");
        return;
    }
    c->routes = hy_ing_routes_ref(w->routes);
    c->next_ep = w->rr++; /* round robin across connections */
    uv_read_stop((uv_stream_t *)&c->down.tcp);
    c->down.reading = false;
    uv_timer_stop(&c->timer);
    try_connect(c);
}

/* ----- the listener ----- */

static void on_accept(uv_stream_t *server, int status)
{
    struct hy_ing_worker *w = server->data;
    struct hy_ing *g = w->g;
    if (status < 0) {
        hy_log(HY_LOG_WARN, "ingress", "accept: %s", uv_strerror(status));
        return;
    }
    struct hy_ing_conn *c = w->base.stopped ? NULL : calloc(1, sizeof(*c));
    if (!c) {
        if (hy_net_refuse(server) && !w->base.stopped)
            hy_log(HY_LOG_WARN, "ingress", "out of memory: refusing a connection");
        return;
    }
    c->g = g;
    c->w = w;
    c->start_ms = c->last_ms = uv_now(&w->base.loop);
    hy_agent_side_init(&c->down, &w->base.loop, &w->base.defer);
    c->down.tcp.data = c;
    c->down.init = true;
    uv_timer_init(&w->base.loop, &c->timer);
    c->timer.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    hy_series_inc(g->m.accepted);
    hy_series_add(g->m.active, 1);
    snprintf(c->peer, sizeof(c->peer), "-");
    int rc = uv_accept(server, (uv_stream_t *)&c->down.tcp);
    if (rc < 0) {
        conn_close(c, "error", "accept: %s", uv_strerror(rc));
        return;
    }
    uv_tcp_nodelay(&c->down.tcp, 1);
    hy_net_peer_name(&c->down.tcp, c->peer, sizeof(c->peer));
    c->phase = HELLO;
    uv_timer_start(&c->timer, on_timer, HY_ING_HELLO_MS, 0);
    update_reading(c, &c->down);
}

/* ----- workers ----- */

static struct hy_ing_worker *ing_worker(struct hy_agent_worker *base)
{
    _Static_assert(offsetof(struct hy_ing_worker, base) == 0, "base comes first");
    return (struct hy_ing_worker *)base;
}

/* Its listening socket, before its thread starts: errors come at once. */
static int worker_open(struct hy_agent_worker *base)
{
    struct hy_ing_worker *w = ing_worker(base);
    struct hy_ing *g = w->g = base->pool->owner;
    uv_tcp_init(&base->loop, &w->listener);
    w->listener.data = w;
    int rc = hy_net_listen_reuseport(&w->listener, g->relay_host, g->relay_port, on_accept);
    if (rc < 0)
        uv_close((uv_handle_t *)&w->listener, NULL);
    return rc;
}

static void worker_stop(struct hy_agent_worker *base)
{
    struct hy_ing_worker *w = ing_worker(base);
    uv_close((uv_handle_t *)&w->listener, NULL);
    for (struct hy_ing_conn *c = w->conns; c; c = c->next)
        conn_close(c, "shutdown", NULL);
}

static void worker_end(struct hy_agent_worker *base)
{
    struct hy_ing_worker *w = ing_worker(base);
    hy_ing_routes_unref(w->routes);
    w->routes = NULL;
}

static void worker_fini(struct hy_agent_worker *base)
{
    if (ing_worker(base)->conns)
        hy_log(HY_LOG_ERROR, "ingress", "worker %u ended with connections open (a bug)",
               base->index);
}

static const struct hy_agent_pool_ops worker_ops = {
    .size = sizeof(struct hy_ing_worker),
    .open = worker_open,
    .stop = worker_stop,
    .end = worker_end,
    .fini = worker_fini,
};

const char *hy_ing_relay_name(enum hy_ing_relay_mode m)
{
    switch (m) {
    case HY_ING_RELAY_SPLICE:
        return "splice";
    case HY_ING_RELAY_COPY:
        return "copy";
    default:
        return "adaptive";
    }
}

int hy_ing_relay_start(struct hy_ing *g)
{
    const char *mode = g->cfg->relay ? g->cfg->relay : "adaptive";
    if (!strcmp(mode, "adaptive"))
        g->relay_mode = HY_ING_RELAY_ADAPTIVE;
    else if (!strcmp(mode, "splice"))
        g->relay_mode = HY_ING_RELAY_SPLICE;
    else if (!strcmp(mode, "copy"))
        g->relay_mode = HY_ING_RELAY_COPY;
    else {
        hy_log(HY_LOG_ERROR, "ingress", "--relay \"%.100s\": expected adaptive, splice or copy",
               mode);
        return HY_EINVAL;
    }
    if (!g->cfg->splice)
        g->relay_mode = HY_ING_RELAY_COPY;
    const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)g->a.file.res->spec;
    const char *host = zi->networking->address;
    unsigned port = zi->networking->port;
    struct sockaddr_storage sa;
    if (hy_net_parse_ip(host, port, &sa) != 0)
        host = "0.0.0.0"; /* a host name: listen everywhere */
    g->relay_host = host;
    g->relay_port = port; /* the guard refuses it: a loop */
    unsigned n = hy_agent_pool_count((unsigned)g->cfg->base.workers, HY_ING_MAX_WORKERS);
    int rc = hy_agent_pool_start(&g->workers, &worker_ops, g, n);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "ingress", "cannot listen on %s:%u for cross-zone traffic: %s", host,
               port, hy_strerror(rc));
        hy_ing_relay_stop(g); /* the workers that run end; relay_free joins them */
        return HY_EINVAL;
    }
    g->listening = true;
    hy_log(HY_LOG_INFO, "ingress",
           "listening for cross-zone traffic on %s:%u (%u worker%s, relay=%s)", host, port, n,
           n == 1 ? "" : "s", hy_ing_relay_name(g->relay_mode));
    return 0;
}

void hy_ing_relay_stop(struct hy_ing *g)
{
    g->listening = false;
    hy_agent_pool_stop(&g->workers);
}

void hy_ing_relay_free(struct hy_ing *g)
{
    hy_agent_pool_free(&g->workers);
}
