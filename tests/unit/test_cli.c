/* Unit tests of hyphactl and its HTTP client, without a control plane: the
 * client against a tiny in-test HTTP(S) server with canned answers, URL and
 * flag parsing, tables and ages, the configuration file in a temporary
 * HOME, local validation in apply, and whole commands against canned API
 * replies. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "args.h"
#include "cli.h"
#include "cliconfig.h"
#include "codec.h"
#include "columns.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "output.h"
#include "table.h"
#include "poison.h"

#define DATA HY_TEST_DATA "/cli/"

/* ===== a tiny HTTP(S) server: one thread, canned answers by request ===== */

struct route {
    const char *req;     /* "GET /meshes?size=1": method and target */
    int status;          /* 0: send raw as it is (NULL raw: close without answering) */
    const char *body;    /* sent with a Content-Length */
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *raw;
    int delay_ms; /* before answering */
};

struct fake {
    int lfd;
    uint16_t port;
    char url[64]; /* http://127.0.0.1:PORT */
    pthread_t th;
    const struct route *routes;
    size_t nroutes;
    WOLFSSL_CTX *tls; /* speaks https when set */
    atomic_int stop;
    pthread_mutex_t mu;
    struct hy_buf log; /* request line, interesting headers and body of each request */
};

static int io_read(int fd, WOLFSSL *ssl, char *p, size_t n)
{
    return ssl ? wolfSSL_read(ssl, p, (int)n) : (int)recv(fd, p, n, 0);
}

static void io_write(int fd, WOLFSSL *ssl, const char *p, size_t n)
{
    if (ssl)
        wolfSSL_write(ssl, p, (int)n);
    else if (send(fd, p, n, MSG_NOSIGNAL) < 0)
        return;
}

static void serve_one(struct fake *f, int fd)
{
    WOLFSSL *ssl = NULL;
    char *buf = calloc(1, 1 << 20);
    size_t len = 0, cap = (1 << 20) - 1;
    if (f->tls) {
        ssl = wolfSSL_new(f->tls);
        wolfSSL_set_fd(ssl, fd);
        if (wolfSSL_accept(ssl) != WOLFSSL_SUCCESS)
            goto out;
    }
    char *end;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        int n = io_read(fd, ssl, buf + len, cap - len);
        if (n <= 0)
            goto out;
        len += (size_t)n;
    }
    char *head_end = end + 4;
    size_t cl = 0;
    char *clh = strstr(buf, "\r\nContent-Length: ");
    if (clh && clh < head_end)
        cl = strtoul(clh + 18, NULL, 10);
    while (len - (size_t)(head_end - buf) < cl) {
        int n = io_read(fd, ssl, buf + len, cap - len);
        if (n <= 0)
            goto out;
        len += (size_t)n;
    }
    size_t rl = strcspn(buf, "\r");
    char target[1024];
    snprintf(target, sizeof(target), "%.*s",
             (int)strcspn(buf, " ") + 1 + (int)strcspn(buf + strcspn(buf, " ") + 1, " "), buf);
    pthread_mutex_lock(&f->mu);
    hy_buf_printf(&f->log, "%.*s\n", (int)rl, buf);
    static const char *const shown[] = {
        "Authorization: ", "Content-Type: ", "Hypha-Source: ", "Host: ", "Content-Length: "};
    for (char *line = buf + rl + 2; line < end; line = strstr(line, "\r\n") + 2)
        for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
            if (strncmp(line, shown[i], strlen(shown[i])) == 0)
                hy_buf_printf(&f->log, "%.*s\n", (int)strcspn(line, "\r"), line);
    if (cl)
        hy_buf_printf(&f->log, "body: %.*s\n", (int)cl, head_end);
    pthread_mutex_unlock(&f->mu);

    const struct route *r = NULL;
    for (size_t i = 0; i < f->nroutes && !r; i++)
        if (strcmp(f->routes[i].req, target) == 0)
            r = &f->routes[i];
    static const struct route not_found = {
        "",   404,  "{\"title\":\"Not found\",\"details\":\"no such route in the test\"}",
        NULL, NULL, 0};
    if (!r)
        r = &not_found;
    if (r->delay_ms)
        usleep((useconds_t)r->delay_ms * 1000);
    if (r->status == 0) {
        if (r->raw)
            io_write(fd, ssl, r->raw, strlen(r->raw));
        goto out;
    }
    char head[1024];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d Canned\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                      r->status, r->body ? strlen(r->body) : 0, r->headers ? r->headers : "");
    io_write(fd, ssl, head, (size_t)hn);
    if (r->body)
        io_write(fd, ssl, r->body, strlen(r->body));
out:
    if (ssl) {
        wolfSSL_shutdown(ssl);
        wolfSSL_free(ssl);
    }
    free(buf);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        serve_one(f, fd);
        close(fd);
    }
    if (f->tls)
        wc_ecc_fp_free(); /* wolfSSL's per-thread ECC cache */
    return NULL;
}

static struct fake *fake_start(const struct route *routes, size_t n, bool tls,
                               const char *cert_name)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->routes = routes;
    f->nroutes = n;
    pthread_mutex_init(&f->mu, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    socklen_t al = sizeof(a);
    getsockname(f->lfd, (struct sockaddr *)&a, &al);
    f->port = ntohs(a.sin_port);
    snprintf(f->url, sizeof(f->url), "%s://127.0.0.1:%u", tls ? "https" : "http", f->port);
    if (tls) {
        char cert[512], key[512];
        snprintf(cert, sizeof(cert), DATA "%s.pem", cert_name);
        snprintf(key, sizeof(key), DATA "%s.key", cert_name);
        f->tls = wolfSSL_CTX_new(wolfTLS_server_method());
        assert_non_null(f->tls);
        assert_int_equal(wolfSSL_CTX_use_certificate_chain_file(f->tls, cert), WOLFSSL_SUCCESS);
        assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(f->tls, key, WOLFSSL_FILETYPE_PEM),
                         WOLFSSL_SUCCESS);
    }
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    close(f->lfd);
    if (f->tls)
        wolfSSL_CTX_free(f->tls);
    hy_buf_fini(&f->log);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* The log so far, as a string the caller must not free. */
static const char *fake_log(struct fake *f)
{
    return f->log.data ? f->log.data : "";
}

/* A loopback port nothing listens on. */
static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* ===== the HTTP client ===== */

static int get(struct fake *f, const char *path, const struct hy_httpc_options *o,
               struct hy_httpc_response *resp, char *err, size_t errsize)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", f->url, path);
    struct hy_httpc_request req = {.method = "GET", .url = url};
    return hy_httpc_request(o, &req, resp, err, errsize);
}

static void test_http_content_length_and_headers(void **state)
{
    (void)state;
    static const struct route routes[] = {
        {"GET /a", 200, "{\"ok\":true}",
         "Content-Type: application/json\r\nX-Twice: first\r\nx-twice: second\r\n"
         "ETag:   \"42\"  \r\n",
         NULL, 0},
        {"GET /empty", 204, NULL, NULL, NULL, 0},
    };
    struct fake *f = fake_start(routes, 2, false, NULL);
    struct hy_httpc_response resp;
    char err[256] = "";
    assert_int_equal(get(f, "/a", NULL, &resp, err, sizeof(err)), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.reason, "Canned");
    assert_int_equal(resp.body.len, 11);
    assert_string_equal(resp.body.data, "{\"ok\":true}");
    assert_string_equal(hy_httpc_response_header(&resp, "content-type"), "application/json");
    assert_string_equal(hy_httpc_response_header(&resp, "X-TWICE"), "first");
    assert_string_equal(hy_httpc_response_header(&resp, "etag"), "\"42\"");
    assert_null(hy_httpc_response_header(&resp, "X-Missing"));
    hy_httpc_response_fini(&resp);
    assert_int_equal(get(f, "/empty", NULL, &resp, err, sizeof(err)), 0);
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.body.len, 0);
    hy_httpc_response_fini(&resp);
    char host[64];
    snprintf(host, sizeof(host), "GET /a HTTP/1.1\nHost: 127.0.0.1:%u\n", f->port);
    assert_non_null(strstr(fake_log(f), host));
    fake_stop(f);
}

static void test_http_chunked_and_until_close(void **state)
{
    (void)state;
    static const struct route routes[] = {
        {"GET /chunked", 0, NULL, NULL,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "5;name=value\r\nhello\r\n7\r\n, world\r\nB\r\n 0123456789\r\n0\r\n"
         "Trailer-Field: x\r\n\r\n",
         0},
        {"GET /close", 0, NULL, NULL, "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nuntil the end", 0},
        {"GET /interim", 0, NULL, NULL,
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 0},
        {"GET /bad-chunk", 0, NULL, NULL,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntoo long\r\n0\r\n\r\n", 0},
    };
    struct fake *f = fake_start(routes, 4, false, NULL);
    struct hy_httpc_response resp;
    char err[256] = "";
    assert_int_equal(get(f, "/chunked", NULL, &resp, err, sizeof(err)), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "hello, world 0123456789");
    hy_httpc_response_fini(&resp);
    assert_int_equal(get(f, "/close", NULL, &resp, err, sizeof(err)), 0);
    assert_string_equal(resp.body.data, "until the end");
    assert_string_equal(hy_httpc_response_header(&resp, "server"), "old");
    hy_httpc_response_fini(&resp);
    assert_int_equal(get(f, "/interim", NULL, &resp, err, sizeof(err)), 0);
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.body.data, "ok");
    hy_httpc_response_fini(&resp);
    assert_int_equal(get(f, "/bad-chunk", NULL, &resp, err, sizeof(err)), -EPROTO);
    assert_null(resp.body.data);
    fake_stop(f);
}

static void test_http_bad_answers(void **state)
{
    (void)state;
    static const struct route routes[] = {
        {"GET /garbage", 0, NULL, NULL, "SSH-2.0-OpenSSH_9.2\r\n", 0},
        {"GET /short", 0, NULL, NULL, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5", 0},
        {"GET /silent", 0, NULL, NULL, NULL, 0},
        {"GET /two-lengths", 0, NULL, NULL,
         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", 0},
        {"GET /big", 200, "0123456789abcdef", NULL, NULL, 0},
        {"GET /slow", 200, "late", NULL, NULL, 400},
    };
    struct fake *f = fake_start(routes, 6, false, NULL);
    struct hy_httpc_response resp;
    char err[256], want[256];
    assert_int_equal(get(f, "/garbage", NULL, &resp, err, sizeof(err)), -EPROTO);
    snprintf(want, sizeof(want), "bad answer from %s: not a valid HTTP/1.1 response", f->url);
    assert_string_equal(err, want);
    assert_int_equal(get(f, "/short", NULL, &resp, err, sizeof(err)), -EPROTO);
    assert_int_equal(get(f, "/silent", NULL, &resp, err, sizeof(err)), -EPROTO);
    snprintf(want, sizeof(want),
             "bad answer from %s: the server closed the connection without answering", f->url);
    assert_string_equal(err, want);
    assert_int_equal(get(f, "/two-lengths", NULL, &resp, err, sizeof(err)), -EPROTO);
    struct hy_httpc_options small = {.max_body = 8};
    assert_int_equal(get(f, "/big", &small, &resp, err, sizeof(err)), HY_ETOOBIG);
    struct hy_httpc_options quick = {.timeout_ms = 100};
    assert_int_equal(get(f, "/slow", &quick, &resp, err, sizeof(err)), -ETIMEDOUT);
    snprintf(want, sizeof(want), "bad answer from %s: timed out waiting for the response", f->url);
    assert_string_equal(err, want);
    hy_httpc_response_fini(&resp);
    fake_stop(f);
}

static void test_http_request_on_the_wire(void **state)
{
    (void)state;
    static const struct route routes[] = {{"PUT /meshes/default", 201, "{}", NULL, NULL, 0}};
    struct fake *f = fake_start(routes, 1, false, NULL);
    char url[128];
    snprintf(url, sizeof(url), "%s/meshes/default", f->url);
    const struct hy_httpc_header h[] = {{"Content-Type", "application/yaml"}};
    struct hy_httpc_request req = {
        .method = "PUT", .url = url, .headers = h, .nheaders = 1, .body = "a: b", .body_len = 4};
    struct hy_httpc_response resp;
    char err[256];
    assert_int_equal(hy_httpc_request(NULL, &req, &resp, err, sizeof(err)), 0);
    assert_int_equal(resp.status, 201);
    hy_httpc_response_fini(&resp);
    char want[256];
    snprintf(want, sizeof(want),
             "PUT /meshes/default HTTP/1.1\nHost: 127.0.0.1:%u\nContent-Length: 4\n"
             "Content-Type: application/yaml\nbody: a: b\n",
             f->port);
    assert_string_equal(fake_log(f), want);
    /* header injection is refused before anything is sent */
    const struct hy_httpc_header evil[] = {{"Hypha-Source", "x\r\nX-Evil: 1"}};
    req.headers = evil;
    assert_int_equal(hy_httpc_request(NULL, &req, &resp, err, sizeof(err)), HY_EINVAL);
    assert_string_equal(err, "invalid HTTP header \"Hypha-Source\": control characters in it");
    req.method = "GE T";
    req.headers = NULL;
    req.nheaders = 0;
    assert_int_equal(hy_httpc_request(NULL, &req, &resp, err, sizeof(err)), HY_EINVAL);
    fake_stop(f);
}

static void test_http_connection_refused(void **state)
{
    (void)state;
    uint16_t port = closed_port();
    char url[64], err[256], want[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    struct hy_httpc_request req = {.method = "GET", .url = url};
    struct hy_httpc_response resp;
    assert_int_equal(hy_httpc_request(NULL, &req, &resp, err, sizeof(err)), -ECONNREFUSED);
    snprintf(want, sizeof(want), "cannot connect to http://127.0.0.1:%u: connection refused", port);
    assert_string_equal(err, want);
    hy_httpc_response_fini(&resp);
}

static void test_https(void **state)
{
    (void)state;
    static const struct route routes[] = {{"GET /", 200, "{\"product\":\"Hypha\"}", NULL, NULL, 0}};
    struct fake *f = fake_start(routes, 1, true, "server");
    struct hy_httpc_response resp;
    char err[256] = "", want[256];
    struct hy_httpc_options o = {.ca_file = DATA "ca.pem"};
    assert_int_equal(get(f, "/", &o, &resp, err, sizeof(err)), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "{\"product\":\"Hypha\"}");
    hy_httpc_response_fini(&resp);
    /* by host name too (SNI and the DNS SAN) */
    char url[128];
    snprintf(url, sizeof(url), "https://localhost:%u/", f->port);
    struct hy_httpc_request req = {.method = "GET", .url = url};
    assert_int_equal(hy_httpc_request(&o, &req, &resp, err, sizeof(err)), 0);
    hy_httpc_response_fini(&resp);
    /* the system CAs do not know the test CA */
    assert_int_equal(get(f, "/", NULL, &resp, err, sizeof(err)), HY_EVERIFY);
    snprintf(want, sizeof(want),
             "TLS: certificate verify failed for %s: signed by an unknown certificate authority",
             f->url);
    assert_string_equal(err, want);
    struct hy_httpc_options missing = {.ca_file = DATA "no-such-ca.pem"};
    assert_int_equal(get(f, "/", &missing, &resp, err, sizeof(err)), HY_ECRYPTO);
    assert_string_equal(err, "TLS: cannot load CA certificates from " DATA
                             "no-such-ca.pem: not a readable PEM file");
    fake_stop(f);

    f = fake_start(routes, 1, true, "wrong-host");
    assert_int_equal(get(f, "/", &o, &resp, err, sizeof(err)), HY_EVERIFY);
    snprintf(want, sizeof(want),
             "TLS: certificate verify failed for %s: the certificate is not for this host name",
             f->url);
    assert_string_equal(err, want);
    snprintf(url, sizeof(url), "https://localhost:%u/", f->port);
    assert_int_equal(hy_httpc_request(&o, &req, &resp, err, sizeof(err)), HY_EVERIFY);
    fake_stop(f);
}

static void test_url_parse(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        bool tls;
        const char *host;
        int port;
        const char *path, *origin;
    } ok[] = {
        {"http://127.0.0.1:5681", false, "127.0.0.1", 5681, "/", "http://127.0.0.1:5681"},
        {"HTTPS://global.example", true, "global.example", 443, "/", "https://global.example:443"},
        {"http://[::1]:5681/meshes?size=2", false, "::1", 5681, "/meshes?size=2",
         "http://[::1]:5681"},
        {"https://[fd00::1]/x", true, "fd00::1", 443, "/x", "https://[fd00::1]:443"},
        {"http://h?q=1", false, "h", 80, "/?q=1", "http://h:80"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct hy_httpc_url u;
        char err[256];
        assert_int_equal(hy_httpc_url_parse(ok[i].url, &u, err, sizeof(err)), 0);
        assert_int_equal(u.tls, ok[i].tls);
        assert_string_equal(u.host, ok[i].host);
        assert_int_equal(u.port, ok[i].port);
        assert_string_equal(u.path, ok[i].path);
        assert_string_equal(u.origin, ok[i].origin);
        hy_httpc_url_fini(&u);
    }
    static const struct {
        const char *url, *err;
    } bad[] = {
        {"127.0.0.1:5681",
         "invalid URL \"127.0.0.1:5681\": expected http://HOST[:PORT] or https://..."},
        {"ftp://x", "invalid URL \"ftp://x\": expected http://HOST[:PORT] or https://..."},
        {"http://", "invalid URL \"http://\": no host"},
        {"http://h:0", "invalid URL \"http://h:0\": the port must be a number 1-65535"},
        {"http://h:65536", "invalid URL \"http://h:65536\": the port must be a number 1-65535"},
        {"http://h:x1", "invalid URL \"http://h:x1\": the port must be a number 1-65535"},
        {"http://h:", "invalid URL \"http://h:\": the port must be a number 1-65535"},
        {"http://::1:80", "invalid URL \"http://::1:80\": write IPv6 addresses in brackets"},
        {"http://[::1", "invalid URL \"http://[::1\": missing ']' after the IPv6 address"},
        {"http://u:p@h", "invalid URL \"http://u:p@h\": user info is not supported"},
        {"http://h/#top", "invalid URL \"http://h/#top\": fragments are not supported"},
        {"http://h/a b", "invalid URL \"http://h/a b\": spaces and control characters not allowed"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hy_httpc_url u;
        char err[256];
        assert_int_equal(hy_httpc_url_parse(bad[i].url, &u, err, sizeof(err)), HY_EINVAL);
        assert_string_equal(err, bad[i].err);
        assert_null(u.host);
    }
}

/* ===== small modules ===== */

static void test_table_alignment(void **state)
{
    (void)state;
    static const char *const head[] = {"MESH", "NAME", "AGE"};
    struct hy_table t;
    assert_int_equal(hy_table_init(&t, 3, head), 0);
    const char *r1[] = {"default", "web-1", "5m"};
    const char *r2[] = {"zöne", "", NULL};
    const char *r3[] = {"a", "multi\nline\terror", "1d"};
    assert_int_equal(hy_table_add(&t, r1), 0);
    assert_int_equal(hy_table_add(&t, r2), 0);
    assert_int_equal(hy_table_add(&t, r3), 0);
    struct hy_buf b = {0};
    assert_int_equal(hy_table_render(&t, &b), 0);
    assert_string_equal(b.data, "MESH      NAME               AGE\n"
                                "default   web-1              5m\n"
                                "zöne      -                  -\n"
                                "a         multi line error   1d\n");
    hy_buf_fini(&b);
    hy_table_fini(&t);
}

static void test_age(void **state)
{
    (void)state;
    static const struct {
        int64_t s;
        const char *want;
    } cases[] = {
        {-5, "<invalid>"},
        {-1, "0s"},
        {0, "0s"},
        {59, "59s"},
        {119, "119s"},
        {120, "2m"},
        {121, "2m1s"},
        {599, "9m59s"},
        {600, "10m"},
        {601, "10m"},
        {3 * 3600 - 1, "179m"},
        {3 * 3600, "3h"},
        {3 * 3600 + 60, "3h1m"},
        {8 * 3600 - 60, "7h59m"},
        {8 * 3600 + 59 * 60, "8h"},
        {47 * 3600, "47h"},
        {48 * 3600, "2d"},
        {49 * 3600, "2d1h"},
        {8 * 86400, "8d"},
        {729 * 86400, "729d"},
        {730 * 86400, "2y"},
        {731 * 86400, "2y1d"},
        {8 * 365 * 86400, "8y"},
        {20 * 365 * 86400 + 86400, "20y"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        hy_output_age(cases[i].s, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
    char buf[32];
    hy_output_age_since(100, NULL, buf, sizeof(buf));
    assert_string_equal(buf, "-");
}

static void test_args(void **state)
{
    (void)state;
    static const struct hy_flag cmd[] = {
        {"mesh", 'm', "MESH", "", NULL},
        {"file", 'f', "FILE", "", NULL},
        {"dry-run", 0, NULL, "", NULL},
        {0},
    };
    static const struct hy_flag global[] = {{"cp", 0, "URL", "", NULL}, {0}};
    const struct hy_flag *const tables[] = {cmd, global, NULL};
    char *argv[] = {"mtp",       "-mdefault", "--cp=http://x", "-f",   "-", "--file", "b.yaml",
                    "--dry-run", "--",        "-odd",          "name", NULL};
    struct hy_args a;
    char err[256];
    assert_int_equal(hy_args_parse(11, argv, tables, &a, err, sizeof(err)), 0);
    assert_int_equal(a.npos, 3);
    assert_string_equal(a.pos[0], "mtp");
    assert_string_equal(a.pos[1], "-odd");
    assert_string_equal(a.pos[2], "name");
    assert_string_equal(hy_args_get(&a, "mesh"), "default");
    assert_string_equal(hy_args_get(&a, "cp"), "http://x");
    assert_string_equal(hy_args_nth(&a, "file", 0), "-");
    assert_string_equal(hy_args_nth(&a, "file", 1), "b.yaml");
    assert_null(hy_args_nth(&a, "file", 2));
    assert_true(hy_args_on(&a, "dry-run"));
    hy_args_fini(&a);

    static const struct {
        const char *arg, *err;
    } bad[] = {
        {"--nope", "unknown flag --nope"},
        {"-x", "unknown flag -x"},
        {"--mesh", "flag --mesh needs a value (MESH)"},
        {"--dry-run=maybe", "flag --dry-run takes no value (or =true, =false), got \"maybe\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *v[] = {(char *)bad[i].arg, NULL};
        assert_int_equal(hy_args_parse(1, v, tables, &a, err, sizeof(err)), HY_EINVAL);
        assert_string_equal(err, bad[i].err);
        hy_args_fini(&a);
    }
    char *off[] = {"--dry-run=false", NULL};
    assert_int_equal(hy_args_parse(1, off, tables, &a, err, sizeof(err)), 0);
    assert_false(hy_args_on(&a, "dry-run"));
    hy_args_fini(&a);
}

static void test_json(void **state)
{
    (void)state;
    const char *text = "{\"total\": 2, \"items\": [{\"name\": \"a\\u00e9\", \"n\": -1.5e3, "
                       "\"ok\": true, \"s\": \"123\"}], \"next\": null, \"extra\": {\"x\": []}}";
    struct hy_json *j;
    char err[256];
    assert_int_equal(hy_json_parse(text, strlen(text), &j, err, sizeof(err)), 0);
    assert_string_equal(hy_json_get_str(j, "total"), "2");
    assert_null(hy_json_get_str(j, "next"));
    assert_null(hy_json_get(j, "missing"));
    const struct hy_json *items = hy_json_get(j, "items");
    assert_int_equal(items->kind, HY_JSON_ARRAY);
    assert_string_equal(hy_json_get_str(items->items[0], "name"), "a\xc3\xa9");
    struct hy_buf b = {0};
    assert_int_equal(hy_json_write(j, &b), 0);
    assert_string_equal(b.data, "{\"total\":2,\"items\":[{\"name\":\"a\xc3\xa9\",\"n\":-1.5e3,"
                                "\"ok\":true,\"s\":\"123\"}],\"next\":null,\"extra\":{\"x\":[]}}");
    hy_buf_fini(&b);
    hy_json_free(j);
    assert_int_equal(hy_json_parse("<html>", 6, &j, err, sizeof(err)), HY_EINVAL);
    assert_string_equal(err, "not JSON");
    assert_int_equal(hy_json_parse(" ", 1, &j, err, sizeof(err)), HY_EINVAL);
    assert_string_equal(err, "empty reply");
    assert_int_equal(hy_json_parse("{\"a\": [1, 2}", 12, &j, err, sizeof(err)), HY_EINVAL);
    assert_int_equal(hy_json_parse("{} {}", 5, &j, err, sizeof(err)), HY_EINVAL);
}

/* ===== whole commands ===== */

static char home[64];
static int64_t now;

struct result {
    int rc;
    char *out, *err;
    size_t outlen, errlen;
};

static void result_fini(struct result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void run_cli(struct result *r, const char *input, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    memset(r, 0, sizeof(*r));
    FILE *out = open_memstream(&r->out, &r->outlen);
    FILE *err = open_memstream(&r->err, &r->errlen);
    FILE *in = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    assert_non_null(in);
    fputs(input, in);
    rewind(in);
    struct hy_cli cli = {.in = in, .out = out, .err = err, .now = now};
    r->rc = hy_cli_run(&cli, argc, argv);
    fclose(out);
    fclose(err);
    fclose(in);
}

#define RUN_IN(r, input, ...)                                                                      \
    do {                                                                                           \
        char *argv_[] = {"hyphactl", __VA_ARGS__, NULL};                                           \
        run_cli((r), (input), argv_);                                                              \
    } while (0)
#define RUN(r, ...) RUN_IN(r, "", __VA_ARGS__)

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup_home(void **state)
{
    (void)state;
    snprintf(home, sizeof(home), "/tmp/hyphactl-test-XXXXXX");
    if (!mkdtemp(home))
        return -1;
    setenv("HOME", home, 1);
    unsetenv("HYPHA_CP");
    unsetenv("HYPHACTL_CONFIG");
    unsetenv("HYPHA_CA_CERT_FILE");
    unsetenv("HYPHA_AUTH_TOKEN");
    int32_t nanos;
    hy_timestamp_parse("2026-11-26T08:00:00Z", &now, &nanos);
    return 0;
}

static int teardown_home(void **state)
{
    (void)state;
    nftw(home, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    unsetenv("HYPHA_CP");
    return 0;
}

static void test_usage_errors(void **state)
{
    (void)state;
    static const struct {
        const char *argv[8];
        const char *err;
    } cases[] = {
        {{"get"},
         "Error: missing arguments: hyphactl get TYPE [NAME]\n"
         "Run 'hyphactl get --help' for usage.\n"},
        {{"get", "meshes", "a", "b"},
         "Error: unexpected argument \"b\"\nRun 'hyphactl get --help' for usage.\n"},
        {{"get", "meshes", "--bogus"},
         "Error: unknown flag --bogus\nRun 'hyphactl get --help' for usage.\n"},
        {{"get", "meshes", "-o", "xml"},
         "Error: unknown output format \"xml\" (table, yaml or json)\n"
         "Run 'hyphactl get --help' for usage.\n"},
        {{"get", "meshes", "--size", "0"},
         "Error: --size must be a number from 1 to 999999, got \"0\"\n"
         "Run 'hyphactl get --help' for usage.\n"},
        {{"get", "meshes", "--label", "team"},
         "Error: --label takes KEY=VALUE, got \"team\"\nRun 'hyphactl get --help' for usage.\n"},
        {{"get", "mesh", "default", "--size", "3"},
         "Error: --size, --offset and --label apply to lists, not to one Mesh\n"
         "Run 'hyphactl get --help' for usage.\n"},
        {{"delete", "mtp"},
         "Error: missing arguments: hyphactl delete TYPE NAME\n"
         "Run 'hyphactl delete --help' for usage.\n"},
        {{"apply"},
         "Error: nothing to apply: give -f FILE (or -f - for standard input)\n"
         "Run 'hyphactl apply --help' for usage.\n"},
        {{"apply", "-f", "-", "-f", "-"},
         "Error: -f - (standard input) can be given once\n"
         "Run 'hyphactl apply --help' for usage.\n"},
        {{"frobnicate"},
         "Error: unknown command \"frobnicate\" for \"hyphactl\"\n"
         "Run 'hyphactl --help' for usage.\n"},
        {{"config", "control-planes", "jump"},
         "Error: unknown command \"jump\" for \"hyphactl config control-planes\"\n"
         "Run 'hyphactl --help' for usage.\n"},
        {{"completion", "zsh"},
         "Error: unsupported shell \"zsh\" (only bash)\n"
         "Run 'hyphactl completion --help' for usage.\n"},
        {{"generate", "zone-token"},
         "Error: --zone is required\nRun 'hyphactl generate zone-token --help' for usage.\n"},
        {{"generate", "zone-token", "--zone", "east", "--valid-for", "soon"},
         "Error: --valid-for \"soon\" is not a duration like 24h, 30d or 1y\n"
         "Run 'hyphactl generate zone-token --help' for usage.\n"},
        {{"config", "control-planes", "add", "--name", "x"},
         "Error: --name and --address are required\n"
         "Run 'hyphactl config control-planes add --help' for usage.\n"},
        {{"config", "control-planes", "add", "--name", "x", "--address", "localhost:5681"},
         "Error: --address: invalid URL \"localhost:5681\": expected http://HOST[:PORT] or "
         "https://...\n"
         "Run 'hyphactl config control-planes add --help' for usage.\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[10] = {"hyphactl"};
        for (size_t k = 0; k < 8 && cases[i].argv[k]; k++)
            argv[k + 1] = (char *)cases[i].argv[k];
        struct result r;
        run_cli(&r, "", argv);
        assert_int_equal(r.rc, 2);
        assert_string_equal(r.err, cases[i].err);
        assert_string_equal(r.out, "");
        result_fini(&r);
    }
    struct result r;
    RUN(&r, "--cp", "http://x:1", "frob");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "Error: unknown command \"frob\" for \"hyphactl\"\n"
                               "Run 'hyphactl --help' for usage.\n");
    result_fini(&r);
    RUN(&r, "get", "widgets");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err,
                           "Error: unknown resource type \"widgets\" (one of: meshes, "
                           "zones, zoneinsights, zoneingresses, zoneingressinsights, dataplanes,"));
    result_fini(&r);
    /* a group alone lists its commands, as an error; with --help, as help */
    RUN(&r, "config");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "  config control-planes add "));
    assert_null(strstr(r.err, "apply"));
    result_fini(&r);
    RUN(&r, "config", "--help");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Usage:\n  hyphactl config COMMAND [flags]\n"));
    result_fini(&r);
    RUN(&r, "--cp", "http://x:1", "get", "-h");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "  -m, --mesh MESH "));
    assert_non_null(strstr(r.out, "      --cp URL|NAME "));
    result_fini(&r);
}

static void test_apply_local_validation(void **state)
{
    (void)state;
    /* a closed port: validation must fail before anything is sent */
    char cp[64];
    snprintf(cp, sizeof(cp), "http://127.0.0.1:%u", closed_port());
    struct result r;
    RUN(&r, "--cp", cp, "apply", "-f", DATA "invalid-names.yaml", "-f", DATA "invalid.yaml");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err,
                        "Error: " DATA "invalid-names.yaml:2:7: name: invalid name "
                        "\"Default_Mesh\" (expected lowercase letters, digits, '-' and '.', "
                        "starting and ending with a letter or digit, at most 253 characters)\n"
                        "Error: " DATA "invalid-names.yaml:11:18: spec.to[0].targetRef.name: "
                        "required when kind is MeshService\n"
                        "Error: " DATA "invalid.yaml:11:25: spec.from[0].default.action: "
                        "unknown value \"Permit\" (expected Allow, Deny, AllowWithShadowDeny)\n");
    assert_string_equal(r.out, "");
    result_fini(&r);
    RUN_IN(&r, "type: Mesh\nname: m\nmtls: {enabledBackend: [x]}\n", "--cp", cp, "apply", "-f",
           "-");
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "Error: <stdin>:3:"));
    result_fini(&r);
    RUN_IN(&r, "# nothing\n", "--cp", cp, "apply", "-f", "-");
    assert_string_equal(r.err, "Error: <stdin>: no resources in it\n");
    result_fini(&r);
    RUN(&r, "--cp", cp, "apply", "-f", DATA "no-such-file.yaml");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: cannot open " DATA
                               "no-such-file.yaml: No such file or directory\n");
    result_fini(&r);
    /* a valid file gets as far as the network */
    RUN(&r, "--cp", cp, "apply", "-f", DATA "apply-ok.yaml");
    assert_int_equal(r.rc, 1);
    char want[256];
    snprintf(want, sizeof(want),
             "Error: cannot connect to %s: connection refused; is hypha-global running?\n", cp);
    assert_string_equal(r.err, want);
    result_fini(&r);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_config_file(void **state)
{
    (void)state;
    struct result r;
    RUN(&r, "config", "control-planes", "list");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "ACTIVE   NAME    ADDRESS\n"
                               "*        local   http://127.0.0.1:5681\n");
    result_fini(&r);
    char path[128], dir[128];
    snprintf(dir, sizeof(dir), "%s/.hypha", home);
    snprintf(path, sizeof(path), "%s/.hypha/config.yaml", home);
    struct stat st;
    assert_int_equal(stat(path, &st), -1); /* listing writes nothing */

    RUN(&r, "config", "control-planes", "add", "--name", "prod", "--address",
        "https://global.example:5682", "--ca-cert-file", DATA "ca.pem", "--auth-token", "s3cret",
        "--skip-verify");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "added control plane \"prod\" at https://global.example:5682\n"
                               "switched the active control plane to \"prod\"\n");
    result_fini(&r);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *abs_ca = realpath(DATA "ca.pem", NULL);
    char want[1024];
    snprintf(want, sizeof(want),
             "# hyphactl configuration: change it with 'hyphactl config control-planes "
             "add|switch|remove'\n"
             "currentControlPlane: prod\n"
             "controlPlanes:\n"
             "- name: local\n"
             "  address: http://127.0.0.1:5681\n"
             "- name: prod\n"
             "  address: https://global.example:5682\n"
             "  caCertFile: %s\n"
             "  authToken: s3cret\n",
             abs_ca);
    free(abs_ca);
    assert_string_equal(read_text(path), want);

    RUN(&r, "config", "control-planes", "add", "--name", "prod", "--address", "http://x:1",
        "--skip-verify");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: a control plane called \"prod\" exists already; pass "
                               "--overwrite to replace it\n");
    result_fini(&r);
    RUN(&r, "config", "control-planes", "switch", "--name", "staging");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: no control plane is called \"staging\"; see 'hyphactl "
                               "config control-planes list'\n");
    result_fini(&r);
    RUN(&r, "config", "control-planes", "switch", "--name", "local");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "switched the active control plane to \"local\"\n");
    result_fini(&r);
    RUN(&r, "config", "control-planes", "list");
    assert_string_equal(r.out, "ACTIVE   NAME    ADDRESS\n"
                               "*        local   http://127.0.0.1:5681\n"
                               "         prod    https://global.example:5682\n");
    result_fini(&r);
    /* adding verifies the address unless told not to */
    char cp[64];
    snprintf(cp, sizeof(cp), "http://127.0.0.1:%u", closed_port());
    RUN(&r, "config", "control-planes", "add", "--name", "dev", "--address", cp);
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof(want),
             "Error: cannot connect to %s: connection refused; is hypha-global running?\n"
             "(pass --skip-verify to save it anyway)\n",
             cp);
    assert_string_equal(r.err, want);
    result_fini(&r);
    RUN(&r, "config", "control-planes", "add", "--name", "prod", "--address", cp, "--overwrite",
        "--skip-verify");
    assert_int_equal(r.rc, 0);
    result_fini(&r);
    RUN(&r, "config", "control-planes", "remove", "--name", "prod");
    assert_int_equal(r.rc, 0);
    result_fini(&r);
    RUN(&r, "config", "control-planes", "list");
    assert_string_equal(r.out, "ACTIVE   NAME    ADDRESS\n"
                               "*        local   http://127.0.0.1:5681\n");
    result_fini(&r);

    /* broken files say where */
    RUN(&r, "--config", DATA "broken-config.yaml", "config", "control-planes", "list");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: " DATA "broken-config.yaml:4:5: controlPlanes[0].adress: "
                               "unknown field \"adress\" (expected one of: name, address, "
                               "caCertFile, authToken)\n");
    result_fini(&r);
    RUN(&r, "--config", DATA "bad-address-config.yaml", "get", "meshes");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err,
                        "Error: " DATA "bad-address-config.yaml: controlPlanes[0].address: "
                        "invalid URL \"ftp://global.example\": expected http://HOST[:PORT] or "
                        "https://...\n"
                        "Error: " DATA "bad-address-config.yaml: controlPlanes[1].name: \"prod\" "
                        "is used twice\n"
                        "Error: " DATA "bad-address-config.yaml: currentControlPlane: no control "
                        "plane is called \"nowhere\"\n");
    result_fini(&r);
}

/* The control plane's JSON for a few resources. */
#define MESHES_PAGE1                                                                               \
    "{\"total\":3,\"items\":[{\"type\":\"Mesh\",\"name\":\"default\",\"creationTime\":"            \
    "\"2026-11-26T06:00:00Z\",\"mtls\":{\"enabledBackend\":\"ca-1\",\"backends\":[{\"name\":"      \
    "\"ca-1\",\"type\":\"builtin\"}]}},{\"type\":\"Mesh\",\"name\":\"demo\",\"creationTime\":"     \
    "\"2026-11-20T08:00:00Z\"}],\"next\":\"/meshes?offset=2\"}"
#define MESHES_PAGE2                                                                               \
    "{\"total\":3,\"items\":[{\"type\":\"Mesh\",\"name\":\"prod\",\"labels\":{\"team\":"           \
    "\"core\"},\"creationTime\":\"2026-11-26T07:59:30Z\"}],\"next\":null}"
#define DATAPLANES                                                                                 \
    "{\"total\":2,\"items\":[{\"type\":\"Dataplane\",\"mesh\":\"default\",\"name\":\"web-1\","     \
    "\"labels\":{\"hypha.io/origin\":\"zone\",\"hypha.io/zone\":\"east\"},\"creationTime\":"       \
    "\"2026-11-26T07:55:00Z\",\"networking\":{\"address\":\"10.0.0.1\",\"inbound\":[{\"port\":"    \
    "11011,\"servicePort\":8080,\"tags\":{\"kuma.io/service\":\"web\"}},{\"port\":11012,"          \
    "\"tags\":{\"kuma.io/service\":\"web\"}},{\"port\":11013,\"tags\":{\"kuma.io/service\":"       \
    "\"web-admin\"}}]}},{\"type\":\"Dataplane\",\"mesh\":\"other\",\"name\":\"backend-1\","        \
    "\"creationTime\":\"2026-11-25T08:00:00Z\",\"networking\":{\"address\":\"fd00::1\","           \
    "\"inbound\":[{\"port\":1,\"tags\":{\"kuma.io/service\":\"backend\"}}]}}],"                    \
    "\"next\":\"/dataplanes?size=2&offset=b2Zm%3D\"}"
#define MTP                                                                                        \
    "{\"type\":\"MeshTrafficPermission\",\"mesh\":\"default\",\"name\":\"allow-web\","             \
    "\"creationTime\":\"2026-11-26T07:58:00Z\",\"spec\":{\"targetRef\":{\"kind\":"                 \
    "\"MeshService\",\"name\":\"backend\"},\"from\":[{\"targetRef\":{\"kind\":\"MeshService\","    \
    "\"name\":\"web\"},\"default\":{\"action\":\"Allow\"}},{\"targetRef\":{\"kind\":"              \
    "\"MeshSubset\",\"tags\":{\"kuma.io/zone\":\"west\"}},\"default\":{\"action\":\"Deny\"}}]}}"
#define ZONES                                                                                      \
    "{\"total\":3,\"items\":[{\"type\":\"Zone\",\"name\":\"east\",\"enabled\":true},"              \
    "{\"type\":\"Zone\",\"name\":\"west\",\"enabled\":false},{\"type\":\"Zone\",\"name\":"         \
    "\"north\"}],\"next\":null}"
#define ZONE_INSIGHTS                                                                              \
    "{\"total\":3,\"items\":[{\"type\":\"ZoneInsight\",\"name\":\"east\",\"subscriptions\":["      \
    "{\"id\":\"1\",\"connectTime\":\"2026-11-26T06:00:00Z\",\"disconnectTime\":"                   \
    "\"2026-11-26T06:30:00Z\",\"version\":\"0.0.9\"},{\"id\":\"2\",\"connectTime\":"               \
    "\"2026-11-26T07:00:00Z\",\"version\":\"0.1.0\",\"lastAckedRevision\":42,\"stat\":{"           \
    "\"resourcesSent\":12,\"resourcesReceived\":3}}]},{\"type\":\"ZoneInsight\",\"name\":"         \
    "\"west\",\"subscriptions\":[{\"id\":\"3\",\"connectTime\":\"2026-11-26T05:00:00Z\","          \
    "\"disconnectTime\":\"2026-11-26T07:30:00Z\",\"version\":\"0.1.0\",\"lastAckedRevision\":40,"  \
    "\"lastError\":\"nack: spec.from[0]\\nbad\",\"stat\":{\"resourcesSent\":9,"                    \
    "\"resourcesReceived\":1}}]},{\"type\":\"ZoneInsight\",\"name\":\"south\"}],\"next\":null}"

static const struct route api_routes[] = {
    {"GET /", 200,
     "{\"product\":\"Hypha\",\"version\":\"0.1.0\",\"mode\":\"global\","
     "\"instanceId\":\"i-1\"}",
     NULL, NULL, 0},
    {"GET /meshes", 200, MESHES_PAGE1, NULL, NULL, 0},
    {"GET /meshes?offset=2", 200, MESHES_PAGE2, NULL, NULL, 0},
    {"GET /dataplanes?size=2&filter[labels.hypha.io/zone]=east", 200, DATAPLANES, NULL, NULL, 0},
    {"GET /meshes/default/meshtrafficpermissions/allow-web", 200, MTP, "ETag: \"7\"\r\n", NULL, 0},
    {"GET /meshes/default/meshtrafficpermissions/nope", 404,
     "{\"title\":\"Not found\",\"details\":\"MeshTrafficPermission default/nope does not "
     "exist\"}",
     NULL, NULL, 0},
    {"DELETE /meshes/prod/meshtrafficpermissions/allow-web", 200, "", NULL, NULL, 0},
    {"POST /_apply", 200,
     "{\"results\":[{\"type\":\"Mesh\",\"mesh\":\"\",\"name\":\"default\",\"result\":"
     "\"unchanged\"},{\"type\":\"MeshTrafficPermission\",\"mesh\":\"default\",\"name\":"
     "\"allow-web-to-backend\",\"result\":\"created\"}]}",
     NULL, NULL, 0},
    {"POST /_apply?dryRun=true", 409,
     "{\"title\":\"Conflict\",\"details\":\"resources changed concurrently\",\"causes\":[{"
     "\"field\":\"apply-ok.yaml:4:1: name\",\"message\":\"version 3 is not the current one\"},"
     "{\"field\":\"\",\"message\":\"retry the apply\"}]}",
     NULL, NULL, 0},
    {"POST /tokens/zone", 200, "eyJhbGciOiJFZERTQSJ9.e30.c2ln\n", "Content-Type: text/plain\r\n",
     NULL, 0},
    {"GET /zones", 200, ZONES, NULL, NULL, 0},
    {"GET /zoneinsights", 200, ZONE_INSIGHTS, NULL, NULL, 0},
    {"GET /meshtimeouts", 401, "{\"title\":\"Unauthorized\",\"details\":\"a token is required\"}",
     NULL, NULL, 0},
    {"GET /meshretries", 502, "<html>bad gateway</html>", NULL, NULL, 0},
};

static struct fake *api_start(void)
{
    struct fake *f =
        fake_start(api_routes, sizeof(api_routes) / sizeof(api_routes[0]), false, NULL);
    setenv("HYPHA_CP", f->url, 1);
    return f;
}

static void test_get(void **state)
{
    (void)state;
    struct fake *f = api_start();
    struct result r;
    RUN(&r, "get", "meshes");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "NAME      MTLS   AGE\n"
                               "default   ca-1   120m\n"
                               "demo      off    6d\n"
                               "prod      off    30s\n");
    result_fini(&r);
    RUN(&r, "get", "meshes", "-o", "yaml");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "type: Mesh\n"
                               "name: default\n"
                               "creationTime: 2026-11-26T06:00:00Z\n"
                               "mtls:\n"
                               "  enabledBackend: ca-1\n"
                               "  backends:\n"
                               "  - name: ca-1\n"
                               "    type: builtin\n"
                               "---\n"
                               "type: Mesh\n"
                               "name: demo\n"
                               "creationTime: 2026-11-20T08:00:00Z\n"
                               "---\n"
                               "type: Mesh\n"
                               "name: prod\n"
                               "labels:\n"
                               "  team: core\n"
                               "creationTime: 2026-11-26T07:59:30Z\n");
    result_fini(&r);
    /* two pages merged into one JSON list */
    RUN(&r, "get", "meshes", "-o", "json");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "{\"total\":3,\"items\":[{\"type\":\"Mesh\",\"name\":"
                                  "\"default\","));
    assert_non_null(strstr(r.out, "\"name\":\"prod\""));
    assert_non_null(strstr(r.out, "],\"next\":null}\n"));
    result_fini(&r);

    RUN(&r, "get", "dp", "--size", "2", "--label", "kuma.io/zone=east");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "MESH      NAME        ZONE   ADDRESS    SERVICES        AGE\n"
                               "default   web-1       east   10.0.0.1   web,web-admin   5m\n"
                               "other     backend-1   -      fd00::1    backend         24h\n");
    assert_string_equal(r.err, "There are more dataplanes: rerun with --offset=b2Zm= to see the "
                               "next page.\n");
    result_fini(&r);

    RUN(&r, "get", "mtp", "allow-web");
    assert_int_equal(r.rc, 0);
    assert_string_equal(
        r.out, "MESH      NAME        TARGETREF             FROM                                  "
               "           AGE\n"
               "default   allow-web   MeshService:backend   MeshService:web,MeshSubset[hypha.io/"
               "zone=west]   2m\n");
    result_fini(&r);
    RUN(&r, "get", "MeshTrafficPermission", "allow-web", "-o", "json");
    assert_string_equal(r.out, MTP "\n");
    result_fini(&r);
    RUN(&r, "get", "meshtrafficpermissions", "nope");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err,
                        "Error: Not found: MeshTrafficPermission default/nope does not exist\n");
    result_fini(&r);
    RUN(&r, "get", "meshtimeouts");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: Unauthorized: a token is required\n"
                               "  (send an admin token with --auth-token or HYPHA_AUTH_TOKEN, or "
                               "store one with 'hyphactl config control-planes add "
                               "--auth-token')\n");
    result_fini(&r);
    RUN(&r, "get", "meshretries");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: HTTP 502 Canned: <html>bad gateway</html>\n");
    result_fini(&r);
    /* label keys are sent as the codec reads them: kuma.io/ becomes hypha.io/ */
    assert_non_null(strstr(fake_log(f), "GET /dataplanes?size=2&filter[labels.hypha.io/zone]=east "
                                        "HTTP/1.1\n"));
    fake_stop(f);
}

static void test_apply_delete_token_version(void **state)
{
    (void)state;
    struct fake *f = api_start();
    struct result r;
    RUN(&r, "apply", "-f", DATA "apply-ok.yaml", "--auth-token", "t0k");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "mesh/default unchanged\n"
                               "meshtrafficpermission/allow-web-to-backend created\n");
    result_fini(&r);
    const char *log = fake_log(f);
    assert_non_null(strstr(log, "POST /_apply HTTP/1.1\n"));
    assert_non_null(strstr(log, "Authorization: Bearer t0k\n"));
    assert_non_null(strstr(log, "Content-Type: application/yaml\n"));
    assert_non_null(strstr(log, "Hypha-Source: " DATA "apply-ok.yaml\n"));
    assert_non_null(strstr(log, "body: type: Mesh\nname: default\n---\n"));

    RUN(&r, "apply", "--dry-run", "-f", DATA "apply-ok.yaml");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: Conflict: resources changed concurrently\n"
                               "  apply-ok.yaml:4:1: name: version 3 is not the current one\n"
                               "  retry the apply\n");
    result_fini(&r);

    RUN(&r, "delete", "mtp", "allow-web", "-m", "prod");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "meshtrafficpermission/allow-web deleted\n");
    result_fini(&r);

    RUN(&r, "generate", "zone-token", "--zone", "east", "--valid-for", "30d");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "eyJhbGciOiJFZERTQSJ9.e30.c2ln\n");
    result_fini(&r);
    assert_non_null(strstr(fake_log(f), "body: {\"zone\":\"east\",\"validFor\":\"30d\"}\n"));

    /* the control plane and its token from the configuration file */
    RUN(&r, "config", "control-planes", "add", "--name", "fake", "--address", f->url,
        "--auth-token", "from-config");
    assert_int_equal(r.rc, 0);
    result_fini(&r);
    unsetenv("HYPHA_CP");
    RUN(&r, "get", "mtp", "allow-web", "-o", "json");
    assert_int_equal(r.rc, 0);
    result_fini(&r);
    assert_non_null(strstr(fake_log(f), "GET /meshes/default/meshtrafficpermissions/allow-web "
                                        "HTTP/1.1\nHost: 127.0.0.1"));
    assert_non_null(strstr(fake_log(f), "Authorization: Bearer from-config\n"));
    RUN(&r, "config", "control-planes", "switch", "--name", "local");
    result_fini(&r);
    RUN(&r, "--cp", "fake", "--auth-token", "flag", "get", "mtp", "allow-web", "-o", "json");
    assert_int_equal(r.rc, 0);
    result_fini(&r);
    assert_non_null(strstr(fake_log(f), "Authorization: Bearer flag\n"));
    RUN(&r, "--cp", "elsewhere", "get", "meshes");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "Error: no control plane is called \"elsewhere\": --cp takes a URL "
                               "or a name from 'hyphactl config control-planes list'\n"
                               "Run 'hyphactl get --help' for usage.\n");
    result_fini(&r);
    setenv("HYPHA_CP", f->url, 1);

    RUN(&r, "version");
    assert_int_equal(r.rc, 0);
    char want[256];
    snprintf(want, sizeof(want),
             "Client: hyphactl %s\nServer: Hypha 0.1.0 (global, instance i-1) at %s\n",
             HYPHA_VERSION, f->url);
    assert_string_equal(r.out, want);
    result_fini(&r);
    fake_stop(f);

    /* the server is gone: the client's version still prints */
    RUN(&r, "version");
    assert_int_equal(r.rc, 1);
    snprintf(want, sizeof(want), "Client: hyphactl %s\n", HYPHA_VERSION);
    assert_string_equal(r.out, want);
    assert_non_null(strstr(r.err, "connection refused; is hypha-global running?\n"));
    result_fini(&r);
}

static void test_inspect_zones(void **state)
{
    (void)state;
    struct fake *f = api_start();
    struct result r;
    RUN(&r, "inspect", "zones");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(
        r.out,
        "NAME    STATUS    VERSION   CONNECTED   LAST-ACKED-REVISION   SENT   RECEIVED   "
        "LAST-ERROR\n"
        "east    Online    0.1.0     60m         42                    12     3          -\n"
        "west    Offline   0.1.0     -           40                    9      1          "
        "nack: spec.from[0] bad\n"
        "north   Offline   -         -           -                     -      -          -\n"
        "south   Offline   -         -           -                     -      -          -\n");
    result_fini(&r);
    RUN(&r, "get", "zones");
    assert_string_equal(r.out, "NAME    ENABLED   AGE\n"
                               "east    true      -\n"
                               "west    false     -\n"
                               "north   true      -\n");
    result_fini(&r);
    fake_stop(f);
}

/* ===== inspect dataplanes, inspect dataplane, explain ===== */

#define DP_LIST                                                                                    \
    "{\"total\":2,\"items\":[{\"type\":\"Dataplane\",\"mesh\":\"default\",\"name\":\"backend-1\"," \
    "\"networking\":{\"address\":\"10.0.0.2\",\"inbound\":[{\"port\":8080,\"tags\":{"              \
    "\"kuma.io/service\":\"backend\",\"version\":\"v1\"}},{\"port\":8081,\"tags\":{"               \
    "\"kuma.io/service\":\"backend\",\"version\":\"v1\"}}]}},{\"type\":\"Dataplane\",\"mesh\":"    \
    "\"default\",\"name\":\"web-1\",\"labels\":{\"hypha.io/"                                       \
    "zone\":\"east\"},\"networking\":{\"address\":\"10.0.0.1\",\"inbound\":[{"                     \
    "\"port\":9090,\"tags\":{\"kuma.io/service\":\"web\",\"env\":\"dev\"}}]}}],\"next\":null}"
#define DP_INSIGHTS                                                                                \
    "{\"total\":2,\"items\":[{\"type\":\"DataplaneInsight\",\"mesh\":\"default\",\"name\":"        \
    "\"web-1\",\"subscriptions\":[{\"connectTime\":\"2026-11-26T06:00:00Z\",\"disconnectTime\":"   \
    "\"2026-11-26T06:10:00Z\",\"responsesSent\":4,\"responsesRejected\":1},{\"connectTime\":"      \
    "\"2026-11-26T07:30:00Z\",\"responsesSent\":3,\"responsesRejected\":0,\"version\":{"           \
    "\"kumaDp\":{\"version\":\"0.1.0\"}}}],\"mTLS\":{"                                             \
    "\"certificateExpirationTime\":\"2026-11-27T07:30:00Z\"}},{\"type\":\"DataplaneInsight\","     \
    "\"mesh\":\"other\",\"name\":\"web-1\",\"subscriptions\":[]}],\"next\":null}"
#define RULES                                                                                      \
    "{\"resource\":{\"type\":\"Dataplane\",\"mesh\":\"default\",\"name\":\"backend-1\","           \
    "\"zone\":\"east\"},\"rules\":[{\"type\":\"MeshTrafficPermission\",\"policies\":[{\"name\":"   \
    "\"allow-all\",\"origin\":\"global\",\"targetRef\":{\"kind\":\"Mesh\"}},{\"name\":"            \
    "\"deny-dev\",\"origin\":\"global\",\"targetRef\":{\"kind\":\"MeshService\",\"name\":"         \
    "\"backend\"}},{\"name\":\"by-label\",\"origin\":\"east\",\"targetRef\":{\"kind\":"            \
    "\"Dataplane\",\"labels\":{\"app\":\"backend\"},\"sectionName\":\"8081\"}}],\"fromRules\":[{"  \
    "\"inbound\":{\"port\":8080,\"tags\":{\"hypha.io/service\":\"backend\",\"hypha.io/zone\":"     \
    "\"east\"}},\"entries\":{\"permissions\":[{\"action\":\"Allow\",\"origin\":"                   \
    "\"MeshTrafficPermission/allow-all from[0]\"},{\"tags\":{\"env\":\"dev\"},\"action\":"         \
    "\"Deny\",\"origin\":\"MeshTrafficPermission/deny-dev from[0]\"}]}},{\"inbound\":{\"port\":"   \
    "8081,\"tags\":{\"hypha.io/service\":\"backend\"}},\"entries\":{\"permissions\":[{"            \
    "\"action\":\"Allow\",\"origin\":\"MeshTrafficPermission/allow-all from[0]\"}],\"deny\":[{"    \
    "\"prefix\":true,\"value\":\"spiffe://default/w\",\"origin\":\"MeshTrafficPermission/"         \
    "by-label rules[0].deny[0]\"}]}}],\"warnings\":[]},{\"type\":\"MeshTimeout\",\"policies\":[{"  \
    "\"name\":\"t\",\"origin\":\"global\",\"targetRef\":{\"kind\":\"Mesh\"}}],\"toRules\":[{"      \
    "\"outbound\":{\"port\":7000,\"service\":\"db\"},\"conf\":{\"connectionTimeout\":\"3s\","      \
    "\"http\":{\"requestTimeout\":\"5s\",\"x\":[1,2]}},\"origin\":{\"connectionTimeout\":"         \
    "\"MeshTimeout/t to[0]\",\"http\":\"MeshTimeout/t to[1]\"}},{\"outbound\":{\"port\":7001,"     \
    "\"service\":\"cache\"},\"conf\":null,\"origin\":{}}],\"warnings\":[\"t: spec.to[0].default."  \
    "http.requestTimeout: accepted, not enforced yet\"]}]}"
#define DP_CONFIG                                                                                  \
    "{\"mesh\":\"default\",\"name\":\"backend-1\",\"zone\":\"east\",\"omitted\":[\"cert\","        \
    "\"chain\",\"trustBundle\",\"version\"],\"config\":{\"mesh\":\"default\",\"name\":"            \
    "\"backend-1\",\"inbounds\":[{\"port\":8080,\"service\":\"backend\",\"permissions\":[{"        \
    "\"action\":\"Allow\",\"origin\":\"MeshTrafficPermission/allow-all from[0]\"}]}],"             \
    "\"outbounds\":[{\"port\":7000,\"service\":\"db\",\"connectTimeout\":\"3s\","                  \
    "\"maxConnectAttempts\":3}]}}"
#define EXPLAIN                                                                                    \
    "{\"from\":\"web-1\",\"to\":\"backend-1\",\"fromKind\":\"dataplane\",\"toKind\":"              \
    "\"dataplane\",\"results\":[{\"caller\":\"web-1\",\"callee\":\"backend-1\",\"inbound\":8080,"  \
    "\"service\":\"backend\",\"decision\":\"Deny\",\"origin\":\"MeshTrafficPermission/deny-dev "   \
    "from[0]\",\"reason\":\"denied by MeshTrafficPermission/deny-dev from[0]: the last from "      \
    "entry the caller matches\",\"callerSpiffeID\":\"spiffe://default/web\",\"callerTags\":["      \
    "\"hypha.io/service=web\",\"env=dev\"],\"matched\":[{\"section\":\"from\",\"origin\":"         \
    "\"MeshTrafficPermission/allow-all from[0]\",\"action\":\"Allow\",\"tags\":{},\"decides\":"    \
    "false},{\"section\":\"from\",\"origin\":\"MeshTrafficPermission/deny-dev from[0]\","          \
    "\"action\":\"Deny\",\"tags\":{\"env\":\"dev\"},\"decides\":true}],\"checked\":2},{"           \
    "\"caller\":\"web-1\",\"callee\":\"backend-1\",\"inbound\":8081,\"service\":\"backend\","      \
    "\"decision\":\"Deny\",\"origin\":\"MeshTrafficPermission/by-label rules[0].deny[0]\","        \
    "\"reason\":\"denied by MeshTrafficPermission/by-label rules[0].deny[0]: a rules deny "        \
    "matcher\",\"callerSpiffeID\":\"spiffe://default/web\",\"callerTags\":[\"hypha.io/"            \
    "service=web\"],\"matched\":[{\"section\":\"rules\",\"origin\":\"MeshTrafficPermission/"       \
    "by-label rules[0].deny[0]\",\"action\":\"Deny\",\"spiffeID\":{\"type\":\"Prefix\","           \
    "\"value\":\"spiffe://default/w\"},\"decides\":true}],\"checked\":3}],\"truncated\":false}"
#define EXPLAIN_SHADOW                                                                             \
    "{\"from\":\"kuma.io/service=web,env=dev\",\"to\":\"backend-1:8080\",\"fromKind\":\"tags\","   \
    "\"toKind\":\"dataplane\",\"results\":[{\"caller\":\"(a caller with kuma.io/service=web,"      \
    "env=dev)\",\"callee\":\"backend-1\",\"inbound\":8080,\"service\":\"backend\",\"decision\":"   \
    "\"AllowWithShadowDeny\",\"origin\":\"MeshTrafficPermission/s from[0]\",\"reason\":\"allowed " \
    "(shadow deny: logged as denied) by MeshTrafficPermission/s from[0]: the last from entry the " \
    "caller matches\",\"callerSpiffeID\":\"\",\"callerTags\":[],\"matched\":[],\"checked\":0}],"   \
    "\"truncated\":false}"

static const struct route inspect_routes[] = {
    {"GET /meshes/default/dataplanes", 200, DP_LIST, NULL, NULL, 0},
    {"GET /meshes/default/dataplaneinsights", 200, DP_INSIGHTS, NULL, NULL, 0},
    {"GET /dataplanes", 200, DP_LIST, NULL, NULL, 0},
    {"GET /dataplaneinsights", 200, DP_INSIGHTS, NULL, NULL, 0},
    {"GET /meshes/default/dataplanes/backend-1/_rules", 200, RULES, NULL, NULL, 0},
    {"GET /meshes/default/dataplanes/backend-1/_config", 200, DP_CONFIG, NULL, NULL, 0},
    {"GET /meshes/default/dataplanes/backend-1/stats", 200,
     "# TYPE hypha_dp_connected gauge\nhypha_dp_connected 1\n",
     "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", NULL, 0},
    {"GET /meshes/default/dataplanes/gone-1/stats", 503,
     "{\"title\":\"Not connected\",\"details\":\"Dataplane gone-1 in mesh default is not "
     "connected to this zone control plane (zone east)\"}",
     NULL, NULL, 0},
    {"GET /meshes/default/dataplanes/nope/_rules", 404,
     "{\"title\":\"Not found\",\"details\":\"no Dataplane nope in mesh default\"}", NULL, NULL, 0},
    {"GET /meshes/prod/dataplanes/web-1/_config", 400,
     "{\"title\":\"Computed by the zone\",\"details\":\"the config of a Dataplane is computed by "
     "the zone control plane its sidecar connects to (zone east)\"}",
     NULL, NULL, 0},
    {"GET /meshes/default/_explain?from=web-1&to=backend-1", 200, EXPLAIN, NULL, NULL, 0},
    {"GET /meshes/default/_explain?from=kuma.io/service%3Dweb%2Cenv%3Ddev&to=backend-1:8080", 200,
     EXPLAIN_SHADOW, NULL, NULL, 0},
    {"GET /meshes/default/_explain?from=web-1&to=nope", 404,
     "{\"title\":\"Not found\",\"details\":\"no Dataplane nope in mesh default, and no Dataplane "
     "of the mesh serves a service of that name\"}",
     NULL, NULL, 0},
};

static struct fake *inspect_start(void)
{
    struct fake *f =
        fake_start(inspect_routes, sizeof(inspect_routes) / sizeof(inspect_routes[0]), false, NULL);
    setenv("HYPHA_CP", f->url, 1);
    return f;
}

static void test_json_yaml(void **state)
{
    (void)state;
    static const char text[] =
        "{\"s\":\"plain\",\"n\":3,\"f\":-1.5e3,\"b\":true,\"z\":null,\"q\":\"true\",\"e\":\"\","
        "\"num\":\"42\",\"dur\":\"3s\",\"o\":{},\"a\":[],\"l\":[{\"k\":\"v\"},\"x: y\",[1]],"
        "\"u\":\"h\\u00e9\"}";
    struct hy_json *j = NULL;
    char err[128];
    assert_int_equal(hy_json_parse(text, strlen(text), &j, err, sizeof(err)), 0);
    struct hy_buf b = {0};
    assert_int_equal(hy_json_write_yaml(j, &b), 0);
    /* "n" is a YAML 1.1 boolean: quoted even as a key */
    assert_string_equal(b.data, "s: plain\n"
                                "\"n\": 3\n"
                                "f: -1.5e3\n"
                                "b: true\n"
                                "z: null\n"
                                "q: \"true\"\n"
                                "e: \"\"\n"
                                "num: \"42\"\n"
                                "dur: 3s\n"
                                "o: {}\n"
                                "a: []\n"
                                "l:\n"
                                "- k: v\n"
                                "- 'x: y'\n"
                                "- - 1\n"
                                "u: hé\n");
    hy_buf_fini(&b);
    hy_json_free(j);
    /* a key that is not a scalar has no YAML block form here */
    assert_int_equal(hy_json_parse("{[1]: 2}", 8, &j, err, sizeof(err)), 0);
    assert_int_equal(hy_json_write_yaml(j, &b), HY_EINVAL);
    hy_buf_fini(&b);
    hy_json_free(j);
}

static void test_inspect_dataplanes(void **state)
{
    (void)state;
    struct fake *f = inspect_start();
    struct result r;
    RUN(&r, "inspect", "dataplanes", "--mesh", "default");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    /* ZONE from the label the zone CP gives (none on backend-1: applied by
     * hand), SERVICES once each, VERSION from the last subscription */
    assert_string_equal(
        r.out, "MESH      NAME        ZONE   SERVICES   TAGS                              "
               "    STATUS    LAST-CONNECTED   TOTAL-UPDATES   TOTAL-ERRORS   "
               "CERT-EXPIRATION       VERSION\n"
               "default   backend-1   -      backend    hypha.io/service=backend,version=v1"
               "   Offline   -                -               -              -          "
               "           -\n"
               "default   web-1       east   web        env=dev,hypha.io/service=web      "
               "    Online    30m              7               1              2026-11-27 "
               "07:30:00   0.1.0\n");
    result_fini(&r);
    /* every mesh: the insight of another mesh's web-1 is not this one's */
    RUN(&r, "inspect", "dataplanes", "-o", "json");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "{\"total\":2,\"items\":[{\"dataplane\":{\"type\":\"Dataplane\","
                                  "\"mesh\":\"default\",\"name\":\"backend-1\""));
    assert_non_null(strstr(r.out, "}}]}},\"dataplaneInsight\":null},{\"dataplane\":"));
    assert_non_null(strstr(r.out, "\"dataplaneInsight\":{\"type\":\"DataplaneInsight\",\"mesh\":"
                                  "\"default\",\"name\":\"web-1\""));
    /* the table's zone and version, in Kuma's shape */
    assert_non_null(strstr(r.out, "\"labels\":{\"hypha.io/zone\":\"east\"}"));
    assert_non_null(strstr(r.out, "\"version\":{\"kumaDp\":{\"version\":\"0.1.0\"}}"));
    result_fini(&r);
    RUN(&r, "inspect", "dataplanes", "-m", "default", "-o", "yaml");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "total: 2\nitems:\n- dataplane:\n    type: Dataplane\n"));
    assert_non_null(strstr(r.out, "  dataplaneInsight: null\n"));
    result_fini(&r);
    RUN(&r, "inspect", "dataplanes", "-o", "wide");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "Error: unknown output format \"wide\" (table, yaml or json)\n"
                               "Run 'hyphactl inspect dataplanes --help' for usage.\n");
    result_fini(&r);
    assert_non_null(strstr(fake_log(f), "GET /dataplanes HTTP/1.1\nHost: "));
    assert_non_null(strstr(fake_log(f), "GET /meshes/default/dataplaneinsights HTTP/1.1\n"));
    fake_stop(f);
}

static void test_inspect_dataplane(void **state)
{
    (void)state;
    struct fake *f = inspect_start();
    struct result r;
    RUN(&r, "inspect", "dataplane", "backend-1");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(
        r.out,
        "Dataplane backend-1 in mesh default (zone east)\n"
        "\n"
        "MeshTrafficPermission\n"
        "  POLICY      TARGETREF                                 ORIGIN\n"
        "  allow-all   Mesh                                      global\n"
        "  deny-dev    MeshService:backend                       global\n"
        "  by-label    Dataplane[app=backend] sectionName=8081   east\n"
        "  inbound 8080 (hypha.io/service=backend, hypha.io/zone=east):\n"
        "    the from entries in merge order: the last one a caller matches decides; a rules deny "
        "matcher always denies\n"
        "    #   CALLERS      ACTION   ORIGIN\n"
        "    1   any caller   Allow    MeshTrafficPermission/allow-all from[0]\n"
        "    2   env=dev      Deny     MeshTrafficPermission/deny-dev from[0]\n"
        "  inbound 8081 (hypha.io/service=backend):\n"
        "    the from entries in merge order: the last one a caller matches decides; a rules deny "
        "matcher always denies\n"
        "    #       CALLERS                              ACTION   ORIGIN\n"
        "    1       any caller                           Allow    MeshTrafficPermission/allow-all "
        "from[0]\n"
        "    rules   spiffeID Prefix spiffe://default/w   Deny     MeshTrafficPermission/by-label "
        "rules[0].deny[0]\n"
        "\n"
        "MeshTimeout\n"
        "  POLICY   TARGETREF   ORIGIN\n"
        "  t        Mesh        global\n"
        "  outbound 7000 to db:\n"
        "    FIELD                 VALUE   ORIGIN\n"
        "    connectionTimeout     3s      MeshTimeout/t to[0]\n"
        "    http.requestTimeout   5s      MeshTimeout/t to[1]\n"
        "    http.x                [1,2]   MeshTimeout/t to[1]\n"
        "  outbound 7001 to cache: no entry matches\n"
        "  Warnings:\n"
        "    t: spec.to[0].default.http.requestTimeout: accepted, not enforced yet\n");
    result_fini(&r);

    RUN(&r, "inspect", "dataplane", "backend-1", "--type=policies");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "TYPE                    NAME        TARGETREF                      "
                               "           ORIGIN   APPLIES-TO\n"
                               "MeshTrafficPermission   allow-all   Mesh                           "
                               "           global   inbound 8080, inbound 8081\n"
                               "MeshTrafficPermission   deny-dev    MeshService:backend            "
                               "           global   inbound 8080\n"
                               "MeshTrafficPermission   by-label    Dataplane[app=backend] "
                               "sectionName=8081   east     inbound 8081\n"
                               "MeshTimeout             t           Mesh                           "
                               "           global   outbound 7000 (db)\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "backend-1", "--type", "policies", "-o", "json");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "{\"items\":[{\"type\":\"MeshTrafficPermission\",\"name\":"
                                  "\"allow-all\",\"origin\":\"global\",\"targetRef\":{\"kind\":"
                                  "\"Mesh\"},\"appliesTo\":[\"inbound 8080\",\"inbound 8081\"]}"));
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "backend-1", "-o", "json");
    assert_string_equal(r.out, RULES "\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "backend-1", "-o", "yaml");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "resource:\n  type: Dataplane\n  mesh: default\n"));
    assert_non_null(strstr(r.out, "  - outbound:\n      port: 7001\n      service: cache\n"
                                  "    conf: null\n    origin: {}\n"));
    result_fini(&r);

    RUN(&r, "inspect", "dataplane", "backend-1", "--type=config");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "# Dataplane backend-1 in mesh default: the config zone east "
                               "computes for it\n"
                               "# not connected; left out (the zone issues them per "
                               "connection): cert, chain, "
                               "trustBundle, version\n"
                               "mesh: default\n"
                               "name: backend-1\n"
                               "inbounds:\n"
                               "- port: 8080\n"
                               "  service: backend\n"
                               "  permissions:\n"
                               "  - action: Allow\n"
                               "    origin: MeshTrafficPermission/allow-all from[0]\n"
                               "outbounds:\n"
                               "- port: 7000\n"
                               "  service: db\n"
                               "  connectTimeout: 3s\n"
                               "  maxConnectAttempts: 3\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "backend-1", "--type=config", "-o", "json");
    assert_string_equal(r.out, DP_CONFIG "\n");
    result_fini(&r);
    /* stats: the sidecar's Prometheus text as the zone serves it, whatever -o */
    RUN(&r, "inspect", "dataplane", "backend-1", "--type=stats");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "# TYPE hypha_dp_connected gauge\nhypha_dp_connected 1\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "backend-1", "--type=stats", "-o", "yaml");
    assert_string_equal(r.out, "# TYPE hypha_dp_connected gauge\nhypha_dp_connected 1\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "gone-1", "--type=stats");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: Not connected: Dataplane gone-1 in mesh default is not "
                               "connected to this zone control plane (zone east)\n");
    result_fini(&r);

    /* errors: the control plane's, naming the dataplane; usage errors exit 2 */
    RUN(&r, "inspect", "dataplane", "nope");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "Error: Not found: no Dataplane nope in mesh default\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "web-1", "-m", "prod", "--type=config");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: Computed by the zone: the config of a Dataplane is "
                               "computed by the zone control plane its sidecar connects to (zone "
                               "east)\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "backend-1", "--type=envoy");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err,
                        "Error: unknown --type \"envoy\" (rules, policies, config or stats)\n"
                        "Run 'hyphactl inspect dataplane --help' for usage.\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "Error: missing arguments: hyphactl inspect dataplane NAME\n"
                               "Run 'hyphactl inspect dataplane --help' for usage.\n");
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "a", "b");
    assert_int_equal(r.rc, 2);
    result_fini(&r);
    RUN(&r, "inspect", "dataplane", "--help");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Usage:\n  hyphactl inspect dataplane NAME [flags]\n"));
    assert_non_null(strstr(r.out, "--type TYPE"));
    result_fini(&r);
    fake_stop(f);
}

static void test_explain(void **state)
{
    (void)state;
    struct fake *f = inspect_start();
    struct result r;
    RUN(&r, "explain", "--from", "web-1", "--to", "backend-1");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(
        r.out, "web-1 -> backend-1 inbound 8080 (backend): denied\n"
               "  denied by MeshTrafficPermission/deny-dev from[0]: the last from entry the caller "
               "matches\n"
               "  caller: spiffe://default/web; tags hypha.io/service=web, env=dev\n"
               "  matched, in order (2 of 2 entries and rules matchers):\n"
               "    1. MeshTrafficPermission/allow-all from[0]: any caller -> Allow\n"
               "    2. MeshTrafficPermission/deny-dev from[0]: env=dev -> Deny (decides)\n"
               "\n"
               "web-1 -> backend-1 inbound 8081 (backend): denied\n"
               "  denied by MeshTrafficPermission/by-label rules[0].deny[0]: a rules deny matcher\n"
               "  caller: spiffe://default/web; tags hypha.io/service=web\n"
               "  matched, in order (1 of 3 entries and rules matchers):\n"
               "    1. MeshTrafficPermission/by-label rules[0].deny[0]: spiffeID Prefix "
               "spiffe://default/w -> Deny (decides)\n");
    result_fini(&r);
    /* tags are sent escaped, and a shadow deny is named as such */
    RUN(&r, "explain", "--from", "kuma.io/service=web,env=dev", "--to", "backend-1:8080");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out,
                        "(a caller with kuma.io/service=web,env=dev) -> backend-1 inbound 8080 "
                        "(backend): shadow-denied (let in, logged and counted as denied)\n"
                        "  allowed (shadow deny: logged as denied) by MeshTrafficPermission/s "
                        "from[0]: the last from entry the caller matches\n"
                        "  caller: no SPIFFE ID\n"
                        "  matched nothing (of 0 entries and rules matchers)\n");
    result_fini(&r);
    RUN(&r, "explain", "--from", "web-1", "--to", "backend-1", "-o", "json");
    assert_string_equal(r.out, EXPLAIN "\n");
    result_fini(&r);
    RUN(&r, "explain", "--from", "web-1", "--to", "backend-1", "-o", "yaml");
    assert_non_null(strstr(r.out, "from: web-1\nto: backend-1\n"));
    assert_non_null(strstr(r.out, "    decides: true\n"));
    result_fini(&r);
    RUN(&r, "explain", "--from", "web-1", "--to", "nope");
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "Error: Not found: no Dataplane nope in mesh default, and no "
                               "Dataplane of the mesh serves a service of that name\n");
    result_fini(&r);
    RUN(&r, "explain", "--to", "backend-1");
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.err, "Error: --from is required: --from DATAPLANE|SERVICE|KEY=VALUE,... "
                               "--to DATAPLANE[:INBOUND]|SERVICE\n"
                               "Run 'hyphactl explain --help' for usage.\n");
    result_fini(&r);
    RUN(&r, "explain", "--from", "web-1", "--to=");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "Error: --to is required"));
    result_fini(&r);
    RUN(&r, "explain", "-m", "default");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "Error: --from and --to are required"));
    result_fini(&r);
    RUN(&r, "explain", "--from", "a", "--to", "b", "-o", "xml");
    assert_int_equal(r.rc, 2);
    result_fini(&r);
    assert_non_null(strstr(fake_log(f), "GET /meshes/default/_explain?from=kuma.io/service%3Dweb"
                                        "%2Cenv%3Ddev&to=backend-1:8080 HTTP/1.1\n"));
    fake_stop(f);
}

static void test_columns_of_every_type(void **state)
{
    (void)state;
    size_t nt;
    const struct hy_rtype *types = hy_rtype_all(&nt);
    for (size_t i = 0; i < nt; i++) {
        char path[512], lower[64];
        size_t k = 0;
        for (const char *p = types[i].name; *p && k + 1 < sizeof(lower); p++)
            lower[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        lower[k] = '\0';
        snprintf(path, sizeof(path), "%s/resources/%s.yaml", HY_TEST_DATA, lower);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue; /* a type without an example file */
        static char text[65536];
        size_t len = fread(text, 1, sizeof(text) - 1, fp);
        text[len] = '\0';
        fclose(fp);
        struct hy_docs docs;
        struct hy_diag d = {0};
        assert_int_equal(hy_codec_decode_resources(path, text, len, NULL, &docs, &d), 0);
        struct hy_table t;
        assert_int_equal(hy_columns_table(&types[i], &docs.v[0].res, 1, now, &t), 0);
        struct hy_buf b = {0};
        assert_int_equal(hy_table_render(&t, &b), 0);
        assert_non_null(strstr(b.data, "NAME"));
        assert_non_null(strstr(b.data, "AGE\n"));
        if (strcmp(types[i].name, "MeshTimeout") == 0)
            assert_string_equal(b.data, "MESH      NAME               TARGETREF   TO               "
                                        "     FROM   AGE\n"
                                        "default   backend-timeouts   Mesh        MeshService:"
                                        "backend   Mesh   -\n");
        if (strcmp(types[i].name, "ZoneIngress") == 0)
            assert_string_equal(b.data,
                                "ZONE   NAME           ADDRESS          ADVERTISED-ADDRESS  "
                                "         AVAILABLE-SERVICES   AGE\n"
                                "east   ingress-east   10.1.0.2:10001   "
                                "ingress.east.example:10001   1                    -\n");
        hy_buf_fini(&b);
        hy_table_fini(&t);
        hy_docs_fini(&docs);
        hy_diag_fini(&d);
    }
}

static void test_completion_script(void **state)
{
    (void)state;
    struct result r;
    RUN(&r, "completion", "bash");
    assert_int_equal(r.rc, 0);
    char script[128];
    snprintf(script, sizeof(script), "%s/completion.bash", home);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(r.out, f);
    fclose(f);
    result_fini(&r);
    static const struct {
        const char *words; /* the command line; the last word is being completed */
        const char *want;
    } cases[] = {
        {"hyphactl ''", "apply get delete inspect explain generate config version completion"},
        {"hyphactl co", "config completion"},
        {"hyphactl config ''", "control-planes"},
        {"hyphactl config control-planes ''", "add list switch remove"},
        {"hyphactl --cp http://x get mesh", "meshes meshtrafficpermissions meshtimeouts"},
        {"hyphactl get -m default mt", "mtp meshtimeouts mt"},
        {"hyphactl get meshes ''", ""},
        {"hyphactl get -o ''", "table yaml json"},
        {"hyphactl get --si", "--size"},
        {"hyphactl apply --dr", "--dry-run"},
        {"hyphactl config control-planes add --ove", "--overwrite"},
        {"hyphactl completion ''", "bash"},
        {"hyphactl inspect ''", "zones dataplanes services zoneingresses dataplane"},
        {"hyphactl inspect dataplane backend-1 --type ''", "rules policies config stats"},
        {"hyphactl explain --from web-1 --t", "--to"},
        {"hyphactl explain --m", "--mesh"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[1024];
        /* the words carry quotes: give bash a here-document */
        snprintf(
            cmd, sizeof(cmd),
            "bash <<'EOF' 2>&1\nsource %s\nCOMP_WORDS=(%s)\n"
            "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n_hyphactl\necho \"${COMPREPLY[*]}\"\nEOF\n",
            script, cases[i].words);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char got[1024] = "";
        size_t n = fread(got, 1, sizeof(got) - 1, p);
        got[n] = '\0';
        pclose(p);
        if (n && got[n - 1] == '\n')
            got[n - 1] = '\0';
        if (strcmp(cases[i].want, "meshes meshtrafficpermissions meshtimeouts") == 0) {
            assert_non_null(strstr(got, "meshes"));
            assert_non_null(strstr(got, "meshtrafficpermissions"));
            assert_null(strstr(got, "zones"));
        } else if (strcmp(cases[i].want, "mtp meshtimeouts mt") == 0) {
            assert_non_null(strstr(got, "mtp"));
            assert_non_null(strstr(got, "mt"));
            assert_null(strstr(got, "meshes"));
        } else {
            assert_string_equal(got, cases[i].want);
        }
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    wolfSSL_Init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_content_length_and_headers),
        cmocka_unit_test(test_http_chunked_and_until_close),
        cmocka_unit_test(test_http_bad_answers),
        cmocka_unit_test(test_http_request_on_the_wire),
        cmocka_unit_test(test_http_connection_refused),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_table_alignment),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_json),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_apply_local_validation, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_config_file, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_get, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_apply_delete_token_version, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_inspect_zones, setup_home, teardown_home),
        cmocka_unit_test(test_json_yaml),
        cmocka_unit_test_setup_teardown(test_inspect_dataplanes, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_inspect_dataplane, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_explain, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_columns_of_every_type, setup_home, teardown_home),
        cmocka_unit_test_setup_teardown(test_completion_script, setup_home, teardown_home),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    wolfSSL_Cleanup();
    return rc;
}
