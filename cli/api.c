/* hy_api: requests to the control plane, its error replies, paging. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "codec.h"
#include "error.h"
#include "poison.h"

static const char *hint(const struct hy_cli *cli, int rc)
{
    switch (rc) {
    case -ECONNREFUSED:
        return "; is hypha-global running?";
    case HY_EVERIFY:
        return cli->ca_file ? "" : "; if a private CA signed it, pass that CA with --ca-cert-file";
    case -EHOSTUNREACH:
        return "; check the address (hyphactl config control-planes list)";
    default:
        return "";
    }
}

int hy_api_send(struct hy_cli *cli, const char *method, const char *path,
                const struct hy_httpc_header *headers, size_t nheaders, const void *body,
                size_t len, struct hy_httpc_response *resp)
{
    struct hy_buf url = {0};
    size_t base_len = strlen(cli->base_url);
    while (base_len > 0 && cli->base_url[base_len - 1] == '/')
        base_len--;
    struct hy_httpc_header *all = calloc(nheaders + 1, sizeof(*all));
    char *auth = NULL;
    int rc = HY_ENOMEM;
    if (!all || hy_buf_append(&url, cli->base_url, base_len) < 0 || hy_buf_puts(&url, path) < 0)
        goto out_nomem;
    size_t n = 0;
    if (cli->token) {
        if (asprintf(&auth, "Bearer %s", cli->token) < 0) {
            auth = NULL;
            goto out_nomem;
        }
        all[n++] = (struct hy_httpc_header){"Authorization", auth};
    }
    for (size_t i = 0; i < nheaders; i++)
        all[n++] = headers[i];
    struct hy_httpc_request req = {.method = method,
                                   .url = url.data,
                                   .headers = all,
                                   .nheaders = n,
                                   .body = body,
                                   .body_len = len};
    char err[512];
    rc = hy_httpc_request(&cli->http, &req, resp, err, sizeof(err));
    if (rc < 0)
        hy_cli_error(cli, "%s%s", err, hint(cli, rc));
    goto out_free;
out_nomem:
    hy_cli_error(cli, "out of memory");
out_free:
    free(auth);
    free(all);
    hy_buf_fini(&url);
    return rc;
}

int hy_api_call(struct hy_cli *cli, const char *method, const char *path,
                const struct hy_httpc_header *headers, size_t nheaders, const void *body,
                size_t len, struct hy_httpc_response *resp)
{
    int rc = hy_api_send(cli, method, path, headers, nheaders, body, len, resp);
    if (rc < 0)
        return rc;
    if (resp->status >= 200 && resp->status < 300)
        return 0;
    hy_api_print_error(cli, resp);
    hy_httpc_response_fini(resp);
    return HY_EINVAL;
}

/* Copies server-provided text for the terminal: control characters (a
 * hostile or broken server's escape sequences, newlines) become spaces. */
static const char *clean(const char *s, char *buf, size_t size)
{
    snprintf(buf, size, "%s", s ? s : "");
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return buf;
}

/* The first line of a non-JSON body, trimmed, for an error message. */
static void first_line(const struct hy_httpc_response *resp, char *buf, size_t size)
{
    const char *b = resp->body.data ? resp->body.data : "";
    while (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t')
        b++;
    size_t n = strcspn(b, "\r\n");
    if (n > 200)
        n = 200;
    snprintf(buf, size, "%.*s", (int)n, b);
}

void hy_api_print_error(struct hy_cli *cli, const struct hy_httpc_response *resp)
{
    struct hy_json *j = NULL;
    char why[256];
    const char *title = NULL;
    if (resp->body.len && hy_json_parse(resp->body.data, resp->body.len, &j, why, sizeof(why)) == 0)
        title = hy_json_get_str(j, "title");
    char a[1024], b[1024];
    if (!title) {
        char line[256];
        first_line(resp, line, sizeof(line));
        hy_cli_error(cli, "HTTP %d %s%s%s", resp->status, clean(resp->reason, a, sizeof(a)),
                     line[0] ? ": " : "", clean(line, b, sizeof(b)));
    } else {
        const char *details = hy_json_get_str(j, "details");
        if (details && details[0])
            hy_cli_error(cli, "%s: %s", clean(title, a, sizeof(a)), clean(details, b, sizeof(b)));
        else
            hy_cli_error(cli, "%s", clean(title, a, sizeof(a)));
        const struct hy_json *causes = hy_json_get(j, "causes");
        for (size_t i = 0; causes && causes->kind == HY_JSON_ARRAY && i < causes->n; i++) {
            const char *field = hy_json_get_str(causes->items[i], "field");
            const char *msg = hy_json_get_str(causes->items[i], "message");
            if (field && field[0])
                fprintf(cli->err, "  %s: %s\n", clean(field, a, sizeof(a)),
                        clean(msg, b, sizeof(b)));
            else
                fprintf(cli->err, "  %s\n", clean(msg, b, sizeof(b)));
        }
    }
    if (resp->status == 401)
        fprintf(cli->err, "  (send an admin token with --auth-token or HYPHA_AUTH_TOKEN, or store "
                          "one with 'hyphactl config control-planes add --auth-token')\n");
    hy_json_free(j);
}

int hy_api_parse(struct hy_cli *cli, const struct hy_httpc_response *resp, struct hy_json **out)
{
    char why[256];
    int rc = hy_json_parse(resp->body.data ? resp->body.data : "", resp->body.len, out, why,
                           sizeof(why));
    if (rc < 0) {
        const char *type = hy_httpc_response_header(resp, "Content-Type");
        hy_cli_error(cli, "cannot read the control plane's reply (HTTP %d%s%s): %s", resp->status,
                     type ? ", " : "", type ? type : "", why);
    }
    return rc;
}

static int add_page(struct hy_api_list *l, struct hy_json *page)
{
    struct hy_json **p = realloc(l->pages, (l->npages + 1) * sizeof(*p));
    if (!p)
        return HY_ENOMEM;
    l->pages = p;
    l->pages[l->npages++] = page;
    const struct hy_json *items = hy_json_get(page, "items");
    if (!items || items->kind != HY_JSON_ARRAY)
        return items ? HY_EINVAL : 0;
    const struct hy_json **v = realloc(l->items, (l->nitems + items->n) * sizeof(*v));
    if (!v && items->n)
        return HY_ENOMEM;
    l->items = v;
    for (size_t i = 0; i < items->n; i++)
        l->items[l->nitems++] = items->items[i];
    return 0;
}

int hy_api_list(struct hy_cli *cli, const char *path, bool all, struct hy_api_list *out)
{
    memset(out, 0, sizeof(*out));
    out->total = -1;
    char *cur = strdup(path);
    int rc = cur ? 0 : HY_ENOMEM;
    while (rc == 0 && cur) {
        if (out->npages == HY_API_MAX_PAGES) {
            hy_cli_error(cli, "the list goes on for more than %d pages; use --size and --offset",
                         HY_API_MAX_PAGES);
            rc = HY_ETOOBIG;
            break;
        }
        struct hy_httpc_response resp;
        if ((rc = hy_api_call(cli, "GET", cur, NULL, 0, NULL, 0, &resp)) < 0)
            break;
        struct hy_json *page;
        rc = hy_api_parse(cli, &resp, &page);
        if (rc == 0 && out->npages == 0) {
            out->raw = resp.body.data; /* kept in case this is the only page */
            resp.body = (struct hy_buf){0};
            const char *t = hy_json_get_str(page, "total");
            out->total = t ? strtoll(t, NULL, 10) : -1;
        }
        hy_httpc_response_fini(&resp);
        if (rc < 0)
            break;
        if ((rc = add_page(out, page)) < 0) {
            if (rc == HY_EINVAL)
                hy_cli_error(cli, "cannot read the control plane's reply: \"items\" is not a list");
            else
                hy_cli_error(cli, "out of memory");
            break;
        }
        free(out->next);
        out->next = NULL;
        const char *next = hy_json_get_str(page, "next");
        if (next && !(out->next = strdup(next))) {
            rc = HY_ENOMEM;
            break;
        }
        free(cur);
        cur = NULL;
        if (!all || !next)
            break;
        if (next[0] != '/' || strcmp(next, path) == 0) {
            hy_cli_error(cli, "cannot follow the control plane's next page \"%s\"", next);
            rc = HY_EINVAL;
            break;
        }
        if (!(cur = strdup(next)))
            rc = HY_ENOMEM;
    }
    free(cur);
    if (out->npages > 1) {
        free(out->raw);
        out->raw = NULL;
    }
    return rc;
}

void hy_api_list_fini(struct hy_api_list *l)
{
    for (size_t i = 0; i < l->npages; i++)
        hy_json_free(l->pages[i]);
    free(l->pages);
    free(l->items);
    free(l->next);
    free(l->raw);
    memset(l, 0, sizeof(*l));
}

static int decode_text(struct hy_cli *cli, const char *text, size_t len, struct hy_resource **out)
{
    struct hy_docs docs;
    struct hy_diag diag = {0};
    int rc = hy_codec_decode_resources("reply", text, len, NULL, &docs, &diag);
    if (rc == 0 && docs.n != 1)
        rc = HY_EINVAL;
    if (rc < 0) {
        char line[1024];
        hy_cli_error(cli, "cannot read a resource in the control plane's reply%s",
                     diag.n ? ":" : "");
        for (size_t i = 0; i < diag.n; i++)
            fprintf(cli->err, "  %s\n", hy_diag_format(&diag, i, line, sizeof(line)));
        fprintf(cli->err, "  (a newer control plane? '-o json' prints the reply as it is)\n");
    } else {
        *out = docs.v[0].res;
        docs.v[0].res = NULL;
    }
    hy_docs_fini(&docs);
    hy_diag_fini(&diag);
    return rc;
}

int hy_api_decode(struct hy_cli *cli, const struct hy_json *item, struct hy_resource **out)
{
    struct hy_buf text = {0};
    int rc = hy_json_write(item, &text);
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    else
        rc = decode_text(cli, text.data, text.len, out);
    hy_buf_fini(&text);
    return rc;
}

int hy_api_decode_body(struct hy_cli *cli, const struct hy_httpc_response *resp,
                       struct hy_resource **out)
{
    return decode_text(cli, resp->body.data ? resp->body.data : "", resp->body.len, out);
}

int hy_api_escape(struct hy_buf *out, const char *s, bool in_query)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p) || (in_query && (*p == '/' || *p == ':'))) {
            rc = hy_buf_append(out, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = hy_buf_append(out, e, 3);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}
