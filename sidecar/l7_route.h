/* The compiled MeshHTTPRoute table of one outbound, and the MeshTCPRoute
 * split: which route takes a request (matches as Kuma and the Gateway API
 * say), which backend service by weight, and what the route's filters do
 * to the request and its response. Built once per config snapshot;
 * immutable after, so any number of worker threads read one table. */
#ifndef HY_L7_ROUTE_H
#define HY_L7_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"
#include "http_head.h"

struct hy_l7_routes;

/* A RequestRedirect's answer: status (301, 302, 303, 307, 308) and the
 * Location value, malloc'd (the caller frees it). */
struct hy_l7_redirect {
    unsigned status;
    char *location;
};

/* Compiles o->http_routes: matches (regular expressions with POSIX regcomp,
 * REG_EXTENDED, matching the whole path or value), weights, filters. No
 * routes: one route, "default", taking every request to o->service. o is
 * borrowed and must outlive *out. 0 and *out; HY_EINVAL with why naming
 * the route and the offending match or regex; HY_ENOMEM. */
int hy_l7_routes_new(const Hypha__V1__DpOutbound *o, struct hy_l7_routes **out, char *why,
                     size_t why_size);
void hy_l7_routes_free(struct hy_l7_routes *r);
/* How many routes (1 for the default route). */
size_t hy_l7_routes_count(const struct hy_l7_routes *r);

/* The first route (its index) one of whose matches holds for request h, or
 * -1 when none does (the caller answers 404, as Envoy's "no route"). A
 * match holds when all of its conditions do: the path (from h->target up
 * to '?', not percent-decoded, as Envoy): Exact, PathPrefix by whole
 * segments ("/a" takes "/a", "/a/", "/a/b", never "/ab"; a trailing '/' of
 * the prefix is ignored), RegularExpression on the whole path; the method
 * (exact); every header match (names without case, several fields of one
 * name joined by ","); every query parameter match (Exact or
 * RegularExpression on the first value of that name, not decoded). A
 * route without matches takes every request. Allocates only for a target
 * over 511 bytes that a regex or query match must look at; out of memory
 * there, that match does not hold. */
int hy_l7_route_match(const struct hy_l7_routes *r, const struct hy_http_head *h);
/* Route i's DpHttpRoute (borrowed from the outbound), NULL for the default
 * route. */
const Hypha__V1__DpHttpRoute *hy_l7_route_get(const struct hy_l7_routes *r, int i);
/* Route i's name ("MeshHTTPRoute/NAME to[I].rules[J]"), "default" for the
 * default route or a route without one. Borrowed. */
const char *hy_l7_route_name(const struct hy_l7_routes *r, int i);
/* The backend service for one request of route i, by weight (rnd: a
 * uniform 64-bit random number): the outbound's service when the route
 * has no backends, NULL when every weight is 0 (Gateway API: the caller
 * answers 500). Borrowed. */
const char *hy_l7_route_backend(const struct hy_l7_routes *r, int i, uint64_t rnd);
/* The same pick, as the backendRef itself (its MeshServiceSubset tags
 * narrow the instances); NULL when the route has no backends (the
 * outbound's service, whole) or every weight is 0. Borrowed. */
const Hypha__V1__DpBackendRef *hy_l7_route_backend_ref(const struct hy_l7_routes *r, int i,
                                                       uint64_t rnd);
/* Does endpoint e carry every tag of ref (none: any endpoint)? Cannot fail. */
bool hy_l7_subset_has(const Hypha__V1__DpBackendRef *ref, const Hypha__V1__DpEndpoint *e);
/* Applies route i's request filters to h in order: RequestHeaderModifier
 * (remove, then set, then add, as Envoy evaluates them), URLRewrite
 * (hostname: h->authority; path ReplaceFullPath, or ReplacePrefixMatch of
 * the PathPrefix that matched, as the Gateway API's table says; the query
 * is kept). When the route has a RequestRedirect, h is left alone and
 * *redirect filled instead (status, default 302 as Kuma; Location from the
 * redirect's scheme, hostname, port and path, else the request's, the
 * query kept, a scheme's well-known port left out) and the caller answers
 * with it; otherwise redirect->location is NULL. *mirror_service: the
 * RequestMirror's backend when rnd picks this request by its share, else
 * NULL (borrowed; rnd may be the one given to hy_l7_route_backend: the
 * mirror draws from it apart). Headers past HY_HTTP_MAX_FIELDS or
 * HY_HTTP_MAX_HEAD are not added (the head keeps what it has). 0, or
 * HY_ENOMEM (h may be partly rewritten). */
int hy_l7_route_request(const struct hy_l7_routes *r, int i, struct hy_http_head *h, uint64_t rnd,
                        struct hy_l7_redirect *redirect, const char **mirror_service);
/* Route i's RequestMirror backendRef (its service and MeshServiceSubset
 * tags), or NULL. */
const Hypha__V1__DpBackendRef *hy_l7_route_mirror_ref(const struct hy_l7_routes *r, int i);
/* Applies route i's ResponseHeaderModifier filters to resp in order. 0 or
 * HY_ENOMEM. */
int hy_l7_route_response(const struct hy_l7_routes *r, int i, struct hy_http_head *resp);
/* Does route i's URLRewrite ask for the backend's hostname as Host
 * (hostToBackendHostname)? The caller sets it, knowing the endpoint. */
bool hy_l7_route_host_to_backend(const struct hy_l7_routes *r, int i);

/* MeshTCPRoute: the service for one connection of outbound o by weight
 * (o->tcp_backends; none: o->service; every weight 0: NULL, refuse the
 * connection). Borrowed from o. */
const char *hy_l7_tcp_backend(const Hypha__V1__DpOutbound *o, uint64_t rnd);
/* The same pick as the backendRef itself (its subset tags too); NULL when
 * o has no split or every weight is 0. Borrowed from o. */
const Hypha__V1__DpBackendRef *hy_l7_tcp_backend_ref(const Hypha__V1__DpOutbound *o, uint64_t rnd);

#endif
