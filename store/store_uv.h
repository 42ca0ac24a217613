/* Lets a libuv loop watch the store: commits on any thread wake the loop
 * through a uv_async_t, and the loop's callback gets the latest revision. */
#ifndef HY_STORE_UV_H
#define HY_STORE_UV_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

struct hy_store_uv_watch;

/* Called on the loop thread with the latest committed revision. Commits
 * close together are coalesced into one call; revisions only grow. It may
 * call hy_store_uv_watch_stop. */
typedef void (*hy_store_uv_watch_cb)(struct hy_store_uv_watch *w, uint64_t revision);

/* Embed it in the caller's state. It must stay in place from a successful
 * start until the on_closed callback of hy_store_uv_watch_stop. */
struct hy_store_uv_watch {
    void *data; /* free for the caller */
    /* private: */
    uv_async_t async;
    struct hy_store *store;
    hy_store_uv_watch_cb cb;
    void (*on_closed)(struct hy_store_uv_watch *w);
    int id;
    atomic_bool armed;         /* async is initialised */
    _Atomic uint64_t revision; /* highest revision notified (any thread) */
    uint64_t delivered;        /* highest revision passed to cb (loop thread) */
};

/* Starts watching s from loop: after each commit that changes something,
 * cb runs on the loop thread. Call it on the loop thread. w->data is kept.
 * Returns 0, or HY_ENOMEM / a negative libuv (errno) code, in which case
 * nothing is left registered or open and w may be freed at once. */
int hy_store_uv_watch_start(uv_loop_t *loop, struct hy_store *s, struct hy_store_uv_watch *w,
                            hy_store_uv_watch_cb cb);

/* Stops watching: no cb runs after it returns. Call it on the loop thread.
 * The async handle is closed with uv_close(); on_closed (may be NULL) runs
 * from the loop once it is, after which w may be freed. The store must
 * outlive this call but not the close. */
void hy_store_uv_watch_stop(struct hy_store_uv_watch *w,
                            void (*on_closed)(struct hy_store_uv_watch *w));

#endif
