/* hy_h1 on arbitrary bytes, as requests and as responses, fed in arbitrary
 * splits: what the sidecar does with every byte an app sends or answers.
 * Every head and every trailer section parsed goes through the writer and
 * the parser again and must come back the same (the writer's own framing
 * and Host aside, and the scheme and version it does not write).
 * Input: byte 0 chooses the method a response answers (bit 0: HEAD, bit 1:
 * CONNECT), byte 1 seeds the split sizes, the rest is the stream. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "h1.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    enum hy_h1_kind kind;
    const char *expect;
    size_t heads, ends;
    struct hy_http_head got; /* the last head, for the round trip */
    struct hy_http_head trailers;
    bool had_trailers;
};

static bool framing(const char *name)
{
    return !strcasecmp(name, "Host") || !strcasecmp(name, "Content-Length") ||
           !strcasecmp(name, "Transfer-Encoding");
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* a and b alike but for what the writer owns or drops. */
static bool same_head(const struct hy_http_head *a, const struct hy_http_head *b)
{
    if (a->request != b->request || a->status != b->status || !same_str(a->method, b->method) ||
        !same_str(a->target, b->target) || !same_str(a->authority, b->authority))
        return false;
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (framing(a->fields[i].name))
            continue;
        while (j < b->n && framing(b->fields[j].name))
            j++;
        if (j == b->n || a->fields[i].name_len != b->fields[j].name_len ||
            a->fields[i].value_len != b->fields[j].value_len ||
            memcmp(a->fields[i].name, b->fields[j].name, a->fields[i].name_len) ||
            memcmp(a->fields[i].value, b->fields[j].value, a->fields[i].value_len))
            return false;
        j++;
    }
    while (j < b->n && framing(b->fields[j].name))
        j++;
    return j == b->n;
}

static int re_head(void *u, struct hy_http_head *h, bool body)
{
    (void)body;
    struct run *r = u;
    r->heads++;
    hy_http_head_fini(&r->got);
    r->got = *h;
    memset(h, 0, sizeof(*h));
    return 0;
}

static int re_body(void *u, const uint8_t *p, size_t n)
{
    (void)u;
    (void)p;
    (void)n;
    return 0;
}

static int re_end(void *u, struct hy_http_head *trailers)
{
    struct run *r = u;
    r->ends++;
    if (trailers) {
        r->had_trailers = true;
        hy_http_head_fini(&r->trailers);
        r->trailers = *trailers;
        memset(trailers, 0, sizeof(*trailers));
    }
    return 0;
}

static const struct hy_h1_cb re_cb = {re_head, re_body, re_end};

/* Parses buf whole with a fresh parser like r's; the run's results. */
static int reparse(const struct run *r, const struct hy_buf *buf, struct run *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = r->kind;
    struct hy_h1 *p = hy_h1_new(r->kind, &re_cb, out);
    if (!p)
        return HY_ENOMEM;
    hy_h1_expect(p, r->expect);
    size_t used = 0;
    int rc = hy_h1_feed(p, (const uint8_t *)buf->data, buf->len, &used);
    if (!rc && !hy_h1_upgrade(p) && used != buf->len)
        abort(); /* one message, all of it taken */
    hy_h1_free(p);
    return rc;
}

static void run_fini(struct run *r)
{
    hy_http_head_fini(&r->got);
    hy_http_head_fini(&r->trailers);
}

static int on_head(void *u, struct hy_http_head *h, bool body)
{
    struct run *r = u;
    r->heads++;
    if (h->request != (r->kind == HY_H1_REQUEST) || (h->request && (!h->method || !h->target)) ||
        (!h->request && (h->status < 100 || h->status > 599)) ||
        (h->version != 10 && h->version != 11) || h->n > HY_HTTP_MAX_FIELDS)
        abort();
    struct hy_buf out = {0};
    int rc = hy_h1_write_head(&out, h, body ? -1 : -2);
    if (rc == HY_EINVAL && h->request && !h->authority && h->version == 10) {
        hy_buf_fini(&out); /* an HTTP/1.0 request without Host has no HTTP/1.1 form */
        return 0;
    }
    if (rc)
        abort(); /* everything parsed can be written */
    if (body)
        hy_buf_puts(&out, "0\r\n\r\n");
    struct run again;
    rc = reparse(r, &out, &again);
    bool grew = out.len > HY_HTTP_MAX_HEAD || h->n >= HY_HTTP_MAX_FIELDS;
    if (rc == HY_ETOOBIG && grew) /* "X:a" comes back as "X: a", Host may be added */
        goto out;
    if (rc || again.heads != 1 || !same_head(h, &again.got))
        abort();
out:
    run_fini(&again);
    hy_buf_fini(&out);
    return 0;
}

static int on_body(void *u, const uint8_t *p, size_t n)
{
    (void)u;
    if (!n || !p)
        abort();
    return 0;
}

static int on_end(void *u, struct hy_http_head *trailers)
{
    struct run *r = u;
    r->ends++;
    if (!trailers)
        return 0;
    struct hy_buf out = {0};
    hy_buf_puts(&out, r->kind == HY_H1_REQUEST
                          ? "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                          : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    if (hy_h1_write_last_chunk(&out, trailers))
        abort();
    struct run again, plain = {.kind = r->kind};
    int rc = reparse(&plain, &out, &again);
    if (!(rc == HY_ETOOBIG && out.len > HY_HTTP_MAX_HEAD)) {
        /* trailers with only framing fields come back as none */
        bool only_framing = true;
        for (size_t i = 0; i < trailers->n; i++)
            only_framing &= framing(trailers->fields[i].name);
        if (rc || again.ends != 1 || again.had_trailers == only_framing ||
            (again.had_trailers && !same_head(trailers, &again.trailers)))
            abort();
    }
    run_fini(&again);
    hy_buf_fini(&out);
    return 0;
}

static const struct hy_h1_cb cb = {on_head, on_body, on_end};

static void run(enum hy_h1_kind kind, const char *expect, uint8_t seed, const uint8_t *data,
                size_t size)
{
    struct run r = {.kind = kind, .expect = expect};
    struct hy_h1 *p = hy_h1_new(kind, &cb, &r);
    if (!p)
        return;
    hy_h1_expect(p, expect);
    uint32_t x = seed * 2654435761u + 1;
    size_t off = 0;
    int rc = 0;
    while (off < size && !rc) {
        x = x * 1103515245u + 12345u;
        size_t n = seed == 0 ? size - off : 1 + (x >> 16) % (seed < 16 ? 4 : 300);
        if (n > size - off)
            n = size - off;
        size_t used = 0;
        rc = hy_h1_feed(p, data + off, n, &used);
        if (used > n)
            abort();
        off += used;
        if (rc || hy_h1_upgrade(p))
            break;
        if (used < n) {
            hy_h1_resume(p); /* a message ended: the caller answers, then goes on */
            if (expect)
                hy_h1_expect(p, expect);
        }
    }
    if (!rc && !hy_h1_upgrade(p))
        rc = hy_h1_finish(p);
    const char *why = NULL;
    unsigned status = hy_h1_error(p, &why);
    if (rc) {
        if ((rc != HY_EINVAL && rc != HY_ETOOBIG && rc != HY_ENOMEM) || !why || !why[0] ||
            hy_h1_keep_alive(p))
            abort();
        if (kind == HY_H1_RESPONSE ? (status != 502 && status != 500)
                                   : (status != 400 && status != 431 && status != 501 &&
                                      status != 505 && status != 500))
            abort();
    } else if (status || !why || why[0]) {
        abort();
    }
    hy_h1_free(p);
    run_fini(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *expect = data[0] & 1 ? "HEAD" : data[0] & 2 ? "CONNECT" : "GET";
    run(HY_H1_REQUEST, NULL, data[1], data + 2, size - 2);
    run(HY_H1_RESPONSE, expect, data[1], data + 2, size - 2);
    return 0;
}
