/* The data-plane proxy of hypha-dp: inbound listeners that terminate mTLS,
 * check the peer's SPIFFE ID against the config's permissions and relay to
 * the local app; outbound listeners that take plain TCP from the app and
 * originate mTLS to a peer sidecar. It runs on worker threads of its own,
 * follows the published snapshot (struct hy_agent_current) on its own, and
 * runs active health checks on the control loop. */
#ifndef HY_PROXY_H
#define HY_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define HY_PROXY_MAX_WORKERS 64

struct hy_agent_current;
struct hy_metrics;
struct hy_proxy;

struct hy_proxy_cfg {
    uv_loop_t *loop;                  /* the control loop: health checks run on it */
    struct hy_agent_current *current; /* borrowed: outlives the proxy */
    struct hy_metrics *metrics;       /* borrowed: where hypha_dp_* connection metrics go */
    const char *inbound_host; /* IP literal inbound listeners bind; NULL or not an IP: 0.0.0.0 */
    unsigned workers;         /* worker threads; 0: one per CPU (at most HY_PROXY_MAX_WORKERS) */
    /* transparent mode (iptables redirects the workload's traffic here):
     * the outbound and inbound redirect ports; 0: off */
    uint16_t transparent_outbound, transparent_inbound;
};

/* Registers the metrics, starts the workers and watches cfg->current
 * (it sets its publish hook: publish on the control loop): listeners open
 * when a config names their port and close when it no longer does.
 * On success sets *out (stop it with hy_proxy_stop, then free it with
 * hy_proxy_free once the control loop has run) and returns 0; on failure
 * returns HY_ENOMEM or HY_ECRYPTO (wolfSSL did not initialise), *out NULL.
 * Control loop thread. */
int hy_proxy_new(const struct hy_proxy_cfg *cfg, struct hy_proxy **out);

/* True once every worker uses snapshot generation gen or a later one
 * (hy_agent_current_get's gen). NULL is fine (true). Any thread. */
bool hy_proxy_applied(struct hy_proxy *p, uint64_t gen);

/* What the proxy's TLS prefers (the cheapest safe primitives of the
 * linked wolfSSL on this CPU: suite, key exchange group, and why), and
 * how many outbound sessions it keeps to resume. Any thread. */
struct hy_proxy_tls_info {
    const char *suite, *group, *reason; /* static strings */
    size_t sessions;
};
void hy_proxy_tls_info(struct hy_proxy *p, struct hy_proxy_tls_info *out);

/* Tells every worker to close its listeners and connections (each
 * connection logs its access line, result "shutdown") and stops the health
 * checks. Run the control loop afterwards so their handles close.
 * NULL is fine. Control loop thread. */
void hy_proxy_stop(struct hy_proxy *p);

/* Waits for the workers to end, then frees the proxy; hy_proxy_stop must
 * have been called, and the control loop run since. NULL is fine. */
void hy_proxy_free(struct hy_proxy *p);

/* Drops the calling thread's wolfSSL fixed-point ECC tables and gives free
 * heap pages back to the kernel: for a thread whose crypto is rare (the
 * control loop after a CSR or a config's chain check). Workers do it
 * themselves when idle (proxy_mem.c). */
void hy_proxy_mem_release(void);

#endif
