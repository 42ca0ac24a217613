/* MeshRateLimit's local token buckets (l7_limit.h).
 *
 * A bucket is one atomic 64-bit word: the fill period it was last filled
 * in (high 32 bits: intervals since the bucket started) and its tokens
 * (low 32). Taking a token adds the fills of the periods that passed
 * (tokens_per_fill each, up to max_tokens: Envoy's timer, computed
 * lazily) and takes one, in one compare-and-swap; no thread waits for
 * another. A bucket idle for 2^32 intervals may see too few fills: a
 * wrap, harmless at any real interval. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dp_parts.h"
#include "l7.h"
#include "l7_limit.h"
#include "proxy_int.h"
#include "poison.h"

#define DEFAULT_INTERVAL_MS 1000

struct hy_l7_bucket {
    _Atomic uint64_t state; /* period << 32 | tokens */
    atomic_uint refs;       /* sets holding it */
    uint64_t start_ms, interval_ms;
    uint32_t max; /* max_tokens = tokens_per_fill */
};

struct slot {
    uint32_t port;
    int index;
    char version[HY_DP_VERSION_LEN + 1]; /* of the entry: kept buckets need the same */
    struct hy_l7_bucket *http, *tcp;
};

struct hy_l7_limits {
    struct slot *slots;
    size_t n;
};

static struct hy_l7_bucket *bucket_ref(struct hy_l7_bucket *b)
{
    if (b)
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

static void bucket_unref(struct hy_l7_bucket *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

/* The bucket for count per interval: prev's when it has the same limit,
 * else a full new one. NULL with *failed set when out of memory; NULL
 * alone when count is 0 (no limit of this kind). */
static struct hy_l7_bucket *bucket_for(uint32_t count, const Hypha__V1__Duration *interval,
                                       struct hy_l7_bucket *prev, uint64_t now_ms, bool *failed)
{
    if (!count)
        return NULL;
    uint64_t ms = hy_px_ms(interval, DEFAULT_INTERVAL_MS);
    if (prev && prev->max == count && prev->interval_ms == ms)
        return bucket_ref(prev);
    struct hy_l7_bucket *b = calloc(1, sizeof(*b));
    if (!b) {
        *failed = true;
        return NULL;
    }
    b->start_ms = now_ms;
    b->interval_ms = ms;
    b->max = count;
    atomic_init(&b->state, count);
    atomic_init(&b->refs, 1);
    return b;
}

static const struct slot *slot_find(const struct hy_l7_limits *l, uint32_t port, int index)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (l->slots[i].port == port && l->slots[i].index == index)
            return &l->slots[i];
    return NULL;
}

void hy_l7_limits_free(struct hy_l7_limits *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        bucket_unref(l->slots[i].http);
        bucket_unref(l->slots[i].tcp);
    }
    free(l->slots);
    free(l);
}

struct hy_l7_limits *hy_l7_limits_new(Hypha__V1__DpInbound *const *v, size_t n,
                                      const struct hy_l7_limits *prev, uint64_t now_ms)
{
    struct hy_l7_limits *l = calloc(1, sizeof(*l));
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i]->n_rate_limits;
    if (!l || (total && !(l->slots = calloc(total, sizeof(*l->slots))))) {
        free(l);
        return NULL;
    }
    bool failed = false;
    for (size_t i = 0; i < n && !failed; i++) {
        for (size_t k = 0; k < v[i]->n_rate_limits && !failed; k++) {
            const Hypha__V1__DpCallerRateLimit *e = v[i]->rate_limits[k];
            struct slot *s = &l->slots[l->n++];
            s->port = v[i]->port;
            s->index = (int)k;
            const struct slot *old = slot_find(prev, s->port, s->index);
            if (hy_dp_msg_version(&e->base, s->version)) {
                failed = true;
                break;
            }
            if (old && strcmp(old->version, s->version))
                old = NULL;
            s->http = bucket_for(e->http_requests, e->http_interval, old ? old->http : NULL, now_ms,
                                 &failed);
            s->tcp = bucket_for(e->tcp_connections, e->tcp_interval, old ? old->tcp : NULL, now_ms,
                                &failed);
        }
    }
    if (failed) {
        hy_l7_limits_free(l);
        return NULL;
    }
    return l;
}

const Hypha__V1__DpCallerRateLimit *hy_l7_limit_pick(const Hypha__V1__DpInbound *in,
                                                     const struct hy_permit_peer *peer, int *index)
{
    for (size_t k = in->n_rate_limits; k-- > 0;) {
        const Hypha__V1__DpCallerRateLimit *e = in->rate_limits[k];
        if (hy_l7_caller_match((const void *const *)e->tags, e->n_tags, peer)) {
            *index = (int)k;
            return e;
        }
    }
    *index = -1;
    return NULL;
}

const struct hy_l7_bucket *hy_l7_limit_bucket(const struct hy_l7_limits *l, uint32_t port,
                                              int index, bool tcp)
{
    const struct slot *s = slot_find(l, port, index);
    return !s ? NULL : tcp ? s->tcp : s->http;
}

static bool bucket_take(struct hy_l7_bucket *b, uint64_t now_ms)
{
    uint32_t period =
        (uint32_t)(now_ms > b->start_ms ? (now_ms - b->start_ms) / b->interval_ms : 0);
    uint64_t old = atomic_load_explicit(&b->state, memory_order_relaxed);
    for (;;) {
        uint32_t at = (uint32_t)(old >> 32), tokens = (uint32_t)old;
        uint32_t passed = period - at; /* mod 2^32; "negative": a thread with an older clock */
        if (passed && passed < (1u << 31)) {
            uint64_t t = (uint64_t)tokens + (uint64_t)passed * b->max;
            tokens = t > b->max ? b->max : (uint32_t)t;
            at = period;
        }
        if (!tokens)
            return false;
        uint64_t next = (uint64_t)at << 32 | (tokens - 1);
        if (atomic_compare_exchange_weak_explicit(&b->state, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    }
}

bool hy_l7_limit_take(const struct hy_l7_limits *l, uint32_t port, int index, bool tcp,
                      uint64_t now_ms)
{
    const struct slot *s = slot_find(l, port, index);
    struct hy_l7_bucket *b = !s ? NULL : tcp ? s->tcp : s->http;
    return !b || bucket_take(b, now_ms);
}
