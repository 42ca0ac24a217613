/* Unit tests of tokens: round trips of zone and dataplane tokens, the exact
 * JOSE header, every reason a token is refused (with crafted tokens), key
 * rotation, and key files (mode 0600, PEM that openssl reads). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base64.h"
#include "buf.h"
#include "error.h"
#include "token.h"
#include "poison.h"

#define HOUR 3600

static struct hy_token_key *key, *other_key;
static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    key = hy_token_key_generate();
    other_key = hy_token_key_generate();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_token.XXXXXX");
    return key && other_key && mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    hy_token_key_free(key);
    hy_token_key_free(other_key);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *in_tmp(const char *name)
{
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
    return p;
}

static struct hy_token_policy zone_policy(int64_t now)
{
    static const struct hy_token_key *keys[1];
    keys[0] = key;
    return (struct hy_token_policy){.keys = keys, .nkeys = 1, .now = now};
}

static char *zone_token(const char *zone, int64_t now, int64_t validity, char *jti)
{
    char *t = NULL;
    int rc = hy_token_sign_zone(key, zone, now, validity, &t, jti);
    if (rc != 0)
        fail_msg("hy_token_sign_zone: %s", hy_strerror(rc));
    return t;
}

/* Verifies and expects refusal for reason; returns the failure. */
static struct hy_token_failure refused(const char *token, size_t len,
                                       const struct hy_token_policy *p, enum hy_token_reason reason)
{
    struct hy_token_claims c;
    struct hy_token_failure why;
    int rc = hy_token_verify(token, len, p, &c, &why);
    if (rc != HY_EVERIFY || why.reason != reason)
        fail_msg("expected \"%s\", got rc %d reason \"%s\": %s", hy_token_reason_str(reason), rc,
                 hy_token_reason_str(why.reason), why.message);
    assert_null(c.jti); /* nothing handed out */
    assert_true(why.message[0] != '\0');
    return why;
}

static void refused_str(const char *token, const struct hy_token_policy *p,
                        enum hy_token_reason reason)
{
    refused(token, strlen(token), p, reason);
}

static char *b64(const char *s)
{
    char *out = malloc(hy_base64_encoded_size(strlen(s)));
    assert_non_null(out);
    hy_base64_encode((const uint8_t *)s, strlen(s), out, true);
    return out;
}

/* "b64(header).b64(claims).sig" with the parts given verbatim or as JSON. */
static char *craft(const char *header_json, const char *claims_b64, const char *sig_b64)
{
    char *h = b64(header_json);
    struct hy_buf b = {0};
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%s", h, claims_b64, sig_b64), 0);
    free(h);
    return b.data;
}

/* The parts of a token, copied. */
struct parts {
    char *h, *c, *s;
};

static struct parts split(const char *t)
{
    const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    struct parts p = {strndup(t, (size_t)(d1 - t)), strndup(d1 + 1, (size_t)(d2 - d1 - 1)),
                      strdup(d2 + 1)};
    assert_non_null(p.h);
    assert_non_null(p.c);
    assert_non_null(p.s);
    return p;
}

static void parts_free(struct parts *p)
{
    free(p->h);
    free(p->c);
    free(p->s);
}

static char *unb64(const char *s)
{
    size_t n = strlen(s), m;
    uint8_t *out = malloc(n + 4);
    assert_non_null(out);
    assert_true(hy_base64_decode(s, n, out, &m, true));
    out[m] = '\0';
    return (char *)out;
}

/* Changes one base64url char in the middle of s (stays canonical). */
static void flip(char *s)
{
    char *p = s + strlen(s) / 2;
    *p = *p == 'A' ? 'B' : 'A';
}

static void test_roundtrip_zone(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char jti[HY_TOKEN_JTI_LEN + 1];
    char *t = zone_token("east", now, 24 * HOUR, jti);
    assert_int_equal(strlen(jti), HY_TOKEN_JTI_LEN);
    assert_int_equal(strspn(jti, "0123456789abcdef"), HY_TOKEN_JTI_LEN);
    assert_null(strchr(t, '=')); /* unpadded */

    /* the header is exactly what other JWT libraries expect */
    struct parts p = split(t);
    char *h = unb64(p.h), *c = unb64(p.c);
    char want[128];
    snprintf(want, sizeof(want), "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             hy_token_key_kid(key));
    assert_string_equal(h, want);
    char claims[256];
    snprintf(claims, sizeof(claims),
             "{\"kind\":\"zone\",\"zone\":\"east\",\"jti\":\"%s\",\"iat\":%lld,\"nbf\":%lld,"
             "\"exp\":%lld}",
             jti, (long long)now, (long long)now, (long long)(now + 24 * HOUR));
    assert_string_equal(c, claims);
    free(h);
    free(c);
    parts_free(&p);

    struct hy_token_policy pol = zone_policy(now);
    struct hy_token_claims out;
    struct hy_token_failure why;
    assert_int_equal(hy_token_verify(t, strlen(t), &pol, &out, &why), 0);
    assert_int_equal(why.reason, HY_TOKEN_OK);
    assert_int_equal(out.kind, HY_TOKEN_KIND_ZONE);
    assert_string_equal(out.zone, "east");
    assert_string_equal(out.jti, jti);
    assert_int_equal(out.iat, now);
    assert_int_equal(out.nbf, now);
    assert_int_equal(out.exp, now + 24 * HOUR);
    assert_null(out.mesh);
    assert_int_equal(out.ntags, 0);
    hy_token_claims_fini(&out);
    hy_token_claims_fini(&out); /* safe twice */
    /* why may be NULL; the last second before exp is still good */
    pol.now = now + 24 * HOUR - 1;
    assert_int_equal(hy_token_verify(t, strlen(t), &pol, &out, NULL), 0);
    hy_token_claims_fini(&out);
    free(t);
}

static void test_roundtrip_dataplane(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char jti[HY_TOKEN_JTI_LEN + 1];
    assert_int_equal(hy_token_jti_new(jti), 0);
    struct hy_token_tag tags[] = {{"hypha.io/service", "backend"}, {"version", "v2"}};
    struct hy_token_claims c = {
        .kind = HY_TOKEN_KIND_DATAPLANE,
        .jti = jti,
        .iat = now,
        .nbf = now,
        .exp = now + HOUR,
        .zone = "east",
        .mesh = "default",
        .name = "backend-1",
        .tags = tags,
        .ntags = 2,
    };
    char *t;
    assert_int_equal(hy_token_sign(key, &c, &t), 0);
    struct hy_token_policy pol = zone_policy(now);
    pol.kind = HY_TOKEN_KIND_DATAPLANE;
    struct hy_token_claims out;
    assert_int_equal(hy_token_verify(t, strlen(t), &pol, &out, NULL), 0);
    assert_int_equal(out.kind, HY_TOKEN_KIND_DATAPLANE);
    assert_string_equal(out.mesh, "default");
    assert_string_equal(out.name, "backend-1");
    assert_string_equal(out.zone, "east");
    assert_int_equal(out.ntags, 2);
    assert_string_equal(out.tags[0].key, "hypha.io/service");
    assert_string_equal(out.tags[0].value, "backend");
    assert_string_equal(out.tags[1].key, "version");
    assert_string_equal(out.tags[1].value, "v2");
    hy_token_claims_fini(&out);

    /* a dataplane token is no zone token */
    pol.kind = HY_TOKEN_KIND_ZONE;
    struct hy_token_failure why = refused(t, strlen(t), &pol, HY_TOKEN_WRONG_KIND);
    assert_non_null(strstr(why.message, "dataplane token"));
    free(t);
}

static void test_sign_refuses(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char *t = NULL;
    assert_int_equal(hy_token_sign_zone(key, NULL, now, HOUR, &t, NULL), HY_EINVAL);
    assert_int_equal(hy_token_sign_zone(key, "", now, HOUR, &t, NULL), HY_EINVAL);
    assert_int_equal(hy_token_sign_zone(key, "east", now, 0, &t, NULL), HY_EINVAL);
    assert_int_equal(hy_token_sign_zone(key, "east", now, INT64_MAX, &t, NULL), HY_EINVAL);
    struct hy_token_claims c = {.kind = HY_TOKEN_KIND_DATAPLANE,
                                .jti = "abc",
                                .nbf = now,
                                .exp = now + 1,
                                .mesh = "default"};
    assert_int_equal(hy_token_sign(key, &c, &t), HY_EINVAL); /* no name */
    c.name = "dp";
    c.jti = "has space";
    assert_int_equal(hy_token_sign(key, &c, &t), HY_EINVAL);
    c.jti = "abc";
    c.exp = now;
    assert_int_equal(hy_token_sign(key, &c, &t), HY_EINVAL); /* exp <= nbf */
    assert_null(t);

    /* over the size limit */
    char *big = malloc(HY_TOKEN_MAX_LEN);
    assert_non_null(big);
    memset(big, 'x', HY_TOKEN_MAX_LEN - 1);
    big[HY_TOKEN_MAX_LEN - 1] = '\0';
    struct hy_token_tag tag = {"big", big};
    c.exp = now + 1;
    c.tags = &tag;
    c.ntags = 1;
    assert_int_equal(hy_token_sign(key, &c, &t), HY_ETOOBIG);
    assert_null(t);
    free(big);
}

static void test_tampered(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_token_policy pol = zone_policy(now);
    char *t = zone_token("east", now, HOUR, NULL);
    struct parts p = split(t);
    struct hy_buf b = {0};

    /* one byte of the claims */
    char *c = strdup(p.c);
    flip(c);
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%s", p.h, c, p.s), 0);
    refused_str(b.data, &pol, HY_TOKEN_BAD_SIGNATURE);
    hy_buf_fini(&b);
    free(c);

    /* claims rewritten to another zone, signature kept */
    char *claims = unb64(p.c);
    char *east = strstr(claims, "east");
    memcpy(east, "west", 4);
    char *c2 = b64(claims);
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%s", p.h, c2, p.s), 0);
    refused_str(b.data, &pol, HY_TOKEN_BAD_SIGNATURE);
    hy_buf_fini(&b);
    free(c2);
    free(claims);

    /* the header, still valid JSON naming our key */
    char header[128];
    snprintf(header, sizeof(header), "{\"alg\":\"EdDSA\", \"typ\":\"JWT\",\"kid\":\"%s\"}",
             hy_token_key_kid(key));
    char *x = craft(header, p.c, p.s);
    refused_str(x, &pol, HY_TOKEN_BAD_SIGNATURE);
    free(x);

    /* one byte of the signature; a short one; one from the other key */
    char *s = strdup(p.s);
    flip(s);
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%s", p.h, p.c, s), 0);
    refused_str(b.data, &pol, HY_TOKEN_BAD_SIGNATURE);
    hy_buf_fini(&b);
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%.40s", p.h, p.c, p.s), 0);
    refused_str(b.data, &pol, HY_TOKEN_BAD_SIGNATURE);
    hy_buf_fini(&b);
    free(s);

    /* a token signed by other_key but claiming our kid */
    char *o = NULL;
    assert_int_equal(hy_token_sign_zone(other_key, "east", now, HOUR, &o, NULL), 0);
    struct parts op = split(o);
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%s", p.h, op.c, op.s), 0);
    struct hy_token_failure why = refused(b.data, b.len, &pol, HY_TOKEN_BAD_SIGNATURE);
    assert_non_null(strstr(why.message, hy_token_key_kid(key)));
    hy_buf_fini(&b);
    parts_free(&op);
    free(o);

    parts_free(&p);
    free(t);
}

static void test_alg_not_allowed(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_token_policy pol = zone_policy(now);
    char *t = zone_token("east", now, HOUR, NULL);
    struct parts p = split(t);
    char header[160];
    static const char *const algs[] = {"none", "HS256", "ES256", "RS256", "eddsa", "Ed25519", ""};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", algs[i],
                 hy_token_key_kid(key));
        char *x = craft(header, p.c, i == 0 ? "" : p.s); /* "none" comes unsigned */
        struct hy_token_failure why = refused(x, strlen(x), &pol, HY_TOKEN_ALG_NOT_ALLOWED);
        assert_non_null(strstr(why.message, algs[i]));
        free(x);
    }
    /* the classic: alg none, no kid, empty signature */
    char *x = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", p.c, "");
    refused_str(x, &pol, HY_TOKEN_ALG_NOT_ALLOWED);
    free(x);
    x = craft("{\"typ\":\"JWT\"}", p.c, p.s); /* no alg at all */
    refused_str(x, &pol, HY_TOKEN_ALG_NOT_ALLOWED);
    free(x);
    parts_free(&p);
    free(t);
}

static void test_unknown_kid(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char *t = zone_token("east", now, HOUR, NULL);
    const struct hy_token_key *others[] = {other_key};
    struct hy_token_policy pol = {.keys = others, .nkeys = 1, .now = now};
    struct hy_token_failure why = refused(t, strlen(t), &pol, HY_TOKEN_UNKNOWN_KID);
    assert_non_null(strstr(why.message, hy_token_key_kid(key)));
    pol.nkeys = 0;
    refused_str(t, &pol, HY_TOKEN_UNKNOWN_KID);

    struct parts p = split(t);
    char *x = craft("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", p.c, p.s);
    pol = zone_policy(now);
    refused_str(x, &pol, HY_TOKEN_UNKNOWN_KID);
    free(x);
    /* a kid with bytes that must not reach a log line raw */
    x = craft("{\"alg\":\"EdDSA\",\"kid\":\"a\\nb\\u001b[31m\"}", p.c, p.s);
    why = refused(x, strlen(x), &pol, HY_TOKEN_UNKNOWN_KID);
    assert_null(strchr(why.message, '\n'));
    assert_null(strchr(why.message, 0x1b));
    free(x);
    parts_free(&p);
    free(t);
}

/* Rotation: the keyset holds the new key and the old one. */
static void test_keyset(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char *old = zone_token("east", now, HOUR, NULL);
    char *fresh = NULL;
    assert_int_equal(hy_token_sign_zone(other_key, "west", now, HOUR, &fresh, NULL), 0);
    const struct hy_token_key *both[] = {other_key, key};
    struct hy_token_policy pol = {.keys = both, .nkeys = 2, .now = now};
    struct hy_token_claims c;
    assert_int_equal(hy_token_verify(old, strlen(old), &pol, &c, NULL), 0);
    assert_string_equal(c.zone, "east");
    hy_token_claims_fini(&c);
    assert_int_equal(hy_token_verify(fresh, strlen(fresh), &pol, &c, NULL), 0);
    assert_string_equal(c.zone, "west");
    hy_token_claims_fini(&c);
    free(old);
    free(fresh);
}

static void test_time(void **state)
{
    (void)state;
    int64_t now = 1795000000; /* 2026-11-18T11:06:40Z */
    struct hy_token_policy pol = zone_policy(now);

    char *t = zone_token("east", now - 2 * HOUR, HOUR, NULL);
    struct hy_token_failure why = refused(t, strlen(t), &pol, HY_TOKEN_EXPIRED);
    assert_int_equal(why.at, now - HOUR);
    assert_non_null(strstr(why.message, "2026-11-18T10:06:40Z"));
    free(t);

    t = zone_token("east", now - HOUR, HOUR, NULL); /* exp == now is expired */
    refused_str(t, &pol, HY_TOKEN_EXPIRED);
    free(t);

    t = zone_token("east", now + HOUR, HOUR, NULL);
    why = refused(t, strlen(t), &pol, HY_TOKEN_NOT_YET_VALID);
    assert_int_equal(why.at, now + HOUR);
    assert_non_null(strstr(why.message, "2026-11-18T12:06:40Z"));
    free(t);

    char jti[HY_TOKEN_JTI_LEN + 1];
    assert_int_equal(hy_token_jti_new(jti), 0);
    struct hy_token_claims c = {.kind = HY_TOKEN_KIND_ZONE,
                                .jti = jti,
                                .iat = now,
                                .nbf = now + 1,
                                .exp = now + HOUR,
                                .zone = "east"};
    assert_int_equal(hy_token_sign(key, &c, &t), 0);
    refused_str(t, &pol, HY_TOKEN_NOT_YET_VALID);
    pol.now = now + 1; /* nbf == now is valid */
    struct hy_token_claims out;
    assert_int_equal(hy_token_verify(t, strlen(t), &pol, &out, NULL), 0);
    hy_token_claims_fini(&out);
    free(t);
}

struct revocations {
    const char *jti;
    int calls;
};

static bool is_revoked(const char *jti, void *arg)
{
    struct revocations *r = arg;
    r->calls++;
    return strcmp(jti, r->jti) == 0;
}

static void test_revoked(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char jti[HY_TOKEN_JTI_LEN + 1], jti2[HY_TOKEN_JTI_LEN + 1];
    char *t = zone_token("east", now, HOUR, jti);
    char *t2 = zone_token("east", now, HOUR, jti2);
    struct revocations r = {.jti = jti};
    struct hy_token_policy pol = zone_policy(now);
    pol.revoked = is_revoked;
    pol.revoked_arg = &r;
    struct hy_token_failure why = refused(t, strlen(t), &pol, HY_TOKEN_REVOKED);
    assert_non_null(strstr(why.message, jti));
    assert_int_equal(r.calls, 1);
    struct hy_token_claims c;
    assert_int_equal(hy_token_verify(t2, strlen(t2), &pol, &c, NULL), 0);
    assert_int_equal(r.calls, 2);
    hy_token_claims_fini(&c);
    /* a token that fails earlier never reaches the revocation list */
    pol.now = now + 2 * HOUR;
    refused_str(t, &pol, HY_TOKEN_EXPIRED);
    assert_int_equal(r.calls, 2);
    free(t);
    free(t2);
}

static void test_malformed(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_token_policy pol = zone_policy(now);
    static const char *const garbage[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "....",
        ".eyJ9.sig",
        "!!!.!!!.!!!",
        "eyJhbGciOiJFZERTQSJ9..sig",        /* empty claims */
        "bm90IGpzb24.e30.AAAA",             /* "not json" */
        "WyJhbGciLCJFZERTQSJd.e30.AAAA",    /* ["alg","EdDSA"] */
        "eyJhbGciOiJFZERTQSJ9.e30.AAAA",    /* alg without kid, bad sig... */
        "e30=.e30.AAAA",                    /* padding */
        "eyJhbGciOiJFZERTQSJ9===.e30.AAAA", /* padding */
        "eyJhbGciOiJFZERTQSJ9 .e30.AAAA",   /* space */
        "e30\n.e30.AAAA",                   /* newline */
        "e31.e30.AAAA",                     /* "{}" spelled non-canonically */
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        struct hy_token_claims c;
        struct hy_token_failure why;
        int rc = hy_token_verify(garbage[i], strlen(garbage[i]), &pol, &c, &why);
        assert_int_equal(rc, HY_EVERIFY);
        /* the one with a parsable header but no kid is refused for that */
        if (i != 11 && why.reason != HY_TOKEN_MALFORMED)
            fail_msg("\"%s\": expected malformed, got %s: %s", garbage[i],
                     hy_token_reason_str(why.reason), why.message);
    }
    assert_int_equal(hy_token_verify(NULL, 0, &pol, &(struct hy_token_claims){0}, NULL),
                     HY_EVERIFY);

    char *t = zone_token("east", now, HOUR, NULL);
    struct parts p = split(t);
    char header[200];
    /* unknown header fields (crit, jku...) are not for us to honour */
    snprintf(header, sizeof(header),
             "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\",\"crit\":[\"exp\"]}",
             hy_token_key_kid(key));
    char *x = craft(header, p.c, p.s);
    refused_str(x, &pol, HY_TOKEN_MALFORMED);
    free(x);
    snprintf(header, sizeof(header), "{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\",\"kid\":\"%s\"}",
             hy_token_key_kid(key));
    x = craft(header, p.c, p.s); /* duplicate key */
    refused_str(x, &pol, HY_TOKEN_MALFORMED);
    free(x);
    snprintf(header, sizeof(header), "{\"alg\":\"EdDSA\",\"typ\":\"JWE\",\"kid\":\"%s\"}",
             hy_token_key_kid(key));
    x = craft(header, p.c, p.s);
    refused_str(x, &pol, HY_TOKEN_MALFORMED);
    free(x);
    snprintf(header, sizeof(header), "alg: EdDSA\nkid: %s", hy_token_key_kid(key));
    x = craft(header, p.c, p.s); /* YAML is not JSON */
    refused_str(x, &pol, HY_TOKEN_MALFORMED);
    free(x);
    /* a signature that is not base64url */
    struct hy_buf b = {0};
    assert_int_equal(hy_buf_printf(&b, "%s.%s.%s*", p.h, p.c, p.s), 0);
    refused_str(b.data, &pol, HY_TOKEN_MALFORMED);
    hy_buf_fini(&b);

    /* over 8 KiB, even if every part is fine */
    size_t n = HY_TOKEN_MAX_LEN + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'A', n);
    big[10] = '.';
    big[20] = '.';
    big[n] = '\0';
    struct hy_token_failure why = refused(big, n, &pol, HY_TOKEN_MALFORMED);
    assert_non_null(strstr(why.message, "limit"));
    free(big);
    /* len is what counts, not a NUL */
    assert_int_equal(hy_buf_printf(&b, "%s.junk", t), 0);
    struct hy_token_claims c;
    assert_int_equal(hy_token_verify(b.data, strlen(t), &pol, &c, NULL), 0);
    hy_token_claims_fini(&c);
    refused(b.data, b.len, &pol, HY_TOKEN_MALFORMED); /* four parts */
    hy_buf_fini(&b);
    parts_free(&p);
    free(t);

    assert_int_equal(hy_token_verify("a.b.c", 5, NULL, &(struct hy_token_claims){0}, NULL),
                     HY_EINVAL);
}

static void test_reason_strings(void **state)
{
    (void)state;
    const char *seen[HY_TOKEN_WRONG_KIND + 1];
    for (int r = HY_TOKEN_OK; r <= HY_TOKEN_WRONG_KIND; r++) {
        seen[r] = hy_token_reason_str((enum hy_token_reason)r);
        assert_non_null(seen[r]);
        for (int q = 0; q < r; q++)
            assert_string_not_equal(seen[q], seen[r]);
    }
    assert_string_equal(hy_token_kind_str(HY_TOKEN_KIND_ZONE), "zone");
    assert_string_equal(hy_token_kind_str(HY_TOKEN_KIND_DATAPLANE), "dataplane");
}

static void test_key_files(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s", in_tmp("token.key"));
    /* a file that was there, readable by all, is replaced by a 0600 one */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("old", f);
    fclose(f);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(hy_token_key_save(key, path), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    struct hy_token_key *loaded = NULL;
    assert_int_equal(hy_token_key_load(path, &loaded), 0);
    assert_string_equal(hy_token_key_kid(loaded), hy_token_key_kid(key));
    assert_true(hy_token_key_can_sign(loaded));
    /* what the loaded key signs, the original verifies */
    int64_t now = time(NULL);
    char *t = NULL;
    assert_int_equal(hy_token_sign_zone(loaded, "east", now, HOUR, &t, NULL), 0);
    struct hy_token_policy pol = zone_policy(now);
    struct hy_token_claims c;
    assert_int_equal(hy_token_verify(t, strlen(t), &pol, &c, NULL), 0);
    hy_token_claims_fini(&c);

    /* public only: verifies, cannot sign, cannot be saved */
    char *pub;
    assert_int_equal(hy_token_key_to_pem(key, true, &pub), 0);
    assert_non_null(strstr(pub, "-----BEGIN PUBLIC KEY-----"));
    struct hy_token_key *pk;
    assert_int_equal(hy_token_key_from_pem(pub, strlen(pub), &pk), 0);
    assert_false(hy_token_key_can_sign(pk));
    assert_string_equal(hy_token_key_kid(pk), hy_token_key_kid(key));
    const struct hy_token_key *pks[] = {pk};
    pol.keys = pks;
    assert_int_equal(hy_token_verify(t, strlen(t), &pol, &c, NULL), 0);
    hy_token_claims_fini(&c);
    char *t2 = NULL;
    assert_int_equal(hy_token_sign_zone(pk, "east", now, HOUR, &t2, NULL), HY_EINVAL);
    assert_int_equal(hy_token_key_save(pk, in_tmp("pub.key")), HY_EINVAL);
    hy_token_key_free(pk);
    free(t);

    /* missing, garbage and oversized files */
    assert_int_equal(hy_token_key_load(in_tmp("nope.key"), &pk), -ENOENT);
    f = fopen(in_tmp("junk.key"), "w");
    fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    assert_int_equal(hy_token_key_load(in_tmp("junk.key"), &pk), HY_EINVAL);
    assert_int_equal(hy_token_key_from_pem("hello", 5, &pk), HY_EINVAL);
    assert_int_equal(hy_token_key_from_pem(pub, 0, &pk), HY_EINVAL);
    assert_int_equal(truncate(in_tmp("junk.key"), 70000), 0);
    assert_int_equal(hy_token_key_load(in_tmp("junk.key"), &pk), HY_ETOOBIG);
    assert_int_equal(hy_token_key_save(key, in_tmp("no/such/dir/key")), -ENOENT);
    free(pub);

    /* openssl reads our file and agrees on the public key; we read its keys */
    if (system("openssl version >/dev/null 2>&1") == 0) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "openssl pkey -in %s -pubout -out %s 2>/dev/null", path,
                 in_tmp("pub.pem"));
        assert_int_equal(system(cmd), 0);
        assert_int_equal(hy_token_key_load(in_tmp("pub.pem"), &pk), 0);
        assert_string_equal(hy_token_key_kid(pk), hy_token_key_kid(key));
        hy_token_key_free(pk);
        snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm ed25519 -out %s 2>/dev/null",
                 in_tmp("ossl.key"));
        assert_int_equal(system(cmd), 0);
        assert_int_equal(hy_token_key_load(in_tmp("ossl.key"), &pk), 0);
        assert_true(hy_token_key_can_sign(pk));
        hy_token_key_free(pk);
    }
    hy_token_key_free(loaded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_zone),  cmocka_unit_test(test_roundtrip_dataplane),
        cmocka_unit_test(test_sign_refuses),    cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_alg_not_allowed), cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_keyset),          cmocka_unit_test(test_time),
        cmocka_unit_test(test_revoked),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_reason_strings),  cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
