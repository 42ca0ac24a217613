/* hypha-test-otlp-dump: decodes OTLP trace requests (the bodies of POST
 * /v1/traces, files named on the command line) with the schema's
 * protobuf-c code (proto/otlp_trace.proto) and prints one JSON line per
 * span: service (resource service.name), traceId, spanId, parentSpanId
 * (hex, "" for a root), name, kind (SERVER, CLIENT...), start and end (ns),
 * status code and attributes. Exit 1 when a file does not decode: the
 * integration test (tests/integration/trace.sh) checks the wire format so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "otlp_trace.pb-c.h"
#include "poison.h"

static void hex(struct hy_buf *b, ProtobufCBinaryData d)
{
    hy_buf_puts(b, "\"");
    for (size_t i = 0; i < d.len; i++)
        hy_buf_printf(b, "%02x", d.data[i]);
    hy_buf_puts(b, "\"");
}

static void str(struct hy_buf *b, const char *s)
{
    hy_codec_json_string(b, s ? s : "", s ? strlen(s) : 0);
}

static const char *kind_name(int k)
{
    static const char *const n[] = {"UNSPECIFIED", "INTERNAL", "SERVER",
                                    "CLIENT",      "PRODUCER", "CONSUMER"};
    return k >= 0 && k < 6 ? n[k] : "?";
}

static const char *service_of(const Hypha__Otlp__Resource *r)
{
    for (size_t i = 0; r && i < r->n_attributes; i++)
        if (!strcmp(r->attributes[i]->key, "service.name") && r->attributes[i]->value &&
            r->attributes[i]->value->value_case == HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE)
            return r->attributes[i]->value->string_value;
    return "";
}

static int dump(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    struct hy_buf in = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        hy_buf_append(&in, chunk, n);
    fclose(f);
    Hypha__Otlp__ExportTraceServiceRequest *req =
        hypha__otlp__export_trace_service_request__unpack(NULL, in.len, (uint8_t *)in.data);
    hy_buf_fini(&in);
    if (!req) {
        fprintf(stderr, "%s: not an OTLP ExportTraceServiceRequest\n", path);
        return 1;
    }
    for (size_t r = 0; r < req->n_resource_spans; r++) {
        const Hypha__Otlp__ResourceSpans *rs = req->resource_spans[r];
        for (size_t s = 0; s < rs->n_scope_spans; s++) {
            const Hypha__Otlp__ScopeSpans *ss = rs->scope_spans[s];
            for (size_t i = 0; i < ss->n_spans; i++) {
                const Hypha__Otlp__Span *sp = ss->spans[i];
                struct hy_buf b = {0};
                hy_buf_puts(&b, "{\"service\":");
                str(&b, service_of(rs->resource));
                hy_buf_puts(&b, ",\"scope\":");
                str(&b, ss->scope ? ss->scope->name : "");
                hy_buf_puts(&b, ",\"traceId\":");
                hex(&b, sp->trace_id);
                hy_buf_puts(&b, ",\"spanId\":");
                hex(&b, sp->span_id);
                hy_buf_puts(&b, ",\"parentSpanId\":");
                hex(&b, sp->parent_span_id);
                hy_buf_puts(&b, ",\"name\":");
                str(&b, sp->name);
                hy_buf_printf(&b, ",\"kind\":\"%s\",\"start\":%llu,\"end\":%llu,\"status\":%d",
                              kind_name(sp->kind), (unsigned long long)sp->start_time_unix_nano,
                              (unsigned long long)sp->end_time_unix_nano,
                              sp->status ? (int)sp->status->code : 0);
                hy_buf_puts(&b, ",\"attributes\":{");
                for (size_t k = 0; k < sp->n_attributes; k++) {
                    const Hypha__Otlp__KeyValue *kv = sp->attributes[k];
                    hy_buf_puts(&b, k ? "," : "");
                    str(&b, kv->key);
                    hy_buf_puts(&b, ":");
                    str(&b, kv->value && kv->value->value_case ==
                                             HYPHA__OTLP__ANY_VALUE__VALUE_STRING_VALUE
                                ? kv->value->string_value
                                : "");
                }
                hy_buf_puts(&b, "}}");
                printf("%s\n", b.data);
                hy_buf_fini(&b);
            }
        }
    }
    hypha__otlp__export_trace_service_request__free_unpacked(req, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= dump(argv[i]);
    return rc;
}
