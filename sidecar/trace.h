/* MeshTrace in the sidecar: W3C `traceparent` and B3 (multi-header x-b3-*
 * and single `b3`) trace contexts read from a request and written onto it
 * (trace.c, pure), the sampling decision as Kuma's overall/client/random
 * fields make it, and a span per request and side (client at an outbound,
 * server at an inbound) queued for a writer thread that batches them to
 * the backend, Zipkin v2 JSON or OTLP/HTTP protobuf (trace_writer.c,
 * trace_enc.c). Traffic never waits for a collector: the queue is
 * bounded, what does not fit or cannot be sent is dropped and counted in
 * hypha_dp_trace_spans_dropped_total{reason}. */
#ifndef HY_TRACE_H
#define HY_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dp.pb-c.h"
#include "http_head.h"

#define HY_TRACE_QUEUE_SPANS 8192   /* spans waiting for the writer; more: dropped */
#define HY_TRACE_BATCH_SPANS 512    /* spans in one POST at most */
#define HY_TRACE_FLUSH_MS 200       /* a partial batch waits this long at most */
#define HY_TRACE_IO_TIMEOUT_MS 5000 /* connect, send, answer: each, per POST */
#define HY_TRACE_TRIES 3            /* POSTs of one batch before its spans are dropped */
#define HY_TRACE_BACKOFF_MIN_MS 100
#define HY_TRACE_BACKOFF_MAX_MS 10000
#define HY_TRACE_MAX_TAG 256 /* bytes of a tag value kept; longer ones are cut */

/* What a request carried: a trace context (ids) and/or a sampling
 * decision. */
enum hy_trace_fmt { HY_TRACE_NONE, HY_TRACE_W3C, HY_TRACE_B3_MULTI, HY_TRACE_B3_SINGLE };
struct hy_trace_in {
    enum hy_trace_fmt fmt; /* NONE: no ids came (a decision alone may have) */
    uint8_t trace_id[16];  /* 64-bit ids sit in the low 8 bytes, high 8 zero */
    bool id128;
    uint8_t span_id[8];
    uint8_t parent_id[8]; /* B3's parent span id (x-b3-parentspanid, b3's 4th field) */
    bool has_parent;
    int sampled; /* -1: no decision came; 0; 1 (B3 debug counts as 1) */
};

/* Parsers, each refusing (false, *in untouched past fmt NONE) anything but
 * its exact grammar: lowercase hex of the right length, ids not all zero.
 * traceparent: version 00 exactly 55 bytes; a later version (not ff) may
 * be longer, its first 55 bytes read as 00's. */
bool hy_trace_parse_traceparent(const char *v, struct hy_trace_in *in);
/* b3: "TRACEID-SPANID[-SAMPLING[-PARENTSPANID]]" or a lone "0", "1", "d". */
bool hy_trace_parse_b3(const char *v, struct hy_trace_in *in);
/* x-b3-traceid, x-b3-spanid, x-b3-parentspanid, x-b3-sampled, x-b3-flags
 * (each NULL when absent): ids need both trace and span id; a sampling
 * decision may come alone. */
bool hy_trace_parse_b3_multi(const char *trace, const char *span, const char *parent,
                             const char *sampled, const char *flags, struct hy_trace_in *in);
/* What head h carries: traceparent first, then b3, then x-b3-*; a header
 * that does not parse counts as absent (a new trace starts). Several
 * fields of one name: the first. Cannot fail. */
void hy_trace_extract(const struct hy_http_head *h, struct hy_trace_in *in);

/* Kuma's sampling (Envoy's): a decision that came is kept; otherwise a
 * request is traced when (it has x-client-trace-id and falls in `client`)
 * or falls in `random`, and then also falls in `overall`. Rates per
 * million; rnd: one random number. */
bool hy_trace_decide(const Hypha__V1__DpTrace *t, const struct hy_trace_in *in, bool client_id,
                     uint64_t rnd);

/* One request's span, kept with the request (embedded, zeroed). */
enum hy_trace_kind { HY_TRACE_CLIENT, HY_TRACE_SERVER };
struct hy_trace_ctx {
    bool on;      /* a MeshTrace applies: ids below are set */
    bool sampled; /* record the span */
    bool shared;  /* Zipkin's shared span: a server span with its client's id */
    bool id128;
    enum hy_trace_kind kind;
    enum hy_trace_fmt fmt; /* what came (B3 single is answered in kind) */
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8];
    bool has_parent;
    int64_t start_us; /* wall clock */
};

/* Starts ctx for a request with head h (tracing config t, NULL: nothing
 * happens): reads its context, decides, makes this side's span and writes
 * the context the next hop continues from onto h (traceparent, and B3 as
 * it came: b3 when b3 came, else x-b3-*; tracestate is left as it is).
 * rnd: random bits (ids and sampling draw from them). 0, or HY_ENOMEM /
 * HY_ETOOBIG when h could not take the headers (ctx stays on; the next
 * hop starts anew). */
int hy_trace_begin(struct hy_trace_ctx *ctx, const Hypha__V1__DpTrace *t, enum hy_trace_kind kind,
                   struct hy_http_head *h, uint64_t rnd);

/* ----- the proxy's tracer (trace_writer.c, trace_span.c) ----- */

struct hy_trace;
struct hy_trace_span;
struct hy_metrics;
struct hy_l7_worker;
struct hy_l7_done;

/* The proxy's tracer: registers its counters in m and starts the writer
 * thread. 0 and *out, or HY_ENOMEM / a negative errno (*out NULL).
 * Control thread. */
int hy_trace_new(struct hy_metrics *m, struct hy_trace **out);
/* Stops the writer (what is queued is dropped; a POST under way ends
 * within its timeouts) and frees t. After every worker has ended. NULL is
 * fine. */
void hy_trace_free(struct hy_trace *t);
/* Queues span s (taken) for conf's backend; dropped and counted when the
 * queue is full. Any thread; never blocks on the backend. */
void hy_trace_queue(struct hy_trace *t, const Hypha__V1__DpTrace *conf, struct hy_trace_span *s);
/* A request ended (d->trace its context): its span, when sampled and the
 * config has a backend, with Kuma's tags, queued. Worker thread. */
void hy_trace_http_done(struct hy_l7_worker *lw, const struct hy_l7_done *d);
/* The worker's current MeshTrace config (NULL: none). */
const Hypha__V1__DpTrace *hy_trace_conf(struct hy_l7_worker *lw);

/* Formats: lowercase hex of n bytes into out (2n + 1). */
void hy_trace_hex(const uint8_t *p, size_t n, char *out);
/* traceparent of ctx into out (56 bytes). */
void hy_trace_traceparent(const struct hy_trace_ctx *ctx, char *out, size_t size);
/* b3 single of ctx into out (at least 70 bytes). */
void hy_trace_b3(const struct hy_trace_ctx *ctx, char *out, size_t size);

#endif
