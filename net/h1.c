/* The strict HTTP/1.1 codec (h1.h): llhttp in strict mode with every
 * lenient flag off does the byte-level parsing; this file builds whole
 * heads from its callbacks and refuses what llhttp 8.1 still lets through
 * and a smuggler could use: obs-fold, empty names, controls in values,
 * targets and reason phrases, a second Host, a Transfer-Encoding other than
 * exactly "chunked", TE in HTTP/1.0, versions other than 1.0 and 1.1, a
 * missing Host, status codes outside 100-599, oversized heads. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "error.h"
#include "h1.h"
#include "poison.h"

struct hy_h1 {
    llhttp_t ll;
    llhttp_settings_t set;
    enum hy_h1_kind kind;
    const struct hy_h1_cb *cb;
    void *u;
    struct hy_http_head head, trailers;
    struct hy_buf url, name, value;      /* the span being gathered */
    size_t head_bytes;                   /* of the head under way, fed so far */
    const char *base;                    /* start of the slice llhttp parses */
    char prev;                           /* the last byte but SP/HT before base */
    unsigned n_cl, n_te, n_host;         /* framing fields seen in this head */
    bool in_message, head_done;          /* from its first byte / its head to its end */
    bool paused, interim, upgrade, dead; /* see hy_h1_feed */
    bool keep_alive, finishing;
    bool expect_head, expect_connect; /* what the response answers */
    int rc;
    unsigned status;
    char reason[160];
};

/* Ends p with rc and a status; a response parser's errors answer 502. */
static int fail(struct hy_h1 *p, int rc, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct hy_h1 *p, int rc, unsigned status, const char *fmt, ...)
{
    if (p->rc)
        return -1; /* the first reason stays */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
    va_end(ap);
    p->rc = rc;
    p->status = p->kind == HY_H1_RESPONSE && status != 500 ? 502 : status;
    p->keep_alive = false;
    return -1;
}

/* RFC 9110 tchar, one table lookup per byte of every name */
static const bool tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,  ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,  ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1,
    ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,  ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,  ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

/* Whether name (n bytes) is lit, in any case: the length first. */
static bool is_name(const char *name, size_t n, const char *lit, size_t ln)
{
    return n == ln && !strncasecmp(name, lit, n);
}
#define IS(name, n, lit) is_name(name, n, lit, sizeof(lit) - 1)

static bool is_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!tchar[(unsigned char)s[i]])
            return false;
    return true;
}

/* A field value or reason phrase: no control character but HT, no DEL. */
static bool is_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* A target or authority: visible bytes only (obs-text allowed), no SP. */
static bool is_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* A target the writer sends: visible ASCII without '#' (llhttp refuses
 * obs-text in a target; the fragment is never sent). */
static bool is_ascii_target(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '#')
            return false;
    return true;
}

/* A Host value or authority: reg-name or IP literal, optional port. */
static bool is_authority(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("-._~!$&'()*+,;=:[]%", c))))
            return false;
    }
    return true;
}

/* Next element of a comma-separated list in [*s, end), OWS trimmed; false
 * at the end. Empty elements are skipped (RFC 9110 5.6.1). */
static bool next_elem(const char **s, const char *end, const char **e, size_t *n)
{
    while (*s < end) {
        const char *a = *s, *b = memchr(a, ',', (size_t)(end - a));
        if (!b)
            b = end;
        *s = b < end ? b + 1 : end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        const char *z = b;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (z > a) {
            *e = a;
            *n = (size_t)(z - a);
            return true;
        }
    }
    return false;
}

/* Whether a field named field lists token (any case). */
static bool lists(const struct hy_http_head *h, const char *field, const char *token, size_t tn)
{
    size_t at = 0;
    for (const struct hy_http_field *f; (f = hy_http_head_find(h, field, &at));) {
        const char *s = f->value, *e;
        size_t n;
        while (next_elem(&s, f->value + f->value_len, &e, &n))
            if (n == tn && !strncasecmp(e, token, n))
                return true;
    }
    return false;
}

static void reset_message(struct hy_h1 *p)
{
    hy_http_head_fini(&p->head);
    hy_http_head_fini(&p->trailers);
    p->url.len = p->name.len = p->value.len = 0;
    p->n_cl = p->n_te = p->n_host = 0;
    p->head_done = false;
    p->head_bytes = 0;
}

static int on_message_begin(llhttp_t *ll)
{
    struct hy_h1 *p = ll->data;
    reset_message(p);
    p->head.request = p->kind == HY_H1_REQUEST;
    p->keep_alive = false;
    p->in_message = true;
    return 0;
}

/* Gathers a span into b; the head's limit bounds every span. */
static int gather(struct hy_h1 *p, struct hy_buf *b, const char *at, size_t n)
{
    if (b->len + n > HY_HTTP_MAX_HEAD)
        return fail(p, HY_ETOOBIG, 431, "head too large (over %u bytes)", HY_HTTP_MAX_HEAD);
    if (hy_buf_append(b, at, n))
        return fail(p, HY_ENOMEM, 500, "out of memory");
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    struct hy_h1 *p = ll->data;
    return gather(p, &p->url, at, n);
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
    struct hy_h1 *p = ll->data;
    return is_text(at, n) ? 0 : fail(p, HY_EINVAL, 400, "control character in the reason phrase");
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    struct hy_h1 *p = ll->data;
    return gather(p, &p->name, at, n);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    struct hy_h1 *p = ll->data;
    /* llhttp 8.1 takes a line starting with SP or HT as the value's
     * continuation (obs-fold), a span after the LF and maybe blanks; RFC
     * 9112 5.2 lets a server refuse it, and a proxy must not forward it. */
    const char *b = at;
    while (b > p->base && (b[-1] == ' ' || b[-1] == '\t'))
        b--; /* "X:\r\n c": llhttp skips the fold's blanks as leading ones */
    char before = b > p->base ? b[-1] : p->prev;
    if (n && before == '\n')
        return fail(p, HY_EINVAL, 400, "obs-fold in header '%.64s'", p->name.data);
    return gather(p, &p->value, at, n);
}

static int add_field(struct hy_h1 *p, struct hy_http_head *h, const char *name, size_t nn,
                     const char *value, size_t vn)
{
    int rc = hy_http_head_add(h, name, nn, value, vn);
    if (rc == HY_ETOOBIG && h->n >= HY_HTTP_MAX_FIELDS)
        return fail(p, rc, 431, "too many header fields (over %d)", HY_HTTP_MAX_FIELDS);
    if (rc == HY_ETOOBIG)
        return fail(p, rc, 431, "head too large (over %u bytes)", HY_HTTP_MAX_HEAD);
    if (rc)
        return fail(p, rc, 500, "out of memory");
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    struct hy_h1 *p = ll->data;
    if (gather(p, &p->name, "", 0) || gather(p, &p->value, "", 0))
        return -1; /* both NUL-terminated from here on */
    const char *name = p->name.data, *v = p->value.data;
    size_t nn = p->name.len, vn = p->value.len;
    p->name.len = p->value.len = 0;
    while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (!is_token(name, nn))
        return fail(p, HY_EINVAL, 400, "invalid header name");
    if (!is_text(v, vn))
        return fail(p, HY_EINVAL, 400, "control character in header '%.64s'", name);
    if (p->head_done) /* a chunked message's trailers */
        return add_field(p, &p->trailers, name, nn, v, vn);
    if (IS(name, nn, "Content-Length")) {
        if (p->n_cl++)
            return fail(p, HY_EINVAL, 400, "duplicate Content-Length");
        if (p->n_te)
            return fail(p, HY_EINVAL, 400, "conflicting Content-Length and Transfer-Encoding");
    } else if (IS(name, nn, "Transfer-Encoding")) {
        p->n_te++;
        if (p->n_cl)
            return fail(p, HY_EINVAL, 400, "conflicting Content-Length and Transfer-Encoding");
    } else if (IS(name, nn, "Host") && p->kind == HY_H1_REQUEST && p->n_host++) {
        return fail(p, HY_EINVAL, 400, "duplicate Host");
    }
    return add_field(p, &p->head, name, nn, v, vn);
}

/* Transfer-Encoding must be exactly "chunked" (RFC 9112 6.1, 6.3): chunked
 * not last leaves the length to the connection's end, which a request may
 * not do and the sidecar cannot forward; another coding before it would
 * reach the HTTP/2 side still coded, with nothing saying so (501: we do
 * not implement it, the request itself is well-formed). */
static int check_te(struct hy_h1 *p)
{
    if (p->head.version == 10)
        return fail(p, HY_EINVAL, 400, "Transfer-Encoding in an HTTP/1.0 message");
    size_t at = 0, chunked = 0, codings = 0;
    const char *last = NULL, *other = NULL;
    size_t last_n = 0, other_n = 0;
    for (const struct hy_http_field *f;
         (f = hy_http_head_find(&p->head, "Transfer-Encoding", &at));) {
        const char *s = f->value, *e;
        size_t n;
        while (next_elem(&s, f->value + f->value_len, &e, &n)) {
            codings++;
            last = e;
            last_n = n;
            if (n == 7 && !strncasecmp(e, "chunked", 7)) {
                chunked++;
            } else if (!other) {
                other = e;
                other_n = n;
            }
        }
    }
    if (!last || last_n != 7 || strncasecmp(last, "chunked", 7))
        return fail(p, HY_EINVAL, 400, "Transfer-Encoding without chunked as the final coding");
    if (chunked > 1)
        return fail(p, HY_EINVAL, 400, "chunked applied more than once in Transfer-Encoding");
    if (codings > 1)
        return fail(p, HY_EINVAL, 501, "unsupported transfer coding '%.*s'",
                    (int)(other_n > 64 ? 64 : other_n), other);
    return 0;
}

/* The request target in its four forms (RFC 9112 3.2), and the authority:
 * from an absolute-form target or CONNECT's authority-form, else Host. */
static int take_target(struct hy_h1 *p)
{
    struct hy_http_head *h = &p->head;
    const char *u = p->url.data, *a = NULL;
    size_t n = p->url.len, an = 0;
    const char *path = u, *scheme = "http";
    size_t pn = n;
    if (!n || !is_visible(u, n) || memchr(u, '#', n))
        return fail(p, HY_EINVAL, 400, "invalid request target");
    if (!strcmp(h->method, "CONNECT")) {
        const char *colon = memrchr(u, ':', n);
        if (u[0] == '/' || !colon || colon == u || colon + 1 == u + n ||
            strspn(colon + 1, "0123456789") != (size_t)(u + n - colon - 1) || !is_authority(u, n))
            return fail(p, HY_EINVAL, 400, "invalid CONNECT target (host:port expected)");
        a = u;
        an = n;
        scheme = NULL;
    } else if (n == 1 && u[0] == '*') {
        if (strcmp(h->method, "OPTIONS"))
            return fail(p, HY_EINVAL, 400, "invalid request target ('*' is for OPTIONS only)");
    } else if (u[0] != '/') {
        const char *sep = strstr(u, "://");
        if (!sep)
            return fail(p, HY_EINVAL, 400, "invalid request target");
        size_t sn = (size_t)(sep - u);
        if (sn == 4 && !strncasecmp(u, "http", 4))
            scheme = "http";
        else if (sn == 5 && !strncasecmp(u, "https", 5))
            scheme = "https";
        else
            return fail(p, HY_EINVAL, 400, "unsupported scheme in absolute-form target");
        a = sep + 3;
        an = strcspn(a, "/?");
        if (!an || !is_authority(a, an) || memchr(a, '@', an))
            return fail(p, HY_EINVAL, 400, "invalid authority in absolute-form target");
        path = a + an;
        pn = (size_t)(u + n - path);
    }
    if (!a) {
        const char *host = p->n_host ? hy_http_head_get(h, "Host") : NULL;
        if (host && !is_authority(host, strlen(host)))
            return fail(p, HY_EINVAL, 400, "invalid Host");
        a = host;
        an = host ? strlen(host) : 0;
    }
    if (h->version == 11 && !p->n_host)
        return fail(p, HY_EINVAL, 400, "missing Host in an HTTP/1.1 request");
    /* "http://a?q" has an empty path: "/?q" (RFC 9112 3.2.2) */
    int rc = 0;
    if (pn && path[0] == '/')
        rc = hy_http_head_set_str(&h->target, path, pn);
    else if (pn && path[0] == '?') {
        /* path - 1 is still inside the target (the authority's last byte) */
        rc = hy_http_head_set_str(&h->target, path - 1, pn + 1);
        if (!rc)
            h->target[0] = '/';
    } else
        rc = hy_http_head_set_str(&h->target, pn ? path : "/", pn ? pn : 1);
    if (!rc && a)
        rc = hy_http_head_set_str(&h->authority, a, an);
    if (!rc && scheme)
        rc = hy_http_head_set_str(&h->scheme, scheme, strlen(scheme));
    return rc ? fail(p, HY_ENOMEM, 500, "out of memory") : 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct hy_h1 *p = ll->data;
    struct hy_http_head *h = &p->head;
    if (ll->http_major != 1 || ll->http_minor > 1)
        return fail(p, HY_EINVAL, 505, "unsupported HTTP version %u.%u", ll->http_major,
                    ll->http_minor);
    h->version = ll->http_minor ? 11 : 10;
    if (p->n_te && check_te(p))
        return -1;
    bool body, upgrade = false, interim = false;
    if (p->kind == HY_H1_REQUEST) {
        const char *m = llhttp_method_name(ll->method);
        if (hy_http_head_set_str(&h->method, m, strlen(m)))
            return fail(p, HY_ENOMEM, 500, "out of memory");
        if (take_target(p))
            return -1;
        upgrade = ll->upgrade; /* Upgrade + Connection: upgrade, or CONNECT */
        body = !upgrade && ((ll->flags & F_CHUNKED) || ll->content_length > 0);
    } else {
        if (ll->status_code < 100 || ll->status_code > 599)
            return fail(p, HY_EINVAL, 502, "invalid status %u", ll->status_code);
        h->status = ll->status_code;
        upgrade = h->status == 101 || (p->expect_connect && h->status / 100 == 2);
        interim = !upgrade && h->status / 100 == 1;
        body = !upgrade && !interim && h->status != 204 && h->status != 304 && !p->expect_head;
    }
    bool to_eof = body && p->kind == HY_H1_RESPONSE && !(ll->flags & F_CHUNKED) && !p->n_cl;
    if (h->version == 11)
        p->keep_alive = !lists(h, "Connection", "close", 5);
    else
        p->keep_alive =
            lists(h, "Connection", "keep-alive", 10) && !lists(h, "Connection", "close", 5);
    if (to_eof || upgrade)
        p->keep_alive = false;
    p->upgrade = upgrade;
    p->interim = interim;
    p->head_done = true;
    if (p->cb->head(p->u, h, body))
        return fail(p, HY_EINVAL, 500, "stopped");
    hy_http_head_fini(h);
    if (upgrade)
        return 2; /* no body; llhttp_execute returns HPE_PAUSED_UPGRADE */
    return body ? 0 : 1;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    struct hy_h1 *p = ll->data;
    if (p->cb->body(p->u, (const uint8_t *)at, n))
        return fail(p, HY_EINVAL, 500, "stopped");
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct hy_h1 *p = ll->data;
    if (p->upgrade)
        return 0; /* the tunnel follows, not another message */
    bool interim = p->interim;
    if (!interim) {
        if (p->cb->end(p->u, p->trailers.n ? &p->trailers : NULL))
            return fail(p, HY_EINVAL, 500, "stopped");
        p->expect_head = p->expect_connect = false;
    }
    reset_message(p);
    p->in_message = false;
    if (p->finishing)
        return 0;
    p->paused = !interim;
    return HPE_PAUSED; /* hy_h1_feed resumes by itself after an interim response */
}

struct hy_h1 *hy_h1_new(enum hy_h1_kind kind, const struct hy_h1_cb *cb, void *u)
{
    struct hy_h1 *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->kind = kind;
    p->cb = cb;
    p->u = u;
    llhttp_settings_init(&p->set);
    p->set.on_message_begin = on_message_begin;
    p->set.on_url = on_url;
    p->set.on_status = on_status;
    p->set.on_header_field = on_header_field;
    p->set.on_header_value = on_header_value;
    p->set.on_header_value_complete = on_header_value_complete;
    p->set.on_headers_complete = on_headers_complete;
    p->set.on_body = on_body;
    p->set.on_message_complete = on_message_complete;
    llhttp_init(&p->ll, kind == HY_H1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &p->set);
    p->ll.data = p; /* lenient flags stay off: llhttp_init clears them */
    return p;
}

void hy_h1_free(struct hy_h1 *p)
{
    if (!p)
        return;
    reset_message(p);
    hy_buf_fini(&p->url);
    hy_buf_fini(&p->name);
    hy_buf_fini(&p->value);
    free(p);
}

void hy_h1_expect(struct hy_h1 *p, const char *method)
{
    p->expect_head = method && !strcmp(method, "HEAD");
    p->expect_connect = method && !strcmp(method, "CONNECT");
}

/* llhttp's own refusals, named. */
static int fail_ll(struct hy_h1 *p, llhttp_errno_t e)
{
    const char *why = llhttp_get_error_reason(&p->ll);
    why = why ? why : "";
    switch (e) {
    case HPE_INVALID_HEADER_TOKEN:
        if (strstr(why, "value"))
            return fail(p, HY_EINVAL, 400, "control character in header '%.64s'",
                        p->name.data ? p->name.data : "");
        return fail(p, HY_EINVAL, 400, "invalid header name");
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        if (strstr(why, "Duplicate"))
            return fail(p, HY_EINVAL, 400, "duplicate Content-Length");
        return fail(p, HY_EINVAL, 400, "conflicting Content-Length and Transfer-Encoding");
    case HPE_INVALID_CONTENT_LENGTH:
        return fail(p, HY_EINVAL, 400, "invalid Content-Length");
    case HPE_INVALID_TRANSFER_ENCODING:
        return fail(p, HY_EINVAL, 400, "Transfer-Encoding without chunked as the final coding");
    case HPE_INVALID_CHUNK_SIZE:
        if (strstr(why, "overflow"))
            return fail(p, HY_ETOOBIG, 400, "chunk size overflow");
        return fail(p, HY_EINVAL, 400, "bad chunk size");
    case HPE_INVALID_METHOD:
        return fail(p, HY_EINVAL, 400, "invalid method");
    case HPE_INVALID_URL:
        return fail(p, HY_EINVAL, 400, "invalid request target");
    case HPE_INVALID_VERSION:
        return fail(p, HY_EINVAL, 400, "invalid HTTP version");
    case HPE_INVALID_STATUS:
        return fail(p, HY_EINVAL, 400, "invalid status");
    case HPE_CLOSED_CONNECTION:
        return fail(p, HY_EINVAL, 400, "data after Connection: close");
    case HPE_PAUSED_H2_UPGRADE:
        return fail(p, HY_EINVAL, 400, "HTTP/2 connection preface on an HTTP/1 connection");
    case HPE_INVALID_EOF_STATE:
        return fail(p, HY_EINVAL, 400, "connection closed mid-message");
    default:
        return fail(p, HY_EINVAL, 400, "malformed message (%s: %s)", llhttp_errno_name(e), why);
    }
}

int hy_h1_feed(struct hy_h1 *p, const uint8_t *data, size_t len, size_t *used)
{
    size_t off = 0;
    *used = 0;
    if (p->dead)
        return p->rc;
    if (p->paused || (p->upgrade && p->head_done))
        return 0;
    while (off < len) {
        size_t n = len - off;
        if (!p->head_done) {
            /* bound the head by what was fed, not only what was kept:
             * whitespace and empty lines count too */
            if (p->head_bytes >= HY_HTTP_MAX_HEAD) {
                fail(p, HY_ETOOBIG, 431, "head too large (over %u bytes)", HY_HTTP_MAX_HEAD);
                break;
            }
            if (n > HY_HTTP_MAX_HEAD - p->head_bytes)
                n = HY_HTTP_MAX_HEAD - p->head_bytes;
        }
        const char *at = (const char *)data + off;
        p->base = at;
        llhttp_errno_t e = llhttp_execute(&p->ll, at, n);
        if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
            if (!p->rc)
                fail_ll(p, e);
            break;
        }
        size_t took = e == HPE_OK ? n : (size_t)(p->ll.error_pos - at);
        if (e == HPE_OK && !p->head_done)
            p->head_bytes += took;
        for (size_t i = took; i > 0; i--)
            if (at[i - 1] != ' ' && at[i - 1] != '\t') {
                p->prev = at[i - 1];
                break;
            }
        off += took;
        if (e == HPE_PAUSED && !p->paused) { /* an interim response ended */
            p->interim = false;
            llhttp_resume(&p->ll);
            continue;
        }
        if (e != HPE_OK)
            break; /* a message ended, or an upgrade */
    }
    *used = off;
    if (p->rc) {
        p->dead = true;
        p->keep_alive = false;
        return p->rc;
    }
    return 0;
}

void hy_h1_resume(struct hy_h1 *p)
{
    if (!p->paused || p->dead)
        return;
    p->paused = false;
    llhttp_resume(&p->ll);
}

int hy_h1_finish(struct hy_h1 *p)
{
    if (p->dead)
        return p->rc;
    if (!p->in_message || p->upgrade)
        return 0; /* llhttp would not know: it has not left a paused message yet */
    p->finishing = true;
    llhttp_errno_t e = llhttp_finish(&p->ll);
    p->finishing = false;
    if (e != HPE_OK && !p->rc)
        fail_ll(p, e);
    if (p->rc) {
        p->dead = true;
        return p->rc;
    }
    return 0;
}

unsigned hy_h1_error(const struct hy_h1 *p, const char **reason)
{
    if (reason)
        *reason = p->rc ? p->reason : "";
    return p->rc ? p->status : 0;
}

bool hy_h1_upgrade(const struct hy_h1 *p)
{
    return p->upgrade;
}

bool hy_h1_keep_alive(const struct hy_h1 *p)
{
    return p->keep_alive && !p->dead;
}

/* Whether a Connection field of h names name. */
static bool named_by_connection(const struct hy_http_head *h, const char *name, size_t n)
{
    return lists(h, "Connection", name, n);
}

static bool name_is(const struct hy_http_field *f, const char *name, size_t n)
{
    return f->name_len == n && !strncasecmp(f->name, name, n);
}

void hy_h1_strip_hop(struct hy_http_head *h)
{
    static const struct {
        const char *name;
        size_t len;
    } hop[] = {{"Connection", 10},
               {"Keep-Alive", 10},
               {"Proxy-Connection", 16},
               {"Transfer-Encoding", 17},
               {"Upgrade", 7}};
    bool drop[HY_HTTP_MAX_FIELDS] = {false};
    bool te_kept = false, conn = false;
    size_t n = h->n < HY_HTTP_MAX_FIELDS ? h->n : HY_HTTP_MAX_FIELDS;
    for (size_t i = 0; i < n && !conn; i++) /* most messages have none to look in */
        conn = name_is(&h->fields[i], "Connection", 10);
    for (size_t i = 0; i < n; i++) {
        struct hy_http_field *f = &h->fields[i];
        for (size_t k = 0; k < sizeof(hop) / sizeof(hop[0]) && !drop[i]; k++)
            drop[i] = name_is(f, hop[k].name, hop[k].len);
        drop[i] |= conn && named_by_connection(h, f->name, f->name_len);
        if (h->request && name_is(f, "Host", 4)) {
            drop[i] = true;
            if (!h->authority) { /* steal the value: nothing to allocate */
                h->authority = f->value;
                f->value = NULL;
            }
        } else if (name_is(f, "TE", 2) && !drop[i]) {
            /* only "TE: trailers" may cross to HTTP/2 (RFC 9113 8.2.2) */
            const char *s = f->value, *e;
            size_t en;
            bool trailers = false;
            while (next_elem(&s, f->value + f->value_len, &e, &en))
                trailers |= en == 8 && !strncasecmp(e, "trailers", 8);
            drop[i] = !trailers || te_kept;
            if (!drop[i]) {
                te_kept = true;
                memcpy(f->value, "trailers", 9); /* fits: the value held it */
                h->bytes -= f->value_len - 8;
                f->value_len = 8;
            }
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) {
        struct hy_http_field *f = &h->fields[i];
        if (i < n && drop[i]) {
            h->bytes -= f->name_len + f->value_len;
            free(f->name);
            free(f->value);
        } else {
            h->fields[k++] = *f;
        }
    }
    h->n = k;
}

/* "Content-Length: N" and the head's end, without printf (once a message). */
static int put_length(struct hy_buf *out, unsigned long long n)
{
    char d[24];
    size_t i = sizeof(d);
    d[--i] = '\0';
    do {
        d[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    return hy_buf_puts(out, "Content-Length: ") || hy_buf_puts(out, d + i) ||
                   hy_buf_puts(out, "\r\n\r\n")
               ? HY_ENOMEM
               : 0;
}

static const char *reason_phrase(unsigned status)
{
    static const struct {
        unsigned status;
        const char *text;
    } t[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Content Too Large"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].status == status)
            return t[i].text;
    return "Unknown";
}

/* Appends h's fields but the framing ones and Host, checked. */
static int write_fields(struct hy_buf *out, const struct hy_http_head *h)
{
    for (size_t i = 0; i < h->n; i++) {
        const struct hy_http_field *f = &h->fields[i];
        if (!is_token(f->name, f->name_len) || !is_text(f->value, f->value_len) ||
            strlen(f->name) != f->name_len || strlen(f->value) != f->value_len)
            return HY_EINVAL;
        if (IS(f->name, f->name_len, "Content-Length") ||
            IS(f->name, f->name_len, "Transfer-Encoding") || IS(f->name, f->name_len, "Host"))
            continue;
        if (hy_buf_append(out, f->name, f->name_len) || hy_buf_append(out, ": ", 2) ||
            hy_buf_append(out, f->value, f->value_len) || hy_buf_append(out, "\r\n", 2))
            return HY_ENOMEM;
    }
    return 0;
}

/* Truncates out back to len after a failed write: "out unchanged". */
static int undo(struct hy_buf *out, size_t len, int rc)
{
    out->len = len;
    if (out->data)
        out->data[len] = 0;
    return rc;
}

/* A method llhttp's request parser takes: the HTTP/1.1 side (the app, or
 * our own parser when we are the app's peer) reads nothing else, so a
 * token it does not know (an HTTP/2 caller may send any) is never written. */
static bool method_known(const char *m)
{
#define HY_H1_METHOD(num, name, string) #string,
    static const char *const known[] = {HTTP_METHOD_MAP(HY_H1_METHOD)};
#undef HY_H1_METHOD
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(m, known[i]) == 0)
            return true;
    return false;
}

int hy_h1_write_head(struct hy_buf *out, const struct hy_http_head *h, long long content_length)
{
    size_t start = out->len;
    int rc;
    if (content_length < -2)
        return HY_EINVAL;
    if (h->request) {
        if (!h->method || !method_known(h->method) || !h->target || !h->target[0] ||
            !is_ascii_target(h->target) || !h->authority ||
            !is_authority(h->authority, strlen(h->authority)))
            return HY_EINVAL; /* what the parser would refuse is never written (an empty
                               * Host it takes: RFC 9112 3.2, a target without authority) */
        rc = hy_buf_puts(out, h->method) || hy_buf_puts(out, " ") || hy_buf_puts(out, h->target) ||
                     hy_buf_puts(out, " HTTP/1.1\r\nHost: ") || hy_buf_puts(out, h->authority) ||
                     hy_buf_puts(out, "\r\n")
                 ? HY_ENOMEM
                 : 0;
    } else {
        if (h->status < 100 || h->status > 599)
            return HY_EINVAL;
        char line[] = "HTTP/1.1 000 "; /* the status has three digits (checked) */
        line[9] = (char)('0' + h->status / 100);
        line[10] = (char)('0' + h->status / 10 % 10);
        line[11] = (char)('0' + h->status % 10);
        rc = hy_buf_puts(out, line) || hy_buf_puts(out, reason_phrase(h->status)) ||
                     hy_buf_puts(out, "\r\n")
                 ? HY_ENOMEM
                 : 0;
    }
    if (rc || (rc = write_fields(out, h)))
        return undo(out, start, rc);
    if (content_length >= 0)
        rc = put_length(out, (unsigned long long)content_length);
    else if (content_length == -1)
        rc = hy_buf_puts(out, "Transfer-Encoding: chunked\r\n\r\n");
    else
        rc = hy_buf_puts(out, "\r\n");
    return rc ? undo(out, start, rc) : 0;
}

int hy_h1_write_chunk(struct hy_buf *out, const uint8_t *p, size_t n)
{
    size_t start = out->len;
    if (!n)
        return HY_EINVAL;
    if (hy_buf_printf(out, "%zx\r\n", n) || hy_buf_append(out, p, n) ||
        hy_buf_append(out, "\r\n", 2))
        return undo(out, start, HY_ENOMEM);
    return 0;
}

int hy_h1_write_last_chunk(struct hy_buf *out, const struct hy_http_head *trailers)
{
    size_t start = out->len;
    int rc = hy_buf_puts(out, "0\r\n");
    if (!rc && trailers)
        rc = write_fields(out, trailers);
    if (!rc)
        rc = hy_buf_puts(out, "\r\n");
    return rc ? undo(out, start, rc) : 0;
}
