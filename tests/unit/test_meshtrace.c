/* MeshTrace: validation with Kuma's rules and field paths (the docs'
 * examples load; bad values and unknown fields are refused by name), the
 * Datadog warning, and the proxy-wide merge in the engine's order with
 * what the sidecar gets (DpTrace). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "dataplane.pb-c.h"
#include "diag.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "poison.h"

struct world {
    struct hy_docs docs;
    struct hy_resource *v[32];
    size_t n;
};

static int load(struct world *w, const char *yaml, struct hy_diag *d)
{
    memset(w, 0, sizeof(*w));
    d->source = "test.yaml";
    int rc = hy_codec_decode_resources("test.yaml", yaml, strlen(yaml), NULL, &w->docs, d);
    if (rc == 0 && !hy_docs_validate(&w->docs, d))
        rc = -1;
    for (size_t i = 0; rc == 0 && i < w->docs.n && w->n < 32; i++)
        w->v[w->n++] = w->docs.v[i].res;
    return rc == 0 ? 0 : -1;
}

static void dump(const struct hy_diag *d)
{
    char line[512];
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", hy_diag_format(d, i, line, sizeof(line)));
}

static void world_load(struct world *w, const char *yaml)
{
    struct hy_diag d = {0};
    int rc = load(w, yaml, &d);
    dump(&d);
    assert_int_equal(rc, 0);
    hy_diag_fini(&d);
}

static struct hy_resource *find(struct world *w, const char *type, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->v[i]->type->name, type) && !strcmp(w->v[i]->meta->name, name))
            return w->v[i];
    fail_msg("no %s %s", type, name);
    return NULL;
}

static bool has_cause(const struct hy_diag *d, const char *field, const char *needle)
{
    for (size_t i = 0; i < d->n; i++)
        if ((!field || !strcmp(d->causes[i].field, field)) && strstr(d->causes[i].message, needle))
            return true;
    return false;
}

#define MT "type: MeshTrace\nmesh: default\nname: t\nspec:\n"

/* Kuma's docs ("MeshTrace"): Zipkin, OpenTelemetry, tags, sampling. */
static void docs_examples(void **state)
{
    (void)state;
    static const char *const ok[] = {
        MT "  targetRef: {kind: Mesh}\n  default:\n    backends:\n"
           "      - type: Zipkin\n        zipkin:\n"
           "          url: http://jaeger-collector:9411/api/v2/spans\n"
           "          apiVersion: httpJson\n",
        MT "  targetRef: {kind: Mesh}\n  default:\n    backends:\n"
           "      - type: OpenTelemetry\n        openTelemetry:\n"
           "          endpoint: otel-collector:4317\n",
        MT "  targetRef: {kind: MeshService, name: backend}\n  default:\n"
           "    tags:\n      - name: team\n        literal: core\n"
           "      - name: env\n        header:\n          name: x-env\n          default: prod\n"
           "      - name: version\n        header:\n          name: x-version\n"
           "    sampling:\n      overall: 80\n      random: 60\n      client: 40\n",
        MT "  default:\n    backends: []\n    sampling: {overall: \"50.5\"}\n",
        MT "  targetRef: {kind: Mesh}\n  default:\n    backends:\n"
           "      - type: Zipkin\n        zipkin: {url: \"http://[::1]:9411/api/v2/spans\", "
           "traceId128bit: true, sharedSpanContext: false}\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        struct world w;
        world_load(&w, ok[i]);
        struct hy_diag d = {0};
        hy_policy_warnings(find(&w, "MeshTrace", "t"), &d);
        dump(&d);
        assert_int_equal(d.n, 0);
        hy_diag_fini(&d);
        hy_docs_fini(&w.docs);
    }
}

static void refused(const char *yaml, const char *field, const char *needle)
{
    struct world w;
    struct hy_diag d = {0};
    int rc = load(&w, yaml, &d);
    bool ok = rc != 0 && has_cause(&d, field, needle);
    if (!ok)
        dump(&d);
    hy_diag_fini(&d);
    hy_docs_fini(&w.docs);
    if (!ok)
        fail_msg("expected %s: %s", field ? field : "(any)", needle);
}

static void refusals(void **state)
{
    (void)state;
    refused(MT "  targetRef: {kind: Mesh}\n", "spec.default", "required");
    refused(MT "  default:\n    backends:\n      - {type: Zipkin, zipkin: {url: http://a:1/}}\n"
               "      - {type: Zipkin, zipkin: {url: http://b:1/}}\n",
            "spec.default.backends", "zero or one backend");
    refused(MT "  default:\n    backends: [{type: Jaeger}]\n", "spec.default.backends[0].type",
            "must be one of Zipkin, Datadog, OpenTelemetry");
    refused(MT "  default:\n    backends: [{type: Zipkin}]\n", "spec.default.backends[0].zipkin",
            "must be defined");
    refused(MT "  default:\n    backends: [{type: Zipkin, zipkin: {url: \"ftp://x/\"}}]\n",
            "spec.default.backends[0].zipkin.url", "http:// URL");
    refused(MT "  default:\n    backends: [{type: Zipkin, zipkin: {url: \"http://x:99999/\"}}]\n",
            "spec.default.backends[0].zipkin.url", "http:// URL");
    refused(MT "  default:\n    backends: [{type: Zipkin, zipkin: {url: \"http://x/\", "
               "apiVersion: v3}}]\n",
            "spec.default.backends[0].zipkin.apiVersion", "httpJson, httpProto");
    refused(MT "  default:\n    backends: [{type: Zipkin, zipkin: {url: \"http://x/\", "
               "apiVersion: httpProto}}]\n",
            "spec.default.backends[0].zipkin.apiVersion", "not supported");
    refused(MT "  default:\n    backends: [{type: OpenTelemetry, openTelemetry: {endpoint: x}}]\n",
            "spec.default.backends[0].openTelemetry.endpoint", "HOST:PORT");
    refused(MT "  default:\n    backends: [{type: OpenTelemetry, zipkin: {url: \"http://x/\"}}]\n",
            "spec.default.backends[0]", "only the field of its type");
    refused(MT "  default:\n    tags: [{name: a}]\n", "spec.default.tags[0]", "exactly one");
    refused(MT "  default:\n    tags: [{name: a, literal: b, header: {name: c}}]\n",
            "spec.default.tags[0]", "exactly one");
    refused(MT "  default:\n    tags: [{literal: b}]\n", "spec.default.tags[0].name",
            "must not be empty");
    refused(MT "  default:\n    tags: [{name: a, literal: b}, {name: a, literal: c}]\n",
            "spec.default.tags[1].name", "already");
    refused(MT "  default:\n    tags: [{name: a, header: {name: \"x y\"}}]\n",
            "spec.default.tags[0].header.name", "HTTP header name");
    refused(MT "  default:\n    sampling: {overall: 101}\n", "spec.default.sampling.overall",
            "[0, 100]");
    refused(MT "  default:\n    sampling: {random: \"-1\"}\n", "spec.default.sampling.random",
            "[0, 100]");
    refused(MT "  default:\n    sampling: {client: abc}\n", "spec.default.sampling.client",
            "[0, 100]");
    refused(MT "  targetRef: {kind: MeshHTTPRoute, name: r}\n  default: {}\n",
            "spec.targetRef.kind", "unknown value");
    refused(MT "  default:\n    samplingg: {overall: 1}\n", NULL, "samplingg");
    refused(MT "  from:\n    - targetRef: {kind: Mesh}\n      default: {}\n  default: {}\n", NULL,
            "from");
}

/* Datadog: accepted as Kuma has it, reported as not supported. */
static void datadog_warned(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, MT "  default:\n    backends:\n      - type: Datadog\n"
                      "        datadog: {url: \"udp://dd:8126\", splitService: true}\n");
    struct hy_diag d = {0};
    hy_policy_warnings(find(&w, "MeshTrace", "t"), &d);
    assert_true(d.n >= 1);
    assert_true(has_cause(&d, NULL, "Datadog backends are not supported"));
    hy_diag_fini(&d);
    hy_docs_fini(&w.docs);
}

#define DPS                                                                                        \
    "type: Dataplane\nmesh: default\nname: web-1\nlabels: {app: web}\nnetworking:\n"               \
    "  address: 10.0.0.4\n  inbound:\n"                                                            \
    "    - {port: 8080, tags: {kuma.io/service: web, kuma.io/protocol: http}}\n---\n"              \
    "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n"          \
    "  inbound:\n    - {port: 3001, tags: {kuma.io/service: backend}}\n---\n"

/* A mesh-wide Zipkin backend, a service's sampling and tags over it: the
 * more specific policy wins field by field, lists replace whole. */
static void merge(void **state)
{
    (void)state;
    struct world w;
    world_load(&w,
               DPS "type: MeshTrace\nmesh: default\nname: all\nspec:\n"
                   "  targetRef: {kind: Mesh}\n  default:\n"
                   "    backends: [{type: Zipkin, zipkin: {url: \"http://z:9411/api/v2/spans\"}}]\n"
                   "    tags: [{name: a, literal: b}]\n"
                   "    sampling: {overall: 50}\n---\n"
                   "type: MeshTrace\nmesh: default\nname: web\nspec:\n"
                   "  targetRef: {kind: MeshService, name: web}\n  default:\n"
                   "    tags: [{name: t, header: {name: x-t, default: d}}]\n"
                   "    sampling: {random: \"12.5\"}\n---\n"
                   "type: MeshTrace\nmesh: default\nname: dd\nspec:\n"
                   "  targetRef: {kind: MeshService, name: backend}\n  default:\n"
                   "    backends: [{type: Datadog, datadog: {url: \"udp://d:1\"}}]\n");
    struct hy_resource *pols[3] = {find(&w, "MeshTrace", "all"), find(&w, "MeshTrace", "web"),
                                   find(&w, "MeshTrace", "dd")};
    struct hy_policy_proxy p = {find(&w, "Dataplane", "web-1"), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, 3, &p, &s), 0);
    assert_int_equal(s.n, 2);
    Hypha__V1__DpTrace *t;
    assert_int_equal(hy_policy_trace(&s, p.dp, "east", &t), 0);
    assert_non_null(t);
    assert_string_equal(t->type, "Zipkin");
    assert_string_equal(t->url, "http://z:9411/api/v2/spans");
    assert_false(t->trace_id128bit);
    assert_true(t->shared_span_context); /* Kuma's default */
    assert_int_equal(t->overall, 500000);
    assert_int_equal(t->random, 125000);
    assert_int_equal(t->client, 1000000);
    assert_int_equal(t->n_tags, 1); /* the service's list replaced the mesh's */
    assert_string_equal(t->tags[0]->name, "t");
    assert_string_equal(t->tags[0]->header, "x-t");
    assert_string_equal(t->tags[0]->header_default, "d");
    assert_string_equal(t->service, "web");
    assert_string_equal(t->zone, "east");
    assert_string_equal(t->origin, "MeshTrace/all default");
    hypha__v1__dp_trace__free_unpacked(t, NULL);
    hy_policy_set_fini(&s);

    /* backend-1: its Datadog backend replaces Zipkin: no backend, headers only */
    p.dp = find(&w, "Dataplane", "backend-1");
    assert_int_equal(hy_policy_select(pols, 3, &p, &s), 0);
    assert_int_equal(hy_policy_trace(&s, p.dp, "west", &t), 0);
    assert_non_null(t);
    assert_null(t->type);
    assert_string_equal(t->origin, "MeshTrace/dd default");
    assert_int_equal(t->overall, 500000);
    hypha__v1__dp_trace__free_unpacked(t, NULL);
    hy_policy_set_fini(&s);

    /* only the service's policy (tags, sampling, no backend): tracing off */
    p.dp = find(&w, "Dataplane", "web-1");
    struct hy_resource *web_only[1] = {find(&w, "MeshTrace", "web")};
    assert_int_equal(hy_policy_select(web_only, 1, &p, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(hy_policy_trace(&s, p.dp, "east", &t), 0);
    assert_null(t);
    hy_policy_set_fini(&s);

    /* none selecting: nothing */
    assert_int_equal(hy_policy_select(pols, 0, &p, &s), 0);
    assert_int_equal(hy_policy_trace(&s, p.dp, "west", &t), 0);
    assert_null(t);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(docs_examples),
        cmocka_unit_test(refusals),
        cmocka_unit_test(datadog_warned),
        cmocka_unit_test(merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
