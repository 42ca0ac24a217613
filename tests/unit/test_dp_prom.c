/* The sidecar's Prometheus page with its apps' (sidecar/dp_prom.c): an
 * app's families are appended unless the page has one of that name
 * already, whichever way the app writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dp_prom.h"
#include "poison.h"

static const char OURS[] = "# HELP process_open_fds Open fds.\n# TYPE process_open_fds gauge\n"
                           "process_open_fds 12\n"
                           "# HELP hypha_dp_connected Connected.\n# TYPE hypha_dp_connected gauge\n"
                           "hypha_dp_connected 1\n";

static void merge_app(void **state)
{
    (void)state;
    struct hy_dp_prom_names seen = {0};
    assert_int_equal(hy_dp_prom_names_add(&seen, OURS, strlen(OURS)), 0);
    assert_int_equal(seen.n, 2);
    static const char app[] =
        "# HELP process_open_fds The app's.\r\n# TYPE process_open_fds gauge\r\n"
        "process_open_fds 3\r\n"
        "# HELP req_seconds Latency.\n# TYPE req_seconds histogram\n"
        "req_seconds_bucket{le=\"1\"} 2\nreq_seconds_bucket{le=\"+Inf\"} 3\n"
        "req_seconds_sum 1.5\nreq_seconds_count 3\n"
        "# a comment\n"
        "untyped_thing 7\n"
        "hypha_dp_connected 0\n"
        "# EOF\n"
        "last_line_without_newline 1";
    struct hy_buf out = {0};
    size_t dropped = 0;
    assert_int_equal(hy_dp_prom_merge_app(&seen, app, strlen(app), &out, &dropped), 0);
    assert_int_equal(dropped, 2); /* process_open_fds, hypha_dp_connected */
    assert_string_equal(out.data, "# HELP req_seconds Latency.\n# TYPE req_seconds histogram\n"
                                  "req_seconds_bucket{le=\"1\"} 2\n"
                                  "req_seconds_bucket{le=\"+Inf\"} 3\n"
                                  "req_seconds_sum 1.5\nreq_seconds_count 3\n"
                                  "# a comment\n"
                                  "untyped_thing 7\n"
                                  "last_line_without_newline 1\n");
    /* a second app with the first's family: left out too */
    static const char app2[] = "# TYPE req_seconds counter\nreq_seconds 1\nother 2\n";
    hy_buf_fini(&out);
    assert_int_equal(hy_dp_prom_merge_app(&seen, app2, strlen(app2), &out, &dropped), 0);
    assert_int_equal(dropped, 1);
    assert_string_equal(out.data, "other 2\n");
    hy_buf_fini(&out);
    /* nothing at all */
    assert_int_equal(hy_dp_prom_merge_app(&seen, "", 0, &out, &dropped), 0);
    assert_int_equal(out.len, 0);
    hy_buf_fini(&out);
    hy_dp_prom_names_fini(&seen);
}

/* An app's answer: the page of a 200, refusals with why. */
static void app_page(void **state)
{
    (void)state;
    const char *body;
    size_t n;
    char why[160];
    static const char ok[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nx 1\n";
    assert_int_equal(hy_dp_prom_app_page(ok, strlen(ok), &body, &n, why, sizeof(why)), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(body, "x 1\n", 4);
    static const char *const bad[][2] = {
        {"HTTP/1.1 404 Not Found\r\n\r\nnope", "status 404"},
        {"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "chunked"},
        {"HTTP/1.1 200 OK\r\nno end of headers", "not an HTTP/1 answer"},
        {"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1 answer"},
        {"", "not an HTTP/1 answer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(
            hy_dp_prom_app_page(bad[i][0], strlen(bad[i][0]), &body, &n, why, sizeof(why)), 0);
        assert_non_null(strstr(why, bad[i][1]));
        assert_null(body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merge_app),
        cmocka_unit_test(app_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
