/* libFuzzer target for the HTTP client's response reader
 * (cli/http_client_read.c): any bytes a server may send, no crash, no
 * leak, and the same answer however the bytes are split into reads.
 *
 * The first byte of an input sets how it is read; the rest is what the
 * server sent:
 *   bits 0-3  size of each read: 0 = as much as the reader asks for, else
 *             one of read_sizes[] (the input is then read a second time
 *             whole, and both answers must agree)
 *   bit 4     the request was HEAD (no body expected)
 *   bit 5     a small body limit (SMALL_MAX) instead of HY_HTTPC_MAX_BODY
 *   bit 7     the stream ends with a timeout instead of an orderly close
 * So '@' (0x40) reads a plain answer to GET in one go, 'A'..'O' split it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "http_client_int.h"
#include "poison.h"

#define SMALL_MAX 100

static const size_t read_sizes[16] = {0,  1,   2,   3,    5,    7,    8,     13,
                                      64, 100, 255, 1000, 4095, 4096, 16383, 16385};

/* A stream in memory: hands out at most chunk bytes per read. */
struct source {
    const uint8_t *p;
    size_t n, off, chunk;
    int end; /* what a read returns once everything was read: 0 or -ETIMEDOUT */
};

static int source_read(void *arg, void *p, size_t n)
{
    struct source *s = arg;
    if (n == 0)
        abort(); /* a reader that asks for nothing would take 0 for the end */
    if (s->off == s->n)
        return s->end;
    size_t take = s->n - s->off;
    if (take > n)
        take = n;
    if (s->chunk && take > s->chunk)
        take = s->chunk;
    memcpy(p, s->p + s->off, take);
    s->off += take;
    return (int)take;
}

static int read_response(const uint8_t *data, size_t size, size_t chunk, int end,
                         const char *method, size_t max, struct hy_httpc_response *resp)
{
    struct source src = {.p = data, .n = size, .chunk = chunk, .end = end};
    struct hy_httpc_reader r = {.read = source_read, .arg = &src};
    memset(resp, 0, sizeof(*resp));
    int rc = hy_httpc_read_response(&r, method, max, resp);
    if (r.start > r.end || r.end > r.cap || src.off > src.n)
        abort();
    hy_httpc_reader_fini(&r);
    return rc;
}

static void check(const struct hy_httpc_response *resp, size_t max)
{
    if (resp->status < 0 || resp->status > 999 || !resp->reason)
        abort();
    if (resp->body.len > max || (resp->body.len && resp->body.data[resp->body.len] != '\0'))
        abort();
    for (size_t i = 0; i < resp->nheaders; i++) {
        const struct hy_httpc_response_header *h = &resp->headers[i];
        if (!h->name || !h->value || !hy_httpc_is_token(h->name) ||
            hy_httpc_response_header(resp, h->name) == NULL)
            abort();
    }
}

static bool same(const struct hy_httpc_response *a, const struct hy_httpc_response *b)
{
    if (a->status != b->status || strcmp(a->reason, b->reason) != 0 || a->nheaders != b->nheaders ||
        a->body.len != b->body.len ||
        (a->body.len && memcmp(a->body.data, b->body.data, a->body.len) != 0))
        return false;
    for (size_t i = 0; i < a->nheaders; i++)
        if (strcmp(a->headers[i].name, b->headers[i].name) != 0 ||
            strcmp(a->headers[i].value, b->headers[i].value) != 0)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    size_t chunk = read_sizes[mode & 15];
    const char *method = mode & 16 ? "HEAD" : "GET";
    size_t max = mode & 32 ? SMALL_MAX : HY_HTTPC_MAX_BODY;
    int end = mode & 128 ? -ETIMEDOUT : 0;
    data++;
    size--;

    struct hy_httpc_response resp;
    int rc = read_response(data, size, chunk, end, method, max, &resp);
    if (rc == 0)
        check(&resp, max);
    if (chunk) {
        struct hy_httpc_response whole;
        int rc2 = read_response(data, size, 0, end, method, max, &whole);
        if (rc != rc2 || (rc == 0 && !same(&resp, &whole)))
            abort(); /* the answer depends on how the bytes arrived */
        hy_httpc_response_fini(&whole);
    }
    hy_httpc_response_fini(&resp);
    return 0;
}
