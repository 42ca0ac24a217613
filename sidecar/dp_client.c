/* The control stream to the zone control plane: wss with subprotocol
 * hypha.dp.v1, reconnecting with jittered backoff. On every connect it
 * presents the Dataplane, the token and a CSR for a new key (DpHello); it
 * checks every DpConfig before publishing it as the current snapshot and
 * answers DpAck or DpNack; at 80 % of the certificate's life it asks for a
 * new one (DpCsr). What it has keeps serving while the zone is away. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "dp.h"
#include "error.h"
#include "metrics.h"
#include "ws.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int send_msg(struct hy_dp *d, const Hypha__V1__DpMessage *m)
{
    int rc = hy_ws_send_msg(hy_ws_client_conn(d->ws), &m->base, NULL);
    if (rc < 0)
        hy_log(HY_LOG_WARN, "dp", "cannot send to the zone control plane: %s", hy_strerror(rc));
    return rc;
}

/* A new key and a CSR for it, kept as the pending one (the previous
 * pending key, whose certificate never came, is wiped). */
static int new_request(struct hy_dp *d)
{
    struct hy_ca_pem p = {0};
    char cn[HY_CA_CN_MAX + 1];
    snprintf(cn, sizeof(cn), "%s", d->file.res->meta->name);
    int rc = hy_ca_make_csr(cn, &p);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dp", "cannot make a key and a CSR: %s", hy_strerror(rc));
        return rc;
    }
    hy_ca_pem_fini(&d->pending);
    d->pending = p;
    return 0;
}

/* ----- certificate renewal ----- */

static void on_renew(uv_timer_t *t);

/* Arms the renewal timer for next_ask_ms; nothing when none is planned. */
static void arm_renewal(struct hy_dp *d)
{
    if (d->shutting_down || !d->next_ask_ms)
        return;
    int64_t delay = d->next_ask_ms - wall_ms();
    uv_timer_start(&d->renew_timer, on_renew, delay > 0 ? (uint64_t)delay : 0, 0);
}

static void on_renew(uv_timer_t *t)
{
    struct hy_dp *d = t->data;
    struct hy_dp_snapshot *s = hy_dp_snapshot_get(&d->current, NULL);
    /* not connected: the DpHello of the next connection carries a CSR */
    if (!s || !d->open || d->rejected || d->shutting_down)
        goto out;
    if (wall_ms() < d->next_ask_ms) { /* woken early (the clock moved) */
        arm_renewal(d);
        goto out;
    }
    d->next_ask_ms = wall_ms() + (int64_t)hy_dp_renew_retry_ms(s->not_before, s->not_after);
    if (new_request(d) == 0) {
        Hypha__V1__DpCsr csr = HYPHA__V1__DP_CSR__INIT;
        Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
        csr.csr = d->pending.cert;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CSR;
        m.csr = &csr;
        char at[40];
        hy_timestamp_format(s->not_after, 0, at, sizeof(at));
        hy_log(HY_LOG_INFO, "dp", "certificate %s expires at %s: asking for a new one",
               s->spiffe_id, at);
        send_msg(d, &m);
    }
    arm_renewal(d);
out:
    hy_dp_snapshot_unref(s);
}

/* ----- configs ----- */

static void answer(struct hy_dp *d, const char *version, const char *error)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    if (error) {
        nack.version = (char *)S(version);
        nack.error = (char *)error;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
        m.nack = &nack;
    } else {
        ack.version = (char *)version;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
        m.ack = &ack;
    }
    send_msg(d, &m);
}

/* Takes c: it becomes the current snapshot, or is freed. */
static void on_config(struct hy_dp *d, Hypha__V1__DpConfig *c)
{
    struct hy_dp_snapshot *old = hy_dp_snapshot_get(&d->current, NULL), *s;
    const char *keys[2] = {d->pending.key, old ? old->key : NULL};
    const Hypha__V1__Meta *me = d->file.res->meta;
    char err[512];
    size_t which;
    int rc = hy_dp_snapshot_new(c, me->mesh, me->name, keys, 2, &s, &which, err, sizeof(err));
    if (rc < 0) {
        hy_series_inc(d->nacks);
        snprintf(d->status, sizeof(d->status), "refused config %.60s: %.200s", S(c->version), err);
        hy_log(HY_LOG_WARN, "dp", "refused config %s from the zone control plane: %s",
               S(c->version), err);
        answer(d, c->version, err);
        hypha__v1__dp_config__free_unpacked(c, NULL);
        goto out;
    }
    if (which == 0) /* the key of our last request is now in use */
        hy_ca_pem_fini(&d->pending);
    bool new_cert = !old || strcmp(old->fingerprint, s->fingerprint) != 0;
    char until[40], renew[40];
    hy_timestamp_format(s->not_after, 0, until, sizeof(until));
    hy_timestamp_format(s->renew_at, 0, renew, sizeof(renew));
    hy_agent_current_publish(&d->current, &hy_dp_snapshot_ref(s)->base);
    hy_series_inc(d->acks);
    hy_series_set(d->cert_expiry, (double)s->not_after);
    snprintf(d->status, sizeof(d->status), "config %.60s applied", s->config->version);
    if (new_cert) {
        if (old)
            hy_series_inc(d->renewals);
        d->next_ask_ms = s->renew_at * 1000;
        arm_renewal(d);
        hy_log(HY_LOG_INFO, "dp", "new certificate %s, valid until %s (renewal at %s)",
               s->spiffe_id, until, renew);
    }
    hy_log(HY_LOG_INFO, "dp", "applied config %s: %zu inbounds, %zu outbounds", s->config->version,
           s->config->n_inbounds, s->config->n_outbounds);
    answer(d, s->config->version, NULL);
    hy_dp_snapshot_unref(s);
out:
    hy_dp_snapshot_unref(old);
}

/* ----- the websocket ----- */

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct hy_dp *d = ud;
    (void)c;
    d->open = true;
    d->rejected = false;
    char *token = hy_agent_read_token(d->cfg->dataplane_token_file);
    if (token) { /* it may have been replaced since: take the new one */
        explicit_bzero(d->token, strlen(d->token));
        free(d->token);
        d->token = token;
    } else {
        hy_log(
            HY_LOG_WARN, "dp", "%s: cannot read the dataplane token (%s); presenting the last one",
            d->cfg->dataplane_token_file, errno == ENODATA ? "the file is empty" : strerror(errno));
    }
    if (new_request(d) < 0) {
        hy_ws_close(hy_ws_client_conn(d->ws), HY_WS_CLOSE_INTERNAL, "cannot make a CSR");
        return;
    }
    Hypha__V1__DpHello h = HYPHA__V1__DP_HELLO__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    h.dataplane = d->file.env;
    h.token = d->token;
    h.csr = d->pending.cert;
    h.version = HYPHA_VERSION;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
    m.hello = &h;
    snprintf(d->status, sizeof(d->status), "connected to %s, waiting for a config", peer);
    hy_log(HY_LOG_INFO, "dp", "connected to the zone control plane at %s; presenting %s/%s", peer,
           d->file.res->meta->mesh, d->file.res->meta->name);
    send_msg(d, &m);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct hy_dp *d = ud;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) {
        hy_log(HY_LOG_WARN, "dp", "malformed message from the zone control plane (%zu bytes)", len);
        hy_ws_close(c, HY_WS_CLOSE_POLICY, "malformed message");
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__DP_MESSAGE__MSG_REJECT:
        d->rejected = true;
        snprintf(d->status, sizeof(d->status), "rejected by the zone control plane: %.250s",
                 S(m->reject->reason));
        hy_log(HY_LOG_ERROR, "dp", "the zone control plane rejected this dataplane: %s",
               S(m->reject->reason));
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_CONFIG: {
        Hypha__V1__DpConfig *cfg = m->config;
        m->config = NULL; /* on_config takes it: detached from m */
        m->msg_case = HYPHA__V1__DP_MESSAGE__MSG__NOT_SET;
        if (!d->rejected && !d->shutting_down)
            on_config(d, cfg);
        else
            hypha__v1__dp_config__free_unpacked(cfg, NULL);
        break;
    }
    default:
        hy_log(HY_LOG_WARN, "dp", "unexpected message from the zone control plane (case %d)",
               (int)m->msg_case);
        break;
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct hy_dp *d = ud;
    (void)c;
    bool was = d->open;
    d->open = false;
    if (d->shutting_down) {
        hy_log(HY_LOG_INFO, "dp", "stream to the zone control plane closed: %s (%d)", reason, code);
        hy_ws_client_stop(d->ws); /* no reconnect (deferred: we are inside its callback) */
        uv_stop(d->loop);
        return;
    }
    struct hy_dp_snapshot *s = hy_dp_snapshot_get(&d->current, NULL);
    if (!d->rejected) /* a reject says more than the close that follows it */
        snprintf(d->status, sizeof(d->status), "%s the zone control plane at %s: %.150s (%d)",
                 was ? "lost" : "cannot reach", d->cfg->cp_address, reason, code);
    hy_log(was ? HY_LOG_WARN : HY_LOG_INFO, "dp", "%s the zone control plane: %s (%d); %s%s",
           was ? "lost" : "cannot reach", reason, code, s ? "keeping config " : "no config yet",
           s ? s->config->version : "");
    hy_dp_snapshot_unref(s);
}

int hy_dp_client_start(struct hy_dp *d)
{
    const struct hy_dp_cfg *cfg = d->cfg;
    uv_timer_init(d->loop, &d->renew_timer);
    uv_timer_init(d->loop, &d->grace_timer);
    d->renew_timer.data = d->grace_timer.data = d;
    d->timers_init = true;
    struct hy_ws_client_config wc = {
        .loop = d->loop,
        .url = cfg->cp_address,
        .name = "the zone control plane",
        .ca_file = cfg->ca_cert_file,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .limits = {.max_message = HY_DP_MAX_MESSAGE},
        .cb = {on_open, on_message, on_close},
        .ud = d,
    };
    return hy_ws_client_new(&wc, &d->ws);
}

void hy_dp_client_stop(struct hy_dp *d)
{
    hy_ws_client_stop(d->ws);
    if (d->timers_init) {
        uv_close((uv_handle_t *)&d->renew_timer, NULL);
        uv_close((uv_handle_t *)&d->grace_timer, NULL);
        d->timers_init = false;
    }
}

void hy_dp_client_free(struct hy_dp *d)
{
    hy_ws_client_free(d->ws);
    d->ws = NULL;
    hy_ca_pem_fini(&d->pending);
}
