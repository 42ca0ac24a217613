/* hypha-global: the control-plane base plus what only the global CP does:
 * refusing zone-origin writes, mesh root CAs, zone tokens and KDS. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "global.h"
#include "log.h"
#include "poison.h"

static const char *write_refusal(void *ud, const struct hy_rtype *t, char *buf, size_t size)
{
    (void)ud;
    if (t->origin != HY_ORIGIN_ZONE)
        return NULL;
    snprintf(buf, size,
             "%s resources come from zones: they are written in the zone control plane, which "
             "syncs them to the global control plane",
             t->name);
    return buf;
}

/* Run-once work of the global CP: the mesh-root migration (cp_leader.c
 * runs it on becoming leader). The store's change-log compaction and the
 * zone insights' trimming happen inside write transactions, serialised by
 * the store on every replica, so they need no leader. */
static void leader_changed(void *ud, bool held)
{
    struct hy_global *g = ud;
    hy_log(HY_LOG_INFO, "global", "replica %s is %s", g->cp.instance_id,
           held ? "the leader: run-once tasks run here" : "no longer the leader");
}

int hy_global_open(struct hy_global *g, const struct hy_global_cfg *cfg, uv_loop_t *loop)
{
    memset(g, 0, sizeof(*g));
    g->cfg = cfg;
    int rc = hy_cp_open(&g->cp, &cfg->cp, "global", loop);
    if (rc < 0 || (rc = hy_cp_tokens_open(&g->cp)) < 0 ||
        (rc = hy_cp_leader_start(&g->cp, "global", leader_changed, g)) < 0)
        return rc;
    g->cp.api = (struct hy_cp_api){
        .store = g->cp.store,
        .mode = "global",
        .instance_id = g->cp.instance_id,
        .write_refusal = write_refusal,
        .before_commit = hy_global_before_commit,
        .ud = g,
    };
    g->cp.extra = hy_cp_tokens_handle;
    g->cp.extra_ud = &g->cp;
    if ((rc = hy_cp_listen(&g->cp)) < 0 || (rc = hy_global_kds_start(g)) < 0)
        return rc;
    hy_log(HY_LOG_INFO, "global", "hypha-global %s started (instance %s, data %s, revision %llu)",
           HYPHA_VERSION, g->cp.instance_id, cfg->cp.data_dir,
           (unsigned long long)hy_store_revision(g->cp.store));
    return 0;
}

void hy_global_stop(struct hy_global *g)
{
    hy_global_kds_stop(g);
    hy_cp_stop(&g->cp);
}

void hy_global_close(struct hy_global *g)
{
    hy_global_kds_free(g);
    hy_cp_tokens_close(&g->cp);
    hy_cp_close(&g->cp);
}
