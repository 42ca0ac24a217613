/* The zone's DP server. A sidecar connects over wss, sends DpHello with its
 * Dataplane, its dataplane token and a CSR; the zone checks the token
 * against the Dataplane (name, mesh, tags), registers the Dataplane (which
 * KDS then carries to the global CP), signs a leaf for each inbound
 * service (spiffe://<mesh>/<service>) with its intermediate CA, and pushes
 * the config whenever it changes. A clean close (1000) deregisters it.
 * A zone ingress does the same with its ZoneIngress and a zone-ingress
 * token (no CSR: it never terminates TLS); the zone keeps the ZoneIngress's
 * availableServices up to date and pushes the ingress its routes. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca.h"
#include "ca.pb-c.h"
#include "cp_session.h"
#include "dp_server.h"
#include "error.h"
#include "kds.h"
#include "log.h"
#include "mesh.pb-c.h"
#include "net.h"
#include "token.h"
#include "validate.h"
#include "poison.h"

#define DEFAULT_LEAF_VALIDITY (24LL * 3600)

struct dp_session {
    struct hy_cp_session base; /* first: the connection, its admission and token */
    struct hy_resource *dp;    /* registered Dataplane or ZoneIngress, NULL before */
    bool ingress;              /* dp is a ZoneIngress */
    char *cert, *chain;
    char sent_version[32], acked_version[32], nacked_version[32];
    uint64_t sent, acked, rejected;
};

struct hy_zone_dp_server {
    struct hy_zone *z;
    struct hy_cp_session_server *ss; /* the listener and its sessions */
    uv_timer_t cleanup;
    bool cleanup_init;
    int64_t started; /* Unix seconds: offline since, for a sidecar the last run lost track of */
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
                         size);
    }
    case HYPHA__V1__DP_MESSAGE__MSG_CSR:
        return check_str("csr.csr", m->csr->csr, true, HY_DP_MAX_CSR, false, why, size);
    case HYPHA__V1__DP_MESSAGE__MSG_ACK:
        return check_str("ack.version", m->ack->version, true, HY_DP_MAX_VERSION, true, why, size);
    case HYPHA__V1__DP_MESSAGE__MSG_NACK:
        return check_str("nack.version", m->nack->version, false, HY_DP_MAX_VERSION, true, why,
                         size) &&
               check_str("nack.error", m->nack->error, false, HY_DP_MAX_ERROR, false, why, size);
    default:
        snprintf(why, size, "unexpected message (a peer sends hello, csr, ack or nack)");
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

/* The trust bundle being built: distinct CA certificates, by fingerprint. */
struct roots {
    const char *mesh;
    struct hy_buf *pem;
    char seen[HY_CA_BUNDLE_MAX][HY_CA_FINGERPRINT_LEN + 1];
    size_t n;
    const struct hy_resource *from; /* for the log */
};

static int add_cert(void *ud, const struct hy_ca_bundle_cert *c)
{
    struct roots *x = ud;
    for (size_t i = 0; i < x->n; i++)
        if (!strcmp(x->seen[i], c->fingerprint))
            return 0;
    if (x->n == HY_CA_BUNDLE_MAX) {
        /* global refuses writes past this: a store that holds more came
         * from elsewhere, and what does not fit is said, not dropped */
        hy_log(HY_LOG_WARN, "dp",
               "mesh %s: %s %s: certificate %.16s... left out of the trust bundle: it is full "
               "(%d certificates)",
               x->mesh, x->from->type->name, x->from->meta->name, c->fingerprint, HY_CA_BUNDLE_MAX);
        return 0;
    }
    memcpy(x->seen[x->n++], c->fingerprint, sizeof(x->seen[0]));
    if (hy_buf_append(x->pem, c->pem, c->len) < 0 || hy_buf_puts(x->pem, "\n") < 0)
        return HY_ENOMEM;
    return 0;
}

/* Adds the certificates of one PEM text of r; one that does not read is
 * logged and left out (global checked it: hy_cp_mesh_trust_check). */
static int add_pem(struct roots *x, const struct hy_resource *r, const char *pem)
{
    size_t at = 0;
    const char *why = NULL;
    x->from = r;
    int rc = hy_ca_bundle_each(pem, add_cert, x, NULL, &at, &why);
    if (rc == HY_ENOMEM)
        return rc;
    if (rc < 0)
        hy_log(HY_LOG_WARN, "dp",
               "mesh %s: %s %s: certificate %zu left out of the trust bundle: %s", x->mesh,
               r->type->name, r->meta->name, at, why ? why : hy_strerror(rc));
    return 0;
}

static int add_root(void *ud, struct hy_resource *r, bool *take)
{
    struct roots *x = ud;
    (void)take;
    const Hypha__V1__MeshCaRoot *t = (const Hypha__V1__MeshCaRoot *)r->spec;
    if (t->ca_cert && strcmp(S(r->meta->mesh), x->mesh) == 0)
        return add_pem(x, r, t->ca_cert);
    return 0;
}

static int add_trust(void *ud, struct hy_resource *r, bool *take)
{
    struct roots *x = ud;
    (void)take;
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)r->spec;
    if (strcmp(S(r->meta->mesh), x->mesh) != 0)
        return 0;
    /* A sidecar checks only that a peer's ID is spiffe://<mesh>/...: a CA
     * trusted for another domain would be trusted to issue this mesh's
     * identities too. So only MeshTrusts for the mesh's own domain reach
     * the bundle (the write of any other drew a warning saying so). */
    if (strcmp(S(t->trust_domain), x->mesh) != 0)
        return 0;
    for (size_t i = 0; i < t->n_ca_bundles; i++) {
        const Hypha__V1__MeshTrust__CaBundle *b = t->ca_bundles[i];
        int rc = b->pem && b->pem->value ? add_pem(x, r, b->pem->value) : 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The mesh's trust bundle, as PEM: every root of the mesh (MeshCaRoot),
 * then the CAs of every MeshTrust of the mesh for its own trust domain,
 * each certificate once.
 * Taken for every config, not with the certificate: in a root rotation
 * the new root reaches every sidecar (with the MeshCaRoot's sync) before
 * the zone has an intermediate under it, so no sidecar sees a leaf it
 * cannot verify. Old roots stay (nothing removes a MeshCaRoot yet). */
static int mesh_bundle(struct hy_store *st, const char *mesh, struct hy_buf *out)
{
    struct roots *x = calloc(1, sizeof(*x));
    if (!x)
        return HY_ENOMEM;
    x->mesh = mesh;
    x->pem = out;
    int rc = hy_store_each(st, "MeshCaRoot", add_root, x);
    if (rc == 0)
        rc = hy_store_each(st, "MeshTrust", add_trust, x);
    free(x);
    return rc;
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
            s->sent++;
            hy_log(HY_LOG_DEBUG, "dp", "ingress %s: routes %s sent (%zu services)",
                   s->dp->meta->name, c->version, c->n_routes);
        }
    }
    hypha__v1__dp_ingress_config__free_unpacked(c, NULL);
}

/* The config s's sidecar is due now, with its certificate material, from
 * round (NULL: one loaded for it alone). */
static int session_config(struct dp_session *s, const struct hy_zone_dp_round *round,
                          Hypha__V1__DpConfig **out)
{
    struct hy_buf bundle = {0};
    struct hy_zone_dp_round *own = NULL;
    int rc = mesh_bundle(srv_of(s)->z->cp.store, s->dp->meta->mesh, &bundle);
    if (rc == 0 && !round && (rc = hy_zone_dp_round_load(srv_of(s)->z->cp.store, &own)) == 0)
        round = own;
    if (rc == 0)
        rc = hy_zone_dp_config_compute(round, s->dp, s->cert, s->chain,
                                       bundle.data ? bundle.data : "", out);
    hy_zone_dp_round_free(own);
    hy_buf_fini(&bundle);
    return rc;
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
        snprintf(acked, size, "%s", s->acked_version);
        return session_config(s, NULL, out);
    }
    return HY_ENOTFOUND;
}

/* Sends s its config when it changed; round as for session_config. */
static void push_from(struct dp_session *s, const struct hy_zone_dp_round *round)
{
    if (!s->dp || s->base.closing)
        return;
    if (s->ingress) {
        push_ingress(s, false);
        return;
    }
    Hypha__V1__DpConfig *c = NULL;
    int rc = session_config(s, round, &c);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dp", "%s/%s: cannot compute the config: %s", s->dp->meta->mesh,
               s->dp->meta->name, hy_strerror(rc));
        return;
    }
    if (strcmp(c->version, s->sent_version) != 0) {
        Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CONFIG;
        m.config = c;
        if (send_msg(s, &m) == 0) {
            snprintf(s->sent_version, sizeof(s->sent_version), "%s", c->version);
            s->sent++;
            hy_log(HY_LOG_DEBUG, "dp", "%s/%s: config %s sent", s->dp->meta->mesh,
                   s->dp->meta->name, c->version);
        }
    }
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void push(struct dp_session *s)
{
    push_from(s, NULL);
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

/* Writes s's insight (a DataplaneInsight, or a ZoneIngressInsight for an
 * ingress): a new subscription at connect, its disconnect time, the
 * config counters, a sidecar's certificate expiry. */
static void insight(struct dp_session *s, bool connect, bool disconnect)
{
    struct hy_store *st = srv_of(s)->z->cp.store;
    const char *type = s->ingress ? "ZoneIngressInsight" : "DataplaneInsight";
    const char *mesh = s->ingress ? NULL : s->dp->meta->mesh;
    struct hy_resource *r = NULL;
    if (hy_store_get(st, type, mesh, s->dp->meta->name, &r) < 0) {
        r = hy_resource_new(hy_rtype_by_name(type));
        if (!r || hy_resource_set_name(r, mesh, s->dp->meta->name) < 0) {
            hy_resource_free(r);
            return;
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
            return;
        }
        *l.v = v;
        hypha__v1__dataplane_insight__subscription__init(sub);
        sub->connect_time = hy_timestamp_now();
        sub->control_plane_instance_id = strdup(srv_of(s)->z->cp.instance_id);
        v[(*l.n)++] = sub;
    }
    sub = (*l.v)[*l.n - 1];
    if (disconnect && !sub->disconnect_time)
        sub->disconnect_time = hy_timestamp_now();
    hy_kds_set_str(&sub->config_version, s->acked_version);
    sub->has_responses_sent = sub->has_responses_acknowledged = sub->has_responses_rejected = 1;
    sub->responses_sent = s->sent;
    sub->responses_acknowledged = s->acked;
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
    struct hy_store_write w;
    hy_store_put(st, r, HY_VERSION_ANY, &w);
    hy_resource_free(r);
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
    hy_cp_session_admit(&s->base, &claims);
    hy_token_claims_fini(&claims);
    if (sign(srv, s, h->csr, why, sizeof(why)) < 0) {
        reject(s, why);
        return;
    }
    /* register: this zone's own, so KDS sends it up */
    hy_kds_set_str(&dp->origin, srv->z->cfg->zone);
    dp->version = 0;
    struct hy_store_write w;
    int rc = hy_store_put(srv->z->cp.store, dp, HY_VERSION_ANY, &w);
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

static void on_message(struct hy_cp_session *cs, const uint8_t *data, size_t len)
{
    struct dp_session *s = (struct dp_session *)cs;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) {
        reject(s, "malformed message (not a DpMessage)");
        return;
    }
    char why[300] = "", text[300];
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
            s->acked++;
            /* the insight is written when the acked version changes: a
             * peer repeating one Ack must not cost a store write each */
            if (strcmp(s->acked_version, m->ack->version)) {
                snprintf(s->acked_version, sizeof(s->acked_version), "%s", m->ack->version);
                insight(s, false, false);
            }
            break;
        case HYPHA__V1__DP_MESSAGE__MSG_NACK:
            s->rejected++;
            if (strcmp(s->nacked_version, S(m->nack->version))) {
                snprintf(s->nacked_version, sizeof(s->nacked_version), "%s", S(m->nack->version));
                hy_log(HY_LOG_WARN, "dp", "%s/%s refused config %s: %s", S(s->dp->meta->mesh),
                       s->dp->meta->name, S(m->nack->version),
                       hy_cp_session_clean(m->nack->error, text, sizeof(text)));
                insight(s, false, false);
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
    hy_resource_free(s->dp);
    free(s->cert);
    free(s->chain);
}

static void on_close(struct hy_cp_session *cs, int code, const char *reason)
{
    struct dp_session *s = (struct dp_session *)cs;
    struct hy_zone_dp_server *srv = srv_of(s);
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

static void on_store_change(void *ud, const struct hy_store_changes *ch)
{
    struct hy_zone_dp_server *srv = ud;
    if (!configs_may_change(ch))
        return;
    /* the store read once for every sidecar's config, not once per config */
    struct hy_zone_dp_round *round = NULL;
    int rc = hy_zone_dp_round_load(srv->z->cp.store, &round);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "dp", "cannot read the store for the sidecars' configs: %s",
               hy_strerror(rc));
    for (struct hy_cp_session *cs = hy_cp_session_first(srv->ss); rc == 0 && cs; cs = cs->next)
        push_from((struct dp_session *)cs, round);
    hy_zone_dp_round_free(round);
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
    int rc;
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
    if (srv->cleanup_init)
        uv_close((uv_handle_t *)&srv->cleanup, NULL);
    srv->cleanup_init = false;
}

void hy_zone_dp_server_free(struct hy_zone *z)
{
    struct hy_zone_dp_server *srv = z->dp;
    if (!srv)
        return;
    hy_cp_session_server_free(srv->ss);
    free(srv);
    z->dp = NULL;
}
