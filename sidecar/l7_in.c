/* Requests at an HTTP inbound: each HTTP/2 stream from a peer sidecar is
 * checked again against MeshTrafficPermission (a pooled connection
 * outlives permission changes: 403), MeshRateLimit (429 or the configured
 * answer) and MeshFaultInjection (abort, delay, response bandwidth), then
 * goes to the app as HTTP/1.1 over a keep-alive connection (http), or as
 * a stream on a multiplexed h2c connection (http2, grpc: l7_app_h2.c), its
 * response back as HTTP/2 with its trailers, within the inbound's
 * requestTimeout (504). An upgrade (the caller's sidecar marks it)
 * becomes a byte tunnel on one stream. */
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

#define BANDWIDTH_TICK_MS 50

struct hy_l7_ss {
    struct hy_l7_h2 *h2; /* NULL once the connection is gone */
    int32_t id;
    struct hy_l7_ss *prev, *next; /* h2->sstreams */
    struct hy_l7_worker *lw;
    uint16_t port;
    char service[128];
    char id_peer[HY_PX_ID_MAX];
    struct hy_http_head req;
    const char *bad; /* why the request is refused (400) */
    bool head_done, req_end, closed, answered, resp_end, chunked, body_sent, upgrade, tunnel;
    bool timer_on, local;
    bool max_cut;              /* deadline_ms is maxStreamDuration's, not requestTimeout's */
    uint64_t idle_ms, last_ms; /* streamIdleTimeout (0: none); the last activity either way */
    struct hy_l7_app *app;
    struct hy_l7_cs acs; /* h2c apps (http2, grpc): the stream to the app */
    bool h2c;
    size_t up_off;                     /* h2c: request body bytes the app's stream took */
    struct hy_http_head req_trailers;  /* the caller's, for the app */
    struct hy_http_head resp_trailers; /* the app's, for the caller */
    struct hy_buf up;   /* request body that came before the request went to the app */
    struct hy_buf down; /* response body not yet taken by nghttp2 */
    size_t down_off;
    size_t unconsumed; /* DATA bytes received and not yet acknowledged */
    unsigned status;
    uint64_t start_ms, app_ms, deadline_ms;
    const char *result;
    struct hy_l7_fault fault;
    uint64_t tokens;           /* bandwidth fault: bytes that may go now */
    struct hy_trace_ctx trace; /* MeshTrace: the server span */
    uv_timer_t timer;
};

static uint64_t now_ms(struct hy_l7_ss *ss)
{
    return uv_now(&ss->lw->w->base.loop);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct hy_l7_ss *ss = h->data;
    hy_http_head_fini(&ss->req);
    hy_http_head_fini(&ss->req_trailers);
    hy_http_head_fini(&ss->resp_trailers);
    hy_http_head_fini(&ss->acs.resp);
    hy_http_head_fini(&ss->acs.trailers);
    hy_buf_fini(&ss->up);
    hy_buf_fini(&ss->down);
    free(ss);
}

static void head_timer_start(struct hy_l7_ss *ss);

struct hy_l7_ss *hy_l7_ss_new(struct hy_l7_h2 *h2, int32_t id)
{
    struct hy_l7_ss *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return NULL;
    ss->h2 = h2;
    ss->id = id;
    ss->lw = h2->lw;
    ss->port = h2->c->l->port;
    hy_str_copy(ss->id_peer, sizeof(ss->id_peer), h2->c->id);
    ss->start_ms = uv_now(&h2->lw->w->base.loop);
    uv_timer_init(&h2->lw->w->base.loop, &ss->timer);
    ss->timer.data = ss;
    ss->next = h2->sstreams;
    if (ss->next)
        ss->next->prev = ss;
    h2->sstreams = ss;
    head_timer_start(ss);
    return ss;
}

static int ss_field(void *u, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen,
                    bool trailer)
{
    struct hy_l7_ss *ss = u;
    if (trailer) { /* for the app: after an h2c stream's body, or a chunked body's */
        if (hy_http_head_add(&ss->req_trailers, (const char *)name, nlen, (const char *)value,
                             vlen) < 0)
            ss->bad = "too many or too large trailer fields";
        return 0;
    }
    return hy_l7_ss_field(ss, name, nlen, value, vlen);
}

int hy_l7_ss_field(struct hy_l7_ss *ss, const uint8_t *name, size_t nlen, const uint8_t *value,
                   size_t vlen)
{
    if (!ss->bad)
        hy_l7_h2_req_field(&ss->req, name, nlen, value, vlen, &ss->bad);
    return 0;
}

/* ----- the response ----- */

static void resume(struct hy_l7_ss *ss)
{
    if (ss->h2 && !ss->closed) {
        nghttp2_session_resume_data(ss->h2->s, ss->id);
        hy_l7_h2_dirty(ss->h2);
    }
}

static ssize_t provider(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *u)
{
    (void)src;
    (void)u;
    struct hy_l7_ss *ss = nghttp2_session_get_stream_user_data(s, id);
    if (!ss)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return hy_l7_ss_read(ss, buf, len, flags);
}

/* Submits response head h (fields lowercased by nghttp2's peer rules:
 * ours are lowercased here); body: DATA follows from ss->down. */
static int submit(struct hy_l7_ss *ss, const struct hy_http_head *h, bool body,
                  const char *extra_name, const char *extra_value)
{
    nghttp2_nv nv[HY_HTTP_MAX_FIELDS + 2];
    char status[4];
    char *names = malloc(h->bytes + 1);
    if (!names)
        return HY_ENOMEM;
    unsigned st = h->status % 1000; /* three digits, without printf: once a response */
    status[0] = (char)('0' + st / 100);
    status[1] = (char)('0' + st / 10 % 10);
    status[2] = (char)('0' + st % 10);
    status[3] = '\0';
    size_t k = 0, off = 0;
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    if (extra_name)
        nv[k++] = (nghttp2_nv){(uint8_t *)extra_name, (uint8_t *)extra_value, strlen(extra_name),
                               strlen(extra_value), NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < h->n && k < sizeof(nv) / sizeof(nv[0]); i++) {
        const struct hy_http_field *f = &h->fields[i];
        for (size_t j = 0; j < f->name_len; j++)
            names[off + j] =
                (char)((f->name[j] >= 'A' && f->name[j] <= 'Z') ? f->name[j] + 32 : f->name[j]);
        nv[k++] = (nghttp2_nv){(uint8_t *)names + off, (uint8_t *)f->value, f->name_len,
                               f->value_len, NGHTTP2_NV_FLAG_NONE};
        off += f->name_len;
    }
    nghttp2_data_provider dp = {.source.ptr = ss, .read_callback = provider};
    int rc = -1;
    if (ss->h2 && !ss->closed) {
        rc = nghttp2_submit_response(ss->h2->s, ss->id, nv, k, body ? &dp : NULL);
        hy_l7_h2_dirty(ss->h2);
    }
    free(names);
    ss->answered = true;
    ss->status = h->status;
    return rc == 0 ? 0 : HY_EINVAL;
}

ssize_t hy_l7_ss_read(struct hy_l7_ss *ss, uint8_t *buf, size_t len, uint32_t *flags)
{
    size_t avail = ss->down.len - ss->down_off;
    if (ss->fault.bandwidth_bytes_per_s && avail) {
        if (!ss->tokens)
            return NGHTTP2_ERR_DEFERRED; /* the bandwidth timer resumes it */
        if (len > ss->tokens)
            len = (size_t)ss->tokens;
    }
    size_t n = avail < len ? avail : len;
    if (n)
        memcpy(buf, ss->down.data + ss->down_off, n);
    ss->down_off += n;
    if (ss->fault.bandwidth_bytes_per_s)
        ss->tokens -= n;
    if (ss->down_off == ss->down.len) {
        ss->down.len = ss->down_off = 0;
        if (ss->app && !ss->tunnel)
            hy_l7_app_pause(ss->app, false);
    }
    if (ss->tunnel && ss->app && ss->down.len - ss->down_off < HY_AGENT_LOW_WATER)
        hy_l7_app_pause(ss->app, false);
    if (ss->down.len == ss->down_off && ss->resp_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (ss->resp_trailers.n && ss->h2 &&
            hy_l7_h2_trailer(ss->h2->s, ss->id, &ss->resp_trailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

/* Answers ss locally: status, with fields of mod (MeshRateLimit's
 * onRateLimit headers) and a one-line body; a gRPC call (content-type
 * application/grpc...) gets a trailers-only answer instead, grpc-status
 * mapped from status as Envoy does (hy_l7_grpc_code) and why in
 * grpc-message, so its client sees a gRPC status. */
static void answer(struct hy_l7_ss *ss, unsigned status, const char *result, const char *why,
                   const Hypha__V1__DpHeaderModifier *mod)
{
    if (ss->answered) {
        if (ss->h2 && !ss->closed) {
            nghttp2_submit_rst_stream(ss->h2->s, NGHTTP2_FLAG_NONE, ss->id, NGHTTP2_INTERNAL_ERROR);
            hy_l7_h2_dirty(ss->h2);
        }
        ss->result = result;
        return;
    }
    const char *ct = ss->req.n ? hy_http_head_get(&ss->req, "content-type") : NULL;
    bool grpc = ct && !strncasecmp(ct, "application/grpc", 16);
    struct hy_http_head h = {.status = grpc ? 200 : status, .version = 20};
    if (grpc) {
        char code[8];
        snprintf(code, sizeof(code), "%u", hy_l7_grpc_code(status));
        hy_http_head_add(&h, "content-type", 12, "application/grpc", 16);
        hy_http_head_add(&h, "grpc-status", 11, code, strlen(code));
        hy_http_head_add(&h, "grpc-message", 12, why, strlen(why));
    } else {
        hy_http_head_add(&h, "content-type", 12, "text/plain", 10);
    }
    for (size_t i = 0; mod && i < mod->n_set; i++)
        if (mod->set[i]->name && mod->set[i]->value)
            hy_http_head_set(&h, mod->set[i]->name, mod->set[i]->value);
    for (size_t i = 0; mod && i < mod->n_add; i++)
        if (mod->add[i]->name && mod->add[i]->value)
            hy_http_head_add(&h, mod->add[i]->name, strlen(mod->add[i]->name), mod->add[i]->value,
                             strlen(mod->add[i]->value));
    ss->down.len = ss->down_off = 0;
    if (!grpc)
        hy_buf_printf(&ss->down, "%s\n", why);
    ss->resp_end = true;
    ss->local = true;
    ss->result = result;
    submit(ss, &h, !grpc, NULL, NULL);
    ss->status = status; /* the log and metrics say what happened */
    hy_http_head_fini(&h);
}

/* requestHeadersTimeout (the inbound listener's, as Kuma sets it): the
 * caller's header block has not ended in time. While a header block is
 * open nothing else may come on the connection (RFC 9113, 6.10), so a
 * peer holding one open (HEADERS, then no CONTINUATION) holds the whole
 * connection: the stream is answered 408 (no body) with a GOAWAY, then
 * reset once they are out (nghttp2 would drop a response queued behind
 * the reset); with no stream left and the GOAWAY sent the session wants
 * neither to read nor to write, and the connection closes (flush). */
static void on_head_reset(uv_timer_t *t)
{
    struct hy_l7_ss *ss = t->data;
    if (ss->closed || !ss->h2 || ss->h2->dead)
        return;
    nghttp2_submit_rst_stream(ss->h2->s, NGHTTP2_FLAG_NONE, ss->id, NGHTTP2_NO_ERROR);
    hy_l7_h2_dirty(ss->h2);
}

static void on_head_timer(uv_timer_t *t)
{
    struct hy_l7_ss *ss = t->data;
    struct hy_l7_h2 *h2 = ss->h2;
    if (ss->head_done || ss->answered || ss->closed || !h2 || h2->dead)
        return;
    hy_l7_count(ss->lw, HY_L7_TIMEOUT);
    hy_log(HY_LOG_INFO, "dp",
           "inbound %u: request headers from %s not complete in time (requestHeadersTimeout)",
           (unsigned)ss->port, ss->id_peer);
    struct hy_http_head h = {.status = 408, .version = 20};
    ss->resp_end = ss->local = true;
    ss->result = "request_headers_timeout";
    submit(ss, &h, false, NULL, NULL);
    nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    uv_timer_start(&ss->timer, on_head_reset, 1, 0); /* after the flush before the next poll */
}

static void head_timer_start(struct hy_l7_ss *ss)
{
    const Hypha__V1__DpInbound *in = hy_l7_inbound(ss->lw, ss->port);
    const Hypha__V1__DpHttpTimeouts *t = in ? in->http_timeouts : NULL;
    uint64_t ms = t ? hy_px_ms(t->request_headers_timeout, 0) : 0; /* unset: none, as Kuma */
    if (ms)
        uv_timer_start(&ss->timer, on_head_timer, ms, 0);
}

/* ----- the app's side ----- */

static void consume(struct hy_l7_ss *ss)
{
    if (ss->unconsumed && ss->h2) {
        hy_l7_h2_consume(ss->h2, ss->id, ss->unconsumed);
        ss->unconsumed = 0;
    }
}

static int app_head(void *u, struct hy_http_head *h, bool body)
{
    struct hy_l7_ss *ss = u;
    ss->app_ms = now_ms(ss);
    bool switched =
        h->status == 101 || (!strcmp(ss->req.method, "CONNECT") && h->status / 100 == 2);
    if (ss->upgrade && switched) {
        ss->tunnel = true;
        const char *up = hy_http_head_get(h, "Upgrade");
        char val[128];
        snprintf(val, sizeof(val), "%u %s", h->status, up ? up : "");
        hy_h1_strip_hop(h);
        unsigned st = h->status;
        h->status = 200;
        submit(ss, h, true, HY_L7_UPGRADED, val);
        ss->status = st;
        uv_timer_stop(&ss->timer); /* a tunnel lives as long as its ends want */
        consume(ss);
        return 0;
    }
    hy_h1_strip_hop(h);
    if (!body)
        ss->resp_end = true;
    submit(ss, h, body, NULL, NULL);
    return 0;
}

static int app_body(void *u, const uint8_t *p, size_t n)
{
    struct hy_l7_ss *ss = u;
    if (ss->closed)
        return 0;
    ss->last_ms = now_ms(ss);
    if (hy_buf_append(&ss->down, p, n) < 0)
        return 1;
    if (ss->down.len - ss->down_off > HY_L7_BODY_HIGH && ss->app)
        hy_l7_app_pause(ss->app, true);
    resume(ss);
    return 0;
}

static void app_done(struct hy_l7_ss *ss, bool keep)
{
    if (ss->acs.h2)
        hy_l7_h2_cancel(&ss->acs);
    struct hy_l7_app *a = ss->app;
    ss->app = NULL;
    if (a)
        hy_l7_app_release(a, keep);
}

static void app_end(void *u, struct hy_http_head *trailers)
{
    struct hy_l7_ss *ss = u;
    if (trailers && trailers->n) { /* the caller gets them after the body */
        hy_http_head_fini(&ss->resp_trailers);
        ss->resp_trailers = *trailers;
        memset(trailers, 0, sizeof(*trailers));
    }
    ss->resp_end = true;
    resume(ss);
    if (!ss->fault.bandwidth_bytes_per_s) /* else its tick still paces what is left */
        uv_timer_stop(&ss->timer);
    /* the app answered before the request's end: that connection cannot be reused */
    app_done(ss, ss->req_end);
}

static void forward(struct hy_l7_ss *ss, bool fresh);
static void app_send(struct hy_l7_ss *ss, const uint8_t *p, size_t n);

static void app_fail(void *u, int status, const char *why)
{
    struct hy_l7_ss *ss = u;
    ss->app = NULL;
    if (status == 0 && !ss->body_sent && !ss->answered) { /* a stale keep-alive connection */
        forward(ss, true);
        return;
    }
    if (ss->tunnel) {
        ss->resp_end = true;
        resume(ss);
        return;
    }
    hy_log(HY_LOG_DEBUG, "dp", "inbound %u: %s", (unsigned)ss->port, why);
    answer(ss, status ? (unsigned)status : 502,
           status == 503 ? "upstream_failed" : "upstream_reset", why, NULL);
}

static void app_written(void *u)
{
    consume(u);
}

static void app_tunnel(void *u, const uint8_t *p, ssize_t n)
{
    struct hy_l7_ss *ss = u;
    if (n < 0) {
        ss->resp_end = true;
        resume(ss);
        return;
    }
    app_body(ss, p, (size_t)n);
}

static const struct hy_l7_app_ops app_ops = {
    .head = app_head,
    .body = app_body,
    .end = app_end,
    .fail = app_fail,
    .written = app_written,
};

/* ----- h2c apps (http2, grpc): one stream on a multiplexed connection ----- */

static struct hy_l7_ss *ss_of_acs(struct hy_l7_cs *cs)
{
    return (struct hy_l7_ss *)((char *)cs - offsetof(struct hy_l7_ss, acs));
}

static void acs_head(struct hy_l7_cs *cs, bool end)
{
    struct hy_l7_ss *ss = ss_of_acs(cs);
    ss->app_ms = now_ms(ss);
    if (end) { /* headers only (gRPC's trailers-only answer) */
        ss->resp_end = true;
        if (!ss->fault.bandwidth_bytes_per_s)
            uv_timer_stop(&ss->timer);
    }
    submit(ss, &cs->resp, !end, NULL, NULL);
}

static void acs_data(struct hy_l7_cs *cs, const uint8_t *p, size_t n)
{
    struct hy_l7_ss *ss = ss_of_acs(cs);
    /* acknowledged at once: the caller's stream window bounds what waits */
    hy_l7_h2_consume(cs->h2, cs->id, n);
    if (ss->closed || hy_buf_append(&ss->down, p, n) < 0)
        return;
    resume(ss);
}

static void acs_end(struct hy_l7_cs *cs)
{
    struct hy_l7_ss *ss = ss_of_acs(cs);
    hy_http_head_fini(&ss->resp_trailers);
    ss->resp_trailers = cs->trailers;
    memset(&cs->trailers, 0, sizeof(cs->trailers));
    ss->resp_end = true;
    if (!ss->fault.bandwidth_bytes_per_s)
        uv_timer_stop(&ss->timer);
    resume(ss);
}

static void acs_fail(struct hy_l7_cs *cs, enum hy_l7_try_end why)
{
    struct hy_l7_ss *ss = ss_of_acs(cs);
    if (ss->closed)
        return;
    bool connect = why == HY_L7_TRY_CONNECT_FAILURE;
    hy_log(HY_LOG_DEBUG, "dp", "inbound %u: the app's h2c stream %s", (unsigned)ss->port,
           connect ? "found no connection" : "was reset");
    answer(ss, connect ? 503 : 502, connect ? "upstream_failed" : "upstream_reset",
           connect ? "cannot connect to the app" : "the app reset the stream", NULL);
}

static ssize_t acs_read(struct hy_l7_cs *cs, uint8_t *buf, size_t len, bool *eof)
{
    struct hy_l7_ss *ss = ss_of_acs(cs);
    size_t avail = ss->up.len - ss->up_off, n = avail < len ? avail : len;
    if (n) {
        memcpy(buf, ss->up.data + ss->up_off, n);
        ss->up_off += n;
        if (ss->up_off == ss->up.len)
            ss->up.len = ss->up_off = 0;
        size_t c = n < ss->unconsumed ? n : ss->unconsumed;
        ss->unconsumed -= c;
        hy_l7_h2_consume(ss->h2, ss->id, c); /* the caller may send as much more */
    }
    if (ss->up.len == ss->up_off && ss->req_end)
        *eof = true;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

static const struct hy_l7_cs_ops acs_ops = {acs_head, acs_data, acs_end, acs_fail, acs_read};

static void forward_h2c(struct hy_l7_ss *ss, const Hypha__V1__DpInbound *in, const char *host)
{
    char why[256];
    struct hy_l7_h2 *h2 = hy_l7_app_h2_get(ss->lw, host, in->service_port, why, sizeof(why));
    if (!h2) {
        answer(ss, 503, "upstream_failed", why, NULL);
        return;
    }
    hy_l7_app_h2_timeouts(h2, hy_px_inbound_connect_ms(in), hy_px_inbound_idle_ms(in));
    ss->h2c = true;
    ss->body_sent = true;
    ss->acs.ops = &acs_ops;
    ss->acs.req_trailers = &ss->req_trailers;
    if (hy_l7_h2_submit(h2, &ss->acs, &ss->req, !ss->req_end) < 0)
        answer(ss, 502, "upstream_reset", "the request cannot be sent to the app as HTTP/2", NULL);
}

/* Writes the request's head to the app. */
static void forward(struct hy_l7_ss *ss, bool fresh)
{
    const Hypha__V1__DpInbound *in = hy_l7_inbound(ss->lw, ss->port);
    if (!in) {
        answer(ss, 503, "no_config", "no inbound on this port in the current config", NULL);
        return;
    }
    const char *host =
        in->service_address && in->service_address[0] ? in->service_address : "127.0.0.1";
    if (hy_l7_h2c_protocol(in->protocol) && !ss->upgrade) {
        forward_h2c(ss, in, host);
        return;
    }
    struct hy_l7_app *a =
        hy_l7_app_get(ss->lw, host, in->service_port, &app_ops, ss, fresh || ss->upgrade);
    if (!a) {
        answer(ss, 503, "upstream_failed", "cannot connect to the app", NULL);
        return;
    }
    if (in->http_timeouts) /* maxConnectionDuration: of the connections to the app */
        hy_l7_app_max_duration(a, hy_px_ms(in->http_timeouts->max_connection_duration, 0));
    hy_l7_app_timeouts(a, hy_px_inbound_connect_ms(in), hy_px_inbound_idle_ms(in));
    ss->app = a;
    hy_l7_app_expect(a, ss->req.method);
    long long cl = -2;
    const char *len = hy_http_head_get(&ss->req, "content-length");
    if (ss->upgrade) {
        hy_l7_app_tunnel(a, app_tunnel);
        char *up = NULL;
        const char *v = hy_http_head_get(&ss->req, HY_L7_UPGRADE);
        if (v && strcmp(ss->req.method, "CONNECT") != 0) {
            up = strdup(v);
            hy_http_head_remove(&ss->req, HY_L7_UPGRADE);
            hy_http_head_set(&ss->req, "Connection", "Upgrade");
            hy_http_head_set(&ss->req, "Upgrade", up ? up : "");
        }
        free(up);
    } else if (len) {
        cl = strtoll(len, NULL, 10);
    } else if (!ss->req_end) {
        cl = -1;
        ss->chunked = true;
    }
    struct hy_buf b = {0};
    int rc = hy_h1_write_head(&b, &ss->req, cl);
    if (rc < 0 || hy_l7_app_write(a, b.data, b.len) < 0) {
        hy_buf_fini(&b);
        app_done(ss, false);
        answer(ss, rc == HY_EINVAL ? 400 : 503, rc == HY_EINVAL ? "bad_request" : "error",
               rc == HY_EINVAL ? "the request cannot be written as HTTP/1.1" : "out of memory",
               NULL);
        return;
    }
    hy_buf_fini(&b);
    if (ss->up.len) {
        struct hy_buf up = ss->up;
        memset(&ss->up, 0, sizeof(ss->up));
        app_send(ss, (const uint8_t *)up.data, up.len);
        hy_buf_fini(&up);
        if (!ss->app)
            return;
    }
    if (ss->req_end && ss->chunked) {
        struct hy_buf e = {0};
        if (!ss->req_trailers.n || hy_h1_write_last_chunk(&e, &ss->req_trailers) < 0)
            hy_h1_write_last_chunk(&e, NULL);
        hy_l7_app_write(a, e.data, e.len);
        hy_buf_fini(&e);
    }
}

/* ----- policies, in Envoy's filter order: RBAC, local rate limit, fault ----- */

static void on_timer(uv_timer_t *t);

/* Arms the timer (one shot) for the nearer of the deadline and the stream
 * idle timeout; stops it when neither applies any more. */
static void arm(struct hy_l7_ss *ss)
{
    uint64_t now = now_ms(ss), next = ss->deadline_ms ? ss->deadline_ms : UINT64_MAX;
    if (ss->idle_ms && ss->last_ms + ss->idle_ms < next)
        next = ss->last_ms + ss->idle_ms;
    if (next == UINT64_MAX || ss->resp_end || ss->tunnel) {
        uv_timer_stop(&ss->timer);
        return;
    }
    uv_timer_start(&ss->timer, on_timer, next > now ? next - now : 1, 0);
}

static void go(struct hy_l7_ss *ss)
{
    if (ss->fault.abort_status) {
        hy_l7_count_fault(ss->lw, "abort");
        answer(ss, ss->fault.abort_status, "fault_abort", "fault filter abort", NULL);
        return;
    }
    if (ss->fault.bandwidth_bytes_per_s) /* a tick paces the body and watches the deadline */
        uv_timer_start(&ss->timer, on_timer, BANDWIDTH_TICK_MS, BANDWIDTH_TICK_MS);
    else
        arm(ss);
    ss->timer_on = ss->deadline_ms || ss->idle_ms || ss->fault.bandwidth_bytes_per_s;
    ss->tokens = ss->fault.bandwidth_bytes_per_s ? ss->fault.bandwidth_bytes_per_s / 20 + 1 : 0;
    forward(ss, false);
}

static void on_timer(uv_timer_t *t)
{
    struct hy_l7_ss *ss = t->data;
    uint64_t now = now_ms(ss);
    if (ss->fault.delay_ms) { /* the delay is over */
        ss->fault.delay_ms = 0;
        uv_timer_stop(t);
        go(ss);
        return;
    }
    if (ss->deadline_ms && now >= ss->deadline_ms && !ss->resp_end) {
        uv_timer_stop(t);
        hy_l7_count(ss->lw, HY_L7_TIMEOUT);
        app_done(ss, false);
        if (ss->max_cut) /* as Envoy: 408 while the request is not all in */
            answer(ss, ss->req_end ? 504 : 408, "max_stream_duration",
                   "upstream max stream duration reached", NULL);
        else
            answer(ss, 504, "timeout", "upstream request timeout", NULL);
        return;
    }
    if (ss->idle_ms && now >= ss->last_ms + ss->idle_ms && !ss->resp_end && !ss->tunnel) {
        /* streamIdleTimeout: as Envoy, 408 while the request is not all in */
        uv_timer_stop(t);
        hy_l7_count(ss->lw, HY_L7_TIMEOUT);
        app_done(ss, false);
        answer(ss, ss->req_end ? 504 : 408, "stream_idle_timeout", "stream timeout", NULL);
        return;
    }
    if (ss->fault.bandwidth_bytes_per_s) {
        ss->tokens += ss->fault.bandwidth_bytes_per_s * BANDWIDTH_TICK_MS / 1000 + 1;
        resume(ss);
    } else {
        arm(ss);
    }
}

void hy_l7_ss_head(struct hy_l7_ss *ss, bool end)
{
    struct hy_l7_worker *lw = ss->lw;
    ss->head_done = true;
    ss->req_end = end;
    if (!ss->bad)
        hy_l7_h2_req_done(&ss->req, &ss->bad);
    if (ss->bad) {
        answer(ss, 400, "bad_request", ss->bad, NULL);
        return;
    }
    const Hypha__V1__DpInbound *in = hy_l7_inbound(lw, ss->port);
    if (!in) {
        answer(ss, 503, "no_config", "no inbound on this port in the current config", NULL);
        return;
    }
    hy_str_copy(ss->service, sizeof(ss->service), in->service);
    /* MeshTrace: the server span, its context on the request to the app */
    hy_trace_begin(&ss->trace, hy_trace_conf(lw), HY_TRACE_SERVER, &ss->req, hy_l7_random(lw));
    ss->upgrade = hy_http_head_get(&ss->req, HY_L7_UPGRADE) || !strcmp(ss->req.method, "CONNECT");
    /* the permission, again: the config may have changed since the connection came */
    struct hy_permit_decision d;
    const struct hy_permit_peer *peer = ss->h2->peer;
    hy_permit_decide(in, ss->id_peer, peer, &d);
    if (d.result == HY_PERMIT_DENY) {
        hy_series_inc(ss->h2->c->m->denied);
        char why[300];
        snprintf(why, sizeof(why), "denied: %s",
                 d.origin ? d.origin : "no MeshTrafficPermission allows this caller");
        answer(ss, 403, "denied", why, NULL);
        return;
    }
    int index;
    const Hypha__V1__DpCallerRateLimit *rl = hy_l7_limit_pick(in, peer, &index);
    if (rl && lw->limits &&
        !hy_l7_limit_take(lw->limits->l, ss->port, index, false, hy_agent_now_ms())) {
        hy_l7_count_limited(lw, "http");
        unsigned st = rl->has_on_limit_status && rl->on_limit_status ? rl->on_limit_status : 429;
        answer(ss, st, "rate_limited", "local_rate_limited", rl->on_limit_headers);
        return;
    }
    const Hypha__V1__DpCallerFaults *f = hy_l7_fault_pick(in, peer);
    if (f && !ss->upgrade)
        hy_l7_fault_decide(f, hy_l7_random(lw), &ss->fault);
    uint64_t timeout = HY_L7_TIMEOUT_MS;
    if (in->http_timeouts && in->http_timeouts->request_timeout)
        timeout = hy_px_ms(in->http_timeouts->request_timeout, 0);
    if (timeout && !ss->upgrade)
        ss->deadline_ms = ss->start_ms + timeout;
    /* maxStreamDuration of the inbound's cluster (the app): the earlier
     * deadline cuts the stream */
    uint64_t max = in->http_timeouts ? hy_px_ms(in->http_timeouts->max_stream_duration, 0) : 0;
    if (max && !ss->upgrade && (!ss->deadline_ms || ss->start_ms + max < ss->deadline_ms)) {
        ss->deadline_ms = ss->start_ms + max;
        ss->max_cut = true;
    }
    /* streamIdleTimeout of the inbound's listener (unset: Kuma's 30 min) */
    const Hypha__V1__Duration *idle =
        in->http_timeouts ? in->http_timeouts->stream_idle_timeout : NULL;
    ss->idle_ms = ss->upgrade ? 0 : idle ? hy_px_ms(idle, 0) : HY_L7_STREAM_IDLE_MS;
    ss->last_ms = now_ms(ss);
    if (ss->fault.bandwidth_bytes_per_s)
        hy_l7_count_fault(lw, "bandwidth");
    if (ss->fault.delay_ms) {
        hy_l7_count_fault(lw, "delay");
        uv_timer_start(&ss->timer, on_timer, ss->fault.delay_ms, 0);
        ss->timer_on = true;
        return;
    }
    go(ss);
}

/* Passes request body bytes to the app (framed as the head said). */
static void app_send(struct hy_l7_ss *ss, const uint8_t *p, size_t n)
{
    ss->body_sent = true;
    struct hy_buf b = {0};
    int rc = ss->chunked ? hy_h1_write_chunk(&b, p, n) : hy_buf_append(&b, p, n);
    if (rc == 0)
        rc = hy_l7_app_write(ss->app, b.data, b.len);
    hy_buf_fini(&b);
    if (rc < 0) {
        app_done(ss, false);
        answer(ss, 502, "upstream_reset", "writing to the app failed", NULL);
        return;
    }
    if (hy_l7_app_queued(ss->app) < HY_L7_BODY_HIGH)
        consume(ss);
}

void hy_l7_ss_data(struct hy_l7_ss *ss, const uint8_t *p, size_t n)
{
    ss->unconsumed += n;
    ss->last_ms = now_ms(ss);
    if (ss->local || (!ss->app && !ss->acs.h2 && ss->answered)) { /* answered already: dropped */
        consume(ss);
        return;
    }
    if (ss->h2c) { /* the app's stream takes it (acs_read) */
        if (hy_buf_append(&ss->up, p, n) < 0) {
            app_done(ss, false);
            answer(ss, 503, "error", "out of memory", NULL);
            return;
        }
        hy_l7_h2_resume(&ss->acs);
        return;
    }
    if (!ss->app) { /* not at the app yet (a delay): waits, unacknowledged */
        if (hy_buf_append(&ss->up, p, n) < 0)
            answer(ss, 503, "error", "out of memory", NULL);
        return;
    }
    app_send(ss, p, n);
}

void hy_l7_ss_end(struct hy_l7_ss *ss)
{
    ss->req_end = true;
    if (ss->h2c) {
        hy_l7_h2_resume(&ss->acs);
        return;
    }
    if (ss->tunnel && ss->app) {
        hy_l7_app_shut(ss->app);
        return;
    }
    if (ss->app && ss->chunked) { /* with the caller's trailers, when they can be written */
        struct hy_buf e = {0};
        if (!ss->req_trailers.n || hy_h1_write_last_chunk(&e, &ss->req_trailers) < 0)
            hy_h1_write_last_chunk(&e, NULL);
        hy_l7_app_write(ss->app, e.data, e.len);
        hy_buf_fini(&e);
    }
}

void hy_l7_ss_closed(struct hy_l7_ss *ss)
{
    struct hy_l7_h2 *h2 = ss->h2;
    ss->closed = true;
    if (h2) {
        if (ss->prev)
            ss->prev->next = ss->next;
        else
            h2->sstreams = ss->next;
        if (ss->next)
            ss->next->prev = ss->prev;
        ss->h2 = NULL;
    }
    if (ss->head_done) {
        bool done = ss->resp_end && ss->down_off == ss->down.len;
        if (!ss->result)
            ss->result = done ? "ok" : "reset";
        uint64_t now = now_ms(ss);
        struct hy_l7_done d = {
            .dir = HY_PX_IN,
            .port = ss->port,
            .service = ss->service,
            .route = "",
            .method = ss->req.method,
            .authority = ss->req.authority,
            .path = ss->req.target,
            .upstream = ss->local ? NULL : "app",
            .id = ss->id_peer,
            .result = ss->result,
            .status = ss->status,
            .seconds = (double)(now - ss->start_ms) / 1000.0,
            .upstream_seconds = ss->app_ms ? (double)(ss->app_ms - ss->start_ms) / 1000.0 : 0,
            .from = h2 ? h2->c : NULL,
            .req = &ss->req,
            .trace = &ss->trace,
        };
        hy_l7_log(ss->lw, &d);
    }
    app_done(ss, ss->resp_end && ss->req_end && !ss->tunnel);
    uv_close((uv_handle_t *)&ss->timer, on_timer_closed);
}

void hy_l7_in_start(struct hy_px_conn *c)
{
    struct hy_l7_worker *lw = hy_l7_worker(c->w);
    struct hy_l7_h2 *h2 = lw ? hy_l7_h2_server_new(lw, c) : NULL;
    if (!h2 || !(h2->peer = calloc(1, sizeof(*h2->peer)))) {
        hy_px_conn_close(c, "error", "out of memory");
        return;
    }
    hy_px_tls_peer_tags(c, h2->peer);
    hy_px_conn_relay(c);
}

/* ----- the sops l7_h2.c calls ----- */

static void *ss_new(struct hy_l7_h2 *h2, int32_t id)
{
    return hy_l7_ss_new(h2, id);
}

static void ss_head(void *u, bool end)
{
    hy_l7_ss_head(u, end);
}

static void ss_data(void *u, const uint8_t *p, size_t n)
{
    hy_l7_ss_data(u, p, n);
}

static void ss_end(void *u)
{
    hy_l7_ss_end(u);
}

static void ss_closed(void *u)
{
    hy_l7_ss_closed(u);
}

static ssize_t ss_read(void *u, uint8_t *buf, size_t len, uint32_t *flags)
{
    return hy_l7_ss_read(u, buf, len, flags);
}

const struct hy_l7_sops hy_l7_in_sops = {ss_new, ss_field,  ss_head, ss_data,
                                         ss_end, ss_closed, ss_read};
