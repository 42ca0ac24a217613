/* Passthrough (transparent mode): a connection to a destination outside
 * the mesh is relayed as is, plain bytes both ways, to where the workload
 * meant it to go. The accepted connection (struct hy_px_conn) stays open
 * for it and logs its access line when it ends; the relay reads its
 * socket and one of its own to the destination. Each direction reads into
 * its own buffer and reads again once the write has gone (backpressure);
 * an EOF is passed on as a shutdown; the relay ends when both directions
 * have, or on any error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proxy_int.h"
#include "poison.h"

#define PT_BUF 16384

struct hy_px_pt {
    struct hy_px_pt *prev, *next; /* w->pts */
    struct hy_px_worker *w;
    struct hy_px_conn *c; /* whose down.tcp is side 0; NULL once it went */
    uv_tcp_t up;          /* side 1: the destination */
    uv_connect_t conn;
    uv_timer_t timer; /* the connect's */
    uv_write_t wr[2]; /* to side i */
    uv_shutdown_t sh[2];
    bool eof[2], shut[2];
    unsigned refs; /* up, timer, and requests in flight */
    bool closing, connected;
    uint64_t bytes[2]; /* read from side i */
    char buf[2][PT_BUF];
};

static uv_stream_t *side(struct hy_px_pt *t, int i)
{
    return i == 0 ? (uv_stream_t *)&t->c->down.tcp : (uv_stream_t *)&t->up;
}

static void unref(struct hy_px_pt *t)
{
    if (--t->refs)
        return;
    struct hy_px_worker *w = t->w;
    if (t->prev)
        t->prev->next = t->next;
    else
        w->pts = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

static void on_closed(uv_handle_t *h)
{
    unref(h->data);
}

/* Ends the relay; its connection closes with result (why: printf, or NULL). */
static void pt_close(struct hy_px_pt *t, const char *result, const char *why)
{
    if (t->closing)
        return;
    t->closing = true;
    struct hy_px_conn *c = t->c;
    if (c) {
        t->c = NULL;
        c->pt = NULL;
        c->bytes_up = t->bytes[0];
        c->bytes_down = t->bytes[1];
        if (why)
            hy_px_conn_close(c, result, "%s", why);
        else
            hy_px_conn_close(c, result, NULL);
    }
    uv_close((uv_handle_t *)&t->up, on_closed);
    uv_close((uv_handle_t *)&t->timer, on_closed);
}

void hy_px_passthrough_detach(struct hy_px_conn *c)
{
    struct hy_px_pt *t = c->pt;
    c->pt = NULL;
    c->bytes_up = t->bytes[0];
    c->bytes_down = t->bytes[1];
    t->c = NULL; /* it is closing on its own */
    pt_close(t, "shutdown", NULL);
}

static void on_alloc_down(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_px_conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->pt->buf[0], PT_BUF);
}

static void on_alloc_up(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_px_pt *t = h->data;
    (void)hint;
    *buf = uv_buf_init(t->buf[1], PT_BUF);
}

static void on_read_down(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void on_read_up(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static int read_start(struct hy_px_pt *t, int i)
{
    return i == 0 ? uv_read_start(side(t, 0), on_alloc_down, on_read_down)
                  : uv_read_start(side(t, 1), on_alloc_up, on_read_up);
}

static void on_shut(uv_shutdown_t *req, int status)
{
    struct hy_px_pt *t = req->data;
    int to = req == &t->sh[0] ? 0 : 1;
    if (!t->closing && status < 0) {
        pt_close(t, "error", uv_strerror(status));
    } else if (!t->closing) {
        t->shut[to] = true;
        if (t->shut[0] && t->shut[1]) /* both ways ended */
            pt_close(t, "passthrough", NULL);
    }
    unref(t);
}

static void on_written(uv_write_t *req, int status)
{
    struct hy_px_pt *t = req->data;
    int to = req == &t->wr[0] ? 0 : 1, from = 1 - to;
    if (!t->closing && status < 0)
        pt_close(t, "error", uv_strerror(status));
    else if (!t->closing && read_start(t, from) < 0)
        pt_close(t, "error", "cannot read on");
    unref(t);
}

/* n bytes of buf, or EOF or an error, read from side from. */
static void got(struct hy_px_pt *t, int from, ssize_t n, const uv_buf_t *buf)
{
    int to = 1 - from;
    if (t->closing || n == 0)
        return;
    if (n == UV_EOF) {
        uv_read_stop(side(t, from));
        t->eof[from] = true;
        t->sh[to].data = t;
        int rc = uv_shutdown(&t->sh[to], side(t, to), on_shut);
        if (rc < 0)
            pt_close(t, "error", uv_strerror(rc));
        else
            t->refs++;
        return;
    }
    if (n < 0) {
        pt_close(t, "error", uv_strerror((int)n));
        return;
    }
    t->bytes[from] += (uint64_t)n;
    uv_read_stop(side(t, from)); /* until the other side took it */
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
    t->wr[to].data = t;
    int rc = uv_write(&t->wr[to], side(t, to), &b, 1, on_written);
    if (rc < 0)
        pt_close(t, "error", uv_strerror(rc));
    else
        t->refs++;
}

static void on_read_down(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_px_conn *c = st->data;
    if (c->pt)
        got(c->pt, 0, n, buf);
}

static void on_read_up(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    got(st->data, 1, n, buf);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct hy_px_pt *t = req->data;
    if (!t->closing && status < 0) {
        pt_close(t, "upstream_failed", uv_strerror(status));
    } else if (!t->closing) {
        t->connected = true;
        uv_timer_stop(&t->timer);
        if (read_start(t, 0) < 0 || read_start(t, 1) < 0)
            pt_close(t, "error", "cannot read");
    }
    unref(t);
}

static void on_timeout(uv_timer_t *h)
{
    struct hy_px_pt *t = h->data;
    if (!t->connected)
        pt_close(t, "upstream_failed", "connect timed out");
}

int hy_px_passthrough_start(struct hy_px_conn *c, const struct sockaddr_storage *dest)
{
    struct hy_px_worker *w = c->w;
    struct hy_px_pt *t = calloc(1, sizeof(*t));
    if (!t)
        return UV_ENOMEM;
    t->w = w;
    t->c = c;
    c->pt = t;
    uv_tcp_init(&w->base.loop, &t->up);
    uv_timer_init(&w->base.loop, &t->timer);
    t->up.data = t->timer.data = t->conn.data = t;
    t->refs = 2;
    t->next = w->pts;
    if (w->pts)
        w->pts->prev = t;
    w->pts = t;
    uv_tcp_nodelay(&t->up, 1);
    int rc = uv_tcp_connect(&t->conn, &t->up, (const struct sockaddr *)dest, on_connected);
    if (rc < 0) {
        pt_close(t, "upstream_failed", uv_strerror(rc));
        return 0; /* closed, and c with it */
    }
    t->refs++;
    uv_timer_start(&t->timer, on_timeout, HY_PX_CONNECT_MS, 0);
    return 0;
}

void hy_px_passthrough_stop(struct hy_px_worker *w)
{
    for (struct hy_px_pt *t = w->pts; t; t = t->next)
        pt_close(t, "shutdown", NULL);
}
