/* MeshLoadBalancingStrategy RingHash and Maglev: the hash of one request
 * by the outbound's hashPolicies (as Envoy's route hash policy), and the
 * endpoint a hash falls on, in a ring (Karger et al., as Envoy's ring
 * hash) or a Maglev table (Eisenbud et al., as Envoy's Maglev) built from
 * the endpoints' "address:port" names, weight 1 each. A table is built
 * once per config snapshot and immutable after: any thread may look up. */
#ifndef HY_L7_HASH_H
#define HY_L7_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"
#include "http_head.h"

#define HY_L7_RING_MIN 1024     /* minRingSize default (Kuma, Envoy) */
#define HY_L7_RING_MAX 8388608  /* maxRingSize default */
#define HY_L7_MAGLEV_SIZE 65537 /* tableSize default (a prime) */

struct hy_l7_hash_table;

/* 64 bits of hash of s[0..n): FNV-1a (common/dp_parts.h) mixed with
 * splitmix64's finalizer so every bit depends on every byte. */
uint64_t hy_l7_hash_bytes(const void *s, size_t n);

/* The hash of request h (from a caller at source_ip, "" or NULL if
 * unknown) by policies p[0..n) in order, as Envoy: each policy that
 * yields a value (Header: the header's fields joined by ","; Cookie: that
 * cookie's value, never set by the sidecar; SourceIP or Connection: the
 * caller's address; QueryParameter: the first value of that parameter,
 * not decoded) is folded in (the hash so far rotated left by one, xor
 * the new one); a terminal policy that leaves a hash ends the walk. False
 * when no policy yields a value: the caller picks at random, as Envoy.
 * Out of memory joining header fields: that policy yields nothing. */
bool hy_l7_hash_request(Hypha__V1__DpHashPolicy *const *p, size_t n, const struct hy_http_head *h,
                        const char *source_ip, uint64_t *hash);

/* A ring (maglev false; ring_min, ring_max: minRingSize, maxRingSize, 0
 * for the defaults; each endpoint gets ring_min / n points rounded up to
 * a power of two, so the ring holds ring_min to 2 x ring_min points) or a
 * Maglev table (maglev true; table_size: 0 for HY_L7_MAGLEV_SIZE, else a
 * prime) over the endpoints named keys[0..n) ("address:port"). NULL when
 * out of memory, n is 0, ring_max is under n, or a Maglev table is not
 * larger than n. */
struct hy_l7_hash_table *hy_l7_hash_ring_new(const char *const *keys, size_t n, size_t ring_min,
                                             size_t ring_max);
struct hy_l7_hash_table *hy_l7_hash_maglev_new(const char *const *keys, size_t n,
                                               size_t table_size);
void hy_l7_hash_free(struct hy_l7_hash_table *t);
/* The endpoint (index into keys) hash falls on. Cannot fail. */
size_t hy_l7_hash_pick(const struct hy_l7_hash_table *t, uint64_t hash);
/* The endpoint hash falls on among those usable (ok[0..n), indexed as
 * keys): the one hy_l7_hash_pick names if ok, else the next usable one
 * along the ring (or the Maglev table), so only the keys of unusable
 * endpoints move, and they come back when it does. SIZE_MAX when none is
 * usable. */
size_t hy_l7_hash_pick_ok(const struct hy_l7_hash_table *t, uint64_t hash, const bool *ok,
                          size_t n);

#endif
