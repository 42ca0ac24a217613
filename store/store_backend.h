/* What a store backend implements (the ops table behind store.h) and the
 * state every backend shares. Only store*.c include this. */
#ifndef HY_STORE_BACKEND_H
#define HY_STORE_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>

#include "store.h"

/* One function per operation. store.c has already checked the arguments:
 * types are known, names are non-empty and free of '/', mesh-scoped types
 * have a mesh. Returns follow store.h unless said otherwise. */
struct hy_store_ops {
    const char *name; /* "lmdb": for log lines */
    /* Stops the backend's own threads (NULL: it has none); close follows. */
    void (*stop)(struct hy_store *s);
    /* Frees the backend and s itself. */
    void (*close)(struct hy_store *s);
    int (*get)(struct hy_store *s, const struct hy_rtype *t, const char *mesh, const char *name,
               struct hy_resource **out);
    /* As hy_store_apply_at; on success *committed is the last revision
     * written, or 0 when nothing changed (watchers are then not woken). */
    int (*apply)(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed,
                 uint64_t expect_revision, uint64_t *committed);
    /* mesh is NULL for all meshes. */
    int (*list)(struct hy_store *s, const struct hy_rtype *t, const char *mesh, const char *after,
                size_t limit, struct hy_store_page *out);
    int (*changes)(struct hy_store *s, uint64_t since, size_t max, struct hy_store_changes *out);
    uint64_t (*revision)(struct hy_store *s);
    uint64_t (*horizon)(struct hy_store *s);
    int (*compact)(struct hy_store *s, uint64_t upto);
    int (*skip_to)(struct hy_store *s, uint64_t rev);
    int (*stats)(struct hy_store *s, struct hy_store_stats *out);
    /* Opens l's backend part (NULL: the lease is always held, as on LMDB):
     * it sets l->held and l->transitions as they change, and l->close. */
    int (*lease_open)(struct hy_store *s, struct hy_store_lease *l);
};

/* A lease (store.h); the backend's part follows when it has one. */
struct hy_store_lease {
    char *name, *replica;
    _Atomic bool held;
    _Atomic uint64_t transitions;
    void (*close)(struct hy_store_lease *l); /* the backend's part; NULL: none */
    void *backend;
};

/* Logs a lease change and counts it (store.c): any thread. */
void hy_store_lease_set(struct hy_store_lease *l, bool held, const char *why);

struct hy_store_watcher {
    int id;
    hy_store_watch_fn fn; /* NULL: removed during a notification round */
    void *ud;
};

/* The in-process watcher registry (store.c). */
struct hy_store_watchers {
    pthread_mutex_t mu; /* recursive: callbacks run under it */
    struct hy_store_watcher *v;
    size_t n, cap;
    int next_id;
    unsigned depth; /* notification rounds running (on the thread holding mu) */
    bool dirty;     /* entries removed during a round: compact when it ends */
};

/* Every backend's handle begins with this. */
struct hy_store {
    const struct hy_store_ops *ops;
    struct hy_store_watchers watchers;
};

/* Opens the LMDB backend (store_lmdb.c); same contract as hy_store_open,
 * except that s->watchers is left for store.c to initialise. */
int hy_store_lmdb_open(const struct hy_store_config *cfg, struct hy_store **out);
/* Opens the PostgreSQL backend (store_pg.c), as hy_store_lmdb_open. Its
 * listener thread starts only with hy_store_pg_start, once s->watchers is
 * ready. */
int hy_store_pg_open(const struct hy_store_config *cfg, struct hy_store **out);
int hy_store_pg_start(struct hy_store *s);
int hy_store_pg_migrate(const struct hy_store_config *cfg, int *from, int *to);

/* Calls every in-process watcher with revision (store.c): for a backend
 * that learns of commits made by other processes. */
void hy_store_watchers_notify(struct hy_store *s, uint64_t revision);

/* Whether a write expecting version expect may replace old (NULL: none). */
bool hy_store_cas_ok(const struct hy_resource *old, uint64_t expect);

/* What a backend writes for a put: a shallow copy of the caller's resource
 * carrying the store's fields (type, mesh, times, version). */
struct hy_store_stamp {
    Hypha__V1__Meta meta;
    struct hy_resource res; /* res.meta is &meta */
    Hypha__V1__Timestamp *now;
};

/* The part of a put both backends share, inside their write transaction,
 * once old (NULL: none) is read: HY_ECONFLICT when w's compare-and-swap
 * fails; 1 when nothing changes (w says HY_STORE_UNCHANGED at revision
 * rev); 0 with st to write, then hy_store_stamp_fini (HY_ENOMEM: nothing
 * to free). A replica write keeps the times and version its source store
 * gave it. */
int hy_store_stamp_put(struct hy_store_write *w, const struct hy_resource *old, const char *mesh,
                       uint64_t rev, struct hy_store_stamp *st);
void hy_store_stamp_fini(struct hy_store_stamp *st);

/* The mesh part of a key: "" for global-scope types or a NULL mesh. */
static inline const char *hy_store_key_mesh(const struct hy_rtype *t, const char *mesh)
{
    return t->scope == HY_SCOPE_GLOBAL || !mesh ? "" : mesh;
}

#endif
