/* What validate.c shares with the other validators of common/
 * (validate_l7.c): target references, string maps, durations. */
#ifndef HY_VALIDATE_INT_H
#define HY_VALIDATE_INT_H

#include <stddef.h>

#include "common.pb-c.h"
#include "diag.h"
#include "meta.pb-c.h"

/* A bit per TargetRef kind, for the kinds a place allows. */
#define HY_VK(kind) (1u << HYPHA__V1__TARGET_REF__KIND__##kind)

/* Adds a cause at path (or below it) for what is wrong with t: missing,
 * of a kind outside allowed, a name or tags its kind forbids or needs. */
void hy_validate_target_ref(struct hy_diag *d, const char *path, const Hypha__V1__TargetRef *t,
                            unsigned allowed);
/* Tags or labels at path: keys and values valid, no key twice. */
void hy_validate_map(struct hy_diag *d, const char *path, size_t n, void *const *entries);
/* A duration that must not be negative. */
void hy_validate_duration(struct hy_diag *d, const char *path, const Hypha__V1__Duration *v);

#endif
