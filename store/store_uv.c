/* The libuv adapter of the store watchers: a store watcher (any thread)
 * records the revision and uv_async_send()s; the loop delivers it. */
#include <stddef.h>

#include "store_uv.h"
#include "poison.h"

#define WATCH_OF(h)                                                                                \
    ((struct hy_store_uv_watch *)((char *)(h)-offsetof(struct hy_store_uv_watch, async)))

/* Store watcher: runs on the committing thread. */
static void on_commit(void *ud, uint64_t revision)
{
    struct hy_store_uv_watch *w = ud;
    uint64_t cur = atomic_load(&w->revision);
    /* Writers on several threads may report out of order: keep the max. */
    while (cur < revision && !atomic_compare_exchange_weak(&w->revision, &cur, revision))
        ;
    if (atomic_load(&w->armed))
        uv_async_send(&w->async);
}

/* Loop thread: one call however many sends were coalesced. */
static void on_async(uv_async_t *h)
{
    struct hy_store_uv_watch *w = WATCH_OF(h);
    uint64_t rev = atomic_load(&w->revision);
    if (rev <= w->delivered)
        return; /* a send raced with the previous delivery */
    w->delivered = rev;
    w->cb(w, rev);
}

int hy_store_uv_watch_start(uv_loop_t *loop, struct hy_store *s, struct hy_store_uv_watch *w,
                            hy_store_uv_watch_cb cb)
{
    w->store = s;
    w->cb = cb;
    w->on_closed = NULL;
    w->delivered = 0;
    atomic_init(&w->armed, false);
    atomic_init(&w->revision, 0);
    /* Register first and arm after: on_commit must never touch a handle
     * that failed to initialise, and a failed start then closes nothing. */
    int id = hy_store_watch(s, on_commit, w);
    if (id < 0)
        return id;
    int rc = uv_async_init(loop, &w->async, on_async);
    if (rc < 0) {
        hy_store_unwatch(s, id);
        return rc;
    }
    w->id = id;
    atomic_store(&w->armed, true);
    return 0;
}

static void on_close(uv_handle_t *h)
{
    struct hy_store_uv_watch *w = WATCH_OF(h);
    if (w->on_closed)
        w->on_closed(w);
}

void hy_store_uv_watch_stop(struct hy_store_uv_watch *w,
                            void (*on_closed)(struct hy_store_uv_watch *w))
{
    /* After unwatch returns on_commit is not running (store.c calls
     * watchers under its lock), so nothing sends on a closing handle. */
    hy_store_unwatch(w->store, w->id);
    atomic_store(&w->armed, false);
    w->on_closed = on_closed;
    uv_close((uv_handle_t *)&w->async, on_close);
}
