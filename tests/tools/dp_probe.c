/* hypha-dp-probe: a DP peer (sidecar or ingress) that misbehaves on purpose,
 * for tests/integration/dp_hostile.sh: Hellos whose Dataplane or ZoneIngress
 * is tampered with (NULL or duplicate tag keys, over-long names, missing
 * fields, unknown fields), a session that renews its certificate when told
 * to (after its token was revoked), oversized and garbage messages, and many
 * raw connections that never say Hello or hold a partial large frame (the
 * pre-Hello memory and connection limits), and a session answering the
 * zone's questions for its metrics wrongly (--stats). The model is
 * kds_probe.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "ca.h"
#include "config.h"
#include "dataplane.pb-c.h"
#include "dp.pb-c.h"
#include "error.h"
#include "log.h"
#include "wire.h"
#include "ws.h"
#include "poison.h"

enum {
    PROBE_OK = 0,         /* the expected outcome */
    PROBE_UNEXPECTED = 1, /* another one */
    PROBE_USAGE = 2,
    PROBE_NOCONNECT = 3,
    PROBE_TIMEOUT = 4,
};

struct probe_cfg {
    char *url, *ca_file;
    bool insecure;
    int64_t timeout;
    char *token_file;
    char *kind; /* dataplane or ingress */
    char *mesh, *name, *service, *address;
    uint64_t port;
    char *tamper;
    char *dup_value;
    uint64_t size, count, seed, threads;
    int64_t expect_code;
    char *renew_file;
    char *stats;
    bool trace;
    enum hy_log_level log_level;
};

#define O(field) offsetof(struct probe_cfg, field)

static const struct hy_option options[] = {
    {"url", NULL, NULL, HY_OPT_STRING, O(url), NULL,
     "DP address of the zone: wss://127.0.0.1:PORT (required)"},
    {"ca-file", NULL, NULL, HY_OPT_STRING, O(ca_file), NULL,
     "CA that verifies the DP server's certificate ($ZONE_DATA/dp/ca.pem)"},
    {"insecure", NULL, NULL, HY_OPT_BOOL, O(insecure), "false",
     "do not verify the DP server's certificate (instead of --ca-file)"},
    {"timeout", NULL, NULL, HY_OPT_DURATION, O(timeout), "30s",
     "the run ends after this long (exit 4 if its goal was not reached)"},
    {"token-file", NULL, NULL, HY_OPT_STRING, O(token_file), NULL,
     "hello, session: the dataplane (or zone-ingress) token"},
    {"kind", NULL, NULL, HY_OPT_STRING, O(kind), "dataplane",
     "hello, session: present a Dataplane or a ZoneIngress (ingress)"},
    {"mesh", NULL, NULL, HY_OPT_STRING, O(mesh), "default", "the Dataplane's mesh"},
    {"name", NULL, NULL, HY_OPT_STRING, O(name), "probe-1", "the Dataplane's (ZoneIngress's) name"},
    {"service", NULL, NULL, HY_OPT_STRING, O(service), "web", "its inbound's hypha.io/service"},
    {"address", NULL, NULL, HY_OPT_STRING, O(address), "127.0.0.1", "networking.address"},
    {"port", NULL, NULL, HY_OPT_UINT, O(port), "30000", "its inbound port (ingress: its port)"},
    {"tamper", NULL, NULL, HY_OPT_STRING, O(tamper), "none",
     "hello: what to break (see the list above)"},
    {"dup-value", NULL, NULL, HY_OPT_STRING, O(dup_value), "admin",
     "hello --tamper dup-service: the second hypha.io/service value"},
    {"size", NULL, NULL, HY_OPT_SIZE, O(size), "4Mi",
     "huge: bytes of the message; partial: bytes the frame announces (all but one are sent)"},
    {"count", NULL, NULL, HY_OPT_UINT, O(count), "10",
     "garbage: messages; idle, partial: connections"},
    {"threads", NULL, NULL, HY_OPT_UINT, O(threads), "8",
     "idle, partial: connections opened in "
     "parallel"},
    {"seed", NULL, NULL, HY_OPT_UINT, O(seed), "1", "garbage, huge: seed of the random bytes"},
    {"expect-code", NULL, NULL, HY_OPT_INT, O(expect_code), "0",
     "huge, idle, partial: the close code that counts as the expected outcome (0: 1009 for huge "
     "and partial, 1008 for idle)"},
    {"renew-file", NULL, NULL, HY_OPT_STRING, O(renew_file), NULL,
     "session: once this file exists, send one renewal CSR"},
    {"stats", NULL, NULL, HY_OPT_STRING, O(stats), "answer",
     "session: how to answer DpStatsRequest: answer, silent, wrong-id (id + 1000), error (an "
     "error, no text), oversized (HY_DP_MAX_STATS + 1 bytes), unsolicited (answer, and send a "
     "DpStats nobody asked for after the first config)"},
    {"trace", NULL, NULL, HY_OPT_BOOL, O(trace), "false", "print a line for every message"},
    {"log-level", NULL, NULL, HY_OPT_LOG_LEVEL, O(log_level), "warn",
     "log lines on stderr (the websocket module's)"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-dp-probe",
    .summary =
        "A hostile DP peer for tests. MODE is one of:\n"
        "  hello    one DpHello, broken as --tamper says, then wait; exit 0 on a Reject and a\n"
        "           close 1008 (--tamper none: exit 0 on the first config instead). --tamper:\n"
        "           none, null-key, null-value, dup-service, long-name, huge-name, null-address,\n"
        "           bad-address, no-networking, unknown-field, many-tags, null-label-key,\n"
        "           no-csr, null-token, wrong-type, bad-version, many-inbounds, ack-first\n"
        "  session  a valid Hello; ack every config; with --renew-file send a CSR once that\n"
        "           file exists; answer questions for metrics as --stats says; exit 0 when\n"
        "           the zone ends the session with a Reject and 1008\n"
        "  huge     one message of --size bytes right after connecting; exit 0 on a close with\n"
        "           --expect-code (1009)\n"
        "  garbage  --count messages of random bytes; exit 0 when the zone closes with a close\n"
        "           frame\n"
        "  idle     --count raw connections that complete the websocket handshake and send\n"
        "           nothing; exit 0 when the zone closed every one with --expect-code (1008)\n"
        "  partial  --count raw connections that each send one frame announcing --size bytes\n"
        "           and all of it but the last byte; prints 'holding' once all are sent; exit\n"
        "           0 when the zone closed every one with --expect-code (1009)\n"
        "Output: one line per event on stdout, EVENT key=value...; a text field (reason)\n"
        "comes last. Exit codes: 0 the expected outcome, 1 another one, 2 usage, 3 no\n"
        "connection, 4 timeout.",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .args = "MODE",
};

enum mode { MODE_HELLO, MODE_SESSION, MODE_HUGE, MODE_GARBAGE, MODE_IDLE, MODE_PARTIAL };
static const char *const mode_names[] = {"hello", "session", "huge", "garbage", "idle", "partial"};

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static const char *clean(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    for (; s && *s && n + 1 < size; s++)
        buf[n++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f ? *s : '?';
    buf[n] = '\0';
    return buf;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 16384);
    size_t n = buf ? fread(buf, 1, 16383, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    char *s = buf + strspn(buf, " \t\r\n");
    s[strcspn(s, " \t\r\n")] = '\0';
    if (n == 0 || !*s) {
        free(buf);
        errno = ENODATA;
        return NULL;
    }
    memmove(buf, s, strlen(s) + 1);
    return buf;
}

/* ----- building a (broken) Hello ----- */

typedef Hypha__V1__Dataplane__Networking__Inbound__TagsEntry tag_entry;

/* Everything a Hello points into, freed at once. */
struct hello {
    Hypha__V1__DpMessage m;
    Hypha__V1__DpHello h;
    Hypha__V1__Envelope env;
    Hypha__V1__Meta meta;
    Hypha__V1__Meta__LabelsEntry label, *labels[1];
    Hypha__V1__Dataplane dp;
    Hypha__V1__Dataplane__Networking net;
    Hypha__V1__Dataplane__Networking__Inbound in[100], *inp[100];
    tag_entry tags[300], *tagp[300];
    Hypha__V1__ZoneIngress zi;
    Hypha__V1__ZoneIngress__Networking zinet;
    char *name; /* owned when built */
    uint8_t *spec;
    struct hy_ca_pem csr;
    char *token;
};

static bool tampered(const struct probe_cfg *c, const char *what)
{
    return !strcmp(c->tamper, what);
}

static void hello_fini(struct hello *x)
{
    free(x->name);
    free(x->spec);
    hy_ca_pem_fini(&x->csr);
    if (x->token)
        explicit_bzero(x->token, strlen(x->token));
    free(x->token);
}

static void set_tag(tag_entry *t, const char *key, const char *value)
{
    hypha__v1__dataplane__networking__inbound__tags_entry__init(t);
    t->key = (char *)key;
    t->value = (char *)value;
}

/* The spec of a Dataplane, packed; some tampering happens here. */
static void build_dataplane(const struct probe_cfg *c, struct hello *x)
{
    hypha__v1__dataplane__init(&x->dp);
    hypha__v1__dataplane__networking__init(&x->net);
    if (!tampered(c, "no-networking"))
        x->dp.networking = &x->net;
    x->net.address = tampered(c, "null-address")  ? NULL
                     : tampered(c, "bad-address") ? "evil.example\n{\"injected\":true}"
                                                  : c->address;
    size_t nin = tampered(c, "many-inbounds") ? 100 : 1;
    size_t ntags = 0;
    for (size_t i = 0; i < nin; i++) {
        Hypha__V1__Dataplane__Networking__Inbound *in = &x->in[i];
        hypha__v1__dataplane__networking__inbound__init(in);
        x->inp[i] = in;
        in->has_port = 1;
        in->port = (uint32_t)(c->port + i);
        in->tags = &x->tagp[ntags];
        set_tag(&x->tags[ntags], "hypha.io/service", c->service);
        x->tagp[ntags] = &x->tags[ntags];
        ntags++;
        in->n_tags = 1;
    }
    x->net.inbound = x->inp;
    x->net.n_inbound = nin;
    Hypha__V1__Dataplane__Networking__Inbound *in0 = &x->in[0];
    if (tampered(c, "null-key") || tampered(c, "null-value") || tampered(c, "dup-service")) {
        const char *key = tampered(c, "null-key")     ? NULL
                          : tampered(c, "null-value") ? "version"
                                                      : "hypha.io/service";
        const char *value = tampered(c, "null-value") ? NULL : c->dup_value;
        set_tag(&x->tags[ntags], key, value);
        x->tagp[ntags] = &x->tags[ntags];
        ntags++;
        in0->n_tags++;
    }
    if (tampered(c, "many-tags")) {
        static char keys[299][16];
        for (size_t i = 0; i < 299; i++) {
            snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
            set_tag(&x->tags[ntags], keys[i], "v");
            x->tagp[ntags] = &x->tags[ntags];
            ntags++;
            in0->n_tags++;
        }
    }
    size_t len = hypha__v1__dataplane__get_packed_size(&x->dp);
    size_t extra = tampered(c, "unknown-field") ? 8 : 0;
    x->spec = malloc(len + extra + 1);
    if (!x->spec)
        return;
    hypha__v1__dataplane__pack(&x->dp, x->spec);
    if (extra) { /* field 99, length-delimited, "hidden" */
        const uint8_t u[8] = {0x9a, 0x06, 5, 'h', 'i', 'd', 'd', 'n'};
        memcpy(x->spec + len, u, sizeof(u));
        len += sizeof(u);
    }
    x->env.spec.data = x->spec;
    x->env.spec.len = len;
    x->env.has_spec = 1;
}

static void build_zone_ingress(const struct probe_cfg *c, struct hello *x)
{
    hypha__v1__zone_ingress__init(&x->zi);
    hypha__v1__zone_ingress__networking__init(&x->zinet);
    if (!tampered(c, "no-networking"))
        x->zi.networking = &x->zinet;
    x->zinet.address = tampered(c, "null-address")  ? NULL
                       : tampered(c, "bad-address") ? "evil.example\n{\"injected\":true}"
                                                    : c->address;
    x->zinet.has_port = 1;
    x->zinet.port = (uint32_t)c->port;
    size_t len = hypha__v1__zone_ingress__get_packed_size(&x->zi);
    x->spec = malloc(len + 8);
    if (!x->spec)
        return;
    hypha__v1__zone_ingress__pack(&x->zi, x->spec);
    if (tampered(c, "unknown-field")) { /* field 99, length-delimited, "hiddn" */
        const uint8_t u[8] = {0x9a, 0x06, 5, 'h', 'i', 'd', 'd', 'n'};
        memcpy(x->spec + len, u, sizeof(u));
        len += sizeof(u);
    }
    x->env.spec.data = x->spec;
    x->env.spec.len = len;
    x->env.has_spec = 1;
}

/* Fills x with the Hello the flags ask for. 0, or an exit code. */
static int build_hello(const struct probe_cfg *c, struct hello *x)
{
    bool ingress = !strcmp(c->kind, "ingress");
    memset(x, 0, sizeof(*x));
    hypha__v1__dp_message__init(&x->m);
    hypha__v1__dp_hello__init(&x->h);
    hypha__v1__envelope__init(&x->env);
    hypha__v1__meta__init(&x->meta);
    x->meta.type = tampered(c, "wrong-type") ? "Mesh" : ingress ? "ZoneIngress" : "Dataplane";
    x->meta.mesh = ingress ? NULL : c->mesh;
    size_t nlen = tampered(c, "long-name") ? 300 : tampered(c, "huge-name") ? 100000 : 0;
    if (nlen) {
        if (!(x->name = malloc(nlen + 1)))
            return PROBE_UNEXPECTED;
        memset(x->name, 'a', nlen);
        x->name[nlen] = '\0';
    }
    x->meta.name = x->name ? x->name : c->name;
    if (tampered(c, "null-label-key")) {
        hypha__v1__meta__labels_entry__init(&x->label);
        x->label.value = "x";
        x->labels[0] = &x->label;
        x->meta.labels = x->labels;
        x->meta.n_labels = 1;
    }
    x->env.meta = &x->meta;
    if (ingress)
        build_zone_ingress(c, x);
    else
        build_dataplane(c, x);
    if (!x->spec)
        return PROBE_UNEXPECTED;
    if (!ingress && !tampered(c, "no-csr")) {
        char cn[HY_CA_CN_MAX + 1];
        snprintf(cn, sizeof(cn), "%.64s", c->name);
        if (hy_ca_make_csr(cn, &x->csr) < 0) {
            out("error reason=cannot make a CSR");
            return PROBE_UNEXPECTED;
        }
        x->h.csr = x->csr.cert;
    }
    if (!tampered(c, "null-token")) {
        if (!c->token_file || !(x->token = read_token(c->token_file))) {
            out("error reason=cannot read --token-file %s", c->token_file ? c->token_file : "");
            return PROBE_USAGE;
        }
        x->h.token = x->token;
    }
    x->h.dataplane = &x->env;
    x->h.version = tampered(c, "bad-version") ? "1.0\n[ERROR] forged log line" : "dp-probe";
    x->m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_HELLO;
    x->m.hello = &x->h;
    return 0;
}

/* ----- one websocket connection (hello, session, huge, garbage) ----- */

struct probe {
    const struct probe_cfg *cfg;
    enum mode mode;
    uv_loop_t *loop;
    uv_timer_t deadline, poll_file;
    uv_signal_t sigs[2];
    struct hy_ws_client *ws;
    bool opened, rejected, configured, finished, renew_sent;
    int exit_code;
    uint64_t t_open, rng;
    char *cert; /* the last certificate received */
    unsigned renewals;
};

static void finish(struct probe *p, int code)
{
    if (p->finished)
        return;
    p->finished = true;
    p->exit_code = code;
    uv_stop(p->loop);
}

static int send_dp(struct probe *p, const Hypha__V1__DpMessage *m)
{
    return hy_ws_send_msg(hy_ws_client_conn(p->ws), &m->base, NULL);
}

static void send_random(struct probe *p)
{
    const struct probe_cfg *c = p->cfg;
    uint64_t n = p->mode == MODE_HUGE ? 1 : c->count;
    size_t len = p->mode == MODE_HUGE ? (size_t)c->size : 256;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        finish(p, PROBE_UNEXPECTED);
        return;
    }
    uint64_t sent = 0;
    for (uint64_t i = 0; i < n; i++) {
        for (size_t k = 0; k < len; k += 8) {
            uint64_t v = xorshift(&p->rng);
            memcpy(buf + k, &v, len - k < 8 ? len - k : 8);
        }
        if (hy_ws_send(hy_ws_client_conn(p->ws), buf, len) < 0)
            break;
        sent++;
    }
    free(buf);
    out("sent messages=%llu bytes=%zu", (unsigned long long)sent, len);
}

static void send_hello(struct probe *p)
{
    struct hello *x = calloc(1, sizeof(*x));
    int rc = x ? build_hello(p->cfg, x) : PROBE_UNEXPECTED;
    if (rc == 0 && tampered(p->cfg, "ack-first")) {
        Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
        Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
        ack.version = "0000000000000000";
        m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
        m.ack = &ack;
        send_dp(p, &m);
    } else if (rc == 0) {
        size_t len = hypha__v1__dp_message__get_packed_size(&x->m);
        int s = send_dp(p, &x->m);
        out("sent hello tamper=%s bytes=%zu rc=%d", p->cfg->tamper, len, s);
    }
    if (x)
        hello_fini(x);
    free(x);
    if (rc)
        finish(p, rc);
}

static void send_csr(struct probe *p)
{
    struct hy_ca_pem csr = {0};
    if (hy_ca_make_csr(p->cfg->name, &csr) < 0) {
        out("error reason=cannot make a CSR");
        return;
    }
    Hypha__V1__DpCsr r = HYPHA__V1__DP_CSR__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    r.csr = csr.cert;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_CSR;
    m.csr = &r;
    int rc = send_dp(p, &m);
    out("csr-sent rc=%d", rc);
    hy_ca_pem_fini(&csr);
}

static void on_poll_file(uv_timer_t *t)
{
    struct probe *p = t->data;
    struct stat st;
    if (p->renew_sent || !p->configured || stat(p->cfg->renew_file, &st) < 0)
        return;
    p->renew_sent = true;
    uv_timer_stop(t);
    send_csr(p);
}

static void ws_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct probe *p = ud;
    (void)c;
    if (p->opened)
        return; /* a reconnect after the close we end on */
    p->opened = true;
    p->t_open = now_ms();
    out("open peer=%s", peer);
    if (p->mode == MODE_HELLO || p->mode == MODE_SESSION)
        send_hello(p);
    else
        send_random(p);
}

/* A DpStats of id: text (NULL: none) and error (NULL: none). */
static void send_stats(struct probe *p, uint64_t id, const char *text, const char *error)
{
    Hypha__V1__DpStats st = HYPHA__V1__DP_STATS__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    st.has_id = 1;
    st.id = id;
    st.text = (char *)text;
    st.error = (char *)error;
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_STATS;
    m.stats = &st;
    int rc = send_dp(p, &m);
    out("stats-sent id=%llu bytes=%zu rc=%d", (unsigned long long)id, text ? strlen(text) : 0, rc);
}

/* A DpStatsRequest: answered as --stats says. */
static void on_stats_request(struct probe *p, uint64_t id)
{
    const char *how = p->cfg->stats;
    out("stats-request id=%llu", (unsigned long long)id);
    if (!strcmp(how, "silent"))
        return;
    if (!strcmp(how, "wrong-id")) {
        send_stats(p, id + 1000, "hypha_probe_up 1\n", NULL);
    } else if (!strcmp(how, "error")) {
        send_stats(p, id, NULL, "the probe refuses");
    } else if (!strcmp(how, "oversized")) {
        char *big = malloc(HY_DP_MAX_STATS + 2);
        if (!big)
            return;
        memset(big, '#', HY_DP_MAX_STATS + 1);
        big[HY_DP_MAX_STATS] = '\n';
        big[HY_DP_MAX_STATS + 1] = '\0';
        send_stats(p, id, big, NULL);
        free(big);
    } else {
        send_stats(p, id, "# TYPE hypha_probe_up gauge\nhypha_probe_up 1\n", NULL);
    }
}

static void on_config(struct probe *p, const char *version, const char *cert)
{
    bool new_cert = cert && (!p->cert || strcmp(p->cert, cert));
    if (new_cert && p->cert) {
        p->renewals++;
        out("renewed count=%u", p->renewals);
    }
    if (new_cert) {
        free(p->cert);
        p->cert = strdup(cert);
    }
    out("config version=%s", version ? version : "");
    Hypha__V1__DpAck ack = HYPHA__V1__DP_ACK__INIT;
    Hypha__V1__DpMessage m = HYPHA__V1__DP_MESSAGE__INIT;
    ack.version = (char *)(version ? version : "");
    m.msg_case = HYPHA__V1__DP_MESSAGE__MSG_ACK;
    m.ack = &ack;
    send_dp(p, &m);
    if (!p->configured && p->mode == MODE_SESSION && !strcmp(p->cfg->stats, "unsolicited"))
        send_stats(p, 424242, "forged 1\n", NULL);
    p->configured = true;
    if (p->mode == MODE_HELLO)
        finish(p, tampered(p->cfg, "none") ? PROBE_OK : PROBE_UNEXPECTED);
}

static void ws_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct probe *p = ud;
    (void)c;
    char text[512];
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    if (!m) {
        out("message type=malformed bytes=%zu", len);
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__DP_MESSAGE__MSG_REJECT:
        p->rejected = true;
        out("reject reason=%s", clean(m->reject->reason, text, sizeof(text)));
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_UPDATE: {
        const char *cert = NULL; /* the Identity part's, when the update has one */
        for (size_t i = 0; i < m->update->n_parts; i++)
            if (m->update->parts[i]->identity)
                cert = m->update->parts[i]->identity->cert;
        on_config(p, m->update->version, cert);
        break;
    }
    case HYPHA__V1__DP_MESSAGE__MSG_INGRESS_CONFIG:
        on_config(p, m->ingress_config->version, NULL);
        break;
    case HYPHA__V1__DP_MESSAGE__MSG_STATS_REQUEST:
        on_stats_request(p, m->stats_request->id);
        break;
    default:
        if (p->cfg->trace)
            out("message type=%d bytes=%zu", (int)m->msg_case, len);
    }
    hypha__v1__dp_message__free_unpacked(m, NULL);
}

static void ws_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct probe *p = ud;
    (void)c;
    char text[HY_WS_REASON_MAX + 1];
    clean(reason, text, sizeof(text));
    if (!p->opened) {
        out("connect-failed reason=%s", text);
        finish(p, PROBE_NOCONNECT);
        return;
    }
    if (p->finished)
        return;
    out("close code=%d after_ms=%llu reason=%s", code, (unsigned long long)(now_ms() - p->t_open),
        text);
    int rc = PROBE_UNEXPECTED;
    switch (p->mode) {
    case MODE_HELLO:
    case MODE_SESSION:
        rc = p->rejected && code == HY_WS_CLOSE_POLICY ? PROBE_OK : PROBE_UNEXPECTED;
        break;
    case MODE_HUGE:
        rc = code == (p->cfg->expect_code ? p->cfg->expect_code : HY_WS_CLOSE_TOO_BIG)
                 ? PROBE_OK
                 : PROBE_UNEXPECTED;
        break;
    case MODE_GARBAGE:
        rc = code != HY_WS_CLOSE_ABNORMAL && code != 1005 ? PROBE_OK : PROBE_UNEXPECTED;
        break;
    default:
        break;
    }
    finish(p, rc);
}

static void on_deadline(uv_timer_t *t)
{
    struct probe *p = t->data;
    out("timeout after_ms=%llu", (unsigned long long)p->cfg->timeout);
    finish(p, PROBE_TIMEOUT);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct probe *p = s->data;
    out("signal number=%d", signum);
    finish(p, PROBE_TIMEOUT);
}

static int run_ws(const struct probe_cfg *c, enum mode mode)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct probe p = {.cfg = c, .mode = mode, .loop = &loop, .rng = c->seed ? c->seed : 1};
    uv_timer_init(&loop, &p.deadline);
    p.deadline.data = &p;
    uv_timer_start(&p.deadline, on_deadline, (uint64_t)c->timeout, 0);
    uv_timer_init(&loop, &p.poll_file);
    p.poll_file.data = &p;
    if (c->renew_file)
        uv_timer_start(&p.poll_file, on_poll_file, 50, 50);
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &p.sigs[i]);
        p.sigs[i].data = &p;
        uv_signal_start(&p.sigs[i], on_signal, signums[i]);
    }
    struct hy_ws_client_config wc = {
        .loop = &loop,
        .url = c->url,
        .name = "the zone's DP server",
        .ca_file = c->ca_file,
        .skip_verify = c->insecure,
        .subprotocol = HY_DP_SUBPROTOCOL,
        .backoff = {.initial_ms = 200, .max_ms = 2000},
        .cb = {ws_open, ws_message, ws_close},
        .ud = &p,
    };
    if (mode == MODE_HUGE) /* the send queue must take it: max_queue is 4x this */
        wc.limits.max_message = (size_t)c->size + 1;
    if (hy_ws_client_new(&wc, &p.ws) < 0) {
        out("error reason=cannot create the websocket client (see the log)");
        finish(&p, PROBE_USAGE);
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    hy_ws_client_stop(p.ws);
    uv_close((uv_handle_t *)&p.deadline, NULL);
    uv_close((uv_handle_t *)&p.poll_file, NULL);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p.sigs[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hy_ws_client_free(p.ws);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        hy_log(HY_LOG_WARN, "probe", "the loop still had handles at exit");
    free(p.cert);
    return p.exit_code;
}

/* ----- raw connections (idle, partial): TLS by hand, many at once ----- */

struct raw_conn {
    int fd;
    WOLFSSL *ssl;
    bool open, closed;
    int code; /* close code received; 0: none (EOF or error) */
    char reason[HY_WS_REASON_MAX + 1];
    uint8_t in[512];
    size_t nin;
};

struct raw {
    const struct probe_cfg *cfg;
    enum mode mode;
    WOLFSSL_CTX *ctx;
    char host[64];
    int port;
    struct raw_conn *conns;
    size_t next; /* the next connection a thread opens */
    pthread_mutex_t lock;
};

static volatile sig_atomic_t stop_signal;

static void raw_signal(int signum)
{
    stop_signal = signum;
}

static int parse_url(const char *url, char *host, size_t size, int *port)
{
    const char *h = url + 6; /* wss:// */
    const char *colon = strrchr(h, ':');
    if (!colon || (size_t)(colon - h) >= size)
        return -1;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

/* Reads what the server sent (nonblocking): a close frame ends the
 * connection. Returns true once closed. */
static bool raw_read(struct raw_conn *rc)
{
    for (;;) {
        if (rc->nin == sizeof(rc->in))
            rc->nin = 0; /* not a frame we care about: drop */
        int n = wolfSSL_read(rc->ssl, rc->in + rc->nin, (int)(sizeof(rc->in) - rc->nin));
        if (n <= 0) {
            int e = wolfSSL_get_error(rc->ssl, n);
            if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
                return false;
            rc->closed = true; /* EOF or error: no close frame */
            return true;
        }
        rc->nin += (size_t)n;
        while (rc->nin >= 2) {
            size_t len = rc->in[1] & 0x7f, hdr = 2;
            if (len == 126) {
                if (rc->nin < 4)
                    break;
                len = (size_t)rc->in[2] << 8 | rc->in[3];
                hdr = 4;
            } else if (len == 127) {
                rc->nin = 0; /* no 64-bit frames from this server before a Hello */
                break;
            }
            if (rc->nin < hdr + len)
                break;
            if ((rc->in[0] & 0x0f) == 0x8) {
                const uint8_t *pl = rc->in + hdr;
                rc->code = len >= 2 ? pl[0] << 8 | pl[1] : 1005;
                size_t rl = len >= 2 ? len - 2 : 0;
                if (rl > HY_WS_REASON_MAX)
                    rl = HY_WS_REASON_MAX;
                memcpy(rc->reason, pl + 2, rl);
                rc->reason[rl] = '\0';
                rc->closed = true;
                return true;
            }
            memmove(rc->in, rc->in + hdr + len, rc->nin - hdr - len);
            rc->nin -= hdr + len;
        }
    }
}

static int write_all(WOLFSSL *ssl, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        int n = wolfSSL_write(ssl, p, (int)(len > 16384 ? 16384 : len));
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Opens one connection: TCP, TLS, websocket upgrade; partial: the frame. */
static void raw_open(struct raw *r, struct raw_conn *rc)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    rc->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rc->fd < 0 || inet_pton(AF_INET, r->host, &sa.sin_addr) != 1 ||
        connect(rc->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(rc->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(rc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    rc->ssl = wolfSSL_new(r->ctx);
    if (!rc->ssl || wolfSSL_set_fd(rc->ssl, rc->fd) != WOLFSSL_SUCCESS ||
        wolfSSL_connect(rc->ssl) != WOLFSSL_SUCCESS)
        return;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
                     r->host, r->port, HY_DP_SUBPROTOCOL);
    if (write_all(rc->ssl, req, (size_t)n) < 0)
        return;
    /* the 101 and its headers; a close frame may follow in the same read */
    char resp[1024];
    size_t got = 0;
    char *end = NULL;
    while (!end && got + 1 < sizeof(resp)) {
        int k = wolfSSL_read(rc->ssl, resp + got, (int)(sizeof(resp) - 1 - got));
        if (k <= 0)
            return;
        got += (size_t)k;
        resp[got] = '\0';
        end = strstr(resp, "\r\n\r\n");
    }
    if (!end || strncmp(resp, "HTTP/1.1 101", 12) != 0)
        return;
    rc->open = true;
    size_t rest = got - (size_t)(end + 4 - resp);
    memcpy(rc->in, end + 4, rest < sizeof(rc->in) ? rest : sizeof(rc->in));
    rc->nin = rest < sizeof(rc->in) ? rest : sizeof(rc->in);
    if (r->mode != MODE_PARTIAL)
        return;
    /* one binary frame announcing size bytes, masked (mask 0: the bytes
     * are sent as they are), and all of it but the last byte */
    uint64_t size = r->cfg->size;
    uint8_t hdr[14] = {0x82, 0x80 | 127};
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (uint8_t)(size >> (56 - 8 * i));
    if (write_all(rc->ssl, hdr, sizeof(hdr)) < 0)
        return;
    static const uint8_t zeros[16384];
    for (uint64_t left = size ? size - 1 : 0; left;) {
        size_t k = left > sizeof(zeros) ? sizeof(zeros) : (size_t)left;
        if (write_all(rc->ssl, zeros, k) < 0)
            return; /* the server closed it: its close frame tells why */
        left -= k;
        struct pollfd pf = {.fd = rc->fd, .events = POLLIN};
        if (poll(&pf, 1, 0) == 1 && raw_read(rc))
            return; /* closed (with a close frame, normally): stop sending */
    }
}

static void *raw_worker(void *arg)
{
    struct raw *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        size_t i = r->next < r->cfg->count ? r->next++ : SIZE_MAX;
        pthread_mutex_unlock(&r->lock);
        if (i == SIZE_MAX || stop_signal) {
            wc_ecc_fp_free(); /* this thread's fixed-point cache */
            return NULL;
        }
        raw_open(r, &r->conns[i]);
    }
}

static int run_raw(const struct probe_cfg *c, enum mode mode)
{
    struct raw r = {.cfg = c, .mode = mode};
    int expect = (int)(c->expect_code         ? c->expect_code
                       : mode == MODE_PARTIAL ? HY_WS_CLOSE_TOO_BIG
                                              : HY_WS_CLOSE_POLICY);
    if (parse_url(c->url, r.host, sizeof(r.host), &r.port) < 0) {
        fprintf(stderr, "hypha-dp-probe: --url must be wss://IPv4:PORT\n");
        return PROBE_USAGE;
    }
    signal(SIGINT, raw_signal);
    signal(SIGTERM, raw_signal);
    wolfSSL_Init();
    r.ctx = wolfSSL_CTX_new(wolfTLSv1_2_client_method());
    if (!r.ctx)
        return PROBE_UNEXPECTED;
    if (c->insecure) {
        wolfSSL_CTX_set_verify(r.ctx, WOLFSSL_VERIFY_NONE, NULL);
    } else if (wolfSSL_CTX_load_verify_locations(r.ctx, c->ca_file, NULL) != WOLFSSL_SUCCESS) {
        fprintf(stderr, "hypha-dp-probe: cannot load --ca-file %s\n", c->ca_file);
        wolfSSL_CTX_free(r.ctx);
        return PROBE_USAGE;
    }
    r.conns = calloc(c->count ? c->count : 1, sizeof(*r.conns));
    pthread_mutex_init(&r.lock, NULL);
    uint64_t t0 = now_ms();
    size_t nth = c->threads ? (size_t)c->threads : 1;
    pthread_t th[64];
    if (nth > 64)
        nth = 64;
    for (size_t i = 0; i < nth; i++)
        pthread_create(&th[i], NULL, raw_worker, &r);
    for (size_t i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    size_t opened = 0;
    for (size_t i = 0; i < c->count; i++) {
        struct raw_conn *rc = &r.conns[i];
        opened += rc->open;
        if (rc->fd >= 0 && rc->ssl) {
            struct timeval tv = {0};
            setsockopt(rc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            wolfSSL_set_using_nonblock(rc->ssl, 1);
            int fl = 1;
            setsockopt(rc->fd, IPPROTO_TCP, TCP_NODELAY, &fl, sizeof(fl));
        }
    }
    out("holding opened=%zu of=%llu after_ms=%llu", opened, (unsigned long long)c->count,
        (unsigned long long)(now_ms() - t0));
    /* wait for the server to close each one, or the deadline */
    struct pollfd *pf = calloc(c->count ? c->count : 1, sizeof(*pf));
    size_t closed = 0;
    for (size_t i = 0; i < c->count; i++) /* a close frame may already be buffered */
        if (r.conns[i].open && (r.conns[i].nin || wolfSSL_pending(r.conns[i].ssl)))
            raw_read(&r.conns[i]);
    while (!stop_signal && now_ms() - t0 < (uint64_t)c->timeout) {
        size_t n = 0;
        closed = 0;
        for (size_t i = 0; i < c->count; i++) {
            struct raw_conn *rc = &r.conns[i];
            if (!rc->open || rc->closed) {
                closed++;
                continue;
            }
            pf[n++] = (struct pollfd){.fd = rc->fd, .events = POLLIN};
        }
        if (!n)
            break;
        if (poll(pf, n, 200) <= 0)
            continue;
        for (size_t i = 0, k = 0; i < c->count; i++) {
            struct raw_conn *rc = &r.conns[i];
            if (!rc->open || rc->closed)
                continue;
            if (pf[k++].revents)
                raw_read(rc);
        }
    }
    /* the outcome, by close reason */
    size_t ok = 0, never = 0;
    for (size_t i = 0; i < c->count; i++) {
        struct raw_conn *rc = &r.conns[i];
        char text[HY_WS_REASON_MAX + 1];
        if (!rc->open)
            never++;
        else if (rc->closed && c->trace)
            out("closed conn=%zu code=%d reason=%s", i, rc->code,
                clean(rc->reason, text, sizeof(text)));
        ok += rc->open && rc->closed && rc->code == expect;
    }
    /* one line per distinct (code, reason): what the test reads */
    for (size_t i = 0; i < c->count; i++) {
        struct raw_conn *rc = &r.conns[i];
        bool first = rc->open && rc->closed;
        size_t same = 0;
        for (size_t k = 0; first && k < c->count; k++) {
            struct raw_conn *o = &r.conns[k];
            if (!(o->open && o->closed && o->code == rc->code && !strcmp(o->reason, rc->reason)))
                continue;
            if (k < i)
                first = false;
            same++;
        }
        char text[HY_WS_REASON_MAX + 1];
        if (first)
            out("closes count=%zu code=%d reason=%s", same, rc->code,
                clean(rc->reason, text, sizeof(text)));
    }
    size_t still = 0;
    for (size_t i = 0; i < c->count; i++)
        still += r.conns[i].open && !r.conns[i].closed;
    out("summary opened=%zu failed=%zu expected=%zu still_open=%zu after_ms=%llu", opened, never,
        ok, still, (unsigned long long)(now_ms() - t0));
    for (size_t i = 0; i < c->count; i++) {
        if (r.conns[i].ssl)
            wolfSSL_free(r.conns[i].ssl);
        if (r.conns[i].fd > 0)
            close(r.conns[i].fd);
    }
    free(pf);
    free(r.conns);
    pthread_mutex_destroy(&r.lock);
    wolfSSL_CTX_free(r.ctx);
    wolfSSL_Cleanup();
    if (still)
        return PROBE_TIMEOUT;
    return ok == c->count ? PROBE_OK : opened ? PROBE_UNEXPECTED : PROBE_NOCONNECT;
}

/* ----- main ----- */

static bool check_cfg(const struct probe_cfg *c, enum mode mode)
{
    const char *why = NULL;
    if (!c->url || strncmp(c->url, "wss://", 6) != 0)
        why = "--url wss://HOST:PORT is required";
    else if (!c->ca_file && !c->insecure)
        why = "--ca-file (or --insecure) is required";
    else if (c->timeout <= 0)
        why = "--timeout must be positive";
    else if ((mode == MODE_HELLO || mode == MODE_SESSION) && !c->token_file &&
             strcmp(c->tamper, "null-token"))
        why = "hello and session need --token-file";
    else if (strcmp(c->kind, "dataplane") && strcmp(c->kind, "ingress"))
        why = "--kind is dataplane or ingress";
    else if ((mode == MODE_IDLE || mode == MODE_PARTIAL) && (c->count < 1 || c->count > 10000))
        why = "--count is 1 to 10000";
    else if (mode == MODE_PARTIAL && c->size < 2)
        why = "partial needs --size of at least 2";
    else if (strcmp(c->stats, "answer") && strcmp(c->stats, "silent") &&
             strcmp(c->stats, "wrong-id") && strcmp(c->stats, "error") &&
             strcmp(c->stats, "oversized") && strcmp(c->stats, "unsolicited"))
        why = "--stats is answer, silent, wrong-id, error, oversized or unsolicited";
    if (why)
        fprintf(stderr, "hypha-dp-probe: %s (see --help)\n", why);
    return !why;
}

int main(int argc, char **argv)
{
    struct probe_cfg cfg = {0};
    struct hy_config_result res = {0};
    int rc = hy_config_parse(&spec, &cfg, argc, argv, &res);
    if (rc < 0 || res.help || res.version) {
        struct hy_buf usage = {0};
        if (rc < 0)
            fprintf(stderr, "hypha-dp-probe: %s\n(see --help)\n", res.error);
        else if (res.help && hy_config_usage(&spec, &usage) == 0)
            fputs(usage.data, stdout);
        else if (res.version)
            printf("hypha-dp-probe %s\n", HYPHA_VERSION);
        hy_buf_fini(&usage);
        hy_config_fini(&spec, &cfg);
        return rc < 0 ? PROBE_USAGE : PROBE_OK;
    }
    size_t m = 0, nmodes = sizeof(mode_names) / sizeof(mode_names[0]);
    while (res.nargs == 1 && m < nmodes && strcmp(res.args[0], mode_names[m]) != 0)
        m++;
    if (res.nargs != 1 || m == nmodes) {
        fprintf(stderr, "hypha-dp-probe: give one MODE: hello, session, huge, garbage, idle or "
                        "partial (see --help)\n");
        hy_config_fini(&spec, &cfg);
        return PROBE_USAGE;
    }
    enum mode mode = (enum mode)m;
    if (!check_cfg(&cfg, mode)) {
        hy_config_fini(&spec, &cfg);
        return PROBE_USAGE;
    }
    hy_log_threshold = cfg.log_level;
    signal(SIGPIPE, SIG_IGN);
    rc = mode == MODE_IDLE || mode == MODE_PARTIAL ? run_raw(&cfg, mode) : run_ws(&cfg, mode);
    out("exit code=%d", rc);
    hy_config_fini(&spec, &cfg);
    return rc;
}
