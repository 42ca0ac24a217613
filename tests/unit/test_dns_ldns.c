/* The lazy loader of ldns (sidecar/dns_ldns.c): nothing of ldns or its
 * libcrypto is mapped before the DNS needs it; loading fills every
 * function of the table and maps the library; a library that is missing,
 * or that lacks ldns's functions, is an error naming it. This executable
 * does not link ldns, as hypha-dp does not. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dns_ldns.h"
#include "poison.h"

/* Does /proc/self/maps name a file whose name contains what? */
static bool mapped(const char *what)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    bool found = false;
    assert_non_null(f);
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

/* Is every pointer of t set (all == true) or every one NULL (all == false)? */
static bool all_set(const struct hy_dns_ldns *t, bool all)
{
    bool ok = true;
#define CHECK(name) ok = ok && ((t->name != NULL) == all);
    HY_DNS_LDNS_FUNCS(CHECK)
#undef CHECK
    return ok;
}

/* runs first: nothing has loaded ldns yet */
static void lazy(void **state)
{
    (void)state;
    assert_false(hy_dns_ldns_loaded());
    assert_true(all_set(hy_dns_ldns, false));
    assert_false(mapped("libldns"));
    assert_false(mapped("libcrypto"));
    char why[512] = "";
    int rc = hy_dns_ldns_load(why, sizeof(why));
    if (rc < 0)
        fail_msg("%s", why);
    assert_true(hy_dns_ldns_loaded());
    assert_true(all_set(hy_dns_ldns, true));
    assert_true(mapped(HY_DNS_LDNS_LIB));
    assert_int_equal(hy_dns_ldns_load(why, sizeof(why)), 0); /* once: the same table */
    /* the table works: a packet made and freed through it */
    ldns_pkt *p = LDNS->pkt_new();
    assert_non_null(p);
    LDNS->pkt_set_id(p, 4242);
    assert_int_equal(LDNS->pkt_id(p), 4242);
    LDNS->pkt_free(p);
}

static void missing_library(void **state)
{
    (void)state;
    struct hy_dns_ldns t;
    void *h = (void *)&t;
    char why[512] = "";
    assert_int_equal(hy_dns_ldns_open("libhypha-no-such-ldns.so.9", &t, &h, why, sizeof(why)),
                     -ELIBACC);
    assert_null(h);
    assert_true(all_set(&t, false));
    assert_non_null(strstr(why, "cannot load libhypha-no-such-ldns.so.9"));
    assert_non_null(strstr(why, "libldns3")); /* what to install */
    assert_false(mapped("libhypha-no-such-ldns"));
}

/* a library that loads but is not ldns: the first function looked up is named */
static void missing_function(void **state)
{
    (void)state;
    struct hy_dns_ldns t;
    void *h = (void *)&t;
    char why[512] = "";
    assert_int_equal(hy_dns_ldns_open("libm.so.6", &t, &h, why, sizeof(why)), -ELIBACC);
    assert_null(h);
    assert_true(all_set(&t, false));
    assert_non_null(strstr(why, "libm.so.6 has no function ldns_pkt2wire"));
}

static void open_and_close(void **state)
{
    (void)state;
    struct hy_dns_ldns t;
    void *h = NULL;
    char why[512] = "";
    assert_int_equal(hy_dns_ldns_open(HY_DNS_LDNS_LIB, &t, &h, why, sizeof(why)), 0);
    assert_non_null(h);
    assert_true(all_set(&t, true));
    hy_dns_ldns_close(h);
    hy_dns_ldns_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lazy), /* first: before anything loads ldns */
        cmocka_unit_test(missing_library),
        cmocka_unit_test(missing_function),
        cmocka_unit_test(open_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
