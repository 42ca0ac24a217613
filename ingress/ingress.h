/* hypha-ingress, the zone ingress: it presents its ZoneIngress to the zone
 * control plane (ingress.c), receives the routes of the services this zone
 * serves, and relays cross-zone connections to them by the SNI of their
 * ClientHello without terminating TLS (relay.c). The control stream and
 * the admin server run on the main loop; the relay on worker threads, each
 * with its own loop and SO_REUSEPORT listening socket. Workers take the
 * routes with one atomic load per connection (a lock only when they
 * changed). */
#ifndef HY_INGRESS_H
#define HY_INGRESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent.h"
#include "agent_eps.h"
#include "agent_pool.h"
#include "agent_snap.h"
#include "dp.pb-c.h"
#include "net.h"

#define HY_ING_HELLO_MS 10000         /* a client sends its ClientHello within this */
#define HY_ING_CONNECT_MS 5000        /* connect timeout to a local endpoint */
#define HY_ING_ATTEMPTS 3             /* endpoints tried per connection */
#define HY_ING_IDLE_MS (3600u * 1000) /* a relayed connection quiet this long is closed */
#define HY_ING_ADDRS_MS 30000 /* this host's addresses are re-read this often (and on change) */

/* The options (main.c's table): those of every data-plane process, and
 * the relay's. */
struct hy_ing_cfg {
    struct hy_agent_cfg base;   /* base.resource_file: the ZoneIngress; workers: relay threads */
    bool splice;                /* false: --relay=copy, whatever --relay says */
    char *relay;                /* --relay: splice, copy or adaptive */
    bool allow_local_endpoints; /* UNSAFE: relay to loopback, unspecified, link-local endpoints */
};

#define HY_ING_MAX_WORKERS 64

/* How the relay moves bytes once a connection is routed (relay.c). */
enum hy_ing_relay_mode {
    HY_ING_RELAY_ADAPTIVE, /* copy small messages, splice bulk */
    HY_ING_RELAY_SPLICE,   /* splice(2) through a pipe per direction */
    HY_ING_RELAY_COPY,     /* recv into a buffer, send */
};
/* "adaptive", "splice", "copy". */
const char *hy_ing_relay_name(enum hy_ing_relay_mode m);

/* A set of routes: an agent snapshot (agent_snap.h), immutable once
 * published in struct hy_ing's current; workers and connections hold
 * references on any thread. */
struct hy_ing_routes {
    struct hy_agent_snap base;     /* first: base.version is c->version */
    Hypha__V1__DpIngressConfig *c; /* owned; the endpoints the guard let through */
    struct hy_net_addrs *local;    /* owned: this host's addresses when published; may be NULL */
};

/* Why the guard (guard.c) refuses an endpoint: the reasons of
 * hypha_ingress_endpoints_refused_total. */
enum hy_ing_refusal {
    HY_ING_ALLOWED = 0,
    HY_ING_REFUSE_LOOPBACK,    /* this host's loopback */
    HY_ING_REFUSE_UNSPECIFIED, /* 0.0.0.0/8, ::: the host itself */
    HY_ING_REFUSE_LINK_LOCAL,  /* 169.254/16, fe80::/10: metadata services */
    HY_ING_REFUSE_LISTENER,    /* one of the ingress's own ports on one of this host's addresses */
    HY_ING_NREFUSALS
};

/* An endpoint the guard dropped from the current routes (main thread). */
struct hy_ing_refused {
    char *sni, *name, *address; /* owned */
    unsigned port;
    enum hy_ing_refusal why;
};

struct hy_buf;
struct hy_series;
struct hy_ing_conn;
struct hy_ing;

/* One relay thread: its loop, listening socket and connections. Only its
 * own thread touches it after start, except wake (uv_async_send). */
struct hy_ing_worker {
    struct hy_agent_worker base; /* first: its loop and thread (agent_pool.h) */
    struct hy_ing *g;
    uv_tcp_t listener;
    struct hy_ing_conn *conns;
    struct hy_ing_routes *routes; /* what new connections route by */
    uint64_t gen;                 /* of routes */
    size_t rr;                    /* round-robin cursor */
};

/* A data-plane process (agent.h) whose snapshots are struct
 * hy_ing_routes, relaying on worker threads. */
struct hy_ing {
    struct hy_agent a;                  /* first: the control stream, admin server, metrics */
    const struct hy_ing_cfg *cfg;       /* a.cfg, whole */
    Hypha__V1__DpIngressConfig *config; /* the routes last accepted, before the guard */

    /* relay (relay.c) */
    struct hy_agent_eps failed;   /* endpoints whose connect failed lately, for every worker */
    struct hy_agent_pool workers; /* of struct hy_ing_worker */
    bool listening;
    bool started; /* what follows and the relay were set up (hy_ing_ops.start) */

    /* the guard (guard.c): what the relay never connects to */
    enum hy_ing_relay_mode relay_mode; /* --relay (and --splice), set before the workers start */
    const char *relay_host; /* where the workers listen (borrowed from the file, or "0.0.0.0") */
    unsigned relay_port, admin_port; /* the ingress's own; set before the workers start */
    struct hy_net_addrs *local;      /* this host's addresses, as last read */
    struct hy_ing_refused *refused;  /* what the guard dropped from the current routes */
    size_t nrefused;
    uv_timer_t addrs_timer;
    uv_poll_t addrs_poll; /* netlink: an address was added or removed */
    int addrs_fd;
    bool addrs_timer_init, addrs_poll_init;

    struct {
        struct hy_series *accepted, *active, *bytes, *configs;
        struct hy_series *refused[5]; /* not_tls, malformed, no_sni, unknown_sni, too_big */
        struct hy_series *upstream_failed;
        struct hy_series *endpoints_refused[HY_ING_NREFUSALS]; /* [0] unused */
    } m;
};

/* ingress.c: what makes a data-plane process an ingress. Ready when
 * routes are published and the relay listens. */
extern const struct hy_agent_ops hy_ing_ops;
/* hy_ing_routes_of, _ref, _unref and _get (of g->a.current): agent_snap.h. */
HY_AGENT_SNAP_TYPE(struct hy_ing_routes, hy_ing_routes)

/* Publishes g->config, less what the guard refuses, with this host's
 * addresses, as the routes workers use from their next connection.
 * Main thread. 0 or HY_ENOMEM (the routes in use stay). */
int hy_ing_routes_publish(struct hy_ing *g);

/* guard.c: the ingress never relays to this host itself. */
/* Reads this host's addresses and starts watching them (netlink, and a
 * timer as a backstop). Cannot fail: without netlink or getifaddrs it
 * logs and carries on with what it has. Main thread. */
void hy_ing_guard_start(struct hy_ing *g);
/* Closes its handles (main thread, before the loop's last run). */
void hy_ing_guard_stop(struct hy_ing *g);
/* Frees what it holds. */
void hy_ing_guard_fini(struct hy_ing *g);
/* Re-reads this host's addresses; true when they changed. Main thread. */
bool hy_ing_guard_refresh(struct hy_ing *g);
/* Why the relay must not connect to sa on behalf of a remote zone, or
 * HY_ING_ALLOWED. local: this host's addresses (NULL: unknown). Any
 * thread; reads only what does not change after start. */
enum hy_ing_refusal hy_ing_guard_check(const struct hy_ing *g, const struct hy_net_addrs *local,
                                       const struct sockaddr *sa);
/* "loopback", "unspecified", "link_local", "ingress_listener"; static. */
const char *hy_ing_refusal_name(enum hy_ing_refusal why);
/* Drops from c every endpoint the guard refuses against local, and makes
 * the list of them g's; logs and counts those not refused already.
 * Main thread. 0 or HY_ENOMEM (c is then partly filtered: do not use it). */
int hy_ing_guard_filter(struct hy_ing *g, Hypha__V1__DpIngressConfig *c,
                        const struct hy_net_addrs *local);
/* Appends the refused endpoints as a JSON array. 0 or HY_ENOMEM. */
int hy_ing_guard_json(const struct hy_ing *g, struct hy_buf *out);

/* relay.c */
/* Opens the listening sockets (errors at once) and starts the workers. */
int hy_ing_relay_start(struct hy_ing *g);
/* Tells the workers to close everything; main thread. */
void hy_ing_relay_stop(struct hy_ing *g);
/* Waits for the workers to end and frees them. */
void hy_ing_relay_free(struct hy_ing *g);

#endif
