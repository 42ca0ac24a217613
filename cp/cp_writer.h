/* The API's writer: store writes committed off the loop thread (libuv's
 * thread pool, one group at a time), several requests' writes in one
 * durable transaction (group commit), each request answered on its own.
 * Reads on the loop go on meanwhile. */
#ifndef HY_CP_WRITER_H
#define HY_CP_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

struct hy_cp_write_job;

/* Loop thread, right before the job's writes go to the store (again, after
 * another write came between: a job may be prepared more than once). It
 * checks what depends on the store and sets j->w and j->n. Returns 0, or a
 * negative code after finishing the job itself (the writer forgets it). */
typedef int (*hy_cp_write_prepare_fn)(struct hy_cp_write_job *j);
/* Loop thread, once: rc is hy_store_apply's for the job's writes alone,
 * failed the index (in j->w) it names; on success j->w holds the results. */
typedef void (*hy_cp_write_done_fn)(struct hy_cp_write_job *j, int rc, size_t failed);

/* One request's writes: all or nothing, as one hy_store_apply. */
struct hy_cp_write_job {
    struct hy_store_write *w; /* set by prepare; the writer's until done */
    size_t n;
    /* Committed in a transaction of its own, never grouped: for writes
     * that what other jobs check depends on (a Mesh, a Zone, CAs). */
    bool alone;
    hy_cp_write_prepare_fn prepare; /* may be NULL */
    hy_cp_write_done_fn done;
    void *data; /* free for the caller */
    /* private: */
    struct hy_cp_write_job *next;
    int rc;
    size_t failed;
    unsigned tries;
    int state;
};

#define HY_CP_WRITER_GROUP 64 /* requests in one transaction at most */

/* Embed it zeroed (that is its idle state: no init, no fini). It must
 * stay in place while jobs are in flight; the loop's run ends only once
 * they are all done (a uv_work_t keeps it alive). */
struct hy_cp_writer {
    uv_loop_t *loop;        /* NULL: every write is committed on the caller's thread */
    struct hy_store *store; /* set both before the first submit */
    /* private: */
    uv_work_t work;
    struct hy_cp_write_job *head, *tail;               /* waiting, first come first */
    struct hy_cp_write_job *group[HY_CP_WRITER_GROUP]; /* in flight */
    size_t ngroup;
    uint64_t fence; /* the revision the group was checked at */
    bool busy;
    uint64_t groups, jobs; /* committed so far (for tests and logs) */
};

/* Queues j (loop thread). Its prepare runs once no group is in flight and
 * the jobs before it have been committed or failed, so that it checks
 * what they wrote; then its writes go, with others' when neither is alone,
 * in one transaction that the store applies only if nothing else was
 * written since (hy_store_apply_at): otherwise every job of the group is
 * prepared and tried again. A job whose writes fail (a version conflict,
 * a missing key) is taken out and the others committed without it. done
 * is called for every job, in the order submitted for those of one group,
 * and may be called before this returns (no loop, or the store was busy
 * with others' writes every time it was tried). Cannot fail. */
void hy_cp_writer_submit(struct hy_cp_writer *wr, struct hy_cp_write_job *j);

#endif
