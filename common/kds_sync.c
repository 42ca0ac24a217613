/* KDS sync engine: collecting a store's changes for a peer (deltas from the
 * change log, or a snapshot) and applying a peer's changes in one
 * transaction. No sockets here: kds_server/kds_client carry the messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kds_sync.h"
#include "log.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

uint8_t *hy_kds_pack(const Hypha__V1__KdsMessage *m, size_t *len)
{
    *len = hypha__v1__kds_message__get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        hypha__v1__kds_message__pack(m, buf);
    return buf;
}

/* ----- collect ----- */

static int add_upsert(Hypha__V1__Changes *c, const struct hy_resource *r)
{
    size_t len;
    uint8_t *p = hy_resource_pack(r, &len);
    if (!p)
        return HY_ENOMEM;
    Hypha__V1__Envelope *env = hypha__v1__envelope__unpack(NULL, len, p);
    free(p);
    if (!env)
        return HY_ENOMEM;
    Hypha__V1__Envelope **v = realloc(c->upserts, (c->n_upserts + 1) * sizeof(*v));
    if (!v) {
        hypha__v1__envelope__free_unpacked(env, NULL);
        return HY_ENOMEM;
    }
    c->upserts = v;
    v[c->n_upserts++] = env;
    return 0;
}

static int add_delete(Hypha__V1__Changes *c, const char *type, const char *mesh, const char *name)
{
    Hypha__V1__ResourceKey *k = malloc(sizeof(*k));
    if (!k)
        return HY_ENOMEM;
    hypha__v1__resource_key__init(k);
    k->type = strdup(type);
    k->mesh = mesh && mesh[0] ? strdup(mesh) : NULL;
    k->name = strdup(name);
    Hypha__V1__ResourceKey **v = realloc(c->deletes, (c->n_deletes + 1) * sizeof(*v));
    if (!v || !k->type || !k->name || (mesh && mesh[0] && !k->mesh)) {
        hypha__v1__resource_key__free_unpacked(k, NULL);
        return HY_ENOMEM;
    }
    c->deletes = v;
    v[c->n_deletes++] = k;
    return 0;
}

static bool in_scope(const struct hy_kds_scope *sc, const struct hy_rtype *t, const char *origin)
{
    return t && !t->secret && sc->match(sc->ud, t, origin);
}

struct snapshot_walk {
    const struct hy_kds_scope *scope;
    Hypha__V1__Changes *c;
};

static int snapshot_one(void *ud, struct hy_resource *r, bool *take)
{
    struct snapshot_walk *w = ud;
    (void)take;
    return in_scope(w->scope, r->type, S(r->origin)) ? add_upsert(w->c, r) : 0;
}

static int snapshot(struct hy_store *s, const struct hy_kds_scope *scope, Hypha__V1__Changes *c)
{
    struct snapshot_walk w = {scope, c};
    return hy_store_each(s, NULL, snapshot_one, &w);
}

static int cmp_change(const void *a, const void *b)
{
    const struct hy_store_change *x = *(const struct hy_store_change *const *)a;
    const struct hy_store_change *y = *(const struct hy_store_change *const *)b;
    int d = strcmp(x->type, y->type);
    if (!d)
        d = strcmp(x->mesh, y->mesh);
    if (!d)
        d = strcmp(x->name, y->name);
    if (!d)
        d = x->revision < y->revision ? -1 : x->revision > y->revision;
    return d;
}

static int cmp_revision(const void *a, const void *b)
{
    const struct hy_store_change *x = *(const struct hy_store_change *const *)a;
    const struct hy_store_change *y = *(const struct hy_store_change *const *)b;
    return x->revision < y->revision ? -1 : x->revision > y->revision;
}

static bool same_key(const struct hy_store_change *a, const struct hy_store_change *b)
{
    return !strcmp(a->type, b->type) && !strcmp(a->mesh, b->mesh) && !strcmp(a->name, b->name);
}

/* Each key once, in its latest state, in revision order. */
static int deltas(struct hy_store *s, const struct hy_store_changes *ch,
                  const struct hy_kds_scope *scope, Hypha__V1__Changes *c)
{
    const struct hy_store_change **v = malloc((ch->n ? ch->n : 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    for (size_t i = 0; i < ch->n; i++)
        v[i] = &ch->v[i];
    qsort(v, ch->n, sizeof(*v), cmp_change);
    size_t n = 0;
    for (size_t i = 0; i < ch->n; i++)
        if (i + 1 == ch->n || !same_key(v[i], v[i + 1]))
            v[n++] = v[i]; /* the last (latest) of each key */
    qsort(v, n, sizeof(*v), cmp_revision);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct hy_store_change *x = v[i];
        const struct hy_rtype *t = hy_rtype_by_name(x->type);
        if (!in_scope(scope, t, x->origin))
            continue;
        struct hy_resource *r = NULL;
        if (x->op == HY_STORE_PUT && hy_store_get(s, x->type, x->mesh, x->name, &r) == 0) {
            if (in_scope(scope, r->type, S(r->origin)))
                rc = add_upsert(c, r);
            hy_resource_free(r);
        } else {
            rc = add_delete(c, x->type, x->mesh, x->name);
        }
    }
    free(v);
    return rc;
}

int hy_kds_collect(struct hy_store *s, uint64_t since, size_t max, const struct hy_kds_scope *scope,
                   Hypha__V1__Changes **out)
{
    Hypha__V1__Changes *c = malloc(sizeof(*c));
    if (!c)
        return HY_ENOMEM;
    hypha__v1__changes__init(c);
    c->has_from = c->has_to = 1;
    c->from = since;
    /* read the revision before the data: what lands in between is sent
     * again next time, which is harmless; the reverse would lose it */
    uint64_t rev = hy_store_revision(s);
    struct hy_store_changes ch = {0};
    int rc =
        since > rev ? HY_ETOOOLD : hy_store_changes(s, since, max ? max : HY_KDS_MAX_CHANGES, &ch);
    if (rc == HY_ETOOOLD) {
        c->has_snapshot = c->snapshot = 1;
        c->to = rev;
        rc = snapshot(s, scope, c);
    } else if (rc == 0) {
        c->to = ch.to;
        rc = deltas(s, &ch, scope, c);
    }
    hy_store_changes_fini(&ch);
    if (rc < 0) {
        hypha__v1__changes__free_unpacked(c, NULL);
        return rc;
    }
    *out = c;
    return 0;
}

/* ----- apply ----- */

struct keyset {
    char **v;
    size_t n;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *key_of(const char *type, const char *mesh, const char *name)
{
    size_t l = strlen(type) + strlen(S(mesh)) + strlen(name) + 3;
    char *k = malloc(l);
    if (k)
        snprintf(k, l, "%s/%s/%s", type, S(mesh), name);
    return k;
}

static void batch_free(struct hy_store_write *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hy_resource_free((struct hy_resource *)w[i].r);
    free(w);
}

struct replace_walk {
    const struct hy_kds_scope *replace;
    const struct keyset *keep;
    struct hy_store_write **w;
    size_t *n, *cap;
};

static int replace_one(void *ud, struct hy_resource *r, bool *take)
{
    struct replace_walk *rw = ud;
    if (r->type->secret || !rw->replace->match(rw->replace->ud, r->type, S(r->origin)))
        return 0;
    char *key = key_of(r->type->name, r->meta->mesh, r->meta->name);
    if (!key)
        return HY_ENOMEM;
    bool kept = bsearch(&key, rw->keep->v, rw->keep->n, sizeof(char *), cmp_str) != NULL;
    free(key);
    if (kept)
        return 0;
    if (*rw->n == *rw->cap) {
        size_t nc = *rw->cap * 2 + 16;
        struct hy_store_write *nw = realloc(*rw->w, nc * sizeof(*nw));
        if (!nw)
            return HY_ENOMEM;
        *rw->w = nw;
        *rw->cap = nc;
    }
    (*rw->w)[(*rw->n)++] = (struct hy_store_write){.op = HY_STORE_DELETE,
                                                   .flags = HY_STORE_IF_EXISTS,
                                                   .r = r,
                                                   .expect_version = HY_VERSION_ANY};
    *take = true; /* the batch owns it now */
    return 0;
}

/* Adds DELETEs for local resources in `replace` that the snapshot lacks. */
static int replace_rest(struct hy_store *s, const struct hy_kds_scope *replace,
                        const struct keyset *keep, struct hy_store_write **w, size_t *n,
                        size_t *cap)
{
    struct replace_walk rw = {replace, keep, w, n, cap};
    return hy_store_each(s, NULL, replace_one, &rw);
}

static int upsert_write(const Hypha__V1__Envelope *env, const struct hy_kds_apply_opts *o,
                        struct hy_store_write *w, char *err, size_t errsize)
{
    size_t len = hypha__v1__envelope__get_packed_size(env);
    uint8_t *p = malloc(len ? len : 1);
    struct hy_resource *r = NULL;
    if (!p)
        return HY_ENOMEM;
    hypha__v1__envelope__pack(env, p);
    int rc = hy_resource_unpack(p, len, &r);
    free(p);
    if (rc < 0) {
        snprintf(err, errsize, "an upsert is not a resource of a known type");
        return HY_EINVAL;
    }
    *w = (struct hy_store_write){.op = HY_STORE_PUT, .flags = HY_STORE_REPLICA, .r = r};
    if (!in_scope(o->accept, r->type, NULL)) {
        snprintf(err, errsize, "%s %s may not be sent on this stream", r->type->name,
                 S(r->meta->name));
        return HY_EINVAL;
    }
    if (o->transform && (rc = o->transform(o->ud, r)) < 0) {
        snprintf(err, errsize, "%s %s: cannot take it: %s", r->type->name, S(r->meta->name),
                 hy_strerror(rc));
        return rc;
    }
    /* Names are checked (they become store keys); specs are not: the
     * sender validated them, and a newer sender's rules must not wedge an
     * older receiver. */
    const char *mesh = r->meta->mesh;
    bool mesh_ok = r->type->scope == HY_SCOPE_MESH ? mesh && hy_valid_name(mesh) : !mesh;
    if (!hy_valid_name(r->meta->name) || !mesh_ok) {
        snprintf(err, errsize, "%s \"%s\" in mesh \"%s\" has an invalid name or mesh",
                 r->type->name, S(r->meta->name), S(mesh));
        return HY_EINVAL;
    }
    return 0;
}

static int delete_write(const Hypha__V1__ResourceKey *k, const struct hy_kds_apply_opts *o,
                        struct hy_store_write *w, char *err, size_t errsize)
{
    const struct hy_rtype *t = k->type ? hy_rtype_by_name(k->type) : NULL;
    if (!t || !k->name || !in_scope(o->accept, t, NULL)) {
        snprintf(err, errsize, "delete of %s %s may not be sent on this stream", S(k->type),
                 S(k->name));
        return HY_EINVAL;
    }
    char name[512];
    snprintf(name, sizeof(name), "%s", k->name);
    int rc = o->transform_key ? o->transform_key(o->ud, k, name, sizeof(name)) : 0;
    struct hy_resource *r = hy_resource_new(t);
    *w = (struct hy_store_write){.op = HY_STORE_DELETE,
                                 .flags = HY_STORE_IF_EXISTS,
                                 .r = r,
                                 .expect_version = HY_VERSION_ANY};
    if (rc < 0)
        return rc;
    if (!r || hy_resource_set_name(r, t->scope == HY_SCOPE_MESH ? k->mesh : NULL, name) < 0)
        return HY_ENOMEM;
    return 0;
}

int hy_kds_apply(struct hy_store *s, const Hypha__V1__Changes *c, const struct hy_kds_apply_opts *o,
                 struct hy_kds_applied *out, char *err, size_t errsize)
{
    char scratch[8];
    if (!err) {
        err = scratch;
        errsize = sizeof(scratch);
    }
    err[0] = '\0';
    size_t cap = c->n_upserts + c->n_deletes + 16, n = 0;
    struct hy_store_write *w = calloc(cap, sizeof(*w));
    struct keyset keep = {0};
    int rc = w ? 0 : HY_ENOMEM;
    for (size_t i = 0; i < c->n_upserts && rc == 0; i++)
        rc = upsert_write(c->upserts[i], o, &w[n++], err, errsize);
    for (size_t i = 0; i < c->n_deletes && rc == 0; i++)
        rc = delete_write(c->deletes[i], o, &w[n++], err, errsize);
    if (rc == 0 && c->snapshot) {
        keep.v = malloc((c->n_upserts ? c->n_upserts : 1) * sizeof(char *));
        rc = keep.v ? 0 : HY_ENOMEM;
        for (size_t i = 0; i < c->n_upserts && rc == 0; i++) {
            const struct hy_resource *r = w[i].r;
            if (!(keep.v[keep.n++] = key_of(r->type->name, r->meta->mesh, r->meta->name)))
                rc = HY_ENOMEM;
        }
        if (rc == 0) {
            qsort(keep.v, keep.n, sizeof(char *), cmp_str);
            rc = replace_rest(s, o->replace, &keep, &w, &n, &cap);
        }
    }
    if (rc == 0 && o->also) {
        if (n == cap) {
            struct hy_store_write *nw = realloc(w, (cap + 1) * sizeof(*nw));
            rc = nw ? 0 : HY_ENOMEM;
            if (nw) {
                w = nw;
                cap++;
            }
        }
        struct hy_resource *dup = rc == 0 ? hy_resource_dup(o->also) : NULL;
        if (dup)
            w[n++] = (struct hy_store_write){
                .op = HY_STORE_PUT, .r = dup, .expect_version = HY_VERSION_ANY};
        else
            rc = HY_ENOMEM;
    }
    size_t failed = 0;
    if (rc == 0 && n) {
        rc = hy_store_apply(s, w, n, &failed);
        if (rc < 0)
            snprintf(err, errsize, "cannot store the changes: %s", hy_strerror(rc));
    }
    if (rc == 0 && out) {
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < n - (o->also ? 1 : 0); i++)
            if (w[i].result != HY_STORE_UNCHANGED)
                (*(w[i].op == HY_STORE_PUT ? &out->upserts : &out->deletes))++;
        out->revision = hy_store_revision(s);
    }
    if (rc < 0 && !err[0])
        snprintf(err, errsize, "%s", hy_strerror(rc));
    if (w)
        batch_free(w, n);
    for (size_t i = 0; i < keep.n; i++)
        free(keep.v[i]);
    free(keep.v);
    return rc;
}
