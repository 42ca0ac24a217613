/* The inbound's HTTP/2 request path on arbitrary bytes: they are the
 * client side of an nghttp2 server session (after the connection preface,
 * which is prepended), whose header fields go through the sidecar's own
 * request building (hy_l7_h2_req_field, hy_l7_h2_req_done, as l7_in.c
 * does), and every request built is written as HTTP/1.1 for the app
 * (hy_h1_write_head, framing as the inbound chooses it). What the writer
 * emits must then parse back, through the strict HTTP/1 parser, as one
 * request with the same method, target and authority: nothing an HTTP/2
 * peer sends may turn into bytes the app would read differently
 * (smuggling across the hop). No sockets. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "error.h"
#include "h1.h"
#include "proxy_l7.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct stream {
    struct hy_http_head h;
    const char *bad;
    bool end;
    struct stream *next; /* every stream of this run, freed at its end */
};

static struct stream *streams;

struct back {
    struct hy_http_head h;
    size_t heads;
};

static int back_head(void *u, struct hy_http_head *h, bool body)
{
    struct back *b = u;
    (void)body;
    b->heads++;
    hy_http_head_fini(&b->h);
    b->h = *h;
    memset(h, 0, sizeof(*h));
    return 0;
}

static int back_body(void *u, const uint8_t *p, size_t n)
{
    (void)u;
    (void)p;
    (void)n;
    return 0;
}

static int back_end(void *u, struct hy_http_head *t)
{
    (void)u;
    (void)t;
    return 0;
}

static const struct hy_h1_cb back_cb = {back_head, back_body, back_end};

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* What the inbound does once a request's head is complete. */
static void request(struct stream *st)
{
    if (st->bad || hy_l7_h2_req_done(&st->h, &st->bad) < 0)
        return;
    hy_h1_strip_hop(&st->h); /* never there from a conforming peer; harmless if so */
    long long cl = -2;
    const char *len = hy_http_head_get(&st->h, "content-length");
    if (len)
        cl = strtoll(len, NULL, 10);
    else if (!st->end)
        cl = -1;
    if (cl < -2)
        cl = -2;
    struct hy_buf out = {0};
    if (hy_h1_write_head(&out, &st->h, cl) != 0) {
        hy_buf_fini(&out);
        return; /* refused: the inbound answers 400 */
    }
    if (cl == -1)
        hy_h1_write_last_chunk(&out, NULL);
    else if (cl > 0 && cl < 65536) /* the body the head announced */
        for (long long i = 0; i < cl; i++)
            hy_buf_append(&out, "x", 1);
    if (cl >= 65536) {
        hy_buf_fini(&out);
        return;
    }
    struct back b = {0};
    struct hy_h1 *p = hy_h1_new(HY_H1_REQUEST, &back_cb, &b);
    if (!p)
        abort();
    size_t used = 0;
    int rc = hy_h1_feed(p, (const uint8_t *)out.data, out.len, &used);
    /* CONNECT and upgrades stop the parser at their head, by design */
    if (rc != 0 || b.heads != 1 || !same(b.h.method, st->h.method) ||
        (!hy_h1_upgrade(p) && used != out.len) || !same(b.h.target, st->h.target) ||
        !same(b.h.authority, st->h.authority))
        abort(); /* the app would read something else than what was sent */
    hy_h1_free(p);
    hy_http_head_fini(&b.h);
    hy_buf_fini(&out);
}

static int on_begin(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    (void)u;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->next = streams;
    streams = st;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u)
{
    (void)flags;
    (void)u;
    struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && !st->bad)
        hy_l7_h2_req_field(&st->h, name, nlen, value, vlen, &st->bad);
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    (void)u;
    struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        st->end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
        request(st);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nghttp2_session_callbacks *cb;
    if (!cb) {
        if (nghttp2_session_callbacks_new(&cb) != 0)
            abort();
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    }
    nghttp2_session *s;
    if (nghttp2_session_server_new(&s, cb, NULL) != 0)
        abort();
    nghttp2_session_mem_recv(s, (const uint8_t *)NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
    nghttp2_session_mem_recv(s, data, size);
    for (;;) { /* what the server would answer (SETTINGS acks, GOAWAY) is drained */
        const uint8_t *out;
        if (nghttp2_session_mem_send(s, &out) <= 0)
            break;
    }
    nghttp2_session_del(s);
    while (streams) {
        struct stream *st = streams;
        streams = st->next;
        hy_http_head_fini(&st->h);
        free(st);
    }
    return 0;
}
