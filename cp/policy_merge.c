/* Merging the `default`s of policy entries as Kuma does: fields a later
 * conf sets replace the earlier value; messages merge field by field;
 * lists, durations and a oneof's chosen message replace whole. Works on
 * any conf message through its protobuf-c descriptor, and records which
 * entry gave each value (policy.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dp_parts.h"
#include "error.h"
#include "meta.pb-c.h"
#include "policy.h"
#include "poison.h"

/* A message the merge treats as one value (never field by field). */
static bool is_leaf_message(const ProtobufCMessageDescriptor *d)
{
    return d == &hypha__v1__duration__descriptor || d == &hypha__v1__timestamp__descriptor;
}

/* Frees what field f of m holds and marks it unset. */
static void field_clear(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    char *base = (char *)m;
    void *slot = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t *n = (size_t *)(base + f->quantifier_offset);
        void **arr = *(void ***)slot;
        for (size_t i = 0; arr && i < *n; i++) {
            if (f->type == PROTOBUF_C_TYPE_STRING)
                free(arr[i]);
            else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                protobuf_c_message_free_unpacked(arr[i], NULL);
            else if (f->type == PROTOBUF_C_TYPE_BYTES)
                free(((ProtobufCBinaryData *)arr)[i].data);
        }
        free(arr);
        *(void **)slot = NULL;
        *n = 0;
        return;
    }
    bool is_case = !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
                   *(uint32_t *)(base + f->quantifier_offset) == f->id;
    if (!is_case)
        return;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        free(*(char **)slot);
        *(char **)slot = NULL;
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (*(ProtobufCMessage **)slot)
            protobuf_c_message_free_unpacked(*(ProtobufCMessage **)slot, NULL);
        *(void **)slot = NULL;
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
        free(((ProtobufCBinaryData *)slot)->data);
        memset(slot, 0, sizeof(ProtobufCBinaryData));
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = 0;
    else if (f->quantifier_offset && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 0;
}

/* Copies field f of src over field f of dst (dst's value freed first). */
static int field_copy(ProtobufCMessage *dst, const ProtobufCMessage *src,
                      const ProtobufCFieldDescriptor *f)
{
    char *db = (char *)dst;
    const char *sb = (const char *)src;
    const ProtobufCFieldDescriptor *fields = dst->descriptor->fields;
    /* choosing a oneof case unsets the other cases first */
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        for (unsigned i = 0; i < dst->descriptor->n_fields; i++)
            if (fields[i].quantifier_offset == f->quantifier_offset)
                field_clear(dst, &fields[i]);
    field_clear(dst, f);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)(sb + f->quantifier_offset);
        size_t es = hy_codec_scalar_size(f->type);
        void *const *from = *(void *const *)(sb + f->offset);
        void **to = calloc(n ? n : 1, es);
        if (!to)
            return HY_ENOMEM;
        *(void **)(db + f->offset) = to;
        for (size_t i = 0; i < n; i++) {
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                if (!(to[i] = strdup(((char *const *)from)[i])))
                    goto nomem;
            } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (!(to[i] = hy_dp_msg_copy(((ProtobufCMessage *const *)from)[i])))
                    goto nomem;
            } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
                const ProtobufCBinaryData *b = &((const ProtobufCBinaryData *)from)[i];
                ProtobufCBinaryData *c = &((ProtobufCBinaryData *)to)[i];
                if (!(c->data = malloc(b->len ? b->len : 1)))
                    goto nomem;
                memcpy(c->data, b->data, b->len);
                c->len = b->len;
            } else {
                memcpy((char *)to + i * es, (const char *)from + i * es, es);
            }
            *(size_t *)(db + f->quantifier_offset) = i + 1;
        }
        return 0;
    nomem:
        field_clear(dst, f);
        return HY_ENOMEM;
    }
    const void *from = sb + f->offset;
    void *to = db + f->offset;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        if (!(*(char **)to = strdup(*(char *const *)from)))
            return HY_ENOMEM;
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (!(*(ProtobufCMessage **)to = hy_dp_msg_copy(*(ProtobufCMessage *const *)from)))
            return HY_ENOMEM;
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
        const ProtobufCBinaryData *b = from;
        ProtobufCBinaryData *c = to;
        if (!(c->data = malloc(b->len ? b->len : 1)))
            return HY_ENOMEM;
        memcpy(c->data, b->data, b->len);
        c->len = b->len;
    } else {
        memcpy(to, from, hy_codec_scalar_size(f->type));
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(db + f->quantifier_offset) = f->id;
    else if (f->quantifier_offset && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(db + f->quantifier_offset) = 1;
    return 0;
}

/* Records (or replaces) the origin of the value at path. */
static int note(struct hy_policy_conf *c, const char *path, const struct hy_policy_origin *o)
{
    size_t plen = strlen(path);
    /* a value replacing a whole message also replaces what its fields said */
    for (size_t i = 0; i < c->nprov;) {
        const char *p = c->prov[i].path;
        if (!strcmp(p, path) || (!strncmp(p, path, plen) && p[plen] == '.')) {
            free(c->prov[i].path);
            c->prov[i] = c->prov[--c->nprov];
        } else {
            i++;
        }
    }
    struct hy_policy_prov *v = realloc(c->prov, (c->nprov + 1) * sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    c->prov = v;
    if (!(v[c->nprov].path = strdup(path)))
        return HY_ENOMEM;
    v[c->nprov++].origin = *o;
    return 0;
}

static int merge_into(struct hy_policy_conf *c, ProtobufCMessage *dst, const ProtobufCMessage *src,
                      const char *prefix, const struct hy_policy_origin *o)
{
    const ProtobufCMessageDescriptor *d = src->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!hy_codec_field_set(src, f))
            continue;
        char path[HY_POLICY_PATH_MAX];
        char name[128];
        hy_codec_camel(f->name, name, sizeof(name));
        int n = snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", name);
        if (n < 0 || (size_t)n >= sizeof(path))
            return HY_ETOOBIG;
        int rc;
        bool nested = f->label != PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                      !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && !is_leaf_message(f->descriptor);
        ProtobufCMessage **slot = (ProtobufCMessage **)((char *)dst + f->offset);
        if (nested) {
            /* merged field by field, so each value notes its own entry */
            if (!*slot) {
                const ProtobufCMessageDescriptor *md = f->descriptor;
                if (!(*slot = calloc(1, md->sizeof_message)))
                    return HY_ENOMEM;
                md->message_init(*slot);
            }
            rc = merge_into(c, *slot, *(ProtobufCMessage *const *)((const char *)src + f->offset),
                            path, o);
        } else {
            rc = field_copy(dst, src, f);
            if (rc == 0)
                rc = note(c, path, o);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int hy_policy_conf_merge(struct hy_policy_conf *c, const ProtobufCMessage *conf,
                         const struct hy_policy_origin *o)
{
    if (!conf)
        return 0;
    if (!c->conf) {
        ProtobufCMessage *m = calloc(1, conf->descriptor->sizeof_message);
        if (!m)
            return HY_ENOMEM;
        conf->descriptor->message_init(m);
        c->conf = m;
    }
    if (c->conf->descriptor != conf->descriptor)
        return HY_EINVAL;
    return merge_into(c, c->conf, conf, "", o);
}

int hy_policy_default_merge(const struct hy_policy_set *s, const ProtobufCMessageDescriptor *type,
                            struct hy_policy_conf *out)
{
    memset(out, 0, sizeof(*out));
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(type, "default");
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return HY_EINVAL;
    for (size_t i = 0; i < s->n; i++) {
        const struct hy_resource *r = s->v[i].r;
        if (r->spec->descriptor != type)
            continue;
        const ProtobufCMessage *d =
            *(ProtobufCMessage *const *)(const void *)((const char *)r->spec + f->offset);
        struct hy_policy_origin o = {r, "default", 0};
        int rc = hy_policy_conf_merge(out, d, &o); /* no default: validation refuses it */
        if (rc < 0) {
            hy_policy_conf_fini(out);
            return rc;
        }
    }
    return 0;
}

const struct hy_policy_origin *hy_policy_conf_origin(const struct hy_policy_conf *c,
                                                     const char *path)
{
    for (size_t i = 0; i < c->nprov; i++)
        if (!strcmp(c->prov[i].path, path))
            return &c->prov[i].origin;
    return NULL;
}

void hy_policy_conf_fini(struct hy_policy_conf *c)
{
    if (c->conf)
        protobuf_c_message_free_unpacked(c->conf, NULL);
    for (size_t i = 0; i < c->nprov; i++)
        free(c->prov[i].path);
    free(c->prov);
    memset(c, 0, sizeof(*c));
}
