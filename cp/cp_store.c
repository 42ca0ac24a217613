/* The control planes' store selection (--store lmdb|postgres) and the store
 * subcommands: `migrate` (create or upgrade the PostgreSQL schema and exit)
 * and `store copy` (an LMDB store into PostgreSQL or back, verified). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp.h"
#include "error.h"
#include "poison.h"

#define COPY_BATCH 256

int hy_cp_store_config(const struct hy_cp_cfg *cfg, char *path, size_t size,
                       struct hy_store_config *out)
{
    memset(out, 0, sizeof(*out));
    if (!cfg->store || strcmp(cfg->store, "lmdb") == 0) {
        int n = snprintf(path, size, "%s/store", cfg->data_dir);
        if (n < 0 || (size_t)n >= size)
            return HY_ETOOBIG;
        out->backend = HY_STORE_LMDB;
        out->path = path;
        out->map_size = (size_t)cfg->store_map_size;
        return 0;
    }
    if (strcmp(cfg->store, "postgres") != 0) {
        hy_log(HY_LOG_ERROR, "store", "--store \"%s\": not a store backend (lmdb or postgres)",
               cfg->store);
        return HY_EINVAL;
    }
    if (!cfg->store_postgres_url || !cfg->store_postgres_url[0]) {
        hy_log(HY_LOG_ERROR, "store",
               "--store postgres needs --store-postgres-url (HYPHA_STORE_POSTGRES_URL, "
               "storePostgresUrl), e.g. postgresql://hypha@db.example/hypha");
        return HY_EINVAL;
    }
    out->backend = HY_STORE_POSTGRES;
    out->url = cfg->store_postgres_url;
    out->no_migrate = cfg->no_migrate;
    return 0;
}

static int migrate_command(const struct hy_config_spec *spec, void *cfg, size_t cp_offset, int argc,
                           char **argv)
{
    struct hy_config_result res;
    struct hy_store_config sc;
    char path[4096];
    int from, to, rc = hy_config_parse(spec, cfg, argc, argv, &res);
    const struct hy_cp_cfg *c = (const struct hy_cp_cfg *)((const char *)cfg + cp_offset);
    if (rc == 0 && res.help) {
        printf("usage: %s migrate [OPTIONS]\n\nCreates or upgrades the schema of the PostgreSQL "
               "store (--store postgres --store-postgres-url URL) and exits; idempotent. The "
               "options are those of %s (see %s --help).\n",
               spec->program, spec->program, spec->program);
        hy_config_fini(spec, cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "%s migrate: %s\n", spec->program, res.error);
        hy_config_fini(spec, cfg);
        return 2;
    }
    hy_log_threshold = c->log_level;
    rc = hy_cp_store_config(c, path, sizeof(path), &sc);
    if (rc == 0 && sc.backend == HY_STORE_LMDB) {
        hy_log(HY_LOG_INFO, "store",
               "the lmdb store (%s) upgrades itself at start: nothing to migrate", path);
    } else if (rc == 0 && (rc = hy_store_migrate(&sc, &from, &to)) == 0) {
        if (from == to)
            hy_log(HY_LOG_INFO, "store", "postgres: the schema is current (version %d)", to);
        else
            hy_log(HY_LOG_INFO, "store", "postgres: schema migrated from version %d to %d", from,
                   to);
    }
    hy_config_fini(spec, cfg);
    return rc < 0 ? 1 : 0;
}

/* "lmdb:PATH" or "postgres:URL" into sc (borrowing from arg). */
static int parse_location(const char *opt, const char *arg, struct hy_store_config *sc)
{
    memset(sc, 0, sizeof(*sc));
    if (arg && strncmp(arg, "lmdb:", 5) == 0 && arg[5]) {
        sc->backend = HY_STORE_LMDB;
        sc->path = arg + 5;
        return 0;
    }
    if (arg && strncmp(arg, "postgres:", 9) == 0 && arg[9]) {
        sc->backend = HY_STORE_POSTGRES;
        sc->url = arg + 9;
        return 0;
    }
    fprintf(stderr, "store copy: %s \"%s\": give lmdb:PATH (a store directory) or postgres:URL\n",
            opt, arg ? arg : "");
    return HY_EINVAL;
}

struct copier {
    struct hy_store *dst;
    struct hy_resource *r[COPY_BATCH];
    struct hy_store_write w[COPY_BATCH];
    size_t n;
    uint64_t copied;
};

static int copy_flush(struct copier *c)
{
    size_t failed = 0;
    int rc = c->n ? hy_store_apply(c->dst, c->w, c->n, &failed) : 0;
    const struct hy_resource *bad = c->n ? c->r[failed < c->n ? failed : 0] : NULL;
    if (rc < 0 && bad)
        hy_log(HY_LOG_ERROR, "store", "copy: writing %s %s/%s failed: %s", bad->type->name,
               bad->meta->mesh ? bad->meta->mesh : "", bad->meta->name, hy_strerror(rc));
    else
        c->copied += c->n;
    for (size_t i = 0; i < c->n; i++)
        hy_resource_free(c->r[i]);
    c->n = 0;
    return rc;
}

/* Each resource as its source store had it: version, times and origin. */
static int copy_one(void *ud, struct hy_resource *r, bool *take)
{
    struct copier *c = ud;
    *take = true;
    c->r[c->n] = r;
    c->w[c->n] = (struct hy_store_write){
        .op = HY_STORE_PUT, .flags = HY_STORE_REPLICA, .r = r, .expect_version = HY_VERSION_ANY};
    return ++c->n == COPY_BATCH ? copy_flush(c) : 0;
}

struct digest {
    uint64_t n, hash;
};

/* FNV-1a over each resource's key and Envelope, in key order. */
static int digest_one(void *ud, struct hy_resource *r, bool *take)
{
    struct digest *d = ud;
    size_t len;
    (void)take;
    uint8_t *b = hy_resource_pack(r, &len);
    if (!b)
        return HY_ENOMEM;
    char key[1024];
    snprintf(key, sizeof(key), "%s/%s/%s", r->type->name, r->meta->mesh ? r->meta->mesh : "",
             r->meta->name);
    for (const char *p = key; *p; p++)
        d->hash = (d->hash ^ (uint8_t)*p) * 0x100000001b3ULL;
    for (size_t i = 0; i < len; i++)
        d->hash = (d->hash ^ b[i]) * 0x100000001b3ULL;
    free(b);
    d->n++;
    return 0;
}

/* Compares both stores type by type; 0 when they hold the same resources. */
static int verify(struct hy_store *src, struct hy_store *dst, uint64_t *n, uint64_t *hash)
{
    size_t nt;
    const struct hy_rtype *types = hy_rtype_all(&nt);
    int rc = 0;
    *n = 0;
    *hash = 0;
    for (size_t i = 0; i < nt && rc == 0; i++) {
        struct digest a = {0, 0xcbf29ce484222325ULL}, b = a;
        if ((rc = hy_store_each(src, types[i].name, digest_one, &a)) < 0 ||
            (rc = hy_store_each(dst, types[i].name, digest_one, &b)) < 0)
            break;
        if (a.n != b.n || a.hash != b.hash) {
            hy_log(HY_LOG_ERROR, "store",
                   "copy: %s differs: source %" PRIu64 " resource(s), hash %016" PRIx64
                   "; destination %" PRIu64 ", hash %016" PRIx64,
                   types[i].name, a.n, a.hash, b.n, b.hash);
            rc = HY_ESTORE;
        }
        *n += a.n;
        *hash ^= a.hash;
    }
    return rc;
}

static int copy_command(const char *program, int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    struct hy_store_config sf, st;
    struct hy_store *src = NULL, *dst = NULL;
    static struct copier c; /* large: not on the stack */
    uint64_t n, hash;
    int rc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: %s store copy --from lmdb:PATH|postgres:URL --to "
                   "lmdb:PATH|postgres:URL\n\nCopies every resource (versions, times, origins "
                   "and secrets included) into an empty store, then compares both (counts and "
                   "hashes per type). Stop the control plane writing the source first.\n",
                   program);
            return 0;
        }
        if (strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0)
            i++;
        if (strcmp(a, "--from") == 0)
            from = next;
        else if (strncmp(a, "--from=", 7) == 0)
            from = a + 7;
        else if (strcmp(a, "--to") == 0)
            to = next;
        else if (strncmp(a, "--to=", 5) == 0)
            to = a + 5;
        else {
            fprintf(stderr, "%s store copy: unknown argument \"%s\" (see --help)\n", program, a);
            return 2;
        }
    }
    if (parse_location("--from", from, &sf) < 0 || parse_location("--to", to, &st) < 0)
        return 2;
    sf.read_only = true;
    if ((rc = hy_store_open(&sf, &src)) < 0 || (rc = hy_store_open(&st, &dst)) < 0) {
        fprintf(stderr, "store copy: cannot open the %s store: %s\n",
                src ? "destination" : "source", hy_strerror(rc));
        goto out_close;
    }
    struct hy_store_stats stats;
    if ((rc = hy_store_stats(dst, &stats)) < 0)
        goto out_close;
    if (stats.revision || stats.resources) {
        fprintf(stderr,
                "store copy: the destination is not empty (revision %" PRIu64 ", %" PRIu64
                " resource(s)); copy into a new store\n",
                stats.revision, stats.resources);
        rc = HY_EEXIST;
        goto out_close;
    }
    memset(&c, 0, sizeof(c));
    c.dst = dst;
    rc = hy_store_each(src, NULL, copy_one, &c);
    if (rc == 0)
        rc = copy_flush(&c);
    else
        for (size_t i = 0; i < c.n; i++)
            hy_resource_free(c.r[i]);
    /* The copy's revisions are its own: past the source's, with an empty
     * log, so that zones resuming from a source revision take a snapshot. */
    uint64_t src_rev = hy_store_revision(src), dst_rev = hy_store_revision(dst);
    if (rc == 0)
        rc = hy_store_skip_to(dst, src_rev + dst_rev + 1);
    if (rc < 0 || (rc = verify(src, dst, &n, &hash)) < 0) {
        fprintf(stderr, "store copy: failed: %s\n", hy_strerror(rc));
        goto out_close;
    }
    printf("copied %" PRIu64 " resource(s); verified: %" PRIu64 " resource(s), hash %016" PRIx64
           " in both stores\n",
           c.copied, n, hash);
out_close:
    hy_store_close(src);
    hy_store_close(dst);
    return rc < 0 ? 1 : 0;
}

int hy_cp_store_command(const struct hy_config_spec *spec, void *cfg, size_t cp_offset, int argc,
                        char **argv)
{
    if (argc < 2)
        return -1;
    if (strcmp(argv[1], "migrate") == 0)
        return migrate_command(spec, cfg, cp_offset, argc - 1, argv + 1);
    if (strcmp(argv[1], "store") != 0)
        return -1;
    if (argc < 3 || strcmp(argv[2], "copy") != 0) {
        fprintf(stderr,
                "usage: %s store copy --from lmdb:PATH|postgres:URL --to "
                "lmdb:PATH|postgres:URL\n",
                spec->program);
        return 2;
    }
    return copy_command(spec->program, argc - 3, argv + 3);
}
