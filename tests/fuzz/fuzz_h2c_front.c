/* The outbound's h2c front on arbitrary bytes: they are what an app sends
 * to an http2/grpc outbound (after the connection preface, which is
 * prepended), read by the sidecar's own plain-wire HTTP/2 server session
 * (l7_h2.c, hy_l7_h2_plain_new, as l7_front.c makes it), whose stream
 * handler builds each request as the front does (hy_l7_h2_req_field,
 * the request's trailers, hy_l7_h2_req_done) and answers every complete
 * one with a head, a body and trailers (hy_l7_h2_fields,
 * hy_l7_h2_trailer), flushed to a wire that keeps nothing. Checked: a
 * request that passes has a method, an authority and a path (CONNECT
 * aside), and no trailer field is a pseudo-header. No sockets. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "error.h"
#include "proxy_l7.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct stream {
    struct hy_l7_h2 *h2;
    int32_t id;
    struct hy_http_head req, trailers, resp_trailers;
    const char *bad;
    bool answered, sent_body;
    struct stream *next; /* every stream of this run, freed at its end */
};

static struct stream *streams;
static size_t wrote;

static int wire_write(void *u, const uint8_t *p, size_t n)
{
    (void)u;
    (void)p;
    wrote += n;
    return 0;
}

static void wire_close(void *u, const char *result, const char *why)
{
    (void)u;
    (void)result;
    (void)why;
}

static void *s_new(struct hy_l7_h2 *h2, int32_t id)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->h2 = h2;
    st->id = id;
    st->next = streams;
    streams = st;
    return st;
}

static int s_field(void *u, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen,
                   bool trailer)
{
    struct stream *st = u;
    if (trailer) {
        if (nlen && name[0] == ':')
            abort(); /* l7_h2.c passes no pseudo-header as a trailer */
        if (hy_http_head_add(&st->trailers, (const char *)name, nlen, (const char *)value, vlen) <
            0)
            st->bad = "trailers";
    } else if (!st->bad) {
        hy_l7_h2_req_field(&st->req, name, nlen, value, vlen, &st->bad);
    }
    return 0;
}

static ssize_t provider(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *u)
{
    (void)u;
    struct stream *st = src->ptr;
    size_t n = 0;
    if (!st->sent_body && len >= 2) {
        memcpy(buf, "ok", 2);
        n = 2;
        st->sent_body = true;
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->resp_trailers.n && hy_l7_h2_trailer(s, id, &st->resp_trailers) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return (ssize_t)n;
}

static void answer(struct stream *st)
{
    if (st->answered)
        return;
    st->answered = true;
    struct hy_http_head h = {.status = st->bad ? 400 : 200, .version = 20};
    hy_http_head_add(&h, "content-type", 12, "application/grpc", 16);
    /* the request's trailers come back as the response's (names as they came) */
    for (size_t i = 0; i < st->trailers.n; i++)
        hy_http_head_add(&st->resp_trailers, st->trailers.fields[i].name,
                         st->trailers.fields[i].name_len, st->trailers.fields[i].value,
                         st->trailers.fields[i].value_len);
    hy_http_head_add(&st->resp_trailers, "grpc-status", 11, "0", 1);
    nghttp2_nv nv[HY_HTTP_MAX_FIELDS + 1];
    char *names = malloc(h.bytes + 1);
    if (names) {
        nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)(st->bad ? "400" : "200"), 7, 3,
                             NGHTTP2_NV_FLAG_NONE};
        size_t k = 1 + hy_l7_h2_fields(nv + 1, HY_HTTP_MAX_FIELDS, names, &h);
        nghttp2_data_provider dp = {.source.ptr = st, .read_callback = provider};
        nghttp2_submit_response(st->h2->s, st->id, nv, k, &dp);
        free(names);
        hy_l7_h2_dirty(st->h2);
    }
    hy_http_head_fini(&h);
}

static void s_head(void *u, bool end)
{
    struct stream *st = u;
    if (!st->bad && hy_l7_h2_req_done(&st->req, &st->bad) == 0) {
        if (!st->req.method || !st->req.authority || !st->req.authority[0] || !st->req.target)
            abort(); /* passed without what the front routes on */
    }
    if (end || st->bad)
        answer(st);
}

static void s_data(void *u, const uint8_t *p, size_t n)
{
    struct stream *st = u;
    (void)p;
    hy_l7_h2_consume(st->h2, st->id, n);
}

static void s_end(void *u)
{
    answer(u);
}

static void s_closed(void *u)
{
    struct stream *st = u;
    st->h2 = NULL;
}

static ssize_t s_read(void *u, uint8_t *buf, size_t len, uint32_t *flags)
{
    (void)u;
    (void)buf;
    (void)len;
    (void)flags;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static const struct hy_l7_sops sops = {s_new, s_field, s_head, s_data, s_end, s_closed, s_read};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hy_l7_worker lw;
    memset(&lw, 0, sizeof(lw));
    struct hy_l7_wire wire = {wire_write, wire_close, NULL};
    struct hy_l7_h2 *h2 = hy_l7_h2_plain_new(&lw, NULL, true, &sops, &wire);
    if (!h2)
        return 0;
    static const char magic[] = NGHTTP2_CLIENT_MAGIC;
    if (hy_l7_h2_recv(h2, (const uint8_t *)magic, NGHTTP2_CLIENT_MAGIC_LEN) == 0) {
        /* in pieces, so frames split across reads are met too */
        size_t off = 0;
        while (off < size) {
            size_t n = size - off < 997 ? size - off : 997;
            if (hy_l7_h2_recv(h2, data + off, n) < 0)
                break;
            hy_l7_h2_flush_all(&lw);
            off += n;
        }
        hy_l7_h2_flush_all(&lw);
    }
    hy_l7_h2_free(h2, HY_L7_TRY_RESET);
    while (streams) {
        struct stream *st = streams;
        streams = st->next;
        hy_http_head_fini(&st->req);
        hy_http_head_fini(&st->trailers);
        hy_http_head_fini(&st->resp_trailers);
        free(st);
    }
    hy_buf_fini(&lw.out);
    return 0;
}
