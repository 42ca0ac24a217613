/* Active health checks (MeshHealthCheck): for every outbound whose
 * config has health_interval, a checker on the control loop checks each
 * endpoint once per interval. unhealthy_threshold failures in a row take
 * an endpoint out of the balancing (in the route every worker reads),
 * healthy_threshold successes bring it back. A check is a TCP connect
 * that completes within health_timeout (a host name is looked up each
 * time; the connection is closed at once, before any TLS), or, when the
 * outbound has health_http_path, an HTTP request a worker makes over mTLS
 * (l7_health.c) that is answered within health_timeout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "metrics.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "poison.h"

#define HY_PX_HC_TIMEOUT_MS 15000 /* Kuma's default */
#define HY_PX_HC_UNHEALTHY 5      /* Kuma's default thresholds */
#define HY_PX_HC_HEALTHY 1
#define HY_PX_OUTLIER_TICK_MS 1000 /* how often ejections are looked at */

struct checker;

struct probe {
    struct checker *ck;
    struct probe *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t req;
    uv_getaddrinfo_t lookup; /* a host-name endpoint (an ingress's advertised name) */
    uint32_t port;
    bool looking;     /* lookup is out */
    unsigned handles; /* of tcp and timer not closed yet, + 1 while lookup is out */
    bool done;
    char key[HY_AGENT_EP_KEY];
};

struct checker {
    struct hy_px_health *h;
    struct checker *next;
    struct hy_px_hc_target t; /* t.route: the checker's reference */
    uv_timer_t timer;
    bool timer_open, closing;
    uint64_t interval_ms, timeout_ms;
    struct probe *probes; /* TCP checks in flight */
};

struct hy_px_health {
    struct hy_proxy *p;
    struct hy_sidecar_snapshot *snap; /* what the checkers follow */
    struct checker *checkers;
    bool stopped;
    unsigned next_worker;        /* the one the next HTTP checks wake */
    struct hy_series *checks[2]; /* passed, failed */
    /* outlier detection's periodic pass (Envoy's interval timer): ejected
     * endpoints come back when their time is up, not only when a pick
     * looks at them, and a clean interval lowers the ejection multiplier */
    uv_timer_t outlier;
    bool outlier_open;
};

static const Hypha__V1__DpOutbound *outbound_of(const struct hy_sidecar_snapshot *s, uint16_t port)
{
    for (size_t i = 0; s && i < s->config->n_outbounds; i++)
        if (s->config->outbounds[i]->port == port)
            return s->config->outbounds[i];
    return NULL;
}

static void checker_maybe_free(struct checker *ck)
{
    if (!ck->closing || ck->timer_open || ck->probes)
        return;
    hy_px_route_put(ck->h->p, ck->t.route);
    free(ck);
}

/* ----- one check ----- */

static void probe_release(struct probe *pr)
{
    if (--pr->handles)
        return;
    struct checker *ck = pr->ck;
    struct probe **pp = &ck->probes;
    while (*pp != pr)
        pp = &(*pp)->next;
    *pp = pr->next;
    free(pr);
    checker_maybe_free(ck);
}

static void on_probe_closed(uv_handle_t *h)
{
    probe_release(h->data);
}

static void probe_close(struct probe *pr)
{
    pr->done = true;
    if (pr->looking) /* a lookup not yet running is dropped; a running one ends on its own */
        uv_cancel((uv_req_t *)&pr->lookup);
    if (!uv_is_closing((uv_handle_t *)&pr->tcp))
        uv_close((uv_handle_t *)&pr->tcp, on_probe_closed);
    if (!uv_is_closing((uv_handle_t *)&pr->timer))
        uv_close((uv_handle_t *)&pr->timer, on_probe_closed);
}

void hy_px_health_record(const struct hy_px_hc_target *t, const char *key, bool ok, const char *why)
{
    struct hy_px_route *r = t->route;
    hy_series_inc(ok ? t->passed : t->failed);
    int flipped = 0; /* 1: now unhealthy, -1: healthy again */
    pthread_mutex_lock(&r->eps.lock);
    struct hy_agent_ep *e =
        r->checked ? hy_agent_eps_slot(&r->eps, key, true, hy_agent_now_ms()) : NULL;
    if (e && ok) {
        e->hc_bad = 0;
        e->bad_until = 0; /* it takes connections: forget a failed connect */
        if (e->unhealthy && ++e->hc_ok >= t->healthy_after) {
            e->unhealthy = false;
            e->hc_ok = 0;
            flipped = -1;
        }
    } else if (e) {
        e->hc_ok = 0;
        if (!e->unhealthy && ++e->hc_bad >= t->unhealthy_after) {
            e->unhealthy = true;
            e->hc_bad = 0;
            flipped = 1;
        }
    }
    pthread_mutex_unlock(&r->eps.lock);
    if (flipped > 0)
        hy_log(HY_LOG_WARN, "dp",
               "outbound %u (%s): endpoint %s is unhealthy after %u failed health checks in a "
               "row, the last: %s",
               (unsigned)t->port, t->service, key, t->unhealthy_after, why);
    else if (flipped < 0)
        hy_log(HY_LOG_INFO, "dp", "outbound %u (%s): endpoint %s is healthy again",
               (unsigned)t->port, t->service, key);
    else if (!ok)
        hy_log(HY_LOG_DEBUG, "dp", "outbound %u: health check of %s failed: %s", (unsigned)t->port,
               key, why);
}

static void record(struct probe *pr, bool ok, const char *why)
{
    hy_px_health_record(&pr->ck->t, pr->key, ok, why);
}

static void on_probe_connect(uv_connect_t *req, int status)
{
    struct probe *pr = req->data;
    if (pr->done)
        return;
    record(pr, status == 0, status == 0 ? "" : uv_strerror(status));
    probe_close(pr);
}

static void on_probe_timeout(uv_timer_t *t)
{
    struct probe *pr = t->data;
    if (pr->done)
        return;
    char why[64];
    snprintf(why, sizeof(why), "no connection within %llu ms",
             (unsigned long long)pr->ck->timeout_ms);
    record(pr, false, why);
    probe_close(pr);
}

static void probe_connect(struct probe *pr, struct sockaddr *sa)
{
    int rc = uv_tcp_connect(&pr->req, &pr->tcp, sa, on_probe_connect);
    if (rc < 0) {
        record(pr, false, uv_strerror(rc));
        probe_close(pr);
    }
}

static void on_probe_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct probe *pr = req->data;
    pr->looking = false;
    if (!pr->done) { /* else timed out or stopped meanwhile */
        const struct addrinfo *a = res;
        for (const struct addrinfo *i = res; i; i = i->ai_next)
            if (i->ai_family == AF_INET) { /* IPv4 first, as the proxy does */
                a = i;
                break;
            }
        if (status < 0 || !a) {
            record(pr, false, status < 0 ? uv_strerror(status) : "no address");
            probe_close(pr);
        } else {
            struct sockaddr_storage sa;
            memcpy(&sa, a->ai_addr, a->ai_addrlen);
            if (sa.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)pr->port);
            else
                ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)pr->port);
            probe_connect(pr, (struct sockaddr *)&sa);
        }
    }
    uv_freeaddrinfo(res);
    probe_release(pr);
}

static void probe_start(struct checker *ck, const Hypha__V1__DpEndpoint *e)
{
    uv_loop_t *loop = ck->h->p->loop;
    struct sockaddr_storage sa;
    const char *host = e->address ? e->address : "";
    if (e->port == 0 || e->port > 65535 || !host[0])
        return; /* the outbound cannot reach it either; nothing to learn */
    bool literal = uv_ip4_addr(host, (int)e->port, (struct sockaddr_in *)&sa) == 0 ||
                   uv_ip6_addr(host, (int)e->port, (struct sockaddr_in6 *)&sa) == 0;
    struct probe *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return;
    pr->ck = ck;
    pr->port = e->port;
    hy_agent_endpoint_key(e, pr->key, sizeof(pr->key));
    uv_tcp_init(loop, &pr->tcp);
    uv_timer_init(loop, &pr->timer);
    pr->tcp.data = pr->timer.data = pr->req.data = pr->lookup.data = pr;
    pr->handles = 2;
    pr->next = ck->probes;
    ck->probes = pr;
    uv_timer_start(&pr->timer, on_probe_timeout, ck->timeout_ms, 0); /* the lookup included */
    if (literal) {
        probe_connect(pr, (struct sockaddr *)&sa);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(loop, &pr->lookup, on_probe_lookup, host, NULL, &hints);
    if (rc < 0) {
        record(pr, false, uv_strerror(rc));
        probe_close(pr);
        return;
    }
    pr->handles++; /* until on_probe_lookup */
    pr->looking = true;
}

/* ----- checkers ----- */

/* Forgets the health of endpoints the outbound no longer has, so their
 * slots come free. */
static void forget_gone(struct checker *ck, const Hypha__V1__DpOutbound *o)
{
    struct hy_px_route *r = ck->t.route;
    pthread_mutex_lock(&r->eps.lock);
    for (size_t i = 0; i < HY_AGENT_MAX_EPS; i++) {
        struct hy_agent_ep *e = &r->eps.eps[i];
        if (!e->key[0] || (!e->unhealthy && !e->hc_bad && !e->hc_ok))
            continue;
        bool have = false;
        char key[HY_AGENT_EP_KEY];
        for (size_t k = 0; k < o->n_endpoints && !have; k++) {
            hy_agent_endpoint_key(o->endpoints[k], key, sizeof(key));
            have = strcmp(key, e->key) == 0;
        }
        if (!have)
            e->unhealthy = false, e->hc_bad = e->hc_ok = 0;
    }
    pthread_mutex_unlock(&r->eps.lock);
}

/* HTTP checks of o's endpoints, for a worker to run: queued, one worker
 * woken (each round another). */
static void http_round(struct checker *ck, const Hypha__V1__DpOutbound *o)
{
    struct hy_proxy *p = ck->h->p;
    struct hy_l7_hc *q = NULL;
    for (size_t i = 0; i < o->n_endpoints; i++) {
        const Hypha__V1__DpEndpoint *e = o->endpoints[i];
        if (e->port == 0 || e->port > 65535 || !e->address || !e->address[0])
            continue; /* the outbound cannot reach it either; nothing to learn */
        if (e->sni && e->sni[0])
            continue; /* a remote subset: its ingress is checked as the service's endpoint */
        struct hy_l7_hc *hc = calloc(1, sizeof(*hc));
        if (!hc || !(hc->t.route = hy_px_route_get(p, ck->t.port, NULL))) {
            free(hc);
            hy_log(HY_LOG_ERROR, "dp", "out of memory: outbound %u's health checks skipped",
                   (unsigned)ck->t.port);
            break;
        }
        struct hy_px_route *r = hc->t.route;
        hc->t = ck->t;
        hc->t.route = r;
        atomic_fetch_add(&r->hc_running, 1);
        hc->timeout_ms = ck->timeout_ms;
        hy_agent_endpoint_key(e, hc->key, sizeof(hc->key));
        hc->next = q;
        q = hc;
    }
    if (!q)
        return;
    pthread_mutex_lock(&p->lock);
    struct hy_l7_hc *last = q;
    while (last->next)
        last = last->next;
    last->next = p->hc_queue;
    p->hc_queue = q;
    pthread_mutex_unlock(&p->lock);
    unsigned n = p->workers.n;
    for (unsigned k = 0; k < n; k++) { /* the next worker that runs */
        struct hy_agent_worker *w = hy_agent_pool_at(&p->workers, ck->h->next_worker++ % n);
        if (w->thread_started) {
            uv_async_send(&w->wake);
            break;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct checker *ck = t->data;
    const Hypha__V1__DpOutbound *o = outbound_of(ck->h->snap, ck->t.port);
    if (ck->closing || !o || ck->probes || atomic_load(&ck->t.route->hc_running))
        return; /* the last round still runs: let it end */
    forget_gone(ck, o);
    if (o->health_http_path || o->health_grpc) {
        http_round(ck, o);
        return;
    }
    for (size_t i = 0; i < o->n_endpoints; i++)
        if (!o->endpoints[i]->sni || !o->endpoints[i]->sni[0]) /* (a remote subset: see above) */
            probe_start(ck, o->endpoints[i]);
}

static void on_checker_timer_closed(uv_handle_t *h)
{
    struct checker *ck = h->data;
    ck->timer_open = false;
    checker_maybe_free(ck);
}

/* The checker starts or stops following its route. Stopped, it forgets
 * every verdict: without checks no endpoint is held unhealthy (a late
 * result of a check still out no longer counts). */
static void checker_follow(struct checker *ck, bool on)
{
    struct hy_px_route *r = ck->t.route;
    unsigned was = 0;
    pthread_mutex_lock(&r->eps.lock);
    r->checked = on;
    for (size_t i = 0; i < HY_AGENT_MAX_EPS && !on; i++) {
        struct hy_agent_ep *e = &r->eps.eps[i];
        was += e->unhealthy;
        e->unhealthy = false;
        e->hc_bad = e->hc_ok = 0;
    }
    pthread_mutex_unlock(&r->eps.lock);
    if (was && !ck->h->stopped)
        hy_log(HY_LOG_INFO, "dp",
               "outbound %u (%s): no more health checks: %u endpoint%s held unhealthy take%s "
               "traffic again",
               (unsigned)ck->t.port, ck->t.service, was, was == 1 ? "" : "s", was == 1 ? "s" : "");
}

static void checker_close(struct checker *ck)
{
    checker_follow(ck, false);
    ck->closing = true;
    for (struct probe *pr = ck->probes; pr; pr = pr->next)
        probe_close(pr);
    uv_close((uv_handle_t *)&ck->timer, on_checker_timer_closed);
}

/* Sets ck's parameters from o; restarts its timer if the interval moved. */
static void checker_set(struct checker *ck, const Hypha__V1__DpOutbound *o)
{
    uint64_t interval = hy_px_ms(o->health_interval, 60000);
    ck->timeout_ms = hy_px_ms(o->health_timeout, HY_PX_HC_TIMEOUT_MS);
    ck->t.unhealthy_after = o->has_unhealthy_threshold && o->unhealthy_threshold
                                ? o->unhealthy_threshold
                                : HY_PX_HC_UNHEALTHY;
    ck->t.healthy_after =
        o->has_healthy_threshold && o->healthy_threshold ? o->healthy_threshold : HY_PX_HC_HEALTHY;
    snprintf(ck->t.service, sizeof(ck->t.service), "%s", o->service ? o->service : "");
    if (interval != ck->interval_ms) {
        ck->interval_ms = interval;
        uv_timer_start(&ck->timer, on_tick, 0, interval); /* the first round now */
    }
}

static struct checker *checker_new(struct hy_px_health *h, uint16_t port)
{
    struct checker *ck = calloc(1, sizeof(*ck));
    if (!ck || !(ck->t.route = hy_px_route_get(h->p, port, NULL))) {
        free(ck);
        hy_log(HY_LOG_ERROR, "dp", "out of memory: no health checks for outbound %u",
               (unsigned)port);
        return NULL;
    }
    ck->h = h;
    ck->t.port = port;
    ck->t.passed = h->checks[0];
    ck->t.failed = h->checks[1];
    uv_timer_init(h->p->loop, &ck->timer);
    ck->timer.data = ck;
    ck->timer_open = true;
    checker_follow(ck, true);
    ck->next = h->checkers;
    h->checkers = ck;
    return ck;
}

/* The outbound of s a route serves: by its port, or (port 0, a
 * backend-only outbound) by its service. */
static const Hypha__V1__DpOutbound *route_outbound(const struct hy_sidecar_snapshot *s,
                                                   const struct hy_px_route *r)
{
    for (size_t i = 0; s && i < s->config->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = s->config->outbounds[i];
        if (r->port ? o->port == r->port
                    : o->port == 0 && o->service && !strcmp(o->service, r->service))
            return o;
    }
    return NULL;
}

static void on_outlier_tick(uv_timer_t *t)
{
    struct hy_px_health *h = t->data;
    struct hy_proxy *p = h->p;
    uint64_t now = hy_agent_now_ms();
    pthread_mutex_lock(&p->lock);
    for (struct hy_px_route *r = p->routes; r; r = r->next) {
        const Hypha__V1__DpOutbound *o = route_outbound(h->snap, r);
        if (!o || !o->outlier)
            continue;
        size_t n = o->n_endpoints < HY_AGENT_MAX_EPS ? o->n_endpoints : HY_AGENT_MAX_EPS;
        bool back[HY_AGENT_MAX_EPS] = {false};
        pthread_mutex_lock(&r->eps.lock);
        if (now >= r->ol_tick_ms) {
            r->ol_tick_ms = now + hy_l7_outlier_interval_ms(o->outlier);
            for (size_t k = 0; k < n; k++)
                back[k] = r->ol[k].ejected;
            hy_l7_outlier_tick(r->ol, n, now);
            for (size_t k = 0; k < n; k++)
                back[k] = back[k] && !r->ol[k].ejected;
        }
        for (size_t k = 0; k < n; k++)
            if (back[k])
                hy_log(HY_LOG_INFO, "dp",
                       "outbound %u (%s): endpoint %s is back after its ejection (outlier "
                       "detection)",
                       (unsigned)r->port, r->service, r->ol_key[k]);
        pthread_mutex_unlock(&r->eps.lock);
    }
    pthread_mutex_unlock(&p->lock);
}

/* Runs the outlier pass while some outbound of s has outlier detection. */
static void outlier_follow(struct hy_px_health *h, const struct hy_sidecar_snapshot *s)
{
    bool any = false;
    for (size_t i = 0; s && i < s->config->n_outbounds && !any; i++)
        any = s->config->outbounds[i]->outlier != NULL;
    if (any && !h->outlier_open) {
        uv_timer_init(h->p->loop, &h->outlier);
        h->outlier.data = h;
        h->outlier_open = true;
    }
    if (!h->outlier_open)
        return;
    if (any && !uv_is_active((uv_handle_t *)&h->outlier))
        uv_timer_start(&h->outlier, on_outlier_tick, HY_PX_OUTLIER_TICK_MS, HY_PX_OUTLIER_TICK_MS);
    else if (!any)
        uv_timer_stop(&h->outlier);
}

int hy_px_health_new(struct hy_proxy *p, struct hy_metrics *m)
{
    struct hy_px_health *h = calloc(1, sizeof(*h));
    if (!h)
        return HY_ENOMEM;
    h->p = p;
    p->health = h;
    struct hy_metric *f = hy_metric_counter(
        m, "hypha_dp_health_checks_total",
        "Active health checks of outbound endpoints (MeshHealthCheck)", 1, "result");
    if (!f || !(h->checks[0] = hy_metric_series(f, "passed")) ||
        !(h->checks[1] = hy_metric_series(f, "failed")))
        return HY_ENOMEM;
    return 0;
}

void hy_px_health_update(struct hy_proxy *p)
{
    struct hy_px_health *h = p->health;
    if (!h || h->stopped)
        return;
    struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_get(p->current, NULL);
    hy_sidecar_snapshot_unref(h->snap);
    h->snap = s;
    outlier_follow(h, s);
    struct checker **pc = &h->checkers;
    while (*pc) { /* stop what the config no longer checks */
        struct checker *ck = *pc;
        const Hypha__V1__DpOutbound *o = outbound_of(s, ck->t.port);
        if (o && o->health_interval) {
            checker_set(ck, o);
            pc = &ck->next;
            continue;
        }
        *pc = ck->next;
        checker_close(ck);
    }
    for (size_t i = 0; s && i < s->config->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = s->config->outbounds[i];
        if (!o->health_interval || o->port == 0) /* backend-only outbounds: not yet checked */
            continue;
        bool have = false;
        for (struct checker *ck = h->checkers; ck && !have; ck = ck->next)
            have = ck->t.port == o->port;
        struct checker *ck = have ? NULL : checker_new(h, (uint16_t)o->port);
        if (ck)
            checker_set(ck, o);
    }
}

void hy_px_health_stop(struct hy_proxy *p)
{
    struct hy_px_health *h = p->health;
    if (!h || h->stopped)
        return;
    h->stopped = true;
    if (h->outlier_open)
        uv_close((uv_handle_t *)&h->outlier, NULL);
    while (h->checkers) {
        struct checker *ck = h->checkers;
        h->checkers = ck->next;
        checker_close(ck);
    }
}

void hy_px_health_free(struct hy_proxy *p)
{
    struct hy_px_health *h = p->health;
    if (!h)
        return;
    while (p->hc_queue) { /* HTTP checks no worker took */
        struct hy_l7_hc *hc = p->hc_queue;
        p->hc_queue = hc->next;
        hy_l7_hc_free(p, hc);
    }
    hy_sidecar_snapshot_unref(h->snap);
    free(h);
    p->health = NULL;
}
