/* hy_httpc_client: blocking HTTP/1.1 requests, one connection per request
 * ("Connection: close"): URLs, the request on the wire, and the whole
 * exchange with errors that name the server and the reason. Connections
 * are in http_client_conn.c, the response reader in http_client_read.c. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "http_client.h"
#include "http_client_int.h"
#include "poison.h"

void hy_httpc_set_err(char *err, size_t errsize, const char *fmt, ...)
{
    if (!err || !errsize)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

const char *hy_httpc_reason(int errnum, char *buf, size_t size)
{
    snprintf(buf, size, "%s", strerror(errnum));
    if (buf[0] && buf[1] && !isupper((unsigned char)buf[1]))
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

/* ----- URLs ----- */

void hy_httpc_url_fini(struct hy_httpc_url *u)
{
    free(u->host);
    free(u->path);
    free(u->origin);
    memset(u, 0, sizeof(*u));
}

int hy_httpc_url_parse(const char *url, struct hy_httpc_url *out, char *err, size_t errsize)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        out->tls = true;
    } else {
        hy_httpc_set_err(err, errsize,
                         "invalid URL \"%s\": expected http://HOST[:PORT] or https://...", url);
        return HY_EINVAL;
    }
    for (const char *q = url; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            hy_httpc_set_err(err, errsize,
                             "invalid URL \"%s\": spaces and control characters not allowed", url);
            return HY_EINVAL;
        }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (memchr(p, '@', alen)) {
        hy_httpc_set_err(err, errsize, "invalid URL \"%s\": user info is not supported", url);
        return HY_EINVAL;
    }
    if (strchr(rest, '#')) {
        hy_httpc_set_err(err, errsize, "invalid URL \"%s\": fragments are not supported", url);
        return HY_EINVAL;
    }
    const char *host = p, *port = NULL;
    size_t hlen;
    if (*p == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close) {
            hy_httpc_set_err(err, errsize, "invalid URL \"%s\": missing ']' after the IPv6 address",
                             url);
            return HY_EINVAL;
        }
        host = p + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < rest) {
            if (close[1] != ':') {
                hy_httpc_set_err(err, errsize, "invalid URL \"%s\": unexpected text after ']'",
                                 url);
                return HY_EINVAL;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
        if (colon) {
            port = colon + 1;
            if (memchr(port, ':', (size_t)(rest - port))) {
                hy_httpc_set_err(err, errsize,
                                 "invalid URL \"%s\": write IPv6 addresses in brackets", url);
                return HY_EINVAL;
            }
        }
    }
    if (hlen == 0) {
        hy_httpc_set_err(err, errsize, "invalid URL \"%s\": no host", url);
        return HY_EINVAL;
    }
    out->port = out->tls ? 443 : 80;
    if (port) {
        unsigned long v = 0;
        const char *q = port;
        for (; q < rest && v <= 65535; q++) {
            if (!isdigit((unsigned char)*q))
                break;
            v = v * 10 + (unsigned long)(*q - '0');
        }
        if (q != rest || q == port || v == 0 || v > 65535) {
            hy_httpc_set_err(err, errsize, "invalid URL \"%s\": the port must be a number 1-65535",
                             url);
            return HY_EINVAL;
        }
        out->port = (uint16_t)v;
    }
    bool v6 = *p == '[';
    out->host = strndup(host, hlen);
    if (*rest == '/')
        out->path = strdup(rest);
    else if (asprintf(&out->path, "/%s", rest) < 0)
        out->path = NULL;
    if (asprintf(&out->origin, "%s://%s%.*s%s:%u", out->tls ? "https" : "http", v6 ? "[" : "",
                 (int)hlen, host, v6 ? "]" : "", out->port) < 0)
        out->origin = NULL;
    if (!out->host || !out->path || !out->origin) {
        hy_httpc_url_fini(out);
        hy_httpc_set_err(err, errsize, "out of memory");
        return HY_ENOMEM;
    }
    return 0;
}

/* ----- the request ----- */

bool hy_httpc_is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static bool is_field_value(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return false;
    return true;
}

static int build_head(const struct hy_httpc_options *o, const struct hy_httpc_request *req,
                      const struct hy_httpc_url *u, struct hy_buf *head, char *err, size_t errsize)
{
    if (!req->method || !hy_httpc_is_token(req->method)) {
        hy_httpc_set_err(err, errsize, "invalid HTTP method");
        return HY_EINVAL;
    }
    bool v6 = strchr(u->host, ':') != NULL;
    bool default_port = u->port == (u->tls ? 443 : 80);
    int rc = hy_buf_printf(head, "%s %s HTTP/1.1\r\nHost: %s%s%s", req->method, u->path,
                           v6 ? "[" : "", u->host, v6 ? "]" : "");
    if (rc == 0 && !default_port)
        rc = hy_buf_printf(head, ":%u", u->port);
    if (rc == 0)
        rc = hy_buf_printf(head, "\r\nUser-Agent: %s\r\nConnection: close\r\n",
                           o && o->user_agent ? o->user_agent : "hypha/" HYPHA_VERSION);
    if (rc == 0 && req->body)
        rc = hy_buf_printf(head, "Content-Length: %zu\r\n", req->body_len);
    for (size_t i = 0; rc == 0 && i < req->nheaders; i++) {
        const struct hy_httpc_header *h = &req->headers[i];
        if (!hy_httpc_is_token(h->name) || !is_field_value(h->value)) {
            hy_httpc_set_err(err, errsize, "invalid HTTP header \"%s\": control characters in it",
                             h->name);
            return HY_EINVAL;
        }
        rc = hy_buf_printf(head, "%s: %s\r\n", h->name, h->value);
    }
    if (rc == 0)
        rc = hy_buf_puts(head, "\r\n");
    if (rc < 0)
        hy_httpc_set_err(err, errsize, "out of memory");
    return rc;
}

static const char *describe_read_error(int rc, char *buf, size_t size)
{
    switch (rc) {
    case -EPROTO:
        return "not a valid HTTP/1.1 response";
    case -ETIMEDOUT:
        return "timed out waiting for the response";
    case -ECONNRESET:
        return "the server closed the connection without answering";
    case HY_ETOOBIG:
        return "response too large";
    case HY_ENOMEM:
        return "out of memory";
    default:
        return hy_httpc_reason(-rc, buf, size);
    }
}

/* The reader's byte source for a connection. */
static int conn_read(void *conn, void *p, size_t n)
{
    return hy_httpc_conn_read(conn, p, n);
}

int hy_httpc_request(const struct hy_httpc_options *opts, const struct hy_httpc_request *req,
                     struct hy_httpc_response *resp, char *err, size_t errsize)
{
    static const struct hy_httpc_options none;
    const struct hy_httpc_options *o = opts ? opts : &none;
    int connect_ms =
        o->connect_timeout_ms > 0 ? o->connect_timeout_ms : HY_HTTPC_CONNECT_TIMEOUT_MS;
    int io_ms = o->timeout_ms > 0 ? o->timeout_ms : HY_HTTPC_TIMEOUT_MS;
    size_t max = o->max_body ? o->max_body : HY_HTTPC_MAX_BODY;
    memset(resp, 0, sizeof(*resp));

    struct hy_httpc_url u;
    int rc = hy_httpc_url_parse(req->url, &u, err, errsize);
    if (rc < 0)
        return rc;
    struct hy_buf head = {0};
    struct hy_httpc_conn c;
    if ((rc = build_head(o, req, &u, &head, err, errsize)) < 0 ||
        (rc = hy_httpc_conn_open(&c, &u, connect_ms, io_ms, o->ca_file, err, errsize)) < 0)
        goto out_free_head;
    int wrc = hy_httpc_conn_write(&c, head.data, head.len);
    if (wrc == 0 && req->body)
        wrc = hy_httpc_conn_write(&c, req->body, req->body_len);
    /* even when sending failed, the server may have answered early (413,
     * 401) and closed: read what it said before reporting the failure */
    struct hy_httpc_reader r = {.read = conn_read, .arg = &c};
    rc = hy_httpc_read_response(&r, req->method, max, resp);
    hy_httpc_reader_fini(&r);
    if (rc < 0) {
        char why[128];
        hy_httpc_response_fini(resp);
        if (wrc < 0)
            hy_httpc_set_err(err, errsize, "sending the request to %s failed: %s", u.origin,
                             wrc == -ETIMEDOUT ? "timed out"
                                               : hy_httpc_reason(-wrc, why, sizeof(why)));
        else
            hy_httpc_set_err(err, errsize, "bad answer from %s: %s", u.origin,
                             describe_read_error(rc, why, sizeof(why)));
        rc = wrc < 0 ? wrc : rc == -ECONNRESET ? -EPROTO : rc;
    }
    hy_httpc_conn_close(&c);
out_free_head:
    hy_buf_fini(&head);
    hy_httpc_url_fini(&u);
    return rc;
}
