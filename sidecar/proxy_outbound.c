/* Outbound connections: plain TCP from the app, the circuit breaker's
 * limits, an endpoint of the outbound's service picked by its balancing
 * strategy (passing over those whose connect failed lately or whose health
 * checks fail), connect attempts with a timeout, then mTLS with SNI to the
 * peer sidecar, whose SPIFFE ID must be that of the service. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "poison.h"

static void mark_bad(struct hy_px_conn *c)
{
    hy_agent_eps_failed(&c->l->route->eps, c->endpoint);
}

static void unpend(struct hy_px_conn *c)
{
    if (c->pending) {
        c->pending = false;
        atomic_fetch_sub_explicit(&c->l->route->pending, 1, memory_order_relaxed);
    }
}

void hy_px_outbound_unload(struct hy_px_conn *c)
{
    if (c->load) {
        struct hy_px_route *r = c->l->route;
        pthread_mutex_lock(&r->eps.lock);
        c->load->active--;
        pthread_mutex_unlock(&r->eps.lock);
        c->load = NULL;
    }
    unpend(c);
}

static uint64_t next_random(struct hy_px_route *r)
{
    if (!r->rng)
        r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r ^ 0x9e3779b97f4a7c15u;
    uint64_t x = r->rng ? r->rng : 1; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->rng = x;
}

enum lb { LB_ROUND_ROBIN, LB_RANDOM, LB_LEAST_REQUEST };

/* The zone names Kuma's types; RingHash and Maglev (hashing on HTTP
 * attributes a TCP proxy does not see) fall back to round robin. */
static enum lb lb_of(const Hypha__V1__DpOutbound *o)
{
    if (o->lb && strcmp(o->lb, "Random") == 0)
        return LB_RANDOM;
    if (o->lb && strcmp(o->lb, "LeastRequest") == 0)
        return LB_LEAST_REQUEST;
    return LB_ROUND_ROBIN;
}

/* Has L7 outlier detection ejected endpoint k of o (ejections of an
 * endpoint that moved to another index are forgotten)? Under r->eps.lock. */
static bool ejected(struct hy_px_route *r, const Hypha__V1__DpOutbound *o, size_t k, uint64_t now,
                    const char *key)
{
    if (!o->outlier || k >= HY_AGENT_MAX_EPS)
        return false;
    if (strcmp(r->ol_key[k], key) != 0) {
        snprintf(r->ol_key[k], sizeof(r->ol_key[k]), "%s", key);
        memset(&r->ol[k], 0, sizeof(r->ol[k]));
    }
    return hy_l7_outlier_ejected(r->ol, k, now);
}

/* Is endpoint k of o out of the running: its connect failed lately, its
 * health checks fail, or outlier detection ejected it? Its slot (or NULL)
 * into *slot. Under r->eps.lock. */
static bool avoided(struct hy_px_route *r, const Hypha__V1__DpOutbound *o, size_t k, uint64_t now,
                    struct hy_agent_ep **slot)
{
    char key[HY_AGENT_EP_KEY];
    hy_agent_endpoint_key(o->endpoints[k], key, sizeof(key));
    struct hy_agent_ep *e = hy_agent_eps_slot(&r->eps, key, false, now);
    *slot = e;
    return hy_agent_ep_avoided(e, now) || ejected(r, o, k, now, key);
}

/* Is endpoint i of o among those a pick may take? among NULL: the whole
 * service, so not a remote subset's own endpoint (DpEndpoint.sni), which
 * only a MeshServiceSubset pick (among) takes. */
static bool in_pick(const Hypha__V1__DpOutbound *o, const bool *among, size_t i)
{
    return among ? among[i] : !(o->endpoints[i]->sni && o->endpoints[i]->sni[0]);
}

static uint32_t priority_of(const Hypha__V1__DpEndpoint *e)
{
    return e->has_priority ? e->priority : 0;
}

/* An endpoint by the outbound's strategy among those neither failed lately
 * nor unhealthy, of the best priority that has any (locality: this zone's
 * endpoints are priority 0, remote zones' ingresses 1 or more). None left:
 * among all of the best priority, so that a wrong verdict cannot
 * black-hole a service. RoundRobin: the next after the cursor. Random:
 * any, evenly. LeastRequest: the fewest open connections (all workers),
 * ties broken from the round-robin cursor so equal endpoints take turns.
 * Counts c against it. Takes the route's lock. */
const Hypha__V1__DpEndpoint *hy_px_pick(struct hy_px_route *r, const Hypha__V1__DpOutbound *o,
                                        struct hy_agent_ep **load, size_t *index)
{
    return hy_px_pick_among(r, o, NULL, load, index);
}

size_t hy_px_usable(struct hy_px_route *r, const Hypha__V1__DpOutbound *o, const bool *among,
                    bool *ok)
{
    uint64_t now = hy_agent_now_ms();
    size_t good = 0;
    struct hy_agent_ep *e;
    pthread_mutex_lock(&r->eps.lock);
    for (size_t i = 0; i < o->n_endpoints; i++) {
        ok[i] = in_pick(o, among, i) && !avoided(r, o, i, now, &e);
        good += ok[i];
    }
    pthread_mutex_unlock(&r->eps.lock);
    return good;
}

const Hypha__V1__DpEndpoint *hy_px_pick_among(struct hy_px_route *r, const Hypha__V1__DpOutbound *o,
                                              const bool *among, struct hy_agent_ep **load,
                                              size_t *index)
{
    uint64_t now = hy_agent_now_ms();
    size_t n = o->n_endpoints, good = 0;
    enum lb lb = lb_of(o);
    struct hy_agent_ep *e;
    uint32_t level = UINT32_MAX, lowest = UINT32_MAX;
    pthread_mutex_lock(&r->eps.lock);
    for (size_t i = 0; i < n; i++) {
        if (!in_pick(o, among, i))
            continue;
        uint32_t p = priority_of(o->endpoints[i]);
        if (p < lowest)
            lowest = p;
        if (p < level && !avoided(r, o, i, now, &e))
            level = p;
    }
    bool any = level == UINT32_MAX; /* every one is avoided: consider them all */
    if (any)
        level = lowest;
    if (lowest == UINT32_MAX) { /* none is among those asked for */
        pthread_mutex_unlock(&r->eps.lock);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        good += in_pick(o, among, i) && priority_of(o->endpoints[i]) == level &&
                (any || !avoided(r, o, i, now, &e));
    size_t skip = lb == LB_RANDOM ? (size_t)(next_random(r) % good) : 0;
    size_t best = SIZE_MAX;
    unsigned best_load = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = (r->rr + i) % n;
        if (!in_pick(o, among, k) || priority_of(o->endpoints[k]) != level ||
            (avoided(r, o, k, now, &e) && !any))
            continue;
        if (lb == LB_RANDOM && skip-- > 0)
            continue;
        if (lb != LB_LEAST_REQUEST) {
            best = k;
            break;
        }
        unsigned load = e ? e->active : 0;
        if (best == SIZE_MAX || load < best_load) {
            best = k;
            best_load = load;
        }
    }
    r->rr = best + 1;
    if (load) {
        char key[HY_AGENT_EP_KEY];
        hy_agent_endpoint_key(o->endpoints[best], key, sizeof(key));
        if (*load) /* a retry counts against its new endpoint only */
            (*load)->active--;
        if ((*load = hy_agent_eps_slot(&r->eps, key, true, now)))
            (*load)->active++;
    }
    pthread_mutex_unlock(&r->eps.lock);
    if (index)
        *index = best;
    return o->endpoints[best];
}

static const Hypha__V1__DpEndpoint *pick(struct hy_px_conn *c)
{
    const Hypha__V1__DpOutbound *o = c->out;
    if (!c->subset || !c->subset->n_tags)
        return hy_px_pick(c->l->route, o, &c->load, NULL);
    bool *among = calloc(o->n_endpoints ? o->n_endpoints : 1, sizeof(*among));
    if (!among)
        return NULL;
    for (size_t k = 0; k < o->n_endpoints; k++)
        among[k] = hy_l7_subset_has(c->subset, o->endpoints[k]);
    const Hypha__V1__DpEndpoint *e = hy_px_pick_among(c->l->route, o, among, &c->load, NULL);
    free(among);
    return e;
}

/* MeshTCPRoute: this connection goes to one backendRef picked by weight,
 * to the endpoints of that service (its backend-only outbound, port 0),
 * only those with the ref's tags. false: c was closed (every weight 0, or
 * the backend is not in the config: refused, never the front service). */
static bool tcp_route(struct hy_px_conn *c, const Hypha__V1__DpConfig *cf)
{
    struct hy_px_route *r = c->l->route;
    pthread_mutex_lock(&r->eps.lock);
    uint64_t rnd = next_random(r);
    pthread_mutex_unlock(&r->eps.lock);
    const Hypha__V1__DpBackendRef *b = hy_l7_tcp_backend_ref(c->out, rnd);
    if (!b || !b->service) {
        hy_px_conn_close(c, "no_route", "every MeshTCPRoute backend of %s has weight 0",
                         c->out->service);
        return false;
    }
    const Hypha__V1__DpOutbound *to = NULL;
    if (c->out->service && !strcmp(c->out->service, b->service))
        to = c->out;
    for (size_t i = 0; !to && cf && i < cf->n_outbounds; i++)
        if (cf->outbounds[i]->service && !strcmp(cf->outbounds[i]->service, b->service))
            to = cf->outbounds[i];
    if (!to) {
        hy_px_conn_close(c, "no_route", "MeshTCPRoute backend %s of %s is not in the config",
                         b->service, c->out->service);
        return false;
    }
    c->out = to;
    c->subset = b;
    return true;
}

static void on_peer_connected(struct hy_px_conn *c, int status);

static void try_next(struct hy_px_conn *c)
{
    const Hypha__V1__DpOutbound *o = c->out;
    unsigned max = o->has_max_connect_attempts && o->max_connect_attempts ? o->max_connect_attempts
                                                                          : HY_PX_ATTEMPTS;
    if (c->attempts >= max) {
        char last[sizeof(c->why)];
        snprintf(last, sizeof(last), "%s", c->why); /* close writes c->why */
        hy_px_conn_close(c, "upstream_failed", "%u connect attempts failed, the last to %s: %s",
                         c->attempts, c->endpoint, last);
        return;
    }
    const Hypha__V1__DpEndpoint *e = pick(c);
    if (!e) {
        hy_px_conn_close(c, "no_endpoints",
                         "service %s has no endpoints with the tags of the "
                         "MeshTCPRoute backend",
                         o->service);
        return;
    }
    c->attempts++;
    c->ep_sni = e->sni && e->sni[0] ? e->sni : NULL;
    int rc = hy_px_conn_connect(c, e->address ? e->address : "", e->port,
                                hy_px_ms(o->connect_timeout, HY_PX_CONNECT_MS), on_peer_connected);
    if (rc < 0) {
        snprintf(c->why, sizeof(c->why), "%s", uv_strerror(rc));
        if (rc != UV_EBUSY) /* busy is ours (a lookup still out), not the endpoint's */
            mark_bad(c);
        if (c->up.init)
            hy_px_conn_drop_up(c, try_next);
        else
            try_next(c);
    }
}

static void on_peer_connected(struct hy_px_conn *c, int status)
{
    if (status < 0) {
        snprintf(c->why, sizeof(c->why), "%s", uv_strerror(status));
        hy_log(HY_LOG_DEBUG, "dp", "outbound %u: cannot connect to %s: %s", (unsigned)c->l->port,
               c->endpoint, c->why);
        mark_bad(c);
        hy_px_conn_drop_up(c, try_next);
        return;
    }
    c->why[0] = '\0';
    hy_series_observe(c->m->connect_s[c->dir],
                      (double)(uv_now(&c->w->base.loop) - c->connect_start_ms) / 1000.0);
    /* a remote subset (MeshTCPRoute tags) through its zone's ingress: its own SNI */
    if (hy_px_tls_start(c, c->w->tls.client, c->ep_sni ? c->ep_sni : c->out->sni) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return;
    }
    hy_px_conn_handshake(c);
}

void hy_px_outbound_accept(struct hy_px_conn *c)
{
    const Hypha__V1__DpConfig *cf = c->snap ? c->snap->config : NULL;
    for (size_t i = 0; cf && !c->out && i < cf->n_outbounds; i++) /* transparent: c->out set */
        if (cf->outbounds[i]->port == c->l->port)
            c->out = cf->outbounds[i];
    if (!c->out) {
        hy_px_conn_close(c, "no_config", "no outbound on this port in the current config");
        return;
    }
    const Hypha__V1__DpOutbound *o = c->out;
    /* the counts as this connection made them (it is in both) */
    if (o->has_max_connections && o->max_connections && c->active_n > o->max_connections) {
        hy_series_inc(c->m->overflow[0]);
        hy_px_conn_close(c, "overflow", "%u connections already (max_connections)",
                         (unsigned)o->max_connections);
        return;
    }
    if (o->has_max_pending && o->max_pending && c->pending_n > o->max_pending) {
        hy_series_inc(c->m->overflow[1]);
        hy_px_conn_close(c, "overflow", "%u connections still connecting (max_pending)",
                         c->pending_n - 1);
        return;
    }
    if (o->n_tcp_backends && !hy_px_l7_protocol(o->protocol)) {
        if (!tcp_route(c, cf))
            return;
        o = c->out;
    }
    if (!o->n_endpoints) {
        hy_px_conn_close(c, "no_endpoints", "service %s has no endpoints", o->service);
        return;
    }
    c->idle_ms = hy_px_ms(o->idle_timeout, HY_PX_IDLE_MS);
    if (hy_px_l7_protocol(o->protocol)) { /* requests, each to its own endpoint */
        unpend(c);
        hy_l7_down_start(c);
        return;
    }
    try_next(c);
}

void hy_px_outbound_handshake_done(struct hy_px_conn *c)
{
    char mesh[256], want[600];
    hy_px_mesh(c->snap, mesh, sizeof(mesh));
    snprintf(want, sizeof(want), "spiffe://%s/%s", mesh, c->out->service ? c->out->service : "");
    if (!hy_px_tls_peer_id(c) || strcmp(c->id, want) != 0) {
        hy_series_inc(c->m->tls_fail[c->dir]);
        hy_px_conn_close(c, "wrong_peer", "the peer is %s, expected %s", c->id[0] ? c->id : "-",
                         want);
        return;
    }
    c->peer_verified = true; /* its session may be kept (proxy_tls.c) */
    unpend(c);
    if (c->l7) { /* a pooled HTTP/2 connection */
        hy_l7_pool_ready(c);
        return;
    }
    hy_px_conn_relay(c);
}
