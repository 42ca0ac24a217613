/* The KDS client of a federated zone: connects to the global CP over wss
 * (reconnecting with jittered backoff, moving to the next of its global
 * addresses after each failure or lost connection), presents the zone
 * token, applies the global resources it is sent and sends up its own.
 * What it has applied is recorded in its own ZoneInsight, so a restart
 * resumes from there and only changes travel. With zone replicas on one
 * database, only the holder of the zone's leader lease holds the session
 * (hy_zone_kds_leader); the others serve their sidecars from the store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kds.h"
#include "log.h"
#include "store_uv.h"
#include "ws.h"
#include "zone.h"
#include "poison.h"

struct hy_kds_client {
    struct hy_zone *z;
    struct hy_ws_client *ws;      /* NULL while another replica holds the session */
    struct hy_ws_client *stopped; /* a session given up (leadership lost), freed later */
    size_t cur;                   /* index of the global address in use */
    struct hy_metric *address;    /* hypha_kds_global_address{address} */
    bool stopped_all;             /* hy_zone_kds_stop ran */
    struct hy_store_uv_watch watch;
    bool watching;
    bool welcomed, rejected;
    uint64_t global_applied;  /* global revision applied here (persisted) */
    struct hy_kds_outbox out; /* our changes going up */
    struct hy_kds_snap_rx rx; /* a snapshot from the global CP arriving in parts */
    uint64_t received;
    char last_error[256];
    struct hy_kds_metrics metrics;
};

static const char *zone_of(void *ud)
{
    return ((struct hy_kds_client *)ud)->z->cfg->zone;
}

static bool synced_here(void *ud, const struct hy_rtype *t, const char *origin)
{
    (void)origin; /* as sent by the global CP: the type decides */
    return hy_kds_to_zone(t, !strcmp(t->name, "ZoneIngress") ? "other" : NULL, zone_of(ud));
}

/* Local resources a snapshot from the global CP replaces: whatever came
 * from it, never this zone's own. */
static bool from_global(void *ud, const struct hy_rtype *t, const char *origin)
{
    return hy_kds_to_zone(t, origin, zone_of(ud)) && !(origin && !strcmp(origin, zone_of(ud)));
}

static bool ours(void *ud, const struct hy_rtype *t, const char *origin)
{
    return hy_kds_from_zone(t, origin, zone_of(ud));
}

/* Resources of the global CP carry origin "global" here. */
static int take_from_global(void *ud, struct hy_resource *r)
{
    (void)ud;
    if (!r->origin || !r->origin[0])
        hy_kds_set_str(&r->origin, "global");
    return r->origin ? 0 : HY_ENOMEM;
}

static int send_msg(void *ud, const Hypha__V1__KdsMessage *m)
{
    struct hy_kds_client *k = ud;
    size_t len;
    if (!k->ws)
        return -ENOTCONN;
    int rc = hy_ws_send_msg(hy_ws_client_conn(k->ws), &m->base, &len);
    if (rc == 0)
        hy_kds_count(&k->metrics, "sent", m, len);
    return rc;
}

int hy_zone_kds_send(struct hy_zone *z, const Hypha__V1__KdsMessage *m)
{
    return z->kds && z->kds->welcomed ? send_msg(z->kds, m) : -ENOTCONN;
}

static void show_address(struct hy_kds_client *k);

/* ----- our own insight ----- */

static void edit_own(Hypha__V1__ZoneInsight *zi, void *ud)
{
    struct hy_kds_client *k = ud;
    Hypha__V1__ZoneInsight__Subscription *sub = hy_kds_insight_current(zi, false);
    zi->has_synced_revision = 1;
    zi->synced_revision = k->global_applied;
    if (!sub)
        return;
    sub->has_last_acked_revision = 1;
    sub->last_acked_revision = k->out.acked;
    if (k->last_error[0])
        hy_kds_set_str(&sub->last_error, k->last_error);
}

static void edit_connect(Hypha__V1__ZoneInsight *zi, void *ud)
{
    struct hy_kds_client *k = ud;
    Hypha__V1__ZoneInsight__Subscription *sub = hy_kds_insight_current(zi, true);
    if (sub)
        hy_kds_set_str(&sub->version, HYPHA_VERSION);
    (void)k;
}

static void edit_disconnect(Hypha__V1__ZoneInsight *zi, void *ud)
{
    struct hy_kds_client *k = ud;
    Hypha__V1__ZoneInsight__Subscription *sub = hy_kds_insight_current(zi, false);
    if (sub && !sub->disconnect_time)
        sub->disconnect_time = hy_timestamp_now();
    if (sub && k->last_error[0])
        hy_kds_set_str(&sub->last_error, k->last_error);
}

static uint64_t load_applied(struct hy_store *s, const char *zone)
{
    struct hy_resource *r = NULL;
    uint64_t v = 0;
    if (hy_store_get(s, "ZoneInsight", NULL, zone, &r) == 0)
        v = ((Hypha__V1__ZoneInsight *)r->spec)->synced_revision;
    hy_resource_free(r);
    return v;
}

/* ----- sending our changes ----- */

static void send_next(struct hy_kds_client *k)
{
    struct hy_kds_scope scope = {ours, k};
    int rc = k->welcomed ? hy_kds_outbox_next(&k->out, k->z->cp.store, &scope, send_msg, k) : 0;
    if (rc < 0)
        hy_log(HY_LOG_ERROR, "kds", "cannot send our changes: %s", hy_strerror(rc));
}

static void on_store_change(struct hy_store_uv_watch *w, uint64_t revision)
{
    (void)revision;
    send_next(w->data);
}

/* ----- receiving ----- */

static void on_changes(struct hy_kds_client *k, const Hypha__V1__Changes *c)
{
    struct hy_kds_scope accept = {synced_here, k}, replace = {from_global, k};
    struct hy_kds_apply_opts o = {.accept = &accept,
                                  .replace = &replace,
                                  .transform = take_from_global,
                                  .ud = k,
                                  .parts = &k->rx};
    struct hy_kds_applied done = {0};
    char err[256];
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    Hypha__V1__Ack ack = HYPHA__V1__ACK__INIT;
    Hypha__V1__Nack nack = HYPHA__V1__NACK__INIT;
    /* how far we got is recorded in the same transaction as the changes */
    uint64_t before = k->global_applied;
    struct hy_resource *own = NULL;
    /* a snapshot part short of the last leaves it where it was: a drop
     * before the last part brings the whole snapshot again */
    k->global_applied = c->snapshot && c->more ? before : c->to;
    k->last_error[0] = '\0';
    if (hy_kds_insight_build(k->z->cp.store, k->z->cfg->zone, edit_own, k, &own) == 0)
        o.also = own;
    int rc = hy_kds_apply(k->z->cp.store, c, &o, &done, err, sizeof(err));
    hy_resource_free(own);
    if (rc == 0 && hy_kds_ack_build(&ack, c->to, &done) < 0) {
        rc = HY_ENOMEM;
        snprintf(err, sizeof(err), "out of memory");
    }
    if (rc == 0) {
        k->received += c->n_upserts + c->n_deletes;
        m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_ACK;
        m.ack = &ack;
        /* what we could not take (a newer global's type, say) is named to
         * the global CP and here, and the stream goes on */
        hy_kds_log_refused("this zone", &ack, k->last_error, sizeof(k->last_error));
        char what[64];
        hy_log(HY_LOG_INFO, "kds",
               "applied %zu upserts, %zu deletes%s from the global control plane, refused %zu "
               "(revision %llu)",
               done.upserts, done.deletes, hy_kds_changes_what(c, what, sizeof(what)),
               done.n_refused, (unsigned long long)c->to);
    } else {
        k->global_applied = before;
        nack.has_to = 1;
        nack.to = c->to;
        nack.error = err;
        m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_NACK;
        m.nack = &nack;
        snprintf(k->last_error, sizeof(k->last_error), "refused changes: %.200s", err);
        hy_log(HY_LOG_WARN, "kds", "refused changes from the global control plane: %s", err);
    }
    send_msg(k, &m);
    hy_kds_ack_fini(&ack);
    hy_kds_applied_fini(&done);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct hy_kds_client *k = ud;
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, len, data);
    if (!m) {
        hy_ws_close(c, 1008, "malformed message");
        return;
    }
    hy_kds_count(&k->metrics, "received", m, len);
    switch (m->msg_case) {
    case HYPHA__V1__KDS_MESSAGE__MSG_WELCOME:
        k->welcomed = true;
        /* an older global CP lists no features: it gets our snapshots whole */
        hy_kds_outbox_fini(&k->out);
        hy_kds_outbox_init(
            &k->out, m->welcome->acked_zone_revision,
            hy_kds_has_feature(m->welcome->features, m->welcome->n_features,
                               HY_KDS_FEATURE_SNAPSHOT_PARTS),
            hy_kds_budget_bytes(k->z->cfg->kds_max_message, m->welcome->max_message));
        hy_log(HY_LOG_INFO, "kds",
               "connected to the global control plane %s (it has our changes up to %llu)",
               m->welcome->global_instance_id ? m->welcome->global_instance_id : "?",
               (unsigned long long)k->out.acked);
        send_next(k);
        hy_zone_ca_check(k->z);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_REJECT:
        k->rejected = true;
        snprintf(k->last_error, sizeof(k->last_error), "rejected: %s",
                 m->reject->reason ? m->reject->reason : "");
        hy_log(HY_LOG_ERROR, "kds", "the global control plane rejected this zone: %s",
               m->reject->reason ? m->reject->reason : "");
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_CHANGES:
        if (k->welcomed)
            on_changes(k, m->changes);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_ACK:
        hy_kds_log_refused("the global control plane", m->ack, k->last_error,
                           sizeof(k->last_error));
        if (hy_kds_outbox_ack(&k->out, m->ack->to))
            send_next(k);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_CSR_RESPONSE:
        hy_zone_ca_response(k->z, m->csr_response);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_NACK:
        hy_kds_outbox_nack(&k->out, k->z->cp.store);
        snprintf(k->last_error, sizeof(k->last_error), "global refused our changes: %s",
                 m->nack->error ? m->nack->error : "");
        hy_log(HY_LOG_WARN, "kds", "the global control plane refused our changes: %s",
               m->nack->error ? m->nack->error : "");
        break;
    default:
        break;
    }
    hypha__v1__kds_message__free_unpacked(m, NULL);
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 16384);
    if (buf && fread(buf, 1, 16383, f) == 0) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[strcspn(buf, " \t\r\n")] = '\0';
    return buf;
}

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct hy_kds_client *k = ud;
    const struct hy_zone_cfg *cfg = k->z->cfg;
    (void)c;
    char *token = cfg->zone_token_file ? read_token(cfg->zone_token_file) : NULL;
    if (!token)
        hy_log(HY_LOG_ERROR, "kds", "%s: cannot read the zone token: %s",
               cfg->zone_token_file ? cfg->zone_token_file : "(no --zone-token-file)",
               strerror(errno));
    k->welcomed = k->rejected = false;
    hy_kds_outbox_fini(&k->out);
    hy_kds_outbox_init(&k->out, 0, false, 0);
    hy_kds_snap_rx_reset(&k->rx);
    hy_kds_insight_edit(k->z->cp.store, cfg->zone, edit_connect, k);
    Hypha__V1__Hello h = HYPHA__V1__HELLO__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    h.zone = cfg->zone;
    h.version = HYPHA_VERSION;
    h.token = token ? token : "";
    h.has_acked_global_revision = 1;
    h.acked_global_revision = k->global_applied;
    h.instance_id = k->z->cp.instance_id;
    char *features[] = {HY_KDS_FEATURE_SNAPSHOT_PARTS};
    h.features = features;
    h.n_features = 1;
    h.has_max_message = cfg->kds_max_message > 0;
    h.max_message = cfg->kds_max_message;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_HELLO;
    m.hello = &h;
    hy_log(HY_LOG_INFO, "kds", "connected to %s; sending Hello (has global revision %llu)", peer,
           (unsigned long long)k->global_applied);
    send_msg(k, &m);
    free(token);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct hy_kds_client *k = ud;
    (void)c;
    bool was = k->welcomed;
    k->welcomed = false;
    hy_zone_ca_disconnected(k->z);
    hy_kds_outbox_fini(&k->out);
    hy_kds_snap_rx_reset(&k->rx); /* its parts so far stay, as upserts only */
    if (!k->rejected)             /* a Reject says more than the close that follows it */
        snprintf(k->last_error, sizeof(k->last_error), "%s (%d)", reason, code);
    hy_kds_insight_edit(k->z->cp.store, k->z->cfg->zone, edit_disconnect, k);
    const struct hy_strings *a = &k->z->cfg->global_address;
    const char *from = a->v[k->cur];
    if (a->n > 1 && k->ws && !k->stopped_all) { /* the next replica, after the backoff */
        size_t next = (k->cur + 1) % a->n;
        if (hy_ws_client_set_url(k->ws, a->v[next]) == 0) {
            k->cur = next;
            show_address(k);
        }
    }
    hy_log(was ? HY_LOG_WARN : HY_LOG_INFO, "kds",
           "%s the global control plane: %s (%d) at %s; retrying%s%s in %u ms",
           was ? "lost" : "cannot reach", reason, code, from, a->n > 1 ? " with " : "",
           a->n > 1 ? a->v[k->cur] : "", k->ws ? hy_ws_client_retry_delay_ms(k->ws) : 0);
}

/* ----- lifecycle ----- */

/* hypha_kds_global_address: 1 for the address in use (or tried next). */
static void show_address(struct hy_kds_client *k)
{
    const struct hy_strings *a = &k->z->cfg->global_address;
    for (size_t i = 0; i < a->n; i++)
        hy_series_set(hy_metric_series(k->address, a->v[i]), i == k->cur && k->ws ? 1 : 0);
}

static double connected(void *ud)
{
    return ((struct hy_kds_client *)ud)->welcomed;
}

/* A session to the global CP, from the address in use. */
static int session_start(struct hy_kds_client *k)
{
    const struct hy_zone_cfg *cfg = k->z->cfg;
    struct hy_ws_client_config wc = {
        .loop = k->z->cp.loop,
        .url = cfg->global_address.v[k->cur],
        .ca_file = cfg->global_ca_file,
        .skip_verify = cfg->global_tls_skip_verify,
        .subprotocol = HY_KDS_SUBPROTOCOL,
        .limits = {.max_message = (size_t)cfg->kds_max_message,
                   .ping_sec = cfg->kds_ping_interval > 0
                                   ? (unsigned)(cfg->kds_ping_interval < 1000
                                                    ? 1
                                                    : cfg->kds_ping_interval / 1000)
                                   : 0},
        .backoff = {.max_ms = (unsigned)cfg->kds_backoff_max},
        .cb = {on_open, on_message, on_close},
        .ud = k,
    };
    /* another replica may have synced meanwhile: resume from the store */
    k->global_applied = load_applied(k->z->cp.store, cfg->zone);
    int rc = hy_ws_client_new(&wc, &k->ws);
    show_address(k);
    return rc;
}

void hy_zone_kds_leader(struct hy_zone *z, bool held)
{
    struct hy_kds_client *k = z->kds;
    if (!k || held == (k->ws != NULL))
        return;
    if (held) {
        hy_ws_client_free(k->stopped); /* stopped long ago: its handles are closed */
        k->stopped = NULL;
        hy_log(HY_LOG_INFO, "kds",
               "this replica leads zone %s: it holds the session to the global control plane "
               "(%s)",
               z->cfg->zone, z->cfg->global_address.v[k->cur]);
        int rc = session_start(k);
        if (rc < 0)
            hy_log(HY_LOG_ERROR, "kds", "cannot start the KDS session: %s", hy_strerror(rc));
        return;
    }
    hy_log(HY_LOG_WARN, "kds",
           "this replica no longer leads zone %s: dropping its session to the global control "
           "plane (the leader holds it; sidecars are still served here)",
           z->cfg->zone);
    struct hy_ws_client *ws = k->ws;
    k->ws = NULL; /* on_close (now or later) must not move the address */
    hy_ws_client_stop(ws);
    k->stopped = ws;
    show_address(k);
}

int hy_zone_kds_start(struct hy_zone *z)
{
    const struct hy_zone_cfg *cfg = z->cfg;
    if (!cfg->global_ca_file && !cfg->global_tls_skip_verify) {
        hy_log(HY_LOG_ERROR, "kds",
               "--global-ca-file is required to verify the global control plane (or "
               "--global-tls-skip-verify, which is insecure)");
        return HY_EINVAL;
    }
    for (size_t i = 0; i < cfg->global_address.n; i++)
        if (strncmp(cfg->global_address.v[i], "wss://", 6) != 0) {
            hy_log(HY_LOG_ERROR, "kds",
                   "--global-address: \"%s\" is not a KDS address (wss://HOST:5685)",
                   cfg->global_address.v[i]);
            return HY_EINVAL;
        }
    struct hy_kds_client *k = calloc(1, sizeof(*k));
    if (!k)
        return HY_ENOMEM;
    k->z = z;
    z->kds = k;
    if (hy_kds_metrics_init(&k->metrics, z->cp.metrics) < 0 ||
        !hy_metric_gauge_fn(z->cp.metrics, "hypha_kds_connected",
                            "1 while admitted by the global control plane", connected, k) ||
        !(k->address = hy_metric_gauge(
              z->cp.metrics, "hypha_kds_global_address",
              "1 for the global control plane address this zone uses (or tries next)", 1,
              "address")))
        return HY_ENOMEM;
    k->global_applied = load_applied(z->cp.store, cfg->zone);
    show_address(k);
    k->watch.data = k;
    int rc;
    if ((rc = hy_store_uv_watch_start(z->cp.loop, z->cp.store, &k->watch, on_store_change)) < 0)
        return rc;
    k->watching = true;
    return 0;
}

void hy_zone_kds_stop(struct hy_zone *z)
{
    struct hy_kds_client *k = z->kds;
    if (!k)
        return;
    struct hy_ws_client *ws = k->ws;
    k->ws = NULL;
    k->stopped_all = true;
    hy_ws_client_stop(ws);
    if (k->stopped)
        hy_ws_client_stop(k->stopped);
    hy_ws_client_free(k->stopped); /* stopped long ago, or just now: freed after the loop ran */
    k->stopped = ws;
    if (k->watching)
        hy_store_uv_watch_stop(&k->watch, NULL);
    k->watching = false;
}

void hy_zone_kds_free(struct hy_zone *z)
{
    struct hy_kds_client *k = z->kds;
    if (!k)
        return;
    hy_ws_client_free(k->ws);
    hy_ws_client_free(k->stopped);
    hy_kds_outbox_fini(&k->out);
    hy_kds_snap_rx_reset(&k->rx);
    free(k);
    z->kds = NULL;
}
