/* hyphactl get TYPE [NAME]: one resource or a list (every page unless
 * --size), printed as a table, as YAML documents or as the server's JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "columns.h"
#include "error.h"
#include "output.h"
#include "resource.h"
#include "poison.h"

static int print_table(struct hy_cli *cli, const struct hy_rtype *t, struct hy_resource *const *v,
                       size_t n)
{
    struct hy_table tab;
    struct hy_buf text = {0};
    int rc = hy_columns_table(t, v, n, cli->now, &tab);
    if (rc == 0)
        rc = hy_table_render(&tab, &text);
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    else
        fwrite(text.data, 1, text.len, cli->out);
    hy_buf_fini(&text);
    hy_table_fini(&tab);
    return rc;
}

static int print_resources(struct hy_cli *cli, const struct hy_rtype *t, enum hy_output_format f,
                           struct hy_resource *const *v, size_t n)
{
    return f == HY_OUTPUT_YAML ? hy_output_yaml(cli, v, n) : print_table(cli, t, v, n);
}

static int get_one(struct hy_cli *cli, const struct hy_rtype *t, const char *name,
                   enum hy_output_format f)
{
    const char *mesh = hy_args_get(&cli->args, "mesh");
    struct hy_buf path = {0};
    if (hy_cmd_resource_path(&path, t, mesh ? mesh : "default", name) < 0) {
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    struct hy_httpc_response resp;
    int rc = hy_api_call(cli, "GET", path.data, NULL, 0, NULL, 0, &resp);
    hy_buf_fini(&path);
    if (rc < 0)
        return rc;
    if (f == HY_OUTPUT_JSON) {
        hy_output_text(cli, resp.body.data ? resp.body.data : "", resp.body.len);
    } else {
        struct hy_resource *r = NULL;
        if ((rc = hy_api_decode_body(cli, &resp, &r)) == 0)
            rc = print_resources(cli, t, f, &r, 1);
        hy_resource_free(r);
    }
    hy_httpc_response_fini(&resp);
    return rc;
}

/* The list path with its query: size, offset and label filters. */
static int list_path(struct hy_cli *cli, const struct hy_rtype *t, struct hy_buf *b)
{
    const char *mesh = hy_args_get(&cli->args, "mesh");
    const char *size = hy_args_get(&cli->args, "size");
    const char *offset = hy_args_get(&cli->args, "offset");
    char sep = '?';
    int rc = hy_cmd_resource_path(b, t, mesh, NULL);
    if (rc == 0 && size) {
        rc = hy_buf_printf(b, "%csize=%s", sep, size);
        sep = '&';
    }
    if (rc == 0 && offset) {
        rc = hy_buf_printf(b, "%coffset=", sep);
        if (rc == 0)
            rc = hy_api_escape(b, offset, true);
        sep = '&';
    }
    const char *label;
    for (size_t i = 0; rc == 0 && (label = hy_args_nth(&cli->args, "label", i)); i++) {
        const char *eq = strchr(label, '=');
        char *key = strndup(label, (size_t)(eq - label));
        /* the codec reads kuma.io/ keys as hypha.io/; so does the filter */
        const char *k = key && strncmp(key, "kuma.io/", 8) == 0 ? key + 8 : key;
        rc = key ? hy_buf_printf(b, "%cfilter[labels.%s", sep, k != key ? "hypha.io/" : "") : -1;
        if (rc == 0)
            rc = hy_api_escape(b, k, true);
        if (rc == 0)
            rc = hy_buf_puts(b, "]=");
        if (rc == 0)
            rc = hy_api_escape(b, eq + 1, true);
        free(key);
        sep = '&';
    }
    return rc < 0 ? HY_ENOMEM : 0;
}

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The offset=... value of a next link, percent-decoded (--offset encodes
 * it again), for the "more" hint. */
static void next_offset(const char *next, char *buf, size_t size)
{
    const char *q = strchr(next, '?');
    buf[0] = '\0';
    while (q && strncmp(++q, "offset=", 7) != 0)
        q = strchr(q, '&');
    if (!q)
        return;
    size_t o = 0;
    for (q += 7; *q && *q != '&' && o + 1 < size; q++) {
        if (*q == '%' && hex(q[1]) >= 0 && hex(q[2]) >= 0) {
            buf[o++] = (char)(hex(q[1]) * 16 + hex(q[2]));
            q += 2;
        } else {
            buf[o++] = *q == '+' ? ' ' : *q;
        }
    }
    buf[o] = '\0';
}

static int print_json_list(struct hy_cli *cli, const struct hy_api_list *l)
{
    if (l->raw) {
        hy_output_text(cli, l->raw, strlen(l->raw));
        return 0;
    }
    struct hy_buf b = {0};
    int rc = hy_buf_printf(&b, "{\"total\":%zu,\"items\":[", l->nitems);
    for (size_t i = 0; rc == 0 && i < l->nitems; i++) {
        if (i > 0)
            rc = hy_buf_puts(&b, ",");
        if (rc == 0)
            rc = hy_json_write(l->items[i], &b);
    }
    if (rc == 0)
        rc = hy_buf_puts(&b, "],\"next\":null}");
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    else
        hy_output_text(cli, b.data, b.len);
    hy_buf_fini(&b);
    return rc;
}

static int get_list(struct hy_cli *cli, const struct hy_rtype *t, enum hy_output_format f)
{
    struct hy_buf path = {0};
    if (list_path(cli, t, &path) < 0) {
        hy_buf_fini(&path);
        hy_cli_error(cli, "out of memory");
        return HY_ENOMEM;
    }
    bool one_page = hy_args_get(&cli->args, "size") != NULL;
    struct hy_api_list l;
    int rc = hy_api_list(cli, path.data, !one_page, &l);
    hy_buf_fini(&path);
    struct hy_resource **v = NULL;
    size_t n = 0;
    if (rc < 0)
        goto out;
    if (f == HY_OUTPUT_JSON) {
        rc = print_json_list(cli, &l);
    } else {
        if (l.nitems && !(v = calloc(l.nitems, sizeof(*v)))) {
            hy_cli_error(cli, "out of memory");
            rc = HY_ENOMEM;
            goto out;
        }
        for (; n < l.nitems; n++)
            if ((rc = hy_api_decode(cli, l.items[n], &v[n])) < 0)
                goto out;
        rc = print_resources(cli, t, f, v, n);
    }
    if (rc == 0 && one_page && l.next) {
        char off[256];
        next_offset(l.next, off, sizeof(off));
        fprintf(cli->err, "There are more %s: rerun with --offset=%s to see the next page.\n",
                t->plural, off[0] ? off : "?");
    }
out:
    for (size_t i = 0; i < n; i++)
        hy_resource_free(v[i]);
    free(v);
    hy_api_list_fini(&l);
    return rc;
}

int hy_cmd_get(struct hy_cli *cli)
{
    const struct hy_rtype *t = hy_cmd_find_type(cli, cli->args.pos[0]);
    if (!t)
        return HY_EINVAL;
    enum hy_output_format f;
    const char *o = hy_args_get(&cli->args, "output");
    if (!hy_output_parse(o, &f))
        return hy_cli_usage(cli, "unknown output format \"%s\" (table, yaml or json)", o);
    const char *name = cli->args.npos > 1 ? cli->args.pos[1] : NULL;
    const char *size = hy_args_get(&cli->args, "size");
    if (name && (size || hy_args_get(&cli->args, "offset") || hy_args_get(&cli->args, "label")))
        return hy_cli_usage(cli, "--size, --offset and --label apply to lists, not to one %s",
                            t->name);
    if (size && (strspn(size, "0123456789") != strlen(size) || !size[0] || strlen(size) > 6 ||
                 atoi(size) == 0))
        return hy_cli_usage(cli, "--size must be a number from 1 to 999999, got \"%s\"", size);
    if (hy_args_get(&cli->args, "offset") && !size)
        return hy_cli_usage(cli, "--offset needs --size");
    const char *label;
    for (size_t i = 0; (label = hy_args_nth(&cli->args, "label", i)); i++) {
        const char *eq = strchr(label, '=');
        if (!eq || eq == label)
            return hy_cli_usage(cli, "--label takes KEY=VALUE, got \"%s\"", label);
    }
    int rc = hy_cli_connect(cli);
    if (rc < 0)
        return rc;
    return name ? get_one(cli, t, name, f) : get_list(cli, t, f);
}
