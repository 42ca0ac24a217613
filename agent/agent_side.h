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

struct hy_agent_side {
    uv_tcp_t tcp; /* tcp.data: the connection */
    bool init;    /* tcp is initialised (it needs a uv_close) */
    bool reading; /* uv_read_start is on */
    bool paused;  /* the other side's write queue is too long */
    bool eof;     /* it sent EOF (a TLS side: or close_notify) */
    bool shut;    /* we asked to shut down its write side */
    bool shut_done;
    uv_shutdown_t shutdown_req;
    hy_agent_shut_fn shut_cb; /* hy_agent_side_shut's done */
};

/* Bytes queued to be written on s. */
size_t hy_agent_side_queued(const struct hy_agent_side *s);

/* Queues a copy of data[0..len) on s; done runs when it is written.
 * 0, or a libuv code (UV_ENOMEM; nothing queued, done never runs). */
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

/* Shuts down s's write side once (its queue is written first); done runs
 * when that finished, at once if it cannot start. Returns false when it
 * was asked before (done does not run again). */
bool hy_agent_side_shut(struct hy_agent_side *s, hy_agent_shut_fn done);

#endif
