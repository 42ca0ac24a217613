/* hypha-dp-sim's HTTP side: the dataplane tokens (read from --token-dir or
 * minted through the zone's API, as hyphactl generate dataplane-token
 * does), and the writer thread that applies --changes policy changes one
 * at a time (or all in one --burst), waits until every session has a config that
 * carries each, and measures: arrival at each session and at the last one
 * against the moment the API answered the PUT (one monotonic clock), the
 * config bytes and the zone's CPU time each change cost. Between rounds
 * (--restarts) it waits until every session reconnected and got a config
 * again, and checks they still agree. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dp_sim.h"
#include "error.h"
#include "http_client.h"
#include "poison.h"

/* ----- HTTP ----- */

/* One request; *status is the answer's. 0, or <0 with err set (err is set
 * too for an answer of 300 or more). body_out (may be NULL) gets the body. */
static int http(const struct sim_cfg *c, const char *method, const char *url, const char *body,
                int *status, char **body_out, char *err, size_t errsize)
{
    char auth[4200];
    /* a burst is several documents: YAML, each one a JSON flow mapping */
    bool docs = body && strstr(body, "\n---\n");
    struct hy_httpc_header hdr[2] = {
        {"Content-Type", docs ? "application/yaml" : "application/json"}};
    size_t nh = 1;
    if (c->auth_token) {
        snprintf(auth, sizeof(auth), "Bearer %s", c->auth_token);
        hdr[nh++] = (struct hy_httpc_header){"Authorization", auth};
    }
    struct hy_httpc_request req = {.method = method,
                                   .url = url,
                                   .headers = hdr,
                                   .nheaders = nh,
                                   .body = body,
                                   .body_len = body ? strlen(body) : 0};
    struct hy_httpc_options o = {
        .connect_timeout_ms = 5000, .timeout_ms = 30000, .user_agent = "hypha-dp-sim"};
    struct hy_httpc_response resp = {0};
    int rc = hy_httpc_request(&o, &req, &resp, err, errsize);
    if (rc == 0) {
        *status = resp.status;
        if (resp.status >= 300)
            snprintf(err, errsize, "%.8s %.250s: HTTP %d %.200s", method, url, resp.status,
                     resp.body.data ? resp.body.data : "");
        else if (body_out && !(*body_out = strdup(resp.body.data ? resp.body.data : "")))
            rc = HY_ENOMEM;
    }
    hy_httpc_response_fini(&resp);
    return rc;
}

/* ----- tokens ----- */

/* The first word of a file (a token), or NULL (errno says why). */
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
    char *t = buf + strspn(buf, " \t\r\n");
    t[strcspn(t, " \t\r\n")] = '\0';
    if (n == 0 || !*t) {
        free(buf);
        errno = ENODATA;
        return NULL;
    }
    memmove(buf, t, strlen(t) + 1);
    return buf;
}

/* POST /tokens/dataplane for session k, as hyphactl generate
 * dataplane-token --mesh M --name sim-<k> --tag hypha.io/service=svc-<x>. */
static char *mint_token(struct sim *s, size_t k, char *err, size_t errsize)
{
    const struct sim_cfg *c = s->cfg;
    char url[1024], body[512];
    size_t svc = k < s->n ? k % (size_t)c->services : 0;
    snprintf(url, sizeof(url), "%s/tokens/dataplane", c->api);
    snprintf(body, sizeof(body),
             "{\"mesh\":\"%s\",\"name\":\"sim-%zu\",\"validFor\":\"%llds\","
             "\"tags\":{\"hypha.io/service\":\"svc-%zu\"}}",
             c->mesh, k, (long long)(c->token_valid_for / 1000), svc);
    int status = 0;
    char *token = NULL;
    if (http(c, "POST", url, body, &status, &token, err, errsize) < 0 || status >= 300)
        return NULL;
    char *t = token + strspn(token, " \t\r\n");
    t[strcspn(t, " \t\r\n")] = '\0';
    if (!*t) {
        snprintf(err, errsize, "POST %.500s answered an empty token", url);
        free(token);
        return NULL;
    }
    memmove(token, t, strlen(t) + 1);
    return token;
}

int sim_tokens_load(struct sim *s, size_t nsessions)
{
    const struct sim_cfg *c = s->cfg;
    uint64_t t0 = sim_now_ns();
    char err[600], path[4096];
    for (size_t k = 0; k < nsessions; k++) {
        struct sim_session *x = &s->v[k];
        if (c->token_dir) {
            snprintf(path, sizeof(path), "%s/sim-%zu.token", c->token_dir, k);
            if (!(x->token = read_token(path))) {
                sim_out("error session=sim-%zu reason=%s: cannot read the token: %s; generate it "
                        "with 'hyphactl generate dataplane-token --mesh %s --name sim-%zu --tag "
                        "hypha.io/service=svc-%zu', or give --api instead of --token-dir",
                        k, path, strerror(errno), c->mesh, k,
                        k < s->n ? k % (size_t)c->services : 0);
                return SIM_USAGE;
            }
        } else if (!(x->token = mint_token(s, k, err, sizeof(err)))) {
            sim_out(
                "error session=sim-%zu reason=cannot mint its dataplane token through --api: %s", k,
                err);
            return SIM_UNEXPECTED;
        }
    }
    sim_out("tokens sessions=%zu source=%s ms=%.1f", nsessions, c->token_dir ? "dir" : "api",
            (double)(sim_now_ns() - t0) / 1e6);
    return SIM_OK;
}

/* ----- the zone's CPU ----- */

/* utime + stime of /proc/<pid>/stat in ms, or -1. */
static long zone_cpu_ms(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long ut, st;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (long)((ut + st) * 1000u / (unsigned long)(hz > 0 ? hz : 100));
}

/* ----- the writer thread ----- */

/* The policy of change i, as JSON, named name; its URL under --put-api. */
static void change_doc(const struct sim *s, size_t i, const char *name, char *url, size_t usize,
                       char *body, size_t bsize)
{
    const struct sim_cfg *c = s->cfg;
    if (!strcmp(c->change, "timeout")) {
        uint64_t ms = s->timeout_base_ms + i;
        snprintf(url, usize, "%s/meshes/%s/meshtimeouts/%s", c->put_api, c->mesh, name);
        snprintf(body, bsize,
                 "{\"type\":\"MeshTimeout\",\"mesh\":\"%s\",\"name\":\"%s\",\"spec\":{"
                 "\"targetRef\":{\"kind\":\"Mesh\"},\"to\":[{\"targetRef\":{\"kind\":\"Mesh\"},"
                 "\"default\":{\"connectionTimeout\":\"%" PRIu64 ".%03" PRIu64 "s\"}}]}}",
                 c->mesh, name, ms / 1000, ms % 1000);
        return;
    }
    snprintf(url, usize, "%s/meshes/%s/meshtrafficpermissions/%s", c->put_api, c->mesh, name);
    snprintf(body, bsize,
             "{\"type\":\"MeshTrafficPermission\",\"mesh\":\"%s\",\"name\":\"%s\",\"spec\":{"
             "\"targetRef\":{\"kind\":\"Mesh\"},\"from\":["
             "{\"targetRef\":{\"kind\":\"Mesh\"},\"default\":{\"action\":\"Allow\"}},"
             "{\"targetRef\":{\"kind\":\"MeshService\",\"name\":\"%s%zu\"},"
             "\"default\":{\"action\":\"Deny\"}}]}}",
             c->mesh, name, s->marker, i);
}

/* A burst: changes first..last as that many MeshTrafficPermissions
 * (--change-name-<i>) in one POST /_apply, so the zone takes them in one
 * write. */
static int apply_burst(struct sim *s, size_t first, size_t last)
{
    struct writer *w = &s->w;
    const struct sim_cfg *c = s->cfg;
    size_t per = 1200, size = (last - first + 1) * per + 1;
    char *body = malloc(size), url[1024], name[300];
    if (!body) {
        snprintf(w->err, sizeof(w->err), "out of memory for a burst of %zu", last - first + 1);
        return SIM_UNEXPECTED;
    }
    size_t len = 0;
    for (size_t i = first; i <= last; i++) {
        snprintf(name, sizeof(name), "%s-%zu", c->change_name, i);
        if (len)
            len += (size_t)snprintf(body + len, size - len, "\n---\n");
        change_doc(s, i, name, url, sizeof(url), body + len, per - 8);
        len += strlen(body + len);
    }
    snprintf(url, sizeof(url), "%s/_apply", c->put_api);
    int status = 0, rc = SIM_OK;
    uint64_t t0 = sim_now_ns();
    if (http(c, "POST", url, body, &status, NULL, w->err, sizeof(w->err)) < 0 || status >= 300)
        rc = SIM_UNEXPECTED;
    uint64_t t1 = sim_now_ns();
    for (size_t i = first; i <= last; i++) {
        w->t_sent[i] = t0;
        w->t_ack[i] = t1;
    }
    free(body);
    return rc;
}

/* Standing policy j of --policies, as JSON: on service svc-<j mod
 * services>, alternately a MeshTrafficPermission letting the next service
 * in and a MeshTimeout of its outbounds' idle timeout (not the connection
 * timeout that --change timeout measures). */
static void policy_doc(const struct sim_cfg *c, size_t j, char *body, size_t bsize)
{
    size_t svc = j % (size_t)c->services, from = (svc + 1) % (size_t)c->services;
    if (j % 2 == 0)
        snprintf(body, bsize,
                 "{\"type\":\"MeshTrafficPermission\",\"mesh\":\"%s\",\"name\":\"dp-sim-policy-"
                 "%zu\",\"spec\":{\"targetRef\":{\"kind\":\"MeshService\",\"name\":\"svc-%zu\"},"
                 "\"from\":[{\"targetRef\":{\"kind\":\"MeshService\",\"name\":\"svc-%zu\"},"
                 "\"default\":{\"action\":\"Allow\"}}]}}",
                 c->mesh, j, svc, from);
    else
        snprintf(body, bsize,
                 "{\"type\":\"MeshTimeout\",\"mesh\":\"%s\",\"name\":\"dp-sim-policy-%zu\","
                 "\"spec\":{\"targetRef\":{\"kind\":\"MeshService\",\"name\":\"svc-%zu\"},"
                 "\"to\":[{\"targetRef\":{\"kind\":\"Mesh\"},\"default\":{\"idleTimeout\":"
                 "\"%zus\"}}]}}",
                 c->mesh, j, svc, 60 + j);
}

int sim_policies_apply(struct sim *s)
{
    const struct sim_cfg *c = s->cfg;
    size_t n = (size_t)c->policies, per = 600, size = n * per + 1;
    if (!n)
        return SIM_OK;
    char *body = malloc(size), url[1024], err[512];
    if (!body) {
        sim_out("error reason=out of memory for %zu policies", n);
        return SIM_UNEXPECTED;
    }
    size_t len = 0;
    for (size_t j = 0; j < n; j++) {
        if (len)
            len += (size_t)snprintf(body + len, size - len, "\n---\n");
        policy_doc(c, j, body + len, per - 8);
        len += strlen(body + len);
    }
    snprintf(url, sizeof(url), "%s/_apply", c->put_api);
    int status = 0, rc = SIM_OK;
    uint64_t t0 = sim_now_ns();
    if (http(c, "POST", url, body, &status, NULL, err, sizeof(err)) < 0 || status >= 300) {
        sim_out("error reason=cannot apply the standing policies: %s", err);
        rc = SIM_UNEXPECTED;
    } else {
        sim_out("policies n=%zu ms=%.1f", n, (double)(sim_now_ns() - t0) / 1e6);
    }
    free(body);
    return rc;
}

/* Waits on cv (holding mu) until woken or the deadline; false past it. */
static bool wait_until(struct writer *w, const struct timespec *deadline)
{
    return pthread_cond_timedwait(&w->cv, &w->mu, deadline) != ETIMEDOUT;
}

/* Whether every session has change last and the sessions of each service
 * agree on the policy digest (holding mu). *behind and *differ say how many
 * do not. */
static bool agree(const struct sim *s, long last, size_t *behind, size_t *differ)
{
    const struct writer *w = &s->w;
    size_t nsvc = (size_t)s->cfg->services;
    *behind = *differ = 0;
    for (size_t k = 0; k < w->n; k++) {
        *behind += w->seen[k] != last;
        *differ += w->digest[k] != w->digest[k % nsvc];
    }
    return !*behind && !*differ;
}

/* Distinct digests among the first sessions of each service (holding mu). */
static size_t states(const struct sim *s)
{
    const struct writer *w = &s->w;
    size_t nsvc = (size_t)s->cfg->services, d = 0;
    for (size_t k = 0; k < nsvc && k < w->n; k++) {
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = w->digest[j] == w->digest[k];
        d += !dup;
    }
    return d;
}

/* Waits until the sessions agree on change last (see agree) and prints
 * `converged`; with another round to come, starts watching reconnects
 * first, so a restart that follows the line is seen whole. */
static int converge(struct sim *s, size_t round, long last, const struct timespec *deadline,
                    bool more)
{
    struct writer *w = &s->w;
    uint64_t t0 = sim_now_ns();
    size_t behind = 0, differ = 0;
    int rc = SIM_OK;
    pthread_mutex_lock(&w->mu);
    while (!w->quit && !agree(s, last, &behind, &differ))
        if (!wait_until(w, deadline)) {
            snprintf(w->err, sizeof(w->err),
                     "round %zu: %zu of %zu sessions lack change %ld and %zu disagree with the "
                     "others of their service within --timeout",
                     round, behind, w->n, last, differ);
            rc = SIM_TIMEOUT;
            break;
        }
    if (rc == SIM_OK && !w->quit) {
        if (more) {
            w->watch_reconnect = true;
            w->nreconf = 0;
            memset(w->closed_since, 0, w->n * sizeof(*w->closed_since));
        }
        sim_out("converged round=%zu sessions=%zu change=%ld states=%zu digest=%016" PRIx64
                " ms=%.1f",
                round, w->n, last, states(s), w->digest[0], (double)(sim_now_ns() - t0) / 1e6);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Waits until every session closed and then got a config again. */
static int await_reconnect(struct sim *s, size_t round, const struct timespec *deadline)
{
    struct writer *w = &s->w;
    uint64_t t0 = sim_now_ns();
    int rc = SIM_OK;
    sim_out("waiting-for-reconnect round=%zu sessions=%zu", round, w->n);
    pthread_mutex_lock(&w->mu);
    while (!w->quit && w->nreconf < w->n)
        if (!wait_until(w, deadline)) {
            snprintf(w->err, sizeof(w->err),
                     "round %zu: %zu of %zu sessions reconnected and got a config within "
                     "--timeout",
                     round, w->nreconf, w->n);
            rc = SIM_TIMEOUT;
            break;
        }
    w->watch_reconnect = false;
    pthread_mutex_unlock(&w->mu);
    if (rc == SIM_OK)
        sim_out("reconnected round=%zu sessions=%zu ms=%.1f", round, w->n,
                (double)(sim_now_ns() - t0) / 1e6);
    return rc;
}

/* Applies change i and, unless bursting, waits for every session to have
 * it, measuring the bytes and the zone's CPU it cost. */
static int apply_change(struct sim *s, size_t i, const struct timespec *deadline)
{
    struct writer *w = &s->w;
    const struct sim_cfg *c = s->cfg;
    char url[1024], body[1200];
    change_doc(s, i, c->change_name, url, sizeof(url), body, sizeof(body));
    long cpu0 = zone_cpu_ms(c->zone_pid);
    pthread_mutex_lock(&w->mu);
    uint64_t bytes0 = w->bytes_total, configs0 = w->configs_total;
    pthread_mutex_unlock(&w->mu);
    int status = 0;
    w->t_sent[i] = sim_now_ns();
    if (http(c, "PUT", url, body, &status, NULL, w->err, sizeof(w->err)) < 0 || status >= 300)
        return SIM_UNEXPECTED;
    w->t_ack[i] = sim_now_ns();
    int rc = SIM_OK;
    pthread_mutex_lock(&w->mu);
    while (w->count[i] < w->n && !w->quit)
        if (!wait_until(w, deadline)) {
            snprintf(w->err, sizeof(w->err),
                     "change %zu reached %u of %zu sessions within --timeout", i, w->count[i],
                     w->n);
            rc = SIM_TIMEOUT;
            break;
        }
    w->bytes[i] = w->bytes_total - bytes0;
    w->configs[i] = w->configs_total - configs0;
    pthread_mutex_unlock(&w->mu);
    long cpu1 = zone_cpu_ms(c->zone_pid);
    w->cpu_ms[i] = cpu0 >= 0 && cpu1 >= cpu0 ? (uint64_t)(cpu1 - cpu0) : 0;
    if (c->trace && rc == SIM_OK)
        sim_out("change seq=%zu put_ms=%.1f all_ms=%.1f bytes=%" PRIu64 " configs=%" PRIu64, i,
                (double)(w->t_ack[i] - w->t_sent[i]) / 1e6,
                (double)(sim_now_ns() - w->t_ack[i]) / 1e6, w->bytes[i], w->configs[i]);
    return rc;
}

/* A burst's round: wait until every session has all of it; the bytes and CPU
 * of the round are shared out evenly between its changes. */
static int await_burst(struct sim *s, size_t first, size_t last, long cpu0, uint64_t bytes0,
                       uint64_t configs0, const struct timespec *deadline)
{
    struct writer *w = &s->w;
    int rc = SIM_OK;
    pthread_mutex_lock(&w->mu);
    while (w->count[last] < w->n && !w->quit)
        if (!wait_until(w, deadline)) {
            snprintf(w->err, sizeof(w->err),
                     "the burst's last change %zu reached %u of %zu sessions within --timeout",
                     last, w->count[last], w->n);
            rc = SIM_TIMEOUT;
            break;
        }
    uint64_t nb = last - first + 1, bytes = w->bytes_total - bytes0,
             configs = w->configs_total - configs0;
    pthread_mutex_unlock(&w->mu);
    if (atomic_load(&w->quit))
        return SIM_OK;
    long cpu1 = zone_cpu_ms(s->cfg->zone_pid);
    uint64_t cpu = cpu0 >= 0 && cpu1 >= cpu0 ? (uint64_t)(cpu1 - cpu0) : 0;
    for (size_t i = first; i <= last; i++) {
        w->bytes[i] = bytes / nb;
        w->configs[i] = configs / nb;
        w->cpu_ms[i] = cpu / nb;
    }
    if (rc == SIM_OK)
        sim_out("burst changes=%" PRIu64 " puts_ms=%.1f all_ms=%.1f bytes=%" PRIu64
                " configs=%" PRIu64 " zone_cpu_ms=%" PRIu64,
                nb, (double)(w->t_ack[last] - w->t_sent[first]) / 1e6,
                (double)(sim_now_ns() - w->t_sent[first]) / 1e6, bytes, configs, cpu);
    return rc;
}

static void *writer_main(void *ud)
{
    struct sim *s = ud;
    struct writer *w = &s->w;
    const struct sim_cfg *c = s->cfg;
    uint64_t end_ns = s->t_start + (uint64_t)c->timeout * 1000000u;
    struct timespec deadline = {.tv_sec = (time_t)(end_ns / 1000000000u),
                                .tv_nsec = (long)(end_ns % 1000000000u)};
    int rc = SIM_OK;
    for (size_t r = 0; r < w->rounds && rc == SIM_OK && !w->quit; r++) {
        size_t first = r * w->per_round, last = first + w->per_round - 1;
        if (r > 0 && (rc = await_reconnect(s, r + 1, &deadline)) != SIM_OK)
            break;
        if (r > 0 && (rc = converge(s, r + 1, (long)first - 1, &deadline, false)) != SIM_OK)
            break;
        long cpu0 = zone_cpu_ms(c->zone_pid);
        pthread_mutex_lock(&w->mu);
        uint64_t bytes0 = w->bytes_total, configs0 = w->configs_total;
        pthread_mutex_unlock(&w->mu);
        if (c->burst)
            rc = apply_burst(s, first, last);
        for (size_t i = first; !c->burst && i <= last && rc == SIM_OK && !w->quit; i++)
            rc = apply_change(s, i, &deadline);
        if (rc == SIM_OK && c->burst)
            rc = await_burst(s, first, last, cpu0, bytes0, configs0, &deadline);
        if (rc == SIM_OK)
            rc = converge(s, r + 1, (long)last, &deadline, r + 1 < w->rounds);
    }
    /* each change was done when its slowest session had it */
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->total; i++)
        for (size_t k = 0; k < w->n; k++)
            if (w->arrive[k * w->total + i] > w->t_done[i])
                w->t_done[i] = w->arrive[k * w->total + i];
    pthread_mutex_unlock(&w->mu);
    w->rc = w->quit ? SIM_OK : rc;
    atomic_store(&w->finished, true);
    uv_async_send(&w->async);
    return NULL;
}

/* ----- the report (loop thread, once the writer is done) ----- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(struct sim *s)
{
    struct writer *w = &s->w;
    size_t m = w->total, n = w->n;
    int64_t *each = malloc((m * n + 1) * sizeof(int64_t));
    int64_t *last = malloc((m + 1) * sizeof(int64_t));
    uint64_t *u = malloc((m + 1) * sizeof(uint64_t));
    if (!each || !last || !u) {
        sim_out("error reason=out of memory for the statistics");
        goto out_free;
    }
    /* from the PUT's answer (what a user waits for after apply), and from
     * its sending (an upper bound when the zone pushes before answering) */
    for (int from_sent = 0; from_sent < 2; from_sent++) {
        size_t ne = 0;
        for (size_t i = 0; i < m; i++) {
            int64_t t0 = (int64_t)(from_sent ? w->t_sent[i] : w->t_ack[i]);
            for (size_t k = 0; k < n; k++)
                each[ne++] = (int64_t)w->arrive[k * m + i] - t0;
            last[i] = (int64_t)w->t_done[i] - t0;
        }
        sim_print_latency("each-session", from_sent ? "sent" : "ack", n, each, ne);
        sim_print_latency("all-sessions", from_sent ? "sent" : "ack", n, last, m);
    }
    for (size_t i = 0; i < m; i++)
        last[i] = (int64_t)(w->t_ack[i] - w->t_sent[i]);
    sim_print_latency("put", "sent", n, last, m);
    double sum = 0, csum = 0;
    for (size_t i = 0; i < m; i++) {
        u[i] = w->bytes[i];
        sum += (double)w->bytes[i];
        csum += (double)w->configs[i];
    }
    qsort(u, m, sizeof(*u), cmp_u64);
    sim_out("bytes what=per-change changes=%zu mean=%.0f p50=%" PRIu64 " max=%" PRIu64
            " configs_mean=%.1f per_session_mean=%.0f",
            m, sum / (double)m, u[(m - 1) / 2], u[m - 1], csum / (double)m,
            sum / (double)m / (double)(n ? n : 1));
    if (s->cfg->zone_pid > 0) {
        uint64_t cpu = 0;
        for (size_t i = 0; i < m; i++)
            cpu += w->cpu_ms[i];
        sim_out("zone-cpu pid=%lld changes=%zu total_ms=%" PRIu64 " per_change_ms=%.2f",
                (long long)s->cfg->zone_pid, m, cpu, (double)cpu / (double)m);
    }
out_free:
    free(each);
    free(last);
    free(u);
}

static void on_writer(uv_async_t *a)
{
    struct sim *s = a->data;
    struct writer *w = &s->w;
    if (!atomic_load(&w->finished) || s->writer_reported)
        return;
    pthread_join(w->th, NULL);
    w->running = false;
    s->writer_reported = true;
    if (w->rc != SIM_OK) {
        char text[600];
        sim_out("writer-failed reason=%s", sim_clean(w->err, text, sizeof(text)));
        sim_finish(s, w->rc);
        return;
    }
    report(s);
    sim_on_writer_done(s);
}

/* ----- the loop's side ----- */

void sim_writer_config(struct sim *s, size_t k, long idx, uint64_t digest, size_t bytes)
{
    struct writer *w = &s->w;
    uint64_t now = sim_now_ns();
    pthread_mutex_lock(&w->mu);
    w->bytes_total += bytes;
    w->configs_total++;
    /* a config with change idx was issued after every change up to it */
    for (long i = idx < (long)w->total ? idx : (long)w->total - 1; i >= 0; i--) {
        uint64_t *a = &w->arrive[k * w->total + (size_t)i];
        if (*a)
            break; /* and every one before it was marked then */
        *a = now;
        w->count[i]++;
    }
    w->seen[k] = idx;
    w->digest[k] = digest;
    if (w->watch_reconnect && w->closed_since[k] == 1) {
        w->closed_since[k] = 2;
        w->nreconf++;
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void sim_writer_closed(struct sim *s, size_t k)
{
    struct writer *w = &s->w;
    pthread_mutex_lock(&w->mu);
    if (w->watch_reconnect && w->closed_since[k] == 0)
        w->closed_since[k] = 1;
    pthread_mutex_unlock(&w->mu);
}

int sim_writer_start(struct sim *s)
{
    struct writer *w = &s->w;
    const struct sim_cfg *c = s->cfg;
    w->n = s->n;
    w->per_round = (size_t)c->changes;
    w->rounds = 1 + (size_t)c->restarts;
    w->total = w->per_round * w->rounds;
    w->count = calloc(w->total, sizeof(*w->count));
    w->arrive = calloc(w->n * w->total + 1, sizeof(*w->arrive));
    w->seen = malloc((w->n + 1) * sizeof(*w->seen));
    w->digest = calloc(w->n + 1, sizeof(*w->digest));
    w->closed_since = calloc(w->n + 1, sizeof(*w->closed_since));
    w->t_sent = calloc(w->total, sizeof(uint64_t));
    w->t_ack = calloc(w->total, sizeof(uint64_t));
    w->t_done = calloc(w->total, sizeof(uint64_t));
    w->bytes = calloc(w->total, sizeof(uint64_t));
    w->configs = calloc(w->total, sizeof(uint64_t));
    w->cpu_ms = calloc(w->total, sizeof(uint64_t));
    if (!w->count || !w->arrive || !w->seen || !w->digest || !w->closed_since || !w->t_sent ||
        !w->t_ack || !w->t_done || !w->bytes || !w->configs || !w->cpu_ms) {
        sim_out("error reason=out of memory for %zu sessions x %zu changes", w->n, w->total);
        return SIM_UNEXPECTED;
    }
    for (size_t k = 0; k < w->n; k++)
        w->seen[k] = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    uv_async_init(s->loop, &w->async, on_writer);
    w->async.data = s;
    w->async_init = true;
    s->has_writer = true; /* before the thread: its first change may come back at once */
    if (pthread_create(&w->th, NULL, writer_main, s) != 0) {
        sim_out("error reason=cannot start the writer thread");
        return SIM_UNEXPECTED;
    }
    w->running = true;
    return SIM_OK;
}

void sim_writer_stop(struct sim *s)
{
    struct writer *w = &s->w;
    if (w->running) {
        pthread_mutex_lock(&w->mu);
        w->quit = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->th, NULL); /* at most one HTTP timeout */
        w->running = false;
    }
    if (w->async_init)
        uv_close((uv_handle_t *)&w->async, NULL);
}

void sim_writer_free(struct sim *s)
{
    struct writer *w = &s->w;
    if (w->async_init) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    free(w->count);
    free(w->arrive);
    free(w->seen);
    free(w->digest);
    free(w->closed_since);
    free(w->t_sent);
    free(w->t_ack);
    free(w->t_done);
    free(w->bytes);
    free(w->configs);
    free(w->cpu_ms);
}
