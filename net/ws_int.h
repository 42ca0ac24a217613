/* Inside the websocket module (ws*.c only): the connection both sides share
 * (send queue, message reassembly, close bookkeeping) and helpers. Includes
 * libwebsockets.h: never include wolfSSL headers next to it. */
#ifndef HY_WS_INT_H
#define HY_WS_INT_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws.h"

#define HY_WS_FRAG (64u << 10)     /* bytes per fragment sent, and lws's rx chunk size */
#define HY_WS_RX_KEEP (256u << 10) /* a reassembly buffer larger than this is freed */
#define HY_WS_HANDSHAKE_SEC 10     /* TLS + upgrade must finish within this */

/* One queued message: LWS_PRE bytes of headroom, then len bytes. Fragments
 * after the first are written from buf + LWS_PRE + off, with lws putting
 * their frame header over bytes already sent. */
struct hy_ws_msg {
    struct hy_ws_msg *next;
    size_t len, off;
    unsigned char buf[];
};

enum hy_ws_state {
    HY_WS_IDLE,       /* client: waiting to (re)connect; server: not yet established */
    HY_WS_CONNECTING, /* client: attempt in progress */
    HY_WS_OPEN,
    HY_WS_CLOSING, /* hy_ws_close or a limit asked to close; nothing more in or out */
};

/* What a server or client shares with its connections. */
struct hy_ws_ep {
    struct hy_ws_callbacks cb;
    void *ud;
    const char *side; /* "server" or "client", for logs */
    size_t max_message, max_queue;
    unsigned idle_sec;
    lws_retry_bo_t policy; /* ping/idle; lws keeps a pointer to it */
    int depth;             /* user callbacks running: a stop inside one is deferred */
    bool stopping;
    size_t nopen;
    /* pre-authentication limits (server only: gate; ws_server.c) */
    bool gate;                 /* new connections start unauthenticated */
    size_t max_message_unauth; /* hy_ws_limits, defaults filled in */
    size_t max_unauth;
    unsigned hello_timeout_ms;
    size_t nunauth;                               /* connections on the list below */
    struct hy_ws_conn *unauth_head, *unauth_tail; /* by open time: oldest deadline first */
    uint64_t unauth_refused, hello_timeouts, unauth_too_big;
    /* Keepalive by the endpoint (hy_ws_ep_own_pings), not by lws: lws keeps
     * each connection's ping deadline on one list sorted by time and moves
     * it there on every frame received, a walk over every connection: with
     * thousands of sidecars acking one change, most of a zone's CPU. */
    bool own_pings;
    uint64_t ping_ms;
    struct hy_ws_conn *live; /* every open connection (own_pings or not) */
};

struct hy_ws_conn {
    struct lws *wsi; /* NULL when not connected */
    struct hy_ws_ep *ep;
    enum hy_ws_state state;
    void *user;
    char peer[96];
    struct hy_ws_msg *head, *tail;
    size_t queued;
    uint8_t *rx; /* reassembly of a fragmented message */
    size_t rx_len, rx_cap;
    bool close_pending; /* hy_ws_close: send the close frame once the queue is empty */
    bool close_sent;    /* the close code below is ours */
    bool close_recv;    /* the close code below is the peer's */
    int close_code;
    char close_reason[HY_WS_REASON_MAX + 1];
    uint64_t last_valid_ms; /* when the peer last proved alive (open, pong) */
    bool authed;            /* false: on ep's unauth list, held to its limits */
    uint64_t opened_ms;     /* hy_ws_now_ms() at open: the Hello deadline counts from it */
    struct hy_ws_conn *unauth_prev, *unauth_next;
    struct hy_ws_conn *live_prev, *live_next; /* on ep->live while open */
    uint64_t last_rx_ms;                      /* anything received (own_pings) */
    bool want_ping, ping_sent;                /* own_pings: a ping to write; one is out */
};

/* The endpoint pings its connections itself (hy_ws_ep_sweep, from a timer
 * of its owner) instead of lws: a connection silent for ping_sec gets a
 * ping, one silent for idle_sec is closed ("no pong for N s"). */
void hy_ws_ep_own_pings(struct hy_ws_ep *ep);
/* One keepalive pass over ep's open connections (own_pings). */
void hy_ws_ep_sweep(struct hy_ws_ep *ep);

/* Validates and fills in defaults; logs and returns HY_EINVAL on bad limits. */
int hy_ws_ep_init(struct hy_ws_ep *ep, const struct hy_ws_limits *lim,
                  const struct hy_ws_callbacks *cb, void *ud, const char *side);

/* The connection reached ESTABLISHED on wsi: resets it and calls on_open. */
void hy_ws_conn_opened(struct hy_ws_conn *c, struct lws *wsi, const char *peer);
/* LWS_CALLBACK_(CLIENT_)RECEIVE: returns what the lws callback returns. */
int hy_ws_conn_receive(struct hy_ws_conn *c, const void *in, size_t len);
/* LWS_CALLBACK_(CLIENT_)RECEIVE_PONG. */
void hy_ws_conn_pong(struct hy_ws_conn *c);
/* LWS_CALLBACK_WS_PEER_INITIATED_CLOSE with its payload. */
void hy_ws_conn_peer_close(struct hy_ws_conn *c, const void *in, size_t len);
/* LWS_CALLBACK_(SERVER|CLIENT)_WRITEABLE: at most one lws_write. */
int hy_ws_conn_writeable(struct hy_ws_conn *c);
/* The socket is gone: frees the queue and buffers, calls on_close with what
 * ended it (dflt when no close frame was exchanged and it was not idle). */
void hy_ws_conn_closed(struct hy_ws_conn *c, const char *dflt);
/* Takes c off ep's unauthenticated list (ws_conn.c); nothing if it is not on it. */
void hy_ws_conn_unauth_unlink(struct hy_ws_conn *c);
/* Frees queued messages and the reassembly buffer. */
void hy_ws_conn_drop_buffers(struct hy_ws_conn *c);

/* Ends an lws context on a foreign libuv loop. lws 4.1 needs two
 * lws_context_destroy calls: the first closes every wsi and lws's own
 * handles, whose close callbacks run over the next two closing phases of
 * the loop; the second frees the context and must come after them (sooner,
 * those callbacks touch freed memory; never, the context leaks). The reaper
 * makes the first call, counts loop iterations with an idle handle, and
 * tells when the second is safe. */
struct hy_ws_reaper;
/* Destroys ctx once and starts counting. NULL only when out of memory (the
 * context is then left half destroyed and leaks). */
struct hy_ws_reaper *hy_ws_reaper_start(uv_loop_t *loop, struct lws_context *ctx);
/* The endpoint is being freed: frees the context now if it is safe, else
 * once the loop has run; the reaper frees itself. NULL is fine. */
void hy_ws_reaper_release(struct hy_ws_reaper *r);

/* A client SSL_CTX (TLS 1.2+) trusting the PEM certificates in ca_file
 * (NULL: none), to give lws as provided_client_ssl_ctx so that it never
 * makes one itself (ws_tls.c says why). Returns NULL with *failed false when
 * OpenSSL cannot be reached (leave it to lws then), NULL with *failed true
 * on an error it logged. Free with hy_ws_tls_ctx_free once the lws context
 * using it is destroyed (lws's connections hold their own references). */
SSL_CTX *hy_ws_tls_client_ctx(const char *ca_file, bool *failed);
void hy_ws_tls_ctx_free(SSL_CTX *ctx);

/* Monotonic milliseconds. */
uint64_t hy_ws_now_ms(void);
/* Copies into buf (and forgets) the reason of the last certificate
 * verification failure lws logged on this thread; "" if none. Returns buf. */
const char *hy_ws_take_tls_error(char *buf, size_t size);
/* Routes lws's log lines (errors and warnings) to hy_log. */
void hy_ws_log_init(void);

#endif
