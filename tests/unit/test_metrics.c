/* Unit tests of the Prometheus registry: exact output of every metric kind,
 * escaping, ordering, registration errors, callbacks, process metrics and
 * concurrent updates. `test_metrics --render` prints a populated registry for
 * `promtool check metrics` (tests/unit/metrics.cmake). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "error.h"
#include "metrics.h"
#include "poison.h"

/* Renders m into a fresh string the caller frees. */
static char *render(struct hy_metrics *m)
{
    struct hy_buf b = {0};
    assert_int_equal(hy_metrics_render(m, &b), 0);
    return b.data ? b.data : strdup("");
}

static void assert_render(struct hy_metrics *m, const char *want)
{
    char *got = render(m);
    if (strcmp(got, want) != 0)
        fail_msg("rendered:\n%s\nwanted:\n%s", got, want);
    free(got);
}

static void test_counter(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    struct hy_metric *c = hy_metric_counter(m, "hypha_test_events_total", "Events seen.", 0);
    assert_non_null(c);
    assert_render(m, "# HELP hypha_test_events_total Events seen.\n"
                     "# TYPE hypha_test_events_total counter\n"
                     "hypha_test_events_total 0\n");
    struct hy_series *s = hy_metric_series(c);
    assert_non_null(s);
    hy_series_inc(s);
    hy_series_add(s, 41);
    hy_series_add(s, -5);  /* counters only go up */
    hy_series_add(s, NAN); /* ignored */
    hy_series_set(s, 7);   /* not for counters */
    hy_series_observe(s, 1);
    assert_true(hy_series_value(s) == 42);
    assert_render(m, "# HELP hypha_test_events_total Events seen.\n"
                     "# TYPE hypha_test_events_total counter\n"
                     "hypha_test_events_total 42\n");
    hy_series_add(s, 0.5);
    assert_true(hy_series_value(s) == 42.5);
    assert_render(m, "# HELP hypha_test_events_total Events seen.\n"
                     "# TYPE hypha_test_events_total counter\n"
                     "hypha_test_events_total 42.5\n");
    hy_metrics_free(m);
}

static void test_labels_order_and_escaping(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    struct hy_metric *c = hy_metric_counter(
        m, "hypha_api_requests_total", "HTTP requests\\served.\nBy route.", 2, "route", "status");
    assert_non_null(c);
    /* a labelled family has no series until one is used */
    assert_render(m, "");
    struct hy_series *a = hy_metric_series(c, "GET /meshes", "200");
    struct hy_series *b = hy_metric_series(c, "DELETE /meshes", "404");
    struct hy_series *e = hy_metric_series(c, "q\"u\\o\nte", NULL);
    assert_ptr_equal(hy_metric_series(c, "GET /meshes", "200"), a);
    const char *vals[] = {"GET /meshes", "200"};
    assert_ptr_equal(hy_metric_series_v(c, vals), a);
    assert_ptr_not_equal(a, b);
    hy_series_add(a, 3);
    hy_series_inc(b);
    hy_series_inc(e);
    assert_render(m, "# HELP hypha_api_requests_total HTTP requests\\\\served.\\nBy route.\n"
                     "# TYPE hypha_api_requests_total counter\n"
                     "hypha_api_requests_total{route=\"DELETE /meshes\",status=\"404\"} 1\n"
                     "hypha_api_requests_total{route=\"GET /meshes\",status=\"200\"} 3\n"
                     "hypha_api_requests_total{route=\"q\\\"u\\\\o\\nte\",status=\"\"} 1\n");
    hy_metrics_free(m);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    struct hy_metric *g = hy_metric_gauge(m, "hypha_test_names", "Names.", 1, "name");
    struct hy_series *s = hy_metric_series(g, "a\xff"
                                              "b\xc3");
    assert_non_null(s);
    /* the same bad input finds the same, repaired, series */
    assert_ptr_equal(hy_metric_series(g, "a\xff"
                                         "b\xc3"),
                     s);
    assert_ptr_equal(hy_metric_series(g, "a\xef\xbf\xbd"
                                         "b\xef\xbf\xbd"),
                     s);
    /* overlong, surrogate and valid multi-byte forms */
    assert_non_null(hy_metric_series(g, "\xc0\xaf|\xed\xa0\x80|\xc3\xa9\xf0\x9f\x8c\xb1"));
    assert_render(m, "# HELP hypha_test_names Names.\n"
                     "# TYPE hypha_test_names gauge\n"
                     "hypha_test_names{name=\"a\xef\xbf\xbd"
                     "b\xef\xbf\xbd\"} 0\n"
                     "hypha_test_names{name=\"\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd"
                     "\xef\xbf\xbd|\xc3\xa9\xf0\x9f\x8c\xb1\"} 0\n");
    hy_metrics_free(m);
}

static void test_gauge(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    struct hy_metric *g = hy_metric_gauge(m, "hypha_kds_zones_connected", "Connected zones.", 0);
    struct hy_series *s = hy_metric_series(g);
    hy_series_set(s, 5);
    hy_series_add(s, -2);
    hy_series_inc(s);
    hy_series_observe(s, 100); /* not for gauges */
    assert_true(hy_series_value(s) == 4);
    assert_render(m, "# HELP hypha_kds_zones_connected Connected zones.\n"
                     "# TYPE hypha_kds_zones_connected gauge\n"
                     "hypha_kds_zones_connected 4\n");
    hy_series_set(s, 0.1);
    assert_render(m, "# HELP hypha_kds_zones_connected Connected zones.\n"
                     "# TYPE hypha_kds_zones_connected gauge\n"
                     "hypha_kds_zones_connected 0.1\n");
    hy_series_set(s, -INFINITY);
    assert_render(m, "# HELP hypha_kds_zones_connected Connected zones.\n"
                     "# TYPE hypha_kds_zones_connected gauge\n"
                     "hypha_kds_zones_connected -Inf\n");
    hy_series_set(s, NAN);
    assert_render(m, "# HELP hypha_kds_zones_connected Connected zones.\n"
                     "# TYPE hypha_kds_zones_connected gauge\n"
                     "hypha_kds_zones_connected NaN\n");
    hy_series_set(s, 1e300 / 3);
    char *out = render(m);
    char *sample = strstr(out, "\nhypha_kds_zones_connected ");
    assert_non_null(sample);
    assert_true(strtod(sample + strlen("\nhypha_kds_zones_connected "), NULL) == 1e300 / 3);
    free(out);
    hy_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    static const double bounds[] = {0.005, 0.1, 1, INFINITY};
    struct hy_metric *h = hy_metric_histogram(m, "hypha_api_request_duration_seconds",
                                              "Request latency.", bounds, 4, 1, "route");
    assert_non_null(h);
    struct hy_series *s = hy_metric_series(h, "GET /zones");
    hy_series_observe(s, 0.001);
    hy_series_observe(s, 0.005); /* le is inclusive */
    hy_series_observe(s, 0.05);
    hy_series_observe(s, 2);
    hy_series_observe(s, NAN); /* ignored */
    hy_series_add(s, 1);       /* not for histograms */
    hy_series_set(s, 1);
    assert_true(hy_series_value(s) == 4);
    assert_render(m,
                  "# HELP hypha_api_request_duration_seconds Request latency.\n"
                  "# TYPE hypha_api_request_duration_seconds histogram\n"
                  "hypha_api_request_duration_seconds_bucket{route=\"GET /zones\",le=\"0.005\"} 2\n"
                  "hypha_api_request_duration_seconds_bucket{route=\"GET /zones\",le=\"0.1\"} 3\n"
                  "hypha_api_request_duration_seconds_bucket{route=\"GET /zones\",le=\"1\"} 3\n"
                  "hypha_api_request_duration_seconds_bucket{route=\"GET /zones\",le=\"+Inf\"} 4\n"
                  "hypha_api_request_duration_seconds_sum{route=\"GET /zones\"} 2.056\n"
                  "hypha_api_request_duration_seconds_count{route=\"GET /zones\"} 4\n");
    /* without labels and without bounds: only +Inf */
    struct hy_metric *h2 = hy_metric_histogram(m, "hypha_test_sizes_bytes", "Sizes.", NULL, 0, 0);
    assert_non_null(h2);
    hy_series_observe(hy_metric_series(h2), 10);
    char *out = render(m);
    assert_non_null(strstr(out, "# TYPE hypha_test_sizes_bytes histogram\n"
                                "hypha_test_sizes_bytes_bucket{le=\"+Inf\"} 1\n"
                                "hypha_test_sizes_bytes_sum 10\n"
                                "hypha_test_sizes_bytes_count 1\n"));
    free(out);
    hy_metrics_free(m);
}

static void test_registration_errors(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    static const double good[] = {1, 2}, unsorted[] = {2, 1}, nan[] = {NAN}, dup[] = {1, 1},
                        inf_first[] = {INFINITY, 1};
    assert_non_null(hy_metric_counter(m, "hypha_a_total", "A.", 1, "x"));
    assert_null(hy_metric_counter(m, "hypha_a_total", "Again.", 0));    /* taken */
    assert_null(hy_metric_gauge(m, "hypha_a_total", "As a gauge.", 0)); /* taken */
    assert_null(hy_metric_counter(m, "hypha_b", "No _total.", 0));      /* counter suffix */
    assert_null(hy_metric_gauge(m, "9hypha", "Digit first.", 0));       /* name */
    assert_null(hy_metric_gauge(m, "hypha-dash", "Dash.", 0));          /* name */
    assert_null(hy_metric_gauge(m, "", "Empty.", 0));                   /* name */
    assert_null(hy_metric_gauge(m, NULL, "Null.", 0));                  /* name */
    assert_null(hy_metric_gauge(m, "hypha_c", "", 0));                  /* help */
    assert_null(hy_metric_gauge(m, "hypha_c", NULL, 0));                /* help */
    assert_null(hy_metric_gauge(m, "hypha_c", "C.", 1, "a:b"));         /* label name */
    assert_null(hy_metric_gauge(m, "hypha_c", "C.", 1, "__reserved"));  /* label name */
    assert_null(hy_metric_gauge(m, "hypha_c", "C.", 2, "x", "x"));      /* repeated */
    assert_null(hy_metric_gauge(m, "hypha_c", "C.", HY_METRICS_MAX_LABELS + 1));
    assert_null(hy_metric_histogram(m, "hypha_c", "C.", good, 2, 1, "le")); /* reserved */
    assert_null(hy_metric_histogram(m, "hypha_c", "C.", unsorted, 2, 0));
    assert_null(hy_metric_histogram(m, "hypha_c", "C.", dup, 2, 0));
    assert_null(hy_metric_histogram(m, "hypha_c", "C.", nan, 1, 0));
    assert_null(hy_metric_histogram(m, "hypha_c", "C.", inf_first, 2, 0));
    assert_null(hy_metric_histogram(m, "hypha_c", "C.", NULL, 2, 0));
    assert_null(hy_metric_gauge_fn(m, "hypha_c", "C.", NULL, NULL));
    assert_null(hy_metric_counter(NULL, "hypha_d_total", "D.", 0));
    /* "le" is fine outside histograms, and colons in metric names */
    assert_non_null(hy_metric_gauge(m, "hypha:c", "C.", 1, "le"));
    /* nothing half-registered shows up */
    assert_render(m, "");
    /* NULL handles do nothing */
    assert_null(hy_metric_series(NULL));
    assert_null(hy_metric_series_v(NULL, NULL));
    hy_series_add(NULL, 1);
    hy_series_inc(NULL);
    hy_series_set(NULL, 1);
    hy_series_observe(NULL, 1);
    assert_true(hy_series_value(NULL) == 0);
    hy_metrics_free(m);
    hy_metrics_free(NULL);
}

static double revision_fn(void *arg)
{
    return (double)++*(int *)arg;
}

static void test_gauge_fn_and_order(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    int calls = 0;
    assert_non_null(hy_metric_gauge(m, "hypha_z_first", "Registered first.", 0));
    assert_non_null(hy_metric_counter(m, "hypha_b_empty_total", "No series.", 1, "x"));
    assert_non_null(hy_metric_gauge_fn(m, "hypha_global_store_revision", "Store revision.",
                                       revision_fn, &calls));
    assert_non_null(hy_metric_gauge(m, "hypha_a_last", "Registered last.", 0));
    assert_int_equal(calls, 0);
    assert_render(m, "# HELP hypha_z_first Registered first.\n"
                     "# TYPE hypha_z_first gauge\n"
                     "hypha_z_first 0\n"
                     "# HELP hypha_global_store_revision Store revision.\n"
                     "# TYPE hypha_global_store_revision gauge\n"
                     "hypha_global_store_revision 1\n"
                     "# HELP hypha_a_last Registered last.\n"
                     "# TYPE hypha_a_last gauge\n"
                     "hypha_a_last 0\n");
    char *out = render(m);
    assert_non_null(strstr(out, "hypha_global_store_revision 2\n"));
    free(out);
    /* render appends */
    struct hy_buf b = {0};
    hy_buf_puts(&b, "prefix\n");
    assert_int_equal(hy_metrics_render(m, &b), 0);
    assert_true(strncmp(b.data, "prefix\n# HELP hypha_z_first", 27) == 0);
    hy_buf_fini(&b);
    hy_metrics_free(m);
}

/* The value of the unlabelled sample name in text; NAN when absent. */
static double sample(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static void test_process(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    assert_int_equal(hy_metrics_add_process(m), 0);
    assert_int_equal(hy_metrics_add_process(m), HY_EEXIST);
    char *out = render(m);
    assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(out, "# TYPE process_resident_memory_bytes gauge\n"));
    assert_true(sample(out, "process_resident_memory_bytes") > 1e5);
    assert_true(sample(out, "process_virtual_memory_bytes") >=
                sample(out, "process_resident_memory_bytes"));
    assert_true(sample(out, "process_cpu_seconds_total") >= 0);
    assert_true(sample(out, "process_open_fds") >= 3);
    assert_true(sample(out, "process_max_fds") >= sample(out, "process_open_fds"));
    double start = sample(out, "process_start_time_seconds"), now = (double)time(NULL);
    assert_true(start > now - 3600 && start <= now + 1);
    free(out);
    hy_metrics_free(m);
}

struct worker {
    struct hy_metric *family;
    struct hy_series *counter, *gauge, *hist;
};

#define THREADS 4
#define ROUNDS 20000

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        hy_series_inc(w->counter);
        hy_series_add(w->counter, 0.5);
        hy_series_add(w->gauge, 1);
        hy_series_observe(w->hist, 0.25);
        if (i % 1000 == 0) {
            char route[16];
            snprintf(route, sizeof(route), "r%d", i / 1000);
            hy_series_inc(hy_metric_series(w->family, route));
        }
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    static const double bounds[] = {0.1, 1};
    struct worker w = {
        .family = hy_metric_counter(m, "hypha_test_routes_total", "Per route.", 1, "route"),
        .counter = hy_metric_series(hy_metric_counter(m, "hypha_test_ops_total", "Ops.", 0)),
        .gauge = hy_metric_series(hy_metric_gauge(m, "hypha_test_level", "Level.", 0)),
        .hist = hy_metric_series(
            hy_metric_histogram(m, "hypha_test_wait_seconds", "Wait.", bounds, 2, 0)),
    };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, work, &w), 0);
    for (int i = 0; i < 50; i++) { /* render while they run */
        char *out = render(m);
        free(out);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_true(hy_series_value(w.counter) == 1.5 * THREADS * ROUNDS);
    assert_true(hy_series_value(w.gauge) == THREADS * ROUNDS);
    assert_true(hy_series_value(w.hist) == THREADS * ROUNDS);
    for (int r = 0; r < ROUNDS / 1000; r++) {
        char route[16];
        snprintf(route, sizeof(route), "r%d", r);
        assert_true(hy_series_value(hy_metric_series(w.family, route)) == THREADS);
    }
    char *out = render(m);
    assert_non_null(strstr(out, "hypha_test_wait_seconds_bucket{le=\"1\"} 80000\n"));
    assert_non_null(strstr(out, "hypha_test_wait_seconds_sum 20000\n"));
    assert_non_null(strstr(out, "hypha_test_routes_total{route=\"r0\"} 4\n"
                                "hypha_test_routes_total{route=\"r1\"} 4\n"
                                "hypha_test_routes_total{route=\"r10\"} 4\n"));
    free(out);
    hy_metrics_free(m);
}

/* A registry with every kind of metric, for promtool. */
static int render_sample(void)
{
    struct hy_metrics *m = hy_metrics_new();
    static const double bounds[] = {0.001, 0.01, 0.1, 1, 10};
    int revision = 0;
    struct hy_metric *req =
        hy_metric_counter(m, "hypha_api_requests_total", "HTTP API requests by route and status.",
                          2, "route", "status");
    hy_series_add(hy_metric_series(req, "GET /meshes", "200"), 12);
    hy_series_inc(hy_metric_series(req, "PUT /meshes/{name}", "409"));
    hy_series_inc(hy_metric_series(req, "q\"u\\o\nte \xff", "500"));
    struct hy_metric *lat =
        hy_metric_histogram(m, "hypha_api_request_duration_seconds",
                            "HTTP API request latency in seconds.", bounds, 5, 1, "route");
    hy_series_observe(hy_metric_series(lat, "GET /meshes"), 0.004);
    hy_series_observe(hy_metric_series(lat, "GET /meshes"), 3);
    hy_series_set(hy_metric_series(hy_metric_gauge(m, "hypha_kds_zones_connected",
                                                   "Zones connected over KDS.", 1, "zone"),
                                   "east"),
                  1);
    hy_metric_gauge_fn(m, "hypha_global_store_revision", "Current store revision.", revision_fn,
                       &revision);
    hy_metric_counter(m, "hypha_kds_resets_total", "Never incremented: no series.", 1, "zone");
    hy_metrics_add_process(m);
    struct hy_buf b = {0};
    int rc = hy_metrics_render(m, &b);
    if (rc == 0)
        fwrite(b.data, 1, b.len, stdout);
    hy_buf_fini(&b);
    hy_metrics_free(m);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--render") == 0)
        return render_sample();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_labels_order_and_escaping),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_registration_errors),
        cmocka_unit_test(test_gauge_fn_and_order),
        cmocka_unit_test(test_process),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
