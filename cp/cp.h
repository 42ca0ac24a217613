/* What the global and zone control planes share: the data directory (LMDB
 * store, admin token), process and API metrics, the HTTP API listeners with
 * the admin-token rule (decided on the headers, before the body: always on
 * HTTPS, for non-loopback clients on plain HTTP unless localhost is not
 * trusted), and the router that puts /metrics and the binary's own paths in
 * front of the resource API. */
#ifndef HY_CP_H
#define HY_CP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cp_api.h"
#include "config.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "runner.h"
#include "store.h"

/* Options both control planes take (each binary's table points at these). */
struct hy_cp_cfg {
    char *data_dir;
    struct hy_addr api_address;     /* plain HTTP, loopback by default */
    struct hy_addr api_tls_address; /* HTTPS, only with a certificate */
    char *api_tls_cert;
    char *api_tls_key;
    uint64_t max_body;        /* bytes */
    bool localhost_is_admin;  /* plain HTTP from loopback needs no token (never on HTTPS) */
    uint64_t max_pending;     /* per listener, connections not yet authorized (http_server.h) */
    uint64_t store_map_size;  /* bytes */
    char *store;              /* "lmdb" or "postgres" */
    char *store_postgres_url; /* libpq connection string or URI */
    bool no_migrate;          /* postgres: the schema must be current already */
    int64_t shutdown_timeout; /* ms; read by hy_main through the "shutdown-timeout" row */
    enum hy_log_level log_level;
};

/* The option-table rows of struct hy_cp_cfg, for a binary whose config
 * struct S holds it as member M; default_dir is that binary's data dir. */
#define HY_CP_OPTIONS(S, M, default_dir)                                                           \
    {"data-dir",                                                                                   \
     "HYPHA_DATA_DIR",                                                                             \
     "dataDir",                                                                                    \
     HY_OPT_STRING,                                                                                \
     offsetof(S, M.data_dir),                                                                      \
     default_dir,                                                                                  \
     "directory of the store, keys, the admin token and certificates"},                            \
        {"api-address",                                                                            \
         "HYPHA_API_ADDRESS",                                                                      \
         "apiAddress",                                                                             \
         HY_OPT_ADDRESS,                                                                           \
         offsetof(S, M.api_address),                                                               \
         "127.0.0.1:5681",                                                                         \
         "HTTP API address (port 0 picks a free port)"},                                           \
        {"api-tls-address",                                                                        \
         "HYPHA_API_TLS_ADDRESS",                                                                  \
         "apiTlsAddress",                                                                          \
         HY_OPT_ADDRESS,                                                                           \
         offsetof(S, M.api_tls_address),                                                           \
         "0.0.0.0:5682",                                                                           \
         "HTTPS API address, served when a certificate is given"},                                 \
        {"api-tls-cert",                                                                           \
         "HYPHA_API_TLS_CERT",                                                                     \
         "apiTlsCert",                                                                             \
         HY_OPT_STRING,                                                                            \
         offsetof(S, M.api_tls_cert),                                                              \
         NULL,                                                                                     \
         "PEM certificate of the HTTPS API"},                                                      \
        {"api-tls-key",                                                                            \
         "HYPHA_API_TLS_KEY",                                                                      \
         "apiTlsKey",                                                                              \
         HY_OPT_STRING,                                                                            \
         offsetof(S, M.api_tls_key),                                                               \
         NULL,                                                                                     \
         "PEM private key of the HTTPS API"},                                                      \
        {"api-max-body",                                                                           \
         "HYPHA_API_MAX_BODY",                                                                     \
         "apiMaxBody",                                                                             \
         HY_OPT_SIZE,                                                                              \
         offsetof(S, M.max_body),                                                                  \
         "1Mi",                                                                                    \
         "largest request body the API accepts"},                                                  \
        {"api-localhost-is-admin",                                                                 \
         "HYPHA_API_LOCALHOST_IS_ADMIN",                                                           \
         "apiLocalhostIsAdmin",                                                                    \
         HY_OPT_BOOL,                                                                              \
         offsetof(S, M.localhost_is_admin),                                                        \
         "true",                                                                                   \
         "plain HTTP API clients on loopback act as admin without a token (Kuma's "                \
         "apiServer.authn.localhostIsAdmin); HTTPS always asks for the token"},                    \
        {"api-max-pending-connections",                                                            \
         "HYPHA_API_MAX_PENDING_CONNECTIONS",                                                      \
         "apiMaxPendingConnections",                                                               \
         HY_OPT_UINT,                                                                              \
         offsetof(S, M.max_pending),                                                               \
         "256",                                                                                    \
         "per API listener, connections whose request is not yet in and authorized; more are "     \
         "refused"},                                                                               \
        {"store-map-size",                                                                         \
         "HYPHA_STORE_MAP_SIZE",                                                                   \
         "storeMapSize",                                                                           \
         HY_OPT_SIZE,                                                                              \
         offsetof(S, M.store_map_size),                                                            \
         "1Gi",                                                                                    \
         "maximum size of the LMDB store"},                                                        \
        {"store",                                                                                  \
         "HYPHA_STORE",                                                                            \
         "store",                                                                                  \
         HY_OPT_STRING,                                                                            \
         offsetof(S, M.store),                                                                     \
         "lmdb",                                                                                   \
         "store backend: lmdb (in the data dir) or postgres (--store-postgres-url)"},              \
        {"store-postgres-url",                                                                     \
         "HYPHA_STORE_POSTGRES_URL",                                                               \
         "storePostgresUrl",                                                                       \
         HY_OPT_STRING,                                                                            \
         offsetof(S, M.store_postgres_url),                                                        \
         NULL,                                                                                     \
         "PostgreSQL of the postgres store: postgresql://USER:PASS@HOST/DB or "                    \
         "\"host=... dbname=...\""},                                                               \
        {"no-migrate",                                                                             \
         "HYPHA_NO_MIGRATE",                                                                       \
         "noMigrate",                                                                              \
         HY_OPT_BOOL,                                                                              \
         offsetof(S, M.no_migrate),                                                                \
         "false",                                                                                  \
         "postgres store: do not create or upgrade the schema at start ('migrate' does)"},         \
        HY_SHUTDOWN_OPTION(S, M.shutdown_timeout),                                                 \
    {                                                                                              \
        "log-level", "HYPHA_LOG_LEVEL", "logLevel", HY_OPT_LOG_LEVEL, offsetof(S, M.log_level),    \
            "info", "debug, info, warn or error"                                                   \
    }

struct hy_cp;

/* A binary's own paths, tried before the resource API; returns false when
 * the path is not its. */
typedef bool (*hy_cp_handler_fn)(void *ud, const struct hy_http_req *req,
                                 struct hy_http_resp *resp);

struct hy_token_key;
struct hy_token_claims;
struct hy_token_failure;

struct hy_cp {
    const struct hy_cp_cfg *cfg;
    const char *component; /* "global" or "zone", for logs */
    const char *zone;      /* this zone's name on a zone CP; NULL on the global CP */
    struct hy_token_key *token_key;
    uv_loop_t *loop;
    struct hy_store *store;
    struct hy_metrics *metrics;
    struct hy_metric *requests, *durations, *refused, *pending;
    struct hy_http_server *http;
    struct hy_cp_api api;
    hy_cp_handler_fn extra;
    void *extra_ud;
    char admin_token[65];
    char instance_id[64];
    struct hy_cp_leader *leader; /* hy_cp_leader_start; NULL before */
};

/* Opens the data dir (created 0700), the store, the admin token (made at
 * first start, 0600) and the metrics; fills instance_id. component names
 * the binary in logs and GET /. On failure logs why and returns a negative
 * code; hy_cp_close undoes a partial open. */
int hy_cp_open(struct hy_cp *cp, const struct hy_cp_cfg *cfg, const char *component,
               uv_loop_t *loop);
/* Starts the API listeners. Set cp->api (store, mode, hooks) and
 * cp->extra before. Logs "API listening on http://HOST:PORT" (and https). */
int hy_cp_listen(struct hy_cp *cp);
/* Stops listening; run the loop until lws has closed its handles, then
 * hy_cp_close. */
void hy_cp_stop(struct hy_cp *cp);
void hy_cp_close(struct hy_cp *cp);

/* The token signing key (cp_tokens.c): loaded from the data dir or made at
 * first start; the global CP also publishes its public half as a
 * TokenSigningKey, which KDS brings to the zones. Set cp->zone first. */
int hy_cp_tokens_open(struct hy_cp *cp);
void hy_cp_tokens_close(struct hy_cp *cp);
/* The token endpoints, for cp->extra: POST /tokens/zone and
 * /tokens/zone/verify (global CP), /tokens/dataplane,
 * /tokens/dataplane/verify and /tokens/revocations (both). */
bool hy_cp_tokens_handle(void *cp, const struct hy_http_req *req, struct hy_http_resp *resp);
/* The one check of a token of kind (enum hy_token_kind): signed by this
 * CP's key (a zone also takes the global CP's published keys for dataplane
 * tokens, which must then name this zone), within its times, of that kind
 * and not revoked. 0 with claims filled (free with hy_token_claims_fini),
 * HY_EVERIFY with why filled, or another error. */
int hy_cp_verify_token(struct hy_cp *cp, int kind, const char *token,
                       struct hy_token_claims *claims, struct hy_token_failure *why);
/* Whether a token admitted earlier (its jti and exp, from the claims) still
 * holds now: not expired and not revoked since. Sessions call it when
 * revocations change and on a timer, and close when it fails. true, or
 * false with why filled ("token revoked", "token expired at ..."). */
bool hy_cp_token_live(struct hy_cp *cp, const char *jti, int64_t exp, char *why, size_t size);

/* The label of the MeshTrust that lists a builtin root (cp_mesh_ca.c). */
#define HY_CP_MANAGED_BY "hypha.io/managed-by"
#define HY_CP_MANAGED_BUILTIN "builtin-ca"

/* Moves mesh root certificates stored as MeshTrust by a Hypha from before
 * MeshCaRoot had its name (the same fields, 1-5, which today's MeshTrust
 * keeps reserved) to MeshCaRoot, in one transaction, logging what moved.
 * Then lists every root this control plane holds the key of in a MeshTrust
 * (as make_root does for new ones), where one is missing. Called at open;
 * nothing to do is the usual case. 0 or a negative code (logged). */
int hy_cp_migrate_mesh_roots(struct hy_cp *cp);

/* A before_commit hook part (cp_mesh_ca.c): for every Mesh the batch puts
 * whose enabled builtin backend has no root yet, makes one and adds its
 * MeshCaRoot and MeshCaKey to the batch; then checks every MeshTrust the
 * batch puts (hy_cp_mesh_trust_check) and that its mesh's trust bundle
 * stays within HY_CA_BUNDLE_MAX certificates. 0, or a negative code with
 * causes in d. */
int hy_cp_mesh_roots(struct hy_cp *cp, struct hy_cp_api_batch *b, struct hy_diag *d);
/* The certificates of MeshTrust r (its spec already through the registry's
 * validator): every caBundles[i].pem.value must hold only CA certificates
 * that parse (hy_ca_bundle_each) and have not expired. Adds one cause per
 * problem, naming the bundle's field and the certificate's index. 0,
 * HY_EINVAL (causes added) or HY_ENOMEM; *count (may be NULL) gets the
 * number of certificates read. */
int hy_cp_mesh_trust_check(const struct hy_resource *r, struct hy_diag *d, size_t *count);
/* The certificate of one of cp's TLS listeners: given_cert/given_key when
 * both are set, else data_dir/subdir/server.pem (+ server-key.pem), made
 * at first start with a CA (data_dir/subdir/ca.pem) for localhost, the
 * host name, loopback and addr's IP; the log names the CA file and hint
 * says who should trust it. Paths into cert and key (size bytes each).
 * 0 or a negative code (logged). */
int hy_cp_server_cert(struct hy_cp *cp, const char *subdir, const char *what, const char *hint,
                      const char *given_cert, const char *given_key, const struct hy_addr *addr,
                      char *cert, char *key, size_t size);
/* A Timestamp message at secs (caller frees); NULL on ENOMEM. */
Hypha__V1__Timestamp *hy_cp_timestamp(int64_t secs);

/* The store configuration of cfg (path gets data_dir/store, size bytes):
 * 0, or HY_EINVAL with a log line naming the bad option. */
int hy_cp_store_config(const struct hy_cp_cfg *cfg, char *path, size_t size,
                       struct hy_store_config *out);
/* The store subcommands of a control-plane binary, tried before hy_main:
 *   PROGRAM migrate [OPTIONS]   create or upgrade the PostgreSQL schema, exit
 *   PROGRAM store copy --from lmdb:PATH|postgres:URL --to lmdb:PATH|postgres:URL
 * Returns -1 when argv is not one of them, else the exit code. */
int hy_cp_store_command(const struct hy_config_spec *spec, void *cfg, size_t cp_offset, int argc,
                        char **argv);

/* The leader lease (cp_leader.c): one replica at a time among those on one
 * store holds lease name ("global", "zone/<name>"); LMDB: always this one.
 * fn (may be NULL) is called on the loop when this replica becomes
 * (held) or stops being the leader; the first time may be during this
 * call. Becoming leader on PostgreSQL first runs hy_cp_migrate_mesh_roots
 * (which hy_cp_open runs for LMDB). Registers hypha_leader{component,
 * replica} and hypha_leader_transitions_total. 0 or a negative code. */
struct hy_cp_leader;
typedef void (*hy_cp_leader_fn)(void *ud, bool held);
int hy_cp_leader_start(struct hy_cp *cp, const char *name, hy_cp_leader_fn fn, void *ud);
/* Whether this replica leads now (as last told to fn). */
bool hy_cp_leader_held(const struct hy_cp *cp);
/* Refreshes the metrics from the lease (done before /metrics renders). */
void hy_cp_leader_sample(struct hy_cp *cp);
/* Releases the lease (another replica takes over) and stops the timer;
 * fn is not called again. Then run the loop, then hy_cp_leader_free. */
void hy_cp_leader_stop(struct hy_cp *cp);
void hy_cp_leader_free(struct hy_cp *cp);

/* data_dir/name into buf; HY_ETOOBIG if it does not fit. */
int hy_cp_path(const struct hy_cp *cp, const char *name, char *buf, size_t size);
/* Writes nbytes random bytes as 2*nbytes hex characters and a NUL. */
int hy_cp_random_hex(char *out, size_t nbytes);

#endif
