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
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "dp.pb-c.h"
#include "dp_file.h"
#include "log.h"

#define HY_ING_MAX_MESSAGE (16u << 20) /* largest DpMessage accepted */
#define HY_ING_HELLO_MS 10000          /* a client sends its ClientHello within this */
#define HY_ING_CONNECT_MS 5000         /* connect timeout to a local endpoint */
#define HY_ING_ATTEMPTS 3              /* endpoints tried per connection */
#define HY_ING_IDLE_MS (3600u * 1000)  /* a relayed connection quiet this long is closed */
#define HY_ING_SHUTDOWN_GRACE_MS 5000
#define HY_ING_BAD_MS 10000 /* an endpoint whose connect failed is passed over this long */
#define HY_ING_MAX_BAD 32   /* such endpoints a worker remembers */

struct hy_ing_cfg {
    char *cp_address;   /* wss://ZONE:5678 */
    char *ca_cert_file; /* PEM CA(s) the zone's DP server certificate chains to */
    char *ingress_file; /* the ZoneIngress resource, YAML or JSON */
    char *token_file;   /* the zone-ingress token */
    struct hy_strings vars;
    struct hy_addr admin_address;
    enum hy_log_level log_level;
    bool splice;      /* relay with splice(2); false: copy through user space */
    uint64_t workers; /* relay threads; 0: one per CPU */
};

#define HY_ING_MAX_WORKERS 64

/* A set of routes, immutable once published: workers and connections
 * hold references on any thread. */
struct hy_ing_routes {
    atomic_uint refs;
    Hypha__V1__DpIngressConfig *c; /* owned */
};

struct hy_ws_client;
struct hy_http_server;
struct hy_metrics;
struct hy_series;
struct hy_ing_conn;
struct hy_ing;

/* One relay thread: its loop, listening socket and connections. Only its
 * own thread touches it after start, except wake (uv_async_send). */
struct hy_ing_worker {
    struct hy_ing *g;
    unsigned index;
    uv_loop_t loop;
    uv_thread_t thread;
    bool loop_init, thread_started, stopped;
    uv_async_t wake; /* stop */
    uv_tcp_t listener;
    struct hy_ing_conn *conns;
    struct hy_ing_routes *routes; /* what new connections route by */
    uint64_t gen;                 /* of routes */
    size_t rr;                    /* round-robin cursor */
    struct {
        char key[80]; /* "address:port" */
        uint64_t until;
    } bad[HY_ING_MAX_BAD]; /* endpoints whose connect failed lately */
};

struct hy_ing {
    const struct hy_ing_cfg *cfg;
    uv_loop_t *loop;
    struct hy_dp_file file;
    char *token;
    pthread_mutex_t routes_lock;  /* held to swap routes or take a reference */
    struct hy_ing_routes *routes; /* NULL before the first */
    atomic_uint_fast64_t routes_gen;

    /* control stream */
    struct hy_ws_client *ws;
    bool open, rejected, shutting_down;
    uv_timer_t grace_timer;
    bool grace_init;
    char status[320];

    /* relay (relay.c) */
    struct hy_ing_worker *workers;
    unsigned nworkers;
    bool listening;
    atomic_bool stopping;

    struct hy_http_server *admin;
    struct hy_metrics *metrics;
    struct {
        struct hy_series *accepted, *active, *bytes, *configs;
        struct hy_series *refused[5]; /* not_tls, malformed, no_sni, unknown_sni, too_big */
        struct hy_series *upstream_failed;
    } m;
};

/* ingress.c */
int hy_ing_open(struct hy_ing *g, const struct hy_ing_cfg *cfg, uv_loop_t *loop);
void hy_ing_shutdown(struct hy_ing *g);
void hy_ing_stop(struct hy_ing *g);
void hy_ing_close(struct hy_ing *g);
bool hy_ing_ready(struct hy_ing *g, char *why, size_t size);
struct hy_ing_routes *hy_ing_routes_ref(struct hy_ing_routes *r);
void hy_ing_routes_unref(struct hy_ing_routes *r); /* any thread */
/* A new reference to the current routes (NULL before the first) and its
 * generation. Any thread. */
struct hy_ing_routes *hy_ing_routes_get(struct hy_ing *g, uint64_t *gen);

/* relay.c */
/* Opens the listening sockets (errors at once) and starts the workers. */
int hy_ing_relay_start(struct hy_ing *g);
/* Tells the workers to close everything; main thread. */
void hy_ing_relay_stop(struct hy_ing *g);
/* Waits for the workers to end and frees them. */
void hy_ing_relay_free(struct hy_ing *g);

#endif
