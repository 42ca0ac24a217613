/* A websocket client's URL, wss://host[:port][/path][?query], parsed the
 * same way by both client implementations (ws_client.c on libwebsockets,
 * ws_uv.c on libuv + wolfSSL). */
#ifndef HY_WS_URL_H
#define HY_WS_URL_H

#include <stdbool.h>

struct hy_ws_url {
    char *host;     /* without brackets for IPv6 */
    char *hostport; /* host:port, [v6]:port: the Host header */
    char *path;     /* "/" at least; a query without a path gets one */
    int port;       /* 443 unless given */
    bool host_is_ip;
};

/* Parses url into u (owned by u afterwards). 0; HY_EINVAL for anything but
 * wss://, an empty host, a bad port, a fragment (#), or a control character,
 * space, '/' or '@' where the request line or the Host header would carry
 * it; HY_ENOMEM. On an error u holds nothing. */
int hy_ws_url_parse(const char *url, struct hy_ws_url *u);
void hy_ws_url_fini(struct hy_ws_url *u);

#endif
