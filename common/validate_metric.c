/* Validation of MeshMetric (Kuma's pkg/plugins/policies/meshmetric
 * validator, with its field paths): a top-level targetRef, one `default`
 * whose sidecar profiles, applications and backends are each checked for
 * what the sidecar and the zone's Prometheus discovery read. */
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policies.pb-c.h"
#include "resource.h"
#include "validate.h"
#include "validate_int.h"
#include "poison.h"

#define K_TOP                                                                                      \
    (HY_VK(Mesh) | HY_VK(MeshSubset) | HY_VK(MeshService) | HY_VK(MeshServiceSubset) |             \
     HY_VK(Dataplane))
#define P 256 /* bytes of a field path */

typedef Hypha__V1__MeshMetric__Selector selector_t;

__attribute__((format(printf, 3, 4))) static void pathf(char *p, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, size, fmt, ap);
    va_end(ap);
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
        hy_diag_add(d, 0, 0, path, "invalid regex (POSIX extended): %s", why);
        return;
    }
    regfree(&x);
}

/* An HTTP path: starts with '/', printable, no spaces (it goes on a
 * request line). */
static void check_http_path(struct hy_diag *d, const char *path, const char *v)
{
    if (!v)
        return;
    bool ok = v[0] == '/' && strlen(v) <= 1024;
    for (const char *c = v; ok && *c; c++)
        ok = (unsigned char)*c > 0x20 && *c != 0x7f;
    if (!ok)
        hy_diag_add(d, 0, 0, path,
                    "\"%.64s\" is not an HTTP path (expected /..., without spaces, at most 1024 "
                    "bytes)",
                    v);
}

static void check_port(struct hy_diag *d, const char *path, bool has, uint32_t port, bool required)
{
    if (!has && required)
        hy_diag_add(d, 0, 0, path, "required (a port 1-65535)");
    else if (has && (port == 0 || port > 65535))
        hy_diag_add(d, 0, 0, path, "port must be a valid (1-65535), got %u", port);
}

static void check_selectors(struct hy_diag *d, const char *which, size_t n, selector_t *const *v)
{
    static const char *const types[] = {"Prefix", "Regex", "Exact", "Contains", NULL};
    char p[P];
    for (size_t i = 0; i < n; i++) {
        pathf(p, sizeof(p), "spec.default.sidecar.profiles.%s[%zu].type", which, i);
        if (!v[i]->type)
            hy_diag_add(d, 0, 0, p, "required (Prefix, Regex, Exact or Contains)");
        else if (!one_of(v[i]->type, types))
            hy_diag_add(d, 0, 0, p,
                        "unrecognized type '%.40s' - 'Prefix', 'Regex', 'Exact', 'Contains' are "
                        "supported",
                        v[i]->type);
        pathf(p, sizeof(p), "spec.default.sidecar.profiles.%s[%zu].match", which, i);
        if (!v[i]->match)
            hy_diag_add(d, 0, 0, p, "required");
        else if (v[i]->type && !strcmp(v[i]->type, "Regex"))
            check_regex(d, p, v[i]->match);
    }
}

static void check_sidecar(struct hy_diag *d, const Hypha__V1__MeshMetric__Sidecar *s)
{
    static const char *const names[] = {"All", "Basic", "None", NULL};
    char p[P];
    if (!s)
        return;
    if (s->regex)
        check_regex(d, "spec.default.sidecar.regex", s->regex);
    const Hypha__V1__MeshMetric__Profiles *pr = s->profiles;
    if (!pr)
        return;
    for (size_t i = 0; i < pr->n_append_profiles; i++) {
        pathf(p, sizeof(p), "spec.default.sidecar.profiles.appendProfiles[%zu].name", i);
        const char *n = pr->append_profiles[i]->name;
        if (!n)
            hy_diag_add(d, 0, 0, p, "required (All, Basic or None)");
        else if (!one_of(n, names))
            hy_diag_add(d, 0, 0, p,
                        "unrecognized profile name '%.40s' - 'All', 'Basic', 'None' are supported",
                        n);
    }
    check_selectors(d, "exclude", pr->n_exclude, pr->exclude);
    check_selectors(d, "include", pr->n_include, pr->include);
}

/* An application's address: an IP or a host name, as a Dataplane's. */
static void check_address(struct hy_diag *d, const char *path, const char *a)
{
    if (!a)
        return;
    bool ok = a[0] && strlen(a) <= 253;
    for (const char *c = a; ok && *c; c++)
        ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
             strchr(".-:_", *c);
    if (!ok)
        hy_diag_add(d, 0, 0, path,
                    "\"%.64s\" is not an address (expected an IP address or a host name)", a);
}

static void check_applications(struct hy_diag *d, size_t n,
                               Hypha__V1__MeshMetric__Application *const *v)
{
    char p[P];
    for (size_t i = 0; i < n; i++) {
        pathf(p, sizeof(p), "spec.default.applications[%zu].port", i);
        check_port(d, p, v[i]->has_port, v[i]->port, true);
        pathf(p, sizeof(p), "spec.default.applications[%zu].path", i);
        check_http_path(d, p, v[i]->path);
        pathf(p, sizeof(p), "spec.default.applications[%zu].address", i);
        check_address(d, p, v[i]->address);
        if (v[i]->name && !v[i]->name[0]) {
            pathf(p, sizeof(p), "spec.default.applications[%zu].name", i);
            hy_diag_add(d, 0, 0, p, "empty: give a name or leave it out");
        }
    }
}

static void check_backends(struct hy_diag *d, size_t n, Hypha__V1__MeshMetric__Backend *const *v)
{
    static const char *const modes[] = {"Disabled", "ProvidedTLS", "ActiveMTLSBackend", NULL};
    char p[P];
    for (size_t i = 0; i < n; i++) {
        const Hypha__V1__MeshMetric__Backend *b = v[i];
        bool prom = b->type && !strcmp(b->type, "Prometheus");
        bool otel = b->type && !strcmp(b->type, "OpenTelemetry");
        pathf(p, sizeof(p), "spec.default.backends[%zu].type", i);
        if (!b->type) {
            hy_diag_add(d, 0, 0, p, "required (Prometheus or OpenTelemetry)");
            continue;
        }
        if (!prom && !otel) {
            hy_diag_add(d, 0, 0, p,
                        "unrecognized type '%.40s' - 'Prometheus', 'OpenTelemetry' are supported",
                        b->type);
            continue;
        }
        if (prom && b->open_telemetry) {
            pathf(p, sizeof(p), "spec.default.backends[%zu].openTelemetry", i);
            hy_diag_add(d, 0, 0, p, "set, but type is Prometheus (write it under prometheus)");
        }
        if (otel && b->prometheus) {
            pathf(p, sizeof(p), "spec.default.backends[%zu].prometheus", i);
            hy_diag_add(d, 0, 0, p, "set, but type is OpenTelemetry");
        }
        if (prom) {
            const Hypha__V1__MeshMetric__Prometheus *pr = b->prometheus;
            pathf(p, sizeof(p), "spec.default.backends[%zu].prometheus", i);
            if (!pr) {
                hy_diag_add(d, 0, 0, p, "must be defined");
                continue;
            }
            pathf(p, sizeof(p), "spec.default.backends[%zu].prometheus.port", i);
            check_port(d, p, pr->has_port, pr->port, false);
            pathf(p, sizeof(p), "spec.default.backends[%zu].prometheus.path", i);
            check_http_path(d, p, pr->path);
            if (pr->tls) {
                pathf(p, sizeof(p), "spec.default.backends[%zu].prometheus.tls.mode", i);
                if (!pr->tls->mode)
                    hy_diag_add(d, 0, 0, p,
                                "required (Disabled, ProvidedTLS or ActiveMTLSBackend)");
                else if (!one_of(pr->tls->mode, modes))
                    hy_diag_add(d, 0, 0, p,
                                "unrecognized mode '%.40s' - 'Disabled', 'ProvidedTLS', "
                                "'ActiveMTLSBackend' are supported",
                                pr->tls->mode);
            }
        } else {
            const Hypha__V1__MeshMetric__OpenTelemetry *o = b->open_telemetry;
            pathf(p, sizeof(p), "spec.default.backends[%zu].openTelemetry", i);
            if (!o) {
                hy_diag_add(d, 0, 0, p, "must be defined");
                continue;
            }
            pathf(p, sizeof(p), "spec.default.backends[%zu].openTelemetry.endpoint", i);
            if (!o->endpoint || !o->endpoint[0] || strchr(o->endpoint, ' '))
                hy_diag_add(d, 0, 0, p, "must be a valid url (the collector, HOST:PORT)");
            pathf(p, sizeof(p), "spec.default.backends[%zu].openTelemetry.refreshInterval", i);
            hy_validate_duration(d, p, o->refresh_interval);
        }
    }
}

void hy_validate_mesh_metric(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshMetric *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    const Hypha__V1__MeshMetric__Conf *c = s->default_;
    if (!c) {
        hy_diag_add(d, 0, 0, "spec.default",
                    "required: MeshMetric has one top-level default (sidecar, applications, "
                    "backends), no from or to");
        return;
    }
    check_sidecar(d, c->sidecar);
    check_applications(d, c->n_applications, c->applications);
    check_backends(d, c->n_backends, c->backends);
}
