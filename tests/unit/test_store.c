/* Unit tests of the store: CRUD, compare-and-swap, the change feed and its
 * compaction, cascades, listing and its totals, and watchers; one body for
 * both backends. `test_store` runs them on LMDB; `test_store postgres` on
 * the PostgreSQL named by HYPHA_TEST_PG_URL (tests/unit/store_pg.sh starts
 * one), with that backend's own tests (several handles on one database,
 * connection loss). A full map and counter rebuilding are LMDB's alone. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <lmdb.h>

#include "error.h"
#include "policies.pb-c.h"
#include "store.h"
#include "store_uv.h"
#include "poison.h"

#define MTP "MeshTrafficPermission"

struct fx {
    char dir[64];
    struct hy_store *s;
};

static const char *pg_url; /* NULL: LMDB */

/* Empties the test database: a fresh store at the next open. */
static int pg_reset(void)
{
    PGconn *c = PQconnectdb(pg_url);
    int rc = PQstatus(c) == CONNECTION_OK ? 0 : -1;
    if (rc == 0) {
        PGresult *r = PQexec(c, "SET client_min_messages = warning;"
                                "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc)
            fprintf(stderr, "pg_reset: %s", PQerrorMessage(c));
        PQclear(r);
    } else {
        fprintf(stderr, "pg_reset: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

/* Runs sql on a connection of its own; asserts it works. */
static void pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(pg_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int open_store(const char *dir, size_t map_size, uint64_t retention, bool ro,
                      struct hy_store **s)
{
    struct hy_store_config cfg = {
        .path = dir, .map_size = map_size, .log_retention = retention, .read_only = ro};
    if (pg_url) {
        cfg.backend = HY_STORE_POSTGRES;
        cfg.url = pg_url;
    }
    return hy_store_open(&cfg, s);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/hy-test-store-XXXXXX");
    if (!mkdtemp(f->dir) || (pg_url && pg_reset() < 0) ||
        open_store(f->dir, 0, 0, false, &f->s) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    hy_store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void reopen(struct fx *f, size_t map_size, uint64_t retention)
{
    hy_store_close(f->s);
    f->s = NULL;
    assert_int_equal(open_store(f->dir, map_size, retention, false, &f->s), 0);
}

/* ---- resource helpers -------------------------------------------------- */

static void set_label(struct hy_resource *r, const char *key, const char *value)
{
    Hypha__V1__Meta *m = r->meta;
    Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e));
    assert_non_null(e);
    hypha__v1__meta__labels_entry__init(e);
    e->key = strdup(key);
    e->value = strdup(value);
    m->labels = realloc(m->labels, (m->n_labels + 1) * sizeof(*m->labels));
    assert_non_null(m->labels);
    m->labels[m->n_labels++] = e;
}

/* An MTP targeting MeshService `svc` (NULL: no targetRef). */
static struct hy_resource *mtp(const char *mesh, const char *name, const char *svc)
{
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name(MTP));
    assert_non_null(r);
    assert_int_equal(hy_resource_set_name(r, mesh, name), 0);
    if (svc) {
        Hypha__V1__MeshTrafficPermission *spec = (Hypha__V1__MeshTrafficPermission *)r->spec;
        spec->target_ref = malloc(sizeof(*spec->target_ref));
        assert_non_null(spec->target_ref);
        hypha__v1__target_ref__init(spec->target_ref);
        spec->target_ref->has_kind = 1;
        spec->target_ref->kind = HYPHA__V1__TARGET_REF__KIND__MeshService;
        spec->target_ref->name = strdup(svc);
    }
    return r;
}

static struct hy_resource *of_type(const char *type, const char *mesh, const char *name)
{
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name(type));
    assert_non_null(r);
    assert_int_equal(hy_resource_set_name(r, mesh, name), 0);
    return r;
}

static const char *svc_of(const struct hy_resource *r)
{
    const Hypha__V1__MeshTrafficPermission *spec =
        (const Hypha__V1__MeshTrafficPermission *)r->spec;
    return spec->target_ref ? spec->target_ref->name : NULL;
}

/* Puts a new MTP and returns the write's result. */
static struct hy_store_write put_new(struct hy_store *s, const char *mesh, const char *name,
                                     const char *svc)
{
    struct hy_resource *r = mtp(mesh, name, svc);
    struct hy_store_write w;
    assert_int_equal(hy_store_put(s, r, HY_VERSION_ANY, &w), 0);
    hy_resource_free(r);
    return w;
}

static bool exists(struct hy_store *s, const char *type, const char *mesh, const char *name)
{
    struct hy_resource *r = NULL;
    int rc = hy_store_get(s, type, mesh, name, &r);
    assert_true(rc == 0 || rc == HY_ENOTFOUND);
    hy_resource_free(r);
    return rc == 0;
}

static void expect_change(const struct hy_store_change *c, uint64_t rev, enum hy_store_op op,
                          const char *type, const char *mesh, const char *name, uint64_t version)
{
    assert_int_equal(c->revision, rev);
    assert_int_equal(c->op, op);
    assert_string_equal(c->type, type);
    assert_string_equal(c->mesh, mesh);
    assert_string_equal(c->name, name);
    assert_int_equal(c->version, version);
}

/* ---- CRUD, CAS, UNCHANGED ---------------------------------------------- */

static void test_crud(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r = mtp("default", "allow-web", "web"), *got = NULL;
    struct hy_store_write w;

    assert_int_equal(hy_store_revision(f->s), 0);
    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_NEW, &w), 0);
    assert_int_equal(w.result, HY_STORE_CREATED);
    assert_int_equal(w.version, 1);
    assert_int_equal(w.revision, 1);
    /* the caller's resource is left alone */
    assert_int_equal(r->version, 0);
    assert_null(r->meta->creation_time);

    assert_int_equal(hy_store_get(f->s, MTP, "default", "allow-web", &got), 0);
    assert_int_equal(got->version, 1);
    assert_string_equal(got->meta->name, "allow-web");
    assert_string_equal(got->meta->mesh, "default");
    assert_string_equal(svc_of(got), "web");
    assert_non_null(got->meta->creation_time);
    assert_non_null(got->meta->modification_time);
    assert_true(hy_resource_same_content(got, r));
    int64_t created = got->meta->creation_time->seconds;
    int32_t created_ns = got->meta->creation_time->nanos;
    hy_resource_free(got);

    set_label(r, "team", "payments");
    assert_int_equal(hy_store_put(f->s, r, 1, &w), 0);
    assert_int_equal(w.result, HY_STORE_UPDATED);
    assert_int_equal(w.version, 2);
    assert_int_equal(w.revision, 2);
    assert_int_equal(hy_store_get(f->s, MTP, "default", "allow-web", &got), 0);
    assert_int_equal(got->version, 2);
    assert_int_equal(got->meta->n_labels, 1);
    assert_int_equal(got->meta->creation_time->seconds, created);
    assert_int_equal(got->meta->creation_time->nanos, created_ns);
    hy_resource_free(got);

    assert_int_equal(hy_store_delete(f->s, MTP, "default", "allow-web", 2), 0);
    assert_int_equal(hy_store_get(f->s, MTP, "default", "allow-web", &got), HY_ENOTFOUND);
    assert_int_equal(hy_store_delete(f->s, MTP, "default", "allow-web", HY_VERSION_ANY),
                     HY_ENOTFOUND);
    assert_int_equal(hy_store_revision(f->s), 3);

    /* bad arguments */
    assert_int_equal(hy_store_get(f->s, "NoSuchType", "default", "x", &got), HY_EINVAL);
    assert_int_equal(hy_store_get(f->s, MTP, NULL, "x", &got), HY_EINVAL);
    assert_int_equal(hy_store_get(f->s, MTP, "default", "a/b", &got), HY_EINVAL);
    hy_resource_free(r);
}

static void test_cas(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r = mtp("default", "p", "web");
    struct hy_store_write w;

    assert_int_equal(hy_store_put(f->s, r, 3, &w), HY_ECONFLICT); /* absent, expected v3 */
    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_NEW, &w), 0);
    set_label(r, "k", "v");
    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_NEW, &w), HY_ECONFLICT);
    assert_int_equal(hy_store_put(f->s, r, 5, &w), HY_ECONFLICT);
    assert_int_equal(hy_store_put(f->s, r, 1, &w), 0);
    assert_int_equal(w.version, 2);
    assert_int_equal(hy_store_put(f->s, r, 1, &w), HY_ECONFLICT); /* stale now */
    assert_int_equal(hy_store_revision(f->s), 2);

    assert_int_equal(hy_store_delete(f->s, MTP, "default", "p", 1), HY_ECONFLICT);
    assert_int_equal(hy_store_delete(f->s, MTP, "default", "p", HY_VERSION_NEW), HY_ECONFLICT);
    assert_true(exists(f->s, MTP, "default", "p"));
    assert_int_equal(hy_store_delete(f->s, MTP, "default", "p", 2), 0);
    assert_false(exists(f->s, MTP, "default", "p"));
    hy_resource_free(r);
}

static void test_unchanged(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r = mtp("default", "p", "web"), *got;
    struct hy_store_write w;
    struct hy_store_changes c;

    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_ANY, &w), 0);
    assert_int_equal(hy_store_get(f->s, MTP, "default", "p", &got), 0);
    int64_t mod = got->meta->modification_time->seconds;
    int32_t mod_ns = got->meta->modification_time->nanos;
    hy_resource_free(got);

    /* same spec and labels; origin and version are not content */
    r->origin = strdup("zone-east");
    assert_int_equal(hy_store_put(f->s, r, 1, &w), 0);
    assert_int_equal(w.result, HY_STORE_UNCHANGED);
    assert_int_equal(w.version, 1);
    assert_int_equal(w.revision, 1);
    assert_int_equal(hy_store_revision(f->s), 1);
    assert_int_equal(hy_store_changes(f->s, 0, 0, &c), 0);
    assert_int_equal(c.n, 1);
    hy_store_changes_fini(&c);
    assert_int_equal(hy_store_get(f->s, MTP, "default", "p", &got), 0);
    assert_int_equal(got->version, 1);
    assert_int_equal(got->meta->modification_time->seconds, mod);
    assert_int_equal(got->meta->modification_time->nanos, mod_ns);
    assert_null(got->origin);
    hy_resource_free(got);

    hy_resource_free(r);
    r = mtp("default", "p", "api"); /* spec differs */
    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_ANY, &w), 0);
    assert_int_equal(w.result, HY_STORE_UPDATED);
    assert_int_equal(w.revision, 2);
    hy_resource_free(r);
}

/* ---- batches and revisions --------------------------------------------- */

static void test_batch_revisions(void **state)
{
    struct fx *f = *state;
    struct hy_resource *a = mtp("m", "a", "x"), *b = mtp("m", "b", "x"), *b2 = mtp("m", "b", "y");
    struct hy_store_write w[3] = {
        {.op = HY_STORE_PUT, .r = a, .expect_version = HY_VERSION_NEW},
        {.op = HY_STORE_PUT, .r = b, .expect_version = HY_VERSION_NEW},
        {.op = HY_STORE_PUT, .r = b2, .expect_version = 1}, /* sees the write before it */
    };
    size_t failed = 99;

    put_new(f->s, "m", "first", "x");
    assert_int_equal(hy_store_apply(f->s, w, 3, &failed), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(w[i].revision, 2 + i);
    assert_int_equal(w[2].version, 2);
    assert_int_equal(w[2].result, HY_STORE_UPDATED);
    assert_int_equal(hy_store_revision(f->s), 4);

    reopen(f, 0, 0);
    assert_int_equal(hy_store_revision(f->s), 4);
    assert_true(exists(f->s, MTP, "m", "a"));
    struct hy_resource *got;
    assert_int_equal(hy_store_get(f->s, MTP, "m", "b", &got), 0);
    assert_string_equal(svc_of(got), "y");
    assert_int_equal(got->version, 2);
    hy_resource_free(got);
    assert_int_equal(put_new(f->s, "m", "after-reopen", "x").revision, 5);

    struct hy_store_changes c;
    assert_int_equal(hy_store_changes(f->s, 0, 0, &c), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.to, 5);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.v[i].revision, i + 1);
    expect_change(&c.v[3], 4, HY_STORE_PUT, MTP, "m", "b", 2);
    hy_store_changes_fini(&c);

    hy_resource_free(a);
    hy_resource_free(b);
    hy_resource_free(b2);
}

static void test_batch_atomic(void **state)
{
    struct fx *f = *state;
    struct hy_resource *a = mtp("m", "a", "x"), *b = mtp("m", "b", "x"), *c = mtp("m", "c", "x");
    struct hy_store_write w[3] = {
        {.op = HY_STORE_PUT, .r = a, .expect_version = HY_VERSION_ANY},
        {.op = HY_STORE_PUT, .r = b, .expect_version = HY_VERSION_NEW},
        {.op = HY_STORE_PUT, .r = c, .expect_version = 7}, /* c does not exist */
    };
    size_t failed = 99;

    put_new(f->s, "m", "base", "x");
    assert_int_equal(hy_store_apply(f->s, w, 3, &failed), HY_ECONFLICT);
    assert_int_equal(failed, 2);
    assert_false(exists(f->s, MTP, "m", "a"));
    assert_false(exists(f->s, MTP, "m", "b"));
    assert_int_equal(hy_store_revision(f->s), 1);

    /* a delete of a missing key fails the batch too */
    w[1] = (struct hy_store_write){.op = HY_STORE_DELETE, .r = b, .expect_version = HY_VERSION_ANY};
    assert_int_equal(hy_store_apply(f->s, w, 2, &failed), HY_ENOTFOUND);
    assert_int_equal(failed, 1);
    assert_false(exists(f->s, MTP, "m", "a"));

    /* a malformed write is refused before anything starts */
    struct hy_resource *noname = mtp("m", NULL, "x");
    w[1] = (struct hy_store_write){.op = HY_STORE_PUT, .r = noname, .expect_version = 0};
    assert_int_equal(hy_store_apply(f->s, w, 2, &failed), HY_EINVAL);
    assert_int_equal(failed, 1);
    assert_int_equal(hy_store_revision(f->s), 1);

    struct hy_store_changes ch;
    assert_int_equal(hy_store_changes(f->s, 0, 0, &ch), 0);
    assert_int_equal(ch.n, 1);
    hy_store_changes_fini(&ch);
    hy_resource_free(noname);
    hy_resource_free(a);
    hy_resource_free(b);
    hy_resource_free(c);
}

/* ---- change feed and compaction ---------------------------------------- */

static void test_changes(void **state)
{
    struct fx *f = *state;
    struct hy_store_changes c;
    struct hy_resource *mesh = of_type("Mesh", NULL, "default");

    assert_int_equal(hy_store_put(f->s, mesh, HY_VERSION_NEW, NULL), 0); /* rev 1 */
    put_new(f->s, "default", "p", "a");                                  /* rev 2 */
    put_new(f->s, "default", "p", "b");                                  /* rev 3, v2 */
    put_new(f->s, "default", "q", "a");                                  /* rev 4 */
    assert_int_equal(hy_store_delete(f->s, MTP, "default", "p", 2), 0);  /* rev 5 */

    assert_int_equal(hy_store_changes(f->s, 0, 0, &c), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.to, 5);
    expect_change(&c.v[0], 1, HY_STORE_PUT, "Mesh", "", "default", 1);
    expect_change(&c.v[1], 2, HY_STORE_PUT, MTP, "default", "p", 1);
    expect_change(&c.v[2], 3, HY_STORE_PUT, MTP, "default", "p", 2);
    expect_change(&c.v[3], 4, HY_STORE_PUT, MTP, "default", "q", 1);
    expect_change(&c.v[4], 5, HY_STORE_DELETE, MTP, "default", "p", 2);
    hy_store_changes_fini(&c);

    assert_int_equal(hy_store_changes(f->s, 1, 2, &c), 0); /* at most 2 */
    assert_int_equal(c.n, 2);
    assert_int_equal(c.v[0].revision, 2);
    assert_int_equal(c.to, 3);
    hy_store_changes_fini(&c);

    assert_int_equal(hy_store_changes(f->s, 3, 10, &c), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.to, 5);
    hy_store_changes_fini(&c);

    assert_int_equal(hy_store_changes(f->s, 5, 0, &c), 0); /* up to date */
    assert_int_equal(c.n, 0);
    assert_int_equal(c.to, 5);
    hy_store_changes_fini(&c);
    hy_resource_free(mesh);
}

static void expect_total(struct hy_store *s, const char *type, const char *mesh, size_t want);

static void test_compact_manual(void **state)
{
    struct fx *f = *state;
    struct hy_store_changes c;
    struct hy_store_stats st;
    char name[16];

    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        put_new(f->s, "m", name, "x");
    }
    assert_int_equal(hy_store_horizon(f->s), 0);
    assert_int_equal(hy_store_compact(f->s, 4), 0);
    assert_int_equal(hy_store_horizon(f->s), 4);
    assert_int_equal(hy_store_stats(f->s, &st), 0);
    assert_int_equal(st.log_records, 6);
    assert_int_equal(st.resources, 10);
    assert_int_equal(st.revision, 10);
    assert_int_equal(st.horizon, 4);
    assert_true(st.used_bytes > 0);
    assert_true(pg_url ? st.map_size == 0 : st.used_bytes <= st.map_size);

    assert_int_equal(hy_store_changes(f->s, 3, 0, &c), HY_ETOOOLD);
    assert_int_equal(c.n, 0);
    assert_int_equal(hy_store_changes(f->s, 4, 0, &c), 0);
    assert_int_equal(c.n, 6);
    assert_int_equal(c.v[0].revision, 5);
    hy_store_changes_fini(&c);

    assert_int_equal(hy_store_compact(f->s, 2), 0); /* behind the horizon: no-op */
    assert_int_equal(hy_store_horizon(f->s), 4);
    assert_int_equal(hy_store_compact(f->s, 1000), 0); /* clamped to the revision */
    assert_int_equal(hy_store_horizon(f->s), 10);
    assert_int_equal(hy_store_changes(f->s, 10, 0, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.to, 10);
    hy_store_changes_fini(&c);

    reopen(f, 0, 0);
    assert_int_equal(hy_store_horizon(f->s), 10);
    assert_int_equal(put_new(f->s, "m", "next", "x").revision, 11);
}

static void test_compact_auto(void **state)
{
    struct fx *f = *state;
    struct hy_store_changes c;
    struct hy_store_stats st;
    char name[16];

    reopen(f, 0, 5);
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        put_new(f->s, "m", name, "x");
        assert_int_equal(hy_store_stats(f->s, &st), 0);
        assert_int_equal(st.log_records, i < 5 ? i + 1 : 5);
    }
    assert_int_equal(hy_store_horizon(f->s), 7);
    assert_int_equal(hy_store_changes(f->s, 0, 0, &c), HY_ETOOOLD);
    assert_int_equal(hy_store_changes(f->s, 6, 0, &c), HY_ETOOOLD);
    assert_int_equal(hy_store_changes(f->s, 7, 0, &c), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.v[0].revision, 8);
    assert_int_equal(c.to, 12);
    hy_store_changes_fini(&c);
}

/* A copied store moves past its source's revisions with an empty log. */
static void test_skip_to(void **state)
{
    struct fx *f = *state;
    struct hy_store_changes c;
    put_new(f->s, "m", "a", "x");
    put_new(f->s, "m", "b", "x");
    assert_int_equal(hy_store_skip_to(f->s, 10), 0);
    assert_int_equal(hy_store_revision(f->s), 10);
    assert_int_equal(hy_store_horizon(f->s), 10);
    assert_int_equal(hy_store_changes(f->s, 2, 0, &c), HY_ETOOOLD);
    assert_int_equal(hy_store_changes(f->s, 10, 0, &c), 0);
    assert_int_equal(c.n, 0);
    hy_store_changes_fini(&c);
    assert_int_equal(hy_store_skip_to(f->s, 5), 0); /* never backwards */
    assert_int_equal(hy_store_revision(f->s), 10);
    assert_int_equal(put_new(f->s, "m", "c", "x").revision, 11);
    assert_true(exists(f->s, MTP, "m", "a"));
    expect_total(f->s, MTP, "m", 3);
    reopen(f, 0, 0);
    assert_int_equal(hy_store_revision(f->s), 11);
    expect_total(f->s, MTP, "m", 3);
}

/* ---- cascade ----------------------------------------------------------- */

static void test_cascade(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r[] = {
        of_type("Mesh", NULL, "a"),
        of_type("Mesh", NULL, "b"),
        mtp("a", "p1", "x"),
        mtp("a", "p2", "x"),
        of_type("MeshTimeout", "a", "t1"),
        of_type("Dataplane", "a", "dp1"),
        mtp("b", "p1", "x"),
        of_type("MeshTimeout", "b", "t1"),
    };
    const size_t nr = sizeof(r) / sizeof(r[0]);
    for (size_t i = 0; i < nr; i++)
        assert_int_equal(hy_store_put(f->s, r[i], HY_VERSION_NEW, NULL), 0);
    uint64_t before = hy_store_revision(f->s);

    assert_int_equal(hy_store_delete(f->s, "Mesh", NULL, "a", 1), 0);
    assert_int_equal(hy_store_revision(f->s), before + 5);
    assert_false(exists(f->s, "Mesh", NULL, "a"));
    assert_false(exists(f->s, MTP, "a", "p1"));
    assert_false(exists(f->s, MTP, "a", "p2"));
    assert_false(exists(f->s, "MeshTimeout", "a", "t1"));
    assert_false(exists(f->s, "Dataplane", "a", "dp1"));
    assert_true(exists(f->s, "Mesh", NULL, "b"));
    assert_true(exists(f->s, MTP, "b", "p1"));
    assert_true(exists(f->s, "MeshTimeout", "b", "t1"));

    struct hy_store_changes c;
    assert_int_equal(hy_store_changes(f->s, before, 0, &c), 0);
    assert_int_equal(c.n, 5);
    bool seen[4] = {false};
    for (size_t i = 0; i < 4; i++) {
        const struct hy_store_change *e = &c.v[i];
        assert_int_equal(e->revision, before + 1 + i);
        assert_int_equal(e->op, HY_STORE_DELETE);
        assert_int_equal(e->version, 1);
        assert_string_equal(e->mesh, "a");
        for (size_t j = 0; j < 4; j++) {
            const struct hy_resource *x = r[2 + j];
            if (!strcmp(e->type, x->type->name) && !strcmp(e->name, x->meta->name))
                seen[j] = true;
        }
    }
    for (size_t j = 0; j < 4; j++)
        assert_true(seen[j]);
    expect_change(&c.v[4], before + 5, HY_STORE_DELETE, "Mesh", "", "a", 1);
    hy_store_changes_fini(&c);
    for (size_t i = 0; i < nr; i++)
        hy_resource_free(r[i]);
}

/* ---- listing ----------------------------------------------------------- */

static void expect_page(const struct hy_store_page *p, const char *const *names, size_t n,
                        size_t total, const char *next)
{
    assert_int_equal(p->n, n);
    assert_int_equal(p->total, total);
    for (size_t i = 0; i < n; i++) {
        char full[64];
        snprintf(full, sizeof(full), "%s/%s", p->items[i]->meta->mesh, p->items[i]->meta->name);
        assert_string_equal(full, names[i]);
    }
    if (next)
        assert_string_equal(p->next, next);
    else
        assert_null(p->next);
}

static void test_list(void **state)
{
    struct fx *f = *state;
    static const char *const in_a[] = {"c", "a", "e", "b", "d"};
    struct hy_store_page p;
    for (size_t i = 0; i < 5; i++)
        put_new(f->s, "a", in_a[i], "x");
    put_new(f->s, "b", "x", "x");
    put_new(f->s, "b", "a", "x");
    struct hy_resource *other = of_type("MeshTimeout", "a", "zz");
    assert_int_equal(hy_store_put(f->s, other, HY_VERSION_ANY, NULL), 0);
    hy_resource_free(other);

    static const char *const all_a[] = {"a/a", "a/b", "a/c", "a/d", "a/e"};
    assert_int_equal(hy_store_list(f->s, MTP, "a", NULL, 0, &p), 0);
    expect_page(&p, all_a, 5, 5, NULL);
    hy_store_page_fini(&p);

    /* pages of 2 */
    assert_int_equal(hy_store_list(f->s, MTP, "a", NULL, 2, &p), 0);
    expect_page(&p, all_a, 2, 5, MTP "/a/b");
    char *next = strdup(p.next);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, MTP, "a", next, 2, &p), 0);
    expect_page(&p, all_a + 2, 2, 5, MTP "/a/d");
    free(next);
    next = strdup(p.next);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, MTP, "a", next, 2, &p), 0);
    expect_page(&p, all_a + 4, 1, 5, NULL);
    hy_store_page_fini(&p);
    free(next);
    /* a page that ends exactly at the last item has no next */
    assert_int_equal(hy_store_list(f->s, MTP, "a", MTP "/a/c", 2, &p), 0);
    expect_page(&p, all_a + 3, 2, 5, NULL);
    hy_store_page_fini(&p);

    /* every mesh: mesh, then name order */
    static const char *const all[] = {"a/a", "a/b", "a/c", "a/d", "a/e", "b/a", "b/x"};
    assert_int_equal(hy_store_list(f->s, MTP, NULL, NULL, 0, &p), 0);
    expect_page(&p, all, 7, 7, NULL);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, MTP, NULL, MTP "/a/e", 1, &p), 0);
    expect_page(&p, all + 5, 1, 7, MTP "/b/a");
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, MTP, "b", NULL, 0, &p), 0);
    expect_page(&p, all + 5, 2, 2, NULL);
    hy_store_page_fini(&p);

    /* past the end, an empty mesh, an unknown type */
    assert_int_equal(hy_store_list(f->s, MTP, "a", MTP "/a/z", 0, &p), 0);
    expect_page(&p, NULL, 0, 5, NULL);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, MTP, "none", NULL, 0, &p), 0);
    expect_page(&p, NULL, 0, 0, NULL);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, "Nope", NULL, NULL, 0, &p), HY_EINVAL);
}

/* Deletes between pages: a page starts after the token whether or not its
 * key still exists. */
static void test_list_after_deleted(void **state)
{
    struct fx *f = *state;
    static const char *const names[] = {"a", "b", "c", "d", "e"};
    static const char *const all[] = {"m/a", "m/b", "m/c", "m/d", "m/e"};
    struct hy_store_page p;
    for (size_t i = 0; i < 5; i++)
        put_new(f->s, "m", names[i], "x");

    assert_int_equal(hy_store_list(f->s, MTP, "m", NULL, 2, &p), 0);
    expect_page(&p, all, 2, 5, MTP "/m/b");
    char *next = strdup(p.next);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_delete(f->s, MTP, "m", "b", HY_VERSION_ANY), 0);
    assert_int_equal(hy_store_list(f->s, MTP, "m", next, 2, &p), 0);
    expect_page(&p, all + 2, 2, 4, MTP "/m/d");
    free(next);
    next = strdup(p.next);
    hy_store_page_fini(&p);

    /* the token's key and the one after it both gone */
    assert_int_equal(hy_store_delete(f->s, MTP, "m", "d", HY_VERSION_ANY), 0);
    assert_int_equal(hy_store_delete(f->s, MTP, "m", "e", HY_VERSION_ANY), 0);
    assert_int_equal(hy_store_list(f->s, MTP, "m", next, 2, &p), 0);
    expect_page(&p, NULL, 0, 2, NULL);
    hy_store_page_fini(&p);
    free(next);

    /* a token that never was a key, and one before the type's keys */
    assert_int_equal(hy_store_list(f->s, MTP, "m", MTP "/m/bb", 0, &p), 0);
    expect_page(&p, all + 2, 1, 2, NULL);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(f->s, MTP, "m", "A", 0, &p), 0);
    static const char *const left[] = {"m/a", "m/c"};
    expect_page(&p, left, 2, 2, NULL);
    hy_store_page_fini(&p);
}

/* Tokens longer than the largest key (511 bytes) still seek: after the
 * longest key plus one byte, and after a short key padded far past 511. */
static void test_list_long_token(void **state)
{
    struct fx *f = *state;
    char name[600], token[700];
    struct hy_store_page p;
    /* a name making a key of exactly the largest size */
    size_t n = (size_t)511 - strlen(MTP "/m/");
    memset(name, 'y', n);
    name[n] = '\0';
    put_new(f->s, "m", "c", "x");
    put_new(f->s, "m", name, "x");
    put_new(f->s, "m", "z", "x");

    snprintf(token, sizeof(token), MTP "/m/%sy", name); /* the longest key + 1 byte */
    assert_int_equal(hy_store_list(f->s, MTP, "m", token, 0, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.items[0]->meta->name, "z");
    hy_store_page_fini(&p);

    memset(token, 'x', sizeof(token) - 1);
    token[sizeof(token) - 1] = '\0';
    memcpy(token, MTP "/m/c", strlen(MTP "/m/c")); /* "…/m/cxxxx…", 699 bytes */
    assert_int_equal(hy_store_list(f->s, MTP, "m", token, 0, &p), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.items[0]->meta->name, name);
    hy_store_page_fini(&p);
}

/* ---- list totals ------------------------------------------------------- */

/* Checks the total a page reports for type (and mesh) against a full list. */
static void expect_total(struct hy_store *s, const char *type, const char *mesh, size_t want)
{
    struct hy_store_page p;
    assert_int_equal(hy_store_list(s, type, mesh, NULL, 1, &p), 0);
    assert_int_equal(p.total, want);
    hy_store_page_fini(&p);
    assert_int_equal(hy_store_list(s, type, mesh, NULL, 0, &p), 0);
    assert_int_equal(p.n, want);
    assert_int_equal(p.total, want);
    hy_store_page_fini(&p);
}

static void put_batch(struct hy_store *s, struct hy_resource **r, size_t n, int want_rc)
{
    struct hy_store_write w[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++)
        w[i] = (struct hy_store_write){
            .op = HY_STORE_PUT, .r = r[i], .expect_version = HY_VERSION_ANY};
    assert_int_equal(hy_store_apply(s, w, n, NULL), want_rc);
}

static void expect_cascade_totals(struct hy_store *s)
{
    expect_total(s, "Mesh", NULL, 1);
    expect_total(s, MTP, NULL, 21);
    expect_total(s, MTP, "a", 0);
    expect_total(s, MTP, "b", 1);
    expect_total(s, MTP, "m07", 1);
    expect_total(s, "MeshTimeout", NULL, 1);
    expect_total(s, "MeshTimeout", "a", 0);
    expect_total(s, "Dataplane", NULL, 0);
}

/* Totals through batches, UNCHANGED puts, failed batches, cascades and
 * reopening: the counters move with every write that commits. */
static void test_totals(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r[] = {
        of_type("Mesh", NULL, "a"),
        of_type("Mesh", NULL, "b"),
        mtp("a", "p1", "x"),
        mtp("a", "p2", "x"),
        of_type("MeshTimeout", "a", "t1"),
        of_type("Dataplane", "a", "dp1"),
        mtp("b", "p1", "x"),
        of_type("MeshTimeout", "b", "t1"),
    };
    const size_t nr = sizeof(r) / sizeof(r[0]);
    put_batch(f->s, r, nr, 0);
    expect_total(f->s, "Mesh", NULL, 2);
    expect_total(f->s, MTP, NULL, 3);
    expect_total(f->s, MTP, "a", 2);
    expect_total(f->s, MTP, "b", 1);
    expect_total(f->s, MTP, "none", 0);
    expect_total(f->s, "MeshTimeout", NULL, 2);
    expect_total(f->s, "Dataplane", "a", 1);
    expect_total(f->s, "Zone", NULL, 0);

    /* UNCHANGED puts and updates count nothing */
    uint64_t rev = hy_store_revision(f->s);
    put_batch(f->s, r, nr, 0);
    assert_int_equal(hy_store_revision(f->s), rev);
    put_new(f->s, "a", "p1", "y");
    expect_total(f->s, MTP, "a", 2);
    expect_total(f->s, MTP, NULL, 3);

    /* a failed batch counts nothing, nor does a create deleted in its batch */
    struct hy_resource *p3 = mtp("a", "p3", "x"), *p4 = mtp("a", "p4", "x");
    struct hy_store_write w[3] = {
        {.op = HY_STORE_PUT, .r = p3, .expect_version = HY_VERSION_NEW},
        {.op = HY_STORE_DELETE, .r = r[3], .expect_version = HY_VERSION_ANY},
        {.op = HY_STORE_PUT, .r = p4, .expect_version = 7},
    };
    assert_int_equal(hy_store_apply(f->s, w, 3, NULL), HY_ECONFLICT);
    expect_total(f->s, MTP, "a", 2);
    w[1] = (struct hy_store_write){.op = HY_STORE_DELETE, .r = p3, .expect_version = 1};
    assert_int_equal(hy_store_apply(f->s, w, 2, NULL), 0);
    expect_total(f->s, MTP, "a", 2);
    expect_total(f->s, MTP, NULL, 3);

    /* one batch over more (type, mesh) pairs than the store buffers, ending
     * with a Mesh whose cascade deletes four resources of three types */
    struct hy_resource *many[20];
    struct hy_store_write mw[21];
    for (size_t i = 0; i < 20; i++) {
        char mesh[8];
        snprintf(mesh, sizeof(mesh), "m%02zu", i);
        many[i] = mtp(mesh, "p", "x");
        mw[i] = (struct hy_store_write){
            .op = HY_STORE_PUT, .r = many[i], .expect_version = HY_VERSION_NEW};
    }
    mw[20] = (struct hy_store_write){.op = HY_STORE_DELETE, .r = r[0], .expect_version = 1};
    assert_int_equal(hy_store_apply(f->s, mw, 21, NULL), 0);
    expect_cascade_totals(f->s);

    reopen(f, 0, 0);
    expect_cascade_totals(f->s);
    struct hy_store *ro;
    assert_int_equal(open_store(f->dir, 0, 0, true, &ro), 0);
    expect_cascade_totals(ro);
    hy_store_close(ro);

    for (size_t i = 0; i < 20; i++)
        hy_resource_free(many[i]);
    for (size_t i = 0; i < nr; i++)
        hy_resource_free(r[i]);
    hy_resource_free(p3);
    hy_resource_free(p4);
}

/* Sets (v non-NULL) or deletes a key of the closed store's "meta" database,
 * as an older Hypha or damage would leave it. */
static void meta_set(const char *dir, const char *key, const uint64_t *v)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {strlen(key), (void *)key};
    uint8_t b[8];
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 3), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    if (v) {
        for (int i = 0; i < 8; i++)
            b[i] = (uint8_t)(*v >> (56 - 8 * i));
        MDB_val d = {8, b};
        assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
    } else {
        int rc = mdb_del(txn, dbi, &k, NULL);
        assert_true(rc == 0 || rc == MDB_NOTFOUND);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Reopening rebuilds counters that are missing (a store from before them)
 * or stale (written since by a Hypha without them), and a counter found
 * wrong on a write stops being trusted. */
static void test_totals_rebuild(void **state)
{
    struct fx *f = *state;
    if (pg_url)
        skip(); /* LMDB's counters in "meta"; PostgreSQL's are a trigger's */
    static const uint64_t five = 5, one = 1;
    struct hy_store *ro;
    put_new(f->s, "a", "p1", "x");
    put_new(f->s, "a", "p2", "x");
    put_new(f->s, "b", "p1", "x");
    struct hy_resource *t = of_type("MeshTimeout", "a", "t1");
    assert_int_equal(hy_store_put(f->s, t, HY_VERSION_NEW, NULL), 0);
    hy_resource_free(t);

    /* a store from before the counters, with a leftover for an empty mesh */
    hy_store_close(f->s);
    f->s = NULL;
    meta_set(f->dir, "schema", NULL);
    meta_set(f->dir, "counted", NULL);
    meta_set(f->dir, MTP "/", NULL);
    meta_set(f->dir, MTP "/a/", &five);
    meta_set(f->dir, "MeshTimeout/gone/", &five);
    meta_set(f->dir, "MeshTimeout/gone2/", &five);
    assert_int_equal(open_store(f->dir, 0, 0, true, &ro), 0); /* cannot rebuild: walks */
    expect_total(ro, MTP, NULL, 3);
    expect_total(ro, MTP, "a", 2);
    expect_total(ro, "MeshTimeout", "gone", 0);
    hy_store_close(ro);
    reopen(f, 0, 0);
    expect_total(f->s, MTP, NULL, 3);
    expect_total(f->s, MTP, "a", 2);
    expect_total(f->s, "MeshTimeout", NULL, 1);
    expect_total(f->s, "MeshTimeout", "gone", 0);
    expect_total(f->s, "MeshTimeout", "gone2", 0);
    put_new(f->s, "a", "p3", "x");
    expect_total(f->s, MTP, "a", 3);

    /* an older Hypha wrote since: "counted" lags "revision" */
    hy_store_close(f->s);
    f->s = NULL;
    meta_set(f->dir, MTP "/b/", &five);
    meta_set(f->dir, "counted", &one);
    reopen(f, 0, 0);
    expect_total(f->s, MTP, "b", 1);
    expect_total(f->s, MTP, NULL, 4);

    /* a damaged counter goes below zero: lists walk until the next open */
    hy_store_close(f->s);
    f->s = NULL;
    meta_set(f->dir, MTP "/b/", NULL);
    reopen(f, 0, 0);
    assert_int_equal(hy_store_delete(f->s, MTP, "b", "p1", HY_VERSION_ANY), 0);
    expect_total(f->s, MTP, "b", 0);
    expect_total(f->s, MTP, "a", 3);
    put_new(f->s, "b", "p2", "x");
    expect_total(f->s, MTP, "b", 1);
    reopen(f, 0, 0);
    expect_total(f->s, MTP, "b", 1);
    expect_total(f->s, MTP, NULL, 4);

    /* a store from a newer Hypha is refused */
    static const uint64_t two = 2;
    hy_store_close(f->s);
    f->s = NULL;
    meta_set(f->dir, "schema", &two);
    assert_int_equal(open_store(f->dir, 0, 0, false, &ro), HY_ESTORE);
    assert_int_equal(open_store(f->dir, 0, 0, true, &ro), HY_ESTORE);
    meta_set(f->dir, "schema", &one);
    reopen(f, 0, 0);
}

/* ---- persistence, read-only, full map ---------------------------------- */

static void test_reopen_read_only(void **state)
{
    struct fx *f = *state;
    struct hy_store *ro;
    struct hy_resource *got, *r = mtp("m", "p", "web");

    put_new(f->s, "m", "p", "web");
    reopen(f, 0, 0);
    assert_int_equal(hy_store_get(f->s, MTP, "m", "p", &got), 0);
    assert_string_equal(svc_of(got), "web");
    hy_resource_free(got);

    assert_int_equal(open_store(f->dir, 0, 0, true, &ro), 0);
    assert_int_equal(hy_store_get(ro, MTP, "m", "p", &got), 0);
    hy_resource_free(got);
    assert_int_equal(hy_store_revision(ro), 1);
    assert_int_equal(hy_store_put(ro, r, HY_VERSION_ANY, NULL), -EROFS);
    assert_int_equal(hy_store_compact(ro, 1), -EROFS);
    hy_store_close(ro);

    char missing[96];
    snprintf(missing, sizeof(missing), "%s/missing", f->dir);
    if (pg_url) /* an empty database is no store */
        assert_int_equal(pg_reset(), 0);
    assert_int_equal(open_store(missing, 0, 0, true, &ro), HY_ESTORE);
    hy_resource_free(r);
}

/* In 64 KiB, LMDB's copy-on-write pages and delayed free-page reuse leave
 * room for two writes; 128 KiB holds a few dozen of these. */
#define FULL_MAP (128 * 1024)

static struct hy_resource *big(const char *name)
{
    static char filler[200];
    memset(filler, 'x', sizeof(filler) - 1);
    struct hy_resource *r = mtp("m", name, "web");
    set_label(r, "filler", filler);
    return r;
}

static void test_full(void **state)
{
    struct fx *f = *state;
    char name[16];
    int i, rc = 0;

    if (pg_url)
        skip();             /* no map to fill */
    reopen(f, FULL_MAP, 0); /* a fresh store: its map stays small */
    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        struct hy_resource *r = big(name);
        rc = hy_store_put(f->s, r, HY_VERSION_NEW, NULL);
        hy_resource_free(r);
        if (rc < 0)
            break;
    }
    assert_int_equal(rc, HY_EFULL);
    assert_true(i > 0);
    const int stored = i;
    assert_int_equal(hy_store_revision(f->s), stored);
    assert_false(exists(f->s, MTP, "m", name));

    struct hy_resource *b1 = big("batch-1"), *b2 = big("batch-2");
    struct hy_store_write w[2] = {{.op = HY_STORE_PUT, .r = b1, .expect_version = HY_VERSION_ANY},
                                  {.op = HY_STORE_PUT, .r = b2, .expect_version = HY_VERSION_ANY}};
    assert_int_equal(hy_store_apply(f->s, w, 2, NULL), HY_EFULL);
    assert_false(exists(f->s, MTP, "m", "batch-1"));
    assert_false(exists(f->s, MTP, "m", "batch-2"));
    hy_resource_free(b1);
    hy_resource_free(b2);

    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0; j < stored; j++) {
            struct hy_resource *got;
            snprintf(name, sizeof(name), "r%d", j);
            assert_int_equal(hy_store_get(f->s, MTP, "m", name, &got), 0);
            assert_string_equal(svc_of(got), "web");
            assert_int_equal(strlen(got->meta->labels[0]->value), 199);
            hy_resource_free(got);
        }
        struct hy_store_page p;
        assert_int_equal(hy_store_list(f->s, MTP, "m", NULL, 0, &p), 0);
        assert_int_equal(p.total, stored);
        hy_store_page_fini(&p);
        assert_int_equal(hy_store_revision(f->s), stored);
        reopen(f, FULL_MAP, 0);
    }
}

/* ---- watchers ---------------------------------------------------------- */

struct seen {
    struct hy_store *s;
    int calls;
    uint64_t last, store_rev_at_call;
    int self_id; /* unwatch itself on the first call when > 0 */
};

static void on_change(void *ud, uint64_t revision)
{
    struct seen *v = ud;
    v->calls++;
    v->last = revision;
    v->store_rev_at_call = hy_store_revision(v->s); /* committed already? */
    if (v->self_id > 0) {
        hy_store_unwatch(v->s, v->self_id);
        v->self_id = 0;
    }
}

static void test_watch(void **state)
{
    struct fx *f = *state;
    struct seen v = {.s = f->s}, once = {.s = f->s};
    int id = hy_store_watch(f->s, on_change, &v);
    assert_true(id > 0);
    once.self_id = hy_store_watch(f->s, on_change, &once);
    assert_true(once.self_id > 0 && once.self_id != id);

    put_new(f->s, "m", "a", "x");
    assert_int_equal(v.calls, 1);
    assert_int_equal(v.last, 1);
    assert_int_equal(v.store_rev_at_call, 1);
    assert_int_equal(once.calls, 1);

    struct hy_resource *b = mtp("m", "b", "x"), *c = mtp("m", "c", "x");
    struct hy_store_write w[2] = {{.op = HY_STORE_PUT, .r = b, .expect_version = HY_VERSION_ANY},
                                  {.op = HY_STORE_PUT, .r = c, .expect_version = HY_VERSION_ANY}};
    assert_int_equal(hy_store_apply(f->s, w, 2, NULL), 0);
    assert_int_equal(v.calls, 2); /* once per commit, with its last revision */
    assert_int_equal(v.last, 3);
    assert_int_equal(v.store_rev_at_call, 3);
    assert_int_equal(once.calls, 1);

    assert_int_equal(hy_store_apply(f->s, w, 2, NULL), 0); /* UNCHANGED: no call */
    w[0].expect_version = 9;
    assert_int_equal(hy_store_apply(f->s, w, 2, NULL), HY_ECONFLICT); /* failed: no call */
    assert_int_equal(hy_store_compact(f->s, 3), 0);                   /* not a change */
    assert_int_equal(v.calls, 2);

    hy_store_unwatch(f->s, id);
    assert_int_equal(hy_store_delete(f->s, MTP, "m", "a", HY_VERSION_ANY), 0);
    assert_int_equal(v.calls, 2);
    hy_resource_free(b);
    hy_resource_free(c);
}

struct conc {
    struct hy_store *s;
    int thread;
    uint64_t revs[50];
};

static void *conc_writer(void *arg)
{
    struct conc *c = arg;
    char name[32];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "t%d-%d", c->thread, i);
        struct hy_resource *r = mtp("m", name, "x");
        struct hy_store_write w;
        if (hy_store_put(c->s, r, HY_VERSION_NEW, &w) < 0)
            abort();
        c->revs[i] = w.revision;
        hy_resource_free(r);
    }
    return NULL;
}

static void count_calls(void *ud, uint64_t revision)
{
    (void)revision;
    (*(int *)ud)++; /* watchers run one at a time, under the registry lock */
}

/* Writers on several threads: one revision each, one watcher call each. */
static void test_concurrent(void **state)
{
    struct fx *f = *state;
    struct conc c[4];
    pthread_t th[4];
    int calls = 0;
    int id = hy_store_watch(f->s, count_calls, &calls);
    for (int t = 0; t < 4; t++) {
        c[t] = (struct conc){.s = f->s, .thread = t};
        assert_int_equal(pthread_create(&th[t], NULL, conc_writer, &c[t]), 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    hy_store_unwatch(f->s, id);
    assert_int_equal(calls, 200);
    assert_int_equal(hy_store_revision(f->s), 200);
    bool seen[201] = {false};
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 50; i++) {
            assert_true(c[t].revs[i] >= 1 && c[t].revs[i] <= 200);
            assert_false(seen[c[t].revs[i]]);
            seen[c[t].revs[i]] = true;
            if (i > 0)
                assert_true(c[t].revs[i] > c[t].revs[i - 1]);
        }
}

struct uv_test {
    struct hy_store *s;
    uint64_t target, last;
    int calls;
    bool closed, timed_out;
    uv_timer_t timer;
};

static void on_uv_closed(struct hy_store_uv_watch *w)
{
    struct uv_test *t = w->data;
    t->closed = true;
}

static void on_uv_change(struct hy_store_uv_watch *w, uint64_t revision)
{
    struct uv_test *t = w->data;
    assert_true(revision > t->last);
    t->last = revision;
    t->calls++;
    if (revision >= t->target) {
        hy_store_uv_watch_stop(w, on_uv_closed);
        uv_close((uv_handle_t *)&t->timer, NULL);
    }
}

static void on_timeout(uv_timer_t *h)
{
    struct hy_store_uv_watch *w = h->data;
    struct uv_test *t = w->data;
    t->timed_out = true;
    hy_store_uv_watch_stop(w, on_uv_closed);
    uv_close((uv_handle_t *)h, NULL);
}

static void *writer(void *arg)
{
    struct uv_test *t = arg;
    char name[16];
    for (uint64_t i = 0; i < t->target; i++) {
        snprintf(name, sizeof(name), "w%d", (int)i);
        struct hy_resource *r = mtp("m", name, "x");
        if (hy_store_put(t->s, r, HY_VERSION_NEW, NULL) < 0)
            abort();
        hy_resource_free(r);
    }
    return NULL;
}

static void test_uv_watch(void **state)
{
    struct fx *f = *state;
    uv_loop_t loop;
    struct uv_test t = {.s = f->s, .target = 20};
    struct hy_store_uv_watch w = {.data = &t};
    pthread_t th;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(hy_store_uv_watch_start(&loop, f->s, &w, on_uv_change), 0);
    assert_int_equal(uv_timer_init(&loop, &t.timer), 0);
    t.timer.data = &w;
    assert_int_equal(uv_timer_start(&t.timer, on_timeout, 10000, 0), 0);
    assert_int_equal(pthread_create(&th, NULL, writer, &t), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);

    assert_false(t.timed_out);
    assert_true(t.closed);
    assert_int_equal(t.last, t.target);
    assert_true(t.calls >= 1 && t.calls <= (int)t.target);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* after stop the store no longer knows the watcher: writes still work */
    put_new(f->s, "m", "after-stop", "x");
}

/* ---- replicas, IF_EXISTS deletes, origins in the feed ------------------- */

static void test_replica(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r = mtp("default", "rep", "a"), *got = NULL;
    r->version = 7;
    r->origin = strdup("global");
    r->meta->creation_time = hy_timestamp_now();
    r->meta->creation_time->seconds = 1000;
    r->meta->modification_time = hy_timestamp_now();
    r->meta->modification_time->seconds = 2000;
    struct hy_store_write w = {
        .op = HY_STORE_PUT, .flags = HY_STORE_REPLICA, .r = r, .expect_version = HY_VERSION_NEW};
    assert_int_equal(hy_store_apply(f->s, &w, 1, NULL), 0);
    assert_int_equal(w.result, HY_STORE_CREATED);
    assert_int_equal(w.version, 7);
    assert_int_equal(hy_store_get(f->s, MTP, "default", "rep", &got), 0);
    assert_int_equal(got->version, 7);
    assert_int_equal(got->meta->creation_time->seconds, 1000);
    assert_int_equal(got->meta->modification_time->seconds, 2000);
    assert_string_equal(got->origin, "global");
    hy_resource_free(got);
    /* the same version and content again: unchanged, no revision */
    uint64_t rev = hy_store_revision(f->s);
    w.result = HY_STORE_CREATED;
    assert_int_equal(hy_store_apply(f->s, &w, 1, NULL), 0);
    assert_int_equal(w.result, HY_STORE_UNCHANGED);
    assert_int_equal(hy_store_revision(f->s), rev);
    /* a newer version with the same content is written: the source moved on */
    r->version = 8;
    assert_int_equal(hy_store_apply(f->s, &w, 1, NULL), 0);
    assert_int_equal(w.result, HY_STORE_UPDATED);
    assert_int_equal(w.version, 8);
    /* replicas ignore CAS: expect_version says nothing about them */
    r->version = 3;
    w.expect_version = 99;
    assert_int_equal(hy_store_apply(f->s, &w, 1, NULL), 0);
    assert_int_equal(w.version, 3);
    hy_resource_free(r);
}

static void test_delete_if_exists_and_origin(void **state)
{
    struct fx *f = *state;
    struct hy_resource *r = mtp("default", "gone", NULL);
    struct hy_store_write w = {.op = HY_STORE_DELETE,
                               .flags = HY_STORE_IF_EXISTS,
                               .r = r,
                               .expect_version = HY_VERSION_ANY};
    uint64_t rev = hy_store_revision(f->s);
    assert_int_equal(hy_store_apply(f->s, &w, 1, NULL), 0);
    assert_int_equal(w.result, HY_STORE_UNCHANGED);
    assert_int_equal(hy_store_revision(f->s), rev);
    w.flags = 0;
    assert_int_equal(hy_store_apply(f->s, &w, 1, NULL), HY_ENOTFOUND);
    /* the feed names each change's origin, deletes and cascades included */
    r->origin = strdup("east");
    struct hy_store_write p;
    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_ANY, &p), 0);
    assert_int_equal(hy_store_delete(f->s, MTP, "default", "gone", HY_VERSION_ANY), 0);
    struct hy_resource *m = of_type("Mesh", NULL, "default"), *d = mtp("default", "d", NULL);
    d->origin = strdup("west");
    assert_int_equal(hy_store_put(f->s, m, HY_VERSION_ANY, &p), 0);
    assert_int_equal(hy_store_put(f->s, d, HY_VERSION_ANY, &p), 0);
    assert_int_equal(hy_store_delete(f->s, "Mesh", NULL, "default", HY_VERSION_ANY), 0);
    struct hy_store_changes c = {0};
    assert_int_equal(hy_store_changes(f->s, rev, 0, &c), 0);
    assert_int_equal(c.n, 6);
    assert_string_equal(c.v[0].origin, "east"); /* put gone */
    assert_string_equal(c.v[1].origin, "east"); /* delete gone */
    assert_string_equal(c.v[2].origin, "");     /* put the mesh */
    assert_string_equal(c.v[3].origin, "west"); /* put d */
    assert_string_equal(c.v[4].origin, "west"); /* cascade delete of d */
    assert_string_equal(c.v[5].origin, "");     /* delete the mesh */
    hy_store_changes_fini(&c);
    hy_resource_free(m);
    hy_resource_free(d);
    hy_resource_free(r);
}

/* ---- PostgreSQL: several handles on one database, connection loss ----- */

struct remote_seen {
    pthread_mutex_t mu;
    int calls;
    uint64_t last;
};

static void on_remote(void *ud, uint64_t revision)
{
    struct remote_seen *v = ud;
    pthread_mutex_lock(&v->mu);
    v->calls++;
    if (revision > v->last)
        v->last = revision;
    pthread_mutex_unlock(&v->mu);
}

/* Waits up to 20 s for the watcher to have seen revision rev. */
static bool saw(struct remote_seen *v, uint64_t rev)
{
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&v->mu);
        bool done = v->last >= rev;
        pthread_mutex_unlock(&v->mu);
        if (done)
            return true;
        usleep(10000);
    }
    return false;
}

static void *conc_writer_two(void *arg)
{
    return conc_writer(arg);
}

/* Two handles stand for two processes (replicas): a commit on one wakes the
 * other's watchers once, its own watchers are called by the commit alone,
 * and writers on both get one gap-free run of revisions. */
static void test_pg_two_handles(void **state)
{
    struct fx *f = *state;
    struct hy_store *b;
    struct remote_seen vb = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct remote_seen va = {.mu = PTHREAD_MUTEX_INITIALIZER};
    if (!pg_url)
        skip();
    assert_int_equal(open_store(f->dir, 0, 0, false, &b), 0);
    int ib = hy_store_watch(b, on_remote, &vb), ia = hy_store_watch(f->s, on_remote, &va);
    assert_true(ib > 0 && ia > 0);

    put_new(f->s, "m", "a", "x");
    assert_true(saw(&vb, 1));
    struct hy_resource *got;
    assert_int_equal(hy_store_get(b, MTP, "m", "a", &got), 0);
    hy_resource_free(got);
    assert_int_equal(hy_store_revision(b), 1);
    put_new(b, "m", "b", "x");
    assert_true(saw(&va, 2));
    /* one listener poll later, nobody was told twice */
    usleep(1500 * 1000);
    pthread_mutex_lock(&va.mu);
    assert_int_equal(va.calls, 2);
    pthread_mutex_unlock(&va.mu);
    pthread_mutex_lock(&vb.mu);
    assert_int_equal(vb.calls, 2);
    pthread_mutex_unlock(&vb.mu);

    struct conc c[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        c[t] = (struct conc){.s = t % 2 ? b : f->s, .thread = t};
        assert_int_equal(pthread_create(&th[t], NULL, conc_writer_two, &c[t]), 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(hy_store_revision(f->s), 202);
    struct hy_store_changes ch;
    assert_int_equal(hy_store_changes(b, 0, 0, &ch), 0);
    assert_int_equal(ch.n, 202);
    for (size_t i = 0; i < ch.n; i++)
        assert_int_equal(ch.v[i].revision, i + 1);
    hy_store_changes_fini(&ch);
    assert_true(saw(&va, 202) && saw(&vb, 202));

    hy_store_unwatch(b, ib);
    hy_store_unwatch(f->s, ia);
    hy_store_close(b);
}

/* Puts r (new) until the store is back, at most 20 s. */
static int put_until_up(struct hy_store *s, const struct hy_resource *r, struct hy_store_write *w)
{
    int rc = HY_EUNAVAIL;
    for (int i = 0; i < 2000 && rc == HY_EUNAVAIL; i++) {
        rc = hy_store_put(s, r, HY_VERSION_NEW, w);
        if (rc == HY_EUNAVAIL)
            usleep(10000);
    }
    return rc;
}

/* The server drops the store's connections: the call that finds out fails
 * with HY_EUNAVAIL, at once; the listener reconnects both connections and
 * catches up with what was committed meanwhile. */
static void test_pg_conn_loss(void **state)
{
    struct fx *f = *state;
    struct hy_store *b;
    struct remote_seen va = {.mu = PTHREAD_MUTEX_INITIALIZER};
    if (!pg_url)
        skip();
    assert_int_equal(open_store(f->dir, 0, 0, false, &b), 0);
    put_new(f->s, "m", "a", "x");
    int ia = hy_store_watch(f->s, on_remote, &va);

    pg_exec("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE pid <> "
            "pg_backend_pid() AND application_name LIKE 'hypha%'");
    struct hy_resource *r = mtp("m", "b", "x");
    int rc = hy_store_put(f->s, r, HY_VERSION_NEW, NULL);
    assert_int_equal(rc, HY_EUNAVAIL); /* nothing written: the connection was gone */
    /* the listener reconnects in the background: writes work again soon */
    assert_int_equal(put_until_up(f->s, r, NULL), 0);
    hy_resource_free(r);
    assert_true(exists(f->s, MTP, "m", "b"));
    assert_int_equal(hy_store_revision(f->s), 2);

    /* the other handle (its connections were dropped too) writes; ours hears */
    struct hy_store_write w;
    r = mtp("m", "c", "x");
    assert_int_equal(put_until_up(b, r, &w), 0);
    assert_int_equal(w.revision, 3);
    hy_resource_free(r);
    assert_true(saw(&va, 3));
    hy_store_unwatch(f->s, ia);
    hy_store_close(b);
}

/* Migrating is idempotent, and a store written by a newer schema is
 * refused. */
static void test_pg_schema(void **state)
{
    struct fx *f = *state;
    struct hy_store_config cfg = {.backend = HY_STORE_POSTGRES, .url = pg_url};
    struct hy_store *ro;
    int from = -1, to = -1;
    if (!pg_url)
        skip();
    assert_int_equal(hy_store_migrate(&cfg, &from, &to), 0);
    assert_int_equal(from, 1);
    assert_int_equal(to, 1);
    put_new(f->s, "m", "a", "x");
    pg_exec("UPDATE hy_schema_version SET version = 99");
    assert_int_equal(hy_store_migrate(&cfg, &from, &to), HY_ESTORE);
    assert_int_equal(open_store(f->dir, 0, 0, true, &ro), HY_ESTORE);
    cfg.no_migrate = true;
    assert_int_equal(hy_store_open(&cfg, &ro), HY_ESTORE);
    pg_exec("UPDATE hy_schema_version SET version = 1");
    assert_int_equal(hy_store_open(&cfg, &ro), 0);
    assert_true(exists(ro, MTP, "m", "a"));
    hy_store_close(ro);
    /* an unreachable server is told apart from a broken store */
    cfg.url = "host=/nonexistent-hypha-dir port=1 user=x dbname=x";
    assert_int_equal(hy_store_open(&cfg, &ro), HY_EUNAVAIL);
}

/* Waits up to 20 s for the lease to be (or not be) held. */
static bool lease_becomes(struct hy_store_lease *l, bool held)
{
    for (int i = 0; i < 2000; i++) {
        if (hy_store_lease_held(l) == held)
            return true;
        usleep(10000);
    }
    return false;
}

/* Leader leases: LMDB's is always held; on PostgreSQL two handles (two
 * replicas) never hold one lease together, a second lease name is apart,
 * the holder that loses its connection steps down and the other takes
 * over, and closing the holder hands over too. */
static void test_lease(void **state)
{
    struct fx *f = *state;
    struct hy_store_lease *a, *b, *other;
    struct hy_store *sb;
    assert_int_equal(hy_store_lease_open(f->s, "global", "a", &a), 0);
    if (!pg_url) {
        assert_true(hy_store_lease_held(a));
        assert_int_equal(hy_store_lease_transitions(a), 1);
        hy_store_lease_close(a);
        return;
    }
    assert_int_equal(open_store(f->dir, 0, 0, false, &sb), 0);
    assert_true(lease_becomes(a, true));
    assert_int_equal(hy_store_lease_open(sb, "global", "b", &b), 0);
    assert_int_equal(hy_store_lease_open(sb, "zone/east", "b", &other), 0);
    assert_true(lease_becomes(other, true)); /* another name: its own lock */
    usleep(1200 * 1000);                     /* b has tried a few times */
    assert_false(hy_store_lease_held(b));
    assert_true(hy_store_lease_held(a));

    /* the holders' lock connections die: a steps down; then exactly one
     * of a and b holds the lease (whoever asks first), never both */
    pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
            "'hypha-lease' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
            "granted)");
    for (int i = 0; i < 2000 && hy_store_lease_transitions(a) < 2; i++)
        usleep(10000);
    assert_true(hy_store_lease_transitions(a) >= 2);
    for (int i = 0; i < 2000 && !(hy_store_lease_held(a) ^ hy_store_lease_held(b)); i++) {
        assert_false(hy_store_lease_held(a) && hy_store_lease_held(b));
        usleep(10000);
    }
    assert_true(hy_store_lease_held(a) ^ hy_store_lease_held(b)); /* never both */
    assert_true(lease_becomes(other, true));                      /* back after its own reconnect */

    /* closing the holder releases at once: the other gets it */
    struct hy_store_lease *holder = hy_store_lease_held(a) ? a : b;
    struct hy_store_lease *rest = holder == a ? b : a;
    hy_store_lease_close(holder);
    assert_true(lease_becomes(rest, true));
    hy_store_lease_close(rest);
    hy_store_lease_close(other);
    hy_store_close(sb);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "postgres") == 0) {
        pg_url = getenv("HYPHA_TEST_PG_URL");
        if (!pg_url || !pg_url[0]) {
            fprintf(stderr, "skipped: HYPHA_TEST_PG_URL is not set (tests/unit/store_pg.sh "
                            "starts a PostgreSQL and sets it)\n");
            return 77;
        }
    } else if (argc > 1 && strcmp(argv[1], "lmdb") != 0) {
        fprintf(stderr, "usage: %s [lmdb|postgres]\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_crud),
        T(test_cas),
        T(test_unchanged),
        T(test_batch_revisions),
        T(test_batch_atomic),
        T(test_changes),
        T(test_compact_manual),
        T(test_compact_auto),
        T(test_skip_to),
        T(test_cascade),
        T(test_list),
        T(test_list_after_deleted),
        T(test_list_long_token),
        T(test_totals),
        T(test_totals_rebuild),
        T(test_reopen_read_only),
        T(test_full),
        T(test_watch),
        T(test_concurrent),
        T(test_uv_watch),
        T(test_replica),
        T(test_delete_if_exists_and_origin),
        T(test_pg_two_handles),
        T(test_pg_conn_loss),
        T(test_pg_schema),
        T(test_lease),
#undef T
    };
    return cmocka_run_group_tests_name(pg_url ? "store/postgres" : "store/lmdb", tests, NULL, NULL);
}
