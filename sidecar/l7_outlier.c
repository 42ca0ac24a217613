/* MeshCircuitBreaker's outlier detection per endpoint (l7_outlier.h). */
#include "l7_outlier.h"
#include "proxy_int.h"
#include "poison.h"

#define DEFAULT_INTERVAL_MS 10000
#define DEFAULT_BASE_MS 30000
#define DEFAULT_MAX_PERCENT 10

uint64_t hy_l7_outlier_interval_ms(const Hypha__V1__DpOutlier *cfg)
{
    return hy_px_ms(cfg ? cfg->interval : NULL, DEFAULT_INTERVAL_MS);
}

static void come_back(struct hy_l7_outlier_ep *e)
{
    e->ejected = false;
    e->until_ms = 0;
    e->c5xx = e->cgateway = e->clocal = 0;
}

bool hy_l7_outlier_ejected(struct hy_l7_outlier_ep *eps, size_t i, uint64_t now_ms)
{
    struct hy_l7_outlier_ep *e = &eps[i];
    if (e->ejected && now_ms >= e->until_ms)
        come_back(e);
    return e->ejected;
}

size_t hy_l7_outlier_tick(struct hy_l7_outlier_ep *eps, size_t n, uint64_t now_ms)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (hy_l7_outlier_ejected(eps, i, now_ms))
            out++;
        else if (eps[i].ejections > 0)
            eps[i].ejections--;
    }
    return out;
}

/* Ejects endpoint i when the share out allows: true when it did. */
static bool eject(const Hypha__V1__DpOutlier *cfg, struct hy_l7_outlier_ep *eps, size_t n, size_t i,
                  uint64_t now_ms)
{
    struct hy_l7_outlier_ep *e = &eps[i];
    if (e->ejected)
        return false;
    size_t out = 0;
    for (size_t k = 0; k < n; k++)
        out += hy_l7_outlier_ejected(eps, k, now_ms);
    uint64_t pct = cfg->has_max_ejection_percent ? cfg->max_ejection_percent : DEFAULT_MAX_PERCENT;
    if (out > 0 && (uint64_t)(out + 1) * 100 > pct * n) {
        e->c5xx = e->cgateway = e->clocal = 0; /* Envoy starts counting again */
        return false;
    }
    uint64_t base = hy_px_ms(cfg->base_ejection_time, DEFAULT_BASE_MS);
    uint64_t cap = base > HY_L7_OUTLIER_MAX_EJECTION_MS ? base : HY_L7_OUTLIER_MAX_EJECTION_MS;
    e->ejections++;
    uint64_t t = base * e->ejections;
    e->ejected = true;
    e->until_ms = now_ms + (t > cap || t / e->ejections != base ? cap : t);
    e->c5xx = e->cgateway = e->clocal = 0;
    return true;
}

/* One response status into the 5xx and gateway counters; true at a
 * threshold. */
static bool count_status(const Hypha__V1__DpOutlier *cfg, struct hy_l7_outlier_ep *e,
                         unsigned status)
{
    if (status < 500 || status > 599) {
        e->c5xx = e->cgateway = 0;
        return false;
    }
    bool hit = false;
    if (status == 502 || status == 503 || status == 504) {
        e->cgateway++;
        hit |= cfg->consecutive_gateway && e->cgateway >= cfg->consecutive_gateway;
    } else {
        e->cgateway = 0;
    }
    e->c5xx++;
    hit |= cfg->consecutive_5xx && e->c5xx >= cfg->consecutive_5xx;
    return hit;
}

bool hy_l7_outlier_report(const Hypha__V1__DpOutlier *cfg, struct hy_l7_outlier_ep *eps, size_t n,
                          size_t i, enum hy_l7_outlier_result result, unsigned status,
                          uint64_t now_ms)
{
    if (!cfg || i >= n)
        return false;
    struct hy_l7_outlier_ep *e = &eps[i];
    bool split = cfg->split_external_and_local_errors, hit = false;
    switch (result) {
    case HY_L7_OUT_RESPONSE:
        if (split)
            e->clocal = 0; /* a response: the connection worked */
        hit = count_status(cfg, e, status);
        break;
    case HY_L7_OUT_CONNECT_OK:
        if (split)
            e->clocal = 0;
        break;
    case HY_L7_OUT_CONNECT_FAILED:
    case HY_L7_OUT_TIMEOUT:
    case HY_L7_OUT_RESET:
        if (split) {
            e->clocal++;
            hit = cfg->consecutive_local_origin && e->clocal >= cfg->consecutive_local_origin;
        } else {
            /* Envoy without the split: a connect failure or reset is a 503,
             * a timeout a 504 */
            hit = count_status(cfg, e, result == HY_L7_OUT_TIMEOUT ? 504 : 503);
        }
        break;
    }
    return hit && eject(cfg, eps, n, i, now_ms);
}
