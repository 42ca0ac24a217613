/* Socket helpers the data-plane processes share: SO_REUSEPORT listeners
 * for worker threads, peer names for access logs, and what an address is
 * to this host (loopback? one of its own?) for proxies that must not be
 * turned back on it. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "poison.h"

static int listen_reuseport(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb,
                            bool v6only)
{
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) != 0)
        return UV_EINVAL;
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    socklen_t len =
        sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (v6only && sa.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, (struct sockaddr *)&sa, len) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = uv_tcp_open(tcp, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return uv_listen((uv_stream_t *)tcp, 511, cb);
}

int hy_net_listen_reuseport(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb)
{
    return listen_reuseport(tcp, host, port, cb, false);
}

int hy_net_listen_reuseport6(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb)
{
    return listen_reuseport(tcp, host, port, cb, true);
}

void hy_net_peer_name(uv_tcp_t *tcp, char *buf, size_t size)
{
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    char ip[48];
    snprintf(buf, size, "-");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&sa, &len) != 0)
        return;
    if (sa.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, ntohs(((struct sockaddr_in *)&sa)->sin_port));
    }
}

bool hy_net_refuse(uv_stream_t *server)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)server, &fd) != 0)
        return false;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return false;
    close(c);
    return true;
}

int hy_net_parse_ip(const char *ip, unsigned port, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof(*sa));
    if (!ip || port > 65535)
        return UV_EINVAL;
    if (uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)sa) == 0)
        return 0;
    memset(sa, 0, sizeof(*sa));
    if (uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    memset(sa, 0, sizeof(*sa));
    return UV_EINVAL;
}

/* ----- where an address leads ----- */

static enum hy_net_scope scope4(uint32_t a) /* host byte order */
{
    if (a >> 24 == 127)
        return HY_NET_SCOPE_LOOPBACK;
    if (a >> 24 == 0) /* "this network": Linux connects 0.0.0.0 to the host itself */
        return HY_NET_SCOPE_UNSPECIFIED;
    if (a >> 16 == 0xa9fe) /* 169.254/16 */
        return HY_NET_SCOPE_LINK_LOCAL;
    return HY_NET_SCOPE_ROUTABLE;
}

enum hy_net_scope hy_net_scope_of(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return scope4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return HY_NET_SCOPE_ROUTABLE;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
        return HY_NET_SCOPE_LOOPBACK;
    if (IN6_IS_ADDR_UNSPECIFIED(a))
        return HY_NET_SCOPE_UNSPECIFIED;
    /* ::ffff:a.b.c.d reaches a.b.c.d through a dual-stack socket; ::a.b.c.d
     * (deprecated) may through a tunnel: judge the IPv4 address either way */
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
        uint32_t v4;
        memcpy(&v4, a->s6_addr + 12, sizeof(v4));
        return scope4(ntohl(v4));
    }
    if (IN6_IS_ADDR_LINKLOCAL(a))
        return HY_NET_SCOPE_LINK_LOCAL;
    return HY_NET_SCOPE_ROUTABLE;
}

const char *hy_net_scope_name(enum hy_net_scope s)
{
    switch (s) {
    case HY_NET_SCOPE_LOOPBACK:
        return "loopback";
    case HY_NET_SCOPE_UNSPECIFIED:
        return "unspecified";
    case HY_NET_SCOPE_LINK_LOCAL:
        return "link_local";
    case HY_NET_SCOPE_ROUTABLE:
        break;
    }
    return "routable";
}

/* sa's address as IPv6, IPv4 as IPv4-mapped; false for other families. */
static bool as_in6(const struct sockaddr *sa, struct in6_addr *out)
{
    if (sa->sa_family == AF_INET6) {
        *out = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        return true;
    }
    if (sa->sa_family != AF_INET)
        return false;
    memset(out, 0, sizeof(*out));
    out->s6_addr[10] = out->s6_addr[11] = 0xff;
    memcpy(out->s6_addr + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return true;
}

static int cmp_in6(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct in6_addr));
}

int hy_net_local_addrs(struct hy_net_addrs **out)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return -errno;
    size_t n = 0;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        n += i->ifa_addr &&
             (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6);
    struct hy_net_addrs *s = malloc(sizeof(*s) + n * sizeof(s->a[0]));
    if (!s) {
        freeifaddrs(ifs);
        return -ENOMEM;
    }
    s->n = 0;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && s->n < n && as_in6(i->ifa_addr, &s->a[s->n]))
            s->n++;
    freeifaddrs(ifs);
    qsort(s->a, s->n, sizeof(s->a[0]), cmp_in6);
    size_t k = 0; /* unique */
    for (size_t i = 0; i < s->n; i++)
        if (k == 0 || cmp_in6(&s->a[k - 1], &s->a[i]))
            s->a[k++] = s->a[i];
    s->n = k;
    *out = s;
    return 0;
}

bool hy_net_addrs_has(const struct hy_net_addrs *s, const struct sockaddr *sa)
{
    struct in6_addr a;
    if (!s || !s->n || !as_in6(sa, &a))
        return false;
    return bsearch(&a, s->a, s->n, sizeof(s->a[0]), cmp_in6) != NULL;
}

bool hy_net_addrs_equal(const struct hy_net_addrs *a, const struct hy_net_addrs *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0;
    return na == nb && (na == 0 || !memcmp(a->a, b->a, na * sizeof(a->a[0])));
}
