/* hyphactl inspect services: every service of the Dataplanes' inbounds
 * (and of other zones' ingresses' availableServices), one row each, with
 * the virtual IP and names transparent sidecars reach it by, the zones it
 * runs in and its endpoints. The VIPs come from common/vip.h, the
 * function the zone allocates them with, over the same services. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "buf.h"
#include "cli.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "table.h"
#include "vip.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")

struct svc {
    const char *mesh, *service, *zone, *endpoint; /* one instance; borrowed */
};

static int svc_cmp(const void *a, const void *b)
{
    const struct svc *x = a, *y = b;
    int c = strcmp(x->mesh, y->mesh);
    if (c == 0)
        c = strcmp(x->service, y->service);
    if (c == 0)
        c = strcmp(x->zone, y->zone);
    return c ? c : strcmp(x->endpoint, y->endpoint);
}

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

static const char *label(const struct hy_resource *r, const char *key)
{
    for (size_t i = 0; i < r->meta->n_labels; i++)
        if (!strcmp(S(r->meta->labels[i]->key), key))
            return S(r->meta->labels[i]->value);
    return NULL;
}

static const char *tag_of(size_t n, Hypha__V1__Dataplane__Networking__Inbound__TagsEntry **t)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(S(t[i]->key), "hypha.io/service"))
            return t[i]->value;
    return NULL;
}

struct rows {
    struct svc *v;
    size_t n, cap;
    char **owned; /* endpoint strings made here */
    size_t nowned;
};

static int push(struct rows *r, struct svc s)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        struct svc *v = realloc(r->v, r->cap * sizeof(*v));
        if (!v)
            return HY_ENOMEM;
        r->v = v;
    }
    r->v[r->n++] = s;
    return 0;
}

static const char *own(struct rows *r, char *s)
{
    char **v = s ? realloc(r->owned, (r->nowned + 1) * sizeof(*v)) : NULL;
    if (!v) {
        free(s);
        return NULL;
    }
    r->owned = v;
    return v[r->nowned++] = s;
}

static int collect(struct rows *r, struct hy_resource **dps, size_t ndp, struct hy_resource **zis,
                   size_t nzi)
{
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < ndp; k++) {
        const Hypha__V1__Dataplane__Networking *net =
            ((const Hypha__V1__Dataplane *)dps[k]->spec)->networking;
        const char *zone = label(dps[k], "hypha.io/zone");
        for (size_t i = 0; rc == 0 && net && i < net->n_inbound; i++) {
            const Hypha__V1__Dataplane__Networking__Inbound *in = net->inbound[i];
            const char *svc = tag_of(in->n_tags, in->tags);
            char *ep = NULL;
            if (!svc)
                continue;
            const char *addr = in->address ? in->address : S(net->address);
            if (asprintf(&ep, "%s:%u", addr, in->port) < 0)
                ep = NULL;
            const char *e = own(r, ep);
            rc = e ? push(r, (struct svc){S(dps[k]->meta->mesh), svc,
                                          zone ? zone : S(dps[k]->origin), e})
                   : HY_ENOMEM;
        }
    }
    for (size_t k = 0; rc == 0 && k < nzi; k++) {
        const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)zis[k]->spec;
        for (size_t i = 0; rc == 0 && i < zi->n_available_services; i++) {
            const Hypha__V1__ZoneIngress__AvailableService *as = zi->available_services[i];
            const char *svc = tag_of(as->n_tags, (void *)as->tags);
            char *ep = NULL;
            if (!svc || !as->mesh || (as->has_instances && !as->instances))
                continue;
            if (asprintf(&ep, "via ingress %s", S(zis[k]->meta->name)) < 0)
                ep = NULL;
            const char *e = own(r, ep);
            rc = e ? push(r, (struct svc){as->mesh, svc, S(zi->zone), e}) : HY_ENOMEM;
        }
    }
    return rc;
}

/* The VIP of each distinct (mesh, service) of the sorted r, into vips
 * (indexed like r->v: the first row of a service has it). */
static int vips_of(const struct rows *r, uint32_t *vips)
{
    const char **names = r->n ? malloc(r->n * sizeof(*names)) : NULL;
    uint32_t *got = r->n ? malloc(r->n * sizeof(*got)) : NULL;
    size_t *at = r->n ? malloc(r->n * sizeof(*at)) : NULL;
    int rc = r->n && (!names || !got || !at) ? HY_ENOMEM : 0;
    for (size_t i = 0, j; rc == 0 && i < r->n; i = j) { /* one mesh */
        size_t n = 0;
        for (j = i; j < r->n && !strcmp(r->v[j].mesh, r->v[i].mesh); j++)
            if (j == i || strcmp(r->v[j].service, r->v[j - 1].service)) {
                at[n] = j;
                names[n++] = r->v[j].service;
            }
        rc = hy_vip_assign(names, n, got);
        for (size_t k = 0; rc == 0 && k < n; k++)
            vips[at[k]] = got[k];
    }
    free(names);
    free(got);
    free(at);
    return rc;
}

/* Appends s to b after sep unless b already ends a list holding it. */
static int add_unique(struct hy_buf *b, const char *s)
{
    if (b->data) {
        size_t n = strlen(s);
        for (const char *p = b->data; (p = strstr(p, s)); p += n)
            if ((p == b->data || p[-1] == ',') && (p[n] == ',' || !p[n]))
                return 0;
    }
    return hy_buf_printf(b, "%s%s", b->len ? "," : "", s);
}

static int print(struct hy_cli *cli, const struct rows *r, const uint32_t *vips)
{
    static const char *const head[] = {"MESH",  "SERVICE", "VIP",      "VIP6",
                                       "NAMES", "ZONES",   "ENDPOINTS"};
    struct hy_table t;
    int rc = hy_table_init(&t, 7, head);
    for (size_t i = 0, j; rc == 0 && i < r->n; i = j) { /* one service */
        struct hy_buf names = {0}, zones = {0}, eps = {0};
        char v4[16], v6[40], name[HY_VIP_NAME_MAX];
        hy_vip_format4(vips[i], v4, sizeof(v4));
        hy_vip_format6(vips[i], v6, sizeof(v6));
        for (unsigned k = 0; rc == 0 && k < HY_VIP_NAMES; k++)
            if (hy_vip_hostname(r->v[i].service, k, name, sizeof(name)))
                rc = add_unique(&names, name);
        for (j = i; rc == 0 && j < r->n && !strcmp(r->v[j].mesh, r->v[i].mesh) &&
                    !strcmp(r->v[j].service, r->v[i].service);
             j++) {
            if (r->v[j].zone[0])
                rc = add_unique(&zones, r->v[j].zone);
            if (rc == 0)
                rc = add_unique(&eps, r->v[j].endpoint);
        }
        const char *row[] = {r->v[i].mesh,  r->v[i].service, v4,         v6,
                             S(names.data), S(zones.data),   S(eps.data)};
        if (rc == 0)
            rc = hy_table_add(&t, row);
        hy_buf_fini(&names);
        hy_buf_fini(&zones);
        hy_buf_fini(&eps);
    }
    struct hy_buf text = {0};
    if (rc == 0)
        rc = hy_table_render(&t, &text);
    if (rc == 0)
        fwrite(text.data, 1, text.len, cli->out);
    else
        hy_cli_error(cli, "out of memory");
    hy_buf_fini(&text);
    hy_table_fini(&t);
    return rc;
}

int hy_cmd_inspect_services(struct hy_cli *cli)
{
    const char *mesh = hy_args_get(&cli->args, "mesh");
    struct hy_resource **dps = NULL, **zis = NULL;
    size_t ndp = 0, nzi = 0;
    struct rows r = {0};
    uint32_t *vips = NULL;
    int rc = hy_cli_connect(cli);
    if (rc == 0)
        rc = fetch_all(cli, "/dataplanes", &dps, &ndp);
    if (rc == 0)
        rc = fetch_all(cli, "/zoneingresses", &zis, &nzi);
    if (rc == 0 && (rc = collect(&r, dps, ndp, zis, nzi)) < 0)
        hy_cli_error(cli, "out of memory");
    if (rc == 0 && r.n) {
        qsort(r.v, r.n, sizeof(*r.v), svc_cmp);
        if (!(vips = calloc(r.n, sizeof(*vips))) || (rc = vips_of(&r, vips)) < 0) {
            hy_cli_error(cli, "out of memory");
            rc = HY_ENOMEM;
        }
    }
    if (rc == 0 && mesh) { /* the VIPs are of every service of the mesh: filter after */
        size_t w = 0;
        for (size_t i = 0; i < r.n; i++)
            if (!strcmp(r.v[i].mesh, mesh)) {
                vips[w] = vips[i];
                r.v[w++] = r.v[i];
            }
        r.n = w;
    }
    if (rc == 0)
        rc = print(cli, &r, vips);
    free(vips);
    free(r.v);
    for (size_t i = 0; i < r.nowned; i++)
        free(r.owned[i]);
    free(r.owned);
    free_all(dps, ndp);
    free_all(zis, nzi);
    return rc;
}
