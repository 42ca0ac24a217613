/* The resource API: routing of Kuma-style paths to the store, in JSON or
 * YAML, with the error shape {"title","details","causes"}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cp_api.h"
#include "codec.h"
#include "cp_inspect.h"
#include "cp_writer.h"
#include "error.h"
#include "log.h"
#include "policy.h"
#include "poison.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define MAX_SEGS 6 /* one more than any route has: a longer path matches none */

/* ----- batches ----- */

int hy_cp_api_batch_add(struct hy_cp_api_batch *b, enum hy_store_op op, struct hy_resource *r,
                        uint64_t expect_version)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        struct hy_store_write *w = realloc(b->w, cap * sizeof(*w));
        if (!w)
            return HY_ENOMEM;
        b->w = w;
        b->cap = cap;
    }
    if (b->nowned == b->capowned) {
        size_t cap = b->capowned ? b->capowned * 2 : 8;
        struct hy_resource **o = realloc(b->owned, cap * sizeof(*o));
        if (!o)
            return HY_ENOMEM;
        b->owned = o;
        b->capowned = cap;
    }
    b->owned[b->nowned++] = r;
    b->w[b->n++] = (struct hy_store_write){.op = op, .r = r, .expect_version = expect_version};
    return 0;
}

static void batch_fini(struct hy_cp_api_batch *b)
{
    for (size_t i = 0; i < b->nowned; i++)
        hy_resource_free(b->owned[i]);
    free(b->owned);
    free(b->w);
    memset(b, 0, sizeof(*b));
}

/* ----- request helpers ----- */

static bool has_media(const char *header, const char *const *types)
{
    for (size_t i = 0; types[i]; i++)
        if (strstr(header, types[i]))
            return true;
    return false;
}

static const char *const yaml_types[] = {"application/yaml", "text/yaml", "application/x-yaml",
                                         NULL};
static const char *const json_types[] = {"application/json", NULL};

static enum hy_format response_format(const struct hy_http_req *req)
{
    return has_media(req->accept, yaml_types) ? HY_FORMAT_YAML : HY_FORMAT_JSON;
}

/* Body media types we read: JSON and YAML (JSON is YAML flow syntax, so one
 * parser reads both). A request without a Content-Type is read the same. */
static bool body_type_ok(const struct hy_http_req *req, struct hy_http_resp *resp)
{
    if (!req->content_type[0] || has_media(req->content_type, yaml_types) ||
        has_media(req->content_type, json_types))
        return true;
    char details[300];
    snprintf(details, sizeof(details),
             "Content-Type \"%.200s\" is not supported; send application/json or application/yaml",
             req->content_type);
    hy_http_error(resp, 415, "Unsupported media type", details, NULL);
    return false;
}

static const char *source_name(const struct hy_http_req *req)
{
    return req->source[0] ? req->source : "request body";
}

static void set_route(struct hy_http_resp *resp, const char *route)
{
    snprintf(resp->route, sizeof(resp->route), "%s", route);
}

/* Parses an If-Match value ("3" or 3). false if absent; *bad on junk. */
static bool if_match(const struct hy_http_req *req, uint64_t *version, bool *bad)
{
    const char *s = req->if_match;
    *bad = false;
    if (!s[0])
        return false;
    if (*s == 'W' && s[1] == '/')
        s += 2;
    if (*s == '"')
        s++;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || (*end && strcmp(end, "\"") != 0) || v == 0) {
        *bad = true;
        return false;
    }
    *version = v;
    return true;
}

static void store_error(struct hy_http_resp *resp, int rc, const char *what)
{
    char details[512];
    switch (rc) {
    case HY_ENOTFOUND:
        snprintf(details, sizeof(details), "%s not found", what);
        hy_http_error(resp, 404, "Not found", details, NULL);
        break;
    case HY_ECONFLICT:
        snprintf(details, sizeof(details),
                 "%s changed since the version given in If-Match (or already exists); read it "
                 "again and retry",
                 what);
        hy_http_error(resp, 409, "Version conflict", details, NULL);
        break;
    case HY_EFULL:
        hy_http_error(resp, 507, "Store full",
                      "the store has no room left; nothing was written (raise the store map size)",
                      NULL);
        break;
    case HY_ETOOBIG:
        hy_http_error(resp, 413, "Too large", "the write is larger than the store accepts", NULL);
        break;
    case HY_EUNAVAIL:
        snprintf(details, sizeof(details),
                 "%s: the store's database cannot be reached (PostgreSQL down?); the control plane "
                 "reconnects by itself: retry later",
                 what);
        hy_http_error(resp, 503, "Store unavailable", details, NULL);
        break;
    case HY_EBUSY:
        snprintf(details, sizeof(details),
                 "%s: the store's database did not grant the write lock in time (another writer "
                 "held it: a stopped control plane replica?); nothing was written: retry later",
                 what);
        hy_http_error(resp, 503, "Store busy", details, NULL);
        break;
    default:
        snprintf(details, sizeof(details), "%s: %s", what, hy_strerror(rc));
        hy_http_error(resp, 500, "Store error", details, NULL);
        break;
    }
}

static void describe(const struct hy_rtype *t, const char *mesh, const char *name, char *buf,
                     size_t size)
{
    if (t->scope == HY_SCOPE_MESH)
        snprintf(buf, size, "%s %s in mesh %s", t->name, name, mesh);
    else
        snprintf(buf, size, "%s %s", t->name, name);
}

/* Encodes r as the response body. */
static int put_resource(struct hy_http_resp *resp, const struct hy_resource *r, enum hy_format f)
{
    resp->content_type = f == HY_FORMAT_YAML ? "application/yaml" : "application/json";
    snprintf(resp->etag, sizeof(resp->etag), "%llu", (unsigned long long)r->version);
    return hy_codec_encode_resource(r, f, &resp->body);
}

/* ----- ownership and references ----- */

static const char *refusal(struct hy_cp_api *api, const struct hy_rtype *t, char *buf, size_t size)
{
    if (t->system) {
        snprintf(buf, size, "%s resources are written by the control plane itself, not by users",
                 t->name);
        return buf;
    }
    return api->write_refusal ? api->write_refusal(api->ud, t, buf, size) : NULL;
}

/* 1 when the Mesh exists, 0 when not, HY_EUNAVAIL when the store cannot
 * tell (its database is down: the write must not go on unchecked). */
static int mesh_exists(struct hy_cp_api *api, const char *mesh)
{
    struct hy_resource *m = NULL;
    int rc = hy_store_get(api->store, "Mesh", NULL, mesh, &m);
    if (hy_store_retry_later(rc))
        return rc;
    if (rc < 0)
        return 0;
    hy_resource_free(m);
    return 1;
}

/* ----- GET /, /_resources ----- */

static void get_root(struct hy_cp_api *api, struct hy_http_resp *resp)
{
    struct hy_buf *b = &resp->body;
    hy_buf_printf(b, "{\"product\":\"Hypha\",\"version\":\"%s\",\"mode\":", HYPHA_VERSION);
    hy_codec_json_string(b, api->mode, strlen(api->mode));
    hy_buf_puts(b, ",\"instanceId\":");
    hy_codec_json_string(b, api->instance_id, strlen(api->instance_id));
    hy_buf_puts(b, "}");
}

static void get_types(struct hy_http_resp *resp)
{
    size_t nt;
    const struct hy_rtype *t = hy_rtype_all(&nt);
    struct hy_buf *b = &resp->body;
    hy_buf_puts(b, "{\"resources\":[");
    bool first = true;
    for (size_t i = 0; i < nt; i++) {
        if (t[i].secret)
            continue;
        hy_buf_printf(b,
                      "%s{\"name\":\"%s\",\"plural\":\"%s\",\"shortName\":%s%s%s,\"scope\":\"%s\","
                      "\"origin\":\"%s\",\"readOnly\":%s}",
                      first ? "" : ",", t[i].name, t[i].plural, t[i].short_name ? "\"" : "",
                      t[i].short_name ? t[i].short_name : "null", t[i].short_name ? "\"" : "",
                      t[i].scope == HY_SCOPE_MESH ? "Mesh" : "Global",
                      t[i].origin == HY_ORIGIN_ZONE ? "zone" : "global",
                      t[i].system ? "true" : "false");
        first = false;
    }
    hy_buf_puts(b, "]}");
}

/* ----- lists ----- */

struct label_filter {
    char key[256], value[256];
};

/* Reads filter[labels.KEY]=VALUE parameters (Kuma's form). */
static size_t label_filters(const struct hy_http_req *req, struct label_filter *f, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < req->nparams && n < max; i++) {
        const char *k = req->params[i].key;
        size_t l = strlen(k);
        if (strncmp(k, "filter[labels.", 14) != 0 || l < 16 || k[l - 1] != ']')
            continue;
        const char *key = k + 14;
        size_t kl = l - 15;
        if (kl > 8 && strncmp(key, "kuma.io/", 8) == 0) {
            snprintf(f[n].key, sizeof(f[n].key), "hypha.io/%.*s", (int)(kl - 8), key + 8);
        } else {
            snprintf(f[n].key, sizeof(f[n].key), "%.*s", (int)kl, key);
        }
        snprintf(f[n].value, sizeof(f[n].value), "%s", req->params[i].value);
        n++;
    }
    return n;
}

static bool matches(const struct hy_resource *r, const struct label_filter *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool ok = false;
        for (size_t j = 0; j < r->meta->n_labels && !ok; j++) {
            const Hypha__V1__Meta__LabelsEntry *e = r->meta->labels[j];
            ok = e->key && e->value && strcmp(e->key, f[i].key) == 0 &&
                 strcmp(e->value, f[i].value) == 0;
        }
        if (!ok)
            return false;
    }
    return true;
}

static void url_encode(struct hy_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c))
            hy_buf_append(b, s, 1);
        else
            hy_buf_printf(b, "%%%02X", c);
    }
}

static void list(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                 const struct hy_rtype *t, const char *mesh)
{
    size_t size = LIST_DEFAULT;
    const char *s = hy_http_param(req, "size");
    if (s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (!s[0] || *end || v == 0 || v > LIST_MAX) {
            char details[128];
            snprintf(details, sizeof(details), "size must be an integer from 1 to %d", LIST_MAX);
            hy_http_error(resp, 400, "Invalid parameter", details, NULL);
            return;
        }
        size = v;
    }
    const char *offset = hy_http_param(req, "offset");
    if (offset && !offset[0])
        offset = NULL;
    struct label_filter filters[8];
    size_t nf = label_filters(req, filters, 8);
    enum hy_format f = response_format(req);

    /* Without filters one store page is the answer. With filters, read on
     * until `size` items match, and keep counting matches for the total;
     * the next page starts after the last item returned, if anything after
     * it matches. The token is the store's paging key (type/mesh/name). */
    struct hy_resource **items = calloc(size, sizeof(*items));
    size_t n = 0, total = 0;
    char *next = NULL;
    bool more = false;
    int rc = 0;
    if (!items) {
        hy_http_error(resp, 500, "Out of memory", "cannot allocate the list", NULL);
        return;
    }
    char *after = offset ? strdup(offset) : NULL;
    do {
        struct hy_store_page page = {0};
        rc = hy_store_list(api->store, t->name, mesh, after, nf ? 500 : size, &page);
        free(after);
        after = NULL;
        if (rc < 0)
            break;
        for (size_t i = 0; i < page.n; i++) {
            struct hy_resource *r = page.items[i];
            if (nf && !matches(r, filters, nf))
                continue;
            total++;
            if (n == size) {
                more = true;
                continue;
            }
            items[n++] = r;
            page.items[i] = NULL;
        }
        if (!nf) {
            total = page.total;
            next = page.next;
            page.next = NULL;
        } else if (page.next) {
            after = strdup(page.next);
        }
        hy_store_page_fini(&page);
    } while (after);
    if (nf && more && n > 0) {
        const struct hy_resource *r = items[n - 1];
        const char *m = r->meta->mesh ? r->meta->mesh : "";
        size_t l = strlen(t->name) + strlen(m) + strlen(r->meta->name) + 3;
        if ((next = malloc(l)))
            snprintf(next, l, "%s/%s/%s", t->name, m, r->meta->name);
    }
    if (rc < 0) {
        store_error(resp, rc, t->name);
        goto out;
    }
    struct hy_buf *b = &resp->body;
    if (f == HY_FORMAT_YAML) {
        resp->content_type = "application/yaml";
        for (size_t i = 0; i < n; i++) {
            hy_buf_puts(b, "---\n");
            hy_codec_encode_resource(items[i], f, b);
        }
        goto out;
    }
    hy_buf_printf(b, "{\"total\":%zu,\"items\":[", total);
    for (size_t i = 0; i < n; i++) {
        if (i)
            hy_buf_puts(b, ",");
        hy_codec_encode_resource(items[i], f, b);
    }
    hy_buf_puts(b, "],\"next\":");
    if (next) {
        struct hy_buf url = {0};
        hy_buf_puts(&url, req->path);
        hy_buf_printf(&url, "?size=%zu&offset=", size);
        url_encode(&url, next);
        for (size_t i = 0; i < req->nparams; i++)
            if (strncmp(req->params[i].key, "filter[", 7) == 0) {
                hy_buf_puts(&url, "&");
                url_encode(&url, req->params[i].key);
                hy_buf_puts(&url, "=");
                url_encode(&url, req->params[i].value);
            }
        hy_codec_json_string(b, url.data, url.len);
        hy_buf_fini(&url);
    } else {
        hy_buf_puts(b, "null");
    }
    hy_buf_puts(b, "}");
out:
    for (size_t i = 0; i < n; i++)
        hy_resource_free(items[i]);
    free(items);
    free(next);
}

/* ----- one resource ----- */

static void get_one(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                    const struct hy_rtype *t, const char *mesh, const char *name)
{
    struct hy_resource *r = NULL;
    int rc = hy_store_get(api->store, t->name, mesh, name, &r);
    if (rc < 0) {
        char what[600];
        describe(t, mesh, name, what, sizeof(what));
        store_error(resp, rc, what);
        return;
    }
    put_resource(resp, r, response_format(req));
    hy_resource_free(r);
}

/* Decodes a request body into docs, answering 400/415 itself on failure. */
static bool decode_body(const struct hy_http_req *req, struct hy_http_resp *resp,
                        struct hy_docs *docs)
{
    struct hy_diag d = {0};
    if (!body_type_ok(req, resp))
        return false;
    int rc = hy_codec_decode_resources(source_name(req), req->body, req->body_len, NULL, docs, &d);
    bool ok = rc == 0 && hy_docs_validate(docs, &d);
    if (!ok) {
        hy_http_error(resp, 400, "Invalid resource",
                      rc == HY_ETOOBIG ? "the document is too large" : "the resource is not valid",
                      &d);
        if (rc == 0)
            hy_docs_fini(docs);
    } else if (docs->n == 0) {
        hy_http_error(resp, 400, "Invalid resource", "the request body holds no resource", NULL);
        ok = false;
    }
    hy_diag_fini(&d);
    return ok;
}

static const char *result_name(enum hy_store_result r)
{
    switch (r) {
    case HY_STORE_CREATED:
        return "created";
    case HY_STORE_UPDATED:
        return "updated";
    case HY_STORE_UNCHANGED:
        return "unchanged";
    default:
        return "deleted";
    }
}

/* What a batch of user writes knows about meshes: the Mesh names it
 * creates (sorted) and the last mesh found in the store. */
struct mesh_refs {
    const char **created;
    size_t n;
    const char *known;
};

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks ownership and the mesh reference of one user write; adds causes.
 * 0, or HY_EUNAVAIL when the store could not be read (answer 503). */
static int check_write(struct hy_cp_api *api, const struct hy_resource *r, struct mesh_refs *m,
                       struct hy_diag *d)
{
    char why[512];
    const char *no = refusal(api, r->type, why, sizeof(why));
    if (no)
        hy_diag_add(d, 0, 0, "type", "%s", no);
    const char *mesh = r->meta->mesh;
    if (r->type->scope != HY_SCOPE_MESH || !mesh)
        return 0;
    if (m && m->n && bsearch(&mesh, m->created, m->n, sizeof(char *), cmp_cstr))
        return 0;
    if (m && m->known && !strcmp(m->known, mesh))
        return 0;
    int rc = mesh_exists(api, mesh);
    if (rc < 0)
        return rc;
    if (!rc)
        hy_diag_add(d, 0, 0, "mesh", "mesh \"%s\" does not exist; create the Mesh first", mesh);
    else if (m)
        m->known = mesh;
    return 0;
}

/* check_write for each of v[0..n), a Mesh among them counting as there;
 * causes without a position get lines[i] (when lines is not NULL). Linear
 * in n (sorting aside): a 10k-document apply must not compare every pair.
 * 0, HY_ENOMEM or HY_EUNAVAIL (the store could not be read). */
static int check_writes(struct hy_cp_api *api, const struct hy_resource *const *v, const int *lines,
                        size_t n, struct hy_diag *d)
{
    struct mesh_refs meshes = {.created = malloc((n + 1) * sizeof(char *))};
    if (!meshes.created)
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i]->type->name, "Mesh"))
            meshes.created[meshes.n++] = v[i]->meta->name;
    qsort(meshes.created, meshes.n, sizeof(char *), cmp_cstr);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t before = d->n;
        rc = check_write(api, v[i], &meshes, d);
        for (size_t k = before; lines && k < d->n; k++)
            if (d->causes[k].line == 0) {
                d->causes[k].line = lines[i];
                d->causes[k].col = 1;
            }
    }
    free(meshes.created);
    return rc;
}

/* Runs the hook (what the control plane checks and adds before a write:
 * certificates, roots, names). Returns 0 or answers the error itself. */
static int run_hook(struct hy_cp_api *api, struct hy_cp_api_batch *b, struct hy_http_resp *resp)
{
    struct hy_diag d = {0};
    int rc = api->before_commit ? api->before_commit(api->ud, b, &d) : 0;
    if (rc < 0)
        hy_http_error(resp, 400, "Invalid resource", "the write was refused", &d);
    hy_diag_fini(&d);
    return rc;
}

/* The answer to an apply (and its dry run): warnings and per-resource
 * results of the batch's first nuser writes. */
static void apply_answer(struct hy_cp_api *api, struct hy_http_resp *resp,
                         const struct hy_cp_api_batch *b, size_t nuser, bool dry)
{
    struct hy_buf *o = &resp->body;
    /* what the data plane does not enforce of them: answered, never dropped */
    hy_buf_puts(o, "{\"warnings\":[");
    size_t nwarn = 0;
    for (size_t i = 0; i < nuser; i++) {
        const struct hy_resource *r = b->w[i].r;
        struct hy_diag w = {0};
        hy_policy_warnings(r, &w);
        for (size_t k = 0; k < w.n; k++) {
            char line[1024];
            snprintf(line, sizeof(line), "%s %s/%s: %s: %s", r->type->name,
                     r->meta->mesh ? r->meta->mesh : "", r->meta->name, w.causes[k].field,
                     w.causes[k].message);
            hy_buf_puts(o, nwarn++ ? "," : "");
            hy_codec_json_string(o, line, strlen(line));
        }
        hy_diag_fini(&w);
    }
    hy_buf_puts(o, "],\"results\":[");
    for (size_t i = 0; i < nuser; i++) {
        const struct hy_resource *r = b->w[i].r;
        const char *mesh = r->meta->mesh ? r->meta->mesh : "";
        hy_buf_printf(o, "%s{\"type\":\"%s\",\"mesh\":", i ? "," : "", r->type->name);
        hy_codec_json_string(o, mesh, strlen(mesh));
        hy_buf_puts(o, ",\"name\":");
        hy_codec_json_string(o, r->meta->name, strlen(r->meta->name));
        hy_buf_printf(o, ",\"result\":\"%s\"}", result_name(b->w[i].result));
    }
    hy_buf_printf(o, "],\"dryRun\":%s", dry ? "true" : "false");
    if (dry) {
        /* which Dataplanes' enforced policies the write would change */
        const struct hy_resource **v = malloc((nuser + 1) * sizeof(*v));
        struct hy_buf changes = {0};
        for (size_t i = 0; v && i < nuser; i++)
            v[i] = b->w[i].r;
        size_t untried = 0;
        bool ok =
            v && hy_cp_inspect_changes(api, v, nuser, &changes, &untried) == 0 && changes.data;
        hy_buf_printf(o, ",\"changes\":%s", ok ? changes.data : "null");
        if (ok && untried) /* said, never hidden: a change may lie beyond */
            hy_buf_printf(o, ",\"callersNotTried\":%zu", untried);
        hy_buf_fini(&changes);
        free(v);
    }
    hy_buf_puts(o, "}");
}

/* ----- writes: checked on the loop, committed by the writer ----- */

enum write_kind { WRITE_PUT, WRITE_DELETE, WRITE_APPLY };

/* One request's write on its way through the writer (cp_writer.h). The
 * request is gone once the handler returns: what the answer needs is kept
 * here. */
struct api_write {
    struct hy_cp_write_job job;
    struct hy_cp_api *api;
    struct hy_http_later *later; /* NULL: answered within the handler call, in resp */
    struct hy_http_resp *resp;
    enum write_kind kind;
    struct hy_cp_api_batch b;
    size_t nuser, nowned; /* the user's writes; what the hook adds follows */
    uint64_t checked;     /* the revision the user's writes were checked at */
    int *lines;           /* apply: each document's line, for causes */
    char *source;         /* apply: where the documents came from */
    enum hy_format format;
    char what[600];
    char peer[64];
};

static struct hy_http_resp *answer_of(struct api_write *aw)
{
    return aw->later ? hy_http_later_resp(aw->later) : aw->resp;
}

static void write_free(struct api_write *aw)
{
    if (aw->later)
        hy_http_later_done(aw->later);
    batch_fini(&aw->b);
    free(aw->lines);
    free(aw->source);
    free(aw);
}

/* Writes that what other writes' checks read depend on: a Mesh (whether
 * mesh-scoped writes may go), a Zone (its deletion takes what it synced),
 * the CAs and trusts (the root hook reads them), any global-scope type. */
static bool groupable(const struct hy_cp_api_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct hy_rtype *t = b->w[i].r->type;
        if (t->scope != HY_SCOPE_MESH || !strcmp(t->name, "MeshTrust") ||
            !strcmp(t->name, "MeshCaRoot") || !strcmp(t->name, "MeshCaKey"))
            return false;
    }
    return true;
}

/* The writer's prepare: the checks that read the store again if it has
 * changed since they ran, then the hook (on the store as it is now). */
static int write_prepare(struct hy_cp_write_job *j)
{
    struct api_write *aw = j->data;
    struct hy_cp_api *api = aw->api;
    struct hy_cp_api_batch *b = &aw->b;
    /* what the hook added last time goes: it adds again what is needed now */
    for (size_t i = aw->nowned; i < b->nowned; i++)
        hy_resource_free(b->owned[i]);
    b->nowned = aw->nowned;
    b->n = aw->nuser;
    uint64_t now = hy_store_revision(api->store);
    if (aw->kind != WRITE_DELETE && now != aw->checked) {
        struct hy_diag d = {.source = aw->source ? aw->source : "request body"};
        const struct hy_resource **v = malloc(aw->nuser * sizeof(*v));
        int rc = v ? 0 : HY_ENOMEM;
        for (size_t i = 0; v && i < aw->nuser; i++)
            v[i] = b->w[i].r;
        if (rc == 0)
            rc = check_writes(api, v, aw->lines, aw->nuser, &d);
        free(v);
        if (hy_store_retry_later(rc))
            store_error(answer_of(aw), rc, "checking the write");
        else if (rc < 0)
            hy_http_error(answer_of(aw), 500, "Out of memory", "nothing was written", NULL);
        else if (d.n && aw->kind == WRITE_PUT)
            hy_http_error(answer_of(aw), 400, "Invalid resource", "the resource cannot be written",
                          &d);
        else if (d.n)
            hy_http_error(answer_of(aw), 400, "Invalid resources", "nothing was written", &d);
        rc = rc < 0 ? rc : d.n ? HY_EINVAL : 0;
        hy_diag_fini(&d);
        if (rc < 0) {
            write_free(aw);
            return rc;
        }
        aw->checked = now;
    }
    int rc = run_hook(api, b, answer_of(aw));
    if (rc < 0) {
        write_free(aw);
        return rc;
    }
    j->w = b->w;
    j->n = b->n;
    j->alone = j->alone || !groupable(b);
    return 0;
}

/* The writer's done: the answer, as the request would have had it from a
 * commit on the loop. */
static void write_done(struct hy_cp_write_job *j, int rc, size_t failed)
{
    struct api_write *aw = j->data;
    struct hy_cp_api_batch *b = &aw->b;
    struct hy_http_resp *resp = answer_of(aw);
    if (aw->later && !hy_http_later_open(aw->later))
        hy_log(HY_LOG_DEBUG, "api", "%s %s: %s, but the client has gone: answer dropped", aw->peer,
               aw->what, rc < 0 ? hy_strerror(rc) : "committed");
    if (rc < 0) {
        char w[600];
        if (failed < b->n && b->w[failed].r)
            describe(b->w[failed].r->type, b->w[failed].r->meta->mesh, b->w[failed].r->meta->name,
                     w, sizeof(w));
        else
            snprintf(w, sizeof(w), "%s", aw->what);
        store_error(resp, rc, w);
        write_free(aw);
        return;
    }
    const struct hy_resource *r = b->w[0].r;
    struct hy_resource *stored = NULL;
    switch (aw->kind) {
    case WRITE_PUT:
        if (hy_store_get(aw->api->store, r->type->name, r->meta->mesh, r->meta->name, &stored) ==
            0) {
            put_resource(resp, stored, aw->format);
            hy_resource_free(stored);
        }
        resp->status = b->w[0].result == HY_STORE_CREATED ? 201 : 200;
        snprintf(resp->result, sizeof(resp->result), "%s", result_name(b->w[0].result));
        hy_log(HY_LOG_INFO, "api", "%s %s %s", aw->peer, aw->what, result_name(b->w[0].result));
        break;
    case WRITE_DELETE:
        hy_buf_puts(&resp->body, "{}");
        snprintf(resp->result, sizeof(resp->result), "deleted");
        hy_log(HY_LOG_INFO, "api", "%s %s deleted", aw->peer, aw->what);
        break;
    case WRITE_APPLY:
        apply_answer(aw->api, resp, b, aw->nuser, false);
        hy_log(HY_LOG_INFO, "api", "%s applied %zu resources from %s", aw->peer, aw->nuser,
               aw->source ? aw->source : "request body");
        break;
    }
    write_free(aw);
}

/* Sends the batch (taken over, emptied, even on failure) to the writer. The answer comes
 * later, unless the server cannot wait (no loop) or memory runs out for
 * the handle: then the write is committed within this call, as before. */
static void submit(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                   struct hy_cp_api_batch *b, enum write_kind kind, const char *what, int **lines)
{
    struct api_write *aw = calloc(1, sizeof(*aw));
    if (!aw) {
        hy_http_error(resp, 500, "Out of memory", "nothing was written", NULL);
        batch_fini(b);
        return;
    }
    *aw = (struct api_write){
        .api = api, .resp = resp, .kind = kind, .b = *b, .format = response_format(req)};
    memset(b, 0, sizeof(*b));
    aw->nuser = aw->b.n;
    aw->nowned = aw->b.nowned;
    aw->checked = hy_store_revision(api->store);
    snprintf(aw->what, sizeof(aw->what), "%s", what);
    snprintf(aw->peer, sizeof(aw->peer), "%s", req->peer);
    if (kind == WRITE_APPLY) {
        aw->source = strdup(source_name(req));
        aw->lines = *lines;
        *lines = NULL;
    }
    aw->job = (struct hy_cp_write_job){
        .alone = !groupable(&aw->b), .prepare = write_prepare, .done = write_done, .data = aw};
    /* a writer of our own when this one cannot answer later: all within
     * this call, on this thread */
    struct hy_cp_writer here = {.store = api->store};
    struct hy_cp_writer *wr = &here;
    if (req->loop && (aw->later = hy_http_later(resp))) {
        wr = &api->writer;
        if (!wr->loop) { /* set once: the pool thread reads them */
            wr->loop = req->loop;
            wr->store = api->store;
        }
    }
    hy_cp_writer_submit(wr, &aw->job);
}

static void put_one(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                    const struct hy_rtype *t, const char *mesh, const char *name)
{
    struct hy_docs docs;
    if (!decode_body(req, resp, &docs))
        return;
    struct hy_diag d = {.source = source_name(req)};
    struct hy_resource *r = docs.v[0].res;
    int crc;
    if (docs.n != 1)
        hy_diag_add(&d, 0, 0, "", "expected one resource, found %zu (use POST /_apply for many)",
                    docs.n);
    else if (r->type != t)
        hy_diag_add(&d, docs.v[0].line, 1, "type", "%s does not match the path, which is for %s",
                    r->type->name, t->name);
    else if (strcmp(r->meta->name, name) != 0)
        hy_diag_add(&d, docs.v[0].line, 1, "name", "\"%s\" does not match the path's \"%s\"",
                    r->meta->name, name);
    else if (mesh && (!r->meta->mesh || strcmp(r->meta->mesh, mesh) != 0))
        hy_diag_add(&d, docs.v[0].line, 1, "mesh", "\"%s\" does not match the path's \"%s\"",
                    r->meta->mesh ? r->meta->mesh : "", mesh);
    else if (hy_store_retry_later(crc = check_write(api, r, NULL, &d))) {
        store_error(resp, crc, "checking the write");
        goto out;
    }
    uint64_t version = HY_VERSION_ANY;
    bool bad = false;
    if (if_match(req, &version, &bad), bad)
        hy_diag_add(&d, 0, 0, "If-Match", "\"%s\" is not a resource version", req->if_match);
    if (d.n) {
        hy_http_error(resp, 400, "Invalid resource", "the resource cannot be written", &d);
        goto out;
    }
    struct hy_cp_api_batch b = {0};
    docs.v[0].res = NULL; /* the batch owns it now */
    if (hy_cp_api_batch_add(&b, HY_STORE_PUT, r, version) < 0) {
        hy_resource_free(r);
        hy_http_error(resp, 500, "Out of memory", "cannot write", NULL);
        batch_fini(&b);
        goto out;
    }
    char what[600];
    describe(t, mesh, name, what, sizeof(what));
    submit(api, req, resp, &b, WRITE_PUT, what, NULL);
out:
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
}

static void delete_one(struct hy_cp_api *api, const struct hy_http_req *req,
                       struct hy_http_resp *resp, const struct hy_rtype *t, const char *mesh,
                       const char *name)
{
    char why[512], what[600];
    const char *no = refusal(api, t, why, sizeof(why));
    if (no) {
        hy_http_error(resp, 400, "Read-only resource", no, NULL);
        return;
    }
    uint64_t version = HY_VERSION_ANY;
    bool bad = false;
    if (if_match(req, &version, &bad), bad) {
        hy_http_error(resp, 400, "Invalid header", "If-Match is not a resource version", NULL);
        return;
    }
    struct hy_resource *r = hy_resource_new(t);
    struct hy_cp_api_batch b = {0};
    if (!r || hy_resource_set_name(r, mesh, name) < 0 ||
        hy_cp_api_batch_add(&b, HY_STORE_DELETE, r, version) < 0) {
        hy_http_error(resp, 500, "Out of memory", "cannot delete", NULL);
        hy_resource_free(r);
        batch_fini(&b);
        return;
    }
    describe(t, mesh, name, what, sizeof(what));
    submit(api, req, resp, &b, WRITE_DELETE, what, NULL);
}

/* ----- POST /_apply ----- */

static bool same_key(const struct hy_resource *a, const struct hy_resource *b)
{
    return a->type == b->type && !strcmp(a->meta->name, b->meta->name) &&
           !strcmp(a->meta->mesh ? a->meta->mesh : "", b->meta->mesh ? b->meta->mesh : "");
}

/* qsort has no context argument: the docs being sorted (loop thread only). */
static const struct hy_docs *sort_docs;

/* Orders document indices by type, mesh and name, then by position. */
static int cmp_doc_key(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    const struct hy_resource *p = sort_docs->v[x].res, *q = sort_docs->v[y].res;
    int c = strcmp(p->type->name, q->type->name);
    if (!c)
        c = strcmp(p->meta->mesh ? p->meta->mesh : "", q->meta->mesh ? q->meta->mesh : "");
    if (!c)
        c = strcmp(p->meta->name, q->meta->name);
    return c ? c : (x > y) - (x < y);
}

/* Adds a cause for every document whose key an earlier one has. */
static void find_duplicates(const struct hy_docs *docs, size_t *order, struct hy_diag *d)
{
    sort_docs = docs;
    qsort(order, docs->n, sizeof(size_t), cmp_doc_key);
    for (size_t i = 1; i < docs->n; i++) {
        const struct hy_doc *first = &docs->v[order[i - 1]], *dup = &docs->v[order[i]];
        if (same_key(first->res, dup->res)) {
            size_t f = i - 1;
            while (f > 0 && same_key(docs->v[order[f - 1]].res, dup->res))
                f--;
            hy_diag_add(d, dup->line, 1, "name", "%s %s appears twice (first at line %d)",
                        dup->res->type->name, dup->res->meta->name, docs->v[order[f]].line);
        }
    }
    sort_docs = NULL;
}

static void apply(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_docs docs;
    if (!decode_body(req, resp, &docs))
        return;
    struct hy_diag d = {.source = source_name(req)};
    struct hy_cp_api_batch b = {0};
    const struct hy_resource **v = malloc((docs.n + 1) * sizeof(*v));
    size_t *order = malloc((docs.n + 1) * sizeof(size_t));
    int *lines = malloc((docs.n + 1) * sizeof(int));
    if (!v || !order || !lines) {
        hy_http_error(resp, 500, "Out of memory", "nothing was written", NULL);
        goto out;
    }
    for (size_t i = 0; i < docs.n; i++) {
        order[i] = i;
        v[i] = docs.v[i].res;
        lines[i] = docs.v[i].line;
    }
    int crc = check_writes(api, v, lines, docs.n, &d);
    if (hy_store_retry_later(crc)) {
        store_error(resp, crc, "checking the writes");
        goto out;
    }
    if (crc < 0) {
        hy_http_error(resp, 500, "Out of memory", "nothing was written", NULL);
        goto out;
    }
    find_duplicates(&docs, order, &d);
    bool dry = hy_http_param(req, "dryRun") && strcmp(hy_http_param(req, "dryRun"), "false") != 0;
    if (d.n) {
        hy_http_error(resp, 400, "Invalid resources", "nothing was written", &d);
        goto out;
    }
    for (size_t i = 0; i < docs.n; i++) {
        if (hy_cp_api_batch_add(&b, HY_STORE_PUT, docs.v[i].res, HY_VERSION_ANY) < 0) {
            hy_http_error(resp, 500, "Out of memory", "nothing was written", NULL);
            goto out;
        }
        docs.v[i].res = NULL;
    }
    size_t nuser = b.n;
    if (!dry) {
        submit(api, req, resp, &b, WRITE_APPLY, "apply", &lines);
        goto out;
    }
    /* the same checks as a real apply (what the hook adds is dropped) */
    if (run_hook(api, &b, resp) < 0)
        goto out;
    for (size_t i = 0; i < nuser; i++) {
        const struct hy_resource *r = b.w[i].r;
        struct hy_resource *old = NULL;
        if (hy_store_get(api->store, r->type->name, r->meta->mesh, r->meta->name, &old) < 0)
            b.w[i].result = HY_STORE_CREATED;
        else
            b.w[i].result =
                hy_resource_same_content(old, r) ? HY_STORE_UNCHANGED : HY_STORE_UPDATED;
        hy_resource_free(old);
    }
    apply_answer(api, resp, &b, nuser, true);
out:
    free(v);
    free(order);
    free(lines);
    batch_fini(&b);
    hy_diag_fini(&d);
    hy_docs_fini(&docs);
}

/* ----- routing ----- */

static size_t split(const char *path, char *buf, size_t size, char **segs)
{
    snprintf(buf, size, "%s", path);
    size_t n = 0;
    for (char *p = buf; *p && n < MAX_SEGS;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

static void not_allowed(struct hy_http_resp *resp, const char *method, const char *allowed)
{
    char details[128];
    snprintf(details, sizeof(details), "%s is not allowed here (allowed: %s)", method, allowed);
    hy_http_error(resp, 405, "Method not allowed", details, NULL);
}

static const struct hy_rtype *user_type(const char *plural)
{
    const struct hy_rtype *t = hy_rtype_by_plural(plural);
    return t && !t->secret ? t : NULL;
}

static void one(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                const struct hy_rtype *t, const char *mesh, const char *name)
{
    switch (req->method) {
    case HY_HTTP_GET:
    case HY_HTTP_HEAD:
        get_one(api, req, resp, t, mesh, name);
        break;
    case HY_HTTP_PUT:
        put_one(api, req, resp, t, mesh, name);
        break;
    case HY_HTTP_DELETE:
        delete_one(api, req, resp, t, mesh, name);
        break;
    default:
        not_allowed(resp, req->method_name, "GET, PUT, DELETE");
    }
}

static void many(struct hy_cp_api *api, const struct hy_http_req *req, struct hy_http_resp *resp,
                 const struct hy_rtype *t, const char *mesh)
{
    if (req->method == HY_HTTP_GET || req->method == HY_HTTP_HEAD)
        list(api, req, resp, t, mesh);
    else
        not_allowed(resp, req->method_name, "GET");
}

static void unknown_type(struct hy_http_resp *resp, const char *plural)
{
    char details[300];
    snprintf(details, sizeof(details),
             "\"%.200s\" is not a resource type; GET /_resources lists them", plural);
    hy_http_error(resp, 404, "Not found", details, NULL);
}

bool hy_cp_api_handle(struct hy_cp_api *api, const struct hy_http_req *req,
                      struct hy_http_resp *resp)
{
    char buf[1024];
    char *s[MAX_SEGS];
    size_t n = split(req->path, buf, sizeof(buf), s);
    bool get = req->method == HY_HTTP_GET || req->method == HY_HTTP_HEAD;
    if (n == 0 || (n == 1 && (!strcmp(s[0], "ready") || !strcmp(s[0], "_resources")))) {
        set_route(resp, n ? (s[0][0] == 'r' ? "/ready" : "/_resources") : "/");
        if (!get)
            not_allowed(resp, req->method_name, "GET");
        else if (n == 0)
            get_root(api, resp);
        else if (s[0][0] == 'r')
            hy_buf_puts(&resp->body, "{\"ready\":true}");
        else
            get_types(resp);
        return true;
    }
    if (n == 1 && !strcmp(s[0], "_apply")) {
        set_route(resp, "/_apply");
        if (req->method != HY_HTTP_POST)
            not_allowed(resp, req->method_name, "POST");
        else
            apply(api, req, resp);
        return true;
    }
    if (hy_cp_inspect_handle(api, req, resp, s, n))
        return true;
    if (!strcmp(s[0], "meshes") && n >= 3) {
        const struct hy_rtype *t = user_type(s[2]);
        if (n > 4 || !t || t->scope != HY_SCOPE_MESH) {
            set_route(resp, "/meshes/{mesh}/{unknown}");
            unknown_type(resp, s[2]);
        } else if (n == 3) {
            set_route(resp, "/meshes/{mesh}/{plural}");
            many(api, req, resp, t, s[1]);
        } else {
            set_route(resp, "/meshes/{mesh}/{plural}/{name}");
            one(api, req, resp, t, s[1], s[3]);
        }
        return true;
    }
    const struct hy_rtype *t = user_type(s[0]);
    if (!t)
        return false; /* not ours: the binary may know the path */
    if (n == 1) {
        set_route(resp, "/{plural}");
        many(api, req, resp, t, NULL);
    } else if (n == 2 && t->scope == HY_SCOPE_GLOBAL) {
        set_route(resp, "/{plural}/{name}");
        one(api, req, resp, t, NULL, s[1]);
    } else {
        set_route(resp, "/{plural}/{unknown}");
        char details[300];
        snprintf(details, sizeof(details), "%s is mesh-scoped: use /meshes/{mesh}/%s/{name}",
                 t->name, t->plural);
        hy_http_error(resp, 404, "Not found", details, NULL);
    }
    return true;
}
