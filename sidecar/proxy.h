/* The data-plane proxy of hypha-dp: inbound listeners that terminate mTLS,
 * check the peer's SPIFFE ID against the config's permissions and relay to
 * the local app; outbound listeners that take plain TCP from the app and
 * originate mTLS to a peer sidecar. It follows the published snapshot
 * (struct hy_dp_current) on its own. */
#ifndef HY_PROXY_H
#define HY_PROXY_H

#include <uv.h>

struct hy_dp_current;
struct hy_metrics;
struct hy_proxy;

struct hy_proxy_cfg {
    uv_loop_t *loop;               /* where every listener and connection lives */
    struct hy_dp_current *current; /* borrowed: outlives the proxy */
    struct hy_metrics *metrics;    /* borrowed: where hypha_dp_* connection metrics go */
    const char *inbound_host; /* IP literal inbound listeners bind; NULL or not an IP: 0.0.0.0 */
};

/* Registers the metrics and starts watching cfg->current: listeners open
 * when a config names their port and close when it no longer does.
 * On success sets *out (stop it with hy_proxy_stop, then free it with
 * hy_proxy_free once the loop has run) and returns 0; on failure returns
 * HY_ENOMEM or HY_ECRYPTO (wolfSSL did not initialise), *out NULL. */
int hy_proxy_new(const struct hy_proxy_cfg *cfg, struct hy_proxy **out);

/* Closes every listener and connection (each connection logs its access
 * line, result "shutdown"). Run the loop afterwards so their handles close.
 * NULL is fine. Loop thread. */
void hy_proxy_stop(struct hy_proxy *p);

/* Frees the proxy; every handle must have closed (hy_proxy_stop, then the
 * loop ran). NULL is fine. */
void hy_proxy_free(struct hy_proxy *p);

#endif
