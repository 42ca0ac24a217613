/* Validators of the L7 policies (MeshHTTPRoute, MeshTCPRoute,
 * MeshFaultInjection, MeshRateLimit) with Kuma's rules and field paths,
 * and the value formats they share with the zone that maps them
 * (percentages, bandwidths). */
#include <ctype.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policies.pb-c.h"
#include "resource.h"
#include "validate.h"
#include "validate_int.h"
#include "poison.h"

#define K_TOP                                                                                      \
    (HY_VK(Mesh) | HY_VK(MeshSubset) | HY_VK(MeshService) | HY_VK(MeshServiceSubset) |             \
     HY_VK(Dataplane))
#define K_FROM (HY_VK(Mesh) | HY_VK(MeshSubset) | HY_VK(MeshService) | HY_VK(MeshServiceSubset))
#define P 256 /* bytes of a field path */

/* A field path into p: cut at size like snprintf, which is what a path this
 * long deserves (the diagnostics name it; nothing parses it back). */
__attribute__((format(printf, 3, 4))) static void pathf(char *p, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, size, fmt, ap);
    va_end(ap);
}

bool hy_percentage_per_million(const char *s, uint32_t *out)
{
    /* Kuma's int-or-string: digits, optionally a '.' and more digits */
    uint64_t whole = 0, frac = 0, scale = 1;
    const char *c = s;
    if (!c || !*c)
        return false;
    for (; isdigit((unsigned char)*c); c++)
        if ((whole = whole * 10 + (uint64_t)(*c - '0')) > 100)
            return false;
    if (c == s && *c != '.')
        return false;
    if (*c == '.') {
        const char *f = ++c;
        for (; isdigit((unsigned char)*c); c++)
            if (scale < 1000000000) { /* digits past the ninth do not matter */
                frac = frac * 10 + (uint64_t)(*c - '0');
                scale *= 10;
            }
        if (c == f)
            return false;
    }
    if (*c)
        return false;
    /* percent to per million: x 10000 */
    uint64_t ppm = whole * 10000 + frac * 10000 / scale;
    if (ppm > 1000000)
        return false;
    *out = (uint32_t)ppm;
    return true;
}

bool hy_bandwidth_bytes_per_s(const char *s, uint32_t *out)
{
    /* Kuma's \d*\s?[gmk]?bps, in kbps (k = 1000) and then, as Envoy reads
     * Kuma's limit_kbps, KiB per second */
    const char *c = s;
    uint64_t n = 0;
    if (!c || !isdigit((unsigned char)*c))
        return false;
    for (; isdigit((unsigned char)*c); c++)
        if ((n = n * 10 + (uint64_t)(*c - '0')) > 1000000000000ull)
            return false;
    if (*c == ' ')
        c++;
    uint64_t bps_per_unit = 1;
    if (*c == 'k' || *c == 'm' || *c == 'g') {
        bps_per_unit = *c == 'k' ? 1000 : *c == 'm' ? 1000000 : 1000000000;
        c++;
    }
    if (strcmp(c, "bps"))
        return false;
    uint64_t kbps = n * bps_per_unit / 1000;
    uint64_t bytes = kbps * 1024;
    if (bytes > UINT32_MAX)
        return false;
    *out = (uint32_t)bytes;
    return true;
}

static bool one_of(const char *s, const char *const *v)
{
    for (; s && *v; v++)
        if (!strcmp(s, *v))
            return true;
    return false;
}

static void check_regex(struct hy_diag *d, const char *path, const char *re)
{
    regex_t x;
    int rc = regcomp(&x, re ? re : "", REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why[128];
        regerror(rc, &x, why, sizeof(why));
        hy_diag_add(d, 0, 0, path, "not a regular expression (POSIX extended): %s", why);
        return;
    }
    regfree(&x);
}

static void check_percentage(struct hy_diag *d, const char *path, const char *s)
{
    uint32_t ppm;
    if (s && !hy_percentage_per_million(s, &ppm))
        hy_diag_add(d, 0, 0, path, "\"%.32s\" must be a number in the inclusive range [0, 100]", s);
}

/* Kuma's PreciseHostname: an RFC 1123 subdomain that is not an IP. */
static void check_hostname(struct hy_diag *d, const char *path, const char *h)
{
    if (!h)
        return;
    size_t n = strlen(h);
    bool digits_dots = n > 0, ok = n > 0 && n <= 253;
    for (size_t i = 0; ok && i < n; i++) {
        char c = h[i];
        bool edge = i == 0 || i == n - 1 || h[i - 1] == '.' || h[i + 1] == '.';
        if (c == '.')
            ok = i > 0 && h[i - 1] != '.' && i < n - 1;
        else if (c == '-')
            ok = !edge;
        else
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        digits_dots = digits_dots && (c == '.' || isdigit((unsigned char)c));
    }
    if (ok && (digits_dots || strchr(h, ':')))
        hy_diag_add(d, 0, 0, path, "cannot be an IP address");
    else if (!ok)
        hy_diag_add(d, 0, 0, path,
                    "\"%.64s\" is not a hostname (lowercase RFC 1123: letters, digits, '-' and "
                    "'.', at most 253 characters)",
                    h);
}

static void check_header_matches(struct hy_diag *d, const char *path, size_t n,
                                 Hypha__V1__HttpHeaderMatch *const *v)
{
    static const char *const types[] = {"Exact",  "Present", "RegularExpression",
                                        "Absent", "Prefix",  NULL};
    char p[P];
    for (size_t i = 0; i < n; i++) {
        const Hypha__V1__HttpHeaderMatch *h = v[i];
        const char *type = h->type ? h->type : "Exact";
        pathf(p, sizeof(p), "%s[%zu].name", path, i);
        if (!h->name || !h->name[0])
            hy_diag_add(d, 0, 0, p, "required");
        pathf(p, sizeof(p), "%s[%zu].type", path, i);
        if (!one_of(type, types)) {
            hy_diag_add(d, 0, 0, p,
                        "\"%.32s\" is not a header match type (expected Exact, Present, "
                        "RegularExpression, Absent or Prefix)",
                        type);
            continue;
        }
        pathf(p, sizeof(p), "%s[%zu].value", path, i);
        if ((!strcmp(type, "Present") || !strcmp(type, "Absent")) && h->value && h->value[0])
            hy_diag_add(d, 0, 0, p, "must not be defined when type is %s", type);
        if (!strcmp(type, "RegularExpression"))
            check_regex(d, p, h->value);
    }
}

/* A backendRef of a route (or a mirror's): a service, or a subset of it. */
static void check_backend_ref(struct hy_diag *d, const char *path, const Hypha__V1__BackendRef *b)
{
    char p[P];
    pathf(p, sizeof(p), "%s.kind", path);
    if (!b->has_kind) {
        hy_diag_add(d, 0, 0, p, "required (MeshService or MeshServiceSubset)");
        return;
    }
    if (b->kind != HYPHA__V1__TARGET_REF__KIND__MeshService &&
        b->kind != HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&hypha__v1__target_ref__kind__descriptor, b->kind);
        hy_diag_add(d, 0, 0, p, "%s is not allowed here (expected MeshService, MeshServiceSubset)",
                    v ? v->name : "?");
    }
    pathf(p, sizeof(p), "%s.name", path);
    if (!b->name || !b->name[0])
        hy_diag_add(d, 0, 0, p, "required: the service traffic goes to");
    pathf(p, sizeof(p), "%s.tags", path);
    if (b->n_tags && b->kind == HYPHA__V1__TARGET_REF__KIND__MeshService)
        hy_diag_add(d, 0, 0, p, "must be empty when kind is MeshService (use MeshServiceSubset)");
    hy_validate_map(d, p, b->n_tags, (void *const *)b->tags);
    pathf(p, sizeof(p), "%s.labels", path);
    if (b->n_labels)
        hy_diag_add(d, 0, 0, p,
                    "not supported: name the service (Hypha has no MeshService "
                    "resources to select by labels)");
    pathf(p, sizeof(p), "%s.port", path);
    if (b->has_port && (b->port == 0 || b->port > 65535))
        hy_diag_add(d, 0, 0, p, "%u is not a port (expected 1-65535)", b->port);
}

static void check_backend_refs(struct hy_diag *d, const char *path, size_t n,
                               Hypha__V1__BackendRef *const *v)
{
    char p[P];
    for (size_t i = 0; i < n; i++) {
        pathf(p, sizeof(p), "%s[%zu]", path, i);
        check_backend_ref(d, p, v[i]);
    }
}

/* ----- MeshHTTPRoute ----- */

typedef Hypha__V1__MeshHTTPRoute__Match http_match;
typedef Hypha__V1__MeshHTTPRoute__Filter http_filter;

static void check_matches(struct hy_diag *d, const char *path, size_t n, http_match *const *v)
{
    static const char *const paths[] = {"Exact", "PathPrefix", "RegularExpression", NULL};
    static const char *const methods[] = {"CONNECT", "DELETE", "GET", "HEAD",  "OPTIONS",
                                          "PATCH",   "POST",   "PUT", "TRACE", NULL};
    static const char *const qtypes[] = {"Exact", "RegularExpression", NULL};
    char p[P];
    for (size_t i = 0; i < n; i++) {
        const http_match *m = v[i];
        const Hypha__V1__MeshHTTPRoute__PathMatch *pm = m->path;
        if (pm) {
            pathf(p, sizeof(p), "%s[%zu].path.type", path, i);
            if (!pm->type)
                hy_diag_add(d, 0, 0, p, "required (Exact, PathPrefix or RegularExpression)");
            else if (!one_of(pm->type, paths))
                hy_diag_add(d, 0, 0, p,
                            "\"%.32s\" is not a path match type (expected Exact, PathPrefix or "
                            "RegularExpression)",
                            pm->type);
            pathf(p, sizeof(p), "%s[%zu].path.value", path, i);
            const char *val = pm->value ? pm->value : "";
            if (!val[0])
                hy_diag_add(d, 0, 0, p, "required");
            else if (pm->type && !strcmp(pm->type, "RegularExpression"))
                check_regex(d, p, val);
            else if (pm->type && val[0] != '/')
                hy_diag_add(d, 0, 0, p, "must be an absolute path");
            else if (pm->type && !strcmp(pm->type, "PathPrefix") && strcmp(val, "/") &&
                     val[strlen(val) - 1] == '/')
                hy_diag_add(d, 0, 0, p,
                            "does not need a trailing slash because only a `/`-separated prefix "
                            "or an entire path is matched");
        }
        pathf(p, sizeof(p), "%s[%zu].method", path, i);
        if (m->method && !one_of(m->method, methods))
            hy_diag_add(d, 0, 0, p,
                        "\"%.32s\" is not a method (expected CONNECT, DELETE, GET, HEAD, OPTIONS, "
                        "PATCH, POST, PUT or TRACE)",
                        m->method);
        for (size_t k = 0; k < m->n_query_params; k++) {
            const Hypha__V1__MeshHTTPRoute__QueryParamsMatch *q = m->query_params[k];
            pathf(p, sizeof(p), "%s[%zu].queryParams[%zu].type", path, i, k);
            if (!q->type || !one_of(q->type, qtypes))
                hy_diag_add(d, 0, 0, p, "%s%.32s%s (expected Exact or RegularExpression)",
                            q->type ? "\"" : "required", q->type ? q->type : "",
                            q->type ? "\" is not a query parameter match type" : "");
            pathf(p, sizeof(p), "%s[%zu].queryParams[%zu].name", path, i, k);
            if (!q->name || !q->name[0]) {
                hy_diag_add(d, 0, 0, p, "required");
                continue;
            }
            for (size_t j = 0; j < k; j++)
                if (m->query_params[j]->name && !strcmp(m->query_params[j]->name, q->name)) {
                    hy_diag_add(d, 0, 0, p, "multiple entries for name %s", q->name);
                    break;
                }
            pathf(p, sizeof(p), "%s[%zu].queryParams[%zu].value", path, i, k);
            if (q->type && !strcmp(q->type, "RegularExpression"))
                check_regex(d, p, q->value);
        }
        pathf(p, sizeof(p), "%s[%zu].headers", path, i);
        check_header_matches(d, p, m->n_headers, m->headers);
    }
}

static void check_modifier(struct hy_diag *d, const char *path,
                           const Hypha__V1__MeshHTTPRoute__HeaderModifier *m)
{
    char p[P];
    if (!m) {
        hy_diag_add(d, 0, 0, path, "must be defined");
        return;
    }
    if (!m->n_set && !m->n_add && !m->n_remove) {
        hy_diag_add(d, 0, 0, path, "must have at least one defined: set, add, remove");
        return;
    }
    /* one action per header name (Kuma, the Gateway API) */
    const char *names[48];
    size_t nn = 0;
    static const char *const lists[] = {"set", "add", "remove"};
    for (int l = 0; l < 3; l++) {
        size_t n = l == 0 ? m->n_set : l == 1 ? m->n_add : m->n_remove;
        for (size_t i = 0; i < n; i++) {
            const char *name = l == 0 ? m->set[i]->name : l == 1 ? m->add[i]->name : m->remove[i];
            pathf(p, sizeof(p), "%s.%s[%zu].name", path, lists[l], i);
            if (l == 2)
                pathf(p, sizeof(p), "%s.remove[%zu]", path, i);
            if (!name || !name[0]) {
                hy_diag_add(d, 0, 0, p, "required");
                continue;
            }
            if (i >= 16) {
                hy_diag_add(d, 0, 0, p, "at most 16 entries");
                continue;
            }
            for (size_t k = 0; k < nn; k++)
                if (!strcasecmp(names[k], name)) {
                    hy_diag_add(d, 0, 0, p, "duplicate header name");
                    break;
                }
            if (nn < sizeof(names) / sizeof(*names))
                names[nn++] = name;
        }
    }
}

static bool all_prefix(size_t n, http_match *const *v)
{
    for (size_t i = 0; i < n; i++)
        if (!v[i]->path || !v[i]->path->type || strcmp(v[i]->path->type, "PathPrefix"))
            return false;
    return true;
}

static void check_path_rewrite(struct hy_diag *d, const char *path,
                               const Hypha__V1__MeshHTTPRoute__PathRewrite *r, bool prefixes)
{
    char p[P];
    if (!r)
        return;
    pathf(p, sizeof(p), "%s.type", path);
    if (!r->type || (strcmp(r->type, "ReplaceFullPath") && strcmp(r->type, "ReplacePrefixMatch"))) {
        hy_diag_add(d, 0, 0, p, "%s (expected ReplaceFullPath or ReplacePrefixMatch)",
                    r->type ? "unknown type" : "required");
        return;
    }
    bool full = !strcmp(r->type, "ReplaceFullPath");
    pathf(p, sizeof(p), "%s.%s", path, full ? "replaceFullPath" : "replacePrefixMatch");
    if (!(full ? r->replace_full_path : r->replace_prefix_match))
        hy_diag_add(d, 0, 0, p, "must be defined when type is %s", r->type);
    if (r->replace_prefix_match && !prefixes) {
        pathf(p, sizeof(p), "%s.replacePrefixMatch", path);
        hy_diag_add(d, 0, 0, p, "can only appear if all matches match a path prefix");
    }
}

static void check_filters(struct hy_diag *d, const char *path, size_t n, http_filter *const *v,
                          bool prefixes)
{
    static const char *const types[] = {"RequestHeaderModifier", "ResponseHeaderModifier",
                                        "RequestRedirect",       "URLRewrite",
                                        "RequestMirror",         NULL};
    static const unsigned codes[] = {301, 302, 303, 307, 308};
    char p[P];
    for (size_t i = 0; i < n; i++) {
        const http_filter *f = v[i];
        pathf(p, sizeof(p), "%s[%zu].type", path, i);
        if (!f->type || !one_of(f->type, types)) {
            hy_diag_add(d, 0, 0, p,
                        "%s (expected RequestHeaderModifier, ResponseHeaderModifier, "
                        "RequestRedirect, URLRewrite or RequestMirror)",
                        f->type ? "unknown filter type" : "required");
            continue;
        }
        if (!strcmp(f->type, "RequestHeaderModifier")) {
            pathf(p, sizeof(p), "%s[%zu].requestHeaderModifier", path, i);
            check_modifier(d, p, f->request_header_modifier);
        } else if (!strcmp(f->type, "ResponseHeaderModifier")) {
            pathf(p, sizeof(p), "%s[%zu].responseHeaderModifier", path, i);
            check_modifier(d, p, f->response_header_modifier);
        } else if (!strcmp(f->type, "RequestRedirect")) {
            const Hypha__V1__MeshHTTPRoute__RequestRedirect *r = f->request_redirect;
            pathf(p, sizeof(p), "%s[%zu].requestRedirect", path, i);
            if (!r) {
                hy_diag_add(d, 0, 0, p, "must be defined");
                continue;
            }
            char q[P + 32];
            snprintf(q, sizeof(q), "%s.scheme", p);
            if (r->scheme && strcmp(r->scheme, "http") && strcmp(r->scheme, "https"))
                hy_diag_add(d, 0, 0, q, "\"%.16s\": expected http or https", r->scheme);
            snprintf(q, sizeof(q), "%s.hostname", p);
            check_hostname(d, q, r->hostname);
            snprintf(q, sizeof(q), "%s.port", p);
            if (r->has_port && (r->port == 0 || r->port > 65535))
                hy_diag_add(d, 0, 0, q, "%u is not a port (expected 1-65535)", r->port);
            snprintf(q, sizeof(q), "%s.statusCode", p);
            bool known = !r->has_status_code;
            for (size_t k = 0; !known && k < sizeof(codes) / sizeof(*codes); k++)
                known = r->status_code == codes[k];
            if (!known)
                hy_diag_add(d, 0, 0, q, "%u: expected 301, 302, 303, 307 or 308", r->status_code);
            snprintf(q, sizeof(q), "%s.path", p);
            check_path_rewrite(d, q, r->path, prefixes);
        } else if (!strcmp(f->type, "URLRewrite")) {
            const Hypha__V1__MeshHTTPRoute__URLRewrite *r = f->url_rewrite;
            pathf(p, sizeof(p), "%s[%zu].urlRewrite", path, i);
            if (!r) {
                hy_diag_add(d, 0, 0, p, "must be defined");
                continue;
            }
            char q[P + 32];
            snprintf(q, sizeof(q), "%s.hostname", p);
            check_hostname(d, q, r->hostname);
            snprintf(q, sizeof(q), "%s.path", p);
            check_path_rewrite(d, q, r->path, prefixes);
            snprintf(q, sizeof(q), "%s.hostToBackendHostname", p);
            if (r->has_host_to_backend_hostname && r->host_to_backend_hostname)
                hy_diag_add(d, 0, 0, q, "can only be set with MeshGateway (Hypha has none)");
        } else {
            const Hypha__V1__MeshHTTPRoute__RequestMirror *r = f->request_mirror;
            pathf(p, sizeof(p), "%s[%zu].requestMirror", path, i);
            if (!r) {
                hy_diag_add(d, 0, 0, p, "must be defined");
                continue;
            }
            char q[P + 32];
            snprintf(q, sizeof(q), "%s.backendRef", p);
            hy_validate_target_ref(d, q, r->backend_ref,
                                   HY_VK(MeshService) | HY_VK(MeshServiceSubset));
            snprintf(q, sizeof(q), "%s.percentage", p);
            check_percentage(d, q, r->percentage);
        }
    }
}

void hy_validate_http_route(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshHTTPRoute *s = (const void *)r->spec;
    char p[P];
    if (s->target_ref)
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    if (!s->n_to)
        hy_diag_add(d, 0, 0, "spec.to", "at least one entry is required");
    for (size_t i = 0; i < s->n_to; i++) {
        const Hypha__V1__MeshHTTPRoute__To *t = s->to[i];
        pathf(p, sizeof(p), "spec.to[%zu].targetRef", i);
        hy_validate_target_ref(d, p, t->target_ref, HY_VK(MeshService));
        if (t->n_hostnames) {
            pathf(p, sizeof(p), "spec.to[%zu].hostnames", i);
            hy_diag_add(d, 0, 0, p, "must not be defined: hostnames apply to MeshGateway routes");
        }
        for (size_t j = 0; j < t->n_rules; j++) {
            const Hypha__V1__MeshHTTPRoute__Rule *rule = t->rules[j];
            pathf(p, sizeof(p), "spec.to[%zu].rules[%zu].matches", i, j);
            if (!rule->n_matches)
                hy_diag_add(d, 0, 0, p,
                            "at least one match is required (every request: "
                            "[{path: {type: PathPrefix, value: /}}])");
            check_matches(d, p, rule->n_matches, rule->matches);
            pathf(p, sizeof(p), "spec.to[%zu].rules[%zu].default", i, j);
            if (!rule->default_) {
                hy_diag_add(d, 0, 0, p, "required (backendRefs and/or filters)");
                continue;
            }
            pathf(p, sizeof(p), "spec.to[%zu].rules[%zu].default.filters", i, j);
            check_filters(d, p, rule->default_->n_filters, rule->default_->filters,
                          all_prefix(rule->n_matches, rule->matches));
            pathf(p, sizeof(p), "spec.to[%zu].rules[%zu].default.backendRefs", i, j);
            check_backend_refs(d, p, rule->default_->n_backend_refs, rule->default_->backend_refs);
        }
    }
}

/* ----- MeshTCPRoute ----- */

void hy_validate_tcp_route(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshTCPRoute *s = (const void *)r->spec;
    char p[P];
    if (s->target_ref)
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    if (!s->n_to)
        hy_diag_add(d, 0, 0, "spec.to", "at least one entry is required");
    for (size_t i = 0; i < s->n_to; i++) {
        const Hypha__V1__MeshTCPRoute__To *t = s->to[i];
        pathf(p, sizeof(p), "spec.to[%zu].targetRef", i);
        hy_validate_target_ref(d, p, t->target_ref, HY_VK(MeshService));
        if (t->n_rules > 1) {
            pathf(p, sizeof(p), "spec.to[%zu].rules", i);
            hy_diag_add(d, 0, 0, p, "at most one rule (Kuma applies the first only)");
        }
        for (size_t j = 0; j < t->n_rules; j++) {
            const Hypha__V1__MeshTCPRoute__RuleConf *c = t->rules[j]->default_;
            pathf(p, sizeof(p), "spec.to[%zu].rules[%zu].default.backendRefs", i, j);
            if (!c || !c->n_backend_refs)
                hy_diag_add(d, 0, 0, p, "must be defined");
            else
                check_backend_refs(d, p, c->n_backend_refs, c->backend_refs);
        }
    }
}

/* ----- MeshFaultInjection ----- */

static void check_faults(struct hy_diag *d, const char *path,
                         const Hypha__V1__MeshFaultInjection__Conf *c)
{
    char p[P];
    if (!c) {
        hy_diag_add(d, 0, 0, path, "required");
        return;
    }
    for (size_t k = 0; k < c->n_http; k++) {
        const Hypha__V1__MeshFaultInjection__Fault *f = c->http[k];
        if (!f->abort && !f->delay && !f->response_bandwidth) {
            pathf(p, sizeof(p), "%s.http[%zu]", path, k);
            hy_diag_add(d, 0, 0, p,
                        "must have at least one defined: abort, delay, responseBandwidth");
        }
        if (f->abort) {
            pathf(p, sizeof(p), "%s.http[%zu].abort.httpStatus", path, k);
            if (!f->abort->has_http_status)
                hy_diag_add(d, 0, 0, p, "required");
            else if (f->abort->http_status < 100 || f->abort->http_status > 599)
                hy_diag_add(d, 0, 0, p, "%d must be in inclusive range [100, 599]",
                            f->abort->http_status);
            pathf(p, sizeof(p), "%s.http[%zu].abort.percentage", path, k);
            if (!f->abort->percentage)
                hy_diag_add(d, 0, 0, p, "required");
            check_percentage(d, p, f->abort->percentage);
        }
        if (f->delay) {
            pathf(p, sizeof(p), "%s.http[%zu].delay.value", path, k);
            if (!f->delay->value)
                hy_diag_add(d, 0, 0, p, "required");
            hy_validate_duration(d, p, f->delay->value);
            pathf(p, sizeof(p), "%s.http[%zu].delay.percentage", path, k);
            if (!f->delay->percentage)
                hy_diag_add(d, 0, 0, p, "required");
            check_percentage(d, p, f->delay->percentage);
        }
        if (f->response_bandwidth) {
            uint32_t bw;
            pathf(p, sizeof(p), "%s.http[%zu].responseBandwidth.limit", path, k);
            if (!f->response_bandwidth->limit)
                hy_diag_add(d, 0, 0, p, "required");
            else if (!hy_bandwidth_bytes_per_s(f->response_bandwidth->limit, &bw))
                hy_diag_add(d, 0, 0, p,
                            "\"%.32s\" has to be in the format: \\d*\\s?[gmk]?bps "
                            "(\"10kbps\", \"1 mbps\")",
                            f->response_bandwidth->limit);
            pathf(p, sizeof(p), "%s.http[%zu].responseBandwidth.percentage", path, k);
            if (!f->response_bandwidth->percentage)
                hy_diag_add(d, 0, 0, p, "required");
            check_percentage(d, p, f->response_bandwidth->percentage);
        }
    }
}

void hy_validate_fault_injection(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshFaultInjection *s = (const void *)r->spec;
    char p[P];
    if (s->target_ref)
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    if (!s->n_from && !s->n_to && !s->n_rules)
        hy_diag_add(d, 0, 0, "spec", "one of from, to or rules is required");
    for (size_t i = 0; i < s->n_rules; i++) {
        pathf(p, sizeof(p), "spec.rules[%zu].default", i);
        check_faults(d, p, s->rules[i]->default_);
    }
    for (int sec = 0; sec < 2; sec++) {
        size_t n = sec ? s->n_to : s->n_from;
        Hypha__V1__MeshFaultInjection__Entry *const *v = sec ? s->to : s->from;
        for (size_t i = 0; i < n; i++) {
            pathf(p, sizeof(p), "spec.%s[%zu].targetRef", sec ? "to" : "from", i);
            hy_validate_target_ref(d, p, v[i]->target_ref,
                                   sec ? HY_VK(Mesh) | HY_VK(MeshService) : K_FROM);
            pathf(p, sizeof(p), "spec.%s[%zu].default", sec ? "to" : "from", i);
            check_faults(d, p, v[i]->default_);
        }
    }
}

/* ----- MeshRateLimit ----- */

static void check_rate(struct hy_diag *d, const char *path, const Hypha__V1__MeshRateLimit__Rate *r)
{
    char p[P];
    pathf(p, sizeof(p), "%s.num", path);
    if (!r->has_num || r->num == 0)
        hy_diag_add(d, 0, 0, p, "must be greater than 0");
    pathf(p, sizeof(p), "%s.interval", path);
    if (!r->interval)
        hy_diag_add(d, 0, 0, p, "required");
    else if (r->interval->seconds < 0 ||
             (r->interval->seconds == 0 && r->interval->nanos < 50000000))
        hy_diag_add(d, 0, 0, p, "must be greater than or equal to: 50ms");
}

static void check_rate_limit(struct hy_diag *d, const char *path,
                             const Hypha__V1__MeshRateLimit__Conf *c)
{
    char p[P];
    if (!c || !c->local) {
        pathf(p, sizeof(p), "%s.local", path);
        hy_diag_add(d, 0, 0, c ? p : path, "required");
        return;
    }
    const Hypha__V1__MeshRateLimit__Local *l = c->local;
    if (!l->http && !l->tcp) {
        pathf(p, sizeof(p), "%s.local", path);
        hy_diag_add(d, 0, 0, p, "must have at least one defined: http, tcp");
    }
    if (l->http) {
        pathf(p, sizeof(p), "%s.local.http", path);
        bool off = l->http->has_disabled && l->http->disabled;
        if (!off && !l->http->request_rate)
            hy_diag_add(d, 0, 0, p, "requestRate must be defined unless disabled is true");
        if (l->http->request_rate) {
            pathf(p, sizeof(p), "%s.local.http.requestRate", path);
            check_rate(d, p, l->http->request_rate);
        }
        const Hypha__V1__MeshRateLimit__OnRateLimit *o = l->http->on_rate_limit;
        if (o && o->has_status && (o->status < 100 || o->status > 599)) {
            pathf(p, sizeof(p), "%s.local.http.onRateLimit.status", path);
            hy_diag_add(d, 0, 0, p, "%u must be in inclusive range [100, 599]", o->status);
        }
        for (int l2 = 0; o && o->headers && l2 < 2; l2++) {
            size_t n = l2 ? o->headers->n_add : o->headers->n_set;
            Hypha__V1__HttpHeader *const *v = l2 ? o->headers->add : o->headers->set;
            for (size_t k = 0; k < n; k++)
                if (!v[k]->name || !v[k]->name[0]) {
                    pathf(p, sizeof(p), "%s.local.http.onRateLimit.headers.%s[%zu].name", path,
                          l2 ? "add" : "set", k);
                    hy_diag_add(d, 0, 0, p, "required");
                }
        }
    }
    if (l->tcp) {
        pathf(p, sizeof(p), "%s.local.tcp", path);
        bool off = l->tcp->has_disabled && l->tcp->disabled;
        if (!off && !l->tcp->connection_rate)
            hy_diag_add(d, 0, 0, p, "connectionRate must be defined unless disabled is true");
        if (l->tcp->connection_rate) {
            pathf(p, sizeof(p), "%s.local.tcp.connectionRate", path);
            check_rate(d, p, l->tcp->connection_rate);
        }
    }
}

void hy_validate_rate_limit(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshRateLimit *s = (const void *)r->spec;
    char p[P];
    if (s->target_ref)
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    if (!s->n_from && !s->n_to && !s->n_rules)
        hy_diag_add(d, 0, 0, "spec", "one of from, to or rules is required");
    for (size_t i = 0; i < s->n_rules; i++) {
        pathf(p, sizeof(p), "spec.rules[%zu].default", i);
        check_rate_limit(d, p, s->rules[i]->default_);
    }
    for (int sec = 0; sec < 2; sec++) {
        size_t n = sec ? s->n_to : s->n_from;
        Hypha__V1__MeshRateLimit__Entry *const *v = sec ? s->to : s->from;
        for (size_t i = 0; i < n; i++) {
            pathf(p, sizeof(p), "spec.%s[%zu].targetRef", sec ? "to" : "from", i);
            hy_validate_target_ref(d, p, v[i]->target_ref,
                                   sec ? HY_VK(Mesh) | HY_VK(MeshService) : K_FROM);
            pathf(p, sizeof(p), "spec.%s[%zu].default", sec ? "to" : "from", i);
            check_rate_limit(d, p, v[i]->default_);
        }
    }
}
