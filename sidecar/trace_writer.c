/* MeshTrace's writer thread (trace.h): workers queue finished spans under
 * a lock (bounded: a full queue drops and counts); the writer takes up to
 * a batch at a time (at once when a batch is full, else after
 * HY_TRACE_FLUSH_MS), encodes it for the backend of the newest config and
 * POSTs it, each step bounded by HY_TRACE_IO_TIMEOUT_MS. A dead or slow
 * collector holds up only this thread: it backs off (jittered,
 * exponential, capped), spans pile up to the bound, and the rest are
 * counted as dropped. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "trace_int.h"
#include "validate.h"
#include "poison.h"

struct hy_trace {
    pthread_mutex_t lock; /* everything up to `thread` */
    pthread_cond_t cond;
    struct hy_trace_span *head, *tail;
    size_t n;
    bool stop;
    bool otlp;         /* the backend of the newest span queued: OTLP, else Zipkin */
    char target[1100]; /* Zipkin url, or OTLP host:port */
    pthread_t thread;
    bool started;
    /* the writer's own */
    struct hy_series *full, *failed, *sent;
    uint64_t backoff_ms, rng;
    bool failing;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void hy_trace_queue(struct hy_trace *t, const Hypha__V1__DpTrace *conf, struct hy_trace_span *s)
{
    bool otlp = conf->type && !strcmp(conf->type, "OpenTelemetry");
    const char *target = otlp ? conf->endpoint : conf->url;
    pthread_mutex_lock(&t->lock);
    if (t->n >= HY_TRACE_QUEUE_SPANS || t->stop || !target) {
        pthread_mutex_unlock(&t->lock);
        free(s);
        hy_series_inc(t->full);
        return;
    }
    if (t->otlp != otlp || strcmp(t->target, target) != 0) {
        t->otlp = otlp;
        snprintf(t->target, sizeof(t->target), "%s", target);
    }
    s->next = NULL;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    if (++t->n == HY_TRACE_BATCH_SPANS || t->n == 1)
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* ----- one POST ----- */

static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {fd, ev, 0};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -errno;
        if (rc > 0)
            return 0;
    }
}

/* POSTs body to host:port path; 0 on a 2xx answer, else < 0 with why. */
static int post(const char *host, unsigned port, const char *path, const char *ctype,
                const struct hy_buf *body, char *why, size_t size)
{
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g != 0) {
        snprintf(why, size, "cannot resolve %s: %s", host, gai_strerror(g));
        return HY_EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -errno : 0;
    uint64_t deadline = mono_ms() + HY_TRACE_IO_TIMEOUT_MS;
    if (rc == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
        int err = 0;
        socklen_t len = sizeof(err);
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
            rc = -err;
    }
    freeaddrinfo(ai);
    if (rc < 0) {
        snprintf(why, size, "cannot connect: %s", strerror(-rc));
        goto out_close;
    }
    struct hy_buf req = {0};
    if (hy_buf_printf(&req,
                      "POST %s HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\nUser-Agent: hypha-dp\r\n\r\n",
                      path, host, port, ctype, body->len) < 0 ||
        hy_buf_append(&req, body->data, body->len) < 0) {
        hy_buf_fini(&req);
        snprintf(why, size, "out of memory");
        rc = HY_ENOMEM;
        goto out_close;
    }
    deadline = mono_ms() + HY_TRACE_IO_TIMEOUT_MS;
    for (size_t off = 0; rc == 0 && off < req.len;) {
        ssize_t n = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            rc = wait_fd(fd, POLLOUT, deadline);
        else if (n < 0 && errno != EINTR)
            rc = -errno;
    }
    hy_buf_fini(&req);
    if (rc < 0) {
        snprintf(why, size, "cannot send: %s", strerror(-rc));
        goto out_close;
    }
    char ans[64];
    size_t got = 0;
    deadline = mono_ms() + HY_TRACE_IO_TIMEOUT_MS;
    while (rc == 0 && got < 12) { /* "HTTP/1.1 200" */
        ssize_t n = recv(fd, ans + got, sizeof(ans) - 1 - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            rc = -ECONNRESET;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_fd(fd, POLLIN, deadline);
        else if (errno != EINTR)
            rc = -errno;
    }
    if (rc < 0) {
        snprintf(why, size, "no answer: %s", strerror(-rc));
        goto out_close;
    }
    ans[got] = 0;
    if (strncmp(ans, "HTTP/1.", 7) != 0 || ans[9] != '2') {
        char *eol = strpbrk(ans, "\r\n");
        if (eol)
            *eol = 0;
        snprintf(why, size, "the collector answered \"%.40s\"", ans);
        rc = HY_EINVAL;
    }
out_close:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Sends a batch: true once the backend took it, false after a failure
 * (logged once until it recovers; t->backoff_ms grown). */
static bool send_batch(struct hy_trace *t, bool otlp, const char *target,
                       struct hy_trace_span *const *v, size_t n)
{
    char host[256], path[1100], why[300] = "";
    unsigned port = 0;
    struct hy_buf body = {0};
    int rc = 0;
    if (otlp) {
        const char *colon = strrchr(target, ':');
        snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - target) : 0, target);
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
            memmove(host, host + 1, strlen(host));
            host[strlen(host) - 1] = 0;
        }
        port = colon ? (unsigned)atoi(colon + 1) : 0;
        snprintf(path, sizeof(path), "/v1/traces");
        rc = hy_trace_otlp(&body, v, n);
    } else if (!hy_validate_trace_url(target, host, sizeof(host), &port, path, sizeof(path))) {
        snprintf(why, sizeof(why), "not an http:// URL");
        rc = HY_EINVAL;
    } else {
        rc = hy_trace_zipkin_json(&body, v, n);
    }
    if (rc == 0)
        rc = post(host, port, path, otlp ? "application/x-protobuf" : "application/json", &body,
                  why, sizeof(why));
    else if (!why[0])
        snprintf(why, sizeof(why), "out of memory encoding the spans");
    hy_buf_fini(&body);
    if (rc == 0) {
        hy_series_add(t->sent, (double)n);
        if (t->failing)
            hy_log(HY_LOG_INFO, "trace", "backend %s: sending spans again", target);
        t->failing = false;
        t->backoff_ms = 0;
        return true;
    }
    if (!t->failing)
        hy_log(HY_LOG_WARN, "trace",
               "backend %s: %s; retrying %u times, then its spans are dropped (backing off up "
               "to %u ms)",
               target, why, HY_TRACE_TRIES - 1, (unsigned)HY_TRACE_BACKOFF_MAX_MS);
    t->failing = true;
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : HY_TRACE_BACKOFF_MIN_MS;
    if (t->backoff_ms > HY_TRACE_BACKOFF_MAX_MS)
        t->backoff_ms = HY_TRACE_BACKOFF_MAX_MS;
    return false;
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits (t->lock held) up to ms, or until stop or, when fill is set, a
 * full batch. */
static void nap(struct hy_trace *t, uint64_t ms, bool fill)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    int rc = 0;
    while (!t->stop && rc != ETIMEDOUT && !(fill && t->n >= HY_TRACE_BATCH_SPANS))
        rc = pthread_cond_timedwait(&t->cond, &t->lock, &ts);
}

static void *writer(void *arg)
{
    struct hy_trace *t = arg;
    struct hy_trace_span *batch[HY_TRACE_BATCH_SPANS];
    size_t n = 0;       /* the batch in hand (a failed one is tried again) */
    unsigned tries = 0; /* of that batch */
    char target[1100];
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        if (n) { /* a failed batch: back off (jittered: 50-100 %), then again */
            t->rng ^= t->rng << 13, t->rng ^= t->rng >> 7, t->rng ^= t->rng << 17;
            uint64_t wait = t->backoff_ms / 2 + t->rng % (t->backoff_ms / 2 + 1);
            nap(t, wait, false);
        } else if (!t->n) {
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        } else if (t->n < HY_TRACE_BATCH_SPANS) { /* let a batch fill a while */
            nap(t, HY_TRACE_FLUSH_MS, true);
        }
        if (t->stop)
            break;
        while (t->head && n < HY_TRACE_BATCH_SPANS) {
            batch[n++] = t->head;
            t->head = t->head->next;
            t->n--;
        }
        if (!t->head)
            t->tail = NULL;
        bool otlp = t->otlp;
        snprintf(target, sizeof(target), "%s", t->target);
        pthread_mutex_unlock(&t->lock);
        bool sent = send_batch(t, otlp, target, batch, n);
        if (!sent && ++tries < HY_TRACE_TRIES) {
            pthread_mutex_lock(&t->lock);
            continue;
        }
        if (!sent)
            hy_series_add(t->failed, (double)n);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        n = 0;
        tries = 0;
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < n; i++)
        free(batch[i]);
    return NULL;
}

int hy_trace_new(struct hy_metrics *m, struct hy_trace **out)
{
    *out = NULL;
    struct hy_trace *t = calloc(1, sizeof(*t));
    if (!t)
        return HY_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    t->rng = ((uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec) ^ 0x9e3779b97f4a7c15u;
    struct hy_metric *dropped = hy_metric_counter(
        m, "hypha_dp_trace_spans_dropped_total",
        "Spans (MeshTrace) dropped: the queue to the writer was full (queue_full), or the "
        "backend could not take them (send_failed)",
        1, "reason");
    struct hy_metric *sent =
        hy_metric_counter(m, "hypha_dp_trace_spans_sent_total",
                          "Spans (MeshTrace) the backend accepted (a 2xx answer)", 0);
    t->full = dropped ? hy_metric_series(dropped, "queue_full") : NULL;
    t->failed = dropped ? hy_metric_series(dropped, "send_failed") : NULL;
    t->sent = sent ? hy_metric_series(sent) : NULL;
    int rc = t->full && t->failed && t->sent ? 0 : HY_ENOMEM;
    if (rc == 0 && (rc = -pthread_create(&t->thread, NULL, writer, t)) == 0)
        t->started = true;
    if (rc < 0) {
        hy_trace_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void hy_trace_free(struct hy_trace *t)
{
    if (!t)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->thread, NULL);
    }
    for (struct hy_trace_span *s = t->head, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
