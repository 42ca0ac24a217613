/* The KDS server of the global CP: admits zones by token over wss, sends
 * each the global resources (and other zones' ingresses) it lacks, applies
 * what each zone sends under that zone's name, and keeps ZoneInsight. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "ca.pb-c.h"
#include "cp_session.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "global.h"
#include "kds.h"
#include "log.h"
#include "token.h"
#include "poison.h"

struct session {
    struct hy_cp_session base; /* first: the connection, its admission and token */
    char zone[254];
    char version[64];
    struct hy_kds_outbox out;                /* global changes going down */
    struct hy_kds_snap_rx rx;                /* a snapshot of the zone's arriving in parts */
    uint64_t max_message;                    /* the zone's --kds-max-message (0: unknown) */
    struct hy_kds_fanout_item fan;           /* its place in the server's fan-out queue */
    struct hy_series *fan_wait, *fan_served; /* hypha_kds_fanout_*{zone} */
    uint64_t received;
    char last_error[256];
    bool insight_dirty;
    /* what the zone keeps here, against its quotas (usage_of counts it) */
    uint64_t used_count, used_bytes, used_ingresses;
    /* during one on_changes: "mesh/service" its Dataplanes serve (sorted),
     * and whether the store is too full for more of its writes */
    char **services;
    size_t n_services;
    bool store_full;
    /* refusals to record in its insight (on_changes fills, insight takes) */
    const struct hy_kds_applied *refused;
};

struct hy_global_kds {
    struct hy_global *g;
    struct hy_cp_session_server *ss; /* the listener and its sessions */
    uv_timer_t flush;
    bool flush_init;
    struct hy_kds_metrics metrics;
    struct hy_metric *refused; /* hypha_kds_resources_refused_total{zone} */
    /* fair fan-out: the zones waiting for a store change, served a few
     * per loop turn by the idle handle (hy_kds_fanout) */
    struct hy_kds_fanout fanout;
    struct hy_kds_fanout_item **fan_v; /* one round's zones, reused */
    size_t fan_cap;
    uv_idle_t fan_idle;
    bool fan_idle_init;
    struct hy_series *fan_delay; /* hypha_kds_fanout_delay_seconds */
    struct hy_metric *fan_wait,
        *fan_served; /* hypha_kds_fanout_{wait_seconds,served}_total{zone} */
};

/* Zones are served for at most this long per loop turn (one at least):
 * their messages go out at the next poll, before the next zones are
 * collected, and the loop stays responsive during a large fan-out. */
#define FANOUT_TURN_NS 1000000u

/* ----- helpers ----- */

static struct hy_global_kds *srv_of(const struct session *s)
{
    return s->base.ud;
}

static bool to_zone_match(void *ud, const struct hy_rtype *t, const char *origin)
{
    return hy_kds_to_zone(t, origin, ((struct session *)ud)->zone);
}

static bool from_zone_match(void *ud, const struct hy_rtype *t, const char *origin)
{
    (void)origin; /* what a zone sends has no origin yet: the type decides */
    return t->origin == HY_ORIGIN_ZONE && strcmp(((struct session *)ud)->zone, "") != 0;
}

static bool zone_owned(void *ud, const struct hy_rtype *t, const char *origin)
{
    (void)t;
    return origin && !strcmp(origin, ((struct session *)ud)->zone);
}

static int send_msg(void *ud, const Hypha__V1__KdsMessage *m)
{
    struct session *s = ud;
    size_t len;
    int rc = hy_cp_session_send(&s->base, &m->base, &len);
    if (rc == 0)
        hy_kds_count(&srv_of(s)->metrics, "sent", m, len);
    /* messages are cut under half of both limits; what still passes one
     * is a snapshot to a zone that takes it whole only (an older zone), or
     * a single resource larger than the budget */
    uint64_t max = srv_of(s)->g->cfg->kds_max_message;
    if (s->max_message && (!max || s->max_message < max))
        max = s->max_message;
    if (rc == 0 && m->msg_case == HYPHA__V1__KDS_MESSAGE__MSG_CHANGES && max && len > max)
        hy_log(HY_LOG_ERROR, "kds",
               "zone %s: sent %s of %zu bytes (%zu resources), over --kds-max-message (%llu): a "
               "zone with that limit cannot take it; %s",
               s->zone, m->changes->snapshot ? "a snapshot" : "changes", len, m->changes->n_upserts,
               (unsigned long long)max,
               m->changes->snapshot && !s->out.parts
                   ? "that zone does not take snapshots in parts (an older version): upgrade it "
                     "or raise --kds-max-message on the global CP and the zone"
                   : "a single resource is that large: raise --kds-max-message on the global CP "
                     "and the zone");
    return rc;
}

static void send_reject(struct hy_cp_session *cs, const char *reason)
{
    Hypha__V1__Reject r = HYPHA__V1__REJECT__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    r.reason = (char *)reason;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_REJECT;
    m.reject = &r;
    send_msg(cs, &m);
}

static const char *session_name(struct hy_cp_session *cs, char *buf, size_t size)
{
    const struct session *s = (const struct session *)cs;
    snprintf(buf, size, "zone %s", s->zone[0] ? s->zone : "?");
    return buf;
}

static void reject(struct session *s, const char *reason)
{
    char name[300], text[600];
    hy_log(HY_LOG_WARN, "kds", "%s from %s rejected: %s",
           session_name(&s->base, name, sizeof(name)), hy_ws_conn_peer(s->base.conn),
           hy_cp_session_clean(reason, text, sizeof(text)));
    snprintf(s->last_error, sizeof(s->last_error), "%.250s", reason);
    hy_cp_session_reject(&s->base, reason);
}

/* ----- ZoneInsight ----- */

#define INSIGHT_REFUSED 20 /* refused resources remembered per zone, newest last */

static void add_refused(Hypha__V1__ZoneInsight *zi, const struct hy_kds_refusal *f)
{
    Hypha__V1__ZoneInsight__Refused *x = malloc(sizeof(*x));
    if (!x)
        return;
    hypha__v1__zone_insight__refused__init(x);
    x->type = strdup(f->type);
    x->mesh = f->mesh[0] ? strdup(f->mesh) : NULL;
    x->name = strdup(f->name);
    x->reason = strdup(f->reason);
    x->time = hy_timestamp_now();
    /* the same resource refused again replaces its older entry */
    for (size_t i = 0; i < zi->n_refused; i++) {
        Hypha__V1__ZoneInsight__Refused *o = zi->refused[i];
        if (o->type && o->name && x->type && x->name && !strcmp(o->type, x->type) &&
            !strcmp(o->name, x->name) && !strcmp(o->mesh ? o->mesh : "", f->mesh)) {
            protobuf_c_message_free_unpacked(&o->base, NULL);
            memmove(zi->refused + i, zi->refused + i + 1, (zi->n_refused - i - 1) * sizeof(*o));
            zi->n_refused--;
            break;
        }
    }
    if (zi->n_refused >= INSIGHT_REFUSED) {
        protobuf_c_message_free_unpacked(&zi->refused[0]->base, NULL);
        memmove(zi->refused, zi->refused + 1, (zi->n_refused - 1) * sizeof(*zi->refused));
        zi->n_refused--;
    }
    Hypha__V1__ZoneInsight__Refused **v = realloc(zi->refused, (zi->n_refused + 1) * sizeof(*v));
    if (!v) {
        protobuf_c_message_free_unpacked(&x->base, NULL);
        return;
    }
    zi->refused = v;
    v[zi->n_refused++] = x;
}

struct insight_edit {
    struct session *s;
    enum { INS_CONNECT, INS_UPDATE, INS_DISCONNECT } what;
    uint64_t synced_revision; /* 0: unchanged */
};

static void edit_insight(Hypha__V1__ZoneInsight *zi, void *ud)
{
    struct insight_edit *e = ud;
    struct session *s = e->s;
    Hypha__V1__ZoneInsight__Subscription *sub = hy_kds_insight_current(zi, e->what == INS_CONNECT);
    if (!sub)
        return;
    if (e->what == INS_CONNECT) {
        hy_kds_set_str(&sub->global_instance_id, srv_of(s)->g->cp.instance_id);
        hy_kds_set_str(&sub->version, s->version);
    }
    if (e->what == INS_DISCONNECT && !sub->disconnect_time)
        sub->disconnect_time = hy_timestamp_now();
    sub->has_last_acked_revision = 1;
    sub->last_acked_revision = s->out.acked;
    if (s->last_error[0])
        hy_kds_set_str(&sub->last_error, s->last_error);
    if (!sub->stat) {
        sub->stat = malloc(sizeof(*sub->stat));
        if (!sub->stat)
            return;
        hypha__v1__zone_insight__subscription__stat__init(sub->stat);
    }
    sub->stat->has_resources_sent = sub->stat->has_resources_received = 1;
    sub->stat->resources_sent = s->out.sent;
    sub->stat->resources_received = s->received;
    if (e->synced_revision) {
        zi->has_synced_revision = 1;
        zi->synced_revision = e->synced_revision;
    }
    zi->has_resources = zi->has_bytes = 1;
    zi->resources = s->used_count;
    zi->bytes = s->used_bytes;
    for (size_t i = 0; s->refused && i < s->refused->n_refused; i++)
        add_refused(zi, &s->refused->refused[i]);
}

static void insight(struct session *s, int what, uint64_t synced)
{
    struct insight_edit e = {s, what, synced};
    int rc = hy_kds_insight_edit(srv_of(s)->g->cp.store, s->zone, edit_insight, &e);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "kds", "zone %s: cannot record its insight: %s", s->zone,
               hy_strerror(rc));
    s->insight_dirty = false;
}

static uint64_t synced_revision(struct hy_global *g, const char *zone)
{
    struct hy_resource *r = NULL;
    uint64_t v = 0;
    if (hy_store_get(g->cp.store, "ZoneInsight", NULL, zone, &r) == 0)
        v = ((Hypha__V1__ZoneInsight *)r->spec)->synced_revision;
    hy_resource_free(r);
    return v;
}

/* ----- sending global changes ----- */

static void send_next(struct session *s)
{
    struct hy_kds_scope scope = {to_zone_match, s};
    if (!s->base.admitted || s->base.closing)
        return;
    int rc = hy_kds_outbox_next(&s->out, srv_of(s)->g->cp.store, &scope, send_msg, s);
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "kds", "zone %s: cannot send changes: %s", s->zone, hy_strerror(rc));
}

/* Its token revoked or expired (hy_cp_session_live, the layer's timer and
 * watch), a zone is let go. */
static void token_dead(struct hy_cp_session *cs, const char *why)
{
    struct session *s = (struct session *)cs;
    char reason[520];
    snprintf(reason, sizeof(reason), "zone %s: its %s", s->zone, why);
    reject(s, reason);
}

/* A connected zone that was deleted or disabled meanwhile is let go. */
static bool zone_admitted(struct session *s)
{
    struct hy_resource *r = NULL;
    const char *why = NULL;
    if (hy_store_get(srv_of(s)->g->cp.store, "Zone", NULL, s->zone, &r) < 0)
        why = "was deleted on the global control plane";
    else if (((Hypha__V1__Zone *)r->spec)->has_enabled && !((Hypha__V1__Zone *)r->spec)->enabled)
        why = "was disabled on the global control plane";
    hy_resource_free(r);
    if (!why)
        return true;
    char reason[300];
    snprintf(reason, sizeof(reason), "zone %s %s", s->zone, why);
    reject(s, reason);
    return false;
}

/* Before a zone writes: its token and its Zone still hold. */
static bool still_admitted(struct session *s)
{
    return hy_cp_session_live(&s->base) && zone_admitted(s);
}

/* ----- fair fan-out ----- */

static struct session *session_of_item(struct hy_kds_fanout_item *it)
{
    return (struct session *)((char *)it - offsetof(struct session, fan));
}

/* The waiting zones of one loop turn (FANOUT_TURN_NS). */
static void on_fan_idle(uv_idle_t *h)
{
    struct hy_global_kds *srv = h->data;
    uint64_t start = uv_hrtime(), now = start;
    for (; now - start < FANOUT_TURN_NS; now = uv_hrtime()) {
        struct hy_kds_fanout_item *it = hy_kds_fanout_pop(&srv->fanout);
        if (!it)
            break;
        struct session *s = session_of_item(it);
        if (!s->base.admitted || s->base.closing || s->out.in_flight || !zone_admitted(s))
            continue;
        send_next(s);
        if (!s->out.in_flight)
            continue; /* nothing in its scope changed */
        double wait = (double)(now - it->since_ns) / 1e9;
        hy_series_observe(srv->fan_delay, wait);
        if (!s->fan_wait) {
            s->fan_wait = hy_metric_series(srv->fan_wait, s->zone);
            s->fan_served = hy_metric_series(srv->fan_served, s->zone);
        }
        hy_series_add(s->fan_wait, wait);
        hy_series_inc(s->fan_served);
    }
    if (!srv->fanout.n)
        uv_idle_stop(h);
}

/* Tokens were checked by the layer before this (when revocations changed).
 * The zones with nothing in flight queue up, in connection order rotated
 * one place each round (the list is newest first). */
static void on_store_change(void *ud, const struct hy_store_changes *ch)
{
    struct hy_global_kds *srv = ud;
    size_t n = 0;
    (void)ch;
    for (struct hy_cp_session *cs = hy_cp_session_first(srv->ss); cs; cs = cs->next) {
        struct session *s = (struct session *)cs;
        if (!cs->admitted || cs->closing || s->out.in_flight)
            continue;
        if (n == srv->fan_cap) {
            size_t cap = srv->fan_cap * 2 + 64;
            struct hy_kds_fanout_item **nv = realloc(srv->fan_v, cap * sizeof(*nv));
            if (!nv) { /* this round unordered rather than lost */
                if (zone_admitted(s))
                    send_next(s);
                continue;
            }
            srv->fan_v = nv;
            srv->fan_cap = cap;
        }
        srv->fan_v[n++] = &s->fan;
    }
    struct hy_kds_fanout_item **v = srv->fan_v;
    for (size_t i = 0; i < n / 2; i++) {
        struct hy_kds_fanout_item *t = v[i];
        v[i] = v[n - 1 - i];
        v[n - 1 - i] = t;
    }
    hy_kds_fanout_round(&srv->fanout, v, n, uv_hrtime());
    if (srv->fanout.n && srv->fan_idle_init)
        uv_idle_start(&srv->fan_idle, on_fan_idle);
}

/* ----- receiving ----- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void services_free(struct session *s)
{
    for (size_t i = 0; i < s->n_services; i++)
        free(s->services[i]);
    free(s->services);
    s->services = NULL;
    s->n_services = 0;
}

static const char *tag_of(size_t n, Hypha__V1__Dataplane__Networking__Inbound__TagsEntry **tags,
                          const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (tags[i]->key && !strcmp(tags[i]->key, key))
            return tags[i]->value;
    return NULL;
}

static int add_services(struct session *s, const char *mesh, const Hypha__V1__Dataplane *dp)
{
    for (size_t i = 0; dp->networking && i < dp->networking->n_inbound; i++) {
        const Hypha__V1__Dataplane__Networking__Inbound *in = dp->networking->inbound[i];
        const char *svc = tag_of(in->n_tags, in->tags, "hypha.io/service");
        if (!svc || !mesh)
            continue;
        char **v = realloc(s->services, (s->n_services + 1) * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        s->services = v;
        size_t l = strlen(mesh) + strlen(svc) + 2;
        if (!(v[s->n_services] = malloc(l)))
            return HY_ENOMEM;
        snprintf(v[s->n_services++], l, "%s/%s", mesh, svc);
    }
    return 0;
}

static int served_here(void *ud, struct hy_resource *r, bool *take)
{
    struct session *s = ud;
    (void)take;
    if (!r->origin || strcmp(r->origin, s->zone))
        return 0;
    return add_services(s, r->meta->mesh, (const Hypha__V1__Dataplane *)r->spec);
}

/* The services this zone's Dataplanes serve, stored here or arriving in c:
 * what its ZoneIngresses may advertise. Only built when c has an ingress. */
static int services_build(struct session *s, const Hypha__V1__Changes *c)
{
    bool ingress = false;
    for (size_t i = 0; i < c->n_upserts && !ingress; i++)
        ingress = c->upserts[i]->meta && c->upserts[i]->meta->type &&
                  !strcmp(c->upserts[i]->meta->type, "ZoneIngress");
    if (!ingress)
        return 0;
    int rc = hy_store_each(srv_of(s)->g->cp.store, "Dataplane", served_here, s);
    for (size_t i = 0; i < c->n_upserts && rc == 0; i++) {
        const Hypha__V1__Envelope *env = c->upserts[i];
        if (!env->meta || !env->meta->type || strcmp(env->meta->type, "Dataplane"))
            continue;
        Hypha__V1__Dataplane *dp =
            hypha__v1__dataplane__unpack(NULL, env->spec.len, env->spec.data);
        if (dp) {
            rc = add_services(s, env->meta->mesh, dp);
            hypha__v1__dataplane__free_unpacked(dp, NULL);
        }
    }
    if (rc == 0 && s->n_services)
        qsort(s->services, s->n_services, sizeof(char *), cmp_str);
    return rc;
}

static bool serves(const struct session *s, const char *mesh, const char *svc)
{
    char key[600], *k = key;
    snprintf(key, sizeof(key), "%s/%s", mesh ? mesh : "", svc ? svc : "");
    return s->n_services &&
           bsearch(&k, s->services, s->n_services, sizeof(char *), cmp_str) != NULL;
}

/* A zone's ingress speaks for that zone only, and only for services its
 * own Dataplanes serve: spec.zone is set from the session, and the rest of
 * availableServices is dropped (logged, counted, kept in the insight). */
static int take_ingress(struct session *s, struct hy_resource *r)
{
    Hypha__V1__ZoneIngress *zi = (Hypha__V1__ZoneIngress *)r->spec;
    uint64_t max = srv_of(s)->g->cfg->ingress_max_services;
    if (max && zi->n_available_services > max)
        return HY_ETOOBIG;
    hy_kds_set_str(&zi->zone, s->zone);
    size_t kept = 0, dropped = 0;
    char first[300] = "";
    for (size_t i = 0; i < zi->n_available_services; i++) {
        Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
        const char *svc = NULL;
        for (size_t k = 0; k < as->n_tags && !svc; k++)
            if (!strcmp(as->tags[k]->key, "hypha.io/service"))
                svc = as->tags[k]->value;
        if (svc && serves(s, as->mesh, svc)) {
            zi->available_services[kept++] = as;
            continue;
        }
        if (!dropped++)
            snprintf(first, sizeof(first), "%.120s in mesh %.120s", svc ? svc : "(no service tag)",
                     as->mesh ? as->mesh : "(none)");
        protobuf_c_message_free_unpacked(&as->base, NULL);
    }
    zi->n_available_services = kept;
    if (dropped) {
        hy_log(HY_LOG_WARN, "kds",
               "zone %s: ZoneIngress %s advertises %zu services no Dataplane of the zone serves "
               "(first: %s); they are left out",
               s->zone, r->meta->name, dropped, first);
        hy_series_inc(hy_metric_series(srv_of(s)->refused, s->zone));
        snprintf(s->last_error, sizeof(s->last_error),
                 "ZoneIngress %.40s: %zu availableServices left out: no Dataplane of zone %.40s "
                 "serves them (first: %.60s)",
                 r->meta->name, dropped, s->zone, first);
        s->insight_dirty = true;
    }
    return 0;
}

/* The global CP keeps a zone's resources as "<zone>.<name>", labelled with
 * their zone, so two zones' web-1 never collide (zone names have no dot).
 * r has passed hy_resource_validate: its label keys are set and unique. */
static int take_from_zone(void *ud, struct hy_resource *r)
{
    struct session *s = ud;
    char name[512];
    snprintf(name, sizeof(name), "%s.%s", s->zone, r->meta->name);
    const char *labels[][2] = {
        {"hypha.io/origin", "zone"},
        {"hypha.io/zone", s->zone},
        {"hypha.io/display-name", r->meta->name},
    };
    Hypha__V1__Meta *m = r->meta;
    for (size_t i = 0; i < 3; i++) {
        Hypha__V1__Meta__LabelsEntry *e = NULL;
        for (size_t k = 0; k < m->n_labels && !e; k++)
            if (m->labels[k]->key && !strcmp(m->labels[k]->key, labels[i][0]))
                e = m->labels[k];
        if (!e) {
            Hypha__V1__Meta__LabelsEntry **v = realloc(m->labels, (m->n_labels + 1) * sizeof(*v));
            if (!v)
                return HY_ENOMEM;
            m->labels = v;
            if (!(e = malloc(sizeof(*e))))
                return HY_ENOMEM;
            hypha__v1__meta__labels_entry__init(e);
            e->key = strdup(labels[i][0]);
            v[m->n_labels++] = e;
        }
        hy_kds_set_str(&e->value, labels[i][1]);
    }
    hy_kds_set_str(&r->origin, s->zone);
    int rc = hy_resource_set_name(r, r->meta->mesh, name);
    if (rc == 0 && !strcmp(r->type->name, "ZoneIngress"))
        rc = take_ingress(s, r);
    return rc;
}

static int take_key(void *ud, const Hypha__V1__ResourceKey *k, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%s", ((struct session *)ud)->zone, k->name);
    return 0;
}

static size_t packed_size(const struct hy_resource *r)
{
    size_t len = 0;
    free(hy_resource_pack(r, &len));
    return len;
}

/* A zone changes only what is its own, within its quotas; while the store
 * is nearly full only its deletes go through. Counts are kept as the
 * message is judged (usage_of recounts after a snapshot or a failure). */
static bool admit(void *ud, enum hy_store_op op, const struct hy_resource *r,
                  const struct hy_resource *existing, char *why, size_t size)
{
    struct session *s = ud;
    const struct hy_global_cfg *cfg = srv_of(s)->g->cfg;
    if (existing && (!existing->origin || strcmp(existing->origin, s->zone))) {
        snprintf(why, size, "%s %s here belongs to %s%s, not to zone %s", r->type->name,
                 r->meta->name, existing->origin ? "zone " : "the global control plane",
                 existing->origin ? existing->origin : "", s->zone);
        return false;
    }
    bool ingress = !strcmp(r->type->name, "ZoneIngress");
    uint64_t old_bytes = existing ? packed_size(existing) : 0;
    if (op == HY_STORE_DELETE) {
        if (existing) {
            s->used_count -= s->used_count > 0;
            s->used_bytes -= old_bytes < s->used_bytes ? old_bytes : s->used_bytes;
            s->used_ingresses -= ingress && s->used_ingresses > 0;
        }
        return true;
    }
    uint64_t bytes = packed_size(r);
    if (s->store_full) {
        snprintf(why, size,
                 "the global control plane's store is nearly full (less than --kds-store-headroom "
                 "free): only deletes are taken");
        return false;
    }
    if (!existing && cfg->zone_max_resources && s->used_count + 1 > cfg->zone_max_resources) {
        snprintf(why, size, "zone %s is at its quota of %llu resources (--kds-zone-max-resources)",
                 s->zone, (unsigned long long)cfg->zone_max_resources);
        return false;
    }
    if (cfg->zone_max_bytes && bytes > old_bytes &&
        s->used_bytes + (bytes - old_bytes) > cfg->zone_max_bytes) {
        snprintf(why, size, "zone %s would exceed its quota of %llu bytes (--kds-zone-max-bytes)",
                 s->zone, (unsigned long long)cfg->zone_max_bytes);
        return false;
    }
    if (ingress && !existing && cfg->zone_max_ingresses &&
        s->used_ingresses + 1 > cfg->zone_max_ingresses) {
        snprintf(why, size,
                 "zone %s is at its quota of %llu ZoneIngresses (--kds-zone-max-ingresses)",
                 s->zone, (unsigned long long)cfg->zone_max_ingresses);
        return false;
    }
    s->used_count += !existing;
    s->used_bytes += bytes;
    s->used_bytes -= old_bytes < s->used_bytes ? old_bytes : s->used_bytes;
    s->used_ingresses += ingress && !existing;
    return true;
}

static int count_usage(void *ud, struct hy_resource *r, bool *take)
{
    struct session *s = ud;
    (void)take;
    if (r->origin && !strcmp(r->origin, s->zone)) {
        s->used_count++;
        s->used_bytes += packed_size(r);
        s->used_ingresses += !strcmp(r->type->name, "ZoneIngress");
    }
    return 0;
}

/* Counts what the zone keeps here (every zone-origin type). */
static int usage_of(struct session *s)
{
    size_t n;
    const struct hy_rtype *t = hy_rtype_all(&n);
    s->used_count = s->used_bytes = s->used_ingresses = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (t[i].origin == HY_ORIGIN_ZONE)
            rc = hy_store_each(srv_of(s)->g->cp.store, t[i].name, count_usage, s);
    return rc;
}

/* Whether the store has less room left than --kds-store-headroom (at most a
 * quarter of the map), so that zones' deletes and the API's still fit. */
static bool store_nearly_full(struct hy_global *g)
{
    struct hy_store_stats st;
    if (hy_store_stats(g->cp.store, &st) < 0 || !st.map_size)
        return false;
    uint64_t headroom = g->cfg->store_headroom;
    if (headroom > st.map_size / 4)
        headroom = st.map_size / 4;
    return st.used_bytes + headroom > st.map_size;
}

static void on_changes(struct session *s, const Hypha__V1__Changes *c)
{
    struct hy_kds_scope accept = {from_zone_match, s}, replace = {zone_owned, s};
    struct hy_kds_apply_opts o = {.accept = &accept,
                                  .replace = &replace,
                                  .transform = take_from_zone,
                                  .transform_key = take_key,
                                  .admit = admit,
                                  .ud = s,
                                  .parts = &s->rx};
    struct hy_kds_applied done = {0};
    char err[256];
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    Hypha__V1__Ack ack = HYPHA__V1__ACK__INIT;
    Hypha__V1__Nack nack = HYPHA__V1__NACK__INIT;
    s->store_full = store_nearly_full(srv_of(s)->g);
    int rc = services_build(s, c);
    /* the zone's synced revision is recorded in the same transaction */
    s->received += c->n_upserts + c->n_deletes;
    /* a snapshot part short of the last leaves it where it was */
    struct insight_edit e = {s, INS_UPDATE, c->snapshot && c->more ? 0 : c->to};
    struct hy_resource *zi = NULL;
    if (rc == 0 &&
        hy_kds_insight_build(srv_of(s)->g->cp.store, s->zone, edit_insight, &e, &zi) == 0)
        o.also = zi;
    if (rc == 0)
        rc = hy_kds_apply(srv_of(s)->g->cp.store, c, &o, &done, err, sizeof(err));
    else
        snprintf(err, sizeof(err), "%s", hy_strerror(rc));
    hy_resource_free(zi);
    services_free(s);
    if (rc < 0 || (c->snapshot && !c->more))
        usage_of(s); /* counted as judged: recount what was really stored */
    if (rc == 0 && hy_kds_ack_build(&ack, c->to, &done) < 0) {
        rc = HY_ENOMEM;
        snprintf(err, sizeof(err), "out of memory");
    }
    if (rc == 0) {
        s->insight_dirty = false;
        for (size_t i = 0; i < done.n_refused; i++) {
            const struct hy_kds_refusal *f = &done.refused[i];
            if (i < 10)
                hy_log(HY_LOG_WARN, "kds", "zone %s: refused %s %s%s%s: %s", s->zone, f->type,
                       f->mesh[0] ? f->mesh : "", f->mesh[0] ? "/" : "", f->name, f->reason);
        }
        m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_ACK;
        m.ack = &ack;
        if (done.n_refused) {
            hy_series_add(hy_metric_series(srv_of(s)->refused, s->zone), (double)done.n_refused);
            snprintf(s->last_error, sizeof(s->last_error),
                     "refused %zu resources (first: %.60s %.80s: %.80s)", done.n_refused,
                     done.refused[0].type, done.refused[0].name, done.refused[0].reason);
            s->refused = &done;
            insight(s, INS_UPDATE, 0);
            s->refused = NULL;
        }
        char what[64];
        hy_log(HY_LOG_INFO, "kds",
               "zone %s: applied %zu upserts, %zu deletes%s, refused %zu (zone revision %llu)",
               s->zone, done.upserts, done.deletes, hy_kds_changes_what(c, what, sizeof(what)),
               done.n_refused, (unsigned long long)c->to);
    } else {
        s->received -= c->n_upserts + c->n_deletes;
        nack.has_to = 1;
        nack.to = c->to;
        nack.error = err;
        m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_NACK;
        m.nack = &nack;
        snprintf(s->last_error, sizeof(s->last_error), "refused changes: %.200s", err);
        insight(s, INS_UPDATE, 0);
        hy_log(HY_LOG_WARN, "kds", "zone %s: refused its changes: %s", s->zone, err);
    }
    send_msg(s, &m);
    hy_kds_ack_fini(&ack);
    hy_kds_applied_fini(&done);
}

/* A zone asks for its intermediate CA of a mesh's backend: the global CP
 * signs the CSR with the mesh root, whose key never leaves it. */
#define INTERMEDIATE_VALIDITY (365LL * 86400)

static void on_csr(struct session *s, const Hypha__V1__CsrRequest *q)
{
    struct hy_store *st = srv_of(s)->g->cp.store;
    Hypha__V1__CsrResponse r = HYPHA__V1__CSR_RESPONSE__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    struct hy_resource *trust = NULL, *key = NULL;
    char err[300] = "", *cert = NULL;
    r.mesh = q->mesh;
    r.backend = q->backend;
    if (!q->mesh || !q->backend || !q->csr || !hy_valid_name(q->mesh) || !hy_valid_name(q->backend))
        snprintf(err, sizeof(err), "a CsrRequest needs mesh, backend and csr");
    else if (hy_store_get(st, "MeshCaRoot", q->mesh, q->backend, &trust) < 0 ||
             hy_store_get(st, "MeshCaKey", q->mesh, q->backend, &key) < 0)
        snprintf(err, sizeof(err), "mesh %.100s has no root CA for backend %.100s", q->mesh,
                 q->backend);
    if (!err[0]) {
        struct hy_ca_pem root = {((Hypha__V1__MeshCaRoot *)trust->spec)->ca_cert,
                                 ((Hypha__V1__MeshCaKey *)key->spec)->key};
        char cn[64];
        snprintf(cn, sizeof(cn), "%.30s.%.30s", s->zone, q->mesh);
        int rc =
            hy_ca_sign_intermediate(&root, q->csr, time(NULL), INTERMEDIATE_VALIDITY, cn, &cert);
        if (rc < 0)
            snprintf(err, sizeof(err), "cannot sign the CSR: %s", hy_strerror(rc));
    }
    if (err[0]) {
        r.error = err;
        hy_log(HY_LOG_WARN, "kds", "zone %s: refused its CSR for mesh %s backend %s: %s", s->zone,
               q->mesh ? q->mesh : "?", q->backend ? q->backend : "?", err);
    } else {
        r.cert = cert;
        hy_log(HY_LOG_INFO, "kds", "zone %s: signed its intermediate CA for mesh %s backend %s",
               s->zone, q->mesh, q->backend);
    }
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_CSR_RESPONSE;
    m.csr_response = &r;
    send_msg(s, &m);
    free(cert);
    hy_resource_free(trust);
    hy_resource_free(key);
}

static bool is_zone(const struct hy_cp_session *cs, void *zone)
{
    return !strcmp(((const struct session *)cs)->zone, zone);
}

/* A Zone that is not registered yet registers at its first good Hello. */
static bool zone_enabled(struct hy_global *g, const char *zone)
{
    struct hy_resource *r = NULL;
    if (hy_store_get(g->cp.store, "Zone", NULL, zone, &r) == HY_ENOTFOUND) {
        r = hy_resource_new(hy_rtype_by_name("Zone"));
        if (r && hy_resource_set_name(r, NULL, zone) == 0) {
            Hypha__V1__Zone *z = (Hypha__V1__Zone *)r->spec;
            z->has_enabled = z->enabled = 1;
            struct hy_store_write w;
            if (hy_store_put(g->cp.store, r, HY_VERSION_NEW, &w) == 0)
                hy_log(HY_LOG_INFO, "kds", "zone %s registered", zone);
        }
    }
    bool on =
        !r || !((Hypha__V1__Zone *)r->spec)->has_enabled || ((Hypha__V1__Zone *)r->spec)->enabled;
    hy_resource_free(r);
    return on;
}

static void on_hello(struct session *s, const Hypha__V1__Hello *h)
{
    struct hy_global_kds *srv = srv_of(s);
    struct hy_cp_session *other = NULL;
    snprintf(s->zone, sizeof(s->zone), "%s", h->zone ? h->zone : "");
    snprintf(s->version, sizeof(s->version), "%s", h->version ? h->version : "");
    if (!hy_valid_zone_name(s->zone)) {
        s->zone[0] = '\0';
        reject(s, "Hello names no valid zone (" HY_ZONE_NAME_RULE ")");
        return;
    }
    struct hy_token_claims claims = {0};
    struct hy_token_failure why = {0};
    char reason[400];
    int rc = hy_cp_verify_token(&srv->g->cp, HY_TOKEN_KIND_ZONE, h->token ? h->token : "", &claims,
                                &why);
    if (rc < 0) {
        snprintf(reason, sizeof(reason), "zone token refused: %s",
                 rc == HY_EVERIFY ? why.message : hy_strerror(rc));
    } else if (strcmp(claims.zone, s->zone) != 0) {
        snprintf(reason, sizeof(reason),
                 "the zone token is for zone %s, but this zone calls itself %s", claims.zone,
                 s->zone);
    } else if (!zone_enabled(srv->g, s->zone)) {
        snprintf(reason, sizeof(reason),
                 "zone %s is disabled on the global control plane (Zone.enabled is false)",
                 s->zone);
    } else if ((other = hy_cp_session_find(srv->ss, &s->base, is_zone, s->zone))) {
        snprintf(reason, sizeof(reason), "zone %s is already connected from %s", s->zone,
                 hy_ws_conn_peer(other->conn));
    } else {
        reason[0] = '\0';
        hy_cp_session_admit(&s->base, &claims); /* the pre-Hello limits lift */
    }
    hy_token_claims_fini(&claims);
    if (reason[0]) {
        /* a registered zone's refused attempts show in its insight */
        struct hy_resource *z = NULL;
        if (hy_store_get(srv->g->cp.store, "Zone", NULL, s->zone, &z) == 0) {
            snprintf(s->last_error, sizeof(s->last_error), "%.250s", reason);
            insight(s, INS_CONNECT, 0);
            insight(s, INS_DISCONNECT, 0);
        }
        hy_resource_free(z);
        reject(s, reason);
        return;
    }
    /* an older zone lists no features: it gets snapshots whole, as before */
    s->max_message = h->max_message;
    hy_kds_outbox_fini(&s->out);
    hy_kds_outbox_init(
        &s->out, h->acked_global_revision,
        hy_kds_has_feature(h->features, h->n_features, HY_KDS_FEATURE_SNAPSHOT_PARTS),
        hy_kds_budget_bytes(srv->g->cfg->kds_max_message, h->max_message));
    s->last_error[0] = '\0';
    if ((rc = usage_of(s)) < 0)
        hy_log(HY_LOG_ERROR, "kds", "zone %s: cannot count what it keeps here: %s", s->zone,
               hy_strerror(rc));
    insight(s, INS_CONNECT, 0);
    Hypha__V1__Welcome w = HYPHA__V1__WELCOME__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    w.global_instance_id = srv->g->cp.instance_id;
    w.has_acked_zone_revision = 1;
    w.acked_zone_revision = synced_revision(srv->g, s->zone);
    char *features[] = {HY_KDS_FEATURE_SNAPSHOT_PARTS};
    w.features = features;
    w.n_features = 1;
    w.has_max_message = srv->g->cfg->kds_max_message > 0;
    w.max_message = srv->g->cfg->kds_max_message;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_WELCOME;
    m.welcome = &w;
    hy_log(HY_LOG_INFO, "kds",
           "zone %s connected from %s (version %s, has global revision %llu, sent us up to %llu)",
           s->zone, hy_ws_conn_peer(s->base.conn), s->version, (unsigned long long)s->out.acked,
           (unsigned long long)w.acked_zone_revision);
    if (send_msg(s, &m) == 0)
        send_next(s);
}

static void on_message(struct hy_cp_session *cs, const uint8_t *data, size_t len)
{
    struct session *s = (struct session *)cs;
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, len, data);
    if (!m) {
        reject(s, "malformed message (not a KdsMessage)");
        return;
    }
    hy_kds_count(&srv_of(s)->metrics, "received", m, len);
    if (!cs->admitted && m->msg_case != HYPHA__V1__KDS_MESSAGE__MSG_HELLO) {
        reject(s, "the first message must be Hello");
    } else {
        switch (m->msg_case) {
        case HYPHA__V1__KDS_MESSAGE__MSG_HELLO:
            if (cs->admitted)
                reject(s, "Hello sent twice");
            else
                on_hello(s, m->hello);
            break;
        case HYPHA__V1__KDS_MESSAGE__MSG_CHANGES:
            /* a zone deleted (or a token revoked) an instant ago must not
             * write again before the store watcher lets it go */
            if (still_admitted(s))
                on_changes(s, m->changes);
            break;
        case HYPHA__V1__KDS_MESSAGE__MSG_CSR_REQUEST:
            on_csr(s, m->csr_request);
            break;
        case HYPHA__V1__KDS_MESSAGE__MSG_ACK: {
            char who[300];
            snprintf(who, sizeof(who), "zone %s", s->zone);
            hy_kds_log_refused(who, m->ack, s->last_error, sizeof(s->last_error));
            if (hy_kds_outbox_ack(&s->out, m->ack->to)) {
                s->insight_dirty = true;
                send_next(s);
            }
            break;
        }
        case HYPHA__V1__KDS_MESSAGE__MSG_NACK:
            hy_kds_outbox_nack(&s->out, srv_of(s)->g->cp.store);
            snprintf(s->last_error, sizeof(s->last_error), "zone refused changes: %s",
                     m->nack->error ? m->nack->error : "");
            hy_log(HY_LOG_WARN, "kds", "zone %s refused changes up to %llu: %s", s->zone,
                   (unsigned long long)m->nack->to, m->nack->error ? m->nack->error : "");
            s->insight_dirty = true;
            break;
        default:
            reject(s, "unexpected message");
        }
    }
    hypha__v1__kds_message__free_unpacked(m, NULL);
}

static void fini(struct hy_cp_session *cs)
{
    struct session *s = (struct session *)cs;
    hy_kds_fanout_remove(&srv_of(s)->fanout, &s->fan);
    hy_kds_outbox_fini(&s->out);
    hy_kds_snap_rx_reset(&s->rx);
}

static void on_close(struct hy_cp_session *cs, int code, const char *reason)
{
    struct session *s = (struct session *)cs;
    hy_kds_fanout_remove(&srv_of(s)->fanout, &s->fan);
    if (!cs->admitted)
        return;
    if (code != 1000 && code != 1001 && !s->last_error[0])
        snprintf(s->last_error, sizeof(s->last_error), "connection closed (%d %s)", code, reason);
    insight(s, INS_DISCONNECT, 0);
    hy_log(HY_LOG_INFO, "kds", "zone %s disconnected (%d %s)", s->zone, code, reason);
}

/* Acks are frequent: their insight is written once a second, not each
 * time, and every zone's in one transaction (one commit, not one per
 * zone: a hundred zones' commits held the loop, and a fan-out, for half
 * a second). */
static void on_flush(uv_timer_t *t)
{
    struct hy_global_kds *srv = t->data;
    struct hy_store *st = srv->g->cp.store;
    struct hy_store_write *w = NULL;
    size_t n = 0, cap = 0;
    for (struct hy_cp_session *cs = hy_cp_session_first(srv->ss); cs; cs = cs->next) {
        struct session *s = (struct session *)cs;
        if (!cs->admitted || cs->closing || !s->insight_dirty)
            continue;
        if (n == cap) {
            size_t nc = cap * 2 + 16;
            struct hy_store_write *nw = realloc(w, nc * sizeof(*nw));
            if (!nw)
                break; /* the rest stay dirty for the next tick */
            w = nw;
            cap = nc;
        }
        struct insight_edit e = {s, INS_UPDATE, 0};
        struct hy_resource *r = NULL;
        if (hy_kds_insight_build(st, s->zone, edit_insight, &e, &r) < 0)
            continue;
        w[n++] =
            (struct hy_store_write){.op = HY_STORE_PUT, .r = r, .expect_version = HY_VERSION_ANY};
        s->insight_dirty = false;
    }
    int rc = n ? hy_store_apply(st, w, n, NULL) : 0;
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "kds", "cannot record %zu zones' insights: %s", n, hy_strerror(rc));
    for (size_t i = 0; i < n; i++)
        hy_resource_free((struct hy_resource *)w[i].r);
    free(w);
}

/* ----- lifecycle ----- */

static unsigned ping_sec(int64_t ms)
{
    return ms <= 0 ? 0 : ms < 1000 ? 1 : (unsigned)(ms / 1000);
}

static double fanout_pending(void *ud)
{
    return (double)((struct hy_global_kds *)ud)->fanout.n;
}

static double zones_connected(void *ud)
{
    double n = 0;
    for (struct hy_cp_session *cs = hy_cp_session_first(((struct hy_global_kds *)ud)->ss); cs;
         cs = cs->next)
        n += cs->admitted && !cs->closing;
    return n;
}

static const struct hy_cp_session_ops session_ops = {
    .size = sizeof(struct session),
    .on_message = on_message,
    .on_close = on_close,
    .fini = fini,
    .send_reject = send_reject,
    .token_dead = token_dead,
    .on_store_change = on_store_change,
    .name = session_name,
};

int hy_global_kds_start(struct hy_global *g)
{
    struct hy_global_kds *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return HY_ENOMEM;
    srv->g = g;
    g->kds = srv;
    if (hy_kds_metrics_init(&srv->metrics, g->cp.metrics) < 0 ||
        !hy_metric_gauge_fn(g->cp.metrics, "hypha_kds_zones_connected",
                            "Zones connected and admitted over KDS", zones_connected, srv) ||
        !(srv->refused = hy_metric_counter(
              g->cp.metrics, "hypha_kds_resources_refused_total",
              "Resources a zone sent that were not stored (invalid, not its own, over a quota)", 1,
              "zone")))
        return HY_ENOMEM;
    static const double fan_bounds[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,   0.1,   0.25,   0.5,   1};
    srv->fan_delay = hy_metric_series(hy_metric_histogram(
        g->cp.metrics, "hypha_kds_fanout_delay_seconds",
        "From a store change to a zone's Changes being queued for it (fair fan-out)", fan_bounds,
        sizeof(fan_bounds) / sizeof(fan_bounds[0]), 0));
    srv->fan_wait = hy_metric_counter(
        g->cp.metrics, "hypha_kds_fanout_wait_seconds_total",
        "Seconds each zone waited in the fan-out queue before its Changes were queued", 1, "zone");
    srv->fan_served =
        hy_metric_counter(g->cp.metrics, "hypha_kds_fanout_served_total",
                          "Changes each zone was sent from the fan-out queue", 1, "zone");
    if (!srv->fan_delay || !srv->fan_wait || !srv->fan_served ||
        !hy_metric_gauge_fn(g->cp.metrics, "hypha_kds_fanout_pending",
                            "Zones waiting in the fan-out queue", fanout_pending, srv))
        return HY_ENOMEM;
    struct hy_cp_session_config sc = {
        .cp = &g->cp,
        .component = "kds",
        .what = "KDS",
        .hint = "zones verify it with --global-ca-file",
        .tls_cert = g->cfg->kds_tls_cert,
        .tls_key = g->cfg->kds_tls_key,
        .address = &g->cfg->kds_address,
        .subprotocol = HY_KDS_SUBPROTOCOL,
        .limits = {.max_message = (size_t)g->cfg->kds_max_message,
                   .ping_sec = ping_sec(g->cfg->kds_ping_interval)},
        .metric_prefix = "hypha_kds",
        .protocol = "KDS",
        .peers = "Zone",
        .ops = &session_ops,
        .ud = srv,
    };
    int rc;
    if ((rc = hy_cp_session_server_new(&sc, &srv->ss)) < 0 ||
        (rc = hy_cp_session_server_start(srv->ss)) < 0)
        return rc;
    uv_timer_init(g->cp.loop, &srv->flush);
    srv->flush.data = srv;
    srv->flush_init = true;
    uv_timer_start(&srv->flush, on_flush, 1000, 1000);
    uv_idle_init(g->cp.loop, &srv->fan_idle);
    srv->fan_idle.data = srv;
    srv->fan_idle_init = true;
    return 0;
}

void hy_global_kds_stop(struct hy_global *g)
{
    struct hy_global_kds *srv = g->kds;
    if (!srv)
        return;
    hy_cp_session_server_stop(srv->ss);
    if (srv->flush_init && !uv_is_closing((uv_handle_t *)&srv->flush))
        uv_close((uv_handle_t *)&srv->flush, NULL);
    if (srv->fan_idle_init && !uv_is_closing((uv_handle_t *)&srv->fan_idle))
        uv_close((uv_handle_t *)&srv->fan_idle, NULL);
    srv->fan_idle_init = false;
}

void hy_global_kds_free(struct hy_global *g)
{
    struct hy_global_kds *srv = g->kds;
    if (!srv)
        return;
    hy_cp_session_server_free(srv->ss);
    free(srv->fan_v);
    free(srv);
    g->kds = NULL;
}
