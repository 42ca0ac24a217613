/* MeshHealthCheck http on a worker: each check proxy_health.c queues is
 * one GET of the outbound's health path on the worker's pooled HTTP/2
 * connection to the endpoint (made as traffic makes it: the outbound's
 * SNI, the peer's SPIFFE ID checked), so the callee's sidecar passes it to
 * its app like any request. The response's status decides; its body is
 * read and dropped. */
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

/* Is the response's status one the outbound expects? */
static void judge(struct hy_l7_hc *hc)
{
    const Hypha__V1__DpOutbound *o = hc->svc->o;
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
    (void)p;
    hy_l7_h2_consume(cs->h2, cs->id, n); /* dropped: let the peer send more */
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
    (void)cs;
    (void)buf;
    (void)len;
    *eof = true;
    return 0;
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
        svc && svc->o->health_http_path ? endpoint_of(svc, hc->key) : NULL;
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
    const char *path = svc->o->health_http_path, *service = svc->o->service ? svc->o->service : "";
    struct hy_http_head req = {.request = true, .version = 20};
    int rc = hy_http_head_set_str(&req.method, "GET", 3);
    if (rc == 0)
        rc = hy_http_head_set_str(&req.target, path[0] ? path : "/", path[0] ? strlen(path) : 1);
    if (rc == 0)
        rc = hy_http_head_set_str(&req.authority, service, strlen(service));
    if (rc == 0)
        rc = hy_http_head_add(&req, "user-agent", 10, HC_USER_AGENT, sizeof(HC_USER_AGENT) - 1);
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
        rc = hy_l7_h2_submit(h2, &hc->cs, &req, false);
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
