/* Decoder half of the generic codec: walks a YAML node tree alongside a
 * protobuf-c descriptor and fills the message. Every problem names the
 * field path and line:column, and what was expected. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "codec.h"
#include "codec_int.h"
#include "codec_tree.h"
#include "error.h"
#include "poison.h"

struct dctx {
    struct hy_diag *diag;
    char path[1024];
    size_t plen;
    struct hy_pos *pos; /* positions of the document being decoded */
    size_t npos, cappos;
};

static void fail(struct dctx *c, const struct hy_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct dctx *c, const struct hy_node *n, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hy_diag_add(c->diag, n ? n->line : 0, n ? n->col : 0, c->path, "%s", msg);
}

/* path handling: push ".name" or "[i]", pop back to the saved length */
static size_t path_push(struct dctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push(struct dctx *c, const char *fmt, ...)
{
    size_t saved = c->plen;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen += (size_t)n;
    if (c->plen >= sizeof(c->path))
        c->plen = sizeof(c->path) - 1;
    if (c->plen > 0 && c->path[0] == '.') { /* no leading dot at the top level */
        memmove(c->path, c->path + 1, c->plen);
        c->plen--;
    }
    return saved;
}

static void path_pop(struct dctx *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = '\0';
}

static void record_pos(struct dctx *c, const struct hy_node *n)
{
    if (c->npos == c->cappos) {
        size_t cap = c->cappos ? c->cappos * 2 : 32;
        struct hy_pos *p = realloc(c->pos, cap * sizeof(*p));
        if (!p)
            return; /* positions are a convenience: lose them, not the decode */
        c->pos = p;
        c->cappos = cap;
    }
    char *path = strdup(c->path);
    if (!path)
        return;
    c->pos[c->npos++] = (struct hy_pos){path, n->line, n->col};
}

/* ----- field lookup ----- */

const ProtobufCFieldDescriptor *hy_codec_find_field(const ProtobufCMessageDescriptor *d,
                                                    const char *key)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const char *name = d->fields[i].name;
        if (strcmp(name, key) == 0 || hy_codec_camel_eq(name, key))
            return &d->fields[i];
    }
    return NULL;
}

bool hy_codec_camel_eq(const char *snake, const char *camel)
{
    for (;;) {
        char s = *snake++;
        if (s == '_') {
            s = *snake++;
            if (s >= 'a' && s <= 'z')
                s = (char)(s - 'a' + 'A');
        }
        if (s != *camel++)
            return false;
        if (!s)
            return true;
    }
}

void hy_codec_camel(const char *snake, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = snake; *p && o + 1 < size; p++) {
        if (*p == '_' && p[1]) {
            p++;
            out[o++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* Appends the camelCase names of d's fields to the list in buf. */
static void field_list(const ProtobufCMessageDescriptor *d, char *buf, size_t size)
{
    size_t off = strlen(buf);
    for (unsigned i = 0; i < d->n_fields && off < size; i++) {
        char camel[128];
        hy_codec_camel(d->fields[i].name, camel, sizeof(camel));
        off += (size_t)snprintf(buf + off, size - off, "%s%s", off ? ", " : "", camel);
    }
}

bool hy_codec_is_map_entry(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED)
        return false;
    const ProtobufCMessageDescriptor *d = hy_codec_msgdesc(f);
    size_t nl = strlen(d->short_name);
    return d->n_fields == 2 && nl > 5 && strcmp(d->short_name + nl - 5, "Entry") == 0 &&
           strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

/* ----- scalars ----- */

size_t hy_codec_scalar_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default:
        return 4; /* int32, sint32, sfixed32, uint32, fixed32, float, enum */
    }
}

static int decode_message(struct dctx *c, const struct hy_node *n,
                          const ProtobufCMessageDescriptor *d, ProtobufCMessage *m);

static const char *type_word(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return "true or false";
    case PROTOBUF_C_TYPE_STRING:
        return "a string";
    case PROTOBUF_C_TYPE_BYTES:
        return "base64 text";
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return "a number";
    case PROTOBUF_C_TYPE_MESSAGE:
        if (f->descriptor == &hypha__v1__duration__descriptor)
            return "a duration like 500ms, 5s, 1m30s, 24h, 1d";
        if (f->descriptor == &hypha__v1__timestamp__descriptor)
            return "an RFC 3339 time like 2026-11-26T06:00:00Z";
        return "a mapping";
    default:
        return "an integer";
    }
}

static const char *kind_word(const struct hy_node *n)
{
    return n->kind == HY_NODE_MAP ? "a mapping" : n->kind == HY_NODE_SEQ ? "a list" : "a scalar";
}

static int decode_int(struct dctx *c, const struct hy_node *n, const ProtobufCFieldDescriptor *f,
                      void *out)
{
    const char *s = n->value;
    char *end;
    errno = 0;
    bool is_signed = f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_SINT32 ||
                     f->type == PROTOBUF_C_TYPE_SFIXED32 || f->type == PROTOBUF_C_TYPE_INT64 ||
                     f->type == PROTOBUF_C_TYPE_SINT64 || f->type == PROTOBUF_C_TYPE_SFIXED64;
    bool wide = hy_codec_scalar_size(f->type) == 8;
    if (!s[0] || (!is_signed && s[0] == '-') || s[0] == ' ') {
        fail(c, n, "\"%s\" is not %s", s, is_signed ? "an integer" : "a non-negative integer");
        return HY_EINVAL;
    }
    if (is_signed) {
        long long v = strtoll(s, &end, 10);
        if (*end || errno) {
            fail(c, n, "\"%s\" is not an integer%s", s, errno ? " in range" : "");
            return HY_EINVAL;
        }
        if (!wide && (v < INT32_MIN || v > INT32_MAX)) {
            fail(c, n, "%s is out of range (expected %d to %d)", s, INT32_MIN, INT32_MAX);
            return HY_EINVAL;
        }
        if (wide)
            *(int64_t *)out = v;
        else
            *(int32_t *)out = (int32_t)v;
    } else {
        unsigned long long v = strtoull(s, &end, 10);
        if (*end || errno) {
            fail(c, n, "\"%s\" is not a non-negative integer%s", s, errno ? " in range" : "");
            return HY_EINVAL;
        }
        if (!wide && v > UINT32_MAX) {
            fail(c, n, "%s is out of range (expected 0 to %u)", s, UINT32_MAX);
            return HY_EINVAL;
        }
        if (wide)
            *(uint64_t *)out = v;
        else
            *(uint32_t *)out = (uint32_t)v;
    }
    return 0;
}

static int decode_time(struct dctx *c, const struct hy_node *n, const ProtobufCFieldDescriptor *f,
                       void **out)
{
    int64_t s;
    int32_t ns;
    bool dur = f->descriptor == &hypha__v1__duration__descriptor;
    if (dur ? !hy_duration_parse(n->value, &s, &ns) : !hy_timestamp_parse(n->value, &s, &ns)) {
        fail(c, n, "invalid %s \"%s\" (expected %s)", dur ? "duration" : "time", n->value,
             type_word(f));
        return HY_EINVAL;
    }
    /* Duration and Timestamp share one layout */
    Hypha__V1__Duration *m = malloc(hy_codec_msgdesc(f)->sizeof_message);
    if (!m)
        return HY_ENOMEM;
    hy_codec_msgdesc(f)->message_init(&m->base);
    m->has_seconds = m->has_nanos = 1;
    m->seconds = s;
    m->nanos = ns;
    *out = m;
    return 0;
}

/* Decodes one value (not a list) of field f from n into out, which points at
 * storage of hy_codec_scalar_size(f->type) bytes. */
static int decode_value(struct dctx *c, const struct hy_node *n, const ProtobufCFieldDescriptor *f,
                        void *out)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        bool timey = f->descriptor == &hypha__v1__duration__descriptor ||
                     f->descriptor == &hypha__v1__timestamp__descriptor;
        if (timey && n->kind == HY_NODE_SCALAR)
            return decode_time(c, n, f, out);
        if (n->kind != HY_NODE_MAP) {
            fail(c, n, "expected %s, got %s", type_word(f), kind_word(n));
            return HY_EINVAL;
        }
        ProtobufCMessage *m = calloc(1, hy_codec_msgdesc(f)->sizeof_message);
        if (!m)
            return HY_ENOMEM;
        hy_codec_msgdesc(f)->message_init(m);
        *(ProtobufCMessage **)out = m; /* owned by the parent from here on */
        return decode_message(c, n, hy_codec_msgdesc(f), m);
    }
    if (n->kind != HY_NODE_SCALAR) {
        fail(c, n, "expected %s, got %s", type_word(f), kind_word(n));
        return HY_EINVAL;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if (!(*(char **)out = strdup(n->value)))
            return HY_ENOMEM;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!n->quoted && strcmp(n->value, "true") == 0)
            *(protobuf_c_boolean *)out = 1;
        else if (!n->quoted && strcmp(n->value, "false") == 0)
            *(protobuf_c_boolean *)out = 0;
        else {
            fail(c, n, "\"%s\" is not true or false", n->value);
            return HY_EINVAL;
        }
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(ed, n->value);
        if (!v) {
            char names[512];
            size_t off = 0;
            names[0] = '\0';
            for (unsigned i = 0; i < ed->n_values && off < sizeof(names); i++)
                off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                        ed->values[i].name);
            fail(c, n, "unknown value \"%s\" (expected %s)", n->value, names);
            return HY_EINVAL;
        }
        *(int *)out = v->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(n->value, &end);
        if (!n->value[0] || *end || errno) {
            fail(c, n, "\"%s\" is not a number", n->value);
            return HY_EINVAL;
        }
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)out = (float)v;
        else
            *(double *)out = v;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = out;
        b->data = malloc(n->len * 3 / 4 + 3);
        if (!b->data)
            return HY_ENOMEM;
        if (!hy_base64_decode(n->value, n->len, b->data, &b->len, false)) {
            fail(c, n, "invalid base64");
            return HY_EINVAL;
        }
        return 0;
    }
    default:
        return decode_int(c, n, f, out);
    }
}

/* Map keys compare after the kuma.io/ -> hypha.io/ rewrite. */
static const char *unprefixed(const char *k)
{
    if (strncmp(k, "kuma.io/", 8) == 0)
        return k + 8;
    if (strncmp(k, "hypha.io/", 9) == 0)
        return k + 9;
    return NULL;
}

static bool same_key(const char *a, const char *b)
{
    const char *ua = unprefixed(a), *ub = unprefixed(b);
    if (ua && ub)
        return strcmp(ua, ub) == 0;
    return strcmp(a, b) == 0;
}

/* Map fields: a YAML mapping becomes repeated XxxEntry{key, value}. Keys
 * under kuma.io/ are read as hypha.io/ so Kuma files apply unchanged. */
static int decode_map_entry(struct dctx *c, const struct hy_node *k, const struct hy_node *v,
                            const ProtobufCFieldDescriptor *f, ProtobufCMessage **out)
{
    const ProtobufCMessageDescriptor *ed = hy_codec_msgdesc(f);
    ProtobufCMessage *e = calloc(1, ed->sizeof_message);
    if (!e)
        return HY_ENOMEM;
    ed->message_init(e);
    *out = e;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    if (kf->type == PROTOBUF_C_TYPE_STRING && strncmp(k->value, "kuma.io/", 8) == 0) {
        size_t l = strlen(k->value) + 2;
        char *key = malloc(l);
        if (!key)
            return HY_ENOMEM;
        snprintf(key, l, "hypha.io/%s", k->value + 8);
        *(char **)((char *)e + kf->offset) = key;
    } else {
        int rc = decode_value(c, k, kf, (char *)e + kf->offset);
        if (rc < 0)
            return rc;
    }
    if (hy_node_is_null(v) && vf->type != PROTOBUF_C_TYPE_STRING) {
        fail(c, v, "a value is required");
        return HY_EINVAL;
    }
    if (hy_node_is_null(v)) /* `key:` with nothing after it is an empty string */
        return (*(char **)((char *)e + vf->offset) = strdup("")) ? 0 : HY_ENOMEM;
    return decode_value(c, v, vf, (char *)e + vf->offset);
}

static int decode_repeated(struct dctx *c, const struct hy_node *n,
                           const ProtobufCFieldDescriptor *f, ProtobufCMessage *m)
{
    bool is_map = hy_codec_is_map_entry(f);
    if (n->kind != (is_map ? HY_NODE_MAP : HY_NODE_SEQ)) {
        fail(c, n, "expected %s, got %s", is_map ? "a mapping" : "a list", kind_word(n));
        return HY_EINVAL;
    }
    size_t count = is_map ? n->n / 2 : n->n;
    size_t esize = hy_codec_scalar_size(f->type);
    size_t *qty = (size_t *)((char *)m + f->quantifier_offset);
    void **arr = (void **)((char *)m + f->offset);
    if (count == 0)
        return 0;
    /* set the array before filling it so a failure midway frees what was made */
    if (!(*arr = calloc(count, esize)))
        return HY_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        const struct hy_node *item = is_map ? n->items[2 * i + 1] : n->items[i];
        size_t saved;
        int rc;
        if (is_map) {
            const struct hy_node *k = n->items[2 * i];
            if (k->kind != HY_NODE_SCALAR || k->len > HY_CODEC_MAX_KEY) {
                /* long keys could not be read back from JSON: YAML caps implicit keys */
                fail(c, k, "map keys must be scalars of at most %d bytes", HY_CODEC_MAX_KEY);
                return HY_EINVAL;
            }
            saved = path_push(c, ".%s", k->value);
            for (size_t j = 0; j < i; j++)
                if (same_key(n->items[2 * j]->value, k->value)) {
                    if (strcmp(n->items[2 * j]->value, k->value) == 0)
                        fail(c, k, "duplicate key \"%s\"", k->value);
                    else
                        fail(c, k,
                             "duplicate key: \"%s\" and \"%s\" (kuma.io/ is read as "
                             "hypha.io/)",
                             n->items[2 * j]->value, k->value);
                    path_pop(c, saved);
                    return HY_EINVAL;
                }
            record_pos(c, item);
            (*qty)++;
            rc = decode_map_entry(c, k, item, f, (ProtobufCMessage **)*arr + i);
        } else {
            saved = path_push(c, "[%zu]", i);
            record_pos(c, item);
            if (hy_node_is_null(item) && f->type != PROTOBUF_C_TYPE_STRING) {
                fail(c, item, "list items must not be null");
                path_pop(c, saved);
                return HY_EINVAL;
            }
            (*qty)++;
            rc = decode_value(c, item, f, (char *)*arr + i * esize);
        }
        path_pop(c, saved);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int decode_field(struct dctx *c, const struct hy_node *n, const ProtobufCFieldDescriptor *f,
                        ProtobufCMessage *m)
{
    record_pos(c, n);
    if (hy_node_is_null(n))
        return 0; /* null is absent */
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return decode_repeated(c, n, f, m);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = (uint32_t *)((char *)m + f->quantifier_offset);
        if (*which) {
            const ProtobufCFieldDescriptor *other =
                protobuf_c_message_descriptor_get_field(m->descriptor, *which);
            char a[128], b[128];
            hy_codec_camel(other->name, a, sizeof(a));
            hy_codec_camel(f->name, b, sizeof(b));
            fail(c, n, "only one of %s and %s may be set", a, b);
            return HY_EINVAL;
        }
        *which = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
               f->type != PROTOBUF_C_TYPE_STRING) {
        *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    }
    return decode_value(c, n, f, (char *)m + f->offset);
}

static int decode_message(struct dctx *c, const struct hy_node *n,
                          const ProtobufCMessageDescriptor *d, ProtobufCMessage *m)
{
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        const struct hy_node *k = n->items[i], *v = n->items[i + 1];
        if (k->kind != HY_NODE_SCALAR) {
            fail(c, k, "field names must be scalars");
            return HY_EINVAL;
        }
        size_t saved = path_push(c, ".%s", k->value);
        const ProtobufCFieldDescriptor *f = hy_codec_find_field(d, k->value);
        int rc = 0;
        if (!f) {
            char fields[768] = "";
            field_list(d, fields, sizeof(fields));
            fail(c, k, "unknown field \"%s\" (expected one of: %s)", k->value, fields);
            rc = HY_EINVAL;
        }
        for (size_t j = 0; rc == 0 && j < i; j += 2)
            if (hy_codec_find_field(d, n->items[j]->value) == f) {
                fail(c, k, "field given twice");
                rc = HY_EINVAL;
            }
        if (rc == 0)
            rc = decode_field(c, v, f, m);
        path_pop(c, saved);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ----- documents ----- */

static void ctx_take_pos(struct dctx *c, struct hy_doc *doc)
{
    doc->pos = c->pos;
    doc->npos = c->npos;
    c->pos = NULL;
    c->npos = c->cappos = 0;
}

static void free_pos(struct hy_pos *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].path);
    free(p);
}

static const struct hy_node *map_get(const struct hy_node *n, const char *key)
{
    for (size_t i = 0; i + 1 < n->n; i += 2)
        if (n->items[i]->kind == HY_NODE_SCALAR && strcmp(n->items[i]->value, key) == 0)
            return n->items[i + 1];
    return NULL;
}

static void type_names(char *buf, size_t size)
{
    size_t nt, off = 0;
    const struct hy_rtype *t = hy_rtype_all(&nt);
    buf[0] = '\0';
    for (size_t i = 0; i < nt && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? ", " : "", t[i].name);
}

static const struct hy_rtype *type_of(struct dctx *c, const struct hy_node *tn, const char *field)
{
    const struct hy_rtype *t = NULL;
    if (tn->kind == HY_NODE_SCALAR)
        t = hy_rtype_by_name(tn->value);
    if (!t) {
        char names[512];
        type_names(names, sizeof(names));
        hy_diag_add(c->diag, tn->line, tn->col, field, "unknown %s \"%s\" (expected one of: %s)",
                    field, tn->kind == HY_NODE_SCALAR ? tn->value : "", names);
    }
    return t;
}

/* Fails on a key given twice in map n. */
static int no_twice(struct dctx *c, const struct hy_node *n)
{
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        if (n->items[i]->kind != HY_NODE_SCALAR) {
            fail(c, n->items[i], "field names must be scalars");
            return HY_EINVAL;
        }
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(n->items[j]->value, n->items[i]->value) == 0) {
                hy_diag_add(c->diag, n->items[i]->line, n->items[i]->col, n->items[i]->value,
                            "field given twice");
                return HY_EINVAL;
            }
    }
    return 0;
}

/* Moves the label key (after the kuma.io/ rewrite) out of m's labels into
 * *value (owned); NULL when absent. */
static char *take_label(Hypha__V1__Meta *m, const char *key)
{
    for (size_t i = 0; i < m->n_labels; i++) {
        Hypha__V1__Meta__LabelsEntry *e = m->labels[i];
        if (!e->key || strcmp(e->key, key))
            continue;
        char *v = e->value;
        e->value = NULL;
        protobuf_c_message_free_unpacked(&e->base, NULL);
        m->labels[i] = m->labels[--m->n_labels];
        return v;
    }
    return NULL;
}

#define HY_K8S_API_VERSION "kuma.io/v1alpha1"
#define HY_K8S_NAMESPACE_LABEL "k8s.kuma.io/namespace"

/* Kuma's Kubernetes shape: apiVersion kuma.io/v1alpha1, kind (the type),
 * metadata {name, namespace, labels}, spec. The mesh is the label
 * kuma.io/mesh ("default" when absent, as on Kubernetes); the namespace is
 * kept as the label k8s.kuma.io/namespace, as Kuma's global CP shows it. */
static int decode_k8s_resource(struct dctx *c, const struct hy_node *root, struct hy_resource **out)
{
    int rc = no_twice(c, root);
    if (rc < 0)
        return rc;
    const struct hy_node *av = map_get(root, "apiVersion"), *kn = map_get(root, "kind");
    if (!av || av->kind != HY_NODE_SCALAR || strcmp(av->value, HY_K8S_API_VERSION)) {
        hy_diag_add(c->diag, av ? av->line : root->line, av ? av->col : root->col, "apiVersion",
                    "expected %s (Kuma's Kubernetes shape)", HY_K8S_API_VERSION);
        return HY_EINVAL;
    }
    if (!kn || hy_node_is_null(kn)) {
        hy_diag_add(c->diag, root->line, root->col, "kind", "required");
        return HY_EINVAL;
    }
    const struct hy_rtype *t = type_of(c, kn, "kind");
    if (!t)
        return HY_EINVAL;
    struct hy_resource *r = hy_resource_new(t);
    if (!r)
        return HY_ENOMEM;
    *out = r;
    const ProtobufCMessageDescriptor *md = &hypha__v1__meta__descriptor;
    char *ns = NULL;
    for (size_t i = 0; rc == 0 && i + 1 < root->n; i += 2) {
        const struct hy_node *k = root->items[i], *v = root->items[i + 1];
        size_t saved = path_push(c, ".%s", k->value);
        if (!strcmp(k->value, "apiVersion") || !strcmp(k->value, "kind")) {
            record_pos(c, v);
        } else if (!strcmp(k->value, "spec")) {
            record_pos(c, v);
            if (!hy_node_is_null(v) && v->kind != HY_NODE_MAP) {
                fail(c, v, "expected a mapping, got %s", kind_word(v));
                rc = HY_EINVAL;
            } else if (v->kind == HY_NODE_MAP) {
                rc = decode_message(c, v, t->desc, r->spec);
            }
        } else if (!strcmp(k->value, "metadata") && v->kind != HY_NODE_MAP) {
            fail(c, v, "expected a mapping, got %s", kind_word(v));
            rc = HY_EINVAL;
        } else if (!strcmp(k->value, "metadata")) {
            rc = no_twice(c, v);
            for (size_t j = 0; rc == 0 && j + 1 < v->n; j += 2) {
                const struct hy_node *mk = v->items[j], *mv = v->items[j + 1];
                size_t inner = path_push(c, ".%s", mk->value);
                if (!strcmp(mk->value, "name") || !strcmp(mk->value, "labels")) {
                    rc = decode_field(c, mv, hy_codec_find_field(md, mk->value), &r->meta->base);
                } else if (!strcmp(mk->value, "namespace")) {
                    if (mv->kind != HY_NODE_SCALAR) {
                        fail(c, mv, "expected a string, got %s", kind_word(mv));
                        rc = HY_EINVAL;
                    } else if (!(ns = strdup(mv->value))) {
                        rc = HY_ENOMEM;
                    }
                } else {
                    fail(c, mk,
                         "unknown field \"%s\" in metadata (expected one of: name, "
                         "namespace, labels)",
                         mk->value);
                    rc = HY_EINVAL;
                }
                path_pop(c, inner);
            }
        } else {
            fail(c, k,
                 "unknown field \"%s\" for %s (expected one of: apiVersion, kind, "
                 "metadata, spec)",
                 k->value, t->name);
            rc = HY_EINVAL;
        }
        path_pop(c, saved);
    }
    char *mesh = rc == 0 ? take_label(r->meta, "hypha.io/mesh") : NULL;
    if (mesh && !mesh[0]) {
        hy_diag_add(c->diag, root->line, root->col, "metadata.labels",
                    "the label kuma.io/mesh is empty; name the mesh or drop the label "
                    "for \"default\"");
        free(mesh);
        mesh = NULL;
        rc = HY_EINVAL;
    }
    if (rc == 0 && t->scope == HY_SCOPE_MESH)
        rc = (r->meta->mesh = mesh ? mesh : strdup("default")) ? 0 : HY_ENOMEM;
    else if (rc == 0 && mesh) {
        hy_diag_add(c->diag, root->line, root->col, "metadata.labels",
                    "%s is not mesh-scoped; remove the label kuma.io/mesh", t->name);
        free(mesh);
        rc = HY_EINVAL;
    }
    if (rc == 0 && ns) {
        Hypha__V1__Meta *m = r->meta;
        Hypha__V1__Meta__LabelsEntry **nl = realloc(m->labels, (m->n_labels + 1) * sizeof(*nl));
        Hypha__V1__Meta__LabelsEntry *e = nl ? malloc(sizeof(*e)) : NULL;
        if (nl)
            m->labels = nl;
        if (!e) {
            rc = HY_ENOMEM;
        } else {
            hypha__v1__meta__labels_entry__init(e);
            e->key = strdup(HY_K8S_NAMESPACE_LABEL);
            e->value = ns;
            ns = NULL;
            nl[m->n_labels++] = e;
            rc = e->key ? 0 : HY_ENOMEM;
        }
    }
    free(ns);
    if (rc == 0 && (!r->meta->name || !r->meta->name[0])) {
        hy_diag_add(c->diag, root->line, root->col, "metadata.name", "required");
        rc = HY_EINVAL;
    }
    return rc;
}

/* One resource document: envelope fields at the top, the spec either beside
 * them (Kuma's older types) or under `spec:`. The type must be known before
 * the spec is read, wherever `type:` sits in the document. A document with
 * `apiVersion` instead is Kuma's Kubernetes shape. */
static int decode_resource(struct dctx *c, const struct hy_node *root, struct hy_resource **out)
{
    if (root->kind != HY_NODE_MAP) {
        fail(c, root, "expected a resource (a mapping with type, name, ...), got %s",
             kind_word(root));
        return HY_EINVAL;
    }
    if (!map_get(root, "type") && map_get(root, "apiVersion"))
        return decode_k8s_resource(c, root, out);
    const struct hy_node *tn = map_get(root, "type");
    if (!tn || hy_node_is_null(tn)) {
        hy_diag_add(c->diag, root->line, root->col, "type", "required");
        return HY_EINVAL;
    }
    const struct hy_rtype *t = type_of(c, tn, "type");
    if (!t)
        return HY_EINVAL;
    struct hy_resource *r = hy_resource_new(t);
    if (!r)
        return HY_ENOMEM;
    *out = r;
    const ProtobufCMessageDescriptor *md = &hypha__v1__meta__descriptor;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i + 1 < root->n; i += 2) {
        const struct hy_node *k = root->items[i], *v = root->items[i + 1];
        if (k->kind != HY_NODE_SCALAR) {
            fail(c, k, "field names must be scalars");
            return HY_EINVAL;
        }
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(root->items[j]->value, k->value) == 0) {
                hy_diag_add(c->diag, k->line, k->col, k->value, "field given twice");
                return HY_EINVAL;
            }
        size_t saved = path_push(c, ".%s", k->value);
        const ProtobufCFieldDescriptor *f = hy_codec_find_field(md, k->value);
        if (strcmp(k->value, "type") == 0) {
            record_pos(c, v);
        } else if (f) {
            rc = decode_field(c, v, f, &r->meta->base);
        } else if (!t->spec_inline && strcmp(k->value, "spec") == 0) {
            record_pos(c, v);
            if (!hy_node_is_null(v) && v->kind != HY_NODE_MAP) {
                fail(c, v, "expected a mapping, got %s", kind_word(v));
                rc = HY_EINVAL;
            } else if (v->kind == HY_NODE_MAP) {
                rc = decode_message(c, v, t->desc, r->spec);
            }
        } else if (t->spec_inline && (f = hy_codec_find_field(t->desc, k->value))) {
            rc = decode_field(c, v, f, r->spec);
        } else {
            char fields[768] = "";
            field_list(md, fields, sizeof(fields));
            if (t->spec_inline)
                field_list(t->desc, fields, sizeof(fields));
            else
                snprintf(fields + strlen(fields), sizeof(fields) - strlen(fields), ", spec");
            fail(c, k, "unknown field \"%s\" for %s (expected one of: %s)", k->value, t->name,
                 fields);
            rc = HY_EINVAL;
        }
        path_pop(c, saved);
    }
    if (rc < 0)
        return rc;
    Hypha__V1__Meta *m = r->meta;
    if (!m->name || !m->name[0]) {
        hy_diag_add(c->diag, root->line, root->col, "name", "required");
        return HY_EINVAL;
    }
    if (t->scope == HY_SCOPE_MESH && (!m->mesh || !m->mesh[0])) {
        hy_diag_add(c->diag, root->line, root->col, "mesh", "required for %s", t->name);
        return HY_EINVAL;
    }
    return 0;
}

void hy_docs_fini(struct hy_docs *docs)
{
    for (size_t i = 0; i < docs->n; i++) {
        hy_resource_free(docs->v[i].res);
        free_pos(docs->v[i].pos, docs->v[i].npos);
    }
    free(docs->v);
    docs->v = NULL;
    docs->n = 0;
}

int hy_codec_decode_resources(const char *source, const char *text, size_t len,
                              const struct hy_codec_limits *lim, struct hy_docs *out,
                              struct hy_diag *diag)
{
    struct hy_node **roots;
    size_t nroots;
    diag->source = source;
    memset(out, 0, sizeof(*out));
    int rc = hy_tree_parse(text, len, lim && lim->max_bytes ? lim->max_bytes : HY_CODEC_MAX_BYTES,
                           lim && lim->max_depth ? lim->max_depth : HY_CODEC_MAX_DEPTH, &roots,
                           &nroots, diag);
    if (rc < 0)
        return rc;
    struct dctx c = {.diag = diag};
    if (nroots && !(out->v = calloc(nroots, sizeof(*out->v)))) {
        rc = HY_ENOMEM;
        goto out_free_roots;
    }
    for (size_t i = 0; i < nroots; i++) {
        if (!roots[i] || hy_node_is_null(roots[i]))
            continue; /* empty document, e.g. a trailing `---` */
        struct hy_doc *doc = &out->v[out->n++];
        doc->line = roots[i]->line;
        path_pop(&c, 0);
        rc = decode_resource(&c, roots[i], &doc->res);
        ctx_take_pos(&c, doc);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        hy_docs_fini(out);
out_free_roots:
    hy_tree_free_docs(roots, nroots);
    return rc;
}

/* Finds where a field path was written: the exact path, else its nearest
 * written ancestor, else the document start. */
static void locate(const struct hy_doc *doc, const char *field, int *line, int *col)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s", field);
    for (;;) {
        for (size_t i = 0; i < doc->npos; i++)
            if (strcmp(doc->pos[i].path, p) == 0) {
                *line = doc->pos[i].line;
                *col = doc->pos[i].col;
                return;
            }
        char *cut = strrchr(p, '.'), *br = strrchr(p, '[');
        if (br > cut)
            cut = br;
        if (!cut)
            break;
        *cut = '\0';
    }
    *line = doc->line;
    *col = 1;
}

bool hy_docs_validate(const struct hy_docs *docs, struct hy_diag *diag)
{
    bool ok = true;
    for (size_t i = 0; i < docs->n; i++) {
        size_t before = diag->n;
        if (!hy_resource_validate(docs->v[i].res, diag))
            ok = false;
        for (size_t k = before; k < diag->n; k++)
            if (diag->causes[k].line == 0)
                locate(&docs->v[i], diag->causes[k].field ? diag->causes[k].field : "",
                       &diag->causes[k].line, &diag->causes[k].col);
    }
    return ok;
}

int hy_codec_decode_message(const char *source, const char *text, size_t len,
                            const struct hy_codec_limits *lim,
                            const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                            struct hy_diag *diag)
{
    struct hy_node **roots;
    size_t nroots;
    diag->source = source;
    int rc = hy_tree_parse(text, len, lim && lim->max_bytes ? lim->max_bytes : HY_CODEC_MAX_BYTES,
                           lim && lim->max_depth ? lim->max_depth : HY_CODEC_MAX_DEPTH, &roots,
                           &nroots, diag);
    if (rc < 0)
        return rc;
    ProtobufCMessage *m = calloc(1, desc->sizeof_message);
    if (!m) {
        rc = HY_ENOMEM;
        goto out_free_roots;
    }
    desc->message_init(m);
    struct dctx c = {.diag = diag};
    if (nroots > 1) {
        hy_diag_add(diag, 0, 0, "", "expected one document, found %zu", nroots);
        rc = HY_EINVAL;
    } else if (nroots == 1 && roots[0] && !hy_node_is_null(roots[0])) {
        if (roots[0]->kind != HY_NODE_MAP) {
            fail(&c, roots[0], "expected a mapping, got %s", kind_word(roots[0]));
            rc = HY_EINVAL;
        } else {
            rc = decode_message(&c, roots[0], desc, m);
        }
    }
    free_pos(c.pos, c.npos);
    if (rc < 0)
        protobuf_c_message_free_unpacked(m, NULL);
    else
        *out = m;
out_free_roots:
    hy_tree_free_docs(roots, nroots);
    return rc;
}
