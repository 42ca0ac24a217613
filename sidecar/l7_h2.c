/* HTTP/2 between sidecars: an nghttp2 session over a proxied mTLS
 * connection, client (a pooled connection to a peer's inbound) or server
 * (the inbound's side). Input comes decrypted from proxy_conn.c; output is
 * gathered from nghttp2 once per loop turn and written in one TLS write
 * per connection. Flow control is ours: received DATA is acknowledged
 * (nghttp2_session_consume) only once it went on, so a slow app slows its
 * peer instead of filling memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "log.h"
#include "proxy_l7.h"
#include "poison.h"

static nghttp2_session_callbacks *client_cbs, *server_cbs;
static nghttp2_option *opts;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ----- requests from HTTP/2 fields ----- */

int hy_l7_h2_req_field(struct hy_http_head *h, const uint8_t *name, size_t nlen,
                       const uint8_t *value, size_t vlen, const char **why)
{
    const char *n = (const char *)name, *v = (const char *)value;
    int rc = 0;
    *why = NULL;
    if (nlen && n[0] == ':') {
        char **dst = NULL;
        if (nlen == 7 && !memcmp(n, ":method", 7))
            dst = &h->method;
        else if (nlen == 5 && !memcmp(n, ":path", 5))
            dst = &h->target;
        else if (nlen == 10 && !memcmp(n, ":authority", 10))
            dst = &h->authority;
        else if (nlen == 7 && !memcmp(n, ":scheme", 7))
            dst = &h->scheme;
        if (!dst) {
            *why = "unknown pseudo-header";
            return HY_EINVAL;
        }
        if (*dst) {
            *why = "repeated pseudo-header";
            return HY_EINVAL;
        }
        if (memchr(v, '\0', vlen)) {
            *why = "NUL in a pseudo-header";
            return HY_EINVAL;
        }
        rc = hy_http_head_set_str(dst, v, vlen);
    } else {
        rc = hy_http_head_add(h, n, nlen, v, vlen);
    }
    if (rc == HY_ETOOBIG)
        *why = "too many or too large header fields";
    else if (rc < 0)
        *why = "out of memory";
    return rc;
}

int hy_l7_h2_req_done(struct hy_http_head *h, const char **why)
{
    h->request = true;
    h->version = 20;
    *why = NULL;
    if (!h->method) {
        *why = "no :method";
        return HY_EINVAL;
    }
    if (strcmp(h->method, "CONNECT") != 0 && (!h->target || !h->target[0])) {
        *why = "no :path";
        return HY_EINVAL;
    }
    const char *host = hy_http_head_get(h, "host");
    if (!h->authority && host && hy_http_head_set_str(&h->authority, host, strlen(host)) < 0) {
        *why = "out of memory";
        return HY_ENOMEM;
    }
    hy_http_head_remove(h, "host");
    if (!h->authority || !h->authority[0]) {
        *why = "no :authority";
        return HY_EINVAL;
    }
    const char *colon = strrchr(h->authority, ':');
    if (!strcmp(h->method, "CONNECT") && (!colon || colon == h->authority || !colon[1] ||
                                          strspn(colon + 1, "0123456789") != strlen(colon + 1))) {
        *why = "CONNECT's :authority is not host:port";
        return HY_EINVAL;
    }
    if (!strcmp(h->method, "CONNECT") && !h->target &&
        hy_http_head_set_str(&h->target, h->authority, strlen(h->authority)) < 0) {
        *why = "out of memory";
        return HY_ENOMEM; /* CONNECT's authority-form target, as HTTP/1.1 writes it */
    }
    return 0;
}

/* ----- callbacks ----- */

static bool is_request_headers(const nghttp2_frame *f)
{
    return f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct hy_l7_h2 *h2 = u;
    if (h2->kind != HY_L7_SERVER || !is_request_headers(f))
        return 0;
    void *ss = h2->sops->new (h2, f->hd.stream_id);
    if (!ss)
        return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                         NGHTTP2_INTERNAL_ERROR) == 0
                   ? 0
                   : NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, ss);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u)
{
    struct hy_l7_h2 *h2 = u;
    (void)flags;
    void *su = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!su || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (h2->kind == HY_L7_SERVER) {
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            h2->sops->field(su, name, nlen, value, vlen, false);
        else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && !(nlen && name[0] == ':'))
            h2->sops->field(su, name, nlen, value, vlen, true); /* trailers */
        return 0;
    }
    struct hy_l7_cs *cs = su;
    if (cs->got_head) { /* trailers (gRPC's grpc-status): passed on at the end */
        if (nlen && name[0] == ':')
            return 0;
        if (hy_http_head_add(&cs->trailers, (const char *)name, nlen, (const char *)value, vlen) <
            0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (nlen == 7 && !memcmp(name, ":status", 7)) {
        unsigned st = 0;
        for (size_t i = 0; i < vlen && i < 4; i++)
            st = st * 10 + (unsigned)(value[i] - '0');
        cs->resp.status = st;
        return 0;
    }
    if (nlen && name[0] == ':')
        return 0;
    if (hy_http_head_add(&cs->resp, (const char *)name, nlen, (const char *)value, vlen) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset: a failed try */
    return 0;
}

/* Detaches cs from its session (the stream may go on, unseen). */
static void cs_detach(struct hy_l7_cs *cs)
{
    struct hy_l7_h2 *h2 = cs->h2;
    if (!h2)
        return;
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        h2->streams = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    cs->prev = cs->next = NULL;
    if (h2->s && cs->id > 0)
        nghttp2_session_set_stream_user_data(h2->s, cs->id, NULL);
    h2->nstreams--;
    cs->h2 = NULL;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct hy_l7_h2 *h2 = u;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (f->hd.type != NGHTTP2_HEADERS && !(f->hd.type == NGHTTP2_DATA && end))
        return 0;
    void *su = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!su)
        return 0;
    if (h2->kind == HY_L7_SERVER) {
        if (is_request_headers(f))
            h2->sops->head(su, end);
        else if (end)
            h2->sops->end(su);
        return 0;
    }
    struct hy_l7_cs *cs = su;
    if (f->hd.type == NGHTTP2_HEADERS && !cs->got_head) {
        if (cs->resp.status >= 100 && cs->resp.status < 200) { /* interim: wait for the final */
            hy_http_head_fini(&cs->resp);
            cs->resp.request = false;
            return 0;
        }
        cs->got_head = true;
        cs->resp.version = 20;
        if (end)
            cs_detach(cs);
        cs->ops->head(cs, end);
        return 0;
    }
    if (end) {
        cs_detach(cs);
        cs->ops->end(cs);
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *u)
{
    struct hy_l7_h2 *h2 = u;
    (void)flags;
    void *su = nghttp2_session_get_stream_user_data(s, id);
    if (!su) { /* a stream we gave up on: its bytes still count */
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    if (h2->kind == HY_L7_SERVER)
        h2->sops->data(su, data, len);
    else
        ((struct hy_l7_cs *)su)->ops->data(su, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *u)
{
    struct hy_l7_h2 *h2 = u;
    void *su = nghttp2_session_get_stream_user_data(s, id);
    if (!su)
        return 0;
    if (h2->kind == HY_L7_SERVER) {
        nghttp2_session_set_stream_user_data(s, id, NULL);
        h2->sops->closed(su);
        return 0;
    }
    struct hy_l7_cs *cs = su;
    cs_detach(cs);
    cs->ops->fail(cs, error == NGHTTP2_REFUSED_STREAM ? HY_L7_TRY_REFUSED_STREAM : HY_L7_TRY_RESET);
    return 0;
}

static ssize_t on_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *u)
{
    struct hy_l7_h2 *h2 = u;
    if (!src->ptr) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    if (h2->kind == HY_L7_SERVER)
        return h2->sops->read(src->ptr, buf, len, flags);
    struct hy_l7_cs *cs = src->ptr;
    bool eof = false;
    ssize_t n = cs->ops->read(cs, buf, len, &eof);
    if (eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (cs->req_trailers && cs->req_trailers->n &&
            hy_l7_h2_trailer(s, id, cs->req_trailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return n;
}

static void init_once(void)
{
    nghttp2_session_callbacks *cb[2];
    for (int i = 0; i < 2; i++) {
        if (nghttp2_session_callbacks_new(&cb[i]) != 0)
            abort();
        nghttp2_session_callbacks_set_on_header_callback(cb[i], on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb[i], on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb[i], on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb[i], on_stream_close);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb[i], on_begin_headers);
    }
    client_cbs = cb[0];
    server_cbs = cb[1];
    if (nghttp2_option_new(&opts) != 0)
        abort();
    nghttp2_option_set_no_auto_window_update(opts, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opts, HY_L7_MAX_STREAMS);
}

/* ----- sessions ----- */

static struct hy_l7_h2 *h2_new(struct hy_l7_worker *lw, struct hy_px_conn *c, bool server,
                               const struct hy_l7_wire *wire)
{
    pthread_once(&once, init_once);
    struct hy_l7_h2 *h2 = calloc(1, sizeof(*h2));
    if (!h2)
        return NULL;
    h2->kind = server ? HY_L7_SERVER : HY_L7_CLIENT;
    h2->c = c;
    h2->lw = lw;
    if (wire)
        h2->wire = *wire;
    int rc = server ? nghttp2_session_server_new2(&h2->s, server_cbs, h2, opts)
                    : nghttp2_session_client_new2(&h2->s, client_cbs, h2, opts);
    if (rc != 0) {
        free(h2);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, HY_L7_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HY_L7_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h2->s, NGHTTP2_FLAG_NONE, iv, server ? 2 : 3) != 0 ||
        nghttp2_session_set_local_window_size(h2->s, NGHTTP2_FLAG_NONE, 0, HY_L7_CONN_WINDOW) !=
            0) {
        nghttp2_session_del(h2->s);
        free(h2);
        return NULL;
    }
    if (!wire)
        c->l7 = h2;
    return h2;
}

struct hy_l7_h2 *hy_l7_h2_client_new(struct hy_l7_worker *lw, struct hy_px_conn *c)
{
    return h2_new(lw, c, false, NULL);
}

struct hy_l7_h2 *hy_l7_h2_server_new(struct hy_l7_worker *lw, struct hy_px_conn *c)
{
    struct hy_l7_h2 *h2 = h2_new(lw, c, true, NULL);
    if (h2) { /* nothing goes out before the caller's preface (l7_conf.c) */
        h2->sniff = true;
        h2->sops = &hy_l7_in_sops;
    }
    return h2;
}

struct hy_l7_h2 *hy_l7_h2_plain_new(struct hy_l7_worker *lw, struct hy_px_conn *c, bool server,
                                    const struct hy_l7_sops *sops, const struct hy_l7_wire *wire)
{
    struct hy_l7_h2 *h2 = h2_new(lw, c, server, wire);
    if (h2) {
        h2->sops = sops;
        h2->ready = true;
    }
    return h2;
}

size_t hy_l7_h2_fields(nghttp2_nv *nv, size_t max, char *names, const struct hy_http_head *h)
{
    size_t k = 0, off = 0;
    for (size_t i = 0; i < h->n && k < max; i++) {
        const struct hy_http_field *f = &h->fields[i];
        for (size_t j = 0; j < f->name_len; j++)
            names[off + j] =
                (char)((f->name[j] >= 'A' && f->name[j] <= 'Z') ? f->name[j] + 32 : f->name[j]);
        nv[k++] = (nghttp2_nv){(uint8_t *)names + off, (uint8_t *)f->value, f->name_len,
                               f->value_len, NGHTTP2_NV_FLAG_NONE};
        off += f->name_len;
    }
    return k;
}

int hy_l7_h2_trailer(nghttp2_session *s, int32_t id, const struct hy_http_head *t)
{
    nghttp2_nv nv[HY_HTTP_MAX_FIELDS];
    char *names = malloc(t->bytes + 1);
    if (!names)
        return HY_ENOMEM;
    size_t k = hy_l7_h2_fields(nv, HY_HTTP_MAX_FIELDS, names, t);
    int rc = nghttp2_submit_trailer(s, id, nv, k);
    free(names);
    return rc == 0 ? 0 : HY_EINVAL;
}

void hy_l7_h2_dirty(struct hy_l7_h2 *h2)
{
    if (h2->dirty || h2->dead)
        return;
    h2->dirty = true;
    h2->dirty_next = h2->lw->dirty;
    h2->lw->dirty = h2;
}

void hy_l7_h2_free(struct hy_l7_h2 *h2, enum hy_l7_try_end why)
{
    h2->dead = true;
    if (h2->dirty) {
        struct hy_l7_h2 **p = &h2->lw->dirty;
        while (*p != h2)
            p = &(*p)->dirty_next;
        *p = h2->dirty_next;
        h2->dirty = false;
    }
    if (h2->kind == HY_L7_CLIENT && h2->a) { /* out of the pool */
        if (h2->prev)
            h2->prev->next = h2->next;
        else
            h2->a->conns = h2->next;
        if (h2->next)
            h2->next->prev = h2->prev;
    }
    while (h2->streams) {
        struct hy_l7_cs *cs = h2->streams;
        cs_detach(cs);
        cs->ops->fail(cs, why);
    }
    while (h2->sstreams) {
        struct hy_l7_ss *ss = h2->sstreams;
        hy_l7_ss_closed(ss); /* unlinks it */
    }
    nghttp2_session_del(h2->s);
    free(h2->peer);
    free(h2);
}

static int tls_write(void *u, const uint8_t *p, size_t n)
{
    struct hy_px_conn *c = u;
    if (hy_px_tls_write(c, p, n) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return HY_EINVAL;
    }
    return 0;
}

static void tls_close(void *u, const char *result, const char *why)
{
    if (why)
        hy_px_conn_close(u, result, "%s", why);
    else
        hy_px_conn_close(u, result, NULL);
}

/* Writes what h2 has to send in one write (TLS: one record run). */
static void flush(struct hy_l7_h2 *h2)
{
    struct hy_l7_wire w = h2->wire;
    if (!w.write)
        w = (struct hy_l7_wire){tls_write, tls_close, h2->c};
    struct hy_buf *out = &h2->lw->out;
    out->len = 0;
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(h2->s, &d);
        if (n < 0) {
            w.close(w.u, "error", nghttp2_strerror((int)n));
            return;
        }
        if (n == 0)
            break;
        if (hy_buf_append(out, d, (size_t)n) < 0) {
            w.close(w.u, "error", "out of memory writing HTTP/2");
            return;
        }
        if (out->len >= 4 * HY_PX_READ_SIZE) { /* bound one write */
            if (w.write(w.u, (const uint8_t *)out->data, out->len) < 0)
                return;
            out->len = 0;
        }
    }
    if (out->len && w.write(w.u, (const uint8_t *)out->data, out->len) < 0)
        return;
    if (!nghttp2_session_want_read(h2->s) && !nghttp2_session_want_write(h2->s))
        w.close(w.u, "ok", NULL);
}

void hy_l7_h2_flush_all(struct hy_l7_worker *lw)
{
    /* one at a time off the list, so a session freed meanwhile is never
     * met; a flush may make another dirty (a stream's end starts the next
     * request), within a bound */
    for (unsigned n = 0; lw->dirty && n < 100000; n++) {
        struct hy_l7_h2 *h2 = lw->dirty;
        lw->dirty = h2->dirty_next;
        h2->dirty = false;
        if (h2->ready && !h2->dead)
            flush(h2);
    }
}

int hy_l7_h2_recv(struct hy_l7_h2 *h2, const uint8_t *p, size_t n)
{
    ssize_t r = nghttp2_session_mem_recv(h2->s, p, n);
    if (r < 0) {
        if (h2->c)
            snprintf(h2->c->why, sizeof(h2->c->why), "%s", nghttp2_strerror((int)r));
        return HY_EINVAL;
    }
    if (!h2->dead)
        hy_l7_h2_dirty(h2);
    return 0;
}

bool hy_l7_h2_usable(const struct hy_l7_h2 *h2)
{
    if (h2->dead || (h2->c && h2->c->closing))
        return false;
    if (!h2->ready)
        return h2->nstreams < HY_L7_MAX_STREAMS;
    uint32_t max =
        nghttp2_session_get_remote_settings(h2->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return nghttp2_session_check_request_allowed(h2->s) && h2->nstreams < max &&
           h2->nstreams < HY_L7_MAX_STREAMS;
}

/* A name lowercased into buf (HTTP/2 wants them so). */
static size_t lower(char *buf, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    return n;
}

int hy_l7_h2_submit(struct hy_l7_h2 *h2, struct hy_l7_cs *cs, const struct hy_http_head *req,
                    bool body)
{
    nghttp2_nv nv[HY_HTTP_MAX_FIELDS + 4];
    char *names = malloc(req->bytes + 1);
    size_t k = 0, off = 0;
    if (!names)
        return HY_ENOMEM;
#define NV(n, v, vl)                                                                               \
    nv[k++] = (nghttp2_nv)                                                                         \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE                  \
    }
    bool connect = !strcmp(req->method, "CONNECT");
    NV(":method", req->method, strlen(req->method));
    if (!connect) {
        const char *scheme = req->scheme ? req->scheme : "http";
        NV(":scheme", scheme, strlen(scheme));
        NV(":path", req->target, strlen(req->target));
    }
    if (req->authority)
        NV(":authority", req->authority, strlen(req->authority));
#undef NV
    for (size_t i = 0; i < req->n && k < sizeof(nv) / sizeof(nv[0]); i++) {
        const struct hy_http_field *f = &req->fields[i];
        lower(names + off, f->name, f->name_len);
        nv[k++] = (nghttp2_nv){(uint8_t *)names + off, (uint8_t *)f->value, f->name_len,
                               f->value_len, NGHTTP2_NV_FLAG_NONE};
        off += f->name_len;
    }
    nghttp2_data_provider dp = {.source.ptr = cs, .read_callback = on_read};
    int32_t id = nghttp2_submit_request(h2->s, NULL, nv, k, body ? &dp : NULL, cs);
    free(names);
    if (id < 0)
        return HY_EINVAL;
    cs->h2 = h2;
    cs->id = id;
    cs->got_head = false;
    hy_http_head_fini(&cs->resp);
    hy_http_head_fini(&cs->trailers);
    cs->prev = NULL;
    cs->next = h2->streams;
    if (h2->streams)
        h2->streams->prev = cs;
    h2->streams = cs;
    h2->nstreams++;
    hy_l7_h2_dirty(h2);
    return 0;
}

void hy_l7_h2_cancel(struct hy_l7_cs *cs)
{
    struct hy_l7_h2 *h2 = cs->h2;
    if (!h2)
        return;
    int32_t id = cs->id;
    cs_detach(cs);
    if (!h2->dead) {
        nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        hy_l7_h2_dirty(h2);
    }
}

void hy_l7_h2_resume(struct hy_l7_cs *cs)
{
    if (cs->h2 && !cs->h2->dead) {
        nghttp2_session_resume_data(cs->h2->s, cs->id);
        hy_l7_h2_dirty(cs->h2);
    }
}

void hy_l7_h2_consume(struct hy_l7_h2 *h2, int32_t id, size_t n)
{
    if (h2 && !h2->dead && n) {
        nghttp2_session_consume(h2->s, id, n);
        hy_l7_h2_dirty(h2);
    }
}
