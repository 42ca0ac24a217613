/* Worker threads of a data-plane process (the sidecar's proxy, the
 * ingress's relay): each with its own loop and a wake handle, opened on
 * the main thread, then run on their own threads until stopped. The
 * binary's worker struct starts with struct hy_agent_worker; what differs
 * (listeners, connections, snapshots) comes through struct
 * hy_agent_pool_ops. */
#ifndef HY_AGENT_POOL_H
#define HY_AGENT_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "agent_side.h"

struct hy_agent_pool;

/* The head of a binary's worker. Only its own thread touches a worker once
 * it runs, except wake (uv_async_send). */
struct hy_agent_worker {
    struct hy_agent_pool *pool;
    unsigned index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;             /* hy_agent_pool_wake, or stop */
    struct hy_agent_defer defer; /* its sides' writes that went out at once */
    bool loop_init, thread_started, stopped;
};

struct hy_agent_pool_ops {
    size_t size; /* of the binary's worker struct */
    /* Main thread, before the thread starts: the worker's own handles on
     * w->loop. 0, or a libuv code after closing what it opened. */
    int (*open)(struct hy_agent_worker *w);
    /* The worker's thread, before its loop runs. NULL: nothing. */
    void (*begin)(struct hy_agent_worker *w);
    /* The worker's thread, when woken while the pool is not stopping.
     * NULL: nothing. */
    void (*wake)(struct hy_agent_worker *w);
    /* Closes every handle of the worker but wake (the pool's) and ends its
     * connections; its loop then runs out. The worker's thread (the main
     * thread for a worker that never ran). */
    void (*stop)(struct hy_agent_worker *w);
    /* The worker's thread, after its loop ran out. NULL: nothing. */
    void (*end)(struct hy_agent_worker *w);
    /* Main thread, after the thread ended, before the loop is closed:
     * what the worker still holds. NULL: nothing. */
    void (*fini)(struct hy_agent_worker *w);
};

struct hy_agent_pool {
    const struct hy_agent_pool_ops *ops;
    void *owner;        /* the binary's (struct hy_proxy, struct hy_ing) */
    unsigned char *arr; /* n workers of ops->size bytes */
    unsigned n;         /* workers opened */
    atomic_bool stopping;
};

/* How many workers: requested, or one per CPU when 0; at least 1, at
 * most max. */
unsigned hy_agent_pool_count(unsigned requested, unsigned max);

/* Opens n workers (stopping at the first failure), then starts their
 * threads. 0, or HY_ENOMEM or a libuv code: then hy_agent_pool_stop and
 * hy_agent_pool_free what was started. pool is zeroed first. */
int hy_agent_pool_start(struct hy_agent_pool *pool, const struct hy_agent_pool_ops *ops,
                        void *owner, unsigned n);
/* Worker i (< pool->n). */
static inline struct hy_agent_worker *hy_agent_pool_at(const struct hy_agent_pool *pool, unsigned i)
{
    return (struct hy_agent_worker *)(void *)(pool->arr + (size_t)i * pool->ops->size);
}
/* Wakes every worker (ops->wake on its thread). Any thread. */
void hy_agent_pool_wake(struct hy_agent_pool *pool);
/* True once hy_agent_pool_stop was called. Any thread. */
bool hy_agent_pool_stopping(struct hy_agent_pool *pool);
/* Tells every worker to stop (a worker that never ran is stopped here);
 * once. Main thread. */
void hy_agent_pool_stop(struct hy_agent_pool *pool);
/* Stops, waits for every thread to end, and frees the workers. Main
 * thread; a zeroed pool is fine. */
void hy_agent_pool_free(struct hy_agent_pool *pool);

#endif
