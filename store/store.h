/* The resource store: one interface (an ops table) in front of a backend:
 * LMDB (embedded, the default) or PostgreSQL (store_pg.c: several processes
 * on one database), behind the same ops without touching callers.
 *
 * Keys are type/mesh/name (mesh empty for global-scope types). Every change
 * committed gets the next store revision (one 64-bit counter, several per
 * transaction when it changes several keys) and a record in the change log.
 * The log is compacted past a horizon; reading changes from before it fails
 * with HY_ETOOOLD ("take a snapshot"). */
#ifndef HY_STORE_H
#define HY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "resource.h"

struct hy_store;

enum hy_store_backend { HY_STORE_LMDB, HY_STORE_POSTGRES };

struct hy_store_config {
    enum hy_store_backend backend; /* HY_STORE_LMDB unless set */
    const char *path;              /* LMDB: directory; created if missing */
    const char *url;               /* PostgreSQL: libpq connection string or URI */
    size_t map_size;               /* LMDB: bytes; 0 = default (1 GiB) */
    uint64_t log_retention;        /* change records kept before compaction; 0 = default (100000) */
    bool read_only;
    /* PostgreSQL: do not create or upgrade the schema at open (it must then
     * be current: see hy_store_migrate). */
    bool no_migrate;
};

/* Opens the store (cfg->backend). On success *out owns the store. Errors:
 * HY_ESTORE with a log line naming the path (or the URL without its
 * password) and the backend's reason, -errno for the directory,
 * HY_EUNAVAIL when the database cannot be reached. */
int hy_store_open(const struct hy_store_config *cfg, struct hy_store **out);
/* True for the errors after which the same call may succeed later with
 * nothing changed by the caller (HY_EUNAVAIL, HY_EBUSY): an API answers 503. */
static inline bool hy_store_retry_later(int rc)
{
    return rc == HY_EUNAVAIL || rc == HY_EBUSY;
}
/* Closes and frees; NULL is fine. No other call may be in flight. */
void hy_store_close(struct hy_store *s);
/* The backend's name: "lmdb" or "postgres". */
const char *hy_store_backend_name(const struct hy_store *s);

/* Creates or upgrades the schema of the PostgreSQL store at cfg->url and
 * returns; *from and *to (may be NULL) get the schema versions before and
 * after. Idempotent. LMDB stores upgrade themselves at open: 0 at once. */
int hy_store_migrate(const struct hy_store_config *cfg, int *from, int *to);

/* Reads one resource. *out is a new resource owned by the caller.
 * mesh is NULL or "" for global-scope types. HY_ENOTFOUND if absent. */
int hy_store_get(struct hy_store *s, const char *type, const char *mesh, const char *name,
                 struct hy_resource **out);

/* One write in a batch. */
enum hy_store_op { HY_STORE_PUT, HY_STORE_DELETE };

#define HY_VERSION_ANY UINT64_MAX /* no compare-and-swap */
#define HY_VERSION_NEW 0          /* must not exist yet */

enum hy_store_result {
    HY_STORE_CREATED,
    HY_STORE_UPDATED,
    HY_STORE_UNCHANGED, /* put of identical spec and labels: nothing written */
    HY_STORE_DELETED,
};

/* Flags of a write. */
#define HY_STORE_REPLICA                                                                           \
    0x1                        /* PUT: store r as another store had it: its version and            \
                                  meta times are kept, no CAS; UNCHANGED when the stored           \
                                  copy has the same version and content */
#define HY_STORE_IF_EXISTS 0x2 /* DELETE: a missing key is not an error (result UNCHANGED) */

struct hy_store_write {
    enum hy_store_op op;
    unsigned flags; /* HY_STORE_* above */
    /* PUT: the resource to write (borrowed). Its meta creation/modification
     * times are set by the store; version and origin are taken from r.
     * The store sets the version (stored one + 1, or 1 when new); origin
     * is taken from r.
     * DELETE: only r->type, r->meta->mesh, r->meta->name are used. */
    const struct hy_resource *r;
    /* Compare-and-swap: HY_VERSION_ANY, HY_VERSION_NEW, or the version the
     * caller last read; a mismatch fails the whole batch with HY_ECONFLICT. */
    uint64_t expect_version;
    /* Filled on success: */
    enum hy_store_result result;
    uint64_t version;  /* version now stored (PUT), or deleted version */
    uint64_t revision; /* revision of this change; that of the store for UNCHANGED */
};

/* Applies every write in one transaction: all or nothing. Deleting a Mesh
 * also deletes all its mesh-scoped resources in that transaction (each gets
 * a change record). Errors: HY_ECONFLICT (CAS failed, including
 * HY_VERSION_NEW on an existing key; *failed = index), HY_ENOTFOUND (delete
 * of a missing key; *failed = index), HY_EINVAL (unknown type, empty name,
 * '/' in a name or mesh, missing mesh for a mesh-scoped type; *failed =
 * index), HY_ETOOBIG (key over the backend's limit, or too many changes for
 * one transaction), HY_EFULL (map full: nothing written), -EROFS (store
 * opened read-only), HY_EUNAVAIL (the database cannot be reached: nothing
 * written, or for a commit cut off, perhaps written), HY_EBUSY (PostgreSQL:
 * another session held the write lock past lock_timeout, or a statement
 * ran past statement_timeout: nothing written), HY_ESTORE. Reads return
 * HY_EUNAVAIL and HY_EBUSY the same way. *failed = n when the commit itself failed;
 * failed may be NULL. Watchers are woken after a successful commit that
 * changed something. */
int hy_store_apply(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed);
/* As hy_store_apply, fenced: the writes are applied only if the store's
 * revision is still expect_revision when the write transaction starts
 * (for writes checked against what the store held at that revision, then
 * committed on another thread). Otherwise nothing is written and it
 * returns HY_ECONFLICT with *failed = n. HY_VERSION_ANY: no fence. */
int hy_store_apply_at(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed,
                      uint64_t expect_revision);

/* Convenience single-resource forms of hy_store_apply. */
int hy_store_put(struct hy_store *s, const struct hy_resource *r, uint64_t expect_version,
                 struct hy_store_write *result);
int hy_store_delete(struct hy_store *s, const char *type, const char *mesh, const char *name,
                    uint64_t expect_version);

/* Lists resources of one type (and one mesh if mesh is non-NULL and
 * non-empty; the mesh is ignored for global-scope types), in key
 * order. Paging: start after the key token `after` (NULL = from the start;
 * the token is the `next` a previous call returned), at most `limit` items
 * (0 = no limit). A page starts after its token even if that resource has
 * been deleted since, and costs its own items, not the type's size. */
struct hy_store_page {
    struct hy_resource **items; /* owned array of owned resources */
    size_t n;
    size_t total; /* number of resources of this type (and mesh) in all */
    char *next;   /* owned token for the next page, NULL on the last page */
};
int hy_store_list(struct hy_store *s, const char *type, const char *mesh, const char *after,
                  size_t limit, struct hy_store_page *out);
void hy_store_page_fini(struct hy_store_page *p);

/* Calls fn with every resource of type (every type when type is NULL,
 * secret ones included), page by page in key order. fn gets r to read; it
 * may take r over by setting *take (then it frees it). A non-zero return
 * of fn stops the walk and is returned; so are store errors. */
typedef int (*hy_store_each_fn)(void *ud, struct hy_resource *r, bool *take);
int hy_store_each(struct hy_store *s, const char *type, hy_store_each_fn fn, void *ud);

/* The change feed. */
struct hy_store_change {
    uint64_t revision;
    enum hy_store_op op;      /* PUT (create or update) or DELETE */
    char *type, *mesh, *name; /* owned; mesh "" for global types */
    char *origin;             /* owned; the resource's origin, "" when it had none */
    uint64_t version;
};
struct hy_store_changes {
    struct hy_store_change *v; /* owned */
    size_t n;
    uint64_t to; /* last revision covered by this read (>= since) */
};
/* Reads changes with revision > since, at most max (0 = all). HY_ETOOOLD
 * when since is behind the compaction horizon: the caller must take a
 * snapshot (list everything) and continue from hy_store_revision(). */
int hy_store_changes(struct hy_store *s, uint64_t since, size_t max, struct hy_store_changes *out);
void hy_store_changes_fini(struct hy_store_changes *c);

/* Latest committed revision; 0 for an empty store. Cannot fail. */
uint64_t hy_store_revision(struct hy_store *s);
/* Oldest revision from which hy_store_changes still works (changes with
 * revision > horizon are all present). Cannot fail. */
uint64_t hy_store_horizon(struct hy_store *s);
/* Drops change records with revision <= upto (never past the latest).
 * Compaction also happens by itself when the log exceeds log_retention. */
int hy_store_compact(struct hy_store *s, uint64_t upto);

/* Moves the revision forward to rev with no change in between, dropping the
 * change log (the horizon becomes rev): for a store just copied from
 * another, so that a reader holding a revision of the source (a zone
 * resuming) finds it behind the horizon and takes a snapshot instead of
 * trusting the copy's own numbering. Nothing when rev <= the revision. */
int hy_store_skip_to(struct hy_store *s, uint64_t rev);

/* Statistics for metrics. */
struct hy_store_stats {
    uint64_t revision, horizon;
    uint64_t resources; /* entries in the resource table */
    uint64_t log_records;
    size_t map_size, used_bytes;
};
int hy_store_stats(struct hy_store *s, struct hy_store_stats *out);

/* In-process watchers, called after every commit that changed something,
 * on the committing thread, with the commit's last revision. Callbacks run
 * under the (recursive) registry lock: once hy_store_unwatch returns, the
 * callback is not running and will not run again; a callback may itself
 * watch, unwatch or write. Keep it short: to wake a libuv loop, use
 * hy_store_uv_watch_start (store_uv.h). Returns a watcher id > 0 or
 * HY_ENOMEM. */
typedef void (*hy_store_watch_fn)(void *ud, uint64_t revision);
int hy_store_watch(struct hy_store *s, hy_store_watch_fn fn, void *ud);
void hy_store_unwatch(struct hy_store *s, int id);

/* Leader leases: at most one holder of a named lease among every process
 * on one store, for work that must run once (the global CP's periodic
 * tasks, a zone's KDS session). PostgreSQL: a session-level advisory lock
 * taken on a connection of its own by a thread of the lease; the database
 * frees it with that connection, so a dead holder hands over as soon as
 * its connection closes (at once when the process dies). The holder steps
 * down (hy_store_lease_held turns false) the moment that connection
 * errors, before the server can grant the lock to anyone else. LMDB: one
 * process owns the store, so the lease is always held. Changes are logged
 * (one line: acquired or lost, the lease and the replica). */
struct hy_store_lease;
/* Opens a lease called name (e.g. "global", "zone/east") for this process,
 * known as replica in logs; it is tried at once and then every ~0.5 s
 * while another holds it. On success *out owns it. HY_ENOMEM or -errno. */
int hy_store_lease_open(struct hy_store *s, const char *name, const char *replica,
                        struct hy_store_lease **out);
/* Whether this process holds the lease now; any thread. Cannot fail. */
bool hy_store_lease_held(const struct hy_store_lease *l);
/* How many times the lease was acquired or lost here. Cannot fail. */
uint64_t hy_store_lease_transitions(const struct hy_store_lease *l);
/* Releases (if held) and frees; NULL is fine. Before hy_store_close. */
void hy_store_lease_close(struct hy_store_lease *l);

#endif
