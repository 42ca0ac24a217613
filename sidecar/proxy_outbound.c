/* Outbound connections: plain TCP from the app, an endpoint of the
 * outbound's service picked by its balancing strategy (passing over those
 * whose connect failed lately), connect attempts with a timeout, then mTLS with SNI to
 * the peer sidecar, whose SPIFFE ID must be that of the service. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "proxy_int.h"
#include "poison.h"

static struct hy_px_bad *bad_slot(struct hy_px_listener *l, const char *key, uint64_t now)
{
    struct hy_px_bad *free_slot = NULL;
    for (size_t i = 0; i < HY_PX_MAX_BAD; i++) {
        if (l->bad[i].key[0] && strcmp(l->bad[i].key, key) == 0)
            return &l->bad[i];
        if (!free_slot && (!l->bad[i].key[0] || l->bad[i].until <= now))
            free_slot = &l->bad[i];
    }
    return free_slot;
}

static bool is_bad(struct hy_px_listener *l, const char *key, uint64_t now)
{
    struct hy_px_bad *b = bad_slot(l, key, now);
    return b && b->key[0] && strcmp(b->key, key) == 0 && b->until > now;
}

static void mark_bad(struct hy_px_conn *c)
{
    uint64_t now = uv_now(c->p->loop);
    struct hy_px_bad *b = bad_slot(c->l, c->endpoint, now);
    if (b) {
        snprintf(b->key, sizeof(b->key), "%s", c->endpoint);
        b->until = now + HY_PX_BAD_MS;
    }
}

static void endpoint_key(const Hypha__V1__DpEndpoint *e, char *buf, size_t size)
{
    const char *a = e->address ? e->address : "";
    snprintf(buf, size, strchr(a, ':') ? "[%s]:%u" : "%s:%u", a, (unsigned)e->port);
}

static struct hy_px_load *load_slot(struct hy_px_listener *l, const char *key, bool take)
{
    struct hy_px_load *free_slot = NULL;
    for (size_t i = 0; i < HY_PX_MAX_BAD; i++) {
        if (l->load[i].active && strcmp(l->load[i].key, key) == 0)
            return &l->load[i];
        if (!free_slot && !l->load[i].active)
            free_slot = &l->load[i];
    }
    if (take && free_slot)
        snprintf(free_slot->key, sizeof(free_slot->key), "%s", key);
    return take ? free_slot : NULL;
}

static unsigned load_of(struct hy_px_listener *l, const char *key)
{
    struct hy_px_load *s = load_slot(l, key, false);
    return s ? s->active : 0;
}

void hy_px_outbound_unload(struct hy_px_conn *c)
{
    if (c->load) {
        c->load->active--;
        c->load = NULL;
    }
}

static uint64_t next_random(struct hy_px_listener *l)
{
    if (!l->rng)
        l->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15u;
    uint64_t x = l->rng ? l->rng : 1; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return l->rng = x;
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

/* An endpoint by the outbound's strategy among those not marked bad (all
 * bad: among all). RoundRobin: the next after the cursor. Random: any,
 * evenly. LeastRequest: the fewest open connections, ties broken from the
 * round-robin cursor so equal endpoints take turns. */
static const Hypha__V1__DpEndpoint *pick(struct hy_px_conn *c)
{
    const Hypha__V1__DpOutbound *o = c->out;
    struct hy_px_listener *l = c->l;
    uint64_t now = uv_now(c->p->loop);
    size_t n = o->n_endpoints, good = 0;
    enum lb lb = lb_of(o);
    char key[300];
    for (size_t i = 0; i < n; i++) {
        endpoint_key(o->endpoints[i], key, sizeof(key));
        good += !is_bad(l, key, now);
    }
    bool any = good == 0; /* every one failed lately: consider them all */
    size_t skip = lb == LB_RANDOM ? (size_t)(next_random(l) % (any ? n : good)) : 0;
    size_t best = SIZE_MAX;
    unsigned best_load = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = (l->rr + i) % n;
        endpoint_key(o->endpoints[k], key, sizeof(key));
        if (!any && is_bad(l, key, now))
            continue;
        if (lb == LB_RANDOM && skip-- > 0)
            continue;
        if (lb != LB_LEAST_REQUEST) {
            best = k;
            break;
        }
        unsigned load = load_of(l, key);
        if (best == SIZE_MAX || load < best_load) {
            best = k;
            best_load = load;
        }
    }
    l->rr = best + 1;
    return o->endpoints[best];
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
    char key[300];
    endpoint_key(e, key, sizeof(key));
    hy_px_outbound_unload(c); /* a retry counts against its new endpoint only */
    if ((c->load = load_slot(c->l, key, true)))
        c->load->active++;
    c->attempts++;
    int rc = hy_px_conn_connect(c, e->address ? e->address : "", e->port,
                                hy_px_ms(o->connect_timeout, HY_PX_CONNECT_MS), on_peer_connected);
    if (rc < 0) {
        snprintf(c->why, sizeof(c->why), "%s", uv_strerror(rc));
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
    hy_series_observe(c->p->m.connect_s[c->dir],
                      (double)(uv_now(c->p->loop) - c->connect_start_ms) / 1000.0);
    if (hy_px_tls_start(c, c->p->tls.client, c->out->sni) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return;
    }
    hy_px_conn_handshake(c);
}

void hy_px_outbound_accept(struct hy_px_conn *c)
{
    const Hypha__V1__DpConfig *cf = c->snap ? c->snap->config : NULL;
    for (size_t i = 0; cf && i < cf->n_outbounds; i++)
        if (cf->outbounds[i]->port == c->l->port)
            c->out = cf->outbounds[i];
    if (!c->out) {
        hy_px_conn_close(c, "no_config", "no outbound on this port in the current config");
        return;
    }
    const Hypha__V1__DpOutbound *o = c->out;
    if (o->has_max_connections && o->max_connections && c->l->active > o->max_connections) {
        hy_px_conn_close(c, "overflow", "%u connections already (max_connections)",
                         (unsigned)o->max_connections);
        return;
    }
    if (!o->n_endpoints) {
        hy_px_conn_close(c, "no_endpoints", "service %s has no endpoints", o->service);
        return;
    }
    c->idle_ms = hy_px_ms(o->idle_timeout, HY_PX_IDLE_MS);
    try_next(c);
}

void hy_px_outbound_handshake_done(struct hy_px_conn *c)
{
    char mesh[256], want[600];
    hy_px_mesh(c->snap, mesh, sizeof(mesh));
    snprintf(want, sizeof(want), "spiffe://%s/%s", mesh, c->out->service ? c->out->service : "");
    if (!hy_px_tls_peer_id(c) || strcmp(c->id, want) != 0) {
        hy_series_inc(c->p->m.tls_fail[c->dir]);
        hy_px_conn_close(c, "wrong_peer", "the peer is %s, expected %s", c->id[0] ? c->id : "-",
                         want);
        return;
    }
    hy_px_conn_relay(c);
}
