/* The HTTP client's response reader: status line, header fields, and the
 * body framed by Content-Length, chunked transfer coding or the end of the
 * stream, each with a size limit. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "http_client_int.h"
#include "poison.h"

/* Reads more bytes into the reader (growing it up to limit). 0, or a code;
 * at the end of the stream sets eof and returns 0. */
static int fill(struct hy_httpc_reader *r, size_t limit)
{
    if (r->start > 0 && r->start == r->end)
        r->start = r->end = 0;
    if (r->end == r->cap) {
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        } else {
            if (r->cap >= limit)
                return HY_ETOOBIG;
            size_t cap = r->cap ? r->cap * 2 : 16384;
            if (cap > limit)
                cap = limit;
            char *p = realloc(r->buf, cap);
            if (!p)
                return HY_ENOMEM;
            r->buf = p;
            r->cap = cap;
        }
    }
    int n = r->read(r->arg, r->buf + r->end, r->cap - r->end);
    if (n < 0)
        return n;
    if (n == 0)
        r->eof = true;
    r->end += (size_t)n;
    return 0;
}

/* Returns the next line (without CRLF, NUL-terminated in place) or NULL
 * with *rc set: -EPROTO at the end of the stream, HY_ETOOBIG past limit. */
static char *read_line(struct hy_httpc_reader *r, size_t limit, int *rc)
{
    for (;;) {
        char *nl = r->end > r->start ? memchr(r->buf + r->start, '\n', r->end - r->start) : NULL;
        if (nl) {
            char *line = r->buf + r->start;
            /* the same limit whether the line came in one read or many */
            if ((size_t)(nl - line) >= limit) {
                *rc = HY_ETOOBIG;
                return NULL;
            }
            r->start = (size_t)(nl - r->buf) + 1;
            if (nl > line && nl[-1] == '\r')
                nl--;
            *nl = '\0';
            return line;
        }
        if (r->end - r->start >= limit) {
            *rc = HY_ETOOBIG;
            return NULL;
        }
        if (r->eof) {
            *rc = -EPROTO;
            return NULL;
        }
        if ((*rc = fill(r, HY_HTTPC_MAX_HEAD + limit)) < 0)
            return NULL;
    }
}

/* Moves n body bytes (or up to the end of the stream when n == SIZE_MAX)
 * into body. */
static int read_body(struct hy_httpc_reader *r, size_t n, size_t max, struct hy_buf *body)
{
    bool to_eof = n == SIZE_MAX;
    while (n > 0) {
        if (r->start == r->end) {
            if (r->eof)
                return to_eof ? 0 : -EPROTO;
            int rc = fill(r, HY_HTTPC_MAX_HEAD);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t take = r->end - r->start;
        if (take > n)
            take = n;
        if (body->len + take > max)
            return HY_ETOOBIG;
        if (hy_buf_append(body, r->buf + r->start, take) < 0)
            return HY_ENOMEM;
        r->start += take;
        if (!to_eof)
            n -= take;
    }
    return 0;
}

static int read_chunked(struct hy_httpc_reader *r, size_t max, struct hy_buf *body)
{
    int rc = 0;
    for (;;) {
        char *line = read_line(r, 4096, &rc);
        if (!line)
            return rc;
        char *end;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        if (end == line || !isxdigit((unsigned char)line[0]) || errno ||
            (*end && *end != ';' && *end != ' ' && *end != '\t'))
            return -EPROTO;
        if (size == 0)
            break;
        if (size > max || body->len + size > max)
            return HY_ETOOBIG;
        if ((rc = read_body(r, (size_t)size, max, body)) < 0)
            return rc;
        if (!(line = read_line(r, 4096, &rc)))
            return rc;
        if (*line)
            return -EPROTO; /* chunk data longer than its size */
    }
    for (;;) { /* trailer fields, ignored, up to the empty line */
        char *line = read_line(r, HY_HTTPC_MAX_HEAD, &rc);
        if (!line)
            return rc;
        if (!*line)
            return 0;
    }
}

static int add_header(struct hy_httpc_response *resp, const char *name, size_t nlen,
                      const char *value, size_t vlen)
{
    struct hy_httpc_response_header *h =
        realloc(resp->headers, (resp->nheaders + 1) * sizeof(*resp->headers));
    if (!h)
        return HY_ENOMEM;
    resp->headers = h;
    h = &resp->headers[resp->nheaders];
    h->name = strndup(name, nlen);
    h->value = strndup(value, vlen);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return HY_ENOMEM;
    }
    resp->nheaders++;
    return 0;
}

/* Status line and header fields, up to the empty line. */
static int read_head(struct hy_httpc_reader *r, struct hy_httpc_response *resp)
{
    int rc = 0;
    char *line = read_line(r, HY_HTTPC_MAX_HEAD, &rc);
    if (!line)
        return rc == -EPROTO && r->start == r->end ? -ECONNRESET : rc;
    if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) || line[8] != ' ' ||
        !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]) || (line[12] && line[12] != ' '))
        return -EPROTO;
    resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    free(resp->reason);
    if (!(resp->reason = strdup(line[12] ? line + 13 : "")))
        return HY_ENOMEM;
    size_t total = strlen(line);
    for (;;) {
        if (!(line = read_line(r, HY_HTTPC_MAX_HEAD, &rc)))
            return rc;
        if (!*line)
            return 0;
        total += strlen(line);
        if (total > HY_HTTPC_MAX_HEAD)
            return HY_ETOOBIG;
        char *colon = strchr(line, ':');
        if (!colon || colon == line || *line == ' ' || *line == '\t')
            return -EPROTO; /* no name, or obsolete line folding */
        *colon = '\0';
        if (!hy_httpc_is_token(line))
            return -EPROTO;
        char *v = colon + 1, *e = v + strlen(v);
        while (*v == ' ' || *v == '\t')
            v++;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((rc = add_header(resp, line, (size_t)(colon - line), v, (size_t)(e - v))) < 0)
            return rc;
    }
}

static void clear_headers(struct hy_httpc_response *resp)
{
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    resp->headers = NULL;
    resp->nheaders = 0;
}

/* True when the comma-separated list ends with token (Transfer-Encoding). */
static bool list_ends_with(const char *list, const char *token)
{
    const char *last = strrchr(list, ',');
    last = last ? last + 1 : list;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strlen(token);
    return strncasecmp(last, token, n) == 0 && (last[n] == '\0' || last[n] == ' ');
}

int hy_httpc_read_response(struct hy_httpc_reader *r, const char *method, size_t max,
                           struct hy_httpc_response *resp)
{
    int rc;
    do { /* interim 1xx answers come before the real one */
        clear_headers(resp);
        if ((rc = read_head(r, resp)) < 0)
            return rc;
    } while (resp->status >= 100 && resp->status < 200 && resp->status != 101);
    if (strcmp(method, "HEAD") == 0 || resp->status < 200 || resp->status == 204 ||
        resp->status == 304)
        return 0;
    const char *te = hy_httpc_response_header(resp, "Transfer-Encoding");
    if (te)
        return list_ends_with(te, "chunked") ? read_chunked(r, max, &resp->body)
                                             : read_body(r, SIZE_MAX, max, &resp->body);
    const char *cl = NULL;
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, "Content-Length") != 0)
            continue;
        if (cl && strcmp(cl, resp->headers[i].value) != 0)
            return -EPROTO; /* two different lengths */
        cl = resp->headers[i].value;
    }
    if (!cl)
        return read_body(r, SIZE_MAX, max, &resp->body);
    if (!*cl || strspn(cl, "0123456789") != strlen(cl) || strlen(cl) > 15)
        return -EPROTO;
    size_t n = (size_t)strtoull(cl, NULL, 10);
    if (n > max)
        return HY_ETOOBIG;
    return read_body(r, n, max, &resp->body);
}

void hy_httpc_reader_fini(struct hy_httpc_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->start = r->end = r->cap = 0;
}

const char *hy_httpc_response_header(const struct hy_httpc_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

void hy_httpc_response_fini(struct hy_httpc_response *resp)
{
    clear_headers(resp);
    free(resp->reason);
    hy_buf_fini(&resp->body);
    memset(resp, 0, sizeof(*resp));
}
