/* What an address is to this host (net/net.c): the scope of any IPv4 or
 * IPv6 literal, and the set of this host's interface addresses, which the
 * zone ingress consults so that no route turns it back on its own host
 * (security finding 4). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "net.h"
#include "ws_url.h"
#include "poison.h"

static enum hy_net_scope scope(const char *ip)
{
    struct sockaddr_storage sa;
    assert_int_equal(hy_net_parse_ip(ip, 80, &sa), 0);
    return hy_net_scope_of((struct sockaddr *)&sa);
}

static void test_parse(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    assert_int_equal(hy_net_parse_ip("10.1.2.3", 5682, &sa), 0);
    assert_int_equal(sa.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 5682);
    assert_int_equal(hy_net_parse_ip("::ffff:127.0.0.1", 1, &sa), 0);
    assert_int_equal(sa.ss_family, AF_INET6);
    assert_int_equal(hy_net_parse_ip("fe80::1%lo", 1, &sa), 0);
    /* not IP literals: host names, shorthand IPv4, out of range */
    static const char *const bad[] = {
        "localhost", "127.1", "2130706433", "0x7f.0.0.1", "127.0.0.1.", "[::1]", "", "1.2.3.4:5",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(hy_net_parse_ip(bad[i], 1, &sa), 0);
    assert_int_not_equal(hy_net_parse_ip(NULL, 1, &sa), 0);
    assert_int_not_equal(hy_net_parse_ip("10.0.0.1", 65536, &sa), 0);
}

static void test_scope(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        enum hy_net_scope s;
    } cases[] = {
        {"127.0.0.1", HY_NET_SCOPE_LOOPBACK},
        {"127.255.255.254", HY_NET_SCOPE_LOOPBACK},
        {"127.0.0.53", HY_NET_SCOPE_LOOPBACK},
        {"::1", HY_NET_SCOPE_LOOPBACK},
        {"::ffff:127.0.0.1", HY_NET_SCOPE_LOOPBACK},
        {"::ffff:7f01:203", HY_NET_SCOPE_LOOPBACK},
        {"::127.0.0.1", HY_NET_SCOPE_LOOPBACK}, /* IPv4-compatible, deprecated */
        {"0.0.0.0", HY_NET_SCOPE_UNSPECIFIED},
        {"0.1.2.3", HY_NET_SCOPE_UNSPECIFIED},
        {"::", HY_NET_SCOPE_UNSPECIFIED},
        {"::ffff:0.0.0.0", HY_NET_SCOPE_UNSPECIFIED},
        {"169.254.169.254", HY_NET_SCOPE_LINK_LOCAL},
        {"::ffff:169.254.169.254", HY_NET_SCOPE_LINK_LOCAL},
        {"fe80::1", HY_NET_SCOPE_LINK_LOCAL},
        {"febf::1", HY_NET_SCOPE_LINK_LOCAL},
        {"fe80::1%lo", HY_NET_SCOPE_LINK_LOCAL},
        {"10.213.80.3", HY_NET_SCOPE_ROUTABLE},
        {"128.0.0.1", HY_NET_SCOPE_ROUTABLE},
        {"126.255.255.255", HY_NET_SCOPE_ROUTABLE},
        {"1.0.0.0", HY_NET_SCOPE_ROUTABLE},
        {"169.253.0.1", HY_NET_SCOPE_ROUTABLE},
        {"::2", HY_NET_SCOPE_UNSPECIFIED}, /* IPv4-compatible 0.0.0.2 */
        {"::ffff:10.0.0.1", HY_NET_SCOPE_ROUTABLE},
        {"2001:db8::1", HY_NET_SCOPE_ROUTABLE},
        {"fec0::1", HY_NET_SCOPE_ROUTABLE},
        {"::1:0:0:1", HY_NET_SCOPE_ROUTABLE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (scope(cases[i].ip) != cases[i].s)
            fail_msg("%s: %s, expected %s", cases[i].ip, hy_net_scope_name(scope(cases[i].ip)),
                     hy_net_scope_name(cases[i].s));
    }
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(hy_net_scope_of(&other), HY_NET_SCOPE_ROUTABLE);
    assert_string_equal(hy_net_scope_name(HY_NET_SCOPE_LOOPBACK), "loopback");
    assert_string_equal(hy_net_scope_name(HY_NET_SCOPE_UNSPECIFIED), "unspecified");
    assert_string_equal(hy_net_scope_name(HY_NET_SCOPE_LINK_LOCAL), "link_local");
    assert_string_equal(hy_net_scope_name(HY_NET_SCOPE_ROUTABLE), "routable");
}

static bool has(const struct hy_net_addrs *s, const char *ip)
{
    struct sockaddr_storage sa;
    assert_int_equal(hy_net_parse_ip(ip, 10001, &sa), 0);
    return hy_net_addrs_has(s, (struct sockaddr *)&sa);
}

static void test_local(void **state)
{
    (void)state;
    struct hy_net_addrs *s = NULL, *t = NULL;
    assert_int_equal(hy_net_local_addrs(&s), 0);
    assert_non_null(s);
    /* every namespace has lo's 127.0.0.1, up or not; as IPv4 or mapped */
    assert_true(has(s, "127.0.0.1"));
    assert_true(has(s, "::ffff:127.0.0.1"));
    assert_false(has(s, "127.0.0.2")); /* in 127/8, but not an interface's address */
    assert_false(has(s, "192.0.2.1")); /* TEST-NET-1: nobody's */
    assert_false(has(NULL, "127.0.0.1"));
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_false(hy_net_addrs_has(s, &other));
    /* sorted and unique */
    for (size_t i = 1; i < s->n; i++)
        assert_true(memcmp(&s->a[i - 1], &s->a[i], sizeof(s->a[i])) < 0);
    assert_int_equal(hy_net_local_addrs(&t), 0);
    assert_true(hy_net_addrs_equal(s, t));
    assert_true(hy_net_addrs_equal(NULL, NULL));
    assert_false(hy_net_addrs_equal(s, NULL));
    t->n--;
    assert_false(hy_net_addrs_equal(s, t));
    free(s);
    free(t);
}

/* Websocket client URLs: what both clients accept and refuse. */
static void test_ws_url(void **state)
{
    (void)state;
    struct hy_ws_url u;
    assert_int_equal(hy_ws_url_parse("wss://zone.example:5678/dp", &u), 0);
    assert_string_equal(u.host, "zone.example");
    assert_string_equal(u.hostport, "zone.example:5678");
    assert_string_equal(u.path, "/dp");
    assert_int_equal(u.port, 5678);
    assert_false(u.host_is_ip);
    hy_ws_url_fini(&u);
    assert_int_equal(hy_ws_url_parse("wss://[::1]?x=1", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]:443");
    assert_string_equal(u.path, "/?x=1");
    assert_true(u.host_is_ip);
    hy_ws_url_fini(&u);
    assert_int_equal(hy_ws_url_parse("wss://10.0.0.1", &u), 0);
    assert_string_equal(u.path, "/");
    assert_true(u.host_is_ip);
    hy_ws_url_fini(&u);
    const char *bad[] = {NULL,          "ws://a:1/",         "https://a/",     "wss://",
                         "wss://:80/",  "wss://a:0/",        "wss://a:65536/", "wss://a:1x/",
                         "wss://a:/",   "wss://[::1/",       "wss://[::1]x/",  "wss://a/#frag",
                         "wss://a/p q", "wss://a/p\r\nX: y", "wss://user@a/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(hy_ws_url_parse(bad[i], &u), HY_EINVAL);
        assert_null(u.host); /* nothing held on an error */
        assert_null(u.path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_local),
        cmocka_unit_test(test_ws_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
