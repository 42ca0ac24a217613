/* Validation of resources: meta rules shared by every type, and the
 * per-type validators the registry names. Field paths are the ones the user
 * wrote ("spec.from[0].targetRef.kind"), so the codec can point at the line. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "dataplane.pb-c.h"
#include "mesh.pb-c.h"
#include "policies.pb-c.h"
#include "resource.h"
#include "validate.h"
#include "validate_int.h"
#include "poison.h"

bool hy_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '.')
            return false;
        if (!alnum && (i == 0 || i == n - 1))
            return false;
    }
    return true;
}

bool hy_valid_zone_name(const char *s)
{
    /* a DNS label: the global CP stores a zone's resources as
     * "<zone>.<name>", so a dot in a zone name would let zone "us" and
     * zone "us.east" name the same key */
    return hy_valid_name(s) && strlen(s) <= 63 && !strchr(s, '.');
}

void hy_validate_zone(const struct hy_resource *r, struct hy_diag *d)
{
    if (r->meta->name && hy_valid_name(r->meta->name) && !hy_valid_zone_name(r->meta->name))
        hy_diag_add(d, 0, 0, "name", "%s", HY_ZONE_NAME_RULE);
}

/* [a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?, at most max */
static bool valid_qualified_part(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool alnum = isalnum((unsigned char)s[i]);
        if (!alnum && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
        if (!alnum && (i == 0 || i == n - 1))
            return false;
    }
    return true;
}

bool hy_valid_tag_key(const char *s)
{
    if (!s)
        return false;
    const char *slash = strchr(s, '/');
    if (!slash)
        return valid_qualified_part(s, strlen(s), 63);
    return valid_qualified_part(s, (size_t)(slash - s), 253) &&
           valid_qualified_part(slash + 1, strlen(slash + 1), 63);
}

bool hy_valid_tag_value(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(".-_:/", s[i]))
            return false;
    return true;
}

/* ----- helpers ----- */

typedef Hypha__V1__Meta__LabelsEntry map_entry; /* every string map entry has this layout */

#define MAX_MAP_ENTRIES 256 /* labels or tags on one object: bounds the duplicate scan */

static void check_map(struct hy_diag *d, const char *path, size_t n, void *const *entries)
{
    char p[512];
    if (n > MAX_MAP_ENTRIES) {
        hy_diag_add(d, 0, 0, path, "%zu entries (at most %d)", n, MAX_MAP_ENTRIES);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const map_entry *e = entries[i];
        snprintf(p, sizeof(p), "%s.%s", path, e->key ? e->key : "");
        /* protobuf map entries may omit key or value (a peer's message
         * decodes with NULL there), and nothing stops a binary peer from
         * sending one key twice: both are refused, as the YAML codec does */
        bool dup = false;
        for (size_t k = 0; k < i && e->key && !dup; k++) {
            const map_entry *o = entries[k];
            dup = o->key && strcmp(o->key, e->key) == 0;
        }
        if (!e->key)
            hy_diag_add(d, 0, 0, path, "an entry has no key");
        else if (dup)
            hy_diag_add(d, 0, 0, p, "duplicate key \"%s\"", e->key);
        else if (!hy_valid_tag_key(e->key))
            hy_diag_add(d, 0, 0, p,
                        "invalid key \"%s\" (expected [prefix/]name of letters, digits, '-', "
                        "'_', '.')",
                        e->key ? e->key : "");
        else if (!hy_valid_tag_value(e->value))
            hy_diag_add(d, 0, 0, p,
                        "invalid value \"%s\" (expected letters, digits and .-_:/, 1-253 chars)",
                        e->value ? e->value : "");
    }
}

static const char *map_get(size_t n, void *const *entries, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const map_entry *e = entries[i];
        if (e->key && strcmp(e->key, key) == 0)
            return e->value;
    }
    return NULL;
}

static void check_port(struct hy_diag *d, const char *path, protobuf_c_boolean has, uint32_t port,
                       bool required)
{
    if (!has) {
        if (required)
            hy_diag_add(d, 0, 0, path, "required (a port 1-65535)");
    } else if (port == 0 || port > 65535) {
        hy_diag_add(d, 0, 0, path, "%u is not a port (expected 1-65535)", port);
    }
}

/* What the type validators cannot see and a binary peer can send: an enum
 * field holding a number its enum does not name (code indexes tables and
 * shifts masks by them), and strings that are not UTF-8 (they would end up
 * in JSON every reader must parse). Walks every field of m. */
static void check_wire(struct hy_diag *d, const char *path, const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    char p[300];
    if (depth > 16)
        return; /* our schemas are shallower; the decoder bounds the rest */
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        const char *base = (const char *)m + f->offset;
        size_t n = 1;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* members share storage: only the one set may be read */
            if (*(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
                continue;
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            base = *(const char *const *)base;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type == PROTOBUF_C_TYPE_ENUM &&
                   !*(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset)) {
            continue;
        }
        for (size_t k = 0; base && k < n; k++) {
            snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", f->name);
            if (f->type == PROTOBUF_C_TYPE_ENUM) {
                int v = ((const int *)base)[k];
                if (!protobuf_c_enum_descriptor_get_value(f->descriptor, v))
                    hy_diag_add(d, 0, 0, p, "%d is not a value of %s", v,
                                ((const ProtobufCEnumDescriptor *)f->descriptor)->short_name);
            } else if (f->type == PROTOBUF_C_TYPE_STRING) {
                const char *s = ((char *const *)base)[k];
                if (s && !hy_utf8_valid(s))
                    hy_diag_add(d, 0, 0, p, "not valid UTF-8");
            } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const ProtobufCMessage *sub = ((ProtobufCMessage *const *)base)[k];
                if (sub)
                    check_wire(d, p, sub, depth + 1);
            }
        }
    }
}

bool hy_resource_validate(const struct hy_resource *r, struct hy_diag *d)
{
    size_t before = d->n;
    check_wire(d, "", &r->meta->base, 0);
    check_wire(d, "spec", r->spec, 0);
    if (d->n != before)
        return false; /* the validators below read enums and strings */
    const Hypha__V1__Meta *m = r->meta;
    if (!m->name || !m->name[0])
        hy_diag_add(d, 0, 0, "name", "required");
    else if (!hy_valid_name(m->name))
        hy_diag_add(d, 0, 0, "name",
                    "invalid name \"%s\" (expected lowercase letters, digits, '-' and '.', "
                    "starting and ending with a letter or digit, at most 253 characters)",
                    m->name);
    /* Mesh names are also resource names: hold them to the mesh rule too */
    if (r->type == hy_rtype_by_name("Mesh") && m->name && strlen(m->name) > 63)
        hy_diag_add(d, 0, 0, "name", "a Mesh name has at most 63 characters");
    if (r->type->scope == HY_SCOPE_MESH) {
        if (!m->mesh || !m->mesh[0])
            hy_diag_add(d, 0, 0, "mesh", "required for %s", r->type->name);
        else if (!hy_valid_name(m->mesh) || strlen(m->mesh) > 63)
            hy_diag_add(d, 0, 0, "mesh",
                        "invalid mesh name \"%s\" (expected lowercase letters, digits, '-' and "
                        "'.', at most 63 characters)",
                        m->mesh);
    } else if (m->mesh && m->mesh[0]) {
        hy_diag_add(d, 0, 0, "mesh", "%s is not mesh-scoped; remove the mesh field", r->type->name);
    }
    check_map(d, "labels", m->n_labels, (void *const *)m->labels);
    if (r->type->validate)
        r->type->validate(r, d);
    return d->n == before;
}

/* ----- targetRef ----- */

#define K(kind) (1u << HYPHA__V1__TARGET_REF__KIND__##kind)
#define K_ALL (K(Mesh) | K(MeshSubset) | K(MeshService) | K(MeshServiceSubset) | K(Dataplane))

static void kinds_list(unsigned allowed, char *buf, size_t size)
{
    const ProtobufCEnumDescriptor *ed = &hypha__v1__target_ref__kind__descriptor;
    size_t off = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < ed->n_values; i++)
        if (allowed & (1u << ed->values[i].value))
            off += (size_t)snprintf(buf + off, off < size ? size - off : 0, "%s%s", off ? ", " : "",
                                    ed->values[i].name);
}

static void check_target_ref(struct hy_diag *d, const char *path, const Hypha__V1__TargetRef *t,
                             unsigned allowed)
{
    char p[256], kinds[128];
    if (!t) {
        hy_diag_add(d, 0, 0, path, "required");
        return;
    }
    snprintf(p, sizeof(p), "%s.kind", path);
    if (!t->has_kind) {
        hy_diag_add(d, 0, 0, p, "required");
        return;
    }
    if (!(allowed & (1u << t->kind))) {
        kinds_list(allowed, kinds, sizeof(kinds));
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&hypha__v1__target_ref__kind__descriptor, t->kind);
        hy_diag_add(d, 0, 0, p, "%s is not allowed here (expected %s)", v ? v->name : "?", kinds);
        return;
    }
    snprintf(p, sizeof(p), "%s.name", path);
    switch (t->kind) {
    case HYPHA__V1__TARGET_REF__KIND__Mesh:
        if (t->name)
            hy_diag_add(d, 0, 0, p, "must be empty when kind is Mesh");
        if (t->n_tags) {
            snprintf(p, sizeof(p), "%s.tags", path);
            hy_diag_add(d, 0, 0, p, "must be empty when kind is Mesh");
        }
        break;
    case HYPHA__V1__TARGET_REF__KIND__MeshSubset:
        if (t->name)
            hy_diag_add(d, 0, 0, p, "must be empty when kind is MeshSubset (select with tags)");
        break;
    case HYPHA__V1__TARGET_REF__KIND__MeshService:
    case HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset:
        if (!t->name || !t->name[0])
            hy_diag_add(d, 0, 0, p, "required when kind is %s",
                        t->kind == HYPHA__V1__TARGET_REF__KIND__MeshService ? "MeshService"
                                                                            : "MeshServiceSubset");
        break;
    case HYPHA__V1__TARGET_REF__KIND__Dataplane:
        /* no name and no labels: every Dataplane (Kuma 2.10); an empty
         * name (a template variable left empty, say) is not "every" */
        if (t->name && !t->name[0])
            hy_diag_add(d, 0, 0, p,
                        "empty: give a Dataplane's name, or leave name out to select "
                        "every Dataplane");
        break;
    default:
        break;
    }
    for (size_t i = 0; i < t->n_proxy_types; i++)
        if (strcmp(t->proxy_types[i], "Sidecar") && strcmp(t->proxy_types[i], "Gateway")) {
            snprintf(p, sizeof(p), "%s.proxyTypes[%zu]", path, i);
            hy_diag_add(d, 0, 0, p, "\"%.60s\": expected Sidecar or Gateway", t->proxy_types[i]);
        }
    if (t->namespace_ && !hy_valid_zone_name(t->namespace_)) {
        snprintf(p, sizeof(p), "%s.namespace", path);
        hy_diag_add(d, 0, 0, p, "not a valid Kubernetes namespace");
    }
    snprintf(p, sizeof(p), "%s.tags", path);
    check_map(d, p, t->n_tags, (void *const *)t->tags);
    snprintf(p, sizeof(p), "%s.labels", path);
    check_map(d, p, t->n_labels, (void *const *)t->labels);
}

/* Entries of from/to share the layout {base, target_ref, default_}: every
 * policy's Entry/From/To message is declared that way in policies.proto. */
struct entry_layout {
    ProtobufCMessage base;
    Hypha__V1__TargetRef *target_ref;
    void *default_;
};

static void check_entries(struct hy_diag *d, const char *section, size_t n, void *const *v,
                          unsigned allowed)
{
    char p[128];
    for (size_t i = 0; i < n; i++) {
        const struct entry_layout *e = v[i];
        snprintf(p, sizeof(p), "spec.%s[%zu].targetRef", section, i);
        check_target_ref(d, p, e->target_ref, allowed);
        if (e->target_ref && e->target_ref->n_proxy_types) {
            snprintf(p, sizeof(p), "spec.%s[%zu].targetRef.proxyTypes", section, i);
            hy_diag_add(d, 0, 0, p, "only the top-level targetRef selects proxy types");
        }
        if (!e->default_) {
            snprintf(p, sizeof(p), "spec.%s[%zu].default", section, i);
            hy_diag_add(d, 0, 0, p, "required");
        }
    }
}

static void check_duration(struct hy_diag *d, const char *path, const Hypha__V1__Duration *v)
{
    if (v && (v->seconds < 0 || v->nanos < 0))
        hy_diag_add(d, 0, 0, path, "must not be negative");
}

/* ----- types ----- */

void hy_validate_mesh(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__Mesh *m = (const Hypha__V1__Mesh *)r->spec;
    if (!m->mtls)
        return;
    char p[128];
    bool found = !m->mtls->enabled_backend;
    for (size_t i = 0; i < m->mtls->n_backends; i++) {
        const Hypha__V1__CertificateAuthorityBackend *b = m->mtls->backends[i];
        snprintf(p, sizeof(p), "mtls.backends[%zu].name", i);
        if (!b->name || !hy_valid_name(b->name))
            hy_diag_add(d, 0, 0, p, "required: a lowercase DNS-style name");
        for (size_t j = 0; b->name && j < i; j++)
            if (m->mtls->backends[j]->name && strcmp(m->mtls->backends[j]->name, b->name) == 0)
                hy_diag_add(d, 0, 0, p, "duplicate backend name \"%s\"", b->name);
        if (b->name && m->mtls->enabled_backend && strcmp(b->name, m->mtls->enabled_backend) == 0)
            found = true;
        snprintf(p, sizeof(p), "mtls.backends[%zu].type", i);
        if (!b->has_type)
            hy_diag_add(d, 0, 0, p, "required (expected builtin)");
        if (b->dp_cert && b->dp_cert->rotation) {
            const Hypha__V1__Duration *e = b->dp_cert->rotation->expiration;
            snprintf(p, sizeof(p), "mtls.backends[%zu].dpCert.rotation.expiration", i);
            if (e && e->seconds < 1)
                hy_diag_add(d, 0, 0, p, "must be at least 1s");
        }
        if (b->conf && b->conf->ca_cert) {
            const Hypha__V1__CertificateAuthorityBackend__BuiltinConf__CaCert *c = b->conf->ca_cert;
            snprintf(p, sizeof(p), "mtls.backends[%zu].conf.caCert.expiration", i);
            if (c->expiration && c->expiration->seconds < 60)
                hy_diag_add(d, 0, 0, p, "must be at least 1m");
            snprintf(p, sizeof(p), "mtls.backends[%zu].conf.caCert.curve", i);
            if (c->curve && strcmp(c->curve, "P-256") != 0)
                hy_diag_add(d, 0, 0, p, "unsupported curve \"%s\" (expected P-256)", c->curve);
            snprintf(p, sizeof(p), "mtls.backends[%zu].conf.caCert.RSAbits", i);
            if (c->has_rsabits && c->rsabits != 2048 && c->rsabits != 3072 && c->rsabits != 4096)
                hy_diag_add(d, 0, 0, p, "%u is not a key size Kuma takes (2048, 3072 or 4096)",
                            c->rsabits);
        }
    }
    if (!found)
        hy_diag_add(d, 0, 0, "mtls.enabledBackend", "no backend named \"%s\" in mtls.backends",
                    m->mtls->enabled_backend);
}

void hy_validate_dataplane(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__Dataplane *dp = (const Hypha__V1__Dataplane *)r->spec;
    const Hypha__V1__Dataplane__Networking *n = dp->networking;
    char p[128];
    if (!n) {
        hy_diag_add(d, 0, 0, "networking", "required");
        return;
    }
    if (!n->address || !n->address[0])
        hy_diag_add(d, 0, 0, "networking.address", "required");
    if (n->n_inbound == 0)
        hy_diag_add(d, 0, 0, "networking.inbound", "at least one inbound is required");
    for (size_t i = 0; i < n->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = n->inbound[i];
        snprintf(p, sizeof(p), "networking.inbound[%zu].port", i);
        check_port(d, p, in->has_port, in->port, true);
        snprintf(p, sizeof(p), "networking.inbound[%zu].servicePort", i);
        check_port(d, p, in->has_service_port, in->service_port, false);
        snprintf(p, sizeof(p), "networking.inbound[%zu].tags", i);
        check_map(d, p, in->n_tags, (void *const *)in->tags);
        if (!map_get(in->n_tags, (void *const *)in->tags, "hypha.io/service"))
            hy_diag_add(d, 0, 0, p, "tag hypha.io/service is required");
        const char *proto = map_get(in->n_tags, (void *const *)in->tags, "hypha.io/protocol");
        if (proto && strcmp(proto, "tcp") && strcmp(proto, "http") && strcmp(proto, "http2") &&
            strcmp(proto, "grpc"))
            hy_diag_add(d, 0, 0, p,
                        "tag hypha.io/protocol: unknown protocol \"%s\" (expected tcp, http, "
                        "http2 or grpc)",
                        proto);
    }
    for (size_t i = 0; i < n->n_outbound; i++) {
        const Hypha__V1__Dataplane__Networking__Outbound *out = n->outbound[i];
        snprintf(p, sizeof(p), "networking.outbound[%zu].port", i);
        check_port(d, p, out->has_port, out->port, true);
        snprintf(p, sizeof(p), "networking.outbound[%zu].tags", i);
        check_map(d, p, out->n_tags, (void *const *)out->tags);
        if (!map_get(out->n_tags, (void *const *)out->tags, "hypha.io/service"))
            hy_diag_add(d, 0, 0, p, "tag hypha.io/service is required");
    }
    if (n->admin)
        check_port(d, "networking.admin.port", n->admin->has_port, n->admin->port, false);
    const Hypha__V1__Dataplane__Networking__TransparentProxying *tp = n->transparent_proxying;
    if (tp) {
        check_port(d, "networking.transparentProxying.redirectPortInbound",
                   tp->has_redirect_port_inbound, tp->redirect_port_inbound, false);
        check_port(d, "networking.transparentProxying.redirectPortOutbound",
                   tp->has_redirect_port_outbound, tp->redirect_port_outbound, false);
        if (tp->has_redirect_port_inbound && tp->has_redirect_port_outbound &&
            tp->redirect_port_inbound == tp->redirect_port_outbound)
            hy_diag_add(d, 0, 0, "networking.transparentProxying.redirectPortOutbound",
                        "must differ from redirectPortInbound (%u)", tp->redirect_port_inbound);
    }
}

void hy_validate_zone_ingress(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)r->spec;
    const Hypha__V1__ZoneIngress__Networking *n = zi->networking;
    if (!n) {
        hy_diag_add(d, 0, 0, "networking", "required");
        return;
    }
    if (!n->address || !n->address[0])
        hy_diag_add(d, 0, 0, "networking.address", "required");
    else if ((!strcmp(n->address, "0.0.0.0") || !strcmp(n->address, "::")) &&
             (!n->advertised_address || !n->advertised_address[0]))
        hy_diag_add(d, 0, 0, "networking.advertisedAddress",
                    "required when address is %s: what other zones dial", n->address);
    check_port(d, "networking.port", n->has_port, n->port, true);
    check_port(d, "networking.advertisedPort", n->has_advertised_port, n->advertised_port,
               n->advertised_address != NULL);
    char p[128];
    for (size_t i = 0; i < zi->n_available_services; i++) {
        snprintf(p, sizeof(p), "availableServices[%zu].tags", i);
        check_map(d, p, zi->available_services[i]->n_tags,
                  (void *const *)zi->available_services[i]->tags);
    }
}

void hy_validate_mtp(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshTrafficPermission *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        check_target_ref(d, "spec.targetRef", s->target_ref, K_ALL);
    if (s->n_from == 0 && s->n_rules == 0)
        hy_diag_add(d, 0, 0, "spec", "one of from or rules is required");
    if (s->n_from && s->n_rules)
        hy_diag_add(d, 0, 0, "spec.rules",
                    "from and rules exclude each other (as in Kuma): write two policies");
    check_entries(d, "from", s->n_from, (void *const *)s->from,
                  K(Mesh) | K(MeshSubset) | K(MeshService) | K(MeshServiceSubset));
    char p[96];
    for (size_t i = 0; i < s->n_rules; i++) {
        const Hypha__V1__MeshTrafficPermission__RuleConf *c = s->rules[i]->default_;
        snprintf(p, sizeof(p), "spec.rules[%zu].default", i);
        if (!c || c->n_allow + c->n_deny + c->n_allow_with_shadow_deny == 0) {
            hy_diag_add(d, 0, 0, p, "one of allow, deny or allowWithShadowDeny is required");
            continue;
        }
        static const char *const lists[] = {"allow", "deny", "allowWithShadowDeny"};
        size_t ns[] = {c->n_allow, c->n_deny, c->n_allow_with_shadow_deny};
        Hypha__V1__MeshTrafficPermission__Match **vs[] = {c->allow, c->deny,
                                                          c->allow_with_shadow_deny};
        for (size_t l = 0; l < 3; l++)
            for (size_t k = 0; k < ns[l]; k++) {
                const Hypha__V1__MeshTrafficPermission__SpiffeIdMatch *m = vs[l][k]->spiffeid;
                snprintf(p, sizeof(p), "spec.rules[%zu].default.%s[%zu].spiffeID.value", i,
                         lists[l], k);
                if (!m || !m->value || strncmp(m->value, "spiffe://", 9))
                    hy_diag_add(d, 0, 0, p,
                                "required: a SPIFFE ID (spiffe://...), or its "
                                "prefix with type: Prefix");
            }
    }
    for (size_t i = 0; i < s->n_from; i++)
        if (s->from[i]->default_ && !s->from[i]->default_->has_action) {
            snprintf(p, sizeof(p), "spec.from[%zu].default.action", i);
            hy_diag_add(d, 0, 0, p, "required (expected Allow, Deny, AllowWithShadowDeny)");
        }
}

static void check_timeout_conf(struct hy_diag *d, const char *path,
                               const Hypha__V1__MeshTimeout__Conf *c)
{
    char p[128];
    if (!c)
        return;
    snprintf(p, sizeof(p), "%s.connectionTimeout", path);
    check_duration(d, p, c->connection_timeout);
    snprintf(p, sizeof(p), "%s.idleTimeout", path);
    check_duration(d, p, c->idle_timeout);
}

void hy_validate_timeout(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshTimeout *s = (const void *)r->spec;
    char p[64];
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        check_target_ref(d, "spec.targetRef", s->target_ref, K_ALL);
    if (s->n_from + s->n_to + s->n_rules == 0)
        hy_diag_add(d, 0, 0, "spec", "one of from, to or rules is required");
    check_entries(d, "from", s->n_from, (void *const *)s->from, K(Mesh));
    check_entries(d, "to", s->n_to, (void *const *)s->to, K(Mesh) | K(MeshService));
    for (size_t i = 0; i < s->n_from; i++) {
        snprintf(p, sizeof(p), "spec.from[%zu].default", i);
        check_timeout_conf(d, p, s->from[i]->default_);
    }
    for (size_t i = 0; i < s->n_to; i++) {
        snprintf(p, sizeof(p), "spec.to[%zu].default", i);
        check_timeout_conf(d, p, s->to[i]->default_);
    }
    for (size_t i = 0; i < s->n_rules; i++) {
        snprintf(p, sizeof(p), "spec.rules[%zu].default", i);
        if (!s->rules[i]->default_)
            hy_diag_add(d, 0, 0, p, "required");
        check_timeout_conf(d, p, s->rules[i]->default_);
    }
}

void hy_validate_retry(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshRetry *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        check_target_ref(d, "spec.targetRef", s->target_ref, K_ALL);
    if (s->n_to == 0)
        hy_diag_add(d, 0, 0, "spec.to", "at least one entry is required");
    check_entries(d, "to", s->n_to, (void *const *)s->to, K(Mesh) | K(MeshService));
    char p[64];
    for (size_t i = 0; i < s->n_to; i++) {
        const Hypha__V1__MeshRetry__Conf *c = s->to[i]->default_;
        if (c && c->tcp && c->tcp->has_max_connect_attempt && c->tcp->max_connect_attempt == 0) {
            snprintf(p, sizeof(p), "spec.to[%zu].default.tcp.maxConnectAttempt", i);
            hy_diag_add(d, 0, 0, p, "must be at least 1");
        }
    }
}

void hy_validate_health_check(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshHealthCheck *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        check_target_ref(d, "spec.targetRef", s->target_ref, K_ALL);
    if (s->n_to == 0)
        hy_diag_add(d, 0, 0, "spec.to", "at least one entry is required");
    check_entries(d, "to", s->n_to, (void *const *)s->to, K(Mesh) | K(MeshService));
    char p[64];
    for (size_t i = 0; i < s->n_to; i++) {
        const Hypha__V1__MeshHealthCheck__Conf *c = s->to[i]->default_;
        if (!c)
            continue;
        if (c->interval && c->interval->seconds == 0 && c->interval->nanos == 0) {
            snprintf(p, sizeof(p), "spec.to[%zu].default.interval", i);
            hy_diag_add(d, 0, 0, p, "must be greater than 0");
        }
        if (c->has_unhealthy_threshold && c->unhealthy_threshold == 0) {
            snprintf(p, sizeof(p), "spec.to[%zu].default.unhealthyThreshold", i);
            hy_diag_add(d, 0, 0, p, "must be at least 1");
        }
        if (c->has_healthy_threshold && c->healthy_threshold == 0) {
            snprintf(p, sizeof(p), "spec.to[%zu].default.healthyThreshold", i);
            hy_diag_add(d, 0, 0, p, "must be at least 1");
        }
    }
}

void hy_validate_circuit_breaker(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshCircuitBreaker *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        check_target_ref(d, "spec.targetRef", s->target_ref, K_ALL);
    if (s->n_from + s->n_to == 0)
        hy_diag_add(d, 0, 0, "spec", "one of from or to is required");
    check_entries(d, "from", s->n_from, (void *const *)s->from, K(Mesh));
    check_entries(d, "to", s->n_to, (void *const *)s->to, K(Mesh) | K(MeshService));
}

void hy_validate_lbs(const struct hy_resource *r, struct hy_diag *d)
{
    const Hypha__V1__MeshLoadBalancingStrategy *s = (const void *)r->spec;
    if (s->target_ref) /* absent: the whole mesh, as in Kuma */
        check_target_ref(d, "spec.targetRef", s->target_ref, K_ALL);
    if (s->n_to == 0)
        hy_diag_add(d, 0, 0, "spec.to", "at least one entry is required");
    check_entries(d, "to", s->n_to, (void *const *)s->to, K(Mesh) | K(MeshService));
    char p[96];
    for (size_t i = 0; i < s->n_to; i++) {
        const Hypha__V1__MeshLoadBalancingStrategy__Conf *c = s->to[i]->default_;
        const Hypha__V1__MeshLoadBalancingStrategy__LoadBalancer *lb = c ? c->load_balancer : NULL;
        if (!lb)
            continue;
        snprintf(p, sizeof(p), "spec.to[%zu].default.loadBalancer", i);
        /* the options set must belong to the chosen type */
        static const struct {
            int opt, type;
            const char *field, *tname;
        } match[] = {
            {HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__OPTIONS_LEAST_REQUEST,
             HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__TYPE__LeastRequest,
             "leastRequest", "LeastRequest"},
            {HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__OPTIONS_RING_HASH,
             HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__TYPE__RingHash, "ringHash",
             "RingHash"},
            {HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__OPTIONS_MAGLEV,
             HYPHA__V1__MESH_LOAD_BALANCING_STRATEGY__LOAD_BALANCER__TYPE__Maglev, "maglev",
             "Maglev"},
        };
        if (!lb->has_type)
            hy_diag_add(d, 0, 0, p, "type is required");
        for (size_t k = 0; k < sizeof(match) / sizeof(match[0]); k++)
            if ((int)lb->options_case == match[k].opt && (int)lb->type != match[k].type)
                hy_diag_add(d, 0, 0, p, "%s is set but type is not %s", match[k].field,
                            match[k].tname);
    }
}

/* ----- shared with validate_l7.c (validate_int.h) ----- */

void hy_validate_target_ref(struct hy_diag *d, const char *path, const Hypha__V1__TargetRef *t,
                            unsigned allowed)
{
    check_target_ref(d, path, t, allowed);
}

void hy_validate_map(struct hy_diag *d, const char *path, size_t n, void *const *entries)
{
    check_map(d, path, n, entries);
}

void hy_validate_duration(struct hy_diag *d, const char *path, const Hypha__V1__Duration *v)
{
    check_duration(d, path, v);
}
