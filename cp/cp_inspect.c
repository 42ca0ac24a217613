/* Explaining what the policy engine decided, on both control planes:
 *
 *   GET /meshes/{mesh}/dataplanes/{name}/_rules   the policies selecting a
 *       Dataplane, in merge order, and what they merge to per inbound and
 *       outbound (MeshMetric: "proxyRule", the proxy's one merged
 *       default), each value with the policy and entry it came from
 *   GET /meshes/{mesh}/_explain?from=X&to=Y       whether X (a Dataplane, a
 *       service, or tags KEY=VALUE,...) may call Y (a Dataplane, one of its
 *       inbounds as DATAPLANE:PORT|NAME, or a service): at each inbound, the
 *       decision, the deciding policy and entry, and every entry and rules
 *       matcher the caller matches, in order
 *   GET /meshes/{mesh}/dataplanes/{name}/_config  here a 400: the zone the
 *       sidecar connects to computes configs and serves this (zone_api.c)
 *   GET /meshes/{mesh}/dataplanes/{name}/stats    likewise: the zone asks
 *       the sidecar over its session
 *   POST /_apply?dryRun=true                       "changes": which
 *       Dataplanes' effective policies the write would change, and how
 *
 * The decisions are common/permit.c's, the one the sidecar enforces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "cp_inspect.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "permit.h"
#include "policy.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")
#define MAX_TAGS 64

static void json_str(struct hy_buf *b, const char *s)
{
    hy_codec_json_string(b, S(s), strlen(S(s)));
}

static const Hypha__V1__Dataplane *dp_spec(const struct hy_resource *dp)
{
    return (const Hypha__V1__Dataplane *)dp->spec;
}

static size_t n_inbounds(const struct hy_resource *dp)
{
    const Hypha__V1__Dataplane *d = dp_spec(dp);
    size_t n = d->networking ? d->networking->n_inbound : 0;
    return n < HY_POLICY_MAX_INBOUNDS ? n : HY_POLICY_MAX_INBOUNDS;
}

static const char *service_of(const Hypha__V1__Dataplane__Networking__Inbound *in)
{
    for (size_t k = 0; k < in->n_tags; k++)
        if (!strcmp(S(in->tags[k]->key), HY_TAG_SERVICE))
            return in->tags[k]->value;
    return NULL;
}

/* A caller as its certificate would show it (hy_zone_dp_identity_uris):
 * every inbound tag, the zone's, and its first SPIFFE ID. */
static void caller_of(const struct hy_resource *dp, struct hy_permit_peer *peer, char *id,
                      size_t size)
{
    struct hy_policy_proxy p = {dp, dp->origin};
    memset(peer, 0, sizeof(*peer));
    id[0] = '\0';
    for (size_t i = 0; i < n_inbounds(dp); i++) {
        struct hy_policy_tag t[MAX_TAGS];
        size_t n = hy_policy_inbound_tags(&p, i, t, MAX_TAGS);
        for (size_t k = 0; k < n; k++)
            if (!hy_permit_peer_has(peer, t[k].key, t[k].value))
                hy_permit_peer_add(peer, t[k].key, t[k].value);
        const char *svc = service_of(dp_spec(dp)->networking->inbound[i]);
        if (!id[0] && svc)
            snprintf(id, size, "spiffe://%s/%s", S(dp->meta->mesh), svc);
    }
}

/* The permissions the zone sends inbound i (hy_policy_inbound_permissions)
 * in a new DpInbound: *out the caller's (hypha__v1__dp_inbound__free_unpacked)
 * on success and on failure (then partly filled, or NULL: HY_ENOMEM). */
static int inbound_permissions(const struct hy_policy_set *mtp, size_t i,
                               Hypha__V1__DpInbound **out)
{
    *out = malloc(sizeof(**out));
    if (!*out)
        return HY_ENOMEM;
    hypha__v1__dp_inbound__init(*out);
    return hy_policy_inbound_permissions(mtp, i, *out);
}

static const char *result_name(enum hy_permit_result r)
{
    return r == HY_PERMIT_ALLOW ? "Allow" : r == HY_PERMIT_SHADOW ? "AllowWithShadowDeny" : "Deny";
}

/* ----- the Dataplanes of a mesh ----- */

#define LABEL_ZONE "hypha.io/zone"                 /* on the global CP: the zone it came from */
#define LABEL_DISPLAY_NAME "hypha.io/display-name" /* and its name there */

struct dps {
    struct hy_resource **v;
    size_t n;
    const char *mesh;
};

static int keep_dp(void *ud, struct hy_resource *r, bool *take)
{
    struct dps *d = ud;
    if (strcmp(S(r->meta->mesh), d->mesh))
        return 0;
    struct hy_resource **nv = realloc(d->v, (d->n + 1) * sizeof(*nv));
    if (!nv)
        return HY_ENOMEM;
    d->v = nv;
    nv[d->n++] = r;
    *take = true;
    return 0;
}

static void dps_fini(struct dps *d)
{
    for (size_t i = 0; i < d->n; i++)
        hy_resource_free(d->v[i]);
    free(d->v);
}

static const char *label_of(const struct hy_resource *r, const char *key)
{
    for (size_t i = 0; i < r->meta->n_labels; i++)
        if (r->meta->labels[i]->key && !strcmp(r->meta->labels[i]->key, key))
            return r->meta->labels[i]->value;
    return NULL;
}

/* 404 naming the Dataplane the mesh lacks (also: more of the sentence),
 * and the ones it may mean: the global CP stores a zone's web-1 as
 * east.web-1. */
static void dp_not_found(struct hy_http_resp *resp, const struct dps *d, const char *name,
                         const char *also)
{
    struct hy_buf details = {0};
    size_t k = 0;
    hy_buf_printf(&details, "no Dataplane %.250s in mesh %.250s%s", name, d->mesh, S(also));
    for (size_t i = 0; i < d->n && k < 5; i++) {
        const char *dn = label_of(d->v[i], LABEL_DISPLAY_NAME);
        if (dn && !strcmp(dn, name))
            hy_buf_printf(&details, "%s%s", k++ ? ", " : " (did you mean ", d->v[i]->meta->name);
    }
    if (k)
        hy_buf_puts(&details, "?)");
    hy_http_error(resp, 404, "Not found", details.data ? details.data : "not found", NULL);
    hy_buf_fini(&details);
}

static void dp_not_found_in_store(struct hy_cp_api *api, struct hy_http_resp *resp,
                                  const char *mesh, const char *name)
{
    struct dps d = {.mesh = mesh};
    hy_store_each(api->store, "Dataplane", keep_dp, &d); /* suggestions are a bonus */
    dp_not_found(resp, &d, name, NULL);
    dps_fini(&d);
}

/* ----- _rules ----- */

/* The L7 types the engine turns into sidecar fields (policy_l7.c) rather
 * than merging a `default`: what the sidecar gets, as JSON, into out
 * (nothing when nothing applies). Routes for an outbound's service... */
static bool is_route_type(int t)
{
    return t == HY_POLICY_HTTP_ROUTE || t == HY_POLICY_TCP_ROUTE;
}

static bool is_inbound_type(int t)
{
    return t == HY_POLICY_MTP || t == HY_POLICY_FAULT || t == HY_POLICY_RATE_LIMIT;
}

/* One top-level default for the whole proxy (MeshMetric). */
static bool is_proxy_type(int t)
{
    return t == HY_POLICY_METRIC || t == HY_POLICY_TRACE;
}

static int l7_outbound_json(int t, const struct hy_policy_set *s, const char *svc,
                            struct hy_buf *out)
{
    Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
    if (!o)
        return HY_ENOMEM;
    hypha__v1__dp_outbound__init(o);
    int rc = t == HY_POLICY_HTTP_ROUTE ? hy_policy_http_routes(s, svc, o)
                                       : hy_policy_tcp_backends(s, svc, o);
    if (rc == 0 && (o->n_http_routes || o->n_tcp_backends))
        hy_codec_encode_message(&o->base, HY_FORMAT_JSON, out);
    hypha__v1__dp_outbound__free_unpacked(o, NULL);
    return rc;
}

/* MeshFaultInjection, MeshRateLimit or MeshAccessLog at inbound i, as the sidecar gets
 * it, into out (nothing when nothing applies). */
static int l7_inbound_json(int t, const struct hy_policy_set *s, size_t i, struct hy_buf *out)
{
    Hypha__V1__DpInbound *in = malloc(sizeof(*in));
    if (!in)
        return HY_ENOMEM;
    hypha__v1__dp_inbound__init(in);
    int rc = t == HY_POLICY_FAULT        ? hy_policy_inbound_faults(s, i, in)
             : t == HY_POLICY_ACCESS_LOG ? hy_policy_inbound_access_log(s, i, in)
                                         : hy_policy_inbound_rate_limits(s, i, in);
    if (rc == 0 && (in->n_faults || in->n_rate_limits || in->access_log))
        hy_codec_encode_message(&in->base, HY_FORMAT_JSON, out);
    hypha__v1__dp_inbound__free_unpacked(in, NULL);
    return rc;
}

static void put_ref(struct hy_buf *b, const Hypha__V1__TargetRef *t)
{
    if (!t) {
        hy_buf_puts(b, "{\"kind\":\"Mesh\"}");
        return;
    }
    hy_codec_encode_message(&t->base, HY_FORMAT_JSON, b);
}

static void put_policies(struct hy_buf *b, const struct hy_policy_set *s)
{
    hy_buf_puts(b, "\"policies\":[");
    for (size_t i = 0; i < s->n; i++) {
        const struct hy_resource *r = s->v[i].r;
        hy_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        json_str(b, r->meta->name);
        hy_buf_puts(b, ",\"origin\":");
        json_str(b, r->origin ? r->origin : "global");
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(r->spec->descriptor, "target_ref");
        hy_buf_puts(b, ",\"targetRef\":");
        put_ref(b, f ? *(Hypha__V1__TargetRef *const *)((const char *)r->spec + f->offset) : NULL);
        hy_buf_puts(b, "}");
    }
    hy_buf_puts(b, "]");
}

static void put_tags(struct hy_buf *b, const struct hy_policy_tag *t, size_t n)
{
    hy_buf_puts(b, "{");
    for (size_t k = 0; k < n; k++) {
        hy_buf_puts(b, k ? "," : "");
        json_str(b, t[k].key);
        hy_buf_puts(b, ":");
        json_str(b, t[k].value);
    }
    hy_buf_puts(b, "}");
}

static void put_from_rules(struct hy_buf *b, const struct hy_policy_proxy *p,
                           const struct hy_policy_set *mtp)
{
    hy_buf_puts(b, ",\"fromRules\":[");
    for (size_t i = 0; i < n_inbounds(p->dp); i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *ib =
            dp_spec(p->dp)->networking->inbound[i];
        struct hy_policy_tag t[MAX_TAGS];
        size_t nt = hy_policy_inbound_tags(p, i, t, MAX_TAGS);
        hy_buf_printf(b, "%s{\"inbound\":{\"port\":%u,\"tags\":", i ? "," : "", ib->port);
        put_tags(b, t, nt);
        hy_buf_puts(b, "},\"entries\":");
        Hypha__V1__DpInbound *in = malloc(sizeof(*in));
        if (in) {
            hypha__v1__dp_inbound__init(in);
            hy_policy_inbound_permissions(mtp, i, in);
            /* the inbound as the sidecar gets it: entries in merge order (the
             * last one a caller matches decides) and rules matchers */
            struct hy_buf one = {0};
            hy_codec_encode_message(&in->base, HY_FORMAT_JSON, &one);
            hy_buf_puts(b, one.len > 2 ? one.data : "{}");
            hy_buf_fini(&one);
            hypha__v1__dp_inbound__free_unpacked(in, NULL);
        } else {
            hy_buf_puts(b, "{}");
        }
        hy_buf_puts(b, "}");
    }
    hy_buf_puts(b, "]");
}

static void put_conf(struct hy_buf *b, const struct hy_policy_conf *c)
{
    hy_buf_puts(b, "\"conf\":");
    if (c->conf)
        hy_codec_encode_message(c->conf, HY_FORMAT_JSON, b);
    else
        hy_buf_puts(b, "null");
    hy_buf_puts(b, ",\"origin\":{");
    for (size_t k = 0; k < c->nprov; k++) {
        const struct hy_policy_origin *o = &c->prov[k].origin;
        char from[512];
        snprintf(from, sizeof(from), "%s/%s %s[%zu]", o->r->type->name, S(o->r->meta->name),
                 o->section, o->index);
        hy_buf_puts(b, k ? "," : "");
        json_str(b, c->prov[k].path);
        hy_buf_puts(b, ":");
        json_str(b, from);
    }
    hy_buf_puts(b, "}");
}

static const char *outbound_service(const Hypha__V1__Dataplane__Networking__Outbound *o)
{
    for (size_t k = 0; k < o->n_tags; k++)
        if (!strcmp(S(o->tags[k]->key), HY_TAG_SERVICE))
            return o->tags[k]->value;
    return NULL;
}

/* MeshFaultInjection, MeshRateLimit: per inbound, what the sidecar gets
 * (the entries in merge order, each with its origin). */
static int put_l7_from_rules(struct hy_buf *b, const struct hy_policy_proxy *p, int t,
                             const struct hy_policy_set *s)
{
    hy_buf_puts(b, ",\"fromRules\":[");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n_inbounds(p->dp); i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *ib =
            dp_spec(p->dp)->networking->inbound[i];
        struct hy_buf one = {0};
        rc = l7_inbound_json(t, s, i, &one);
        hy_buf_printf(b, "%s{\"inbound\":{\"port\":%u},\"entries\":%s}", i ? "," : "", ib->port,
                      one.len ? one.data : "{}");
        hy_buf_fini(&one);
    }
    hy_buf_puts(b, "]");
    return rc;
}

/* MeshTimeout: per inbound, its from entries and rules merged as the
 * sidecar gets them, with where each value came from. */
static int put_merged_from_rules(struct hy_buf *b, const struct hy_policy_proxy *p,
                                 const struct hy_policy_set *s)
{
    hy_buf_puts(b, ",\"fromRules\":[");
    for (size_t i = 0; i < n_inbounds(p->dp); i++) {
        struct hy_policy_conf c;
        int rc = hy_policy_merge_inbound(s, i, &c);
        if (rc < 0)
            return rc;
        hy_buf_printf(b, "%s{\"inbound\":{\"port\":%u},", i ? "," : "",
                      dp_spec(p->dp)->networking->inbound[i]->port);
        put_conf(b, &c);
        hy_buf_puts(b, "}");
        hy_policy_conf_fini(&c);
    }
    hy_buf_puts(b, "]");
    return 0;
}

static int put_to_rules(struct hy_buf *b, const struct hy_policy_proxy *p, int t,
                        const struct hy_policy_set *s)
{
    const Hypha__V1__Dataplane *d = dp_spec(p->dp);
    size_t nout = d->networking ? d->networking->n_outbound : 0;
    hy_buf_puts(b, ",\"toRules\":[");
    for (size_t i = 0; i < nout; i++) {
        const char *svc = S(outbound_service(d->networking->outbound[i]));
        struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, svc}};
        struct hy_policy_tags tags = {dest, 1};
        struct hy_policy_conf c;
        int rc = is_route_type(t) ? 0 : hy_policy_merge(s, "to", SIZE_MAX, &tags, &c);
        if (rc < 0)
            return rc;
        hy_buf_printf(b, "%s{\"outbound\":{\"port\":%u,\"service\":", i ? "," : "",
                      d->networking->outbound[i]->port);
        json_str(b, svc);
        hy_buf_puts(b, "},");
        if (is_route_type(t)) { /* the routes as the sidecar gets them, each naming its rule */
            struct hy_buf one = {0};
            rc = l7_outbound_json(t, s, svc, &one);
            hy_buf_printf(b, "\"routes\":%s}", one.len ? one.data : "null");
            hy_buf_fini(&one);
            if (rc < 0)
                return rc;
            continue;
        }
        put_conf(b, &c);
        hy_buf_puts(b, "}");
        hy_policy_conf_fini(&c);
    }
    hy_buf_puts(b, "]");
    return 0;
}

/* MeshMetric, MeshTrace: the merged default, with where each value came from. */
static int put_proxy_rule(struct hy_buf *b, int t, const struct hy_policy_set *s)
{
    struct hy_policy_conf c;
    int rc = t == HY_POLICY_TRACE ? hy_policy_trace_merge(s, &c) : hy_policy_metric_merge(s, &c);
    if (rc < 0)
        return rc;
    hy_buf_puts(b, ",\"proxyRule\":{");
    put_conf(b, &c);
    hy_buf_puts(b, "}");
    hy_policy_conf_fini(&c);
    return 0;
}

static void rules(struct hy_cp_api *api, struct hy_http_resp *resp, const char *mesh,
                  const char *name)
{
    struct hy_resource *dp = NULL;
    int rc = hy_store_get(api->store, "Dataplane", mesh, name, &dp);
    if (rc == HY_ENOTFOUND) {
        dp_not_found_in_store(api, resp, mesh, name);
        return;
    }
    struct hy_policy_world w;
    struct hy_policy_set sel[HY_POLICY_NTYPES];
    struct hy_policy_proxy p = {dp, dp ? dp->origin : NULL};
    if (rc < 0 || (rc = hy_policy_world_load(api->store, &w)) < 0) {
        hy_http_error(resp, 500, "Store error", hy_strerror(rc), NULL);
        hy_resource_free(dp);
        return;
    }
    if ((rc = hy_policy_select_all(&w, &p, sel)) < 0)
        goto out;
    struct hy_buf *b = &resp->body;
    hy_buf_puts(b, "{\"resource\":{\"type\":\"Dataplane\",\"mesh\":");
    json_str(b, mesh);
    hy_buf_puts(b, ",\"name\":");
    json_str(b, name);
    hy_buf_puts(b, ",\"zone\":");
    json_str(b, dp->origin);
    hy_buf_puts(b, "},\"rules\":[");
    bool first = true;
    for (int t = 0; rc == 0 && t < HY_POLICY_NTYPES; t++) {
        if (!sel[t].n)
            continue;
        hy_buf_printf(b, "%s{\"type\":\"%s\",", first ? "" : ",", hy_policy_type_names[t]);
        first = false;
        put_policies(b, &sel[t]);
        if (t == HY_POLICY_MTP)
            put_from_rules(b, &p, &sel[t]);
        else if (t == HY_POLICY_FAULT || t == HY_POLICY_RATE_LIMIT)
            rc = put_l7_from_rules(b, &p, t, &sel[t]);
        else if (is_proxy_type(t))
            rc = put_proxy_rule(b, t, &sel[t]);
        else if (t == HY_POLICY_ACCESS_LOG && (rc = put_l7_from_rules(b, &p, t, &sel[t])) == 0)
            rc = put_to_rules(b, &p, t, &sel[t]); /* both sides: from/rules and to */
        else if (t == HY_POLICY_TIMEOUT && (rc = put_merged_from_rules(b, &p, &sel[t])) == 0)
            rc = put_to_rules(b, &p, t, &sel[t]); /* both sides likewise */
        else
            rc = put_to_rules(b, &p, t, &sel[t]);
        hy_buf_puts(b, ",\"warnings\":[");
        size_t nw = 0;
        for (size_t i = 0; i < sel[t].n; i++) {
            struct hy_diag wd = {0};
            hy_policy_warnings(sel[t].v[i].r, &wd);
            for (size_t k = 0; k < wd.n; k++) {
                char line[1024];
                snprintf(line, sizeof(line), "%s: %s: %s", S(sel[t].v[i].r->meta->name),
                         wd.causes[k].field, wd.causes[k].message);
                hy_buf_puts(b, nw++ ? "," : "");
                json_str(b, line);
            }
            hy_diag_fini(&wd);
        }
        hy_buf_puts(b, "]}");
    }
    hy_buf_puts(b, "]}");
    hy_policy_sets_fini(sel);
out:
    if (rc < 0) {
        hy_buf_fini(&resp->body);
        hy_http_error(resp, 500, "Cannot compute the rules", hy_strerror(rc), NULL);
    }
    hy_policy_world_fini(&w);
    hy_resource_free(dp);
}

/* ----- _explain ----- */

#define MAX_EXPLAINED 256 /* callers, and callee inbounds, one _explain looks at */
#define MAX_RESULTS 1000  /* caller x callee pairs answered; the rest is cut */

static bool serves(const struct hy_resource *dp, const char *svc, size_t *inbound)
{
    for (size_t i = 0; i < n_inbounds(dp); i++)
        if (!strcmp(S(service_of(dp_spec(dp)->networking->inbound[i])), svc)) {
            if (inbound)
                *inbound = i;
            return true;
        }
    return false;
}

/* "denied by MeshTrafficPermission/mesh-deny from[0]: the last from entry
 * the caller matches" */
static void reason(const struct hy_permit_decision *d, char *buf, size_t size)
{
    const char *verb = d->result == HY_PERMIT_DENY    ? "denied"
                       : d->result == HY_PERMIT_ALLOW ? "allowed"
                                                      : "allowed (shadow deny: logged as denied)";
    if (d->origin)
        snprintf(buf, size, "%s by %s: %s", verb, d->origin, d->why);
    else
        snprintf(buf, size, "%s: %s", verb, d->why);
}

static void trim(const char **p, size_t *len)
{
    while (*len && (**p == ' ' || **p == '\t'))
        (*p)++, (*len)--;
    while (*len && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

/* from=KEY=VALUE[,KEY=VALUE...]: a caller showing exactly these tags
 * (kuma.io/ keys read as hypha.io/, as the codec reads them), whose SPIFFE
 * ID comes from its service tag. false with why filled on a bad list. */
static bool parse_tags(const char *mesh, const char *s, struct hy_permit_peer *peer, char *id,
                       size_t idsize, char *why, size_t size)
{
    memset(peer, 0, sizeof(*peer));
    id[0] = '\0';
    for (const char *p = s; *p;) {
        size_t len = strcspn(p, ","), kl, vl;
        const char *item = p, *eq = memchr(p, '=', len);
        p += len + (p[len] == ',');
        const char *k = item, *v = eq ? eq + 1 : NULL;
        kl = eq ? (size_t)(eq - item) : len;
        vl = eq ? len - kl - 1 : 0;
        trim(&k, &kl);
        if (v)
            trim(&v, &vl);
        if (!eq || !kl || !vl) {
            snprintf(why, size,
                     "from: \"%.*s\" is not KEY=VALUE (give a Dataplane, a service, or "
                     "tags like kuma.io/service=web,env=dev)",
                     (int)(len < 200 ? len : 200), item);
            return false;
        }
        char key[300], value[300];
        if (kl >= 200 || vl >= 200) {
            snprintf(why, size, "from: a tag of over 200 characters");
            return false;
        }
        bool kuma = kl > 8 && !strncmp(k, "kuma.io/", 8);
        snprintf(key, sizeof(key), "%s%.*s", kuma ? "hypha.io/" : "", (int)(kuma ? kl - 8 : kl),
                 kuma ? k + 8 : k);
        snprintf(value, sizeof(value), "%.*s", (int)vl, v);
        hy_permit_peer_add(peer, key, value);
        if (!strcmp(key, HY_TAG_SERVICE) && !id[0])
            snprintf(id, idsize, "spiffe://%s/%s", mesh, value);
    }
    if (!peer->n) {
        snprintf(why, size, "from: no tags given");
        return false;
    }
    return true;
}

/* One inbound of one Dataplane that `to` names. */
struct callee {
    const struct hy_resource *dp;
    size_t inbound;
};

/* The inbound DATAPLANE:INBOUND names: the one of that name, else the one
 * on that port. */
static bool inbound_named(const struct hy_resource *dp, const char *want, size_t *out)
{
    for (int by_port = 0; by_port < 2; by_port++)
        for (size_t i = 0; i < n_inbounds(dp); i++) {
            const Hypha__V1__Dataplane__Networking__Inbound *in =
                dp_spec(dp)->networking->inbound[i];
            char port[16];
            snprintf(port, sizeof(port), "%u", in->port);
            if (by_port ? !strcmp(port, want) : in->name && !strcmp(in->name, want)) {
                *out = i;
                return true;
            }
        }
    return false;
}

/* The inbounds `to` names, into v (at most MAX_EXPLAINED): DATAPLANE:INBOUND
 * (its port or name), DATAPLANE (each inbound), else SERVICE (the inbound
 * serving it at every Dataplane that does). false after answering 404. */
static bool find_callees(struct hy_http_resp *resp, const struct dps *d, const char *to,
                         struct callee *v, size_t *n, const char **kind)
{
    const char *colon = strchr(to, ':');
    size_t nl = colon ? (size_t)(colon - to) : strlen(to);
    const struct hy_resource *dp = NULL;
    for (size_t i = 0; i < d->n && !dp; i++)
        if (strlen(S(d->v[i]->meta->name)) == nl && !strncmp(d->v[i]->meta->name, to, nl))
            dp = d->v[i];
    *n = 0;
    if (dp) {
        *kind = "dataplane";
        size_t i;
        if (!colon) {
            for (i = 0; i < n_inbounds(dp) && *n < MAX_EXPLAINED; i++)
                v[(*n)++] = (struct callee){dp, i};
        } else if (inbound_named(dp, colon + 1, &i)) {
            v[(*n)++] = (struct callee){dp, i};
        }
        if (*n)
            return true;
        struct hy_buf details = {0};
        if (colon)
            hy_buf_printf(&details, "Dataplane %.250s has no inbound %.100s", dp->meta->name,
                          colon + 1);
        else
            hy_buf_printf(&details, "Dataplane %.250s has no inbounds", dp->meta->name);
        for (i = 0; i < n_inbounds(dp); i++) {
            const Hypha__V1__Dataplane__Networking__Inbound *in =
                dp_spec(dp)->networking->inbound[i];
            hy_buf_printf(&details, "%s%u%s%s", i ? ", " : " (its inbounds: ", in->port,
                          in->name ? " " : "", S(in->name));
        }
        hy_buf_puts(&details, n_inbounds(dp) ? ")" : ": nothing can call it");
        hy_http_error(resp, 404, "Not found", details.data ? details.data : "", NULL);
        hy_buf_fini(&details);
        return false;
    }
    char name[300];
    snprintf(name, sizeof(name), "%.*s", (int)(nl < 253 ? nl : 253), to);
    if (!colon) {
        *kind = "service";
        for (size_t i = 0, inb; i < d->n && *n < MAX_EXPLAINED; i++)
            if (serves(d->v[i], to, &inb))
                v[(*n)++] = (struct callee){d->v[i], inb};
        if (*n)
            return true;
    }
    dp_not_found(resp, d, name,
                 colon ? NULL : ", and no Dataplane of the mesh serves a service of that name");
    return false;
}

static void put_peer(struct hy_buf *b, const struct hy_permit_peer *peer)
{
    hy_buf_puts(b, "[");
    for (size_t k = 0; k < peer->n; k++) {
        char tag[1024];
        snprintf(tag, sizeof(tag), "%s=%s", peer->key[k], peer->value[k]);
        hy_buf_puts(b, k ? "," : "");
        json_str(b, tag);
    }
    hy_buf_puts(b, "]");
}

/* Whether the caller matches one entry or matcher alone: asked of
 * hy_permit_decide on an inbound holding only it, so what is explained
 * matches as the sidecar matches. */
static bool matches_alone(Hypha__V1__DpPermission *e, Hypha__V1__DpSpiffeMatch *m, int list,
                          const char *id, const struct hy_permit_peer *peer)
{
    Hypha__V1__DpInbound one = HYPHA__V1__DP_INBOUND__INIT;
    if (e) {
        one.n_permissions = 1;
        one.permissions = &e;
    } else if (list == 0) {
        one.n_deny = 1;
        one.deny = &m;
    } else if (list == 1) {
        one.n_allow = 1;
        one.allow = &m;
    } else {
        one.n_allow_with_shadow_deny = 1;
        one.allow_with_shadow_deny = &m;
    }
    struct hy_permit_decision d;
    hy_permit_decide(&one, id, peer, &d);
    return d.origin != NULL;
}

static const char *action_name(const Hypha__V1__DpPermission *e)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &hypha__v1__dp_permission__action__descriptor, e->has_action ? (int)e->action : 0);
    return v ? v->name : "Allow";
}

/* "matched": the from entries (in merge order) and then the rules matchers
 * the caller matches, the deciding one marked; returns how many were
 * looked at. */
static size_t put_matched(struct hy_buf *b, const Hypha__V1__DpInbound *in, const char *id,
                          const struct hy_permit_peer *peer, const char *decider)
{
    size_t n = 0;
    hy_buf_puts(b, ",\"matched\":[");
    for (size_t i = 0; i < in->n_permissions; i++) {
        Hypha__V1__DpPermission *e = in->permissions[i];
        if (!matches_alone(e, NULL, 0, id, peer))
            continue;
        hy_buf_puts(b, n++ ? ",{\"section\":\"from\",\"origin\":"
                           : "{\"section\":\"from\",\"origin\":");
        json_str(b, e->origin);
        hy_buf_printf(b, ",\"action\":\"%s\",\"tags\":{", action_name(e));
        for (size_t k = 0; k < e->n_tags; k++) {
            hy_buf_puts(b, k ? "," : "");
            json_str(b, e->tags[k]->key);
            hy_buf_puts(b, ":");
            json_str(b, e->tags[k]->value);
        }
        hy_buf_printf(b, "},\"decides\":%s}",
                      decider && e->origin && !strcmp(decider, e->origin) ? "true" : "false");
    }
    static const char *const actions[] = {"Deny", "Allow", "AllowWithShadowDeny"};
    Hypha__V1__DpSpiffeMatch *const *lists[] = {in->deny, in->allow, in->allow_with_shadow_deny};
    size_t counts[] = {in->n_deny, in->n_allow, in->n_allow_with_shadow_deny};
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++) {
            Hypha__V1__DpSpiffeMatch *m = lists[l][i];
            if (!matches_alone(NULL, m, l, id, peer))
                continue;
            hy_buf_puts(b, n++ ? ",{\"section\":\"rules\",\"origin\":"
                               : "{\"section\":\"rules\",\"origin\":");
            json_str(b, m->origin);
            hy_buf_printf(b,
                          ",\"action\":\"%s\",\"spiffeID\":{\"type\":\"%s\",\"value\":", actions[l],
                          m->prefix ? "Prefix" : "Exact");
            json_str(b, m->value);
            hy_buf_printf(b, "},\"decides\":%s}",
                          decider && m->origin && !strcmp(decider, m->origin) ? "true" : "false");
        }
    hy_buf_puts(b, "]");
    return in->n_permissions + in->n_deny + in->n_allow + in->n_allow_with_shadow_deny;
}

/* One result: the decision at callee c for a caller, with what it matched. */
static int explain_one(struct hy_buf *b, const struct hy_policy_world *w, const struct callee *c,
                       const char *caller, const char *id, const struct hy_permit_peer *peer,
                       bool first)
{
    struct hy_policy_proxy p = {c->dp, c->dp->origin};
    struct hy_policy_set mtp;
    int rc = hy_policy_select(w->v[HY_POLICY_MTP], w->n[HY_POLICY_MTP], &p, &mtp);
    if (rc < 0)
        return rc;
    Hypha__V1__DpInbound *in = malloc(sizeof(*in));
    if (!in) {
        hy_policy_set_fini(&mtp);
        return HY_ENOMEM;
    }
    hypha__v1__dp_inbound__init(in);
    rc = hy_policy_inbound_permissions(&mtp, c->inbound, in);
    hy_policy_set_fini(&mtp);
    if (rc == 0) {
        const Hypha__V1__Dataplane__Networking__Inbound *ib =
            dp_spec(c->dp)->networking->inbound[c->inbound];
        struct hy_permit_decision d;
        char why[1024];
        hy_permit_decide(in, id, peer, &d);
        reason(&d, why, sizeof(why));
        hy_buf_puts(b, first ? "{\"caller\":" : ",{\"caller\":");
        json_str(b, caller);
        hy_buf_puts(b, ",\"callee\":");
        json_str(b, c->dp->meta->name);
        hy_buf_printf(b, ",\"inbound\":%u,\"service\":", ib->port);
        json_str(b, service_of(ib));
        hy_buf_printf(b, ",\"decision\":\"%s\",\"origin\":", result_name(d.result));
        json_str(b, d.origin);
        hy_buf_puts(b, ",\"reason\":");
        json_str(b, why);
        hy_buf_puts(b, ",\"callerSpiffeID\":");
        json_str(b, id);
        hy_buf_puts(b, ",\"callerTags\":");
        put_peer(b, peer);
        size_t checked = put_matched(b, in, id, peer, d.origin);
        hy_buf_printf(b, ",\"checked\":%zu}", checked);
    }
    hypha__v1__dp_inbound__free_unpacked(in, NULL);
    return rc;
}

static void explain(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                    const char *mesh)
{
    const char *from = hy_http_param(req, "from"), *to = hy_http_param(req, "to");
    if (!from || !from[0] || !to || !to[0]) {
        hy_http_error(resp, 400, "Missing parameter",
                      "give from (a Dataplane, a service, or tags KEY=VALUE,...) and to (a "
                      "Dataplane, DATAPLANE:INBOUND, or a service)",
                      NULL);
        return;
    }
    struct dps d = {.mesh = mesh};
    struct hy_policy_world w = {0};
    struct callee *callees = calloc(MAX_EXPLAINED, sizeof(*callees));
    const struct hy_resource **callers = calloc(MAX_EXPLAINED, sizeof(*callers));
    struct hy_permit_peer *peer = calloc(1, sizeof(*peer));
    int rc = callees && callers && peer ? 0 : HY_ENOMEM;
    if (rc == 0)
        rc = hy_store_each(api->store, "Dataplane", keep_dp, &d);
    if (rc == 0)
        rc = hy_policy_world_load(api->store, &w);
    if (rc < 0) {
        hy_http_error(resp, 500, "Store error", hy_strerror(rc), NULL);
        goto out;
    }
    size_t ncallees = 0;
    const char *to_kind = NULL;
    if (!find_callees(resp, &d, to, callees, &ncallees, &to_kind))
        goto out;
    /* the callers: tags as given, the Dataplane named `from`, else every
     * one serving the service `from`, else a caller showing only that
     * service (one of another zone, say, which this zone does not know) */
    const char *from_kind = "dataplane";
    char id[600], why[600];
    size_t ncallers = 0;
    if (strchr(from, '=')) {
        from_kind = "tags";
        if (!parse_tags(mesh, from, peer, id, sizeof(id), why, sizeof(why))) {
            hy_http_error(resp, 400, "Invalid parameter", why, NULL);
            goto out;
        }
    } else {
        for (size_t i = 0; i < d.n && !ncallers; i++)
            if (!strcmp(S(d.v[i]->meta->name), from))
                callers[ncallers++] = d.v[i];
        for (size_t i = 0; !ncallers && i < d.n; i++)
            if (serves(d.v[i], from, NULL))
                from_kind = "service";
        for (size_t i = 0; !strcmp(from_kind, "service") && i < d.n && ncallers < MAX_EXPLAINED;
             i++)
            if (serves(d.v[i], from, NULL))
                callers[ncallers++] = d.v[i];
        if (!ncallers)
            from_kind = "unknown";
    }
    struct hy_buf *b = &resp->body;
    hy_buf_puts(b, "{\"from\":");
    json_str(b, from);
    hy_buf_puts(b, ",\"to\":");
    json_str(b, to);
    hy_buf_printf(b, ",\"fromKind\":\"%s\",\"toKind\":\"%s\"", from_kind, to_kind);
    if (!strcmp(from_kind, "unknown")) {
        char note[800];
        snprintf(note, sizeof(note),
                 "no Dataplane of mesh %.200s is named %.200s or serves a service of that name "
                 "here: explained for a caller showing only %s: %.200s",
                 mesh, from, HY_TAG_SERVICE, from);
        hy_buf_puts(b, ",\"note\":");
        json_str(b, note);
    }
    hy_buf_puts(b, ",\"results\":[");
    size_t nres = 0;
    bool truncated = false;
    for (size_t k = 0; rc == 0 && k < (ncallers ? ncallers : 1); k++) {
        char caller[300];
        if (ncallers) {
            caller_of(callers[k], peer, id, sizeof(id));
            snprintf(caller, sizeof(caller), "%s", S(callers[k]->meta->name));
        } else if (!strcmp(from_kind, "tags")) {
            snprintf(caller, sizeof(caller), "(a caller with %.250s)", from);
        } else {
            memset(peer, 0, sizeof(*peer));
            hy_permit_peer_add(peer, HY_TAG_SERVICE, from);
            snprintf(id, sizeof(id), "spiffe://%s/%s", mesh, from);
            snprintf(caller, sizeof(caller), "(any %s)", from);
        }
        for (size_t i = 0; rc == 0 && i < ncallees; i++) {
            if (nres == MAX_RESULTS) {
                truncated = true;
                break;
            }
            rc = explain_one(b, &w, &callees[i], caller, id, peer, nres++ == 0);
        }
    }
    hy_buf_printf(b, "],\"truncated\":%s}", truncated ? "true" : "false");
    if (rc < 0) {
        hy_buf_fini(b);
        hy_http_error(resp, 500, "Cannot explain", hy_strerror(rc), NULL);
    }
out:
    free(peer);
    free(callers);
    free(callees);
    hy_policy_world_fini(&w);
    dps_fini(&d);
}

/* ----- _config: the zone's ----- */

/* A Dataplane's config is computed, and its sidecar's metrics asked, by
 * the zone its sidecar connects to (zone/zone_api.c serves both there);
 * any other control plane says so. stats: the metrics, not the config. */
static void zone_serves(struct hy_cp_api *api, struct hy_http_resp *resp, const char *mesh,
                        const char *name, bool stats)
{
    struct hy_resource *dp = NULL;
    int rc = hy_store_get(api->store, "Dataplane", mesh, name, &dp);
    if (rc == HY_ENOTFOUND) {
        dp_not_found_in_store(api, resp, mesh, name);
        return;
    }
    if (rc < 0) {
        hy_http_error(resp, 500, "Store error", hy_strerror(rc), NULL);
        return;
    }
    const char *zone = label_of(dp, LABEL_ZONE);
    const char *local = label_of(dp, LABEL_DISPLAY_NAME);
    zone = zone ? zone : dp->origin;
    char details[1200];
    snprintf(details, sizeof(details),
             "%s%s%.100s%s, not by this %s control plane: ask that zone's API, e.g. hyphactl "
             "--cp ZONE-API inspect dataplane %.250s --mesh %.250s --type=%s",
             stats ? "the metrics of a Dataplane's sidecar are asked of it by the zone control "
                     "plane it connects to"
                   : "the config of a Dataplane is computed by the zone control plane its sidecar "
                     "connects to",
             zone ? " (zone " : "", S(zone), zone ? ")" : "", api->mode, local ? local : name, mesh,
             stats ? "stats" : "config");
    hy_http_error(resp, 400, stats ? "Served by the zone" : "Computed by the zone", details, NULL);
    hy_resource_free(dp);
}

bool hy_cp_inspect_handle(struct hy_cp_api *api, const struct hy_http_req *req,
                          struct hy_http_resp *resp, char **s, size_t n)
{
    bool get = req->method == HY_HTTP_GET || req->method == HY_HTTP_HEAD;
    if (n == 5 && !strcmp(s[0], "meshes") && !strcmp(s[2], "dataplanes") &&
        (!strcmp(s[4], "_rules") || !strcmp(s[4], "_config") || !strcmp(s[4], "stats"))) {
        bool is_rules = !strcmp(s[4], "_rules");
        snprintf(resp->route, sizeof(resp->route), "/meshes/{mesh}/dataplanes/{name}/%s", s[4]);
        if (!get)
            hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        else if (!is_rules)
            zone_serves(api, resp, s[1], s[3], !strcmp(s[4], "stats"));
        else
            rules(api, resp, s[1], s[3]);
        return true;
    }
    if (n == 3 && !strcmp(s[0], "meshes") && !strcmp(s[2], "_explain")) {
        snprintf(resp->route, sizeof(resp->route), "/meshes/{mesh}/_explain");
        if (get)
            explain(api, req, resp, s[1]);
        else
            hy_http_error(resp, 405, "Method not allowed", "only GET", NULL);
        return true;
    }
    return false;
}

/* ----- what a write would change ----- */

#define MAX_CALLERS 100 /* callers a dry run tries at every inbound (the answer says so) */

struct line {
    char *key, *value;
};

struct lines {
    struct line *v;
    size_t n;
};

static int add_line(struct lines *l, const char *key, const char *value)
{
    struct line *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return HY_ENOMEM;
    l->v = nv;
    nv[l->n].key = strdup(key);
    nv[l->n].value = strdup(value);
    if (!nv[l->n].key || !nv[l->n].value) {
        free(nv[l->n].key);
        free(nv[l->n].value);
        return HY_ENOMEM;
    }
    l->n++;
    return 0;
}

static void lines_fini(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].value);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* What dp's sidecar enforces under the policies of w, as key/value lines:
 * the decision at each inbound for each caller of the mesh, and each
 * outbound's merged policy of each `to` type. */
static int effective(const struct hy_policy_world *w, const struct dps *mesh_dps,
                     const struct hy_resource *dp, struct lines *out)
{
    struct hy_policy_proxy p = {dp, dp->origin};
    struct hy_policy_set sel[HY_POLICY_NTYPES];
    int rc = hy_policy_select_all(w, &p, sel);
    if (rc < 0)
        return rc;
    struct hy_permit_peer *peer = malloc(sizeof(*peer));
    if (!peer)
        rc = HY_ENOMEM;
    char key[1024], value[64], id[600];
    for (size_t i = 0; rc == 0 && i < n_inbounds(dp); i++) {
        /* the inbound's permissions once, every caller decided against them */
        Hypha__V1__DpInbound *in = NULL;
        rc = inbound_permissions(&sel[HY_POLICY_MTP], i, &in);
        for (size_t c = 0; rc == 0 && c < mesh_dps->n && c < MAX_CALLERS; c++) {
            const struct hy_resource *caller = mesh_dps->v[c];
            if (caller == dp)
                continue;
            caller_of(caller, peer, id, sizeof(id));
            struct hy_permit_decision d;
            hy_permit_decide(in, id, peer, &d);
            snprintf(key, sizeof(key), "inbound %u from %s",
                     dp_spec(dp)->networking->inbound[i]->port, S(caller->meta->name));
            snprintf(value, sizeof(value), "%s", result_name(d.result));
            rc = add_line(out, key, value);
        }
        if (in)
            hypha__v1__dp_inbound__free_unpacked(in, NULL);
        for (int t = HY_POLICY_FAULT; rc == 0 && t <= HY_POLICY_ACCESS_LOG; t++) {
            struct hy_buf json = {0};
            rc = l7_inbound_json(t, &sel[t], i, &json);
            snprintf(key, sizeof(key), "inbound %u %s", dp_spec(dp)->networking->inbound[i]->port,
                     hy_policy_type_names[t]);
            if (rc == 0)
                rc = add_line(out, key, json.len ? json.data : "none");
            hy_buf_fini(&json);
        }
    }
    free(peer);
    const Hypha__V1__Dataplane *d = dp_spec(dp);
    size_t nout = d->networking ? d->networking->n_outbound : 0;
    for (size_t i = 0; rc == 0 && i < nout; i++) {
        const char *svc = S(outbound_service(d->networking->outbound[i]));
        struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, svc}};
        struct hy_policy_tags tags = {dest, 1};
        for (int t = HY_POLICY_TIMEOUT; rc == 0 && t < HY_POLICY_NTYPES; t++) {
            if (is_inbound_type(t) || is_proxy_type(t))
                continue;
            struct hy_policy_conf c = {0};
            struct hy_buf json = {0};
            if (is_route_type(t))
                rc = l7_outbound_json(t, &sel[t], svc, &json);
            else if ((rc = hy_policy_merge(&sel[t], "to", SIZE_MAX, &tags, &c)) == 0 && c.conf)
                hy_codec_encode_message(c.conf, HY_FORMAT_JSON, &json);
            if (rc < 0) {
                hy_buf_fini(&json);
                break;
            }
            snprintf(key, sizeof(key), "outbound %s %s", svc, hy_policy_type_names[t]);
            rc = add_line(out, key, json.data ? json.data : "none");
            hy_buf_fini(&json);
            hy_policy_conf_fini(&c);
        }
    }
    /* the services its routes send to without an outbound of their own:
     * the sidecar gets a backend-only one, with their `to` policies */
    char **backends = NULL;
    size_t nb = 0;
    if (rc == 0)
        rc = hy_policy_backend_services(w, &p, &backends, &nb);
    for (size_t i = 0; rc == 0 && i < nb; i++) {
        struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, backends[i]}};
        struct hy_policy_tags tags = {dest, 1};
        for (int t = HY_POLICY_TIMEOUT; rc == 0 && t < HY_POLICY_NTYPES; t++) {
            if (is_inbound_type(t) || is_route_type(t) || is_proxy_type(t))
                continue;
            struct hy_policy_conf c = {0};
            struct hy_buf json = {0};
            if ((rc = hy_policy_merge(&sel[t], "to", SIZE_MAX, &tags, &c)) == 0 && c.conf)
                hy_codec_encode_message(c.conf, HY_FORMAT_JSON, &json);
            snprintf(key, sizeof(key), "backend %s %s", backends[i], hy_policy_type_names[t]);
            if (rc == 0)
                rc = add_line(out, key, json.data ? json.data : "none");
            hy_buf_fini(&json);
            hy_policy_conf_fini(&c);
        }
    }
    hy_policy_strings_free(backends, nb);
    if (rc == 0) { /* MeshMetric: the proxy's one merged default */
        struct hy_policy_conf c;
        struct hy_buf json = {0};
        if ((rc = hy_policy_metric_merge(&sel[HY_POLICY_METRIC], &c)) == 0 && c.conf)
            hy_codec_encode_message(c.conf, HY_FORMAT_JSON, &json);
        if (rc == 0)
            rc = add_line(out, "proxy MeshMetric", json.data ? json.data : "none");
        hy_buf_fini(&json);
        hy_policy_conf_fini(&c);
    }
    if (rc == 0) { /* MeshTrace: the proxy's one merged default */
        struct hy_policy_conf c;
        struct hy_buf json = {0};
        if ((rc = hy_policy_trace_merge(&sel[HY_POLICY_TRACE], &c)) == 0 && c.conf)
            hy_codec_encode_message(c.conf, HY_FORMAT_JSON, &json);
        if (rc == 0)
            rc = add_line(out, "proxy MeshTrace", json.data ? json.data : "none");
        hy_buf_fini(&json);
        hy_policy_conf_fini(&c);
    }
    hy_policy_sets_fini(sel);
    return rc;
}

static const char *value_of(const struct lines *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].key, key))
            return l->v[i].value;
    return NULL;
}

/* "inbound 8080 from web-1: now Deny (was Allow)" for each line whose
 * value differs; the count written. */
static size_t put_diff(struct hy_buf *b, const struct lines *before, const struct lines *after)
{
    size_t n = 0;
    for (size_t i = 0; i < after->n; i++) {
        /* both lists come from the same walk: the same key at the same
         * place, so the search is for the rare line that is not */
        const char *was = i < before->n && !strcmp(before->v[i].key, after->v[i].key)
                              ? before->v[i].value
                              : value_of(before, after->v[i].key);
        if (was && !strcmp(was, after->v[i].value))
            continue;
        char line[2048];
        snprintf(line, sizeof(line), "%s: now %s (was %s)", after->v[i].key, after->v[i].value,
                 was ? was : "none");
        hy_buf_puts(b, n++ ? "," : "");
        json_str(b, line);
    }
    return n;
}

static bool is_policy(const struct hy_resource *r)
{
    for (int t = 0; t < HY_POLICY_NTYPES; t++)
        if (!strcmp(r->type->name, hy_policy_type_names[t]))
            return true;
    return false;
}

int hy_cp_inspect_changes(struct hy_cp_api *api, const struct hy_resource *const *writes, size_t n,
                          struct hy_buf *out, size_t *untried)
{
    *untried = 0;
    struct hy_policy_world before = {0}, after = {0};
    int rc = hy_policy_world_load(api->store, &before);
    if (rc == 0)
        rc = hy_policy_world_load(api->store, &after);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!is_policy(writes[i]))
            continue;
        struct hy_resource *copy = hy_resource_dup(writes[i]);
        if (!copy)
            rc = HY_ENOMEM;
        else
            rc = hy_policy_world_put(&after, copy);
    }
    hy_buf_puts(out, "[");
    size_t ndp = 0;
    /* every mesh a written policy belongs to */
    for (size_t m = 0; rc == 0 && m < n; m++) {
        const char *mesh = writes[m]->meta->mesh;
        bool seen = !is_policy(writes[m]) || !mesh;
        for (size_t k = 0; !seen && k < m; k++)
            seen = is_policy(writes[k]) && !strcmp(S(writes[k]->meta->mesh), mesh);
        if (seen)
            continue;
        struct dps d = {.mesh = mesh};
        rc = hy_store_each(api->store, "Dataplane", keep_dp, &d);
        if (d.n > MAX_CALLERS && d.n - MAX_CALLERS > *untried)
            *untried = d.n - MAX_CALLERS;
        for (size_t i = 0; rc == 0 && i < d.n; i++) {
            struct lines b = {0}, a = {0};
            rc = effective(&before, &d, d.v[i], &b);
            if (rc == 0)
                rc = effective(&after, &d, d.v[i], &a);
            if (rc == 0) {
                struct hy_buf diff = {0};
                if (put_diff(&diff, &b, &a)) {
                    hy_buf_puts(out, ndp++ ? ",{\"mesh\":" : "{\"mesh\":");
                    json_str(out, mesh);
                    hy_buf_puts(out, ",\"dataplane\":");
                    json_str(out, d.v[i]->meta->name);
                    hy_buf_printf(out, ",\"changes\":[%s]}", diff.data);
                }
                hy_buf_fini(&diff);
            }
            lines_fini(&b);
            lines_fini(&a);
        }
        dps_fini(&d);
    }
    hy_buf_puts(out, "]");
    hy_policy_world_fini(&before);
    hy_policy_world_fini(&after);
    return rc;
}
