/* KDS scopes and ZoneInsight bookkeeping, shared by kds_server and
 * kds_client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp.h"
#include "error.h"
#include "kds.h"
#include "poison.h"

bool hy_kds_to_zone(const struct hy_rtype *t, const char *origin, const char *zone)
{
    if (t->secret)
        return false;
    if (!strcmp(t->name, "ZoneIngress"))
        return origin && origin[0] && strcmp(origin, "global") != 0 && strcmp(origin, zone) != 0;
    if (t->origin != HY_ORIGIN_GLOBAL || !strcmp(t->name, "Zone"))
        return false;
    /* of the system types, trust roots, token keys and revocations travel;
     * ZoneInsight stays on the global CP */
    if (t->system && strcmp(t->name, "MeshCaRoot") && strcmp(t->name, "TokenSigningKey") &&
        strcmp(t->name, "TokenRevocation"))
        return false;
    return !origin || !origin[0] || !strcmp(origin, "global");
}

bool hy_kds_from_zone(const struct hy_rtype *t, const char *origin, const char *zone)
{
    return t->origin == HY_ORIGIN_ZONE && origin && !strcmp(origin, zone);
}

void hy_kds_log_refused(const char *peer, const Hypha__V1__Ack *a, char *last_error, size_t size)
{
    for (size_t i = 0; i < a->n_refused && i < 10; i++) {
        const Hypha__V1__Refused *f = a->refused[i];
        const Hypha__V1__ResourceKey *k = f->key;
        hy_log(HY_LOG_WARN, "kds", "%s refused %.64s %.64s%s%.260s: %.300s", peer,
               k && k->type ? k->type : "?", k && k->mesh ? k->mesh : "", k && k->mesh ? "/" : "",
               k && k->name ? k->name : "?", f->reason ? f->reason : "");
    }
    if (a->n_refused > 10)
        hy_log(HY_LOG_WARN, "kds", "%s refused %zu more", peer, a->n_refused - 10);
    if (a->n_refused) {
        const Hypha__V1__Refused *f = a->refused[0];
        snprintf(last_error, size, "%s refused %zu resources (first: %.60s: %.120s)", peer,
                 a->n_refused, f->key && f->key->name ? f->key->name : "?",
                 f->reason ? f->reason : "");
    }
}

int hy_kds_ack_build(Hypha__V1__Ack *ack, uint64_t to, const struct hy_kds_applied *done)
{
    size_t n = done->n_refused;
    hypha__v1__ack__init(ack);
    ack->has_to = 1;
    ack->to = to;
    if (!n)
        return 0;
    /* one block: the vector, then the entries, then their keys */
    char *block = calloc(1, n * (sizeof(Hypha__V1__Refused *) + sizeof(Hypha__V1__Refused) +
                                 sizeof(Hypha__V1__ResourceKey)));
    if (!block)
        return HY_ENOMEM;
    Hypha__V1__Refused **v = (Hypha__V1__Refused **)block;
    Hypha__V1__Refused *refused = (Hypha__V1__Refused *)(v + n);
    Hypha__V1__ResourceKey *keys = (Hypha__V1__ResourceKey *)(refused + n);
    for (size_t i = 0; i < n; i++) {
        const struct hy_kds_refusal *f = &done->refused[i];
        hypha__v1__resource_key__init(&keys[i]);
        hypha__v1__refused__init(&refused[i]);
        keys[i].type = f->type;
        keys[i].mesh = f->mesh[0] ? f->mesh : NULL;
        keys[i].name = f->name;
        refused[i].key = &keys[i];
        refused[i].reason = f->reason;
        v[i] = &refused[i];
    }
    ack->n_refused = n;
    ack->refused = v;
    return 0;
}

void hy_kds_ack_fini(Hypha__V1__Ack *ack)
{
    free(ack->refused);
    ack->refused = NULL;
    ack->n_refused = 0;
}

const char *hy_kds_changes_what(const Hypha__V1__Changes *c, char *buf, size_t size)
{
    if (c->snapshot && c->has_part)
        snprintf(buf, size, " from snapshot part %u%s", (unsigned)c->part,
                 c->more ? " (more to come)" : " (the last)");
    else
        snprintf(buf, size, "%s", c->snapshot ? " from a snapshot" : "");
    return buf;
}

void hy_kds_set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

Hypha__V1__ZoneInsight__Subscription *hy_kds_insight_current(Hypha__V1__ZoneInsight *zi, bool add)
{
    if (!add && zi->n_subscriptions)
        return zi->subscriptions[zi->n_subscriptions - 1];
    Hypha__V1__ZoneInsight__Subscription *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    hypha__v1__zone_insight__subscription__init(s);
    char id[17];
    if (hy_cp_random_hex(id, 8) == 0)
        s->id = strdup(id);
    s->connect_time = hy_timestamp_now();
    if (zi->n_subscriptions >= HY_KDS_INSIGHT_SUBSCRIPTIONS) {
        protobuf_c_message_free_unpacked(&zi->subscriptions[0]->base, NULL);
        memmove(zi->subscriptions, zi->subscriptions + 1,
                (zi->n_subscriptions - 1) * sizeof(*zi->subscriptions));
        zi->n_subscriptions--;
    }
    Hypha__V1__ZoneInsight__Subscription **v =
        realloc(zi->subscriptions, (zi->n_subscriptions + 1) * sizeof(*v));
    if (!v) {
        protobuf_c_message_free_unpacked(&s->base, NULL);
        return NULL;
    }
    zi->subscriptions = v;
    v[zi->n_subscriptions++] = s;
    return s;
}

int hy_kds_insight_build(struct hy_store *s, const char *name,
                         void (*edit)(Hypha__V1__ZoneInsight *zi, void *ud), void *ud,
                         struct hy_resource **out)
{
    struct hy_resource *r = NULL;
    int rc = hy_store_get(s, "ZoneInsight", NULL, name, &r);
    if (rc == HY_ENOTFOUND) {
        r = hy_resource_new(hy_rtype_by_name("ZoneInsight"));
        if (!r || hy_resource_set_name(r, NULL, name) < 0) {
            hy_resource_free(r);
            return HY_ENOMEM;
        }
    } else if (rc < 0) {
        return rc;
    }
    edit((Hypha__V1__ZoneInsight *)r->spec, ud);
    *out = r;
    return 0;
}

int hy_kds_insight_edit(struct hy_store *s, const char *name,
                        void (*edit)(Hypha__V1__ZoneInsight *zi, void *ud), void *ud)
{
    struct hy_resource *r = NULL;
    int rc = hy_kds_insight_build(s, name, edit, ud, &r);
    if (rc < 0)
        return rc;
    struct hy_store_write w;
    rc = hy_store_put(s, r, HY_VERSION_ANY, &w);
    hy_resource_free(r);
    return rc;
}

void hy_kds_outbox_init(struct hy_kds_outbox *o, uint64_t acked, bool parts, size_t max_bytes)
{
    *o = (struct hy_kds_outbox){.acked = acked, .parts = parts, .budget = {.max_bytes = max_bytes}};
}

void hy_kds_outbox_fini(struct hy_kds_outbox *o)
{
    hy_kds_snap_tx_reset(&o->snap);
    o->in_flight = o->sent_more = false;
}

bool hy_kds_has_feature(char *const *features, size_t n, const char *f)
{
    for (size_t i = 0; i < n; i++)
        if (features[i] && !strcmp(features[i], f))
            return true;
    return false;
}

int hy_kds_outbox_next(struct hy_kds_outbox *o, struct hy_store *s,
                       const struct hy_kds_scope *scope,
                       int (*send)(void *ud, const Hypha__V1__KdsMessage *m), void *ud)
{
    uint64_t rev = hy_store_revision(s);
    bool caught_up = false;
    /* a peer ahead of this store (rebuilt, restored) gets a snapshot too */
    while (!o->in_flight && !caught_up && (o->acked != rev || o->snap.active) && o->nacked != rev) {
        Hypha__V1__Changes *c = NULL;
        int rc =
            hy_kds_collect_parts(s, o->acked, scope, &o->budget, o->parts ? &o->snap : NULL, &c);
        if (rc < 0)
            return rc;
        if (!c->snapshot && c->n_upserts == 0 && c->n_deletes == 0) {
            /* nothing in scope there: move on without a message. Another
             * writer (a replica, the API's thread) may have taken the log
             * past rev since it was read, and c->to with it: then, or when
             * the read moved nothing, this is all there is for now. Going
             * round again would read the same empty tail until something
             * in scope is written, with the loop thread stuck (issue 18). */
            caught_up = c->to == o->acked || c->to >= rev;
            o->acked = c->to;
        } else {
            Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
            m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_CHANGES;
            m.changes = c;
            if ((rc = send(ud, &m)) == 0) {
                o->in_flight = true;
                o->sent_more = c->more;
                o->sent_to = c->to;
                o->sent += c->n_upserts + c->n_deletes;
            } else {
                hy_kds_snap_tx_reset(&o->snap); /* that part is lost: start again */
            }
        }
        hypha__v1__changes__free_unpacked(c, NULL);
        if (rc < 0)
            return rc;
        if (o->in_flight)
            break;
    }
    return 0;
}

bool hy_kds_outbox_ack(struct hy_kds_outbox *o, uint64_t to)
{
    if (!o->in_flight || to != o->sent_to)
        return false;
    if (!o->sent_more)
        o->acked = to;
    o->in_flight = o->sent_more = false;
    return true;
}

void hy_kds_outbox_nack(struct hy_kds_outbox *o, struct hy_store *s)
{
    o->in_flight = o->sent_more = false;
    o->nacked = hy_store_revision(s);
    hy_kds_snap_tx_reset(&o->snap);
}

int hy_kds_metrics_init(struct hy_kds_metrics *km, struct hy_metrics *m)
{
    km->messages = hy_metric_counter(m, "hypha_kds_messages_total",
                                     "KDS messages by direction and type", 2, "direction", "type");
    km->bytes = hy_metric_counter(m, "hypha_kds_bytes_total", "KDS message bytes by direction", 1,
                                  "direction");
    km->resources =
        hy_metric_counter(m, "hypha_kds_resources_total",
                          "Resources (upserts and deletes) carried by KDS", 1, "direction");
    km->skipped = hy_metric_counter(
        m, "hypha_kds_resources_skipped_total",
        "Resources of a KDS Changes left out while the rest was applied (listed in its Ack): "
        "by=local this side, by=peer the other side",
        1, "by");
    km->unknown = hy_metric_series(
        hy_metric_counter(m, "hypha_kds_unknown_types_total",
                          "Resources received over KDS of a type this control plane does not "
                          "know (a newer peer's): skipped, the rest applied",
                          0));
    return km->messages && km->bytes && km->resources && km->skipped && km->unknown ? 0 : HY_ENOMEM;
}

void hy_kds_count(const struct hy_kds_metrics *km, const char *direction,
                  const Hypha__V1__KdsMessage *msg, size_t len)
{
    static const char *const names[] = {
        [HYPHA__V1__KDS_MESSAGE__MSG_HELLO] = "hello",
        [HYPHA__V1__KDS_MESSAGE__MSG_WELCOME] = "welcome",
        [HYPHA__V1__KDS_MESSAGE__MSG_REJECT] = "reject",
        [HYPHA__V1__KDS_MESSAGE__MSG_CHANGES] = "changes",
        [HYPHA__V1__KDS_MESSAGE__MSG_ACK] = "ack",
        [HYPHA__V1__KDS_MESSAGE__MSG_NACK] = "nack",
    };
    size_t k = (size_t)msg->msg_case;
    const char *type = k < sizeof(names) / sizeof(names[0]) && names[k] ? names[k] : "other";
    hy_series_inc(hy_metric_series(km->messages, direction, type));
    hy_series_add(hy_metric_series(km->bytes, direction), (double)len);
    if (msg->msg_case == HYPHA__V1__KDS_MESSAGE__MSG_CHANGES)
        hy_series_add(hy_metric_series(km->resources, direction),
                      (double)(msg->changes->n_upserts + msg->changes->n_deletes));
    if (msg->msg_case == HYPHA__V1__KDS_MESSAGE__MSG_ACK && msg->ack->n_refused) {
        bool local = !strcmp(direction, "sent");
        hy_series_add(hy_metric_series(km->skipped, local ? "local" : "peer"),
                      (double)msg->ack->n_refused);
        for (size_t i = 0; local && i < msg->ack->n_refused; i++) {
            const Hypha__V1__ResourceKey *k = msg->ack->refused[i]->key;
            if (!k || !k->type || !hy_rtype_by_name(k->type))
                hy_series_inc(km->unknown);
        }
    }
}

/* ----- fair fan-out ----- */

static void fanout_append(struct hy_kds_fanout *f, struct hy_kds_fanout_item *it, uint64_t now_ns)
{
    it->next = NULL;
    it->queued = true;
    it->since_ns = now_ns;
    if (f->tail)
        f->tail->next = it;
    else
        f->head = it;
    f->tail = it;
    f->n++;
}

void hy_kds_fanout_round(struct hy_kds_fanout *f, struct hy_kds_fanout_item *const *v, size_t n,
                         uint64_t now_ns)
{
    if (!n)
        return;
    size_t start = (size_t)(f->rounds++ % n);
    for (size_t k = 0; k < n; k++) {
        struct hy_kds_fanout_item *it = v[(start + k) % n];
        if (!it->queued)
            fanout_append(f, it, now_ns);
    }
}

struct hy_kds_fanout_item *hy_kds_fanout_pop(struct hy_kds_fanout *f)
{
    struct hy_kds_fanout_item *it = f->head;
    if (!it)
        return NULL;
    f->head = it->next;
    if (!f->head)
        f->tail = NULL;
    f->n--;
    it->next = NULL;
    it->queued = false;
    return it;
}

void hy_kds_fanout_remove(struct hy_kds_fanout *f, struct hy_kds_fanout_item *it)
{
    if (!it->queued)
        return;
    struct hy_kds_fanout_item *prev = NULL;
    for (struct hy_kds_fanout_item *x = f->head; x; prev = x, x = x->next) {
        if (x != it)
            continue;
        if (prev)
            prev->next = x->next;
        else
            f->head = x->next;
        if (f->tail == x)
            f->tail = prev;
        f->n--;
        break;
    }
    it->next = NULL;
    it->queued = false;
}
