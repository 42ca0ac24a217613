/* The cost of the sidecar's MeshHTTPRoute table per request
 * (sidecar/l7_route.c): hy_l7_route_match against 100 routes where only
 * the last one matches (every route before it examined and refused), with
 * plain path prefixes and headers, with a regular expression per route,
 * and with none matching; beside the table of an outbound without routes.
 * Prints a markdown table, ns per request (median of the repetitions). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "error.h"
#include "l7_route.h"
#include "poison.h"

#define ROUTES 100

struct params {
    double scale;
    int reps;
    size_t requests;
};

static char *dup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        bench_die("strdup", "out of memory");
    return d;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        bench_die("calloc", "out of memory");
    return p;
}

static Hypha__V1__DpHeaderMatch *hmatch(const char *type, const char *name, const char *value)
{
    Hypha__V1__DpHeaderMatch *m = xcalloc(1, sizeof(*m));
    hypha__v1__dp_header_match__init(m);
    m->type = dup(type);
    m->name = dup(name);
    m->value = dup(value);
    return m;
}

enum shape { PREFIX_HEADER, REGEX_PATH, REGEX_PATH_BARE, PREFIX_REGEX_HEADER_QUERY };

/* An outbound with n routes of one shape; route i answers to service
 * number i (the request built by request() for i). */
static Hypha__V1__DpOutbound *outbound(enum shape shape, size_t n)
{
    Hypha__V1__DpOutbound *o = xcalloc(1, sizeof(*o));
    hypha__v1__dp_outbound__init(o);
    o->service = dup("backend");
    o->n_http_routes = n;
    o->http_routes = xcalloc(n, sizeof(*o->http_routes));
    for (size_t i = 0; i < n; i++) {
        char name[64], path[96], value[64];
        Hypha__V1__DpHttpRoute *r = xcalloc(1, sizeof(*r));
        hypha__v1__dp_http_route__init(r);
        snprintf(name, sizeof(name), "MeshHTTPRoute/route-%zu to[0].rules[0]", i);
        r->name = dup(name);
        Hypha__V1__DpHttpMatch *m = xcalloc(1, sizeof(*m));
        hypha__v1__dp_http_match__init(m);
        r->matches = xcalloc(1, sizeof(*r->matches));
        r->matches[0] = m;
        r->n_matches = 1;
        m->method = dup("GET");
        switch (shape) {
        case PREFIX_HEADER:
            snprintf(path, sizeof(path), "/svc%zu/api", i);
            m->path_type = dup("PathPrefix");
            m->path = dup(path);
            snprintf(value, sizeof(value), "tenant-%zu", i);
            m->headers = xcalloc(1, sizeof(*m->headers));
            m->headers[m->n_headers++] = hmatch("Exact", "x-tenant", value);
            break;
        case REGEX_PATH:
            snprintf(path, sizeof(path), "/svc%zu/v[0-9]+/items/[a-z0-9-]+", i);
            m->path_type = dup("RegularExpression");
            m->path = dup(path);
            break;
        case REGEX_PATH_BARE:
            /* no literal prefix: regexec runs for every route */
            snprintf(path, sizeof(path), "[/]svc%zu/v[0-9]+/items/[a-z0-9-]+", i);
            m->path_type = dup("RegularExpression");
            m->path = dup(path);
            break;
        case PREFIX_REGEX_HEADER_QUERY:
            snprintf(path, sizeof(path), "/svc%zu/api", i);
            m->path_type = dup("PathPrefix");
            m->path = dup(path);
            snprintf(value, sizeof(value), "tenant-%zu-[a-z]+", i);
            m->headers = xcalloc(1, sizeof(*m->headers));
            m->headers[m->n_headers++] = hmatch("RegularExpression", "x-tenant", value);
            snprintf(value, sizeof(value), "%zu", i);
            m->query_params = xcalloc(1, sizeof(*m->query_params));
            m->query_params[m->n_query_params++] = hmatch("Exact", "shard", value);
            break;
        }
        o->http_routes[i] = r;
    }
    return o;
}

/* A request as a browser or SDK sends it, for route i of shape. */
static void request(struct hy_http_head *h, enum shape shape, size_t i)
{
    static const char *const fields[] = {
        "user-agent",       "curl/8.5.0",   "accept",
        "application/json", "x-request-id", "0f8e7f2c-4d0e-4f6b-9d2a-6b1d1d6f3a11",
        "accept-encoding",  "gzip",         "content-type",
        "application/json", NULL,
    };
    char target[128], tenant[64];
    memset(h, 0, sizeof(*h));
    h->request = true;
    h->version = 11;
    switch (shape) {
    case PREFIX_HEADER:
        snprintf(target, sizeof(target), "/svc%zu/api/items/42", i);
        snprintf(tenant, sizeof(tenant), "tenant-%zu", i);
        break;
    case REGEX_PATH:
    case REGEX_PATH_BARE:
        snprintf(target, sizeof(target), "/svc%zu/v2/items/order-1234", i);
        snprintf(tenant, sizeof(tenant), "tenant-%zu", i);
        break;
    case PREFIX_REGEX_HEADER_QUERY:
        snprintf(target, sizeof(target), "/svc%zu/api/items/42?shard=%zu&page=3", i, i);
        snprintf(tenant, sizeof(tenant), "tenant-%zu-blue", i);
        break;
    }
    if (hy_http_head_set_str(&h->method, "GET", 3) ||
        hy_http_head_set_str(&h->target, target, strlen(target)) ||
        hy_http_head_set_str(&h->authority, "backend:80", 10))
        bench_die("request", "out of memory");
    for (size_t k = 0; fields[k]; k += 2)
        if (hy_http_head_add(h, fields[k], strlen(fields[k]), fields[k + 1], strlen(fields[k + 1])))
            bench_die("request", "out of memory");
    if (hy_http_head_add(h, "x-tenant", 8, tenant, strlen(tenant)))
        bench_die("request", "out of memory");
}

struct row {
    const char *name;
    enum shape shape;
    size_t routes;  /* 0: an outbound without MeshHTTPRoutes */
    size_t req_for; /* the request built for this route number */
    int want;       /* the route that must take it, -1 none */
    double ns[BENCH_MAX_REPS];
};

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    struct params p = {.scale = 1, .reps = 5, .requests = 200000};
    const struct bench_opt opts[] = {
        {"--scale", "HYPHA_BENCH_SCALE", BENCH_OPT_DOUBLE, &p.scale,
         "multiply the request count by this (default 1)"},
        {"--reps", "HYPHA_BENCH_REPS", BENCH_OPT_INT, &p.reps,
         "repetitions; the table shows medians (default 5, at most 15)"},
        {"--requests", NULL, BENCH_OPT_SIZE, &p.requests, "requests per row (default 200000)"},
    };
    bench_opts_parse(argc, argv,
                     "Benchmarks hy_l7_route_match against 100 routes, the last matching; "
                     "prints a markdown table.",
                     opts, sizeof(opts) / sizeof(opts[0]));
    if (p.reps < 1 || p.reps > BENCH_MAX_REPS)
        bench_die("--reps", "must be 1..%d", BENCH_MAX_REPS);
    p.requests = (size_t)((double)p.requests * p.scale);
    if (p.requests < 1000)
        p.requests = 1000;

    /* name, shape, routes, the route the request is built for, the route that takes it */
    struct row rows[] = {
        {"No MeshHTTPRoute (one default route)", PREFIX_HEADER, 0, 0, 0, {0}},
        {"100 routes: PathPrefix + method + header Exact; the first matches",
         PREFIX_HEADER,
         ROUTES,
         0,
         0,
         {0}},
        {"100 routes: PathPrefix + method + header Exact; the last matches",
         PREFIX_HEADER,
         ROUTES,
         ROUTES - 1,
         ROUTES - 1,
         {0}},
        {"100 routes: RegularExpression path + method; the last matches",
         REGEX_PATH,
         ROUTES,
         ROUTES - 1,
         ROUTES - 1,
         {0}},
        {"100 routes: RegularExpression path without a literal prefix + method; the last matches",
         REGEX_PATH_BARE,
         ROUTES,
         ROUTES - 1,
         ROUTES - 1,
         {0}},
        {"100 routes: PathPrefix + header RegularExpression + query Exact; the last matches",
         PREFIX_REGEX_HEADER_QUERY,
         ROUTES,
         ROUTES - 1,
         ROUTES - 1,
         {0}},
        {"100 routes: RegularExpression path; none matches (404)",
         REGEX_PATH,
         ROUTES,
         ROUTES + 7,
         -1,
         {0}},
        {"100 routes: RegularExpression path without a literal prefix; none matches (404)",
         REGEX_PATH_BARE,
         ROUTES,
         ROUTES + 7,
         -1,
         {0}},
    };
    size_t nrows = sizeof(rows) / sizeof(rows[0]);
    for (int rep = 0; rep < p.reps; rep++) {
        for (size_t k = 0; k < nrows; k++) {
            struct row *r = &rows[k];
            Hypha__V1__DpOutbound *o = outbound(r->shape, r->routes);
            struct hy_l7_routes *t;
            char why[256];
            if (hy_l7_routes_new(o, &t, why, sizeof(why)))
                bench_die("hy_l7_routes_new", "%s", why);
            struct hy_http_head h;
            request(&h, r->shape, r->req_for);
            if (hy_l7_route_match(t, &h) != r->want)
                bench_die(r->name, "the route taken is %d, not %d", hy_l7_route_match(t, &h),
                          r->want);
            volatile int sink = 0;
            double t0 = bench_now();
            for (size_t i = 0; i < p.requests; i++)
                sink += hy_l7_route_match(t, &h);
            r->ns[rep] = (bench_now() - t0) * 1e9 / (double)p.requests;
            (void)sink;
            hy_http_head_fini(&h);
            hy_l7_routes_free(t);
            hypha__v1__dp_outbound__free_unpacked(o, NULL);
        }
    }
    printf("| Route table | Request | ns per request | ns per route examined |\n");
    printf("|---|---|--:|--:|\n");
    for (size_t k = 0; k < nrows; k++) {
        struct row *r = &rows[k];
        double ns = median(r->ns, p.reps);
        size_t examined = r->want < 0 ? (r->routes ? r->routes : 1) : (size_t)r->want + 1;
        printf("| %s | %s | %.0f | %.1f |\n", r->name,
               r->want < 0    ? "no route takes it"
               : r->want == 0 ? "route 1 takes it"
                              : "route 100 takes it",
               ns, ns / (double)examined);
    }
    printf("\nhy_l7_route_match on one request head (9 header fields) %zu times per row, median "
           "of %d repetitions; the table is compiled once (regcomp) per row. A regular "
           "expression is run (glibc regexec) only when the path starts with its literal "
           "prefix (\"/svc99/v\" of \"/svc99/v[0-9]+/items/[a-z0-9-]+\"); the rows "
           "without one (\"[/]svc99/...\") run regexec for every route.\n",
           p.requests, p.reps);
    return 0;
}
