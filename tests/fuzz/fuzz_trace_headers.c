/* The sidecar's trace header parsers (sidecar/trace.c) on arbitrary
 * request heads: what any caller of a traced service sends. The input is
 * "name: value" lines (the first byte picks the config: Zipkin or OTLP,
 * shared spans, 128-bit ids). Whatever came, a request's context must be
 * written back so the next hop reads exactly it: one traceparent, the same
 * trace and span ids through B3, a sampled flag that matches. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    uint8_t mode = data[0];
    struct hy_http_head h = {.request = true};
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon && colon > p) {
            const char *v = colon + 1;
            while (v < e && *v == ' ')
                v++;
            if (!memchr(p, 0, (size_t)(e - p)))
                hy_http_head_add(&h, p, (size_t)(colon - p), v, (size_t)(e - v));
        }
        p = e + 1;
    }
    struct hy_trace_in in;
    hy_trace_extract(&h, &in);
    Hypha__V1__DpTrace t = HYPHA__V1__DP_TRACE__INIT;
    t.type = mode & 1 ? "OpenTelemetry" : "Zipkin";
    t.has_shared_span_context = 1;
    t.shared_span_context = mode & 2;
    t.has_trace_id128bit = 1;
    t.trace_id128bit = mode & 4;
    t.has_random = 1;
    t.random = (mode >> 3) * 40000u;
    struct hy_trace_ctx c;
    if (hy_trace_begin(&c, &t, mode & 0x80 ? HY_TRACE_SERVER : HY_TRACE_CLIENT, &h,
                       0x9e3779b97f4a7c15u * (size + 1)) == 0) {
        struct hy_trace_in out;
        hy_trace_extract(&h, &out);
        if (out.fmt == HY_TRACE_NONE || memcmp(out.trace_id, c.trace_id, 16) ||
            memcmp(out.span_id, c.span_id, 8) || out.sampled != (int)c.sampled)
            abort();
        size_t from = 0, n = 0;
        while (hy_http_head_find(&h, "traceparent", &from))
            n++;
        if (n != 1)
            abort();
        char tp[64];
        hy_trace_traceparent(&c, tp, sizeof(tp));
        if (!hy_trace_parse_traceparent(tp, &out))
            abort();
    }
    hy_http_head_fini(&h);
    return 0;
}
