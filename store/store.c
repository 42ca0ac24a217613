/* The public store API: argument checks, dispatch through the backend's ops
 * table, and the in-process watcher registry every backend shares. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "store_backend.h"
#include "poison.h"

/* ---- watchers ---------------------------------------------------------- */

static int watchers_init(struct hy_store_watchers *w)
{
    pthread_mutexattr_t a;
    int rc;
    memset(w, 0, sizeof(*w));
    w->next_id = 1;
    if ((rc = pthread_mutexattr_init(&a)) != 0)
        return -rc;
    rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    if (rc == 0)
        rc = pthread_mutex_init(&w->mu, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}

static void watchers_fini(struct hy_store_watchers *w)
{
    pthread_mutex_destroy(&w->mu);
    free(w->v);
}

/* Drops the entries unwatched during a round; mu held, no round running. */
static void watchers_compact(struct hy_store_watchers *w)
{
    size_t j = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].fn)
            w->v[j++] = w->v[i];
    w->n = j;
    w->dirty = false;
}

/* Calls every watcher with mu held, so that once hy_store_unwatch returns
 * the callback is neither running nor called again. mu is recursive: a
 * callback may watch, unwatch or write to the store on its own thread. */
static void watchers_notify(struct hy_store_watchers *w, uint64_t revision)
{
    pthread_mutex_lock(&w->mu);
    w->depth++;
    size_t n = w->n; /* watchers added by a callback start with the next commit */
    for (size_t i = 0; i < n; i++) {
        struct hy_store_watcher e = w->v[i]; /* v may move if a callback watches */
        if (e.fn)
            e.fn(e.ud, revision);
    }
    if (--w->depth == 0 && w->dirty)
        watchers_compact(w);
    pthread_mutex_unlock(&w->mu);
}

void hy_store_watchers_notify(struct hy_store *s, uint64_t revision)
{
    watchers_notify(&s->watchers, revision);
}

int hy_store_watch(struct hy_store *s, hy_store_watch_fn fn, void *ud)
{
    struct hy_store_watchers *w = &s->watchers;
    int id = HY_ENOMEM;
    pthread_mutex_lock(&w->mu);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 4;
        struct hy_store_watcher *v = realloc(w->v, cap * sizeof(*v));
        if (!v)
            goto out_unlock;
        w->v = v;
        w->cap = cap;
    }
    id = w->next_id;
    w->next_id = w->next_id == INT_MAX ? 1 : w->next_id + 1;
    w->v[w->n++] = (struct hy_store_watcher){.id = id, .fn = fn, .ud = ud};
out_unlock:
    pthread_mutex_unlock(&w->mu);
    return id;
}

void hy_store_unwatch(struct hy_store *s, int id)
{
    struct hy_store_watchers *w = &s->watchers;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++) {
        if (w->v[i].id != id || !w->v[i].fn)
            continue;
        w->v[i].fn = NULL;
        w->dirty = true;
        break;
    }
    if (w->depth == 0 && w->dirty)
        watchers_compact(w);
    pthread_mutex_unlock(&w->mu);
}

/* ---- argument checks --------------------------------------------------- */

static bool valid_part(const char *s)
{
    return s && s[0] && !strchr(s, '/');
}

/* A key part must be non-empty and free of '/' (the key separator); global
 * types ignore the mesh. */
static bool valid_ident(const struct hy_rtype *t, const char *mesh, const char *name)
{
    if (!t || !valid_part(name))
        return false;
    return t->scope == HY_SCOPE_GLOBAL || valid_part(mesh);
}

static bool valid_write(const struct hy_store_write *w)
{
    const struct hy_resource *r = w->r;
    if (!r || !r->meta || (w->op != HY_STORE_PUT && w->op != HY_STORE_DELETE))
        return false;
    if (w->op == HY_STORE_PUT && !r->spec)
        return false;
    return valid_ident(r->type, r->meta->mesh, r->meta->name);
}

/* ---- API --------------------------------------------------------------- */

int hy_store_open(const struct hy_store_config *cfg, struct hy_store **out)
{
    struct hy_store *s;
    bool pg = cfg->backend == HY_STORE_POSTGRES;
    int rc = pg ? hy_store_pg_open(cfg, &s) : hy_store_lmdb_open(cfg, &s);
    if (rc < 0)
        return rc;
    if ((rc = watchers_init(&s->watchers)) < 0) {
        s->ops->close(s);
        return rc;
    }
    if (pg && (rc = hy_store_pg_start(s)) < 0) {
        hy_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

const char *hy_store_backend_name(const struct hy_store *s)
{
    return s->ops->name;
}

int hy_store_migrate(const struct hy_store_config *cfg, int *from, int *to)
{
    if (cfg->backend != HY_STORE_POSTGRES) {
        if (from)
            *from = 0;
        if (to)
            *to = 0;
        return 0;
    }
    return hy_store_pg_migrate(cfg, from, to);
}

void hy_store_close(struct hy_store *s)
{
    if (!s)
        return;
    if (s->ops->stop) /* a backend's thread may notify watchers until then */
        s->ops->stop(s);
    watchers_fini(&s->watchers);
    s->ops->close(s);
}

int hy_store_get(struct hy_store *s, const char *type, const char *mesh, const char *name,
                 struct hy_resource **out)
{
    const struct hy_rtype *t = type ? hy_rtype_by_name(type) : NULL;
    if (!valid_ident(t, mesh, name))
        return HY_EINVAL;
    return s->ops->get(s, t, hy_store_key_mesh(t, mesh), name, out);
}

int hy_store_apply(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed)
{
    return hy_store_apply_at(s, w, n, failed, HY_VERSION_ANY);
}

int hy_store_apply_at(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed,
                      uint64_t expect_revision)
{
    uint64_t committed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!valid_write(&w[i])) {
            if (failed)
                *failed = i;
            return HY_EINVAL;
        }
    }
    int rc = s->ops->apply(s, w, n, failed, expect_revision, &committed);
    if (rc == 0 && committed)
        watchers_notify(&s->watchers, committed);
    return rc;
}

int hy_store_put(struct hy_store *s, const struct hy_resource *r, uint64_t expect_version,
                 struct hy_store_write *result)
{
    struct hy_store_write w = {.op = HY_STORE_PUT, .r = r, .expect_version = expect_version};
    int rc = hy_store_apply(s, &w, 1, NULL);
    if (rc == 0 && result)
        *result = w;
    return rc;
}

int hy_store_delete(struct hy_store *s, const char *type, const char *mesh, const char *name,
                    uint64_t expect_version)
{
    const struct hy_rtype *t = type ? hy_rtype_by_name(type) : NULL;
    if (!t)
        return HY_EINVAL;
    /* Only type, mesh and name of a DELETE's resource are read. */
    Hypha__V1__Meta m = HYPHA__V1__META__INIT;
    m.mesh = (char *)mesh;
    m.name = (char *)name;
    struct hy_resource r = {.type = t, .meta = &m};
    struct hy_store_write w = {.op = HY_STORE_DELETE, .r = &r, .expect_version = expect_version};
    return hy_store_apply(s, &w, 1, NULL);
}

int hy_store_list(struct hy_store *s, const char *type, const char *mesh, const char *after,
                  size_t limit, struct hy_store_page *out)
{
    const struct hy_rtype *t = type ? hy_rtype_by_name(type) : NULL;
    memset(out, 0, sizeof(*out));
    if (!t)
        return HY_EINVAL;
    if (t->scope == HY_SCOPE_GLOBAL || (mesh && !mesh[0]))
        mesh = NULL;
    if (mesh && !valid_part(mesh))
        return HY_EINVAL;
    return s->ops->list(s, t, mesh, after, limit, out);
}

void hy_store_page_fini(struct hy_store_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        hy_resource_free(p->items[i]);
    free(p->items);
    free(p->next);
    memset(p, 0, sizeof(*p));
}

int hy_store_changes(struct hy_store *s, uint64_t since, size_t max, struct hy_store_changes *out)
{
    memset(out, 0, sizeof(*out));
    return s->ops->changes(s, since, max, out);
}

static int each_of_type(struct hy_store *s, const char *type, hy_store_each_fn fn, void *ud)
{
    char *after = NULL;
    int rc = 0;
    do {
        struct hy_store_page page = {0};
        rc = hy_store_list(s, type, NULL, after, 500, &page);
        free(after);
        after = NULL;
        for (size_t i = 0; rc == 0 && i < page.n; i++) {
            bool take = false;
            rc = fn(ud, page.items[i], &take);
            if (take)
                page.items[i] = NULL;
        }
        if (rc == 0) {
            after = page.next;
            page.next = NULL;
        }
        hy_store_page_fini(&page);
    } while (rc == 0 && after);
    free(after);
    return rc;
}

int hy_store_each(struct hy_store *s, const char *type, hy_store_each_fn fn, void *ud)
{
    if (type)
        return each_of_type(s, type, fn, ud);
    size_t nt;
    const struct hy_rtype *types = hy_rtype_all(&nt);
    int rc = 0;
    for (size_t i = 0; i < nt && rc == 0; i++)
        rc = each_of_type(s, types[i].name, fn, ud);
    return rc;
}

void hy_store_changes_fini(struct hy_store_changes *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].type);
        free(c->v[i].mesh);
        free(c->v[i].name);
        free(c->v[i].origin);
    }
    free(c->v);
    memset(c, 0, sizeof(*c));
}

uint64_t hy_store_revision(struct hy_store *s)
{
    return s->ops->revision(s);
}

uint64_t hy_store_horizon(struct hy_store *s)
{
    return s->ops->horizon(s);
}

int hy_store_compact(struct hy_store *s, uint64_t upto)
{
    return s->ops->compact(s, upto);
}

int hy_store_skip_to(struct hy_store *s, uint64_t rev)
{
    return s->ops->skip_to(s, rev);
}

int hy_store_stats(struct hy_store *s, struct hy_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    return s->ops->stats(s, out);
}

bool hy_store_cas_ok(const struct hy_resource *old, uint64_t expect)
{
    if (expect == HY_VERSION_ANY)
        return true;
    if (expect == HY_VERSION_NEW)
        return !old;
    return old && old->version == expect;
}

int hy_store_stamp_put(struct hy_store_write *w, const struct hy_resource *old, const char *mesh,
                       uint64_t rev, struct hy_store_stamp *st)
{
    const struct hy_resource *r = w->r;
    bool replica = w->flags & HY_STORE_REPLICA;
    if (!replica && !hy_store_cas_ok(old, w->expect_version))
        return HY_ECONFLICT;
    if (old && hy_resource_same_content(old, r) && (!replica || old->version == r->version)) {
        w->result = HY_STORE_UNCHANGED;
        w->version = old->version;
        w->revision = rev;
        return 1;
    }
    if (!(st->now = hy_timestamp_now()))
        return HY_ENOMEM;
    st->meta = *r->meta;
    st->meta.type = (char *)r->type->name;
    st->meta.mesh = mesh[0] ? (char *)mesh : NULL;
    if (!replica || !st->meta.creation_time)
        st->meta.creation_time =
            old && old->meta->creation_time ? old->meta->creation_time : st->now;
    if (!replica || !st->meta.modification_time)
        st->meta.modification_time = st->now;
    st->res = *r;
    st->res.meta = &st->meta;
    st->res.version = replica && r->version ? r->version : old ? old->version + 1 : 1;
    return 0;
}

void hy_store_stamp_fini(struct hy_store_stamp *st)
{
    protobuf_c_message_free_unpacked(&st->now->base, NULL);
    st->now = NULL;
}

/* ---- leader leases ----------------------------------------------------- */

void hy_store_lease_set(struct hy_store_lease *l, bool held, const char *why)
{
    if (atomic_exchange(&l->held, held) == held)
        return;
    atomic_fetch_add(&l->transitions, 1);
    hy_log(held ? HY_LOG_INFO : HY_LOG_WARN, "leader", "leader %s: %s by replica %s%s%s", l->name,
           held ? "acquired" : "lost", l->replica, why ? ": " : "", why ? why : "");
}

int hy_store_lease_open(struct hy_store *s, const char *name, const char *replica,
                        struct hy_store_lease **out)
{
    struct hy_store_lease *l = calloc(1, sizeof(*l));
    if (!l)
        return HY_ENOMEM;
    atomic_init(&l->held, false);
    atomic_init(&l->transitions, 0);
    if (!(l->name = strdup(name)) || !(l->replica = strdup(replica))) {
        hy_store_lease_close(l);
        return HY_ENOMEM;
    }
    int rc = 0;
    if (s->ops->lease_open)
        rc = s->ops->lease_open(s, l);
    else /* one process owns the store: always the leader */
        hy_store_lease_set(l, true, "the store is this process's own");
    if (rc < 0) {
        hy_store_lease_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

bool hy_store_lease_held(const struct hy_store_lease *l)
{
    return atomic_load(&((struct hy_store_lease *)l)->held);
}

uint64_t hy_store_lease_transitions(const struct hy_store_lease *l)
{
    return atomic_load(&((struct hy_store_lease *)l)->transitions);
}

void hy_store_lease_close(struct hy_store_lease *l)
{
    if (!l)
        return;
    if (l->close)
        l->close(l); /* releases the lock with its connection */
    else if (atomic_load(&l->held))
        hy_store_lease_set(l, false, "released");
    free(l->name);
    free(l->replica);
    free(l);
}
