/* hypha-kds-probe's send mode: a zone (with a real zone token) that sends
 * the resources of a YAML file upward as KDS Changes, bent the ways a
 * hostile zone would bend them (a label with no key, a key twice, many
 * copies, deletes of what is not its own), then prints what the global CP
 * answered: each refused resource, each Ack and Nack. With --hold it then
 * stays connected until the server ends the session (a revoked token). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "kds.h"
#include "kds_probe.h"
#include "poison.h"

struct sender {
    struct probe *p;
    struct hy_ws_client *ws;
    struct hy_docs docs;
    bool opened, welcomed, rejected, done;
    uint64_t next;  /* next copy index to send */
    uint64_t total; /* docs * copies */
    uint64_t batch_no, in_flight_to;
    uint64_t acked, refused, nacked;
    bool deletes_sent;
};

/* ----- bending resources ----- */

static Hypha__V1__Meta__LabelsEntry *entry(const char *key, const char *value)
{
    Hypha__V1__Meta__LabelsEntry *e = malloc(sizeof(*e));
    if (!e)
        return NULL;
    hypha__v1__meta__labels_entry__init(e);
    e->key = key ? strdup(key) : NULL;
    e->value = value ? strdup(value) : NULL;
    return e;
}

static void add_label(Hypha__V1__Meta *m, const char *key, const char *value)
{
    Hypha__V1__Meta__LabelsEntry **v = realloc(m->labels, (m->n_labels + 1) * sizeof(*v));
    if (!v)
        return;
    m->labels = v;
    if ((v[m->n_labels] = entry(key, value)))
        m->n_labels++;
}

static bool tweak_on(const struct probe_cfg *c, const char *name)
{
    for (size_t i = 0; i < c->tweaks.n; i++)
        if (!strcmp(c->tweaks.v[i], name))
            return true;
    return false;
}

/* Every inbound of a Dataplane gets its hypha.io/service tag a second time,
 * with another value (what a protobuf peer can send and YAML cannot). */
static void dup_service_tags(struct hy_resource *r)
{
    if (strcmp(r->type->name, "Dataplane"))
        return;
    Hypha__V1__Dataplane *dp = (Hypha__V1__Dataplane *)r->spec;
    for (size_t i = 0; dp->networking && i < dp->networking->n_inbound; i++) {
        Hypha__V1__Dataplane__Networking__Inbound *in = dp->networking->inbound[i];
        Hypha__V1__Dataplane__Networking__Inbound__TagsEntry **v =
            realloc(in->tags, (in->n_tags + 1) * sizeof(*v));
        if (!v)
            return;
        in->tags = v;
        v[in->n_tags] = (void *)entry("hypha.io/service", "admin-console");
        if (v[in->n_tags])
            in->n_tags++;
    }
}

Hypha__V1__Envelope *probe_envelope(const struct probe_cfg *c, const struct hy_resource *src,
                                    uint64_t k)
{
    struct hy_resource *r = hy_resource_dup(src);
    if (!r)
        return NULL;
    if (c->copies > 1) {
        char name[600];
        snprintf(name, sizeof(name), "%s-%llu", r->meta->name, (unsigned long long)k);
        hy_resource_set_name(r, r->meta->mesh, name);
    }
    if (tweak_on(c, "null-label-key"))
        add_label(r->meta, NULL, "x");
    if (tweak_on(c, "dup-label")) {
        add_label(r->meta, "team", "a");
        add_label(r->meta, "team", "b");
    }
    if (tweak_on(c, "dup-service-tag"))
        dup_service_tags(r);
    size_t len;
    uint8_t *buf = hy_resource_pack(r, &len);
    hy_resource_free(r);
    if (!buf)
        return NULL;
    Hypha__V1__Envelope *env = hypha__v1__envelope__unpack(NULL, len, buf);
    free(buf);
    return env;
}

static Hypha__V1__ResourceKey *key_of(const char *spec)
{
    /* TYPE/MESH/NAME, MESH empty for global types */
    char *copy = strdup(spec), *mesh, *name;
    if (!copy || !(mesh = strchr(copy, '/')) || !(name = strchr(mesh + 1, '/'))) {
        free(copy);
        return NULL;
    }
    *mesh++ = '\0';
    *name++ = '\0';
    Hypha__V1__ResourceKey *k = malloc(sizeof(*k));
    if (k) {
        hypha__v1__resource_key__init(k);
        k->type = strdup(copy);
        k->mesh = mesh[0] ? strdup(mesh) : NULL;
        k->name = strdup(name);
    }
    free(copy);
    return k;
}

int probe_load_resources(const char *path, struct hy_docs *out)
{
    struct hy_buf text = {0};
    struct hy_diag d = {0};
    FILE *f = fopen(path, "r");
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        hy_buf_append(&text, chunk, n);
    if (f)
        fclose(f);
    int rc =
        f ? hy_codec_decode_resources(path, text.data ? text.data : "", text.len, NULL, out, &d)
          : -errno;
    hy_buf_fini(&text);
    if (rc < 0 || !out->n) {
        char why[300];
        probe_out("error reason=%s: %s", path,
                  d.n  ? hy_diag_format(&d, 0, why, sizeof(why))
                  : rc ? hy_strerror(rc)
                       : "no resources in it");
        hy_diag_fini(&d);
        return PROBE_USAGE;
    }
    hy_diag_fini(&d);
    return PROBE_OK;
}

/* ----- the exchange ----- */

/* Sends the next Changes: up to --batch upserts, then (once) the deletes.
 * Returns false when everything was sent. */
static bool send_next(struct sender *s)
{
    const struct probe_cfg *c = s->p->cfg;
    Hypha__V1__Changes ch = HYPHA__V1__CHANGES__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    size_t max = c->batch ? (size_t)c->batch : 500;
    if (s->next >= s->total && (s->deletes_sent || !c->deletes.n))
        return false;
    ch.upserts = calloc(max, sizeof(*ch.upserts));
    if (!ch.upserts)
        return false;
    while (s->next < s->total && ch.n_upserts < max) {
        uint64_t i = s->next++;
        Hypha__V1__Envelope *env = probe_envelope(c, s->docs.v[i % s->docs.n].res, i / s->docs.n);
        if (env)
            ch.upserts[ch.n_upserts++] = env;
    }
    if (s->next >= s->total && !s->deletes_sent && c->deletes.n) {
        ch.deletes = calloc(c->deletes.n, sizeof(*ch.deletes));
        for (size_t i = 0; ch.deletes && i < c->deletes.n; i++)
            if ((ch.deletes[ch.n_deletes] = key_of(c->deletes.v[i])))
                ch.n_deletes++;
        s->deletes_sent = true;
    }
    ch.has_from = ch.has_to = 1;
    ch.from = s->batch_no;
    ch.to = s->in_flight_to = ++s->batch_no;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_CHANGES;
    m.changes = &ch;
    int rc = probe_send(hy_ws_client_conn(s->ws), &m);
    probe_out("changes to=%llu upserts=%zu deletes=%zu rc=%d", (unsigned long long)ch.to,
              ch.n_upserts, ch.n_deletes, rc);
    for (size_t i = 0; i < ch.n_upserts; i++)
        hypha__v1__envelope__free_unpacked(ch.upserts[i], NULL);
    for (size_t i = 0; i < ch.n_deletes; i++)
        hypha__v1__resource_key__free_unpacked(ch.deletes[i], NULL);
    free(ch.upserts);
    free(ch.deletes);
    return true;
}

static void finish_sending(struct sender *s)
{
    s->done = true;
    probe_out("done acked=%llu refused=%llu nacked=%llu", (unsigned long long)s->acked,
              (unsigned long long)s->refused, (unsigned long long)s->nacked);
    if (!s->p->cfg->hold)
        probe_finish(s->p, PROBE_OK);
}

static void on_ack(struct sender *s, const Hypha__V1__Ack *a)
{
    char t[300], n[300], why[400];
    if (!a->has_to || a->to != s->in_flight_to)
        return; /* an Ack of something else (the global's changes are ours to ack) */
    s->acked++;
    for (size_t i = 0; i < a->n_refused; i++) {
        const Hypha__V1__Refused *f = a->refused[i];
        s->refused++;
        if (i < 20 || s->p->cfg->trace)
            probe_out("refused type=%s name=%s reason=%s",
                      probe_clean(f->key ? f->key->type : "", t, sizeof(t)),
                      probe_clean(f->key ? f->key->name : "", n, sizeof(n)),
                      probe_clean(f->reason, why, sizeof(why)));
    }
    probe_out("ack to=%llu refused=%zu", (unsigned long long)a->to, a->n_refused);
    if (!send_next(s))
        finish_sending(s);
}

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct sender *s = ud;
    (void)c;
    if (s->opened)
        return;
    s->opened = true;
    probe_out("open peer=%s", peer);
    /* ahead of global: it answers with a snapshot, which is acked unread */
    probe_send_hello(s->p, hy_ws_client_conn(s->ws), UINT64_MAX / 2);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct sender *s = ud;
    char text[400];
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, len, data);
    if (!m) {
        probe_out("message type=malformed bytes=%zu", len);
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__KDS_MESSAGE__MSG_REJECT:
        s->rejected = true;
        probe_out("reject reason=%s", probe_clean(m->reject->reason, text, sizeof(text)));
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_WELCOME:
        if (s->welcomed)
            break;
        s->welcomed = true;
        probe_out("welcome zone=%s", s->p->cfg->zone);
        if (!send_next(s))
            finish_sending(s);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_CHANGES: {
        /* the global CP's own changes: ack them, as a zone does */
        Hypha__V1__Ack ack = HYPHA__V1__ACK__INIT;
        Hypha__V1__KdsMessage out = HYPHA__V1__KDS_MESSAGE__INIT;
        ack.has_to = 1;
        ack.to = m->changes->to;
        out.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_ACK;
        out.ack = &ack;
        probe_send(c, &out);
        break;
    }
    case HYPHA__V1__KDS_MESSAGE__MSG_ACK:
        on_ack(s, m->ack);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_NACK:
        s->nacked++;
        probe_out("nack to=%llu error=%s", (unsigned long long)m->nack->to,
                  probe_clean(m->nack->error, text, sizeof(text)));
        if (m->nack->to == s->in_flight_to && !send_next(s))
            finish_sending(s);
        break;
    default:
        break;
    }
    hypha__v1__kds_message__free_unpacked(m, NULL);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct sender *s = ud;
    (void)c;
    char text[HY_WS_REASON_MAX + 1];
    probe_clean(reason, text, sizeof(text));
    if (!s->opened) {
        probe_out("connect-failed reason=%s", text);
        probe_finish(s->p, PROBE_NOCONNECT);
        return;
    }
    if (s->p->finished)
        return;
    probe_out("close code=%d reason=%s", code, text);
    /* with --hold, the server ending the session is the outcome waited for */
    probe_finish(s->p, s->done && s->p->cfg->hold ? PROBE_OK : PROBE_UNEXPECTED);
}

int probe_send_start(struct probe *p)
{
    const struct probe_cfg *c = p->cfg;
    struct sender *s = calloc(1, sizeof(*s));
    if (!s)
        return PROBE_UNEXPECTED;
    p->raw = s;
    s->p = p;
    int rc = probe_load_resources(c->resources, &s->docs);
    if (rc != PROBE_OK)
        return rc;
    s->total = s->docs.n * (c->copies ? c->copies : 1);
    struct hy_ws_client_config wc =
        probe_ws_config(p, (struct hy_ws_callbacks){on_open, on_message, on_close}, s);
    if (hy_ws_client_new(&wc, &s->ws) < 0) {
        probe_out("error reason=cannot create the websocket client (see the log)");
        return PROBE_USAGE;
    }
    return PROBE_OK;
}

void probe_send_stop(struct probe *p)
{
    struct sender *s = p->raw;
    if (s)
        hy_ws_client_stop(s->ws);
}

void probe_send_free(struct probe *p)
{
    struct sender *s = p->raw;
    if (!s)
        return;
    hy_ws_client_free(s->ws);
    hy_docs_fini(&s->docs);
    free(s);
    p->raw = NULL;
}
