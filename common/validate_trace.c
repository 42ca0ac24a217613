/* Validation of MeshTrace (Kuma's pkg/plugins/policies/meshtrace validator,
 * with its field paths): a top-level targetRef and one `default` holding
 * at most one backend (Zipkin, Datadog or OpenTelemetry), tags (a literal
 * or a header each) and sampling percentages. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

__attribute__((format(printf, 3, 4))) static void pathf(char *p, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, size, fmt, ap);
    va_end(ap);
}

bool hy_validate_trace_url(const char *s, char *host, size_t hsize, unsigned *port, char *path,
                           size_t psize)
{
    /* http://HOST[:PORT][/PATH]: what the sidecar's writer can POST to (no TLS) */
    if (!s || strncmp(s, "http://", 7) != 0)
        return false;
    const char *h = s + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (!hl || hl >= 256 || strlen(s) > 1024)
        return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return false;
    char hp[256];
    memcpy(hp, h, hl);
    hp[hl] = 0;
    unsigned long pt = 80;
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (hp[0] == '[' && !colon && hp[hl - 1] != ']')
        return false;
    if (colon) {
        char *port_s = hp[0] == '[' ? colon + 2 : colon + 1, *end;
        pt = strtoul(port_s, &end, 10);
        if (!*port_s || *end || pt < 1 || pt > 65535)
            return false;
        *(hp[0] == '[' ? colon + 1 : colon) = 0;
    }
    const char *hs = hp;
    size_t n = strlen(hs);
    if (hs[0] == '[') { /* [v6] */
        if (n < 3 || hs[n - 1] != ']')
            return false;
        hs++;
        n -= 2;
    }
    if (!n || n >= hsize)
        return false;
    if (host) {
        memcpy(host, hs, n);
        host[n] = 0;
    }
    if (port)
        *port = (unsigned)pt;
    const char *pp = slash ? slash : "/";
    if (path) {
        if (strlen(pp) >= psize)
            return false;
        snprintf(path, psize, "%s", pp);
    }
    return true;
}

/* host:port with a port 1-65535. */
static bool host_port(const char *s)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || strchr(s, '/') || strchr(s, ' ') || strlen(s) > 300)
        return false;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    return colon[1] && !*end && port >= 1 && port <= 65535;
}

static void check_backend(struct hy_diag *d, const char *path,
                          const Hypha__V1__MeshTrace__Backend *b)
{
    char p[P];
    const char *t = b->type;
    bool zipkin = t && !strcmp(t, "Zipkin"), dd = t && !strcmp(t, "Datadog"),
         otel = t && !strcmp(t, "OpenTelemetry");
    pathf(p, sizeof(p), "%s.type", path);
    if (!t)
        hy_diag_add(d, 0, 0, p, "must be defined (Zipkin, Datadog or OpenTelemetry)");
    else if (!zipkin && !dd && !otel)
        hy_diag_add(d, 0, 0, p, "\"%.32s\" must be one of Zipkin, Datadog, OpenTelemetry", t);
    if ((b->zipkin && !zipkin) || (b->datadog && !dd) || (b->open_telemetry && !otel))
        hy_diag_add(d, 0, 0, path, "only the field of its type (%s) may be set", t ? t : "none");
    if (zipkin) {
        pathf(p, sizeof(p), "%s.zipkin", path);
        if (!b->zipkin) {
            hy_diag_add(d, 0, 0, p, "must be defined");
            return;
        }
        pathf(p, sizeof(p), "%s.zipkin.url", path);
        if (!b->zipkin->url)
            hy_diag_add(d, 0, 0, p, "must be defined");
        else if (!hy_validate_trace_url(b->zipkin->url, NULL, 256, NULL, NULL, 1025))
            hy_diag_add(d, 0, 0, p,
                        "\"%.64s\" must be an http:// URL (http://HOST:PORT/api/v2/spans)",
                        b->zipkin->url);
        pathf(p, sizeof(p), "%s.zipkin.apiVersion", path);
        const char *v = b->zipkin->api_version;
        if (v && strcmp(v, "httpJson") != 0 && strcmp(v, "httpProto") != 0)
            hy_diag_add(d, 0, 0, p, "\"%.32s\" must be one of httpJson, httpProto", v);
        else if (v && !strcmp(v, "httpProto"))
            hy_diag_add(d, 0, 0, p,
                        "httpProto is not supported by Hypha's sidecar; use httpJson (the "
                        "default) or an OpenTelemetry backend");
    } else if (dd) {
        pathf(p, sizeof(p), "%s.datadog", path);
        if (!b->datadog)
            hy_diag_add(d, 0, 0, p, "must be defined");
        /* accepted (Kuma has it), reported by the policy engine's warnings */
    } else if (otel) {
        pathf(p, sizeof(p), "%s.openTelemetry", path);
        if (!b->open_telemetry) {
            hy_diag_add(d, 0, 0, p, "must be defined");
            return;
        }
        pathf(p, sizeof(p), "%s.openTelemetry.endpoint", path);
        if (!host_port(b->open_telemetry->endpoint))
            hy_diag_add(d, 0, 0, p, "must be HOST:PORT, not \"%.64s\"",
                        b->open_telemetry->endpoint ? b->open_telemetry->endpoint : "");
    }
}

static bool header_name(const char *s)
{
    if (!s || !*s || strlen(s) > 256)
        return false;
    for (const char *c = s; *c; c++)
        if (!strchr("!#$%&'*+-.^_`|~", *c) &&
            !((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
            return false;
    return true;
}

static void check_tags(struct hy_diag *d, size_t n, Hypha__V1__MeshTrace__Tag *const *v)
{
    char p[P];
    for (size_t i = 0; i < n; i++) {
        const Hypha__V1__MeshTrace__Tag *t = v[i];
        pathf(p, sizeof(p), "spec.default.tags[%zu].name", i);
        if (!t->name || !t->name[0])
            hy_diag_add(d, 0, 0, p, "must not be empty");
        for (size_t k = 0; k < i && t->name; k++)
            if (v[k]->name && !strcmp(v[k]->name, t->name))
                hy_diag_add(d, 0, 0, p, "\"%.64s\" is already the name of tags[%zu]", t->name, k);
        pathf(p, sizeof(p), "spec.default.tags[%zu]", i);
        if (!!t->literal + !!t->header != 1)
            hy_diag_add(d, 0, 0, p, "must set exactly one of literal, header");
        if (t->header) {
            pathf(p, sizeof(p), "spec.default.tags[%zu].header.name", i);
            if (!header_name(t->header->name))
                hy_diag_add(d, 0, 0, p, "\"%.64s\" must be an HTTP header name",
                            t->header->name ? t->header->name : "");
        }
    }
}

static void check_sampling(struct hy_diag *d, const Hypha__V1__MeshTrace__Sampling *s)
{
    const char *names[] = {"overall", "client", "random"};
    const char *vals[] = {s->overall, s->client, s->random};
    for (int i = 0; i < 3; i++) {
        uint32_t ppm;
        char p[P];
        pathf(p, sizeof(p), "spec.default.sampling.%s", names[i]);
        if (vals[i] && !hy_percentage_per_million(vals[i], &ppm))
            hy_diag_add(d, 0, 0, p, "\"%.32s\" must be a number in the inclusive range [0, 100]",
                        vals[i]);
    }
}

void hy_validate_mesh_trace(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshTrace *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    const Hypha__V1__MeshTrace__Conf *c = s->default_;
    if (!c) {
        hy_diag_add(d, 0, 0, "spec.default",
                    "required: MeshTrace has one top-level default (backends, tags, sampling), "
                    "no from or to");
        return;
    }
    if (c->n_backends > 1)
        hy_diag_add(d, 0, 0, "spec.default.backends",
                    "must have zero or one backend defined (%zu given)", c->n_backends);
    for (size_t i = 0; i < c->n_backends; i++) {
        char p[P];
        pathf(p, sizeof(p), "spec.default.backends[%zu]", i);
        check_backend(d, p, c->backends[i]);
    }
    check_tags(d, c->n_tags, c->tags);
    if (c->sampling)
        check_sampling(d, c->sampling);
}
