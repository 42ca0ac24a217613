/* The access-log format language of MeshAccessLog (Kuma's plain and json
 * formats: Envoy's command operators and Kuma's own): a format is parsed
 * once into segments and rendered for each record. The validator and the
 * sidecar share it, so a format the API accepts is one the sidecar can
 * render, and an unknown operator is refused by name when written. */
#ifndef HY_ALOG_FMT_H
#define HY_ALOG_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Kuma's default formats (docs "MeshAccessLog", Format), used when a
 * backend sets none. */
#define HY_ALOG_DEFAULT_TCP                                                                        \
    "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% "                                                 \
    "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%("                  \
    "%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: "           \
    "%BYTES_RECEIVED% bytes"
#define HY_ALOG_DEFAULT_HTTP                                                                       \
    "[%START_TIME%] %KUMA_MESH% \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" " \
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "                   \
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "      \
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%KUMA_SOURCE_SERVICE%\" "                     \
    "\"%KUMA_DESTINATION_SERVICE%\" \"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%\" \"%UPSTREAM_HOST%\""

#define HY_ALOG_FMT_MAX 8192 /* bytes of one format string */

/* One connection (TCP) or request (HTTP) as a format sees it. Strings are
 * borrowed; NULL or "" is a value the record does not have (rendered "-",
 * or null in json). */
struct hy_alog_rec {
    bool http;
    bool inbound;     /* KUMA_TRAFFIC_DIRECTION INBOUND, else OUTBOUND */
    int64_t start_us; /* Unix microseconds */
    uint64_t duration_ms;
    int64_t upstream_ms;                 /* to the upstream's response head; < 0: unknown */
    unsigned status;                     /* HTTP status; 0: none */
    bool has_bytes;                      /* bytes_* known */
    uint64_t bytes_sent, bytes_received; /* to the downstream, from it */
    const char *mesh, *src_service, *dst_service;
    const char *src_addr;          /* source "address:port" */
    const char *upstream_host;     /* "address:port" */
    const char *upstream_cluster;  /* the service it went to */
    const char *downstream_remote; /* "address:port" */
    const char *downstream_local;  /* "address:port" */
    const char *protocol;          /* "HTTP/1.1", "HTTP/2" */
    const char *flags;             /* Envoy's response flags, "-" for none */
    const char *details;           /* RESPONSE_CODE_DETAILS: how it ended */
    const char *method, *path, *authority, *scheme;
    /* A request (response false) or response header's value by name (any
     * case), or NULL; may be NULL itself: no headers. */
    const char *(*header)(const void *ud, bool response, const char *name);
    const void *ud;
};

struct hy_alog_fmt;

/* A plain format of template s (NULL: Kuma's default for the record's
 * kind) or, after hy_alog_fmt_json_add, a json one. NULL when out of
 * memory. Free with hy_alog_fmt_free. */
struct hy_alog_fmt *hy_alog_fmt_new(void);
void hy_alog_fmt_free(struct hy_alog_fmt *f);
/* Sets f's plain template. 0, or HY_EINVAL with err naming the problem
 * (an unknown operator by name, an unterminated one, a bad argument), or
 * HY_ENOMEM; f keeps its old template then. */
int hy_alog_fmt_plain(struct hy_alog_fmt *f, const char *s, char *err, size_t errlen);
/* Adds key with value template to f's json object (f becomes json). As
 * hy_alog_fmt_plain. */
int hy_alog_fmt_json_add(struct hy_alog_fmt *f, const char *key, const char *value, char *err,
                         size_t errlen);
/* format.omitEmptyValues: a missing value renders "" (plain) or leaves its
 * key out (json) instead of "-" or null. */
void hy_alog_fmt_omit_empty(struct hy_alog_fmt *f, bool on);
/* Checks template s alone (what the validator does). 0 or HY_EINVAL with
 * err set. */
int hy_alog_fmt_check(const char *s, char *err, size_t errlen);

/* Appends r rendered by f (a plain format with no template: Kuma's
 * default for r's kind) and a newline to out. 0 or HY_ENOMEM. */
int hy_alog_fmt_render(const struct hy_alog_fmt *f, const struct hy_alog_rec *r,
                       struct hy_buf *out);

/* Appends r rendered by f's plain template (as hy_alog_fmt_render) with
 * no newline: an OpenTelemetry value. 0 or HY_ENOMEM. */
int hy_alog_fmt_render_value(const struct hy_alog_fmt *f, const struct hy_alog_rec *r,
                             struct hy_buf *out);

/* Envoy's response flags for how a connection or request ended (the
 * sidecar's result names: "upstream_failed" -> "UF"), "-" for none. */
const char *hy_alog_flags_of(const char *result);

#endif
