/* The zone-speaking modes of hypha-kds-probe: silent-hello (one zone that
 * never acks) and zones (N zones in one process on one loop, each its own
 * websocket client, acking every Changes without storing it). With
 * --put-api a writer thread PUTs policies on the global CP one at a time,
 * and each arrival at a zone is timed against the moment the API answered
 * that PUT: one process, one monotonic clock, so no clocks to reconcile.
 * With --resources each zone also sends its copies of them up (--copies,
 * --batch, one Changes in flight), as a zone with that many Dataplanes. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "http_client.h"
#include "kds_probe.h"
#include "poison.h"

struct zones;

struct zone {
    struct zones *zs;
    struct hy_ws_client *ws;
    size_t k; /* index in zs->v */
    char name[96];
    char *token;
    bool ever_open, welcomed, rejected, synced;
    uint64_t acked; /* `to` of the last Changes acked: a reconnect resumes from it */
    uint64_t messages, upserts, deletes, disconnects;
    uint64_t t_open, t_welcome;
    uv_timer_t ack_timer; /* --ack-delay */
    uint64_t ack_to;
    /* --resources going up: next copy index, the batch in flight (0: none) */
    uint64_t up_next, up_seq, up_in_flight, up_refused;
    bool uploaded;
};

/* The PUTs and their times. The loop thread records arrivals under mu; the
 * writer thread waits on cv for each change to reach every zone. */
struct writer {
    pthread_t th;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;                         /* mu: stop now */
    unsigned *count;                   /* mu: zones that received change i */
    uint64_t *arrive;                  /* mu: [zone * total + i], ns; 0 = not yet */
    uint64_t *t_sent, *t_ack, *t_real; /* writer thread's until `finished` */
    size_t total, warmup;
    atomic_bool finished; /* the writer thread is done (err says why if it failed) */
    int rc;
    char err[400];
    uv_async_t async; /* writer -> loop: finished */
    bool async_init;
};

struct zones {
    struct probe *p;
    struct zone *v;
    size_t n;
    size_t nsynced;
    bool never_ack; /* silent-hello */
    bool has_writer, writer_reported;
    bool goal;
    struct writer w;
    struct hy_docs docs; /* --resources */
    uint64_t up_total;   /* per zone: docs x copies; 0: nothing goes up */
    size_t nuploaded;
};

static bool writer_wanted(const struct probe_cfg *c, enum probe_mode mode)
{
    return mode == MODE_ZONES && c->put_api;
}

/* ----- goal ----- */

bool probe_zones_goal_reached(const struct probe *p)
{
    const struct zones *zs = p->zones;
    return zs && zs->goal;
}

static void check_goal(struct zones *zs)
{
    const struct probe_cfg *c = zs->p->cfg;
    if (zs->goal || zs->p->finished)
        return;
    size_t welcomed = 0;
    for (size_t i = 0; i < zs->n; i++)
        welcomed += zs->v[i].welcomed || zs->v[i].synced;
    if (welcomed < zs->n)
        return;
    if (c->expect_name && zs->nsynced < zs->n)
        return;
    if (zs->up_total && zs->nuploaded < zs->n)
        return;
    if (zs->has_writer && !zs->writer_reported)
        return;
    zs->goal = true;
    probe_out("done zones=%zu ms=%" PRIu64, zs->n, (probe_now_ns() - zs->p->t_start) / 1000000u);
    if (zs->p->mode == MODE_ZONES && !c->hold)
        probe_finish(zs->p, PROBE_OK);
}

/* ----- the writer thread ----- */

static void put_name(const struct probe_cfg *c, size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "%s%06zu", c->name_prefix, i);
}

/* Index of a PUT policy from its name, or -1. */
static long name_index(const struct probe_cfg *c, const char *name, size_t total)
{
    size_t pl = strlen(c->name_prefix);
    if (!name || strncmp(name, c->name_prefix, pl) != 0)
        return -1;
    const char *d = name + pl;
    char *end;
    if (*d < '0' || *d > '9')
        return -1;
    unsigned long v = strtoul(d, &end, 10);
    return *end || v >= total ? -1 : (long)v;
}

static int http(const char *method, const char *url, const char *body, int *status, char *err,
                size_t errsize)
{
    const struct hy_httpc_header hdr[] = {{"Content-Type", "application/json"}};
    struct hy_httpc_request req = {.method = method,
                                   .url = url,
                                   .headers = hdr,
                                   .nheaders = body ? 1 : 0,
                                   .body = body,
                                   .body_len = body ? strlen(body) : 0};
    struct hy_httpc_options o = {
        .connect_timeout_ms = 5000, .timeout_ms = 10000, .user_agent = "hypha-kds-probe"};
    struct hy_httpc_response resp = {0};
    int rc = hy_httpc_request(&o, &req, &resp, err, errsize);
    if (rc == 0) {
        *status = resp.status;
        if (resp.status >= 300)
            snprintf(err, errsize, "%.8s %.250s: HTTP %d %.100s", method, url, resp.status,
                     resp.body.data ? resp.body.data : "");
    }
    hy_httpc_response_fini(&resp);
    return rc;
}

/* Waits (holding mu) until cond or quit or the deadline; false past it. */
static bool wait_until(struct writer *w, const struct timespec *deadline)
{
    return pthread_cond_timedwait(&w->cv, &w->mu, deadline) != ETIMEDOUT;
}

static void *writer_main(void *ud)
{
    struct zones *zs = ud;
    struct writer *w = &zs->w;
    const struct probe_cfg *c = zs->p->cfg;
    uint64_t end_ns = zs->p->t_start + (uint64_t)c->timeout * 1000000u;
    struct timespec deadline = {.tv_sec = (time_t)(end_ns / 1000000000u),
                                .tv_nsec = (long)(end_ns % 1000000000u)};
    char name[256], url[1024], body[1024];
    int rc = PROBE_OK;
    for (size_t i = 0; i < w->total && rc == PROBE_OK; i++) {
        put_name(c, i, name, sizeof(name));
        snprintf(url, sizeof(url), "%s/meshes/%s/meshtrafficpermissions/%s", c->put_api, c->mesh,
                 name);
        snprintf(body, sizeof(body),
                 "{\"type\":\"MeshTrafficPermission\",\"mesh\":\"%s\",\"name\":\"%s\",\"spec\":"
                 "{\"targetRef\":{\"kind\":\"Mesh\"},\"from\":[{\"targetRef\":{\"kind\":\"Mesh\"},"
                 "\"default\":{\"action\":\"Allow\"}}]}}",
                 c->mesh, name);
        int status = 0;
        w->t_sent[i] = probe_now_ns();
        if (http("PUT", url, body, &status, w->err, sizeof(w->err)) < 0 || status >= 300) {
            rc = PROBE_UNEXPECTED;
            break;
        }
        w->t_ack[i] = probe_now_ns();
        pthread_mutex_lock(&w->mu);
        while (w->count[i] < zs->n && !w->quit)
            if (!wait_until(w, &deadline)) {
                snprintf(w->err, sizeof(w->err), "%s reached %u of %zu zones within --timeout",
                         name, w->count[i], zs->n);
                rc = PROBE_TIMEOUT;
                break;
            }
        bool quit = w->quit;
        pthread_mutex_unlock(&w->mu);
        if (quit || rc != PROBE_OK)
            break;
        if (c->zone_api) {
            /* poll the real zone until it has it: the arrival is taken when
             * the answer that finds it comes back (an upper bound, off by at
             * most one poll's round trip) */
            snprintf(url, sizeof(url), "%s/meshes/%s/meshtrafficpermissions/%s", c->zone_api,
                     c->mesh, name);
            for (;;) {
                if (http("GET", url, NULL, &status, w->err, sizeof(w->err)) < 0) {
                    rc = PROBE_UNEXPECTED;
                    break;
                }
                if (status == 200) {
                    w->t_real[i] = probe_now_ns();
                    w->err[0] = '\0';
                    break;
                }
                if (status != 404) {
                    rc = PROBE_UNEXPECTED;
                    break;
                }
                if (probe_now_ns() > end_ns) {
                    snprintf(w->err, sizeof(w->err), "%s not in the zone at %s within --timeout",
                             name, c->zone_api);
                    rc = PROBE_TIMEOUT;
                    break;
                }
                pthread_mutex_lock(&w->mu);
                quit = w->quit;
                pthread_mutex_unlock(&w->mu);
                if (quit)
                    break;
            }
            if (quit)
                break;
        }
        if (c->put_interval > 0 && rc == PROBE_OK) {
            uint64_t t = probe_now_ns() + (uint64_t)c->put_interval * 1000000u;
            struct timespec until = {.tv_sec = (time_t)(t / 1000000000u),
                                     .tv_nsec = (long)(t % 1000000000u)};
            pthread_mutex_lock(&w->mu);
            while (!w->quit && wait_until(w, &until))
                ;
            pthread_mutex_unlock(&w->mu);
        }
    }
    w->rc = rc;
    atomic_store(&w->finished, true);
    uv_async_send(&w->async);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double pct(const int64_t *v, size_t n, double p)
{
    size_t r = (size_t)(p / 100.0 * (double)n + 0.999999);
    return (double)v[(r ? r : 1) - 1] / 1000.0;
}

static void print_stats(const char *what, const char *from, size_t zones, int64_t *v, size_t n)
{
    if (!n) {
        probe_out("latency what=%s from=%s zones=%zu n=0", what, from, zones);
        return;
    }
    qsort(v, n, sizeof(*v), cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    probe_out("latency what=%s from=%s zones=%zu n=%zu min_us=%.1f p50_us=%.1f p90_us=%.1f "
              "p99_us=%.1f max_us=%.1f mean_us=%.1f",
              what, from, zones, n, (double)v[0] / 1000.0, pct(v, n, 50), pct(v, n, 90),
              pct(v, n, 99), (double)v[n - 1] / 1000.0, sum / (double)n / 1000.0);
}

/* Latencies of the measured changes, from the moment the PUT was sent
 * (from_sent) or answered: each (change, zone), the slowest zone of each
 * change (last), the real zone (real). Returns the number in each. */
static size_t collect(const struct zones *zs, bool from_sent, int64_t *each, int64_t *last,
                      int64_t *real)
{
    const struct writer *w = &zs->w;
    size_t ne = 0;
    for (size_t i = w->warmup; i < w->total; i++) {
        int64_t t0 = (int64_t)(from_sent ? w->t_sent[i] : w->t_ack[i]), worst = INT64_MIN;
        for (size_t z = 0; z < zs->n; z++) {
            int64_t d = (int64_t)w->arrive[z * w->total + i] - t0;
            each[ne++] = d;
            worst = d > worst ? d : worst;
        }
        last[i - w->warmup] = worst;
        real[i - w->warmup] = (int64_t)w->t_real[i] - t0;
    }
    return ne;
}

/* Every sample, one line per (change, zone), to --arrivals. */
static void write_samples(const struct zones *zs, const char *path)
{
    const struct writer *w = &zs->w;
    FILE *f = fopen(path, "w");
    if (!f) {
        probe_out("error reason=%s: %s", path, strerror(errno));
        return;
    }
    fprintf(f,
            "# seq\tzone\tput_us\tfrom_ack_us\tfrom_sent_us\tsent_ms (since the probe started)\n");
    for (size_t i = w->warmup; i < w->total; i++) {
        double put = (double)(w->t_ack[i] - w->t_sent[i]) / 1000.0;
        double at = (double)(w->t_sent[i] - zs->p->t_start) / 1e6;
        for (size_t z = 0; z <= zs->n; z++) {
            bool real = z == zs->n;
            if (real && !zs->p->cfg->zone_api)
                break;
            int64_t a = (int64_t)(real ? w->t_real[i] : w->arrive[z * w->total + i]);
            fprintf(f, "%zu\t%s\t%.1f\t%.1f\t%.1f\t%.3f\n", i, real ? "real" : zs->v[z].name, put,
                    (double)(a - (int64_t)w->t_ack[i]) / 1000.0,
                    (double)(a - (int64_t)w->t_sent[i]) / 1000.0, at);
        }
    }
    if (fclose(f) != 0)
        probe_out("error reason=%s: %s", path, strerror(errno));
}

/* The writer is done: percentiles of the measured changes, and the samples. */
static void report(struct zones *zs)
{
    struct writer *w = &zs->w;
    const struct probe_cfg *c = zs->p->cfg;
    size_t m = w->total - w->warmup, n = zs->n;
    int64_t *each = malloc((m * n + 1) * sizeof(int64_t));
    int64_t *last = malloc((m + 1) * sizeof(int64_t));
    int64_t *real = malloc((m + 1) * sizeof(int64_t));
    if (!each || !last || !real) {
        probe_out("error reason=out of memory for the statistics");
        goto out_free;
    }
    for (int s = 0; s < 2; s++) {
        const char *from = s ? "sent" : "ack";
        size_t ne = collect(zs, s, each, last, real);
        if (n) {
            print_stats("each-zone", from, n, each, ne);
            print_stats("all-zones", from, n, last, m);
        }
        if (c->zone_api)
            print_stats("real-zone", from, 1, real, m);
    }
    for (size_t j = 0; j < m; j++)
        last[j] = (int64_t)(w->t_ack[w->warmup + j] - w->t_sent[w->warmup + j]);
    print_stats("put", "sent", n, last, m);
    if (c->arrivals)
        write_samples(zs, c->arrivals);
out_free:
    free(each);
    free(last);
    free(real);
}

static void on_writer(uv_async_t *a)
{
    struct zones *zs = a->data;
    struct writer *w = &zs->w;
    if (!atomic_load(&w->finished) || zs->writer_reported)
        return;
    pthread_join(w->th, NULL);
    w->running = false;
    zs->writer_reported = true;
    if (w->rc != PROBE_OK) {
        char text[400];
        probe_out("put-failed reason=%s", probe_clean(w->err, text, sizeof(text)));
        probe_finish(zs->p, w->rc);
        return;
    }
    if (w->total > w->warmup)
        report(zs);
    check_goal(zs);
}

static int writer_start(struct zones *zs)
{
    struct writer *w = &zs->w;
    const struct probe_cfg *c = zs->p->cfg;
    w->warmup = c->warmup ? (size_t)c->warmup : 1;
    w->total = w->warmup + (size_t)c->puts;
    if (zs->n * w->total > 50000000u) {
        probe_out("error reason=--zones x (--puts + --warmup) is over 50 million samples");
        return PROBE_USAGE;
    }
    w->count = calloc(w->total, sizeof(*w->count));
    w->arrive = calloc(zs->n * w->total + 1, sizeof(*w->arrive));
    w->t_sent = calloc(w->total, sizeof(uint64_t));
    w->t_ack = calloc(w->total, sizeof(uint64_t));
    w->t_real = calloc(w->total, sizeof(uint64_t));
    if (!w->count || !w->arrive || !w->t_sent || !w->t_ack || !w->t_real)
        return PROBE_UNEXPECTED;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    uv_async_init(zs->p->loop, &w->async, on_writer);
    w->async.data = zs;
    w->async_init = true;
    if (pthread_create(&w->th, NULL, writer_main, zs) != 0) {
        probe_out("error reason=cannot start the writer thread");
        return PROBE_UNEXPECTED;
    }
    w->running = true;
    zs->has_writer = true;
    return PROBE_OK;
}

/* ----- one zone ----- */

static void send_ack(struct zone *z, uint64_t to)
{
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    Hypha__V1__Ack ack = HYPHA__V1__ACK__INIT;
    ack.has_to = 1;
    ack.to = to;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_ACK;
    m.ack = &ack;
    if (probe_send(hy_ws_client_conn(z->ws), &m) == 0)
        z->acked = to;
}

static void on_ack_timer(uv_timer_t *t)
{
    struct zone *z = t->data;
    if (z->welcomed)
        send_ack(z, z->ack_to);
}

static void on_changes(struct zone *z, const Hypha__V1__Changes *c)
{
    struct zones *zs = z->zs;
    const struct probe_cfg *cfg = zs->p->cfg;
    uint64_t now = probe_now_ns();
    z->messages++;
    z->upserts += c->n_upserts;
    z->deletes += c->n_deletes;
    if (zs->has_writer) {
        struct writer *w = &zs->w;
        bool wake = false;
        pthread_mutex_lock(&w->mu);
        for (size_t i = 0; i < c->n_upserts; i++) {
            const Hypha__V1__Meta *meta = c->upserts[i]->meta;
            long idx = meta ? name_index(cfg, meta->name, w->total) : -1;
            if (idx < 0 || w->arrive[z->k * w->total + (size_t)idx])
                continue;
            w->arrive[z->k * w->total + (size_t)idx] = now;
            wake |= ++w->count[idx] == zs->n;
        }
        if (wake)
            pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    if (cfg->expect_name && !z->synced)
        for (size_t i = 0; i < c->n_upserts; i++) {
            const Hypha__V1__Meta *meta = c->upserts[i]->meta;
            if (!meta || !meta->name || strcmp(meta->name, cfg->expect_name) != 0)
                continue;
            z->synced = true;
            zs->nsynced++;
            probe_out("synced zone=%s ms_since_open=%.1f ms_since_welcome=%.1f upserts=%" PRIu64
                      " messages=%" PRIu64,
                      z->name, (double)(now - z->t_open) / 1e6, (double)(now - z->t_welcome) / 1e6,
                      z->upserts, z->messages);
            break;
        }
    if (cfg->trace || zs->never_ack)
        probe_out("changes zone=%s from=%" PRIu64 " to=%" PRIu64 " upserts=%zu deletes=%zu "
                  "snapshot=%d acked=%s",
                  z->name, c->from, c->to, c->n_upserts, c->n_deletes, c->snapshot ? 1 : 0,
                  zs->never_ack ? "never" : "yes");
    if (zs->never_ack)
        return;
    if (cfg->ack_delay > 0) {
        z->ack_to = c->to;
        uv_timer_start(&z->ack_timer, on_ack_timer, (uint64_t)cfg->ack_delay, 0);
    } else {
        send_ack(z, c->to);
    }
    check_goal(zs);
}

/* ----- one zone's resources going up ----- */

/* The next --batch of the zone's copies, or the end of its upload. */
static void upload_next(struct zone *z)
{
    struct zones *zs = z->zs;
    const struct probe_cfg *c = zs->p->cfg;
    if (z->up_next >= zs->up_total) {
        if (!z->uploaded) {
            z->uploaded = true;
            zs->nuploaded++;
            uint64_t now = probe_now_ns();
            probe_out("uploaded zone=%s resources=%" PRIu64 " refused=%" PRIu64
                      " ms_since_welcome=%.1f ms=%" PRIu64,
                      z->name, zs->up_total, z->up_refused, (double)(now - z->t_welcome) / 1e6,
                      (now - zs->p->t_start) / 1000000u);
            check_goal(zs);
        }
        return;
    }
    size_t max = c->batch ? (size_t)c->batch : 500;
    Hypha__V1__Changes ch = HYPHA__V1__CHANGES__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    if (!(ch.upserts = calloc(max, sizeof(*ch.upserts)))) {
        probe_out("error zone=%s reason=out of memory", z->name);
        probe_finish(zs->p, PROBE_UNEXPECTED);
        return;
    }
    while (z->up_next < zs->up_total && ch.n_upserts < max) {
        uint64_t i = z->up_next++;
        Hypha__V1__Envelope *env =
            probe_envelope(c, zs->docs.v[i % zs->docs.n].res, i / zs->docs.n);
        if (env)
            ch.upserts[ch.n_upserts++] = env;
    }
    ch.has_from = ch.has_to = 1;
    ch.from = z->up_seq;
    ch.to = z->up_in_flight = ++z->up_seq;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_CHANGES;
    m.changes = &ch;
    probe_send(hy_ws_client_conn(z->ws), &m);
    for (size_t i = 0; i < ch.n_upserts; i++)
        hypha__v1__envelope__free_unpacked(ch.upserts[i], NULL);
    free(ch.upserts);
}

static void on_up_ack(struct zone *z, const Hypha__V1__Ack *a)
{
    char t[100], n[300], why[300];
    if (!a->has_to || a->to != z->up_in_flight)
        return;
    z->up_in_flight = 0;
    for (size_t i = 0; i < a->n_refused; i++) {
        const Hypha__V1__Refused *f = a->refused[i];
        if (z->up_refused++ < 5)
            probe_out("refused zone=%s type=%s name=%s reason=%s", z->name,
                      probe_clean(f->key ? f->key->type : "", t, sizeof(t)),
                      probe_clean(f->key ? f->key->name : "", n, sizeof(n)),
                      probe_clean(f->reason, why, sizeof(why)));
    }
    upload_next(z);
}

static void zone_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct zone *z = ud;
    (void)peer;
    z->ever_open = true;
    z->t_open = probe_now_ns();
    z->welcomed = false;
    Hypha__V1__Hello h = HYPHA__V1__HELLO__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    char instance[64];
    snprintf(instance, sizeof(instance), "kds-probe-%ld-%zu", (long)getpid(), z->k);
    h.zone = z->name;
    h.version = "kds-probe";
    h.token = z->token;
    h.has_acked_global_revision = 1;
    h.acked_global_revision = z->acked;
    h.instance_id = instance;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_HELLO;
    m.hello = &h;
    probe_send(c, &m);
}

static void zone_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct zone *z = ud;
    char text[256];
    (void)c;
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, len, data);
    if (!m) {
        probe_out("message zone=%s type=malformed bytes=%zu", z->name, len);
        return;
    }
    switch (m->msg_case) {
    case HYPHA__V1__KDS_MESSAGE__MSG_WELCOME:
        z->welcomed = true;
        z->t_welcome = probe_now_ns();
        probe_out("welcome zone=%s ms=%" PRIu64, z->name,
                  (z->t_welcome - z->zs->p->t_start) / 1000000u);
        if (z->zs->up_total && !z->uploaded) { /* (again, after a reconnect) */
            z->up_next = 0;
            upload_next(z);
        }
        check_goal(z->zs);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_ACK:
        on_up_ack(z, m->ack);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_NACK:
        probe_out("nack zone=%s to=%" PRIu64 " error=%s", z->name, m->nack->to,
                  probe_clean(m->nack->error, text, sizeof(text)));
        probe_finish(z->zs->p, PROBE_UNEXPECTED);
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_REJECT:
        z->rejected = true;
        probe_out("reject zone=%s reason=%s", z->name,
                  probe_clean(m->reject->reason, text, sizeof(text)));
        break;
    case HYPHA__V1__KDS_MESSAGE__MSG_CHANGES:
        if (z->welcomed)
            on_changes(z, m->changes);
        break;
    default: /* nothing of ours goes up, so no Ack or Nack comes down */
        if (z->zs->p->cfg->trace)
            probe_out("message zone=%s type=%d bytes=%zu", z->name, (int)m->msg_case, len);
    }
    hypha__v1__kds_message__free_unpacked(m, NULL);
}

static void zone_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct zone *z = ud;
    struct probe *p = z->zs->p;
    char text[HY_WS_REASON_MAX + 1];
    (void)c;
    if (p->finished)
        return;
    probe_clean(reason, text, sizeof(text));
    if (!z->ever_open) {
        probe_out("connect-failed zone=%s reason=%s", z->name, text);
        probe_finish(p, PROBE_NOCONNECT);
        return;
    }
    if (z->welcomed || z->rejected) /* not the failed attempts of a reconnect */
        z->disconnects++;
    z->welcomed = false;
    uv_timer_stop(&z->ack_timer);
    probe_out("close zone=%s code=%d disconnects=%" PRIu64 " reason=%s", z->name, code,
              z->disconnects, text);
    if (z->rejected || p->mode == MODE_SILENT_HELLO)
        probe_finish(p, PROBE_UNEXPECTED);
}

/* ----- lifecycle ----- */

int probe_zones_start(struct probe *p)
{
    const struct probe_cfg *c = p->cfg;
    struct zones *zs = calloc(1, sizeof(*zs));
    if (!zs)
        return PROBE_UNEXPECTED;
    p->zones = zs;
    zs->p = p;
    zs->never_ack = p->mode == MODE_SILENT_HELLO;
    zs->n = p->mode == MODE_SILENT_HELLO ? 1 : (size_t)c->zones;
    if (p->mode == MODE_ZONES && c->resources) {
        int rc = probe_load_resources(c->resources, &zs->docs);
        if (rc != PROBE_OK)
            return rc;
        zs->up_total = zs->docs.n * (c->copies ? c->copies : 1);
    }
    zs->v = calloc(zs->n ? zs->n : 1, sizeof(*zs->v));
    if (!zs->v)
        return PROBE_UNEXPECTED;
    for (size_t i = 0; i < zs->n; i++) {
        struct zone *z = &zs->v[i];
        z->zs = zs;
        z->k = i;
        uv_timer_init(p->loop, &z->ack_timer);
        z->ack_timer.data = z;
        char path[4096];
        if (p->mode == MODE_SILENT_HELLO) {
            snprintf(z->name, sizeof(z->name), "%s", c->zone);
            snprintf(path, sizeof(path), "%s", c->token_file);
        } else {
            snprintf(z->name, sizeof(z->name), "%s%" PRIu64, c->zone_prefix, c->first_zone + i);
            snprintf(path, sizeof(path), "%s/%s.token", c->token_dir, z->name);
        }
        if (!(z->token = probe_read_token(path))) {
            probe_out("error zone=%s reason=%s: cannot read the token: %s", z->name, path,
                      strerror(errno));
            return PROBE_USAGE;
        }
    }
    /* the writer first: arrivals may come as soon as the zones connect */
    if (writer_wanted(c, p->mode)) {
        int rc = writer_start(zs);
        if (rc != PROBE_OK)
            return rc;
    }
    for (size_t i = 0; i < zs->n; i++) {
        struct zone *z = &zs->v[i];
        struct hy_ws_client_config wc =
            probe_ws_config(p, (struct hy_ws_callbacks){zone_open, zone_message, zone_close}, z);
        if (hy_ws_client_new(&wc, &z->ws) < 0) {
            probe_out("error zone=%s reason=cannot create the websocket client (see the log)",
                      z->name);
            return PROBE_USAGE;
        }
    }
    check_goal(zs); /* --zones 0: nothing to wait for but the writer */
    return PROBE_OK;
}

void probe_zones_stop(struct probe *p)
{
    struct zones *zs = p->zones;
    if (!zs)
        return;
    struct writer *w = &zs->w;
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
    for (size_t i = 0; i < zs->n; i++) {
        if (zs->v[i].ws)
            hy_ws_client_stop(zs->v[i].ws);
        if (zs->v[i].ack_timer.data)
            uv_close((uv_handle_t *)&zs->v[i].ack_timer, NULL);
    }
    uint64_t disconnects = 0;
    for (size_t i = 0; i < zs->n; i++)
        disconnects += zs->v[i].disconnects;
    probe_out("zones n=%zu disconnects=%" PRIu64, zs->n, disconnects);
}

void probe_zones_free(struct probe *p)
{
    struct zones *zs = p->zones;
    if (!zs)
        return;
    for (size_t i = 0; i < zs->n; i++) {
        hy_ws_client_free(zs->v[i].ws);
        free(zs->v[i].token);
    }
    struct writer *w = &zs->w;
    if (w->async_init) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    free(w->count);
    free(w->arrive);
    free(w->t_sent);
    free(w->t_ack);
    free(w->t_real);
    hy_docs_fini(&zs->docs);
    free(zs->v);
    free(zs);
    p->zones = NULL;
}
