/* The MeshHTTPRoute table (sidecar/l7_route.c): which route takes a
 * request (path Exact / PathPrefix by segments / RegularExpression,
 * method, headers, query parameters), weighted backends and the TCP
 * split, and the filters (header modifiers, URL rewrites by the Gateway
 * API's table, redirects, mirrors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "error.h"
#include "l7.h"
#include "l7_build.h"
#include "l7_route.h"
#include "poison.h"

static Hypha__V1__DpOutbound *outbound(const char *service)
{
    Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
    hypha__v1__dp_outbound__init(o);
    o->service = l7_str(service);
    return o;
}

static Hypha__V1__DpHttpRoute *add_route(Hypha__V1__DpOutbound *o, const char *name)
{
    Hypha__V1__DpHttpRoute *r = malloc(sizeof(*r));
    hypha__v1__dp_http_route__init(r);
    r->name = l7_str(name);
    L7_PUSH(o->http_routes, o->n_http_routes, r);
    return r;
}

static Hypha__V1__DpHttpMatch *add_match(Hypha__V1__DpHttpRoute *r, const char *path_type,
                                         const char *path, const char *method)
{
    Hypha__V1__DpHttpMatch *m = malloc(sizeof(*m));
    hypha__v1__dp_http_match__init(m);
    m->path_type = l7_str(path_type);
    m->path = l7_str(path);
    m->method = l7_str(method);
    L7_PUSH(r->matches, r->n_matches, m);
    return m;
}

static Hypha__V1__DpHttpFilter *add_filter(Hypha__V1__DpHttpRoute *r, const char *type)
{
    Hypha__V1__DpHttpFilter *f = malloc(sizeof(*f));
    hypha__v1__dp_http_filter__init(f);
    f->type = l7_str(type);
    L7_PUSH(r->filters, r->n_filters, f);
    return f;
}

/* One rule, tried on one request. */
struct match_case {
    const char *path_type, *path, *method;       /* the match */
    const char *htype, *hname, *hvalue;          /* one header match, if htype */
    const char *qtype, *qname, *qvalue;          /* one query match, if qtype */
    const char *req_method, *target, *fields[7]; /* the request */
    bool want;
};

static const struct match_case match_cases[] = {
    /* PathPrefix: whole segments; a trailing '/' of the prefix ignored */
    {"PathPrefix", "/a", .target = "/a", .want = true},
    {"PathPrefix", "/a", .target = "/a/", .want = true},
    {"PathPrefix", "/a", .target = "/a/b", .want = true},
    {"PathPrefix", "/a", .target = "/a?x=1", .want = true},
    {"PathPrefix", "/a", .target = "/ab", .want = false},
    {"PathPrefix", "/a", .target = "/", .want = false},
    {"PathPrefix", "/a", .target = "/A", .want = false},
    {"PathPrefix", "/a/", .target = "/a", .want = true},
    {"PathPrefix", "/a/", .target = "/a/b", .want = true},
    {"PathPrefix", "/a/", .target = "/ab", .want = false},
    {"PathPrefix", "/", .target = "/anything/at/all", .want = true},
    {"PathPrefix", "/a/b", .target = "/a/b/c", .want = true},
    {"PathPrefix", "/a/b", .target = "/a/bc", .want = false},
    /* Exact: the path without the query */
    {"Exact", "/a", .target = "/a", .want = true},
    {"Exact", "/a", .target = "/a?q=1", .want = true},
    {"Exact", "/a", .target = "/a/", .want = false},
    {"Exact", "/a", .target = "/ab", .want = false},
    /* no percent-decoding, as Envoy */
    {"Exact", "/a%20b", .target = "/a%20b", .want = true},
    {"Exact", "/a b", .target = "/a%20b", .want = false},
    /* RegularExpression: the whole path */
    {"RegularExpression", "/v[0-9]+/items", .target = "/v12/items", .want = true},
    {"RegularExpression", "/v[0-9]+/items", .target = "/v12/items?x=1", .want = true},
    {"RegularExpression", "/v[0-9]+/items", .target = "/v12/items/3", .want = false},
    {"RegularExpression", "/v[0-9]+/items", .target = "/x/v12/items", .want = false},
    {"RegularExpression", "/a|/b", .target = "/b", .want = true},
    {"RegularExpression", "/a|/b", .target = "/ab", .want = false},
    /* the literal prefix tried first must not refuse a match */
    {"RegularExpression", "/v1*/x", .target = "/v/x", .want = true},
    {"RegularExpression", "/ab?c", .target = "/ac", .want = true},
    {"RegularExpression", "/a{0}b", .target = "/b", .want = true},
    {"RegularExpression", "/svc1/v[0-9]+", .target = "/svc2/v1", .want = false},
    {.htype = "RegularExpression",
     "x-v",
     "ab*c",
     .target = "/",
     .fields = {"x-v", "ac"},
     .want = true},
    /* method, exact */
    {.method = "GET", .req_method = "GET", .target = "/", .want = true},
    {.method = "GET", .req_method = "POST", .target = "/", .want = false},
    {.method = "GET", .req_method = "get", .target = "/", .want = false},
    {"PathPrefix", "/a", "POST", .req_method = "POST", .target = "/a/1", .want = true},
    {"PathPrefix", "/a", "POST", .req_method = "GET", .target = "/a/1", .want = false},
    /* headers: names without case, values with it */
    {.htype = "Exact", "x-env", "dev", .target = "/", .fields = {"X-Env", "dev"}, .want = true},
    {.htype = "Exact", "x-env", "dev", .target = "/", .fields = {"x-env", "Dev"}, .want = false},
    {.htype = "Exact", "x-env", "dev", .target = "/", .want = false},
    {.htype = NULL, .target = "/", .fields = {"x-env", "dev"}, .want = true},
    {.htype = "Prefix", "x-env", "de", .target = "/", .fields = {"x-env", "dev"}, .want = true},
    {.htype = "Prefix", "x-env", "ev", .target = "/", .fields = {"x-env", "dev"}, .want = false},
    {.htype = "RegularExpression",
     "x-v",
     "[0-9]+",
     .target = "/",
     .fields = {"x-v", "42"},
     .want = true},
    {.htype = "RegularExpression",
     "x-v",
     "[0-9]+",
     .target = "/",
     .fields = {"x-v", "42a"},
     .want = false},
    {.htype = "Present", "x-a", .target = "/", .fields = {"x-a", ""}, .want = true},
    {.htype = "Present", "x-a", .target = "/", .fields = {"x-b", "1"}, .want = false},
    {.htype = "Absent", "x-a", .target = "/", .fields = {"x-b", "1"}, .want = true},
    {.htype = "Absent", "x-a", .target = "/", .fields = {"X-A", "1"}, .want = false},
    /* several fields of one name: one value joined by ",", as Envoy */
    {.htype = "Exact",
     "x-a",
     "1",
     .target = "/",
     .fields = {"x-a", "1", "x-a", "2"},
     .want = false},
    {.htype = "Exact",
     "x-a",
     "1,2",
     .target = "/",
     .fields = {"x-a", "1", "x-a", "2"},
     .want = true},
    {.htype = "RegularExpression",
     "x-a",
     "(.*,)?2(,.*)?",
     .target = "/",
     .fields = {"x-a", "1", "x-a", "2"},
     .want = true},
    /* query parameters: Exact, RegularExpression, the first value */
    {.qtype = "Exact", "q", "1", .target = "/p?q=1", .want = true},
    {.qtype = "Exact", "q", "1", .target = "/p?r=2&q=1", .want = true},
    {.qtype = "Exact", "q", "1", .target = "/p?q=2", .want = false},
    {.qtype = "Exact", "q", "1", .target = "/p?q=2&q=1", .want = false},
    {.qtype = "Exact", "q", "1", .target = "/p", .want = false},
    {.qtype = "Exact", "q", "", .target = "/p?q", .want = true},
    {.qtype = "Exact", "q", "a%20b", .target = "/p?q=a%20b", .want = true},
    {.qtype = "RegularExpression", "id", "[0-9]+", .target = "/p?id=77&x", .want = true},
    {.qtype = "RegularExpression", "id", "[0-9]+", .target = "/p?id=7x", .want = false},
    /* all conditions of a match hold */
    {"PathPrefix",
     "/api",
     "GET",
     "Exact",
     "x-env",
     "dev",
     "Exact",
     "v",
     "2",
     "GET",
     "/api/x?v=2",
     {"x-env", "dev"},
     true},
    {"PathPrefix",
     "/api",
     "GET",
     "Exact",
     "x-env",
     "dev",
     "Exact",
     "v",
     "2",
     "GET",
     "/api/x?v=3",
     {"x-env", "dev"},
     false},
};

static void matching(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        Hypha__V1__DpOutbound *o = outbound("backend");
        Hypha__V1__DpHttpMatch *m = add_match(add_route(o, "r"), c->path_type, c->path, c->method);
        if (c->htype)
            L7_PUSH(m->headers, m->n_headers, l7_hmatch(c->htype, c->hname, c->hvalue));
        if (c->qtype)
            L7_PUSH(m->query_params, m->n_query_params, l7_hmatch(c->qtype, c->qname, c->qvalue));
        struct hy_l7_routes *r;
        char why[256];
        assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
        struct hy_http_head h;
        l7_request(&h, c->req_method ? c->req_method : "GET", c->target, "backend", c->fields);
        int got = hy_l7_route_match(r, &h);
        if (got != (c->want ? 0 : -1))
            fail_msg("case %zu: %s %s: got %d", i, c->path ? c->path : "", c->target, got);
        hy_http_head_fini(&h);
        hy_l7_routes_free(r);
        hypha__v1__dp_outbound__free_unpacked(o, NULL);
    }
}

static void regex_prefix(void **state)
{
    (void)state;
    static const struct {
        const char *re;
        size_t want;
    } cases[] = {
        {"/svc/v[0-9]+", 6}, {"abc", 3},   {"ab*", 1}, {"ab?", 1}, {"ab+", 1},
        {"ab{2}", 1},        {"a\\.b", 1}, {"a|b", 0}, {"^/a", 0}, {"(ab)c", 0},
        {".*", 0},           {"", 0},      {"/a$", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (hy_l7_regex_prefix(cases[i].re) != cases[i].want)
            fail_msg("case %zu: %s: %zu", i, cases[i].re, hy_l7_regex_prefix(cases[i].re));
}

static void order_and_default(void **state)
{
    (void)state;
    Hypha__V1__DpOutbound *o = outbound("backend");
    struct hy_l7_routes *r;
    char why[256];
    /* no routes: one default route to the service */
    assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
    struct hy_http_head h;
    l7_request(&h, "GET", "/x", "backend", NULL);
    assert_int_equal(hy_l7_routes_count(r), 1);
    assert_int_equal(hy_l7_route_match(r, &h), 0);
    assert_null(hy_l7_route_get(r, 0));
    assert_string_equal(hy_l7_route_name(r, 0), "default");
    assert_string_equal(hy_l7_route_backend(r, 0, 12345), "backend");
    hy_l7_routes_free(r);
    /* the first route that holds; a route's matches are alternatives */
    Hypha__V1__DpHttpRoute *a = add_route(o, "MeshHTTPRoute/a to[0].rules[0]");
    add_match(a, "Exact", "/x", NULL);
    add_match(a, "PathPrefix", "/y", NULL);
    add_match(add_route(o, "MeshHTTPRoute/b to[0].rules[0]"), "PathPrefix", "/", NULL);
    add_route(o, "MeshHTTPRoute/c to[0].rules[0]"); /* no matches: every request */
    assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
    assert_int_equal(hy_l7_route_match(r, &h), 0);
    assert_string_equal(hy_l7_route_name(r, 0), "MeshHTTPRoute/a to[0].rules[0]");
    hy_http_head_fini(&h);
    l7_request(&h, "GET", "/y/1", "backend", NULL);
    assert_int_equal(hy_l7_route_match(r, &h), 0);
    hy_http_head_fini(&h);
    l7_request(&h, "GET", "/z", "backend", NULL);
    assert_int_equal(hy_l7_route_match(r, &h), 1);
    hy_http_head_fini(&h);
    l7_request(&h, "GET", "*", "backend", NULL); /* not a path: only the catch-all */
    assert_int_equal(hy_l7_route_match(r, &h), 2);
    assert_ptr_equal(hy_l7_route_get(r, 2), o->http_routes[2]);
    hy_http_head_fini(&h);
    hy_l7_routes_free(r);
    /* none holds: -1 (404) */
    hypha__v1__dp_http_route__free_unpacked(o->http_routes[2], NULL);
    hypha__v1__dp_http_route__free_unpacked(o->http_routes[1], NULL);
    o->n_http_routes = 1;
    assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
    l7_request(&h, "GET", "/z", "backend", NULL);
    assert_int_equal(hy_l7_route_match(r, &h), -1);
    hy_http_head_fini(&h);
    /* a long target with a query, split off the stack */
    char big[2048];
    memset(big, 'a', sizeof(big));
    memcpy(big, "/y/", 3);
    memcpy(big + 1000, "?q=1", 4);
    big[sizeof(big) - 1] = '\0';
    l7_request(&h, "GET", big, "backend", NULL);
    assert_int_equal(hy_l7_route_match(r, &h), 0);
    hy_http_head_fini(&h);
    hy_l7_routes_free(r);
    hypha__v1__dp_outbound__free_unpacked(o, NULL);
}

static void bad_config(void **state)
{
    (void)state;
    static const struct {
        const char *path_type, *path, *htype, *qtype, *want;
    } cases[] = {
        {"RegularExpression", "/a(", NULL, NULL, "bad regular expression '/a('"},
        {"Nope", "/a", NULL, NULL, "unknown path type 'Nope'"},
        {NULL, NULL, "Sometimes", NULL, "unknown match type 'Sometimes'"},
        {NULL, NULL, "RegularExpression", NULL, "bad regular expression '[z-a]'"},
        {NULL, NULL, NULL, "Present", "only Exact and RegularExpression"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpOutbound *o = outbound("backend");
        add_match(add_route(o, "MeshHTTPRoute/ok to[0].rules[0]"), "PathPrefix", "/", NULL);
        Hypha__V1__DpHttpMatch *m = add_match(add_route(o, "MeshHTTPRoute/bad to[0].rules[1]"),
                                              cases[i].path_type, cases[i].path, NULL);
        if (cases[i].htype)
            L7_PUSH(m->headers, m->n_headers, l7_hmatch(cases[i].htype, "x-h", "[z-a]"));
        if (cases[i].qtype)
            L7_PUSH(m->query_params, m->n_query_params, l7_hmatch(cases[i].qtype, "q", NULL));
        struct hy_l7_routes *r = NULL;
        char why[256] = "";
        assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), HY_EINVAL);
        assert_null(r);
        if (!strstr(why, "MeshHTTPRoute/bad to[0].rules[1]") || !strstr(why, cases[i].want) ||
            !strstr(why, "outbound backend"))
            fail_msg("case %zu: %s", i, why);
        hypha__v1__dp_outbound__free_unpacked(o, NULL);
    }
}

static void backends(void **state)
{
    (void)state;
    Hypha__V1__DpOutbound *o = outbound("backend");
    Hypha__V1__DpHttpRoute *rt = add_route(o, "split");
    L7_PUSH(rt->backends, rt->n_backends, l7_backend("backend-v1", 90));
    L7_PUSH(rt->backends, rt->n_backends, l7_backend("backend-v2", 10));
    Hypha__V1__DpHttpRoute *zero = add_route(o, "zero");
    L7_PUSH(zero->backends, zero->n_backends, l7_backend("backend-v1", 0));
    Hypha__V1__DpHttpRoute *dflt = add_route(o, "unweighted");
    L7_PUSH(dflt->backends, dflt->n_backends, l7_backend("a", -1));
    L7_PUSH(dflt->backends, dflt->n_backends, l7_backend("b", -1));
    add_route(o, "no backends");
    struct hy_l7_routes *r;
    char why[256];
    assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
    unsigned v1 = 0, a = 0;
    for (uint64_t rnd = 0; rnd < 1000; rnd++) {
        v1 += !strcmp(hy_l7_route_backend(r, 0, rnd), "backend-v1");
        a += !strcmp(hy_l7_route_backend(r, 2, rnd), "a");
    }
    assert_int_equal(v1, 900);
    assert_int_equal(a, 500);                  /* unset weights: 1 each */
    assert_null(hy_l7_route_backend(r, 1, 7)); /* every weight 0: 500 */
    assert_string_equal(hy_l7_route_backend(r, 3, 7), "backend");
    hy_l7_routes_free(r);
    /* MeshTCPRoute */
    assert_string_equal(hy_l7_tcp_backend(o, 3), "backend");
    L7_PUSH(o->tcp_backends, o->n_tcp_backends, l7_backend("tcp-a", 1));
    L7_PUSH(o->tcp_backends, o->n_tcp_backends, l7_backend("tcp-b", 3));
    unsigned b = 0;
    for (uint64_t rnd = 0; rnd < 400; rnd++)
        b += !strcmp(hy_l7_tcp_backend(o, rnd), "tcp-b");
    assert_int_equal(b, 300);
    /* the ref itself (what the sidecar connects by, subset tags and all) */
    b = 0;
    for (uint64_t rnd = 0; rnd < 400; rnd++)
        b += hy_l7_tcp_backend_ref(o, rnd) == o->tcp_backends[1];
    assert_int_equal(b, 300);
    o->tcp_backends[0]->weight = o->tcp_backends[1]->weight = 0;
    assert_null(hy_l7_tcp_backend(o, 3));
    assert_null(hy_l7_tcp_backend_ref(o, 3));
    hypha__v1__dp_outbound__free_unpacked(o, NULL);
}

/* A tag of a DpEndpoint, of a DpBackendRef. */
static void add_tag(Hypha__V1__DpEndpoint *e, const char *key, const char *value)
{
    Hypha__V1__DpEndpoint__TagsEntry *t = malloc(sizeof(*t));
    hypha__v1__dp_endpoint__tags_entry__init(t);
    t->key = l7_str(key);
    t->value = l7_str(value);
    L7_PUSH(e->tags, e->n_tags, t);
}

static void add_ref_tag(Hypha__V1__DpBackendRef *b, const char *key, const char *value)
{
    Hypha__V1__DpBackendRef__TagsEntry *t = malloc(sizeof(*t));
    hypha__v1__dp_backend_ref__tags_entry__init(t);
    t->key = l7_str(key);
    t->value = l7_str(value);
    L7_PUSH(b->tags, b->n_tags, t);
}

/* MeshServiceSubset: the weighted pick as the backendRef itself, and an
 * endpoint in its subset iff it carries every one of its tags. */
static void subsets(void **state)
{
    (void)state;
    Hypha__V1__DpOutbound *o = outbound("backend");
    Hypha__V1__DpHttpRoute *rt = add_route(o, "split");
    Hypha__V1__DpBackendRef *v1 = l7_backend("backend", 1), *v2 = l7_backend("backend", 1);
    add_ref_tag(v1, "version", "v1");
    add_ref_tag(v2, "version", "v2");
    add_ref_tag(v2, "zone", "a");
    L7_PUSH(rt->backends, rt->n_backends, v1);
    L7_PUSH(rt->backends, rt->n_backends, v2);
    add_route(o, "no backends");
    struct hy_l7_routes *r;
    char why[256];
    assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
    unsigned n2 = 0;
    for (uint64_t rnd = 0; rnd < 1000; rnd++) {
        const Hypha__V1__DpBackendRef *b = hy_l7_route_backend_ref(r, 0, rnd);
        assert_true(b == v1 || b == v2);
        assert_string_equal(hy_l7_route_backend(r, 0, rnd), b->service); /* the same pick */
        n2 += b == v2;
    }
    assert_int_equal(n2, 500);
    assert_null(hy_l7_route_backend_ref(r, 1, 7)); /* no backends: the whole service */
    Hypha__V1__DpEndpoint e = HYPHA__V1__DP_ENDPOINT__INIT;
    assert_false(hy_l7_subset_has(v1, &e));  /* no tags: in no subset */
    assert_true(hy_l7_subset_has(NULL, &e)); /* but in the whole service */
    add_tag(&e, "version", "v2");
    assert_false(hy_l7_subset_has(v1, &e));
    assert_false(hy_l7_subset_has(v2, &e)); /* zone: a missing */
    add_tag(&e, "zone", "a");
    assert_true(hy_l7_subset_has(v2, &e));
    add_tag(&e, "extra", "x");
    assert_true(hy_l7_subset_has(v2, &e)); /* more tags than asked: still in */
    for (size_t k = 0; k < e.n_tags; k++)
        protobuf_c_message_free_unpacked(&e.tags[k]->base, NULL);
    free(e.tags);
    hy_l7_routes_free(r);
    hypha__v1__dp_outbound__free_unpacked(o, NULL);
}

static Hypha__V1__DpHeaderModifier *modifier(const char *set, const char *add, const char *remove)
{
    Hypha__V1__DpHeaderModifier *m = malloc(sizeof(*m));
    hypha__v1__dp_header_modifier__init(m);
    if (set)
        L7_PUSH(m->set, m->n_set, l7_header(set, "set"));
    if (add)
        L7_PUSH(m->add, m->n_add, l7_header(add, "added"));
    if (remove)
        L7_PUSH(m->remove, m->n_remove, l7_str(remove));
    return m;
}

static void header_filters(void **state)
{
    (void)state;
    Hypha__V1__DpOutbound *o = outbound("backend");
    Hypha__V1__DpHttpRoute *rt = add_route(o, "r");
    add_filter(rt, "RequestHeaderModifier")->request_header_modifier =
        modifier("x-set", "x-add", "x-gone");
    add_filter(rt, "ResponseHeaderModifier")->response_header_modifier =
        modifier("x-resp", NULL, "server");
    struct hy_l7_routes *r;
    char why[256];
    assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
    struct hy_http_head h;
    l7_request(
        &h, "GET", "/", "backend",
        (const char *[]){"X-Set", "old", "x-set", "old2", "x-add", "first", "X-Gone", "1", NULL});
    struct hy_l7_redirect rd;
    const char *mirror;
    assert_int_equal(hy_l7_route_request(r, 0, &h, 0, &rd, &mirror), 0);
    assert_null(rd.location);
    assert_null(mirror);
    assert_null(hy_http_head_get(&h, "x-gone"));
    size_t at = 0;
    assert_string_equal(hy_http_head_find(&h, "x-set", &at)->value, "set");
    assert_null(hy_http_head_find(&h, "x-set", &at)); /* set replaces every field */
    at = 0;
    assert_string_equal(hy_http_head_find(&h, "x-add", &at)->value, "first");
    assert_string_equal(hy_http_head_find(&h, "x-add", &at)->value, "added");
    hy_http_head_fini(&h);
    struct hy_http_head resp;
    l7_response(&resp, 200, (const char *[]){"Server", "app", NULL});
    assert_int_equal(hy_l7_route_response(r, 0, &resp), 0);
    assert_null(hy_http_head_get(&resp, "server"));
    assert_string_equal(hy_http_head_get(&resp, "x-resp"), "set");
    hy_http_head_fini(&resp);
    hy_l7_routes_free(r);
    hypha__v1__dp_outbound__free_unpacked(o, NULL);
}

/* The Gateway API's ReplacePrefixMatch table (HTTPPathModifier), and
 * ReplaceFullPath; the query stays. */
static void rewrites(void **state)
{
    (void)state;
    static const struct {
        const char *prefix, *type, *repl, *target, *want;
    } cases[] = {
        {"/foo", "ReplacePrefixMatch", "/xyz", "/foo/bar", "/xyz/bar"},
        {"/foo", "ReplacePrefixMatch", "/xyz/", "/foo/bar", "/xyz/bar"},
        {"/foo/", "ReplacePrefixMatch", "/xyz", "/foo/bar", "/xyz/bar"},
        {"/foo/", "ReplacePrefixMatch", "/xyz/", "/foo/bar", "/xyz/bar"},
        {"/foo", "ReplacePrefixMatch", "/xyz", "/foo", "/xyz"},
        {"/foo", "ReplacePrefixMatch", "/xyz", "/foo/", "/xyz/"},
        {"/foo", "ReplacePrefixMatch", "", "/foo/bar", "/bar"},
        {"/foo", "ReplacePrefixMatch", "", "/foo/", "/"},
        {"/foo", "ReplacePrefixMatch", "", "/foo", "/"},
        {"/foo", "ReplacePrefixMatch", "/", "/foo/", "/"},
        {"/foo", "ReplacePrefixMatch", "/", "/foo", "/"},
        {"/foo", "ReplacePrefixMatch", "/xyz", "/foo/bar?a=1&b=2", "/xyz/bar?a=1&b=2"},
        {"/foo", "ReplaceFullPath", "/new", "/foo/bar?a=1", "/new?a=1"},
        {"/foo", "ReplaceFullPath", "/new", "/foo", "/new"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpOutbound *o = outbound("backend");
        Hypha__V1__DpHttpRoute *rt = add_route(o, "r");
        add_match(rt, "Exact", "/other", NULL);
        add_match(rt, "PathPrefix", cases[i].prefix, NULL);
        Hypha__V1__DpHttpFilter__Rewrite *rw = malloc(sizeof(*rw));
        hypha__v1__dp_http_filter__rewrite__init(rw);
        rw->path_type = l7_str(cases[i].type);
        rw->path = l7_str(cases[i].repl);
        rw->hostname = l7_str("new.example");
        add_filter(rt, "URLRewrite")->url_rewrite = rw;
        struct hy_l7_routes *r;
        char why[256];
        assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
        struct hy_http_head h;
        l7_request(&h, "GET", cases[i].target, "backend:80", NULL);
        assert_int_equal(hy_l7_route_match(r, &h), 0);
        struct hy_l7_redirect rd;
        const char *mirror;
        assert_int_equal(hy_l7_route_request(r, 0, &h, 0, &rd, &mirror), 0);
        if (strcmp(h.target, cases[i].want))
            fail_msg("case %zu: %s -> %s, want %s", i, cases[i].target, h.target, cases[i].want);
        assert_string_equal(h.authority, "new.example");
        assert_false(hy_l7_route_host_to_backend(r, 0));
        hy_http_head_fini(&h);
        hy_l7_routes_free(r);
        hypha__v1__dp_outbound__free_unpacked(o, NULL);
    }
}

static void redirects(void **state)
{
    (void)state;
    static const struct {
        const char *scheme, *hostname, *path_type, *path;
        uint32_t port, status;
        const char *authority, *target, *want;
        unsigned want_status;
    } cases[] = {
        {NULL, NULL, NULL, NULL, 0, 0, "web:8080", "/a/b?x=1", "http://web:8080/a/b?x=1", 302},
        {"https", NULL, NULL, NULL, 0, 301, "web:8080", "/a", "https://web/a", 301},
        {"https", "example.org", NULL, NULL, 8443, 308, "web", "/a", "https://example.org:8443/a",
         308},
        {NULL, "example.org", NULL, NULL, 80, 0, "web:8080", "/a", "http://example.org/a", 302},
        {NULL, NULL, "ReplaceFullPath", "/new", 0, 0, "web", "/a/b?x=1", "http://web/new?x=1", 302},
        {NULL, NULL, "ReplacePrefixMatch", "/v2", 0, 0, "web", "/a/b", "http://web/v2/b", 302},
        {"https", NULL, NULL, NULL, 443, 0, "[::1]:8080", "/", "https://[::1]/", 302},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpOutbound *o = outbound("backend");
        Hypha__V1__DpHttpRoute *rt = add_route(o, "r");
        add_match(rt, "PathPrefix", "/a", NULL);
        add_filter(rt, "RequestHeaderModifier")->request_header_modifier =
            modifier("x-not", NULL, NULL);
        Hypha__V1__DpHttpFilter__Redirect *rd = malloc(sizeof(*rd));
        hypha__v1__dp_http_filter__redirect__init(rd);
        rd->scheme = l7_str(cases[i].scheme);
        rd->hostname = l7_str(cases[i].hostname);
        rd->path_type = l7_str(cases[i].path_type);
        rd->path = l7_str(cases[i].path);
        rd->has_port = cases[i].port != 0;
        rd->port = cases[i].port;
        rd->has_status_code = cases[i].status != 0;
        rd->status_code = cases[i].status;
        add_filter(rt, "RequestRedirect")->request_redirect = rd;
        struct hy_l7_routes *r;
        char why[256];
        assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
        struct hy_http_head h;
        l7_request(&h, "GET", cases[i].target, cases[i].authority, NULL);
        struct hy_l7_redirect out;
        const char *mirror;
        assert_int_equal(hy_l7_route_request(r, 0, &h, 0, &out, &mirror), 0);
        assert_non_null(out.location);
        if (strcmp(out.location, cases[i].want) || out.status != cases[i].want_status)
            fail_msg("case %zu: %u %s, want %u %s", i, out.status, out.location,
                     cases[i].want_status, cases[i].want);
        assert_null(hy_http_head_get(&h, "x-not")); /* a redirect leaves the request alone */
        free(out.location);
        hy_http_head_fini(&h);
        hy_l7_routes_free(r);
        hypha__v1__dp_outbound__free_unpacked(o, NULL);
    }
}

static void mirrors(void **state)
{
    (void)state;
    static const struct {
        int per_million; /* -1: unset */
        unsigned lo, hi; /* mirrored of 10000 */
    } cases[] = {{-1, 10000, 10000}, {0, 0, 0}, {500000, 4700, 5300}, {1000000, 10000, 10000}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Hypha__V1__DpOutbound *o = outbound("backend");
        Hypha__V1__DpHttpRoute *rt = add_route(o, "r");
        Hypha__V1__DpHttpFilter__Mirror *m = malloc(sizeof(*m));
        hypha__v1__dp_http_filter__mirror__init(m);
        m->backend = l7_backend("shadow", -1);
        m->has_per_million = cases[i].per_million >= 0;
        m->per_million = (uint32_t)(cases[i].per_million >= 0 ? cases[i].per_million : 0);
        add_filter(rt, "RequestMirror")->request_mirror = m;
        struct hy_l7_routes *r;
        char why[256];
        assert_int_equal(hy_l7_routes_new(o, &r, why, sizeof(why)), 0);
        unsigned n = 0;
        for (uint64_t rnd = 0; rnd < 10000; rnd++) {
            struct hy_http_head h;
            l7_request(&h, "GET", "/", "backend", NULL);
            struct hy_l7_redirect out;
            const char *mirror;
            assert_int_equal(hy_l7_route_request(r, 0, &h, rnd, &out, &mirror), 0);
            if (mirror) {
                assert_string_equal(mirror, "shadow");
                n++;
            }
            hy_http_head_fini(&h);
        }
        if (n < cases[i].lo || n > cases[i].hi)
            fail_msg("case %zu: %u mirrored", i, n);
        hy_l7_routes_free(r);
        hypha__v1__dp_outbound__free_unpacked(o, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matching),          cmocka_unit_test(regex_prefix),
        cmocka_unit_test(order_and_default), cmocka_unit_test(bad_config),
        cmocka_unit_test(backends),          cmocka_unit_test(header_filters),
        cmocka_unit_test(rewrites),          cmocka_unit_test(redirects),
        cmocka_unit_test(mirrors),           cmocka_unit_test(subsets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
