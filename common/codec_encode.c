/* Encoder half of the generic codec: walks a protobuf-c message and its
 * descriptor and writes it as YAML (through libyaml's emitter) or compact
 * JSON. One walk, two sinks. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base64.h"
#include "codec.h"
#include "codec_int.h"
#include "error.h"
#include "poison.h"

enum scalar_kind { SC_STRING, SC_NUMBER, SC_BOOL };

/* A sink receives the document as events. Each returns 0 or HY_ENOMEM. */
struct sink {
    int (*map_start)(struct sink *s);
    int (*map_end)(struct sink *s);
    int (*seq_start)(struct sink *s);
    int (*seq_end)(struct sink *s);
    int (*scalar)(struct sink *s, const char *v, size_t len, enum scalar_kind k);
};

/* ----- YAML sink ----- */

struct yaml_sink {
    struct sink base;
    yaml_emitter_t em;
    struct hy_buf *out;
    bool failed;
};

static int yaml_write(void *ud, unsigned char *p, size_t n)
{
    return hy_buf_append(ud, p, n) == 0;
}

static int yemit(struct yaml_sink *y, yaml_event_t *ev)
{
    if (!yaml_emitter_emit(&y->em, ev)) {
        y->failed = true;
        return HY_ENOMEM;
    }
    return 0;
}

static int ymap_start(struct sink *s)
{
    yaml_event_t ev;
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    return yemit((struct yaml_sink *)s, &ev);
}

static int ymap_end(struct sink *s)
{
    yaml_event_t ev;
    yaml_mapping_end_event_initialize(&ev);
    return yemit((struct yaml_sink *)s, &ev);
}

static int yseq_start(struct sink *s)
{
    yaml_event_t ev;
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
    return yemit((struct yaml_sink *)s, &ev);
}

static int yseq_end(struct sink *s)
{
    yaml_event_t ev;
    yaml_sequence_end_event_initialize(&ev);
    return yemit((struct yaml_sink *)s, &ev);
}

/* A string that a YAML reader would take for null, a bool or a number when
 * written plain must be quoted to stay a string for other tools. */
static bool looks_typed(const char *v, size_t len)
{
    static const char *const words[] = {
        "",    "~",  "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
        "yes", "no", "on",   "off",  "Yes",  "No",   ".inf", ".nan", "-.inf", "y",     "n"};
    /* Settle most keys and names by their first byte. Of the ASCII letters,
     * only n N t T f F y Y o begin a word above, and only i I n N begin
     * something strtod reads ("inf", "infinity", "nan", any case); a letter
     * is never the whitespace strtod skips, in any locale. */
    char c = v[0];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (letter && !strchr("nNtTfFyYoiI", c))
        return false;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(v, words[i]) == 0)
            return true;
    if (letter && !strchr("iInN", c))
        return false;
    char *end;
    (void)strtod(v, &end);
    return len > 0 && end == v + len;
}

static int yscalar(struct sink *s, const char *v, size_t len, enum scalar_kind k)
{
    yaml_event_t ev;
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (k == SC_STRING && looks_typed(v, len))
        style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)v, (int)len, 1, 1, style);
    return yemit((struct yaml_sink *)s, &ev);
}

/* ----- JSON sink ----- */

struct json_sink {
    struct sink base;
    struct hy_buf *out;
    /* per open container: items written so far (keys and values count) and
     * whether it is an object */
    size_t count[HY_CODEC_MAX_DEPTH + 8];
    bool object[HY_CODEC_MAX_DEPTH + 8];
    int depth;
};

static int jsep(struct json_sink *j)
{
    if (j->depth == 0)
        return 0;
    size_t c = j->count[j->depth]++;
    if (c == 0)
        return 0;
    if (j->object[j->depth])
        return hy_buf_puts(j->out, c % 2 ? ":" : ",");
    return hy_buf_puts(j->out, ",");
}

static int jopen(struct sink *s, bool object)
{
    struct json_sink *j = (struct json_sink *)s;
    if (jsep(j) < 0 || j->depth + 1 >= (int)(sizeof(j->count) / sizeof(j->count[0])))
        return HY_ENOMEM;
    j->depth++;
    j->count[j->depth] = 0;
    j->object[j->depth] = object;
    return hy_buf_puts(j->out, object ? "{" : "[");
}

static int jmap_start(struct sink *s)
{
    return jopen(s, true);
}

static int jseq_start(struct sink *s)
{
    return jopen(s, false);
}

static int jclose(struct sink *s)
{
    struct json_sink *j = (struct json_sink *)s;
    int rc = hy_buf_puts(j->out, j->object[j->depth] ? "}" : "]");
    j->depth--;
    return rc;
}

/* True when the character at p (left bytes) must be escaped for YAML to read
 * it back as written, though JSON allows it raw: DEL and the C1 controls
 * (libyaml refuses them; NEL is a line break to YAML and would be folded),
 * U+2028 and U+2029 (line breaks to YAML) and U+FFFE, U+FFFF (refused).
 * Sets *cp to the code point and *n to its UTF-8 length. */
static bool yaml_unsafe(const unsigned char *p, size_t left, unsigned *cp, size_t *n)
{
    if (p[0] == 0x7f) {
        *cp = 0x7f, *n = 1;
    } else if (left >= 2 && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
        *cp = p[1], *n = 2;
    } else if (left >= 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
        *cp = 0x2000u + (p[2] - 0x80u), *n = 3;
    } else if (left >= 3 && p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
        *cp = 0xfffeu + (p[2] - 0xbeu), *n = 3;
    } else {
        return false;
    }
    return true;
}

int hy_codec_json_string(struct hy_buf *out, const char *v, size_t len)
{
    if (hy_buf_puts(out, "\"") < 0)
        return HY_ENOMEM;
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *p = (const unsigned char *)v + i;
        unsigned cp = p[0];
        size_t n = 1;
        if (cp >= 0x20 && cp != '"' && cp != '\\' && !yaml_unsafe(p, len - i, &cp, &n)) {
            i++;
            continue;
        }
        char esc[8];
        if (cp == '"' || cp == '\\')
            snprintf(esc, sizeof(esc), "\\%c", (int)cp);
        else if (cp == '\n')
            snprintf(esc, sizeof(esc), "\\n");
        else if (cp == '\t')
            snprintf(esc, sizeof(esc), "\\t");
        else if (cp == '\r')
            snprintf(esc, sizeof(esc), "\\r");
        else
            snprintf(esc, sizeof(esc), "\\u%04x", cp);
        if (hy_buf_append(out, v + start, i - start) < 0 || hy_buf_puts(out, esc) < 0)
            return HY_ENOMEM;
        i += n;
        start = i;
    }
    if (hy_buf_append(out, v + start, len - start) < 0)
        return HY_ENOMEM;
    return hy_buf_puts(out, "\"");
}

static int jscalar(struct sink *s, const char *v, size_t len, enum scalar_kind k)
{
    struct json_sink *j = (struct json_sink *)s;
    if (jsep(j) < 0)
        return HY_ENOMEM;
    if (k == SC_STRING)
        return hy_codec_json_string(j->out, v, len);
    return hy_buf_append(j->out, v, len);
}

/* ----- the walk ----- */

static int emit_message(struct sink *s, const ProtobufCMessage *m);

static int emit_str(struct sink *s, const char *v)
{
    return s->scalar(s, v, strlen(v), SC_STRING);
}

static int emit_key(struct sink *s, const char *snake)
{
    char camel[128];
    hy_codec_camel(snake, camel, sizeof(camel));
    return emit_str(s, camel);
}

static int emit_value(struct sink *s, const ProtobufCFieldDescriptor *f, const void *p)
{
    char num[64];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(num, sizeof(num), "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(num, sizeof(num), "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(num, sizeof(num), "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        snprintf(num, sizeof(num), "%.9g", (double)*(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        snprintf(num, sizeof(num), "%.17g", *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        return s->scalar(s, *(const protobuf_c_boolean *)p ? "true" : "false",
                         *(const protobuf_c_boolean *)p ? 4 : 5, SC_BOOL);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        if (ev)
            return emit_str(s, ev->name);
        snprintf(num, sizeof(num), "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        return emit_str(s, *(char *const *)p ? *(char *const *)p : "");
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *enc = malloc(hy_base64_encoded_size(b->len));
        if (!enc)
            return HY_ENOMEM;
        size_t n = hy_base64_encode(b->data, b->len, enc, false);
        int rc = s->scalar(s, enc, n, SC_STRING);
        free(enc);
        return rc;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (f->descriptor == &hypha__v1__duration__descriptor ||
            f->descriptor == &hypha__v1__timestamp__descriptor) {
            const Hypha__V1__Duration *d = (const Hypha__V1__Duration *)sub;
            char t[64];
            if (f->descriptor == &hypha__v1__duration__descriptor)
                hy_duration_format(d->seconds, d->nanos, t, sizeof(t));
            else
                hy_timestamp_format(d->seconds, d->nanos, t, sizeof(t));
            return emit_str(s, t);
        }
        return emit_message(s, sub);
    }
    default:
        return HY_EINVAL;
    }
    return s->scalar(s, num, strlen(num), SC_NUMBER);
}

bool hy_codec_field_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING)
        return *(void *const *)(base + f->offset) != NULL;
    /* no has_ flag: a required field, always there */
    return !f->quantifier_offset || *(const protobuf_c_boolean *)(base + f->quantifier_offset);
}

/* Emits the fields of m as key/value pairs into an already open mapping. */
static int emit_fields(struct sink *s, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!hy_codec_field_set(m, f))
            continue;
        const char *p = (const char *)m + f->offset;
        if (emit_key(s, f->name) < 0)
            return HY_ENOMEM;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (emit_value(s, f, p) < 0)
                return HY_ENOMEM;
            continue;
        }
        size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
        const char *arr = *(char *const *)p;
        size_t esize = hy_codec_scalar_size(f->type);
        bool is_map = hy_codec_is_map_entry(f);
        if ((is_map ? s->map_start(s) : s->seq_start(s)) < 0)
            return HY_ENOMEM;
        for (size_t k = 0; k < n; k++) {
            if (is_map) {
                const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[k];
                const ProtobufCFieldDescriptor *kf = &hy_codec_msgdesc(f)->fields[0];
                const ProtobufCFieldDescriptor *vf = &hy_codec_msgdesc(f)->fields[1];
                if (emit_value(s, kf, (const char *)e + kf->offset) < 0 ||
                    emit_value(s, vf, (const char *)e + vf->offset) < 0)
                    return HY_ENOMEM;
            } else if (emit_value(s, f, arr + k * esize) < 0) {
                return HY_ENOMEM;
            }
        }
        if ((is_map ? s->map_end(s) : s->seq_end(s)) < 0)
            return HY_ENOMEM;
    }
    return 0;
}

static int emit_message(struct sink *s, const ProtobufCMessage *m)
{
    if (s->map_start(s) < 0 || emit_fields(s, m) < 0)
        return HY_ENOMEM;
    return s->map_end(s);
}

/* The envelope first (type, mesh, name, labels, times), then the spec. */
static int emit_resource(struct sink *s, const struct hy_resource *r)
{
    if (s->map_start(s) < 0 || emit_fields(s, &r->meta->base) < 0)
        return HY_ENOMEM;
    if (r->type->spec_inline) {
        if (emit_fields(s, r->spec) < 0)
            return HY_ENOMEM;
    } else if (emit_str(s, "spec") < 0 || emit_message(s, r->spec) < 0) {
        return HY_ENOMEM;
    }
    return s->map_end(s);
}

typedef int (*walk_fn)(struct sink *s, const void *arg);

static int run_yaml(walk_fn walk, const void *arg, struct hy_buf *out)
{
    struct yaml_sink y = {
        .base = {ymap_start, ymap_end, yseq_start, yseq_end, yscalar},
        .out = out,
    };
    if (!yaml_emitter_initialize(&y.em))
        return HY_ENOMEM;
    yaml_emitter_set_output(&y.em, yaml_write, out);
    yaml_emitter_set_unicode(&y.em, 1);
    yaml_emitter_set_width(&y.em, -1);
    yaml_event_t ev;
    int rc;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    rc = yemit(&y, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    if (rc == 0)
        rc = yemit(&y, &ev);
    else
        yaml_event_delete(&ev);
    if (rc == 0)
        rc = walk(&y.base, arg);
    if (rc == 0) {
        yaml_document_end_event_initialize(&ev, 1);
        rc = yemit(&y, &ev);
    }
    if (rc == 0) {
        yaml_stream_end_event_initialize(&ev);
        rc = yemit(&y, &ev);
    }
    yaml_emitter_delete(&y.em);
    return rc;
}

static int run_json(walk_fn walk, const void *arg, struct hy_buf *out)
{
    struct json_sink j = {
        .base = {jmap_start, jclose, jseq_start, jclose, jscalar},
        .out = out,
    };
    return walk(&j.base, arg);
}

static int walk_resource(struct sink *s, const void *arg)
{
    return emit_resource(s, arg);
}

static int walk_message(struct sink *s, const void *arg)
{
    return emit_message(s, arg);
}

int hy_codec_encode_resource(const struct hy_resource *r, enum hy_format f, struct hy_buf *out)
{
    return f == HY_FORMAT_JSON ? run_json(walk_resource, r, out) : run_yaml(walk_resource, r, out);
}

int hy_codec_encode_message(const ProtobufCMessage *m, enum hy_format f, struct hy_buf *out)
{
    return f == HY_FORMAT_JSON ? run_json(walk_message, m, out) : run_yaml(walk_message, m, out);
}
