/* What every HTTP server of net/ shares, whichever transport it runs on
 * (http_server.c on libwebsockets, http_uv.c on libuv): query parameters
 * and the JSON error body. */
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "http_server.h"
#include "poison.h"

const char *hy_http_param(const struct hy_http_req *req, const char *key)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (req->params[i].key && strcmp(req->params[i].key, key) == 0)
            return req->params[i].value;
    return NULL;
}

void hy_http_error(struct hy_http_resp *resp, int status, const char *title, const char *details,
                   const struct hy_diag *diag)
{
    struct hy_buf *b = &resp->body;
    hy_buf_fini(b);
    resp->status = status;
    resp->content_type = "application/json";
    hy_buf_puts(b, "{\"title\":");
    hy_codec_json_string(b, title, strlen(title));
    hy_buf_puts(b, ",\"details\":");
    hy_codec_json_string(b, details, strlen(details));
    hy_buf_puts(b, ",\"causes\":[");
    for (size_t i = 0; diag && i < diag->n; i++) {
        const struct hy_cause *c = &diag->causes[i];
        char field[1200];
        const char *path = c->field ? c->field : "";
        if (c->line > 0)
            snprintf(field, sizeof(field), "%s:%d:%d%s%s", diag->source ? diag->source : "-",
                     c->line, c->col, path[0] ? ": " : "", path);
        else
            snprintf(field, sizeof(field), "%s", path);
        const char *msg = c->message ? c->message : "";
        hy_buf_puts(b, i ? ",{\"field\":" : "{\"field\":");
        hy_codec_json_string(b, field, strlen(field));
        hy_buf_puts(b, ",\"message\":");
        hy_codec_json_string(b, msg, strlen(msg));
        hy_buf_puts(b, "}");
    }
    hy_buf_puts(b, "]}");
}
