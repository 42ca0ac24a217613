/* TLS 1.3 session resumption between sidecars, at the level of wolfSSL
 * contexts and sessions (no sockets, no connections: proxy_tls.c wires it
 * to the proxy, tests drive it in memory).
 *
 * Server side (inbound): session tickets sealed with ChaCha20-Poly1305
 * under keys that live in memory only, made at random, rotated every
 * rotate_ms and accepted for lifetime_ms after their rotation, all
 * forgotten when the trust bundle changes. A ticket carries no identity:
 * the caller's (the URI SANs of the certificate its first handshake
 * showed) stays here, in a bounded ring of slots the ticket names, so a
 * resumed connection is checked against the current permissions like a
 * full one. Unknown key, expired key, bad seal, forgotten slot or a
 * caller the hook refuses: the ticket is rejected and the handshake is a
 * full one.
 *
 * Client side (outbound): the newest session per upstream key (endpoint
 * and SNI) with the peer's SPIFFE ID its full handshake verified, at most
 * max entries (the least recently used goes), each until its lifetime,
 * and only for the TLS generation (certificate and trust bundle) that made
 * it.
 *
 * Both are shared by the proxy's workers: one mutex each, held for
 * lookups and copies only (the sealing runs outside it). */
#ifndef HY_PROXY_RESUME_H
#define HY_PROXY_RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#define HY_PX_TICKET_ROTATE_MS (30u * 60 * 1000)   /* a new ticket key this often */
#define HY_PX_TICKET_LIFETIME_MS (60u * 60 * 1000) /* a ticket is good this long */
#define HY_PX_TICKET_SLOTS 8192                    /* callers' identities kept for tickets */
#define HY_PX_SESSIONS_MAX 1024                    /* upstream sessions an outbound keeps */
#define HY_PX_RESUME_IDS_MAX 4096                  /* bytes of a caller's URIs ('\n'-joined) kept */

/* What the ticket sealer asks of the proxy, per connection (ssl). */
struct hy_px_ticket_hooks {
    /* The identity of ssl's peer to keep with a ticket issued on it: its
     * URI SANs joined by '\n' into buf; false if it has none (the ticket
     * is issued, and refused when it comes back). */
    bool (*identity)(WOLFSSL *ssl, char *buf, size_t size);
    /* A ticket resumes ssl for the peer whose identity is ids: false
     * refuses it (a full handshake follows). */
    bool (*resume)(WOLFSSL *ssl, const char *ids);
};

struct hy_series;
struct hy_px_tickets;

/* Why a ticket was refused (a full handshake follows). */
enum hy_px_ticket_refusal {
    HY_PX_TICKET_UNKNOWN_KEY, /* another issuer's, or a key forgotten */
    HY_PX_TICKET_EXPIRED,     /* its key is past its lifetime */
    HY_PX_TICKET_BAD_SEAL,    /* altered, or not ours */
    HY_PX_TICKET_NO_IDENTITY, /* its caller's slot was reused or expired */
    HY_PX_TICKET_DENIED,      /* the hook refused the caller */
    HY_PX_TICKET_REFUSALS
};

struct hy_px_tickets_cfg {
    uint64_t rotate_ms, lifetime_ms; /* 0: the defaults above */
    size_t slots;                    /* 0: HY_PX_TICKET_SLOTS */
    uint64_t (*now_ms)(void);        /* NULL: hy_agent_now_ms (a monotonic clock) */
    struct hy_px_ticket_hooks hooks;
    struct hy_series *refused[HY_PX_TICKET_REFUSALS]; /* counted there too (NULL: not) */
};

/* 0 and *out, or HY_ENOMEM. */
int hy_px_tickets_new(const struct hy_px_tickets_cfg *cfg, struct hy_px_tickets **out);
void hy_px_tickets_free(struct hy_px_tickets *t);
/* ctx (a server context) issues and takes t's tickets; its session
 * timeout becomes t's lifetime. 0 or HY_ECRYPTO. */
int hy_px_tickets_use(struct hy_px_tickets *t, WOLFSSL_CTX *ctx);
/* The trust bundle the contexts using t verify with (a hash of it): when
 * it differs from the last one given, every key and identity is forgotten
 * (tickets issued so far are refused). True when that happened. */
bool hy_px_tickets_trust(struct hy_px_tickets *t, uint64_t trust);
/* Forgets every key and identity now. */
void hy_px_tickets_reset(struct hy_px_tickets *t);
/* Tickets refused since the start, by why (for tests). */
uint64_t hy_px_tickets_refused(struct hy_px_tickets *t, enum hy_px_ticket_refusal why);
const char *hy_px_ticket_refusal_name(enum hy_px_ticket_refusal why);

struct hy_px_sessions;

/* max 0: HY_PX_SESSIONS_MAX; lifetime_ms 0: HY_PX_TICKET_LIFETIME_MS (the
 * most a session is kept, less when the ticket says so); now_ms NULL:
 * hy_agent_now_ms. 0 and *out, or HY_ENOMEM. */
int hy_px_sessions_new(size_t max, uint64_t lifetime_ms, uint64_t (*now_ms)(void),
                       struct hy_px_sessions **out);
void hy_px_sessions_free(struct hy_px_sessions *s);
/* Keeps a copy of sess (one with a ticket; others are ignored) as key's
 * newest, with the SPIFFE ID of the peer that issued it and the TLS
 * generation gen of the context that made it. */
void hy_px_sessions_put(struct hy_px_sessions *s, const char *key, WOLFSSL_SESSION *sess,
                        const char *peer_id, uint64_t gen);
/* Sets key's session on ssl (not yet connected) if there is one of
 * generation gen and still fresh: true and the peer's SPIFFE ID into
 * peer_id. An entry of another generation or expired is dropped. */
bool hy_px_sessions_resume(struct hy_px_sessions *s, const char *key, uint64_t gen, WOLFSSL *ssl,
                           char *peer_id, size_t size);
/* Forgets key's session (its resumption failed). */
void hy_px_sessions_drop(struct hy_px_sessions *s, const char *key);
size_t hy_px_sessions_count(struct hy_px_sessions *s);

/* FNV-1a 64 of a string, for TLS generations. */
uint64_t hy_px_resume_hash(uint64_t h, const char *s);
#define HY_PX_HASH_INIT 0xcbf29ce484222325ull

#endif
