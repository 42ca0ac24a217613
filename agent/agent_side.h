/* One socket of a relayed connection, as the sidecar's proxy and the
 * ingress's relay both use it: copying writes, backpressure between the
 * two sides of a connection (stop reading one while the other's write
 * queue is long, read it again once it drained), reads switched on and
 * off, and the shutdown of its write side. The connection that owns two
 * sides sets tcp.data to itself; each function below runs on the loop the
 * socket belongs to. */
#ifndef HY_AGENT_SIDE_H
#define HY_AGENT_SIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define HY_AGENT_HIGH_WATER                                                                        \
    (256u << 10)                       /* stop reading a side while the other queues this much     \
                                        */
#define HY_AGENT_LOW_WATER (64u << 10) /* and read it again once the queue is down to this */

struct hy_agent_side;
/* Called when a write on s completed (status 0) or failed (a libuv code). */
typedef void (*hy_agent_written_fn)(struct hy_agent_side *s, int status);
/* Called once s's write side is shut down (or could not be: it is gone). */
typedef void (*hy_agent_shut_fn)(struct hy_agent_side *s);

struct hy_agent_defer;

struct hy_agent_side {
    uv_tcp_t tcp;                         /* tcp.data: the connection */
    struct hy_agent_defer *defer;         /* NULL: every write is queued with uv_write */
    struct hy_agent_side *dnext, **dprev; /* on defer's list while ddone waits */
    hy_agent_written_fn ddone;            /* a write's done waits */
    bool dshut;                           /* shut_cb waits */
    bool init;                            /* tcp is initialised (it needs a uv_close) */
    bool reading;                         /* uv_read_start is on */
    bool paused;                          /* the other side's write queue is too long */
    bool eof;                             /* it sent EOF (a TLS side: or close_notify) */
    bool shut;                            /* we asked to shut down its write side */
    bool shut_done;
    uv_shutdown_t shutdown_req;
    hy_agent_shut_fn shut_cb; /* hy_agent_side_shut's done */
};

/* A loop's completions of writes that went out at once. A write that finds
 * its socket's queue empty is tried right away (uv_try_write): when the
 * kernel takes all of it there is no copy, no write request, and none of
 * the epoll_ctl that libuv's finished write requests cost (one per write:
 * it re-arms the socket whenever a queue drains). Its done still runs
 * later, from the loop, as a queued write's would: the caller sees the
 * same order of events either way. Several such writes on one side before
 * the loop comes round complete with one done. A shutdown of a side with
 * nothing queued is done the same way (shutdown(2) at once, its done from
 * the loop), saving libuv's shutdown request and its epoll_ctl. */
struct hy_agent_defer {
    uv_idle_t idle;
    struct hy_agent_side *head; /* waiting for the next round */
    struct hy_agent_side *run;  /* the round under way */
    bool open;
};

/* Opens d on loop. The loop's owner closes it (hy_agent_defer_close) with
 * its other handles. */
void hy_agent_defer_open(struct hy_agent_defer *d, uv_loop_t *loop);
/* Closes d's handle; writes queue with uv_write from then on. */
void hy_agent_defer_close(struct hy_agent_defer *d);

/* uv_tcp_init of s's socket on loop; its writes complete through d (may
 * be NULL). */
int hy_agent_side_init(struct hy_agent_side *s, uv_loop_t *loop, struct hy_agent_defer *d);
/* Closes s's socket (uv_close with cb) once its pending done is dropped:
 * every side written with a defer is closed here, never with a bare
 * uv_close, so no done runs for a side that is gone. */
void hy_agent_side_close(struct hy_agent_side *s, uv_close_cb cb);

/* Bytes queued to be written on s. */
size_t hy_agent_side_queued(const struct hy_agent_side *s);

/* Writes data[0..len) on s: at once when its queue is empty and the
 * kernel takes it all, else queues a copy of what is left. done runs from
 * the loop when it is written (never inside this call). 0, or a libuv
 * code (UV_ENOMEM; nothing queued, done never runs). */
int hy_agent_side_write(struct hy_agent_side *s, const void *data, size_t len,
                        hy_agent_written_fn done);

/* After queueing on dst: pauses src (returns true: stop reading it) when
 * dst's queue passed HY_AGENT_HIGH_WATER. */
bool hy_agent_side_pressure(struct hy_agent_side *dst, struct hy_agent_side *src);
/* After a write on dst completed: un-pauses src (returns true: read it
 * again) when dst's queue is down to HY_AGENT_LOW_WATER. */
bool hy_agent_side_relieved(struct hy_agent_side *dst, struct hy_agent_side *src);

/* Starts or stops reading s as want says (alloc and read as for
 * uv_read_start). Cannot fail: a read that cannot start stays off. */
void hy_agent_side_read(struct hy_agent_side *s, bool want, uv_alloc_cb alloc, uv_read_cb read);

/* One read(2) of s's socket now, without waiting for the loop to report it
 * readable: what it gets (bytes, UV_EOF, an error) goes to read as from
 * libuv; nothing there yet (EAGAIN) calls nothing and returns false. A
 * socket just accepted whose client spoke first (HTTP) usually has its
 * request waiting already: read now, it is handled before libuv ever
 * registers the socket with epoll, and one that then needs no more
 * reading never is (an EPOLL_CTL_ADD saved per connection). */
bool hy_agent_side_read_now(struct hy_agent_side *s, uv_alloc_cb alloc, uv_read_cb read);

/* Shuts down s's write side once (its queue is written first); done runs
 * when that finished, at once if it cannot start. Returns false when it
 * was asked before (done does not run again). */
bool hy_agent_side_shut(struct hy_agent_side *s, hy_agent_shut_fn done);
/* hy_agent_side_shut for a side that done closes: with nothing queued
 * (and a defer), no shutdown(2) at all, close(2) sends the FIN after what
 * was written; done still runs from the loop. */
bool hy_agent_side_end(struct hy_agent_side *s, hy_agent_shut_fn done);

#endif
