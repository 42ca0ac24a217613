/* A list of resources joined with their insights (inspect_list.h). */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "inspect_list.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static bool same_key(const struct hy_json *a, const struct hy_json *b)
{
    return !strcmp(S(hy_json_get_str(a, "mesh")), S(hy_json_get_str(b, "mesh"))) &&
           !strcmp(S(hy_json_get_str(a, "name")), S(hy_json_get_str(b, "name")));
}

const struct hy_json *hy_inspect_insight_of(const struct hy_api_list *insights,
                                            const struct hy_json *item)
{
    for (size_t i = 0; i < insights->nitems; i++)
        if (same_key(insights->items[i], item))
            return insights->items[i];
    return NULL;
}

int hy_inspect_print_table(struct hy_cli *cli, const char *const *head, size_t ncols,
                           const struct hy_api_list *items, const struct hy_api_list *insights,
                           hy_inspect_row_fn row)
{
    struct hy_table t;
    struct hy_buf text = {0};
    int rc = hy_table_init(&t, ncols, head);
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    for (size_t i = 0; rc == 0 && i < items->nitems; i++) {
        struct hy_resource *r = NULL, *insight = NULL;
        const struct hy_json *in = hy_inspect_insight_of(insights, items->items[i]);
        rc = hy_api_decode(cli, items->items[i], &r);
        if (rc == 0 && in)
            rc = hy_api_decode(cli, in, &insight);
        if (rc == 0 && (rc = row(cli, &t, r, insight)) < 0)
            hy_cli_error(cli, "out of memory");
        hy_resource_free(r);
        hy_resource_free(insight);
    }
    if (rc == 0 && (rc = hy_table_render(&t, &text)) < 0)
        hy_cli_error(cli, "out of memory");
    if (rc == 0)
        fwrite(text.data, 1, text.len, cli->out);
    hy_buf_fini(&text);
    hy_table_fini(&t);
    return rc;
}

int hy_inspect_print_overview(struct hy_cli *cli, const struct hy_api_list *items,
                              const struct hy_api_list *insights, const char *item_key,
                              const char *insight_key, enum hy_output_format f)
{
    struct hy_buf b = {0};
    int rc = hy_buf_printf(&b, "{\"total\":%zu,\"items\":[", items->nitems);
    for (size_t i = 0; rc == 0 && i < items->nitems; i++) {
        const struct hy_json *in = hy_inspect_insight_of(insights, items->items[i]);
        rc = hy_buf_printf(&b, "%s{\"%s\":", i ? "," : "", item_key);
        rc = rc ? rc : hy_json_write(items->items[i], &b);
        rc = rc ? rc : hy_buf_printf(&b, ",\"%s\":", insight_key);
        rc = rc ? rc : (in ? hy_json_write(in, &b) : hy_buf_puts(&b, "null"));
        rc = rc ? rc : hy_buf_puts(&b, "}");
    }
    rc = rc ? rc : hy_buf_puts(&b, "]}");
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    else
        rc = hy_output_json_text(cli, b.data, b.len, f);
    hy_buf_fini(&b);
    return rc;
}
