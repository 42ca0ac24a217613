/* The L7 policies as users write them: MeshHTTPRoute, MeshTCPRoute,
 * MeshFaultInjection and MeshRateLimit from Kuma's docs load and validate
 * (universal and Kubernetes shapes), the mistakes Kuma refuses are
 * refused with the field path, and the fields the sidecar does not
 * enforce draw a warning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "diag.h"
#include "policy.h"
#include "validate.h"
#include "poison.h"

/* Decodes and validates yaml (one document); the causes joined by '\n'
 * into out ("" when valid). */
static void check(const char *yaml, char *out, size_t size)
{
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "t.yaml"};
    int rc = hy_codec_decode_resources("t.yaml", yaml, strlen(yaml), NULL, &docs, &d);
    if (rc == 0)
        hy_docs_validate(&docs, &d);
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d.n && at < size; i++) {
        char line[512];
        at += (size_t)snprintf(out + at, size - at, "%s%s", i ? "\n" : "",
                               hy_diag_format(&d, i, line, sizeof(line)));
    }
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
}

static void valid(const char *yaml)
{
    char out[4096];
    check(yaml, out, sizeof(out));
    if (out[0])
        fail_msg("expected valid, got:\n%s", out);
}

/* yaml is refused, one cause containing want. */
static void refused(const char *yaml, const char *want)
{
    char out[4096];
    check(yaml, out, sizeof(out));
    if (!strstr(out, want))
        fail_msg("expected \"%s\" in:\n%s", want, out);
}

#define ROUTE                                                                                      \
    "type: MeshHTTPRoute\nmesh: default\nname: r\nspec:\n  targetRef: {kind: Mesh}\n  to:\n"       \
    "    - targetRef: {kind: MeshService, name: backend}\n      rules:\n"

/* Kuma's docs, "MeshHTTPRoute": a traffic split by header and weights. */
static void http_route_good(void **state)
{
    (void)state;
    valid(ROUTE "        - matches:\n"
                "            - path: {type: PathPrefix, value: /}\n"
                "              headers: [{type: Exact, name: version, value: v2}]\n"
                "          default:\n"
                "            backendRefs:\n"
                "              - {kind: MeshServiceSubset, name: backend, tags: {version: v1}, "
                "weight: 90}\n"
                "              - {kind: MeshServiceSubset, name: backend, tags: {version: v2}, "
                "weight: 10}\n"
                "        - matches: [{path: {type: Exact, value: /old}, method: GET}]\n"
                "          default:\n"
                "            filters:\n"
                "              - type: RequestRedirect\n"
                "                requestRedirect: {scheme: https, hostname: example.com, "
                "statusCode: 301,\n"
                "                  path: {type: ReplaceFullPath, replaceFullPath: /new}}\n"
                "        - matches: [{path: {type: PathPrefix, value: /v1}, queryParams: [{type: "
                "RegularExpression, name: q, value: '^a+$'}]}]\n"
                "          default:\n"
                "            filters:\n"
                "              - type: URLRewrite\n"
                "                urlRewrite: {path: {type: ReplacePrefixMatch, "
                "replacePrefixMatch: /v2}}\n"
                "              - type: RequestMirror\n"
                "                requestMirror: {backendRef: {kind: MeshService, name: shadow}, "
                "percentage: '12.5'}\n"
                "              - type: ResponseHeaderModifier\n"
                "                responseHeaderModifier: {add: [{name: x-a, value: b}], remove: "
                "[server]}\n");
    /* the Kubernetes shape */
    valid("apiVersion: kuma.io/v1alpha1\nkind: MeshHTTPRoute\nmetadata:\n  name: http-route-1\n"
          "  namespace: kuma-system\n  labels: {kuma.io/mesh: default}\nspec:\n"
          "  targetRef: {kind: MeshService, name: frontend}\n  to:\n"
          "    - targetRef: {kind: MeshService, name: backend}\n      rules:\n"
          "        - matches: [{path: {type: PathPrefix, value: /api}}]\n"
          "          default: {backendRefs: [{kind: MeshService, name: backend-v2}]}\n");
}

static void http_route_bad(void **state)
{
    (void)state;
    refused("type: MeshHTTPRoute\nmesh: default\nname: r\nspec: {targetRef: {kind: Mesh}}\n",
            "spec.to: at least one entry is required");
    refused(ROUTE "        - default: {backendRefs: [{kind: MeshService, name: b}]}\n",
            "spec.to[0].rules[0].matches: at least one match is required");
    refused(ROUTE "        - matches: [{path: {type: PathPrefix, value: api}}]\n"
                  "          default: {}\n",
            "spec.to[0].rules[0].matches[0].path.value: must be an absolute path");
    refused(ROUTE "        - matches: [{path: {type: PathPrefix, value: /api/}}]\n"
                  "          default: {}\n",
            "spec.to[0].rules[0].matches[0].path.value: does not need a trailing slash");
    refused(ROUTE
            "        - matches: [{path: {type: Prefix, value: /api}}]\n          default: {}\n",
            "spec.to[0].rules[0].matches[0].path.type: \"Prefix\" is not a path match type");
    refused(ROUTE "        - matches: [{path: {type: RegularExpression, value: '(a'}}]\n"
                  "          default: {}\n",
            "spec.to[0].rules[0].matches[0].path.value: not a regular expression");
    refused(ROUTE "        - matches: [{method: FETCH}]\n          default: {}\n",
            "spec.to[0].rules[0].matches[0].method: \"FETCH\" is not a method");
    refused(ROUTE "        - matches: [{headers: [{type: Present, name: x, value: y}]}]\n"
                  "          default: {}\n",
            "spec.to[0].rules[0].matches[0].headers[0].value: must not be defined when type is "
            "Present");
    refused(ROUTE "        - matches: [{queryParams: [{type: Exact, name: a, value: '1'}, {type: "
                  "Exact, name: a, value: '2'}]}]\n          default: {}\n",
            "spec.to[0].rules[0].matches[0].queryParams[1].name: multiple entries for name a");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default:\n            filters:\n"
                  "              - type: URLRewrite\n"
                  "                urlRewrite: {path: {type: ReplacePrefixMatch, "
                  "replacePrefixMatch: /b}}\n",
            "spec.to[0].rules[0].default.filters[0].urlRewrite.path.replacePrefixMatch: can only "
            "appear if all matches match a path prefix");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {filters: [{type: RequestHeaderModifier}]}\n",
            "spec.to[0].rules[0].default.filters[0].requestHeaderModifier: must be defined");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {filters: [{type: RequestHeaderModifier, "
                  "requestHeaderModifier: {set: [{name: x, value: '1'}], remove: [X]}}]}\n",
            "spec.to[0].rules[0].default.filters[0].requestHeaderModifier.remove[0]: duplicate "
            "header name");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {filters: [{type: RequestRedirect, requestRedirect: "
                  "{statusCode: 304}}]}\n",
            "spec.to[0].rules[0].default.filters[0].requestRedirect.statusCode: 304: expected "
            "301, 302, 303, 307 or 308");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {filters: [{type: RequestRedirect, requestRedirect: "
                  "{hostname: 10.0.0.1}}]}\n",
            "spec.to[0].rules[0].default.filters[0].requestRedirect.hostname: cannot be an IP "
            "address");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {filters: [{type: RequestMirror, requestMirror: "
                  "{backendRef: {kind: MeshService, name: s}, percentage: 150}}]}\n",
            "spec.to[0].rules[0].default.filters[0].requestMirror.percentage: \"150\" must be a "
            "number in the inclusive range [0, 100]");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {backendRefs: [{kind: Mesh}]}\n",
            "spec.to[0].rules[0].default.backendRefs[0].kind: Mesh is not allowed here");
    refused(ROUTE "        - matches: [{path: {type: Exact, value: /a}}]\n"
                  "          default: {backendRefs: [{kind: MeshService}]}\n",
            "spec.to[0].rules[0].default.backendRefs[0].name: required");
    refused("type: MeshHTTPRoute\nmesh: default\nname: r\nspec:\n  to:\n"
            "    - targetRef: {kind: Mesh}\n      rules: []\n",
            "spec.to[0].targetRef.kind: Mesh is not allowed here (expected MeshService)");
    refused("type: MeshHTTPRoute\nmesh: default\nname: r\nspec:\n  to:\n"
            "    - targetRef: {kind: MeshService, name: b}\n      hostnames: [example.com]\n",
            "spec.to[0].hostnames: must not be defined");
}

#define TCP                                                                                        \
    "type: MeshTCPRoute\nmesh: default\nname: t\nspec:\n  targetRef: {kind: Mesh}\n  to:\n"        \
    "    - targetRef: {kind: MeshService, name: redis}\n      rules:\n"

/* Kuma's docs, "MeshTCPRoute": a traffic split. */
static void tcp_route(void **state)
{
    (void)state;
    valid(TCP "        - default:\n            backendRefs:\n"
              "              - {kind: MeshServiceSubset, name: redis, tags: {version: '1.0'}, "
              "weight: 90}\n"
              "              - {kind: MeshServiceSubset, name: redis, tags: {version: '2.0'}, "
              "weight: 10}\n");
    refused(TCP "        - default: {}\n",
            "spec.to[0].rules[0].default.backendRefs: must be defined");
    refused(TCP "        - default: {backendRefs: [{kind: MeshService, name: a}]}\n"
                "        - default: {backendRefs: [{kind: MeshService, name: b}]}\n",
            "spec.to[0].rules: at most one rule");
    refused(TCP "        - default: {backendRefs: [{kind: MeshService, name: a, tags: {v: "
                "'1'}}]}\n",
            "spec.to[0].rules[0].default.backendRefs[0].tags: must be empty when kind is "
            "MeshService");
    refused(TCP "        - default: {backendRefs: [{kind: MeshService, name: a, port: 70000}]}\n",
            "spec.to[0].rules[0].default.backendRefs[0].port: 70000 is not a port");
}

#define FAULT                                                                                      \
    "type: MeshFaultInjection\nmesh: default\nname: f\nspec:\n"                                    \
    "  targetRef: {kind: MeshService, name: backend}\n  from:\n"                                   \
    "    - targetRef: {kind: Mesh}\n      default:\n        http:\n"

/* Kuma's docs, "MeshFaultInjection". */
static void fault_injection(void **state)
{
    (void)state;
    valid("type: MeshFaultInjection\nmesh: default\nname: default-fault-injection\nspec:\n"
          "  targetRef: {kind: MeshService, name: backend}\n  from:\n"
          "    - targetRef: {kind: MeshSubset, tags: {kuma.io/service: frontend}}\n"
          "      default:\n        http:\n"
          "          - abort: {httpStatus: 500, percentage: '2.5'}\n"
          "          - abort: {httpStatus: 500, percentage: 10}\n"
          "          - delay: {value: 5s, percentage: 5}\n"
          "          - responseBandwidth: {limit: 100 mbps, percentage: 50}\n");
    refused(FAULT "          - abort: {httpStatus: 600, percentage: 1}\n",
            "spec.from[0].default.http[0].abort.httpStatus: 600 must be in inclusive range "
            "[100, 599]");
    refused(FAULT "          - abort: {httpStatus: 500}\n",
            "spec.from[0].default.http[0].abort.percentage: required");
    refused(FAULT "          - delay: {value: 5s, percentage: '10.5.1'}\n",
            "spec.from[0].default.http[0].delay.percentage: \"10.5.1\" must be a number");
    refused(FAULT "          - delay: {percentage: 5}\n",
            "spec.from[0].default.http[0].delay.value: required");
    refused(FAULT "          - responseBandwidth: {limit: 10 kilobits, percentage: 5}\n",
            "spec.from[0].default.http[0].responseBandwidth.limit: \"10 kilobits\" has to be in "
            "the format");
    refused(FAULT "          - {}\n",
            "spec.from[0].default.http[0]: must have at least one defined: abort, delay, "
            "responseBandwidth");
    refused("type: MeshFaultInjection\nmesh: default\nname: f\nspec:\n  from:\n"
            "    - targetRef: {kind: Dataplane, name: x}\n      default: {http: []}\n",
            "spec.from[0].targetRef.kind: Dataplane is not allowed here");
}

#define LIMIT                                                                                      \
    "type: MeshRateLimit\nmesh: default\nname: l\nspec:\n"                                         \
    "  targetRef: {kind: MeshService, name: backend}\n  from:\n"                                   \
    "    - targetRef: {kind: Mesh}\n      default:\n"

/* Kuma's docs, "MeshRateLimit". */
static void rate_limit(void **state)
{
    (void)state;
    valid(LIMIT "        local:\n          http:\n"
                "            requestRate: {num: 5, interval: 10s}\n"
                "            onRateLimit:\n              status: 423\n"
                "              headers: {set: [{name: x-kuma-rate-limited, value: 'true'}]}\n"
                "          tcp:\n            connectionRate: {num: 5, interval: 10s}\n");
    valid(LIMIT "        local: {http: {disabled: true}}\n");
    refused(LIMIT "        local: {http: {requestRate: {num: 5, interval: 10ms}}}\n",
            "spec.from[0].default.local.http.requestRate.interval: must be greater than or equal "
            "to: 50ms");
    refused(LIMIT "        local: {http: {requestRate: {num: 0, interval: 1s}}}\n",
            "spec.from[0].default.local.http.requestRate.num: must be greater than 0");
    refused(LIMIT "        local: {tcp: {}}\n",
            "spec.from[0].default.local.tcp: connectionRate must be defined unless disabled is "
            "true");
    refused(LIMIT "        local: {}\n",
            "spec.from[0].default.local: must have at least one defined: http, tcp");
    refused(LIMIT "        local: {http: {requestRate: {num: 1, interval: 1s}, onRateLimit: "
                  "{status: 99}}}\n",
            "spec.from[0].default.local.http.onRateLimit.status: 99 must be in inclusive range");
    refused(LIMIT "        {}\n", "spec.from[0].default.local: required");
}

static void percentages(void **state)
{
    (void)state;
    uint32_t v;
    assert_true(hy_percentage_per_million("50", &v));
    assert_int_equal(v, 500000);
    assert_true(hy_percentage_per_million("2.5", &v));
    assert_int_equal(v, 25000);
    assert_true(hy_percentage_per_million("0.0001", &v));
    assert_int_equal(v, 1);
    assert_true(hy_percentage_per_million("100", &v));
    assert_int_equal(v, 1000000);
    assert_false(hy_percentage_per_million("100.5", &v));
    assert_false(hy_percentage_per_million("-1", &v));
    assert_false(hy_percentage_per_million("", &v));
    assert_false(hy_percentage_per_million("5%", &v));
    assert_true(hy_bandwidth_bytes_per_s("8kbps", &v));
    assert_int_equal(v, 8192);
    assert_true(hy_bandwidth_bytes_per_s("1 mbps", &v));
    assert_int_equal(v, 1024000);
    assert_true(hy_bandwidth_bytes_per_s("8000bps", &v));
    assert_int_equal(v, 8192);
    assert_false(hy_bandwidth_bytes_per_s("10kb", &v));
    assert_false(hy_bandwidth_bytes_per_s("mbps", &v));
}

/* What the sidecar does not enforce of them draws a warning, by path. */
static void warnings(void **state)
{
    (void)state;
    static const char yaml[] = ROUTE
        "        - matches: [{path: {type: PathPrefix, value: /}}]\n"
        "          default:\n"
        "            filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: "
        "[{name: a, value: b}]}}]\n"
        "            backendRefs: [{kind: MeshServiceSubset, name: b, tags: {v: '1'}, weight: "
        "3}]\n"
        "---\n"
        "type: MeshRateLimit\nmesh: default\nname: l\nspec:\n"
        "  from: [{targetRef: {kind: Mesh}, default: {local: {tcp: {connectionRate: {num: "
        "1, interval: 1s}}}}}]\n"
        "  to: [{targetRef: {kind: Mesh}, default: {local: {tcp: {disabled: true}}}}]\n"
        "---\n"
        "type: Dataplane\nmesh: default\nname: d\nnetworking:\n  address: 10.0.0.1\n"
        "  inbound: [{port: 1, tags: {kuma.io/service: g, kuma.io/protocol: grpc}}, "
        "{port: 2, tags: {kuma.io/service: h, kuma.io/protocol: http}}]\n";
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "t.yaml"};
    assert_int_equal(hy_codec_decode_resources("t.yaml", yaml, strlen(yaml), NULL, &docs, &d), 0);
    assert_true(hy_docs_validate(&docs, &d));
    struct hy_diag w = {0};
    hy_policy_warnings(docs.v[0].res, &w);
    assert_int_equal(w.n, 0); /* matches, filters, kind, name, weight, subset tags: enforced */
    hy_diag_fini(&w);
    hy_policy_warnings(docs.v[1].res, &w);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.causes[0].field, "spec.to[0].default.local.tcp.disabled");
    hy_diag_fini(&w);
    hy_policy_warnings(docs.v[2].res, &w);
    assert_int_equal(w.n, 0); /* grpc and http2 go the HTTP way: no warning */
    hy_diag_fini(&w);
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(http_route_good), cmocka_unit_test(http_route_bad),
        cmocka_unit_test(tcp_route),       cmocka_unit_test(fault_injection),
        cmocka_unit_test(rate_limit),      cmocka_unit_test(percentages),
        cmocka_unit_test(warnings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
