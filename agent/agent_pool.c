/* Worker threads (agent_pool.h). */
#include <stdlib.h>
#include <string.h>

#include "agent_pool.h"
#include "error.h"
#include "poison.h"

unsigned hy_agent_pool_count(unsigned requested, unsigned max)
{
    unsigned n = requested ? requested : (unsigned)uv_available_parallelism();
    if (n == 0)
        n = 1;
    return n > max ? max : n;
}

static void stop_worker(struct hy_agent_worker *w)
{
    w->stopped = true;
    uv_close((uv_handle_t *)&w->wake, NULL);
    hy_agent_defer_close(&w->defer);
    w->pool->ops->stop(w);
}

static void on_wake(uv_async_t *a)
{
    struct hy_agent_worker *w = a->data;
    if (w->stopped)
        return;
    if (atomic_load_explicit(&w->pool->stopping, memory_order_acquire))
        stop_worker(w);
    else if (w->pool->ops->wake)
        w->pool->ops->wake(w);
}

static void worker_main(void *arg)
{
    struct hy_agent_worker *w = arg;
    if (w->pool->ops->begin)
        w->pool->ops->begin(w);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* until stop_worker's handles have closed */
    if (w->pool->ops->end)
        w->pool->ops->end(w);
}

static int open_worker(struct hy_agent_pool *pool, struct hy_agent_worker *w, unsigned index)
{
    w->pool = pool;
    w->index = index;
    int rc = uv_loop_init(&w->loop);
    if (rc < 0)
        return rc;
    w->loop_init = true;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    hy_agent_defer_open(&w->defer, &w->loop);
    if ((rc = pool->ops->open(w)) < 0) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        hy_agent_defer_close(&w->defer);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        w->loop_init = false;
    }
    return rc;
}

int hy_agent_pool_start(struct hy_agent_pool *pool, const struct hy_agent_pool_ops *ops,
                        void *owner, unsigned n)
{
    memset(pool, 0, sizeof(*pool));
    pool->ops = ops;
    pool->owner = owner;
    atomic_init(&pool->stopping, false);
    if (!(pool->arr = calloc(n, ops->size)))
        return HY_ENOMEM;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++)
        if ((rc = open_worker(pool, hy_agent_pool_at(pool, i), i)) == 0)
            pool->n = i + 1;
    for (unsigned i = 0; i < pool->n && rc == 0; i++) {
        struct hy_agent_worker *w = hy_agent_pool_at(pool, i);
        if ((rc = uv_thread_create(&w->thread, worker_main, w)) == 0)
            w->thread_started = true;
    }
    return rc;
}

void hy_agent_pool_wake(struct hy_agent_pool *pool)
{
    for (unsigned i = 0; i < pool->n; i++) {
        struct hy_agent_worker *w = hy_agent_pool_at(pool, i);
        if (w->thread_started)
            uv_async_send(&w->wake);
    }
}

bool hy_agent_pool_stopping(struct hy_agent_pool *pool)
{
    return atomic_load_explicit(&pool->stopping, memory_order_acquire);
}

void hy_agent_pool_stop(struct hy_agent_pool *pool)
{
    if (!pool->arr || atomic_exchange(&pool->stopping, true))
        return;
    for (unsigned i = 0; i < pool->n; i++) {
        struct hy_agent_worker *w = hy_agent_pool_at(pool, i);
        if (w->thread_started) {
            uv_async_send(&w->wake);
        } else if (!w->stopped) { /* opened, never ran: close it here */
            stop_worker(w);
            uv_run(&w->loop, UV_RUN_DEFAULT);
        }
    }
}

void hy_agent_pool_free(struct hy_agent_pool *pool)
{
    if (!pool->arr)
        return;
    hy_agent_pool_stop(pool);
    for (unsigned i = 0; i < pool->n; i++) {
        struct hy_agent_worker *w = hy_agent_pool_at(pool, i);
        if (w->thread_started)
            uv_thread_join(&w->thread); /* its loop ran out: everything of it closed */
        if (pool->ops->fini)
            pool->ops->fini(w);
        if (w->loop_init)
            uv_loop_close(&w->loop);
    }
    free(pool->arr);
    pool->arr = NULL;
    pool->n = 0;
}
