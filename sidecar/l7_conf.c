/* The HTTP path's per-worker state: what a worker compiles of each config
 * (route tables per outbound), the sidecar's shared rate-limit buckets,
 * the hooks proxy*.c call, and what every request leaves: metrics and one
 * access-log line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alog.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_l7.h"
#include "poison.h"

#define SERIES_SLOTS 512 /* metric series a worker remembers */

struct hy_l7_series {
    struct slot {
        uint64_t hash;
        struct hy_series *s;
    } slots[SERIES_SLOTS];
};

bool hy_px_l7_protocol(const char *protocol)
{
    return protocol && (!strcmp(protocol, "http") || hy_l7_h2c_protocol(protocol));
}

bool hy_l7_h2c_protocol(const char *protocol)
{
    return protocol && (!strcmp(protocol, "http2") || !strcmp(protocol, "grpc"));
}

uint64_t hy_l7_random(struct hy_l7_worker *lw)
{
    uint64_t x = lw->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return lw->rng = x;
}

/* Output that timer callbacks queued (a retry, a delay's end) goes before
 * the loop blocks in poll; what I/O callbacks queue goes at the check. */
static void on_prepare(uv_prepare_t *h)
{
    struct hy_l7_worker *lw = h->data;
    if (lw->dirty)
        hy_l7_h2_flush_all(lw);
    if (lw->downs)
        hy_l7_down_flush_all(lw);
}

struct hy_l7_worker *hy_l7_worker(struct hy_px_worker *w)
{
    if (w->l7)
        return w->l7;
    struct hy_l7_worker *lw = calloc(1, sizeof(*lw));
    struct hy_l7_series *s = calloc(1, sizeof(*s));
    if (!lw || !s) {
        free(lw);
        free(s);
        return NULL;
    }
    lw->w = w;
    lw->series = s;
    uv_prepare_init(&w->base.loop, &lw->prepare);
    lw->prepare.data = lw;
    uv_prepare_start(&lw->prepare, on_prepare);
    uv_unref((uv_handle_t *)&lw->prepare);
    lw->rng = uv_hrtime() ^ ((uint64_t)(uintptr_t)lw << 16) ^ 0x9e3779b97f4a7c15u;
    w->l7 = lw;
    hy_px_l7_refresh(w);
    return lw;
}

struct hy_l7_cfg *hy_l7_cfg_ref(struct hy_l7_cfg *cfg)
{
    if (cfg)
        cfg->refs++;
    return cfg;
}

void hy_l7_cfg_unref(struct hy_l7_cfg *cfg)
{
    if (!cfg || --cfg->refs > 0)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        hy_l7_routes_free(cfg->svcs[i].routes);
        hy_l7_hash_free(cfg->svcs[i].hash);
    }
    free(cfg->svcs);
    hy_sidecar_snapshot_unref(cfg->snap);
    free(cfg);
}

struct hy_l7_svc *hy_l7_cfg_service(struct hy_l7_cfg *cfg, const char *service)
{
    struct hy_l7_svc *found = NULL;
    for (size_t i = 0; cfg && service && i < cfg->n; i++)
        if (cfg->svcs[i].o->service && !strcmp(cfg->svcs[i].o->service, service)) {
            /* a listened-on outbound of the service first, else a backend-only one */
            if (!found || (found->o->port == 0 && cfg->svcs[i].o->port != 0))
                found = &cfg->svcs[i];
        }
    return found;
}

struct hy_l7_svc *hy_l7_cfg_port(struct hy_l7_cfg *cfg, uint32_t port)
{
    for (size_t i = 0; cfg && i < cfg->n; i++)
        if (cfg->svcs[i].o->port == port)
            return &cfg->svcs[i];
    return NULL;
}

const Hypha__V1__DpInbound *hy_l7_inbound(struct hy_l7_worker *lw, uint32_t port)
{
    const Hypha__V1__DpConfig *cf = lw->w->snap ? lw->w->snap->config : NULL;
    for (size_t i = 0; cf && i < cf->n_inbounds; i++)
        if (cf->inbounds[i]->port == port)
            return cf->inbounds[i];
    return NULL;
}

/* The worker's anchor for outbound o (made if need be). */
static struct hy_l7_anchor *anchor_of(struct hy_l7_worker *lw, const Hypha__V1__DpOutbound *o)
{
    const char *svc = o->service ? o->service : "";
    uint16_t port = (uint16_t)o->port;
    for (struct hy_l7_anchor *a = lw->anchors; a; a = a->next)
        if (a->port == port && !strcmp(a->service, svc))
            return a;
    struct hy_l7_anchor *a = calloc(1, sizeof(*a));
    struct hy_px_listener *l = calloc(1, sizeof(*l));
    if (!a || !l || !(l->route = hy_px_route_get(lw->w->p, port, svc))) {
        free(a);
        free(l);
        return NULL;
    }
    snprintf(a->service, sizeof(a->service), "%s", svc);
    a->port = port;
    l->w = lw->w;
    l->dir = HY_PX_OUT;
    l->port = port;
    l->refs = 1; /* the anchor's; never listened on, never closed */
    a->l = l;
    a->next = lw->anchors;
    lw->anchors = a;
    return a;
}

/* A RingHash or Maglev table over o's endpoints, or NULL (another
 * strategy, no endpoints, or no memory: then requests are balanced as
 * Envoy does without a hash, by the outbound's pick). */
static struct hy_l7_hash_table *hash_table(const Hypha__V1__DpOutbound *o)
{
    bool ring = o->lb && !strcmp(o->lb, "RingHash"), maglev = o->lb && !strcmp(o->lb, "Maglev");
    if ((!ring && !maglev) || !o->n_endpoints)
        return NULL;
    char(*keys)[HY_AGENT_EP_KEY] = calloc(o->n_endpoints, sizeof(*keys));
    const char **k = calloc(o->n_endpoints, sizeof(*k));
    struct hy_l7_hash_table *t = NULL;
    if (keys && k) {
        for (size_t i = 0; i < o->n_endpoints; i++) {
            hy_agent_endpoint_key(o->endpoints[i], keys[i], sizeof(keys[i]));
            k[i] = keys[i];
        }
        t = ring ? hy_l7_hash_ring_new(k, o->n_endpoints, 0, 0)
                 : hy_l7_hash_maglev_new(k, o->n_endpoints, 0);
    }
    free(keys);
    free(k);
    return t;
}

/* The shared rate-limit buckets for the worker's snapshot: the newest set,
 * made by the first worker to see its generation. */
static void refresh_limits(struct hy_l7_worker *lw)
{
    struct hy_px_worker *w = lw->w;
    struct hy_proxy *p = w->p;
    const Hypha__V1__DpConfig *cf = w->snap->config;
    pthread_mutex_lock(&p->lock);
    struct hy_px_limits *cur = p->limits;
    if (!cur || cur->gen < w->gen) {
        struct hy_px_limits *n = calloc(1, sizeof(*n));
        if (n && (n->l = hy_l7_limits_new(cf->inbounds, cf->n_inbounds, cur ? cur->l : NULL,
                                          hy_agent_now_ms()))) {
            atomic_init(&n->refs, 1);
            n->gen = w->gen;
            p->limits = n;
            if (cur && atomic_fetch_sub(&cur->refs, 1) == 1) {
                hy_l7_limits_free(cur->l);
                free(cur);
            }
            cur = n;
        } else {
            free(n);
        }
    }
    if (cur)
        atomic_fetch_add(&cur->refs, 1);
    pthread_mutex_unlock(&p->lock);
    struct hy_px_limits *old = lw->limits;
    lw->limits = cur;
    if (old && atomic_fetch_sub(&old->refs, 1) == 1) {
        hy_l7_limits_free(old->l);
        free(old);
    }
}

void hy_px_l7_refresh(struct hy_px_worker *w)
{
    struct hy_l7_worker *lw = w->l7;
    if (!lw || !w->snap || (lw->cfg && lw->cfg->snap == w->snap))
        return;
    const Hypha__V1__DpConfig *cf = w->snap->config;
    struct hy_l7_cfg *cfg = calloc(1, sizeof(*cfg));
    if (!cfg || (cf->n_outbounds && !(cfg->svcs = calloc(cf->n_outbounds, sizeof(*cfg->svcs))))) {
        free(cfg);
        hy_log(HY_LOG_ERROR, "dp", "worker %u: out of memory compiling HTTP routes", w->base.index);
        return;
    }
    cfg->refs = 1;
    cfg->snap = hy_sidecar_snapshot_ref(w->snap);
    for (size_t i = 0; i < cf->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = cf->outbounds[i];
        struct hy_l7_svc *s = &cfg->svcs[cfg->n];
        char why[300];
        if (hy_l7_routes_new(o, &s->routes, why, sizeof(why)) < 0) {
            hy_log(HY_LOG_ERROR, "dp", "outbound %s: its HTTP routes do not compile (%s): %s",
                   o->service ? o->service : "-", why, "requests to it are answered 500");
            continue;
        }
        if (!(s->a = anchor_of(lw, o))) {
            hy_l7_routes_free(s->routes);
            continue;
        }
        s->o = o;
        s->snap = cfg->snap;
        s->hash = hash_table(o);
        char mesh[256];
        snprintf(s->peer_id, sizeof(s->peer_id), "spiffe://%s/%s",
                 hy_px_mesh(s->snap, mesh, sizeof(mesh)), o->service ? o->service : "");
        cfg->n++;
    }
    hy_l7_cfg_unref(lw->cfg);
    lw->cfg = cfg;
    refresh_limits(lw);
    hy_l7_app_retime(lw, cf); /* MeshTimeout from idleTimeout of the pooled app connections */
}

void hy_px_l7_turn(struct hy_px_worker *w)
{
    if (w->l7 && w->l7->dirty)
        hy_l7_h2_flush_all(w->l7);
    if (w->l7 && w->l7->downs)
        hy_l7_down_flush_all(w->l7);
}

void hy_px_l7_stop(struct hy_px_worker *w)
{
    struct hy_l7_worker *lw = w->l7;
    if (!lw)
        return;
    hy_l7_hc_stop(lw);
    hy_l7_app_stop_all(lw);
    hy_l7_app_h2_stop_all(lw);
    hy_l7_pool_stop(lw);
    uv_close((uv_handle_t *)&lw->prepare, NULL);
}

void hy_px_l7_fini(struct hy_px_worker *w)
{
    struct hy_l7_worker *lw = w->l7;
    if (!lw)
        return;
    hy_l7_cfg_unref(lw->cfg);
    struct hy_px_limits *l = lw->limits;
    if (l && atomic_fetch_sub(&l->refs, 1) == 1) {
        hy_l7_limits_free(l->l);
        free(l);
    }
    hy_buf_fini(&lw->out);
    free(lw->series);
    free(lw);
    w->l7 = NULL;
}

void hy_px_l7_proxy_fini(struct hy_proxy *p)
{
    struct hy_px_limits *l = p->limits;
    p->limits = NULL;
    if (l && atomic_fetch_sub(&l->refs, 1) == 1) {
        hy_l7_limits_free(l->l);
        free(l);
    }
}

/* An HTTP inbound's first bytes: HTTP/2's preface from a caller's HTTP
 * outbound, or anything else from a caller that took the service for TCP
 * (its instances disagree on the protocol, or a config is behind): then
 * the connection is relayed as TCP, what was read going first. True when
 * the bytes were handled (wait for more, or relayed as TCP). */
static bool sniff(struct hy_px_conn *c, struct hy_l7_h2 *h2, const uint8_t **p, size_t *n)
{
    static const char magic[] = NGHTTP2_CLIENT_MAGIC;
    size_t want = sizeof(h2->sniffed) - h2->nsniffed, take = *n < want ? *n : want;
    bool same = !memcmp(*p, magic + h2->nsniffed, take);
    if (same && take == want) { /* HTTP/2: the preface and what follows go to nghttp2 */
        h2->sniff = false;
        h2->ready = true;
        if (h2->nsniffed && hy_l7_h2_recv(h2, h2->sniffed, h2->nsniffed) < 0)
            return false;
        hy_l7_h2_dirty(h2);
        return false;
    }
    if (same) {
        memcpy(h2->sniffed + h2->nsniffed, *p, take);
        h2->nsniffed += take;
        return true;
    }
    uint8_t *pre = malloc(h2->nsniffed + *n);
    if (!pre) {
        hy_px_conn_close(c, "error", "out of memory");
        return true;
    }
    memcpy(pre, h2->sniffed, h2->nsniffed);
    memcpy(pre + h2->nsniffed, *p, *n);
    c->pre = pre;
    c->pre_len = h2->nsniffed + *n;
    hy_log(HY_LOG_INFO, "dp",
           "inbound %u: %s speaks no HTTP/2 (it calls this service as TCP): relayed as TCP",
           (unsigned)c->l->port, c->id[0] ? c->id : "the caller");
    c->l7 = NULL;
    hy_l7_h2_free(h2, HY_L7_TRY_RESET);
    hy_px_inbound_connect_app(c);
    return true;
}

void hy_px_l7_tls(struct hy_px_conn *c, const uint8_t *p, size_t n)
{
    struct hy_l7_h2 *h2 = c->l7;
    if (n == 0) { /* the peer's close_notify or EOF: nothing more comes */
        hy_px_conn_close(c, "ok", NULL);
        return;
    }
    if (h2->sniff && (sniff(c, h2, &p, &n) || c->closing))
        return;
    if (hy_l7_h2_recv(h2, p, n) < 0 && !c->closing)
        hy_px_conn_close(c, "error", "HTTP/2 from the peer: %s", c->why[0] ? c->why : "invalid");
}

void hy_px_l7_closed(struct hy_px_conn *c)
{
    enum hy_l7_kind *kind = c->l7;
    if (*kind == HY_L7_DOWN) {
        hy_l7_down_closed(c);
        return;
    }
    struct hy_l7_h2 *h2 = c->l7;
    enum hy_l7_try_end why = h2->ready ? HY_L7_TRY_RESET : HY_L7_TRY_CONNECT_FAILURE;
    c->l7 = NULL;
    hy_l7_h2_free(h2, why);
}

void hy_px_l7_free(struct hy_px_conn *c)
{
    enum hy_l7_kind *kind = c->l7;
    if (*kind == HY_L7_DOWN)
        hy_l7_down_free(c);
    c->l7 = NULL;
}

/* ----- metrics and the access log ----- */

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return (h ^ 0xff) * 0x100000001b3u;
}

/* The series of family f with values v[0..n), through the worker's cache. */
static struct hy_series *series(struct hy_l7_worker *lw, struct hy_metric *f, uint64_t tag,
                                const char *const *v, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u ^ tag;
    for (size_t i = 0; i < n; i++)
        h = fnv(h, v[i]);
    struct slot *s = &lw->series->slots[h % SERIES_SLOTS];
    if (s->s && s->hash == h)
        return s->s;
    struct hy_series *found = hy_metric_series_v(f, v);
    if (found) {
        s->hash = h;
        s->s = found;
    }
    return found;
}

/* The status's labels, "503" and "5xx" (without printf: once a request). */
static void status_labels(unsigned st, char code[16], char cls[16])
{
    char rev[12];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + st % 10);
        st /= 10;
    } while (st);
    for (size_t i = 0; i < n; i++)
        code[i] = rev[n - 1 - i];
    code[n] = '\0';
    size_t k = n > 2 ? n - 2 : 0; /* the hundreds and up; none: "0xx" */
    if (k)
        memcpy(cls, code, k);
    else
        cls[k++] = '0';
    memcpy(cls + k, "xx", 3);
}

void hy_l7_log(struct hy_l7_worker *lw, const struct hy_l7_done *d)
{
    const struct hy_px_metrics *m = &lw->w->p->m;
    char code[16], cls[16];
    status_labels(d->status, code, cls);
    const char *dir = hy_px_dir_name(d->dir);
    const char *svc = d->service ? d->service : "";
    const char *v[] = {dir, svc, d->route ? d->route : "", cls, code};
    hy_series_inc(series(lw, m->http_requests, 1, v, 5));
    hy_series_observe(series(lw, m->http_duration, 2, v, 2), d->seconds);
    hy_trace_http_done(lw, d);
    bool logged = hy_alog_http(lw, d); /* MeshAccessLog: then the line below is debug */
#define S(x) ((x) && (x)[0] ? (x) : "-")
    hy_log(logged ? HY_LOG_DEBUG : HY_LOG_INFO, "dp",
           "http direction=%s port=%u method=%s authority=%s path=%s status=%u duration=%.3fs "
           "upstream_time=%.3fs upstream=%s service=%s route=\"%s\" retries=%u id=%s result=%s",
           dir, (unsigned)d->port, S(d->method), S(d->authority), S(d->path), d->status, d->seconds,
           d->upstream_seconds, S(d->upstream), S(d->service), S(d->route), d->retries, S(d->id),
           S(d->result));
#undef S
}

void hy_l7_count(struct hy_l7_worker *lw, enum hy_l7_count what)
{
    const struct hy_px_metrics *m = &lw->w->p->m;
    hy_series_inc(what == HY_L7_RETRY     ? m->http_retries
                  : what == HY_L7_TIMEOUT ? m->http_timeouts
                                          : m->http_ejections);
}

void hy_l7_count_limited(struct hy_l7_worker *lw, const char *kind)
{
    const char *v[] = {kind};
    hy_series_inc(series(lw, lw->w->p->m.rate_limited, 3, v, 1));
}

void hy_l7_count_mirror(struct hy_l7_worker *lw, const char *result)
{
    const char *v[] = {result};
    hy_series_inc(series(lw, lw->w->p->m.mirrors, 5, v, 1));
}

void hy_l7_count_fault(struct hy_l7_worker *lw, const char *kind)
{
    const char *v[] = {kind};
    hy_series_inc(series(lw, lw->w->p->m.faults, 4, v, 1));
}
