/* gRPC on the sidecar's HTTP path: MeshRetry grpc decided from the
 * grpc-status of a trailers-only answer (sidecar/l7_retry.c, as the
 * h2c front and l7_down.c call it: numRetries counted, the transport's
 * failures by Kuma's default), and the grpc.health.v1 HealthCheckResponse
 * MeshHealthCheck grpc reads (hy_l7_hc_grpc_status, l7_health.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "l7_build.h"
#include "proxy_l7.h"
#include "poison.h"

/* A trailers-only answer (status 200, grpc-status in the head): retried
 * for the codes retryOn names until numRetries are used up. */
static void retry_trailers_only(void **state)
{
    (void)state;
    struct hy_http_head req, resp;
    l7_request(&req, "POST", "/test.Echo/Unary", "backend",
               (const char *[]){"content-type", "application/grpc", NULL});
    l7_response(&resp, 200,
                (const char *[]){"content-type", "application/grpc", "grpc-status", "14", NULL});
    struct hy_l7_outcome o = {HY_L7_TRY_RESPONSE, &resp};
    Hypha__V1__DpHttpRetry r = HYPHA__V1__DP_HTTP_RETRY__INIT;
    char *on[] = {"Unavailable", "DeadlineExceeded"};
    r.retry_on = on;
    r.n_retry_on = 2;
    r.has_num_retries = 1;
    r.num_retries = 3;
    assert_true(hy_l7_retry_should(&r, true, &req, &o, 1));
    assert_true(hy_l7_retry_should(&r, true, &req, &o, 3));
    assert_false(hy_l7_retry_should(&r, true, &req, &o, 4)); /* 3 retries made: it stands */
    hy_http_head_set(&resp, "grpc-status", "4");
    assert_true(hy_l7_retry_should(&r, true, &req, &o, 1));
    hy_http_head_set(&resp, "grpc-status", "13"); /* INTERNAL: not named */
    assert_false(hy_l7_retry_should(&r, true, &req, &o, 1));
    hy_http_head_set(&resp, "grpc-status", "0");
    assert_false(hy_l7_retry_should(&r, true, &req, &o, 1));
    /* a head without grpc-status (the trailers will say): not retried, as Envoy */
    hy_http_head_remove(&resp, "grpc-status");
    assert_false(hy_l7_retry_should(&r, true, &req, &o, 1));
    /* the same config read as http: grpc-status means nothing */
    hy_http_head_set(&resp, "grpc-status", "14");
    assert_false(hy_l7_retry_should(&r, false, &req, &o, 1));
    /* a reset, with retryOn naming only gRPC codes: not retried */
    struct hy_l7_outcome reset = {HY_L7_TRY_RESET, NULL};
    assert_false(hy_l7_retry_should(&r, true, &req, &reset, 1));
    /* retryOn unset: Kuma's gRPC default retries a reset and UNAVAILABLE */
    r.n_retry_on = 0;
    assert_true(hy_l7_retry_should(&r, true, &req, &reset, 1));
    assert_true(hy_l7_retry_should(&r, true, &req, &o, 1));
    hy_http_head_fini(&req);
    hy_http_head_fini(&resp);
}

static int status_of(const uint8_t *p, size_t n)
{
    return hy_l7_hc_grpc_status(p, n);
}

static void health_response(void **state)
{
    (void)state;
    static const uint8_t serving[] = {0, 0, 0, 0, 2, 0x08, 0x01};
    static const uint8_t not_serving[] = {0, 0, 0, 0, 2, 0x08, 0x02};
    static const uint8_t unknown_svc[] = {0, 0, 0, 0, 2, 0x08, 0x03};
    static const uint8_t empty[] = {0, 0, 0, 0, 0}; /* status absent: UNKNOWN */
    assert_int_equal(status_of(serving, sizeof(serving)), 1);
    assert_int_equal(status_of(not_serving, sizeof(not_serving)), 2);
    assert_int_equal(status_of(unknown_svc, sizeof(unknown_svc)), 3);
    assert_int_equal(status_of(empty, sizeof(empty)), 0);
    /* unknown fields (a string, a varint) are skipped */
    static const uint8_t skip[] = {0, 0, 0, 0, 8, 0x12, 0x02, 'h', 'i', 0x18, 0x05, 0x08, 0x02};
    assert_int_equal(status_of(skip, sizeof(skip)), 2);
    /* an out-of-range status: UNKNOWN */
    static const uint8_t big[] = {0, 0, 0, 0, 3, 0x08, 0x80, 0x01};
    assert_int_equal(status_of(big, sizeof(big)), 0);
    /* not one well-formed message: -1 */
    static const uint8_t compressed[] = {1, 0, 0, 0, 2, 0x08, 0x01};
    static const uint8_t short_len[] = {0, 0, 0, 0, 5, 0x08, 0x01};
    static const uint8_t cut_varint[] = {0, 0, 0, 0, 2, 0x08, 0x81};
    static const uint8_t cut_string[] = {0, 0, 0, 0, 3, 0x12, 0x09, 'x'};
    static const uint8_t bad_wire[] = {0, 0, 0, 0, 1, 0x0b};
    static const uint8_t long_varint[] = {0,    0,    0,    0,    12,   0x08, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(status_of(compressed, sizeof(compressed)), -1);
    assert_int_equal(status_of(short_len, sizeof(short_len)), -1);
    assert_int_equal(status_of(cut_varint, sizeof(cut_varint)), -1);
    assert_int_equal(status_of(cut_string, sizeof(cut_string)), -1);
    assert_int_equal(status_of(bad_wire, sizeof(bad_wire)), -1);
    assert_int_equal(status_of(long_varint, sizeof(long_varint)), -1);
    assert_int_equal(status_of(serving, 3), -1);
    assert_int_equal(status_of(NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retry_trailers_only),
        cmocka_unit_test(health_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
