/* Mesh root CAs, on whichever control plane owns the Mesh: the global CP,
 * or a standalone zone. When a Mesh names a builtin CA backend that has no
 * root yet, one is made (ECDSA P-256) and its certificate (MeshTrust,
 * synced to zones) and key (MeshCaKey, secret) are stored in the same
 * transaction as the Mesh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca.h"
#include "ca.pb-c.h"
#include "cp.h"
#include "error.h"
#include "log.h"
#include "mesh.pb-c.h"
#include "poison.h"

#define DEFAULT_ROOT_VALIDITY (10LL * 365 * 86400)

static bool in_batch(const struct hy_cp_api_batch *b, const char *type, const char *mesh,
                     const char *name)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct hy_resource *r = b->w[i].r;
        if (strcmp(r->type->name, type) == 0 && r->meta->mesh && strcmp(r->meta->mesh, mesh) == 0 &&
            strcmp(r->meta->name, name) == 0)
            return true;
    }
    return false;
}

static bool trust_exists(struct hy_store *s, const char *mesh, const char *backend)
{
    struct hy_resource *r = NULL;
    if (hy_store_get(s, "MeshTrust", mesh, backend, &r) < 0)
        return false;
    hy_resource_free(r);
    return true;
}

Hypha__V1__Timestamp *hy_cp_timestamp(int64_t secs)
{
    Hypha__V1__Timestamp *t = hy_timestamp_now();
    if (t) {
        t->seconds = secs;
        t->nanos = 0;
    }
    return t;
}

/* Makes the root of one backend and adds MeshTrust + MeshCaKey to b. */
static int make_root(struct hy_cp_api_batch *b, const char *mesh,
                     const Hypha__V1__CertificateAuthorityBackend *be, struct hy_diag *d)
{
    int64_t validity = DEFAULT_ROOT_VALIDITY;
    if (be->conf && be->conf->ca_cert && be->conf->ca_cert->expiration)
        validity = be->conf->ca_cert->expiration->seconds;
    char cn[64];
    snprintf(cn, sizeof(cn), "%s", mesh);
    struct hy_ca_pem pem = {0};
    struct hy_ca_info info = {0};
    int rc = hy_ca_make_root(cn, time(NULL), validity, &pem);
    if (rc == 0)
        rc = hy_ca_inspect(pem.cert, &info);
    if (rc < 0) {
        hy_diag_add(d, 0, 0, "mtls.backends", "cannot create the root CA of backend %s: %s",
                    be->name, hy_strerror(rc));
        goto out;
    }
    struct hy_resource *trust = hy_resource_new(hy_rtype_by_name("MeshTrust"));
    struct hy_resource *key = hy_resource_new(hy_rtype_by_name("MeshCaKey"));
    rc = HY_ENOMEM;
    if (!trust || !key || hy_resource_set_name(trust, mesh, be->name) < 0 ||
        hy_resource_set_name(key, mesh, be->name) < 0) {
        hy_resource_free(trust);
        hy_resource_free(key);
        goto out;
    }
    Hypha__V1__MeshTrust *t = (Hypha__V1__MeshTrust *)trust->spec;
    Hypha__V1__MeshCaKey *k = (Hypha__V1__MeshCaKey *)key->spec;
    t->backend = strdup(be->name);
    t->ca_cert = strdup(pem.cert);
    t->not_before = hy_cp_timestamp(info.not_before);
    t->not_after = hy_cp_timestamp(info.not_after);
    t->fingerprint = strdup(info.fingerprint);
    k->backend = strdup(be->name);
    k->key = strdup(pem.key);
    if (hy_cp_api_batch_add(b, HY_STORE_PUT, trust, HY_VERSION_NEW) < 0) {
        hy_resource_free(trust);
        hy_resource_free(key);
        goto out;
    }
    if (hy_cp_api_batch_add(b, HY_STORE_PUT, key, HY_VERSION_NEW) < 0) {
        hy_resource_free(key);
        goto out;
    }
    if (!t->backend || !t->ca_cert || !t->fingerprint || !k->backend || !k->key || !t->not_before ||
        !t->not_after)
        goto out;
    hy_log(HY_LOG_INFO, "ca",
           "mesh %s: created root CA for backend %s (fingerprint %.16s..., "
           "valid until %lld)",
           mesh, be->name, info.fingerprint, (long long)info.not_after);
    rc = 0;
out:
    hy_ca_info_fini(&info);
    hy_ca_pem_fini(&pem);
    return rc;
}

int hy_cp_mesh_roots(struct hy_cp *cp, struct hy_cp_api_batch *b, struct hy_diag *d)
{
    size_t n = b->n; /* only the user's writes: what we add is not revisited */
    for (size_t i = 0; i < n; i++) {
        const struct hy_resource *r = b->w[i].r;
        if (b->w[i].op != HY_STORE_PUT || strcmp(r->type->name, "Mesh") != 0)
            continue;
        const Hypha__V1__Mesh *m = (const Hypha__V1__Mesh *)r->spec;
        if (!m->mtls || !m->mtls->enabled_backend)
            continue;
        for (size_t k = 0; k < m->mtls->n_backends; k++) {
            const Hypha__V1__CertificateAuthorityBackend *be = m->mtls->backends[k];
            if (strcmp(be->name, m->mtls->enabled_backend) != 0 ||
                be->type != HYPHA__V1__CERTIFICATE_AUTHORITY_BACKEND__TYPE__builtin)
                continue;
            if (trust_exists(cp->store, r->meta->name, be->name) ||
                in_batch(b, "MeshTrust", r->meta->name, be->name))
                continue;
            int rc = make_root(b, r->meta->name, be, d);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}
