/* The ingress's guard: the endpoints it never relays to, whatever the
 * routes say. The zone control plane lists every Dataplane inbound of the
 * zone as an endpoint, and a Dataplane's address is whatever its sidecar
 * claims: anyone with a dataplane token for any service can register
 * 127.0.0.1:5682, and an ingress that trusts its routes then hands any
 * remote caller with the right SNI to the zone control plane's HTTPS API
 * on its own loopback, where the caller counts as local (security
 * finding 4: the ingress as a pivot to zone admin).
 *
 * The rule, and why:
 * - Loopback (127/8, ::1, ::ffff:127/104), unspecified (0/8, ::, which
 *   Linux connects to the host itself) and link-local (169.254/16,
 *   fe80::/10, where cloud metadata services answer) are refused, unless
 *   --allow-local-endpoints says otherwise (single-host development
 *   only). A sidecar that other zones reach through the ingress must be
 *   reachable from the ingress's host over the network, so it never needs
 *   one of these: what listens there is the host's own business.
 * - The ingress's own ports (relay, admin) on any address of this host are
 *   refused, even with the flag: a loop through itself.
 * - Other addresses of this host's interfaces are NOT refused. An ingress
 *   commonly runs on a node beside workloads that listen on the node's
 *   address (Kuma's ingress reaches the pods of its own node), and telling
 *   a sidecar from any other process on that address is beyond what the
 *   ingress can know. A service reached there sees the node's address,
 *   not loopback, as its peer, so it grants nothing for being local; what
 *   keeps this safe is that nothing on such a host trusts non-loopback
 *   callers without credentials (the control plane's HTTPS API always
 *   asks for the admin token).
 *
 * Refused endpoints are dropped when routes arrive (logged once each,
 * counted, listed in /config), and every connect is checked again on the
 * address it actually dials. This host's addresses are read again when
 * netlink reports a change, every HY_ING_ADDRS_MS, and with every route
 * set; a change re-checks the routes. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "error.h"
#include "ingress.h"
#include "metrics.h"
#include "poison.h"

static const char *const names[HY_ING_NREFUSALS] = {"allowed", "loopback", "unspecified",
                                                    "link_local", "ingress_listener"};
static const char *const explain[HY_ING_NREFUSALS] = {
    "",
    "this host's loopback",
    "an unspecified address, which reaches this host itself",
    "a link-local address (where cloud metadata services answer)",
    "one of this ingress's own ports on this host: a loop",
};

const char *hy_ing_refusal_name(enum hy_ing_refusal why)
{
    return why < HY_ING_NREFUSALS ? names[why] : "unknown";
}

static unsigned port_of(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

enum hy_ing_refusal hy_ing_guard_check(const struct hy_ing *g, const struct hy_net_addrs *local,
                                       const struct sockaddr *sa)
{
    enum hy_net_scope s = hy_net_scope_of(sa);
    unsigned port = port_of(sa);
    bool here =
        s == HY_NET_SCOPE_LOOPBACK || s == HY_NET_SCOPE_UNSPECIFIED || hy_net_addrs_has(local, sa);
    if (here && port && (port == g->relay_port || port == g->admin_port))
        return HY_ING_REFUSE_LISTENER;
    if (g->cfg->allow_local_endpoints)
        return HY_ING_ALLOWED;
    switch (s) {
    case HY_NET_SCOPE_LOOPBACK:
        return HY_ING_REFUSE_LOOPBACK;
    case HY_NET_SCOPE_UNSPECIFIED:
        return HY_ING_REFUSE_UNSPECIFIED;
    case HY_NET_SCOPE_LINK_LOCAL:
        return HY_ING_REFUSE_LINK_LOCAL;
    case HY_NET_SCOPE_ROUTABLE:
        break;
    }
    return HY_ING_ALLOWED;
}

/* ----- the routes ----- */

static void refused_free(struct hy_ing_refused *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].sni);
        free(v[i].name);
        free(v[i].address);
    }
    free(v);
}

static bool refused_before(const struct hy_ing *g, const struct hy_ing_refused *x)
{
    for (size_t i = 0; i < g->nrefused; i++) {
        const struct hy_ing_refused *o = &g->refused[i];
        if (o->why == x->why && o->port == x->port && !strcmp(o->sni, x->sni) &&
            !strcmp(o->address, x->address) && !strcmp(o->name, x->name))
            return true;
    }
    return false;
}

/* Adds e of route r to v (*n of *cap); false on out of memory. */
static bool refused_add(struct hy_ing_refused **v, size_t *n, size_t *cap,
                        const Hypha__V1__DpIngressRoute *r, const Hypha__V1__DpEndpoint *e,
                        enum hy_ing_refusal why)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        struct hy_ing_refused *nv = realloc(*v, c * sizeof(*nv));
        if (!nv)
            return false;
        *v = nv;
        *cap = c;
    }
    struct hy_ing_refused *x = &(*v)[*n];
    x->sni = strdup(r->sni);
    x->name = strdup(e->name ? e->name : "");
    x->address = strdup(e->address);
    x->port = e->port;
    x->why = why;
    if (!x->sni || !x->name || !x->address) {
        free(x->sni);
        free(x->name);
        free(x->address);
        return false;
    }
    (*n)++;
    return true;
}

int hy_ing_guard_filter(struct hy_ing *g, Hypha__V1__DpIngressConfig *c,
                        const struct hy_net_addrs *local)
{
    struct hy_ing_refused *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; i < c->n_routes; i++) {
        Hypha__V1__DpIngressRoute *r = c->routes[i];
        size_t kept = 0;
        for (size_t k = 0; k < r->n_endpoints; k++) {
            Hypha__V1__DpEndpoint *e = r->endpoints[k];
            struct sockaddr_storage sa;
            /* a host name is kept as it was: the relay dials IP addresses
             * only, and checks what it dials */
            enum hy_ing_refusal why = hy_net_parse_ip(e->address, e->port, &sa) == 0
                                          ? hy_ing_guard_check(g, local, (struct sockaddr *)&sa)
                                          : HY_ING_ALLOWED;
            if (why == HY_ING_ALLOWED || rc < 0) {
                r->endpoints[kept++] = e;
                continue;
            }
            if (!refused_add(&v, &n, &cap, r, e, why)) {
                rc = HY_ENOMEM; /* keep the rest: c stays whole enough to free */
                r->endpoints[kept++] = e;
                continue;
            }
            hypha__v1__dp_endpoint__free_unpacked(e, NULL);
        }
        r->n_endpoints = kept;
    }
    if (rc < 0) {
        refused_free(v, n);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const struct hy_ing_refused *x = &v[i];
        if (refused_before(g, x))
            continue;
        hy_series_inc(g->m.endpoints_refused[x->why]);
        hy_log(HY_LOG_WARN, "ingress",
               "refused endpoint %s%s%s:%u of %s (Dataplane %s): reason=%s, %s; the ingress never "
               "relays there%s",
               strchr(x->address, ':') ? "[" : "", x->address, strchr(x->address, ':') ? "]" : "",
               x->port, x->sni, x->name[0] ? x->name : "-", names[x->why], explain[x->why],
               x->why == HY_ING_REFUSE_LISTENER ? ""
                                                : " (--allow-local-endpoints lifts this, for a "
                                                  "single-host development setup only)");
    }
    refused_free(g->refused, g->nrefused);
    g->refused = v;
    g->nrefused = n;
    return 0;
}

int hy_ing_guard_json(const struct hy_ing *g, struct hy_buf *out)
{
    int rc = hy_buf_puts(out, "[");
    for (size_t i = 0; rc == 0 && i < g->nrefused; i++) {
        const struct hy_ing_refused *x = &g->refused[i];
        rc = hy_buf_puts(out, i ? ",{\"sni\":" : "{\"sni\":");
        rc = rc ? rc : hy_codec_json_string(out, x->sni, strlen(x->sni));
        rc = rc ? rc : hy_buf_puts(out, ",\"name\":");
        rc = rc ? rc : hy_codec_json_string(out, x->name, strlen(x->name));
        rc = rc ? rc : hy_buf_puts(out, ",\"address\":");
        rc = rc ? rc : hy_codec_json_string(out, x->address, strlen(x->address));
        rc =
            rc ? rc : hy_buf_printf(out, ",\"port\":%u,\"reason\":\"%s\"}", x->port, names[x->why]);
    }
    return rc ? rc : hy_buf_puts(out, "]");
}

/* ----- this host's addresses ----- */

bool hy_ing_guard_refresh(struct hy_ing *g)
{
    struct hy_net_addrs *a;
    int rc = hy_net_local_addrs(&a);
    if (rc < 0) {
        hy_log(HY_LOG_WARN, "ingress",
               "cannot list this host's addresses: %s; keeping the last %zu", hy_strerror(rc),
               g->local ? g->local->n : 0);
        return false;
    }
    bool changed = !hy_net_addrs_equal(a, g->local);
    free(g->local);
    g->local = a;
    return changed;
}

static void recheck(struct hy_ing *g, const char *what)
{
    if (!hy_ing_guard_refresh(g) || !g->config)
        return;
    hy_log(HY_LOG_INFO, "ingress",
           "this host's addresses changed (%s, now %zu): re-checking routes %s", what,
           g->local ? g->local->n : 0, g->config->version);
    if (hy_ing_routes_publish(g) < 0)
        hy_log(HY_LOG_ERROR, "ingress", "out of memory re-checking the routes; the last ones stay");
}

static void on_addrs_timer(uv_timer_t *t)
{
    recheck(t->data, "periodic check");
}

static void on_netlink(uv_poll_t *h, int status, int events)
{
    struct hy_ing *g = h->data;
    (void)events;
    if (status < 0) {
        hy_log(HY_LOG_WARN, "ingress", "watching this host's addresses: %s; re-reading every %d s",
               uv_strerror(status), HY_ING_ADDRS_MS / 1000);
        uv_poll_stop(h);
        return;
    }
    /* what changed does not matter, only that something did: drain it all
     * (ENOBUFS: the kernel dropped some; a refresh covers them too) */
    char buf[8192];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(g->addrs_fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && (errno == ENOBUFS || errno == EINTR)))
            break;
    }
    recheck(g, "netlink");
}

void hy_ing_guard_start(struct hy_ing *g)
{
    if (g->cfg->allow_local_endpoints)
        hy_log(HY_LOG_WARN, "ingress",
               "--allow-local-endpoints: relaying to loopback, unspecified and link-local "
               "endpoints. Anyone who can register a Dataplane in this zone can then reach this "
               "host's loopback services through the ingress: for a single-host development "
               "setup only");
    hy_ing_guard_refresh(g);
    uv_timer_init(g->a.loop, &g->addrs_timer);
    g->addrs_timer.data = g;
    g->addrs_timer_init = true;
    uv_timer_start(&g->addrs_timer, on_addrs_timer, HY_ING_ADDRS_MS, HY_ING_ADDRS_MS);
    uv_unref((uv_handle_t *)&g->addrs_timer);
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK,
                             .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
    if (fd < 0 || bind(fd, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
        hy_log(HY_LOG_INFO, "ingress",
               "cannot watch this host's addresses (netlink: %s); re-reading them every %d s",
               strerror(errno), HY_ING_ADDRS_MS / 1000);
        if (fd >= 0)
            close(fd);
        return;
    }
    g->addrs_fd = fd;
    if (uv_poll_init_socket(g->a.loop, &g->addrs_poll, fd) < 0)
        return;
    g->addrs_poll.data = g;
    g->addrs_poll_init = true;
    uv_poll_start(&g->addrs_poll, UV_READABLE, on_netlink);
    uv_unref((uv_handle_t *)&g->addrs_poll);
}

void hy_ing_guard_stop(struct hy_ing *g)
{
    if (g->addrs_timer_init) {
        uv_close((uv_handle_t *)&g->addrs_timer, NULL);
        g->addrs_timer_init = false;
    }
    if (g->addrs_poll_init) {
        uv_close((uv_handle_t *)&g->addrs_poll, NULL);
        g->addrs_poll_init = false;
    }
}

void hy_ing_guard_fini(struct hy_ing *g)
{
    if (g->addrs_fd >= 0)
        close(g->addrs_fd);
    g->addrs_fd = -1;
    free(g->local);
    g->local = NULL;
    refused_free(g->refused, g->nrefused);
    g->refused = NULL;
    g->nrefused = 0;
    if (g->config)
        hypha__v1__dp_ingress_config__free_unpacked(g->config, NULL);
    g->config = NULL;
}
