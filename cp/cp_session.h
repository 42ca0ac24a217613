/* The websocket session layer of the two control-plane servers: the KDS
 * server (global/kds_server.c, where zones connect) and the DP server
 * (zone/dp_server.c, where sidecars and ingresses connect). It holds what
 * both do alike, once: the wss listener with its certificate and the
 * pre-Hello limits a stranger is held to, the list of sessions from open to
 * close, admission (the token's jti and expiry kept, the limits lifted),
 * the token's liveness afterwards (re-checked when a TokenRevocation is
 * written, and by a timer at the earliest expiry), the store watch, sending
 * with a cap on what a slow peer may queue, Reject-and-close, and the
 * metrics of all this. What a message means stays with each server.
 *
 * Threads: everything runs on the control plane's loop thread. */
#ifndef HY_CP_SESSION_H
#define HY_CP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"
#include "ws.h"

struct hy_addr;
struct hy_cp;
struct hy_store_changes;
struct hy_cp_session_server;

/* One connection and what the layer knows of it. A server's own session
 * struct starts with this one (its first member), so each converts one
 * pointer into the other. Valid from the connection's open until its
 * close; the fields are the layer's, for the server to read. */
struct hy_cp_session {
    struct hy_cp_session_server *srv;
    struct hy_ws_conn *conn;
    struct hy_cp_session *next;     /* the server's list, newest first (hy_cp_session_first) */
    void *ud;                       /* the config's ud: the server that owns it */
    bool admitted;                  /* its Hello was accepted (hy_cp_session_admit) */
    bool closing;                   /* closed by this side: nothing more is read or sent */
    char jti[HY_TOKEN_JTI_LEN + 1]; /* the token it was admitted with */
    int64_t exp;                    /* that token's expiry, Unix seconds; 0: none */
};

/* What a server tells the layer; every call is on the loop thread, and
 * may send and close (hy_cp_session_send, hy_cp_session_reject). */
struct hy_cp_session_ops {
    size_t size; /* bytes of the server's session struct (at least sizeof(struct
                    hy_cp_session)); the layer allocates it zeroed at open */
    /* One message of a session that is not closing. Required. */
    void (*on_message)(struct hy_cp_session *s, const uint8_t *data, size_t len);
    /* The connection ended (code and reason as net/ws.h's on_close); s is
     * unlinked and freed after it returns. May be NULL. */
    void (*on_close)(struct hy_cp_session *s, int code, const char *reason);
    /* Frees what the server's part of s holds (not s). May be NULL. */
    void (*fini)(struct hy_cp_session *s);
    /* Sends the protocol's Reject{reason} (hy_cp_session_send); the layer
     * then closes. Required. */
    void (*send_reject)(struct hy_cp_session *s, const char *reason);
    /* The token s was admitted with no longer holds (why: "token ... was
     * revoked", "token expired at ..."); counted already. The server logs,
     * records what it keeps, and ends s with hy_cp_session_reject. Required. */
    void (*token_dead)(struct hy_cp_session *s, const char *why);
    /* The store changed (after the layer closed the sessions whose token it
     * revoked): ch holds the changes since the last call, or is NULL when
     * they cannot be known (assume anything changed). May be NULL. */
    void (*on_store_change)(void *ud, const struct hy_store_changes *ch);
    /* The peer in log lines ("zone east", "sidecar default/web-1"), into
     * buf; returns buf. Required. */
    const char *(*name)(struct hy_cp_session *s, char *buf, size_t size);
};

struct hy_cp_session_config {
    struct hy_cp *cp;      /* its loop, store, metrics and data dir */
    const char *component; /* log component and certificate subdir: "kds", "dp" */
    const char *what;      /* the server in logs: "KDS", "DP server" */
    const char *hint;      /* who trusts a certificate made at first start */
    const char *tls_cert;  /* given certificate and key, or NULL: made in */
    const char *tls_key;   /* data_dir/component (hy_cp_server_cert) */
    const struct hy_addr *address;
    const char *subprotocol;    /* proto/wire.h */
    struct hy_ws_limits limits; /* the pre-Hello limits among them */
    const char *metric_prefix;  /* "hypha_kds", "hypha_dp_server" */
    const char *protocol;       /* in metric help: "KDS", "DP" */
    const char *peers;          /* in metric help: "Zone", "Sidecar and ingress" */
    const struct hy_cp_session_ops *ops;
    void *ud;
};

/* Makes the server and registers its metrics in cfg->cp's registry (after
 * whatever the caller registered before, so a gauge of its own renders
 * first): <prefix>_unauthenticated_connections, and the counters
 * <prefix>_unauthenticated_closed_total{reason} (too_many, hello_timeout,
 * too_big: the websocket layer's pre-Hello refusals),
 * <prefix>_hellos_refused_total and <prefix>_sessions_closed_total{reason}
 * (token_revoked, token_expired). cfg's strings and ops are borrowed for
 * the server's life. 0 with *out set (hy_cp_session_server_free), or
 * HY_ENOMEM with *out untouched. Listens on nothing yet. */
int hy_cp_session_server_new(const struct hy_cp_session_config *cfg,
                             struct hy_cp_session_server **out);
/* Takes the certificate, listens (logs "<what> listening on wss://..."),
 * watches the store and arms the expiry timer. 0 or a negative code
 * (logged); on failure what was started is undone by _stop and _free as
 * after a success. */
int hy_cp_session_server_start(struct hy_cp_session_server *srv);
/* Stops listening (each open session gets on_close), the watch and the
 * timer; run the loop afterwards before _free. NULL and repeats are fine. */
void hy_cp_session_server_stop(struct hy_cp_session_server *srv);
/* Frees the server and any session left. NULL is fine. */
void hy_cp_session_server_free(struct hy_cp_session_server *srv);
/* The port it listens on; 0 before it does. */
int hy_cp_session_server_port(const struct hy_cp_session_server *srv);

/* The newest session, or NULL; walk on with ->next. Borrowed. */
struct hy_cp_session *hy_cp_session_first(const struct hy_cp_session_server *srv);
/* The first admitted session, not closing and not except, for which
 * match(s, ud) holds, or NULL: "already connected". */
struct hy_cp_session *hy_cp_session_find(const struct hy_cp_session_server *srv,
                                         const struct hy_cp_session *except,
                                         bool (*match)(const struct hy_cp_session *s, void *ud),
                                         void *ud);

/* Accepts s with the token claims it showed: keeps their jti and expiry,
 * lifts the pre-Hello limits (hy_ws_conn_authenticated) and has the expiry
 * timer cover it. Call it once, before answering the Hello. Cannot fail. */
void hy_cp_session_admit(struct hy_cp_session *s, const struct hy_token_claims *claims);
/* Whether s's token still holds (hy_cp_token_live), for a server about to
 * act on what s asks. false after counting it and calling ops->token_dead,
 * which ends s. */
bool hy_cp_session_live(struct hy_cp_session *s);

/* Sends one message (hy_ws_send_msg; *len, may be NULL, its packed size).
 * A peer that lets its queue fill is closed (1008 "send queue full", a
 * log line), and -ENOBUFS returned; other returns as hy_ws_send_msg. */
int hy_cp_session_send(struct hy_cp_session *s, const ProtobufCMessage *m, size_t *len);
/* The same for a message already packed (len bytes at data). */
int hy_cp_session_send_packed(struct hy_cp_session *s, const void *data, size_t len);
/* Sends Reject{reason} (ops->send_reject) and closes with 1008 and reason
 * cut to fit; s is closing from here on. Counted in hellos_refused when s
 * was not admitted. The server logs it. Cannot fail. */
void hy_cp_session_reject(struct hy_cp_session *s, const char *reason);

/* What peer-sent text v may show in a log line (a name or an error with a
 * newline must not forge a line): printable ASCII, others become '?', cut
 * to size - 1 bytes, into buf; returns buf. NULL v gives "". Pure. */
const char *hy_cp_session_clean(const char *v, char *buf, size_t size);

#endif
