/* One simulated sidecar of hypha-dp-sim: the DP session hypha-dp opens
 * (agent/agent.c, sidecar/dp_client.c), made cheap. Its Hello carries a
 * Dataplane sim-<k> with one inbound and --outbounds outbounds, its own
 * dataplane token and the CSR every session shares (the zone signs a leaf
 * for it all the same); each config is checked only for a version, then
 * acked; the certificate is renewed at 80 % of its life, as hypha-dp does.
 * What the measurements need is read off each config on the way. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane.pb-c.h"
#include "dp_sim.h"
#include "error.h"
#include "wire.h"
#include "poison.h"

#define SERVICE_TAG "hypha.io/service"
#define INBOUND_PORT 20000  /* + k / 250: with 127.0.0.(2 + k % 250), unique per sidecar */
#define OUTBOUND_PORT 15000 /* + j: the j-th outbound */
#define RENEW_PERCENT 80    /* hypha-dp's (sidecar/dp.h) */

size_t sim_outbound_service(const struct sim_cfg *c, size_t k, size_t j)
{
    return (k % c->services + 1 + j) % c->services;
}

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static uint64_t fnv_msg(uint64_t h, const ProtobufCMessage *m)
{
    uint8_t small[512];
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = len <= sizeof(small) ? small : malloc(len);
    if (!p)
        return h ^ 1; /* out of memory: a digest no other session has */
    protobuf_c_message_pack(m, p);
    h = fnv(h, p, len);
    if (p != small)
        free(p);
    return h;
}

/* ----- the Hello ----- */

typedef Hypha__V1__Dataplane__Networking__Inbound__TagsEntry in_tag;
typedef Hypha__V1__Dataplane__Networking__Outbound__TagsEntry out_tag;

/* Sends session x's DpHello: the Dataplane as a sidecar's file would give
 * it, its token, the shared CSR and hypha-dp's version. */
static int send_hello(struct sim_session *x, struct hy_ws_conn *c)
{
    const struct sim_cfg *cfg = x->sim->cfg;
    size_t nout = (size_t)cfg->outbounds;
    char name[32], address[32], svc[32];
    snprintf(name, sizeof(name), "sim-%zu", x->k);
    snprintf(address, sizeof(address), "127.0.0.%zu", 2 + x->k % 250);
    size_t own = x->k < x->sim->n ? x->k % (size_t)cfg->services : 0; /* the joiner: svc-0 */
    snprintf(svc, sizeof(svc), "svc-%zu", own);

    Hypha__V1__Dataplane dp = HYPHA__V1__DATAPLANE__INIT;
    Hypha__V1__Dataplane__Networking net = HYPHA__V1__DATAPLANE__NETWORKING__INIT;
    Hypha__V1__Dataplane__Networking__Inbound in = HYPHA__V1__DATAPLANE__NETWORKING__INBOUND__INIT,
                                              *inp = &in;
    in_tag itag = HYPHA__V1__DATAPLANE__NETWORKING__INBOUND__TAGS_ENTRY__INIT, *itagp = &itag;
    itag.key = SERVICE_TAG;
    itag.value = svc;
    in.has_port = in.has_service_port = 1;
    in.port = (uint32_t)(INBOUND_PORT + x->k / 250);
    in.service_port = in.port + 1000;
    in.tags = &itagp;
    in.n_tags = 1;
    net.address = address;
    net.inbound = &inp;
    net.n_inbound = 1;
    Hypha__V1__Dataplane__Networking__Outbound *outs = calloc(nout + 1, sizeof(*outs));
    Hypha__V1__Dataplane__Networking__Outbound **outp = calloc(nout + 1, sizeof(*outp));
    out_tag *otags = calloc(nout + 1, sizeof(*otags));
    out_tag **otagp = calloc(nout + 1, sizeof(*otagp));
    char(*osvc)[32] = calloc(nout + 1, sizeof(*osvc));
    int rc = HY_ENOMEM;
    if (!outs || !outp || !otags || !otagp || !osvc)
        goto out_free;
    for (size_t j = 0; j < nout; j++) {
        hypha__v1__dataplane__networking__outbound__init(&outs[j]);
        hypha__v1__dataplane__networking__outbound__tags_entry__init(&otags[j]);
        snprintf(osvc[j], sizeof(osvc[j]), "svc-%zu", sim_outbound_service(cfg, x->k, j));
        otags[j].key = SERVICE_TAG;
        otags[j].value = osvc[j];
        otagp[j] = &otags[j];
        outs[j].has_port = 1;
        outs[j].port = (uint32_t)(OUTBOUND_PORT + j);
        outs[j].tags = &otagp[j];
        outs[j].n_tags = 1;
        outp[j] = &outs[j];
    }
    net.outbound = outp;
    net.n_outbound = nout;
    dp.networking = &net;
    size_t len = hypha__v1__dataplane__get_packed_size(&dp);
    uint8_t *spec = malloc(len ? len : 1);
    if (!spec)
        goto out_free;
    hypha__v1__dataplane__pack(&dp, spec);

    Hypha__V1__Meta meta = HYPHA__V1__META__INIT;
    Hypha__V1__Envelope env = HYPHA__V1__ENVELOPE__INIT;
    Hypha__V1__DpHello h = HYPHA__V1__DP_HELLO__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    meta.type = "Dataplane";
    meta.mesh = cfg->mesh;
    meta.name = name;
    env.meta = &meta;
    env.has_spec = 1;
    env.spec.data = spec;
    env.spec.len = len;
    h.dataplane = &env;
    h.token = x->token;
    h.csr = x->sim->csr.cert;
    h.version = HYPHA_VERSION;
    Hypha__V1__DpPartRef *refs = x->nheld ? calloc(x->nheld, sizeof(*refs)) : NULL;
    Hypha__V1__DpPartRef **refp = x->nheld ? calloc(x->nheld, sizeof(*refp)) : NULL;
    if (refs && refp) { /* what it holds: the zone sends what differs */
        for (size_t i = 0; i < x->nheld; i++) {
            hypha__v1__dp_part_ref__init(&refs[i]);
            refs[i].has_kind = 1;
            refs[i].kind = x->held[i].kind;
            refs[i].key = (char *)x->held[i].key;
            refs[i].version = (char *)x->held[i].version;
            refp[i] = &refs[i];
        }
        h.held = refp;
        h.n_held = x->nheld;
        h.held_version = x->held_version;
    }
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
    m.hello = &h;
    rc = hy_ws_send_msg(c, &m.base, NULL);
    free(refs);
    free(refp);
    free(spec);
out_free:
    free(outs);
    free(outp);
    free(otags);
    free(otagp);
    free(osvc);
    return rc;
}

static void answer(struct sim_session *x, const char *version, const char *error)
{
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpNack nack = HYPHA__V1__DP_NACK__INIT;
    if (error) {
        nack.version = (char *)(version ? version : "");
        nack.error = (char *)error;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_NACK;
        m.nack = &nack;
    } else {
        ack.version = (char *)version;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
        m.ack = &ack;
    }
    int rc = hy_ws_send_msg(hy_ws_client_conn(x->ws), &m.base, NULL);
    if (rc < 0)
        sim_out("send-failed session=sim-%zu what=%s reason=%s", x->k, error ? "nack" : "ack",
                hy_strerror(rc));
}

/* ----- reading a config ----- */

/* The newest change the config carries, or -1. */
static long change_of(const struct sim *s, const Hypha__V1__DpConfig *c)
{
    long best = -1;
    size_t ml = strlen(s->marker);
    if (!strcmp(s->cfg->change, "timeout")) {
        for (size_t i = 0; i < c->n_outbounds; i++) {
            const Hypha__V1__Duration *d = c->outbounds[i]->connect_timeout;
            if (!d)
                continue;
            int64_t ms = d->seconds * 1000 + d->nanos / 1000000;
            int64_t idx = ms - (int64_t)s->timeout_base_ms;
            if (idx >= 0 && idx < (int64_t)s->w.total && idx > best)
                best = (long)idx;
        }
        return best;
    }
    for (size_t i = 0; i < c->n_inbounds; i++)
        for (size_t p = 0; p < c->inbounds[i]->n_permissions; p++) {
            const Hypha__V1__DpPermission *perm = c->inbounds[i]->permissions[p];
            for (size_t t = 0; t < perm->n_tags; t++) {
                const char *v = perm->tags[t]->value;
                if (!v || strncmp(v, s->marker, ml) != 0)
                    continue;
                char *end;
                long idx = strtol(v + ml, &end, 10);
                if (!*end && idx >= 0 && idx > best)
                    best = idx;
            }
        }
    return best;
}

/* A hash of what the policies decide in c: every inbound's permissions and
 * matchers, every outbound's merged settings; not the services, ports,
 * addresses, endpoints or certificates, which differ between sidecars (so
 * policies on the whole mesh give every sidecar one digest). */
static uint64_t policy_digest(Hypha__V1__DpConfig *c)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < c->n_inbounds; i++) {
        Hypha__V1__DpInbound *in = c->inbounds[i], keep = *in;
        in->has_port = in->has_service_port = 0;
        in->service_address = in->service = NULL;
        h = fnv_msg(h, &in->base);
        *in = keep;
    }
    for (size_t i = 0; i < c->n_outbounds; i++) {
        Hypha__V1__DpOutbound *o = c->outbounds[i], keep = *o;
        o->has_port = 0;
        o->service = o->sni = NULL;
        o->n_endpoints = 0;
        o->endpoints = NULL;
        h = fnv_msg(h, &o->base);
        *o = keep;
    }
    return h;
}

/* Whether update u carries svc-0's endpoints with the joiner among them. */
static bool has_joiner(const struct sim *s, const Hypha__V1__DpConfigUpdate *u)
{
    char name[32];
    snprintf(name, sizeof(name), "sim-%zu", s->n);
    for (size_t i = 0; i < u->n_parts; i++) {
        const Hypha__V1__DpPart *p = u->parts[i];
        if (p->kind != HYPHA__V1__DP_PART__KIND__Endpoints || !p->key || strcmp(p->key, "svc-0"))
            continue;
        for (size_t e = 0; e < p->n_endpoints; e++)
            if (p->endpoints[e]->name && !strcmp(p->endpoints[e]->name, name))
                return true;
    }
    return false;
}

void sim_session_parts_fini(struct sim_session *x)
{
    for (size_t i = 0; i < x->nheld; i++) {
        free((char *)x->held[i].key);
        free((char *)x->held[i].version);
    }
    free(x->held);
    x->held = NULL;
    x->nheld = 0;
    x->held_version[0] = '\0';
    Hypha__V1__DpPart **own[] = {&x->inbounds, &x->outbounds};
    for (size_t i = 0; i < 2; i++) {
        if (*own[i])
            protobuf_c_message_free_unpacked(&(*own[i])->base, NULL);
        *own[i] = NULL;
    }
}

/* Applies u's names to what x holds, as hypha-dp applies its parts
 * (common/dp_parts.c): on the version it holds ("": on nothing), giving
 * u's version. NULL, or why not. */
static const char *apply_names(struct sim_session *x, const Hypha__V1__DpConfigUpdate *u)
{
    const char *from = u->from_version ? u->from_version : "";
    if (!from[0] && x->nheld) { /* a whole config */
        for (size_t i = 0; i < x->nheld; i++) {
            free((char *)x->held[i].key);
            free((char *)x->held[i].version);
        }
        x->nheld = 0;
        x->held_version[0] = '\0';
    }
    if (strcmp(from, x->held_version))
        return "the update applies on another version than the one held";
    struct hy_dp_ref *v = realloc(x->held, (x->nheld + u->n_parts + 1) * sizeof(*v));
    if (!v)
        return "out of memory";
    x->held = v;
    for (size_t i = 0; i < u->n_parts; i++) {
        const Hypha__V1__DpPart *p = u->parts[i];
        struct hy_dp_ref want = {(int)p->kind, p->key, NULL};
        size_t at = 0;
        while (at < x->nheld && hy_dp_ref_cmp(&x->held[at], &want))
            at++;
        if (at < x->nheld) { /* replaced or removed */
            free((char *)x->held[at].key);
            free((char *)x->held[at].version);
            x->held[at] = x->held[--x->nheld];
        }
        if (p->removed)
            continue;
        char *key = p->key ? strdup(p->key) : NULL, *ver = strdup(p->version ? p->version : "");
        if ((p->key && !key) || !ver) {
            free(key);
            free(ver);
            return "out of memory";
        }
        x->held[x->nheld++] = (struct hy_dp_ref){(int)p->kind, key, ver};
    }
    hy_dp_whole_version(x->held, x->nheld, x->held_version);
    if (strcmp(x->held_version, u->version ? u->version : ""))
        return "the parts held do not make the update's version";
    return NULL;
}

/* Keeps u's Inbounds and Outbounds parts (detached from u), what the
 * measurements read; returns the certificate of its Identity part, or
 * NULL. */
static const char *take_parts(struct sim_session *x, Hypha__V1__DpConfigUpdate *u)
{
    const char *cert = NULL;
    for (size_t i = 0; i < u->n_parts; i++) {
        Hypha__V1__DpPart *p = u->parts[i], **keep = NULL;
        if (p->kind == HYPHA__V1__DP_PART__KIND__Identity && p->identity)
            cert = p->identity->cert;
        else if (p->kind == HYPHA__V1__DP_PART__KIND__Inbounds)
            keep = &x->inbounds;
        else if (p->kind == HYPHA__V1__DP_PART__KIND__Outbounds)
            keep = &x->outbounds;
        if (!keep)
            continue;
        if (*keep)
            protobuf_c_message_free_unpacked(&(*keep)->base, NULL);
        *keep = p;
        u->parts[i] = u->parts[--u->n_parts];
        i--;
    }
    return cert;
}

/* When hypha-dp would ask for a new certificate (sidecar/dp_snapshot.c's
 * rule: 80 % of the life that starts at signing). 0 if cert is unreadable. */
static int64_t renew_time(const char *cert)
{
    struct hy_ca_info info = {0};
    if (hy_ca_inspect(cert, &info) < 0)
        return 0;
    int64_t nb = info.not_before, na = info.not_after, now = (int64_t)time(NULL);
    hy_ca_info_fini(&info);
    int64_t issued = nb + HY_CA_BACKDATE_SECONDS;
    if (issued > now)
        issued = now > nb ? now : nb;
    return na <= issued ? na : issued + (na - issued) * RENEW_PERCENT / 100;
}

static void join_check(struct sim *s);

/* Starts the next --ramp sessions once every started one is open and has
 * its first config. In batches, not one by one: lws keeps the index of its
 * TLS connection data in a global that every new context renews, so a
 * context created while another client's handshake is under way makes that
 * handshake fail ("can't get wsi from ssl privdata"). Every client of a
 * batch is created before any of them connects (on the next loop turn). */
void sim_ramp(struct sim *s)
{
    if (s->finished || s->started >= s->n || s->nconfigured < s->started || s->nopen < s->started)
        return;
    size_t end = s->started + (size_t)s->cfg->ramp;
    while (s->started < end && s->started < s->n) {
        int rc = sim_session_start(s, s->started);
        if (rc != SIM_OK) {
            sim_finish(s, rc);
            return;
        }
    }
}

static void on_update(struct sim_session *x, Hypha__V1__DpConfigUpdate *u, size_t bytes)
{
    struct sim *s = x->sim;
    uint64_t now = sim_now_ns();
    x->configs++;
    x->bytes += bytes;
    bool joiner = s->joining && !x->join_seen && x->has_svc0 && has_joiner(s, u);
    const char *why = apply_names(x, u);
    if (why) { /* what hypha-dp refuses before anything else */
        x->nacks++;
        sim_out("nack session=sim-%zu reason=%s", x->k, why);
        answer(x, u->version, why);
        return;
    }
    size_t nparts = u->n_parts;
    const char *cert = take_parts(x, u);
    if (cert && cert[0]) {
        uint64_t ch = fnv(1469598103934665603ULL, cert, strlen(cert));
        if (ch != x->cert_hash) {
            x->renewals += x->cert_hash != 0;
            x->cert_hash = ch;
            x->renew_at = renew_time(cert);
        }
    }
    /* the config as the measurements read it: its inbounds and outbounds */
    Hypha__V1__DpConfig view = HYPHA__V1__DP_CONFIG__INIT, *c = &view;
    view.version = x->held_version;
    if (x->inbounds) {
        view.inbounds = x->inbounds->inbounds;
        view.n_inbounds = x->inbounds->n_inbounds;
    }
    if (x->outbounds) {
        view.outbounds = x->outbounds->outbounds;
        view.n_outbounds = x->outbounds->n_outbounds;
    }
    if (s->has_writer && x->k < s->n)
        sim_writer_config(s, x->k, change_of(s, c), policy_digest(c), bytes);
    if (s->cfg->trace)
        sim_out("config session=sim-%zu version=%s bytes=%zu parts=%zu inbounds=%zu "
                "outbounds=%zu",
                x->k, c->version, bytes, nparts, c->n_inbounds, c->n_outbounds);
    answer(x, c->version, NULL);
    x->fresh = true;
    if (s->joining && !x->join_seen && (joiner || x->k == s->n)) {
        x->join_seen = true;
        x->t_join = now;
        if (x->k < s->n)
            s->join_seen++;
    }
    if (!x->configured) {
        x->configured = true;
        x->t_first_config = now;
        if (x->k < s->n) {
            s->nconfigured++;
            sim_ramp(s);
            if (s->nconfigured == s->n)
                sim_on_connected(s);
        }
    }
    if (s->joining)
        join_check(s);
}

/* ----- the join ----- */

static void join_check(struct sim *s)
{
    struct sim_session *j = &s->v[s->n];
    if (s->joined || !j->configured || s->join_seen < s->join_watchers)
        return;
    s->joined = true;
    size_t n = s->join_watchers;
    int64_t *v = malloc((n + 1) * sizeof(*v));
    if (!v) {
        sim_out("error reason=out of memory for the join's statistics");
        sim_finish(s, SIM_UNEXPECTED);
        return;
    }
    size_t m = 0;
    uint64_t last = j->t_first_config;
    for (size_t k = 0; k < s->n; k++)
        if (s->v[k].has_svc0) {
            v[m++] = (int64_t)(s->v[k].t_join - s->t_join);
            last = s->v[k].t_join > last ? s->v[k].t_join : last;
        }
    sim_out("joined session=sim-%zu own_config_ms=%.1f watchers=%zu all_ms=%.1f", s->n,
            (double)(j->t_first_config - s->t_join) / 1e6, n, (double)(last - s->t_join) / 1e6);
    sim_print_latency("join-each-watcher", "join", n, v, m);
    free(v);
    sim_on_joined(s);
}

void sim_join_start(struct sim *s)
{
    s->joining = true;
    s->t_join = sim_now_ns();
    s->join_watchers = 0;
    for (size_t k = 0; k < s->n; k++)
        s->join_watchers += s->v[k].has_svc0;
    int rc = sim_session_start(s, s->n);
    if (rc != SIM_OK)
        sim_finish(s, rc);
}

/* ----- the websocket callbacks ----- */

static void ws_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct sim_session *x = ud;
    (void)peer;
    x->open = x->ever_open = x->sim->any_open = true;
    x->sim->nopen += x->k < x->sim->n;
    x->fresh = false;
    x->opens++;
    int rc = send_hello(x, c);
    if (rc < 0) {
        sim_out("send-failed session=sim-%zu what=hello reason=%s", x->k, hy_strerror(rc));
        hy_ws_close(c, HY_WS_CLOSE_INTERNAL, "cannot send the hello");
    }
}

static void ws_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct sim_session *x = ud;
    struct sim *s = x->sim;
    char text[256];
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) { /* hypha-dp closes too */
        sim_out("malformed session=sim-%zu bytes=%zu", x->k, len);
        hy_ws_close(c, HY_WS_CLOSE_POLICY, "malformed message");
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__DP_MESSAGE__MSG_REJECT:
        x->rejected = true;
        sim_out("reject session=sim-%zu reason=%s", x->k,
                sim_clean(m->reject->reason, text, sizeof(text)));
        sim_finish(s, SIM_UNEXPECTED);
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_UPDATE:
        if (!s->finished)
            on_update(x, m->update, len);
        break;
    default:
        sim_out("unexpected session=sim-%zu case=%d bytes=%zu", x->k, (int)m->msg_case, len);
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void ws_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct sim_session *x = ud;
    struct sim *s = x->sim;
    char text[HY_WS_REASON_MAX + 1];
    (void)c;
    if (s->finished)
        return;
    sim_clean(reason, text, sizeof(text));
    if (!s->any_open) {
        sim_out("connect-failed session=sim-%zu reason=%s", x->k, text);
        sim_finish(s, SIM_NOCONNECT);
        return;
    }
    bool was = x->open;
    x->open = false;
    s->nopen -= was && x->k < s->n;
    x->fresh = false;
    if (!was)
        return; /* a failed attempt of a reconnect: the client retries */
    x->closes++;
    if (s->cfg->trace)
        sim_out("close session=sim-%zu code=%d closes=%" PRIu64 " reason=%s", x->k, code, x->closes,
                text);
    if (s->has_writer && x->k < s->n)
        sim_writer_closed(s, x->k);
}

/* ----- life ----- */

int sim_session_start(struct sim *s, size_t k)
{
    const struct sim_cfg *c = s->cfg;
    struct sim_session *x = &s->v[k];
    x->sim = s;
    x->k = k;
    for (size_t j = 0; k < s->n && j < (size_t)c->outbounds; j++)
        x->has_svc0 |= sim_outbound_service(c, k, j) == 0;
    struct hy_ws_client_config wc = {
        .loop = s->loop,
        .url = c->cp_address,
        .name = "the zone control plane",
        .ca_file = c->ca_cert_file,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .limits = {.max_message = HY_DP_MAX_CONFIG},
        .shared = s->ws_ctx,
        .cb = {ws_open, ws_message, ws_close},
        .ud = x,
    };
    if (hy_ws_client_new(&wc, &x->ws) < 0) {
        sim_out("error session=sim-%zu reason=cannot create the websocket client (see the log)", k);
        return SIM_USAGE;
    }
    s->started += k < s->n;
    return SIM_OK;
}

void sim_sessions_tick(struct sim *s)
{
    int64_t now = (int64_t)time(NULL);
    size_t total = s->n + (s->joining ? 1 : 0);
    for (size_t k = 0; k < total; k++) {
        struct sim_session *x = &s->v[k];
        if (!x->ws || !x->open || !x->fresh || !x->renew_at || now < x->renew_at)
            continue;
        x->renew_at = now + 60; /* again in a minute if no certificate comes */
        Hypha__V1__DpCsr csr = HYPHA__V1__DP_CSR__INIT;
        Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
        csr.csr = s->csr.cert;
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CSR;
        m.csr = &csr;
        int rc = hy_ws_send_msg(hy_ws_client_conn(x->ws), &m.base, NULL);
        if (rc < 0 || s->cfg->trace)
            sim_out("renewal session=sim-%zu rc=%d", x->k, rc);
    }
}
