/* Mesh root CAs, on whichever control plane owns the Mesh: the global CP,
 * or a standalone zone. When a Mesh names a builtin CA backend that has no
 * root yet, one is made (ECDSA P-256) and its certificate (MeshCaRoot,
 * synced to zones) and key (MeshCaKey, secret) are stored in the same
 * transaction as the Mesh. The CA certificates users add with MeshTrust
 * are checked here too, in the same hook: the registry's validator
 * (common/) cannot parse X.509. */
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

static bool root_exists(struct hy_store *s, const char *mesh, const char *backend)
{
    struct hy_resource *r = NULL;
    if (hy_store_get(s, "MeshCaRoot", mesh, backend, &r) < 0)
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

/* The MeshTrust that lists a builtin root, as Kuma lists a mesh identity's
 * CA: named as the backend, trustDomain the mesh, one Pem bundle, labelled
 * hypha.io/managed-by: builtin-ca. NULL when out of memory. */
static struct hy_resource *managed_trust(const char *mesh, const char *backend, const char *pem)
{
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name("MeshTrust"));
    if (!r || hy_resource_set_name(r, mesh, backend) < 0)
        goto fail;
    Hypha__V1__MeshTrust *t = (Hypha__V1__MeshTrust *)r->spec;
    Hypha__V1__MeshTrust__CaBundle **v = calloc(1, sizeof(*v));
    Hypha__V1__MeshTrust__CaBundle *b = malloc(sizeof(*b));
    Hypha__V1__MeshTrust__CaBundle__PemBundle *p = malloc(sizeof(*p));
    Hypha__V1__Meta__LabelsEntry **lv = calloc(1, sizeof(*lv));
    Hypha__V1__Meta__LabelsEntry *l = malloc(sizeof(*l));
    if (v) {
        t->ca_bundles = v;
        if (b) {
            hypha__v1__mesh_trust__ca_bundle__init(b);
            v[t->n_ca_bundles++] = b;
            if (p) {
                hypha__v1__mesh_trust__ca_bundle__pem_bundle__init(p);
                b->pem = p;
                p = NULL;
            }
            b->has_type = 1;
            b = NULL;
        }
    }
    if (lv) {
        r->meta->labels = lv;
        if (l) {
            hypha__v1__meta__labels_entry__init(l);
            lv[r->meta->n_labels++] = l;
            l->key = strdup(HY_CP_MANAGED_BY);
            l->value = strdup(HY_CP_MANAGED_BUILTIN);
            l = NULL;
        }
    }
    free(b);
    free(p);
    free(l);
    t->trust_domain = strdup(mesh);
    if (!t->trust_domain || !t->n_ca_bundles || !t->ca_bundles[0]->pem || !r->meta->n_labels ||
        !r->meta->labels[0]->key || !r->meta->labels[0]->value ||
        !(t->ca_bundles[0]->pem->value = strdup(pem)))
        goto fail;
    return r;
fail:
    hy_resource_free(r);
    return NULL;
}

/* Makes the root of one backend and adds MeshCaRoot + MeshCaKey to b, and
 * the MeshTrust that lists it (created only: a user's MeshTrust of that
 * name fails the write with a conflict, never overwritten). */
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
    struct hy_resource *root = hy_resource_new(hy_rtype_by_name("MeshCaRoot"));
    struct hy_resource *key = hy_resource_new(hy_rtype_by_name("MeshCaKey"));
    rc = HY_ENOMEM;
    if (!root || !key || hy_resource_set_name(root, mesh, be->name) < 0 ||
        hy_resource_set_name(key, mesh, be->name) < 0) {
        hy_resource_free(root);
        hy_resource_free(key);
        goto out;
    }
    Hypha__V1__MeshCaRoot *t = (Hypha__V1__MeshCaRoot *)root->spec;
    Hypha__V1__MeshCaKey *k = (Hypha__V1__MeshCaKey *)key->spec;
    t->backend = strdup(be->name);
    t->ca_cert = strdup(pem.cert);
    t->not_before = hy_cp_timestamp(info.not_before);
    t->not_after = hy_cp_timestamp(info.not_after);
    t->fingerprint = strdup(info.fingerprint);
    k->backend = strdup(be->name);
    k->key = strdup(pem.key);
    if (hy_cp_api_batch_add(b, HY_STORE_PUT, root, HY_VERSION_NEW) < 0) {
        hy_resource_free(root);
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
    struct hy_resource *trust = managed_trust(mesh, be->name, pem.cert);
    if (!trust || hy_cp_api_batch_add(b, HY_STORE_PUT, trust, HY_VERSION_NEW) < 0) {
        hy_resource_free(trust);
        goto out;
    }
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

/* ----- MeshTrust ----- */

struct trust_walk {
    struct hy_diag *d;
    const struct hy_resource *r;
    const char *field;
    size_t i; /* the certificate's index in its bundle */
    int64_t now;
};

static int check_dates(void *ud, const struct hy_ca_bundle_cert *c)
{
    struct trust_walk *w = ud;
    char at[32];
    time_t t = (time_t)c->not_after;
    struct tm tm;
    if (c->not_after < w->now) {
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        hy_diag_add(w->d, 0, 0, w->field,
                    "MeshTrust %s/%s: certificate %zu (fingerprint %.16s...) expired at %s: a "
                    "sidecar accepts nothing under it; replace it or remove it",
                    w->r->meta->mesh, w->r->meta->name, w->i, c->fingerprint, at);
    }
    w->i++;
    return 0;
}

int hy_cp_mesh_trust_check(const struct hy_resource *r, struct hy_diag *d, size_t *count)
{
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)r->spec;
    size_t before = d->n, total = 0;
    for (size_t i = 0; i < t->n_ca_bundles; i++) {
        const Hypha__V1__MeshTrust__CaBundle *b = t->ca_bundles[i];
        if (!b->pem || !b->pem->value)
            continue; /* the registry's validator said so already */
        char field[64];
        snprintf(field, sizeof(field), "spec.caBundles[%zu].pem.value", i);
        struct trust_walk w = {d, r, field, 0, time(NULL)};
        size_t n = 0, at = 0;
        const char *why = NULL;
        int rc = hy_ca_bundle_each(b->pem->value, check_dates, &w, &n, &at, &why);
        if (rc == HY_ENOMEM)
            return rc;
        if (rc < 0)
            hy_diag_add(d, 0, 0, field, "MeshTrust %s/%s: certificate %zu: %s", r->meta->mesh,
                        r->meta->name, at, why ? why : hy_strerror(rc));
        total += n;
    }
    if (count)
        *count = total;
    return d->n == before ? 0 : HY_EINVAL;
}

/* What a mesh's trust bundle will hold once a batch commits, counted
 * without deduplication (the zone deduplicates, so this errs on the safe
 * side). */
struct bundle_count {
    const struct hy_cp_api_batch *b;
    const char *mesh;
    size_t n;
};

static int count_stored(void *ud, struct hy_resource *r, bool *take)
{
    struct bundle_count *c = ud;
    (void)take;
    if (!r->meta->mesh || strcmp(r->meta->mesh, c->mesh) != 0 ||
        in_batch(c->b, r->type->name, c->mesh, r->meta->name))
        return 0;
    if (!strcmp(r->type->name, "MeshCaRoot")) {
        c->n++;
        return 0;
    }
    struct hy_diag ignored = {0};
    size_t n = 0;
    int rc = hy_cp_mesh_trust_check(r, &ignored, &n);
    hy_diag_fini(&ignored);
    c->n += n;
    return rc == HY_ENOMEM ? rc : 0;
}

/* Refuses a batch after which mesh's trust bundle would hold more than a
 * sidecar takes (HY_CA_BUNDLE_MAX): added is what the batch's MeshTrusts
 * for mesh hold. */
static int check_bundle_size(struct hy_cp *cp, const struct hy_cp_api_batch *b, const char *mesh,
                             size_t added, struct hy_diag *d)
{
    struct bundle_count c = {b, mesh, added};
    for (size_t i = 0; i < b->n; i++)
        c.n += b->w[i].op == HY_STORE_PUT && !strcmp(b->w[i].r->type->name, "MeshCaRoot") &&
               !strcmp(b->w[i].r->meta->mesh, mesh);
    int rc = hy_store_each(cp->store, "MeshCaRoot", count_stored, &c);
    if (rc == 0)
        rc = hy_store_each(cp->store, "MeshTrust", count_stored, &c);
    if (rc < 0) {
        hy_diag_add(d, 0, 0, "spec.caBundles", "cannot count the CAs of mesh %s: %s", mesh,
                    hy_strerror(rc));
        return rc;
    }
    if (c.n <= HY_CA_BUNDLE_MAX)
        return 0;
    hy_diag_add(d, 0, 0, "spec.caBundles",
                "mesh %s would trust %zu CA certificates (its roots and every MeshTrust), over "
                "the %d a sidecar takes: remove a MeshTrust or certificates from one",
                mesh, c.n, HY_CA_BUNDLE_MAX);
    return HY_EINVAL;
}

/* Checks every MeshTrust the batch puts (after the roots were added, so
 * they count). */
static int check_trusts(struct hy_cp *cp, struct hy_cp_api_batch *b, size_t n, struct hy_diag *d)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const struct hy_resource *r = b->w[i].r;
        if (b->w[i].op != HY_STORE_PUT || strcmp(r->type->name, "MeshTrust") != 0)
            continue;
        size_t added = 0, k;
        int rc = hy_cp_mesh_trust_check(r, d, NULL);
        if (rc == HY_ENOMEM)
            return rc;
        bad = bad ? bad : rc;
        /* once per mesh: at its first MeshTrust in the batch */
        for (k = 0; k < i; k++)
            if (b->w[k].op == HY_STORE_PUT && !strcmp(b->w[k].r->type->name, "MeshTrust") &&
                !strcmp(b->w[k].r->meta->mesh, r->meta->mesh))
                break;
        if (k < i || rc < 0)
            continue;
        for (k = i; k < n; k++) {
            const struct hy_resource *o = b->w[k].r;
            size_t m = 0;
            struct hy_diag ignored = {0};
            if (b->w[k].op == HY_STORE_PUT && !strcmp(o->type->name, "MeshTrust") &&
                !strcmp(o->meta->mesh, r->meta->mesh) &&
                hy_cp_mesh_trust_check(o, &ignored, &m) != HY_ENOMEM)
                added += m;
            hy_diag_fini(&ignored);
        }
        if ((rc = check_bundle_size(cp, b, r->meta->mesh, added, d)) < 0)
            bad = bad ? bad : rc;
    }
    return bad;
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
            if (root_exists(cp->store, r->meta->name, be->name) ||
                in_batch(b, "MeshCaRoot", r->meta->name, be->name))
                continue;
            /* the new root's MeshTrust takes the backend's name: a user's
             * of that name is said, never overwritten */
            struct hy_resource *mine = NULL;
            if (hy_store_get(cp->store, "MeshTrust", r->meta->name, be->name, &mine) == 0 ||
                in_batch(b, "MeshTrust", r->meta->name, be->name)) {
                hy_resource_free(mine);
                hy_diag_add(d, 0, 0, "mtls.enabledBackend",
                            "backend %s: its new root is listed in MeshTrust %s/%s, and a "
                            "MeshTrust of that name exists: rename or delete it first",
                            be->name, r->meta->name, be->name);
                return HY_EINVAL;
            }
            int rc = make_root(b, r->meta->name, be, d);
            if (rc < 0)
                return rc;
        }
    }
    return check_trusts(cp, b, n, d);
}

/* ----- mesh roots stored under their old name ----- */

struct old_roots {
    struct hy_resource **v;   /* MeshCaRoot resources to write, owned */
    struct hy_resource **was; /* the MeshTrust records they replace, owned */
    size_t n, cap;
};

/* A MeshTrust record from before MeshCaRoot: no field of today's, the old
 * ones kept as unknown fields. Packing it again gives the old bytes, which
 * are a MeshCaRoot's. */
static int find_old_root(void *ud, struct hy_resource *r, bool *take)
{
    struct old_roots *o = ud;
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)r->spec;
    if (t->trust_domain || t->n_ca_bundles || t->origin || !t->base.n_unknown_fields)
        return 0;
    size_t len = protobuf_c_message_get_packed_size(&t->base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return HY_ENOMEM;
    protobuf_c_message_pack(&t->base, buf);
    Hypha__V1__MeshCaRoot *root = hypha__v1__mesh_ca_root__unpack(NULL, len, buf);
    free(buf);
    if (!root || !root->ca_cert) {
        if (root)
            hypha__v1__mesh_ca_root__free_unpacked(root, NULL);
        return 0; /* not an old root: left for the API to show */
    }
    struct hy_resource *n = hy_resource_new(hy_rtype_by_name("MeshCaRoot"));
    if (!n || hy_resource_set_name(n, r->meta->mesh, r->meta->name) < 0 ||
        (r->origin && !(n->origin = strdup(r->origin)))) {
        hy_resource_free(n);
        hypha__v1__mesh_ca_root__free_unpacked(root, NULL);
        return HY_ENOMEM;
    }
    protobuf_c_message_free_unpacked(n->spec, NULL);
    n->spec = &root->base;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 4;
        struct hy_resource **v = realloc(o->v, cap * sizeof(*v));
        if (v)
            o->v = v;
        struct hy_resource **w = v ? realloc(o->was, cap * sizeof(*w)) : NULL;
        if (w)
            o->was = w;
        if (!v || !w) {
            hy_resource_free(n);
            return HY_ENOMEM;
        }
        o->cap = cap;
    }
    o->v[o->n] = n;
    o->was[o->n++] = r;
    *take = true;
    return 0;
}

/* Roots whose key this control plane holds (it made them) and whose
 * managed MeshTrust is missing: made before roots were listed there. */
struct unlisted {
    struct hy_store *s;
    struct hy_resource **v; /* MeshTrusts to write, owned */
    size_t n, cap;
};

static int find_unlisted(void *ud, struct hy_resource *r, bool *take)
{
    struct unlisted *u = ud;
    const Hypha__V1__MeshCaRoot *root = (const Hypha__V1__MeshCaRoot *)r->spec;
    struct hy_resource *x = NULL;
    (void)take;
    if (!root->ca_cert || hy_store_get(u->s, "MeshCaKey", r->meta->mesh, r->meta->name, &x) < 0)
        return 0; /* another control plane's root (a zone's copy of global's) */
    hy_resource_free(x);
    x = NULL;
    if (hy_store_get(u->s, "MeshTrust", r->meta->mesh, r->meta->name, &x) == 0) {
        hy_resource_free(x);
        return 0;
    }
    if (u->n == u->cap) {
        size_t cap = u->cap ? 2 * u->cap : 4;
        struct hy_resource **v = realloc(u->v, cap * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        u->v = v;
        u->cap = cap;
    }
    if (!(u->v[u->n] = managed_trust(r->meta->mesh, r->meta->name, root->ca_cert)))
        return HY_ENOMEM;
    u->n++;
    return 0;
}

static int list_roots(struct hy_cp *cp)
{
    struct unlisted u = {.s = cp->store};
    int rc = hy_store_each(cp->store, "MeshCaRoot", find_unlisted, &u);
    for (size_t i = 0; rc == 0 && i < u.n; i++) {
        struct hy_store_write w;
        if ((rc = hy_store_put(cp->store, u.v[i], HY_VERSION_NEW, &w)) == 0)
            hy_log(HY_LOG_INFO, cp->component, "mesh %s: root %s is now listed in MeshTrust %s",
                   u.v[i]->meta->mesh, u.v[i]->meta->name, u.v[i]->meta->name);
    }
    if (rc < 0)
        hy_log(HY_LOG_ERROR, cp->component, "cannot list the mesh roots in MeshTrusts: %s",
               hy_strerror(rc));
    for (size_t i = 0; i < u.n; i++)
        hy_resource_free(u.v[i]);
    free(u.v);
    return rc;
}

int hy_cp_migrate_mesh_roots(struct hy_cp *cp)
{
    struct old_roots o = {0};
    int rc = hy_store_each(cp->store, "MeshTrust", find_old_root, &o);
    struct hy_store_write *w = rc == 0 && o.n ? calloc(2 * o.n, sizeof(*w)) : NULL;
    if (rc == 0 && o.n && !w)
        rc = HY_ENOMEM;
    if (rc == 0 && o.n) {
        for (size_t i = 0; i < o.n; i++) {
            w[2 * i] = (struct hy_store_write){
                .op = HY_STORE_PUT, .r = o.v[i], .expect_version = HY_VERSION_ANY};
            w[2 * i + 1] = (struct hy_store_write){
                .op = HY_STORE_DELETE, .r = o.was[i], .expect_version = HY_VERSION_ANY};
        }
        size_t failed = 0;
        rc = hy_store_apply(cp->store, w, 2 * o.n, &failed);
    }
    if (rc < 0)
        hy_log(HY_LOG_ERROR, cp->component,
               "cannot move the mesh roots stored as MeshTrust (before MeshCaRoot) to MeshCaRoot: "
               "%s",
               hy_strerror(rc));
    for (size_t i = 0; rc == 0 && i < o.n; i++)
        hy_log(HY_LOG_INFO, cp->component,
               "mesh %s: root %s, stored as MeshTrust by an older Hypha, is now MeshCaRoot %s",
               o.v[i]->meta->mesh, o.v[i]->meta->name, o.v[i]->meta->name);
    for (size_t i = 0; i < o.n; i++) {
        hy_resource_free(o.v[i]);
        hy_resource_free(o.was[i]);
    }
    free(o.v);
    free(o.was);
    free(w);
    return rc < 0 ? rc : list_roots(cp);
}
