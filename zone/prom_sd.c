/* Prometheus HTTP service discovery (prom_sd.h): the zone's connected
 * proxies as http_sd_configs targets, labelled as Kuma's MADS labels them
 * (pkg/mads DataplaneLabels: each tag a label, sanitized, and its plural
 * with every value). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dataplane.pb-c.h"
#include "error.h"
#include "policy.h"
#include "prom_sd.h"
#include "zone.h"
#include "poison.h"

#define S(s) ((s) ? (s) : "")
#define MAX_LABELS 128

struct label {
    char name[160];
    char *value; /* owned */
};

struct labels {
    struct label v[MAX_LABELS];
    size_t n;
};

static void labels_fini(struct labels *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].value);
    l->n = 0;
}

/* A Prometheus label name from a tag key: [a-zA-Z0-9_], other bytes '_'
 * (Prometheus's SanitizeLabelName); hypha.io/ keys named kuma.io/ as the
 * user wrote them (kuma_io_service). */
static void label_name(const char *key, const char *suffix, char *out, size_t size)
{
    char buf[160];
    if (!strncmp(key, "hypha.io/", 9))
        snprintf(buf, sizeof(buf), "kuma.io/%s%s", key + 9, suffix);
    else
        snprintf(buf, sizeof(buf), "%s%s", key, suffix);
    size_t i = 0;
    for (; buf[i] && i + 1 < size; i++) {
        char c = buf[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
}

static struct label *find(struct labels *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

/* Adds name=value unless name is there already (the first one stays). */
static int add(struct labels *l, const char *name, const char *value)
{
    if (!name[0] || find(l, name) || l->n == MAX_LABELS)
        return 0;
    struct label *x = &l->v[l->n];
    snprintf(x->name, sizeof(x->name), "%s", name);
    if (!(x->value = strdup(value)))
        return HY_ENOMEM;
    l->n++;
    return 0;
}

typedef Hypha__V1__Dataplane__Networking__Inbound inbound_t;

static const char *tag_of(const inbound_t *in, const char *key)
{
    for (size_t k = 0; k < in->n_tags; k++)
        if (!strcmp(S(in->tags[k]->key), key))
            return in->tags[k]->value;
    return NULL;
}

/* Kuma's MADS tag labels: each key, its first value; its plural, every
 * value between commas (",a,b,"). */
static int tag_labels(struct labels *l, const Hypha__V1__Dataplane *d)
{
    size_t n = d->networking ? d->networking->n_inbound : 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const inbound_t *in = d->networking->inbound[i];
        for (size_t k = 0; rc == 0 && k < in->n_tags; k++) {
            const char *key = S(in->tags[k]->key);
            char name[160], plural[160];
            label_name(key, "", name, sizeof(name));
            label_name(key, "s", plural, sizeof(plural));
            if (find(l, name) && !find(l, plural))
                continue; /* one of ours (mesh, service ...) */
            if ((rc = add(l, name, S(in->tags[k]->value))) < 0)
                break;
            struct label *pl = find(l, plural);
            if (pl && pl->value[0] != ',')
                continue; /* a user's own "...s" tag */
            char *all = strdup(",");
            for (size_t j = 0; all && j < n; j++) {
                const char *v = tag_of(d->networking->inbound[j], key);
                if (!v)
                    continue;
                char needle[300];
                snprintf(needle, sizeof(needle), ",%s,", v);
                if (strstr(all, needle))
                    continue;
                char *more = NULL;
                if (asprintf(&more, "%s%s,", all, v) < 0)
                    more = NULL;
                free(all);
                all = more;
            }
            if (!all)
                return HY_ENOMEM;
            if (pl) {
                free(pl->value);
                pl->value = all;
            } else {
                rc = add(l, plural, all);
                free(all);
            }
        }
    }
    return rc;
}

static bool wildcard(const char *host)
{
    return !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "[::]");
}

/* "HOST:PORT" for host and port, IPv6 in brackets. */
static void host_port(const char *host, unsigned port, char *out, size_t size)
{
    if (strchr(host, ':') && host[0] != '[')
        snprintf(out, size, "[%s]:%u", host, port);
    else
        snprintf(out, size, "%s:%u", host, port);
}

/* Where t serves the metrics Prometheus should scrape: false when
 * unknown. */
static bool target_of(const struct hy_zone_dp_target *t, const char *net_address, char *addr,
                      size_t size, const char **path)
{
    if (t->metrics && t->metrics->has_port) {
        host_port(t->metrics->address && t->metrics->address[0] ? t->metrics->address
                                                                : S(net_address),
                  t->metrics->port, addr, size);
        *path = t->metrics->path && t->metrics->path[0] ? t->metrics->path : HY_POLICY_METRIC_PATH;
        return true;
    }
    const char *a = S(t->admin_address);
    const char *colon = strrchr(a, ':');
    if (!a[0] || !colon)
        return false;
    char host[300];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - a), a);
    unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
    if (!port)
        return false;
    if (wildcard(host)) {
        if (!net_address || !net_address[0])
            return false;
        host_port(net_address, port, addr, size);
    } else {
        snprintf(addr, size, "%s", a);
    }
    *path = "/metrics";
    return true;
}

int hy_zone_prom_sd_target(const struct hy_zone_dp_target *t, const char *zone, bool comma,
                           struct hy_buf *b, bool *wrote)
{
    *wrote = false;
    const char *net = NULL, *service = NULL, *mesh = NULL;
    const Hypha__V1__Dataplane *d = NULL;
    if (t->ingress) {
        const Hypha__V1__ZoneIngress *zi = (const Hypha__V1__ZoneIngress *)t->dp->spec;
        net = zi->networking ? zi->networking->address : NULL;
    } else {
        d = (const Hypha__V1__Dataplane *)t->dp->spec;
        net = d->networking ? d->networking->address : NULL;
        mesh = t->dp->meta->mesh;
        if (d->networking && d->networking->n_inbound)
            service = tag_of(d->networking->inbound[0], HY_TAG_SERVICE);
    }
    char addr[320];
    const char *path = NULL;
    if (!target_of(t, net, addr, sizeof(addr), &path))
        return 0;
    struct labels l = {.n = 0};
    const char *name = S(t->dp->meta->name);
    int rc = add(&l, "__metrics_path__", path);
    rc = rc ? rc : add(&l, "__scheme__", "http");
    if (mesh) {
        rc = rc ? rc : add(&l, "mesh", mesh);
        rc = rc ? rc : add(&l, "__meta_kuma_mesh", mesh);
    }
    rc = rc ? rc : add(&l, "zone", S(zone));
    if (service) {
        rc = rc ? rc : add(&l, "service", service);
        rc = rc ? rc : add(&l, "__meta_kuma_service", service);
    }
    rc = rc ? rc : add(&l, "dataplane", name);
    rc = rc ? rc : add(&l, "__meta_kuma_dataplane", name);
    rc = rc ? rc : add(&l, "proxy", t->ingress ? "ingress" : "sidecar");
    rc = rc ? rc : add(&l, "kuma_io_zone", S(zone));
    if (rc == 0 && d)
        rc = tag_labels(&l, d);
    if (rc == 0) {
        rc = hy_buf_puts(b, comma ? ",{\"targets\":[" : "{\"targets\":[");
        rc = rc ? rc : hy_codec_json_string(b, addr, strlen(addr));
        rc = rc ? rc : hy_buf_puts(b, "],\"labels\":{");
        for (size_t i = 0; rc == 0 && i < l.n; i++) {
            rc = hy_buf_puts(b, i ? "," : "");
            rc = rc ? rc : hy_codec_json_string(b, l.v[i].name, strlen(l.v[i].name));
            rc = rc ? rc : hy_buf_puts(b, ":");
            rc = rc ? rc : hy_codec_json_string(b, l.v[i].value, strlen(l.v[i].value));
        }
        rc = rc ? rc : hy_buf_puts(b, "}}");
        *wrote = rc == 0;
    }
    labels_fini(&l);
    return rc;
}

struct sd_walk {
    const char *zone;
    struct hy_buf *b;
    bool any;
};

static int one(void *ud, const struct hy_zone_dp_target *t)
{
    struct sd_walk *w = ud;
    bool wrote;
    int rc = hy_zone_prom_sd_target(t, w->zone, w->any, w->b, &wrote);
    w->any = w->any || wrote;
    return rc;
}

int hy_zone_prom_sd_json(struct hy_zone *z, struct hy_buf *b)
{
    struct sd_walk w = {z->cfg->zone, b, false};
    int rc = hy_buf_puts(b, "[");
    rc = rc ? rc : hy_zone_dp_each_target(z, one, &w);
    return rc ? rc : hy_buf_puts(b, "]\n");
}
