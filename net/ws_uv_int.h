/* Inside the data plane's websocket client (ws_uv.c: the connection's
 * life, socket and TLS; ws_uv_conn.c: frames in and out and the
 * connection API of ws.h). Loop thread only. */
#ifndef HY_WS_UV_INT_H
#define HY_WS_UV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "ws.h"
#include "ws_url.h"
#include "ws_frame.h"

#define HY_WSU_FRAG (64u << 10)     /* bytes of payload per data frame sent */
#define HY_WSU_WQ_HIGH (128u << 10) /* stop framing while this much waits for the socket */
#define HY_WSU_CLOSE_GRACE_MS 10000 /* hy_ws_close: queue drained and the peer's answer within */
#define HY_WSU_CLOSE_WAIT_MS 5000   /* our close frame sent: the peer's answer within */
#define HY_WSU_RD_SIZE (16u << 10)

/* A TLS context trusting a CA file, shared by clients or one client's own. */
struct hy_ws_client_ctx {
    uv_loop_t *loop;
    char *subprotocol;
    WOLFSSL_CTX *ssl_ctx;
    bool skip_verify;
    size_t users;
};

struct msg {
    struct msg *next;
    size_t len, off;
    uint8_t buf[];
};

enum state { ST_IDLE, ST_CONNECTING, ST_OPEN, ST_CLOSING };
enum phase { PH_RESOLVE, PH_TCP, PH_TLS, PH_UPGRADE, PH_WS };

struct hy_ws_conn {
    struct hy_ws_client *cl;
    enum state state;
    void *user;
    char peer[96];
    struct msg *head, *tail;
    size_t queued;
    bool close_pending, close_sent, close_recv;
    int close_code;
    char close_reason[HY_WS_REASON_MAX + 1];
};

/* The socket of one attempt; outlives the client while libuv closes it. */
struct sock {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct hy_ws_client *cl; /* NULL once the attempt is torn down */
};

struct wreq {
    uv_write_t req;
    struct sock *s;
    size_t len;
    char data[];
};

struct resolve {
    uv_getaddrinfo_t req;
    struct hy_ws_client *cl; /* NULL once given up */
};

struct hy_ws_client {
    struct hy_ws_conn conn;
    uv_loop_t *loop;
    struct hy_ws_callbacks cb;
    void *ud;
    size_t max_message, max_queue;
    uint64_t ping_ms, idle_ms;
    struct hy_ws_backoff bo;
    unsigned attempt_timeout_ms;
    struct hy_ws_client_ctx own, *xctx;
    struct hy_ws_url url; /* host, host:port (Host header and peer), path, port */
    char *name;
    bool stopping, stopped;
    int depth;         /* user callbacks running */
    uv_timer_t *timer; /* next attempt, an attempt's watchdog, a deferred stop */
    uv_timer_t *tick;  /* keepalive and close deadlines while connected */
    unsigned attempt, last_delay_ms;
    uint64_t opened_ms, attempt_ms, last_rx_ms, close_deadline_ms;
    /* the attempt or connection under way */
    enum phase phase;
    struct sock *sock;
    struct resolve *res;
    WOLFSSL *ssl;
    const uint8_t *in; /* ciphertext not yet taken by wolfSSL */
    size_t in_len;
    bool eof;
    size_t wq; /* bytes in uv_write requests not yet done */
    char key[25];
    char *hs; /* the upgrade response so far */
    size_t hs_len;
    struct hy_wsf_parser parser;
    bool want_ping, ping_sent, want_pong;
    uint8_t pong[HY_WSF_CONTROL_MAX];
    size_t pong_len;
    bool verify_failed;
    char tls_why[128];
};

/* Monotonic milliseconds. */
uint64_t hy_wsu_now_ms(void);
/* n bytes from the kernel's random source (aborts if it has none). */
void hy_wsu_random(void *p, size_t n);
/* The client's timers (cl->timer, cl->tick) fire here. */
void hy_wsu_on_timer(uv_timer_t *t);
/* Ends the attempt or connection: frees its socket and TLS, reports it
 * (on_close) and schedules the next attempt. */
void hy_wsu_teardown(struct hy_ws_client *cl, const char *why);
/* Writes what is due while the socket keeps up. */
void hy_wsu_pump(struct hy_ws_client *cl);
/* Plaintext from the server: the upgrade response, then frames. False
 * once the connection is torn down. */
bool hy_wsu_plain(struct hy_ws_client *cl, const uint8_t *data, size_t len);
/* Frees the queued messages. */
void hy_wsu_drop_queue(struct hy_ws_conn *c);
/* Copies a close reason, printable ASCII only (it is logged). */
void hy_wsu_set_reason(struct hy_ws_conn *c, const void *p, size_t n);

#endif
