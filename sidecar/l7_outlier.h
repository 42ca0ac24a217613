/* MeshCircuitBreaker's outlierDetection, per endpoint of one outbound, as
 * Envoy's outlier detector: consecutive 5xx (detectors.totalFailures),
 * consecutive gateway failures (502, 503, 504), consecutive local-origin
 * failures (connect failures, resets, timeouts: with
 * split_external_and_local_errors they count only there; without it they
 * count as 503 and 504 responses, as Envoy does); an endpoint that reaches
 * a threshold is ejected for base_ejection_time x the times it was ejected
 * (at most max(300 s, base), Envoy's max_ejection_time), unless
 * max_ejection_percent of the endpoints are out already (but one may
 * always be: Envoy ejects at least one whatever the percent).
 *
 * The state is a struct per endpoint that the caller embeds (zeroed to
 * start), in one array per outbound; functions take the time. Threads:
 * not safe by themselves; the caller holds the outbound's lock around
 * every call on its array. */
#ifndef HY_L7_OUTLIER_H
#define HY_L7_OUTLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"

#define HY_L7_OUTLIER_MAX_EJECTION_MS 300000 /* Envoy's max_ejection_time default */

struct hy_l7_outlier_ep {
    uint32_t c5xx, cgateway, clocal; /* consecutive failures of each kind */
    uint32_t ejections;              /* times ejected, less one per clean interval */
    bool ejected;
    uint64_t until_ms; /* while ejected: when it comes back */
};

/* What one request (or connection attempt) to an endpoint came to. */
enum hy_l7_outlier_result {
    HY_L7_OUT_RESPONSE,       /* a response with a status (5xx counts) */
    HY_L7_OUT_CONNECT_FAILED, /* local origin: no connection */
    HY_L7_OUT_TIMEOUT,        /* local origin: no response in time */
    HY_L7_OUT_RESET,          /* local origin: the stream or connection reset */
    HY_L7_OUT_CONNECT_OK,     /* local origin: a connection was made */
};

/* Records result (status for HY_L7_OUT_RESPONSE) for endpoint i of eps[0..n)
 * under cfg (NULL: detection off, nothing recorded) at now_ms. True when
 * that ejected endpoint i. Cannot fail. */
bool hy_l7_outlier_report(const Hypha__V1__DpOutlier *cfg, struct hy_l7_outlier_ep *eps, size_t n,
                          size_t i, enum hy_l7_outlier_result result, unsigned status,
                          uint64_t now_ms);
/* Is endpoint i out at now_ms? Brings it back (lazily, at pick time) when
 * its ejection time has passed. */
bool hy_l7_outlier_ejected(struct hy_l7_outlier_ep *eps, size_t i, uint64_t now_ms);
/* The periodic pass, every hy_l7_outlier_interval_ms: brings back every
 * endpoint whose time passed and lowers the ejection count of those not
 * ejected (Envoy: a clean interval takes one off the multiplier). How many
 * are still out. */
size_t hy_l7_outlier_tick(struct hy_l7_outlier_ep *eps, size_t n, uint64_t now_ms);
/* interval (unset: 10 s). */
uint64_t hy_l7_outlier_interval_ms(const Hypha__V1__DpOutlier *cfg);

#endif
