/* The resource API both control planes serve (Kuma's paths): reads, writes
 * with compare-and-swap, atomic multi-document apply, lists with paging
 * and label filters, in JSON or YAML. The binary decides what may be
 * written where and can add writes to a batch (the global CP adds a Mesh's
 * root CA in the same transaction). */
#ifndef HY_CP_API_H
#define HY_CP_API_H

#include <stdbool.h>

#include "cp_writer.h"
#include "http_server.h"
#include "store.h"

struct hy_cp_api_batch {
    struct hy_store_write *w;   /* owned array */
    struct hy_resource **owned; /* resources the batch owns (freed with it) */
    size_t n, cap, nowned, capowned;
};

/* Appends a write; the batch takes ownership of r. 0 or HY_ENOMEM. */
int hy_cp_api_batch_add(struct hy_cp_api_batch *b, enum hy_store_op op, struct hy_resource *r,
                        uint64_t expect_version);

struct hy_cp_api {
    struct hy_store *store;
    const char *mode;        /* "global" or "zone" */
    const char *instance_id; /* shown at GET / */
    /* NULL when a user may write type t here; otherwise the reason why not,
     * e.g. "Dataplane resources come from zones: ..." (static or in buf). */
    const char *(*write_refusal)(void *ud, const struct hy_rtype *t, char *buf, size_t size);
    /* Called before a batch of user writes commits, to check them and add
     * writes to it. Return 0, or a negative code after adding causes. May
     * be NULL. */
    int (*before_commit)(void *ud, struct hy_cp_api_batch *b, struct hy_diag *diag);
    void *ud;
    /* private: commits writes off the loop thread (zeroed by the caller
     * with the rest; set up on the first write) */
    struct hy_cp_writer writer;
};

/* Serves req if its path belongs to the resource API ("/", "/ready",
 * "/_resources", "/_apply", "/meshes...", "/{plural}..."); returns false
 * (leaving resp untouched) when it does not, so the caller can route its
 * own paths. Reads are answered within the call. A write (PUT, DELETE,
 * POST /_apply) is checked within it and, when req->loop is set, answered
 * later (hy_http_later): its durable commit runs on a pool thread, with
 * other requests' writes when they can share a transaction, while the
 * loop serves reads. before_commit runs on the loop thread, right before
 * the commit, and again if another write came first. */
bool hy_cp_api_handle(struct hy_cp_api *api, const struct hy_http_req *req,
                      struct hy_http_resp *resp);

#endif
