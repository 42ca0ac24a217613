/* The zone's DP server. A sidecar connects over wss, sends DpHello with its
 * Dataplane, its dataplane token and a CSR; the zone checks the token
 * against the Dataplane (name, mesh, tags), registers the Dataplane (which
 * KDS then carries to the global CP), signs a leaf for each inbound
 * service (spiffe://<mesh>/<service>) with its intermediate CA, and pushes
 * the config whenever it changes. A clean close (1000) deregisters it.
 * A zone ingress does the same with its ZoneIngress and a zone-ingress
 * token (no CSR: it never terminates TLS); the zone keeps the ZoneIngress's
 * availableServices up to date and pushes the ingress its routes. Either
 * may be asked for its metrics (dp_stats.c: DpStatsRequest, DpStats). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca.h"
#include "ca.pb-c.h"
#include "cp_session.h"
#include "dp_parts.h"
#include "dp_server.h"
#include "dp_stats.h"
#include "error.h"
#include "kds.h"
#include "log.h"
#include "mesh.pb-c.h"
#include "metrics.h"
#include "net.h"
#include "token.h"
#include "validate.h"
#include "poison.h"

#define DEFAULT_LEAF_VALIDITY (24LL * 3600)
/* Insights of acks are written together, at most this long after the ack
 * (Kuma flushes its dataplane statuses every 10 s), in transactions of at
 * most this many. */
#define HY_ZONE_DP_INSIGHT_FLUSH_MS 200
#define HY_ZONE_DP_INSIGHT_BATCH 256

/* The parts a sidecar holds, as the zone knows them: kind, key, version,
 * sorted (common/dp_parts.h), and the whole version they make. */
struct part_ref {
    int kind;
    char *key; /* NULL but for Endpoints */
    char version[HY_DP_VERSION_LEN + 1];
};
struct held {
    struct part_ref *v;
    size_t n;
    char version[HY_DP_VERSION_LEN + 1];
};

struct dp_session {
    struct hy_cp_session base; /* first: the connection, its admission and token */
    struct hy_resource *dp;    /* registered Dataplane or ZoneIngress, NULL before */
    bool ingress;              /* dp is a ZoneIngress */
    char *cert, *chain;
    /* a sidecar's own parts, as last computed (NULL: to compute) */
    Hypha__V1__DpPart *identity, *inbounds, *outbounds;
    struct held sent;  /* what it holds once every update sent is applied */
    struct held acked; /* what it said it holds */
    char sent_version[32], acked_version[32], nacked_version[32]; /* ingress: routes */
    char agent_version[HY_DP_MAX_AGENT_VERSION + 1]; /* hello.version: its build ("" unsaid) */
    char admin_address[HY_DP_MAX_ADMIN_ADDRESS + 1]; /* hello.admin_address ("" unsaid) */
    uint64_t sent_n, acked_n, rejected;
    uint64_t parts_sent; /* parts in every update sent */
    bool pending;        /* to be sent its config on the next loop turn (kick) */
    bool insight_due;    /* its insight is written on the next flush */
    /* its questions for metrics in flight */
    struct hy_zone_dp_stats_session stats;
};

struct hy_zone_dp_server {
    struct hy_zone *z;
    struct hy_cp_session_server *ss; /* the listener and its sessions */
    uv_timer_t cleanup;
    bool cleanup_init;
    int64_t started; /* Unix seconds: offline since, for a sidecar the last run lost track of */
    struct hy_zone_dp_round *round; /* what configs are computed from (NULL: to load) */
    bool round_fresh; /* loaded whole since the last change: the next change alters all */
    uv_timer_t kick;  /* new sessions get their first config on the next turn */
    bool kick_init, kick_armed;
    uv_timer_t flush; /* insights of acks, written together */
    bool flush_init, flush_armed;
    struct hy_series *updates, *parts, *bytes, *recomputed; /* counters */
    struct hy_zone_dp_stats stats; /* questions to sidecars for their metrics */
    bool stats_init;
};

#define S(s) ((s) ? (s) : "")

static struct hy_zone_dp_server *srv_of(const struct dp_session *s)
{
    return s->base.ud;
}

static int send_msg(struct dp_session *s, const Hypha__V1__DpMessage *m)
{
    return hy_cp_session_send(&s->base, &m->base, NULL);
}

static void send_reject(struct hy_cp_session *cs, const char *reason)
{
    Hypha__V1__DpReject r = HYPHA__V1__DP_REJECT__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    r.reason = (char *)reason;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_REJECT;
    m.reject = &r;
    send_msg((struct dp_session *)cs, &m);
}

/* "sidecar MESH/NAME" or "ingress NAME" ("?" before its Hello is read). */
static const char *session_name(struct hy_cp_session *cs, char *buf, size_t size)
{
    const struct dp_session *s = (const struct dp_session *)cs;
    const Hypha__V1__Meta *m = s->dp ? s->dp->meta : NULL;
    snprintf(buf, size, "%s %s%s%s", s->ingress ? "ingress" : "sidecar", m ? S(m->mesh) : "",
             m && m->mesh ? "/" : "", m ? S(m->name) : "?");
    return buf;
}

static void reject(struct dp_session *s, const char *reason)
{
    char name[300], text[400];
    hy_log(HY_LOG_WARN, "dp", "%s from %s refused: %s", session_name(&s->base, name, sizeof(name)),
           hy_ws_conn_peer(s->base.conn), hy_cp_session_clean(reason, text, sizeof(text)));
    hy_cp_session_reject(&s->base, reason);
}

/* ----- checks of what a peer sends ----- */

static bool printable(const char *v, size_t max)
{
    size_t n = 0;
    for (; v[n]; n++)
        if (n >= max || (unsigned char)v[n] < 0x20 || (unsigned char)v[n] >= 0x7f)
            return false;
    return true;
}

/* A string field: present when required, at most max bytes, printable
 * ASCII when text (it is logged or stored). */
static bool check_str(const char *field, const char *v, bool required, size_t max, bool text,
                      char *why, size_t size)
{
    if (!v) {
        if (required)
            snprintf(why, size, "%s is required", field);
        return !required;
    }
    if (text ? !printable(v, max) : strlen(v) > max) {
        snprintf(why, size, "%s must be %sat most %zu bytes", field,
                 text ? "printable ASCII, " : "", max);
        return false;
    }
    return true;
}

/* No unknown field anywhere in m (protobuf-c keeps them and packs them
 * back: a peer could hide bytes in what the zone stores and forwards). */
static bool known_fields(const ProtobufCMessage *m, char *why, size_t size)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (m->n_unknown_fields) {
        snprintf(why, size, "%s has an unknown field (number %u)", d->short_name,
                 m->unknown_fields[0].tag);
        return false;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (v[k] && !known_fields(v[k], why, size))
                    return false;
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
        if (sub && !known_fields(sub, why, size))
            return false;
    }
    return true;
}

/* Part refs a peer sent (hello.held, nack.parts): a known kind, a key only
 * on Endpoints, bounded printable strings. */
static bool check_refs(const char *field, Hypha__V1__DpPartRef *const *v, size_t n, char *why,
                       size_t size)
{
    if (n > HY_DP_MAX_PARTS) {
        snprintf(why, size, "%s: %zu parts, at most %d", field, n, HY_DP_MAX_PARTS);
        return false;
    }
    char name[64];
    for (size_t i = 0; i < n; i++) {
        const Hypha__V1__DpPartRef *r = v[i];
        snprintf(name, sizeof(name), "%s[%zu]", field, i);
        bool endpoints = r->has_kind && r->kind == HYPHA__V1__DP_PART__KIND__Endpoints;
        if (!r->has_kind ||
            !protobuf_c_enum_descriptor_get_value(&hypha__v1__dp_part__kind__descriptor, r->kind) ||
            r->kind == HYPHA__V1__DP_PART__KIND__Unknown) {
            snprintf(why, size, "%s.kind is not a known part kind", name);
            return false;
        }
        if (!endpoints && r->key) {
            snprintf(why, size, "%s.key is set on a part that has none", name);
            return false;
        }
        char kf[80], vf[80];
        snprintf(kf, sizeof(kf), "%s.key", name);
        snprintf(vf, sizeof(vf), "%s.version", name);
        if (!check_str(kf, r->key, endpoints, HY_DP_MAX_PART_KEY, true, why, size) ||
            !check_str(vf, r->version, true, HY_DP_MAX_VERSION, true, why, size))
            return false;
    }
    return true;
}

bool hy_zone_dp_check_message(const Hypha__V1__DpMessage *m, char *why, size_t size)
{
    if (!known_fields(&m->base, why, size))
        return false;
    switch (m->msg_case) {
    case HYPHA__V1__DP_MESSAGE__MSG_HELLO: {
        const Hypha__V1__DpHello *h = m->hello;
        if (!h->dataplane) {
            snprintf(why, size, "hello.dataplane is required (a Dataplane or a ZoneIngress)");
            return false;
        }
        return check_str("hello.token", h->token, true, HY_TOKEN_MAX_LEN, true, why, size) &&
               check_str("hello.csr", h->csr, false, HY_DP_MAX_CSR, false, why, size) &&
               check_str("hello.version", h->version, false, HY_DP_MAX_AGENT_VERSION, true, why,
                         size) &&
               check_str("hello.held_version", h->held_version, false, HY_DP_MAX_VERSION, true, why,
                         size) &&
               check_str("hello.admin_address", h->admin_address, false, HY_DP_MAX_ADMIN_ADDRESS,
                         true, why, size) &&
               check_refs("hello.held", h->held, h->n_held, why, size);
    }
    case HYPHA__V1__DP_MESSAGE__MSG_CSR:
        return check_str("csr.csr", m->csr->csr, true, HY_DP_MAX_CSR, false, why, size);
    case HYPHA__V1__DP_MESSAGE__MSG_ACK:
        return check_str("ack.version", m->ack->version, true, HY_DP_MAX_VERSION, true, why, size);
    case HYPHA__V1__DP_MESSAGE__MSG_NACK:
        return check_str("nack.version", m->nack->version, false, HY_DP_MAX_VERSION, true, why,
                         size) &&
               check_str("nack.error", m->nack->error, false, HY_DP_MAX_ERROR, false, why, size) &&
               check_refs("nack.parts", m->nack->parts, m->nack->n_parts, why, size);
    case HYPHA__V1__DP_MESSAGE__MSG_STATS:
        if (!m->stats->has_id) {
            snprintf(why, size, "stats.id is required");
            return false;
        }
        /* the text is served as is, never logged; the error is shown */
        return check_str("stats.text", m->stats->text, false, HY_DP_MAX_STATS, false, why, size) &&
               check_str("stats.error", m->stats->error, false, HY_DP_MAX_ERROR, true, why, size);
    default:
        snprintf(why, size, "unexpected message (a peer sends hello, csr, ack, nack or stats)");
        return false;
    }
}

/* An IP address or a DNS host name: what other sidecars will dial. */
static bool valid_address(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    unsigned char ip[16];
    if (n == 0 || n > 253)
        return false;
    if (inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1)
        return true;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static bool check_address(const char *field, const char *v, bool required, char *why, size_t size)
{
    if (!v && !required)
        return true;
    if (!valid_address(v)) {
        char shown[68];
        size_t n = 0;
        for (; v && v[n] && n < 64; n++) /* it is logged: printable only */
            shown[n] = (unsigned char)v[n] >= 0x20 && (unsigned char)v[n] < 0x7f ? v[n] : '?';
        shown[n] = '\0';
        snprintf(why, size, "%s must be an IP address or a host name (got \"%s%s\")", field, shown,
                 v && strlen(v) > 64 ? "..." : "");
        return false;
    }
    return true;
}

static bool check_dataplane(const struct hy_resource *r, char *why, size_t size)
{
    const Hypha__V1__Dataplane__Networking *n = ((const Hypha__V1__Dataplane *)r->spec)->networking;
    char f[80];
    if (!check_address("networking.address", n->address, true, why, size) ||
        !check_address("networking.advertisedAddress", n->advertised_address, false, why, size))
        return false;
    if (n->n_inbound > HY_DP_MAX_INBOUNDS || n->n_outbound > HY_DP_MAX_OUTBOUNDS) {
        snprintf(why, size, "networking has %zu inbounds and %zu outbounds (at most %d and %d)",
                 n->n_inbound, n->n_outbound, HY_DP_MAX_INBOUNDS, HY_DP_MAX_OUTBOUNDS);
        return false;
    }
    size_t services = 0;
    for (size_t i = 0; i < n->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = n->inbound[i];
        snprintf(f, sizeof(f), "networking.inbound[%zu].address", i);
        if (!check_address(f, in->address, false, why, size))
            return false;
        snprintf(f, sizeof(f), "networking.inbound[%zu].serviceAddress", i);
        if (!check_address(f, in->service_address, false, why, size))
            return false;
        const char *svc = hy_zone_dp_service_of(in);
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(S(svc), S(hy_zone_dp_service_of(n->inbound[k])));
        if (!seen && ++services > HY_DP_MAX_SERVICES) {
            snprintf(why, size, "networking.inbound: more than %d services", HY_DP_MAX_SERVICES);
            return false;
        }
    }
    for (size_t i = 0; i < n->n_outbound; i++) {
        snprintf(f, sizeof(f), "networking.outbound[%zu].address", i);
        if (!check_address(f, n->outbound[i]->address, false, why, size))
            return false;
    }
    return true;
}

static bool check_zone_ingress(const struct hy_resource *r, char *why, size_t size)
{
    const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)r->spec;
    if (!check_address("networking.address", zi->networking->address, true, why, size) ||
        !check_address("networking.advertisedAddress", zi->networking->advertised_address, false,
                       why, size))
        return false;
    /* the zone replaces these with its own count; still, nothing unchecked */
    for (size_t i = 0; i < zi->n_available_services; i++)
        if (zi->available_services[i]->mesh && !hy_valid_name(zi->available_services[i]->mesh)) {
            snprintf(why, size, "availableServices[%zu].mesh is not a valid mesh name", i);
            return false;
        }
    return true;
}

int hy_zone_dp_check_hello(const Hypha__V1__DpHello *h, struct hy_resource **out, char *why,
                           size_t size)
{
    struct hy_resource *r = NULL;
    *out = NULL;
    if (!h->dataplane) {
        snprintf(why, size, "hello.dataplane is required (a Dataplane or a ZoneIngress)");
        return HY_EINVAL;
    }
    size_t len = hypha__v1__envelope__get_packed_size(h->dataplane);
    uint8_t *p = malloc(len ? len : 1);
    if (!p) {
        snprintf(why, size, "out of memory");
        return HY_ENOMEM;
    }
    hypha__v1__envelope__pack(h->dataplane, p);
    int rc = hy_resource_unpack(p, len, &r);
    free(p);
    if (rc < 0) {
        snprintf(why, size,
                 "hello.dataplane cannot be read (no known type, or a spec that does "
                 "not parse)");
        return rc == HY_ENOMEM ? rc : HY_EINVAL;
    }
    bool ingress = !strcmp(r->type->name, "ZoneIngress");
    struct hy_diag d = {.source = "hello.dataplane"};
    char line[300];
    const char *what = ingress ? "the ZoneIngress" : "the Dataplane";
    if (!ingress && strcmp(r->type->name, "Dataplane")) {
        snprintf(why, size, "hello.dataplane is a %s, not a Dataplane or a ZoneIngress",
                 r->type->name);
    } else if (!known_fields(r->spec, line, sizeof(line))) {
        snprintf(why, size, "%s is not valid: %s", what, line);
    } else if (!hy_resource_validate(r, &d)) {
        snprintf(why, size, "%s is not valid: %s", what, hy_diag_format(&d, 0, line, sizeof(line)));
    } else if (!(ingress ? check_zone_ingress(r, line, sizeof(line))
                         : check_dataplane(r, line, sizeof(line)))) {
        snprintf(why, size, "%s is not valid: %s", what, line);
    } else if (!ingress && (!h->csr || !h->csr[0])) {
        snprintf(why, size, "hello.csr is required for a Dataplane");
    } else {
        hy_diag_fini(&d);
        *out = r;
        return 0;
    }
    hy_diag_fini(&d);
    hy_resource_free(r);
    return HY_EINVAL;
}

/* ----- certificates ----- */

/* The mesh's issuer: its intermediate and key. */
struct issuer {
    struct hy_resource *mesh, *issuer, *key;
    int64_t leaf_validity;
};

static void issuer_fini(struct issuer *i)
{
    hy_resource_free(i->mesh);
    hy_resource_free(i->issuer);
    hy_resource_free(i->key);
}

static int load_issuer(struct hy_store *st, const char *mesh, struct issuer *i, char *why,
                       size_t size)
{
    memset(i, 0, sizeof(*i));
    if (hy_store_get(st, "Mesh", NULL, mesh, &i->mesh) < 0) {
        snprintf(why, size, "mesh %s does not exist in this zone", mesh);
        return HY_ENOTFOUND;
    }
    const Hypha__V1__Mesh *m = (const Hypha__V1__Mesh *)i->mesh->spec;
    if (!m->mtls || !m->mtls->enabled_backend) {
        snprintf(why, size, "mesh %s has no mTLS backend enabled", mesh);
        return HY_EINVAL;
    }
    const char *backend = m->mtls->enabled_backend;
    i->leaf_validity = DEFAULT_LEAF_VALIDITY;
    for (size_t k = 0; k < m->mtls->n_backends; k++) {
        const Hypha__V1__CertificateAuthorityBackend *b = m->mtls->backends[k];
        if (b->name && !strcmp(b->name, backend) && b->dp_cert && b->dp_cert->rotation &&
            b->dp_cert->rotation->expiration)
            i->leaf_validity = b->dp_cert->rotation->expiration->seconds;
    }
    if (hy_store_get(st, "MeshIssuer", mesh, backend, &i->issuer) < 0 ||
        hy_store_get(st, "MeshIssuerKey", mesh, backend, &i->key) < 0) {
        snprintf(why, size, "mesh %s has no zone CA for backend %s yet; retry shortly", mesh,
                 backend);
        return HY_ENOTFOUND;
    }
    return 0;
}

/* Signs a leaf for csr with one SPIFFE ID per inbound service and the
 * Dataplane's tags (hy_zone_dp_identity_uris). */
static int sign(struct hy_zone_dp_server *srv, struct dp_session *s, const char *csr, char *why,
                size_t size)
{
    struct hy_store *st = srv->z->cp.store;
    struct issuer is;
    int rc = load_issuer(st, s->dp->meta->mesh, &is, why, size);
    if (rc < 0) {
        issuer_fini(&is);
        return rc;
    }
    char **uris;
    size_t n;
    if ((rc = hy_zone_dp_identity_uris(s->dp, srv->z->cp.zone, &uris, &n)) < 0) {
        snprintf(why, size, "cannot list the sidecar's identities: %s", hy_strerror(rc));
        issuer_fini(&is);
        return rc;
    }
    struct hy_ca_pem ca = {((Hypha__V1__MeshIssuer *)is.issuer->spec)->cert,
                           ((Hypha__V1__MeshIssuerKey *)is.key->spec)->key};
    char *cert = NULL;
    rc = hy_ca_sign_leaf(&ca, csr, time(NULL), is.leaf_validity, (const char *const *)uris, n,
                         &cert);
    for (size_t i = 0; i < n; i++)
        free(uris[i]);
    free(uris);
    if (rc < 0) {
        snprintf(why, size, "cannot sign the sidecar's CSR: %s", hy_strerror(rc));
    } else {
        free(s->cert);
        free(s->chain);
        s->cert = cert;
        s->chain = strdup(ca.cert);
        if (s->identity) /* computed again with the new certificate */
            protobuf_c_message_free_unpacked(&s->identity->base, NULL);
        s->identity = NULL;
    }
    issuer_fini(&is);
    return rc;
}

/* ----- config ----- */

/* Stores the ingress's ZoneIngress with availableServices from c, when
 * they changed (or force). */
static void ingress_store(struct dp_session *s, const Hypha__V1__DpIngressConfig *c, bool force)
{
    Hypha__V1__ZoneIngress *zi = (Hypha__V1__ZoneIngress *)s->dp->spec;
    size_t before = hypha__v1__zone_ingress__get_packed_size(zi);
    uint8_t *old = malloc(before ? before : 1);
    if (old)
        hypha__v1__zone_ingress__pack(zi, old);
    int rc = hy_zone_ingress_available(c, zi);
    size_t after = hypha__v1__zone_ingress__get_packed_size(zi);
    uint8_t *now = rc == 0 ? malloc(after ? after : 1) : NULL;
    if (now)
        hypha__v1__zone_ingress__pack(zi, now);
    bool same = old && now && before == after && !memcmp(old, now, before);
    free(old);
    free(now);
    if (rc < 0 || (same && !force))
        return;
    struct hy_store_write w;
    s->dp->version = 0;
    if ((rc = hy_store_put(srv_of(s)->z->cp.store, s->dp, HY_VERSION_ANY, &w)) < 0)
        hy_log(HY_LOG_ERROR, "dp", "ingress %s: cannot store its ZoneIngress: %s",
               s->dp->meta->name, hy_strerror(rc));
}

static void push_ingress(struct dp_session *s, bool force_store)
{
    Hypha__V1__DpIngressConfig *c = NULL;
    int rc = hy_zone_ingress_config_build(srv_of(s)->z->cp.store, srv_of(s)->z->cfg->zone, &c);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dp", "ingress %s: cannot compute its routes: %s", s->dp->meta->name,
               hy_strerror(rc));
        return;
    }
    ingress_store(s, c, force_store);
    if (strcmp(c->version, s->sent_version) != 0) {
        Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_INGRESS_CONFIG;
        m.ingress_config = c;
        if (send_msg(s, &m) == 0) {
            snprintf(s->sent_version, sizeof(s->sent_version), "%s", c->version);
            s->sent_n++;
            hy_log(HY_LOG_DEBUG, "dp", "ingress %s: routes %s sent (%zu services)",
                   s->dp->meta->name, c->version, c->n_routes);
        }
    }
    hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
}

/* ----- a sidecar's config, in parts ----- */

static void held_fini(struct held *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].key);
    free(h->v);
    memset(h, 0, sizeof(*h));
}

static int held_copy(struct held *dst, const struct held *src)
{
    struct held h = {0};
    if (src->n && !(h.v = calloc(src->n, sizeof(*h.v))))
        return HY_ENOMEM;
    for (; h.n < src->n; h.n++) {
        h.v[h.n] = src->v[h.n];
        if (src->v[h.n].key && !(h.v[h.n].key = strdup(src->v[h.n].key))) {
            held_fini(&h);
            return HY_ENOMEM;
        }
    }
    memcpy(h.version, src->version, sizeof(h.version));
    held_fini(dst);
    *dst = h;
    return 0;
}

/* The parts of p as refs (p sorted: so are they). */
static int held_from_parts(struct held *dst, const struct hy_dp_parts *p)
{
    struct held h = {0};
    if (p->n && !(h.v = calloc(p->n, sizeof(*h.v))))
        return HY_ENOMEM;
    for (; h.n < p->n; h.n++) {
        struct part_ref *r = &h.v[h.n];
        r->kind = (int)p->v[h.n]->kind;
        snprintf(r->version, sizeof(r->version), "%s", S(p->v[h.n]->version));
        if (p->v[h.n]->key && !(r->key = strdup(p->v[h.n]->key))) {
            held_fini(&h);
            return HY_ENOMEM;
        }
    }
    memcpy(h.version, p->version, sizeof(h.version));
    held_fini(dst);
    *dst = h;
    return 0;
}

/* What a sidecar says it held when its last session ended (hello.held,
 * checked by hy_zone_dp_check_message): the zone sends what differs. Refs
 * that do not make held_version are dropped (it gets everything). */
static void held_from_hello(struct dp_session *s, const Hypha__V1__DpHello *h)
{
    struct hy_dp_ref *refs = h->n_held ? calloc(h->n_held, sizeof(*refs)) : NULL;
    char v[HY_DP_VERSION_LEN + 1];
    if (!h->n_held || !refs || !h->held_version) {
        free(refs);
        return;
    }
    for (size_t i = 0; i < h->n_held; i++)
        refs[i] = (struct hy_dp_ref){(int)h->held[i]->kind, h->held[i]->key, h->held[i]->version};
    hy_dp_whole_version(refs, h->n_held, v);
    bool twice = false;
    for (size_t i = 1; i < h->n_held; i++)
        twice = twice || hy_dp_ref_cmp(&refs[i - 1], &refs[i]) == 0;
    struct held x = {0};
    if (!twice && !strcmp(v, h->held_version) && (x.v = calloc(h->n_held, sizeof(*x.v)))) {
        for (; x.n < h->n_held; x.n++) {
            x.v[x.n].kind = refs[x.n].kind;
            snprintf(x.v[x.n].version, sizeof(x.v[x.n].version), "%s", refs[x.n].version);
            if (refs[x.n].key && !(x.v[x.n].key = strdup(refs[x.n].key)))
                break;
        }
        memcpy(x.version, v, sizeof(x.version));
        if (x.n == h->n_held && held_copy(&s->acked, &x) == 0)
            held_copy(&s->sent, &x);
        held_fini(&x);
    }
    free(refs);
}

static void own_parts_fini(struct dp_session *s)
{
    Hypha__V1__DpPart **own[] = {&s->identity, &s->inbounds, &s->outbounds};
    for (size_t i = 0; i < 3; i++) {
        if (*own[i])
            protobuf_c_message_free_unpacked(&(*own[i])->base, NULL);
        *own[i] = NULL;
    }
}

/* Recomputes what of s's own parts `what` (HY_ZONE_DP_*) says may have
 * changed, and any not computed yet. */
static int own_parts(struct dp_session *s, struct hy_zone_dp_round *round, unsigned what)
{
    int rc = 0;
    if (!s->identity)
        rc = hy_zone_dp_part_identity(s->dp, s->cert, s->chain, &s->identity);
    bool in = !s->inbounds || (what & HY_ZONE_DP_INBOUNDS);
    bool out = !s->outbounds || (what & HY_ZONE_DP_OUTBOUNDS);
    Hypha__V1__DpPart *ni = NULL, *no = NULL;
    if (rc == 0 && (in || out)) {
        rc = hy_zone_dp_parts_own(round, s->dp, in ? &ni : NULL, out ? &no : NULL);
        hy_series_inc(srv_of(s)->recomputed);
    }
    if (rc == 0 && ni) {
        if (s->inbounds)
            protobuf_c_message_free_unpacked(&s->inbounds->base, NULL);
        s->inbounds = ni;
    }
    if (rc == 0 && no) {
        if (s->outbounds)
            protobuf_c_message_free_unpacked(&s->outbounds->base, NULL);
        s->outbounds = no;
    }
    return rc;
}

/* Every part s's sidecar is due (borrowed: its own, the round's shared),
 * sorted, with the whole version. */
static int due_parts(struct dp_session *s, struct hy_zone_dp_round *round, struct hy_dp_parts *due)
{
    size_t nout = s->outbounds->n_outbounds;
    memset(due, 0, sizeof(*due));
    if (!(due->v = malloc((nout + 4) * sizeof(*due->v))))
        return HY_ENOMEM;
    const Hypha__V1__DpPart *shared;
    int rc = hy_zone_dp_round_bundle(round, s->dp->meta->mesh, &shared);
    if (rc == 0) {
        due->v[due->n++] = s->identity;
        due->v[due->n++] = (Hypha__V1__DpPart *)shared;
        due->v[due->n++] = s->inbounds;
        due->v[due->n++] = s->outbounds;
    }
    for (size_t i = 0; rc == 0 && i < nout; i++) {
        const char *svc = S(s->outbounds->outbounds[i]->service);
        bool seen = false;
        for (size_t k = 0; !seen && k < i; k++)
            seen = !strcmp(S(s->outbounds->outbounds[k]->service), svc);
        if (!seen && (rc = hy_zone_dp_round_endpoints(round, s->dp->origin, s->dp->meta->mesh, svc,
                                                      &shared)) == 0)
            due->v[due->n++] = (Hypha__V1__DpPart *)shared;
    }
    if (rc == 0)
        rc = hy_dp_parts_sort(due);
    if (rc < 0)
        hy_dp_parts_fini(due);
    return rc;
}

static int ref_vs_part(const struct part_ref *r, const Hypha__V1__DpPart *p)
{
    struct hy_dp_ref a = {r->kind, r->key, NULL}, b = {(int)p->kind, p->key, NULL};
    return hy_dp_ref_cmp(&a, &b);
}

/* The update from what s holds (sent) to due: the parts that differ, and
 * a removal for each Endpoints part no longer due (made into *removed,
 * the caller frees them). */
static int diff(const struct held *sent, const struct hy_dp_parts *due,
                Hypha__V1__DpConfigUpdate *u, Hypha__V1__DpPart ***removed, size_t *nremoved)
{
    u->parts = malloc((due->n + sent->n + 1) * sizeof(*u->parts));
    *removed = malloc((sent->n + 1) * sizeof(**removed));
    *nremoved = 0;
    if (!u->parts || !*removed)
        return HY_ENOMEM;
    size_t a = 0, b = 0;
    while (a < sent->n || b < due->n) {
        int c = a == sent->n ? 1 : b == due->n ? -1 : ref_vs_part(&sent->v[a], due->v[b]);
        if (c > 0 || (c == 0 && strcmp(sent->v[a].version, S(due->v[b]->version))))
            u->parts[u->n_parts++] = due->v[b];
        if (c < 0) { /* held, not due: only an Endpoints part can be */
            Hypha__V1__DpPart *r = malloc(sizeof(*r));
            if (!r)
                return HY_ENOMEM;
            hypha__v1__dp_part__init(r);
            (*removed)[(*nremoved)++] = r;
            r->has_kind = r->has_removed = 1;
            r->kind = sent->v[a].kind;
            r->removed = 1;
            r->key = sent->v[a].key ? strdup(sent->v[a].key) : NULL;
            if ((sent->v[a].key && !r->key) || hy_dp_part_stamp(r) < 0)
                return HY_ENOMEM;
            u->parts[u->n_parts++] = r;
        }
        a += c <= 0;
        b += c >= 0;
    }
    return 0;
}

/* u as a DpMessage, packed: the round's shared parts as the round packed
 * them once, s's own and the removals packed here. */
static int pack_update(struct dp_session *s, struct hy_zone_dp_round *round,
                       const Hypha__V1__DpConfigUpdate *u, const char *version, uint8_t **out,
                       size_t *len)
{
    struct hy_dp_packed *v = calloc(u->n_parts, sizeof(*v));
    uint8_t **own = calloc(u->n_parts, sizeof(*own));
    int rc = v && own ? 0 : HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < u->n_parts; i++) {
        const Hypha__V1__DpPart *p = u->parts[i];
        if (p->kind == HYPHA__V1__DP_PART__KIND__Endpoints && !p->removed)
            rc = hy_zone_dp_round_packed(round, s->dp->origin, s->dp->meta->mesh, p, &v[i].data,
                                         &v[i].len);
        else if (p->kind == HYPHA__V1__DP_PART__KIND__TrustBundle)
            rc = hy_zone_dp_round_packed(round, NULL, s->dp->meta->mesh, p, &v[i].data, &v[i].len);
        else if (!(v[i].data = own[i] = hy_wire_pack(&p->base, &v[i].len)))
            rc = HY_ENOMEM;
    }
    if (rc == 0)
        rc = hy_dp_update_pack(version, s->sent.version, v, u->n_parts, out, len);
    for (size_t i = 0; own && i < u->n_parts; i++)
        free(own[i]);
    free(own);
    free(v);
    return rc;
}

/* Sends s's sidecar the parts it is due that it does not hold (as sent),
 * recomputing first its own parts `what` says may have changed. */
static void push_parts(struct dp_session *s, struct hy_zone_dp_round *round, unsigned what)
{
    struct hy_zone_dp_server *srv = srv_of(s);
    struct hy_dp_parts due = {0};
    Hypha__V1__DpConfigUpdate u = HYPHA__V1__DP_CONFIG_UPDATE__INIT;
    Hypha__V1__DpPart **removed = NULL;
    size_t nremoved = 0;
    int rc = own_parts(s, round, what);
    if (rc == 0)
        rc = due_parts(s, round, &due);
    if (rc == 0 && strcmp(due.version, s->sent.version))
        rc = diff(&s->sent, &due, &u, &removed, &nremoved);
    uint8_t *msg = NULL;
    size_t len = 0;
    if (rc == 0 && u.n_parts)
        rc = pack_update(s, round, &u, due.version, &msg, &len);
    if (rc == 0 && u.n_parts) {
        if (hy_cp_session_send_packed(&s->base, msg, len) == 0 &&
            (rc = held_from_parts(&s->sent, &due)) == 0) {
            s->sent_n++;
            s->parts_sent += u.n_parts;
            hy_series_inc(srv->updates);
            hy_series_add(srv->parts, (double)u.n_parts);
            hy_series_add(srv->bytes, (double)len);
            hy_log(HY_LOG_DEBUG, "dp", "%s/%s: config %s sent (%zu of %zu parts, %zu bytes)",
                   s->dp->meta->mesh, s->dp->meta->name, due.version, u.n_parts, due.n, len);
        }
    }
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "dp", "%s/%s: cannot compute the config: %s", s->dp->meta->mesh,
               s->dp->meta->name, hy_strerror(rc));
    for (size_t i = 0; i < nremoved; i++)
        protobuf_c_message_free_unpacked(&removed[i]->base, NULL);
    free(removed);
    free(u.parts);
    free(msg);
    hy_dp_parts_fini(&due);
}

/* The server's round, loaded whole when there is none. */
static int current_round(struct hy_zone_dp_server *srv, struct hy_zone_dp_round **out)
{
    if (!srv->round) {
        int rc = hy_zone_dp_round_load(srv->z->cp.store, &srv->round);
        if (rc < 0)
            return rc;
        srv->round_fresh = true;
    }
    *out = srv->round;
    return 0;
}

int hy_zone_dp_connected_config(struct hy_zone *z, const char *mesh, const char *name,
                                Hypha__V1__DpConfig **out, char *acked, size_t size)
{
    *out = NULL;
    if (!z->dp)
        return HY_ENOTFOUND;
    for (struct hy_cp_session *cs = hy_cp_session_first(z->dp->ss); cs; cs = cs->next) {
        struct dp_session *s = (struct dp_session *)cs;
        if (!s->dp || s->ingress || cs->closing || strcmp(S(s->dp->meta->mesh), mesh) ||
            strcmp(s->dp->meta->name, name))
            continue;
        snprintf(acked, size, "%s", s->acked.version);
        struct hy_zone_dp_round *round;
        const Hypha__V1__DpPart *bundle;
        int rc = current_round(z->dp, &round);
        if (rc == 0)
            rc = own_parts(s, round, 0);
        if (rc == 0)
            rc = hy_zone_dp_round_bundle(round, mesh, &bundle);
        if (rc == 0)
            rc = hy_zone_dp_parts_assemble(round, s->dp, s->identity, bundle, s->inbounds,
                                           s->outbounds, out);
        return rc;
    }
    return HY_ENOTFOUND;
}

static int send_packed(void *to, const void *data, size_t len)
{
    return hy_cp_session_send_packed(to, data, len);
}

int hy_zone_dp_stats_of(struct hy_zone *z, bool ingress, const char *mesh, const char *name,
                        hy_zone_dp_stats_done_fn done, void *ud)
{
    if (!z->dp)
        return HY_ENOTFOUND;
    for (struct hy_cp_session *cs = hy_cp_session_first(z->dp->ss); cs; cs = cs->next) {
        struct dp_session *s = (struct dp_session *)cs;
        if (s->dp && s->ingress == ingress && !cs->closing &&
            !strcmp(S(s->dp->meta->mesh), S(mesh)) && !strcmp(s->dp->meta->name, name))
            return hy_zone_dp_stats_ask(&z->dp->stats, &s->stats, send_packed, cs, done, ud);
    }
    return HY_ENOTFOUND;
}

/* Sends s what changed (what: of its own parts, HY_ZONE_DP_*). */
static void push_from(struct dp_session *s, struct hy_zone_dp_round *round, unsigned what)
{
    if (!s->dp || s->base.closing)
        return;
    if (s->ingress)
        push_ingress(s, false);
    else
        push_parts(s, round, what);
}

static void on_kick(uv_timer_t *t)
{
    struct hy_zone_dp_server *srv = t->data;
    struct hy_zone_dp_round *round;
    srv->kick_armed = false;
    int rc = current_round(srv, &round);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "dp", "cannot read the store for the sidecars' configs: %s",
               hy_strerror(rc));
    for (struct hy_cp_session *cs = hy_cp_session_first(srv->ss); rc == 0 && cs; cs = cs->next) {
        struct dp_session *s = (struct dp_session *)cs;
        if (s->pending) {
            s->pending = false;
            push_from(s, round, 0);
        }
    }
}

/* s gets what it is due on the next loop turn: the Hellos and renewals of
 * one turn share one round. */
static void push(struct dp_session *s)
{
    struct hy_zone_dp_server *srv = srv_of(s);
    s->pending = true;
    if (!srv->kick_armed) {
        srv->kick_armed = true;
        uv_timer_start(&srv->kick, on_kick, 0, 0);
    }
}

/* ----- registration ----- */

/* The subscriptions list of an insight: DataplaneInsight and
 * ZoneIngressInsight both start with it. */
struct subs {
    size_t *n;
    Hypha__V1__DataplaneInsight__Subscription ***v;
};

static struct subs subs_of(struct hy_resource *r, bool ingress)
{
    if (ingress) {
        Hypha__V1__ZoneIngressInsight *zi = (Hypha__V1__ZoneIngressInsight *)r->spec;
        return (struct subs){&zi->n_subscriptions, &zi->subscriptions};
    }
    Hypha__V1__DataplaneInsight *di = (Hypha__V1__DataplaneInsight *)r->spec;
    return (struct subs){&di->n_subscriptions, &di->subscriptions};
}

/* Sets sub's version.kumaDp.version (Kuma's shape) to v. False when out
 * of memory. */
static bool set_agent_version(Hypha__V1__DataplaneInsight__Subscription *sub, const char *v)
{
    if (!sub->version && (sub->version = malloc(sizeof(*sub->version))))
        hypha__v1__dataplane_insight__subscription__version__init(sub->version);
    if (sub->version && !sub->version->kuma_dp &&
        (sub->version->kuma_dp = malloc(sizeof(*sub->version->kuma_dp))))
        hypha__v1__dataplane_insight__subscription__version__kuma_dp__init(sub->version->kuma_dp);
    if (!sub->version || !sub->version->kuma_dp)
        return false;
    hy_kds_set_str(&sub->version->kuma_dp->version, v);
    return sub->version->kuma_dp->version != NULL;
}

/* Writes s's insight (a DataplaneInsight, or a ZoneIngressInsight for an
 * ingress): a new subscription at connect, its disconnect time, the
 * config counters, a sidecar's certificate expiry. */
static struct hy_resource *insight_made(struct dp_session *s, bool connect, bool disconnect)
{
    struct hy_store *st = srv_of(s)->z->cp.store;
    const char *type = s->ingress ? "ZoneIngressInsight" : "DataplaneInsight";
    const char *mesh = s->ingress ? NULL : s->dp->meta->mesh;
    struct hy_resource *r = NULL;
    if (hy_store_get(st, type, mesh, s->dp->meta->name, &r) < 0) {
        r = hy_resource_new(hy_rtype_by_name(type));
        if (!r || hy_resource_set_name(r, mesh, s->dp->meta->name) < 0) {
            hy_resource_free(r);
            return NULL;
        }
    }
    struct subs l = subs_of(r, s->ingress);
    Hypha__V1__DataplaneInsight__Subscription *sub = NULL;
    if (connect || !*l.n) {
        Hypha__V1__DataplaneInsight__Subscription **v = realloc(*l.v, (*l.n + 1) * sizeof(*v));
        sub = malloc(sizeof(*sub));
        if (!v || !sub) {
            free(sub);
            if (v)
                *l.v = v;
            hy_resource_free(r);
            return NULL;
        }
        *l.v = v;
        hypha__v1__dataplane_insight__subscription__init(sub);
        sub->connect_time = hy_timestamp_now();
        sub->control_plane_instance_id = strdup(srv_of(s)->z->cp.instance_id);
        v[(*l.n)++] = sub;
    }
    /* this replica's latest subscription: with several zone replicas on
     * one store, the sidecar may have moved to another since, whose
     * subscription (last) this replica must not mark disconnected */
    const char *me = srv_of(s)->z->cp.instance_id;
    size_t at = *l.n;
    while (at > 0 && (*l.v)[at - 1]->control_plane_instance_id &&
           strcmp((*l.v)[at - 1]->control_plane_instance_id, me) != 0)
        at--;
    if (at == 0) {
        hy_resource_free(r); /* it moved on: nothing of ours to write */
        return NULL;
    }
    sub = (*l.v)[at - 1];
    if (disconnect && !sub->disconnect_time)
        sub->disconnect_time = hy_timestamp_now();
    hy_kds_set_str(&sub->config_version, s->ingress ? s->acked_version : s->acked.version);
    if (s->agent_version[0] && !set_agent_version(sub, s->agent_version)) {
        hy_resource_free(r);
        return NULL;
    }
    sub->has_responses_sent = sub->has_responses_acknowledged = sub->has_responses_rejected = 1;
    sub->responses_sent = s->sent_n;
    sub->responses_acknowledged = s->acked_n;
    sub->responses_rejected = s->rejected;
    Hypha__V1__DataplaneInsight *di = s->ingress ? NULL : (Hypha__V1__DataplaneInsight *)r->spec;
    if (di && s->cert) {
        struct hy_ca_info info = {0};
        if (hy_ca_inspect(s->cert, &info) == 0) {
            if (!di->m_t_l_s) {
                di->m_t_l_s = malloc(sizeof(*di->m_t_l_s));
                if (di->m_t_l_s)
                    hypha__v1__dataplane_insight__mtls__init(di->m_t_l_s);
            }
            if (di->m_t_l_s) {
                if (di->m_t_l_s->certificate_expiration_time)
                    protobuf_c_message_free_unpacked(
                        &di->m_t_l_s->certificate_expiration_time->base, NULL);
                di->m_t_l_s->certificate_expiration_time = hy_cp_timestamp(info.not_after);
            }
        }
        hy_ca_info_fini(&info);
    }
    hy_kds_set_str(&r->origin, srv_of(s)->z->cfg->zone);
    return r;
}

/* Writes s's insight now (connect, disconnect, a token that died). */
static void insight(struct dp_session *s, bool connect, bool disconnect)
{
    struct hy_resource *r = insight_made(s, connect, disconnect);
    struct hy_store_write w;
    s->insight_due = false;
    if (r)
        hy_store_put(srv_of(s)->z->cp.store, r, HY_VERSION_ANY, &w);
    hy_resource_free(r);
}

/* Writes the insights of every session whose counters or acked version
 * moved since: one transaction (one fsync) for a change's acks, not one
 * per sidecar. */
static void on_insight_flush(uv_timer_t *t)
{
    struct hy_zone_dp_server *srv = t->data;
    struct hy_store_write w[HY_ZONE_DP_INSIGHT_BATCH];
    size_t n = 0, failed = 0;
    struct hy_cp_session *cs = hy_cp_session_first(srv->ss);
    srv->flush_armed = false;
    while (cs || n) {
        for (; cs && n < HY_ZONE_DP_INSIGHT_BATCH; cs = cs->next) {
            struct dp_session *s = (struct dp_session *)cs;
            if (!s->insight_due || !s->dp || cs->closing)
                continue;
            s->insight_due = false;
            struct hy_resource *r = insight_made(s, false, false);
            if (r)
                w[n++] = (struct hy_store_write){
                    .op = HY_STORE_PUT, .r = r, .expect_version = HY_VERSION_ANY};
        }
        int rc = n ? hy_store_apply(srv->z->cp.store, w, n, &failed) : 0;
        if (rc < 0)
            hy_log(HY_LOG_WARN, "dp", "cannot write %zu insights: %s", n, hy_strerror(rc));
        for (size_t i = 0; i < n; i++)
            hy_resource_free((struct hy_resource *)w[i].r);
        n = 0;
    }
}

/* s's insight is written with the others' on the next flush. */
static void insight_later(struct dp_session *s)
{
    struct hy_zone_dp_server *srv = srv_of(s);
    s->insight_due = true;
    if (srv->flush_init && !srv->flush_armed) {
        srv->flush_armed = true;
        uv_timer_start(&srv->flush, on_insight_flush, HY_ZONE_DP_INSIGHT_FLUSH_MS, 0);
    }
}

/* The token must be for this Dataplane: same mesh and name, and every tag
 * it grants on every inbound. Reads only what hy_zone_dp_check_hello checked. */
bool hy_zone_dp_token_matches(const struct hy_token_claims *c, const struct hy_resource *dp,
                              char *why, size_t size)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    if (!c->mesh || strcmp(c->mesh, S(dp->meta->mesh))) {
        snprintf(why, size, "the dataplane token is for mesh %s, not %s", S(c->mesh),
                 S(dp->meta->mesh));
        return false;
    }
    if (!c->name || strcmp(c->name, S(dp->meta->name))) {
        snprintf(why, size, "the dataplane token is for Dataplane %s, not %s", S(c->name),
                 S(dp->meta->name));
        return false;
    }
    size_t nin = d->networking ? d->networking->n_inbound : 0;
    for (size_t t = 0; t < c->ntags; t++)
        for (size_t i = 0; i < nin; i++) {
            const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
            const char *v = NULL;
            size_t found = 0;
            for (size_t k = 0; k < in->n_tags; k++) {
                if (!in->tags[k]->key || !c->tags[t].key ||
                    strcmp(in->tags[k]->key, c->tags[t].key))
                    continue;
                if (!found++)
                    v = in->tags[k]->value;
            }
            /* one key twice (refused by validation already): never pick one */
            if (found > 1) {
                snprintf(why, size, "inbound %zu has tag %s %zu times", i, c->tags[t].key, found);
                return false;
            }
            if (!v || strcmp(v, S(c->tags[t].value))) {
                snprintf(why, size, "the dataplane token allows %s=%s, but inbound %zu has %s",
                         S(c->tags[t].key), S(c->tags[t].value), i, v ? v : "no such tag");
                return false;
            }
        }
    return true;
}

/* Whether session cs is registered as resource ud (same type, mesh, name). */
static bool holds(const struct hy_cp_session *cs, void *ud)
{
    const struct dp_session *s = (const struct dp_session *)cs;
    const struct hy_resource *r = ud;
    return s->dp && s->dp->type == r->type && !strcmp(S(s->dp->meta->mesh), S(r->meta->mesh)) &&
           !strcmp(s->dp->meta->name, r->meta->name);
}

/* A zone ingress: its zone-ingress token must name it; no CSR. Takes zi. */
static void on_ingress_hello(struct dp_session *s, struct hy_resource *zi,
                             const Hypha__V1__DpHello *h)
{
    struct hy_zone_dp_server *srv = srv_of(s);
    char why[400] = "";
    struct hy_token_claims claims = {0};
    struct hy_token_failure fail = {0};
    s->dp = zi;
    s->ingress = true;
    snprintf(s->agent_version, sizeof(s->agent_version), "%s", S(h->version));
    snprintf(s->admin_address, sizeof(s->admin_address), "%s", S(h->admin_address));
    if (hy_cp_verify_token(&srv->z->cp, HY_TOKEN_KIND_INGRESS, h->token, &claims, &fail) < 0) {
        snprintf(why, sizeof(why), "zone-ingress token refused: %s", fail.message);
    } else if (!claims.name || strcmp(claims.name, zi->meta->name)) {
        snprintf(why, sizeof(why), "the zone-ingress token is for ZoneIngress %s, not %s",
                 S(claims.name), zi->meta->name);
    } else if (hy_cp_session_find(srv->ss, &s->base, holds, zi)) {
        snprintf(why, sizeof(why), "ZoneIngress %s is already connected", zi->meta->name);
    }
    if (why[0]) {
        hy_token_claims_fini(&claims);
        reject(s, why);
        return;
    }
    hy_cp_session_admit(&s->base, &claims);
    hy_token_claims_fini(&claims);
    Hypha__V1__ZoneIngress *spec = (Hypha__V1__ZoneIngress *)zi->spec;
    hy_kds_set_str(&spec->zone, srv->z->cfg->zone);
    hy_kds_set_str(&zi->origin, srv->z->cfg->zone);
    hy_log(HY_LOG_INFO, "dp", "ingress %s connected from %s (hypha-ingress %s) and registered",
           zi->meta->name, hy_ws_conn_peer(s->base.conn), S(h->version));
    push_ingress(s, true);
    insight(s, true, false);
}

/* Whether address:port is one of this zone CP's own listeners (API, HTTPS
 * API, DP server) on this host: a Dataplane that says its inbound is there
 * would have the zone ingress (and other sidecars) carry strangers' bytes
 * to the control plane (finding 4). Host names are left to the ingress,
 * which checks what they resolve to. */
static bool own_listener(struct hy_zone_dp_server *srv, const char *address, unsigned port)
{
    struct sockaddr_storage sa;
    int ports[5] = {hy_cp_session_server_port(srv->ss)}, n = 1;
    for (size_t i = 0; i < 4; i++)
        if ((ports[n] = hy_http_server_port(srv->z->cp.http, i)) > 0)
            n++;
    bool mine = false;
    for (int i = 0; i < n && !mine; i++)
        mine = ports[i] > 0 && (unsigned)ports[i] == port;
    if (!mine || hy_net_parse_ip(address, port, &sa) < 0)
        return false;
    enum hy_net_scope sc = hy_net_scope_of((const struct sockaddr *)&sa);
    if (sc == HY_NET_SCOPE_LOOPBACK || sc == HY_NET_SCOPE_UNSPECIFIED)
        return true;
    struct hy_net_addrs *local = NULL;
    bool here =
        hy_net_local_addrs(&local) == 0 && hy_net_addrs_has(local, (const struct sockaddr *)&sa);
    free(local);
    return here;
}

/* The first inbound of a Dataplane that points at this zone CP, or -1. */
static int inbound_at_zone(struct hy_zone_dp_server *srv, const struct hy_resource *dp)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    for (size_t i = 0; d->networking && i < d->networking->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = d->networking->inbound[i];
        const char *a = in->address ? in->address : d->networking->address;
        if (a && own_listener(srv, a, in->port))
            return (int)i;
    }
    return -1;
}

/* Sets dp's label hypha.io/zone to zone (replacing one the file had).
 * 0 or HY_ENOMEM. */
static int zone_label(struct hy_resource *dp, const char *zone)
{
    Hypha__V1__Meta *m = dp->meta;
    for (size_t i = 0; i < m->n_labels; i++)
        if (m->labels[i]->key && !strcmp(m->labels[i]->key, "hypha.io/zone")) {
            hy_kds_set_str(&m->labels[i]->value, zone);
            return m->labels[i]->value ? 0 : HY_ENOMEM;
        }
    Hypha__V1__Meta__LabelsEntry **v = realloc(m->labels, (m->n_labels + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    m->labels = v;
    Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e));
    if (!e)
        return HY_ENOMEM;
    hypha__v1__meta__labels_entry__init(e);
    e->key = strdup("hypha.io/zone");
    e->value = strdup(zone);
    v[m->n_labels++] = e;
    return e->key && e->value ? 0 : HY_ENOMEM;
}

/* Order matters: the resource is checked whole (hy_zone_dp_check_hello: NULL
 * or duplicate keys, names, addresses) before the token is read against
 * it, so the token check never picks one of two hypha.io/service tags. */
static void on_hello(struct dp_session *s, const Hypha__V1__DpHello *h)
{
    struct hy_zone_dp_server *srv = srv_of(s);
    struct hy_resource *dp = NULL;
    char why[400] = "";
    struct hy_token_claims claims = {0};
    struct hy_token_failure fail = {0};
    if (hy_zone_dp_check_hello(h, &dp, why, sizeof(why)) < 0) {
        reject(s, why);
        return;
    }
    /* a name the global CP could not keep as "<zone>.<name>" is refused
     * here, where it is made, not by a stalled sync later (finding 6) */
    char name_why[300];
    if (!hy_zone_name_fits(srv->z, dp->meta->name, name_why, sizeof(name_why))) {
        snprintf(why, sizeof(why), "%s %s: %s", dp->type->name, dp->meta->name, name_why);
        hy_resource_free(dp);
        reject(s, why);
        return;
    }
    if (!strcmp(dp->type->name, "ZoneIngress")) {
        on_ingress_hello(s, dp, h);
        return;
    }
    int at = inbound_at_zone(srv, dp);
    if (at >= 0) {
        snprintf(why, sizeof(why),
                 "networking.inbound[%d]: the address and port are this zone control plane's own "
                 "listener; a Dataplane's inbound must be its own proxy",
                 at);
        hy_resource_free(dp);
        reject(s, why);
        return;
    }
    if (hy_cp_verify_token(&srv->z->cp, HY_TOKEN_KIND_DATAPLANE, h->token, &claims, &fail) < 0) {
        snprintf(why, sizeof(why), "dataplane token refused: %s", fail.message);
    } else if (!hy_zone_dp_token_matches(&claims, dp, why, sizeof(why))) {
        /* why is set */
    } else if (hy_cp_session_find(srv->ss, &s->base, holds, dp)) {
        snprintf(why, sizeof(why), "Dataplane %s/%s is already connected", dp->meta->mesh,
                 dp->meta->name);
    }
    if (why[0]) {
        hy_token_claims_fini(&claims);
        hy_resource_free(dp);
        reject(s, why);
        return;
    }
    s->dp = dp;
    snprintf(s->agent_version, sizeof(s->agent_version), "%s", S(h->version));
    snprintf(s->admin_address, sizeof(s->admin_address), "%s", S(h->admin_address));
    hy_cp_session_admit(&s->base, &claims);
    hy_token_claims_fini(&claims);
    if (sign(srv, s, h->csr, why, sizeof(why)) < 0) {
        reject(s, why);
        return;
    }
    held_from_hello(s, h);
    /* register: this zone's own, so KDS sends it up, labelled with its
     * zone as Kuma labels it kuma.io/zone (what inspect shows) */
    hy_kds_set_str(&dp->origin, srv->z->cfg->zone);
    dp->version = 0;
    struct hy_store_write w;
    int rc = zone_label(dp, srv->z->cfg->zone);
    if (rc == 0)
        rc = hy_store_put(srv->z->cp.store, dp, HY_VERSION_ANY, &w);
    if (rc < 0) {
        reject(s, "cannot register the Dataplane");
        return;
    }
    insight(s, true, false);
    hy_log(HY_LOG_INFO, "dp", "%s/%s connected from %s (hypha-dp %s) and registered",
           dp->meta->mesh, dp->meta->name, hy_ws_conn_peer(s->base.conn), S(h->version));
    push(s);
}

/* ----- token liveness ----- */

/* s's token no longer holds (the layer counted it): one log line, the
 * insight's disconnect time, then DpReject{why} and close 1008. */
static void token_dead(struct hy_cp_session *cs, const char *why)
{
    struct dp_session *s = (struct dp_session *)cs;
    char name[300], reason[300];
    snprintf(reason, sizeof(reason), "%s token no longer valid: %s",
             s->ingress ? "zone-ingress" : "dataplane", why);
    hy_log(HY_LOG_WARN, "dp", "%s from %s: session closed: %s",
           session_name(cs, name, sizeof(name)), hy_ws_conn_peer(cs->conn), reason);
    insight(s, false, true);
    hy_cp_session_reject(cs, reason);
}

/* An Ack of the version last sent: the sidecar holds what was sent. One
 * of an earlier update still on its way is counted only. The insight is
 * written when the acked version changes: a peer repeating one Ack must
 * not cost a store write each. */
static void on_ack(struct dp_session *s, const Hypha__V1__DpAck *a)
{
    s->acked_n++;
    if (s->ingress) {
        if (strcmp(s->acked_version, a->version)) {
            snprintf(s->acked_version, sizeof(s->acked_version), "%s", a->version);
            insight_later(s);
        }
        return;
    }
    if (strcmp(a->version, s->sent.version) || !strcmp(a->version, s->acked.version))
        return;
    if (held_copy(&s->acked, &s->sent) == 0)
        insight_later(s);
}

/* A Nack: the sidecar kept what it held (acked); the next update is
 * made from that. Logged once per refused version, with the parts it
 * names. */
static void on_nack(struct dp_session *s, const Hypha__V1__DpNack *n)
{
    char text[300], parts[300] = "";
    s->rejected++;
    if (!s->ingress)
        held_copy(&s->sent, &s->acked);
    if (!strcmp(s->nacked_version, S(n->version)))
        return;
    snprintf(s->nacked_version, sizeof(s->nacked_version), "%s", S(n->version));
    size_t at = 0;
    for (size_t i = 0; i < n->n_parts && at < sizeof(parts) - 2; i++) {
        const ProtobufCEnumValue *k = protobuf_c_enum_descriptor_get_value(
            &hypha__v1__dp_part__kind__descriptor, n->parts[i]->kind);
        int w = snprintf(parts + at, sizeof(parts) - 2 - at, "%s%s%s%s",
                         i ? ", " : " (parts: ", k ? k->name : "?", n->parts[i]->key ? " " : "",
                         S(n->parts[i]->key));
        at += w > 0 ? (size_t)w : 0;
    }
    at = strlen(parts);
    if (at)
        snprintf(parts + at, sizeof(parts) - at, ")");
    hy_log(HY_LOG_WARN, "dp", "%s%s%s refused config %s%s: %s", S(s->dp->meta->mesh),
           s->ingress ? "" : "/", s->dp->meta->name, S(n->version), parts,
           hy_cp_session_clean(n->error, text, sizeof(text)));
    insight_later(s);
}

static void on_message(struct hy_cp_session *cs, const uint8_t *data, size_t len)
{
    struct dp_session *s = (struct dp_session *)cs;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) {
        reject(s, "malformed message (not a DpMessage)");
        return;
    }
    char why[300] = "";
    if (!hy_zone_dp_check_message(m, why, sizeof(why))) {
        reject(s, why);
    } else if (!s->dp && m->msg_case != HYPHA__V1__DP_MESSAGE__MSG_HELLO) {
        reject(s, "the first message must be DpHello");
    } else {
        switch (m->msg_case) {
        case HYPHA__V1__DP_MESSAGE__MSG_HELLO:
            if (s->dp)
                reject(s, "DpHello sent twice");
            else
                on_hello(s, m->hello);
            break;
        case HYPHA__V1__DP_MESSAGE__MSG_CSR:
            if (s->ingress)
                reject(s, "an ingress has no certificate to renew");
            else if (!hy_cp_session_live(cs)) {
                /* ended: no certificate for a revoked or expired token */
            } else if (sign(srv_of(s), s, m->csr->csr, why, sizeof(why)) < 0) {
                hy_log(HY_LOG_WARN, "dp", "%s/%s: certificate renewal refused: %s",
                       s->dp->meta->mesh, s->dp->meta->name, why);
            } else {
                hy_log(HY_LOG_INFO, "dp", "%s/%s: certificate renewed", s->dp->meta->mesh,
                       s->dp->meta->name);
                push(s);
            }
            break;
        case HYPHA__V1__DP_MESSAGE__MSG_ACK:
            on_ack(s, m->ack);
            break;
        case HYPHA__V1__DP_MESSAGE__MSG_NACK:
            on_nack(s, m->nack);
            break;
        case HYPHA__V1__DP_MESSAGE__MSG_STATS:
            if (!hy_zone_dp_stats_answer(&srv_of(s)->stats, &s->stats, m->stats)) {
                char name[300];
                hy_log(HY_LOG_DEBUG, "dp",
                       "%s: dropped metrics for no question in flight (id %llu)",
                       session_name(cs, name, sizeof(name)), (unsigned long long)m->stats->id);
            }
            break;
        default:
            reject(s, "unexpected message");
        }
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void session_fini(struct hy_cp_session *cs)
{
    struct dp_session *s = (struct dp_session *)cs;
    hy_zone_dp_stats_end(&srv_of(s)->stats, &s->stats);
    hy_resource_free(s->dp);
    free(s->cert);
    free(s->chain);
    own_parts_fini(s);
    held_fini(&s->sent);
    held_fini(&s->acked);
}

static void on_close(struct hy_cp_session *cs, int code, const char *reason)
{
    struct dp_session *s = (struct dp_session *)cs;
    struct hy_zone_dp_server *srv = srv_of(s);
    hy_zone_dp_stats_end(&srv->stats, &s->stats);
    if (!s->dp || cs->closing)
        return;
    if (s->ingress) {
        if (code == 1000) {
            hy_store_delete(srv->z->cp.store, "ZoneIngress", NULL, s->dp->meta->name,
                            HY_VERSION_ANY);
            hy_store_delete(srv->z->cp.store, "ZoneIngressInsight", NULL, s->dp->meta->name,
                            HY_VERSION_ANY);
        } else {
            insight(s, false, true); /* Offline; removed after --dp-cleanup-age */
        }
        hy_log(HY_LOG_INFO, "dp", "ingress %s disconnected (%d %s)%s", s->dp->meta->name, code,
               reason, code == 1000 ? " and deregistered" : "");
    } else if (code == 1000) {
        /* a clean exit deregisters */
        hy_store_delete(srv->z->cp.store, "Dataplane", s->dp->meta->mesh, s->dp->meta->name,
                        HY_VERSION_ANY);
        hy_store_delete(srv->z->cp.store, "DataplaneInsight", s->dp->meta->mesh, s->dp->meta->name,
                        HY_VERSION_ANY);
        hy_log(HY_LOG_INFO, "dp", "%s/%s disconnected and deregistered", s->dp->meta->mesh,
               s->dp->meta->name);
    } else {
        insight(s, false, true);
        hy_log(HY_LOG_INFO, "dp", "%s/%s disconnected (%d %s)", s->dp->meta->mesh,
               s->dp->meta->name, code, reason);
    }
}

/* ----- cleanup of sidecars that vanished ----- */

struct stale {
    struct hy_zone_dp_server *srv;
    int64_t now;
    char (*names)[2][256]; /* mesh, name */
    size_t n, cap;
};

static bool connected_dp(struct hy_zone_dp_server *srv, bool ingress, const char *mesh,
                         const char *name)
{
    for (struct hy_cp_session *cs = hy_cp_session_first(srv->ss); cs; cs = cs->next) {
        const struct dp_session *s = (const struct dp_session *)cs;
        if (s->dp && s->ingress == ingress && !strcmp(S(s->dp->meta->mesh), mesh) &&
            !strcmp(s->dp->meta->name, name))
            return true;
    }
    return false;
}

static int find_stale(void *ud, struct hy_resource *r, bool *take)
{
    struct stale *st = ud;
    bool ingress = !strcmp(r->type->name, "ZoneIngressInsight");
    struct subs l = subs_of(r, ingress);
    (void)take;
    const char *mesh = S(r->meta->mesh), *name = r->meta->name;
    if (!*l.n || connected_dp(st->srv, ingress, mesh, name))
        return 0;
    const Hypha__V1__DataplaneInsight__Subscription *sub = (*l.v)[*l.n - 1];
    /* open on another replica of this zone (a store several processes
     * share): it may well be connected there; that replica's own cleanup
     * decides. An LMDB store has one process: an open subscription of
     * another instance is this zone's before a restart. */
    if (!sub->disconnect_time && sub->control_plane_instance_id &&
        strcmp(sub->control_plane_instance_id, st->srv->z->cp.instance_id) != 0 &&
        strcmp(hy_store_backend_name(st->srv->z->cp.store), "lmdb") != 0)
        return 0;
    /* no disconnect time: the sidecar was connected when this zone last
     * stopped; count from this zone's start */
    int64_t since = sub->disconnect_time ? sub->disconnect_time->seconds : st->srv->started;
    if (st->now - since < st->srv->z->cfg->dp_cleanup_age / 1000)
        return 0;
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 16;
        void *v = realloc(st->names, cap * sizeof(*st->names));
        if (!v)
            return HY_ENOMEM;
        st->names = v;
        st->cap = cap;
    }
    snprintf(st->names[st->n][0], 256, "%s", mesh);
    snprintf(st->names[st->n][1], 256, "%s", name);
    st->n++;
    return 0;
}

/* Deletes the Dataplanes (and insights) of sidecars, and the ZoneIngresses
 * (and insights) of ingresses, disconnected longer than --dp-cleanup-age
 * without a clean goodbye (Offline all that time). */
static void on_cleanup(uv_timer_t *t)
{
    struct hy_zone_dp_server *srv = t->data;
    struct hy_store *store = srv->z->cp.store;
    static const char *const kinds[2][3] = {{"DataplaneInsight", "Dataplane", "sidecars"},
                                            {"ZoneIngressInsight", "ZoneIngress", "ingresses"}};
    for (int k = 0; k < 2; k++) {
        struct stale st = {.srv = srv, .now = time(NULL)};
        if (hy_store_each(store, kinds[k][0], find_stale, &st) < 0)
            hy_log(HY_LOG_WARN, "dp", "cannot look for vanished %s", kinds[k][2]);
        for (size_t i = 0; i < st.n; i++) {
            const char *mesh = k ? NULL : st.names[i][0], *name = st.names[i][1];
            hy_store_delete(store, kinds[k][1], mesh, name, HY_VERSION_ANY);
            hy_store_delete(store, kinds[k][0], mesh, name, HY_VERSION_ANY);
            hy_log(HY_LOG_INFO, "dp",
                   "%s %s%s%s removed: disconnected for more than %llds without deregistering",
                   kinds[k][1], k ? "" : mesh, k ? "" : "/", name,
                   (long long)(srv->z->cfg->dp_cleanup_age / 1000));
        }
        free(st.names);
    }
}

/* Did anything a config is computed from change (ch: since the last
 * call; NULL: unsure, so yes)? Only insights (which every ack writes) do
 * not count: recomputing every sidecar's config on each of them made acks
 * cost O(sidecars^2). Revoked tokens were dealt with before (cp_session.c). */
static bool configs_may_change(const struct hy_store_changes *ch)
{
    for (size_t i = 0; ch && i < ch->n; i++)
        if (strcmp(ch->v[i].type, "DataplaneInsight") && strcmp(ch->v[i].type, "ZoneInsight") &&
            strcmp(ch->v[i].type, "ZoneIngressInsight"))
            return true;
    return !ch;
}

/* Every sidecar gets what the change altered: its own parts are computed
 * again only where the change may alter them (hy_zone_dp_impact_on), the
 * shared ones once per round, and only parts whose version moved are
 * sent. */
static void on_store_change(void *ud, const struct hy_store_changes *ch)
{
    struct hy_zone_dp_server *srv = ud;
    if (!configs_may_change(ch))
        return;
    struct hy_zone_dp_round *round = NULL;
    struct hy_zone_dp_impact *im = NULL;
    int rc = -1;
    if (srv->round && ch) /* the changes alone, read again */
        rc = hy_zone_dp_round_apply(srv->round, srv->z->cp.store, ch, &im);
    if (rc == 0 && srv->round_fresh) {
        /* loaded whole for a Hello since the last change: what sidecars were
         * pushed before it may be older than the changes say */
        hy_zone_dp_impact_free(im);
        rc = hy_zone_dp_impact_new(NULL, srv->round, NULL, &im);
    }
    if (rc < 0) { /* no round, no list of changes, or a failed update: all of it */
        hy_zone_dp_round_free(srv->round);
        srv->round = NULL;
        if ((rc = current_round(srv, &round)) == 0)
            rc = hy_zone_dp_impact_new(NULL, round, NULL, &im);
    }
    round = srv->round;
    srv->round_fresh = false;
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "dp", "cannot read the store for the sidecars' configs: %s",
               hy_strerror(rc));
    for (struct hy_cp_session *cs = hy_cp_session_first(srv->ss); rc == 0 && cs; cs = cs->next) {
        struct dp_session *s = (struct dp_session *)cs;
        s->pending = false;
        push_from(s, round, s->dp && !s->ingress ? hy_zone_dp_impact_on(im, s->dp) : 0);
    }
    hy_zone_dp_impact_free(im);
}

static double sidecars(void *ud)
{
    double n = 0;
    for (struct hy_cp_session *cs = hy_cp_session_first(((struct hy_zone_dp_server *)ud)->ss); cs;
         cs = cs->next) {
        const struct dp_session *s = (const struct dp_session *)cs;
        n += s->dp && !cs->closing && !s->ingress;
    }
    return n;
}

static const struct hy_cp_session_ops session_ops = {
    .size = sizeof(struct dp_session),
    .on_message = on_message,
    .on_close = on_close,
    .fini = session_fini,
    .send_reject = send_reject,
    .token_dead = token_dead,
    .on_store_change = on_store_change,
    .name = session_name,
};

int hy_zone_dp_server_start(struct hy_zone *z)
{
    struct hy_zone_dp_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return HY_ENOMEM;
    srv->z = z;
    z->dp = srv;
    /* the sidecars gauge renders first, then the session layer's metrics */
    if (!hy_metric_gauge_fn(z->cp.metrics, "hypha_dp_server_sidecars",
                            "Sidecars connected and registered", sidecars, srv))
        return HY_ENOMEM;
    struct hy_metrics *m = z->cp.metrics;
    srv->updates = hy_metric_series(
        hy_metric_counter(m, "hypha_dp_server_config_updates_total",
                          "Config updates sent to sidecars (each the parts that changed)", 0));
    srv->parts = hy_metric_series(hy_metric_counter(
        m, "hypha_dp_server_config_parts_total",
        "Config parts sent to sidecars (identity, trust bundle, inbounds, outbounds, a "
        "service's endpoints)",
        0));
    srv->bytes = hy_metric_series(hy_metric_counter(m, "hypha_dp_server_config_bytes_total",
                                                    "Bytes of config updates sent to sidecars", 0));
    srv->recomputed = hy_metric_series(hy_metric_counter(
        m, "hypha_dp_server_config_recomputed_total",
        "Times a sidecar's own parts (inbounds, outbounds) were computed again after a change", 0));
    int rc = hy_zone_dp_stats_init(&srv->stats, z->cp.loop, m, 0);
    srv->stats_init = true; /* its timer is there to close, whatever rc */
    if (rc < 0)
        return rc;
    uv_timer_init(z->cp.loop, &srv->kick);
    srv->kick.data = srv;
    srv->kick_init = true;
    uv_timer_init(z->cp.loop, &srv->flush);
    srv->flush.data = srv;
    srv->flush_init = true;
    struct hy_cp_session_config sc = {
        .cp = &z->cp,
        .component = "dp",
        .what = "DP server",
        .hint = "sidecars verify it with --ca-cert-file",
        .tls_cert = z->cfg->dp_tls_cert,
        .tls_key = z->cfg->dp_tls_key,
        .address = &z->cfg->dp_address,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .limits = {.ping_sec = 10,
                   .max_message_unauth = HY_DP_MAX_HELLO,
                   .max_unauth = HY_DP_MAX_UNAUTH,
                   .hello_timeout_ms = HY_DP_HELLO_TIMEOUT_MS},
        .metric_prefix = "hypha_dp_server",
        .protocol = "DP",
        .peers = "Sidecar and ingress",
        .ops = &session_ops,
        .ud = srv,
    };
    if ((rc = hy_cp_session_server_new(&sc, &srv->ss)) < 0 ||
        (rc = hy_cp_session_server_start(srv->ss)) < 0)
        return rc;
    srv->started = time(NULL);
    if (z->cfg->dp_cleanup_age > 0) {
        int64_t every = z->cfg->dp_cleanup_age / 2; /* ms; at most a minute, at least a second */
        every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
        uv_timer_init(z->cp.loop, &srv->cleanup);
        srv->cleanup.data = srv;
        srv->cleanup_init = true;
        uv_timer_start(&srv->cleanup, on_cleanup, (uint64_t)every, (uint64_t)every);
    }
    return 0;
}

void hy_zone_dp_server_stop(struct hy_zone *z)
{
    struct hy_zone_dp_server *srv = z->dp;
    if (!srv)
        return;
    hy_cp_session_server_stop(srv->ss);
    if (srv->stats_init) /* what the sessions still wait for is answered 503 */
        hy_zone_dp_stats_stop(&srv->stats);
    srv->stats_init = false;
    if (srv->cleanup_init)
        uv_close((uv_handle_t *)&srv->cleanup, NULL);
    srv->cleanup_init = false;
    if (srv->kick_init)
        uv_close((uv_handle_t *)&srv->kick, NULL);
    srv->kick_init = false;
    if (srv->flush_init) {
        if (srv->flush_armed) /* what is due is written before the sessions go */
            on_insight_flush(&srv->flush);
        uv_close((uv_handle_t *)&srv->flush, NULL);
    }
    srv->flush_init = false;
}

void hy_zone_dp_server_free(struct hy_zone *z)
{
    struct hy_zone_dp_server *srv = z->dp;
    if (!srv)
        return;
    hy_cp_session_server_free(srv->ss);
    hy_zone_dp_round_free(srv->round);
    free(srv);
    z->dp = NULL;
}

int hy_zone_dp_each_target(struct hy_zone *z, hy_zone_dp_target_fn fn, void *ud)
{
    if (!z->dp)
        return 0;
    struct hy_zone_dp_round *round = NULL;
    int rc = 0;
    for (struct hy_cp_session *cs = hy_cp_session_first(z->dp->ss); cs && rc == 0; cs = cs->next) {
        struct dp_session *s = (struct dp_session *)cs;
        if (!s->dp || cs->closing || !cs->admitted)
            continue;
        /* a sidecar's MeshMetric: its Inbounds part as last computed (what
         * it was sent), computed now when it has none yet */
        if (!s->ingress && !s->inbounds) {
            rc = round ? 0 : current_round(z->dp, &round);
            if (rc == 0)
                rc = own_parts(s, round, 0);
            if (rc < 0)
                break;
        }
        struct hy_zone_dp_target t = {
            .dp = s->dp,
            .ingress = s->ingress,
            .admin_address = s->admin_address,
            .metrics = !s->ingress && s->inbounds ? s->inbounds->metrics : NULL,
        };
        rc = fn(ud, &t);
    }
    return rc;
}
