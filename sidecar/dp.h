/* hypha-dp, the sidecar: its options, the Dataplane file it presents, the
 * config snapshots the zone control plane gives it, the control stream
 * (dp_client.c) and the admin server (dp_admin.c). The data-plane proxy
 * (proxy.h) takes the current snapshot from struct hy_dp's current. */
#ifndef HY_DP_H
#define HY_DP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ca.h"
#include "config.h"
#include "diag.h"
#include "dp.pb-c.h"
#include "log.h"
#include "agent_file.h"
#include "agent_snap.h"
#include "resource.h"
#include "wire.h"

#define HY_DP_RENEW_PERCENT 80        /* of a certificate's life, when a new one is asked for */
#define HY_DP_MAX_MESSAGE (16u << 20) /* largest DpMessage accepted: a big mesh's outbounds */
#define HY_DP_SHUTDOWN_GRACE_MS 5000  /* wait for the zone to answer our close, at most */

/* The options (main.c's table). */
struct hy_dp_cfg {
    int64_t shutdown_timeout;         /* ms after SIGTERM before a stuck process exits anyway */
    char *cp_address;                 /* wss://ZONE:5678 */
    char *ca_cert_file;               /* PEM CA(s) the zone's DP server certificate chains to */
    char *dataplane_file;             /* the Dataplane resource, YAML or JSON */
    char *dataplane_token_file;       /* the dataplane token (JWT) */
    struct hy_strings dataplane_vars; /* NAME=VALUE, for {{ NAME }} in the file */
    struct hy_addr admin_address;
    enum hy_log_level log_level;
    uint64_t workers; /* proxy worker threads; 0: one per CPU */
};

/* ----- config snapshots (dp_snapshot.c) ----- */

/* One config the sidecar accepted, with the private key of its certificate:
 * an agent snapshot (agent_snap.h), published in struct hy_dp's current.
 * Immutable once published: every field is read-only for its whole life,
 * so any thread holding a reference reads it without locks. */
struct hy_dp_snapshot {
    struct hy_agent_snap base;     /* first: base.version is config->version */
    Hypha__V1__DpConfig *config;   /* owned; cert, trust_bundle and version are set */
    char *key;                     /* owned PEM (PKCS#8) of config->cert's key; wiped when freed */
    int64_t not_before, not_after; /* the certificate's validity, Unix seconds */
    int64_t renew_at;              /* hy_dp_renew_at of those */
    char fingerprint[HY_CA_FINGERPRINT_LEN + 1]; /* of the certificate */
    char *spiffe_id;                             /* owned: its first URI SAN */
};

/* Checks a config the zone sent, as the sidecar must before using it:
 * a version; mesh and name, when set, those of our Dataplane; listener
 * ports in 1..65535 and used once; a certificate that is a leaf, carries a
 * SPIFFE ID of the mesh (spiffe://MESH/...), is valid now and chains
 * through config->chain to a root in config->trust_bundle
 * (hy_ca_verify_chain); and one of keys[0..nkeys) (PEM private keys, NULL
 * entries skipped) as its key (hy_ca_check_key).
 * On success returns 0, sets *out to a new snapshot (one reference) that
 * has taken config and a copy of the matching key, and *which to that
 * key's index. On failure returns HY_EVERIFY (certificate or key) or
 * HY_EINVAL (anything else; HY_ENOMEM) with err set to one sentence for
 * DpNack and the log, config left to the caller, *out NULL. */
int hy_dp_snapshot_new(Hypha__V1__DpConfig *config, const char *mesh, const char *name,
                       const char *const *keys, size_t nkeys, struct hy_dp_snapshot **out,
                       size_t *which, char *err, size_t errlen);

/* hy_dp_snapshot_of, _ref, _unref (the last frees the snapshot, the key
 * wiped) and _get: agent_snap.h. */
HY_AGENT_SNAP_TYPE(struct hy_dp_snapshot, hy_dp_snapshot)

/* When to ask for a new certificate valid from not_before to not_after,
 * received at now: at HY_DP_RENEW_PERCENT % of its life, which starts at
 * signing (not_before + HY_CA_BACKDATE_SECONDS, or now if that is
 * earlier), Unix seconds. The same for every now after signing, so a
 * config that repeats the certificate keeps the renewal time. Cannot fail. */
int64_t hy_dp_renew_at(int64_t not_before, int64_t not_after, int64_t now);
/* How long to wait for the new certificate after asking before asking
 * again, in ms: 5 % of the life, at least 1 s and at most 60 s. */
uint64_t hy_dp_renew_retry_ms(int64_t not_before, int64_t not_after);

/* ----- the sidecar (dp.c, dp_client.c, dp_admin.c) ----- */

struct hy_ws_client;
struct hy_http_server;
struct hy_metrics;
struct hy_metric;
struct hy_series;
struct hy_proxy;

struct hy_dp {
    const struct hy_dp_cfg *cfg;
    uv_loop_t *loop;
    struct hy_agent_file file;
    char *token;                     /* owned; read again at every connect */
    struct hy_agent_current current; /* of struct hy_dp_snapshot */

    /* control stream (dp_client.c) */
    struct hy_ws_client *ws;
    struct hy_ca_pem pending; /* key and CSR of the last request sent; zeroed when none */
    uv_timer_t renew_timer;   /* the next time to ask for a certificate */
    uv_timer_t grace_timer;   /* shutdown: stop waiting for the close handshake */
    bool timers_init;
    bool open;           /* the websocket is open */
    bool rejected;       /* the zone sent DpReject on this connection */
    bool shutting_down;  /* hy_dp_shutdown was called */
    int64_t next_ask_ms; /* Unix ms of the next DpCsr; 0: none planned */
    char status[320];    /* the last thing that happened to the stream, for /ready */

    /* metrics and admin (dp.c, dp_admin.c) */
    struct hy_metrics *metrics;
    struct hy_series *acks, *nacks, *cert_expiry, *renewals;
    struct hy_http_server *admin;

    struct hy_proxy *proxy; /* the data-plane proxy (proxy.c): follows current */
};

/* Reads the Dataplane file and the token, makes the metrics, starts the
 * admin server and the control stream on loop. On failure logs why (every
 * problem of the Dataplane file on its own line) and returns a negative
 * code; hy_dp_close undoes a partial open. */
int hy_dp_open(struct hy_dp *d, const struct hy_dp_cfg *cfg, uv_loop_t *loop);
/* SIGINT/SIGTERM: closes the stream with 1000 "dataplane shutting down"
 * (the zone deregisters the Dataplane) and stops the loop once the zone
 * answered, or after HY_DP_SHUTDOWN_GRACE_MS; at once when not connected or
 * when called a second time. */
void hy_dp_shutdown(struct hy_dp *d);
/* Stops the admin server, the stream and the timers; then run the loop
 * until every handle has closed, and hy_dp_close. */
void hy_dp_stop(struct hy_dp *d);
void hy_dp_close(struct hy_dp *d);

/* Ready when a config is applied (by every proxy worker) and its
 * certificate has not expired.
 * Returns true, or false with why (one sentence) filled. Loop thread. */
bool hy_dp_ready(struct hy_dp *d, char *why, size_t size);

/* The control stream (dp_client.c). */
int hy_dp_client_start(struct hy_dp *d);
void hy_dp_client_stop(struct hy_dp *d);
void hy_dp_client_free(struct hy_dp *d);

/* The admin server (dp_admin.c): GET /ready, /config, /metrics. */
int hy_dp_admin_start(struct hy_dp *d);
void hy_dp_admin_stop(struct hy_dp *d);
void hy_dp_admin_free(struct hy_dp *d);
/* The port the admin server listens on (with port 0 in the address); 0 if
 * none. */
int hy_dp_admin_port(const struct hy_dp *d);

#endif
