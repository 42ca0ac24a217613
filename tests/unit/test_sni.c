/* SNI names (hy_sni_for) and the ClientHello reader (hy_sni_parse) the
 * ingress routes on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sni.h"
#include "poison.h"

static size_t put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

/* A ClientHello handshake message (header included) with host as SNI
 * (NULL: no server_name extension), into out; its length. */
static size_t hello(const char *host, uint8_t *out)
{
    uint8_t body[1024];
    size_t n = 0;
    n += put16(body + n, 0x0303);
    memset(body + n, 0xab, 32); /* random */
    n += 32;
    body[n++] = 0; /* session id */
    n += put16(body + n, 4);
    n += put16(body + n, 0x1301);
    n += put16(body + n, 0x1303);
    body[n++] = 1; /* compression: null */
    body[n++] = 0;
    uint8_t ext[600];
    size_t e = 0;
    e += put16(ext + e, 0x002b); /* supported_versions: TLS 1.3 */
    e += put16(ext + e, 3);
    ext[e++] = 2;
    e += put16(ext + e, 0x0304);
    if (host) {
        size_t h = strlen(host);
        e += put16(ext + e, 0); /* server_name */
        e += put16(ext + e, h + 5);
        e += put16(ext + e, h + 3);
        ext[e++] = 0; /* host_name */
        e += put16(ext + e, h);
        memcpy(ext + e, host, h);
        e += h;
    }
    n += put16(body + n, e);
    memcpy(body + n, ext, e);
    n += e;
    out[0] = 1; /* ClientHello */
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    memcpy(out + 4, body, n);
    return n + 4;
}

/* msg in records of at most frag bytes each; the total length. */
static size_t records(const uint8_t *msg, size_t len, size_t frag, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += frag) {
        size_t k = len - i < frag ? len - i : frag;
        out[o++] = 0x16;
        out[o++] = 0x03;
        out[o++] = 0x01;
        o += put16(out + o, k);
        memcpy(out + o, msg + i, k);
        o += k;
    }
    return o;
}

static void test_names(void **state)
{
    (void)state;
    char a[HY_SNI_MAX], b[HY_SNI_MAX];
    hy_sni_for("backend", "default", a, sizeof(a));
    assert_string_equal(a, "backend.default.mesh");
    /* not DNS labels as they are: hashed, distinct, stable */
    hy_sni_for("backend_kuma-demo_svc_8080", "default", a, sizeof(a));
    assert_int_equal(strncmp(a, "hy--", 4), 0);
    assert_int_equal(strlen(a), 4 + 16 + strlen(".default.mesh"));
    hy_sni_for("backend_kuma-demo_svc_8081", "default", b, sizeof(b));
    assert_string_not_equal(a, b);
    hy_sni_for("backend_kuma-demo_svc_8080", "default", b, sizeof(b));
    assert_string_equal(a, b);
    hy_sni_for("Web", "prod.eu", a, sizeof(a)); /* uppercase, a dot */
    assert_int_equal(strncmp(a, "hy--", 4), 0);
    assert_non_null(strstr(a, ".hy--"));
    /* a name that looks like an encoded one is encoded too */
    hy_sni_for("hy--0123456789abcdef", "m", a, sizeof(a));
    assert_string_not_equal(a, "hy--0123456789abcdef.m.mesh");
    hy_sni_for("-x", "m", a, sizeof(a));
    assert_int_equal(strncmp(a, "hy--", 4), 0);
    char long_name[100];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    hy_sni_for(long_name, "m", a, sizeof(a));
    assert_int_equal(strncmp(a, "hy--", 4), 0);
}

/* A subset's name: four labels, the tags' order does not matter, their
 * values and the service do, and never a service's own name. */
static void test_subset_names(void **state)
{
    (void)state;
    char a[HY_SNI_MAX], b[HY_SNI_MAX], c[HY_SNI_MAX];
    const char *k1[] = {"version", "hypha.io/protocol"}, *v1[] = {"v2", "http"};
    const char *k2[] = {"hypha.io/protocol", "version"}, *v2[] = {"http", "v2"};
    const char *v3[] = {"v1", "http"};
    hy_sni_for_subset("backend", "default", k1, v1, 2, a, sizeof(a));
    hy_sni_for_subset("backend", "default", k2, v2, 2, b, sizeof(b));
    assert_string_equal(a, b);
    assert_int_equal(strncmp(a, "backend.hy--", 12), 0);
    assert_int_equal(strlen(a), strlen("backend.hy--.default.mesh") + 16);
    hy_sni_for_subset("backend", "default", k1, v3, 2, c, sizeof(c));
    assert_string_not_equal(a, c);
    hy_sni_for_subset("backend2", "default", k1, v1, 2, c, sizeof(c));
    assert_string_equal(strchr(a, '.'), strchr(c, '.')); /* the hash covers the tags only */
    assert_string_not_equal(a, c);
    /* a key and value split differently hash differently */
    const char *ka[] = {"ab"}, *va[] = {"c"}, *kb[] = {"a"}, *vb[] = {"bc"};
    hy_sni_for_subset("s", "m", ka, va, 1, b, sizeof(b));
    hy_sni_for_subset("s", "m", kb, vb, 1, c, sizeof(c));
    assert_string_not_equal(b, c);
    /* no tags: still a subset's name, not the service's own */
    hy_sni_for_subset("backend", "default", NULL, NULL, 0, b, sizeof(b));
    hy_sni_for("backend", "default", c, sizeof(c));
    assert_string_not_equal(b, c);
    /* a name hy_sni_parse takes back as it is */
    assert_null(strchr(a, '_'));
}

static void test_parse(void **state)
{
    (void)state;
    uint8_t msg[1100] = {0}, wire[2000] = {0};
    char name[HY_SNI_MAX];
    const char *why;
    size_t m = hello("Backend.Default.Mesh", msg);
    size_t n = records(msg, m, 16384, wire);
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_FOUND);
    assert_string_equal(name, "backend.default.mesh");
    /* every prefix is "more" */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hy_sni_parse(wire, i, name, &why), HY_SNI_MORE);
    /* in records of 7 bytes: the same */
    n = records(msg, m, 7, wire);
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_FOUND);
    assert_string_equal(name, "backend.default.mesh");
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hy_sni_parse(wire, i, name, &why), HY_SNI_MORE);
    /* application data after the ClientHello does not matter */
    n = records(msg, m, 16384, wire);
    memcpy(wire + n, "\x17\x03\x03\x00\x01x", 6);
    assert_int_equal(hy_sni_parse(wire, n + 6, name, &why), HY_SNI_FOUND);

    /* no server name */
    m = hello(NULL, msg);
    n = records(msg, m, 16384, wire);
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_NONE);
    assert_string_equal(name, "");
    assert_non_null(why);

    /* not TLS at all */
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(hy_sni_parse((const uint8_t *)http, strlen(http), name, &why), HY_SNI_NOT_TLS);
    assert_int_equal(hy_sni_parse((const uint8_t *)"\x16\x02", 2, name, &why), HY_SNI_NOT_TLS);

    /* a host name with a character DNS does not allow */
    m = hello("bad_name.mesh", msg);
    n = records(msg, m, 16384, wire);
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_MALFORMED);
    assert_string_equal(name, ""); /* not half of it (the fuzzer found that) */

    /* lengths that lie */
    m = hello("a.b.mesh", msg);
    n = records(msg, m, 16384, wire);
    wire[5 + 4 + 2 + 32] = 33; /* session id longer than 32 */
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_MALFORMED);
    n = records(msg, m, 16384, wire);
    wire[5] = 2; /* ServerHello, not ClientHello */
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_MALFORMED);
    n = records(msg, m, 16384, wire);
    assert_true(n > 9);
    wire[n > 9 ? n - 9 : 0] = 0xff; /* the host_name's length overruns (bounded for -O2) */
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_MALFORMED);
    n = records(msg, m, 16384, wire);
    put16(wire + 3, 0); /* an empty record */
    assert_int_equal(hy_sni_parse(wire, n, name, &why), HY_SNI_MALFORMED);
    n = records(msg, m, 16384, wire);
    wire[n] = 0x17; /* a second record that is not handshake, before the hello is whole */
    n = records(msg, m / 2, 16384, wire);
    memcpy(wire + n, "\x17\x03\x03\x00\x01x", 6);
    assert_int_equal(hy_sni_parse(wire, n + 6, name, &why), HY_SNI_MALFORMED);

    /* a ClientHello that claims to be huge */
    uint8_t big[64] = {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x7f, 0xff, 0xff};
    assert_int_equal(hy_sni_parse(big, 9, name, &why), HY_SNI_TOO_BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_subset_names),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
