/* MeshFaultInjection's decisions (sidecar/l7_fault.c): the entry that
 * applies to a caller, each fault drawn by its own share, delays adding
 * up, the first abort ending the chain, the lowest bandwidth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "l7_build.h"
#include "l7_fault.h"
#include "poison.h"

static Hypha__V1__DpHttpFault *fault(unsigned abort, uint32_t abort_pm, int64_t delay_ms,
                                     uint32_t delay_pm, uint32_t bw, uint32_t bw_pm)
{
    Hypha__V1__DpHttpFault *f = malloc(sizeof(*f));
    hypha__v1__dp_http_fault__init(f);
    f->has_abort_status = f->has_abort_per_million = 1;
    f->abort_status = abort;
    f->abort_per_million = abort_pm;
    f->delay = delay_ms ? l7_ms(delay_ms) : NULL;
    f->has_delay_per_million = 1;
    f->delay_per_million = delay_pm;
    f->has_bandwidth_bytes_per_s = f->has_bandwidth_per_million = 1;
    f->bandwidth_bytes_per_s = bw;
    f->bandwidth_per_million = bw_pm;
    return f;
}

static Hypha__V1__DpCallerFaults *caller(const char *key, const char *value, const char *origin)
{
    Hypha__V1__DpCallerFaults *c = malloc(sizeof(*c));
    hypha__v1__dp_caller_faults__init(c);
    c->origin = l7_str(origin);
    if (key) {
        Hypha__V1__DpCallerFaults__TagsEntry *t = malloc(sizeof(*t));
        hypha__v1__dp_caller_faults__tags_entry__init(t);
        t->key = l7_str(key);
        t->value = l7_str(value);
        L7_PUSH(c->tags, c->n_tags, t);
    }
    return c;
}

#define N 20000

/* Shares over N requests: aborted, delayed, throttled; and the sums. */
struct tally {
    unsigned aborts, delays, throttled;
    uint64_t delay_ms_sum;
    unsigned status_seen, bw_min;
};

static struct tally run(const Hypha__V1__DpCallerFaults *f)
{
    struct tally t = {0};
    for (uint64_t rnd = 0; rnd < N; rnd++) {
        struct hy_l7_fault out;
        hy_l7_fault_decide(f, rnd * 0x9e3779b97f4a7c15ULL, &out);
        if (out.abort_status) {
            t.aborts++;
            t.status_seen = out.abort_status;
        }
        if (out.delay_ms) {
            t.delays++;
            t.delay_ms_sum += out.delay_ms;
        }
        if (out.bandwidth_bytes_per_s) {
            t.throttled++;
            if (!t.bw_min || out.bandwidth_bytes_per_s < t.bw_min)
                t.bw_min = out.bandwidth_bytes_per_s;
        }
        if ((out.abort_status || out.delay_ms || out.bandwidth_bytes_per_s) && !out.origin)
            fail_msg("a fault without its origin");
    }
    return t;
}

/* within 5 % of want (of N) */
static void near(unsigned got, double share, const char *what)
{
    double want = share * N;
    if (got < want - 0.05 * N * (share > 0) || got > want + 0.05 * N * (share > 0) ||
        (share == 0 && got) || (share == 1 && got != N))
        fail_msg("%s: %u of %d, want about %.0f", what, got, N, want);
}

static void shares(void **state)
{
    (void)state;
    static const struct {
        unsigned abort;
        uint32_t abort_pm;
        int64_t delay;
        uint32_t delay_pm, bw, bw_pm;
        double aborts, delays, throttled;
    } cases[] = {
        {503, 100000, 0, 0, 0, 0, 0.10, 0, 0},
        {503, 1000000, 0, 0, 0, 0, 1, 0, 0},
        {503, 0, 0, 0, 0, 0, 0, 0, 0},
        {0, 500000, 0, 0, 0, 0, 0, 0, 0}, /* no status: no abort */
        {0, 0, 200, 250000, 0, 0, 0, 0.25, 0},
        {0, 0, 0, 1000000, 0, 0, 0, 0, 0}, /* no delay value */
        {0, 0, 0, 0, 1024, 500000, 0, 0, 0.5},
        /* independent: abort 50 %, delay 50 %: delayed 50 % of all */
        {500, 500000, 100, 500000, 2048, 500000, 0.5, 0.5, 0.25},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpCallerFaults *c = caller(NULL, NULL, "MeshFaultInjection/f from[0]");
        L7_PUSH(c->http, c->n_http,
                fault(cases[i].abort, cases[i].abort_pm, cases[i].delay, cases[i].delay_pm,
                      cases[i].bw, cases[i].bw_pm));
        struct tally t = run(c);
        char what[64];
        snprintf(what, sizeof(what), "case %zu aborts", i);
        near(t.aborts, cases[i].aborts, what);
        snprintf(what, sizeof(what), "case %zu delays", i);
        near(t.delays, cases[i].delays, what);
        snprintf(what, sizeof(what), "case %zu throttled", i);
        near(t.throttled, cases[i].throttled, what);
        if (t.aborts)
            assert_int_equal(t.status_seen, cases[i].abort);
        if (t.delays)
            assert_int_equal(t.delay_ms_sum, (uint64_t)t.delays * (uint64_t)cases[i].delay);
        hypha__v1__dp_caller_faults__free_unpacked(c, NULL);
    }
    struct hy_l7_fault out;
    hy_l7_fault_decide(NULL, 1, &out);
    assert_int_equal(out.abort_status, 0);
    assert_null(out.origin);
}

static void chain(void **state)
{
    (void)state;
    /* delays add up; the first abort ends the chain; the lowest bandwidth */
    Hypha__V1__DpCallerFaults *c = caller(NULL, NULL, "MeshFaultInjection/f from[0]");
    L7_PUSH(c->http, c->n_http, fault(0, 0, 100, 1000000, 4096, 1000000));
    L7_PUSH(c->http, c->n_http, fault(0, 0, 50, 1000000, 1024, 1000000));
    L7_PUSH(c->http, c->n_http, fault(500, 1000000, 0, 0, 0, 0));
    L7_PUSH(c->http, c->n_http, fault(418, 1000000, 1000, 1000000, 1, 1000000)); /* not reached */
    struct hy_l7_fault out;
    hy_l7_fault_decide(c, 42, &out);
    assert_int_equal(out.delay_ms, 150);
    assert_int_equal(out.abort_status, 500);
    assert_int_equal(out.bandwidth_bytes_per_s, 1024);
    assert_string_equal(out.origin, "MeshFaultInjection/f from[0]");
    /* Kuma's example: abort 2.5 % and 10 %, delay 5 %: about 12.25 % aborted */
    hypha__v1__dp_caller_faults__free_unpacked(c, NULL);
    c = caller(NULL, NULL, "o");
    L7_PUSH(c->http, c->n_http, fault(500, 25000, 0, 0, 0, 0));
    L7_PUSH(c->http, c->n_http, fault(500, 100000, 0, 0, 0, 0));
    L7_PUSH(c->http, c->n_http, fault(0, 0, 5000, 50000, 0, 0));
    struct tally t = run(c);
    near(t.aborts, 1 - 0.975 * 0.9, "two aborts");
    near(t.delays, 0.05 * 0.975 * 0.9, "delay after the aborts");
    hypha__v1__dp_caller_faults__free_unpacked(c, NULL);
}

static void pick(void **state)
{
    (void)state;
    Hypha__V1__DpInbound in = HYPHA__V1__DP_INBOUND__INIT;
    Hypha__V1__DpCallerFaults *v[] = {caller(NULL, NULL, "all"),
                                      caller("hypha.io/service", "web", "web"),
                                      caller("env", "dev", "dev")};
    in.faults = v;
    in.n_faults = 3;
    struct hy_permit_peer web = {0}, dev = {0}, other = {0};
    hy_permit_peer_add(&web, "hypha.io/service", "web");
    hy_permit_peer_add(&dev, "env", "dev");
    hy_permit_peer_add(&dev, "hypha.io/service", "web");
    hy_permit_peer_add(&other, "hypha.io/service", "other");
    assert_string_equal(hy_l7_fault_pick(&in, &web)->origin, "web");
    assert_string_equal(hy_l7_fault_pick(&in, &dev)->origin, "dev");
    assert_string_equal(hy_l7_fault_pick(&in, &other)->origin, "all");
    in.faults = v + 1;
    in.n_faults = 2;
    assert_null(hy_l7_fault_pick(&in, &other));
    for (size_t i = 0; i < 3; i++)
        hypha__v1__dp_caller_faults__free_unpacked(v[i], NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shares),
        cmocka_unit_test(chain),
        cmocka_unit_test(pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
