/* Transparent proxying in the zone (zone/dp_config.c): a Dataplane with
 * networking.transparentProxying gets an outbound for every service of its
 * mesh with the service's VIPs (common/vip.h) and names, and the Mesh's
 * passthrough; others get none of that; VIPs stay when services come; a
 * service coming or going reaches every sidecar of the mesh (the impact),
 * both through a new round and the live one brought up to date. */
#include <ftw.h>
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
#include "dp_parts.h"
#include "dp_server.h"
#include "error.h"
#include "store.h"
#include "vip.h"
#include "zone_config_fx.h"
#include "poison.h"

static Hypha__V1__DpOutbound *find_out(const Hypha__V1__DpConfig *c, const char *service)
{
    for (size_t i = 0; i < c->n_outbounds; i++)
        if (c->outbounds[i]->service && !strcmp(c->outbounds[i]->service, service))
            return c->outbounds[i];
    return NULL;
}

static const char *const world_yaml =
    "type: Mesh\nname: default\n---\n"
    "type: Dataplane\nmesh: default\nname: web-1\n"
    "networking:\n  address: 10.0.0.1\n"
    "  inbound: [{port: 9090, servicePort: 9091, tags: {hypha.io/service: web}}]\n"
    "  outbound: [{port: 10001, tags: {hypha.io/service: backend}}]\n"
    "  transparentProxying: {redirectPortInbound: 15006, redirectPortOutbound: 15001}\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: plain-1\n"
    "networking:\n  address: 10.0.0.4\n"
    "  inbound: [{port: 9090, tags: {hypha.io/service: plain}}]\n"
    "  outbound: [{port: 10001, tags: {hypha.io/service: backend}}]\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: backend-1\n"
    "networking:\n  address: 10.0.0.2\n"
    "  inbound: [{port: 8080, tags: {hypha.io/service: backend, hypha.io/protocol: http}}]\n"
    "---\n"
    "type: Dataplane\nmesh: default\nname: redis-1\n"
    "networking:\n  address: 10.0.0.3\n"
    "  inbound: [{port: 6379, tags: {hypha.io/service: redis}}]\n";

static uint32_t vip_of(const char *const *services, size_t n, const char *svc)
{
    uint32_t v[8];
    assert_int_equal(hy_vip_assign(services, n, v), 0);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(services[i], svc))
            return v[i];
    fail_msg("no %s", svc);
    return 0;
}

static void test_outbounds(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", world_yaml);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    /* every service of the mesh, its own too; the declared one keeps its port */
    assert_int_equal(c->n_outbounds, 4);
    const char *all[] = {"backend", "plain", "redis", "web"};
    for (size_t i = 0; i < 4; i++) {
        const Hypha__V1__DpOutbound *o = find_out(c, all[i]);
        assert_non_null(o);
        char v4[16], v6[40], n0[HY_VIP_NAME_MAX], n1[HY_VIP_NAME_MAX];
        uint32_t v = vip_of(all, 4, all[i]);
        hy_vip_format4(v, v4, sizeof(v4));
        hy_vip_format6(v, v6, sizeof(v6));
        assert_string_equal(o->vip, v4);
        assert_string_equal(o->vip6, v6);
        assert_int_equal(o->n_hostnames, 2);
        hy_vip_hostname(all[i], 0, n0, sizeof(n0));
        hy_vip_hostname(all[i], 1, n1, sizeof(n1));
        assert_string_equal(o->hostnames[0], n0);
        assert_string_equal(o->hostnames[1], n1);
        assert_true(o->has_port);
        assert_int_equal(o->port, strcmp(all[i], "backend") ? 0 : 10001);
        assert_true(o->sni && o->sni[0]);
    }
    assert_string_equal(find_out(c, "backend")->protocol, "http");
    assert_int_equal(find_out(c, "redis")->n_endpoints, 1);
    assert_non_null(c->transparent);
    assert_true(c->transparent->passthrough);
    hypha__v1__dp_config__free_unpacked(c, NULL);

    /* a sidecar that is not transparent: its own outbounds, no VIPs */
    c = config(f->s, "default", "plain-1");
    assert_int_equal(c->n_outbounds, 1);
    assert_null(c->outbounds[0]->vip);
    assert_int_equal(c->outbounds[0]->n_hostnames, 0);
    assert_null(c->transparent);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void test_passthrough(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", world_yaml);
    PUT(f->s, "global",
        "type: Mesh\nname: default\nnetworking: {outbound: {passthrough: false}}\n");
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    assert_non_null(c->transparent);
    assert_true(c->transparent->has_passthrough);
    assert_false(c->transparent->passthrough);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

static void test_stable(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", world_yaml);
    Hypha__V1__DpConfig *c = config(f->s, "default", "web-1");
    char *before = strdup(find_out(c, "backend")->vip);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    /* a new service: the others keep their addresses (no collision) */
    PUT(f->s, "east",
        "type: Dataplane\nmesh: default\nname: db-1\nnetworking:\n  address: 10.0.0.5\n"
        "  inbound: [{port: 5432, tags: {hypha.io/service: db}}]\n");
    c = config(f->s, "default", "web-1");
    assert_string_equal(find_out(c, "backend")->vip, before);
    assert_non_null(find_out(c, "db")->vip);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    /* gone again: its outbound and name too */
    del(f->s, "Dataplane", "default", "db-1");
    c = config(f->s, "default", "web-1");
    assert_null(find_out(c, "db"));
    assert_string_equal(find_out(c, "backend")->vip, before);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    free(before);
}

/* A service appearing, or turning its protocol, reaches web-1
 * (transparent) through the impact of a new round and of the live one
 * brought up to date; the live round computes what a new one does. */
static void test_impact(void **state)
{
    struct fx *f = *state;
    PUT(f->s, "global", world_yaml);
    struct hy_zone_dp_round *old = NULL, *live = NULL, *now = NULL;
    assert_int_equal(hy_zone_dp_round_load(f->s, &old), 0);
    assert_int_equal(hy_zone_dp_round_load(f->s, &live), 0);
    struct hy_store_changes seen = {0};
    assert_int_equal(hy_store_changes(f->s, 0, 0, &seen), 0);
    uint64_t rev = seen.to;
    hy_store_changes_fini(&seen);
    const char *cases[][2] = {
        {"db-1", "type: Dataplane\nmesh: default\nname: db-1\nnetworking:\n  address: 10.0.0.5\n"
                 "  inbound: [{port: 5432, tags: {hypha.io/service: db}}]\n"},
        {"redis-2", "type: Dataplane\nmesh: default\nname: redis-2\nnetworking:\n"
                    "  address: 10.0.0.6\n"
                    "  inbound: [{port: 6379, tags: {hypha.io/service: redis}}]\n"},
        /* db's only instance turns http: web never declared an outbound
         * to db, it reaches it by VIP */
        {"db-1", "type: Dataplane\nmesh: default\nname: db-1\nnetworking:\n  address: 10.0.0.5\n"
                 "  inbound: [{port: 5432, tags: {hypha.io/service: db, hypha.io/protocol: "
                 "http}}]\n"},
    };
    for (size_t k = 0; k < 3; k++) {
        PUT(f->s, "global", cases[k][1]); /* the origin of the others */
        assert_int_equal(hy_zone_dp_round_load(f->s, &now), 0);
        struct hy_store_change ch1 = {
            .type = "Dataplane", .mesh = "default", .name = (char *)cases[k][0]};
        struct hy_store_changes ch = {&ch1, 1, 0};
        struct hy_zone_dp_impact *im = NULL, *applied = NULL;
        assert_int_equal(hy_zone_dp_impact_new(old, now, &ch, &im), 0);
        struct hy_store_changes real = {0};
        assert_int_equal(hy_store_changes(f->s, rev, 0, &real), 0);
        assert_int_equal(hy_zone_dp_round_apply(live, f->s, &real, &applied), 0);
        rev = real.to;
        hy_store_changes_fini(&real);
        struct hy_resource *web = NULL;
        assert_int_equal(hy_store_get(f->s, "Dataplane", "default", "web-1", &web), 0);
        unsigned got = hy_zone_dp_impact_on(im, web);
        assert_int_equal(hy_zone_dp_impact_on(applied, web), got);
        if (k != 1 && !(got & HY_ZONE_DP_OUTBOUNDS)) /* a new service; a protocol turned */
            fail_msg("%s: impact on web-1 is %u, want its Outbounds", cases[k][0], got);
        /* the live round computes web's outbounds as a new one does */
        Hypha__V1__DpPart *p1 = NULL, *p2 = NULL;
        assert_int_equal(hy_zone_dp_parts_own(now, web, NULL, &p1), 0);
        assert_int_equal(hy_zone_dp_parts_own(live, web, NULL, &p2), 0);
        assert_string_equal(p1->version, p2->version);
        assert_int_equal(p1->n_outbounds, 5);
        protobuf_c_message_free_unpacked(&p1->base, NULL);
        protobuf_c_message_free_unpacked(&p2->base, NULL);
        hy_resource_free(web);
        hy_zone_dp_impact_free(im);
        hy_zone_dp_impact_free(applied);
        hy_zone_dp_round_free(old);
        old = now;
        now = NULL;
    }
    hy_zone_dp_round_free(old);
    hy_zone_dp_round_free(live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outbounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passthrough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_impact, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
