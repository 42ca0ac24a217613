/* hypha-dp-sim: N simulated sidecars against one zone, for tests and
 * benchmarks (tests/integration/dp_sim.sh, bench/dp_scale.sh). This file:
 * the flags, main, the output, and the phases of a run: connect every
 * session (at most --ramp at a time), then the writer's changes
 * (dp_sim_writer.c), then one sidecar joining, then the end. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dp_sim.h"
#include "error.h"
#include "wire.h"
#include "poison.h"

#define O(field) offsetof(struct sim_cfg, field)
#define MAX_SESSIONS 20000
#define MAX_SAMPLES 50000000u

static const struct hy_option options[] = {
    {"cp-address", NULL, NULL, HY_OPT_STRING, O(cp_address), NULL,
     "DP address of the zone: wss://127.0.0.1:PORT (required)"},
    {"ca-cert-file", NULL, NULL, HY_OPT_STRING, O(ca_cert_file), NULL,
     "CA of the zone's DP server certificate, $ZONE_DATA/dp/ca.pem (required)"},
    {"mesh", NULL, NULL, HY_OPT_STRING, O(mesh), "default", "mesh of every simulated sidecar"},
    {"count", NULL, NULL, HY_OPT_UINT, O(count), "100",
     "simulated sidecars, named sim-0 .. sim-<count-1> (at most 20000)"},
    {"services", NULL, NULL, HY_OPT_UINT, O(services), "10",
     "sidecar i serves svc-<i mod services> on its one inbound"},
    {"outbounds", NULL, NULL, HY_OPT_UINT, O(outbounds), "2",
     "outbounds of each sidecar, to the next services after its own (fewer than --services)"},
    {"policies", NULL, NULL, HY_OPT_UINT, O(policies), "0",
     "standing policies applied (one POST /_apply to --put-api) before the sessions connect: "
     "dp-sim-policy-<j>, MeshTrafficPermissions and MeshTimeouts each on one service, spread "
     "over the services"},
    {"token-dir", NULL, NULL, HY_OPT_STRING, O(token_dir), NULL,
     "dataplane tokens, one file DIR/sim-<i>.token each (or --api)"},
    {"api", NULL, NULL, HY_OPT_STRING, O(api), NULL,
     "the zone's API, http://127.0.0.1:PORT: the simulator mints every token there (POST "
     "/tokens/dataplane, as hyphactl generate dataplane-token)"},
    {"auth-token", "HYPHA_AUTH_TOKEN", NULL, HY_OPT_STRING, O(auth_token), NULL,
     "admin token sent to --api and --put-api as a bearer token (none on loopback)"},
    {"token-valid-for", NULL, NULL, HY_OPT_DURATION, O(token_valid_for), "24h",
     "lifetime of minted tokens"},
    {"ramp", NULL, NULL, HY_OPT_UINT, O(ramp), "64",
     "sessions started together: the next batch starts once every session is open and has "
     "its first config (the zone holds at most 256 connections waiting for their Hello)"},
    {"put-api", NULL, NULL, HY_OPT_STRING, O(put_api), NULL,
     "the zone's API where --changes are applied once every session has its first config"},
    {"changes", NULL, NULL, HY_OPT_UINT, O(changes), "0",
     "policy changes per round, one at a time: each waits until every session has it"},
    {"change", NULL, NULL, HY_OPT_STRING, O(change), "mtp",
     "what a change is: mtp (a MeshTrafficPermission on the whole mesh, its `from` naming a "
     "new service each time) or timeout (a MeshTimeout whose connectionTimeout changes; needs "
     "--outbounds)"},
    {"change-name", NULL, NULL, HY_OPT_STRING, O(change_name), "dp-sim-change",
     "name of the policy the changes rewrite"},
    {"burst", NULL, NULL, HY_OPT_BOOL, O(burst), "false",
     "apply a round's changes at once: that many MeshTrafficPermissions CHANGE-NAME-<i> in one "
     "POST /_apply; then wait until every session has them all"},
    {"restarts", NULL, NULL, HY_OPT_UINT, O(restarts), "0",
     "more rounds; each waits until every session lost its connection and got a config on a "
     "new one (restart the zone after each `converged` line), checks they still agree, then "
     "applies --changes more"},
    {"join", NULL, NULL, HY_OPT_BOOL, O(join), "false",
     "at the end one more sidecar of svc-0 joins: time until every session with an outbound "
     "to svc-0 lists it"},
    {"zone-pid", NULL, NULL, HY_OPT_INT, O(zone_pid), "0",
     "the zone's pid: its CPU time per change and its RSS from /proc"},
    {"timeout", NULL, NULL, HY_OPT_DURATION, O(timeout), "120s",
     "the run never lasts longer (exit 4 if its goals were not reached)"},
    {"trace", NULL, NULL, HY_OPT_BOOL, O(trace), "false",
     "a line for every config, close, renewal and change"},
    {"context-per-session", NULL, NULL, HY_OPT_BOOL, O(context_per_session), "false",
     "give every session its own libwebsockets context, as before they shared one (to measure "
     "what that costs); then --ramp must stay small, see there"},
    {"log-level", NULL, NULL, HY_OPT_LOG_LEVEL, O(log_level), "warn",
     "log lines on stderr (the websocket module's)"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-dp-sim",
    .summary =
        "Simulated sidecars for measuring a zone: --count real DP sessions on one loop, each\n"
        "with its own Dataplane, dataplane token and connection, acking every config as\n"
        "hypha-dp does. With --put-api, applies --changes policy changes and times their\n"
        "arrival at every session; with --join, times one more sidecar reaching the others.\n"
        "Output: one line per event on stdout, EVENT key=value...; a text field (reason)\n"
        "comes last. Exit codes: 0 every goal reached, 1 a Reject, a failed PUT or sessions\n"
        "that disagree, 2 usage, 3 no connection, 4 timeout.",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
};

/* ----- shared helpers ----- */

void sim_out(const char *fmt, ...)
{
    va_list ap;
    flockfile(stdout); /* the writer thread prints too: whole lines */
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    funlockfile(stdout);
}

uint64_t sim_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

const char *sim_clean(const char *text, char *buf, size_t size)
{
    size_t n = 0;
    for (; text && *text && n + 1 < size; text++)
        buf[n++] = (unsigned char)*text >= 0x20 && (unsigned char)*text < 0x7f ? *text : '?';
    buf[n] = '\0';
    return buf;
}

void sim_finish(struct sim *s, int code)
{
    if (s->finished)
        return;
    s->finished = true;
    s->exit_code = code;
    uv_stop(s->loop);
}

long sim_rss_kb(long pid)
{
    char path[64], line[256];
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v, in us. */
static double pct(const int64_t *v, size_t n, double p)
{
    size_t r = (size_t)(p / 100.0 * (double)n + 0.999999);
    return (double)v[(r ? r : 1) - 1] / 1000.0;
}

void sim_print_latency(const char *what, const char *from, size_t sessions, int64_t *v, size_t n)
{
    if (!n) {
        sim_out("latency what=%s from=%s sessions=%zu n=0", what, from, sessions);
        return;
    }
    qsort(v, n, sizeof(*v), cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    sim_out("latency what=%s from=%s sessions=%zu n=%zu min_us=%.1f p50_us=%.1f p90_us=%.1f "
            "p99_us=%.1f max_us=%.1f mean_us=%.1f",
            what, from, sessions, n, (double)v[0] / 1000.0, pct(v, n, 50), pct(v, n, 90),
            pct(v, n, 99), (double)v[n - 1] / 1000.0, sum / (double)n / 1000.0);
}

/* ----- the phases ----- */

static bool goal_reached;

void sim_on_connected(struct sim *s)
{
    s->connected = true;
    s->t_connected = sim_now_ns();
    uint64_t first = UINT64_MAX, last = 0;
    for (size_t k = 0; k < s->n; k++) {
        uint64_t t = s->v[k].t_first_config;
        first = t < first ? t : first;
        last = t > last ? t : last;
    }
    sim_out("connected sessions=%zu ms=%.1f first_config_ms=%.1f", s->n,
            (double)(s->t_connected - s->t_start) / 1e6, (double)(first - s->t_start) / 1e6);
    if (s->cfg->put_api) {
        int rc = sim_writer_start(s);
        if (rc != SIM_OK)
            sim_finish(s, rc);
        return;
    }
    sim_on_writer_done(s);
}

void sim_on_writer_done(struct sim *s)
{
    if (s->cfg->join)
        sim_join_start(s);
    else
        sim_on_joined(s);
}

void sim_on_joined(struct sim *s)
{
    goal_reached = true;
    sim_out("done sessions=%zu ms=%.1f", s->n, (double)(sim_now_ns() - s->t_start) / 1e6);
    sim_finish(s, SIM_OK);
}

static void on_deadline(uv_timer_t *t)
{
    struct sim *s = t->data;
    sim_out("timeout after_ms=%lld configured=%zu of=%zu", (long long)s->cfg->timeout,
            s->nconfigured, s->n);
    sim_finish(s, SIM_TIMEOUT);
}

static void on_tick(uv_timer_t *t)
{
    sim_sessions_tick(t->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct sim *s = h->data;
    sim_out("signal number=%d goal=%s", signum, goal_reached ? "reached" : "not-reached");
    sim_finish(s, goal_reached ? SIM_OK : SIM_TIMEOUT);
}

/* ----- main ----- */

static bool check_cfg(const struct sim_cfg *c)
{
    const char *why = NULL;
    if (!c->cp_address || strncmp(c->cp_address, "wss://", 6) != 0)
        why = "--cp-address wss://HOST:PORT is required";
    else if (!c->ca_cert_file)
        why = "--ca-cert-file is required ($ZONE_DATA/dp/ca.pem)";
    else if (c->count < 1 || c->count > MAX_SESSIONS)
        why = "--count is 1 to 20000";
    else if (c->services < 1 || c->services > MAX_SESSIONS)
        why = "--services is 1 to 20000";
    else if (c->outbounds >= c->services || c->outbounds > HY_DP_MAX_OUTBOUNDS)
        why = "--outbounds must be less than --services (they go to other services)";
    else if (!c->token_dir == !c->api)
        why = "give one of --token-dir and --api";
    else if (c->token_valid_for < 1000)
        why = "--token-valid-for must be at least 1s";
    else if (c->ramp < 1)
        why = "--ramp must be at least 1";
    else if (!c->put_api != !c->changes)
        why = "--put-api and --changes go together";
    else if (strcmp(c->change, "mtp") && strcmp(c->change, "timeout"))
        why = "--change is mtp or timeout";
    else if (!strcmp(c->change, "timeout") && c->changes && !c->outbounds)
        why = "--change timeout needs --outbounds (only outbounds carry timeouts)";
    else if (c->burst && strcmp(c->change, "mtp"))
        why = "--burst applies MeshTrafficPermissions: --change mtp";
    else if (c->policies && !c->put_api)
        why = "--policies needs --put-api";
    else if (c->policies > 100000)
        why = "--policies is at most 100000";
    else if (c->restarts && !c->put_api)
        why = "--restarts needs --put-api and --changes";
    else if (c->changes && c->count * c->changes * (c->restarts + 1) > MAX_SAMPLES)
        why = "--count x --changes x (--restarts + 1) is over 50 million samples";
    else if (c->timeout <= 0)
        why = "--timeout must be positive";
    if (why)
        fprintf(stderr, "hypha-dp-sim: %s (see --help)\n", why);
    return !why;
}

/* One descriptor per session and some for the API calls and the loop. */
static void raise_fd_limit(size_t sessions)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)sessions + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
        sim_out("warning reason=only %llu file descriptors for %zu sessions; raise the hard "
                "limit (ulimit -Hn) or run fewer",
                (unsigned long long)rl.rlim_cur, sessions);
}

static void print_summary(struct sim *s, size_t total)
{
    uint64_t configs = 0, nacks = 0, renewals = 0, closes = 0, bytes = 0, opens = 0;
    for (size_t k = 0; k < total; k++) {
        const struct sim_session *x = &s->v[k];
        configs += x->configs;
        nacks += x->nacks;
        renewals += x->renewals;
        closes += x->closes;
        bytes += x->bytes;
        opens += x->opens;
    }
    sim_out("sessions n=%zu configured=%zu opens=%" PRIu64 " closes=%" PRIu64 " configs=%" PRIu64
            " nacks=%" PRIu64 " renewals=%" PRIu64 " bytes=%" PRIu64,
            total, s->nconfigured, opens, closes, configs, nacks, renewals, bytes);
    long sim_kb = sim_rss_kb(0);
    long zone_kb = sim_rss_kb((long)s->cfg->zone_pid);
    double n = (double)(total ? total : 1);
    if (s->cfg->zone_pid > 0 && zone_kb >= 0 && s->zone_rss_start_kb >= 0)
        sim_out("memory sim_rss_kb=%ld sim_per_session_kb=%.1f zone_rss_start_kb=%ld "
                "zone_rss_kb=%ld zone_per_session_kb=%.1f",
                sim_kb, (double)(sim_kb - s->sim_rss_start_kb) / n, s->zone_rss_start_kb, zone_kb,
                (double)(zone_kb - s->zone_rss_start_kb) / n);
    else
        sim_out("memory sim_rss_kb=%ld sim_per_session_kb=%.1f", sim_kb,
                (double)(sim_kb - s->sim_rss_start_kb) / n);
}

static int run(struct sim *s)
{
    const struct sim_cfg *c = s->cfg;
    size_t total = s->n + (c->join ? 1 : 0);
    int rc = hy_ca_make_csr("hypha-dp-sim", &s->csr);
    if (rc < 0) {
        sim_out("error reason=cannot make a key and a CSR: %s", hy_strerror(rc));
        return SIM_UNEXPECTED;
    }
    if ((rc = sim_tokens_load(s, total)) != SIM_OK)
        return rc;
    if ((rc = sim_policies_apply(s)) != SIM_OK)
        return rc;
    if (!c->context_per_session) {
        rc = hy_ws_client_ctx_new(s->loop, c->ca_cert_file, HY_DP_SUBPROTOCOL, &s->ws_ctx);
        if (rc < 0) {
            sim_out("error reason=cannot create the websocket context: %s (see the log)",
                    hy_strerror(rc));
            return SIM_USAGE;
        }
    }
    uint64_t nonce = sim_now_ns() ^ ((uint64_t)getpid() << 20);
    snprintf(s->marker, sizeof(s->marker), "c%06" PRIx64 "-", nonce & 0xffffff);
    s->timeout_base_ms = 100000 + (nonce % 900) * 10000;
    s->zone_rss_start_kb = sim_rss_kb((long)c->zone_pid);
    s->sim_rss_start_kb = sim_rss_kb(0);
    s->t_start = sim_now_ns();
    uv_timer_start(&s->deadline, on_deadline, (uint64_t)c->timeout, 0);
    uv_timer_start(&s->tick, on_tick, 1000, 1000);
    sim_ramp(s);
    if (s->finished)
        return s->exit_code;
    uv_run(s->loop, UV_RUN_DEFAULT);
    return s->exit_code;
}

int main(int argc, char **argv)
{
    struct sim_cfg cfg = {0};
    struct hy_config_result res = {0};
    int rc = hy_config_parse(&spec, &cfg, argc, argv, &res);
    if (rc < 0 || res.help || res.version) {
        struct hy_buf out = {0};
        if (rc < 0)
            fprintf(stderr, "hypha-dp-sim: %s\n(see --help)\n", res.error);
        else if (res.help && hy_config_usage(&spec, &out) == 0)
            fputs(out.data, stdout);
        else if (res.version)
            printf("hypha-dp-sim %s\n", HYPHA_VERSION);
        hy_buf_fini(&out);
        hy_config_fini(&spec, &cfg);
        return rc < 0 ? SIM_USAGE : SIM_OK;
    }
    if (res.nargs != 0) {
        fprintf(stderr, "hypha-dp-sim: unexpected argument \"%s\" (see --help)\n", res.args[0]);
        hy_config_fini(&spec, &cfg);
        return SIM_USAGE;
    }
    if (!check_cfg(&cfg)) {
        hy_config_fini(&spec, &cfg);
        return SIM_USAGE;
    }
    hy_log_threshold = cfg.log_level;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sim s = {.cfg = &cfg, .loop = &loop, .n = (size_t)cfg.count, .exit_code = SIM_OK};
    size_t total = s.n + (cfg.join ? 1 : 0);
    raise_fd_limit(total);
    s.v = calloc(total, sizeof(*s.v));
    uv_timer_init(&loop, &s.deadline);
    s.deadline.data = &s;
    uv_timer_init(&loop, &s.tick);
    s.tick.data = &s;
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &s.sigs[i]);
        s.sigs[i].data = &s;
        uv_signal_start(&s.sigs[i], on_signal, signums[i]);
    }
    rc = s.v ? run(&s) : SIM_UNEXPECTED;
    if (s.exit_code == SIM_OK)
        s.exit_code = rc;

    /* the end: counts and memory first (while every session still holds
     * its state), then our handles; lws closes its own, so run the loop
     * until all have finished */
    if (s.v)
        print_summary(&s, total);
    sim_writer_stop(&s);
    for (size_t k = 0; s.v && k < total; k++)
        if (s.v[k].ws)
            hy_ws_client_stop(s.v[k].ws);
    uv_close((uv_handle_t *)&s.deadline, NULL);
    uv_close((uv_handle_t *)&s.tick, NULL);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&s.sigs[i], NULL);
    /* no loop run before the frees: the shared context's handles keep it
     * alive until the context is freed (the frees of stopped clients need
     * none: what lws still holds goes in the run below) */
    for (size_t k = 0; s.v && k < total; k++) {
        hy_ws_client_free(s.v[k].ws);
        sim_session_parts_fini(&s.v[k]);
        if (s.v[k].token)
            explicit_bzero(s.v[k].token, strlen(s.v[k].token));
        free(s.v[k].token);
    }
    hy_ws_client_ctx_free(s.ws_ctx); /* after its clients */
    uv_run(&loop, UV_RUN_DEFAULT);
    sim_writer_free(&s);
    hy_ca_pem_fini(&s.csr);
    free(s.v);
    if (uv_loop_close(&loop) != 0)
        hy_log(HY_LOG_WARN, "sim", "the loop still had handles at exit");
    sim_out("exit code=%d", s.exit_code);
    hy_config_fini(&spec, &cfg);
    return s.exit_code;
}
