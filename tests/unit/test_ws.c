/* Unit tests of the websocket transport (common/ws*.c): servers and clients
 * in one process on one libuv loop, with certificates made by the CA module.
 * Echo of small and multi-MiB messages both ways, the message size limit,
 * the send queue limit, subprotocol checks, TLS verification and backoff,
 * server restarts, idle peers, garbage on the port, bad configs. Raw peers
 * (no pong, no subprotocol, garbage) run in a thread with blocking sockets
 * and wolfSSL; this file never includes libwebsockets.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "ca.h"
#include "error.h"
#include "log.h"
#include "ws.h"
#include "poison.h"

#define SUBP "hypha.kds.v1"
#define MIB (1u << 20)
#define MAXREC 32
#define MAXRX 16

static uv_loop_t loop;
static uv_timer_t ticker; /* keeps uv_run(UV_RUN_ONCE) from blocking for long */
static char dir[64], ca_path[128], cert_path[128], key_path[128], wrong_ca_path[128];

/* What one endpoint saw. */
struct rec {
    int opens, closes;
    int code[MAXREC];
    char reason[MAXREC][256];
    uint64_t t_close[MAXREC];
    unsigned delay_before[MAXREC]; /* client: the retry delay scheduled before this close */
    struct hy_ws_conn *conn;       /* the last opened */
    size_t nrx;
    size_t rx_len[MAXRX];
    uint8_t *rx[MAXRX]; /* owned copies */
    bool echo;          /* send every message back */
    const char *greeting;
    struct hy_ws_client *cli;
    bool stop_on_message; /* client: hy_ws_client_stop inside on_message */
    bool close_on_open;   /* close every connection as soon as it opens */
    bool stop_server_on_message;
    struct hy_ws_server *srv;
    bool unauth; /* server: leave peers unauthenticated (the pre-Hello limits apply) */
};

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void rec_fini(struct rec *r)
{
    for (size_t i = 0; i < r->nrx; i++)
        free(r->rx[i]);
    memset(r, 0, sizeof(*r));
}

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct rec *r = ud;
    assert_non_null(peer);
    r->opens++;
    r->conn = c;
    if (!r->unauth) /* these servers take every peer at once (a client: no-op) */
        hy_ws_conn_authenticated(c);
    if (r->greeting)
        assert_int_equal(hy_ws_send(c, r->greeting, strlen(r->greeting)), 0);
    if (r->close_on_open)
        assert_int_equal(hy_ws_close(c, 4000, "not now"), 0);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct rec *r = ud;
    if (r->nrx < MAXRX) {
        r->rx[r->nrx] = malloc(len ? len : 1);
        assert_non_null(r->rx[r->nrx]);
        if (len)
            memcpy(r->rx[r->nrx], data, len);
        r->rx_len[r->nrx++] = len;
    }
    if (r->echo)
        assert_int_equal(hy_ws_send(c, data, len), 0);
    if (r->stop_on_message)
        hy_ws_client_stop(r->cli);
    if (r->stop_server_on_message)
        hy_ws_server_stop(r->srv);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct rec *r = ud;
    assert_non_null(c);
    assert_non_null(reason);
    if (r->closes < MAXREC) {
        r->code[r->closes] = code;
        snprintf(r->reason[r->closes], sizeof(r->reason[0]), "%s", reason);
        r->t_close[r->closes] = now_ms();
        r->delay_before[r->closes] = r->cli ? hy_ws_client_retry_delay_ms(r->cli) : 0;
    }
    r->closes++;
    if (r->conn == c && !r->cli)
        r->conn = NULL;
    /* the connection is closed: sending must fail now */
    assert_int_equal(hy_ws_send(c, "x", 1), -ENOTCONN);
}

static const struct hy_ws_callbacks callbacks = {on_open, on_message, on_close};

/* Every endpoint a test makes, so that a failed test's are freed too (their
 * recs live on the test's stack). */
static struct hy_ws_server *servers[4];
static struct hy_ws_client *clients[4];

static void track(void **slots, size_t n, void *p)
{
    for (size_t i = 0; i < n; i++)
        if (!slots[i]) {
            slots[i] = p;
            return;
        }
    fail_msg("too many endpoints in one test");
}

/* Runs the loop until done(arg) or timeout_ms; returns done(arg). */
static bool run_until(bool (*done)(void *), void *arg, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (!done(arg) && now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    return done(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(int ms)
{
    run_until(never, NULL, ms);
}

static struct hy_ws_server *server_at(struct rec *r, const char *address,
                                      struct hy_ws_limits limits)
{
    struct hy_ws_server_config cfg = {
        .loop = &loop,
        .address = address,
        .tls_cert = cert_path,
        .tls_key = key_path,
        .subprotocol = SUBP,
        .limits = limits,
        .cb = callbacks,
        .ud = r,
    };
    struct hy_ws_server *s = NULL;
    int rc = hy_ws_server_new(&cfg, &s);
    if (rc < 0)
        fail_msg("hy_ws_server_new(%s): %s", address, hy_strerror(rc));
    track((void **)servers, 4, s);
    return s;
}

static struct hy_ws_server *server(struct rec *r, struct hy_ws_limits limits)
{
    return server_at(r, "127.0.0.1:0", limits);
}

struct client_opts {
    const char *ca;
    bool skip_verify;
    const char *subprotocol;
    const char *name;
    struct hy_ws_limits limits;
    struct hy_ws_backoff backoff;
    unsigned attempt_timeout_ms;
    struct hy_ws_client_ctx *shared;
};

static struct hy_ws_client *client(struct rec *r, int port, struct client_opts o)
{
    char url[128];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d/kds", port);
    struct hy_ws_client_config cfg = {
        .loop = &loop,
        .url = url,
        .name = o.name,
        .ca_file = o.skip_verify ? o.ca : (o.ca ? o.ca : ca_path),
        .skip_verify = o.skip_verify,
        .subprotocol = o.subprotocol ? o.subprotocol : SUBP,
        .limits = o.limits,
        .backoff = o.backoff,
        .attempt_timeout_ms = o.attempt_timeout_ms,
        .shared = o.shared,
        .cb = callbacks,
        .ud = r,
    };
    struct hy_ws_client *c = NULL;
    int rc = hy_ws_client_new(&cfg, &c);
    if (rc < 0)
        fail_msg("hy_ws_client_new: %s", hy_strerror(rc));
    track((void **)clients, 4, c);
    r->cli = c;
    return c;
}

/* Lets lws close its handles after a stop: a few loop iterations. */
static void settle(void)
{
    run_for(150);
}

/* Stops and frees every endpoint of the test (cmocka's per-test teardown). */
static int cleanup(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        hy_ws_client_stop(clients[i]);
        hy_ws_server_stop(servers[i]);
    }
    settle();
    for (int i = 0; i < 4; i++) {
        hy_ws_client_free(clients[i]);
        hy_ws_server_free(servers[i]);
        clients[i] = NULL;
        servers[i] = NULL;
    }
    return 0;
}

/* Frees one server before the end of the test. */
static void free_server(struct hy_ws_server *s)
{
    for (int i = 0; i < 4; i++)
        if (servers[i] == s)
            servers[i] = NULL;
    hy_ws_server_free(s);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31u + seed + (i >> 13));
}

static bool opens_at_least(void *arg)
{
    struct rec *r = arg;
    return r->opens >= 1;
}

static bool closes_at_least_1(void *arg)
{
    return ((struct rec *)arg)->closes >= 1;
}

struct want {
    struct rec *r;
    size_t n;
};

static bool got_rx(void *arg)
{
    struct want *w = arg;
    return w->r->nrx >= w->n;
}

static bool got_closes(void *arg)
{
    struct want *w = arg;
    return (size_t)w->r->closes >= w->n;
}

static bool got_opens(void *arg)
{
    struct want *w = arg;
    return (size_t)w->r->opens >= w->n;
}

/* ---- raw peers in a thread ---- */

struct raw {
    int port;
    bool tls;
    const char *request; /* written after connecting (and the TLS handshake) */
    size_t request_len;
    int timeout_s;     /* give up reading after this long; 0 = 8 */
    bool answer_close; /* answer the server's close frame, as a websocket client would */
    /* results */
    char head[2048]; /* everything read, up to its size */
    size_t head_len;
    int status; /* HTTP status of the answer, 0 for none */
    bool eof;   /* the server closed the connection */
    double eof_after;
    atomic_bool done;
};

static const char upgrade_fmt[] = "GET /kds HTTP/1.1\r\n"
                                  "Host: 127.0.0.1:%d\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "%s"
                                  "\r\n";

static void *raw_main(void *arg)
{
    struct raw *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = r->timeout_s ? r->timeout_s : 8};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    WOLFSSL_CTX *ctx = NULL;
    WOLFSSL *ssl = NULL;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out;
    if (r->tls) {
        ctx = wolfSSL_CTX_new(wolfTLS_client_method());
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
        ssl = wolfSSL_new(ctx);
        wolfSSL_set_fd(ssl, fd);
        if (wolfSSL_connect(ssl) != WOLFSSL_SUCCESS)
            goto out;
        wolfSSL_write(ssl, r->request, (int)r->request_len);
    } else {
        if (write(fd, r->request, r->request_len) < 0)
            goto out;
    }
    uint64_t t0 = 0;
    for (;;) {
        char buf[4096];
        int n = r->tls ? wolfSSL_read(ssl, buf, sizeof(buf)) : (int)read(fd, buf, sizeof(buf));
        if (n <= 0) {
            if (r->tls && n < 0 && wolfSSL_get_error(ssl, n) == WOLFSSL_ERROR_WANT_READ)
                break; /* timed out */
            r->eof = true;
            break;
        }
        size_t k = (size_t)n;
        if (k > sizeof(r->head) - 1 - r->head_len)
            k = sizeof(r->head) - 1 - r->head_len;
        memcpy(r->head + r->head_len, buf, k);
        r->head_len += k;
        if (!r->status && strstr(r->head, "\r\n\r\n")) {
            r->status = atoi(r->head + 9);
            t0 = now_ms();
        }
        const char *body = r->status ? strstr(r->head, "\r\n\r\n") + 4 : NULL;
        if (r->answer_close && body && body < r->head + r->head_len && (uint8_t)*body == 0x88) {
            static const char close_frame[] = "\x88\x80\x00\x00\x00\x00"; /* masked, empty */
            wolfSSL_write(ssl, close_frame, 6);
            r->answer_close = false;
        }
    }
    if (t0)
        r->eof_after = (double)(now_ms() - t0) / 1000.0;
out:
    if (ssl)
        wolfSSL_free(ssl);
    if (ctx)
        wolfSSL_CTX_free(ctx);
    close(fd);
#ifdef FP_ECC
    wc_ecc_fp_free(); /* wolfSSL's per-thread point cache */
#endif
    atomic_store(&r->done, true);
    return NULL;
}

static bool raw_done(void *arg)
{
    return atomic_load(&((struct raw *)arg)->done);
}

/* Runs a raw peer to completion while the loop serves it. */
static void raw_run(struct raw *r, int timeout_ms)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, raw_main, r), 0);
    run_until(raw_done, r, timeout_ms);
    while (!raw_done(r)) /* the peer's socket times out by itself */
        uv_run(&loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
}

/* ---- tests ---- */

/* Messages of 0 bytes to 3 MiB go both ways, whole and in order; a close
 * with a code and reason reaches the other side. */
static void test_echo(void **state)
{
    (void)state;
    struct rec sr = {.echo = true, .greeting = "welcome"}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    int port = hy_ws_server_port(s);
    assert_true(port > 0);
    struct hy_ws_client *c = client(&cr, port, (struct client_opts){0});
    assert_false(hy_ws_client_is_open(c));
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c), "x", 1), -ENOTCONN);
    assert_true(run_until(opens_at_least, &cr, 5000));
    assert_true(hy_ws_client_is_open(c));
    assert_int_equal(sr.opens, 1);
    assert_int_equal(hy_ws_server_nconns(s), 1);
    char hostport[32];
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", port);
    assert_string_equal(hy_ws_conn_peer(hy_ws_client_conn(c)), hostport);
    struct hy_ws_conn *cc = hy_ws_client_conn(c);
    assert_ptr_equal(cr.conn, cc);
    hy_ws_conn_set_user(cc, &cr);
    assert_ptr_equal(hy_ws_conn_user(cc), &cr);
    assert_string_equal(hy_ws_conn_peer(sr.conn), "127.0.0.1");

    size_t big = 3 * MIB + 17;
    uint8_t *p = malloc(big);
    fill(p, big, 7);
    assert_int_equal(hy_ws_send(cc, "hello", 5), 0);
    assert_int_equal(hy_ws_send(cc, "", 0), 0);
    assert_int_equal(hy_ws_send(cc, p, big), 0);
    assert_true(hy_ws_conn_queued(cc) >= big);
    assert_int_equal(hy_ws_send(cc, "after", 5), 0);
    struct want w = {&cr, 5};
    assert_true(run_until(got_rx, &w, 15000));
    assert_int_equal(hy_ws_conn_queued(cc), 0);
    /* the server's greeting, then the echoes in order */
    assert_int_equal(cr.rx_len[0], 7);
    assert_memory_equal(cr.rx[0], "welcome", 7);
    assert_int_equal(cr.rx_len[1], 5);
    assert_memory_equal(cr.rx[1], "hello", 5);
    assert_int_equal(cr.rx_len[2], 0);
    assert_int_equal(cr.rx_len[3], big);
    assert_memory_equal(cr.rx[3], p, big);
    assert_int_equal(cr.rx_len[4], 5);
    assert_memory_equal(cr.rx[4], "after", 5);
    /* and the server got exactly what was sent */
    assert_int_equal(sr.nrx, 4);
    assert_int_equal(sr.rx_len[2], big);
    assert_memory_equal(sr.rx[2], p, big);

    /* a big message from the server side too, while the client sends */
    fill(p, big, 99);
    assert_int_equal(hy_ws_send(sr.conn, p, big), 0);
    assert_int_equal(hy_ws_send(cc, "ping", 4), 0);
    w.n = 7;
    assert_true(run_until(got_rx, &w, 15000));
    size_t bi = cr.rx_len[5] == big ? 5 : 6;
    assert_int_equal(cr.rx_len[bi], big);
    assert_memory_equal(cr.rx[bi], p, big);
    free(p);

    /* graceful close from the client: the server sees code and reason */
    assert_int_equal(hy_ws_close(cc, 4001, "bye now"), 0);
    assert_int_equal(hy_ws_close(cc, 4001, "twice"), -ENOTCONN);
    assert_int_equal(hy_ws_send(cc, "late", 4), -ENOTCONN);
    w = (struct want){&sr, 1};
    assert_true(run_until(got_closes, &w, 5000));
    assert_true(run_until(closes_at_least_1, &cr, 5000));
    assert_int_equal(sr.code[0], 4001);
    assert_string_equal(sr.reason[0], "bye now");
    assert_int_equal(cr.code[0], 4001);
    assert_string_equal(cr.reason[0], "bye now");
    assert_int_equal(hy_ws_server_nconns(s), 0);

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* A 5 MiB message to a server with a 4 MiB limit closes that connection
 * with 1009 and a reason; another client is not disturbed. */
static void test_too_big(void **state)
{
    (void)state;
    struct rec sr = {.echo = true}, ar = {0}, br = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){.max_message = 4 * MIB});
    int port = hy_ws_server_port(s);
    struct client_opts o = {.limits = {.max_message = 8 * MIB}, .backoff = {.initial_ms = 5000}};
    struct hy_ws_client *a = client(&ar, port, o);
    struct hy_ws_client *b = client(&br, port, o);
    assert_true(run_until(opens_at_least, &ar, 5000));
    assert_true(run_until(opens_at_least, &br, 5000));

    size_t big = 5 * MIB;
    uint8_t *p = malloc(big);
    fill(p, big, 3);
    assert_int_equal(hy_ws_send(hy_ws_client_conn(a), p, big), 0);
    free(p);
    assert_true(run_until(closes_at_least_1, &ar, 10000));
    assert_int_equal(ar.code[0], HY_WS_CLOSE_TOO_BIG);
    assert_non_null(strstr(ar.reason[0], "limit of 4194304 bytes"));
    assert_int_equal(ar.nrx, 0);
    struct want w = {&sr, 1};
    assert_true(run_until(got_closes, &w, 5000));
    assert_int_equal(sr.code[0], HY_WS_CLOSE_TOO_BIG);

    /* b still works, and a message of exactly the limit is fine */
    assert_true(hy_ws_client_is_open(b));
    size_t lim = 4 * MIB;
    p = malloc(lim);
    fill(p, lim, 5);
    assert_int_equal(hy_ws_send(hy_ws_client_conn(b), p, lim), 0);
    w = (struct want){&br, 1};
    assert_true(run_until(got_rx, &w, 15000));
    assert_int_equal(br.rx_len[0], lim);
    assert_memory_equal(br.rx[0], p, lim);
    free(p);
    assert_int_equal(br.closes, 0);
    assert_int_equal(hy_ws_server_nconns(s), 1);

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&ar);
    rec_fini(&br);
}

static bool opens_closes(void *arg)
{
    const struct rec *r = arg;
    return r->opens >= 1 && r->closes >= 1;
}

/* Before hy_ws_conn_authenticated a server connection is held to the
 * pre-Hello limits: a small message limit, a cap on such connections
 * (one more is refused at open, never reaching on_open), a Hello deadline;
 * authenticating lifts them. */
static void test_unauth_limits(void **state)
{
    (void)state;
    struct rec sr = {.unauth = true}, ar = {0}, br = {0}, cr = {0};
    struct hy_ws_server *s =
        server(&sr, (struct hy_ws_limits){
                        .max_message_unauth = 1024, .max_unauth = 2, .hello_timeout_ms = 1500});
    int port = hy_ws_server_port(s);
    struct client_opts o = {.backoff = {.initial_ms = 60000}};
    client(&ar, port, o);
    assert_true(run_until(opens_at_least, &ar, 5000));
    /* a message over the pre-Hello limit */
    uint8_t big[2048] = {0};
    assert_int_equal(hy_ws_send(hy_ws_client_conn(ar.cli), big, sizeof(big)), 0);
    assert_true(run_until(closes_at_least_1, &ar, 5000));
    assert_int_equal(ar.code[0], HY_WS_CLOSE_TOO_BIG);
    assert_non_null(strstr(ar.reason[0], "limit of 1024 bytes before authentication"));
    struct hy_ws_server_stats st;
    hy_ws_server_stats(s, &st);
    assert_int_equal(st.unauth_too_big, 1);

    /* two strangers fill the cap; a third is refused at open */
    client(&br, port, o);
    client(&cr, port, o);
    assert_true(run_until(opens_at_least, &br, 5000));
    assert_true(run_until(opens_at_least, &cr, 5000));
    struct rec dr = {0};
    client(&dr, port, o);
    assert_true(run_until(opens_closes, &dr, 5000));
    assert_int_equal(dr.code[0], HY_WS_CLOSE_POLICY);
    assert_non_null(strstr(dr.reason[0], "too many connections waiting for their Hello"));
    hy_ws_server_stats(s, &st);
    assert_int_equal(st.unauth_refused, 1);
    assert_int_equal(st.unauth, 2);
    assert_int_equal(sr.opens, 3); /* ar, br, cr: dr never reached on_open */

    /* and the strangers that never authenticate are closed at the deadline */
    assert_true(run_until(closes_at_least_1, &cr, 5000));
    assert_int_equal(cr.code[0], HY_WS_CLOSE_POLICY);
    assert_non_null(strstr(cr.reason[0], "no Hello within 1500 ms"));
    hy_ws_server_stats(s, &st);
    assert_true(st.hello_timeouts >= 1);

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&ar);
    rec_fini(&br);
    rec_fini(&cr);
    rec_fini(&dr);
}

/* hy_ws_conn_authenticated lifts the limits: a message over the pre-Hello
 * limit goes through and the connection outlives the deadline. */
static void test_authenticated(void **state)
{
    (void)state;
    struct rec sr = {.echo = true}, ar = {0};
    struct hy_ws_server *s =
        server(&sr, (struct hy_ws_limits){.max_message_unauth = 1024, .hello_timeout_ms = 300});
    struct hy_ws_client *a = client(&ar, hy_ws_server_port(s), (struct client_opts){0});
    assert_true(run_until(opens_at_least, &ar, 5000));
    assert_true(hy_ws_conn_is_authenticated(hy_ws_client_conn(a)));
    uint8_t big[4096] = {1};
    assert_int_equal(hy_ws_send(hy_ws_client_conn(a), big, sizeof(big)), 0);
    struct want w = {&ar, 1};
    assert_true(run_until(got_rx, &w, 5000));
    assert_int_equal(ar.rx_len[0], sizeof(big));
    run_for(600); /* past the deadline */
    assert_int_equal(ar.closes, 0);
    struct hy_ws_server_stats st;
    hy_ws_server_stats(s, &st);
    assert_int_equal(st.unauth, 0);
    assert_int_equal(st.hello_timeouts, 0);
    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&ar);
}

/* The queue limit makes hy_ws_send fail without queueing. */
static void test_queue_limit(void **state)
{
    (void)state;
    struct rec sr = {0}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){.max_queue = 1 * MIB});
    client(&cr, hy_ws_server_port(s), (struct client_opts){0});
    assert_true(run_until(opens_at_least, &sr, 5000));
    uint8_t *p = calloc(1, 600 * 1024);
    assert_int_equal(hy_ws_send(sr.conn, p, 600 * 1024), 0);
    assert_int_equal(hy_ws_send(sr.conn, p, 600 * 1024), -ENOBUFS);
    assert_int_equal(hy_ws_conn_queued(sr.conn), 600 * 1024);
    assert_int_equal(hy_ws_send(sr.conn, p, 400 * 1024), 0);
    struct want w = {&cr, 2};
    assert_true(run_until(got_rx, &w, 5000));
    assert_int_equal(cr.rx_len[0], 600 * 1024);
    assert_int_equal(cr.rx_len[1], 400 * 1024);
    assert_int_equal(hy_ws_send(sr.conn, p, 600 * 1024), 0); /* drained: room again */
    free(p);
    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* A client asking for another subprotocol, or none, is refused. */
static void test_subprotocol(void **state)
{
    (void)state;
    struct rec sr = {0}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    int port = hy_ws_server_port(s);
    (void)client(
        &cr, port,
        (struct client_opts){.subprotocol = "hypha.other.v1", .backoff = {.initial_ms = 5000}});
    assert_true(run_until(closes_at_least_1, &cr, 5000));
    assert_int_equal(cr.opens, 0);
    assert_int_equal(cr.code[0], HY_WS_CLOSE_ABNORMAL);
    if (!strstr(cr.reason[0], "during the websocket upgrade"))
        fail_msg("reason \"%s\"", cr.reason[0]);

    char req[512];
    snprintf(req, sizeof(req), upgrade_fmt, port, "");
    struct raw r = {.port = port, .tls = true, .request = req, .request_len = strlen(req)};
    raw_run(&r, 10000);
    assert_int_not_equal(r.status, 101);
    assert_true(r.eof);

    /* the same raw request with the subprotocol is accepted */
    snprintf(req, sizeof(req), upgrade_fmt, port, "Sec-WebSocket-Protocol: " SUBP "\r\n");
    struct raw ok = {.port = port,
                     .tls = true,
                     .request = req,
                     .request_len = strlen(req),
                     .answer_close = true};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, raw_main, &ok), 0);
    assert_true(run_until(opens_at_least, &sr, 5000));
    assert_int_equal(sr.opens, 1);
    hy_ws_close(sr.conn, 1000, "done");
    while (!raw_done(&ok))
        uv_run(&loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
    assert_int_equal(ok.status, 101);
    assert_non_null(strstr(ok.head, SUBP));
    struct want w = {&sr, 1};
    assert_true(run_until(got_closes, &w, 5000));
    assert_int_equal(sr.code[0], 1000);
    assert_string_equal(sr.reason[0], "done");

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* A server certificate from another CA fails verification; the client
 * retries with growing, jittered, capped delays. */
static void test_wrong_ca_backoff(void **state)
{
    (void)state;
    struct rec sr = {0}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    struct hy_ws_backoff bo = {.initial_ms = 100, .max_ms = 400, .jitter_pct = 20};
    struct hy_ws_client *c =
        client(&cr, hy_ws_server_port(s), (struct client_opts){.ca = wrong_ca_path, .backoff = bo});
    struct want w = {&cr, 6};
    assert_true(run_until(got_closes, &w, 10000));
    assert_int_equal(cr.opens, 0);
    assert_int_equal(sr.opens, 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(cr.code[i], HY_WS_CLOSE_ABNORMAL);
        if (!strstr(cr.reason[i], "TLS: certificate verify failed"))
            fail_msg("attempt %d: reason \"%s\"", i, cr.reason[i]);
    }
    /* delay_before[i] was scheduled after failure i-1 */
    for (int i = 1; i < 6; i++) {
        unsigned base = 100u << (i - 1);
        if (base > 400)
            base = 400;
        unsigned d = cr.delay_before[i];
        uint64_t gap = cr.t_close[i] - cr.t_close[i - 1];
        if (d < base * 8 / 10 || d > base * 12 / 10)
            fail_msg("attempt %d: delay %u ms, base %u", i, d, base);
        if (gap + 5 < d || gap > d + 1000)
            fail_msg("attempt %d: %llu ms between failures for a delay of %u", i,
                     (unsigned long long)gap, d);
    }
    assert_true(cr.delay_before[5] <= 480); /* capped */
    assert_int_equal(hy_ws_client_reconnect_now(c), 0);
    w.n = 7;
    assert_true(run_until(got_closes, &w, 2000));

    hy_ws_client_stop(c);
    assert_int_equal(hy_ws_client_reconnect_now(c), -ESHUTDOWN);
    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* skip_verify connects to a server it cannot verify and says so. */
static void test_skip_verify(void **state)
{
    (void)state;
    struct rec sr = {.echo = true}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    char logpath[160];
    snprintf(logpath, sizeof(logpath), "%s/stderr.log", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(logpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    struct hy_ws_client *c =
        client(&cr, hy_ws_server_port(s),
               (struct client_opts){.skip_verify = true, .name = "the global control plane"});
    bool opened = run_until(opens_at_least, &cr, 5000);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    assert_true(opened);
    FILE *f = fopen(logpath, "r");
    char text[16384] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    if (!strstr(text, "WARN ws: TLS verification of the global control plane is disabled"))
        fail_msg("no warning in:\n%s", text);
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c), "hi", 2), 0);
    struct want w = {&cr, 1};
    assert_true(run_until(got_rx, &w, 5000));

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* The server goes away: the client sees the close, fails to reconnect while
 * nothing listens, and reconnects once a new server is on the same port. */
static void test_server_restart(void **state)
{
    (void)state;
    struct rec sr = {.echo = true}, sr2 = {.echo = true}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    int port = hy_ws_server_port(s);
    struct hy_ws_client *c =
        client(&cr, port, (struct client_opts){.backoff = {.initial_ms = 100, .max_ms = 200}});
    assert_true(run_until(opens_at_least, &cr, 5000));
    assert_true(run_until(opens_at_least, &sr, 5000));

    hy_ws_server_stop(s);
    assert_int_equal(sr.closes, 1);
    assert_string_equal(sr.reason[0], "server stopping");
    assert_true(run_until(closes_at_least_1, &cr, 5000));
    assert_int_equal(cr.code[0], HY_WS_CLOSE_ABNORMAL);
    assert_false(hy_ws_client_is_open(c));
    struct want w = {&cr, 3}; /* two failed attempts while nothing listens */
    assert_true(run_until(got_closes, &w, 5000));
    assert_string_equal(cr.reason[2], "connection refused or unreachable");
    free_server(s);

    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    server_at(&sr2, addr, (struct hy_ws_limits){0});
    w = (struct want){&cr, 2};
    assert_true(run_until(got_opens, &w, 5000));
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c), "again", 5), 0);
    w = (struct want){&cr, 1};
    assert_true(run_until(got_rx, &w, 5000));
    assert_memory_equal(cr.rx[0], "again", 5);

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&sr2);
    rec_fini(&cr);
}

/* A client pointed elsewhere after a failure (several addresses of one
 * service, as the sidecar's zone replicas): its next attempt goes to the
 * new URL; a bad URL is refused and changes nothing. */
static void test_set_url(void **state)
{
    (void)state;
    struct rec dead = {0}, sr = {.echo = true}, cr = {0};
    struct hy_ws_server *gone = server(&dead, (struct hy_ws_limits){0});
    int dead_port = hy_ws_server_port(gone);
    hy_ws_server_stop(gone);
    free_server(gone);
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    struct hy_ws_client *c =
        client(&cr, dead_port, (struct client_opts){.backoff = {.initial_ms = 50, .max_ms = 100}});
    assert_true(run_until(closes_at_least_1, &cr, 5000));
    assert_int_equal(cr.opens, 0);
    assert_int_equal(hy_ws_client_set_url(c, "http://127.0.0.1:1/"), HY_EINVAL);
    char url[64];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d/kds", hy_ws_server_port(s));
    assert_int_equal(hy_ws_client_set_url(c, url), 0);
    assert_true(run_until(opens_at_least, &cr, 5000));
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c), "moved", 5), 0);
    struct want w = {&cr, 1};
    assert_true(run_until(got_rx, &w, 5000));
    assert_memory_equal(cr.rx[0], "moved", 5);
    cleanup(NULL);
    rec_fini(&dead);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* Connections that end at once make the delay grow; one that stayed open
 * reset_sec resets it. */
static void test_backoff_reset(void **state)
{
    (void)state;
    struct rec sr = {.close_on_open = true}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    struct hy_ws_backoff bo = {.initial_ms = 100, .max_ms = 3200, .jitter_pct = 10, .reset_sec = 1};
    struct hy_ws_client *c = client(&cr, hy_ws_server_port(s), (struct client_opts){.backoff = bo});
    unsigned want[] = {100, 200, 400};
    for (int i = 0; i < 3; i++) {
        struct want w = {&cr, (size_t)i + 1};
        assert_true(run_until(got_closes, &w, 5000));
        assert_int_equal(cr.code[i], 4000);
        assert_string_equal(cr.reason[i], "not now");
        unsigned d = hy_ws_client_retry_delay_ms(c);
        if (d < want[i] * 9 / 10 || d > want[i] * 11 / 10)
            fail_msg("close %d: delay %u, expected about %u", i, d, want[i]);
    }
    assert_int_equal(cr.opens, 3);
    sr.close_on_open = false;
    struct want w = {&cr, 4};
    assert_true(run_until(got_opens, &w, 5000));
    run_for(1200);
    assert_int_equal(hy_ws_close(sr.conn, 4000, "later"), 0);
    w.n = 4;
    assert_true(run_until(got_closes, &w, 5000));
    unsigned d = hy_ws_client_retry_delay_ms(c);
    if (d < 90 || d > 110)
        fail_msg("after a stable connection: delay %u, expected about 100", d);
    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* A peer that completes the handshake but never answers pings is closed
 * after idle_sec; a real client, which answers them, stays. */
static void test_idle(void **state)
{
    (void)state;
    struct rec sr = {0}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){.ping_sec = 1, .idle_sec = 2});
    int port = hy_ws_server_port(s);
    struct hy_ws_client *c =
        client(&cr, port, (struct client_opts){.limits = {.ping_sec = 1, .idle_sec = 2}});
    assert_true(run_until(opens_at_least, &cr, 5000));

    char req[512];
    snprintf(req, sizeof(req), upgrade_fmt, port, "Sec-WebSocket-Protocol: " SUBP "\r\n");
    struct raw r = {.port = port, .tls = true, .request = req, .request_len = strlen(req)};
    raw_run(&r, 8000);
    assert_int_equal(r.status, 101);
    assert_true(r.eof);
    if (r.eof_after < 1.5 || r.eof_after > 4.0)
        fail_msg("the silent peer was closed after %.2f s", r.eof_after);
    assert_int_equal(sr.opens, 2);
    assert_int_equal(sr.closes, 1);
    assert_int_equal(sr.code[0], HY_WS_CLOSE_ABNORMAL);
    assert_string_equal(sr.reason[0], "no pong for 2 s");
    /* the real client answered its pings all along */
    assert_int_equal(cr.closes, 0);
    assert_true(hy_ws_client_is_open(c));

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* Garbage, plain HTTP and HTTP inside TLS on the port are dropped; the
 * server keeps serving. */
static void test_garbage(void **state)
{
    (void)state;
    struct rec sr = {.echo = true}, cr = {0};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    int port = hy_ws_server_port(s);

    char junk[3000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7919u >> 3);
    struct raw g = {.port = port, .request = junk, .request_len = sizeof(junk)};
    raw_run(&g, 10000);
    assert_true(g.eof);
    const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    struct raw h = {.port = port, .request = get, .request_len = strlen(get)};
    raw_run(&h, 10000);
    assert_true(h.eof);
    struct raw t = {.port = port, .tls = true, .request = get, .request_len = strlen(get)};
    raw_run(&t, 10000);
    assert_true(t.eof);
    assert_int_not_equal(t.status, 200);
    /* a peer that stops in the middle of the HTTP request, then goes away */
    struct raw half = {.port = port,
                       .tls = true,
                       .request = "GET / HTTP/1.1\r\nHo",
                       .request_len = 18,
                       .timeout_s = 1};
    raw_run(&half, 5000);
    assert_false(half.eof);
    assert_int_equal(sr.opens, 0);

    /* a text frame right after the upgrade: closed with 1003 */
    char req[512];
    int n = snprintf(req, sizeof(req), upgrade_fmt, port, "Sec-WebSocket-Protocol: " SUBP "\r\n");
    memcpy(req + n, "\x81\x82\x01\x02\x03\x04", 6);
    req[n + 6] = 'h' ^ 1;
    req[n + 7] = 'i' ^ 2;
    struct raw tx = {.port = port,
                     .tls = true,
                     .request = req,
                     .request_len = (size_t)n + 8,
                     .answer_close = true};
    raw_run(&tx, 10000);
    assert_int_equal(tx.status, 101);
    assert_true(tx.eof);
    assert_int_equal(sr.opens, 1);
    assert_int_equal(sr.closes, 1);
    assert_int_equal(sr.code[0], HY_WS_CLOSE_UNSUPPORTED);
    const char *body = strstr(tx.head, "\r\n\r\n") + 4;
    assert_true((size_t)(body - tx.head) + 4 <= tx.head_len);
    assert_int_equal((uint8_t)body[0], 0x88); /* a close frame */
    assert_int_equal((uint8_t)body[2] << 8 | (uint8_t)body[3], 1003);
    assert_int_equal(sr.nrx, 0);

    struct hy_ws_client *c = client(&cr, port, (struct client_opts){0});
    assert_true(run_until(opens_at_least, &cr, 5000));
    assert_int_equal(sr.opens, 2);
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c), "still here", 10), 0);
    struct want w = {&cr, 1};
    assert_true(run_until(got_rx, &w, 5000));

    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
}

/* Stopping from inside a callback is deferred to the loop and safe. */
static void test_stop_in_callback(void **state)
{
    (void)state;
    struct rec sr = {.greeting = "go away"}, cr = {.stop_on_message = true};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    client(&cr, hy_ws_server_port(s), (struct client_opts){0});
    assert_true(run_until(closes_at_least_1, &cr, 5000));
    assert_int_equal(cr.nrx, 1);
    assert_string_equal(cr.reason[0], "client stopping");
    struct want w = {&sr, 1};
    assert_true(run_until(got_closes, &w, 5000));
    run_for(300);
    assert_int_equal(cr.opens, 1); /* no reconnect after a stop */

    /* a server that stops itself when a message comes */
    struct rec sr2 = {.stop_server_on_message = true}, cr2 = {0};
    struct hy_ws_server *s2 = server(&sr2, (struct hy_ws_limits){0});
    sr2.srv = s2;
    client(&cr2, hy_ws_server_port(s2), (struct client_opts){.backoff = {.initial_ms = 5000}});
    assert_true(run_until(opens_at_least, &cr2, 5000));
    assert_int_equal(hy_ws_send(hy_ws_client_conn(cr2.cli), "stop", 4), 0);
    assert_true(run_until(closes_at_least_1, &cr2, 5000));
    assert_int_equal(cr2.code[0], HY_WS_CLOSE_ABNORMAL);
    assert_int_equal(sr2.closes, 1);
    assert_string_equal(sr2.reason[0], "server stopping");
    assert_int_equal(hy_ws_server_nconns(s2), 0);
    assert_int_equal(hy_ws_server_port(s2), 0);
    cleanup(NULL);
    rec_fini(&sr);
    rec_fini(&cr);
    rec_fini(&sr2);
    rec_fini(&cr2);
}

/* A peer that accepts the TCP connection and reads the ClientHello but
 * never answers it (a wedged or overloaded server, or a middlebox). */
struct silent {
    int lfd;
    atomic_bool quit;
    atomic_int accepted;
};

static void *silent_main(void *arg)
{
    struct silent *p = arg;
    int fds[16];
    int n = 0;
    while (!atomic_load(&p->quit)) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd >= 0) {
            if (n < 16)
                fds[n++] = fd;
            else
                close(fd);
            atomic_fetch_add(&p->accepted, 1);
            continue;
        }
        for (int i = 0; i < n; i++) {
            char buf[4096];
            while (read(fds[i], buf, sizeof(buf)) > 0)
                ; /* swallow what the client says */
        }
        usleep(10000);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return NULL;
}

static int silent_listen(struct silent *p, pthread_t *th)
{
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(p->lfd, 16), 0);
    assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&sa, &sl), 0);
    assert_int_equal(pthread_create(th, NULL, silent_main, p), 0);
    return ntohs(sa.sin_port);
}

/* An attempt that gets no answer (the peer accepts the TCP connection and
 * reads the ClientHello, then says nothing) is given up after
 * attempt_timeout_ms, whatever lws's own timeouts (10 s) do, and retried
 * with the backoff; on an own and on a shared context. */
static void test_silent_peer(void **state)
{
    (void)state;
    struct rec cr = {0}, cr2 = {0};
    struct silent p = {0};
    pthread_t th;
    int port = silent_listen(&p, &th);
    struct hy_ws_client_ctx *x = NULL;
    assert_int_equal(hy_ws_client_ctx_new(&loop, ca_path, SUBP, &x), 0);
    struct client_opts o = {.backoff = {.initial_ms = 100, .max_ms = 200},
                            .attempt_timeout_ms = 700};
    uint64_t t0 = now_ms();
    client(&cr, port, o);
    o.shared = x;
    client(&cr2, port, o);
    struct want w = {&cr, 3}, w2 = {&cr2, 3};
    bool ok = run_until(got_closes, &w, 6000) && run_until(got_closes, &w2, 6000);
    uint64_t took = now_ms() - t0;
    atomic_store(&p.quit, true);
    pthread_join(th, NULL);
    close(p.lfd);
    assert_true(ok);
    assert_true(atomic_load(&p.accepted) >= 6); /* every attempt reached the peer */
    if (took > 4000)
        fail_msg("3 attempts took %llu ms with a 700 ms bound", (unsigned long long)took);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cr.code[i], HY_WS_CLOSE_ABNORMAL);
        if (!strstr(cr.reason[i], "no answer within 0.7 s") ||
            !strstr(cr2.reason[i], "no answer within 0.7 s"))
            fail_msg("attempt %d: \"%s\" / \"%s\"", i, cr.reason[i], cr2.reason[i]);
    }
    assert_int_equal(cr.opens + cr2.opens, 0);
    cleanup(NULL);
    hy_ws_client_ctx_free(x);
    settle();
    rec_fini(&cr);
    rec_fini(&cr2);
}

/* Clients sharing one lws context are as independent as clients with their
 * own: each its connection, messages and close; one stopped and freed
 * while the others go on, another stopped from inside its callback. */
static void test_shared_ctx(void **state)
{
    (void)state;
    struct rec sr = {.echo = true}, cr[3] = {{0}, {0}, {.stop_on_message = true}};
    struct hy_ws_server *s = server(&sr, (struct hy_ws_limits){0});
    int port = hy_ws_server_port(s);
    struct hy_ws_client_ctx *x = NULL;
    assert_int_equal(hy_ws_client_ctx_new(&loop, ca_path, SUBP, &x), 0);
    struct hy_ws_client *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = client(&cr[i], port, (struct client_opts){.shared = x});
    for (int i = 0; i < 3; i++)
        assert_true(run_until(opens_at_least, &cr[i], 5000));
    for (int i = 0; i < 2; i++) {
        char m[16];
        snprintf(m, sizeof(m), "hello %d", i);
        assert_int_equal(hy_ws_send(hy_ws_client_conn(c[i]), m, strlen(m)), 0);
    }
    for (int i = 0; i < 2; i++) {
        struct want w = {&cr[i], 1};
        assert_true(run_until(got_rx, &w, 5000));
        char m[16];
        snprintf(m, sizeof(m), "hello %d", i);
        assert_int_equal(cr[i].rx_len[0], strlen(m));
        assert_memory_equal(cr[i].rx[0], m, strlen(m));
    }
    /* one stops itself inside on_message: on_close follows, no reconnect */
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c[2]), "bye", 3), 0);
    assert_true(run_until(closes_at_least_1, &cr[2], 5000));
    assert_string_equal(cr[2].reason[0], "client stopping");
    /* one stopped and freed from outside */
    hy_ws_client_stop(c[0]);
    assert_int_equal(cr[0].closes, 1);
    assert_string_equal(cr[0].reason[0], "client stopping");
    for (int i = 0; i < 4; i++)
        if (clients[i] == c[0])
            clients[i] = NULL;
    hy_ws_client_free(c[0]);
    struct want ws = {&sr, 2};
    assert_true(run_until(got_closes, &ws, 5000));
    run_for(300);
    assert_int_equal(cr[2].opens, 1);
    /* the last one still works */
    assert_true(hy_ws_client_is_open(c[1]));
    assert_int_equal(hy_ws_send(hy_ws_client_conn(c[1]), "still", 5), 0);
    struct want w = {&cr[1], 2};
    assert_true(run_until(got_rx, &w, 5000));
    /* a client may not bring another subprotocol to the context */
    struct hy_ws_client_config bad = {.loop = &loop,
                                      .url = "wss://127.0.0.1:1/x",
                                      .subprotocol = "other",
                                      .shared = x,
                                      .cb = callbacks};
    struct hy_ws_client *nc = NULL;
    assert_int_equal(hy_ws_client_new(&bad, &nc), HY_EINVAL);
    assert_null(nc);
    cleanup(NULL);
    hy_ws_client_ctx_free(x);
    settle();
    rec_fini(&sr);
    for (int i = 0; i < 3; i++)
        rec_fini(&cr[i]);
}

/* Bad configurations fail with HY_EINVAL and leave nothing behind. */
static void test_bad_config(void **state)
{
    (void)state;
    struct rec r = {0};
    struct hy_ws_server *s = NULL;
    struct hy_ws_server_config sc = {.loop = &loop,
                                     .address = "127.0.0.1:0",
                                     .tls_cert = cert_path,
                                     .tls_key = key_path,
                                     .subprotocol = SUBP,
                                     .cb = callbacks,
                                     .ud = &r};
    struct hy_ws_server_config b = sc;
    b.address = "nowhere";
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    b = sc;
    b.tls_cert = NULL;
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    b = sc;
    b.tls_key = "/nonexistent/key.pem";
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    b = sc;
    b.tls_key = ca_path; /* not the certificate's key */
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    b = sc;
    b.subprotocol = "";
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    b = sc;
    b.limits = (struct hy_ws_limits){.ping_sec = 10, .idle_sec = 10};
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    assert_null(s);

    /* the port is taken */
    struct hy_ws_server *s1 = server(&r, (struct hy_ws_limits){0});
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", hy_ws_server_port(s1));
    b = sc;
    b.address = addr;
    assert_int_equal(hy_ws_server_new(&b, &s), HY_EINVAL);
    assert_null(s);

    struct hy_ws_client *c = NULL;
    struct hy_ws_client_config cc = {
        .loop = &loop, .url = "wss://127.0.0.1:1/", .ca_file = ca_path, .subprotocol = SUBP};
    const char *bad_urls[] = {"ws://127.0.0.1:1/", "https://x/", "wss://",      "wss://:5/",
                              "wss://h:0/",        "wss://h:x/", "wss://[::1/", NULL};
    for (int i = 0; bad_urls[i]; i++) {
        struct hy_ws_client_config x = cc;
        x.url = bad_urls[i];
        if (hy_ws_client_new(&x, &c) != HY_EINVAL)
            fail_msg("URL %s accepted", bad_urls[i]);
    }
    struct hy_ws_client_config x = cc;
    x.ca_file = NULL;
    assert_int_equal(hy_ws_client_new(&x, &c), HY_EINVAL);
    x = cc;
    x.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(hy_ws_client_new(&x, &c), HY_EINVAL);
    x = cc;
    x.subprotocol = NULL;
    assert_int_equal(hy_ws_client_new(&x, &c), HY_EINVAL);
    x = cc;
    x.backoff.jitter_pct = 90;
    assert_int_equal(hy_ws_client_new(&x, &c), HY_EINVAL);
    assert_null(c);
    /* URLs that are fine: an IPv6 literal, no path, a query */
    const char *good_urls[] = {"wss://[::1]:5685/kds", "wss://localhost", "wss://h:1?x=1", NULL};
    for (int i = 0; good_urls[i]; i++) {
        x = cc;
        x.url = good_urls[i];
        x.backoff.initial_ms = 60000;
        assert_int_equal(hy_ws_client_new(&x, &c), 0);
        hy_ws_client_stop(c);
        hy_ws_client_stop(c);
        settle();
        hy_ws_client_free(c);
        c = NULL;
    }
    cleanup(NULL);
    hy_ws_server_free(NULL);
    hy_ws_client_free(NULL);
    hy_ws_server_stop(NULL);
    hy_ws_client_stop(NULL);
    rec_fini(&r);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

static int setup(void **state)
{
    (void)state;
    hy_log_threshold = getenv("HY_TEST_LOG") ? HY_LOG_DEBUG : HY_LOG_WARN;
    snprintf(dir, sizeof(dir), "/tmp/hypha-test-ws-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
    snprintf(wrong_ca_path, sizeof(wrong_ca_path), "%s/wrong-ca.pem", dir);
    static const char *const dns[] = {"localhost"};
    static const char *const ips[] = {"127.0.0.1"};
    struct hy_ca_server_req req = {
        .dns = dns, .ndns = 1, .ips = ips, .nips = 1, .now = time(NULL), .validity_seconds = 3600};
    struct hy_ca_pem ca = {0}, leaf = {0}, other = {0}, other_leaf = {0};
    if (hy_ca_make_self_signed_server("Hypha test CA", &req, &ca, &leaf) < 0 ||
        hy_ca_make_self_signed_server("Hypha other CA", &req, &other, &other_leaf) < 0)
        return -1;
    int rc = write_file(ca_path, ca.cert) | write_file(cert_path, leaf.cert) |
             write_file(key_path, leaf.key) | write_file(wrong_ca_path, other.cert);
    hy_ca_pem_fini(&ca);
    hy_ca_pem_fini(&leaf);
    hy_ca_pem_fini(&other);
    hy_ca_pem_fini(&other_leaf);
    if (rc)
        return -1;
    wolfSSL_Init();
    uv_loop_init(&loop);
    uv_timer_init(&loop, &ticker);
    uv_timer_start(&ticker, tick, 10, 10);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    uv_close((uv_handle_t *)&ticker, NULL);
    uint64_t end = now_ms() + 3000;
    while (uv_run(&loop, UV_RUN_NOWAIT) && now_ms() < end)
        ;
    int rc = uv_loop_close(&loop);
    wolfSSL_Cleanup();
    const char *names[] = {"ca.pem", "cert.pem", "key.pem", "wrong-ca.pem", "stderr.log"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    if (rc != 0)
        fprintf(stderr, "uv_loop_close: %s (a handle was left open)\n", uv_strerror(rc));
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_echo, cleanup),
        cmocka_unit_test_teardown(test_too_big, cleanup),
        cmocka_unit_test_teardown(test_queue_limit, cleanup),
        cmocka_unit_test_teardown(test_subprotocol, cleanup),
        cmocka_unit_test_teardown(test_wrong_ca_backoff, cleanup),
        cmocka_unit_test_teardown(test_skip_verify, cleanup),
        cmocka_unit_test_teardown(test_server_restart, cleanup),
        cmocka_unit_test_teardown(test_set_url, cleanup),
        cmocka_unit_test_teardown(test_backoff_reset, cleanup),
        cmocka_unit_test_teardown(test_idle, cleanup),
        cmocka_unit_test_teardown(test_garbage, cleanup),
        cmocka_unit_test_teardown(test_stop_in_callback, cleanup),
        cmocka_unit_test_teardown(test_bad_config, cleanup),
        cmocka_unit_test_teardown(test_unauth_limits, cleanup),
        cmocka_unit_test_teardown(test_authenticated, cleanup),
        cmocka_unit_test_teardown(test_silent_peer, cleanup),
        cmocka_unit_test_teardown(test_shared_ctx, cleanup),
    };
    if (getenv("HY_TEST_FILTER"))
        cmocka_set_test_filter(getenv("HY_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
