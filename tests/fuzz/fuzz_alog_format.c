/* The MeshAccessLog format parser (common/alog_fmt.c) on arbitrary text:
 * what any user writing a policy sends the API, and what the sidecar
 * compiles. A format it accepts must render (plain and as a json value)
 * a record with and without values into a line ending in one newline; a
 * refused one must say why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alog_fmt.h"
#include "buf.h"
#include "poison.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *hdr(const void *ud, bool response, const char *name)
{
    (void)ud;
    return !response && name[0] == 'X' ? "v\"\\\n" : NULL;
}

static void render(const struct hy_alog_fmt *f, const struct hy_alog_rec *r)
{
    struct hy_buf b = {0};
    if (hy_alog_fmt_render(f, r, &b) == 0 && (!b.len || b.data[b.len - 1] != '\n'))
        abort();
    hy_buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    char err[256] = "";
    struct hy_alog_fmt *f = hy_alog_fmt_new(), *j = hy_alog_fmt_new();
    int rc = f ? hy_alog_fmt_plain(f, s, err, sizeof(err)) : -1;
    if (f && rc < 0 && !err[0])
        abort();
    if (f && (hy_alog_fmt_check(s, err, sizeof(err)) == 0) != (rc == 0))
        abort();
    if (f && rc == 0 && j && hy_alog_fmt_json_add(j, s, s, err, sizeof(err)) == 0) {
        struct hy_alog_rec empty = {.upstream_ms = -1};
        struct hy_alog_rec full = {
            .http = true,
            .inbound = true,
            .start_us = (int64_t)size * 1000003,
            .duration_ms = 5,
            .upstream_ms = 2,
            .status = 200,
            .has_bytes = true,
            .bytes_sent = 1,
            .mesh = "m",
            .src_service = "a",
            .dst_service = "b",
            .src_addr = "[::1]:1",
            .upstream_host = "h",
            .downstream_remote = ":",
            .protocol = "HTTP/1.1",
            .method = "GET",
            .path = "/",
            .header = hdr,
        };
        render(f, &empty);
        render(f, &full);
        render(j, &empty);
        hy_alog_fmt_omit_empty(j, true);
        render(j, &full);
    }
    hy_alog_fmt_free(f);
    hy_alog_fmt_free(j);
    free(s);
    return 0;
}
