/* MeshAccessLog in the sidecar (alog.h): records, per-backend bounded
 * queues filled by the workers, and the writer thread that drains them
 * into files (appended, reopened when rotated) and TCP collectors
 * (non-blocking, reconnected with jittered exponential backoff). */
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alog.h"
#include "alog_fmt.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "otlp.pb-c.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "poison.h"

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

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ----- backends ----- */

static struct backend *backend_get(struct hy_alog *a, const char *type, const char *target)
{
    enum btype t = !strcmp(type, "Tcp") ? B_TCP : !strcmp(type, "OpenTelemetry") ? B_OTEL : B_FILE;
    pthread_mutex_lock(&a->lock);
    struct backend *b = a->backends;
    for (; b; b = b->next)
        if (b->type == t && !strcmp(b->target, target))
            break;
    if (!b && a->nbackends < MAX_BACKENDS && (b = calloc(1, sizeof(*b)))) {
        b->type = t;
        b->fd = -1;
        snprintf(b->label, sizeof(b->label), "%s:%s",
                 t == B_TCP    ? "tcp"
                 : t == B_OTEL ? "otel"
                               : "file",
                 target);
        if (!(b->target = strdup(target)) ||
            !(b->dropped = hy_metric_series(a->dropped, b->label))) {
            free(b->target);
            free(b);
            b = NULL;
        } else {
            pthread_mutex_init(&b->lock, NULL);
            b->next = a->backends;
            a->backends = b;
            a->nbackends++;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return b;
}

static void backend_close(struct backend *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    b->connecting = false;
}

/* Queues line for b; false (and counted) when the queue is full. */
static void enqueue(struct hy_alog *a, struct backend *b, const char *line, size_t n)
{
    bool wake = false, dropped = false;
    pthread_mutex_lock(&b->lock);
    if (b->q.len + n > HY_ALOG_QUEUE_BYTES || hy_buf_append(&b->q, line, n) < 0)
        dropped = true;
    else
        wake = b->q.len == n; /* it was empty: the writer may be asleep */
    pthread_mutex_unlock(&b->lock);
    if (dropped)
        hy_series_inc(b->dropped);
    if (wake) {
        char x = 1;
        ssize_t w = write(a->wake[1], &x, 1); /* a full pipe already wakes it */
        (void)w;
    }
}

/* ----- compiling a snapshot's access logs ----- */

static void oval_fini(struct oval *v)
{
    hy_alog_fmt_free(v->fmt);
    free(v->y.data);
    for (size_t i = 0; i < v->n; i++) {
        oval_fini(&v->v[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->v);
    free(v->keys);
}

static void sink_fini(struct sink *k)
{
    hy_alog_fmt_free(k->fmt);
    if (k->body)
        oval_fini(k->body);
    free(k->body);
    for (size_t i = 0; i < k->nattrs; i++) {
        free(k->attrs[i].key);
        hy_alog_fmt_free(k->attrs[i].fmt);
    }
    free(k->attrs);
}

static void side_fini(struct side *s)
{
    for (size_t i = 0; i < s->n; i++)
        sink_fini(&s->v[i]);
    free(s->v);
}

/* Compiles body value d into v (zeroed). 0, HY_ENOMEM, or HY_EINVAL with err. */
static int oval_init(struct oval *v, const Hypha__V1__OtelAnyValue *d, char *err, size_t errlen,
                     int depth)
{
    if (depth > 8) {
        snprintf(err, errlen, "body nested deeper than 8 levels");
        return HY_EINVAL;
    }
    if (d->string_value) {
        v->kind = HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
        if (!(v->fmt = hy_alog_fmt_new()))
            return HY_ENOMEM;
        return hy_alog_fmt_plain(v->fmt, d->string_value, err, errlen);
    }
    if (d->has_bool_value) {
        v->kind = HYPHA__OTLP__ANY_VALUE__VALUE_BOOL_VALUE;
        v->b = d->bool_value;
    } else if (d->has_int_value) {
        v->kind = HYPHA__OTLP__ANY_VALUE__VALUE_INT_VALUE;
        v->i = d->int_value;
    } else if (d->has_double_value) {
        v->kind = HYPHA__OTLP__ANY_VALUE__VALUE_DOUBLE_VALUE;
        v->d = d->double_value;
    } else if (d->has_bytes_value) {
        v->kind = HYPHA__OTLP__ANY_VALUE__VALUE_BYTES_VALUE;
        if (d->bytes_value.len && !(v->y.data = malloc(d->bytes_value.len)))
            return HY_ENOMEM;
        if (d->bytes_value.len)
            memcpy(v->y.data, d->bytes_value.data, d->bytes_value.len);
        v->y.len = d->bytes_value.len;
    } else if (d->array_value || d->kvlist_value) {
        bool kv = d->kvlist_value != NULL;
        v->kind = kv ? HYPHA__OTLP__ANY_VALUE__VALUE_KVLIST_VALUE
                     : HYPHA__OTLP__ANY_VALUE__VALUE_ARRAY_VALUE;
        size_t n = kv ? d->kvlist_value->n_values : d->array_value->n_values;
        if (n &&
            (!(v->v = calloc(n, sizeof(*v->v))) || (kv && !(v->keys = calloc(n, sizeof(char *))))))
            return HY_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            const Hypha__V1__OtelAnyValue *x =
                kv ? d->kvlist_value->values[i]->value : d->array_value->values[i];
            v->n = i + 1;
            if (kv &&
                !(v->keys[i] = strdup(
                      d->kvlist_value->values[i]->key ? d->kvlist_value->values[i]->key : "")))
                return HY_ENOMEM;
            int rc = x ? oval_init(&v->v[i], x, err, errlen, depth + 1) : 0;
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int otel_init(struct sink *k, const Hypha__V1__DpAccessLogBackend *d, char *err,
                     size_t errlen)
{
    int rc = 0;
    if (d->otel_body) {
        if (!(k->body = calloc(1, sizeof(*k->body))))
            return HY_ENOMEM;
        rc = oval_init(k->body, d->otel_body, err, errlen, 0);
    }
    if (rc == 0 && d->n_otel_attributes &&
        !(k->attrs = calloc(d->n_otel_attributes, sizeof(*k->attrs))))
        return HY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < d->n_otel_attributes; i++) {
        struct oattr *a = &k->attrs[k->nattrs++];
        if (!(a->key = strdup(d->otel_attributes[i]->name ? d->otel_attributes[i]->name : "")) ||
            !(a->fmt = hy_alog_fmt_new()))
            return HY_ENOMEM;
        rc = hy_alog_fmt_plain(
            a->fmt, d->otel_attributes[i]->value ? d->otel_attributes[i]->value : "", err, errlen);
    }
    return rc;
}

void hy_alog_cfg_free(struct hy_alog_cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nin; i++)
        side_fini(&c->in[i]);
    for (size_t i = 0; i < c->nout; i++)
        side_fini(&c->out[i]);
    free(c->in);
    free(c->out);
    free(c);
}

static int side_init(struct hy_alog *a, struct side *s, const Hypha__V1__DpAccessLog *al)
{
    if (!al)
        return 0;
    s->set = true;
    if (al->n_backends && !(s->v = calloc(al->n_backends, sizeof(*s->v))))
        return HY_ENOMEM;
    for (size_t i = 0; i < al->n_backends; i++) {
        const Hypha__V1__DpAccessLogBackend *d = al->backends[i];
        const char *type = d->type ? d->type : "";
        bool otel = !strcmp(type, "OpenTelemetry");
        const char *target = !strcmp(type, "Tcp") || otel ? d->address : d->path;
        if ((strcmp(type, "Tcp") && strcmp(type, "File") && !otel) || !target || !*target) {
            hy_log(HY_LOG_ERROR, "alog", "%s: backend %zu: type %s without a target, left out",
                   al->origin ? al->origin : "MeshAccessLog", i, type);
            continue;
        }
        struct hy_alog_fmt *f = hy_alog_fmt_new();
        if (!f)
            return HY_ENOMEM;
        char err[300] = "";
        int rc = 0;
        if (d->plain)
            rc = hy_alog_fmt_plain(f, d->plain, err, sizeof(err));
        for (size_t k = 0; rc == 0 && k < d->n_json; k++)
            rc = hy_alog_fmt_json_add(f, d->json[k]->name ? d->json[k]->name : "",
                                      d->json[k]->value ? d->json[k]->value : "", err, sizeof(err));
        hy_alog_fmt_omit_empty(f, d->has_omit_empty && d->omit_empty);
        struct sink k = {.fmt = f};
        if (rc == 0 && otel)
            rc = otel_init(&k, d, err, sizeof(err));
        struct backend *b = rc == 0 ? backend_get(a, type, target) : NULL;
        if (!b) {
            sink_fini(&k);
            if (rc == HY_ENOMEM)
                return rc;
            /* the zone validated it; a sidecar that cannot use it says so */
            hy_log(HY_LOG_ERROR, "alog", "%s: backend %s:%s left out: %s",
                   al->origin ? al->origin : "MeshAccessLog", type, target,
                   rc ? err : "too many backends or out of memory");
            continue;
        }
        k.b = b;
        s->v[s->n++] = k;
    }
    return 0;
}

static struct hy_alog_cfg *compile(struct hy_alog *a, const struct hy_sidecar_snapshot *snap)
{
    const Hypha__V1__DpConfig *cf = snap->config;
    struct hy_alog_cfg *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->nin = cf->n_inbounds;
    c->nout = cf->n_outbounds;
    if ((c->nin && !(c->in = calloc(c->nin, sizeof(*c->in)))) ||
        (c->nout && !(c->out = calloc(c->nout, sizeof(*c->out))))) {
        hy_alog_cfg_free(c);
        return NULL;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->nin; i++)
        rc = side_init(a, &c->in[i], cf->inbounds[i]->access_log);
    for (size_t i = 0; rc == 0 && i < c->nout; i++)
        rc = side_init(a, &c->out[i], cf->outbounds[i]->access_log);
    if (rc < 0) {
        hy_alog_cfg_free(c);
        return NULL;
    }
    hy_px_mesh(snap, c->mesh, sizeof(c->mesh));
    snprintf(c->own, sizeof(c->own), "%s",
             cf->n_inbounds && cf->inbounds[0]->service ? cf->inbounds[0]->service : "unknown");
    return c;
}

/* The compiled access logs of snap, compiled by the first worker that
 * needs them and kept with the snapshot. NULL when out of memory. */
static struct hy_alog_cfg *cfg_of(struct hy_alog *a, struct hy_sidecar_snapshot *snap)
{
    struct hy_alog_cfg *c = atomic_load_explicit(&snap->alog, memory_order_acquire);
    if (c)
        return c;
    struct hy_alog_cfg *mine = compile(a, snap);
    if (!mine)
        return NULL;
    if (atomic_compare_exchange_strong_explicit(&snap->alog, &c, mine, memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    hy_alog_cfg_free(mine); /* another worker was first */
    return c;
}

static bool any_set(const struct hy_sidecar_snapshot *snap)
{
    const Hypha__V1__DpConfig *cf = snap->config;
    for (size_t i = 0; i < cf->n_inbounds; i++)
        if (cf->inbounds[i]->access_log)
            return true;
    for (size_t i = 0; i < cf->n_outbounds; i++)
        if (cf->outbounds[i]->access_log)
            return true;
    return false;
}

/* Formats r for every sink of s and queues the lines. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static char *render_str(const struct hy_alog_fmt *f, const struct hy_alog_rec *r)
{
    struct hy_buf b = {0};
    if (hy_alog_fmt_render_value(f, r, &b) < 0 || hy_buf_append(&b, "", 0) < 0) {
        hy_buf_fini(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

/* A malloc'd OTLP AnyValue of v for r (freed with the record), or NULL. */
static Hypha__Otlp__AnyValue *oval_build(const struct oval *v, const struct hy_alog_rec *r)
{
    Hypha__Otlp__AnyValue *x = malloc(sizeof(*x));
    if (!x)
        return NULL;
    hypha__otlp__any_value__init(x);
    x->value_case = v->kind;
    switch (v->kind) {
    case HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE:
        if (!(x->string_value = render_str(v->fmt, r)))
            x->value_case = HYPHA__OTLP__ANY_VALUE__VALUE__NOT_SET;
        break;
    case HYPHA__OTLP__ANY_VALUE__VALUE_BOOL_VALUE:
        x->bool_value = v->b;
        break;
    case HYPHA__OTLP__ANY_VALUE__VALUE_INT_VALUE:
        x->int_value = v->i;
        break;
    case HYPHA__OTLP__ANY_VALUE__VALUE_DOUBLE_VALUE:
        x->double_value = v->d;
        break;
    case HYPHA__OTLP__ANY_VALUE__VALUE_BYTES_VALUE:
        if ((x->bytes_value.data = malloc(v->y.len ? v->y.len : 1))) {
            memcpy(x->bytes_value.data, v->y.data ? v->y.data : (uint8_t *)"", v->y.len);
            x->bytes_value.len = v->y.len;
        } else {
            x->value_case = HYPHA__OTLP__ANY_VALUE__VALUE__NOT_SET;
        }
        break;
    case HYPHA__OTLP__ANY_VALUE__VALUE_ARRAY_VALUE:
        if ((x->array_value = malloc(sizeof(*x->array_value)))) {
            hypha__otlp__array_value__init(x->array_value);
            if (v->n && (x->array_value->values = calloc(v->n, sizeof(void *))))
                for (size_t i = 0; i < v->n; i++)
                    if ((x->array_value->values[x->array_value->n_values] =
                             oval_build(&v->v[i], r)))
                        x->array_value->n_values++;
        } else {
            x->value_case = HYPHA__OTLP__ANY_VALUE__VALUE__NOT_SET;
        }
        break;
    case HYPHA__OTLP__ANY_VALUE__VALUE_KVLIST_VALUE:
        if ((x->kvlist_value = malloc(sizeof(*x->kvlist_value)))) {
            hypha__otlp__key_value_list__init(x->kvlist_value);
            Hypha__Otlp__KeyValueList *l = x->kvlist_value;
            if (v->n && (l->values = calloc(v->n, sizeof(void *))))
                for (size_t i = 0; i < v->n; i++) {
                    Hypha__Otlp__KeyValue *kv = malloc(sizeof(*kv));
                    if (!kv)
                        break;
                    hypha__otlp__key_value__init(kv);
                    l->values[l->n_values++] = kv;
                    kv->key = strdup(v->keys[i]);
                    kv->value = oval_build(&v->v[i], r);
                }
        } else {
            x->value_case = HYPHA__OTLP__ANY_VALUE__VALUE__NOT_SET;
        }
        break;
    default:
        break;
    }
    return x;
}

/* r as one OTLP LogRecord, encoded as an element of ScopeLogs.log_records
 * (field 2: tag, length, bytes) appended to out: the writer puts the
 * elements it takes in one request. 0 or HY_ENOMEM. */
static int otel_record(const struct sink *k, const struct hy_alog_rec *r, struct hy_buf *out)
{
    Hypha__Otlp__LogRecord lr = HYPHA__OTLP__LOG_RECORD__INIT;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    lr.time_unix_nano = (uint64_t)r->start_us * 1000;
    lr.observed_time_unix_nano = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    if (k->body) {
        lr.body = oval_build(k->body, r);
    } else if ((lr.body = malloc(sizeof(*lr.body)))) { /* Kuma's default line, as a string */
        hypha__otlp__any_value__init(lr.body);
        if ((lr.body->string_value = render_str(k->fmt, r)))
            lr.body->value_case = HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
    }
    Hypha__Otlp__KeyValue *attrs[64], kvs[64];
    Hypha__Otlp__AnyValue vals[64];
    size_t na = k->nattrs < 64 ? k->nattrs : 64;
    for (size_t i = 0; i < na; i++) {
        hypha__otlp__key_value__init(&kvs[i]);
        hypha__otlp__any_value__init(&vals[i]);
        kvs[i].key = k->attrs[i].key;
        kvs[i].value = &vals[i];
        vals[i].string_value = render_str(k->attrs[i].fmt, r);
        vals[i].value_case = vals[i].string_value ? HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE
                                                  : HYPHA__OTLP__ANY_VALUE__VALUE__NOT_SET;
        attrs[i] = &kvs[i];
    }
    lr.attributes = attrs;
    lr.n_attributes = na;
    size_t n = hypha__otlp__log_record__get_packed_size(&lr);
    uint8_t head[16];
    head[0] = 0x12; /* ScopeLogs.log_records: field 2, length-delimited */
    size_t hl = 1 + put_varint(head + 1, n);
    int rc = hy_buf_append(out, head, hl);
    uint8_t *buf = rc == 0 ? malloc(n ? n : 1) : NULL;
    if (buf) {
        hypha__otlp__log_record__pack(&lr, buf);
        rc = hy_buf_append(out, buf, n);
        free(buf);
    } else {
        rc = HY_ENOMEM;
    }
    for (size_t i = 0; i < na; i++)
        free(vals[i].string_value);
    if (lr.body)
        protobuf_c_message_free_unpacked(&lr.body->base, NULL);
    return rc;
}

static void emit(struct hy_alog *a, const struct side *s, const struct hy_alog_rec *r)
{
    struct hy_buf line = {0};
    for (size_t i = 0; i < s->n; i++) {
        line.len = 0;
        int rc = s->v[i].b->type == B_OTEL ? otel_record(&s->v[i], r, &line)
                                           : hy_alog_fmt_render(s->v[i].fmt, r, &line);
        if (rc == 0 && line.len)
            enqueue(a, s->v[i].b, line.data, line.len);
        else
            hy_series_inc(s->v[i].b->dropped);
    }
    hy_buf_fini(&line);
}

/* "spiffe://MESH/SERVICE" -> SERVICE, into buf. */
static const char *service_of_id(const char *id, char *buf, size_t size)
{
    if (!id || strncmp(id, "spiffe://", 9))
        return NULL;
    const char *slash = strchr(id + 9, '/');
    if (!slash || !slash[1])
        return NULL;
    snprintf(buf, size, "%s", slash + 1);
    return buf;
}

static size_t index_of(void *const *v, size_t n, const void *x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    return SIZE_MAX;
}

/* ----- the hooks ----- */

bool hy_alog_conn(struct hy_px_conn *c, uint64_t duration_ms)
{
    struct hy_alog *a = c->w->p->alog;
    struct hy_sidecar_snapshot *snap = c->snap;
    if (!a || !snap || !any_set(snap))
        return false;
    const char *proto =
        c->dir == HY_PX_IN ? (c->in ? c->in->protocol : NULL) : (c->out ? c->out->protocol : NULL);
    struct hy_alog_cfg *cfg = cfg_of(a, snap);
    const Hypha__V1__DpConfig *cf = snap->config;
    size_t i = c->dir == HY_PX_IN ? index_of((void *const *)cf->inbounds, cf->n_inbounds, c->in)
                                  : index_of((void *const *)cf->outbounds, cf->n_outbounds, c->out);
    const struct side *s = !cfg || i == SIZE_MAX ? NULL
                           : c->dir == HY_PX_IN  ? &cfg->in[i]
                                                 : &cfg->out[i];
    if (!s || !s->set)
        return false;
    /* HTTP traffic is logged per request (hy_alog_http), as Kuma does; its
     * connection only when it never became requests (a refusal, a failed
     * handshake) */
    static const char *const refused[] = {"denied",       "tls_failed", "wrong_peer",
                                          "rate_limited", "overflow",   "no_config"};
    bool refusal = false;
    for (size_t k = 0; k < sizeof(refused) / sizeof(*refused); k++)
        refusal = refusal || !strcmp(c->result, refused[k]);
    if (hy_px_l7_protocol(proto) && !refusal)
        return true;
    char src[256], up[300], local[300];
    struct hy_alog_rec r = {
        .inbound = c->dir == HY_PX_IN,
        .start_us = wall_us() - (int64_t)duration_ms * 1000,
        .duration_ms = duration_ms,
        .upstream_ms = -1,
        .has_bytes = true,
        .bytes_sent = c->bytes_down,
        .bytes_received = c->bytes_up,
        .mesh = cfg->mesh,
        .downstream_remote = c->peer,
        .flags = hy_alog_flags_of(c->result),
        .details = c->result,
    };
    if (c->dir == HY_PX_IN) {
        r.src_service = service_of_id(c->id, src, sizeof(src));
        r.src_addr = c->peer;
        r.dst_service = c->in->service;
        r.upstream_cluster = c->in->service;
        snprintf(up, sizeof(up), "%s:%u", c->in->service_address ? c->in->service_address : "",
                 c->in->service_port);
        r.upstream_host = up;
        snprintf(local, sizeof(local), "%s:%u", c->w->p->inbound_host, c->in->port);
    } else {
        r.src_service = cfg->own;
        snprintf(src, sizeof(src), "%s", c->w->p->inbound_host);
        r.src_addr = src;
        r.dst_service = c->out->service;
        r.upstream_cluster = c->out->service;
        r.upstream_host = c->endpoint;
        snprintf(local, sizeof(local), "127.0.0.1:%u", c->out->port);
    }
    r.downstream_local = local;
    emit(a, s, &r);
    return true;
}

static const char *req_header(const void *ud, bool response, const char *name)
{
    const struct hy_http_head *h = ud;
    if (response || !h)
        return NULL;
    const struct hy_http_field *f = hy_http_head_find(h, name, NULL);
    return f ? f->value : NULL;
}

bool hy_alog_http(struct hy_l7_worker *lw, const struct hy_l7_done *d)
{
    struct hy_alog *a = lw->w->p->alog;
    struct hy_sidecar_snapshot *snap = lw->w->snap;
    if (!a || !snap || !any_set(snap))
        return false;
    struct hy_alog_cfg *cfg = cfg_of(a, snap);
    const Hypha__V1__DpConfig *cf = snap->config;
    const struct side *s = NULL;
    const Hypha__V1__DpInbound *in = NULL;
    const Hypha__V1__DpOutbound *out = NULL;
    for (size_t i = 0; cfg && d->dir == HY_PX_IN && !s && i < cf->n_inbounds; i++)
        if (cf->inbounds[i]->port == d->port)
            s = &cfg->in[i], in = cf->inbounds[i];
    for (size_t i = 0; cfg && d->dir == HY_PX_OUT && !s && i < cf->n_outbounds; i++)
        if (cf->outbounds[i]->port == d->port)
            s = &cfg->out[i], out = cf->outbounds[i];
    if (!s || !s->set)
        return false;
    char src[256], up[300];
    uint64_t ms = (uint64_t)(d->seconds * 1000.0 + 0.5);
    unsigned version = d->req ? d->req->version : 11;
    struct hy_alog_rec r = {
        .http = true,
        .inbound = d->dir == HY_PX_IN,
        .start_us = wall_us() - (int64_t)ms * 1000,
        .duration_ms = ms,
        .upstream_ms = d->upstream_seconds > 0 ? (int64_t)(d->upstream_seconds * 1000.0 + 0.5) : -1,
        .status = d->status,
        .mesh = cfg->mesh,
        .downstream_remote = d->peer,
        .protocol = version == 20   ? "HTTP/2"
                    : version == 10 ? "HTTP/1.0"
                                    : "HTTP/1.1",
        .flags = hy_alog_flags_of(d->result),
        .details = d->result,
        .method = d->method,
        .path = d->path,
        .authority = d->authority,
        .scheme = d->req && d->req->scheme ? d->req->scheme : "http",
        .header = req_header,
        .ud = d->req,
    };
    if (in) {
        r.src_service = service_of_id(d->id, src, sizeof(src));
        r.src_addr = d->peer;
        r.dst_service = in->service;
        r.upstream_cluster = in->service;
        snprintf(up, sizeof(up), "%s:%u", in->service_address ? in->service_address : "",
                 in->service_port);
        r.upstream_host = up;
    } else {
        r.src_service = cfg->own;
        snprintf(src, sizeof(src), "%s", lw->w->p->inbound_host);
        r.src_addr = src;
        r.dst_service = d->service ? d->service : out->service;
        r.upstream_cluster = r.dst_service;
        r.upstream_host = d->upstream;
    }
    emit(a, s, &r);
    return true;
}

/* ----- the writer thread ----- */

static uint64_t backoff(struct hy_alog *a, struct backend *b)
{
    b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : HY_ALOG_BACKOFF_MIN_MS;
    if (b->backoff_ms > HY_ALOG_BACKOFF_MAX_MS)
        b->backoff_ms = HY_ALOG_BACKOFF_MAX_MS;
    a->rng ^= a->rng << 13, a->rng ^= a->rng >> 7, a->rng ^= a->rng << 17;
    uint64_t half = b->backoff_ms / 2;
    return half + (half ? a->rng % (half + 1) : 0); /* jittered: 50-100 % */
}

static void fail(struct hy_alog *a, struct backend *b, const char *what, int err, uint64_t now)
{
    backend_close(b);
    uint64_t wait = backoff(a, b);
    b->next_try_ms = now + wait;
    if (!b->failing)
        hy_log(HY_LOG_WARN, "alog",
               "backend %s: %s: %s; retrying (every %llu ms at most, backing off)", b->label, what,
               strerror(err), (unsigned long long)HY_ALOG_BACKOFF_MAX_MS);
    b->failing = true;
}

static void recovered(struct backend *b)
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
        fail(a, b, "cannot open", e, now);
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
    backend_close(b);
    file_open(a, b, now);
}

static void tcp_connect(struct hy_alog *a, struct backend *b, uint64_t now)
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
        fail(a, b, "cannot resolve", rc == EAI_SYSTEM ? errno : EHOSTUNREACH, now);
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
        fail(a, b, "cannot connect", e, now);
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
static void flush(struct hy_alog *a, struct backend *b, uint64_t now)
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
            fail(a, b, "cannot write", n < 0 ? errno : EIO, now);
            if (b->type == B_TCP) /* a line cut in the middle goes: the rest would garble */
                b->out_off = b->out.len;
            return;
        }
        b->out_off += (size_t)n;
        recovered(b);
        if (b->out_off == b->out.len)
            take(b);
    }
}

/* ----- OpenTelemetry: OTLP/HTTP, one POST /v1/logs at a time ----- */

#define OTEL_ANSWER_MS 10000 /* a collector's answer; past it the request fails */
#define OTEL_ANSWER_MAX 65536

static size_t records_in(const struct hy_buf *b)
{
    size_t n = 0;
    for (size_t at = 0; at < b->len; n++) {
        uint64_t len = 0;
        int shift = 0;
        at++; /* the tag */
        while (at < b->len && shift < 64) {
            uint8_t c = (uint8_t)b->data[at++];
            len |= (uint64_t)(c & 0x7f) << shift;
            shift += 7;
            if (!(c & 0x80))
                break;
        }
        at += len;
    }
    return n;
}

/* The lost batch of b counted as dropped, and the exchange reset. */
static void otel_lost(struct backend *b)
{
    for (size_t i = 0; i < b->batch_n; i++)
        hy_series_inc(b->dropped);
    b->batch_n = 0;
    b->out.len = b->out_off = 0;
    b->in.len = 0;
    b->ostate = O_IDLE;
}

/* Takes the queued records into one ExportLogsServiceRequest, POSTed. */
static void otel_take(struct backend *b)
{
    if (b->ostate != O_IDLE)
        return;
    struct hy_buf recs = {0};
    pthread_mutex_lock(&b->lock);
    recs = b->q;
    b->q = (struct hy_buf){0};
    pthread_mutex_unlock(&b->lock);
    if (!recs.len) {
        hy_buf_fini(&recs);
        return;
    }
    /* ScopeLogs{scope: {name: "hypha-dp"}, log_records...} in
     * ResourceLogs.scope_logs (2), in ExportLogsServiceRequest.resource_logs (1) */
    static const uint8_t scope[] = {0x0a, 10, 0x0a, 8, 'h', 'y', 'p', 'h', 'a', '-', 'd', 'p'};
    uint8_t h1[12], h2[12];
    size_t sl = sizeof(scope) + recs.len;
    size_t l2 = put_varint(h2 + 1, sl) + 1;
    h2[0] = 0x12;
    size_t rl = l2 + sl;
    size_t l1 = put_varint(h1 + 1, rl) + 1;
    h1[0] = 0x0a;
    b->out.len = b->out_off = 0;
    int rc = hy_buf_printf(&b->out,
                           "POST /v1/logs HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                           "application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
                           b->target, l1 + rl);
    if (rc == 0)
        rc = hy_buf_append(&b->out, h1, l1);
    if (rc == 0)
        rc = hy_buf_append(&b->out, h2, l2);
    if (rc == 0)
        rc = hy_buf_append(&b->out, scope, sizeof(scope));
    if (rc == 0)
        rc = hy_buf_append(&b->out, recs.data, recs.len);
    b->batch_n = records_in(&recs);
    hy_buf_fini(&recs);
    b->ostate = O_SENDING;
    if (rc < 0)
        otel_lost(b);
}

/* Reads the collector's answer; true when it is whole (or the connection
 * ended). */
static void otel_read(struct hy_alog *a, struct backend *b, uint64_t now)
{
    for (;;) {
        char buf[4096];
        ssize_t n = recv(b->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            int e = n < 0 ? errno : ECONNRESET;
            if (b->ostate == O_IDLE) { /* an idle keep-alive connection it closed */
                backend_close(b);
                return;
            }
            otel_lost(b);
            fail(a, b, "the collector closed the connection before answering", e, now);
            return;
        }
        if (b->ostate != O_READING || b->in.len + (size_t)n > OTEL_ANSWER_MAX ||
            hy_buf_append(&b->in, buf, (size_t)n) < 0) {
            otel_lost(b);
            fail(a, b, "the collector sent what was not asked for", EPROTO, now);
            return;
        }
    }
    if (b->ostate != O_READING)
        return;
    const char *end = b->in.data ? strstr(b->in.data, "\r\n\r\n") : NULL;
    if (!end)
        return;
    unsigned status = 0;
    size_t clen = 0;
    sscanf(b->in.data, "HTTP/1.%*u %u", &status);
    bool close_after = false;
    for (const char *p = strstr(b->in.data, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, "Content-Length:", 15))
            clen = strtoul(p + 17, NULL, 10);
        if (!strncasecmp(p + 2, "Connection:", 11) && strstr(p, "close") &&
            strstr(p, "close") < strstr(p + 2, "\r\n"))
            close_after = true;
    }
    if ((size_t)(end + 4 - b->in.data) + clen > b->in.len)
        return; /* the body is still coming */
    if (status / 100 != 2) {
        if (!b->failing)
            hy_log(HY_LOG_WARN, "alog",
                   "backend %s: the collector answered %u; %zu log records lost", b->label, status,
                   b->batch_n);
        b->failing = true;
        otel_lost(b);
    } else {
        recovered(b);
        b->batch_n = 0;
        b->out.len = b->out_off = 0;
        b->in.len = 0;
        b->ostate = O_IDLE;
    }
    if (close_after || status == 0)
        backend_close(b);
}

static void service_otel(struct hy_alog *a, struct backend *b, short revents, uint64_t now)
{
    if (b->fd >= 0 && b->connecting && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            otel_lost(b);
            fail(a, b, "cannot connect", err, now);
        } else {
            b->connecting = false;
        }
    }
    if (b->fd >= 0 && !b->connecting && (revents & (POLLIN | POLLHUP | POLLERR)))
        otel_read(a, b, now);
    otel_take(b);
    if (b->ostate == O_SENDING && b->fd < 0 && now >= b->next_try_ms)
        tcp_connect(a, b, now);
    if (b->ostate == O_SENDING && b->fd < 0 && b->next_try_ms > now && b->batch_n) {
        otel_lost(b); /* backing off: this batch goes, the next waits for the connection */
        return;
    }
    if (b->ostate == O_SENDING) {
        flush(a, b, now);
        if (b->fd >= 0 && !b->connecting && b->out_off == b->out.len) {
            b->ostate = O_READING;
            b->deadline_ms = now + OTEL_ANSWER_MS;
        } else if (b->fd < 0 && b->batch_n) {
            otel_lost(b);
        }
    }
    if (b->ostate == O_READING && now >= b->deadline_ms) {
        otel_lost(b);
        fail(a, b, "no answer from the collector", ETIMEDOUT, now);
    }
}

static void service(struct hy_alog *a, struct backend *b, short revents, uint64_t now)
{
    if (b->type == B_OTEL) {
        service_otel(a, b, revents, now);
        return;
    }
    if (b->type == B_TCP && b->fd >= 0 && b->connecting &&
        (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(a, b, "cannot connect", err, now);
        } else {
            b->connecting = false;
            hy_log(HY_LOG_INFO, "alog", "backend %s: connected", b->label);
            recovered(b);
        }
    }
    if (b->type == B_TCP && b->fd >= 0 && !b->connecting && (revents & (POLLIN | POLLHUP))) {
        char sink[512]; /* a collector has nothing to say: a read that ends says it left */
        ssize_t n = recv(b->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            fail(a, b, "the collector closed the connection", n == 0 ? ECONNRESET : errno, now);
    }
    take(b);
    if (b->fd < 0 && now >= b->next_try_ms && (b->out_off < b->out.len || b->type == B_TCP)) {
        if (b->type == B_FILE)
            file_open(a, b, now);
        else
            tcp_connect(a, b, now);
    }
    if (b->type == B_FILE)
        file_check(a, b, now);
    flush(a, b, now);
}

static void *writer(void *arg)
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
        flush(a, b, mono_ms());
    }
    return NULL;
}

int hy_alog_new(struct hy_metrics *m, struct hy_alog **out)
{
    *out = NULL;
    struct hy_alog *a = calloc(1, sizeof(*a));
    if (!a)
        return HY_ENOMEM;
    a->wake[0] = a->wake[1] = -1;
    pthread_mutex_init(&a->lock, NULL);
    atomic_init(&a->stop, false);
    a->rng = (uint64_t)wall_us() ^ 0x9e3779b97f4a7c15u;
    a->dropped = hy_metric_counter(m, "hypha_dp_access_log_dropped_total",
                                   "Access-log lines (MeshAccessLog) dropped because their "
                                   "backend's queue was full (a slow or unreachable backend)",
                                   1, "backend");
    int rc = a->dropped ? 0 : HY_ENOMEM;
    if (rc == 0 && pipe2(a->wake, O_NONBLOCK | O_CLOEXEC) < 0)
        rc = -errno;
    if (rc == 0 && (rc = -pthread_create(&a->thread, NULL, writer, a)) == 0)
        a->started = true;
    if (rc < 0) {
        hy_alog_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void hy_alog_free(struct hy_alog *a)
{
    if (!a)
        return;
    if (a->started) {
        atomic_store_explicit(&a->stop, true, memory_order_release);
        char x = 1;
        ssize_t w = write(a->wake[1], &x, 1);
        (void)w;
        pthread_join(a->thread, NULL);
    }
    for (struct backend *b = a->backends, *next; b; b = next) {
        next = b->next;
        backend_close(b);
        hy_buf_fini(&b->q);
        hy_buf_fini(&b->out);
        pthread_mutex_destroy(&b->lock);
        free(b->target);
        free(b);
    }
    for (int i = 0; i < 2; i++)
        if (a->wake[i] >= 0)
            close(a->wake[i]);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
