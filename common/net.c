/* Socket helpers the data-plane processes share: SO_REUSEPORT listeners
 * for worker threads, and peer names for access logs. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "poison.h"

int hy_net_listen_reuseport(uv_tcp_t *tcp, const char *host, unsigned port, uv_connection_cb cb)
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
