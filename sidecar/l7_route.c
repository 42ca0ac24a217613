/* The compiled MeshHTTPRoute table of one outbound and the MeshTCPRoute
 * split (l7_route.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "l7.h"
#include "l7_route.h"
#include "poison.h"

enum path_type { PATH_ANY, PATH_EXACT, PATH_PREFIX, PATH_REGEX };

struct match {
    enum path_type path_type;
    const char *path; /* borrowed; for PATH_PREFIX without its trailing '/' */
    size_t path_len;
    bool has_re;
    size_t re_prefix; /* bytes of path every match starts with */
    regex_t re;
    const char *method;
    struct hy_l7_hmatch *headers, *query;
    size_t n_headers, n_query;
};

struct route {
    const Hypha__V1__DpHttpRoute *src; /* NULL: the default route */
    struct match *matches;
    size_t n_matches;
    uint64_t total_weight;
};

struct hy_l7_routes {
    const Hypha__V1__DpOutbound *o;
    struct route *routes;
    size_t n;
};

/* ---- building ---------------------------------------------------------- */

static void match_fini(struct match *m)
{
    if (m->has_re)
        regfree(&m->re);
    for (size_t i = 0; i < m->n_headers; i++)
        hy_l7_hmatch_fini(&m->headers[i]);
    for (size_t i = 0; i < m->n_query; i++)
        hy_l7_hmatch_fini(&m->query[i]);
    free(m->headers);
    free(m->query);
}

static int hmatches_init(struct hy_l7_hmatch **out, size_t *n_out,
                         Hypha__V1__DpHeaderMatch *const *v, size_t n, bool query, char *why,
                         size_t why_size)
{
    if (!n)
        return 0;
    struct hy_l7_hmatch *hm = calloc(n, sizeof(*hm));
    if (!hm)
        return HY_ENOMEM;
    *out = hm;
    for (size_t i = 0; i < n; i++) {
        int rc = hy_l7_hmatch_init(&hm[i], v[i], why, why_size);
        if (rc)
            return rc;
        *n_out = i + 1;
        if (query && hm[i].type != HY_L7_EXACT && hm[i].type != HY_L7_REGEX) {
            snprintf(why, why_size, "query parameter '%s': only Exact and RegularExpression",
                     v[i]->name ? v[i]->name : "");
            return HY_EINVAL;
        }
    }
    return 0;
}

static int match_init(struct match *m, const Hypha__V1__DpHttpMatch *src, char *why,
                      size_t why_size)
{
    m->method = src->method && *src->method ? src->method : NULL;
    const char *pt = src->path_type, *p = src->path ? src->path : "";
    if (!pt || !*pt) {
        m->path_type = PATH_ANY;
    } else if (!strcasecmp(pt, "Exact")) {
        m->path_type = PATH_EXACT;
    } else if (!strcasecmp(pt, "PathPrefix")) {
        m->path_type = PATH_PREFIX;
    } else if (!strcasecmp(pt, "RegularExpression")) {
        m->path_type = PATH_REGEX;
    } else {
        snprintf(why, why_size, "unknown path type '%s'", pt);
        return HY_EINVAL;
    }
    m->path = p;
    m->path_len = strlen(p);
    /* "/a/" takes what "/a" takes (Gateway API); "/" takes every path */
    if (m->path_type == PATH_PREFIX)
        while (m->path_len > 0 && p[m->path_len - 1] == '/')
            m->path_len--;
    if (m->path_type == PATH_REGEX) {
        size_t n = m->path_len + 5;
        char *pat = malloc(n);
        if (!pat)
            return HY_ENOMEM;
        snprintf(pat, n, "^(%s)$", p);
        int rc = regcomp(&m->re, pat, REG_EXTENDED | REG_NOSUB);
        free(pat);
        if (rc) {
            char err[128];
            regerror(rc, &m->re, err, sizeof(err));
            snprintf(why, why_size, "bad regular expression '%s': %s", p, err);
            return HY_EINVAL;
        }
        m->has_re = true;
        m->re_prefix = hy_l7_regex_prefix(p);
    }
    int rc = hmatches_init(&m->headers, &m->n_headers, src->headers, src->n_headers, false, why,
                           why_size);
    return rc ? rc
              : hmatches_init(&m->query, &m->n_query, src->query_params, src->n_query_params, true,
                              why, why_size);
}

static uint64_t weight(const Hypha__V1__DpBackendRef *b)
{
    return b->has_weight ? b->weight : 1;
}

void hy_l7_routes_free(struct hy_l7_routes *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->routes[i].n_matches; j++)
            match_fini(&r->routes[i].matches[j]);
        free(r->routes[i].matches);
    }
    free(r->routes);
    free(r);
}

int hy_l7_routes_new(const Hypha__V1__DpOutbound *o, struct hy_l7_routes **out, char *why,
                     size_t why_size)
{
    struct hy_l7_routes *r = calloc(1, sizeof(*r));
    size_t n = o->n_http_routes ? o->n_http_routes : 1;
    if (!r || !(r->routes = calloc(n, sizeof(*r->routes)))) {
        free(r);
        return HY_ENOMEM;
    }
    r->o = o;
    r->n = n;
    for (size_t i = 0; i < o->n_http_routes; i++) {
        const Hypha__V1__DpHttpRoute *src = o->http_routes[i];
        struct route *rt = &r->routes[i];
        rt->src = src;
        for (size_t k = 0; k < src->n_backends; k++)
            rt->total_weight += weight(src->backends[k]);
        if (src->n_matches && !(rt->matches = calloc(src->n_matches, sizeof(*rt->matches)))) {
            hy_l7_routes_free(r);
            return HY_ENOMEM;
        }
        for (size_t j = 0; j < src->n_matches; j++) {
            char what[256] = "";
            int rc = match_init(&rt->matches[j], src->matches[j], what, sizeof(what));
            rt->n_matches = j + 1;
            if (rc) {
                snprintf(why, why_size, "outbound %s route %s matches[%zu]: %s",
                         o->service ? o->service : "?", src->name ? src->name : "?", j,
                         rc == HY_ENOMEM ? "out of memory" : what);
                hy_l7_routes_free(r);
                return rc;
            }
        }
    }
    *out = r;
    return 0;
}

size_t hy_l7_routes_count(const struct hy_l7_routes *r)
{
    return r->n;
}

/* ---- matching ---------------------------------------------------------- */

#define MAX_QUERY 64 /* parameters looked at in one request; more are ignored */

/* What the matches look at in one request, split from its target lazily:
 * the path (a NUL-terminated copy only when a regex needs one) and the
 * query parameters (only when a query match needs them). */
struct view {
    const char *target;
    size_t path_len;
    char *buf; /* path '\0' query, split in place */
    char small[512];
    bool split, failed;
    const char *qname[MAX_QUERY], *qvalue[MAX_QUERY];
    size_t nq;
};

static bool view_split(struct view *v)
{
    if (v->split || v->failed)
        return !v->failed;
    size_t len = strlen(v->target);
    v->buf = len < sizeof(v->small) ? v->small : malloc(len + 1);
    if (!v->buf) {
        v->failed = true;
        return false;
    }
    memcpy(v->buf, v->target, len + 1);
    v->buf[v->path_len] = '\0';
    if (v->target[v->path_len] == '?') {
        char *q = v->buf + v->path_len + 1, *end = q + strcspn(q, "#");
        *end = '\0';
        for (char *save = NULL, *tok = strtok_r(q, "&", &save); tok && v->nq < MAX_QUERY;
             tok = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(tok, '=');
            if (eq)
                *eq++ = '\0';
            v->qname[v->nq] = tok;
            v->qvalue[v->nq++] = eq ? eq : "";
        }
    }
    v->split = true;
    return true;
}

static bool path_holds(const struct match *m, struct view *v)
{
    const char *p = v->target;
    switch (m->path_type) {
    case PATH_ANY:
        return true;
    case PATH_EXACT:
        return v->path_len == m->path_len && !memcmp(p, m->path, m->path_len);
    case PATH_PREFIX:
        return v->path_len >= m->path_len && !memcmp(p, m->path, m->path_len) &&
               (v->path_len == m->path_len || p[m->path_len] == '/');
    case PATH_REGEX:
        return v->path_len >= m->re_prefix && !memcmp(p, m->path, m->re_prefix) && view_split(v) &&
               regexec(&m->re, v->buf, 0, NULL, 0) == 0;
    }
    return false;
}

static bool query_holds(const struct hy_l7_hmatch *q, struct view *v)
{
    if (!view_split(v))
        return false;
    const char *name = q->m->name ? q->m->name : "";
    for (size_t i = 0; i < v->nq; i++)
        if (!strcmp(v->qname[i], name))
            return hy_l7_hmatch_value(q, v->qvalue[i]);
    return hy_l7_hmatch_value(q, NULL);
}

static bool match_holds(const struct match *m, const struct hy_http_head *h, struct view *v)
{
    /* the path first: in a table it is what tells routes apart */
    if (!path_holds(m, v))
        return false;
    if (m->method && (!h->method || strcmp(h->method, m->method)))
        return false;
    for (size_t i = 0; i < m->n_headers; i++)
        if (!hy_l7_hmatch_head(&m->headers[i], h))
            return false;
    for (size_t i = 0; i < m->n_query; i++)
        if (!query_holds(&m->query[i], v))
            return false;
    return true;
}

/* The first match of rt that holds (index), -1 when none; a route without
 * matches: 0 (it takes everything). */
static int route_holds(const struct route *rt, const struct hy_http_head *h, struct view *v)
{
    if (!rt->n_matches)
        return 0;
    for (size_t j = 0; j < rt->n_matches; j++)
        if (match_holds(&rt->matches[j], h, v))
            return (int)j;
    return -1;
}

static void view_init(struct view *v, const struct hy_http_head *h)
{
    v->target = h->target ? h->target : "";
    v->path_len = strcspn(v->target, "?#");
    v->buf = NULL;
    v->split = v->failed = false;
    v->nq = 0;
}

static void view_fini(struct view *v)
{
    if (v->buf != v->small)
        free(v->buf);
}

int hy_l7_route_match(const struct hy_l7_routes *r, const struct hy_http_head *h)
{
    struct view v;
    view_init(&v, h);
    int found = -1;
    for (size_t i = 0; i < r->n && found < 0; i++)
        if (route_holds(&r->routes[i], h, &v) >= 0)
            found = (int)i;
    view_fini(&v);
    return found;
}

const Hypha__V1__DpHttpRoute *hy_l7_route_get(const struct hy_l7_routes *r, int i)
{
    return i >= 0 && (size_t)i < r->n ? r->routes[i].src : NULL;
}

const char *hy_l7_route_name(const struct hy_l7_routes *r, int i)
{
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    return src && src->name && *src->name ? src->name : "default";
}

/* The backend of v[0..n) that rnd falls on by weight (total: their sum). */
static const Hypha__V1__DpBackendRef *ref_by_weight(Hypha__V1__DpBackendRef *const *v, size_t n,
                                                    uint64_t total, uint64_t rnd)
{
    if (!total)
        return NULL;
    uint64_t at = rnd % total;
    for (size_t k = 0; k < n; k++) {
        uint64_t w = weight(v[k]);
        if (at < w)
            return v[k];
        at -= w;
    }
    return NULL;
}

static const char *by_weight(Hypha__V1__DpBackendRef *const *v, size_t n, uint64_t total,
                             uint64_t rnd)
{
    const Hypha__V1__DpBackendRef *b = ref_by_weight(v, n, total, rnd);
    return b ? b->service : NULL;
}

const Hypha__V1__DpBackendRef *hy_l7_route_backend_ref(const struct hy_l7_routes *r, int i,
                                                       uint64_t rnd)
{
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    if (!src || !src->n_backends)
        return NULL;
    return ref_by_weight(src->backends, src->n_backends, r->routes[i].total_weight, rnd);
}

bool hy_l7_subset_has(const Hypha__V1__DpBackendRef *ref, const Hypha__V1__DpEndpoint *e)
{
    for (size_t k = 0; ref && k < ref->n_tags; k++) {
        const char *key = ref->tags[k]->key, *want = ref->tags[k]->value;
        bool found = false;
        for (size_t j = 0; !found && j < e->n_tags; j++)
            found = key && e->tags[j]->key && !strcmp(e->tags[j]->key, key) &&
                    !strcmp(e->tags[j]->value ? e->tags[j]->value : "", want ? want : "");
        if (!found)
            return false;
    }
    return true;
}

const char *hy_l7_route_backend(const struct hy_l7_routes *r, int i, uint64_t rnd)
{
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    if (!src || !src->n_backends)
        return r->o->service;
    return by_weight(src->backends, src->n_backends, r->routes[i].total_weight, rnd);
}

const Hypha__V1__DpBackendRef *hy_l7_tcp_backend_ref(const Hypha__V1__DpOutbound *o, uint64_t rnd)
{
    uint64_t total = 0;
    for (size_t k = 0; k < o->n_tcp_backends; k++)
        total += weight(o->tcp_backends[k]);
    return ref_by_weight(o->tcp_backends, o->n_tcp_backends, total, rnd);
}

const char *hy_l7_tcp_backend(const Hypha__V1__DpOutbound *o, uint64_t rnd)
{
    if (!o->n_tcp_backends)
        return o->service;
    const Hypha__V1__DpBackendRef *b = hy_l7_tcp_backend_ref(o, rnd);
    return b ? b->service : NULL;
}

/* ---- filters ----------------------------------------------------------- */

static int modify(struct hy_http_head *h, const Hypha__V1__DpHeaderModifier *m)
{
    if (!m)
        return 0;
    for (size_t k = 0; k < m->n_remove; k++)
        hy_http_head_remove(h, m->remove[k]);
    for (size_t k = 0; k < m->n_set; k++) {
        const Hypha__V1__DpHeader *x = m->set[k];
        int rc = hy_http_head_set(h, x->name ? x->name : "", x->value ? x->value : "");
        if (rc)
            return rc == HY_ETOOBIG ? 0 : rc; /* a head at its limit keeps what it has */
    }
    for (size_t k = 0; k < m->n_add; k++) {
        const Hypha__V1__DpHeader *x = m->add[k];
        const char *n = x->name ? x->name : "", *v = x->value ? x->value : "";
        int rc = hy_http_head_add(h, n, strlen(n), v, strlen(v));
        if (rc)
            return rc == HY_ETOOBIG ? 0 : rc;
    }
    return 0;
}

static bool is(const char *type, const char *want)
{
    return type && !strcasecmp(type, want);
}

/* The PathPrefix match of route rt that holds for a path of len bytes
 * (the one ReplacePrefixMatch replaces), or NULL. */
static const struct match *prefix_matched(const struct route *rt, const char *path, size_t len)
{
    for (size_t j = 0; j < rt->n_matches; j++) {
        const struct match *m = &rt->matches[j];
        if (m->path_type == PATH_PREFIX && len >= m->path_len &&
            !memcmp(path, m->path, m->path_len) && (len == m->path_len || path[m->path_len] == '/'))
            return m;
    }
    return NULL;
}

/* The new path (malloc'd, NUL-terminated) for path[0..len) by path_type
 * and replacement: ReplaceFullPath, or ReplacePrefixMatch (the prefix
 * replaced; a trailing '/' of the replacement dropped before the rest,
 * "" becoming "/", as the Gateway API's table says). NULL and *same when
 * the path stays; NULL otherwise when out of memory. */
static char *new_path(const struct route *rt, const char *type, const char *repl, const char *path,
                      size_t len, bool *same)
{
    *same = false;
    repl = repl ? repl : "";
    if (is(type, "ReplaceFullPath"))
        return strdup(*repl ? repl : "/");
    const struct match *m = is(type, "ReplacePrefixMatch") ? prefix_matched(rt, path, len) : NULL;
    if (!m) {
        *same = true;
        return NULL;
    }
    size_t rl = strlen(repl);
    while (rl > 0 && repl[rl - 1] == '/')
        rl--;
    size_t rest = len - m->path_len;
    char *out = malloc(rl + rest + 2);
    if (!out)
        return NULL;
    memcpy(out, repl, rl);
    memcpy(out + rl, path + m->path_len, rest);
    out[rl + rest] = '\0';
    if (!out[0]) {
        out[0] = '/';
        out[1] = '\0';
    }
    return out;
}

/* Sets h's target to path + what followed the old path (query). */
static int set_target(struct hy_http_head *h, const char *path, size_t old_len)
{
    const char *tail = h->target + old_len;
    size_t pl = strlen(path), tl = strlen(tail);
    char *t = malloc(pl + tl + 1);
    if (!t)
        return HY_ENOMEM;
    memcpy(t, path, pl);
    memcpy(t + pl, tail, tl + 1);
    int rc = hy_http_head_set_str(&h->target, t, pl + tl);
    free(t);
    return rc;
}

/* The host part of an authority ("h", "h:80", "[::1]:80"), as [*s, *s+*n). */
static void authority_host(const char *a, const char **s, size_t *n)
{
    *s = a;
    if (a[0] == '[') {
        const char *e = strchr(a, ']');
        *n = e ? (size_t)(e - a) + 1 : strlen(a);
        return;
    }
    const char *colon = strrchr(a, ':');
    *n = colon ? (size_t)(colon - a) : strlen(a);
}

static int redirect_fill(const struct route *rt, const Hypha__V1__DpHttpFilter__Redirect *rd,
                         const struct hy_http_head *h, struct hy_l7_redirect *out)
{
    const char *target = h->target ? h->target : "/";
    size_t plen = strcspn(target, "?#");
    const char *scheme = rd->scheme && *rd->scheme ? rd->scheme : h->scheme ? h->scheme : "http";
    const char *auth = h->authority ? h->authority : "", *host;
    size_t host_len;
    authority_host(auth, &host, &host_len);
    if (rd->hostname && *rd->hostname) {
        host = rd->hostname;
        host_len = strlen(host);
    }
    /* the port: the redirect's; else the request's unless the scheme
     * changes (then the new scheme's own); a well-known one is left out */
    char port[16] = "";
    if (rd->has_port && rd->port) {
        snprintf(port, sizeof(port), ":%u", rd->port);
    } else if (!(rd->scheme && *rd->scheme) && host_len < strlen(auth) && auth[host_len] == ':') {
        snprintf(port, sizeof(port), "%.10s", auth + host_len);
    }
    if ((!strcasecmp(scheme, "http") && !strcmp(port, ":80")) ||
        (!strcasecmp(scheme, "https") && !strcmp(port, ":443")))
        port[0] = '\0';
    bool same;
    char *np = new_path(rt, rd->path_type, rd->path, target, plen, &same);
    if (!np && !same)
        return HY_ENOMEM;
    const char *path = np ? np : target;
    size_t path_len = np ? strlen(np) : plen;
    const char *query = target + plen;
    size_t qlen = strcspn(query, "#");
    size_t n = strlen(scheme) + 3 + host_len + strlen(port) + path_len + qlen + 1;
    char *loc = malloc(n);
    if (!loc) {
        free(np);
        return HY_ENOMEM;
    }
    snprintf(loc, n, "%s://%.*s%s%.*s%.*s", scheme, (int)host_len, host, port, (int)path_len, path,
             (int)qlen, query);
    free(np);
    out->status = rd->has_status_code && rd->status_code ? rd->status_code : 302;
    out->location = loc;
    return 0;
}

static int rewrite(const struct route *rt, const Hypha__V1__DpHttpFilter__Rewrite *rw,
                   struct hy_http_head *h)
{
    if (rw->hostname && *rw->hostname) {
        int rc = hy_http_head_set_str(&h->authority, rw->hostname, strlen(rw->hostname));
        if (rc)
            return rc;
    }
    if (!h->target || !rw->path_type)
        return 0;
    size_t plen = strcspn(h->target, "?#");
    bool same;
    char *np = new_path(rt, rw->path_type, rw->path, h->target, plen, &same);
    if (!np)
        return same ? 0 : HY_ENOMEM;
    int rc = set_target(h, np, plen);
    free(np);
    return rc;
}

int hy_l7_route_request(const struct hy_l7_routes *r, int i, struct hy_http_head *h, uint64_t rnd,
                        struct hy_l7_redirect *redirect, const char **mirror_service)
{
    redirect->status = 0;
    redirect->location = NULL;
    *mirror_service = NULL;
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    if (!src)
        return 0;
    const struct route *rt = &r->routes[i];
    for (size_t k = 0; k < src->n_filters; k++)
        if (src->filters[k]->request_redirect)
            return redirect_fill(rt, src->filters[k]->request_redirect, h, redirect);
    for (size_t k = 0; k < src->n_filters; k++) {
        const Hypha__V1__DpHttpFilter *f = src->filters[k];
        int rc = 0;
        if (f->request_header_modifier)
            rc = modify(h, f->request_header_modifier);
        else if (f->url_rewrite)
            rc = rewrite(rt, f->url_rewrite, h);
        else if (f->request_mirror && f->request_mirror->backend && !*mirror_service) {
            const Hypha__V1__DpHttpFilter__Mirror *m = f->request_mirror;
            if (!m->has_per_million || hy_l7_per_million(hy_l7_draw(rnd, 0), m->per_million))
                *mirror_service = m->backend->service;
        }
        if (rc)
            return rc;
    }
    return 0;
}

const Hypha__V1__DpBackendRef *hy_l7_route_mirror_ref(const struct hy_l7_routes *r, int i)
{
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    for (size_t k = 0; src && k < src->n_filters; k++)
        if (src->filters[k]->request_mirror && src->filters[k]->request_mirror->backend)
            return src->filters[k]->request_mirror->backend;
    return NULL;
}

int hy_l7_route_response(const struct hy_l7_routes *r, int i, struct hy_http_head *resp)
{
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    for (size_t k = 0; src && k < src->n_filters; k++) {
        int rc = modify(resp, src->filters[k]->response_header_modifier);
        if (rc)
            return rc;
    }
    return 0;
}

bool hy_l7_route_host_to_backend(const struct hy_l7_routes *r, int i)
{
    const Hypha__V1__DpHttpRoute *src = hy_l7_route_get(r, i);
    for (size_t k = 0; src && k < src->n_filters; k++)
        if (src->filters[k]->url_rewrite && src->filters[k]->url_rewrite->host_to_backend_hostname)
            return true;
    return false;
}
