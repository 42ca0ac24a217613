/* The access-log format language (alog_fmt.h): command operators
 * %NAME%, %NAME(ARG)% and %NAME(ARG):MAXLEN% between literal text, parsed
 * into segments once and rendered per record. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "alog_fmt.h"
#include "codec.h"
#include "error.h"
#include "poison.h"

enum op {
    OP_LIT,
    OP_KUMA_MESH,
    OP_KUMA_SOURCE_SERVICE,
    OP_KUMA_DESTINATION_SERVICE,
    OP_KUMA_SOURCE_ADDRESS,
    OP_KUMA_SOURCE_ADDRESS_WITHOUT_PORT,
    OP_KUMA_TRAFFIC_DIRECTION,
    OP_START_TIME,
    OP_DURATION,
    OP_RESPONSE_DURATION,
    OP_RESPONSE_CODE,
    OP_RESPONSE_CODE_DETAILS,
    OP_RESPONSE_FLAGS,
    OP_BYTES_SENT,
    OP_BYTES_RECEIVED,
    OP_PROTOCOL,
    OP_UPSTREAM_HOST,
    OP_UPSTREAM_CLUSTER,
    OP_DOWNSTREAM_REMOTE_ADDRESS,
    OP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT,
    OP_DOWNSTREAM_LOCAL_ADDRESS,
    OP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT,
    OP_HOSTNAME,
    OP_REQ,
    OP_RESP,
};

enum arg { ARG_NONE, ARG_OPTIONAL, ARG_HEADER };

static const struct {
    const char *name;
    enum op op;
    enum arg arg;
} ops[] = {
    {"KUMA_MESH", OP_KUMA_MESH, ARG_NONE},
    {"KUMA_SOURCE_SERVICE", OP_KUMA_SOURCE_SERVICE, ARG_NONE},
    {"KUMA_DESTINATION_SERVICE", OP_KUMA_DESTINATION_SERVICE, ARG_NONE},
    {"KUMA_SOURCE_ADDRESS", OP_KUMA_SOURCE_ADDRESS, ARG_NONE},
    {"KUMA_SOURCE_ADDRESS_WITHOUT_PORT", OP_KUMA_SOURCE_ADDRESS_WITHOUT_PORT, ARG_NONE},
    {"KUMA_TRAFFIC_DIRECTION", OP_KUMA_TRAFFIC_DIRECTION, ARG_NONE},
    {"START_TIME", OP_START_TIME, ARG_OPTIONAL},
    {"DURATION", OP_DURATION, ARG_NONE},
    {"RESPONSE_DURATION", OP_RESPONSE_DURATION, ARG_NONE},
    {"RESPONSE_CODE", OP_RESPONSE_CODE, ARG_NONE},
    {"RESPONSE_CODE_DETAILS", OP_RESPONSE_CODE_DETAILS, ARG_NONE},
    {"RESPONSE_FLAGS", OP_RESPONSE_FLAGS, ARG_NONE},
    {"BYTES_SENT", OP_BYTES_SENT, ARG_NONE},
    {"BYTES_RECEIVED", OP_BYTES_RECEIVED, ARG_NONE},
    {"PROTOCOL", OP_PROTOCOL, ARG_NONE},
    {"UPSTREAM_HOST", OP_UPSTREAM_HOST, ARG_NONE},
    {"UPSTREAM_CLUSTER", OP_UPSTREAM_CLUSTER, ARG_NONE},
    {"DOWNSTREAM_REMOTE_ADDRESS", OP_DOWNSTREAM_REMOTE_ADDRESS, ARG_NONE},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", OP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, ARG_NONE},
    {"DOWNSTREAM_LOCAL_ADDRESS", OP_DOWNSTREAM_LOCAL_ADDRESS, ARG_NONE},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", OP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT, ARG_NONE},
    {"HOSTNAME", OP_HOSTNAME, ARG_NONE},
    {"REQ", OP_REQ, ARG_HEADER},
    {"RESP", OP_RESP, ARG_HEADER},
};

struct seg {
    enum op op;
    char *a, *b;   /* literal text (a, len); REQ/RESP: header, alternative; START_TIME: format */
    size_t len;    /* of a literal */
    size_t maxlen; /* :Z, 0: none */
};

struct tmpl {
    struct seg *v;
    size_t n;
};

struct kv {
    char *key;
    struct tmpl t;
};

struct hy_alog_fmt {
    bool json, omit;
    struct tmpl tcp, http; /* plain: the same template twice unless default */
    bool shared;           /* tcp and http are one template (http's v is tcp's) */
    struct kv *kv;
    size_t nkv;
};

static void tmpl_fini(struct tmpl *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].a);
        free(t->v[i].b);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static int push(struct tmpl *t, struct seg s)
{
    struct seg *v = realloc(t->v, (t->n + 1) * sizeof(*v));
    if (!v) {
        free(s.a);
        free(s.b);
        return HY_ENOMEM;
    }
    t->v = v;
    v[t->n++] = s;
    return 0;
}

static int push_lit(struct tmpl *t, const char *p, size_t n)
{
    if (!n)
        return 0;
    struct seg *last = t->n ? &t->v[t->n - 1] : NULL;
    if (last && last->op == OP_LIT) { /* "%%" splits a literal: join it back */
        char *a = realloc(last->a, last->len + n + 1);
        if (!a)
            return HY_ENOMEM;
        memcpy(a + last->len, p, n);
        last->len += n;
        a[last->len] = 0;
        last->a = a;
        return 0;
    }
    char *a = strndup(p, n);
    return a ? push(t, (struct seg){.op = OP_LIT, .a = a, .len = n}) : HY_ENOMEM;
}

static bool header_name_ok(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' ||
              (s[i] == ':' && i == 0)))
            return false;
    return true;
}

/* Parses s into t; on failure t holds what was parsed (caller frees). */
static int parse(const char *s, struct tmpl *t, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n > HY_ALOG_FMT_MAX) {
        snprintf(err, errlen, "format is %zu bytes, more than %d", n, HY_ALOG_FMT_MAX);
        return HY_EINVAL;
    }
    size_t i = 0, lit = 0;
    while (i < n) {
        if (s[i] != '%') {
            i++;
            continue;
        }
        int rc = push_lit(t, s + lit, i - lit);
        if (rc < 0)
            return rc;
        if (s[i + 1] == '%') { /* "%%": a literal percent sign */
            if ((rc = push_lit(t, "%", 1)) < 0)
                return rc;
            i += 2;
            lit = i;
            continue;
        }
        size_t start = i++;
        size_t name = i;
        while (i < n &&
               (isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            i++;
        size_t name_len = i - name;
        if (!name_len) {
            snprintf(err, errlen,
                     "'%%' at offset %zu does not start a command operator (%%NAME%%); write "
                     "%%%% for a percent sign",
                     start);
            return HY_EINVAL;
        }
        int k = -1;
        for (size_t o = 0; o < sizeof(ops) / sizeof(*ops); o++)
            if (strlen(ops[o].name) == name_len && !strncmp(ops[o].name, s + name, name_len))
                k = (int)o;
        if (k < 0) {
            snprintf(err, errlen, "unknown command operator %%%.*s%% at offset %zu", (int)name_len,
                     s + name, start);
            return HY_EINVAL;
        }
        struct seg g = {.op = ops[k].op};
        if (i < n && s[i] == '(') {
            size_t a = ++i;
            while (i < n && s[i] != ')')
                i++;
            if (i >= n) {
                snprintf(err, errlen, "%%%s( at offset %zu has no closing ')'", ops[k].name, start);
                return HY_EINVAL;
            }
            if (ops[k].arg == ARG_NONE) {
                snprintf(err, errlen, "%%%s%% takes no argument (offset %zu)", ops[k].name, start);
                return HY_EINVAL;
            }
            const char *q = memchr(s + a, '?', i - a);
            size_t alen = q ? (size_t)(q - (s + a)) : i - a;
            if (ops[k].arg == ARG_HEADER &&
                (!header_name_ok(s + a, alen) ||
                 (q && !header_name_ok(q + 1, (size_t)(s + i - q - 1))))) {
                snprintf(err, errlen,
                         "%%%s(%.*s)%% at offset %zu: a header name (or NAME?ALTERNATIVE) is "
                         "needed",
                         ops[k].name, (int)(i - a), s + a, start);
                return HY_EINVAL;
            }
            if (ops[k].arg == ARG_HEADER) {
                g.a = strndup(s + a, alen);
                g.b = q ? strndup(q + 1, (size_t)(s + i - q - 1)) : NULL;
                if (!g.a || (q && !g.b)) {
                    free(g.a);
                    free(g.b);
                    return HY_ENOMEM;
                }
            } else if (i > a && !(g.a = strndup(s + a, i - a))) {
                return HY_ENOMEM;
            }
            i++;
        } else if (ops[k].arg == ARG_HEADER) {
            snprintf(err, errlen, "%%%s%% at offset %zu needs a header: %%%s(NAME)%%", ops[k].name,
                     start, ops[k].name);
            return HY_EINVAL;
        }
        if (i < n && s[i] == ':') {
            size_t d = ++i;
            unsigned long long v = 0;
            while (i < n && isdigit((unsigned char)s[i]) && v < 1000000)
                v = v * 10 + (unsigned)(s[i++] - '0');
            if (i == d || v == 0 || v >= 1000000) {
                free(g.a);
                free(g.b);
                snprintf(err, errlen,
                         "%%%s%% at offset %zu: ':' must be followed by a length 1-999999",
                         ops[k].name, start);
                return HY_EINVAL;
            }
            g.maxlen = (size_t)v;
        }
        if (i >= n || s[i] != '%') {
            free(g.a);
            free(g.b);
            snprintf(err, errlen, "command operator %%%s at offset %zu is not closed by '%%'",
                     ops[k].name, start);
            return HY_EINVAL;
        }
        i++;
        lit = i;
        if ((rc = push(t, g)) < 0)
            return rc;
    }
    return push_lit(t, s + lit, n - lit);
}

int hy_alog_fmt_check(const char *s, char *err, size_t errlen)
{
    struct tmpl t = {0};
    int rc = parse(s, &t, err, errlen);
    tmpl_fini(&t);
    return rc;
}

static void fmt_clear(struct hy_alog_fmt *f)
{
    tmpl_fini(&f->tcp);
    if (!f->shared)
        tmpl_fini(&f->http);
    f->http = (struct tmpl){0};
    f->shared = false;
}

struct hy_alog_fmt *hy_alog_fmt_new(void)
{
    struct hy_alog_fmt *f = calloc(1, sizeof(*f));
    char err[256];
    if (f && (parse(HY_ALOG_DEFAULT_TCP, &f->tcp, err, sizeof(err)) < 0 ||
              parse(HY_ALOG_DEFAULT_HTTP, &f->http, err, sizeof(err)) < 0)) {
        hy_alog_fmt_free(f);
        return NULL;
    }
    return f;
}

void hy_alog_fmt_free(struct hy_alog_fmt *f)
{
    if (!f)
        return;
    fmt_clear(f);
    for (size_t i = 0; i < f->nkv; i++) {
        free(f->kv[i].key);
        tmpl_fini(&f->kv[i].t);
    }
    free(f->kv);
    free(f);
}

int hy_alog_fmt_plain(struct hy_alog_fmt *f, const char *s, char *err, size_t errlen)
{
    struct tmpl t = {0};
    int rc = parse(s, &t, err, errlen);
    if (rc < 0) {
        tmpl_fini(&t);
        return rc;
    }
    fmt_clear(f);
    f->tcp = f->http = t;
    f->shared = true;
    return 0;
}

int hy_alog_fmt_json_add(struct hy_alog_fmt *f, const char *key, const char *value, char *err,
                         size_t errlen)
{
    struct tmpl t = {0};
    int rc = parse(value, &t, err, errlen);
    struct kv *v = rc == 0 ? realloc(f->kv, (f->nkv + 1) * sizeof(*v)) : NULL;
    char *k = v ? strdup(key) : NULL;
    if (!k) {
        if (v)
            f->kv = v;
        tmpl_fini(&t);
        return rc < 0 ? rc : HY_ENOMEM;
    }
    f->kv = v;
    v[f->nkv++] = (struct kv){k, t};
    f->json = true;
    return 0;
}

void hy_alog_fmt_omit_empty(struct hy_alog_fmt *f, bool on)
{
    f->omit = on;
}

/* ----- rendering ----- */

static const char *without_port(const char *addr, char *buf, size_t size)
{
    if (!addr || !*addr)
        return NULL;
    const char *colon = strrchr(addr, ':');
    size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
    if (n && addr[0] == '[' && addr[n - 1] == ']') { /* [v6]:port */
        addr++;
        n -= 2;
    }
    snprintf(buf, size, "%.*s", (int)n, addr);
    return buf;
}

/* Envoy's START_TIME: strftime plus %f / %1f..%9f (fractions of a second)
 * and %s (Unix seconds); default ISO 8601 UTC with milliseconds. */
static void start_time(int64_t us, const char *fmt, char *out, size_t size)
{
    time_t secs = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    if (!fmt || !*fmt) {
        size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, size - n, ".%03ldZ", frac / 1000);
        return;
    }
    char f2[512];
    size_t o = 0;
    for (const char *p = fmt; *p && o + 24 < sizeof(f2); p++) {
        int digits = -1;
        if (p[0] == '%' && p[1] == 'f')
            digits = 9, p += 1;
        else if (p[0] == '%' && p[1] >= '1' && p[1] <= '9' && p[2] == 'f')
            digits = p[1] - '0', p += 2;
        else if (p[0] == '%' && p[1] == 's') {
            o += (size_t)snprintf(f2 + o, sizeof(f2) - o, "%lld", (long long)secs);
            p++;
            continue;
        } else if (p[0] == '%' && p[1]) {
            f2[o++] = *p++;
            f2[o++] = *p;
            continue;
        }
        if (digits < 0) {
            f2[o++] = *p;
            continue;
        }
        char ns[16];
        snprintf(ns, sizeof(ns), "%09ld", frac * 1000);
        memcpy(f2 + o, ns, (size_t)digits);
        o += (size_t)digits;
    }
    f2[o] = 0;
    if (!strftime(out, size, f2, &tm))
        out[0] = 0;
}

static const char *req_field(const struct hy_alog_rec *r, bool resp, const char *name, char *buf,
                             size_t size)
{
    if (!r->http)
        return NULL;
    if (!resp && name[0] == ':') {
        if (!strcasecmp(name, ":METHOD"))
            return r->method;
        if (!strcasecmp(name, ":PATH"))
            return r->path;
        if (!strcasecmp(name, ":AUTHORITY"))
            return r->authority;
        if (!strcasecmp(name, ":SCHEME"))
            return r->scheme;
        return NULL;
    }
    if (resp && !strcasecmp(name, "X-ENVOY-UPSTREAM-SERVICE-TIME") && r->upstream_ms >= 0) {
        snprintf(buf, size, "%" PRId64, r->upstream_ms);
        return buf;
    }
    if (!resp && !strcasecmp(name, "HOST"))
        return r->authority;
    return r->header ? r->header(r->ud, resp, name) : NULL;
}

/* The value of segment g for r, or NULL when r has none. */
static const char *value(const struct seg *g, const struct hy_alog_rec *r, char *buf, size_t size)
{
    switch (g->op) {
    case OP_LIT:
        return g->a;
    case OP_KUMA_MESH:
        return r->mesh;
    case OP_KUMA_SOURCE_SERVICE:
        return r->src_service;
    case OP_KUMA_DESTINATION_SERVICE:
        return r->dst_service;
    case OP_KUMA_SOURCE_ADDRESS:
        return r->src_addr;
    case OP_KUMA_SOURCE_ADDRESS_WITHOUT_PORT:
        return without_port(r->src_addr, buf, size);
    case OP_KUMA_TRAFFIC_DIRECTION:
        return r->inbound ? "INBOUND" : "OUTBOUND";
    case OP_START_TIME:
        start_time(r->start_us, g->a, buf, size);
        return buf;
    case OP_DURATION:
        snprintf(buf, size, "%" PRIu64, r->duration_ms);
        return buf;
    case OP_RESPONSE_DURATION:
        if (r->upstream_ms < 0 || !r->http)
            return NULL;
        snprintf(buf, size, "%" PRId64, r->upstream_ms);
        return buf;
    case OP_RESPONSE_CODE:
        if (!r->status)
            return r->http ? "0" : NULL;
        snprintf(buf, size, "%u", r->status);
        return buf;
    case OP_RESPONSE_CODE_DETAILS:
        return r->details;
    case OP_RESPONSE_FLAGS:
        return r->flags && *r->flags ? r->flags : "-";
    case OP_BYTES_SENT:
    case OP_BYTES_RECEIVED:
        if (!r->has_bytes)
            return NULL;
        snprintf(buf, size, "%" PRIu64, g->op == OP_BYTES_SENT ? r->bytes_sent : r->bytes_received);
        return buf;
    case OP_PROTOCOL:
        return r->http ? r->protocol : NULL;
    case OP_UPSTREAM_HOST:
        return r->upstream_host;
    case OP_UPSTREAM_CLUSTER:
        return r->upstream_cluster;
    case OP_DOWNSTREAM_REMOTE_ADDRESS:
        return r->downstream_remote;
    case OP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT:
        return without_port(r->downstream_remote, buf, size);
    case OP_DOWNSTREAM_LOCAL_ADDRESS:
        return r->downstream_local;
    case OP_DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT:
        return without_port(r->downstream_local, buf, size);
    case OP_HOSTNAME:
        return gethostname(buf, size) == 0 ? (buf[size - 1] = 0, buf) : NULL;
    case OP_REQ:
    case OP_RESP: {
        const char *v = req_field(r, g->op == OP_RESP, g->a, buf, size);
        if ((!v || !*v) && g->b)
            v = req_field(r, g->op == OP_RESP, g->b, buf, size);
        return v;
    }
    }
    return NULL;
}

/* Appends template t for r; *missing: it is one operator with no value. */
static int render(const struct tmpl *t, const struct hy_alog_rec *r, bool omit, struct hy_buf *b,
                  bool *missing)
{
    char buf[256];
    if (missing)
        *missing = t->n == 1 && t->v[0].op != OP_LIT &&
                   !(value(&t->v[0], r, buf, sizeof(buf)) && *value(&t->v[0], r, buf, sizeof(buf)));
    for (size_t i = 0; i < t->n; i++) {
        const struct seg *g = &t->v[i];
        const char *v = value(g, r, buf, sizeof(buf));
        size_t n = g->op == OP_LIT ? g->len : v ? strlen(v) : 0;
        if (g->op != OP_LIT && !n) {
            v = omit ? "" : "-";
            n = strlen(v);
        }
        if (g->maxlen && n > g->maxlen)
            n = g->maxlen;
        if (n && hy_buf_append(b, v, n) < 0)
            return HY_ENOMEM;
    }
    return 0;
}

int hy_alog_fmt_render(const struct hy_alog_fmt *f, const struct hy_alog_rec *r, struct hy_buf *out)
{
    int rc = 0;
    if (!f->json) {
        size_t start = out->len;
        rc = render(r->http ? &f->http : &f->tcp, r, f->omit, out, NULL);
        if (rc == 0 && (out->len == start || out->data[out->len - 1] != '\n'))
            rc = hy_buf_append(out, "\n", 1);
        return rc;
    }
    struct hy_buf v = {0};
    bool first = true;
    rc = hy_buf_append(out, "{", 1);
    for (size_t i = 0; rc == 0 && i < f->nkv; i++) {
        bool missing;
        v.len = 0;
        if ((rc = render(&f->kv[i].t, r, f->omit, &v, &missing)) < 0)
            break;
        if (missing && f->omit)
            continue;
        if (!first)
            rc = hy_buf_append(out, ",", 1);
        first = false;
        if (rc == 0)
            rc = hy_codec_json_string(out, f->kv[i].key, strlen(f->kv[i].key));
        if (rc == 0)
            rc = hy_buf_append(out, ":", 1);
        if (rc == 0)
            rc = missing ? hy_buf_append(out, "null", 4)
                         : hy_codec_json_string(out, v.len ? v.data : "", v.len);
    }
    if (rc == 0)
        rc = hy_buf_append(out, "}\n", 2);
    hy_buf_fini(&v);
    return rc;
}

int hy_alog_fmt_render_value(const struct hy_alog_fmt *f, const struct hy_alog_rec *r,
                             struct hy_buf *out)
{
    return render(r->http ? &f->http : &f->tcp, r, f->omit, out, NULL);
}

const char *hy_alog_flags_of(const char *result)
{
    static const struct {
        const char *result, *flags;
    } map[] = {
        {"upstream_failed", "UF"},
        {"no_endpoints", "UH"},
        {"overflow", "UO"},
        {"rate_limited", "RL"},
        {"denied", "UAEX"},
        {"wrong_peer", "UAEX"},
        {"idle", "SI"},
        {"timeout", "UT"},
        {"upstream_reset", "UC"},
        {"downstream_closed", "DC"},
        {"bad_request", "DPE"},
        {"no_config", "NR"},
        {"no_route", "NR"},
        {"fault_abort", "FI"},
        {"fault_delay", "DI"},
        {"tls_failed", "UF"},
    };
    for (size_t i = 0; result && i < sizeof(map) / sizeof(*map); i++)
        if (!strcmp(result, map[i].result))
            return map[i].flags;
    return "-";
}
