/* The proxy's insides, shared by proxy.c (the workers and their listeners,
 * config pickup, metrics), proxy_route.c (what an outbound shares across
 * workers), proxy_health.c (active health checks), proxy_conn.c (a
 * connection's life and its relay), proxy_tls.c (wolfSSL over libuv),
 * proxy_inbound.c and proxy_outbound.c.
 *
 * Threads: N workers, each with its own libuv loop and its own listening
 * sockets (SO_REUSEPORT: the kernel spreads connections over them). A
 * connection lives on the worker that accepted it. Workers pick up config
 * snapshots from struct hy_agent_current: one atomic load per accept and per
 * loop iteration, a lock only when the generation moved. What workers
 * share at run time is a route per outbound port (load, health, connection
 * counts): atomics, and a short per-route lock at connection setup and
 * close, never during the relay. Health checks run on the control loop. */
#ifndef HY_PROXY_INT_H
#define HY_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "agent_eps.h"
#include "agent_pool.h"
#include "dp.h"
#include "permit.h"
#include "agent_side.h"
#include "l7_outlier.h"
#include "proxy.h"

#define HY_PX_READ_SIZE 16384        /* bytes asked of one socket read */
#define HY_PX_HANDSHAKE_MS 10000     /* TLS handshakes finish within this */
#define HY_PX_LINGER_MS 1000         /* a refused caller's socket is drained this long at most */
#define HY_PX_CONNECT_MS 5000        /* connect timeout when the config names none */
#define HY_PX_IDLE_MS (3600u * 1000) /* idle timeout when the config names none */
#define HY_PX_NEVER_MS (1ull << 60)  /* a timeout of 0 (none): later than any deadline */
#define HY_PX_ATTEMPTS 3             /* connect attempts when the config names none */
#define HY_PX_ID_MAX 512             /* bytes of a SPIFFE ID we log and compare */
#define HY_PX_DNS_SLOTS 16           /* host names a worker remembers the address of */
#define HY_PX_DNS_TTL_MS 30000       /* for this long */
#define HY_PX_RESUME_KEY 400         /* bytes of an outbound session's key: endpoint|SNI */

enum hy_px_dir { HY_PX_IN, HY_PX_OUT };

struct WOLFSSL_CTX;
struct WOLFSSL;

/* The TLS contexts of one certificate and trust bundle. wolfSSL counts the
 * sessions made from a context, so freeing these while connections still
 * use them is safe: the context goes with its last session. */
struct hy_px_tls {
    struct WOLFSSL_CTX *server, *client;
    uint64_t gen; /* a hash of the certificate, chain, key and trust bundle: the outbound
                   * resumes only sessions its own contexts' generation made */
};

/* The cheapest safe primitives of the linked wolfSSL on this CPU, chosen
 * once (proxy_tls.c): the TLS 1.3 suites in order, the first of them, the
 * key exchange groups' first, and why. */
struct hy_px_tls_choice {
    const char *ciphers, *suite, *group, *why;
};

/* What one outbound port shares across workers. Reference-counted under
 * the proxy's lock: a listener on the port holds one, the health checker
 * one while it checks the port. */
struct hy_px_route {
    struct hy_px_route *next; /* p->routes */
    unsigned refs;            /* under p->lock */
    uint16_t port;
    char service[256];       /* port 0: a backend-only outbound, known by its service */
    atomic_uint requests;    /* L7: requests in flight (MeshCircuitBreaker maxRequests) */
    atomic_uint retries;     /* L7: retries in flight (maxRetries) */
    atomic_uint active;      /* connections accepted on the port, open */
    atomic_uint pending;     /* of those, still connecting or in their handshake */
    atomic_uint hc_running;  /* HTTP health checks of its endpoints queued or on a worker */
    struct hy_agent_eps eps; /* its endpoints' load, failures and health; eps.lock guards: */
    size_t rr;               /* round-robin cursor over the outbound's endpoints */
    bool checked;            /* a health checker follows it: check results count */
    uint64_t rng;            /* xorshift state for Random; 0 until first used */
    /* L7 outlier detection (under eps.lock), by the outbound's endpoint
     * index; ol_key says whose state a slot holds */
    struct hy_l7_outlier_ep ol[HY_AGENT_MAX_EPS];
    char ol_key[HY_AGENT_MAX_EPS][HY_AGENT_EP_KEY];
    uint64_t ol_tick_ms; /* the next periodic outlier pass (proxy_health.c) */
};

struct hy_px_worker;
struct hy_px_pt;

struct hy_px_listener {
    struct hy_px_worker *w;
    struct hy_px_listener *next;
    uv_tcp_t tcp;
    enum hy_px_dir dir;
    uint16_t port;
    unsigned refs;             /* 1 while open, + 1 per connection accepted on it */
    struct hy_px_route *route; /* outbound only: a reference */
    bool transparent;          /* takes redirected connections (proxy_transparent.c) */
    bool v6;                   /* transparent: the IPv6 one (ip6tables redirects there) */
    bool is_virtual;           /* no socket: where transparent connections of a port go */
    bool nodelay;              /* TCP_NODELAY is set on it, so on what it accepts (Linux) */
    char service[256];         /* is_virtual outbound on port 0: its service */
};

enum hy_px_phase { HY_PX_CONNECTING, HY_PX_HANDSHAKE, HY_PX_RELAY };

/* One socket of a connection. */

struct hy_px_conn {
    struct hy_px_worker *w;           /* the worker it lives on */
    const struct hy_px_metrics *m;    /* w->p->m */
    struct hy_px_conn *prev, *next;   /* w->conns */
    struct hy_px_listener *l;         /* a reference */
    struct hy_sidecar_snapshot *snap; /* a reference: the config at accept */
    const Hypha__V1__DpInbound *in;   /* in snap */
    const Hypha__V1__DpOutbound *out;
    enum hy_px_dir dir;
    enum hy_px_phase phase;
    struct hy_agent_side down, up; /* accepted, and what we connected to */
    struct hy_agent_side *tls, *plain;
    struct WOLFSSL *ssl;
    bool tls_in_done; /* everything the TLS peer will send was relayed */
    bool closing;
    bool lingering;   /* closing, its caller's socket drained first (proxy_conn.c) */
    bool app_quiet;   /* L7: the app's last request is in, its socket is read no more */
    unsigned handles; /* uv_close calls still to complete */
    uv_timer_t timer; /* connect, handshake, then idle */
    uv_connect_t connect_req;
    uv_getaddrinfo_t resolve_req; /* a host name endpoint (an ingress's advertisedAddress) */
    bool resolving;               /* resolve_req is out; counted in handles */
    unsigned resolve_for;         /* the attempt it resolves for: a later one ignores it */
    uint32_t resolve_port;
    char resolve_host[256];
    uint64_t idle_ms, last_ms, start_ms, connect_start_ms;
    unsigned attempts;
    bool pending;                 /* counted in l->route->pending */
    unsigned active_n, pending_n; /* the route's counts with this one, taken at accept */
    struct hy_agent_ep *load;     /* the endpoint slot this connection counts in (route's lock) */
    const Hypha__V1__DpBackendRef
        *subset;        /* MeshTCPRoute: only endpoints with its tags (in snap) */
    const char *ep_sni; /* the picked endpoint's own SNI (a remote subset's; in snap), or NULL */
    void (*connected)(struct hy_px_conn *c, int status);
    void (*up_then)(struct hy_px_conn *c);
    char endpoint[HY_AGENT_EP_KEY]; /* "address:port" being connected to */
    uint8_t *rbuf;                  /* ciphertext received, not yet taken by wolfSSL */
    uint64_t tls_in;                /* ciphertext bytes received in all */
    size_t roff, rlen, rcap;
    uint64_t bytes_up, bytes_down; /* plaintext to the upstream, to the downstream */
    char peer[64];                 /* who connected to us ("": not looked up, hy_px_conn_peer) */
    char src[64];                  /* its address without the port ("": not derived yet) */
    char id[HY_PX_ID_MAX];         /* the TLS peer's SPIFFE ID, once known */
    const char *refusal;           /* inbound: why the verify callback refused the peer */
    bool tls_done;                 /* the TLS handshake completed */
    bool resumed;                  /* and resumed a session */
    bool peer_verified;            /* outbound: the peer's SPIFFE ID is the service's */
    char *peer_ids;     /* resumed: inbound, the caller's URI SANs ('\n'-joined) its ticket
                         * kept; outbound, the SPIFFE ID the cached session's peer had */
    char *resume_key;   /* outbound: where its session is kept (endpoint|SNI) */
    uint64_t tls_gen;   /* outbound: the generation of the context it started from */
    int resume_verdict; /* inbound: 0 not asked yet, 1 its ticket's caller is let in, -1 not */
    bool peer_allowed;  /* inbound: the verify callback let the peer in */
    int peer_alert;     /* the fatal alert the TLS peer sent, 0 if none */
    const char *result;
    void *l7;            /* the HTTP path's state (proxy_l7.h), NULL: bytes */
    struct hy_px_pt *pt; /* transparent: the passthrough relaying it, or NULL */
    uint8_t *pre;        /* inbound: decrypted bytes for the app before the relay */
    size_t pre_len;
    char why[200]; /* details of result, for the access log */
};

struct hy_px_metrics {
    struct hy_series *conns[2], *active[2], *bytes[2], *tls_fail[2], *connect_s[2], *denied;
    struct hy_series *shadow_denied; /* AllowWithShadowDeny: let in, counted as denied */
    struct hy_series *overflow[2];   /* max_connections, max_pending */
    /* L7 families; their series are looked up per worker (l7_conf.c) */
    struct hy_metric *http_requests, *http_duration, *rate_limited, *faults, *mirrors;
    struct hy_series *http_retries, *http_timeouts, *http_ejections;
    struct hy_series *mem_releases;     /* proxy_mem.c */
    struct hy_series *handshakes[2][2]; /* [direction][resumed] */
    struct hy_series *transparent[3];   /* enum hy_px_tp */
};

/* What became of a redirected connection (hypha_dp_transparent_connections_total). */
enum hy_px_tp { HY_PX_TP_MESH, HY_PX_TP_PASSTHROUGH, HY_PX_TP_REFUSED };

/* An endpoint host name's address, as a worker last resolved it. */
struct hy_px_dns {
    char host[256]; /* "" while free */
    struct sockaddr_storage sa;
    uint64_t until; /* loop ms */
};

/* One worker thread: its loop, listeners, connections and the snapshot and
 * TLS contexts its new connections use. Only its own thread touches it,
 * except wake (uv_async_send) and applied (read by the admin server). */
struct hy_px_worker {
    struct hy_agent_worker base; /* first: its loop and thread (agent_pool.h); woken for a new
                                  * snapshot, or to stop */
    struct hy_proxy *p;
    uv_check_t check; /* looks for a new snapshot once per loop iteration */
    uint64_t gen;
    struct hy_sidecar_snapshot *snap; /* what new connections use */
    struct hy_px_tls tls;             /* built from snap */
    struct hy_px_listener *listeners;
    struct hy_px_conn *conns;
    struct hy_sidecar_snapshot *tls_snap; /* what tls was built from (a reference) */
    struct hy_px_dns dns[HY_PX_DNS_SLOTS];
    atomic_uint_fast64_t applied; /* gen, for readers on other threads */
    struct hy_l7_worker *l7;      /* the HTTP path's state (proxy_l7.h); NULL until needed */
    uv_timer_t mem_timer;         /* proxy_mem.c: drops TLS tables when idle */
    uint64_t handshakes, handshakes_seen; /* TLS sessions started; as the timer last saw */
    bool mem_released;                    /* nothing dropped since, nothing to drop */
    struct hy_px_listener *virtuals;      /* socket-less listeners of transparent connections */
    bool no_v6;                           /* no IPv6 here: no transparent IPv6 listeners */
    struct hy_px_pt *pts;                 /* passthrough relays (proxy_passthrough.c) */
    /* what its connections' plaintext sockets read into: a read callback
     * is done with it before it returns (its bytes are encrypted, parsed
     * or copied), so one buffer serves them all */
    uint8_t pbuf[HY_PX_READ_SIZE];
};

struct hy_px_health;
struct hy_l7_hc;
struct hy_alog;
struct hy_trace;

struct hy_proxy {
    uv_loop_t *loop; /* the control loop: health checks run on it */
    struct hy_agent_current *current;
    char inbound_host[64];
    struct hy_px_metrics m;
    pthread_mutex_t lock; /* routes and their refs */
    struct hy_px_route *routes;
    struct hy_agent_pool workers; /* of struct hy_px_worker */
    atomic_bool stopping;
    struct hy_px_health *health;
    struct hy_px_limits *limits;     /* MeshRateLimit buckets of the newest config (under lock) */
    struct hy_l7_hc *hc_queue;       /* HTTP health checks for a worker to run (under lock) */
    struct hy_px_tickets *tickets;   /* inbound: session ticket keys and callers (any worker) */
    struct hy_px_sessions *sessions; /* outbound: sessions to resume (any worker) */
    /* transparent mode: redirect ports, 0 when off (read-only after new) */
    uint16_t tp_outbound, tp_inbound;
    struct hy_alog *alog;   /* MeshAccessLog's backends and writer (alog.h) */
    struct hy_trace *trace; /* MeshTrace's span queue and writer (trace.h) */
};

static inline const char *hy_px_dir_name(enum hy_px_dir d)
{
    return d == HY_PX_IN ? "inbound" : "outbound";
}

/* proxy.c */
/* Picks up a new snapshot, if one was published. Worker thread. */
void hy_px_refresh(struct hy_px_worker *w);
void hy_px_listener_unref(struct hy_px_listener *l);
/* The mesh of s: its config's, else that of its SPIFFE ID; into buf. */
const char *hy_px_mesh(const struct hy_sidecar_snapshot *s, char *buf, size_t size);

/* proxy_mem.c */
/* The heap gauges and the releases counter (into p->m). */
int hy_px_mem_metrics(struct hy_proxy *p, struct hy_metrics *m);
/* A worker's idle timer: worker_open starts it, worker_stop closes it. */
void hy_px_mem_worker_open(struct hy_px_worker *w);
void hy_px_mem_worker_stop(struct hy_px_worker *w);

/* proxy_tls.c */
int hy_px_tls_global_init(void);
void hy_px_tls_global_fini(void);
/* Frees what wolfSSL keeps per thread; a worker calls it as it ends. */
void hy_px_tls_thread_fini(void);
/* Contexts for snapshot s: TLS 1.3, s's certificate, chain and key, peers
 * verified against s's trust bundle (and mTLS required by the server). On
 * failure logs why, returns HY_ECRYPTO or HY_ENOMEM and leaves *t zeroed. */
int hy_px_tls_build(struct hy_proxy *p, const struct hy_sidecar_snapshot *s, struct hy_px_tls *t);
/* The suites and groups the contexts prefer (chosen once, any thread). */
const struct hy_px_tls_choice *hy_px_tls_choice(void);
/* The proxy's ticket keys and session cache, and their metrics. 0 or HY_ENOMEM. */
int hy_px_tls_resume_new(struct hy_proxy *p, struct hy_metrics *m);
void hy_px_tls_resume_free(struct hy_proxy *p);
void hy_px_tls_fini(struct hy_px_tls *t);
/* A session for c from ctx (c->tls is the side it runs over); an
 * outbound one resumes the session kept for its endpoint and SNI, if any.
 * 0, or a negative code with c->why filled. */
int hy_px_tls_start(struct hy_px_conn *c, struct WOLFSSL_CTX *ctx, const char *sni);
/* Moves the handshake on with what c->rbuf holds: 1 done, 0 more to come,
 * < 0 failed (c->why filled). */
int hy_px_tls_handshake(struct hy_px_conn *c);
/* Decrypts what c->rbuf holds into out: > 0 bytes, 0 nothing yet, HY_PX_TLS_EOF
 * at close_notify or the peer's EOF, < 0 otherwise (c->why filled). */
#define HY_PX_TLS_EOF (-1)
int hy_px_tls_read(struct hy_px_conn *c, uint8_t *out, size_t size);
/* Encrypts and queues data on the TLS side. 0 or < 0 (c->why filled). */
int hy_px_tls_write(struct hy_px_conn *c, const uint8_t *data, size_t len);
/* Did the TLS peer refuse our certificate or identity (the alert it sent:
 * bad_certificate, certificate_unknown, access_denied, certificate_required)? */
bool hy_px_tls_refused(const struct hy_px_conn *c);
/* The name of a TLS alert, for logs. */
const char *hy_px_tls_alert_name(int code);
/* Queues a close_notify. */
void hy_px_tls_close_notify(struct hy_px_conn *c);
/* The tags of the TLS peer's certificate into peer (zeroed by the
 * caller); false when it has none. */
bool hy_px_tls_peer_tags(struct hy_px_conn *c, struct hy_permit_peer *peer);
/* The peer certificate's first spiffe:// URI SAN into c->id; false when it
 * has none. */
bool hy_px_tls_peer_id(struct hy_px_conn *c);
/* The inbound check of the peer's certificate after the handshake: its
 * SPIFFE ID into c->id, then hy_px_inbound_refusal with its tags. */
const char *hy_px_tls_peer_refusal(struct hy_px_conn *c);
void hy_px_tls_free(struct hy_px_conn *c);

/* proxy_route.c */
/* The route of outbound port (port 0: of the backend-only outbound of
 * service), made if need be, with one more reference; NULL when out of
 * memory. Any thread. */
struct hy_px_route *hy_px_route_get(struct hy_proxy *p, uint16_t port, const char *service);
void hy_px_route_put(struct hy_proxy *p, struct hy_px_route *r);

/* proxy_health.c: active health checks of every outbound that has
 * health_interval, on the control loop, into the routes' endpoint slots:
 * TCP connects, or HTTP requests a worker makes (l7_health.c). */
int hy_px_health_new(struct hy_proxy *p, struct hy_metrics *m);
/* Follows the current snapshot: checkers start, change and stop. */
void hy_px_health_update(struct hy_proxy *p);
/* Closes its handles (run the control loop afterwards), then free. */
void hy_px_health_stop(struct hy_proxy *p);
void hy_px_health_free(struct hy_proxy *p);
/* What one check's result counts against: a copy travels with an HTTP
 * check to its worker. */
struct hy_px_hc_target {
    struct hy_px_route *route; /* a reference (the checker's, or the HTTP check's own) */
    struct hy_series *passed, *failed;
    uint16_t port;
    unsigned unhealthy_after, healthy_after;
    char service[128];
};
/* Counts a check of endpoint key against t: the endpoint's health flips
 * after the thresholds (logged). Any thread. */
void hy_px_health_record(const struct hy_px_hc_target *t, const char *key, bool ok,
                         const char *why);

/* proxy_conn.c */
struct hy_px_conn *hy_px_conn_new(struct hy_px_listener *l);
/* Ends c: closes its handles, logs its access line, counts it. result is a
 * static word ("ok", "denied", ...); why (printf) says more, or NULL. */
void hy_px_conn_close(struct hy_px_conn *c, const char *result, const char *why, ...)
    __attribute__((format(printf, 3, 4)));
/* Starts relaying both ways (the handshake is done, the upstream connected). */
void hy_px_conn_relay(struct hy_px_conn *c);
/* Starts reading the TLS side for the handshake, with its timeout. */
void hy_px_conn_handshake(struct hy_px_conn *c);
/* Reads what the TLS side has (handshake or relay). */
void hy_px_conn_tls_progress(struct hy_px_conn *c);
/* Connects c->up to addr (timer: timeout_ms); calls done(c, status) once. */
int hy_px_conn_connect(struct hy_px_conn *c, const char *host, uint32_t port, uint64_t timeout_ms,
                       void (*done)(struct hy_px_conn *c, int status));
/* Closes a handle of c's (an L7 timer): c is freed after it has closed. */
void hy_px_conn_close_handle(struct hy_px_conn *c, uv_handle_t *h);
/* Who connected to c ("ADDR:PORT", "[ADDR]:PORT", or "-" once it is
 * gone). An outbound's caller is the local app: its address is looked up
 * (getpeername) only when something asks, a log line or a hash on it,
 * not for every connection. */
const char *hy_px_conn_peer(struct hy_px_conn *c);
/* hy_px_conn_peer without the port (hashPolicies SourceIP), "" if none. */
const char *hy_px_conn_src(struct hy_px_conn *c);
/* Starts or stops reading side s of c as its state says (s->paused...). */
void hy_px_conn_update_reading(struct hy_px_conn *c, struct hy_agent_side *s);
/* Reads the app's side once now (hy_agent_side_read_now), as if the loop
 * had found it readable. */
void hy_px_conn_read_now(struct hy_px_conn *c);
/* Queues data on side s (a copy). 0 or a libuv code. */
int hy_px_write(struct hy_px_conn *c, struct hy_agent_side *s, const void *data, size_t len);
uint64_t hy_px_ms(const Hypha__V1__Duration *d, uint64_t dflt);
/* Closes c->up after a failed connect and calls then(c) once it has
 * closed, unless c ended meanwhile. */
void hy_px_conn_drop_up(struct hy_px_conn *c, void (*then)(struct hy_px_conn *c));

/* proxy_transparent.c */
/* The original destination of a redirected connection (SO_ORIGINAL_DST,
 * IP6T_SO_ORIGINAL_DST): 0, or a negative errno (-ENOENT: not redirected). */
int hy_px_original_dst(uv_tcp_t *t, struct sockaddr_storage *sa);
/* The outbound of cf a connection to ip:port goes to: the one whose
 * service has that VIP, or one of whose own zone's endpoints is there;
 * NULL: outside the mesh. */
const Hypha__V1__DpOutbound *hy_px_transparent_match(const Hypha__V1__DpConfig *cf, const char *ip,
                                                     uint32_t port);
/* A connection accepted on a transparent listener: on to its outbound or
 * inbound, passed through, or refused. */
void hy_px_transparent_accept(struct hy_px_conn *c);
/* Drops the worker's socket-less listeners and closes its passthroughs. */
void hy_px_transparent_stop(struct hy_px_worker *w);
/* proxy_passthrough.c: relays c's socket to dest, plain; c stays open
 * until the relay ends (then it is closed, its access line logged). 0, or
 * UV_ENOMEM (nothing started). Worker thread. */
int hy_px_passthrough_start(struct hy_px_conn *c, const struct sockaddr_storage *dest);
/* c closes on its own (shutdown): its relay ends without it. */
void hy_px_passthrough_detach(struct hy_px_conn *c);
void hy_px_passthrough_stop(struct hy_px_worker *w);

/* proxy_inbound.c, proxy_outbound.c: a connection accepted on l. */
void hy_px_inbound_accept(struct hy_px_conn *c);
void hy_px_inbound_handshake_done(struct hy_px_conn *c);
/* Why the inbound's permissions refuse c's peer (c->id, "" if none, and
 * its tags; common/permit.h decides), or NULL when they let it in: a static string, or the origin
 * of the deciding entry ("MeshTrafficPermission/NAME from[I]"), which
 * lives as long as c->snap. An AllowWithShadowDeny decision lets it in and
 * is counted and logged. */
const char *hy_px_inbound_refusal(struct hy_px_conn *c, const struct hy_permit_peer *peer);
/* Connects c to its inbound's app within the inbound's connectionTimeout
 * (else closed as an unreachable app), then relays (c->pre first), closed
 * after the inbound's idleTimeout with nothing either way. */
void hy_px_inbound_connect_app(struct hy_px_conn *c);
/* MeshTimeout from/rules of inbound in, in ms: connectionTimeout
 * (absent: HY_PX_CONNECT_MS, Kuma's default) and idleTimeout (absent:
 * HY_PX_IDLE_MS; 0: none, as Envoy). Cannot fail. */
uint64_t hy_px_inbound_connect_ms(const Hypha__V1__DpInbound *in);
uint64_t hy_px_inbound_idle_ms(const Hypha__V1__DpInbound *in);
/* Counts and closes c as denied. */
void hy_px_inbound_denied(struct hy_px_conn *c, const char *why);
void hy_px_outbound_accept(struct hy_px_conn *c);
void hy_px_outbound_handshake_done(struct hy_px_conn *c);
/* Stops counting c against its endpoint and as pending (at close). */
void hy_px_outbound_unload(struct hy_px_conn *c);
/* An endpoint of outbound o for one connection or request, by its
 * strategy, passing over those failed lately, unhealthy or (L7) ejected;
 * counted in *load (NULL: not counted; a slot already there is uncounted
 * first). Its index into *index. Takes r's lock. */
const Hypha__V1__DpEndpoint *hy_px_pick(struct hy_px_route *r, const Hypha__V1__DpOutbound *o,
                                        struct hy_agent_ep **load, size_t *index);
/* hy_px_pick among the endpoints k of o with among[k] (NULL: all; a
 * MeshServiceSubset's instances): NULL when among leaves none. */
const Hypha__V1__DpEndpoint *hy_px_pick_among(struct hy_px_route *r, const Hypha__V1__DpOutbound *o,
                                              const bool *among, struct hy_agent_ep **load,
                                              size_t *index);
/* Which endpoints of o are in the running (among[k], when among is not
 * NULL, and neither failed lately, unhealthy nor ejected): ok[k] for each
 * of o->n_endpoints; returns how many. Takes r's lock. */
size_t hy_px_usable(struct hy_px_route *r, const Hypha__V1__DpOutbound *o, const bool *among,
                    bool *ok);

#endif
