/* The HTTP client's connections: resolving and connecting with a deadline,
 * socket timeouts, and TLS through wolfSSL's native API (TLS 1.2+, the
 * server's certificate checked against a CA file or the system CAs and
 * against the host name or IP address). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "error.h"
#include "http_client_int.h"
#include "poison.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_one(const struct addrinfo *ai, int64_t deadline, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto out_close;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n;
        do {
            int64_t left = deadline - now_ms();
            n = left <= 0 ? 0 : poll(&pfd, 1, (int)left);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            rc = n == 0 ? -ETIMEDOUT : -errno;
            goto out_close;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            soerr = errno;
        if (soerr) {
            rc = -soerr;
            goto out_close;
        }
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        rc = -errno;
        goto out_close;
    }
    *fd_out = fd;
    return 0;
out_close:
    close(fd);
    return rc;
}

/* Resolves and connects, trying every address until one answers. */
static int dial(const struct hy_httpc_url *u, int connect_ms, int io_ms, int *fd_out, char *err,
                size_t errsize)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", u->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(u->host, port, &hints, &res);
    if (g != 0) {
        char why[128];
        hy_httpc_set_err(
            err, errsize, "cannot connect to %s: cannot resolve \"%s\": %s", u->origin, u->host,
            g == EAI_SYSTEM ? hy_httpc_reason(errno, why, sizeof(why)) : gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int64_t deadline = now_ms() + connect_ms;
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(ai, deadline, fd_out);
        if (rc == 0 || rc == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (rc < 0) {
        char why[128];
        hy_httpc_set_err(err, errsize, "cannot connect to %s: %s", u->origin,
                         rc == -ETIMEDOUT ? "connection timed out"
                                          : hy_httpc_reason(-rc, why, sizeof(why)));
        return rc;
    }
    struct timeval tv = {.tv_sec = io_ms / 1000, .tv_usec = (io_ms % 1000) * 1000};
    int one = 1;
    setsockopt(*fd_out, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(*fd_out, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(*fd_out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

/* Plain socket I/O, shared by the TLS callbacks: >0 bytes, 0 at end of
 * stream, or -errno (-ETIMEDOUT when the socket timeout expired). */
static int sock_recv(struct hy_httpc_conn *c, void *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0)
            return (int)r;
        if (errno == EINTR)
            continue;
        c->io_err = (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        return c->io_err;
    }
}

static int sock_send(struct hy_httpc_conn *c, const void *p, size_t n)
{
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        if (r >= 0)
            return (int)r;
        if (errno == EINTR)
            continue;
        c->io_err = (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        return c->io_err;
    }
}

/* wolfSSL I/O callbacks over the same calls, so timeouts and SIGPIPE are
 * handled in one place and the real errno survives the TLS layer. */
static int tls_recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    int r = sock_recv(ctx, buf, (size_t)sz);
    if (r > 0)
        return r;
    if (r == 0)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return r == -ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
}

static int tls_send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    int r = sock_send(ctx, buf, (size_t)sz);
    if (r >= 0)
        return r;
    if (r == -EPIPE)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return r == -ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
}

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_rc;

static void tls_init(void)
{
    tls_init_rc = wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : HY_ECRYPTO;
}

static bool is_ip_literal(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* Why a certificate was refused, in words; NULL when err is not about the
 * peer's certificate. */
static const char *verify_reason(int err)
{
    switch (err) {
    case ASN_NO_SIGNER_E:
        return "signed by an unknown certificate authority";
    case ASN_SELF_SIGNED_E:
        return "self-signed certificate";
    case ASN_AFTER_DATE_E:
        return "certificate has expired";
    case ASN_BEFORE_DATE_E:
        return "certificate is not valid yet";
    case ASN_SIG_CONFIRM_E:
        return "certificate signature does not verify";
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
        return "the certificate is not for this host name";
    default:
        return NULL;
    }
}

/* True when the peer's certificate has an IP SAN equal to host (an IP
 * literal), compared as addresses. */
static bool check_ip_san(WOLFSSL *ssl, const char *host)
{
    unsigned char want[16], have[16];
    int af = strchr(host, ':') ? AF_INET6 : AF_INET;
    size_t len = af == AF_INET6 ? 16 : 4;
    if (inet_pton(af, host, want) != 1)
        return false;
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(ssl);
    if (!x)
        return false;
    bool ok = false;
    for (char *alt; !ok && (alt = wolfSSL_X509_get_next_altname(x));)
        ok = inet_pton(af, alt, have) == 1 && memcmp(want, have, len) == 0;
    wolfSSL_X509_free(x); /* get_peer_certificate takes a reference (OPENSSL_EXTRA) */
    return ok;
}

static int tls_start(struct hy_httpc_conn *c, const struct hy_httpc_url *u, const char *ca_file,
                     char *err, size_t errsize)
{
    pthread_once(&tls_once, tls_init);
    if (tls_init_rc < 0) {
        hy_httpc_set_err(err, errsize, "TLS: cannot initialise wolfSSL");
        return tls_init_rc;
    }
    c->ctx = wolfSSL_CTX_new(wolfTLS_client_method());
    if (!c->ctx || wolfSSL_CTX_SetMinVersion(c->ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
        hy_httpc_set_err(err, errsize, "TLS: cannot create a client context");
        return HY_ECRYPTO;
    }
    if (ca_file) {
        if (wolfSSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != WOLFSSL_SUCCESS) {
            hy_httpc_set_err(err, errsize,
                             "TLS: cannot load CA certificates from %s: not a readable PEM file",
                             ca_file);
            return HY_ECRYPTO;
        }
    } else if (wolfSSL_CTX_load_system_CA_certs(c->ctx) != WOLFSSL_SUCCESS) {
        hy_httpc_set_err(err, errsize,
                         "TLS: cannot load the system CA certificates to verify %s; give a CA file",
                         u->origin);
        return HY_ECRYPTO;
    }
    wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_PEER, NULL);
    wolfSSL_CTX_SetIORecv(c->ctx, tls_recv_cb);
    wolfSSL_CTX_SetIOSend(c->ctx, tls_send_cb);
    c->ssl = wolfSSL_new(c->ctx);
    if (!c->ssl) {
        hy_httpc_set_err(err, errsize, "TLS: out of memory");
        return HY_ENOMEM;
    }
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    /* Host names: SNI, and wolfSSL checks the name during the handshake. IP
     * literals get no SNI (RFC 6066) and are checked after it against the
     * IP SANs (check_ip_san), as wolfSSL compares IPv6 SANs as text in its
     * own spelling. */
    bool ip = is_ip_literal(u->host);
    if (!ip && (wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, u->host,
                               (unsigned short)strlen(u->host)) != WOLFSSL_SUCCESS ||
                wolfSSL_check_domain_name(c->ssl, u->host) != WOLFSSL_SUCCESS)) {
        hy_httpc_set_err(err, errsize, "TLS: cannot set the server name %s", u->host);
        return HY_ECRYPTO;
    }
    c->io_err = 0;
    int ret = wolfSSL_connect(c->ssl);
    if (ret == WOLFSSL_SUCCESS) {
        if (!ip || check_ip_san(c->ssl, u->host))
            return 0;
        hy_httpc_set_err(err, errsize, "TLS: certificate verify failed for %s: %s", u->origin,
                         verify_reason(IPADDR_MISMATCH));
        return HY_EVERIFY;
    }
    int e = wolfSSL_get_error(c->ssl, ret);
    const char *why = verify_reason(e);
    if (why) {
        hy_httpc_set_err(err, errsize, "TLS: certificate verify failed for %s: %s", u->origin, why);
        return HY_EVERIFY;
    }
    if (c->io_err < 0 || e == SOCKET_PEER_CLOSED_E) {
        char buf[128];
        hy_httpc_set_err(err, errsize, "TLS handshake with %s failed: %s", u->origin,
                         c->io_err == -ETIMEDOUT ? "no answer (timed out); is it an https port?"
                         : c->io_err < 0
                             ? hy_httpc_reason(-c->io_err, buf, sizeof(buf))
                             : "the server closed the connection; is it an https port?");
        return c->io_err == -ETIMEDOUT ? -ETIMEDOUT : HY_ECRYPTO;
    }
    char msg[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)e, msg, sizeof(msg));
    hy_httpc_set_err(err, errsize, "TLS handshake with %s failed: %s", u->origin, msg);
    return HY_ECRYPTO;
}

void hy_httpc_conn_close(struct hy_httpc_conn *c)
{
    if (c->ssl) {
        wolfSSL_shutdown(c->ssl);
        wolfSSL_free(c->ssl);
    }
    if (c->ctx) {
        wolfSSL_CTX_free(c->ctx);
#ifdef FP_ECC
        /* wolfSSL caches ECC points per thread; a thread that made one
         * request and exits would leak them */
        wc_ecc_fp_free();
#endif
    }
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

int hy_httpc_conn_read(struct hy_httpc_conn *c, void *p, size_t n)
{
    if (n > 1u << 30)
        n = 1u << 30;
    if (!c->ssl)
        return sock_recv(c, p, n);
    c->io_err = 0;
    int r = wolfSSL_read(c->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = wolfSSL_get_error(c->ssl, r);
    if (r == 0 || e == WOLFSSL_ERROR_ZERO_RETURN || e == SOCKET_PEER_CLOSED_E)
        return 0;
    return c->io_err < 0 ? c->io_err : -EPROTO;
}

int hy_httpc_conn_write(struct hy_httpc_conn *c, const void *p, size_t n)
{
    const char *q = p;
    while (n > 0) {
        size_t chunk = n > (1u << 20) ? (1u << 20) : n;
        int r;
        c->io_err = 0;
        if (c->ssl) {
            r = wolfSSL_write(c->ssl, q, (int)chunk);
            if (r <= 0)
                r = c->io_err < 0 ? c->io_err : -EPROTO;
        } else {
            r = sock_send(c, q, chunk);
        }
        if (r < 0)
            return r;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

int hy_httpc_conn_open(struct hy_httpc_conn *c, const struct hy_httpc_url *u, int connect_ms,
                       int io_ms, const char *ca_file, char *err, size_t errsize)
{
    *c = (struct hy_httpc_conn){.fd = -1};
    int rc = dial(u, connect_ms, io_ms, &c->fd, err, errsize);
    if (rc == 0 && u->tls)
        rc = tls_start(c, u, ca_file, err, errsize);
    if (rc < 0)
        hy_httpc_conn_close(c);
    return rc;
}
