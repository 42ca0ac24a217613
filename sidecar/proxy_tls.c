/* TLS for the proxy: wolfSSL's native API driven over libuv without
 * blocking. Ciphertext read from the socket waits in the connection's
 * buffer until wolfSSL asks for it; what wolfSSL sends is queued on the
 * socket at once. wolfSSL stays in this file. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "error.h"
#include "metrics.h"
#include "proxy_int.h"
#include "proxy_resume.h"
#include "poison.h"

/* ----- the cheapest safe primitives -----
 * Measured with bench/bench_tls_prims.c on Debian's wolfSSL 5.5.4 (no
 * AES-NI, generic ECC math): ChaCha20-Poly1305 ~290 MB/s against
 * AES-128-GCM's ~100; X25519 ~5,000 exchanges/s against P-256's ~740.
 * AES-GCM leads only where wolfSSL was built with AES-NI and the CPU has
 * it; X25519 leads wherever the build has it. The others stay, after, for
 * peers that only speak them. */

static struct hy_px_tls_choice choice;
static pthread_once_t choice_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
#ifdef WOLFSSL_AESNI
    bool build = true;
#else
    bool build = false;
#endif
    bool cpu = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
    if (build && cpu) {
        choice.ciphers = "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256:"
                         "TLS13-AES256-GCM-SHA384";
        choice.suite = "TLS13-AES128-GCM-SHA256";
        choice.why = "aesni";
    } else {
        choice.ciphers = "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:"
                         "TLS13-AES256-GCM-SHA384";
        choice.suite = "TLS13-CHACHA20-POLY1305-SHA256";
        choice.why = build ? "no_aesni_cpu" : "no_aesni_build";
    }
#ifdef HAVE_CURVE25519
    choice.group = "X25519";
#else
    choice.group = "P-256";
#endif
}

const struct hy_px_tls_choice *hy_px_tls_choice(void)
{
    pthread_once(&choice_once, choose);
    return &choice;
}

static int set_groups(WOLFSSL_CTX *ctx)
{
#ifdef HAVE_CURVE25519
    int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
#else
    int groups[] = {WOLFSSL_ECC_SECP256R1};
#endif
    return wolfSSL_CTX_set_groups(ctx, groups, (int)(sizeof(groups) / sizeof(groups[0])));
}

int hy_px_tls_global_init(void)
{
    return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : HY_ECRYPTO;
}

void hy_px_tls_global_fini(void)
{
    wolfSSL_Cleanup();
}

void hy_px_tls_thread_fini(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free(); /* the thread's cache of fixed-point tables (wolfSSL_Cleanup: its own) */
#endif
}

/* wolfSSL asks for ciphertext: hand it what the socket brought. */
static int on_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct hy_px_conn *c = ctx;
    (void)ssl;
    size_t avail = c->rlen - c->roff;
    if (!avail)
        return c->tls->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = avail < (size_t)sz ? avail : (size_t)sz;
    memcpy(buf, c->rbuf + c->roff, n);
    c->roff += n;
    if (c->roff == c->rlen)
        c->roff = c->rlen = 0;
    return (int)n;
}

/* wolfSSL sends: queue it all on the socket (backpressure is the relay's). */
static int on_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct hy_px_conn *c = ctx;
    (void)ssl;
    if (c->closing || c->tls->shut)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return hy_px_write(c, c->tls, buf, (size_t)sz) == 0 ? sz : WOLFSSL_CBIO_ERR_GENERAL;
}

/* Each '\n'-separated URI of ids into peer; the first spiffe:// one into
 * id (size bytes), if id. False if one is too long to take (cert_ids
 * keeps none such: a caller seen with fewer tags than it has could pass
 * a Deny on the others). */
static bool ids_tags(const char *ids, struct hy_permit_peer *peer, char *id, size_t size)
{
    bool all = true;
    if (id)
        id[0] = '\0';
    for (const char *p = ids; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char alt[HY_PX_ID_MAX];
        if (n < sizeof(alt)) {
            memcpy(alt, p, n);
            alt[n] = '\0';
            if (id && !id[0] && strncmp(alt, "spiffe://", 9) == 0)
                snprintf(id, size, "%s", alt);
            hy_permit_peer_add_uri(peer, alt);
        } else {
            all = false;
        }
        p += n + (nl != NULL);
    }
    return all;
}

/* The caller's SPIFFE ID (its first) into c->id and its tags, from '\n'-
 * joined URIs, then the inbound's verdict on them. */
static const char *ids_refusal(struct hy_px_conn *c, const char *ids)
{
    struct hy_permit_peer *peer = calloc(1, sizeof(*peer));
    if (!peer)
        return "out of memory checking the caller";
    if (!ids_tags(ids, peer, c->id, sizeof(c->id))) {
        free(peer);
        return "the caller's identity has a URI too long to check";
    }
    const char *why = hy_px_inbound_refusal(c, peer);
    free(peer);
    return why;
}

/* The URI SANs of x, '\n'-joined, into buf; false if they do not fit (a
 * caller with that many gets tickets that are refused: full handshakes). */
static bool cert_ids(WOLFSSL_X509 *x, char *buf, size_t size)
{
    size_t len = 0;
    bool fits = true;
    buf[0] = '\0';
    for (char *alt; (alt = wolfSSL_X509_get_next_altname(x));) {
        size_t n = strlen(alt);
        if (len + n + 2 > size || n >= HY_PX_ID_MAX) {
            fits = false; /* the iterator still runs to its end (it keeps its place in x) */
            continue;
        }
        if (len)
            buf[len++] = '\n';
        memcpy(buf + len, alt, n + 1);
        len += n;
    }
    return fits;
}

/* The caller's SPIFFE ID (its first) into c->id and its tags, then the
 * inbound's verdict on them. */
static const char *peer_refusal(struct hy_px_conn *c, WOLFSSL_X509 *x)
{
    struct hy_permit_peer *peer = calloc(1, sizeof(*peer));
    if (!peer)
        return "out of memory checking the caller";
    c->id[0] = '\0';
    for (char *alt; (alt = wolfSSL_X509_get_next_altname(x));) {
        if (!c->id[0] && strncmp(alt, "spiffe://", 9) == 0 && strlen(alt) < sizeof(c->id))
            snprintf(c->id, sizeof(c->id), "%s", alt);
        hy_permit_peer_add_uri(peer, alt);
    }
    const char *why = hy_px_inbound_refusal(c, peer);
    free(peer);
    return why;
}

const char *hy_px_tls_peer_refusal(struct hy_px_conn *c)
{
    if (c->resumed && c->peer_ids)
        return ids_refusal(c, c->peer_ids);
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
    if (!x) {
        c->id[0] = '\0';
        return "the peer sent no certificate";
    }
    const char *why = peer_refusal(c, x);
    wolfSSL_X509_free(x); /* get_peer_certificate takes a reference (OPENSSL_EXTRA) */
    return why;
}

/* ----- resumption (proxy_resume.h) ----- */

/* The ticket sealer's hooks: the inbound connection's caller, from its
 * certificate or from the ticket it resumed with. */
static bool ticket_identity(WOLFSSL *ssl, char *buf, size_t size)
{
    struct hy_px_conn *c = wolfSSL_GetIOReadCtx(ssl);
    if (!c)
        return false;
    if (c->peer_ids) {
        snprintf(buf, size, "%s", c->peer_ids);
        return strlen(c->peer_ids) < size;
    }
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(ssl);
    if (!x)
        return false;
    bool ok = cert_ids(x, buf, size);
    wolfSSL_X509_free(x);
    return ok;
}

/* A ticket resumes an inbound connection: its caller is checked against
 * the inbound's permissions now, as a certificate would be. wolfSSL may
 * ask once per suite: decided once. */
static bool ticket_resume(WOLFSSL *ssl, const char *ids)
{
    struct hy_px_conn *c = wolfSSL_GetIOReadCtx(ssl);
    if (!c || c->dir != HY_PX_IN)
        return false;
    if (c->resume_verdict)
        return c->resume_verdict > 0;
    const char *why = ids_refusal(c, ids);
    c->resume_verdict = -1;
    if (why) {
        hy_log(HY_LOG_DEBUG, "dp", "inbound %u: a session ticket of %s refused: %s",
               (unsigned)c->l->port, c->id[0] ? c->id : "-", why);
        c->id[0] = '\0'; /* the full handshake's certificate says again */
        return false;
    }
    if (!(c->peer_ids = strdup(ids)))
        return false;
    c->resume_verdict = 1;
    c->peer_allowed = true;
    return true;
}

/* The outbound's new session: kept for its endpoint and SNI once the
 * peer's identity was checked (a ticket comes after the handshake). */
static int on_new_session(WOLFSSL *ssl, WOLFSSL_SESSION *sess)
{
    struct hy_px_conn *c = wolfSSL_GetIOReadCtx(ssl);
    if (c && c->dir == HY_PX_OUT && c->resume_key && c->peer_verified && !c->closing)
        hy_px_sessions_put(c->w->p->sessions, c->resume_key, sess, c->id, c->tls_gen);
    return 0; /* the session stays wolfSSL's: we keep a copy */
}

int hy_px_tls_resume_new(struct hy_proxy *p, struct hy_metrics *m)
{
    struct hy_metric *hs = hy_metric_counter(
        m, "hypha_dp_tls_handshakes_total",
        "TLS handshakes completed, by direction and mode (full, or resumed from a session)", 2,
        "direction", "mode");
    struct hy_metric *info =
        hy_metric_gauge(m, "hypha_dp_tls_cipher_info",
                        "The TLS 1.3 suite and key exchange group the sidecar prefers, and why (1)",
                        3, "suite", "group", "reason");
    struct hy_metric *refused = hy_metric_counter(
        m, "hypha_dp_tls_tickets_refused_total",
        "Session tickets the inbound refused (a full handshake followed), by why: unknown_key "
        "(another issuer's, or keys replaced on a trust change), expired, bad_seal, "
        "no_identity, denied (the caller is no longer allowed)",
        1, "reason");
    if (!hs || !info || !refused)
        return HY_ENOMEM;
    for (int d = HY_PX_IN; d <= HY_PX_OUT; d++)
        for (int r = 0; r < 2; r++)
            if (!(p->m.handshakes[d][r] =
                      hy_metric_series(hs, hy_px_dir_name(d), r ? "resumed" : "full")))
                return HY_ENOMEM;
    const struct hy_px_tls_choice *ch = hy_px_tls_choice();
    struct hy_series *one = hy_metric_series(info, ch->suite, ch->group, ch->why);
    if (!one)
        return HY_ENOMEM;
    hy_series_set(one, 1);
    const char *knob = getenv("HYPHA_DP_TLS_RESUMPTION");
    if (knob && knob[0] && strcmp(knob, "1") != 0 && strcmp(knob, "on") != 0) {
        if (strcmp(knob, "0") != 0 && strcmp(knob, "off") != 0) {
            hy_log(HY_LOG_ERROR, "dp",
                   "HYPHA_DP_TLS_RESUMPTION=\"%.40s\": expected on or off (1 or 0)", knob);
            return HY_EINVAL;
        }
        hy_log(HY_LOG_WARN, "dp",
               "TLS session resumption is off (HYPHA_DP_TLS_RESUMPTION=%s): every connection "
               "between sidecars does a full handshake",
               knob);
        return 0;
    }
    struct hy_px_tickets_cfg cfg = {
        .hooks = {.identity = ticket_identity, .resume = ticket_resume},
    };
    for (int i = 0; i < HY_PX_TICKET_REFUSALS; i++)
        if (!(cfg.refused[i] = hy_metric_series(refused, hy_px_ticket_refusal_name(i))))
            return HY_ENOMEM;
    int rc = hy_px_tickets_new(&cfg, &p->tickets);
    return rc ? rc : hy_px_sessions_new(0, 0, NULL, &p->sessions);
}

void hy_px_tls_resume_free(struct hy_proxy *p)
{
    hy_px_tickets_free(p->tickets);
    hy_px_sessions_free(p->sessions);
    p->tickets = NULL;
    p->sessions = NULL;
}

/* The server's check of a client certificate, once wolfSSL verified its
 * chain: the leaf's SPIFFE ID against the inbound's permissions
 * (hy_px_inbound_refusal). Refusing here fails the handshake, so the
 * caller gets an alert it can name instead of a connection that simply
 * closes; the reason stays on the connection for the access log. */
static int on_verify_client(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    if (!preverify || wolfSSL_X509_STORE_CTX_get_error_depth(store) != 0)
        return preverify;
    WOLFSSL *ssl =
        wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
    struct hy_px_conn *c = ssl ? wolfSSL_GetIOReadCtx(ssl) : NULL;
    WOLFSSL_X509 *x = wolfSSL_X509_STORE_CTX_get_current_cert(store);
    if (!c || !x)
        return preverify; /* checked again after the handshake */
    const char *why = peer_refusal(c, x);
    if (!why) {
        c->peer_allowed = true;
        return 1;
    }
    c->refusal = why;
    return 0;
}

static WOLFSSL_CTX *make_ctx(struct hy_proxy *p, const struct hy_sidecar_snapshot *s, bool server,
                             const char *chain)
{
    const Hypha__V1__DpConfig *cf = s->config;
    WOLFSSL_CTX *ctx =
        wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method());
    if (!ctx)
        return NULL;
    const char *what = NULL;
    if (wolfSSL_CTX_use_certificate_chain_buffer(ctx, (const unsigned char *)chain,
                                                 (long)strlen(chain)) != WOLFSSL_SUCCESS)
        what = "the certificate and its chain";
    else if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, (const unsigned char *)s->key,
                                               (long)strlen(s->key),
                                               WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        what = "the private key";
    else if (wolfSSL_CTX_load_verify_buffer(ctx, (const unsigned char *)cf->trust_bundle,
                                            (long)strlen(cf->trust_bundle),
                                            WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        what = "the trust bundle";
    else if (wolfSSL_CTX_set_cipher_list(ctx, hy_px_tls_choice()->ciphers) != WOLFSSL_SUCCESS)
        what = "the cipher list";
    else if (set_groups(ctx) != WOLFSSL_SUCCESS)
        what = "the key exchange groups";
    else if (server && p->tickets && hy_px_tickets_use(p->tickets, ctx) < 0)
        what = "the session ticket callback";
    else if (server && !p->tickets && wolfSSL_CTX_no_ticket_TLSv13(ctx) != 0) /* 0: done */
        what = "turning session tickets off";
    if (what) {
        hy_log(HY_LOG_ERROR, "dp", "config %s: wolfSSL does not take %s for the %s context",
               cf->version, what, server ? "server" : "client");
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    wolfSSL_CTX_set_verify(ctx,
                           server ? WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                  : WOLFSSL_VERIFY_PEER,
                           server ? on_verify_client : NULL);
    /* tickets only: the server keeps no sessions (proxy_resume.c keeps
     * what it must), the client its own cache per endpoint */
    wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    if (!server) {
        wolfSSL_CTX_sess_set_new_cb(ctx, on_new_session);
        /* a session is good as long as its ticket (OpenSSL's manner: it
         * answers the previous timeout) */
        (void)wolfSSL_CTX_set_timeout(ctx, HY_PX_TICKET_LIFETIME_MS / 1000);
    }
    wolfSSL_CTX_SetIORecv(ctx, on_recv);
    wolfSSL_CTX_SetIOSend(ctx, on_send);
    return ctx;
}

int hy_px_tls_build(struct hy_proxy *p, const struct hy_sidecar_snapshot *s, struct hy_px_tls *t)
{
    const Hypha__V1__DpConfig *cf = s->config;
    memset(t, 0, sizeof(*t));
    size_t lc = strlen(cf->cert), lch = cf->chain ? strlen(cf->chain) : 0;
    char *chain = malloc(lc + lch + 2);
    if (!chain)
        return HY_ENOMEM;
    memcpy(chain, cf->cert, lc);
    chain[lc] = '\n';
    if (lch)
        memcpy(chain + lc + 1, cf->chain, lch);
    chain[lc + 1 + lch] = '\0';
    t->server = make_ctx(p, s, true, chain);
    t->client = t->server ? make_ctx(p, s, false, chain) : NULL;
    free(chain);
    if (!t->client) {
        hy_px_tls_fini(t);
        return HY_ECRYPTO;
    }
    /* a new root forgets the ticket keys; the outbound's sessions are
     * bound to the certificate and trust that made them */
    uint64_t trust = hy_px_resume_hash(HY_PX_HASH_INIT, cf->trust_bundle);
    if (p->tickets)
        hy_px_tickets_trust(p->tickets, trust);
    t->gen = hy_px_resume_hash(hy_px_resume_hash(trust, s->fingerprint), cf->chain);
    return 0;
}

void hy_px_tls_fini(struct hy_px_tls *t)
{
    wolfSSL_CTX_free(t->server); /* sessions still using them keep them alive */
    wolfSSL_CTX_free(t->client);
    memset(t, 0, sizeof(*t));
}

/* A wolfSSL error as words, into c->why. */
static void set_why(struct hy_px_conn *c, const char *what, int err)
{
    char s[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)err, s, sizeof(s));
    snprintf(c->why, sizeof(c->why), "%s: %s (%d)", what, s, err);
}

int hy_px_tls_start(struct hy_px_conn *c, WOLFSSL_CTX *ctx, const char *sni)
{
    if (!ctx) {
        snprintf(c->why, sizeof(c->why), "no TLS context for this config");
        return HY_ECRYPTO;
    }
    if (!(c->ssl = wolfSSL_new(ctx))) {
        snprintf(c->why, sizeof(c->why), "out of memory");
        return HY_ENOMEM;
    }
    c->w->handshakes++; /* proxy_mem.c: not idle */
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    if (sni && sni[0] &&
        wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni)) !=
            WOLFSSL_SUCCESS) {
        snprintf(c->why, sizeof(c->why), "cannot set SNI %.100s", sni);
        return HY_ECRYPTO;
    }
    struct hy_px_sessions *cache = c->w->p->sessions;
    if (c->dir == HY_PX_OUT && cache && ctx == c->w->tls.client) {
        char key[HY_PX_RESUME_KEY], peer[HY_PX_ID_MAX];
        snprintf(key, sizeof(key), "%s|%s", c->endpoint, sni ? sni : "");
        free(c->resume_key);
        free(c->peer_ids);
        c->peer_ids = NULL;
        c->resume_key = strdup(key);
        c->tls_gen = c->w->tls.gen;
        if (c->resume_key &&
            hy_px_sessions_resume(cache, key, c->tls_gen, c->ssl, peer, sizeof(peer)))
            c->peer_ids = strdup(peer);
    }
    return 0;
}

int hy_px_tls_handshake(struct hy_px_conn *c)
{
    int r = c->dir == HY_PX_IN ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
    if (r == WOLFSSL_SUCCESS) {
        c->tls_done = true;
        c->resumed = wolfSSL_session_reused(c->ssl) == 1;
        if (!c->resumed) { /* what a refused ticket or session left is not the peer's */
            free(c->peer_ids);
            c->peer_ids = NULL;
            if (c->resume_verdict > 0) /* a ticket let in, then not used: the certificate's
                                        * check stands, made again after the handshake */
                c->peer_allowed = false;
        }
        hy_series_inc(c->m->handshakes[c->dir][c->resumed]);
        return 1;
    }
    int err = wolfSSL_get_error(c->ssl, r);
    if ((err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) && !c->tls->eof)
        return 0;
    if (c->dir == HY_PX_OUT && c->peer_ids && c->resume_key) /* next time: a full one */
        hy_px_sessions_drop(c->w->p->sessions, c->resume_key);
    if (err == WOLFSSL_ERROR_WANT_READ || err == SOCKET_PEER_CLOSED_E)
        snprintf(c->why, sizeof(c->why), "the peer closed the connection during the handshake");
    else
        set_why(c, "handshake", err);
    return HY_EVERIFY;
}

int hy_px_tls_read(struct hy_px_conn *c, uint8_t *out, size_t size)
{
    int r = wolfSSL_read(c->ssl, out, (int)size);
    if (r > 0)
        return r;
    int err = wolfSSL_get_error(c->ssl, r);
    if (err == WOLFSSL_ERROR_WANT_READ && !c->tls->eof)
        return 0;
    /* close_notify, or an EOF without one: both end the stream (a
     * truncation only the application could tell) */
    if (err == WOLFSSL_ERROR_ZERO_RETURN || err == WOLFSSL_ERROR_WANT_READ ||
        err == SOCKET_PEER_CLOSED_E || (c->tls->eof && c->rlen == c->roff))
        return HY_PX_TLS_EOF;
    WOLFSSL_ALERT_HISTORY h;
    if (wolfSSL_get_alert_history(c->ssl, &h) == WOLFSSL_SUCCESS && h.last_rx.level == alert_fatal)
        c->peer_alert = h.last_rx.code;
    set_why(c, "TLS read", err);
    return HY_ECRYPTO;
}

const char *hy_px_tls_alert_name(int code)
{
    return wolfSSL_alert_desc_string_long(code);
}

bool hy_px_tls_refused(const struct hy_px_conn *c)
{
    return c->peer_alert == bad_certificate || c->peer_alert == certificate_unknown ||
           c->peer_alert == access_denied || c->peer_alert == certificate_required;
}

int hy_px_tls_write(struct hy_px_conn *c, const uint8_t *data, size_t len)
{
    while (len) {
        int r = wolfSSL_write(c->ssl, data, (int)len);
        if (r <= 0) {
            set_why(c, "TLS write", wolfSSL_get_error(c->ssl, r));
            return HY_ECRYPTO;
        }
        data += r;
        len -= (size_t)r;
    }
    return 0;
}

void hy_px_tls_close_notify(struct hy_px_conn *c)
{
    if (c->ssl)
        wolfSSL_shutdown(c->ssl);
}

bool hy_px_tls_peer_tags(struct hy_px_conn *c, struct hy_permit_peer *peer)
{
    if (c->resumed && c->peer_ids) /* all of them: ticket_resume let in no less */
        return ids_tags(c->peer_ids, peer, NULL, 0);
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
    if (!x)
        return false;
    for (char *alt; (alt = wolfSSL_X509_get_next_altname(x));)
        hy_permit_peer_add_uri(peer, alt);
    wolfSSL_X509_free(x);
    return true;
}

bool hy_px_tls_peer_id(struct hy_px_conn *c)
{
    if (c->resumed && c->peer_ids) { /* outbound: as the session's full handshake saw it */
        snprintf(c->id, sizeof(c->id), "%s", c->peer_ids);
        return strncmp(c->id, "spiffe://", 9) == 0;
    }
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
    bool found = false;
    if (!x)
        return false;
    for (char *alt; !found && (alt = wolfSSL_X509_get_next_altname(x));)
        if (strncmp(alt, "spiffe://", 9) == 0 && strlen(alt) < sizeof(c->id)) {
            snprintf(c->id, sizeof(c->id), "%s", alt);
            found = true;
        }
    wolfSSL_X509_free(x); /* get_peer_certificate takes a reference (OPENSSL_EXTRA) */
    return found;
}

void hy_px_tls_free(struct hy_px_conn *c)
{
    wolfSSL_free(c->ssl);
    c->ssl = NULL;
    free(c->peer_ids);
    free(c->resume_key);
    c->peer_ids = c->resume_key = NULL;
}
