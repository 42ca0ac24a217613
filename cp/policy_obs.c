/* MeshAccessLog as the sidecar gets it (policy.h): the `default`s of the
 * entries that apply, merged as Kuma merges them (a later entry's
 * backends list replaces an earlier one's: Kuma's merge appends only
 * lists named Append*, and MeshAccessLog's is `backends`), turned into
 * one DpAccessLog per inbound and per outbound. */
#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "policies.pb-c.h"
#include "policy.h"
#include "poison.h"

static int merge_entry(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                       const struct hy_policy_origin *o)
{
    (void)ref; /* from names the Mesh only (validation): every caller */
    return hy_policy_conf_merge(ud, conf, o);
}

static int dup_into(char **dst, const char *s)
{
    if (!s)
        return 0;
    return (*dst = strdup(s)) ? 0 : HY_ENOMEM;
}

static int add_format(Hypha__V1__DpAccessLogBackend *b, const Hypha__V1__MeshAccessLog__Format *f)
{
    if (!f)
        return 0; /* Kuma's default, chosen by the sidecar per record kind */
    b->has_omit_empty = f->has_omit_empty_values;
    b->omit_empty = f->omit_empty_values;
    if (f->type && !strcmp(f->type, "Plain"))
        return dup_into(&b->plain, f->plain);
    if (f->n_json && !(b->json = calloc(f->n_json, sizeof(*b->json))))
        return HY_ENOMEM;
    for (size_t i = 0; i < f->n_json; i++) {
        Hypha__V1__DpHeader *h = malloc(sizeof(*h));
        if (!h)
            return HY_ENOMEM;
        hypha__v1__dp_header__init(h);
        b->json[b->n_json++] = h;
        if (dup_into(&h->name, f->json[i]->key) < 0 || dup_into(&h->value, f->json[i]->value) < 0)
            return HY_ENOMEM;
    }
    return 0;
}

/* An OpenTelemetry backend: its collector, body (copied) and attributes. */
static int add_otel(Hypha__V1__DpAccessLogBackend *b,
                    const Hypha__V1__MeshAccessLog__OtelBackend *o)
{
    int rc = dup_into(&b->address, o->endpoint);
    if (rc == 0 && o->body) {
        size_t n = protobuf_c_message_get_packed_size(&o->body->base);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
            return HY_ENOMEM;
        protobuf_c_message_pack(&o->body->base, buf);
        b->otel_body = hypha__v1__otel_any_value__unpack(NULL, n, buf);
        free(buf);
        if (!b->otel_body)
            return HY_ENOMEM;
    }
    if (rc == 0 && o->n_attributes &&
        !(b->otel_attributes = calloc(o->n_attributes, sizeof(*b->otel_attributes))))
        return HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < o->n_attributes; i++) {
        Hypha__V1__DpHeader *h = malloc(sizeof(*h));
        if (!h)
            return HY_ENOMEM;
        hypha__v1__dp_header__init(h);
        b->otel_attributes[b->n_otel_attributes++] = h;
        if (dup_into(&h->name, o->attributes[i]->key) < 0 ||
            dup_into(&h->value, o->attributes[i]->value) < 0)
            rc = HY_ENOMEM;
    }
    return rc;
}

/* The merged conf c as a DpAccessLog in *out (unset when nothing matched). */
static int to_dp(const struct hy_policy_conf *c, Hypha__V1__DpAccessLog **out)
{
    const Hypha__V1__MeshAccessLog__Conf *conf = (const void *)c->conf;
    if (!conf)
        return 0;
    Hypha__V1__DpAccessLog *a = malloc(sizeof(*a));
    if (!a)
        return HY_ENOMEM;
    hypha__v1__dp_access_log__init(a);
    *out = a;
    const struct hy_policy_origin *o = hy_policy_conf_origin(c, "backends");
    if (o && !(a->origin = hy_policy_origin_str(o, NULL)))
        return HY_ENOMEM;
    if (conf->n_backends && !(a->backends = calloc(conf->n_backends, sizeof(*a->backends))))
        return HY_ENOMEM;
    for (size_t i = 0; i < conf->n_backends; i++) {
        const Hypha__V1__MeshAccessLog__Backend *s = conf->backends[i];
        if (!s->type)
            continue;
        Hypha__V1__DpAccessLogBackend *b = malloc(sizeof(*b));
        if (!b)
            return HY_ENOMEM;
        hypha__v1__dp_access_log_backend__init(b);
        a->backends[a->n_backends++] = b;
        int rc = dup_into(&b->type, s->type);
        if (rc == 0 && s->file)
            rc = dup_into(&b->path, s->file->path);
        if (rc == 0 && s->file)
            rc = add_format(b, s->file->format);
        if (rc == 0 && s->tcp)
            rc = dup_into(&b->address, s->tcp->address);
        if (rc == 0 && s->tcp)
            rc = add_format(b, s->tcp->format);
        if (rc == 0 && s->open_telemetry)
            rc = add_otel(b, s->open_telemetry);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int hy_policy_inbound_access_log(const struct hy_policy_set *s, size_t i, Hypha__V1__DpInbound *in)
{
    struct hy_policy_conf c = {0};
    int rc = hy_policy_each_entry(s, "from", i, merge_entry, &c);
    if (rc == 0)
        rc = hy_policy_each_entry(s, "rules", i, merge_entry, &c);
    if (rc == 0)
        rc = to_dp(&c, &in->access_log);
    hy_policy_conf_fini(&c);
    return rc;
}

int hy_policy_outbound_access_log(const struct hy_policy_set *s, const char *svc,
                                  Hypha__V1__DpOutbound *o)
{
    struct hy_policy_tag dest[] = {{HY_TAG_SERVICE, svc}};
    struct hy_policy_tags tags = {dest, 1};
    struct hy_policy_conf c;
    int rc = hy_policy_merge(s, "to", SIZE_MAX, &tags, &c);
    if (rc == 0)
        rc = to_dp(&c, &o->access_log);
    hy_policy_conf_fini(&c);
    return rc;
}
