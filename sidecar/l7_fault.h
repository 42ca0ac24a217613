/* MeshFaultInjection's decision for one request at an inbound: abort with
 * a status, delay, limit the response's bandwidth, each by its share of
 * requests, drawn independently as Envoy's fault filter does. */
#ifndef HY_L7_FAULT_H
#define HY_L7_FAULT_H

#include <stdint.h>

#include "dp.pb-c.h"
#include "permit.h"

struct hy_l7_fault {
    unsigned abort_status;          /* 0: no abort; else answer it (after the delay) */
    uint64_t delay_ms;              /* 0: none; wait before going on (or aborting) */
    uint32_t bandwidth_bytes_per_s; /* 0: unlimited; else pace the response body */
    const char *origin;             /* the deciding DpCallerFaults' origin, borrowed; NULL: none */
};

/* The DpCallerFaults entry of inbound in that applies to caller peer: the
 * last one whose tags it carries (none: any caller), as for
 * MeshTrafficPermission and MeshRateLimit; NULL when none does. */
const Hypha__V1__DpCallerFaults *hy_l7_fault_pick(const Hypha__V1__DpInbound *in,
                                                  const struct hy_permit_peer *peer);

/* What faults f (may be NULL: none) inject into one request, from one
 * uniform random number rnd. Kuma makes each entry of f->http a fault
 * filter of its own, in order; so here: each entry draws its delay, abort
 * and bandwidth independently, each by its share (per million; unset: 0);
 * the delays chosen add up, the first abort chosen ends the walk (entries
 * after it are not reached), the lowest bandwidth chosen applies. Cannot
 * fail. */
void hy_l7_fault_decide(const Hypha__V1__DpCallerFaults *f, uint64_t rnd, struct hy_l7_fault *out);

#endif
