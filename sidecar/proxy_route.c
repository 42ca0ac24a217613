/* Routes: what one outbound port shares across the workers (connection
 * counts for MeshCircuitBreaker, endpoint load for LeastRequest, endpoints
 * whose connect failed lately, active health) so that limits and balancing
 * hold for the sidecar as a whole, not per thread. */
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"
#include "poison.h"

struct hy_px_route *hy_px_route_get(struct hy_proxy *p, uint16_t port)
{
    pthread_mutex_lock(&p->lock);
    struct hy_px_route *r = p->routes;
    while (r && r->port != port)
        r = r->next;
    if (!r && (r = calloc(1, sizeof(*r)))) {
        r->port = port;
        atomic_init(&r->active, 0);
        atomic_init(&r->pending, 0);
        pthread_mutex_init(&r->lock, NULL);
        r->next = p->routes;
        p->routes = r;
    }
    if (r)
        r->refs++;
    pthread_mutex_unlock(&p->lock);
    return r;
}

void hy_px_route_put(struct hy_proxy *p, struct hy_px_route *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&p->lock);
    bool last = --r->refs == 0;
    if (last) {
        struct hy_px_route **pr = &p->routes;
        while (*pr != r)
            pr = &(*pr)->next;
        *pr = r->next;
    }
    pthread_mutex_unlock(&p->lock);
    if (last) {
        pthread_mutex_destroy(&r->lock);
        free(r);
    }
}

static bool slot_free(const struct hy_px_ep *e, uint64_t now)
{
    return !e->key[0] ||
           (!e->active && e->bad_until <= now && !e->unhealthy && !e->hc_bad && !e->hc_ok);
}

struct hy_px_ep *hy_px_route_ep(struct hy_px_route *r, const char *key, bool take, uint64_t now)
{
    struct hy_px_ep *free_slot = NULL;
    for (size_t i = 0; i < HY_PX_MAX_EPS; i++) {
        struct hy_px_ep *e = &r->eps[i];
        if (e->key[0] && strcmp(e->key, key) == 0)
            return e;
        if (!free_slot && slot_free(e, now))
            free_slot = e;
    }
    if (!take || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof(*free_slot));
    size_t n = strlen(key);
    if (n >= sizeof(free_slot->key))
        n = sizeof(free_slot->key) - 1;
    memcpy(free_slot->key, key, n);
    return free_slot;
}
