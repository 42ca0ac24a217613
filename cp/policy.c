/* Selecting and ordering the policies of a proxy, and walking their
 * entries (policy.h). Policies are read through their descriptors: every
 * policy message has a top-level `target_ref` and entry lists `from`,
 * `to` (and `rules`) whose entries hold `target_ref` and `default`. */
#include <stdlib.h>
#include <string.h>

#include "dataplane.pb-c.h"
#include "error.h"
#include "policy.h"
#include "store.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

enum hy_policy_rank hy_policy_rank_of(const Hypha__V1__TargetRef *t)
{
    if (!t || !t->has_kind)
        return HY_POLICY_RANK_MESH;
    switch (t->kind) {
    case HYPHA__V1__TARGET_REF__KIND__MeshSubset:
        return HY_POLICY_RANK_MESH_SUBSET;
    case HYPHA__V1__TARGET_REF__KIND__MeshService:
        return HY_POLICY_RANK_MESH_SERVICE;
    case HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset:
        return HY_POLICY_RANK_MESH_SERVICE_SUBSET;
    case HYPHA__V1__TARGET_REF__KIND__Dataplane:
        return t->name && t->name[0] ? HY_POLICY_RANK_DATAPLANE_NAME
                                     : HY_POLICY_RANK_DATAPLANE_LABELS;
    default:
        return HY_POLICY_RANK_MESH;
    }
}

/* Does the peer carry key=value? A peer may carry one key with several
 * values (a caller whose inbounds serve two services shows both). */
static bool has_tag(const struct hy_policy_tags *t, const char *key, const char *value)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].key, key) && !strcmp(t->v[i].value, value))
            return true;
    return false;
}

static bool has_tags(const struct hy_policy_tags *have, size_t n,
                     Hypha__V1__TargetRef__TagsEntry *const *want)
{
    for (size_t i = 0; i < n; i++)
        if (!has_tag(have, S(want[i]->key), S(want[i]->value)))
            return false;
    return true;
}

bool hy_policy_ref_matches(const Hypha__V1__TargetRef *t, const struct hy_policy_tags *peer)
{
    if (!t || !t->has_kind)
        return true;
    switch (t->kind) {
    case HYPHA__V1__TARGET_REF__KIND__Mesh:
        return true;
    case HYPHA__V1__TARGET_REF__KIND__MeshSubset:
        return has_tags(peer, t->n_tags, t->tags);
    case HYPHA__V1__TARGET_REF__KIND__MeshService:
        return has_tag(peer, HY_TAG_SERVICE, S(t->name));
    case HYPHA__V1__TARGET_REF__KIND__MeshServiceSubset:
        return has_tag(peer, HY_TAG_SERVICE, S(t->name)) && has_tags(peer, t->n_tags, t->tags);
    default:
        return false; /* Dataplane names a proxy, never a peer */
    }
}

static const Hypha__V1__Dataplane__Networking__Inbound *inbound_at(const struct hy_policy_proxy *p,
                                                                   size_t i)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)p->dp->spec;
    return d->networking && i < d->networking->n_inbound ? d->networking->inbound[i] : NULL;
}

static size_t inbound_count(const struct hy_policy_proxy *p)
{
    const Hypha__V1__Dataplane *d = (const Hypha__V1__Dataplane *)p->dp->spec;
    size_t n = d->networking ? d->networking->n_inbound : 0;
    return n < HY_POLICY_MAX_INBOUNDS ? n : HY_POLICY_MAX_INBOUNDS;
}

size_t hy_policy_inbound_tags(const struct hy_policy_proxy *p, size_t i, struct hy_policy_tag *buf,
                              size_t cap)
{
    const Hypha__V1__Dataplane__Networking__Inbound *in = inbound_at(p, i);
    size_t n = 0;
    bool zone = false;
    for (size_t k = 0; in && k < in->n_tags && n < cap; k++) {
        buf[n++] = (struct hy_policy_tag){S(in->tags[k]->key), S(in->tags[k]->value)};
        zone = zone || !strcmp(S(in->tags[k]->key), HY_TAG_ZONE);
    }
    if (!zone && p->zone && n < cap)
        buf[n++] = (struct hy_policy_tag){HY_TAG_ZONE, p->zone};
    return n;
}

/* The inbounds of p a sectionName names (bit i: inbound i), as Kuma's docs
 * resolve it ("Using a sectionName"): the inbounds whose name it is; when
 * none has that name, the inbounds without a name whose port it is. */
static uint64_t section_inbounds(const struct hy_policy_proxy *p, const char *section)
{
    size_t n = inbound_count(p);
    uint64_t named = 0, ported = 0;
    char *end;
    unsigned long port = strtoul(section, &end, 10);
    bool numeric = section[0] && !*end;
    for (size_t i = 0; i < n; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = inbound_at(p, i);
        if (in->name && in->name[0]) {
            if (!strcmp(in->name, section))
                named |= 1ull << i;
        } else if (numeric && in->has_port && port == in->port) {
            ported |= 1ull << i;
        }
    }
    return named ? named : ported;
}

/* Does the Dataplane carry every label? Kuma labels every Dataplane with
 * its zone (kuma.io/zone, read as hypha.io/zone), so a Dataplane that does
 * not set that label carries its proxy's zone, as its inbounds do. */
static bool labels_match(const struct hy_policy_proxy *p, size_t n,
                         Hypha__V1__TargetRef__LabelsEntry *const *want)
{
    const Hypha__V1__Meta *m = p->dp->meta;
    for (size_t i = 0; i < n; i++) {
        bool found = false, has_key = false;
        for (size_t k = 0; m && k < m->n_labels && !found; k++) {
            bool key = !strcmp(S(m->labels[k]->key), S(want[i]->key));
            has_key = has_key || key;
            found = key && !strcmp(S(m->labels[k]->value), S(want[i]->value));
        }
        if (!found && !has_key && p->zone && !strcmp(S(want[i]->key), HY_TAG_ZONE))
            found = !strcmp(p->zone, S(want[i]->value));
        if (!found)
            return false;
    }
    return true;
}

/* The inbounds of p that a top-level targetRef selects (bit i: inbound i).
 * A proxy with no inbound (a pure client) is selected as a whole, bit 0,
 * by the kinds that do not need an inbound's tags. */
static uint64_t selected_inbounds(const Hypha__V1__TargetRef *t, const struct hy_policy_proxy *p)
{
    size_t n = inbound_count(p);
    uint64_t all = n ? (n == 64 ? ~0ull : (1ull << n) - 1) : 1;
    uint64_t bits = 0;
    if (t && t->n_proxy_types) { /* every proxy here is a Sidecar: Hypha has no gateways */
        size_t k = 0;
        while (k < t->n_proxy_types && strcmp(S(t->proxy_types[k]), "Sidecar"))
            k++;
        if (k == t->n_proxy_types)
            return 0;
    }
    if (!t || !t->has_kind || t->kind == HYPHA__V1__TARGET_REF__KIND__Mesh)
        return all;
    uint64_t section = t->section_name ? section_inbounds(p, t->section_name) : all;
    if (t->kind == HYPHA__V1__TARGET_REF__KIND__Dataplane) {
        if (t->name && t->name[0] && strcmp(t->name, S(p->dp->meta->name)))
            return 0;
        if (!labels_match(p, t->n_labels, t->labels))
            return 0;
        return section;
    }
    for (size_t i = 0; i < n; i++) {
        struct hy_policy_tag buf[64];
        struct hy_policy_tags tags = {buf, hy_policy_inbound_tags(p, i, buf, 64)};
        if (hy_policy_ref_matches(t, &tags))
            bits |= 1ull << i;
    }
    return bits & section;
}

static const Hypha__V1__TargetRef *top_ref(const struct hy_resource *r)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(r->spec->descriptor, "target_ref");
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        f->descriptor != &hypha__v1__target_ref__descriptor)
        return NULL;
    return *(Hypha__V1__TargetRef *const *)((const char *)r->spec + f->offset);
}

static bool zone_origin(const struct hy_resource *r)
{
    return r->origin && strcmp(r->origin, "global");
}

/* Kuma's shadow mode: a policy labelled kuma.io/effect: shadow (read as
 * hypha.io/effect) is kept but selects no proxy (policy_warn.c says so
 * when it is written). */
static bool shadowed(const struct hy_resource *r)
{
    const Hypha__V1__Meta *m = r->meta;
    for (size_t i = 0; m && i < m->n_labels; i++)
        if (!strcmp(S(m->labels[i]->key), "hypha.io/effect") &&
            !strcmp(S(m->labels[i]->value), "shadow"))
            return true;
    return false;
}

/* Merge order: less specific first (a sectionName after none); equal
 * ranks global-origin first; then names in reverse order, so the name that
 * sorts first comes last and wins. */
static int by_merge_order(const void *a, const void *b)
{
    const struct hy_policy_sel *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->section != y->section)
        return x->section ? 1 : -1;
    bool zx = zone_origin(x->r), zy = zone_origin(y->r);
    if (zx != zy)
        return zx ? 1 : -1;
    return -strcmp(S(x->r->meta->name), S(y->r->meta->name));
}

int hy_policy_select(struct hy_resource *const *v, size_t n, const struct hy_policy_proxy *p,
                     struct hy_policy_set *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const struct hy_resource *r = v[i];
        if (strcmp(S(r->meta->mesh), S(p->dp->meta->mesh)))
            continue;
        if (shadowed(r))
            continue;
        /* a policy made in a zone applies to that zone's proxies only (Kuma
         * docs: "Global, zonal, producer and consumer policies") */
        if (zone_origin(r) && p->zone && strcmp(r->origin, p->zone))
            continue;
        const Hypha__V1__TargetRef *t = top_ref(r);
        uint64_t bits = selected_inbounds(t, p);
        if (!bits)
            continue;
        struct hy_policy_sel *nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
        if (!nv) {
            hy_policy_set_fini(out);
            return HY_ENOMEM;
        }
        out->v = nv;
        nv[out->n++] = (struct hy_policy_sel){r, hy_policy_rank_of(t), t && t->section_name, bits};
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), by_merge_order);
    return 0;
}

void hy_policy_set_fini(struct hy_policy_set *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* One entry of a policy in the set, for ordering `to` entries. */
struct entry_ref {
    size_t sel, index; /* s->v[sel], entry index in its section */
    const Hypha__V1__TargetRef *ref;
    const ProtobufCMessage *conf;
};

/* `to` entries: by their policy's targetRef, sectionName and origin; then
 * by their own targetRef (Mesh before MeshService, a sectionName after
 * none); then by policy name (the one sorting first last); then as
 * written. Kuma's outbound entry order. */
static int by_to_order(const void *a, const void *b, void *set)
{
    const struct hy_policy_set *sorting = set;
    const struct entry_ref *x = a, *y = b;
    const struct hy_policy_sel *px = &sorting->v[x->sel], *py = &sorting->v[y->sel];
    if (px->rank != py->rank)
        return px->rank < py->rank ? -1 : 1;
    if (px->section != py->section)
        return px->section ? 1 : -1;
    bool zx = zone_origin(px->r), zy = zone_origin(py->r);
    if (zx != zy)
        return zx ? 1 : -1;
    enum hy_policy_rank kx = hy_policy_rank_of(x->ref), ky = hy_policy_rank_of(y->ref);
    if (kx != ky)
        return kx < ky ? -1 : 1;
    bool sx = x->ref && x->ref->section_name, sy = y->ref && y->ref->section_name;
    if (sx != sy)
        return sx ? 1 : -1;
    int c = -strcmp(S(px->r->meta->name), S(py->r->meta->name));
    if (c)
        return c;
    if (x->sel != y->sel)
        return x->sel < y->sel ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

int hy_policy_each_entry(const struct hy_policy_set *s, const char *section, size_t inbound,
                         hy_policy_entry_fn fn, void *ud)
{
    struct entry_ref *v = NULL;
    size_t nv = 0;
    int rc = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        const struct hy_resource *r = s->v[i].r;
        if (inbound != SIZE_MAX && inbound < 64 && !(s->v[i].inbounds & (1ull << inbound)))
            continue;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(r->spec->descriptor, section);
        if (!f || f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        size_t n = *(const size_t *)((const char *)r->spec + f->quantifier_offset);
        ProtobufCMessage *const *entries =
            *(ProtobufCMessage *const *const *)((const char *)r->spec + f->offset);
        if (n == 0)
            continue;
        struct entry_ref *nvv = realloc(v, (nv + n) * sizeof(*v));
        if (!nvv) {
            rc = HY_ENOMEM;
            break;
        }
        v = nvv;
        for (size_t k = 0; k < n; k++) {
            const ProtobufCMessage *e = entries[k];
            const ProtobufCFieldDescriptor *tf =
                protobuf_c_message_descriptor_get_field_by_name(e->descriptor, "target_ref");
            const ProtobufCFieldDescriptor *df =
                protobuf_c_message_descriptor_get_field_by_name(e->descriptor, "default");
            v[nv++] = (struct entry_ref){
                i, k, tf ? *(Hypha__V1__TargetRef *const *)((const char *)e + tf->offset) : NULL,
                df ? *(ProtobufCMessage *const *)((const char *)e + df->offset) : NULL};
        }
    }
    if (rc == 0 && nv > 1 && !strcmp(section, "to")) {
        qsort_r(v, nv, sizeof(*v), by_to_order, (void *)s);
    }
    for (size_t i = 0; rc == 0 && i < nv; i++) {
        struct hy_policy_origin o = {s->v[v[i].sel].r, section, v[i].index};
        rc = fn(ud, v[i].ref, v[i].conf, &o);
    }
    free(v);
    return rc;
}

struct merge_walk {
    const struct hy_policy_tags *peer;
    struct hy_policy_conf *out;
};

static int merge_one(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                     const struct hy_policy_origin *o)
{
    struct merge_walk *w = ud;
    if (!hy_policy_ref_matches(ref, w->peer))
        return 0;
    return hy_policy_conf_merge(w->out, conf, o);
}

int hy_policy_merge(const struct hy_policy_set *s, const char *section, size_t inbound,
                    const struct hy_policy_tags *peer, struct hy_policy_conf *out)
{
    memset(out, 0, sizeof(*out));
    struct merge_walk w = {peer, out};
    int rc = hy_policy_each_entry(s, section, inbound, merge_one, &w);
    if (rc < 0)
        hy_policy_conf_fini(out);
    return rc;
}

static int merge_any(void *ud, const Hypha__V1__TargetRef *ref, const ProtobufCMessage *conf,
                     const struct hy_policy_origin *o)
{
    (void)ref; /* any caller: the types merged so name the Mesh only (validation) */
    return hy_policy_conf_merge(ud, conf, o);
}

int hy_policy_merge_inbound(const struct hy_policy_set *s, size_t inbound,
                            struct hy_policy_conf *out)
{
    memset(out, 0, sizeof(*out));
    int rc = hy_policy_each_entry(s, "from", inbound, merge_any, out);
    if (rc == 0)
        rc = hy_policy_each_entry(s, "rules", inbound, merge_any, out);
    if (rc < 0)
        hy_policy_conf_fini(out);
    return rc;
}

/* ----- the policies of a store ----- */

const char *const hy_policy_type_names[HY_POLICY_NTYPES] = {
    "MeshTrafficPermission",
    "MeshTimeout",
    "MeshRetry",
    "MeshCircuitBreaker",
    "MeshLoadBalancingStrategy",
    "MeshHealthCheck",
    "MeshHTTPRoute",
    "MeshTCPRoute",
    "MeshFaultInjection",
    "MeshRateLimit",
    "MeshMetric",
    "MeshAccessLog",
    "MeshTrace",
};

static int world_add(struct hy_policy_world *w, int t, struct hy_resource *r)
{
    struct hy_resource **nv = realloc(w->v[t], (w->n[t] + 1) * sizeof(*nv));
    if (!nv)
        return HY_ENOMEM;
    w->v[t] = nv;
    nv[w->n[t]++] = r;
    return 0;
}

struct collect {
    struct hy_policy_world *w;
    int type;
};

static int keep(void *ud, struct hy_resource *r, bool *take)
{
    struct collect *c = ud;
    int rc = world_add(c->w, c->type, r);
    *take = rc == 0;
    return rc;
}

int hy_policy_world_load(struct hy_store *s, struct hy_policy_world *w)
{
    memset(w, 0, sizeof(*w));
    int rc = 0;
    for (int t = 0; rc == 0 && t < HY_POLICY_NTYPES; t++) {
        struct collect c = {w, t};
        rc = hy_store_each(s, hy_policy_type_names[t], keep, &c);
    }
    if (rc < 0)
        hy_policy_world_fini(w);
    return rc;
}

int hy_policy_world_put(struct hy_policy_world *w, struct hy_resource *r)
{
    for (int t = 0; t < HY_POLICY_NTYPES; t++) {
        if (strcmp(r->type->name, hy_policy_type_names[t]))
            continue;
        for (size_t i = 0; i < w->n[t]; i++) {
            const Hypha__V1__Meta *m = w->v[t][i]->meta;
            if (!strcmp(S(m->mesh), S(r->meta->mesh)) && !strcmp(S(m->name), S(r->meta->name))) {
                hy_resource_free(w->v[t][i]);
                w->v[t][i] = r;
                return 0;
            }
        }
        int rc = world_add(w, t, r);
        if (rc < 0)
            hy_resource_free(r);
        return rc;
    }
    return HY_EINVAL;
}

void hy_policy_world_fini(struct hy_policy_world *w)
{
    for (int t = 0; t < HY_POLICY_NTYPES; t++) {
        for (size_t i = 0; i < w->n[t]; i++)
            hy_resource_free(w->v[t][i]);
        free(w->v[t]);
    }
    memset(w, 0, sizeof(*w));
}

int hy_policy_select_all(const struct hy_policy_world *w, const struct hy_policy_proxy *p,
                         struct hy_policy_set sel[HY_POLICY_NTYPES])
{
    memset(sel, 0, HY_POLICY_NTYPES * sizeof(*sel));
    int rc = 0;
    for (int t = 0; rc == 0 && t < HY_POLICY_NTYPES; t++)
        rc = hy_policy_select(w->v[t], w->n[t], p, &sel[t]);
    if (rc < 0)
        hy_policy_sets_fini(sel);
    return rc;
}

void hy_policy_sets_fini(struct hy_policy_set sel[HY_POLICY_NTYPES])
{
    for (int t = 0; t < HY_POLICY_NTYPES; t++)
        hy_policy_set_fini(&sel[t]);
}
