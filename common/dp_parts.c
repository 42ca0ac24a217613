/* A sidecar's config in parts: versions, applying an update, assembling
 * the config (dp_parts.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp_parts.h"
#include "error.h"
#include "wire.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

uint64_t hy_dp_hash(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void hex(uint64_t h, char *out)
{
    snprintf(out, HY_DP_VERSION_LEN + 1, "%016llx", (unsigned long long)h);
}

int hy_dp_msg_version(const ProtobufCMessage *m, char *out)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return HY_ENOMEM;
    protobuf_c_message_pack(m, p);
    hex(hy_dp_hash(HY_DP_HASH_INIT, p, len), out);
    free(p);
    return 0;
}

ProtobufCMessage *hy_dp_msg_copy(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return NULL;
    protobuf_c_message_pack(m, p);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, len, p);
    free(p);
    return c;
}

/* The hash of p's content (p's version unset while packing). */
static int content_version(Hypha__V1__DpPart *p, char *out)
{
    char *keep = p->version;
    p->version = NULL;
    int rc = hy_dp_msg_version(&p->base, out);
    p->version = keep;
    return rc;
}

int hy_dp_part_stamp(Hypha__V1__DpPart *p)
{
    char v[HY_DP_VERSION_LEN + 1];
    int rc = content_version(p, v);
    if (rc < 0)
        return rc;
    free(p->version);
    return (p->version = strdup(v)) ? 0 : HY_ENOMEM;
}

int hy_dp_ref_cmp(const struct hy_dp_ref *a, const struct hy_dp_ref *b)
{
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return strcmp(S(a->key), S(b->key));
}

static int ref_qcmp(const void *a, const void *b)
{
    return hy_dp_ref_cmp(a, b);
}

void hy_dp_whole_version(struct hy_dp_ref *refs, size_t n, char *out)
{
    if (n)
        qsort(refs, n, sizeof(*refs), ref_qcmp);
    uint64_t h = HY_DP_HASH_INIT;
    for (size_t i = 0; i < n; i++) {
        uint8_t k = (uint8_t)refs[i].kind;
        h = hy_dp_hash(h, &k, 1);
        h = hy_dp_hash(h, S(refs[i].key), strlen(S(refs[i].key)) + 1);
        h = hy_dp_hash(h, S(refs[i].version), strlen(S(refs[i].version)) + 1);
    }
    if (n)
        hex(h, out);
    else
        out[0] = '\0';
}

static struct hy_dp_ref ref_of(const Hypha__V1__DpPart *p)
{
    return (struct hy_dp_ref){(int)p->kind, p->key, p->version};
}

static int part_cmp(const Hypha__V1__DpPart *a, const Hypha__V1__DpPart *b)
{
    struct hy_dp_ref x = ref_of(a), y = ref_of(b);
    return hy_dp_ref_cmp(&x, &y);
}

static int part_qcmp(const void *a, const void *b)
{
    return part_cmp(*(Hypha__V1__DpPart *const *)a, *(Hypha__V1__DpPart *const *)b);
}

static const char *kind_name(int kind)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&hypha__v1__dp_part__kind__descriptor, kind);
    return v && kind ? v->name : NULL;
}

/* One part of an update: a known kind, a key exactly for Endpoints, the
 * version of its content. */
static bool check_part(Hypha__V1__DpPart *p, size_t i, char *why, size_t size)
{
    const char *kind = p->has_kind ? kind_name((int)p->kind) : NULL;
    char v[HY_DP_VERSION_LEN + 1];
    if (!kind) {
        snprintf(why, size, "parts[%zu]: unknown kind %d", i, p->has_kind ? (int)p->kind : 0);
        return false;
    }
    bool endpoints = p->kind == HYPHA__V1__DP_PART__KIND__Endpoints;
    if (endpoints && !(p->key && p->key[0])) {
        snprintf(why, size, "parts[%zu]: an Endpoints part must have a key (its service)", i);
        return false;
    }
    if (!endpoints && p->key) {
        snprintf(why, size, "parts[%zu]: a %s part has no key", i, kind);
        return false;
    }
    if (p->removed && !endpoints) {
        snprintf(why, size, "parts[%zu]: only an Endpoints part can be removed", i);
        return false;
    }
    if (content_version(p, v) < 0) {
        snprintf(why, size, "out of memory");
        return false;
    }
    if (!p->version || strcmp(p->version, v)) {
        snprintf(why, size, "parts[%zu] (%s %s): version %.20s is not its content's (%s)", i, kind,
                 S(p->key), S(p->version), v);
        return false;
    }
    return true;
}

void hy_dp_parts_fini(struct hy_dp_parts *p)
{
    for (size_t i = 0; p->owned && i < p->n; i++)
        protobuf_c_message_free_unpacked(&p->v[i]->base, NULL);
    free(p->v);
    memset(p, 0, sizeof(*p));
}

/* Sets p's whole version from its parts. */
static int set_version(struct hy_dp_parts *p)
{
    struct hy_dp_ref *refs = malloc((p->n ? p->n : 1) * sizeof(*refs));
    if (!refs)
        return HY_ENOMEM;
    for (size_t i = 0; i < p->n; i++)
        refs[i] = ref_of(p->v[i]);
    hy_dp_whole_version(refs, p->n, p->version);
    free(refs);
    return 0;
}

int hy_dp_parts_sort(struct hy_dp_parts *p)
{
    if (p->n)
        qsort(p->v, p->n, sizeof(*p->v), part_qcmp);
    for (size_t i = 1; i < p->n; i++)
        if (part_cmp(p->v[i - 1], p->v[i]) == 0)
            return HY_EINVAL;
    return set_version(p);
}

int hy_dp_parts_stage(const struct hy_dp_parts *held, const Hypha__V1__DpConfigUpdate *u,
                      struct hy_dp_parts *out, char *why, size_t size)
{
    memset(out, 0, sizeof(*out));
    static const struct hy_dp_parts none = {0};
    if (!S(u->from_version)[0])
        held = &none; /* a whole config: what was held goes */
    if (strcmp(S(u->from_version), held->version)) {
        snprintf(why, size, "the update applies on config %.20s, this sidecar holds %s",
                 S(u->from_version), held->version[0] ? held->version : "none");
        return HY_EINVAL;
    }
    if (u->n_parts > HY_DP_MAX_PARTS) {
        snprintf(why, size, "%zu parts, at most %d", u->n_parts, HY_DP_MAX_PARTS);
        return HY_EINVAL;
    }
    for (size_t i = 0; i < u->n_parts; i++)
        if (!check_part(u->parts[i], i, why, size))
            return HY_EINVAL;
    /* the update's parts sorted, to merge with held's (sorted too) */
    Hypha__V1__DpPart **up = malloc((u->n_parts ? u->n_parts : 1) * sizeof(*up));
    out->v = malloc((held->n + u->n_parts + 1) * sizeof(*out->v));
    if (!up || !out->v) {
        free(up);
        hy_dp_parts_fini(out);
        snprintf(why, size, "out of memory");
        return HY_ENOMEM;
    }
    if (u->n_parts) {
        memcpy(up, u->parts, u->n_parts * sizeof(*up));
        qsort(up, u->n_parts, sizeof(*up), part_qcmp);
    }
    int rc = 0;
    for (size_t i = 1; i < u->n_parts; i++)
        if (part_cmp(up[i - 1], up[i]) == 0) {
            snprintf(why, size, "the %s part %s is sent twice", kind_name((int)up[i]->kind),
                     S(up[i]->key));
            rc = HY_EINVAL;
        }
    size_t a = 0, b = 0;
    while (rc == 0 && (a < held->n || b < u->n_parts)) {
        int c = a == held->n ? 1 : b == u->n_parts ? -1 : part_cmp(held->v[a], up[b]);
        if (c < 0) {
            out->v[out->n++] = held->v[a++];
            continue;
        }
        if (!up[b]->removed)
            out->v[out->n++] = up[b];
        a += c == 0;
        b++;
    }
    free(up);
    if (rc == 0 && (rc = set_version(out)) == HY_ENOMEM)
        snprintf(why, size, "out of memory");
    if (rc == 0 && strcmp(out->version, S(u->version))) {
        snprintf(why, size, "the parts make config %s, not %.20s as the update says", out->version,
                 S(u->version));
        rc = HY_EINVAL;
    }
    if (rc < 0)
        hy_dp_parts_fini(out);
    return rc;
}

static bool in_set(const struct hy_dp_parts *s, const Hypha__V1__DpPart *p)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->v[mid] == p)
            return true;
        if (part_cmp(s->v[mid], p) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->v[lo] == p;
}

void hy_dp_parts_commit(struct hy_dp_parts *held, struct hy_dp_parts *staged,
                        Hypha__V1__DpConfigUpdate *u)
{
    for (size_t i = 0; held->owned && i < held->n; i++)
        if (!in_set(staged, held->v[i]))
            protobuf_c_message_free_unpacked(&held->v[i]->base, NULL);
    /* u's parts that did not make it (removals) are freed with u */
    size_t k = 0;
    for (size_t i = 0; i < u->n_parts; i++)
        if (!in_set(staged, u->parts[i]))
            u->parts[k++] = u->parts[i];
    u->n_parts = k;
    free(held->v);
    *held = *staged;
    held->owned = true;
    memset(staged, 0, sizeof(*staged));
}

/* The part of kind (and key) in p, or NULL. */
static const Hypha__V1__DpPart *find(const struct hy_dp_parts *p, int kind, const char *key)
{
    struct hy_dp_ref want = {kind, key, NULL};
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        struct hy_dp_ref at = ref_of(p->v[mid]);
        int c = hy_dp_ref_cmp(&at, &want);
        if (c == 0)
            return p->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static char *dup_or_empty(const char *s)
{
    return strdup(S(s));
}

/* o's endpoints: copies of the service's, each with the priority of its
 * zone; those left out (HY_DP_PRIORITY_EXCLUDED) dropped. */
static int outbound_endpoints(Hypha__V1__DpOutbound *o, const Hypha__V1__DpPart *eps)
{
    if (eps->n_endpoints && !(o->endpoints = calloc(eps->n_endpoints, sizeof(*o->endpoints))))
        return HY_ENOMEM;
    for (size_t i = 0; i < eps->n_endpoints; i++) {
        const char *zone = S(eps->endpoints[i]->zone);
        uint32_t prio = zone[0] ? (o->has_other_zones ? o->other_zones : 1) : 0;
        for (size_t z = 0; zone[0] && z < o->n_zone_priorities; z++)
            if (!strcmp(S(o->zone_priorities[z]->zone), zone))
                prio = o->zone_priorities[z]->priority;
        if (prio == HY_DP_PRIORITY_EXCLUDED)
            continue;
        Hypha__V1__DpEndpoint *e =
            (Hypha__V1__DpEndpoint *)hy_dp_msg_copy(&eps->endpoints[i]->base);
        if (!e)
            return HY_ENOMEM;
        e->has_priority = 1;
        e->priority = prio;
        o->endpoints[o->n_endpoints++] = e;
    }
    /* the priorities are now on the endpoints */
    for (size_t z = 0; z < o->n_zone_priorities; z++)
        protobuf_c_message_free_unpacked(&o->zone_priorities[z]->base, NULL);
    free(o->zone_priorities);
    o->zone_priorities = NULL;
    o->n_zone_priorities = 0;
    o->has_other_zones = 0;
    return 0;
}

int hy_dp_parts_assemble(const struct hy_dp_parts *p, Hypha__V1__DpConfig **out, char *why,
                         size_t size)
{
    *out = NULL;
    static const int need[] = {
        HYPHA__V1__DP_PART__KIND__Identity, HYPHA__V1__DP_PART__KIND__TrustBundle,
        HYPHA__V1__DP_PART__KIND__Inbounds, HYPHA__V1__DP_PART__KIND__Outbounds};
    const Hypha__V1__DpPart *have[4];
    for (size_t i = 0; i < 4; i++)
        if (!(have[i] = find(p, need[i], NULL))) {
            snprintf(why, size, "no %s part", kind_name(need[i]));
            return HY_EINVAL;
        }
    const Hypha__V1__DpIdentity *id = have[0]->identity;
    Hypha__V1__DpConfig *c = malloc(sizeof(*c));
    if (!c)
        goto nomem;
    hypha__v1__dp_config__init(c);
    *out = c;
    c->version = strdup(p->version);
    c->mesh = dup_or_empty(id ? id->mesh : NULL);
    c->name = dup_or_empty(id ? id->name : NULL);
    c->cert = dup_or_empty(id ? id->cert : NULL);
    c->chain = dup_or_empty(id ? id->chain : NULL);
    c->trust_bundle = dup_or_empty(have[1]->trust_bundle);
    if (!c->version || !c->mesh || !c->name || !c->cert || !c->chain || !c->trust_bundle)
        goto nomem;
    if (have[3]->transparent &&
        !(c->transparent = (Hypha__V1__DpTransparent *)hy_dp_msg_copy(&have[3]->transparent->base)))
        goto nomem;
    size_t nin = have[2]->n_inbounds, nout = have[3]->n_outbounds;
    if ((nin && !(c->inbounds = calloc(nin, sizeof(*c->inbounds)))) ||
        (nout && !(c->outbounds = calloc(nout, sizeof(*c->outbounds)))))
        goto nomem;
    for (; c->n_inbounds < nin; c->n_inbounds++)
        if (!(c->inbounds[c->n_inbounds] =
                  (Hypha__V1__DpInbound *)hy_dp_msg_copy(&have[2]->inbounds[c->n_inbounds]->base)))
            goto nomem;
    if (have[2]->metrics && /* MeshMetric rides in the Inbounds part */
        !(c->metrics = (Hypha__V1__DpMetrics *)hy_dp_msg_copy(&have[2]->metrics->base)))
        goto nomem;
    if (have[2]->trace && /* so does MeshTrace */
        !(c->trace = (Hypha__V1__DpTrace *)hy_dp_msg_copy(&have[2]->trace->base)))
        goto nomem;
    for (size_t i = 0; i < nout; i++) {
        const Hypha__V1__DpOutbound *src = have[3]->outbounds[i];
        const Hypha__V1__DpPart *eps =
            find(p, HYPHA__V1__DP_PART__KIND__Endpoints, S(src->service));
        if (!eps) {
            snprintf(why, size, "outbound %u: no Endpoints part for service %s", src->port,
                     S(src->service));
            hypha__v1__dp_config__free_unpacked(c, NULL);
            *out = NULL;
            return HY_EINVAL;
        }
        Hypha__V1__DpOutbound *o = (Hypha__V1__DpOutbound *)hy_dp_msg_copy(&src->base);
        if (!o)
            goto nomem;
        c->outbounds[c->n_outbounds++] = o;
        if (outbound_endpoints(o, eps) < 0)
            goto nomem;
    }
    return 0;
nomem:
    if (c)
        hypha__v1__dp_config__free_unpacked(c, NULL);
    *out = NULL;
    snprintf(why, size, "out of memory");
    return HY_ENOMEM;
}

int hy_dp_parts_refs(const struct hy_dp_parts *p, Hypha__V1__DpPartRef ***refs, size_t *n)
{
    *refs = NULL;
    *n = 0;
    if (!p->n)
        return 0;
    Hypha__V1__DpPartRef **v = calloc(p->n, sizeof(*v));
    if (!v)
        return HY_ENOMEM;
    for (size_t i = 0; i < p->n; i++) {
        if (!(v[i] = malloc(sizeof(*v[i])))) {
            for (size_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return HY_ENOMEM;
        }
        hypha__v1__dp_part_ref__init(v[i]);
        v[i]->has_kind = 1;
        v[i]->kind = p->v[i]->kind;
        v[i]->key = p->v[i]->key;
        v[i]->version = p->v[i]->version;
    }
    *refs = v;
    *n = p->n;
    return 0;
}

static Hypha__V1__DpPart *split_part(Hypha__V1__DpConfigUpdate *u, int kind, const char *key)
{
    Hypha__V1__DpPart *p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    hypha__v1__dp_part__init(p);
    u->parts[u->n_parts++] = p;
    p->has_kind = 1;
    p->kind = kind;
    if (key && !(p->key = strdup(key)))
        return NULL;
    return p;
}

/* Copies of the n messages at src into a new array at *dst. */
static int copy_all(void *dst, size_t *ndst, void *const *src, size_t n)
{
    ProtobufCMessage ***d = dst;
    *ndst = 0;
    if (!n)
        return 0;
    if (!(*d = calloc(n, sizeof(**d))))
        return HY_ENOMEM;
    for (; *ndst < n; ++*ndst)
        if (!((*d)[*ndst] = hy_dp_msg_copy(src[*ndst])))
            return HY_ENOMEM;
    return 0;
}

int hy_dp_zone_priority_add(Hypha__V1__DpOutbound *o, const char *zone, uint32_t prio)
{
    for (size_t i = 0; i < o->n_zone_priorities; i++)
        if (!strcmp(S(o->zone_priorities[i]->zone), zone))
            return 0;
    Hypha__V1__DpZonePriority **v =
        realloc(o->zone_priorities, (o->n_zone_priorities + 1) * sizeof(*v));
    Hypha__V1__DpZonePriority *p = v ? malloc(sizeof(*p)) : NULL;
    if (v)
        o->zone_priorities = v;
    if (!p)
        return HY_ENOMEM;
    hypha__v1__dp_zone_priority__init(p);
    p->has_priority = 1;
    p->priority = prio;
    v[o->n_zone_priorities++] = p;
    return (p->zone = strdup(zone)) ? 0 : HY_ENOMEM;
}

static int split_outbound(Hypha__V1__DpOutbound *o)
{
    for (size_t i = 0; i < o->n_endpoints; i++) {
        const Hypha__V1__DpEndpoint *e = o->endpoints[i];
        int rc = e->zone && e->zone[0]
                     ? hy_dp_zone_priority_add(o, e->zone, e->has_priority ? e->priority : 0)
                     : 0;
        if (rc < 0)
            return rc;
    }
    o->has_other_zones = 1;
    o->other_zones = 1;
    for (size_t i = 0; i < o->n_endpoints; i++)
        protobuf_c_message_free_unpacked(&o->endpoints[i]->base, NULL);
    free(o->endpoints);
    o->endpoints = NULL;
    o->n_endpoints = 0;
    return 0;
}

int hy_dp_parts_split(const Hypha__V1__DpConfig *c, Hypha__V1__DpConfigUpdate **out)
{
    Hypha__V1__DpConfigUpdate *u = malloc(sizeof(*u));
    *out = NULL;
    if (!u)
        return HY_ENOMEM;
    hypha__v1__dp_config_update__init(u);
    int rc = (u->parts = calloc(c->n_outbounds + 4, sizeof(*u->parts))) ? 0 : HY_ENOMEM;
    Hypha__V1__DpPart *p = rc == 0 ? split_part(u, HYPHA__V1__DP_PART__KIND__Identity, NULL) : NULL;
    Hypha__V1__DpIdentity *id = p ? malloc(sizeof(*id)) : NULL;
    if (id) {
        hypha__v1__dp_identity__init(id);
        p->identity = id;
        id->mesh = strdup(S(c->mesh));
        id->name = strdup(S(c->name));
        id->cert = strdup(S(c->cert));
        id->chain = strdup(S(c->chain));
    }
    if (!id || !id->mesh || !id->name || !id->cert || !id->chain)
        rc = HY_ENOMEM;
    if (rc == 0 && (!(p = split_part(u, HYPHA__V1__DP_PART__KIND__TrustBundle, NULL)) ||
                    !(p->trust_bundle = strdup(S(c->trust_bundle)))))
        rc = HY_ENOMEM;
    if (rc == 0)
        rc = (p = split_part(u, HYPHA__V1__DP_PART__KIND__Inbounds, NULL))
                 ? copy_all(&p->inbounds, &p->n_inbounds, (void *const *)c->inbounds, c->n_inbounds)
                 : HY_ENOMEM;
    if (rc == 0 && c->metrics &&
        !(p->metrics = (Hypha__V1__DpMetrics *)hy_dp_msg_copy(&c->metrics->base)))
        rc = HY_ENOMEM;
    if (rc == 0 && c->trace && !(p->trace = (Hypha__V1__DpTrace *)hy_dp_msg_copy(&c->trace->base)))
        rc = HY_ENOMEM;
    Hypha__V1__DpPart *outs = NULL;
    if (rc == 0)
        rc = (outs = split_part(u, HYPHA__V1__DP_PART__KIND__Outbounds, NULL))
                 ? copy_all(&outs->outbounds, &outs->n_outbounds, (void *const *)c->outbounds,
                            c->n_outbounds)
                 : HY_ENOMEM;
    if (rc == 0 && c->transparent &&
        !(outs->transparent = (Hypha__V1__DpTransparent *)hy_dp_msg_copy(&c->transparent->base)))
        rc = HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < c->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = c->outbounds[i];
        bool seen = false;
        for (size_t k = 0; k < i; k++)
            seen = seen || !strcmp(S(c->outbounds[k]->service), S(o->service));
        if (!seen && !(p = split_part(u, HYPHA__V1__DP_PART__KIND__Endpoints, S(o->service))))
            rc = HY_ENOMEM;
        if (!seen && rc == 0)
            rc = copy_all(&p->endpoints, &p->n_endpoints, (void *const *)o->endpoints,
                          o->n_endpoints);
        for (size_t e = 0; !seen && rc == 0 && e < p->n_endpoints; e++)
            p->endpoints[e]->has_priority = 0;
        if (rc == 0)
            rc = split_outbound(outs->outbounds[i]);
    }
    for (size_t i = 0; rc == 0 && i < u->n_parts; i++)
        rc = hy_dp_part_stamp(u->parts[i]);
    struct hy_dp_parts set = {.v = u->parts, .n = u->n_parts};
    char v[HY_DP_VERSION_LEN + 1] = "";
    if (rc == 0 && (rc = hy_dp_parts_sort(&set)) == 0) {
        memcpy(v, set.version, sizeof(v));
        rc = (u->version = strdup(v)) ? 0 : HY_ENOMEM;
    }
    if (rc < 0) {
        hypha__v1__dp_config_update__free_unpacked(u, NULL);
        return rc;
    }
    *out = u;
    return 0;
}

static size_t varint(uint64_t v, uint8_t *out)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

/* Field `field` (wire type 2: length-delimited) of len bytes: its key and
 * length at out (at most 1 + 10 bytes); returns how many. */
static size_t lead(unsigned field, size_t len, uint8_t *out)
{
    size_t n = varint((uint64_t)field << 3 | 2, out);
    return n + varint(len, out + n);
}

/* The DpMessage field of the update and DpConfigUpdate's fields. */
enum { F_UPDATE = 8, F_VERSION = 1, F_FROM = 2, F_PARTS = 3 };

int hy_dp_update_pack(const char *version, const char *from_version,
                      const struct hy_dp_packed *parts, size_t n, uint8_t **out, size_t *len)
{
    uint8_t tmp[24];
    size_t lv = version ? strlen(version) : 0, lf = from_version ? strlen(from_version) : 0;
    size_t inner = (version ? lead(F_VERSION, lv, tmp) + lv : 0) +
                   (from_version ? lead(F_FROM, lf, tmp) + lf : 0);
    for (size_t i = 0; i < n; i++)
        inner += lead(F_PARTS, parts[i].len, tmp) + parts[i].len;
    size_t total = lead(F_UPDATE, inner, tmp) + inner;
    uint8_t *p = malloc(total ? total : 1);
    *out = p;
    *len = total;
    if (!p)
        return HY_ENOMEM;
    p += lead(F_UPDATE, inner, p);
    if (version) {
        p += lead(F_VERSION, lv, p);
        memcpy(p, version, lv);
        p += lv;
    }
    if (from_version) {
        p += lead(F_FROM, lf, p);
        memcpy(p, from_version, lf);
        p += lf;
    }
    for (size_t i = 0; i < n; i++) {
        p += lead(F_PARTS, parts[i].len, p);
        if (parts[i].len)
            memcpy(p, parts[i].data, parts[i].len);
        p += parts[i].len;
    }
    return 0;
}
