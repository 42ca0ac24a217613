/* What a data-plane process knows of the endpoints it connects to, shared
 * by all its worker threads: whose connect failed lately (passed over for
 * HY_AGENT_BAD_MS by every worker, not just the one that saw it fail) and,
 * for the sidecar's outbounds, the connections open to each and its active
 * health. A table of slots under one lock, held at connection setup and
 * close, never during the relay. */
#ifndef HY_AGENT_EPS_H
#define HY_AGENT_EPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"

#define HY_AGENT_BAD_MS 10000 /* an endpoint whose connect failed is passed over this long */
#define HY_AGENT_MAX_EPS 64   /* endpoints a table tracks; beyond: unknown (load 0, healthy) */
#define HY_AGENT_EP_KEY 300   /* bytes of an endpoint's key, "address:port" */

/* One endpoint as every worker sees it (under its table's lock). A slot
 * with no connections, no recent failure and no health history is free
 * for another endpoint. */
struct hy_agent_ep {
    char key[HY_AGENT_EP_KEY]; /* "address:port"; "" while free */
    unsigned active;           /* connections open to it, all workers together */
    uint64_t bad_until;        /* hy_agent_now_ms(): a connect to it failed lately */
    bool unhealthy;            /* active health checks say so */
    unsigned hc_ok, hc_bad;    /* health checks passed / failed in a row */
};

struct hy_agent_eps {
    pthread_mutex_t lock; /* guards eps (and what its owner keeps beside them) */
    struct hy_agent_ep eps[HY_AGENT_MAX_EPS];
};

/* Cannot fail (a default mutex; every slot free). */
void hy_agent_eps_init(struct hy_agent_eps *t);
void hy_agent_eps_fini(struct hy_agent_eps *t);

/* The slot of key in t; with take, a free one is claimed for it (zeroed,
 * key set). NULL when it has none (and none is free). Under t->lock. */
struct hy_agent_ep *hy_agent_eps_slot(struct hy_agent_eps *t, const char *key, bool take,
                                      uint64_t now);
/* Is e (a slot, or NULL: unknown) out of the running at now: its connect
 * failed lately, or its health checks fail? Under its table's lock. */
bool hy_agent_ep_avoided(const struct hy_agent_ep *e, uint64_t now);
/* A connect to key failed: every worker passes it over for
 * HY_AGENT_BAD_MS. Takes t->lock. Nothing when the table is full. */
void hy_agent_eps_failed(struct hy_agent_eps *t, const char *key);

/* Milliseconds on a clock every thread shares (monotonic). */
uint64_t hy_agent_now_ms(void);

/* The key of an endpoint: "address:port", "[v6]:port". */
void hy_agent_endpoint_key(const Hypha__V1__DpEndpoint *e, char *buf, size_t size);

#endif
