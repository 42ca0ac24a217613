/* MeshRetry's decisions (sidecar/l7_retry.c): retryOn conditions for
 * HTTP and gRPC as Kuma maps them onto Envoy, Kuma's defaults, the
 * request gate (HttpMethodX, retriable request headers), retriable
 * status codes and response headers, the count of tries, and Envoy's
 * fully jittered exponential backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "l7_build.h"
#include "l7_retry.h"
#include "poison.h"

enum {
    RESP = HY_L7_TRY_RESPONSE,
    CONN = HY_L7_TRY_CONNECT_FAILURE,
    RESET = HY_L7_TRY_RESET,
    REFUSED = HY_L7_TRY_REFUSED_STREAM,
    TIMEOUT = HY_L7_TRY_TIMEOUT
};

struct retry_case {
    const char *retry_on[4]; /* NULL-ended; none: Kuma's default */
    bool grpc;
    int end;
    unsigned status;
    const char *resp_fields[3], *method;
    bool want;
};

static const struct retry_case cases[] = {
    /* 5XX: any 5xx, and every failure without a response */
    {{"5XX"}, false, RESP, 500, .want = true},
    {{"5xx"}, false, RESP, 503, .want = true},
    {{"5XX"}, false, RESP, 404, .want = false},
    {{"5XX"}, false, CONN, .want = true},
    {{"5XX"}, false, RESET, .want = true},
    {{"5XX"}, false, REFUSED, .want = true},
    {{"5XX"}, false, TIMEOUT, .want = true},
    /* GatewayError: 502, 503, 504 (and failures without a response) */
    {{"GatewayError"}, false, RESP, 502, .want = true},
    {{"GatewayError"}, false, RESP, 504, .want = true},
    {{"GatewayError"}, false, RESP, 500, .want = false},
    {{"GatewayError"}, false, CONN, .want = true},
    {{"GatewayError"}, false, TIMEOUT, .want = true},
    /* Reset: no response at all */
    {{"Reset"}, false, RESET, .want = true},
    {{"Reset"}, false, TIMEOUT, .want = true},
    {{"Reset"}, false, CONN, .want = true},
    {{"Reset"}, false, RESP, 503, .want = false},
    /* ConnectFailure only */
    {{"ConnectFailure"}, false, CONN, .want = true},
    {{"ConnectFailure"}, false, RESET, .want = false},
    {{"ConnectFailure"}, false, TIMEOUT, .want = false},
    {{"ConnectFailure"}, false, RESP, 503, .want = false},
    /* RefusedStream only */
    {{"RefusedStream"}, false, REFUSED, .want = true},
    {{"RefusedStream"}, false, RESET, .want = false},
    /* Retriable4xx: 409 */
    {{"Retriable4xx"}, false, RESP, 409, .want = true},
    {{"Retriable4xx"}, false, RESP, 429, .want = false},
    /* EnvoyRatelimited: the header */
    {{"EnvoyRatelimited"}, false, RESP, 429, {"x-envoy-ratelimited", "true"}, .want = true},
    {{"EnvoyRatelimited"}, false, RESP, 429, .want = false},
    /* Kuma's default without retryOn: GatewayError, ConnectFailure, RefusedStream */
    {{NULL}, false, RESP, 503, .want = true},
    {{NULL}, false, RESP, 500, .want = false},
    {{NULL}, false, CONN, .want = true},
    {{NULL}, false, REFUSED, .want = true},
    {{NULL}, false, RESET, .want = true}, /* GatewayError takes resets, as Envoy */
    /* HttpMethodX: only those methods, with the other conditions */
    {{"5XX", "HttpMethodGet"}, false, RESP, 503, .method = "GET", .want = true},
    {{"5XX", "HttpMethodGet"}, false, RESP, 503, .method = "POST", .want = false},
    {{"5XX", "HttpMethodGet", "HttpMethodPost"}, false, RESP, 503, .method = "POST", .want = true},
    /* a status code in retryOn: that code only (no default besides) */
    {{"429"}, false, RESP, 429, .want = true},
    {{"429"}, false, RESP, 503, .want = false},
    {{"429"}, false, CONN, .want = false},
    /* an unknown name is ignored */
    {{"Sometimes", "Reset"}, false, RESET, .want = true},
    /* gRPC: grpc-status of the response */
    {{"Unavailable"}, true, RESP, 200, {"grpc-status", "14"}, .want = true},
    {{"Unavailable"}, true, RESP, 200, {"grpc-status", "13"}, .want = false},
    {{"Internal"}, true, RESP, 200, {"grpc-status", "13"}, .want = true},
    {{"Canceled"}, true, RESP, 200, {"grpc-status", "1"}, .want = true},
    {{"DeadlineExceeded"}, true, RESP, 200, {"grpc-status", "4"}, .want = true},
    {{"ResourceExhausted"}, true, RESP, 200, {"grpc-status", "8"}, .want = true},
    {{"Unavailable"}, true, RESP, 200, {"grpc-status", "0"}, .want = false},
    {{"Unavailable"}, true, RESP, 200, .want = false},
    {{"Unavailable"}, true, RESET, .want = false}, /* transport failures: not unless named */
    /* gRPC default: cancelled, connect-failure, gateway-error, refused-stream, reset,
     * resource-exhausted, unavailable */
    {{NULL}, true, RESP, 200, {"grpc-status", "14"}, .want = true},
    {{NULL}, true, RESP, 200, {"grpc-status", "8"}, .want = true},
    {{NULL}, true, RESP, 200, {"grpc-status", "1"}, .want = true},
    {{NULL}, true, RESP, 200, {"grpc-status", "13"}, .want = false},
    {{NULL}, true, RESP, 200, {"grpc-status", "4"}, .want = false},
    {{NULL}, true, RESET, .want = true},
    {{NULL}, true, CONN, .want = true},
    {{NULL}, true, RESP, 503, .want = true},
};

static void conditions(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct retry_case *c = &cases[i];
        Hypha__V1__DpHttpRetry r = HYPHA__V1__DP_HTTP_RETRY__INIT;
        char *on[4];
        for (r.n_retry_on = 0; c->retry_on[r.n_retry_on]; r.n_retry_on++)
            on[r.n_retry_on] = (char *)c->retry_on[r.n_retry_on];
        r.retry_on = on;
        struct hy_http_head req, resp;
        l7_request(&req, c->method ? c->method : "GET", "/", "backend", NULL);
        l7_response(&resp, c->status, c->resp_fields[0] ? c->resp_fields : NULL);
        struct hy_l7_outcome o = {(enum hy_l7_try_end)c->end, c->end == RESP ? &resp : NULL};
        if (hy_l7_retry_should(&r, c->grpc, &req, &o, 1) != c->want)
            fail_msg("case %zu (%s, end %d, status %u): want %d", i,
                     c->retry_on[0] ? c->retry_on[0] : "default", c->end, c->status, c->want);
        hy_http_head_fini(&req);
        hy_http_head_fini(&resp);
    }
}

static void counts_and_gates(void **state)
{
    (void)state;
    struct hy_http_head req, resp;
    l7_request(&req, "POST", "/", "backend", (const char *[]){"x-retry", "yes", NULL});
    l7_response(&resp, 503, (const char *[]){"x-app-says", "try-again-7", NULL});
    struct hy_l7_outcome o = {HY_L7_TRY_RESPONSE, &resp};
    /* no MeshRetry: never */
    assert_false(hy_l7_retry_should(NULL, false, &req, &o, 1));
    assert_int_equal(hy_l7_retry_max(NULL), 0);
    /* numRetries unset: 1 retry, so 2 tries */
    Hypha__V1__DpHttpRetry r = HYPHA__V1__DP_HTTP_RETRY__INIT;
    assert_int_equal(hy_l7_retry_max(&r), 1);
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 1));
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 2));
    r.has_num_retries = 1;
    r.num_retries = 3;
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 3));
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 4));
    r.num_retries = 0;
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 1));
    r.num_retries = 5;
    /* retriable status codes alone: those codes only */
    uint32_t codes[] = {429};
    r.retriable_status_codes = codes;
    r.n_retriable_status_codes = 1;
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 1)); /* 503 is not 429 */
    resp.status = 429;
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 1));
    r.n_retriable_status_codes = 0;
    /* retriable response headers */
    Hypha__V1__DpHeaderMatch *rh = l7_hmatch("RegularExpression", "X-App-Says", "try-again-[0-9]");
    r.retriable_response_headers = &rh;
    r.n_retriable_response_headers = 1;
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 1));
    hy_http_head_remove(&resp, "x-app-says");
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 1));
    r.n_retriable_response_headers = 0;
    /* retriable request headers: only requests matching one */
    char *on[] = {"5XX"};
    r.retry_on = on;
    r.n_retry_on = 1;
    resp.status = 500;
    Hypha__V1__DpHeaderMatch *qh[] = {l7_hmatch("Exact", "x-retry", "yes"),
                                      l7_hmatch("Present", "x-idempotent", NULL)};
    r.retriable_request_headers = qh;
    r.n_retriable_request_headers = 2;
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 1));
    hy_http_head_set(&req, "x-retry", "no");
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 1));
    hy_http_head_add(&req, "X-Idempotent", 12, "1", 1);
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 1));
    /* a method entry and header matches: either lets the request through */
    char *on2[] = {"5XX", "HttpMethodPost"};
    r.retry_on = on2;
    r.n_retry_on = 2;
    hy_http_head_remove(&req, "x-idempotent");
    assert_true(hy_l7_retry_should(&r, false, &req, &o, 1));
    hy_http_head_set_str(&req.method, "PUT", 3);
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 1));
    hypha__v1__dp_header_match__free_unpacked(rh, NULL);
    hypha__v1__dp_header_match__free_unpacked(qh[0], NULL);
    hypha__v1__dp_header_match__free_unpacked(qh[1], NULL);
    /* perTryTimeout */
    assert_int_equal(hy_l7_retry_per_try_ms(&r), 0);
    r.per_try_timeout = l7_ms(1500);
    assert_int_equal(hy_l7_retry_per_try_ms(&r), 1500);
    free(r.per_try_timeout);
    hy_http_head_fini(&req);
    hy_http_head_fini(&resp);
}

static void backoff(void **state)
{
    (void)state;
    /* defaults: base 25 ms, max 250 ms; retry n draws from [0, (2^n - 1) x base) */
    static const struct {
        int64_t base, max; /* -1: unset */
        unsigned n;
        uint64_t span, cap;
    } cases[] = {
        {-1, -1, 1, 25, 250},      {-1, -1, 2, 75, 250},       {-1, -1, 3, 175, 250},
        {-1, -1, 4, 375, 250},     {-1, -1, 40, 375, 250},     {100, 1000, 1, 100, 1000},
        {100, 1000, 3, 700, 1000}, {100, 1000, 5, 3100, 1000}, {10, -1, 2, 30, 100},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpHttpRetry r = HYPHA__V1__DP_HTTP_RETRY__INIT;
        if (cases[i].base >= 0)
            r.base_interval = l7_ms(cases[i].base);
        if (cases[i].max >= 0)
            r.max_interval = l7_ms(cases[i].max);
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint64_t rnd = 0; rnd < 5000; rnd++) {
            uint64_t v = hy_l7_retry_backoff_ms(&r, cases[i].n, rnd * 2654435761u);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        uint64_t want_hi = cases[i].span - 1 < cases[i].cap ? cases[i].span - 1 : cases[i].cap;
        if (lo != 0 || hi != want_hi)
            fail_msg("case %zu: [%llu, %llu], want [0, %llu]", i, (unsigned long long)lo,
                     (unsigned long long)hi, (unsigned long long)want_hi);
        free(r.base_interval);
        free(r.max_interval);
    }
    assert_int_equal(hy_l7_retry_backoff_ms(NULL, 1, 24), 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conditions),
        cmocka_unit_test(counts_and_gates),
        cmocka_unit_test(backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
