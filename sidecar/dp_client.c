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
#include "dp_prom.h"
#include "error.h"
#include "metrics.h"
#include "proxy.h"
#include "wire.h"
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
static int new_request(struct hy_sidecar *d)
{
    struct hy_ca_pem p = {0};
    char cn[HY_CA_CN_MAX + 1];
    snprintf(cn, sizeof(cn), "%s", d->a.file.res->meta->name);
    int rc = hy_ca_make_csr(cn, &p);
    hy_proxy_mem_release(); /* the key generation's tables: next used at renewal */
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
static void arm_renewal(struct hy_sidecar *d)
{
    if (d->a.shutting_down || !d->next_ask_ms)
        return;
    int64_t delay = d->next_ask_ms - wall_ms();
    uv_timer_start(&d->renew_timer, on_renew, delay > 0 ? (uint64_t)delay : 0, 0);
}

static void on_renew(uv_timer_t *t)
{
    struct hy_sidecar *d = t->data;
    struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_get(&d->a.current, NULL);
    /* not connected: the DpHello of the next connection carries a CSR */
    if (!s || !d->a.open || d->a.rejected || d->a.shutting_down)
        goto out;
    if (wall_ms() < d->next_ask_ms) { /* woken early (the clock moved) */
        arm_renewal(d);
        goto out;
    }
    d->next_ask_ms = wall_ms() + (int64_t)hy_sidecar_renew_retry_ms(s->not_before, s->not_after);
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
    hy_sidecar_snapshot_unref(s);
}

/* ----- configs ----- */

/* Refuses update u: DpNack of its version with why, naming its parts. */
static void refuse(struct hy_sidecar *d, const Hypha__V1__DpConfigUpdate *u, const char *why)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    Hypha__V1__DpPartRef *refs = calloc(u->n_parts ? u->n_parts : 1, sizeof(*refs));
    Hypha__V1__DpPartRef **v = calloc(u->n_parts ? u->n_parts : 1, sizeof(*v));
    for (size_t i = 0; refs && v && i < u->n_parts; i++) {
        hypha__v1__dp_part_ref__init(&refs[i]);
        refs[i].has_kind = u->parts[i]->has_kind;
        refs[i].kind = u->parts[i]->kind;
        refs[i].key = u->parts[i]->key;
        refs[i].version = u->parts[i]->version;
        v[nack.n_parts++] = &refs[i];
    }
    hy_series_inc(d->nacks);
    snprintf(d->a.status, sizeof(d->a.status), "refused config %.60s: %.200s", S(u->version), why);
    hy_log(HY_LOG_WARN, "dp", "refused config %s from the zone control plane: %s", S(u->version),
           why);
    nack.version = (char *)S(u->version);
    nack.error = (char *)why;
    nack.parts = v;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
    m.nack = &nack;
    hy_agent_send(&d->a, &m);
    free(v);
    free(refs);
}

/* Takes c: it becomes the current snapshot (true, answered DpAck), or is
 * freed (false, why filled). */
static bool on_config(struct hy_sidecar *d, Hypha__V1__DpConfig *c, char *err, size_t size)
{
    struct hy_sidecar_snapshot *old = hy_sidecar_snapshot_get(&d->a.current, NULL), *s;
    const char *keys[2] = {d->pending.key, old ? old->key : NULL};
    const Hypha__V1__Meta *me = d->a.file.res->meta;
    size_t which;
    int rc = hy_sidecar_snapshot_new(c, me->mesh, me->name, keys, 2, &s, &which, err, size);
    hy_proxy_mem_release(); /* the chain check's tables: next used at the next config */
    if (rc < 0) {
        hypha__v1__dp_config__free_unpacked(c, NULL);
        hy_sidecar_snapshot_unref(old);
        return false;
    }
    if (which == 0) /* the key of our last request is now in use */
        hy_ca_pem_fini(&d->pending);
    bool new_cert = !old || strcmp(old->fingerprint, s->fingerprint) != 0;
    char until[40], renew[40];
    hy_timestamp_format(s->not_after, 0, until, sizeof(until));
    hy_timestamp_format(s->renew_at, 0, renew, sizeof(renew));
    hy_agent_current_publish(&d->a.current, &hy_sidecar_snapshot_ref(s)->base);
    hy_dp_prom_apply(d->prom, s->config->metrics); /* MeshMetric's endpoint follows */
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
    hy_sidecar_snapshot_unref(s);
    hy_sidecar_snapshot_unref(old);
    return true;
}

/* An update: the parts held with u's applied make the config, checked
 * whole before anything is kept (a refused update leaves the parts and
 * the snapshot as they were). */
static void on_update(struct hy_sidecar *d, Hypha__V1__DpConfigUpdate *u)
{
    struct hy_dp_parts staged;
    Hypha__V1__DpConfig *c = NULL;
    char err[512];
    int rc = hy_dp_parts_stage(&d->parts, u, &staged, err, sizeof(err));
    if (rc == 0 && (rc = hy_dp_parts_assemble(&staged, &c, err, sizeof(err))) < 0)
        hy_dp_parts_fini(&staged);
    if (rc < 0) {
        refuse(d, u, err);
        return;
    }
    if (!on_config(d, c, err, sizeof(err))) {
        hy_dp_parts_fini(&staged);
        refuse(d, u, err);
        return;
    }
    hy_dp_parts_commit(&d->parts, &staged, u);
}

/* ----- the stream's hooks ----- */

static struct hy_sidecar *dp_of(struct hy_agent *a)
{
    return (struct hy_sidecar *)a;
}

static void hello_refs_fini(struct hy_sidecar *d)
{
    for (size_t i = 0; i < d->n_hello_refs; i++)
        free(d->hello_refs[i]);
    free(d->hello_refs);
    d->hello_refs = NULL;
    d->n_hello_refs = 0;
}

/* A CSR for a new key, and the parts held (what the zone need not send
 * again), unless naming them would make the Hello too big for the zone
 * to read: then it sends everything. */
int hy_sidecar_client_hello(struct hy_agent *a, Hypha__V1__DpHello *h)
{
    struct hy_sidecar *d = dp_of(a);
    int rc = new_request(d);
    if (rc < 0)
        return rc;
    h->csr = d->pending.cert;
    hello_refs_fini(d);
    if (hy_dp_parts_refs(&d->parts, &d->hello_refs, &d->n_hello_refs) < 0)
        return 0; /* out of memory: it gets everything */
    h->held = d->hello_refs;
    h->n_held = d->n_hello_refs;
    h->held_version = d->parts.version[0] ? d->parts.version : NULL;
    if (hypha__v1__dp_hello__get_packed_size(h) + 64 > HY_DP_MAX_HELLO) {
        h->held = NULL;
        h->n_held = 0;
        h->held_version = NULL;
    }
    return 0;
}

bool hy_sidecar_client_message(struct hy_agent *a, Hypha__V1__DpMessage *m)
{
    if (m->msg_case != HYPHA__V1__DP_MESSAGE__MSG_UPDATE)
        return false;
    on_update(dp_of(a), m->update); /* it takes the parts it keeps from the update */
    return true;
}

void hy_sidecar_client_start(struct hy_sidecar *d)
{
    uv_timer_init(d->a.loop, &d->renew_timer);
    d->renew_timer.data = d;
    d->renew_init = true;
}

void hy_sidecar_client_stop(struct hy_sidecar *d)
{
    if (d->renew_init) {
        uv_close((uv_handle_t *)&d->renew_timer, NULL);
        d->renew_init = false;
    }
}

void hy_sidecar_client_free(struct hy_sidecar *d)
{
    hy_ca_pem_fini(&d->pending);
    hello_refs_fini(d);
    hy_dp_parts_fini(&d->parts);
}
