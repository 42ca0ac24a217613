/* What the sidecar's L7 decisions share (l7_route, l7_retry, l7_limit,
 * l7_fault, l7_hash): header matching as Envoy does it, the caller's
 * tags against a policy entry's, and turning one random number from the
 * caller into several independent ones. Pure functions, no sockets. */
#ifndef HY_L7_H
#define HY_L7_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"
#include "http_head.h"
#include "permit.h"

/* A DpHeaderMatch type. */
enum hy_l7_match_type {
    HY_L7_EXACT,
    HY_L7_PREFIX,
    HY_L7_REGEX,
    HY_L7_PRESENT,
    HY_L7_ABSENT,
};

/* The type named s (Exact when NULL or ""), or -1 for a name Kuma does not
 * have. Names are Kuma's, compared without case. */
int hy_l7_match_type(const char *s);

/* How many leading bytes of POSIX extended regular expression re every
 * whole-string match must start with (its literal prefix: the bytes
 * before any special character, less one before a quantifier; 0 when re
 * has an alternation '|'). A cheap test before regexec: a route table's
 * regexes mostly differ there. Cannot fail. */
size_t hy_l7_regex_prefix(const char *re);

/* One DpHeaderMatch, ready to test: m borrowed, the regex compiled (with
 * REG_EXTENDED | REG_NOSUB) when the type is RegularExpression, with the
 * length of its literal prefix. */
struct hy_l7_hmatch {
    const Hypha__V1__DpHeaderMatch *m;
    enum hy_l7_match_type type;
    bool has_re;
    size_t re_prefix;
    regex_t re;
};

/* Prepares hm for m. 0, or HY_EINVAL with why filled ("unknown header
 * match type 'X'", "bad regular expression 'X': ...") and nothing to
 * finish. */
int hy_l7_hmatch_init(struct hy_l7_hmatch *hm, const Hypha__V1__DpHeaderMatch *m, char *why,
                      size_t why_size);
void hy_l7_hmatch_fini(struct hy_l7_hmatch *hm);
/* Does value (NUL-terminated; NULL: the header is absent) satisfy hm?
 * Exact and Prefix compare with case, Present holds for any value,
 * Absent only for NULL. */
bool hy_l7_hmatch_value(const struct hy_l7_hmatch *hm, const char *value);
/* Does head h satisfy hm? Names are compared without case. Several fields
 * of one name are matched as one value, joined by "," in order, as Envoy
 * does (RFC 9110 5.3). Out of memory while joining: false. */
bool hy_l7_hmatch_head(const struct hy_l7_hmatch *hm, const struct hy_http_head *h);

/* Does the caller peer carry every tag of a policy entry (none: every
 * caller)? tags, n: any map<string, string> of the DP messages
 * (DpCallerFaults.tags, DpCallerRateLimit.tags...): protobuf-c makes each
 * such entry the same {base, key, value} struct, and
 * hy_permit_peer_carries (common/permit.h, what MeshTrafficPermission
 * uses) reads them alike. Cannot fail. */
bool hy_l7_caller_match(const void *const *tags, size_t n, const struct hy_permit_peer *peer);

/* The i-th independent 64-bit number drawn from seed (splitmix64), so
 * one random number from the caller serves several decisions. */
uint64_t hy_l7_draw(uint64_t seed, unsigned i);
/* True for a share per_million / 10^6 of the values of r (uniform). */
bool hy_l7_per_million(uint64_t r, uint32_t per_million);

#endif
