/* Unit tests of the CA module: root and server certificates read back,
 * chains that verify and ones that must not, key matching, bad input, and
 * (when the openssl CLI is installed) a cross-check of what we write. */
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

/* Decodes the PEM, replaces the first `from` in the DER with `to` (same
 * length), and encodes it again: a certificate changed after signing. */
static char *tamper(const char *pem, const char *from, const char *to)
{
    const char *b = strstr(pem, "-----\n") + 6, *e = strstr(pem, "-----END");
    char *b64 = calloc(1, (size_t)(e - b) + 1);
    size_t n = 0;
    for (const char *p = b; p < e; p++)
        if (*p != '\n')
            b64[n++] = *p;
    uint8_t *der = malloc(n);
    size_t len;
    assert_true(hy_base64_decode(b64, n, der, &len, false));
    uint8_t *at = memmem(der, len, from, strlen(from));
    assert_non_null(at);
    memcpy(at, to, strlen(to));
    char *enc = malloc(hy_base64_encoded_size(len));
    hy_base64_encode(der, len, enc, false);
    struct hy_buf out = {0};
    assert_int_equal(
        hy_buf_printf(&out, "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n", enc),
        0);
    free(enc);
    free(der);
    free(b64);
    return out.data;
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

/* ----- cross-checks with the openssl CLI ----- */

static bool have_openssl(void)
{
    return system("openssl version >/dev/null 2>&1") == 0;
}

static char tmpdir[64];

static char *path_in_tmp(const char *name)
{
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root),           cmocka_unit_test(test_root_far_future),
        cmocka_unit_test(test_root_bad_input), cmocka_unit_test(test_self_signed_server),
        cmocka_unit_test(test_sign_server),    cmocka_unit_test(test_validity_enforced),
        cmocka_unit_test(test_garbage),        cmocka_unit_test(test_openssl_reads_ours),
        cmocka_unit_test(test_openssl_ca),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
