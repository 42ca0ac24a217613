/* Message-oriented secure websockets (wss) for KDS and other control-plane
 * streams: a server and a reconnecting client, each with its own
 * libwebsockets context on a libuv loop the caller owns. Every message is
 * one binary websocket message (one protobuf, not interpreted here); large
 * messages go out in fragments so one slow peer never blocks the loop.
 * This header does not include libwebsockets.h, so users need not.
 *
 * Threads: everything here runs on the loop's thread; call these functions
 * only from that thread. */
#ifndef HY_WS_H
#define HY_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wire.h"

#define HY_WS_MAX_MESSAGE_DEFAULT (4u << 20) /* 4 MiB */
/* Server side, before the session says the peer proved who it is
 * (hy_ws_conn_authenticated): what a stranger may cost. */
#define HY_WS_MAX_MESSAGE_UNAUTH_DEFAULT (64u << 10) /* 64 KiB: a Hello is a few KiB */
#define HY_WS_MAX_UNAUTH_DEFAULT 256                 /* connections waiting for their Hello */
#define HY_WS_HELLO_TIMEOUT_MS_DEFAULT 10000         /* to authenticate once open */
#define HY_WS_REASON_MAX 123                         /* bytes of a close reason (RFC 6455 5.5) */

/* Close codes (RFC 6455 7.4.1) this module uses or reports. */
enum {
    HY_WS_CLOSE_NORMAL = 1000,
    HY_WS_CLOSE_GOING_AWAY = 1001,
    HY_WS_CLOSE_PROTOCOL = 1002,
    HY_WS_CLOSE_UNSUPPORTED = 1003, /* a text frame: only binary messages are accepted */
    HY_WS_CLOSE_ABNORMAL = 1006,    /* reported only: no close frame (lost, refused, timed out) */
    HY_WS_CLOSE_POLICY = 1008,
    HY_WS_CLOSE_TOO_BIG = 1009,
    HY_WS_CLOSE_INTERNAL = 1011,
};

/* One websocket connection, server or client side. Server connections are
 * owned by the server and valid from on_open until on_close returns. A
 * client has exactly one hy_ws_conn for its whole life (hy_ws_client_conn),
 * reused by every connection attempt; it is open only between on_open and
 * on_close. */
struct hy_ws_conn;

/* What an endpoint tells its owner. ud is the config's ud. Every callback
 * runs on the loop thread; inside one, hy_ws_send and hy_ws_close are fine,
 * and so is hy_ws_*_stop (it is deferred to the loop), but not *_free. */
struct hy_ws_callbacks {
    /* The websocket handshake completed. peer is the remote IP address
     * (server side) or the URL's host:port (client side); borrowed for the
     * call (hy_ws_conn_peer keeps a copy). May be NULL. */
    void (*on_open)(void *ud, struct hy_ws_conn *c, const char *peer);
    /* One whole message, reassembled from its fragments. data is borrowed
     * for the call. May be NULL (messages are dropped). */
    void (*on_message)(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len);
    /* The connection ended: code and reason are the close frame that ended
     * it (ours or the peer's), or HY_WS_CLOSE_ABNORMAL with a description
     * ("connection lost", "no pong for 30 s", "server stopping") when none
     * was exchanged (lws 4.1 also drops a peer's close frame that arrives
     * while a server is still writing a large message). On a client it is
     * also called, with HY_WS_CLOSE_ABNORMAL and a description such as
     * "TLS: certificate verify failed: unable to get local issuer
     * certificate" or "connection refused or unreachable", for an attempt
     * that failed before on_open. reason is never NULL and is borrowed for
     * the call. After it returns, sends fail until the next on_open
     * (client), or the conn is gone (server). May be NULL. */
    void (*on_close)(void *ud, struct hy_ws_conn *c, int code, const char *reason);
};

/* Limits shared by both sides. Zero picks the default. */
struct hy_ws_limits {
    size_t max_message; /* largest message received, bytes; 0 = 4 MiB. Bigger ones close the
                           connection with 1009 and a reason. */
    size_t max_queue;   /* bytes queued for sending per connection; 0 = 4 * max_message + 1 MiB.
                           hy_ws_send fails past it. */
    unsigned ping_sec;  /* send a ping after this long without a pong; 0 = 30 */
    unsigned idle_sec;  /* close a connection with no pong for this long; 0 = 3 * ping_sec.
                           Must be more than ping_sec. */
    /* Server connections start unauthenticated, held to the three limits
     * below until the session calls hy_ws_conn_authenticated (a client's
     * connection is authenticated from the start: these do not apply). */
    size_t max_message_unauth; /* largest message before that, bytes; 0 = 64 KiB (and never
                                  more than max_message). Bigger ones close with 1009. */
    size_t max_unauth;         /* unauthenticated connections open at once; 0 = 256. One more is
                                  closed as soon as it opens (1008, "too many ...", never
                                  reaching on_open). */
    unsigned hello_timeout_ms; /* an unauthenticated connection is closed (1008, "no Hello
                                  within N s") this long after it opened; 0 = 10000 */
};

struct hy_ws_server_config {
    uv_loop_t *loop;         /* the caller's loop; the server joins it */
    const char *address;     /* "host:port" or "[v6]:port"; port 0 picks a free one */
    const char *tls_cert;    /* PEM file paths, both required: the server is wss only */
    const char *tls_key;     /* (the certificate file may hold the chain after the leaf) */
    const char *subprotocol; /* required, e.g. "hypha.kds.v1"; other or no subprotocol: refused */
    struct hy_ws_limits limits;
    struct hy_ws_callbacks cb;
    void *ud;
};

struct hy_ws_server;

/* Starts listening. Strings in cfg are borrowed for the call. Returns 0 and
 * sets *out (free with hy_ws_server_free), or HY_EINVAL (bad config, files
 * that cannot be read, or an address that cannot be bound: a log line says
 * which), or HY_ENOMEM; *out is untouched on failure. */
int hy_ws_server_new(const struct hy_ws_server_config *cfg, struct hy_ws_server **out);
/* The port the server listens on (useful with port 0); 0 if unknown. */
int hy_ws_server_port(const struct hy_ws_server *s);
/* Number of open websocket connections. */
size_t hy_ws_server_nconns(const struct hy_ws_server *s);
/* What the pre-authentication limits did, for logs and metrics. */
struct hy_ws_server_stats {
    size_t unauth;           /* open and not yet authenticated */
    uint64_t unauth_refused; /* closed at open: max_unauth were already waiting */
    uint64_t hello_timeouts; /* closed: not authenticated within hello_timeout_ms */
    uint64_t unauth_too_big; /* closed: a message over max_message_unauth before authentication */
};
/* Fills *out. Cannot fail; NULL s gives zeros. */
void hy_ws_server_stats(const struct hy_ws_server *s, struct hy_ws_server_stats *out);
/* Stops listening and drops every connection (on_close is called for each,
 * with HY_WS_CLOSE_ABNORMAL "server stopping"; peers see the socket
 * close, no close frame). lws closes its handles asynchronously: run the
 * loop (until it has no more active handles, or a few iterations) before
 * hy_ws_server_free. Inside one of this server's callbacks, the stop
 * happens on the next loop iteration. NULL and repeated calls are fine. */
void hy_ws_server_stop(struct hy_ws_server *s);
/* Frees the server, stopping it first if that was not done. What lws still
 * holds is released at once if the loop ran a few iterations since the
 * stop, else by the loop's next iterations (so run it before
 * uv_loop_close). Not from inside its own callbacks. NULL is fine. */
void hy_ws_server_free(struct hy_ws_server *s);

struct hy_ws_backoff {
    unsigned initial_ms; /* delay after the first failure; 0 = 500 */
    unsigned max_ms;     /* cap of the doubling delay; 0 = 30000 (initial_ms is cut to it) */
    unsigned jitter_pct; /* each delay is moved by a random +-jitter_pct %; 0 = 20, max 50 */
    unsigned reset_sec;  /* a connection that stayed open this long resets the delay; 0 = 10 */
};

#define HY_WS_ATTEMPT_TIMEOUT_MS_DEFAULT 30000 /* a connection attempt, TCP to upgrade */

/* One libwebsockets context that many clients share (struct
 * hy_ws_client_config's shared): one TLS setup and one descriptor table
 * instead of one per client. For a process with thousands of clients of
 * one server (the sidecar simulator); a process with a few clients needs
 * none. Every client on it has its subprotocol and its CA file. */
struct hy_ws_client_ctx;

/* Creates a shared context on loop. ca_file: PEM CA(s) its clients' server
 * must chain to (NULL only if every client skips verification); subprotocol
 * is required. Strings are borrowed for the call. Returns 0 and sets *out,
 * or HY_EINVAL (bad config, unreadable CA file: a log line says which) or
 * HY_ENOMEM; *out is untouched on failure. */
int hy_ws_client_ctx_new(uv_loop_t *loop, const char *ca_file, const char *subprotocol,
                         struct hy_ws_client_ctx **out);
/* Frees it: only once every client made on it is freed (its handles keep
 * the loop running until then: stop and free the clients, free it, then
 * run the loop). lws closes its
 * handles asynchronously, so run the loop (a few iterations) before
 * uv_loop_close. NULL is fine. */
void hy_ws_client_ctx_free(struct hy_ws_client_ctx *x);

struct hy_ws_client_config {
    uv_loop_t *loop;
    const char *url;         /* "wss://host:port/path" (IPv6 hosts are not verifiable in lws 4.1) */
    const char *name;        /* the server in log lines, e.g. "the global control plane";
                                NULL = the URL */
    const char *ca_file;     /* PEM CA(s) the server must chain to; required unless skip_verify.
                                System CAs are not trusted. Ignored with shared. */
    bool skip_verify;        /* accept any certificate (logs a WARN at every connect) */
    const char *subprotocol; /* required, e.g. "hypha.kds.v1"; with shared: NULL or shared's */
    struct hy_ws_limits limits;
    struct hy_ws_backoff backoff;
    /* An attempt not established (TCP, TLS, upgrade) this long after it
     * started is given up: on_close with HY_WS_CLOSE_ABNORMAL "no answer
     * within N s ...", then the backoff's retry. lws has its own timeouts
     * per step (10 s each); this bounds what they miss. 0 = 30000. */
    unsigned attempt_timeout_ms;
    /* NULL: the client makes its own lws context. Else the context it
     * shares with other clients (hy_ws_client_ctx_new), which must outlive
     * it; the loop must be the context's. */
    struct hy_ws_client_ctx *shared;
    struct hy_ws_callbacks cb;
    void *ud;
};

struct hy_ws_client;

/* Creates the client; it connects on the next loop iteration and keeps
 * reconnecting with jittered exponential backoff until stopped. Strings in
 * cfg are borrowed for the call. Returns 0 and sets *out (free with
 * hy_ws_client_free), or HY_EINVAL (bad URL or config, unreadable CA file:
 * a log line says which) or HY_ENOMEM; *out is untouched on failure. */
int hy_ws_client_new(const struct hy_ws_client_config *cfg, struct hy_ws_client **out);
/* The client's connection, valid until hy_ws_client_free; hy_ws_send on it
 * fails with -ENOTCONN while it is not open. Cannot fail. */
struct hy_ws_conn *hy_ws_client_conn(struct hy_ws_client *c);
/* True between on_open and on_close. */
bool hy_ws_client_is_open(const struct hy_ws_client *c);
/* The delay before the next attempt that was scheduled last, in ms (0
 * before any failure). For logs, metrics and tests. */
unsigned hy_ws_client_retry_delay_ms(const struct hy_ws_client *c);
/* Points the next attempts at url (same form as the config's; the TLS
 * setup and subprotocol stay): for a client given several addresses of one
 * service, called from on_close to move on. 0, HY_EINVAL (bad URL: the
 * client keeps its old one) or HY_ENOMEM. */
int hy_ws_client_set_url(struct hy_ws_client *c, const char *url);
/* Skips the wait of a scheduled reconnect (the backoff keeps growing).
 * Returns 0, or -EALREADY when the client is connecting or open, or
 * -ESHUTDOWN once stopped. */
int hy_ws_client_reconnect_now(struct hy_ws_client *c);
/* Stops reconnecting and drops the connection (on_close is called if it
 * was open or connecting). Same loop rules as hy_ws_server_stop. */
void hy_ws_client_stop(struct hy_ws_client *c);
/* Frees the client (stopping it first if needed); same rules as
 * hy_ws_server_free. */
void hy_ws_client_free(struct hy_ws_client *c);

/* Queues a copy of one message and asks to be told when the socket is
 * writable; it goes out in fragments, in order. Returns 0; -ENOTCONN if c
 * is not open or is closing; -ENOBUFS if it would take the connection's
 * queue past max_queue (the message is not queued; the caller decides
 * whether to close); HY_ENOMEM. */
int hy_ws_send(struct hy_ws_conn *c, const void *data, size_t len);
/* hy_ws_send of one protobuf message, packed (proto/wire.h); *len (may be
 * NULL) is its packed size. Same returns, -ENOMEM for out of memory. */
int hy_ws_send_msg(struct hy_ws_conn *c, const ProtobufCMessage *m, size_t *len);
/* Closes gracefully: what is queued goes out first, then a close frame
 * with code (1000-1003, 1007-1011 or 3000-4999; others become 1000) and
 * reason (cut to HY_WS_REASON_MAX bytes; NULL = ""). Messages that arrive
 * meanwhile are dropped; on_close follows once the peer answers, or at the
 * latest about 15 s later. A client then reconnects as after any close
 * (hy_ws_client_stop ends it for good). Returns 0, or -ENOTCONN if c is not
 * open or already closing. */
int hy_ws_close(struct hy_ws_conn *c, int code, const char *reason);
/* The session accepted the peer (its Hello and token checked): lifts the
 * pre-authentication limits of a server connection (max_message_unauth,
 * hello_timeout_ms) and stops counting it against max_unauth. Call it
 * once, before answering the Hello (the KDS and DP servers do). Sending
 * does not count: a server that speaks first lifts nothing by it. Client
 * connections and repeated calls: nothing. Cannot fail. */
void hy_ws_conn_authenticated(struct hy_ws_conn *c);
/* Whether c is authenticated (always true on a client). */
bool hy_ws_conn_is_authenticated(const struct hy_ws_conn *c);
/* Bytes queued and not yet handed to the socket. */
size_t hy_ws_conn_queued(const struct hy_ws_conn *c);
/* The peer as on_open saw it; "" before the first open. Owned by c. */
const char *hy_ws_conn_peer(const struct hy_ws_conn *c);
/* A pointer for the caller, NULL until set; kept across a client's
 * reconnects, gone with a server connection. Cannot fail. */
void hy_ws_conn_set_user(struct hy_ws_conn *c, void *user);
void *hy_ws_conn_user(const struct hy_ws_conn *c);

#endif
