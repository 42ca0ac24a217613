/* The sidecar's HTTP (L7) data path, shared by its files: l7_conf.c (what a
 * worker compiles of a config, metrics, access log), l7_h2.c (nghttp2
 * sessions over a proxied mTLS connection: the pooled hop between
 * sidecars), l7_pool.c (the pool of those connections and the endpoint
 * pick per request), l7_down.c (the app's HTTP/1.1 connection to its
 * outbound: requests, routes, retries, timeouts), l7_in.c (requests at an
 * inbound: permission, rate limit, faults), l7_app.c (keep-alive
 * HTTP/1.1 connections to the local app) and l7_health.c (MeshHealthCheck
 * http checks, run on the pooled connections).
 *
 * Only protocol "http" goes this way (hy_px_l7_protocol); everything else is
 * relayed as bytes (proxy_conn.c). A connection taken by the L7 path is
 * still a struct hy_px_conn (its sockets, TLS, timers, access line); c->l7
 * points at its L7 state and proxy_conn.c hands it the bytes.
 *
 * Threads: all of it is per worker; workers share only the routes
 * (struct hy_px_route: endpoint slots under their lock, atomics) and the
 * rate-limit buckets (struct hy_px_limits, atomics). */
#ifndef HY_PROXY_L7_H
#define HY_PROXY_L7_H

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "h1.h"
#include "http_head.h"
#include "l7_fault.h"
#include "l7_hash.h"
#include "l7_limit.h"
#include "l7_outlier.h"
#include "l7_retry.h"
#include "l7_route.h"
#include "proxy_int.h"
#include "trace.h"

#define HY_L7_REPLAY_MAX (64u << 10)    /* request body kept for retries; more: not retried */
#define HY_L7_MIRROR_MAX (64u << 10)    /* request body a RequestMirror copies; more: none */
#define HY_L7_BODY_HIGH (256u << 10)    /* stop reading a side while this much waits */
#define HY_L7_TIMEOUT_MS 15000          /* requestTimeout unset (Kuma's default) */
#define HY_L7_STREAM_IDLE_MS 1800000u   /* streamIdleTimeout unset (Kuma's default: 30 min) */
#define HY_L7_APP_IDLE_MAX 256          /* idle keep-alive connections to apps, per worker */
#define HY_L7_STREAM_WINDOW (1u << 20)  /* HTTP/2 stream receive window */
#define HY_L7_CONN_WINDOW (16u << 20)   /* HTTP/2 connection receive window */
#define HY_L7_MAX_STREAMS 256           /* streams one pooled connection carries at once */
#define HY_L7_UPGRADE "hypha-upgrade"   /* between sidecars: the app's Upgrade (or CONNECT) */
#define HY_L7_UPGRADED "hypha-upgraded" /* between sidecars: the app's 101 (or 2xx to CONNECT) */

enum hy_l7_kind { HY_L7_DOWN, HY_L7_CLIENT, HY_L7_SERVER };

struct hy_l7_worker;
struct hy_l7_h2;
struct hy_l7_down;

/* ----- what a worker compiled of a snapshot (l7_conf.c) ----- */

/* A per-worker, per-outbound anchor of pooled connections: a listener that
 * never listens (its route: the outbound's shared endpoint state), so the
 * pooled connections are ordinary struct hy_px_conn. Lives as long as the
 * worker. */
struct hy_l7_anchor {
    struct hy_l7_anchor *next;
    char service[256];
    uint16_t port; /* the outbound's port, 0 for a backend-only outbound */
    struct hy_px_listener *l;
    struct hy_l7_h2 *conns; /* the pool: h2 client connections to its endpoints */
};

struct hy_l7_svc {
    const Hypha__V1__DpOutbound *o;
    struct hy_sidecar_snapshot *snap; /* o's, borrowed from the config */
    struct hy_l7_routes *routes;      /* never NULL once built */
    struct hy_l7_hash_table *hash;    /* lb RingHash or Maglev: over o's endpoints; else NULL */
    struct hy_l7_anchor *a;
    char peer_id[HY_PX_ID_MAX]; /* the SPIFFE ID its pooled hops check, for the access log */
};

/* A worker's view of one snapshot. Requests hold a reference. */
struct hy_l7_cfg {
    unsigned refs; /* worker thread only */
    struct hy_sidecar_snapshot *snap;
    struct hy_l7_svc *svcs;
    size_t n;
};

/* The rate-limit buckets of the sidecar, shared by the workers. */
struct hy_px_limits {
    atomic_uint refs;
    uint64_t gen;
    struct hy_l7_limits *l;
};

struct hy_l7_series; /* the worker's cache of metric series */

struct hy_l7_worker {
    struct hy_px_worker *w;
    struct hy_l7_cfg *cfg;
    struct hy_px_limits *limits;
    struct hy_l7_anchor *anchors;
    struct hy_l7_h2 *dirty;   /* sessions with output to flush at the end of this loop turn */
    struct hy_l7_down *downs; /* app connections with output to flush then */
    struct hy_l7_app *idle;   /* keep-alive connections to apps */
    struct hy_l7_app *busy;
    struct hy_l7_app_h2 *apph2s; /* h2c connections to http2/grpc apps (l7_app_h2.c) */
    size_t nidle;
    struct hy_buf out; /* what one flush gathers */
    uint64_t rng;
    struct hy_l7_series *series;
    struct hy_l7_hc *hcs;          /* health checks under way (l7_health.c) */
    uv_prepare_t prepare;          /* flushes what timers made dirty, before the loop polls */
    uint8_t rbuf[HY_PX_READ_SIZE]; /* what app sockets read into */
};

/* ----- HTTP/2 over a proxied connection (l7_h2.c) ----- */

/* One try of a request on a pooled connection (a client stream). */
struct hy_l7_cs;
struct hy_l7_cs_ops {
    /* The response head is in cs->resp; end: no body follows. */
    void (*head)(struct hy_l7_cs *cs, bool end);
    void (*data)(struct hy_l7_cs *cs, const uint8_t *p, size_t n);
    void (*end)(struct hy_l7_cs *cs);
    /* The stream ended without a response (or mid-body); cs is detached. */
    void (*fail)(struct hy_l7_cs *cs, enum hy_l7_try_end why);
    /* Request body bytes for the stream: > 0, 0 with *eof, or
     * NGHTTP2_ERR_DEFERRED when none yet. */
    ssize_t (*read)(struct hy_l7_cs *cs, uint8_t *buf, size_t len, bool *eof);
};

struct hy_l7_cs {
    const struct hy_l7_cs_ops *ops;
    struct hy_l7_h2 *h2; /* NULL: detached */
    int32_t id;
    struct hy_l7_cs *prev, *next; /* h2->streams */
    struct hy_http_head resp;
    struct hy_http_head trailers; /* the response's trailers, once ops->end comes */
    /* Request trailers to send after the body (read once ops->read said
     * eof; the owner keeps them until the stream ends), or NULL. */
    const struct hy_http_head *req_trailers;
    bool got_head;
};

/* A server stream's handler: the inbound's (l7_in.c, from a peer
 * sidecar) or the outbound's h2c front (l7_front.c, from the app). u is
 * what new() returned. field: trailer says the request's trailers. */
struct hy_l7_sops {
    void *(*new)(struct hy_l7_h2 *h2, int32_t id);
    int (*field)(void *u, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen,
                 bool trailer);
    void (*head)(void *u, bool end);
    void (*data)(void *u, const uint8_t *p, size_t n);
    void (*end)(void *u);
    void (*closed)(void *u);
    ssize_t (*read)(void *u, uint8_t *buf, size_t len, uint32_t *flags);
};

/* What carries a session's bytes: the pooled hop's TLS (proxy_conn.c),
 * or plain TCP to the app (h2c: the outbound's front on the app's own
 * connection, the inbound's connection to an http2/grpc app). */
struct hy_l7_wire {
    /* n bytes out; < 0: the connection is gone (it was closed). */
    int (*write)(void *u, const uint8_t *p, size_t n);
    /* Close the connection (an error, or the session is done). */
    void (*close)(void *u, const char *result, const char *why);
    void *u;
};

struct hy_l7_ss; /* a server stream (l7_in.c) */

struct hy_l7_h2 {
    enum hy_l7_kind kind;   /* first: c->l7 points here (the TLS wire) */
    struct hy_px_conn *c;   /* the TLS wire's, the front's (the app's connection); else NULL */
    struct hy_l7_wire wire; /* write NULL: c's TLS */
    const struct hy_l7_sops *sops; /* server: its streams' handler */
    struct hy_l7_worker *lw;
    nghttp2_session *s;
    bool ready; /* the TLS handshake is done: output may go */
    bool dirty; /* in lw->dirty */
    bool dead;  /* the connection is closing */
    bool failed_connect;
    struct hy_l7_h2 *dirty_next;
    /* client */
    struct hy_l7_anchor *a;
    struct hy_l7_h2 *prev, *next; /* a->conns */
    char ep[HY_AGENT_EP_KEY];
    char sni[256];
    unsigned nstreams;
    struct hy_l7_cs *streams;
    uint64_t born_ms; /* loop time it was made (maxConnectionDuration) */
    /* server */
    bool sniff; /* until the caller's first bytes say HTTP/2 (else: a TCP caller) */
    uint8_t sniffed[24];
    size_t nsniffed;
    struct hy_permit_peer *peer;
    struct hy_l7_ss *sstreams;
};

/* A client session for pool connection c; c->l7 = the result. NULL: no memory. */
struct hy_l7_h2 *hy_l7_h2_client_new(struct hy_l7_worker *lw, struct hy_px_conn *c);
/* A server session for inbound connection c; c->l7 = the result. */
struct hy_l7_h2 *hy_l7_h2_server_new(struct hy_l7_worker *lw, struct hy_px_conn *c);
/* A session over a plain wire (h2c): server (its streams go to sops) or
 * client; ready at once. c: the proxied connection it serves, or NULL.
 * NULL: no memory. */
struct hy_l7_h2 *hy_l7_h2_plain_new(struct hy_l7_worker *lw, struct hy_px_conn *c, bool server,
                                    const struct hy_l7_sops *sops, const struct hy_l7_wire *wire);
/* Submits trailers t on stream id of s (the DATA before them must have
 * said NGHTTP2_DATA_FLAG_NO_END_STREAM). 0, or < 0. */
int hy_l7_h2_trailer(nghttp2_session *s, int32_t id, const struct hy_http_head *t);
/* Lowercased nghttp2 name/value pairs of h's fields into nv (at most max),
 * names copied into names (h->bytes + 1 long); how many. */
size_t hy_l7_h2_fields(nghttp2_nv *nv, size_t max, char *names, const struct hy_http_head *h);
/* Frees the session; client streams left fail with why, server streams are
 * abandoned (sops->closed). */
void hy_l7_h2_free(struct hy_l7_h2 *h2, enum hy_l7_try_end why);
/* Queues h2 for the end-of-turn flush. */
void hy_l7_h2_dirty(struct hy_l7_h2 *h2);
/* Writes what every dirty session has to send, one TLS write each. */
void hy_l7_h2_flush_all(struct hy_l7_worker *lw);
/* Starts request req (body: one follows through ops->read) as cs on h2.
 * 0, or < 0 (cs untouched). */
int hy_l7_h2_submit(struct hy_l7_h2 *h2, struct hy_l7_cs *cs, const struct hy_http_head *req,
                    bool body);
/* Detaches cs and resets its stream (CANCEL). */
void hy_l7_h2_cancel(struct hy_l7_cs *cs);
/* More request body for cs (after ops->read deferred). */
void hy_l7_h2_resume(struct hy_l7_cs *cs);
/* n response bytes of cs were passed on: let the peer send as many more. */
void hy_l7_h2_consume(struct hy_l7_h2 *h2, int32_t id, size_t n);
/* Can h2 take one more stream? */
bool hy_l7_h2_usable(const struct hy_l7_h2 *h2);
/* Bytes from / end of the TLS peer. */
int hy_l7_h2_recv(struct hy_l7_h2 *h2, const uint8_t *p, size_t n);

/* Building a request head from HTTP/2 fields (the inbound, the fuzz
 * target): one field; then the checks once all are in. 0, or < 0 with
 * *why (static) saying what was wrong (the stream is answered 400). */
int hy_l7_h2_req_field(struct hy_http_head *h, const uint8_t *name, size_t nlen,
                       const uint8_t *value, size_t vlen, const char **why);
int hy_l7_h2_req_done(struct hy_http_head *h, const char **why);

/* ----- the pool (l7_pool.c) ----- */

/* A pooled connection to endpoint e of svc, usable for one more stream:
 * one of the worker's, else a new one (connecting). NULL: none could be
 * made (why says). */
struct hy_l7_h2 *hy_l7_pool_get(struct hy_l7_worker *lw, const struct hy_l7_svc *svc,
                                const Hypha__V1__DpEndpoint *e, char *why, size_t size);
/* The endpoint of svc for one request (the outbound's balancing strategy,
 * passing over ejected, failed and unhealthy endpoints; RingHash and
 * Maglev: the one the request's hash falls on, else the next usable one
 * on the ring), among the endpoints k with among[k] (NULL: all; a
 * MeshServiceSubset); its index in *index; NULL when there is none. h:
 * the request, from: the app's connection (hashPolicies SourceIP and
 * Connection hash on its address; may be NULL). */
const Hypha__V1__DpEndpoint *hy_l7_pick(struct hy_l7_worker *lw, const struct hy_l7_svc *svc,
                                        const struct hy_http_head *h, struct hy_px_conn *from,
                                        const bool *among, size_t *index);
/* hy_l7_pick among the endpoints of svc a route's backendRef ref selects
 * (a MeshServiceSubset: those carrying its tags; NULL or no tags: all).
 * *oom set when the selection could not be allocated. */
const Hypha__V1__DpEndpoint *hy_l7_pick_ref(struct hy_l7_worker *lw, const struct hy_l7_svc *svc,
                                            const struct hy_http_head *h, struct hy_px_conn *from,
                                            const Hypha__V1__DpBackendRef *ref, size_t *index,
                                            bool *oom);
/* Outlier detection: what a request to endpoint index of svc came to. */
void hy_l7_outlier(struct hy_l7_worker *lw, const struct hy_l7_svc *svc, size_t index,
                   enum hy_l7_outlier_result r, unsigned status);
/* Closes every pooled connection and anchor (worker stop). */
void hy_l7_pool_stop(struct hy_l7_worker *lw);
/* Pool connection c's handshake is done and its peer checked. */
void hy_l7_pool_ready(struct hy_px_conn *c);

/* ----- per worker (l7_conf.c) ----- */

struct hy_l7_worker *hy_l7_worker(struct hy_px_worker *w);
void hy_l7_cfg_unref(struct hy_l7_cfg *cfg);
struct hy_l7_cfg *hy_l7_cfg_ref(struct hy_l7_cfg *cfg);
/* The outbound of cfg for service (NULL: none), and that on port. */
struct hy_l7_svc *hy_l7_cfg_service(struct hy_l7_cfg *cfg, const char *service);
struct hy_l7_svc *hy_l7_cfg_port(struct hy_l7_cfg *cfg, uint32_t port);
/* The inbound on port of the worker's newest config, or NULL. */
const Hypha__V1__DpInbound *hy_l7_inbound(struct hy_l7_worker *lw, uint32_t port);
uint64_t hy_l7_random(struct hy_l7_worker *lw);

/* One request done: metrics, the access-log line and its span. */
struct hy_l7_done {
    enum hy_px_dir dir;
    uint16_t port;
    const char *service, *route, *method, *authority, *path, *upstream, *id, *result;
    unsigned status, retries;
    double seconds, upstream_seconds;
    struct hy_px_conn *from;          /* who connected, for access logs (hy_px_conn_peer) */
    const struct hy_http_head *req;   /* the request, for access logs' %REQ(...)% */
    const struct hy_trace_ctx *trace; /* its span (MeshTrace), or NULL */
};
void hy_l7_log(struct hy_l7_worker *lw, const struct hy_l7_done *d);
enum hy_l7_count { HY_L7_RETRY, HY_L7_TIMEOUT, HY_L7_EJECTION };
void hy_l7_count(struct hy_l7_worker *lw, enum hy_l7_count what);
void hy_l7_count_limited(struct hy_l7_worker *lw, const char *kind);
void hy_l7_count_fault(struct hy_l7_worker *lw, const char *kind);
/* gRPC's code for an HTTP status the sidecar answers a gRPC call with
 * itself (Envoy's Grpc::Utility::httpToGrpcStatus, the gRPC spec's
 * mapping): 400 INTERNAL (13), 401 UNAUTHENTICATED (16), 403
 * PERMISSION_DENIED (7), 404 UNIMPLEMENTED (12), 429, 502, 503, 504
 * UNAVAILABLE (14), any other UNKNOWN (2). The answer is trailers-only:
 * HTTP 200, content-type application/grpc, grpc-status, grpc-message. */
unsigned hy_l7_grpc_code(unsigned http_status);
/* hypha_dp_http_mirrors_total{result}: "sent", "body_too_large" (over
 * HY_L7_MIRROR_MAX: not mirrored), "failed" (no endpoint, no memory). */
void hy_l7_count_mirror(struct hy_l7_worker *lw, const char *result);

/* MeshHTTPRoute RequestMirror: a copy of req with body[0..len) (the whole
 * request) to an endpoint of ref's service (of its subset when it has
 * tags), on its own pooled stream; its answer is dropped and nothing
 * waits on it (l7_down.c). */
void hy_l7_mirror(struct hy_l7_worker *lw, struct hy_l7_cfg *cfg,
                  const Hypha__V1__DpBackendRef *ref, const struct hy_http_head *req,
                  const void *body, size_t len, struct hy_px_conn *from);
/* The request a mirror waited on grew past HY_L7_MIRROR_MAX: counted, and
 * *mirror (the pending mirror's service) becomes NULL. */
void hy_l7_mirror_too_big(struct hy_l7_worker *lw, const Hypha__V1__DpBackendRef **mirror);

/* ----- outbound: the app's HTTP/1.1 (l7_down.c) ----- */

void hy_l7_down_start(struct hy_px_conn *c);
void hy_l7_down_data(struct hy_px_conn *c, const uint8_t *p, ssize_t n);
void hy_l7_down_written(struct hy_px_conn *c);
void hy_l7_down_closed(struct hy_px_conn *c);
void hy_l7_down_free(struct hy_px_conn *c);
/* Writes what every app connection gathered in this loop turn. */
void hy_l7_down_flush_all(struct hy_l7_worker *lw);

/* ----- outbound: the app's h2c (l7_front.c) ----- */

struct hy_l7_front;
/* An h2c server session on the app's connection c (l7_down.c's, which
 * saw HTTP/2's preface). NULL: no memory. */
struct hy_l7_front *hy_l7_front_new(struct hy_l7_worker *lw, struct hy_px_conn *c);
/* Bytes from the app (n < 0: its end). 0, or < 0 when c was closed. */
int hy_l7_front_data(struct hy_l7_front *f, const uint8_t *p, ssize_t n);
/* c closes: the streams end (logged), the session goes. NULL: nothing. */
void hy_l7_front_free(struct hy_l7_front *f);

/* ----- inbound (l7_in.c) ----- */

void hy_l7_in_start(struct hy_px_conn *c);
/* Server stream callbacks from l7_h2.c. */
struct hy_l7_ss *hy_l7_ss_new(struct hy_l7_h2 *h2, int32_t id);
int hy_l7_ss_field(struct hy_l7_ss *ss, const uint8_t *name, size_t nlen, const uint8_t *value,
                   size_t vlen);
void hy_l7_ss_head(struct hy_l7_ss *ss, bool end);
void hy_l7_ss_data(struct hy_l7_ss *ss, const uint8_t *p, size_t n);
void hy_l7_ss_end(struct hy_l7_ss *ss);
void hy_l7_ss_closed(struct hy_l7_ss *ss);
ssize_t hy_l7_ss_read(struct hy_l7_ss *ss, uint8_t *buf, size_t len, uint32_t *flags);

/* The inbound's server streams (l7_h2.c's sops for hy_l7_h2_server_new). */
extern const struct hy_l7_sops hy_l7_in_sops;

/* ----- h2c connections to the local app (l7_app_h2.c) ----- */

/* A multiplexed h2c (prior knowledge) connection to an http2/grpc app at
 * host:port with room for one more stream: one of the worker's, else a
 * new one (connecting; requests submitted meanwhile go once it is up, and
 * fail with HY_L7_TRY_CONNECT_FAILURE if it never is). NULL: no memory or
 * a bad address (why says). */
struct hy_l7_h2 *hy_l7_app_h2_get(struct hy_l7_worker *lw, const char *host, uint32_t port,
                                  char *why, size_t size);
/* MeshTimeout from/rules for h2 (one hy_l7_app_h2_get gave): connect_ms
 * (0: none), how long it may take to connect before its streams fail as
 * for an unreachable app (counted as a timeout); idle_ms (0: none), how
 * long it may carry no stream before it is closed. Cannot fail. */
void hy_l7_app_h2_timeouts(struct hy_l7_h2 *h2, uint64_t connect_ms, uint64_t idle_ms);
/* Closes them all (the worker stops): their streams fail. */
void hy_l7_app_h2_stop_all(struct hy_l7_worker *lw);

/* ----- connections to the local app (l7_app.c) ----- */

struct hy_l7_app;
struct hy_l7_app_ops {
    void (*connected)(void *u, int status);
    int (*head)(void *u, struct hy_http_head *h, bool body);
    int (*body)(void *u, const uint8_t *p, size_t n);
    /* The response ended; trailers (a chunked response's; may be moved
     * out) or NULL. */
    void (*end)(void *u, struct hy_http_head *trailers);
    /* The connection failed or closed before the response ended. */
    void (*fail)(void *u, int status, const char *why);
    void (*written)(void *u); /* its write queue went down */
};
/* A keep-alive connection to host:port for one exchange (idle or new;
 * connected() comes either way, maybe at once). NULL: no memory. */
struct hy_l7_app *hy_l7_app_get(struct hy_l7_worker *lw, const char *host, uint32_t port,
                                const struct hy_l7_app_ops *ops, void *u, bool fresh);
/* maxConnectionDuration (ms, 0: none) of a, from when it was made: past
 * it, a is closed instead of kept idle. Cannot fail. */
void hy_l7_app_max_duration(struct hy_l7_app *a, uint64_t ms);
/* MeshTimeout from/rules of a's inbound: connect_ms (0: none), how long a
 * new a may take to connect before its user hears fail(503) (counted as a
 * timeout); idle_ms (0: none), how long a may wait in the idle pool
 * before it is closed. Cannot fail. */
void hy_l7_app_timeouts(struct hy_l7_app *a, uint64_t connect_ms, uint64_t idle_ms);
/* A new config cf: the idle connections take its inbounds' idleTimeout
 * now, not at their next use (closed at once if idle longer already).
 * Cannot fail. */
void hy_l7_app_retime(struct hy_l7_worker *lw, const Hypha__V1__DpConfig *cf);
int hy_l7_app_write(struct hy_l7_app *a, const void *p, size_t n);
size_t hy_l7_app_queued(const struct hy_l7_app *a);
void hy_l7_app_expect(struct hy_l7_app *a, const char *method);
/* The exchange is over: keep (idle, if the response allowed it) or close. */
void hy_l7_app_release(struct hy_l7_app *a, bool keep);
/* Pass-through after an upgrade: raw bytes both ways. */
void hy_l7_app_tunnel(struct hy_l7_app *a, void (*data)(void *u, const uint8_t *p, ssize_t n));
void hy_l7_app_pause(struct hy_l7_app *a, bool pause);
/* Shuts the write side down (the tunnel's caller sent its end). */
void hy_l7_app_shut(struct hy_l7_app *a);
void hy_l7_app_stop_all(struct hy_l7_worker *lw);

/* ----- HTTP health checks (l7_health.c) ----- */

/* One HTTP health check (MeshHealthCheck http) of one endpoint: made on
 * the control loop (proxy_health.c) and queued on p->hc_queue; a worker
 * runs it as one GET of the outbound's health_http_path on its pooled
 * connection to the endpoint (so the traffic's SNI and peer identity
 * check), :authority the service. Healthy iff the status is one of
 * health_expected_statuses (none: 200, Envoy's default). */
struct hy_l7_hc {
    struct hy_l7_hc *prev, *next; /* p->hc_queue, then lw->hcs */
    struct hy_px_hc_target t;     /* t.route: the check's own reference, counted in hc_running */
    char key[HY_AGENT_EP_KEY];
    uint64_t timeout_ms;
    /* the worker's */
    struct hy_l7_worker *lw;
    struct hy_l7_cfg *cfg; /* a reference: svc's */
    const struct hy_l7_svc *svc;
    struct hy_l7_cs cs;
    struct hy_buf req, body; /* grpc: the request's message, the answer's */
    size_t req_off;
    uv_timer_t timer;
    bool done;
};
/* The ServingStatus in one gRPC message (flag, length, then
 * grpc.health.v1.HealthCheckResponse) of n bytes at p: 0 UNKNOWN (also
 * when absent), 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN; -1 when it
 * is not one well-formed message. Cannot fail otherwise. */
int hy_l7_hc_grpc_status(const uint8_t *p, size_t n);
/* Frees a check that is not (or no longer) running. Any thread. */
void hy_l7_hc_free(struct hy_proxy *p, struct hy_l7_hc *hc);
/* Runs the checks queued on p->hc_queue. Worker thread. */
void hy_px_l7_hc_take(struct hy_px_worker *w);
/* Ends the worker's checks, unrecorded (it stops). */
void hy_l7_hc_stop(struct hy_l7_worker *lw);

/* ----- the hooks proxy*.c call ----- */

/* Does a protocol go the L7 way? http, http2 and grpc. */
bool hy_px_l7_protocol(const char *protocol);
/* Does the app speak h2c (prior knowledge)? http2 and grpc. */
bool hy_l7_h2c_protocol(const char *protocol);
void hy_px_l7_refresh(struct hy_px_worker *w);
void hy_px_l7_turn(struct hy_px_worker *w);
void hy_px_l7_stop(struct hy_px_worker *w);
void hy_px_l7_fini(struct hy_px_worker *w);
/* Frees the proxy's rate-limit set (the workers have ended). */
void hy_px_l7_proxy_fini(struct hy_proxy *p);
/* c->l7 set: decrypted bytes (n > 0), the TLS peer's end (n == 0). */
void hy_px_l7_tls(struct hy_px_conn *c, const uint8_t *p, size_t n);
void hy_px_l7_closed(struct hy_px_conn *c);
/* c's handles have closed: its L7 state goes. */
void hy_px_l7_free(struct hy_px_conn *c);

#endif
