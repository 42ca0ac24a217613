/* The zone's intermediate CAs, one per mesh backend in use (MeshIssuer,
 * with its key in MeshIssuerKey). Federated, the zone makes the key and a
 * CSR and the global CP signs it with the mesh root over KDS: the root key
 * never leaves the global CP and this key never leaves the zone.
 * Standalone, the zone signs with the root it made itself. Checked when
 * the store changes (a Mesh, a new root), on connecting, and every 30 s;
 * renewed when the root changes or it nears its end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca.h"
#include "ca.pb-c.h"
#include "error.h"
#include "log.h"
#include "mesh.pb-c.h"
#include "store_uv.h"
#include "zone.h"
#include "poison.h"

#define ISSUER_VALIDITY (365LL * 86400) /* standalone; the global CP decides when federated */
#define RENEW_BEFORE (7LL * 86400)      /* renew an issuer that has less than this left */
#define RETRY_AFTER 10                  /* seconds after a refused or unanswered CSR */
#define CHECK_EVERY_MS 30000

struct pending {
    char mesh[64], backend[254];
    struct hy_ca_pem csr; /* the CSR and the key it belongs to */
    int64_t sent_at;      /* 0: not sent yet */
    int64_t retry_after;
};

struct hy_zone_ca {
    struct hy_zone *z;
    struct hy_store_uv_watch watch;
    bool watching;
    uv_timer_t timer;
    bool timer_init;
    struct pending *v;
    size_t n;
};

static struct pending *find(struct hy_zone_ca *ca, const char *mesh, const char *backend)
{
    for (size_t i = 0; i < ca->n; i++)
        if (!strcmp(ca->v[i].mesh, mesh) && !strcmp(ca->v[i].backend, backend))
            return &ca->v[i];
    return NULL;
}

static void drop(struct hy_zone_ca *ca, struct pending *p)
{
    hy_ca_pem_fini(&p->csr);
    *p = ca->v[--ca->n];
}

/* Stores the issuer and its key in one transaction. */
static int store_issuer(struct hy_zone *z, const char *mesh, const char *backend, const char *cert,
                        const char *key, const char *root_fingerprint)
{
    struct hy_ca_info info = {0};
    int rc = hy_ca_inspect(cert, &info);
    if (rc < 0)
        return rc;
    struct hy_resource *is = hy_resource_new(hy_rtype_by_name("MeshIssuer"));
    struct hy_resource *ik = hy_resource_new(hy_rtype_by_name("MeshIssuerKey"));
    rc = HY_ENOMEM;
    if (is && ik && hy_resource_set_name(is, mesh, backend) == 0 &&
        hy_resource_set_name(ik, mesh, backend) == 0) {
        Hypha__V1__MeshIssuer *i = (Hypha__V1__MeshIssuer *)is->spec;
        Hypha__V1__MeshIssuerKey *k = (Hypha__V1__MeshIssuerKey *)ik->spec;
        i->backend = strdup(backend);
        i->cert = strdup(cert);
        i->root_fingerprint = strdup(root_fingerprint);
        i->not_after = hy_cp_timestamp(info.not_after);
        k->backend = strdup(backend);
        k->key = strdup(key);
        if (i->backend && i->cert && i->root_fingerprint && i->not_after && k->backend && k->key) {
            struct hy_store_write w[2] = {
                {.op = HY_STORE_PUT, .r = is, .expect_version = HY_VERSION_ANY},
                {.op = HY_STORE_PUT, .r = ik, .expect_version = HY_VERSION_ANY},
            };
            rc = hy_store_apply(z->cp.store, w, 2, NULL);
        }
    }
    hy_resource_free(is);
    hy_resource_free(ik);
    hy_ca_info_fini(&info);
    return rc;
}

/* Signs an issuer with the zone's own root (a standalone zone). */
static void sign_locally(struct hy_zone *z, const char *mesh, const char *backend,
                         const Hypha__V1__MeshCaRoot *trust, const char *root_key)
{
    struct hy_ca_pem csr = {0};
    struct hy_ca_pem root = {trust->ca_cert, (char *)root_key};
    char cn[64], *cert = NULL;
    snprintf(cn, sizeof(cn), "%.30s.%.30s", z->cfg->zone, mesh);
    int rc = hy_ca_make_csr(cn, &csr);
    if (rc == 0)
        rc = hy_ca_sign_intermediate(&root, csr.cert, time(NULL), ISSUER_VALIDITY, NULL, &cert);
    if (rc == 0)
        rc = store_issuer(z, mesh, backend, cert, csr.key, trust->fingerprint);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "ca", "mesh %s backend %s: cannot make the zone CA: %s", mesh, backend,
               hy_strerror(rc));
    else
        hy_log(HY_LOG_INFO, "ca", "mesh %s backend %s: zone CA signed by this zone's root", mesh,
               backend);
    free(cert);
    hy_ca_pem_fini(&csr);
}

/* Asks the global CP to sign an issuer (a federated zone). */
static void request(struct hy_zone_ca *ca, const char *mesh, const char *backend)
{
    int64_t now = time(NULL);
    struct pending *p = find(ca, mesh, backend);
    if (p && (p->sent_at || now < p->retry_after))
        return;
    if (!p) {
        struct pending *v = realloc(ca->v, (ca->n + 1) * sizeof(*v));
        if (!v)
            return;
        ca->v = v;
        p = &v[ca->n++];
        memset(p, 0, sizeof(*p));
        snprintf(p->mesh, sizeof(p->mesh), "%s", mesh);
        snprintf(p->backend, sizeof(p->backend), "%s", backend);
    }
    if (!p->csr.cert) {
        char cn[64];
        snprintf(cn, sizeof(cn), "%.30s.%.30s", ca->z->cfg->zone, mesh);
        if (hy_ca_make_csr(cn, &p->csr) < 0) {
            drop(ca, p);
            return;
        }
    }
    Hypha__V1__CsrRequest q = HYPHA__V1__CSR_REQUEST__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    q.mesh = p->mesh;
    q.backend = p->backend;
    q.csr = p->csr.cert;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_CSR_REQUEST;
    m.csr_request = &q;
    if (hy_zone_kds_send(ca->z, &m) == 0) {
        p->sent_at = now;
        hy_log(HY_LOG_INFO, "ca", "mesh %s backend %s: asked the global CP to sign the zone CA",
               mesh, backend);
    }
}

/* Does (mesh, backend) have a current issuer? */
static bool issuer_ok(struct hy_zone *z, const char *mesh, const char *backend,
                      const char *root_fingerprint)
{
    struct hy_resource *r = NULL;
    if (hy_store_get(z->cp.store, "MeshIssuer", mesh, backend, &r) < 0)
        return false;
    const Hypha__V1__MeshIssuer *i = (const Hypha__V1__MeshIssuer *)r->spec;
    bool ok = i->root_fingerprint && !strcmp(i->root_fingerprint, root_fingerprint) &&
              i->not_after && i->not_after->seconds - RENEW_BEFORE > (int64_t)time(NULL);
    hy_resource_free(r);
    return ok;
}

static int check_mesh(void *ud, struct hy_resource *r, bool *take)
{
    struct hy_zone_ca *ca = ud;
    struct hy_zone *z = ca->z;
    const Hypha__V1__Mesh *m = (const Hypha__V1__Mesh *)r->spec;
    (void)take;
    if (!m->mtls || !m->mtls->enabled_backend)
        return 0;
    const char *mesh = r->meta->name, *backend = m->mtls->enabled_backend;
    struct hy_resource *trust = NULL, *key = NULL;
    if (hy_store_get(z->cp.store, "MeshCaRoot", mesh, backend, &trust) < 0)
        return 0; /* no root yet (federated: not synced yet) */
    const Hypha__V1__MeshCaRoot *t = (const Hypha__V1__MeshCaRoot *)trust->spec;
    if (t->ca_cert && t->fingerprint && !issuer_ok(z, mesh, backend, t->fingerprint)) {
        if (hy_store_get(z->cp.store, "MeshCaKey", mesh, backend, &key) == 0)
            sign_locally(z, mesh, backend, t, ((Hypha__V1__MeshCaKey *)key->spec)->key);
        else if (hy_zone_federated(z->cfg))
            request(ca, mesh, backend);
    }
    hy_resource_free(trust);
    hy_resource_free(key);
    return 0;
}

void hy_zone_ca_check(struct hy_zone *z)
{
    /* zone replicas on one database: the leader makes the issuers (one key
     * per backend, not one per replica); the others read them */
    if (z->ca && hy_cp_leader_held(&z->cp))
        hy_store_each(z->cp.store, "Mesh", check_mesh, z->ca);
}

void hy_zone_ca_response(struct hy_zone *z, const Hypha__V1__CsrResponse *r)
{
    struct hy_zone_ca *ca = z->ca;
    struct pending *p = ca && r->mesh && r->backend ? find(ca, r->mesh, r->backend) : NULL;
    if (!p || !p->sent_at)
        return;
    struct hy_resource *trust = NULL;
    const char *why = NULL;
    if (r->error || !r->cert) {
        hy_log(HY_LOG_WARN, "ca", "mesh %s backend %s: the global CP did not sign the zone CA: %s",
               p->mesh, p->backend, r->error ? r->error : "no certificate");
    } else if (hy_store_get(z->cp.store, "MeshCaRoot", p->mesh, p->backend, &trust) < 0) {
        hy_log(HY_LOG_WARN, "ca", "mesh %s backend %s: no root to check the zone CA against",
               p->mesh, p->backend);
    } else if (hy_ca_verify(r->cert, ((Hypha__V1__MeshCaRoot *)trust->spec)->ca_cert, &why) < 0 ||
               hy_ca_check_key(r->cert, p->csr.key) < 0) {
        hy_log(HY_LOG_WARN, "ca",
               "mesh %s backend %s: the zone CA from the global CP is refused: %s", p->mesh,
               p->backend, why ? why : "it is not for our key");
    } else {
        int rc = store_issuer(z, p->mesh, p->backend, r->cert, p->csr.key,
                              ((Hypha__V1__MeshCaRoot *)trust->spec)->fingerprint);
        if (rc == 0)
            hy_log(HY_LOG_INFO, "ca", "mesh %s backend %s: zone CA signed by the global CP",
                   p->mesh, p->backend);
        hy_resource_free(trust);
        drop(ca, p);
        return;
    }
    hy_resource_free(trust);
    p->sent_at = 0;
    p->retry_after = time(NULL) + RETRY_AFTER;
}

/* A CSR in flight when the connection drops is asked again later. */
void hy_zone_ca_disconnected(struct hy_zone *z)
{
    for (size_t i = 0; z->ca && i < z->ca->n; i++)
        z->ca->v[i].sent_at = 0;
}

static void on_change(struct hy_store_uv_watch *w, uint64_t revision)
{
    (void)revision;
    hy_zone_ca_check(((struct hy_zone_ca *)w->data)->z);
}

static void on_timer(uv_timer_t *t)
{
    struct hy_zone_ca *ca = t->data;
    int64_t now = time(NULL);
    for (size_t i = 0; i < ca->n; i++) /* unanswered for long: ask again */
        if (ca->v[i].sent_at && now - ca->v[i].sent_at > CHECK_EVERY_MS / 1000)
            ca->v[i].sent_at = 0;
    hy_zone_ca_check(ca->z);
}

int hy_zone_ca_start(struct hy_zone *z)
{
    struct hy_zone_ca *ca = calloc(1, sizeof(*ca));
    if (!ca)
        return HY_ENOMEM;
    ca->z = z;
    z->ca = ca;
    ca->watch.data = ca;
    int rc = hy_store_uv_watch_start(z->cp.loop, z->cp.store, &ca->watch, on_change);
    if (rc < 0)
        return rc;
    ca->watching = true;
    uv_timer_init(z->cp.loop, &ca->timer);
    ca->timer.data = ca;
    ca->timer_init = true;
    uv_timer_start(&ca->timer, on_timer, 0, CHECK_EVERY_MS);
    return 0;
}

void hy_zone_ca_stop(struct hy_zone *z)
{
    struct hy_zone_ca *ca = z->ca;
    if (!ca)
        return;
    if (ca->watching)
        hy_store_uv_watch_stop(&ca->watch, NULL);
    ca->watching = false;
    if (ca->timer_init && !uv_is_closing((uv_handle_t *)&ca->timer))
        uv_close((uv_handle_t *)&ca->timer, NULL);
}

void hy_zone_ca_free(struct hy_zone *z)
{
    struct hy_zone_ca *ca = z->ca;
    if (!ca)
        return;
    while (ca->n)
        drop(ca, &ca->v[0]);
    free(ca->v);
    free(ca);
    z->ca = NULL;
}
