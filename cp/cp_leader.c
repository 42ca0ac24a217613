/* A control plane's leader lease (hy_store_lease_* on its store) seen from
 * its loop: polled by a timer, which tells the binary when this replica
 * becomes or stops being the leader, and shown as hypha_leader and
 * hypha_leader_transitions_total. What must run once among replicas on one
 * database runs only while held. */
#include <stdlib.h>
#include <string.h>

#include "cp.h"
#include "error.h"
#include "log.h"
#include "poison.h"

#define POLL_MS 100 /* the lease thread decides; this only brings it to the loop */

struct hy_cp_leader {
    struct hy_cp *cp;
    struct hy_store_lease *lease;
    uv_timer_t timer;
    bool timer_init;
    bool held; /* as last told to fn */
    hy_cp_leader_fn fn;
    void *ud;
    struct hy_series *gauge, *transitions;
    uint64_t counted;
};

void hy_cp_leader_sample(struct hy_cp *cp)
{
    struct hy_cp_leader *l = cp->leader;
    if (!l || !l->lease)
        return;
    hy_series_set(l->gauge, hy_store_lease_held(l->lease) ? 1 : 0);
    uint64_t t = hy_store_lease_transitions(l->lease);
    if (t > l->counted) {
        hy_series_add(l->transitions, (double)(t - l->counted));
        l->counted = t;
    }
}

/* Tells the binary, on its loop. Becoming leader first runs the
 * control plane's own one-time work (the mesh-root migration). */
static void check(struct hy_cp_leader *l)
{
    bool held = hy_store_lease_held(l->lease);
    hy_cp_leader_sample(l->cp);
    if (held == l->held)
        return;
    l->held = held;
    if (held && strcmp(hy_store_backend_name(l->cp->store), "lmdb") != 0) {
        int rc = hy_cp_migrate_mesh_roots(l->cp);
        if (rc < 0)
            hy_log(HY_LOG_ERROR, l->cp->component, "as leader: mesh root migration failed: %s",
                   hy_strerror(rc));
    }
    if (l->fn)
        l->fn(l->ud, held);
}

static void on_timer(uv_timer_t *t)
{
    check(t->data);
}

int hy_cp_leader_start(struct hy_cp *cp, const char *name, hy_cp_leader_fn fn, void *ud)
{
    struct hy_cp_leader *l = calloc(1, sizeof(*l));
    if (!l)
        return HY_ENOMEM;
    cp->leader = l;
    l->cp = cp;
    l->fn = fn;
    l->ud = ud;
    struct hy_metric *g = hy_metric_gauge(
        cp->metrics, "hypha_leader",
        "1 while this replica holds the leader lease of its component (run-once tasks)", 2,
        "component", "replica");
    struct hy_metric *c = hy_metric_counter(cp->metrics, "hypha_leader_transitions_total",
                                            "Times this replica acquired or lost the leader lease",
                                            2, "component", "replica");
    if (!g || !c || !(l->gauge = hy_metric_series(g, cp->component, cp->instance_id)) ||
        !(l->transitions = hy_metric_series(c, cp->component, cp->instance_id)))
        return HY_ENOMEM;
    int rc = hy_store_lease_open(cp->store, name, cp->instance_id, &l->lease);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, cp->component, "cannot open the leader lease %s: %s", name,
               hy_strerror(rc));
        return rc;
    }
    if ((rc = uv_timer_init(cp->loop, &l->timer)) < 0)
        return rc;
    l->timer.data = l;
    l->timer_init = true;
    uv_timer_start(&l->timer, on_timer, POLL_MS, POLL_MS);
    check(l); /* LMDB: held from the start, the binary knows before its first loop turn */
    return 0;
}

bool hy_cp_leader_held(const struct hy_cp *cp)
{
    return cp->leader && cp->leader->held;
}

void hy_cp_leader_stop(struct hy_cp *cp)
{
    struct hy_cp_leader *l = cp->leader;
    if (!l)
        return;
    if (l->timer_init && !uv_is_closing((uv_handle_t *)&l->timer))
        uv_close((uv_handle_t *)&l->timer, NULL);
    /* released now, so that another replica takes over without waiting for
     * this process to end */
    hy_store_lease_close(l->lease);
    l->lease = NULL;
    l->held = false;
}

void hy_cp_leader_free(struct hy_cp *cp)
{
    struct hy_cp_leader *l = cp->leader;
    if (!l)
        return;
    hy_store_lease_close(l->lease);
    free(l);
    cp->leader = NULL;
}
