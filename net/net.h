/* Socket helpers the data-plane processes share (libuv). */
#ifndef HY_NET_H
#define HY_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Binds tcp (initialised on its loop, not yet bound) to host:port with
 * SO_REUSEADDR and SO_REUSEPORT, so that one listening socket per worker
 * can share the port (the kernel spreads connections over them), and
 * listens with cb. host must be an IP literal. Returns 0 or a libuv error
 * code; on error tcp is left for the caller to uv_close. */
int hy_net_listen_reuseport(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb);
/* The same with IPV6_V6ONLY on an IPv6 host: "::" then takes IPv6 only,
 * next to a listener on 0.0.0.0 of the same port. */
int hy_net_listen_reuseport6(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb);

/* "ip:port" ("[ip]:port" for IPv6) of tcp's peer into buf; "-" when it
 * has none. */
void hy_net_peer_name(uv_tcp_t *tcp, char *buf, size_t size);

/* Takes the connection waiting on server and closes it at once, with no
 * handle and no allocation: for when a connection cannot be served (out
 * of memory, shutting down) and must not stay queued, or the loop spins.
 * True when there was one. */
bool hy_net_refuse(uv_stream_t *server);

/* Parses ip, an IPv4 or IPv6 literal (an IPv6 one may carry a %scope),
 * and port into *sa, as hy_net_listen_reuseport and the proxies' connects
 * read them. Returns 0, or UV_EINVAL when ip is no IP literal (a host
 * name, say). */
int hy_net_parse_ip(const char *ip, unsigned port, struct sockaddr_storage *sa);

/* ----- where an address leads -----
 * What a proxy that connects on a remote party's behalf (the zone ingress)
 * must know about an address before it dials it: whether it is this host
 * itself, whatever the routes say. */

enum hy_net_scope {
    HY_NET_SCOPE_ROUTABLE = 0, /* an ordinary unicast address */
    HY_NET_SCOPE_LOOPBACK,     /* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, ::127.0.0.0/104 */
    HY_NET_SCOPE_UNSPECIFIED,  /* 0.0.0.0/8, ::, ::ffff:0.0.0.0/104: Linux connects them here */
    HY_NET_SCOPE_LINK_LOCAL,   /* 169.254.0.0/16, fe80::/10: one link only, cloud metadata */
};

/* The scope of sa's address (AF_INET or AF_INET6; any other family is
 * HY_NET_SCOPE_ROUTABLE). IPv4-mapped and IPv4-compatible IPv6 addresses
 * are judged by the IPv4 address they carry. Cannot fail. */
enum hy_net_scope hy_net_scope_of(const struct sockaddr *sa);

/* "routable", "loopback", "unspecified", "link_local": a static string. */
const char *hy_net_scope_name(enum hy_net_scope s);

/* The addresses assigned to this host's interfaces, IPv4 ones as
 * IPv4-mapped IPv6, sorted and unique: immutable once made, so any thread
 * may read it. */
struct hy_net_addrs {
    size_t n;
    struct in6_addr a[];
};

/* Lists this host's interface addresses now (getifaddrs: every interface,
 * up or down, in this network namespace). On success *out is a new set the
 * caller frees with free(); on failure (-errno from getifaddrs, or
 * -ENOMEM) *out is untouched. */
int hy_net_local_addrs(struct hy_net_addrs **out);

/* Is sa's address (AF_INET or AF_INET6; an IPv4-mapped one counts as its
 * IPv4 address) one of s's? s may be NULL: then none is. A binary search:
 * cheap enough for every connection. */
bool hy_net_addrs_has(const struct hy_net_addrs *s, const struct sockaddr *sa);

/* Do a and b hold the same addresses? Either may be NULL (an empty set). */
bool hy_net_addrs_equal(const struct hy_net_addrs *a, const struct hy_net_addrs *b);

#endif
