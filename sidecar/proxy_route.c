/* Routes: what one outbound port shares across the workers (connection
 * counts for MeshCircuitBreaker, endpoint load for LeastRequest, endpoints
 * whose connect failed lately, active health) so that limits and balancing
 * hold for the sidecar as a whole, not per thread. The endpoints are an
 * agent endpoint table (agent_eps.h) per route. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"
#include "poison.h"

struct hy_px_route *hy_px_route_get(struct hy_proxy *p, uint16_t port, const char *service)
{
    if (!service)
        service = "";
    pthread_mutex_lock(&p->lock);
    struct hy_px_route *r = p->routes;
    while (r && (r->port != port || (port == 0 && strcmp(r->service, service) != 0)))
        r = r->next;
    if (!r && (r = calloc(1, sizeof(*r)))) {
        r->port = port;
        snprintf(r->service, sizeof(r->service), "%s", port ? "" : service);
        atomic_init(&r->requests, 0);
        atomic_init(&r->retries, 0);
        atomic_init(&r->active, 0);
        atomic_init(&r->pending, 0);
        atomic_init(&r->hc_running, 0);
        hy_agent_eps_init(&r->eps);
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
        hy_agent_eps_fini(&r->eps);
        free(r);
    }
}
