/* Passthrough (transparent mode): a connection to a destination outside
 * the mesh is relayed as is, plain bytes both ways, to where the workload
 * meant it to go. Each direction reads into its own buffer and reads again
 * once the write has gone (backpressure); an EOF is passed on as a
 * shutdown; the relay ends when both directions have, or on any error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proxy_int.h"
#include "poison.h"

#define PT_BUF 16384

struct pt_side {
    uv_tcp_t tcp;
    uv_write_t wr;
    uv_shutdown_t sh;
    bool eof, shut; /* it sent its FIN; our FIN to it is done */
    uint64_t bytes; /* read from it */
    char buf[PT_BUF];
};

struct hy_px_pt {
    struct hy_px_pt *prev, *next; /* w->pts */
    struct hy_px_worker *w;
    struct pt_side s[2]; /* 0: the workload, 1: the destination */
    uv_connect_t conn;
    uv_timer_t timer;
    unsigned handles;
    bool closing, connected;
    uint64_t start_ms;
    char dest[64];
};

static void pt_free(struct hy_px_pt *t)
{
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
    struct hy_px_pt *t = h->data;
    if (--t->handles == 0)
        pt_free(t);
}

static void pt_close(struct hy_px_pt *t, const char *result, const char *why)
{
    if (t->closing)
        return;
    t->closing = true;
    hy_log(HY_LOG_INFO, "dp",
           "access direction=outbound passthrough upstream=%s sent=%llu received=%llu "
           "duration=%.3fs result=%s%s%s",
           t->dest, (unsigned long long)t->s[0].bytes, (unsigned long long)t->s[1].bytes,
           (double)(uv_now(&t->w->base.loop) - t->start_ms) / 1000.0, result, why ? ": " : "",
           why ? why : "");
    uv_close((uv_handle_t *)&t->s[0].tcp, on_closed);
    uv_close((uv_handle_t *)&t->s[1].tcp, on_closed);
    uv_close((uv_handle_t *)&t->timer, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct pt_side *s = (struct pt_side *)h; /* tcp comes first */
    (void)hint;
    *buf = uv_buf_init(s->buf, sizeof(s->buf));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static int side_index(struct hy_px_pt *t, const uv_stream_t *st)
{
    return st == (const uv_stream_t *)&t->s[0].tcp ? 0 : 1;
}

static void maybe_done(struct hy_px_pt *t)
{
    if (t->s[0].shut && t->s[1].shut)
        pt_close(t, "ok", NULL);
}

static void on_shut(uv_shutdown_t *req, int status)
{
    struct hy_px_pt *t = req->handle->data;
    if (t->closing)
        return;
    if (status < 0) {
        pt_close(t, "error", uv_strerror(status));
        return;
    }
    t->s[side_index(t, req->handle)].shut = true;
    maybe_done(t);
}

static void on_written(uv_write_t *req, int status)
{
    struct hy_px_pt *t = req->handle->data;
    if (t->closing)
        return;
    if (status < 0) {
        pt_close(t, "error", uv_strerror(status));
        return;
    }
    int to = side_index(t, req->handle), from = 1 - to;
    int rc = uv_read_start((uv_stream_t *)&t->s[from].tcp, on_alloc, on_read);
    if (rc < 0)
        pt_close(t, "error", uv_strerror(rc));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hy_px_pt *t = st->data;
    int from = side_index(t, st), to = 1 - from;
    if (t->closing || n == 0)
        return;
    uv_timer_stop(&t->timer); /* the connect timeout, once anything moved */
    if (n == UV_EOF) {
        uv_read_stop(st);
        t->s[from].eof = true;
        int rc = uv_shutdown(&t->s[to].sh, (uv_stream_t *)&t->s[to].tcp, on_shut);
        if (rc < 0)
            pt_close(t, "error", uv_strerror(rc));
        return;
    }
    if (n < 0) {
        pt_close(t, "error", uv_strerror((int)n));
        return;
    }
    t->s[from].bytes += (uint64_t)n;
    uv_read_stop(st); /* until the other side took it */
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
    int rc = uv_write(&t->s[to].wr, (uv_stream_t *)&t->s[to].tcp, &b, 1, on_written);
    if (rc < 0)
        pt_close(t, "error", uv_strerror(rc));
}

static void on_connected(uv_connect_t *req, int status)
{
    struct hy_px_pt *t = req->data;
    if (t->closing)
        return;
    if (status < 0) {
        pt_close(t, "upstream_failed", uv_strerror(status));
        return;
    }
    t->connected = true;
    uv_timer_stop(&t->timer);
    for (int i = 0; i < 2; i++) {
        int rc = uv_read_start((uv_stream_t *)&t->s[i].tcp, on_alloc, on_read);
        if (rc < 0) {
            pt_close(t, "error", uv_strerror(rc));
            return;
        }
    }
}

static void on_timeout(uv_timer_t *h)
{
    struct hy_px_pt *t = h->data;
    if (!t->connected)
        pt_close(t, "upstream_failed", "connect timed out");
}

int hy_px_passthrough_start(struct hy_px_worker *w, uv_tcp_t *down,
                            const struct sockaddr_storage *dest)
{
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)down, &fd);
    if (rc < 0)
        return rc;
    int copy = dup(fd);
    if (copy < 0)
        return UV_EMFILE;
    struct hy_px_pt *t = calloc(1, sizeof(*t));
    if (!t) {
        close(copy);
        return UV_ENOMEM;
    }
    t->w = w;
    t->start_ms = uv_now(&w->base.loop);
    if (dest->ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)dest, t->dest, sizeof(t->dest));
    else
        uv_ip4_name((const struct sockaddr_in *)dest, t->dest, sizeof(t->dest));
    size_t len = strlen(t->dest);
    snprintf(t->dest + len, sizeof(t->dest) - len, ":%u",
             (unsigned)ntohs(((const struct sockaddr_in *)dest)->sin_port));
    uv_tcp_init(&w->base.loop, &t->s[0].tcp);
    uv_tcp_init(&w->base.loop, &t->s[1].tcp);
    uv_timer_init(&w->base.loop, &t->timer);
    t->s[0].tcp.data = t->s[1].tcp.data = t->timer.data = t;
    t->handles = 3;
    t->next = w->pts;
    if (w->pts)
        w->pts->prev = t;
    w->pts = t;
    rc = uv_tcp_open(&t->s[0].tcp, copy);
    if (rc < 0) {
        close(copy);
        pt_close(t, "error", uv_strerror(rc));
        return 0; /* logged and closing */
    }
    uv_tcp_nodelay(&t->s[0].tcp, 1);
    uv_tcp_nodelay(&t->s[1].tcp, 1);
    t->conn.data = t;
    rc = uv_tcp_connect(&t->conn, &t->s[1].tcp, (const struct sockaddr *)dest, on_connected);
    if (rc < 0) {
        pt_close(t, "upstream_failed", uv_strerror(rc));
        return 0;
    }
    uv_timer_start(&t->timer, on_timeout, HY_PX_CONNECT_MS, 0);
    return 0;
}

void hy_px_passthrough_stop(struct hy_px_worker *w)
{
    for (struct hy_px_pt *t = w->pts; t; t = t->next)
        pt_close(t, "shutdown", NULL);
}
