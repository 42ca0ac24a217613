/* MeshAccessLog in the sidecar (alog.h): a record per connection and per
 * request, formatted for each backend of the side it belongs to (what a
 * snapshot's access logs compile to is kept with the snapshot) and queued
 * in the backend's bounded queue for the writer (alog_writer.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alog_int.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_int.h"
#include "proxy_l7.h"
#include "poison.h"

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

static void sink_fini(struct sink *k)
{
    hy_alog_fmt_free(k->fmt);
    if (k->body)
        hy_alog_oval_fini(k->body);
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
            rc = hy_alog_otel_init(&k, d, err, sizeof(err));
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

static void emit(struct hy_alog *a, const struct side *s, const struct hy_alog_rec *r)
{
    struct hy_buf line = {0};
    for (size_t i = 0; i < s->n; i++) {
        line.len = 0;
        int rc = s->v[i].b->type == B_OTEL ? hy_alog_otel_record(&s->v[i], r, &line)
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
        .downstream_remote = hy_px_conn_peer(c),
        .flags = hy_alog_flags_of(c->result),
        .details = c->result,
    };
    if (c->dir == HY_PX_IN) {
        r.src_service = service_of_id(c->id, src, sizeof(src));
        r.src_addr = r.downstream_remote;
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
        .downstream_remote = d->from ? hy_px_conn_peer(d->from) : NULL,
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
        r.src_addr = r.downstream_remote;
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

/* ----- life ----- */

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
    if (rc == 0 && (rc = -pthread_create(&a->thread, NULL, hy_alog_writer, a)) == 0)
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
        hy_alog_backend_close(b);
        hy_buf_fini(&b->q);
        hy_buf_fini(&b->out);
        hy_buf_fini(&b->in);
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
