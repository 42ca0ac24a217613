/* MeshMetric: validation with Kuma's rules and field paths, warnings on
 * what the sidecar does not enforce, the proxy-wide merge in the engine's
 * order and what the sidecar gets (DpMetrics); and the zone's Prometheus
 * discovery groups (zone/prom_sd.c) for a sidecar and an ingress. */
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
#include "prom_sd.h"
#include "poison.h"

struct world {
    struct hy_docs docs;
    struct hy_resource *v[32];
    size_t n;
};

/* Decodes and validates yaml: 0, or -1 with the causes in *d (caller's). */
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

static void world_load(struct world *w, const char *yaml)
{
    struct hy_diag d = {0};
    int rc = load(w, yaml, &d);
    char line[512];
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
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

/* Does some cause name field and say needle? */
static bool has_cause(const struct hy_diag *d, const char *field, const char *needle)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->causes[i].field, field) && strstr(d->causes[i].message, needle))
            return true;
    return false;
}

static void dump(const struct hy_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s: %s\n", d->causes[i].field, d->causes[i].message);
}

#define MM "type: MeshMetric\nmesh: default\nname: m\nspec:\n"

/* Kuma's docs examples load, without a warning for what the sidecar
 * does. */
static void docs_examples(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, MM
               "  targetRef:\n    kind: Dataplane\n    labels: {framework: example-web-framework}\n"
               "  default:\n    applications:\n      - path: /metrics/prometheus\n"
               "        port: 8888\n    backends:\n      - type: Prometheus\n"
               "        prometheus: {port: 5670, path: /metrics}\n");
    struct hy_diag d = {0};
    hy_policy_warnings(find(&w, "MeshMetric", "m"), &d);
    dump(&d);
    assert_int_equal(d.n, 0);
    hy_docs_fini(&w.docs);
    /* "Trim the published metrics": profiles load, with warnings */
    world_load(&w, MM
               "  targetRef: {kind: Mesh}\n  default:\n    sidecar:\n      includeUnused: false\n"
               "      profiles:\n        appendProfiles: [{name: Basic}]\n"
               "        exclude: [{type: Prefix, match: envoy_cluster_}]\n"
               "        include: [{type: Contains, match: upstream_rq}]\n"
               "    backends:\n      - type: Prometheus\n"
               "        prometheus: {port: 5670, clientId: main, tls: {mode: ProvidedTLS}}\n"
               "      - type: Prometheus\n        prometheus: {port: 5671}\n"
               "      - type: OpenTelemetry\n"
               "        openTelemetry: {endpoint: otel-collector:4317, refreshInterval: 30s}\n");
    hy_policy_warnings(find(&w, "MeshMetric", "m"), &d);
    dump(&d);
    assert_true(has_cause(&d, "spec.default.sidecar.includeUnused", "not enforced"));
    assert_true(
        has_cause(&d, "spec.default.sidecar.profiles.appendProfiles[0].name", "not enforced"));
    assert_true(has_cause(&d, "spec.default.sidecar.profiles.exclude[0].type", "not enforced"));
    assert_true(has_cause(&d, "spec.default.backends[0].prometheus.clientId", "not enforced"));
    assert_true(has_cause(&d, "spec.default.backends[0].prometheus.tls.mode", "not enforced"));
    assert_true(has_cause(&d, "spec.default.backends[1]", "one Prometheus endpoint"));
    assert_true(has_cause(&d, "spec.default.backends[2].openTelemetry.endpoint", "not enforced"));
    assert_false(has_cause(&d, "spec.default.backends[0].prometheus.port", ""));
    hy_diag_fini(&d);
    hy_docs_fini(&w.docs);
}

/* Kuma's refusals, each naming its field. */
static void refusals(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *field, *needle;
    } cases[] = {
        {"  targetRef: {kind: Mesh}\n", "spec.default", "required"},
        {"  default:\n    backends: [{type: Graphite}]\n", "spec.default.backends[0].type",
         "unrecognized type 'Graphite'"},
        {"  default:\n    backends: [{type: Prometheus}]\n", "spec.default.backends[0].prometheus",
         "must be defined"},
        {"  default:\n    backends: [{type: Prometheus, prometheus: {port: 70000}}]\n",
         "spec.default.backends[0].prometheus.port", "1-65535"},
        {"  default:\n    backends: [{type: Prometheus, prometheus: {path: metrics}}]\n",
         "spec.default.backends[0].prometheus.path", "not an HTTP path"},
        {"  default:\n    backends: [{type: Prometheus, prometheus: {tls: {mode: Strict}}}]\n",
         "spec.default.backends[0].prometheus.tls.mode", "unrecognized mode 'Strict'"},
        {"  default:\n    backends: [{type: OpenTelemetry}]\n",
         "spec.default.backends[0].openTelemetry", "must be defined"},
        {"  default:\n    backends: [{type: OpenTelemetry, prometheus: {port: 5670}, "
         "openTelemetry: {endpoint: x:4317}}]\n",
         "spec.default.backends[0].prometheus", "type is OpenTelemetry"},
        {"  default:\n    applications: [{path: /m}]\n", "spec.default.applications[0].port",
         "required"},
        {"  default:\n    applications: [{port: 0}]\n", "spec.default.applications[0].port",
         "1-65535"},
        {"  default:\n    applications: [{port: 80, address: 'a b'}]\n",
         "spec.default.applications[0].address", "not an address"},
        {"  default:\n    sidecar: {profiles: {appendProfiles: [{name: Most}]}}\n",
         "spec.default.sidecar.profiles.appendProfiles[0].name", "unrecognized profile name"},
        {"  default:\n    sidecar: {profiles: {exclude: [{type: Glob, match: x}]}}\n",
         "spec.default.sidecar.profiles.exclude[0].type", "unrecognized type 'Glob'"},
        {"  default:\n    sidecar: {profiles: {include: [{type: Regex, match: '(a'}]}}\n",
         "spec.default.sidecar.profiles.include[0].match", "invalid regex"},
        {"  default:\n    sidecar: {regex: '[x'}\n", "spec.default.sidecar.regex", "invalid regex"},
        {"  targetRef: {kind: MeshService}\n  default: {}\n", "spec.targetRef.name", "required"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[1024];
        snprintf(yaml, sizeof(yaml), MM "%s", cases[i].spec);
        struct world w;
        struct hy_diag d = {0};
        assert_int_equal(load(&w, yaml, &d), -1);
        if (!has_cause(&d, cases[i].field, cases[i].needle)) {
            dump(&d);
            fail_msg("case %zu: no cause at %s saying %s", i, cases[i].field, cases[i].needle);
        }
        hy_diag_fini(&d);
        hy_docs_fini(&w.docs);
    }
    /* MeshMetric has no to/from: the codec names the unknown field */
    struct world w;
    struct hy_diag d = {0};
    assert_int_equal(load(&w, MM "  to:\n    - targetRef: {kind: Mesh}\n      default: {}\n", &d),
                     -1);
    char line[512];
    bool named = false;
    for (size_t i = 0; i < d.n; i++)
        named = named || strstr(hy_diag_format(&d, i, line, sizeof(line)), "to");
    assert_true(named);
    hy_diag_fini(&d);
    hy_docs_fini(&w.docs);
}

#define DPS                                                                                        \
    "type: Dataplane\nmesh: default\nname: web-1\nlabels: {app: web}\nnetworking:\n"               \
    "  address: 10.0.0.4\n  inbound:\n"                                                            \
    "    - {port: 8080, tags: {kuma.io/service: web, kuma.io/protocol: http, version: v1}}\n"      \
    "    - {port: 9090, tags: {kuma.io/service: web-admin, version: v1}}\n---\n"                   \
    "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n"          \
    "  inbound:\n    - {port: 3001, tags: {kuma.io/service: backend}}\n---\n"

/* Mesh-wide backends, a Dataplane policy's applications over them: lists
 * replace whole, the more specific policy wins, each value says where it
 * came from; what the sidecar gets resolves Kuma's defaults. */
static void merge(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DPS "type: MeshMetric\nmesh: default\nname: all\nspec:\n"
                       "  targetRef: {kind: Mesh}\n  default:\n"
                       "    applications: [{name: mesh-app, port: 1000}]\n"
                       "    backends: [{type: Prometheus, prometheus: {}}]\n---\n"
                       "type: MeshMetric\nmesh: default\nname: web\nspec:\n"
                       "  targetRef: {kind: Dataplane, labels: {app: web}}\n  default:\n"
                       "    applications:\n      - {name: orders, port: 8888}\n"
                       "      - {port: 9999, address: 127.0.0.2, path: /m}\n");
    struct hy_resource *pols[2] = {find(&w, "MeshMetric", "all"), find(&w, "MeshMetric", "web")};
    struct hy_policy_proxy p = {find(&w, "Dataplane", "web-1"), "east"};
    struct hy_policy_set s;
    assert_int_equal(hy_policy_select(pols, 2, &p, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0].r->meta->name, "all");
    struct hy_policy_conf c;
    assert_int_equal(hy_policy_metric_merge(&s, &c), 0);
    const Hypha__V1__MeshMetric__Conf *conf = (const void *)c.conf;
    assert_int_equal(conf->n_applications, 2);
    assert_string_equal(conf->applications[0]->name, "orders");
    assert_int_equal(conf->n_backends, 1);
    assert_string_equal(hy_policy_conf_origin(&c, "backends")->r->meta->name, "all");
    assert_string_equal(hy_policy_conf_origin(&c, "applications")->r->meta->name, "web");
    hy_policy_conf_fini(&c);

    Hypha__V1__DpMetrics *m;
    assert_int_equal(hy_policy_metrics(&s, p.dp, &m), 0);
    assert_non_null(m);
    assert_int_equal(m->port, HY_POLICY_METRIC_PORT);
    assert_string_equal(m->path, "/metrics");
    assert_string_equal(m->address, "10.0.0.4");
    assert_string_equal(m->origin, "MeshMetric/all default");
    assert_int_equal(m->n_apps, 2);
    assert_string_equal(m->apps[0]->address, "127.0.0.1");
    assert_string_equal(m->apps[0]->path, "/metrics/prometheus");
    assert_int_equal(m->apps[0]->port, 8888);
    assert_null(m->apps[1]->name);
    assert_string_equal(m->apps[1]->address, "127.0.0.2");
    assert_string_equal(m->apps[1]->path, "/m");
    hypha__v1__dp_metrics__free_unpacked(m, NULL);
    hy_policy_set_fini(&s);

    /* backend-1: only the mesh-wide one */
    p.dp = find(&w, "Dataplane", "backend-1");
    assert_int_equal(hy_policy_select(pols, 2, &p, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(hy_policy_metrics(&s, p.dp, &m), 0);
    assert_int_equal(m->n_apps, 1);
    assert_string_equal(m->apps[0]->name, "mesh-app");
    hypha__v1__dp_metrics__free_unpacked(m, NULL);
    hy_policy_set_fini(&s);

    /* none selecting: nothing for the sidecar */
    assert_int_equal(hy_policy_select(pols, 0, &p, &s), 0);
    assert_int_equal(hy_policy_metrics(&s, p.dp, &m), 0);
    assert_null(m);
    hy_policy_set_fini(&s);
    hy_docs_fini(&w.docs);
}

/* The discovery group of a target, as text. */
static char *group(const struct hy_zone_dp_target *t)
{
    struct hy_buf b = {0};
    bool wrote;
    assert_int_equal(hy_zone_prom_sd_target(t, "east", false, &b, &wrote), 0);
    if (!wrote) {
        hy_buf_fini(&b);
        return NULL;
    }
    return b.data;
}

static void sd_groups(void **state)
{
    (void)state;
    struct world w;
    world_load(&w, DPS "type: ZoneIngress\nname: ingress-1\nnetworking:\n  address: 10.0.0.9\n"
                       "  port: 10001\n  advertisedAddress: 1.2.3.4\n  advertisedPort: 10001\n");
    Hypha__V1__DpMetrics m = HYPHA__V1__DP_METRICS__INIT;
    m.has_port = 1;
    m.port = 5670;
    m.path = "/stats";
    m.address = "10.0.0.4";
    struct hy_zone_dp_target t = {find(&w, "Dataplane", "web-1"), false, "127.0.0.1:9901", &m};
    char *g = group(&t);
    assert_string_equal(
        g, "{\"targets\":[\"10.0.0.4:5670\"],\"labels\":{\"__metrics_path__\":\"/stats\","
           "\"__scheme__\":\"http\",\"mesh\":\"default\",\"__meta_kuma_mesh\":\"default\","
           "\"zone\":\"east\",\"service\":\"web\",\"__meta_kuma_service\":\"web\","
           "\"dataplane\":\"web-1\",\"__meta_kuma_dataplane\":\"web-1\",\"proxy\":\"sidecar\","
           "\"kuma_io_zone\":\"east\",\"kuma_io_service\":\"web\","
           "\"kuma_io_services\":\",web,web-admin,\",\"kuma_io_protocol\":\"http\","
           "\"kuma_io_protocols\":\",http,\",\"version\":\"v1\",\"versions\":\",v1,\"}}");
    free(g);
    /* no MeshMetric: the admin server, a wildcard host made the proxy's address */
    t.metrics = NULL;
    t.admin_address = ":9901";
    g = group(&t);
    assert_non_null(strstr(g, "\"targets\":[\"10.0.0.4:9901\"]"));
    assert_non_null(strstr(g, "\"__metrics_path__\":\"/metrics\""));
    free(g);
    t.admin_address = "[::1]:9901";
    g = group(&t);
    assert_non_null(strstr(g, "\"targets\":[\"[::1]:9901\"]"));
    free(g);
    /* nothing said, no MeshMetric endpoint: no target */
    t.admin_address = "";
    assert_null(group(&t));
    /* an ingress: its admin server, no mesh */
    struct hy_zone_dp_target ti = {find(&w, "ZoneIngress", "ingress-1"), true, "0.0.0.0:9902",
                                   NULL};
    g = group(&ti);
    assert_string_equal(
        g, "{\"targets\":[\"10.0.0.9:9902\"],\"labels\":{\"__metrics_path__\":\"/metrics\","
           "\"__scheme__\":\"http\",\"zone\":\"east\",\"dataplane\":\"ingress-1\","
           "\"__meta_kuma_dataplane\":\"ingress-1\",\"proxy\":\"ingress\","
           "\"kuma_io_zone\":\"east\"}}");
    free(g);
    hy_docs_fini(&w.docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(docs_examples),
        cmocka_unit_test(refusals),
        cmocka_unit_test(merge),
        cmocka_unit_test(sd_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
