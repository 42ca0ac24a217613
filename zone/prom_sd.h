/* Prometheus HTTP service discovery on the zone control plane (GET
 * /prometheus/sd): every sidecar and ingress connected to the zone as a
 * scrape target, in the JSON list Prometheus's http_sd_configs reads, with
 * Kuma's MADS labels. */
#ifndef HY_PROM_SD_H
#define HY_PROM_SD_H

#include "buf.h"
#include "dp_server.h"

/* Appends t's target group ({"targets":["HOST:PORT"],"labels":{...}})
 * to b, a comma first when `comma`: its MeshMetric Prometheus endpoint
 * (address, port, path) when one selects it, else its admin server's
 * /metrics (a wildcard host replaced by the proxy's networking address).
 * Labels: __metrics_path__, __scheme__, mesh, zone, service, dataplane,
 * proxy (sidecar or ingress), each inbound tag as Kuma's MADS writes it
 * (kuma_io_service, and its plural with every value, ",a,b,"), and
 * __meta_kuma_mesh, __meta_kuma_service, __meta_kuma_dataplane as
 * Prometheus's kuma_sd_configs names them. *wrote: whether a group was
 * written (none for a proxy that said no admin address and has no
 * MeshMetric endpoint). 0 or HY_ENOMEM. */
int hy_zone_prom_sd_target(const struct hy_zone_dp_target *t, const char *zone, bool comma,
                           struct hy_buf *b, bool *wrote);

/* The whole answer: "[...]" of every connected proxy's group. 0 or a
 * negative code. */
int hy_zone_prom_sd_json(struct hy_zone *z, struct hy_buf *b);

#endif
