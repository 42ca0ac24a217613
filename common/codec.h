/* The generic codec: YAML and JSON to protobuf-c messages and back, by
 * walking protobuf-c descriptors. No per-type code: a new resource type needs
 * only its proto message and a registry row.
 *
 * Mapping (protobuf JSON style): lowerCamelCase field names; enums by name;
 * hypha.v1.Duration as "500ms", "5s", "1m30s", "24h", "1d"; hypha.v1.Timestamp
 * as RFC 3339; bytes as base64; maps as YAML mappings; oneof members as
 * ordinary fields (setting two is an error). JSON is read by the same parser
 * (JSON is YAML flow syntax). Map keys written with the "kuma.io/" prefix are
 * read as "hypha.io/". */
#ifndef HY_CODEC_H
#define HY_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "diag.h"
#include "resource.h"

#define HY_CODEC_MAX_BYTES (4u << 20) /* one input, all documents */
#define HY_CODEC_MAX_DEPTH 64         /* nesting of mappings and sequences */
#define HY_CODEC_MAX_KEY 512          /* bytes in a map key (labels, tags) */

struct hy_codec_limits {
    size_t max_bytes; /* 0 = HY_CODEC_MAX_BYTES */
    int max_depth;    /* 0 = HY_CODEC_MAX_DEPTH */
};

/* Where each field of a decoded document was written, so later problems
 * (validation, API conflicts) can point at line:column. */
struct hy_pos {
    char *path; /* owned: "spec.from[0].default.action" */
    int line, col;
};

struct hy_doc {
    struct hy_resource *res; /* owned */
    int line;                /* first line of the document */
    struct hy_pos *pos;      /* owned */
    size_t npos;
};

struct hy_docs {
    struct hy_doc *v; /* owned */
    size_t n;
};

/* Decodes every document of a YAML (or JSON) text into resources. source
 * names the input in errors ("mtp.yaml", "-"). Empty documents are skipped.
 * On failure returns HY_EINVAL (or HY_ETOOBIG/HY_EDEPTH/HY_ENOMEM), adds
 * causes to diag, and leaves out empty; on success out holds one doc per
 * resource (caller frees with hy_docs_fini). Validation is separate. */
int hy_codec_decode_resources(const char *source, const char *text, size_t len,
                              const struct hy_codec_limits *lim, struct hy_docs *out,
                              struct hy_diag *diag);
void hy_docs_fini(struct hy_docs *docs);

/* Validates every decoded document (hy_resource_validate), giving each cause
 * the line:column of its field. Returns true when all are valid. */
bool hy_docs_validate(const struct hy_docs *docs, struct hy_diag *diag);

/* Decodes one document into a message of type desc (e.g. a config file).
 * *out is owned by the caller (protobuf_c_message_free_unpacked). */
int hy_codec_decode_message(const char *source, const char *text, size_t len,
                            const struct hy_codec_limits *lim,
                            const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                            struct hy_diag *diag);

enum hy_format { HY_FORMAT_YAML, HY_FORMAT_JSON };

/* Appends r in the given format: the envelope fields, then the spec at the
 * top level (Kuma's older types) or under `spec:`. JSON is compact, one line.
 * Returns 0 or HY_ENOMEM. */
int hy_codec_encode_resource(const struct hy_resource *r, enum hy_format f, struct hy_buf *out);
/* Appends any message in the given format. */
int hy_codec_encode_message(const ProtobufCMessage *m, enum hy_format f, struct hy_buf *out);

/* True for a protobuf map field (repeated XxxEntry{key, value}). */
bool hy_codec_is_map_entry(const ProtobufCFieldDescriptor *f);
/* Is field f set in m: a repeated one not empty, a oneof member the chosen
 * case, a string or message not NULL, a scalar with its has_ flag (a
 * required one always). */
bool hy_codec_field_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);
/* Bytes one value of type t occupies in a message or a repeated array
 * (protobuf-c's layout). Cannot fail. */
size_t hy_codec_scalar_size(ProtobufCType t);
/* Writes the lowerCamelCase form of snake into out (truncated to size). */
void hy_codec_camel(const char *snake, char *out, size_t size);
/* Appends v[0..len) as a JSON string literal, quoted and escaped. */
int hy_codec_json_string(struct hy_buf *out, const char *v, size_t len);

/* Durations: parses "1m30s", "500ms", "24h", "1d", "10y", "0" (units ns,
 * us, ms, s, m, h, d, y; a sign is not allowed). Returns false on anything
 * else. Formats in the same style (e.g. "1m30s", "500ms", "0s"). */
bool hy_duration_parse(const char *s, int64_t *seconds, int32_t *nanos);
void hy_duration_format(int64_t seconds, int32_t nanos, char *buf, size_t size);
/* RFC 3339 UTC: parses "2026-11-26T06:00:00Z" or with fraction/offset. */
bool hy_timestamp_parse(const char *s, int64_t *seconds, int32_t *nanos);
void hy_timestamp_format(int64_t seconds, int32_t nanos, char *buf, size_t size);

#endif
