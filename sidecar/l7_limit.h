/* MeshRateLimit's local limits: token buckets as Envoy's local rate limit
 * (max_tokens = tokens_per_fill = the requests or connections allowed per
 * interval, fill_interval = the interval), one per (inbound port, entry of
 * its DpCallerRateLimit list) and kind (HTTP requests, TCP connections),
 * shared by every worker thread of the sidecar. A new config builds a new
 * set that keeps the buckets (and their tokens) of entries that did not
 * change, so a config push does not refill every bucket. */
#ifndef HY_L7_LIMIT_H
#define HY_L7_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"
#include "permit.h"

struct hy_l7_limits; /* the set for one config: immutable, its buckets atomic */
struct hy_l7_bucket;

/* The set for the inbounds v[0..n) of a config, reusing prev's bucket for
 * (port, entry index) whose entry did not change at all; prev may be NULL and stays valid (the two
 * share those buckets; each is freed with the last set holding it). now_ms: a monotonic clock, at
 * which new buckets start full. NULL when out of memory. */
struct hy_l7_limits *hy_l7_limits_new(Hypha__V1__DpInbound *const *v, size_t n,
                                      const struct hy_l7_limits *prev, uint64_t now_ms);
void hy_l7_limits_free(struct hy_l7_limits *l);

/* The DpCallerRateLimit entry of inbound in that applies to caller peer:
 * the last one whose tags it carries (none: any caller), as for
 * MeshTrafficPermission (l7.h hy_l7_caller_match). Its index in *index,
 * or -1 and NULL when none does. */
const Hypha__V1__DpCallerRateLimit *hy_l7_limit_pick(const Hypha__V1__DpInbound *in,
                                                     const struct hy_permit_peer *peer, int *index);

/* Takes one token for an HTTP request (tcp false) or a TCP connection (tcp
 * true) from the bucket of (port, entry index) at now_ms. True: go on;
 * false: limited (HTTP: answer the entry's on_limit_status, unset 429,
 * with its on_limit_headers; TCP: close the connection). True when there
 * is no such bucket (the entry sets no limit of that kind). Lock-free,
 * any thread. */
bool hy_l7_limit_take(const struct hy_l7_limits *l, uint32_t port, int index, bool tcp,
                      uint64_t now_ms);

/* For tests and /stats: the bucket of (port, index, kind), or NULL. */
const struct hy_l7_bucket *hy_l7_limit_bucket(const struct hy_l7_limits *l, uint32_t port,
                                              int index, bool tcp);

#endif
