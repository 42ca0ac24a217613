/* Service virtual IPs (common/vip.c): in 240.0.0.0/4 and never its first
 * or last address, the same for the same services (a restart, another
 * zone, hyphactl), without collisions even when two names hash alike,
 * and the names a sidecar's DNS answers for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vip.h"
#include "poison.h"

static void in_range(void **state)
{
    (void)state;
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "svc-%d", i);
        uint32_t v = hy_vip_preferred(name);
        assert_int_equal(v & 0xf0000000u, HY_VIP_BASE);
        assert_true((v & HY_VIP_MASK) != 0 && (v & HY_VIP_MASK) != HY_VIP_MASK);
        assert_int_equal(v, hy_vip_preferred(name)); /* a function of the name alone */
    }
}

static void stable(void **state)
{
    (void)state;
    const char *a[] = {"backend", "redis", "web"};
    const char *b[] = {"backend", "postgres", "redis", "web"}; /* one more service */
    uint32_t va[3], vb[4], again[3];
    assert_int_equal(hy_vip_assign(a, 3, va), 0);
    assert_int_equal(hy_vip_assign(a, 3, again), 0);
    assert_memory_equal(va, again, sizeof(va));
    assert_int_equal(hy_vip_assign(b, 4, vb), 0);
    /* with no collision, a service keeps its address whatever others come */
    assert_int_equal(va[0], vb[0]);
    assert_int_equal(va[1], vb[2]);
    assert_int_equal(va[2], vb[3]);
    assert_int_equal(va[0], hy_vip_preferred("backend"));
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Two names whose preferred addresses collide (found by search: a 28-bit
 * space collides within some ten thousand names), and many names: every
 * address given once, the name that sorts first keeping its own. */
static void collisions(void **state)
{
    (void)state;
    enum { N = 40000 };
    char(*names)[16] = calloc(N, sizeof(*names));
    const char **v = calloc(N, sizeof(*v));
    uint32_t *pref = calloc(N, sizeof(*pref)), *got = calloc(N, sizeof(*got));
    assert_non_null(names);
    assert_non_null(v);
    assert_non_null(pref);
    assert_non_null(got);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "s%05d", i); /* sorted as generated */
        v[i] = names[i];
        pref[i] = hy_vip_preferred(names[i]);
    }
    qsort(v, N, sizeof(*v), cmp_str);
    assert_int_equal(hy_vip_assign(v, N, got), 0);
    /* a pair that collides */
    uint32_t *sorted = malloc(N * sizeof(*sorted));
    assert_non_null(sorted);
    memcpy(sorted, pref, N * sizeof(*sorted));
    qsort(sorted, N, sizeof(*sorted), cmp_u32);
    uint32_t dup = 0;
    for (int i = 1; i < N && !dup; i++)
        if (sorted[i] == sorted[i - 1])
            dup = sorted[i];
    assert_true(dup != 0); /* the search found one */
    int first = -1, second = -1;
    for (int i = 0; i < N; i++)
        if (pref[i] == dup && first < 0)
            first = i;
        else if (pref[i] == dup)
            second = i;
    assert_true(first >= 0 && second > first);
    assert_int_equal(got[first], dup); /* the first keeps its address */
    assert_true(got[second] != dup);   /* the second moved */
    /* every address given once, all in range */
    memcpy(sorted, got, N * sizeof(*sorted));
    qsort(sorted, N, sizeof(*sorted), cmp_u32);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sorted[i] & 0xf0000000u, HY_VIP_BASE);
        if (i)
            assert_true(sorted[i] != sorted[i - 1]);
    }
    /* and again the same */
    uint32_t *again = calloc(N, sizeof(*again));
    assert_non_null(again);
    assert_int_equal(hy_vip_assign(v, N, again), 0);
    assert_memory_equal(got, again, N * sizeof(*got));
    free(again);
    free(sorted);
    free(names);
    free(v);
    free(pref);
    free(got);
}

static void formats(void **state)
{
    (void)state;
    char b[64];
    hy_vip_format4(0xf0000001u, b, sizeof(b));
    assert_string_equal(b, "240.0.0.1");
    hy_vip_format6(0xf0000001u, b, sizeof(b));
    assert_string_equal(b, "fd00:fd00::f000:1");
    hy_vip_format4(0xff5754a1u, b, sizeof(b));
    assert_string_equal(b, "255.87.84.161");
    hy_vip_format6(0xff5754a1u, b, sizeof(b));
    assert_string_equal(b, "fd00:fd00::ff57:54a1");
}

static void hostnames(void **state)
{
    (void)state;
    char b[HY_VIP_NAME_MAX];
    assert_true(hy_vip_hostname("Backend", 0, b, sizeof(b)));
    assert_string_equal(b, "backend.mesh");
    assert_true(hy_vip_hostname("backend_kuma-demo_svc_8080", 1, b, sizeof(b)));
    assert_string_equal(b, "backend_kuma-demo_svc_8080.svc.mesh.local");
    assert_false(hy_vip_hostname("backend", HY_VIP_NAMES, b, sizeof(b)));
    assert_false(hy_vip_hostname("", 0, b, sizeof(b)));
    assert_false(hy_vip_hostname("a b", 0, b, sizeof(b)));
    assert_false(hy_vip_hostname("a..b", 0, b, sizeof(b)));
    assert_false(hy_vip_hostname(".a", 0, b, sizeof(b)));
    assert_false(hy_vip_hostname("a.", 0, b, sizeof(b)));
    char label[80];
    memset(label, 'x', 64);
    label[64] = '\0'; /* one label over 63 characters */
    assert_false(hy_vip_hostname(label, 0, b, sizeof(b)));
    label[63] = '\0';
    assert_true(hy_vip_hostname(label, 0, b, sizeof(b)));
    assert_false(hy_vip_hostname("backend", 0, b, 8)); /* too small a buffer */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_range), cmocka_unit_test(stable),    cmocka_unit_test(collisions),
        cmocka_unit_test(formats),  cmocka_unit_test(hostnames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
