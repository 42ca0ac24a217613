/* The LMDB backend of the store: resources, the change log and the counters
 * in one environment; each batch of writes is one write transaction.
 *
 * Named databases: "resources" (key "Type/mesh/name", value an Envelope),
 * "changes" (key the revision as 8 big-endian bytes, value a ChangeRecord)
 * and "meta" (8 big-endian bytes each: "revision", "horizon", "schema",
 * "counted", and resource counters keyed "Type/" and "Type/mesh/"; see
 * "counters" below).
 *
 * Internal helpers return 0, an MDB_* code or an HY_E* code (the ranges do
 * not overlap); xlate() turns the result into an HY_E* at each entry point,
 * so MDB_* codes never leave this file. */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "log.h"
#include "store.pb-c.h"
#include "store_backend.h"
#include "poison.h"

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define DEFAULT_RETENTION 100000
#define KEY_BUF 1024  /* > LMDB's largest key size (511 unless rebuilt) */
#define SPEC_BUF 1024 /* specs up to this size are packed on the stack */
#define OP_UPSERT HYPHA__V1__CHANGE_RECORD__OP__Upsert
#define OP_DELETE HYPHA__V1__CHANGE_RECORD__OP__Delete

struct lmdb_store {
    struct hy_store base;
    MDB_env *env;
    MDB_dbi res, chg, meta;
    char *path;
    uint64_t retention;
    bool read_only;
};

static struct lmdb_store *lmdb(struct hy_store *s)
{
    return (struct lmdb_store *)s;
}

/* Maps a helper's result to an HY_E* code, logging what needs a human. */
static int xlate(struct lmdb_store *ls, int rc, const char *what)
{
    MDB_envinfo info;
    if (rc == 0 || (rc >= HY_EFIRST && rc < HY_ELAST))
        return rc;
    switch (rc) {
    case MDB_NOTFOUND:
        return HY_ENOTFOUND;
    case ENOMEM:
        return HY_ENOMEM;
    case MDB_MAP_FULL:
        mdb_env_info(ls->env, &info);
        hy_log(HY_LOG_ERROR, "store",
               "%s: %s: the store is full (map size %zu bytes); nothing was written; raise "
               "the store map size and restart",
               ls->path, what, info.me_mapsize);
        return HY_EFULL;
    case MDB_TXN_FULL:
        hy_log(HY_LOG_ERROR, "store",
               "%s: %s: too many changes in one transaction; split the batch", ls->path, what);
        return HY_ETOOBIG;
    default:
        hy_log(HY_LOG_ERROR, "store", "%s: %s: %s", ls->path, what, mdb_strerror(rc));
        return HY_ESTORE;
    }
}

static void be64_put(uint8_t b[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static uint64_t be64_get(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static int meta_get(struct lmdb_store *ls, MDB_txn *txn, const char *name, uint64_t *v)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    int rc = mdb_get(txn, ls->meta, &k, &d);
    *v = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (d.mv_size != 8)
        return MDB_CORRUPTED;
    *v = be64_get(d.mv_data);
    return 0;
}

static int meta_put(struct lmdb_store *ls, MDB_txn *txn, const char *name, uint64_t v)
{
    uint8_t b[8];
    be64_put(b, v);
    MDB_val k = {strlen(name), (void *)name}, d = {8, b};
    return mdb_put(txn, ls->meta, &k, &d, 0);
}

/* Writes "Type/mesh/name" (or "Type/mesh/" when name is NULL) into buf. */
static int make_key(struct lmdb_store *ls, const char *type, const char *mesh, const char *name,
                    char buf[KEY_BUF], MDB_val *k)
{
    int n = snprintf(buf, KEY_BUF, "%s/%s/%s", type, mesh, name ? name : "");
    if (n < 0 || n >= KEY_BUF || n > mdb_env_get_maxkeysize(ls->env))
        return HY_ETOOBIG;
    k->mv_size = (size_t)n;
    k->mv_data = buf;
    return 0;
}

static bool has_prefix(const MDB_val *k, const char *p, size_t plen)
{
    return k->mv_size >= plen && memcmp(k->mv_data, p, plen) == 0;
}

/* Unpacks a stored envelope into a new resource (the copy outlives txn). */
static int decode(struct lmdb_store *ls, const MDB_val *k, const MDB_val *d,
                  struct hy_resource **out)
{
    int rc = hy_resource_unpack(d->mv_data, d->mv_size, out);
    if (rc == HY_EINVAL) {
        hy_log(HY_LOG_ERROR, "store", "%s: corrupt resource at key %.*s", ls->path, (int)k->mv_size,
               (const char *)k->mv_data);
        return HY_ESTORE;
    }
    return rc;
}

/* *old = the stored resource at k, or NULL when there is none. */
static int load(struct lmdb_store *ls, MDB_txn *txn, const MDB_val *k, struct hy_resource **old)
{
    MDB_val d;
    *old = NULL;
    int rc = mdb_get(txn, ls->res, (MDB_val *)k, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc ? rc : decode(ls, k, &d, old);
}

/* ---- counters ---------------------------------------------------------- */

/* List totals come from counters in "meta", so that a page costs its own
 * items rather than a walk over the whole type. A key prefix's counter is
 * stored under the prefix itself: "Type/" counts a type, "Type/mesh/" a
 * mesh-scoped type in one mesh (the prefixes lists walk; no other meta key
 * ends in '/'). A counter that would be 0 is absent.
 *
 * They are trusted only while "schema" is SCHEMA and "counted" equals
 * "revision": every write transaction that keeps them moves "counted" along
 * with "revision", so one committed by a binary that does not know them (an
 * older Hypha) leaves them visibly stale. Opening read-write rebuilds missing
 * or stale counters; a list that finds them untrusted counts by walking. */
#define SCHEMA 1
#define COUNT_SLOTS 16

struct count_delta {
    const struct hy_rtype *t;
    const char *mesh; /* "" for global types; borrowed from the batch */
    int64_t d;
};

/* The counter changes of one write transaction, written to "meta" when the
 * table is full and before commit: a batch of puts costs a few counter
 * writes, not two per put. Aborting the transaction drops them with it. */
struct counts {
    bool on; /* the counters were right when the transaction began */
    size_t n;
    struct count_delta v[COUNT_SLOTS];
};

static int counts_valid(struct lmdb_store *ls, MDB_txn *txn, bool *valid)
{
    uint64_t schema, counted, rev;
    int rc;
    if ((rc = meta_get(ls, txn, "schema", &schema)) ||
        (rc = meta_get(ls, txn, "counted", &counted)) || (rc = meta_get(ls, txn, "revision", &rev)))
        return rc;
    *valid = schema == SCHEMA && counted == rev;
    return 0;
}

/* Adds d to the counter under key; *ok = false (nothing written) when the
 * counter would go below zero. */
static int counter_add(struct lmdb_store *ls, MDB_txn *txn, const char *key, int64_t d, bool *ok)
{
    uint64_t v;
    int rc = meta_get(ls, txn, key, &v);
    if (rc)
        return rc;
    if (d < 0 && v < (uint64_t)-d) {
        *ok = false;
        return 0;
    }
    v += (uint64_t)d; /* modulo 2^64: adds a negative d too */
    if (v)
        return meta_put(ls, txn, key, v);
    MDB_val k = {strlen(key), (void *)key};
    rc = mdb_del(txn, ls->meta, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int counts_flush(struct lmdb_store *ls, MDB_txn *txn, struct counts *c)
{
    char key[KEY_BUF];
    bool ok = true;
    int rc = 0;
    for (size_t i = 0; i < c->n && rc == 0 && ok; i++) {
        const struct count_delta *e = &c->v[i];
        if (e->d == 0)
            continue;
        snprintf(key, sizeof(key), "%s/", e->t->name);
        rc = counter_add(ls, txn, key, e->d, &ok);
        if (rc == 0 && ok && e->mesh[0]) {
            /* fits: a key of this type and mesh did */
            snprintf(key, sizeof(key), "%s/%s/", e->t->name, e->mesh);
            rc = counter_add(ls, txn, key, e->d, &ok);
        }
    }
    c->n = 0;
    if (!ok) {
        /* Not worth failing writes over: stop keeping them, leave "counted"
         * behind, and the next open rebuilds them. */
        hy_log(HY_LOG_WARN, "store",
               "%s: resource counter %s disagrees with the resources; list totals are counted "
               "by walking until the store is reopened",
               ls->path, key);
        c->on = false;
    }
    return rc;
}

/* Notes d resources more (or fewer) of type t in mesh. */
static int counts_note(struct lmdb_store *ls, MDB_txn *txn, struct counts *c,
                       const struct hy_rtype *t, const char *mesh, int64_t d)
{
    int rc;
    if (!c->on)
        return 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->v[i].t == t && strcmp(c->v[i].mesh, mesh) == 0) {
            c->v[i].d += d;
            return 0;
        }
    }
    if (c->n == COUNT_SLOTS && (rc = counts_flush(ls, txn, c)))
        return rc;
    if (c->on)
        c->v[c->n++] = (struct count_delta){.t = t, .mesh = mesh, .d = d};
    return 0;
}

/* Writes the counter of a run of keys under prefix (a C string). */
static int put_run(struct lmdb_store *ls, MDB_txn *txn, const char *prefix, uint64_t n)
{
    return prefix[0] && n ? meta_put(ls, txn, prefix, n) : 0;
}

/* Recounts every counter in one walk over the keys (in key order, all keys
 * under a prefix are one run) and marks them right; *total = resources. */
static int counts_rebuild(struct lmdb_store *ls, MDB_txn *txn, uint64_t *total)
{
    char key[KEY_BUF], tk[KEY_BUF] = "", mk[KEY_BUF] = "";
    uint64_t tn = 0, mn = 0, rev;
    MDB_cursor *c;
    MDB_val k, d;
    int rc = mdb_cursor_open(txn, ls->meta, &c);
    *total = 0;
    if (rc)
        return rc;
    /* Old counters go first: a mesh emptied behind their back still has one. */
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size && ((const char *)k.mv_data)[k.mv_size - 1] == '/' &&
            (rc = mdb_cursor_del(c, 0))) /* the cursor's next is then the following key */
            break;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND || (rc = mdb_cursor_open(txn, ls->res, &c)))
        return rc;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        /* Copied: k is valid only until the next write, which may be ours. */
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        const char *te = memchr(key, '/', k.mv_size), *me = te ? strchr(te + 1, '/') : NULL;
        if (!me)
            continue; /* not a key this store writes */
        size_t tl = (size_t)(te + 1 - key), ml = (size_t)(me + 1 - key);
        if (strncmp(tk, key, tl) != 0 || tk[tl] != '\0') {
            if ((rc = put_run(ls, txn, tk, tn)))
                break;
            memcpy(tk, key, tl);
            tk[tl] = '\0';
            tn = 0;
        }
        tn++;
        ++*total;
        if (ml == tl + 1)
            continue; /* a global type: no mesh counter */
        if (strncmp(mk, key, ml) != 0 || mk[ml] != '\0') {
            if ((rc = put_run(ls, txn, mk, mn)))
                break;
            memcpy(mk, key, ml);
            mk[ml] = '\0';
            mn = 0;
        }
        mn++;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND || (rc = put_run(ls, txn, tk, tn)) || (rc = put_run(ls, txn, mk, mn)) ||
        (rc = meta_get(ls, txn, "revision", &rev)) || (rc = meta_put(ls, txn, "schema", SCHEMA)))
        return rc;
    return meta_put(ls, txn, "counted", rev);
}

/* ---- writes ------------------------------------------------------------ */

static int append_change(struct lmdb_store *ls, MDB_txn *txn, uint64_t rev, int op,
                         const char *type, const char *mesh, const char *name, uint64_t version,
                         const char *origin)
{
    Hypha__V1__ChangeRecord cr = HYPHA__V1__CHANGE_RECORD__INIT;
    cr.has_op = cr.has_version = 1;
    cr.op = op;
    cr.type = (char *)type;
    cr.mesh = (char *)mesh;
    cr.name = (char *)name;
    cr.version = version;
    cr.origin = (char *)origin;
    uint8_t kb[8];
    be64_put(kb, rev);
    MDB_val k = {8, kb}, d = {hypha__v1__change_record__get_packed_size(&cr), NULL};
    /* APPEND: revisions only grow; a smaller key means a damaged log. */
    int rc = mdb_put(txn, ls->chg, &k, &d, MDB_RESERVE | MDB_APPEND);
    if (rc == 0)
        hypha__v1__change_record__pack(&cr, d.mv_data);
    return rc;
}

/* Writes r's Envelope at k, packed by protobuf-c straight into the value
 * LMDB reserves for it: the bytes hy_resource_pack makes (keep the two in
 * step), without its two heap buffers and the copy into the page. A spec of
 * up to SPEC_BUF bytes, the usual case, is packed on the stack. */
static int put_envelope(struct lmdb_store *ls, MDB_txn *txn, MDB_val *k,
                        const struct hy_resource *r)
{
    Hypha__V1__Envelope env = HYPHA__V1__ENVELOPE__INIT;
    uint8_t small[SPEC_BUF];
    MDB_val d;
    env.meta = r->meta;
    env.has_version = r->version != 0;
    env.version = r->version;
    env.origin = r->origin;
    env.has_spec = 1;
    env.spec.len = protobuf_c_message_get_packed_size(r->spec);
    env.spec.data = env.spec.len <= sizeof(small) ? small : malloc(env.spec.len);
    if (!env.spec.data)
        return HY_ENOMEM;
    protobuf_c_message_pack(r->spec, env.spec.data);
    d.mv_size = hypha__v1__envelope__get_packed_size(&env);
    int rc = mdb_put(txn, ls->res, k, &d, MDB_RESERVE);
    if (rc == 0) /* filled before any other write, as MDB_RESERVE requires */
        hypha__v1__envelope__pack(&env, d.mv_data);
    if (env.spec.data != small)
        free(env.spec.data);
    return rc;
}

static int apply_put(struct lmdb_store *ls, MDB_txn *txn, struct hy_store_write *w, uint64_t *rev,
                     struct counts *cnt)
{
    const struct hy_resource *r = w->r;
    const char *mesh = hy_store_key_mesh(r->type, r->meta->mesh);
    struct hy_resource *old;
    char kb[KEY_BUF];
    MDB_val k;
    int rc = make_key(ls, r->type->name, mesh, r->meta->name, kb, &k);
    if (rc || (rc = load(ls, txn, &k, &old)))
        return rc;
    struct hy_store_stamp st;
    if ((rc = hy_store_stamp_put(w, old, mesh, *rev, &st)) != 0) {
        rc = rc == 1 ? 0 : rc;
        goto out_free_old;
    }
    if ((rc = put_envelope(ls, txn, &k, &st.res)) ||
        (rc = append_change(ls, txn, ++*rev, OP_UPSERT, r->type->name, mesh, r->meta->name,
                            st.res.version, r->origin)) ||
        (!old && (rc = counts_note(ls, txn, cnt, r->type, mesh, 1))))
        goto out_free_now;
    w->result = old ? HY_STORE_UPDATED : HY_STORE_CREATED;
    w->version = st.res.version;
    w->revision = *rev;
out_free_now:
    hy_store_stamp_fini(&st);
out_free_old:
    hy_resource_free(old);
    return rc;
}

/* Reads the version and origin (copied into origin[ORIGIN_BUF], "" if none)
 * of the envelope at k. */
#define ORIGIN_BUF 256
static int envelope_version(struct lmdb_store *ls, const MDB_val *k, const MDB_val *d,
                            uint64_t *version, char origin[ORIGIN_BUF])
{
    Hypha__V1__Envelope *env = hypha__v1__envelope__unpack(NULL, d->mv_size, d->mv_data);
    if (!env) {
        hy_log(HY_LOG_ERROR, "store", "%s: corrupt resource at key %.*s", ls->path, (int)k->mv_size,
               (const char *)k->mv_data);
        return HY_ESTORE;
    }
    *version = env->version;
    snprintf(origin, ORIGIN_BUF, "%s", env->origin ? env->origin : "");
    hypha__v1__envelope__free_unpacked(env, NULL);
    return 0;
}

/* Deletes every resource of type t in mesh, one change record each. */
static int cascade_type(struct lmdb_store *ls, MDB_txn *txn, MDB_cursor *c,
                        const struct hy_rtype *t, const char *mesh, uint64_t *rev,
                        struct counts *cnt)
{
    char prefix[KEY_BUF], name[KEY_BUF], origin[ORIGIN_BUF];
    MDB_val k, d;
    uint64_t version;
    int rc = make_key(ls, t->name, mesh, NULL, prefix, &k);
    size_t plen = k.mv_size;
    if (rc)
        return rc;
    for (;;) {
        k.mv_size = plen;
        k.mv_data = prefix;
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || (rc == 0 && !has_prefix(&k, prefix, plen)))
            return 0;
        if (rc || (rc = envelope_version(ls, &k, &d, &version, origin)))
            return rc;
        /* Copy the name out: k points into a page the delete changes. */
        memcpy(name, (const char *)k.mv_data + plen, k.mv_size - plen);
        name[k.mv_size - plen] = '\0';
        if ((rc = mdb_cursor_del(c, 0)) ||
            (rc = append_change(ls, txn, ++*rev, OP_DELETE, t->name, mesh, name, version,
                                origin[0] ? origin : NULL)) ||
            (rc = counts_note(ls, txn, cnt, t, mesh, -1)))
            return rc;
    }
}

/* Deleting a Mesh takes every mesh-scoped resource inside it along. */
static int cascade(struct lmdb_store *ls, MDB_txn *txn, const char *mesh, uint64_t *rev,
                   struct counts *cnt)
{
    size_t nt;
    const struct hy_rtype *types = hy_rtype_all(&nt);
    MDB_cursor *c = NULL;
    int rc = mdb_cursor_open(txn, ls->res, &c);
    for (size_t i = 0; i < nt && rc == 0; i++)
        if (types[i].scope == HY_SCOPE_MESH)
            rc = cascade_type(ls, txn, c, &types[i], mesh, rev, cnt);
    if (c)
        mdb_cursor_close(c);
    return rc;
}

static int apply_delete(struct lmdb_store *ls, MDB_txn *txn, struct hy_store_write *w,
                        uint64_t *rev, struct counts *cnt)
{
    const struct hy_resource *r = w->r;
    const char *mesh = hy_store_key_mesh(r->type, r->meta->mesh);
    struct hy_resource *old;
    char kb[KEY_BUF];
    MDB_val k;
    int rc = make_key(ls, r->type->name, mesh, r->meta->name, kb, &k);
    if (rc || (rc = load(ls, txn, &k, &old)))
        return rc;
    if (!old) {
        if (!(w->flags & HY_STORE_IF_EXISTS))
            return HY_ENOTFOUND;
        w->result = HY_STORE_UNCHANGED;
        w->revision = *rev;
        return 0;
    }
    if (!hy_store_cas_ok(old, w->expect_version)) {
        rc = HY_ECONFLICT;
        goto out_free_old;
    }
    if (strcmp(r->type->name, "Mesh") == 0 && (rc = cascade(ls, txn, r->meta->name, rev, cnt)))
        goto out_free_old;
    if ((rc = mdb_del(txn, ls->res, &k, NULL)) ||
        (rc = append_change(ls, txn, ++*rev, OP_DELETE, r->type->name, mesh, r->meta->name,
                            old->version, old->origin)) ||
        (rc = counts_note(ls, txn, cnt, r->type, mesh, -1)))
        goto out_free_old;
    w->result = HY_STORE_DELETED;
    w->version = old->version;
    w->revision = *rev;
out_free_old:
    hy_resource_free(old);
    return rc;
}

/* Drops change records <= upto and moves the horizon there. */
static int compact_txn(struct lmdb_store *ls, MDB_txn *txn, uint64_t upto)
{
    MDB_cursor *c;
    MDB_val k, d;
    int rc = mdb_cursor_open(txn, ls->chg, &c);
    if (rc)
        return rc;
    while ((rc = mdb_cursor_get(c, &k, &d, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || be64_get(k.mv_data) > upto)
            break;
        if ((rc = mdb_cursor_del(c, 0)))
            break;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    return meta_put(ls, txn, "horizon", upto);
}

/* Records the new revision and the counters, and keeps at most `retention`
 * change records. */
static int finish_txn(struct lmdb_store *ls, MDB_txn *txn, uint64_t rev, struct counts *cnt)
{
    uint64_t horizon;
    int rc = meta_put(ls, txn, "revision", rev);
    if (rc || (cnt->on && (rc = counts_flush(ls, txn, cnt))) ||
        (cnt->on && (rc = meta_put(ls, txn, "counted", rev))) ||
        (rc = meta_get(ls, txn, "horizon", &horizon)))
        return rc;
    if (rev - horizon > ls->retention)
        rc = compact_txn(ls, txn, rev - ls->retention);
    return rc;
}

/* "write of Type/mesh/name" or "commit after Type/mesh/name": for log lines. */
static const char *describe(const struct hy_store_write *w, bool in_write, char buf[KEY_BUF + 32])
{
    const struct hy_resource *r = w->r;
    snprintf(buf, KEY_BUF + 32, "%s %s/%s/%s", in_write ? "write of" : "commit after",
             r->type->name, hy_store_key_mesh(r->type, r->meta->mesh), r->meta->name);
    return buf;
}

static int lmdb_apply(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed,
                      uint64_t expect_revision, uint64_t *committed)
{
    struct lmdb_store *ls = lmdb(s);
    MDB_txn *txn;
    uint64_t rev0, rev;
    struct counts cnt = {.n = 0};
    char what[KEY_BUF + 32];
    size_t i = 0;
    int rc;
    *committed = 0;
    if (ls->read_only)
        return -EROFS;
    if (n == 0)
        return 0;
    if ((rc = mdb_txn_begin(ls->env, NULL, 0, &txn)))
        return xlate(ls, rc, "begin write");
    if ((rc = meta_get(ls, txn, "revision", &rev0)) || (rc = counts_valid(ls, txn, &cnt.on)))
        goto out_abort;
    if (expect_revision != HY_VERSION_ANY && rev0 != expect_revision) {
        i = n; /* the fence: another write came first */
        rc = HY_ECONFLICT;
        goto out_abort;
    }
    rev = rev0;
    for (; i < n; i++) {
        rc = w[i].op == HY_STORE_PUT ? apply_put(ls, txn, &w[i], &rev, &cnt)
                                     : apply_delete(ls, txn, &w[i], &rev, &cnt);
        if (rc)
            goto out_abort;
    }
    if (rev != rev0 && (rc = finish_txn(ls, txn, rev, &cnt)))
        goto out_abort;
    if ((rc = mdb_txn_commit(txn)))
        goto out_failed;
    *committed = rev != rev0 ? rev : 0;
    return 0;
out_abort:
    mdb_txn_abort(txn);
out_failed:
    if (failed)
        *failed = i;
    return xlate(ls, rc, describe(&w[i < n ? i : n - 1], i < n, what));
}

static int lmdb_compact(struct hy_store *s, uint64_t upto)
{
    struct lmdb_store *ls = lmdb(s);
    MDB_txn *txn;
    uint64_t rev, horizon;
    if (ls->read_only)
        return -EROFS;
    int rc = mdb_txn_begin(ls->env, NULL, 0, &txn);
    if (rc)
        return xlate(ls, rc, "begin compaction");
    if ((rc = meta_get(ls, txn, "revision", &rev)) || (rc = meta_get(ls, txn, "horizon", &horizon)))
        goto out_abort;
    if (upto > rev)
        upto = rev;
    if (upto <= horizon)
        goto out_abort; /* nothing to drop; rc is 0 */
    if ((rc = compact_txn(ls, txn, upto)))
        goto out_abort;
    return xlate(ls, mdb_txn_commit(txn), "commit compaction");
out_abort:
    mdb_txn_abort(txn);
    return xlate(ls, rc, "compaction");
}

static int lmdb_skip_to(struct hy_store *s, uint64_t to)
{
    struct lmdb_store *ls = lmdb(s);
    MDB_txn *txn;
    uint64_t rev;
    bool counted;
    if (ls->read_only)
        return -EROFS;
    int rc = mdb_txn_begin(ls->env, NULL, 0, &txn);
    if (rc)
        return xlate(ls, rc, "begin skip");
    if ((rc = meta_get(ls, txn, "revision", &rev)) || (rc = counts_valid(ls, txn, &counted)))
        goto out_abort;
    if (to <= rev)
        goto out_abort; /* rc is 0 */
    if ((rc = meta_put(ls, txn, "revision", to)) || (rc = compact_txn(ls, txn, to)) ||
        (counted && (rc = meta_put(ls, txn, "counted", to))))
        goto out_abort;
    return xlate(ls, mdb_txn_commit(txn), "commit skip");
out_abort:
    mdb_txn_abort(txn);
    return xlate(ls, rc, "skip");
}

/* ---- reads ------------------------------------------------------------- */

static int lmdb_get(struct hy_store *s, const struct hy_rtype *t, const char *mesh,
                    const char *name, struct hy_resource **out)
{
    struct lmdb_store *ls = lmdb(s);
    char kb[KEY_BUF];
    MDB_txn *txn;
    MDB_val k, d;
    int rc = make_key(ls, t->name, mesh, name, kb, &k);
    if (rc || (rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, &txn)))
        return xlate(ls, rc, "begin read");
    rc = mdb_get(txn, ls->res, &k, &d);
    if (rc == 0)
        rc = decode(ls, &k, &d, out);
    mdb_txn_abort(txn);
    return xlate(ls, rc, "get");
}

static int page_push(struct hy_store_page *p, size_t *cap, struct hy_resource *r)
{
    if (p->n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        struct hy_resource **v = realloc(p->items, c * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        p->items = v;
        *cap = c;
    }
    p->items[p->n++] = r;
    return 0;
}

/* *total = the number of keys under prefix (a C string): its counter when
 * the counters are right, else a walk over the keys. */
static int list_total(struct lmdb_store *ls, MDB_txn *txn, MDB_cursor *c, const char *prefix,
                      size_t plen, size_t *total)
{
    MDB_val k = {plen, (void *)prefix}, d;
    uint64_t n;
    bool valid;
    int rc = counts_valid(ls, txn, &valid);
    if (rc || (valid && (rc = meta_get(ls, txn, prefix, &n))))
        return rc;
    if (valid) {
        *total = (size_t)n;
        return 0;
    }
    *total = 0;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0 && has_prefix(&k, prefix, plen);
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
        ++*total;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Puts the cursor on the first key under prefix that sorts after `after`
 * (NULL: the first under prefix), whether or not `after` still exists. */
static int list_seek(struct lmdb_store *ls, MDB_txn *txn, MDB_cursor *c, const char *prefix,
                     size_t plen, const char *after, MDB_val *k, MDB_val *d)
{
    MDB_val from = {plen, (void *)prefix}, a;
    bool from_after = false;
    int rc;
    if (after) {
        /* Searching needs no size limit: a token longer than any key works. */
        a.mv_size = strlen(after);
        a.mv_data = (void *)after;
        if (mdb_cmp(txn, ls->res, &a, &from) > 0) {
            from = a;
            from_after = true;
        }
    }
    *k = from;
    rc = mdb_cursor_get(c, k, d, MDB_SET_RANGE);
    /* The prefix is never a key (names are not empty); `after` may be. */
    if (rc == 0 && from_after && mdb_cmp(txn, ls->res, k, &from) == 0)
        rc = mdb_cursor_get(c, k, d, MDB_NEXT);
    return rc;
}

/* Seeks to `after`, keeps up to `limit` items and peeks one further to know
 * whether there is a next page. */
static int list_txn(struct lmdb_store *ls, MDB_txn *txn, const char *prefix, size_t plen,
                    const char *after, size_t limit, struct hy_store_page *out)
{
    MDB_cursor *c;
    MDB_val k, d;
    MDB_val last = {0, NULL}; /* key of the last item kept, valid within txn */
    size_t cap = 0;
    struct hy_resource *r;
    int rc = mdb_cursor_open(txn, ls->res, &c);
    if (rc)
        return rc;
    if ((rc = list_total(ls, txn, c, prefix, plen, &out->total)))
        goto out_close;
    for (rc = list_seek(ls, txn, c, prefix, plen, after, &k, &d);
         rc == 0 && has_prefix(&k, prefix, plen); rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (limit && out->n == limit) {
            if (!(out->next = strndup(last.mv_data, last.mv_size)))
                rc = HY_ENOMEM;
            break;
        }
        if ((rc = decode(ls, &k, &d, &r)))
            break;
        if ((rc = page_push(out, &cap, r))) {
            hy_resource_free(r);
            break;
        }
        last = k;
    }
out_close:
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int lmdb_list(struct hy_store *s, const struct hy_rtype *t, const char *mesh,
                     const char *after, size_t limit, struct hy_store_page *out)
{
    struct lmdb_store *ls = lmdb(s);
    char prefix[KEY_BUF];
    MDB_txn *txn;
    int rc, n = mesh ? snprintf(prefix, sizeof(prefix), "%s/%s/", t->name, mesh)
                     : snprintf(prefix, sizeof(prefix), "%s/", t->name);
    if (n < 0 || n >= (int)sizeof(prefix) || n > mdb_env_get_maxkeysize(ls->env))
        return HY_ETOOBIG;
    if ((rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, &txn)))
        return xlate(ls, rc, "begin read");
    rc = list_txn(ls, txn, prefix, (size_t)n, after, limit, out);
    mdb_txn_abort(txn);
    if (rc)
        hy_store_page_fini(out);
    return xlate(ls, rc, "list");
}

/* Takes a string out of an unpacked ChangeRecord, which frees what is left:
 * protobuf-c allocates each present string apart, and an absent one (these
 * fields have no default) is NULL, which reads as "". NULL on ENOMEM. */
static char *take_str(char **field)
{
    char *v = *field;
    *field = NULL;
    return v ? v : strdup("");
}

/* Decodes one change record of the txn into *c, taking over its strings. */
static int decode_change(struct lmdb_store *ls, const MDB_val *k, const MDB_val *d,
                         struct hy_store_change *c)
{
    Hypha__V1__ChangeRecord *cr = hypha__v1__change_record__unpack(NULL, d->mv_size, d->mv_data);
    if (!cr || k->mv_size != 8) {
        hy_log(HY_LOG_ERROR, "store", "%s: corrupt change record", ls->path);
        if (cr)
            hypha__v1__change_record__free_unpacked(cr, NULL);
        return HY_ESTORE;
    }
    c->revision = be64_get(k->mv_data);
    c->op = cr->op == OP_DELETE ? HY_STORE_DELETE : HY_STORE_PUT;
    c->version = cr->version;
    c->type = take_str(&cr->type);
    c->mesh = take_str(&cr->mesh);
    c->name = take_str(&cr->name);
    c->origin = take_str(&cr->origin);
    hypha__v1__change_record__free_unpacked(cr, NULL);
    return c->type && c->mesh && c->name && c->origin ? 0 : HY_ENOMEM;
}

static int changes_txn(struct lmdb_store *ls, MDB_txn *txn, uint64_t since, size_t max,
                       struct hy_store_changes *out)
{
    uint64_t rev, horizon;
    uint8_t kb[8];
    MDB_cursor *c;
    MDB_val k = {8, kb}, d;
    int rc;
    if ((rc = meta_get(ls, txn, "revision", &rev)) || (rc = meta_get(ls, txn, "horizon", &horizon)))
        return rc;
    if (since < horizon)
        return HY_ETOOOLD;
    uint64_t avail = rev > since ? rev - since : 0;
    size_t want = max && avail > max ? max : (size_t)avail;
    out->to = since > rev ? since : rev;
    if (want == 0)
        return 0;
    if (!(out->v = calloc(want, sizeof(*out->v))))
        return HY_ENOMEM;
    if ((rc = mdb_cursor_open(txn, ls->chg, &c)))
        return rc;
    be64_put(kb, since + 1);
    for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0 && out->n < want;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
        if ((rc = decode_change(ls, &k, &d, &out->v[out->n++])))
            break;
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (out->n < avail) /* stopped at max: this read covers up to the last one */
        out->to = out->n ? out->v[out->n - 1].revision : since;
    return 0;
}

static int lmdb_changes(struct hy_store *s, uint64_t since, size_t max,
                        struct hy_store_changes *out)
{
    struct lmdb_store *ls = lmdb(s);
    MDB_txn *txn;
    int rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return xlate(ls, rc, "begin read");
    rc = changes_txn(ls, txn, since, max, out);
    mdb_txn_abort(txn);
    if (rc)
        hy_store_changes_fini(out);
    return xlate(ls, rc, "read changes");
}

/* A counter from "meta"; 0 (and a log line) if it cannot be read. */
static uint64_t meta_read(struct lmdb_store *ls, const char *name)
{
    MDB_txn *txn;
    uint64_t v = 0;
    int rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = meta_get(ls, txn, name, &v);
        mdb_txn_abort(txn);
    }
    xlate(ls, rc, name);
    return v;
}

static uint64_t lmdb_revision(struct hy_store *s)
{
    return meta_read(lmdb(s), "revision");
}

static uint64_t lmdb_horizon(struct hy_store *s)
{
    return meta_read(lmdb(s), "horizon");
}

static int lmdb_stats(struct hy_store *s, struct hy_store_stats *out)
{
    struct lmdb_store *ls = lmdb(s);
    MDB_envinfo info;
    MDB_stat st;
    MDB_txn *txn;
    int rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return xlate(ls, rc, "begin read");
    if ((rc = meta_get(ls, txn, "revision", &out->revision)) ||
        (rc = meta_get(ls, txn, "horizon", &out->horizon)) || (rc = mdb_stat(txn, ls->res, &st)))
        goto out_abort;
    out->resources = st.ms_entries;
    if ((rc = mdb_stat(txn, ls->chg, &st)))
        goto out_abort;
    out->log_records = st.ms_entries;
    if ((rc = mdb_env_info(ls->env, &info)) || (rc = mdb_env_stat(ls->env, &st)))
        goto out_abort;
    out->map_size = info.me_mapsize;
    out->used_bytes = (info.me_last_pgno + 1) * st.ms_psize;
out_abort:
    mdb_txn_abort(txn);
    return xlate(ls, rc, "stats");
}

/* ---- open and close ---------------------------------------------------- */

static void lmdb_close(struct hy_store *s)
{
    struct lmdb_store *ls = lmdb(s);
    mdb_env_close(ls->env);
    free(ls->path);
    free(ls);
}

static const struct hy_store_ops lmdb_ops = {
    .name = "lmdb",
    .close = lmdb_close,
    .get = lmdb_get,
    .apply = lmdb_apply,
    .list = lmdb_list,
    .changes = lmdb_changes,
    .revision = lmdb_revision,
    .horizon = lmdb_horizon,
    .compact = lmdb_compact,
    .skip_to = lmdb_skip_to,
    .stats = lmdb_stats,
};

/* mkdir -p: 0 or -errno. */
static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    int rc = 0;
    if (!p)
        return HY_ENOMEM;
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        if (!(*c = saved))
            break;
    }
    free(p);
    return rc;
}

static int open_dbs(struct lmdb_store *ls)
{
    unsigned flags = ls->read_only ? 0 : MDB_CREATE;
    MDB_txn *txn;
    int rc = mdb_txn_begin(ls->env, NULL, ls->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_dbi_open(txn, "resources", flags, &ls->res)) ||
        (rc = mdb_dbi_open(txn, "changes", flags, &ls->chg)) ||
        (rc = mdb_dbi_open(txn, "meta", flags, &ls->meta))) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn); /* keeps the handles open */
}

/* Refuses a store written by a newer schema; opening read-write, rebuilds
 * missing or stale counters (a store from before them, or written since by
 * a Hypha without them). A failed rebuild is logged, not fatal: lists then
 * count by walking. 0 or HY_ESTORE (logged). */
static int check_schema(struct lmdb_store *ls)
{
    MDB_txn *txn;
    uint64_t schema, n = 0;
    bool valid = true;
    int rc = mdb_txn_begin(ls->env, NULL, ls->read_only ? MDB_RDONLY : 0, &txn);
    if (rc) {
        hy_log(HY_LOG_ERROR, "store", "%s: cannot read the store schema: %s", ls->path,
               mdb_strerror(rc));
        return HY_ESTORE;
    }
    if ((rc = meta_get(ls, txn, "schema", &schema)) == 0 && schema > SCHEMA) {
        mdb_txn_abort(txn);
        hy_log(HY_LOG_ERROR, "store",
               "%s: the store has schema %" PRIu64 ", newer than this Hypha knows (%d); open it "
               "with the Hypha version that wrote it",
               ls->path, schema, SCHEMA);
        return HY_ESTORE;
    }
    if (rc == 0 && !ls->read_only && (rc = counts_valid(ls, txn, &valid)) == 0 && !valid)
        rc = counts_rebuild(ls, txn, &n);
    if (rc || valid)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc)
        hy_log(HY_LOG_WARN, "store",
               "%s: cannot count the resources for list totals: %s; lists count by walking "
               "until a reopen succeeds",
               ls->path, mdb_strerror(rc));
    else if (n > 0)
        hy_log(HY_LOG_INFO, "store", "%s: counted %" PRIu64 " resource(s) for list totals",
               ls->path, n);
    return 0;
}

int hy_store_lmdb_open(const struct hy_store_config *cfg, struct hy_store **out)
{
    struct lmdb_store *ls;
    int rc, dead = 0;
    if (!cfg->path || !cfg->path[0])
        return HY_EINVAL;
    if (!cfg->read_only && (rc = mkdir_p(cfg->path)) < 0) {
        hy_log(HY_LOG_ERROR, "store", "%s: cannot create the store directory: %s", cfg->path,
               hy_strerror(rc));
        return rc;
    }
    if (!(ls = calloc(1, sizeof(*ls))) || !(ls->path = strdup(cfg->path))) {
        rc = HY_ENOMEM;
        goto out_free;
    }
    ls->base.ops = &lmdb_ops;
    ls->retention = cfg->log_retention ? cfg->log_retention : DEFAULT_RETENTION;
    ls->read_only = cfg->read_only;
    if ((rc = mdb_env_create(&ls->env)))
        goto out_free;
    if ((rc = mdb_env_set_maxdbs(ls->env, 3)) ||
        (rc = mdb_env_set_mapsize(ls->env, cfg->map_size ? cfg->map_size : DEFAULT_MAP_SIZE)) ||
        (rc =
             mdb_env_open(ls->env, ls->path, MDB_NOTLS | (ls->read_only ? MDB_RDONLY : 0), 0600)) ||
        (rc = mdb_reader_check(ls->env, &dead)) || (rc = open_dbs(ls))) {
        hy_log(HY_LOG_ERROR, "store", "%s: cannot open the LMDB store: %s%s", ls->path,
               mdb_strerror(rc),
               rc == MDB_NOTFOUND ? " (no Hypha store here: open it read-write once first)" : "");
        goto out_close_env;
    }
    if ((rc = check_schema(ls)))
        goto out_close_env;
    if (dead > 0)
        hy_log(HY_LOG_INFO, "store", "%s: cleared %d reader slot(s) left by dead processes",
               ls->path, dead);
    *out = &ls->base;
    return 0;
out_close_env:
    mdb_env_close(ls->env);
out_free:
    if (ls)
        free(ls->path);
    free(ls);
    return rc == ENOMEM || rc == HY_ENOMEM ? HY_ENOMEM : HY_ESTORE;
}
