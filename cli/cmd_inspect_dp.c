/* hyphactl inspect dataplanes: the Dataplanes joined with their insights,
 * one row per sidecar (kumactl's columns that Hypha has).
 *
 * hyphactl inspect dataplane NAME --type=rules|policies|config|stats: what
 * applies to one Dataplane, from the control plane's _rules (the policy
 * engine's merge with the provenance of every value) or, on its zone,
 * _config (what the zone computes for the sidecar); or, on its zone, stats
 * (the sidecar's own metrics, which the zone asks it for). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "inspect_list.h"
#include "codec.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "output.h"
#include "table.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

/* ===== inspect dataplanes ===== */

struct tag {
    const char *key, *value;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_tag(const void *a, const void *b)
{
    const struct tag *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

/* "env=dev,hypha.io/service=web": every distinct inbound tag, sorted. */
static int tags_cell(const Hypha__V1__Dataplane *dp, struct hy_buf *b)
{
    const Hypha__V1__Dataplane__Networking *net = dp->networking;
    size_t n = 0, cap = 0;
    for (size_t i = 0; net && i < net->n_inbound; i++)
        cap += net->inbound[i]->n_tags;
    struct tag *v = cap ? calloc(cap, sizeof(*v)) : NULL;
    if (cap && !v)
        return HY_ENOMEM;
    for (size_t i = 0; net && i < net->n_inbound; i++)
        for (size_t k = 0; k < net->inbound[i]->n_tags; k++)
            v[n++] =
                (struct tag){S(net->inbound[i]->tags[k]->key), S(net->inbound[i]->tags[k]->value)};
    qsort(v, n, sizeof(*v), cmp_tag);
    int rc = hy_buf_puts(b, "");
    for (size_t i = 0, w = 0; rc == 0 && i < n; i++)
        if (i == 0 || cmp_tag(&v[i - 1], &v[i]))
            rc = hy_buf_printf(b, "%s%s=%s", w++ ? "," : "", v[i].key, v[i].value);
    free(v);
    return rc;
}

/* "backend,web": every distinct hypha.io/service of its inbounds, sorted. */
static int services_cell(const Hypha__V1__Dataplane *dp, struct hy_buf *b)
{
    const Hypha__V1__Dataplane__Networking *net = dp->networking;
    size_t n = 0;
    const char **v = net && net->n_inbound ? calloc(net->n_inbound, sizeof(*v)) : NULL;
    if (net && net->n_inbound && !v)
        return HY_ENOMEM;
    for (size_t i = 0; net && i < net->n_inbound; i++)
        for (size_t k = 0; k < net->inbound[i]->n_tags; k++)
            if (!strcmp(S(net->inbound[i]->tags[k]->key), "hypha.io/service"))
                v[n++] = S(net->inbound[i]->tags[k]->value);
    qsort(v, n, sizeof(*v), cmp_str);
    int rc = hy_buf_puts(b, "");
    for (size_t i = 0, w = 0; rc == 0 && i < n; i++)
        if (i == 0 || strcmp(v[i - 1], v[i]))
            rc = hy_buf_printf(b, "%s%s", w++ ? "," : "", v[i]);
    free(v);
    return rc;
}

/* Its zone: the label hypha.io/zone the zone CP gives a sidecar's
 * Dataplane when it registers (Kuma's kuma.io/zone), which the global CP
 * keeps on "<zone>.<name>". "" for one applied by hand on a zone CP. */
static const char *zone_of(const struct hy_resource *dp)
{
    for (size_t i = 0; i < dp->meta->n_labels; i++)
        if (!strcmp(S(dp->meta->labels[i]->key), "hypha.io/zone"))
            return S(dp->meta->labels[i]->value);
    return "";
}

static const char *const dp_head[] = {
    "MESH",           "NAME",          "ZONE",         "SERVICES",        "TAGS",   "STATUS",
    "LAST-CONNECTED", "TOTAL-UPDATES", "TOTAL-ERRORS", "CERT-EXPIRATION", "VERSION"};

/* One row: MESH NAME ZONE SERVICES TAGS STATUS LAST-CONNECTED
 * TOTAL-UPDATES TOTAL-ERRORS CERT-EXPIRATION VERSION (hypha-dp's, from
 * the last subscription's version.kumaDp.version). -o json|yaml: kumactl's
 * overview, {"total","items":[{"dataplane","dataplaneInsight"}]}. */
static int dp_row(struct hy_cli *cli, struct hy_table *t, const struct hy_resource *dp,
                  const struct hy_resource *insight)
{
    const Hypha__V1__DataplaneInsight *di =
        insight ? (const Hypha__V1__DataplaneInsight *)insight->spec : NULL;
    const Hypha__V1__DataplaneInsight__Subscription *last =
        di && di->n_subscriptions ? di->subscriptions[di->n_subscriptions - 1] : NULL;
    bool online = last && last->connect_time && !last->disconnect_time;
    uint64_t updates = 0, errors = 0;
    for (size_t i = 0; di && i < di->n_subscriptions; i++) {
        updates += di->subscriptions[i]->responses_sent;
        errors += di->subscriptions[i]->responses_rejected;
    }
    char connected[32], sent[24] = "", rejected[24] = "", expiry[32];
    hy_output_age_since(cli->now, last ? last->connect_time : NULL, connected, sizeof(connected));
    if (di) {
        snprintf(sent, sizeof(sent), "%" PRIu64, updates);
        snprintf(rejected, sizeof(rejected), "%" PRIu64, errors);
    }
    hy_output_time(di && di->m_t_l_s ? di->m_t_l_s->certificate_expiration_time : NULL, expiry,
                   sizeof(expiry));
    const char *version =
        last && last->version && last->version->kuma_dp ? S(last->version->kuma_dp->version) : "";
    struct hy_buf tags = {0}, services = {0};
    int rc = tags_cell((const Hypha__V1__Dataplane *)dp->spec, &tags);
    if (rc == 0)
        rc = services_cell((const Hypha__V1__Dataplane *)dp->spec, &services);
    const char *row[] = {
        dp->meta->mesh, dp->meta->name, zone_of(dp),
        services.data,  tags.data,      online ? "Online" : "Offline",
        connected,      sent,           rejected,
        expiry,         version,
    };
    if (rc == 0)
        rc = hy_table_add(t, row);
    hy_buf_fini(&tags);
    hy_buf_fini(&services);
    return rc;
}

/* /meshes/MESH/PLURAL, or /PLURAL for every mesh. */
static int list_path(struct hy_buf *b, const char *mesh, const char *plural)
{
    int rc = 0;
    if (mesh && (rc = hy_buf_puts(b, "/meshes/")) == 0)
        rc = hy_api_escape(b, mesh, false);
    return rc == 0 ? hy_buf_printf(b, "/%s", plural) : rc;
}

int hy_cmd_inspect_dataplanes(struct hy_cli *cli)
{
    enum hy_output_format f;
    const char *o = hy_args_get(&cli->args, "output");
    if (!hy_output_parse(o, &f))
        return hy_cli_usage(cli, "unknown output format \"%s\" (table, yaml or json)", o);
    const char *mesh = hy_args_get(&cli->args, "mesh");
    struct hy_buf p1 = {0}, p2 = {0};
    struct hy_api_list dps = {0}, insights = {0};
    int rc = hy_cli_connect(cli);
    if (rc == 0 &&
        (list_path(&p1, mesh, "dataplanes") < 0 || list_path(&p2, mesh, "dataplaneinsights") < 0)) {
        hy_cli_error(cli, "out of memory");
        rc = HY_ENOMEM;
    }
    if (rc == 0)
        rc = hy_api_list(cli, p1.data, true, &dps);
    if (rc == 0)
        rc = hy_api_list(cli, p2.data, true, &insights);
    if (rc == 0)
        rc = f == HY_OUTPUT_TABLE
                 ? hy_inspect_print_table(cli, dp_head, sizeof(dp_head) / sizeof(dp_head[0]), &dps,
                                          &insights, dp_row)
                 : hy_inspect_print_overview(cli, &dps, &insights, "dataplane", "dataplaneInsight",
                                             f);
    hy_api_list_fini(&dps);
    hy_api_list_fini(&insights);
    hy_buf_fini(&p1);
    hy_buf_fini(&p2);
    return rc;
}

/* ===== inspect dataplane NAME ===== */

static const char *str(const struct hy_json *j, const char *key)
{
    return S(hy_json_get_str(j, key));
}

static size_t count(const struct hy_json *j)
{
    return j && j->kind != HY_JSON_SCALAR ? (j->kind == HY_JSON_OBJECT ? j->n / 2 : j->n) : 0;
}

/* Appends an object's pairs as "k=v, k2=v2" (sep between them). */
static int put_pairs(struct hy_buf *b, const struct hy_json *o, const char *sep)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && o && o->kind == HY_JSON_OBJECT && i + 1 < o->n; i += 2)
        rc = hy_buf_printf(b, "%s%s=%s", i ? sep : "", S(o->items[i]->value),
                           S(hy_json_str(o->items[i + 1])));
    return rc;
}

/* A targetRef as the policy tables show it: "Mesh", "MeshService:backend",
 * "MeshSubset[env=dev]", "Dataplane[app=backend]", "... sectionName=http". */
static int put_ref(struct hy_buf *b, const struct hy_json *r)
{
    int rc = hy_buf_puts(b, hy_json_get_str(r, "kind") ? str(r, "kind") : "Mesh");
    if (rc == 0 && hy_json_get_str(r, "name"))
        rc = hy_buf_printf(b, ":%s", str(r, "name"));
    const char *keys[] = {"tags", "labels"};
    for (int k = 0; rc == 0 && k < 2; k++)
        if (count(hy_json_get(r, keys[k]))) {
            rc = hy_buf_puts(b, "[");
            if (rc == 0)
                rc = put_pairs(b, hy_json_get(r, keys[k]), ",");
            if (rc == 0)
                rc = hy_buf_puts(b, "]");
        }
    if (rc == 0 && hy_json_get_str(r, "sectionName"))
        rc = hy_buf_printf(b, " sectionName=%s", str(r, "sectionName"));
    return rc;
}

/* Appends the table, each line indented. */
static int put_table(struct hy_buf *out, struct hy_table *t, const char *indent)
{
    struct hy_buf text = {0};
    int rc = hy_table_render(t, &text);
    for (const char *p = text.data; rc == 0 && p && *p;) {
        size_t n = strcspn(p, "\n");
        rc = hy_buf_printf(out, "%s%.*s\n", indent, (int)n, p);
        p += n + (p[n] == '\n');
    }
    hy_buf_fini(&text);
    hy_table_fini(t);
    return rc;
}

static int put_policies_table(struct hy_buf *out, const struct hy_json *policies)
{
    static const char *const head[] = {"POLICY", "TARGETREF", "ORIGIN"};
    struct hy_table t;
    int rc = hy_table_init(&t, 3, head);
    for (size_t i = 0; rc == 0 && policies && i < policies->n; i++) {
        const struct hy_json *p = policies->items[i];
        struct hy_buf ref = {0};
        rc = put_ref(&ref, hy_json_get(p, "targetRef"));
        const char *row[] = {str(p, "name"), ref.data, str(p, "origin")};
        if (rc == 0)
            rc = hy_table_add(&t, row);
        hy_buf_fini(&ref);
    }
    return rc == 0 ? put_table(out, &t, "  ") : (hy_table_fini(&t), rc);
}

/* MeshFaultInjection or MeshRateLimit at one inbound: the entries the
 * sidecar got, in merge order (the last one a caller matches applies). */
static int put_inbound_l7(struct hy_buf *out, const struct hy_json *r, const struct hy_json *v,
                          bool faults)
{
    int rc = hy_buf_printf(out, "  inbound %s", str(hy_json_get(r, "inbound"), "port"));
    if (rc == 0 && !count(v))
        return hy_buf_puts(out, ": no entry\n");
    if (rc == 0)
        rc = hy_buf_puts(out, ":\n    the entries in merge order: the last one a caller matches "
                              "applies\n");
    static const char *const head[] = {"#", "CALLERS", "WHAT", "ORIGIN"};
    struct hy_table t;
    if (rc < 0 || (rc = hy_table_init(&t, 4, head)) < 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < count(v); i++) {
        const struct hy_json *e = v->items[i];
        struct hy_buf who = {0}, what = {0};
        char num[24];
        snprintf(num, sizeof(num), "%zu", i + 1);
        rc = count(hy_json_get(e, "tags")) ? put_pairs(&who, hy_json_get(e, "tags"), ",")
                                           : hy_buf_puts(&who, "any caller");
        if (rc == 0 && faults) {
            rc = hy_json_write(hy_json_get(e, "http"), &what);
        } else if (rc == 0) {
            rc =
                hy_buf_printf(&what, "http %s/%s, tcp %s/%s",
                              hy_json_get_str(e, "httpRequests") ? str(e, "httpRequests") : "0",
                              hy_json_get_str(e, "httpInterval") ? str(e, "httpInterval") : "-",
                              hy_json_get_str(e, "tcpConnections") ? str(e, "tcpConnections") : "0",
                              hy_json_get_str(e, "tcpInterval") ? str(e, "tcpInterval") : "-");
        }
        const char *row[] = {num, who.data, what.data ? what.data : "", str(e, "origin")};
        if (rc == 0)
            rc = hy_table_add(&t, row);
        hy_buf_fini(&who);
        hy_buf_fini(&what);
    }
    return rc == 0 ? put_table(out, &t, "    ") : (hy_table_fini(&t), rc);
}

/* MeshAccessLog at one inbound: where its traffic is logged. */
static int put_inbound_alog(struct hy_buf *out, const struct hy_json *r, const struct hy_json *al)
{
    const struct hy_json *b = hy_json_get(al, "backends");
    int rc = hy_buf_printf(out, "  inbound %s: logged to", str(hy_json_get(r, "inbound"), "port"));
    for (size_t i = 0; rc == 0 && i < count(b); i++) {
        const struct hy_json *x = b->items[i];
        const char *t = str(x, "type");
        rc = hy_buf_printf(out, "%s %s %s", i ? "," : "", t,
                           hy_json_get_str(x, "path") ? str(x, "path") : str(x, "address"));
    }
    if (rc == 0 && !count(b))
        rc = hy_buf_puts(out, " no backend the sidecar writes");
    return rc == 0 ? hy_buf_printf(out, " (%s)\n", str(al, "origin")) : rc;
}

static int put_conf_table(struct hy_buf *out, const struct hy_json *r);

/* One inbound's entries and matchers in the order the sidecar reads them,
 * or its merged conf. */
static int put_inbound(struct hy_buf *out, const struct hy_json *r)
{
    const struct hy_json *in = hy_json_get(r, "inbound"), *e = hy_json_get(r, "entries");
    if (hy_json_get(r, "origin")) { /* a merged conf (MeshTimeout from and rules) */
        int rc = hy_buf_printf(out, "  inbound %s", str(in, "port"));
        return rc < 0 ? rc : put_conf_table(out, r);
    }
    if (hy_json_get(e, "accessLog"))
        return put_inbound_alog(out, r, hy_json_get(e, "accessLog"));
    if (hy_json_get(e, "faults"))
        return put_inbound_l7(out, r, hy_json_get(e, "faults"), true);
    if (hy_json_get(e, "rateLimits"))
        return put_inbound_l7(out, r, hy_json_get(e, "rateLimits"), false);
    if (!hy_json_get(in, "tags")) /* an L7 type with no entry at this inbound */
        return put_inbound_l7(out, r, NULL, true);
    int rc = hy_buf_printf(out, "  inbound %s (", str(in, "port"));
    if (rc == 0)
        rc = put_pairs(out, hy_json_get(in, "tags"), ", ");
    const struct hy_json *perms = hy_json_get(e, "permissions");
    static const char *const lists[] = {"deny", "allow", "allowWithShadowDeny"};
    static const char *const actions[] = {"Deny", "Allow", "AllowWithShadowDeny"};
    size_t n = count(perms);
    for (int l = 0; l < 3; l++)
        n += count(hy_json_get(e, lists[l]));
    if (rc == 0 && !n)
        return hy_buf_puts(out, "): no entry or rule: every caller is denied\n");
    if (rc == 0)
        rc = hy_buf_puts(out, "):\n    the from entries in merge order: the last one a caller "
                              "matches decides; a rules deny matcher always denies\n");
    static const char *const head[] = {"#", "CALLERS", "ACTION", "ORIGIN"};
    struct hy_table t;
    if (rc == 0)
        rc = hy_table_init(&t, 4, head);
    else
        return rc;
    for (size_t i = 0; rc == 0 && i < count(perms); i++) {
        const struct hy_json *p = perms->items[i];
        struct hy_buf who = {0};
        char num[24];
        snprintf(num, sizeof(num), "%zu", i + 1);
        rc = count(hy_json_get(p, "tags")) ? put_pairs(&who, hy_json_get(p, "tags"), ",")
                                           : hy_buf_puts(&who, "any caller");
        const char *row[] = {num, who.data,
                             hy_json_get_str(p, "action") ? str(p, "action") : "Allow",
                             str(p, "origin")};
        if (rc == 0)
            rc = hy_table_add(&t, row);
        hy_buf_fini(&who);
    }
    for (int l = 0; l < 3; l++) {
        const struct hy_json *v = hy_json_get(e, lists[l]);
        for (size_t i = 0; rc == 0 && i < count(v); i++) {
            const struct hy_json *m = v->items[i];
            char who[1200];
            bool prefix = !strcmp(str(m, "prefix"), "true");
            snprintf(who, sizeof(who), "spiffeID %s %s", prefix ? "Prefix" : "Exact",
                     str(m, "value"));
            const char *row[] = {"rules", who, actions[l], str(m, "origin")};
            rc = hy_table_add(&t, row);
        }
    }
    return rc == 0 ? put_table(out, &t, "    ") : (hy_table_fini(&t), rc);
}

/* The origin of the value at path: its own, else its nearest parent's. */
static const char *origin_at(const struct hy_json *origins, const char *path)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; origins && origins->kind == HY_JSON_OBJECT && i + 1 < origins->n; i += 2) {
        const char *k = S(origins->items[i]->value);
        size_t kl = strlen(k);
        if (!strcmp(k, path))
            return hy_json_str(origins->items[i + 1]);
        if (kl > best_len && !strncmp(path, k, kl) && path[kl] == '.') {
            best = hy_json_str(origins->items[i + 1]);
            best_len = kl;
        }
    }
    return best;
}

/* One row per value of a merged conf: "http.requestTimeout  5s  origin". */
static int conf_rows(struct hy_table *t, const struct hy_json *v, const struct hy_json *origins,
                     struct hy_buf *path)
{
    int rc = 0;
    size_t at = path->len;
    if (v->kind == HY_JSON_OBJECT && v->n) {
        for (size_t i = 0; rc == 0 && i + 1 < v->n; i += 2) {
            path->len = at;
            rc = hy_buf_printf(path, "%s%s", at ? "." : "", S(v->items[i]->value));
            if (rc == 0)
                rc = conf_rows(t, v->items[i + 1], origins, path);
        }
        path->len = at;
        if (path->data)
            path->data[at] = '\0';
        return rc;
    }
    struct hy_buf value = {0};
    rc = v->kind == HY_JSON_SCALAR ? hy_buf_puts(&value, S(v->value)) : hy_json_write(v, &value);
    const char *row[] = {path->data, value.data, origin_at(origins, S(path->data))};
    if (rc == 0)
        rc = hy_table_add(t, row);
    hy_buf_fini(&value);
    return rc;
}

/* MeshHTTPRoute or MeshTCPRoute at one outbound: the routes as the
 * sidecar got them, in the order it tries them, each with its rule. */
static int put_routes(struct hy_buf *out, const struct hy_json *r, const struct hy_json *routes)
{
    const struct hy_json *ob = hy_json_get(r, "outbound");
    const struct hy_json *http = hy_json_get(routes, "httpRoutes");
    const struct hy_json *tcp = hy_json_get(routes, "tcpBackends");
    int rc = hy_buf_printf(out, "  outbound %s to %s", str(ob, "port"), str(ob, "service"));
    if (rc < 0 || (!count(http) && !count(tcp)))
        return rc < 0 ? rc : hy_buf_puts(out, ": no route\n");
    rc = hy_buf_puts(out, count(http) ? ": the first route whose match holds takes a request\n"
                                      : ": connections split by weight\n");
    static const char *const head[] = {"#", "MATCH", "TO", "FILTERS", "ORIGIN"};
    struct hy_table t;
    if (rc < 0 || (rc = hy_table_init(&t, 5, head)) < 0)
        return rc;
    size_t n = count(http) ? count(http) : 1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct hy_json *rt = count(http) ? http->items[i] : NULL;
        const struct hy_json *m =
            rt && count(hy_json_get(rt, "matches")) ? hy_json_get(rt, "matches")->items[0] : NULL;
        const struct hy_json *to = rt ? hy_json_get(rt, "backends") : tcp;
        const struct hy_json *f = rt ? hy_json_get(rt, "filters") : NULL;
        struct hy_buf match = {0}, dest = {0}, filters = {0};
        char num[24];
        snprintf(num, sizeof(num), "%zu", i + 1);
        if (m && hy_json_get_str(m, "pathType"))
            rc = hy_buf_printf(&match, "%s %s", str(m, "pathType"), str(m, "path"));
        else
            rc = hy_buf_puts(&match, rt ? "any" : "every connection");
        if (rc == 0 && m && hy_json_get_str(m, "method"))
            rc = hy_buf_printf(&match, " %s", str(m, "method"));
        if (rc == 0 && m && count(hy_json_get(m, "headers")))
            rc = hy_buf_printf(&match, " +%zu header(s)", count(hy_json_get(m, "headers")));
        if (rc == 0 && m && count(hy_json_get(m, "queryParams")))
            rc =
                hy_buf_printf(&match, " +%zu query param(s)", count(hy_json_get(m, "queryParams")));
        for (size_t k = 0; rc == 0 && k < count(to); k++)
            rc = hy_buf_printf(&dest, "%s%s:%s", k ? "," : "", str(to->items[k], "service"),
                               str(to->items[k], "weight"));
        if (rc == 0 && !count(to))
            rc = hy_buf_puts(&dest, str(ob, "service"));
        for (size_t k = 0; rc == 0 && k < count(f); k++)
            rc = hy_buf_printf(&filters, "%s%s", k ? "," : "", str(f->items[k], "type"));
        const char *row[] = {num, match.data ? match.data : "", dest.data ? dest.data : "",
                             filters.data ? filters.data : "-",
                             rt && hy_json_get_str(rt, "name") ? str(rt, "name") : "default"};
        if (rc == 0)
            rc = hy_table_add(&t, row);
        hy_buf_fini(&match);
        hy_buf_fini(&dest);
        hy_buf_fini(&filters);
    }
    return rc == 0 ? put_table(out, &t, "    ") : (hy_table_fini(&t), rc);
}

/* A merged conf (r's "conf" and "origin"), one row per value, under the
 * line out already has (": no entry matches" when there is none). */
static int put_conf_table(struct hy_buf *out, const struct hy_json *r)
{
    const struct hy_json *conf = hy_json_get(r, "conf");
    if (!conf || conf->kind != HY_JSON_OBJECT)
        return hy_buf_puts(out, ": no entry matches\n");
    int rc = hy_buf_puts(out, ":\n");
    static const char *const head[] = {"FIELD", "VALUE", "ORIGIN"};
    struct hy_table t;
    struct hy_buf path = {0};
    if (rc == 0 && (rc = hy_table_init(&t, 3, head)) == 0) {
        rc = conf_rows(&t, conf, hy_json_get(r, "origin"), &path);
        rc = rc == 0 ? put_table(out, &t, "    ") : (hy_table_fini(&t), rc);
    }
    hy_buf_fini(&path);
    return rc;
}

static int put_outbound(struct hy_buf *out, const struct hy_json *r)
{
    if (hy_json_get(r, "routes"))
        return put_routes(out, r, hy_json_get(r, "routes"));
    const struct hy_json *ob = hy_json_get(r, "outbound");
    int rc = hy_buf_printf(out, "  outbound %s to %s", str(ob, "port"), str(ob, "service"));
    return rc < 0 ? rc : put_conf_table(out, r);
}

/* MeshMetric: one merged default for the whole proxy. */
static int put_proxy(struct hy_buf *out, const struct hy_json *r)
{
    const struct hy_json *conf = hy_json_get(r, "conf");
    if (!conf || conf->kind != HY_JSON_OBJECT)
        return hy_buf_puts(out, "  whole proxy: no default\n");
    int rc = hy_buf_puts(out, "  whole proxy:\n");
    static const char *const head[] = {"FIELD", "VALUE", "ORIGIN"};
    struct hy_table t;
    struct hy_buf path = {0};
    if (rc == 0 && (rc = hy_table_init(&t, 3, head)) == 0) {
        rc = conf_rows(&t, conf, hy_json_get(r, "origin"), &path);
        rc = rc == 0 ? put_table(out, &t, "    ") : (hy_table_fini(&t), rc);
    }
    hy_buf_fini(&path);
    return rc;
}

static int render_rules(const struct hy_json *j, struct hy_buf *out)
{
    const struct hy_json *res = hy_json_get(j, "resource"), *rules = hy_json_get(j, "rules");
    int rc = hy_buf_printf(out, "Dataplane %s in mesh %s%s%s%s\n", str(res, "name"),
                           str(res, "mesh"), hy_json_get_str(res, "zone") ? " (zone " : "",
                           str(res, "zone"), hy_json_get_str(res, "zone") ? ")" : "");
    if (rc == 0 && !count(rules))
        rc = hy_buf_puts(out, "\nNo policy selects it: with mTLS on, every caller is denied.\n");
    for (size_t i = 0; rc == 0 && i < count(rules); i++) {
        const struct hy_json *r = rules->items[i];
        rc = hy_buf_printf(out, "\n%s\n", str(r, "type"));
        if (rc == 0)
            rc = put_policies_table(out, hy_json_get(r, "policies"));
        const struct hy_json *from = hy_json_get(r, "fromRules"), *to = hy_json_get(r, "toRules");
        for (size_t k = 0; rc == 0 && k < count(from); k++)
            rc = put_inbound(out, from->items[k]);
        for (size_t k = 0; rc == 0 && k < count(to); k++)
            rc = put_outbound(out, to->items[k]);
        if (rc == 0 && hy_json_get(r, "proxyRule"))
            rc = put_proxy(out, hy_json_get(r, "proxyRule"));
        const struct hy_json *w = hy_json_get(r, "warnings");
        if (rc == 0 && count(w))
            rc = hy_buf_puts(out, "  Warnings:\n");
        for (size_t k = 0; rc == 0 && k < count(w); k++)
            rc = hy_buf_printf(out, "    %s\n", S(hy_json_str(w->items[k])));
    }
    return rc;
}

/* Whether an origin ("MeshTimeout/t to[0]") is of policy TYPE/NAME. */
static bool from_policy(const char *origin, const char *type, const char *name)
{
    size_t tl = strlen(type), nl = strlen(name);
    return origin && !strncmp(origin, type, tl) && origin[tl] == '/' &&
           !strncmp(origin + tl + 1, name, nl) && origin[tl + 1 + nl] == ' ';
}

static bool any_origin(const struct hy_json *list, const char *type, const char *name)
{
    for (size_t i = 0; i < count(list); i++)
        if (from_policy(hy_json_get_str(list->items[i], "origin"), type, name))
            return true;
    return false;
}

/* Is any value of a merged conf's origins ({"path": "TYPE/NAME section[I]"}) of TYPE/NAME? */
static bool any_value_origin(const struct hy_json *origins, const char *type, const char *name)
{
    for (size_t k = 1; origins && origins->kind == HY_JSON_OBJECT && k < origins->n; k += 2)
        if (from_policy(hy_json_str(origins->items[k]), type, name))
            return true;
    return false;
}

/* Where policy TYPE/NAME is in effect, from the provenance in _rules: the
 * inbounds whose entries or matchers it gave, the outbounds whose merged
 * conf has a value of it. JSON strings into b ("inbound 8080", ...). */
static int applies_to(struct hy_buf *b, const struct hy_json *r, const char *type, const char *name)
{
    const struct hy_json *from = hy_json_get(r, "fromRules"), *to = hy_json_get(r, "toRules");
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < count(from); i++) {
        const struct hy_json *e = hy_json_get(from->items[i], "entries");
        if (any_value_origin(hy_json_get(from->items[i], "origin"), type, name) ||
            any_origin(hy_json_get(e, "permissions"), type, name) ||
            any_origin(hy_json_get(e, "faults"), type, name) ||
            any_origin(hy_json_get(e, "rateLimits"), type, name) ||
            from_policy(hy_json_get_str(hy_json_get(e, "accessLog"), "origin"), type, name) ||
            any_origin(hy_json_get(e, "deny"), type, name) ||
            any_origin(hy_json_get(e, "allow"), type, name) ||
            any_origin(hy_json_get(e, "allowWithShadowDeny"), type, name))
            rc = hy_buf_printf(b, "%s\"inbound %s\"", n++ ? "," : "",
                               str(hy_json_get(from->items[i], "inbound"), "port"));
    }
    for (size_t i = 0; rc == 0 && i < count(to); i++) {
        bool in = any_value_origin(hy_json_get(to->items[i], "origin"), type, name);
        const struct hy_json *routes =
            hy_json_get(hy_json_get(to->items[i], "routes"), "httpRoutes");
        for (size_t k = 0; !in && k < count(routes); k++)
            in = from_policy(hy_json_get_str(routes->items[k], "name"), type, name);
        const struct hy_json *ob = hy_json_get(to->items[i], "outbound");
        if (in)
            rc = hy_buf_printf(b, "%s\"outbound %s (%s)\"", n++ ? "," : "", str(ob, "port"),
                               str(ob, "service"));
    }
    /* MeshMetric: the whole proxy */
    const struct hy_json *po = hy_json_get(hy_json_get(r, "proxyRule"), "origin");
    bool whole = false;
    for (size_t k = 1; !whole && po && k < po->n; k += 2)
        whole = from_policy(hy_json_str(po->items[k]), type, name);
    if (rc == 0 && whole)
        rc = hy_buf_printf(b, "%s\"whole proxy\"", n++ ? "," : "");
    return rc;
}

/* --type=policies as JSON: {"items":[{"type","name","origin","targetRef",
 * "appliesTo"}]} (the table and -o yaml are made from it). */
static int policies_json(const struct hy_json *j, struct hy_buf *b)
{
    const struct hy_json *rules = hy_json_get(j, "rules");
    int rc = hy_buf_puts(b, "{\"items\":[");
    size_t n = 0;
    for (size_t i = 0; rc == 0 && i < count(rules); i++) {
        const struct hy_json *r = rules->items[i], *ps = hy_json_get(r, "policies");
        for (size_t k = 0; rc == 0 && k < count(ps); k++) {
            const struct hy_json *p = ps->items[k], *ref = hy_json_get(p, "targetRef");
            rc = hy_buf_puts(b, n++ ? ",{\"type\":" : "{\"type\":");
            if (rc == 0)
                rc = hy_codec_json_string(b, str(r, "type"), strlen(str(r, "type")));
            if (rc == 0)
                rc = hy_buf_puts(b, ",\"name\":");
            if (rc == 0)
                rc = hy_codec_json_string(b, str(p, "name"), strlen(str(p, "name")));
            if (rc == 0)
                rc = hy_buf_puts(b, ",\"origin\":");
            if (rc == 0)
                rc = hy_codec_json_string(b, str(p, "origin"), strlen(str(p, "origin")));
            if (rc == 0)
                rc = hy_buf_puts(b, ",\"targetRef\":");
            if (rc == 0)
                rc = ref ? hy_json_write(ref, b) : hy_buf_puts(b, "{\"kind\":\"Mesh\"}");
            if (rc == 0)
                rc = hy_buf_puts(b, ",\"appliesTo\":[");
            if (rc == 0)
                rc = applies_to(b, r, str(r, "type"), str(p, "name"));
            if (rc == 0)
                rc = hy_buf_puts(b, "]}");
        }
    }
    return rc == 0 ? hy_buf_puts(b, "]}") : rc;
}

static int render_policies(const struct hy_json *pj, struct hy_buf *out)
{
    static const char *const head[] = {"TYPE", "NAME", "TARGETREF", "ORIGIN", "APPLIES-TO"};
    const struct hy_json *items = hy_json_get(pj, "items");
    struct hy_table t;
    int rc = hy_table_init(&t, 5, head);
    for (size_t i = 0; rc == 0 && i < count(items); i++) {
        const struct hy_json *p = items->items[i], *at = hy_json_get(p, "appliesTo");
        struct hy_buf ref = {0}, where = {0};
        rc = put_ref(&ref, hy_json_get(p, "targetRef"));
        for (size_t k = 0; rc == 0 && k < count(at); k++)
            rc = hy_buf_printf(&where, "%s%s", k ? ", " : "", S(hy_json_str(at->items[k])));
        const char *row[] = {str(p, "type"), str(p, "name"), ref.data, str(p, "origin"),
                             where.data};
        if (rc == 0)
            rc = hy_table_add(&t, row);
        hy_buf_fini(&ref);
        hy_buf_fini(&where);
    }
    if (rc == 0 && !count(items)) {
        hy_table_fini(&t);
        return hy_buf_puts(out, "No policy selects it.\n");
    }
    return rc == 0 ? put_table(out, &t, "") : (hy_table_fini(&t), rc);
}

/* --type=config, for people: a YAML document under a comment naming it. */
static int render_config(const struct hy_json *j, struct hy_buf *out)
{
    const struct hy_json *omitted = hy_json_get(j, "omitted"), *config = hy_json_get(j, "config");
    int rc = hy_buf_printf(out, "# Dataplane %s in mesh %s: the config zone %s computes for it\n",
                           str(j, "name"), str(j, "mesh"), str(j, "zone"));
    const char *connected = hy_json_get_str(j, "connected");
    if (rc == 0 && connected && !strcmp(connected, "true"))
        rc = hy_buf_printf(out, "# connected: version %s, acked %s\n",
                           S(hy_json_get_str(config, "version")),
                           str(j, "ackedVersion")[0] ? str(j, "ackedVersion") : "none yet");
    if (rc == 0 && count(omitted)) {
        rc = hy_buf_puts(out, "# not connected; left out (the zone issues them per connection):");
        for (size_t i = 0; rc == 0 && i < count(omitted); i++)
            rc = hy_buf_printf(out, "%s %s", i ? "," : "", S(hy_json_str(omitted->items[i])));
        if (rc == 0)
            rc = hy_buf_puts(out, "\n");
    }
    if (rc == 0)
        rc = config ? hy_json_write_yaml(config, out) : hy_buf_puts(out, "{}\n");
    return rc;
}

int hy_cmd_inspect_dataplane(struct hy_cli *cli)
{
    const char *type = hy_args_get(&cli->args, "type");
    if (!type)
        type = "rules";
    static const char *const types[][2] = {
        {"rules", "/_rules"}, {"policies", "/_rules"}, {"config", "/_config"}, {"stats", "/stats"}};
    size_t ti = 0, nt = sizeof(types) / sizeof(types[0]);
    while (ti < nt && strcmp(type, types[ti][0]))
        ti++;
    if (ti == nt)
        return hy_cli_usage(cli, "unknown --type \"%s\" (rules, policies, config or stats)", type);
    bool stats = !strcmp(type, "stats");
    enum hy_output_format f;
    const char *o = hy_args_get(&cli->args, "output");
    if (!hy_output_parse(o, &f))
        return hy_cli_usage(cli, "unknown output format \"%s\" (table, yaml or json)", o);
    const char *mesh = hy_args_get(&cli->args, "mesh"), *name = cli->args.pos[0];
    struct hy_buf path = {0};
    int rc = hy_cli_connect(cli);
    if (rc < 0)
        return rc;
    if (hy_buf_puts(&path, "/meshes/") < 0 ||
        hy_api_escape(&path, mesh ? mesh : "default", false) < 0 ||
        hy_buf_puts(&path, "/dataplanes/") < 0 || hy_api_escape(&path, name, false) < 0 ||
        hy_buf_puts(&path, types[ti][1]) < 0) {
        hy_buf_fini(&path);
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    struct hy_httpc_response resp;
    rc = hy_api_call(cli, "GET", path.data, NULL, 0, NULL, 0, &resp);
    hy_buf_fini(&path);
    if (rc < 0)
        return rc;
    bool policies = !strcmp(type, "policies");
    struct hy_json *j = NULL, *pj = NULL;
    struct hy_buf b = {0};
    if (stats || (f == HY_OUTPUT_JSON && !policies)) { /* stats: Prometheus text, whatever -o */
        hy_output_text(cli, resp.body.data ? resp.body.data : "", resp.body.len);
        goto out;
    }
    if ((rc = hy_api_parse(cli, &resp, &j)) < 0)
        goto out;
    if (policies) {
        char why[256];
        if ((rc = policies_json(j, &b)) < 0) {
            hy_cli_error(cli, "out of memory");
            goto out;
        }
        if ((rc = hy_json_parse(b.data, b.len, &pj, why, sizeof(why))) < 0) {
            hy_cli_error(cli, "cannot list the policies: %s", why);
            goto out;
        }
        b.len = 0;
    }
    if (rc == 0 && f != HY_OUTPUT_TABLE) {
        rc = hy_output_tree(cli, policies ? pj : j, f);
        goto out;
    }
    if (rc == 0)
        rc = policies                  ? render_policies(pj, &b)
             : !strcmp(type, "config") ? render_config(j, &b)
                                       : render_rules(j, &b);
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    else
        fwrite(b.data ? b.data : "", 1, b.len, cli->out);
out:
    hy_buf_fini(&b);
    hy_json_free(j);
    hy_json_free(pj);
    hy_httpc_response_fini(&resp);
    return rc;
}
