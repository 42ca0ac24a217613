/* Inside the HTTP client (http_client*.c only): the connection layer, TCP
 * or wolfSSL, and the response reader. */
#ifndef HY_HTTP_CLIENT_INT_H
#define HY_HTTP_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "http_client.h"

struct hy_httpc_conn {
    int fd; /* -1 when closed */
    WOLFSSL_CTX *ctx;
    WOLFSSL *ssl; /* NULL for http:// */
    int io_err;   /* what the last failed socket call saw, as -errno */
};

/* Formats a message into err (when err is not NULL). */
void hy_httpc_set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* strerror(errnum) with a lowercase first letter, to sit after a colon. */
const char *hy_httpc_reason(int errnum, char *buf, size_t size);
/* True for an HTTP token (RFC 9110): a method or a header field name. */
bool hy_httpc_is_token(const char *s);

/* Connects to u (every address it resolves to, within connect_ms), sets
 * io_ms as the socket's send and receive timeout, and for https runs the
 * TLS handshake verifying the server against ca_file (NULL: the system
 * CAs) and u's host. Returns 0, or a code and message as
 * hy_httpc_request documents them; c is closed on failure. */
int hy_httpc_conn_open(struct hy_httpc_conn *c, const struct hy_httpc_url *u, int connect_ms,
                       int io_ms, const char *ca_file, char *err, size_t errsize);
/* >0 bytes read, 0 at the end of the stream, or a negative code
 * (-ETIMEDOUT after io_ms without data). */
int hy_httpc_conn_read(struct hy_httpc_conn *c, void *p, size_t n);
/* Writes all n bytes: 0 or a negative code. */
int hy_httpc_conn_write(struct hy_httpc_conn *c, const void *p, size_t n);
/* Closes the TLS session and the socket; safe to call twice. */
void hy_httpc_conn_close(struct hy_httpc_conn *c);

/* Where a reader gets its bytes, with hy_httpc_conn_read's contract: >0
 * bytes, 0 at the end of the stream, or a negative code. */
typedef int (*hy_httpc_read_fn)(void *arg, void *p, size_t n);

/* Reads one response from a byte source (a connection, or memory in the
 * fuzz target), buffering as it goes. */
struct hy_httpc_reader {
    hy_httpc_read_fn read;
    void *arg; /* read's first argument: a struct hy_httpc_conn * for a connection */
    char *buf; /* owned: free with hy_httpc_reader_fini */
    size_t start, end, cap;
    bool eof;
};

/* Reads the status line, headers and body (Content-Length, chunked, or up
 * to the end of the stream) of the answer to method into resp, skipping
 * interim 1xx answers; the body is limited to max bytes. Returns 0, or
 * -EPROTO (not HTTP, or cut short), -ECONNRESET (closed before any byte),
 * -ETIMEDOUT, HY_ETOOBIG, HY_ENOMEM; resp then holds a partial answer the
 * caller frees with hy_httpc_response_fini either way. */
int hy_httpc_read_response(struct hy_httpc_reader *r, const char *method, size_t max,
                           struct hy_httpc_response *resp);
void hy_httpc_reader_fini(struct hy_httpc_reader *r);

#endif
