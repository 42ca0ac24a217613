/* Websocket client URLs (ws_url.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ws_url.h"
#include "poison.h"

void hy_ws_url_fini(struct hy_ws_url *u)
{
    free(u->host);
    free(u->hostport);
    free(u->path);
    memset(u, 0, sizeof(*u));
}

static bool clean(const char *s, const char *also)
{
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || strchr(also, *p))
            return false;
    return true;
}

static int parse(const char *url, struct hy_ws_url *u)
{
    if (!url || strncmp(url, "wss://", 6) != 0)
        return HY_EINVAL;
    const char *h = url + 6, *end = h + strcspn(h, "/?#"), *hend, *colon = NULL;
    if (*h == '[') {
        hend = memchr(h, ']', (size_t)(end - h));
        if (!hend)
            return HY_EINVAL;
        if (hend + 1 < end && hend[1] == ':')
            colon = hend + 1;
        else if (hend + 1 != end)
            return HY_EINVAL;
        h++;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        hend = colon ? colon : end;
    }
    if (hend == h || *end == '#')
        return HY_EINVAL;
    u->port = 443;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || colon + 1 == end || p < 1 || p > 65535)
            return HY_EINVAL;
        u->port = (int)p;
    }
    if (!(u->host = strndup(h, (size_t)(hend - h))))
        return HY_ENOMEM;
    if (*end == '/') {
        u->path = strdup(end);
    } else if (*end == '?') { /* a query without a path */
        size_t n = strlen(end) + 2;
        if ((u->path = malloc(n)))
            snprintf(u->path, n, "/%s", end);
    } else {
        u->path = strdup("/");
    }
    size_t hl = strlen(u->host) + 16;
    if (!u->path || !(u->hostport = malloc(hl)))
        return HY_ENOMEM;
    if (!clean(u->path, "#") || !clean(u->host, "/@"))
        return HY_EINVAL; /* they go into the request line and the Host header */
    unsigned char a6[16];
    u->host_is_ip = inet_pton(AF_INET, u->host, a6) == 1 || inet_pton(AF_INET6, u->host, a6) == 1;
    snprintf(u->hostport, hl, strchr(u->host, ':') ? "[%s]:%d" : "%s:%d", u->host, u->port);
    return 0;
}

int hy_ws_url_parse(const char *url, struct hy_ws_url *u)
{
    memset(u, 0, sizeof(*u));
    int rc = parse(url, u);
    if (rc < 0)
        hy_ws_url_fini(u);
    return rc;
}
