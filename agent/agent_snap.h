/* Config snapshots for worker threads: what a data-plane process built from
 * its zone's last accepted message (a sidecar's config and key, an
 * ingress's routes), immutable and reference-counted, and the one place it
 * is published for every thread. */
#ifndef HY_AGENT_SNAP_H
#define HY_AGENT_SNAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The head of a snapshot. A binary's snapshot struct starts with it (its
 * first member) and is immutable once published: any thread holding a
 * reference reads it without locks. */
struct hy_agent_snap {
    atomic_uint refs;
    void (*free)(struct hy_agent_snap *s); /* frees the whole snapshot at the last unref */
    const char *version; /* the config's version, borrowed from what the snapshot owns */
};

/* Sets one reference, free_fn and version (which must live as long as s).
 * Cannot fail. */
void hy_agent_snap_init(struct hy_agent_snap *s, void (*free_fn)(struct hy_agent_snap *s),
                        const char *version);
/* Takes one more reference; returns s. NULL is fine. Any thread. */
struct hy_agent_snap *hy_agent_snap_ref(struct hy_agent_snap *s);
/* Drops a reference; the last calls s->free. NULL is fine. Any thread. */
void hy_agent_snap_unref(struct hy_agent_snap *s);

/* The published snapshot. The control loop publishes; readers on any
 * thread take references. A worker keeps the generation of the snapshot it
 * holds and compares it with hy_agent_current_generation (one atomic load,
 * no lock) on its hot path, calling hy_agent_current_get only when it
 * moved. */
struct hy_agent_current {
    pthread_mutex_t lock;            /* held only to swap or to take a reference */
    struct hy_agent_snap *snap;      /* guarded by lock; NULL before the first */
    atomic_uint_fast64_t generation; /* bumped after every publish */
    void (*on_publish)(void *arg);   /* called after every publish, on its thread */
    void *on_publish_arg;
};

/* Cannot fail (a default mutex). */
void hy_agent_current_init(struct hy_agent_current *c);
/* Drops the snapshot it holds. */
void hy_agent_current_fini(struct hy_agent_current *c);
/* Sets (fn NULL: clears) what every publish calls afterwards, on the
 * publisher's thread, outside the lock. Publisher thread. */
void hy_agent_current_on_publish(struct hy_agent_current *c, void (*fn)(void *arg), void *arg);
/* Replaces the snapshot by s, taking over the caller's reference to it;
 * the previous one goes when its last reader drops it. Then calls the
 * on_publish hook, if set. */
void hy_agent_current_publish(struct hy_agent_current *c, struct hy_agent_snap *s);
/* A new reference to the current snapshot (drop it with
 * hy_agent_snap_unref), or NULL before the first. If gen is not NULL it
 * receives the generation of what was returned. Any thread. */
struct hy_agent_snap *hy_agent_current_get(struct hy_agent_current *c, uint64_t *gen);
/* The generation of the current snapshot: 0 before the first publish.
 * Any thread, no lock. */
uint64_t hy_agent_current_generation(struct hy_agent_current *c);

/* Typed helpers for a binary's snapshot struct T, whose first member is
 * struct hy_agent_snap base: T *NAME_of(struct hy_agent_snap *) (NULL for
 * NULL), NAME_ref and NAME_unref (NULL is fine; any thread), and NAME_get
 * (hy_agent_current_get of a current that publishes T). */
#define HY_AGENT_SNAP_TYPE(T, NAME)                                                                \
    static inline T *NAME##_of(struct hy_agent_snap *s)                                            \
    {                                                                                              \
        _Static_assert(offsetof(T, base) == 0, "base comes first");                                \
        return (T *)s;                                                                             \
    }                                                                                              \
    static inline T *NAME##_ref(T *s)                                                              \
    {                                                                                              \
        return NAME##_of(hy_agent_snap_ref(s ? &s->base : NULL));                                  \
    }                                                                                              \
    static inline void NAME##_unref(T *s)                                                          \
    {                                                                                              \
        hy_agent_snap_unref(s ? &s->base : NULL);                                                  \
    }                                                                                              \
    static inline T *NAME##_get(struct hy_agent_current *c, uint64_t *gen)                         \
    {                                                                                              \
        return NAME##_of(hy_agent_current_get(c, gen));                                            \
    }

#endif
