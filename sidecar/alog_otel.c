/* MeshAccessLog's OpenTelemetry backends: each record becomes an OTLP
 * LogRecord (body and attributes rendered from their formats, encoded with
 * protobuf-c after the OTLP logs schema, proto/otlp.proto) on the worker;
 * the writer POSTs what is queued as one ExportLogsServiceRequest to the
 * collector's /v1/logs (OTLP/HTTP, application/x-protobuf), one request
 * at a time on a kept-alive connection. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alog_int.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "poison.h"

void hy_alog_oval_fini(struct oval *v)
{
    hy_alog_fmt_free(v->fmt);
    free(v->y.data);
    for (size_t i = 0; i < v->n; i++) {
        hy_alog_oval_fini(&v->v[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->v);
    free(v->keys);
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

int hy_alog_otel_init(struct sink *k, const Hypha__V1__DpAccessLogBackend *d, char *err,
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
int hy_alog_otel_record(const struct sink *k, const struct hy_alog_rec *r, struct hy_buf *out)
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

/* ----- the writer's side: OTLP/HTTP, one POST /v1/logs at a time ----- */

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
                hy_alog_backend_close(b);
                return;
            }
            otel_lost(b);
            hy_alog_fail(a, b, "the collector closed the connection before answering", e, now);
            return;
        }
        if (b->ostate != O_READING || b->in.len + (size_t)n > OTEL_ANSWER_MAX ||
            hy_buf_append(&b->in, buf, (size_t)n) < 0) {
            otel_lost(b);
            hy_alog_fail(a, b, "the collector sent what was not asked for", EPROTO, now);
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
        hy_alog_recovered(b);
        b->batch_n = 0;
        b->out.len = b->out_off = 0;
        b->in.len = 0;
        b->ostate = O_IDLE;
    }
    if (close_after || status == 0)
        hy_alog_backend_close(b);
}

void hy_alog_otel_service(struct hy_alog *a, struct backend *b, short revents, uint64_t now)
{
    if (b->fd >= 0 && b->connecting && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            otel_lost(b);
            hy_alog_fail(a, b, "cannot connect", err, now);
        } else {
            b->connecting = false;
        }
    }
    if (b->fd >= 0 && !b->connecting && (revents & (POLLIN | POLLHUP | POLLERR)))
        otel_read(a, b, now);
    otel_take(b);
    if (b->ostate == O_SENDING && b->fd < 0 && now >= b->next_try_ms)
        hy_alog_tcp_connect(a, b, now);
    if (b->ostate == O_SENDING && b->fd < 0 && b->next_try_ms > now && b->batch_n) {
        otel_lost(b); /* backing off: this batch goes, the next waits for the connection */
        return;
    }
    if (b->ostate == O_SENDING) {
        hy_alog_flush(a, b, now);
        if (b->fd >= 0 && !b->connecting && b->out_off == b->out.len) {
            b->ostate = O_READING;
            b->deadline_ms = now + OTEL_ANSWER_MS;
        } else if (b->fd < 0 && b->batch_n) {
            otel_lost(b);
        }
    }
    if (b->ostate == O_READING && now >= b->deadline_ms) {
        otel_lost(b);
        hy_alog_fail(a, b, "no answer from the collector", ETIMEDOUT, now);
    }
}
