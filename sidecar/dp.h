/* hypha-dp, the sidecar: a data-plane process (agent.h) presenting a
 * Dataplane, whose configs (DpConfig, with a certificate for a key it
 * made) become snapshots (dp_snapshot.c) checked and renewed by its part
 * of the control stream (dp_client.c). The data-plane proxy (proxy.h)
 * takes the current snapshot from a.current. */
#ifndef HY_DP_H
#define HY_DP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent.h"
#include "agent_snap.h"
#include "ca.h"
#include "dp.pb-c.h"
#include "dp_parts.h"

#define HY_DP_RENEW_PERCENT 80 /* of a certificate's life, when a new one is asked for */

/* The options (main.c's table): those of every data-plane process. */
struct hy_sidecar_cfg {
    struct hy_agent_cfg base; /* base.resource_file: the Dataplane; workers: the proxy's */
    /* transparent mode: on by this flag or by the Dataplane's
     * networking.transparentProxying (whose redirect ports, when set, win) */
    bool transparent;
    uint64_t tp_outbound, tp_inbound, tp_dns; /* redirect ports: 15001, 15006, DNS 15053 */
};

/* ----- config snapshots (dp_snapshot.c) ----- */

/* One config the sidecar accepted, with the private key of its certificate:
 * an agent snapshot (agent_snap.h), published in struct hy_sidecar's current.
 * Immutable once published: every field is read-only for its whole life,
 * so any thread holding a reference reads it without locks. */
struct hy_sidecar_snapshot {
    struct hy_agent_snap base;     /* first: base.version is config->version */
    Hypha__V1__DpConfig *config;   /* owned; cert, trust_bundle and version are set */
    char *key;                     /* owned PEM (PKCS#8) of config->cert's key; wiped when freed */
    int64_t not_before, not_after; /* the certificate's validity, Unix seconds */
    int64_t renew_at;              /* hy_sidecar_renew_at of those */
    char fingerprint[HY_CA_FINGERPRINT_LEN + 1]; /* of the certificate */
    char *spiffe_id;                             /* owned: its first URI SAN */
    /* The one field set after publishing: what its MeshAccessLogs compile
     * to, by the first worker that needs it (alog.c), freed with it. */
    _Atomic(struct hy_alog_cfg *) alog;
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
int hy_sidecar_snapshot_new(Hypha__V1__DpConfig *config, const char *mesh, const char *name,
                            const char *const *keys, size_t nkeys, struct hy_sidecar_snapshot **out,
                            size_t *which, char *err, size_t errlen);

/* hy_sidecar_snapshot_of, _ref, _unref (the last frees the snapshot, the key
 * wiped) and _get: agent_snap.h. */
HY_AGENT_SNAP_TYPE(struct hy_sidecar_snapshot, hy_sidecar_snapshot)

/* When to ask for a new certificate valid from not_before to not_after,
 * received at now: at HY_DP_RENEW_PERCENT % of its life, which starts at
 * signing (not_before + HY_CA_BACKDATE_SECONDS, or now if that is
 * earlier), Unix seconds. The same for every now after signing, so a
 * config that repeats the certificate keeps the renewal time. Cannot fail. */
int64_t hy_sidecar_renew_at(int64_t not_before, int64_t not_after, int64_t now);
/* How long to wait for the new certificate after asking before asking
 * again, in ms: 5 % of the life, at least 1 s and at most 60 s. */
uint64_t hy_sidecar_renew_retry_ms(int64_t not_before, int64_t not_after);

/* ----- the sidecar (dp.c, dp_client.c) ----- */

struct hy_series;
struct hy_proxy;
struct hy_dp_prom;

/* A data-plane process (agent.h) whose snapshots are struct
 * hy_sidecar_snapshot, with a certificate it renews and the proxy. */
struct hy_sidecar {
    struct hy_agent a; /* first: the control stream, admin server, metrics */

    /* certificates (dp_client.c) */
    struct hy_ca_pem pending; /* key and CSR of the last request sent; zeroed when none */
    uv_timer_t renew_timer;   /* the next time to ask for a certificate */
    bool renew_init;
    int64_t next_ask_ms; /* Unix ms of the next DpCsr; 0: none planned */

    /* the config's parts as applied, kept across sessions: a new session's
     * DpHello names them and the zone sends only what differs */
    struct hy_dp_parts parts;
    Hypha__V1__DpPartRef **hello_refs; /* the last DpHello's names of them */
    size_t n_hello_refs;

    struct hy_series *acks, *nacks, *cert_expiry, *renewals;
    struct hy_proxy *proxy;  /* the data-plane proxy (proxy.c): follows a.current */
    struct hy_dp_prom *prom; /* the MeshMetric Prometheus endpoint (dp_prom.c) */
    struct hy_dns *dns;      /* transparent mode: the DNS server (dns.h); else NULL */
};

/* What makes a data-plane process a sidecar (dp.c). */
extern const struct hy_agent_ops hy_sidecar_ops;

/* hy_agent_open of d with hy_sidecar_ops; on failure logs why (every problem
 * of the Dataplane file on its own line) and returns a negative code;
 * hy_sidecar_close undoes a partial open. Then hy_agent_shutdown, hy_sidecar_stop
 * (run the loop until every handle has closed), hy_sidecar_close. */
int hy_sidecar_open(struct hy_sidecar *d, const struct hy_sidecar_cfg *cfg, uv_loop_t *loop);
void hy_sidecar_stop(struct hy_sidecar *d);
void hy_sidecar_close(struct hy_sidecar *d);

/* Ready when a config is applied (by every proxy worker) and its
 * certificate has not expired (hy_agent_ready). */
bool hy_sidecar_ready(struct hy_sidecar *d, char *why, size_t size);

/* The control stream's sidecar part (dp_client.c): the CSR of every
 * DpHello, DpConfig checked and published, renewals. */
int hy_sidecar_client_hello(struct hy_agent *a, Hypha__V1__DpHello *h);
bool hy_sidecar_client_message(struct hy_agent *a, Hypha__V1__DpMessage *m);
void hy_sidecar_client_start(struct hy_sidecar *d);
void hy_sidecar_client_stop(struct hy_sidecar *d);
void hy_sidecar_client_free(struct hy_sidecar *d);

#endif
