/* A data directory from before MeshCaRoot had its name: its mesh roots were
 * stored as MeshTrust records (the fields MeshCaRoot has now). Opening the
 * control plane moves them to MeshCaRoot and leaves today's MeshTrusts
 * alone, and lists the roots it made in managed MeshTrusts
 * (hy_cp_migrate_mesh_roots). */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ca.pb-c.h"
#include "codec.h"
#include "cp.h"
#include "error.h"
#include "meta.pb-c.h"
#include "resource.h"
#include "store.h"
#include "poison.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cp_open(struct hy_cp *cp, struct hy_cp_cfg *cfg, uv_loop_t *loop, const char *dir)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->data_dir = (char *)dir;
    cfg->store_map_size = 16u << 20;
    assert_int_equal(hy_cp_open(cp, cfg, "test", loop), 0);
}

static void cp_close(struct hy_cp *cp, uv_loop_t *loop)
{
    hy_cp_stop(cp);
    uv_run(loop, UV_RUN_NOWAIT);
    hy_cp_close(cp);
}

/* A MeshTrust record as an older Hypha stored a mesh root: the envelope
 * says MeshTrust, the spec holds the root's fields (those of MeshCaRoot). */
static struct hy_resource *old_root(const char *mesh, const char *name, const char *pem)
{
    Hypha__V1__MeshCaRoot root = HYPHA__V1__MESH_CA_ROOT__INIT;
    root.backend = (char *)name;
    root.ca_cert = (char *)pem;
    root.fingerprint = "00ff";
    uint8_t spec[4096];
    size_t slen = hypha__v1__mesh_ca_root__pack(&root, spec);
    Hypha__V1__Meta meta = HYPHA__V1__META__INIT;
    meta.type = "MeshTrust";
    meta.mesh = (char *)mesh;
    meta.name = (char *)name;
    Hypha__V1__Envelope env = HYPHA__V1__ENVELOPE__INIT;
    env.meta = &meta;
    env.spec.data = spec;
    env.has_spec = 1;
    env.spec.len = slen;
    env.origin = "global";
    uint8_t buf[8192];
    size_t len = hypha__v1__envelope__pack(&env, buf);
    struct hy_resource *r = NULL;
    assert_int_equal(hy_resource_unpack(buf, len, &r), 0); /* unknown fields kept */
    return r;
}

static void test_old_roots_move(void **state)
{
    (void)state;
    char dir[] = "/tmp/hy-test-cp-migrate-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct hy_cp cp;
    struct hy_cp_cfg cfg;
    cp_open(&cp, &cfg, &loop, dir);
    const char *pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    struct hy_resource *r = old_root("default", "ca-1", pem);
    struct hy_store_write w;
    assert_int_equal(hy_store_put(cp.store, r, HY_VERSION_ANY, &w), 0);
    hy_resource_free(r);
    /* and one of today's, which stays */
    const char *yaml = "type: MeshTrust\nmesh: default\nname: corp\nspec:\n  trustDomain: default\n"
                       "  caBundles: [{type: Pem, pem: {value: x}}]\n";
    struct hy_docs docs = {0};
    struct hy_diag d = {0};
    assert_int_equal(hy_codec_decode_resources("t.yaml", yaml, strlen(yaml), NULL, &docs, &d), 0);
    assert_int_equal(hy_store_put(cp.store, docs.v[0].res, HY_VERSION_ANY, &w), 0);
    hy_docs_fini(&docs);
    cp_close(&cp, &loop);

    cp_open(&cp, &cfg, &loop, dir); /* the migration runs here */
    struct hy_resource *got = NULL;
    assert_int_equal(hy_store_get(cp.store, "MeshCaRoot", "default", "ca-1", &got), 0);
    const Hypha__V1__MeshCaRoot *root = (const Hypha__V1__MeshCaRoot *)got->spec;
    assert_string_equal(root->ca_cert, pem);
    assert_string_equal(root->backend, "ca-1");
    assert_string_equal(got->origin, "global");
    hy_resource_free(got);
    got = NULL;
    assert_int_equal(hy_store_get(cp.store, "MeshTrust", "default", "ca-1", &got), HY_ENOTFOUND);
    assert_int_equal(hy_store_get(cp.store, "MeshTrust", "default", "corp", &got), 0);
    assert_string_equal(((const Hypha__V1__MeshTrust *)got->spec)->trust_domain, "default");
    hy_resource_free(got);
    cp_close(&cp, &loop);

    /* a root this control plane made (its key is here) but never listed in
     * a MeshTrust: listed at the next open; another's root (no key) is not */
    const char *roots = "type: MeshCaRoot\nmesh: default\nname: ca-2\nbackend: ca-2\n"
                        "caCert: PEM2\n---\ntype: MeshCaKey\nmesh: default\nname: ca-2\n"
                        "backend: ca-2\nkey: KEY2\n---\ntype: MeshCaRoot\nmesh: default\n"
                        "name: ca-3\nbackend: ca-3\ncaCert: PEM3\n";
    cp_open(&cp, &cfg, &loop, dir);
    assert_int_equal(hy_codec_decode_resources("r.yaml", roots, strlen(roots), NULL, &docs, &d), 0);
    for (size_t i = 0; i < docs.n; i++)
        assert_int_equal(hy_store_put(cp.store, docs.v[i].res, HY_VERSION_ANY, &w), 0);
    hy_docs_fini(&docs);
    cp_close(&cp, &loop);
    cp_open(&cp, &cfg, &loop, dir);
    assert_int_equal(hy_store_get(cp.store, "MeshTrust", "default", "ca-2", &got), 0);
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)got->spec;
    assert_string_equal(t->trust_domain, "default");
    assert_int_equal(t->n_ca_bundles, 1);
    assert_string_equal(t->ca_bundles[0]->pem->value, "PEM2");
    assert_int_equal(got->meta->n_labels, 1);
    assert_string_equal(got->meta->labels[0]->key, HY_CP_MANAGED_BY);
    assert_string_equal(got->meta->labels[0]->value, HY_CP_MANAGED_BUILTIN);
    hy_resource_free(got);
    got = NULL;
    assert_int_equal(hy_store_get(cp.store, "MeshTrust", "default", "ca-3", &got), HY_ENOTFOUND);
    cp_close(&cp, &loop);

    cp_open(&cp, &cfg, &loop, dir); /* nothing left to move */
    cp_close(&cp, &loop);
    assert_int_equal(uv_loop_close(&loop), 0);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_roots_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
