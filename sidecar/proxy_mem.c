/* The sidecar's memory between bursts. wolfSSL's fixed-point ECC cache
 * (FP_ECC, as Debian builds it) keeps per thread a table for every curve
 * point it multiplied more than once: the base point and each peer key a
 * handshake verified. Under load that cache is what makes handshakes cheap;
 * at rest it is most of a worker's memory (about 15 MiB after 1,000
 * connections, measured with bench/dp_mem.sh). So a worker that has done
 * no handshake for a few seconds (HY_PX_MEM_IDLE_MS to twice that) drops its cache and hands the
 * freed pages back to the kernel (malloc_trim): the next burst rebuilds the tables in its first
 * handshakes. The control loop, whose crypto (a CSR, a new config's chain check) is rare, drops its
 * tables after each use. /metrics shows the heap's use. */
#include <malloc.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "proxy_int.h"
#include "poison.h"

#define HY_PX_MEM_IDLE_MS 3000

static double heap_in_use(void *arg)
{
    (void)arg;
    struct mallinfo2 mi = mallinfo2();
    return (double)(mi.uordblks + mi.hblkhd);
}

static double heap_free(void *arg)
{
    (void)arg;
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.fordblks;
}

int hy_px_mem_metrics(struct hy_proxy *p, struct hy_metrics *m)
{
    if (!hy_metric_gauge_fn(m, "hypha_dp_heap_in_use_bytes",
                            "Bytes the sidecar has allocated (malloc, all threads)", heap_in_use,
                            NULL) ||
        !hy_metric_gauge_fn(m, "hypha_dp_heap_free_bytes",
                            "Bytes free inside the sidecar's malloc arenas, reusable (idle workers "
                            "give their pages back)",
                            heap_free, NULL))
        return HY_ENOMEM;
    p->m.mem_releases = hy_metric_series(hy_metric_counter(
        m, "hypha_dp_memory_releases_total",
        "Times an idle worker dropped its TLS tables and gave free memory back", 0));
    return p->m.mem_releases ? 0 : HY_ENOMEM;
}

void hy_proxy_mem_release(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
    malloc_trim(0);
}

static void on_tick(uv_timer_t *t)
{
    struct hy_px_worker *w = t->data;
    if (w->handshakes != w->handshakes_seen) {
        w->handshakes_seen = w->handshakes;
        w->mem_released = false;
        return;
    }
    if (w->mem_released)
        return;
    w->mem_released = true;
    hy_proxy_mem_release();
    hy_series_inc(w->p->m.mem_releases);
    hy_log(HY_LOG_DEBUG, "dp", "worker %u idle: TLS tables dropped, free memory given back",
           w->base.index);
}

void hy_px_mem_worker_open(struct hy_px_worker *w)
{
    w->mem_released = true; /* nothing to drop before the first handshake */
    uv_timer_init(&w->base.loop, &w->mem_timer);
    w->mem_timer.data = w;
    /* released at the first tick that follows a whole period without a
     * handshake: one to two periods after the last one */
    uv_timer_start(&w->mem_timer, on_tick, HY_PX_MEM_IDLE_MS, HY_PX_MEM_IDLE_MS);
    uv_unref((uv_handle_t *)&w->mem_timer);
}

void hy_px_mem_worker_stop(struct hy_px_worker *w)
{
    uv_close((uv_handle_t *)&w->mem_timer, NULL);
}
