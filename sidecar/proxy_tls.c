/* TLS for the proxy: wolfSSL's native API driven over libuv without
 * blocking. Ciphertext read from the socket waits in the connection's
 * buffer until wolfSSL asks for it; what wolfSSL sends is queued on the
 * socket at once. wolfSSL stays in this file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "error.h"
#include "proxy_int.h"
#include "poison.h"

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
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
    if (!x) {
        c->id[0] = '\0';
        return "the peer sent no certificate";
    }
    const char *why = peer_refusal(c, x);
    wolfSSL_X509_free(x); /* get_peer_certificate takes a reference (OPENSSL_EXTRA) */
    return why;
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

static WOLFSSL_CTX *make_ctx(const struct hy_sidecar_snapshot *s, bool server, const char *chain)
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
    else if (wolfSSL_CTX_set_cipher_list(ctx, HY_PX_CIPHERS) != WOLFSSL_SUCCESS)
        what = "the cipher list";
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
    wolfSSL_CTX_SetIORecv(ctx, on_recv);
    wolfSSL_CTX_SetIOSend(ctx, on_send);
    return ctx;
}

int hy_px_tls_build(const struct hy_sidecar_snapshot *s, struct hy_px_tls *t)
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
    t->server = make_ctx(s, true, chain);
    t->client = t->server ? make_ctx(s, false, chain) : NULL;
    free(chain);
    if (!t->client) {
        hy_px_tls_fini(t);
        return HY_ECRYPTO;
    }
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
    return 0;
}

int hy_px_tls_handshake(struct hy_px_conn *c)
{
    int r = c->dir == HY_PX_IN ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
    if (r == WOLFSSL_SUCCESS)
        return 1;
    int err = wolfSSL_get_error(c->ssl, r);
    if ((err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) && !c->tls->eof)
        return 0;
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
}
