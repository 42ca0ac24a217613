/* The zone's DP server: sidecars (hypha-dp) connect over wss, present a
 * dataplane token and a CSR, register their Dataplane and get their
 * certificate and config, pushed again whenever it changes. */
#ifndef HY_DP_SERVER_H
#define HY_DP_SERVER_H

#include "dataplane.pb-c.h"
#include "dp.pb-c.h"
#include "dp_stats.h"
#include "wire.h"
#include "zone.h"

struct hy_resource;
struct hy_store;
struct hy_store_changes;
struct hy_token_claims;

/* Starts listening on cfg->dp_address (dp_server.c). */
int hy_zone_dp_server_start(struct hy_zone *z);
void hy_zone_dp_server_stop(struct hy_zone *z);
void hy_zone_dp_server_free(struct hy_zone *z);

/* The shape of one message a peer sent, before anything reads it
 * (dp_server.c): a kind a peer may send (hello, csr, ack, nack, stats), no
 * unknown fields anywhere, and every string the zone reads present where
 * required, bounded and printable where it is logged or stored. The
 * Hello's resource is checked by hy_zone_dp_check_hello. Returns true, or false
 * with why (naming the field) filled. Cannot fail otherwise; pure. */
bool hy_zone_dp_check_message(const Hypha__V1__DpMessage *m, char *why, size_t size);
/* Unpacks and checks a Hello's resource: a Dataplane or a ZoneIngress, no
 * unknown fields in its spec, hy_resource_validate (names, labels, tags:
 * no NULL, empty or duplicate keys), addresses that are IPs or host names,
 * at most HY_DP_MAX_INBOUNDS inbounds with HY_DP_MAX_SERVICES services and
 * HY_DP_MAX_OUTBOUNDS outbounds, and a CSR for a Dataplane. Call it after
 * hy_zone_dp_check_message and before the token is looked at. 0 with *out set
 * (the caller frees it with hy_resource_free), or HY_EINVAL with why
 * filled and *out NULL (HY_ENOMEM likewise). */
int hy_zone_dp_check_hello(const Hypha__V1__DpHello *h, struct hy_resource **out, char *why,
                           size_t size);
/* Whether a dataplane token's claims allow Dataplane dp (checked by
 * hy_zone_dp_check_hello): same mesh and name, and every tag the token grants
 * on every inbound. false with why filled. Pure. */
bool hy_zone_dp_token_matches(const struct hy_token_claims *c, const struct hy_resource *dp,
                              char *why, size_t size);

/* The hypha.io/service tag of an inbound, or NULL. */
const char *hy_zone_dp_service_of(const Hypha__V1__Dataplane__Networking__Inbound *in);

/* The protocol an inbound's traffic is proxied as, from its
 * hypha.io/protocol tag: "http", "http2" or "grpc" when the tag says so,
 * "tcp" otherwise (absent or any other value). A static string. */
const char *hy_zone_dp_protocol_of(const Hypha__V1__Dataplane__Networking__Inbound *in);

/* value (a hypha.io/protocol tag, or NULL) as one of "tcp", "http",
 * "http2", "grpc": anything else is "tcp". A static string. */
const char *hy_zone_dp_protocol_name(const char *value);

/* The URI SANs of a sidecar's leaf: one SPIFFE ID per inbound service
 * (spiffe://MESH/SERVICE, first), then one kuma://KEY/VALUE per distinct
 * inbound tag, with hypha.io/zone: zone added where an inbound has none:
 * the tags a callee's MeshTrafficPermission matches callers on. The
 * Dataplane's tags are those its token allowed (hy_zone_dp_token_matches).
 * 0 with *out an owned array of *n owned strings, or HY_ENOMEM. */
#define HY_ZONE_DP_URI_MAX 600
int hy_zone_dp_identity_uris(const struct hy_resource *dp, const char *zone, char ***out,
                             size_t *n);

/* What every config computed after one store change reads, loaded once
 * (dp_config.c): every policy, Dataplane, ZoneIngress, MeshCaRoot and
 * MeshTrust, with the local endpoints indexed by mesh and service. The
 * parts many sidecars share (a service's endpoints, a mesh's trust bundle)
 * are computed at most once per round, when first asked for. *out is the
 * caller's (hy_zone_dp_round_free). 0 or a negative code (store,
 * HY_ENOMEM). */
struct hy_zone_dp_round;
int hy_zone_dp_round_load(struct hy_store *s, struct hy_zone_dp_round **out);
void hy_zone_dp_round_free(struct hy_zone_dp_round *r);
/* The Endpoints part of service in mesh for sidecars of zone origin: the
 * inbounds of the mesh's Dataplanes of that origin (or none) serving it,
 * then other zones' ingresses carrying it; priorities unset (each
 * outbound gives them by zone). *out is the round's. 0 or HY_ENOMEM. */
int hy_zone_dp_round_endpoints(struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                               const char *service, const Hypha__V1__DpPart **out);
/* The TrustBundle part of mesh: its roots, then the CAs of its MeshTrusts
 * for its own trust domain, each certificate once. *out is the round's. */
int hy_zone_dp_round_bundle(struct hy_zone_dp_round *r, const char *mesh,
                            const Hypha__V1__DpPart **out);

/* part (the round's: from hy_zone_dp_round_endpoints with origin and mesh,
 * or hy_zone_dp_round_bundle with mesh) packed, once per round whoever
 * sends it. *data is the round's. 0, HY_EINVAL (not the round's part),
 * HY_ENOMEM. */
int hy_zone_dp_round_packed(struct hy_zone_dp_round *r, const char *origin, const char *mesh,
                            const Hypha__V1__DpPart *part, const uint8_t **data, size_t *len);

/* dp's Identity part: its mesh, name, certificate and chain. *out is the
 * caller's. 0 or HY_ENOMEM. */
int hy_zone_dp_part_identity(const struct hy_resource *dp, const char *cert, const char *chain,
                             Hypha__V1__DpPart **out);
/* dp's Inbounds part (the MeshTrafficPermission entries and rules their
 * callers meet) and Outbounds part (what the `to` policies merge to, and
 * the priority of each zone; no endpoints), each when its pointer is not
 * NULL; the caller's. 0 or a negative code. */
int hy_zone_dp_parts_own(struct hy_zone_dp_round *r, const struct hy_resource *dp,
                         Hypha__V1__DpPart **inbounds, Hypha__V1__DpPart **outbounds);
/* The whole config these parts and the round's Endpoints parts make
 * (common/dp_parts.h hy_dp_parts_assemble), as the sidecar assembles it. */
int hy_zone_dp_parts_assemble(struct hy_zone_dp_round *r, const struct hy_resource *dp,
                              Hypha__V1__DpPart *identity, const Hypha__V1__DpPart *bundle,
                              Hypha__V1__DpPart *inbounds, Hypha__V1__DpPart *outbounds,
                              Hypha__V1__DpConfig **out);
/* hy_zone_dp_config_build from a round, not the store. */
int hy_zone_dp_config_compute(struct hy_zone_dp_round *r, const struct hy_resource *dp,
                              const char *cert, const char *chain, const char *bundle,
                              Hypha__V1__DpConfig **out);

/* Which of a sidecar's own parts a store change may alter (dp_config.c),
 * from the rounds before and after it: a policy changes the Inbounds part
 * (MeshTrafficPermission) or the Outbounds part (the `to` types) of the
 * sidecars its top-level targetRef selects before or after, the Outbounds
 * only of those with an outbound some `to` entry matches; a Mesh changes
 * every sidecar of the mesh; Dataplanes and ZoneIngresses change shared
 * parts (endpoints), and the Outbounds of the sidecars calling a service
 * whose protocol they turn (Kuma's agreement rule: an outbound's protocol,
 * and so which routes apply, follows its service's instances); CAs and
 * insights change no sidecar's own parts (only the trust bundle); any
 * other type, or no list of changes, every part. */
enum {
    HY_ZONE_DP_INBOUNDS = 1,
    HY_ZONE_DP_OUTBOUNDS = 2,
};
struct hy_zone_dp_impact;
/* old NULL or ch NULL: every part of every sidecar. *out is the caller's
 * (hy_zone_dp_impact_free); it borrows from both rounds. 0 or HY_ENOMEM. */
int hy_zone_dp_impact_new(const struct hy_zone_dp_round *old, const struct hy_zone_dp_round *now,
                          const struct hy_store_changes *ch, struct hy_zone_dp_impact **out);
unsigned hy_zone_dp_impact_on(const struct hy_zone_dp_impact *im, const struct hy_resource *dp);
void hy_zone_dp_impact_free(struct hy_zone_dp_impact *im);
/* Brings round r up to date with the changes ch (read from the store
 * after r was loaded or last brought up to date), in place: every changed
 * resource is read again, nothing else (a round loaded whole decodes every
 * Dataplane again). *out says what the changes alter (as
 * hy_zone_dp_impact_new, from the versions r held before); the caller's.
 * A negative code leaves r not matching the store: free it and load one. */
int hy_zone_dp_round_apply(struct hy_zone_dp_round *r, struct hy_store *s,
                           const struct hy_store_changes *ch, struct hy_zone_dp_impact **out);

/* Computes dp's config from the store (dp_config.c): inbounds with the
 * MeshTrafficPermission entries and rules their callers meet, outbounds with their
 * endpoints and policies, and the certificate material given. *out is owned
 * by the caller (hypha__v1__dp_config__free_unpacked). */
int hy_zone_dp_config_build(struct hy_store *s, const struct hy_resource *dp, const char *cert,
                            const char *chain, const char *bundle, Hypha__V1__DpConfig **out);

/* The config a connected sidecar (mesh/name) is due now, with its
 * certificate, chain and trust bundle (public material only: its key never
 * leaves the sidecar): the one push sends, so its version is the one the
 * sidecar acks once it has it; acked gets the version it acked last ("" if
 * none; at most size bytes). HY_ENOTFOUND when no such sidecar is
 * connected; *out is the caller's (hypha__v1__dp_config__free_unpacked). */
int hy_zone_dp_connected_config(struct hy_zone *z, const char *mesh, const char *name,
                                Hypha__V1__DpConfig **out, char *acked, size_t size);

/* Asks the sidecar mesh/name connected to this zone (ingress: the
 * ingress name, mesh NULL) for its metrics (dp_stats.h): 0, and done is
 * called once, later; HY_ENOTFOUND when none is connected here; HY_EFULL
 * (too many questions in flight), HY_ENOMEM or a send failure, and done is
 * never called. */
int hy_zone_dp_stats_of(struct hy_zone *z, bool ingress, const char *mesh, const char *name,
                        hy_zone_dp_stats_done_fn done, void *ud);

/* One proxy connected to this zone, as Prometheus discovery
 * (prom_sd.c) lists it. Everything is borrowed, valid during the call. */
struct hy_zone_dp_target {
    const struct hy_resource *dp;        /* its Dataplane or ZoneIngress */
    bool ingress;                        /* dp is a ZoneIngress */
    const char *admin_address;           /* its admin server, as it said (""; unsaid) */
    const Hypha__V1__DpMetrics *metrics; /* its MeshMetric (NULL: none selects it) */
};
typedef int (*hy_zone_dp_target_fn)(void *ud, const struct hy_zone_dp_target *t);
/* Calls fn for every sidecar and ingress connected and admitted now, in
 * connection order, until fn returns non-zero (returned). A sidecar whose
 * config was never computed gets it computed first (store errors,
 * HY_ENOMEM returned). Loop thread. */
int hy_zone_dp_each_target(struct hy_zone *z, hy_zone_dp_target_fn fn, void *ud);

/* A version that names m's content: 16 hex digits of a hash of m packed
 * (m's own version field unset). *out is the caller's; 0 or HY_ENOMEM. */
int hy_zone_dp_version(const ProtobufCMessage *m, char **out);

/* The routes of this zone's ingresses (ingress_config.c): every service a
 * local Dataplane serves, per mesh, with its SNI and endpoints. *out is
 * owned by the caller (hypha__v1__dp_ingress_config__free_unpacked). */
int hy_zone_ingress_config_build(struct hy_store *s, const char *zone,
                                 Hypha__V1__DpIngressConfig **out);
/* Sets zi's availableServices to c's routes (mesh, service tag, instances). */
int hy_zone_ingress_available(const Hypha__V1__DpIngressConfig *c, Hypha__V1__ZoneIngress *zi);

#endif
