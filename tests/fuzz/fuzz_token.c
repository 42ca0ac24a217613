/* libFuzzer target for token verification (crypto/token.h): any bytes as a
 * token, no crash, no leak. Each input is verified as it is (shape, header,
 * alg, kid, signature), then once more re-signed with the fuzz key, so the
 * claims parser and the kind, time and revocation checks see fuzzed claims
 * too. A token that verifies must satisfy the policy and survive
 * hy_token_sign and hy_token_verify unchanged.
 *
 * The keys are fixed (below; made for this target, never used elsewhere) and
 * so is the clock, so every run and every corpus file behaves the same.
 * HYPHA_FUZZ_TOKEN_SEEDS=DIR makes the target write its seed corpus to DIR
 * and exit (tests/fuzz/corpus/token/ came from it). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ed25519.h>

#include "base64.h"
#include "buf.h"
#include "error.h"
#include "token.h"
#include "poison.h"

/* Key "a" signs (the fuzz target re-signs with it); key "b" is public only,
 * so the keyset has a second kid to look up. */
static const char key_a_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                "MC4CAQAwBQYDK2VwBCIEIGrVDpQy6IjeNL4TKQYytzY+Ns8fJw1W0RzV6DcD76Xv\n"
                                "-----END PRIVATE KEY-----\n";
static const char key_b_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                "MCowBQYDK2VwAyEAb8xH+dEy8YBO/eVYLPyX4zRx6I4GF8FENxtvQcZNg40=\n"
                                "-----END PUBLIC KEY-----\n";

#define NOW 1767225600 /* 2026-01-01T00:00:00Z: the fixed clock of every verification */
#define REVOKED_PREFIX "dead"

static struct hy_token_key *key_a, *key_b;
static const struct hy_token_key *keyset[2];
static ed25519_key raw_a; /* key a for wolfCrypt, to sign arbitrary header.claims bytes */

static bool revoked(const char *jti, void *arg)
{
    (void)arg;
    return strncmp(jti, REVOKED_PREFIX, strlen(REVOKED_PREFIX)) == 0;
}

static struct hy_token_policy policy(enum hy_token_kind kind)
{
    return (struct hy_token_policy){
        .keys = keyset, .nkeys = 2, .now = NOW, .kind = kind, .revoked = revoked};
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_token: %s\n", what);
    abort();
}

/* Loads key a into raw_a the way token.c does: the public half is recomputed
 * from the seed. */
static void load_raw_key(void)
{
    uint8_t der[128], seed[ED25519_KEY_SIZE], pub[ED25519_PUB_KEY_SIZE];
    word32 idx = 0, seed_len = sizeof(seed);
    ed25519_key tmp;
    int n =
        wc_KeyPemToDer((const byte *)key_a_pem, (int)sizeof(key_a_pem) - 1, der, sizeof(der), NULL);
    if (n <= 0 || wc_ed25519_init(&tmp) != 0 || wc_ed25519_init(&raw_a) != 0 ||
        wc_Ed25519PrivateKeyDecode(der, &idx, &tmp, (word32)n) != 0 ||
        wc_ed25519_export_private_only(&tmp, seed, &seed_len) != 0 ||
        wc_ed25519_make_public(&tmp, pub, sizeof(pub)) != 0 ||
        wc_ed25519_import_private_key(seed, sizeof(seed), pub, sizeof(pub), &raw_a) != 0)
        die("cannot load key a into wolfCrypt");
    wc_ed25519_free(&tmp);
}

static void free_keys(void)
{
    wc_ed25519_free(&raw_a);
    hy_token_key_free(key_a);
    hy_token_key_free(key_b);
}

/* Appends base64url(p[0..n)) to out. */
static void put_b64(struct hy_buf *out, const void *p, size_t n)
{
    char *enc = malloc(hy_base64_encoded_size(n));
    if (!enc)
        die("out of memory");
    size_t m = hy_base64_encode(p, n, enc, true);
    if (hy_buf_append(out, enc, m) < 0)
        die("out of memory");
    free(enc);
}

/* Appends "." and key a's signature over out's current contents. */
static void put_signature(struct hy_buf *out)
{
    uint8_t sig[ED25519_SIG_SIZE];
    word32 sig_len = sizeof(sig);
    if (wc_ed25519_sign_msg((const byte *)out->data, (word32)out->len, sig, &sig_len, &raw_a) != 0)
        die("cannot sign");
    if (hy_buf_puts(out, ".") < 0)
        die("out of memory");
    put_b64(out, sig, sig_len);
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_claims(const struct hy_token_claims *a, const struct hy_token_claims *b)
{
    if (a->kind != b->kind || a->iat != b->iat || a->nbf != b->nbf || a->exp != b->exp ||
        !same_str(a->jti, b->jti) || !same_str(a->zone, b->zone) || !same_str(a->mesh, b->mesh) ||
        !same_str(a->name, b->name) || a->ntags != b->ntags)
        return false;
    for (size_t i = 0; i < a->ntags; i++)
        if (!same_str(a->tags[i].key, b->tags[i].key) ||
            !same_str(a->tags[i].value, b->tags[i].value))
            return false;
    return true;
}

/* What every accepted token must be: what the policy asked for, with the
 * claims its kind needs, and the same after signing it again. */
static void check_accepted(const struct hy_token_claims *c, const struct hy_token_policy *p)
{
    if (c->kind != p->kind || !c->jti || !*c->jti || c->nbf > p->now || c->exp <= p->now ||
        revoked(c->jti, NULL))
        die("accepted a token the policy refuses");
    if (c->kind == HY_TOKEN_KIND_ZONE ? !c->zone || !*c->zone
                                      : !c->mesh || !*c->mesh || !c->name || !*c->name)
        die("accepted a token without the claims of its kind");
    for (size_t i = 0; i < c->ntags; i++)
        if (!c->tags[i].key || !c->tags[i].value)
            die("accepted a token with a NULL tag");
    char *again = NULL;
    int rc = hy_token_sign(key_a, c, &again);
    if (rc == HY_ETOOBIG)
        return; /* re-encoding may escape more than the original did */
    if (rc < 0)
        die("hy_token_sign refused claims hy_token_verify accepted");
    struct hy_token_claims c2;
    struct hy_token_failure why;
    if (hy_token_verify(again, strlen(again), p, &c2, &why) != 0)
        die(why.message);
    if (!same_claims(c, &c2))
        die("claims changed through hy_token_sign and hy_token_verify");
    hy_token_claims_fini(&c2);
    free(again);
}

static void verify(const char *token, size_t len, enum hy_token_kind kind)
{
    struct hy_token_policy p = policy(kind);
    struct hy_token_claims c;
    struct hy_token_failure why;
    int rc = hy_token_verify(token, len, &p, &c, &why);
    if (rc == 0) {
        if (why.reason != HY_TOKEN_OK)
            die("accepted with a reason");
        check_accepted(&c, &p);
        hy_token_claims_fini(&c);
        return;
    }
    static const struct hy_token_claims zero;
    if (rc != HY_EVERIFY || why.reason == HY_TOKEN_OK || memcmp(&c, &zero, sizeof(c)) != 0 ||
        !memchr(why.message, '\0', sizeof(why.message)) || !why.message[0])
        die("a refusal without a reason, or with claims left behind");
    if ((why.at != 0) != (why.reason == HY_TOKEN_EXPIRED || why.reason == HY_TOKEN_NOT_YET_VALID))
        die("why.at set for the wrong reason");
    (void)hy_token_reason_str(why.reason);
    /* the endpoint that takes the other kind */
    if (why.reason == HY_TOKEN_WRONG_KIND && kind == HY_TOKEN_KIND_ZONE)
        verify(token, len, HY_TOKEN_KIND_DATAPLANE);
}

/* ----- the seed corpus ----- */

static const char *seed_dir;

static void write_seed(const char *name, const char *text, size_t len)
{
    struct hy_buf path = {0};
    if (hy_buf_printf(&path, "%s/%s", seed_dir, name) < 0)
        die("out of memory");
    FILE *f = fopen(path.data, "we");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        die(path.data);
    hy_buf_fini(&path);
}

/* A token whose header and claims are the JSON given, signed by key a. */
static void seed_raw(const char *name, const char *header, const char *claims)
{
    struct hy_buf t = {0};
    put_b64(&t, header, strlen(header));
    if (hy_buf_puts(&t, ".") < 0)
        die("out of memory");
    put_b64(&t, claims, strlen(claims));
    put_signature(&t);
    write_seed(name, t.data, t.len);
    hy_buf_fini(&t);
}

static void seed_signed(const char *name, const struct hy_token_claims *c)
{
    char *t = NULL;
    if (hy_token_sign(key_a, c, &t) != 0)
        die("cannot sign a seed");
    write_seed(name, t, strlen(t));
    free(t);
}

static void write_seeds(void)
{
    struct hy_token_tag tags[] = {{"app", "web"}, {"version", "v2"}, {"kuma.io/zone", "east"}};
    struct hy_token_claims zone = {.kind = HY_TOKEN_KIND_ZONE,
                                   .jti = "4f1c2a9b7e6d5c3a1b0f9e8d7c6b5a49",
                                   .iat = NOW - 3600,
                                   .nbf = NOW - 3600,
                                   .exp = NOW + 86400 * 365,
                                   .zone = "east"};
    struct hy_token_claims dp = {.kind = HY_TOKEN_KIND_DATAPLANE,
                                 .jti = "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                                 .iat = NOW - 60,
                                 .nbf = NOW - 60,
                                 .exp = NOW + 3600,
                                 .zone = "east",
                                 .mesh = "default",
                                 .name = "web-01",
                                 .tags = tags,
                                 .ntags = 3};
    seed_signed("zone-valid.jwt", &zone);
    seed_signed("dataplane-valid.jwt", &dp);
    struct hy_token_claims c = zone;
    c.exp = NOW - 1, c.nbf = c.iat = NOW - 7200;
    seed_signed("zone-expired.jwt", &c);
    c = zone;
    c.nbf = NOW + 600, c.exp = NOW + 3600;
    seed_signed("zone-not-yet-valid.jwt", &c);
    c = zone;
    c.jti = REVOKED_PREFIX "beefcafe0123456789abcdef012345";
    seed_signed("zone-revoked.jwt", &c);

    char hdr[128];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             hy_token_key_kid(key_a));
    char hdr_notyp[128];
    snprintf(hdr_notyp, sizeof(hdr_notyp), "{\"kid\":\"%s\",\"alg\":\"EdDSA\"}",
             hy_token_key_kid(key_a));
    seed_raw("dataplane-no-tags-no-typ.jwt", hdr_notyp,
             "{\"kind\":\"dataplane\",\"jti\":\"x-1_Y\",\"iat\":1767225000,\"nbf\":1767225000,"
             "\"exp\":1767229200,\"mesh\":\"payments\",\"name\":\"db-0\"}");
    seed_raw("claims-escapes.jwt", hdr,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":\"1767225000\",\"nbf\":1767225000,"
             "\"exp\":1767229200,\"zone\":\"\\u00e9st\\n\\\"q\\\"\",\"tags\":{\"k\":\"\\u2603\"}}");
    seed_raw("claims-missing-jti.jwt", hdr,
             "{\"kind\":\"zone\",\"iat\":1767225000,\"nbf\":1767225000,\"exp\":1767229200,"
             "\"zone\":\"east\"}");
    seed_raw("claims-unknown-kind.jwt", hdr,
             "{\"kind\":\"admin\",\"jti\":\"abc\",\"iat\":1,\"nbf\":1,\"exp\":9999999999}");
    seed_raw("claims-unknown-field.jwt", hdr,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":1,\"nbf\":1,\"exp\":9999999999,"
             "\"zone\":\"east\",\"aud\":\"global\"}");
    seed_raw("claims-dup-tag.jwt", hdr,
             "{\"kind\":\"dataplane\",\"jti\":\"abc\",\"iat\":1,\"nbf\":1,\"exp\":9999999999,"
             "\"mesh\":\"m\",\"name\":\"n\",\"tags\":{\"a\":\"1\",\"a\":\"2\"}}");
    seed_raw("claims-extreme-times.jwt", hdr,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":-9223372036854775808,"
             "\"nbf\":-9223372036854775808,\"exp\":9223372036854775807,\"zone\":\"east\"}");
    seed_raw("claims-expired-at-min.jwt", hdr,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":0,\"nbf\":-9223372036854775808,"
             "\"exp\":-9223372036854775808,\"zone\":\"east\"}");
    seed_raw("claims-expired-at-epoch.jwt", hdr, /* exp 0: malformed, not "expired at 0" */
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":1767222000,\"nbf\":1767222000,"
             "\"exp\":0,\"zone\":\"east\"}");
    seed_raw("claims-valid-from-max.jwt", hdr,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":0,\"nbf\":9223372036854775807,"
             "\"exp\":9223372036854775807,\"zone\":\"east\"}");
    seed_raw("claims-valid-from-year-2147485547.jwt", hdr, /* tm_year + 1900 overflowed an int */
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":0,\"nbf\":67768036191676799,"
             "\"exp\":67768036191676800,\"zone\":\"east\"}");
    seed_raw("claims-nested.jwt", hdr,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":1,\"nbf\":1,\"exp\":9999999999,"
             "\"zone\":{\"a\":[1,{\"b\":2}]}}");
    seed_raw("header-alg-none.jwt", "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"kind\":\"zone\"}");
    seed_raw("header-alg-hs256.jwt", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"x\"}", "{}");
    seed_raw("header-typ-jwe.jwt", "{\"alg\":\"EdDSA\",\"typ\":\"JWE\",\"kid\":\"x\"}", "{}");
    char hdr_b[128];
    snprintf(hdr_b, sizeof(hdr_b), "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             hy_token_key_kid(key_b));
    seed_raw("header-kid-b-bad-signature.jwt", hdr_b,
             "{\"kind\":\"zone\",\"jti\":\"abc\",\"iat\":1,\"nbf\":1,\"exp\":9999999999,"
             "\"zone\":\"east\"}");
    static const char shapes[] = "eyJhbGciOiJFZERTQSJ9.e30";
    write_seed("shape-two-parts.jwt", shapes, sizeof(shapes) - 1);
    static const char padded[] = "eyJhbGciOiJFZERTQSJ9.e30=.AAAA";
    write_seed("shape-padded.jwt", padded, sizeof(padded) - 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (hy_token_key_from_pem(key_a_pem, sizeof(key_a_pem) - 1, &key_a) != 0 ||
        hy_token_key_from_pem(key_b_pem, sizeof(key_b_pem) - 1, &key_b) != 0)
        die("cannot load the fuzz keys");
    keyset[0] = key_a;
    keyset[1] = key_b;
    load_raw_key();
    atexit(free_keys);
    if ((seed_dir = getenv("HYPHA_FUZZ_TOKEN_SEEDS"))) {
        write_seeds();
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *token = (const char *)data;
    verify(token, size, HY_TOKEN_KIND_ZONE);

    /* again with header.claims signed by key a, so fuzzed claims get past
     * the signature */
    const char *dot1 = memchr(token, '.', size);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', size - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || size > HY_TOKEN_MAX_LEN)
        return 0;
    struct hy_buf t = {0};
    if (hy_buf_append(&t, token, (size_t)(dot2 - token)) < 0)
        die("out of memory");
    put_signature(&t);
    verify(t.data, t.len, HY_TOKEN_KIND_ZONE);
    hy_buf_fini(&t);
    return 0;
}
