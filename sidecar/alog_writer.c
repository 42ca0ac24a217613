/* MeshAccessLog's writer thread: drains each backend's queue into its
 * file (appended; reopened when rotated or removed) or TCP collector
 * (non-blocking; reconnected with jittered exponential backoff), and runs
 * the OpenTelemetry exchanges (alog_otel.c). It alone touches a backend's
 * descriptor and what it has in hand; workers only append to queues. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alog_int.h"
#include "log.h"
#include "metrics.h"
#include "poison.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void hy_alog_backend_close(struct backend *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    b->connecting = false;
}

static uint64_t backoff(struct hy_alog *a, struct backend *b)
{
    b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : HY_ALOG_BACKOFF_MIN_MS;
    if (b->backoff_ms > HY_ALOG_BACKOFF_MAX_MS)
        b->backoff_ms = HY_ALOG_BACKOFF_MAX_MS;
    a->rng ^= a->rng << 13, a->rng ^= a->rng >> 7, a->rng ^= a->rng << 17;
    uint64_t half = b->backoff_ms / 2;
    return half + (half ? a->rng % (half + 1) : 0); /* jittered: 50-100 % */
}

void hy_alog_fail(struct hy_alog *a, struct backend *b, const char *what, int err, uint64_t now)
{
    hy_alog_backend_close(b);
    uint64_t wait = backoff(a, b);
    b->next_try_ms = now + wait;
    if (!b->failing)
        hy_log(HY_LOG_WARN, "alog",
               "backend %s: %s: %s; retrying (every %llu ms at most, backing off)", b->label, what,
               strerror(err), (unsigned long long)HY_ALOG_BACKOFF_MAX_MS);
    b->failing = true;
}

void hy_alog_recovered(struct backend *b)
{
    if (b->failing)
        hy_log(HY_LOG_INFO, "alog", "backend %s: writing again", b->label);
    b->failing = false;
    b->backoff_ms = 0;
}

static void file_open(struct hy_alog *a, struct backend *b, uint64_t now)
{
    int fd = open(b->target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        hy_alog_fail(a, b, "cannot open", e, now);
        return;
    }
    b->fd = fd;
    b->dev = st.st_dev;
    b->ino = st.st_ino;
    b->next_check_ms = now + HY_ALOG_REOPEN_CHECK_MS;
}

/* A file that was moved away (logrotate) or removed: reopen the path. */
static void file_check(struct hy_alog *a, struct backend *b, uint64_t now)
{
    if (b->fd < 0 || now < b->next_check_ms)
        return;
    b->next_check_ms = now + HY_ALOG_REOPEN_CHECK_MS;
    struct stat st;
    if (stat(b->target, &st) == 0 && st.st_dev == b->dev && st.st_ino == b->ino)
        return;
    hy_log(HY_LOG_INFO, "alog", "backend %s: the file was rotated or removed; reopening", b->label);
    hy_alog_backend_close(b);
    file_open(a, b, now);
}

void hy_alog_tcp_connect(struct hy_alog *a, struct backend *b, uint64_t now)
{
    char host[256];
    const char *colon = strrchr(b->target, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - b->target), b->target);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        hy_alog_fail(a, b, "cannot resolve", rc == EAI_SYSTEM ? errno : EHOSTUNREACH, now);
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0) {
        int sz = HY_ALOG_TCP_SNDBUF, one = 1;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
            e = errno;
    }
    freeaddrinfo(ai);
    if (e) {
        if (fd >= 0)
            close(fd);
        hy_alog_fail(a, b, "cannot connect", e, now);
        return;
    }
    b->fd = fd;
    b->connecting = true;
}

/* Takes what the workers queued when the writer has nothing in hand. */
static void take(struct backend *b)
{
    if (b->out_off < b->out.len || b->type == B_OTEL) /* OpenTelemetry: otel_take */
        return;
    pthread_mutex_lock(&b->lock);
    struct hy_buf t = b->out;
    b->out = b->q;
    b->q = t;
    b->q.len = 0;
    pthread_mutex_unlock(&b->lock);
    b->out_off = 0;
}

/* Writes what b has in hand until done or the descriptor would block. */
void hy_alog_flush(struct hy_alog *a, struct backend *b, uint64_t now)
{
    while (b->fd >= 0 && !b->connecting && b->out_off < b->out.len) {
        ssize_t n =
            b->type != B_FILE
                ? send(b->fd, b->out.data + b->out_off, b->out.len - b->out_off, MSG_NOSIGNAL)
                : write(b->fd, b->out.data + b->out_off, b->out.len - b->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            hy_alog_fail(a, b, "cannot write", n < 0 ? errno : EIO, now);
            if (b->type == B_TCP) /* a line cut in the middle goes: the rest would garble */
                b->out_off = b->out.len;
            return;
        }
        b->out_off += (size_t)n;
        hy_alog_recovered(b);
        if (b->out_off == b->out.len)
            take(b);
    }
}

static void service(struct hy_alog *a, struct backend *b, short revents, uint64_t now)
{
    if (b->type == B_OTEL) {
        hy_alog_otel_service(a, b, revents, now);
        return;
    }
    if (b->type == B_TCP && b->fd >= 0 && b->connecting &&
        (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            hy_alog_fail(a, b, "cannot connect", err, now);
        } else {
            b->connecting = false;
            hy_log(HY_LOG_INFO, "alog", "backend %s: connected", b->label);
            hy_alog_recovered(b);
        }
    }
    if (b->type == B_TCP && b->fd >= 0 && !b->connecting && (revents & (POLLIN | POLLHUP))) {
        char sink[512]; /* a collector has nothing to say: a read that ends says it left */
        ssize_t n = recv(b->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            hy_alog_fail(a, b, "the collector closed the connection", n == 0 ? ECONNRESET : errno,
                         now);
    }
    take(b);
    if (b->fd < 0 && now >= b->next_try_ms && (b->out_off < b->out.len || b->type == B_TCP)) {
        if (b->type == B_FILE)
            file_open(a, b, now);
        else
            hy_alog_tcp_connect(a, b, now);
    }
    if (b->type == B_FILE)
        file_check(a, b, now);
    hy_alog_flush(a, b, now);
}

void *hy_alog_writer(void *arg)
{
    struct hy_alog *a = arg;
    struct pollfd pfd[MAX_BACKENDS + 1];
    struct backend *bs[MAX_BACKENDS];
    while (!atomic_load_explicit(&a->stop, memory_order_acquire)) {
        size_t n = 0;
        pthread_mutex_lock(&a->lock);
        for (struct backend *b = a->backends; b && n < MAX_BACKENDS; b = b->next)
            bs[n++] = b;
        pthread_mutex_unlock(&a->lock);
        pfd[0] = (struct pollfd){.fd = a->wake[0], .events = POLLIN};
        int timeout = HY_ALOG_REOPEN_CHECK_MS;
        uint64_t now = mono_ms();
        for (size_t i = 0; i < n; i++) {
            struct backend *b = bs[i];
            pfd[i + 1] = (struct pollfd){.fd = -1};
            if (b->fd >= 0 && b->type != B_FILE)
                pfd[i + 1] = (struct pollfd){
                    .fd = b->fd,
                    .events =
                        (short)(POLLIN | (b->connecting || b->out_off < b->out.len ? POLLOUT : 0))};
            /* a backend with nothing to do and no connection to keep sleeps
             * until a worker queues a line */
            bool wants = b->type == B_TCP || b->out_off < b->out.len;
            if (b->fd < 0 && wants && b->next_try_ms > now &&
                (int64_t)(b->next_try_ms - now) < timeout)
                timeout = (int)(b->next_try_ms - now);
            else if (b->fd < 0 && wants && b->next_try_ms <= now)
                timeout = 0;
            if (b->type == B_OTEL && b->ostate == O_READING && b->deadline_ms > now &&
                (int64_t)(b->deadline_ms - now) < timeout)
                timeout = (int)(b->deadline_ms - now);
        }
        if (poll(pfd, n + 1, timeout) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents & POLLIN) {
            char drain[256];
            while (read(a->wake[0], drain, sizeof(drain)) > 0)
                ;
        }
        now = mono_ms();
        for (size_t i = 0; i < n; i++)
            service(a, bs[i], pfd[i + 1].revents, now);
    }
    /* stopping: one last try at what is queued, never waiting */
    pthread_mutex_lock(&a->lock);
    struct backend *all = a->backends;
    pthread_mutex_unlock(&a->lock);
    for (struct backend *b = all; b; b = b->next) {
        if (b->type == B_OTEL)
            continue; /* a request would have to wait for its answer */
        take(b);
        if (b->fd < 0 && b->type == B_FILE)
            file_open(a, b, mono_ms());
        hy_alog_flush(a, b, mono_ms());
    }
    return NULL;
}
