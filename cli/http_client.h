/* A small blocking HTTP/1.1 client: one request per connection, http:// and
 * https:// (wolfSSL native API, TLS 1.2+, peer and host name verified), for
 * the CLI and other short-lived callers of the HTTP API. */
#ifndef HY_HTTP_CLIENT_H
#define HY_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HY_HTTPC_CONNECT_TIMEOUT_MS 10000
#define HY_HTTPC_TIMEOUT_MS 30000
#define HY_HTTPC_MAX_HEAD (64u << 10) /* status line and headers */
#define HY_HTTPC_MAX_BODY (64u << 20)

/* A parsed http:// or https:// URL. */
struct hy_httpc_url {
    bool tls;      /* https */
    char *host;    /* owned; an IPv6 literal without its brackets */
    uint16_t port; /* explicit, or 80 / 443 */
    char *path;    /* owned; path and query, "/" when the URL has none */
    char *origin;  /* owned; "https://[::1]:5682", for messages and Host */
};

/* Parses url. Returns 0, HY_EINVAL (with a reason in err) for anything that
 * is not http(s)://host[:port][/path] (user info and fragments are refused),
 * or HY_ENOMEM. On failure out is zeroed; otherwise free it with
 * hy_httpc_url_fini. */
int hy_httpc_url_parse(const char *url, struct hy_httpc_url *out, char *err, size_t errsize);
void hy_httpc_url_fini(struct hy_httpc_url *u);

struct hy_httpc_header {
    const char *name;
    const char *value;
};

struct hy_httpc_request {
    const char *method; /* "GET", "PUT", "POST", "DELETE" */
    const char *url;    /* absolute http(s) URL */
    const struct hy_httpc_header *headers;
    size_t nheaders; /* Host, Content-Length, Connection are added */
    const void *body;
    size_t body_len; /* a body (even empty) is sent whenever body != NULL */
};

struct hy_httpc_options {
    const char *ca_file;    /* PEM bundle for https; NULL = the system CAs */
    int connect_timeout_ms; /* 0 = HY_HTTPC_CONNECT_TIMEOUT_MS */
    int timeout_ms;         /* each send and receive; 0 = HY_HTTPC_TIMEOUT_MS */
    size_t max_body;        /* 0 = HY_HTTPC_MAX_BODY */
    const char *user_agent; /* NULL = "hypha/<version>" */
};

struct hy_httpc_response_header {
    char *name; /* owned, as the server wrote it */
    char *value;
};

struct hy_httpc_response {
    int status;
    char *reason; /* owned, e.g. "Not Found" (may be "") */
    struct hy_httpc_response_header *headers;
    size_t nheaders;
    struct hy_buf body; /* de-chunked; NUL-terminated when non-empty */
};

/* Sends req and reads the whole response into *resp. opts may be NULL.
 * Returns 0 whatever the HTTP status, or a negative code with a one-line
 * message in err naming the URL's origin:
 *   HY_EINVAL     bad URL, method or header (CR/LF in a value)
 *   -EHOSTUNREACH the host name did not resolve
 *   -ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH, ...  connecting failed
 *                 ("cannot connect to http://127.0.0.1:5681: connection refused")
 *   HY_EVERIFY    the server's certificate is not trusted or not for that host
 *                 ("TLS: certificate verify failed for https://...: ...")
 *   HY_ECRYPTO    the CA file could not be loaded or the handshake failed
 *   -ETIMEDOUT    the server stopped answering for timeout_ms
 *   -EPROTO       the response is not valid HTTP/1.x or ended early
 *   HY_ETOOBIG    the head or the body is over its limit
 *   HY_ENOMEM
 * On failure *resp is left empty (hy_httpc_response_fini is still safe);
 * on success the caller frees it with hy_httpc_response_fini. */
int hy_httpc_request(const struct hy_httpc_options *opts, const struct hy_httpc_request *req,
                     struct hy_httpc_response *resp, char *err, size_t errsize);

/* Value of the first response header called name (case-insensitive), or
 * NULL. Valid until hy_httpc_response_fini. */
const char *hy_httpc_response_header(const struct hy_httpc_response *resp, const char *name);

/* Frees everything the response owns and zeroes it; safe on a zeroed one. */
void hy_httpc_response_fini(struct hy_httpc_response *resp);

#endif
