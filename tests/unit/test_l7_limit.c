/* MeshRateLimit's local token buckets (sidecar/l7_limit.c): Envoy's
 * fills (max_tokens = tokens_per_fill, no carry past the maximum), the
 * HTTP and TCP buckets apart, the entry that applies to a caller, buckets
 * kept across configs only for unchanged entries, and exact counts under
 * threads taking at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "l7_build.h"
#include "l7_limit.h"
#include "poison.h"

static Hypha__V1__DpCallerRateLimit *entry(uint32_t http, int64_t http_ms, uint32_t tcp,
                                           int64_t tcp_ms, const char *tag_key,
                                           const char *tag_value)
{
    Hypha__V1__DpCallerRateLimit *e = malloc(sizeof(*e));
    hypha__v1__dp_caller_rate_limit__init(e);
    e->has_http_requests = e->has_tcp_connections = 1;
    e->http_requests = http;
    e->tcp_connections = tcp;
    e->http_interval = http_ms ? l7_ms(http_ms) : NULL;
    e->tcp_interval = tcp_ms ? l7_ms(tcp_ms) : NULL;
    if (tag_key) {
        Hypha__V1__DpCallerRateLimit__TagsEntry *t = malloc(sizeof(*t));
        hypha__v1__dp_caller_rate_limit__tags_entry__init(t);
        t->key = l7_str(tag_key);
        t->value = l7_str(tag_value);
        L7_PUSH(e->tags, e->n_tags, t);
    }
    return e;
}

static Hypha__V1__DpInbound *inbound(uint32_t port)
{
    Hypha__V1__DpInbound *in = malloc(sizeof(*in));
    hypha__v1__dp_inbound__init(in);
    in->has_port = 1;
    in->port = port;
    return in;
}

static unsigned take_n(const struct hy_l7_limits *l, uint32_t port, int index, bool tcp,
                       uint64_t now, unsigned n)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++)
        ok += hy_l7_limit_take(l, port, index, tcp, now);
    return ok;
}

static void buckets(void **state)
{
    (void)state;
    Hypha__V1__DpInbound *in = inbound(8080);
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(5, 1000, 2, 10000, NULL, NULL));
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(0, 0, 3, 0, NULL, NULL));
    struct hy_l7_limits *l = hy_l7_limits_new(&in, 1, NULL, 1000000);
    assert_non_null(l);
    /* starts full; then one fill per interval, never above the maximum */
    static const struct {
        uint64_t at;
        unsigned tries, ok;
    } steps[] = {
        {1000000, 7, 5}, {1000999, 3, 0}, {1001000, 7, 5},
        {1001500, 1, 0}, {1009000, 9, 5}, /* eight intervals idle: still only 5 */
        {1000000, 3, 0},                  /* an older clock (another thread): no fill */
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        if (take_n(l, 8080, 0, false, steps[i].at, steps[i].tries) != steps[i].ok)
            fail_msg("step %zu", i);
    /* TCP apart from HTTP */
    assert_int_equal(take_n(l, 8080, 0, true, 1000000, 5), 2);
    assert_int_equal(take_n(l, 8080, 0, true, 1009999, 5), 0);
    assert_int_equal(take_n(l, 8080, 0, true, 1010000, 5), 2);
    /* no HTTP limit in entry 1, interval unset: 1 s */
    assert_int_equal(take_n(l, 8080, 1, false, 1000000, 100), 100);
    assert_null(hy_l7_limit_bucket(l, 8080, 1, false));
    assert_int_equal(take_n(l, 8080, 1, true, 1000000, 5), 3);
    assert_int_equal(take_n(l, 8080, 1, true, 1001000, 5), 3);
    /* no such port or entry: not limited */
    assert_true(hy_l7_limit_take(l, 9090, 0, false, 0));
    assert_true(hy_l7_limit_take(l, 8080, -1, false, 0));
    assert_true(hy_l7_limit_take(NULL, 8080, 0, false, 0));
    hy_l7_limits_free(l);
    hypha__v1__dp_inbound__free_unpacked(in, NULL);
}

static void pick(void **state)
{
    (void)state;
    Hypha__V1__DpInbound *in = inbound(8080);
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(100, 1000, 0, 0, NULL, NULL));
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(10, 1000, 0, 0, "hypha.io/service", "web"));
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(1, 1000, 0, 0, "env", "dev"));
    struct hy_permit_peer web = {0}, dev = {0}, other = {0};
    hy_permit_peer_add(&web, "hypha.io/service", "web");
    hy_permit_peer_add(&dev, "hypha.io/service", "web");
    hy_permit_peer_add(&dev, "env", "dev");
    hy_permit_peer_add(&other, "hypha.io/service", "other");
    int idx;
    assert_ptr_equal(hy_l7_limit_pick(in, &web, &idx), in->rate_limits[1]);
    assert_int_equal(idx, 1);
    assert_ptr_equal(hy_l7_limit_pick(in, &dev, &idx), in->rate_limits[2]); /* the last */
    assert_int_equal(idx, 2);
    assert_ptr_equal(hy_l7_limit_pick(in, &other, &idx), in->rate_limits[0]); /* tags: none */
    assert_int_equal(idx, 0);
    hypha__v1__dp_caller_rate_limit__free_unpacked(in->rate_limits[0], NULL);
    in->rate_limits[0] = in->rate_limits[2];
    in->n_rate_limits = 2;
    assert_null(hy_l7_limit_pick(in, &other, &idx));
    assert_int_equal(idx, -1);
    hypha__v1__dp_inbound__free_unpacked(in, NULL);
}

static void rebuild(void **state)
{
    (void)state;
    Hypha__V1__DpInbound *a = inbound(8080), *b = inbound(8081);
    L7_PUSH(a->rate_limits, a->n_rate_limits, entry(3, 1000, 0, 0, NULL, NULL));
    L7_PUSH(b->rate_limits, b->n_rate_limits, entry(3, 1000, 0, 0, NULL, NULL));
    Hypha__V1__DpInbound *v[] = {a, b};
    struct hy_l7_limits *old = hy_l7_limits_new(v, 2, NULL, 0);
    assert_int_equal(take_n(old, 8080, 0, false, 10, 3), 3);
    assert_int_equal(take_n(old, 8081, 0, false, 10, 3), 3);
    /* a new config: 8080's entry unchanged, 8081's changed */
    b->rate_limits[0]->http_requests = 4;
    struct hy_l7_limits *cur = hy_l7_limits_new(v, 2, old, 20);
    assert_non_null(cur);
    assert_ptr_equal(hy_l7_limit_bucket(cur, 8080, 0, false),
                     hy_l7_limit_bucket(old, 8080, 0, false));
    assert_ptr_not_equal(hy_l7_limit_bucket(cur, 8081, 0, false),
                         hy_l7_limit_bucket(old, 8081, 0, false));
    hy_l7_limits_free(old);                                  /* the kept bucket lives on in cur */
    assert_int_equal(take_n(cur, 8080, 0, false, 30, 3), 0); /* still drained */
    assert_int_equal(take_n(cur, 8081, 0, false, 30, 5), 4); /* new and full */
    /* a change of tags alone is a new entry too */
    Hypha__V1__DpCallerRateLimit *e = entry(3, 1000, 0, 0, "env", "dev");
    hypha__v1__dp_caller_rate_limit__free_unpacked(a->rate_limits[0], NULL);
    a->rate_limits[0] = e;
    struct hy_l7_limits *next = hy_l7_limits_new(v, 2, cur, 40);
    assert_int_equal(take_n(next, 8080, 0, false, 40, 5), 3);
    assert_ptr_equal(hy_l7_limit_bucket(next, 8081, 0, false),
                     hy_l7_limit_bucket(cur, 8081, 0, false));
    hy_l7_limits_free(cur);
    hy_l7_limits_free(next);
    hy_l7_limits_free(NULL);
    hypha__v1__dp_inbound__free_unpacked(a, NULL);
    hypha__v1__dp_inbound__free_unpacked(b, NULL);
}

#define THREADS 4
#define TRIES 20000

struct worker {
    const struct hy_l7_limits *l;
    atomic_uint *clock; /* ms, advanced by the threads themselves */
    unsigned ok;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < TRIES; i++) {
        uint64_t now = atomic_load(w->clock);
        if (i % 50 == 0)
            now = atomic_fetch_add(w->clock, 1) + 1;
        w->ok += hy_l7_limit_take(w->l, 8080, 0, false, now);
    }
    return NULL;
}

/* Threads taking while the clock moves: never more than the fills allow,
 * and most fills taken. */
static void threads(void **state)
{
    (void)state;
    Hypha__V1__DpInbound *in = inbound(8080);
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(100, 100, 0, 0, NULL, NULL));
    struct hy_l7_limits *l = hy_l7_limits_new(&in, 1, NULL, 0);
    atomic_uint clock = 0;
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){l, &clock, 0};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    unsigned total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += w[i].ok;
    }
    /* the clock moved THREADS * TRIES / 50 ms: 16 intervals */
    unsigned ms = atomic_load(&clock);
    assert_int_equal(ms, THREADS * TRIES / 50);
    assert_true(total <= 100 * (ms / 100 + 1));
    assert_true(total >= 100 * (ms / 100) / 2);
    hy_l7_limits_free(l);
    hypha__v1__dp_inbound__free_unpacked(in, NULL);
}

static void *frozen_hammer(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < TRIES; i++)
        w->ok += hy_l7_limit_take(w->l, 8080, 0, true, 5);
    return NULL;
}

/* Threads taking at one instant: exactly max_tokens, however they
 * interleave. */
static void threads_exact(void **state)
{
    (void)state;
    Hypha__V1__DpInbound *in = inbound(8080);
    L7_PUSH(in->rate_limits, in->n_rate_limits, entry(0, 0, 777, 1000, NULL, NULL));
    struct hy_l7_limits *l = hy_l7_limits_new(&in, 1, NULL, 0);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){l, NULL, 0};
        assert_int_equal(pthread_create(&t[i], NULL, frozen_hammer, &w[i]), 0);
    }
    unsigned total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += w[i].ok;
    }
    assert_int_equal(total, 777);
    hy_l7_limits_free(l);
    hypha__v1__dp_inbound__free_unpacked(in, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buckets), cmocka_unit_test(pick),          cmocka_unit_test(rebuild),
        cmocka_unit_test(threads), cmocka_unit_test(threads_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
