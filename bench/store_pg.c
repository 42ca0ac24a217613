/* The PostgreSQL store beside the LMDB store, through the same store API,
 * in the same run: durable single puts (one commit each), batched puts,
 * random gets, list pages and a change-feed read. bench/store_pg.sh starts
 * the PostgreSQL (fsync on) and runs it. Hypha = postgres, baseline = lmdb. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "error.h"
#include "log.h"
#include "store.h"
#include "poison.h"

#define MTP "MeshTrafficPermission"

static size_t n_single = 500, n_batch = 2000, batch = 100, n_gets = 5000, page = 100;
static int reps = 3;
static const char *url, *dir;

static void pg_reset(void)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        bench_die("postgres", "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SET client_min_messages = warning;"
                            "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        bench_die("postgres reset", "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static struct hy_store *open_fresh(bool pg, char *tmp, size_t size)
{
    struct hy_store_config cfg = {0};
    struct hy_store *s;
    if (pg) {
        pg_reset();
        cfg.backend = HY_STORE_POSTGRES;
        cfg.url = url;
    } else {
        bench_mkdtemp(dir, "store-pg", tmp, size);
        cfg.path = tmp;
    }
    int rc = hy_store_open(&cfg, &s);
    if (rc < 0)
        bench_die("open", "%s", hy_strerror(rc));
    return s;
}

static struct hy_resource *res(const char *prefix, size_t i)
{
    char name[64];
    snprintf(name, sizeof(name), "%s-%06zu", prefix, i);
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name(MTP));
    if (!r || hy_resource_set_name(r, "default", name) < 0)
        bench_die("resource", "out of memory");
    return r;
}

/* One repetition on one backend: seconds for each of the 5 workloads. */
static void run(bool pg, double t[5])
{
    char tmp[256] = "";
    struct hy_store *s = open_fresh(pg, tmp, sizeof(tmp));
    double t0 = bench_now();
    for (size_t i = 0; i < n_single; i++) {
        struct hy_resource *r = res("single", i);
        int rc = hy_store_put(s, r, HY_VERSION_NEW, NULL);
        if (rc < 0)
            bench_die("put", "%s", hy_strerror(rc));
        hy_resource_free(r);
    }
    t[0] = bench_now() - t0;
    struct hy_resource **v = calloc(batch, sizeof(*v));
    struct hy_store_write *w = calloc(batch, sizeof(*w));
    t0 = bench_now();
    for (size_t b = 0; b < n_batch / batch; b++) {
        for (size_t i = 0; i < batch; i++) {
            v[i] = res("batch", b * batch + i);
            w[i] = (struct hy_store_write){
                .op = HY_STORE_PUT, .r = v[i], .expect_version = HY_VERSION_NEW};
        }
        int rc = hy_store_apply(s, w, batch, NULL);
        if (rc < 0)
            bench_die("apply", "%s", hy_strerror(rc));
        for (size_t i = 0; i < batch; i++)
            hy_resource_free(v[i]);
    }
    t[1] = bench_now() - t0;
    free(v);
    free(w);
    unsigned long long seed = 42;
    t0 = bench_now();
    for (size_t i = 0; i < n_gets; i++) {
        char name[64];
        struct hy_resource *r;
        snprintf(name, sizeof(name), "batch-%06llu", bench_rand(&seed) % n_batch);
        int rc = hy_store_get(s, MTP, "default", name, &r);
        if (rc < 0)
            bench_die("get", "%s", hy_strerror(rc));
        hy_resource_free(r);
    }
    t[2] = bench_now() - t0;
    t0 = bench_now();
    char *after = NULL;
    size_t listed = 0;
    do {
        struct hy_store_page p;
        int rc = hy_store_list(s, MTP, "default", after, page, &p);
        if (rc < 0)
            bench_die("list", "%s", hy_strerror(rc));
        free(after);
        after = p.next;
        p.next = NULL;
        listed += p.n;
        hy_store_page_fini(&p);
    } while (after);
    if (listed != n_single + n_batch)
        bench_die("list", "listed %zu, want %zu", listed, n_single + n_batch);
    t[3] = bench_now() - t0;
    t0 = bench_now();
    struct hy_store_changes ch;
    int rc = hy_store_changes(s, 0, 0, &ch);
    if (rc < 0 || ch.n != n_single + n_batch)
        bench_die("changes", "%s, %zu", hy_strerror(rc), ch.n);
    hy_store_changes_fini(&ch);
    t[4] = bench_now() - t0;
    hy_store_close(s);
    if (tmp[0])
        bench_rmtree(tmp);
}

int main(int argc, char **argv)
{
    const struct bench_opt opts[] = {
        {"--url", "HYPHA_BENCH_PG_URL", BENCH_OPT_STR, &url, "PostgreSQL (libpq) to use"},
        {"--dir", "HYPHA_BENCH_DIR", BENCH_OPT_STR, &dir, "where LMDB stores go"},
        {"--reps", "HYPHA_BENCH_REPS", BENCH_OPT_INT, &reps, "repetitions (median shown)"},
        {"--single", NULL, BENCH_OPT_SIZE, &n_single, "single durable puts per repetition"},
        {"--batched", NULL, BENCH_OPT_SIZE, &n_batch, "batched puts per repetition"},
        {"--gets", NULL, BENCH_OPT_SIZE, &n_gets, "random gets per repetition"},
    };
    bench_opts_parse(argc, argv, "PostgreSQL store vs LMDB store", opts,
                     sizeof(opts) / sizeof(opts[0]));
    if (!url)
        bench_die("--url", "give the PostgreSQL to use (bench/store_pg.sh starts one)");
    if (reps < 1 || reps > BENCH_MAX_REPS)
        bench_die("--reps", "1 to %d", BENCH_MAX_REPS);
    hy_log_threshold = HY_LOG_WARN;
    struct bench_row rows[5] = {
        {.name = "Single durable puts", .unit = "puts"}, {.name = "Batched puts", .unit = "puts"},
        {.name = "Random gets", .unit = "gets"},         {.name = "List pages", .unit = "items"},
        {.name = "Change feed read", .unit = "records"},
    };
    snprintf(rows[0].work, sizeof(rows[0].work), "%zu puts, 1 per txn", n_single);
    snprintf(rows[1].work, sizeof(rows[1].work), "%zu puts, %zu per txn", n_batch, batch);
    snprintf(rows[2].work, sizeof(rows[2].work), "%zu gets of %zu keys", n_gets, n_batch);
    snprintf(rows[3].work, sizeof(rows[3].work), "%zu items, pages of %zu", n_single + n_batch,
             page);
    snprintf(rows[4].work, sizeof(rows[4].work), "%zu records", n_single + n_batch);
    double ops[5] = {(double)n_single, (double)n_batch, (double)n_gets,
                     (double)(n_single + n_batch), (double)(n_single + n_batch)};
    for (int k = 0; k < reps; k++) {
        double tp[5], tl[5];
        run(true, tp);
        run(false, tl);
        for (int i = 0; i < 5; i++)
            bench_row_add(&rows[i], ops[i], tp[i], tl[i]);
    }
    printf("Hypha = the PostgreSQL store, baseline = the LMDB store (LMDB dir on %s); median of "
           "%d\n\n",
           bench_fs_name(dir                ? dir
                         : getenv("TMPDIR") ? getenv("TMPDIR")
                                            : "/tmp"),
           reps);
    bench_table_print(stdout, rows, 5);
    return 0;
}
