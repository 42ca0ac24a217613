/* What the access logger's files share (alog.c: records, compiling and
 * queues; alog_writer.c: the writer thread, files and TCP collectors;
 * alog_otel.c: OpenTelemetry): backends, sinks, and the writer's steps. */
#ifndef HY_ALOG_INT_H
#define HY_ALOG_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "alog.h"
#include "alog_fmt.h"
#include "buf.h"
#include "dp.pb-c.h"
#include "otlp.pb-c.h"

#define MAX_BACKENDS 256 /* distinct backends one sidecar keeps open */

enum btype { B_FILE, B_TCP, B_OTEL };
/* An OpenTelemetry backend's exchange with its collector. */
enum ostate { O_IDLE, O_SENDING, O_READING };

struct backend {
    struct backend *next; /* a->backends */
    enum btype type;
    char *target; /* path, or host:port */
    char label[300];
    struct hy_series *dropped;
    /* the queue: workers append under lock */
    pthread_mutex_t lock;
    struct hy_buf q;
    /* the writer's own */
    struct hy_buf out; /* taken from q, being written */
    size_t out_off;
    int fd;
    bool connecting;
    uint64_t next_try_ms, backoff_ms, next_check_ms;
    dev_t dev;
    ino_t ino;
    bool failing; /* the last attempt failed and was logged */
    /* OpenTelemetry: one POST /v1/logs at a time */
    enum ostate ostate;
    struct hy_buf in; /* the collector's answer so far */
    size_t batch_n;   /* log records in the request under way */
    uint64_t deadline_ms;
};

struct hy_alog {
    struct hy_metric *dropped;
    pthread_mutex_t lock; /* backends */
    struct backend *backends;
    size_t nbackends;
    int wake[2]; /* pipe: workers -> writer */
    atomic_bool stop;
    pthread_t thread;
    bool started;
    uint64_t rng;
};

/* An OpenTelemetry body value, its strings compiled as formats. */
struct oval {
    Hypha__Otlp__AnyValue__ValueCase kind;
    struct hy_alog_fmt *fmt; /* a string */
    bool b;
    int64_t i;
    double d;
    ProtobufCBinaryData y;
    struct oval *v; /* array or kvlist values */
    char **keys;    /* kvlist keys */
    size_t n;
};

struct oattr {
    char *key;
    struct hy_alog_fmt *fmt;
};

struct sink {
    struct backend *b;
    struct hy_alog_fmt *fmt; /* File, Tcp: the line; OpenTelemetry: the body when body is NULL */
    struct oval *body;
    struct oattr *attrs;
    size_t nattrs;
};

struct side {
    bool set; /* a MeshAccessLog applies */
    struct sink *v;
    size_t n;
};

struct hy_alog_cfg {
    struct side *in, *out;
    size_t nin, nout;
    char mesh[128];
    char own[256]; /* the proxy's service: its first inbound's */
};

/* ----- alog_writer.c: the writer thread's steps on one backend ----- */

/* The writer thread (arg: the struct hy_alog). */
void *hy_alog_writer(void *arg);
void hy_alog_backend_close(struct backend *b);
/* b failed doing what (errno err): closed, retried after a jittered,
 * growing backoff; logged once until it works again. */
void hy_alog_fail(struct hy_alog *a, struct backend *b, const char *what, int err, uint64_t now);
void hy_alog_recovered(struct backend *b);
/* Starts a non-blocking connect to b's host:port. */
void hy_alog_tcp_connect(struct hy_alog *a, struct backend *b, uint64_t now);
/* Writes what b has in hand until done or the descriptor would block. */
void hy_alog_flush(struct hy_alog *a, struct backend *b, uint64_t now);

/* ----- alog_otel.c ----- */

void hy_alog_oval_fini(struct oval *v);
/* k's OpenTelemetry body and attributes from d. 0, HY_ENOMEM, or
 * HY_EINVAL with err. */
int hy_alog_otel_init(struct sink *k, const Hypha__V1__DpAccessLogBackend *d, char *err,
                      size_t errlen);
/* r as one LogRecord element of ScopeLogs.log_records, appended to out. */
int hy_alog_otel_record(const struct sink *k, const struct hy_alog_rec *r, struct hy_buf *out);
/* The writer's turn on an OpenTelemetry backend (revents: its poll). */
void hy_alog_otel_service(struct hy_alog *a, struct backend *b, short revents, uint64_t now);

#endif
