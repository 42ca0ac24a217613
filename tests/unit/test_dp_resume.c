/* Unit tests of TLS 1.3 session resumption between sidecars
 * (sidecar/proxy_resume.c), with real wolfSSL client and server contexts
 * talking through memory: a resumed handshake after a full one, the
 * caller's identity handed back on resumption, a caller denied since its
 * first handshake falling back to a full one, tickets of another issuer
 * (another mesh's sidecar), of a forgotten trust bundle or of an expired
 * key refused, key rotation, and the outbound session cache's bounds,
 * expiry and generations; an altered ticket refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "ca.h"
#include "error.h"
#include "proxy_resume.h"
#include "poison.h"

/* ----- a fake clock ----- */

static uint64_t now_value = 1000000;

static uint64_t fake_now(void)
{
    return now_value;
}

/* ----- certificates: one mesh root, a client and a server leaf ----- */

struct leaf {
    char *cert, *key;
};

static struct hy_ca_pem root;
static struct leaf client_leaf, server_leaf;

static void make_leaf(const char *uri, struct leaf *out)
{
    struct hy_ca_pem csr = {0};
    assert_int_equal(hy_ca_make_csr("leaf", &csr), 0);
    const char *uris[] = {uri};
    assert_int_equal(
        hy_ca_sign_leaf(&root, csr.cert, (int64_t)time(NULL), 3600, uris, 1, &out->cert), 0);
    out->key = strdup(csr.key);
    assert_non_null(out->key);
    hy_ca_pem_fini(&csr);
}

static int group_setup(void **state)
{
    (void)state;
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return -1;
    if (hy_ca_make_root("mesh-default", (int64_t)time(NULL), 86400, &root) != 0)
        return -1;
    make_leaf("spiffe://default/web", &client_leaf);
    make_leaf("spiffe://default/backend", &server_leaf);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(client_leaf.cert);
    free(client_leaf.key);
    free(server_leaf.cert);
    free(server_leaf.key);
    hy_ca_pem_fini(&root);
    wolfSSL_Cleanup();
    return 0;
}

/* ----- a client and a server over memory ----- */

struct pipe_buf {
    uint8_t data[65536];
    size_t len;
};

static struct pipe_buf to_server, to_client;

static int mem_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct pipe_buf *p = ctx;
    if (!p->len)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = p->len < (size_t)sz ? p->len : (size_t)sz;
    memcpy(buf, p->data, n);
    memmove(p->data, p->data + n, p->len - n);
    p->len -= n;
    return (int)n;
}

static int mem_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct pipe_buf *p = ctx;
    if (p->len + (size_t)sz > sizeof(p->data))
        return WOLFSSL_CBIO_ERR_GENERAL;
    memcpy(p->data + p->len, buf, (size_t)sz);
    p->len += (size_t)sz;
    return sz;
}

static WOLFSSL_CTX *make_ctx(bool server, const struct leaf *l)
{
    WOLFSSL_CTX *ctx =
        wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method());
    assert_non_null(ctx);
    assert_int_equal(wolfSSL_CTX_use_certificate_chain_buffer(ctx, (const unsigned char *)l->cert,
                                                              (long)strlen(l->cert)),
                     WOLFSSL_SUCCESS);
    assert_int_equal(wolfSSL_CTX_use_PrivateKey_buffer(ctx, (const unsigned char *)l->key,
                                                       (long)strlen(l->key), WOLFSSL_FILETYPE_PEM),
                     WOLFSSL_SUCCESS);
    assert_int_equal(wolfSSL_CTX_load_verify_buffer(ctx, (const unsigned char *)root.cert,
                                                    (long)strlen(root.cert), WOLFSSL_FILETYPE_PEM),
                     WOLFSSL_SUCCESS);
    wolfSSL_CTX_set_verify(
        ctx, WOLFSSL_VERIFY_PEER | (server ? WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    /* as proxy_tls.c: no internal cache, X25519 first */
    wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
    assert_int_equal(wolfSSL_CTX_set_groups(ctx, groups, 2), WOLFSSL_SUCCESS);
    wolfSSL_CTX_SetIORecv(ctx, mem_recv);
    wolfSSL_CTX_SetIOSend(ctx, mem_send);
    return ctx;
}

/* The hooks: the caller's identity is its certificate's (the test knows
 * it), a resumption is refused while deny is set. */
static bool deny;
static char resumed_ids[HY_PX_RESUME_IDS_MAX];

static bool hook_identity(WOLFSSL *ssl, char *buf, size_t size)
{
    (void)ssl;
    snprintf(buf, size, "spiffe://default/web\nspiffe://default/web?tag=1");
    return true;
}

static bool hook_resume(WOLFSSL *ssl, const char *ids)
{
    (void)ssl;
    snprintf(resumed_ids, sizeof(resumed_ids), "%s", ids);
    return !deny;
}

static struct hy_px_tickets *tickets_new(void)
{
    struct hy_px_tickets_cfg cfg = {
        .rotate_ms = 60000,
        .lifetime_ms = 100000,
        .slots = 8,
        .now_ms = fake_now,
        .hooks = {.identity = hook_identity, .resume = hook_resume},
    };
    struct hy_px_tickets *t;
    assert_int_equal(hy_px_tickets_new(&cfg, &t), 0);
    return t;
}

struct run {
    bool client_resumed, server_resumed;
    WOLFSSL_SESSION *session; /* the client's, with its ticket (free it) */
    char curve[32];           /* the key exchange's group */
};

static bool tamper_next; /* connect_once alters the ticket it offers */

/* One connection: the handshake, one byte each way (the client takes the
 * server's ticket with it), and the session the client ends with. */
static struct run connect_once(WOLFSSL_CTX *sctx, WOLFSSL_CTX *cctx, WOLFSSL_SESSION *resume)
{
    to_server.len = to_client.len = 0;
    WOLFSSL *s = wolfSSL_new(sctx), *c = wolfSSL_new(cctx);
    assert_non_null(s);
    assert_non_null(c);
    wolfSSL_SetIOReadCtx(s, &to_server);
    wolfSSL_SetIOWriteCtx(s, &to_client);
    wolfSSL_SetIOReadCtx(c, &to_client);
    wolfSSL_SetIOWriteCtx(c, &to_server);
    if (resume)
        assert_int_equal(wolfSSL_set_session(c, resume), WOLFSSL_SUCCESS);
    if (resume && tamper_next) { /* one bit of the sealed part flipped */
        unsigned char ticket[512];
        word32 len = sizeof(ticket);
        assert_int_equal(wolfSSL_get_SessionTicket(c, ticket, &len), WOLFSSL_SUCCESS);
        assert_true(len > 60);
        ticket[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2 + 10] ^= 0x01;
        assert_int_equal(wolfSSL_set_SessionTicket(c, ticket, len), WOLFSSL_SUCCESS);
        tamper_next = false;
    }
    bool cdone = false, sdone = false;
    for (int i = 0; i < 20 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = wolfSSL_connect(c);
            if (r == WOLFSSL_SUCCESS)
                cdone = true;
            else
                assert_int_equal(wolfSSL_get_error(c, r), WOLFSSL_ERROR_WANT_READ);
        }
        if (!sdone) {
            int r = wolfSSL_accept(s);
            if (r == WOLFSSL_SUCCESS)
                sdone = true;
            else
                assert_int_equal(wolfSSL_get_error(s, r), WOLFSSL_ERROR_WANT_READ);
        }
    }
    assert_true(cdone && sdone);
    char b;
    assert_int_equal(wolfSSL_write(s, "s", 1), 1);
    assert_int_equal(wolfSSL_read(c, &b, 1), 1);
    assert_int_equal(wolfSSL_write(c, "c", 1), 1);
    assert_int_equal(wolfSSL_read(s, &b, 1), 1);
    struct run out = {
        .client_resumed = wolfSSL_session_reused(c) == 1,
        .server_resumed = wolfSSL_session_reused(s) == 1,
        .session = wolfSSL_get1_session(c),
    };
    const char *curve = wolfSSL_get_curve_name(c);
    snprintf(out.curve, sizeof(out.curve), "%s", curve ? curve : "-");
    wolfSSL_free(c);
    wolfSSL_free(s);
    return out;
}

/* ----- tests ----- */

/* The client learns of each ticket as it comes (proxy_tls.c keeps it
 * then): the session is wolfSSL's, not ours to keep. */
static int new_sessions;

static int on_new_session(WOLFSSL *ssl, WOLFSSL_SESSION *sess)
{
    (void)ssl;
    new_sessions += wolfSSL_SESSION_has_ticket(sess) == 1;
    return 0;
}

static void test_resumes_with_identity(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *t = tickets_new();
    WOLFSSL_CTX *sctx = make_ctx(true, &server_leaf), *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(t, sctx), 0);
    wolfSSL_CTX_sess_set_new_cb(cctx, on_new_session);
    new_sessions = 0;
    struct run full = connect_once(sctx, cctx, NULL);
    assert_int_equal(new_sessions, 1);
    assert_string_equal(full.curve, "X25519"); /* the client's first key share: no retry */
    assert_false(full.client_resumed);
    assert_false(full.server_resumed);
    assert_non_null(full.session);
    assert_int_equal(wolfSSL_SESSION_has_ticket(full.session), 1);
    resumed_ids[0] = '\0';
    struct run again = connect_once(sctx, cctx, full.session);
    assert_true(again.client_resumed);
    assert_true(again.server_resumed);
    assert_int_equal(new_sessions, 2); /* a resumed connection gets a new ticket too */
    assert_string_equal(resumed_ids, "spiffe://default/web\nspiffe://default/web?tag=1");
    /* and the ticket of the resumed connection resumes too */
    struct run third = connect_once(sctx, cctx, again.session);
    assert_true(third.server_resumed);
    for (int i = 0; i < HY_PX_TICKET_REFUSALS; i++)
        assert_int_equal(hy_px_tickets_refused(t, i), 0);
    wolfSSL_SESSION_free(full.session);
    wolfSSL_SESSION_free(again.session);
    wolfSSL_SESSION_free(third.session);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(t);
}

static void test_denied_caller_gets_full_handshake(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *t = tickets_new();
    WOLFSSL_CTX *sctx = make_ctx(true, &server_leaf), *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(t, sctx), 0);
    struct run full = connect_once(sctx, cctx, NULL);
    deny = true; /* a Deny since the first handshake */
    struct run again = connect_once(sctx, cctx, full.session);
    assert_false(again.server_resumed);
    assert_false(again.client_resumed);
    assert_int_equal(hy_px_tickets_refused(t, HY_PX_TICKET_DENIED), 1);
    deny = false;
    wolfSSL_SESSION_free(full.session);
    wolfSSL_SESSION_free(again.session);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(t);
}

static void test_other_issuer_refused(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *a = tickets_new(), *b = tickets_new();
    WOLFSSL_CTX *sa = make_ctx(true, &server_leaf), *sb = make_ctx(true, &server_leaf);
    WOLFSSL_CTX *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(a, sa), 0);
    assert_int_equal(hy_px_tickets_use(b, sb), 0);
    struct run full = connect_once(sa, cctx, NULL);
    struct run other = connect_once(sb, cctx, full.session); /* another sidecar's keys */
    assert_false(other.server_resumed);
    assert_int_equal(hy_px_tickets_refused(b, HY_PX_TICKET_UNKNOWN_KEY), 1);
    /* a trust bundle change forgets the keys: the same ticket is refused by a */
    assert_false(hy_px_tickets_trust(a, 1));
    assert_true(hy_px_tickets_trust(a, 2));
    struct run after = connect_once(sa, cctx, full.session);
    assert_false(after.server_resumed);
    assert_int_equal(hy_px_tickets_refused(a, HY_PX_TICKET_UNKNOWN_KEY), 1);
    wolfSSL_SESSION_free(full.session);
    wolfSSL_SESSION_free(other.session);
    wolfSSL_SESSION_free(after.session);
    wolfSSL_CTX_free(sa);
    wolfSSL_CTX_free(sb);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(a);
    hy_px_tickets_free(b);
}

static void test_altered_ticket_refused(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *t = tickets_new();
    WOLFSSL_CTX *sctx = make_ctx(true, &server_leaf), *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(t, sctx), 0);
    struct run full = connect_once(sctx, cctx, NULL);
    tamper_next = true;
    struct run altered = connect_once(sctx, cctx, full.session);
    assert_false(altered.server_resumed);
    assert_int_equal(hy_px_tickets_refused(t, HY_PX_TICKET_BAD_SEAL), 1);
    struct run intact = connect_once(sctx, cctx, full.session); /* the real one still works */
    assert_true(intact.server_resumed);
    wolfSSL_SESSION_free(full.session);
    wolfSSL_SESSION_free(altered.session);
    wolfSSL_SESSION_free(intact.session);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(t);
}

static void test_rotation_and_expiry(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *t = tickets_new(); /* rotate 60 s, lifetime 100 s */
    WOLFSSL_CTX *sctx = make_ctx(true, &server_leaf), *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(t, sctx), 0);
    uint64_t start = now_value;
    struct run full = connect_once(sctx, cctx, NULL);
    now_value = start + 61000; /* a new key seals; the old one still opens */
    struct run rotated = connect_once(sctx, cctx, full.session);
    assert_true(rotated.server_resumed);
    now_value = start + 61000 + 99000; /* the first key is 160 s old: past 60 + 100 */
    struct run expired = connect_once(sctx, cctx, full.session);
    assert_false(expired.server_resumed);
    assert_int_equal(hy_px_tickets_refused(t, HY_PX_TICKET_EXPIRED), 1);
    wolfSSL_SESSION_free(full.session);
    wolfSSL_SESSION_free(rotated.session);
    wolfSSL_SESSION_free(expired.session);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(t);
    now_value = start;
}

static void test_identity_slots_bounded(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *t = tickets_new(); /* 8 slots */
    WOLFSSL_CTX *sctx = make_ctx(true, &server_leaf), *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(t, sctx), 0);
    struct run first = connect_once(sctx, cctx, NULL);
    for (int i = 0; i < 8; i++) { /* tickets enough to reuse the first one's slot */
        struct run r = connect_once(sctx, cctx, NULL);
        wolfSSL_SESSION_free(r.session);
    }
    struct run again = connect_once(sctx, cctx, first.session);
    assert_false(again.server_resumed);
    assert_true(hy_px_tickets_refused(t, HY_PX_TICKET_NO_IDENTITY) >= 1);
    wolfSSL_SESSION_free(first.session);
    wolfSSL_SESSION_free(again.session);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(t);
}

static void test_session_cache(void **state)
{
    (void)state;
    deny = false;
    struct hy_px_tickets *t = tickets_new();
    WOLFSSL_CTX *sctx = make_ctx(true, &server_leaf), *cctx = make_ctx(false, &client_leaf);
    assert_int_equal(hy_px_tickets_use(t, sctx), 0);
    struct run full = connect_once(sctx, cctx, NULL);
    struct hy_px_sessions *s;
    assert_int_equal(hy_px_sessions_new(3, 50000, fake_now, &s), 0);
    char key[32], peer[64];
    for (int i = 0; i < 5; i++) { /* bounded: the least recently used go */
        snprintf(key, sizeof(key), "10.0.0.%d:8080|sni", i);
        hy_px_sessions_put(s, key, full.session, "spiffe://default/backend", 7);
        now_value++;
    }
    assert_int_equal(hy_px_sessions_count(s), 3);
    WOLFSSL *ssl = wolfSSL_new(cctx);
    assert_false(hy_px_sessions_resume(s, "10.0.0.0:8080|sni", 7, ssl, peer, sizeof(peer)));
    assert_true(hy_px_sessions_resume(s, "10.0.0.4:8080|sni", 7, ssl, peer, sizeof(peer)));
    assert_string_equal(peer, "spiffe://default/backend");
    /* used: 2 is now the least recently used, and goes first */
    assert_true(hy_px_sessions_resume(s, "10.0.0.3:8080|sni", 7, ssl, peer, sizeof(peer)));
    hy_px_sessions_put(s, "new", full.session, "spiffe://default/backend", 7);
    assert_false(hy_px_sessions_resume(s, "10.0.0.2:8080|sni", 7, ssl, peer, sizeof(peer)));
    assert_true(hy_px_sessions_resume(s, "10.0.0.4:8080|sni", 7, ssl, peer, sizeof(peer)));
    /* another generation (a renewed certificate, a new trust bundle): dropped */
    assert_false(hy_px_sessions_resume(s, "10.0.0.4:8080|sni", 8, ssl, peer, sizeof(peer)));
    assert_int_equal(hy_px_sessions_count(s), 2);
    /* expiry */
    now_value += 50001;
    assert_false(hy_px_sessions_resume(s, "new", 7, ssl, peer, sizeof(peer)));
    assert_int_equal(hy_px_sessions_count(s), 0);
    /* a session without a ticket, or no peer: not kept */
    WOLFSSL_SESSION *none = wolfSSL_SESSION_new();
    hy_px_sessions_put(s, "x", none, "spiffe://default/backend", 7);
    hy_px_sessions_put(s, "y", full.session, "", 7);
    assert_int_equal(hy_px_sessions_count(s), 0);
    hy_px_sessions_put(s, "z", full.session, "spiffe://default/backend", 7);
    hy_px_sessions_drop(s, "z");
    assert_int_equal(hy_px_sessions_count(s), 0);
    wolfSSL_SESSION_free(none);
    wolfSSL_free(ssl);
    hy_px_sessions_free(s);
    wolfSSL_SESSION_free(full.session);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    hy_px_tickets_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resumes_with_identity),
        cmocka_unit_test(test_denied_caller_gets_full_handshake),
        cmocka_unit_test(test_other_issuer_refused),
        cmocka_unit_test(test_altered_ticket_refused),
        cmocka_unit_test(test_rotation_and_expiry),
        cmocka_unit_test(test_identity_slots_bounded),
        cmocka_unit_test(test_session_cache),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
