/* hyphactl inspect zoneingresses: the ZoneIngresses joined with their
 * ZoneIngressInsights, one row per ingress (kumactl's command): Online
 * while its last connection to its zone is open. An ingress Offline for
 * longer than its zone's --dp-cleanup-age is removed by the zone. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "inspect_list.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "output.h"
#include "table.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

/* NAME ZONE ADDRESS SERVICES STATUS LAST-CONNECTED TOTAL-UPDATES; -o
 * json|yaml: {"total","items":[{"zoneIngress","zoneIngressInsight"}]}. */
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

static const char *const zi_head[] = {"NAME",   "ZONE",           "ADDRESS",      "SERVICES",
                                      "STATUS", "LAST-CONNECTED", "TOTAL-UPDATES"};

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
        rc = f == HY_OUTPUT_TABLE
                 ? hy_inspect_print_table(cli, zi_head, sizeof(zi_head) / sizeof(zi_head[0]), &zis,
                                          &insights, zi_row)
                 : hy_inspect_print_overview(cli, &zis, &insights, "zoneIngress",
                                             "zoneIngressInsight", f);
    hy_api_list_fini(&zis);
    hy_api_list_fini(&insights);
    return rc;
}
