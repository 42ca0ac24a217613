/* The MeshTrafficPermission decision (common/permit.c) the sidecar
 * enforces and hyphactl explain reports: the order of deny rules, the
 * last matching from entry, allow rules and shadow denials; and the tag
 * URIs a certificate carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "permit.h"
#include "poison.h"

#define ALLOW HYPHA__V1__DP_PERMISSION__ACTION__Allow
#define DENY HYPHA__V1__DP_PERMISSION__ACTION__Deny
#define SHADOW HYPHA__V1__DP_PERMISSION__ACTION__AllowWithShadowDeny

struct perm {
    Hypha__V1__DpPermission p;
    Hypha__V1__DpPermission__TagsEntry tag, *tags[1];
};

static void perm(struct perm *x, int action, const char *key, const char *value, const char *origin)
{
    hypha__v1__dp_permission__init(&x->p);
    hypha__v1__dp_permission__tags_entry__init(&x->tag);
    x->p.has_action = 1;
    x->p.action = action;
    x->p.origin = (char *)origin;
    if (key) {
        x->tag.key = (char *)key;
        x->tag.value = (char *)value;
        x->tags[0] = &x->tag;
        x->p.tags = x->tags;
        x->p.n_tags = 1;
    }
}

static void tag_uris(void **state)
{
    (void)state;
    char uri[128];
    assert_true(hy_permit_tag_uri("hypha.io/service", "web", uri, sizeof(uri)));
    assert_string_equal(uri, "kuma://hypha.io/service/web");
    assert_true(hy_permit_tag_uri("path", "a/b", uri, sizeof(uri)));
    assert_string_equal(uri, "kuma://path/a%2Fb");
    assert_false(hy_permit_tag_uri("k", "a-very-long-value", uri, 12));
    struct hy_permit_peer p = {0};
    hy_permit_peer_add_uri(&p, "kuma://hypha.io/service/web");
    hy_permit_peer_add_uri(&p, "kuma://path/a%2Fb");
    hy_permit_peer_add_uri(&p, "spiffe://default/web"); /* not a tag */
    hy_permit_peer_add_uri(&p, "kuma://noslash");       /* no key */
    assert_int_equal(p.n, 2);
    assert_true(hy_permit_peer_has(&p, "hypha.io/service", "web"));
    assert_true(hy_permit_peer_has(&p, "path", "a/b"));
    assert_false(hy_permit_peer_has(&p, "hypha.io/service", "backend"));
}

static void decisions(void **state)
{
    (void)state;
    struct perm all, web, dev;
    perm(&all, DENY, NULL, NULL, "MeshTrafficPermission/mesh-deny from[0]");
    perm(&web, ALLOW, "hypha.io/service", "web", "MeshTrafficPermission/mesh-deny from[1]");
    perm(&dev, SHADOW, "env", "dev", "MeshTrafficPermission/shadow from[0]");
    Hypha__V1__DpPermission *v[] = {&all.p, &web.p, &dev.p};
    Hypha__V1__DpInbound in = HYPHA__V1__DP_INBOUND__INIT;
    in.permissions = v;
    in.n_permissions = 2;
    struct hy_permit_peer p = {0};
    hy_permit_peer_add(&p, "hypha.io/service", "web");
    struct hy_permit_decision d;
    hy_permit_decide(&in, "spiffe://default/web", &p, &d);
    assert_int_equal(d.result, HY_PERMIT_ALLOW); /* the later entry overrides */
    assert_string_equal(d.origin, "MeshTrafficPermission/mesh-deny from[1]");
    struct hy_permit_peer other = {0};
    hy_permit_peer_add(&other, "hypha.io/service", "other");
    hy_permit_decide(&in, "spiffe://default/other", &other, &d);
    assert_int_equal(d.result, HY_PERMIT_DENY);
    assert_string_equal(d.origin, "MeshTrafficPermission/mesh-deny from[0]");
    /* a shadow entry last: let in, reported */
    in.n_permissions = 3;
    hy_permit_peer_add(&p, "env", "dev");
    hy_permit_decide(&in, "spiffe://default/web", &p, &d);
    assert_int_equal(d.result, HY_PERMIT_SHADOW);
    /* a rules deny wins over every from entry */
    Hypha__V1__DpSpiffeMatch deny = HYPHA__V1__DP_SPIFFE_MATCH__INIT, *dv[] = {&deny};
    deny.has_prefix = deny.prefix = 1;
    deny.value = "spiffe://default/w";
    deny.origin = "MeshTrafficPermission/r rules[0].deny[0]";
    in.deny = dv;
    in.n_deny = 1;
    hy_permit_decide(&in, "spiffe://default/web", &p, &d);
    assert_int_equal(d.result, HY_PERMIT_DENY);
    assert_string_equal(d.origin, "MeshTrafficPermission/r rules[0].deny[0]");
    /* nothing at all: denied, no origin */
    Hypha__V1__DpInbound empty = HYPHA__V1__DP_INBOUND__INIT;
    hy_permit_decide(&empty, "spiffe://default/web", &p, &d);
    assert_int_equal(d.result, HY_PERMIT_DENY);
    assert_null(d.origin);
    /* an allow rule lets in what no from entry names; an exact match only */
    Hypha__V1__DpSpiffeMatch allow = HYPHA__V1__DP_SPIFFE_MATCH__INIT, *av[] = {&allow};
    allow.value = "spiffe://default/web";
    empty.allow = av;
    empty.n_allow = 1;
    hy_permit_decide(&empty, "spiffe://default/web", &p, &d);
    assert_int_equal(d.result, HY_PERMIT_ALLOW);
    hy_permit_decide(&empty, "spiffe://default/web2", &p, &d);
    assert_int_equal(d.result, HY_PERMIT_DENY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(tag_uris), cmocka_unit_test(decisions)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
