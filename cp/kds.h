/* What both ends of KDS share beside the sync engine: the subprotocol, the
 * scopes of each direction, and the ZoneInsight bookkeeping. */
#ifndef HY_KDS_H
#define HY_KDS_H

#include <stdbool.h>
#include <stdint.h>

#include "kds_sync.h"
#include "metrics.h"
#include "wire.h"
#include "zone.pb-c.h"

#define HY_KDS_INSIGHT_SUBSCRIPTIONS 5 /* connections remembered per zone */

/* global -> zone: the global CP's own meshes, policies and trust roots,
 * and the ZoneIngresses of zones other than `zone`. */
bool hy_kds_to_zone(const struct hy_rtype *t, const char *origin, const char *zone);
/* zone -> global: the zone-origin resources written in `zone`. */
bool hy_kds_from_zone(const struct hy_rtype *t, const char *origin, const char *zone);

/* One direction's sending state: what the peer has acked, what is in
 * flight. Both ends keep one (one Changes in flight at a time; a snapshot
 * part is acked like a delta, and the next part follows its Ack). */
struct hy_kds_outbox {
    bool in_flight;
    bool sent_more;   /* the message in flight is a snapshot part, more to come */
    uint64_t acked;   /* store revision the peer has applied */
    uint64_t sent_to; /* revision covered by the message in flight */
    uint64_t nacked;  /* store revision when the peer last refused: wait for a newer one */
    uint64_t sent;    /* resources sent, for insights */
    bool parts;       /* the peer takes snapshots in parts (HY_KDS_FEATURE_SNAPSHOT_PARTS) */
    struct hy_kds_budget budget;
    struct hy_kds_snap_tx snap; /* a snapshot being sent in parts */
};

/* Starts o afresh (o zeroed, or after hy_kds_outbox_fini) for a peer that
 * has applied up to `acked`, takes parts or not, and gets messages of at
 * most max_bytes (hy_kds_budget_bytes). Cannot fail. */
void hy_kds_outbox_init(struct hy_kds_outbox *o, uint64_t acked, bool parts, size_t max_bytes);
/* Drops a snapshot under way (the next starts from part 0); o can be
 * initialised again. Safe on a zeroed outbox. */
void hy_kds_outbox_fini(struct hy_kds_outbox *o);
/* Whether the features a peer listed (Hello/Welcome.features) include f. */
bool hy_kds_has_feature(char *const *features, size_t n, const char *f);

/* Sends the next Changes of scope when none is in flight, skipping over
 * stretches of the log with nothing in scope without a message. send
 * returns 0 when the message was queued. Returns 0 or a negative code
 * (logged by the caller). */
int hy_kds_outbox_next(struct hy_kds_outbox *o, struct hy_store *s,
                       const struct hy_kds_scope *scope,
                       int (*send)(void *ud, const Hypha__V1__KdsMessage *m), void *ud);
/* The peer acked `to`: true when that was the message in flight (its
 * revision then counts as applied, unless it was a snapshot part with more
 * to come). */
bool hy_kds_outbox_ack(struct hy_kds_outbox *o, uint64_t to);
/* The peer refused the message in flight (a snapshot under way starts
 * again from part 0 with the next revision). */
void hy_kds_outbox_nack(struct hy_kds_outbox *o, struct hy_store *s);

/* Fair fan-out of one store's changes to many peers (the global CP's
 * zones). Each change starts a round: the peers with nothing in flight
 * join one FIFO, each at most once (one already waiting keeps its place),
 * and the server serves them for a bounded time per loop turn, so the
 * first ones' messages are on the wire before the next ones are
 * collected. Each round enqueues them
 * starting one place further along the caller's list, so over n rounds
 * every peer is last once: the first-connected zone is not always served
 * last. A peer with a message in flight takes no place (its Ack sends its
 * next), so a slow zone holds nobody back. Loop thread only. */
struct hy_kds_fanout_item {
    struct hy_kds_fanout_item *next;
    bool queued;
    uint64_t since_ns; /* when it joined the queue */
};
struct hy_kds_fanout {
    struct hy_kds_fanout_item *head, *tail;
    size_t n;        /* waiting */
    uint64_t rounds; /* rounds started: where the next one starts */
};
/* Starts a round: v[0..n) are the peers that may be sent to now, in a
 * stable order (connection order); those not queued yet join the queue,
 * from v[rounds % n] on and wrapping around, stamped now_ns. Cannot fail. */
void hy_kds_fanout_round(struct hy_kds_fanout *f, struct hy_kds_fanout_item *const *v, size_t n,
                         uint64_t now_ns);
/* The peer to serve next (unqueued), or NULL when none waits. */
struct hy_kds_fanout_item *hy_kds_fanout_pop(struct hy_kds_fanout *f);
/* Takes it out of the queue if it waits there (a peer that went away). */
void hy_kds_fanout_remove(struct hy_kds_fanout *f, struct hy_kds_fanout_item *it);

/* KDS metrics, the same on both ends. */
struct hy_kds_metrics {
    struct hy_metric *messages;  /* hypha_kds_messages_total{direction,type} */
    struct hy_metric *bytes;     /* hypha_kds_bytes_total{direction} */
    struct hy_metric *resources; /* hypha_kds_resources_total{direction} */
    struct hy_metric *skipped;   /* hypha_kds_resources_skipped_total{by}: listed in an Ack */
    struct hy_series *unknown;   /* hypha_kds_unknown_types_total: skipped, type unknown here */
};
/* Registers them in m. 0 or HY_ENOMEM. */
int hy_kds_metrics_init(struct hy_kds_metrics *km, struct hy_metrics *m);
/* Counts one message sent or received ("sent"/"received") of len bytes.
 * An Ack's refused resources count as skipped: by="local" when this side
 * sends the Ack (it left them out), by="peer" when it receives one; those
 * this side left out because it does not know their type (a newer peer's)
 * also count in hypha_kds_unknown_types_total. Cannot fail. */
void hy_kds_count(const struct hy_kds_metrics *km, const char *direction,
                  const Hypha__V1__KdsMessage *msg, size_t len);

/* Reads the ZoneInsight called name (or makes a new one) and lets edit
 * change it; *out is the result, not written (caller frees). 0 or a
 * negative code. */
int hy_kds_insight_build(struct hy_store *s, const char *name,
                         void (*edit)(Hypha__V1__ZoneInsight *zi, void *ud), void *ud,
                         struct hy_resource **out);
/* Reads the ZoneInsight called name (or a new one), lets edit change it,
 * and writes it back. Returns 0 or a negative code. */
int hy_kds_insight_edit(struct hy_store *s, const char *name,
                        void (*edit)(Hypha__V1__ZoneInsight *zi, void *ud), void *ud);
/* The newest subscription of zi, added (with id, connect time now) when
 * `add` is set or there is none; the oldest are dropped past
 * HY_KDS_INSIGHT_SUBSCRIPTIONS. NULL on ENOMEM. */
Hypha__V1__ZoneInsight__Subscription *hy_kds_insight_current(Hypha__V1__ZoneInsight *zi, bool add);
/* Logs what a peer's Ack says it refused (the first few, then a count),
 * `peer` naming who refused ("zone east", "the global control plane"), and
 * writes a summary into last_error when there was any. Peer strings are
 * bounded. Cannot fail. */
void hy_kds_log_refused(const char *peer, const Hypha__V1__Ack *a, char *last_error, size_t size);

/* The Ack for a Changes up to `to`, listing what `done` refused: the
 * Ack's vectors are allocated here and point into done (which must outlive
 * it); free them with hy_kds_ack_fini. 0 or HY_ENOMEM (ack then empty). */
int hy_kds_ack_build(Hypha__V1__Ack *ack, uint64_t to, const struct hy_kds_applied *done);
void hy_kds_ack_fini(Hypha__V1__Ack *ack);

/* For a log line on applying c: "", " from a snapshot", or " from
 * snapshot part N (more to come)" / "(the last)", written in buf. */
const char *hy_kds_changes_what(const Hypha__V1__Changes *c, char *buf, size_t size);

/* Replaces *dst with a copy of src (NULL clears). */
void hy_kds_set_str(char **dst, const char *src);

#endif
