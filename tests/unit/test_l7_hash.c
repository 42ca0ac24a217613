/* RingHash and Maglev (sidecar/l7_hash.c): the request's hash by
 * hashPolicies (Header, Cookie, SourceIP / Connection, QueryParameter;
 * terminal; nothing matched), the same key landing on the same endpoint,
 * an endpoint's removal moving only its own share of keys, and an even
 * spread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "l7_build.h"
#include "l7_hash.h"
#include "poison.h"

static Hypha__V1__DpHashPolicy *policy(const char *type, const char *name, bool terminal)
{
    Hypha__V1__DpHashPolicy *p = malloc(sizeof(*p));
    hypha__v1__dp_hash_policy__init(p);
    p->type = l7_str(type);
    p->name = l7_str(name);
    p->has_terminal = 1;
    p->terminal = terminal;
    return p;
}

static void free_policies(Hypha__V1__DpHashPolicy **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hypha__v1__dp_hash_policy__free_unpacked(p[i], NULL);
}

/* The hash of a request (target and fields) from source ip under one policy. */
static bool hash_of(Hypha__V1__DpHashPolicy *p, const char *target, const char *const *fields,
                    const char *ip, uint64_t *h)
{
    struct hy_http_head req;
    l7_request(&req, "GET", target, "backend", fields);
    bool ok = hy_l7_hash_request(&p, 1, &req, ip, h);
    hy_http_head_fini(&req);
    return ok;
}

static void request_hash(void **state)
{
    (void)state;
    static const struct {
        const char *type, *name;
        const char *target_a, *fields_a[5], *ip_a;
        const char *target_b, *fields_b[5], *ip_b;
        int want; /* 1: both hash, equal; 0: both hash, differ; -1: a yields nothing */
    } cases[] = {
        {"Header", "x-user", "/", {"X-User", "ann"}, NULL, "/x", {"x-user", "ann"}, NULL, 1},
        {"Header", "x-user", "/", {"x-user", "ann"}, NULL, "/", {"x-user", "bob"}, NULL, 0},
        {"Header", "x-user", "/", {"x-other", "ann"}, NULL, "/", {0}, NULL, -1},
        {"Header",
         "x-user",
         "/",
         {"x-user", "a", "x-user", "b"},
         NULL,
         "/",
         {"x-user", "a,b"},
         NULL,
         1},
        {"Cookie",
         "sid",
         "/",
         {"Cookie", "a=1; sid=xyz; b=2"},
         NULL,
         "/",
         {"cookie", "sid=xyz"},
         NULL,
         1},
        {"Cookie", "sid", "/", {"cookie", "sid=xyz"}, NULL, "/", {"cookie", "sid=abc"}, NULL, 0},
        {"Cookie", "sid", "/", {"cookie", "xsid=1; sidx=2"}, NULL, "/", {0}, NULL, -1},
        {"Cookie",
         "sid",
         "/",
         {"cookie", "a=1", "cookie", "sid=q"},
         NULL,
         "/",
         {"cookie", "sid=q"},
         NULL,
         1},
        {"SourceIP", NULL, "/", {0}, "10.0.0.1", "/y", {"x", "y"}, "10.0.0.1", 1},
        {"SourceIP", NULL, "/", {0}, "10.0.0.1", "/", {0}, "10.0.0.2", 0},
        {"Connection", NULL, "/", {0}, "10.0.0.1", "/", {0}, "10.0.0.1", 1},
        {"SourceIP", NULL, "/", {0}, NULL, "/", {0}, NULL, -1},
        {"QueryParameter", "u", "/p?u=7&v=1", {0}, NULL, "/q?v=2&u=7", {0}, NULL, 1},
        {"QueryParameter", "u", "/p?u=7", {0}, NULL, "/p?u=8", {0}, NULL, 0},
        {"QueryParameter", "u", "/p?u=7&u=8", {0}, NULL, "/p?u=7", {0}, NULL, 1}, /* the first */
        {"QueryParameter", "u", "/p?uu=7", {0}, NULL, "/", {0}, NULL, -1},
        {"FilterState", "k", "/", {0}, NULL, "/", {0}, NULL, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpHashPolicy *p = policy(cases[i].type, cases[i].name, false);
        uint64_t a = 0, b = 0;
        bool ha = hash_of(p, cases[i].target_a, cases[i].fields_a[0] ? cases[i].fields_a : NULL,
                          cases[i].ip_a, &a);
        bool hb = hash_of(p, cases[i].target_b, cases[i].fields_b[0] ? cases[i].fields_b : NULL,
                          cases[i].ip_b, &b);
        bool ok = cases[i].want < 0 ? !ha : ha && hb && (a == b) == (cases[i].want == 1);
        if (!ok)
            fail_msg("case %zu (%s): %d %d %llx %llx", i, cases[i].type, ha, hb,
                     (unsigned long long)a, (unsigned long long)b);
        free_policies(&p, 1);
    }
}

static void policies(void **state)
{
    (void)state;
    struct hy_http_head req;
    l7_request(&req, "GET", "/", "backend", (const char *[]){"x-a", "1", "x-b", "2", NULL});
    uint64_t ha, hb, both, h;
    Hypha__V1__DpHashPolicy *a = policy("Header", "x-a", false),
                            *b = policy("Header", "x-b", false),
                            *ta = policy("Header", "x-a", true),
                            *none = policy("Header", "x-none", true);
    assert_true(hy_l7_hash_request(&a, 1, &req, NULL, &ha));
    assert_true(hy_l7_hash_request(&b, 1, &req, NULL, &hb));
    /* folded: the first rotated left by one, xor the second (Envoy) */
    Hypha__V1__DpHashPolicy *ab[] = {a, b};
    assert_true(hy_l7_hash_request(ab, 2, &req, NULL, &both));
    assert_int_equal(both, (ha << 1 | ha >> 63) ^ hb);
    /* two equal policies do not cancel out */
    Hypha__V1__DpHashPolicy *aa[] = {a, a};
    assert_true(hy_l7_hash_request(aa, 2, &req, NULL, &h));
    assert_int_not_equal(h, 0);
    /* terminal with a hash: the rest is not looked at */
    Hypha__V1__DpHashPolicy *tb[] = {ta, b};
    assert_true(hy_l7_hash_request(tb, 2, &req, NULL, &h));
    assert_int_equal(h, ha);
    /* terminal without a hash: the walk goes on */
    Hypha__V1__DpHashPolicy *nb[] = {none, b};
    assert_true(hy_l7_hash_request(nb, 2, &req, NULL, &h));
    assert_int_equal(h, hb);
    /* nothing yields: the caller picks at random */
    assert_false(hy_l7_hash_request(&none, 1, &req, NULL, &h));
    assert_false(hy_l7_hash_request(NULL, 0, &req, NULL, &h));
    hy_http_head_fini(&req);
    Hypha__V1__DpHashPolicy *all[] = {a, b, ta, none};
    free_policies(all, 4);
}

#define EPS 10
#define KEYS 100000

static char names[EPS][32];
static const char *keys[EPS];

static void endpoints(void)
{
    for (int i = 0; i < EPS; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.%d.%d:8080", i / 4, 10 + i);
        keys[i] = names[i];
    }
}

/* Same key, same endpoint; an even spread; removing endpoint 3 moves only
 * the keys that were on it (plus, for Maglev, a little churn). */
static void check_table(bool maglev, double max_skew, double max_churn)
{
    endpoints();
    struct hy_l7_hash_table *t =
        maglev ? hy_l7_hash_maglev_new(keys, EPS, 0) : hy_l7_hash_ring_new(keys, EPS, 0, 0);
    assert_non_null(t);
    /* without endpoint 3: the same names, one gone */
    const char *fewer[EPS - 1];
    size_t map[EPS - 1];
    for (size_t i = 0, j = 0; i < EPS; i++)
        if (i != 3) {
            map[j] = i;
            fewer[j++] = keys[i];
        }
    struct hy_l7_hash_table *u = maglev ? hy_l7_hash_maglev_new(fewer, EPS - 1, 0)
                                        : hy_l7_hash_ring_new(fewer, EPS - 1, 0, 0);
    assert_non_null(u);
    unsigned count[EPS] = {0}, moved = 0, moved_other = 0;
    for (unsigned k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%u", k);
        uint64_t h = hy_l7_hash_bytes(key, strlen(key));
        size_t e = hy_l7_hash_pick(t, h);
        assert_int_equal(hy_l7_hash_pick(t, h), e);
        count[e]++;
        size_t f = map[hy_l7_hash_pick(u, h)];
        if (f != e) {
            moved++;
            moved_other += e != 3;
        }
    }
    for (int i = 0; i < EPS; i++) {
        double share = (double)count[i] * EPS / KEYS;
        if (share < 1 - max_skew || share > 1 + max_skew)
            fail_msg("%s: endpoint %d has %.2f of its share", maglev ? "maglev" : "ring", i, share);
    }
    unsigned lo = KEYS, hi = 0;
    for (int i = 0; i < EPS; i++) {
        lo = count[i] < lo ? count[i] : lo;
        hi = count[i] > hi ? count[i] : hi;
    }
    print_message("%s: %u keys on %d endpoints: %u to %u each; endpoint 3 removed: %u moved, %u "
                  "of them from other endpoints\n",
                  maglev ? "maglev" : "ring", KEYS, EPS, lo, hi, moved, moved_other);
    /* every key of endpoint 3 moved; of the others, at most max_churn */
    if (moved - moved_other != count[3] || moved_other > max_churn * KEYS)
        fail_msg("%s: moved %u (%u not from the removed endpoint), it had %u",
                 maglev ? "maglev" : "ring", moved, moved_other, count[3]);
    hy_l7_hash_free(t);
    hy_l7_hash_free(u);
}

static void ring(void **state)
{
    (void)state;
    check_table(false, 0.25, 0); /* a ring moves only the removed endpoint's keys */
    endpoints();
    /* ring sizes: few points still work; too small a maximum: refused */
    struct hy_l7_hash_table *t = hy_l7_hash_ring_new(keys, EPS, 10, 10);
    assert_non_null(t);
    assert_true(hy_l7_hash_pick(t, 0) < EPS);
    assert_true(hy_l7_hash_pick(t, UINT64_MAX) < EPS); /* past the last point: the first */
    hy_l7_hash_free(t);
    assert_null(hy_l7_hash_ring_new(keys, EPS, 4, 4));
    assert_null(hy_l7_hash_ring_new(keys, 0, 0, 0));
    hy_l7_hash_free(NULL);
}

static void maglev(void **state)
{
    (void)state;
    check_table(true, 0.05, 0.02); /* Maglev: near-perfect spread, little churn */
    endpoints();
    assert_null(hy_l7_hash_maglev_new(keys, EPS, 7)); /* a table not larger than the endpoints */
    struct hy_l7_hash_table *t = hy_l7_hash_maglev_new(keys, EPS, 13);
    assert_non_null(t);
    unsigned seen[EPS] = {0};
    for (uint64_t h = 0; h < 13; h++)
        seen[hy_l7_hash_pick(t, h)]++;
    for (int i = 0; i < EPS; i++)
        assert_true(seen[i] >= 1 && seen[i] <= 2); /* every endpoint has a slot */
    hy_l7_hash_free(t);
}

/* An unusable endpoint (ejected, unhealthy, outside a subset) is passed
 * over: its keys go to the next usable one along the ring or table, the
 * others' keys stay where they were, and none usable is SIZE_MAX. */
static void check_skip(bool maglev)
{
    endpoints();
    struct hy_l7_hash_table *t =
        maglev ? hy_l7_hash_maglev_new(keys, EPS, 0) : hy_l7_hash_ring_new(keys, EPS, 0, 0);
    assert_non_null(t);
    bool ok[EPS];
    for (int i = 0; i < EPS; i++)
        ok[i] = i != 3;
    unsigned on3 = 0;
    for (unsigned k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%u", k);
        uint64_t h = hy_l7_hash_bytes(key, strlen(key));
        size_t e = hy_l7_hash_pick(t, h), f = hy_l7_hash_pick_ok(t, h, ok, EPS);
        assert_true(f < EPS && f != 3);
        if (e == 3)
            on3++;
        else
            assert_int_equal(f, e); /* a usable endpoint keeps its keys */
        assert_int_equal(f, hy_l7_hash_pick_ok(t, h, ok, EPS)); /* and the moved ones stay put */
    }
    assert_true(on3 > 0);
    for (int i = 0; i < EPS; i++)
        ok[i] = i == 5;
    assert_int_equal(hy_l7_hash_pick_ok(t, 12345, ok, EPS), 5); /* one left: it takes all */
    ok[5] = false;
    assert_int_equal(hy_l7_hash_pick_ok(t, 12345, ok, EPS), SIZE_MAX);
    hy_l7_hash_free(t);
}

static void skip_unusable(void **state)
{
    (void)state;
    check_skip(false);
    check_skip(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_hash), cmocka_unit_test(policies),      cmocka_unit_test(ring),
        cmocka_unit_test(maglev),       cmocka_unit_test(skip_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
