/* A sidecar's config in parts (dp.proto DpPart): what the zone and every
 * DP peer (hypha-dp, the simulator) agree on. Each part's version is a hash
 * of its content; the whole config's version is a hash of every part's
 * kind, key and version, so both ends compute it alike from what they
 * hold. A set of parts is assembled into the DpConfig a sidecar applies
 * (and /config shows): every outbound gets the endpoints of its service's
 * Endpoints part, each with the priority the outbound gives its zone. */
#ifndef HY_DP_PARTS_H
#define HY_DP_PARTS_H

#include <stdbool.h>
#include <stddef.h>

#include "dp.pb-c.h"

#define HY_DP_VERSION_LEN 16 /* hex digits of a part's or a config's version */

/* FNV-1a (64 bits) of len bytes, continuing from h (start: HY_DP_HASH_INIT). */
#define HY_DP_HASH_INIT 1469598103934665603ULL
uint64_t hy_dp_hash(uint64_t h, const void *data, size_t len);
/* The version naming m's content: HY_DP_VERSION_LEN hex digits of the hash
 * of m packed, into out (HY_DP_VERSION_LEN + 1 bytes). 0 or HY_ENOMEM. */
int hy_dp_msg_version(const ProtobufCMessage *m, char *out);
/* A deep copy of m (packed and unpacked again); NULL when out of memory. */
ProtobufCMessage *hy_dp_msg_copy(const ProtobufCMessage *m);

/* Gives the endpoints of zone the priority prio on outbound o (in a
 * DpPart: zone_priorities), unless the zone has one already. 0 or
 * HY_ENOMEM. */
int hy_dp_zone_priority_add(Hypha__V1__DpOutbound *o, const char *zone, uint32_t prio);

/* Sets p's version to the hash of p's content (its version unset). 0 or
 * HY_ENOMEM. */
int hy_dp_part_stamp(Hypha__V1__DpPart *p);

/* One part as the whole version counts it. */
struct hy_dp_ref {
    int kind;
    const char *key; /* NULL: "" */
    const char *version;
};
/* Orders refs by kind, then key: the order parts are kept and hashed in. */
int hy_dp_ref_cmp(const struct hy_dp_ref *a, const struct hy_dp_ref *b);
/* The whole config's version for refs[0..n) (sorted in place first). */
void hy_dp_whole_version(struct hy_dp_ref *refs, size_t n, char *out);

/* A set of parts, sorted by kind and key, one per (kind, key). `owned`:
 * the parts are freed with the set; otherwise they are borrowed. */
struct hy_dp_parts {
    Hypha__V1__DpPart **v;
    size_t n;
    bool owned;
    char version[HY_DP_VERSION_LEN + 1]; /* "" for an empty set */
};

/* Sorts p's parts by kind and key and sets its whole version: a set made
 * by hand. HY_EINVAL when a (kind, key) is there twice; HY_ENOMEM. */
int hy_dp_parts_sort(struct hy_dp_parts *p);

/* What held becomes with update u applied, into *out (borrowing parts from
 * held and u: keep both until hy_dp_parts_commit or hy_dp_parts_fini of
 * *out). An update from "" is a whole config: nothing held is kept. Refused (HY_EINVAL, why filled,
 * *out empty) when u is not based on held's version, names a part twice, has a part of an unknown
 * kind, an Endpoints part without a key or another with one, a version that is not its content's
 * hash, or when the result's whole version is not u's. HY_ENOMEM likewise. */
int hy_dp_parts_stage(const struct hy_dp_parts *held, const Hypha__V1__DpConfigUpdate *u,
                      struct hy_dp_parts *out, char *why, size_t size);
/* Makes staged (from hy_dp_parts_stage(held, u)) the held set: the parts of
 * held it replaced or removed are freed, u's parts move into it (u keeps
 * none). */
void hy_dp_parts_commit(struct hy_dp_parts *held, struct hy_dp_parts *staged,
                        Hypha__V1__DpConfigUpdate *u);
void hy_dp_parts_fini(struct hy_dp_parts *p);

/* The config the parts make: one Identity, TrustBundle, Inbounds and
 * Outbounds each, and an Endpoints part for every outbound's service;
 * version: p's whole version. *out is the caller's
 * (hypha__v1__dp_config__free_unpacked). HY_EINVAL with why when a part is
 * missing; HY_ENOMEM. */
int hy_dp_parts_assemble(const struct hy_dp_parts *p, Hypha__V1__DpConfig **out, char *why,
                         size_t size);

/* The whole-config update (from "") that assembles to c, but for its
 * version (the parts' whole version) and endpoint priorities (each zone
 * gets the priority of its first endpoint; other zones 1): what a fake
 * zone in a test or a fuzz target sends. *out is the caller's
 * (hypha__v1__dp_config_update__free_unpacked). 0 or HY_ENOMEM. */
int hy_dp_parts_split(const Hypha__V1__DpConfig *c, Hypha__V1__DpConfigUpdate **out);

/* One part packed (protobuf), for hy_dp_update_pack. */
struct hy_dp_packed {
    const uint8_t *data;
    size_t len;
};
/* The DpMessage {update: {version, from_version, parts}} whose parts are
 * already packed, as protobuf-c would pack it: a part many sidecars share
 * is packed once, not once per sidecar. *out (*len bytes) is the caller's
 * to free. 0 or HY_ENOMEM. */
int hy_dp_update_pack(const char *version, const char *from_version,
                      const struct hy_dp_packed *parts, size_t n, uint8_t **out, size_t *len);

/* p's parts as refs for a DpHello (borrowing p's strings); *refs is the
 * caller's to free (the array and its elements, not their strings). 0 or
 * HY_ENOMEM. */
int hy_dp_parts_refs(const struct hy_dp_parts *p, Hypha__V1__DpPartRef ***refs, size_t *n);

#endif
