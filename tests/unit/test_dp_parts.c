/* A sidecar's config in parts (common/dp_parts.c): a whole config split
 * into parts assembles back to itself; updates apply on the version held
 * only, replace and remove parts, and every malformed one is refused with
 * what is wrong, leaving what is held as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dp_parts.h"
#include "error.h"
#include "wire.h"
#include "poison.h"

static Hypha__V1__DpEndpoint *endpoint(const char *addr, const char *zone, uint32_t prio)
{
    Hypha__V1__DpEndpoint *e = malloc(sizeof(*e));
    hypha__v1__dp_endpoint__init(e);
    e->address = strdup(addr);
    e->has_port = e->has_priority = 1;
    e->port = 20001;
    e->zone = zone ? strdup(zone) : NULL;
    e->priority = prio;
    return e;
}

/* A config: one inbound, outbounds to backend (two zones) and db. */
static Hypha__V1__DpConfig *sample(void)
{
    Hypha__V1__DpConfig *c = malloc(sizeof(*c));
    hypha__v1__dp_config__init(c);
    c->mesh = strdup("default");
    c->name = strdup("web-1");
    c->cert = strdup("CERT");
    c->chain = strdup("CHAIN");
    c->trust_bundle = strdup("BUNDLE");
    c->inbounds = calloc(1, sizeof(*c->inbounds));
    c->inbounds[0] = malloc(sizeof(Hypha__V1__DpInbound));
    hypha__v1__dp_inbound__init(c->inbounds[0]);
    c->inbounds[0]->service = strdup("web");
    c->n_inbounds = 1;
    c->outbounds = calloc(2, sizeof(*c->outbounds));
    const char *svc[] = {"backend", "db"};
    for (size_t i = 0; i < 2; i++) {
        Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
        hypha__v1__dp_outbound__init(o);
        o->service = strdup(svc[i]);
        o->has_port = 1;
        o->port = 10001 + (uint32_t)i;
        c->outbounds[c->n_outbounds++] = o;
    }
    Hypha__V1__DpOutbound *b = c->outbounds[0];
    b->endpoints = calloc(2, sizeof(*b->endpoints));
    b->endpoints[b->n_endpoints++] = endpoint("10.0.0.2", "east", 0);
    b->endpoints[b->n_endpoints++] = endpoint("10.0.0.3", "west", 1);
    return c;
}

/* Applies u on held: 0 and committed, or the code with why. */
static int apply(struct hy_dp_parts *held, Hypha__V1__DpConfigUpdate *u, char *why, size_t size)
{
    struct hy_dp_parts staged;
    int rc = hy_dp_parts_stage(held, u, &staged, why, size);
    if (rc == 0)
        hy_dp_parts_commit(held, &staged, u);
    return rc;
}

static Hypha__V1__DpPart *part(Hypha__V1__DpConfigUpdate *u, int kind, const char *key)
{
    for (size_t i = 0; i < u->n_parts; i++)
        if ((int)u->parts[i]->kind == kind &&
            !strcmp(key ? key : "", u->parts[i]->key ? u->parts[i]->key : ""))
            return u->parts[i];
    fail_msg("no part %d %s", kind, key ? key : "");
    return NULL;
}

static void test_split_assemble(void **state)
{
    (void)state;
    Hypha__V1__DpConfig *c = sample();
    Hypha__V1__DpConfigUpdate *u = NULL;
    assert_int_equal(hy_dp_parts_split(c, &u), 0);
    assert_int_equal(u->n_parts, 6); /* identity, bundle, inbounds, outbounds, 2 endpoints */
    assert_int_equal(strlen(u->version), HY_DP_VERSION_LEN);
    struct hy_dp_parts held = {0};
    char why[300] = "";
    assert_int_equal(apply(&held, u, why, sizeof(why)), 0);
    assert_string_equal(held.version, u->version);
    assert_int_equal(u->n_parts, 0); /* moved into held */
    Hypha__V1__DpConfig *a = NULL;
    assert_int_equal(hy_dp_parts_assemble(&held, &a, why, sizeof(why)), 0);
    assert_string_equal(a->version, held.version);
    assert_string_equal(a->cert, "CERT");
    assert_string_equal(a->trust_bundle, "BUNDLE");
    assert_int_equal(a->n_outbounds, 2);
    assert_int_equal(a->outbounds[0]->n_endpoints, 2);
    assert_int_equal(a->outbounds[0]->endpoints[1]->priority, 1); /* west, by its zone */
    assert_int_equal(a->outbounds[0]->n_zone_priorities, 0);      /* moved onto endpoints */
    assert_int_equal(a->outbounds[1]->n_endpoints, 0);
    /* the same config again: the same version */
    Hypha__V1__DpConfigUpdate *again = NULL;
    assert_int_equal(hy_dp_parts_split(c, &again), 0);
    assert_string_equal(again->version, held.version);
    hypha__v1__dp_config_update__free_unpacked(again, NULL);
    hypha__v1__dp_config__free_unpacked(a, NULL);
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    hy_dp_parts_fini(&held);
}

/* A later update carries only what changed, applies on the version held,
 * and can drop a service's endpoints; a zone-left-out endpoint is dropped. */
static void test_incremental(void **state)
{
    (void)state;
    Hypha__V1__DpConfig *c = sample();
    Hypha__V1__DpConfigUpdate *u = NULL;
    struct hy_dp_parts held = {0};
    char why[300] = "";
    assert_int_equal(hy_dp_parts_split(c, &u), 0);
    assert_int_equal(apply(&held, u, why, sizeof(why)), 0);
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    char v1[HY_DP_VERSION_LEN + 1];
    memcpy(v1, held.version, sizeof(v1));

    /* backend's endpoints change; db is no longer called */
    Hypha__V1__DpConfig *c2 = sample();
    c2->outbounds[0]->endpoints[1]->priority = HY_DP_PRIORITY_EXCLUDED;
    protobuf_c_message_free_unpacked(&c2->outbounds[1]->base, NULL);
    c2->n_outbounds = 1;
    Hypha__V1__DpConfigUpdate *whole = NULL;
    assert_int_equal(hy_dp_parts_split(c2, &whole), 0);
    Hypha__V1__DpConfigUpdate d = HYPHA__V1__DP_CONFIG_UPDATE__INIT;
    Hypha__V1__DpPart *ps[3];
    ps[0] = part(whole, HYPHA__V1__DP_PART__KIND__Outbounds, NULL);
    ps[1] = part(whole, HYPHA__V1__DP_PART__KIND__Endpoints, "backend");
    Hypha__V1__DpPart gone = HYPHA__V1__DP_PART__INIT;
    gone.has_kind = gone.has_removed = 1;
    gone.kind = HYPHA__V1__DP_PART__KIND__Endpoints;
    gone.key = (char *)"db";
    gone.removed = 1;
    assert_int_equal(hy_dp_part_stamp(&gone), 0);
    ps[2] = &gone;
    d.parts = ps;
    d.n_parts = 3;
    d.from_version = v1;
    d.version = whole->version;
    /* on another version than the one held: refused, nothing changes */
    d.from_version = (char *)"0123456789abcdef";
    assert_int_equal(apply(&held, &d, why, sizeof(why)), HY_EINVAL);
    assert_non_null(strstr(why, "the update applies on config 0123456789abcdef, this sidecar "
                                "holds "));
    assert_non_null(strstr(why, v1));
    assert_string_equal(held.version, v1);
    d.from_version = v1;
    struct hy_dp_parts staged;
    assert_int_equal(hy_dp_parts_stage(&held, &d, &staged, why, sizeof(why)), 0);
    assert_string_equal(staged.version, whole->version);
    Hypha__V1__DpConfig *a = NULL;
    assert_int_equal(hy_dp_parts_assemble(&staged, &a, why, sizeof(why)), 0);
    assert_int_equal(a->n_outbounds, 1);
    assert_int_equal(a->outbounds[0]->n_endpoints, 1); /* west left out */
    assert_string_equal(a->outbounds[0]->endpoints[0]->zone, "east");
    hypha__v1__dp_config__free_unpacked(a, NULL);
    hy_dp_parts_fini(&staged); /* not taken: held stays v1 */
    assert_string_equal(held.version, v1);
    assert_int_equal(held.n, 6);
    free((void *)gone.version);
    gone.version = NULL;
    hypha__v1__dp_config_update__free_unpacked(whole, NULL);
    hypha__v1__dp_config__free_unpacked(c2, NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    hy_dp_parts_fini(&held);
}

/* What a hostile or broken zone may send: each refused, saying what. */
static void test_refused(void **state)
{
    (void)state;
    Hypha__V1__DpConfig *c = sample();
    char why[300];
    struct hy_dp_parts held = {0}, staged;
    struct {
        const char *want;
        void (*mess)(Hypha__V1__DpConfigUpdate *u);
    } cases[] = {
        {"unknown kind", NULL},
        {"an Endpoints part must have a key", NULL},
        {"a Inbounds part has no key", NULL},
        {"is not its content's", NULL},
        {"is sent twice", NULL},
        {"not 0000000000000000 as the update says", NULL},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
        Hypha__V1__DpConfigUpdate *u = NULL;
        assert_int_equal(hy_dp_parts_split(c, &u), 0);
        Hypha__V1__DpPart *p = u->parts[0];
        switch (k) {
        case 0:
            p->kind = 42;
            break;
        case 1:
            p = part(u, HYPHA__V1__DP_PART__KIND__Endpoints, "db");
            free(p->key);
            p->key = NULL;
            hy_dp_part_stamp(p);
            break;
        case 2:
            p = part(u, HYPHA__V1__DP_PART__KIND__Inbounds, NULL);
            p->key = strdup("x");
            hy_dp_part_stamp(p);
            break;
        case 3:
            p = part(u, HYPHA__V1__DP_PART__KIND__TrustBundle, NULL);
            free(p->trust_bundle);
            p->trust_bundle = strdup("ANOTHER"); /* the version no longer names it */
            break;
        case 4: {
            Hypha__V1__DpPart *old = u->parts[1];
            u->parts[1] = (Hypha__V1__DpPart *)hy_dp_msg_copy(&p->base);
            protobuf_c_message_free_unpacked(&old->base, NULL);
            break;
        }
        case 5:
            free(u->version);
            u->version = strdup("0000000000000000");
            break;
        }
        int rc = hy_dp_parts_stage(&held, u, &staged, why, sizeof(why));
        if (rc != HY_EINVAL || !strstr(why, cases[k].want))
            fail_msg("case %zu: rc %d, why \"%s\", want \"%s\"", k, rc, why, cases[k].want);
        assert_int_equal(staged.n, 0);
        hypha__v1__dp_config_update__free_unpacked(u, NULL);
    }
    /* parts missing: no config */
    Hypha__V1__DpConfigUpdate *u = NULL;
    assert_int_equal(hy_dp_parts_split(c, &u), 0);
    struct hy_dp_parts some = {.v = u->parts, .n = 3};
    assert_int_equal(hy_dp_parts_sort(&some), 0);
    Hypha__V1__DpConfig *a = NULL;
    assert_int_equal(hy_dp_parts_assemble(&some, &a, why, sizeof(why)), HY_EINVAL);
    assert_string_equal(why, "no Outbounds part");
    some.n = 5; /* no Endpoints for db */
    assert_int_equal(hy_dp_parts_sort(&some), 0);
    assert_int_equal(hy_dp_parts_assemble(&some, &a, why, sizeof(why)), HY_EINVAL);
    assert_non_null(strstr(why, "no Endpoints part for service"));
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

/* Names for a Hello: one per part, and the whole version they make. */
static void test_refs(void **state)
{
    (void)state;
    Hypha__V1__DpConfig *c = sample();
    Hypha__V1__DpConfigUpdate *u = NULL;
    struct hy_dp_parts held = {0};
    char why[300];
    assert_int_equal(hy_dp_parts_split(c, &u), 0);
    assert_int_equal(apply(&held, u, why, sizeof(why)), 0);
    Hypha__V1__DpPartRef **refs = NULL;
    size_t n = 0;
    assert_int_equal(hy_dp_parts_refs(&held, &refs, &n), 0);
    assert_int_equal(n, 6);
    struct hy_dp_ref r[6];
    for (size_t i = 0; i < n; i++)
        r[n - 1 - i] = (struct hy_dp_ref){(int)refs[i]->kind, refs[i]->key, refs[i]->version};
    char v[HY_DP_VERSION_LEN + 1];
    hy_dp_whole_version(r, n, v); /* in any order */
    assert_string_equal(v, held.version);
    for (size_t i = 0; i < n; i++)
        free(refs[i]);
    free(refs);
    hy_dp_whole_version(r, 0, v);
    assert_string_equal(v, "");
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
    hy_dp_parts_fini(&held);
}

/* An update packed from parts packed once is what protobuf-c packs. */
static void test_update_pack(void **state)
{
    (void)state;
    Hypha__V1__DpConfig *c = sample();
    Hypha__V1__DpConfigUpdate *u = NULL;
    assert_int_equal(hy_dp_parts_split(c, &u), 0);
    u->from_version = strdup("00000000000000ff");
    struct hy_dp_packed v[8];
    uint8_t *own[8];
    for (size_t i = 0; i < u->n_parts; i++) {
        v[i].len = hypha__v1__dp_part__get_packed_size(u->parts[i]);
        v[i].data = own[i] = malloc(v[i].len);
        hypha__v1__dp_part__pack(u->parts[i], own[i]);
    }
    uint8_t *mine = NULL;
    size_t len = 0;
    assert_int_equal(hy_dp_update_pack(u->version, u->from_version, v, u->n_parts, &mine, &len), 0);
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_UPDATE;
    m.update = u;
    size_t want = hypha__v1__dp_message__get_packed_size(&m);
    uint8_t *theirs = malloc(want);
    hypha__v1__dp_message__pack(&m, theirs);
    assert_int_equal(len, want);
    assert_memory_equal(mine, theirs, want);
    /* and with no from_version, no parts */
    free(mine);
    assert_int_equal(hy_dp_update_pack("v", NULL, NULL, 0, &mine, &len), 0);
    Hypha__V1__DpMessage *back = hypha__v1__dp_message__unpack(NULL, len, mine);
    assert_non_null(back);
    assert_string_equal(back->update->version, "v");
    assert_null(back->update->from_version);
    assert_int_equal(back->update->n_parts, 0);
    hypha__v1__dp_message__free_unpacked(back, NULL);
    free(mine);
    free(theirs);
    for (size_t i = 0; i < u->n_parts; i++)
        free(own[i]);
    hypha__v1__dp_config_update__free_unpacked(u, NULL);
    hypha__v1__dp_config__free_unpacked(c, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_assemble), cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_refused),        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_update_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
