/* The sidecar's part of the control stream (agent.c runs the stream): every
 * DpHello carries a CSR for a new key; every DpConfig is checked before it
 * is published as the current snapshot and answered DpAck or DpNack; at
 * 80 % of the certificate's life it asks for a new one (DpCsr). */
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

/* A new key and a CSR for it, kept as the pending one (the previous
 * pending key, whose certificate never came, is wiped). */
static int new_request(struct hy_dp *d)
{
    struct hy_ca_pem p = {0};
    char cn[HY_CA_CN_MAX + 1];
    snprintf(cn, sizeof(cn), "%s", d->a.file.res->meta->name);
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
    if (d->a.shutting_down || !d->next_ask_ms)
        return;
    int64_t delay = d->next_ask_ms - wall_ms();
    uv_timer_start(&d->renew_timer, on_renew, delay > 0 ? (uint64_t)delay : 0, 0);
}

static void on_renew(uv_timer_t *t)
{
    struct hy_dp *d = t->data;
    struct hy_dp_snapshot *s = hy_dp_snapshot_get(&d->a.current, NULL);
    /* not connected: the DpHello of the next connection carries a CSR */
    if (!s || !d->a.open || d->a.rejected || d->a.shutting_down)
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
        hy_agent_send(&d->a, &m);
    }
    arm_renewal(d);
out:
    hy_dp_snapshot_unref(s);
}

/* ----- configs ----- */

/* Takes c: it becomes the current snapshot, or is freed. */
static void on_config(struct hy_dp *d, Hypha__V1__DpConfig *c)
{
    struct hy_dp_snapshot *old = hy_dp_snapshot_get(&d->a.current, NULL), *s;
    const char *keys[2] = {d->pending.key, old ? old->key : NULL};
    const Hypha__V1__Meta *me = d->a.file.res->meta;
    char err[512];
    size_t which;
    int rc = hy_dp_snapshot_new(c, me->mesh, me->name, keys, 2, &s, &which, err, sizeof(err));
    if (rc < 0) {
        hy_series_inc(d->nacks);
        snprintf(d->a.status, sizeof(d->a.status), "refused config %.60s: %.200s", S(c->version),
                 err);
        hy_log(HY_LOG_WARN, "dp", "refused config %s from the zone control plane: %s",
               S(c->version), err);
        hy_agent_answer(&d->a, c->version, err);
        hypha__v1__dp_config__free_unpacked(c, NULL);
        goto out;
    }
    if (which == 0) /* the key of our last request is now in use */
        hy_ca_pem_fini(&d->pending);
    bool new_cert = !old || strcmp(old->fingerprint, s->fingerprint) != 0;
    char until[40], renew[40];
    hy_timestamp_format(s->not_after, 0, until, sizeof(until));
    hy_timestamp_format(s->renew_at, 0, renew, sizeof(renew));
    hy_agent_current_publish(&d->a.current, &hy_dp_snapshot_ref(s)->base);
    hy_series_inc(d->acks);
    hy_series_set(d->cert_expiry, (double)s->not_after);
    snprintf(d->a.status, sizeof(d->a.status), "config %.60s applied", s->config->version);
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
    hy_agent_answer(&d->a, s->config->version, NULL);
    hy_dp_snapshot_unref(s);
out:
    hy_dp_snapshot_unref(old);
}

/* ----- the stream's hooks ----- */

static struct hy_dp *dp_of(struct hy_agent *a)
{
    return (struct hy_dp *)a;
}

int hy_dp_client_hello(struct hy_agent *a, Hypha__V1__DpHello *h)
{
    struct hy_dp *d = dp_of(a);
    int rc = new_request(d);
    if (rc == 0)
        h->csr = d->pending.cert;
    return rc;
}

bool hy_dp_client_message(struct hy_agent *a, Hypha__V1__DpMessage *m)
{
    if (m->msg_case != HYPHA__V1__DP_MESSAGE__MSG_CONFIG)
        return false;
    Hypha__V1__DpConfig *cfg = m->config;
    m->config = NULL; /* on_config takes it: detached from m */
    m->msg_case = HYPHA__V1__DP_MESSAGE__MSG__NOT_SET;
    on_config(dp_of(a), cfg);
    return true;
}

void hy_dp_client_start(struct hy_dp *d)
{
    uv_timer_init(d->a.loop, &d->renew_timer);
    d->renew_timer.data = d;
    d->renew_init = true;
}

void hy_dp_client_stop(struct hy_dp *d)
{
    if (d->renew_init) {
        uv_close((uv_handle_t *)&d->renew_timer, NULL);
        d->renew_init = false;
    }
}

void hy_dp_client_free(struct hy_dp *d)
{
    hy_ca_pem_fini(&d->pending);
}
