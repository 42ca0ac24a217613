/* Per-type validators named in the registry (registry.c). Each adds one
 * cause per problem, with the field path as the user wrote it. */
#ifndef HY_VALIDATE_H
#define HY_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "resource.h"

void hy_validate_mesh(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_zone(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_dataplane(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_zone_ingress(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_mtp(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_timeout(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_retry(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_health_check(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_circuit_breaker(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_lbs(const struct hy_resource *r, struct hy_diag *d);
/* validate_l7.c */
void hy_validate_http_route(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_tcp_route(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_fault_injection(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_rate_limit(const struct hy_resource *r, struct hy_diag *d);
/* validate_metric.c */
void hy_validate_mesh_metric(const struct hy_resource *r, struct hy_diag *d);
/* validate_obs.c */
void hy_validate_access_log(const struct hy_resource *r, struct hy_diag *d);
void hy_validate_mesh_trace(const struct hy_resource *r, struct hy_diag *d);
/* Is s an http://HOST[:PORT][/PATH] URL (MeshTrace's Zipkin url)? Its host
 * (brackets stripped), port (default 80) and path (default "/") into the
 * buffers given (each may be NULL). Cannot fail otherwise. */
bool hy_validate_trace_url(const char *s, char *host, size_t hsize, unsigned *port, char *path,
                           size_t psize);

/* A Kuma percentage (int-or-string: "50", "0.5", "100") as parts per
 * million into *out; false when it is not a number in [0, 100]. */
bool hy_percentage_per_million(const char *s, uint32_t *out);
/* A MeshFaultInjection responseBandwidth limit (Kuma's \d*\s?[gmk]?bps:
 * "10kbps", "1 mbps") in bytes per second as Envoy applies Kuma's limit
 * (kbps, k = 1000, read by Envoy as KiB/s); false when it does not read
 * or does not fit 32 bits. */
bool hy_bandwidth_bytes_per_s(const char *s, uint32_t *out);

#endif
