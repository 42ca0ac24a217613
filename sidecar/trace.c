/* Trace contexts on HTTP requests (trace.h): W3C traceparent and B3 read
 * strictly and written back for the next hop, and the sampling decision.
 * Pure: no sockets, no clocks but the span's start. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "error.h"
#include "l7.h"
#include "trace.h"
#include "poison.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* W3C and B3 both say lowercase */
}

/* n bytes from exactly 2n hex characters at s. */
static bool unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

void hy_trace_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = 0;
}

/* A trace id of 16 or 32 hex characters (s[0..len)). */
static bool trace_id(const char *s, size_t len, uint8_t id[16], bool *id128)
{
    uint8_t t[16] = {0};
    if (len == 32 ? !unhex(s, 16, t) : len == 16 ? !unhex(s, 8, t + 8) : true)
        return false;
    if (zero(t, 16))
        return false;
    memcpy(id, t, 16);
    *id128 = !zero(t, 8);
    return true;
}

static bool span_id(const char *s, size_t len, uint8_t id[8])
{
    uint8_t t[8];
    if (len != 16 || !unhex(s, 8, t) || zero(t, 8))
        return false;
    memcpy(id, t, 8);
    return true;
}

bool hy_trace_parse_traceparent(const char *v, struct hy_trace_in *in)
{
    /* VERSION(2)-TRACEID(32)-PARENTID(16)-FLAGS(2) */
    if (!v)
        return false;
    size_t n = strlen(v);
    uint8_t ver, flags, t[16], s[8];
    if (n < 55 || !unhex(v, 1, &ver) || ver == 0xff || (ver == 0 && n != 55) ||
        (n > 55 && v[55] != '-'))
        return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!unhex(v + 3, 16, t) || zero(t, 16) || !unhex(v + 36, 8, s) || zero(s, 8) ||
        !unhex(v + 53, 1, &flags))
        return false;
    memset(in, 0, sizeof(*in));
    in->fmt = HY_TRACE_W3C;
    memcpy(in->trace_id, t, 16);
    in->id128 = !zero(t, 8);
    memcpy(in->span_id, s, 8);
    in->sampled = flags & 1;
    return true;
}

static int b3_sampling(const char *s, size_t n)
{
    if (n == 1 && (s[0] == '1' || s[0] == 'd'))
        return 1;
    if (n == 1 && s[0] == '0')
        return 0;
    return -2; /* not one */
}

bool hy_trace_parse_b3(const char *v, struct hy_trace_in *in)
{
    if (!v)
        return false;
    size_t n = strlen(v);
    struct hy_trace_in x = {.sampled = -1};
    int smp = b3_sampling(v, n);
    if (smp >= 0) { /* a decision alone */
        x.sampled = smp;
        *in = x;
        return true;
    }
    const char *dash = memchr(v, '-', n);
    if (!dash || !trace_id(v, (size_t)(dash - v), x.trace_id, &x.id128))
        return false;
    const char *sp = dash + 1, *end = v + n;
    const char *d2 = memchr(sp, '-', (size_t)(end - sp));
    if (!span_id(sp, (size_t)((d2 ? d2 : end) - sp), x.span_id))
        return false;
    if (d2) {
        const char *sm = d2 + 1;
        const char *d3 = memchr(sm, '-', (size_t)(end - sm));
        if ((x.sampled = b3_sampling(sm, (size_t)((d3 ? d3 : end) - sm))) < 0)
            return false;
        if (d3) {
            if (!span_id(d3 + 1, (size_t)(end - d3 - 1), x.parent_id))
                return false;
            x.has_parent = true;
        }
    }
    x.fmt = HY_TRACE_B3_SINGLE;
    *in = x;
    return true;
}

bool hy_trace_parse_b3_multi(const char *trace, const char *span, const char *parent,
                             const char *sampled, const char *flags, struct hy_trace_in *in)
{
    struct hy_trace_in x = {.sampled = -1};
    if (sampled) {
        if (!strcmp(sampled, "1") || !strcasecmp(sampled, "true"))
            x.sampled = 1;
        else if (!strcmp(sampled, "0") || !strcasecmp(sampled, "false"))
            x.sampled = 0;
        else
            return false;
    }
    if (flags && !strcmp(flags, "1"))
        x.sampled = 1; /* debug */
    if (trace || span) {
        if (!trace || !span || !trace_id(trace, strlen(trace), x.trace_id, &x.id128) ||
            !span_id(span, strlen(span), x.span_id))
            return false;
        if (parent) {
            if (!span_id(parent, strlen(parent), x.parent_id))
                return false;
            x.has_parent = true;
        }
        x.fmt = HY_TRACE_B3_MULTI;
    } else if (x.sampled < 0) {
        return false;
    }
    *in = x;
    return true;
}

void hy_trace_extract(const struct hy_http_head *h, struct hy_trace_in *in)
{
    memset(in, 0, sizeof(*in));
    in->sampled = -1;
    struct hy_trace_in b3 = {.sampled = -1};
    bool have_b3 = hy_trace_parse_b3(hy_http_head_get(h, "b3"), &b3) ||
                   hy_trace_parse_b3_multi(
                       hy_http_head_get(h, "x-b3-traceid"), hy_http_head_get(h, "x-b3-spanid"),
                       hy_http_head_get(h, "x-b3-parentspanid"),
                       hy_http_head_get(h, "x-b3-sampled"), hy_http_head_get(h, "x-b3-flags"), &b3);
    if (hy_trace_parse_traceparent(hy_http_head_get(h, "traceparent"), in)) {
        /* B3 beside it for the same span (a sidecar writes both): its parent */
        if (have_b3 && b3.fmt != HY_TRACE_NONE && !memcmp(b3.trace_id, in->trace_id, 16) &&
            !memcmp(b3.span_id, in->span_id, 8) && b3.has_parent) {
            memcpy(in->parent_id, b3.parent_id, 8);
            in->has_parent = true;
        }
        if (have_b3 && b3.fmt == HY_TRACE_B3_SINGLE)
            in->fmt = HY_TRACE_B3_SINGLE; /* answered in kind; the ids are the same */
        return;
    }
    if (have_b3)
        *in = b3;
}

bool hy_trace_decide(const Hypha__V1__DpTrace *t, const struct hy_trace_in *in, bool client_id,
                     uint64_t rnd)
{
    if (in->sampled >= 0)
        return in->sampled == 1;
    uint32_t overall = t->has_overall ? t->overall : 1000000u;
    uint32_t client = t->has_client ? t->client : 1000000u;
    uint32_t random = t->has_random ? t->random : 1000000u;
    bool traced = (client_id && hy_l7_per_million(hy_l7_draw(rnd, 0), client)) ||
                  hy_l7_per_million(hy_l7_draw(rnd, 1), random);
    return traced && hy_l7_per_million(hy_l7_draw(rnd, 2), overall);
}

void hy_trace_traceparent(const struct hy_trace_ctx *ctx, char *out, size_t size)
{
    char t[33], s[17];
    hy_trace_hex(ctx->trace_id, 16, t);
    hy_trace_hex(ctx->span_id, 8, s);
    snprintf(out, size, "00-%s-%s-%s", t, s, ctx->sampled ? "01" : "00");
}

void hy_trace_b3(const struct hy_trace_ctx *ctx, char *out, size_t size)
{
    char t[33], s[17], p[17];
    hy_trace_hex(ctx->id128 ? ctx->trace_id : ctx->trace_id + 8, ctx->id128 ? 16 : 8, t);
    hy_trace_hex(ctx->span_id, 8, s);
    hy_trace_hex(ctx->parent_id, 8, p);
    snprintf(out, size, "%s-%s-%s%s%s", t, s, ctx->sampled ? "1" : "0", ctx->has_parent ? "-" : "",
             ctx->has_parent ? p : "");
}

static void new_id(uint8_t *out, size_t n, uint64_t rnd, unsigned i)
{
    do {
        for (size_t k = 0; k < n; k += 8) {
            uint64_t x = hy_l7_draw(rnd, i++);
            memcpy(out + k, &x, n - k < 8 ? n - k : 8);
        }
    } while (zero(out, n));
}

static const char *const b3_names[] = {"b3",           "x-b3-traceid", "x-b3-spanid",
                                       "x-b3-sampled", "x-b3-flags",   "x-b3-parentspanid"};

static int inject(const struct hy_trace_ctx *ctx, struct hy_http_head *h)
{
    char tp[64], v[80];
    hy_trace_traceparent(ctx, tp, sizeof(tp));
    for (size_t i = 0; i < sizeof(b3_names) / sizeof(*b3_names); i++)
        hy_http_head_remove(h, b3_names[i]);
    int rc = hy_http_head_set(h, "traceparent", tp);
    if (rc == 0 && ctx->fmt == HY_TRACE_B3_SINGLE) {
        hy_trace_b3(ctx, v, sizeof(v));
        return hy_http_head_set(h, "b3", v);
    }
    hy_trace_hex(ctx->id128 ? ctx->trace_id : ctx->trace_id + 8, ctx->id128 ? 16 : 8, v);
    if (rc == 0)
        rc = hy_http_head_set(h, "x-b3-traceid", v);
    hy_trace_hex(ctx->span_id, 8, v);
    if (rc == 0)
        rc = hy_http_head_set(h, "x-b3-spanid", v);
    hy_trace_hex(ctx->parent_id, 8, v);
    if (rc == 0 && ctx->has_parent)
        rc = hy_http_head_set(h, "x-b3-parentspanid", v);
    if (rc == 0)
        rc = hy_http_head_set(h, "x-b3-sampled", ctx->sampled ? "1" : "0");
    return rc;
}

int hy_trace_begin(struct hy_trace_ctx *ctx, const Hypha__V1__DpTrace *t, enum hy_trace_kind kind,
                   struct hy_http_head *h, uint64_t rnd)
{
    memset(ctx, 0, sizeof(*ctx));
    if (!t)
        return 0;
    struct hy_trace_in in;
    hy_trace_extract(h, &in);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    ctx->on = true;
    ctx->kind = kind;
    ctx->fmt = in.fmt;
    ctx->start_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    ctx->sampled = hy_trace_decide(t, &in, hy_http_head_get(h, "x-client-trace-id") != NULL, rnd);
    bool id128 = t->has_trace_id128bit && t->trace_id128bit;
    if (in.fmt != HY_TRACE_NONE) { /* continue it */
        memcpy(ctx->trace_id, in.trace_id, 16);
        ctx->id128 = in.id128;
        bool share = kind == HY_TRACE_SERVER && t->has_shared_span_context &&
                     t->shared_span_context && t->type && !strcmp(t->type, "Zipkin");
        if (share) { /* B3's one span for both sides: its id and parent */
            ctx->shared = true;
            memcpy(ctx->span_id, in.span_id, 8);
            memcpy(ctx->parent_id, in.parent_id, 8);
            ctx->has_parent = in.has_parent;
        } else {
            new_id(ctx->span_id, 8, rnd, 3);
            memcpy(ctx->parent_id, in.span_id, 8);
            ctx->has_parent = true;
        }
    } else { /* a new trace, rooted here */
        new_id(ctx->trace_id + (id128 ? 0 : 8), id128 ? 16 : 8, rnd, 4);
        ctx->id128 = id128;
        new_id(ctx->span_id, 8, rnd, 3);
    }
    return inject(ctx, h);
}
