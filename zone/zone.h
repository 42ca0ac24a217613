/* hypha-zone: the zone control plane's state. Standalone (no global
 * address) it is the source of truth for everything; federated it keeps
 * the global CP's meshes and policies in sync over KDS and is the source
 * of its own Dataplanes and ZoneIngresses. */
#ifndef HY_ZONE_H
#define HY_ZONE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cp.h"
#include "kds.pb-c.h"

struct hy_zone_cfg {
    struct hy_cp_cfg cp;
    char *zone; /* this zone's name */
    /* wss://HOST:5685 of each global CP replica, tried in turn; none: standalone */
    struct hy_strings global_address;
    char *global_ca_file; /* verifies the global CP's KDS certificate */
    bool global_tls_skip_verify;
    char *zone_token_file;     /* the zone token the global CP issued */
    uint64_t kds_max_message;  /* bytes */
    int64_t kds_ping_interval; /* milliseconds between websocket pings; silent 3x that: dropped */
    int64_t kds_backoff_max;   /* milliseconds between reconnects, at most */
    struct hy_addr dp_address; /* where sidecars connect (wss) */
    char *dp_tls_cert;         /* made in the data dir at first start when not given */
    char *dp_tls_key;
    int64_t dp_cleanup_age; /* ms a disconnected sidecar's Dataplane is kept; 0: forever */
};

/* Whether the zone syncs with a global CP (it was given an address). */
static inline bool hy_zone_federated(const struct hy_zone_cfg *c)
{
    return c->global_address.n > 0;
}

struct hy_kds_client;
struct hy_zone_ca;
struct hy_zone_dp_server;

struct hy_zone {
    struct hy_cp cp; /* first: the base */
    const struct hy_zone_cfg *cfg;
    struct hy_kds_client *kds; /* NULL when standalone */
    struct hy_zone_ca *ca;
    struct hy_zone_dp_server *dp;
};

/* Opens the data dir and starts the API (and, federated, the KDS client).
 * Logs and returns a negative code on failure; hy_zone_close undoes a
 * partial open. */
int hy_zone_open(struct hy_zone *z, const struct hy_zone_cfg *cfg, uv_loop_t *loop);
/* Whether a zone-origin resource called name can be kept on the global CP,
 * which stores it as "<zone>.<name>" (at most 253 characters). Always true
 * for a standalone zone; false with why filled (size bytes) otherwise. */
bool hy_zone_name_fits(const struct hy_zone *z, const char *name, char *why, size_t size);
/* Stops listening and syncing; run the loop until the handles have closed,
 * then hy_zone_close. */
void hy_zone_stop(struct hy_zone *z);
void hy_zone_close(struct hy_zone *z);

/* The zone's own API paths (zone_api.c), for cp.extra: GET
 * /meshes/{mesh}/dataplanes/{name}/_config (the config this zone computes
 * for a Dataplane, without its per-connection certificate material), GET
 * /meshes/{mesh}/dataplanes/{name}/stats and /zoneingresses/{name}/stats
 * (the proxy's own metrics, asked over its session), then the token
 * endpoints. */
bool hy_zone_api_handle(void *z, const struct hy_http_req *req, struct hy_http_resp *resp);

/* KDS client (kds_client.c). */
int hy_zone_kds_start(struct hy_zone *z);
void hy_zone_kds_stop(struct hy_zone *z);
void hy_zone_kds_free(struct hy_zone *z);
/* This replica became (held) or stopped being the zone's leader: it starts
 * or drops the session to the global CP (cp_leader.c calls it). */
void hy_zone_kds_leader(struct hy_zone *z, bool held);
/* Sends one message to the global CP: 0, or -ENOTCONN while not admitted. */
int hy_zone_kds_send(struct hy_zone *z, const Hypha__V1__KdsMessage *m);

/* The zone's intermediate CAs (zone_ca.c). */
int hy_zone_ca_start(struct hy_zone *z);
void hy_zone_ca_stop(struct hy_zone *z);
void hy_zone_ca_free(struct hy_zone *z);
/* Makes or asks for what is missing; called on changes and on connecting. */
void hy_zone_ca_check(struct hy_zone *z);
/* The global CP answered a CsrRequest. */
void hy_zone_ca_response(struct hy_zone *z, const Hypha__V1__CsrResponse *r);
/* The KDS connection dropped: requests in flight are asked again later. */
void hy_zone_ca_disconnected(struct hy_zone *z);

#endif
