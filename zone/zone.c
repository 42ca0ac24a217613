/* hypha-zone: the control-plane base plus the zone's own rules: which
 * resources may be written here, and that what is written here is marked
 * as this zone's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "dp_server.h"
#include "log.h"
#include "zone.h"
#include "poison.h"

static const char *write_refusal(void *ud, const struct hy_rtype *t, char *buf, size_t size)
{
    struct hy_zone *z = ud;
    if (!hy_zone_federated(z->cfg) || t->origin != HY_ORIGIN_GLOBAL)
        return NULL;
    snprintf(buf, size,
             "%s resources are managed by the global control plane at %s: write them there and "
             "they sync to this zone",
             t->name, z->cfg->global_address.v[0]);
    return buf;
}

bool hy_zone_name_fits(const struct hy_zone *z, const char *name, char *why, size_t size)
{
    size_t n = strlen(z->cfg->zone) + 1 + strlen(name);
    if (!hy_zone_federated(z->cfg) || n <= 253)
        return true;
    snprintf(why, size,
             "with this zone's prefix (\"%s.\") the name is %zu characters long on the global "
             "control plane, over 253: use a shorter name",
             z->cfg->zone, n);
    return false;
}

/* Everything written through this zone's API is this zone's: mark it, so
 * KDS sends it up (and never sends it back down). A standalone zone owns
 * its meshes, so it makes their root CAs too. */
static int before_commit(void *ud, struct hy_cp_api_batch *b, struct hy_diag *d)
{
    struct hy_zone *z = ud;
    size_t n = b->n;
    if (!hy_zone_federated(z->cfg)) {
        int rc = hy_cp_mesh_roots(&z->cp, b, d);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct hy_resource *r = b->owned[i];
        char why[300];
        if (b->w[i].op != HY_STORE_PUT || r->type->origin != HY_ORIGIN_ZONE)
            continue;
        if (!hy_zone_name_fits(z, r->meta->name, why, sizeof(why))) {
            hy_diag_add(d, 0, 0, "name", "%s", why);
            return HY_EINVAL;
        }
        free(r->origin);
        if (!(r->origin = strdup(z->cfg->zone)))
            return HY_ENOMEM;
    }
    return 0;
}

/* Zone replicas on one database: the leader holds the KDS session and
 * makes the zone's intermediate CAs. */
static void leader_changed(void *ud, bool held)
{
    hy_zone_kds_leader(ud, held);
    if (held)
        hy_zone_ca_check(ud);
}

int hy_zone_open(struct hy_zone *z, const struct hy_zone_cfg *cfg, uv_loop_t *loop)
{
    memset(z, 0, sizeof(*z));
    z->cfg = cfg;
    if (!cfg->zone || !hy_valid_zone_name(cfg->zone)) {
        hy_log(HY_LOG_ERROR, "zone", "--zone: \"%s\" is not a zone name (%s)",
               cfg->zone ? cfg->zone : "", HY_ZONE_NAME_RULE);
        return HY_EINVAL;
    }
    int rc = hy_cp_open(&z->cp, &cfg->cp, "zone", loop);
    z->cp.zone = cfg->zone;
    if (rc < 0 || (rc = hy_cp_tokens_open(&z->cp)) < 0)
        return rc;
    z->cp.api = (struct hy_cp_api){
        .store = z->cp.store,
        .mode = hy_zone_federated(cfg) ? "zone" : "standalone",
        .instance_id = z->cp.instance_id,
        .write_refusal = write_refusal,
        .before_commit = before_commit,
        .ud = z,
    };
    z->cp.extra = hy_zone_api_handle; /* _config, then the token endpoints */
    z->cp.extra_ud = z;
    if ((rc = hy_cp_listen(&z->cp)) < 0)
        return rc;
    if ((hy_zone_federated(cfg) && (rc = hy_zone_kds_start(z)) < 0) ||
        (rc = hy_zone_ca_start(z)) < 0 || (rc = hy_zone_dp_server_start(z)) < 0)
        return rc;
    char lease[300];
    snprintf(lease, sizeof(lease), "zone/%s", cfg->zone);
    if ((rc = hy_cp_leader_start(&z->cp, lease, leader_changed, z)) < 0)
        return rc;
    hy_log(HY_LOG_INFO, "zone", "hypha-zone %s started: zone %s, %s, data %s, revision %llu",
           HYPHA_VERSION, cfg->zone,
           hy_zone_federated(cfg) ? "federated with the global control plane" : "standalone",
           cfg->cp.data_dir, (unsigned long long)hy_store_revision(z->cp.store));
    return 0;
}

void hy_zone_stop(struct hy_zone *z)
{
    hy_zone_dp_server_stop(z);
    hy_zone_ca_stop(z);
    hy_zone_kds_stop(z);
    hy_cp_stop(&z->cp);
}

void hy_zone_close(struct hy_zone *z)
{
    hy_zone_dp_server_free(z);
    hy_zone_ca_free(z);
    hy_zone_kds_free(z);
    hy_cp_tokens_close(&z->cp);
    hy_cp_close(&z->cp);
}
