/* The PostgreSQL backend of the store: the same semantics as LMDB for
 * several processes on one database (control-plane replicas).
 *
 * Tables (schema version in hy_schema_version, upgraded step by step at
 * open or by hy_store_migrate): hy_meta (one row: revision, horizon),
 * hy_resources (key "Type/mesh/name" in byte order, the Envelope, version
 * and origin), hy_changes (the change log by revision) and hy_counts
 * (resources per type and mesh, kept by a trigger, for list totals).
 *
 * Every write transaction first locks the one hy_meta row (SELECT ... FOR
 * UPDATE) and moves its revision before committing. That serialises the
 * writers of every process: revisions are gap-free, each commit's are
 * larger than every earlier commit's, and a reader that sees revision R
 * sees every change up to R (the next writer gets the row only after the
 * previous commit is visible). SERIALIZABLE would give the same order but
 * with serialization failures to retry on the hot row; the explicit lock
 * makes writers queue instead, in READ COMMITTED, with nothing to retry.
 *
 * Change notification across processes: each commit NOTIFYs hypha_store
 * with its revision and this handle's id; a listener thread on a second
 * connection wakes on notifications from other processes (and every
 * POLL_MS, and after reconnecting, in case one was missed), reads the
 * committed revision and calls the in-process watchers when it grew. The
 * notification is only a wake-up: consumers read the change log from the
 * revision they last saw, so nothing is lost or seen twice.
 *
 * Connection loss: calls made while the database cannot be reached fail at
 * once with HY_EUNAVAIL (the API answers 503). Only the listener thread
 * connects: its own connection with jittered exponential backoff
 * (BACKOFF_MIN_MS up to BACKOFF_MAX_MS), then the main one, so that a dead
 * server never blocks a caller (an event loop) for connect_timeout.
 * hy_store_revision and hy_store_horizon then answer the last values read.
 * libpq codes stay in this file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "store_backend.h"
#include "poison.h"

#define DEFAULT_RETENTION 100000
#define KEY_MAX 511 /* as LMDB's: a store copies both ways */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define POLL_MS 1000
#define CHANNEL "hypha_store"
#define SCHEMA_VERSION 1
#define MIGRATE_LOCK "7265727961" /* advisory lock key: one migration at a time */
#define OP_UPSERT 1
#define OP_DELETE 2

/* Schema steps: upgrades[v] takes a database from version v to v + 1, in the
 * migration's transaction. Append a step for each new version; never edit
 * one that shipped. */
static const char *const upgrades[] = {
    /* 0 -> 1 */
    "CREATE TABLE hy_meta (id int PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL,"
    " horizon bigint NOT NULL);"
    "INSERT INTO hy_meta VALUES (1, 0, 0);"
    "CREATE TABLE hy_resources (k text COLLATE \"C\" PRIMARY KEY, type text NOT NULL,"
    " mesh text NOT NULL, name text NOT NULL, version bigint NOT NULL, origin text,"
    " envelope bytea NOT NULL);"
    "CREATE INDEX hy_resources_mesh ON hy_resources (mesh) WHERE mesh <> '';"
    "CREATE TABLE hy_changes (revision bigint PRIMARY KEY, op smallint NOT NULL,"
    " type text NOT NULL, mesh text NOT NULL, name text NOT NULL, version bigint NOT NULL,"
    " origin text);"
    "CREATE TABLE hy_counts (type text NOT NULL, mesh text NOT NULL, n bigint NOT NULL,"
    " PRIMARY KEY (type, mesh));"
    "CREATE FUNCTION hy_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP = 'INSERT' THEN"
    "  INSERT INTO hy_counts VALUES (NEW.type, NEW.mesh, 1)"
    "  ON CONFLICT (type, mesh) DO UPDATE SET n = hy_counts.n + 1;"
    " ELSE"
    "  UPDATE hy_counts SET n = n - 1 WHERE type = OLD.type AND mesh = OLD.mesh;"
    " END IF; RETURN NULL; END $$;"
    "CREATE TRIGGER hy_count AFTER INSERT OR DELETE ON hy_resources"
    " FOR EACH ROW EXECUTE FUNCTION hy_count();",
};
_Static_assert(sizeof(upgrades) / sizeof(upgrades[0]) == SCHEMA_VERSION, "one step per version");

/* Prepared on every (re)connection of the main connection. */
static const struct stmt {
    const char *name, *sql;
} stmts[] = {
    {"lock", "SELECT revision, horizon FROM hy_meta WHERE id = 1 FOR UPDATE"},
    {"meta", "SELECT revision, horizon FROM hy_meta WHERE id = 1"},
    {"get", "SELECT envelope FROM hy_resources WHERE k = $1"},
    {"upsert", "INSERT INTO hy_resources (k, type, mesh, name, version, origin, envelope)"
               " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (k) DO UPDATE SET"
               " version = EXCLUDED.version, origin = EXCLUDED.origin,"
               " envelope = EXCLUDED.envelope"},
    {"del", "DELETE FROM hy_resources WHERE k = $1"},
    {"cascade", "WITH d AS (DELETE FROM hy_resources WHERE mesh = $1"
                " RETURNING k, type, name, version, origin)"
                " SELECT type, name, version, origin FROM d ORDER BY k"},
    {"change", "INSERT INTO hy_changes (revision, op, type, mesh, name, version, origin)"
               " VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    {"setrev", "UPDATE hy_meta SET revision = $1 WHERE id = 1"},
    {"compact", "WITH d AS (DELETE FROM hy_changes WHERE revision <= $1)"
                " UPDATE hy_meta SET horizon = $1 WHERE id = 1"},
    {"notify", "SELECT pg_notify('" CHANNEL "', $1)"},
    {"changes", "SELECT revision, op, type, mesh, name, version, origin FROM hy_changes"
                " WHERE revision > $1 ORDER BY revision LIMIT $2"},
    {"list", "SELECT k, envelope FROM hy_resources WHERE k > $1 AND k < $2 ORDER BY k LIMIT $3"},
    {"total", "SELECT COALESCE(SUM(n), 0)::bigint FROM hy_counts WHERE type = $1"},
    {"total_mesh",
     "SELECT COALESCE(SUM(n), 0)::bigint FROM hy_counts WHERE type = $1 AND mesh = $2"},
    {"stats", "SELECT revision, horizon, (SELECT COALESCE(SUM(n), 0)::bigint FROM hy_counts),"
              " (SELECT count(*) FROM hy_changes), pg_database_size(current_database())"
              " FROM hy_meta WHERE id = 1"},
};

struct pg_store {
    struct hy_store base;
    pthread_mutex_t mu; /* the main connection and what follows, one call at a time */
    PGconn *conn;       /* NULL when down */
    char *url;          /* as given: may hold a password, never logged */
    char *shown;        /* the URL's host, port, database and user, for logs */
    uint64_t retention;
    bool read_only;
    bool down;         /* logged as down, not yet back */
    uint64_t notified; /* highest revision the watchers were called with (under mu) */
    _Atomic uint64_t last_rev, last_horizon;
    char instance[48]; /* this handle in NOTIFY payloads: its own commits are skipped */
    /* the listener */
    pthread_t thread;
    bool thread_on;
    int wake[2]; /* to the listener: 'x' stops it, 'r' asks for a new main connection */
};

static struct pg_store *pg(struct hy_store *s)
{
    return (struct pg_store *)s;
}

/* "host=... port=... dbname=... user=..." of url, without the password. */
static char *shown_url(const char *url)
{
    char *err = NULL, buf[512] = "";
    size_t len = 0;
    PQconninfoOption *o = PQconninfoParse(url, &err);
    if (!o) {
        PQfreemem(err);
        return strdup("(unparsable PostgreSQL URL)");
    }
    static const char *const keep[] = {"host", "hostaddr", "port", "dbname", "user"};
    for (PQconninfoOption *p = o; p->keyword; p++) {
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            if (strcmp(p->keyword, keep[i]) != 0 || !p->val || !p->val[0] || len >= sizeof(buf))
                continue;
            int n = snprintf(buf + len, sizeof(buf) - len, "%s%s=%s", len ? " " : "", p->keyword,
                             p->val);
            len += n > 0 ? (size_t)n : 0;
        }
    }
    PQconninfoFree(o);
    return strdup(len ? buf : "(libpq defaults)");
}

/* Server-side limits on every session: a control plane replica stopped
 * (not killed) inside a write transaction holds the row lock every writer
 * takes; after IDLE_TX the server ends its session and the lock goes. A
 * writer waits for a lock at most LOCK_WAIT (longer than IDLE_TX, so that a
 * stopped replica's lock is gone first) and then fails with HY_EBUSY, and
 * no statement runs longer than STATEMENT_MAX: a stuck database fails
 * calls (503) instead of blocking an API writer for ever. */
#define SESSION_LIMITS                                                                             \
    "-c idle_in_transaction_session_timeout=10s -c lock_timeout=15s -c statement_timeout=60s"

/* A new connection to url, with timeouts so that a dead server fails calls
 * in seconds rather than at TCP's pace; the user's own settings win (an
 * `options` in the URL replaces SESSION_LIMITS whole). */
static PGconn *connect_db(const char *url, const char *app)
{
    const char *const keys[] = {"connect_timeout",  "keepalives_idle",  "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "options",
                                "application_name", "dbname",           NULL};
    const char *const vals[] = {"5", "10", "3", "3", "15000", SESSION_LIMITS, app, url, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

static char *first_line(const char *msg, char *buf, size_t size)
{
    snprintf(buf, size, "%s", msg && msg[0] ? msg : "unknown error");
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* ---- the main connection ----------------------------------------------- */

static void mark_down(struct pg_store *ps, const char *why)
{
    char line[256];
    if (!ps->down)
        hy_log(HY_LOG_WARN, "store",
               "postgres %s: connection lost: %s; writes fail (503) until it is back; "
               "reconnecting",
               ps->shown, first_line(why, line, sizeof(line)));
    ps->down = true;
    if (ps->conn) {
        PQfinish(ps->conn);
        ps->conn = NULL;
        if (ps->wake[1] >= 0) { /* the listener reconnects: never the caller's thread */
            ssize_t n = write(ps->wake[1], "r", 1);
            (void)n; /* a full pipe has a wake-up in it already */
        }
    }
}

static int prepare_all(PGconn *c, const char **failed_msg)
{
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        PGresult *r = PQprepare(c, stmts[i].name, stmts[i].sql, 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            *failed_msg = PQerrorMessage(c);
            return HY_ESTORE;
        }
    }
    return 0;
}

/* The main connection, if it is up; mu held. 0 or HY_EUNAVAIL at once:
 * connecting (which may block for connect_timeout) is the listener's job,
 * so that a dead database never stalls a caller's event loop. */
static int ensure_conn(struct pg_store *ps)
{
    if (ps->conn && PQstatus(ps->conn) == CONNECTION_OK)
        return 0;
    if (ps->conn)
        mark_down(ps, PQerrorMessage(ps->conn));
    return HY_EUNAVAIL;
}

/* Maps a failed result to an HY_E* code, logging what needs a human. */
static int fail(struct pg_store *ps, PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    char line[256];
    if (!msg || !msg[0])
        msg = PQerrorMessage(ps->conn);
    if (PQstatus(ps->conn) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0) {
        mark_down(ps, msg);
        return HY_EUNAVAIL;
    }
    if (strcmp(state, "53100") == 0) {
        hy_log(HY_LOG_ERROR, "store", "postgres %s: %s: the database disk is full: %s", ps->shown,
               what, first_line(msg, line, sizeof(line)));
        return HY_EFULL;
    }
    if (strcmp(state, "54000") == 0)
        return HY_ETOOBIG;
    if (strcmp(state, "55P03") == 0 ||
        strcmp(state, "57014") == 0) { /* lock or statement timeout */
        hy_log(HY_LOG_WARN, "store",
               "postgres %s: %s: %s (another session held the lock or the database is stuck); "
               "nothing written, the caller may retry",
               ps->shown, what, first_line(msg, line, sizeof(line)));
        return HY_EBUSY;
    }
    hy_log(HY_LOG_ERROR, "store", "postgres %s: %s: %s (SQLSTATE %s)", ps->shown, what,
           first_line(msg, line, sizeof(line)), state);
    return HY_ESTORE;
}

/* Statement parameters: text, except bytea (binary). */
struct params {
    int n;
    const char *v[8];
    int len[8], fmt[8];
    char num[8][24];
};

static void p_str(struct params *p, const char *s)
{
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n++] = 0;
}

static void p_u64(struct params *p, uint64_t v)
{
    snprintf(p->num[p->n], sizeof(p->num[0]), "%" PRIu64, v);
    p_str(p, p->num[p->n]);
}

static void p_bin(struct params *p, const void *b, size_t len)
{
    p->v[p->n] = b;
    p->len[p->n] = (int)len;
    p->fmt[p->n++] = 1;
}

/* Runs prepared statement name; results come in binary. *out (or the
 * code) when the status is the one wanted. */
static int run(struct pg_store *ps, const char *name, const struct params *p, PGresult **out)
{
    if (out)
        *out = NULL;
    PGresult *r = PQexecPrepared(ps->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, 1);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        if (out)
            *out = r;
        else
            PQclear(r);
        return 0;
    }
    int rc = fail(ps, r, name);
    PQclear(r);
    return rc;
}

static int exec_simple(struct pg_store *ps, const char *sql)
{
    PGresult *r = PQexec(ps->conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail(ps, r, sql);
    PQclear(r);
    return rc;
}

static void rollback(struct pg_store *ps)
{
    if (ps->conn && PQstatus(ps->conn) == CONNECTION_OK &&
        PQtransactionStatus(ps->conn) != PQTRANS_IDLE)
        PQclear(PQexec(ps->conn, "ROLLBACK"));
}

/* An integer column of a binary result (int2, int4 or int8); NULL is 0. */
static uint64_t col_u64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < len && i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

/* A text column, "" when NULL (libpq ends every value with a NUL). */
static const char *col_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

static int make_key(const char *type, const char *mesh, const char *name, char buf[KEY_MAX + 1])
{
    int n = snprintf(buf, KEY_MAX + 1, "%s/%s/%s", type, mesh, name ? name : "");
    return n < 0 || n > KEY_MAX ? HY_ETOOBIG : 0;
}

static int decode(struct pg_store *ps, const PGresult *r, int row, int col, const char *key,
                  struct hy_resource **out)
{
    int rc = hy_resource_unpack((const uint8_t *)PQgetvalue(r, row, col),
                                (size_t)PQgetlength(r, row, col), out);
    if (rc == HY_EINVAL) {
        hy_log(HY_LOG_ERROR, "store", "postgres %s: corrupt resource at key %s", ps->shown, key);
        return HY_ESTORE;
    }
    return rc;
}

/* *old = the stored resource at key, or NULL when there is none. */
static int load(struct pg_store *ps, const char *key, struct hy_resource **old)
{
    struct params p = {0};
    PGresult *r;
    *old = NULL;
    p_str(&p, key);
    int rc = run(ps, "get", &p, &r);
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        rc = decode(ps, r, 0, 0, key, old);
    PQclear(r);
    return rc;
}

/* ---- writes ------------------------------------------------------------ */

static int append_change(struct pg_store *ps, uint64_t rev, int op, const char *type,
                         const char *mesh, const char *name, uint64_t version, const char *origin)
{
    struct params p = {0};
    p_u64(&p, rev);
    p_u64(&p, (uint64_t)op);
    p_str(&p, type);
    p_str(&p, mesh);
    p_str(&p, name);
    p_u64(&p, version);
    p_str(&p, origin && origin[0] ? origin : NULL);
    return run(ps, "change", &p, NULL);
}

static int apply_put(struct pg_store *ps, struct hy_store_write *w, uint64_t *rev)
{
    const struct hy_resource *r = w->r;
    const char *mesh = hy_store_key_mesh(r->type, r->meta->mesh);
    struct hy_resource *old;
    char key[KEY_MAX + 1];
    int rc = make_key(r->type->name, mesh, r->meta->name, key);
    if (rc || (rc = load(ps, key, &old)))
        return rc;
    struct hy_store_stamp st;
    if ((rc = hy_store_stamp_put(w, old, mesh, *rev, &st)) != 0) {
        rc = rc == 1 ? 0 : rc;
        goto out_free_old;
    }
    size_t len;
    uint8_t *env = hy_resource_pack(&st.res, &len);
    if (!env) {
        rc = HY_ENOMEM;
        goto out_free_now;
    }
    struct params p = {0};
    p_str(&p, key);
    p_str(&p, r->type->name);
    p_str(&p, mesh);
    p_str(&p, r->meta->name);
    p_u64(&p, st.res.version);
    p_str(&p, r->origin && r->origin[0] ? r->origin : NULL);
    p_bin(&p, env, len);
    if ((rc = run(ps, "upsert", &p, NULL)) ||
        (rc = append_change(ps, ++*rev, OP_UPSERT, r->type->name, mesh, r->meta->name,
                            st.res.version, r->origin)))
        goto out_free_env;
    w->result = old ? HY_STORE_UPDATED : HY_STORE_CREATED;
    w->version = st.res.version;
    w->revision = *rev;
out_free_env:
    free(env);
out_free_now:
    hy_store_stamp_fini(&st);
out_free_old:
    hy_resource_free(old);
    return rc;
}

/* Deleting a Mesh takes every resource inside it along, in key order. */
static int cascade(struct pg_store *ps, const char *mesh, uint64_t *rev)
{
    struct params p = {0};
    PGresult *r;
    p_str(&p, mesh);
    int rc = run(ps, "cascade", &p, &r);
    if (rc)
        return rc;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        rc = append_change(ps, ++*rev, OP_DELETE, col_str(r, i, 0), mesh, col_str(r, i, 1),
                           col_u64(r, i, 2), col_str(r, i, 3));
    PQclear(r);
    return rc;
}

static int apply_delete(struct pg_store *ps, struct hy_store_write *w, uint64_t *rev)
{
    const struct hy_resource *r = w->r;
    const char *mesh = hy_store_key_mesh(r->type, r->meta->mesh);
    struct hy_resource *old;
    char key[KEY_MAX + 1];
    int rc = make_key(r->type->name, mesh, r->meta->name, key);
    if (rc || (rc = load(ps, key, &old)))
        return rc;
    if (!old) {
        if (!(w->flags & HY_STORE_IF_EXISTS))
            return HY_ENOTFOUND;
        w->result = HY_STORE_UNCHANGED;
        w->revision = *rev;
        return 0;
    }
    struct params p = {0};
    p_str(&p, key);
    if (!hy_store_cas_ok(old, w->expect_version))
        rc = HY_ECONFLICT;
    else if (strcmp(r->type->name, "Mesh") == 0)
        rc = cascade(ps, r->meta->name, rev);
    if (rc || (rc = run(ps, "del", &p, NULL)) ||
        (rc = append_change(ps, ++*rev, OP_DELETE, r->type->name, mesh, r->meta->name, old->version,
                            old->origin)))
        goto out_free_old;
    w->result = HY_STORE_DELETED;
    w->version = old->version;
    w->revision = *rev;
out_free_old:
    hy_resource_free(old);
    return rc;
}

/* Locks the meta row for this transaction: *rev and *horizon as committed. */
static int lock_meta(struct pg_store *ps, uint64_t *rev, uint64_t *horizon)
{
    PGresult *r;
    int rc = run(ps, "lock", NULL, &r);
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        hy_log(HY_LOG_ERROR, "store", "postgres %s: the hy_meta row is missing", ps->shown);
        return HY_ESTORE;
    }
    *rev = col_u64(r, 0, 0);
    *horizon = col_u64(r, 0, 1);
    PQclear(r);
    return 0;
}

static int compact_to(struct pg_store *ps, uint64_t upto)
{
    struct params p = {0};
    p_u64(&p, upto);
    return run(ps, "compact", &p, NULL);
}

/* Moves the revision, keeps at most `retention` change records and wakes
 * the other processes (delivered at commit, dropped on rollback). */
static int finish_txn(struct pg_store *ps, uint64_t rev, uint64_t horizon)
{
    struct params p = {0}, n = {0};
    char payload[96];
    p_u64(&p, rev);
    int rc = run(ps, "setrev", &p, NULL);
    if (rc == 0 && rev - horizon > ps->retention)
        rc = compact_to(ps, rev - ps->retention);
    snprintf(payload, sizeof(payload), "%s %" PRIu64, ps->instance, rev);
    p_str(&n, payload);
    return rc ? rc : run(ps, "notify", &n, NULL);
}

static void note_meta(struct pg_store *ps, uint64_t rev, uint64_t horizon)
{
    atomic_store(&ps->last_rev, rev);
    atomic_store(&ps->last_horizon, horizon);
}

static int pg_apply(struct hy_store *s, struct hy_store_write *w, size_t n, size_t *failed,
                    uint64_t expect_revision, uint64_t *committed)
{
    struct pg_store *ps = pg(s);
    uint64_t rev0 = 0, rev, horizon = 0;
    size_t i = 0;
    int rc;
    *committed = 0;
    if (ps->read_only)
        return -EROFS;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&ps->mu);
    if ((rc = ensure_conn(ps)) || (rc = exec_simple(ps, "BEGIN")))
        goto out_failed;
    if ((rc = lock_meta(ps, &rev0, &horizon)))
        goto out_abort;
    if (expect_revision != HY_VERSION_ANY && rev0 != expect_revision) {
        i = n; /* the fence: another write came first */
        rc = HY_ECONFLICT;
        goto out_abort;
    }
    rev = rev0;
    for (; i < n; i++) {
        rc = w[i].op == HY_STORE_PUT ? apply_put(ps, &w[i], &rev) : apply_delete(ps, &w[i], &rev);
        if (rc)
            goto out_abort;
    }
    if (rev != rev0 && (rc = finish_txn(ps, rev, horizon)))
        goto out_abort;
    if ((rc = exec_simple(ps, "COMMIT")))
        goto out_failed; /* cut off: it may or may not have committed */
    if (rev != rev0) {
        note_meta(ps, rev, rev - horizon > ps->retention ? rev - ps->retention : horizon);
        if (rev > ps->notified)
            ps->notified = rev; /* store.c calls the watchers: the listener must not */
        *committed = rev;
    }
    pthread_mutex_unlock(&ps->mu);
    return 0;
out_abort:
    rollback(ps);
out_failed:
    pthread_mutex_unlock(&ps->mu);
    if (failed)
        *failed = i;
    if (rc == HY_EUNAVAIL)
        hy_log(HY_LOG_WARN, "store", "postgres %s: write refused: the database is unreachable",
               ps->shown);
    return rc;
}

static int pg_compact(struct hy_store *s, uint64_t upto)
{
    struct pg_store *ps = pg(s);
    uint64_t rev, horizon;
    int rc;
    if (ps->read_only)
        return -EROFS;
    pthread_mutex_lock(&ps->mu);
    if ((rc = ensure_conn(ps)) || (rc = exec_simple(ps, "BEGIN")))
        goto out_unlock;
    if ((rc = lock_meta(ps, &rev, &horizon)))
        goto out_abort;
    if (upto > rev)
        upto = rev;
    if (upto <= horizon)
        goto out_abort; /* nothing to drop; rc is 0 */
    if ((rc = compact_to(ps, upto)) || (rc = exec_simple(ps, "COMMIT")))
        goto out_abort;
    note_meta(ps, rev, upto);
    goto out_unlock;
out_abort:
    rollback(ps);
out_unlock:
    pthread_mutex_unlock(&ps->mu);
    return rc;
}

static int pg_skip_to(struct hy_store *s, uint64_t to)
{
    struct pg_store *ps = pg(s);
    struct params p = {0};
    uint64_t rev, horizon;
    int rc;
    if (ps->read_only)
        return -EROFS;
    pthread_mutex_lock(&ps->mu);
    if ((rc = ensure_conn(ps)) || (rc = exec_simple(ps, "BEGIN")))
        goto out_unlock;
    if ((rc = lock_meta(ps, &rev, &horizon)))
        goto out_abort;
    if (to <= rev)
        goto out_abort; /* rc is 0 */
    p_u64(&p, to);
    if ((rc = run(ps, "setrev", &p, NULL)) || (rc = compact_to(ps, to)) ||
        (rc = exec_simple(ps, "COMMIT")))
        goto out_abort;
    note_meta(ps, to, to);
    goto out_unlock;
out_abort:
    rollback(ps);
out_unlock:
    pthread_mutex_unlock(&ps->mu);
    return rc;
}

/* ---- reads ------------------------------------------------------------- */

static int pg_get(struct hy_store *s, const struct hy_rtype *t, const char *mesh, const char *name,
                  struct hy_resource **out)
{
    struct pg_store *ps = pg(s);
    struct hy_resource *r = NULL;
    char key[KEY_MAX + 1];
    int rc = make_key(t->name, mesh, name, key);
    if (rc)
        return rc;
    pthread_mutex_lock(&ps->mu);
    if ((rc = ensure_conn(ps)) == 0)
        rc = load(ps, key, &r);
    pthread_mutex_unlock(&ps->mu);
    if (rc == 0 && !r)
        rc = HY_ENOTFOUND;
    if (rc == 0)
        *out = r;
    return rc;
}

static int list_total(struct pg_store *ps, const struct hy_rtype *t, const char *mesh,
                      size_t *total)
{
    struct params p = {0};
    PGresult *r;
    p_str(&p, t->name);
    if (mesh)
        p_str(&p, mesh);
    int rc = run(ps, mesh ? "total_mesh" : "total", &p, &r);
    if (rc)
        return rc;
    *total = (size_t)col_u64(r, 0, 0);
    PQclear(r);
    return 0;
}

/* The page after `after` (or from the start) under prefix, peeking one
 * further to know whether there is a next page. */
static int list_txn(struct pg_store *ps, const struct hy_rtype *t, const char *mesh,
                    const char *prefix, const char *after, size_t limit, struct hy_store_page *out)
{
    char upper[KEY_MAX + 2];
    struct params p = {0};
    PGresult *r;
    int rc = list_total(ps, t, mesh, &out->total);
    if (rc)
        return rc;
    /* every key under prefix ("…/") sorts before prefix with '/' + 1 */
    snprintf(upper, sizeof(upper), "%s", prefix);
    upper[strlen(upper) - 1] = '/' + 1;
    /* the prefix is never a key (names are not empty); `after` may be */
    p_str(&p, after && strcmp(after, prefix) > 0 ? after : prefix);
    p_str(&p, upper);
    if (limit)
        p_u64(&p, (uint64_t)limit + 1);
    else
        p_str(&p, NULL);
    if ((rc = run(ps, "list", &p, &r)))
        return rc;
    int rows = PQntuples(r);
    size_t keep = limit && (size_t)rows > limit ? limit : (size_t)rows;
    if (keep && !(out->items = calloc(keep, sizeof(*out->items))))
        rc = HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < keep; i++) {
        if ((rc = decode(ps, r, (int)i, 1, col_str(r, (int)i, 0), &out->items[i])) == 0)
            out->n++;
    }
    if (rc == 0 && keep < (size_t)rows && !(out->next = strdup(col_str(r, (int)keep - 1, 0))))
        rc = HY_ENOMEM;
    PQclear(r);
    return rc;
}

static int pg_list(struct hy_store *s, const struct hy_rtype *t, const char *mesh,
                   const char *after, size_t limit, struct hy_store_page *out)
{
    struct pg_store *ps = pg(s);
    char prefix[KEY_MAX + 1];
    int rc, n = mesh ? snprintf(prefix, sizeof(prefix), "%s/%s/", t->name, mesh)
                     : snprintf(prefix, sizeof(prefix), "%s/", t->name);
    if (n < 0 || n >= (int)sizeof(prefix))
        return HY_ETOOBIG;
    pthread_mutex_lock(&ps->mu);
    /* one snapshot: the total agrees with the page */
    if ((rc = ensure_conn(ps)) == 0 &&
        (rc = exec_simple(ps, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) == 0) {
        rc = list_txn(ps, t, mesh, prefix, after, limit, out);
        if (rc == 0)
            rc = exec_simple(ps, "COMMIT");
        else
            rollback(ps);
    }
    pthread_mutex_unlock(&ps->mu);
    if (rc)
        hy_store_page_fini(out);
    return rc;
}

static int read_meta(struct pg_store *ps, uint64_t *rev, uint64_t *horizon)
{
    PGresult *r;
    int rc = run(ps, "meta", NULL, &r);
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return HY_ESTORE;
    }
    *rev = col_u64(r, 0, 0);
    *horizon = col_u64(r, 0, 1);
    PQclear(r);
    note_meta(ps, *rev, *horizon);
    return 0;
}

static int changes_txn(struct pg_store *ps, uint64_t since, size_t max,
                       struct hy_store_changes *out)
{
    uint64_t rev, horizon;
    struct params p = {0};
    PGresult *r;
    int rc = read_meta(ps, &rev, &horizon);
    if (rc)
        return rc;
    if (since < horizon)
        return HY_ETOOOLD;
    uint64_t avail = rev > since ? rev - since : 0;
    size_t want = max && avail > max ? max : (size_t)avail;
    out->to = since > rev ? since : rev;
    if (want == 0)
        return 0;
    p_u64(&p, since);
    p_u64(&p, want);
    if ((rc = run(ps, "changes", &p, &r)))
        return rc;
    int rows = PQntuples(r);
    if (rows && !(out->v = calloc((size_t)rows, sizeof(*out->v))))
        rc = HY_ENOMEM;
    for (int i = 0; rc == 0 && i < rows; i++) {
        struct hy_store_change *c = &out->v[out->n++];
        c->revision = col_u64(r, i, 0);
        c->op = col_u64(r, i, 1) == OP_DELETE ? HY_STORE_DELETE : HY_STORE_PUT;
        c->version = col_u64(r, i, 5);
        c->type = strdup(col_str(r, i, 2));
        c->mesh = strdup(col_str(r, i, 3));
        c->name = strdup(col_str(r, i, 4));
        c->origin = strdup(col_str(r, i, 6));
        if (!c->type || !c->mesh || !c->name || !c->origin)
            rc = HY_ENOMEM;
    }
    PQclear(r);
    if (rc == 0 && out->n < avail) /* stopped at max: this read covers up to the last one */
        out->to = out->n ? out->v[out->n - 1].revision : since;
    return rc;
}

static int pg_changes(struct hy_store *s, uint64_t since, size_t max, struct hy_store_changes *out)
{
    struct pg_store *ps = pg(s);
    int rc;
    pthread_mutex_lock(&ps->mu);
    if ((rc = ensure_conn(ps)) == 0 &&
        (rc = exec_simple(ps, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) == 0) {
        rc = changes_txn(ps, since, max, out);
        if (rc == 0)
            rc = exec_simple(ps, "COMMIT");
        else
            rollback(ps);
    }
    pthread_mutex_unlock(&ps->mu);
    if (rc)
        hy_store_changes_fini(out);
    return rc;
}

/* The committed revision and horizon, or the last ones read when the
 * database cannot be reached. */
static void meta_or_cached(struct pg_store *ps)
{
    uint64_t rev, horizon;
    pthread_mutex_lock(&ps->mu);
    if (ensure_conn(ps) == 0)
        read_meta(ps, &rev, &horizon);
    pthread_mutex_unlock(&ps->mu);
}

static uint64_t pg_revision(struct hy_store *s)
{
    meta_or_cached(pg(s));
    return atomic_load(&pg(s)->last_rev);
}

static uint64_t pg_horizon(struct hy_store *s)
{
    meta_or_cached(pg(s));
    return atomic_load(&pg(s)->last_horizon);
}

static int pg_stats(struct hy_store *s, struct hy_store_stats *out)
{
    struct pg_store *ps = pg(s);
    PGresult *r;
    int rc;
    pthread_mutex_lock(&ps->mu);
    if ((rc = ensure_conn(ps)) == 0 && (rc = run(ps, "stats", NULL, &r)) == 0) {
        if (PQntuples(r) == 1) {
            out->revision = col_u64(r, 0, 0);
            out->horizon = col_u64(r, 0, 1);
            out->resources = col_u64(r, 0, 2);
            out->log_records = col_u64(r, 0, 3);
            out->used_bytes = (size_t)col_u64(r, 0, 4);
            out->map_size = 0; /* no fixed map: the database grows */
            note_meta(ps, out->revision, out->horizon);
        } else {
            rc = HY_ESTORE;
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&ps->mu);
    return rc;
}

/* ---- the listener: commits of other processes --------------------------- */

/* Reads the committed revision on c and calls the watchers when it grew.
 * The query runs without mu: mu is what every caller's thread (an event
 * loop) waits on, and this connection has no bound on a server that stalls
 * (no keepalive on a unix socket). Only the comparison is ordered with this
 * process's own commits, which move `notified` under mu with their COMMIT:
 * an older revision read here then calls nothing. */
static void listener_check(struct pg_store *ps, PGconn *c)
{
    uint64_t rev = 0, call = 0;
    PGresult *r = PQexec(c, "SELECT revision FROM hy_meta WHERE id = 1");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok)
        rev = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (!ok)
        return;
    pthread_mutex_lock(&ps->mu);
    if (rev > ps->notified)
        call = ps->notified = rev;
    if (rev > atomic_load(&ps->last_rev))
        atomic_store(&ps->last_rev, rev);
    pthread_mutex_unlock(&ps->mu);
    if (call)
        hy_store_watchers_notify(&ps->base, call);
}

/* Waits up to ms for fd or a wake-up; true when asked to stop. */
static bool listener_wait(struct pg_store *ps, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = ps->wake[0], .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    char buf[64];
    int n = poll(p, fd >= 0 ? 2 : 1, ms);
    if (n <= 0 || !(p[0].revents & POLLIN))
        return false;
    ssize_t got = read(ps->wake[0], buf, sizeof(buf));
    return got > 0 && memchr(buf, 'x', (size_t)got);
}

/* Replaces a lost main connection (the listener's own is up, so the server
 * is reachable); mu is not held while connecting. */
static void main_reconnect(struct pg_store *ps)
{
    const char *msg = NULL;
    char line[256];
    pthread_mutex_lock(&ps->mu);
    bool need = !ps->conn;
    pthread_mutex_unlock(&ps->mu);
    if (!need)
        return;
    PGconn *c = connect_db(ps->url, "hypha");
    if (PQstatus(c) != CONNECTION_OK || prepare_all(c, &msg)) {
        hy_log(HY_LOG_DEBUG, "store", "postgres %s: reconnect failed: %s", ps->shown,
               first_line(msg ? msg : PQerrorMessage(c), line, sizeof(line)));
        PQfinish(c);
        return;
    }
    pthread_mutex_lock(&ps->mu);
    if (!ps->conn) {
        ps->conn = c;
        c = NULL;
        hy_log(HY_LOG_INFO, "store", "postgres %s: connection back", ps->shown);
        ps->down = false;
    }
    pthread_mutex_unlock(&ps->mu);
    if (c)
        PQfinish(c);
}

static void *listener(void *arg)
{
    struct pg_store *ps = arg;
    PGconn *c = NULL;
    unsigned backoff = 0;
    size_t own = strlen(ps->instance);
    for (;;) {
        if (!c || PQstatus(c) != CONNECTION_OK) {
            if (c)
                PQfinish(c);
            c = connect_db(ps->url, "hypha-listener");
            PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, "LISTEN " CHANNEL) : NULL;
            bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (!ok) {
                PQfinish(c);
                c = NULL;
                backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
                if (backoff > BACKOFF_MAX_MS)
                    backoff = BACKOFF_MAX_MS;
                if (listener_wait(ps, -1, (int)(backoff / 2 + (unsigned)rand() % (backoff / 2))))
                    break;
                continue;
            }
            backoff = 0;
            listener_check(ps, c); /* whatever was committed while not listening */
        }
        main_reconnect(ps); /* at most once per wake-up or POLL_MS */
        if (listener_wait(ps, PQsocket(c), POLL_MS))
            break;
        bool other = true; /* a timeout polls too: a safety net, cheap */
        if (!PQconsumeInput(c))
            continue; /* reconnects above */
        PGnotify *nf;
        int seen = 0;
        while ((nf = PQnotifies(c))) {
            if (seen++ == 0)
                other = false;
            if (strncmp(nf->extra, ps->instance, own) != 0 || nf->extra[own] != ' ')
                other = true;
            PQfreemem(nf);
        }
        if (other)
            listener_check(ps, c);
    }
    if (c)
        PQfinish(c);
    return NULL;
}

int hy_store_pg_start(struct hy_store *s)
{
    struct pg_store *ps = pg(s);
    if (pipe2(ps->wake, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    int rc = pthread_create(&ps->thread, NULL, listener, ps);
    if (rc) {
        close(ps->wake[0]);
        close(ps->wake[1]);
        ps->wake[0] = ps->wake[1] = -1;
        return -rc;
    }
    ps->thread_on = true;
    return 0;
}

static void pg_stop(struct hy_store *s)
{
    struct pg_store *ps = pg(s);
    if (!ps->thread_on)
        return;
    ssize_t n = write(ps->wake[1], "x", 1);
    (void)n;
    pthread_join(ps->thread, NULL);
    ps->thread_on = false;
    close(ps->wake[0]);
    close(ps->wake[1]);
    ps->wake[0] = ps->wake[1] = -1;
}

/* ---- schema ------------------------------------------------------------ */

/* *version = the schema version of the database on c (0: none). */
static int schema_version(PGconn *c, int *version, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('hy_schema_version') IS NOT NULL");
    int rc = 0;
    *version = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        first_line(PQerrorMessage(c), err, errlen);
        PQclear(r);
        return HY_ESTORE;
    }
    bool present = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!present)
        return 0;
    r = PQexec(c, "SELECT version FROM hy_schema_version WHERE id = 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        first_line(PQerrorMessage(c), err, errlen);
        rc = HY_ESTORE;
    } else if (PQntuples(r) == 1) {
        *version = atoi(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

static int simple(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                 ? 0
                 : HY_ESTORE;
    if (rc)
        first_line(PQerrorMessage(c), err, errlen);
    PQclear(r);
    return rc;
}

/* Creates or upgrades the schema in one transaction, under an advisory
 * lock so that replicas starting together migrate once. */
static int migrate(PGconn *c, const char *shown, int *from, int *to)
{
    char err[256] = "", sql[160];
    int v = 0, rc;
    if ((rc = simple(c, "BEGIN", err, sizeof(err))) ||
        (rc = simple(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", err, sizeof(err))) ||
        (rc = simple(c,
                     "CREATE TABLE IF NOT EXISTS hy_schema_version (id int PRIMARY KEY CHECK "
                     "(id = 1), version int NOT NULL)",
                     err, sizeof(err))) ||
        (rc = schema_version(c, &v, err, sizeof(err))))
        goto out_abort;
    *from = *to = v;
    if (v > SCHEMA_VERSION) {
        hy_log(HY_LOG_ERROR, "store",
               "postgres %s: the database has schema %d, newer than this Hypha knows (%d); run "
               "the Hypha version that wrote it",
               shown, v, SCHEMA_VERSION);
        rc = HY_ESTORE;
        goto out_abort_quiet;
    }
    for (; v < SCHEMA_VERSION; v++) {
        if ((rc = simple(c, upgrades[v], err, sizeof(err))))
            goto out_abort;
        hy_log(HY_LOG_INFO, "store", "postgres %s: schema upgraded from version %d to %d", shown, v,
               v + 1);
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO hy_schema_version VALUES (1, %d) ON CONFLICT (id) DO UPDATE SET "
             "version = %d",
             v, v);
    if ((rc = simple(c, sql, err, sizeof(err))) || (rc = simple(c, "COMMIT", err, sizeof(err))))
        goto out_abort;
    *to = v;
    return 0;
out_abort:
    hy_log(HY_LOG_ERROR, "store", "postgres %s: schema migration failed: %s", shown, err);
out_abort_quiet:
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* The schema must be the current one when this process does not migrate. */
static int check_schema(PGconn *c, const char *shown)
{
    char err[256] = "";
    int v;
    if (schema_version(c, &v, err, sizeof(err))) {
        hy_log(HY_LOG_ERROR, "store", "postgres %s: cannot read the schema version: %s", shown,
               err);
        return HY_ESTORE;
    }
    if (v == SCHEMA_VERSION)
        return 0;
    hy_log(HY_LOG_ERROR, "store",
           v == 0 ? "postgres %s: no Hypha store in this database (schema %d, want %d): run "
                    "'hypha-global migrate' or start without --no-migrate"
           : v < SCHEMA_VERSION ? "postgres %s: the schema is version %d, older than this "
                                  "Hypha's %d: run 'hypha-global migrate'"
                                : "postgres %s: the database has schema %d, newer than this "
                                  "Hypha knows (%d); run the Hypha version that wrote it",
           shown, v, SCHEMA_VERSION);
    return HY_ESTORE;
}

/* A first connection: HY_EUNAVAIL (logged) when the server cannot be
 * reached. */
static int open_conn(const char *url, const char *shown, PGconn **out)
{
    char line[256];
    PGconn *c = connect_db(url, "hypha");
    if (PQstatus(c) != CONNECTION_OK) {
        hy_log(HY_LOG_ERROR, "store", "postgres %s: cannot connect: %s", shown,
               first_line(PQerrorMessage(c), line, sizeof(line)));
        PQfinish(c);
        return HY_EUNAVAIL;
    }
    /* notices (e.g. "relation exists, skipping") are not ours to print */
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    *out = c;
    return 0;
}

int hy_store_pg_migrate(const struct hy_store_config *cfg, int *from, int *to)
{
    int f = 0, t = 0, rc;
    PGconn *c;
    if (!cfg->url || !cfg->url[0])
        return HY_EINVAL;
    char *shown = shown_url(cfg->url);
    if (!shown)
        return HY_ENOMEM;
    if ((rc = open_conn(cfg->url, shown, &c)) == 0) {
        rc = migrate(c, shown, &f, &t);
        PQfinish(c);
    }
    free(shown);
    if (from)
        *from = f;
    if (to)
        *to = t;
    return rc;
}

/* ---- leader leases ---------------------------------------------------- */

/* A session-level advisory lock (pg_try_advisory_lock) held on a
 * connection of the lease's own, by a thread of its own. Why a lock and
 * not a lease row with an expiry: the database frees the lock with the
 * connection, so a dead holder (kill -9, a lost machine whose socket the
 * server sees close) hands over at once, with no clock and no renewal
 * that a stalled holder could miss while believing it still leads. The
 * thread sleeps in poll() on the lock connection's socket, so a server
 * that goes away (restart, terminate) wakes it at once and it steps down
 * before doing anything else; an idle holder also checks the connection
 * every LEASE_CHECK_MS (keepalives and tcp_user_timeout bound a silent
 * network to seconds, well before a server's own TCP keepalive would free
 * the lock). */

#define LEASE_TRY_MS 500    /* a follower tries the lock this often */
#define LEASE_CHECK_MS 1000 /* a holder checks its connection this often */
#define LEASE_CLASS 0x4879  /* advisory lock namespace ("Hy"): (class, hash of the name) */

struct pg_lease {
    struct pg_store *ps;
    struct hy_store_lease *l;
    pthread_t thread;
    int wake[2]; /* 'x' stops the thread */
    char key[16];
};

static uint32_t lease_hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* Waits up to ms for fd (if >= 0) or the stop byte: -1 stop, 1 fd ready, 0 timeout. */
static int lease_wait(struct pg_lease *pl, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = pl->wake[0], .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int n = poll(p, fd >= 0 ? 2 : 1, ms);
    if (n > 0 && (p[0].revents & POLLIN))
        return -1;
    return n > 0 && fd >= 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP)) ? 1 : 0;
}

/* Drops the lock connection, stepping down first. */
static void lease_drop(struct pg_lease *pl, PGconn **c, const char *why)
{
    char line[200];
    hy_store_lease_set(pl->l, false, why ? first_line(why, line, sizeof(line)) : NULL);
    if (*c)
        PQfinish(*c);
    *c = NULL;
}

/* The connection is still good: consumes what the server sent (a FATAL
 * termination shows here) and, when asked, makes a round trip. */
static bool lease_alive(PGconn *c, bool probe)
{
    if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK)
        return false;
    PGnotify *nf;
    while ((nf = PQnotifies(c)))
        PQfreemem(nf);
    if (!probe)
        return true;
    PGresult *r = PQexec(c, "SELECT 1");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok && PQstatus(c) == CONNECTION_OK;
}

static void *lease_thread(void *arg)
{
    struct pg_lease *pl = arg;
    struct pg_store *ps = pl->ps;
    PGconn *c = NULL;
    unsigned backoff = 0;
    char cls[16];
    snprintf(cls, sizeof(cls), "%d", LEASE_CLASS);
    for (;;) {
        if (!c) {
            c = connect_db(ps->url, "hypha-lease");
            if (PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = NULL;
                backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
                if (backoff > BACKOFF_MAX_MS)
                    backoff = BACKOFF_MAX_MS;
                if (lease_wait(pl, -1, (int)(backoff / 2 + (unsigned)rand() % (backoff / 2))) < 0)
                    break;
                continue;
            }
            backoff = 0;
        }
        if (!hy_store_lease_held(pl->l)) {
            const char *v[2] = {cls, pl->key};
            PGresult *r = PQexecParams(c, "SELECT pg_try_advisory_lock($1::int, $2::int)", 2, NULL,
                                       v, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                PQclear(r);
                lease_drop(pl, &c, PQerrorMessage(c));
                continue;
            }
            if (PQgetvalue(r, 0, 0)[0] == 't')
                hy_store_lease_set(pl->l, true, NULL);
            PQclear(r);
        }
        bool held = hy_store_lease_held(pl->l);
        int w = lease_wait(pl, PQsocket(c), held ? LEASE_CHECK_MS : LEASE_TRY_MS);
        if (w < 0)
            break;
        /* readable: the server spoke (a termination) or closed; timeout:
         * a holder makes sure its connection still stands */
        if (!lease_alive(c, w == 0 && held))
            lease_drop(pl, &c, PQerrorMessage(c)[0] ? PQerrorMessage(c) : "connection lost");
    }
    /* stepping down before the connection (and with it the lock) goes */
    if (hy_store_lease_held(pl->l))
        hy_store_lease_set(pl->l, false, "released");
    if (c)
        PQfinish(c);
    return NULL;
}

static void pg_lease_close(struct hy_store_lease *l)
{
    struct pg_lease *pl = l->backend;
    if (!pl)
        return;
    ssize_t n = write(pl->wake[1], "x", 1);
    (void)n;
    pthread_join(pl->thread, NULL);
    close(pl->wake[0]);
    close(pl->wake[1]);
    free(pl);
    l->backend = NULL;
}

static int pg_lease_open(struct hy_store *s, struct hy_store_lease *l)
{
    struct pg_lease *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return HY_ENOMEM;
    pl->ps = pg(s);
    pl->l = l;
    snprintf(pl->key, sizeof(pl->key), "%d", (int32_t)lease_hash(l->name));
    if (pipe2(pl->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        int rc = -errno;
        free(pl);
        return rc;
    }
    int rc = pthread_create(&pl->thread, NULL, lease_thread, pl);
    if (rc) {
        close(pl->wake[0]);
        close(pl->wake[1]);
        free(pl);
        return -rc;
    }
    l->backend = pl;
    l->close = pg_lease_close;
    return 0;
}

/* ---- open and close ---------------------------------------------------- */

static void pg_close(struct hy_store *s)
{
    struct pg_store *ps = pg(s);
    pg_stop(s);
    if (ps->conn)
        PQfinish(ps->conn);
    pthread_mutex_destroy(&ps->mu);
    free(ps->url);
    free(ps->shown);
    free(ps);
}

static const struct hy_store_ops pg_ops = {
    .name = "postgres",
    .stop = pg_stop,
    .close = pg_close,
    .get = pg_get,
    .apply = pg_apply,
    .list = pg_list,
    .changes = pg_changes,
    .revision = pg_revision,
    .horizon = pg_horizon,
    .compact = pg_compact,
    .skip_to = pg_skip_to,
    .stats = pg_stats,
    .lease_open = pg_lease_open,
};

int hy_store_pg_open(const struct hy_store_config *cfg, struct hy_store **out)
{
    struct pg_store *ps;
    const char *msg = NULL;
    char line[256];
    int from, to, rc;
    if (!cfg->url || !cfg->url[0]) {
        hy_log(HY_LOG_ERROR, "store", "the PostgreSQL store needs a URL (--store-postgres-url)");
        return HY_EINVAL;
    }
    if (!(ps = calloc(1, sizeof(*ps))))
        return HY_ENOMEM;
    ps->wake[0] = ps->wake[1] = -1;
    if ((rc = -pthread_mutex_init(&ps->mu, NULL)) < 0) {
        free(ps);
        return rc;
    }
    ps->base.ops = &pg_ops;
    ps->retention = cfg->log_retention ? cfg->log_retention : DEFAULT_RETENTION;
    ps->read_only = cfg->read_only;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(ps->instance, sizeof(ps->instance), "%d-%lx-%lx", (int)getpid(),
             (unsigned long)(uintptr_t)ps, (unsigned long)ts.tv_nsec);
    if (!(ps->url = strdup(cfg->url)) || !(ps->shown = shown_url(cfg->url))) {
        rc = HY_ENOMEM;
        goto out_close;
    }
    if ((rc = open_conn(ps->url, ps->shown, &ps->conn)))
        goto out_close;
    if (cfg->read_only || cfg->no_migrate)
        rc = check_schema(ps->conn, ps->shown);
    else
        rc = migrate(ps->conn, ps->shown, &from, &to);
    if (rc)
        goto out_close;
    if (prepare_all(ps->conn, &msg)) {
        hy_log(HY_LOG_ERROR, "store", "postgres %s: cannot prepare statements: %s", ps->shown,
               first_line(msg, line, sizeof(line)));
        rc = HY_ESTORE;
        goto out_close;
    }
    uint64_t rev, horizon;
    if ((rc = read_meta(ps, &rev, &horizon)))
        goto out_close;
    ps->notified = rev;
    hy_log(HY_LOG_INFO, "store", "postgres %s: open at revision %" PRIu64 "%s", ps->shown, rev,
           ps->read_only ? " (read-only)" : "");
    *out = &ps->base;
    return 0;
out_close:
    pg_close(&ps->base);
    return rc;
}
