/* The KDS sync engine, apart from any socket: what one side sends (the
 * changes to its store since the revision the peer acknowledged, or a
 * snapshot when its change log no longer reaches back) and how the other
 * side applies them (in one store transaction, so a resource never
 * disappears and comes back). Both control planes use it, in both
 * directions. */
#ifndef HY_KDS_SYNC_H
#define HY_KDS_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "kds.pb-c.h"
#include "store.h"

/* Which resources belong to a stream: by type and origin (the resource's
 * origin string, "" when it has none). */
struct hy_kds_scope {
    bool (*match)(void *ud, const struct hy_rtype *t, const char *origin);
    void *ud;
};

#define HY_KDS_MAX_CHANGES 1000 /* changes read per message; more follow in the next */
/* A delta stops once its upserts pack to this many bytes (the rest follow
 * in the next), well under the 4 MiB --kds-max-message default. Snapshots
 * are not cut: they go whole. */
#define HY_KDS_MAX_BYTES (1u << 20)

/* Builds the Changes that bring a peer which applied everything up to
 * `since` up to date, for resources in scope: at most `max` change records
 * (0 = HY_KDS_MAX_CHANGES) read from the log, each key sent once in its
 * latest state, cut short once the upserts pack to HY_KDS_MAX_BYTES (a
 * single larger resource still goes alone); out->to is the last revision
 * covered, so the caller sends again from there until out->to ==
 * hy_store_revision(). When the log no
 * longer reaches back to `since` (or `since` is ahead of this store, which
 * was then rebuilt), out is a snapshot of everything in scope with to = the
 * current revision. On success *out is owned by the caller
 * (hypha__v1__changes__free_unpacked); otherwise a negative code. */
int hy_kds_collect(struct hy_store *s, uint64_t since, size_t max, const struct hy_kds_scope *scope,
                   Hypha__V1__Changes **out);

struct hy_kds_apply_opts {
    /* Every incoming upsert and delete must be in this scope (its origin as
     * sent); anything else is refused: a zone may not send a Mesh. For
     * deletes only the type is checked. */
    const struct hy_kds_scope *accept;
    /* Local resources a snapshot replaces: those in this scope and not in
     * the snapshot are deleted in the same transaction. */
    const struct hy_kds_scope *replace;
    /* Rewrites an incoming resource before it is stored (origin, name,
     * labels) and an incoming delete key the same way (name written into
     * buf, at most size bytes). Either may be NULL. Return 0 or a negative
     * code (HY_ENOMEM fails the message; others refuse that resource). */
    int (*transform)(void *ud, struct hy_resource *r);
    int (*transform_key)(void *ud, const Hypha__V1__ResourceKey *k, char *buf, size_t size);
    /* Judges one write that passed validation and transform, against what
     * the store holds under its key (existing; for a delete only when
     * something is there): true takes it, false refuses it with why filled
     * (at most size bytes). May be NULL. Called in message order, so it may
     * keep counts (quotas). */
    bool (*admit)(void *ud, enum hy_store_op op, const struct hy_resource *r,
                  const struct hy_resource *existing, char *why, size_t size);
    void *ud;
    /* Written in the same transaction when not NULL (the receiver's record
     * of how far it got, so that record and data can never disagree).
     * Borrowed. */
    const struct hy_resource *also;
};

/* A resource that was not stored, named as the sender named it. */
struct hy_kds_refusal {
    char *type, *mesh, *name, *reason; /* never NULL ("" when the sender sent none) */
};

struct hy_kds_applied {
    size_t upserts, deletes;        /* writes that changed something */
    uint64_t revision;              /* local store revision after the commit */
    struct hy_kds_refusal *refused; /* owned: hy_kds_applied_fini */
    size_t n_refused;
};

/* Applies c in one transaction: upserts keep the version and times the
 * sender's store gave them (HY_STORE_REPLICA), deletes of missing keys are
 * no-ops, and a snapshot also deletes what it replaces. Each resource is
 * judged alone before anything reads it (its type known and in scope,
 * hy_resource_validate, transform, a valid stored name, admit): one that
 * fails is left out and listed in out->refused, and the rest is applied.
 * Returns 0 (out filled; free with hy_kds_applied_fini), or a negative code
 * when the message as a whole could not be stored: then nothing is written
 * and err (if not NULL) says why, for a Nack. */
int hy_kds_apply(struct hy_store *s, const Hypha__V1__Changes *c,
                 const struct hy_kds_apply_opts *opts, struct hy_kds_applied *out, char *err,
                 size_t errsize);
/* Frees what hy_kds_apply put in a; safe on a zeroed struct. */
void hy_kds_applied_fini(struct hy_kds_applied *a);

#endif
