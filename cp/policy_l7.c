/* The L7 policies as the data plane enforces them: MeshHTTPRoute and
 * MeshTCPRoute merged for one destination service (Kuma's rules: to
 * entries in merge order, rules with equal matches merged later over
 * earlier, then one route per match sorted as the Gateway API orders
 * them, behind Kuma's catch-all route to the service), and
 * MeshFaultInjection and MeshRateLimit `from` entries for one inbound,
 * turned into what DpOutbound and DpInbound carry (policy.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane.pb-c.h"
#include "dp_parts.h"
#include "error.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "validate.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

/* ----- helpers ----- */

char *hy_policy_origin_str(const struct hy_policy_origin *o, const char *more)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s %s[%zu]%s", o->r->type->name, S(o->r->meta->name), o->section,
             o->index, more ? more : "");
    return strdup(buf);
}

/* Appends a new message of descriptor d to the repeated field name of m;
 * NULL when out of memory. */
static ProtobufCMessage *push(ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    size_t *n = (size_t *)((char *)m + f->quantifier_offset);
    ProtobufCMessage ***v = (ProtobufCMessage ***)((char *)m + f->offset);
    const ProtobufCMessageDescriptor *d = f->descriptor;
    ProtobufCMessage **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return NULL;
    *v = nv;
    ProtobufCMessage *x = calloc(1, d->sizeof_message);
    if (!x)
        return NULL;
    d->message_init(x);
    nv[(*n)++] = x;
    return x;
}

/* Every map entry of ours is laid out so. */
struct map_entry {
    ProtobufCMessage base;
    char *key, *value;
};

static int add_tag(ProtobufCMessage *m, const char *key, const char *value)
{
    struct map_entry *e = (struct map_entry *)push(m, "tags");
    if (!e)
        return HY_ENOMEM;
    e->key = strdup(key);
    e->value = strdup(value);
    return e->key && e->value ? 0 : HY_ENOMEM;
}

int hy_policy_caller_tags(ProtobufCMessage *m, const Hypha__V1__TargetRef *t)
{
    int rc = 0;
    if (!t || !t->has_kind)
        return 0;
    if (t->kind == HYPHA__V1__TARGET_REF__KIND__MeshService ||
        t->kind == HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset)
        rc = add_tag(m, HY_TAG_SERVICE, S(t->name));
    if (t->kind == HYPHA__V1__TARGET_REF__KIND__MeshSubset ||
        t->kind == HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset)
        for (size_t i = 0; rc == 0 && i < t->n_tags; i++)
            rc = add_tag(m, S(t->tags[i]->key), S(t->tags[i]->value));
    return rc;
}

static int set_str(char **dst, const char *s)
{
    if (!s)
        return 0;
    free(*dst);
    return (*dst = strdup(s)) ? 0 : HY_ENOMEM;
}

static int set_dur(Hypha__V1__Duration **dst, const Hypha__V1__Duration *src)
{
    if (!src)
        return 0;
    if (*dst)
        protobuf_c_message_free_unpacked(&(*dst)->base, NULL);
    return (*dst = (Hypha__V1__Duration *)hy_dp_msg_copy(&src->base)) ? 0 : HY_ENOMEM;
}

/* A backendRef of m's field: its service, weight and (MeshServiceSubset)
 * tags, which narrow it to the instances carrying them. */
static int add_backend(ProtobufCMessage *m, const char *field, const Hypha__V1__BackendRef *ref)
{
    Hypha__V1__DpBackendRef *b = (Hypha__V1__DpBackendRef *)push(m, field);
    if (!b || !(b->service = strdup(S(ref->name))))
        return HY_ENOMEM;
    b->has_weight = 1;
    b->weight = ref->has_weight ? ref->weight : 1; /* Kuma's default weight */
    if (!ref->n_tags)
        return 0;
    if (!(b->tags = calloc(ref->n_tags, sizeof(*b->tags))))
        return HY_ENOMEM;
    for (size_t k = 0; k < ref->n_tags; k++) {
        Hypha__V1__DpBackendRef__TagsEntry *t = malloc(sizeof(*t));
        if (!t)
            return HY_ENOMEM;
        hypha__v1__dp_backend_ref__tags_entry__init(t);
        b->tags[b->n_tags++] = t;
        t->key = strdup(S(ref->tags[k]->key));
        t->value = strdup(S(ref->tags[k]->value));
        if (!t->key || !t->value)
            return HY_ENOMEM;
    }
    return 0;
}

/* ----- MeshHTTPRoute ----- */

typedef Hypha__V1__MeshHTTPRoute__Match http_match;

/* One rule of the merge: its matches (borrowed), their key, and its
 * merged default. */
struct acc {
    http_match *const *matches;
    size_t nmatches;
    uint8_t *key;
    size_t klen;
    struct hy_policy_conf conf; /* a MeshHTTPRoute RuleConf */
    char *name;                 /* the last rule merged in; NULL: Kuma's catch-all */
};

struct routes {
    const char *svc;
    struct acc *v;
    size_t n;
    bool any; /* a policy's rule is in */
};

/* The matches packed one after the other, each behind its length: equal
 * keys, equal matches (Kuma compares their JSON). */
static int matches_key(http_match *const *m, size_t n, uint8_t **out, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += 8 + protobuf_c_message_get_packed_size(&m[i]->base);
    uint8_t *k = malloc(total ? total : 1);
    if (!k)
        return HY_ENOMEM;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = protobuf_c_message_get_packed_size(&m[i]->base);
        memcpy(k + at, &l, 8);
        at += 8;
        at += protobuf_c_message_pack(&m[i]->base, k + at);
    }
    *out = k;
    *len = at;
    return 0;
}

static int acc_add(struct routes *rt, http_match *const *m, size_t n, const ProtobufCMessage *conf,
                   const struct hy_policy_origin *o, const char *more)
{
    uint8_t *key;
    size_t klen;
    int rc = matches_key(m, n, &key, &klen);
    if (rc < 0)
        return rc;
    struct acc *a = NULL;
    for (size_t i = 0; !a && i < rt->n; i++)
        if (rt->v[i].klen == klen && !memcmp(rt->v[i].key, key, klen))
            a = &rt->v[i];
    if (a) {
        free(key);
    } else {
        struct acc *nv = realloc(rt->v, (rt->n + 1) * sizeof(*nv));
        if (!nv) {
            free(key);
            return HY_ENOMEM;
        }
        rt->v = nv;
        a = &nv[rt->n++];
        *a = (struct acc){m, n, key, klen, {0}, NULL};
    }
    if (!o)
        return 0;
    free(a->name);
    if (!(a->name = hy_policy_origin_str(o, more)))
        return HY_ENOMEM;
    return hy_policy_conf_merge(&a->conf, conf, o);
}

static int route_entry(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                       const struct hy_policy_origin *o)
{
    struct routes *rt = ud;
    (void)conf;
    struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, rt->svc}};
    struct hy_policy_tags tags = {dest, 1};
    if (!ref || !hy_policy_ref_matches(ref, &tags))
        return 0; /* a route's to names a service (validation) */
    const Hypha__V1__MeshHTTPRoute *r = (const void *)o->r->spec;
    const Hypha__V1__MeshHTTPRoute__To *to = r->to[o->index];
    int rc = 0;
    for (size_t j = 0; rc == 0 && j < to->n_rules; j++) {
        const Hypha__V1__MeshHTTPRoute__Rule *rule = to->rules[j];
        if (!rule->n_matches || !rule->default_)
            continue; /* validation refuses both */
        char more[48];
        snprintf(more, sizeof(more), ".rules[%zu]", j);
        rc = acc_add(rt, rule->matches, rule->n_matches, &rule->default_->base, o, more);
        rt->any = true;
    }
    return rc;
}

/* Gateway API precedence as Kuma sorts (meshhttproute compare.go): a
 * path first (Exact, then PathPrefix, then RegularExpression; the longer
 * prefix or expression first), then a method, then more headers, then
 * more query parameters. */
static int path_rank(const Hypha__V1__MeshHTTPRoute__PathMatch *p)
{
    if (!p)
        return 3;
    return !strcmp(S(p->type), "Exact") ? 0 : !strcmp(S(p->type), "PathPrefix") ? 1 : 2;
}

struct flat {
    const http_match *m;
    size_t acc, seq;
};

static int by_precedence(const void *a, const void *b)
{
    const struct flat *x = a, *y = b;
    int rx = path_rank(x->m->path), ry = path_rank(y->m->path);
    if (rx != ry)
        return rx < ry ? -1 : 1;
    if (rx == 1 || rx == 2) {
        size_t lx = strlen(S(x->m->path->value)), ly = strlen(S(y->m->path->value));
        if (lx != ly)
            return lx > ly ? -1 : 1;
    }
    bool mx = x->m->method != NULL, my = y->m->method != NULL;
    if (mx != my)
        return mx ? -1 : 1;
    if (x->m->n_headers != y->m->n_headers)
        return x->m->n_headers > y->m->n_headers ? -1 : 1;
    if (x->m->n_query_params != y->m->n_query_params)
        return x->m->n_query_params > y->m->n_query_params ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq; /* stable */
}

static int header_matches(ProtobufCMessage *m, const char *field, size_t n,
                          Hypha__V1__HttpHeaderMatch *const *v)
{
    for (size_t i = 0; i < n; i++) {
        Hypha__V1__DpHeaderMatch *h = (Hypha__V1__DpHeaderMatch *)push(m, field);
        if (!h || set_str(&h->type, v[i]->type ? v[i]->type : "Exact") < 0 ||
            set_str(&h->name, v[i]->name) < 0 || set_str(&h->value, v[i]->value) < 0)
            return HY_ENOMEM;
    }
    return 0;
}

static int put_match(Hypha__V1__DpHttpRoute *r, const http_match *m)
{
    Hypha__V1__DpHttpMatch *x = (Hypha__V1__DpHttpMatch *)push(&r->base, "matches");
    if (!x)
        return HY_ENOMEM;
    int rc = 0;
    if (m->path)
        rc = set_str(&x->path_type, m->path->type) || set_str(&x->path, m->path->value);
    if (rc == 0)
        rc = set_str(&x->method, m->method);
    if (rc == 0)
        rc = header_matches(&x->base, "headers", m->n_headers, m->headers);
    for (size_t i = 0; rc == 0 && i < m->n_query_params; i++) {
        Hypha__V1__DpHeaderMatch *q = (Hypha__V1__DpHeaderMatch *)push(&x->base, "query_params");
        const Hypha__V1__MeshHTTPRoute__QueryParamsMatch *p = m->query_params[i];
        if (!q || set_str(&q->type, p->type) < 0 || set_str(&q->name, p->name) < 0 ||
            set_str(&q->value, p->value) < 0)
            rc = HY_ENOMEM;
    }
    return rc ? HY_ENOMEM : 0;
}

static int put_modifier(Hypha__V1__DpHeaderModifier **dst,
                        const Hypha__V1__MeshHTTPRoute__HeaderModifier *m)
{
    if (!m)
        return 0;
    Hypha__V1__DpHeaderModifier *x = malloc(sizeof(*x));
    if (!x)
        return HY_ENOMEM;
    hypha__v1__dp_header_modifier__init(x);
    *dst = x;
    for (int l = 0; l < 2; l++) {
        size_t n = l ? m->n_add : m->n_set;
        Hypha__V1__HttpHeader *const *v = l ? m->add : m->set;
        for (size_t i = 0; i < n; i++) {
            Hypha__V1__DpHeader *h = (Hypha__V1__DpHeader *)push(&x->base, l ? "add" : "set");
            if (!h || set_str(&h->name, v[i]->name) < 0 || set_str(&h->value, S(v[i]->value)) < 0)
                return HY_ENOMEM;
        }
    }
    if (m->n_remove && !(x->remove = calloc(m->n_remove, sizeof(*x->remove))))
        return HY_ENOMEM;
    for (size_t i = 0; i < m->n_remove; i++)
        if (!(x->remove[x->n_remove++] = strdup(S(m->remove[i]))))
            return HY_ENOMEM;
    return 0;
}

static const char *rewrite_path(const Hypha__V1__MeshHTTPRoute__PathRewrite *p)
{
    return !strcmp(S(p->type), "ReplacePrefixMatch") ? p->replace_prefix_match
                                                     : p->replace_full_path;
}

static int put_filter(Hypha__V1__DpHttpRoute *r, const Hypha__V1__MeshHTTPRoute__Filter *f)
{
    Hypha__V1__DpHttpFilter *x = (Hypha__V1__DpHttpFilter *)push(&r->base, "filters");
    if (!x || set_str(&x->type, f->type) < 0)
        return HY_ENOMEM;
    const char *t = S(f->type);
    if (!strcmp(t, "RequestHeaderModifier"))
        return put_modifier(&x->request_header_modifier, f->request_header_modifier);
    if (!strcmp(t, "ResponseHeaderModifier"))
        return put_modifier(&x->response_header_modifier, f->response_header_modifier);
    if (!strcmp(t, "RequestRedirect") && f->request_redirect) {
        const Hypha__V1__MeshHTTPRoute__RequestRedirect *s = f->request_redirect;
        Hypha__V1__DpHttpFilter__Redirect *d = malloc(sizeof(*d));
        if (!d)
            return HY_ENOMEM;
        hypha__v1__dp_http_filter__redirect__init(d);
        x->request_redirect = d;
        d->has_status_code = 1;
        d->status_code = s->has_status_code ? s->status_code : 302; /* Kuma's default */
        d->has_port = s->has_port;
        d->port = s->port;
        int rc = set_str(&d->scheme, s->scheme) || set_str(&d->hostname, s->hostname);
        if (rc == 0 && s->path)
            rc = set_str(&d->path_type, s->path->type) || set_str(&d->path, rewrite_path(s->path));
        return rc ? HY_ENOMEM : 0;
    }
    if (!strcmp(t, "URLRewrite") && f->url_rewrite) {
        const Hypha__V1__MeshHTTPRoute__URLRewrite *s = f->url_rewrite;
        Hypha__V1__DpHttpFilter__Rewrite *d = malloc(sizeof(*d));
        if (!d)
            return HY_ENOMEM;
        hypha__v1__dp_http_filter__rewrite__init(d);
        x->url_rewrite = d;
        d->has_host_to_backend_hostname = s->has_host_to_backend_hostname;
        d->host_to_backend_hostname = s->host_to_backend_hostname;
        int rc = set_str(&d->hostname, s->hostname);
        if (rc == 0 && s->path)
            rc = set_str(&d->path_type, s->path->type) || set_str(&d->path, rewrite_path(s->path));
        return rc ? HY_ENOMEM : 0;
    }
    if (!strcmp(t, "RequestMirror") && f->request_mirror) {
        const Hypha__V1__MeshHTTPRoute__RequestMirror *s = f->request_mirror;
        Hypha__V1__DpHttpFilter__Mirror *d = malloc(sizeof(*d));
        if (!d)
            return HY_ENOMEM;
        hypha__v1__dp_http_filter__mirror__init(d);
        x->request_mirror = d;
        uint32_t ppm;
        if (s->percentage && hy_percentage_per_million(s->percentage, &ppm)) {
            d->has_per_million = 1;
            d->per_million = ppm;
        }
        if (!(d->backend = malloc(sizeof(*d->backend))))
            return HY_ENOMEM;
        hypha__v1__dp_backend_ref__init(d->backend);
        d->backend->has_weight = 1;
        d->backend->weight = 1;
        const Hypha__V1__TargetRef *ref = s->backend_ref;
        if (!(d->backend->service = strdup(ref && ref->name ? ref->name : "")))
            return HY_ENOMEM;
        /* a MeshServiceSubset: the copies go to the instances with its tags */
        size_t n = ref ? ref->n_tags : 0;
        if (n && !(d->backend->tags = calloc(n, sizeof(*d->backend->tags))))
            return HY_ENOMEM;
        for (size_t k = 0; k < n; k++) {
            Hypha__V1__DpBackendRef__TagsEntry *t = malloc(sizeof(*t));
            if (!t)
                return HY_ENOMEM;
            hypha__v1__dp_backend_ref__tags_entry__init(t);
            d->backend->tags[d->backend->n_tags++] = t;
            t->key = strdup(S(ref->tags[k]->key));
            t->value = strdup(S(ref->tags[k]->value));
            if (!t->key || !t->value)
                return HY_ENOMEM;
        }
        return 0;
    }
    return 0;
}

static int put_route(Hypha__V1__DpOutbound *o, const struct acc *a, const http_match *m)
{
    Hypha__V1__DpHttpRoute *r = (Hypha__V1__DpHttpRoute *)push(&o->base, "http_routes");
    if (!r || set_str(&r->name, a->name) < 0)
        return HY_ENOMEM;
    int rc = put_match(r, m);
    const Hypha__V1__MeshHTTPRoute__RuleConf *c = (const void *)a->conf.conf;
    for (size_t i = 0; rc == 0 && c && i < c->n_filters; i++)
        rc = put_filter(r, c->filters[i]);
    for (size_t i = 0; rc == 0 && c && i < c->n_backend_refs; i++)
        rc = add_backend(&r->base, "backends", c->backend_refs[i]);
    return rc;
}

int hy_policy_http_routes(const struct hy_policy_set *s, const char *svc, Hypha__V1__DpOutbound *o)
{
    /* Kuma's catch-all first: PathPrefix / to the service, which a rule
     * with the same match merges over */
    Hypha__V1__MeshHTTPRoute__PathMatch slash = HYPHA__V1__MESH_HTTPROUTE__PATH_MATCH__INIT;
    slash.type = "PathPrefix";
    slash.value = "/";
    http_match all = HYPHA__V1__MESH_HTTPROUTE__MATCH__INIT;
    all.path = &slash;
    http_match *allv[] = {&all};
    struct routes rt = {svc, NULL, 0, false};
    int rc = acc_add(&rt, allv, 1, NULL, NULL, NULL);
    if (rc == 0)
        rc = hy_policy_each_entry(s, "to", SIZE_MAX, route_entry, &rt);
    size_t nflat = 0;
    for (size_t i = 0; i < rt.n; i++)
        nflat += rt.v[i].nmatches;
    struct flat *fl = rc == 0 && rt.any ? malloc(nflat * sizeof(*fl)) : NULL;
    if (rc == 0 && rt.any && !fl)
        rc = HY_ENOMEM;
    if (fl) { /* no route applies (only the catch-all): routes stay empty */
        size_t k = 0;
        for (size_t i = 0; i < rt.n; i++)
            for (size_t j = 0; j < rt.v[i].nmatches; j++, k++)
                fl[k] = (struct flat){rt.v[i].matches[j], i, k};
        qsort(fl, nflat, sizeof(*fl), by_precedence);
        for (size_t i = 0; rc == 0 && i < nflat; i++)
            rc = put_route(o, &rt.v[fl[i].acc], fl[i].m);
    }
    free(fl);
    for (size_t i = 0; i < rt.n; i++) {
        free(rt.v[i].key);
        free(rt.v[i].name);
        hy_policy_conf_fini(&rt.v[i].conf);
    }
    free(rt.v);
    return rc;
}

/* ----- MeshTCPRoute ----- */

struct tcp_walk {
    const char *svc;
    struct hy_policy_conf conf; /* a MeshTCPRoute RuleConf */
};

static int tcp_entry(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                     const struct hy_policy_origin *o)
{
    struct tcp_walk *w = ud;
    (void)conf;
    struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, w->svc}};
    struct hy_policy_tags tags = {dest, 1};
    if (!ref || !hy_policy_ref_matches(ref, &tags))
        return 0;
    const Hypha__V1__MeshTCPRoute__To *to =
        ((const Hypha__V1__MeshTCPRoute *)o->r->spec)->to[o->index];
    /* Kuma applies a to entry's first rule */
    if (!to->n_rules || !to->rules[0]->default_)
        return 0;
    return hy_policy_conf_merge(&w->conf, &to->rules[0]->default_->base, o);
}

int hy_policy_tcp_backends(const struct hy_policy_set *s, const char *svc, Hypha__V1__DpOutbound *o)
{
    struct tcp_walk w = {svc, {0}};
    int rc = hy_policy_each_entry(s, "to", SIZE_MAX, tcp_entry, &w);
    const Hypha__V1__MeshTCPRoute__RuleConf *c = (const void *)w.conf.conf;
    for (size_t i = 0; rc == 0 && c && i < c->n_backend_refs; i++)
        rc = add_backend(&o->base, "tcp_backends", c->backend_refs[i]);
    hy_policy_conf_fini(&w.conf);
    return rc;
}

/* ----- MeshFaultInjection ----- */

static uint32_t per_million(const char *percentage)
{
    uint32_t ppm = 0;
    return percentage && hy_percentage_per_million(percentage, &ppm) ? ppm : 0;
}

static int fault_entry(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                       const struct hy_policy_origin *o)
{
    Hypha__V1__DpInbound *in = ud;
    const Hypha__V1__MeshFaultInjection__Conf *c = (const void *)conf;
    if (!c)
        return 0;
    Hypha__V1__DpCallerFaults *f = (Hypha__V1__DpCallerFaults *)push(&in->base, "faults");
    if (!f || !(f->origin = hy_policy_origin_str(o, NULL)))
        return HY_ENOMEM;
    int rc = hy_policy_caller_tags(&f->base, ref);
    for (size_t i = 0; rc == 0 && i < c->n_http; i++) {
        const Hypha__V1__MeshFaultInjection__Fault *s = c->http[i];
        Hypha__V1__DpHttpFault *h = (Hypha__V1__DpHttpFault *)push(&f->base, "http");
        if (!h)
            return HY_ENOMEM;
        if (s->abort) {
            h->has_abort_status = h->has_abort_per_million = 1;
            h->abort_status = (uint32_t)s->abort->http_status;
            h->abort_per_million = per_million(s->abort->percentage);
        }
        if (s->delay && s->delay->value) {
            h->has_delay_per_million = 1;
            h->delay_per_million = per_million(s->delay->percentage);
            rc = set_dur(&h->delay, s->delay->value);
        }
        if (s->response_bandwidth) {
            uint32_t bw = 0;
            hy_bandwidth_bytes_per_s(s->response_bandwidth->limit, &bw);
            h->has_bandwidth_bytes_per_s = h->has_bandwidth_per_million = 1;
            h->bandwidth_bytes_per_s = bw;
            h->bandwidth_per_million = per_million(s->response_bandwidth->percentage);
        }
    }
    return rc;
}

int hy_policy_inbound_faults(const struct hy_policy_set *s, size_t i, Hypha__V1__DpInbound *in)
{
    int rc = hy_policy_each_entry(s, "from", i, fault_entry, in);
    return rc ? rc : hy_policy_each_entry(s, "rules", i, fault_entry, in);
}

/* ----- MeshRateLimit ----- */

/* The `from` entries of inbound i, in merge order. */
struct from_list {
    struct {
        const Hypha__V1__TargetRef *ref;
        const ProtobufCMessage *conf;
        struct hy_policy_origin o;
    } * v;
    size_t n;
};

static int keep_from(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                     const struct hy_policy_origin *o)
{
    struct from_list *l = ud;
    void *nv = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    if (!nv)
        return HY_ENOMEM;
    l->v = nv;
    l->v[l->n].ref = ref;
    l->v[l->n].conf = conf;
    l->v[l->n++].o = *o;
    return 0;
}

/* Every caller that a matches, b matches too: b asks nothing a does not. */
static bool ref_covers(const Hypha__V1__TargetRef *b, const Hypha__V1__TargetRef *a)
{
    if (!b || !b->has_kind || b->kind == HYPHA__V1__TARGET_REF__KIND__Mesh)
        return true;
    struct hy_policy_tag buf[66];
    size_t n = 0;
    if (a && a->has_kind &&
        (a->kind == HYPHA__V1__TARGET_REF__KIND__MeshService ||
         a->kind == HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset))
        buf[n++] = (struct hy_policy_tag){HY_TAG_SERVICE, S(a->name)};
    if (a && a->has_kind &&
        (a->kind == HYPHA__V1__TARGET_REF__KIND__MeshSubset ||
         a->kind == HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset))
        for (size_t i = 0; i < a->n_tags && n < 66; i++)
            buf[n++] = (struct hy_policy_tag){S(a->tags[i]->key), S(a->tags[i]->value)};
    struct hy_policy_tags tags = {buf, n};
    return hy_policy_ref_matches(b, &tags);
}

static int put_rate_limit(Hypha__V1__DpInbound *in, const Hypha__V1__TargetRef *ref,
                          const Hypha__V1__MeshRateLimit__Conf *c, const struct hy_policy_origin *o)
{
    Hypha__V1__DpCallerRateLimit *x =
        (Hypha__V1__DpCallerRateLimit *)push(&in->base, "rate_limits");
    if (!x || !(x->origin = hy_policy_origin_str(o, NULL)))
        return HY_ENOMEM;
    int rc = hy_policy_caller_tags(&x->base, ref);
    const Hypha__V1__MeshRateLimit__Local *l = c ? c->local : NULL;
    const Hypha__V1__MeshRateLimit__Http *h = l ? l->http : NULL;
    const Hypha__V1__MeshRateLimit__Tcp *t = l ? l->tcp : NULL;
    x->has_http_requests = x->has_tcp_connections = 1;
    if (rc == 0 && h && !(h->has_disabled && h->disabled) && h->request_rate) {
        x->http_requests = h->request_rate->num;
        rc = set_dur(&x->http_interval, h->request_rate->interval);
        const Hypha__V1__MeshRateLimit__OnRateLimit *on = h->on_rate_limit;
        if (on && on->has_status) {
            x->has_on_limit_status = 1;
            x->on_limit_status = on->status;
        }
        if (rc == 0 && on && on->headers) {
            Hypha__V1__MeshHTTPRoute__HeaderModifier m =
                HYPHA__V1__MESH_HTTPROUTE__HEADER_MODIFIER__INIT;
            m.set = on->headers->set;
            m.n_set = on->headers->n_set;
            m.add = on->headers->add;
            m.n_add = on->headers->n_add;
            rc = put_modifier(&x->on_limit_headers, &m);
        }
    }
    if (rc == 0 && t && !(t->has_disabled && t->disabled) && t->connection_rate) {
        x->tcp_connections = t->connection_rate->num;
        rc = set_dur(&x->tcp_interval, t->connection_rate->interval);
    }
    return rc;
}

int hy_policy_inbound_rate_limits(const struct hy_policy_set *s, size_t i, Hypha__V1__DpInbound *in)
{
    struct from_list l = {NULL, 0};
    int rc = hy_policy_each_entry(s, "from", i, keep_from, &l);
    if (rc == 0) /* rules (no targetRef): every caller, after the from entries */
        rc = hy_policy_each_entry(s, "rules", i, keep_from, &l);
    /* the sidecar takes the last entry a caller matches; so each entry
     * carries what merges for its callers: the earlier entries that match
     * every caller it matches, then itself (later over earlier, Kuma) */
    for (size_t k = 0; rc == 0 && k < l.n; k++) {
        struct hy_policy_conf c = {0};
        for (size_t j = 0; rc == 0 && j <= k; j++)
            if (j == k || ref_covers(l.v[j].ref, l.v[k].ref))
                rc = hy_policy_conf_merge(&c, l.v[j].conf, &l.v[j].o);
        if (rc == 0 && c.conf)
            rc = put_rate_limit(in, l.v[k].ref, (const void *)c.conf, &l.v[k].o);
        hy_policy_conf_fini(&c);
    }
    free(l.v);
    return rc;
}

/* ----- backends ----- */

static int push_unique(char ***v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*v)[i], s))
            return 0;
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return HY_ENOMEM;
    *v = nv;
    return (nv[*n] = strdup(s)) ? (++*n, 0) : HY_ENOMEM;
}

static const char *outbound_service(const Hypha__V1__Dataplane__Networking__Outbound *o)
{
    for (size_t k = 0; k < o->n_tags; k++)
        if (!strcmp(S(o->tags[k]->key), HY_TAG_SERVICE))
            return o->tags[k]->value;
    return NULL;
}

static bool listed(const Hypha__V1__Dataplane *d, const char *svc)
{
    for (size_t i = 0; d->networking && i < d->networking->n_outbound; i++)
        if (!strcmp(S(outbound_service(d->networking->outbound[i])), svc))
            return true;
    return false;
}

int hy_policy_backend_services(const struct hy_policy_world *w, const struct hy_policy_proxy *p,
                               char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)p->dp->spec;
    size_t nout = d->networking ? d->networking->n_outbound : 0;
    if (!nout || (!w->n[HY_POLICY_HTTP_ROUTE] && !w->n[HY_POLICY_TCP_ROUTE]))
        return 0;
    struct hy_policy_set http = {0}, tcp = {0};
    int rc = hy_policy_select(w->v[HY_POLICY_HTTP_ROUTE], w->n[HY_POLICY_HTTP_ROUTE], p, &http);
    if (rc == 0)
        rc = hy_policy_select(w->v[HY_POLICY_TCP_ROUTE], w->n[HY_POLICY_TCP_ROUTE], p, &tcp);
    for (size_t i = 0; rc == 0 && (http.n || tcp.n) && i < nout; i++) {
        const char *svc = S(outbound_service(d->networking->outbound[i]));
        Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
        if (!o) {
            rc = HY_ENOMEM;
            break;
        }
        hypha__v1__dp_outbound__init(o);
        rc = hy_policy_http_routes(&http, svc, o);
        if (rc == 0)
            rc = hy_policy_tcp_backends(&tcp, svc, o);
        for (size_t r = 0; rc == 0 && r < o->n_http_routes; r++) {
            const Hypha__V1__DpHttpRoute *rt = o->http_routes[r];
            for (size_t b = 0; rc == 0 && b < rt->n_backends; b++)
                if (!listed(d, S(rt->backends[b]->service)))
                    rc = push_unique(out, n, S(rt->backends[b]->service));
            for (size_t f = 0; rc == 0 && f < rt->n_filters; f++) {
                const Hypha__V1__DpHttpFilter__Mirror *m = rt->filters[f]->request_mirror;
                if (m && m->backend && !listed(d, S(m->backend->service)))
                    rc = push_unique(out, n, S(m->backend->service));
            }
        }
        for (size_t b = 0; rc == 0 && b < o->n_tcp_backends; b++)
            if (!listed(d, S(o->tcp_backends[b]->service)))
                rc = push_unique(out, n, S(o->tcp_backends[b]->service));
        hypha__v1__dp_outbound__free_unpacked(o, NULL);
    }
    hy_policy_set_fini(&http);
    hy_policy_set_fini(&tcp);
    if (rc < 0) {
        hy_policy_strings_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void hy_policy_strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
