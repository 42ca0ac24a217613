/* Unit tests of the CA module: root and server certificates read back,
 * requests, intermediates and leaves issued for them, chains that verify and
 * ones that must not, key matching, bad input, and (when the openssl CLI is
 * installed) a cross-check of what we write. */
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
#include "ca.h"
#include "error.h"
#include "poison.h"

#define DAY 86400
#define TEN_YEARS (3650LL * DAY)
#define ROOT_CN "Hypha root CA for mesh default"

static const char *const dns[] = {"localhost", "cp.hypha.local"};
static const char *const ips[] = {"127.0.0.1", "::1"};

static struct hy_ca_server_req server_req(int64_t now, int64_t validity)
{
    return (struct hy_ca_server_req){
        .dns = dns, .ndns = 2, .ips = ips, .nips = 2, .now = now, .validity_seconds = validity};
}

static void make_root(const char *cn, int64_t now, int64_t validity, struct hy_ca_pem *ca)
{
    int rc = hy_ca_make_root(cn, now, validity, ca);
    if (rc != 0)
        fail_msg("hy_ca_make_root: %s", hy_strerror(rc));
}

static void assert_verify_fails(const char *cert, const char *ca, const char *why_part)
{
    const char *why = NULL;
    assert_int_equal(hy_ca_verify(cert, ca, &why), HY_EVERIFY);
    assert_non_null(why);
    if (!strstr(why, why_part))
        fail_msg("why is \"%s\", expected it to mention \"%s\"", why, why_part);
}

static void assert_chain_fails(const char *leaf, const char *chain, const char *roots,
                               const char *why_part)
{
    const char *why = NULL;
    assert_int_equal(hy_ca_verify_chain(leaf, chain, roots, &why), HY_EVERIFY);
    assert_non_null(why);
    if (!strstr(why, why_part))
        fail_msg("why is \"%s\", expected it to mention \"%s\"", why, why_part);
}

/* The DER of the first PEM block in pem (caller frees). */
static uint8_t *pem_der(const char *pem, size_t *len)
{
    const char *b = strstr(pem, "-----\n") + 6, *e = strstr(pem, "-----END");
    char *b64 = calloc(1, (size_t)(e - b) + 1);
    size_t n = 0;
    for (const char *p = b; p < e; p++)
        if (*p != '\n')
            b64[n++] = *p;
    uint8_t *der = malloc(n + 3);
    assert_true(hy_base64_decode(b64, n, der, len, false));
    free(b64);
    return der;
}

/* der as PEM with the label of pem's first block (caller frees). */
static char *der_pem_like(const uint8_t *der, size_t len, const char *pem)
{
    const char *label = pem + strlen("-----BEGIN ");
    int label_len = (int)(strstr(label, "-----") - label);
    char *enc = malloc(hy_base64_encoded_size(len));
    hy_base64_encode(der, len, enc, false);
    struct hy_buf out = {0};
    assert_int_equal(hy_buf_printf(&out, "-----BEGIN %.*s-----\n%s\n-----END %.*s-----\n",
                                   label_len, label, enc, label_len, label),
                     0);
    free(enc);
    return out.data;
}

/* Decodes the PEM, replaces the first `from` in the DER with `to` (same
 * length), and encodes it again: a certificate or request changed after
 * signing. */
static char *tamper(const char *pem, const char *from, const char *to)
{
    size_t len;
    uint8_t *der = pem_der(pem, &len);
    uint8_t *at = memmem(der, len, from, strlen(from));
    assert_non_null(at);
    memcpy(at, to, strlen(to));
    char *out = der_pem_like(der, len, pem);
    free(der);
    return out;
}

/* Flips one bit of the DER byte at `from_end` bytes before its end (inside
 * the signature, which comes last). */
static char *flip_from_end(const char *pem, size_t from_end)
{
    size_t len;
    uint8_t *der = pem_der(pem, &len);
    der[len - from_end] ^= 0x01;
    char *out = der_pem_like(der, len, pem);
    free(der);
    return out;
}

/* True when the DER of pem contains bytes[0..n). */
static bool der_has(const char *pem, const void *bytes, size_t n)
{
    size_t len;
    uint8_t *der = pem_der(pem, &len);
    bool found = memmem(der, len, bytes, n) != NULL;
    free(der);
    return found;
}

static void test_root(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem ca;
    make_root(ROOT_CN, now, TEN_YEARS, &ca);
    assert_non_null(strstr(ca.cert, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(ca.key, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */

    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(ca.cert, &info), 0);
    assert_string_equal(info.subject_cn, ROOT_CN);
    assert_string_equal(info.issuer_cn, ROOT_CN);
    assert_true(info.is_ca);
    assert_int_equal(info.nsans, 0);
    /* backdated by a minute for slow clocks; the end exactly as asked */
    assert_true(info.not_before >= now - 61 && info.not_before <= now - 59);
    assert_true(info.not_after >= now + TEN_YEARS - 1 && info.not_after <= now + TEN_YEARS + 1);
    assert_int_equal(strlen(info.fingerprint), HY_CA_FINGERPRINT_LEN);
    assert_int_equal(strspn(info.fingerprint, "0123456789abcdef"), HY_CA_FINGERPRINT_LEN);

    const char *why = "unset";
    assert_int_equal(hy_ca_verify(ca.cert, ca.cert, &why), 0); /* self-signature */
    assert_null(why);
    assert_int_equal(hy_ca_check_key(ca.cert, ca.key), 0);

    /* two roots never share a key, a serial or a fingerprint */
    struct hy_ca_pem other;
    struct hy_ca_info oinfo;
    make_root(ROOT_CN, now, TEN_YEARS, &other);
    assert_int_equal(hy_ca_inspect(other.cert, &oinfo), 0);
    assert_string_not_equal(info.fingerprint, oinfo.fingerprint);
    assert_int_equal(hy_ca_check_key(ca.cert, other.key), HY_EVERIFY);
    assert_verify_fails(ca.cert, other.cert, "self-signed"); /* same name, other key */
    hy_ca_info_fini(&oinfo);
    hy_ca_pem_fini(&other);

    hy_ca_info_fini(&info);
    hy_ca_info_fini(&info); /* safe twice */
    hy_ca_pem_fini(&ca);
    hy_ca_pem_fini(&ca);
}

/* Ending past 2049 switches to GeneralizedTime; both must read back. */
static void test_root_far_future(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    int64_t validity = 2524608000LL - now + 12345; /* past 2050-01-01 */
    struct hy_ca_pem ca;
    make_root("far", now, validity, &ca);
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(ca.cert, &info), 0);
    assert_int_equal(info.not_after, now + validity);
    assert_int_equal(hy_ca_verify(ca.cert, ca.cert, NULL), 0);
    hy_ca_info_fini(&info);
    hy_ca_pem_fini(&ca);
}

static void test_root_bad_input(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    char long_cn[HY_CA_CN_MAX + 2];
    memset(long_cn, 'a', sizeof(long_cn) - 1);
    long_cn[sizeof(long_cn) - 1] = '\0';
    struct hy_ca_pem ca;
    assert_int_equal(hy_ca_make_root("", now, DAY, &ca), HY_EINVAL);
    assert_null(ca.cert);
    assert_null(ca.key);
    assert_int_equal(hy_ca_make_root(NULL, now, DAY, &ca), HY_EINVAL);
    assert_int_equal(hy_ca_make_root(long_cn, now, DAY, &ca), HY_EINVAL);
    assert_int_equal(hy_ca_make_root("tab\there", now, DAY, &ca), HY_EINVAL);
    assert_int_equal(hy_ca_make_root("x", now, 0, &ca), HY_EINVAL);
    assert_int_equal(hy_ca_make_root("x", now, -5, &ca), HY_EINVAL);
    assert_int_equal(hy_ca_make_root("x", now, 9000LL * 365 * DAY, &ca), HY_EINVAL); /* > 9999 */
    assert_int_equal(hy_ca_make_root("x", now, INT64_MAX, &ca), HY_EINVAL);
    assert_null(ca.cert);
    long_cn[HY_CA_CN_MAX] = '\0'; /* exactly the limit is fine */
    assert_int_equal(hy_ca_make_root(long_cn, now, DAY, &ca), 0);
    hy_ca_pem_fini(&ca);
}

static void test_self_signed_server(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_server_req req = server_req(now, 365 * DAY);
    struct hy_ca_pem ca, leaf;
    assert_int_equal(hy_ca_make_self_signed_server("Hypha control plane CA", &req, &ca, &leaf), 0);

    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(leaf.cert, &info), 0);
    assert_false(info.is_ca);
    assert_string_equal(info.subject_cn, "localhost"); /* the first DNS name */
    assert_string_equal(info.issuer_cn, "Hypha control plane CA");
    assert_true(info.not_after >= now + 365 * DAY - 1 && info.not_after <= now + 365 * DAY + 1);
    assert_int_equal(info.nsans, 4);
    assert_string_equal(info.sans[0], "DNS:localhost");
    assert_string_equal(info.sans[1], "DNS:cp.hypha.local");
    assert_string_equal(info.sans[2], "IP:127.0.0.1");
    assert_string_equal(info.sans[3], "IP:::1");
    hy_ca_info_fini(&info);

    assert_int_equal(hy_ca_verify(leaf.cert, ca.cert, NULL), 0);
    assert_int_equal(hy_ca_check_key(leaf.cert, leaf.key), 0);
    assert_int_equal(hy_ca_check_key(leaf.cert, ca.key), HY_EVERIFY);
    assert_int_equal(hy_ca_check_key(ca.cert, leaf.key), HY_EVERIFY);
    /* a leaf is not a CA, even for itself */
    assert_verify_fails(leaf.cert, leaf.cert, "not a CA");
    assert_verify_fails(ca.cert, leaf.cert, "not a CA");

    /* another CA, another name: no signer */
    struct hy_ca_pem other;
    make_root("Some other CA", now, DAY, &other);
    assert_verify_fails(leaf.cert, other.cert, "not issued by this CA");
    hy_ca_pem_fini(&other);
    /* another CA with the very same name: its key id gives it away */
    make_root("Hypha control plane CA", now, DAY, &other);
    assert_verify_fails(leaf.cert, other.cert, "not issued by this CA");
    hy_ca_pem_fini(&other);

    /* the leaf's name changed after signing */
    char *forged = tamper(leaf.cert, "localhost", "lOcalhost");
    assert_verify_fails(forged, ca.cert, "signature does not verify");
    assert_int_equal(hy_ca_check_key(forged, leaf.key), 0); /* same key, though */
    free(forged);

    hy_ca_pem_fini(&leaf);
    hy_ca_pem_fini(&ca);
}

static void test_sign_server(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem ca, other, leaf;
    make_root(ROOT_CN, now, TEN_YEARS, &ca);
    make_root("other", now, TEN_YEARS, &other);

    const char *only_ip[] = {"10.0.0.7"};
    struct hy_ca_server_req req = {
        .cn = "global-cp", .ips = only_ip, .nips = 1, .now = now, .validity_seconds = DAY};
    assert_int_equal(hy_ca_sign_server(&ca, &req, &leaf), 0);
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(leaf.cert, &info), 0);
    assert_string_equal(info.subject_cn, "global-cp");
    assert_string_equal(info.issuer_cn, ROOT_CN);
    assert_int_equal(info.nsans, 1);
    assert_string_equal(info.sans[0], "IP:10.0.0.7");
    hy_ca_info_fini(&info);
    assert_int_equal(hy_ca_verify(leaf.cert, ca.cert, NULL), 0);
    assert_verify_fails(leaf.cert, other.cert, "not issued by this CA");
    hy_ca_pem_fini(&leaf);

    /* requests that must be refused, leaving *out empty */
    const char *bad_ip[] = {"300.1.1.1"};
    const char *bad_dns[] = {"no spaces.example"};
    const char *wild[] = {"*.mesh.local"};
    const char *mid_wild[] = {"a.*.local"};
    struct hy_ca_server_req r = req;
    r.nips = 0;
    assert_int_equal(hy_ca_sign_server(&ca, &r, &leaf), HY_EINVAL); /* no SAN */
    assert_null(leaf.cert);
    r = req;
    r.ips = bad_ip;
    assert_int_equal(hy_ca_sign_server(&ca, &r, &leaf), HY_EINVAL);
    r = (struct hy_ca_server_req){.dns = bad_dns, .ndns = 1, .now = now, .validity_seconds = DAY};
    assert_int_equal(hy_ca_sign_server(&ca, &r, &leaf), HY_EINVAL);
    r.dns = mid_wild;
    assert_int_equal(hy_ca_sign_server(&ca, &r, &leaf), HY_EINVAL);
    r.dns = wild;
    r.cn = "wildcard";
    assert_int_equal(hy_ca_sign_server(&ca, &r, &leaf), 0);
    hy_ca_pem_fini(&leaf);
    r = req;
    r.validity_seconds = 0;
    assert_int_equal(hy_ca_sign_server(&ca, &r, &leaf), HY_EINVAL);

    /* a CA whose key is another's, or a leaf posing as CA */
    struct hy_ca_pem mixed = {.cert = ca.cert, .key = other.key};
    assert_int_equal(hy_ca_sign_server(&mixed, &req, &leaf), HY_EINVAL);
    struct hy_ca_pem leaf2;
    assert_int_equal(hy_ca_sign_server(&ca, &req, &leaf2), 0);
    assert_int_equal(hy_ca_sign_server(&leaf2, &req, &leaf), HY_EINVAL);
    assert_null(leaf.cert);
    hy_ca_pem_fini(&leaf2);

    hy_ca_pem_fini(&other);
    hy_ca_pem_fini(&ca);
}

static void test_validity_enforced(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem ca, old_ca, leaf;
    make_root(ROOT_CN, now - 10 * DAY, TEN_YEARS, &ca);

    struct hy_ca_server_req req = server_req(now - 3 * DAY, DAY); /* ended two days ago */
    assert_int_equal(hy_ca_sign_server(&ca, &req, &leaf), 0);
    assert_verify_fails(leaf.cert, ca.cert, "certificate has expired");
    hy_ca_pem_fini(&leaf);

    req = server_req(now + 3 * DAY, DAY); /* starts in three days */
    assert_int_equal(hy_ca_sign_server(&ca, &req, &leaf), 0);
    assert_verify_fails(leaf.cert, ca.cert, "not yet valid");
    hy_ca_pem_fini(&leaf);

    make_root("old", now - 3 * DAY, DAY, &old_ca);
    assert_verify_fails(old_ca.cert, old_ca.cert, "expired");
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(old_ca.cert, &info), 0); /* still readable */
    assert_int_equal(info.not_after, now - 2 * DAY);
    hy_ca_info_fini(&info);
    /* a leaf still within its time, from a CA past its own: wolfSSL alone
     * would accept it */
    req = server_req(now, DAY);
    assert_int_equal(hy_ca_sign_server(&old_ca, &req, &leaf), 0);
    assert_verify_fails(leaf.cert, old_ca.cert, "the CA certificate has expired");
    assert_chain_fails(leaf.cert, NULL, old_ca.cert, "root in the bundle has expired");
    hy_ca_pem_fini(&leaf);
    hy_ca_pem_fini(&old_ca);
    hy_ca_pem_fini(&ca);
}

static void test_garbage(void **state)
{
    (void)state;
    struct hy_ca_pem ca;
    make_root(ROOT_CN, time(NULL), DAY, &ca);
    static const char not_pem[] = "hello";
    static const char bad_body[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    struct hy_ca_info info;
    const char *why;
    assert_int_equal(hy_ca_inspect(not_pem, &info), HY_EINVAL);
    assert_null(info.subject_cn);
    assert_int_equal(hy_ca_inspect(bad_body, &info), HY_EINVAL);
    assert_int_equal(hy_ca_inspect("", &info), HY_EINVAL);
    assert_int_equal(hy_ca_verify(not_pem, ca.cert, &why), HY_EINVAL);
    assert_non_null(why);
    assert_int_equal(hy_ca_verify(ca.cert, bad_body, &why), HY_EINVAL);
    assert_non_null(why);
    assert_int_equal(hy_ca_check_key(ca.cert, not_pem), HY_EINVAL);
    assert_int_equal(hy_ca_check_key(ca.cert, ca.cert), HY_EINVAL); /* a cert is not a key */
    assert_int_equal(hy_ca_check_key(not_pem, ca.key), HY_EINVAL);
    hy_ca_pem_fini(&ca);
}

/* ----- requests, intermediates and leaves ----- */

#define ZONE_CN "Hypha zone CA east"
#define SPIFFE_WEB "spiffe://default/web"

/* DER of the extensions we promise, header included */
static const uint8_t bc_ca_pathlen0[] = {0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04,
                                         0x08, 0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00};
static const uint8_t bc_not_ca[] = {0x06, 0x03, 0x55, 0x1d, 0x13, 0x01,
                                    0x01, 0xff, 0x04, 0x02, 0x30, 0x00};
static const uint8_t ku_cert_crl_sign[] = {0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01,
                                           0xff, 0x04, 0x04, 0x03, 0x02, 0x01, 0x06};
static const uint8_t ku_digital_signature[] = {0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01,
                                               0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80};
static const uint8_t eku_server_client[] = {
    0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x16, 0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05,
    0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

static void make_csr(const char *cn, struct hy_ca_pem *csr)
{
    int rc = hy_ca_make_csr(cn, csr);
    if (rc != 0)
        fail_msg("hy_ca_make_csr: %s", hy_strerror(rc));
}

/* An intermediate signed by root for a new request: inter gets its
 * certificate and the request's key. */
static void make_intermediate(const struct hy_ca_pem *root, const char *cn, int64_t now,
                              int64_t validity, struct hy_ca_pem *inter)
{
    struct hy_ca_pem csr;
    make_csr(cn, &csr);
    char *cert;
    int rc = hy_ca_sign_intermediate(root, csr.cert, now, validity, NULL, &cert);
    if (rc != 0)
        fail_msg("hy_ca_sign_intermediate: %s", hy_strerror(rc));
    inter->cert = cert;
    inter->key = csr.key;
    csr.key = NULL;
    hy_ca_pem_fini(&csr);
}

static char *concat(const char *a, const char *b)
{
    struct hy_buf out = {0};
    assert_int_equal(hy_buf_printf(&out, "%s%s", a, b), 0);
    return out.data;
}

static void test_csr(void **state)
{
    (void)state;
    struct hy_ca_pem csr, other;
    make_csr(ZONE_CN, &csr);
    assert_non_null(strstr(csr.cert, "-----BEGIN CERTIFICATE REQUEST-----"));
    assert_non_null(strstr(csr.key, "-----BEGIN PRIVATE KEY-----"));

    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(csr.cert, &info), 0);
    assert_true(info.is_request);
    assert_string_equal(info.subject_cn, ZONE_CN);
    assert_string_equal(info.issuer_cn, "");
    assert_false(info.is_ca);
    assert_int_equal(info.nsans, 0);
    assert_int_equal(strlen(info.fingerprint), HY_CA_FINGERPRINT_LEN);
    hy_ca_info_fini(&info);

    /* a request is not a certificate */
    assert_int_equal(hy_ca_verify(csr.cert, csr.cert, NULL), HY_EINVAL);
    assert_int_equal(hy_ca_check_key(csr.cert, csr.key), HY_EINVAL);
    struct hy_ca_pem root;
    make_root(ROOT_CN, time(NULL), DAY, &root);
    assert_int_equal(hy_ca_inspect(root.cert, &info), 0);
    assert_false(info.is_request);
    hy_ca_info_fini(&info);

    /* a new key each time */
    make_csr(ZONE_CN, &other);
    assert_string_not_equal(csr.key, other.key);
    hy_ca_pem_fini(&other);

    char long_cn[HY_CA_CN_MAX + 2];
    memset(long_cn, 'a', sizeof(long_cn) - 1);
    long_cn[sizeof(long_cn) - 1] = '\0';
    assert_int_equal(hy_ca_make_csr("", &other), HY_EINVAL);
    assert_null(other.cert);
    assert_null(other.key);
    assert_int_equal(hy_ca_make_csr(NULL, &other), HY_EINVAL);
    assert_int_equal(hy_ca_make_csr(long_cn, &other), HY_EINVAL);
    assert_int_equal(hy_ca_make_csr("new\nline", &other), HY_EINVAL);

    hy_ca_pem_fini(&root);
    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&csr);
}

static void test_sign_intermediate(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem root, other, csr, inter;
    make_root(ROOT_CN, now, 30 * DAY, &root);
    make_root("other root", now, TEN_YEARS, &other);
    make_csr(ZONE_CN, &csr);

    /* asked for a year, cut at the root's end */
    char *cert;
    assert_int_equal(hy_ca_sign_intermediate(&root, csr.cert, now, 365 * DAY, NULL, &cert), 0);
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, ZONE_CN);
    assert_string_equal(info.issuer_cn, ROOT_CN);
    assert_true(info.is_ca);
    assert_int_equal(info.nsans, 0);
    assert_int_equal(info.not_before, now - 60);
    assert_int_equal(info.not_after, now + 30 * DAY);
    hy_ca_info_fini(&info);
    assert_true(der_has(cert, bc_ca_pathlen0, sizeof(bc_ca_pathlen0)));
    assert_true(der_has(cert, ku_cert_crl_sign, sizeof(ku_cert_crl_sign)));

    assert_int_equal(hy_ca_verify(cert, root.cert, NULL), 0);
    assert_verify_fails(cert, other.cert, "not issued by this CA");
    assert_int_equal(hy_ca_check_key(cert, csr.key), 0); /* the requester's key */
    assert_int_equal(hy_ca_check_key(cert, root.key), HY_EVERIFY);
    assert_int_equal(hy_ca_verify_chain(cert, NULL, root.cert, NULL), 0);

    /* pathLen 0: it signs leaves, never another CA */
    inter = (struct hy_ca_pem){.cert = cert, .key = csr.key};
    struct hy_ca_pem csr2;
    make_csr("below", &csr2);
    char *cert2 = (char *)"unset";
    assert_int_equal(hy_ca_sign_intermediate(&inter, csr2.cert, now, DAY, NULL, &cert2), HY_EINVAL);
    assert_null(cert2);
    free(cert);

    /* shorter than the root: as asked; the CN overridden */
    assert_int_equal(hy_ca_sign_intermediate(&root, csr.cert, now, DAY, "zone west", &cert), 0);
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, "zone west");
    assert_int_equal(info.not_after, now + DAY);
    hy_ca_info_fini(&info);
    free(cert);

    /* refusals, leaving *cert_pem NULL */
    struct hy_ca_pem mixed = {.cert = root.cert, .key = other.key};
    struct hy_ca_pem leafish;
    struct hy_ca_server_req req = server_req(now, DAY);
    assert_int_equal(hy_ca_sign_server(&root, &req, &leafish), 0);
    struct hy_ca_pem old;
    make_root("old", now - 10 * DAY, DAY, &old);
    static const char *const bad_csrs[] = {"", "hello",
                                           "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                           "-----END CERTIFICATE REQUEST-----\n"};
    for (size_t i = 0; i < sizeof(bad_csrs) / sizeof(bad_csrs[0]); i++)
        assert_int_equal(hy_ca_sign_intermediate(&root, bad_csrs[i], now, DAY, NULL, &cert),
                         HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&root, NULL, now, DAY, NULL, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&root, root.cert, now, DAY, NULL, &cert),
                     HY_EINVAL); /* a certificate is not a request */
    assert_int_equal(hy_ca_sign_intermediate(&mixed, csr.cert, now, DAY, NULL, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&leafish, csr.cert, now, DAY, NULL, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&old, csr.cert, now, DAY, NULL, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(NULL, csr.cert, now, DAY, NULL, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&root, csr.cert, now, 0, NULL, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&root, csr.cert, now, DAY, "", &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_intermediate(&root, csr.cert, now, DAY, "bad\x01", &cert),
                     HY_EINVAL);
    assert_null(cert);

    hy_ca_pem_fini(&old);
    hy_ca_pem_fini(&leafish);
    hy_ca_pem_fini(&csr2);
    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&other);
    hy_ca_pem_fini(&root);
}

/* A request changed after it was signed is refused whatever the CA. */
static void test_csr_tampered(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem root, csr, inter;
    make_root(ROOT_CN, now, TEN_YEARS, &root);
    make_intermediate(&root, ZONE_CN, now, DAY, &inter);
    make_csr("web", &csr);
    const char *uris[] = {SPIFFE_WEB};
    char *cert = (char *)"unset";

    /* flip a bit of the last byte of s, and one in the middle of r */
    char *forged[] = {flip_from_end(csr.cert, 1), flip_from_end(csr.cert, 40),
                      tamper(csr.cert, "web", "wex")};
    for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++) {
        assert_int_equal(hy_ca_sign_intermediate(&root, forged[i], now, DAY, NULL, &cert),
                         HY_EVERIFY);
        assert_null(cert);
        assert_int_equal(hy_ca_sign_leaf(&inter, forged[i], now, DAY, uris, 1, &cert), HY_EVERIFY);
        assert_null(cert);
        /* still readable, as a forged certificate is */
        struct hy_ca_info info;
        assert_int_equal(hy_ca_inspect(forged[i], &info), 0);
        hy_ca_info_fini(&info);
        free(forged[i]);
    }
    /* the untouched request still goes through */
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, uris, 1, &cert), 0);
    free(cert);

    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&inter);
    hy_ca_pem_fini(&root);
}

static void test_sign_leaf_chain(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem root, other, inter, csr;
    make_root(ROOT_CN, now, TEN_YEARS, &root);
    make_root("Hypha root CA, previous", now, TEN_YEARS, &other);
    make_intermediate(&root, ZONE_CN, now, 30 * DAY, &inter);
    make_csr("ignored-cn", &csr);

    const char *uris[] = {SPIFFE_WEB, "spiffe://default/ns/default/sa/web"};
    char *leaf;
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, 365 * DAY, uris, 2, &leaf), 0);
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(leaf, &info), 0);
    assert_string_equal(info.subject_cn, "web"); /* the first URI's last segment */
    assert_string_equal(info.issuer_cn, ZONE_CN);
    assert_false(info.is_ca);
    assert_int_equal(info.nsans, 2);
    assert_string_equal(info.sans[0], "URI:" SPIFFE_WEB);
    assert_string_equal(info.sans[1], "URI:spiffe://default/ns/default/sa/web");
    assert_int_equal(info.not_before, now - 60);
    assert_int_equal(info.not_after, now + 30 * DAY); /* the intermediate's end */
    hy_ca_info_fini(&info);
    assert_true(der_has(leaf, bc_not_ca, sizeof(bc_not_ca)));
    assert_true(der_has(leaf, ku_digital_signature, sizeof(ku_digital_signature)));
    assert_true(der_has(leaf, eku_server_client, sizeof(eku_server_client)));
    assert_int_equal(hy_ca_check_key(leaf, csr.key), 0);

    /* root -> intermediate -> leaf, the right root anywhere in the bundle */
    char *bundle = concat(other.cert, root.cert);
    char *both_roots_rev = concat(root.cert, other.cert);
    const char *why = "unset";
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, bundle, &why), 0);
    assert_null(why);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, both_roots_rev, NULL), 0);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, root.cert, NULL), 0);
    assert_int_equal(hy_ca_verify(leaf, inter.cert, NULL), 0); /* one hop */
    assert_int_equal(hy_ca_verify_chain(inter.cert, NULL, bundle, NULL), 0);
    assert_int_equal(hy_ca_verify_chain(root.cert, NULL, bundle, NULL), 0);
    /* an intermediate in the bundle is no root, but one hop is hy_ca_verify's */
    assert_chain_fails(leaf, inter.cert, inter.cert, "not a root");
    assert_chain_fails(leaf, NULL, inter.cert, "not a root");
    /* not without the right root, nor without the intermediate */
    assert_chain_fails(leaf, inter.cert, other.cert, "intermediate");
    assert_chain_fails(leaf, inter.cert, other.cert, "not issued by a root in the bundle");
    assert_chain_fails(leaf, NULL, bundle, "not issued by a root in the bundle");
    assert_chain_fails(leaf, "", bundle, "not issued");
    assert_verify_fails(leaf, root.cert, "not issued by this CA");

    /* intermediates in any order, unrelated ones ignored */
    struct hy_ca_pem stray;
    make_intermediate(&other, "stray", now, DAY, &stray);
    char *chain = concat(stray.cert, inter.cert);
    assert_int_equal(hy_ca_verify_chain(leaf, chain, root.cert, NULL), 0);
    free(chain);
    hy_ca_pem_fini(&stray);

    /* the identity is the signer's: no URI, or one without a path, and the
     * request's CN names it */
    char *cert;
    const char *no_path[] = {"spiffe://default"};
    const char *query[] = {"spiffe://default/ns/api?x=1#y"};
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, no_path, 1, &cert), 0);
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, "ignored-cn");
    hy_ca_info_fini(&info);
    free(cert);
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, NULL, 0, &cert), 0);
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, "ignored-cn");
    assert_int_equal(info.nsans, 0);
    hy_ca_info_fini(&info);
    free(cert);
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, query, 1, &cert), 0);
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, "api");
    hy_ca_info_fini(&info);
    free(cert);
    /* a root signs leaves too */
    assert_int_equal(hy_ca_sign_leaf(&root, csr.cert, now, DAY, uris, 1, &cert), 0);
    assert_int_equal(hy_ca_verify_chain(cert, NULL, bundle, NULL), 0);
    free(cert);

    /* refusals: bad URIs, an intermediate with another's key, bad input */
    static const char *const bad_uris[] = {
        "", "no-scheme", "1http://x", "spiffe://default/w b", "spiffe://d/<x>", ":x"};
    for (size_t i = 0; i < sizeof(bad_uris) / sizeof(bad_uris[0]); i++) {
        cert = (char *)"unset";
        assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, &bad_uris[i], 1, &cert),
                         HY_EINVAL);
        assert_null(cert);
    }
    const char *with_null[] = {SPIFFE_WEB, NULL};
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, with_null, 2, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, NULL, 1, &cert), HY_EINVAL);
    struct hy_ca_pem mixed = {.cert = inter.cert, .key = root.key};
    assert_int_equal(hy_ca_sign_leaf(&mixed, csr.cert, now, DAY, uris, 1, &cert), HY_EINVAL);
    mixed.key = csr.key;
    assert_int_equal(hy_ca_sign_leaf(&mixed, csr.cert, now, DAY, uris, 1, &cert), HY_EINVAL);
    struct hy_ca_pem leaf_as_ca = {.cert = leaf, .key = csr.key};
    assert_int_equal(hy_ca_sign_leaf(&leaf_as_ca, csr.cert, now, DAY, uris, 1, &cert), HY_EINVAL);
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, -1, uris, 1, &cert), HY_EINVAL);
    assert_null(cert);

    free(both_roots_rev);
    free(bundle);
    free(leaf);
    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&inter);
    hy_ca_pem_fini(&other);
    hy_ca_pem_fini(&root);
}

/* Times are checked on every certificate of the path; a root that cannot
 * anchor is passed over (rotation: the old root has expired). */
static void test_chain_validity(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    const char *uris[] = {SPIFFE_WEB};
    struct hy_ca_pem root, old_root, inter, old_inter, csr;
    make_root(ROOT_CN, now - 20 * DAY, TEN_YEARS, &root);
    make_root("expired root", now - 20 * DAY, DAY, &old_root);
    make_csr("web", &csr);
    char *leaf;

    /* an intermediate that ended ten days ago, and a leaf inside its life */
    make_intermediate(&root, "old zone", now - 15 * DAY, 5 * DAY, &old_inter);
    assert_int_equal(hy_ca_sign_leaf(&old_inter, csr.cert, now - 14 * DAY, DAY, uris, 1, &leaf), 0);
    assert_chain_fails(leaf, old_inter.cert, root.cert, "intermediate certificate has expired");
    free(leaf);
    /* nor can it issue any more */
    assert_int_equal(hy_ca_sign_leaf(&old_inter, csr.cert, now, DAY, uris, 1, &leaf), HY_EINVAL);

    make_intermediate(&root, ZONE_CN, now, 30 * DAY, &inter);
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now - 3 * DAY, DAY, uris, 1, &leaf), 0);
    assert_chain_fails(leaf, inter.cert, root.cert, "certificate has expired");
    free(leaf);
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now + 3 * DAY, DAY, uris, 1, &leaf), 0);
    assert_chain_fails(leaf, inter.cert, root.cert, "not yet valid");
    free(leaf);

    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, uris, 1, &leaf), 0);
    char *bundle = concat(old_root.cert, root.cert);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, bundle, NULL), 0);
    assert_chain_fails(leaf, inter.cert, old_root.cert, "root in the bundle has expired");
    free(bundle);

    /* bundles that are not bundles */
    const char *why;
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, "", &why), HY_EINVAL);
    assert_non_null(why);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, NULL, &why), HY_EINVAL);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, "hello", &why), HY_EINVAL);
    assert_int_equal(hy_ca_verify_chain(leaf, "hello", root.cert, &why), HY_EINVAL);
    assert_non_null(why);
    assert_int_equal(hy_ca_verify_chain("hello", inter.cert, root.cert, &why), HY_EINVAL);
    assert_int_equal(hy_ca_verify_chain(NULL, inter.cert, root.cert, &why), HY_EINVAL);
    assert_int_equal(hy_ca_verify_chain(csr.cert, inter.cert, root.cert, &why), HY_EINVAL);
    static const char bad_body[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, bad_body, &why), HY_EINVAL);
    assert_int_equal(hy_ca_verify_chain(leaf, bad_body, root.cert, &why), HY_EINVAL);
    assert_int_equal(hy_ca_verify_chain(bad_body, inter.cert, root.cert, &why), HY_EINVAL);
    char *with_bad = concat(root.cert, bad_body);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, with_bad, &why), HY_EINVAL);
    free(with_bad);
    char *truncated = strndup(root.cert, strlen(root.cert) - 10);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, truncated, &why), HY_EINVAL);
    free(truncated);
    /* a leaf among the roots anchors nothing */
    assert_chain_fails(leaf, inter.cert, leaf, "not a CA");
    struct hy_buf many = {0};
    for (int i = 0; i <= HY_CA_CHAIN_MAX; i++)
        assert_int_equal(hy_buf_printf(&many, "%s", root.cert), 0);
    assert_int_equal(hy_ca_verify_chain(leaf, many.data, root.cert, &why), HY_ETOOBIG);
    /* a trust bundle (roots and MeshTrust CAs) may hold more than a chain */
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, many.data, &why), 0);
    for (int i = HY_CA_CHAIN_MAX + 1; i <= HY_CA_BUNDLE_MAX; i++)
        assert_int_equal(hy_buf_printf(&many, "%s", root.cert), 0);
    assert_int_equal(hy_ca_verify_chain(leaf, inter.cert, many.data, &why), HY_ETOOBIG);
    hy_buf_fini(&many);
    free(leaf);

    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&old_inter);
    hy_ca_pem_fini(&inter);
    hy_ca_pem_fini(&old_root);
    hy_ca_pem_fini(&root);
}

/* ----- cross-checks with the openssl CLI ----- */

static bool have_openssl(void)
{
    return system("openssl version >/dev/null 2>&1") == 0;
}

static char tmpdir[64];

static char *path_in_tmp(const char *name)
{
    static char buf[8][128]; /* enough for one command line */
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
    return p;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Runs a shell command; returns its stdout and stderr (caller frees). */
static char *run(const char *cmd, int *status)
{
    char full[1024];
    snprintf(full, sizeof(full), "(%s) > %s 2>&1", cmd, path_in_tmp("out.txt"));
    *status = system(full);
    return read_text(path_in_tmp("out.txt"));
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_ca.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_openssl_reads_ours(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    struct hy_ca_server_req req = server_req(time(NULL), DAY);
    struct hy_ca_pem ca, leaf;
    assert_int_equal(hy_ca_make_self_signed_server(ROOT_CN, &req, &ca, &leaf), 0);
    write_text(path_in_tmp("ca.pem"), ca.cert);
    write_text(path_in_tmp("ca.key"), ca.key);
    write_text(path_in_tmp("leaf.pem"), leaf.cert);

    char cmd[512];
    int st;
    snprintf(cmd, sizeof(cmd), "openssl x509 -noout -text -in %s", path_in_tmp("ca.pem"));
    char *out = run(cmd, &st);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "Basic Constraints: critical"));
    assert_non_null(strstr(out, "CA:TRUE"));
    assert_non_null(strstr(out, "Key Usage: critical"));
    assert_non_null(strstr(out, "Certificate Sign, CRL Sign"));
    assert_non_null(strstr(out, "ecdsa-with-SHA256"));
    assert_non_null(strstr(out, "CN = " ROOT_CN));
    assert_non_null(strstr(out, "O = Hypha"));
    free(out);

    snprintf(cmd, sizeof(cmd), "openssl x509 -noout -text -in %s", path_in_tmp("leaf.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "CA:FALSE"));
    assert_non_null(strstr(out, "TLS Web Server Authentication"));
    assert_non_null(
        strstr(out, "DNS:localhost, DNS:cp.hypha.local, IP Address:127.0.0.1, IP Address:0:0"));
    free(out);

    /* strict RFC 5280 checks, for the TLS server purpose */
    snprintf(cmd, sizeof(cmd), "openssl verify -x509_strict -purpose sslserver -CAfile %s %s",
             path_in_tmp("ca.pem"), path_in_tmp("leaf.pem"));
    out = run(cmd, &st);
    if (st != 0)
        fail_msg("openssl verify: %s", out);
    free(out);
    snprintf(cmd, sizeof(cmd), "openssl verify -x509_strict -CAfile %s %s", path_in_tmp("ca.pem"),
             path_in_tmp("ca.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    free(out);
    /* the key is a P-256 PKCS#8 key openssl agrees belongs to the cert */
    snprintf(cmd, sizeof(cmd),
             "test \"$(openssl pkey -in %s -pubout)\" = \"$(openssl x509 -in %s -noout -pubkey)\"",
             path_in_tmp("ca.key"), path_in_tmp("ca.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    free(out);

    /* same fingerprint as openssl computes */
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(ca.cert, &info), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -noout -fingerprint -sha256 -in %s | tr -d : | tr A-F a-f",
             path_in_tmp("ca.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, info.fingerprint));
    free(out);
    hy_ca_info_fini(&info);

    hy_ca_pem_fini(&leaf);
    hy_ca_pem_fini(&ca);
}

/* A CA made by openssl (SHA-1 key ids, its own encoding) signs our leaf, and
 * its SEC1 and PKCS#8 keys are read. */
static void test_openssl_ca(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    char cmd[768];
    int st;
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj '/O=Elsewhere/CN=External CA' -addext keyUsage=critical,keyCertSign "
             "-keyout %s -out %s && "
             "openssl ec -in %s -out %s",
             path_in_tmp("ext.key"), path_in_tmp("ext.pem"), path_in_tmp("ext.key"),
             path_in_tmp("ext-sec1.key"));
    char *out = run(cmd, &st);
    if (st != 0)
        fail_msg("openssl req: %s", out);
    free(out);
    struct hy_ca_pem ext = {.cert = read_text(path_in_tmp("ext.pem")),
                            .key = read_text(path_in_tmp("ext.key"))};
    char *sec1 = read_text(path_in_tmp("ext-sec1.key"));
    assert_non_null(strstr(sec1, "BEGIN EC PRIVATE KEY"));
    assert_int_equal(hy_ca_check_key(ext.cert, ext.key), 0);
    assert_int_equal(hy_ca_check_key(ext.cert, sec1), 0);
    assert_int_equal(hy_ca_verify(ext.cert, ext.cert, NULL), 0);

    struct hy_ca_server_req req = server_req(time(NULL), DAY);
    struct hy_ca_pem leaf;
    assert_int_equal(hy_ca_sign_server(&ext, &req, &leaf), 0);
    assert_int_equal(hy_ca_verify(leaf.cert, ext.cert, NULL), 0);
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(leaf.cert, &info), 0);
    assert_string_equal(info.issuer_cn, "External CA");
    hy_ca_info_fini(&info);
    write_text(path_in_tmp("leaf.pem"), leaf.cert);
    /* openssl insists the leaf's AKID is the CA's SKID */
    snprintf(cmd, sizeof(cmd), "openssl verify -x509_strict -purpose sslserver -CAfile %s %s",
             path_in_tmp("ext.pem"), path_in_tmp("leaf.pem"));
    out = run(cmd, &st);
    if (st != 0)
        fail_msg("openssl verify: %s", out);
    free(out);

    hy_ca_pem_fini(&leaf);
    free(sec1);
    free(ext.cert);
    free(ext.key);
}

/* Our request, intermediate and leaf as openssl reads them, and the chain
 * openssl verifies. */
static void test_openssl_chain(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    int64_t now = time(NULL);
    struct hy_ca_pem root, other, inter, csr;
    make_root(ROOT_CN, now, TEN_YEARS, &root);
    make_root("other", now, TEN_YEARS, &other);
    make_intermediate(&root, ZONE_CN, now, 30 * DAY, &inter);
    make_csr("web", &csr);
    const char *uris[] = {SPIFFE_WEB};
    char *leaf;
    assert_int_equal(hy_ca_sign_leaf(&inter, csr.cert, now, DAY, uris, 1, &leaf), 0);
    write_text(path_in_tmp("root.pem"), root.cert);
    write_text(path_in_tmp("other.pem"), other.cert);
    write_text(path_in_tmp("inter.pem"), inter.cert);
    write_text(path_in_tmp("leaf.pem"), leaf);
    write_text(path_in_tmp("csr.pem"), csr.cert);
    write_text(path_in_tmp("csr.key"), csr.key);

    char cmd[768];
    int st;
    snprintf(cmd, sizeof(cmd), "openssl req -verify -noout -subject -in %s",
             path_in_tmp("csr.pem"));
    char *out = run(cmd, &st);
    if (st != 0)
        fail_msg("openssl req -verify: %s", out);
    assert_non_null(strstr(out, "verify OK"));
    assert_non_null(strstr(out, "O = Hypha, CN = web"));
    free(out);
    snprintf(cmd, sizeof(cmd),
             "test \"$(openssl pkey -in %s -pubout)\" = \"$(openssl req -in %s -noout -pubkey)\"",
             path_in_tmp("csr.key"), path_in_tmp("csr.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    free(out);

    snprintf(cmd, sizeof(cmd), "openssl x509 -noout -text -in %s", path_in_tmp("inter.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "Basic Constraints: critical"));
    assert_non_null(strstr(out, "CA:TRUE, pathlen:0"));
    assert_non_null(strstr(out, "Key Usage: critical"));
    assert_non_null(strstr(out, "Certificate Sign, CRL Sign"));
    assert_non_null(strstr(out, "Issuer: O = Hypha, CN = " ROOT_CN));
    assert_non_null(strstr(out, "Subject: O = Hypha, CN = " ZONE_CN));
    free(out);

    snprintf(cmd, sizeof(cmd), "openssl x509 -noout -text -in %s", path_in_tmp("leaf.pem"));
    out = run(cmd, &st);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "Basic Constraints: critical"));
    assert_non_null(strstr(out, "CA:FALSE"));
    assert_non_null(strstr(out, "Key Usage: critical"));
    assert_non_null(strstr(out, "Digital Signature"));
    assert_non_null(strstr(out, "TLS Web Server Authentication, TLS Web Client Authentication"));
    assert_non_null(strstr(out, "URI:" SPIFFE_WEB));
    assert_non_null(strstr(out, "Subject: O = Hypha, CN = web"));
    free(out);

    /* strict RFC 5280 path validation, both TLS purposes */
    static const char *const purposes[] = {"sslclient", "sslserver"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "openssl verify -x509_strict -purpose %s -CAfile %s -untrusted %s %s", purposes[i],
                 path_in_tmp("root.pem"), path_in_tmp("inter.pem"), path_in_tmp("leaf.pem"));
        out = run(cmd, &st);
        if (st != 0)
            fail_msg("openssl verify: %s", out);
        free(out);
    }
    snprintf(cmd, sizeof(cmd), "openssl verify -CAfile %s -untrusted %s %s",
             path_in_tmp("other.pem"), path_in_tmp("inter.pem"), path_in_tmp("leaf.pem"));
    out = run(cmd, &st);
    assert_int_not_equal(st, 0);
    free(out);

    free(leaf);
    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&inter);
    hy_ca_pem_fini(&other);
    hy_ca_pem_fini(&root);
}

/* Requests made by openssl: only the key and CN are taken from them; keys
 * other than P-256 and other hashes are refused. And a CA that openssl puts
 * below our pathLen-0 intermediate does not verify. */
static void test_openssl_requests(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    int64_t now = time(NULL);
    struct hy_ca_pem root, inter;
    make_root(ROOT_CN, now, TEN_YEARS, &root);
    make_intermediate(&root, ZONE_CN, now, 30 * DAY, &inter);
    write_text(path_in_tmp("root.pem"), root.cert);
    write_text(path_in_tmp("inter.pem"), inter.cert);
    write_text(path_in_tmp("inter.key"), inter.key);

    char cmd[1024];
    int st;
    snprintf(cmd, sizeof(cmd),
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -subj '/O=Elsewhere/CN=sidecar' "
             "-addext 'subjectAltName=DNS:evil.example,URI:spiffe://other/admin'",
             path_in_tmp("ext.key"), path_in_tmp("ext.csr"));
    char *out = run(cmd, &st);
    if (st != 0)
        fail_msg("openssl req: %s", out);
    free(out);
    char *ext_csr = read_text(path_in_tmp("ext.csr"));
    char *ext_key = read_text(path_in_tmp("ext.key"));
    struct hy_ca_info info;
    assert_int_equal(hy_ca_inspect(ext_csr, &info), 0);
    assert_true(info.is_request);
    assert_string_equal(info.subject_cn, "sidecar");
    hy_ca_info_fini(&info);

    const char *uris[] = {SPIFFE_WEB};
    char *cert;
    assert_int_equal(hy_ca_sign_leaf(&inter, ext_csr, now, DAY, uris, 1, &cert), 0);
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, "web");
    assert_int_equal(info.nsans, 1); /* the requested SANs are not ours to grant */
    assert_string_equal(info.sans[0], "URI:" SPIFFE_WEB);
    hy_ca_info_fini(&info);
    assert_int_equal(hy_ca_check_key(cert, ext_key), 0);
    assert_int_equal(hy_ca_verify_chain(cert, inter.cert, root.cert, NULL), 0);
    free(cert);
    assert_int_equal(hy_ca_sign_intermediate(&root, ext_csr, now, DAY, NULL, &cert), 0);
    assert_int_equal(hy_ca_inspect(cert, &info), 0);
    assert_string_equal(info.subject_cn, "sidecar");
    hy_ca_info_fini(&info);
    assert_true(der_has(cert, "Hypha", 5));
    assert_false(der_has(cert, "Elsewhere", 9));
    free(cert);

    /* refused: P-384, RSA, SHA-384 */
    static const char *const refused[] = {
        "-newkey ec -pkeyopt ec_paramgen_curve:P-384",
        "-newkey rsa:2048",
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha384",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(cmd, sizeof(cmd), "openssl req -new %s -nodes -keyout %s -out %s -subj /CN=x",
                 refused[i], path_in_tmp("bad.key"), path_in_tmp("bad.csr"));
        out = run(cmd, &st);
        if (st != 0)
            fail_msg("openssl req: %s", out);
        free(out);
        char *bad = read_text(path_in_tmp("bad.csr"));
        cert = (char *)"unset";
        assert_int_equal(hy_ca_sign_leaf(&inter, bad, now, DAY, uris, 1, &cert), HY_EINVAL);
        assert_null(cert);
        assert_int_equal(hy_ca_sign_intermediate(&root, bad, now, DAY, NULL, &cert), HY_EINVAL);
        free(bad);
    }

    /* openssl makes a CA below our intermediate, which pathLen 0 forbids */
    write_text(path_in_tmp("sub.ext"), "basicConstraints=critical,CA:true\n"
                                       "keyUsage=critical,keyCertSign\n"
                                       "subjectKeyIdentifier=hash\n"
                                       "authorityKeyIdentifier=keyid\n");
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -req -in %s -CA %s -CAkey %s -set_serial 7 -days 1 -extfile %s "
             "-out %s",
             path_in_tmp("ext.csr"), path_in_tmp("inter.pem"), path_in_tmp("inter.key"),
             path_in_tmp("sub.ext"), path_in_tmp("sub.pem"));
    out = run(cmd, &st);
    if (st != 0)
        fail_msg("openssl x509 -req: %s", out);
    free(out);
    struct hy_ca_pem sub = {.cert = read_text(path_in_tmp("sub.pem")), .key = ext_key};
    struct hy_ca_pem csr;
    make_csr("deep", &csr);
    assert_int_equal(hy_ca_sign_leaf(&sub, csr.cert, now, DAY, uris, 1, &cert), 0);
    write_text(path_in_tmp("deep.pem"), cert);
    char *chain = concat(inter.cert, sub.cert);
    assert_chain_fails(cert, chain, root.cert, "pathLen");
    free(chain);
    snprintf(cmd, sizeof(cmd), "cat %s %s > %s && openssl verify -CAfile %s -untrusted %s %s",
             path_in_tmp("inter.pem"), path_in_tmp("sub.pem"), path_in_tmp("chain.pem"),
             path_in_tmp("root.pem"), path_in_tmp("chain.pem"), path_in_tmp("deep.pem"));
    out = run(cmd, &st);
    assert_int_not_equal(st, 0); /* openssl agrees */
    assert_non_null(strstr(out, "path length"));
    free(out);
    free(cert);
    hy_ca_pem_fini(&csr);
    free(sub.cert);

    free(ext_key);
    free(ext_csr);
    hy_ca_pem_fini(&inter);
    hy_ca_pem_fini(&root);
}

/* Trust bundles users write (MeshTrust): CA certificates only, each read
 * with its fingerprint; the first problem names its certificate. */
struct seen {
    size_t n;
    char fp[4][HY_CA_FINGERPRINT_LEN + 1];
};

static int collect(void *ud, const struct hy_ca_bundle_cert *c)
{
    struct seen *s = ud;
    assert_true(s->n < 4);
    assert_int_equal(strncmp(c->pem, "-----BEGIN CERTIFICATE-----", 27), 0);
    assert_int_equal(strncmp(c->pem + c->len - 25, "-----END CERTIFICATE-----", 25), 0);
    memcpy(s->fp[s->n++], c->fingerprint, sizeof(s->fp[0]));
    return 0;
}

static void assert_bundle_fails(const char *pem, int rc, size_t index, const char *why_part)
{
    size_t at = 99;
    const char *why = NULL;
    assert_int_equal(hy_ca_bundle_each(pem, NULL, NULL, NULL, &at, &why), rc);
    assert_int_equal(at, index);
    assert_non_null(why);
    if (!strstr(why, why_part))
        fail_msg("why is \"%s\", expected it to mention \"%s\"", why, why_part);
}

static void test_bundle_each(void **state)
{
    (void)state;
    int64_t now = time(NULL);
    struct hy_ca_pem a, b, inter, csr, server;
    make_root("a", now, DAY, &a);
    make_root("b", now, DAY, &b);
    make_intermediate(&a, ZONE_CN, now, DAY, &inter);
    make_csr("web", &csr);
    struct hy_ca_server_req req = server_req(now, DAY);
    assert_int_equal(hy_ca_sign_server(&a, &req, &server), 0);
    struct hy_ca_info ia, ib;
    assert_int_equal(hy_ca_inspect(a.cert, &ia), 0);
    assert_int_equal(hy_ca_inspect(b.cert, &ib), 0);

    /* text between blocks is fine; an intermediate CA is a CA */
    struct hy_buf pem = {0};
    assert_int_equal(
        hy_buf_printf(&pem, "# corp roots\n%ssubject=b\n%s%s", a.cert, b.cert, inter.cert), 0);
    struct seen s = {0};
    size_t count = 0;
    assert_int_equal(hy_ca_bundle_each(pem.data, collect, &s, &count, NULL, NULL), 0);
    assert_int_equal(count, 3);
    assert_string_equal(s.fp[0], ia.fingerprint);
    assert_string_equal(s.fp[1], ib.fingerprint);
    hy_buf_fini(&pem);

    assert_bundle_fails("", HY_EINVAL, 0, "no \"-----BEGIN CERTIFICATE-----\"");
    assert_bundle_fails(NULL, HY_EINVAL, 0, "no \"-----BEGIN CERTIFICATE-----\"");
    /* a leaf anchors nothing; a key or a request does not belong */
    char *two = concat(a.cert, server.cert);
    assert_bundle_fails(two, HY_EINVAL, 1, "not a CA");
    free(two);
    two = concat(b.cert, a.key);
    assert_bundle_fails(two, HY_EINVAL, 1, "other than CERTIFICATE");
    free(two);
    assert_bundle_fails(csr.cert, HY_EINVAL, 0, "other than CERTIFICATE");
    char *cut = strndup(a.cert, strlen(a.cert) - 10);
    assert_bundle_fails(cut, HY_EINVAL, 0, "no \"-----END CERTIFICATE-----\" line");
    free(cut);
    static const char bad_body[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_bundle_fails(bad_body, HY_EINVAL, 0, "");
    struct hy_buf many = {0};
    for (int i = 0; i <= HY_CA_BUNDLE_MAX; i++)
        assert_int_equal(hy_buf_printf(&many, "%s", b.cert), 0);
    assert_bundle_fails(many.data, HY_ETOOBIG, HY_CA_BUNDLE_MAX, "at most 64");
    hy_buf_fini(&many);

    hy_ca_info_fini(&ia);
    hy_ca_info_fini(&ib);
    hy_ca_pem_fini(&server);
    hy_ca_pem_fini(&csr);
    hy_ca_pem_fini(&inter);
    hy_ca_pem_fini(&b);
    hy_ca_pem_fini(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_root_far_future),
        cmocka_unit_test(test_root_bad_input),
        cmocka_unit_test(test_self_signed_server),
        cmocka_unit_test(test_sign_server),
        cmocka_unit_test(test_validity_enforced),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_sign_intermediate),
        cmocka_unit_test(test_csr_tampered),
        cmocka_unit_test(test_sign_leaf_chain),
        cmocka_unit_test(test_chain_validity),
        cmocka_unit_test(test_bundle_each),
        cmocka_unit_test(test_openssl_reads_ours),
        cmocka_unit_test(test_openssl_ca),
        cmocka_unit_test(test_openssl_chain),
        cmocka_unit_test(test_openssl_requests),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
