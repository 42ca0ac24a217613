/* The API's writer (cp_writer.h): jobs wait on the loop thread, are
 * prepared (checked against the store) there, and go in groups to one
 * thread-pool thread that commits each group in one fenced transaction. */
#include <stdlib.h>
#include <string.h>

#include "cp_writer.h"
#include "error.h"
#include "log.h"
#include "poison.h"

#define GROUP_WRITES 1024 /* writes in one transaction at most */
#define JOB_SHARES 64     /* a job with more writes commits alone */
/* A job prepared this many times and every time beaten by another writer
 * commits on the loop thread, where nothing can come between. */
#define MAX_TRIES 4

enum job_state {
    JOB_PENDING, /* in the attempt */
    JOB_OUT,     /* failed on its own writes: rc, failed */
    JOB_DONE,    /* committed */
    JOB_AGAIN,   /* another write came first: prepare it again */
    JOB_ALONE,   /* the commit itself failed: try it in a transaction of its own */
};

static void push_front(struct hy_cp_writer *wr, struct hy_cp_write_job *first,
                       struct hy_cp_write_job *last)
{
    last->next = wr->head;
    if (!wr->head)
        wr->tail = last;
    wr->head = first;
}

static struct hy_cp_write_job *pop(struct hy_cp_writer *wr)
{
    struct hy_cp_write_job *j = wr->head;
    wr->head = j->next;
    if (!wr->head)
        wr->tail = NULL;
    j->next = NULL;
    return j;
}

/* The writes of the jobs still in the attempt, one after the other. */
static struct hy_store_write *gather(struct hy_cp_writer *wr, size_t *total)
{
    size_t n = 0;
    for (size_t i = 0; i < wr->ngroup; i++)
        if (wr->group[i]->state == JOB_PENDING)
            n += wr->group[i]->n;
    struct hy_store_write *all = malloc((n ? n : 1) * sizeof(*all));
    if (!all)
        return NULL;
    n = 0;
    for (size_t i = 0; i < wr->ngroup; i++) {
        struct hy_cp_write_job *j = wr->group[i];
        if (j->state != JOB_PENDING)
            continue;
        memcpy(all + n, j->w, j->n * sizeof(*all));
        n += j->n;
    }
    *total = n;
    return all;
}

static void mark_pending(struct hy_cp_writer *wr, enum job_state to)
{
    for (size_t i = 0; i < wr->ngroup; i++)
        if (wr->group[i]->state == JOB_PENDING)
            wr->group[i]->state = to;
}

/* After a failed attempt: every job is tried again, those taken out too
 * (what they failed on was measured against writes that did not stay). */
static void mark_all(struct hy_cp_writer *wr, enum job_state to)
{
    for (size_t i = 0; i < wr->ngroup; i++)
        wr->group[i]->state = to;
}

/* A group of one is applied in place. */
static void commit_one(struct hy_cp_writer *wr, struct hy_cp_write_job *j)
{
    size_t failed = j->n;
    int rc = hy_store_apply_at(wr->store, j->w, j->n, &failed, wr->fence);
    if (rc == HY_ECONFLICT && failed == j->n) {
        j->state = JOB_AGAIN;
        return;
    }
    j->state = rc < 0 ? JOB_OUT : JOB_DONE;
    j->rc = rc;
    j->failed = failed;
}

/* Commits the group: on the pool's thread, or on the loop's. Touches only
 * the group's jobs and the store. A job failing on its own writes is taken
 * out and the rest tried again in a new transaction. */
static void commit_group(struct hy_cp_writer *wr)
{
    for (size_t i = 0; i < wr->ngroup; i++)
        wr->group[i]->state = JOB_PENDING;
    if (wr->ngroup == 1) {
        commit_one(wr, wr->group[0]);
        return;
    }
    bool taken_out = false;
    for (;;) {
        size_t total = 0, failed = 0, pending = 0;
        for (size_t i = 0; i < wr->ngroup; i++)
            pending += wr->group[i]->state == JOB_PENDING;
        if (!pending)
            return;
        struct hy_store_write *all = gather(wr, &total);
        if (!all) {
            mark_all(wr, JOB_ALONE);
            return;
        }
        failed = total;
        int rc = hy_store_apply_at(wr->store, all, total, &failed, wr->fence);
        if (rc == 0) {
            size_t off = 0;
            for (size_t i = 0; i < wr->ngroup; i++) {
                struct hy_cp_write_job *j = wr->group[i];
                if (j->state != JOB_PENDING)
                    continue;
                memcpy(j->w, all + off, j->n * sizeof(*all));
                off += j->n;
                j->state = JOB_DONE;
                j->rc = 0;
            }
            free(all);
            return;
        }
        free(all);
        if (rc == HY_ECONFLICT && failed == total) {
            mark_all(wr, JOB_AGAIN);
            return;
        }
        if (failed >= total) { /* the commit itself: whose fault is not known */
            if (pending == 1 && !taken_out) {
                mark_pending(wr, JOB_OUT);
                for (size_t i = 0; i < wr->ngroup; i++) {
                    wr->group[i]->rc = rc;
                    wr->group[i]->failed = wr->group[i]->n;
                }
                return;
            }
            /* a job taken out was measured with writes that did not stay */
            mark_all(wr, JOB_ALONE);
            return;
        }
        taken_out = true;
        size_t off = 0;
        for (size_t i = 0; i < wr->ngroup; i++) {
            struct hy_cp_write_job *j = wr->group[i];
            if (j->state != JOB_PENDING)
                continue;
            if (failed < off + j->n) {
                j->state = JOB_OUT;
                j->rc = rc;
                j->failed = failed - off;
                break;
            }
            off += j->n;
        }
    }
}

static void on_work(uv_work_t *req)
{
    commit_group(req->data);
}

static void kick(struct hy_cp_writer *wr);

/* Loop thread: answers the group's jobs, puts back those to try again (in
 * their order, before any that came since) and starts the next group. */
static void finish_group(struct hy_cp_writer *wr)
{
    struct hy_cp_write_job *first = NULL, *last = NULL;
    size_t committed = 0;
    for (size_t i = 0; i < wr->ngroup; i++) {
        struct hy_cp_write_job *j = wr->group[i];
        if (j->state == JOB_AGAIN || j->state == JOB_ALONE) {
            j->tries++;
            if (j->state == JOB_ALONE)
                j->alone = true;
            j->rc = 0;
            j->next = NULL;
            if (last)
                last->next = j;
            else
                first = j;
            last = j;
            continue;
        }
        committed += j->state == JOB_DONE;
    }
    wr->groups += committed > 0;
    wr->jobs += committed;
    if (committed > 1)
        hy_log(HY_LOG_DEBUG, "api", "%zu requests' writes committed in one transaction", committed);
    size_t n = wr->ngroup;
    wr->ngroup = 0;
    wr->busy = false;
    if (first)
        push_front(wr, first, last);
    for (size_t i = 0; i < n; i++) {
        struct hy_cp_write_job *j = wr->group[i];
        if (j->state == JOB_DONE || j->state == JOB_OUT)
            j->done(j, j->rc, j->failed);
    }
}

static void on_after_work(uv_work_t *req, int status)
{
    struct hy_cp_writer *wr = req->data;
    (void)status; /* never cancelled */
    finish_group(wr);
    kick(wr);
}

static bool same_key(const struct hy_store_write *a, const struct hy_store_write *b)
{
    const struct hy_resource *x = a->r, *y = b->r;
    if (x->type != y->type || strcmp(x->meta->name, y->meta->name) != 0)
        return false;
    bool global = x->type->scope == HY_SCOPE_GLOBAL;
    const char *m = global || !x->meta->mesh ? "" : x->meta->mesh;
    const char *n = global || !y->meta->mesh ? "" : y->meta->mesh;
    return !strcmp(m, n);
}

/* Whether j writes a key a job of the group writes: then each answer
 * could not show what its own write stored, so j waits for the next. */
static bool collides(const struct hy_cp_writer *wr, const struct hy_cp_write_job *j)
{
    for (size_t g = 0; g < wr->ngroup; g++)
        for (size_t a = 0; a < wr->group[g]->n; a++)
            for (size_t b = 0; b < j->n; b++)
                if (same_key(&wr->group[g]->w[a], &j->w[b]))
                    return true;
    return false;
}

/* Loop thread: when no group is in flight, prepares the next one from the
 * head of the queue and sends it to the pool (or commits it here). */
static void kick(struct hy_cp_writer *wr)
{
    while (!wr->busy && wr->head) {
        /* nothing is written between here and the commit but by the
         * loop thread, which the fence catches */
        wr->fence = hy_store_revision(wr->store);
        size_t total = 0;
        bool here = !wr->loop, closed = false;
        while (wr->head && !closed) {
            struct hy_cp_write_job *j = wr->head;
            if (wr->ngroup && (j->alone || j->n > JOB_SHARES || wr->ngroup == HY_CP_WRITER_GROUP ||
                               total + j->n > GROUP_WRITES))
                break;
            pop(wr);
            if (j->prepare && j->prepare(j) < 0)
                continue;                                      /* answered by prepare */
            if (wr->ngroup && (j->alone || collides(wr, j))) { /* next time */
                push_front(wr, j, j);
                break;
            }
            wr->group[wr->ngroup++] = j;
            total += j->n;
            here |= j->tries >= MAX_TRIES;
            closed = j->alone || j->n > JOB_SHARES;
        }
        if (!wr->ngroup)
            continue;
        wr->busy = true;
        wr->work.data = wr;
        if (here || uv_queue_work(wr->loop, &wr->work, on_work, on_after_work) < 0) {
            /* on the loop thread nothing comes between check and commit */
            wr->fence = HY_VERSION_ANY;
            commit_group(wr);
            finish_group(wr);
        }
    }
}

void hy_cp_writer_submit(struct hy_cp_writer *wr, struct hy_cp_write_job *j)
{
    j->next = NULL;
    j->tries = 0;
    j->rc = 0;
    j->failed = 0;
    if (wr->tail)
        wr->tail->next = j;
    else
        wr->head = j;
    wr->tail = j;
    kick(wr);
}
