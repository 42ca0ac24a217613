/* KDS sync engine: collecting a store's changes for a peer (deltas from the
 * change log, or a snapshot) and applying a peer's changes in one
 * transaction. No sockets here: kds_server/kds_client carry the messages. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kds_sync.h"
#include "log.h"
#include "validate.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

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

/* ----- collect ----- */

/* Adds r unless the message already holds something and r would take its
 * packed size past max: then 1 (not added). 0 when added, or HY_ENOMEM. */
static int add_upsert(Hypha__V1__Changes *c, const struct hy_resource *r, size_t *bytes, size_t max)
{
    size_t len;
    uint8_t *p = hy_resource_pack(r, &len);
    if (!p)
        return HY_ENOMEM;
    if ((c->n_upserts || c->n_deletes) && *bytes + len + 8 > max) {
        free(p);
        return 1;
    }
    *bytes += len + 8; /* with its tag and length, counted generously */
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

/* The same for a delete's key. */
static int add_delete(Hypha__V1__Changes *c, const char *type, const char *mesh, const char *name,
                      size_t *bytes, size_t max)
{
    size_t len = strlen(type) + strlen(S(mesh)) + strlen(name) + 16;
    if ((c->n_upserts || c->n_deletes) && *bytes + len > max)
        return 1;
    *bytes += len;
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

void hy_kds_snap_tx_reset(struct hy_kds_snap_tx *t)
{
    free(t->after);
    *t = (struct hy_kds_snap_tx){0};
}

/* The store key of r, as hy_store_list takes it for `after`. */
static char *store_key(const struct hy_resource *r)
{
    return key_of(r->type->name, r->type->scope == HY_SCOPE_GLOBAL ? "" : r->meta->mesh,
                  r->meta->name);
}

#define SNAPSHOT_PAGE 128 /* resources read per store page while collecting a snapshot */

/* Adds what is in scope from where t stands, type by type in key order,
 * until the budget is spent: *done when nothing is left. t moves past what
 * was added. */
static int snapshot_part(struct hy_store *s, const struct hy_kds_scope *scope, size_t max,
                         size_t max_bytes, struct hy_kds_snap_tx *t, Hypha__V1__Changes *c,
                         bool *done)
{
    size_t nt, bytes = 0;
    const struct hy_rtype *types = hy_rtype_all(&nt);
    int rc = 0;
    *done = false;
    while (t->type < nt && rc == 0) {
        if (types[t->type].secret) {
            t->type++;
            continue;
        }
        struct hy_store_page page = {0};
        rc = hy_store_list(s, types[t->type].name, NULL, t->after, SNAPSHOT_PAGE, &page);
        size_t i = 0;
        for (; i < page.n && rc == 0; i++) {
            struct hy_resource *r = page.items[i];
            if (!in_scope(scope, r->type, S(r->origin)))
                continue;
            rc = c->n_upserts >= max ? 1 : add_upsert(c, r, &bytes, max_bytes);
        }
        if (rc == 1) { /* full: the next part starts at the one that did not fit */
            i--;
            char *after = i ? store_key(page.items[i - 1]) : NULL;
            if (i && !after)
                rc = HY_ENOMEM;
            else if (i) {
                free(t->after);
                t->after = after;
            }
        } else if (rc == 0) {
            free(t->after);
            t->after = page.next;
            page.next = NULL;
            if (!t->after)
                t->type++;
        }
        hy_store_page_fini(&page);
    }
    if (rc == 1)
        return 0;
    *done = rc == 0;
    return rc;
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

/* Each key once, in its latest state, in revision order, until the next
 * would take the message past max_bytes: then *cut is the revision they
 * cover (keys whose latest state comes later go in the next message),
 * else 0. */
static int deltas(struct hy_store *s, const struct hy_store_changes *ch,
                  const struct hy_kds_scope *scope, size_t max_bytes, Hypha__V1__Changes *c,
                  uint64_t *cut)
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
    size_t bytes = 0;
    *cut = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct hy_store_change *x = v[i];
        const struct hy_rtype *t = hy_rtype_by_name(x->type);
        if (!in_scope(scope, t, x->origin))
            continue;
        struct hy_resource *r = NULL;
        if (x->op == HY_STORE_PUT && hy_store_get(s, x->type, x->mesh, x->name, &r) == 0) {
            if (in_scope(scope, r->type, S(r->origin)))
                rc = add_upsert(c, r, &bytes, max_bytes);
            hy_resource_free(r);
        } else {
            rc = add_delete(c, x->type, x->mesh, x->name, &bytes, max_bytes);
        }
        if (rc == 1) { /* i > 0: something is in; all before i is covered */
            *cut = v[i - 1]->revision;
            rc = 0;
            break;
        }
    }
    free(v);
    return rc;
}

size_t hy_kds_budget_bytes(uint64_t own_max, uint64_t peer_max)
{
    uint64_t lim = own_max && (!peer_max || own_max < peer_max) ? own_max : peer_max;
    return lim && lim / 2 < HY_KDS_MAX_BYTES ? (size_t)(lim / 2) : HY_KDS_MAX_BYTES;
}

int hy_kds_collect_parts(struct hy_store *s, uint64_t since, const struct hy_kds_scope *scope,
                         const struct hy_kds_budget *b, struct hy_kds_snap_tx *parts,
                         Hypha__V1__Changes **out)
{
    size_t max = b && b->max_changes ? b->max_changes : HY_KDS_MAX_CHANGES;
    size_t max_bytes = b && b->max_bytes ? b->max_bytes : HY_KDS_MAX_BYTES;
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
    struct hy_kds_snap_tx whole = {0}, *t = parts ? parts : &whole;
    /* a snapshot under way goes on; a peer ahead of this store gets one */
    int rc = t->active || since > rev ? HY_ETOOOLD : hy_store_changes(s, since, max, &ch);
    if (rc == HY_ETOOOLD) {
        bool done = false;
        if (!t->active)
            *t = (struct hy_kds_snap_tx){.to = rev};
        c->has_snapshot = c->snapshot = 1;
        c->to = t->to;
        /* a peer without parts takes it whole, as v1 did */
        rc = parts ? snapshot_part(s, scope, max, max_bytes, t, c, &done)
                   : snapshot_part(s, scope, SIZE_MAX, SIZE_MAX, t, c, &done);
        if (rc == 0 && (t->part || !done)) {
            c->has_part = c->has_more = 1;
            c->part = t->part++;
            c->more = !done;
        }
        t->active = rc == 0 && !done;
        if (!t->active)
            hy_kds_snap_tx_reset(t);
    } else if (rc == 0) {
        uint64_t cut = 0;
        rc = deltas(s, &ch, scope, max_bytes, c, &cut);
        c->to = cut ? cut : ch.to;
    }
    hy_store_changes_fini(&ch);
    if (rc < 0) {
        hypha__v1__changes__free_unpacked(c, NULL);
        return rc;
    }
    *out = c;
    return 0;
}

int hy_kds_collect(struct hy_store *s, uint64_t since, size_t max, const struct hy_kds_scope *scope,
                   Hypha__V1__Changes **out)
{
    struct hy_kds_budget b = {.max_changes = max};
    return hy_kds_collect_parts(s, since, scope, &b, NULL, out);
}

/* ----- apply ----- */

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

static int refused(int rc)
{
    return rc < 0 ? rc : 1;
}

/* Records that the resource the sender called type/mesh/name was not
 * stored, and why. 0 or HY_ENOMEM. */
static int refuse(struct hy_kds_applied *out, const char *type, const char *mesh, const char *name,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int refuse(struct hy_kds_applied *out, const char *type, const char *mesh, const char *name,
                  const char *fmt, ...)
{
    struct hy_kds_refusal *v = realloc(out->refused, (out->n_refused + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    out->refused = v;
    struct hy_kds_refusal *f = &v[out->n_refused++];
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* a peer's strings are bounded before they are copied into logs */
    f->type = strndup(S(type), 64);
    f->mesh = strndup(S(mesh), 260);
    f->name = strndup(S(name), 260);
    f->reason = strdup(why);
    if (!f->type || !f->mesh || !f->name || !f->reason)
        return HY_ENOMEM;
    return 0;
}

void hy_kds_applied_fini(struct hy_kds_applied *a)
{
    for (size_t i = 0; a && i < a->n_refused; i++) {
        free(a->refused[i].type);
        free(a->refused[i].mesh);
        free(a->refused[i].name);
        free(a->refused[i].reason);
    }
    if (a) {
        free(a->refused);
        a->refused = NULL;
        a->n_refused = 0;
    }
}

/* The first problem of d, "field: message", for a refusal. */
static const char *first_cause(const struct hy_diag *d, char *buf, size_t size)
{
    if (!d->n)
        return "invalid";
    const struct hy_cause *c = &d->causes[0];
    snprintf(buf, size, "%s%s%s", c->field ? c->field : "", c->field ? ": " : "",
             c->message ? c->message : "invalid");
    return buf;
}

/* Judges one upsert. 0 with *w filled (the batch owns w->r), 1 when it was
 * refused (recorded in out; w untouched, *keep_key set to the key it would
 * have had when known, for a snapshot), or a negative code. */
static int upsert_write(struct hy_store *s, const Hypha__V1__Envelope *env,
                        const struct hy_kds_apply_opts *o, struct hy_store_write *w,
                        struct hy_kds_applied *out, char **keep_key)
{
    const char *type = env->meta ? env->meta->type : NULL,
               *mesh = env->meta ? env->meta->mesh : NULL,
               *name = env->meta ? env->meta->name : NULL;
    size_t len = hypha__v1__envelope__get_packed_size(env);
    uint8_t *p = malloc(len ? len : 1);
    struct hy_resource *r = NULL, *old = NULL;
    char why[300], cause[400];
    struct hy_diag d = {0};
    if (!p)
        return HY_ENOMEM;
    hypha__v1__envelope__pack(env, p);
    int rc = hy_resource_unpack(p, len, &r);
    free(p);
    if (rc == HY_ENOMEM)
        return rc;
    if (rc < 0)
        return refused(
            refuse(out, type, mesh, name, "not a resource of a type this control plane knows"));
    if (!in_scope(o->accept, r->type, NULL)) {
        rc = refuse(out, type, mesh, name, "%s may not be sent on this stream", r->type->name);
        goto out_refused;
    }
    /* everything a peer sends is validated before anything reads it: names,
     * labels, map keys, and the spec by its type's rules */
    if (!hy_resource_validate(r, &d)) {
        rc = refuse(out, type, mesh, name, "%s", first_cause(&d, cause, sizeof(cause)));
        goto out_refused;
    }
    if (o->transform && (rc = o->transform(o->ud, r)) < 0) {
        if (rc == HY_ENOMEM)
            goto out_free;
        rc = refuse(out, type, mesh, name, "cannot take it: %s", hy_strerror(rc));
        goto out_refused;
    }
    /* the name it is stored under (a zone's prefix added) is a name too */
    if (!hy_valid_name(r->meta->name)) {
        rc = refuse(out, type, mesh, name,
                    "its name here, \"%.300s\", is not a valid name (at most 253 characters)",
                    r->meta->name);
        goto out_refused;
    }
    *keep_key = key_of(r->type->name, r->meta->mesh, r->meta->name);
    if (!*keep_key) {
        rc = HY_ENOMEM;
        goto out_free;
    }
    rc = hy_store_get(s, r->type->name, r->meta->mesh, r->meta->name, &old);
    if (rc < 0 && rc != HY_ENOTFOUND)
        goto out_free;
    why[0] = '\0';
    if (o->admit && !o->admit(o->ud, HY_STORE_PUT, r, rc == 0 ? old : NULL, why, sizeof(why))) {
        if (rc == HY_ENOTFOUND) { /* nothing here to keep: a snapshot's key set stays bounded */
            free(*keep_key);
            *keep_key = NULL;
        }
        rc = refuse(out, type, mesh, name, "%s", why[0] ? why : "refused");
        goto out_refused;
    }
    *w = (struct hy_store_write){.op = HY_STORE_PUT, .flags = HY_STORE_REPLICA, .r = r};
    r = NULL;
    rc = 0;
    goto out_free;
out_refused:
    if (rc == 0)
        rc = 1;
out_free:
    hy_diag_fini(&d);
    hy_resource_free(old);
    hy_resource_free(r);
    return rc;
}

/* The same for a delete: 0 with *w filled, 1 refused, or a negative code. */
static int delete_write(struct hy_store *s, const Hypha__V1__ResourceKey *k,
                        const struct hy_kds_apply_opts *o, struct hy_store_write *w,
                        struct hy_kds_applied *out)
{
    const struct hy_rtype *t = k->type ? hy_rtype_by_name(k->type) : NULL;
    if (!t || !in_scope(o->accept, t, NULL))
        return refused(refuse(out, k->type, k->mesh, k->name,
                              "a delete of this type may not be sent "
                              "on this stream"));
    bool mesh_ok = t->scope == HY_SCOPE_MESH ? k->mesh && hy_valid_name(k->mesh) : !k->mesh;
    if (!hy_valid_name(k->name) || !mesh_ok)
        return refused(refuse(out, k->type, k->mesh, k->name, "not a valid name or mesh"));
    char name[512], why[300] = "";
    snprintf(name, sizeof(name), "%s", k->name);
    int rc = o->transform_key ? o->transform_key(o->ud, k, name, sizeof(name)) : 0;
    if (rc < 0)
        return rc;
    struct hy_resource *r = hy_resource_new(t), *old = NULL;
    if (!r || hy_resource_set_name(r, t->scope == HY_SCOPE_MESH ? k->mesh : NULL, name) < 0) {
        hy_resource_free(r);
        return HY_ENOMEM;
    }
    rc = hy_store_get(s, t->name, r->meta->mesh, r->meta->name, &old);
    if (rc < 0 && rc != HY_ENOTFOUND) {
        hy_resource_free(r);
        return rc;
    }
    if (rc == 0 && o->admit && !o->admit(o->ud, HY_STORE_DELETE, r, old, why, sizeof(why))) {
        hy_resource_free(r);
        hy_resource_free(old);
        return refused(refuse(out, k->type, k->mesh, k->name, "%s", why[0] ? why : "refused"));
    }
    hy_resource_free(old);
    *w = (struct hy_store_write){.op = HY_STORE_DELETE,
                                 .flags = HY_STORE_IF_EXISTS,
                                 .r = r,
                                 .expect_version = HY_VERSION_ANY};
    return 0;
}

static int grow(struct hy_store_write **w, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap * 2 + 16;
    struct hy_store_write *nw = realloc(*w, nc * sizeof(*nw));
    if (!nw)
        return HY_ENOMEM;
    *w = nw;
    *cap = nc;
    return 0;
}

void hy_kds_snap_rx_reset(struct hy_kds_snap_rx *rx)
{
    if (!rx)
        return;
    for (size_t i = 0; i < rx->n; i++)
        free(rx->keys[i]);
    free(rx->keys);
    *rx = (struct hy_kds_snap_rx){0};
}

/* Moves the (sorted) keys of one part into rx's sorted, unique set. */
static int rx_merge(struct hy_kds_snap_rx *rx, struct keyset *part)
{
    size_t need = rx->n + part->n;
    char **v = malloc((need ? need : 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    size_t i = 0, j = 0, n = 0;
    while (i < rx->n || j < part->n) {
        int d = i == rx->n ? 1 : j == part->n ? -1 : strcmp(rx->keys[i], part->v[j]);
        char *k = d <= 0 ? rx->keys[i++] : part->v[j++];
        if (d == 0)
            free(part->v[j++]);
        if (n && !strcmp(v[n - 1], k))
            free(k);
        else
            v[n++] = k;
    }
    free(rx->keys);
    rx->keys = v;
    rx->n = n;
    rx->cap = need;
    part->n = 0;
    return 0;
}

/* Where c stands among the parts of a snapshot: 0 (not a part), 1 (a part
 * in order, rx ready for it), or a negative code with err filled. */
static int rx_check(const Hypha__V1__Changes *c, struct hy_kds_snap_rx *rx, char *err,
                    size_t errsize)
{
    if (!c->snapshot || (!c->more && !c->part)) {
        hy_kds_snap_rx_reset(rx); /* a snapshot cut short is dropped: it deletes nothing */
        return 0;
    }
    if (!rx) {
        snprintf(err, errsize, "a snapshot in parts, which this side did not ask for");
        return HY_EINVAL;
    }
    if (c->part == 0) {
        hy_kds_snap_rx_reset(rx);
        *rx = (struct hy_kds_snap_rx){.active = true, .to = c->to};
    } else if (!rx->active || c->part != rx->next || c->to != rx->to) {
        snprintf(err, errsize,
                 "snapshot part %u of revision %llu out of order (expected part %u of %llu)",
                 (unsigned)c->part, (unsigned long long)c->to, (unsigned)rx->next,
                 (unsigned long long)rx->to);
        hy_kds_snap_rx_reset(rx);
        return HY_EINVAL;
    }
    return 1;
}

int hy_kds_apply(struct hy_store *s, const Hypha__V1__Changes *c, const struct hy_kds_apply_opts *o,
                 struct hy_kds_applied *out, char *err, size_t errsize)
{
    char scratch[8];
    struct hy_kds_applied mine = {0}, *res = out ? out : &mine;
    if (!err) {
        err = scratch;
        errsize = sizeof(scratch);
    }
    err[0] = '\0';
    memset(res, 0, sizeof(*res));
    size_t cap = c->n_upserts + c->n_deletes + 16, n = 0;
    struct hy_store_write *w = calloc(cap, sizeof(*w));
    struct keyset keep = {0};
    struct hy_kds_snap_rx *rx = o->parts;
    int part = rx_check(c, rx, err, errsize);
    int rc = part < 0 ? part : w ? 0 : HY_ENOMEM;
    if (rc == 0 && c->snapshot) {
        keep.v = malloc((c->n_upserts ? c->n_upserts : 1) * sizeof(char *));
        rc = keep.v ? 0 : HY_ENOMEM;
    }
    /* each resource is judged alone: a refused one is reported and left
     * out, and the rest is applied (one bad resource never wedges a stream) */
    for (size_t i = 0; i < c->n_upserts && rc == 0; i++) {
        char *key = NULL;
        rc = upsert_write(s, c->upserts[i], o, &w[n], res, &key);
        if (rc == 0)
            n++;
        if (rc >= 0 && key && keep.v)
            keep.v[keep.n++] = key;
        else
            free(key);
        rc = rc > 0 ? 0 : rc;
    }
    for (size_t i = 0; i < c->n_deletes && rc == 0; i++) {
        rc = delete_write(s, c->deletes[i], o, &w[n], res);
        if (rc == 0)
            n++;
        rc = rc > 0 ? 0 : rc;
    }
    if (rc == 0 && c->snapshot) {
        qsort(keep.v, keep.n, sizeof(char *), cmp_str);
        if (part > 0) /* the parts' keys together; keep takes them for the last part */
            rc = rx_merge(rx, &keep);
        if (rc == 0 && part > 0 && !c->more) {
            free(keep.v);
            keep = (struct keyset){rx->keys, rx->n};
            rx->keys = NULL;
            rx->n = rx->cap = 0;
        }
        /* only the whole snapshot says what is gone */
        if (rc == 0 && !c->more)
            rc = replace_rest(s, o->replace, &keep, &w, &n, &cap);
    }
    if (rc == 0 && o->also && (rc = grow(&w, n, &cap)) == 0) {
        struct hy_resource *dup = hy_resource_dup(o->also);
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
    if (rc == 0) {
        for (size_t i = 0; i < n - (o->also ? 1 : 0); i++)
            if (w[i].result != HY_STORE_UNCHANGED)
                (*(w[i].op == HY_STORE_PUT ? &res->upserts : &res->deletes))++;
        res->revision = hy_store_revision(s);
    }
    if (part > 0 && (rc < 0 || !c->more))
        hy_kds_snap_rx_reset(rx); /* done, or failed: the sender starts again from part 0 */
    else if (part > 0)
        rx->next++;
    if (rc < 0 && !err[0])
        snprintf(err, errsize, "%s", hy_strerror(rc));
    if (rc < 0 || !out)
        hy_kds_applied_fini(res);
    if (w)
        batch_free(w, n);
    for (size_t i = 0; i < keep.n; i++)
        free(keep.v[i]);
    free(keep.v);
    return rc;
}
