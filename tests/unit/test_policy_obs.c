/* MeshAccessLog as users write it: Kuma's documented examples validate,
 * the mistakes Kuma refuses (and unknown command operators) are refused
 * with their field path, every field is enforced (no warning), and what
 * the zone sends the sidecar merges as Kuma merges (a later entry's
 * backends replace an earlier one's). */
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
#include "dp.pb-c.h"
#include "policy.h"
#include "validate.h"
#include "poison.h"

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

static void refused(const char *yaml, const char *want)
{
    char out[4096];
    check(yaml, out, sizeof(out));
    if (!strstr(out, want))
        fail_msg("expected \"%s\" in:\n%s", want, out);
}

#define HEAD "type: MeshAccessLog\nmesh: default\nname: l\nspec:\n"
#define TO_MESH(backends)                                                                          \
    HEAD "  targetRef: {kind: Mesh}\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n"       \
         "        backends:\n" backends

/* Kuma's docs, "MeshAccessLog": the examples of 2.3.x and later. */
static void docs_examples(void **state)
{
    (void)state;
    valid(HEAD "  targetRef:\n    kind: MeshServiceSubset\n    name: frontend\n    tags:\n"
               "      version: canary\n  to:\n    - targetRef:\n        kind: MeshService\n"
               "        name: backend\n      default:\n        backends:\n          - type: File\n"
               "            file:\n              path: /dev/stdout\n");
    valid(HEAD "  targetRef:\n    kind: Mesh\n  from:\n    - targetRef:\n        kind: Mesh\n"
               "      default:\n        backends:\n          - type: Tcp\n            tcp:\n"
               "              address: 127.0.0.1:5000\n              format:\n"
               "                type: Json\n                json:\n"
               "                  - key: \"start_time\"\n"
               "                    value: \"%START_TIME%\"\n          - type: File\n"
               "            file:\n              path: /dev/stdout\n              format:\n"
               "                type: Plain\n                plain: '[%START_TIME%]'\n"
               "          - type: OpenTelemetry\n            openTelemetry:\n"
               "              endpoint: otel-collector:4317\n              body:\n"
               "                kvlistValue:\n                  values:\n"
               "                    - key: \"mesh\"\n                      value:\n"
               "                        stringValue: \"%KUMA_MESH%\"\n"
               "              attributes:\n                - key: \"start_time\"\n"
               "                  value: \"%START_TIME%\"\n");
    valid(HEAD "  rules:\n    - default:\n        backends:\n          - type: File\n"
               "            file: {path: /tmp/a.log, format: {type: Plain, plain: "
               "'%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):64% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%', "
               "omitEmptyValues: true}}\n");
}

static void refusals(void **state)
{
    (void)state;
    refused(HEAD "  targetRef: {kind: Mesh}\n", "at least one of 'from', 'to' or 'rules'");
    refused(HEAD "  to:\n    - targetRef: {kind: Mesh}\n      default: {backends: [{type: File, "
                 "file: {path: /a}}]}\n  rules:\n    - default: {backends: [{type: File, file: "
                 "{path: /a}}]}\n",
            "'to' and 'from' must be empty when 'rules' is defined");
    refused(TO_MESH("          - type: File\n            file: {path: /a, format: {type: Plain, "
                    "plain: '%START_TIME% %KUMA_NOPE%'}}\n"),
            "spec.to[0].default.backends[0].file.format.plain: unknown command operator "
            "%KUMA_NOPE% at offset 13");
    refused(TO_MESH("          - type: Tcp\n            tcp: {address: 127.0.0.1:5000, format: "
                    "{type: Json, json: [{key: a, value: '%REQ%'}]}}\n"),
            "spec.to[0].default.backends[0].tcp.format.json[0].value: %REQ% at offset 0 needs a "
            "header");
    refused(TO_MESH("          - type: Tcp\n            tcp: {address: 127.0.0.1:5000, format: "
                    "{type: Json, json: [{key: a, value: x}, {key: a, value: y}]}}\n"),
            "json[1].key: \"a\" is already the key of json[0]");
    refused(TO_MESH("          - type: Tcp\n            tcp: {address: nope}\n"),
            "spec.to[0].default.backends[0].tcp.address: tcp backend requires valid address");
    refused(TO_MESH("          - type: File\n            file: {path: ''}\n"),
            "backends[0].file.path: file backend requires a valid path");
    refused(TO_MESH("          - type: File\n"), "spec.to[0].default.backends[0].file: must be "
                                                 "defined");
    refused(TO_MESH("          - type: Kafka\n"),
            "\"Kafka\" must be one of Tcp, File, OpenTelemetry");
    refused(
        TO_MESH("          - type: File\n            file: {path: /a, format: {type: Plain}}\n"),
        "file.format.plain: must be defined");
    refused(TO_MESH("          - type: File\n            file: {path: /a, format: {type: Json}}\n"),
            "file.format.json: must not be empty");
    refused(TO_MESH("          - type: File\n            file: {path: /a}\n            tcp: "
                    "{address: a:1}\n"),
            "only the field of its type (File) may be set");
    refused(
        TO_MESH("          - type: OpenTelemetry\n            openTelemetry: {endpoint: c:4317, "
                "attributes: [{key: Bad-Key, value: x}]}\n"),
        "attributes[0].key: \"Bad-Key\" must match");
    refused(
        TO_MESH("          - type: OpenTelemetry\n            openTelemetry: {endpoint: c:4317, "
                "body: {stringValue: a, boolValue: true}}\n"),
        "openTelemetry.body: must set exactly one of");
    refused(HEAD "  to:\n    - targetRef: {kind: Mesh}\n      default: {}\n",
            "spec.to[0].default.backends: must be defined");
    /* Kuma: from names the whole mesh only */
    refused(HEAD "  from:\n    - targetRef: {kind: MeshService, name: web}\n      default: "
                 "{backends: [{type: File, file: {path: /a}}]}\n",
            "spec.from[0].targetRef");
}

static void warnings(void **state)
{
    (void)state;
    /* every backend type and field is enforced: no warning */
    const char *yaml =
        TO_MESH("          - type: File\n            file: {path: /a, format: {type: "
                "Plain, plain: x, omitEmptyValues: true}}\n"
                "          - type: Tcp\n            tcp: {address: 'a:1', format: "
                "{type: Json, json: [{key: k, value: v}]}}\n"
                "          - type: OpenTelemetry\n"
                "            openTelemetry: {endpoint: c:4317, body: {kvlistValue: "
                "{values: [{key: a, value: {intValue: 1}}]}}, attributes: [{key: "
                "k, value: v}]}\n");
    struct hy_docs docs = {0};
    struct hy_diag d = {.source = "t.yaml"};
    assert_int_equal(hy_codec_decode_resources("t.yaml", yaml, strlen(yaml), NULL, &docs, &d), 0);
    assert_true(hy_docs_validate(&docs, &d));
    struct hy_diag w = {0};
    hy_policy_warnings(docs.v[0].res, &w);
    char line[512];
    for (size_t i = 0; i < w.n; i++)
        fprintf(stderr, "%s\n", hy_diag_format(&w, i, line, sizeof(line)));
    assert_int_equal(w.n, 0);
    hy_diag_fini(&w);
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
}

/* ----- merge ----- */

struct world {
    struct hy_docs docs;
    struct hy_resource *pol[8];
    size_t n;
    struct hy_resource *dp;
};

static void load(struct world *w, const char *yaml)
{
    struct hy_diag d = {.source = "t.yaml"};
    memset(w, 0, sizeof(*w));
    assert_int_equal(hy_codec_decode_resources("t.yaml", yaml, strlen(yaml), NULL, &w->docs, &d),
                     0);
    char line[512];
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
    assert_true(hy_docs_validate(&w->docs, &d));
    hy_diag_fini(&d);
    for (size_t i = 0; i < w->docs.n; i++) {
        if (!strcmp(w->docs.v[i].res->type->name, "Dataplane"))
            w->dp = w->docs.v[i].res;
        else
            w->pol[w->n++] = w->docs.v[i].res;
    }
}

#define DP                                                                                         \
    "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n"              \
    "  inbound:\n    - {port: 8080, tags: {kuma.io/service: web}}\n"                               \
    "  outbound:\n    - {port: 10001, tags: {kuma.io/service: backend}}\n"                         \
    "    - {port: 10002, tags: {kuma.io/service: other}}\n"

static void merge(void **state)
{
    (void)state;
    struct world w;
    load(&w, DP "---\n" HEAD "  to:\n    - targetRef: {kind: Mesh}\n      default: {backends: "
                "[{type: File, file: {path: /all.log}}, {type: Tcp, tcp: {address: 'c:1'}}]}\n"
                "  from:\n    - targetRef: {kind: Mesh}\n      default: {backends: [{type: File, "
                "file: {path: /in.log}}]}\n"
                "---\ntype: MeshAccessLog\nmesh: default\nname: specific\nspec:\n"
                "  targetRef: {kind: MeshService, name: web}\n  to:\n"
                "    - targetRef: {kind: MeshService, name: backend}\n      default: {backends: "
                "[{type: File, file: {path: /backend.log, format: {type: Json, json: [{key: m, "
                "value: '%KUMA_MESH%'}], omitEmptyValues: true}}}, {type: OpenTelemetry, "
                "openTelemetry: {endpoint: 'o:4317'}}]}\n");
    struct hy_policy_proxy p = {w.dp, "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(w.pol, w.n, &p, &s), 0);
    assert_int_equal(s.n, 2);

    /* backend: the MeshService policy's list replaces the Mesh one's (Kuma's
     * merge appends only Append* lists) */
    Hypha__V1__DpOutbound o = HYPHA__V1__DP_OUTBOUND__INIT;
    assert_int_equal(hy_policy_outbound_access_log(&s, "backend", &o), 0);
    assert_non_null(o.access_log);
    assert_string_equal(o.access_log->origin, "MeshAccessLog/specific to[0]");
    assert_int_equal(o.access_log->n_backends, 2);
    assert_string_equal(o.access_log->backends[1]->type, "OpenTelemetry");
    assert_string_equal(o.access_log->backends[1]->address, "o:4317");
    const Hypha__V1__DpAccessLogBackend *b = o.access_log->backends[0];
    assert_string_equal(b->type, "File");
    assert_string_equal(b->path, "/backend.log");
    assert_null(b->plain);
    assert_int_equal(b->n_json, 1);
    assert_string_equal(b->json[0]->name, "m");
    assert_string_equal(b->json[0]->value, "%KUMA_MESH%");
    assert_true(b->has_omit_empty && b->omit_empty);
    protobuf_c_message_free_unpacked(&o.access_log->base, NULL);

    /* other: the Mesh entry's two backends */
    Hypha__V1__DpOutbound o2 = HYPHA__V1__DP_OUTBOUND__INIT;
    assert_int_equal(hy_policy_outbound_access_log(&s, "other", &o2), 0);
    assert_int_equal(o2.access_log->n_backends, 2);
    assert_string_equal(o2.access_log->origin, "MeshAccessLog/l to[0]");
    assert_string_equal(o2.access_log->backends[1]->type, "Tcp");
    assert_string_equal(o2.access_log->backends[1]->address, "c:1");
    protobuf_c_message_free_unpacked(&o2.access_log->base, NULL);

    /* the inbound: the from entry */
    Hypha__V1__DpInbound in = HYPHA__V1__DP_INBOUND__INIT;
    assert_int_equal(hy_policy_inbound_access_log(&s, 0, &in), 0);
    assert_int_equal(in.access_log->n_backends, 1);
    assert_string_equal(in.access_log->backends[0]->path, "/in.log");
    assert_string_equal(in.access_log->origin, "MeshAccessLog/l from[0]");
    protobuf_c_message_free_unpacked(&in.access_log->base, NULL);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);

    /* nothing selects: nothing set, the sidecar keeps its stderr line */
    load(&w, DP "---\n" HEAD "  targetRef: {kind: MeshService, name: nobody}\n  to:\n"
                "    - targetRef: {kind: Mesh}\n      default: {backends: [{type: File, file: "
                "{path: /a}}]}\n");
    p.dp = w.dp;
    assert_int_equal(hy_policy_select(w.pol, w.n, &p, &s), 0);
    Hypha__V1__DpOutbound o3 = HYPHA__V1__DP_OUTBOUND__INIT;
    assert_int_equal(hy_policy_outbound_access_log(&s, "backend", &o3), 0);
    assert_null(o3.access_log);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(docs_examples),
        cmocka_unit_test(refusals),
        cmocka_unit_test(warnings),
        cmocka_unit_test(merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
