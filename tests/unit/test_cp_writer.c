/* Unit tests of the API's writer (cp/cp_writer.c) on a real LMDB store and
 * a libuv loop: answers in order, several requests in one transaction, one
 * request's failure failing no other, the revision fence and the retry it
 * causes, jobs that must go alone, and the loop-less (synchronous) mode. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "cp_writer.h"
#include "error.h"
#include "store.h"
#include "poison.h"

#define MTP "MeshTrafficPermission"
#define MAX_JOBS 32

struct fx;

/* A job with one write, and what the writer told it. */
struct tjob {
    struct hy_cp_write_job job;
    struct fx *f;
    struct hy_store_write w;
    struct hy_resource *r;
    int prepared;
    int foreign_writes; /* prepare writes this many times behind the writer's back */
    bool refuse;        /* prepare fails the job */
    bool done;
    int rc;
    size_t failed;
};

struct fx {
    char dir[64];
    struct hy_store *s;
    uv_loop_t loop;
    struct hy_cp_writer wr;
    struct tjob jobs[MAX_JOBS];
    int order[MAX_JOBS]; /* job indices, in the order done was called */
    int ndone, nrefused;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/hy-test-writer-XXXXXX");
    struct hy_store_config cfg = {.path = f->dir};
    if (!mkdtemp(f->dir) || hy_store_open(&cfg, &f->s) < 0 || uv_loop_init(&f->loop) < 0) {
        free(f);
        return -1;
    }
    f->wr.loop = &f->loop;
    f->wr.store = f->s;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (int i = 0; i < MAX_JOBS; i++)
        hy_resource_free(f->jobs[i].r);
    hy_store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void foreign_write(struct fx *f, const char *name)
{
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name(MTP));
    assert_non_null(r);
    assert_int_equal(hy_resource_set_name(r, "m", name), 0);
    assert_int_equal(hy_store_put(f->s, r, HY_VERSION_ANY, NULL), 0);
    hy_resource_free(r);
}

static int prepare(struct hy_cp_write_job *j)
{
    struct tjob *t = j->data;
    struct fx *f = t->f;
    t->prepared++;
    if (t->refuse) {
        f->nrefused++;
        return HY_EINVAL; /* "answered" here: the writer forgets it */
    }
    if (t->foreign_writes > 0) {
        /* what a loop-thread writer (KDS, the DP server) may do between
         * the checks and the commit */
        t->foreign_writes--;
        char name[32];
        snprintf(name, sizeof(name), "foreign-%d-%d", (int)(t - f->jobs), t->prepared);
        foreign_write(f, name);
    }
    j->w = &t->w;
    j->n = 1;
    return 0;
}

static void done(struct hy_cp_write_job *j, int rc, size_t failed)
{
    struct tjob *t = j->data;
    struct fx *f = t->f;
    assert_false(t->done);
    t->done = true;
    t->rc = rc;
    t->failed = failed;
    f->order[f->ndone++] = (int)(t - f->jobs);
}

/* Job i: a PUT (or DELETE) of MTP m/name with expect as its CAS. */
static struct tjob *job(struct fx *f, int i, enum hy_store_op op, const char *name, uint64_t expect)
{
    struct tjob *t = &f->jobs[i];
    t->f = f;
    t->r = hy_resource_new(hy_rtype_by_name(MTP));
    assert_non_null(t->r);
    assert_int_equal(hy_resource_set_name(t->r, "m", name), 0);
    t->w = (struct hy_store_write){.op = op, .r = t->r, .expect_version = expect};
    t->job = (struct hy_cp_write_job){.prepare = prepare, .done = done, .data = t};
    return t;
}

static void submit(struct fx *f, struct tjob *t)
{
    hy_cp_writer_submit(&f->wr, &t->job);
}

/* The first job goes at once; those submitted while it is in flight go
 * together in the next transaction; every one is answered, in order, with
 * its own revision. */
static void test_group_commit_in_order(void **state)
{
    struct fx *f = *state;
    char name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        submit(f, job(f, i, HY_STORE_PUT, name, HY_VERSION_NEW));
    }
    assert_int_equal(f->ndone, 0); /* nothing answered before the loop runs */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->ndone, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(f->order[i], i);
        assert_int_equal(f->jobs[i].rc, 0);
        assert_int_equal(f->jobs[i].w.result, HY_STORE_CREATED);
        assert_int_equal(f->jobs[i].w.revision, (uint64_t)i + 1);
        assert_int_equal(f->jobs[i].prepared, 1);
    }
    assert_int_equal(f->wr.groups, 2); /* one of 1, one of 9 */
    assert_int_equal(f->wr.jobs, 10);
    assert_int_equal(hy_store_revision(f->s), 10);
}

/* In one group: a create of an existing key (conflict) and a delete of a
 * missing one (not found) are answered alone, the rest committed. */
static void test_failure_isolation(void **state)
{
    struct fx *f = *state;
    foreign_write(f, "x");                                       /* version 1 */
    submit(f, job(f, 0, HY_STORE_PUT, "first", HY_VERSION_NEW)); /* alone: in flight */
    submit(f, job(f, 1, HY_STORE_PUT, "a", HY_VERSION_NEW));
    submit(f, job(f, 2, HY_STORE_PUT, "x", HY_VERSION_NEW)); /* exists */
    submit(f, job(f, 3, HY_STORE_PUT, "b", HY_VERSION_ANY));
    submit(f, job(f, 4, HY_STORE_DELETE, "missing", HY_VERSION_ANY));
    submit(f, job(f, 5, HY_STORE_PUT, "c", HY_VERSION_NEW));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->ndone, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(f->order[i], i);
    assert_int_equal(f->jobs[0].rc, 0);
    assert_int_equal(f->jobs[1].rc, 0);
    assert_int_equal(f->jobs[2].rc, HY_ECONFLICT);
    assert_int_equal(f->jobs[2].failed, 0);
    assert_int_equal(f->jobs[3].rc, 0);
    assert_int_equal(f->jobs[4].rc, HY_ENOTFOUND);
    assert_int_equal(f->jobs[5].rc, 0);
    assert_int_equal(f->wr.groups, 2); /* {0} {1..5} */
    /* the survivors' revisions follow one another: one transaction */
    assert_int_equal(f->jobs[3].w.revision, f->jobs[1].w.revision + 1);
    assert_int_equal(f->jobs[5].w.revision, f->jobs[3].w.revision + 1);
    struct hy_resource *r = NULL;
    assert_int_equal(hy_store_get(f->s, MTP, "m", "b", &r), 0);
    hy_resource_free(r);
    assert_int_equal(hy_store_get(f->s, MTP, "m", "missing", &r), HY_ENOTFOUND);
    assert_int_equal(hy_store_revision(f->s), 5);
}

/* Two writes of one key never share a transaction (each answer shows what
 * its own write stored): the second waits, then fails its CAS against the
 * version the first made. */
static void test_same_key_not_grouped(void **state)
{
    struct fx *f = *state;
    foreign_write(f, "k");                                       /* version 1 */
    submit(f, job(f, 0, HY_STORE_PUT, "first", HY_VERSION_ANY)); /* in flight */
    struct tjob *a = job(f, 1, HY_STORE_PUT, "k", 1), *b = job(f, 2, HY_STORE_PUT, "k", 1);
    Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e)); /* a changes k: version 2 */
    assert_non_null(e);
    hypha__v1__meta__labels_entry__init(e);
    e->key = strdup("changed");
    e->value = strdup("yes");
    a->r->meta->labels = malloc(sizeof(*a->r->meta->labels));
    assert_non_null(a->r->meta->labels);
    a->r->meta->labels[a->r->meta->n_labels++] = e;
    submit(f, a);
    submit(f, b);
    submit(f, job(f, 3, HY_STORE_PUT, "after", HY_VERSION_NEW));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->jobs[1].rc, 0);
    assert_int_equal(f->jobs[1].w.version, 2);
    assert_int_equal(f->jobs[2].rc, HY_ECONFLICT);
    assert_int_equal(f->jobs[3].rc, 0);
    assert_int_equal(f->wr.groups, 3); /* {0} {1} {2,3} */
    assert_int_equal(f->jobs[2].prepared, 2);
}

/* A write lands between a job's checks and its commit: the fence catches
 * it, the job is checked again and committed. */
static void test_fence_retries(void **state)
{
    struct fx *f = *state;
    struct tjob *t = job(f, 0, HY_STORE_PUT, "fenced", HY_VERSION_NEW);
    t->foreign_writes = 1;
    submit(f, t);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(t->done);
    assert_int_equal(t->rc, 0);
    assert_int_equal(t->prepared, 2);
    assert_int_equal(t->w.revision, 2); /* after the foreign write */
}

/* Beaten every time: after a few tries it commits on the loop thread. */
static void test_fence_gives_up_to_loop(void **state)
{
    struct fx *f = *state;
    struct tjob *t = job(f, 0, HY_STORE_PUT, "busy", HY_VERSION_NEW);
    t->foreign_writes = 1000;
    submit(f, t);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(t->done);
    assert_int_equal(t->rc, 0);
    assert_int_equal(t->prepared, 5);
}

/* The store's fence itself. */
static void test_store_fence(void **state)
{
    struct fx *f = *state;
    struct tjob *t = job(f, 0, HY_STORE_PUT, "f", HY_VERSION_ANY);
    size_t failed = 0;
    foreign_write(f, "other");
    assert_int_equal(hy_store_apply_at(f->s, &t->w, 1, &failed, 0), HY_ECONFLICT);
    assert_int_equal(failed, 1);
    assert_int_equal(hy_store_revision(f->s), 1);
    assert_int_equal(hy_store_apply_at(f->s, &t->w, 1, &failed, 1), 0);
    assert_int_equal(hy_store_revision(f->s), 2);
}

/* A job that must go alone gets a transaction of its own; one refused by
 * its prepare is dropped without touching the others. */
static void test_alone_and_refused(void **state)
{
    struct fx *f = *state;
    char name[16];
    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof(name), "j%d", i);
        struct tjob *t = job(f, i, HY_STORE_PUT, name, HY_VERSION_NEW);
        t->job.alone = i == 3;
        t->refuse = i == 5;
        submit(f, t);
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->nrefused, 1);
    assert_int_equal(f->ndone, 6);
    int expect[] = {0, 1, 2, 3, 4, 6};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(f->order[i], expect[i]);
        assert_int_equal(f->jobs[expect[i]].rc, 0);
    }
    /* {0} {1,2} {3} {4,6} */
    assert_int_equal(f->wr.groups, 4);
    assert_true(f->jobs[3].w.revision == f->jobs[2].w.revision + 1);
}

/* A store filling up during a group: each job is answered on its own,
 * committed (and there) or refused as full (and absent), whichever write
 * or commit ran out of room. */
static void test_full_store(void **state)
{
    struct fx *f = *state;
    hy_store_close(f->s);
    struct hy_store_config cfg = {.path = f->dir, .map_size = 128 * 1024};
    assert_int_equal(hy_store_open(&cfg, &f->s), 0);
    f->wr.store = f->s;
    static char filler[1500];
    memset(filler, 'x', sizeof(filler) - 1);
    char name[16];
    for (int i = 0; i < MAX_JOBS; i++) {
        snprintf(name, sizeof(name), "big%d", i);
        struct tjob *t = job(f, i, HY_STORE_PUT, name, HY_VERSION_NEW);
        Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e));
        assert_non_null(e);
        hypha__v1__meta__labels_entry__init(e);
        e->key = strdup("filler");
        e->value = strdup(filler);
        t->r->meta->labels = malloc(sizeof(*t->r->meta->labels));
        assert_non_null(t->r->meta->labels);
        t->r->meta->labels[t->r->meta->n_labels++] = e;
        submit(f, t);
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->ndone, MAX_JOBS);
    int full = 0;
    for (int i = 0; i < MAX_JOBS; i++) {
        struct hy_resource *r = NULL;
        snprintf(name, sizeof(name), "big%d", i);
        int got = hy_store_get(f->s, MTP, "m", name, &r);
        hy_resource_free(r);
        if (f->jobs[i].rc == HY_EFULL) {
            full++;
            assert_int_equal(got, HY_ENOTFOUND);
        } else {
            assert_int_equal(f->jobs[i].rc, 0);
            assert_int_equal(got, 0);
        }
    }
    assert_true(full > 0 && full < MAX_JOBS);
}

/* Without a loop every job is committed within submit. */
static void test_no_loop(void **state)
{
    struct fx *f = *state;
    f->wr.loop = NULL;
    struct tjob *t = job(f, 0, HY_STORE_PUT, "sync", HY_VERSION_NEW);
    submit(f, t);
    assert_true(t->done);
    assert_int_equal(t->rc, 0);
    t = job(f, 1, HY_STORE_PUT, "sync", HY_VERSION_NEW);
    submit(f, t);
    assert_true(t->done);
    assert_int_equal(t->rc, HY_ECONFLICT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_commit_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_key_not_grouped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_gives_up_to_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alone_and_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_loop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
