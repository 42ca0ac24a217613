/* The MeshTrafficPermission decision at one inbound, on what the zone
 * computed for it (DpInbound: the policy engine's entries and rules) and
 * what the caller's certificate shows (its SPIFFE ID, its tags as URI SANs
 * kuma://KEY/VALUE). The sidecar enforces with it and the control planes
 * explain with it (hyphactl explain), so the two cannot differ.
 *
 * A caller gets in when no rules deny matcher matches its SPIFFE ID, the
 * last `from` entry whose tags it carries (if any) is not Deny, and that
 * entry or a rules allow matcher allows it. Nothing matching: denied. */
#ifndef HY_PERMIT_H
#define HY_PERMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "dp.pb-c.h"

#define HY_PERMIT_TAG_SCHEME "kuma://" /* Kuma's tag URI SANs, for interoperability */
#define HY_PERMIT_MAX_TAGS 128         /* tags read from one certificate */

/* A caller as its certificate shows it. Strings point into buf. */
struct hy_permit_peer {
    const char *key[HY_PERMIT_MAX_TAGS], *value[HY_PERMIT_MAX_TAGS];
    size_t n, used;
    char buf[8192];
};

enum hy_permit_result {
    HY_PERMIT_ALLOW,
    HY_PERMIT_DENY,
    HY_PERMIT_SHADOW, /* AllowWithShadowDeny: let in, logged and counted as a denial */
};

struct hy_permit_decision {
    enum hy_permit_result result;
    /* What decided: the origin of the deciding entry or matcher
     * ("MeshTrafficPermission/NAME from[I]"), borrowed from the inbound;
     * NULL when nothing matched (denied). */
    const char *origin;
    const char *why; /* static: "deny rule", "last matching from entry", "nothing matches" ... */
};

/* Writes the URI SAN of tag key=value into buf: kuma://KEY/VALUE, '/' in
 * VALUE written %2F so the last '/' splits them. false when it does not
 * fit size. */
bool hy_permit_tag_uri(const char *key, const char *value, char *buf, size_t size);
/* Adds the tag a kuma:// URI names; ignores other URIs and what does not
 * fit. */
void hy_permit_peer_add_uri(struct hy_permit_peer *p, const char *uri);
/* Adds one tag (copied). */
void hy_permit_peer_add(struct hy_permit_peer *p, const char *key, const char *value);
bool hy_permit_peer_has(const struct hy_permit_peer *p, const char *key, const char *value);
/* Does p carry every tag of a policy entry (none: every caller)? tags, n:
 * the entries of any map<string, string> field of the DP messages
 * (DpPermission.tags, DpCallerFaults.tags, DpCallerRateLimit.tags):
 * protobuf-c gives each such map an entry struct of the same layout
 * {base, key, value}, read here through its bytes. Cannot fail. */
bool hy_permit_peer_carries(const struct hy_permit_peer *p, const void *const *tags, size_t n);

/* The decision at inbound `in` for a caller with SPIFFE ID id ("" if none)
 * and tags peer. Cannot fail. */
void hy_permit_decide(const Hypha__V1__DpInbound *in, const char *id,
                      const struct hy_permit_peer *peer, struct hy_permit_decision *out);

#endif
