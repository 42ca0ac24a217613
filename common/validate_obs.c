/* The validator of MeshAccessLog with Kuma's rules and field paths
 * (pkg/plugins/policies/meshaccesslog/api/v1alpha1/validator.go); formats
 * are parsed by the sidecar's own parser (alog_fmt.h), so an unknown
 * command operator is refused by name when the policy is written. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alog_fmt.h"
#include "policies.pb-c.h"
#include "resource.h"
#include "validate.h"
#include "validate_int.h"
#include "poison.h"

#define P 256

#define K_TOP                                                                                      \
    (HY_VK(Mesh) | HY_VK(MeshSubset) | HY_VK(MeshService) | HY_VK(MeshServiceSubset) |             \
     HY_VK(Dataplane))

__attribute__((format(printf, 3, 4))) static void pathf(char *p, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, size, fmt, ap);
    va_end(ap);
}

static void check_template(struct hy_diag *d, const char *path, const char *s)
{
    char err[300];
    if (hy_alog_fmt_check(s, err, sizeof(err)) < 0)
        hy_diag_add(d, 0, 0, path, "%s", err);
}

static void check_format(struct hy_diag *d, const char *path,
                         const Hypha__V1__MeshAccessLog__Format *f)
{
    char p[P];
    pathf(p, sizeof(p), "%s.type", path);
    bool plain = f->type && !strcmp(f->type, "Plain");
    bool json = f->type && !strcmp(f->type, "Json");
    if (!f->type) {
        hy_diag_add(d, 0, 0, p, "must be defined (Plain or Json)");
        return;
    }
    if (!plain && !json) {
        hy_diag_add(d, 0, 0, p, "\"%.32s\" must be one of Plain, Json", f->type);
        return;
    }
    if (plain) {
        pathf(p, sizeof(p), "%s.plain", path);
        if (!f->plain)
            hy_diag_add(d, 0, 0, p, "must be defined");
        else if (!f->plain[0])
            hy_diag_add(d, 0, 0, p, "must not be empty");
        else
            check_template(d, p, f->plain);
        if (f->n_json) {
            pathf(p, sizeof(p), "%s.json", path);
            hy_diag_add(d, 0, 0, p, "must not be set when type is Plain");
        }
        return;
    }
    pathf(p, sizeof(p), "%s.json", path);
    if (!f->n_json)
        hy_diag_add(d, 0, 0, p, "must not be empty");
    if (f->plain) {
        pathf(p, sizeof(p), "%s.plain", path);
        hy_diag_add(d, 0, 0, p, "must not be set when type is Json");
    }
    for (size_t i = 0; i < f->n_json; i++) {
        const Hypha__V1__MeshAccessLog__JsonValue *v = f->json[i];
        pathf(p, sizeof(p), "%s.json[%zu].key", path, i);
        if (!v->key || !v->key[0])
            hy_diag_add(d, 0, 0, p, "key cannot be empty");
        for (size_t k = 0; k < i && v->key; k++)
            if (f->json[k]->key && !strcmp(f->json[k]->key, v->key))
                hy_diag_add(d, 0, 0, p, "\"%.64s\" is already the key of json[%zu]", v->key, k);
        pathf(p, sizeof(p), "%s.json[%zu].value", path, i);
        if (!v->value || !v->value[0])
            hy_diag_add(d, 0, 0, p, "value cannot be empty");
        else
            check_template(d, p, v->value);
    }
}

/* host:port with a port 1-65535 (Kuma: a valid URL-ish address). */
static bool host_port(const char *s)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || strchr(s, '/') || strchr(s, ' '))
        return false;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    return colon[1] && !*end && port >= 1 && port <= 65535;
}

/* OpenTelemetry attribute names: Kuma's ^[a-z]([a-z0-9]|[._][a-z0-9])*$. */
static bool otel_key(const char *s)
{
    if (!s || !islower((unsigned char)s[0]))
        return false;
    for (const char *c = s + 1; *c; c++) {
        if (islower((unsigned char)*c) || isdigit((unsigned char)*c))
            continue;
        if ((*c == '.' || *c == '_') &&
            (islower((unsigned char)c[1]) || isdigit((unsigned char)c[1]))) {
            c++;
            continue;
        }
        return false;
    }
    return true;
}

static void check_any(struct hy_diag *d, const char *path, const Hypha__V1__OtelAnyValue *v,
                      int depth)
{
    char p[P];
    if (depth > 8) {
        hy_diag_add(d, 0, 0, path, "nested deeper than 8 levels");
        return;
    }
    int set = !!v->string_value + v->has_bool_value + v->has_int_value + v->has_double_value +
              v->has_bytes_value + !!v->array_value + !!v->kvlist_value;
    if (set != 1)
        hy_diag_add(d, 0, 0, path,
                    "must set exactly one of stringValue, boolValue, intValue, doubleValue, "
                    "bytesValue, arrayValue, kvlistValue");
    if (v->string_value)
        check_template(d, path, v->string_value);
    for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++) {
        pathf(p, sizeof(p), "%s.arrayValue.values[%zu]", path, i);
        check_any(d, p, v->array_value->values[i], depth + 1);
    }
    for (size_t i = 0; v->kvlist_value && i < v->kvlist_value->n_values; i++) {
        const Hypha__V1__OtelAnyValue__KeyValue *kv = v->kvlist_value->values[i];
        pathf(p, sizeof(p), "%s.kvlistValue.values[%zu].key", path, i);
        if (!kv->key || !kv->key[0])
            hy_diag_add(d, 0, 0, p, "must not be empty");
        pathf(p, sizeof(p), "%s.kvlistValue.values[%zu].value", path, i);
        if (!kv->value)
            hy_diag_add(d, 0, 0, p, "must be defined");
        else
            check_any(d, p, kv->value, depth + 1);
    }
}

static void check_backend(struct hy_diag *d, const char *path,
                          const Hypha__V1__MeshAccessLog__Backend *b)
{
    char p[P];
    const char *t = b->type;
    bool tcp = t && !strcmp(t, "Tcp"), file = t && !strcmp(t, "File"),
         otel = t && !strcmp(t, "OpenTelemetry");
    pathf(p, sizeof(p), "%s.type", path);
    if (!t)
        hy_diag_add(d, 0, 0, p, "must be defined (Tcp, File or OpenTelemetry)");
    else if (!tcp && !file && !otel)
        hy_diag_add(d, 0, 0, p, "\"%.32s\" must be one of Tcp, File, OpenTelemetry", t);
    if ((b->tcp && !tcp) || (b->file && !file) || (b->open_telemetry && !otel)) {
        pathf(p, sizeof(p), "%s", path);
        hy_diag_add(d, 0, 0, p, "only the field of its type (%s) may be set", t ? t : "none");
    }
    if (file) {
        pathf(p, sizeof(p), "%s.file", path);
        if (!b->file) {
            hy_diag_add(d, 0, 0, p, "must be defined");
            return;
        }
        pathf(p, sizeof(p), "%s.file.path", path);
        if (!b->file->path || !b->file->path[0] || strchr(b->file->path, '\n'))
            hy_diag_add(d, 0, 0, p, "file backend requires a valid path");
        if (b->file->format) {
            pathf(p, sizeof(p), "%s.file.format", path);
            check_format(d, p, b->file->format);
        }
    } else if (tcp) {
        pathf(p, sizeof(p), "%s.tcp", path);
        if (!b->tcp) {
            hy_diag_add(d, 0, 0, p, "must be defined");
            return;
        }
        pathf(p, sizeof(p), "%s.tcp.address", path);
        if (!host_port(b->tcp->address))
            hy_diag_add(d, 0, 0, p, "tcp backend requires valid address (HOST:PORT), not \"%.64s\"",
                        b->tcp->address ? b->tcp->address : "");
        if (b->tcp->format) {
            pathf(p, sizeof(p), "%s.tcp.format", path);
            check_format(d, p, b->tcp->format);
        }
    } else if (otel) {
        const Hypha__V1__MeshAccessLog__OtelBackend *o = b->open_telemetry;
        pathf(p, sizeof(p), "%s.openTelemetry", path);
        if (!o) {
            hy_diag_add(d, 0, 0, p, "must be defined");
            return;
        }
        pathf(p, sizeof(p), "%s.openTelemetry.endpoint", path);
        if (!host_port(o->endpoint))
            hy_diag_add(d, 0, 0, p, "must be HOST:PORT, not \"%.64s\"",
                        o->endpoint ? o->endpoint : "");
        for (size_t i = 0; i < o->n_attributes; i++) {
            pathf(p, sizeof(p), "%s.openTelemetry.attributes[%zu].key", path, i);
            if (!otel_key(o->attributes[i]->key))
                hy_diag_add(d, 0, 0, p, "\"%.64s\" must match ^[a-z]([a-z0-9]|[._][a-z0-9])*$",
                            o->attributes[i]->key ? o->attributes[i]->key : "");
            pathf(p, sizeof(p), "%s.openTelemetry.attributes[%zu].value", path, i);
            if (o->attributes[i]->value)
                check_template(d, p, o->attributes[i]->value);
        }
        if (o->body) {
            pathf(p, sizeof(p), "%s.openTelemetry.body", path);
            check_any(d, p, o->body, 0);
        }
    }
}

static void check_conf(struct hy_diag *d, const char *path, const Hypha__V1__MeshAccessLog__Conf *c)
{
    char p[P];
    pathf(p, sizeof(p), "%s.backends", path);
    if (!c) {
        hy_diag_add(d, 0, 0, path, "must be defined");
        return;
    }
    if (!c->n_backends)
        hy_diag_add(d, 0, 0, p, "must be defined");
    for (size_t i = 0; i < c->n_backends; i++) {
        pathf(p, sizeof(p), "%s.backends[%zu]", path, i);
        check_backend(d, p, c->backends[i]);
    }
}

void hy_validate_access_log(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshAccessLog *s = (const void *)r->spec;
    char p[P];
    if (s->target_ref)
        hy_validate_target_ref(d, "spec.targetRef", s->target_ref, K_TOP);
    if (!s->n_from && !s->n_to && !s->n_rules)
        hy_diag_add(d, 0, 0, "spec", "at least one of 'from', 'to' or 'rules' has to be defined");
    if (s->n_rules && (s->n_to || s->n_from))
        hy_diag_add(d, 0, 0, "spec", "'to' and 'from' must be empty when 'rules' is defined");
    for (size_t i = 0; i < s->n_rules; i++) {
        pathf(p, sizeof(p), "spec.rules[%zu].default", i);
        check_conf(d, p, s->rules[i]->default_);
    }
    for (int sec = 0; sec < 2; sec++) {
        size_t n = sec ? s->n_to : s->n_from;
        Hypha__V1__MeshAccessLog__Entry *const *v = sec ? s->to : s->from;
        for (size_t i = 0; i < n; i++) {
            /* Kuma: from names the whole mesh only; to a service or the mesh */
            pathf(p, sizeof(p), "spec.%s[%zu].targetRef", sec ? "to" : "from", i);
            hy_validate_target_ref(d, p, v[i]->target_ref,
                                   sec ? HY_VK(Mesh) | HY_VK(MeshService) : HY_VK(Mesh));
            pathf(p, sizeof(p), "spec.%s[%zu].default", sec ? "to" : "from", i);
            check_conf(d, p, v[i]->default_);
        }
    }
}
