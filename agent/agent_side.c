/* A relayed connection's socket (agent_side.h). */
#include <stdlib.h>
#include <string.h>

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

int hy_agent_side_write(struct hy_agent_side *s, const void *data, size_t len,
                        hy_agent_written_fn done)
{
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

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct hy_agent_side *s = req->data;
    (void)status; /* a peer already gone: the other direction decides */
    s->shut_done = true;
    s->shut_cb(s);
}

bool hy_agent_side_shut(struct hy_agent_side *s, hy_agent_shut_fn done)
{
    if (s->shut)
        return false;
    s->shut = true;
    s->shut_cb = done;
    s->shutdown_req.data = s;
    if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) < 0) {
        s->shut_done = true;
        done(s);
    }
    return true;
}
