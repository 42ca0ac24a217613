/* Store benchmark: the Hypha store (LMDB backend) beside raw LMDB doing the
 * same work, with the same keys and values of the same size, in the same
 * run, so the ratio tells what the store adds over LMDB itself. */
#include <limits.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "codec.h"
#include "error.h"
#include "store.h"
#include "store.pb-c.h"
#include "poison.h"

#define MTP "MeshTrafficPermission"
#define MAP_SIZE ((size_t)1 << 30) /* the store's default */
#define PUTS_BLOCK 100             /* single puts per alternation */

struct params {
    double scale;
    int reps;
    const char *dir, *data;
    size_t single, total, batch, n_gets, changes, read_reps;
    size_t page_total, page_size; /* benchmark 4b */
};

/* What names resource i, for both sides: one contiguous entry each, so a
 * random get touches the same memory whichever side asks. */
struct ident {
    const char *mesh;
    char name[64];
    char key[128]; /* "Type/mesh/name", the store's key */
    size_t key_len;
};

/* Inputs shared by every repetition, built before any timing. */
struct fixture {
    size_t n; /* resources: the first half in mesh "default", the rest in "other" */
    size_t n_default;
    struct hy_resource **res;
    struct ident *ids; /* ids[i] names res[i] */
    MDB_val value;     /* an Envelope of res[0] exactly as the store keeps it */
    MDB_val record;    /* a ChangeRecord as the store appends it */
    uint32_t *get_order;
    size_t changes; /* feed length read by benchmark 5 */
    char base[48];  /* the sample's name, which resource names extend */
    /* p->batch resources renamed for each batch that fills benchmark 4b's
     * stores (page_total resources need not all be in memory at once) */
    struct hy_resource **pool;
};

/* Raw LMDB: one environment, a "kv" database for resources and a "log"
 * database for the change-feed baseline. */
struct raw {
    MDB_env *env;
    MDB_dbi kv, log;
};

/* One repetition's pair of fresh stores. */
struct run {
    const struct params *p;
    const struct fixture *fx;
    char hdir[PATH_MAX], rdir[PATH_MAX];
    struct hy_store *s;
    struct raw raw;
    struct hy_store_write *writes; /* room for one batch */
};

static void hy_check(int rc, const char *what)
{
    if (rc < 0)
        bench_die(what, "%s", hy_strerror(rc));
}

static void mdb_check(int rc, const char *what)
{
    if (rc)
        bench_die(what, "%s", mdb_strerror(rc));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_die("malloc", "out of memory");
    return p;
}

static void *xmemdup(const void *src, size_t n)
{
    return memcpy(xmalloc(n), src, n);
}

/* ---- setup ------------------------------------------------------------- */

static MDB_val key_of(const struct ident *id)
{
    return (MDB_val){id->key_len, (void *)id->key};
}

static const char *mesh_of(const struct fixture *fx, size_t i)
{
    return i < fx->n_default ? "default" : "other";
}

static struct hy_resource *load_template(const char *path)
{
    size_t len;
    char *text = bench_read_file(path, &len);
    struct hy_diag diag = {.source = path};
    struct hy_docs docs = {0};
    char line[1024];
    int rc = hy_codec_decode_resources(path, text, len, NULL, &docs, &diag);
    if (rc < 0 || docs.n != 1 || !hy_docs_validate(&docs, &diag)) {
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "%s\n", hy_diag_format(&diag, i, line, sizeof(line)));
        bench_die(path, "not one valid resource (%s)", hy_strerror(rc));
    }
    struct hy_resource *r = hy_resource_dup(docs.v[0].res);
    if (!r)
        bench_die(path, "out of memory");
    hy_docs_fini(&docs);
    hy_diag_fini(&diag);
    free(text);
    return r;
}

/* The stored Envelope of fx->res[0] and its change record, so raw LMDB moves
 * values of exactly the sizes the store moves. */
static void measure_values(const struct params *p, struct fixture *fx)
{
    char dir[PATH_MAX];
    struct hy_store_config cfg = {.path = dir};
    struct hy_store *s;
    struct hy_resource *got;
    struct hy_store_write w;
    const struct hy_resource *r = fx->res[0];

    bench_mkdtemp(p->dir, "probe", dir, sizeof(dir));
    hy_check(hy_store_open(&cfg, &s), "open probe store");
    hy_check(hy_store_put(s, r, HY_VERSION_ANY, &w), "probe put");
    hy_check(hy_store_get(s, MTP, r->meta->mesh, r->meta->name, &got), "probe get");
    uint8_t *v = hy_resource_pack(got, &fx->value.mv_size);
    if (!v)
        bench_die("pack", "out of memory");
    fx->value.mv_data = v;
    hy_resource_free(got);
    hy_store_close(s);
    bench_rmtree(dir);

    Hypha__V1__ChangeRecord cr = HYPHA__V1__CHANGE_RECORD__INIT;
    cr.has_op = cr.has_version = 1;
    cr.op = HYPHA__V1__CHANGE_RECORD__OP__Upsert;
    cr.type = (char *)MTP;
    cr.mesh = r->meta->mesh;
    cr.name = r->meta->name;
    cr.version = w.version;
    fx->record.mv_size = hypha__v1__change_record__get_packed_size(&cr);
    fx->record.mv_data = xmalloc(fx->record.mv_size);
    hypha__v1__change_record__pack(&cr, fx->record.mv_data);
}

static void fixture_init(const struct params *p, struct fixture *fx)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/resources/meshtrafficpermission.yaml", p->data);
    struct hy_resource *tmpl = load_template(path);

    fx->n = p->total > p->single ? p->total : p->single;
    fx->n_default = p->total / 2;
    fx->res = xmalloc(fx->n * sizeof(*fx->res));
    fx->ids = xmalloc(fx->n * sizeof(*fx->ids));
    if (snprintf(fx->base, sizeof(fx->base), "%s", tmpl->meta->name) >= (int)sizeof(fx->base))
        bench_die(path, "the sample's name is too long for the benchmark");
    fx->pool = xmalloc(p->batch * sizeof(*fx->pool));
    for (size_t i = 0; i < p->batch; i++)
        if (!(fx->pool[i] = hy_resource_dup(tmpl)))
            bench_die("fixture", "out of memory");
    for (size_t i = 0; i < fx->n; i++) {
        struct ident *id = &fx->ids[i];
        /* The sample's own name, made unique: keys and values stay its size. */
        int n = snprintf(id->name, sizeof(id->name), "%s-%06zu", fx->base, i);
        int k = snprintf(id->key, sizeof(id->key), "%s/%s/%s", MTP, mesh_of(fx, i), id->name);
        if (n < 0 || (size_t)n >= sizeof(id->name) || k < 0 || (size_t)k >= sizeof(id->key))
            bench_die(path, "the sample's name is too long for the benchmark");
        id->mesh = mesh_of(fx, i);
        id->key_len = (size_t)k;
        if (!(fx->res[i] = hy_resource_dup(tmpl)) ||
            hy_resource_set_name(fx->res[i], id->mesh, id->name) < 0)
            bench_die("fixture", "out of memory");
    }
    hy_resource_free(tmpl);
    measure_values(p, fx);

    unsigned long long seed = 0x9E3779B97F4A7C15ULL;
    fx->get_order = xmalloc(p->n_gets * sizeof(*fx->get_order));
    for (size_t i = 0; i < p->n_gets; i++)
        fx->get_order[i] = (uint32_t)(bench_rand(&seed) % p->total);
    fx->changes = p->changes < p->total ? p->changes : p->total;
}

static void fixture_fini(const struct params *p, struct fixture *fx)
{
    for (size_t i = 0; i < p->batch; i++)
        hy_resource_free(fx->pool[i]);
    free(fx->pool);
    for (size_t i = 0; i < fx->n; i++)
        hy_resource_free(fx->res[i]);
    free(fx->res);
    free(fx->ids);
    free(fx->value.mv_data);
    free(fx->record.mv_data);
    free(fx->get_order);
}

static void raw_open(struct raw *r, const char *dir)
{
    MDB_txn *txn;
    mdb_check(mdb_env_create(&r->env), "mdb_env_create");
    mdb_check(mdb_env_set_maxdbs(r->env, 2), "mdb_env_set_maxdbs");
    mdb_check(mdb_env_set_mapsize(r->env, MAP_SIZE), "mdb_env_set_mapsize");
    mdb_check(mdb_env_open(r->env, dir, 0, 0600), dir); /* default flags: durable commits */
    mdb_check(mdb_txn_begin(r->env, NULL, 0, &txn), "mdb_txn_begin");
    mdb_check(mdb_dbi_open(txn, "kv", MDB_CREATE, &r->kv), "mdb_dbi_open kv");
    mdb_check(mdb_dbi_open(txn, "log", MDB_CREATE, &r->log), "mdb_dbi_open log");
    mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
}

static void run_open(struct run *r, const struct params *p, const struct fixture *fx)
{
    r->p = p;
    r->fx = fx;
    bench_mkdtemp(p->dir, "hypha", r->hdir, sizeof(r->hdir));
    bench_mkdtemp(p->dir, "raw", r->rdir, sizeof(r->rdir));
    struct hy_store_config cfg = {.path = r->hdir};
    hy_check(hy_store_open(&cfg, &r->s), r->hdir);
    raw_open(&r->raw, r->rdir);
    r->writes = xmalloc(p->batch * sizeof(*r->writes));
}

static void run_close(struct run *r)
{
    hy_store_close(r->s);
    mdb_env_close(r->raw.env);
    bench_rmtree(r->hdir);
    bench_rmtree(r->rdir);
    free(r->writes);
}

/* ---- 1 and 2. puts ----------------------------------------------------- */

/* Writes res[from..to) in transactions of per_txn puts; returns seconds. */
static double puts_hypha(struct run *r, size_t from, size_t to, size_t per_txn)
{
    struct hy_store_write *w = r->writes;
    double t0 = bench_now();
    for (size_t i = from; i < to; i += per_txn) {
        size_t n = to - i < per_txn ? to - i : per_txn;
        if (n == 1) { /* the convenience form, as a single-resource caller writes */
            hy_check(hy_store_put(r->s, r->fx->res[i], HY_VERSION_ANY, NULL), "hy_store_put");
            continue;
        }
        for (size_t j = 0; j < n; j++)
            w[j] = (struct hy_store_write){
                .op = HY_STORE_PUT, .r = r->fx->res[i + j], .expect_version = HY_VERSION_ANY};
        hy_check(hy_store_apply(r->s, w, n, NULL), "hy_store_apply");
    }
    return bench_now() - t0;
}

static double puts_raw(struct run *r, size_t from, size_t to, size_t per_txn)
{
    MDB_txn *txn;
    double t0 = bench_now();
    for (size_t i = from; i < to; i += per_txn) {
        mdb_check(mdb_txn_begin(r->raw.env, NULL, 0, &txn), "mdb_txn_begin");
        for (size_t j = i; j < to && j < i + per_txn; j++) {
            MDB_val k = key_of(&r->fx->ids[j]), v = r->fx->value; /* mdb_put may change v */
            mdb_check(mdb_put(txn, r->raw.kv, &k, &v, 0), "mdb_put");
        }
        mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
    return bench_now() - t0;
}

/* Writes res[0..n) into both stores in alternating blocks (a batch, or
 * PUTS_BLOCK single puts), the first block of each pair going to Hypha and
 * to raw LMDB in turn: fsync latency drifts over seconds, and both sides
 * must see the same disk. */
static void puts_pair(struct bench_row *row, struct run *r, size_t n, size_t per_txn)
{
    size_t block = per_txn >= PUTS_BLOCK ? per_txn : per_txn * (PUTS_BLOCK / per_txn);
    double th = 0, tb = 0;
    fprintf(stderr, "bench: %s...\n", row->name);
    for (size_t i = 0; i < n; i += block) {
        size_t end = n - i < block ? n : i + block;
        if ((i / block) % 2 == 0) {
            th += puts_hypha(r, i, end, per_txn);
            tb += puts_raw(r, i, end, per_txn);
        } else {
            tb += puts_raw(r, i, end, per_txn);
            th += puts_hypha(r, i, end, per_txn);
        }
    }
    bench_row_add(row, (double)n, th, tb);
}

/* The raw change log the feed baseline reads: as many records as the store
 * appended, keyed like the store's (8 big-endian bytes). Not timed. */
static void raw_fill_log(struct run *r)
{
    MDB_txn *txn;
    uint8_t kb[8];
    mdb_check(mdb_txn_begin(r->raw.env, NULL, 0, &txn), "mdb_txn_begin");
    for (uint64_t rev = 1; rev <= r->fx->changes; rev++) {
        for (int i = 0; i < 8; i++)
            kb[i] = (uint8_t)(rev >> (56 - 8 * i));
        MDB_val k = {8, kb}, v = r->fx->record;
        mdb_check(mdb_put(txn, r->raw.log, &k, &v, MDB_APPEND), "mdb_put log");
    }
    mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
}

/* ---- 3. gets ----------------------------------------------------------- */

static double get_hypha(struct run *r)
{
    const struct fixture *fx = r->fx;
    struct hy_resource *res;
    double t0 = bench_now();
    for (size_t i = 0; i < r->p->n_gets; i++) {
        const struct ident *id = &fx->ids[fx->get_order[i]];
        hy_check(hy_store_get(r->s, MTP, id->mesh, id->name, &res), "hy_store_get");
        hy_resource_free(res);
    }
    return bench_now() - t0;
}

/* A read transaction per get, and the value copied out before it ends, as
 * the store must (values are valid only inside the transaction). */
static double get_raw(struct run *r)
{
    const struct fixture *fx = r->fx;
    MDB_txn *txn;
    MDB_val v;
    double t0 = bench_now();
    for (size_t i = 0; i < r->p->n_gets; i++) {
        mdb_check(mdb_txn_begin(r->raw.env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
        MDB_val k = key_of(&fx->ids[fx->get_order[i]]);
        mdb_check(mdb_get(txn, r->raw.kv, &k, &v), "mdb_get");
        void *copy = xmemdup(v.mv_data, v.mv_size);
        mdb_txn_abort(txn);
        free(copy);
    }
    return bench_now() - t0;
}

/* ---- 4. list ----------------------------------------------------------- */

static double list_hypha(struct run *r)
{
    struct hy_store_page page;
    double t0 = bench_now();
    for (size_t i = 0; i < r->p->read_reps; i++) {
        hy_check(hy_store_list(r->s, MTP, "default", NULL, 0, &page), "hy_store_list");
        if (page.n != r->fx->n_default)
            bench_die("hy_store_list", "listed %zu resources, expected %zu", page.n,
                      r->fx->n_default);
        hy_store_page_fini(&page);
    }
    return bench_now() - t0;
}

/* Walks dbi from the key `from` (NULL: the first) while keys begin with
 * its first `match` bytes, for at most `most` records, copying every value
 * out as a list must; frees the copies after the transaction, as a caller
 * frees a page. Returns the number of records. */
static size_t raw_walk(struct raw *raw, MDB_dbi dbi, const MDB_val *from, size_t match, size_t most)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k = from ? *from : (MDB_val){0, NULL}, v;
    void **copies = xmalloc(most * sizeof(*copies));
    size_t n = 0;
    int rc;
    mdb_check(mdb_txn_begin(raw->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
    mdb_check(mdb_cursor_open(txn, dbi, &c), "mdb_cursor_open");
    for (rc = mdb_cursor_get(c, &k, &v, from ? MDB_SET_RANGE : MDB_FIRST); rc == 0 && n < most;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (match && (k.mv_size < match || memcmp(k.mv_data, from->mv_data, match) != 0))
            break;
        copies[n++] = xmemdup(v.mv_data, v.mv_size);
    }
    if (rc && rc != MDB_NOTFOUND)
        mdb_check(rc, "mdb_cursor_get");
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    free(copies);
    return n;
}

static double list_raw(struct run *r)
{
    static const char prefix[] = MTP "/default/";
    MDB_val k = {sizeof(prefix) - 1, (void *)prefix};
    double t0 = bench_now();
    for (size_t i = 0; i < r->p->read_reps; i++) {
        size_t n = raw_walk(&r->raw, r->raw.kv, &k, k.mv_size, r->fx->n);
        if (n != r->fx->n_default)
            bench_die("raw list", "walked %zu records, expected %zu", n, r->fx->n_default);
    }
    return bench_now() - t0;
}

/* ---- 4b. paging -------------------------------------------------------- */

/* Fills both stores with page_total MTPs in mesh "default", in batches as
 * benchmark 2 writes them. Not timed. */
static void page_fill(struct run *r)
{
    const struct params *p = r->p;
    const struct fixture *fx = r->fx; /* its pool's resources are renamed */
    char name[64], key[128];
    MDB_txn *txn;
    for (size_t i = 0; i < p->page_total; i += p->batch) {
        size_t n = p->page_total - i < p->batch ? p->page_total - i : p->batch;
        mdb_check(mdb_txn_begin(r->raw.env, NULL, 0, &txn), "mdb_txn_begin");
        for (size_t j = 0; j < n; j++) {
            snprintf(name, sizeof(name), "%s-%06zu", fx->base, i + j);
            int k = snprintf(key, sizeof(key), "%s/default/%s", MTP, name);
            if (hy_resource_set_name(fx->pool[j], "default", name) < 0)
                bench_die("page fill", "out of memory");
            r->writes[j] = (struct hy_store_write){
                .op = HY_STORE_PUT, .r = fx->pool[j], .expect_version = HY_VERSION_ANY};
            MDB_val kv = {(size_t)k, key}, v = fx->value;
            mdb_check(mdb_put(txn, r->raw.kv, &kv, &v, 0), "mdb_put");
        }
        hy_check(hy_store_apply(r->s, r->writes, n, NULL), "hy_store_apply");
        mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
}

/* Every page of the mesh in turn, each starting after the previous page's
 * `next`, as an API client pages. */
static double page_hypha(struct run *r)
{
    struct hy_store_page page;
    char *next = NULL;
    size_t seen = 0, pages = 0;
    double t0 = bench_now();
    do {
        hy_check(hy_store_list(r->s, MTP, "default", next, r->p->page_size, &page),
                 "hy_store_list");
        if (page.total != r->p->page_total)
            bench_die("hy_store_list", "total %zu, expected %zu", page.total, r->p->page_total);
        seen += page.n;
        pages++;
        free(next);
        next = page.next; /* taken over: the next page starts after it */
        page.next = NULL;
        hy_store_page_fini(&page);
    } while (next);
    double t = bench_now() - t0;
    if (seen != r->p->page_total)
        bench_die("hy_store_list", "paged through %zu resources in %zu pages, expected %zu", seen,
                  pages, r->p->page_total);
    return t;
}

/* One raw page: a read transaction, the cursor put after the key `tok`
 * (*tok_len 0: at the prefix), up to `most` values under the prefix copied
 * out, then one key peeked at to know whether another page follows. The
 * last key read becomes tok. Returns the number of values; *more whether a
 * page follows. */
static size_t raw_page(struct raw *raw, const MDB_val *prefix, char *tok, size_t *tok_len,
                       size_t most, void **copies, bool *more)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k = *tok_len ? (MDB_val){*tok_len, tok} : *prefix, v;
    size_t n = 0;
    int rc;
    mdb_check(mdb_txn_begin(raw->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
    mdb_check(mdb_cursor_open(txn, raw->kv, &c), "mdb_cursor_open");
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && *tok_len && k.mv_size == *tok_len && memcmp(k.mv_data, tok, *tok_len) == 0)
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size < prefix->mv_size || memcmp(k.mv_data, prefix->mv_data, prefix->mv_size))
            break;
        if (n == most)
            break;
        copies[n++] = xmemdup(v.mv_data, v.mv_size);
        memcpy(tok, k.mv_data, k.mv_size);
        *tok_len = k.mv_size;
    }
    *more = rc == 0 && n == most && k.mv_size >= prefix->mv_size &&
            memcmp(k.mv_data, prefix->mv_data, prefix->mv_size) == 0;
    if (rc && rc != MDB_NOTFOUND)
        mdb_check(rc, "mdb_cursor_get");
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return n;
}

static double page_raw(struct run *r)
{
    static const char pfx[] = MTP "/default/";
    const MDB_val prefix = {sizeof(pfx) - 1, (void *)pfx};
    char tok[512]; /* LMDB's largest key */
    size_t tok_len = 0, seen = 0, most = r->p->page_size;
    void **copies = xmalloc(most * sizeof(*copies));
    bool more;
    double t0 = bench_now();
    do {
        size_t n = raw_page(&r->raw, &prefix, tok, &tok_len, most, copies, &more);
        for (size_t i = 0; i < n; i++) /* as a caller frees a page */
            free(copies[i]);
        seen += n;
    } while (more);
    double t = bench_now() - t0;
    free(copies);
    if (seen != r->p->page_total)
        bench_die("raw paging", "walked %zu records, expected %zu", seen, r->p->page_total);
    return t;
}

/* Untimed: one pass over both stores in pages of 1000, so that paging
 * measures lookups, not page faults. */
static void page_warm(struct run *r)
{
    struct hy_store_page page;
    char *next = NULL;
    do {
        hy_check(hy_store_list(r->s, MTP, "default", next, 1000, &page), "hy_store_list");
        free(next);
        next = page.next;
        page.next = NULL;
        hy_store_page_fini(&page);
    } while (next);
    raw_walk(&r->raw, r->raw.kv, NULL, 0, r->p->page_total);
}

/* ---- 5. change feed ---------------------------------------------------- */

static double changes_hypha(struct run *r)
{
    struct hy_store_changes c;
    uint64_t since = hy_store_revision(r->s) - r->fx->changes;
    double t0 = bench_now();
    for (size_t i = 0; i < r->p->read_reps; i++) {
        hy_check(hy_store_changes(r->s, since, 0, &c), "hy_store_changes");
        if (c.n != r->fx->changes)
            bench_die("hy_store_changes", "read %zu changes, expected %zu", c.n, r->fx->changes);
        hy_store_changes_fini(&c);
    }
    return bench_now() - t0;
}

static double changes_raw(struct run *r)
{
    uint8_t first[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    MDB_val k = {8, first};
    double t0 = bench_now();
    for (size_t i = 0; i < r->p->read_reps; i++) {
        size_t n = raw_walk(&r->raw, r->raw.log, &k, 0, r->fx->changes);
        if (n != r->fx->changes)
            bench_die("raw feed", "walked %zu records, expected %zu", n, r->fx->changes);
    }
    return bench_now() - t0;
}

/* ---- driver ------------------------------------------------------------ */

enum { ROW_SINGLE, ROW_BATCH, ROW_GET, ROW_LIST, ROW_PAGES, ROW_CHANGES, NROWS };

typedef double (*timed_fn)(struct run *r);

/* Times Hypha and its baseline one after the other, alternating which goes
 * first between repetitions so neither always gets the warmer machine. */
static void pair(struct bench_row *row, double ops, bool hypha_first, timed_fn hypha, timed_fn base,
                 struct run *r)
{
    double th, tb;
    fprintf(stderr, "bench: %s...\n", row->name);
    if (hypha_first) {
        th = hypha(r);
        tb = base(r);
    } else {
        tb = base(r);
        th = hypha(r);
    }
    bench_row_add(row, ops, th, tb);
}

/* Untimed: brings every page of both environments into this process's
 * mappings, so the read benchmarks measure lookups, not page faults. */
static void warm(struct run *r)
{
    struct hy_store_page page;
    hy_check(hy_store_list(r->s, MTP, NULL, NULL, 0, &page), "hy_store_list");
    hy_store_page_fini(&page);
    raw_walk(&r->raw, r->raw.kv, NULL, 0, r->fx->n);
}

static void one_rep(const struct params *p, const struct fixture *fx, struct bench_row *rows,
                    int rep)
{
    bool hf = rep % 2 == 1;
    struct run r;

    run_open(&r, p, fx);
    puts_pair(&rows[ROW_SINGLE], &r, p->single, 1);
    run_close(&r);

    run_open(&r, p, fx);
    puts_pair(&rows[ROW_BATCH], &r, p->total, p->batch);
    raw_fill_log(&r);
    warm(&r);
    pair(&rows[ROW_GET], (double)p->n_gets, hf, get_hypha, get_raw, &r);
    pair(&rows[ROW_LIST], (double)p->read_reps, hf, list_hypha, list_raw, &r);
    pair(&rows[ROW_CHANGES], (double)p->read_reps, hf, changes_hypha, changes_raw, &r);
    run_close(&r);

    run_open(&r, p, fx);
    fprintf(stderr, "bench: filling %zu resources for paging...\n", p->page_total);
    page_fill(&r);
    page_warm(&r);
    pair(&rows[ROW_PAGES], 1, hf, page_hypha, page_raw, &r);
    run_close(&r);
}

static size_t scaled(size_t n, double scale, size_t min)
{
    double v = (double)n * scale;
    return v < (double)min ? min : (size_t)v;
}

int main(int argc, char **argv)
{
    struct params p = {
        .scale = 1,
        .reps = 5,
        .data = HY_BENCH_DATA,
        .single = 2000,
        .total = 20000,
        .batch = 1000,
        .n_gets = 200000,
        .changes = 10000,
        .read_reps = 20,
        .page_total = 100000,
        .page_size = 100,
    };
    const struct bench_opt opts[] = {
        {"--scale", "HYPHA_BENCH_SCALE", BENCH_OPT_DOUBLE, &p.scale,
         "multiply --single, --total, --gets, --changes and --page-total by this (default 1)"},
        {"--reps", "HYPHA_BENCH_REPS", BENCH_OPT_INT, &p.reps,
         "repetitions; the table shows medians (default 5, at most 15)"},
        {"--dir", "HYPHA_BENCH_DIR", BENCH_OPT_STR, &p.dir,
         "where scratch stores go (default $TMPDIR or /tmp)"},
        {"--data", "HYPHA_BENCH_DATA", BENCH_OPT_STR, &p.data,
         "test data directory holding resources/*.yaml"},
        {"--single", NULL, BENCH_OPT_SIZE, &p.single, "single durable puts (default 2000)"},
        {"--total", NULL, BENCH_OPT_SIZE, &p.total,
         "resources written in batches; half are listed (default 20000)"},
        {"--batch", NULL, BENCH_OPT_SIZE, &p.batch, "puts per transaction (default 1000)"},
        {"--gets", NULL, BENCH_OPT_SIZE, &p.n_gets, "random gets (default 200000)"},
        {"--changes", NULL, BENCH_OPT_SIZE, &p.changes, "change-feed length (default 10000)"},
        {"--read-reps", NULL, BENCH_OPT_SIZE, &p.read_reps,
         "lists and feed reads per repetition (default 20)"},
        {"--page-total", NULL, BENCH_OPT_SIZE, &p.page_total,
         "resources paged through, in a store of their own (default 100000)"},
        {"--page-size", NULL, BENCH_OPT_SIZE, &p.page_size, "resources per page (default 100)"},
    };
    bench_opts_parse(argc, argv,
                     "Benchmarks the Hypha store against raw LMDB doing the same work; prints a "
                     "markdown table.",
                     opts, sizeof(opts) / sizeof(opts[0]));
    if (p.reps < 1 || p.reps > BENCH_MAX_REPS)
        bench_die("--reps", "must be 1..%d", BENCH_MAX_REPS);
    p.single = scaled(p.single, p.scale, 1);
    p.total = scaled(p.total, p.scale, 2);
    p.n_gets = scaled(p.n_gets, p.scale, 1);
    p.changes = scaled(p.changes, p.scale, 1);
    p.page_total = scaled(p.page_total, p.scale, 1);
    if (p.batch == 0)
        p.batch = 1;
    if (p.page_size == 0)
        p.page_size = 1;

    struct fixture fx = {0};
    fixture_init(&p, &fx);

    struct bench_row rows[NROWS] = {
        [ROW_SINGLE] = {.name = "1. Single durable puts", .unit = "puts"},
        [ROW_BATCH] = {.name = "2. Batched puts", .unit = "puts"},
        [ROW_GET] = {.name = "3. Random gets", .unit = "gets"},
        [ROW_LIST] = {.name = "4a. List one type", .unit = "lists"},
        [ROW_PAGES] = {.name = "4b. Page through one type", .unit = "walks"},
        [ROW_CHANGES] = {.name = "5. Change-feed read", .unit = "reads"},
    };
    snprintf(rows[ROW_SINGLE].work, sizeof(rows[0].work), "%zu puts, 1 per txn", p.single);
    snprintf(rows[ROW_BATCH].work, sizeof(rows[0].work), "%zu puts, %zu per txn", p.total, p.batch);
    snprintf(rows[ROW_GET].work, sizeof(rows[0].work), "%zu gets over %zu keys", p.n_gets, p.total);
    snprintf(rows[ROW_LIST].work, sizeof(rows[0].work), "%zu lists of %zu (of %zu keys)",
             p.read_reps, fx.n_default, p.total);
    snprintf(rows[ROW_PAGES].work, sizeof(rows[0].work), "all %zu pages of %zu (%zu keys)",
             (p.page_total + p.page_size - 1) / p.page_size, p.page_size, p.page_total);
    snprintf(rows[ROW_CHANGES].work, sizeof(rows[0].work), "%zu reads of %zu changes", p.read_reps,
             fx.changes);

    char probe[PATH_MAX];
    bench_mkdtemp(p.dir, "fs", probe, sizeof(probe));
    const char *fs = bench_fs_name(probe);
    bench_rmtree(probe);

    double t0 = bench_now();
    for (int rep = 0; rep < p.reps; rep++)
        one_rep(&p, &fx, rows, rep);

    bench_table_print(stdout, rows, NROWS);
    printf("\nMedian of %d repetition(s), %.1f s in all; stores on %s; key %zu bytes, "
           "value %zu bytes (a stored MeshTrafficPermission envelope), change record %zu "
           "bytes.\n",
           p.reps, bench_now() - t0, fs, fx.ids[0].key_len, fx.value.mv_size, fx.record.mv_size);
    if (strcmp(fs, "tmpfs") == 0)
        printf("\n**Warning:** tmpfs makes fsync free; durable-put numbers do not reflect a "
               "disk. Pass --dir on a real filesystem.\n");
    fixture_fini(&p, &fx);
    return 0;
}
