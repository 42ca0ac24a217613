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
/* A message stops before its upserts and deletes pack to more than this
 * many bytes (the rest follow in the next), well under the 4 MiB
 * --kds-max-message default; a single larger resource still goes alone. */
#define HY_KDS_MAX_BYTES (1u << 20)

/* What one message may carry. */
struct hy_kds_budget {
    size_t max_changes; /* change records read (a delta), upserts (a snapshot part); 0 = default */
    size_t max_bytes;   /* packed upserts and deletes; 0 = HY_KDS_MAX_BYTES */
};

/* The byte budget towards a peer: HY_KDS_MAX_BYTES, or half the smaller
 * of this side's and the peer's --kds-max-message (0 = unknown) when that
 * is less, so that a message with its framing stays under both. */
size_t hy_kds_budget_bytes(uint64_t own_max, uint64_t peer_max);

/* The sending side of a snapshot in parts: where the next part starts.
 * Zeroed = none under way; hy_kds_snap_tx_reset drops one (the next
 * collect starts again from part 0). */
struct hy_kds_snap_tx {
    bool active;   /* parts were sent and more remain */
    uint64_t to;   /* the revision the snapshot stands for */
    uint32_t part; /* index of the next part */
    size_t type;   /* hy_rtype_all index the next part starts in */
    char *after;   /* store key ("type/mesh/name") it starts after; NULL: the type's first */
};
void hy_kds_snap_tx_reset(struct hy_kds_snap_tx *t);

/* Builds the Changes that bring a peer which applied everything up to
 * `since` up to date, for resources in scope: at most b->max_changes
 * change records read from the log, each key sent once in its latest
 * state, cut short before the message would pass b->max_bytes (a single
 * larger resource still goes alone); out->to is the last revision
 * covered, so the caller sends again from there until out->to ==
 * hy_store_revision(). When the log no longer reaches back to `since` (or
 * `since` is ahead of this store, which was then rebuilt), out is a
 * snapshot of everything in scope with to = the current revision: whole
 * when parts is NULL (a peer without HY_KDS_FEATURE_SNAPSHOT_PARTS), else
 * its first part under the same budget, with parts filled so that the
 * next calls (whatever `since`) return the following parts, `more` set on
 * all but the last. Every resource present throughout the parts is in one
 * of them; one written meanwhile has a revision past `to` and goes in the
 * deltas after it. b may be NULL (defaults). On success *out is owned by
 * the caller (hypha__v1__changes__free_unpacked); otherwise a negative
 * code (parts then reset). */
int hy_kds_collect_parts(struct hy_store *s, uint64_t since, const struct hy_kds_scope *scope,
                         const struct hy_kds_budget *b, struct hy_kds_snap_tx *parts,
                         Hypha__V1__Changes **out);
/* hy_kds_collect_parts with at most `max` change records (0 = default), the
 * default byte budget, and a snapshot whole. */
int hy_kds_collect(struct hy_store *s, uint64_t since, size_t max, const struct hy_kds_scope *scope,
                   Hypha__V1__Changes **out);

/* The receiving side of a snapshot in parts: the keys its parts named so
 * far (sorted, unique: those stored or already held here), so that the
 * last part removes only what the whole snapshot lacks. Zeroed = none
 * under way. */
struct hy_kds_snap_rx {
    bool active;
    uint64_t to;   /* the snapshot's revision */
    uint32_t next; /* the part expected next */
    char **keys;
    size_t n, cap;
};
/* Forgets a snapshot under way (its parts stay applied as upserts;
 * nothing is deleted for it). Safe on a zeroed struct. */
void hy_kds_snap_rx_reset(struct hy_kds_snap_rx *rx);

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
    /* Where a snapshot in parts is gathered (kept by the caller from one
     * message to the next, reset when the connection goes). NULL: a
     * Changes that is a snapshot part (more set, or part > 0) fails. */
    struct hy_kds_snap_rx *parts;
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
 * no-ops, and a snapshot also deletes what it replaces; a snapshot in
 * parts only with its last part, for what none of its parts named (a part
 * out of order fails, and forgets the parts before it). Each resource is
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
