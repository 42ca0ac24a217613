/* Resources in memory: construction, copying, and the Envelope form used by
 * the store and the wire. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "resource.h"
#include "poison.h"

static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    if (m)
        d->message_init(m);
    return m;
}

struct hy_resource *hy_resource_new(const struct hy_rtype *t)
{
    struct hy_resource *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->type = t;
    r->meta = (Hypha__V1__Meta *)new_message(&hypha__v1__meta__descriptor);
    r->spec = new_message(t->desc);
    if (!r->meta || !r->spec || !(r->meta->type = strdup(t->name))) {
        hy_resource_free(r);
        return NULL;
    }
    return r;
}

void hy_resource_free(struct hy_resource *r)
{
    if (!r)
        return;
    if (r->meta)
        protobuf_c_message_free_unpacked(&r->meta->base, NULL);
    if (r->spec)
        protobuf_c_message_free_unpacked(r->spec, NULL);
    free(r->origin);
    free(r);
}

static int replace_str(char **dst, const char *src)
{
    char *c = NULL;
    if (src && src[0] && !(c = strdup(src)))
        return HY_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

int hy_resource_set_name(struct hy_resource *r, const char *mesh, const char *name)
{
    if (replace_str(&r->meta->mesh, mesh) < 0 || replace_str(&r->meta->name, name) < 0)
        return HY_ENOMEM;
    return 0;
}

uint8_t *hy_resource_pack(const struct hy_resource *r, size_t *len)
{
    Hypha__V1__Envelope env = HYPHA__V1__ENVELOPE__INIT;
    size_t spec_len = protobuf_c_message_get_packed_size(r->spec);
    uint8_t *spec = malloc(spec_len ? spec_len : 1);
    if (!spec)
        return NULL;
    protobuf_c_message_pack(r->spec, spec);
    env.meta = r->meta;
    env.has_version = r->version != 0;
    env.version = r->version;
    env.origin = r->origin;
    env.has_spec = 1;
    env.spec.data = spec;
    env.spec.len = spec_len;
    *len = hypha__v1__envelope__get_packed_size(&env);
    uint8_t *out = malloc(*len ? *len : 1);
    if (out)
        hypha__v1__envelope__pack(&env, out);
    free(spec);
    return out;
}

int hy_resource_unpack(const uint8_t *data, size_t len, struct hy_resource **out)
{
    Hypha__V1__Envelope *env = hypha__v1__envelope__unpack(NULL, len, data);
    if (!env)
        return HY_EINVAL;
    int rc = HY_EINVAL;
    const struct hy_rtype *t = NULL;
    if (env->meta && env->meta->type)
        t = hy_rtype_by_name(env->meta->type);
    if (!t)
        goto out_free_env;
    struct hy_resource *r = calloc(1, sizeof(*r));
    if (!r) {
        rc = HY_ENOMEM;
        goto out_free_env;
    }
    r->type = t;
    r->spec = protobuf_c_message_unpack(t->desc, NULL, env->spec.len, env->spec.data);
    if (!r->spec) {
        free(r);
        goto out_free_env;
    }
    r->meta = env->meta; /* steal */
    env->meta = NULL;
    r->version = env->version;
    r->origin = env->origin; /* steal */
    env->origin = NULL;
    *out = r;
    rc = 0;
out_free_env:
    hypha__v1__envelope__free_unpacked(env, NULL);
    return rc;
}

struct hy_resource *hy_resource_dup(const struct hy_resource *r)
{
    size_t len;
    uint8_t *p = hy_resource_pack(r, &len);
    if (!p)
        return NULL;
    struct hy_resource *c = NULL;
    if (hy_resource_unpack(p, len, &c) < 0)
        c = NULL;
    free(p);
    return c;
}

#define S(s) ((s) ? (s) : "")

static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t la = protobuf_c_message_get_packed_size(a);
    size_t lb = protobuf_c_message_get_packed_size(b);
    if (la != lb)
        return false;
    uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
    bool same = false;
    if (pa && pb) {
        protobuf_c_message_pack(a, pa);
        protobuf_c_message_pack(b, pb);
        same = memcmp(pa, pb, la) == 0;
    }
    free(pa);
    free(pb);
    return same;
}

bool hy_resource_same_content(const struct hy_resource *a, const struct hy_resource *b)
{
    if (a->type != b->type || !same_message(a->spec, b->spec))
        return false;
    if (a->meta->n_labels != b->meta->n_labels)
        return false;
    /* Labels compare as sets: order in the YAML does not matter. */
    for (size_t i = 0; i < a->meta->n_labels; i++) {
        const Hypha__V1__Meta__LabelsEntry *la = a->meta->labels[i];
        bool found = false;
        for (size_t j = 0; j < b->meta->n_labels && !found; j++) {
            const Hypha__V1__Meta__LabelsEntry *lb = b->meta->labels[j];
            found = strcmp(S(la->key), S(lb->key)) == 0 && strcmp(S(la->value), S(lb->value)) == 0;
        }
        if (!found)
            return false;
    }
    return true;
}

Hypha__V1__Timestamp *hy_timestamp_now(void)
{
    Hypha__V1__Timestamp *t = malloc(sizeof(*t));
    if (!t)
        return NULL;
    hypha__v1__timestamp__init(t);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->has_seconds = t->has_nanos = 1;
    t->seconds = ts.tv_sec;
    t->nanos = (int32_t)ts.tv_nsec;
    return t;
}
