/* Config snapshots: their reference counts and the one place they are
 * published for the worker threads of a sidecar or an ingress. */
#include <stddef.h>

#include "agent_snap.h"
#include "poison.h"

void hy_agent_snap_init(struct hy_agent_snap *s, void (*free_fn)(struct hy_agent_snap *s),
                        const char *version)
{
    atomic_init(&s->refs, 1);
    s->free = free_fn;
    s->version = version;
}

struct hy_agent_snap *hy_agent_snap_ref(struct hy_agent_snap *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void hy_agent_snap_unref(struct hy_agent_snap *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        s->free(s);
}

void hy_agent_current_init(struct hy_agent_current *c)
{
    pthread_mutex_init(&c->lock, NULL);
    c->snap = NULL;
    atomic_init(&c->generation, 0);
    c->on_publish = NULL;
    c->on_publish_arg = NULL;
}

void hy_agent_current_fini(struct hy_agent_current *c)
{
    hy_agent_snap_unref(c->snap);
    c->snap = NULL;
    pthread_mutex_destroy(&c->lock);
}

void hy_agent_current_publish(struct hy_agent_current *c, struct hy_agent_snap *s)
{
    pthread_mutex_lock(&c->lock);
    struct hy_agent_snap *old = c->snap;
    c->snap = s;
    atomic_fetch_add_explicit(&c->generation, 1, memory_order_release);
    pthread_mutex_unlock(&c->lock);
    hy_agent_snap_unref(old); /* outside the lock: freeing a big config takes a while */
    if (c->on_publish)
        c->on_publish(c->on_publish_arg);
}

void hy_agent_current_on_publish(struct hy_agent_current *c, void (*fn)(void *arg), void *arg)
{
    c->on_publish = fn;
    c->on_publish_arg = fn ? arg : NULL;
}

struct hy_agent_snap *hy_agent_current_get(struct hy_agent_current *c, uint64_t *gen)
{
    pthread_mutex_lock(&c->lock);
    struct hy_agent_snap *s = hy_agent_snap_ref(c->snap);
    if (gen)
        *gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
    pthread_mutex_unlock(&c->lock);
    return s;
}

uint64_t hy_agent_current_generation(struct hy_agent_current *c)
{
    return atomic_load_explicit(&c->generation, memory_order_acquire);
}
