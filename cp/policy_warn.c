/* What a policy says that the data plane does not enforce yet: every field
 * set outside the table below draws a warning when the policy is written,
 * naming the field and why, so nothing a user wrote is ignored silently
 * (policy.h). As the sidecar learns a field, it joins the table and its
 * warning goes. A MeshTrust whose trust domain the sidecars do not honour
 * draws one too. */
#include <stdio.h>
#include <string.h>

#include "ca.pb-c.h"
#include "policies.pb-c.h"
#include "dataplane.pb-c.h"
#include "codec.h"
#include "policy.h"
#include "poison.h"

/* Field paths under spec (entry indexes left out, JSON names) that the
 * sidecar enforces; a path ending in ".*" covers what is below it. */
struct enforced {
    const char *type;
    const char *const *paths;
    const char *why; /* what the rest needs */
};

#define TARGET_REFS "targetRef.*", "from.targetRef.*", "to.targetRef.*"

static const char *const mtp[] = {TARGET_REFS, "from.default.action", "rules.default.*", NULL};
static const char *const timeout[] = {TARGET_REFS,
                                      "to.default.connectionTimeout",
                                      "to.default.idleTimeout",
                                      "to.default.http.requestTimeout",
                                      "to.default.http.streamIdleTimeout",
                                      "to.default.http.requestHeadersTimeout",
                                      "to.default.http.maxStreamDuration",
                                      "to.default.http.maxConnectionDuration",
                                      "from.default.connectionTimeout",
                                      "from.default.idleTimeout",
                                      "from.default.http.requestTimeout",
                                      "from.default.http.requestHeadersTimeout",
                                      "from.default.http.maxStreamDuration",
                                      "from.default.http.maxConnectionDuration",
                                      "from.default.http.streamIdleTimeout",
                                      "rules.default.connectionTimeout",
                                      "rules.default.idleTimeout",
                                      "rules.default.http.requestTimeout",
                                      "rules.default.http.requestHeadersTimeout",
                                      "rules.default.http.maxStreamDuration",
                                      "rules.default.http.maxConnectionDuration",
                                      "rules.default.http.streamIdleTimeout",
                                      NULL};
static const char *const retry[] = {TARGET_REFS,
                                    "to.default.tcp.maxConnectAttempt",
                                    "to.default.http.numRetries",
                                    "to.default.http.perTryTimeout",
                                    "to.default.http.backOff.*",
                                    "to.default.http.retryOn",
                                    "to.default.http.retriableRequestHeaders.*",
                                    "to.default.grpc.numRetries",
                                    "to.default.grpc.perTryTimeout",
                                    "to.default.grpc.backOff.*",
                                    "to.default.grpc.retryOn",
                                    NULL};
static const char *const breaker[] = {TARGET_REFS,
                                      "to.default.connectionLimits.maxConnections",
                                      "to.default.connectionLimits.maxPendingRequests",
                                      "to.default.connectionLimits.maxRequests",
                                      "to.default.connectionLimits.maxRetries",
                                      "to.default.outlierDetection.disabled",
                                      "to.default.outlierDetection.interval",
                                      "to.default.outlierDetection.baseEjectionTime",
                                      "to.default.outlierDetection.maxEjectionPercent",
                                      "to.default.outlierDetection.splitExternalAndLocalErrors",
                                      "to.default.outlierDetection.detectors.totalFailures.*",
                                      "to.default.outlierDetection.detectors.gatewayFailures.*",
                                      "to.default.outlierDetection.detectors.localOriginFailures.*",
                                      NULL};
#define HASH_POLICIES(lb)                                                                          \
    "to.default.loadBalancer." lb ".hashPolicies.type",                                            \
        "to.default.loadBalancer." lb ".hashPolicies.terminal",                                    \
        "to.default.loadBalancer." lb ".hashPolicies.header.name",                                 \
        "to.default.loadBalancer." lb ".hashPolicies.cookie.name",                                 \
        "to.default.loadBalancer." lb ".hashPolicies.queryParameter.name",                         \
        "to.default.loadBalancer." lb ".hashPolicies.connection.sourceIP"
static const char *const lb[] = {TARGET_REFS,
                                 "to.default.loadBalancer.type",
                                 HASH_POLICIES("ringHash"),
                                 HASH_POLICIES("maglev"),
                                 "to.default.localityAwareness.disabled",
                                 "to.default.localityAwareness.crossZone.failover.*",
                                 NULL};
static const char *const health[] = {TARGET_REFS,
                                     "to.default.interval",
                                     "to.default.timeout",
                                     "to.default.unhealthyThreshold",
                                     "to.default.healthyThreshold",
                                     "to.default.tcp.disabled",
                                     "to.default.http.disabled",
                                     "to.default.http.path",
                                     "to.default.http.expectedStatuses",
                                     "to.default.grpc.disabled",
                                     "to.default.grpc.serviceName",
                                     "to.default.grpc.authority",
                                     "to.default.http.requestHeadersToAdd.*",
                                     NULL};

static const char *const http_route[] = {TARGET_REFS,
                                         "to.rules.matches.*",
                                         "to.rules.default.filters.*",
                                         "to.rules.default.backendRefs.kind",
                                         "to.rules.default.backendRefs.name",
                                         "to.rules.default.backendRefs.weight",
                                         "to.rules.default.backendRefs.tags",
                                         NULL};
static const char *const tcp_route[] = {TARGET_REFS,
                                        "to.rules.default.backendRefs.kind",
                                        "to.rules.default.backendRefs.name",
                                        "to.rules.default.backendRefs.weight",
                                        "to.rules.default.backendRefs.tags",
                                        NULL};
static const char *const fault[] = {TARGET_REFS, "from.default.http.*", "rules.default.http.*",
                                    NULL};
static const char *const rate_limit[] = {TARGET_REFS, "from.default.local.*",
                                         "rules.default.local.*", NULL};

/* MeshMetric: one top-level default (no entries), hence its own paths */
static const char *const metric[] = {"targetRef.*",
                                     "default.applications.*",
                                     "default.backends.type",
                                     "default.backends.prometheus.port",
                                     "default.backends.prometheus.path",
                                     "default.backends.prometheus.tls.mode",
                                     "default.sidecar.includeUnused",
                                     NULL};
#define ALOG_BACKENDS(sec)                                                                         \
    sec ".default.backends.type", sec ".default.backends.file.*", sec ".default.backends.tcp.*",   \
        sec ".default.backends.openTelemetry.*"
static const char *const access_log[] = {TARGET_REFS, ALOG_BACKENDS("to"), ALOG_BACKENDS("from"),
                                         ALOG_BACKENDS("rules"), NULL};

/* MeshTrace: one top-level default too */
static const char *const trace[] = {"targetRef.*",
                                    "default.backends.type",
                                    "default.backends.zipkin.*",
                                    "default.backends.openTelemetry.*",
                                    "default.tags.*",
                                    "default.sampling.*",
                                    NULL};

static const char *const mesh[] = {"mtls.enabledBackend",
                                   "mtls.backends.name",
                                   "mtls.backends.type",
                                   "mtls.backends.dpCert.rotation.expiration",
                                   "mtls.backends.conf.caCert.expiration",
                                   "mtls.backends.conf.caCert.curve",
                                   "networking.outbound.passthrough", /* transparent sidecars */
                                   NULL};

static const struct enforced table[] = {
    {"Mesh", mesh,
     "Hypha's builtin CA makes ECDSA P-256 roots and leaves and has no other setting here "
     "(RSAbits: no RSA root is made; the root is P-256)"},
    {"MeshTrafficPermission", mtp, NULL},
    {"MeshTimeout", timeout,
     "the sidecar enforces connection, idle, HTTP request, request-headers, stream-idle, "
     "stream and connection duration timeouts, both ways; on incoming traffic (from, "
     "rules) a stream-idle timeout on upgraded (WebSocket) streams is not there yet"},
    {"MeshRetry", retry,
     "the sidecar retries TCP connects, HTTP requests (numRetries, perTryTimeout, backOff, "
     "retryOn, retriableRequestHeaders) and gRPC calls (numRetries, perTryTimeout, backOff, "
     "retryOn); rate-limited back-off, retriable response headers and host selection are not "
     "there yet"},
    {"MeshCircuitBreaker", breaker,
     "the sidecar limits connections, pending connections, requests and retries in flight, and "
     "ejects endpoints on consecutive failures; success-rate and failure-percentage detectors, "
     "panic thresholds, connection pools and inbound (from) limits are not there yet"},
    {"MeshLoadBalancingStrategy", lb,
     "the sidecar balances with RoundRobin, Random and LeastRequest, hashes HTTP requests "
     "with RingHash and Maglev (hashPolicies Header, Cookie, QueryParameter, SourceIP and "
     "Connection sourceIP; TCP traffic of such a service is balanced round robin) and fails "
     "over across zones; ring and table sizes, hash functions, cookies the sidecar would set "
     "(ttl, path), FilterState, LeastRequest options, local-zone affinity and failover "
     "thresholds are not there yet"},
    {"MeshHealthCheck", health,
     "the sidecar checks by TCP connect, by an HTTP GET of http.path with "
     "http.requestHeadersToAdd (http and http2 services), or by grpc.health.v1 Health/Check "
     "(grpc services); payload checks, jitter and panic thresholds are not there yet"},
    {"MeshHTTPRoute", http_route,
     "a backendRef names a service, narrowed by a MeshServiceSubset's tags to the instances "
     "carrying them, in this zone and (through their ingress) in others; ports and "
     "namespaces do not narrow it yet"},
    {"MeshTCPRoute", tcp_route,
     "a backendRef names a service, narrowed by a MeshServiceSubset's tags to the instances "
     "carrying them, in this zone and (through their ingress) in others; ports and "
     "namespaces do not narrow it yet"},
    {"MeshFaultInjection", fault,
     "the sidecar injects faults into the requests it receives (from); client-side faults (to) "
     "are not there yet"},
    {"MeshMetric", metric,
     "the sidecar serves every metric it has (includeUnused: true) over plain HTTP on the first "
     "Prometheus backend's port and path, and appends the applications' metrics; metric "
     "profiles and regex filters, includeUnused: false, clientId (the zone's /prometheus/sd "
     "lists every proxy), TLS on the metrics endpoint and OpenTelemetry backends are not there "
     "yet"},
    {"MeshRateLimit", rate_limit,
     "the sidecar limits what it receives (from); limits on outgoing traffic (to) are not "
     "there yet"},
    {"MeshAccessLog", access_log, "every field is enforced"},
    {"MeshTrace", trace,
     "the sidecar reports spans to Zipkin (v2 JSON) and OpenTelemetry (OTLP/HTTP protobuf) "
     "backends; Datadog backends are not supported: with one, the sidecar propagates trace "
     "headers and records no spans"},
};

/* Is path (entry indexes removed) enforced? */
static bool enforced(const struct enforced *e, const char *path)
{
    for (const char *const *p = e->paths; *p; p++) {
        size_t n = strlen(*p);
        if (n > 2 && !strcmp(*p + n - 2, ".*")) {
            if (!strncmp(path, *p, n - 1) || (!strncmp(path, *p, n - 2) && !path[n - 2]))
                return true;
        } else if (!strcmp(path, *p)) {
            return true;
        }
    }
    return false;
}

/* A string field's value, or "". */
static const char *string_value(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *v = *(char *const *)((const char *)m + f->offset);
    return v ? v : "";
}

/* An enforced field whose value the sidecar may still not honour: true
 * when it does (value-level checks). */
static bool value_enforced(const char *bare, const ProtobufCMessage *m,
                           const ProtobufCFieldDescriptor *f);

/* Load-balancer types the sidecar has (a value-level check). */
static bool lb_type_known(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    int v = *(const int *)((const char *)m + f->offset);
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
    return ev && (!strcmp(ev->name, "RoundRobin") || !strcmp(ev->name, "Random") ||
                  !strcmp(ev->name, "LeastRequest") || !strcmp(ev->name, "RingHash") ||
                  !strcmp(ev->name, "Maglev"));
}

static bool value_enforced(const char *bare, const ProtobufCMessage *m,
                           const ProtobufCFieldDescriptor *f)
{
    if (!strcmp(bare, "to.default.loadBalancer.type"))
        return lb_type_known(m, f);
    if (!strcmp(bare, "default.backends.prometheus.tls.mode"))
        return !strcmp(string_value(m, f), "Disabled");
    if (!strcmp(bare, "default.sidecar.includeUnused"))
        return *(const protobuf_c_boolean *)((const char *)m + f->offset);
    return true;
}

struct walk {
    const struct enforced *e;
    struct hy_diag *w;
};

/* path: with indexes, for the user; bare: without, for the table. */
static void walk(struct walk *wk, const ProtobufCMessage *m, const char *path, const char *bare)
{
    if (strlen(path) >= HY_POLICY_PATH_MAX - 64)
        return; /* deeper than any policy of ours */
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!hy_codec_field_set(m, f))
            continue;
        char name[128], p[HY_POLICY_PATH_MAX], b[HY_POLICY_PATH_MAX];
        hy_codec_camel(f->name, name, sizeof(name));
        snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", name);
        snprintf(b, sizeof(b), "%s%s%s", bare, bare[0] ? "." : "", name);
        if (f->descriptor == &hypha__v1__target_ref__descriptor &&
            f->label != PROTOBUF_C_LABEL_REPEATED) {
            const Hypha__V1__TargetRef *t =
                *(const Hypha__V1__TargetRef *const *)((const char *)m + f->offset);
            char np[HY_POLICY_PATH_MAX + 16];
            snprintf(np, sizeof(np), "%s.namespace", p);
            if (t->namespace_)
                hy_diag_add(wk->w, 0, 0, np,
                            "accepted, not enforced: Hypha has no Kubernetes namespaces, so the "
                            "service is matched by its name alone");
        }
        if (enforced(wk->e, b)) {
            if (!value_enforced(b, m, f))
                hy_diag_add(wk->w, 0, 0, p, "accepted, not enforced yet: %s", wk->e->why);
            continue;
        }
        bool message = f->type == PROTOBUF_C_TYPE_MESSAGE && !hy_codec_is_map_entry(f) &&
                       f->descriptor != &hypha__v1__duration__descriptor;
        if (!message) {
            hy_diag_add(wk->w, 0, 0, p, "accepted, not enforced yet: %s", wk->e->why);
            continue;
        }
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            walk(wk, *(ProtobufCMessage *const *)((const char *)m + f->offset), p, b);
            continue;
        }
        size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
        ProtobufCMessage *const *v =
            *(ProtobufCMessage *const *const *)((const char *)m + f->offset);
        for (size_t k = 0; k < n; k++) {
            char pk[HY_POLICY_PATH_MAX + 24];
            snprintf(pk, sizeof(pk), "%s[%zu]", p, k);
            walk(wk, v[k], pk, b);
        }
    }
}

/* A MeshTrust for another trust domain: its CAs are kept out of the
 * sidecars' trust bundle (zone/dp_server.c), since a sidecar checks only
 * that a peer's ID is spiffe://<mesh>/... and would otherwise take such a
 * CA's word for this mesh's identities. */
static void trust_domain_warning(const struct hy_resource *r, struct hy_diag *w)
{
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)r->spec;
    const char *mesh = r->meta->mesh ? r->meta->mesh : "";
    if (!t->trust_domain || !strcmp(t->trust_domain, mesh))
        return;
    hy_diag_add(w, 0, 0, "spec.trustDomain",
                "accepted, not honoured: the sidecars of mesh %s accept only peers whose SPIFFE "
                "ID is spiffe://%s/..., and a CA trusted for another domain must not vouch for "
                "this mesh's identities, so these CAs are not sent to them (for peers whose CA "
                "issues spiffe://%s/... IDs, say trustDomain: %s)",
                mesh, mesh, mesh, mesh);
}

/* proxyTypes without Sidecar: Hypha has no gateways, so the policy
 * selects no proxy; said, since a Deny that applies nowhere is easy to
 * misread. */
static void proxy_types_warning(const struct hy_resource *r, struct hy_diag *w)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(r->spec->descriptor, "target_ref");
    if (!f || f->descriptor != &hypha__v1__target_ref__descriptor)
        return;
    const Hypha__V1__TargetRef *t =
        *(const Hypha__V1__TargetRef *const *)((const char *)r->spec + f->offset);
    if (!t || !t->n_proxy_types)
        return;
    for (size_t i = 0; i < t->n_proxy_types; i++)
        if (t->proxy_types[i] && !strcmp(t->proxy_types[i], "Sidecar"))
            return;
    hy_diag_add(w, 0, 0, "spec.targetRef.proxyTypes",
                "selects no proxy: it leaves out Sidecar, and Hypha has no gateways");
}

/* Kuma's shadow mode (label kuma.io/effect: shadow, read as
 * hypha.io/effect): the policy is stored and applies to no proxy. */
static void shadow_warning(const struct hy_resource *r, struct hy_diag *w)
{
    const Hypha__V1__Meta *m = r->meta;
    for (size_t i = 0; m && i < m->n_labels; i++)
        if (m->labels[i]->key && !strcmp(m->labels[i]->key, "hypha.io/effect") &&
            m->labels[i]->value && !strcmp(m->labels[i]->value, "shadow"))
            hy_diag_add(w, 0, 0, "labels.kuma.io/effect",
                        "shadow: stored, not enforced (Kuma's shadow mode): no proxy gets this "
                        "policy while the label is there; to see what it would change, apply it "
                        "without the label with `hyphactl apply --dry-run`");
}

/* MeshMetric: the sidecar serves one Prometheus endpoint, the first
 * Prometheus backend's; the others are said. */
static void metric_backends_warning(const struct hy_resource *r, struct hy_diag *w)
{
    const Hypha__V1__MeshMetric *m = (const Hypha__V1__MeshMetric *)r->spec;
    const Hypha__V1__MeshMetric__Conf *c = m->default_;
    size_t first = SIZE_MAX;
    for (size_t i = 0; c && i < c->n_backends; i++) {
        if (!c->backends[i]->type || strcmp(c->backends[i]->type, "Prometheus"))
            continue;
        if (first == SIZE_MAX) {
            first = i;
            continue;
        }
        char p[96];
        snprintf(p, sizeof(p), "spec.default.backends[%zu]", i);
        hy_diag_add(w, 0, 0, p,
                    "accepted, not enforced yet: the sidecar serves one Prometheus endpoint, "
                    "backends[%zu]'s; Kuma's listener per clientId is not there yet",
                    first);
    }
}

void hy_policy_warnings(const struct hy_resource *r, struct hy_diag *w)
{
    if (!strcmp(r->type->name, "MeshTrust"))
        trust_domain_warning(r, w);
    if (!strcmp(r->type->name, "MeshMetric"))
        metric_backends_warning(r, w);
    for (int t = 0; t < HY_POLICY_NTYPES; t++)
        if (!strcmp(hy_policy_type_names[t], r->type->name)) {
            shadow_warning(r, w);
            proxy_types_warning(r, w);
        }
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (!strcmp(table[i].type, r->type->name)) {
            struct walk wk = {&table[i], w};
            walk(&wk, r->spec, r->type->spec_inline ? "" : "spec", "");
        }
}
