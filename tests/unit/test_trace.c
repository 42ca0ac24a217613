/* The sidecar's tracing (sidecar/trace*.c): W3C traceparent and B3 parsed
 * strictly (hostile inputs refused, never half-read), Kuma's sampling
 * decisions, a request's context continued and written back for the next
 * hop, the spans as Zipkin v2 JSON and OTLP protobuf (decoded back with
 * the schema), and the writer's bounded queue counting what it drops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "json.h"
#include "metrics.h"
#include "otlp_trace.pb-c.h"
#include "trace.h"
#include "trace_int.h"
#include "poison.h"

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static void traceparent(void **state)
{
    (void)state;
    struct hy_trace_in in;
    assert_true(hy_trace_parse_traceparent(TP, &in));
    assert_int_equal(in.fmt, HY_TRACE_W3C);
    assert_true(in.id128);
    assert_int_equal(in.sampled, 1);
    assert_int_equal(in.trace_id[0], 0x0a);
    assert_int_equal(in.span_id[7], 0x31);
    assert_true(
        hy_trace_parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", &in));
    assert_int_equal(in.sampled, 0);
    /* a later version may carry more after a dash */
    assert_true(hy_trace_parse_traceparent(
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever", &in));
    /* a 64-bit id in W3C's 128 bits */
    assert_true(
        hy_trace_parse_traceparent("00-00000000000000008448eb211c80319c-b7ad6b7169203331-01", &in));
    assert_false(in.id128);
    static const char *const bad[] = {
        "",
        "00",
        "garbage",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  /* version ff */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", /* 00 is exactly 55 */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  /* zero trace id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  /* zero span id */
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  /* uppercase */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",   /* short */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", /* later: a dash after */
        "0x-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        memset(&in, 0x5a, sizeof(in));
        if (hy_trace_parse_traceparent(bad[i], &in))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(hy_trace_parse_traceparent(NULL, &in));
}

static void b3(void **state)
{
    (void)state;
    struct hy_trace_in in;
    assert_true(hy_trace_parse_b3(
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", &in));
    assert_int_equal(in.fmt, HY_TRACE_B3_SINGLE);
    assert_true(in.id128 && in.has_parent);
    assert_int_equal(in.sampled, 1);
    assert_int_equal(in.parent_id[0], 0x05);
    assert_true(hy_trace_parse_b3("a3ce929d0e0e4736-00f067aa0ba902b7", &in));
    assert_false(in.id128);
    assert_int_equal(in.sampled, -1);
    assert_int_equal(in.trace_id[8], 0xa3);
    assert_true(hy_trace_parse_b3("a3ce929d0e0e4736-00f067aa0ba902b7-d", &in));
    assert_int_equal(in.sampled, 1);
    assert_true(hy_trace_parse_b3("0", &in));
    assert_int_equal(in.fmt, HY_TRACE_NONE);
    assert_int_equal(in.sampled, 0);
    static const char *const bad[] = {
        "",
        "-",
        "2",
        "a3ce929d0e0e4736",
        "a3ce929d0e0e4736-",
        "-00f067aa0ba902b7",
        "a3ce929d0e0e4736-00f067aa0ba902b7-",
        "a3ce929d0e0e4736-00f067aa0ba902b7-2",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-0",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90-x",
        "a3ce929d0e0e473-00f067aa0ba902b7",
        "0000000000000000-00f067aa0ba902b7",
        "a3ce929d0e0e4736-0000000000000000",
        "A3CE929D0E0E4736-00f067aa0ba902b7",
        "a3ce929d0e0e4736a3ce929d0e0e4736a3-00f067aa0ba902b7",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (hy_trace_parse_b3(bad[i], &in))
            fail_msg("accepted \"%s\"", bad[i]);
    /* multi */
    assert_true(hy_trace_parse_b3_multi("463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312",
                                        "0020000000000001", "1", NULL, &in));
    assert_int_equal(in.fmt, HY_TRACE_B3_MULTI);
    assert_true(in.has_parent && in.id128);
    assert_int_equal(in.sampled, 1);
    assert_true(hy_trace_parse_b3_multi(NULL, NULL, NULL, "0", NULL, &in));
    assert_int_equal(in.fmt, HY_TRACE_NONE);
    assert_int_equal(in.sampled, 0);
    assert_true(
        hy_trace_parse_b3_multi("463ac35c9f6413ad", "a2fb4a1d1a96d312", NULL, "false", "1", &in));
    assert_int_equal(in.sampled, 1); /* debug wins */
    assert_false(hy_trace_parse_b3_multi("463ac35c9f6413ad", NULL, NULL, NULL, NULL, &in));
    assert_false(hy_trace_parse_b3_multi(NULL, "a2fb4a1d1a96d312", NULL, NULL, NULL, &in));
    assert_false(
        hy_trace_parse_b3_multi("463ac35c9f6413ad", "a2fb4a1d1a96d312", NULL, "yes", NULL, &in));
    assert_false(
        hy_trace_parse_b3_multi("463ac35c9f6413ad", "a2fb4a1d1a96d312", "zz", NULL, NULL, &in));
    assert_false(hy_trace_parse_b3_multi(NULL, NULL, NULL, NULL, NULL, &in));
}

static void add(struct hy_http_head *h, const char *n, const char *v)
{
    assert_int_equal(hy_http_head_add(h, n, strlen(n), v, strlen(v)), 0);
}

static void extract(void **state)
{
    (void)state;
    struct hy_http_head h = {.request = true};
    struct hy_trace_in in;
    hy_trace_extract(&h, &in);
    assert_int_equal(in.fmt, HY_TRACE_NONE);
    assert_int_equal(in.sampled, -1);
    /* a bad traceparent counts as absent; B3 is read then */
    add(&h, "Traceparent", "00-nonsense");
    add(&h, "X-B3-TraceId", "463ac35c9f6413ad");
    add(&h, "X-B3-SpanId", "a2fb4a1d1a96d312");
    hy_trace_extract(&h, &in);
    assert_int_equal(in.fmt, HY_TRACE_B3_MULTI);
    hy_http_head_fini(&h);
    /* traceparent first; B3 of the same span gives its parent */
    h = (struct hy_http_head){.request = true};
    add(&h, "traceparent", TP);
    add(&h, "x-b3-traceid", "0af7651916cd43dd8448eb211c80319c");
    add(&h, "x-b3-spanid", "b7ad6b7169203331");
    add(&h, "x-b3-parentspanid", "1111111111111111");
    hy_trace_extract(&h, &in);
    assert_int_equal(in.fmt, HY_TRACE_W3C);
    assert_true(in.has_parent);
    assert_int_equal(in.parent_id[0], 0x11);
    hy_http_head_fini(&h);
}

static void decide(void **state)
{
    (void)state;
    Hypha__V1__DpTrace t = HYPHA__V1__DP_TRACE__INIT;
    struct hy_trace_in none = {.sampled = -1}, yes = {.sampled = 1}, no = {.sampled = 0};
    /* defaults: everything */
    for (uint64_t r = 1; r < 1000; r++)
        assert_true(hy_trace_decide(&t, &none, false, r * 0x9e3779b97f4a7c15u));
    t.has_random = 1;
    t.random = 0;
    t.has_client = 1;
    t.client = 1000000;
    /* random 0: only a client's x-client-trace-id gets traced */
    assert_false(hy_trace_decide(&t, &none, false, 42));
    assert_true(hy_trace_decide(&t, &none, true, 42));
    /* a decision that came is kept, whatever the rates */
    assert_true(hy_trace_decide(&t, &yes, false, 42));
    t.random = 1000000;
    assert_false(hy_trace_decide(&t, &no, false, 42));
    /* overall caps the rest */
    t.has_overall = 1;
    t.overall = 0;
    assert_false(hy_trace_decide(&t, &none, true, 42));
    /* random 10 %: about a tenth of 100000 draws */
    t.overall = 1000000;
    t.random = 100000;
    unsigned n = 0;
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n += hy_trace_decide(&t, &none, false, x);
    }
    assert_in_range(n, 9500, 10500);
    /* overall 50 % over random 20 %: about 10 % */
    t.overall = 500000;
    t.random = 200000;
    n = 0;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n += hy_trace_decide(&t, &none, false, x);
    }
    assert_in_range(n, 9500, 10500);
}

static void begin(void **state)
{
    (void)state;
    Hypha__V1__DpTrace t = HYPHA__V1__DP_TRACE__INIT;
    struct hy_http_head h = {.request = true};
    struct hy_trace_ctx c;
    /* no MeshTrace: nothing happens */
    assert_int_equal(hy_trace_begin(&c, NULL, HY_TRACE_CLIENT, &h, 1), 0);
    assert_false(c.on);
    assert_int_equal(h.n, 0);
    /* a new trace (64-bit by default), B3 multi and traceparent written */
    assert_int_equal(hy_trace_begin(&c, &t, HY_TRACE_CLIENT, &h, 7), 0);
    assert_true(c.on && c.sampled && !c.has_parent && !c.id128);
    char tp[64], id[17];
    hy_trace_traceparent(&c, tp, sizeof(tp));
    assert_string_equal(hy_http_head_get(&h, "traceparent"), tp);
    assert_memory_equal(tp + 3, "0000000000000000", 16);
    hy_trace_hex(c.span_id, 8, id);
    assert_string_equal(hy_http_head_get(&h, "x-b3-spanid"), id);
    assert_int_equal(strlen(hy_http_head_get(&h, "x-b3-traceid")), 16);
    assert_string_equal(hy_http_head_get(&h, "x-b3-sampled"), "1");
    /* the next hop (a server, W3C: a span of its own) continues it */
    struct hy_trace_ctx s;
    t.type = "OpenTelemetry";
    assert_int_equal(hy_trace_begin(&s, &t, HY_TRACE_SERVER, &h, 8), 0);
    assert_memory_equal(s.trace_id, c.trace_id, 16);
    assert_true(s.has_parent);
    assert_memory_equal(s.parent_id, c.span_id, 8);
    assert_memory_not_equal(s.span_id, c.span_id, 8);
    assert_int_equal(hy_http_head_remove(&h, "traceparent"), 1); /* one, replaced */
    /* Zipkin's shared span: the server takes its client's id and parent */
    t.type = "Zipkin";
    t.has_shared_span_context = t.shared_span_context = 1;
    hy_http_head_fini(&h);
    h = (struct hy_http_head){.request = true};
    add(&h, "b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90");
    assert_int_equal(hy_trace_begin(&s, &t, HY_TRACE_SERVER, &h, 9), 0);
    assert_true(s.shared && !s.sampled && s.id128 && s.has_parent);
    assert_int_equal(s.span_id[0], 0xe4);
    assert_int_equal(s.parent_id[0], 0x05);
    /* answered in kind: b3, no x-b3-* */
    assert_string_equal(hy_http_head_get(&h, "b3"),
                        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90");
    assert_null(hy_http_head_get(&h, "x-b3-traceid"));
    assert_string_equal(hy_http_head_get(&h, "traceparent"),
                        "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-00");
    hy_http_head_fini(&h);
    /* 128-bit ids for new traces when asked */
    t.has_trace_id128bit = t.trace_id128bit = 1;
    h = (struct hy_http_head){.request = true};
    assert_int_equal(hy_trace_begin(&c, &t, HY_TRACE_CLIENT, &h, 10), 0);
    assert_true(c.id128);
    assert_int_equal(strlen(hy_http_head_get(&h, "x-b3-traceid")), 32);
    hy_http_head_fini(&h);
}

static struct hy_trace_span *sample_span(bool client, const char *service)
{
    struct hy_trace_ctx c = {.on = true,
                             .sampled = true,
                             .id128 = true,
                             .has_parent = !client,
                             .kind = client ? HY_TRACE_CLIENT : HY_TRACE_SERVER,
                             .start_us = 1700000000000000};
    for (int i = 0; i < 16; i++)
        c.trace_id[i] = (uint8_t)(i + 1);
    for (int i = 0; i < 8; i++)
        c.span_id[i] = (uint8_t)(0xa0 + i), c.parent_id[i] = (uint8_t)(0xb0 + i);
    const char *k[] = {"http.method", "empty", "weird", "http.status_code"};
    const char *v[] = {"GET", "", "a\"b\\c\x01\xff", "200"};
    return hy_trace_span_new(&c, c.start_us + 1500, false, "backend", service,
                             client ? "backend" : NULL, k, v, 4);
}

static void zipkin(void **state)
{
    (void)state;
    struct hy_trace_span *v[2] = {sample_span(true, "web"), sample_span(false, "web")};
    assert_int_equal(v[0]->ntags, 3); /* the empty one left out */
    struct hy_buf b = {0};
    assert_int_equal(hy_trace_zipkin_json(&b, v, 2), 0);
    struct hy_json *j = NULL;
    char err[200];
    if (hy_json_parse(b.data, b.len, &j, err, sizeof(err)) != 0)
        fail_msg("not JSON: %s: %s", err, b.data);
    assert_int_equal(j->n, 2);
    const struct hy_json *s = j->items[0];
    assert_string_equal(hy_json_get_str(s, "traceId"), "0102030405060708090a0b0c0d0e0f10");
    assert_string_equal(hy_json_get_str(s, "id"), "a0a1a2a3a4a5a6a7");
    assert_null(hy_json_get(s, "parentId"));
    assert_string_equal(hy_json_get_str(s, "kind"), "CLIENT");
    assert_string_equal(hy_json_get_str(hy_json_get(s, "localEndpoint"), "serviceName"), "web");
    assert_string_equal(hy_json_get_str(hy_json_get(s, "remoteEndpoint"), "serviceName"),
                        "backend");
    assert_string_equal(hy_json_get_str(hy_json_get(s, "tags"), "weird"), "a\"b\\c??");
    assert_string_equal(hy_json_get_str(j->items[1], "parentId"), "b0b1b2b3b4b5b6b7");
    assert_non_null(strstr(b.data, "\"duration\":1500"));
    hy_json_free(j);
    hy_buf_fini(&b);
    free(v[0]);
    free(v[1]);
}

static void otlp(void **state)
{
    (void)state;
    struct hy_trace_span *v[3] = {sample_span(true, "web"), sample_span(false, "web"),
                                  sample_span(false, "other")};
    struct hy_buf b = {0};
    assert_int_equal(hy_trace_otlp(&b, v, 3), 0);
    Hypha__Otlp__ExportTraceServiceRequest *r =
        hypha__otlp__export_trace_service_request__unpack(NULL, b.len, (uint8_t *)b.data);
    assert_non_null(r);
    assert_int_equal(r->n_resource_spans, 2); /* a run per service */
    const Hypha__Otlp__ResourceSpans *rs = r->resource_spans[0];
    assert_string_equal(rs->resource->attributes[0]->key, "service.name");
    assert_string_equal(rs->resource->attributes[0]->value->string_value, "web");
    assert_int_equal(rs->scope_spans[0]->n_spans, 2);
    const Hypha__Otlp__Span *s = rs->scope_spans[0]->spans[0];
    assert_int_equal(s->trace_id.len, 16);
    assert_int_equal(s->span_id.len, 8);
    assert_int_equal(s->parent_span_id.len, 0);
    assert_int_equal(s->kind, HYPHA__OTLP__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
    assert_int_equal(s->end_time_unix_nano - s->start_time_unix_nano, 1500000);
    assert_int_equal(s->n_attributes, 3);
    assert_int_equal(rs->scope_spans[0]->spans[1]->parent_span_id.len, 8);
    assert_string_equal(r->resource_spans[1]->resource->attributes[0]->value->string_value,
                        "other");
    hypha__otlp__export_trace_service_request__free_unpacked(r, NULL);
    hy_buf_fini(&b);
    for (int i = 0; i < 3; i++)
        free(v[i]);
}

static double value_of(struct hy_metrics *m, const char *series)
{
    struct hy_buf b = {0};
    assert_int_equal(hy_metrics_render(m, &b), 0);
    const char *p = strstr(b.data, series);
    double v = p ? atof(p + strlen(series)) : -1;
    hy_buf_fini(&b);
    return v;
}

/* A collector nobody listens on: queueing never blocks, the queue's bound
 * holds, and what does not fit or cannot go is counted. */
static void writer_bounded(void **state)
{
    (void)state;
    struct hy_metrics *m = hy_metrics_new();
    struct hy_trace *t;
    assert_int_equal(hy_trace_new(m, &t), 0);
    Hypha__V1__DpTrace conf = HYPHA__V1__DP_TRACE__INIT;
    conf.type = "Zipkin";
    conf.url = "http://127.0.0.1:1/api/v2/spans";
    for (int i = 0; i < HY_TRACE_QUEUE_SPANS + 2000; i++)
        hy_trace_queue(t, &conf, sample_span(true, "web"));
    assert_true(value_of(m, "hypha_dp_trace_spans_dropped_total{reason=\"queue_full\"} ") >= 1000);
    for (int i = 0;
         i < 200 && value_of(m, "hypha_dp_trace_spans_dropped_total{reason=\"send_failed\"} ") < 1;
         i++)
        usleep(50000);
    assert_true(value_of(m, "hypha_dp_trace_spans_dropped_total{reason=\"send_failed\"} ") >= 1);
    hy_trace_free(t); /* frees what is still queued (ASan: no leak) */
    hy_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(traceparent), cmocka_unit_test(b3),
        cmocka_unit_test(extract),     cmocka_unit_test(decide),
        cmocka_unit_test(begin),       cmocka_unit_test(zipkin),
        cmocka_unit_test(otlp),        cmocka_unit_test(writer_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
