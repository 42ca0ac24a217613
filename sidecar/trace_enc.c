/* Spans as the backends take them (trace_int.h): Zipkin's v2 JSON and
 * OTLP's ExportTraceServiceRequest, each from the same queued record. */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "otlp_trace.pb-c.h"
#include "trace_int.h"
#include "poison.h"

static size_t cut(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > HY_TRACE_MAX_TAG ? HY_TRACE_MAX_TAG : n;
}

static char *put(char **at, const char *s)
{
    size_t n = cut(s);
    char *d = *at;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        d[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    d[n] = 0;
    *at += n + 1;
    return d;
}

struct hy_trace_span *hy_trace_span_new(const struct hy_trace_ctx *ctx, int64_t end_us, bool error,
                                        const char *name, const char *service, const char *remote,
                                        const char *const *k, const char *const *v, size_t n)
{
    size_t bytes = cut(name) + cut(service) + cut(remote) + 3, kept = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] && v[i][0]) {
            bytes += cut(k[i]) + cut(v[i]) + 2;
            kept++;
        }
    struct hy_trace_span *s = malloc(sizeof(*s) + kept * sizeof(s->tags[0]) + bytes);
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    char *at = (char *)(s->tags + kept);
    memcpy(s->trace_id, ctx->trace_id, 16);
    memcpy(s->span_id, ctx->span_id, 8);
    memcpy(s->parent_id, ctx->parent_id, 8);
    s->id128 = ctx->id128;
    s->has_parent = ctx->has_parent;
    s->shared = ctx->shared;
    s->kind = ctx->kind;
    s->error = error;
    s->start_us = ctx->start_us;
    s->duration_us = end_us > ctx->start_us ? end_us - ctx->start_us : 1;
    s->name = put(&at, name);
    s->service = put(&at, service);
    s->remote = remote && remote[0] ? put(&at, remote) : NULL;
    for (size_t i = 0; i < n; i++)
        if (v[i] && v[i][0]) {
            s->tags[s->ntags].k = put(&at, k[i]);
            s->tags[s->ntags].v = put(&at, v[i]);
            s->ntags++;
        }
    return s;
}

/* ----- Zipkin v2 JSON ----- */

static int jstr(struct hy_buf *b, const char *s)
{
    return hy_codec_json_string(b, s, strlen(s));
}

int hy_trace_zipkin_json(struct hy_buf *b, struct hy_trace_span *const *v, size_t n)
{
    int rc = hy_buf_puts(b, "[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct hy_trace_span *s = v[i];
        char t[33], id[17], p[17];
        hy_trace_hex(s->id128 ? s->trace_id : s->trace_id + 8, s->id128 ? 16 : 8, t);
        hy_trace_hex(s->span_id, 8, id);
        hy_trace_hex(s->parent_id, 8, p);
        rc = hy_buf_printf(b, "%s{\"traceId\":\"%s\",\"id\":\"%s\",", i ? "," : "", t, id);
        if (rc == 0 && s->has_parent)
            rc = hy_buf_printf(b, "\"parentId\":\"%s\",", p);
        if (rc == 0)
            rc = hy_buf_printf(b,
                               "\"kind\":\"%s\",\"timestamp\":%lld,\"duration\":%lld,%s"
                               "\"name\":",
                               s->kind == HY_TRACE_CLIENT ? "CLIENT" : "SERVER",
                               (long long)s->start_us, (long long)s->duration_us,
                               s->shared ? "\"shared\":true," : "");
        if (rc == 0)
            rc = jstr(b, s->name);
        if (rc == 0)
            rc = hy_buf_puts(b, ",\"localEndpoint\":{\"serviceName\":");
        if (rc == 0)
            rc = jstr(b, s->service);
        if (rc == 0)
            rc = hy_buf_puts(b, "}");
        if (rc == 0 && s->remote) {
            rc = hy_buf_puts(b, ",\"remoteEndpoint\":{\"serviceName\":");
            if (rc == 0)
                rc = jstr(b, s->remote);
            if (rc == 0)
                rc = hy_buf_puts(b, "}");
        }
        if (rc == 0)
            rc = hy_buf_puts(b, ",\"tags\":{");
        for (size_t k = 0; rc == 0 && k < s->ntags; k++) {
            rc = k ? hy_buf_puts(b, ",") : 0;
            if (rc == 0)
                rc = jstr(b, s->tags[k].k);
            if (rc == 0)
                rc = hy_buf_puts(b, ":");
            if (rc == 0)
                rc = jstr(b, s->tags[k].v);
        }
        if (rc == 0)
            rc = hy_buf_puts(b, "}}");
    }
    if (rc == 0)
        rc = hy_buf_puts(b, "]");
    return rc < 0 ? HY_ENOMEM : 0;
}

/* ----- OTLP ----- */

static void kv_str(Hypha__Otlp__KeyValue *kv, Hypha__Otlp__AnyValue *av, const char *k,
                   const char *v)
{
    hypha__otlp__key_value__init(kv);
    hypha__otlp__any_value__init(av);
    av->value_case = HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
    av->string_value = (char *)v;
    kv->key = (char *)k;
    kv->value = av;
}

int hy_trace_otlp(struct hy_buf *b, struct hy_trace_span *const *v, size_t n)
{
    /* everything on the heap in a few arrays, borrowed strings; freed below */
    size_t ntags = 0, nres = 0;
    for (size_t i = 0; i < n; i++) {
        ntags += v[i]->ntags;
        if (!i || strcmp(v[i]->service, v[i - 1]->service))
            nres++;
    }
    Hypha__Otlp__Span *sp = calloc(n ? n : 1, sizeof(*sp));
    Hypha__Otlp__Span **spp = calloc(n ? n : 1, sizeof(*spp));
    Hypha__Otlp__Status *st = calloc(n ? n : 1, sizeof(*st));
    Hypha__Otlp__KeyValue *kv = calloc(ntags + nres + 1, sizeof(*kv));
    Hypha__Otlp__KeyValue **kvp = calloc(ntags + nres + 1, sizeof(*kvp));
    Hypha__Otlp__AnyValue *av = calloc(ntags + nres + 1, sizeof(*av));
    Hypha__Otlp__ResourceSpans *rs = calloc(nres + 1, sizeof(*rs));
    Hypha__Otlp__ResourceSpans **rsp = calloc(nres + 1, sizeof(*rsp));
    Hypha__Otlp__Resource *res = calloc(nres + 1, sizeof(*res));
    Hypha__Otlp__ScopeSpans *ss = calloc(nres + 1, sizeof(*ss));
    Hypha__Otlp__ScopeSpans **ssp = calloc(nres + 1, sizeof(*ssp));
    int rc = HY_ENOMEM;
    if (!sp || !spp || !st || !kv || !kvp || !av || !rs || !rsp || !res || !ss || !ssp)
        goto out_free;
    Hypha__Otlp__InstrumentationScope scope = HYPHA__OTLP__INSTRUMENTATION_SCOPE__INIT;
    scope.name = "hypha-dp";
    Hypha__Otlp__ExportTraceServiceRequest req = HYPHA__OTLP__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.resource_spans = rsp;
    size_t kvi = 0, r = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        const struct hy_trace_span *s = v[i];
        if (!i || strcmp(s->service, v[i - 1]->service)) {
            r = req.n_resource_spans++;
            hypha__otlp__resource_spans__init(&rs[r]);
            hypha__otlp__resource__init(&res[r]);
            hypha__otlp__scope_spans__init(&ss[r]);
            rsp[r] = &rs[r];
            kv_str(&kv[kvi], &av[kvi], "service.name", s->service);
            kvp[kvi] = &kv[kvi];
            res[r].attributes = &kvp[kvi++];
            res[r].n_attributes = 1;
            rs[r].resource = &res[r];
            ssp[r] = &ss[r];
            rs[r].scope_spans = &ssp[r];
            rs[r].n_scope_spans = 1;
            ss[r].scope = &scope;
            ss[r].spans = &spp[i];
        }
        ss[r].n_spans++;
        Hypha__Otlp__Span *x = &sp[i];
        hypha__otlp__span__init(x);
        spp[i] = x;
        x->trace_id.data = (uint8_t *)s->trace_id;
        x->trace_id.len = 16;
        x->span_id.data = (uint8_t *)s->span_id;
        x->span_id.len = 8;
        if (s->has_parent) {
            x->parent_span_id.data = (uint8_t *)s->parent_id;
            x->parent_span_id.len = 8;
        }
        x->name = (char *)s->name;
        x->kind = s->kind == HY_TRACE_CLIENT ? HYPHA__OTLP__SPAN__SPAN_KIND__SPAN_KIND_CLIENT
                                             : HYPHA__OTLP__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
        x->start_time_unix_nano = (uint64_t)s->start_us * 1000u;
        x->end_time_unix_nano = (uint64_t)(s->start_us + s->duration_us) * 1000u;
        x->attributes = &kvp[kvi];
        for (size_t k = 0; k < s->ntags; k++, kvi++) {
            kv_str(&kv[kvi], &av[kvi], s->tags[k].k, s->tags[k].v);
            kvp[kvi] = &kv[kvi];
        }
        x->n_attributes = s->ntags;
        hypha__otlp__status__init(&st[i]);
        st[i].code = s->error ? HYPHA__OTLP__STATUS__STATUS_CODE__STATUS_CODE_ERROR
                              : HYPHA__OTLP__STATUS__STATUS_CODE__STATUS_CODE_UNSET;
        x->status = &st[i];
    }
    size_t len = hypha__otlp__export_trace_service_request__get_packed_size(&req);
    uint8_t *packed = malloc(len ? len : 1);
    if (packed) {
        hypha__otlp__export_trace_service_request__pack(&req, packed);
        rc = hy_buf_append(b, packed, len) < 0 ? HY_ENOMEM : 0;
        free(packed);
    }
out_free:
    free(sp), free(spp), free(st), free(kv), free(kvp), free(av);
    free(rs), free(rsp), free(res), free(ss), free(ssp);
    return rc;
}
