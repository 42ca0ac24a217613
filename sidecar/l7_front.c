/* The app's h2c (HTTP/2 cleartext, prior knowledge) connection to an
 * http2/grpc outbound: an nghttp2 server session on the app's own socket
 * (l7_h2.c over a plain wire), each stream one request, routed
 * (MeshHTTPRoute), sent to an endpoint picked for it over the pooled
 * HTTP/2 hop, tried again as MeshRetry says (grpc: from a trailers-only
 * answer's grpc-status, as Envoy does) within MeshTimeout's
 * requestTimeout, its response and trailers passed back on the stream.
 * l7_down.c hands a connection here when its first bytes are HTTP/2's
 * preface; HTTP/1.1 callers of an http2 service stay there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_l7.h"
#include "poison.h"

struct fs;

struct hy_l7_front {
    struct hy_px_conn *c; /* the app's connection */
    struct hy_l7_worker *lw;
    struct hy_l7_h2 *h2;
    struct fs *streams;
};

/* One request from the app and its tries. */
struct fs {
    struct hy_l7_cs cs;    /* the try under way */
    struct hy_l7_front *f; /* NULL once the connection is gone */
    int32_t id;
    struct fs *prev, *next;
    struct hy_l7_worker *lw;
    uint16_t port;
    struct hy_l7_cfg *cfg;
    struct hy_l7_svc *front, *svc;
    const Hypha__V1__DpBackendRef *ref;    /* the route's backend (a MeshServiceSubset's tags) */
    const Hypha__V1__DpBackendRef *mirror; /* RequestMirror's (in cfg) until the body is all in */
    int route;
    struct hy_http_head req, req_trailers, resp_trailers;
    const char *bad;
    struct hy_buf body; /* request body from body_base on */
    size_t body_base, sent, acked;
    struct hy_buf down; /* response body not yet taken by nghttp2 */
    size_t down_off;
    bool head_done, req_end, replay, has_body, answered, resp_end, closed, logged;
    bool retrying, count_req, count_retry, grpc_req;
    bool reported; /* the try under way is reported to outlier detection */
    unsigned tries, status, handles;
    size_t ep_index;
    bool has_ep;
    char upstream[HY_AGENT_EP_KEY];
    const char *peer_id; /* svc's SPIFFE ID (in cfg) */
    uint64_t start_ms, up_ms;
    const char *result;
    struct hy_trace_ctx trace;   /* MeshTrace: the client span */
    uv_timer_t timer, try_timer; /* requestTimeout; perTryTimeout or the backoff */
};

static const struct hy_l7_cs_ops fs_ops;

static uint64_t now_of(struct fs *s)
{
    return uv_now(&s->lw->w->base.loop);
}

static bool grpc_svc(const struct fs *s)
{
    return s->svc && s->svc->o->protocol && !strcmp(s->svc->o->protocol, "grpc");
}

static const Hypha__V1__DpHttpRetry *retry_of(const struct fs *s)
{
    if (!s->svc)
        return NULL;
    return grpc_svc(s) ? s->svc->o->grpc_retry : s->svc->o->http_retry;
}

static void dirty(struct fs *s)
{
    if (s->f && !s->closed) {
        nghttp2_session_resume_data(s->f->h2->s, s->id);
        hy_l7_h2_dirty(s->f->h2);
    }
}

/* The app's stream may send n more request bytes (they went on). */
static void ack(struct fs *s)
{
    size_t upto = s->answered && !s->cs.h2 ? s->body_base + s->body.len : s->sent;
    if (upto > s->acked && s->f && !s->closed) {
        hy_l7_h2_consume(s->f->h2, s->id, upto - s->acked);
        s->acked = upto;
    }
}

/* The log line and counters, once. */
static void finish(struct fs *s)
{
    if (s->logged || !s->head_done)
        return;
    s->logged = true;
    if (s->cs.h2)
        hy_l7_h2_cancel(&s->cs);
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->try_timer);
    if (s->count_req && s->svc)
        atomic_fetch_sub(&s->svc->a->l->route->requests, 1);
    if (s->count_retry && s->svc)
        atomic_fetch_sub(&s->svc->a->l->route->retries, 1);
    s->count_req = s->count_retry = false;
    uint64_t now = now_of(s);
    struct hy_l7_done done = {
        .dir = HY_PX_OUT,
        .port = s->port,
        .service = s->svc     ? s->svc->o->service
                   : s->front ? s->front->o->service
                              : NULL,
        .route = s->front && s->route >= 0 ? hy_l7_route_name(s->front->routes, s->route) : "",
        .method = s->req.method,
        .authority = s->req.authority,
        .path = s->req.target,
        .upstream = s->upstream,
        .id = s->has_ep ? s->peer_id : NULL,
        .result = s->result ? s->result : "ok",
        .status = s->status,
        .retries = s->tries > 1 ? s->tries - 1 : 0,
        .seconds = (double)(now - s->start_ms) / 1000.0,
        .upstream_seconds = s->up_ms ? (double)(s->up_ms - s->start_ms) / 1000.0 : 0,
        .from = s->f ? s->f->c : NULL,
        .req = &s->req,
        .trace = &s->trace,
    };
    hy_l7_log(s->lw, &done);
}

/* ----- the response on the app's stream ----- */

static ssize_t provider(nghttp2_session *ss, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *u)
{
    (void)ss;
    (void)id;
    (void)u;
    struct fs *s = src->ptr;
    size_t avail = s->down.len - s->down_off, n = avail < len ? avail : len;
    if (n)
        memcpy(buf, s->down.data + s->down_off, n);
    s->down_off += n;
    if (s->down_off == s->down.len)
        s->down.len = s->down_off = 0;
    if (s->down.len == s->down_off && s->resp_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->resp_trailers.n && s->f &&
            hy_l7_h2_trailer(s->f->h2->s, s->id, &s->resp_trailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* Submits response head h on the app's stream; body: DATA follows. */
static void submit(struct fs *s, const struct hy_http_head *h, bool body)
{
    s->answered = true;
    s->status = h->status;
    if (!s->f || s->closed)
        return;
    nghttp2_nv nv[HY_HTTP_MAX_FIELDS + 1];
    char status[4];
    char *names = malloc(h->bytes + 1);
    if (!names) {
        nghttp2_submit_rst_stream(s->f->h2->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        hy_l7_h2_dirty(s->f->h2);
        return;
    }
    snprintf(status, sizeof(status), "%03u", h->status % 1000);
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t k = 1 + hy_l7_h2_fields(nv + 1, HY_HTTP_MAX_FIELDS, names, h);
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = provider};
    if (nghttp2_submit_response(s->f->h2->s, s->id, nv, k, body ? &dp : NULL) != 0)
        nghttp2_submit_rst_stream(s->f->h2->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    free(names);
    hy_l7_h2_dirty(s->f->h2);
}

unsigned hy_l7_grpc_code(unsigned st)
{
    switch (st) {
    case 400:
        return 13; /* INTERNAL */
    case 401:
        return 16; /* UNAUTHENTICATED */
    case 403:
        return 7; /* PERMISSION_DENIED */
    case 404:
        return 12; /* UNIMPLEMENTED */
    case 429:
    case 502:
    case 503:
    case 504:
        return 14; /* UNAVAILABLE */
    default:
        return 2; /* UNKNOWN */
    }
}

/* The HTTP status a gRPC status stands for (Envoy's grpcToHttpStatus),
 * for outlier detection: a gRPC failure answers 200. */
static unsigned grpc_http(const char *code)
{
    static const unsigned map[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                                   400, 409, 400, 501, 500, 503, 500, 401};
    char *end;
    unsigned long c = strtoul(code, &end, 10);
    return *code && !*end && c < sizeof(map) / sizeof(map[0]) ? map[c] : 500;
}

/* Outlier detection hears how the try ended: a gRPC answer by its
 * grpc-status (head or trailers), as Envoy's router reports it. */
static void report(struct fs *s, const struct hy_http_head *h, unsigned status)
{
    if (s->reported)
        return;
    s->reported = true;
    const char *gs = s->grpc_req && h ? hy_http_head_get(h, "grpc-status") : NULL;
    hy_l7_outlier(s->lw, s->svc, s->ep_index, HY_L7_OUT_RESPONSE, gs ? grpc_http(gs) : status);
}

/* Answers s here: status and a one-line body; a gRPC request gets a
 * trailers-only answer with grpc-status and grpc-message instead. */
static void local_answer(struct fs *s, unsigned status, const char *result, const char *why,
                         const char *location)
{
    if (s->cs.h2)
        hy_l7_h2_cancel(&s->cs);
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->try_timer);
    s->retrying = false;
    s->result = result;
    if (s->answered) { /* mid-response: only a reset can say it */
        if (s->f && !s->closed) {
            nghttp2_submit_rst_stream(s->f->h2->s, NGHTTP2_FLAG_NONE, s->id,
                                      NGHTTP2_INTERNAL_ERROR);
            hy_l7_h2_dirty(s->f->h2);
        }
        return;
    }
    struct hy_http_head h = {.status = status, .version = 20};
    s->resp_end = true;
    s->down.len = s->down_off = 0;
    if (s->grpc_req) {
        char code[8];
        snprintf(code, sizeof(code), "%u", hy_l7_grpc_code(status));
        h.status = 200;
        hy_http_head_add(&h, "content-type", 12, "application/grpc", 16);
        hy_http_head_add(&h, "grpc-status", 11, code, strlen(code));
        hy_http_head_add(&h, "grpc-message", 12, why, strlen(why));
        submit(s, &h, false);
        s->status = status; /* the log says what happened */
    } else {
        hy_http_head_add(&h, "content-type", 12, "text/plain", 10);
        if (location)
            hy_http_head_add(&h, "location", 8, location, strlen(location));
        hy_buf_printf(&s->down, "%s\n", why);
        submit(s, &h, strcmp(s->req.method ? s->req.method : "", "HEAD") != 0);
    }
    hy_http_head_fini(&h);
    ack(s);
}

/* ----- tries ----- */

static void try_start(struct fs *s);

static void on_try_timer(uv_timer_t *t)
{
    struct fs *s = t->data;
    if (s->retrying) { /* the backoff is over */
        s->retrying = false;
        try_start(s);
        return;
    }
    hy_l7_count(s->lw, HY_L7_TIMEOUT); /* perTryTimeout: this try failed */
    hy_l7_h2_cancel(&s->cs);
    s->cs.ops->fail(&s->cs, HY_L7_TRY_TIMEOUT);
}

static void on_request_timer(uv_timer_t *t)
{
    struct fs *s = t->data;
    hy_l7_count(s->lw, HY_L7_TIMEOUT);
    local_answer(s, 504, "timeout", "upstream request timeout", NULL);
}

static bool maybe_retry(struct fs *s, enum hy_l7_try_end end)
{
    const Hypha__V1__DpHttpRetry *r = retry_of(s);
    if (!r || !s->replay || !s->f || s->closed || s->lw->w->base.stopped)
        return false;
    struct hy_l7_outcome o = {.end = end, .resp = end == HY_L7_TRY_RESPONSE ? &s->cs.resp : NULL};
    if (!hy_l7_retry_should(r, grpc_svc(s), &s->req, &o, s->tries))
        return false;
    const Hypha__V1__DpOutbound *ob = s->svc->o;
    struct hy_px_route *rt = s->svc->a->l->route;
    if (!s->count_retry) {
        unsigned n = atomic_fetch_add(&rt->retries, 1) + 1;
        s->count_retry = true;
        if (ob->has_max_retries && ob->max_retries && n > ob->max_retries)
            return false; /* MeshCircuitBreaker maxRetries */
    }
    hy_l7_count(s->lw, HY_L7_RETRY);
    s->retrying = true;
    hy_http_head_fini(&s->cs.resp);
    hy_http_head_fini(&s->cs.trailers);
    uint64_t ms = hy_l7_retry_backoff_ms(r, s->tries, hy_l7_random(s->lw));
    uv_timer_stop(&s->try_timer);
    uv_timer_start(&s->try_timer, on_try_timer, ms ? ms : 1, 0);
    return true;
}

static void try_failed(struct fs *s, enum hy_l7_try_end end, const char *why)
{
    if (maybe_retry(s, end))
        return;
    unsigned st = end == HY_L7_TRY_CONNECT_FAILURE ? 503 : end == HY_L7_TRY_TIMEOUT ? 504 : 502;
    local_answer(s, st,
                 end == HY_L7_TRY_CONNECT_FAILURE ? "upstream_failed"
                 : end == HY_L7_TRY_TIMEOUT       ? "timeout"
                                                  : "upstream_reset",
                 why, NULL);
}

static void try_start(struct fs *s)
{
    char why[300];
    size_t idx = 0;
    bool oom = false;
    const Hypha__V1__DpEndpoint *ep =
        hy_l7_pick_ref(s->lw, s->svc, &s->req, s->f ? s->f->c : NULL, s->ref, &idx, &oom);
    if (oom) {
        local_answer(s, 500, "error", "out of memory", NULL);
        return;
    }
    if (!ep) {
        local_answer(s, 503, "no_endpoints", "no healthy upstream", NULL);
        return;
    }
    s->ep_index = idx;
    s->has_ep = true;
    s->peer_id = s->svc->peer_id;
    hy_agent_endpoint_key(ep, s->upstream, sizeof(s->upstream));
    s->tries++;
    struct hy_l7_h2 *h2 = hy_l7_pool_get(s->lw, s->svc, ep, why, sizeof(why));
    if (!h2) {
        hy_l7_outlier(s->lw, s->svc, idx, HY_L7_OUT_CONNECT_FAILED, 0);
        try_failed(s, HY_L7_TRY_CONNECT_FAILURE, why);
        return;
    }
    s->sent = s->body_base;
    s->reported = false;
    s->cs.req_trailers = &s->req_trailers;
    if (hy_l7_h2_submit(h2, &s->cs, &s->req, s->has_body) < 0) {
        try_failed(s, HY_L7_TRY_RESET, "the request cannot be sent as HTTP/2");
        return;
    }
    uint64_t per_try = hy_l7_retry_per_try_ms(retry_of(s));
    if (per_try)
        uv_timer_start(&s->try_timer, on_try_timer, per_try, 0);
}

/* ----- the pooled stream's callbacks ----- */

static ssize_t cs_read(struct hy_l7_cs *cs, uint8_t *buf, size_t len, bool *eof)
{
    struct fs *s = (struct fs *)cs;
    size_t end = s->body_base + s->body.len;
    size_t n = end - s->sent < len ? end - s->sent : len;
    if (n)
        memcpy(buf, s->body.data + (s->sent - s->body_base), n);
    s->sent += n;
    if (!s->replay && s->sent - s->body_base > HY_L7_REPLAY_MAX) { /* drop what went */
        size_t drop = s->sent - s->body_base;
        memmove(s->body.data, s->body.data + drop, s->body.len - drop);
        s->body.len -= drop;
        s->body_base += drop;
    }
    ack(s);
    if (s->sent == end && s->req_end)
        *eof = true;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

static void cs_head(struct hy_l7_cs *cs, bool end)
{
    struct fs *s = (struct fs *)cs;
    s->up_ms = now_of(s);
    uv_timer_stop(&s->try_timer);
    /* a gRPC answer's verdict may wait for its trailers */
    if (!s->grpc_req || end || cs->resp.status != 200 || hy_http_head_get(&cs->resp, "grpc-status"))
        report(s, &cs->resp, cs->resp.status);
    if (maybe_retry(s, HY_L7_TRY_RESPONSE)) {
        hy_l7_h2_cancel(cs);
        return;
    }
    hy_l7_route_response(s->front->routes, s->route, &cs->resp);
    hy_http_head_remove(&cs->resp, "connection");
    if (end) {
        s->resp_end = true;
        uv_timer_stop(&s->timer);
    }
    submit(s, &cs->resp, !end);
    ack(s); /* a body not yet sent no longer matters */
}

static void cs_data(struct hy_l7_cs *cs, const uint8_t *p, size_t n)
{
    struct fs *s = (struct fs *)cs;
    hy_l7_h2_consume(cs->h2, cs->id, n); /* the app's stream window bounds what waits */
    if (s->closed || hy_buf_append(&s->down, p, n) < 0)
        return;
    dirty(s);
}

static void cs_end(struct hy_l7_cs *cs)
{
    struct fs *s = (struct fs *)cs;
    report(s, &cs->trailers, cs->resp.status); /* no grpc-status there: the head's status */
    hy_http_head_fini(&s->resp_trailers);
    s->resp_trailers = cs->trailers;
    memset(&cs->trailers, 0, sizeof(cs->trailers));
    s->resp_end = true;
    uv_timer_stop(&s->timer);
    dirty(s);
}

static void cs_fail(struct hy_l7_cs *cs, enum hy_l7_try_end why)
{
    struct fs *s = (struct fs *)cs;
    if (s->closed || s->logged)
        return;
    uv_timer_stop(&s->try_timer);
    s->reported = true;
    hy_l7_outlier(s->lw, s->svc, s->ep_index,
                  why == HY_L7_TRY_CONNECT_FAILURE ? HY_L7_OUT_CONNECT_FAILED
                  : why == HY_L7_TRY_TIMEOUT       ? HY_L7_OUT_TIMEOUT
                                                   : HY_L7_OUT_RESET,
                  0);
    if (s->answered) { /* mid-body: the app sees its stream reset */
        local_answer(s, 502, "upstream_reset", "the upstream reset the response", NULL);
        return;
    }
    try_failed(s, why,
               why == HY_L7_TRY_CONNECT_FAILURE  ? "upstream connect error"
               : why == HY_L7_TRY_TIMEOUT        ? "upstream per-try timeout"
               : why == HY_L7_TRY_REFUSED_STREAM ? "upstream refused the stream"
                                                 : "upstream reset before its response");
}

static const struct hy_l7_cs_ops fs_ops = {cs_head, cs_data, cs_end, cs_fail, cs_read};

/* ----- the app's streams (l7_h2.c's sops) ----- */

static void on_handle_closed(uv_handle_t *h)
{
    struct fs *s = h->data;
    if (--s->handles)
        return;
    hy_http_head_fini(&s->req);
    hy_http_head_fini(&s->req_trailers);
    hy_http_head_fini(&s->resp_trailers);
    hy_http_head_fini(&s->cs.resp);
    hy_http_head_fini(&s->cs.trailers);
    hy_buf_fini(&s->body);
    hy_buf_fini(&s->down);
    hy_l7_cfg_unref(s->cfg);
    free(s);
}

static void *fs_new(struct hy_l7_h2 *h2, int32_t id)
{
    struct hy_l7_front *f = h2->wire.u;
    struct fs *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cs.ops = &fs_ops;
    s->f = f;
    s->id = id;
    s->lw = f->lw;
    s->port = f->c->l->port;
    s->route = -1;
    s->start_ms = now_of(s);
    uv_timer_init(&s->lw->w->base.loop, &s->timer);
    uv_timer_init(&s->lw->w->base.loop, &s->try_timer);
    s->timer.data = s->try_timer.data = s;
    s->handles = 2;
    s->next = f->streams;
    if (s->next)
        s->next->prev = s;
    f->streams = s;
    return s;
}

static int fs_field(void *u, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen,
                    bool trailer)
{
    struct fs *s = u;
    if (trailer) {
        if (hy_http_head_add(&s->req_trailers, (const char *)name, nlen, (const char *)value,
                             vlen) < 0)
            s->bad = "too many or too large trailer fields";
    } else if (!s->bad) {
        hy_l7_h2_req_field(&s->req, name, nlen, value, vlen, &s->bad);
    }
    return 0;
}

static void fs_head(void *u, bool end)
{
    struct fs *s = u;
    s->head_done = true;
    s->req_end = end;
    s->has_body = !end;
    s->replay = true;
    if (!s->bad)
        hy_l7_h2_req_done(&s->req, &s->bad);
    const char *ct = hy_http_head_get(&s->req, "content-type");
    s->grpc_req = ct && !strncasecmp(ct, "application/grpc", 16);
    if (s->bad) {
        local_answer(s, 400, "bad_request", s->bad, NULL);
        return;
    }
    if (!strcmp(s->req.method, "CONNECT")) {
        local_answer(s, 501, "bad_request", "CONNECT over h2c is not supported", NULL);
        return;
    }
    hy_http_head_remove(&s->req, "connection");
    s->cfg = hy_l7_cfg_ref(s->lw->cfg);
    /* MeshTrace: the client span, its context on the request */
    hy_trace_begin(&s->trace, hy_trace_conf(s->lw), HY_TRACE_CLIENT, &s->req, hy_l7_random(s->lw));
    s->front = hy_l7_cfg_port(s->cfg, s->port);
    if (!s->front) {
        local_answer(s, 503, "no_config", "no outbound on this port in the current config", NULL);
        return;
    }
    s->route = hy_l7_route_match(s->front->routes, &s->req);
    if (s->route < 0) {
        local_answer(s, 404, "no_route", "no route matches the request", NULL);
        return;
    }
    uint64_t rnd = hy_l7_random(s->lw);
    const char *backend = hy_l7_route_backend(s->front->routes, s->route, rnd);
    s->ref = hy_l7_route_backend_ref(s->front->routes, s->route, rnd);
    if (!backend) {
        local_answer(s, 500, "no_backend", "the route's backends all weigh 0", NULL);
        return;
    }
    struct hy_l7_redirect redir = {0};
    const char *mirror = NULL;
    if (hy_l7_route_request(s->front->routes, s->route, &s->req, rnd, &redir, &mirror) < 0) {
        local_answer(s, 500, "error", "out of memory", NULL);
        return;
    }
    if (redir.location) {
        local_answer(s, redir.status, "redirect", "redirected", redir.location);
        free(redir.location);
        return;
    }
    s->svc = hy_l7_cfg_service(s->cfg, backend);
    if (!s->svc) {
        local_answer(s, 503, "no_backend", "the route's backend has no outbound here", NULL);
        return;
    }
    if (hy_l7_route_host_to_backend(s->front->routes, s->route) && s->svc->o->service)
        hy_http_head_set_str(&s->req.authority, s->svc->o->service, strlen(s->svc->o->service));
    const Hypha__V1__DpOutbound *o = s->svc->o;
    unsigned inflight = atomic_fetch_add(&s->svc->a->l->route->requests, 1) + 1;
    s->count_req = true;
    if (o->has_max_requests && o->max_requests && inflight > o->max_requests) {
        hy_series_inc(s->f->c->m->overflow[0]);
        local_answer(s, 503, "overflow", "too many requests in flight (maxRequests)", NULL);
        return;
    }
    const Hypha__V1__DpHttpTimeouts *t =
        o->http_timeouts ? o->http_timeouts : s->front->o->http_timeouts;
    uint64_t timeout = HY_L7_TIMEOUT_MS;
    if (t && t->request_timeout)
        timeout = hy_px_ms(t->request_timeout, 0);
    if (timeout)
        uv_timer_start(&s->timer, on_request_timer, timeout, 0);
    if (mirror) { /* with a body: once it is all in */
        if (s->req_end)
            hy_l7_mirror(s->lw, s->cfg, hy_l7_route_mirror_ref(s->front->routes, s->route), &s->req,
                         NULL, 0, s->f ? s->f->c : NULL);
        else
            s->mirror = hy_l7_route_mirror_ref(s->front->routes, s->route);
    }
    try_start(s);
}

static void fs_data(void *u, const uint8_t *p, size_t n)
{
    struct fs *s = u;
    if (s->answered && !s->cs.h2) { /* answered already: dropped */
        if (s->f && !s->closed)
            hy_l7_h2_consume(s->f->h2, s->id, n);
        return;
    }
    if (hy_buf_append(&s->body, p, n) < 0) {
        local_answer(s, 503, "error", "out of memory", NULL);
        return;
    }
    if (s->body_base + s->body.len > HY_L7_REPLAY_MAX)
        s->replay = false;
    if (s->mirror && s->body_base + s->body.len > HY_L7_MIRROR_MAX)
        hy_l7_mirror_too_big(s->lw, &s->mirror);
    if (s->cs.h2)
        hy_l7_h2_resume(&s->cs);
}

static void fs_end(void *u)
{
    struct fs *s = u;
    s->req_end = true;
    if (s->mirror && !s->body_base) /* the whole body (under HY_L7_MIRROR_MAX) */
        hy_l7_mirror(s->lw, s->cfg, s->mirror, &s->req, s->body.data, s->body.len,
                     s->f ? s->f->c : NULL);
    s->mirror = NULL;
    if (s->cs.h2)
        hy_l7_h2_resume(&s->cs);
}

static void fs_closed(void *u)
{
    struct fs *s = u;
    struct hy_l7_front *f = s->f;
    s->closed = true;
    if (!s->result && !(s->resp_end && s->down_off == s->down.len))
        s->result = "downstream_closed";
    finish(s);
    if (f) {
        if (s->prev)
            s->prev->next = s->next;
        else
            f->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
        s->f = NULL;
    }
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->try_timer, on_handle_closed);
}

static ssize_t fs_read(void *u, uint8_t *buf, size_t len, uint32_t *flags)
{
    (void)u;
    (void)buf;
    (void)len;
    (void)flags;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* responses use their own provider */
}

static const struct hy_l7_sops front_sops = {fs_new, fs_field,  fs_head, fs_data,
                                             fs_end, fs_closed, fs_read};

/* ----- the connection ----- */

static int wire_write(void *u, const uint8_t *p, size_t n)
{
    struct hy_l7_front *f = u;
    struct hy_px_conn *c = f->c;
    if (c->closing)
        return UV_EPIPE;
    c->bytes_down += n;
    int rc = hy_px_write(c, &c->down, p, n);
    if (rc < 0)
        hy_px_conn_close(c, "error", "writing to the app: %s", uv_strerror(rc));
    return rc;
}

static void wire_close(void *u, const char *result, const char *why)
{
    struct hy_l7_front *f = u;
    if (why)
        hy_px_conn_close(f->c, result, "%s", why);
    else
        hy_px_conn_close(f->c, result, NULL);
}

struct hy_l7_front *hy_l7_front_new(struct hy_l7_worker *lw, struct hy_px_conn *c)
{
    struct hy_l7_front *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->c = c;
    f->lw = lw;
    struct hy_l7_wire wire = {wire_write, wire_close, f};
    f->h2 = hy_l7_h2_plain_new(lw, c, true, &front_sops, &wire);
    if (!f->h2) {
        free(f);
        return NULL;
    }
    hy_l7_h2_dirty(f->h2); /* our SETTINGS */
    return f;
}

int hy_l7_front_data(struct hy_l7_front *f, const uint8_t *p, ssize_t n)
{
    if (n < 0) { /* the app is done sending: streams under way still answer */
        if (!f->streams) {
            hy_px_conn_close(f->c, "ok", NULL);
            return 0;
        }
        nghttp2_session_terminate_session(f->h2->s, NGHTTP2_NO_ERROR);
        hy_l7_h2_dirty(f->h2);
        return 0;
    }
    if (hy_l7_h2_recv(f->h2, p, (size_t)n) < 0) {
        hy_px_conn_close(f->c, "bad_request", "the app's HTTP/2: %s",
                         f->c->why[0] ? f->c->why : "invalid");
        return HY_EINVAL;
    }
    return 0;
}

void hy_l7_front_free(struct hy_l7_front *f)
{
    if (!f)
        return;
    while (f->streams) /* nghttp2_session_del calls no callback */
        fs_closed(f->streams);
    hy_l7_h2_free(f->h2, HY_L7_TRY_RESET);
    free(f);
}
