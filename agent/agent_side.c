/* A relayed connection's socket (agent_side.h). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "agent_side.h"
#include "poison.h"

struct wreq {
    uv_write_t req;
    struct hy_agent_side *s;
    hy_agent_written_fn done;
    uint8_t data[];
};

size_t hy_agent_side_queued(const struct hy_agent_side *s)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&s->tcp);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct hy_agent_side *s = w->s;
    hy_agent_written_fn done = w->done;
    free(w);
    done(s, status);
}

static void unlink_done(struct hy_agent_side *s)
{
    if (!s->dprev)
        return;
    *s->dprev = s->dnext;
    if (s->dnext)
        s->dnext->dprev = s->dprev;
    s->dnext = NULL;
    s->dprev = NULL;
    s->ddone = NULL;
    s->dshut = false;
}

static void on_idle(uv_idle_t *h)
{
    struct hy_agent_defer *d = h->data;
    /* this round: what waits now; a done that writes again waits for the next */
    d->run = d->head;
    d->head = NULL;
    if (d->run)
        d->run->dprev = &d->run;
    struct hy_agent_side *s;
    while ((s = d->run)) {
        hy_agent_written_fn done = s->ddone;
        bool shut = s->dshut;
        unlink_done(s); /* a done may close other sides of the round: they unlink */
        if (done)
            done(s, 0);
        if (shut) { /* s's memory lasts until its close callback, after this round */
            s->shut_done = true;
            s->shut_cb(s);
        }
    }
    if (!d->head)
        uv_idle_stop(&d->idle);
}

void hy_agent_defer_open(struct hy_agent_defer *d, uv_loop_t *loop)
{
    memset(d, 0, sizeof(*d));
    uv_idle_init(loop, &d->idle);
    d->idle.data = d;
    d->open = true;
}

void hy_agent_defer_close(struct hy_agent_defer *d)
{
    if (!d->open)
        return;
    d->open = false;
    while (d->head) /* their sides are being closed with the loop */
        unlink_done(d->head);
    uv_close((uv_handle_t *)&d->idle, NULL);
}

int hy_agent_side_init(struct hy_agent_side *s, uv_loop_t *loop, struct hy_agent_defer *d)
{
    s->defer = d;
    return uv_tcp_init(loop, &s->tcp);
}

void hy_agent_side_close(struct hy_agent_side *s, uv_close_cb cb)
{
    unlink_done(s);
    uv_close((uv_handle_t *)&s->tcp, cb);
}

/* s on its loop's list for the next idle round (once). */
static void defer_link(struct hy_agent_side *s)
{
    struct hy_agent_defer *d = s->defer;
    if (s->dprev)
        return;
    s->dnext = d->head;
    if (d->head)
        d->head->dprev = &s->dnext;
    s->dprev = &d->head;
    d->head = s;
    uv_idle_start(&d->idle, on_idle);
}

int hy_agent_side_write(struct hy_agent_side *s, const void *data, size_t len,
                        hy_agent_written_fn done)
{
    if (s->defer && s->defer->open && len > 0 && len <= INT_MAX &&
        (!s->ddone || s->ddone == done) &&
        uv_stream_get_write_queue_size((const uv_stream_t *)&s->tcp) == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (n == (int)len) { /* done from the next round, once however many went out */
            s->ddone = done;
            defer_link(s);
            return 0;
        }
        if (n > 0) { /* the rest is queued below */
            data = (const uint8_t *)data + n;
            len -= (size_t)n;
        } /* an error or EAGAIN: uv_write below reports it, or waits, as before */
    }
    struct wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return UV_ENOMEM;
    w->s = s;
    w->done = done;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (rc < 0)
        free(w);
    return rc;
}

bool hy_agent_side_pressure(struct hy_agent_side *dst, struct hy_agent_side *src)
{
    if (src->paused || hy_agent_side_queued(dst) <= HY_AGENT_HIGH_WATER)
        return false;
    src->paused = true;
    return true;
}

bool hy_agent_side_relieved(struct hy_agent_side *dst, struct hy_agent_side *src)
{
    if (!src->paused || hy_agent_side_queued(dst) > HY_AGENT_LOW_WATER)
        return false;
    src->paused = false;
    return true;
}

void hy_agent_side_read(struct hy_agent_side *s, bool want, uv_alloc_cb alloc, uv_read_cb read)
{
    if (want && !s->reading) {
        if (uv_read_start((uv_stream_t *)&s->tcp, alloc, read) == 0)
            s->reading = true;
    } else if (!want && s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
}

bool hy_agent_side_read_now(struct hy_agent_side *s, uv_alloc_cb alloc, uv_read_cb read_cb)
{
    uv_os_fd_t fd;
    if (uv_is_closing((uv_handle_t *)&s->tcp) || uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0)
        return false;
    uv_buf_t buf = uv_buf_init(NULL, 0);
    alloc((uv_handle_t *)&s->tcp, 64 * 1024, &buf);
    if (!buf.base || !buf.len) {
        read_cb((uv_stream_t *)&s->tcp, UV_ENOBUFS, &buf);
        return true;
    }
    ssize_t n;
    do
        n = read(fd, buf.base, buf.len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return false;
    read_cb((uv_stream_t *)&s->tcp,
            n > 0    ? n
            : n == 0 ? UV_EOF
                     : uv_translate_sys_error(errno),
            &buf);
    return true;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct hy_agent_side *s = req->data;
    (void)status; /* a peer already gone: the other direction decides */
    s->shut_done = true;
    s->shut_cb(s);
}

static bool shut(struct hy_agent_side *s, hy_agent_shut_fn done, bool fin)
{
    if (s->shut)
        return false;
    s->shut = true;
    s->shut_cb = done;
    uv_os_fd_t fd;
    if (s->defer && s->defer->open && hy_agent_side_queued(s) == 0 &&
        !uv_is_closing((uv_handle_t *)&s->tcp) && uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0 &&
        (!fin || shutdown(fd, SHUT_WR) == 0)) {
        s->dshut = true;
        defer_link(s);
        return true;
    } /* something queued, or shutdown(2) refused (not connected yet): libuv's way */
    s->shutdown_req.data = s;
    if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) < 0) {
        s->shut_done = true;
        done(s);
    }
    return true;
}

bool hy_agent_side_shut(struct hy_agent_side *s, hy_agent_shut_fn done)
{
    return shut(s, done, true);
}

bool hy_agent_side_end(struct hy_agent_side *s, hy_agent_shut_fn done)
{
    return shut(s, done, false);
}
