/* The access-log format language (common/alog_fmt.c): operators render
 * what a record holds, a missing value is "-" (plain), null (json) or
 * nothing (omitEmptyValues), JSON is escaped, Kuma's defaults render, and
 * a bad format is refused naming what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "alog_fmt.h"
#include "buf.h"
#include "poison.h"

static const char *hdr(const void *ud, bool response, const char *name)
{
    (void)ud;
    if (!response && !strcasecmp(name, "user-agent"))
        return "curl/8.0";
    if (!response && !strcasecmp(name, "x-quote"))
        return "say \"hi\"\\\n\x01";
    return NULL;
}

static struct hy_alog_rec http_rec(void)
{
    return (struct hy_alog_rec){
        .http = true,
        .inbound = false,
        .start_us = 1460751420310123, /* 2016-04-15T20:17:00.310123Z */
        .duration_ms = 12,
        .upstream_ms = 7,
        .status = 201,
        .mesh = "default",
        .src_service = "web",
        .dst_service = "backend",
        .src_addr = "10.0.0.1:5000",
        .upstream_host = "10.0.0.2:8080",
        .upstream_cluster = "backend",
        .downstream_remote = "127.0.0.1:40000",
        .downstream_local = "127.0.0.1:10001",
        .protocol = "HTTP/1.1",
        .flags = "-",
        .details = "ok",
        .method = "POST",
        .path = "/a?b=c",
        .authority = "backend.mesh",
        .scheme = "http",
        .header = hdr,
    };
}

/* f rendered for r, into a static buffer without the newline. */
static const char *render(struct hy_alog_fmt *f, const struct hy_alog_rec *r)
{
    static char out[4096];
    struct hy_buf b = {0};
    assert_int_equal(hy_alog_fmt_render(f, r, &b), 0);
    assert_true(b.len > 0 && b.data[b.len - 1] == '\n');
    snprintf(out, sizeof(out), "%.*s", (int)b.len - 1, b.data);
    hy_buf_fini(&b);
    return out;
}

static const char *plain(const char *tmpl, const struct hy_alog_rec *r, bool omit)
{
    char err[256];
    struct hy_alog_fmt *f = hy_alog_fmt_new();
    assert_non_null(f);
    if (hy_alog_fmt_plain(f, tmpl, err, sizeof(err)) != 0)
        fail_msg("%s: %s", tmpl, err);
    hy_alog_fmt_omit_empty(f, omit);
    const char *out = render(f, r);
    hy_alog_fmt_free(f);
    return out;
}

static void operators(void **state)
{
    (void)state;
    struct hy_alog_rec r = http_rec();
    assert_string_equal(
        plain("%KUMA_MESH% %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE%", &r, false),
        "default web->backend");
    assert_string_equal(
        plain("%KUMA_SOURCE_ADDRESS% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", &r, false),
        "10.0.0.1:5000 10.0.0.1");
    assert_string_equal(plain("%KUMA_TRAFFIC_DIRECTION%", &r, false), "OUTBOUND");
    assert_string_equal(plain("%START_TIME%", &r, false), "2016-04-15T20:17:00.310Z");
    assert_string_equal(plain("%START_TIME(%Y/%m/%d %s.%3f|%6f|%f)%", &r, false),
                        "2016/04/15 1460751420.310|310123|310123000");
    assert_string_equal(
        plain("%RESPONSE_CODE% %DURATION% %RESPONSE_DURATION% %RESPONSE_FLAGS%", &r, false),
        "201 12 7 -");
    assert_string_equal(plain("%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %PROTOCOL%", &r, false),
                        "10.0.0.2:8080 backend HTTP/1.1");
    assert_string_equal(
        plain("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS%", &r, false),
        "127.0.0.1 127.0.0.1:10001");
    assert_string_equal(
        plain("%REQ(:METHOD)% %REQ(:PATH)% %REQ(:AUTHORITY)% %REQ(USER-AGENT)%", &r, false),
        "POST /a?b=c backend.mesh curl/8.0");
    assert_string_equal(
        plain("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(X-NONE?USER-AGENT)%", &r, false),
        "/a?b=c curl/8.0");
    assert_string_equal(
        plain("%REQ(USER-AGENT):4% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", &r, false), "curl 7");
    assert_string_equal(plain("100%% %RESPONSE_CODE_DETAILS%", &r, false), "100% ok");
    /* bytes not known (HTTP): "-"; a missing header: "-", or "" with omitEmptyValues */
    assert_string_equal(plain("[%BYTES_SENT%] [%REQ(X-NONE)%] [%RESP(X-NONE)%]", &r, false),
                        "[-] [-] [-]");
    assert_string_equal(plain("[%BYTES_SENT%] [%REQ(X-NONE)%]", &r, true), "[] []");
}

static void tcp_default(void **state)
{
    (void)state;
    struct hy_alog_rec r = http_rec();
    r.http = false;
    r.status = 0;
    r.inbound = true;
    r.has_bytes = true;
    r.bytes_sent = 5;
    r.bytes_received = 7;
    r.flags = hy_alog_flags_of("upstream_failed");
    struct hy_alog_fmt *f = hy_alog_fmt_new();
    assert_string_equal(
        render(f, &r),
        "[2016-04-15T20:17:00.310Z] UF default 10.0.0.1(web)->10.0.0.2:8080(backend) "
        "took 12ms, sent 5 bytes, received: 7 bytes");
    /* HTTP operators on TCP traffic: "-" */
    char err[256];
    assert_int_equal(
        hy_alog_fmt_plain(f, "%REQ(:METHOD)% %RESPONSE_CODE% %PROTOCOL%", err, sizeof(err)), 0);
    assert_string_equal(render(f, &r), "- - -");
    hy_alog_fmt_free(f);
}

static void http_default(void **state)
{
    (void)state;
    struct hy_alog_rec r = http_rec();
    struct hy_alog_fmt *f = hy_alog_fmt_new();
    assert_string_equal(
        render(f, &r), "[2016-04-15T20:17:00.310Z] default \"POST /a?b=c HTTP/1.1\" 201 - - - 12 7 "
                       "\"-\" \"curl/8.0\" \"-\" \"backend.mesh\" \"web\" \"backend\" \"10.0.0.1\" "
                       "\"10.0.0.2:8080\"");
    hy_alog_fmt_free(f);
}

static void json(void **state)
{
    (void)state;
    struct hy_alog_rec r = http_rec();
    char err[256];
    struct hy_alog_fmt *f = hy_alog_fmt_new();
    assert_int_equal(hy_alog_fmt_json_add(f, "method", "%REQ(:METHOD)%", err, sizeof(err)), 0);
    assert_int_equal(hy_alog_fmt_json_add(f, "q\"k", "\"%REQ(X-QUOTE)%\"", err, sizeof(err)), 0);
    assert_int_equal(hy_alog_fmt_json_add(f, "none", "%REQ(X-NONE)%", err, sizeof(err)), 0);
    assert_int_equal(hy_alog_fmt_json_add(f, "mixed", "a %REQ(X-NONE)% b", err, sizeof(err)), 0);
    assert_int_equal(hy_alog_fmt_json_add(f, "code", "%RESPONSE_CODE%", err, sizeof(err)), 0);
    assert_string_equal(render(f, &r),
                        "{\"method\":\"POST\",\"q\\\"k\":\"\\\"say \\\"hi\\\"\\\\\\n\\u0001\\\"\","
                        "\"none\":null,\"mixed\":\"a - b\",\"code\":\"201\"}");
    hy_alog_fmt_omit_empty(f, true);
    assert_string_equal(render(f, &r),
                        "{\"method\":\"POST\",\"q\\\"k\":\"\\\"say \\\"hi\\\"\\\\\\n\\u0001\\\"\","
                        "\"mixed\":\"a  b\",\"code\":\"201\"}");
    hy_alog_fmt_free(f);
}

static void refused(const char *tmpl, const char *want)
{
    char err[256] = "";
    if (hy_alog_fmt_check(tmpl, err, sizeof(err)) == 0)
        fail_msg("%s: accepted", tmpl);
    if (!strstr(err, want))
        fail_msg("%s: expected \"%s\" in \"%s\"", tmpl, want, err);
}

static void errors(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hy_alog_fmt_check("plain text, no operators", err, sizeof(err)), 0);
    assert_int_equal(hy_alog_fmt_check("", err, sizeof(err)), 0);
    refused("%START_TIME% %FOO_BAR%", "unknown command operator %FOO_BAR% at offset 13");
    refused("%DOWNSTREAM_TLS_CIPHER%", "unknown command operator %DOWNSTREAM_TLS_CIPHER%");
    refused("%KUMA_MESH", "command operator %KUMA_MESH at offset 0 is not closed");
    refused("50% off", "'%' at offset 2 does not start a command operator");
    refused("%REQ%", "%REQ% at offset 0 needs a header");
    refused("%REQ()%", "a header name");
    refused("%REQ(a b)%", "a header name");
    refused("%REQ(X-A?)%", "a header name");
    refused("%REQ(X-A%", "has no closing ')'");
    refused("%DURATION(x)%", "%DURATION% takes no argument");
    refused("%REQ(X-A):0%", "':' must be followed by a length");
    refused("%REQ(X-A):x%", "':' must be followed by a length");
    char big[HY_ALOG_FMT_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    refused(big, "more than");
    /* a failed plain keeps the format it had */
    struct hy_alog_fmt *f = hy_alog_fmt_new();
    assert_int_equal(hy_alog_fmt_plain(f, "%KUMA_MESH%", err, sizeof(err)), 0);
    assert_int_not_equal(hy_alog_fmt_plain(f, "%NOPE%", err, sizeof(err)), 0);
    struct hy_alog_rec r = http_rec();
    assert_string_equal(render(f, &r), "default");
    assert_int_not_equal(hy_alog_fmt_json_add(f, "k", "%NOPE%", err, sizeof(err)), 0);
    assert_string_equal(render(f, &r), "default");
    hy_alog_fmt_free(f);
}

static void flags(void **state)
{
    (void)state;
    assert_string_equal(hy_alog_flags_of("ok"), "-");
    assert_string_equal(hy_alog_flags_of(NULL), "-");
    assert_string_equal(hy_alog_flags_of("no_endpoints"), "UH");
    assert_string_equal(hy_alog_flags_of("rate_limited"), "RL");
    assert_string_equal(hy_alog_flags_of("downstream_closed"), "DC");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(operators), cmocka_unit_test(tcp_default), cmocka_unit_test(http_default),
        cmocka_unit_test(json),      cmocka_unit_test(errors),      cmocka_unit_test(flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
