/* MeshCircuitBreaker's outlier detection (sidecar/l7_outlier.c): each
 * detector's consecutive count, local-origin failures with and without
 * the split, ejection time growing with the times ejected, the maximum
 * share ejected (at least one), coming back lazily or at the interval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "l7_build.h"
#include "l7_outlier.h"
#include "poison.h"

enum {
    RESP = HY_L7_OUT_RESPONSE,
    CFAIL = HY_L7_OUT_CONNECT_FAILED,
    TMO = HY_L7_OUT_TIMEOUT,
    RST = HY_L7_OUT_RESET,
    COK = HY_L7_OUT_CONNECT_OK
};

struct step {
    int result;
    unsigned status;
};

/* A detector config and a sequence of results on endpoint 0 of 10 (so the
 * 10 % maximum allows it): after which step (1-based) it is ejected, 0 if
 * never. */
struct detect_case {
    uint32_t c5xx, cgw, clocal;
    bool split;
    struct step steps[8];
    size_t n;
    int ejected_at;
};

static const struct detect_case detect_cases[] = {
    /* consecutive 5xx (totalFailures) */
    {3, 0, 0, false, {{RESP, 500}, {RESP, 503}, {RESP, 501}}, 3, 3},
    {3, 0, 0, false, {{RESP, 500}, {RESP, 200}, {RESP, 500}, {RESP, 500}}, 4, 0},
    {3, 0, 0, false, {{RESP, 500}, {RESP, 404}, {RESP, 500}, {RESP, 500}, {RESP, 500}}, 5, 5},
    /* consecutive gateway failures: 502, 503, 504 only */
    {0, 2, 0, false, {{RESP, 502}, {RESP, 504}}, 2, 2},
    {0, 2, 0, false, {{RESP, 502}, {RESP, 500}, {RESP, 503}}, 3, 0},
    /* without the split a connect failure or reset is a 503, a timeout a 504 */
    {3, 0, 0, false, {{CFAIL, 0}, {RST, 0}, {TMO, 0}}, 3, 3},
    {0, 2, 0, false, {{CFAIL, 0}, {TMO, 0}}, 2, 2},
    {0, 0, 2, false, {{CFAIL, 0}, {CFAIL, 0}, {CFAIL, 0}}, 3, 0}, /* local detector needs the split
                                                                   */
    /* with it: local failures count apart, 5xx apart */
    {0, 0, 2, true, {{CFAIL, 0}, {TMO, 0}}, 2, 2},
    {0, 0, 2, true, {{CFAIL, 0}, {COK, 0}, {CFAIL, 0}}, 3, 0},
    {0, 0, 2, true, {{CFAIL, 0}, {RESP, 500}, {CFAIL, 0}}, 3, 0}, /* a response: it connected */
    {2, 0, 0, true, {{CFAIL, 0}, {CFAIL, 0}, {RST, 0}}, 3, 0},
    {2, 0, 0, true, {{RESP, 500}, {CFAIL, 0}, {RESP, 500}}, 3, 3},
    /* detectors unset: off */
    {0, 0, 0, false, {{RESP, 500}, {RESP, 500}, {RESP, 500}, {CFAIL, 0}}, 4, 0},
};

static Hypha__V1__DpOutlier *config(uint32_t c5xx, uint32_t cgw, uint32_t clocal, bool split)
{
    Hypha__V1__DpOutlier *c = malloc(sizeof(*c));
    hypha__v1__dp_outlier__init(c);
    c->has_consecutive_5xx = c->has_consecutive_gateway = c->has_consecutive_local_origin = 1;
    c->consecutive_5xx = c5xx;
    c->consecutive_gateway = cgw;
    c->consecutive_local_origin = clocal;
    c->has_split_external_and_local_errors = 1;
    c->split_external_and_local_errors = split;
    return c;
}

static void detectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(detect_cases) / sizeof(detect_cases[0]); i++) {
        const struct detect_case *c = &detect_cases[i];
        Hypha__V1__DpOutlier *cfg = config(c->c5xx, c->cgw, c->clocal, c->split);
        struct hy_l7_outlier_ep eps[10] = {0};
        int at = 0;
        for (size_t s = 0; s < c->n; s++)
            if (hy_l7_outlier_report(cfg, eps, 10, 0, (enum hy_l7_outlier_result)c->steps[s].result,
                                     c->steps[s].status, 1000) &&
                !at)
                at = (int)s + 1;
        if (at != c->ejected_at)
            fail_msg("case %zu: ejected at %d, want %d", i, at, c->ejected_at);
        assert_int_equal(hy_l7_outlier_ejected(eps, 0, 1000), at != 0);
        hypha__v1__dp_outlier__free_unpacked(cfg, NULL);
    }
    struct hy_l7_outlier_ep ep = {0};
    assert_false(hy_l7_outlier_report(NULL, &ep, 1, 0, HY_L7_OUT_RESPONSE, 500, 0));
}

static void ejection_time(void **state)
{
    (void)state;
    Hypha__V1__DpOutlier *cfg = config(1, 0, 0, false);
    cfg->base_ejection_time = l7_ms(1000);
    cfg->interval = l7_ms(500);
    assert_int_equal(hy_l7_outlier_interval_ms(cfg), 500);
    struct hy_l7_outlier_ep eps[10] = {0};
    /* base x times ejected: 1 s, then 2 s, then 3 s */
    uint64_t now = 0;
    for (uint64_t k = 1; k <= 3; k++) {
        assert_true(hy_l7_outlier_report(cfg, eps, 10, 0, HY_L7_OUT_RESPONSE, 500, now));
        assert_false(hy_l7_outlier_report(cfg, eps, 10, 0, HY_L7_OUT_RESPONSE, 500, now)); /* out */
        assert_true(hy_l7_outlier_ejected(eps, 0, now + k * 1000 - 1));
        assert_false(hy_l7_outlier_ejected(eps, 0, now + k * 1000)); /* back, lazily */
        now += k * 1000;
    }
    assert_int_equal(eps[0].ejections, 3);
    /* clean intervals take the multiplier down, one each */
    assert_int_equal(hy_l7_outlier_tick(eps, 10, now + 500), 0);
    assert_int_equal(hy_l7_outlier_tick(eps, 10, now + 1000), 0);
    assert_int_equal(eps[0].ejections, 1);
    assert_true(hy_l7_outlier_report(cfg, eps, 10, 0, HY_L7_OUT_RESPONSE, 500, now));
    assert_int_equal(hy_l7_outlier_tick(eps, 10, now + 1999), 1); /* 2 s this time */
    assert_int_equal(hy_l7_outlier_tick(eps, 10, now + 2000), 0); /* back at the interval */
    /* the cap: max(300 s, base) */
    eps[0].ejections = 1000;
    assert_true(hy_l7_outlier_report(cfg, eps, 10, 0, HY_L7_OUT_RESPONSE, 500, 0));
    assert_int_equal(eps[0].until_ms, HY_L7_OUTLIER_MAX_EJECTION_MS);
    /* unset: 30 s */
    free(cfg->base_ejection_time);
    cfg->base_ejection_time = NULL;
    struct hy_l7_outlier_ep one[10] = {0};
    assert_true(hy_l7_outlier_report(cfg, one, 10, 3, HY_L7_OUT_RESPONSE, 500, 7));
    assert_int_equal(one[3].until_ms, 30007);
    hypha__v1__dp_outlier__free_unpacked(cfg, NULL);
}

static void max_percent(void **state)
{
    (void)state;
    static const struct {
        int pct; /* -1: unset (10) */
        size_t n, want_out;
    } cases[] = {
        {-1, 10, 1}, {-1, 20, 2}, {-1, 3, 1}, /* at least one */
        {50, 10, 5}, {0, 4, 1},   {100, 4, 4}, {34, 3, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpOutlier *cfg = config(1, 0, 0, false);
        if (cases[i].pct >= 0) {
            cfg->has_max_ejection_percent = 1;
            cfg->max_ejection_percent = (uint32_t)cases[i].pct;
        }
        struct hy_l7_outlier_ep eps[20] = {0};
        for (size_t k = 0; k < cases[i].n; k++)
            hy_l7_outlier_report(cfg, eps, cases[i].n, k, HY_L7_OUT_RESPONSE, 503, 0);
        size_t out = hy_l7_outlier_tick(eps, cases[i].n, 1);
        if (out != cases[i].want_out)
            fail_msg("case %zu: %zu out, want %zu", i, out, cases[i].want_out);
        hypha__v1__dp_outlier__free_unpacked(cfg, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detectors),
        cmocka_unit_test(ejection_time),
        cmocka_unit_test(max_percent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
