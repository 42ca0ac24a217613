/* The endpoint table every worker of a data-plane process shares: failed
 * connects remembered per process, connection counts and health. */
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "agent_eps.h"
#include "poison.h"

void hy_agent_eps_init(struct hy_agent_eps *t)
{
    memset(t->eps, 0, sizeof(t->eps));
    pthread_mutex_init(&t->lock, NULL);
}

void hy_agent_eps_fini(struct hy_agent_eps *t)
{
    pthread_mutex_destroy(&t->lock);
}

static bool slot_free(const struct hy_agent_ep *e, uint64_t now)
{
    return !e->key[0] ||
           (!e->active && e->bad_until <= now && !e->unhealthy && !e->hc_bad && !e->hc_ok);
}

struct hy_agent_ep *hy_agent_eps_slot(struct hy_agent_eps *t, const char *key, bool take,
                                      uint64_t now)
{
    struct hy_agent_ep *free_slot = NULL;
    for (size_t i = 0; i < HY_AGENT_MAX_EPS; i++) {
        struct hy_agent_ep *e = &t->eps[i];
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

bool hy_agent_ep_avoided(const struct hy_agent_ep *e, uint64_t now)
{
    return e && (e->bad_until > now || e->unhealthy);
}

void hy_agent_eps_failed(struct hy_agent_eps *t, const char *key)
{
    uint64_t now = hy_agent_now_ms();
    pthread_mutex_lock(&t->lock);
    struct hy_agent_ep *e = hy_agent_eps_slot(t, key, true, now);
    if (e)
        e->bad_until = now + HY_AGENT_BAD_MS;
    pthread_mutex_unlock(&t->lock);
}

uint64_t hy_agent_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

void hy_agent_endpoint_key(const Hypha__V1__DpEndpoint *e, char *buf, size_t size)
{
    const char *a = e->address ? e->address : "";
    snprintf(buf, size, strchr(a, ':') ? "[%s]:%u" : "%s:%u", a, (unsigned)e->port);
}
