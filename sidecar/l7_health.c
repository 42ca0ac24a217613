/* MeshHealthCheck http and grpc on a worker: each check proxy_health.c
 * queues is one request on the worker's pooled HTTP/2 connection to the
 * endpoint (made as traffic makes it: the outbound's SNI, the peer's
 * SPIFFE ID checked), so the callee's sidecar passes it to its app like
 * any request. http: a GET of the outbound's health path, its status
 * decides, its body is dropped. grpc: grpc.health.v1.Health/Check (the
 * service name in the request), healthy iff grpc-status is 0 and the
 * answer says SERVING, as Envoy's gRPC health checker does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "proxy_l7.h"
#include "poison.h"

#define HC_USER_AGENT "hypha-health-check"

void hy_l7_hc_free(struct hy_proxy *p, struct hy_l7_hc *hc)
{
    atomic_fetch_sub(&hc->t.route->hc_running, 1);
    hy_px_route_put(p, hc->t.route);
    hy_http_head_fini(&hc->cs.resp);
    hy_http_head_fini(&hc->cs.trailers);
    hy_buf_fini(&hc->req);
    hy_buf_fini(&hc->body);
    free(hc);
}

static void on_closed(uv_handle_t *h)
{
    struct hy_l7_hc *hc = h->data;
    hy_l7_cfg_unref(hc->cfg);
    hy_l7_hc_free(hc->lw->w->p, hc);
}

/* The check's end: counted (unless the worker stops), then it goes. */
static void finish(struct hy_l7_hc *hc, bool ok, const char *why)
{
    if (hc->done)
        return;
    hc->done = true;
    hy_l7_h2_cancel(&hc->cs); /* a stream still open (the timeout) */
    uv_timer_stop(&hc->timer);
    if (!hc->lw->w->base.stopped)
        hy_px_health_record(&hc->t, hc->key, ok, why);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        hc->lw->hcs = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    hc->prev = hc->next = NULL;
    uv_close((uv_handle_t *)&hc->timer, on_closed);
}

static struct hy_l7_hc *hc_of(struct hy_l7_cs *cs)
{
    return (struct hy_l7_hc *)((char *)cs - offsetof(struct hy_l7_hc, cs));
}

int hy_l7_hc_grpc_status(const uint8_t *p, size_t n)
{
    /* one gRPC message: flag 0, 4-byte length, then HealthCheckResponse
     * { ServingStatus status = 1; } (absent: UNKNOWN) */
    if (n < 5 || p[0] != 0)
        return -1;
    size_t len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    if (len != n - 5)
        return -1;
    int status = 0;
    for (size_t i = 5; i < n;) {
        uint64_t key = 0, v = 0;
        for (unsigned sh = 0; i < n; sh += 7) { /* the tag */
            if (sh > 63)
                return -1;
            key |= (uint64_t)(p[i] & 0x7f) << sh;
            if (!(p[i++] & 0x80))
                break;
            if (i == n)
                return -1;
        }
        unsigned wt = key & 7;
        if (wt == 0) { /* varint */
            bool done = false;
            for (unsigned sh = 0; i < n && !done; sh += 7) {
                if (sh > 63)
                    return -1;
                v |= (uint64_t)(p[i] & 0x7f) << sh;
                done = !(p[i++] & 0x80);
            }
            if (!done)
                return -1;
            if (key >> 3 == 1)
                status = v > 3 ? 0 : (int)v;
        } else if (wt == 2) { /* length-delimited: skipped */
            uint64_t l = 0;
            bool done = false;
            for (unsigned sh = 0; i < n && !done; sh += 7) {
                if (sh > 63)
                    return -1;
                l |= (uint64_t)(p[i] & 0x7f) << sh;
                done = !(p[i++] & 0x80);
            }
            if (!done || l > n - i)
                return -1;
            i += (size_t)l;
        } else if (wt == 5 && n - i >= 4) {
            i += 4;
        } else if (wt == 1 && n - i >= 8) {
            i += 8;
        } else {
            return -1;
        }
    }
    return status;
}

/* gRPC: grpc-status 0 (trailers, or a trailers-only head) and SERVING. */
static void judge_grpc(struct hy_l7_hc *hc)
{
    const char *gs = hy_http_head_get(&hc->cs.trailers, "grpc-status");
    if (!gs)
        gs = hy_http_head_get(&hc->cs.resp, "grpc-status");
    char why[96];
    if (hc->cs.resp.status != 200) {
        snprintf(why, sizeof(why), "status %u", hc->cs.resp.status);
        finish(hc, false, why);
        return;
    }
    if (!gs || strcmp(gs, "0") != 0) {
        snprintf(why, sizeof(why), "grpc-status %s", gs ? gs : "missing");
        finish(hc, false, why);
        return;
    }
    int st = hy_l7_hc_grpc_status((const uint8_t *)hc->body.data, hc->body.len);
    static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    snprintf(why, sizeof(why), "%s", st < 0 ? "an invalid HealthCheckResponse" : names[st]);
    finish(hc, st == 1, why);
}

/* Is the response's status one the outbound expects? */
static void judge(struct hy_l7_hc *hc)
{
    const Hypha__V1__DpOutbound *o = hc->svc->o;
    if (o->health_grpc && !o->health_http_path) {
        judge_grpc(hc);
        return;
    }
    unsigned st = hc->cs.resp.status;
    bool ok = o->n_health_expected_statuses == 0 && st == 200;
    for (size_t i = 0; i < o->n_health_expected_statuses && !ok; i++)
        ok = o->health_expected_statuses[i] == st;
    char why[64];
    snprintf(why, sizeof(why), "status %u", st);
    finish(hc, ok, why);
}

static void hc_head(struct hy_l7_cs *cs, bool end)
{
    if (end)
        judge(hc_of(cs));
}

static void hc_data(struct hy_l7_cs *cs, const uint8_t *p, size_t n)
{
    struct hy_l7_hc *hc = hc_of(cs);
    if (hc->svc->o->health_grpc && hc->body.len + n <= 4096) /* a HealthCheckResponse is tiny */
        hy_buf_append(&hc->body, p, n);
    hy_l7_h2_consume(cs->h2, cs->id, n); /* let the peer send more */
}

static void hc_end(struct hy_l7_cs *cs)
{
    judge(hc_of(cs));
}

static void hc_fail(struct hy_l7_cs *cs, enum hy_l7_try_end why)
{
    finish(hc_of(cs), false,
           why == HY_L7_TRY_CONNECT_FAILURE ? "no connection to the endpoint (connect or TLS)"
           : cs->got_head                   ? "the response was cut"
                                            : "the stream was reset before a response");
}

static ssize_t hc_read(struct hy_l7_cs *cs, uint8_t *buf, size_t len, bool *eof)
{
    struct hy_l7_hc *hc = hc_of(cs);
    size_t n = hc->req.len - hc->req_off < len ? hc->req.len - hc->req_off : len;
    memcpy(buf, hc->req.data + hc->req_off, n);
    hc->req_off += n;
    *eof = hc->req_off == hc->req.len;
    return (ssize_t)n;
}

static const struct hy_l7_cs_ops hc_ops = {
    .head = hc_head, .data = hc_data, .end = hc_end, .fail = hc_fail, .read = hc_read};

static void on_timeout(uv_timer_t *t)
{
    struct hy_l7_hc *hc = t->data;
    char why[64];
    snprintf(why, sizeof(why), "no response within %llu ms", (unsigned long long)hc->timeout_ms);
    finish(hc, false, why);
}

/* The endpoint of svc whose key is key, or NULL. */
static const Hypha__V1__DpEndpoint *endpoint_of(const struct hy_l7_svc *svc, const char *key)
{
    char k[HY_AGENT_EP_KEY];
    for (size_t i = 0; i < svc->o->n_endpoints; i++) {
        hy_agent_endpoint_key(svc->o->endpoints[i], k, sizeof(k));
        if (!strcmp(k, key))
            return svc->o->endpoints[i];
    }
    return NULL;
}

static void start(struct hy_l7_worker *lw, struct hy_l7_hc *hc)
{
    struct hy_l7_svc *svc = hy_l7_cfg_port(lw->cfg, hc->t.port);
    const Hypha__V1__DpEndpoint *e =
        svc && (svc->o->health_http_path || svc->o->health_grpc) ? endpoint_of(svc, hc->key) : NULL;
    if (!e) { /* the worker's config no longer has it: nothing to count */
        hy_l7_hc_free(lw->w->p, hc);
        return;
    }
    hc->lw = lw;
    hc->cfg = hy_l7_cfg_ref(lw->cfg);
    hc->svc = svc;
    hc->cs.ops = &hc_ops;
    uv_timer_init(&lw->w->base.loop, &hc->timer);
    hc->timer.data = hc;
    hc->next = lw->hcs;
    if (hc->next)
        hc->next->prev = hc;
    lw->hcs = hc;
    uv_timer_start(&hc->timer, on_timeout, hc->timeout_ms, 0);
    char why[300];
    struct hy_l7_h2 *h2 = hy_l7_pool_get(lw, svc, e, why, sizeof(why));
    if (!h2) {
        finish(hc, false, why);
        return;
    }
    const Hypha__V1__DpOutbound *o = svc->o;
    bool grpc = o->health_grpc && !o->health_http_path;
    const char *path = grpc ? "/grpc.health.v1.Health/Check" : o->health_http_path;
    const char *service = o->service ? o->service : "";
    if (grpc && o->health_grpc_authority && o->health_grpc_authority[0])
        service = o->health_grpc_authority;
    struct hy_http_head req = {.request = true, .version = 20};
    int rc = hy_http_head_set_str(&req.method, grpc ? "POST" : "GET", grpc ? 4 : 3);
    if (rc == 0)
        rc = hy_http_head_set_str(&req.target, path[0] ? path : "/", path[0] ? strlen(path) : 1);
    if (rc == 0)
        rc = hy_http_head_set_str(&req.authority, service, strlen(service));
    if (rc == 0)
        rc = hy_http_head_add(&req, "user-agent", 10, HC_USER_AGENT, sizeof(HC_USER_AGENT) - 1);
    if (rc == 0 && grpc) { /* HealthCheckRequest { string service = 1; } in one message */
        rc = hy_http_head_add(&req, "content-type", 12, "application/grpc", 16);
        if (rc == 0)
            rc = hy_http_head_add(&req, "te", 2, "trailers", 8);
        const char *name = o->health_grpc_service ? o->health_grpc_service : "";
        size_t nl = strlen(name) < 127 ? strlen(name) : 127; /* one-byte length */
        size_t ml = nl ? 2 + nl : 0;
        uint8_t pre[7] = {0, 0, 0, 0, (uint8_t)ml, 0x0a, (uint8_t)nl};
        if (rc == 0)
            rc = hy_buf_append(&hc->req, pre, nl ? 7 : 5);
        if (rc == 0 && nl)
            rc = hy_buf_append(&hc->req, name, nl);
    }
    /* MeshHealthCheck http.requestHeadersToAdd: set, then add */
    const Hypha__V1__DpHeaderModifier *add = svc->o->health_http_headers;
    for (size_t i = 0; rc == 0 && add && i < add->n_set; i++)
        if (add->set[i]->name && add->set[i]->value)
            rc = hy_http_head_set(&req, add->set[i]->name, add->set[i]->value);
    for (size_t i = 0; rc == 0 && add && i < add->n_add; i++)
        if (add->add[i]->name && add->add[i]->value)
            rc = hy_http_head_add(&req, add->add[i]->name, strlen(add->add[i]->name),
                                  add->add[i]->value, strlen(add->add[i]->value));
    if (rc == 0)
        rc = hy_l7_h2_submit(h2, &hc->cs, &req, grpc);
    hy_http_head_fini(&req);
    if (rc < 0)
        finish(hc, false, rc == HY_ENOMEM ? "out of memory" : "the request cannot be sent");
}

void hy_px_l7_hc_take(struct hy_px_worker *w)
{
    struct hy_proxy *p = w->p;
    pthread_mutex_lock(&p->lock);
    struct hy_l7_hc *q = p->hc_queue;
    p->hc_queue = NULL;
    pthread_mutex_unlock(&p->lock);
    struct hy_l7_worker *lw = q ? hy_l7_worker(w) : NULL;
    if (q && !lw)
        hy_log(HY_LOG_ERROR, "dp", "worker %u: out of memory: health checks dropped",
               w->base.index);
    while (q) {
        struct hy_l7_hc *hc = q;
        q = q->next;
        hc->prev = hc->next = NULL;
        if (lw)
            start(lw, hc);
        else
            hy_l7_hc_free(p, hc);
    }
}

void hy_l7_hc_stop(struct hy_l7_worker *lw)
{
    while (lw->hcs)
        finish(lw->hcs, false, "the sidecar stops");
}
