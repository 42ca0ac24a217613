/* hypha-global: the global control plane's state and its parts. main.c
 * parses the configuration and runs the loop; everything else is here. */
#ifndef HY_GLOBAL_H
#define HY_GLOBAL_H

#include <stdint.h>
#include <uv.h>

#include "cp.h"

/* Configuration (one table in main.c drives flags, env and the file). */
struct hy_global_cfg {
    struct hy_cp_cfg cp;
    struct hy_addr kds_address;
    char *kds_tls_cert; /* made in the data dir at first start when not given */
    char *kds_tls_key;
    uint64_t kds_max_message;  /* bytes */
    int64_t kds_ping_interval; /* milliseconds between websocket pings; silent 3x that: dropped */
    /* what one zone may keep on the global CP (kds_server.c enforces) */
    uint64_t zone_max_resources, zone_max_bytes, zone_max_ingresses, ingress_max_services;
    uint64_t store_headroom; /* bytes left free for deletes: zone writes stop there */
};

struct hy_global_kds;

struct hy_global {
    struct hy_cp cp; /* first: the base */
    const struct hy_global_cfg *cfg;
    struct hy_global_kds *kds;
};

/* Opens the data dir (creating the store, the token signing key and the
 * admin token at first start) and starts the API and KDS listeners on
 * loop. Logs and returns a negative code on failure; hy_global_close undoes
 * a partial open. */
int hy_global_open(struct hy_global *g, const struct hy_global_cfg *cfg, uv_loop_t *loop);
/* Stops listening; run the loop afterwards until the servers' handles have
 * closed, then hy_global_close. */
void hy_global_stop(struct hy_global *g);
/* Frees everything and closes the store. */
void hy_global_close(struct hy_global *g);

/* The KDS server (kds_server.c): start after the API, stop with it. */
int hy_global_kds_start(struct hy_global *g);
void hy_global_kds_stop(struct hy_global *g);
void hy_global_kds_free(struct hy_global *g);

/* The batch hook of user writes (write_hook.c): creates mesh root CAs, and
 * takes a deleted Zone's resources along with it. */
int hy_global_before_commit(void *ud, struct hy_cp_api_batch *b, struct hy_diag *d);

#endif
