/* Per-type validators named in the registry (registry.c). Each adds one
 * cause per problem, with the field path as the user wrote it. */
#ifndef HY_VALIDATE_H
#define HY_VALIDATE_H

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

#endif
