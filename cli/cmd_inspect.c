/* hyphactl inspect zones: the Zone resources joined with their
 * ZoneInsights, one row per zone with its connection state. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "columns.h"
#include "error.h"
#include "output.h"
#include "table.h"
#include "zone.pb-c.h"
#include "poison.h"

struct zone_row {
    const char *name;
    const struct hy_resource *insight; /* may be NULL */
};

/* Fetches every resource of a type and decodes them into *v. */
static int fetch_all(struct hy_cli *cli, const char *path, struct hy_resource ***v, size_t *n)
{
    struct hy_api_list l;
    int rc = hy_api_list(cli, path, true, &l);
    *v = NULL;
    *n = 0;
    if (rc == 0 && l.nitems && !(*v = calloc(l.nitems, sizeof(**v)))) {
        hy_cli_error(cli, "out of memory");
        rc = HY_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < l.nitems; i++)
        if ((rc = hy_api_decode(cli, l.items[i], &(*v)[i])) == 0)
            (*n)++;
    hy_api_list_fini(&l);
    return rc;
}

static void free_all(struct hy_resource **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hy_resource_free(v[i]);
    free(v);
}

static int add_row(struct hy_cli *cli, struct hy_table *t, const char *name,
                   const struct hy_resource *insight)
{
    const Hypha__V1__ZoneInsight *zi =
        insight ? (const Hypha__V1__ZoneInsight *)insight->spec : NULL;
    const Hypha__V1__ZoneInsight__Subscription *s =
        zi && zi->n_subscriptions ? zi->subscriptions[zi->n_subscriptions - 1] : NULL;
    bool online = hy_columns_zone_online(zi);
    char since[32] = "", acked[24] = "", sent[24] = "", received[24] = "";
    if (online)
        hy_output_age_since(cli->now, s->connect_time, since, sizeof(since));
    if (s && s->has_last_acked_revision)
        snprintf(acked, sizeof(acked), "%" PRIu64, s->last_acked_revision);
    if (s && s->stat && s->stat->has_resources_sent)
        snprintf(sent, sizeof(sent), "%" PRIu64, s->stat->resources_sent);
    if (s && s->stat && s->stat->has_resources_received)
        snprintf(received, sizeof(received), "%" PRIu64, s->stat->resources_received);
    const char *row[] = {
        name,     online ? "Online" : "Offline", s ? s->version : NULL, since, acked, sent,
        received, s ? s->last_error : NULL,
    };
    return hy_table_add(t, row);
}

static const struct hy_resource *find(struct hy_resource **v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (v[i]->meta->name && strcmp(v[i]->meta->name, name) == 0)
            return v[i];
    return NULL;
}

int hy_cmd_inspect_zones(struct hy_cli *cli)
{
    static const char *const head[] = {
        "NAME", "STATUS",   "VERSION",   "CONNECTED", "LAST-ACKED-REVISION",
        "SENT", "RECEIVED", "LAST-ERROR"};
    struct hy_resource **zones = NULL, **insights = NULL;
    size_t nz = 0, ni = 0;
    int rc = hy_cli_connect(cli);
    if (rc == 0)
        rc = fetch_all(cli, "/zones", &zones, &nz);
    if (rc == 0)
        rc = fetch_all(cli, "/zoneinsights", &insights, &ni);
    if (rc < 0)
        goto out_free;
    struct hy_table t;
    if ((rc = hy_table_init(&t, 8, head)) < 0)
        goto out_table;
    for (size_t i = 0; rc == 0 && i < nz; i++)
        rc = add_row(cli, &t, zones[i]->meta->name, find(insights, ni, zones[i]->meta->name));
    /* zones that connected without a Zone resource still deserve a row */
    for (size_t i = 0; rc == 0 && i < ni; i++)
        if (!find(zones, nz, insights[i]->meta->name))
            rc = add_row(cli, &t, insights[i]->meta->name, insights[i]);
    struct hy_buf text = {0};
    if (rc == 0)
        rc = hy_table_render(&t, &text);
    if (rc == 0)
        fwrite(text.data, 1, text.len, cli->out);
    hy_buf_fini(&text);
out_table:
    if (rc < 0)
        hy_cli_error(cli, "out of memory");
    hy_table_fini(&t);
out_free:
    free_all(zones, nz);
    free_all(insights, ni);
    return rc;
}
