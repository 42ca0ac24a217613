/* The app's HTTP/1.1 connection to an HTTP outbound: requests parsed
 * strictly (net/h1.h: smuggling answered 400 and the connection closed),
 * one at a time in order (keep-alive, pipelining), each routed
 * (MeshHTTPRoute: matches, filters, weighted backends, redirects, mirrors),
 * sent to an endpoint picked for it over the pooled HTTP/2 hop, tried
 * again as MeshRetry says within MeshTimeout's requestTimeout, and its
 * response written back as HTTP/1.1. An upgrade (WebSocket, CONNECT)
 * becomes a byte tunnel over one HTTP/2 stream. An http2/grpc outbound
 * whose app opens with HTTP/2's preface (h2c, prior knowledge) is handed
 * to l7_front.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_l7.h"
#include "str.h"
#include "poison.h"

#define DRAIN_MS HY_PX_LINGER_MS

/* One request and its tries. */
struct ex {
    struct hy_l7_cs cs; /* the try under way */
    struct hy_l7_cfg *cfg;
    struct hy_l7_svc *front, *svc;
    const Hypha__V1__DpBackendRef *ref; /* the route's pick (its subset tags); NULL: all of svc */
    const Hypha__V1__DpBackendRef *mirror; /* RequestMirror's (in cfg) until the body is all in */
    int route;
    struct hy_http_head req;
    struct hy_http_head req_trailers; /* a chunked request's, for the callee */
    struct hy_buf body;               /* request body from body_base on */
    size_t body_base;                 /* bytes dropped from the front (sent, not replayable) */
    size_t sent;                      /* absolute offset the try under way has sent up to */
    bool req_end, replay, has_body;   /* the request ended; its body is all kept; it has one */
    bool resp_started, chunked, close_delim, upgrade, tunnel, head_method;
    bool retrying, count_req, count_retry;
    unsigned tries, status;
    size_t ep_index;
    bool has_ep;
    char upstream[HY_AGENT_EP_KEY];
    const char *peer_id; /* the SPIFFE ID the pooled hop checked (svc's, in cfg) */
    uint64_t start_ms, up_ms;
    uint64_t last_ms;         /* the stream's last activity, either way */
    uint64_t idle_ms, max_ms; /* streamIdleTimeout, maxStreamDuration; 0: none */
    size_t unconsumed;
    const char *result;
    struct hy_trace_ctx trace; /* MeshTrace: the client span */
};

struct hy_l7_down {
    enum hy_l7_kind kind; /* first */
    struct hy_px_conn *c;
    struct hy_l7_worker *lw;
    struct hy_h1 *p;
    struct hy_buf in; /* bytes read, not yet parsed (the next pipelined request) */
    size_t in_off;
    bool busy, keep, http10, close_after, draining, gone;
    bool parsing;      /* inside hy_h1_feed: its callbacks must not feed it again */
    bool flush_queued; /* in lw->downs */
    bool sniff;        /* an http2/grpc outbound: until the first bytes say h2c or HTTP/1.1 */
    struct hy_l7_front *front; /* h2c: everything goes there */
    struct hy_l7_down *flush_next;
    struct hy_buf out;    /* for the app, written at the end of the loop turn */
    uv_timer_t timer;     /* requestTimeout, or the drain after a refusal */
    uv_timer_t try_timer; /* perTryTimeout, or the backoff before a retry */
    /* streamIdleTimeout and maxStreamDuration of the request under way */
    uv_timer_t stream_timer;
    bool head_timed;   /* timer runs requestHeadersTimeout for a request begun */
    bool head_pending; /* bytes of a request head went to the parser, no head came yet */
    struct ex ex;
};

static const struct hy_l7_cs_ops ex_ops;

static struct hy_l7_down *down_of(struct hy_px_conn *c)
{
    return c->l7;
}

static uint64_t now_of(struct hy_l7_down *d)
{
    return uv_now(&d->lw->w->base.loop);
}

static bool grpc_of(const struct ex *e)
{
    return e->svc && e->svc->o->protocol && !strcmp(e->svc->o->protocol, "grpc");
}

static const Hypha__V1__DpHttpRetry *retry_of(const struct ex *e)
{
    if (!e->svc)
        return NULL;
    return grpc_of(e) ? e->svc->o->grpc_retry : e->svc->o->http_retry;
}

/* ----- writing to the app ----- */

/* Writes what d gathered in this loop turn (a response's head and its
 * first bytes go in one write). */
static void down_flush(struct hy_l7_down *d)
{
    struct hy_px_conn *c = d->c;
    if (!d->out.len || c->closing)
        return;
    int rc = hy_px_write(c, &c->down, d->out.data, d->out.len);
    d->out.len = 0;
    if (rc < 0)
        hy_px_conn_close(c, "error", "writing to the app: %s", uv_strerror(rc));
}

void hy_l7_down_flush_all(struct hy_l7_worker *lw)
{
    while (lw->downs) {
        struct hy_l7_down *d = lw->downs;
        lw->downs = d->flush_next;
        d->flush_queued = false;
        down_flush(d);
    }
}

static void down_write(struct hy_l7_down *d, const void *p, size_t n)
{
    struct hy_px_conn *c = d->c;
    if (c->closing || !n)
        return;
    c->bytes_down += n;
    if (hy_buf_append(&d->out, p, n) < 0) {
        hy_px_conn_close(c, "error", "out of memory writing to the app");
        return;
    }
    if (d->out.len >= HY_L7_BODY_HIGH) {
        down_flush(d);
    } else if (!d->flush_queued) {
        d->flush_queued = true;
        d->flush_next = d->lw->downs;
        d->lw->downs = d;
    }
}

static void on_drain_timer(uv_timer_t *t)
{
    struct hy_l7_down *d = t->data;
    hy_px_conn_close(d->c, d->ex.result ? d->ex.result : "ok", NULL);
}

/* The app asked for the close (Connection: close, or HTTP/1.0 without
 * keep-alive), the sidecar had no reason of its own to close (a request
 * whose body it did not read all of sets close_after), and nothing the
 * app sent is unread here. After "close" the app sends nothing more
 * (RFC 9112 9.6: a client MUST NOT), so a close now sends no reset, and
 * the connection ends without waiting for the app's FIN, as nginx and
 * HAProxy do: no shutdown(2) either, close(2) sends the FIN after the
 * answer. An app that sends more anyway gets a reset, as from nginx. */
static bool app_done(struct hy_l7_down *d)
{
    return !d->keep && !d->close_after && d->in.len <= d->in_off;
}

static void on_shut(struct hy_agent_side *s)
{
    struct hy_px_conn *c = s->tcp.data;
    struct hy_l7_down *d = c->l7;
    if (c->closing || !d)
        return;
    if (c->down.eof || app_done(d)) {
        hy_px_conn_close(c, "ok", NULL);
        return;
    }
    /* what the app still sends is read and dropped a while (a lingering
     * close: a reset could overtake the answer) */
    d->draining = true;
    uv_timer_start(&d->timer, on_drain_timer, DRAIN_MS, 0);
}

/* Ends the connection once what was queued is written. */
static void down_end(struct hy_l7_down *d)
{
    struct hy_px_conn *c = d->c;
    if (c->closing)
        return;
    d->draining = true;
    down_flush(d); /* before the shutdown, which follows what is queued */
    if (app_done(d))
        hy_agent_side_end(&c->down, on_shut);
    else
        hy_agent_side_shut(&c->down, on_shut);
}

/* ----- the exchange's end ----- */

static void parse(struct hy_l7_down *d);

static void ex_reset(struct ex *e)
{
    hy_http_head_fini(&e->req);
    hy_http_head_fini(&e->req_trailers);
    hy_http_head_fini(&e->cs.resp);
    hy_http_head_fini(&e->cs.trailers);
    hy_buf_fini(&e->body);
    hy_l7_cfg_unref(e->cfg);
    memset(e, 0, sizeof(*e));
    e->cs.ops = &ex_ops;
}

static void ex_finish(struct hy_l7_down *d, const char *result)
{
    struct ex *e = &d->ex;
    struct hy_px_conn *c = d->c;
    if (!d->busy)
        return;
    if (e->cs.h2)
        hy_l7_h2_cancel(&e->cs);
    if (!e->result)
        e->result = result;
    uv_timer_stop(&d->timer);
    uv_timer_stop(&d->try_timer);
    uv_timer_stop(&d->stream_timer);
    if (e->count_req && e->svc)
        atomic_fetch_sub(&e->svc->a->l->route->requests, 1);
    if (e->count_retry && e->svc)
        atomic_fetch_sub(&e->svc->a->l->route->retries, 1);
    if (e->unconsumed && e->cs.h2)
        hy_l7_h2_consume(e->cs.h2, e->cs.id, e->unconsumed);
    uint64_t now = now_of(d);
    struct hy_l7_done done = {
        .dir = HY_PX_OUT,
        .port = c->l->port,
        .service = e->svc     ? e->svc->o->service
                   : e->front ? e->front->o->service
                              : NULL,
        .route = e->front && e->route >= 0 ? hy_l7_route_name(e->front->routes, e->route) : "",
        .method = e->req.method,
        .authority = e->req.authority,
        .path = e->req.target,
        .upstream = e->upstream,
        .id = e->has_ep ? e->peer_id : NULL,
        .result = e->result,
        .status = e->status,
        .retries = e->tries > 1 ? e->tries - 1 : 0,
        .seconds = (double)(now - e->start_ms) / 1000.0,
        .upstream_seconds = e->up_ms ? (double)(e->up_ms - e->start_ms) / 1000.0 : 0,
        .from = c,
        .req = &e->req,
        .trace = &e->trace,
    };
    hy_l7_log(d->lw, &done);
    bool more = !c->closing && !d->close_after && d->keep && e->req_end && !e->tunnel;
    ex_reset(e);
    d->busy = false;
    if (c->closing)
        return;
    if (!more) {
        down_end(d);
        return;
    }
    if (d->parsing)
        return; /* answered from inside the parser: its loop goes on */
    if (d->in.len > d->in_off)
        parse(d);
    else if (c->down.eof)
        hy_px_conn_close(c, "ok", NULL);
}

/* Answers the request here: status, a one-line body, maybe a Location. */
static void local_answer(struct hy_l7_down *d, unsigned status, const char *result, const char *why,
                         const char *location)
{
    struct ex *e = &d->ex;
    if (e->resp_started) { /* mid-response: only the connection's end can say it */
        d->close_after = true;
        e->result = result;
        ex_finish(d, result);
        hy_px_conn_close(d->c, result, "%s", why);
        return;
    }
    if (e->cs.h2)
        hy_l7_h2_cancel(&e->cs);
    if (!e->req_end)
        d->close_after = true; /* the rest of its body is not read */
    struct hy_http_head h = {.status = status, .version = 11};
    struct hy_buf b = {0};
    char body[300];
    int blen = snprintf(body, sizeof(body), "%s\n", why);
    if (blen < 0 || blen >= (int)sizeof(body))
        blen = (int)strlen(body);
    hy_http_head_add(&h, "Content-Type", 12, "text/plain", 10);
    if (location)
        hy_http_head_add(&h, "Location", 8, location, strlen(location));
    if (d->close_after || !d->keep)
        hy_http_head_add(&h, "Connection", 10, "close", 5);
    bool no_body = e->head_method || status == 204 || status == 304;
    if (hy_h1_write_head(&b, &h, no_body ? 0 : blen) == 0) {
        if (!no_body)
            hy_buf_append(&b, body, (size_t)blen);
        down_write(d, b.data, b.len);
    }
    hy_buf_fini(&b);
    hy_http_head_fini(&h);
    e->status = status;
    e->resp_started = true;
    ex_finish(d, result);
}

/* ----- tries ----- */

static void try_start(struct hy_l7_down *d);

static void on_try_timer(uv_timer_t *t)
{
    struct hy_l7_down *d = t->data;
    struct ex *e = &d->ex;
    if (e->retrying) { /* the backoff is over */
        e->retrying = false;
        try_start(d);
        return;
    }
    /* perTryTimeout: this try failed */
    hy_l7_count(d->lw, HY_L7_TIMEOUT);
    hy_l7_h2_cancel(&e->cs);
    e->cs.ops->fail(&e->cs, HY_L7_TRY_TIMEOUT);
}

static void on_request_timer(uv_timer_t *t)
{
    struct hy_l7_down *d = t->data;
    hy_l7_count(d->lw, HY_L7_TIMEOUT);
    local_answer(d, 504, "timeout", "upstream request timeout", NULL);
}

/* The status a stream cut short gets, as Envoy's: 504 once the request
 * is all in (the upstream is late), 408 while it is not (the app is). */
static unsigned cut_status(const struct ex *e)
{
    return e->req_end ? 504 : 408;
}

static void on_stream_timer(uv_timer_t *t);

/* Arms the stream timer for the nearer of streamIdleTimeout (since the
 * last activity) and maxStreamDuration (since the request began). */
static void stream_arm(struct hy_l7_down *d)
{
    struct ex *e = &d->ex;
    uint64_t now = now_of(d), next = UINT64_MAX;
    if (e->idle_ms)
        next = e->last_ms + e->idle_ms;
    if (e->max_ms && e->start_ms + e->max_ms < next)
        next = e->start_ms + e->max_ms;
    if (next != UINT64_MAX)
        uv_timer_start(&d->stream_timer, on_stream_timer, next > now ? next - now : 1, 0);
}

/* Activity on the stream: what streamIdleTimeout measures from. The timer
 * is not moved here (that would cost a heap update per read): when it
 * fires early it re-arms for the rest. */
static void stream_active(struct hy_l7_down *d)
{
    d->ex.last_ms = now_of(d);
}

static void on_stream_timer(uv_timer_t *t)
{
    struct hy_l7_down *d = t->data;
    struct ex *e = &d->ex;
    if (!d->busy || d->c->closing)
        return;
    uint64_t now = now_of(d);
    bool max = e->max_ms && now >= e->start_ms + e->max_ms;
    if (!max && !(e->idle_ms && now >= e->last_ms + e->idle_ms)) {
        stream_arm(d);
        return;
    }
    hy_l7_count(d->lw, HY_L7_TIMEOUT);
    if (max)
        local_answer(d, cut_status(e), "max_stream_duration",
                     e->req_end ? "upstream max stream duration reached"
                                : "max stream duration reached",
                     NULL);
    else
        local_answer(d, cut_status(e), "stream_idle_timeout", "stream timeout", NULL);
}

/* requestHeadersTimeout: the app began a request and its head is not all
 * in yet. Envoy answers 408 and closes. */
static void on_head_timer(uv_timer_t *t)
{
    struct hy_l7_down *d = t->data;
    d->head_timed = false;
    if (d->busy || d->c->closing || d->draining)
        return;
    hy_l7_count(d->lw, HY_L7_TIMEOUT);
    hy_log(HY_LOG_INFO, "dp",
           "outbound %u: request headers from %s not complete in time (requestHeadersTimeout)",
           (unsigned)d->c->l->port, hy_px_conn_peer(d->c));
    d->close_after = true;
    ex_reset(&d->ex);
    d->busy = true;
    d->ex.start_ms = now_of(d);
    local_answer(d, 408, "request_headers_timeout", "request header timeout", NULL);
}

/* The MeshTimeout http of the outbound the app called (the listener's:
 * streamIdleTimeout, requestHeadersTimeout), or NULL. */
static const Hypha__V1__DpHttpTimeouts *front_timeouts(struct hy_l7_down *d)
{
    struct hy_l7_svc *f = d->lw->cfg ? hy_l7_cfg_port(d->lw->cfg, d->c->l->port) : NULL;
    return f ? f->o->http_timeouts : NULL;
}

/* A request's first bytes came: requestHeadersTimeout starts, if set. */
static void head_begun(struct hy_l7_down *d)
{
    if (d->busy || d->head_timed || d->draining || d->c->closing)
        return;
    const Hypha__V1__DpHttpTimeouts *t = front_timeouts(d);
    uint64_t ms = t ? hy_px_ms(t->request_headers_timeout, 0) : 0;
    if (!ms)
        return;
    d->head_timed = true;
    uv_timer_start(&d->timer, on_head_timer, ms, 0);
}

/* Should the try that ended as o be followed by another? Schedules it. */
static bool maybe_retry(struct hy_l7_down *d, enum hy_l7_try_end end)
{
    struct ex *e = &d->ex;
    const Hypha__V1__DpHttpRetry *r = retry_of(e);
    if (!r || !e->replay || e->tunnel || d->c->closing || d->lw->w->base.stopped)
        return false;
    struct hy_l7_outcome o = {.end = end, .resp = end == HY_L7_TRY_RESPONSE ? &e->cs.resp : NULL};
    if (!hy_l7_retry_should(r, grpc_of(e), &e->req, &o, e->tries))
        return false;
    const Hypha__V1__DpOutbound *ob = e->svc->o;
    struct hy_px_route *rt = e->svc->a->l->route;
    if (!e->count_retry) {
        unsigned n = atomic_fetch_add(&rt->retries, 1) + 1;
        e->count_retry = true;
        if (ob->has_max_retries && ob->max_retries && n > ob->max_retries)
            return false; /* MeshCircuitBreaker maxRetries: the failure stands */
    }
    hy_l7_count(d->lw, HY_L7_RETRY);
    e->retrying = true;
    e->sent = 0;
    hy_http_head_fini(&e->cs.resp);
    uint64_t ms = hy_l7_retry_backoff_ms(r, e->tries, hy_l7_random(d->lw));
    uv_timer_stop(&d->try_timer);
    uv_timer_start(&d->try_timer, on_try_timer, ms ? ms : 1, 0);
    return true;
}

static void try_failed(struct hy_l7_down *d, enum hy_l7_try_end end, const char *why)
{
    struct ex *e = &d->ex;
    if (maybe_retry(d, end))
        return;
    unsigned st = end == HY_L7_TRY_CONNECT_FAILURE ? 503 : end == HY_L7_TRY_TIMEOUT ? 504 : 502;
    const char *res = end == HY_L7_TRY_CONNECT_FAILURE ? "upstream_failed"
                      : end == HY_L7_TRY_TIMEOUT       ? "timeout"
                                                       : "upstream_reset";
    (void)e;
    local_answer(d, st, res, why, NULL);
}

static void try_start(struct hy_l7_down *d)
{
    struct ex *e = &d->ex;
    char why[300];
    size_t idx = 0;
    bool oom = false;
    const Hypha__V1__DpEndpoint *ep =
        hy_l7_pick_ref(d->lw, e->svc, &e->req, d->c, e->ref, &idx, &oom);
    if (oom) {
        local_answer(d, 500, "error", "out of memory", NULL);
        return;
    }
    if (!ep) {
        local_answer(d, 503, "no_endpoints", "no healthy upstream", NULL);
        return;
    }
    e->ep_index = idx;
    e->has_ep = true;
    e->peer_id = e->svc->peer_id;
    hy_agent_endpoint_key(ep, e->upstream, sizeof(e->upstream));
    e->tries++;
    struct hy_l7_h2 *h2 = hy_l7_pool_get(d->lw, e->svc, ep, why, sizeof(why));
    if (!h2) {
        hy_l7_outlier(d->lw, e->svc, idx, HY_L7_OUT_CONNECT_FAILED, 0);
        try_failed(d, HY_L7_TRY_CONNECT_FAILURE, why);
        return;
    }
    e->sent = e->body_base;
    e->cs.req_trailers = &e->req_trailers;
    if (hy_l7_h2_submit(h2, &e->cs, &e->req, e->has_body) < 0) {
        try_failed(d, HY_L7_TRY_RESET, "the request cannot be sent as HTTP/2");
        return;
    }
    hy_str_copy(d->c->endpoint, sizeof(d->c->endpoint), e->upstream);
    uint64_t per_try = hy_l7_retry_per_try_ms(retry_of(e));
    if (per_try && !e->tunnel)
        uv_timer_start(&d->try_timer, on_try_timer, per_try, 0);
}

/* ----- the stream's callbacks ----- */

static struct hy_l7_down *down_of_cs(struct hy_l7_cs *cs)
{
    return (struct hy_l7_down *)((char *)cs - offsetof(struct hy_l7_down, ex.cs));
}

static ssize_t ex_read(struct hy_l7_cs *cs, uint8_t *buf, size_t len, bool *eof)
{
    struct hy_l7_down *d = down_of_cs(cs);
    struct ex *e = &d->ex;
    size_t end = e->body_base + e->body.len;
    size_t n = end - e->sent < len ? end - e->sent : len;
    if (n)
        memcpy(buf, e->body.data + (e->sent - e->body_base), n);
    e->sent += n;
    if (!e->replay && e->sent - e->body_base > HY_L7_REPLAY_MAX) { /* drop what went */
        size_t drop = e->sent - e->body_base;
        memmove(e->body.data, e->body.data + drop, e->body.len - drop);
        e->body.len -= drop;
        e->body_base += drop;
    }
    struct hy_px_conn *c = d->c;
    if (c->down.paused && end - e->sent < HY_AGENT_LOW_WATER && !c->closing) {
        c->down.paused = false;
        hy_px_conn_update_reading(c, &c->down);
    }
    if (e->sent == end && e->req_end)
        *eof = true;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

/* Writes the response head to the app. */
static void commit_head(struct hy_l7_down *d, bool end)
{
    struct ex *e = &d->ex;
    struct hy_http_head *h = &e->cs.resp;
    hy_l7_route_response(e->front->routes, e->route, h);
    long long cl;
    const char *up = hy_http_head_get(h, HY_L7_UPGRADED);
    if (e->upgrade && up && h->status == 200) { /* the app behind switched protocols */
        unsigned st = (unsigned)strtoul(up, NULL, 10);
        const char *proto = strchr(up, ' ');
        char *p = proto && proto[1] ? strdup(proto + 1) : NULL;
        hy_http_head_remove(h, HY_L7_UPGRADED);
        h->status = st >= 100 && st < 600 ? st : 101;
        if (h->status == 101) {
            hy_http_head_add(h, "Connection", 10, "Upgrade", 7);
            if (p)
                hy_http_head_add(h, "Upgrade", 7, p, strlen(p));
        }
        free(p);
        e->tunnel = true;
        cl = -2;
    } else if (e->head_method || h->status == 204 || h->status == 304 ||
               (h->status >= 100 && h->status < 200)) {
        cl = -2;
    } else if (end) {
        cl = 0;
    } else {
        const char *v = hy_http_head_get(h, "content-length");
        if (v) {
            cl = strtoll(v, NULL, 10);
        } else if (d->http10) {
            cl = -2; /* delimited by the close */
            d->close_after = true;
        } else {
            cl = -1;
            e->chunked = true;
        }
    }
    if (e->upgrade && !e->tunnel)
        d->close_after = true; /* the app's bytes after its request are not HTTP */
    hy_http_head_remove(h, "content-length");
    if ((d->close_after || !d->keep) && !e->tunnel)
        hy_http_head_add(h, "Connection", 10, "close", 5);
    else if (d->http10 && d->keep)
        hy_http_head_add(h, "Connection", 10, "keep-alive", 10);
    struct hy_buf b = {0};
    int rc = hy_h1_write_head(&b, h, cl);
    e->status = h->status;
    e->resp_started = true;
    if (rc < 0) {
        hy_buf_fini(&b);
        hy_px_conn_close(d->c, "upstream_reset", "the response cannot be written as HTTP/1.1");
        return;
    }
    down_write(d, b.data, b.len);
    hy_buf_fini(&b);
}

static void ex_head(struct hy_l7_cs *cs, bool end)
{
    struct hy_l7_down *d = down_of_cs(cs);
    struct ex *e = &d->ex;
    e->up_ms = now_of(d);
    stream_active(d);
    uv_timer_stop(&d->try_timer);
    hy_l7_outlier(d->lw, e->svc, e->ep_index, HY_L7_OUT_RESPONSE, cs->resp.status);
    if (!e->upgrade && maybe_retry(d, HY_L7_TRY_RESPONSE)) {
        hy_l7_h2_cancel(cs);
        return;
    }
    commit_head(d, end);
    if (end && !d->c->closing)
        ex_finish(d, "ok");
}

static void ex_data(struct hy_l7_cs *cs, const uint8_t *p, size_t n)
{
    struct hy_l7_down *d = down_of_cs(cs);
    struct ex *e = &d->ex;
    struct hy_px_conn *c = d->c;
    stream_active(d);
    if (e->chunked) {
        struct hy_buf b = {0};
        if (hy_h1_write_chunk(&b, p, n) == 0)
            down_write(d, b.data, b.len);
        hy_buf_fini(&b);
    } else {
        down_write(d, p, n);
    }
    if (!c->closing && hy_agent_side_queued(&c->down) > HY_L7_BODY_HIGH)
        e->unconsumed += n;
    else
        hy_l7_h2_consume(cs->h2, cs->id, n);
}

static void ex_end(struct hy_l7_cs *cs)
{
    struct hy_l7_down *d = down_of_cs(cs);
    struct ex *e = &d->ex;
    if (e->chunked) { /* with the callee's trailers, when they can be written */
        struct hy_buf b = {0};
        if (!cs->trailers.n || hy_h1_write_last_chunk(&b, &cs->trailers) < 0)
            hy_h1_write_last_chunk(&b, NULL);
        down_write(d, b.data, b.len);
        hy_buf_fini(&b);
    }
    if (e->tunnel) {
        e->req_end = true;
        d->close_after = true;
    }
    if (!d->c->closing)
        ex_finish(d, "ok");
}

static void ex_fail(struct hy_l7_cs *cs, enum hy_l7_try_end why)
{
    struct hy_l7_down *d = down_of_cs(cs);
    struct ex *e = &d->ex;
    if (d->c->closing || !d->busy)
        return;
    uv_timer_stop(&d->try_timer);
    hy_l7_outlier(d->lw, e->svc, e->ep_index,
                  why == HY_L7_TRY_CONNECT_FAILURE ? HY_L7_OUT_CONNECT_FAILED
                  : why == HY_L7_TRY_TIMEOUT       ? HY_L7_OUT_TIMEOUT
                                                   : HY_L7_OUT_RESET,
                  0);
    if (e->resp_started) { /* mid-body: the app sees the connection end */
        if (e->tunnel) {
            d->close_after = true;
            ex_finish(d, "ok");
            return;
        }
        e->result = "upstream_reset";
        ex_finish(d, "upstream_reset");
        hy_px_conn_close(d->c, "upstream_reset", "the upstream reset the response");
        return;
    }
    try_failed(d, why,
               why == HY_L7_TRY_CONNECT_FAILURE  ? "upstream connect error"
               : why == HY_L7_TRY_TIMEOUT        ? "upstream per-try timeout"
               : why == HY_L7_TRY_REFUSED_STREAM ? "upstream refused the stream"
                                                 : "upstream reset before its response");
}

static const struct hy_l7_cs_ops ex_ops = {ex_head, ex_data, ex_end, ex_fail, ex_read};

/* ----- RequestMirror: a copy, fire and forget ----- */

/* the body is dropped from the front only past HY_L7_REPLAY_MAX: a
 * mirrored one is still whole when the request ends */
_Static_assert(HY_L7_MIRROR_MAX <= HY_L7_REPLAY_MAX, "a mirrored body must be kept whole");

struct mirror {
    struct hy_l7_cs cs; /* first */
    struct hy_buf body;
    size_t off;
};

static void mirror_free(struct mirror *m)
{
    hy_http_head_fini(&m->cs.resp);
    hy_http_head_fini(&m->cs.trailers);
    hy_buf_fini(&m->body);
    free(m);
}

static void mirror_head(struct hy_l7_cs *cs, bool end)
{
    if (end)
        mirror_free((struct mirror *)cs);
}

static void mirror_data(struct hy_l7_cs *cs, const uint8_t *p, size_t n)
{
    (void)p;
    hy_l7_h2_consume(cs->h2, cs->id, n);
}

static void mirror_end(struct hy_l7_cs *cs)
{
    mirror_free((struct mirror *)cs);
}

static void mirror_fail(struct hy_l7_cs *cs, enum hy_l7_try_end why)
{
    (void)why;
    mirror_free((struct mirror *)cs);
}

static ssize_t mirror_read(struct hy_l7_cs *cs, uint8_t *buf, size_t len, bool *eof)
{
    struct mirror *m = (struct mirror *)cs;
    size_t n = m->body.len - m->off < len ? m->body.len - m->off : len;
    if (n)
        memcpy(buf, m->body.data + m->off, n);
    m->off += n;
    *eof = m->off == m->body.len;
    return (ssize_t)n;
}

static const struct hy_l7_cs_ops mirror_ops = {mirror_head, mirror_data, mirror_end, mirror_fail,
                                               mirror_read};

void hy_l7_mirror(struct hy_l7_worker *lw, struct hy_l7_cfg *cfg,
                  const Hypha__V1__DpBackendRef *ref, const struct hy_http_head *req,
                  const void *body, size_t len, struct hy_px_conn *from)
{
    const char *service = ref->service ? ref->service : "";
    struct hy_l7_svc *svc = hy_l7_cfg_service(cfg, service);
    char why[200] = "";
    size_t idx;
    bool oom = false;
    const Hypha__V1__DpEndpoint *ep =
        svc ? hy_l7_pick_ref(lw, svc, req, from, ref, &idx, &oom) : NULL;
    struct hy_l7_h2 *h2 = ep ? hy_l7_pool_get(lw, svc, ep, why, sizeof(why)) : NULL;
    struct mirror *m = h2 ? calloc(1, sizeof(*m)) : NULL;
    if (!m || (len && hy_buf_append(&m->body, body, len) < 0)) {
        if (m)
            mirror_free(m);
        hy_l7_count_mirror(lw, "failed");
        hy_log(HY_LOG_DEBUG, "dp", "RequestMirror to %s: not sent: %s", service,
               !svc     ? "no outbound for it"
               : !ep    ? "no endpoint"
               : why[0] ? why
                        : "out of memory");
        return;
    }
    m->cs.ops = &mirror_ops;
    if (hy_l7_h2_submit(h2, &m->cs, req, m->body.len > 0) < 0) {
        mirror_free(m);
        hy_l7_count_mirror(lw, "failed");
        return;
    }
    hy_l7_count_mirror(lw, "sent");
}

/* The request's body grew past what a mirror copies: it is not mirrored. */
void hy_l7_mirror_too_big(struct hy_l7_worker *lw, const Hypha__V1__DpBackendRef **mirror)
{
    hy_l7_count_mirror(lw, "body_too_large");
    hy_log(HY_LOG_DEBUG, "dp", "RequestMirror to %s: not sent: the body is over %u bytes",
           (*mirror)->service ? (*mirror)->service : "-", HY_L7_MIRROR_MAX);
    *mirror = NULL;
}

/* ----- requests from the app ----- */

static int on_head(void *u, struct hy_http_head *h, bool body)
{
    struct hy_l7_down *d = u;
    struct ex *e = &d->ex;
    struct hy_px_conn *c = d->c;
    ex_reset(e);
    d->head_pending = false;
    if (d->head_timed) {
        d->head_timed = false;
        uv_timer_stop(&d->timer);
    }
    d->busy = true;
    e->req = *h;
    memset(h, 0, sizeof(*h));
    e->start_ms = now_of(d);
    e->has_body = body;
    e->req_end = !body;
    e->replay = true;
    e->route = -1;
    d->keep = hy_h1_keep_alive(d->p);
    d->http10 = e->req.version == 10;
    e->head_method = !strcmp(e->req.method, "HEAD");
    e->upgrade = hy_h1_upgrade(d->p);
    char *upgrade = NULL;
    if (e->upgrade) {
        const char *v = hy_http_head_get(&e->req, "Upgrade");
        upgrade = strdup(v ? v : "");
        e->has_body = true; /* the tunnel's bytes */
        e->req_end = false;
        e->replay = false;
    }
    hy_h1_strip_hop(&e->req);
    const char *expect = hy_http_head_get(&e->req, "Expect");
    if (expect && !strcasecmp(expect, "100-continue")) {
        /* answered here, as Envoy does: the body comes at once, and the
         * hop to the callee never waits on it */
        hy_http_head_remove(&e->req, "Expect");
        if (body && !d->http10) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            down_write(d, cont, sizeof(cont) - 1);
        }
    }
    if (upgrade) {
        if (strcmp(e->req.method, "CONNECT") != 0)
            hy_http_head_add(&e->req, HY_L7_UPGRADE, sizeof(HY_L7_UPGRADE) - 1, upgrade,
                             strlen(upgrade));
        free(upgrade);
    }
    e->cfg = hy_l7_cfg_ref(d->lw->cfg);
    /* MeshTrace: the client span, its context on the request before any
     * retry or mirror copies it */
    hy_trace_begin(&e->trace, hy_trace_conf(d->lw), HY_TRACE_CLIENT, &e->req, hy_l7_random(d->lw));
    e->front = c->l->is_virtual && !c->l->port ? hy_l7_cfg_service(e->cfg, c->l->service)
                                               : hy_l7_cfg_port(e->cfg, c->l->port);
    if (!e->front) {
        local_answer(d, 503, "no_config", "no outbound on this port in the current config", NULL);
        return 0;
    }
    if (!e->req.authority) { /* HTTP/1.0 without Host: the service's name */
        const char *s = e->front->o->service ? e->front->o->service : "localhost";
        hy_http_head_set_str(&e->req.authority, s, strlen(s));
    }
    e->route = hy_l7_route_match(e->front->routes, &e->req);
    if (e->route < 0) {
        local_answer(d, 404, "no_route", "no route matches the request", NULL);
        return 0;
    }
    uint64_t rnd = hy_l7_random(d->lw);
    const char *backend = hy_l7_route_backend(e->front->routes, e->route, rnd);
    e->ref = hy_l7_route_backend_ref(e->front->routes, e->route, rnd);
    if (!backend) {
        local_answer(d, 500, "no_backend", "the route's backends all weigh 0", NULL);
        return 0;
    }
    struct hy_l7_redirect redir = {0};
    const char *mirror = NULL;
    if (hy_l7_route_request(e->front->routes, e->route, &e->req, rnd, &redir, &mirror) < 0) {
        local_answer(d, 500, "error", "out of memory", NULL);
        return 0;
    }
    if (redir.location) {
        local_answer(d, redir.status, "redirect", "redirected", redir.location);
        free(redir.location);
        return 0;
    }
    e->svc = hy_l7_cfg_service(e->cfg, backend);
    if (!e->svc) {
        local_answer(d, 503, "no_backend", "the route's backend has no outbound here", NULL);
        return 0;
    }
    if (hy_l7_route_host_to_backend(e->front->routes, e->route) && e->svc->o->service)
        hy_http_head_set_str(&e->req.authority, e->svc->o->service, strlen(e->svc->o->service));
    const Hypha__V1__DpOutbound *o = e->svc->o;
    unsigned inflight = atomic_fetch_add(&e->svc->a->l->route->requests, 1) + 1;
    e->count_req = true;
    if (o->has_max_requests && o->max_requests && inflight > o->max_requests) {
        hy_series_inc(c->m->overflow[0]);
        local_answer(d, 503, "overflow", "too many requests in flight (maxRequests)", NULL);
        return 0;
    }
    const Hypha__V1__DpHttpTimeouts *t =
        o->http_timeouts ? o->http_timeouts : e->front->o->http_timeouts;
    uint64_t timeout = HY_L7_TIMEOUT_MS;
    if (t && t->request_timeout)
        timeout = hy_px_ms(t->request_timeout, 0);
    if (timeout && !e->upgrade)
        uv_timer_start(&d->timer, on_request_timer, timeout, 0);
    /* streamIdleTimeout is the listener's (the outbound called),
     * maxStreamDuration the backend's connections' (Kuma puts it on the
     * cluster) */
    const Hypha__V1__DpHttpTimeouts *ft = e->front->o->http_timeouts;
    e->idle_ms =
        ft && ft->stream_idle_timeout ? hy_px_ms(ft->stream_idle_timeout, 0) : HY_L7_STREAM_IDLE_MS;
    e->max_ms = t ? hy_px_ms(t->max_stream_duration, 0) : 0;
    e->last_ms = e->start_ms;
    stream_arm(d);
    if (mirror && !e->upgrade) { /* with a body: once it is all in */
        if (e->req_end)
            hy_l7_mirror(d->lw, e->cfg, hy_l7_route_mirror_ref(e->front->routes, e->route), &e->req,
                         NULL, 0, d->c);
        else
            e->mirror = hy_l7_route_mirror_ref(e->front->routes, e->route);
    }
    try_start(d);
    return 0;
}

static int on_body(void *u, const uint8_t *p, size_t n)
{
    struct hy_l7_down *d = u;
    struct ex *e = &d->ex;
    if (!d->busy || (e->resp_started && !e->tunnel) || d->c->closing)
        return 0; /* answered already: dropped */
    if (hy_buf_append(&e->body, p, n) < 0)
        return 1;
    if (e->mirror && e->body_base + e->body.len > HY_L7_MIRROR_MAX)
        hy_l7_mirror_too_big(d->lw, &e->mirror);
    stream_active(d);
    if (e->body_base + e->body.len > HY_L7_REPLAY_MAX)
        e->replay = false;
    if (e->cs.h2)
        hy_l7_h2_resume(&e->cs);
    struct hy_px_conn *c = d->c;
    if (e->body_base + e->body.len - e->sent > HY_L7_BODY_HIGH && !c->down.paused) {
        c->down.paused = true; /* the upstream is behind */
        hy_px_conn_update_reading(c, &c->down);
    }
    return 0;
}

static int on_end(void *u, struct hy_http_head *trailers)
{
    struct hy_l7_down *d = u;
    struct ex *e = &d->ex;
    if (!d->busy)
        return 0;
    if (trailers && trailers->n) { /* sent after the body (l7_h2.c reads them at its end) */
        hy_http_head_fini(&e->req_trailers);
        e->req_trailers = *trailers;
        memset(trailers, 0, sizeof(*trailers));
    }
    e->req_end = true;
    if (e->mirror && !e->body_base) /* the whole body is here (under HY_L7_MIRROR_MAX) */
        hy_l7_mirror(d->lw, e->cfg, e->mirror, &e->req, e->body.data, e->body.len, d->c);
    else if (e->mirror)
        hy_l7_mirror_too_big(d->lw, &e->mirror);
    e->mirror = NULL;
    if (e->cs.h2)
        hy_l7_h2_resume(&e->cs);
    return 0;
}

static const struct hy_h1_cb h1_cb = {on_head, on_body, on_end};

/* A request the parser refused: answered with its status, then closed. */
static void refuse(struct hy_l7_down *d)
{
    const char *why = NULL;
    unsigned st = hy_h1_error(d->p, &why);
    hy_log(HY_LOG_INFO, "dp", "outbound %u: refused a request from %s: %u %s",
           (unsigned)d->c->l->port, hy_px_conn_peer(d->c), st, why ? why : "");
    d->close_after = true;
    if (d->busy && d->ex.resp_started) {
        hy_px_conn_close(d->c, "bad_request", "%s", why ? why : "invalid request");
        return;
    }
    if (!d->busy) {
        ex_reset(&d->ex);
        d->busy = true;
        d->ex.start_ms = now_of(d);
    }
    local_answer(d, st ? st : 400, "bad_request", why ? why : "bad request", NULL);
}

static void parse(struct hy_l7_down *d)
{
    while (d->in.len > d->in_off && !d->c->closing && !d->draining) {
        if (d->ex.tunnel || (d->busy && d->ex.upgrade)) { /* the tunnel's bytes */
            on_body(d, (const uint8_t *)d->in.data + d->in_off, d->in.len - d->in_off);
            d->in_off = d->in.len;
            break;
        }
        size_t used = 0;
        if (!d->busy) /* the last request is answered: parse the next */
            hy_h1_resume(d->p);
        if (!d->busy)
            d->head_pending = true;
        d->parsing = true;
        int rc =
            hy_h1_feed(d->p, (const uint8_t *)d->in.data + d->in_off, d->in.len - d->in_off, &used);
        d->parsing = false;
        d->in_off += used;
        if (rc < 0) {
            refuse(d);
            return;
        }
        if (used == 0)
            break; /* paused: the next request waits for this one's response */
    }
    if (d->head_pending && !d->busy)
        head_begun(d);
    if (d->in_off == d->in.len) {
        d->in.len = d->in_off = 0;
    } else if (d->in_off > 0) {
        memmove(d->in.data, d->in.data + d->in_off, d->in.len - d->in_off);
        d->in.len -= d->in_off;
        d->in_off = 0;
    }
    struct hy_px_conn *c = d->c;
    /* the app asked for the close and its request is all in: it sends
     * nothing more (RFC 9112 9.6), so its socket is not read again before
     * the answer is written and the connection ends (an app gone meanwhile
     * shows as a failed write, as a FIN or reset read now would only have
     * set close_after). A socket that hy_l7_down_start read at accept is
     * then never put into epoll at all. */
    if (!c->closing && d->busy && d->ex.req_end && !d->keep && !d->ex.upgrade && !d->ex.tunnel &&
        d->in.len == 0 && !c->app_quiet) {
        c->app_quiet = true;
        hy_px_conn_update_reading(c, &c->down);
    }
    /* pipelined requests beyond a bound wait in the socket */
    if (!c->closing && d->in.len > HY_L7_BODY_HIGH && !c->down.paused) {
        c->down.paused = true;
        hy_px_conn_update_reading(c, &c->down);
    } else if (!c->closing && d->in.len == 0 && c->down.paused && !d->busy) {
        c->down.paused = false;
        hy_px_conn_update_reading(c, &c->down);
    }
}

/* An http2/grpc outbound's first bytes: HTTP/2's preface makes the
 * connection h2c (l7_front.c), anything else is HTTP/1.1. True when they
 * were handled (kept until there are enough, or given to the front). */
static bool sniff(struct hy_l7_down *d, const uint8_t *p, size_t n)
{
    static const char magic[] = NGHTTP2_CLIENT_MAGIC;
    struct hy_px_conn *c = d->c;
    if (hy_buf_append(&d->in, p, n) < 0) {
        hy_px_conn_close(c, "error", "out of memory");
        return true;
    }
    size_t k = d->in.len < NGHTTP2_CLIENT_MAGIC_LEN ? d->in.len : NGHTTP2_CLIENT_MAGIC_LEN;
    if (memcmp(d->in.data, magic, k) != 0) { /* HTTP/1.1 */
        d->sniff = false;
        parse(d);
        return true;
    }
    if (k < NGHTTP2_CLIENT_MAGIC_LEN)
        return true;
    d->sniff = false;
    d->front = hy_l7_front_new(d->lw, c);
    if (!d->front) {
        hy_px_conn_close(c, "error", "out of memory");
        return true;
    }
    struct hy_buf in = d->in;
    memset(&d->in, 0, sizeof(d->in));
    hy_l7_front_data(d->front, (const uint8_t *)in.data, (ssize_t)in.len);
    hy_buf_fini(&in);
    return true;
}

void hy_l7_down_data(struct hy_px_conn *c, const uint8_t *p, ssize_t n)
{
    struct hy_l7_down *d = down_of(c);
    if (d->front) {
        hy_l7_front_data(d->front, p, n);
        return;
    }
    if (d->sniff && n > 0 && sniff(d, p, (size_t)n))
        return;
    if (n < 0) {
        if (d->draining || (!d->busy && d->in.len == 0)) {
            hy_px_conn_close(c, "ok", NULL);
            return;
        }
        if (d->busy && (d->ex.upgrade || d->ex.tunnel)) { /* the tunnel's caller is done */
            d->ex.req_end = true;
            if (d->ex.cs.h2)
                hy_l7_h2_resume(&d->ex.cs);
            return;
        }
        if (d->busy && !d->ex.req_end) { /* cut mid-request */
            hy_px_conn_close(c, "downstream_closed", "the app closed mid-request");
            return;
        }
        d->close_after = true; /* answer what was asked, then close */
        return;
    }
    if (d->draining)
        return;
    if (hy_buf_append(&d->in, p, (size_t)n) < 0) {
        hy_px_conn_close(c, "error", "out of memory");
        return;
    }
    parse(d);
}

void hy_l7_down_written(struct hy_px_conn *c)
{
    struct hy_l7_down *d = down_of(c);
    struct ex *e = &d->ex;
    if (d->front)
        return;
    if (d->busy && e->unconsumed && e->cs.h2 &&
        hy_agent_side_queued(&c->down) <= HY_AGENT_LOW_WATER) {
        hy_l7_h2_consume(e->cs.h2, e->cs.id, e->unconsumed);
        e->unconsumed = 0;
    }
}

void hy_l7_down_start(struct hy_px_conn *c)
{
    struct hy_l7_worker *lw = hy_l7_worker(c->w);
    struct hy_l7_down *d = lw ? calloc(1, sizeof(*d)) : NULL;
    if (d && !(d->p = hy_h1_new(HY_H1_REQUEST, &h1_cb, d))) {
        free(d);
        d = NULL;
    }
    if (!d) {
        hy_px_conn_close(c, "error", "out of memory");
        return;
    }
    d->kind = HY_L7_DOWN;
    d->c = c;
    d->lw = lw;
    d->ex.cs.ops = &ex_ops;
    uv_timer_init(&c->w->base.loop, &d->timer);
    uv_timer_init(&c->w->base.loop, &d->try_timer);
    uv_timer_init(&c->w->base.loop, &d->stream_timer);
    d->timer.data = d;
    d->try_timer.data = d;
    struct hy_l7_svc *svc = lw->cfg ? hy_l7_cfg_port(lw->cfg, c->l->port) : NULL;
    d->sniff = svc && hy_l7_h2c_protocol(svc->o->protocol);
    d->stream_timer.data = d;
    c->l7 = d;
    hy_px_conn_relay(c);
    /* an HTTP client speaks first, and the request is usually here by now */
    hy_px_conn_read_now(c);
}

void hy_l7_down_closed(struct hy_px_conn *c)
{
    struct hy_l7_down *d = down_of(c);
    hy_l7_front_free(d->front);
    d->front = NULL;
    if (d->flush_queued) { /* out of the worker's list */
        struct hy_l7_down **p = &d->lw->downs;
        while (*p != d)
            p = &(*p)->flush_next;
        *p = d->flush_next;
        d->flush_queued = false;
    }
    if (d->busy) {
        if (!d->ex.result)
            d->ex.result = "downstream_closed";
        ex_finish(d, "downstream_closed");
    }
    /* the timers close as the connection's handles: it is freed after them */
    d->timer.data = c;
    d->try_timer.data = c;
    d->stream_timer.data = c;
    hy_px_conn_close_handle(c, (uv_handle_t *)&d->timer);
    hy_px_conn_close_handle(c, (uv_handle_t *)&d->try_timer);
    hy_px_conn_close_handle(c, (uv_handle_t *)&d->stream_timer);
}

void hy_l7_down_free(struct hy_px_conn *c)
{
    struct hy_l7_down *d = down_of(c);
    ex_reset(&d->ex);
    hy_h1_free(d->p);
    hy_buf_fini(&d->in);
    hy_buf_fini(&d->out);
    free(d);
}
