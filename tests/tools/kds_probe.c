/* hypha-kds-probe: a KDS client that misbehaves on purpose (garbage,
 * oversized frames, no Hello, a zone that never acks) or stands in for many
 * zones at once (zones mode, kds_probe_zones.c), for tests/integration and
 * bench/kds.sh. This file: the flags, main, and the modes that need one
 * connection and no zone token. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "error.h"
#include "kds.h"
#include "kds_probe.h"
#include "poison.h"

#define O(field) offsetof(struct probe_cfg, field)

static const struct hy_option options[] = {
    {"url", NULL, NULL, HY_OPT_STRING, O(url), NULL,
     "KDS address of the global control plane: wss://127.0.0.1:PORT (required)"},
    {"ca-file", NULL, NULL, HY_OPT_STRING, O(ca_file), NULL,
     "CA that verifies the KDS certificate ($GLOBAL_DATA/kds/ca.pem)"},
    {"insecure", NULL, NULL, HY_OPT_BOOL, O(insecure), "false",
     "do not verify the KDS certificate (instead of --ca-file)"},
    {"timeout", NULL, NULL, HY_OPT_DURATION, O(timeout), "30s",
     "the run ends after this long, whatever happens (exit 4 if its goal was not reached)"},
    {"count", NULL, NULL, HY_OPT_UINT, O(count), "10", "garbage: messages of random bytes sent"},
    {"size", NULL, NULL, HY_OPT_SIZE, O(size), "256",
     "garbage: bytes per message; huge: bytes of the message (give more than the server's limit)"},
    {"seed", NULL, NULL, HY_OPT_UINT, O(seed), "1", "garbage, huge: seed of the random bytes"},
    {"expect-code", NULL, NULL, HY_OPT_INT, O(expect_code), "1009",
     "huge: the close code that counts as the expected outcome"},
    {"first", NULL, NULL, HY_OPT_STRING, O(first), "changes",
     "before-hello: the message sent instead of Hello, changes or ack"},
    {"zone", NULL, NULL, HY_OPT_STRING, O(zone), NULL,
     "silent-hello: the zone's name (garbage: send a Hello as this zone first)"},
    {"token-file", NULL, NULL, HY_OPT_STRING, O(token_file), NULL,
     "silent-hello, garbage with --zone: the zone's token (hyphactl generate zone-token)"},
    {"zones", NULL, NULL, HY_OPT_UINT, O(zones), "1",
     "zones: how many zones (0 with --zone-api: only the real zone is measured)"},
    {"first-zone", NULL, NULL, HY_OPT_UINT, O(first_zone), "1",
     "zones: number of the first zone; zones are PREFIX<k>"},
    {"zone-prefix", NULL, NULL, HY_OPT_STRING, O(zone_prefix), "zone-", "zones: names' prefix"},
    {"token-dir", NULL, NULL, HY_OPT_STRING, O(token_dir), NULL,
     "zones: directory of the zones' tokens, one file PREFIX<k>.token each"},
    {"ack-delay", NULL, NULL, HY_OPT_DURATION, O(ack_delay), "0",
     "zones: wait this long before each Ack (a slow zone)"},
    {"expect-name", NULL, NULL, HY_OPT_STRING, O(expect_name), NULL,
     "zones: done once every zone received a resource of this name (the newest: a full sync)"},
    {"put-api", NULL, NULL, HY_OPT_STRING, O(put_api), NULL,
     "zones: the global CP's API (http://127.0.0.1:PORT); the probe PUTs policies there and "
     "measures how long each takes to reach the zones"},
    {"zone-api", NULL, NULL, HY_OPT_STRING, O(zone_api), NULL,
     "zones: a real hypha-zone's API, polled until each PUT policy is there"},
    {"mesh", NULL, NULL, HY_OPT_STRING, O(mesh), "default", "zones: mesh of the PUT policies"},
    {"name-prefix", NULL, NULL, HY_OPT_STRING, O(name_prefix), "kds-probe-",
     "zones: PUT policies are MeshTrafficPermissions named PREFIX<6 digits>; use a new prefix "
     "for every run against one global CP"},
    {"puts", NULL, NULL, HY_OPT_UINT, O(puts), "0", "zones: measured changes (PUTs)"},
    {"warmup", NULL, NULL, HY_OPT_UINT, O(warmup), "10",
     "zones: unmeasured changes before them; the first is a barrier that waits for the initial "
     "sync of every zone (at least 1 with --put-api)"},
    {"put-interval", NULL, NULL, HY_OPT_DURATION, O(put_interval), "0",
     "zones: pause between a change's arrival everywhere and the next PUT"},
    {"arrivals", NULL, NULL, HY_OPT_STRING, O(arrivals), NULL,
     "zones: write every latency sample to this file (TSV)"},
    {"hold", NULL, NULL, HY_OPT_BOOL, O(hold), "false",
     "zones: once done, stay connected until SIGTERM or --timeout (then exit 0)"},
    {"trace", NULL, NULL, HY_OPT_BOOL, O(trace), "false", "print a line for every message"},
    {"resources", NULL, NULL, HY_OPT_STRING, O(resources), NULL,
     "send, zones: YAML file of the zone-origin resources to send up (names as the zone has "
     "them); zones: each zone sends them, done once all were acked"},
    {"copies", NULL, NULL, HY_OPT_UINT, O(copies), "1",
     "send, zones: copies of each resource (names get -<k>): a zone flooding the global CP"},
    {"batch", NULL, NULL, HY_OPT_UINT, O(batch), "500", "send, zones: upserts per Changes message"},
    {"tweak", NULL, NULL, HY_OPT_STRINGS, O(tweaks), NULL,
     "send: bend every resource: null-label-key, dup-label, dup-service-tag"},
    {"delete", NULL, NULL, HY_OPT_STRINGS, O(deletes), NULL,
     "send: TYPE/MESH/NAME keys to delete (MESH empty for global types), in the last Changes"},
    {"log-level", NULL, NULL, HY_OPT_LOG_LEVEL, O(log_level), "warn",
     "log lines on stderr (the websocket module's)"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-kds-probe",
    .summary =
        "A KDS client for tests and benchmarks. MODE is one of:\n"
        "  garbage       send --count messages of random bytes (after a Hello with --zone);\n"
        "                exit 0 when the server closes with a close frame\n"
        "  huge          send one message of --size bytes; exit 0 when closed with --expect-code\n"
        "  before-hello  send a Changes or an Ack (--first) before any Hello; exit 0 on a Reject\n"
        "                followed by a close (1008)\n"
        "  silent-hello  Hello as --zone with --token-file, then never Ack; exit 0 when still\n"
        "                connected at --timeout or SIGTERM\n"
        "  zones         --zones zones that ack every Changes (after --ack-delay); with "
        "--put-api,\n"
        "                PUT --warmup + --puts policies one at a time, each after the previous\n"
        "                one reached every zone, and print latency percentiles; with\n"
        "                --resources, each zone first sends --copies of them up (\"uploaded\"\n"
        "                once acked); exit 0 when done (--hold: at SIGTERM or --timeout)\n"
        "  send          Hello as --zone with --token-file, send --resources up (bent by\n"
        "                --tweak, --copies, --delete), print each Ack's refusals; exit 0 when\n"
        "                all were answered (--hold: when the server then closes the session)\n"
        "Output: one line per event on stdout, EVENT key=value...; a text field (reason, error)\n"
        "comes last. Exit codes: 0 the expected outcome, 1 another one, 2 usage, 3 no\n"
        "connection, 4 timeout.",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .args = "MODE",
};

static const char *const mode_names[] = {"garbage",      "huge",  "before-hello",
                                         "silent-hello", "zones", "send"};

/* ----- shared helpers ----- */

void probe_send_hello(struct probe *p, struct hy_ws_conn *c, uint64_t acked)
{
    const struct probe_cfg *cfg = p->cfg;
    char *token = probe_read_token(cfg->token_file);
    if (!token) {
        probe_out("error reason=%s: cannot read the token: %s", cfg->token_file, strerror(errno));
        probe_finish(p, PROBE_USAGE);
        return;
    }
    Hypha__V1__Hello h = HYPHA__V1__HELLO__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    h.zone = cfg->zone;
    h.version = "kds-probe";
    h.token = token;
    h.has_acked_global_revision = 1;
    h.acked_global_revision = acked;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_HELLO;
    m.hello = &h;
    probe_send(c, &m);
    free(token);
}

void probe_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

uint64_t probe_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

const char *probe_clean(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    for (; s && *s && n + 1 < size; s++)
        buf[n++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f ? *s : '?';
    buf[n] = '\0';
    return buf;
}

void probe_finish(struct probe *p, int code)
{
    if (p->finished)
        return;
    p->finished = true;
    p->exit_code = code;
    uv_stop(p->loop);
}

struct hy_ws_client_config probe_ws_config(const struct probe *p, struct hy_ws_callbacks cb,
                                           void *ud)
{
    const struct probe_cfg *c = p->cfg;
    return (struct hy_ws_client_config){
        .loop = p->loop,
        .url = c->url,
        .name = "the global control plane",
        .ca_file = c->ca_file,
        .skip_verify = c->insecure,
        .subprotocol = HY_KDS_SUBPROTOCOL,
        .backoff = {.initial_ms = 200, .max_ms = 2000},
        .cb = cb,
        .ud = ud,
    };
}

int probe_send(struct hy_ws_conn *c, const Hypha__V1__KdsMessage *m)
{
    return hy_ws_send_msg(c, &m->base, NULL);
}

char *probe_read_token(const char *path)
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

/* ----- garbage, huge, before-hello: one connection ----- */

struct raw {
    struct probe *p;
    struct hy_ws_client *ws;
    bool opened, welcomed, rejected;
    uint64_t sent, t_open;
    uint64_t rng;
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill_random(struct raw *r, uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = xorshift(&r->rng);
        memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* Sends --count messages of --size random bytes (or one for huge). */
static void send_random(struct raw *r)
{
    const struct probe_cfg *c = r->p->cfg;
    uint64_t n = r->p->mode == MODE_HUGE ? 1 : c->count;
    size_t len = (size_t)c->size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        probe_out("error reason=out of memory for %zu bytes", len);
        probe_finish(r->p, PROBE_UNEXPECTED);
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        fill_random(r, buf, len);
        int rc = hy_ws_send(hy_ws_client_conn(r->ws), buf, len);
        if (rc < 0) {
            probe_out("send-failed sent=%llu reason=%s", (unsigned long long)r->sent,
                      hy_strerror(rc));
            break;
        }
        r->sent++;
    }
    free(buf);
    probe_out("sent messages=%llu bytes=%zu", (unsigned long long)r->sent, len);
}

static void send_before_hello(struct raw *r)
{
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    Hypha__V1__Changes ch = HYPHA__V1__CHANGES__INIT;
    Hypha__V1__Ack ack = HYPHA__V1__ACK__INIT;
    if (!strcmp(r->p->cfg->first, "ack")) {
        ack.has_to = 1;
        ack.to = 1;
        m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_ACK;
        m.ack = &ack;
    } else {
        ch.has_from = ch.has_to = 1;
        ch.from = 0;
        ch.to = 1;
        m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_CHANGES;
        m.changes = &ch;
    }
    int rc = probe_send(hy_ws_client_conn(r->ws), &m);
    probe_out("sent message=%s rc=%d", r->p->cfg->first, rc);
}

static void send_hello(struct raw *r)
{
    probe_send_hello(r->p, hy_ws_client_conn(r->ws), 0);
}

static void raw_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct raw *r = ud;
    (void)c;
    if (r->opened)
        return; /* a reconnect after the close we are ending on */
    r->opened = true;
    r->t_open = probe_now_ns();
    probe_out("open peer=%s", peer);
    if (r->p->mode == MODE_BEFORE_HELLO)
        send_before_hello(r);
    else if (r->p->mode == MODE_GARBAGE && r->p->cfg->zone)
        send_hello(r); /* garbage follows the Welcome */
    else
        send_random(r);
}

static void raw_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct raw *r = ud;
    (void)c;
    char text[256];
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, len, data);
    if (!m) {
        probe_out("message type=malformed bytes=%zu", len);
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__KDS_MESSAGE__MSG_REJECT:
        r->rejected = true;
        probe_out("reject reason=%s", probe_clean(m->reject->reason, text, sizeof(text)));
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_WELCOME:
        probe_out("welcome zone=%s", r->p->cfg->zone ? r->p->cfg->zone : "?");
        if (!r->welcomed && r->p->mode == MODE_GARBAGE)
            send_random(r);
        r->welcomed = true;
        break;
    default:
        if (r->p->cfg->trace)
            probe_out("message type=%d bytes=%zu", (int)m->msg_case, len);
    }
    hypha__v1__kds_message__free_unpacked(m, NULL);
}

static void raw_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct raw *r = ud;
    (void)c;
    char text[HY_WS_REASON_MAX + 1];
    probe_clean(reason, text, sizeof(text));
    if (!r->opened) {
        probe_out("connect-failed reason=%s", text);
        probe_finish(r->p, PROBE_NOCONNECT);
        return;
    }
    if (r->p->finished)
        return;
    uint64_t ms = (probe_now_ns() - r->t_open) / 1000000u;
    probe_out("close code=%d after_ms=%llu reason=%s", code, (unsigned long long)ms, text);
    int rc = PROBE_UNEXPECTED;
    switch (r->p->mode) {
    case MODE_GARBAGE: /* any close frame: the server noticed and said so */
        rc = code != HY_WS_CLOSE_ABNORMAL && code != 1005 ? PROBE_OK : PROBE_UNEXPECTED;
        break;
    case MODE_HUGE:
        rc = code == r->p->cfg->expect_code ? PROBE_OK : PROBE_UNEXPECTED;
        break;
    case MODE_BEFORE_HELLO:
        rc = r->rejected && code == HY_WS_CLOSE_POLICY ? PROBE_OK : PROBE_UNEXPECTED;
        break;
    default:
        break;
    }
    probe_finish(r->p, rc);
}

static int raw_start(struct probe *p)
{
    const struct probe_cfg *c = p->cfg;
    struct raw *r = calloc(1, sizeof(*r));
    if (!r)
        return PROBE_UNEXPECTED;
    p->raw = r;
    r->p = p;
    r->rng = c->seed ? c->seed : 1;
    struct hy_ws_client_config wc =
        probe_ws_config(p, (struct hy_ws_callbacks){raw_open, raw_message, raw_close}, r);
    if (p->mode == MODE_HUGE) /* the send queue must take it: max_queue is 4x this */
        wc.limits.max_message = (size_t)c->size + 1;
    if (hy_ws_client_new(&wc, &r->ws) < 0) {
        probe_out("error reason=cannot create the websocket client (see the log)");
        return PROBE_USAGE;
    }
    return PROBE_OK;
}

/* ----- main ----- */

static void on_deadline(uv_timer_t *t)
{
    struct probe *p = t->data;
    bool hold_ok =
        (p->mode == MODE_SILENT_HELLO || p->mode == MODE_ZONES) && probe_zones_goal_reached(p);
    probe_out("timeout after_ms=%llu goal=%s", (unsigned long long)p->cfg->timeout,
              hold_ok ? "reached" : "not-reached");
    probe_finish(p, hold_ok ? PROBE_OK : PROBE_TIMEOUT);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct probe *p = s->data;
    bool ok =
        (p->mode == MODE_SILENT_HELLO || p->mode == MODE_ZONES) && probe_zones_goal_reached(p);
    probe_out("signal number=%d goal=%s", signum, ok ? "reached" : "not-reached");
    probe_finish(p, ok ? PROBE_OK : PROBE_TIMEOUT);
}

/* What the flags must say for the mode; prints why not. */
static bool check_cfg(const struct probe_cfg *c, enum probe_mode mode)
{
    const char *why = NULL;
    if (!c->url || strncmp(c->url, "wss://", 6) != 0)
        why = "--url wss://HOST:PORT is required";
    else if (!c->ca_file && !c->insecure)
        why = "--ca-file (or --insecure) is required";
    else if (c->timeout <= 0)
        why = "--timeout must be positive";
    else if (mode == MODE_HUGE && c->size < 1)
        why = "huge needs --size";
    else if (mode == MODE_BEFORE_HELLO && strcmp(c->first, "changes") && strcmp(c->first, "ack"))
        why = "--first must be changes or ack";
    else if (mode == MODE_SEND && (!c->resources || !c->zone || !c->token_file))
        why = "send needs --resources, --zone and --token-file";
    else if ((mode == MODE_SILENT_HELLO || (mode == MODE_GARBAGE && c->zone)) &&
             (!c->zone || !c->token_file))
        why = "a Hello needs --zone and --token-file";
    else if (mode == MODE_ZONES && c->zones > 0 && !c->token_dir)
        why = "zones needs --token-dir";
    else if (mode == MODE_ZONES && c->zones == 0 && !c->zone_api)
        why = "--zones 0 needs --zone-api";
    else if (mode == MODE_ZONES && c->zone_api && !c->put_api)
        why = "--zone-api needs --put-api";
    else if (mode == MODE_ZONES && c->zones > 1000)
        why = "--zones is at most 1000";
    else if (mode == MODE_ZONES && c->puts + c->warmup > 1000000)
        why = "--puts + --warmup is at most 1000000";
    if (why)
        fprintf(stderr, "hypha-kds-probe: %s (see --help)\n", why);
    return !why;
}

int main(int argc, char **argv)
{
    struct probe_cfg cfg = {0};
    struct hy_config_result res = {0};
    int rc = hy_config_parse(&spec, &cfg, argc, argv, &res);
    if (rc < 0 || res.help || res.version) {
        struct hy_buf out = {0};
        if (rc < 0)
            fprintf(stderr, "hypha-kds-probe: %s\n(see --help)\n", res.error);
        else if (res.help && hy_config_usage(&spec, &out) == 0)
            fputs(out.data, stdout);
        else if (res.version)
            printf("hypha-kds-probe %s\n", HYPHA_VERSION);
        hy_buf_fini(&out);
        hy_config_fini(&spec, &cfg);
        return rc < 0 ? PROBE_USAGE : PROBE_OK;
    }
    struct probe p = {.cfg = &cfg, .exit_code = PROBE_OK};
    size_t m = 0, nmodes = sizeof(mode_names) / sizeof(mode_names[0]);
    while (res.nargs == 1 && m < nmodes && strcmp(res.args[0], mode_names[m]) != 0)
        m++;
    if (res.nargs != 1 || m == nmodes) {
        fprintf(stderr, "hypha-kds-probe: give one MODE: garbage, huge, before-hello, "
                        "silent-hello, zones or send (see --help)\n");
        hy_config_fini(&spec, &cfg);
        return PROBE_USAGE;
    }
    p.mode = (enum probe_mode)m;
    if (!check_cfg(&cfg, p.mode)) {
        hy_config_fini(&spec, &cfg);
        return PROBE_USAGE;
    }
    hy_log_threshold = cfg.log_level;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    p.loop = &loop;
    p.t_start = probe_now_ns();
    uv_timer_init(&loop, &p.deadline);
    p.deadline.data = &p;
    uv_timer_start(&p.deadline, on_deadline, (uint64_t)cfg.timeout, 0);
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &p.sigs[i]);
        p.sigs[i].data = &p;
        uv_signal_start(&p.sigs[i], on_signal, signums[i]);
    }
    bool zoned = p.mode == MODE_SILENT_HELLO || p.mode == MODE_ZONES;
    bool sending = p.mode == MODE_SEND;
    rc = zoned ? probe_zones_start(&p) : sending ? probe_send_start(&p) : raw_start(&p);
    if (rc != PROBE_OK)
        probe_finish(&p, rc);
    else
        uv_run(&loop, UV_RUN_DEFAULT);

    /* close our handles; lws closes its own: run until all have finished */
    struct raw *r = p.raw;
    if (zoned)
        probe_zones_stop(&p);
    else if (sending)
        probe_send_stop(&p);
    else if (r)
        hy_ws_client_stop(r->ws);
    uv_close((uv_handle_t *)&p.deadline, NULL);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p.sigs[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (zoned) {
        probe_zones_free(&p);
    } else if (sending) {
        probe_send_free(&p);
    } else if (r) {
        hy_ws_client_free(r->ws);
        free(r);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        hy_log(HY_LOG_WARN, "probe", "the loop still had handles at exit");
    probe_out("exit code=%d", p.exit_code);
    hy_config_fini(&spec, &cfg);
    return p.exit_code;
}
