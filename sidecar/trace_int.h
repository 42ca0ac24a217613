/* What the tracer's files share (trace_span.c, trace_enc.c,
 * trace_writer.c): a finished span as queued, and the encoders. */
#ifndef HY_TRACE_INT_H
#define HY_TRACE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "trace.h"

struct hy_trace_tag {
    const char *k, *v; /* into the span's own block */
};

/* One finished span: one allocation, its strings after it (printable
 * ASCII only: a header's other bytes become '?', so JSON and protobuf
 * strings stay valid). */
struct hy_trace_span {
    struct hy_trace_span *next; /* the queue */
    uint8_t trace_id[16];
    uint8_t span_id[8], parent_id[8];
    bool id128, has_parent, shared, error;
    enum hy_trace_kind kind;
    int64_t start_us, duration_us;
    const char *name, *service, *remote; /* remote: the service called (client), or NULL */
    size_t ntags;
    struct hy_trace_tag tags[];
};

/* A span of ctx with these strings (copied, cut at HY_TRACE_MAX_TAG),
 * tags k[i] = v[i] (a NULL or empty value: left out). NULL: no memory. */
struct hy_trace_span *hy_trace_span_new(const struct hy_trace_ctx *ctx, int64_t end_us, bool error,
                                        const char *name, const char *service, const char *remote,
                                        const char *const *k, const char *const *v, size_t n);

/* Zipkin v2 JSON (a list of spans, as POST /api/v2/spans takes) of
 * v[0..n) appended to b. 0 or HY_ENOMEM. */
int hy_trace_zipkin_json(struct hy_buf *b, struct hy_trace_span *const *v, size_t n);
/* OTLP ExportTraceServiceRequest (protobuf, as POST /v1/traces takes) of
 * v[0..n) appended to b: one ResourceSpans per run of spans of one
 * service (service.name), scope "hypha-dp". 0 or HY_ENOMEM. */
int hy_trace_otlp(struct hy_buf *b, struct hy_trace_span *const *v, size_t n);

#endif
