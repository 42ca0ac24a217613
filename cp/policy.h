/* The policy engine: which policies select a proxy, in the order Kuma
 * merges them, and what their entries merge to for one peer, with the
 * entry each value came from. The zone computes every sidecar's config
 * with it, and the API and the CLI explain those configs with it, so what
 * is enforced and what is explained cannot differ.
 *
 * Kuma's rules (docs "Policies: how they combine"; pkg/plugins/policies/
 * core/rules): the policies selecting a proxy are ordered by their
 * top-level targetRef, least specific first (Mesh < MeshSubset <
 * MeshService < MeshServiceSubset < Dataplane by labels < Dataplane by
 * name; with sectionName after without), then global-origin before
 * zone-origin, then by name (z before a: of two otherwise equal policies
 * the one whose name sorts first wins).
 * Their `from`/`to` entries are taken in that order, each policy's in the
 * order written; for one caller (from) or destination (to) the `default`s
 * of the matching entries merge, later over earlier (hy_policy_conf_merge).
 * A missing top-level targetRef means the whole mesh. */
#ifndef HY_POLICY_H
#define HY_POLICY_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "dp.pb-c.h"
#include "diag.h"
#include "resource.h"

#define HY_POLICY_PATH_MAX 256    /* bytes of a conf field path ("http.backOff.baseInterval") */
#define HY_POLICY_MAX_INBOUNDS 64 /* inbounds one proxy may have (wire.h HY_DP_MAX_INBOUNDS) */

/* The tag a proxy's inbounds get for the zone they run in (Kuma's
 * kuma.io/zone, which the codec reads as this). */
#define HY_TAG_SERVICE "hypha.io/service"
#define HY_TAG_ZONE "hypha.io/zone"
/* Kuma's kuma.io/protocol: tcp (absent), http, http2, grpc. */
#define HY_TAG_PROTOCOL "hypha.io/protocol"

/* Specificity of a top-level targetRef: later (higher) wins. */
enum hy_policy_rank {
    HY_POLICY_RANK_MESH,
    HY_POLICY_RANK_MESH_SUBSET,
    HY_POLICY_RANK_MESH_SERVICE,
    HY_POLICY_RANK_MESH_SERVICE_SUBSET,
    HY_POLICY_RANK_DATAPLANE_LABELS,
    HY_POLICY_RANK_DATAPLANE_NAME,
};

/* A set of tags (a caller's, a destination's, an inbound's): borrowed
 * key/value pairs. */
struct hy_policy_tag {
    const char *key, *value;
};
struct hy_policy_tags {
    const struct hy_policy_tag *v;
    size_t n;
};

/* The proxy a config is computed for, as the selectors see it. */
struct hy_policy_proxy {
    const struct hy_resource *dp; /* a Dataplane (borrowed) */
    const char *zone;             /* the zone it runs in: its inbounds' HY_TAG_ZONE */
};

/* One policy that selects the proxy. */
struct hy_policy_sel {
    const struct hy_resource *r; /* borrowed */
    enum hy_policy_rank rank;
    bool section;      /* its targetRef names one inbound (sectionName): more specific */
    uint64_t inbounds; /* bit i: the policy selects inbound i (for from/rules) */
};

/* The policies of one type selecting one proxy, in merge order. */
struct hy_policy_set {
    struct hy_policy_sel *v;
    size_t n;
};

/* Where a value came from: a policy and one of its entries. */
struct hy_policy_origin {
    const struct hy_resource *r; /* borrowed */
    const char *section;         /* "from", "to" or "rules" */
    size_t index;                /* in that section */
};

/* "TYPE/NAME section[I]" and more after it: where a merged value came
 * from, as inspect and the sidecar's logs name it. Caller frees; NULL
 * when out of memory. */
char *hy_policy_origin_str(const struct hy_policy_origin *o, const char *more);
/* The tags a `from` targetRef asks of a caller (MeshService: its service;
 * MeshSubset: its tags; MeshServiceSubset: both; Mesh: none), appended to
 * m's `tags` map (any of the DP messages' map<string, string> tags: the
 * sidecar checks them against the caller's certificate). 0 or HY_ENOMEM. */
int hy_policy_caller_tags(ProtobufCMessage *m, const Hypha__V1__TargetRef *t);

struct hy_policy_prov {
    char *path; /* JSON name path in the conf, "connectionTimeout", "http.numRetries" */
    struct hy_policy_origin origin;
};

/* A merged `default`: NULL conf when no entry matched. Embedded: start
 * zeroed, free with hy_policy_conf_fini. */
struct hy_policy_conf {
    ProtobufCMessage *conf; /* owned */
    struct hy_policy_prov *prov;
    size_t nprov;
};

/* The policy types the data plane's config is made of. */
enum hy_policy_type {
    HY_POLICY_MTP,
    HY_POLICY_TIMEOUT,
    HY_POLICY_RETRY,
    HY_POLICY_BREAKER,
    HY_POLICY_LB,
    HY_POLICY_HEALTH,
    HY_POLICY_HTTP_ROUTE,
    HY_POLICY_TCP_ROUTE,
    HY_POLICY_FAULT,
    HY_POLICY_RATE_LIMIT,
    HY_POLICY_METRIC, /* proxy-wide: one top-level default (policy_metric.c) */
    HY_POLICY_ACCESS_LOG,
    HY_POLICY_TRACE, /* proxy-wide: one top-level default (policy_trace.c) */
    HY_POLICY_NTYPES
};
extern const char *const hy_policy_type_names[HY_POLICY_NTYPES];

/* Every policy of those types: what configs are computed from. */
struct hy_policy_world {
    struct hy_resource **v[HY_POLICY_NTYPES]; /* owned */
    size_t n[HY_POLICY_NTYPES];
};

struct hy_store;
/* Loads every policy of the types above from s into *w (zeroed first;
 * free with hy_policy_world_fini). 0 or a negative code. */
int hy_policy_world_load(struct hy_store *s, struct hy_policy_world *w);
/* Puts r (of one of the types; owned by the world from now) in place of
 * the policy of the same mesh and name, or adds it: the world as a write
 * would leave it. 0, HY_ENOMEM (r freed), or HY_EINVAL when r is not a
 * policy type (r left to the caller). */
int hy_policy_world_put(struct hy_policy_world *w, struct hy_resource *r);
void hy_policy_world_fini(struct hy_policy_world *w);
/* The policies of each type in w selecting proxy p, into sel[] (free each
 * with hy_policy_set_fini, or all with hy_policy_sets_fini). */
int hy_policy_select_all(const struct hy_policy_world *w, const struct hy_policy_proxy *p,
                         struct hy_policy_set sel[HY_POLICY_NTYPES]);
void hy_policy_sets_fini(struct hy_policy_set sel[HY_POLICY_NTYPES]);

/* The rank of a top-level targetRef (NULL: the whole mesh). */
enum hy_policy_rank hy_policy_rank_of(const Hypha__V1__TargetRef *t);
/* The tags of inbound i of proxy p, with HY_TAG_ZONE added when the
 * Dataplane does not set it; into buf (cap entries). Returns the count,
 * at most cap. */
size_t hy_policy_inbound_tags(const struct hy_policy_proxy *p, size_t i, struct hy_policy_tag *buf,
                              size_t cap);
/* Does an entry's targetRef (Mesh, MeshSubset, MeshService,
 * MeshServiceSubset) match a peer with these tags? */
bool hy_policy_ref_matches(const Hypha__V1__TargetRef *t, const struct hy_policy_tags *peer);

/* The policies among v[0..n) (of one type, any mesh) that select proxy p,
 * in merge order, into *out (free with hy_policy_set_fini). Resources stay
 * borrowed. 0 or HY_ENOMEM. */
int hy_policy_select(struct hy_resource *const *v, size_t n, const struct hy_policy_proxy *p,
                     struct hy_policy_set *out);
void hy_policy_set_fini(struct hy_policy_set *s);

/* The entries of section ("from", "to") of the policies in s that apply
 * to inbound `inbound` (from; SIZE_MAX: any) in merge order, each handed
 * to fn with its targetRef, its `default` and where it came from; fn
 * returns 0 to go on or a negative code to stop with it. */
typedef int (*hy_policy_entry_fn)(void *ud, const Hypha__V1__TargetRef *ref,
                                  const ProtobufCMessage *conf, const struct hy_policy_origin *o);
int hy_policy_each_entry(const struct hy_policy_set *s, const char *section, size_t inbound,
                         hy_policy_entry_fn fn, void *ud);

/* The merged `default` of the section's entries matching peer (for
 * "from": the caller at inbound `inbound`; for "to": the destination, any
 * inbound), into *out (zeroed before). 0 or a negative code. */
int hy_policy_merge(const struct hy_policy_set *s, const char *section, size_t inbound,
                    const struct hy_policy_tags *peer, struct hy_policy_conf *out);

/* The merged `default` at inbound `inbound` of a type whose `from`
 * entries name the Mesh only (MeshTimeout): its from entries, then its
 * rules (newer Kuma's inbound section), later over earlier, into *out
 * (zeroed before; conf NULL when none applies). 0 or a negative code. */
int hy_policy_merge_inbound(const struct hy_policy_set *s, size_t inbound,
                            struct hy_policy_conf *out);

/* The MeshTrafficPermission entries and rules matchers of the policies in
 * mtp that select inbound i, in merge order, appended to in's permissions,
 * deny, allow and allow_with_shadow_deny (common/permit.h decides on
 * them); each names its origin ("MeshTrafficPermission/NAME from[I]").
 * 0 or HY_ENOMEM. */
int hy_policy_inbound_permissions(const struct hy_policy_set *mtp, size_t i,
                                  Hypha__V1__DpInbound *in);

/* policy_l7.c: the L7 policies as the sidecar gets them.
 *
 * MeshHTTPRoute (set s) for destination service svc, appended to
 * o->http_routes: Kuma's catch-all (PathPrefix /, to svc), then the rules
 * of the `to` entries naming svc in merge order, a rule whose matches
 * equal an earlier one's merged over it; then one route per match, in
 * the Gateway API's precedence (Kuma's SortRules). No route naming svc:
 * nothing appended (the sidecar's default route). 0 or HY_ENOMEM. */
int hy_policy_http_routes(const struct hy_policy_set *s, const char *svc, Hypha__V1__DpOutbound *o);
/* MeshTCPRoute for svc: the first rule of each `to` entry naming svc,
 * merged, its backendRefs appended to o->tcp_backends. */
int hy_policy_tcp_backends(const struct hy_policy_set *s, const char *svc,
                           Hypha__V1__DpOutbound *o);
/* MeshFaultInjection at inbound i: one DpCallerFaults per `from` entry, in
 * merge order, then one per `rules` entry (any caller); the sidecar
 * applies the last one a caller matches. */
int hy_policy_inbound_faults(const struct hy_policy_set *s, size_t i, Hypha__V1__DpInbound *in);
/* MeshRateLimit at inbound i: one DpCallerRateLimit per `from` entry, in
 * merge order, then per `rules` entry (any caller), each holding its default merged over those of
 * the earlier entries that match every caller it matches. */
int hy_policy_inbound_rate_limits(const struct hy_policy_set *s, size_t i,
                                  Hypha__V1__DpInbound *in);

/* policy_obs.c: MeshAccessLog as the sidecar gets it (Kuma's merge: a
 * later entry's backends replace an earlier one's). At inbound i: its from entries, then
 * its rules, merged into in->access_log (unset when none applies). */
int hy_policy_inbound_access_log(const struct hy_policy_set *s, size_t i, Hypha__V1__DpInbound *in);
/* Its `to` entries matching service svc, merged into o->access_log. */
int hy_policy_outbound_access_log(const struct hy_policy_set *s, const char *svc,
                                  Hypha__V1__DpOutbound *o);

/* The services the MeshHTTPRoute and MeshTCPRoute policies of w send
 * proxy p's traffic to (backendRefs, mirrors) that are none of its
 * outbounds' own: the sidecar gets a backend-only outbound (port 0) for
 * each, with that service's own `to` policies. *out (n strings) is the
 * caller's (hy_policy_strings_free). 0 or HY_ENOMEM. */
int hy_policy_backend_services(const struct hy_policy_world *w, const struct hy_policy_proxy *p,
                               char ***out, size_t *n);
void hy_policy_strings_free(char **v, size_t n);

/* policy_metric.c: MeshMetric, whose policies hold one top-level
 * `default` (no from, to or rules) for the whole proxy.
 *
 * The defaults of the policies in s (MeshMetric, selecting one proxy), in
 * merge order, merged later over earlier (hy_policy_conf_merge: lists such
 * as applications and backends replace whole), each value's origin
 * section "default", index 0. *out zeroed first; conf NULL when no policy
 * selects the proxy. 0 or HY_ENOMEM. */
int hy_policy_metric_merge(const struct hy_policy_set *s, struct hy_policy_conf *out);
/* What the sidecar of Dataplane dp gets of the MeshMetric policies in s:
 * its Prometheus endpoint (the first Prometheus backend: port, default
 * 5670; path, default /metrics; on the Dataplane's networking address) and
 * the apps it scrapes (address default 127.0.0.1, path default
 * /metrics/prometheus). *out NULL when no MeshMetric selects it; the
 * caller's otherwise. 0 or HY_ENOMEM. */
#define HY_POLICY_METRIC_PORT 5670
#define HY_POLICY_METRIC_PATH "/metrics"
#define HY_POLICY_METRIC_APP_PATH "/metrics/prometheus"
int hy_policy_metrics(const struct hy_policy_set *s, const struct hy_resource *dp,
                      Hypha__V1__DpMetrics **out);

/* policy_trace.c: MeshTrace, whose policies hold one top-level `default`
 * for the whole proxy, merged as MeshMetric's (lists such as backends and
 * tags replace whole). *out zeroed first; conf NULL when no policy selects
 * the proxy. 0 or HY_ENOMEM. */
int hy_policy_trace_merge(const struct hy_policy_set *s, struct hy_policy_conf *out);
/* What the sidecar of Dataplane dp (in zone) gets of the MeshTrace
 * policies in s: the backend (none for a Datadog one, which the sidecar
 * does not support: the policy's warnings say so), the tags, the
 * sampling per million, its service (first inbound's) and zone. *out NULL
 * when no MeshTrace selects it or the merged default has no backend (Kuma:
 * tracing off); the caller's otherwise. 0 or HY_ENOMEM. */
int hy_policy_trace(const struct hy_policy_set *s, const struct hy_resource *dp, const char *zone,
                    Hypha__V1__DpTrace **out);

/* Adds to w one cause per field of policy (or Mesh) r that Hypha does not
 * enforce yet (its path, "spec.to[0].default.http.numRetries", and why);
 * none for other types. The API answers them as warnings: a policy is
 * enforced or reported, never ignored silently. */
void hy_policy_warnings(const struct hy_resource *r, struct hy_diag *w);

/* Merges conf over c (later over earlier), noting o as the origin of every
 * value conf sets. conf NULL: nothing. 0, HY_ENOMEM, or HY_EINVAL when
 * conf is of another message type than c's. */
int hy_policy_conf_merge(struct hy_policy_conf *c, const ProtobufCMessage *conf,
                         const struct hy_policy_origin *o);
/* For policies with one top-level `default` (MeshMetric, MeshTrace): the
 * `default` of each policy of type in s merged in s's order into out. 0,
 * HY_ENOMEM, or HY_EINVAL for a type without a message field `default`. */
int hy_policy_default_merge(const struct hy_policy_set *s, const ProtobufCMessageDescriptor *type,
                            struct hy_policy_conf *out);
/* The origin of the value at path, or NULL when no entry set it. */
const struct hy_policy_origin *hy_policy_conf_origin(const struct hy_policy_conf *c,
                                                     const char *path);
void hy_policy_conf_fini(struct hy_policy_conf *c);

#endif
