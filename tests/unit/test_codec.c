/* Unit tests of the generic codec: round trips of every resource type, every
 * error class with its message, limits, durations and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ca.pb-c.h"
#include "codec.h"
#include "error.h"
#include "mesh.pb-c.h"
#include "policies.pb-c.h"
#include "poison.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Decodes text that must be valid; returns the docs. */
static void decode_ok(const char *text, struct hy_docs *docs)
{
    struct hy_diag d = {0};
    int rc = hy_codec_decode_resources("t.yaml", text, strlen(text), NULL, docs, &d);
    if (rc < 0 || !hy_docs_validate(docs, &d)) {
        char line[1024];
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
        fail_msg("decode failed: %s", hy_strerror(rc));
    }
    hy_diag_fini(&d);
}

static void assert_same_resource(const struct hy_resource *a, const struct hy_resource *b)
{
    size_t la, lb;
    uint8_t *pa = hy_resource_pack(a, &la), *pb = hy_resource_pack(b, &lb);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_int_equal(la, lb);
    assert_memory_equal(pa, pb, la);
    free(pa);
    free(pb);
}

static void roundtrip(const struct hy_resource *r, enum hy_format f)
{
    struct hy_buf out = {0};
    assert_int_equal(hy_codec_encode_resource(r, f, &out), 0);
    struct hy_docs again;
    decode_ok(out.data, &again);
    assert_int_equal(again.n, 1);
    assert_same_resource(r, again.v[0].res);
    /* and the text is stable: encoding the re-read resource gives the same */
    struct hy_buf out2 = {0};
    assert_int_equal(hy_codec_encode_resource(again.v[0].res, f, &out2), 0);
    assert_string_equal(out.data, out2.data);
    hy_buf_fini(&out2);
    hy_docs_fini(&again);
    hy_buf_fini(&out);
}

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    size_t nt;
    const struct hy_rtype *types = hy_rtype_all(&nt);
    for (size_t i = 0; i < nt; i++) {
        char path[512], lower[64];
        size_t k = 0;
        for (const char *p = types[i].name; *p && k + 1 < sizeof(lower); p++)
            lower[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        lower[k] = '\0';
        snprintf(path, sizeof(path), "%s/resources/%s.yaml", HY_TEST_DATA, lower);
        size_t len;
        char *text = read_file(path, &len);
        struct hy_docs docs;
        decode_ok(text, &docs);
        assert_int_equal(docs.n, 1);
        assert_ptr_equal(docs.v[0].res->type, &types[i]);
        roundtrip(docs.v[0].res, HY_FORMAT_YAML);
        roundtrip(docs.v[0].res, HY_FORMAT_JSON);
        /* and through the store's binary envelope */
        size_t plen;
        uint8_t *packed = hy_resource_pack(docs.v[0].res, &plen);
        struct hy_resource *back = NULL;
        assert_int_equal(hy_resource_unpack(packed, plen, &back), 0);
        assert_same_resource(docs.v[0].res, back);
        hy_resource_free(back);
        free(packed);
        hy_docs_fini(&docs);
        free(text);
    }
}

static void test_fields_land_where_expected(void **state)
{
    (void)state;
    const char *text = "type: MeshTrafficPermission\n"
                       "mesh: default\n"
                       "name: mtp-1\n"
                       "labels: {kuma.io/origin: zone, team: a}\n"
                       "spec:\n"
                       "  targetRef: {kind: MeshService, name: backend}\n"
                       "  from:\n"
                       "    - targetRef:\n"
                       "        kind: MeshSubset\n"
                       "        tags: {kuma.io/service: web, version: v1}\n"
                       "      default: {action: AllowWithShadowDeny}\n";
    struct hy_docs docs;
    decode_ok(text, &docs);
    const struct hy_resource *r = docs.v[0].res;
    assert_string_equal(r->meta->name, "mtp-1");
    assert_string_equal(r->meta->mesh, "default");
    assert_int_equal(r->meta->n_labels, 2);
    assert_string_equal(r->meta->labels[0]->key, "hypha.io/origin");
    const Hypha__V1__MeshTrafficPermission *m = (const void *)r->spec;
    assert_int_equal(m->target_ref->kind, HYPHA__V1__TARGET_REF__KIND__MeshService);
    assert_string_equal(m->target_ref->name, "backend");
    assert_int_equal(m->n_from, 1);
    assert_int_equal(m->from[0]->default_->action,
                     HYPHA__V1__MESH_TRAFFIC_PERMISSION__CONF__ACTION__AllowWithShadowDeny);
    assert_string_equal(m->from[0]->target_ref->tags[0]->key, "hypha.io/service");
    assert_string_equal(m->from[0]->target_ref->tags[0]->value, "web");
    hy_docs_fini(&docs);
}

static void test_json_input_any_key_order(void **state)
{
    (void)state;
    /* sorted keys put `type` last: the spec must still be read as the type's */
    const char *text = "{\"mesh\":\"default\",\"name\":\"t1\",\"spec\":{\"targetRef\":{\"kind\":"
                       "\"Mesh\"},\"to\":[{\"targetRef\":{\"kind\":\"Mesh\"},\"default\":{"
                       "\"tcp\":{\"maxConnectAttempt\":2}}}]},\"type\":\"MeshRetry\"}";
    struct hy_docs docs;
    decode_ok(text, &docs);
    assert_int_equal(docs.n, 1);
    const Hypha__V1__MeshRetry *m = (const void *)docs.v[0].res->spec;
    assert_int_equal(m->to[0]->default_->tcp->max_connect_attempt, 2);
    hy_docs_fini(&docs);
}

static void test_multi_document(void **state)
{
    (void)state;
    const char *text = "---\n"
                       "type: Zone\nname: a\n"
                       "---\n"
                       "# only a comment\n"
                       "---\n"
                       "type: Zone\nname: b\nenabled: false\n"
                       "---\n";
    struct hy_docs docs;
    decode_ok(text, &docs);
    assert_int_equal(docs.n, 2);
    assert_string_equal(docs.v[0].res->meta->name, "a");
    assert_string_equal(docs.v[1].res->meta->name, "b");
    assert_int_equal(docs.v[1].line, 7);
    hy_docs_fini(&docs);
}

/* Decoding (and then validating) `text` must fail with exactly `want` as
 * the first formatted cause. */
static void expect_error(const char *text, const char *want)
{
    struct hy_docs docs;
    struct hy_diag d = {0};
    int rc = hy_codec_decode_resources("mtp.yaml", text, strlen(text), NULL, &docs, &d);
    if (rc == 0) {
        assert_false(hy_docs_validate(&docs, &d));
        hy_docs_fini(&docs);
    } else {
        assert_int_equal(docs.n, 0);
    }
    assert_true(d.n > 0);
    char line[1024];
    hy_diag_format(&d, 0, line, sizeof(line));
    if (strcmp(line, want) != 0)
        fail_msg("for input:\n%s\n got: %s\nwant: %s", text, line, want);
    hy_diag_fini(&d);
}

static const char mtp_head[] = "type: MeshTrafficPermission\n"
                               "mesh: default\n"
                               "name: allow\n"
                               "spec:\n"
                               "  targetRef:\n"
                               "    kind: Mesh\n"
                               "  from:\n"
                               "    - targetRef:\n"
                               "        kind: Mesh\n";

static void test_error_unknown_enum_value(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof(text), "%s      default:\n        action: Allw\n", mtp_head);
    expect_error(text, "mtp.yaml:11:17: spec.from[0].default.action: unknown value \"Allw\" "
                       "(expected Allow, Deny, AllowWithShadowDeny)");
}

static void test_error_unknown_field(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof(text), "%s      default:\n        acton: Allow\n", mtp_head);
    expect_error(text,
                 "mtp.yaml:11:9: spec.from[0].default.acton: unknown field \"acton\" (expected "
                 "one of: action)");
    expect_error("type: Zone\nname: z\nenabld: true\n",
                 "mtp.yaml:3:1: enabld: unknown field \"enabld\" for Zone (expected one of: type, "
                 "mesh, name, labels, creationTime, modificationTime, enabled)");
    expect_error("type: MeshRetry\nmesh: m\nname: r\nto: []\n",
                 "mtp.yaml:4:1: to: unknown field \"to\" for MeshRetry (expected one of: type, "
                 "mesh, name, labels, creationTime, modificationTime, spec)");
}

static void test_error_envelope(void **state)
{
    (void)state;
    expect_error("name: x\nmesh: default\n", "mtp.yaml:1:1: type: required");
    expect_error(
        "type: MeshTraficPermission\nname: x\n",
        "mtp.yaml:1:7: type: unknown type \"MeshTraficPermission\" (expected one of: "
        "Mesh, Zone, ZoneInsight, ZoneIngress, ZoneIngressInsight, Dataplane, DataplaneInsight, "
        "MeshTrafficPermission, MeshTimeout, MeshRetry, MeshHealthCheck, "
        "MeshCircuitBreaker, MeshLoadBalancingStrategy, MeshHTTPRoute, MeshTCPRoute, "
        "MeshFaultInjection, MeshRateLimit, MeshMetric, MeshAccessLog, MeshTrace, MeshTrust, "
        "MeshCaRoot, "
        "MeshCaKey, "
        "MeshIssuer, "
        "MeshIssuerKey, TokenSigningKey, "
        "TokenRevocation)");
    expect_error("type: Zone\nenabled: true\n", "mtp.yaml:1:1: name: required");
    expect_error("type: MeshRetry\nname: r\nspec: {}\n",
                 "mtp.yaml:1:1: mesh: required for MeshRetry");
    expect_error("- type: Zone\n",
                 "mtp.yaml:1:1: expected a resource (a mapping with type, name, ...), got a list");
    expect_error("type: Zone\nname: a\nname: b\n", "mtp.yaml:3:1: name: field given twice");
}

static void test_error_scalar_types(void **state)
{
    (void)state;
    const char *dp = "type: Dataplane\nmesh: default\nname: d\nnetworking:\n  address: 1.2.3.4\n"
                     "  inbound:\n    - port: %s\n      tags: {kuma.io/service: s}\n";
    char text[512];
    snprintf(text, sizeof(text), dp, "eighty");
    expect_error(text, "mtp.yaml:7:13: networking.inbound[0].port: \"eighty\" is not a "
                       "non-negative integer");
    snprintf(text, sizeof(text), dp, "-1");
    expect_error(text,
                 "mtp.yaml:7:13: networking.inbound[0].port: \"-1\" is not a non-negative integer");
    snprintf(text, sizeof(text), dp, "4294967296");
    expect_error(text, "mtp.yaml:7:13: networking.inbound[0].port: 4294967296 is out of range "
                       "(expected 0 to 4294967295)");
    snprintf(text, sizeof(text), dp, "70000");
    expect_error(text, "mtp.yaml:7:13: networking.inbound[0].port: 70000 is not a port "
                       "(expected 1-65535)");
    snprintf(text, sizeof(text), dp, "{a: 1}");
    expect_error(text,
                 "mtp.yaml:7:13: networking.inbound[0].port: expected an integer, got a mapping");
    expect_error("type: Zone\nname: z\nenabled: yes\n",
                 "mtp.yaml:3:10: enabled: \"yes\" is not true or false");
    expect_error("type: Zone\nname: z\nenabled: \"true\"\n",
                 "mtp.yaml:3:10: enabled: \"true\" is not true or false");
}

static void test_error_durations_and_times(void **state)
{
    (void)state;
    const char *mt = "type: MeshTimeout\nmesh: m\nname: t\nspec:\n  targetRef: {kind: Mesh}\n"
                     "  rules:\n    - default: {idleTimeout: %s}\n";
    char text[512];
    snprintf(text, sizeof(text), mt, "5 seconds");
    expect_error(text, "mtp.yaml:7:30: spec.rules[0].default.idleTimeout: invalid duration \"5 "
                       "seconds\" (expected a duration like 500ms, 5s, 1m30s, 24h, 1d)");
    snprintf(text, sizeof(text), mt, "-5s");
    expect_error(text, "mtp.yaml:7:30: spec.rules[0].default.idleTimeout: invalid duration "
                       "\"-5s\" (expected a duration like 500ms, 5s, 1m30s, 24h, 1d)");
    expect_error("type: Zone\nname: z\ncreationTime: yesterday\n",
                 "mtp.yaml:3:15: creationTime: invalid time \"yesterday\" (expected an RFC 3339 "
                 "time like 2026-11-26T06:00:00Z)");
}

static void test_error_structure(void **state)
{
    (void)state;
    expect_error("type: Mesh\nname: m\nmtls:\n  backends: {name: x}\n",
                 "mtp.yaml:4:13: mtls.backends: expected a list, got a mapping");
    expect_error("type: Dataplane\nmesh: m\nname: d\nnetworking:\n  inbound:\n    - port: 1\n"
                 "      tags: [a, b]\n",
                 "mtp.yaml:7:13: networking.inbound[0].tags: expected a mapping, got a list");
    expect_error("type: Dataplane\nmesh: m\nname: d\nnetworking:\n  inbound:\n    - port: 1\n"
                 "      tags: {a: 1, a: 2}\n",
                 "mtp.yaml:7:20: networking.inbound[0].tags.a: duplicate key \"a\"");
    expect_error("type: Zone\nname: z\nlabels:\n  hypha.io/zone: a\n  kuma.io/zone: b\n",
                 "mtp.yaml:5:3: labels.kuma.io/zone: duplicate key: \"hypha.io/zone\" and "
                 "\"kuma.io/zone\" (kuma.io/ is read as hypha.io/)");
    expect_error("type: MeshLoadBalancingStrategy\nmesh: m\nname: l\nspec:\n"
                 "  targetRef: {kind: Mesh}\n  to:\n    - targetRef: {kind: Mesh}\n"
                 "      default:\n        loadBalancer:\n          leastRequest: {}\n"
                 "          maglev: {}\n",
                 "mtp.yaml:11:19: spec.to[0].default.loadBalancer.maglev: only one of "
                 "leastRequest and maglev may be set");
}

static void test_error_yaml_syntax(void **state)
{
    (void)state;
    expect_error("type: Zone\nname: [unclosed\n",
                 "mtp.yaml:3:1: invalid YAML: did not find expected ',' or ']' while parsing a "
                 "flow sequence");
    expect_error("a: &x {b: 1}\nc: *x\n",
                 "mtp.yaml:2:4: YAML aliases (*x) are not supported; write the value out");
    expect_error("type: Zone\n\tname: z\n",
                 "mtp.yaml:2:1: invalid YAML: found a tab character that violates indentation "
                 "while scanning a plain scalar");
}

static void test_limits(void **state)
{
    (void)state;
    /* nesting: 65 levels of flow sequences */
    char deep[200];
    size_t k = 0;
    for (int i = 0; i < 65; i++)
        deep[k++] = '[';
    deep[k] = '\0';
    expect_error(deep, "mtp.yaml:1:65: nested deeper than 64 levels");

    /* size: one byte over the configured limit */
    struct hy_codec_limits lim = {.max_bytes = 64};
    char big[65];
    memset(big, ' ', sizeof(big));
    struct hy_docs docs;
    struct hy_diag d = {0};
    assert_int_equal(hy_codec_decode_resources("big.yaml", big, sizeof(big), &lim, &docs, &d),
                     HY_ETOOBIG);
    char line[256];
    assert_string_equal(hy_diag_format(&d, 0, line, sizeof(line)),
                        "big.yaml: input is 65 bytes; the limit is 64 bytes");
    hy_diag_fini(&d);

    /* default: 4 MiB */
    size_t n = HY_CODEC_MAX_BYTES + 1;
    char *huge = malloc(n);
    memset(huge, '#', n);
    assert_int_equal(hy_codec_decode_resources("huge.yaml", huge, n, NULL, &docs, &d), HY_ETOOBIG);
    hy_diag_fini(&d);
    free(huge);
}

static void test_validation_points_at_line(void **state)
{
    (void)state;
    expect_error("type: Zone\nname: East_1\n",
                 "mtp.yaml:2:7: name: invalid name \"East_1\" (expected lowercase letters, digits, "
                 "'-' and '.', starting and ending with a letter or digit, at most 253 "
                 "characters)");
    expect_error("type: Zone\nmesh: default\nname: east\n",
                 "mtp.yaml:2:7: mesh: Zone is not mesh-scoped; remove the mesh field");
    char text[1024];
    snprintf(text, sizeof(text), "%s      default: {action: Allow}\n  to: []\n", mtp_head);
    expect_error(text, "mtp.yaml:11:3: spec.to: unknown field \"to\" (expected one of: targetRef, "
                       "from, rules)");
    expect_error("type: MeshTrafficPermission\nmesh: default\nname: a\nspec:\n"
                 "  targetRef: {kind: Mesh}\n  from:\n    - targetRef: {kind: Dataplane, name: d}\n"
                 "      default: {action: Allow}\n",
                 "mtp.yaml:7:25: spec.from[0].targetRef.kind: Dataplane is not allowed here "
                 "(expected Mesh, MeshSubset, MeshService, MeshServiceSubset)");
    expect_error("type: MeshRetry\nmesh: default\nname: a\nspec:\n  targetRef: {kind: Mesh}\n"
                 "  to:\n    - targetRef: {kind: MeshService}\n      default: {}\n",
                 "mtp.yaml:7:18: spec.to[0].targetRef.name: required when kind is MeshService");
    expect_error("type: Dataplane\nmesh: default\nname: d\nnetworking:\n  address: 1.1.1.1\n"
                 "  inbound:\n    - port: 8080\n      tags: {version: v1}\n",
                 "mtp.yaml:8:13: networking.inbound[0].tags: tag hypha.io/service is required");
    expect_error(
        "type: Zone\nname: z\nlabels:\n  \"bad key!\": x\n",
        "mtp.yaml:4:15: labels.bad key!: invalid key \"bad key!\" (expected [prefix/]name of "
        "letters, digits, '-', '_', '.')");
    expect_error("type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-2\n  backends:\n"
                 "    - name: ca-1\n      type: builtin\n",
                 "mtp.yaml:4:19: mtls.enabledBackend: no backend named \"ca-2\" in mtls.backends");
}

static void test_names_and_tags(void **state)
{
    (void)state;
    assert_true(hy_valid_name("web"));
    assert_true(hy_valid_name("web-1.default"));
    assert_false(hy_valid_name(""));
    assert_false(hy_valid_name("Web"));
    assert_false(hy_valid_name("-web"));
    assert_false(hy_valid_name("web."));
    assert_false(hy_valid_name("a/b"));
    char longname[300];
    memset(longname, 'a', 254);
    longname[254] = '\0';
    assert_false(hy_valid_name(longname));
    longname[253] = '\0';
    assert_true(hy_valid_name(longname));
    assert_true(hy_valid_tag_key("hypha.io/service"));
    assert_true(hy_valid_tag_key("version"));
    assert_false(hy_valid_tag_key("a b"));
    assert_false(hy_valid_tag_key("/x"));
    assert_false(hy_valid_tag_key("x/"));
    assert_true(hy_valid_tag_value("backend_svc_8080"));
    assert_true(hy_valid_tag_value("10.0.0.1:80"));
    assert_false(hy_valid_tag_value(""));
    assert_false(hy_valid_tag_value("a b"));
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t s;
        int32_t ns;
        const char *out;
    } cases[] = {
        {"500ms", 0, 500000000, "500ms"},
        {"5s", 5, 0, "5s"},
        {"1m30s", 90, 0, "1m30s"},
        {"24h", 86400, 0, "1d"},
        {"1d", 86400, 0, "1d"},
        {"36h", 129600, 0, "1d12h"},
        {"1.5s", 1, 500000000, "1.5s"},
        {"0", 0, 0, "0s"},
        {"0s", 0, 0, "0s"},
        {"10y", 315360000, 0, "3650d"},
        {"250us", 0, 250000, "250us"},
        {"7ns", 0, 7, "7ns"},
        {"1h1ms", 3600, 1000000, "1h0.001s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t s;
        int32_t ns;
        assert_true(hy_duration_parse(cases[i].in, &s, &ns));
        assert_int_equal(s, cases[i].s);
        assert_int_equal(ns, cases[i].ns);
        char buf[64];
        hy_duration_format(s, ns, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].out);
        int64_t s2;
        int32_t ns2;
        assert_true(hy_duration_parse(buf, &s2, &ns2));
        assert_int_equal(s2, s);
        assert_int_equal(ns2, ns);
    }
    static const char *const bad[] = {
        "", "s", "5", "-1s", "5 s", "1.s", "5x", "1e3s", "99999999999999999999s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t s;
        int32_t ns;
        if (hy_duration_parse(bad[i], &s, &ns))
            fail_msg("accepted bad duration \"%s\"", bad[i]);
    }
}

static void test_timestamps(void **state)
{
    (void)state;
    int64_t s;
    int32_t ns;
    assert_true(hy_timestamp_parse("2026-11-26T06:00:00Z", &s, &ns));
    assert_int_equal(s, 1795672800);
    assert_true(hy_timestamp_parse("2026-11-26T07:00:00.5+01:00", &s, &ns));
    assert_int_equal(s, 1795672800);
    assert_int_equal(ns, 500000000);
    char buf[64];
    hy_timestamp_format(s, ns, buf, sizeof(buf));
    assert_string_equal(buf, "2026-11-26T06:00:00.5Z");
    assert_false(hy_timestamp_parse("2026-13-01T00:00:00Z", &s, &ns));
    assert_false(hy_timestamp_parse("2026-11-26 06:00:00Z", &s, &ns));
    assert_false(hy_timestamp_parse("2026-11-26T06:00:00", &s, &ns));
}

static void test_yaml_output_quotes_typed_strings(void **state)
{
    (void)state;
    struct hy_docs docs;
    decode_ok("type: Dataplane\nmesh: default\nname: d\nnetworking:\n  address: 127.0.0.1\n"
              "  inbound:\n    - port: 1\n      tags:\n        kuma.io/service: s\n"
              "        version: \"1.0\"\n        flag: \"true\"\n",
              &docs);
    struct hy_buf out = {0};
    assert_int_equal(hy_codec_encode_resource(docs.v[0].res, HY_FORMAT_YAML, &out), 0);
    assert_non_null(strstr(out.data, "version: \"1.0\""));
    assert_non_null(strstr(out.data, "flag: \"true\""));
    assert_non_null(strstr(out.data, "hypha.io/service: s\n"));
    assert_non_null(strstr(out.data, "port: 1\n"));
    hy_buf_fini(&out);
    assert_int_equal(hy_codec_encode_resource(docs.v[0].res, HY_FORMAT_JSON, &out), 0);
    assert_string_equal(out.data,
                        "{\"type\":\"Dataplane\",\"mesh\":\"default\",\"name\":\"d\","
                        "\"networking\":{\"address\":\"127.0.0.1\",\"inbound\":[{\"port\":1,"
                        "\"tags\":{\"hypha.io/service\":\"s\",\"version\":\"1.0\",\"flag\":"
                        "\"true\"}}]}}");
    hy_buf_fini(&out);
    hy_docs_fini(&docs);
}

/* Kuma's Kubernetes tab applies unchanged: kind, metadata.name, the mesh
 * label (default "default"), the namespace kept as a label, spec. */
static void test_kubernetes_shape(void **state)
{
    (void)state;
    static const char text[] =
        "apiVersion: kuma.io/v1alpha1\n"
        "kind: MeshTrafficPermission\n"
        "metadata:\n"
        "  name: allow-orders\n"
        "  namespace: kuma-demo\n"
        "  labels:\n"
        "    kuma.io/mesh: payments\n"
        "    team: core\n"
        "spec:\n"
        "  targetRef: {kind: Dataplane, labels: {app: payments}}\n"
        "  from:\n"
        "  - targetRef: {kind: MeshSubset, tags: {kuma.io/service: orders}}\n"
        "    default: {action: Allow}\n"
        "---\n"
        "apiVersion: kuma.io/v1alpha1\n"
        "kind: Mesh\n"
        "metadata: {name: payments}\n"
        "spec:\n"
        "  mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}\n"
        "---\n"
        "apiVersion: kuma.io/v1alpha1\n"
        "kind: MeshTimeout\n"
        "metadata: {name: t}\n"
        "spec:\n"
        "  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 20s}}]\n";
    struct hy_docs docs;
    struct hy_diag d = {0};
    assert_int_equal(hy_codec_decode_resources("k8s.yaml", text, strlen(text), NULL, &docs, &d), 0);
    assert_true(hy_docs_validate(&docs, &d));
    assert_int_equal(docs.n, 3);
    const struct hy_resource *r = docs.v[0].res;
    assert_string_equal(r->type->name, "MeshTrafficPermission");
    assert_string_equal(r->meta->name, "allow-orders");
    assert_string_equal(r->meta->mesh, "payments");
    assert_int_equal(r->meta->n_labels, 2);
    bool ns = false, team = false;
    for (size_t i = 0; i < r->meta->n_labels; i++) {
        ns = ns || (!strcmp(r->meta->labels[i]->key, "k8s.kuma.io/namespace") &&
                    !strcmp(r->meta->labels[i]->value, "kuma-demo"));
        team = team || !strcmp(r->meta->labels[i]->key, "team");
    }
    assert_true(ns && team);
    const Hypha__V1__MeshTrafficPermission *p = (const void *)r->spec;
    assert_int_equal(p->n_from, 1);
    assert_string_equal(p->from[0]->target_ref->tags[0]->key, "hypha.io/service");
    assert_string_equal(docs.v[1].res->type->name, "Mesh");
    assert_null(docs.v[1].res->meta->mesh);
    assert_string_equal(((const Hypha__V1__Mesh *)docs.v[1].res->spec)->mtls->enabled_backend,
                        "ca-1");
    assert_string_equal(docs.v[2].res->meta->mesh, "default");
    hy_docs_fini(&docs);
    hy_diag_fini(&d);

    expect_error("apiVersion: v1\nkind: MeshTimeout\nmetadata: {name: a}\n",
                 "mtp.yaml:1:13: apiVersion: expected kuma.io/v1alpha1 (Kuma's Kubernetes shape)");
    expect_error("apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\nmetadata: {name: a, uid: x}\n",
                 "mtp.yaml:3:21: metadata.uid: unknown field \"uid\" in metadata (expected one of: "
                 "name, namespace, labels)");
    expect_error("apiVersion: kuma.io/v1alpha1\nkind: Mesh\n"
                 "metadata: {name: a, labels: {kuma.io/mesh: x}}\n",
                 "mtp.yaml:1:1: metadata.labels: Mesh is not mesh-scoped; remove the label "
                 "kuma.io/mesh");
    expect_error("apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\n"
                 "metadata: {name: a, labels: {kuma.io/mesh }}\n",
                 "mtp.yaml:1:1: metadata.labels: the label kuma.io/mesh is empty; name the mesh "
                 "or drop the label for \"default\"");
    expect_error("apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\nmetadata: {}\n",
                 "mtp.yaml:1:1: metadata.name: required");
    expect_error(
        "apiVersion: kuma.io/v1alpha1\nkind: Meshy\nmetadata: {name: a}\n",
        "mtp.yaml:2:7: kind: unknown kind \"Meshy\" (expected one of: Mesh, Zone, "
        "ZoneInsight, ZoneIngress, ZoneIngressInsight, Dataplane, DataplaneInsight, "
        "MeshTrafficPermission, "
        "MeshTimeout, MeshRetry, MeshHealthCheck, MeshCircuitBreaker, "
        "MeshLoadBalancingStrategy, MeshHTTPRoute, MeshTCPRoute, MeshFaultInjection, "
        "MeshRateLimit, MeshMetric, MeshAccessLog, MeshTrace, MeshTrust, MeshCaRoot, MeshCaKey, "
        "MeshIssuer, "
        "MeshIssuerKey, "
        "TokenSigningKey, TokenRevocation)");
}

/* MeshTrust in Kuma's shape: what lands where, and every field refused
 * with its line (the certificates themselves are parsed on the control
 * plane: test_ca's bundle tests and tests/integration/kds.sh). */
static const char trust_head[] = "type: MeshTrust\nmesh: default\nname: corp\nspec:\n";
static const char trust_pem[] = "          -----BEGIN CERTIFICATE-----\n"
                                "          MIIB\n"
                                "          -----END CERTIFICATE-----\n";

static void expect_trust_error(const char *spec, const char *want)
{
    char text[2048];
    snprintf(text, sizeof(text), "%s%s", trust_head, spec);
    expect_error(text, want);
}

static void test_mesh_trust(void **state)
{
    (void)state;
    char path[512], spec[1024];
    size_t len;
    snprintf(path, sizeof(path), "%s/resources/meshtrust.yaml", HY_TEST_DATA);
    char *text = read_file(path, &len);
    struct hy_docs docs;
    decode_ok(text, &docs);
    const Hypha__V1__MeshTrust *t = (const Hypha__V1__MeshTrust *)docs.v[0].res->spec;
    assert_string_equal(t->trust_domain, "default");
    assert_int_equal(t->n_ca_bundles, 1);
    assert_true(t->ca_bundles[0]->has_type);
    assert_int_equal(t->ca_bundles[0]->type, HYPHA__V1__MESH_TRUST__CA_BUNDLE__TYPE__Pem);
    assert_non_null(strstr(t->ca_bundles[0]->pem->value, "-----BEGIN CERTIFICATE-----\nMII"));
    assert_string_equal(t->origin->kri, "kri_mid_default_zone-1_kuma-system_identity_");
    hy_docs_fini(&docs);
    free(text);

    /* Kuma's Kubernetes shape applies too */
    snprintf(spec, sizeof(spec),
             "apiVersion: kuma.io/v1alpha1\nkind: MeshTrust\nmetadata:\n  name: corp\n"
             "  labels: {kuma.io/mesh: default}\nspec:\n  trustDomain: corp.example.com\n"
             "  caBundles:\n    - type: Pem\n      pem:\n        value: |\n%s",
             trust_pem);
    decode_ok(spec, &docs);
    assert_string_equal(docs.v[0].res->meta->mesh, "default");
    hy_docs_fini(&docs);

    snprintf(spec, sizeof(spec), "  caBundles:\n    - type: Pem\n      pem:\n        value: |\n%s",
             trust_pem);
    expect_trust_error(spec, "mtp.yaml:5:3: spec.trustDomain: required: the SPIFFE trust domain of "
                             "the identities these CAs issue (\"default\" for this mesh's own)");
    snprintf(spec, sizeof(spec), "  trustDomain: spiffe://default\n  caBundles: []\n");
    expect_trust_error(spec, "mtp.yaml:5:16: spec.trustDomain: invalid trust domain "
                             "\"spiffe://default\": write the trust domain alone, without "
                             "\"spiffe://\" or a path");
    expect_trust_error("  trustDomain: Corp.Example\n  caBundles: []\n",
                       "mtp.yaml:5:16: spec.trustDomain: invalid trust domain \"Corp.Example\": a "
                       "SPIFFE trust domain is lowercase");
    expect_trust_error(
        "  trustDomain: corp/example\n",
        "mtp.yaml:5:16: spec.trustDomain: invalid trust domain \"corp/example\": a "
        "SPIFFE trust domain holds only lowercase letters, digits, '.', '-' and '_'");
    expect_trust_error("  trustDomain: corp\n",
                       "mtp.yaml:5:3: spec.caBundles: at least one entry is required ({type: Pem, "
                       "pem: {value: \"-----BEGIN CERTIFICATE-----...\"}})");
    expect_trust_error("  trustDomain: corp\n  caBundles:\n    - type: Der\n",
                       "mtp.yaml:7:13: spec.caBundles[0].type: unknown value \"Der\" (expected "
                       "Pem)");
    snprintf(spec, sizeof(spec),
             "  trustDomain: corp\n  caBundles:\n    - pem:\n        value: |\n%s", trust_pem);
    expect_trust_error(spec, "mtp.yaml:7:7: spec.caBundles[0].type: required (expected Pem)");
    expect_trust_error("  trustDomain: corp\n  caBundles:\n    - type: Pem\n",
                       "mtp.yaml:7:7: spec.caBundles[0].pem.value: required: one or more PEM CA "
                       "certificates");
    expect_trust_error("  trustDomain: corp\n  caBundles:\n    - type: Pem\n"
                       "      pem: {value: \"MIIB\"}\n",
                       "mtp.yaml:8:20: spec.caBundles[0].pem.value: holds no \"-----BEGIN "
                       "CERTIFICATE-----\" block: expected one or more PEM CA certificates");
    snprintf(spec, sizeof(spec),
             "  trustDomain: corp\n  caBundles:\n    - type: Pem\n      pem:\n        value: |\n"
             "%s          -----BEGIN PRIVATE KEY-----\n          MIGH\n"
             "          -----END PRIVATE KEY-----\n",
             trust_pem);
    expect_trust_error(spec, "mtp.yaml:9:16: spec.caBundles[0].pem.value: holds a private key: "
                             "only CA certificates belong here (every zone and sidecar of the mesh "
                             "receives them); remove the key and keep it secret");
    expect_trust_error("  trustDomain: corp\n  caBundles:\n    - type: Pem\n"
                       "      pem: {vaule: x}\n",
                       "mtp.yaml:8:13: spec.caBundles[0].pem.vaule: unknown field \"vaule\" "
                       "(expected one of: value)");
    expect_trust_error("  trustDomain: corp\n  caBundle: []\n",
                       "mtp.yaml:6:3: spec.caBundle: unknown field \"caBundle\" (expected one of: "
                       "trustDomain, caBundles, origin)");
    snprintf(spec, sizeof(spec),
             "  trustDomain: corp\n  origin: {kri: \"\"}\n  caBundles:\n    - type: Pem\n"
             "      pem:\n        value: |\n%s",
             trust_pem);
    expect_trust_error(spec, "mtp.yaml:6:17: spec.origin.kri: empty: remove spec.origin or name "
                             "its kri");
}

static void test_decode_message(void **state)
{
    (void)state;
    const char *text = "targetRef: {kind: Mesh}\nto:\n  - targetRef: {kind: Mesh}\n"
                       "    default: {tcp: {maxConnectAttempt: 3}}\n";
    ProtobufCMessage *m = NULL;
    struct hy_diag d = {0};
    assert_int_equal(hy_codec_decode_message("cfg.yaml", text, strlen(text), NULL,
                                             &hypha__v1__mesh_retry__descriptor, &m, &d),
                     0);
    const Hypha__V1__MeshRetry *r = (const void *)m;
    assert_int_equal(r->to[0]->default_->tcp->max_connect_attempt, 3);
    protobuf_c_message_free_unpacked(m, NULL);
    const char *bad = "nope: 1\n";
    assert_int_equal(hy_codec_decode_message("cfg.yaml", bad, strlen(bad), NULL,
                                             &hypha__v1__mesh_retry__descriptor, &m, &d),
                     HY_EINVAL);
    char line[256];
    assert_string_equal(hy_diag_format(&d, 0, line, sizeof(line)),
                        "cfg.yaml:1:1: nope: unknown field \"nope\" (expected one of: targetRef, "
                        "to)");
    hy_diag_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_fields_land_where_expected),
        cmocka_unit_test(test_json_input_any_key_order),
        cmocka_unit_test(test_multi_document),
        cmocka_unit_test(test_error_unknown_enum_value),
        cmocka_unit_test(test_error_unknown_field),
        cmocka_unit_test(test_error_envelope),
        cmocka_unit_test(test_error_scalar_types),
        cmocka_unit_test(test_error_durations_and_times),
        cmocka_unit_test(test_error_structure),
        cmocka_unit_test(test_error_yaml_syntax),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_validation_points_at_line),
        cmocka_unit_test(test_names_and_tags),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_yaml_output_quotes_typed_strings),
        cmocka_unit_test(test_kubernetes_shape),
        cmocka_unit_test(test_mesh_trust),
        cmocka_unit_test(test_decode_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
