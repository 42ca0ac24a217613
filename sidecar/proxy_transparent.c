/* Transparent proxying: the workload's connections, redirected by
 * iptables to one outbound and one inbound port, carry their original
 * destination (SO_ORIGINAL_DST). An outbound one to a service's virtual IP
 * or to an instance's address:port becomes a connection of that service's
 * outbound (TCP or HTTP, as on a declared port); one to anywhere else is
 * relayed as is (Kuma's passthrough) unless the Mesh turns passthrough
 * off. An inbound one is a connection of the inbound on its original port.
 * Each such connection moves to a socket-less listener of its worker for
 * that outbound or inbound port, so everything after accept is the same
 * code as for declared ports. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "proxy_int.h"
#include "poison.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif

int hy_px_original_dst(uv_tcp_t *t, struct sockaddr_storage *sa)
{
    uv_os_fd_t fd;
    struct sockaddr_storage local;
    int n = sizeof(local);
    int rc = uv_fileno((uv_handle_t *)t, &fd);
    if (rc == 0)
        rc = uv_tcp_getsockname(t, (struct sockaddr *)&local, &n);
    if (rc < 0)
        return rc;
    socklen_t len = sizeof(*sa);
    memset(sa, 0, sizeof(*sa));
    if (local.ss_family == AF_INET6)
        rc = getsockopt(fd, IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, sa, &len);
    else
        rc = getsockopt(fd, IPPROTO_IP, SO_ORIGINAL_DST, sa, &len);
    return rc < 0 ? -errno : 0;
}

const Hypha__V1__DpOutbound *hy_px_transparent_match(const Hypha__V1__DpConfig *cf, const char *ip,
                                                     uint32_t port)
{
    for (size_t i = 0; cf && i < cf->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = cf->outbounds[i];
        if ((o->vip && !strcmp(o->vip, ip)) || (o->vip6 && !strcmp(o->vip6, ip)))
            return o;
    }
    /* an instance's own address: only this zone's (an ingress's address
     * and port serve many services) */
    for (size_t i = 0; cf && i < cf->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = cf->outbounds[i];
        for (size_t k = 0; k < o->n_endpoints; k++) {
            const Hypha__V1__DpEndpoint *e = o->endpoints[k];
            if ((!e->has_priority || e->priority == 0) && e->port == port && e->address &&
                !strcmp(e->address, ip))
                return o;
        }
    }
    return NULL;
}

/* The worker's socket-less listener of dir on port (outbound: of service,
 * with its route), made if need be; NULL when out of memory. */
static struct hy_px_listener *virtual_listener(struct hy_px_worker *w, enum hy_px_dir dir,
                                               uint16_t port, const char *service)
{
    if (dir == HY_PX_IN || !service)
        service = "";
    for (struct hy_px_listener *l = w->virtuals; l; l = l->next)
        if (l->dir == dir && l->port == port && (port || !strcmp(l->service, service)))
            return l;
    struct hy_px_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    if (dir == HY_PX_OUT && !(l->route = hy_px_route_get(w->p, port, service))) {
        free(l);
        return NULL;
    }
    snprintf(l->service, sizeof(l->service), "%s", service);
    l->w = w;
    l->dir = dir;
    l->port = port;
    l->is_virtual = true;
    l->refs = 1; /* the worker's, until it stops */
    l->next = w->virtuals;
    w->virtuals = l;
    return l;
}

/* c leaves the transparent listener for l: counted as the connections
 * accepted on a declared port are. */
static void move_to(struct hy_px_conn *c, struct hy_px_listener *l)
{
    struct hy_px_listener *was = c->l;
    c->l = l;
    l->refs++;
    hy_px_listener_unref(was);
    if (l->route) {
        c->active_n = atomic_fetch_add_explicit(&l->route->active, 1, memory_order_relaxed) + 1;
        c->pending_n = atomic_fetch_add_explicit(&l->route->pending, 1, memory_order_relaxed) + 1;
        c->pending = true;
    }
}

void hy_px_transparent_stop(struct hy_px_worker *w)
{
    while (w->virtuals) {
        struct hy_px_listener *l = w->virtuals;
        w->virtuals = l->next;
        hy_px_listener_unref(l);
    }
    hy_px_passthrough_stop(w);
}

static bool addr_text(const struct sockaddr_storage *sa, char *ip, size_t size, uint16_t *port)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        *port = ntohs(s4->sin_port);
        return uv_ip4_name(s4, ip, size) == 0;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        *port = ntohs(s6->sin6_port);
        return uv_ip6_name(s6, ip, size) == 0;
    }
    return false;
}

/* Was sa (the original destination) this listener itself: nobody
 * redirected the connection, it came here directly? */
static bool is_self(struct hy_px_conn *c, const struct sockaddr_storage *sa)
{
    struct sockaddr_storage local;
    int n = sizeof(local);
    if (uv_tcp_getsockname(&c->down.tcp, (struct sockaddr *)&local, &n) < 0)
        return false;
    char a[64], b[64];
    uint16_t pa = 0, pb = 0;
    return addr_text(&local, a, sizeof(a), &pa) && addr_text(sa, b, sizeof(b), &pb) && pa == pb &&
           !strcmp(a, b);
}

void hy_px_transparent_accept(struct hy_px_conn *c)
{
    struct hy_px_worker *w = c->w;
    struct sockaddr_storage sa;
    char ip[64];
    uint16_t port = 0;
    int rc = hy_px_original_dst(&c->down.tcp, &sa);
    if (rc < 0 || !addr_text(&sa, ip, sizeof(ip), &port) || is_self(c, &sa)) {
        hy_series_inc(c->m->transparent[HY_PX_TP_REFUSED]);
        hy_px_conn_close(c, "no_original_destination",
                         "the connection was not redirected here (%s): nothing to send it to",
                         rc < 0 ? uv_strerror(rc) : "its destination is this port");
        return;
    }
    snprintf(c->endpoint, sizeof(c->endpoint), "%s%s%s:%u", strchr(ip, ':') ? "[" : "", ip,
             strchr(ip, ':') ? "]" : "", (unsigned)port);
    const Hypha__V1__DpConfig *cf = c->snap ? c->snap->config : NULL;
    if (c->dir == HY_PX_IN) {
        struct hy_px_listener *l = virtual_listener(w, HY_PX_IN, port, NULL);
        if (!l) {
            hy_px_conn_close(c, "error", "out of memory");
            return;
        }
        c->endpoint[0] = '\0';
        move_to(c, l);
        bool known = false;
        for (size_t i = 0; cf && !known && i < cf->n_inbounds; i++)
            known = cf->inbounds[i]->port == port;
        hy_series_inc(c->m->transparent[known ? HY_PX_TP_MESH : HY_PX_TP_REFUSED]);
        hy_px_inbound_accept(c); /* no inbound on the original port: refused there */
        return;
    }
    const Hypha__V1__DpOutbound *o = hy_px_transparent_match(cf, ip, port);
    if (o) {
        struct hy_px_listener *l = virtual_listener(w, HY_PX_OUT, (uint16_t)o->port, o->service);
        if (!l) {
            hy_px_conn_close(c, "error", "out of memory");
            return;
        }
        c->endpoint[0] = '\0';
        move_to(c, l);
        c->out = o;
        hy_series_inc(c->m->transparent[HY_PX_TP_MESH]);
        hy_px_outbound_accept(c);
        return;
    }
    if (cf && cf->transparent && cf->transparent->has_passthrough &&
        !cf->transparent->passthrough) {
        hy_series_inc(c->m->transparent[HY_PX_TP_REFUSED]);
        hy_px_conn_close(c, "passthrough_off",
                         "%s is outside the mesh and the Mesh turns passthrough off", c->endpoint);
        return;
    }
    hy_series_inc(c->m->transparent[HY_PX_TP_PASSTHROUGH]);
    rc = hy_px_passthrough_start(c, &sa);
    if (rc < 0)
        hy_px_conn_close(c, "error", "passthrough to %s: %s", c->endpoint, uv_strerror(rc));
}
