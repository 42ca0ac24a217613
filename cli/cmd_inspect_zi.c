/* hyphactl inspect zoneingresses: the ZoneIngresses joined with their
 * ZoneIngressInsights, one row per ingress (kumactl's command): Online
 * while its last connection to its zone is open. An ingress Offline for
 * longer than its zone's --dp-cleanup-age is removed by the zone. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "output.h"
#include "table.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

static const struct hy_json *insight_of(const struct hy_api_list *insights,
                                        const struct hy_json *zi)
{
    const char *name = S(hy_json_get_str(zi, "name"));
    for (size_t i = 0; i < insights->nitems; i++)
        if (!strcmp(S(hy_json_get_str(insights->items[i], "name")), name))
            return insights->items[i];
    return NULL;
}

/* NAME ZONE ADDRESS SERVICES STATUS LAST-CONNECTED TOTAL-UPDATES */
static int zi_row(struct hy_cli *cli, struct hy_table *t, const struct hy_resource *r,
                  const struct hy_resource *insight)
{
    const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)r->spec;
    const Hypha__V1__ZoneIngressInsight *in =
        insight ? (const Hypha__V1__ZoneIngressInsight *)insight->spec : NULL;
    const Hypha__V1__DataplaneInsight__Subscription *last =
        in && in->n_subscriptions ? in->subscriptions[in->n_subscriptions - 1] : NULL;
    bool online = last && last->connect_time && !last->disconnect_time;
    uint64_t updates = 0;
    for (size_t i = 0; in && i < in->n_subscriptions; i++)
        updates += in->subscriptions[i]->responses_sent;
    const Hypha__V1__ZoneIngress__Networking *n = zi->networking;
    char address[300] = "", services[24], connected[32], sent[24] = "";
    if (n)
        snprintf(address, sizeof(address), "%s:%u",
                 n->advertised_address ? n->advertised_address : S(n->address),
                 n->advertised_port ? n->advertised_port : n->port);
    snprintf(services, sizeof(services), "%zu", zi->n_available_services);
    hy_output_age_since(cli->now, last ? last->connect_time : NULL, connected, sizeof(connected));
    if (in)
        snprintf(sent, sizeof(sent), "%" PRIu64, updates);
    const char *row[] = {
        r->meta->name, S(zi->zone), address, services, online ? "Online" : "Offline",
        connected,     sent};
    return hy_table_add(t, row);
}

static int print_table(struct hy_cli *cli, const struct hy_api_list *zis,
                       const struct hy_api_list *insights)
{
    static const char *const head[] = {"NAME",   "ZONE",           "ADDRESS",      "SERVICES",
                                       "STATUS", "LAST-CONNECTED", "TOTAL-UPDATES"};
    struct hy_table t;
    struct hy_buf text = {0};
    int rc = hy_table_init(&t, sizeof(head) / sizeof(head[0]), head);
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    for (size_t i = 0; rc == 0 && i < zis->nitems; i++) {
        struct hy_resource *zi = NULL, *insight = NULL;
        const struct hy_json *in = insight_of(insights, zis->items[i]);
        rc = hy_api_decode(cli, zis->items[i], &zi);
        if (rc == 0 && in)
            rc = hy_api_decode(cli, in, &insight);
        if (rc == 0 && (rc = zi_row(cli, &t, zi, insight)) < 0)
            hy_cli_error(cli, "out of memory");
        hy_resource_free(zi);
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

/* -o json|yaml: {"total","items":[{"zoneIngress","zoneIngressInsight"}]}. */
static int print_overview(struct hy_cli *cli, const struct hy_api_list *zis,
                          const struct hy_api_list *insights, enum hy_output_format f)
{
    struct hy_buf b = {0};
    int rc = hy_buf_printf(&b, "{\"total\":%zu,\"items\":[", zis->nitems);
    for (size_t i = 0; rc == 0 && i < zis->nitems; i++) {
        const struct hy_json *in = insight_of(insights, zis->items[i]);
        rc = hy_buf_puts(&b, i ? ",{\"zoneIngress\":" : "{\"zoneIngress\":");
        rc = rc ? rc : hy_json_write(zis->items[i], &b);
        rc = rc ? rc : hy_buf_puts(&b, ",\"zoneIngressInsight\":");
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

int hy_cmd_inspect_zoneingresses(struct hy_cli *cli)
{
    enum hy_output_format f;
    const char *o = hy_args_get(&cli->args, "output");
    if (!hy_output_parse(o, &f))
        return hy_cli_usage(cli, "unknown output format \"%s\" (table, yaml or json)", o);
    struct hy_api_list zis = {0}, insights = {0};
    int rc = hy_cli_connect(cli);
    if (rc == 0)
        rc = hy_api_list(cli, "/zoneingresses", true, &zis);
    if (rc == 0)
        rc = hy_api_list(cli, "/zoneingressinsights", true, &insights);
    if (rc == 0)
        rc = f == HY_OUTPUT_TABLE ? print_table(cli, &zis, &insights)
                                  : print_overview(cli, &zis, &insights, f);
    hy_api_list_fini(&zis);
    hy_api_list_fini(&insights);
    return rc;
}
