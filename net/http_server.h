/* The HTTP server: libwebsockets on a libuv loop the caller owns. It reads
 * whole requests (bounded), hands each to one handler function and writes
 * the response it fills. Shared by the control planes' API and the admin
 * servers of hypha-dp and hypha-ingress. One request per connection: every
 * response says "Connection: close" (http_server.c says why). This header
 * does not include libwebsockets.h, so handlers need not. Two
 * implementations: libwebsockets (http_server.c) and, plain HTTP only,
 * libuv + llhttp (http_uv.c in hypha-net-lite, for the data-plane
 * binaries); an executable links one. */
#ifndef HY_HTTP_SERVER_H
#define HY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "diag.h"

enum hy_http_method {
    HY_HTTP_GET,
    HY_HTTP_HEAD,
    HY_HTTP_PUT,
    HY_HTTP_POST,
    HY_HTTP_DELETE,
    HY_HTTP_PATCH,
    HY_HTTP_OPTIONS,
    HY_HTTP_OTHER,
};

struct hy_http_param {
    char *key, *value; /* owned, URL-decoded */
};

/* A request as the handler sees it. Everything is owned by the server and
 * valid only during the handler call. Absent headers are "". */
struct hy_http_req {
    enum hy_http_method method;
    const char *method_name; /* "GET" ... */
    const char *path;        /* URL-decoded, without the query */
    const struct hy_http_param *params;
    size_t nparams;
    const char *content_type, *accept, *if_match, *authorization, *source;
    const char *scrape_timeout; /* X-Prometheus-Scrape-Timeout-Seconds (Prometheus's scrapes) */
    const char *body;           /* NUL-terminated; "" when there is none */
    size_t body_len;
    const char *peer;   /* client IP address */
    bool peer_loopback; /* 127.0.0.0/8 or ::1 */
    bool tls;           /* arrived on a TLS listener */
    int listener;       /* index of the listener it arrived on */
    uv_loop_t *loop;    /* the server's loop (for handlers that answer later) */
};

/* The response the handler fills. body is written as is with content_type. */
struct hy_http_resp {
    int status;               /* default 200 */
    const char *content_type; /* static string; default "application/json" */
    struct hy_buf body;
    char etag[32];   /* without quotes; "" for none */
    char result[16]; /* Hypha-Result header; "" for none */
    char route[96];  /* route template for metrics, e.g. "/meshes/{mesh}" */
};

typedef void (*hy_http_handler_fn)(void *ud, const struct hy_http_req *req,
                                   struct hy_http_resp *resp);

/* A response the handler finishes after it has returned (e.g. once a write
 * committed on another thread). Loop thread only. */
struct hy_http_later;

/* Called by a handler on the resp it was given: nothing is sent when the
 * handler returns, but when hy_http_later_done is called. Returns the
 * handle, or NULL when out of memory (then answer now, as usual). The
 * connection may close meanwhile: the handle then holds a scratch response
 * and the answer is dropped. */
struct hy_http_later *hy_http_later(struct hy_http_resp *resp);
/* The response to fill: the request's own, or a scratch one once its
 * connection has closed. Valid until hy_http_later_done. Cannot fail. */
struct hy_http_resp *hy_http_later_resp(struct hy_http_later *l);
/* Whether the connection is still there to answer. Cannot fail. */
bool hy_http_later_open(const struct hy_http_later *l);
/* Sends the filled response (or drops it) and frees the handle. May be
 * called before the handler returns (the response is then sent as if the
 * handler had filled it itself). */
void hy_http_later_done(struct hy_http_later *l);

/* Decides on the headers alone whether a request may go on: called once
 * they are parsed, before any byte of the body is read (req->body is "").
 * Returns true to go on; false after filling resp (hy_http_error), which is
 * sent with "Connection: close" while the body is never kept. */
typedef bool (*hy_http_authorize_fn)(void *ud, const struct hy_http_req *req,
                                     struct hy_http_resp *resp);

struct hy_http_listener {
    const char *address;  /* "host:port"; port 0 picks a free one */
    const char *tls_cert; /* PEM paths; both NULL for plain HTTP */
    const char *tls_key;
    const char *name; /* for logs and the refused callback: "http"; NULL: "listener-<i>" */
};

struct hy_http_server_config {
    uv_loop_t *loop; /* the caller's loop; the server joins it */
    const struct hy_http_listener *listeners;
    size_t nlisteners;
    size_t max_body;      /* bytes; larger requests get 413 */
    unsigned timeout_sec; /* a request not fully received by then is dropped; 0 = 10 */
    /* Per listener, the connections whose request is not yet received and
     * authorized ("pending"); one more is refused as it is accepted (a 503
     * on plain HTTP, a bare close on TLS), with a log line at most every
     * second. 0 = HY_HTTP_MAX_PENDING. */
    size_t max_pending;
    hy_http_authorize_fn authorize; /* may be NULL: every request goes on */
    hy_http_handler_fn handler;
    void *ud;
    /* Called after every response with method, route, status and seconds
     * taken; may be NULL. Used for metrics. */
    void (*observe)(void *ud, const char *method, const char *route, int status, double seconds);
    /* Called for every connection refused over max_pending, with the
     * listener's name; may be NULL. Used for metrics. */
    void (*refused)(void *ud, const char *listener);
};

#define HY_HTTP_MAX_PENDING 256

struct hy_http_server;

/* Starts listening on every listener. Errors: -errno-like codes or
 * HY_EINVAL with a log line naming the address and why. On success *out
 * owns the server (hy_http_server_free). */
int hy_http_server_new(const struct hy_http_server_config *cfg, struct hy_http_server **out);
/* The port listener i is bound to (useful with port 0). 0 if unknown. */
int hy_http_server_port(const struct hy_http_server *s, size_t i);
/* Listener i's pending connections right now (see max_pending); 0 if
 * unknown. Cannot fail. */
size_t hy_http_server_pending(const struct hy_http_server *s, size_t i);
/* Stops listening and starts closing connections; libwebsockets closes
 * its handles asynchronously, so run the loop until it has no active handles
 * before hy_http_server_free. NULL and repeated calls are fine. */
void hy_http_server_stop(struct hy_http_server *s);
/* Frees the server (stopping it first if that was not done, in which case
 * some memory of lws is only released once the loop has run). NULL is fine. */
void hy_http_server_free(struct hy_http_server *s);

/* Query parameter by key, or NULL. */
const char *hy_http_param(const struct hy_http_req *req, const char *key);

/* Fills resp with a JSON error {"title","details","causes":[...]}; causes
 * come from diag (may be NULL), each as {"field","message"}, the field
 * carrying "source:line:col: path" when the position is known. */
void hy_http_error(struct hy_http_resp *resp, int status, const char *title, const char *details,
                   const struct hy_diag *diag);

#endif
