/* The fixture test_dp_config.c and test_tp_config.c share: a zone's
 * store in a temporary directory, resources put in it from YAML (as the
 * API would), and the DpConfig the zone builds for a Dataplane. Included
 * after cmocka.h and the headers its helpers use; static inline, so a test
 * that does not use one draws no warning. */
#ifndef HY_TEST_ZONE_CONFIG_FX_H
#define HY_TEST_ZONE_CONFIG_FX_H

struct fx {
    char dir[64];
    struct hy_store *s;
};

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/hy-test-zcfg-XXXXXX");
    struct hy_store_config cfg = {.path = f->dir};
    if (!mkdtemp(f->dir) || hy_store_open(&cfg, &f->s) < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    hy_store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Decodes every document of yaml, validates it unless told not to (the
 * generator must also survive what validation would refuse), stamps the
 * origin (NULL, "global" or a zone) and puts it in the store. */
static inline void put_yaml(struct hy_store *s, const char *origin, bool validate, const char *yaml)
{
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "test.yaml"};
    int rc = hy_codec_decode_resources("test.yaml", yaml, strlen(yaml), NULL, &docs, &d);
    if (rc == 0 && validate && !hy_docs_validate(&docs, &d))
        rc = -1;
    char line[512];
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
    hy_diag_fini(&d);
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < docs.n; i++) {
        struct hy_resource *r = docs.v[i].res;
        free(r->origin);
        r->origin = origin ? strdup(origin) : NULL;
        struct hy_store_write w;
        assert_int_equal(hy_store_put(s, r, HY_VERSION_ANY, &w), 0);
    }
    hy_docs_fini(&docs);
}

#define PUT(s, origin, yaml) put_yaml(s, origin, true, yaml)

static inline void del(struct hy_store *s, const char *type, const char *mesh, const char *name)
{
    assert_int_equal(hy_store_delete(s, type, mesh, name, HY_VERSION_ANY), 0);
}

/* The config of the stored Dataplane mesh/name, with fixed certificate
 * material. The caller frees it. */
static inline Hypha__V1__DpConfig *config_with(struct hy_store *s, const char *mesh,
                                               const char *name, const char *cert)
{
    struct hy_resource *dp = NULL;
    assert_int_equal(hy_store_get(s, "Dataplane", mesh, name, &dp), 0);
    Hypha__V1__DpConfig *c = NULL;
    assert_int_equal(hy_zone_dp_config_build(s, dp, cert, "CHAIN", "BUNDLE", &c), 0);
    hy_resource_free(dp);
    assert_non_null(c);
    return c;
}

static inline Hypha__V1__DpConfig *config(struct hy_store *s, const char *mesh, const char *name)
{
    return config_with(s, mesh, name, "CERT");
}

#endif
