/* Conformance with Kuma's docs: every tests/policy/<dir>/<case>.yaml (a
 * Case header, then the Dataplanes and policies of one documented Kuma
 * example) is loaded into the policy engine as the zone loads a store
 * (hy_policy_world_put, hy_policy_select_all), and every line of
 * <case>.expect is checked against what the engine computes:
 * MeshTrafficPermission decisions through hy_policy_inbound_permissions
 * and hy_permit_decide (what the sidecar enforces), merged confs through
 * hy_policy_merge, selection order through the selected set.
 * tests/policy/README.md describes the format and lists every case.
 *
 * A line marked known-difference is where Hypha parts from Kuma on
 * purpose: it is reported, never failed. Every other line that differs
 * fails its case; fewer than MIN_CASES cases, a type without a case, or a
 * case the README does not list fails the suite. */
#include <ctype.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "codec.h"
#include "dataplane.pb-c.h"
#include "diag.h"
#include "dp.pb-c.h"
#include "dp_server.h"
#include "permit.h"
#include "policy.h"
#include "resource.h"
#include "poison.h"

#ifndef HY_POLICY_CASES
#error "HY_POLICY_CASES must name the tests/policy directory"
#endif

#define MIN_CASES 40   /* the suite's promise: at least this many doc examples */
#define MAX_PAIRS 32   /* entries of a header map */
#define MAX_TOKENS 64  /* words of one expectation */
#define LINE_MAX_ 2048 /* bytes of one header or expectation line */
#define DEFAULT_ZONE "zone-1"

/* The case directories: one per policy type (its lowercased name), and
 * "introduction" for the docs on policies in general (targetRef, merging),
 * whose cases name their type in the header. */
static const char *const dirs[] = {
    "meshtrafficpermission", "meshtimeout",     "meshretry",
    "meshcircuitbreaker",    "meshhealthcheck", "meshloadbalancingstrategy",
    "meshhttproute",         "meshtcproute",    "meshfaultinjection",
    "meshratelimit",         "meshmetric",      "meshaccesslog",
    "introduction",
};
#define NDIRS (sizeof(dirs) / sizeof(dirs[0]))

struct pair {
    char *key, *value; /* owned */
};

/* One case as found on disk. */
struct case_file {
    char *name; /* "meshtimeout/timeout-global" */
    char *yaml, *expect;
    size_t dir; /* index in dirs */
};

/* The run-wide tally printed at the end. */
static struct {
    size_t cases[NDIRS], lines, known, known_agree;
    char *readme;
} tally;

/* A case loaded: its header, its documents and the engine's world. */
struct kase {
    const char *path;
    char type[64]; /* the policy type of from/to/rules/policies lines */
    char zone[64]; /* the zone its Dataplanes run in */
    char doc[512]; /* the Kuma doc page it comes from */
    struct pair zones[MAX_PAIRS], origins[MAX_PAIRS];
    size_t nzones, norigins;
    struct hy_docs docs;          /* Dataplanes and policies, as decoded */
    struct hy_policy_world world; /* copies of the policies: what the zone loads */
};

static void pairs_fini(struct pair *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
}

static void kase_fini(struct kase *k)
{
    pairs_fini(k->zones, k->nzones);
    pairs_fini(k->origins, k->norigins);
    hy_docs_fini(&k->docs);
    hy_policy_world_fini(&k->world);
}

/* The whole file, NUL-terminated (caller frees); NULL when unreadable. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct hy_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (hy_buf_append(&b, chunk, n) < 0)
            break;
    fclose(f);
    if (!b.data)
        hy_buf_puts(&b, "");
    *len = b.len;
    return b.data;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static char *unquote(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        s[n - 1] = '\0';
        return s + 1;
    }
    return s;
}

/* Reads a flow map "{a: b, c: d}" (no nesting, no commas in values). */
static bool parse_map(char *s, struct pair *v, size_t *n)
{
    s = trim(s);
    size_t len = strlen(s);
    if (len < 2 || s[0] != '{' || s[len - 1] != '}')
        return false;
    s[len - 1] = '\0';
    for (char *save = NULL, *item = strtok_r(s + 1, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':');
        if (!colon || *n == MAX_PAIRS)
            return false;
        *colon = '\0';
        v[*n].key = strdup(unquote(trim(item)));
        v[*n].value = strdup(unquote(trim(colon + 1)));
        if (!v[*n].key || !v[*n].value)
            fail_msg("out of memory");
        (*n)++;
    }
    return true;
}

static const char *lookup(const struct pair *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].key, key))
            return v[i].value;
    return NULL;
}

static int type_index(const char *name)
{
    for (int t = 0; t < HY_POLICY_NTYPES; t++)
        if (!strcmp(hy_policy_type_names[t], name))
            return t;
    return -1;
}

/* The Case header: the first document, up to the first `---`. Its
 * `key: value` lines go to k; its bytes are blanked in text (newlines
 * kept) so the codec reads the resources with the file's own line
 * numbers. */
static void header_parse(struct kase *k, char *text, const char *dir_type)
{
    bool kind = false, example = false;
    snprintf(k->zone, sizeof(k->zone), "%s", DEFAULT_ZONE);
    snprintf(k->type, sizeof(k->type), "%s", dir_type ? dir_type : "");
    char *p = text;
    for (;;) {
        char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char line[LINE_MAX_];
        if (n >= sizeof(line))
            fail_msg("%s: header line too long", k->path);
        memcpy(line, p, n);
        line[n] = '\0';
        char *l = trim(line);
        if (!strcmp(l, "---"))
            break;
        if (l[0] && l[0] != '#') {
            char *colon = strchr(l, ':');
            if (!colon)
                fail_msg("%s: header line '%s' is not 'key: value'", k->path, l);
            *colon = '\0';
            char *key = trim(l), *value = unquote(trim(colon + 1));
            if (!strcmp(key, "kind")) {
                if (strcmp(value, "Case"))
                    fail_msg("%s: the header says kind: %s (want Case)", k->path, value);
                kind = true;
            } else if (!strcmp(key, "doc")) {
                if (strncmp(value, "https://kuma.io/docs/", 21))
                    fail_msg("%s: doc must be a page under https://kuma.io/docs/", k->path);
                snprintf(k->doc, sizeof(k->doc), "%s", value);
            } else if (!strcmp(key, "example")) {
                example = value[0] != '\0';
            } else if (!strcmp(key, "type")) {
                if (type_index(value) < 0)
                    fail_msg("%s: type %s is none of the engine's policy types", k->path, value);
                snprintf(k->type, sizeof(k->type), "%s", value);
            } else if (!strcmp(key, "zone")) {
                snprintf(k->zone, sizeof(k->zone), "%s", value);
            } else if (!strcmp(key, "zones")) {
                if (!parse_map(value, k->zones, &k->nzones))
                    fail_msg("%s: zones must be a map {DATAPLANE: ZONE, ...}", k->path);
            } else if (!strcmp(key, "origins")) {
                if (!parse_map(value, k->origins, &k->norigins))
                    fail_msg("%s: origins must be a map {POLICY: ZONE|global, ...}", k->path);
            } else if (strcmp(key, "note") && strcmp(key, "adapted")) {
                fail_msg("%s: header key '%s' not understood (kind, doc, example, type, zone, "
                         "zones, origins, note, adapted)",
                         k->path, key);
            }
        }
        if (!end)
            fail_msg("%s: no '---' ends the Case header", k->path);
        memset(p, ' ', n);
        p = end + 1;
    }
    if (!kind)
        fail_msg("%s: the header must say kind: Case", k->path);
    if (!k->doc[0] || !example)
        fail_msg("%s: the header must name its Kuma doc page (doc:) and example (example:)",
                 k->path);
    if (!k->type[0])
        fail_msg("%s: a case under introduction/ names its policy type (type:)", k->path);
}

static struct hy_resource *find(const struct kase *k, const char *type, const char *name)
{
    for (size_t i = 0; i < k->docs.n; i++) {
        struct hy_resource *r = k->docs.v[i].res;
        if (!strcmp(r->type->name, type) && !strcmp(r->meta->name, name))
            return r;
    }
    return NULL;
}

/* Decodes and validates the case's documents (as `hyphactl apply` would)
 * and puts a copy of every policy into the engine's world, with the origin
 * the header gives it (global unless named). */
static void kase_load(struct kase *k, const char *path, const char *dir_type)
{
    memset(k, 0, sizeof(*k));
    k->path = path;
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        fail_msg("%s: cannot read", path);
    header_parse(k, text, dir_type);
    struct hy_diag d = {.source = path};
    int rc = hy_codec_decode_resources(path, text, len, NULL, &k->docs, &d);
    if (rc == 0 && !hy_docs_validate(&k->docs, &d))
        rc = -1;
    free(text);
    char line[1024];
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s\n", hy_diag_format(&d, i, line, sizeof(line)));
    hy_diag_fini(&d);
    if (rc != 0)
        fail_msg("%s: the codec refused the case (causes above)", path);
    for (size_t i = 0; i < k->docs.n; i++) {
        struct hy_resource *r = k->docs.v[i].res;
        if (!strcmp(r->type->name, "Dataplane"))
            continue;
        if (type_index(r->type->name) < 0)
            fail_msg("%s: holds a %s: a case holds Dataplanes and the engine's policy types", path,
                     r->type->name);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(k->docs.v[j].res->type->name, r->type->name) &&
                !strcmp(k->docs.v[j].res->meta->name, r->meta->name) &&
                !strcmp(k->docs.v[j].res->meta->mesh, r->meta->mesh))
                fail_msg("%s: two %s named %s: the second would replace the first", path,
                         r->type->name, r->meta->name);
        struct hy_resource *c = hy_resource_dup(r);
        if (!c)
            fail_msg("out of memory");
        const char *o = lookup(k->origins, k->norigins, r->meta->name);
        free(c->origin);
        c->origin = strdup(o ? o : "global");
        if (!c->origin || hy_policy_world_put(&k->world, c) < 0)
            fail_msg("out of memory");
    }
    for (size_t i = 0; i < k->norigins; i++) {
        bool found = false;
        for (size_t j = 0; j < k->docs.n && !found; j++)
            found = strcmp(k->docs.v[j].res->type->name, "Dataplane") &&
                    !strcmp(k->docs.v[j].res->meta->name, k->origins[i].key);
        if (!found)
            fail_msg("%s: origins names %s, which is no policy of the case", path,
                     k->origins[i].key);
    }
    for (size_t i = 0; i < k->nzones; i++)
        if (!find(k, "Dataplane", k->zones[i].key))
            fail_msg("%s: zones names %s, which is no Dataplane of the case", path,
                     k->zones[i].key);
}

/* ----- expectations ----- */

/* Splits a line into words; a word runs over spaces inside its brackets
 * ({...}, [...]), so tag maps and JSON values are one word each. */
static size_t tokenize(char *s, char **tok, const char *where)
{
    size_t n = 0;
    while (*s) {
        while (isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        if (n == MAX_TOKENS)
            fail_msg("%s: more than %d words", where, MAX_TOKENS);
        tok[n++] = s;
        int depth = 0;
        for (; *s && (depth > 0 || !isspace((unsigned char)*s)); s++) {
            if (*s == '{' || *s == '[')
                depth++;
            else if ((*s == '}' || *s == ']') && depth > 0)
                depth--;
        }
        if (depth)
            fail_msg("%s: an unclosed bracket in '%s'", where, tok[n - 1]);
        if (*s)
            *s++ = '\0';
    }
    return n;
}

static const struct hy_resource *dataplane(const struct kase *k, const char *name,
                                           const char *where)
{
    const struct hy_resource *dp = find(k, "Dataplane", name);
    if (!dp)
        fail_msg("%s: no Dataplane %s in the case", where, name);
    return dp;
}

static const char *zone_of(const struct kase *k, const struct hy_resource *dp)
{
    const char *z = lookup(k->zones, k->nzones, dp->meta->name);
    return z ? z : k->zone;
}

/* "backend-1" or "backend-1:INBOUND" (an inbound's name, or the port of
 * one): the Dataplane and the index of the inbound; without one, the
 * Dataplane's only inbound. */
static const struct hy_resource *target(const struct kase *k, char *spec, size_t *inbound,
                                        const char *where)
{
    char *colon = strchr(spec, ':');
    if (colon)
        *colon = '\0';
    const struct hy_resource *dp = dataplane(k, spec, where);
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)dp->spec;
    size_t n = d->networking->n_inbound;
    if (!colon) {
        if (n != 1)
            fail_msg("%s: %s has %zu inbounds: name one (%s:NAME or %s:PORT)", where, spec, n, spec,
                     spec);
        *inbound = 0;
        return dp;
    }
    const char *in = colon + 1;
    for (size_t i = 0; i < n; i++)
        if (d->networking->inbound[i]->name && !strcmp(d->networking->inbound[i]->name, in)) {
            *inbound = i;
            return dp;
        }
    for (size_t i = 0; i < n; i++) {
        char port[16];
        snprintf(port, sizeof(port), "%u", d->networking->inbound[i]->port);
        if (!strcmp(port, in)) {
            *inbound = i;
            return dp;
        }
    }
    fail_msg("%s: %s has no inbound %s", where, spec, in);
    return NULL;
}

/* A caller, as its certificate shows it to the callee's sidecar. */
struct caller {
    struct hy_permit_peer peer; /* its tags */
    char spiffe[HY_ZONE_DP_URI_MAX];
    struct hy_policy_tag tags[HY_PERMIT_MAX_TAGS]; /* the same tags, for hy_policy_merge */
    struct hy_policy_tags view;
};

/* The words before "->": a Dataplane of the case (the SPIFFE ID and tags
 * the zone signs into its certificate, hy_zone_dp_identity_uris), a map
 * of tags {KEY: VALUE, ...} (kuma.io/ read as hypha.io/, as the codec
 * reads it), a SPIFFE ID spiffe://..., or several of these. */
static void caller_parse(const struct kase *k, char **tok, size_t n, struct caller *c,
                         const char *where)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(tok[i], "spiffe://", 9)) {
            snprintf(c->spiffe, sizeof(c->spiffe), "%s", tok[i]);
        } else if (tok[i][0] == '{') {
            struct pair v[MAX_PAIRS];
            size_t nv = 0;
            char copy[LINE_MAX_];
            snprintf(copy, sizeof(copy), "%s", tok[i]);
            if (!parse_map(copy, v, &nv))
                fail_msg("%s: caller tags %s are not a map {KEY: VALUE, ...}", where, tok[i]);
            for (size_t j = 0; j < nv; j++) {
                char key[HY_CODEC_MAX_KEY];
                if (!strncmp(v[j].key, "kuma.io/", 8))
                    snprintf(key, sizeof(key), "hypha.io/%s", v[j].key + 8);
                else
                    snprintf(key, sizeof(key), "%s", v[j].key);
                hy_permit_peer_add(&c->peer, key, v[j].value);
            }
            pairs_fini(v, nv);
        } else {
            const struct hy_resource *dp = dataplane(k, tok[i], where);
            char **uris;
            size_t nu;
            if (hy_zone_dp_identity_uris(dp, zone_of(k, dp), &uris, &nu) < 0)
                fail_msg("out of memory");
            for (size_t j = 0; j < nu; j++) {
                if (!strncmp(uris[j], "spiffe://", 9) && !c->spiffe[0])
                    snprintf(c->spiffe, sizeof(c->spiffe), "%s", uris[j]);
                hy_permit_peer_add_uri(&c->peer, uris[j]);
                free(uris[j]);
            }
            free(uris);
        }
    }
    for (size_t i = 0; i < c->peer.n; i++)
        c->tags[i] = (struct hy_policy_tag){c->peer.key[i], c->peer.value[i]};
    c->view = (struct hy_policy_tags){c->tags, c->peer.n};
}

/* One value of field f at p, as Kuma's YAML writes it: durations "1m30s",
 * enums by name, strings bare, messages as compact JSON. */
static void format_one(struct hy_buf *out, const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        hy_buf_puts(out, *(char *const *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        hy_buf_puts(out, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        if (v)
            hy_buf_puts(out, v->name);
        else
            hy_buf_printf(out, "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        hy_buf_printf(out, "%d", *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        hy_buf_printf(out, "%u", *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        hy_buf_printf(out, "%lld", (long long)*(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        hy_buf_printf(out, "%llu", (unsigned long long)*(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        hy_buf_printf(out, "%g", (double)*(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        hy_buf_printf(out, "%g", *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        hy_buf_puts(out, "<bytes>");
        break;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m->descriptor == &hypha__v1__duration__descriptor) {
            const Hypha__V1__Duration *d = (const void *)m;
            char t[64];
            hy_duration_format(d->seconds, d->nanos, t, sizeof(t));
            hy_buf_puts(out, t);
        } else {
            hy_codec_encode_message(m, HY_FORMAT_JSON, out);
        }
        break;
    }
    }
}

/* The value at path ("http.backOff.baseInterval") of m, or "none" when no
 * entry set it (m NULL: nothing matched). */
static void value_at(const ProtobufCMessage *m, const char *path, struct hy_buf *out,
                     const char *where)
{
    char comp[HY_POLICY_PATH_MAX];
    while (m) {
        size_t n = strcspn(path, ".");
        snprintf(comp, sizeof(comp), "%.*s", (int)n, path);
        const ProtobufCFieldDescriptor *f = NULL;
        for (unsigned i = 0; i < m->descriptor->n_fields && !f; i++) {
            char camel[128];
            hy_codec_camel(m->descriptor->fields[i].name, camel, sizeof(camel));
            if (!strcmp(camel, comp))
                f = &m->descriptor->fields[i];
        }
        if (!f)
            fail_msg("%s: %s is no field of %s", where, comp, m->descriptor->name);
        if (!hy_codec_field_set(m, f))
            break;
        const char *p = (const char *)m + f->offset;
        if (path[n] == '.') {
            if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
                fail_msg("%s: %s is not a message", where, comp);
            m = *(ProtobufCMessage *const *)p;
            path += n + 1;
            continue;
        }
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            format_one(out, f, p);
            return;
        }
        size_t count = *(const size_t *)((const char *)m + f->quantifier_offset);
        const char *arr = *(const char *const *)p;
        hy_buf_puts(out, "[");
        for (size_t i = 0; i < count; i++) {
            if (i)
                hy_buf_puts(out, ", ");
            format_one(out, f, arr + i * hy_codec_scalar_size(f->type));
        }
        hy_buf_puts(out, "]");
        return;
    }
    hy_buf_puts(out, "none");
}

/* The words from..to joined by one space. */
static void join(char **tok, size_t from, size_t to, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = from; i < to && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s", i > from ? " " : "", tok[i]);
}

static size_t index_of(char **tok, size_t n, const char *word, size_t from)
{
    for (size_t i = from; i < n; i++)
        if (!strcmp(tok[i], word))
            return i;
    return SIZE_MAX;
}

/* What a line checks and what the engine said. */
struct outcome {
    char want[LINE_MAX_], got[LINE_MAX_];
    char want_origin[512], got_origin[512];
    bool check_origin;
};

/* The policies of the world selecting the proxy, one set per type. */
struct selection {
    struct hy_policy_set sel[HY_POLICY_NTYPES];
};

static void select_for(const struct kase *k, const struct hy_resource *dp, struct selection *s)
{
    struct hy_policy_proxy p = {dp, zone_of(k, dp)};
    assert_int_equal(hy_policy_select_all(&k->world, &p, s->sel), 0);
}

/* "MeshTrafficPermission/NAME from[1]" reads "NAME from[1]"; none: "none". */
static void origin_of_decision(const char *o, char *buf, size_t size)
{
    const char *slash = o ? strchr(o, '/') : NULL;
    snprintf(buf, size, "%s", slash ? slash + 1 : "none");
}

static void origin_of_conf(const struct hy_policy_origin *o, char *buf, size_t size)
{
    if (!o)
        snprintf(buf, size, "none");
    else
        snprintf(buf, size, "%s %s[%zu]", o->r->meta->name, o->section, o->index);
}

/* allow|deny|shadow CALLER... -> DATAPLANE[:INBOUND] [by ORIGIN] */
static void run_permit(const struct kase *k, char **tok, size_t n, struct outcome *out,
                       const char *where)
{
    size_t arrow = index_of(tok, n, "->", 1);
    if (arrow == SIZE_MAX || arrow + 1 >= n)
        fail_msg("%s: want '%s CALLER -> DATAPLANE[:INBOUND] [by ORIGIN]'", where, tok[0]);
    size_t by = index_of(tok, n, "by", arrow + 2);
    if (by != arrow + 2 && arrow + 2 != n)
        fail_msg("%s: after the Dataplane only 'by ORIGIN' may follow", where);
    struct caller *c = malloc(sizeof(*c));
    assert_non_null(c);
    caller_parse(k, tok + 1, arrow - 1, c, where);
    size_t inbound;
    const struct hy_resource *dp = target(k, tok[arrow + 1], &inbound, where);
    struct selection s;
    select_for(k, dp, &s);
    Hypha__V1__DpInbound *in = malloc(sizeof(*in));
    assert_non_null(in);
    hypha__v1__dp_inbound__init(in);
    assert_int_equal(hy_policy_inbound_permissions(&s.sel[HY_POLICY_MTP], inbound, in), 0);
    struct hy_permit_decision d;
    hy_permit_decide(in, c->spiffe, &c->peer, &d);
    snprintf(out->want, sizeof(out->want), "%s", tok[0]);
    snprintf(out->got, sizeof(out->got), "%s",
             d.result == HY_PERMIT_ALLOW  ? "allow"
             : d.result == HY_PERMIT_DENY ? "deny"
                                          : "shadow");
    origin_of_decision(d.origin, out->got_origin, sizeof(out->got_origin));
    if (by != SIZE_MAX) {
        out->check_origin = true;
        join(tok, by + 1, n, out->want_origin, sizeof(out->want_origin));
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
    hy_policy_sets_fini(s.sel);
    free(c);
}

/* to DATAPLANE -> SERVICE PATH = VALUE [by ORIGIN]
 * from CALLER... -> DATAPLANE[:INBOUND] PATH = VALUE [by ORIGIN]
 * rules DATAPLANE[:INBOUND] PATH = VALUE [by ORIGIN]
 * metric DATAPLANE PATH = VALUE [by ORIGIN]   (MeshMetric's one top-level default) */
static void run_conf(const struct kase *k, char **tok, size_t n, struct outcome *out,
                     const char *where)
{
    const char *section = tok[0];
    size_t eq = index_of(tok, n, "=", 1);
    if (eq == SIZE_MAX || eq < 2 || eq + 1 >= n)
        fail_msg("%s: want '%s ... PATH = VALUE [by ORIGIN]'", where, section);
    const char *path = tok[eq - 1];
    size_t by = index_of(tok, n, "by", eq + 1);
    size_t value_end = by == SIZE_MAX ? n : by;
    if (value_end == eq + 1)
        fail_msg("%s: no value after '='", where);
    join(tok, eq + 1, value_end, out->want, sizeof(out->want));
    if (by != SIZE_MAX) {
        out->check_origin = true;
        join(tok, by + 1, n, out->want_origin, sizeof(out->want_origin));
    } else if (!strcmp(out->want, "none")) {
        out->check_origin = true; /* no entry set it: no origin either */
        snprintf(out->want_origin, sizeof(out->want_origin), "none");
    }
    int type = type_index(k->type);
    struct caller *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    const struct hy_resource *dp;
    size_t inbound = SIZE_MAX;
    struct hy_policy_tag dest[1];
    struct hy_policy_tags peer = {NULL, 0};
    if (!strcmp(section, "to")) {
        if (eq != 5 || strcmp(tok[2], "->"))
            fail_msg("%s: want 'to DATAPLANE -> SERVICE PATH = VALUE'", where);
        dp = dataplane(k, tok[1], where);
        dest[0] = (struct hy_policy_tag){HY_TAG_SERVICE, tok[3]};
        peer = (struct hy_policy_tags){dest, 1};
    } else if (!strcmp(section, "from")) {
        size_t arrow = index_of(tok, eq, "->", 1);
        if (arrow == SIZE_MAX || arrow + 3 != eq)
            fail_msg("%s: want 'from CALLER -> DATAPLANE[:INBOUND] PATH = VALUE'", where);
        caller_parse(k, tok + 1, arrow - 1, c, where);
        dp = target(k, tok[arrow + 1], &inbound, where);
        peer = c->view;
    } else if (!strcmp(section, "metric")) {
        if (eq != 3)
            fail_msg("%s: want 'metric DATAPLANE PATH = VALUE'", where);
        dp = dataplane(k, tok[1], where);
        type = HY_POLICY_METRIC;
    } else {
        if (eq != 3)
            fail_msg("%s: want 'rules DATAPLANE[:INBOUND] PATH = VALUE'", where);
        dp = target(k, tok[1], &inbound, where);
    }
    struct selection s;
    select_for(k, dp, &s);
    struct hy_policy_conf conf;
    if (type == HY_POLICY_METRIC)
        assert_int_equal(hy_policy_metric_merge(&s.sel[type], &conf), 0);
    else
        assert_int_equal(hy_policy_merge(&s.sel[type], section, inbound, &peer, &conf), 0);
    struct hy_buf b = {0};
    value_at(conf.conf, path, &b, where);
    snprintf(out->got, sizeof(out->got), "%s", b.data ? b.data : "");
    hy_buf_fini(&b);
    origin_of_conf(hy_policy_conf_origin(&conf, path), out->got_origin, sizeof(out->got_origin));
    hy_policy_conf_fini(&conf);
    hy_policy_sets_fini(s.sel);
    free(c);
}

/* policies DATAPLANE[:INBOUND] = NAME, NAME, ... (or none): the policies of
 * the case's type selecting the Dataplane (that inbound), in merge order,
 * least specific first. */
static void run_policies(const struct kase *k, char **tok, size_t n, struct outcome *out,
                         const char *where)
{
    if (n < 4 || strcmp(tok[2], "="))
        fail_msg("%s: want 'policies DATAPLANE[:INBOUND] = NAME, NAME, ...'", where);
    char spec[256];
    snprintf(spec, sizeof(spec), "%s", tok[1]);
    bool one = strchr(spec, ':') != NULL;
    size_t inbound = 0;
    const struct hy_resource *dp =
        one ? target(k, spec, &inbound, where) : dataplane(k, spec, where);
    join(tok, 3, n, out->want, sizeof(out->want));
    struct selection s;
    select_for(k, dp, &s);
    const struct hy_policy_set *set = &s.sel[type_index(k->type)];
    size_t off = 0;
    out->got[0] = '\0';
    for (size_t i = 0; i < set->n; i++) {
        if (one && !(set->v[i].inbounds & (1ull << inbound)))
            continue;
        off += (size_t)snprintf(out->got + off, sizeof(out->got) - off, "%s%s", off ? ", " : "",
                                set->v[i].r->meta->name);
    }
    if (!off)
        snprintf(out->got, sizeof(out->got), "none");
    hy_policy_sets_fini(s.sel);
}

/* ----- L7: what the sidecar gets (cp/policy_l7.c) ----- */

static void put_dur(struct hy_buf *b, const Hypha__V1__Duration *d)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
        &hypha__v1__dp_http_fault__descriptor, "delay");
    format_one(b, f, &d);
}

/* A backendRef: "svc", or "svc{k:v,k2:v2}" for a MeshServiceSubset. */
static void put_ref(struct hy_buf *b, const Hypha__V1__DpBackendRef *r)
{
    hy_buf_puts(b, r->service);
    for (size_t i = 0; i < r->n_tags; i++)
        hy_buf_printf(b, "%s%s:%s%s", i ? "," : "{", r->tags[i]->key, r->tags[i]->value,
                      i + 1 == r->n_tags ? "}" : "");
}

/* "Exact /a GET h1 q1 -> svc:90 svc2:10 +URLRewrite" per route, " | "
 * between routes; "*" for the outbound's own service. */
static void describe_routes(const Hypha__V1__DpOutbound *o, struct hy_buf *b)
{
    for (size_t i = 0; i < o->n_http_routes; i++) {
        const Hypha__V1__DpHttpRoute *r = o->http_routes[i];
        hy_buf_puts(b, i ? " | " : "");
        const Hypha__V1__DpHttpMatch *m = r->n_matches ? r->matches[0] : NULL;
        if (m && m->path_type)
            hy_buf_printf(b, "%s %s ", m->path_type, m->path);
        else
            hy_buf_puts(b, "any ");
        if (m && m->method)
            hy_buf_printf(b, "%s ", m->method);
        if (m && m->n_headers)
            hy_buf_printf(b, "h%zu ", m->n_headers);
        if (m && m->n_query_params)
            hy_buf_printf(b, "q%zu ", m->n_query_params);
        hy_buf_puts(b, "->");
        if (!r->n_backends)
            hy_buf_puts(b, " *");
        for (size_t k = 0; k < r->n_backends; k++) {
            hy_buf_puts(b, " ");
            put_ref(b, r->backends[k]);
            hy_buf_printf(b, ":%u", r->backends[k]->weight);
        }
        for (size_t k = 0; k < r->n_filters; k++)
            hy_buf_printf(b, " +%s", r->filters[k]->type);
    }
    if (!o->n_http_routes)
        hy_buf_puts(b, "none");
}

/* routes DATAPLANE -> SERVICE = ROUTE | ROUTE ...   (MeshHTTPRoute)
 * tcp DATAPLANE -> SERVICE = SVC:WEIGHT ...        (MeshTCPRoute) */
static void run_routes(const struct kase *k, char **tok, size_t n, struct outcome *out,
                       const char *where)
{
    if (n < 6 || strcmp(tok[2], "->") || strcmp(tok[4], "="))
        fail_msg("%s: want '%s DATAPLANE -> SERVICE = ...'", where, tok[0]);
    const struct hy_resource *dp = dataplane(k, tok[1], where);
    join(tok, 5, n, out->want, sizeof(out->want));
    struct selection s;
    select_for(k, dp, &s);
    Hypha__V1__DpOutbound *o = malloc(sizeof(*o));
    assert_non_null(o);
    hypha__v1__dp_outbound__init(o);
    struct hy_buf b = {0};
    if (!strcmp(tok[0], "routes")) {
        assert_int_equal(hy_policy_http_routes(&s.sel[HY_POLICY_HTTP_ROUTE], tok[3], o), 0);
        describe_routes(o, &b);
    } else {
        assert_int_equal(hy_policy_tcp_backends(&s.sel[HY_POLICY_TCP_ROUTE], tok[3], o), 0);
        for (size_t i = 0; i < o->n_tcp_backends; i++) {
            hy_buf_puts(&b, i ? " " : "");
            put_ref(&b, o->tcp_backends[i]);
            hy_buf_printf(&b, ":%u", o->tcp_backends[i]->weight);
        }
        if (!o->n_tcp_backends)
            hy_buf_puts(&b, "none");
    }
    snprintf(out->got, sizeof(out->got), "%s", b.data ? b.data : "");
    hy_buf_fini(&b);
    protobuf_c_message_free_unpacked(&o->base, NULL);
    hy_policy_sets_fini(s.sel);
}

/* Does the caller carry every tag of the entry (a DpCallerFaults or
 * DpCallerRateLimit map)? */
static bool carries_all(const struct caller *c, size_t n, Hypha__V1__DpPermission__TagsEntry **t)
{
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 0; !found && k < c->view.n; k++)
            found =
                !strcmp(c->view.v[k].key, t[i]->key) && !strcmp(c->view.v[k].value, t[i]->value);
        if (!found)
            return false;
    }
    return true;
}

/* faults CALLER -> DATAPLANE[:INBOUND] = FAULT; FAULT ... [by ORIGIN]
 * ratelimit CALLER -> DATAPLANE[:INBOUND] = http N/INTERVAL [STATUS] tcp N/INTERVAL [by ORIGIN]
 * what the sidecar applies to that caller: the last entry whose tags it
 * carries (sidecar/l7_fault.h, l7_limit.h). */
static void run_inbound_l7(const struct kase *k, char **tok, size_t n, struct outcome *out,
                           const char *where)
{
    size_t arrow = index_of(tok, n, "->", 1), eq = index_of(tok, n, "=", 1);
    if (arrow == SIZE_MAX || eq != arrow + 2 || eq + 1 >= n)
        fail_msg("%s: want '%s CALLER -> DATAPLANE[:INBOUND] = ... [by ORIGIN]'", where, tok[0]);
    size_t by = index_of(tok, n, "by", eq + 1);
    join(tok, eq + 1, by == SIZE_MAX ? n : by, out->want, sizeof(out->want));
    if (by != SIZE_MAX) {
        out->check_origin = true;
        join(tok, by + 1, n, out->want_origin, sizeof(out->want_origin));
    }
    struct caller *c = malloc(sizeof(*c));
    assert_non_null(c);
    caller_parse(k, tok + 1, arrow - 1, c, where);
    size_t inbound;
    const struct hy_resource *dp = target(k, tok[arrow + 1], &inbound, where);
    struct selection s;
    select_for(k, dp, &s);
    Hypha__V1__DpInbound *in = malloc(sizeof(*in));
    assert_non_null(in);
    hypha__v1__dp_inbound__init(in);
    struct hy_buf b = {0};
    const char *origin = NULL;
    if (!strcmp(tok[0], "faults")) {
        assert_int_equal(hy_policy_inbound_faults(&s.sel[HY_POLICY_FAULT], inbound, in), 0);
        const Hypha__V1__DpCallerFaults *f = NULL;
        for (size_t i = 0; i < in->n_faults; i++)
            if (carries_all(c, in->faults[i]->n_tags, (void *)in->faults[i]->tags))
                f = in->faults[i];
        for (size_t i = 0; f && i < f->n_http; i++) {
            const Hypha__V1__DpHttpFault *h = f->http[i];
            hy_buf_puts(&b, i ? "; " : "");
            const char *sep = "";
            if (h->abort_status) {
                hy_buf_printf(&b, "abort %u %uppm", h->abort_status, h->abort_per_million);
                sep = " ";
            }
            if (h->delay) {
                hy_buf_printf(&b, "%sdelay ", sep);
                put_dur(&b, h->delay);
                hy_buf_printf(&b, " %uppm", h->delay_per_million);
                sep = " ";
            }
            if (h->has_bandwidth_bytes_per_s)
                hy_buf_printf(&b, "%sbandwidth %uB/s %uppm", sep, h->bandwidth_bytes_per_s,
                              h->bandwidth_per_million);
        }
        origin = f ? f->origin : NULL;
    } else {
        assert_int_equal(hy_policy_inbound_rate_limits(&s.sel[HY_POLICY_RATE_LIMIT], inbound, in),
                         0);
        const Hypha__V1__DpCallerRateLimit *l = NULL;
        for (size_t i = 0; i < in->n_rate_limits; i++)
            if (carries_all(c, in->rate_limits[i]->n_tags, (void *)in->rate_limits[i]->tags))
                l = in->rate_limits[i];
        if (l) {
            hy_buf_printf(&b, "http %u/", l->http_requests);
            if (l->http_interval)
                put_dur(&b, l->http_interval);
            else
                hy_buf_puts(&b, "-");
            if (l->has_on_limit_status)
                hy_buf_printf(&b, " %u", l->on_limit_status);
            for (size_t i = 0; l->on_limit_headers && i < l->on_limit_headers->n_set; i++)
                hy_buf_printf(&b, " %s=%s", l->on_limit_headers->set[i]->name,
                              l->on_limit_headers->set[i]->value);
            hy_buf_printf(&b, " tcp %u/", l->tcp_connections);
            if (l->tcp_interval)
                put_dur(&b, l->tcp_interval);
            else
                hy_buf_puts(&b, "-");
        }
        origin = l ? l->origin : NULL;
    }
    snprintf(out->got, sizeof(out->got), "%s", b.data ? b.data : "none");
    origin_of_decision(origin, out->got_origin, sizeof(out->got_origin));
    hy_buf_fini(&b);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    hy_policy_sets_fini(s.sel);
    free(c);
}

static bool agrees(const struct outcome *o)
{
    return !strcmp(o->want, o->got) && (!o->check_origin || !strcmp(o->want_origin, o->got_origin));
}

static void run_case(void **state)
{
    const struct case_file *c = *state;
    /* a type's directory: its lines are of that type unless the header says */
    const char *dir_type = NULL;
    for (int t = 0; t < HY_POLICY_NTYPES; t++) {
        char lower[64];
        snprintf(lower, sizeof(lower), "%s", hy_policy_type_names[t]);
        for (char *q = lower; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        if (!strcmp(lower, dirs[c->dir]))
            dir_type = hy_policy_type_names[t];
    }
    struct kase k;
    kase_load(&k, c->yaml, dir_type);
    size_t len;
    char *text = slurp(c->expect, &len);
    if (!text)
        fail_msg("%s: no expectations (%s)", c->yaml, c->expect);
    size_t checked = 0, failed = 0, lineno = 0;
    bool comment_before = false;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char copy[LINE_MAX_], where[600];
        snprintf(copy, sizeof(copy), "%s", trim(line));
        snprintf(where, sizeof(where), "%s:%zu", c->expect, lineno);
        char *l = trim(line);
        if (!l[0]) {
            comment_before = false;
            continue;
        }
        if (l[0] == '#') {
            comment_before = true;
            continue;
        }
        char *tok[MAX_TOKENS];
        size_t n = tokenize(l, tok, where);
        bool known = !strcmp(tok[0], "known-difference");
        if (known) {
            if (!comment_before)
                fail_msg("%s: a known-difference line follows the comment that explains it", where);
            memmove(tok, tok + 1, (n - 1) * sizeof(*tok));
            n--;
        }
        comment_before = false;
        if (!n)
            fail_msg("%s: nothing to check", where);
        struct outcome o;
        memset(&o, 0, sizeof(o));
        if (!strcmp(tok[0], "allow") || !strcmp(tok[0], "deny") || !strcmp(tok[0], "shadow"))
            run_permit(&k, tok, n, &o, where);
        else if (!strcmp(tok[0], "to") || !strcmp(tok[0], "from") || !strcmp(tok[0], "rules") ||
                 !strcmp(tok[0], "metric"))
            run_conf(&k, tok, n, &o, where);
        else if (!strcmp(tok[0], "policies"))
            run_policies(&k, tok, n, &o, where);
        else if (!strcmp(tok[0], "routes") || !strcmp(tok[0], "tcp"))
            run_routes(&k, tok, n, &o, where);
        else if (!strcmp(tok[0], "faults") || !strcmp(tok[0], "ratelimit"))
            run_inbound_l7(&k, tok, n, &o, where);
        else
            fail_msg("%s: '%s' is none of allow, deny, shadow, to, from, rules, metric, "
                     "policies, routes, tcp, faults, ratelimit",
                     where, tok[0]);
        checked++;
        tally.lines++;
        bool ok = agrees(&o);
        if (known) {
            tally.known++;
            if (ok) {
                tally.known_agree++;
                fprintf(stderr,
                        "NOTE %s: marked known-difference, but the engine now gives what "
                        "Kuma does (%s): drop the mark\n",
                        where, o.got);
            } else {
                fprintf(stderr, "KNOWN DIFFERENCE %s\n  %s\n  hypha: %s%s%s\n  kuma:  %s%s%s\n",
                        where, copy, o.got, o.got_origin[0] ? " by " : "", o.got_origin, o.want,
                        o.check_origin ? " by " : "", o.check_origin ? o.want_origin : "");
            }
            continue;
        }
        if (!ok) {
            failed++;
            fprintf(stderr, "FAIL %s\n  %s\n  got:  %s%s%s\n  want: %s%s%s\n", where, copy, o.got,
                    o.got_origin[0] ? " by " : "", o.got_origin, o.want,
                    o.check_origin ? " by " : "", o.check_origin ? o.want_origin : "");
        }
    }
    free(text);
    char doc[sizeof(k.doc)];
    snprintf(doc, sizeof(doc), "%s", k.doc);
    kase_fini(&k);
    if (checked == 0)
        fail_msg("%s: no expectation lines", c->expect);
    if (failed)
        fail_msg("%s: %zu of %zu expectations differ from Kuma's docs", c->yaml, failed, checked);
    if (tally.readme) {
        char name[300];
        snprintf(name, sizeof(name), "`%s`", c->name);
        if (!strstr(tally.readme, name) || !strstr(tally.readme, doc))
            fail_msg("%s: tests/policy/README.md must list %s with its doc page %s", c->yaml, name,
                     doc);
    }
}

/* ----- finding the cases ----- */

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct case_file *)a)->name, ((const struct case_file *)b)->name);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static char *path_join(const char *a, const char *b, const char *c)
{
    struct hy_buf p = {0};
    hy_buf_printf(&p, "%s/%s%s", a, b, c);
    return p.data;
}

static bool exists(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Every case under HY_POLICY_CASES/<dir>/, sorted by name. A .yaml
 * without its .expect, or the other way round, is an error. */
static size_t cases_find(struct case_file **out)
{
    struct case_file *v = NULL;
    size_t n = 0;
    for (size_t t = 0; t < NDIRS; t++) {
        char *dir = path_join(HY_POLICY_CASES, dirs[t], "");
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "%s: missing (every type has its directory)\n", dir);
            exit(1);
        }
        struct dirent *ent;
        while ((ent = readdir(d))) {
            bool yaml = ends_with(ent->d_name, ".yaml"), expect = ends_with(ent->d_name, ".expect");
            if (!yaml && !expect)
                continue;
            size_t stem = strlen(ent->d_name) - (yaml ? 5 : 7);
            char base[256];
            snprintf(base, sizeof(base), "%.*s", (int)stem, ent->d_name);
            char *yp = path_join(dir, base, ".yaml"), *ep = path_join(dir, base, ".expect");
            if (!exists(yaml ? ep : yp)) {
                fprintf(stderr, "%s: has no %s\n", yaml ? yp : ep, yaml ? ".expect" : ".yaml");
                exit(1);
            }
            if (!yaml) {
                free(yp);
                free(ep);
                continue;
            }
            struct case_file *nv = realloc(v, (n + 1) * sizeof(*v));
            if (!nv)
                exit(1);
            v = nv;
            v[n] = (struct case_file){path_join(dirs[t], base, ""), yp, ep, t};
            tally.cases[t]++;
            n++;
        }
        closedir(d);
        free(dir);
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), by_name);
    *out = v;
    return n;
}

/* The suite keeps its promise: enough cases, every type represented. */
static void suite_shape(void **state)
{
    size_t n = *(size_t *)*state;
    if (n < MIN_CASES)
        fail_msg("%zu cases under %s; the suite promises at least %d", n, HY_POLICY_CASES,
                 MIN_CASES);
    for (size_t t = 0; t < NDIRS; t++)
        if (!tally.cases[t])
            fail_msg("no case under %s/", dirs[t]);
    if (!tally.readme)
        fail_msg("%s/README.md is missing", HY_POLICY_CASES);
    /* and the README's table lists no case that is not here: one row per
     * case ("| `dir/case` | ..."), each case checked above to have its row */
    size_t rows = 0;
    for (const char *p = tally.readme; (p = strstr(p, "\n| `")); p++)
        rows++;
    if (rows != n)
        fail_msg("%s/README.md lists %zu cases, but %zu are there: a row names a missing case",
                 HY_POLICY_CASES, rows, n);
}

int main(void)
{
    size_t len;
    char *readme_path = path_join(HY_POLICY_CASES, "README.md", "");
    tally.readme = slurp(readme_path, &len);
    free(readme_path);
    struct case_file *cases;
    static size_t count;
    count = cases_find(&cases);
    struct CMUnitTest *tests = calloc(count + 1, sizeof(*tests));
    if (!tests)
        return 1;
    tests[0] = (struct CMUnitTest){"suite_shape", suite_shape, NULL, NULL, &count};
    for (size_t i = 0; i < count; i++)
        tests[i + 1] = (struct CMUnitTest){cases[i].name, run_case, NULL, NULL, &cases[i]};
    int rc = _cmocka_run_group_tests("policy_conformance", tests, count + 1, NULL, NULL);
    fprintf(stderr, "policy conformance: %zu cases (", count);
    for (size_t t = 0; t < NDIRS; t++)
        fprintf(stderr, "%s%s %zu", t ? ", " : "", dirs[t], tally.cases[t]);
    fprintf(stderr, "), %zu expectations, %zu known differences", tally.lines, tally.known);
    if (tally.known_agree)
        fprintf(stderr, " (%zu of them now agree: drop their marks)", tally.known_agree);
    fprintf(stderr, "\n");
    for (size_t i = 0; i < count; i++) {
        free(cases[i].name);
        free(cases[i].yaml);
        free(cases[i].expect);
    }
    free(cases);
    free(tests);
    free(tally.readme);
    return rc;
}
